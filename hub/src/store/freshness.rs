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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::for_each_engine;

    #[test]
    fn imports_are_counted_and_the_last_run_kept() {
        for_each_engine(|database| {
            let conn = database.get().unwrap();
            let db: &dyn Sql = &*conn;
            assert_eq!(imports(db).unwrap(), 0);
            assert_eq!(computed_at(db).unwrap(), None);
            note_import(db).unwrap();
            note_import(db).unwrap();
            assert_eq!(imports(db).unwrap(), 2);
            record_run(db, Timestamp::from_unix_ms(10, 0)).unwrap();
            record_run(db, Timestamp::from_unix_ms(20, 0)).unwrap();
            assert_eq!(
                computed_at(db).unwrap(),
                Some(Timestamp::from_unix_ms(20, 0))
            );
        });
    }
}
