//! The digest downlink and the on-scan requests as the listener sees them. Each read
//! takes its own connection from the hub's [`Database`] pool, so a request a till waits
//! on at the scan (a digest, a coupon check) never queues behind another agent's page.

use chrono::NaiveDate;
use till360_shared::campaign::Digest;
use till360_shared::wire::CouponVerdict;
use till360_shared::{CardNumber, Timestamp};
use tokio::sync::watch;

use super::Standing;
use crate::campaigns::MasterKey;
use crate::jobs::DigestRefresh;
use crate::store::coupon_checks::coupon_verdict;
use crate::store::digests::{self as feed, FeedPage};
use crate::store::sql::Sql;
use crate::store::{Database, StoreError};

/// Shared by all connection tasks (cheap to clone).
#[derive(Clone)]
pub struct DigestFeed {
    db: Database,
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

impl DigestFeed {
    /// Reads the hub's database (whose schema exists); wakes connections when `refresh`
    /// reports a new generation.
    pub fn new(
        db: Database,
        master: MasterKey,
        refresh: &DigestRefresh,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            db,
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
        on_blocking(&self.db, move |conn| feed::max_version(conn, &store)).await
    }

    /// `store`'s rows after `after`, at most `limit`.
    pub async fn page(
        &self,
        store: &str,
        after: u64,
        limit: usize,
    ) -> Result<FeedPage, StoreError> {
        let store = store.to_string();
        on_blocking(&self.db, move |conn| {
            feed::rows_after(conn, &store, after, limit)
        })
        .await
    }

    /// The card holder's digest, fresh from the database (`None`: unknown or erased).
    pub async fn digest_of(&self, card: CardNumber) -> Result<Option<Digest>, StoreError> {
        let master = self.master.clone();
        on_blocking(&self.db, move |conn| {
            let now = Timestamp::from_utc(chrono::Utc::now(), 0);
            feed::digest_of_card(conn, master.as_bytes(), &card, now)
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
        on_blocking(&self.db, move |conn| {
            let standing = match feed::standing_at_store(conn, &card, &store, since_ms)? {
                None => return Ok((Standing::Unknown, None)),
                Some((true, _)) => return Ok((Standing::Flagged, None)),
                Some((false, true)) => Standing::StoreCustomer,
                Some((false, false)) => Standing::OtherStores,
            };
            let now = Timestamp::from_utc(chrono::Utc::now(), 0);
            let digest = feed::digest_of_card(conn, master.as_bytes(), &card, now)?;
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
        on_blocking(&self.db, move |conn| {
            coupon_verdict(conn, master.as_bytes(), &code, today)
        })
        .await
    }
}

/// Runs `work` on a pooled connection on the blocking pool.
async fn on_blocking<T: Send + 'static>(
    db: &Database,
    work: impl FnOnce(&dyn Sql) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let db = db.clone();
    tokio::task::spawn_blocking(move || {
        let conn = db.get()?;
        work(&*conn)
    })
    .await
    .map_err(|e| StoreError::CommitFailed(format!("digest read task: {e}")))?
}
