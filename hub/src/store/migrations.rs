//! One schema history for both engines. A version is a step every database goes through
//! once, in order; PostgreSQL records each in `schema_migrations(version, name,
//! applied_at)`, SQLite in `PRAGMA user_version`. Migrations run when a hub opens its
//! database (`Database::open`), in one transaction under a lock, so two hubs starting
//! together on one PostgreSQL migrate once: the second waits for the first and then finds
//! nothing left to do. A database newer than this hub is refused, never written.
//!
//! Versions 1 to 7 predate PostgreSQL: on SQLite they are the upgrades of
//! `store/sqlite/upgrade.rs` (an older file); on PostgreSQL a database starts at 7 (the
//! schema translated in `store/postgres/schema.rs`). A new version is one entry in
//! [`HISTORY`] with its SQL for each engine.

use super::sql::{transaction, Engine, Sql, SqlExt, TxKind};
use super::StoreError;
use crate::sql_params;

/// One step of the schema history.
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    /// `None`: SQLite reached this version through `store/sqlite/upgrade.rs`.
    pub sqlite: Option<&'static str>,
    pub postgres: &'static str,
}

/// The schema history, oldest first.
pub const HISTORY: &[Migration] = &[
    Migration {
        version: 7,
        name:
            "schema 7: agents, events, profiles and identity, imports, coupons, digests, erasures",
        sqlite: None,
        postgres: super::postgres::schema::SCHEMA_7,
    },
    Migration {
        version: 8,
        name: "schema 8: job leases and the secrets every hub shares",
        sqlite: Some(
            "CREATE TABLE IF NOT EXISTS job_leases (
                 job TEXT PRIMARY KEY,
                 holder TEXT NOT NULL,
                 expires_ms INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS hub_secrets (
                 name TEXT PRIMARY KEY,
                 value BLOB NOT NULL
             );",
        ),
        postgres: "CREATE TABLE IF NOT EXISTS job_leases (
                       job TEXT PRIMARY KEY,
                       holder TEXT NOT NULL,
                       expires_ms BIGINT NOT NULL
                   );
                   CREATE TABLE IF NOT EXISTS hub_secrets (
                       name TEXT PRIMARY KEY,
                       value BYTEA NOT NULL
                   );",
    },
    Migration {
        // Hubs before this version created the table themselves when they started (the
        // listener's revocation gate), so a database that never ran a hub lacked it and
        // `till360-hub migrate` missed it: `IF NOT EXISTS` keeps theirs.
        version: 9,
        name: "schema 9: the certificate epoch seen per till",
        sqlite: Some(
            "CREATE TABLE IF NOT EXISTS till_epochs (
                 store TEXT NOT NULL,
                 till TEXT NOT NULL,
                 epoch INTEGER NOT NULL,
                 seen_at_ms INTEGER NOT NULL,
                 PRIMARY KEY (store, till)
             ) WITHOUT ROWID;",
        ),
        postgres: "CREATE TABLE IF NOT EXISTS till_epochs (
                       store TEXT NOT NULL,
                       till TEXT NOT NULL,
                       epoch BIGINT NOT NULL,
                       seen_at_ms BIGINT NOT NULL,
                       PRIMARY KEY (store, till)
                   );",
    },
    Migration {
        // Ingest speed: a receipt's event moves into its `transactions` row (`event`: the
        // event as stored, without its lines), so a receipt is one row, not two; the card
        // index goes (fraud checks read a card's receipts through its profile, which all
        // of them share, and an erase finds the unlinked ones through the partial index),
        // and the profile index gains the time its readers sort and filter by, and the
        // store (the fraud pre-check counts receipts and stores from the index alone). Receipts
        // stored before keep their `events` row (`event` NULL): `store::ingest::
        // stored_events` reads both.
        version: 10,
        name: "schema 10: a receipt stored in one row; transactions indexed by profile and time",
        sqlite: Some(
            "ALTER TABLE transactions ADD COLUMN event BLOB;
             DROP INDEX IF EXISTS transactions_card;
             DROP INDEX IF EXISTS transactions_profile;
             CREATE INDEX IF NOT EXISTS transactions_profile_at
                 ON transactions(profile_id, at_ms, store);
             CREATE INDEX IF NOT EXISTS transactions_unlinked_card ON transactions(card)
                 WHERE profile_id IS NULL AND card IS NOT NULL;",
        ),
        postgres: "ALTER TABLE transactions ADD COLUMN IF NOT EXISTS event BYTEA;
                   DROP INDEX IF EXISTS transactions_card;
                   DROP INDEX IF EXISTS transactions_profile;
                   CREATE INDEX IF NOT EXISTS transactions_profile_at
                       ON transactions(profile_id, at_ms, store);
                   CREATE INDEX IF NOT EXISTS transactions_unlinked_card ON transactions(card)
                       WHERE profile_id IS NULL AND card IS NOT NULL;",
    },
    Migration {
        // The console's overview: receipts and revenue per UTC day and till, kept by the
        // ingest (one upsert per day and till a batch touches, under the till's own agent
        // lock, so hubs ingesting other tills never wait on it), and new profiles per day
        // by their creation time. Rebuilt from `transactions` here, so a database rewound
        // and migrated again starts right.
        version: 11,
        name: "schema 11: receipts per day and till; profiles by creation time",
        sqlite: Some(
            "CREATE TABLE IF NOT EXISTS receipt_days (
                 day INTEGER NOT NULL,
                 store TEXT NOT NULL,
                 till TEXT NOT NULL,
                 receipts INTEGER NOT NULL,
                 revenue_cents INTEGER NOT NULL,
                 PRIMARY KEY (day, store, till)
             ) WITHOUT ROWID;
             DELETE FROM receipt_days;
             INSERT INTO receipt_days (day, store, till, receipts, revenue_cents)
                 SELECT at_ms / 86400000, store, till, COUNT(*), SUM(total_cents)
                 FROM transactions GROUP BY at_ms / 86400000, store, till;
             CREATE INDEX IF NOT EXISTS profiles_created ON profiles(created_at_ms);",
        ),
        postgres: "CREATE TABLE IF NOT EXISTS receipt_days (
                       day BIGINT NOT NULL,
                       store TEXT NOT NULL,
                       till TEXT NOT NULL,
                       receipts BIGINT NOT NULL,
                       revenue_cents BIGINT NOT NULL,
                       PRIMARY KEY (day, store, till)
                   );
                   DELETE FROM receipt_days;
                   INSERT INTO receipt_days (day, store, till, receipts, revenue_cents)
                       SELECT at_ms / 86400000, store, till, COUNT(*), SUM(total_cents)
                       FROM transactions GROUP BY at_ms / 86400000, store, till;
                   CREATE INDEX IF NOT EXISTS profiles_created ON profiles(created_at_ms);",
    },
];

