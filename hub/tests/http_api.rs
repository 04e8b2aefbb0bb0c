//! The HTTP API after real ingest over QUIC.

use crate::common;

use common::{http_get, send_all, Site};
use till360_shared::{AgentId, CardNumber, Event, EventKind, Timestamp};

fn card(body: &str) -> CardNumber {
    CardNumber::parse(&till360_shared::card::with_check_digit(body).unwrap()).unwrap()
}

fn receipt(
    agent: &AgentId,
    seq: u64,
    unix_ms: i64,
    offset_min: i16,
    card: Option<CardNumber>,
    cents: i64,
) -> Event {
    let at = Timestamp::from_unix_ms(unix_ms, offset_min);
    common::one_line_receipt(agent, seq, card.as_ref(), at, ("Coffee", cents))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_agents_and_errors() {
    let site = Site::new();
    let hub = site.start().await;
    let http = hub.http_addr();
    let alice = card("240100000001");
    let bob = card("240100000002");
    let s1 = AgentId::new("S001", "T01");
    let s2 = AgentId::new("S002", "T01");
    // 2025-11-25T08:40:00Z seen at +01:00 in S001, later at +00:00 in S002.
    let t0 = 1_764_060_000_000;
    send_all(
        &site,
        hub.quic_addr(),
        &s1,
        vec![
            Event {
                agent: s1.clone(),
                seq: 1,
                recorded_at: Timestamp::from_unix_ms(t0 - 60_000, 60),
                kind: EventKind::CardScanned {
                    card: alice.clone(),
                },
            },
            receipt(&s1, 2, t0, 60, Some(alice.clone()), 1299),
            receipt(&s1, 3, t0 + 1000, 60, None, 500),
            Event {
                agent: s1.clone(),
                seq: 4,
                recorded_at: Timestamp::from_unix_ms(t0 + 2000, 60),
                kind: EventKind::CardScanned { card: bob.clone() },
            },
        ],
    )
    .await;
    send_all(
        &site,
        hub.quic_addr(),
        &s2,
        vec![receipt(&s2, 1, t0 + 3_600_000, 0, Some(alice.clone()), 701)],
    )
    .await;

    let (status, health) = http_get(http, "/api/v1/health").await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));

    let (status, p) = http_get(http, &format!("/api/v1/profiles/by-card/{alice}")).await;
    assert_eq!(status, 200, "{p}");
    let id = p["profile_id"].as_str().unwrap().to_string();
    assert!(id.starts_with("p-") && id.len() == 18, "{id}");
    assert_eq!(p["cards"], serde_json::json!([alice.as_str()]));
    assert!(p["customer_no"].is_null());
    assert_eq!(p["consents"], serde_json::json!({}));
    assert_eq!(p["segments"], serde_json::json!([]));
    assert_eq!(p["traits"], serde_json::json!({}));
    assert_eq!(
        p["coupons"],
        serde_json::json!({"issued": 0, "redeemed": 0})
    );
    let tx = &p["transactions"];
    assert_eq!(tx["count"], 2);
    assert_eq!(tx["total_cents"], 2000);
    assert_eq!(tx["currency"], "EUR");
    assert_eq!(tx["first_at"], "2025-11-25T09:40:00.000+01:00");
    assert_eq!(tx["last_at"], "2025-11-25T09:40:00.000+00:00");
    assert_eq!(tx["stores"], serde_json::json!(["S001", "S002"]));

    let (status, same) = http_get(http, &format!("/api/v1/profiles/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(same, p);

    // Bob only scanned his card: a profile without transactions.
    let (status, b) = http_get(http, &format!("/api/v1/profiles/by-card/{bob}")).await;
    assert_eq!(status, 200);
    assert_eq!(b["transactions"]["count"], 0);
    assert!(b["transactions"]["first_at"].is_null());

    let (status, list) = http_get(http, "/api/v1/profiles?limit=10").await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["profile_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], b["profile_id"].as_str().unwrap(), "newest first");
    let (_, one) = http_get(http, "/api/v1/profiles?limit=1").await;
    assert_eq!(one.as_array().unwrap().len(), 1);

    let (status, agents) = http_get(http, "/api/v1/agents").await;
    assert_eq!(status, 200);
    let agents = agents.as_array().unwrap();
    assert_eq!(agents.len(), 2);
    assert_eq!(
        (
            agents[0]["store"].as_str(),
            agents[0]["till"].as_str(),
            agents[0]["last_seq"].as_u64()
        ),
        (Some("S001"), Some("T01"), Some(4))
    );
    assert_eq!(agents[1]["last_seq"], 1);
    assert!(agents[0]["last_seen"].as_str().unwrap().ends_with("+00:00"));

    // Unknown card, unknown id, malformed card, malformed query.
    let unknown = card("240100000099");
    let (status, err) = http_get(http, &format!("/api/v1/profiles/by-card/{unknown}")).await;
    assert_eq!(status, 404);
    assert!(err["error"].as_str().unwrap().contains(unknown.as_str()));
    let (status, err) = http_get(http, "/api/v1/profiles/p-0000000000000000").await;
    assert_eq!(status, 404);
    assert!(err["error"].is_string());
    let mut bad = alice.as_str().to_string();
    let last = bad.pop().unwrap();
    bad.push(if last == '9' {
        '0'
    } else {
        (last as u8 + 1) as char
    });
    let (status, err) = http_get(http, &format!("/api/v1/profiles/by-card/{bad}")).await;
    assert_eq!(status, 400);
    assert!(
        err["error"].as_str().unwrap().contains("check digit"),
        "{err}"
    );
    let (status, err) = http_get(http, "/api/v1/profiles?limit=many").await;
    assert_eq!(status, 400);
    assert!(err["error"].is_string());
    let (status, _) = http_get(http, "/api/v1/nothing").await;
    assert_eq!(status, 404);
    hub.shutdown().await;
}
