//! One bad till cannot hurt the others: a batch the hub cannot store is refused for its
//! till alone (the other tills' batches in the same commit land), and a second live
//! connection with one certificate replaces the first and is reported.

use crate::common;

use chrono::NaiveDate;
use common::{agent_entry, http_get, Agent, Site};
use till360_hub::sql_params;
use till360_hub::store::sql::Sql;
use till360_hub::store::{Engine, IngestRequest, Store};
use till360_shared::event::CouponIssue;
use till360_shared::wire::{Message, Refusal};
use till360_shared::{AgentId, Event, EventKind, Timestamp};

fn at(seq: u64) -> Timestamp {
    Timestamp::from_unix_ms(1_764_060_000_000 + seq as i64 * 60_000, 60)
}

fn receipt(agent: &AgentId, seq: u64, description: &str) -> Event {
    common::one_line_receipt(agent, seq, None, at(seq), (description, 250))
}

/// A coupon printed on a receipt whose seq SQLite cannot hold (≥ 2^63).
fn coupon_beyond_i64(agent: &AgentId, seq: u64) -> Event {
    Event {
        agent: agent.clone(),
        seq,
        recorded_at: at(seq),
        kind: EventKind::CouponIssued(CouponIssue {
            campaign_id: "big-basket".into(),
            code: None,
            card: None,
            customer_key: None,
            expires: NaiveDate::from_ymd_opt(2026, 12, 31).unwrap(),
            receipt_seq: 1 << 63,
        }),
    }
}

fn hello(agent: &AgentId) -> Message {
    Message::Hello {
        agent: agent.clone(),
        journal_last_seq: 0,
        software: "test".into(),
    }
}

fn transactions(db: &dyn Sql, store: &str) -> i64 {
    use till360_hub::store::sql::SqlExt as _;
    db.query_value(
        "SELECT count(*) FROM transactions WHERE store = ?1",
        sql_params![store],
    )
    .unwrap()
    .unwrap()
}

/// A row only the database finds wrong (a constraint, past every check before the
/// commit): S003's receipt R1, refused by a trigger in each engine's own dialect.
fn poison(db: &dyn Sql) {
    let trigger = match db.engine() {
        Engine::Sqlite => {
            "CREATE TRIGGER poison BEFORE INSERT ON transactions
             WHEN NEW.receipt_no = 'R1' AND NEW.store = 'S003'
             BEGIN SELECT RAISE(ABORT, 'poisoned row'); END;"
        }
        Engine::Postgres => {
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.receipt_no = 'R1' AND NEW.store = 'S003' THEN
                     RAISE EXCEPTION 'poisoned row' USING ERRCODE = 'check_violation';
                 END IF;
                 RETURN NEW;
             END $$;
             CREATE TRIGGER poison BEFORE INSERT ON transactions
                 FOR EACH ROW EXECUTE FUNCTION poison();"
        }
    };
    db.batch(trigger).unwrap();
}

/// Three tills' batches in one group commit (as the writer thread gathers them): the
/// one with an unstorable value and the one the database refuses are refused, each alone;
/// the good one lands, and the refusals are listed with the agents.
#[test]
fn a_batch_the_hub_cannot_store_is_refused_alone_in_a_shared_commit() {
    let database = common::engine::TestStore::new();
    let mut store = database.store();
    poison(store.sql());
    let bad = AgentId::new("S001", "T01");
    let good = AgentId::new("S002", "T01");
    let poisoned = AgentId::new("S003", "T01");
    let bad_events = vec![receipt(&bad, 1, "Bread"), coupon_beyond_i64(&bad, 2)];
    let good_events = vec![receipt(&good, 1, "Milk"), receipt(&good, 2, "Tea")];
    let poisoned_events = vec![receipt(&poisoned, 1, "Soap")];
    let now = Timestamp::from_unix_ms(1_764_070_000_000, 0);
    for agent in [&bad, &good, &poisoned] {
        assert_eq!(store.hello(agent, now).unwrap(), 0);
    }
    let outcomes = store
        .ingest(
            &[
                IngestRequest {
                    agent: &bad,
                    events: &bad_events,
                },
                IngestRequest {
                    agent: &good,
                    events: &good_events,
                },
                IngestRequest {
                    agent: &poisoned,
                    events: &poisoned_events,
                },
            ],
            now,
        )
        .expect("the good batch commits");
    match &outcomes[0] {
        Err((Refusal::ProtocolError, detail)) => {
            assert!(detail.contains("receipt_seq"), "{detail}")
        }
        other => panic!("expected a protocol error, got {other:?}"),
    }
    assert_eq!(outcomes[1], Ok(2));
    match &outcomes[2] {
        Err((Refusal::ProtocolError, detail)) => {
            assert!(detail.contains("seq 1"), "{detail}")
        }
        other => panic!("expected a protocol error, got {other:?}"),
    }
    assert_eq!(
        transactions(store.sql(), "S002"),
        2,
        "the good till's batch landed"
    );
    assert_eq!(
        transactions(store.sql(), "S001"),
        0,
        "nothing of the bad batch"
    );
    assert_eq!(
        transactions(store.sql(), "S003"),
        0,
        "nothing of the poisoned batch"
    );

    let agents = store.agents().unwrap();
    let listed = |store: &str| agents.iter().find(|a| a.store == store).cloned();
    let bad_view = listed("S001").expect("a refused till is listed");
    assert_eq!(bad_view.last_seq, 0);
    let refusal = bad_view.last_refusal.expect("its refusal is shown");
    assert_eq!(refusal.reason, "ProtocolError");
    assert!(refusal.detail.contains("receipt_seq"), "{}", refusal.detail);
    assert_eq!(refusal.at, now.to_rfc3339());
    assert!(listed("S003").unwrap().last_refusal.is_some());
    assert!(listed("S002").unwrap().last_refusal.is_none());
}

