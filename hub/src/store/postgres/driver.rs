//! [`Sql`] on a PostgreSQL connection, and the one place a PostgreSQL connection is opened.
//!
//! The client is `postgres`, the synchronous face of `tokio-postgres`: the store is
//! synchronous (one writer thread, readers on `spawn_blocking`), so each connection runs its
//! own small runtime inside the client and nothing async leaks into the store. It must not
//! be used on a tokio worker thread (the client would start a runtime inside a runtime).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::error::Error as StdError;
use std::time::Duration;

use bytes::BytesMut;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::config::SslMode;
use postgres::types::{IsNull, ToSql, Type};
use postgres::{Client, Config, NoTls, Statement};

use crate::config::PostgresUrl;
use crate::store::sql::{DbError, DbErrorKind, Engine, Param, Row, Sql, ToParam, TxKind, Value};
use crate::store::StoreError;

/// Prepared statements kept per connection (the concerns' statements stay prepared).
const STATEMENT_CACHE: usize = 256;

/// A PostgreSQL connection as the store uses it.
pub struct PgConnection {
    /// `Sql` methods take `&self`; a connection is used by one thread at a time.
    client: RefCell<Client>,
    /// Prepared statements by the store's SQL text (`?N` form).
    statements: RefCell<HashMap<String, Statement>>,
    /// A transaction begun and not yet ended: a connection given back like that is
    /// not reused.
    in_transaction: Cell<bool>,
    /// The connection failed (network, server gone): it is not reused either.
    failed: Cell<bool>,
    /// The plans of the open transaction. Switched only when a statement needs the other
    /// kind, so a bulk write that follows another needs no switch between them.
    plans: Cell<Plans>,
    /// What the transaction's other statements use (`prefer_cached_plans`).
    statement_plans: Cell<Plans>,
}

macro_rules! session_plan_cache_mode {
    () => {
        "force_custom_plan"
    };
}

/// Plans for the values at hand: after five runs the server may keep a generic plan of a
/// prepared statement, and for the ingest's array parameters (a batch's cards) that plan
/// made each batch 2-3 times slower (benches/ingest_postgres.rs). `copy_in` is the
/// exception (see there).
const SESSION_PLAN_CACHE_MODE: &str = session_plan_cache_mode!();
/// Inside a transaction: plans the server may cache, then the session's again.
const GENERIC_PLANS: &str = "SET LOCAL plan_cache_mode = auto";

/// Which plans the connection's transaction runs its statements with (see [`Plans`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plans {
    /// The session's: planned for the values at hand.
    Session,
    /// Cached (`SET LOCAL plan_cache_mode = auto`): for bulk writes, whose foreign-key
    /// checks would otherwise be planned once per row.
    Generic,
    /// Not known: a rollback to a savepoint may have undone a `SET LOCAL`.
    Unknown,
}
const SESSION_PLANS: &str = concat!("SET LOCAL plan_cache_mode = ", session_plan_cache_mode!());

/// Connects to `url` with the hub's settings: `timeout` both to connect and as the
/// `lock_timeout` and `statement_timeout` of the session; the password from the URL or
/// `PGPASSWORD`. The error names the URL without its password.
pub fn connect(url: &PostgresUrl, timeout: Duration) -> Result<PgConnection, StoreError> {
    let connection_error = |message: String| {
        StoreError::Database(DbError {
            engine: Engine::Postgres,
            kind: DbErrorKind::Connection,
            message,
        })
    };
    let config =
        client_config(url, timeout, std::env::var_os("PGPASSWORD")).map_err(connection_error)?;
    let mut client = config
        .connect(NoTls)
        .map_err(|e| connection_error(format!("cannot connect to {url}: {}", describe(&e))))?;
    let ms = timeout.as_millis().max(1);
    client
        .batch_execute(&format!(
            "SET lock_timeout = {ms}; SET statement_timeout = {ms}; SET TIME ZONE 'UTC'; \
             SET plan_cache_mode = {SESSION_PLAN_CACHE_MODE}"
        ))
        .map_err(|e| store_error(&e))?;
    Ok(PgConnection {
        client: RefCell::new(client),
        statements: RefCell::new(HashMap::new()),
        in_transaction: Cell::new(false),
        failed: Cell::new(false),
        plans: Cell::new(Plans::Session),
        statement_plans: Cell::new(Plans::Session),
    })
}

