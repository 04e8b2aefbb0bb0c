//! The QUIC uplink: streams journal events to the hub and compacts what it acknowledges.
//!
//! The protocol lives in `till360_shared::sync::UplinkSession`; this task only moves
//! frames. One bidirectional stream per connection, opened by the agent: `Hello` →
//! `Welcome {acked_seq}` (or `Refused`), then `Events` frames within the window, each
//! followed by `Chain` (the journal's stored chain link at the frame's last seq, so the
//! hub notices a journal edited on the till), and `Ack` after each hub commit. Every ack is written to the journal, which deletes
//! the acknowledged events. Right after `Hello` the agent sends `Subscribe` with the
//! journal's erasure version; `Erasures` frames from the hub are applied to the journal
//! (one transaction with the new version), passed on to the till core (a pending card
//! is dropped) and answered with `ErasuresApplied`. An erasure re-links the journal's
//! chain, so it waits until every event sent is acknowledged (and sends nothing new
//! meanwhile): the hub then has no copy of a rewritten event that the new links do
//! not cover. `Subscribe` also carries the
//! campaign set version held; a `Campaigns` frame (set, keyring, catalog) is stored in
//! the journal and needs no answer, and the digest cache's version; `Digests` deltas are
//! applied to the journal's cache (one transaction with the version). Everything stored
//! is also passed to the till core as [`HubNews`].
//!
//! The till core's [`HubRequest`]s (a scanned card's digest, another store's coupon
//! code) are sent while streaming and answered within `request_timeout` (see
//! [`pending`]); when the hub cannot be asked they are answered at once as unanswered.
//! After any error the task reconnects with a jittered exponential backoff, forever,
//! and resumes from the hub's `Welcome`.

pub mod conversation;
mod failover;
mod health;
mod pending;
mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use thiserror::Error;
use till360_shared::chain::ChainHash;
use till360_shared::codec::{self, CodecError, FrameDecoder};
use till360_shared::coupon::CardKey;
use till360_shared::sync::SyncError;
use till360_shared::wire::{Message, Refusal};
use till360_shared::{AgentId, CardNumber};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::HubLink;
use crate::hub_link::{HubNews, HubRequest, NewsSink};
use crate::journal::{Journal, JournalError};
use conversation::{Answer, Conversation, ConversationError, Output, Pacing, Transmit};
use failover::{AfterFailure, HubRotation};
pub use pending::{offline_answer, PendingRequests, Reply, MAX_PENDING};
pub use tls::{client_config, TlsConfigError};

pub const SOFTWARE: &str = concat!("till360-agent/", env!("CARGO_PKG_VERSION"));
// A dead hub is noticed within the idle timeout; keep-alives keep a quiet link up.
const KEEP_ALIVE: Duration = Duration::from_secs(2);
const IDLE_TIMEOUT: Duration = Duration::from_secs(8);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How often a till the hub locked out (revoked or fenced certificate) tries again: it
/// keeps journaling and printing, but hammering the hub would not help.
const LOCKED_OUT_RETRY: Duration = Duration::from_secs(300);
/// How often the journal's health is looked at (a report goes out only when it changed).
const HEALTH_CHECK: Duration = Duration::from_secs(10);
/// How often the till's clock goes to the hub (also at every connect), so a clock set
/// back while connected is reported too.
const CLOCK_REPORT: Duration = Duration::from_secs(60);
/// How long the till core waits for the hub to answer a request (DESIGN.md: 150 ms).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_millis(150);

/// What the uplink is doing, for `status` and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UplinkStatus {
    /// A session with the hub is established (welcome received).
    pub connected: bool,
    /// The highest seq the hub has acknowledged.
    pub acked_seq: u64,
    /// Why the last session ended, if it failed.
    pub last_error: Option<String>,
    /// The newest hub erasure the journal has applied.
    pub erasure_version: u64,
    /// The version of the campaign set the journal holds (0: none).
    pub campaign_version: u64,
    /// The version of the hub's digest feed the journal's cache holds (0: empty).
    pub digest_version: u64,
}

