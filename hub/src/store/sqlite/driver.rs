//! [`Sql`] on a SQLite connection, and the one place a SQLite connection is opened.

use std::path::Path;
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode};

use crate::store::sql::{DbError, DbErrorKind, Engine, Param, Row, Sql, ToParam, TxKind, Value};
use crate::store::StoreError;

/// Opens (creating if needed) the database file at `path` with the hub's settings: WAL,
/// `synchronous=FULL` (a commit is on disk before the hub acknowledges it), foreign keys,
/// and `timeout` to wait for another connection's write lock.
pub fn open(path: &Path, timeout: Duration) -> Result<Connection, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let conn = Connection::open(path)?;
    conn.busy_timeout(timeout)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Corrupt(format!(
            "journal_mode {mode} (WAL refused)"
        )));
    }
    // A 64 MiB page cache keeps the identity and transaction indexes hot while ingesting.
    // Checkpoints every 64 MiB of WAL instead of SQLite's 4 MiB: a backlog drain of
    // a million events runs about 30 % faster (`benches/sync_drain.rs`). The WAL file
    // is reused after each checkpoint, so the hub's disk holds about 64 MiB more.
    // secure_delete: deleted rows (an erase) are overwritten, not left in free space.
    // temp_store in memory: each batch is merged under its own savepoint, whose
    // statement journal would otherwise be a temporary file (`benches/ingest.rs`).
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -65536;
         PRAGMA wal_autocheckpoint = 16384; PRAGMA secure_delete = ON;
         PRAGMA temp_store = MEMORY;",
    )?;
    // Cached statements per connection: the concerns' statements stay prepared.
    conn.set_prepared_statement_cache_capacity(256);
    Ok(conn)
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        let kind = match &err {
            rusqlite::Error::SqliteFailure(e, _) => match e.code {
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => DbErrorKind::Busy,
                ErrorCode::ConstraintViolation => DbErrorKind::Constraint,
                ErrorCode::TypeMismatch | ErrorCode::TooBig => DbErrorKind::BadValue,
                ErrorCode::CannotOpen | ErrorCode::NotADatabase => DbErrorKind::Connection,
                _ => DbErrorKind::Other,
            },
            rusqlite::Error::ToSqlConversionFailure(_)
            | rusqlite::Error::IntegralValueOutOfRange(..)
            | rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::FromSqlConversionFailure(..) => DbErrorKind::BadValue,
            _ => DbErrorKind::Other,
        };
        StoreError::Database(DbError {
            engine: Engine::Sqlite,
            kind,
            message: err.to_string(),
        })
    }
}

fn bind(param: Param<'_>) -> ToSqlOutput<'_> {
    ToSqlOutput::Borrowed(match param {
        Param::Null => ValueRef::Null,
        Param::Int(v) => ValueRef::Integer(v),
        Param::Real(v) => ValueRef::Real(v),
        Param::Text(v) => ValueRef::Text(v.as_bytes()),
        Param::Blob(v) => ValueRef::Blob(v),
    })
}

fn read(value: ValueRef<'_>) -> Result<Value, StoreError> {
    Ok(match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(v) => Value::Int(v),
        ValueRef::Real(v) => Value::Real(v),
        ValueRef::Text(v) => Value::Text(
            std::str::from_utf8(v)
                .map_err(|e| StoreError::Corrupt(format!("text that is not UTF-8: {e}")))?
                .to_owned(),
        ),
        ValueRef::Blob(v) => Value::Blob(v.to_vec()),
    })
}

impl Sql for Connection {
    fn engine(&self) -> Engine {
        Engine::Sqlite
    }

    fn execute(&self, sql: &str, params: &[&dyn ToParam]) -> Result<u64, StoreError> {
        let mut stmt = self.prepare_cached(sql)?;
        let changed = stmt.execute(rusqlite::params_from_iter(
            params.iter().map(|p| bind(p.to_param())),
        ))?;
        Ok(changed as u64)
    }

