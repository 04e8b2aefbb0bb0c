//! The erasure log as the listener sees it. One task polls the log's version on the
//! hub's [`Database`] and publishes it on a `watch` that every connection task selects
//! on (no per-connection polling); a connection reads the rows it needs for its agent
//! only when there is something newer to send.
//!
//! Every hub runs its own poller: each publishes to its own connections. The erasure's
//! fan-out to the stores (its card keys per known store) is written in the erase's own
//! transaction, so nothing here is a job that must run once across hubs.

use std::time::Duration;

use till360_shared::coupon::CardKey;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::store::downlink::{erasure_version, erasures_since};
use crate::store::sql::Sql;
use crate::store::{Database, StoreError};

/// How often the log's version is read: an erase reaches connected agents within about
/// this long.
pub const ERASURE_POLL: Duration = Duration::from_secs(1);

/// Shared by all connection tasks (cheap to clone).
#[derive(Clone)]
pub struct ErasureFeed {
    db: Database,
    version: watch::Receiver<u64>,
}

impl ErasureFeed {
    /// Reads the hub's database (whose schema exists) and starts the polling task,
    /// which ends when `stop` turns true.
    pub async fn start(
        db: Database,
        interval: Duration,
        stop: watch::Receiver<bool>,
    ) -> Result<(ErasureFeed, JoinHandle<()>), StoreError> {
        let (version, task) = start_poller(&db, erasure_version, interval, stop).await?;
        Ok((ErasureFeed { db, version }, task))
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
        let store = store.to_string();
        on_blocking(&self.db, "erasure", move |conn| {
            erasures_since(conn, &store, after_version, limit)
        })
        .await
    }
}

/// Runs `work` on a pooled connection on the blocking pool (`what` names the read in
/// an error).
pub(super) async fn on_blocking<T: Send + 'static>(
    db: &Database,
    what: &'static str,
    work: impl FnOnce(&dyn Sql) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let db = db.clone();
    tokio::task::spawn_blocking(move || {
        let conn = db.get()?;
        work(&*conn)
    })
    .await
    .map_err(|e| StoreError::CommitFailed(format!("{what} read task: {e}")))?
}

/// What a downlink version poller reads (the erasure log's version here, the
/// redeemed-codes ledger's in `redeemed.rs`).
pub(super) type ReadVersion = fn(&dyn Sql) -> Result<u64, StoreError>;

/// A `watch` of what `read` says on `db`, read once now, and the task that reads again
/// every `interval` until `stop`.
pub(super) async fn start_poller(
    db: &Database,
    read: ReadVersion,
    interval: Duration,
    stop: watch::Receiver<bool>,
) -> Result<(watch::Receiver<u64>, JoinHandle<()>), StoreError> {
    let first = on_blocking(db, "downlink version", read).await?;
    let (tx, version) = watch::channel(first);
    let task = tokio::spawn(poll_version(db.clone(), read, tx, interval, stop));
    Ok((version, task))
}

async fn poll_version(
    db: Database,
    read: ReadVersion,
    tx: watch::Sender<u64>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        match on_blocking(&db, "downlink version", read).await {
            Ok(version) => {
                tx.send_if_modified(|current| {
                    // Versions only grow; a smaller number is a replaced database.
                    let changed = *current != version;
                    *current = version;
                    changed
                });
            }
            // Next tick tries again; connected agents just hear later.
            Err(err) => tracing::warn!("cannot read a downlink version: {err}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql_params;
    use crate::store::erasures::Suppression;
    use crate::store::sql::SqlExt;
    use till360_shared::CardNumber;

    #[tokio::test]
    async fn publishes_new_versions_and_serves_the_delta() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(
            &crate::config::DatabaseUrl::Sqlite(dir.path().join("hub.db")),
            &crate::store::DatabaseOptions::default(),
        )
        .unwrap();
        let writer = db.get().unwrap();
        let suppression = Suppression::from_master(&[5; 32]);
        let stores = vec!["S1".to_string()];
        // The log's rows as an erase appends them (store::erasures::record_erasure).
        let erase = |card: &CardNumber, ms: i64| {
            let version: i64 = writer
                .query_one(
                    "INSERT INTO erasures (erased_at_ms) VALUES (?1) RETURNING version",
                    sql_params![ms],
                )
                .unwrap()
                .get(0)
                .unwrap();
            for store in &stores {
                writer
                    .execute(
                        "INSERT INTO erasure_card_keys (version, store, card_key) VALUES (?1, ?2, ?3)",
                        sql_params![version, store, suppression.card_key(store, card).0],
                    )
                    .unwrap();
            }
        };
        let card = CardNumber::parse("4006381333931").unwrap();
        erase(&card, 1);

        let (stop_tx, stop) = watch::channel(false);
        let (feed, task) = ErasureFeed::start(db.clone(), Duration::from_millis(10), stop)
            .await
            .unwrap();
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
