//! Runs [`recompute`](super::recompute) on its own thread, on a connection of the
//! hub's [`Database`]:
//! once at start, then every `[traits] recompute_minutes`, after an import (another
//! process: see [`freshness`](crate::store::freshness)), and whenever asked
//! (`RunningHub::recompute_traits`, `POST /api/v1/traits/recompute`). Fitting takes
//! seconds on a large population, so it never runs on the async runtime or the ingest
//! writer. After every run that committed, and when `till360-hub traits recompute`
//! computed them in its own process, it calls the `recomputed` hook (the hub refreshes
//! the digests: segments changed).

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use till360_shared::Timestamp;

use super::traits_recompute::{recompute, RecomputeSummary};
use crate::config::HubConfig;
use crate::store::leases::JobLease;
use crate::store::{freshness, Database};

/// How often the running hub looks for imports (`store::freshness`).
const IMPORT_POLL: Duration = Duration::from_secs(1);
/// Several hubs on one database: the one holding the traits lease runs the scheduled,
/// start and import runs (a run asked for runs where it was asked). The holder renews it
/// this often; a hub that died loses it after [`LEASE_TTL`] and another takes over.
const LEASE_RENEW: Duration = Duration::from_secs(10);
const LEASE_TTL: Duration = Duration::from_secs(60);

enum Request {
    Now(Sender<Result<RecomputeSummary, String>>),
    Stop,
}

pub struct TraitsSchedule {
    handle: RecomputeHandle,
    thread: Option<JoinHandle<()>>,
}

/// Asks the traits thread for a recompute (cheap to clone, e.g. into the API).
#[derive(Clone, Debug)]
pub struct RecomputeHandle {
    requests: Sender<Request>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Request::Now(_) => "Now",
            Request::Stop => "Stop",
        })
    }
}

impl RecomputeHandle {
    /// Recomputes now and waits for the result (blocking: call from a blocking context).
    pub fn recompute_now(&self) -> Result<RecomputeSummary, String> {
        let (reply, answer) = mpsc::channel();
        self.requests
            .send(Request::Now(reply))
            .map_err(|_| "the traits thread has stopped".to_string())?;
        answer
            .recv()
            .map_err(|_| "the traits thread has stopped".to_string())?
    }
}

/// The traits thread's state between runs.
struct Thread {
    db: Database,
    lease: JobLease,
    /// When this thread last took or renewed the lease, and whether it holds it.
    lease_checked: Option<(Instant, bool)>,
    config: HubConfig,
    recomputed: Box<dyn Fn() + Send>,
    /// The import counter the last run saw, and a newer value seen at the last poll
    /// (imports still under way: wait until it stops changing).
    imports_done: i64,
    imports_seen: Option<i64>,
    /// The last `computed_at` this thread knows of.
    computed_at: Option<Timestamp>,
}

impl Thread {
    /// Whether this hub holds the traits lease (renewed at most every [`LEASE_RENEW`]).
    fn holds_lease(&mut self) -> bool {
        if let Some((at, held)) = self.lease_checked {
            if at.elapsed() < LEASE_RENEW {
                return held;
            }
        }
        let held = self.lease.hold(Timestamp::from_utc(chrono::Utc::now(), 0));
        if self.lease_checked.is_some_and(|(_, was)| was != held) || self.lease_checked.is_none() {
            tracing::info!(
                "traits: {}",
                if held {
                    "this hub runs the scheduled traits recomputes"
                } else {
                    "another hub runs the scheduled traits recomputes"
                }
            );
        }
        self.lease_checked = Some((Instant::now(), held));
        held
    }