/// The client's settings for `url`: the password from the URL, else `pg_password` (the
/// `PGPASSWORD` variable, as libpq reads it).
fn client_config(
    url: &PostgresUrl,
    timeout: Duration,
    pg_password: Option<std::ffi::OsString>,
) -> Result<Config, String> {
    let mut config: Config = url
        .connection_string()
        .parse()
        .map_err(|e| format!("{url}: {e}"))?;
    if config.get_ssl_mode() == SslMode::Require {
        return Err(format!(
            "{url}: sslmode=require, but this hub talks to PostgreSQL without TLS"
        ));
    }
    if !url.has_password() {
        if let Some(password) = pg_password {
            config.password(password.as_encoded_bytes());
        }
    }
    config.application_name("till360-hub");
    config.connect_timeout(timeout);
    Ok(config)
}

/// The server's own words when there are some (the client's `Display` says only "db error").
fn describe(err: &postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => match err.source() {
            Some(source) => format!("{err}: {source}"),
            None => err.to_string(),
        },
    }
}

fn kind_of(err: &postgres::Error) -> DbErrorKind {
    let Some(code) = err.code() else {
        let text = err.to_string();
        // Parameters the driver could not convert, columns it could not read.
        if text.starts_with("error serializing") || text.starts_with("error deserializing") {
            return DbErrorKind::BadValue;
        }
        // No SQLSTATE: the socket, the protocol or a closed connection.
        return DbErrorKind::Connection;
    };
    let code = code.code();
    match code {
        "40001" | "40P01" => DbErrorKind::Retry,
        // lock_timeout (lock_not_available) and statement_timeout (query_canceled).
        "55P03" | "57014" => DbErrorKind::Busy,
        _ if code.starts_with("23") => DbErrorKind::Constraint,
        _ if code.starts_with("22") => DbErrorKind::BadValue,
        // Connection exceptions, a server shutting down, too many connections.
        _ if code.starts_with("08") || code.starts_with("57P") || code == "53300" => {
            DbErrorKind::Connection
        }
        _ => DbErrorKind::Other,
    }
}

fn store_error(err: &postgres::Error) -> StoreError {
    StoreError::Database(DbError {
        engine: Engine::Postgres,
        kind: kind_of(err),
        message: describe(err),
    })
}

fn bad_value(message: String) -> StoreError {
    StoreError::Database(DbError {
        engine: Engine::Postgres,
        kind: DbErrorKind::BadValue,
        message,
    })
}

/// `?N` → `$N` outside quoted strings, quoted identifiers and comments; a `?` that is
/// not followed by a digit (a jsonb operator) is left as it is.
pub fn rewrite_params(sql: &str) -> String {
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    let mut start = 0;
    while i < bytes.len() {
        match bytes[i] {
            quote @ (b'\'' | b'"') => {
                // Up to the closing quote; a doubled quote is an escaped one and the scan
                // simply resumes after it.
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    i += 1;
                }
                i += 1;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i += 2;
            }
            b'?' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                out.push_str(&sql[start..i]);
                out.push('$');
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    out.push_str(&sql[start.min(sql.len())..]);
    out
}

/// A [`Param`] bound by the type the server gave the statement's parameter.
#[derive(Debug)]
pub(super) struct Bound<'a>(pub(super) Param<'a>);

type BoxError = Box<dyn StdError + Sync + Send>;

fn cannot(what: &str, ty: &Type) -> BoxError {
    format!("{what} cannot be bound to a parameter of type {ty}").into()
}

