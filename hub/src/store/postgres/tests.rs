//! The PostgreSQL backend against a real server (`TILL360_TEST_POSTGRES`; skipped, and
//! said so, without it).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use super::driver::{connect, rewrite_params, PgConnection};
use super::TemporaryDatabase;
use crate::config::{DatabaseUrl, PostgresUrl};
use crate::sql_params;
use crate::store::sql::{savepoint, transaction, DbErrorKind, Sql, SqlExt, TxKind};
use crate::store::test_support::{postgres_on, postgres_server};
use crate::store::{migrations, Database, DatabaseOptions, StoreError};

const TIMEOUT: Duration = Duration::from_secs(10);

fn kind(err: &StoreError) -> Option<DbErrorKind> {
    err.db_kind()
}

/// A fresh empty database (no schema) and a connection to it.
fn empty() -> Option<(TemporaryDatabase, PgConnection)> {
    let server = postgres_server()?;
    let temporary = TemporaryDatabase::create(&server, "t360").unwrap();
    let conn = connect(temporary.url(), TIMEOUT).unwrap();
    Some((temporary, conn))
}

#[test]
fn numbered_parameters_become_dollar_ones_outside_quotes_and_comments() {
    assert_eq!(
        rewrite_params("SELECT a FROM t WHERE b = ?1 AND c = ?2"),
        "SELECT a FROM t WHERE b = $1 AND c = $2"
    );
    assert_eq!(
        rewrite_params("VALUES (?1, ?10, ?2)"),
        "VALUES ($1, $10, $2)"
    );
    assert_eq!(
        rewrite_params("SELECT '?1', \"?2\", 'it''s ?3', ?4 -- ?5\n, ?6 /* ?7 */ , ?8"),
        "SELECT '?1', \"?2\", 'it''s ?3', $4 -- ?5\n, $6 /* ?7 */ , $8"
    );
    // Not a numbered parameter: jsonb's `?` operator, a trailing `?`.
    assert_eq!(rewrite_params("SELECT j ? 'k', ?"), "SELECT j ? 'k', ?");
    assert_eq!(rewrite_params("SELECT 'unclosed ?1"), "SELECT 'unclosed ?1");
}

#[test]
fn every_value_type_round_trips() {
    let Some((_db, conn)) = empty() else { return };
    let db: &dyn Sql = &conn;
    db.batch(
        "CREATE TABLE t (i8 BIGINT, i4 INTEGER, i2 SMALLINT, b BOOLEAN, f8 DOUBLE PRECISION,
                         f4 REAL, t TEXT, v VARCHAR(20), c CHAR(3), by BYTEA)",
    )
    .unwrap();
    db.execute(
        "INSERT INTO t VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        sql_params![
            i64::MAX,
            -7i64,
            300i64,
            true,
            1.5f64,
            0.25f64,
            "Åsa ?1 'quoted'",
            "vc",
            "abc",
            vec![0u8, 1, 255]
        ],
    )
    .unwrap();
    // An integer into a DOUBLE PRECISION column, NULL into every type.
    db.execute(
        "INSERT INTO t VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        sql_params![
            None::<i64>,
            None::<i64>,
            None::<i64>,
            None::<bool>,
            3i64,
            None::<f64>,
            None::<String>,
            None::<String>,
            None::<String>,
            None::<Vec<u8>>
        ],
    )
    .unwrap();
    let rows = db
        .query("SELECT * FROM t ORDER BY i8 NULLS LAST", sql_params![])
        .unwrap();
    let row = &rows[0];
    assert_eq!(row.get::<i64>(0).unwrap(), i64::MAX);
    assert_eq!(row.get::<i64>(1).unwrap(), -7);
    assert_eq!(row.get::<i64>(2).unwrap(), 300);
    assert_eq!(row.get::<i64>(3).unwrap(), 1);
    assert!(row.get::<bool>(3).unwrap());
    assert_eq!(row.get::<f64>(4).unwrap(), 1.5);
    assert_eq!(row.get::<f64>(5).unwrap(), 0.25);
    assert_eq!(row.get::<String>(6).unwrap(), "Åsa ?1 'quoted'");
    assert_eq!(row.get::<String>(7).unwrap(), "vc");
    assert_eq!(row.get::<String>(8).unwrap(), "abc");
    assert_eq!(row.get::<Vec<u8>>(9).unwrap(), vec![0, 1, 255]);
    let nulls = &rows[1];
    assert_eq!(nulls.get::<f64>(4).unwrap(), 3.0);
    for i in [0, 1, 2, 3, 5, 6, 7, 8, 9] {
        assert_eq!(nulls.get::<Option<i64>>(i).ok(), Some(None), "column {i}");
    }
    // A parameter used twice, and numbers up to ?10 after ?1.
    let n: i64 = db
        .query_value(
            "SELECT CAST(?1 AS BIGINT) + ?2 + ?3 + ?4 + ?5 + ?6 + ?7 + ?8 + ?9 + ?10 + ?1",
            sql_params![1i64, 2i64, 3i64, 4i64, 5i64, 6i64, 7i64, 8i64, 9i64, 10i64],
        )
        .unwrap()
        .unwrap();
    assert_eq!(n, 56);
    // '?1' in a string is text, not a parameter.
    let text: String = db
        .query_value("SELECT '?1' || ?1", sql_params!["x"])
        .unwrap()
        .unwrap();
    assert_eq!(text, "?1x");
    // A boolean the database computes reads as 0/1.
    let flag: i64 = db
        .query_value("SELECT ?1 > 2", sql_params![3i64])
        .unwrap()
        .unwrap();
    assert_eq!(flag, 1);
}

