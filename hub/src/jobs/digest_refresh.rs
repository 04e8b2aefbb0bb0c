//! Runs [`refresh_job`] then [`compaction_job`] (on a connection of the hub's
//! [`Database`], on the blocking pool, never on the async workers or the ingest writer): at start, every `[digests]
//! refresh_seconds`, when asked ([`DigestRefresh::refresh_now`]) and when triggered
//! ([`DigestRefresh::trigger`]: a traits run finished, so segments may have changed).
//! After a refresh that changed rows, the generation on its `watch` grows: every
//! connection task wakes and sends its store's new rows.
//!
//! Triggers are debounced: a run covers every trigger fired before it started, so a
//! burst of triggers costs one run (two when the burst straddles a run's start).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use till360_shared::Timestamp;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::campaigns::MasterKey;
use crate::config::DigestsConfig;
pub use crate::store::digests::RefreshSummary;
use crate::store::digests::{compact, refresh_all, COMPACTION_BATCH};
use crate::store::leases::JobLease;
use crate::store::{Database, StoreError};

type Reply = oneshot::Sender<Result<RefreshSummary, String>>;
type RunResult = Result<RefreshSummary, String>;

const STOPPED: &str = "the digest refresh has stopped";

/// Triggers fired so far, and the refresh task's wake-up for them.
#[derive(Default)]
struct Triggers {
    fired: AtomicU64,
    wake: Notify,
}

/// The last finished run: how many triggers it covered, its result, and how many runs
/// finished so far.
#[derive(Clone, Default)]
struct Covered {
    triggers: u64,
    result: Option<RunResult>,
    runs: u64,
}

/// Asks the refresh task for a refresh; follows its generation (cheap to clone).
#[derive(Clone)]
pub struct DigestRefresh {
    requests: mpsc::Sender<Reply>,
    generation: watch::Receiver<u64>,
    triggers: Arc<Triggers>,
    covered: watch::Receiver<Covered>,
}

impl DigestRefresh {
    /// Starts the task on the hub's database (whose schema exists); it refreshes at
    /// once, then on its timer, and ends when `stop` turns true. Must run inside a tokio
    /// runtime.
    /// `lease_holder` names this hub among those sharing the database: the timed runs
    /// run on the hub holding the `digests` lease (one at a time); a triggered or asked
    /// run runs where it was triggered (an erase must leave the tills at once).
    pub fn start(
        db: Database,
        master: MasterKey,
        config: DigestsConfig,
        lease_holder: String,
        stop: watch::Receiver<bool>,
    ) -> Result<(DigestRefresh, JoinHandle<()>), StoreError> {
        let (requests, inbox) = mpsc::channel(8);
        let (tx, generation) = watch::channel(0);
        let (covered_tx, covered) = watch::channel(Covered::default());
        let triggers = Arc::new(Triggers::default());
        let every = Duration::from_secs(config.refresh_seconds.max(1));
        // The holder renews it at every timed run; another hub takes over two periods
        // (and a minute) after the holder's last.
        let lease = JobLease::new(
            db.clone(),
            "digests",
            lease_holder,
            every * 2 + Duration::from_secs(60),
        );
        let task = tokio::spawn(run(
            db,
            lease,
            master,
            config,
            Channels {
                inbox,
                triggers: Arc::clone(&triggers),
                generation: tx,
                covered: covered_tx,
            },
            stop,
        ));
        Ok((
            DigestRefresh {
                requests,
                generation,
                triggers,
                covered,
            },
            task,
        ))
    }

    /// Grows after every refresh that changed a row.
    pub fn generation(&self) -> watch::Receiver<u64> {
        self.generation.clone()
    }

    /// Refreshes now and waits for the result.
    pub async fn refresh_now(&self) -> Result<RefreshSummary, String> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(reply)
            .await
            .map_err(|_| STOPPED.to_string())?;
        answer.await.map_err(|_| STOPPED.to_string())?
    }

    /// Asks for a refresh soon without waiting (callable from any thread); returns the
    /// trigger's number for [`Self::refreshed_after`]. Triggers fired before a run
    /// starts share that run.
    pub fn trigger(&self) -> u64 {
        let number = self.triggers.fired.fetch_add(1, Ordering::SeqCst) + 1;
        self.triggers.wake.notify_one();
        number
    }

    /// How many triggers were fired so far.
    pub fn triggers_fired(&self) -> u64 {
        self.triggers.fired.load(Ordering::SeqCst)
    }

    /// Waits until a finished run covers trigger `number` (it started after the trigger
    /// was fired) and returns the result of the latest run.
    pub async fn refreshed_after(&self, number: u64) -> Result<RefreshSummary, String> {
        let mut covered = self.covered.clone();
        let done = covered
            .wait_for(|c| c.triggers >= number && c.result.is_some())
            .await
            .map_err(|_| STOPPED.to_string())?;
        done.result.clone().unwrap_or_else(|| Err(STOPPED.into()))
    }
}

