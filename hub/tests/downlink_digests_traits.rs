//! A finished traits run refreshes the digests at once: through a running hub on
//! 127.0.0.1 whose digest timer is a day long, a customer who becomes a regular is pushed
//! to a connected till with the new segment right after the recompute.

use std::time::Duration;

use crate::common;
use crate::downlink_digests::{card_key, digests, next_frame_is_the_ack, subscribed};

use chrono::Utc;
use common::{send_all, Site};
use till360_shared::{AgentId, CardNumber, Event, Timestamp};

const DAY_MS: i64 = 86_400_000;

fn receipt(agent: &AgentId, seq: u64, card: &CardNumber, days_ago: i64) -> Event {
    let at = Timestamp::from_unix_ms(Utc::now().timestamp_millis() - days_ago * DAY_MS, 60);
    common::one_line_receipt(agent, seq, Some(card), at, ("Coffee", 1250))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traits_run_pushes_the_new_segment_without_waiting_for_the_digest_timer() {
    let site = Site::new();
    let config = site.dir.path().join("hub.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    // The digest timer never fires during the test: only a refresh the test asks for
    // or one the traits run triggers can change the feed.
    text.push_str(
        "[digests]\nrefresh_seconds = 86400\n\
         [[segment]]\nid = \"regulars\"\nname = \"Regulars\"\nwhere = [\"frequency >= 2\"]\n",
    );
    std::fs::write(&config, text).unwrap();
    let hub = site.start().await;
    let addr = hub.quic_addr();
    let code = till360_shared::card::with_check_digit("240100030001").unwrap();
    let regular = CardNumber::parse(&code).unwrap();
    let shop = AgentId::new("S001", "T01");
    send_all(&site, addr, &shop, vec![receipt(&shop, 1, &regular, 40)]).await;
    // Segments reach the till only with personalisation consent.
    common::grant_consent(&site, &regular, "personalization");
    assert_eq!(hub.refresh_digests().await.unwrap().changed, 1);

    // A till of the store holds the customer, not yet a regular.
    let id = AgentId::new("S001", "T02");
    let mut till = subscribed(&site, addr, &id, 0, 0).await;
    let (entries, v1, _) = digests(&mut till).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].card_key, card_key(&site, &code));
    let before = entries[0].digest.clone().expect("a digest");
    assert!(before.segments.is_empty(), "{:?}", before.segments);

    // Three more visits on other days (through another till: `send_all` starts at
    // seq 1); no refresh runs, so nothing is pushed.
    let other = AgentId::new("S001", "T03");
    let visits = (1..=3)
        .map(|seq| receipt(&other, seq, &regular, 30 - 10 * seq as i64))
        .collect();
    send_all(&site, addr, &other, visits).await;
    next_frame_is_the_ack(&mut till, &id, 1).await;

    // The traits run makes them a regular; its trigger refreshes the digests (a run
    // that never triggers one would leave this waiting: bounded so the test ends).
    let summary = tokio::time::timeout(Duration::from_secs(120), hub.recompute_traits())
        .await
        .expect("the traits run's digest refresh never finished")
        .unwrap();
    assert_eq!(summary.segments, vec![("regulars".to_string(), 1)]);
    let (entries, v2, reset) = digests(&mut till).await;
    assert!(!reset && v2 > v1, "a delta: v{v2} after v{v1}");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].card_key, card_key(&site, &code));
    let after = entries[0].digest.as_ref().expect("a digest");
    assert_eq!(after.segments, vec!["regulars".to_string()]);
    assert!(after.last_visit > before.last_visit);
    next_frame_is_the_ack(&mut till, &id, 2).await;
    hub.shutdown().await;
}