#[test]
fn numeric_columns_and_mismatched_parameters_are_clear_errors() {
    let Some((_db, conn)) = empty() else { return };
    let db: &dyn Sql = &conn;
    db.batch("CREATE TABLE t (n BIGINT, s TEXT, b BOOLEAN); INSERT INTO t VALUES (1, 'a', true)")
        .unwrap();
    let err = db
        .query_value::<i64>("SELECT SUM(n) FROM t", sql_params![])
        .unwrap_err();
    assert_eq!(kind(&err), Some(DbErrorKind::BadValue), "{err}");
    assert!(err.to_string().contains("CAST(.. AS BIGINT)"), "{err}");
    let sum: i64 = db
        .query_value("SELECT CAST(SUM(n) AS BIGINT) FROM t", sql_params![])
        .unwrap()
        .unwrap();
    assert_eq!(sum, 1);
    let err = db
        .execute("UPDATE t SET s = ?1", sql_params![5i64])
        .unwrap_err();
    assert_eq!(kind(&err), Some(DbErrorKind::BadValue), "{err}");
    let err = db
        .execute("UPDATE t SET b = ?1", sql_params![2i64])
        .unwrap_err();
    assert!(err.to_string().contains("0 or 1"), "{err}");
    let err = db
        .execute("UPDATE t SET n = ?1", sql_params![1i64, 2i64])
        .unwrap_err();
    assert!(err.to_string().contains("2 parameters"), "{err}");
    // 22xxx: a value the database cannot take.
    let err = db
        .query_value::<i64>("SELECT CAST(?1 AS BIGINT)", sql_params!["x"])
        .unwrap_err();
    assert_eq!(kind(&err), Some(DbErrorKind::BadValue), "{err}");
    // The connection is still good after errors outside a transaction.
    assert!(!db.is_broken());
}

