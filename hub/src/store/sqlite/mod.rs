//! The SQLite store: WAL, `synchronous=FULL`, raw events kept for re-derivation.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection};
use till360_shared::chain::ChainHash;
use till360_shared::wire::TillHealth;
use till360_shared::{AgentId, CardNumber, Timestamp};

pub mod driver;

use super::migrations;

use super::chain::ChainCheck;
use super::erasures::{self, Suppression};
use super::ingest::{self, MergeSettings};
use super::suspicious::{self, SuspiciousCard};
use super::{
    agents, coupon_ledger, identity, privacy, profiles, AgentView, ConsentChange, ErasureReport,
    IngestOutcome, IngestRequest, ProfileQuery, Store, StoreError, TillClock,
};
use crate::config::{FraudConfig, IdentityConfig};
use crate::coupons::{CampaignKpis, CouponCounts, StoreCoupons};
use crate::profile::ProfileView;

/// Bumped when the schema changes incompatibly. 4: the journal hash chain
/// (`agents.chain_hash`, `chain_breaks`); 6: digest feed compaction
/// (`digest_feed.removed_at_ms`, `digest_compaction`); 7: `agent_alerts`,
/// `traits_runs`, `change_counters`, the coupon ledger's commit order and
/// redeemed-codes feed (`redemptions.commit_seq`, `issuer_store`, `expires`), the
/// tills' clocks (`agent_clocks`), receipt checks (`transactions.unbalanced`,
/// `agent_health.unbalanced_receipts` and `unrecognised_scans`) and the erasure log
/// without clear cards (`erasure_card_keys`, `suppressed_identifiers`; see
/// `store/erasures.rs`) and suspicious cards
/// (`suspicious_cards`, `transactions_card`).
const SCHEMA_VERSION: i64 = 7;

