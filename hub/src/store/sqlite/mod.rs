//! The SQLite store: WAL, `synchronous=FULL`, raw events kept for re-derivation.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use till360_shared::chain::{link_bytes, ChainHash};
use till360_shared::sync::plan_ingest;
use till360_shared::{codec, AgentId, CardNumber, Event, EventKind, Timestamp};

pub mod driver;

use super::chain::{self, ChainBreak, ChainCheck};
use super::erasures::{self, Suppression};
use super::sql::DbErrorKind;
use super::suspicious::{self, SuspiciousCard};
use super::{
    privacy, profiles, AgentView, ChainStatus, ConsentChange, ErasureReport, IngestOutcome,
    IngestRequest, ProfileQuery, Store, StoreError,
};
use super::{AlertView, ClockView, HealthView, TillClock};
use crate::config::{FraudConfig, IdentityConfig};
use crate::coupons::{kpis, ledger, CampaignKpis, CouponCounts, StoreCoupons};
use crate::identity::{self, IdKind, Identifier};
use crate::profile::{merge_ops, MergeOp, ProfileView, TransactionRow};
use till360_shared::wire::{Refusal, TillHealth};

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

const INSERT_EVENT: &str =
    "INSERT INTO events (store, till, seq, kind, recorded_at_ms, offset_min, payload)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
const INSERT_TRANSACTION: &str =
    "INSERT INTO transactions (store, till, seq, receipt_no, at_ms, offset_min,
         printed_at_ms, printed_offset_min, card, profile_id, total_cents, currency, lines,
         unbalanced)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)";
/// A new agent starts its chain at GENESIS (`zeroblob(32)`); a known one keeps its head.
const UPSERT_AGENT: &str = "INSERT INTO agents (store, till, last_seq, last_seen_ms, chain_hash)
     VALUES (?1, ?2, ?3, ?4, zeroblob(32))
     ON CONFLICT (store, till) DO UPDATE SET
         last_seq = max(agents.last_seq, excluded.last_seq),
         last_seen_ms = excluded.last_seen_ms";
