//! The hub's campaign set, each till's keyring and the catalog reach the agent over real
//! parts: a real hub with a `campaigns` file and the agent's real QUIC uplink and SQLite
//! journal on 127.0.0.1. The till core's requests (a coupon check, a card's digest) go
//! through the same uplink and come back as news, or as "unanswered" when the hub cannot
//! be asked in time. Every wait is bounded; nothing asserts on timing.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use till360_agent::config::HubLink;
use till360_agent::hub_link::{CampaignState, HubNews, HubRequest, NewsSink};
use till360_agent::journal::Journal;
use till360_agent::uplink::{client_config, Uplink, UplinkHandle, DEFAULT_REQUEST_TIMEOUT};
use till360_hub::campaigns::MASTER_KEY_FILE;
use till360_hub::config::HubConfig;
use till360_shared::coupon::{derive_digest_key, derive_till_key, mint, CouponFields};
use till360_shared::wire::CouponVerdict;
use till360_shared::{AgentId, CardNumber};
use tokio::sync::mpsc;
use tokio::sync::watch;

const DEADLINE: Duration = Duration::from_secs(30);
/// Generous, so a busy test machine still gets its answers in time.
const PATIENT: Duration = Duration::from_secs(10);

struct TestHub {
    dir: tempfile::TempDir,
    hub: Option<till360_hub::server::RunningHub>,
    master: Vec<u8>,
    link: HubLink,
}

async fn start_hub() -> TestHub {
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
    let link = HubLink {
        addresses: vec![hub.quic_addr().to_string()],
        server_name: "localhost".into(),
        ca: certs.join("ca.pem"),
        cert: certs.join("agent.pem"),
        key: certs.join("agent.key"),
        batch_max: 100,
        window: 1000,
        origin: "agent.toml".into(),
    };
    TestHub {
        dir,
        hub: Some(hub),
        master,
        link,
    }
}

impl TestHub {
    fn journal_dir(&self) -> PathBuf {
        self.dir.path().join("agent")
    }

    async fn shutdown(mut self) {
        if let Some(hub) = self.hub.take() {
            hub.shutdown().await;
        }
    }
}

fn agent() -> AgentId {
    AgentId::new("S001", "T02")
}

/// A running uplink with the till core's ends: its news and its request queue.
struct TillEnd {
    uplink: UplinkHandle,
    news: mpsc::UnboundedReceiver<HubNews>,
    requests: mpsc::UnboundedSender<HubRequest>,
}

fn start_uplink(
    link: &HubLink,
    journal: &Arc<Mutex<Journal>>,
    request_timeout: Duration,
) -> TillEnd {
    let (news_tx, news) = mpsc::unbounded_channel();
    let sink: NewsSink = Arc::new(move |n| {
        let _ = news_tx.send(n);
    });
    let (requests, requests_rx) = mpsc::unbounded_channel();
    let uplink = Uplink {
        agent: agent(),
        client_config: client_config(link).unwrap(),
        hub: link.clone(),
        journal: Arc::clone(journal),
        journal_seq: watch::channel(0).1,
        erased_cards: None,
        news: Some(sink),
        requests: Some(requests_rx),
        request_timeout,
    }
    .spawn();
    TillEnd {
        uplink,
        news,
        requests,
    }
}

impl TillEnd {
    /// The next news `pick` accepts; the news skipped on the way is returned too.
    async fn wait_for<T>(&mut self, pick: impl Fn(&HubNews) -> Option<T>) -> (T, Vec<HubNews>) {
        let mut skipped = Vec::new();
        let found = tokio::time::timeout(DEADLINE, async {
            while let Some(n) = self.news.recv().await {
                if let Some(t) = pick(&n) {
                    return Some(t);
                }
                skipped.push(n);
            }
            None
        })
        .await;
        match found {
            Ok(Some(t)) => (t, skipped),
            other => panic!(
                "news not delivered ({}): skipped {skipped:?}",
                if other.is_err() { "deadline" } else { "closed" }
            ),
        }
    }

    async fn campaigns(&mut self) -> (CampaignState, Vec<HubNews>) {
        self.wait_for(|n| match n {
            HubNews::Campaigns(state) => Some((**state).clone()),
            _ => None,
        })
        .await
    }

    async fn verdict_of(&mut self, code: &str) -> (Option<CouponVerdict>, Vec<HubNews>) {
        self.requests
            .send(HubRequest::CouponCheck { code: code.into() })
            .unwrap();
        let code = code.to_string();
        self.wait_for(move |n| match n {
            HubNews::CouponVerdict { code: c, verdict } if *c == code => Some(*verdict),
            _ => None,
        })
        .await
    }

    /// Stops the uplink and returns every news it still delivered.
    async fn stop(mut self) -> Vec<HubNews> {
        self.uplink.shutdown().await;
        let mut rest = Vec::new();
        while let Ok(n) = self.news.try_recv() {
            rest.push(n);
        }
        rest
    }
}

fn genuine_code(state: &CampaignState, serial: u16) -> String {
    let (_, number) = state.keyring.campaign_numbers[0];
    let expires = chrono::Local::now().date_naive() + chrono::Duration::days(5);
    let fields = CouponFields::new(number, state.keyring.till_number, expires, serial).unwrap();
    mint(&state.keyring.till_key(), &fields)
        .as_str()
        .to_string()
}

/// The same code with one digit changed.
fn tampered(code: &str) -> String {
    let mut chars: Vec<char> = code.chars().collect();
    let i = chars.iter().rposition(|c| c.is_ascii_digit()).unwrap();
    chars[i] = if chars[i] == '1' { '2' } else { '1' };
    chars.into_iter().collect()
}

