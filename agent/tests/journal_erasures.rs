//! Erasures from the hub applied to a real SQLite journal in a tempdir: unacknowledged
//! events of an erased card are pseudonymised in place (every seq kept) and the erasure
//! version is stored in the same transaction.

use rusqlite::Connection;
use till360_agent::journal::{ErasureOutcome, Journal, JournalError, JOURNAL_FILE};
use till360_shared::card::with_check_digit;
use till360_shared::{AgentId, CardNumber, Currency, EventKind, Receipt, ReceiptLine, Timestamp};

fn agent() -> AgentId {
    AgentId::new("S001", "T01")
}

fn card(n: u64) -> CardNumber {
    CardNumber::parse(&with_check_digit(&format!("2401{n:08}")).unwrap()).unwrap()
}

fn at(n: u64) -> Timestamp {
    Timestamp::from_unix_ms(1_764_060_000_000 + n as i64 * 1000, 60)
}

fn scan(card: &CardNumber) -> EventKind {
    EventKind::CardScanned { card: card.clone() }
}

fn receipt(n: u64, card: Option<&CardNumber>) -> EventKind {
    EventKind::Receipt(Receipt {
        receipt_no: Some(format!("R{n}")),
        printed_at: None,
        completed_at: at(n),
        card: card.cloned(),
        card_last4: card.map(|c| c.last4().to_string()),
        lines: vec![ReceiptLine {
            description: format!("Brot {n}"),
            sku: None,
            quantity_milli: 1000,
            unit_cents: Some(250),
            amount_cents: 250,
            discount: false,
        }],
        total_cents: 250,
        currency: Currency::EUR,
        unbalanced: false,
        unmatched_lines: 0,
    })
}

/// Every event still in the journal, in seq order.
fn pending(j: &Journal) -> Vec<(u64, EventKind)> {
    j.read_from(j.acked_seq() + 1, 1000)
        .unwrap()
        .into_iter()
        .map(|e| (e.seq, e.kind))
        .collect()
}

fn carries(kind: &EventKind, card: &CardNumber) -> bool {
    match kind {
        EventKind::CardScanned { card: c } => c == card,
        EventKind::Receipt(r) => r.card.as_ref() == Some(card),
        EventKind::CouponIssued(c) | EventKind::CouponWouldHave(c) => c.card.as_ref() == Some(card),
        EventKind::Redacted
        | EventKind::CouponRedeemed(_)
        | EventKind::CouponRefused { .. }
        | EventKind::Quarantined { .. } => false,
    }
}

/// A journal holding: acked scan of A (seq 1), then unacked: receipt of A (2), scan of B
/// (3), scan of A (4), receipt of B (5), anonymous receipt (6).
fn journal_with_two_customers(dir: &std::path::Path) -> Journal {
    let (a, b) = (card(1), card(2));
    let mut j = Journal::open(dir, &agent()).unwrap();
    j.append(at(1), scan(&a)).unwrap();
    j.append(at(2), receipt(2, Some(&a))).unwrap();
    j.append(at(3), scan(&b)).unwrap();
    j.append(at(4), scan(&a)).unwrap();
    j.append(at(5), receipt(5, Some(&b))).unwrap();
    j.append(at(6), receipt(6, None)).unwrap();
    j.ack(1).unwrap();
    j
}

#[test]
fn unacked_events_of_an_erased_card_are_pseudonymised_with_seqs_intact() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (card(1), card(2));
    let mut j = journal_with_two_customers(dir.path());
    let before = pending(&j);
    assert_eq!(j.erasure_version().unwrap(), 0);

    let outcome = j.apply_erasures(std::slice::from_ref(&a), 7).unwrap();
    assert_eq!(
        outcome,
        ErasureOutcome {
            events_pseudonymised: 2,
            erasure_version: 7
        }
    );
    drop(j);

    let j = Journal::open(dir.path(), &agent()).unwrap();
    let after = pending(&j);
    assert_eq!(
        after.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        vec![2, 3, 4, 5, 6],
        "no seq lost"
    );
    assert!(after.iter().all(|(_, kind)| !carries(kind, &a)));
    // The receipt keeps its purchase, without the card or its printed digits.
    assert_eq!(after[0].1, receipt(2, None));
    assert_eq!(
        after[2].1,
        EventKind::Redacted,
        "the scan of A keeps its seq only"
    );
    // B and the anonymous receipt are untouched.
    assert_eq!(after[1], before[1]);
    assert_eq!(after[3], before[3]);
    assert_eq!(after[4], before[4]);
    assert!(carries(&after[1].1, &b));
    let status = j.status().unwrap();
    assert_eq!(
        (status.erasure_version, status.last_seq, status.pending),
        (7, 6, 5)
    );
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["erasure_version"], 7);
}