struct Channels {
    inbox: mpsc::Receiver<Reply>,
    triggers: Arc<Triggers>,
    generation: watch::Sender<u64>,
    covered: watch::Sender<Covered>,
}

async fn run(
    db: Database,
    lease: JobLease,
    master: MasterKey,
    config: DigestsConfig,
    mut channels: Channels,
    mut stop: watch::Receiver<bool>,
) {
    let every = Duration::from_secs(config.refresh_seconds.max(1));
    let mut why = "start";
    let mut reply: Option<Reply> = None;
    'serve: loop {
        // Every trigger fired until here is committed in the database: this run sees it.
        let covers = channels.triggers.fired.load(Ordering::SeqCst);
        let timed = why == "start" || why == "schedule";
        let result = if timed && !holds(&lease).await {
            Ok(RefreshSummary::default())
        } else {
            refresh_and_compact(&db, &master, config).await
        };
        match &result {
            Ok(s) => {
                if s.any() {
                    channels.generation.send_modify(|g| *g += 1);
                }
                tracing::info!(
                    "digests refreshed ({why}): {} stores, {} changed, {} removed, {} old removals dropped",
                    s.stores,
                    s.changed,
                    s.removed,
                    s.compacted
                );
            }
            // The next run tries again; tills keep their cache meanwhile.
            Err(e) => tracing::error!("digest refresh ({why}) failed: {e}"),
        }
        channels.covered.send_modify(|c| {
            c.triggers = covers;
            c.result = Some(result.clone());
            c.runs += 1;
        });
        if let Some(reply) = reply.take() {
            let _ = reply.send(result);
        }
        let next = Instant::now() + every;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {
                    why = "schedule";
                    break;
                }
                asked = channels.inbox.recv() => match asked {
                    Some(asker) => {
                        why = "asked";
                        reply = Some(asker);
                        break;
                    }
                    None => break 'serve,
                },
                () = channels.triggers.wake.notified() => {
                    // A trigger the last run already covered (it was fired before that
                    // run started) needs no run of its own.
                    if channels.triggers.fired.load(Ordering::SeqCst) > covers {
                        why = "traits recomputed";
                        break;
                    }
                }
                _ = stop.wait_for(|stopped| *stopped) => break 'serve,
            }
        }
    }
    release(lease).await;
}

/// Whether this hub holds the digests lease (taking or renewing it), on the blocking pool.
async fn holds(lease: &JobLease) -> bool {
    let lease = lease.clone();
    tokio::task::spawn_blocking(move || lease.hold(Timestamp::from_utc(chrono::Utc::now(), 0)))
        .await
        .unwrap_or(false)
}

/// Gives the digests lease up if this hub holds it (a clean stop), on the blocking pool:
/// another hub takes the timed runs at its next one instead of after the lease lapses.
async fn release(lease: JobLease) {
    let _ = tokio::task::spawn_blocking(move || lease.release()).await;
}

/// One refresh, then one compaction run, on the blocking pool; a failed compaction is
/// logged and retried on the next run (the refresh's changes stand either way).
async fn refresh_and_compact(
    db: &Database,
    master: &MasterKey,
    config: DigestsConfig,
) -> RunResult {
    let db = db.clone();
    let master = master.clone();
    tokio::task::spawn_blocking(move || {
        let now = Timestamp::from_utc(chrono::Utc::now(), 0);
        let mut summary =
            refresh_job(&db, master.as_bytes(), config, now).map_err(|e| e.to_string())?;
        match compaction_job(&db, config, now) {
            Ok(dropped) => summary.compacted = dropped,
            Err(e) => tracing::error!("digest feed compaction failed: {e}"),
        }
        Ok(summary)
    })
    .await
    .unwrap_or_else(|e| Err(format!("digest refresh task failed: {e}")))
}

