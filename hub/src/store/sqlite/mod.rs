//! The SQLite engine: its connections ([`driver`]) and the upgrades of files older than
//! schema 7 ([`upgrade`]). Everything else is engine-neutral: [`super::SqlStore`] over a
//! [`super::Database`].

pub mod driver;
pub mod upgrade;

pub use upgrade::SCHEMA;

use std::path::Path;

use rusqlite::Connection;

use super::{Database, DatabaseOptions, SqlStore, Store, StoreError};
use crate::config::DatabaseUrl;

/// Retired: the hub's store is [`SqlStore`] over a [`Database`] (either engine). What is
/// left is a thin shim for the benches and tests other branches are moving off it: a
/// [`SqlStore`] on the SQLite file `path` (derefs to it) and a raw connection to the same
/// file. To be removed once nothing names it.
#[doc(hidden)]
pub struct SqliteStore {
    store: SqlStore,
    conn: Connection,
}

impl SqliteStore {
    /// Opens (creating if needed) the SQLite database at `path`, as the hub does.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let options = DatabaseOptions::default();
        let db = Database::open(&DatabaseUrl::Sqlite(path.to_path_buf()), &options)?;
        Ok(Self {
            store: SqlStore::open(&db)?,
            conn: driver::open(path, options.timeout)?,
        })
    }

    /// A raw connection to the same file, for the tests that still arrange rows with it.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Mutable access, for tests that open their own transaction.
    pub fn connection_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// The engine-neutral store inside.
    pub fn into_store(self) -> SqlStore {
        self.store
    }
}

impl std::ops::Deref for SqliteStore {
    type Target = SqlStore;
    fn deref(&self) -> &SqlStore {
        &self.store
    }
}

impl std::ops::DerefMut for SqliteStore {
    fn deref_mut(&mut self) -> &mut SqlStore {
        &mut self.store
    }
}

/// The benches hand the shim to the writer thread as a `Box<dyn Store>`: every call is
/// [`SqlStore`]'s.
macro_rules! delegate_store {
    ($($kind:ident $name:ident($($arg:ident: $ty:ty),*) -> $out:ty;)*) => {
        impl Store for SqliteStore {
            $(delegate_store!(@fn $kind $name($($arg: $ty),*) -> $out);)*
        }
    };
    (@fn mut $name:ident($($arg:ident: $ty:ty),*) -> $out:ty) => {
        fn $name(&mut self, $($arg: $ty),*) -> $out {
            self.store.$name($($arg),*)
        }
    };
    (@fn ref $name:ident($($arg:ident: $ty:ty),*) -> $out:ty) => {
        fn $name(&self, $($arg: $ty),*) -> $out {
            self.store.$name($($arg),*)
        }
    };
}

use crate::coupons::{CampaignKpis, CouponCounts, StoreCoupons};
use crate::profile::ProfileView;
use till360_shared::chain::ChainHash;
use till360_shared::wire::TillHealth;
use till360_shared::{AgentId, CardNumber, Timestamp};

delegate_store! {
    mut hello(agent: &AgentId, now: Timestamp) -> Result<u64, StoreError>;
    mut ingest(requests: &[super::IngestRequest<'_>], now: Timestamp)
        -> Result<Vec<super::IngestOutcome>, StoreError>;
    mut set_health(agent: &AgentId, health: &TillHealth, now: Timestamp)
        -> Result<(), StoreError>;
    mut set_clock(agent: &AgentId, clock: &super::TillClock, now: Timestamp)
        -> Result<(), StoreError>;
    mut chain_claim(agent: &AgentId, last_seq: u64, claimed: &ChainHash, now: Timestamp)
        -> Result<super::ChainCheck, StoreError>;
    ref agents() -> Result<Vec<super::AgentView>, StoreError>;
    ref profile(profile_id: &str) -> Result<Option<ProfileView>, StoreError>;
    ref profile_by_card(card: &CardNumber) -> Result<Option<ProfileView>, StoreError>;
    ref profiles(limit: usize) -> Result<Vec<ProfileView>, StoreError>;
    ref search(query: &super::ProfileQuery, limit: usize)
        -> Result<Vec<ProfileView>, StoreError>;
    ref export_profile(profile_id: &str) -> Result<Option<serde_json::Value>, StoreError>;
    mut erase_profile(profile_id: &str, now: Timestamp)
        -> Result<Option<super::ErasureReport>, StoreError>;
    mut set_consents(profile_id: &str, changes: &[super::ConsentChange], source: &str,
        now: Timestamp) -> Result<Option<ProfileView>, StoreError>;
    ref campaign_kpis(campaign_id: &str, window_days: u32)
        -> Result<CampaignKpis, StoreError>;
    ref coupon_counts()
        -> Result<std::collections::BTreeMap<String, CouponCounts>, StoreError>;
    ref coupon_stores() -> Result<Vec<StoreCoupons>, StoreError>;
    ref suspicious_cards() -> Result<Vec<super::suspicious::SuspiciousCard>, StoreError>;
    mut clear_suspicious(card: &str, now: Timestamp)
        -> Result<Option<super::suspicious::SuspiciousCard>, StoreError>;
}
