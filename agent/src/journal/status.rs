//! What `till360-agent status` shows, and the counters a pilot watches.
//!
//! [`Journal::status`] only reads: it opens no transaction and changes nothing, so it
//! is safe on a journal another process is writing. The counters (`counters` table) are
//! bumped in the transaction of what they count (an unbalanced receipt with its event).

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use till360_shared::chain;
use till360_shared::Timestamp;

use super::{to_u64, Journal, JournalError};

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

fn rfc3339_opt<S: serde::Serializer>(ts: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match ts {
        Some(ts) => s.serialize_some(&ts.to_rfc3339()),
        None => s.serialize_none(),
    }
}

impl Journal {
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

pub(super) const UNBALANCED_RECEIPTS: &str = "unbalanced_receipts";
const UNRECOGNISED_SCANS: &str = "unrecognised_scans";

pub(super) fn bump_counter(conn: &Connection, name: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO counters (name, count) VALUES (?1, 1)
         ON CONFLICT (name) DO UPDATE SET count = count + 1",
        params![name],
    )
    .map(drop)
}