#[test]
fn an_old_version_again_is_a_no_op_and_new_appends_continue_the_seq() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (card(1), card(2));
    let mut j = journal_with_two_customers(dir.path());
    j.apply_erasures(&[a], 3).unwrap();
    let snapshot = pending(&j);
    // A resend of version 3 (or older) after a lost ErasuresApplied changes nothing,
    // even if it names other cards.
    let again = j.apply_erasures(std::slice::from_ref(&b), 3).unwrap();
    assert_eq!(
        again,
        ErasureOutcome {
            events_pseudonymised: 0,
            erasure_version: 3
        }
    );
    assert_eq!(pending(&j), snapshot);
    // An empty batch (pruned log on the hub) still moves the version.
    j.apply_erasures(&[], 4).unwrap();
    assert_eq!(j.erasure_version().unwrap(), 4);
    assert_eq!(j.append(at(7), scan(&b)).unwrap().seq, 7);
}

#[test]
fn pseudonymisation_and_version_commit_together_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let a = card(1);
    let mut j = journal_with_two_customers(dir.path());
    let before = pending(&j);
    // A failure at the very end of the transaction (as a full disk would cause):
    // the events were already rewritten inside it.
    let side = Connection::open(dir.path().join(JOURNAL_FILE)).unwrap();
    side.execute_batch(
        "CREATE TRIGGER fail_version BEFORE UPDATE OF erasure_version ON journal_meta
         BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
    )
    .unwrap();
    let err = j.apply_erasures(std::slice::from_ref(&a), 5).unwrap_err();
    assert!(matches!(err, JournalError::Sqlite { .. }), "{err}");
    drop(j);

    let mut j = Journal::open(dir.path(), &agent()).unwrap();
    assert_eq!(j.erasure_version().unwrap(), 0, "version not stored");
    assert_eq!(pending(&j), before, "and no event changed");

    side.execute_batch("DROP TRIGGER fail_version;").unwrap();
    j.apply_erasures(std::slice::from_ref(&a), 5).unwrap();
    drop(j);
    let j = Journal::open(dir.path(), &agent()).unwrap();
    assert_eq!(j.erasure_version().unwrap(), 5);
    assert!(pending(&j).iter().all(|(_, kind)| !carries(kind, &a)));
}

#[test]
fn an_unreadable_event_is_quarantined_and_the_erasure_applied() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = journal_with_two_customers(dir.path());
    let side = Connection::open(dir.path().join(JOURNAL_FILE)).unwrap();
    side.execute("UPDATE events SET payload = x'ff' WHERE seq = 4", [])
        .unwrap();
    j.apply_erasures(&[card(1)], 2).unwrap();
    assert_eq!(j.erasure_version().unwrap(), 2);
    let events = pending(&j);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, (4, EventKind::Quarantined { .. }))),
        "{events:?}"
    );
    assert!(events.iter().all(|(_, kind)| !carries(kind, &card(1))));
    assert_eq!(j.status().unwrap().quarantined, 1);
}

#[test]
fn a_schema_1_journal_is_upgraded_with_version_0() {
    let dir = tempfile::tempdir().unwrap();
    {
        let conn = Connection::open(dir.path().join(JOURNAL_FILE)).unwrap();
        conn.execute_batch(
            "CREATE TABLE journal_meta (
                 id INTEGER PRIMARY KEY CHECK (id = 1),
                 schema_version INTEGER NOT NULL,
                 store TEXT NOT NULL,
                 till TEXT NOT NULL,
                 last_seq INTEGER NOT NULL,
                 acked_seq INTEGER NOT NULL
             );
             INSERT INTO journal_meta VALUES (1, 1, 'S001', 'T01', 0, 0);",
        )
        .unwrap();
    }
    let mut j = Journal::open(dir.path(), &agent()).unwrap();
    assert_eq!(j.erasure_version().unwrap(), 0);
    assert_eq!(j.append(at(1), scan(&card(1))).unwrap().seq, 1);
    j.apply_erasures(&[card(1)], 1).unwrap();
    drop(j);
    let j = Journal::open(dir.path(), &agent()).unwrap();
    assert_eq!(j.status().unwrap().erasure_version, 1);
    assert_eq!(pending(&j), vec![(1, EventKind::Redacted)]);
}
