//! The campaign downlink over real QUIC sockets on 127.0.0.1 with a protocol-level test
//! client: an agent holding another campaign version gets the set and its own coupon
//! key (derived from the master secret for its certificate's store/till) after
//! `Welcome`; an agent up to date gets nothing; the master secret survives a restart.

use crate::common;

use common::{Agent, Site};
use till360_hub::campaigns::MASTER_KEY_FILE;
use till360_shared::coupon::{derive_digest_key, derive_till_key, Keyring};
use till360_shared::wire::Message;
use till360_shared::{AgentId, Event, EventKind, Timestamp};

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

fn master(site: &Site) -> Vec<u8> {
    std::fs::read(site.config().data_dir.join(MASTER_KEY_FILE)).unwrap()
}

/// Connects as STORE/TILL, says hello and subscribes at `campaign_version`; returns
/// after `Welcome`.
async fn subscribed(
    site: &Site,
    hub: std::net::SocketAddr,
    store: &str,
    till: &str,
    campaign_version: u64,
) -> Agent {
    let dir = site.agent(store, till);
    let mut agent = Agent::connect(hub, &dir.join("ca.pem"), Some(&dir))
        .await
        .unwrap();
    agent
        .send(&Message::Hello {
            agent: AgentId::new(store, till),
            journal_last_seq: 0,
            software: "downlink-test".into(),
        })
        .await
        .unwrap();
    agent
        .send(&Message::Subscribe {
            erasure_version: 0,
            campaign_version,
            digest_version: 0,
            redeemed_version: 0,
        })
        .await
        .unwrap();
    assert_eq!(agent.recv().await, Ok(Message::Welcome { acked_seq: 0 }));
    agent
}

/// The `Campaigns` frame an agent gets right after `Welcome`: (frame version, campaign
/// count, till key).
async fn campaigns(agent: &mut Agent) -> (u64, usize, [u8; 32]) {
    let (version, count, keyring) = keyring(agent).await;
    (version, count, keyring.till_key)
}

async fn keyring(agent: &mut Agent) -> (u64, usize, Keyring) {
    match agent.recv().await {
        Ok(Message::Campaigns {
            version,
            set,
            keyring,
            ..
        }) => (version, set.campaigns.len(), keyring),
        other => panic!("expected campaigns, got {other:?}"),
    }
}