#[test]
fn a_failed_transaction_leaves_nothing_and_a_failed_savepoint_only_its_own() {
    let Some((_db, conn)) = empty() else { return };
    let db: &dyn Sql = &conn;
    db.batch("CREATE TABLE t (id BIGINT PRIMARY KEY)").unwrap();
    let err = transaction(db, TxKind::Write, |db| {
        db.execute("INSERT INTO t (id) VALUES (1)", sql_params![])?;
        db.execute("INSERT INTO t (id) VALUES (1)", sql_params![])
    })
    .unwrap_err();
    assert_eq!(kind(&err), Some(DbErrorKind::Constraint), "{err}");
    assert!(
        !db.is_broken(),
        "a rolled back transaction leaves a usable connection"
    );
    transaction(db, TxKind::Write, |db| {
        db.execute("INSERT INTO t (id) VALUES (2)", sql_params![])?;
        let inner = savepoint(db, "inner", |db| {
            db.execute("INSERT INTO t (id) VALUES (3)", sql_params![])?;
            db.execute("INSERT INTO t (id) VALUES (3)", sql_params![])
        });
        assert_eq!(
            inner.as_ref().err().and_then(StoreError::db_kind),
            Some(DbErrorKind::Constraint),
            "{inner:?}"
        );
        // The transaction goes on after the savepoint's error.
        db.execute("INSERT INTO t (id) VALUES (4)", sql_params![])?;
        Ok(())
    })
    .unwrap();
    let ids: Vec<i64> = db
        .query("SELECT id FROM t ORDER BY id", sql_params![])
        .unwrap()
        .iter()
        .map(|r| r.get(0).unwrap())
        .collect();
    assert_eq!(ids, vec![2, 4]);
}

#[test]
fn a_serialization_failure_is_retry_and_a_deadlock_is_retried_to_success() {
    let Some((temporary, a)) = empty() else {
        return;
    };
    let b = connect(temporary.url(), TIMEOUT).unwrap();
    a.batch("CREATE TABLE t (id BIGINT PRIMARY KEY, n BIGINT NOT NULL); INSERT INTO t VALUES (1, 0), (2, 0)")
        .unwrap();

    // Write skew under SERIALIZABLE: the second commit fails with 40001.
    a.batch("BEGIN ISOLATION LEVEL SERIALIZABLE").unwrap();
    b.batch("BEGIN ISOLATION LEVEL SERIALIZABLE").unwrap();
    b.query(
        "SELECT CAST(SUM(n) AS BIGINT) FROM t WHERE id = 1",
        sql_params![],
    )
    .unwrap();
    a.query(
        "SELECT CAST(SUM(n) AS BIGINT) FROM t WHERE id = 2",
        sql_params![],
    )
    .unwrap();
    a.execute("UPDATE t SET n = 1 WHERE id = 1", sql_params![])
        .unwrap();
    b.execute("UPDATE t SET n = 1 WHERE id = 2", sql_params![])
        .unwrap();
    a.commit().unwrap();
    let err = b.commit().unwrap_err();
    assert_eq!(kind(&err), Some(DbErrorKind::Retry), "{err}");
    assert!(err.is_retry());

    // A deadlock between two writers: one of them loses, and `transaction` runs it again.
    let url = temporary.url().clone();
    let barrier = Arc::new(Barrier::new(2));
    let attempts = Arc::new(AtomicU32::new(0));
    let writer = |first: i64, second: i64| {
        let (url, barrier, attempts) = (url.clone(), barrier.clone(), attempts.clone());
        std::thread::spawn(move || {
            let conn = connect(&url, TIMEOUT).unwrap();
            let mut waited = false;
            transaction(&conn, TxKind::Write, |db| {
                attempts.fetch_add(1, Ordering::SeqCst);
                db.execute("UPDATE t SET n = n + 1 WHERE id = ?1", sql_params![first])?;
                if !waited {
                    waited = true;
                    barrier.wait();
                }
                db.execute("UPDATE t SET n = n + 1 WHERE id = ?1", sql_params![second])?;
                Ok(())
            })
        })
    };
    let one = writer(1, 2);
    let two = writer(2, 1);
    one.join().unwrap().unwrap();
    two.join().unwrap().unwrap();
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        3,
        "one of the two ran twice"
    );
    let n: Vec<i64> = a
        .query("SELECT n FROM t ORDER BY id", sql_params![])
        .unwrap()
        .iter()
        .map(|r| r.get(0).unwrap())
        .collect();
    assert_eq!(n, vec![3, 2]);
}

