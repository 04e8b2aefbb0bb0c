use std::cell::Cell;

use chrono::NaiveDate;
use till360_shared::campaign::{
    Campaign, CampaignSet, CatalogItem, Digest, Reason, Settings, Trigger,
};
use till360_shared::card::with_check_digit;
use till360_shared::coupon::{
    derive_digest_key, derive_till_key, mint, verify, CouponFields, Keyring,
};
use till360_shared::event::Verification;
use till360_shared::wire::{CouponVerdict, DigestEntry};
use till360_shared::{CardNumber, Currency, Receipt, ReceiptLine, Timestamp};

use super::redeem::{ALREADY_REDEEMED, UNVERIFIABLE};
use super::*;
use crate::escpos::encode::PrinterModes;
use crate::escpos::CodePage;
use crate::hub_link::CampaignState;

const MASTER: &[u8] = b"unit test master secret, 32 bytes+";
/// 2026-11-23 10:00 CET.
const NOW_MS: i64 = 1_795_424_400_000;

fn now() -> Timestamp {
    Timestamp::from_unix_ms(NOW_MS, 60)
}

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 23).unwrap()
}

fn campaign(id: &str, trigger: Trigger) -> Campaign {
    Campaign {
        id: id.into(),
        name: format!("Name of {id}"),
        trigger,
        offer: format!("Offer of {id}"),
        valid_days: 14,
        control_percent: 0,
        max_per_customer: 1,
        cap_days: 30,
        stores: None,
        segments: None,
        priority: 0,
        offline: true,
    }
}

fn big_basket(id: &str) -> Campaign {
    campaign(
        id,
        Trigger::BasketTotal {
            min_total_cents: 5000,
        },
    )
}

fn keyring(campaigns: &[&str]) -> Keyring {
    let own = derive_till_key(MASTER, "S001", "T01");
    let other = derive_till_key(MASTER, "S001", "T02");
    Keyring {
        till_number: 1,
        till_key: *own.as_bytes(),
        store_tills: vec![(1, *own.as_bytes()), (2, *other.as_bytes())],
        campaign_numbers: campaigns
            .iter()
            .enumerate()
            .map(|(i, id)| (id.to_string(), i as u16 + 10))
            .collect(),
        digest_key: derive_digest_key(MASTER, "S001"),
    }
}

fn catalog() -> Vec<CatalogItem> {
    let item = |sku: &str, description: &str, category: &str, sensitive| CatalogItem {
        sku: sku.into(),
        description: description.into(),
        category: category.into(),
        sensitive,
    };
    vec![
        item("1001", "Koffiebonen 1kg", "koffie", false),
        item("", "Nicotinepleisters", "stoppen met roken", true),
    ]
}

fn state(campaigns: Vec<Campaign>, max_per_receipt: u32) -> CampaignState {
    let ids: Vec<&str> = campaigns.iter().map(|c| c.id.as_str()).collect();
    CampaignState {
        version: 1,
        keyring: keyring(&ids),
        set: CampaignSet {
            version: 1,
            campaigns: campaigns.clone(),
            settings: Settings {
                max_per_receipt,
                max_per_customer_per_week: 10,
            },
        },
        catalog: catalog(),
    }
}

fn line(description: &str, sku: Option<&str>, cents: i64) -> ReceiptLine {
    ReceiptLine {
        description: description.into(),
        sku: sku.map(str::to_string),
        quantity_milli: 1000,
        unit_cents: None,
        amount_cents: cents,
        discount: cents < 0,
    }
}

fn receipt(lines: Vec<ReceiptLine>, card: Option<CardNumber>) -> Receipt {
    let total_cents = lines.iter().map(|l| l.amount_cents).sum();
    Receipt {
        receipt_no: Some("0012-0001".into()),
        printed_at: None,
        completed_at: now(),
        card,
        card_last4: None,
        lines,
        total_cents,
        currency: Currency::EUR,
        unbalanced: false,
        unmatched_lines: 0,
    }
}

fn modes() -> PrinterModes {
    PrinterModes::epson(CodePage::Cp858)
}

