//! The one SQL interface the store's concerns are written against, whatever the engine.
//!
//! Statements are written once, in the dialect both SQLite and PostgreSQL accept:
//! numbered parameters `?1, ?2, …` (the PostgreSQL backend rewrites them to `$1, $2, …`),
//! `INSERT … ON CONFLICT … DO NOTHING | DO UPDATE SET x = excluded.x`, `RETURNING`,
//! `CAST(SUM(x) AS BIGINT)` (PostgreSQL sums integers as NUMERIC), `lower(x) LIKE lower(?1)`
//! (SQLite's LIKE ignores ASCII case, PostgreSQL's does not). Where the engines really
//! differ, ask [`Sql::engine`]. Integers are 64-bit on both (`BIGINT` columns on
//! PostgreSQL); flags are integers 0/1 on both; booleans PostgreSQL computes are read as 0/1.
//!
//! No database crate is named here: each backend implements [`Sql`] in its own folder
//! (`store/sqlite/`, `store/postgres/`), and only there.

use std::fmt;

use super::StoreError;

/// Which database engine a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Engine::Sqlite => "SQLite",
            Engine::Postgres => "PostgreSQL",
        })
    }
}

/// What went wrong in the database, as far as the hub's decisions care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbErrorKind {
    /// Two transactions conflicted (PostgreSQL serialization failure or deadlock):
    /// running the transaction again succeeds once the other one is done.
    Retry,
    /// A lock was not granted within the configured timeout (`[database]
    /// timeout_seconds`): the caller decides whether to try later.
    Busy,
    /// A constraint (unique, foreign key, check, not null) refused a value.
    Constraint,
    /// A value the database cannot take (too big, wrong type, out of range).
    BadValue,
    /// The connection is gone or cannot be made.
    Connection,
    /// Anything else (a disk error, a bug in a statement).
    Other,
}

/// A database error with the engine's own words kept for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbError {
    pub engine: Engine,
    pub kind: DbErrorKind,
    pub message: String,
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.engine, self.message)
    }
}

impl std::error::Error for DbError {}

/// A statement parameter, borrowed from the caller (no copy on the hot path).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Param<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

/// A value that can be bound to a statement parameter.
pub trait ToParam {
    fn to_param(&self) -> Param<'_>;
}

impl ToParam for Param<'_> {
    fn to_param(&self) -> Param<'_> {
        *self
    }
}
impl ToParam for i64 {
    fn to_param(&self) -> Param<'_> {
        Param::Int(*self)
    }
}
impl ToParam for i32 {
    fn to_param(&self) -> Param<'_> {
        Param::Int(i64::from(*self))
    }
}
impl ToParam for u32 {
    fn to_param(&self) -> Param<'_> {
        Param::Int(i64::from(*self))
    }
}
impl ToParam for bool {
    fn to_param(&self) -> Param<'_> {
        Param::Int(i64::from(*self))
    }
}
impl ToParam for f64 {
    fn to_param(&self) -> Param<'_> {
        Param::Real(*self)
    }
}
impl ToParam for str {
    fn to_param(&self) -> Param<'_> {
        Param::Text(self)
    }
}
impl ToParam for String {
    fn to_param(&self) -> Param<'_> {
        Param::Text(self)
    }
}
impl ToParam for [u8] {
    fn to_param(&self) -> Param<'_> {
        Param::Blob(self)
    }
}
impl ToParam for Vec<u8> {
    fn to_param(&self) -> Param<'_> {
        Param::Blob(self)
    }
}
impl<const N: usize> ToParam for [u8; N] {
    fn to_param(&self) -> Param<'_> {
        Param::Blob(self)
    }
}
impl<T: ToParam + ?Sized> ToParam for &T {
    fn to_param(&self) -> Param<'_> {
        (**self).to_param()
    }
}
impl<T: ToParam> ToParam for Option<T> {
    fn to_param(&self) -> Param<'_> {
        match self {
            Some(v) => v.to_param(),
            None => Param::Null,
        }
    }
}

/// A `u64` (a seq, a version) as the signed 64-bit integer both engines store; beyond
/// `i64::MAX` is a value the hub refuses, not one it wraps.
pub fn int(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| {
        StoreError::Corrupt(format!("{value} is beyond what the hub stores (2^63 - 1)"))
    })
}

/// `&[&dyn ToParam]` from a list of values: `sql_params![a, b, c]`.
#[macro_export]
macro_rules! sql_params {
    () => { &[] as &[&dyn $crate::store::sql::ToParam] };
    ($($value:expr),+ $(,)?) => { &[$(&$value as &dyn $crate::store::sql::ToParam),+] as &[&dyn $crate::store::sql::ToParam] };
}

