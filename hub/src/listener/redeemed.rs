//! The redeemed-codes downlink as the listener sees it: one task polls the coupon
//! ledger's newest commit sequence and publishes it on a `watch` every connection task
//! selects on; a connection reads its store's codes only when there is something newer.
//! Also carries the clock check of `[coupons] max_clock_skew_secs` (`TillClock`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::erasures::{start_poller, PollerConn};
use crate::store::coupon_ledger::{redeemed_since, redeemed_version};
use crate::store::StoreError;

/// How often the ledger's version is read: a redemption reaches the store's other
/// connected tills within about this long after its commit.
pub const REDEEMED_POLL: Duration = Duration::from_secs(1);

/// Shared by all connection tasks (cheap to clone).
#[derive(Clone)]
pub struct RedeemedFeed {
    conn: PollerConn,
    version: watch::Receiver<u64>,
    max_clock_skew: Duration,
}

impl RedeemedFeed {
    /// Opens a read connection on the hub's SQLite file (whose schema exists) and starts
    /// the polling task, which ends when `stop` turns true. Must run inside a tokio
    /// runtime.
    pub fn start(
        db_path: &Path,
        interval: Duration,
        max_clock_skew: Duration,
        stop: watch::Receiver<bool>,
    ) -> Result<(RedeemedFeed, JoinHandle<()>), StoreError> {
        let (conn, version, task) =
            start_poller(db_path, |conn| redeemed_version(conn), interval, stop)?;
        let feed = RedeemedFeed {
            conn,
            version,
            max_clock_skew,
        };
        Ok((feed, task))
    }

    /// Follows the ledger's newest commit sequence.
    pub fn version(&self) -> watch::Receiver<u64> {
        self.version.clone()
    }

    /// `[coupons] max_clock_skew_secs`.
    pub fn max_clock_skew(&self) -> Duration {
        self.max_clock_skew
    }

    /// `store`'s redeemed codes committed after `after`, not expired before `today`.
    pub async fn since(
        &self,
        store: &str,
        after: u64,
        today: NaiveDate,
        limit: usize,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        let conn = Arc::clone(&self.conn);
        let store = store.to_string();
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            redeemed_since(&*conn, &store, after, today, limit)
        })
        .await
        .map_err(|e| StoreError::CommitFailed(format!("redeemed read task: {e}")))?
    }
}
