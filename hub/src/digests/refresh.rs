//! Runs [`refresh_all`] on its own SQLite connection (on the blocking pool, never on the
//! async workers or the ingest writer): at start, every `[digests] refresh_seconds`,
//! and when asked ([`DigestRefresh::refresh_now`]). After a refresh that changed rows,
//! the generation on its `watch` grows: every connection task wakes and sends its
//! store's new rows.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use till360_shared::Timestamp;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::feed::{refresh_all, RefreshSummary};
use crate::campaigns::MasterKey;
use crate::config::DigestsConfig;
use crate::store::StoreError;

type Reply = oneshot::Sender<Result<RefreshSummary, String>>;

/// Asks the refresh task for a refresh; follows its generation (cheap to clone).
#[derive(Clone)]
pub struct DigestRefresh {
    requests: mpsc::Sender<Reply>,
    generation: watch::Receiver<u64>,
}

impl DigestRefresh {
    /// Opens the task's connection on the hub's database (whose schema exists) and
    /// starts it; it refreshes at once, then on its timer, and ends when `stop` turns
    /// true. Must run inside a tokio runtime.
    pub fn start(
        db_path: &Path,
        master: MasterKey,
        config: DigestsConfig,
        stop: watch::Receiver<bool>,
    ) -> Result<(DigestRefresh, JoinHandle<()>), StoreError> {
        let conn = Connection::open(db_path)?;
        conn.busy_timeout(Duration::from_secs(30))?;
        let (requests, inbox) = mpsc::channel(8);
        let (tx, generation) = watch::channel(0);
        let task = tokio::spawn(run(
            Arc::new(Mutex::new(conn)),
            master,
            config,
            inbox,
            tx,
            stop,
        ));
        Ok((
            DigestRefresh {
                requests,
                generation,
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
            .map_err(|_| "the digest refresh has stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the digest refresh has stopped".to_string())?
    }
}

async fn run(
    conn: Arc<Mutex<Connection>>,
    master: MasterKey,
    config: DigestsConfig,
    mut inbox: mpsc::Receiver<Reply>,
    generation: watch::Sender<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let every = Duration::from_secs(config.refresh_seconds.max(1));
    let mut why = "start";
    let mut reply: Option<Reply> = None;
    loop {
        let conn = Arc::clone(&conn);
        let master = master.clone();
        let months = config.months;
        let result = tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            let now = Timestamp::from_utc(chrono::Utc::now(), 0);
            refresh_all(&mut conn, master.as_bytes(), months, now).map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(format!("digest refresh task failed: {e}")));
        match &result {
            Ok(s) => {
                if s.any() {
                    generation.send_modify(|g| *g += 1);
                }
                tracing::info!(
                    "digests refreshed ({why}): {} stores, {} changed, {} removed",
                    s.stores,
                    s.changed,
                    s.removed
                );
            }
            // The next run tries again; tills keep their cache meanwhile.
            Err(e) => tracing::error!("digest refresh ({why}) failed: {e}"),
        }
        if let Some(reply) = reply.take() {
            let _ = reply.send(result);
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => why = "schedule",
            asked = inbox.recv() => match asked {
                Some(asker) => {
                    why = "asked";
                    reply = Some(asker);
                }
                None => return,
            },
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
    }
}
