//! Metrics end to end: the hub and an agent as child processes (each its own recorder),
//! a morning of visits played on the till's virtual devices, then both `/metrics` pages
//! scraped over HTTP once the hub has every event.

use crate::harness;

use std::net::SocketAddr;
use std::time::Duration;

use harness::{journaled_events, visits_at, Site, DEADLINE};
use till360::http_client::http_get;
use till360::rig::{free_tcp_addr, wait_until};
use till360::sim::{Morning, MorningPlan, ReceiptStyle, StoreSetup, Suffix};

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

fn scrape(addr: SocketAddr) -> String {
    let response = http_get(addr, "/metrics", Duration::from_secs(5)).expect("GET /metrics");
    assert_eq!(response.status, 200, "{}", response.body);
    response.body
}

#[test]
fn agent_and_hub_metrics_count_a_mornings_receipts() {
    let site = Site::new();
    let stores = StoreSetup::demo_stores();
    let morning = Morning::generate(&MorningPlan::new(404, 12), &stores);
    let visits = visits_at(&morning, 0);
    let events: u64 = visits.iter().map(journaled_events).sum();

    let hub = site.start_hub();
    let mut till = site.till("S001", ReceiptStyle::Supermarket, Suffix::Cr, 21);
    let metrics_addr = free_tcp_addr().expect("a free port");
    let mut config = std::fs::read_to_string(&till.config).unwrap();
    config.push_str(&format!("\n[metrics]\nlisten = \"{metrics_addr}\"\n"));
    std::fs::write(&till.config, config).unwrap();
    let agent = site.start_agent(&till);
    for visit in &visits {
        till.play(visit);
    }

    let acked = wait_until(DEADLINE, || {
        let text = scrape(metrics_addr);
        (sample(&text, "till360_agent_journal_pending_events", "") == Some(0.0)
            && sample(&text, "till360_agent_receipts_parsed_total", "")
                >= Some(visits.len() as f64))
        .then_some(text)
    });
    let agent_text = acked.unwrap_or_else(|| {
        panic!(
            "the agent never showed every receipt parsed and acknowledged:\n{}\n{}",
            scrape(metrics_addr),
            harness::read_log(&agent.log)
        )
    });
    assert_eq!(
        sample(&agent_text, "till360_agent_receipts_parsed_total", ""),
        Some(visits.len() as f64),
        "{agent_text}"
    );
    assert_eq!(
        sample(&agent_text, "till360_agent_receipts_unparsed_total", ""),
        Some(0.0)
    );
    let printed: usize = visits.iter().map(|v| v.receipt.bytes().len()).sum();
    let proxied = sample(&agent_text, "till360_agent_proxied_bytes_total", "").unwrap();
    assert!(proxied >= printed as f64, "{proxied} < {printed}");
    assert_eq!(sample(&agent_text, "till360_agent_link_up", ""), Some(1.0));

    let hub_text = scrape(site.hub.http);
    // Its own process: the hub's counters are this test's alone.
    assert_eq!(
        sample(&hub_text, "till360_hub_ingest_events_total", ""),
        Some(events as f64),
        "{hub_text}"
    );
    assert_eq!(
        sample(&hub_text, "till360_hub_connected_tills", ""),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &hub_text,
            "till360_hub_chain_breaks",
            r#"store="S001",till="T01""#
        ),
        Some(0.0),
        "{hub_text}"
    );
    drop(agent);
    drop(hub);
}
