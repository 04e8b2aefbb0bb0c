//! The SQLite journal against real files in a tempdir.

use proptest::prelude::*;
use till360_agent::journal::{Journal, JournalError, JOURNAL_FILE};
use till360_shared::card::with_check_digit;
use till360_shared::chain::{self, GENESIS};
use till360_shared::{
    AgentId, CardNumber, Currency, Event, EventKind, Receipt, ReceiptLine, Timestamp,
};

fn agent() -> AgentId {
    AgentId::new("S001", "T01")
}

fn card(n: u64) -> CardNumber {
    CardNumber::parse(&with_check_digit(&format!("2401{n:08}")).unwrap()).unwrap()
}

fn scan(n: u64) -> EventKind {
    EventKind::CardScanned { card: card(n) }
}

fn receipt(n: u64) -> EventKind {
    EventKind::Receipt(Receipt {
        receipt_no: Some(format!("R{n}")),
        printed_at: None,
        completed_at: Timestamp::from_unix_ms(1_764_060_000_000 + n as i64, 60),
        card: Some(card(n)),
        card_last4: None,
        lines: vec![ReceiptLine {
            description: format!("Äpfel {n}"),
            sku: None,
            quantity_milli: 512,
            unit_cents: Some(299),
            amount_cents: 153,
            discount: false,
        }],
        total_cents: 153,
        currency: Currency::EUR,
        unbalanced: false,
        unmatched_lines: 0,
    })
}

fn at(n: u64) -> Timestamp {
    Timestamp::from_unix_ms(1_764_060_000_000 + n as i64 * 1000, 60)
}

#[test]
fn unacked_events_survive_reopen_and_seqs_continue() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut j = Journal::open(dir.path(), &agent()).unwrap();
        assert_eq!((j.last_seq(), j.acked_seq()), (0, 0));
        let e1 = j.append(at(1), scan(1)).unwrap();
        let e2 = j.append(at(2), receipt(2)).unwrap();
        assert_eq!((e1.seq, e2.seq), (1, 2));
        assert_eq!(e2.agent, agent());
    }
    let mut j = Journal::open(dir.path(), &agent()).unwrap();
    assert_eq!(j.last_seq(), 2);
    let events = j.read_from(1, 10).unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].kind, scan(1));
    assert_eq!(events[1].kind, receipt(2));
    assert_eq!(events[1].recorded_at, at(2));
    assert_eq!(j.append(at(3), scan(3)).unwrap().seq, 3);
}

#[test]
fn compaction_never_reuses_a_seq() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut j = Journal::open(dir.path(), &agent()).unwrap();
        for n in 1..=3 {
            j.append(at(n), scan(n)).unwrap();
        }
        j.ack(3).unwrap();
        assert_eq!(j.read_from(4, 10).unwrap(), vec![]);
        let status = j.status().unwrap();
        assert_eq!((status.pending, status.oldest_pending_at), (0, None));
    }
    let mut j = Journal::open(dir.path(), &agent()).unwrap();
    assert_eq!((j.last_seq(), j.acked_seq()), (3, 3));
    assert_eq!(j.append(at(4), scan(4)).unwrap().seq, 4);
}

#[test]
fn ack_rules() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), &agent()).unwrap();
    for n in 1..=4 {
        j.append(at(n), scan(n)).unwrap();
    }
    j.ack(2).unwrap();
    j.ack(1).unwrap(); // an older ack again is a no-op
    assert_eq!(j.acked_seq(), 2);
    assert!(matches!(
        j.ack(5),
        Err(JournalError::AckBeyondLast {
            seq: 5,
            last_seq: 4,
            ..
        })
    ));
    assert!(matches!(
        j.read_from(2, 10),
        Err(JournalError::Compacted {
            first_seq: 2,
            acked_seq: 2,
            ..
        })
    ));
    let seqs: Vec<u64> = j.read_from(3, 1).unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![3]);
    let status = j.status().unwrap();
    assert_eq!(
        (status.last_seq, status.acked_seq, status.pending),
        (4, 2, 2)
    );
    assert_eq!(status.oldest_pending_at, Some(at(3)));
    assert_eq!(
        (status.store.as_str(), status.till.as_str()),
        ("S001", "T01")
    );
}