fn card() -> CardNumber {
    CardNumber::parse("6299001234567").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_till_stores_the_campaign_state_tells_the_till_core_and_keeps_it_across_reconnects() {
    let hub = start_hub().await;
    let journal = Arc::new(Mutex::new(
        Journal::open(&hub.journal_dir(), &agent()).unwrap(),
    ));

    let mut till = start_uplink(&hub.link, &journal, DEFAULT_REQUEST_TIMEOUT);
    let (state, before) = till.campaigns().await;
    assert!(
        before.contains(&HubNews::Online(true)),
        "online before the frame: {before:?}"
    );
    let status = till.uplink.status().borrow().clone();
    let after = till.stop().await;
    assert!(after.contains(&HubNews::Online(false)), "{after:?}");

    // What the till core was told is what the journal holds.
    let stored = journal
        .lock()
        .unwrap()
        .campaigns()
        .unwrap()
        .expect("stored");
    assert_eq!(stored, state);
    assert_ne!(state.version, 0);
    assert_eq!(status.campaign_version, state.version);
    assert!(!state.set.campaigns.is_empty());
    assert_eq!(
        &state.keyring.till_key,
        derive_till_key(&hub.master, "S001", "T02").as_bytes()
    );
    assert_eq!(
        state.keyring.digest_key,
        derive_digest_key(&hub.master, "S001")
    );
    assert_eq!(
        state.keyring.campaign_numbers.len(),
        state.set.campaigns.len()
    );
    assert!(
        state.catalog.iter().all(|item| !item.sku.is_empty()),
        "{:?}",
        state.catalog
    );
    assert_eq!(
        journal.lock().unwrap().status().unwrap().campaign_version,
        state.version
    );

    // A reconnect subscribes with the stored version and keeps the state.
    let till = start_uplink(&hub.link, &journal, DEFAULT_REQUEST_TIMEOUT);
    let mut status = till.uplink.status();
    tokio::time::timeout(DEADLINE, status.wait_for(|s| s.connected))
        .await
        .expect("reconnects")
        .unwrap();
    assert_eq!(status.borrow().campaign_version, state.version);
    till.stop().await;
    assert_eq!(journal.lock().unwrap().campaigns().unwrap(), Some(state));
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_answers_coupon_checks_and_digest_requests() {
    let hub = start_hub().await;
    let journal = Arc::new(Mutex::new(
        Journal::open(&hub.journal_dir(), &agent()).unwrap(),
    ));
    let mut till = start_uplink(&hub.link, &journal, PATIENT);
    let (state, _) = till.campaigns().await;

    let code = genuine_code(&state, 0);
    assert_eq!(till.verdict_of(&code).await.0, Some(CouponVerdict::Valid));
    assert_eq!(
        till.verdict_of(&tampered(&code)).await.0,
        Some(CouponVerdict::Forged)
    );

    // A card the hub knows nothing of: an answer without a digest, and nothing cached.
    till.requests
        .send(HubRequest::Digest { card: card() })
        .unwrap();
    let (digest, _) = till
        .wait_for(|n| match n {
            HubNews::Digest { card: c, digest } if *c == card() => Some(digest.clone()),
            _ => None,
        })
        .await;
    assert_eq!(digest, None);
    assert!(journal.lock().unwrap().digests().unwrap().is_empty());
    till.stop().await;
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_later_than_the_timeout_count_as_none() {
    let hub = start_hub().await;
    let journal = Arc::new(Mutex::new(
        Journal::open(&hub.journal_dir(), &agent()).unwrap(),
    ));
    // No answer can be in time: every request is unanswered at its deadline.
    let mut till = start_uplink(&hub.link, &journal, Duration::ZERO);
    let (state, _) = till.campaigns().await;
    till.requests
        .send(HubRequest::Digest { card: card() })
        .unwrap();
    let (first, mut seen) = till.verdict_of(&genuine_code(&state, 1)).await;
    assert_eq!(first, None);
    // The hub answers in order, so by the second verdict's deadline the late answers
    // to the first requests have had their chance to be (wrongly) passed on.
    let (second, more) = till.verdict_of(&genuine_code(&state, 2)).await;
    assert_eq!(second, None);
    seen.extend(more);
    seen.extend(till.stop().await);
    assert!(
        !seen.iter().any(|n| matches!(
            n,
            HubNews::Digest { .. }
                | HubNews::CouponVerdict {
                    verdict: Some(_),
                    ..
                }
        )),
        "{seen:?}"
    );
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_hub_a_coupon_check_is_unanswered_at_once_and_a_digest_request_gets_nothing() {
    let hub = start_hub().await;
    let mut link = hub.link.clone();
    // A port nobody listens on.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    link.addresses = vec![socket.local_addr().unwrap().to_string()];
    drop(socket);
    let journal = Arc::new(Mutex::new(
        Journal::open(&hub.journal_dir(), &agent()).unwrap(),
    ));
    let mut till = start_uplink(&link, &journal, PATIENT);
    till.requests
        .send(HubRequest::Digest { card: card() })
        .unwrap();
    // Requests are answered in order: a digest answer would come before this verdict.
    let (verdict, before) = till.verdict_of("123456789012345678901").await;
    assert_eq!(verdict, None);
    assert!(before.is_empty(), "{before:?}");
    let after = till.stop().await;
    assert!(
        !after
            .iter()
            .any(|n| matches!(n, HubNews::Digest { .. } | HubNews::Online(_))),
        "{after:?}"
    );
    hub.shutdown().await;
}
