//! Databases for tests: one source, every engine. `for_each_engine(|db| ...)` runs a
//! check on a fresh SQLite file and, when `TILL360_TEST_POSTGRES` names a server
//! (`postgres://postgres@127.0.0.1:5432/test`), on a fresh PostgreSQL database too:
//! `t360_<random>`, created on that server and dropped when the check ends. Without the
//! variable the PostgreSQL runs are skipped, and said so on stderr; with it, a server that
//! cannot be reached fails the test.

use std::sync::Once;

use super::postgres::TemporaryDatabase;
use super::{Database, DatabaseOptions};
use crate::config::{DatabaseUrl, PostgresUrl};

/// The variable naming the PostgreSQL server tests create their databases on.
pub const POSTGRES_VAR: &str = "TILL360_TEST_POSTGRES";

/// A fresh database and what keeps it alive (a temporary folder, a database to drop).
pub struct Scratch {
    pub db: Database,
    /// Its URL (password included, if the server has one).
    pub url: DatabaseUrl,
    _keep: Box<dyn std::any::Any>,
}

/// A fresh SQLite database in a temporary folder, schema applied.
pub fn sqlite() -> Scratch {
    let dir = tempfile::tempdir().expect("temporary folder");
    let url = DatabaseUrl::Sqlite(dir.path().join("hub.db"));
    let db = Database::open(&url, &DatabaseOptions::default()).expect("open scratch SQLite");
    Scratch {
        db,
        url,
        _keep: Box::new(dir),
    }
}

/// The server `TILL360_TEST_POSTGRES` names, if set; a malformed value fails the test.
/// Unset, a loud notice once per test process.
pub fn postgres_server() -> Option<PostgresUrl> {
    match std::env::var(POSTGRES_VAR) {
        Ok(text) if !text.trim().is_empty() => Some(
            PostgresUrl::parse(text.trim())
                .unwrap_or_else(|e| panic!("{POSTGRES_VAR}: not a postgres:// URL: {e}")),
        ),
        _ => {
            static NOTICE: Once = Once::new();
            NOTICE.call_once(|| {
                // Straight to the process's stderr: the test harness captures `eprintln!`
                // of passing tests, and this must be seen.
                use std::io::Write as _;
                let _ = writeln!(
                    std::io::stderr(),
                    "\n*** PostgreSQL store checks SKIPPED: {POSTGRES_VAR} is not set, so the \
                     store's checks ran on SQLite only. Set it to a server the tests may \
                     create databases on, e.g. {POSTGRES_VAR}=postgres://postgres@127.0.0.1:5432/test \
                     (.ci/run does). ***\n"
                );
            });
            None
        }
    }
}

/// A fresh PostgreSQL database on `server`, schema applied; dropped with the `Scratch`.
/// A server that cannot be reached panics: the run asked for PostgreSQL.
pub fn postgres_on(server: &PostgresUrl) -> Scratch {
    let temporary = TemporaryDatabase::create(server, "t360").unwrap_or_else(|e| {
        panic!("{POSTGRES_VAR}={server}: cannot create a scratch database: {e}")
    });
    let url = DatabaseUrl::Postgres(temporary.url().clone());
    let db = Database::open(&url, &DatabaseOptions::default())
        .unwrap_or_else(|e| panic!("open scratch PostgreSQL {url}: {e}"));
    Scratch {
        db,
        url,
        _keep: Box::new(temporary),
    }
}

/// A fresh PostgreSQL database when `TILL360_TEST_POSTGRES` is set.
pub fn postgres() -> Option<Scratch> {
    postgres_server().map(|server| postgres_on(&server))
}

/// Fresh databases, one per engine this run can reach.
pub fn scratch_databases() -> Vec<Scratch> {
    let mut databases = vec![sqlite()];
    databases.extend(postgres());
    databases
}

/// Runs `check` on a fresh database of every engine this run can reach; a failure
/// names the engine.
pub fn for_each_engine(check: impl Fn(&Database)) {
    for scratch in scratch_databases() {
        let engine = scratch.db.engine();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&scratch.db)));
        if let Err(panic) = outcome {
            eprintln!("the check failed on {engine}");
            std::panic::resume_unwind(panic);
        }
    }
}
