//! Card fraud and shared cards, from what the tills see: a house card sent over QUIC is
//! flagged in `GET /api/v1/identifiers/suspicious` with its evidence, gets no digest (no
//! personal coupon) and links nothing until cleared through the API; the other rules and
//! an honest month through the store (either engine).

use chrono::Utc;
use till360_hub::config::FraudConfig;
use till360_hub::store::{IngestRequest, SqlStore, Store};
use till360_hub::synthetic::{chain_locations, Generator};
use till360_shared::wire::Message;
use till360_shared::Timestamp;
use till360_shared::{AgentId, CardNumber, Event};

use crate::common::engine::TestStore;
use crate::common::{self, http_get, http_post, send_all, Site};
use crate::downlink_digests::{digests, subscribed};

const HOUSE: &str = "240100000123";
const HONEST: &str = "240100000223";

/// The card with the 12 digits `body` and its check digit.
fn card(body: &str) -> CardNumber {
    CardNumber::parse(&till360_shared::card::with_check_digit(body).unwrap()).unwrap()
}

/// Two days ago at 10:00 UTC plus `minutes`.
fn at(minutes: i64) -> Timestamp {
    let today = Utc::now().timestamp_millis() / 86_400_000 * 86_400_000;
    Timestamp::from_unix_ms(today - 2 * 86_400_000 + (600 + minutes) * 60_000, 60)
}

/// A receipt whose basket is `n` coffees (so each `n` is another basket).
fn receipt(agent: &AgentId, seq: u64, card: &CardNumber, minutes: i64, n: i64) -> Event {
    common::one_line_receipt(agent, seq, Some(card), at(minutes), ("Coffee", n * 299))
}

fn import_crm(site: &Site, rows: &str) {
    let csv = format!("customer_no,email,cards\n{rows}");
    let identity = site.config().identity;
    site.with_db(|db| {
        till360_hub::import::customers(
            db,
            csv.as_bytes(),
            &identity,
            None,
            Timestamp::from_utc(Utc::now(), 0),
        )
        .unwrap()
    });
}

