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
        serde_json::json!([{"id": "regulars", "name": "Regulars", "size": 1}])
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
