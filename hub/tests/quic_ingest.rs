//! The QUIC listener over real sockets: mutual TLS, exactly-once ingest, refusals.

use crate::common;

use common::{http_get, Agent, Site};
use till360_hub::synthetic::Generator;
use till360_shared::wire::{Message, Refusal, MAX_FRAME_LEN, PROTOCOL_VERSION};
use till360_shared::{AgentId, Event};

fn hello(agent: &AgentId, journal_last_seq: u64) -> Message {
    Message::Hello {
        agent: agent.clone(),
        journal_last_seq,
        software: "test-agent".into(),
    }
}

/// Carded receipts only, so every committed event is visible as one profile transaction.
fn receipts(agent: &AgentId, count: u64) -> Vec<Event> {
    let mut gen = Generator::new(11, 40, 100);
    (1..=count).map(|seq| gen.receipt(agent, seq)).collect()
}

async fn transactions_in_profiles(hub: std::net::SocketAddr) -> u64 {
    let (status, profiles) = http_get(hub, "/api/v1/profiles?limit=1000").await;
    assert_eq!(status, 200);
    profiles
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["transactions"]["count"].as_u64().unwrap())
        .sum()
}

fn assert_refused(msg: Result<Message, String>, expected: Refusal) {
    match msg {
        Ok(Message::Refused { reason, .. }) => assert_eq!(reason, expected),
        other => panic!("expected Refused {expected:?}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_acks_after_commit_and_replays_are_no_ops() {
    let site = Site::new();
    let hub = site.start().await;
    let id = AgentId::new("S001", "T01");
    let events = receipts(&id, 5);

    let mut agent = site.connect(hub.quic_addr(), "S001", "T01").await;
    assert_eq!(
        agent.call(&hello(&id, 5)).await,
        Ok(Message::Welcome { acked_seq: 0 })
    );
    assert_eq!(
        agent.call(&Message::Events(events[0..3].to_vec())).await,
        Ok(Message::Ack { acked_seq: 3 })
    );
    assert_eq!(transactions_in_profiles(hub.http_addr()).await, 3);

    // A resend after a lost ack: acknowledged again, merged once.
    assert_eq!(
        agent.call(&Message::Events(events[1..3].to_vec())).await,
        Ok(Message::Ack { acked_seq: 3 })
    );
    assert_eq!(transactions_in_profiles(hub.http_addr()).await, 3);

    // Overlap: 3..=5 merges 4 and 5 only.
    assert_eq!(
        agent.call(&Message::Events(events[2..5].to_vec())).await,
        Ok(Message::Ack { acked_seq: 5 })
    );
    assert_eq!(transactions_in_profiles(hub.http_addr()).await, 5);
    let (_, agents) = http_get(hub.http_addr(), "/api/v1/agents").await;
    assert_eq!(agents[0]["store"], "S001");
    assert_eq!(agents[0]["last_seq"], 5);

    // A reconnect resumes from the committed seq.
    drop(agent);
    let mut again = site.connect(hub.quic_addr(), "S001", "T01").await;
    assert_eq!(
        again.call(&hello(&id, 5)).await,
        Ok(Message::Welcome { acked_seq: 5 })
    );
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_with_a_gap_is_refused_and_nothing_of_it_is_stored() {
    let site = Site::new();
    let hub = site.start().await;
    let id = AgentId::new("S001", "T01");
    let events = receipts(&id, 6);

    let mut agent = site.connect(hub.quic_addr(), "S001", "T01").await;
    assert_eq!(
        agent.call(&hello(&id, 6)).await,
        Ok(Message::Welcome { acked_seq: 0 })
    );
    assert_eq!(
        agent.call(&Message::Events(events[0..2].to_vec())).await,
        Ok(Message::Ack { acked_seq: 2 })
    );
    // Seq 3 missing.
    assert_refused(
        agent.call(&Message::Events(events[3..5].to_vec())).await,
        Refusal::SequenceGap,
    );
    agent.closed().await;
    assert_eq!(transactions_in_profiles(hub.http_addr()).await, 2);

    let mut again = site.connect(hub.quic_addr(), "S001", "T01").await;
    assert_eq!(
        again.call(&hello(&id, 6)).await,
        Ok(Message::Welcome { acked_seq: 2 })
    );
    // Events before the hello are a protocol error on a fresh connection.
    let mut early = site.connect(hub.quic_addr(), "S001", "T01").await;
    assert_refused(
        early.call(&Message::Events(events[2..3].to_vec())).await,
        Refusal::ProtocolError,
    );
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_comes_from_the_certificate() {
    let site = Site::new();
    let hub = site.start().await;
    let id = AgentId::new("S001", "T01");

    // Hello claiming another store.
    let mut agent = site.connect(hub.quic_addr(), "S001", "T01").await;
    assert_refused(
        agent.call(&hello(&AgentId::new("S002", "T01"), 0)).await,
        Refusal::IdentityMismatch,
    );
    agent.closed().await;

    // A correct hello, then events written as another till.
    let other = AgentId::new("S001", "T02");
    let mut agent = site.connect(hub.quic_addr(), "S001", "T01").await;
    assert_eq!(
        agent.call(&hello(&id, 1)).await,
        Ok(Message::Welcome { acked_seq: 0 })
    );
    assert_refused(
        agent.call(&Message::Events(receipts(&other, 1))).await,
        Refusal::IdentityMismatch,
    );
    assert_eq!(transactions_in_profiles(hub.http_addr()).await, 0);
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_a_cert_from_this_ca_are_refused_at_the_handshake() {
    let site = Site::new();
    let foreign = Site::new();
    let hub = site.start().await;
    let ca = site.pki().join("ca.pem");
    let foreign_dir = foreign.agent("S001", "T01");

    for agent_dir in [Some(foreign_dir.as_path()), None] {
        let outcome = match Agent::connect(hub.quic_addr(), &ca, agent_dir).await {
            Err(e) => Err(e),
            Ok(mut agent) => agent.call(&hello(&AgentId::new("S001", "T01"), 0)).await,
        };
        let err = outcome.expect_err("a client without a valid certificate got an answer");
        // The hub aborts the TLS handshake (a TLS alert), not a later protocol step.
        assert!(
            err.contains("cryptographic handshake failed"),
            "unexpected failure: {err}"
        );
    }

    // The hub still serves a proper agent.
    let dir = site.agent("S001", "T01");
    let mut agent = Agent::connect(hub.quic_addr(), &ca, Some(&dir))
        .await
        .unwrap();
    assert_eq!(
        agent.call(&hello(&AgentId::new("S001", "T01"), 0)).await,
        Ok(Message::Welcome { acked_seq: 0 })
    );
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_that_connection_and_the_hub_serves_others() {
    let site = Site::new();
    let hub = site.start().await;
    let good_id = AgentId::new("S001", "T01");
    let good_dir = site.agent("S001", "T01");
    let bad_id = AgentId::new("S001", "T02");
    let bad_dir = site.agent("S001", "T02");
    let ca = site.pki().join("ca.pem");

    let mut good = Agent::connect(hub.quic_addr(), &ca, Some(&good_dir))
        .await
        .unwrap();
    assert_eq!(
        good.call(&hello(&good_id, 4)).await,
        Ok(Message::Welcome { acked_seq: 0 })
    );

    let oversize = ((MAX_FRAME_LEN as u32) + 1).to_be_bytes().to_vec();
    let mut other_version = vec![0, 0, 0, 3];
    other_version.extend_from_slice(&(PROTOCOL_VERSION + 1).to_be_bytes());
    other_version.push(0);
    let mut garbage = vec![0, 0, 0, 6];
    garbage.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    garbage.extend_from_slice(&[0xff, 0xfe, 0xfd, 0xfc]);

    for bytes in [oversize, other_version, garbage] {
        let mut bad = Agent::connect(hub.quic_addr(), &ca, Some(&bad_dir))
            .await
            .unwrap();
        assert_eq!(
            bad.call(&hello(&bad_id, 0)).await,
            Ok(Message::Welcome { acked_seq: 0 })
        );
        bad.send_raw(&bytes).await.unwrap();
        assert_refused(bad.recv().await, Refusal::ProtocolError);
        bad.closed().await;
    }

    let events = receipts(&good_id, 4);
    assert_eq!(
        good.call(&Message::Events(events)).await,
        Ok(Message::Ack { acked_seq: 4 })
    );
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_hub_welcomes_with_the_stored_high_water() {
    let site = Site::new();
    let id = AgentId::new("S001", "T01");
    let dir = site.agent("S001", "T01");
    let events = receipts(&id, 3);
    let ca = dir.join("ca.pem");

    let hub = site.start().await;
    let mut agent = Agent::connect(hub.quic_addr(), &ca, Some(&dir))
        .await
        .unwrap();
    assert_eq!(
        agent.call(&hello(&id, 3)).await,
        Ok(Message::Welcome { acked_seq: 0 })
    );
    assert_eq!(
        agent.call(&Message::Events(events)).await,
        Ok(Message::Ack { acked_seq: 3 })
    );
    hub.shutdown().await;
    // The shut-down hub closed the connection.
    agent.closed().await;

    let hub = site.start().await;
    let mut agent = Agent::connect(hub.quic_addr(), &ca, Some(&dir))
        .await
        .unwrap();
    assert_eq!(
        agent.call(&hello(&id, 3)).await,
        Ok(Message::Welcome { acked_seq: 3 })
    );
    assert_eq!(transactions_in_profiles(hub.http_addr()).await, 3);
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_agents_ingest_concurrently() {
    let site = Site::new();
    let hub = site.start().await;
    let mut tasks = Vec::new();
    for t in 0..6 {
        let till = format!("T{t:02}");
        let id = AgentId::new("S001", till.clone());
        let dir = site.agent("S001", &till);
        let addr = hub.quic_addr();
        tasks.push(tokio::spawn(async move {
            let events = receipts(&id, 40);
            let mut agent = Agent::connect(addr, &dir.join("ca.pem"), Some(&dir))
                .await
                .unwrap();
            assert_eq!(
                agent.call(&hello(&id, 40)).await,
                Ok(Message::Welcome { acked_seq: 0 })
            );
            for batch in events.chunks(8) {
                let last = batch.last().unwrap().seq;
                assert_eq!(
                    agent.call(&Message::Events(batch.to_vec())).await,
                    Ok(Message::Ack { acked_seq: last })
                );
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(transactions_in_profiles(hub.http_addr()).await, 240);
    let (_, agents) = http_get(hub.http_addr(), "/api/v1/agents").await;
    let agents = agents.as_array().unwrap();
    assert_eq!(agents.len(), 6);
    assert!(agents.iter().all(|a| a["last_seq"] == 40));
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_finishes_its_stream_still_gets_its_last_ack() {
    let site = Site::new();
    let hub = site.start().await;
    let id = AgentId::new("S001", "T01");
    let mut agent = site.connect(hub.quic_addr(), "S001", "T01").await;
    agent.send(&hello(&id, 2)).await.unwrap();
    agent
        .send(&Message::Events(receipts(&id, 2)))
        .await
        .unwrap();
    agent.finish();
    assert_eq!(agent.recv().await, Ok(Message::Welcome { acked_seq: 0 }));
    assert_eq!(agent.recv().await, Ok(Message::Ack { acked_seq: 2 }));
    match agent.closed().await {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(
                close.error_code,
                quinn::VarInt::from_u32(till360_hub::listener::CLOSE_DONE)
            );
        }
        other => panic!("expected a clean close, got {other}"),
    }
    hub.shutdown().await;
}