    fn query_each(
        &self,
        sql: &str,
        params: &[&dyn ToParam],
        each: &mut dyn FnMut(Row) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut stmt = self.prepare_cached(sql)?;
        let columns = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(
            params.iter().map(|p| bind(p.to_param())),
        ))?;
        while let Some(row) = rows.next()? {
            let mut values = Vec::with_capacity(columns);
            for i in 0..columns {
                values.push(read(row.get_ref(i)?)?);
            }
            each(Row::new(values))?;
        }
        Ok(())
    }

    fn batch(&self, sql: &str) -> Result<(), StoreError> {
        Ok(self.execute_batch(sql)?)
    }

    fn begin(&self, kind: TxKind) -> Result<(), StoreError> {
        self.batch(match kind {
            TxKind::Read => "BEGIN DEFERRED",
            TxKind::Write => "BEGIN IMMEDIATE",
        })
    }
}

/// A rusqlite transaction is its connection: store functions over `&dyn Sql` run inside
/// it (callers that still hold a rusqlite `Transaction` while their code moves over).
impl Sql for rusqlite::Transaction<'_> {
    fn engine(&self) -> Engine {
        Engine::Sqlite
    }

    fn execute(&self, sql: &str, params: &[&dyn ToParam]) -> Result<u64, StoreError> {
        Sql::execute(&**self, sql, params)
    }

    fn query_each(
        &self,
        sql: &str,
        params: &[&dyn ToParam],
        each: &mut dyn FnMut(Row) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        Sql::query_each(&**self, sql, params, each)
    }

    fn batch(&self, sql: &str) -> Result<(), StoreError> {
        Sql::batch(&**self, sql)
    }

    fn begin(&self, kind: TxKind) -> Result<(), StoreError> {
        Sql::begin(&**self, kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql_params;
    use crate::store::sql::{savepoint, transaction, SqlExt};

    fn scratch() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("t.db"), Duration::from_secs(1)).unwrap();
        conn.batch("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, data BLOB, score REAL)")
            .unwrap();
        (dir, conn)
    }

    #[test]
    fn values_round_trip_with_their_types() {
        let (_dir, conn) = scratch();
        let db: &dyn Sql = &conn;
        db.execute(
            "INSERT INTO t (id, name, data, score) VALUES (?1, ?2, ?3, ?4)",
            sql_params![7i64, "Åsa", vec![0u8, 255], 1.5f64],
        )
        .unwrap();
        db.execute(
            "INSERT INTO t (id, name) VALUES (?1, ?2)",
            sql_params![8i64, None::<String>],
        )
        .unwrap();
        let row = db
            .query_one(
                "SELECT id, name, data, score FROM t WHERE id = ?1",
                sql_params![7i64],
            )
            .unwrap();
        assert_eq!(row.get::<i64>(0).unwrap(), 7);
        assert_eq!(row.get::<String>(1).unwrap(), "Åsa");
        assert_eq!(row.get::<Vec<u8>>(2).unwrap(), vec![0, 255]);
        assert_eq!(row.get::<f64>(3).unwrap(), 1.5);
        let none: Option<String> = db
            .query_one("SELECT name FROM t WHERE id = 8", sql_params![])
            .unwrap()
            .get(0)
            .unwrap();
        assert_eq!(none, None);
        let err = row.get::<String>(0).unwrap_err();
        assert!(err.to_string().contains("integer"), "{err}");
    }

    #[test]
    fn a_failed_transaction_leaves_nothing_and_a_failed_savepoint_only_its_own() {
        let (_dir, conn) = scratch();
        let db: &dyn Sql = &conn;
        let failed = transaction(db, TxKind::Write, |db| {
            db.execute("INSERT INTO t (id) VALUES (1)", sql_params![])?;
            db.execute("INSERT INTO t (id) VALUES (1)", sql_params![])
        });
        let err = failed.unwrap_err();
        assert!(
            matches!(&err, StoreError::Database(e) if e.kind == DbErrorKind::Constraint),
            "{err:?}"
        );
        transaction(db, TxKind::Write, |db| {
            db.execute("INSERT INTO t (id) VALUES (2)", sql_params![])?;
            let _ = savepoint(db, "inner", |db| {
                db.execute("INSERT INTO t (id) VALUES (3)", sql_params![])?;
                db.execute("INSERT INTO t (id) VALUES (3)", sql_params![])
            });
            Ok(())
        })
        .unwrap();
        let ids: Vec<i64> = db
            .query("SELECT id FROM t ORDER BY id", sql_params![])
            .unwrap()
            .iter()
            .map(|r| r.get(0).unwrap())
            .collect();
        assert_eq!(ids, vec![2]);
    }
}