#[test]
fn a_lock_held_past_the_timeout_is_busy() {
    let Some((temporary, holder)) = empty() else {
        return;
    };
    holder
        .batch("CREATE TABLE t (id BIGINT PRIMARY KEY); INSERT INTO t VALUES (1)")
        .unwrap();
    let waiter = connect(temporary.url(), Duration::from_millis(200)).unwrap();
    holder.begin(TxKind::Write).unwrap();
    holder
        .execute("UPDATE t SET id = 1 WHERE id = 1", sql_params![])
        .unwrap();
    let err = waiter
        .execute("DELETE FROM t WHERE id = 1", sql_params![])
        .unwrap_err();
    assert_eq!(kind(&err), Some(DbErrorKind::Busy), "{err}");
    holder.rollback().unwrap();
}

#[test]
fn two_hubs_opening_an_empty_database_together_migrate_it_once() {
    let Some(server) = postgres_server() else {
        return;
    };
    let temporary = TemporaryDatabase::create(&server, "t360").unwrap();
    let barrier = Arc::new(Barrier::new(2));
    let openers: Vec<_> = (0..2)
        .map(|_| {
            let (url, barrier) = (temporary.url().clone(), barrier.clone());
            std::thread::spawn(move || {
                let conn = connect(&url, TIMEOUT).unwrap();
                barrier.wait();
                migrations::migrate(&conn).unwrap()
            })
        })
        .collect();
    let mut applied: Vec<Vec<i64>> = openers.into_iter().map(|t| t.join().unwrap()).collect();
    applied.sort();
    let every: Vec<i64> = migrations::HISTORY.iter().map(|m| m.version).collect();
    assert_eq!(applied, vec![vec![], every]);
    // And a hub opening it afterwards finds it up to date.
    let db = Database::open(
        &DatabaseUrl::Postgres(temporary.url().clone()),
        &DatabaseOptions::default(),
    )
    .unwrap();
    let conn = db.get().unwrap();
    assert_eq!(migrations::version(&*conn).unwrap(), migrations::LATEST);
    let count: i64 = conn
        .query_value("SELECT COUNT(*) FROM schema_migrations", sql_params![])
        .unwrap()
        .unwrap();
    assert_eq!(count, migrations::HISTORY.len() as i64);
}

#[test]
fn a_database_a_newer_hub_migrated_is_refused() {
    let newer = migrations::LATEST + 1;
    if let Some(server) = postgres_server() {
        let scratch = postgres_on(&server);
        scratch
            .db
            .get()
            .unwrap()
            .execute(
                "INSERT INTO schema_migrations (version, name) VALUES (?1, 'from the future')",
                sql_params![newer],
            )
            .unwrap();
        let err = Database::open(&scratch.url, &DatabaseOptions::default()).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("schema version {newer}, newer than this hub's")),
            "{err}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let url = DatabaseUrl::Sqlite(dir.path().join("hub.db"));
    drop(Database::open(&url, &DatabaseOptions::default()).unwrap());
    let conn = crate::store::sqlite::driver::open(&dir.path().join("hub.db"), TIMEOUT).unwrap();
    conn.batch(&format!("PRAGMA user_version = {newer}"))
        .unwrap();
    let err = Database::open(&url, &DatabaseOptions::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("schema version {newer}, newer than this hub's")),
        "{err}"
    );
}

#[test]
fn a_scratch_database_is_dropped_with_its_scratch() {
    let Some(server) = postgres_server() else {
        return;
    };
    let scratch = postgres_on(&server);
    let DatabaseUrl::Postgres(url) = &scratch.url else {
        panic!("{}", scratch.url)
    };
    let name = url.dbname().to_string();
    assert!(name.starts_with("t360_"), "{name}");
    // A connection still open does not keep it.
    let conn = scratch.db.get().unwrap();
    let admin = connect(&server, TIMEOUT).unwrap();
    let exists = |admin: &PgConnection| {
        admin
            .exists(
                "SELECT 1 FROM pg_database WHERE datname = ?1",
                sql_params![name],
            )
            .unwrap()
    };
    assert!(exists(&admin));
    std::mem::forget(conn);
    drop(scratch);
    assert!(!exists(&admin));
}