fn card() -> CardNumber {
    CardNumber::parse(&with_check_digit("240100000012").unwrap()).unwrap()
}

fn counting_serials() -> impl FnMut(u16, NaiveDate) -> Result<u16, String> {
    let mut next = 0u16;
    move |_, _| {
        next += 1;
        Ok(next - 1)
    }
}

fn decide_with(desk: &CouponDesk, receipt: &Receipt) -> CutCoupons {
    desk.decide_at_cut(
        receipt,
        "S001/T01/1",
        "S001",
        false,
        modes(),
        now(),
        counting_serials(),
    )
}

/// The Code128 set C data a code's barcode carries (`{C` and one byte per digit pair).
fn barcode_of(code: &str) -> Vec<u8> {
    let mut data = b"{C".to_vec();
    data.extend(
        code.as_bytes()
            .chunks(2)
            .map(|p| (p[0] - b'0') * 10 + (p[1] - b'0')),
    );
    data
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn catalog_matches_by_sku_then_description_and_discounts_follow_their_item() {
    let mut desk = CouponDesk::default();
    desk.on_campaigns(state(vec![big_basket("big")], 1));
    let r = receipt(
        vec![
            line("whatever the POS prints", Some("1001"), 1199),
            line("  NICOTINEPLEISTERS ", None, 2499),
            line("Korting", None, -500),
            line("Brood", None, 279),
        ],
        None,
    );
    let basket = desk.basket(&r);
    let seen: Vec<(Option<&str>, bool)> = basket
        .iter()
        .map(|l| (l.category.as_deref(), l.sensitive))
        .collect();
    assert_eq!(
        seen,
        vec![
            (Some("koffie"), false),
            (Some("stoppen met roken"), true),
            (Some("stoppen met roken"), true),
            (None, false),
        ]
    );
}

#[test]
fn a_big_basket_gets_a_verifiable_coupon_block() {
    let mut desk = CouponDesk::new(32, "Valid until");
    desk.on_campaigns(state(vec![big_basket("big")], 1));
    let r = receipt(vec![line("Koffiebonen 1kg", None, 6000)], Some(card()));
    let out = decide_with(&desk, &r);
    assert_eq!(out.issued.len(), 1, "{out:?}");
    let issued = &out.issued[0];
    assert_eq!(issued.campaign_id, "big");
    assert_eq!(issued.card, Some(card()));
    assert_eq!(issued.expires, today() + chrono::Days::new(14));
    let code = issued.code.clone().expect("a printed coupon has a code");
    let fields = verify(&derive_till_key(MASTER, "S001", "T01"), &code).unwrap();
    assert_eq!(
        (fields.campaign(), fields.till(), fields.serial()),
        (10, 1, 0)
    );
    let block = out.block.expect("a block to print");
    assert!(
        contains(&block, &barcode_of(&code)),
        "the barcode carries the code"
    );
    assert!(contains(&block, b"Name of big"));
    assert!(contains(&block, b"Valid until"));
    assert!(out.would_have.is_empty());
}

#[test]
fn sensitive_products_do_not_count_towards_a_trigger() {
    let mut desk = CouponDesk::default();
    desk.on_campaigns(state(vec![big_basket("big")], 1));
    let r = receipt(
        vec![
            line("Nicotinepleisters", None, 4500),
            line("Koffiebonen 1kg", None, 1199),
        ],
        None,
    );
    let out = decide_with(&desk, &r);
    assert!(out.block.is_none() && out.issued.is_empty(), "{out:?}");
    assert_eq!(
        out.skipped,
        vec![("big".to_string(), Reason::SensitiveOnly)]
    );
}

#[test]
fn the_control_group_gets_a_would_have_and_no_block() {
    let mut desk = CouponDesk::default();
    let mut control = big_basket("big");
    control.control_percent = 100;
    desk.on_campaigns(state(vec![control], 1));
    let serial_calls = Cell::new(0);
    let out = desk.decide_at_cut(
        &receipt(vec![line("Koffiebonen 1kg", None, 6000)], Some(card())),
        "S001/T01/1",
        "S001",
        false,
        modes(),
        now(),
        |_, _| {
            serial_calls.set(serial_calls.get() + 1);
            Ok::<u16, String>(0)
        },
    );
    assert!(out.block.is_none() && out.issued.is_empty(), "{out:?}");
    assert_eq!(out.would_have.len(), 1);
    assert_eq!(out.would_have[0].code, None);
    assert_eq!(out.would_have[0].campaign_id, "big");
    assert_eq!(serial_calls.get(), 0, "no serial is used for a would-have");
}

#[test]
fn several_offers_print_one_block_after_the_other() {
    let mut desk = CouponDesk::default();
    let mut first = big_basket("first");
    first.priority = 5;
    let coffee = campaign(
        "coffee",
        Trigger::BasketCategory {
            category: "koffie".into(),
            min_total_cents: 1,
        },
    );
    desk.on_campaigns(state(vec![first, coffee], 3));
    let out = decide_with(
        &desk,
        &receipt(vec![line("Koffiebonen 1kg", None, 6000)], None),
    );
    let codes: Vec<String> = out.issued.iter().filter_map(|i| i.code.clone()).collect();
    assert_eq!(codes.len(), 2, "{out:?}");
    let block = out.block.unwrap();
    let at = |code: &str| {
        let needle = barcode_of(code);
        block
            .windows(needle.len())
            .position(|w| w == needle)
            .unwrap()
    };
    assert!(at(&codes[0]) < at(&codes[1]), "in priority order");
    assert_eq!(out.issued[0].campaign_id, "first");
    assert_ne!(codes[0], codes[1]);
}

#[test]
fn no_campaign_state_decides_nothing() {
    let desk = CouponDesk::default();
    let called = Cell::new(false);
    let out = desk.decide_at_cut(
        &receipt(vec![line("Koffiebonen 1kg", None, 60_000)], Some(card())),
        "k",
        "S001",
        false,
        modes(),
        now(),
        |_, _| {
            called.set(true);
            Ok::<u16, String>(0)
        },
    );
    assert_eq!(out, CutCoupons::default());
    assert!(!called.get());
}

#[test]
fn a_serial_error_leaves_that_coupon_unprinted_and_others_printed() {
    let mut desk = CouponDesk::default();
    let mut first = big_basket("first");
    first.priority = 5;
    desk.on_campaigns(state(vec![first, big_basket("second")], 3));
    let out = desk.decide_at_cut(
        &receipt(vec![line("Brood", None, 6000)], None),
        "k",
        "S001",
        false,
        modes(),
        now(),
        |number, _| {
            if number == 10 {
                Err("disk full")
            } else {
                Ok(7)
            }
        },
    );
    assert_eq!(out.issued.len(), 1, "{out:?}");
    assert_eq!(out.issued[0].campaign_id, "second");
    assert_eq!(out.not_printed.len(), 1);
    assert_eq!(out.not_printed[0].campaign_id, "first");
    assert!(out.not_printed[0].reason.contains("disk full"));
    assert!(out.block.is_some());
}

#[test]
fn a_campaign_without_a_number_is_not_printed() {
    let mut desk = CouponDesk::default();
    let mut st = state(vec![big_basket("big")], 1);
    st.keyring.campaign_numbers.clear();
    desk.on_campaigns(st);
    let out = decide_with(&desk, &receipt(vec![line("Brood", None, 6000)], None));
    assert!(out.block.is_none() && out.issued.is_empty());
    assert_eq!(out.not_printed.len(), 1, "{out:?}");
}

#[test]
fn digests_are_cached_by_card_key_and_used_at_the_cut() {
    let mut desk = CouponDesk::default();
    let mut points = campaign("points", Trigger::PointsThreshold { points: 100 });
    points.offline = true;
    desk.on_campaigns(state(vec![points], 1));
    let digest = Digest {
        customer_key: "ck-1".into(),
        points: 500,
        personalisation_consent: true,
        ..Digest::default()
    };
    let r = receipt(vec![line("Brood", None, 279)], Some(card()));
    assert!(decide_with(&desk, &r).issued.is_empty(), "no digest yet");

    desk.on_digest(&card(), Some(digest.clone()));
    let out = decide_with(&desk, &r);
    assert_eq!(out.issued.len(), 1, "{out:?}");
    assert_eq!(out.issued[0].customer_key.as_deref(), Some("ck-1"));

    let key = desk.state().unwrap().keyring.card_key(&card());
    desk.on_digests(
        vec![DigestEntry {
            card_key: key,
            digest: None,
        }],
        false,
    );
    assert_eq!(desk.digest_count(), 0);
    desk.load_digests([(key, digest)]);
    desk.on_digests(Vec::new(), true);
    assert_eq!(desk.digest_count(), 0, "reset empties the cache");
}

// ---- redemption ----

fn code_of(store: &str, till: &str, till_no: u16, expires: NaiveDate) -> String {
    let key = derive_till_key(MASTER, store, till);
    mint(&key, &CouponFields::new(10, till_no, expires, 3).unwrap())
        .as_str()
        .to_string()
}

#[test]
fn own_store_codes_are_checked_offline() {
    let ring = keyring(&["big"]);
    let valid = code_of("S001", "T02", 2, today());
    assert_eq!(
        check_code(Some(&ring), &valid, today()),
        CodeCheck::Accepted(Verification::OwnStore)
    );
    let expired = code_of("S001", "T01", 1, today() - chrono::Days::new(1));
    assert_eq!(
        check_code(Some(&ring), &expired, today()),
        CodeCheck::Refused("expired".into())
    );
    // Till 2's number, another key: forged.
    let forged = code_of("S009", "T02", 2, today());
    assert_eq!(
        check_code(Some(&ring), &forged, today()),
        CodeCheck::Refused("forged".into())
    );
    let other_store = code_of("S002", "T01", 40, today());
    assert_eq!(
        check_code(Some(&ring), &other_store, today()),
        CodeCheck::AskHub
    );
    assert_eq!(check_code(None, &valid, today()), CodeCheck::AskHub);
    assert!(matches!(
        check_code(Some(&ring), "123", today()),
        CodeCheck::Refused(_)
    ));
}

fn context(ring: &Keyring, in_ledger: bool, hub_reachable: bool) -> ScanContext<'_> {
    ScanContext {
        keyring: Some(ring),
        today: today(),
        in_ledger,
        hub_reachable,
    }
}

