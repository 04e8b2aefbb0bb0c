//! The agent's outbox: a SQLite journal of events (DESIGN.md principle 2).
//!
//! This file owns the [`Journal`] struct, opening a journal (creating or upgrading its
//! schema), its errors and the helpers its concerns share. One `impl Journal` block per
//! concern, each in its own file:
//!
//! - [`outbox`]: appending events, reading them back, acknowledging them (seqs, chain head);
//! - [`erasures`]: the hub's erasures, applied to unacknowledged events in place;
//! - [`campaigns`]: the hub's campaign set, this till's coupon keyring and the catalog;
//! - [`digests`]: the customer digest cache;
//! - [`coupons`]: coupon serials and the store's redeemed-codes ledger;
//! - [`status`]: what `till360-agent status` shows, and the pilot's counters;
//! - [`integrity`]: the hash chain and the quarantine of unreadable rows;
//! - [`space`]: WAL checkpoints, freed pages and the quota alarm.
//!
//! The invariants every concern keeps: the meta row (`journal_meta`), not the struct, is
//! the truth, read inside the writer's transaction; a change of several tables or of a
//! version in the meta row is ONE transaction, so after a crash both or neither are
//! there. The journal remembers its store/till: a `data_dir` copied to another till
//! refuses to open there. Payloads are encoded by `shared::codec` only.

mod campaigns;
mod coupons;
mod digests;
mod erasures;
mod integrity;
mod outbox;
mod space;
mod status;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::NaiveDate;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use thiserror::Error;
use till360_shared::chain::GENESIS;
use till360_shared::codec;
use till360_shared::coupon::CouponFields;
use till360_shared::{AgentId, EventKind};

pub use erasures::ErasureOutcome;
pub use integrity::Quarantined;
use space::Quota;
pub use space::{CHECKPOINT_EVERY, DEFAULT_MAX_BYTES};
pub use status::JournalStatus;

pub const JOURNAL_FILE: &str = "journal.db";
/// 2 added `journal_meta.erasure_version`, 3 the `campaigns` table, 4 the keyring and
/// catalog in `campaigns`, the digest cache and coupon serials, 5 the hash chain
/// (`events.link`, `journal_meta.chain_head` and `acked_link`) and the quarantine, 6
/// the store's redeemed coupon codes (`redeemed_codes`, `journal_meta.redeemed_version`),
/// receipts with `unbalanced` and `unmatched_lines` (older rows re-encoded) and the
/// `counters` table; older journals are upgraded on open.
const SCHEMA_VERSION: i64 = 6;

#[derive(Debug, Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("journal {path}: cannot create its folder: {source}")]
    CreateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("journal {path}: cannot make it private (mode 0600): {source}")]
    Private {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("journal {path} does not exist (the agent has not run with this data_dir yet)")]
    Missing { path: String },
    #[error("journal {path} belongs to {found}, not {expected}: a data_dir must not be copied to another till")]
    AgentMismatch {
        path: String,
        found: AgentId,
        expected: AgentId,
    },
    #[error("journal {path}: schema version {found} is not supported (this agent knows {SCHEMA_VERSION})")]
    Schema { path: String, found: i64 },
    #[error("journal {path}: event seq {seq} is corrupt: {reason}")]
    CorruptEvent {
        path: String,
        seq: u64,
        reason: String,
    },
    #[error("journal {path}: inconsistent: {reason}")]
    Inconsistent { path: String, reason: String },
    #[error("journal {path}: seq {first_seq} was asked for but everything up to {acked_seq} is acknowledged and deleted")]
    Compacted {
        path: String,
        first_seq: u64,
        acked_seq: u64,
    },
    #[error("journal {path}: cannot acknowledge seq {seq}: the journal only reached {last_seq}")]
    AckBeyondLast {
        path: String,
        seq: u64,
        last_seq: u64,
    },
    #[error("journal {path} is full (disk or page limit): the event was not recorded: {source}")]
    Full {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("journal {path}: cannot encode event: {reason}")]
    Encode { path: String, reason: String },
    #[error("journal {path}: the stored campaign set is corrupt: {reason}")]
    CorruptCampaigns { path: String, reason: String },
    #[error("journal {path}: all {} coupon serials of campaign number {campaign} expiring {expires} are used", u32::from(CouponFields::MAX_SERIAL) + 1)]
    SerialsExhausted {
        path: String,
        campaign: u16,
        expires: NaiveDate,
    },
}

