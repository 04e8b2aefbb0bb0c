//! `GET /metrics` on a real hub: real QUIC ingest, then a scrape over HTTP. Other hubs
//! of this test binary share the process's recorder, so counters are compared before
//! and after, and the per-till gauges are read under this test's own store label.

use crate::common;

use common::Site;
use till360_hub::synthetic::Generator;
use till360_shared::AgentId;

async fn scrape(hub: std::net::SocketAddr, token: Option<&str>) -> (u16, String, String) {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request =
        format!("GET /metrics HTTP/1.1\r\nHost: {hub}\r\n{auth}Connection: close\r\n\r\n");
    common::http_exchange(hub, &request).await
}

/// The value of the sample `name{labels}` (labels as rendered, `""` for none).
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let key = if labels.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{labels}}}")
    };
    text.lines()
        .find_map(|line| line.strip_prefix(&key)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_counters_rise_by_the_events_sent_and_families_are_typed() {
    let site = Site::new();
    let hub = site.start().await;
    let (status, head, before) = scrape(hub.http_addr(), None).await;
    assert_eq!(status, 200, "{head}\n{before}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain"),
        "{head}"
    );
    let events_before = sample(&before, "till360_hub_ingest_events_total", "").unwrap();
    let batches_before = sample(&before, "till360_hub_ingest_batches_total", "").unwrap();

    let id = AgentId::new("SMETRICS", "T01");
    let mut generator = Generator::new(11, 20, 20);
    let mut events: Vec<_> = (1..=6).map(|seq| generator.receipt(&id, seq)).collect();
    // A coupon code refused at the till: counted from the ingested event.
    events.push(till360_shared::Event {
        agent: id.clone(),
        seq: 7,
        recorded_at: events[5].recorded_at,
        kind: till360_shared::EventKind::CouponRefused {
            code: "123456789012345678901234".into(),
            reason: "expired".into(),
        },
    });
    let refused_before = sample(&before, "till360_hub_coupons_refused_total", "").unwrap_or(0.0);
    common::send_all(&site, hub.quic_addr(), &id, events).await;

    let (status, _, after) = scrape(hub.http_addr(), None).await;
    assert_eq!(status, 200);
    let events_after = sample(&after, "till360_hub_ingest_events_total", "").unwrap();
    let batches_after = sample(&after, "till360_hub_ingest_batches_total", "").unwrap();
    // Other tests' hubs may ingest meanwhile: at least ours.
    assert!(
        events_after - events_before >= 7.0,
        "{events_before} -> {events_after}"
    );
    assert!(batches_after - batches_before >= 1.0);
    let refused_after = sample(&after, "till360_hub_coupons_refused_total", "")
        .unwrap_or_else(|| panic!("no refused coupons counted:\n{after}"));
    assert!(refused_after - refused_before >= 1.0);

    for (family, kind) in [
        ("till360_hub_ingest_events_total", "counter"),
        ("till360_hub_ingest_batches_total", "counter"),
        ("till360_hub_commit_duration_seconds", "histogram"),
        ("till360_hub_connected_tills", "gauge"),
        ("till360_hub_till_last_seen_age_seconds", "gauge"),
        ("till360_hub_chain_breaks", "gauge"),
        ("till360_hub_digest_feed_rows", "gauge"),
        ("till360_hub_http_request_duration_seconds", "histogram"),
    ] {
        assert!(
            after.contains(&format!("# TYPE {family} {kind}\n")),
            "no TYPE {kind} for {family}:\n{after}"
        );
        assert!(
            after.contains(&format!("# HELP {family} ")),
            "no HELP for {family}:\n{after}"
        );
    }
    let till = r#"store="SMETRICS",till="T01""#;
    let age = sample(&after, "till360_hub_till_last_seen_age_seconds", till)
        .unwrap_or_else(|| panic!("no last-seen age of our till:\n{after}"));
    assert!((0.0..600.0).contains(&age), "{age}");
    assert_eq!(
        sample(&after, "till360_hub_chain_breaks", till),
        Some(0.0),
        "{after}"
    );
    // The first scrape is timed under its route, by the guard.
    assert!(
        after.lines().any(
            |l| l.starts_with("till360_hub_http_request_duration_seconds_count{")
                && l.contains(r#"route="/metrics""#)
                && l.contains(r#"status="200""#)
        ),
        "{after}"
    );
    promtool_check_metrics(&after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tills_health_report_and_a_refusal_show_as_its_gauges_and_a_counter() {
    use till360_shared::wire::{Message, Refusal, TillHealth};
    let site = Site::new();
    let hub = site.start().await;
    let (_, _, before) = scrape(hub.http_addr(), None).await;
    let gaps_before = sample(
        &before,
        "till360_hub_refusals_total",
        r#"reason="SequenceGap""#,
    )
    .unwrap_or(0.0);

    let id = AgentId::new("SMETRICSH", "T02");
    let mut generator = Generator::new(12, 20, 20);
    let mut agent = site.connect(hub.quic_addr(), "SMETRICSH", "T02").await;
    let hello = Message::Hello {
        agent: id.clone(),
        journal_last_seq: 5,
        software: "metrics-test".into(),
    };
    assert_eq!(
        agent.call(&hello).await,
        Ok(Message::Welcome { acked_seq: 0 })
    );
    let health = TillHealth {
        journal_bytes: 2 << 30,
        journal_max_bytes: 1 << 30,
        quota_exceeded: true,
        quarantined: 0,
        pending: 4321,
        unbalanced_receipts: 0,
        unrecognised_scans: 0,
    };
    agent.send(&Message::Health(health)).await.unwrap();
    // Answered in order: the report was handled before this batch's ack.
    let first = generator.receipt(&id, 1);
    assert_eq!(
        agent.call(&Message::Events(vec![first])).await,
        Ok(Message::Ack { acked_seq: 1 })
    );
    // Seq 2 missing: refused, and the connection closed.
    let gap = generator.receipt(&id, 3);
    match agent.call(&Message::Events(vec![gap])).await {
        Ok(Message::Refused { reason, .. }) => assert_eq!(reason, Refusal::SequenceGap),
        other => panic!("expected a SequenceGap refusal, got {other:?}"),
    }
    agent.closed().await;

    let (_, _, after) = scrape(hub.http_addr(), None).await;
    let till = r#"store="SMETRICSH",till="T02""#;
    assert_eq!(
        sample(&after, "till360_hub_till_backlog_events", till),
        Some(4321.0),
        "{after}"
    );
    assert_eq!(
        sample(&after, "till360_hub_till_quota_exceeded", till),
        Some(1.0)
    );
    assert_eq!(
        sample(&after, "till360_hub_till_journal_bytes", till),
        Some((2u64 << 30) as f64)
    );
    let gaps_after = sample(
        &after,
        "till360_hub_refusals_total",
        r#"reason="SequenceGap""#,
    )
    .unwrap_or_else(|| panic!("no SequenceGap refusals:\n{after}"));
    assert!(
        gaps_after - gaps_before >= 1.0,
        "{gaps_before} -> {gaps_after}"
    );
    assert!(after.contains("# TYPE till360_hub_refusals_total counter\n"));
    promtool_check_metrics(&after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_the_api_token_when_one_is_set() {
    let site = Site::new();
    // A top-level key: first in the file.
    let path = site.dir.path().join("hub.toml");
    let config = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        format!("api_token = \"metrics-secret-token\"\n{config}"),
    )
    .unwrap();
    let hub = site.start().await;
    let (status, _, _) = scrape(hub.http_addr(), None).await;
    assert_eq!(status, 401);
    let (status, _, _) = scrape(hub.http_addr(), Some("wrong-token")).await;
    assert_eq!(status, 401);
    let (status, _, body) = scrape(hub.http_addr(), Some("metrics-secret-token")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("# TYPE till360_hub_ingest_events_total counter"));
}

/// Pipes `text` into `promtool check metrics` and asserts it passes. Without promtool on
/// PATH the check is skipped (loudly), or fails when `TILL360_REQUIRE_PROMTOOL=1`.
fn promtool_check_metrics(text: &str) {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let spawned = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var("TILL360_REQUIRE_PROMTOOL").as_deref() != Ok("1"),
                "TILL360_REQUIRE_PROMTOOL=1 but promtool is not on PATH (Debian: prometheus)"
            );
            eprintln!("SKIPPED: promtool check metrics: promtool is not on PATH");
            return;
        }
        Err(err) => panic!("promtool: {err}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
