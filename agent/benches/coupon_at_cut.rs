//! Issue 4's latency figure with the pure parts: cut byte in → coupon bytes out.
//!
//! Per receipt, all in-process, no IO: a realistic ESC/POS supermarket receipt (header,
//! receipt number, time, items with quantity, weight and discount lines, total, payment,
//! VAT, card, footer, a receipt-number barcode, feed, `GS V 66 0`) is fed in random
//! 1..=128-byte chunks into a [`CutGate`] and an [`EscPosParser`]. The clock starts right
//! before the chunk holding the cut's last byte is fed and covers: gate and parser feed,
//! the supermarket [`Layout`] on the receipt's lines, the basket (catalog category and
//! sensitive flag per line), the card's [`Digest`] from a map of 100,000, [`decide`]
//! against 50 campaigns, [`mint`] and [`coupon_block`] for the issued offers — all of it
//! the till core's real code: [`Checkout`] builds the receipt and [`CouponDesk`] decides
//! — and [`CutGate::on_decision`]. It stops when that call returns `forward` ending in the block
//! and the cut (or the cut alone when there is no coupon).
//!
//! Baseline from the same run: the same chunks through a gate alone, answered with
//! `on_decision(None)` (no parser, layout or decision).
//!
//! `cargo bench -p till360-agent --bench coupon_at_cut`. Deterministic input (xorshift).

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use till360_agent::checkout::Checkout;
use till360_agent::coupons::CouponDesk;
use till360_agent::escpos::encode::PrinterModes;
use till360_agent::escpos::gate::{CutGate, CutOutcome, DEFAULT_BUDGET};
use till360_agent::escpos::{CodePage, EscPosParser, PrintEvent};
use till360_agent::layout::Layout;
use till360_shared::campaign::{CampaignSet, Digest};
use till360_shared::{CardNumber, Currency};

mod support;

use support::{
    campaign_state, generate_campaigns, generate_digests, generate_receipt, percentile_us, report,
    GeneratedReceipt, Rng, CAMPAIGNS, COLUMNS, CUT, GOAL, MAX_CHUNK, STORE, TILL,
};

const RECEIPTS: usize = 10_000;
const WARM_UP: usize = 500;

/// Everything the till holds while it runs.
struct Till<'a> {
    layout: &'a Layout,
    /// Campaigns, keyring, catalog and the digest cache.
    desk: CouponDesk,
}

#[derive(Default)]
struct Run {
    all: Vec<Duration>,
    printed: Vec<Duration>,
    coupons: usize,
    would_have: usize,
    nothing: usize,
    anonymous: usize,
    unknown_card: usize,
    late: usize,
}

fn run_decided(till: &Till<'_>, receipts: &[GeneratedReceipt]) -> Run {
    let mut run = Run::default();
    let mut gate = CutGate::new(DEFAULT_BUDGET);
    let mut parser = EscPosParser::new(CodePage::Cp437);
    let mut lines: Vec<String> = Vec::with_capacity(64);
    let mut serials: HashMap<(u16, NaiveDate), u16> = HashMap::new();
    let mut checkout = Checkout::default();
    let (mut fed, mut forwarded, mut blocks) = (0usize, 0usize, 0usize);

    for r in receipts {
        let mut at = 0;
        for (i, &len) in r.chunks.iter().enumerate() {
            let chunk = &r.bytes[at..at + len];
            at += len;
            fed += len;
            let last = i + 1 == r.chunks.len();
            // The cut's last byte is the receipt's last byte: the clock starts here.
            let start = Instant::now();
            let out = gate.feed(chunk, start);
            forwarded += out.forward.len();
            parser.feed(chunk);
            while let Some(event) = parser.poll() {
                if let PrintEvent::Line(text) = event {
                    lines.push(text);
                }
            }
            if !last {
                assert!(out.held_cuts.is_empty(), "a cut before the receipt's end");
                continue;
            }
            let [cut] = out.held_cuts[..] else {
                panic!("the receipt's cut was not held: {:?}", out.held_cuts);
            };

            let parsed = till.layout.match_lines(lines.iter().map(String::as_str));
            let layout_total = parsed.total_cents;
            let layout_lines: i64 = parsed.lines.iter().map(|l| l.amount_cents).sum();
            if let Some(card) = &r.card {
                checkout.on_card(card.clone(), r.now);
            }
            let receipt = checkout.on_receipt(parsed, Currency::EUR, r.now);
            let receipt_no = receipt.receipt_no.as_deref().unwrap_or("?");
            let receipt_key = format!("{STORE}/{TILL}/{receipt_no}");
            let modes = PrinterModes::of(&parser);
            let cut_coupons = till.desk.decide_at_cut(
                &receipt,
                &receipt_key,
                STORE,
                false,
                modes,
                r.now,
                |number, expires| {
                    let serial = serials.entry((number, expires)).or_insert(0);
                    *serial += 1;
                    Ok::<u16, std::convert::Infallible>(*serial - 1)
                },
            );
            let block = cut_coupons.block.clone();
            let out = gate.on_decision(cut, block, Instant::now());
            let elapsed = start.elapsed();

            // Checks, off the clock.
            forwarded += out.forward.len();
            assert_eq!(layout_total, Some(r.total_cents), "layout total");
            assert_eq!(layout_lines, r.total_cents, "layout lines");
            assert!(
                till.desk
                    .basket(&receipt)
                    .iter()
                    .all(|l| l.category.is_some()),
                "catalog"
            );
            assert!(cut_coupons.not_printed.is_empty(), "{cut_coupons:?}");
            let printed = cut_coupons.block.is_some();
            let expected = match &cut_coupons.block {
                Some(block) => [block.as_slice(), &CUT].concat(),
                None => CUT.to_vec(),
            };
            if out.rejected.is_some() {
                run.late += 1;
            } else {
                assert!(out.forward.ends_with(&expected), "forward = … block cut");
                let outcome = out.released.first().map(|rc| rc.outcome);
                let want = if printed {
                    CutOutcome::CouponPrinted
                } else {
                    CutOutcome::Declined
                };
                assert_eq!(outcome, Some(want));
                if printed {
                    blocks += expected.len() - CUT.len();
                }
            }
            lines.clear();

            run.all.push(elapsed);
            match &r.card {
                None => run.anonymous += 1,
                Some(card) if till.desk.digest_of(card).is_none() => run.unknown_card += 1,
                Some(_) => {}
            }
            if printed {
                run.coupons += 1;
                run.printed.push(elapsed);
            } else if !cut_coupons.would_have.is_empty() {
                run.would_have += 1;
            } else {
                run.nothing += 1;
            }
        }
    }
    assert!(!gate.is_holding_cut() && gate.held_bytes() == 0);
    assert_eq!(forwarded, fed + blocks, "output = input + blocks");
    run
}

