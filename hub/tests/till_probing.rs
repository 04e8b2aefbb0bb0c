//! What a till may ask at a scan, over real QUIC: its store's customers' digests always,
//! strangers' from a small allowance, unknown cards never; every request within the till's
//! rate; a till that probes unknown cards and codes is reported in `GET /api/v1/agents`.

use std::time::Instant;

use till360_hub::server::RunningHub;
use till360_shared::wire::{CouponVerdict, Message};
use till360_shared::{AgentId, CardNumber, Event, EventKind, Timestamp};

use crate::common::{self, agent_entry, send_all, Site};
use crate::downlink_digests::subscribed;

fn card(body: &str) -> CardNumber {
    CardNumber::parse(&till360_shared::card::with_check_digit(body).unwrap()).unwrap()
}

const BURST: usize = 40;
const PER_MINUTE: u64 = 1;

fn site() -> Site {
    let site = Site::new();
    let path = site.dir.path().join("hub.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&format!(
        "[till_requests]\nburst = {BURST}\nper_minute = {PER_MINUTE}\n\
         foreign_cards_per_hour = 2\nprobe_threshold = 5\nprobe_window_minutes = 60\n"
    ));
    std::fs::write(path, text).unwrap();
    site
}

/// A started hub whose S001 has one customer (a receipt at S001/T01 now).
async fn with_a_customer(site: &Site) -> (RunningHub, CardNumber, Timestamp) {
    let hub = site.start().await;
    let ours = card("240100000101");
    let at = Timestamp::from_utc(chrono::Utc::now(), 60);
    let s1 = AgentId::new("S001", "T01");
    let receipt = common::one_line_receipt(&s1, 1, Some(&ours), at, ("Tea", 250));
    send_all(site, hub.quic_addr(), &s1, vec![receipt]).await;
    (hub, ours, at)
}

async fn digest(till: &mut common::Agent, card: &CardNumber) -> bool {
    match till
        .call(&Message::DigestRequest { card: card.clone() })
        .await
    {
        Ok(Message::DigestReply { card: c, digest }) if c == *card => digest.is_some(),
        other => panic!("expected the digest reply for {card}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_till_gets_its_stores_customers_and_a_prober_is_reported() {
    let site = site();
    let (hub, ours, at) = with_a_customer(&site).await;
    let strangers: Vec<CardNumber> = (102..105).map(|i| card(&format!("240100000{i}"))).collect();
    let s2 = AgentId::new("S002", "T01");
    let events: Vec<Event> = strangers
        .iter()
        .enumerate()
        .map(|(i, c)| common::one_line_receipt(&s2, i as u64 + 1, Some(c), at, ("Tea", 250)))
        .collect();
    send_all(&site, hub.quic_addr(), &s2, events).await;

    let prober = AgentId::new("S001", "T02");
    let mut till = subscribed(&site, hub.quic_addr(), &prober, 0, 0).await;
    assert!(digest(&mut till, &ours).await, "the store's customer");
    assert!(digest(&mut till, &ours).await, "as often as scanned");
    assert!(
        digest(&mut till, &strangers[0]).await,
        "a first visit, from the allowance"
    );
    assert!(digest(&mut till, &strangers[1]).await);
    assert!(
        !digest(&mut till, &strangers[2]).await,
        "the allowance is spent"
    );
    assert!(
        agent_entry(hub.http_addr(), "S001").await["probing"].is_null(),
        "nothing unknown asked yet"
    );
    for i in 0..5 {
        let unknown = card(&format!("24019999{i:04}"));
        assert!(
            !digest(&mut till, &unknown).await,
            "an unknown card has no digest"
        );
    }
    for code in ["000000000000000000000000", "123456789012345678901234"] {
        assert_eq!(
            till.call(&Message::CouponCheck { code: code.into() }).await,
            Ok(Message::CouponVerdict {
                code: code.into(),
                verdict: CouponVerdict::Forged
            })
        );
    }
    let (status, agents) = common::http_get(hub.http_addr(), "/api/v1/agents").await;
    assert_eq!(status, 200);
    let entry = |till: &str| {
        agents
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["store"] == "S001" && a["till"] == till)
            .cloned()
            .unwrap_or_else(|| panic!("S001/{till} not listed: {agents}"))
    };
    let probing = &entry("T02")["probing"];
    assert_eq!(probing["unknown_cards"], 5, "{probing}");
    assert_eq!(probing["unknown_codes"], 2, "{probing}");
    assert!(probing["since"].is_string(), "{probing}");
    assert!(
        entry("T01")["probing"].is_null(),
        "the honest till: {agents}"
    );
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_a_tills_rate_are_not_answered() {
    let site = site();
    let (hub, ours, at) = with_a_customer(&site).await;
    let started = Instant::now();
    let busy = AgentId::new("S001", "T03");
    let mut till = subscribed(&site, hub.quic_addr(), &busy, 0, 0).await;
    let sent = 3 * BURST;
    for _ in 0..sent {
        till.send(&Message::DigestRequest { card: ours.clone() })
            .await
            .unwrap();
    }
    // An event after them: its ack ends the answers to the requests before it.
    let marker = Event {
        agent: busy.clone(),
        seq: 1,
        recorded_at: at,
        kind: EventKind::Redacted,
    };
    till.send(&Message::Events(vec![marker])).await.unwrap();
    let mut answered = 0;
    loop {
        match till.recv().await {
            Ok(Message::DigestReply {
                digest: Some(_), ..
            }) => answered += 1,
            Ok(Message::Ack { acked_seq: 1 }) => break,
            other => panic!("expected digest replies then the ack, got {other:?}"),
        }
    }
    // The bucket refills PER_MINUTE a minute: a slow machine may earn a few more.
    let minutes = started.elapsed().as_secs() / 60 + 1;
    let allowed = BURST + (minutes * PER_MINUTE) as usize;
    assert!(
        (BURST..=allowed).contains(&answered),
        "answered {answered} of {sent}, allowed {BURST}..={allowed}"
    );
    // A new connection does not refill the bucket.
    drop(till);
    let mut again = subscribed(&site, hub.quic_addr(), &busy, 1, 0).await;
    again
        .send(&Message::DigestRequest { card: ours.clone() })
        .await
        .unwrap();
    let marker = Event {
        agent: busy.clone(),
        seq: 2,
        recorded_at: at,
        kind: EventKind::Redacted,
    };
    let reply = again.call(&Message::Events(vec![marker])).await;
    let refilled = started.elapsed().as_secs() / 60 * PER_MINUTE > (answered - BURST) as u64;
    if !refilled {
        assert_eq!(
            reply,
            Ok(Message::Ack { acked_seq: 2 }),
            "no answer: the bucket is spent"
        );
    }
    hub.shutdown().await;
}
