//! Reading an SQLite database without changing it (`till360-hub check`).

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

/// Opens `path` read-only and reads its schema: no migration, no journal file created.
pub fn read_only(path: &Path) -> Result<(), String> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    Connection::open_with_flags(path, flags)
        .and_then(|db| db.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(())))
        .map_err(|e| format!("{}: cannot read the database: {e}", path.display()))
}