#[test]
fn another_till_cannot_open_a_copied_journal() {
    let dir = tempfile::tempdir().unwrap();
    Journal::open(dir.path(), &agent())
        .unwrap()
        .append(at(1), scan(1))
        .unwrap();
    let err = Journal::open(dir.path(), &AgentId::new("S001", "T02")).unwrap_err();
    assert!(matches!(err, JournalError::AgentMismatch { .. }), "{err}");
    assert!(err.to_string().contains("S001/T01"), "{err}");
}

#[test]
fn open_existing_does_not_create() {
    let dir = tempfile::tempdir().unwrap();
    let err = Journal::open_existing(&dir.path().join("nope"), &agent()).unwrap_err();
    assert!(matches!(err, JournalError::Missing { .. }));
    assert!(!dir.path().join("nope").exists());
}

#[test]
fn wal_mode_is_persistent() {
    let dir = tempfile::tempdir().unwrap();
    drop(Journal::open(dir.path(), &agent()).unwrap());
    let conn = rusqlite::Connection::open(dir.path().join(JOURNAL_FILE)).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn a_corrupt_payload_is_quarantined_not_a_blocker() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut j = Journal::open(dir.path(), &agent()).unwrap();
        for n in 1..=3 {
            j.append(at(n), scan(n)).unwrap();
        }
    }
    {
        let conn = rusqlite::Connection::open(dir.path().join(JOURNAL_FILE)).unwrap();
        conn.execute(
            "UPDATE events SET payload = x'ffffffff00' WHERE seq = 2",
            [],
        )
        .unwrap();
    }
    let j = Journal::open(dir.path(), &agent()).expect("open must not fail on a bad row");
    let events = j.read_from(1, 10).unwrap();
    let kinds: Vec<(u64, &EventKind)> = events.iter().map(|e| (e.seq, &e.kind)).collect();
    assert_eq!(kinds.len(), 3, "every seq is kept");
    assert_eq!(kinds[0], (1, &scan(1)));
    assert!(
        matches!(kinds[1], (2, EventKind::Quarantined { .. })),
        "{kinds:?}"
    );
    assert_eq!(kinds[2], (3, &scan(3)));
    assert_eq!(j.status().unwrap().quarantined, 1);
    assert_eq!(j.status().unwrap().pending, 3);
}

#[test]
fn a_missing_row_is_reported_not_skipped() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut j = Journal::open(dir.path(), &agent()).unwrap();
        for n in 1..=3 {
            j.append(at(n), scan(n)).unwrap();
        }
    }
    {
        let conn = rusqlite::Connection::open(dir.path().join(JOURNAL_FILE)).unwrap();
        conn.execute("DELETE FROM events WHERE seq = 2", [])
            .unwrap();
    }
    let j = Journal::open(dir.path(), &agent()).unwrap();
    let err = j.read_from(1, 10).unwrap_err();
    assert!(matches!(err, JournalError::Inconsistent { .. }), "{err}");
}