pub struct Journal {
    conn: Connection,
    path: PathBuf,
    agent: AgentId,
    last_seq: u64,
    acked_seq: u64,
    quota: Quota,
    appends_since_checkpoint: u32,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.path)
            .field("agent", &self.agent)
            .field("last_seq", &self.last_seq)
            .field("acked_seq", &self.acked_seq)
            .finish()
    }
}

pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Journal {
    /// Opens (creating if needed) `data_dir/journal.db` for `agent`.
    pub fn open(data_dir: &Path, agent: &AgentId) -> Result<Journal, JournalError> {
        let path = data_dir.join(JOURNAL_FILE);
        // Private from the first byte, whatever the umask: the journal holds card numbers.
        crate::file_modes::create_private_dir(data_dir).map_err(|source| {
            JournalError::CreateDir {
                path: data_dir.display().to_string(),
                source,
            }
        })?;
        crate::file_modes::create_private_file(&path).map_err(|source| JournalError::Private {
            path: path.display().to_string(),
            source,
        })?;
        Self::open_file(&path, agent)
    }

    /// Opens an existing journal only (for `status`, which must not create one).
    pub fn open_existing(data_dir: &Path, agent: &AgentId) -> Result<Journal, JournalError> {
        let path = data_dir.join(JOURNAL_FILE);
        if !path.exists() {
            return Err(JournalError::Missing {
                path: path.display().to_string(),
            });
        }
        Self::open_file(&path, agent)
    }

    /// Opens the SQLite file in WAL mode with `synchronous=FULL`, its WAL files private
    /// and deleted rows overwritten.
    fn connect(path: &Path) -> Result<Connection, JournalError> {
        let label = path.display().to_string();
        let sql = |source| JournalError::Sqlite {
            path: label.clone(),
            source,
        };
        let conn = Connection::open(path).map_err(sql)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(sql)?;
        space::configure(&conn).map_err(sql)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(sql)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(JournalError::Inconsistent {
                path: label,
                reason: format!("SQLite refused WAL mode (got {mode})"),
            });
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql)?;
        // SQLite gives `-wal` and `-shm` the database's mode; a private database gets
        // them set explicitly as well (a journal open to others is refused by `run`).
        if let (Some(dir), Ok(())) = (path.parent(), crate::file_modes::check_private(path)) {
            for file in crate::file_modes::journal_files(dir) {
                crate::file_modes::make_private(&file).map_err(|source| JournalError::Private {
                    path: file.display().to_string(),
                    source,
                })?;
            }
        }
        // Deleted and rewritten rows (an erasure, acknowledged events) are overwritten,
        // not left readable in the file's free space.
        conn.pragma_update(None, "secure_delete", "ON")
            .map_err(sql)?;
        Ok(conn)
    }

    fn open_file(path: &Path, agent: &AgentId) -> Result<Journal, JournalError> {
        let label = path.display().to_string();
        let sql = |source| JournalError::Sqlite {
            path: label.clone(),
            source,
        };
        let mut conn = Self::connect(path)?;

        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS journal_meta (
                 id INTEGER PRIMARY KEY CHECK (id = 1),
                 schema_version INTEGER NOT NULL,
                 store TEXT NOT NULL,
                 till TEXT NOT NULL,
                 last_seq INTEGER NOT NULL,
                 acked_seq INTEGER NOT NULL,
                 erasure_version INTEGER NOT NULL DEFAULT 0,
                 digest_version INTEGER NOT NULL DEFAULT 0,
                 chain_head BLOB,
                 acked_link BLOB,
                 redeemed_version INTEGER NOT NULL DEFAULT 0
             );
             CREATE TABLE IF NOT EXISTS events (
                 seq INTEGER PRIMARY KEY,
                 recorded_at_ms INTEGER NOT NULL,
                 offset_min INTEGER NOT NULL,
                 kind TEXT NOT NULL,
                 payload BLOB NOT NULL,
                 link BLOB
             );",
        )
        .map_err(sql)?;
        let meta: Option<(i64, String, String, i64, i64)> = tx
            .query_row(
                "SELECT schema_version, store, till, last_seq, acked_seq FROM journal_meta WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()
            .map_err(sql)?;
        // Journals from before the chain get their links computed below.
        let mut needs_relink = false;
        let (last_seq, acked_seq) = match meta {
            None => {
                tx.execute(
                    "INSERT INTO journal_meta
                         (id, schema_version, store, till, last_seq, acked_seq, chain_head, acked_link)
                     VALUES (1, ?1, ?2, ?3, 0, 0, ?4, ?4)",
                    params![SCHEMA_VERSION, agent.store, agent.till, &GENESIS[..]],
                )
                .map_err(sql)?;
                (0, 0)
            }
            Some((version, store, till, last, acked)) => {
                if !(1..=SCHEMA_VERSION).contains(&version) {
                    return Err(JournalError::Schema {
                        path: label,
                        found: version,
                    });
                }
                needs_relink = upgrade(&tx, version).map_err(sql)?;
                let found = AgentId::new(store, till);
                if &found != agent {
                    return Err(JournalError::AgentMismatch {
                        path: label,
                        found,
                        expected: agent.clone(),
                    });
                }
                (to_u64(last), to_u64(acked))
            }
        };
        create_concern_tables(&tx).map_err(sql)?;
        let (min, max): (Option<i64>, Option<i64>) = tx
            .query_row("SELECT MIN(seq), MAX(seq) FROM events", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(sql)?;
        if acked_seq > last_seq
            || max.is_some_and(|m| to_u64(m) > last_seq)
            || min.is_some_and(|m| to_u64(m) <= acked_seq)
        {
            return Err(JournalError::Inconsistent {
                path: label,
                reason: format!(
                    "meta says last_seq {last_seq}, acked_seq {acked_seq}; events hold seqs {min:?}..={max:?}"
                ),
            });
        }
        if needs_relink || integrity::chain_head(&tx).map_err(sql)?.is_none() {
            let quarantined =
                integrity::relink_from(&tx, agent, acked_seq + 1, acked_seq).map_err(sql)?;
            log_quarantined(&label, &quarantined);
        }
        tx.commit().map_err(sql)?;
        let mut journal = Journal {
            conn,
            path: path.to_path_buf(),
            agent: agent.clone(),
            last_seq,
            acked_seq,
            quota: Quota::new(DEFAULT_MAX_BYTES),
            appends_since_checkpoint: 0,
        };
        journal.check_quota();
        Ok(journal)
    }

    fn sql_err(&self, source: rusqlite::Error) -> JournalError {
        JournalError::Sqlite {
            path: self.path.display().to_string(),
            source,
        }
    }

    pub fn agent(&self) -> &AgentId {
        &self.agent
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read_meta(&self) -> Result<(u64, u64), JournalError> {
        meta_seqs(&self.conn).map_err(|e| self.sql_err(e))
    }

    /// A downlink version kept in `journal_meta` (`query` selects one column of its row).
    fn meta_version(&self, query: &str) -> Result<u64, JournalError> {
        self.conn
            .query_row(query, [], |r| Ok(to_u64(r.get(0)?)))
            .map_err(|e| self.sql_err(e))
    }
}

/// Upgrades a journal of schema `version` (1 to [`SCHEMA_VERSION`]) in the opening
/// transaction; `true` when the hash chain must be re-linked afterwards.
fn upgrade(tx: &Connection, version: i64) -> rusqlite::Result<bool> {
    let mut needs_relink = false;
    if version == 1 {
        tx.execute_batch(
            "ALTER TABLE journal_meta ADD COLUMN erasure_version INTEGER NOT NULL DEFAULT 0;",
        )?;
    }
    if version < 4 {
        // Schema 3 kept the keyring in a column named `till_key` and had no
        // catalog: drop that row's table; with version 0 the hub resends.
        // The new tables are created by `create_concern_tables`.
        tx.execute_batch(
            "ALTER TABLE journal_meta ADD COLUMN digest_version INTEGER NOT NULL DEFAULT 0;
             DROP TABLE IF EXISTS campaigns;",
        )?;
    }
    if version < 5 {
        // The chain starts at the acked seq: the rows before it are gone.
        for (table, column) in [
            ("journal_meta", "chain_head"),
            ("journal_meta", "acked_link"),
            ("events", "link"),
        ] {
            add_blob_column(tx, table, column)?;
        }
        needs_relink = true;
    }
    if version < 6 {
        let has = tx
            .prepare(
                "SELECT 1 FROM pragma_table_info('journal_meta')
                 WHERE name = 'redeemed_version'",
            )
            .and_then(|mut q| q.exists([]))?;
        if !has {
            tx.execute_batch(
                "ALTER TABLE journal_meta
                     ADD COLUMN redeemed_version INTEGER NOT NULL DEFAULT 0;",
            )?;
        }
        reencode_old_receipts(tx)?;
        needs_relink = true;
    }
    if version < SCHEMA_VERSION {
        tx.execute(
            "UPDATE journal_meta SET schema_version = ?1 WHERE id = 1",
            params![SCHEMA_VERSION],
        )?;
    }
    Ok(needs_relink)
}

/// Creates the tables of the journal's concerns (campaigns, digests, coupons, counters,
/// quarantine) that a new or upgraded journal lacks.
fn create_concern_tables(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS campaigns (
             id INTEGER PRIMARY KEY CHECK (id = 1),
             version INTEGER NOT NULL,
             campaign_set BLOB NOT NULL,
             keyring BLOB NOT NULL,
             catalog BLOB NOT NULL
         );
         CREATE TABLE IF NOT EXISTS digests (
             card_key BLOB PRIMARY KEY,
             digest BLOB NOT NULL
         ) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS redeemed_codes (
             code TEXT PRIMARY KEY,
             expires TEXT NOT NULL,
             -- 1: redeemed at this till (journaled here); 0: pushed by the hub.
             own INTEGER NOT NULL
         ) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS coupon_serials (
             campaign_number INTEGER NOT NULL,
             expires TEXT NOT NULL,
             next_serial INTEGER NOT NULL,
             PRIMARY KEY (campaign_number, expires)
         ) WITHOUT ROWID;
         -- Counts a pilot watches (`status`, the health report): receipts that did
         -- not balance, scans that were neither a card nor a coupon.
         CREATE TABLE IF NOT EXISTS counters (
             name TEXT PRIMARY KEY,
             count INTEGER NOT NULL
         ) WITHOUT ROWID;
         -- Rows that could not be read, as they were found (the events table holds
         -- a Quarantined event with the same seq instead).
         CREATE TABLE IF NOT EXISTS quarantine (
             seq INTEGER PRIMARY KEY,
             kind TEXT,
             recorded_at_ms INTEGER,
             offset_min INTEGER,
             payload BLOB,
             reason TEXT NOT NULL,
             quarantined_at_ms INTEGER NOT NULL
         );",
    )
}