/// Over QUIC: the till is refused as a protocol error (and told why), another till's
/// batch is acknowledged, and `GET /api/v1/agents` shows the refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_till_sending_a_value_the_hub_cannot_store_is_refused_and_listed() {
    let site = Site::new();
    let hub = site.start().await;
    let bad = AgentId::new("S001", "T01");
    let good = AgentId::new("S002", "T01");
    let mut bad_link = site.connect(hub.quic_addr(), "S001", "T01").await;
    let mut good_link = site.connect(hub.quic_addr(), "S002", "T01").await;
    for (link, id) in [(&mut bad_link, &bad), (&mut good_link, &good)] {
        assert_eq!(
            link.call(&hello(id)).await,
            Ok(Message::Welcome { acked_seq: 0 })
        );
    }
    let answer = bad_link
        .call(&Message::Events(vec![
            receipt(&bad, 1, "Bread"),
            coupon_beyond_i64(&bad, 2),
        ]))
        .await;
    match answer {
        Ok(Message::Refused {
            reason: Refusal::ProtocolError,
            detail,
        }) => assert!(detail.contains("receipt_seq"), "{detail}"),
        other => panic!("expected a protocol error, got {other:?}"),
    }
    assert_eq!(
        good_link
            .call(&Message::Events(vec![receipt(&good, 1, "Milk")]))
            .await,
        Ok(Message::Ack { acked_seq: 1 })
    );
    let entry = agent_entry(hub.http_addr(), "S001").await;
    assert_eq!(entry["last_seq"], 0);
    assert_eq!(entry["last_refusal"]["reason"], "ProtocolError");
    assert!(
        entry["last_refusal"]["detail"]
            .as_str()
            .unwrap()
            .contains("receipt_seq"),
        "{entry}"
    );
    assert!(agent_entry(hub.http_addr(), "S002").await["last_refusal"].is_null());
    hub.shutdown().await;
}

/// One live connection per certificate: a second one replaces the first (closed with
/// a reason), keeps working, and the hub shows the till as a possible clone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_connection_with_the_same_certificate_replaces_the_first() {
    let site = Site::new();
    let hub = site.start().await;
    let id = AgentId::new("S001", "T01");
    let dir = site.agent("S001", "T01");
    let mut first = Agent::connect(hub.quic_addr(), &dir.join("ca.pem"), Some(&dir))
        .await
        .unwrap();
    assert_eq!(
        first.call(&hello(&id)).await,
        Ok(Message::Welcome { acked_seq: 0 })
    );
    let mut second = Agent::connect(hub.quic_addr(), &dir.join("ca.pem"), Some(&dir))
        .await
        .unwrap();
    assert_eq!(
        second.call(&hello(&id)).await,
        Ok(Message::Welcome { acked_seq: 0 })
    );
    match first.recv().await {
        Ok(Message::Refused {
            reason: Refusal::Unavailable,
            detail,
        }) => assert!(detail.contains("replaced"), "{detail}"),
        other => panic!("the first connection is told why it ends, got {other:?}"),
    }
    match first.closed().await {
        quinn::ConnectionError::ApplicationClosed(close) => {
            let reason = String::from_utf8_lossy(&close.reason).to_string();
            assert!(reason.contains("replaced"), "{reason}");
        }
        other => panic!("expected an application close, got {other:?}"),
    }
    assert_eq!(
        second
            .call(&Message::Events(vec![receipt(&id, 1, "Bread")]))
            .await,
        Ok(Message::Ack { acked_seq: 1 })
    );
    let entry = agent_entry(hub.http_addr(), "S001").await;
    let alert = &entry["certificate_alert"];
    assert!(
        alert["detail"]
            .as_str()
            .unwrap()
            .contains("two live connections"),
        "{entry}"
    );
    assert!(alert["at"].is_string(), "{entry}");
    let (_, agents) = http_get(hub.http_addr(), "/api/v1/agents").await;
    assert_eq!(agents.as_array().unwrap().len(), 1);
    hub.shutdown().await;
}

/// A till re-provisioned (a newer certificate epoch) fences the old certificate; the old
/// one trying again is refused and shown as a possible clone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_certificate_epoch_is_refused_and_shown() {
    let site = Site::new();
    let hub = site.start().await;
    let id = AgentId::new("S001", "T01");
    let old = tempfile::tempdir().unwrap();
    let old_dir = old.path().join("old");
    till360_hub::pki::issue_agent(&site.pki(), "S001", "T01", &old_dir).unwrap();
    let mut new = site.connect(hub.quic_addr(), "S001", "T01").await;
    assert_eq!(
        new.call(&hello(&id)).await,
        Ok(Message::Welcome { acked_seq: 0 })
    );
    let mut clone = Agent::connect(hub.quic_addr(), &old_dir.join("ca.pem"), Some(&old_dir))
        .await
        .unwrap();
    // The refusal frame, or the close carrying it, whichever the client reads first.
    match clone.recv().await {
        Ok(Message::Refused {
            reason: Refusal::Fenced,
            ..
        }) => {}
        Err(closed) if closed.contains("Fenced") => {}
        other => panic!("expected Fenced, got {other:?}"),
    }
    let entry = agent_entry(hub.http_addr(), "S001").await;
    assert_eq!(entry["certificate_alert"]["reason"], "old_epoch", "{entry}");
    hub.shutdown().await;
}