#[derive(Debug, Error)]
enum UplinkError {
    #[error("cannot resolve hub address {address}: {reason}")]
    Resolve { address: String, reason: String },
    #[error("cannot bind a UDP socket: {0}")]
    Bind(std::io::Error),
    #[error("connecting to the hub: {0}")]
    Connect(#[from] quinn::ConnectError),
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("connecting to the hub timed out")]
    ConnectTimeout,
    #[error("sending: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("receiving: {0}")]
    Read(#[from] quinn::ReadError),
    #[error("the hub closed the stream")]
    HubClosed,
    #[error("frame: {0}")]
    Codec(#[from] CodecError),
    #[error("protocol: {0}")]
    Sync(#[from] SyncError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("journal task failed: {0}")]
    JournalTask(String),
    #[error("journal returned no events for seq {0} although the session expects some")]
    NothingToSend(u64),
}

impl From<ConversationError> for UplinkError {
    fn from(e: ConversationError) -> Self {
        match e {
            ConversationError::Sync(e) => UplinkError::Sync(e),
            ConversationError::Journal(e) => UplinkError::Journal(e),
            ConversationError::NothingToSend(seq) => UplinkError::NothingToSend(seq),
        }
    }
}

/// A running uplink task.
pub struct UplinkHandle {
    status: watch::Receiver<UplinkStatus>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl UplinkHandle {
    /// Follows the uplink's status (connected, acked seq, last error).
    pub fn status(&self) -> watch::Receiver<UplinkStatus> {
        self.status.clone()
    }

    /// Closes the connection and waits for the task to end.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::error!("uplink task failed: {e}");
        }
    }
}

/// Everything one uplink task needs.
/// Cards erased on the hub, as the hub names them: this store's card keys, with the
/// digest key that gives a scanned card's key. `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ErasedCards {
    pub digest_key: [u8; 32],
    pub card_keys: Vec<CardKey>,
}

impl ErasedCards {
    /// Whether `card` is one of the erased cards.
    pub fn names(&self, card: &CardNumber) -> bool {
        self.card_keys
            .contains(&CardKey::of(&self.digest_key, card))
    }
}

impl std::fmt::Debug for ErasedCards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErasedCards")
            .field("card_keys", &self.card_keys)
            .finish_non_exhaustive()
    }
}

pub struct Uplink {
    pub agent: AgentId,
    pub hub: HubLink,
    pub client_config: quinn::ClientConfig,
    /// Shared with the till core, which appends; the uplink reads and acks.
    pub journal: Arc<Mutex<Journal>>,
    /// The last seq appended; a change wakes the uplink.
    pub journal_seq: watch::Receiver<u64>,
    /// Where erased cards go once the journal has applied them (the till core drops
    /// a pending scan of one). `None`: journal only.
    pub erased_cards: Option<std::sync::mpsc::Sender<ErasedCards>>,
    /// Where news for the till core goes (campaigns, digests, answers, online state).
    /// `None`: journal only.
    pub news: Option<NewsSink>,
    /// Requests of the till core (a scanned card's digest, a coupon check). `None`: none.
    pub requests: Option<mpsc::UnboundedReceiver<HubRequest>>,
    /// How long an answer to a request may take before it counts as not given.
    pub request_timeout: Duration,
}

/// The till core's request queue; `None` once there is none (never given, or closed).
type Requests = Option<mpsc::UnboundedReceiver<HubRequest>>;

/// What one connection knows beyond the protocol session.
struct Link {
    /// Requests sent and not yet answered.
    pending: PendingRequests,
    /// `HubNews::Online(true)` was sent for this connection. Shared with `run`, which
    /// tells `Online(false)` itself when a stop drops the session mid-way.
    online: Arc<AtomicBool>,
    /// The hub dialled, for messages: `entry (address)`.
    hub: String,
    /// The hub acknowledged this session (it works: keep it first).
    reached: bool,
}

impl Uplink {
    /// Starts the reconnecting uplink on the current tokio runtime.
    pub fn spawn(self) -> UplinkHandle {
        let (status_tx, status) = watch::channel(UplinkStatus::default());
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(tracing::Instrument::in_current_span(
            self.run(status_tx, stop_rx),
        ));
        UplinkHandle { status, stop, task }
    }

    fn tell(&self, news: HubNews) {
        if let Some(sink) = &self.news {
            sink(news);
        }
    }

    fn answer_offline(&self, request: HubRequest) {
        if let Some(news) = offline_answer(request) {
            self.tell(news);
        }
    }

