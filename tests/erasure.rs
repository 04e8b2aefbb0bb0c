//! An erase on the hub reaches every till (DESIGN.md principle 7), over real parts:
//! a real hub and the agent's real QUIC uplink and SQLite journal on 127.0.0.1, and
//! the hub and agent as child processes with a virtual till. Erasures are appended to
//! the hub's erasure log directly in its database (what an erase through the API does),
//! because the events under test are, on purpose, not yet on the hub. Every wait is
//! bounded; nothing asserts on timing.

use crate::harness;

use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness::{Site, DEADLINE};
use till360::rig::wait_until;
use till360::sim::{Morning, MorningPlan, ReceiptStyle, StoreSetup, Suffix};
use till360_agent::config::HubLink;
use till360_agent::journal::Journal;
use till360_agent::uplink::{client_config, ErasedCards, Uplink, UplinkHandle, UplinkStatus};
use till360_hub::config::HubConfig;
use till360_hub::server::RunningHub;
use till360_shared::card::with_check_digit;
use till360_shared::{AgentId, CardNumber, EventKind, Timestamp};
use tokio::sync::watch;

fn card(n: u64) -> CardNumber {
    CardNumber::parse(&with_check_digit(&format!("2401{n:08}")).unwrap()).unwrap()
}

/// Appends one erasure per card to the erasure log in the hub database of `config`
/// (creating the schema and the master secret if the hub never ran), as an erase on
/// a hub that knows stores S001 and S002 records it, and returns the last version.
fn record_erasures(config: &HubConfig, cards: &[CardNumber]) -> u64 {
    // Off the async runtime: the PostgreSQL client blocks on a runtime of its own.
    std::thread::scope(|scope| {
        scope
            .spawn(|| record_erasures_blocking(config, cards))
            .join()
            .unwrap()
    })
}

fn record_erasures_blocking(config: &HubConfig, cards: &[CardNumber]) -> u64 {
    // The hub never ran: on PostgreSQL nothing has made its data_dir yet.
    std::fs::create_dir_all(&config.data_dir).unwrap();
    let db = till360_hub::server::open_database(config).expect("hub store");
    let master = till360_hub::campaigns::MasterKey::load_or_create(&config.data_dir).unwrap();
    let suppression = till360_hub::store::erasures::Suppression::from_master(master.as_bytes());
    let stores = ["S001".to_string(), "S002".to_string()];
    let conn = db.get().unwrap();
    let now = Timestamp::from_unix_ms(1_764_060_000_000, 0);
    till360_hub::store::sql::transaction(&*conn, till360_hub::store::sql::TxKind::Write, |tx| {
        let mut version = 0;
        for card in cards {
            let ids = [till360_hub::identity::Identifier::card(card)];
            version =
                till360_hub::store::erasures::record_erasure(tx, &suppression, &ids, &stores, now)?;
        }
        Ok(version)
    })
    .unwrap()
}

/// Tills recognise erased cards by their keyring's card keys, which the hub sends with
/// the campaign set: gives the hub of `config_path` an (empty) campaign file.
fn with_keyrings(config_path: &Path) {
    let dir = config_path.parent().unwrap();
    std::fs::write(dir.join("campaigns-none.toml"), "# no campaigns\n").unwrap();
    let text = std::fs::read_to_string(config_path).unwrap();
    std::fs::write(
        config_path,
        format!("campaigns = \"campaigns-none.toml\"\n{text}"),
    )
    .unwrap();
}

/// The first carded visit at S001 of a morning where everyone scans a valid card.
fn carded_visit(seed: u64) -> till360::sim::Visit {
    let mut plan = MorningPlan::new(seed, 12);
    plan.carded_percent = 100;
    plan.misread_percent = 0;
    let morning = Morning::generate(&plan, &StoreSetup::demo_stores());
    let visit = morning
        .visits_at(0)
        .find(|v| v.card.is_some())
        .expect("a carded visit at S001")
        .clone();
    visit
}

/// `till360 agent status --json` for a till's config, as an IT person would run it.
fn agent_status_json(config: &Path) -> Option<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_till360"))
        .args(["agent", "status", "--json", "--config"])
        .arg(config)
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

/// A hub and agent certificates in one temp folder, everything in-process.
struct InProcess {
    dir: tempfile::TempDir,
}