/// After a merge: the new high-water mark with the chain extended to it.
const UPSERT_AGENT_CHAIN: &str =
    "INSERT INTO agents (store, till, last_seq, last_seen_ms, chain_hash)
     VALUES (?1, ?2, ?3, ?4, ?5)
     ON CONFLICT (store, till) DO UPDATE SET
         last_seq = excluded.last_seq,
         last_seen_ms = excluded.last_seen_ms,
         chain_hash = excluded.chain_hash";

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
                let upgraded = chain::upgrade(&conn)
                    .and_then(|()| upgrade_digest_feed(&conn))
                    .and_then(|()| ledger::upgrade(&conn))
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
            SCHEMA_VERSION => {}
            other => {
                return Err(StoreError::Corrupt(format!(
                    "schema version {other} (this hub knows {SCHEMA_VERSION})"
                )))
            }
        }
        Ok(Self {
            conn,
            identity: IdentityConfig::default(),
            fraud: FraudConfig::default(),
            coupon_master: None,
            suppression: None,
        })
    }

    fn high_water(tx: &Transaction<'_>, agent: &AgentId) -> Result<u64, StoreError> {
        let seq: Option<i64> = tx
            .prepare_cached("SELECT last_seq FROM agents WHERE store = ?1 AND till = ?2")?
            .query_row(params![agent.store, agent.till], |r| r.get(0))
            .optional()?;
        Ok(seq.map_or(0, |s| s.max(0) as u64))
    }

    /// Merges `events` and returns the chain head extended over them.
    fn merge_batch(
        tx: &Transaction<'_>,
        events: &[Event],
        mut head: Option<ChainHash>,
        coupon_master: Option<&[u8]>,
        suppression: Option<&Suppression>,
        fraud: &FraudConfig,
        now: Timestamp,
    ) -> Result<Option<ChainHash>, StoreError> {
        for event in events {
            let encoded = Self::merge_event(tx, event, coupon_master, suppression, fraud, now)?;
            head = head.map(|prev| link_bytes(&prev, &encoded));
        }
        Ok(head)
    }

    /// `event` without the cards erased at or after it was recorded (a till that was
    /// offline since before the erase, or a replay): `None` when it names none.
    fn without_erased_cards(
        tx: &Transaction<'_>,
        event: &Event,
        suppression: Option<&Suppression>,
    ) -> Result<Option<Event>, StoreError> {
        let Some(suppression) = suppression else {
            return Ok(None);
        };
        let failed = std::cell::RefCell::new(None);
        let mut scrubbed = event.clone();
        let changed = scrubbed.kind.forget_cards(|card| {
            match erasures::suppressed_since(tx, suppression, &identity::Identifier::card(card)) {
                Ok(erased_at) => erased_at.is_some_and(|ms| ms >= event.recorded_at.unix_ms),
                Err(e) => {
                    failed.borrow_mut().get_or_insert(e);
                    false
                }
            }
        });
        if let Some(e) = failed.into_inner() {
            return Err(e);
        }
        if !changed {
            return Ok(None);
        }
        tracing::info!(
            "{}/{} seq {}: an erased card left out (suppressed)",
            event.agent.store,
            event.agent.till,
            event.seq
        );
        tx.prepare_cached(
            "INSERT INTO agent_counters (store, till, name, counter)
             VALUES (?1, ?2, 'suppressed_events', 1)
             ON CONFLICT (store, till, name) DO UPDATE SET counter = counter + 1",
        )?
        .execute(params![event.agent.store, event.agent.till])?;
        Ok(Some(scrubbed))
    }

    /// Merges one event; returns its canonical encoding (what the chain is over). The
    /// stored copy and the merge leave out cards on the suppression list.
    fn merge_event(
        tx: &Transaction<'_>,
        event: &Event,
        coupon_master: Option<&[u8]>,
        suppression: Option<&Suppression>,
        fraud: &FraudConfig,
        now: Timestamp,
    ) -> Result<Vec<u8>, StoreError> {
        let encoded = codec::to_bytes(event)?;
        let scrubbed = Self::without_erased_cards(tx, event, suppression)?;
        let stored = scrubbed.as_ref().unwrap_or(event);
        let stored_bytes = match &scrubbed {
            Some(e) => codec::to_bytes(e)?,
            None => encoded.clone(),
        };
        tx.prepare_cached(INSERT_EVENT)?.execute(params![
            stored.agent.store,
            stored.agent.till,
            to_sql_seq(stored.seq)?,
            stored.kind.name(),
            stored.recorded_at.unix_ms,
            stored.recorded_at.offset_min,
            &stored_bytes,
        ])?;
        let event = stored;
        let (ops, notes) = merge_ops(event);
        for note in notes {
            tracing::warn!("{note}");
        }
        let mut resolved = None;
        for op in ops {
            match op {
                // The profile comes from the identity graph (the card may have joined
                // a larger profile, or be blocked), not from the pure op; erased cards
                // were left out above.
                MergeOp::EnsureProfile { card, seen_at, .. } => {
                    resolved = Some(identity::resolve_card(tx, &card, seen_at)?);
                }
                MergeOp::AddTransaction(mut row) => {
                    if row.card.is_some() {
                        row.profile_id = None;
                        match resolved.take() {
                            Some(identity::CardOwner::Profile(id)) => row.profile_id = Some(id),
                            Some(identity::CardOwner::Blocked) => {}
                            None => row.card = None,
                        }
                    }
                    Self::insert_transaction(tx, &row)?;
                    if let Some(card) = &row.card {
                        let flagged = suspicious::check_card(tx, fraud, card, row.at, now)?;
                        for f in flagged.into_iter().flatten() {
                            tracing::warn!(
                                "card …{} flagged as suspicious ({:?}) after {}/{} seq {}: {}",
                                card.last4(),
                                f.rule,
                                row.store,
                                row.till,
                                row.seq,
                                f.detail
                            );
                        }
                    }
                }
                MergeOp::AddCoupon(mut row) => {
                    if row.card.is_some() {
                        row.profile_id = None;
                        match resolved.take() {
                            Some(identity::CardOwner::Profile(id)) => row.profile_id = Some(id),
                            Some(identity::CardOwner::Blocked) => {}
                            // The customer key names the person as much as the card.
                            None => {
                                row.card = None;
                                row.customer_key = None;
                            }
                        }
                    }
                    ledger::insert_coupon(tx, &row)?
                }
                MergeOp::AddRedemption(row) => {
                    let status = ledger::insert_redemption(tx, &row, coupon_master)?;
                    if status == ledger::RedemptionStatus::Forged {
                        tracing::warn!(
                            "{}/{} seq {}: coupon code {:?} accepted by the till is forged",
                            row.store,
                            row.till,
                            row.seq,
                            row.code
                        );
                    }
                }
            }
        }
        Ok(encoded)
    }

    fn insert_transaction(tx: &Transaction<'_>, row: &TransactionRow) -> Result<(), StoreError> {
        tx.prepare_cached(INSERT_TRANSACTION)?.execute(params![
            row.store,
            row.till,
            to_sql_seq(row.seq)?,
            row.receipt_no,
            row.at.unix_ms,
            row.at.offset_min,
            row.printed_at.map(|t| t.unix_ms),
            row.printed_at.map(|t| t.offset_min),
            row.card.as_ref().map(CardNumber::as_str),
            row.profile_id,
            row.total_cents,
            row.currency,
            codec::to_bytes(&row.lines)?,
            row.unbalanced,
        ])?;
        Ok(())
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

    /// Sets the rules carded receipts are checked against at ingest (`[fraud]`).
    pub fn set_fraud_config(&mut self, config: FraudConfig) {
        self.fraud = config;
    }

    /// Sets how search normalises phone numbers (`[identity]` of hub.toml).
    pub fn set_identity_config(&mut self, config: IdentityConfig) {
        self.identity = config;
    }

    /// Identifiers blocked from merging (reported by imports and listable by the API).
    pub fn blocked_identifiers(&self) -> Result<Vec<identity::BlockedIdentifier>, StoreError> {
        profiles::blocked_identifiers(&self.conn)
    }

    /// The underlying connection, for imports and traits (same process, same file).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Mutable access for operations that open their own transaction (imports).
    pub fn connection_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

/// Why `events` cannot be stored as they are (a number beyond SQLite's i64), if so.
fn unstorable(events: &[Event]) -> Option<String> {
    let beyond = |what: &str, seq: u64, value: u64| {
        (i64::try_from(value).is_err()).then(|| {
            format!("event seq {seq}: {what} {value} is beyond what the hub stores (2^63 - 1)")
        })
    };
    events.iter().find_map(|event| {
        let receipt_seq = match &event.kind {
            EventKind::CouponIssued(issue) | EventKind::CouponWouldHave(issue) => {
                Some(issue.receipt_seq)
            }
            EventKind::CouponRedeemed(redemption) => redemption.receipt_seq,
            _ => None,
        };
        beyond("seq", event.seq, event.seq)
            .or_else(|| receipt_seq.and_then(|value| beyond("receipt_seq", event.seq, value)))
    })
}

/// Whether `err` comes from the batch's own values (refuse that batch) rather than
/// the database (disk, lock: fail the commit, every till retries).
fn is_batch_fault(err: &StoreError) -> bool {
    match err {
        StoreError::Corrupt(_) | StoreError::Codec(_) => true,
        other => matches!(
            other.db_kind(),
            Some(DbErrorKind::Constraint | DbErrorKind::BadValue)
        ),
    }
}

/// Keeps an agent's last refusal for `agents` (the till is told too).
fn record_refusal(
    tx: &Transaction<'_>,
    agent: &AgentId,
    (reason, detail): &(Refusal, String),
    now: Timestamp,
) -> Result<(), StoreError> {
    record_alert(tx, agent, "refusal", &format!("{reason:?}"), detail, now)
}

/// Keeps the latest alert of `kind` for an agent (see `agent_alerts`).
pub fn record_alert(
    conn: &Connection,
    agent: &AgentId,
    kind: &str,
    reason: &str,
    detail: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO agent_alerts (store, till, kind, reason, detail, at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        agent.store,
        agent.till,
        kind,
        reason,
        detail,
        now.unix_ms
    ])?;
    Ok(())
}

