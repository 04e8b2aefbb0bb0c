//! The erasure downlink over real QUIC sockets on 127.0.0.1, with a protocol-level test
//! client: a subscribed agent gets the delta after `Welcome`, new erasures are pushed
//! while it is connected, and a client that never subscribes sees no downlink frames.
//! (The real agent's uplink against this hub: `tests/erasure.rs` at the root.)

use crate::common;

use common::{Agent, Site};
use till360_hub::listener::ERASURE_BATCH;
use till360_shared::card::with_check_digit;
use till360_shared::coupon::CardKey;
use till360_shared::wire::{Message, Refusal};
use till360_shared::{AgentId, CardNumber, Event, EventKind, Timestamp};

fn card(n: u64) -> CardNumber {
    CardNumber::parse(&with_check_digit(&format!("2401{n:08}")).unwrap()).unwrap()
}

fn cards(range: std::ops::RangeInclusive<u64>) -> Vec<CardNumber> {
    range.map(card).collect()
}

/// The cards as S001's tills know them (the erasure log never sends a card in clear).
fn keys(site: &Site, cards: &[CardNumber]) -> Vec<CardKey> {
    let suppression = site.suppression();
    cards
        .iter()
        .map(|c| suppression.card_key("S001", c))
        .collect()
}

fn id() -> AgentId {
    AgentId::new("S001", "T01")
}

fn hello() -> Message {
    Message::Hello {
        agent: id(),
        journal_last_seq: 0,
        software: "downlink-test".into(),
    }
}

/// Connects, says hello and subscribes at `erasure_version`; returns after `Welcome`.
async fn subscribed(site: &Site, hub: std::net::SocketAddr, erasure_version: u64) -> Agent {
    let dir = site.agent("S001", "T01");
    let mut agent = Agent::connect(hub, &dir.join("ca.pem"), Some(&dir))
        .await
        .unwrap();
    agent.send(&hello()).await.unwrap();
    agent
        .send(&Message::Subscribe {
            erasure_version,
            campaign_version: 0,
            digest_version: 0,
            redeemed_version: 0,
        })
        .await
        .unwrap();
    assert_eq!(agent.recv().await, Ok(Message::Welcome { acked_seq: 0 }));
    agent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_agent_is_sent_a_new_erasure() {
    let site = Site::new();
    let hub = site.start().await;
    let mut agent = subscribed(&site, hub.quic_addr(), 0).await;

    assert_eq!(site.record_erasures(&[card(7)]), 1);
    // `recv` gives up after a bounded wait; the hub polls its log every second.
    assert_eq!(
        agent.recv().await,
        Ok(Message::Erasures {
            card_keys: keys(&site, &[card(7)]),
            up_to_version: 1
        })
    );
    agent
        .send(&Message::ErasuresApplied { up_to_version: 1 })
        .await
        .unwrap();
    // The uplink goes on beside the downlink.
    let scan = Event {
        agent: id(),
        seq: 1,
        recorded_at: Timestamp::from_unix_ms(1_764_060_000_000, 60),
        kind: EventKind::Redacted,
    };
    assert_eq!(
        agent.call(&Message::Events(vec![scan])).await,
        Ok(Message::Ack { acked_seq: 1 })
    );

    assert_eq!(site.record_erasures(&[card(8), card(9)]), 3);
    assert_eq!(
        agent.recv().await,
        Ok(Message::Erasures {
            card_keys: keys(&site, &[card(8), card(9)]),
            up_to_version: 3
        })
    );
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_agent_is_sent_only_the_delta() {
    let site = Site::new();
    let hub = site.start().await;
    site.record_erasures(&cards(1..=3));
    // This agent applied version 1 before it went offline.
    let mut agent = subscribed(&site, hub.quic_addr(), 1).await;
    assert_eq!(
        agent.recv().await,
        Ok(Message::Erasures {
            card_keys: keys(&site, &cards(2..=3)),
            up_to_version: 3
        })
    );
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_agent_is_sent_every_erasure_in_bounded_batches() {
    let site = Site::new();
    let hub = site.start().await;
    let total = ERASURE_BATCH as u64 + 20;
    assert_eq!(site.record_erasures(&cards(1..=total)), total);
    let mut agent = subscribed(&site, hub.quic_addr(), 0).await;
    let mut got = Vec::new();
    let mut versions = Vec::new();
    while got.len() < total as usize {
        match agent.recv().await {
            Ok(Message::Erasures {
                card_keys,
                up_to_version,
            }) => {
                assert!(card_keys.len() <= ERASURE_BATCH, "a bounded batch");
                got.extend(card_keys);
                versions.push(up_to_version);
            }
            other => panic!("expected erasures, got {other:?}"),
        }
    }
    assert_eq!(
        got,
        keys(&site, &cards(1..=total)),
        "every erasure once, in order"
    );
    assert_eq!(versions, vec![ERASURE_BATCH as u64, total]);
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_subscribes_gets_no_downlink_frames() {
    let site = Site::new();
    let hub = site.start().await;
    site.record_erasures(&cards(1..=2));
    let dir = site.agent("S001", "T01");
    let mut agent = Agent::connect(hub.quic_addr(), &dir.join("ca.pem"), Some(&dir))
        .await
        .unwrap();
    assert_eq!(
        agent.call(&hello()).await,
        Ok(Message::Welcome { acked_seq: 0 })
    );
    let event = Event {
        agent: id(),
        seq: 1,
        recorded_at: Timestamp::from_unix_ms(1_764_060_000_000, 60),
        kind: EventKind::CardScanned { card: card(5) },
    };
    assert_eq!(
        agent.call(&Message::Events(vec![event])).await,
        Ok(Message::Ack { acked_seq: 1 })
    );
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applying_more_than_was_sent_is_a_protocol_error() {
    let site = Site::new();
    let hub = site.start().await;
    let mut agent = subscribed(&site, hub.quic_addr(), 0).await;
    match agent
        .call(&Message::ErasuresApplied { up_to_version: 4 })
        .await
    {
        Ok(Message::Refused { reason, .. }) => assert_eq!(reason, Refusal::ProtocolError),
        other => panic!("expected a refusal, got {other:?}"),
    }
    hub.shutdown().await;
}