#[test]
fn a_connection_works_on_a_spawn_blocking_thread_and_a_plain_thread() {
    let Some(server) = postgres_server() else {
        return;
    };
    let scratch = postgres_on(&server);
    let db = scratch.db.clone();
    let on_thread = std::thread::spawn(move || {
        let conn = db.get().unwrap();
        conn.query_value::<i64>("SELECT CAST(1 AS BIGINT)", sql_params![])
            .unwrap()
    })
    .join()
    .unwrap();
    assert_eq!(on_thread, Some(1));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let db = scratch.db.clone();
    let on_runtime = runtime.block_on(async move {
        tokio::task::spawn_blocking(move || {
            let conn = db.get().unwrap();
            conn.query_value::<i64>("SELECT CAST(2 AS BIGINT)", sql_params![])
                .unwrap()
        })
        .await
        .unwrap()
    });
    assert_eq!(on_runtime, Some(2));
}

#[test]
fn a_broken_connection_or_one_left_in_a_transaction_is_not_lent_again() {
    let Some(server) = postgres_server() else {
        return;
    };
    let scratch = postgres_on(&server);
    let pid = |conn: &dyn Sql| -> i64 {
        conn.query_value("SELECT CAST(pg_backend_pid() AS BIGINT)", sql_params![])
            .unwrap()
            .unwrap()
    };
    let first = pid(&*scratch.db.get().unwrap());
    assert_eq!(
        pid(&*scratch.db.get().unwrap()),
        first,
        "an idle connection is reused"
    );

    let killed = scratch.db.get().unwrap();
    let admin = connect(&server, TIMEOUT).unwrap();
    admin
        .query(
            "SELECT pg_terminate_backend(CAST(?1 AS INTEGER))",
            sql_params![first],
        )
        .ok();
    let err = killed
        .query_value::<i64>("SELECT CAST(1 AS BIGINT)", sql_params![])
        .unwrap_err();
    assert_eq!(kind(&err), Some(DbErrorKind::Connection), "{err}");
    assert!(killed.is_broken());
    drop(killed);
    let second = pid(&*scratch.db.get().unwrap());
    assert_ne!(second, first);

    let left_open = scratch.db.get().unwrap();
    left_open.begin(TxKind::Write).unwrap();
    drop(left_open);
    assert_ne!(pid(&*scratch.db.get().unwrap()), second);
}

#[test]
fn an_unreachable_server_is_a_connection_error_naming_the_url_without_its_password() {
    // Port 1 on loopback: nothing listens there.
    let url = PostgresUrl::parse("postgres://hub:s3cret@127.0.0.1:1/till360").unwrap();
    let err = Database::open(
        &DatabaseUrl::Postgres(url),
        &DatabaseOptions {
            timeout: Duration::from_secs(2),
            ..DatabaseOptions::default()
        },
    )
    .unwrap_err();
    let text = err.to_string();
    assert_eq!(kind(&err), Some(DbErrorKind::Connection), "{text}");
    assert!(
        text.contains("cannot connect to postgres://hub:***@127.0.0.1:1/till360"),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "{text}");
}

/// Table → its columns, in order, as each engine lists them.
fn tables_and_columns(db: &dyn Sql) -> std::collections::BTreeMap<String, Vec<String>> {
    let sql = match db.engine() {
        crate::store::Engine::Sqlite => {
            "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' ORDER BY m.name, p.cid"
        }
        crate::store::Engine::Postgres => {
            "SELECT CAST(table_name AS TEXT), CAST(column_name AS TEXT)
             FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name <> 'schema_migrations'
             ORDER BY table_name, ordinal_position"
        }
    };
    let mut tables = std::collections::BTreeMap::<String, Vec<String>>::new();
    for row in db.query(sql, sql_params![]).unwrap() {
        tables
            .entry(row.get(0).unwrap())
            .or_default()
            .push(row.get(1).unwrap());
    }
    tables
}

