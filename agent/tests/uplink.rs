//! The uplink against a tiny in-test hub (quinn server, mutual TLS on 127.0.0.1):
//! journal events arrive in order exactly once, acks compact the journal, and a
//! dropped connection resumes from the hub's `Welcome`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use till360_agent::config::HubLink;
use till360_agent::journal::Journal;
use till360_agent::uplink::{client_config, Uplink, UplinkStatus};
use till360_shared::card::with_check_digit;
use till360_shared::codec::{encode_frame, FrameDecoder};
use till360_shared::sync::plan_ingest;
use till360_shared::wire::{Message, ALPN};
use till360_shared::{AgentId, CardNumber, Event, EventKind, Timestamp};
use tokio::sync::watch;

/// A deadlock guard, not a timing assertion.
const GIVE_UP: Duration = Duration::from_secs(30);

fn agent() -> AgentId {
    AgentId::new("S001", "T01")
}

struct Pki {
    ca_der: CertificateDer<'static>,
    hub_chain: Vec<CertificateDer<'static>>,
    hub_key: PrivateKeyDer<'static>,
}

impl Pki {
    /// The same CA and hub certificate, for a second hub.
    fn copy(&self) -> Pki {
        Pki {
            ca_der: self.ca_der.clone(),
            hub_chain: self.hub_chain.clone(),
            hub_key: self.hub_key.clone_key(),
        }
    }
}

/// Writes `ca.pem`, `agent.pem`, `agent.key` into `dir` and returns the hub's side.
fn pki(dir: &Path) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let hub_key = KeyPair::generate().unwrap();
    let hub_cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&hub_key, &issuer)
        .unwrap();
    let agent_key = KeyPair::generate().unwrap();
    let agent_cert = CertificateParams::new(vec!["S001-T01".to_string()])
        .unwrap()
        .signed_by(&agent_key, &issuer)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("agent.pem"), agent_cert.pem()).unwrap();
    std::fs::write(dir.join("agent.key"), agent_key.serialize_pem()).unwrap();
    Pki {
        ca_der: ca_cert.der().clone(),
        hub_chain: vec![hub_cert.der().clone()],
        hub_key: PrivateKeyDer::from_pem_slice(hub_key.serialize_pem().as_bytes()).unwrap(),
    }
}

/// What the fake hub has committed.
#[derive(Default)]
struct HubState {
    high_water: u64,
    merged: Vec<Event>,
    /// `Chain` claims: (seq, whether the claim equals the chain over `merged`).
    claims: Vec<(u64, bool)>,
    /// Health reports received (one per connection at least).
    health: Vec<till360_shared::wire::TillHealth>,
    connections: usize,
}

fn hub_endpoint(pki: Pki) -> quinn::Endpoint {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(pki.hub_chain, pki.hub_key)
        .unwrap();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap();
    let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap()
}