/// Sends one event and expects its ack: proves no other frame was queued before it.
async fn next_frame_is_the_ack(agent: &mut Agent, store: &str, till: &str) {
    let event = Event {
        agent: AgentId::new(store, till),
        seq: 1,
        recorded_at: Timestamp::from_unix_ms(1_764_060_000_000, 60),
        kind: EventKind::Redacted,
    };
    assert_eq!(
        agent.call(&Message::Events(vec![event])).await,
        Ok(Message::Ack { acked_seq: 1 })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_agent_gets_the_set_and_its_own_key_and_an_up_to_date_one_nothing() {
    let site = Site::new();
    with_example_campaigns(&site);
    let hub = site.start().await;
    let master = master(&site);
    assert_eq!(master.len(), 32);

    let mut t1 = subscribed(&site, hub.quic_addr(), "S001", "T01", 0).await;
    let (version, count, key1) = campaigns(&mut t1).await;
    assert!(
        version > 0 && count > 0,
        "version {version}, {count} campaigns"
    );
    assert_eq!(&key1, derive_till_key(&master, "S001", "T01").as_bytes());
    next_frame_is_the_ack(&mut t1, "S001", "T01").await;

    let mut t2 = subscribed(&site, hub.quic_addr(), "S001", "T02", 0).await;
    let (t2_version, _, ring2) = keyring(&mut t2).await;
    let key2 = ring2.till_key;
    assert_eq!(&key2, derive_till_key(&master, "S001", "T02").as_bytes());
    assert_ne!(key1, key2, "every till signs with its own key");
    assert_ne!(
        t2_version, version,
        "the version covers the till's own keyring"
    );
    assert_eq!(ring2.digest_key, derive_digest_key(&master, "S001"));
    // T02 can check T01's codes offline: same store.
    let t1_number = ring2
        .store_tills
        .iter()
        .find(|(n, _)| *n != ring2.till_number)
        .map(|(n, key)| (*n, *key));
    assert_eq!(t1_number.map(|(_, key)| key), Some(key1));
    assert_eq!(
        ring2.campaign_numbers.len(),
        count,
        "every campaign numbered"
    );

    // A stale version also gets the set; another store's tills are not in its ring.
    let mut stale = subscribed(&site, hub.quic_addr(), "S002", "T01", version + 1).await;
    let (_, _, ring3) = keyring(&mut stale).await;
    assert_eq!(ring3.store_tills.len(), 1);
    assert_eq!(ring3.campaign_numbers, ring2.campaign_numbers);

    let mut fresh = subscribed(&site, hub.quic_addr(), "S003", "T01", 0).await;
    let (s3_version, _, _) = campaigns(&mut fresh).await;
    drop(fresh);
    let mut current = subscribed(&site, hub.quic_addr(), "S003", "T01", s3_version).await;
    next_frame_is_the_ack(&mut current, "S003", "T01").await;
    hub.shutdown().await;
}

/// One till's disk must not unlock the card keys of the whole chain: the key that
/// pseudonymises cards is per store, the same for every till of that store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_keyrings_give_different_card_keys_for_the_same_card() {
    let site = Site::new();
    with_example_campaigns(&site);
    let hub = site.start().await;
    let mut rings = Vec::new();
    for (store, till) in [("S001", "T01"), ("S001", "T02"), ("S002", "T01")] {
        let mut agent = subscribed(&site, hub.quic_addr(), store, till, 0).await;
        rings.push(keyring(&mut agent).await.2);
    }
    let card = till360_shared::CardNumber::parse("4006381333931").unwrap();
    assert_eq!(
        rings[0].card_key(&card),
        rings[1].card_key(&card),
        "one store"
    );
    assert_ne!(
        rings[0].card_key(&card),
        rings[2].card_key(&card),
        "another store, another card key"
    );
    assert_ne!(rings[0].digest_key, rings[2].digest_key);
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_secret_persists_across_a_restart() {
    let site = Site::new();
    with_example_campaigns(&site);
    let hub = site.start().await;
    let first = master(&site);
    let mut agent = subscribed(&site, hub.quic_addr(), "S001", "T01", 0).await;
    let (_, _, before) = campaigns(&mut agent).await;
    drop(agent);
    hub.shutdown().await;

    let hub = site.start().await;
    assert_eq!(master(&site), first);
    let mut agent = subscribed(&site, hub.quic_addr(), "S001", "T01", 0).await;
    let (_, _, after) = campaigns(&mut agent).await;
    assert_eq!(
        after, before,
        "the same till gets the same key after a restart"
    );
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_campaigns_nothing_is_sent_but_the_master_secret_exists() {
    let site = Site::new();
    let hub = site.start().await;
    assert_eq!(master(&site).len(), 32);
    let mut agent = subscribed(&site, hub.quic_addr(), "S001", "T01", 0).await;
    next_frame_is_the_ack(&mut agent, "S001", "T01").await;
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_master_secret_stops_the_hub_naming_the_file() {
    let site = Site::new();
    let data_dir = site.config().data_dir;
    std::fs::create_dir_all(&data_dir).unwrap();
    std::fs::write(data_dir.join(MASTER_KEY_FILE), b"short").unwrap();
    // Private, so what stops the hub is the content (a key others can read is refused
    // for that alone: `pki::a_key_file_others_can_read_stops_the_hub_at_start`).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        data_dir.join(MASTER_KEY_FILE),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let err = till360_hub::server::start(site.config())
        .await
        .err()
        .expect("the hub refuses to start");
    let text = format!("{err:#}");
    assert!(text.contains(MASTER_KEY_FILE), "{text}");
    assert_eq!(
        std::fs::read(data_dir.join(MASTER_KEY_FILE)).unwrap(),
        b"short"
    );
}
