//! The hub's store: a narrow trait (so PostgreSQL can follow) and its SQLite
//! implementation, plus the single writer thread that serialises all commits.

pub mod activity;
pub mod agents;
mod chain;
pub mod coupon_checks;
pub mod coupon_kpis;
pub mod coupon_ledger;
pub mod database;
pub mod digests;
pub mod downlink;
pub mod erasures;
pub mod freshness;
pub mod identity;
pub mod imports;
pub mod ingest;
pub mod leases;
pub mod locks;
pub mod migrations;
pub mod numbering;
pub mod pki;
pub mod postgres;
pub mod privacy;
pub mod probe;
pub mod profiles;
pub mod secrets;
pub mod segments;
pub mod sql;
mod sql_store;
mod sqlite;
pub mod suspicious;
pub mod traits;
pub mod transfer;
mod writer;

#[cfg(test)]
pub mod test_support;
#[cfg(test)]
mod tests;

use thiserror::Error;
use till360_shared::chain::ChainHash;
use till360_shared::wire::{Refusal, TillHealth};
use till360_shared::{AgentId, CardNumber, Event, Timestamp};

use crate::profile::ProfileView;

pub use agents::record_alert;
pub use chain::ChainCheck;
pub use database::{Database, DatabaseOptions, Pooled};
pub use sql::{DbError, DbErrorKind, Engine};
pub use sql_store::{CommittedReceipt, SqlStore};
pub use sqlite::snapshot;
pub use sqlite::SCHEMA;
pub use writer::{spawn_writer, StoreWriter, WriterThread};

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] DbError),
    #[error("cannot encode a stored value: {0}")]
    Codec(#[from] till360_shared::codec::CodecError),
    #[error("cannot create {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the database says {0}, which this hub cannot read")]
    Corrupt(String),
    #[error("commit failed: {0}")]
    CommitFailed(String),
    #[error("the store writer has stopped")]
    WriterGone,
    /// Erasing, and importing once anyone was erased, need the coupon master secret:
    /// the suppression list and the tills' card keys derive from it.
    #[error("the coupon master secret (data_dir/coupon-master.key) is missing: the suppression list of erased people and the tills' card keys derive from it")]
    NoMasterSecret,
}

impl StoreError {
    /// A transaction that lost a race with another (serialization failure, deadlock):
    /// running it again succeeds.
    pub fn is_retry(&self) -> bool {
        matches!(self, StoreError::Database(e) if e.kind == DbErrorKind::Retry)
    }

    /// The database's kind of error, if it came from the database.
    pub fn db_kind(&self) -> Option<DbErrorKind> {
        match self {
            StoreError::Database(e) => Some(e.kind),
            _ => None,
        }
    }
}

/// A profile search (`GET /api/v1/profiles/search?...`): identifiers are normalised the
/// way the identity graph stores them before they are looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProfileQuery {
    Card(String),
    CustomerNo(String),
    Email(String),
    Phone(String),
    /// Case-insensitive prefix of the first or last name.
    NamePrefix(String),
}

/// One consent purpose set through the API (`PUT /api/v1/profiles/{id}/consents`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct ConsentChange {
    /// `email`, `sms`, `post` or `personalization`.
    pub purpose: String,
    pub granted: bool,
}

/// What an erase did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ErasureReport {
    pub profile_id: String,
    pub identifiers_removed: usize,
    pub transactions_anonymised: usize,
    /// The erasure log's version after this erase (agents catch up to it).
    pub erasure_version: u64,
}

/// One agent's batch, identified by the agent's certificate (never by the payload).
#[derive(Debug, Clone, Copy)]
pub struct IngestRequest<'a> {
    pub agent: &'a AgentId,
    pub events: &'a [Event],
}

/// The result for one batch: the committed high-water mark to acknowledge, or why the
/// batch was refused (nothing of it was written).
pub type IngestOutcome = Result<u64, (Refusal, String)>;

/// An agent as `GET /api/v1/agents` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AgentView {
    pub store: String,
    pub till: String,
    pub last_seq: u64,
    /// When the hub last heard from the agent (hub clock, UTC, RFC 3339).
    pub last_seen: String,
    /// The journal hash chain: `"ok"`, or the first break the hub found.
    pub chain: ChainStatus,
    /// The till's last health report, if it sent one.
    pub health: Option<HealthView>,
    /// The last batch the hub refused (a value it cannot store, a gap, ...).
    pub last_refusal: Option<AlertView>,
    /// The last sign of a cloned certificate: two live connections with one
    /// certificate, or a connection with an older certificate epoch.
    pub certificate_alert: Option<AlertView>,
    /// How far the till's clock was off when it last said (`None`: it never did).
    pub clock: Option<ClockView>,
    /// Events of this till that named an erased card (dated at or before the erase: a
    /// till offline since then, or a replay), merged without it.
    pub suppressed_events: u64,
}

/// Something the hub noticed about an agent, as `GET /api/v1/agents` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AlertView {
    pub reason: String,
    pub detail: String,
    /// Hub clock, UTC, RFC 3339.
    pub at: String,
}

/// A till's clock as it last reported it (`Message::TillClock`), compared with the hub's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TillClock {
    /// Till minus hub, in milliseconds (negative: the till is behind, e.g. backdated).
    pub skew_ms: i64,
    /// `[coupons] max_clock_skew_secs` when it was reported, in milliseconds.
    pub max_skew_ms: i64,
}

/// `clock` in `GET /api/v1/agents`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClockView {
    /// Till minus hub, in whole seconds (negative: the till is behind).
    pub skew_secs: i64,
    /// The skew is beyond `[coupons] max_clock_skew_secs`.
    pub skewed: bool,
    /// Hub clock, UTC, RFC 3339.
    pub reported_at: String,
}

