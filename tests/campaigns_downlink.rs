//! The hub's campaign set and each till's coupon key reach the agent over real parts:
//! a real hub with a `campaigns` file and the agent's real QUIC uplink and SQLite
//! journal on 127.0.0.1. Every wait is bounded; nothing asserts on timing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use till360_agent::config::HubLink;
use till360_agent::journal::Journal;
use till360_agent::uplink::{client_config, Uplink};
use till360_hub::campaigns::MASTER_KEY_FILE;
use till360_hub::config::HubConfig;
use till360_shared::coupon::derive_till_key;
use till360_shared::AgentId;
use tokio::sync::watch;

const DEADLINE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_till_stores_the_campaign_set_and_its_own_key_and_keeps_them_across_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    till360_hub::pki::init_ca(
        &dir.path().join("pki"),
        &["localhost".to_string()],
        &["127.0.0.1".parse().unwrap()],
        false,
    )
    .unwrap();
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/campaigns.toml"),
        dir.path().join("campaigns.toml"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("hub.toml"),
        "campaigns = \"campaigns.toml\"\ndata_dir = \"data\"\nlisten = \"127.0.0.1:0\"\n\
         http = \"127.0.0.1:0\"\nca = \"pki/ca.pem\"\ncert = \"pki/hub.pem\"\nkey = \"pki/hub.key\"\n",
    )
    .unwrap();
    let config = HubConfig::load(dir.path().join("hub.toml")).unwrap();
    let master_path = config.data_dir.join(MASTER_KEY_FILE);
    let hub = till360_hub::server::start(config).await.unwrap();
    let master = std::fs::read(master_path).unwrap();

    let certs = dir.path().join("certs");
    till360_hub::pki::issue_agent(&dir.path().join("pki"), "S001", "T02", &certs).unwrap();
    let agent = AgentId::new("S001", "T02");
    let journal = Arc::new(Mutex::new(
        Journal::open(&dir.path().join("agent"), &agent).unwrap(),
    ));
    let link = HubLink {
        address: hub.quic_addr().to_string(),
        server_name: "localhost".into(),
        ca: certs.join("ca.pem"),
        cert: certs.join("agent.pem"),
        key: certs.join("agent.key"),
        batch_max: 100,
        window: 1000,
        origin: "agent.toml".into(),
    };
    let start_uplink = || {
        Uplink {
            agent: agent.clone(),
            client_config: client_config(&link).unwrap(),
            hub: link.clone(),
            journal: Arc::clone(&journal),
            journal_seq: watch::channel(0).1,
            erased_cards: None,
        }
        .spawn()
    };

    let uplink = start_uplink();
    let mut status = uplink.status();
    let reached = tokio::time::timeout(DEADLINE, status.wait_for(|s| s.campaign_version != 0))
        .await
        .map(|r| r.is_ok());
    assert!(
        matches!(reached, Ok(true)),
        "no campaigns: {:?}",
        *status.borrow()
    );
    let version = status.borrow().campaign_version;
    uplink.shutdown().await;

    let (set, keyring) = journal
        .lock()
        .unwrap()
        .campaigns()
        .unwrap()
        .expect("stored");
    assert_ne!(version, 0);
    assert!(!set.campaigns.is_empty());
    assert_eq!(
        &keyring.till_key,
        derive_till_key(&master, "S001", "T02").as_bytes()
    );
    assert_eq!(keyring.campaign_numbers.len(), set.campaigns.len());
    assert_eq!(
        journal.lock().unwrap().status().unwrap().campaign_version,
        version
    );

    // A reconnect subscribes with the stored version and keeps the set.
    let uplink = start_uplink();
    let mut status = uplink.status();
    tokio::time::timeout(DEADLINE, status.wait_for(|s| s.connected))
        .await
        .expect("reconnects")
        .unwrap();
    assert_eq!(status.borrow().campaign_version, version);
    uplink.shutdown().await;
    assert_eq!(
        journal.lock().unwrap().campaigns().unwrap(),
        Some((set, keyring))
    );
    hub.shutdown().await;
}
