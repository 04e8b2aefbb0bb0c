//! Runs [`recompute`](super::recompute) on its own thread and SQLite connection:
//! once at start, then every `[traits] recompute_minutes`, and whenever asked
//! (`RunningHub::recompute_traits`). Fitting takes seconds on a large population, so it
//! never runs on the async runtime or the ingest writer. After every run that committed,
//! it calls the `recomputed` hook (the hub refreshes the digests: segments changed).

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;
use till360_shared::Timestamp;

use super::{recompute, RecomputeSummary};
use crate::config::HubConfig;

enum Request {
    Now(Sender<Result<RecomputeSummary, String>>),
    Stop,
}

pub struct TraitsSchedule {
    requests: Sender<Request>,
    thread: Option<JoinHandle<()>>,
}

impl TraitsSchedule {
    /// `recomputed` is called on the traits thread after each committed recompute,
    /// before an asker hears the result; it must not block.
    pub fn start(
        db_path: &Path,
        config: HubConfig,
        recomputed: Box<dyn Fn() + Send>,
    ) -> std::io::Result<TraitsSchedule> {
        let conn = Connection::open(db_path).map_err(std::io::Error::other)?;
        conn.busy_timeout(Duration::from_secs(30))
            .map_err(std::io::Error::other)?;
        // Replaced traits and memberships are personal data: overwritten, not left in
        // free space (as on the store's own connections).
        conn.pragma_update(None, "secure_delete", true)
            .map_err(std::io::Error::other)?;
        let (requests, inbox) = mpsc::channel();
        let every = Duration::from_secs(u64::from(config.traits.recompute_minutes.max(1)) * 60);
        let thread = std::thread::Builder::new()
            .name("traits".into())
            .spawn(move || {
                let mut conn = conn;
                let mut run = |why: &str| {
                    let now = Timestamp::from_utc(chrono::Utc::now(), 0);
                    let result = recompute(&mut conn, &config, now).map_err(|e| e.to_string());
                    match &result {
                        Ok(s) => {
                            tracing::info!(
                                "traits recomputed ({why}): {} profiles, segments {:?}",
                                s.profiles,
                                s.segments
                            );
                            recomputed();
                        }
                        Err(e) => tracing::error!("traits recompute ({why}) failed: {e}"),
                    }
                    result
                };
                let _ = run("start");
                loop {
                    match inbox.recv_timeout(every) {
                        Ok(Request::Now(reply)) => {
                            let _ = reply.send(run("asked"));
                        }
                        Err(RecvTimeoutError::Timeout) => {
                            let _ = run("schedule");
                        }
                        Ok(Request::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
            })?;
        Ok(TraitsSchedule {
            requests,
            thread: Some(thread),
        })
    }

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

    /// Stops after the recompute in progress, if any.
    pub fn stop(mut self) {
        let _ = self.requests.send(Request::Stop);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("traits thread panicked");
            }
        }
    }
}
