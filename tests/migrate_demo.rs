//! `till360-hub migrate` on the demo's data: `till360 demo --exit` builds its back office
//! (CRM, catalogue, web orders), plays a morning of receipts through two tills and
//! redeems coupons in the afternoon, all into a SQLite hub; the hub is migrated to a fresh
//! PostgreSQL database and started on it, and it serves the same profiles, campaign KPIs,
//! coupon report, tills and coupon verdicts as the SQLite hub did. Needs
//! `TILL360_TEST_POSTGRES` (skipped loudly without it; a server that is gone fails it).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use till360::http_client::http_get;
use till360_agent::escpos::{CodePage, EscPosParser, PrintEvent};
use till360_hub::config::{HubConfig, PostgresUrl};
use till360_hub::store::postgres::TemporaryDatabase;
use till360_hub::store::transfer::Silent;
use till360_shared::coupon;
use till360_shared::wire::CouponVerdict;

use crate::harness::DEADLINE;

/// What one hub serves, as its API and its coupon checks answer.
#[derive(Debug, PartialEq)]
struct Served {
    profiles: Value,
    campaigns: Value,
    kpis: Vec<Value>,
    coupon_stores: Value,
    agents: Value,
    segments: Value,
    verdicts: Vec<(String, CouponVerdict)>,
}

fn get(http: SocketAddr, path: &str) -> Value {
    let response = http_get(http, path, Duration::from_secs(30)).expect(path);
    assert_eq!(response.status, 200, "{path}: {}", response.body);
    let mut json = response.json().expect(path);
    strip_run_times(&mut json);
    json
}

/// Drops what each hub's own start-up traits run stamps (when it computed): the rest of
/// the traits is compared.
fn strip_run_times(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|key, _| key != "computed_at" && key != "as_of");
            map.values_mut().for_each(strip_run_times);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_run_times),
        _ => {}
    }
}

/// The coupon codes printed in `dir`'s printer streams (the human-readable line of each
/// coupon block), as the demo wrote them.
fn printed_codes(dir: &Path) -> Vec<String> {
    let mut codes = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.starts_with("printer-") && name.ends_with(".bin")) {
            continue;
        }
        let mut parser = EscPosParser::new(CodePage::Cp858);
        parser.feed(&std::fs::read(&path).unwrap());
        while let Some(event) = parser.poll() {
            if let PrintEvent::Line(line) = event {
                let digits: String = line.chars().filter(|c| !c.is_whitespace()).collect();
                if digits.len() == coupon::CODE_LEN && coupon::parse(&digits).is_ok() {
                    codes.push(digits);
                }
            }
        }
    }
    codes.sort();
    codes
}

/// Starts the hub of `config`, reads what it serves and stops it cleanly.
fn serve(config: &Path, codes: &[String]) -> Served {
    let config = HubConfig::load(config).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let hub = runtime
        .block_on(till360_hub::server::start(config.clone()))
        .expect("the hub starts");
    // Its start-up traits run, finished (so segments are in).
    runtime.block_on(hub.recompute_traits()).unwrap();
    let http = hub.http_addr();
    let campaigns = get(http, "/api/v1/campaigns");
    let kpis = campaigns
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let id = c["id"].as_str().unwrap();
            get(http, &format!("/api/v1/campaigns/{id}/kpis"))
        })
        .collect();
    let database = till360_hub::server::open_database(&config).unwrap();
    let master = till360_hub::campaigns::MasterKey::read(&config.data_dir)
        .unwrap()
        .expect("the hub's master secret");
    let today = chrono::Local::now().date_naive();
    let verdicts = codes
        .iter()
        .map(|code| {
            let conn = database.get().unwrap();
            let verdict = till360_hub::store::coupon_checks::coupon_verdict(
                &*conn,
                master.as_bytes(),
                code,
                today,
            )
            .unwrap();
            (code.clone(), verdict)
        })
        .collect();
    let served = Served {
        profiles: get(http, "/api/v1/profiles?limit=1000"),
        campaigns,
        kpis,
        coupon_stores: get(http, "/api/v1/coupons/stores"),
        agents: get(http, "/api/v1/agents"),
        segments: get(http, "/api/v1/segments"),
        verdicts,
    };
    drop(database);
    runtime.block_on(hub.shutdown());
    served
}