/// Schema 6: receipts written before they carried `unbalanced` and `unmatched_lines`
/// are re-encoded, so every reader sees one format (the chain is relinked after).
fn reencode_old_receipts(conn: &Connection) -> rusqlite::Result<()> {
    let rows = conn
        .prepare("SELECT seq, payload FROM events WHERE kind = 'receipt'")?
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut update = conn.prepare("UPDATE events SET payload = ?1 WHERE seq = ?2")?;
    for (seq, payload) in rows {
        if codec::from_bytes::<EventKind>(&payload).is_ok() {
            continue;
        }
        // A row that cannot be read either way is left to the relink's quarantine.
        let Ok(kind) = EventKind::decode_stored(&payload) else {
            continue;
        };
        let payload = codec::to_bytes(&kind).map_err(integrity::encode_failure)?;
        update.execute(params![payload, seq])?;
    }
    Ok(())
}

/// Turns an SQLite error into the journal's error naming its file.
fn sql_error(path: &str) -> impl Fn(rusqlite::Error) -> JournalError + Copy + '_ {
    move |source| JournalError::Sqlite {
        path: path.to_string(),
        source,
    }
}

/// `(last_seq, acked_seq)` from the meta row (inside the caller's transaction, if any:
/// the row, not the `Journal` struct, is the truth).
fn meta_seqs(conn: &Connection) -> rusqlite::Result<(u64, u64)> {
    conn.query_row(
        "SELECT last_seq, acked_seq FROM journal_meta WHERE id = 1",
        [],
        |r| Ok((to_u64(r.get(0)?), to_u64(r.get(1)?))),
    )
}

/// A quarantine is disk damage: always worth an error line per row.
fn log_quarantined(path: &str, quarantined: &[Quarantined]) {
    for q in quarantined {
        tracing::error!(
            "journal {path}: event seq {} could not be read and was quarantined ({}); \
             its raw bytes are kept in the quarantine table",
            q.seq,
            q.reason
        );
    }
}

/// Adds a BLOB column unless the table has it (a schema-1 journal gets its `events`
/// table created with today's columns).
fn add_blob_column(conn: &Connection, table: &str, column: &str) -> rusqlite::Result<()> {
    let exists = conn
        .prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")?
        .exists(params![table, column])?;
    if !exists {
        conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} BLOB;"))?;
    }
    Ok(())
}
