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

use super::{to_u64, Journal, JournalError};

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

impl Journal {
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
        database_bytes(&self.conn).map_err(|e| self.sql_err(e))
    }

    /// Truncates the WAL now (also done after acks and every [`CHECKPOINT_EVERY`]
    /// appends). A failure is logged: it costs disk, never an event.
    pub fn checkpoint(&mut self) {
        self.appends_since_checkpoint = 0;
        match checkpoint(&self.conn) {
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
    pub(super) fn check_quota(&mut self) {
        let bytes = match database_bytes(&self.conn) {
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