impl ToSql for Bound<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self.0 {
            Param::Null => Ok(IsNull::Yes),
            Param::Int(v) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT4 => i32::try_from(v)
                    .map_err(|_| format!("{v} is beyond a 32-bit integer parameter"))?
                    .to_sql(ty, out),
                Type::INT2 => i16::try_from(v)
                    .map_err(|_| format!("{v} is beyond a 16-bit integer parameter"))?
                    .to_sql(ty, out),
                Type::BOOL => match v {
                    0 | 1 => (v == 1).to_sql(ty, out),
                    _ => Err(format!("{v} is not a flag (0 or 1)").into()),
                },
                Type::FLOAT8 => (v as f64).to_sql(ty, out),
                Type::FLOAT4 => (v as f32).to_sql(ty, out),
                _ => Err(cannot("an integer", ty)),
            },
            Param::Real(v) => match *ty {
                Type::FLOAT8 => v.to_sql(ty, out),
                Type::FLOAT4 => (v as f32).to_sql(ty, out),
                _ => Err(cannot("a real", ty)),
            },
            Param::Text(v) => match *ty {
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                    v.to_sql(&Type::TEXT, out)
                }
                _ => Err(cannot("text", ty)),
            },
            Param::Blob(v) => match *ty {
                Type::BYTEA => v.to_sql(ty, out),
                _ => Err(cannot("a blob", ty)),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        // Checked per value in to_sql, which names the value's kind and the type.
        true
    }

    postgres::types::to_sql_checked!();
}

fn read(row: &postgres::Row, index: usize) -> Result<Value, StoreError> {
    let ty = row.columns()[index].type_();
    let unreadable = |e: postgres::Error| bad_value(format!("column {index}: {}", describe(&e)));
    let value = match *ty {
        Type::INT8 => row
            .try_get::<_, Option<i64>>(index)
            .map_err(unreadable)?
            .map(Value::Int),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(index)
            .map_err(unreadable)?
            .map(|v| Value::Int(v.into())),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(index)
            .map_err(unreadable)?
            .map(|v| Value::Int(v.into())),
        Type::BOOL => row
            .try_get::<_, Option<bool>>(index)
            .map_err(unreadable)?
            .map(|v| Value::Int(v.into())),
        Type::FLOAT8 => row
            .try_get::<_, Option<f64>>(index)
            .map_err(unreadable)?
            .map(Value::Real),
        Type::FLOAT4 => row
            .try_get::<_, Option<f32>>(index)
            .map_err(unreadable)?
            .map(|v| Value::Real(v.into())),
        Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR | Type::UNKNOWN => row
            .try_get::<_, Option<String>>(index)
            .map_err(unreadable)?
            .map(Value::Text),
        Type::BYTEA => row
            .try_get::<_, Option<Vec<u8>>>(index)
            .map_err(unreadable)?
            .map(Value::Blob),
        // `SELECT pg_advisory_xact_lock(..)` and the like.
        Type::VOID => None,
        Type::NUMERIC => {
            return Err(bad_value(format!(
                "column {index} ({}) is NUMERIC (PostgreSQL's SUM of integers is): write \
                 CAST(.. AS BIGINT) in the statement",
                row.columns()[index].name()
            )))
        }
        _ => {
            return Err(bad_value(format!(
                "column {index} ({}) has type {ty}, which the store does not read: cast it to \
                 BIGINT, DOUBLE PRECISION, TEXT or BYTEA",
                row.columns()[index].name()
            )))
        }
    };
    Ok(value.unwrap_or(Value::Null))
}