fn to_sql_seq(seq: u64) -> Result<i64, StoreError> {
    i64::try_from(seq).map_err(|_| StoreError::Corrupt(format!("seq {seq} beyond i64")))
}

impl Store for SqliteStore {
    fn hello(&mut self, agent: &AgentId, now: Timestamp) -> Result<u64, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let high_water = Self::high_water(&tx, agent)?;
        tx.prepare_cached(UPSERT_AGENT)?.execute(params![
            agent.store,
            agent.till,
            to_sql_seq(high_water)?,
            now.unix_ms
        ])?;
        tx.commit()?;
        Ok(high_water)
    }

    fn ingest(
        &mut self,
        requests: &[IngestRequest<'_>],
        now: Timestamp,
    ) -> Result<Vec<IngestOutcome>, StoreError> {
        let master = self.coupon_master.as_ref().map(|m| m.as_slice());
        let fraud = &self.fraud;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Nobody erased yet (the common case): no keyed hash and lookup per card. Read in
        // the transaction, so an erase committed before it is seen.
        let suppression = match &self.suppression {
            Some(s) if erasures::any_suppressed(&tx)? => Some(s),
            _ => None,
        };
        let mut outcomes = Vec::with_capacity(requests.len());
        for req in requests {
            // Read inside the transaction: two connections of one agent cannot both
            // pass the same seq.
            let (high_water, head) = chain::head(&tx, req.agent)?;
            let plan = match plan_ingest(req.agent, high_water, req.events) {
                Ok(plan) => plan,
                Err(refusal) => {
                    record_refusal(&tx, req.agent, &refusal, now)?;
                    outcomes.push(Err(refusal));
                    continue;
                }
            };
            let new = &req.events[plan.first_new..];
            // What can be checked before SQL is; the rest is isolated by a savepoint, so
            // one till's bad batch never costs the others in this commit theirs.
            let merged = match unstorable(new) {
                Some(detail) => Err(detail),
                None => {
                    tx.execute_batch("SAVEPOINT batch")?;
                    match Self::merge_batch(&tx, new, head, master, suppression, fraud, now) {
                        Ok(head) => {
                            tx.execute_batch("RELEASE batch")?;
                            Ok(head)
                        }
                        Err(err) if is_batch_fault(&err) => {
                            tx.execute_batch("ROLLBACK TO batch; RELEASE batch")?;
                            Err(format!(
                                "the hub cannot store events seq {}..={}: {err}",
                                new.first().map_or(0, |e| e.seq),
                                new.last().map_or(0, |e| e.seq)
                            ))
                        }
                        Err(err) => return Err(err),
                    }
                }
            };
            match merged {
                Ok(head) => {
                    tx.prepare_cached(UPSERT_AGENT_CHAIN)?.execute(params![
                        req.agent.store,
                        req.agent.till,
                        to_sql_seq(plan.new_high_water)?,
                        now.unix_ms,
                        head.as_ref().map(|h| &h[..])
                    ])?;
                    outcomes.push(Ok(plan.new_high_water));
                }
                Err(detail) => {
                    // Logged once, where the till is told (listener/connection.rs).
                    let refusal = (Refusal::ProtocolError, detail);
                    record_refusal(&tx, req.agent, &refusal, now)?;
                    outcomes.push(Err(refusal));
                }
            }
        }
        tx.commit()?;
        Ok(outcomes)
    }

    fn agents(&self) -> Result<Vec<AgentView>, StoreError> {
        let mut rows = self
            .conn
            .prepare_cached(
                "SELECT store, till, last_seq, last_seen_ms FROM agents ORDER BY store, till",
            )?
            .query_map([], |r| {
                Ok(AgentView {
                    store: r.get(0)?,
                    till: r.get(1)?,
                    last_seq: r.get::<_, i64>(2)?.max(0) as u64,
                    last_seen: Timestamp::from_unix_ms(r.get(3)?, 0).to_rfc3339(),
                    chain: ChainStatus::Ok,
                    health: None,
                    last_refusal: None,
                    certificate_alert: None,
                    clock: None,
                    suppressed_events: 0,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        for view in &mut rows {
            view.health = self
                .conn
                .prepare_cached(
                    "SELECT journal_bytes, journal_max_bytes, quota_exceeded, quarantined,
                            pending, reported_at_ms, unbalanced_receipts, unrecognised_scans
                     FROM agent_health WHERE store = ?1 AND till = ?2",
                )?
                .query_row(params![view.store, view.till], |r| {
                    let n = |i: usize| -> rusqlite::Result<u64> {
                        Ok(r.get::<_, i64>(i)?.max(0) as u64)
                    };
                    Ok(HealthView {
                        journal_bytes: n(0)?,
                        journal_max_bytes: n(1)?,
                        quota_exceeded: r.get(2)?,
                        quarantined: n(3)?,
                        pending: n(4)?,
                        reported_at: Timestamp::from_unix_ms(r.get(5)?, 0).to_rfc3339(),
                        unbalanced_receipts: n(6)?,
                        unrecognised_scans: n(7)?,
                    })
                })
                .optional()?;
        }
        for view in &mut rows {
            let alert = |kind: &str| -> Result<Option<AlertView>, StoreError> {
                Ok(self
                    .conn
                    .prepare_cached(
                        "SELECT reason, detail, at_ms FROM agent_alerts
                         WHERE store = ?1 AND till = ?2 AND kind = ?3",
                    )?
                    .query_row(params![view.store, view.till, kind], |r| {
                        Ok(AlertView {
                            reason: r.get(0)?,
                            detail: r.get(1)?,
                            at: Timestamp::from_unix_ms(r.get(2)?, 0).to_rfc3339(),
                        })
                    })
                    .optional()?)
            };
            view.last_refusal = alert("refusal")?;
            view.certificate_alert = alert("certificate")?;
            view.clock = self
                .conn
                .prepare_cached(
                    "SELECT skew_ms, max_skew_ms, reported_at_ms FROM agent_clocks
                     WHERE store = ?1 AND till = ?2",
                )?
                .query_row(params![view.store, view.till], |r| {
                    let (skew_ms, max_skew_ms): (i64, i64) = (r.get(0)?, r.get(1)?);
                    Ok(ClockView {
                        skew_secs: skew_ms / 1000,
                        skewed: skew_ms.saturating_abs() > max_skew_ms,
                        reported_at: Timestamp::from_unix_ms(r.get(2)?, 0).to_rfc3339(),
                    })
                })
                .optional()?;
            let suppressed: Option<i64> = self
                .conn
                .prepare_cached(
                    "SELECT counter FROM agent_counters
                     WHERE store = ?1 AND till = ?2 AND name = 'suppressed_events'",
                )?
                .query_row(params![view.store, view.till], |r| r.get(0))
                .optional()?;
            view.suppressed_events = suppressed.map_or(0, |n| n.max(0) as u64);
        }
        for view in &mut rows {
            if let Some(ChainBreak {
                seq,
                detected_at_ms,
            }) = chain::first_break(&self.conn, &view.store, &view.till)?
            {
                view.chain = ChainStatus::Broken {
                    broken_at_seq: seq,
                    detected_at: Timestamp::from_unix_ms(detected_at_ms, 0).to_rfc3339(),
                };
            }
        }
        Ok(rows)
    }

    fn set_health(
        &mut self,
        agent: &AgentId,
        health: &TillHealth,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO agent_health (store, till, journal_bytes,
                     journal_max_bytes, quota_exceeded, quarantined, pending, reported_at_ms,
                     unbalanced_receipts, unrecognised_scans)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                agent.store,
                agent.till,
                clamp(health.journal_bytes),
                clamp(health.journal_max_bytes),
                health.quota_exceeded,
                clamp(health.quarantined),
                clamp(health.pending),
                now.unix_ms,
                clamp(health.unbalanced_receipts),
                clamp(health.unrecognised_scans)
            ])?;
        Ok(())
    }

    fn set_clock(
        &mut self,
        agent: &AgentId,
        clock: &TillClock,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO agent_clocks (store, till, skew_ms, max_skew_ms,
                     reported_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                agent.store,
                agent.till,
                clock.skew_ms,
                clock.max_skew_ms,
                now.unix_ms
            ])?;
        Ok(())
    }

    fn chain_claim(
        &mut self,
        agent: &AgentId,
        last_seq: u64,
        claimed: &ChainHash,
        now: Timestamp,
    ) -> Result<ChainCheck, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let check = chain::check_claim(&tx, agent, last_seq, claimed, now)?;
        tx.commit()?;
        Ok(check)
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
        kpis::load_campaign_kpis(&self.conn, campaign_id, window_days)
    }

    fn coupon_counts(&self) -> Result<BTreeMap<String, CouponCounts>, StoreError> {
        kpis::load_coupon_counts(&self.conn)
    }

    fn coupon_stores(&self) -> Result<Vec<StoreCoupons>, StoreError> {
        kpis::load_store_report(&self.conn)
    }

    fn suspicious_cards(&self) -> Result<Vec<SuspiciousCard>, StoreError> {
        suspicious::list(&self.conn)
    }

    fn clear_suspicious(
        &mut self,
        card: &str,
        now: Timestamp,
    ) -> Result<Option<SuspiciousCard>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(cleared) = suspicious::clear(&tx, card, now)? else {
            return Ok(None);
        };
        // The links that stopped at the card while it was flagged are made now.
        identity::relink(
            &tx,
            &Identifier {
                kind: IdKind::Card,
                value: card.to_string(),
            },
            self.identity.max_customers_per_identifier,
            now,
        )?;
        tx.commit()?;
        Ok(Some(cleared))
    }
}