impl InProcess {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        till360_hub::pki::init_ca(
            &dir.path().join("pki"),
            &["localhost".to_string()],
            &["127.0.0.1".parse().unwrap()],
            false,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("hub.toml"),
            "data_dir = \"data\"\nlisten = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n\
             ca = \"pki/ca.pem\"\ncert = \"pki/hub.pem\"\nkey = \"pki/hub.key\"\n",
        )
        .unwrap();
        with_keyrings(&dir.path().join("hub.toml"));
        InProcess { dir }
    }

    fn config(&self) -> HubConfig {
        HubConfig::load(self.dir.path().join("hub.toml")).unwrap()
    }

    async fn start_hub(&self) -> RunningHub {
        till360_hub::server::start(self.config()).await.unwrap()
    }

    fn erase(&self, cards: &[CardNumber]) -> u64 {
        record_erasures(&self.config(), cards)
    }

    /// A journal for `store/T01` (kept across uplink restarts) and its hub link.
    fn till(&self, store: &str) -> (Arc<Mutex<Journal>>, HubLink) {
        let certs = self.dir.path().join(format!("certs-{store}"));
        till360_hub::pki::issue_agent(&self.dir.path().join("pki"), store, "T01", &certs).unwrap();
        let journal = Journal::open(
            &self.dir.path().join(format!("agent-{store}")),
            &AgentId::new(store, "T01"),
        )
        .unwrap();
        let link = HubLink {
            addresses: vec![String::new()],
            server_name: "localhost".into(),
            ca: certs.join("ca.pem"),
            cert: certs.join("agent.pem"),
            key: certs.join("agent.key"),
            batch_max: 100,
            window: 1000,
            origin: "agent.toml".into(),
        };
        (Arc::new(Mutex::new(journal)), link)
    }
}

/// Starts the agent's real uplink; erased cards it hands on arrive on the receiver.
fn start_uplink(
    store: &str,
    journal: &Arc<Mutex<Journal>>,
    link: &HubLink,
    hub: &RunningHub,
) -> (UplinkHandle, mpsc::Receiver<ErasedCards>) {
    let mut link = link.clone();
    link.addresses = vec![hub.quic_addr().to_string()];
    let last = journal.lock().unwrap().last_seq();
    let (erased_tx, erased_rx) = mpsc::channel();
    let uplink = Uplink {
        agent: AgentId::new(store, "T01"),
        client_config: client_config(&link).unwrap(),
        hub: link,
        journal: Arc::clone(journal),
        journal_seq: watch::channel(last).1,
        erased_cards: Some(erased_tx),
        news: None,
        requests: None,
        request_timeout: till360_agent::uplink::DEFAULT_REQUEST_TIMEOUT,
    }
    .spawn();
    (uplink, erased_rx)
}

async fn wait_erasure_version(status: &mut watch::Receiver<UplinkStatus>, version: u64) {
    let reached = tokio::time::timeout(DEADLINE, status.wait_for(|s| s.erasure_version >= version))
        .await
        .map(|r| r.is_ok());
    assert!(
        matches!(reached, Ok(true)),
        "the agent never applied erasure version {version}: {:?}",
        *status.borrow()
    );
}