async fn digest_at_scan(till: &mut common::Agent, card: &CardNumber) -> bool {
    match till
        .call(&Message::DigestRequest { card: card.clone() })
        .await
    {
        Ok(Message::DigestReply { digest, .. }) => digest.is_some(),
        other => panic!("expected a digest reply, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_house_card_is_flagged_gets_no_digest_and_links_nothing_until_cleared() {
    let site = Site::new();
    let hub = site.start().await;
    let (house, honest) = (card(HOUSE), card(HONEST));
    // The cashiers of three tills scan the store's own card for customers without one:
    // six different baskets, five minutes apart. An honest customer shops twice.
    let tills: Vec<AgentId> = (1..=3)
        .map(|t| AgentId::new("S001", format!("T0{t}")))
        .collect();
    for (t, agent) in tills.iter().enumerate() {
        let t = t as i64;
        let mut events = vec![
            receipt(agent, 1, &house, 5 * t, 1 + t),
            receipt(agent, 2, &house, 15 + 5 * t, 4 + t),
        ];
        if t == 0 {
            events.push(receipt(agent, 3, &honest, 200, 2));
            events.push(receipt(agent, 4, &honest, 260, 3));
        }
        send_all(&site, hub.quic_addr(), agent, events).await;
    }
    let http = hub.http_addr();
    let (status, list) = http_get(http, "/api/v1/identifiers/suspicious").await;
    assert_eq!(status, 200, "{list}");
    let flagged = list.as_array().unwrap();
    assert_eq!(flagged.len(), 1, "only the house card: {list}");
    let entry = &flagged[0];
    assert_eq!(entry["id"], house.as_str());
    assert_eq!(entry["status"], "flagged");
    let finding = &entry["findings"][0];
    assert_eq!(finding["rule"], "house_card", "{entry}");
    let receipts = finding["receipts"].as_array().unwrap();
    assert_eq!(receipts.len(), 6, "the evidence: {finding}");
    let tills_seen: std::collections::BTreeSet<&str> = receipts
        .iter()
        .map(|r| r["till"].as_str().unwrap())
        .collect();
    assert_eq!(tills_seen.len(), 3, "{finding}");
    assert!(receipts
        .iter()
        .all(|r| r["store"] == "S001" && r["at"].is_string()));

    // No personal coupon: no digest at a scan, none in the store's feed.
    let mut till = subscribed(&site, hub.quic_addr(), &tills[0], 4, 0).await;
    assert!(
        !digest_at_scan(&mut till, &house).await,
        "a flagged card has no digest"
    );
    assert!(
        digest_at_scan(&mut till, &honest).await,
        "an honest card has one"
    );
    hub.refresh_digests().await.unwrap();
    let (entries, _, _) = digests(&mut till).await;
    assert_eq!(
        entries.len(),
        1,
        "only the honest card's digest is pushed: {entries:?}"
    );
    let honest_key = entries[0].card_key;

    // The person's export says so.
    let by_card = format!("/api/v1/profiles/by-card/{house}");
    let id = http_get(http, &format!("/api/v1/profiles/by-card/{house}"))
        .await
        .1["profile_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, export) = http_get(http, &format!("/api/v1/profiles/{id}/export")).await;
    assert_eq!(
        export["suspicious_cards"][0]["id"],
        house.as_str(),
        "{export}"
    );

    // Not merged further: a CRM row naming the card leaves it alone.
    import_crm(&site, &format!("C100,anna@example.nl,{house}\n"));
    let (_, profile) = http_get(http, &by_card).await;
    assert!(
        profile["customer_no"].is_null(),
        "no link through a flagged card: {profile}"
    );

    // A marketer clears it: the held-back link is made, the digest is back.
    let unknown = http_post(
        http,
        &format!("/api/v1/identifiers/suspicious/{honest}/clear"),
    )
    .await;
    assert_eq!(unknown.0, 404, "{}", unknown.1);
    let (status, cleared) = http_post(
        http,
        &format!("/api/v1/identifiers/suspicious/{house}/clear"),
    )
    .await;
    assert_eq!(
        (status, &cleared["status"]),
        (200, &serde_json::json!("cleared")),
        "{cleared}"
    );
    // Pushed to the subscribed till at once (the refresh timer is 300 s away), not only
    // answered at the next scan.
    loop {
        match till.recv().await {
            Ok(Message::Digests { entries, .. })
                if entries
                    .iter()
                    .any(|e| e.card_key != honest_key && e.digest.is_some()) =>
            {
                break
            }
            Ok(Message::Digests { .. }) => {}
            other => panic!("expected the cleared card's digest pushed, got {other:?}"),
        }
    }
    let (_, profile) = http_get(http, &by_card).await;
    assert_eq!(
        profile["customer_no"], "C100",
        "linked once cleared: {profile}"
    );
    assert!(
        digest_at_scan(&mut till, &house).await,
        "a cleared card has a digest again"
    );
    let (_, list) = http_get(http, "/api/v1/identifiers/suspicious").await;
    assert_eq!(list[0]["status"], "cleared", "{list}");

    // What was cleared stays cleared; the same pattern the next day flags again.
    let later: Vec<Event> = (0..6)
        .map(|i| receipt(&tills[i % 3], 0, &house, 1440 + 5 * i as i64, 10 + i as i64))
        .collect();
    for (t, agent) in tills.iter().enumerate() {
        let mut events: Vec<Event> = later
            .iter()
            .filter(|e| e.agent == *agent)
            .cloned()
            .collect();
        let first = if t == 0 { 5 } else { 3 };
        for (i, e) in events.iter_mut().enumerate() {
            e.seq = first + i as u64;
        }
        let mut client = site
            .connect(hub.quic_addr(), &agent.store, &agent.till)
            .await;
        let hello = Message::Hello {
            agent: agent.clone(),
            journal_last_seq: events.last().unwrap().seq,
            software: "test".into(),
        };
        assert_eq!(
            client.call(&hello).await,
            Ok(Message::Welcome {
                acked_seq: first - 1
            })
        );
        let last = events.last().unwrap().seq;
        assert_eq!(
            client.call(&Message::Events(events)).await,
            Ok(Message::Ack { acked_seq: last })
        );
    }
    let (_, list) = http_get(http, "/api/v1/identifiers/suspicious").await;
    assert_eq!(
        list[0]["status"], "flagged",
        "a new pattern flags again: {list}"
    );
    let findings = list[0]["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "only the new run: {list}");
    assert!(findings[0]["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["seq"].as_u64().unwrap() >= 3));
    hub.shutdown().await;
}

/// A store on a fresh database of the test engine, with the chain's store locations.
fn fraud_store(database: &TestStore) -> SqlStore {
    let mut store = database.store();
    store.set_fraud_config(FraudConfig {
        stores: chain_locations(),
        ..FraudConfig::default()
    });
    store
}

/// Ingests `events` per till in seq order, in batches of `batch`; the tills one after
/// the other (in reverse order of their ids if `reversed`).
fn ingest(store: &mut SqlStore, events: &[Event], batch: usize, reversed: bool) {
    let mut by_till: std::collections::BTreeMap<AgentId, Vec<Event>> = Default::default();
    for e in events {
        by_till.entry(e.agent.clone()).or_default().push(e.clone());
    }
    let now = Timestamp::from_utc(Utc::now(), 0);
    let mut tills: Vec<_> = by_till.iter().collect();
    if reversed {
        tills.reverse();
    }
    for (agent, events) in tills {
        for chunk in events.chunks(batch) {
            let out = store
                .ingest(
                    &[IngestRequest {
                        agent,
                        events: chunk,
                    }],
                    now,
                )
                .unwrap();
            assert!(out[0].is_ok(), "{out:?}");
        }
    }
}

#[test]
fn a_cloned_card_and_a_card_used_too_often_are_flagged_whatever_the_order() {
    let cloned = card("240100000333");
    let busy = card("240100000444");
    // Amsterdam, Rotterdam five minutes later, Groningen within the hour, Maastricht half
    // an hour after that.
    let mut events = vec![
        receipt(&AgentId::new("S001", "T01"), 1, &cloned, 0, 1),
        receipt(&AgentId::new("S006", "T01"), 1, &cloned, 5, 2),
        receipt(&AgentId::new("S010", "T01"), 1, &cloned, 60, 3),
        receipt(&AgentId::new("S012", "T01"), 1, &cloned, 90, 4),
    ];
    // Eleven receipts on one day at one till, 50 minutes apart.
    for i in 0..11 {
        let minutes = -540 + 50 * i as i64;
        events.push(receipt(
            &AgentId::new("S002", "T01"),
            1 + i,
            &busy,
            minutes,
            1,
        ));
    }
    for reversed in [false, true] {
        let database = TestStore::new();
        let mut store = fraud_store(&database);
        ingest(&mut store, &events, 1, reversed);
        let flagged = store.suspicious_cards().unwrap();
        let rules: std::collections::BTreeSet<(String, String)> = flagged
            .iter()
            .flat_map(|c| {
                c.findings
                    .iter()
                    .map(|f| (c.card.clone(), format!("{:?}", f.rule)))
            })
            .collect();
        let expected = [
            (cloned.as_str().to_string(), "ImpossibleTravel".to_string()),
            (busy.as_str().to_string(), "TooManyReceipts".to_string()),
        ];
        assert_eq!(rules, expected.into_iter().collect(), "reversed {reversed}");
        let travel = flagged.iter().find(|c| c.card == cloned.as_str()).unwrap();
        assert_eq!(travel.findings[0].receipts.len(), 4);
        assert!(
            travel.findings[0].detail.contains("km/h"),
            "{:?}",
            travel.findings
        );
    }
}

#[test]
fn an_honest_month_ingested_into_sqlite_flags_no_card() {
    let database = TestStore::new();
    let mut store = fraud_store(&database);
    let events = Generator::new(7, 0, 0).honest_month(300, 30);
    assert!(events.len() > 5_000, "{}", events.len());
    ingest(&mut store, &events, 500, false);
    let flagged = store.suspicious_cards().unwrap();
    assert!(flagged.is_empty(), "honest cards flagged: {flagged:?}");
}

/// Clearing a card changes what the tills may hold: the hub refreshes its digest feed at
/// once (the timer here is a day away) and pushes the card's digest to a subscribed till.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cleared_card_reaches_the_subscribed_tills_at_once() {
    let site = Site::new();
    let config = site.dir.path().join("hub.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("[digests]\nrefresh_seconds = 86400\n");
    std::fs::write(&config, text).unwrap();
    let hub = site.start().await;
    let house = card(HOUSE);
    let tills: Vec<AgentId> = (1..=3)
        .map(|t| AgentId::new("S001", format!("T0{t}")))
        .collect();
    for (t, agent) in tills.iter().enumerate() {
        let t = t as i64;
        let events = vec![
            receipt(agent, 1, &house, 5 * t, 1 + t),
            receipt(agent, 2, &house, 15 + 5 * t, 4 + t),
        ];
        send_all(&site, hub.quic_addr(), agent, events).await;
    }
    let http = hub.http_addr();
    let (_, list) = http_get(http, "/api/v1/identifiers/suspicious").await;
    assert_eq!(list[0]["status"], "flagged", "{list}");
    let mut till = subscribed(&site, hub.quic_addr(), &tills[0], 2, 0).await;

    let (status, cleared) = http_post(
        http,
        &format!("/api/v1/identifiers/suspicious/{house}/clear"),
    )
    .await;
    assert_eq!(status, 200, "{cleared}");
    let (entries, _, _) = digests(&mut till).await;
    assert!(
        entries.len() == 1 && entries[0].digest.is_some(),
        "the cleared card's digest, pushed: {entries:?}"
    );
}
