//! Databases for tests: one source, every engine. `for_each_engine(|db| ...)` runs a
//! check on a fresh SQLite file and, when `TILL360_TEST_POSTGRES` names a server, on a
//! fresh PostgreSQL database too (the PostgreSQL backend adds itself here).

use super::{Database, DatabaseOptions};
use crate::config::DatabaseUrl;

/// A fresh database and what keeps it alive (a temporary folder, a database to drop).
pub struct Scratch {
    pub db: Database,
    _keep: Box<dyn std::any::Any>,
}

/// A fresh SQLite database in a temporary folder, schema applied.
pub fn sqlite() -> Scratch {
    let dir = tempfile::tempdir().expect("temporary folder");
    let url = DatabaseUrl::Sqlite(dir.path().join("hub.db"));
    let db = Database::open(&url, &DatabaseOptions::default()).expect("open scratch SQLite");
    Scratch {
        db,
        _keep: Box::new(dir),
    }
}

/// Fresh databases, one per engine this run can reach.
pub fn scratch_databases() -> Vec<Scratch> {
    vec![sqlite()]
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
