//! The SQLite store: WAL, `synchronous=FULL`, raw events kept for re-derivation.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use till360_shared::sync::plan_ingest;
use till360_shared::{codec, AgentId, CardNumber, Event, Timestamp};

use super::{AgentView, IngestOutcome, IngestRequest, Store, StoreError};
use crate::profile::{
    merge_ops, profile_view, MergeOp, ProfileView, TransactionFact, TransactionRow,
};

/// Bumped when the schema changes incompatibly.
const SCHEMA_VERSION: i64 = 1;

/// The schema (also used by the ingest benchmark's raw-insert baseline).
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS agents (
    store TEXT NOT NULL,
    till TEXT NOT NULL,
    last_seq INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    PRIMARY KEY (store, till)
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
    created_offset_min INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cards (
    card TEXT PRIMARY KEY,
    profile_id TEXT NOT NULL REFERENCES profiles(profile_id)
);
CREATE INDEX IF NOT EXISTS cards_profile ON cards(profile_id);
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
    PRIMARY KEY (store, till, seq)
);
CREATE INDEX IF NOT EXISTS transactions_profile ON transactions(profile_id);
CREATE INDEX IF NOT EXISTS profiles_created ON profiles(created_at_ms);
CREATE TABLE IF NOT EXISTS erasures (
    version INTEGER PRIMARY KEY AUTOINCREMENT,
    card TEXT NOT NULL,
    erased_at_ms INTEGER NOT NULL
);
";

const INSERT_EVENT: &str =
    "INSERT INTO events (store, till, seq, kind, recorded_at_ms, offset_min, payload)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
// Keep the earliest sighting so the creation time does not depend on arrival order.
const ENSURE_PROFILE: &str = "INSERT INTO profiles (profile_id, created_at_ms, created_offset_min)
     VALUES (?1, ?2, ?3)
     ON CONFLICT (profile_id) DO UPDATE SET
         created_at_ms = excluded.created_at_ms,
         created_offset_min = excluded.created_offset_min
     WHERE (excluded.created_at_ms, excluded.created_offset_min)
         < (profiles.created_at_ms, profiles.created_offset_min)";
const ENSURE_CARD: &str =
    "INSERT INTO cards (card, profile_id) VALUES (?1, ?2) ON CONFLICT (card) DO NOTHING";
const INSERT_TRANSACTION: &str =
    "INSERT INTO transactions (store, till, seq, receipt_no, at_ms, offset_min,
         printed_at_ms, printed_offset_min, card, profile_id, total_cents, currency, lines)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";
const UPSERT_AGENT: &str =
    "INSERT INTO agents (store, till, last_seq, last_seen_ms) VALUES (?1, ?2, ?3, ?4)
     ON CONFLICT (store, till) DO UPDATE SET
         last_seq = max(agents.last_seq, excluded.last_seq),
         last_seen_ms = excluded.last_seen_ms";

