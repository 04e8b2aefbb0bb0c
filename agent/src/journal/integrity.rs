//! The journal's hash chain and its quarantine.
//!
//! Every row stores the chain link over the event as it is sent (`shared::chain`), and
//! `journal_meta` keeps the head (the link at `last_seq`) and the link at `acked_seq`
//! (the rows before it are deleted). A legitimate rewrite of unacknowledged rows (an
//! erasure, a quarantine) re-links the tail from the first changed row, in the
//! rewrite's transaction. A row that cannot be read is quarantined while re-linking:
//! its raw bytes go to `quarantine` with the reason, the row becomes
//! `EventKind::Quarantined` with the same seq, so the uplink never blocks on it.

use rusqlite::{params, Connection, OptionalExtension};
use till360_shared::chain::{self, ChainHash, GENESIS};
use till360_shared::codec;
use till360_shared::{AgentId, CardNumber, Event, EventKind, Timestamp};

use super::{to_i64, to_u64, Journal, JournalError};

/// Rows re-linked per read, so a long tail is never held in memory at once.
const RELINK_CHUNK: usize = 1000;

/// A row quarantined while re-linking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    pub seq: u64,
    pub reason: String,
}

/// A stored link: 32 bytes, anything else counts as missing.
pub(super) fn stored_link(blob: Option<Vec<u8>>) -> Option<ChainHash> {
    blob.and_then(|b| ChainHash::try_from(b.as_slice()).ok())
}

/// The link at `acked_seq` (the chain's base for the rows still held).
pub(super) fn acked_link(conn: &Connection) -> rusqlite::Result<ChainHash> {
    let blob: Option<Vec<u8>> = conn.query_row(
        "SELECT acked_link FROM journal_meta WHERE id = 1",
        [],
        |r| r.get(0),
    )?;
    // A journal from before the chain starts its chain at its acked seq.
    Ok(stored_link(blob).unwrap_or(GENESIS))
}

/// The chain head (the link at `last_seq`), `None` when it is missing or damaged.
pub(super) fn chain_head(conn: &Connection) -> rusqlite::Result<Option<ChainHash>> {
    let blob: Option<Vec<u8>> = conn.query_row(
        "SELECT chain_head FROM journal_meta WHERE id = 1",
        [],
        |r| r.get(0),
    )?;
    Ok(stored_link(blob))
}

/// The link before `seq`: the previous row's, or the acked link when `seq` is the first
/// unacknowledged one. `None` when the previous row's link is unusable.
fn link_before(conn: &Connection, seq: u64, acked_seq: u64) -> rusqlite::Result<Option<ChainHash>> {
    if seq <= acked_seq + 1 {
        return acked_link(conn).map(Some);
    }
    let blob: Option<Option<Vec<u8>>> = conn
        .query_row(
            "SELECT link FROM events WHERE seq = ?1",
            params![to_i64(seq - 1)],
            |r| r.get(0),
        )
        .optional()?;
    Ok(blob.and_then(stored_link))
}

/// One row as stored.
struct Row {
    seq: u64,
    unix_ms: i64,
    offset_min: i64,
    kind_name: String,
    payload: Vec<u8>,
    link: Option<ChainHash>,
}

/// The event a row holds, or why it cannot be read.
pub(super) fn decode_row(
    agent: &AgentId,
    seq: u64,
    unix_ms: i64,
    offset_min: i64,
    payload: &[u8],
) -> Result<Event, String> {
    let offset_min = i16::try_from(offset_min)
        .map_err(|_| format!("offset {offset_min} minutes is out of range"))?;
    let kind = EventKind::decode_stored(payload).map_err(|e| e.to_string())?;
    Ok(Event {
        agent: agent.clone(),
        seq,
        recorded_at: Timestamp::from_unix_ms(unix_ms, offset_min),
        kind,
    })
}

