//! The engine-neutral store over one pooled connection (`Database::get`): the write path
//! and the agents' state, written once for SQLite and PostgreSQL.
//!
//! It serves what the writer thread needs (`hello`, `ingest`, health, clocks, chain
//! claims) and the agents' and fraud views. The profile reads (`Store::profile`,
//! `search`, exports, erasure, consents, KPIs) still live on [`super::SqliteStore`]
//! until they are portable too; then this struct implements [`super::Store`] and
//! `SqliteStore::open` becomes `SqlStore::new(Database::open(..)?.get()?)`.

use till360_shared::chain::ChainHash;
use till360_shared::wire::TillHealth;
use till360_shared::{AgentId, Timestamp};

use super::erasures::Suppression;
use super::ingest::{self, MergeSettings};
use super::suspicious::{self, SuspiciousCard};
use super::{
    agents, identity, AgentView, ChainCheck, IngestOutcome, IngestRequest, Pooled, StoreError,
    TillClock,
};
use crate::config::{FraudConfig, IdentityConfig};
use crate::identity::BlockedIdentifier;

pub struct SqlStore {
    conn: Pooled,
    identity: IdentityConfig,
    fraud: FraudConfig,
    coupon_master: Option<[u8; 32]>,
    suppression: Option<Suppression>,
}

impl SqlStore {
    /// A store on `conn`, with the default `[identity]` and `[fraud]` settings and no
    /// coupon master secret.
    pub fn new(conn: Pooled) -> Self {
        Self {
            conn,
            identity: IdentityConfig::default(),
            fraud: FraudConfig::default(),
            coupon_master: None,
            suppression: None,
        }
    }

    /// Gives the store the coupon master secret: redeemed codes are checked at merge and
    /// erased cards are kept out of merges.
    pub fn set_coupon_master(&mut self, master: &[u8; 32]) {
        self.coupon_master = Some(*master);
        self.suppression = Some(Suppression::from_master(master));
    }

    /// Sets the rules carded receipts are checked against at ingest (`[fraud]`).
    pub fn set_fraud_config(&mut self, config: FraudConfig) {
        self.fraud = config;
    }

    /// Sets the identity graph's limits (`[identity]`).
    pub fn set_identity_config(&mut self, config: IdentityConfig) {
        self.identity = config;
    }

    fn merge_settings(&self) -> MergeSettings<'_> {
        MergeSettings {
            fraud: &self.fraud,
            coupon_master: self.coupon_master.as_ref(),
            suppression: self.suppression.as_ref(),
        }
    }

    /// See `Store::hello`.
    pub fn hello(&mut self, agent: &AgentId, now: Timestamp) -> Result<u64, StoreError> {
        agents::hello(&*self.conn, agent, now)
    }

    /// See `Store::ingest`.
    pub fn ingest(
        &mut self,
        requests: &[IngestRequest<'_>],
        now: Timestamp,
    ) -> Result<Vec<IngestOutcome>, StoreError> {
        ingest::ingest(&*self.conn, self.merge_settings(), requests, now)
    }

    /// See `Store::set_health`.
    pub fn set_health(
        &mut self,
        agent: &AgentId,
        health: &TillHealth,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        agents::set_health(&*self.conn, agent, health, now)
    }

    /// See `Store::set_clock`.
    pub fn set_clock(
        &mut self,
        agent: &AgentId,
        clock: &TillClock,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        agents::set_clock(&*self.conn, agent, clock, now)
    }

    /// See `Store::chain_claim`.
    pub fn chain_claim(
        &mut self,
        agent: &AgentId,
        last_seq: u64,
        claimed: &ChainHash,
        now: Timestamp,
    ) -> Result<ChainCheck, StoreError> {
        agents::chain_claim(&*self.conn, agent, last_seq, claimed, now)
    }

    /// See `Store::agents`.
    pub fn agents(&self) -> Result<Vec<AgentView>, StoreError> {
        agents::agents(&*self.conn)
    }

    /// See `Store::suspicious_cards`.
    pub fn suspicious_cards(&self) -> Result<Vec<SuspiciousCard>, StoreError> {
        suspicious::list(&*self.conn)
    }

    /// See `Store::clear_suspicious`.
    pub fn clear_suspicious(
        &mut self,
        card: &str,
        now: Timestamp,
    ) -> Result<Option<SuspiciousCard>, StoreError> {
        suspicious::clear_and_relink(
            &*self.conn,
            card,
            self.identity.max_customers_per_identifier,
            now,
        )
    }

    /// Identifiers blocked from merging.
    pub fn blocked_identifiers(&self) -> Result<Vec<BlockedIdentifier>, StoreError> {
        identity::blocked_identifiers(&*self.conn)
    }

    /// The connection, for tests that look at rows.
    #[cfg(test)]
    pub(crate) fn conn(&self) -> &dyn super::sql::Sql {
        &*self.conn
    }
}
