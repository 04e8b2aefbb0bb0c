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
//! The hub's campaign set and this till's coupon key ([`Journal::store_campaigns`])
//! live in a one-row `campaigns` table, set, key and version written together.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;
use thiserror::Error;
use till360_shared::campaign::CampaignSet;
use till360_shared::codec;
use till360_shared::coupon::Keyring;
use till360_shared::{AgentId, CardNumber, Event, EventKind, Timestamp};

pub const JOURNAL_FILE: &str = "journal.db";
/// 2 added `journal_meta.erasure_version`, 3 the `campaigns` table; older journals
/// are upgraded on open.
const SCHEMA_VERSION: i64 = 3;

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
    #[error("journal {path}: cannot encode event: {reason}")]
    Encode { path: String, reason: String },
    #[error("journal {path}: the stored campaign set is corrupt: {reason}")]
    CorruptCampaigns { path: String, reason: String },
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
}

/// What [`Journal::apply_erasures`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErasureOutcome {
    /// Unacknowledged events that carried an erased card and were pseudonymised.
    pub events_pseudonymised: usize,
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

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Journal {
    /// Opens (creating if needed) `data_dir/journal.db` for `agent`.
    pub fn open(data_dir: &Path, agent: &AgentId) -> Result<Journal, JournalError> {
        std::fs::create_dir_all(data_dir).map_err(|source| JournalError::CreateDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        Self::open_file(&data_dir.join(JOURNAL_FILE), agent)
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
                 erasure_version INTEGER NOT NULL DEFAULT 0
             );
             CREATE TABLE IF NOT EXISTS events (
                 seq INTEGER PRIMARY KEY,
                 recorded_at_ms INTEGER NOT NULL,
                 offset_min INTEGER NOT NULL,
                 kind TEXT NOT NULL,
                 payload BLOB NOT NULL
             );
             CREATE TABLE IF NOT EXISTS campaigns (
                 id INTEGER PRIMARY KEY CHECK (id = 1),
                 version INTEGER NOT NULL,
                 campaign_set BLOB NOT NULL,
                 till_key BLOB NOT NULL
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
        let (last_seq, acked_seq) = match meta {
            None => {
                tx.execute(
                    "INSERT INTO journal_meta (id, schema_version, store, till, last_seq, acked_seq)
                     VALUES (1, ?1, ?2, ?3, 0, 0)",
                    params![SCHEMA_VERSION, agent.store, agent.till],
                )
                .map_err(sql)?;
                (0, 0)
            }
            Some((version, store, till, last, acked)) => {
                if version == 1 {
                    tx.execute_batch(
                        "ALTER TABLE journal_meta ADD COLUMN erasure_version INTEGER NOT NULL DEFAULT 0;",
                    )
                    .map_err(sql)?;
                }
                if version == 1 || version == 2 {
                    // The `campaigns` table was created above; only the number moves.
                    tx.execute(
                        "UPDATE journal_meta SET schema_version = ?1 WHERE id = 1",
                        params![SCHEMA_VERSION],
                    )
                    .map_err(sql)?;
                } else if version != SCHEMA_VERSION {
                    return Err(JournalError::Schema {
                        path: label,
                        found: version,
                    });
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
        tx.commit().map_err(sql)?;
        Ok(Journal {
            conn,
            path: path.to_path_buf(),
            agent: agent.clone(),
            last_seq,
            acked_seq,
        })
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

    /// Records an event with the next seq; it is committed (fsynced) when this returns.
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
        let sql = |source| JournalError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        // Read inside the write transaction: the meta row, not this struct, is the truth.
        let last: i64 = tx
            .query_row("SELECT last_seq FROM journal_meta WHERE id = 1", [], |r| {
                r.get(0)
            })
            .map_err(sql)?;
        let seq = to_u64(last) + 1;
        tx.execute(
            "INSERT INTO events (seq, recorded_at_ms, offset_min, kind, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![to_i64(seq), recorded_at.unix_ms, recorded_at.offset_min, kind.name(), payload],
        )
        .map_err(sql)?;
        tx.execute(
            "UPDATE journal_meta SET last_seq = ?1 WHERE id = 1",
            params![to_i64(seq)],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        self.last_seq = seq;
        Ok(Event {
            agent: self.agent.clone(),
            seq,
            recorded_at,
            kind,
        })
    }

    /// Up to `max` unacknowledged events from `first_seq` on, in seq order, contiguous.
    /// Asking for a seq already acknowledged (and deleted) is an error, not a skip.
    pub fn read_from(&self, first_seq: u64, max: usize) -> Result<Vec<Event>, JournalError> {
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
            return Ok(Vec::new());
        }
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT seq, recorded_at_ms, offset_min, payload FROM events
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
                ))
            })
            .map_err(|e| self.sql_err(e))?;
        let mut events = Vec::new();
        let mut expected = first_seq;
        for row in rows {
            let (seq, unix_ms, offset_min, payload) = row.map_err(|e| self.sql_err(e))?;
            let seq = to_u64(seq);
            if seq != expected {
                return Err(JournalError::Inconsistent {
                    path: self.path.display().to_string(),
                    reason: format!("event seq {expected} is missing (found {seq} next)"),
                });
            }
            let corrupt = |reason: String| JournalError::CorruptEvent {
                path: self.path.display().to_string(),
                seq,
                reason,
            };
            let offset_min = i16::try_from(offset_min)
                .map_err(|_| corrupt(format!("offset {offset_min} minutes is out of range")))?;
            let kind: EventKind =
                codec::from_bytes(&payload).map_err(|e| corrupt(e.to_string()))?;
            events.push(Event {
                agent: self.agent.clone(),
                seq,
                recorded_at: Timestamp::from_unix_ms(unix_ms, offset_min),
                kind,
            });
            expected += 1;
        }
        let wanted = (last_seq - first_seq + 1).min(max as u64);
        if (events.len() as u64) < wanted {
            return Err(JournalError::Inconsistent {
                path: self.path.display().to_string(),
                reason: format!("event seq {expected} is missing (journal reached {last_seq})"),
            });
        }
        Ok(events)
    }

    fn read_meta(&self) -> Result<(u64, u64), JournalError> {
        self.conn
            .query_row(
                "SELECT last_seq, acked_seq FROM journal_meta WHERE id = 1",
                [],
                |r| Ok((to_u64(r.get(0)?), to_u64(r.get(1)?))),
            )
            .map_err(|e| self.sql_err(e))
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
    /// in one transaction. Acknowledging an older seq again is a no-op.
    pub fn ack(&mut self, seq: u64) -> Result<(), JournalError> {
        let path = self.path.display().to_string();
        let sql = |source| JournalError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let (last, acked): (i64, i64) = tx
            .query_row(
                "SELECT last_seq, acked_seq FROM journal_meta WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(sql)?;
        let (last, acked) = (to_u64(last), to_u64(acked));
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
        tx.execute(
            "UPDATE journal_meta SET acked_seq = ?1 WHERE id = 1",
            params![to_i64(seq)],
        )
        .map_err(sql)?;
        tx.execute("DELETE FROM events WHERE seq <= ?1", params![to_i64(seq)])
            .map_err(sql)?;
        tx.commit().map_err(sql)?;
        self.acked_seq = seq;
        self.last_seq = last;
        Ok(())
    }

    /// The newest hub erasure version applied to this journal (0 if none).
    pub fn erasure_version(&self) -> Result<u64, JournalError> {
        self.conn
            .query_row(
                "SELECT erasure_version FROM journal_meta WHERE id = 1",
                [],
                |r| Ok(to_u64(r.get(0)?)),
            )
            .map_err(|e| self.sql_err(e))
    }

    /// Applies erasures from the hub: every unacknowledged event carrying one of
    /// `cards` is pseudonymised in place (same seq; see `EventKind::forget_cards`) and
    /// `up_to_version` is stored, in ONE transaction. A version at or below the stored
    /// one is a no-op (a resend after a lost `ErasuresApplied`). Acknowledged events are
    /// already deleted here; the hub erases its own copy.
    pub fn apply_erasures(
        &mut self,
        cards: &[CardNumber],
        up_to_version: u64,
    ) -> Result<ErasureOutcome, JournalError> {
        let path = self.path.display().to_string();
        let sql = |source| JournalError::Sqlite {
            path: path.clone(),
            source,
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
            return Ok(ErasureOutcome {
                events_pseudonymised: 0,
                erasure_version: current,
            });
        }
        let erased: HashSet<&str> = cards.iter().map(CardNumber::as_str).collect();
        let mut pseudonymised = 0;
        if !erased.is_empty() {
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
                // An event that cannot be read cannot be cleared: fail rather than
                // record the erasure as applied.
                let mut kind: EventKind =
                    codec::from_bytes(&payload).map_err(|e| JournalError::CorruptEvent {
                        path: path.clone(),
                        seq: to_u64(seq),
                        reason: e.to_string(),
                    })?;
                if kind.forget_cards(|card| erased.contains(card.as_str())) {
                    let payload = codec::to_bytes(&kind).map_err(|e| JournalError::Encode {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                    update
                        .execute(params![kind.name(), payload, seq])
                        .map_err(sql)?;
                    pseudonymised += 1;
                }
            }
        }
        tx.execute(
            "UPDATE journal_meta SET erasure_version = ?1 WHERE id = 1",
            params![to_i64(up_to_version)],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(ErasureOutcome {
            events_pseudonymised: pseudonymised,
            erasure_version: up_to_version,
        })
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

    /// Replaces the campaign set and this till's coupon keyring with the hub's frame
    /// `version` (one statement, so after a crash the old pair or the new one is there,
    /// never a mix).
    pub fn store_campaigns(
        &mut self,
        version: u64,
        set: &CampaignSet,
        keyring: &Keyring,
    ) -> Result<(), JournalError> {
        let encode = |e: till360_shared::codec::CodecError| JournalError::Encode {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        };
        let set_blob = codec::to_bytes(set).map_err(encode)?;
        let ring_blob = codec::to_bytes(keyring).map_err(encode)?;
        self.conn
            .execute(
                "INSERT OR REPLACE INTO campaigns (id, version, campaign_set, till_key)
                 VALUES (1, ?1, ?2, ?3)",
                params![to_i64(version), set_blob, ring_blob],
            )
            .map_err(|e| self.sql_err(e))?;
        Ok(())
    }

    /// The campaign set and coupon keyring held, for the coupon decision; `None` before
    /// the hub sent any.
    pub fn campaigns(&self) -> Result<Option<(CampaignSet, Keyring)>, JournalError> {
        let row: Option<(Vec<u8>, Vec<u8>)> = self
            .conn
            .query_row(
                "SELECT campaign_set, till_key FROM campaigns WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.sql_err(e))?;
        let Some((set_blob, ring_blob)) = row else {
            return Ok(None);
        };
        let corrupt = |reason: String| JournalError::CorruptCampaigns {
            path: self.path.display().to_string(),
            reason,
        };
        let set: CampaignSet = codec::from_bytes(&set_blob).map_err(|e| corrupt(e.to_string()))?;
        let keyring: Keyring =
            codec::from_bytes(&ring_blob).map_err(|e| corrupt(format!("keyring: {e}")))?;
        Ok(Some((set, keyring)))
    }

    pub fn status(&self) -> Result<JournalStatus, JournalError> {
        let (last_seq, acked_seq) = self.read_meta()?;
        let erasure_version = self.erasure_version()?;
        let campaign_version = self.campaign_version()?;
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
        })
    }
}
