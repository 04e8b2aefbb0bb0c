//! The agent's outbox: a SQLite journal of events (DESIGN.md principle 2).
//!
//! An event counts as recorded once [`Journal::append`] returns: the row is committed
//! in WAL mode with `synchronous=FULL`. `seq` is gapless per agent from 1; `last_seq` and
//! `acked_seq` live in a one-row meta table, so deleting acknowledged events never lets
//! a seq be handed out twice. The journal remembers its store/till: a `data_dir` copied
//! to another till refuses to open there. Payloads are encoded by `shared::codec` only.
//!
//! Erasures from the hub ([`Journal::apply_erasures`]) pseudonymise the unacknowledged
//! events of erased cards in place (a seq is never lost) and record the erasure version
//! in the meta row in the same transaction: after a crash both or neither are there.
//!
//! The hub's campaign set, this till's coupon keyring and the catalog items
//! ([`Journal::store_campaigns`]) live in a one-row `campaigns` table, written together.
//! Customer digests are cached in `digests`, keyed by the card key (a keyed hash of the
//! card: the card number is never stored with a digest), with the feed's version in
//! the meta row. `coupon_serials` counts the serials handed out per campaign number and
//! expiry day, so a coupon printed after a crash never repeats a code.
//!
//! `redeemed_codes` is the store's coupon redemption ledger: codes redeemed at any till
//! of the store (or issued here and redeemed elsewhere) as the hub pushes them, with the
//! feed's version in the meta row, plus this till's own redemptions, recorded in the
//! same transaction as their `CouponRedeemed` event (so also offline). A code is kept
//! until the day after its expiry: an expired code is refused by its date anyway.
//!
//! Every event row carries its link of the journal's hash chain and rows that cannot be
//! read are quarantined ([`integrity`]); the WAL and the file are kept bounded and the
//! quota alarm raised ([`space`]).

mod integrity;
mod space;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::NaiveDate;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;
use thiserror::Error;
use till360_shared::campaign::{CampaignSet, CatalogItem, Digest};
use till360_shared::chain::{self, ChainHash, GENESIS};
use till360_shared::codec;
use till360_shared::coupon::{CardKey, CouponFields, Keyring};
use till360_shared::wire::DigestEntry;
use till360_shared::{AgentId, CardNumber, Event, EventKind, Timestamp};

use crate::hub_link::CampaignState;
pub use integrity::Quarantined;
use space::{Quota, QuotaChange};
pub use space::{CHECKPOINT_EVERY, DEFAULT_MAX_BYTES};

pub const JOURNAL_FILE: &str = "journal.db";
/// 2 added `journal_meta.erasure_version`, 3 the `campaigns` table, 4 the keyring and
/// catalog in `campaigns`, the digest cache and coupon serials, 5 the hash chain
/// (`events.link`, `journal_meta.chain_head` and `acked_link`) and the quarantine, 6
/// the store's redeemed coupon codes (`redeemed_codes`, `journal_meta.redeemed_version`),
/// receipts with `unbalanced` and `unmatched_lines` (older rows re-encoded) and the
/// `counters` table; older journals are upgraded on open.
const SCHEMA_VERSION: i64 = 6;
/// Serial counters this far before the expiry day asked for are deleted: a coupon
/// expired that long ago is never issued again, and the table stays small.
const SERIAL_RETENTION_DAYS: i64 = 400;

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

/// What `till360-agent status` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JournalStatus {
    pub store: String,
    pub till: String,
    pub last_seq: u64,
    pub acked_seq: u64,
    /// Events journaled but not yet acknowledged by the hub.
    pub pending: u64,
    /// When the oldest pending event was recorded (RFC 3339 in JSON).
    #[serde(serialize_with = "rfc3339_opt")]
    pub oldest_pending_at: Option<Timestamp>,
    /// The newest hub erasure this journal has applied.
    pub erasure_version: u64,
    /// The version of the campaign set held (0: none yet). The key is never shown.
    pub campaign_version: u64,
    /// The held set's content version, as the hub's `GET /api/v1/campaigns` shows it
    /// (`None`: no set yet, or it cannot be read).
    pub campaign_set: Option<String>,
    /// Customer digests cached (their content is never shown).
    pub digests: u64,
    /// The version of the hub's digest feed the cache holds (0: empty).
    pub digest_version: u64,
    /// Rows that could not be read and were replaced by `Quarantined` events (their
    /// raw bytes are kept in the `quarantine` table).
    pub quarantined: u64,
    /// The journal file's size.
    pub bytes: u64,
    /// `[journal] max_bytes`.
    pub max_bytes: u64,
    /// The file is larger than `max_bytes`: nothing is dropped, the agent alarms.
    pub quota_exceeded: bool,
    /// The hash chain's head (the link at `last_seq`), hex.
    pub chain_head: String,
    /// Receipts journaled flagged `unbalanced` (lines and total disagree, or no total
    /// line): a layout that misreads this POS.
    pub unbalanced_receipts: u64,
    /// Scans that were neither a loyalty card nor a coupon (unknown prefix, bad check
    /// digit, a product): a wrong `[cards] prefixes` shows here.
    pub unrecognised_scans: u64,
}

