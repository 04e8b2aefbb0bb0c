//! The uplink's conversation without IO (`uplink::conversation`): frames in, frames and
//! journal writes out, on a real journal in a tempdir. The simulator drives the same code
//! under faults; these pin its rules one by one.

use chrono::NaiveDate;
use till360_agent::journal::Journal;
use till360_agent::uplink::conversation::{Conversation, Output, Pacing, Transmit};
use till360_shared::card::with_check_digit;
use till360_shared::coupon::CardKey;
use till360_shared::wire::Message;
use till360_shared::{AgentId, CardNumber, EventKind, Timestamp};

fn agent() -> AgentId {
    AgentId::new("S001", "T01")
}

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, 2).unwrap()
}

/// A journal with `n` card scans.
fn journal(dir: &std::path::Path, n: u64) -> Journal {
    let mut j = Journal::open(dir, &agent()).unwrap();
    for i in 1..=n {
        let card = CardNumber::parse(&with_check_digit(&format!("2401{i:08}")).unwrap()).unwrap();
        let at = Timestamp::from_unix_ms(1_772_434_800_000 + i as i64 * 1000, 60);
        j.append(at, EventKind::CardScanned { card }).unwrap();
    }
    j
}

/// The `(first, last)` seqs of each events batch, and the other frames' kinds.
fn sent(out: &Output) -> (Vec<(u64, u64)>, Vec<&'static str>) {
    let mut batches = Vec::new();
    let mut others = Vec::new();
    for t in &out.transmit {
        match t {
            Transmit::Events(events) => {
                batches.push((events[0].0.seq, events[events.len() - 1].0.seq));
            }
            Transmit::Message(m) => others.push(m.name()),
        }
    }
    (batches, others)
}

fn open(j: &Journal) -> (Conversation, Output) {
    let pacing = Pacing {
        window: 4,
        batch_max: 2,
    };
    Conversation::open(agent(), pacing, j, j.last_seq(), "test", 1_772_434_800_000).unwrap()
}

fn handle(c: &mut Conversation, j: &mut Journal, msg: Message) -> Output {
    let mut out = Output::default();
    c.handle(msg, j, today(), &mut out).unwrap();
    out
}

fn poll(c: &mut Conversation, j: &mut Journal) -> Output {
    let mut out = Output::default();
    c.poll(j, &mut out).unwrap();
    out
}

#[test]
fn it_opens_with_hello_subscribe_health_and_clock_and_streams_within_the_window_after_welcome() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = journal(dir.path(), 7);
    let (mut c, opening) = open(&j);
    assert_eq!(
        sent(&opening).1,
        vec!["hello", "subscribe", "health", "till_clock"]
    );
    assert_eq!(
        sent(&poll(&mut c, &mut j)),
        (vec![], vec![]),
        "nothing before the welcome"
    );

    let out = handle(&mut c, &mut j, Message::Welcome { acked_seq: 2 });
    assert!(out.went_online);
    // From the hub's mark, two a batch, four in flight at most.
    assert_eq!(sent(&poll(&mut c, &mut j)).0, vec![(3, 4), (5, 6)]);
    let out = handle(&mut c, &mut j, Message::Ack { acked_seq: 4 });
    assert_eq!(out.acked, Some(4));
    assert!(!out.went_online);
    assert_eq!(j.acked_seq(), 4, "the ack compacts the journal");
    assert_eq!(sent(&poll(&mut c, &mut j)).0, vec![(7, 7)]);
    assert_eq!(
        sent(&poll(&mut c, &mut j)).0,
        vec![],
        "everything is in flight"
    );
}

#[test]
fn an_erasure_waits_for_everything_sent_to_be_acknowledged_and_without_a_keyring_is_not_acknowledged(
) {
    let dir = tempfile::tempdir().unwrap();
    let mut j = journal(dir.path(), 3);
    let (mut c, _) = open(&j);
    handle(&mut c, &mut j, Message::Welcome { acked_seq: 0 });
    assert_eq!(sent(&poll(&mut c, &mut j)).0, vec![(1, 2), (3, 3)]);
    let erasure = Message::Erasures {
        card_keys: vec![CardKey([7; 16])],
        up_to_version: 1,
    };
    handle(&mut c, &mut j, erasure);
    // Events 1..3 are in flight: the erasure waits, and nothing new goes out meanwhile.
    let appended = journal_append(&mut j);
    c.journal_advanced(appended);
    assert_eq!(sent(&poll(&mut c, &mut j)), (vec![], vec![]));
    assert_eq!(j.erasure_version().unwrap(), 0);
    handle(&mut c, &mut j, Message::Ack { acked_seq: 3 });
    // Now due, but this journal holds no keyring to recognise the cards by: not applied,
    // not acknowledged (the hub sends it again on the next connection).
    let out = poll(&mut c, &mut j);
    assert_eq!(sent(&out).1, Vec::<&str>::new(), "no erasures_applied");
    assert_eq!(j.erasure_version().unwrap(), 0);
    assert!(out.erased.is_empty());
    // The batch held back goes out now.
    assert_eq!(sent(&out).0, vec![(4, 4)]);
}

fn journal_append(j: &mut Journal) -> u64 {
    let card = CardNumber::parse(&with_check_digit("240100000099").unwrap()).unwrap();
    let at = Timestamp::from_unix_ms(1_772_434_900_000, 60);
    j.append(at, EventKind::CardScanned { card }).unwrap().seq
}

#[test]
fn a_frame_out_of_protocol_is_an_error_that_ends_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = journal(dir.path(), 2);
    let (mut c, _) = open(&j);
    let mut out = Output::default();
    // An ack before the welcome.
    let err = c
        .handle(Message::Ack { acked_seq: 1 }, &mut j, today(), &mut out)
        .unwrap_err();
    assert!(err.to_string().contains("protocol"), "{err}");
    assert_eq!(j.acked_seq(), 0, "nothing acknowledged");
}
