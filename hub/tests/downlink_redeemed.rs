//! The redeemed-codes downlink and the till clock check over real QUIC sockets on
//! 127.0.0.1 and the hub's database (either engine): a code redeemed at one till of a store reaches
//! the store's other tills (and only the delta after a reconnect); another store's
//! tills do not get it; a till whose clock is off by more than `[coupons]
//! max_clock_skew_secs` is flagged in `GET /api/v1/agents`.

use crate::common;

use chrono::NaiveDate;
use common::{Agent, Site};
use till360_hub::campaigns::MasterKey;
use till360_hub::store::numbering;
use till360_shared::coupon::{derive_till_key, mint, CouponFields};
use till360_shared::event::{CouponRedemption, Verification};
use till360_shared::wire::Message;
use till360_shared::{AgentId, Event, EventKind, Timestamp};

/// A genuine code printed by `store`/T01 (numbers assigned as the campaign downlink does).
fn code(site: &Site, store: &str, serial: u16) -> String {
    let config = site.config();
    let (till, campaign) = site.with_db(|db| {
        let till = numbering::till_number(db, &AgentId::new(store, "T01")).unwrap();
        let campaign = numbering::campaign_numbers(db, &["big-basket"]).unwrap()[0].1;
        (till, campaign)
    });
    let master = MasterKey::load_or_create(&config.data_dir).unwrap();
    let key = derive_till_key(master.as_bytes(), store, "T01");
    // Far enough ahead never to expire while this test is kept.
    let expires = NaiveDate::from_ymd_opt(2045, 12, 31).unwrap();
    let fields = CouponFields::new(campaign, till, expires, serial).unwrap();
    mint(&key, &fields).as_str().to_string()
}

/// Connects as `store`/`till`, subscribes at `redeemed_version`; returns after `Welcome`.
async fn subscribed(
    site: &Site,
    hub: std::net::SocketAddr,
    store: &str,
    till: &str,
    redeemed_version: u64,
    acked_seq: u64,
) -> Agent {
    let mut agent = site.connect(hub, store, till).await;
    agent
        .send(&Message::Hello {
            agent: AgentId::new(store, till),
            journal_last_seq: acked_seq,
            software: "redeemed-test".into(),
        })
        .await
        .unwrap();
    agent
        .send(&Message::Subscribe {
            erasure_version: 0,
            campaign_version: 0,
            digest_version: 0,
            redeemed_version,
        })
        .await
        .unwrap();
    assert_eq!(agent.recv().await, Ok(Message::Welcome { acked_seq }));
    agent
}

/// Commits one redemption of `code` as `agent`'s event `seq` on a connection of its own
/// (no downlink on it).
async fn redeem(site: &Site, hub: std::net::SocketAddr, agent: &AgentId, seq: u64, code: &str) {
    let mut client = site.connect(hub, &agent.store, &agent.till).await;
    let hello = Message::Hello {
        agent: agent.clone(),
        journal_last_seq: seq,
        software: "redeemed-test".into(),
    };
    assert_eq!(
        client.call(&hello).await,
        Ok(Message::Welcome { acked_seq: seq - 1 })
    );
    assert_eq!(
        client
            .call(&Message::Events(vec![redeemed(agent, seq, code)]))
            .await,
        Ok(Message::Ack { acked_seq: seq })
    );
}

fn redeemed(agent: &AgentId, seq: u64, code: &str) -> Event {
    Event {
        agent: agent.clone(),
        seq,
        recorded_at: Timestamp::from_unix_ms(1_764_060_000_000 + seq as i64, 60),
        kind: EventKind::CouponRedeemed(CouponRedemption {
            code: code.into(),
            receipt_seq: None,
            verified: Verification::OwnStore,
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_redeemed_at_one_till_reaches_the_stores_other_tills() {
    let site = Site::new();
    let hub = site.start().await;
    let (first, second) = (code(&site, "S001", 1), code(&site, "S001", 2));
    let other_store = code(&site, "S002", 1);
    let mut t02 = subscribed(&site, hub.quic_addr(), "S001", "T02", 0, 0).await;
    let mut s2 = subscribed(&site, hub.quic_addr(), "S002", "T02", 0, 0).await;

    // S001/T01 redeems its own code; S002/T01 redeems S002's code.
    let t01 = AgentId::new("S001", "T01");
    redeem(&site, hub.quic_addr(), &t01, 1, &first).await;
    assert_eq!(
        t02.recv().await,
        Ok(Message::Redeemed {
            codes: vec![first.clone()],
            up_to_version: 1
        })
    );
    let s2_id = AgentId::new("S002", "T01");
    redeem(&site, hub.quic_addr(), &s2_id, 1, &other_store).await;
    // S002's till hears of its own store's code, never of S001's.
    assert_eq!(
        s2.recv().await,
        Ok(Message::Redeemed {
            codes: vec![other_store.clone()],
            up_to_version: 2
        })
    );

    // T02 goes away holding version 1; a second code is redeemed meanwhile.
    drop(t02);
    redeem(&site, hub.quic_addr(), &t01, 2, &second).await;
    let mut t02 = subscribed(&site, hub.quic_addr(), "S001", "T02", 1, 0).await;
    assert_eq!(
        t02.recv().await,
        Ok(Message::Redeemed {
            codes: vec![second.clone()],
            up_to_version: 3
        }),
        "only the delta, and not S002's code"
    );
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_till_whose_clock_is_off_is_reported_in_agents() {
    let site = Site::new();
    let hub = site.start().await;
    let mut honest = subscribed(&site, hub.quic_addr(), "S001", "T01", 0, 0).await;
    let mut backdated = subscribed(&site, hub.quic_addr(), "S002", "T01", 0, 0).await;
    let now_ms = chrono::Utc::now().timestamp_millis();
    honest
        .send(&Message::TillClock { unix_ms: now_ms })
        .await
        .unwrap();
    // Four days behind (the default limit is 300 s).
    backdated
        .send(&Message::TillClock {
            unix_ms: now_ms - 4 * 86_400_000,
        })
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + common::STEP;
    let (ok, off) = loop {
        let ok = common::agent_entry(hub.http_addr(), "S001").await;
        let off = common::agent_entry(hub.http_addr(), "S002").await;
        if !ok["clock"].is_null() && !off["clock"].is_null() {
            break (ok, off);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no clock reported: {ok} {off}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(ok["clock"]["skewed"], false, "{ok}");
    assert!(
        ok["clock"]["skew_secs"].as_i64().unwrap().abs() < 60,
        "{ok}"
    );
    assert_eq!(off["clock"]["skewed"], true, "{off}");
    let skew = off["clock"]["skew_secs"].as_i64().unwrap();
    assert!(
        (-4 * 86_400 - 60..=-4 * 86_400 + 60).contains(&skew),
        "{off}"
    );
    hub.shutdown().await;
}