impl PgConnection {
    /// The client, for the backend's bulk path (`copy.rs`).
    pub(super) fn client(&self) -> std::cell::RefMut<'_, Client> {
        self.client.borrow_mut()
    }

    /// The prepared statement for `sql` (prepared on first use).
    fn statement(&self, client: &mut Client, sql: &str) -> Result<Statement, StoreError> {
        if let Some(stmt) = self.statements.borrow().get(sql) {
            return Ok(stmt.clone());
        }
        let stmt = client
            .prepare(&rewrite_params(sql))
            .map_err(|e| self.failure(&e))?;
        let mut statements = self.statements.borrow_mut();
        if statements.len() >= STATEMENT_CACHE {
            statements.clear();
        }
        statements.insert(sql.to_string(), stmt.clone());
        Ok(stmt)
    }

    /// Maps an error, noting a connection that is gone.
    pub(super) fn failure(&self, err: &postgres::Error) -> StoreError {
        let error = store_error(err);
        if error.db_kind() == Some(DbErrorKind::Connection) {
            self.failed.set(true);
        }
        error
    }

    fn bind<'p>(
        stmt: &Statement,
        sql: &str,
        params: &'p [&'p dyn ToParam],
    ) -> Result<Vec<Bound<'p>>, StoreError> {
        if stmt.params().len() != params.len() {
            return Err(StoreError::Corrupt(format!(
                "{} parameters given to a statement that takes {}: {sql:?}",
                params.len(),
                stmt.params().len()
            )));
        }
        Ok(params.iter().map(|p| Bound(p.to_param())).collect())
    }
}

impl PgConnection {
    /// Makes the open transaction plan with `wanted` (outside a transaction the session's
    /// plans always apply: a `SET LOCAL` there would not last).
    fn use_plans(&self, client: &mut Client, wanted: Plans) -> Result<(), StoreError> {
        if !self.in_transaction.get() || self.plans.get() == wanted {
            return Ok(());
        }
        let set = match wanted {
            Plans::Generic => GENERIC_PLANS,
            Plans::Session | Plans::Unknown => SESSION_PLANS,
        };
        client.batch_execute(set).map_err(|e| self.failure(&e))?;
        self.plans.set(wanted);
        Ok(())
    }

    fn execute_with(
        &self,
        plans: Plans,
        sql: &str,
        params: &[&dyn ToParam],
    ) -> Result<u64, StoreError> {
        let mut client = self.client.borrow_mut();
        self.use_plans(&mut client, plans)?;
        let stmt = self.statement(&mut client, sql)?;
        let bound = Self::bind(&stmt, sql, params)?;
        let refs: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|b| b as _).collect();
        client.execute(&stmt, &refs).map_err(|e| self.failure(&e))
    }
}

impl Sql for PgConnection {
    fn engine(&self) -> Engine {
        Engine::Postgres
    }

    fn execute(&self, sql: &str, params: &[&dyn ToParam]) -> Result<u64, StoreError> {
        self.execute_with(self.statement_plans.get(), sql, params)
    }

    fn execute_bulk(&self, sql: &str, params: &[&dyn ToParam]) -> Result<u64, StoreError> {
        self.execute_with(Plans::Generic, sql, params)
    }

