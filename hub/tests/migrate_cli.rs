//! `till360-hub migrate --config hub.toml --to postgres://…`: a SQLite hub's data copied
//! into PostgreSQL with nothing lost, and the refusals (a non-empty target, a SQLite
//! target, a PostgreSQL source, an unreachable target: never showing the password).
//! The PostgreSQL runs need `TILL360_TEST_POSTGRES`; without it they say they were skipped.

use std::path::Path;
use std::process::ExitCode;

use till360_hub::cli::main_with_args;
use till360_hub::config::{DatabaseUrl, HubConfig, PostgresUrl};
use till360_hub::migrate_command::migrate;
use till360_hub::store::postgres::TemporaryDatabase;
use till360_hub::store::transfer::Silent;
use till360_hub::store::{
    ConsentChange, Database, DatabaseOptions, IngestRequest, SqlStore, Store,
};
use till360_shared::event::CouponIssue;
use till360_shared::{AgentId, Event, EventKind, Timestamp};

use crate::common::Site;

fn run(args: &[&str]) -> ExitCode {
    main_with_args(
        std::iter::once("till360-hub")
            .chain(args.iter().copied())
            .map(Into::into),
    )
}

fn postgres_server() -> Option<PostgresUrl> {
    match std::env::var("TILL360_TEST_POSTGRES") {
        Ok(url) if !url.trim().is_empty() => Some(PostgresUrl::parse(url.trim()).unwrap()),
        _ => {
            eprintln!(
                "*** migrate to PostgreSQL SKIPPED: TILL360_TEST_POSTGRES is not set \
                 (e.g. postgres://postgres@127.0.0.1:5432/test) ***"
            );
            None
        }
    }
}

/// A hub folder with a SQLite database holding receipts and coupons of two tills,
/// consents, an erasure, digest feeds, traits and the master secret.
fn sqlite_hub() -> (Site, HubConfig) {
    let site = Site::on_sqlite_for_migrate();
    let config = site.config();
    std::fs::create_dir_all(&config.data_dir).unwrap();
    let master = till360_hub::campaigns::MasterKey::load_or_create(&config.data_dir).unwrap();
    let db = Database::open(&config.database, &DatabaseOptions::default()).unwrap();
    let mut store = SqlStore::new(db.get().unwrap());
    store.set_coupon_master(master.as_bytes()).unwrap();
    let mut generator = till360_hub::synthetic::Generator::new(7, 40, 70);
    let now = Timestamp::from_unix_ms(1_767_225_600_000, 60);
    for (store_id, count) in [("S001", 300), ("S002", 120)] {
        let agent = AgentId::new(store_id, "T01");
        store.hello(&agent, now).unwrap();
        let events = generator.events(&agent, 1, count);
        for batch in events.chunks(50) {
            let outcome = store
                .ingest(
                    &[IngestRequest {
                        agent: &agent,
                        events: batch,
                    }],
                    now,
                )
                .unwrap();
            assert!(outcome[0].is_ok(), "{outcome:?}");
        }
    }
    // Coupons decided at S001's till for carded customers (control-group would-haves).
    let agent = AgentId::new("S001", "T01");
    let coupons: Vec<Event> = (0..5u64)
        .map(|i| Event {
            agent: agent.clone(),
            seq: 301 + i,
            recorded_at: now,
            kind: EventKind::CouponIssued(CouponIssue {
                campaign_id: "big-basket".into(),
                code: None,
                card: Some(generator.cards()[i as usize].clone()),
                customer_key: None,
                expires: chrono::NaiveDate::from_ymd_opt(2026, 12, 31).unwrap(),
                receipt_seq: 300,
            }),
        })
        .collect();
    let outcome = store
        .ingest(
            &[IngestRequest {
                agent: &agent,
                events: &coupons,
            }],
            now,
        )
        .unwrap();
    assert!(outcome[0].is_ok(), "{outcome:?}");
    let conn = db.get().unwrap();
    let profiles = till360_hub::store::profiles::profiles(&*conn, 1000).unwrap();
    assert!(profiles.len() > 10, "{}", profiles.len());
    till360_hub::store::privacy::set_consents(
        &*conn,
        &profiles[0].profile_id,
        &[ConsentChange {
            purpose: "email".into(),
            granted: true,
        }],
        "api",
        now,
    )
    .unwrap()
    .unwrap();
    let suppression = till360_hub::store::erasures::Suppression::from_master(master.as_bytes());
    till360_hub::store::privacy::erase_profile(&*conn, &suppression, &profiles[1].profile_id, now)
        .unwrap()
        .unwrap();
    // The tills' digest feeds, and traits and segments.
    till360_hub::store::digests::refresh_all(&*conn, master.as_bytes(), 12, now).unwrap();
    till360_hub::jobs::recompute(&*conn, &config, now).unwrap();
    (site, config)
}