/// A till's last health report as `GET /api/v1/agents` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HealthView {
    pub journal_bytes: u64,
    pub journal_max_bytes: u64,
    pub quota_exceeded: bool,
    pub quarantined: u64,
    pub pending: u64,
    /// Hub clock, UTC, RFC 3339.
    pub reported_at: String,
    /// Receipts the till could not balance (a layout that misreads this POS).
    pub unbalanced_receipts: u64,
    /// Scans that were neither a loyalty card nor a coupon (a wrong `[cards] prefixes`).
    pub unrecognised_scans: u64,
}

/// Whether an agent's journal chain held (`"ok"` in JSON) or where it first broke
/// (`{"broken_at_seq": N, "detected_at": "..."}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainStatus {
    Ok,
    Broken {
        broken_at_seq: u64,
        /// Hub clock, UTC, RFC 3339.
        detected_at: String,
    },
}

impl serde::Serialize for ChainStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        match self {
            ChainStatus::Ok => s.serialize_str("ok"),
            ChainStatus::Broken {
                broken_at_seq,
                detected_at,
            } => {
                let mut out = s.serialize_struct("ChainBreak", 2)?;
                out.serialize_field("broken_at_seq", broken_at_seq)?;
                out.serialize_field("detected_at", detected_at)?;
                out.end()
            }
        }
    }
}

/// Everything the hub needs from its database. Writes go through one instance owned
/// by the writer thread; reads through another (SQLite WAL lets them run side by side).
pub trait Store: Send {
    /// Notes that `agent` connected at `now` and returns its committed high-water mark.
    fn hello(&mut self, agent: &AgentId, now: Timestamp) -> Result<u64, StoreError>;

    /// Plans each batch against the high-water mark read inside the transaction
    /// (`sync::plan_ingest`), merges the new events, stores the new high-water marks and
    /// commits everything in ONE transaction. A refused batch writes nothing but its
    /// refusal (kept for `agents`), also when SQLite refuses one of its values: each
    /// batch is merged under a savepoint. A database error writes nothing for any batch.
    fn ingest(
        &mut self,
        requests: &[IngestRequest<'_>],
        now: Timestamp,
    ) -> Result<Vec<IngestOutcome>, StoreError>;

    /// Keeps a till's latest health report (`Message::Health`), shown by `agents`.
    fn set_health(
        &mut self,
        agent: &AgentId,
        health: &TillHealth,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Keeps how far a till's clock is off (`Message::TillClock`), shown by `agents`.
    fn set_clock(
        &mut self,
        agent: &AgentId,
        clock: &TillClock,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Checks an agent's `Chain` claim (its journal's link at `last_seq`) against the
    /// hub's own link there; a difference is recorded as a break (see `store/chain.rs`).
    fn chain_claim(
        &mut self,
        agent: &AgentId,
        last_seq: u64,
        claimed: &ChainHash,
        now: Timestamp,
    ) -> Result<ChainCheck, StoreError>;

    fn agents(&self) -> Result<Vec<AgentView>, StoreError>;
    fn profile(&self, profile_id: &str) -> Result<Option<ProfileView>, StoreError>;
    fn profile_by_card(&self, card: &CardNumber) -> Result<Option<ProfileView>, StoreError>;
    /// Profiles, newest first (by creation), at most `limit`.
    fn profiles(&self, limit: usize) -> Result<Vec<ProfileView>, StoreError>;

    fn search(&self, query: &ProfileQuery, limit: usize) -> Result<Vec<ProfileView>, StoreError>;

    /// Everything held on the person (GDPR access request), or `None` if unknown.
    fn export_profile(&self, profile_id: &str) -> Result<Option<serde_json::Value>, StoreError>;

    /// Erases a person: personal data and identifiers removed, transactions kept only
    /// anonymised; each erased card is appended to the erasure log (`erasures`) so every
    /// agent drops it. `None` if the profile is unknown.
    fn erase_profile(
        &mut self,
        profile_id: &str,
        now: Timestamp,
    ) -> Result<Option<ErasureReport>, StoreError>;

    /// Records consent changes with their source and time. `None` if unknown.
    fn set_consents(
        &mut self,
        profile_id: &str,
        changes: &[ConsentChange],
        source: &str,
        now: Timestamp,
    ) -> Result<Option<ProfileView>, StoreError>;

    /// The KPIs of one campaign, with uplift over `window_days` (its `valid_days`).
    fn campaign_kpis(
        &self,
        campaign_id: &str,
        window_days: u32,
    ) -> Result<crate::coupons::CampaignKpis, StoreError>;

    /// Issued, control and redeemed per campaign id that has coupon rows.
    fn coupon_counts(
        &self,
    ) -> Result<std::collections::BTreeMap<String, crate::coupons::CouponCounts>, StoreError>;

    /// Redeemed, duplicate, forged and refused scans per store where they were scanned.
    fn coupon_stores(&self) -> Result<Vec<crate::coupons::StoreCoupons>, StoreError>;

    /// Cards the fraud rules flagged (and ones cleared since), with their evidence.
    fn suspicious_cards(&self) -> Result<Vec<suspicious::SuspiciousCard>, StoreError>;

    /// Clears a flagged card: it gets digests again and links as before. `None` if the
    /// card was never flagged.
    fn clear_suspicious(
        &mut self,
        card: &str,
        now: Timestamp,
    ) -> Result<Option<suspicious::SuspiciousCard>, StoreError>;
}
