//! The digest downlink and the on-scan requests as the listener sees them. Two read
//! connections: one for the bulk feed (pages of up to a thousand digests), one for the
//! requests a till waits on at the scan (a digest, a coupon check), so a request never
//! queues behind another agent's page.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::NaiveDate;
use rusqlite::Connection;
use till360_shared::campaign::Digest;
use till360_shared::wire::CouponVerdict;
use till360_shared::{CardNumber, Timestamp};
use tokio::sync::watch;

use super::Standing;
use crate::campaigns::MasterKey;
use crate::digests::{self, DigestRefresh, FeedPage};
use crate::store::coupon_checks::coupon_verdict;
use crate::store::StoreError;

/// Shared by all connection tasks (cheap to clone).
#[derive(Clone)]
pub struct DigestFeed {
    bulk: Arc<Mutex<Connection>>,
    lookups: Arc<Mutex<Connection>>,
    master: MasterKey,
    generation: watch::Receiver<u64>,
}

impl std::fmt::Debug for DigestFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestFeed")
            .field("generation", &*self.generation.borrow())
            .finish_non_exhaustive()
    }
}

fn read_connection(db_path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(db_path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}

impl DigestFeed {
    /// Opens the read connections on the hub's database (whose schema exists); wakes
    /// connections when `refresh` reports a new generation.
    pub fn new(
        db_path: &Path,
        master: MasterKey,
        refresh: &DigestRefresh,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            bulk: Arc::new(Mutex::new(read_connection(db_path)?)),
            lookups: Arc::new(Mutex::new(read_connection(db_path)?)),
            master,
            generation: refresh.generation(),
        })
    }

    /// Follows the refresh generation: a change means "there may be new rows".
    pub fn generation(&self) -> watch::Receiver<u64> {
        self.generation.clone()
    }

    /// The newest version of `store`'s feed.
    pub async fn max_version(&self, store: &str) -> Result<u64, StoreError> {
        let store = store.to_string();
        on_blocking(&self.bulk, move |conn| digests::max_version(conn, &store)).await
    }

    /// `store`'s rows after `after`, at most `limit`.
    pub async fn page(
        &self,
        store: &str,
        after: u64,
        limit: usize,
    ) -> Result<FeedPage, StoreError> {
        let store = store.to_string();
        on_blocking(&self.bulk, move |conn| {
            digests::rows_after(conn, &store, after, limit)
        })
        .await
    }

    /// The card holder's digest, fresh from the database (`None`: unknown or erased).
    pub async fn digest_of(&self, card: CardNumber) -> Result<Option<Digest>, StoreError> {
        let master = self.master.clone();
        on_blocking(&self.lookups, move |conn| {
            let now = Timestamp::from_utc(chrono::Utc::now(), 0);
            digests::digest_of_card(conn, master.as_bytes(), &card, now)
        })
        .await
    }

    /// What `card` is to `store` (customers since `since_ms`), with the holder's digest
    /// when there is one to give (see `till_guard` for who gets it).
    pub async fn digest_for_store(
        &self,
        card: CardNumber,
        store: String,
        since_ms: i64,
    ) -> Result<(Standing, Option<Digest>), StoreError> {
        let master = self.master.clone();
        on_blocking(&self.lookups, move |conn| {
            let standing = match digests::facts::standing_at_store(conn, &card, &store, since_ms)? {
                None => return Ok((Standing::Unknown, None)),
                Some((true, _)) => return Ok((Standing::Flagged, None)),
                Some((false, true)) => Standing::StoreCustomer,
                Some((false, false)) => Standing::OtherStores,
            };
            let now = Timestamp::from_utc(chrono::Utc::now(), 0);
            let digest = digests::digest_of_card(conn, master.as_bytes(), &card, now)?;
            Ok((standing, digest))
        })
        .await
    }

    /// The hub's verdict on a scanned coupon code on `today`.
    pub async fn coupon_verdict(
        &self,
        code: String,
        today: NaiveDate,
    ) -> Result<CouponVerdict, StoreError> {
        let master = self.master.clone();
        on_blocking(&self.lookups, move |conn| {
            coupon_verdict(conn, master.as_bytes(), &code, today)
        })
        .await
    }
}

async fn on_blocking<T: Send + 'static>(
    conn: &Arc<Mutex<Connection>>,
    work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let conn = Arc::clone(conn);
    tokio::task::spawn_blocking(move || {
        let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
        work(&conn)
    })
    .await
    .map_err(|e| StoreError::CommitFailed(format!("digest read task: {e}")))?
}