    /// Runs `fut` while answering requests as "the hub cannot be asked".
    async fn offline_while<F: Future>(&self, requests: &mut Requests, fut: F) -> F::Output {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                out = &mut fut => return out,
                request = next_request(requests) => self.answer_offline(request),
            }
        }
    }

    async fn run(mut self, status: watch::Sender<UplinkStatus>, mut stop: watch::Receiver<bool>) {
        let mut requests = self.requests.take();
        let mut attempt = 0u32;
        let mut jitter = Jitter::seeded();
        let mut dialled = Dialled::default();
        loop {
            if *stop.borrow() {
                break;
            }
            let online = Arc::new(AtomicBool::new(false));
            let result = tokio::select! {
                // A session that sees the stop first ends cleanly (news included).
                biased;
                r = self.session(&status, &mut attempt, stop.clone(), &mut requests, &online, &mut dialled) => r,
                _ = stopped(&mut stop) => Ok(()),
            };
            let (hub, candidates) = (dialled.label.clone(), dialled.candidates);
            if dialled.reached {
                dialled.rotation.connected();
            }
            // The stop may have dropped the session before it said so itself.
            if online.swap(false, Ordering::SeqCst) {
                self.tell(HubNews::Online(false));
            }
            status.send_modify(|s| s.connected = false);
            let round_over =
                result.is_err() && dialled.rotation.failed(candidates) == AfterFailure::Backoff;
            let mut delay = if round_over || result.is_ok() {
                jitter.backoff(attempt)
            } else {
                // Another hub is left to try in this round: dial it now.
                Duration::ZERO
            };
            match result {
                Ok(()) => break,
                Err(e) => {
                    if let Some(reason) = locked_out(&e) {
                        tracing::error!(
                            "uplink to {hub}: the hub refuses this till's certificate ({reason:?}): \
                             it was revoked, or the till was re-provisioned with a newer one; \
                             issue a new certificate (till360-hub ca issue). Journaling and \
                             printing go on; retrying every {}s",
                            LOCKED_OUT_RETRY.as_secs()
                        );
                        delay = LOCKED_OUT_RETRY;
                    } else if attempt == 0 {
                        tracing::warn!("uplink to {hub}: {e}; reconnecting");
                    } else {
                        tracing::debug!("uplink to {hub}: {e}; reconnecting");
                    }
                    status.send_modify(|s| s.last_error = Some(e.to_string()));
                }
            }
            if round_over {
                attempt = attempt.saturating_add(1);
            }
            let mut stop_wait = stop.clone();
            let stopping = self
                .offline_while(&mut requests, async {
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => false,
                        _ = stopped(&mut stop_wait) => true,
                    }
                })
                .await;
            if stopping {
                break;
            }
        }
    }

    /// One connection: returns `Ok` only when asked to stop.
    async fn session(
        &mut self,
        status: &watch::Sender<UplinkStatus>,
        attempt: &mut u32,
        mut stop: watch::Receiver<bool>,
        requests: &mut Requests,
        online: &Arc<AtomicBool>,
        dialled: &mut Dialled,
    ) -> Result<(), UplinkError> {
        let candidates = self
            .offline_while(requests, resolve_all(&self.hub.addresses))
            .await;
        let chosen = dialled
            .rotation
            .choose(candidates.len())
            .map(|i| candidates[i].clone());
        dialled.label = match &chosen {
            Some((entry, addr)) => format!("{entry} ({addr})"),
            None => self.hub.addresses.join(", "),
        };
        dialled.candidates = candidates.len();
        dialled.reached = false;
        let (_, addr) = match chosen {
            Some(chosen) => chosen,
            None => {
                return Err(UplinkError::Resolve {
                    address: self.hub.addresses.join(", "),
                    reason: "no address found".into(),
                })
            }
        };
        let bind: SocketAddr = if addr.is_ipv6() {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        };
        let mut endpoint = quinn::Endpoint::client(bind).map_err(UplinkError::Bind)?;
        endpoint.set_default_client_config(self.client_config.clone());
        let mut link = Link {
            pending: PendingRequests::new(self.request_timeout, MAX_PENDING),
            online: Arc::clone(online),
            hub: dialled.label.clone(),
            reached: false,
        };
        let result = self
            .converse(
                &endpoint, addr, status, attempt, &mut stop, requests, &mut link,
            )
            .await;
        dialled.reached = link.reached;
        // Nothing sent on this connection will be answered now.
        for news in link.pending.give_up_all() {
            self.tell(news);
        }
        if link.online.swap(false, Ordering::SeqCst) {
            self.tell(HubNews::Online(false));
        }
        endpoint.close(0u32.into(), b"agent closing");
        // Give the close frame a moment to leave; never block shutdown for long.
        let _ = self
            .offline_while(
                requests,
                tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()),
            )
            .await;
        result
    }

    /// One connection's IO: the hub's frames go to the [`Conversation`], its output to
    /// the hub, the till core and the status; requests, ticks and the journal's seq wake
    /// it too.
    #[allow(clippy::too_many_arguments)]
    async fn converse(
        &mut self,
        endpoint: &quinn::Endpoint,
        addr: SocketAddr,
        status: &watch::Sender<UplinkStatus>,
        attempt: &mut u32,
        stop: &mut watch::Receiver<bool>,
        requests: &mut Requests,
        link: &mut Link,
    ) -> Result<(), UplinkError> {
        let connecting = endpoint.connect(addr, &self.hub.server_name)?;
        let conn = self
            .offline_while(requests, tokio::time::timeout(CONNECT_TIMEOUT, connecting))
            .await
            .map_err(|_| UplinkError::ConnectTimeout)??;
        let (mut send, mut recv) = self.offline_while(requests, conn.open_bi()).await?;

        let (agent, journal_seq) = (self.agent.clone(), *self.journal_seq.borrow_and_update());
        let pacing = Pacing {
            window: self.hub.window,
            batch_max: self.hub.batch_max,
        };
        let till_ms = crate::runtime::now().unix_ms;
        let (mut conversation, opening) = self
            .in_journal(move |j| {
                Conversation::open(agent, pacing, j, journal_seq, SOFTWARE, till_ms)
            })
            .await?;
        status.send_modify(|s| conversation.fill_status(s));
        transmit(&mut send, opening.transmit).await?;

        let mut decoder = FrameDecoder::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut journal_seq_open = true;
        let mut health_tick =
            tokio::time::interval_at(tokio::time::Instant::now() + HEALTH_CHECK, HEALTH_CHECK);
        let mut clock_tick =
            tokio::time::interval_at(tokio::time::Instant::now() + CLOCK_REPORT, CLOCK_REPORT);
        loop {
            let (moved, ((), out)) = self
                .with_conversation(conversation, |c, j, out| c.poll(j, out))
                .await?;
            conversation = moved;
            self.deliver(out, &conversation, &mut send, status, link, attempt)
                .await?;
            let deadline = link.pending.next_deadline();
            tokio::select! {
                read = recv.read(&mut buf) => {
                    let Some(n) = read? else {
                        return Err(UplinkError::HubClosed);
                    };
                    decoder.feed(&buf[..n]);
                    while let Some(msg) = decoder.poll()? {
                        let today = crate::runtime::now().local().date_naive();
                        let (moved, ((), out)) = self
                            .with_conversation(conversation, move |c, j, out| c.handle(msg, j, today, out))
                            .await?;
                        conversation = moved;
                        self.deliver(out, &conversation, &mut send, status, link, attempt).await?;
                    }
                }
                request = next_request(requests) => {
                    if conversation.is_streaming() {
                        self.ask(request, &mut send, link).await?;
                    } else {
                        self.answer_offline(request);
                    }
                }
                _ = sleep_until(deadline), if deadline.is_some() => {
                    for news in link.pending.expire(Instant::now()) {
                        self.tell(news);
                    }
                }
                _ = clock_tick.tick() => {
                    send.write_all(&codec::encode_frame(&till_clock())?).await?;
                }
                _ = health_tick.tick() => {
                    let (moved, (report, _)) = self
                        .with_conversation(conversation, |c, j, _| c.health_report(j))
                        .await?;
                    conversation = moved;
                    if let Some(report) = report {
                        send.write_all(&codec::encode_frame(&report)?).await?;
                    }
                }
                changed = self.journal_seq.changed(), if journal_seq_open => {
                    match changed {
                        Ok(()) => conversation.journal_advanced(*self.journal_seq.borrow_and_update()),
                        // The till core stopped; keep draining what is journaled.
                        Err(_) => journal_seq_open = false,
                    }
                }
                _ = stopped(stop) => {
                    conn.close(0u32.into(), b"agent stopping");
                    return Ok(());
                }
            }
        }
    }

    /// Passes what the conversation produced on: frames to the hub, news and erased
    /// cards to the till core, answers through the pending-request table, the status.
    async fn deliver(
        &self,
        out: Output,
        conversation: &Conversation,
        send: &mut quinn::SendStream,
        status: &watch::Sender<UplinkStatus>,
        link: &mut Link,
        attempt: &mut u32,
    ) -> Result<(), UplinkError> {
        // Erased cards are handed on before the status shows the erasure version, and the
        // status moves before the news: whoever sees one and then looks at the other finds
        // it up to date.
        for erased in out.erased {
            if let Some(tx) = &self.erased_cards {
                // The till core may have stopped; the journal is what counts.
                let _ = tx.send(erased);
            }
        }
        status.send_modify(|s| conversation.fill_status(s));
        if out.went_online && !link.online.swap(true, Ordering::SeqCst) {
            self.tell(HubNews::Online(true));
        }
        for news in out.news {
            self.tell(news);
        }
        if let Some(seq) = out.acked {
            status.send_modify(|s| {
                s.connected = true;
                s.last_error = None;
            });
            if out.went_online {
                link.reached = true;
                tracing::info!("uplink: connected to {}, hub has seq {seq}", link.hub);
                *attempt = 0;
            }
        }
        for answer in out.answers {
            match answer {
                Answer::Digest { card, digest } => {
                    self.digest_reply(card, digest, conversation.digest_key(), link)
                        .await?;
                }
                Answer::CouponVerdict { code, verdict } => {
                    match link.pending.coupon_reply(&code, verdict, Instant::now()) {
                        Some(news) => self.tell(news),
                        None => tracing::debug!("uplink: late coupon verdict dropped"),
                    }
                }
            }
        }
        transmit(send, out.transmit).await
    }

    /// Sends a request to the hub and remembers it until answered or timed out.
    async fn ask(
        &self,
        request: HubRequest,
        send: &mut quinn::SendStream,
        link: &mut Link,
    ) -> Result<(), UplinkError> {
        let (frame, evicted) = match request {
            HubRequest::Digest { card } => {
                let frame = codec::encode_frame(&Message::DigestRequest { card: card.clone() })?;
                (frame, link.pending.digest_sent(card, Instant::now()))
            }
            HubRequest::CouponCheck { code } => {
                let frame = codec::encode_frame(&Message::CouponCheck { code: code.clone() })?;
                (frame, link.pending.coupon_sent(code, Instant::now()))
            }
        };
        if let Some(news) = evicted {
            self.tell(news);
        }
        send.write_all(&frame).await?;
        Ok(())
    }

    /// The hub answered a digest request: store it under the card key and pass it on,
    /// unless it came too late.
    async fn digest_reply(
        &self,
        card: CardNumber,
        digest: Option<till360_shared::campaign::Digest>,
        digest_key: Option<[u8; 32]>,
        link: &mut Link,
    ) -> Result<(), UplinkError> {
        if link.pending.digest_reply(&card, Instant::now()) == Reply::Late {
            tracing::debug!("uplink: late digest reply dropped");
            return Ok(());
        }
        let (card, digest) = self
            .in_journal(move |j| {
                conversation::store_digest(digest_key, &card, digest.as_ref(), j)?;
                Ok((card, digest))
            })
            .await?;
        self.tell(HubNews::Digest { card, digest });
        Ok(())
    }

    /// Runs a conversation step on the journal (off the runtime's threads) and gives the
    /// conversation back with what the step produced.
    async fn with_conversation<T, F>(
        &self,
        conversation: Conversation,
        f: F,
    ) -> Result<(Conversation, (T, Output)), UplinkError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Conversation, &mut Journal, &mut Output) -> Result<T, ConversationError>
            + Send
            + 'static,
    {
        let mut conversation = conversation;
        self.in_journal(move |j| {
            let mut out = Output::default();
            let value = f(&mut conversation, j, &mut out)?;
            Ok((conversation, (value, out)))
        })
        .await
    }

    async fn in_journal<T, F>(&self, f: F) -> Result<T, UplinkError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Journal) -> Result<T, ConversationError> + Send + 'static,
    {
        let journal = Arc::clone(&self.journal);
        tokio::task::spawn_blocking(move || {
            // A panic elsewhere leaves SQLite consistent (transactions roll back).
            let mut guard = journal.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| UplinkError::JournalTask(e.to_string()))?
        .map_err(UplinkError::from)
    }
}