/// Every card (among cards 1 to 9) the uplink handed on as erased so far, in order.
fn handed_on(rx: &mpsc::Receiver<ErasedCards>) -> Vec<CardNumber> {
    rx.try_iter()
        .flat_map(|erased| {
            (1..=9)
                .map(card)
                .filter(|c| erased.names(c))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasures_reach_connected_reconnecting_and_fresh_agents() {
    let site = InProcess::new();
    let hub = site.start_hub().await;
    let (journal, link) = site.till("S001");
    // An unacknowledged scan of the card that will be erased, and one of another card.
    {
        let mut j = journal.lock().unwrap();
        let at = Timestamp::from_unix_ms(1_764_060_000_000, 60);
        j.append(at, EventKind::CardScanned { card: card(1) })
            .unwrap();
        j.append(at, EventKind::CardScanned { card: card(9) })
            .unwrap();
    }

    // Connected while the erasure is recorded: it arrives within the bounded wait.
    let (uplink, erased) = start_uplink("S001", &journal, &link, &hub);
    let mut status = uplink.status();
    tokio::time::timeout(
        DEADLINE,
        status.wait_for(|s| s.connected && s.acked_seq == 2),
    )
    .await
    .expect("the agent connects and syncs")
    .unwrap();
    assert_eq!(site.erase(&[card(1)]), 1);
    wait_erasure_version(&mut status, 1).await;
    assert_eq!(journal.lock().unwrap().erasure_version().unwrap(), 1);
    assert_eq!(handed_on(&erased), vec![card(1)]);
    uplink.shutdown().await;

    // Offline while two more are recorded: the reconnect brings only the delta.
    assert_eq!(site.erase(&[card(2), card(3)]), 3);
    let (uplink, erased) = start_uplink("S001", &journal, &link, &hub);
    let mut status = uplink.status();
    wait_erasure_version(&mut status, 3).await;
    assert_eq!(handed_on(&erased), vec![card(2), card(3)]);
    // The journal goes on after the erasures: seqs continue.
    {
        let mut j = journal.lock().unwrap();
        let at = Timestamp::from_unix_ms(1_764_060_001_000, 60);
        let seq = j
            .append(at, EventKind::CardScanned { card: card(4) })
            .unwrap()
            .seq;
        assert_eq!(seq, 3, "seqs continue");
    }
    uplink.shutdown().await;

    // A fresh till (version 0) gets every erasure.
    let (fresh, fresh_link) = site.till("S002");
    let (uplink, erased) = start_uplink("S002", &fresh, &fresh_link, &hub);
    let mut status = uplink.status();
    wait_erasure_version(&mut status, 3).await;
    assert_eq!(handed_on(&erased), vec![card(1), card(2), card(3)]);
    assert_eq!(fresh.lock().unwrap().status().unwrap().erasure_version, 3);
    uplink.shutdown().await;
    hub.shutdown().await;
}

/// The hub's `Welcome` and an erasure backlog arrive back to back while the journal
/// still holds events of the erased card: the uplink applies the one and syncs the
/// other, in whichever order it handles them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_backlog_and_unsynced_events_both_get_through() {
    let site = InProcess::new();
    let (journal, link) = site.till("S001");
    {
        let mut j = journal.lock().unwrap();
        let at = Timestamp::from_unix_ms(1_764_060_000_000, 60);
        j.append(at, EventKind::CardScanned { card: card(1) })
            .unwrap();
        j.append(at, EventKind::CardScanned { card: card(2) })
            .unwrap();
    }
    assert_eq!(site.erase(&[card(1)]), 1);
    let hub = site.start_hub().await;
    let (uplink, _erased) = start_uplink("S001", &journal, &link, &hub);
    let mut status = uplink.status();
    wait_erasure_version(&mut status, 1).await;
    tokio::time::timeout(DEADLINE, status.wait_for(|s| s.acked_seq == 2))
        .await
        .expect("both events reach the hub")
        .unwrap();
    uplink.shutdown().await;
    hub.shutdown().await;
    let j = journal.lock().unwrap();
    assert_eq!(j.status().unwrap().erasure_version, 1);
    assert_eq!(j.status().unwrap().pending, 0);
}

/// The hub and the agent as processes: a card is scanned and its receipt printed while
/// the hub is down; the card is erased on the hub meanwhile. When the hub comes up, the
/// agent's status shows the erasure version and no unacknowledged event carries the card.
#[test]
fn an_erase_reaches_an_agent_process_with_unsynced_events() {
    let site = Site::new();
    with_keyrings(&site.hub.config);
    let visit = carded_visit(404);
    let erased = CardNumber::parse(visit.card.as_deref().expect("a card")).unwrap();

    let mut till = site.till("S001", ReceiptStyle::Supermarket, Suffix::Cr, 5);
    let mut agent = site.start_agent(&till);
    till.play(&visit);
    let agent_id = AgentId::new("S001", "T01");
    let journaled = wait_until(DEADLINE, || {
        agent.assert_running();
        let j = Journal::open_existing(&till.data_dir, &agent_id).ok()?;
        let events = j.read_from(1, 100).ok()?;
        let carded = events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::Receipt(r) if r.card.as_ref() == Some(&erased)));
        carded.then_some(events.len())
    });
    assert!(
        journaled.is_some(),
        "the scan and receipt were not journaled:\n{}",
        harness::read_log(&agent.log)
    );

    let config = HubConfig::load(&site.hub.config).unwrap();
    assert_eq!(record_erasures(&config, std::slice::from_ref(&erased)), 1);
    let hub = site.start_hub();

    let status_json = || agent_status_json(&till.config);
    let applied = wait_until(DEADLINE, || {
        agent.assert_running();
        status_json().filter(|s| s["erasure_version"] == 1)
    });
    assert!(
        applied.is_some(),
        "the agent never applied the erasure; status {:?}\nagent log:\n{}\nhub log:\n{}",
        status_json(),
        harness::read_log(&agent.log),
        harness::read_log(&hub.log)
    );
    let j = Journal::open_existing(&till.data_dir, &agent_id).unwrap();
    let left = j.read_from(j.acked_seq() + 1, 1000).unwrap();
    let carrying: Vec<u64> = left
        .iter()
        .filter(|e| match &e.kind {
            EventKind::CardScanned { card } => card == &erased,
            EventKind::Receipt(r) => r.card.as_ref() == Some(&erased),
            EventKind::CouponIssued(c) | EventKind::CouponWouldHave(c) => {
                c.card.as_ref() == Some(&erased)
            }
            EventKind::Redacted
            | EventKind::CouponRedeemed(_)
            | EventKind::CouponRefused { .. }
            | EventKind::Quarantined { .. } => false,
        })
        .map(|e| e.seq)
        .collect();
    assert!(
        carrying.is_empty(),
        "unacknowledged events still carry the erased card: seqs {carrying:?}"
    );
    agent.kill();
}