/// One column's value as read back.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Value {
    fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Int(_) => "an integer",
            Value::Real(_) => "a real",
            Value::Text(_) => "text",
            Value::Blob(_) => "a blob",
        }
    }
}

/// One result row.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Row {
    values: Vec<Value>,
}

impl Row {
    pub fn new(values: Vec<Value>) -> Self {
        Self { values }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Column `index` (from 0) as `T`; a wrong type or a missing column is
    /// [`StoreError::Corrupt`] naming both.
    pub fn get<T: FromValue>(&self, index: usize) -> Result<T, StoreError> {
        let value = self.values.get(index).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "column {index} asked of a row with {} columns",
                self.values.len()
            ))
        })?;
        T::from_value(value).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "column {index} holds {}, not {}",
                value.type_name(),
                T::NAME
            ))
        })
    }

    /// Moves column `index` out (the text or blob is not copied).
    pub fn take(&mut self, index: usize) -> Value {
        self.values
            .get_mut(index)
            .map(|v| std::mem::replace(v, Value::Null))
            .unwrap_or(Value::Null)
    }
}

/// A Rust type a column can be read as.
pub trait FromValue: Sized {
    const NAME: &'static str;
    fn from_value(value: &Value) -> Option<Self>;
}

impl FromValue for i64 {
    const NAME: &'static str = "an integer";
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Int(v) => Some(*v),
            _ => None,
        }
    }
}
impl FromValue for u64 {
    const NAME: &'static str = "a non-negative integer";
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Int(v) => u64::try_from(*v).ok(),
            _ => None,
        }
    }
}
impl FromValue for i32 {
    const NAME: &'static str = "a 32-bit integer";
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Int(v) => i32::try_from(*v).ok(),
            _ => None,
        }
    }
}
impl FromValue for u32 {
    const NAME: &'static str = "a non-negative 32-bit integer";
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Int(v) => u32::try_from(*v).ok(),
            _ => None,
        }
    }
}
impl FromValue for usize {
    const NAME: &'static str = "a count";
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Int(v) => usize::try_from(*v).ok(),
            _ => None,
        }
    }
}
impl FromValue for bool {
    const NAME: &'static str = "a flag (0 or 1)";
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Int(v) => Some(*v != 0),
            _ => None,
        }
    }
}
impl FromValue for f64 {
    const NAME: &'static str = "a number";
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Real(v) => Some(*v),
            // SQLite keeps a whole REAL as an integer when asked to.
            Value::Int(v) => Some(*v as f64),
            _ => None,
        }
    }
}
impl FromValue for String {
    const NAME: &'static str = "text";
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Text(v) => Some(v.clone()),
            _ => None,
        }
    }
}
impl FromValue for Vec<u8> {
    const NAME: &'static str = "a blob";
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Blob(v) => Some(v.clone()),
            _ => None,
        }
    }
}
impl FromValue for Value {
    const NAME: &'static str = "a value";
    fn from_value(value: &Value) -> Option<Self> {
        Some(value.clone())
    }
}
impl<T: FromValue> FromValue for Option<T> {
    const NAME: &'static str = T::NAME;
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Null => Some(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// How a transaction begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxKind {
    /// Reads a consistent snapshot.
    Read,
    /// Writes: SQLite takes the write lock at once (`BEGIN IMMEDIATE`), so a reader
    /// that later writes never deadlocks; PostgreSQL runs READ COMMITTED with the row
    /// locks each statement asks for.
    Write,
}

/// A connection to one of the engines. Statements are prepared once per connection
/// and cached. Methods take `&self` (as rusqlite's do) so that a connection can be
/// lent to several helpers inside one transaction.
pub trait Sql {
    fn engine(&self) -> Engine;

    /// Runs one statement and returns the number of rows it changed.
    fn execute(&self, sql: &str, params: &[&dyn ToParam]) -> Result<u64, StoreError>;

