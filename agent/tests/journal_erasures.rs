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
    with_keyring(&mut j);
    j
}

#[test]
fn unacked_events_of_an_erased_card_are_pseudonymised_with_seqs_intact() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (card(1), card(2));
    let mut j = journal_with_two_customers(dir.path());
    let before = pending(&j);
    assert_eq!(j.erasure_version().unwrap(), 0);

    let outcome = j.apply_erasures(&[key_of(&a)], 7).unwrap();
    assert_eq!(
        outcome,
        Some(ErasureOutcome {
            events_pseudonymised: 2,
            erasure_version: 7,
            ..ErasureOutcome::default()
        })
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
    j.apply_erasures(&[key_of(&a)], 3).unwrap();
    let snapshot = pending(&j);
    // A resend of version 3 (or older) after a lost ErasuresApplied changes nothing,
    // even if it names other cards.
    let again = j.apply_erasures(&[key_of(&b)], 3).unwrap();
    assert_eq!(
        again,
        Some(ErasureOutcome {
            erasure_version: 3,
            ..ErasureOutcome::default()
        })
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
    let err = j.apply_erasures(&[key_of(&a)], 5).unwrap_err();
    assert!(matches!(err, JournalError::Sqlite { .. }), "{err}");
    drop(j);

    let mut j = Journal::open(dir.path(), &agent()).unwrap();
    assert_eq!(j.erasure_version().unwrap(), 0, "version not stored");
    assert_eq!(pending(&j), before, "and no event changed");

    side.execute_batch("DROP TRIGGER fail_version;").unwrap();
    j.apply_erasures(&[key_of(&a)], 5).unwrap();
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
    j.apply_erasures(&[key_of(&card(1))], 2).unwrap();
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
    with_keyring(&mut j);
    j.apply_erasures(&[key_of(&card(1))], 1).unwrap();
    drop(j);
    let j = Journal::open(dir.path(), &agent()).unwrap();
    assert_eq!(j.status().unwrap().erasure_version, 1);
    assert_eq!(pending(&j), vec![(1, EventKind::Redacted)]);
}

const DIGEST_KEY: [u8; 32] = [0x42; 32];

/// Stores a campaign frame whose keyring pseudonymises cards with [`DIGEST_KEY`].
fn with_keyring(j: &mut Journal) {
    j.store_campaigns(&till360_agent::hub_link::CampaignState {
        version: 1,
        set: till360_shared::campaign::CampaignSet::default(),
        keyring: till360_shared::coupon::Keyring {
            digest_key: DIGEST_KEY,
            ..Default::default()
        },
        catalog: vec![],
    })
    .unwrap();
}

fn key_of(card: &CardNumber) -> till360_shared::coupon::CardKey {
    till360_shared::coupon::CardKey::of(&DIGEST_KEY, card)
}

/// Whether the journal's files on disk hold `needle` anywhere (live rows, freed
/// space, the WAL).
fn on_disk(dir: &std::path::Path, needle: &str) -> bool {
    ["", "-wal"].iter().any(|suffix| {
        let path = dir.join(format!("{JOURNAL_FILE}{suffix}"));
        std::fs::read(path)
            .unwrap_or_default()
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    })
}

#[test]
fn an_erased_cards_digest_leaves_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (card(1), card(2));
    let mut j = journal_with_two_customers(dir.path());
    let digest = till360_shared::campaign::Digest {
        customer_key: "k".into(),
        ..Default::default()
    };
    for c in [&a, &b] {
        j.put_digest(&key_of(c), Some(&digest)).unwrap();
    }
    let outcome = j.apply_erasures(&[key_of(&a)], 1).unwrap().unwrap();
    assert_eq!(outcome.digests_removed, 1);
    let cached: Vec<_> = j.digests().unwrap().into_iter().map(|(k, _)| k).collect();
    assert_eq!(cached, vec![key_of(&b)]);
}

#[test]
fn a_quarantined_row_is_scrubbed_of_an_erased_card() {
    let dir = tempfile::tempdir().unwrap();
    let a = card(1);
    let mut j = journal_with_two_customers(dir.path());
    // The receipt of A (seq 2) is damaged past reading: its bytes, card included, are
    // quarantined as they were.
    let side = Connection::open(dir.path().join(JOURNAL_FILE)).unwrap();
    let mut damaged = format!("\u{1}\u{2}{}\u{3}", a.as_str()).into_bytes();
    damaged.extend([0xff; 4]);
    side.execute("UPDATE events SET payload = ?1 WHERE seq = 2", [&damaged])
        .unwrap();
    drop(side);
    j.apply_erasures(&[key_of(&card(9))], 1).unwrap();
    assert_eq!(j.status().unwrap().quarantined, 1);
    let outcome = j.apply_erasures(&[key_of(&a)], 2).unwrap().unwrap();
    assert_eq!(outcome.quarantine_scrubbed, 1);
    let side = Connection::open(dir.path().join(JOURNAL_FILE)).unwrap();
    let kept: Vec<u8> = side
        .query_row("SELECT payload FROM quarantine WHERE seq = 2", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(kept.len(), damaged.len(), "the rest of the bytes are kept");
    assert!(!kept.windows(13).any(|w| w == a.as_str().as_bytes()));
}

/// Deleted means gone from the files: after an erasure and a checkpoint the card's
/// digits are nowhere in the journal's files (`secure_delete`).
#[test]
fn an_erased_card_is_gone_from_the_journal_files() {
    let dir = tempfile::tempdir().unwrap();
    let a = card(1);
    let mut j = journal_with_two_customers(dir.path());
    j.checkpoint();
    assert!(on_disk(dir.path(), a.as_str()));
    j.apply_erasures(&[key_of(&a)], 1).unwrap();
    j.checkpoint();
    assert!(
        !on_disk(dir.path(), a.as_str()),
        "the card's digits are still on disk"
    );
    assert!(
        on_disk(dir.path(), card(2).as_str()),
        "B is still journaled"
    );
}

/// The hub names erased cards by this store's card keys only: without a keyring the
/// journal cannot tell which cards they are, so it applies nothing and the uplink must
/// not acknowledge; erasures naming none of this store's cards need no keyring.
#[test]
fn without_a_keyring_named_cards_wait_and_empty_erasures_apply() {
    let dir = tempfile::tempdir().unwrap();
    let a = card(1);
    let mut j = Journal::open(dir.path(), &agent()).unwrap();
    j.append(at(1), scan(&a)).unwrap();
    assert_eq!(j.apply_erasures(&[key_of(&a)], 1).unwrap(), None);
    assert_eq!(j.erasure_version().unwrap(), 0);
    assert_eq!(pending(&j), vec![(1, scan(&a))]);
    assert!(j.apply_erasures(&[], 1).unwrap().is_some());
    assert_eq!(j.erasure_version().unwrap(), 1);
    // With the keyring, the next erasure of the card applies.
    with_keyring(&mut j);
    j.apply_erasures(&[key_of(&a)], 2)
        .unwrap()
        .expect("applied");
    assert_eq!(pending(&j), vec![(1, EventKind::Redacted)]);
}