#[test]
fn scanned_codes_count_once_and_wait_for_the_next_receipt() {
    let ring = keyring(&["big"]);
    let own = code_of("S001", "T01", 1, today());
    let asked = code_of("S002", "T01", 40, today());
    let refused_later = code_of("S003", "T01", 41, today());
    let unanswered = code_of("S004", "T01", 42, today());
    let mut scanned = ScannedCoupons::new(5);
    let offline = context(&ring, false, false);
    let online = context(&ring, false, true);
    assert_eq!(
        scanned.on_scan(&own, offline),
        ScanOutcome::Accepted(Verification::OwnStore)
    );
    assert_eq!(scanned.on_scan(&own, offline), ScanOutcome::Duplicate);
    for code in [&asked, &refused_later, &unanswered] {
        assert_eq!(scanned.on_scan(code, online), ScanOutcome::AskHub);
    }
    assert_eq!(scanned.on_scan(&asked, online), ScanOutcome::Duplicate);
    assert_eq!(
        scanned.on_verdict(&asked, Some(CouponVerdict::Valid)),
        Some(VerdictOutcome::Accepted(Verification::Hub))
    );
    assert_eq!(
        scanned.on_verdict(&refused_later, Some(CouponVerdict::AlreadyRedeemed)),
        Some(VerdictOutcome::Refused("already_redeemed".into()))
    );
    assert_eq!(scanned.on_verdict(&asked, None), None, "no longer waiting");
    assert_eq!(
        scanned.take_for_receipt(),
        ReceiptCodes {
            accepted: vec![
                (own.clone(), Verification::OwnStore),
                (asked.clone(), Verification::Hub),
                (unanswered.clone(), Verification::Unverified),
            ],
            refused: vec![],
        }
    );
    assert_eq!(scanned.pending(), 0);
    assert_eq!(
        scanned.on_verdict(&unanswered, Some(CouponVerdict::Forged)),
        None,
        "a verdict after the cut changes nothing"
    );
}

