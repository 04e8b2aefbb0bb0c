//! Keeping the journal's disk use bounded: WAL checkpoints, giving freed pages back and
//! the quota alarm.
//!
//! Acknowledged events are deleted at ack; on journals created with
//! `auto_vacuum = INCREMENTAL` the freed pages are returned to the file system right
//! after. The WAL is truncated after every ack and every [`CHECKPOINT_EVERY`] appends,
//! and SQLite's own limits (`wal_autocheckpoint`, `journal_size_limit`) bound it
//! between those. Unacknowledged events are never dropped: past the quota the agent
//! only alarms (an error log once per crossing, `status`), and keeps journaling.

use rusqlite::Connection;

/// `[journal] max_bytes` when the config does not say: 1 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;
/// Appends between two explicit `wal_checkpoint(TRUNCATE)`s.
pub const CHECKPOINT_EVERY: u32 = 1000;
/// WAL pages before SQLite checkpoints on its own (1 MiB of 4 KiB pages).
pub(super) const WAL_AUTOCHECKPOINT_PAGES: u32 = 256;
/// A checkpointed WAL is cut back to this size.
pub(super) const WAL_SIZE_LIMIT: u64 = 1 << 20;

/// Sets the pragmas that bound the WAL and, on a new file, incremental vacuum (which
/// SQLite only accepts before the first table is created).
pub(super) fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
    // journal_size_limit answers with the value set: read it as a query.
    let _: i64 = conn.query_row(
        &format!("PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}"),
        [],
        |r| r.get(0),
    )?;
    Ok(())
}

/// Moves the WAL into the database and truncates it. `Ok(false)`: another connection
/// (a `status` reading) held it; the next checkpoint catches up.
pub(super) fn checkpoint(conn: &Connection) -> rusqlite::Result<bool> {
    let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
    Ok(busy == 0)
}

/// Returns the free pages to the file system (a no-op on journals created before
/// incremental vacuum).
pub(super) fn give_back_free_pages(conn: &Connection) -> rusqlite::Result<()> {
    // The pragma frees pages step by step: run it to the end.
    let mut stmt = conn.prepare("PRAGMA incremental_vacuum")?;
    let mut rows = stmt.query([])?;
    while rows.next()?.is_some() {}
    Ok(())
}

/// The database file's size in bytes, as SQLite sees it.
pub(super) fn database_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    Ok(u64::try_from(pages.saturating_mul(page_size)).unwrap_or(0))
}

/// The quota alarm's state: it fires once per crossing, not once per event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Quota {
    pub max_bytes: u64,
    pub exceeded: bool,
}

/// What a new size means for the alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum QuotaChange {
    Crossed,
    Back,
    Same,
}

impl Quota {
    pub fn new(max_bytes: u64) -> Self {
        Self {
            max_bytes,
            exceeded: false,
        }
    }

    pub fn observe(&mut self, bytes: u64) -> QuotaChange {
        let over = bytes > self.max_bytes;
        let change = match (self.exceeded, over) {
            (false, true) => QuotaChange::Crossed,
            (true, false) => QuotaChange::Back,
            _ => QuotaChange::Same,
        };
        self.exceeded = over;
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alarm_fires_once_per_crossing() {
        let mut quota = Quota::new(100);
        assert_eq!(quota.observe(50), QuotaChange::Same);
        assert_eq!(quota.observe(101), QuotaChange::Crossed);
        assert_eq!(quota.observe(500), QuotaChange::Same);
        assert!(quota.exceeded);
        assert_eq!(quota.observe(100), QuotaChange::Back);
        assert_eq!(quota.observe(99), QuotaChange::Same);
        assert_eq!(quota.observe(101), QuotaChange::Crossed);
    }
}
