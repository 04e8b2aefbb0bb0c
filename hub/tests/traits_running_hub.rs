//! Traits and segments in a running hub: receipts arrive over QUIC, the hub recomputes
//! (as its schedule does), and the profile and `GET /api/v1/segments` show the result.

use crate::common;

use common::{http_get, send_all, Site};
use till360_shared::{AgentId, CardNumber, Event, Timestamp};

const DAY_MS: i64 = 86_400_000;

fn card(body: &str) -> CardNumber {
    CardNumber::parse(&till360_shared::card::with_check_digit(body).unwrap()).unwrap()
}

fn receipt(agent: &AgentId, seq: u64, unix_ms: i64, card: &CardNumber, cents: i64) -> Event {
    let at = Timestamp::from_unix_ms(unix_ms, 60);
    common::one_line_receipt(agent, seq, Some(card), at, ("Coffee", cents))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recompute_fills_profile_traits_and_segment_sizes() {
    let site = Site::new();
    let config = site.dir.path().join("hub.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(
        "[[segment]]\nid = \"regulars\"\nname = \"Regulars\"\nwhere = [\"frequency >= 2\"]\n",
    );
    std::fs::write(&config, text).unwrap();
    let hub = site.start().await;

    // A regular (four visits on different days) and a one-off customer, in the past.
    let regular = card("240100000101");
    let once = card("240100000102");
    let agent = AgentId::new("S001", "T01");
    let t0 = chrono::Utc::now().timestamp_millis() - 60 * DAY_MS;
    let events = vec![
        receipt(&agent, 1, t0, &regular, 1250),
        receipt(&agent, 2, t0 + DAY_MS, &once, 990),
        receipt(&agent, 3, t0 + 10 * DAY_MS, &regular, 2300),
        receipt(&agent, 4, t0 + 20 * DAY_MS, &regular, 1800),
        receipt(&agent, 5, t0 + 30 * DAY_MS, &regular, 2100),
    ];
    send_all(&site, hub.quic_addr(), &agent, events).await;

    let summary = hub.recompute_traits().await.unwrap();
    assert_eq!(summary.profiles, 2);
    assert_eq!(summary.segments, vec![("regulars".to_string(), 1)]);

    let http = hub.http_addr();
    let (status, p) = http_get(http, &format!("/api/v1/profiles/by-card/{regular}")).await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["traits"]["frequency"], 3, "{p}");
    assert_eq!(p["segments"], serde_json::json!(["regulars"]), "{p}");
    let (_, once_p) = http_get(http, &format!("/api/v1/profiles/by-card/{once}")).await;
    assert_eq!(once_p["traits"]["frequency"], 0, "{once_p}");
    assert_eq!(once_p["segments"], serde_json::json!([]), "{once_p}");

    let (status, segments) = http_get(http, "/api/v1/segments").await;
    assert_eq!(status, 200);
    assert_eq!(
        segments,
        serde_json::json!([{"id": "regulars", "name": "Regulars", "size": 1,
                            "computed_at": summary.computed_at.to_rfc3339()}])
    );
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_segment_stops_the_hub_at_start_naming_file_and_condition() {
    let site = Site::new();
    let config = site.dir.path().join("hub.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("[[segment]]\nid = \"vip\"\nwhere = [\"frequency >> 3\"]\n");
    std::fs::write(&config, text).unwrap();
    let err = match till360_hub::server::start(site.config()).await {
        Ok(_) => panic!("a hub with a bad segment started"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("hub.toml") && err.contains("frequency >> 3"),
        "{err}"
    );
}

fn add_segment(site: &Site, toml: &str) {
    let config = site.dir.path().join("hub.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(toml);
    std::fs::write(&config, text).unwrap();
}

/// `GET /api/v1/segments`'s entry of `id`: (size, computed_at).
async fn segment(http: std::net::SocketAddr, id: &str) -> (u64, String) {
    let (status, list) = http_get(http, "/api/v1/segments").await;
    assert_eq!(status, 200, "{list}");
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("{id} in {list}"));
    (
        entry["size"].as_u64().unwrap(),
        entry["computed_at"]
            .as_str()
            .unwrap_or_else(|| panic!("computed_at in {entry}"))
            .to_string(),
    )
}

fn instant(rfc3339: &str) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(rfc3339).unwrap()
}

/// An import is its own process against the same database: the running hub notices it
/// (the import bumps a change counter the hub polls) and recomputes the segments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_into_a_running_hub_recomputes_the_segments() {
    let site = Site::new();
    add_segment(
        &site,
        "[[segment]]\nid = \"mailable\"\nwhere = [\"consent.email = true\"]\n",
    );
    let hub = site.start().await;
    let http = hub.http_addr();
    let (size, computed_at) = segment(http, "mailable").await;
    assert_eq!(size, 0);

    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/customers.csv");
    let config = site.dir.path().join("hub.toml");
    let args = [
        "till360-hub",
        "import",
        "customers",
        file.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]
    .map(std::ffi::OsString::from);
    // As the command runs: off the async runtime (the PostgreSQL client blocks).
    let imported = tokio::task::spawn_blocking(move || till360_hub::cli::main_with_args(args))
        .await
        .unwrap();
    assert_eq!(imported, std::process::ExitCode::SUCCESS);
    // Anna and Sofie gave e-mail consent.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let (size, later) = loop {
        let (size, at) = segment(http, "mailable").await;
        if size > 0 {
            break (size, at);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "segments not recomputed after the import"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(size, 2);
    assert!(
        instant(&later) >= instant(&computed_at),
        "{later} vs {computed_at}"
    );
    hub.shutdown().await;
}

/// On demand: `POST /api/v1/traits/recompute` and `till360-hub traits recompute`, each
/// answering with what it computed; the segment list says when.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recompute_on_demand_through_the_api_and_the_command_line() {
    let site = Site::new();
    add_segment(
        &site,
        "[[segment]]\nid = \"regulars\"\nwhere = [\"frequency >= 2\"]\n",
    );
    let hub = site.start().await;
    let http = hub.http_addr();
    let regular = card("240100000201");
    let agent = AgentId::new("S001", "T01");
    let t0 = chrono::Utc::now().timestamp_millis() - 60 * DAY_MS;
    send_all(
        &site,
        hub.quic_addr(),
        &agent,
        (0..4)
            .map(|i| receipt(&agent, i + 1, t0 + i as i64 * 5 * DAY_MS, &regular, 900))
            .collect(),
    )
    .await;
    assert_eq!(segment(http, "regulars").await.0, 0, "not yet recomputed");

    let (status, body) = common::http_post(http, "/api/v1/traits/recompute").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["profiles"], 1, "{body}");
    assert_eq!(
        body["segments"],
        serde_json::json!([{"id": "regulars", "size": 1}])
    );
    let (size, at) = segment(http, "regulars").await;
    assert_eq!(size, 1);
    assert_eq!(body["computed_at"], at.as_str());

    let config = site.dir.path().join("hub.toml");
    let args = [
        "till360-hub",
        "traits",
        "recompute",
        "--config",
        config.to_str().unwrap(),
    ]
    .map(std::ffi::OsString::from);
    // As the command runs: off the async runtime (the PostgreSQL client blocks).
    let ran = tokio::task::spawn_blocking(move || till360_hub::cli::main_with_args(args))
        .await
        .unwrap();
    assert_eq!(ran, std::process::ExitCode::SUCCESS);
    let (size, again) = segment(http, "regulars").await;
    assert_eq!(size, 1);
    assert!(instant(&again) >= instant(&at), "{again} vs {at}");
    hub.shutdown().await;
}