    fn run(&mut self, why: &str) -> Result<RecomputeSummary, String> {
        if why != "asked" && !self.holds_lease() {
            return Err("another hub holds the traits lease".into());
        }
        let conn = self.db.get().map_err(|e| e.to_string());
        let result = conn.and_then(|conn| {
            if let Ok(imports) = freshness::imports(&*conn) {
                self.imports_done = imports;
                self.imports_seen = None;
            }
            let now = Timestamp::from_utc(chrono::Utc::now(), 0);
            recompute(&*conn, &self.config, now).map_err(|e| e.to_string())
        });
        match &result {
            Ok(s) => {
                tracing::info!(
                    "traits recomputed ({why}): {} profiles, segments {:?}",
                    s.profiles,
                    s.segments
                );
                self.computed_at = Some(s.computed_at);
                (self.recomputed)();
            }
            Err(e) => tracing::error!("traits recompute ({why}) failed: {e}"),
        }
        result
    }

    /// One look at the database: an import that has settled is recomputed; traits
    /// computed by another process are passed on to the hook.
    fn poll(&mut self) {
        // Renew (or take over) the lease even while nothing is due.
        self.holds_lease();
        let conn = match self.db.get() {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!("traits: cannot reach the database: {e}");
                return;
            }
        };
        match freshness::imports(&*conn) {
            Ok(imports) if imports != self.imports_done => {
                if self.imports_seen == Some(imports) {
                    drop(conn);
                    let _ = self.run("import");
                    return;
                }
                self.imports_seen = Some(imports);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("traits: cannot read the import counter: {e}"),
        }
        if let Ok(at) = freshness::computed_at(&*conn) {
            if at != self.computed_at {
                tracing::info!("traits recomputed by another process: refreshing the digests");
                self.computed_at = at;
                (self.recomputed)();
            }
        }
    }
}

impl TraitsSchedule {
    /// `recomputed` is called on the traits thread after each committed recompute,
    /// before an asker hears the result; it must not block.
    /// `lease_holder` names this hub among those sharing the database.
    pub fn start(
        db: Database,
        config: HubConfig,
        lease_holder: String,
        recomputed: Box<dyn Fn() + Send>,
    ) -> std::io::Result<TraitsSchedule> {
        let (requests, inbox) = mpsc::channel();
        let every = Duration::from_secs(u64::from(config.traits.recompute_minutes.max(1)) * 60);
        let thread = std::thread::Builder::new()
            .name("traits".into())
            .spawn(move || {
                let lease = JobLease::new(db.clone(), "traits", lease_holder, LEASE_TTL);
                let mut state = Thread {
                    db,
                    lease,
                    lease_checked: None,
                    config,
                    recomputed,
                    imports_done: 0,
                    imports_seen: None,
                    computed_at: None,
                };
                let _ = state.run("start");
                let mut due = Instant::now() + every;
                loop {
                    let wait = IMPORT_POLL.min(due.saturating_duration_since(Instant::now()));
                    match inbox.recv_timeout(wait) {
                        Ok(Request::Now(reply)) => {
                            let _ = reply.send(state.run("asked"));
                        }
                        Err(RecvTimeoutError::Timeout) if Instant::now() >= due => {
                            let _ = state.run("schedule");
                            due = Instant::now() + every;
                        }
                        Err(RecvTimeoutError::Timeout) => state.poll(),
                        Ok(Request::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                // Another hub takes the job at once instead of after the lease lapses.
                if state.lease_checked.is_some_and(|(_, held)| held) {
                    state.lease.release();
                }
            })?;
        Ok(TraitsSchedule {
            handle: RecomputeHandle { requests },
            thread: Some(thread),
        })
    }

    /// A handle that asks for recomputes while the schedule runs.
    pub fn handle(&self) -> RecomputeHandle {
        self.handle.clone()
    }

    /// Recomputes now and waits for the result (blocking: call from a blocking context).
    pub fn recompute_now(&self) -> Result<RecomputeSummary, String> {
        self.handle.recompute_now()
    }

    /// Stops after the recompute in progress, if any.
    pub fn stop(mut self) {
        let _ = self.handle.requests.send(Request::Stop);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("traits thread panicked");
            }
        }
    }
}
