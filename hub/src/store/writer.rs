//! The single writer: one thread owns the write connection and serves every QUIC
//! connection through a channel. Batches that queue up while a commit is on disk are
//! committed together (group commit), so many agents share one fsync.

use std::thread::JoinHandle;

use till360_shared::wire::TillHealth;
use till360_shared::{AgentId, Event, Timestamp};
use tokio::sync::{mpsc, oneshot};

use till360_shared::chain::ChainHash;

use super::{ChainCheck, IngestOutcome, IngestRequest, Store, StoreError, TillClock};

/// How many queued requests one commit may take.
const MAX_GROUP: usize = 64;
/// Requests waiting for the writer before senders are slowed down.
const QUEUE: usize = 256;

enum Request {
    Hello {
        agent: AgentId,
        now: Timestamp,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    Ingest {
        agent: AgentId,
        events: Vec<Event>,
        now: Timestamp,
        reply: oneshot::Sender<Result<IngestOutcome, StoreError>>,
    },
    Chain {
        agent: AgentId,
        last_seq: u64,
        hash: ChainHash,
        now: Timestamp,
        reply: oneshot::Sender<Result<ChainCheck, StoreError>>,
    },
    Health {
        agent: AgentId,
        health: TillHealth,
        now: Timestamp,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Clock {
        agent: AgentId,
        clock: TillClock,
        now: Timestamp,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

/// A cheap, clonable handle to the writer thread.
#[derive(Clone)]
pub struct StoreWriter {
    tx: mpsc::Sender<Request>,
}

/// The writer thread; it ends when every [`StoreWriter`] is dropped.
pub struct WriterThread {
    handle: JoinHandle<()>,
}

impl WriterThread {
    /// Waits (blocking) until the writer has finished its last commit and closed the store.
    pub fn join(self) {
        if self.handle.join().is_err() {
            tracing::error!("store writer thread panicked");
        }
    }

    /// Whether the writer has ended (panicked, or every handle is gone).
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

/// Moves `store` onto its own thread and returns the handle to reach it.
pub fn spawn_writer(store: Box<dyn Store>) -> std::io::Result<(StoreWriter, WriterThread)> {
    let (tx, rx) = mpsc::channel(QUEUE);
    let handle = std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || run(store, rx))?;
    Ok((StoreWriter { tx }, WriterThread { handle }))
}

impl StoreWriter {
    pub async fn hello(&self, agent: AgentId, now: Timestamp) -> Result<u64, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Hello { agent, now, reply })
            .await
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Plans, merges and commits one batch for `agent` (the certificate's identity).
    pub async fn ingest(
        &self,
        agent: AgentId,
        events: Vec<Event>,
        now: Timestamp,
    ) -> Result<IngestOutcome, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Ingest {
                agent,
                events,
                now,
                reply,
            })
            .await
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Checks `agent`'s chain claim after the batch it follows was committed.
    pub async fn chain_claim(
        &self,
        agent: AgentId,
        last_seq: u64,
        hash: ChainHash,
        now: Timestamp,
    ) -> Result<ChainCheck, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Chain {
                agent,
                last_seq,
                hash,
                now,
                reply,
            })
            .await
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Records a till's health report (`Message::Health`).
    pub async fn health(
        &self,
        agent: AgentId,
        health: TillHealth,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Health {
                agent,
                health,
                now,
                reply,
            })
            .await
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }
}

impl StoreWriter {
    /// Records how far a till's clock is off (`Message::TillClock`).
    pub async fn clock(
        &self,
        agent: AgentId,
        clock: TillClock,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Clock {
                agent,
                clock,
                now,
                reply,
            })
            .await
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }
}

fn run(mut store: Box<dyn Store>, mut rx: mpsc::Receiver<Request>) {
    while let Some(first) = rx.blocking_recv() {
        let mut queue = vec![first];
        while queue.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(next) => queue.push(next),
                Err(_) => break,
            }
        }
        // Keep arrival order: consecutive ingests form one group commit.
        let mut group = Vec::new();
        for request in queue {
            match request {
                Request::Ingest { .. } => group.push(request),
                Request::Hello { agent, now, reply } => {
                    commit_group(store.as_mut(), std::mem::take(&mut group));
                    let _ = reply.send(store.hello(&agent, now));
                }
                // After the batches queued before it: a claim follows its own batch.
                Request::Chain {
                    agent,
                    last_seq,
                    hash,
                    now,
                    reply,
                } => {
                    commit_group(store.as_mut(), std::mem::take(&mut group));
                    let _ = reply.send(store.chain_claim(&agent, last_seq, &hash, now));
                }
                Request::Health {
                    agent,
                    health,
                    now,
                    reply,
                } => {
                    commit_group(store.as_mut(), std::mem::take(&mut group));
                    let _ = reply.send(store.set_health(&agent, &health, now));
                }
                Request::Clock {
                    agent,
                    clock,
                    now,
                    reply,
                } => {
                    commit_group(store.as_mut(), std::mem::take(&mut group));
                    let _ = reply.send(store.set_clock(&agent, &clock, now));
                }
            }
        }
        commit_group(store.as_mut(), group);
    }
}

fn commit_group(store: &mut dyn Store, group: Vec<Request>) {
    if group.is_empty() {
        return;
    }
    let mut parts = Vec::with_capacity(group.len());
    let mut now = None::<Timestamp>;
    for request in group {
        if let Request::Ingest {
            agent,
            events,
            now: at,
            reply,
        } = request
        {
            now = Some(now.map_or(at, |n| n.max(at)));
            parts.push((agent, events, reply));
        }
    }
    let Some(now) = now else { return };
    let requests: Vec<IngestRequest<'_>> = parts
        .iter()
        .map(|(agent, events, _)| IngestRequest { agent, events })
        .collect();
    let started = std::time::Instant::now();
    let result = store.ingest(&requests, now);
    crate::metrics::record_commit(started.elapsed());
    match result {
        Ok(outcomes) => {
            drop(requests);
            for ((_, events, reply), outcome) in parts.into_iter().zip(outcomes) {
                if outcome.is_ok() {
                    crate::metrics::record_batch(&events);
                }
                let _ = reply.send(Ok(outcome));
            }
        }
        Err(err) => {
            tracing::error!("commit of {} batch(es) failed: {err}", parts.len());
            drop(requests);
            for (_, _, reply) in parts {
                let _ = reply.send(Err(StoreError::CommitFailed(err.to_string())));
            }
        }
    }
}