#[derive(Debug, Clone)]
enum Op {
    Append {
        receipt: bool,
    },
    /// Ack the pending event at this fraction (0..=255 of the way) of the pending range.
    Ack(u8),
    /// Erase the card of the pending event at this fraction of the pending range.
    Erase(u8),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<bool>().prop_map(|receipt| Op::Append { receipt }),
        2 => any::<u8>().prop_map(Op::Ack),
        1 => any::<u8>().prop_map(Op::Erase),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random append / ack / erasure / reopen against an in-memory model: seqs are
    /// gapless, nothing acked comes back, nothing unacked is lost across a reopen, and
    /// the chain head is the chain over every event ever appended (as rewritten by
    /// erasures while unacknowledged).
    #[test]
    fn journal_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(dir.path(), &agent()).unwrap();
        // Erasures name cards by their key under the keyring's digest key.
        let keyring = till360_shared::coupon::Keyring {
            digest_key: [0x42; 32],
            ..Default::default()
        };
        journal
            .store_campaigns(&till360_agent::hub_link::CampaignState {
                version: 1,
                set: Default::default(),
                keyring: keyring.clone(),
                catalog: vec![],
            })
            .unwrap();
        // The model: every event ever appended (index = seq - 1) and the acked seq.
        let mut appended: Vec<(Timestamp, EventKind)> = Vec::new();
        let mut acked = 0u64;
        let mut erasure_version = 0u64;
        for op in ops {
            match op {
                Op::Append { receipt: r } => {
                    let n = appended.len() as u64 + 1;
                    let kind = if r { receipt(n) } else { scan(n) };
                    let event = journal.append(at(n), kind.clone()).unwrap();
                    prop_assert_eq!(event.seq, n, "gapless from 1");
                    appended.push((at(n), kind));
                }
                Op::Ack(fraction) => {
                    let last = appended.len() as u64;
                    let seq = acked + (last - acked) * u64::from(fraction) / 255;
                    journal.ack(seq).unwrap();
                    acked = acked.max(seq);
                }
                Op::Erase(fraction) => {
                    let last = appended.len() as u64;
                    if last > acked {
                        let index = acked + (last - 1 - acked) * u64::from(fraction) / 255;
                        // An event erased before has no card left: erase one nobody has.
                        let erased = match &appended[index as usize].1 {
                            EventKind::CardScanned { card } => Some(card.clone()),
                            EventKind::Receipt(r) => r.card.clone(),
                            _ => None,
                        }
                        .unwrap_or_else(|| card(999_999));
                        erasure_version += 1;
                        let key = keyring.card_key(&erased);
                        journal.apply_erasures(&[key], erasure_version).unwrap().expect("applied");
                        for (_, kind) in &mut appended[acked as usize..] {
                            kind.forget_cards(|c| *c == erased);
                        }
                    }
                }
                Op::Reopen => {
                    drop(journal);
                    journal = Journal::open(dir.path(), &agent()).unwrap();
                }
            }
            let last = appended.len() as u64;
            prop_assert_eq!(journal.last_seq(), last);
            prop_assert_eq!(journal.acked_seq(), acked);
            let pending = journal.read_from(acked + 1, usize::MAX).unwrap();
            let expected: Vec<(u64, Timestamp, EventKind)> = appended[acked as usize..]
                .iter()
                .enumerate()
                .map(|(i, (t, k))| (acked + 1 + i as u64, *t, k.clone()))
                .collect();
            let got: Vec<(u64, Timestamp, EventKind)> = pending
                .into_iter()
                .map(|e| (e.seq, e.recorded_at, e.kind))
                .collect();
            prop_assert_eq!(got, expected);
            if acked > 0 {
                prop_assert!(journal.read_from(acked, 1).is_err(), "acked events never return");
            }
            let status = journal.status().unwrap();
            prop_assert_eq!(status.pending, last - acked);
            let head = appended.iter().enumerate().fold(GENESIS, |prev, (i, (t, k))| {
                let event = Event { agent: agent(), seq: i as u64 + 1, recorded_at: *t, kind: k.clone() };
                chain::link(&prev, &event).unwrap()
            });
            prop_assert_eq!(journal.chain_head().unwrap(), head);
        }
    }
}

/// Schema 6: a receipt journaled by an older agent (without `unbalanced` and
/// `unmatched_lines`) is re-encoded on open and the chain relinked over it, so the hub
/// gets it readable and chained.
#[test]
fn receipts_journaled_before_the_balance_check_are_upgraded_and_chained() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut j = Journal::open(dir.path(), &agent()).unwrap();
        j.append(at(1), scan(1)).unwrap();
        j.append(at(2), receipt(2)).unwrap();
    }
    let conn = rusqlite::Connection::open(dir.path().join(JOURNAL_FILE)).unwrap();
    let payload: Vec<u8> = conn
        .query_row("SELECT payload FROM events WHERE seq = 2", [], |r| r.get(0))
        .unwrap();
    // The old encoding: the same bytes without the two new fields at the end.
    let old = payload[..payload.len() - 2].to_vec();
    conn.execute("UPDATE events SET payload = ?1 WHERE seq = 2", [&old])
        .unwrap();
    conn.execute("UPDATE journal_meta SET schema_version = 5", [])
        .unwrap();
    drop(conn);

    let j = Journal::open(dir.path(), &agent()).unwrap();
    let events = j.read_from(1, 10).unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].kind, receipt(2));
    let mut head = GENESIS;
    for event in &events {
        head = chain::link(&head, event).unwrap();
    }
    assert_eq!(j.chain_head().unwrap(), head);
    assert_eq!(j.status().unwrap().quarantined, 0);
    let conn = rusqlite::Connection::open(dir.path().join(JOURNAL_FILE)).unwrap();
    let (payload, version): (Vec<u8>, i64) = conn
        .query_row(
            "SELECT payload, (SELECT schema_version FROM journal_meta) FROM events WHERE seq = 2",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(payload.len(), old.len() + 2, "re-encoded");
    assert_eq!(version, 6);
}