/// Serves connections forever; the first connection is dropped after `drop_after`
/// acks to force a reconnect.
async fn serve_hub(endpoint: quinn::Endpoint, state: Arc<Mutex<HubState>>, drop_after: usize) {
    while let Some(incoming) = endpoint.accept().await {
        let Ok(conn) = incoming.await else { continue };
        let first = {
            let mut s = state.lock().unwrap();
            s.connections += 1;
            s.connections == 1
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let Ok((mut send, mut recv)) = conn.accept_bi().await else {
                return;
            };
            let mut decoder = FrameDecoder::new();
            let mut buf = vec![0u8; 65536];
            let mut acks = 0;
            loop {
                let Ok(Some(n)) = recv.read(&mut buf).await else {
                    return;
                };
                decoder.feed(&buf[..n]);
                while let Some(msg) = decoder.poll().unwrap() {
                    let reply = match msg {
                        Message::Hello { agent: who, .. } => {
                            assert_eq!(who, agent());
                            Message::Welcome {
                                acked_seq: state.lock().unwrap().high_water,
                            }
                        }
                        // This fake hub has no downlink and no clock check.
                        Message::Subscribe { .. } | Message::TillClock { .. } => continue,
                        Message::Chain { last_seq, hash } => {
                            let mut s = state.lock().unwrap();
                            let upto = s.merged.iter().take_while(|e| e.seq <= last_seq);
                            let ours = upto.fold(till360_shared::chain::GENESIS, |prev, e| {
                                till360_shared::chain::link(&prev, e).unwrap()
                            });
                            s.claims.push((last_seq, ours == hash));
                            continue;
                        }
                        Message::Health(health) => {
                            state.lock().unwrap().health.push(health);
                            continue;
                        }
                        Message::Events(batch) => {
                            let mut s = state.lock().unwrap();
                            let plan = plan_ingest(&agent(), s.high_water, &batch)
                                .expect("the agent sends contiguous batches");
                            s.merged.extend_from_slice(&batch[plan.first_new..]);
                            s.high_water = plan.new_high_water;
                            Message::Ack {
                                acked_seq: s.high_water,
                            }
                        }
                        other => panic!("unexpected {other:?}"),
                    };
                    send.write_all(&encode_frame(&reply).unwrap())
                        .await
                        .unwrap();
                    if matches!(reply, Message::Ack { .. }) {
                        acks += 1;
                        if first && acks == drop_after {
                            conn.close(1u32.into(), b"test drops the first connection");
                            return;
                        }
                    }
                }
            }
        });
    }
}

fn scan(n: u64) -> EventKind {
    EventKind::CardScanned {
        card: CardNumber::parse(&with_check_digit(&format!("2401{n:08}")).unwrap()).unwrap(),
    }
}

