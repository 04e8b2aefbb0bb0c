//! The engine-neutral store over one pooled connection of a [`Database`]: the whole
//! [`Store`] trait, written once for SQLite and PostgreSQL. The hub's writer thread runs
//! on one; the CLI, the demo and tests open one with [`SqlStore::open`].

use std::collections::BTreeMap;

use till360_shared::chain::ChainHash;
use till360_shared::wire::TillHealth;
use till360_shared::{AgentId, CardNumber, Timestamp};

use super::erasures::{self, Suppression};
use super::ingest::{self, MergeSettings};
use super::suspicious::{self, SuspiciousCard};
use super::{
    agents, coupon_kpis, identity, privacy, profiles, AgentView, ChainCheck, ConsentChange,
    Database, ErasureReport, IngestOutcome, IngestRequest, Pooled, ProfileQuery, Store, StoreError,
    TillClock,
};
use crate::config::{FraudConfig, IdentityConfig};
use crate::coupons::{CampaignKpis, CouponCounts, StoreCoupons};
use crate::identity::BlockedIdentifier;
use crate::profile::ProfileView;

/// One committed receipt (`SqlStore::committed_receipts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedReceipt {
    pub store: String,
    pub till: String,
    pub seq: i64,
    pub receipt_no: Option<String>,
}

pub struct SqlStore {
    conn: Pooled,
    /// Where a new connection comes from when this one broke (a PostgreSQL server that
    /// restarted): the writer thread lives as long as the hub and must not stay on a
    /// dead connection.
    database: Option<Database>,
    identity: IdentityConfig,
    fraud: FraudConfig,
    coupon_master: Option<[u8; 32]>,
    suppression: Option<Suppression>,
}

impl SqlStore {
    /// A store on `conn`, with the default `[identity]` and `[fraud]` settings and no
    /// coupon master secret.
    /// The connection, for store tests that look at the rows.
    #[cfg(test)]
    pub(crate) fn conn(&self) -> &dyn super::sql::Sql {
        &*self.conn
    }

    pub fn new(conn: Pooled) -> Self {
        Self {
            conn,
            database: None,
            identity: IdentityConfig::default(),
            fraud: FraudConfig::default(),
            coupon_master: None,
            suppression: None,
        }
    }

    /// A store on a connection of `database`, taking a new one when it breaks.
    pub fn open(database: &Database) -> Result<Self, StoreError> {
        let mut store = Self::new(database.get()?);
        store.database = Some(database.clone());
        Ok(store)
    }

    /// Gives the store the coupon master secret: redeemed codes are checked at merge
    /// (`genuine` or `forged` instead of `unchecked`), it can erase, and erased cards are
    /// kept out of merges. An erasure log of an older SQLite hub (cards in clear) is
    /// hashed here.
    pub fn set_coupon_master(&mut self, master: &[u8; 32]) -> Result<(), StoreError> {
        let suppression = Suppression::from_master(master);
        let converted = erasures::hash_clear_erasures(&*self.conn, &suppression)?;
        if converted > 0 {
            tracing::info!("erasure log: {converted} clear cards replaced by keyed hashes");
        }
        self.coupon_master = Some(*master);
        self.suppression = Some(suppression);
        Ok(())
    }

    /// Sets the rules carded receipts are checked against at ingest (`[fraud]`).
    pub fn set_fraud_config(&mut self, config: FraudConfig) {
        self.fraud = config;
    }

    /// Sets the identity graph's limits and how search normalises phone numbers
    /// (`[identity]`).
    pub fn set_identity_config(&mut self, config: IdentityConfig) {
        self.identity = config;
    }

    /// Identifiers blocked from merging.
    pub fn blocked_identifiers(&self) -> Result<Vec<BlockedIdentifier>, StoreError> {
        identity::blocked_identifiers(&*self.conn)
    }

    /// Every receipt the hub committed, as `(store, till, seq, receipt_no)`: what the
    /// end-to-end tests' exactly-once checker counts, on either engine.
    pub fn committed_receipts(&self) -> Result<Vec<CommittedReceipt>, StoreError> {
        use super::sql::SqlExt as _;
        let rows = self.conn.query(
            "SELECT store, till, seq, receipt_no FROM transactions",
            crate::sql_params![],
        )?;
        rows.into_iter()
            .map(|row| {
                Ok(CommittedReceipt {
                    store: row.get(0)?,
                    till: row.get(1)?,
                    seq: row.get::<i64>(2)?,
                    receipt_no: row.get(3)?,
                })
            })
            .collect()
    }