/// `DELETE path` over a raw socket; returns the status code and the body.
fn http_delete(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "DELETE {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = raw.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

/// The whole path a person's erase takes: a carded receipt synced to the hub, the
/// profile erased through the API, the erasure pushed to the connected agent process,
/// and the hub answering 404 for the card and the export afterwards.
#[test]
fn an_erase_through_the_api_reaches_the_agent() {
    let site = Site::new();
    with_keyrings(&site.hub.config);
    let visit = carded_visit(606);
    let card = visit.card.clone().expect("a card");

    let hub = site.start_hub();
    let mut till = site.till("S001", ReceiptStyle::Supermarket, Suffix::Cr, 9);
    let mut agent = site.start_agent(&till);
    till.play(&visit);
    // The card's scan can reach the hub in a batch of its own before the receipt: wait
    // for the receipt, not just the profile.
    let profile = wait_until(DEADLINE, || {
        agent.assert_running();
        site.profile(&card)
            .filter(|profile| profile["transactions"]["count"] == 1)
    });
    let profile = profile.unwrap_or_else(|| {
        panic!(
            "the receipt never reached the hub:\n{}",
            harness::read_log(&hub.log)
        )
    });
    let id = profile["profile_id"]
        .as_str()
        .expect("profile_id")
        .to_string();
    assert_eq!(profile["transactions"]["count"], 1);

    let (status, body) = http_delete(site.hub.http, &format!("/api/v1/profiles/{id}"));
    assert_eq!(status, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).expect("an erasure report");
    let version = report["erasure_version"].as_u64().expect("erasure_version");
    assert!(version >= 1, "{report}");

    let status_json = || agent_status_json(&till.config);
    let applied = wait_until(DEADLINE, || {
        agent.assert_running();
        status_json().filter(|s| s["erasure_version"].as_u64() == Some(version))
    });
    assert!(
        applied.is_some(),
        "the agent never applied erasure {version}; status {:?}\nagent log:\n{}",
        status_json(),
        harness::read_log(&agent.log)
    );
    assert_eq!(
        site.status_of(&format!("/api/v1/profiles/by-card/{card}")),
        Some(404)
    );
    assert_eq!(
        site.status_of(&format!("/api/v1/profiles/{id}/export")),
        Some(404)
    );
    // The receipt stays in the store's statistics, anonymised.
    let agents = site.get("/api/v1/agents").and_then(|r| r.json()).unwrap();
    assert!(agents[0]["last_seq"].as_u64().unwrap_or(0) >= 2, "{agents}");
    agent.kill();
}
