//! The engine a test hub runs on: SQLite by default; `TILL360_TEST_ENGINE=postgres` puts
//! it on a fresh PostgreSQL database (`t360_<random>` on the server `TILL360_TEST_POSTGRES`
//! names), dropped when the [`TestDatabase`] is.

use till360_hub::config::PostgresUrl;
use till360_hub::store::postgres::TemporaryDatabase;

/// A fresh database on `server`, made on a thread of its own: tests make sites inside
/// async tests, where the synchronous PostgreSQL client must not run.
fn create(server: &PostgresUrl) -> TemporaryDatabase {
    let server = server.clone();
    std::thread::spawn(move || {
        TemporaryDatabase::create(&server, "t360")
            .unwrap_or_else(|e| panic!("TILL360_TEST_POSTGRES={server}: {e}"))
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

impl Drop for TestDatabase {
    /// Dropped on a thread of its own, as it was made.
    fn drop(&mut self) {
        if let Some(database) = self.postgres.take() {
            let _ = std::thread::spawn(move || drop(database)).join();
        }
    }
}

/// The database of one test hub, alive as long as this value.
pub struct TestDatabase {
    postgres: Option<TemporaryDatabase>,
}

impl TestDatabase {
    /// For the engine `TILL360_TEST_ENGINE` chooses (`sqlite`, the default, or
    /// `postgres`). PostgreSQL chosen without a reachable server fails the test.
    pub fn for_test_engine() -> Self {
        let engine = std::env::var("TILL360_TEST_ENGINE").unwrap_or_default();
        match engine.trim() {
            "" | "sqlite" => Self { postgres: None },
            "postgres" | "postgresql" => {
                let server = std::env::var("TILL360_TEST_POSTGRES").unwrap_or_else(|_| {
                    panic!(
                        "TILL360_TEST_ENGINE=postgres needs TILL360_TEST_POSTGRES, e.g. \
                         postgres://postgres@127.0.0.1:5432/test"
                    )
                });
                let server = PostgresUrl::parse(server.trim())
                    .unwrap_or_else(|e| panic!("TILL360_TEST_POSTGRES: {e}"));
                Self {
                    postgres: Some(create(&server)),
                }
            }
            other => panic!("TILL360_TEST_ENGINE={other:?}: expected sqlite or postgres"),
        }
    }

    /// SQLite (`data_dir/hub.db`), whatever `TILL360_TEST_ENGINE` says: for tests of
    /// SQLite's own files.
    pub fn sqlite() -> Self {
        Self { postgres: None }
    }

    /// A fresh PostgreSQL database on the server `TILL360_TEST_POSTGRES` names, whatever
    /// `TILL360_TEST_ENGINE` says; `None` (said loudly) when the variable is not set.
    pub fn postgres_if_configured(test: &str) -> Option<Self> {
        let Ok(server) = std::env::var("TILL360_TEST_POSTGRES") else {
            eprintln!(
                "SKIPPED {test}: it needs a PostgreSQL server; set TILL360_TEST_POSTGRES, e.g. \
                 postgres://postgres@127.0.0.1:5432/test"
            );
            return None;
        };
        let server = PostgresUrl::parse(server.trim())
            .unwrap_or_else(|e| panic!("TILL360_TEST_POSTGRES: {e}"));
        Some(Self {
            postgres: Some(create(&server)),
        })
    }

    /// The hub's `[database] url`: `None` on SQLite (the default, `data_dir/hub.db`).
    pub fn url(&self) -> Option<String> {
        self.postgres
            .as_ref()
            .map(|database| database.url().connection_string())
    }

    /// The line to add to a test hub's `hub.toml` (none on SQLite): an inline table, so
    /// top-level keys a test appends later stay top-level.
    pub fn toml(&self) -> String {
        match self.url() {
            Some(url) => format!("database = {{ url = \"{url}\" }}\n"),
            None => String::new(),
        }
    }
}

/// A fresh database on the engine `TILL360_TEST_ENGINE` chooses, opened as a hub opens
/// it (schema applied), for tests that work on the store without a hub.
pub struct TestStore {
    pub db: till360_hub::store::Database,
    /// The SQLite file's folder (unused on PostgreSQL).
    pub dir: tempfile::TempDir,
    _database: TestDatabase,
}

impl TestStore {
    pub fn new() -> Self {
        let database = TestDatabase::for_test_engine();
        let dir = tempfile::tempdir().unwrap();
        let url = match database.url() {
            Some(url) => {
                till360_hub::config::DatabaseUrl::Postgres(PostgresUrl::parse(&url).unwrap())
            }
            None => till360_hub::config::DatabaseUrl::Sqlite(dir.path().join("hub.db")),
        };
        let db = blocking(|| {
            till360_hub::store::Database::open(
                &url,
                &till360_hub::store::DatabaseOptions::default(),
            )
            .unwrap()
        });
        Self {
            db,
            dir,
            _database: database,
        }
    }

    /// Empty again: every table of a PostgreSQL database truncated (schema and version
    /// kept), for tests that run many cases on one database; on SQLite a new file.
    pub fn reset(&mut self) {
        use till360_hub::store::transfer::{quoted, tables};
        if self.db.engine() == till360_hub::store::Engine::Sqlite {
            *self = Self::new();
            return;
        }
        blocking(|| {
            let conn = self.db.get().unwrap();
            let names: Vec<String> = tables(&*conn)
                .unwrap()
                .iter()
                .map(|table| quoted(&table.name))
                .collect();
            conn.batch(&format!("TRUNCATE {} RESTART IDENTITY", names.join(", ")))
                .unwrap();
        });
    }

    /// A store on a connection of this database (default settings, no master secret).
    pub fn store(&self) -> till360_hub::store::SqlStore {
        till360_hub::store::SqlStore::open(&self.db).unwrap()
    }
}

/// A store on a fresh database of the test engine, and that database (kept as long as the
/// store); derefs to the store.
pub struct StoreOnTestDatabase {
    pub store: till360_hub::store::SqlStore,
    pub database: TestStore,
}

impl StoreOnTestDatabase {
    pub fn new() -> Self {
        let database = TestStore::new();
        Self {
            store: database.store(),
            database,
        }
    }
}

impl std::ops::Deref for StoreOnTestDatabase {
    type Target = till360_hub::store::SqlStore;
    fn deref(&self) -> &Self::Target {
        &self.store
    }
}

impl std::ops::DerefMut for StoreOnTestDatabase {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.store
    }
}

/// Runs `f` on a thread of its own and returns its result: async tests call the store,
/// and the synchronous PostgreSQL client must not run on a runtime thread.
pub fn blocking<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|scope| {
        scope
            .spawn(f)
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

#[test]
fn a_test_hubs_database_opens_on_the_chosen_engine() {
    let database = TestDatabase::for_test_engine();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "data_dir = \"data\"\nlisten = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n\
         ca = \"pki/ca.pem\"\ncert = \"pki/hub.pem\"\nkey = \"pki/hub.key\"\n{}",
        database.toml()
    );
    let config =
        till360_hub::config::HubConfig::from_toml_str(&text, dir.path().join("hub.toml")).unwrap();
    let db = till360_hub::store::Database::open(
        &config.database,
        &till360_hub::store::DatabaseOptions::default(),
    )
    .unwrap();
    let expected = match database.url() {
        Some(_) => till360_hub::store::Engine::Postgres,
        None => till360_hub::store::Engine::Sqlite,
    };
    assert_eq!(db.engine(), expected);
}