// The two jobs below must each run once across hubs sharing a database: each is where
// its database lease is taken (a hub without it skips the run) once several hubs share
// one. Blocking.

/// The digest refresh job: every store's feed brought in line with the database.
pub fn refresh_job(
    db: &Database,
    master: &[u8],
    config: DigestsConfig,
    now: Timestamp,
) -> Result<RefreshSummary, StoreError> {
    refresh_all(&*db.get()?, master, config.months, now)
}

/// The digest compaction job: old removals dropped (at most [`COMPACTION_BATCH`] a run).
pub fn compaction_job(
    db: &Database,
    config: DigestsConfig,
    now: Timestamp,
) -> Result<usize, StoreError> {
    compact(
        &*db.get()?,
        now,
        config.removal_retention_days,
        COMPACTION_BATCH,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Triggers fired while a refresh cannot finish (a writer holds the database) are
    /// all served by at most two runs: the one under way, and one after it for those
    /// it had not covered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_triggers_costs_at_most_two_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        let db = Database::open(
            &crate::config::DatabaseUrl::Sqlite(path),
            &crate::store::DatabaseOptions::default(),
        )
        .unwrap();
        let blocker = db.get().unwrap();
        blocker
            .execute(
                "INSERT INTO agents (store, till, last_seq, last_seen_ms) VALUES ('S1', 'T1', 0, 0)",
                crate::sql_params![],
            )
            .unwrap();
        blocker.begin(crate::store::sql::TxKind::Write).unwrap();
        let master = MasterKey::load_or_create(dir.path()).unwrap();
        let config = DigestsConfig {
            refresh_seconds: 86_400,
            ..DigestsConfig::default()
        };
        let (stop_tx, stop) = watch::channel(false);
        let (refresh, task) =
            DigestRefresh::start(db.clone(), master, config, "test-hub".into(), stop).unwrap();
        let mut last = 0;
        for _ in 0..50 {
            last = refresh.trigger();
        }
        assert_eq!((last, refresh.triggers_fired()), (50, 50));
        blocker.commit().unwrap();

        let summary = refresh.refreshed_after(last).await.unwrap();
        assert_eq!(summary.stores, 1);
        let runs = refresh.covered.borrow().runs;
        assert!((1..=2).contains(&runs), "{runs} runs for 50 triggers");
        // An asked refresh still runs once more; nothing else ran meanwhile.
        refresh.refresh_now().await.unwrap();
        assert_eq!(refresh.covered.borrow().runs, runs + 1);

        stop_tx.send(true).unwrap();
        task.await.unwrap();
        assert!(refresh.refresh_now().await.is_err(), "stopped");
    }

    /// Several hubs on one database: the timed runs are the lease holder's; another hub
    /// still refreshes when triggered (an erase there must reach the tills at once).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn timed_runs_are_the_lease_holders_and_triggered_runs_run_anywhere() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(
            &crate::config::DatabaseUrl::Sqlite(dir.path().join("hub.db")),
            &crate::store::DatabaseOptions::default(),
        )
        .unwrap();
        {
            let conn = db.get().unwrap();
            conn.execute(
                "INSERT INTO agents (store, till, last_seq, last_seen_ms) VALUES ('S1', 'T1', 0, 0)",
                crate::sql_params![],
            )
            .unwrap();
            let now = Timestamp::from_utc(chrono::Utc::now(), 0);
            assert!(
                crate::store::leases::acquire(&*conn, "digests", "hub-a", now, 3_600_000).unwrap()
            );
        }
        let master = MasterKey::load_or_create(dir.path()).unwrap();
        let config = DigestsConfig {
            refresh_seconds: 86_400,
            ..DigestsConfig::default()
        };
        let (stop_tx, stop) = watch::channel(false);
        let (refresh, task) =
            DigestRefresh::start(db.clone(), master, config, "hub-b".into(), stop).unwrap();
        let mut covered = refresh.covered.clone();
        let start = covered
            .wait_for(|c| c.runs >= 1)
            .await
            .unwrap()
            .result
            .clone();
        assert_eq!(
            start.unwrap().unwrap().stores,
            0,
            "hub A holds the lease: hub B's start run skips"
        );
        let triggered = refresh.refreshed_after(refresh.trigger()).await.unwrap();
        assert_eq!(triggered.stores, 1, "a trigger runs on hub B all the same");
        stop_tx.send(true).unwrap();
        task.await.unwrap();
    }
}