/// Re-links every row from `from_seq` (or from the first unacknowledged one, when the
/// link before `from_seq` is unusable) to the end, quarantining rows that cannot be
/// read, and stores the new head. Run inside the caller's write transaction.
pub(super) fn relink_from(
    conn: &Connection,
    agent: &AgentId,
    from_seq: u64,
    acked_seq: u64,
) -> rusqlite::Result<Vec<Quarantined>> {
    let from_seq = from_seq.max(acked_seq + 1);
    let (mut cursor, mut prev) = match link_before(conn, from_seq, acked_seq)? {
        Some(prev) => (from_seq, prev),
        None => (acked_seq + 1, acked_link(conn)?),
    };
    let mut quarantined = Vec::new();
    let mut select = conn.prepare_cached(
        "SELECT seq, recorded_at_ms, offset_min, kind, payload, link FROM events
         WHERE seq >= ?1 ORDER BY seq LIMIT ?2",
    )?;
    let mut update = conn.prepare_cached("UPDATE events SET link = ?1 WHERE seq = ?2")?;
    let mut replace = conn.prepare_cached(
        "UPDATE events SET kind = ?1, payload = ?2, offset_min = ?3, link = ?4 WHERE seq = ?5",
    )?;
    let mut keep = conn.prepare_cached(
        "INSERT OR REPLACE INTO quarantine
             (seq, kind, recorded_at_ms, offset_min, payload, reason, quarantined_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    loop {
        let rows = select
            .query_map(params![to_i64(cursor), RELINK_CHUNK as i64], |r| {
                Ok(Row {
                    seq: to_u64(r.get(0)?),
                    unix_ms: r.get(1)?,
                    offset_min: r.get(2)?,
                    kind_name: r.get(3)?,
                    payload: r.get(4)?,
                    link: stored_link(r.get(5)?),
                })
            })?
            .collect::<rusqlite::Result<Vec<Row>>>()?;
        let Some(last) = rows.last().map(|r| r.seq) else {
            break;
        };
        for row in rows {
            match decode_row(agent, row.seq, row.unix_ms, row.offset_min, &row.payload) {
                Ok(event) => {
                    let link = link_of(&prev, &event)?;
                    if row.link != Some(link) {
                        update.execute(params![&link[..], to_i64(row.seq)])?;
                    }
                    prev = link;
                }
                Err(reason) => {
                    keep.execute(params![
                        to_i64(row.seq),
                        row.kind_name,
                        row.unix_ms,
                        row.offset_min,
                        row.payload,
                        reason,
                        now_ms()
                    ])?;
                    let offset = i16::try_from(row.offset_min).unwrap_or(0);
                    let event = Event {
                        agent: agent.clone(),
                        seq: row.seq,
                        recorded_at: Timestamp::from_unix_ms(row.unix_ms, offset),
                        kind: EventKind::Quarantined {
                            reason: reason.clone(),
                        },
                    };
                    let payload = codec::to_bytes(&event.kind).map_err(encode_failure)?;
                    let link = link_of(&prev, &event)?;
                    replace.execute(params![
                        event.kind.name(),
                        payload,
                        offset,
                        &link[..],
                        to_i64(row.seq)
                    ])?;
                    prev = link;
                    quarantined.push(Quarantined {
                        seq: row.seq,
                        reason,
                    });
                }
            }
        }
        cursor = last + 1;
    }
    conn.execute(
        "UPDATE journal_meta SET chain_head = ?1 WHERE id = 1",
        params![&prev[..]],
    )?;
    Ok(quarantined)
}

fn link_of(prev: &ChainHash, event: &Event) -> rusqlite::Result<ChainHash> {
    chain::link(prev, event).map_err(encode_failure)
}

/// Our own events always encode; should one not, the transaction is rolled back.
pub(super) fn encode_failure(e: codec::CodecError) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(e))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Overwrites, in every quarantined row's raw bytes, each run of digits that reads as
/// a card for which `erased` is true (the row could not be decoded, so the card is
/// found as the text it was encoded as: 8 or 13 ASCII digits). The rest of the bytes
/// stay for diagnosis. Returns the rows changed. Run inside the caller's transaction.
pub(super) fn scrub_quarantine(
    conn: &Connection,
    erased: &dyn Fn(&CardNumber) -> bool,
) -> rusqlite::Result<usize> {
    let rows = conn
        .prepare("SELECT seq, payload FROM quarantine WHERE payload IS NOT NULL")?
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut changed = 0;
    for (seq, mut payload) in rows {
        if scrub_cards(&mut payload, erased) {
            conn.execute(
                "UPDATE quarantine SET payload = ?1 WHERE seq = ?2",
                params![payload, seq],
            )?;
            changed += 1;
        }
    }
    Ok(changed)
}

/// Replaces every erased card's digits in `bytes` with `#`; whether any was found.
fn scrub_cards(bytes: &mut [u8], erased: &dyn Fn(&CardNumber) -> bool) -> bool {
    let mut found = false;
    for len in [13, 8] {
        let mut start = 0;
        while start + len <= bytes.len() {
            let window = &bytes[start..start + len];
            let hit = window.iter().all(u8::is_ascii_digit)
                && std::str::from_utf8(window)
                    .ok()
                    .and_then(|text| CardNumber::parse(text).ok())
                    .is_some_and(|card| erased(&card));
            if hit {
                bytes[start..start + len].fill(b'#');
                found = true;
                start += len;
            } else {
                start += 1;
            }
        }
    }
    found
}

impl Journal {
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
}
