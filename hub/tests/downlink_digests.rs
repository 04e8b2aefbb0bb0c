//! The digest downlink and the on-scan requests over real QUIC sockets on 127.0.0.1 with
//! the protocol-level test client: a store's tills get the digests of that store's
//! customers only (CRM facts, consent, coupons used), a reconnect gets only what
//! changed, a change arrives as a delta while connected; a card scan gets any
//! customer's digest fresh; a coupon check tells a genuine code from a forged one.

use crate::common;

use chrono::{Days, NaiveDate, Utc};
use common::{send_all, Agent, Site};
use till360_hub::campaigns::MASTER_KEY_FILE;
use till360_shared::campaign::{Digest, MonthDay};
use till360_shared::coupon::{derive_digest_key, derive_till_key, mint, CardKey, CouponFields};
use till360_shared::event::CouponIssue;
use till360_shared::wire::{CouponVerdict, DigestEntry, Message};
use till360_shared::{
    AgentId, CardNumber, Currency, Event, EventKind, Receipt, ReceiptLine, Timestamp,
};

/// Anna (CRM: personalisation yes, born 14 March, member since 2019-05-01).
const ANNA: &str = "2401000009013";
/// Piet (CRM: personalisation no), who has a second card.
const PIET: &str = "2401000009020";
const PIET_2: &str = "2401000009037";
/// A valid card nobody ever used.
const STRANGER: &str = "4006381333931";

pub(crate) fn card(code: &str) -> CardNumber {
    CardNumber::parse(code).unwrap()
}

fn master(site: &Site) -> Vec<u8> {
    std::fs::read(site.config().data_dir.join(MASTER_KEY_FILE)).unwrap()
}

/// The card key of `code` in S001's digests.
pub(crate) fn card_key(site: &Site, code: &str) -> CardKey {
    store_card_key(site, "S001", code)
}

pub(crate) fn store_card_key(site: &Site, store: &str, code: &str) -> CardKey {
    let master: [u8; 32] = master(site).try_into().unwrap();
    CardKey::of(&derive_digest_key(&master, store), &card(code))
}

/// Imports the example CRM file into the site's database (before the hub starts).
fn import_crm(site: &Site) {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/customers.csv");
    let reader = std::io::BufReader::new(std::fs::File::open(file).unwrap());
    let now = Timestamp::from_utc(Utc::now(), 0);
    let identity = site.config().identity;
    site.with_db(|db| till360_hub::import::customers(db, reader, &identity, None, now).unwrap());
}

fn days_ago(days: i64) -> Timestamp {
    Timestamp::from_unix_ms(Utc::now().timestamp_millis() - days * 86_400_000, 60)
}

fn receipt(agent: &AgentId, seq: u64, card: &CardNumber) -> Event {
    let at = days_ago(2);
    Event {
        agent: agent.clone(),
        seq,
        recorded_at: at,
        kind: EventKind::Receipt(Receipt {
            receipt_no: Some(format!("R{seq}")),
            printed_at: Some(at),
            completed_at: at,
            card: Some(card.clone()),
            card_last4: Some(card.last4().to_string()),
            lines: vec![ReceiptLine {
                description: "Espresso beans".into(),
                sku: Some("SKU-1".into()),
                quantity_milli: 1000,
                unit_cents: Some(1299),
                amount_cents: 1299,
                discount: false,
            }],
            total_cents: 1299,
            currency: Currency::EUR,
            unbalanced: false,
            unmatched_lines: 0,
        }),
    }
}

/// Connects as STORE/TILL, says hello, subscribes at `digest_version` (no campaigns
/// held) and returns after `Welcome`.
pub(crate) async fn subscribed(
    site: &Site,
    hub: std::net::SocketAddr,
    agent: &AgentId,
    acked: u64,
    digest_version: u64,
) -> Agent {
    let mut client = site.connect(hub, &agent.store, &agent.till).await;
    client
        .send(&Message::Hello {
            agent: agent.clone(),
            journal_last_seq: acked,
            software: "digest-test".into(),
        })
        .await
        .unwrap();
    client
        .send(&Message::Subscribe {
            erasure_version: 0,
            campaign_version: 0,
            digest_version,
            redeemed_version: 0,
        })
        .await
        .unwrap();
    assert_eq!(
        client.recv().await,
        Ok(Message::Welcome { acked_seq: acked })
    );
    client
}