fn config_path(site: &Site) -> String {
    site.dir
        .path()
        .join("hub.toml")
        .to_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_sqlite_target_is_refused() {
    let (site, _) = sqlite_hub();
    let err = migrate(
        Path::new(&config_path(&site)),
        "sqlite:///tmp/elsewhere.db",
        &mut Silent,
    )
    .unwrap_err();
    assert!(err.contains("the target is SQLite"), "{err}");
    assert_eq!(
        run(&[
            "migrate",
            "--config",
            &config_path(&site),
            "--to",
            "sqlite:///tmp/elsewhere.db"
        ]),
        ExitCode::FAILURE
    );
}

#[test]
fn a_postgresql_source_is_refused_without_showing_its_password() {
    let site = Site::on_sqlite_for_migrate();
    let path = site.dir.path().join("hub.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("\n[database]\nurl = \"postgres://hub:s3cret@127.0.0.1:1/till360\"\n");
    std::fs::write(&path, text).unwrap();
    let err = migrate(&path, "postgres://postgres@127.0.0.1:1/other", &mut Silent).unwrap_err();
    assert!(err.contains("is already PostgreSQL"), "{err}");
    assert!(
        err.contains("postgres://hub:***@127.0.0.1:1/till360"),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
}

#[test]
fn an_unreachable_target_is_refused_naming_it_without_its_password() {
    let (site, _) = sqlite_hub();
    // Port 1 on loopback: nothing listens there.
    let err = migrate(
        Path::new(&config_path(&site)),
        "postgres://hub:s3cret@127.0.0.1:1/till360",
        &mut Silent,
    )
    .unwrap_err();
    assert!(
        err.contains("cannot connect to postgres://hub:***@127.0.0.1:1/till360"),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
}

#[test]
fn a_running_hub_is_refused() {
    let (site, config) = sqlite_hub();
    // What a running hub holds on its data folder.
    let _running = till360_hub::instance::HubLock::acquire(&config.data_dir).unwrap();
    let err = migrate(
        Path::new(&config_path(&site)),
        "postgres://postgres@127.0.0.1:1/other",
        &mut Silent,
    )
    .unwrap_err();
    assert!(err.contains("another hub is running"), "{err}");
}

#[test]
fn a_non_empty_target_is_refused_naming_a_table_and_its_rows() {
    let Some(server) = postgres_server() else {
        return;
    };
    let (site, _) = sqlite_hub();
    let target = TemporaryDatabase::create(&server, "t360").unwrap();
    let db = Database::open(
        &DatabaseUrl::Postgres(target.url().clone()),
        &DatabaseOptions::default(),
    )
    .unwrap();
    db.get()
        .unwrap()
        .execute(
            "INSERT INTO products (sku, description, category, sensitive) VALUES (?1, ?2, ?3, ?4)",
            till360_hub::sql_params!["123", "Milk", "dairy", 0i64],
        )
        .unwrap();
    let err = migrate(
        Path::new(&config_path(&site)),
        &target.url().connection_string(),
        &mut Silent,
    )
    .unwrap_err();
    assert!(
        err.contains("not empty: table products holds 1 row(s)"),
        "{err}"
    );
    // Nothing was written: still the one row.
    let conn = db.get().unwrap();
    let rows: i64 = till360_hub::store::sql::SqlExt::query_value(
        &*conn,
        "SELECT COUNT(*) FROM transactions",
        till360_hub::sql_params![],
    )
    .unwrap()
    .unwrap();
    assert_eq!(rows, 0);
}

#[test]
fn a_hubs_data_moves_to_postgresql_with_nothing_lost() {
    let Some(server) = postgres_server() else {
        return;
    };
    let (site, config) = sqlite_hub();
    let path = config_path(&site);
    // CRM customers, products and online orders, as the import commands bring them.
    for (kind, file) in [
        ("products", "products.csv"),
        ("customers", "customers.csv"),
        ("orders", "orders.jsonl"),
    ] {
        let file = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(file);
        assert_eq!(
            run(&["import", kind, file.to_str().unwrap(), "--config", &path]),
            ExitCode::SUCCESS,
            "import {kind}"
        );
    }
    let target = TemporaryDatabase::create(&server, "t360").unwrap();
    let to = target.url().connection_string();
    assert_eq!(
        run(&["migrate", "--config", &path, "--to", &to]),
        ExitCode::SUCCESS
    );

    // The store reads the same profiles and high-water marks from both databases.
    let read = |url: &DatabaseUrl| {
        let db = Database::open(url, &DatabaseOptions::default()).unwrap();
        let conn = db.get().unwrap();
        let profiles = till360_hub::store::profiles::profiles(&*conn, 10_000).unwrap();
        let agents: Vec<(String, String, u64)> = SqlStore::new(db.get().unwrap())
            .agents()
            .unwrap()
            .into_iter()
            .map(|a| (a.store, a.till, a.last_seq))
            .collect();
        (profiles, agents)
    };
    let sqlite_side = read(&config.database);
    let postgres_side = read(&DatabaseUrl::Postgres(target.url().clone()));
    assert!(sqlite_side.0.len() > 10);
    assert_eq!(postgres_side.0, sqlite_side.0);
    assert_eq!(
        sqlite_side.1,
        vec![
            ("S001".to_string(), "T01".to_string(), 305),
            ("S002".to_string(), "T01".to_string(), 120)
        ]
    );
    assert_eq!(postgres_side.1, sqlite_side.1);

    // Migrating again into the now full database is refused.
    assert_eq!(
        run(&["migrate", "--config", &path, "--to", &to]),
        ExitCode::FAILURE
    );

    // The hub runs on the new URL (same data_dir: its secrets match the copied ones) and
    // serves the same profiles; the till's high-water mark is where SQLite left it.
    let toml = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{toml}\n[database]\nurl = \"{to}\"\n")).unwrap();
    let config = HubConfig::load(&path).unwrap();
    assert!(matches!(config.database, DatabaseUrl::Postgres(_)));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let hub = till360_hub::server::start(config).await.unwrap();
        let (status, agents) = crate::common::http_get(hub.http_addr(), "/api/v1/agents").await;
        assert_eq!(status, 200, "{agents}");
        let seqs: Vec<(String, u64)> = agents
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["store"].as_str().unwrap().to_string(),
                    a["last_seq"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(seqs, vec![("S001".into(), 305), ("S002".into(), 120)]);
        let some = &sqlite_side.0[0];
        let (status, profile) = crate::common::http_get(
            hub.http_addr(),
            &format!("/api/v1/profiles/{}", some.profile_id),
        )
        .await;
        assert_eq!(status, 200, "{profile}");
        assert_eq!(profile["profile_id"], some.profile_id.as_str());
        hub.shutdown().await;
    });
}
