//! The journal hash chain over real QUIC: the hub extends each agent's chain over the
//! events it commits and compares the agent's `Chain` claims; an edited journal shows
//! as a break in `GET /api/v1/agents`, its events still merged.

use crate::common;

use common::{http_get, Agent, Site};
use till360_hub::synthetic::Generator;
use till360_shared::chain::{self, ChainHash, GENESIS};
use till360_shared::wire::Message;
use till360_shared::{AgentId, Event, EventKind};

fn hello(agent: &AgentId, journal_last_seq: u64) -> Message {
    Message::Hello {
        agent: agent.clone(),
        journal_last_seq,
        software: "test-agent".into(),
    }
}

/// A till's journal as the agent keeps it: events with the link recorded at append.
struct TillJournal {
    events: Vec<Event>,
    links: Vec<ChainHash>,
}

impl TillJournal {
    fn new(agent: &AgentId, count: u64) -> Self {
        let mut gen = Generator::new(23, 40, 100);
        let events: Vec<Event> = (1..=count).map(|seq| gen.receipt(agent, seq)).collect();
        let mut links = Vec::new();
        let mut prev = GENESIS;
        for event in &events {
            prev = chain::link(&prev, event).unwrap();
            links.push(prev);
        }
        Self { events, links }
    }

    /// What the uplink sends for seqs `first..=last`: the events as stored now and the
    /// stored link of the last one.
    fn batch(&self, first: u64, last: u64) -> (Message, Message) {
        let events = self.events[(first - 1) as usize..last as usize].to_vec();
        let claim = Message::Chain {
            last_seq: last,
            hash: self.links[(last - 1) as usize],
        };
        (Message::Events(events), claim)
    }
}

async fn send_batch(agent: &mut Agent, journal: &TillJournal, first: u64, last: u64) {
    let (events, claim) = journal.batch(first, last);
    assert_eq!(
        agent.call(&events).await,
        Ok(Message::Ack { acked_seq: last })
    );
    // No answer to a claim: the next call's answer shows it was handled (in order).
    agent.send(&claim).await.unwrap();
}

async fn chain_of(site_hub: std::net::SocketAddr, store: &str) -> serde_json::Value {
    common::agent_entry(site_hub, store).await["chain"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_journal_is_detected_and_its_events_still_merged() {
    let site = Site::new();
    let hub = site.start().await;
    let id = AgentId::new("S001", "T01");
    let mut journal = TillJournal::new(&id, 9);

    let mut agent = site.connect(hub.quic_addr(), "S001", "T01").await;
    assert_eq!(
        agent.call(&hello(&id, 9)).await,
        Ok(Message::Welcome { acked_seq: 0 })
    );
    send_batch(&mut agent, &journal, 1, 3).await;
    // A resend after a lost ack: the hub has no link at 2 any more, the claim is ignored.
    send_batch(&mut agent, &journal, 1, 3).await;
    assert_eq!(
        agent.call(&Message::Events(vec![])).await,
        Ok(Message::Ack { acked_seq: 3 })
    );
    assert_eq!(chain_of(hub.http_addr(), "S001").await, "ok");

    // Receipt 5 is edited on the till after it was journaled: its link stays.
    if let EventKind::Receipt(r) = &mut journal.events[4].kind {
        r.total_cents = 1;
    } else {
        panic!("the generator makes receipts");
    }
    send_batch(&mut agent, &journal, 4, 6).await;
    // Later honest batches continue from the agent's chain: no second break.
    send_batch(&mut agent, &journal, 7, 9).await;
    assert_eq!(
        agent.call(&Message::Events(vec![])).await,
        Ok(Message::Ack { acked_seq: 9 })
    );

    let chain = chain_of(hub.http_addr(), "S001").await;
    assert_eq!(chain["broken_at_seq"], 6, "{chain}");
    assert!(chain["detected_at"].as_str().is_some_and(|t| !t.is_empty()));
    let (_, agents) = http_get(hub.http_addr(), "/api/v1/agents").await;
    assert_eq!(agents[0]["last_seq"], 9, "nothing is lost");

    // The record survives a hub restart.
    drop(agent);
    hub.shutdown().await;
    let hub = site.start().await;
    assert_eq!(chain_of(hub.http_addr(), "S001").await["broken_at_seq"], 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_journal_rewritten_and_relinked_is_not_flagged() {
    let site = Site::new();
    let hub = site.start().await;
    let id = AgentId::new("S002", "T01");
    let mut journal = TillJournal::new(&id, 6);

    let mut agent = site.connect(hub.quic_addr(), "S002", "T01").await;
    assert_eq!(
        agent.call(&hello(&id, 6)).await,
        Ok(Message::Welcome { acked_seq: 0 })
    );
    send_batch(&mut agent, &journal, 1, 2).await;
    // An erasure pseudonymises the unsent events and re-links the tail, as the
    // journal does: the hub sees the rewritten events and the new links.
    for event in &mut journal.events[2..] {
        event.kind.forget_cards(|_| true);
    }
    let mut prev = journal.links[1];
    for (event, link) in journal.events[2..].iter().zip(&mut journal.links[2..]) {
        prev = chain::link(&prev, event).unwrap();
        *link = prev;
    }
    send_batch(&mut agent, &journal, 3, 6).await;
    assert_eq!(
        agent.call(&Message::Events(vec![])).await,
        Ok(Message::Ack { acked_seq: 6 })
    );
    assert_eq!(chain_of(hub.http_addr(), "S002").await, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_never_claims_stays_ok() {
    let site = Site::new();
    let hub = site.start().await;
    let id = AgentId::new("S003", "T01");
    let journal = TillJournal::new(&id, 4);
    let mut agent = site.connect(hub.quic_addr(), "S003", "T01").await;
    assert_eq!(
        agent.call(&hello(&id, 4)).await,
        Ok(Message::Welcome { acked_seq: 0 })
    );
    let (events, _) = journal.batch(1, 4);
    assert_eq!(agent.call(&events).await, Ok(Message::Ack { acked_seq: 4 }));
    assert_eq!(chain_of(hub.http_addr(), "S003").await, "ok");
}
