//! The erasure log as the listener sees it. One task polls the log's version on its own
//! read connection and publishes it on a `watch` that every connection task selects on
//! (no per-connection polling); a connection reads the rows it needs for its agent
//! through the same connection, only when there is something newer to send.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use till360_shared::coupon::CardKey;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::store::erasures::{erasure_version, erasures_since};
use crate::store::StoreError;

/// How often the log's version is read: an erase reaches connected agents within about
/// this long.
pub const ERASURE_POLL: Duration = Duration::from_secs(1);

/// Shared by all connection tasks (cheap to clone).
#[derive(Clone)]
pub struct ErasureFeed {
    conn: Arc<Mutex<Connection>>,
    version: watch::Receiver<u64>,
}

impl ErasureFeed {
    /// Opens a read connection on the hub's SQLite file (whose schema exists) and starts
    /// the polling task, which ends when `stop` turns true. Must run inside a tokio
    /// runtime.
    pub fn start(
        db_path: &Path,
        interval: Duration,
        stop: watch::Receiver<bool>,
    ) -> Result<(ErasureFeed, JoinHandle<()>), StoreError> {
        let (conn, version, task) =
            start_poller(db_path, |conn| erasure_version(conn), interval, stop)?;
        Ok((ErasureFeed { conn, version }, task))
    }

    /// Follows the newest erasure version.
    pub fn version(&self) -> watch::Receiver<u64> {
        self.version.clone()
    }

    /// Erasures after `after_version`, oldest first, at most `limit` versions, with the
    /// card keys of `store` (what its tills can match).
    pub async fn since(
        &self,
        store: &str,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<CardKey>)>, StoreError> {
        let conn = Arc::clone(&self.conn);
        let store = store.to_string();
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            erasures_since(&*conn, &store, after_version, limit)
        })
        .await
        .map_err(|e| StoreError::CommitFailed(format!("erasure read task: {e}")))?
    }
}

/// A read connection on the hub's SQLite file, a `watch` of what `read` says on it, and
/// the task that reads again every `interval` until `stop` (the erasure log's version
/// here, the redeemed-codes ledger's in `redeemed.rs`). Must run inside a tokio runtime.
/// A poller's read connection, shared with the connection tasks that read through it.
pub(super) type PollerConn = Arc<Mutex<Connection>>;
pub(super) type Poller = (PollerConn, watch::Receiver<u64>, JoinHandle<()>);

pub(super) fn start_poller(
    db_path: &Path,
    read: fn(&Connection) -> Result<u64, StoreError>,
    interval: Duration,
    stop: watch::Receiver<bool>,
) -> Result<Poller, StoreError> {
    let conn = Connection::open(db_path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "query_only", true)?;
    let (tx, version) = watch::channel(read(&conn)?);
    let conn = Arc::new(Mutex::new(conn));
    let task = tokio::spawn(poll_version(Arc::clone(&conn), read, tx, interval, stop));
    Ok((conn, version, task))
}

async fn poll_version(
    conn: Arc<Mutex<Connection>>,
    read: fn(&Connection) -> Result<u64, StoreError>,
    tx: watch::Sender<u64>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        let conn = Arc::clone(&conn);
        let read = tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            read(&conn)
        })
        .await;
        match read {
            Ok(Ok(version)) => {
                tx.send_if_modified(|current| {
                    // Versions only grow; a smaller number is a replaced database.
                    let changed = *current != version;
                    *current = version;
                    changed
                });
            }
            // Next tick tries again; connected agents just hear later.
            Ok(Err(err)) => tracing::warn!("cannot read a downlink version: {err}"),
            Err(err) => tracing::error!("downlink version task failed: {err}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identifier;
    use crate::store::erasures::{record_erasure, Suppression};
    use till360_shared::{CardNumber, Timestamp};

    #[tokio::test]
    async fn publishes_new_versions_and_serves_the_delta() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        let writer = Connection::open(&path).unwrap();
        writer.execute_batch(crate::store::SCHEMA).unwrap();
        let suppression = Suppression::from_master(&[5; 32]);
        let stores = vec!["S1".to_string()];
        let erase = |card: &CardNumber, ms| {
            let ids = [Identifier::card(card)];
            record_erasure(
                &writer,
                &suppression,
                &ids,
                &stores,
                Timestamp::from_unix_ms(ms, 0),
            )
            .unwrap()
        };
        let card = CardNumber::parse("4006381333931").unwrap();
        erase(&card, 1);

        let (stop_tx, stop) = watch::channel(false);
        let (feed, task) = ErasureFeed::start(&path, Duration::from_millis(10), stop).unwrap();
        let mut version = feed.version();
        assert_eq!(*version.borrow_and_update(), 1);

        let other = CardNumber::parse("96385074").unwrap();
        erase(&other, 2);
        tokio::time::timeout(Duration::from_secs(30), version.wait_for(|v| *v == 2))
            .await
            .expect("the poller publishes the new version")
            .unwrap();
        let key = |card| suppression.card_key("S1", card);
        assert_eq!(
            feed.since("S1", 1, 10).await.unwrap(),
            vec![(2, vec![key(&other)])]
        );
        assert_eq!(
            feed.since("S1", 0, 1).await.unwrap(),
            vec![(1, vec![key(&card)])]
        );

        stop_tx.send(true).unwrap();
        task.await.unwrap();
    }
}