#[test]
fn postgresql_has_the_tables_and_columns_of_sqlite_schema_7() {
    let Some(server) = postgres_server() else {
        return;
    };
    let sqlite = crate::store::test_support::sqlite();
    let postgres = postgres_on(&server);
    let on_sqlite = tables_and_columns(&*sqlite.db.get().unwrap());
    let on_postgres = tables_and_columns(&*postgres.db.get().unwrap());
    assert!(on_sqlite.len() > 25, "{on_sqlite:?}");
    assert_eq!(on_postgres, on_sqlite);
}

/// A COPY and a bulk write in a transaction run their foreign-key checks with cached
/// plans and give the session its own planning back after them, also when one fails; a
/// row the key refuses is still refused.
#[test]
fn bulk_writes_use_cached_plans_for_themselves_only() {
    let Some((_db, conn)) = empty() else { return };
    conn.batch(
        "CREATE TABLE parent (id TEXT PRIMARY KEY);
         CREATE TABLE child (id TEXT REFERENCES parent(id));
         INSERT INTO parent VALUES ('a'), ('b');",
    )
    .unwrap();
    let mode = |conn: &PgConnection| {
        conn.query_value::<String>("SELECT current_setting('plan_cache_mode')", sql_params![])
            .unwrap()
            .unwrap()
    };
    assert_eq!(mode(&conn), "force_custom_plan");
    transaction(&conn, TxKind::Write, |tx| {
        use crate::store::sql::Param;
        assert!(tx.copy_in("child", &["id"], &[Param::Text("a"), Param::Text("b")])?);
        assert_eq!(mode(&conn), "force_custom_plan");
        tx.execute_bulk(
            "INSERT INTO child SELECT * FROM unnest(CAST(CAST(?1 AS TEXT) AS TEXT[]))",
            sql_params!["{a,b}"],
        )?;
        assert_eq!(mode(&conn), "force_custom_plan");
        let refused = savepoint(tx, "bad", |tx| {
            tx.copy_in("child", &["id"], &[Param::Text("nobody")])
        });
        assert_eq!(kind(&refused.unwrap_err()), Some(DbErrorKind::Constraint));
        assert_eq!(mode(&conn), "force_custom_plan");
        Ok(())
    })
    .unwrap();
    assert_eq!(mode(&conn), "force_custom_plan");
    assert_eq!(
        conn.query_value::<i64>("SELECT count(*) FROM child", sql_params![])
            .unwrap(),
        Some(4)
    );
}

/// A transaction that prefers cached plans keeps them for its statements, bulk writes
/// included, and the next transaction plans as the session does.
#[test]
fn a_transaction_preferring_cached_plans_keeps_them_until_it_ends() {
    let Some((_db, conn)) = empty() else { return };
    conn.batch("CREATE TABLE t (id TEXT)").unwrap();
    let mode = |conn: &PgConnection| {
        conn.query_value::<String>("SELECT current_setting('plan_cache_mode')", sql_params![])
            .unwrap()
            .unwrap()
    };
    transaction(&conn, TxKind::Write, |tx| {
        tx.prefer_cached_plans()?;
        assert_eq!(mode(&conn), "auto");
        assert!(tx.copy_in("t", &["id"], &[crate::store::sql::Param::Text("a")])?);
        assert_eq!(mode(&conn), "auto");
        Ok(())
    })
    .unwrap();
    assert_eq!(mode(&conn), "force_custom_plan");
    transaction(&conn, TxKind::Read, |_| {
        assert_eq!(mode(&conn), "force_custom_plan");
        Ok(())
    })
    .unwrap();
}
