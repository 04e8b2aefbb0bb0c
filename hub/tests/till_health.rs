//! A till's health report (`Message::Health`) over real QUIC: the hub keeps the latest
//! one per till and `GET /api/v1/agents` shows it, so an over-quota journal or
//! quarantined rows are visible where on-call looks.

use crate::common;

use common::Site;
use till360_hub::synthetic::Generator;
use till360_shared::wire::{Message, TillHealth};
use till360_shared::AgentId;

async fn health_of(hub: std::net::SocketAddr, store: &str) -> serde_json::Value {
    common::agent_entry(hub, store).await["health"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_latest_health_report_of_each_till_is_listed() {
    let site = Site::new();
    let hub = site.start().await;
    let id = AgentId::new("S001", "T01");
    let mut agent = site.connect(hub.quic_addr(), "S001", "T01").await;
    let hello = Message::Hello {
        agent: id.clone(),
        journal_last_seq: 1,
        software: "health-test".into(),
    };
    assert_eq!(
        agent.call(&hello).await,
        Ok(Message::Welcome { acked_seq: 0 })
    );
    let fine = TillHealth {
        journal_bytes: 4 << 20,
        journal_max_bytes: 1 << 30,
        quota_exceeded: false,
        quarantined: 0,
        pending: 1,
        unbalanced_receipts: 0,
        unrecognised_scans: 0,
    };
    agent.send(&Message::Health(fine)).await.unwrap();
    // An ingest after it: answered in order, so the report was handled first.
    let event = Generator::new(5, 10, 10).receipt(&id, 1);
    assert_eq!(
        agent.call(&Message::Events(vec![event])).await,
        Ok(Message::Ack { acked_seq: 1 })
    );
    let shown = health_of(hub.http_addr(), "S001").await;
    assert_eq!(shown["journal_bytes"], 4 << 20, "{shown}");
    assert_eq!(shown["quota_exceeded"], false);

    let over = TillHealth {
        journal_bytes: 2 << 30,
        quota_exceeded: true,
        quarantined: 2,
        pending: 90_000,
        unbalanced_receipts: 3,
        unrecognised_scans: 4,
        ..fine
    };
    agent.send(&Message::Health(over)).await.unwrap();
    let mut shown = serde_json::Value::Null;
    for _ in 0..100 {
        shown = health_of(hub.http_addr(), "S001").await;
        if shown["quota_exceeded"] == true {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(shown["quota_exceeded"], true, "{shown}");
    assert_eq!(shown["quarantined"], 2);
    assert_eq!(shown["pending"], 90_000);
    // A layout that misreads receipts and scans that are not ours show during a pilot.
    assert_eq!(shown["unbalanced_receipts"], 3, "{shown}");
    assert_eq!(shown["unrecognised_scans"], 4, "{shown}");
    assert!(shown["reported_at"].as_str().is_some_and(|t| t.len() >= 20));
    hub.shutdown().await;
}