async fn wait_acked(status: &mut watch::Receiver<UplinkStatus>, seq: u64) {
    let reached = tokio::time::timeout(GIVE_UP, status.wait_for(|s| s.acked_seq >= seq))
        .await
        .map(|r| r.is_ok());
    assert!(
        matches!(reached, Ok(true)),
        "hub never acked {seq}: {:?}",
        *status.borrow()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_the_hub_once_and_acks_compact_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = hub_endpoint(pki(dir.path()));
    let addr: SocketAddr = endpoint.local_addr().unwrap();
    let state = Arc::new(Mutex::new(HubState::default()));
    let server = tokio::spawn(serve_hub(endpoint.clone(), Arc::clone(&state), 2));

    let hub = HubLink {
        addresses: vec![addr.to_string()],
        server_name: "localhost".into(),
        ca: dir.path().join("ca.pem"),
        cert: dir.path().join("agent.pem"),
        key: dir.path().join("agent.key"),
        batch_max: 2,
        window: 3,
        origin: "agent.toml".into(),
    };
    let mut journal = Journal::open(&dir.path().join("data"), &agent()).unwrap();
    for n in 1..=7 {
        journal
            .append(Timestamp::from_unix_ms(n as i64, 60), scan(n))
            .unwrap();
    }
    let journal = Arc::new(Mutex::new(journal));
    let (seq_tx, journal_seq) = watch::channel(7u64);
    let uplink = Uplink {
        agent: agent(),
        client_config: client_config(&hub).unwrap(),
        hub,
        journal: Arc::clone(&journal),
        journal_seq,
        erased_cards: None,
        news: None,
        requests: None,
        request_timeout: till360_agent::uplink::DEFAULT_REQUEST_TIMEOUT,
    }
    .spawn();
    let mut status = uplink.status();
    wait_acked(&mut status, 7).await;

    // New events wake the uplink.
    for n in 8..=10 {
        let seq = journal
            .lock()
            .unwrap()
            .append(Timestamp::from_unix_ms(n as i64, 60), scan(n))
            .unwrap()
            .seq;
        seq_tx.send_replace(seq);
    }
    wait_acked(&mut status, 10).await;
    uplink.shutdown().await;
    server.abort();

    let s = state.lock().unwrap();
    let seqs: Vec<u64> = s.merged.iter().map(|e| e.seq).collect();
    assert!(
        !s.claims.is_empty(),
        "every Events frame is followed by a Chain claim"
    );
    assert!(
        s.health.len() >= 2,
        "each connection reports the till's health: {:?}",
        s.health
    );
    assert!(s
        .health
        .iter()
        .all(|h| h.journal_bytes > 0 && !h.quota_exceeded));
    assert!(
        s.claims.iter().all(|(_, ok)| *ok),
        "an honest journal's claims match the chain over what arrived: {:?}",
        s.claims
    );
    assert_eq!(
        seqs,
        (1..=10).collect::<Vec<_>>(),
        "each event merged once, in order"
    );
    assert!(
        s.connections >= 2,
        "the first connection was dropped and resumed"
    );
    assert_eq!(s.merged[4].kind, scan(5));
    let j = journal.lock().unwrap();
    let st = j.status().unwrap();
    assert_eq!(
        (st.acked_seq, st.pending),
        (10, 0),
        "acked events are compacted"
    );
}

/// `[hub] address` lists several hubs: a hub that refuses the connection is skipped at
/// once, and when the hub in use dies the agent carries on with the next one, resuming
/// from what the hubs (one database: the state shared here) committed: every event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_fails_over_to_the_next_hub_and_every_event_lands_once() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let state = Arc::new(Mutex::new(HubState::default()));
    let refusing = hub_endpoint(pki.copy());
    let refusing_addr = refusing.local_addr().unwrap();
    let refuser = tokio::spawn(async move {
        while let Some(incoming) = refusing.accept().await {
            incoming.refuse();
        }
    });
    let hub_a = hub_endpoint(pki.copy());
    let hub_b = hub_endpoint(pki);
    let (addr_a, addr_b) = (hub_a.local_addr().unwrap(), hub_b.local_addr().unwrap());
    let server_a = tokio::spawn(serve_hub(hub_a.clone(), Arc::clone(&state), usize::MAX));
    let server_b = tokio::spawn(serve_hub(hub_b.clone(), Arc::clone(&state), usize::MAX));

    let hub = HubLink {
        addresses: vec![
            refusing_addr.to_string(),
            addr_a.to_string(),
            addr_b.to_string(),
        ],
        server_name: "localhost".into(),
        ca: dir.path().join("ca.pem"),
        cert: dir.path().join("agent.pem"),
        key: dir.path().join("agent.key"),
        batch_max: 2,
        window: 3,
        origin: "agent.toml".into(),
    };
    let mut journal = Journal::open(&dir.path().join("data"), &agent()).unwrap();
    for n in 1..=5 {
        journal
            .append(Timestamp::from_unix_ms(n as i64, 60), scan(n))
            .unwrap();
    }
    let journal = Arc::new(Mutex::new(journal));
    let (seq_tx, journal_seq) = watch::channel(5u64);
    let uplink = Uplink {
        agent: agent(),
        client_config: client_config(&hub).unwrap(),
        hub,
        journal: Arc::clone(&journal),
        journal_seq,
        erased_cards: None,
        news: None,
        requests: None,
        request_timeout: till360_agent::uplink::DEFAULT_REQUEST_TIMEOUT,
    }
    .spawn();
    let mut status = uplink.status();
    wait_acked(&mut status, 5).await;
    assert_eq!(
        state.lock().unwrap().connections,
        1,
        "the refusing hub was skipped, hub A took the till"
    );

    // Hub A dies; the till goes on with hub B without waiting for a backoff round.
    hub_a.close(0u32.into(), b"hub A stops");
    server_a.abort();
    for n in 6..=9 {
        let seq = journal
            .lock()
            .unwrap()
            .append(Timestamp::from_unix_ms(n as i64, 60), scan(n))
            .unwrap()
            .seq;
        seq_tx.send_replace(seq);
    }
    wait_acked(&mut status, 9).await;
    {
        let s = state.lock().unwrap();
        assert_eq!(s.connections, 2, "hub B took over");
        let seqs: Vec<u64> = s.merged.iter().map(|e| e.seq).collect();
        assert_eq!(
            seqs,
            (1..=9).collect::<Vec<_>>(),
            "every event once, in order"
        );
    }
    uplink.shutdown().await;
    hub_b.close(0u32.into(), b"done");
    server_b.abort();
    refuser.abort();
}