/// The next frame must be a `Digests` frame: (entries, up_to_version, reset).
pub(crate) async fn digests(agent: &mut Agent) -> (Vec<DigestEntry>, u64, bool) {
    match agent.recv().await {
        Ok(Message::Digests {
            entries,
            up_to_version,
            reset,
        }) => (entries, up_to_version, reset),
        other => panic!("expected digests, got {other:?}"),
    }
}

fn only(entries: &[DigestEntry], key: CardKey) -> &Digest {
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].card_key, key);
    entries[0].digest.as_ref().expect("a digest, not a removal")
}

/// Sends one event and expects its ack: proves no other frame was queued before it.
pub(crate) async fn next_frame_is_the_ack(agent: &mut Agent, id: &AgentId, seq: u64) {
    let event = Event {
        agent: id.clone(),
        seq,
        recorded_at: days_ago(0),
        kind: EventKind::Redacted,
    };
    assert_eq!(
        agent.call(&Message::Events(vec![event])).await,
        Ok(Message::Ack { acked_seq: seq })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_store_gets_its_own_customers_then_only_what_changed() {
    let site = Site::new();
    import_crm(&site);
    let hub = site.start().await;
    let s1_till1 = AgentId::new("S001", "T01");
    let s2_till1 = AgentId::new("S002", "T01");
    send_all(
        &site,
        hub.quic_addr(),
        &s1_till1,
        vec![receipt(&s1_till1, 1, &card(ANNA))],
    )
    .await;
    send_all(
        &site,
        hub.quic_addr(),
        &s2_till1,
        vec![receipt(&s2_till1, 1, &card(PIET))],
    )
    .await;
    let refreshed = hub.refresh_digests().await.unwrap();
    assert_eq!(
        refreshed.changed, 3,
        "Anna's card, Piet's two: {refreshed:?}"
    );

    // Another till of S001: Anna only, from scratch.
    let s1_till2 = AgentId::new("S001", "T02");
    let mut t2 = subscribed(&site, hub.quic_addr(), &s1_till2, 0, 0).await;
    let (entries, v1, reset) = digests(&mut t2).await;
    assert!(reset && v1 > 0, "v{v1} reset {reset}");
    let anna = only(&entries, card_key(&site, ANNA)).clone();
    assert!(anna.personalisation_consent);
    assert_eq!(anna.birthday, Some(MonthDay { month: 3, day: 14 }));
    assert_eq!(anna.member_since, NaiveDate::from_ymd_opt(2019, 5, 1));
    assert_eq!(
        anna.last_visit.map(|t| t.unix_ms / 1000),
        receipt_time_s(&site, ANNA)
    );
    assert!(anna.caps_used.is_empty());
    assert_eq!(anna.customer_key.len(), 16);
    next_frame_is_the_ack(&mut t2, &s1_till2, 1).await;

    // S002's tills: Piet only, without consent.
    let s2_till2 = AgentId::new("S002", "T02");
    let mut s2 = subscribed(&site, hub.quic_addr(), &s2_till2, 0, 0).await;
    let (mut entries, _, _) = digests(&mut s2).await;
    assert_eq!(entries.len(), 2, "both of Piet's cards");
    entries.sort_by_key(|e| e.card_key != store_card_key(&site, "S002", PIET));
    assert_eq!(entries[1].card_key, store_card_key(&site, "S002", PIET_2));
    assert_eq!(entries[0].digest, entries[1].digest);
    let piet = only(&entries[..1], store_card_key(&site, "S002", PIET));
    assert!(!piet.personalisation_consent);
    assert_ne!(piet.customer_key, anna.customer_key);
    next_frame_is_the_ack(&mut s2, &s2_till2, 1).await;

    // A coupon for Anna at S001 (a would-have counts too), then a refresh: the
    // connected till gets the delta, nothing else.
    let issued_at = days_ago(0);
    let coupon = Event {
        agent: s1_till2.clone(),
        seq: 2,
        recorded_at: issued_at,
        kind: EventKind::CouponWouldHave(CouponIssue {
            campaign_id: "big-basket".into(),
            code: None,
            card: Some(card(ANNA)),
            customer_key: Some(anna.customer_key.clone()),
            expires: Utc::now().date_naive() + Days::new(14),
            receipt_seq: 1,
        }),
    };
    assert_eq!(
        t2.call(&Message::Events(vec![coupon])).await,
        Ok(Message::Ack { acked_seq: 2 })
    );
    let refreshed = hub.refresh_digests().await.unwrap();
    assert_eq!((refreshed.changed, refreshed.removed), (1, 0));
    let (entries, v2, reset) = digests(&mut t2).await;
    assert!(!reset && v2 > v1, "v{v2} after v{v1}, reset {reset}");
    let capped = only(&entries, card_key(&site, ANNA));
    assert_eq!(
        capped.caps_used,
        vec![("big-basket".to_string(), issued_at)]
    );
    next_frame_is_the_ack(&mut s2, &s2_till2, 2).await;
    drop(t2);

    // Reconnecting: at the newest version nothing comes; at an older one the delta.
    let mut again = subscribed(&site, hub.quic_addr(), &s1_till2, 2, v2).await;
    next_frame_is_the_ack(&mut again, &s1_till2, 3).await;
    drop(again);
    let mut behind = subscribed(&site, hub.quic_addr(), &s1_till2, 3, v1).await;
    let (entries, up_to, reset) = digests(&mut behind).await;
    assert_eq!((up_to, reset), (v2, false));
    assert_eq!(only(&entries, card_key(&site, ANNA)), capped);
    // Holding more than the feed has (a rebuilt hub): reset.
    drop(behind);
    let mut ahead = subscribed(&site, hub.quic_addr(), &s1_till2, 3, v2 + 100).await;
    let (entries, up_to, reset) = digests(&mut ahead).await;
    assert_eq!((up_to, reset), (v2, true));
    assert_eq!(only(&entries, card_key(&site, ANNA)), capped);
    drop(ahead);
    hub.shutdown().await;
}

/// The receipt time of `card`'s visit, in seconds, as the hub stored it.
fn receipt_time_s(site: &Site, code: &str) -> Option<i64> {
    use till360_hub::store::sql::SqlExt as _;
    site.with_db(|db| {
        db.query_value::<Option<i64>>(
            "SELECT max(at_ms) / 1000 FROM transactions WHERE card = ?1",
            till360_hub::sql_params![code],
        )
        .unwrap()
        .flatten()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_gets_any_customers_digest_fresh_and_unknown_cards_none() {
    let site = Site::new();
    import_crm(&site);
    let hub = site.start().await;
    let s2 = AgentId::new("S002", "T01");
    send_all(
        &site,
        hub.quic_addr(),
        &s2,
        vec![receipt(&s2, 1, &card(PIET))],
    )
    .await;

    // S001 never saw Piet and no refresh ran since: the answer comes from the database.
    let s1 = AgentId::new("S001", "T01");
    let mut till = subscribed(&site, hub.quic_addr(), &s1, 0, 0).await;
    match till
        .call(&Message::DigestRequest { card: card(PIET) })
        .await
    {
        Ok(Message::DigestReply {
            card: answered,
            digest: Some(digest),
        }) => {
            assert_eq!(answered, card(PIET));
            // No consent: the key and the caps, none of his profile's fields.
            assert!(!digest.personalisation_consent);
            assert!(digest.last_visit.is_none() && digest.member_since.is_none());
        }
        other => panic!("expected Piet's digest, got {other:?}"),
    }
    // Anna is in the CRM but never shopped: still a customer with a digest.
    match till
        .call(&Message::DigestRequest { card: card(ANNA) })
        .await
    {
        Ok(Message::DigestReply {
            digest: Some(digest),
            ..
        }) => assert_eq!(digest.last_visit, None),
        other => panic!("expected Anna's digest, got {other:?}"),
    }
    assert_eq!(
        till.call(&Message::DigestRequest {
            card: card(STRANGER)
        })
        .await,
        Ok(Message::DigestReply {
            card: card(STRANGER),
            digest: None
        })
    );
    next_frame_is_the_ack(&mut till, &s1, 1).await;
    hub.shutdown().await;
}

fn with_example_campaigns(site: &Site) {
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/campaigns.toml"),
    )
    .unwrap();
    std::fs::write(site.dir.path().join("campaigns.toml"), example).unwrap();
    let config = site.dir.path().join("hub.toml");
    let mut hub = std::fs::read_to_string(&config).unwrap();
    hub.insert_str(0, "campaigns = \"campaigns.toml\"\n");
    std::fs::write(&config, hub).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coupon_check_tells_genuine_from_forged() {
    let site = Site::new();
    with_example_campaigns(&site);
    let hub = site.start().await;
    let master = master(&site);

    // The issuing till connects once: it gets its number and the campaign numbers.
    let issuer = AgentId::new("S001", "T01");
    let mut till = subscribed(&site, hub.quic_addr(), &issuer, 0, 0).await;
    let keyring = match till.recv().await {
        Ok(Message::Campaigns { keyring, .. }) => keyring,
        other => panic!("expected campaigns, got {other:?}"),
    };
    drop(till);
    let campaign = keyring.campaign_number("big-basket").unwrap();
    let expires = Utc::now().date_naive() + Days::new(14);
    let fields = CouponFields::new(campaign, keyring.till_number, expires, 7).unwrap();
    let code = mint(&derive_till_key(&master, "S001", "T01"), &fields);

    // Another store asks.
    let checker = AgentId::new("S002", "T01");
    let mut other = subscribed(&site, hub.quic_addr(), &checker, 0, 0).await;
    assert!(matches!(other.recv().await, Ok(Message::Campaigns { .. })));
    let check = |code: &str| Message::CouponCheck { code: code.into() };
    assert_eq!(
        other.call(&check(code.as_str())).await,
        Ok(Message::CouponVerdict {
            code: code.as_str().into(),
            verdict: CouponVerdict::Valid
        })
    );
    let mut forged = code.as_str().as_bytes().to_vec();
    forged[3] = if forged[3] == b'9' {
        b'0'
    } else {
        forged[3] + 1
    };
    let forged = String::from_utf8(forged).unwrap();
    assert_eq!(
        other.call(&check(&forged)).await,
        Ok(Message::CouponVerdict {
            code: forged.clone(),
            verdict: CouponVerdict::Forged
        })
    );
    // Junk is forged, never a failure: the connection carries on.
    let junk = "x".repeat(300);
    assert_eq!(
        other.call(&check(&junk)).await,
        Ok(Message::CouponVerdict {
            code: junk.clone(),
            verdict: CouponVerdict::Forged
        })
    );
    next_frame_is_the_ack(&mut other, &checker, 1).await;
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_store_is_sent_in_frames_of_at_most_a_thousand() {
    let site = Site::new();
    let hub = site.start().await;
    // 1,500 rows of a store in the feed (written as a refresh writes them).
    let digest = till360_shared::codec::to_bytes(&Digest::default()).unwrap();
    site.with_db(|db| {
        use till360_hub::store::sql::{transaction, TxKind};
        transaction(db, TxKind::Write, |tx| {
            for version in 1..=1500u32 {
                let mut key = [0u8; 16];
                key[..4].copy_from_slice(&version.to_be_bytes());
                tx.execute(
                    "INSERT INTO digest_feed (store, card_key, version, digest)
                     VALUES ('S009', ?1, ?2, ?3)",
                    till360_hub::sql_params![key, version, digest],
                )?;
            }
            Ok(())
        })
        .unwrap()
    });

    let id = AgentId::new("S009", "T01");
    let mut till = subscribed(&site, hub.quic_addr(), &id, 0, 0).await;
    let (first, v, reset) = digests(&mut till).await;
    assert_eq!((first.len(), v, reset), (1000, 1000, true));
    let (rest, v, reset) = digests(&mut till).await;
    assert_eq!((rest.len(), v, reset), (500, 1500, false));
    assert_eq!(rest[0].card_key.0[..4], 1001u32.to_be_bytes());
    next_frame_is_the_ack(&mut till, &id, 1).await;
    drop(till);
    let mut again = subscribed(&site, hub.quic_addr(), &id, 1, 1200).await;
    let (rest, v, reset) = digests(&mut again).await;
    assert_eq!((rest.len(), v, reset), (300, 1500, false));
    next_frame_is_the_ack(&mut again, &id, 2).await;
    hub.shutdown().await;
}