/// The newest version this hub knows.
pub const LATEST: i64 = 11;

/// Any fixed number: the key of the advisory lock migrations run under (one per database).
const MIGRATION_LOCK: i64 = 0x7111_3600_0000_0001;

/// The schema version `db` is at (0: an empty database).
pub fn version(db: &dyn Sql) -> Result<i64, StoreError> {
    match db.engine() {
        Engine::Sqlite => Ok(db
            .query_value::<i64>("PRAGMA user_version", sql_params![])?
            .unwrap_or(0)),
        Engine::Postgres => {
            let has_table = db.exists(
                "SELECT 1 FROM information_schema.tables
                 WHERE table_schema = current_schema() AND table_name = 'schema_migrations'",
                sql_params![],
            )?;
            if !has_table {
                return Ok(0);
            }
            Ok(db
                .query_value::<Option<i64>>(
                    "SELECT MAX(version) FROM schema_migrations",
                    sql_params![],
                )?
                .flatten()
                .unwrap_or(0))
        }
    }
}

/// A database a newer hub migrated: refused with what to do.
pub fn refuse_newer(version: i64) -> Result<(), StoreError> {
    if version > LATEST {
        return Err(StoreError::Corrupt(format!(
            "schema version {version}, newer than this hub's {LATEST} (a newer hub migrated \
             it): run that hub's version, or restore a backup taken before it"
        )));
    }
    Ok(())
}

