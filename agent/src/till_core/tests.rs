//! The till core with a real journal on a tempdir: inputs and `now` in, journaled
//! events and effects out.

use std::path::Path;

use chrono::NaiveDate;
use till360_shared::card::with_check_digit;
use till360_shared::coupon::{derive_till_key, mint, CouponFields};
use till360_shared::{AgentId, CardNumber, Event, EventKind, Timestamp};

use super::*;
use crate::coupons::redeem::UNVERIFIABLE;
use crate::escpos::encode::{notice_block, PrinterModes};
use crate::escpos::{CodePage, EscPosParser, EscTTable};
use crate::hub_link::{HubNews, HubRequest};
use crate::journal::Journal;
use crate::layout::Layout;

/// The receipt of `agent/tests/runtime.rs`: Bon 0012-3456, two items, total 3,27.
const RECEIPT: &[u8] = b"\x1b@\x1bt\x13SUPERMARKT\n\
Bon 0012-3456\n\
Halfvolle melk 1L        1,29\n\
2 x 0,99\n\
Appels                   1,98 B\n\
TOTAAL                   3,27\n\
PIN                      3,27\n\
\x1bd\x03\x1dV\x00";

const NOTICE_TEXT: &str = "COUPON NOT ACCEPTED";

fn agent() -> AgentId {
    AgentId::new("S001", "T01")
}

fn layout() -> Layout {
    Layout::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/receipts/supermarket.toml"))
        .unwrap()
}

/// Coupons on (a gate and notices) or off; an uplink or none.
fn settings(coupons: bool, has_uplink: bool) -> TillSettings {
    TillSettings {
        store: "S001".into(),
        till: "T01".into(),
        layout: layout(),
        codepage: CodePage::Cp858,
        esc_t: EscTTable::epson(),
        card_timeout_ms: 120_000,
        coupons_enabled: coupons,
        has_gate: coupons,
        has_notices: coupons,
        has_uplink,
        notice_text: NOTICE_TEXT.into(),
        columns: 42,
        expiry_label: "Valid until".into(),
        max_unverified: 0,
    }
}

fn card() -> CardNumber {
    CardNumber::parse(&with_check_digit("240100000012").unwrap()).unwrap()
}

/// Another till's well-formed coupon code (no keyring can check it offline).
fn coupon_code() -> String {
    let key = derive_till_key(b"till core unit test master secret", "S001", "T02");
    let expires = NaiveDate::from_ymd_opt(2026, 12, 31).unwrap();
    mint(&key, &CouponFields::new(10, 2, expires, 3).unwrap())
        .as_str()
        .to_string()
}

fn at(second: i64) -> Timestamp {
    Timestamp::from_unix_ms(1_764_932_400_000 + second * 1000, 60)
}

fn events(journal: &Journal) -> Vec<Event> {
    journal.read_from(1, 100).unwrap()
}

/// Hands every input to the core at its `now`, polling as the runtime does; all
/// effects in order.
fn run(
    core: &mut TillCore,
    journal: &mut Journal,
    inputs: Vec<(TillInput, Timestamp)>,
) -> Vec<TillEffect> {
    let mut effects = Vec::new();
    for (input, now) in inputs {
        effects.extend(core.handle(input, now, journal));
        while core.wants_poll() {
            effects.extend(core.poll(now, journal));
        }
    }
    effects
}

#[test]
fn a_card_then_a_receipt_are_journaled_at_the_now_given_and_the_cut_is_decided() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::open(dir.path(), &agent()).unwrap();
    let mut core = TillCore::new(settings(true, false), &journal);

    let scanned = core.handle(TillInput::Card(card(), at(1)), at(2), &mut journal);
    assert_eq!(scanned, vec![TillEffect::Journaled(1)]);

    // The cut is answered first; the receipt waits for `poll`.
    let decided = core.handle(TillInput::Print(RECEIPT.to_vec()), at(10), &mut journal);
    let cut_at = RECEIPT.len() as u64 - 3;
    assert_eq!(
        decided,
        vec![TillEffect::Decide {
            offset: cut_at,
            block: None
        }]
    );
    assert!(core.wants_poll());
    assert_eq!(
        events(&journal).len(),
        1,
        "the receipt is not journaled yet"
    );
    // Its time is the cut's, not the poll's.
    assert_eq!(
        core.poll(at(11), &mut journal),
        vec![TillEffect::Journaled(2)]
    );
    assert!(!core.wants_poll());
    assert!(core.poll(at(12), &mut journal).is_empty());

    let events = events(&journal);
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(events[0].seq, 1);
    assert_eq!(events[0].recorded_at, at(1), "a scan keeps its scan time");
    assert_eq!(events[0].kind, EventKind::CardScanned { card: card() });
    assert_eq!(events[1].seq, 2);
    assert_eq!(events[1].recorded_at, at(10));
    let EventKind::Receipt(receipt) = &events[1].kind else {
        panic!("expected a receipt, got {:?}", events[1].kind);
    };
    assert_eq!(receipt.receipt_no.as_deref(), Some("0012-3456"));
    assert_eq!(receipt.total_cents, 327);
    assert_eq!(receipt.lines.len(), 2);
    assert_eq!(receipt.card, Some(card()));
    assert_eq!(receipt.completed_at, at(10));
    assert!(!receipt.unbalanced);
    assert_eq!(journal.last_seq(), 2);
    core.finish();
}