#[test]
fn a_code_in_the_stores_ledger_is_refused_online_or_not() {
    let ring = keyring(&["big"]);
    let own = code_of("S001", "T01", 1, today());
    let other = code_of("S002", "T01", 40, today());
    let mut scanned = ScannedCoupons::new(5);
    for code in [&own, &other] {
        for hub_reachable in [false, true] {
            assert_eq!(
                scanned.on_scan(code, context(&ring, true, hub_reachable)),
                ScanOutcome::Refused(ALREADY_REDEEMED.into())
            );
        }
    }
    // A forgery stays a forgery, ledger or not.
    let forged = code_of("S009", "T02", 2, today());
    assert_eq!(
        scanned.on_scan(&forged, context(&ring, true, true)),
        ScanOutcome::Refused("forged".into())
    );
    assert_eq!(scanned.pending(), 0);
}

#[test]
fn online_every_code_is_asked_and_an_own_code_falls_back_to_the_offline_check() {
    let ring = keyring(&["big"]);
    let own = code_of("S001", "T01", 1, today());
    let own_late = code_of("S001", "T02", 2, today());
    let mut scanned = ScannedCoupons::new(0);
    let online = context(&ring, false, true);
    assert_eq!(scanned.on_scan(&own, online), ScanOutcome::AskHub);
    assert_eq!(scanned.on_scan(&own_late, online), ScanOutcome::AskHub);
    assert_eq!(
        scanned.on_verdict(&own, None),
        Some(VerdictOutcome::Accepted(Verification::OwnStore)),
        "no answer in time: the offline check"
    );
    // Still waiting at the cut: decided offline there.
    assert_eq!(
        scanned.take_for_receipt().accepted,
        vec![
            (own.clone(), Verification::OwnStore),
            (own_late, Verification::OwnStore)
        ]
    );
    // The hub knows better: a code redeemed at another till, not yet in the ledger.
    assert_eq!(scanned.on_scan(&own, online), ScanOutcome::AskHub);
    assert_eq!(
        scanned.on_verdict(&own, Some(CouponVerdict::AlreadyRedeemed)),
        Some(VerdictOutcome::Refused(ALREADY_REDEEMED.into()))
    );
}