/// Brings `db` to [`LATEST`] and returns the versions it applied (none when it was up to
/// date, or another hub got there first).
pub fn migrate(db: &dyn Sql) -> Result<Vec<i64>, StoreError> {
    transaction(db, TxKind::Write, |db| {
        // SQLite: `BEGIN IMMEDIATE` already holds the database's one write lock.
        // PostgreSQL: the lock is taken before `schema_migrations` is even created, so a
        // second hub cannot race the first one's CREATE TABLE.
        if db.engine() == Engine::Postgres {
            // A migration may take longer than the session's one timeout, and so may the
            // wait of a second hub for the first one's: neither is cut short.
            db.batch("SET LOCAL lock_timeout = 0; SET LOCAL statement_timeout = 0")?;
            db.query_each(
                "SELECT pg_advisory_xact_lock(?1)",
                sql_params![MIGRATION_LOCK],
                &mut |_| Ok(()),
            )?;
            db.batch(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                     version BIGINT PRIMARY KEY,
                     name TEXT NOT NULL,
                     applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
                 )",
            )?;
        }
        let current = version(db)?;
        refuse_newer(current)?;
        if db.engine() == Engine::Sqlite && current < 7 {
            return Err(StoreError::Corrupt(format!(
                "SQLite schema version {current}: the SQLite store's opener upgrades it to 7 \
                 before these migrations run"
            )));
        }
        let mut applied = Vec::new();
        for step in HISTORY.iter().filter(|m| m.version > current) {
            match db.engine() {
                Engine::Postgres => {
                    db.batch(step.postgres)?;
                    db.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (?1, ?2)",
                        sql_params![step.version, step.name],
                    )?;
                }
                Engine::Sqlite => {
                    if let Some(sql) = step.sqlite {
                        db.batch(sql)?;
                    }
                    db.batch(&format!("PRAGMA user_version = {}", step.version))?;
                }
            }
            applied.push(step.version);
        }
        Ok(applied)
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::test_support::for_each_engine;

    #[test]
    fn the_history_ends_at_latest_in_order() {
        assert!(HISTORY.windows(2).all(|w| w[0].version < w[1].version));
        assert_eq!(HISTORY.last().map(|m| m.version), Some(LATEST));
    }

    #[test]
    fn a_migrated_database_is_at_latest_and_migrating_again_does_nothing() {
        for_each_engine(|db| {
            let conn = db.get().unwrap();
            assert_eq!(version(&*conn).unwrap(), LATEST);
            assert_eq!(migrate(&*conn).unwrap(), Vec::<i64>::new());
            assert_eq!(version(&*conn).unwrap(), LATEST);
            if conn.engine() == Engine::Postgres {
                let rows = conn
                    .query(
                        "SELECT version, name FROM schema_migrations ORDER BY version",
                        sql_params![],
                    )
                    .unwrap();
                assert_eq!(rows.len(), HISTORY.len());
                assert_eq!(rows[0].get::<i64>(0).unwrap(), 7);
            }
        });
    }

    /// Undoes schemas 11 and 10 (both engines): a database rewound to an older version
    /// is then shaped as that version was.
    pub(crate) const UNDO_10: &str = "DROP TABLE receipt_days;
        DROP INDEX profiles_created;
        ALTER TABLE transactions DROP COLUMN event;
        DROP INDEX transactions_profile_at;
        DROP INDEX transactions_unlinked_card;
        CREATE INDEX transactions_profile ON transactions(profile_id);
        CREATE INDEX transactions_card ON transactions(card, at_ms);";

    #[test]
    fn a_database_whose_hub_made_till_epochs_itself_keeps_its_rows_at_9() {
        for_each_engine(|db| {
            let conn = db.get().unwrap();
            // As a hub of schema 8 left it: the table (made when it started) holds a row.
            conn.execute(
                "INSERT INTO till_epochs (store, till, epoch, seen_at_ms) VALUES ('S1', 'T1', 4, 1)",
                sql_params![],
            )
            .unwrap();
            // Schemas 11 and 10 undone (their tables, columns and indexes), then back to 8.
            conn.batch(UNDO_10).unwrap();
            match conn.engine() {
                Engine::Postgres => {
                    conn.batch("DELETE FROM schema_migrations WHERE version >= 9")
                        .unwrap();
                }
                Engine::Sqlite => conn.batch("PRAGMA user_version = 8").unwrap(),
            }
            assert_eq!(version(&*conn).unwrap(), 8);
            assert_eq!(migrate(&*conn).unwrap(), vec![9, 10, 11]);
            assert_eq!(
                conn.query_value::<i64>("SELECT epoch FROM till_epochs", sql_params![])
                    .unwrap(),
                Some(4)
            );
        });
    }

    #[test]
    fn schema_11_counts_the_receipts_a_database_already_holds() {
        for_each_engine(|db| {
            let conn = db.get().unwrap();
            const DAY: i64 = 86_400_000;
            for (till, seq, at, cents) in [
                ("T1", 1, 20_000 * DAY + 5, 100),
                ("T1", 2, 20_000 * DAY + 9, 250),
                ("T2", 1, 20_001 * DAY, 7),
            ] {
                conn.execute(
                    "INSERT INTO transactions (store, till, seq, at_ms, offset_min, total_cents,
                         currency, lines)
                     VALUES ('S1', ?1, ?2, ?3, 0, ?4, 'EUR', ?5)",
                    sql_params![till, seq, at, cents, Vec::<u8>::new()],
                )
                .unwrap();
            }
            // As schema 10 left it: no counts, no index; then migrated again.
            conn.batch("DROP TABLE receipt_days; DROP INDEX profiles_created;")
                .unwrap();
            match conn.engine() {
                Engine::Postgres => conn
                    .batch("DELETE FROM schema_migrations WHERE version >= 11")
                    .unwrap(),
                Engine::Sqlite => conn.batch("PRAGMA user_version = 10").unwrap(),
            }
            assert_eq!(migrate(&*conn).unwrap(), vec![11]);
            let rows: Vec<(i64, String, i64, i64)> = conn
                .query(
                    "SELECT day, till, receipts, revenue_cents FROM receipt_days ORDER BY day, till",
                    sql_params![],
                )
                .unwrap()
                .iter()
                .map(|r| (r.get(0).unwrap(), r.get(1).unwrap(), r.get(2).unwrap(), r.get(3).unwrap()))
                .collect();
            assert_eq!(
                rows,
                vec![(20_000, "T1".into(), 2, 350), (20_001, "T2".into(), 1, 7)]
            );
        });
    }
}