    fn query_each(
        &self,
        sql: &str,
        params: &[&dyn ToParam],
        each: &mut dyn FnMut(Row) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        // All rows are read before `each` sees the first: `each` may run statements on
        // this same connection, which cannot interleave with an open result.
        let rows = {
            let mut client = self.client.borrow_mut();
            self.use_plans(&mut client, self.statement_plans.get())?;
            let stmt = self.statement(&mut client, sql)?;
            let bound = Self::bind(&stmt, sql, params)?;
            let refs: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|b| b as _).collect();
            client.query(&stmt, &refs).map_err(|e| self.failure(&e))?
        };
        for row in rows {
            let values = (0..row.len())
                .map(|i| read(&row, i))
                .collect::<Result<Vec<_>, _>>()?;
            each(Row::new(values))?;
        }
        Ok(())
    }

    fn batch(&self, sql: &str) -> Result<(), StoreError> {
        // `ROLLBACK TO SAVEPOINT` undoes the `SET LOCAL`s made since the savepoint.
        if sql
            .trim_start()
            .get(..8)
            .is_some_and(|w| w.eq_ignore_ascii_case("ROLLBACK"))
        {
            self.plans.set(Plans::Unknown);
        }
        self.client
            .borrow_mut()
            .batch_execute(sql)
            .map_err(|e| self.failure(&e))
    }

    fn begin(&self, kind: TxKind) -> Result<(), StoreError> {
        // READ COMMITTED for both: a writer takes the row locks its statements ask for
        // (`SELECT .. FOR UPDATE` on the agent's row at ingest).
        self.batch(match kind {
            TxKind::Read => "BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY",
            TxKind::Write => "BEGIN ISOLATION LEVEL READ COMMITTED",
        })?;
        self.in_transaction.set(true);
        self.plans.set(Plans::Session);
        self.statement_plans.set(Plans::Session);
        Ok(())
    }

    fn commit(&self) -> Result<(), StoreError> {
        let committed = self.batch("COMMIT");
        // A failed COMMIT ends the transaction too (it rolls back).
        self.in_transaction.set(false);
        committed
    }

    fn rollback(&self) -> Result<(), StoreError> {
        let rolled_back = self.batch("ROLLBACK");
        if rolled_back.is_ok() {
            self.in_transaction.set(false);
        }
        rolled_back
    }

    fn prefer_cached_plans(&self) -> Result<(), StoreError> {
        if self.in_transaction.get() {
            self.statement_plans.set(Plans::Generic);
            self.use_plans(&mut self.client.borrow_mut(), Plans::Generic)?;
        }
        Ok(())
    }

    /// A foreign key is checked by a cached query per row: with the session's custom
    /// plans it would be planned again for every row (a COPY of 500 receipts took 1.7×
    /// as long), so a COPY inside a transaction runs with generic plans.
    fn copy_in(
        &self,
        table: &str,
        columns: &[&str],
        values: &[Param<'_>],
    ) -> Result<bool, StoreError> {
        if columns.is_empty() || !values.len().is_multiple_of(columns.len()) {
            return Err(StoreError::Corrupt(format!(
                "{} values for rows of {} columns of {table}",
                values.len(),
                columns.len()
            )));
        }
        if values.is_empty() {
            return Ok(true);
        }
        let mut client = self.client.borrow_mut();
        self.use_plans(&mut client, Plans::Generic)?;
        let columns = columns.join(", ");
        // The columns' types, as the binary format needs them (prepared once).
        let types: Vec<Type> = self
            .statement(
                &mut client,
                &format!("SELECT {columns} FROM {table} LIMIT 0"),
            )?
            .columns()
            .iter()
            .map(|c| c.type_().clone())
            .collect();
        let sink = client
            .copy_in(&format!("COPY {table} ({columns}) FROM STDIN BINARY"))
            .map_err(|e| self.failure(&e))?;
        let mut writer = BinaryCopyInWriter::new(sink, &types);
        for row in values.chunks(types.len()) {
            let bound: Vec<Bound<'_>> = row.iter().map(|p| Bound(*p)).collect();
            let refs: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|b| b as _).collect();
            writer.write(&refs).map_err(|e| self.failure(&e))?;
        }
        writer.finish().map_err(|e| self.failure(&e))?;
        Ok(true)
    }

    fn is_broken(&self) -> bool {
        self.failed.get() || self.in_transaction.get() || self.client.borrow().is_closed()
    }
}

#[cfg(test)]
mod config_tests {
    use super::*;

    #[test]
    fn the_password_comes_from_the_url_else_from_pgpassword() {
        let from_env = Some(std::ffi::OsString::from("from-env"));
        let with = PostgresUrl::parse("postgres://hub:in%20url@db:5432/t").unwrap();
        let config = client_config(&with, Duration::from_secs(1), from_env.clone()).unwrap();
        assert_eq!(config.get_password(), Some(&b"in url"[..]));
        let without = PostgresUrl::parse("postgres://hub@db:5432/t").unwrap();
        let config = client_config(&without, Duration::from_secs(1), from_env).unwrap();
        assert_eq!(config.get_password(), Some(&b"from-env"[..]));
        let config = client_config(&without, Duration::from_secs(1), None).unwrap();
        assert_eq!(config.get_password(), None);
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(1)));
    }
}
