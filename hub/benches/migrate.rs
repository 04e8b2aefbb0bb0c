//! `till360-hub migrate` copy rate: a SQLite hub holding 100,000 synthetic receipts of 20
//! tills copied into a fresh PostgreSQL database (binary COPY), then checked (row counts
//! and a checksum per profile), with the rows/s of each table.
//!
//! `cargo bench -p till360-hub --bench migrate`; the server is `TILL360_TEST_POSTGRES`
//! (default `postgres://postgres@127.0.0.1:5432/test`); a database is created and dropped.

use std::time::Instant;

use till360_hub::config::PostgresUrl;
use till360_hub::migrate_command::migrate;
use till360_hub::store::postgres::TemporaryDatabase;
use till360_hub::store::transfer::Silent;
use till360_hub::store::{Database, DatabaseOptions, IngestRequest, SqlStore, Store};
use till360_shared::{AgentId, Timestamp};

fn main() {
    let server = std::env::var("TILL360_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let server = PostgresUrl::parse(server.trim()).expect("a postgres:// URL");
    let dir = tempfile::tempdir().expect("tempdir");
    till360_hub::pki::init_ca(
        &dir.path().join("pki"),
        &["localhost".to_string()],
        &["127.0.0.1".parse().unwrap()],
        false,
    )
    .expect("pki");
    let config_path = dir.path().join("hub.toml");
    std::fs::write(
        &config_path,
        "data_dir = \"data\"\nlisten = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n\
         ca = \"pki/ca.pem\"\ncert = \"pki/hub.pem\"\nkey = \"pki/hub.key\"\n",
    )
    .expect("hub.toml");
    let config = till360_hub::config::HubConfig::load(&config_path).expect("config");
    std::fs::create_dir_all(&config.data_dir).expect("data_dir");
    let db = Database::open(&config.database, &DatabaseOptions::default()).expect("SQLite");
    let mut store = SqlStore::new(db.get().expect("connection"));
    let mut generator = till360_hub::synthetic::Generator::new(11, 20_000, 70);
    let now = Timestamp::from_unix_ms(1_767_225_600_000, 60);
    for till in 0..20 {
        let agent = AgentId::new(format!("S{:03}", till / 2), format!("T{:02}", till % 2));
        store.hello(&agent, now).expect("hello");
        for first in (1..=5_000u64).step_by(500) {
            let events = generator.events(&agent, first, 500);
            let outcome = store
                .ingest(
                    &[IngestRequest {
                        agent: &agent,
                        events: &events,
                    }],
                    now,
                )
                .expect("ingest");
            assert!(outcome[0].is_ok(), "{outcome:?}");
        }
    }
    drop(store);
    drop(db);
    let target = TemporaryDatabase::create(&server, "t360bench").expect("scratch database");
    let started = Instant::now();
    let (_, report) =
        migrate(&config_path, &target.url().connection_string(), &mut Silent).expect("migrate");
    let total = started.elapsed();
    assert!(report.differences.is_empty(), "{:?}", report.differences);
    println!("migrate: 100,000 receipts of 20 tills, SQLite -> PostgreSQL (binary COPY)");
    for table in &report.tables {
        if table.rows > 0 {
            println!(
                "  {:<24} {:>8} rows {:>9.0} rows/s",
                table.table,
                table.rows,
                table.rows as f64 / table.elapsed.as_secs_f64().max(1e-3)
            );
        }
    }
    println!(
        "  copy: {} rows in {:.2} s = {:.0} rows/s; with the check: {:.2} s, {} profiles",
        report.rows(),
        report.copy_time().as_secs_f64(),
        report.rows() as f64 / report.copy_time().as_secs_f64(),
        total.as_secs_f64(),
        report.profiles_checked
    );
}
