//! When traits and segments were last computed, and whether an import changed the data
//! since. Imports run as their own process against the same database, so the running
//! hub cannot be told: every import that changed something bumps a counter in the
//! database (`change_counters`, row `import`) in its own transaction, and the traits
//! thread (`traits::schedule`) polls that one row every second and recomputes once it
//! stops changing.
//! Not `PRAGMA data_version`: it changes with every commit of any other connection (the
//! hub's own ingest, the digest refresh a recompute triggers), so the hub would recompute
//! forever; not the file's mtime: WAL commits do not change the database file.

use till360_shared::Timestamp;

use super::sql::{Sql, SqlExt};
use super::StoreError;
use crate::sql_params;

/// Notes an import that changed something (inside the import's transaction).
pub fn note_import(db: &dyn Sql) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO change_counters (name, counter) VALUES ('import', 1)
         ON CONFLICT (name) DO UPDATE SET counter = change_counters.counter + 1",
        sql_params![],
    )?;
    Ok(())
}

/// How many changing imports there have been.
pub fn imports(db: &dyn Sql) -> Result<i64, StoreError> {
    Ok(db
        .query_value(
            "SELECT counter FROM change_counters WHERE name = 'import'",
            sql_params![],
        )?
        .unwrap_or(0))
}

/// Records a finished recompute (inside its transaction).
pub fn record_run(db: &dyn Sql, now: Timestamp) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO traits_runs (singleton, computed_at_ms) VALUES (1, ?1)
         ON CONFLICT (singleton) DO UPDATE SET computed_at_ms = excluded.computed_at_ms",
        sql_params![now.unix_ms],
    )?;
    Ok(())
}

/// When traits and segments were last computed (by the hub or `traits recompute`).
pub fn computed_at(db: &dyn Sql) -> Result<Option<Timestamp>, StoreError> {
    Ok(db
        .query_value::<i64>(
            "SELECT computed_at_ms FROM traits_runs WHERE singleton = 1",
            sql_params![],
        )?
        .map(|ms| Timestamp::from_unix_ms(ms, 0)))
}
