//! The PostgreSQL backend: [`driver`] implements the store's one SQL interface on a
//! PostgreSQL connection, [`schema`] holds the hub's tables (SQLite schema 7 translated),
//! [`TemporaryDatabase`] makes a fresh database on a server (tests, dry runs). This folder
//! is the only code that names the PostgreSQL client crate.

pub mod copy;
pub mod driver;
pub mod imports;
pub mod schema;

use std::time::Duration;

use crate::config::PostgresUrl;
use crate::store::sql::Sql;
use crate::store::StoreError;

/// A database created on a server for one test (or one dry run), dropped — with whatever
/// connections still use it — when this value is dropped.
pub struct TemporaryDatabase {
    server: PostgresUrl,
    url: PostgresUrl,
}

impl TemporaryDatabase {
    /// Creates `PREFIX_<random>` on the server `server` names (its database is only used
    /// to connect).
    pub fn create(server: &PostgresUrl, prefix: &str) -> Result<Self, StoreError> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "{prefix}_{}_{nanos:x}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let admin = driver::connect(server, Duration::from_secs(30))?;
        admin.batch(&format!("CREATE DATABASE {name}"))?;
        Ok(Self {
            server: server.clone(),
            url: server.with_dbname(&name),
        })
    }

    /// The new database's URL.
    pub fn url(&self) -> &PostgresUrl {
        &self.url
    }
}

impl Drop for TemporaryDatabase {
    fn drop(&mut self) {
        let dropped = driver::connect(&self.server, Duration::from_secs(30)).and_then(|admin| {
            admin.batch(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.url.dbname()
            ))
        });
        if let Err(e) = dropped {
            eprintln!("could not drop the temporary database {}: {e}", self.url);
        }
    }
}

#[cfg(test)]
mod tests;