#[test]
fn other_stores_codes_are_accepted_unverified_at_most_max_unverified_per_outage() {
    let ring = keyring(&[]);
    let codes: Vec<String> = (0..4)
        .map(|n| code_of("S002", "T01", 40 + n, today()))
        .collect();
    let mut scanned = ScannedCoupons::new(2);
    let offline = context(&ring, false, false);
    assert_eq!(
        scanned.on_scan(&codes[0], offline),
        ScanOutcome::Accepted(Verification::Unverified)
    );
    // Asked while the link was up, but no answer in time: counts too.
    assert_eq!(
        scanned.on_scan(&codes[1], context(&ring, false, true)),
        ScanOutcome::AskHub
    );
    assert_eq!(
        scanned.on_verdict(&codes[1], None),
        Some(VerdictOutcome::Accepted(Verification::Unverified))
    );
    assert_eq!(
        scanned.on_scan(&codes[2], offline),
        ScanOutcome::Refused(UNVERIFIABLE.into())
    );
    // Waiting at the cut beyond the limit: refused there.
    assert_eq!(
        scanned.on_scan(&codes[3], context(&ring, false, true)),
        ScanOutcome::AskHub
    );
    let receipt = scanned.take_for_receipt();
    assert_eq!(receipt.accepted.len(), 2);
    assert_eq!(
        receipt.refused,
        vec![(codes[3].clone(), UNVERIFIABLE.to_string())]
    );
    // The link comes back: the next outage has its own count.
    scanned.on_link(true);
    assert_eq!(
        scanned.on_scan(&codes[2], offline),
        ScanOutcome::Accepted(Verification::Unverified)
    );
}