/// What [`Journal::apply_erasures`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ErasureOutcome {
    /// Unacknowledged events that carried an erased card and were pseudonymised.
    pub events_pseudonymised: usize,
    /// Cached digests of erased cards removed.
    pub digests_removed: usize,
    /// Quarantined rows whose bytes held an erased card (its digits are overwritten).
    pub quarantine_scrubbed: usize,
    /// The journal's erasure version afterwards.
    pub erasure_version: u64,
}

fn rfc3339_opt<S: serde::Serializer>(ts: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match ts {
        Some(ts) => s.serialize_some(&ts.to_rfc3339()),
        None => s.serialize_none(),
    }
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

/// A `campaigns` row as stored: version, set, keyring and catalog blobs.
type CampaignRow = (i64, Vec<u8>, Vec<u8>, Vec<u8>);

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

    fn open_file(path: &Path, agent: &AgentId) -> Result<Journal, JournalError> {
        let label = path.display().to_string();
        let sql = |source| JournalError::Sqlite {
            path: label.clone(),
            source,
        };
        let mut conn = Connection::open(path).map_err(sql)?;
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
                if version == 1 {
                    tx.execute_batch(
                        "ALTER TABLE journal_meta ADD COLUMN erasure_version INTEGER NOT NULL DEFAULT 0;",
                    )
                    .map_err(sql)?;
                }
                if version < 4 {
                    // Schema 3 kept the keyring in a column named `till_key` and had no
                    // catalog: drop that row's table; with version 0 the hub resends.
                    // The new tables are created below.
                    tx.execute_batch(
                        "ALTER TABLE journal_meta ADD COLUMN digest_version INTEGER NOT NULL DEFAULT 0;
                         DROP TABLE IF EXISTS campaigns;",
                    )
                    .map_err(sql)?;
                }
                if version < 5 {
                    // The chain starts at the acked seq: the rows before it are gone.
                    for (table, column) in [
                        ("journal_meta", "chain_head"),
                        ("journal_meta", "acked_link"),
                        ("events", "link"),
                    ] {
                        add_blob_column(&tx, table, column).map_err(sql)?;
                    }
                    needs_relink = true;
                }
                if version < 6 {
                    let has = tx
                        .prepare(
                            "SELECT 1 FROM pragma_table_info('journal_meta')
                             WHERE name = 'redeemed_version'",
                        )
                        .and_then(|mut q| q.exists([]))
                        .map_err(sql)?;
                    if !has {
                        tx.execute_batch(
                            "ALTER TABLE journal_meta
                                 ADD COLUMN redeemed_version INTEGER NOT NULL DEFAULT 0;",
                        )
                        .map_err(sql)?;
                    }
                    reencode_old_receipts(&tx).map_err(sql)?;
                    needs_relink = true;
                }
                if version < SCHEMA_VERSION {
                    tx.execute(
                        "UPDATE journal_meta SET schema_version = ?1 WHERE id = 1",
                        params![SCHEMA_VERSION],
                    )
                    .map_err(sql)?;
                }
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
        tx.execute_batch(
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
             -- Rows that could not be read, as they were found (the events table holds
             -- a Quarantined event with the same seq instead).
             -- Counts a pilot watches (`status`, the health report): receipts that did
             -- not balance, scans that were neither a card nor a coupon.
             CREATE TABLE IF NOT EXISTS counters (
                 name TEXT PRIMARY KEY,
                 count INTEGER NOT NULL
             ) WITHOUT ROWID;
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
        .map_err(sql)?;
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

    /// Records an event with the next seq and its chain link; it is committed (fsynced)
    /// when this returns. A full disk (or page limit) is [`JournalError::Full`]: nothing
    /// was recorded and the journal stays usable once space is back.
    pub fn append(
        &mut self,
        recorded_at: Timestamp,
        kind: EventKind,
    ) -> Result<Event, JournalError> {
        let payload = codec::to_bytes(&kind).map_err(|e| JournalError::Encode {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        })?;
        let path = self.path.display().to_string();
        let sql = |source: rusqlite::Error| {
            if source.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
                JournalError::Full {
                    path: path.clone(),
                    source,
                }
            } else {
                sql_error(&path)(source)
            }
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        // Read inside the write transaction: the meta row, not this struct, is the truth.
        let (last, acked) = meta_seqs(&tx).map_err(sql)?;
        let head = match integrity::chain_head(&tx).map_err(sql)? {
            Some(head) => head,
            None => {
                // A damaged head is rebuilt from the rows (quarantining what cannot be read).
                let quarantined =
                    integrity::relink_from(&tx, &self.agent, 0, acked).map_err(sql)?;
                log_quarantined(&path, &quarantined);
                integrity::chain_head(&tx).map_err(sql)?.unwrap_or(GENESIS)
            }
        };
        let seq = last + 1;
        let event = Event {
            agent: self.agent.clone(),
            seq,
            recorded_at,
            kind,
        };
        let link = chain::link(&head, &event).map_err(|e| JournalError::Encode {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        tx.execute(
            "INSERT INTO events (seq, recorded_at_ms, offset_min, kind, payload, link)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                to_i64(seq),
                recorded_at.unix_ms,
                recorded_at.offset_min,
                event.kind.name(),
                payload,
                &link[..]
            ],
        )
        .map_err(sql)?;
        tx.execute(
            "UPDATE journal_meta SET last_seq = ?1, chain_head = ?2 WHERE id = 1",
            params![to_i64(seq), &link[..]],
        )
        .map_err(sql)?;
        if let EventKind::CouponRedeemed(redemption) = &event.kind {
            // In the ledger with its event: a second scan is refused, also offline.
            insert_redeemed(&tx, &redemption.code, true).map_err(sql)?;
        }
        if matches!(&event.kind, EventKind::Receipt(r) if r.unbalanced) {
            bump_counter(&tx, UNBALANCED_RECEIPTS).map_err(sql)?;
        }
        tx.commit().map_err(sql)?;
        self.last_seq = seq;
        self.appends_since_checkpoint += 1;
        if self.appends_since_checkpoint >= CHECKPOINT_EVERY {
            self.checkpoint();
        }
        self.check_quota();
        Ok(event)
    }

    /// Up to `max` unacknowledged events from `first_seq` on, in seq order, contiguous.
    /// Asking for a seq already acknowledged (and deleted) is an error, not a skip. A
    /// row that cannot be read is quarantined (see [`integrity`]) and read as the
    /// `Quarantined` event that replaced it.
    pub fn read_from(&self, first_seq: u64, max: usize) -> Result<Vec<Event>, JournalError> {
        Ok(self
            .read_linked(first_seq, max)?
            .into_iter()
            .map(|(event, _)| event)
            .collect())
    }

    /// [`Self::read_from`] with each event's stored chain link (what the uplink claims
    /// in `Chain` after a batch).
    pub fn read_linked(
        &self,
        first_seq: u64,
        max: usize,
    ) -> Result<Vec<(Event, ChainHash)>, JournalError> {
        match self.try_read(first_seq, max)? {
            Ok(events) => Ok(events),
            Err(bad_seq) => {
                self.repair_from(bad_seq)?;
                match self.try_read(first_seq, max)? {
                    Ok(events) => Ok(events),
                    // Repair quarantines every unreadable row: this is not disk damage
                    // the journal can mend.
                    Err(seq) => Err(JournalError::CorruptEvent {
                        path: self.path.display().to_string(),
                        seq,
                        reason: "still unreadable after quarantine".into(),
                    }),
                }
            }
        }
    }

    /// The events, or the first seq whose row cannot be read or has no usable link.
    fn try_read(
        &self,
        first_seq: u64,
        max: usize,
    ) -> Result<Result<Vec<(Event, ChainHash)>, u64>, JournalError> {
        let first_seq = first_seq.max(1);
        let (last_seq, acked_seq) = self.read_meta()?;
        if first_seq <= acked_seq {
            return Err(JournalError::Compacted {
                path: self.path.display().to_string(),
                first_seq,
                acked_seq,
            });
        }
        if max == 0 || first_seq > last_seq {
            return Ok(Ok(Vec::new()));
        }
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT seq, recorded_at_ms, offset_min, payload, link FROM events
                 WHERE seq >= ?1 ORDER BY seq LIMIT ?2",
            )
            .map_err(|e| self.sql_err(e))?;
        let rows = stmt
            .query_map(params![to_i64(first_seq), to_i64(max as u64)], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                    r.get::<_, Option<Vec<u8>>>(4)?,
                ))
            })
            .map_err(|e| self.sql_err(e))?;
        let mut events = Vec::new();
        let mut expected = first_seq;
        for row in rows {
            let (seq, unix_ms, offset_min, payload, link) = row.map_err(|e| self.sql_err(e))?;
            let seq = to_u64(seq);
            if seq != expected {
                return Err(JournalError::Inconsistent {
                    path: self.path.display().to_string(),
                    reason: format!("event seq {expected} is missing (found {seq} next)"),
                });
            }
            let decoded = integrity::decode_row(&self.agent, seq, unix_ms, offset_min, &payload);
            match (decoded, integrity::stored_link(link)) {
                (Ok(event), Some(link)) => events.push((event, link)),
                _ => return Ok(Err(seq)),
            }
            expected += 1;
        }
        let wanted = (last_seq - first_seq + 1).min(max as u64);
        if (events.len() as u64) < wanted {
            return Err(JournalError::Inconsistent {
                path: self.path.display().to_string(),
                reason: format!("event seq {expected} is missing (journal reached {last_seq})"),
            });
        }
        Ok(Ok(events))
    }

    /// Quarantines the unreadable rows from `seq` on and re-links the tail, in one
    /// transaction (a legitimate rewrite, like an erasure).
    fn repair_from(&self, seq: u64) -> Result<(), JournalError> {
        let path = self.path.display().to_string();
        let sql = sql_error(&path);
        // `&self` readers may find a bad row: the connection itself is not shared.
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
            .map_err(sql)?;
        let acked: i64 = tx
            .query_row("SELECT acked_seq FROM journal_meta WHERE id = 1", [], |r| {
                r.get(0)
            })
            .map_err(sql)?;
        let quarantined =
            integrity::relink_from(&tx, &self.agent, seq, to_u64(acked)).map_err(sql)?;
        tx.commit().map_err(sql)?;
        log_quarantined(&path, &quarantined);
        Ok(())
    }

    /// The hash chain's head: the link at `last_seq` (GENESIS for a new journal).
    pub fn chain_head(&self) -> Result<ChainHash, JournalError> {
        integrity::chain_head(&self.conn)
            .map(|head| head.unwrap_or(GENESIS))
            .map_err(|e| self.sql_err(e))
    }

    /// The rows quarantined so far: seq and reason, in seq order.
    pub fn quarantined(&self) -> Result<Vec<Quarantined>, JournalError> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, reason FROM quarantine ORDER BY seq")
            .map_err(|e| self.sql_err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Quarantined {
                    seq: to_u64(r.get(0)?),
                    reason: r.get(1)?,
                })
            })
            .map_err(|e| self.sql_err(e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.sql_err(e))
    }

    /// Sets `[journal] max_bytes` (the quota alarm's threshold) and checks it at once.
    pub fn set_max_bytes(&mut self, max_bytes: u64) {
        self.quota = Quota::new(max_bytes);
        self.check_quota();
    }

    /// Caps the file at `pages` pages (SQLite `max_page_count`, this connection only)
    /// and returns the cap SQLite applied: how tests emulate a full disk.
    pub fn limit_pages(&mut self, pages: u64) -> Result<u64, JournalError> {
        self.conn
            .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
                r.get::<_, i64>(0)
            })
            .map(to_u64)
            .map_err(|e| self.sql_err(e))
    }

    /// Whether the journal file is past its quota (the alarm is raised).
    pub fn quota_exceeded(&self) -> bool {
        self.quota.exceeded
    }

    /// The journal file's size in bytes.
    pub fn bytes(&self) -> Result<u64, JournalError> {
        space::database_bytes(&self.conn).map_err(|e| self.sql_err(e))
    }

    /// Truncates the WAL now (also done after acks and every [`CHECKPOINT_EVERY`]
    /// appends). A failure is logged: it costs disk, never an event.
    pub fn checkpoint(&mut self) {
        self.appends_since_checkpoint = 0;
        match space::checkpoint(&self.conn) {
            Ok(true) => {}
            Ok(false) => tracing::debug!(
                "journal {}: WAL checkpoint deferred (a reader holds it)",
                self.path.display()
            ),
            Err(e) => tracing::warn!(
                "journal {}: WAL checkpoint failed: {e}",
                self.path.display()
            ),
        }
    }

    /// Compares the file's size with the quota; logs once per crossing.
    fn check_quota(&mut self) {
        let bytes = match space::database_bytes(&self.conn) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!("journal {}: cannot read its size: {e}", self.path.display());
                return;
            }
        };
        match self.quota.observe(bytes) {
            QuotaChange::Crossed => tracing::error!(
                "journal {} is {bytes} bytes, over its quota of {} ([journal] max_bytes): \
                 nothing is dropped, but the hub has not acknowledged events for a while",
                self.path.display(),
                self.quota.max_bytes
            ),
            QuotaChange::Back => tracing::info!(
                "journal {} is back under its quota ({bytes} of {} bytes)",
                self.path.display(),
                self.quota.max_bytes
            ),
            QuotaChange::Same => {}
        }
    }

    fn read_meta(&self) -> Result<(u64, u64), JournalError> {
        meta_seqs(&self.conn).map_err(|e| self.sql_err(e))
    }

    /// The highest seq appended through this connection (or found at open).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The highest seq the hub acknowledged, as known to this connection.
    pub fn acked_seq(&self) -> u64 {
        self.acked_seq
    }

    /// Records that the hub committed everything up to `seq` and deletes those events,
    /// in one transaction (keeping the chain link at `seq` as the new base); then gives
    /// the space back and truncates the WAL. Acknowledging an older seq again is a no-op.
    pub fn ack(&mut self, seq: u64) -> Result<(), JournalError> {
        let path = self.path.display().to_string();
        let sql = sql_error(&path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let (last, acked) = meta_seqs(&tx).map_err(sql)?;
        if seq > last {
            return Err(JournalError::AckBeyondLast {
                path,
                seq,
                last_seq: last,
            });
        }
        if seq <= acked {
            self.acked_seq = acked;
            self.last_seq = last;
            return Ok(());
        }
        let link: Option<Vec<u8>> = tx
            .query_row(
                "SELECT link FROM events WHERE seq = ?1",
                params![to_i64(seq)],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)?
            .flatten();
        // A missing link (a damaged row) leaves the base unknown: the next re-link
        // starts from GENESIS, which the hub reports rather than hides.
        let link = integrity::stored_link(link).unwrap_or(GENESIS);
        tx.execute(
            "UPDATE journal_meta SET acked_seq = ?1, acked_link = ?2 WHERE id = 1",
            params![to_i64(seq), &link[..]],
        )
        .map_err(sql)?;
        tx.execute("DELETE FROM events WHERE seq <= ?1", params![to_i64(seq)])
            .map_err(sql)?;
        tx.commit().map_err(sql)?;
        self.acked_seq = seq;
        self.last_seq = last;
        if let Err(e) = space::give_back_free_pages(&self.conn) {
            tracing::warn!(
                "journal {}: incremental vacuum failed: {e}",
                self.path.display()
            );
        }
        self.checkpoint();
        self.check_quota();
        Ok(())
    }

    /// The newest hub erasure version applied to this journal (0 if none).
    pub fn erasure_version(&self) -> Result<u64, JournalError> {
        self.meta_version("SELECT erasure_version FROM journal_meta WHERE id = 1")
    }

    /// A downlink version kept in `journal_meta` (`query` selects one column of its row).
    fn meta_version(&self, query: &str) -> Result<u64, JournalError> {
        self.conn
            .query_row(query, [], |r| Ok(to_u64(r.get(0)?)))
            .map_err(|e| self.sql_err(e))
    }

    /// Applies erasures from the hub, which names the erased cards by their card keys
    /// in this store (never in clear): every unacknowledged event carrying a card whose
    /// key (`Keyring::card_key`) is among `card_keys` is pseudonymised in place (same
    /// seq; see `EventKind::forget_cards`), the chain re-linked from the first rewritten
    /// event (a row that cannot be read is quarantined on the way), the cached digests
    /// of those keys are removed, quarantined rows are scrubbed of those cards, and
    /// `up_to_version` is stored, in ONE transaction. A version at or below the stored
    /// one is a no-op (a resend after a lost `ErasuresApplied`). Acknowledged events are
    /// already deleted here; the hub erases its own copy.
    ///
    /// `None`: cards were named but the journal holds no keyring yet, so it cannot tell
    /// which cards they are; nothing is applied and the caller must not acknowledge
    /// (the hub sends them again on the next connection).
    pub fn apply_erasures(
        &mut self,
        card_keys: &[CardKey],
        up_to_version: u64,
    ) -> Result<Option<ErasureOutcome>, JournalError> {
        let path = self.path.display().to_string();
        let sql = sql_error(&path);
        let digest_key = if card_keys.is_empty() {
            None
        } else {
            // A stored set that cannot be read is no keyring either: the erasures wait
            // (they never fail the uplink over it).
            let keyring = self.campaigns().unwrap_or_else(|e| {
                tracing::warn!("{e}");
                None
            });
            match keyring {
                Some(state) => Some(state.keyring.digest_key),
                None if up_to_version <= self.erasure_version()? => None,
                None => return Ok(None),
            }
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let current: i64 = tx
            .query_row(
                "SELECT erasure_version FROM journal_meta WHERE id = 1",
                [],
                |r| r.get(0),
            )
            .map_err(sql)?;
        let current = to_u64(current);
        if up_to_version <= current {
            return Ok(Some(ErasureOutcome {
                erasure_version: current,
                ..ErasureOutcome::default()
            }));
        }
        let erased_keys: HashSet<&CardKey> = card_keys.iter().collect();
        let is_erased = |card: &CardNumber| {
            digest_key.is_some_and(|key| erased_keys.contains(&CardKey::of(&key, card)))
        };
        let mut outcome = ErasureOutcome {
            erasure_version: up_to_version,
            ..ErasureOutcome::default()
        };
        // The first row rewritten or found unreadable: the chain changes from there.
        let mut relink_from: Option<u64> = None;
        if digest_key.is_some() {
            // Every row still here is unacknowledged (an ack deletes).
            let mut select = tx
                .prepare("SELECT seq, payload FROM events ORDER BY seq")
                .map_err(sql)?;
            let mut rows = select.query([]).map_err(sql)?;
            let mut update = tx
                .prepare("UPDATE events SET kind = ?1, payload = ?2 WHERE seq = ?3")
                .map_err(sql)?;
            while let Some(row) = rows.next().map_err(sql)? {
                let seq: i64 = row.get(0).map_err(sql)?;
                let payload: Vec<u8> = row.get(1).map_err(sql)?;
                // An event that cannot be read holds no card anyone can read: the
                // re-link below quarantines it.
                let Ok(mut kind) = codec::from_bytes::<EventKind>(&payload) else {
                    relink_from.get_or_insert(to_u64(seq));
                    continue;
                };
                if kind.forget_cards(is_erased) {
                    relink_from.get_or_insert(to_u64(seq));
                    let payload = codec::to_bytes(&kind).map_err(|e| JournalError::Encode {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                    update
                        .execute(params![kind.name(), payload, seq])
                        .map_err(sql)?;
                    outcome.events_pseudonymised += 1;
                }
            }
            drop(rows);
            let mut remove = tx
                .prepare("DELETE FROM digests WHERE card_key = ?1")
                .map_err(sql)?;
            for key in card_keys {
                outcome.digests_removed += remove.execute([&key.0[..]]).map_err(sql)?;
            }
        }
        if let Some(first) = relink_from {
            let acked: i64 = tx
                .query_row("SELECT acked_seq FROM journal_meta WHERE id = 1", [], |r| {
                    r.get(0)
                })
                .map_err(sql)?;
            let quarantined =
                integrity::relink_from(&tx, &self.agent, first, to_u64(acked)).map_err(sql)?;
            log_quarantined(&path, &quarantined);
        }
        if digest_key.is_some() {
            outcome.quarantine_scrubbed =
                integrity::scrub_quarantine(&tx, &is_erased).map_err(sql)?;
        }
        tx.execute(
            "UPDATE journal_meta SET erasure_version = ?1 WHERE id = 1",
            params![to_i64(up_to_version)],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(Some(outcome))
    }

    /// The version of the campaign set held (0 when none was received).
    pub fn campaign_version(&self) -> Result<u64, JournalError> {
        self.conn
            .query_row("SELECT version FROM campaigns WHERE id = 1", [], |r| {
                Ok(to_u64(r.get(0)?))
            })
            .optional()
            .map(|v| v.unwrap_or(0))
            .map_err(|e| self.sql_err(e))
    }

    /// Replaces the campaign set, this till's coupon keyring and the catalog with the
    /// hub's frame (one statement, so after a crash the old state or the new one is
    /// there, never a mix).
    pub fn store_campaigns(&mut self, state: &CampaignState) -> Result<(), JournalError> {
        let encode = |e: till360_shared::codec::CodecError| JournalError::Encode {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        };
        let set_blob = codec::to_bytes(&state.set).map_err(encode)?;
        let ring_blob = codec::to_bytes(&state.keyring).map_err(encode)?;
        let catalog_blob = codec::to_bytes(&state.catalog).map_err(encode)?;
        self.conn
            .execute(
                "INSERT OR REPLACE INTO campaigns (id, version, campaign_set, keyring, catalog)
                 VALUES (1, ?1, ?2, ?3, ?4)",
                params![to_i64(state.version), set_blob, ring_blob, catalog_blob],
            )
            .map_err(|e| self.sql_err(e))?;
        Ok(())
    }

    /// The campaign set, coupon keyring and catalog held, for the coupon decision;
    /// `None` before the hub sent any.
    pub fn campaigns(&self) -> Result<Option<CampaignState>, JournalError> {
        let row: Option<CampaignRow> = self
            .conn
            .query_row(
                "SELECT version, campaign_set, keyring, catalog FROM campaigns WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(|e| self.sql_err(e))?;
        let Some((version, set_blob, ring_blob, catalog_blob)) = row else {
            return Ok(None);
        };
        let corrupt = |reason: String| JournalError::CorruptCampaigns {
            path: self.path.display().to_string(),
            reason,
        };
        let set: CampaignSet = codec::from_bytes(&set_blob).map_err(|e| corrupt(e.to_string()))?;
        let keyring: Keyring =
            codec::from_bytes(&ring_blob).map_err(|e| corrupt(format!("keyring: {e}")))?;
        let catalog: Vec<CatalogItem> =
            codec::from_bytes(&catalog_blob).map_err(|e| corrupt(format!("catalog: {e}")))?;
        Ok(Some(CampaignState {
            version: to_u64(version),
            set,
            keyring,
            catalog,
        }))
    }

    /// The version of the store's redeemed-codes ledger held (0: none).
    pub fn redeemed_version(&self) -> Result<u64, JournalError> {
        self.meta_version("SELECT redeemed_version FROM journal_meta WHERE id = 1")
    }

    /// Whether `code` (spaces ignored) is in the store's redemption ledger.
    pub fn is_redeemed(&self, code: &str) -> Result<bool, JournalError> {
        self.conn
            .prepare_cached("SELECT 1 FROM redeemed_codes WHERE code = ?1")
            .and_then(|mut q| q.exists([code_key(code)]))
            .map_err(|e| self.sql_err(e))
    }

    /// Applies a `Redeemed` frame in ONE transaction: the codes join the ledger,
    /// `up_to_version` is stored, and codes that expired before `today` (the till's
    /// local date) less a day are dropped. Returns how many codes are held.
    pub fn apply_redeemed(
        &mut self,
        codes: &[String],
        up_to_version: u64,
        today: NaiveDate,
    ) -> Result<u64, JournalError> {
        let path = self.path.display().to_string();
        let sql = sql_error(&path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        for code in codes {
            insert_redeemed(&tx, code, false).map_err(sql)?;
        }
        let keep_from = today - chrono::Days::new(1);
        tx.execute(
            "DELETE FROM redeemed_codes WHERE expires < ?1",
            [keep_from.format("%Y-%m-%d").to_string()],
        )
        .map_err(sql)?;
        tx.execute(
            "UPDATE journal_meta SET redeemed_version = ?1 WHERE id = 1",
            params![to_i64(up_to_version)],
        )
        .map_err(sql)?;
        let held: i64 = tx
            .query_row("SELECT count(*) FROM redeemed_codes", [], |r| r.get(0))
            .map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(to_u64(held))
    }

    /// The version of the hub's digest feed the cache holds (0: empty).
    pub fn digest_version(&self) -> Result<u64, JournalError> {
        self.meta_version("SELECT digest_version FROM journal_meta WHERE id = 1")
    }

    /// Applies a digest delta from the hub in ONE transaction: with `reset` the cache is
    /// emptied first; an entry with a digest stores it, one without deletes the card's;
    /// `up_to_version` is stored. Erasures need nothing here: digests are keyed by card
    /// key, not card, so [`Self::apply_erasures`] cannot find them; the hub turns an
    /// erased profile's digests into removals in this feed.
    pub fn apply_digests(
        &mut self,
        entries: &[DigestEntry],
        up_to_version: u64,
        reset: bool,
    ) -> Result<(), JournalError> {
        let path = self.path.display().to_string();
        let sql = sql_error(&path);
        let encoded = entries
            .iter()
            .map(|entry| {
                let blob = entry
                    .digest
                    .as_ref()
                    .map(codec::to_bytes)
                    .transpose()
                    .map_err(|e| JournalError::Encode {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                Ok((entry.card_key, blob))
            })
            .collect::<Result<Vec<_>, JournalError>>()?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        if reset {
            tx.execute("DELETE FROM digests", []).map_err(sql)?;
        }
        {
            let mut put = tx
                .prepare_cached("INSERT OR REPLACE INTO digests (card_key, digest) VALUES (?1, ?2)")
                .map_err(sql)?;
            let mut delete = tx
                .prepare_cached("DELETE FROM digests WHERE card_key = ?1")
                .map_err(sql)?;
            for (card_key, blob) in &encoded {
                match blob {
                    Some(blob) => put.execute(params![&card_key.0[..], blob]),
                    None => delete.execute(params![&card_key.0[..]]),
                }
                .map_err(sql)?;
            }
        }
        tx.execute(
            "UPDATE journal_meta SET digest_version = ?1 WHERE id = 1",
            params![to_i64(up_to_version)],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(())
    }

    /// Stores (or, with `None`, deletes) one card's digest as the hub answered it at a
    /// scan. The feed's version is left alone: the next delta may repeat this entry.
    pub fn put_digest(
        &mut self,
        card_key: &CardKey,
        digest: Option<&Digest>,
    ) -> Result<(), JournalError> {
        match digest {
            Some(digest) => {
                let blob = codec::to_bytes(digest).map_err(|e| JournalError::Encode {
                    path: self.path.display().to_string(),
                    reason: e.to_string(),
                })?;
                self.conn.execute(
                    "INSERT OR REPLACE INTO digests (card_key, digest) VALUES (?1, ?2)",
                    params![&card_key.0[..], blob],
                )
            }
            None => self.conn.execute(
                "DELETE FROM digests WHERE card_key = ?1",
                params![&card_key.0[..]],
            ),
        }
        .map_err(|e| self.sql_err(e))?;
        Ok(())
    }

    /// The whole digest cache, for the till core to load at start. A row that cannot
    /// be read is skipped with a warning: one bad digest must not cost every coupon.
    pub fn digests(&self) -> Result<Vec<(CardKey, Digest)>, JournalError> {
        let mut stmt = self
            .conn
            .prepare("SELECT card_key, digest FROM digests")
            .map_err(|e| self.sql_err(e))?;
        let mut rows = stmt.query([]).map_err(|e| self.sql_err(e))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| self.sql_err(e))? {
            let (key_blob, digest_blob): (Vec<u8>, Vec<u8>) = match (row.get(0), row.get(1)) {
                (Ok(k), Ok(d)) => (k, d),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!("journal {}: digest row skipped: {e}", self.path.display());
                    continue;
                }
            };
            let Ok(key) = <[u8; 16]>::try_from(key_blob.as_slice()) else {
                tracing::warn!(
                    "journal {}: digest row skipped: card key of {} bytes, not 16",
                    self.path.display(),
                    key_blob.len()
                );
                continue;
            };
            match codec::from_bytes::<Digest>(&digest_blob) {
                Ok(digest) => out.push((CardKey(key), digest)),
                Err(e) => tracing::warn!(
                    "journal {}: digest of {:?} skipped: {e}",
                    self.path.display(),
                    CardKey(key)
                ),
            }
        }
        Ok(out)
    }

    /// The next serial for a coupon of `campaign_number` expiring on `expires`: 0, 1,
    /// 2, … per (campaign, expiry day), committed before it returns so a code is never
    /// minted twice, even across a crash. After [`CouponFields::MAX_SERIAL`] the
    /// serials of that day are exhausted.
    pub fn next_coupon_serial(
        &mut self,
        campaign_number: u16,
        expires: NaiveDate,
    ) -> Result<u16, JournalError> {
        Ok(self
            .reserve_coupon_serials(campaign_number, expires, 1)?
            .start)
    }

    /// Reserves up to `count` serials at once (fewer near the end of the day's range),
    /// committed before it returns: the till core hands them out from memory, so a
    /// printed coupon rarely waits for the disk. Serials reserved but never printed
    /// (the agent stopped) are skipped, never reused.
    pub fn reserve_coupon_serials(
        &mut self,
        campaign_number: u16,
        expires: NaiveDate,
        count: u16,
    ) -> Result<std::ops::Range<u16>, JournalError> {
        let path = self.path.display().to_string();
        let sql = sql_error(&path);
        let day = expires.format("%Y-%m-%d").to_string();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let next: i64 = tx
            .query_row(
                "SELECT next_serial FROM coupon_serials WHERE campaign_number = ?1 AND expires = ?2",
                params![campaign_number, day],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)?
            .unwrap_or(0);
        let first = u16::try_from(next)
            .ok()
            .filter(|s| *s <= CouponFields::MAX_SERIAL)
            .ok_or_else(|| JournalError::SerialsExhausted {
                path: path.clone(),
                campaign: campaign_number,
                expires,
            })?;
        let end = (u32::from(first) + u32::from(count.max(1)))
            .min(u32::from(CouponFields::MAX_SERIAL) + 1);
        tx.execute(
            "INSERT OR REPLACE INTO coupon_serials (campaign_number, expires, next_serial)
             VALUES (?1, ?2, ?3)",
            params![campaign_number, day, i64::from(end)],
        )
        .map_err(sql)?;
        if first == 0 {
            // A new day's counter: forget the counters of coupons long expired.
            if let Some(cutoff) =
                expires.checked_sub_signed(chrono::Duration::days(SERIAL_RETENTION_DAYS))
            {
                tx.execute(
                    "DELETE FROM coupon_serials WHERE expires < ?1",
                    params![cutoff.format("%Y-%m-%d").to_string()],
                )
                .map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)?;
        // `end` ≤ MAX_SERIAL + 1 = 4096 fits in u16.
        Ok(first..u16::try_from(end).unwrap_or(u16::MAX))
    }

    pub fn status(&self) -> Result<JournalStatus, JournalError> {
        let (last_seq, acked_seq) = self.read_meta()?;
        let erasure_version = self.erasure_version()?;
        let campaign_version = self.campaign_version()?;
        let digest_version = self.digest_version()?;
        let digests: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM digests", [], |r| r.get(0))
            .map_err(|e| self.sql_err(e))?;
        let quarantined: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM quarantine", [], |r| r.get(0))
            .map_err(|e| self.sql_err(e))?;
        let bytes = self.bytes()?;
        let oldest: Option<(i64, i64)> = self
            .conn
            .query_row(
                "SELECT recorded_at_ms, offset_min FROM events ORDER BY seq LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.sql_err(e))?;
        Ok(JournalStatus {
            store: self.agent.store.clone(),
            till: self.agent.till.clone(),
            last_seq,
            acked_seq,
            pending: last_seq.saturating_sub(acked_seq),
            oldest_pending_at: oldest
                .map(|(ms, off)| Timestamp::from_unix_ms(ms, i16::try_from(off).unwrap_or(0))),
            erasure_version,
            campaign_version,
            // A stored set that cannot be read is reported by the uplink; here it is "none".
            campaign_set: self
                .campaigns()
                .ok()
                .flatten()
                .map(|state| state.set.content_version()),
            digests: to_u64(digests),
            digest_version,
            quarantined: to_u64(quarantined),
            bytes,
            max_bytes: self.quota.max_bytes,
            // From the size just read: `status` in another process has no alarm state.
            quota_exceeded: bytes > self.quota.max_bytes,
            chain_head: chain::to_hex(&self.chain_head()?),
            unbalanced_receipts: self.counter(UNBALANCED_RECEIPTS)?,
            unrecognised_scans: self.counter(UNRECOGNISED_SCANS)?,
        })
    }

    /// Counts a scan that was neither a loyalty card nor a coupon.
    pub fn count_unrecognised_scan(&mut self) -> Result<(), JournalError> {
        bump_counter(&self.conn, UNRECOGNISED_SCANS).map_err(|e| self.sql_err(e))
    }

    fn counter(&self, name: &str) -> Result<u64, JournalError> {
        self.conn
            .query_row(
                "SELECT count FROM counters WHERE name = ?1",
                params![name],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|n| n.map_or(0, to_u64))
            .map_err(|e| self.sql_err(e))
    }
}

const UNBALANCED_RECEIPTS: &str = "unbalanced_receipts";
const UNRECOGNISED_SCANS: &str = "unrecognised_scans";

fn bump_counter(conn: &Connection, name: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO counters (name, count) VALUES (?1, 1)
         ON CONFLICT (name) DO UPDATE SET count = count + 1",
        params![name],
    )
    .map(drop)
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
/// A coupon code as the ledger keys it: the digits, spaces removed.
fn code_key(code: &str) -> String {
    code.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Adds `code` to the redemption ledger with its expiry; a code that does not parse
/// (never accepted, so never redeemed) is left out.
fn insert_redeemed(conn: &Connection, code: &str, own: bool) -> rusqlite::Result<()> {
    let key = code_key(code);
    let Ok(fields) = till360_shared::coupon::parse(&key) else {
        return Ok(());
    };
    conn.prepare_cached(
        "INSERT OR IGNORE INTO redeemed_codes (code, expires, own) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![
        key,
        fields.expires().format("%Y-%m-%d").to_string(),
        own
    ])?;
    Ok(())
}

fn add_blob_column(conn: &Connection, table: &str, column: &str) -> rusqlite::Result<()> {
    let exists = conn
        .prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")?
        .exists(params![table, column])?;
    if !exists {
        conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} BLOB;"))?;
    }
    Ok(())
}