    /// Runs one query and hands each row to `each`, in order; an error from `each`
    /// stops the query and is returned.
    fn query_each(
        &self,
        sql: &str,
        params: &[&dyn ToParam],
        each: &mut dyn FnMut(Row) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;

    /// Runs several statements without parameters (schema, `BEGIN`, `SAVEPOINT`).
    fn batch(&self, sql: &str) -> Result<(), StoreError>;

    /// Starts a transaction (see [`transaction`] for the usual way).
    fn begin(&self, kind: TxKind) -> Result<(), StoreError> {
        let _ = kind;
        self.batch("BEGIN")
    }

    fn commit(&self) -> Result<(), StoreError> {
        self.batch("COMMIT")
    }

    fn rollback(&self) -> Result<(), StoreError> {
        self.batch("ROLLBACK")
    }

    /// Appends rows to `table` by the engine's bulk path (PostgreSQL: binary `COPY`):
    /// `values` row after row, `columns.len()` values each. Returns `false`, having
    /// written nothing, where the engine has none (the caller inserts row by row).
    fn copy_in(
        &self,
        table: &str,
        columns: &[&str],
        values: &[Param<'_>],
    ) -> Result<bool, StoreError> {
        let _ = (table, columns, values);
        Ok(false)
    }

    /// Lets the rest of the open transaction use the server's cached plans (PostgreSQL:
    /// `plan_cache_mode = auto`; the session plans every statement for its values). For
    /// read transactions of many small statements, whose planning costs more than their
    /// execution. SQLite caches its statements anyway.
    fn prefer_cached_plans(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// [`Sql::execute`] for a bulk write whose rows each get a foreign-key check: on
    /// PostgreSQL, inside a transaction, with the server's cached plans (the session plans
    /// every statement for its values, which for a foreign key means once per row).
    fn execute_bulk(&self, sql: &str, params: &[&dyn ToParam]) -> Result<u64, StoreError> {
        self.execute(sql, params)
    }

    /// Whether the connection must not be lent again (it lost its server, or was given
    /// back inside a transaction): the pool closes it instead.
    fn is_broken(&self) -> bool {
        false
    }
}

/// Reading helpers on every [`Sql`].
pub trait SqlExt: Sql {
    /// Every row.
    fn query(&self, sql: &str, params: &[&dyn ToParam]) -> Result<Vec<Row>, StoreError> {
        let mut rows = Vec::new();
        self.query_each(sql, params, &mut |row| {
            rows.push(row);
            Ok(())
        })?;
        Ok(rows)
    }

    /// The first row, if any.
    fn query_opt(&self, sql: &str, params: &[&dyn ToParam]) -> Result<Option<Row>, StoreError> {
        let mut first = None;
        self.query_each(sql, params, &mut |row| {
            if first.is_none() {
                first = Some(row);
            }
            Ok(())
        })?;
        Ok(first)
    }

    /// The first row; none is [`StoreError::Corrupt`] (use for aggregates).
    fn query_one(&self, sql: &str, params: &[&dyn ToParam]) -> Result<Row, StoreError> {
        self.query_opt(sql, params)?
            .ok_or_else(|| StoreError::Corrupt(format!("no row from {sql:?}")))
    }

    /// Column 0 of the first row, if any.
    fn query_value<T: FromValue>(
        &self,
        sql: &str,
        params: &[&dyn ToParam],
    ) -> Result<Option<T>, StoreError> {
        self.query_opt(sql, params)?
            .map(|row| row.get::<T>(0))
            .transpose()
    }

    /// Whether the query returns a row.
    fn exists(&self, sql: &str, params: &[&dyn ToParam]) -> Result<bool, StoreError> {
        Ok(self.query_opt(sql, params)?.is_some())
    }
}

impl<T: Sql + ?Sized> SqlExt for T {}

/// How many times a transaction that lost a race (see [`DbErrorKind::Retry`]) is run.
const ATTEMPTS: u32 = 8;

/// Runs `work` in one transaction and commits it; on an error rolls back. A transaction
/// that lost a race with another hub or writer (serialization failure, deadlock, busy)
/// is run again from the start, up to a few times, with a short growing pause.
pub fn transaction<R>(
    db: &dyn Sql,
    kind: TxKind,
    mut work: impl FnMut(&dyn Sql) -> Result<R, StoreError>,
) -> Result<R, StoreError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        db.begin(kind)?;
        let result = work(db).and_then(|value| db.commit().map(|()| value));
        match result {
            Ok(value) => return Ok(value),
            Err(err) => {
                // The rollback's own error is not the news: the first error is.
                let _ = db.rollback();
                if err.is_retry() && attempt < ATTEMPTS {
                    std::thread::sleep(std::time::Duration::from_millis(2u64 << attempt.min(6)));
                    continue;
                }
                return Err(err);
            }
        }
    }
}

/// Runs `work` under a savepoint: on an error only its own writes are undone and the
/// surrounding transaction goes on.
pub fn savepoint<R>(
    db: &dyn Sql,
    name: &str,
    work: impl FnOnce(&dyn Sql) -> Result<R, StoreError>,
) -> Result<R, StoreError> {
    // Quoted: PostgreSQL reserves words (`inner`, `user`, ...) SQLite takes as names.
    db.batch(&format!("SAVEPOINT \"{name}\""))?;
    match work(db) {
        Ok(value) => {
            db.batch(&format!("RELEASE SAVEPOINT \"{name}\""))?;
            Ok(value)
        }
        Err(err) => {
            db.batch(&format!(
                "ROLLBACK TO SAVEPOINT \"{name}\"; RELEASE SAVEPOINT \"{name}\""
            ))?;
            Err(err)
        }
    }
}