#[test]
fn without_a_gate_no_cut_is_decided_and_the_receipt_is_journaled_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::open(dir.path(), &agent()).unwrap();
    let mut core = TillCore::new(settings(false, false), &journal);

    let effects = core.handle(TillInput::Print(RECEIPT.to_vec()), at(5), &mut journal);
    assert_eq!(effects, vec![TillEffect::Journaled(1)]);
    assert!(!core.wants_poll());
    // Bytes after the cut start the next receipt; a cut without text is no receipt.
    let effects = core.handle(
        TillInput::Print(b"\x1b@\x1dV\x00".to_vec()),
        at(6),
        &mut journal,
    );
    assert!(effects.is_empty(), "{effects:?}");
    assert_eq!(journal.last_seq(), 1);
}

#[test]
fn two_receipts_in_one_chunk_are_each_decided_then_journaled_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::open(dir.path(), &agent()).unwrap();
    let mut core = TillCore::new(settings(true, false), &journal);
    let second = String::from_utf8(RECEIPT.to_vec())
        .unwrap()
        .replace("0012-3456", "0012-3457");
    let bytes = [RECEIPT, second.as_bytes()].concat();
    let first_cut = RECEIPT.len() as u64 - 3;
    let second_cut = bytes.len() as u64 - 3;

    let effects = run(
        &mut core,
        &mut journal,
        vec![(TillInput::Print(bytes), at(20))],
    );
    assert_eq!(
        effects,
        vec![
            TillEffect::Decide {
                offset: first_cut,
                block: None
            },
            TillEffect::Journaled(1),
            TillEffect::Decide {
                offset: second_cut,
                block: None
            },
            TillEffect::Journaled(2),
        ]
    );
    let numbers: Vec<_> = events(&journal)
        .into_iter()
        .map(|e| match e.kind {
            EventKind::Receipt(r) => r.receipt_no.unwrap(),
            other => panic!("expected a receipt, got {other:?}"),
        })
        .collect();
    assert_eq!(numbers, ["0012-3456", "0012-3457"]);
}

#[test]
fn a_pending_receipt_is_journaled_before_the_next_input() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::open(dir.path(), &agent()).unwrap();
    let mut core = TillCore::new(settings(true, false), &journal);

    let decided = core.handle(TillInput::Print(RECEIPT.to_vec()), at(30), &mut journal);
    assert_eq!(decided.len(), 1);
    // No poll: the next input finishes the receipt first (a card after a cut belongs
    // to the next receipt, and its seq comes after the receipt's).
    let effects = core.handle(TillInput::Card(card(), at(31)), at(31), &mut journal);
    assert_eq!(
        effects,
        vec![TillEffect::Journaled(1), TillEffect::Journaled(2)]
    );
    let events = events(&journal);
    let EventKind::Receipt(receipt) = &events[0].kind else {
        panic!("expected the receipt first, got {events:#?}");
    };
    assert_eq!(receipt.card, None);
    assert_eq!(events[1].kind, EventKind::CardScanned { card: card() });
}

#[test]
fn an_unrecognised_scan_is_counted_and_not_journaled() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::open(dir.path(), &agent()).unwrap();
    let mut core = TillCore::new(settings(false, false), &journal);

    for _ in 0..2 {
        let effects = core.handle(TillInput::Unrecognised, at(1), &mut journal);
        assert!(effects.is_empty(), "{effects:?}");
    }
    let status = journal.status().unwrap();
    assert_eq!(status.unrecognised_scans, 2);
    assert_eq!(status.last_seq, 0);
}

/// The notice the cashier gets for a refused `code`.
fn notice_for(code: &str, reason: &str) -> Vec<u8> {
    let digits: String = code.chars().filter(char::is_ascii_digit).collect();
    let last4 = &digits[digits.len() - 4..];
    let lines = [NOTICE_TEXT.to_string(), format!("{reason}  ...{last4}")];
    let modes = PrinterModes::of(&EscPosParser::with_esc_t(
        CodePage::Cp858,
        EscTTable::epson(),
    ));
    notice_block(&lines, 42, &modes)
}