    /// The connection, for tests and tools that look at rows through the store's
    /// functions.
    pub fn sql(&self) -> &dyn super::sql::Sql {
        &*self.conn
    }

    /// The connection for a write, replaced first if it broke.
    fn writable(&mut self) -> Result<&dyn super::sql::Sql, StoreError> {
        if self.conn.is_broken() {
            if let Some(database) = &self.database {
                tracing::warn!("store connection lost: reconnecting to {}", database.name());
                self.conn = database.get()?;
            }
        }
        Ok(&*self.conn)
    }
}

impl Store for SqlStore {
    fn hello(&mut self, agent: &AgentId, now: Timestamp) -> Result<u64, StoreError> {
        agents::hello(self.writable()?, agent, now)
    }

    fn ingest(
        &mut self,
        requests: &[IngestRequest<'_>],
        now: Timestamp,
    ) -> Result<Vec<IngestOutcome>, StoreError> {
        self.writable()?;
        let settings = MergeSettings {
            fraud: &self.fraud,
            coupon_master: self.coupon_master.as_ref(),
            suppression: self.suppression.as_ref(),
        };
        ingest::ingest(&*self.conn, settings, requests, now)
    }

    fn set_health(
        &mut self,
        agent: &AgentId,
        health: &TillHealth,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        agents::set_health(self.writable()?, agent, health, now)
    }

    fn set_clock(
        &mut self,
        agent: &AgentId,
        clock: &TillClock,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        agents::set_clock(self.writable()?, agent, clock, now)
    }

    fn chain_claim(
        &mut self,
        agent: &AgentId,
        last_seq: u64,
        claimed: &ChainHash,
        now: Timestamp,
    ) -> Result<ChainCheck, StoreError> {
        agents::chain_claim(self.writable()?, agent, last_seq, claimed, now)
    }

    fn agents(&self) -> Result<Vec<AgentView>, StoreError> {
        agents::agents(&*self.conn)
    }

    fn profile(&self, profile_id: &str) -> Result<Option<ProfileView>, StoreError> {
        profiles::load_view(&*self.conn, profile_id)
    }

    fn profile_by_card(&self, card: &CardNumber) -> Result<Option<ProfileView>, StoreError> {
        profiles::profile_by_card(&*self.conn, card)
    }

    fn profiles(&self, limit: usize) -> Result<Vec<ProfileView>, StoreError> {
        profiles::profiles(&*self.conn, limit)
    }

    fn search(&self, query: &ProfileQuery, limit: usize) -> Result<Vec<ProfileView>, StoreError> {
        let country_code = self.identity.default_country_code;
        profiles::search(&*self.conn, query, limit, country_code)
    }

    fn export_profile(&self, profile_id: &str) -> Result<Option<serde_json::Value>, StoreError> {
        privacy::export_profile(&*self.conn, profile_id)
    }

    fn erase_profile(
        &mut self,
        profile_id: &str,
        now: Timestamp,
    ) -> Result<Option<ErasureReport>, StoreError> {
        self.writable()?;
        let suppression = self
            .suppression
            .as_ref()
            .ok_or(StoreError::NoMasterSecret)?;
        privacy::erase_profile(&*self.conn, suppression, profile_id, now)
    }

    fn set_consents(
        &mut self,
        profile_id: &str,
        changes: &[ConsentChange],
        source: &str,
        now: Timestamp,
    ) -> Result<Option<ProfileView>, StoreError> {
        privacy::set_consents(self.writable()?, profile_id, changes, source, now)
    }

    fn campaign_kpis(
        &self,
        campaign_id: &str,
        window_days: u32,
    ) -> Result<CampaignKpis, StoreError> {
        coupon_kpis::campaign_kpis(&*self.conn, campaign_id, window_days)
    }

    fn coupon_counts(&self) -> Result<BTreeMap<String, CouponCounts>, StoreError> {
        coupon_kpis::coupon_counts(&*self.conn)
    }

    fn coupon_stores(&self) -> Result<Vec<StoreCoupons>, StoreError> {
        coupon_kpis::coupon_stores(&*self.conn)
    }

    fn suspicious_cards(&self) -> Result<Vec<SuspiciousCard>, StoreError> {
        suspicious::list(&*self.conn)
    }

    fn clear_suspicious(
        &mut self,
        card: &str,
        now: Timestamp,
    ) -> Result<Option<SuspiciousCard>, StoreError> {
        let max_customers = self.identity.max_customers_per_identifier;
        suspicious::clear_and_relink(self.writable()?, card, max_customers, now)
    }
}