pub struct SqliteStore {
    pub(super) conn: Connection,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, with WAL and
    /// `synchronous=FULL`: a commit is on disk before the hub acknowledges it.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt(format!(
                "journal_mode {mode} (WAL refused)"
            )));
        }
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        match version {
            0 => conn.execute_batch(&format!(
                "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            ))?,
            SCHEMA_VERSION => {}
            other => {
                return Err(StoreError::Corrupt(format!(
                    "schema version {other} (this hub knows {SCHEMA_VERSION})"
                )))
            }
        }
        Ok(Self { conn })
    }

    fn high_water(tx: &Transaction<'_>, agent: &AgentId) -> Result<u64, StoreError> {
        let seq: Option<i64> = tx
            .prepare_cached("SELECT last_seq FROM agents WHERE store = ?1 AND till = ?2")?
            .query_row(params![agent.store, agent.till], |r| r.get(0))
            .optional()?;
        Ok(seq.map_or(0, |s| s.max(0) as u64))
    }

    fn merge_event(tx: &Transaction<'_>, event: &Event) -> Result<(), StoreError> {
        tx.prepare_cached(INSERT_EVENT)?.execute(params![
            event.agent.store,
            event.agent.till,
            to_sql_seq(event.seq)?,
            event.kind.name(),
            event.recorded_at.unix_ms,
            event.recorded_at.offset_min,
            codec::to_bytes(event)?,
        ])?;
        let (ops, notes) = merge_ops(event);
        for note in notes {
            tracing::warn!("{note}");
        }
        for op in ops {
            match op {
                MergeOp::EnsureProfile {
                    card,
                    profile_id,
                    seen_at,
                } => {
                    tx.prepare_cached(ENSURE_PROFILE)?.execute(params![
                        profile_id,
                        seen_at.unix_ms,
                        seen_at.offset_min
                    ])?;
                    tx.prepare_cached(ENSURE_CARD)?
                        .execute(params![card.as_str(), profile_id])?;
                }
                MergeOp::AddTransaction(row) => Self::insert_transaction(tx, &row)?,
            }
        }
        Ok(())
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
        ])?;
        Ok(())
    }

    fn load_view(&self, profile_id: &str) -> Result<Option<ProfileView>, StoreError> {
        let created: Option<(i64, i16)> = self
            .conn
            .prepare_cached(
                "SELECT created_at_ms, created_offset_min FROM profiles WHERE profile_id = ?1",
            )?
            .query_row([profile_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((created_ms, created_offset)) = created else {
            return Ok(None);
        };
        let cards = self
            .conn
            .prepare_cached("SELECT card FROM cards WHERE profile_id = ?1")?
            .query_map([profile_id], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        let facts = self
            .conn
            .prepare_cached(
                "SELECT store, at_ms, offset_min, total_cents, currency
                 FROM transactions WHERE profile_id = ?1",
            )?
            .query_map([profile_id], |r| {
                Ok(TransactionFact {
                    store: r.get(0)?,
                    at: Timestamp::from_unix_ms(r.get(1)?, r.get(2)?),
                    total_cents: r.get(3)?,
                    currency: r.get(4)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(profile_view(
            profile_id.to_string(),
            Timestamp::from_unix_ms(created_ms, created_offset),
            cards,
            &facts,
        )))
    }
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
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut outcomes = Vec::with_capacity(requests.len());
        for req in requests {
            // Read inside the transaction: two connections of one agent cannot both
            // pass the same seq.
            let high_water = Self::high_water(&tx, req.agent)?;
            match plan_ingest(req.agent, high_water, req.events) {
                Err(refusal) => outcomes.push(Err(refusal)),
                Ok(plan) => {
                    for event in &req.events[plan.first_new..] {
                        Self::merge_event(&tx, event)?;
                    }
                    tx.prepare_cached(UPSERT_AGENT)?.execute(params![
                        req.agent.store,
                        req.agent.till,
                        to_sql_seq(plan.new_high_water)?,
                        now.unix_ms
                    ])?;
                    outcomes.push(Ok(plan.new_high_water));
                }
            }
        }
        tx.commit()?;
        Ok(outcomes)
    }

    fn agents(&self) -> Result<Vec<AgentView>, StoreError> {
        let rows = self
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
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn profile(&self, profile_id: &str) -> Result<Option<ProfileView>, StoreError> {
        self.load_view(profile_id)
    }

    fn profile_by_card(&self, card: &CardNumber) -> Result<Option<ProfileView>, StoreError> {
        let id: Option<String> = self
            .conn
            .prepare_cached("SELECT profile_id FROM cards WHERE card = ?1")?
            .query_row([card.as_str()], |r| r.get(0))
            .optional()?;
        match id {
            Some(id) => self.load_view(&id),
            None => Ok(None),
        }
    }

    fn profiles(&self, limit: usize) -> Result<Vec<ProfileView>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let ids = self
            .conn
            .prepare_cached(
                "SELECT profile_id FROM profiles
                 ORDER BY created_at_ms DESC, profile_id LIMIT ?1",
            )?
            .query_map([limit], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        let mut views = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(view) = self.load_view(&id)? {
                views.push(view);
            }
        }
        Ok(views)
    }
}