/// The schema (also used by the ingest benchmark's raw-insert baseline).
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS agents (
    store TEXT NOT NULL,
    till TEXT NOT NULL,
    last_seq INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    -- The journal hash chain's link at last_seq (NULL: unknown, see store/chain.rs).
    chain_hash BLOB,
    PRIMARY KEY (store, till)
);
-- Chain claims of agents that differed from the hub's own link (a journal edited on
-- the till): seq is the claim's.
CREATE TABLE IF NOT EXISTS chain_breaks (
    store TEXT NOT NULL,
    till TEXT NOT NULL,
    seq INTEGER NOT NULL,
    detected_at_ms INTEGER NOT NULL,
    hub_hash BLOB NOT NULL,
    claimed_hash BLOB NOT NULL,
    PRIMARY KEY (store, till, seq)
);
CREATE TABLE IF NOT EXISTS events (
    store TEXT NOT NULL,
    till TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    recorded_at_ms INTEGER NOT NULL,
    offset_min INTEGER NOT NULL,
    payload BLOB NOT NULL,
    PRIMARY KEY (store, till, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS profiles (
    profile_id TEXT PRIMARY KEY,
    created_at_ms INTEGER NOT NULL,
    created_offset_min INTEGER NOT NULL,
    customer_no TEXT,
    first_name TEXT,
    last_name TEXT,
    birth_date TEXT,
    postal_code TEXT,
    language TEXT,
    member_since TEXT,
    points INTEGER,
    updated_at_ms INTEGER
);
CREATE INDEX IF NOT EXISTS profiles_first_name ON profiles(first_name COLLATE NOCASE);
CREATE INDEX IF NOT EXISTS profiles_last_name ON profiles(last_name COLLATE NOCASE);
CREATE TABLE IF NOT EXISTS identifiers (
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    profile_id TEXT NOT NULL REFERENCES profiles(profile_id),
    source TEXT NOT NULL,
    added_at_ms INTEGER NOT NULL,
    PRIMARY KEY (kind, value)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS identifiers_profile ON identifiers(profile_id);
CREATE TABLE IF NOT EXISTS blocked_identifiers (
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    customers INTEGER NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (kind, value)
);
CREATE TABLE IF NOT EXISTS identity_links (
    row_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (row_key, kind, value)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS identity_links_identifier ON identity_links(kind, value);
CREATE TABLE IF NOT EXISTS consents (
    profile_id TEXT NOT NULL REFERENCES profiles(profile_id),
    purpose TEXT NOT NULL,
    granted INTEGER NOT NULL,
    source TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (profile_id, purpose)
);
CREATE TABLE IF NOT EXISTS orders (
    order_id TEXT PRIMARY KEY,
    profile_id TEXT REFERENCES profiles(profile_id),
    ordered_at_ms INTEGER NOT NULL,
    offset_min INTEGER NOT NULL,
    channel TEXT NOT NULL,
    total_cents INTEGER NOT NULL,
    currency TEXT NOT NULL,
    lines TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_profile ON orders(profile_id);
CREATE TABLE IF NOT EXISTS products (
    sku TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    category TEXT NOT NULL,
    sensitive INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS products_description ON products(description COLLATE NOCASE);
CREATE TABLE IF NOT EXISTS profile_traits (
    profile_id TEXT PRIMARY KEY,
    as_of_ms INTEGER NOT NULL,
    traits TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS segment_members (
    segment_id TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    PRIMARY KEY (segment_id, profile_id)
);
CREATE INDEX IF NOT EXISTS segment_members_profile ON segment_members(profile_id);
-- When traits and segments were last computed (store/freshness.rs).
CREATE TABLE IF NOT EXISTS traits_runs (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    computed_at_ms INTEGER NOT NULL
);
-- Bumped by every import that changed something: the running hub polls it.
CREATE TABLE IF NOT EXISTS change_counters (
    name TEXT PRIMARY KEY,
    counter INTEGER NOT NULL
);
-- Per-till counts for `agents` (`suppressed_events`: events merged without an erased card).
CREATE TABLE IF NOT EXISTS agent_counters (
    store TEXT NOT NULL,
    till TEXT NOT NULL,
    name TEXT NOT NULL,
    counter INTEGER NOT NULL,
    PRIMARY KEY (store, till, name)
);
CREATE TABLE IF NOT EXISTS transactions (
    store TEXT NOT NULL,
    till TEXT NOT NULL,
    seq INTEGER NOT NULL,
    receipt_no TEXT,
    at_ms INTEGER NOT NULL,
    offset_min INTEGER NOT NULL,
    printed_at_ms INTEGER,
    printed_offset_min INTEGER,
    card TEXT,
    profile_id TEXT REFERENCES profiles(profile_id),
    total_cents INTEGER NOT NULL,
    currency TEXT NOT NULL,
    lines BLOB NOT NULL,
    -- 1: the till's lines and total disagree (a layout misread): no traits, no digests.
    unbalanced INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (store, till, seq)
);
CREATE INDEX IF NOT EXISTS transactions_profile ON transactions(profile_id);
CREATE INDEX IF NOT EXISTS profiles_created ON profiles(created_at_ms);
-- The erasure log (see store/erasures.rs): no identifier in clear. A database of an
-- older hub still has erasures.card until the store gets the master secret.
CREATE TABLE IF NOT EXISTS erasures (
    version INTEGER PRIMARY KEY AUTOINCREMENT,
    erased_at_ms INTEGER NOT NULL
);
-- Per erasure, its cards as the card keys of every store known at erase time.
CREATE TABLE IF NOT EXISTS erasure_card_keys (
    version INTEGER NOT NULL,
    store TEXT NOT NULL,
    card_key BLOB NOT NULL,
    PRIMARY KEY (store, version, card_key)
) WITHOUT ROWID;
-- Identifiers of erased people as keyed hashes: evidence dated at or before
-- erased_at_ms that names one is not merged.
CREATE TABLE IF NOT EXISTS suppressed_identifiers (
    kind TEXT NOT NULL,
    hash BLOB NOT NULL,
    erased_at_ms INTEGER NOT NULL,
    PRIMARY KEY (kind, hash)
) WITHOUT ROWID;
-- Coupon codes carry compact numbers for tills and campaigns, assigned once, never reused.
CREATE TABLE IF NOT EXISTS till_numbers (
    number INTEGER PRIMARY KEY,
    store TEXT NOT NULL,
    till TEXT NOT NULL,
    UNIQUE (store, till)
);
CREATE TABLE IF NOT EXISTS campaign_numbers (
    number INTEGER PRIMARY KEY,
    campaign_id TEXT NOT NULL UNIQUE
);
-- Coupons decided at tills: printed (control = 0, code set) and would-haves (control = 1).
CREATE TABLE IF NOT EXISTS coupons (
    store TEXT NOT NULL,
    till TEXT NOT NULL,
    seq INTEGER NOT NULL,
    campaign_id TEXT NOT NULL,
    control INTEGER NOT NULL,
    code TEXT,
    card TEXT,
    profile_id TEXT,
    customer_key TEXT,
    issued_at_ms INTEGER NOT NULL,
    offset_min INTEGER NOT NULL,
    expires TEXT NOT NULL,
    receipt_seq INTEGER NOT NULL,
    PRIMARY KEY (store, till, seq)
);
CREATE INDEX IF NOT EXISTS coupons_campaign ON coupons(campaign_id, control);
CREATE INDEX IF NOT EXISTS coupons_profile ON coupons(profile_id);
CREATE INDEX IF NOT EXISTS coupons_code ON coupons(code);
CREATE INDEX IF NOT EXISTS coupons_card ON coupons(card);
-- Coupon codes scanned at tills: accepted ones (status genuine or forged, as the hub's
-- check of the signature says; unchecked without a master secret) and ones the till
-- refused (status refused). campaign_id: the checked campaign of a genuine code, the
-- one its number claims otherwise. Which scan is THE redemption is decided when read.
CREATE TABLE IF NOT EXISTS redemptions (
    store TEXT NOT NULL,
    till TEXT NOT NULL,
    seq INTEGER NOT NULL,
    code TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    offset_min INTEGER NOT NULL,
    receipt_seq INTEGER,
    verified TEXT,
    status TEXT NOT NULL,
    reason TEXT,
    campaign_id TEXT,
    -- The hub's commit order (THE redemption of a code is its first committed genuine
    -- scan), the store whose till issued the code and its expiry: see coupons/ledger.rs.
    -- Added by an upgrade on older databases, which also creates their index.
    commit_seq INTEGER,
    issuer_store TEXT,
    expires TEXT,
    PRIMARY KEY (store, till, seq)
);
CREATE INDEX IF NOT EXISTS redemptions_code ON redemptions(code);
-- The last refused batch of an agent (kind 'refusal') and the last sign of a cloned
-- certificate (kind 'certificate': two live connections, or an old epoch), for `agents`.
CREATE TABLE IF NOT EXISTS agent_alerts (
    store TEXT NOT NULL,
    till TEXT NOT NULL,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (store, till, kind)
);
-- Each till's clock as it last reported it (`TillClock`): skew_ms = till - hub.
CREATE TABLE IF NOT EXISTS agent_clocks (
    store TEXT NOT NULL,
    till TEXT NOT NULL,
    skew_ms INTEGER NOT NULL,
    max_skew_ms INTEGER NOT NULL,
    reported_at_ms INTEGER NOT NULL,
    PRIMARY KEY (store, till)
);
-- The last health report of each till (journal size, quota alarm, quarantined rows).
CREATE TABLE IF NOT EXISTS agent_health (
    store TEXT NOT NULL,
    till TEXT NOT NULL,
    journal_bytes INTEGER NOT NULL,
    journal_max_bytes INTEGER NOT NULL,
    quota_exceeded INTEGER NOT NULL,
    quarantined INTEGER NOT NULL,
    pending INTEGER NOT NULL,
    reported_at_ms INTEGER NOT NULL,
    unbalanced_receipts INTEGER NOT NULL DEFAULT 0,
    unrecognised_scans INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (store, till)
);
-- Profile digests per store as last pushed (digest NULL: removed), versioned per store.
-- removed_at_ms: when the row became a removal (NULL for a digest, or a removal written
-- before schema 6); compaction drops removals older than `[digests]
-- removal_retention_days`.
CREATE TABLE IF NOT EXISTS digest_feed (
    store TEXT NOT NULL,
    card_key BLOB NOT NULL,
    version INTEGER NOT NULL,
    digest BLOB,
    removed_at_ms INTEGER,
    PRIMARY KEY (store, card_key)
);
CREATE INDEX IF NOT EXISTS digest_feed_version ON digest_feed(store, version);
CREATE INDEX IF NOT EXISTS digest_feed_removals ON digest_feed(store, version)
    WHERE digest IS NULL;
-- Per store: removal rows at or below this version may have been dropped, so an agent
-- holding an older version starts over from an empty cache (see digests/feed.rs).
CREATE TABLE IF NOT EXISTS digest_compaction (
    store TEXT PRIMARY KEY,
    compacted_through INTEGER NOT NULL
);
-- Cards flagged by the fraud rules (store/suspicious.rs): findings as JSON; cleared_at_ms
-- NULL while flagged; findings whose receipts are all at or before cleared_through_ms
-- were cleared by a marketer.
CREATE TABLE IF NOT EXISTS suspicious_cards (
    card TEXT PRIMARY KEY,
    flagged_at_ms INTEGER NOT NULL,
    findings TEXT NOT NULL,
    cleared_at_ms INTEGER,
    cleared_through_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS transactions_card ON transactions(card, at_ms);
";

/// Schema 7 on a database of an older hub: receipts that did not balance are marked
/// (older rows count as balanced) and health reports gain the pilot's counters.
fn upgrade_receipt_checks(conn: &Connection) -> Result<(), StoreError> {
    for (table, column) in [
        ("transactions", "unbalanced"),
        ("agent_health", "unbalanced_receipts"),
        ("agent_health", "unrecognised_scans"),
    ] {
        let has_column: bool = conn
            .prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")?
            .exists(params![table, column])?;
        if !has_column {
            conn.execute_batch(&format!(
                "ALTER TABLE {table} ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0;"
            ))?;
        }
    }
    Ok(())
}

/// Schema 6 on a database of an older hub: `digest_feed` gains `removed_at_ms`. Its
/// removals keep NULL there: compaction starts their retention when it first sees them.
fn upgrade_digest_feed(conn: &Connection) -> Result<(), StoreError> {
    let has_column: bool = conn
        .prepare("SELECT 1 FROM pragma_table_info('digest_feed') WHERE name = 'removed_at_ms'")?
        .exists([])?;
    if !has_column {
        conn.execute_batch("ALTER TABLE digest_feed ADD COLUMN removed_at_ms INTEGER;")?;
    }
    Ok(())
}

/// Columns and tables added by schema 4 to a database of an older hub.
fn upgrade_chain(conn: &Connection) -> Result<(), StoreError> {
    let has_chain: bool = conn
        .prepare("SELECT 1 FROM pragma_table_info('agents') WHERE name = 'chain_hash'")?
        .exists([])?;
    if !has_chain {
        // An agent that never sent anything starts at GENESIS; the others are unknown.
        conn.execute_batch(
            "ALTER TABLE agents ADD COLUMN chain_hash BLOB;
             UPDATE agents SET chain_hash = zeroblob(32) WHERE last_seq = 0;",
        )?;
    }
    Ok(())
}

/// Schema 7 on an older database: `redemptions` gains `commit_seq` (existing rows keep
/// their insertion order, the rowid), `issuer_store` and `expires` (filled from each
/// code). Idempotent.
fn upgrade_ledger(conn: &Connection) -> Result<(), StoreError> {
    for (column, kind) in [
        ("commit_seq", "INTEGER"),
        ("issuer_store", "TEXT"),
        ("expires", "TEXT"),
    ] {
        let has: bool = conn
            .prepare("SELECT 1 FROM pragma_table_info('redemptions') WHERE name = ?1")?
            .exists([column])?;
        if !has {
            conn.execute_batch(&format!(
                "ALTER TABLE redemptions ADD COLUMN {column} {kind};"
            ))?;
        }
    }
    conn.execute_batch(
        "UPDATE redemptions SET commit_seq = rowid WHERE commit_seq IS NULL;
         CREATE UNIQUE INDEX IF NOT EXISTS redemptions_commit ON redemptions(commit_seq);",
    )?;
    let unfilled = conn
        .prepare("SELECT rowid, code FROM redemptions WHERE expires IS NULL")?
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    for (rowid, code) in unfilled {
        if let Some((store, expires)) = coupon_ledger::issuer_of(conn, &code)? {
            conn.execute(
                "UPDATE redemptions SET issuer_store = ?1, expires = ?2 WHERE rowid = ?3",
                params![store, expires, rowid],
            )?;
        }
    }
    Ok(())
}

pub struct SqliteStore {
    pub(super) conn: Connection,
    identity: IdentityConfig,
    /// `[fraud]`: the rules every carded receipt is checked against at ingest.
    fraud: FraudConfig,
    /// The coupon master secret, to check redeemed codes at merge; without it every
    /// accepted scan is stored as `unchecked` (and counted as genuine).
    coupon_master: Option<[u8; 32]>,
    /// The suppression list's key (from the master secret): erasing needs it, and till
    /// events naming an erased card are merged without it.
    suppression: Option<Suppression>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, with WAL and
    /// `synchronous=FULL`: a commit is on disk before the hub acknowledges it.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_timeout(path, Duration::from_secs(10))
    }

    /// As [`SqliteStore::open`], waiting up to `timeout` for another connection's lock.
    pub fn open_with_timeout(path: &Path, timeout: Duration) -> Result<Self, StoreError> {
        let conn = driver::open(path, timeout)?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        match version {
            // Every statement is `IF NOT EXISTS`: an older schema gains the new tables
            // (and, from 3, the chain column; from 5, the digest feed's removal time;
            // from 6, the coupon ledger's commit order).
            0..=6 => {
                conn.execute_batch(&format!("BEGIN IMMEDIATE; {SCHEMA}"))?;
                let upgraded = upgrade_chain(&conn)
                    .and_then(|()| upgrade_digest_feed(&conn))
                    .and_then(|()| upgrade_ledger(&conn))
                    .and_then(|()| upgrade_receipt_checks(&conn))
                    .and_then(|()| {
                        Ok(conn.execute_batch(&format!(
                            "PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
                        ))?)
                    });
                if let Err(e) = upgraded {
                    let _ = conn.execute_batch("ROLLBACK;");
                    return Err(e);
                }
            }
            SCHEMA_VERSION..=migrations::LATEST => {}
            other => migrations::refuse_newer(other)?,
        }
        // From 7 on, both engines share one history.
        migrations::migrate(&conn)?;
        Ok(Self {
            conn,
            identity: IdentityConfig::default(),
            fraud: FraudConfig::default(),
            coupon_master: None,
            suppression: None,
        })
    }

    /// Gives the store the coupon master secret, so it checks every redeemed code at
    /// merge (`genuine` or `forged`) instead of storing it `unchecked`, can erase, and
    /// keeps erased cards out of merges (the suppression list). An erasure log of an
    /// older hub (cards in clear) is hashed here.
    pub fn set_coupon_master(&mut self, master: &[u8; 32]) -> Result<(), StoreError> {
        let suppression = Suppression::from_master(master);
        let converted = erasures::hash_clear_erasures(&self.conn, &suppression)?;
        if converted > 0 {
            tracing::info!("erasure log: {converted} clear cards replaced by keyed hashes");
        }
        self.coupon_master = Some(*master);
        self.suppression = Some(suppression);
        Ok(())
    }

    /// What the write path needs of this store's settings.
    fn merge_settings(&self) -> MergeSettings<'_> {
        MergeSettings {
            fraud: &self.fraud,
            coupon_master: self.coupon_master.as_ref(),
            suppression: self.suppression.as_ref(),
        }
    }

    /// Sets the rules carded receipts are checked against at ingest (`[fraud]`).
    pub fn set_fraud_config(&mut self, config: FraudConfig) {
        self.fraud = config;
    }

    /// Sets how search normalises phone numbers (`[identity]` of hub.toml).
    pub fn set_identity_config(&mut self, config: IdentityConfig) {
        self.identity = config;
    }

    /// Identifiers blocked from merging (reported by imports and listable by the API).
    pub fn blocked_identifiers(
        &self,
    ) -> Result<Vec<crate::identity::BlockedIdentifier>, StoreError> {
        identity::blocked_identifiers(&self.conn)
    }

    /// The underlying connection, for tests that set up or inspect rows (the hub itself
    /// runs on [`super::SqlStore`] over its `Database`).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Mutable access, for tests that open their own transaction.
    pub fn connection_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

impl Store for SqliteStore {
    fn hello(&mut self, agent: &AgentId, now: Timestamp) -> Result<u64, StoreError> {
        agents::hello(&self.conn, agent, now)
    }

    fn ingest(
        &mut self,
        requests: &[IngestRequest<'_>],
        now: Timestamp,
    ) -> Result<Vec<IngestOutcome>, StoreError> {
        ingest::ingest(&self.conn, self.merge_settings(), requests, now)
    }

    fn agents(&self) -> Result<Vec<AgentView>, StoreError> {
        agents::agents(&self.conn)
    }

    fn set_health(
        &mut self,
        agent: &AgentId,
        health: &TillHealth,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        agents::set_health(&self.conn, agent, health, now)
    }

    fn set_clock(
        &mut self,
        agent: &AgentId,
        clock: &TillClock,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        agents::set_clock(&self.conn, agent, clock, now)
    }

    fn chain_claim(
        &mut self,
        agent: &AgentId,
        last_seq: u64,
        claimed: &ChainHash,
        now: Timestamp,
    ) -> Result<ChainCheck, StoreError> {
        agents::chain_claim(&self.conn, agent, last_seq, claimed, now)
    }

    fn profile(&self, profile_id: &str) -> Result<Option<ProfileView>, StoreError> {
        profiles::load_view(&self.conn, profile_id)
    }

    fn profile_by_card(&self, card: &CardNumber) -> Result<Option<ProfileView>, StoreError> {
        profiles::profile_by_card(&self.conn, card)
    }

    fn profiles(&self, limit: usize) -> Result<Vec<ProfileView>, StoreError> {
        profiles::profiles(&self.conn, limit)
    }

    fn export_profile(&self, profile_id: &str) -> Result<Option<serde_json::Value>, StoreError> {
        privacy::export_profile(&self.conn, profile_id)
    }

    fn erase_profile(
        &mut self,
        profile_id: &str,
        now: Timestamp,
    ) -> Result<Option<ErasureReport>, StoreError> {
        let suppression = self
            .suppression
            .as_ref()
            .ok_or(StoreError::NoMasterSecret)?;
        privacy::erase_profile(&self.conn, suppression, profile_id, now)
    }

    fn set_consents(
        &mut self,
        profile_id: &str,
        changes: &[ConsentChange],
        source: &str,
        now: Timestamp,
    ) -> Result<Option<ProfileView>, StoreError> {
        privacy::set_consents(&self.conn, profile_id, changes, source, now)
    }

    fn search(&self, query: &ProfileQuery, limit: usize) -> Result<Vec<ProfileView>, StoreError> {
        let country_code = self.identity.default_country_code;
        profiles::search(&self.conn, query, limit, country_code)
    }

    fn campaign_kpis(
        &self,
        campaign_id: &str,
        window_days: u32,
    ) -> Result<CampaignKpis, StoreError> {
        super::coupon_kpis::campaign_kpis(&self.conn, campaign_id, window_days)
    }

    fn coupon_counts(&self) -> Result<BTreeMap<String, CouponCounts>, StoreError> {
        super::coupon_kpis::coupon_counts(&self.conn)
    }

    fn coupon_stores(&self) -> Result<Vec<StoreCoupons>, StoreError> {
        super::coupon_kpis::coupon_stores(&self.conn)
    }

    fn suspicious_cards(&self) -> Result<Vec<SuspiciousCard>, StoreError> {
        suspicious::list(&self.conn)
    }

    fn clear_suspicious(
        &mut self,
        card: &str,
        now: Timestamp,
    ) -> Result<Option<SuspiciousCard>, StoreError> {
        suspicious::clear_and_relink(
            &self.conn,
            card,
            self.identity.max_customers_per_identifier,
            now,
        )
    }
}