fn run_baseline(receipts: &[GeneratedReceipt]) -> Vec<Duration> {
    let mut times = Vec::with_capacity(receipts.len());
    let mut gate = CutGate::new(DEFAULT_BUDGET);
    let (mut fed, mut forwarded) = (0usize, 0usize);
    for r in receipts {
        let mut at = 0;
        for (i, &len) in r.chunks.iter().enumerate() {
            let chunk = &r.bytes[at..at + len];
            at += len;
            fed += len;
            let start = Instant::now();
            let out = gate.feed(chunk, start);
            forwarded += out.forward.len();
            if i + 1 < r.chunks.len() {
                continue;
            }
            let [cut] = out.held_cuts[..] else {
                panic!("the receipt's cut was not held: {:?}", out.held_cuts);
            };
            let out = gate.on_decision(cut, None, Instant::now());
            let elapsed = start.elapsed();
            assert!(out.rejected.is_none() && out.forward.ends_with(&CUT));
            forwarded += out.forward.len();
            times.push(elapsed);
        }
    }
    assert_eq!(forwarded, fed, "pass-through is exact");
    times
}

/// The desk as the till core holds it: the campaign state the hub pushed (keyring with
/// campaign numbers 1.., the catalog) and the digest cache keyed by card key.
fn coupon_desk(campaigns: &CampaignSet, digests: &HashMap<CardNumber, Digest>) -> CouponDesk {
    let state = campaign_state(campaigns);
    let mut desk = CouponDesk::new(COLUMNS, "Geldig t/m");
    let keyed: Vec<_> = digests
        .iter()
        .map(|(card, digest)| (state.keyring.card_key(card), digest.clone()))
        .collect();
    desk.on_campaigns(state);
    desk.load_digests(keyed);
    desk
}

fn main() {
    let started = Instant::now();
    let layout_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/receipts/supermarket.toml");
    let layout = Layout::load(&layout_path).expect("supermarket layout");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let campaigns = generate_campaigns(&mut rng);
    let digests = generate_digests(&mut rng, &campaigns);
    let receipts: Vec<GeneratedReceipt> = (0..RECEIPTS)
        .map(|n| generate_receipt(&mut rng, n))
        .collect();
    let till = Till {
        layout: &layout,
        desk: coupon_desk(&campaigns, &digests),
    };
    let bytes: usize = receipts.iter().map(|r| r.bytes.len()).sum();
    let chunks: usize = receipts.iter().map(|r| r.chunks.len()).sum();
    println!(
        "coupon_at_cut: {RECEIPTS} receipts ({bytes} bytes in {chunks} chunks of 1..={MAX_CHUNK}), \
         {CAMPAIGNS} campaigns, {} digests cached; clock: feed of the chunk with the cut's last \
         byte → on_decision's forward (after a {WARM_UP}-receipt warm-up)",
        digests.len()
    );

    // Warm-up (regex caches, allocator), then the measured runs on fresh state.
    run_decided(&till, &receipts[..WARM_UP]);
    run_baseline(&receipts[..WARM_UP]);
    let run = run_decided(&till, &receipts);
    let baseline = run_baseline(&receipts);

    println!(
        "receipts: {} coupon printed, {} would-have (control), {} nothing; \
         {} anonymous, {} card without digest, {} late",
        run.coupons, run.would_have, run.nothing, run.anonymous, run.unknown_card, run.late
    );
    report("cut→coupon, all receipts", &run.all);
    report("cut→coupon, coupon printed", &run.printed);
    report("baseline gate only, on_decision(None)", &baseline);
    let mut sorted = run.all.clone();
    sorted.sort_unstable();
    let p99 = percentile_us(&sorted, 0.99);
    let goal = GOAL.as_micros() as f64;
    println!(
        "goal p99 <= {goal:.0} us: {}",
        if p99 <= goal { "met" } else { "NOT met" }
    );
    println!("bench ran in {:.1} s", started.elapsed().as_secs_f64());
}