/// `config`'s text with its addresses on port 0 (the demo's ports may be taken by now)
/// and `[database] url` replaced by `url` if given.
fn rewrite(config: &str, url: Option<&str>) -> String {
    config
        .lines()
        .map(|line| {
            if line.starts_with("listen = ") {
                "listen = \"127.0.0.1:0\"".to_string()
            } else if line.starts_with("http = ") {
                "http = \"127.0.0.1:0\"".to_string()
            } else if let (Some(url), true) = (url, line.starts_with("url = ")) {
                format!("url = \"{url}\"")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_demos_hub_migrated_to_postgresql_serves_the_same() {
    let Ok(server) = std::env::var("TILL360_TEST_POSTGRES") else {
        eprintln!(
            "*** SKIPPED the_demos_hub_migrated_to_postgresql_serves_the_same: it needs a \
             PostgreSQL server; set TILL360_TEST_POSTGRES, e.g. \
             postgres://postgres@127.0.0.1:5432/test ***"
        );
        return;
    };
    let server = PostgresUrl::parse(server.trim()).expect("TILL360_TEST_POSTGRES");
    let target = TemporaryDatabase::create(&server, "t360migrate")
        .unwrap_or_else(|e| panic!("TILL360_TEST_POSTGRES={server}: {e}"));

    // The demo, as a user runs it: back office, a morning, coupons redeemed.
    let dir = tempfile::Builder::new()
        .prefix("till360-migrate-demo-")
        .tempdir()
        .unwrap();
    let mut demo = std::process::Command::new(env!("CARGO_BIN_EXE_till360"))
        .args([
            "demo",
            "--receipts",
            "80",
            "--seed",
            "11",
            "--exit",
            "--dir",
        ])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the demo");
    let deadline = Instant::now() + 3 * DEADLINE;
    let status = loop {
        if let Some(status) = demo.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = demo.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = demo.wait_with_output().unwrap();
    assert!(
        status.is_some_and(|s| s.success()),
        "the demo failed ({status:?}):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let text = std::fs::read_to_string(dir.path().join("hub.toml")).unwrap();
    assert!(text.contains("url = \"sqlite://"), "{text}");
    let sqlite_config = dir.path().join("hub-sqlite.toml");
    std::fs::write(&sqlite_config, rewrite(&text, None)).unwrap();
    let url = target.url().connection_string();
    let postgres_config = dir.path().join("hub-postgres.toml");
    std::fs::write(&postgres_config, rewrite(&text, Some(&url))).unwrap();

    let codes = printed_codes(dir.path());
    assert!(!codes.is_empty(), "the demo printed coupons");
    let on_sqlite = serve(&sqlite_config, &codes);
    assert!(
        on_sqlite.profiles.as_array().unwrap().len() > 10,
        "{}",
        on_sqlite.profiles
    );
    assert!(
        on_sqlite
            .verdicts
            .iter()
            .any(|(_, v)| *v == CouponVerdict::AlreadyRedeemed),
        "the afternoon redeemed some: {:?}",
        on_sqlite.verdicts
    );
    assert!(on_sqlite
        .kpis
        .iter()
        .any(|k| k["issued"].as_u64() > Some(0)));

    let (_, report) = till360_hub::migrate_command::migrate(&sqlite_config, &url, &mut Silent)
        .unwrap_or_else(|e| panic!("migrate: {e}"));
    assert!(report.differences.is_empty(), "{:?}", report.differences);
    assert!(report.profiles_checked > 10, "{}", report.profiles_checked);

    let on_postgres = serve(&postgres_config, &codes);
    assert_eq!(on_postgres.profiles, on_sqlite.profiles, "profiles");
    assert_eq!(on_postgres.campaigns, on_sqlite.campaigns, "campaigns");
    assert_eq!(on_postgres.kpis, on_sqlite.kpis, "campaign KPIs");
    assert_eq!(on_postgres.coupon_stores, on_sqlite.coupon_stores);
    assert_eq!(on_postgres.agents, on_sqlite.agents, "tills");
    assert_eq!(on_postgres.segments, on_sqlite.segments, "segments");
    assert_eq!(on_postgres.verdicts, on_sqlite.verdicts, "coupon verdicts");
}
