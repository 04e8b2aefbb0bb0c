//! When traits and segments were last computed, and whether an import changed the data
//! since. Imports run as their own process against the same database, so the running
//! hub cannot be told: every import that changed something bumps a counter in the
//! database (`change_counters`, row `import`) in its own transaction, and the traits
//! thread (`traits::schedule`) polls that one row every second and recomputes once it
//! stops changing.
//! Not `PRAGMA data_version`: it changes with every commit of any other connection (the
//! hub's own ingest, the digest refresh a recompute triggers), so the hub would recompute
//! forever; not the file's mtime: WAL commits do not change the database file.

use rusqlite::{Connection, OptionalExtension};
use till360_shared::Timestamp;

/// Notes an import that changed something (inside the import's transaction).
pub fn note_import(db: &dyn super::sql::Sql) -> Result<(), super::StoreError> {
    db.execute(
        "INSERT INTO change_counters (name, counter) VALUES ('import', 1)
         ON CONFLICT (name) DO UPDATE SET counter = change_counters.counter + 1",
        crate::sql_params![],
    )?;
    Ok(())
}

/// How many changing imports there have been.
pub fn imports(conn: &Connection) -> rusqlite::Result<i64> {
    Ok(conn
        .prepare_cached("SELECT counter FROM change_counters WHERE name = 'import'")?
        .query_row([], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// Records a finished recompute (inside its transaction).
pub fn record_run(conn: &Connection, now: Timestamp) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO traits_runs (singleton, computed_at_ms) VALUES (1, ?1)",
        [now.unix_ms],
    )?;
    Ok(())
}

/// When traits and segments were last computed (by the hub or `traits recompute`).
pub fn computed_at(conn: &Connection) -> rusqlite::Result<Option<Timestamp>> {
    Ok(conn
        .prepare_cached("SELECT computed_at_ms FROM traits_runs WHERE singleton = 1")?
        .query_row([], |r| r.get::<_, i64>(0))
        .optional()?
        .map(|ms| Timestamp::from_unix_ms(ms, 0)))
}