/// The till's clock for the hub's skew check.
fn till_clock() -> Message {
    Message::TillClock {
        unix_ms: crate::runtime::now().unix_ms,
    }
}

/// Encodes what the conversation wants sent and writes it at once. An `Events` batch
/// that would exceed the frame limit goes as several frames; each `Events` frame is
/// followed by the `Chain` claim at its last event.
async fn transmit(send: &mut quinn::SendStream, items: Vec<Transmit>) -> Result<(), UplinkError> {
    if items.is_empty() {
        return Ok(());
    }
    let mut bytes = Vec::new();
    for item in items {
        match item {
            Transmit::Message(msg) => bytes.extend(codec::encode_frame(&msg)?),
            Transmit::Events(events) => encode_events(events, &mut bytes)?,
        }
    }
    send.write_all(&bytes).await?;
    Ok(())
}

fn encode_events(
    events: Vec<(till360_shared::Event, ChainHash)>,
    bytes: &mut Vec<u8>,
) -> Result<(), CodecError> {
    let mut pending = vec![events];
    while let Some(batch) = pending.pop() {
        let Some((last, hash)) = batch.last().map(|(e, link)| (e.seq, *link)) else {
            continue;
        };
        let events = batch.iter().map(|(e, _)| e.clone()).collect();
        match codec::encode_frame(&Message::Events(events)) {
            Ok(frame) => {
                bytes.extend(frame);
                bytes.extend(codec::encode_frame(&Message::Chain {
                    last_seq: last,
                    hash,
                })?);
            }
            Err(CodecError::TooLarge { .. }) if batch.len() > 1 => {
                let mut first = batch;
                let second = first.split_off(first.len() / 2);
                // Popped last-in-first-out: push the later half first.
                pending.push(second);
                pending.push(first);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The next request of the till core; never resolves when there is no queue (a closed
/// queue is forgotten, so a stopped till core costs no wake-ups).
async fn next_request(requests: &mut Requests) -> HubRequest {
    if let Some(rx) = requests {
        if let Some(request) = rx.recv().await {
            return request;
        }
        *requests = None;
    }
    std::future::pending().await
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Resolves when a stop is requested (or the handle is gone). Returns nothing so no
/// watch guard lives across an await.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Every address the configured hubs resolve to, in the configured order, each once
/// (a name that resolves to several is several hubs). A name that does not resolve is
/// logged and skipped: the other hubs may still be reachable.
async fn resolve_all(entries: &[String]) -> Vec<(String, SocketAddr)> {
    let mut out: Vec<(String, SocketAddr)> = Vec::new();
    for entry in entries {
        match tokio::net::lookup_host(entry.as_str()).await {
            Ok(addrs) => {
                for addr in addrs {
                    if !out.iter().any(|(_, seen)| *seen == addr) {
                        out.push((entry.clone(), addr));
                    }
                }
            }
            Err(e) => tracing::debug!("uplink: cannot resolve hub address {entry}: {e}"),
        }
    }
    out
}

/// Which hub to dial, and the one the current session dialled (for the reconnect loop
/// and its messages).
#[derive(Debug, Clone, Default)]
struct Dialled {
    rotation: HubRotation,
    /// `entry (address)`, or the configured list when nothing resolved.
    label: String,
    /// How many addresses the hubs resolved to.
    candidates: usize,
    /// The session got as far as the hub's acknowledgement.
    reached: bool,
}

/// The refusal, when the hub locked this till out: a `Refused {Revoked | Fenced}` frame,
/// or the connection closed with that reason (the hub closes right after the frame).
fn locked_out(error: &UplinkError) -> Option<Refusal> {
    let lockout = |r: Refusal| matches!(r, Refusal::Revoked | Refusal::Fenced).then_some(r);
    match error {
        UplinkError::Sync(SyncError::Refused { reason, .. }) => lockout(*reason),
        UplinkError::Connection(quinn::ConnectionError::ApplicationClosed(close)) => {
            let text = String::from_utf8_lossy(&close.reason);
            [Refusal::Revoked, Refusal::Fenced]
                .into_iter()
                .find(|r| text.starts_with(&format!("{r:?}:")))
        }
        _ => None,
    }
}

/// Exponential backoff with ±25 % jitter so a fleet of tills does not reconnect in step.
struct Jitter(u64);

impl Jitter {
    fn seeded() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Jitter(u64::from(nanos) | 1)
    }

    fn next(&mut self) -> u64 {
        // xorshift64: plenty for spreading reconnects.
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn backoff(&mut self, attempt: u32) -> Duration {
        let base = BACKOFF_MIN
            .saturating_mul(1u32 << attempt.min(16))
            .min(BACKOFF_MAX);
        let base_ms = base.as_millis() as u64;
        let spread = base_ms / 2;
        let offset = if spread == 0 { 0 } else { self.next() % spread };
        Duration::from_millis(base_ms - base_ms / 4 + offset)
    }
}

#[cfg(test)]
mod tests;