#[test]
fn a_coupon_scanned_offline_without_keyring_is_refused_with_a_notice() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::open(dir.path(), &agent()).unwrap();
    let mut core = TillCore::new(settings(true, false), &journal);
    let code = coupon_code();

    let effects = core.handle(
        TillInput::Coupon(code.clone(), at(40)),
        at(41),
        &mut journal,
    );
    assert_eq!(
        effects,
        vec![
            TillEffect::Notice(notice_for(&code, UNVERIFIABLE)),
            TillEffect::Journaled(1)
        ]
    );
    let events = events(&journal);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].recorded_at, at(40), "refused at its scan time");
    assert_eq!(
        events[0].kind,
        EventKind::CouponRefused {
            code,
            reason: UNVERIFIABLE.to_string()
        }
    );
}

#[test]
fn online_the_hub_is_asked_and_an_undelivered_check_is_decided_offline_at_now() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::open(dir.path(), &agent()).unwrap();
    let mut core = TillCore::new(settings(true, true), &journal);
    let code = coupon_code();

    let online = core.handle(TillInput::Hub(HubNews::Online(true)), at(0), &mut journal);
    assert!(online.is_empty());
    // A card scan asks for its digest, then is journaled.
    let scanned = core.handle(TillInput::Card(card(), at(1)), at(1), &mut journal);
    assert_eq!(
        scanned,
        vec![
            TillEffect::AskHub(HubRequest::Digest { card: card() }),
            TillEffect::Journaled(1)
        ]
    );
    let asked = core.handle(TillInput::Coupon(code.clone(), at(2)), at(2), &mut journal);
    let check = HubRequest::CouponCheck { code: code.clone() };
    assert_eq!(asked, vec![TillEffect::AskHub(check.clone())]);
    assert_eq!(
        journal.last_seq(),
        1,
        "nothing journaled while the hub is asked"
    );

    // The uplink is gone: the check is decided as unanswered, at the `now` given.
    let refused = core.handle(TillInput::Undelivered(check), at(3), &mut journal);
    assert_eq!(
        refused,
        vec![
            TillEffect::Notice(notice_for(&code, UNVERIFIABLE)),
            TillEffect::Journaled(2)
        ]
    );
    let last = events(&journal).pop().unwrap();
    assert_eq!(last.recorded_at, at(3));
    assert!(matches!(last.kind, EventKind::CouponRefused { .. }));

    // The hub is no longer asked, though the link said it was up.
    let again = core.handle(TillInput::Card(card(), at(4)), at(4), &mut journal);
    assert_eq!(again, vec![TillEffect::Journaled(3)]);
}

/// One shopper's inputs with their `now`s.
fn session() -> Vec<(TillInput, Timestamp)> {
    let second = String::from_utf8(RECEIPT.to_vec())
        .unwrap()
        .replace("0012-3456", "0012-3999");
    vec![
        (TillInput::Card(card(), at(100)), at(100)),
        (TillInput::Unrecognised, at(101)),
        (TillInput::Coupon(coupon_code(), at(102)), at(102)),
        (TillInput::Print(RECEIPT[..40].to_vec()), at(103)),
        (TillInput::Print(RECEIPT[40..].to_vec()), at(104)),
        (
            TillInput::CutReleased {
                offset: RECEIPT.len() as u64 - 3,
                outcome: CutOutcome::Declined,
            },
            at(105),
        ),
        (TillInput::Print(second.into_bytes()), at(110)),
    ]
}

#[test]
fn the_same_inputs_and_nows_give_the_same_events() {
    let mut histories = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(dir.path(), &agent()).unwrap();
        let mut core = TillCore::new(settings(true, false), &journal);
        let effects = run(&mut core, &mut journal, session());
        let events: Vec<_> = events(&journal)
            .into_iter()
            .map(|e| (e.seq, e.recorded_at, e.kind))
            .collect();
        histories.push((
            effects,
            events,
            journal.status().unwrap().unrecognised_scans,
        ));
    }
    let (effects, events, unrecognised) = &histories[0];
    // Card, refused coupon, two receipts.
    assert_eq!(events.len(), 4, "{events:#?}");
    assert_eq!(events.iter().map(|e| e.0).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_eq!(
        events[2].1,
        at(104),
        "the first receipt is cut at its last chunk"
    );
    assert_eq!(events[3].1, at(110));
    assert_eq!(*unrecognised, 1);
    assert_eq!(
        effects
            .iter()
            .filter(|e| matches!(e, TillEffect::Decide { .. }))
            .count(),
        2
    );
    assert_eq!(histories[0], histories[1]);
}
