//! The one place the hub opens database connections: a small pool per database, every
//! connection opened with the same `[database] timeout_seconds`.

use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::migrations;
use super::sql::{Engine, Sql};
use super::StoreError;
use crate::config::DatabaseUrl;

/// How connections are opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseOptions {
    /// How long a statement waits for another connection's (or hub's) lock before the
    /// store reports the database busy.
    pub timeout: Duration,
    /// Idle connections kept for reuse.
    pub max_idle: usize,
}

impl Default for DatabaseOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_idle: 8,
        }
    }
}

type Connection = Box<dyn Sql + Send>;
type Opener = Box<dyn Fn() -> Result<Connection, StoreError> + Send + Sync>;

struct Inner {
    engine: Engine,
    /// For messages: the URL without its password.
    name: String,
    open: Opener,
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let idle = std::mem::take(
            self.idle
                .get_mut()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        // The last clone of a hub's database often goes with an async task; closing a
        // PostgreSQL client blocks on the client's own runtime, which must not happen
        // on a runtime's worker thread: it is closed on a thread of its own.
        if self.engine == Engine::Postgres && !idle.is_empty() {
            let closed = std::thread::Builder::new()
                .name("close-connections".into())
                .spawn(move || drop(idle));
            if let Err(e) = closed {
                tracing::warn!("idle database connections not closed cleanly: {e}");
            }
        }
    }
}

/// A database the hub works on: clone it freely, take a connection with [`Database::get`].
#[derive(Clone)]
pub struct Database {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("engine", &self.inner.engine)
            .field("name", &self.inner.name)
            .finish()
    }
}

impl Database {
    /// Opens the database `url` names, bringing its schema up to date first.
    pub fn open(url: &DatabaseUrl, options: &DatabaseOptions) -> Result<Self, StoreError> {
        match url {
            DatabaseUrl::Sqlite(path) => {
                let conn = super::sqlite::driver::open(path, options.timeout)?;
                migrations::refuse_newer(migrations::version(&conn)?)?;
                // A file older than schema 7 is upgraded to 7 first; the shared history
                // goes on from there.
                super::sqlite::upgrade::upgrade_to_7(&conn)?;
                migrations::migrate(&conn)?;
                drop(conn);
                let path = path.clone();
                let timeout = options.timeout;
                Ok(Self::with_opener(
                    Engine::Sqlite,
                    format!("sqlite://{}", path.display()),
                    options.max_idle,
                    Box::new(move || {
                        super::sqlite::driver::open(&path, timeout)
                            .map(|conn| Box::new(conn) as Connection)
                    }),
                ))
            }
            DatabaseUrl::Postgres(url) => {
                let conn = super::postgres::driver::connect(url, options.timeout)?;
                migrations::migrate(&conn)?;
                drop(conn);
                let url = url.clone();
                let timeout = options.timeout;
                Ok(Self::with_opener(
                    Engine::Postgres,
                    url.to_string(),
                    options.max_idle,
                    Box::new(move || {
                        super::postgres::driver::connect(&url, timeout)
                            .map(|conn| Box::new(conn) as Connection)
                    }),
                ))
            }
        }
    }

    fn with_opener(engine: Engine, name: String, max_idle: usize, open: Opener) -> Self {
        Self {
            inner: Arc::new(Inner {
                engine,
                name,
                open,
                idle: Mutex::new(Vec::new()),
                max_idle,
            }),
        }
    }

    pub fn engine(&self) -> Engine {
        self.inner.engine
    }

    /// The URL without a password, for messages.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// A connection: an idle one from the pool, or a new one. It goes back to the pool
    /// when dropped.
    pub fn get(&self) -> Result<Pooled, StoreError> {
        let reused = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop();
        let conn = match reused {
            Some(conn) => conn,
            None => (self.inner.open)()?,
        };
        Ok(Pooled {
            conn: Some(conn),
            pool: self.inner.clone(),
        })
    }
}

/// A pooled connection; derefs to [`Sql`].
pub struct Pooled {
    conn: Option<Connection>,
    pool: Arc<Inner>,
}

impl Deref for Pooled {
    type Target = dyn Sql + Send;
    fn deref(&self) -> &Self::Target {
        self.conn
            .as_deref()
            .expect("a pooled connection is present until dropped")
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // A connection that failed (or was left inside a transaction) is closed,
            // not lent again.
            if conn.is_broken() {
                return;
            }
            let mut idle = self
                .pool
                .idle
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if idle.len() < self.pool.max_idle {
                idle.push(conn);
            }
        }
    }
}
