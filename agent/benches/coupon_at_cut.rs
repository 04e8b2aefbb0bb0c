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

use chrono::{Datelike, NaiveDate, Timelike};
use till360_agent::checkout::Checkout;
use till360_agent::coupons::CouponDesk;
use till360_agent::escpos::encode::PrinterModes;
use till360_agent::escpos::gate::{CutGate, CutOutcome, DEFAULT_BUDGET};
use till360_agent::escpos::{CodePage, EscPosParser, PrintEvent};
use till360_agent::hub_link::CampaignState;
use till360_agent::layout::Layout;
use till360_shared::campaign::definition::is_valid_campaign_id;
use till360_shared::campaign::{
    Campaign, CampaignSet, CatalogItem, Digest, MonthDay, Settings, Trigger,
};
use till360_shared::card::with_check_digit;
use till360_shared::coupon::{derive_digest_key, derive_till_key, Keyring};
use till360_shared::{CardNumber, Currency, Timestamp};

const RECEIPTS: usize = 10_000;
const WARM_UP: usize = 500;
const CAMPAIGNS: usize = 50;
const DIGESTS: usize = 100_000;
const STORE: &str = "S001";
const TILL: &str = "T01";
const TILL_NUMBER: u16 = 1;
const COLUMNS: usize = 48;
const MAX_CHUNK: usize = 128;
const GOAL: Duration = Duration::from_millis(5);
/// 2026-11-23 08:00 local (CET), the first receipt; one receipt a minute after it.
const START_MS: i64 = 1_795_417_200_000;
const OFFSET_MIN: i16 = 60;
const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;

const ESC: u8 = 0x1B;
const GS: u8 = 0x1D;
const LF: u8 = 0x0A;
const CUT: [u8; 4] = [GS, b'V', 66, 0];

/// Seeded xorshift64: the same receipts, digests and campaigns on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// One product of the store's catalog (what the hub pushes with the campaigns).
struct Product {
    description: &'static str,
    cents: i64,
    category: &'static str,
    sensitive: bool,
    /// Price per kg, printed with the weight on the item line.
    weighed: bool,
}

const fn product(description: &'static str, cents: i64, category: &'static str) -> Product {
    Product {
        description,
        cents,
        category,
        sensitive: false,
        weighed: false,
    }
}

const CATALOG: &[Product] = &[
    product("Halfvolle melk 1L", 129, "zuivel"),
    product("Yoghurt naturel 1L", 189, "zuivel"),
    product("Kaas jong belegen 500g", 549, "kaas"),
    product("Brood volkoren heel", 279, "brood"),
    product("Croissants 4st", 229, "brood"),
    product("Koffiebonen 1kg", 1199, "koffie"),
    product("Thee groen 20st", 199, "koffie"),
    product("Pasta penne 500g", 119, "houdbaar"),
    product("Tomatensaus 400g", 169, "houdbaar"),
    product("Rijst basmati 1kg", 239, "houdbaar"),
    product("Kipfilet 500g", 649, "vlees"),
    product("Rundergehakt 500g", 499, "vlees"),
    product("Zalmfilet 250g", 799, "vis"),
    product("Chips paprika", 149, "snacks"),
    product("Chocolade puur 200g", 229, "snoep"),
    product("Wasmiddel 2L", 999, "huishouden"),
    product("Afwasmiddel 500ml", 189, "huishouden"),
    product("Shampoo 300ml", 349, "verzorging"),
    product("Tandpasta", 199, "verzorging"),
    product("Luiers maat 4", 1299, "baby"),
    product("Bier krat 24x30cl", 1599, "bier"),
    product("Wijn rood 75cl", 699, "wijn"),
    product("Hondenvoer 4kg", 1499, "dier"),
    product("Bloemen boeket", 599, "bloemen"),
    Product {
        weighed: true,
        ..product("Bananen", 199, "groente-fruit")
    },
    Product {
        weighed: true,
        ..product("Tomaten los", 349, "groente-fruit")
    },
    Product {
        weighed: true,
        ..product("Appels Elstar", 249, "groente-fruit")
    },
    Product {
        sensitive: true,
        ..product("Paracetamol 500mg 20st", 199, "apotheek")
    },
    Product {
        sensitive: true,
        ..product("Zwangerschapstest", 899, "intieme verzorging")
    },
    Product {
        sensitive: true,
        ..product("Nicotinepleisters", 2499, "stoppen met roken")
    },
];

/// Categories basket_category campaigns target (never a sensitive one: the hub refuses
/// such a set before pushing it).
const CATEGORIES: &[&str] = &[
    "zuivel",
    "koffie",
    "vlees",
    "groente-fruit",
    "huishouden",
    "baby",
    "wijn",
    "bier",
    "dier",
    "verzorging",
];
const SEGMENTS: &[&str] = &["vip", "gezin", "student", "senior", "bio"];
const FIRST_NAMES: &[&str] = &["Anna", "Daan", "Emma", "Sem", "Julia", "Lucas", "Sophie"];

fn eur(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let c = cents.unsigned_abs();
    format!("{sign}{},{:02}", c / 100, c % 100)
}

fn card_number(i: usize) -> CardNumber {
    CardNumber::parse(&with_check_digit(&format!("2403{i:08}")).expect("card")).expect("card")
}

/// One receipt as the POS sends it, with what the generator knows about it.
struct GeneratedReceipt {
    bytes: Vec<u8>,
    /// Chunk lengths, as reads from the POS port return them.
    chunks: Vec<usize>,
    /// The card scanned for this receipt (the scanner side of checkout), if any.
    card: Option<CardNumber>,
    total_cents: i64,
    now: Timestamp,
}

struct ReceiptWriter {
    bytes: Vec<u8>,
}

impl ReceiptWriter {
    fn raw(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    fn line(&mut self, text: &str) {
        self.bytes.extend(CodePage::Cp858.encode_str(text));
        self.bytes.push(LF);
    }

    fn item(&mut self, left: &str, cents: i64, vat: Option<char>) {
        let amount = match vat {
            Some(code) => format!("{} {code}", eur(cents)),
            None => eur(cents),
        };
        self.line(&format!("{left:<34}{amount:>14}"));
    }
}

fn generate_receipt(rng: &mut Rng, n: usize) -> GeneratedReceipt {
    let now = Timestamp::from_unix_ms(START_MS + n as i64 * MINUTE_MS, OFFSET_MIN);
    let local = now.local();
    let card = match rng.below(100) {
        0..=74 => Some(card_number(rng.below(DIGESTS as u64) as usize)),
        // Cards the till has no digest for (new, or not seen here for months).
        75..=79 => Some(card_number(DIGESTS + rng.below(1_000_000) as usize)),
        _ => None,
    };

    let mut w = ReceiptWriter {
        bytes: Vec::with_capacity(2048),
    };
    w.raw(&[ESC, b'@', ESC, b't', 19, ESC, b'a', 1, ESC, b'!', 0x30]);
    w.line("SUPERMARKT DE HOEK");
    w.raw(&[ESC, b'!', 0]);
    w.line("Dorpsstraat 12, 3512 AB Utrecht");
    w.line("Tel. 030-1234567");
    w.raw(&[ESC, b'a', 0]);
    let receipt_no = format!("{:04}-{:04}", 12 + n / 10_000, n % 10_000);
    w.line(&format!("Bon {receipt_no}"));
    w.line(&format!(
        "{:02}-{:02}-{:04} {:02}:{:02}  Kassa 3",
        local.day(),
        local.month(),
        local.year(),
        local.hour(),
        local.minute()
    ));
    w.line(&"-".repeat(COLUMNS));

    let items = if rng.percent(20) {
        rng.range(15, 45)
    } else {
        rng.range(1, 14)
    };
    let mut total = 0;
    for _ in 0..items {
        let p = rng.pick(CATALOG);
        let vat = if rng.percent(30) { Some('B') } else { None };
        if p.weighed {
            let grams = rng.range(150, 2500);
            let cents = (p.cents * grams + 500) / 1000;
            let left = format!("{} {},{:03} kg", p.description, grams / 1000, grams % 1000);
            w.item(&left, cents, vat);
            total += cents;
            continue;
        }
        let qty = if rng.percent(25) { rng.range(2, 6) } else { 1 };
        if qty > 1 {
            w.line(&format!("{qty} x {}", eur(p.cents)));
        }
        w.item(p.description, qty * p.cents, vat);
        total += qty * p.cents;
        if qty > 1 && rng.percent(30) {
            let discount = -(p.cents / 2);
            w.item("Korting 2e halve prijs", discount, None);
            total += discount;
        }
    }

    w.line(&"-".repeat(COLUMNS));
    w.item("SUBTOTAAL", total, None);
    w.raw(&[ESC, b'E', 1]);
    w.item("TOTAAL", total, None);
    w.raw(&[ESC, b'E', 0]);
    w.item("PIN", total, None);
    let vat = total * 9 / 109;
    w.line(&format!("BTW 9% over {}  {}", eur(total - vat), eur(vat)));
    if let Some(card) = &card {
        w.line(&format!("Klantenkaart ****{}", card.last4()));
    }
    w.raw(&[ESC, b'a', 1]);
    w.line("Bedankt en tot ziens!");
    // The receipt number as a Code128 barcode (its data is never text or a cut).
    let digits: String = receipt_no.chars().filter(char::is_ascii_digit).collect();
    w.raw(&[
        GS,
        b'h',
        60,
        GS,
        b'k',
        73,
        (digits.len() + 2) as u8,
        b'{',
        b'B',
    ]);
    w.raw(digits.as_bytes());
    w.raw(&[ESC, b'd', 4]);
    w.raw(&CUT);

    let bytes = w.bytes;
    let mut chunks = Vec::new();
    let mut left = bytes.len();
    while left > 0 {
        let len = (1 + rng.below(MAX_CHUNK as u64) as usize).min(left);
        chunks.push(len);
        left -= len;
    }
    GeneratedReceipt {
        bytes,
        chunks,
        card,
        total_cents: total,
        now,
    }
}

fn generate_digests(rng: &mut Rng, campaigns: &CampaignSet) -> HashMap<CardNumber, Digest> {
    let start = START_MS;
    (0..DIGESTS)
        .map(|i| {
            let card = card_number(i);
            let segments = SEGMENTS
                .iter()
                .filter(|_| rng.percent(20))
                .map(|s| s.to_string())
                .collect();
            let caps_used = (0..rng.below(4))
                .map(|_| {
                    let c = rng.pick(&campaigns.campaigns);
                    let at = start - rng.range(0, 60) * DAY_MS;
                    (c.id.clone(), Timestamp::from_unix_ms(at, OFFSET_MIN))
                })
                .collect();
            let digest = Digest {
                customer_key: format!("ck-{:016x}", rng.next()),
                first_name: Some(rng.pick(FIRST_NAMES).to_string()),
                birthday: rng.percent(80).then(|| MonthDay {
                    month: rng.range(1, 12) as u8,
                    day: rng.range(1, 28) as u8,
                }),
                member_since: NaiveDate::from_ymd_opt(
                    rng.range(2012, 2026) as i32,
                    rng.range(1, 12) as u32,
                    rng.range(1, 28) as u32,
                ),
                points: rng.range(0, 5000),
                last_visit: (!rng.percent(5)).then(|| {
                    Timestamp::from_unix_ms(start - rng.range(1, 400 * 24) * 3_600_000, OFFSET_MIN)
                }),
                personalisation_consent: rng.percent(70),
                segments,
                caps_used,
            };
            (card, digest)
        })
        .collect()
}

fn generate_campaigns(rng: &mut Rng) -> CampaignSet {
    let campaigns = (0..CAMPAIGNS)
        .map(|k| {
            let (trigger, name, offer) = match k % 7 {
                0 => {
                    let min = rng.range(5, 30) * 500;
                    (
                        Trigger::BasketTotal {
                            min_total_cents: min,
                        },
                        "Bedankt voor je aankoop".to_string(),
                        format!(
                            "{} euro korting bij je volgende aankoop vanaf {} euro",
                            rng.range(2, 10),
                            min / 100
                        ),
                    )
                }
                1 => {
                    let category = rng.pick(CATEGORIES).to_string();
                    let offer = format!("15% korting op {category} bij je volgende bezoek");
                    (
                        Trigger::BasketCategory {
                            category,
                            min_total_cents: rng.range(1, 40) * 50,
                        },
                        "Speciaal voor jou".to_string(),
                        offer,
                    )
                }
                2 => (
                    Trigger::Birthday {
                        within_days: rng.range(0, 7) as u32,
                    },
                    "Gefeliciteerd!".to_string(),
                    "Een gratis taartje bij je volgende bezoek".to_string(),
                ),
                3 => (
                    Trigger::Anniversary {
                        within_days: rng.range(0, 14) as u32,
                    },
                    "Alweer een jaar klant".to_string(),
                    "Dubbele punten op je volgende boodschappen".to_string(),
                ),
                4 => (
                    Trigger::PointsThreshold {
                        points: rng.range(10, 45) * 100,
                    },
                    "Je punten zijn goud waard".to_string(),
                    "Wissel 1000 punten in voor 10 euro korting".to_string(),
                ),
                5 => (
                    Trigger::Lapsed {
                        lapsed_days: rng.range(30, 120) as u32,
                    },
                    "We hebben je gemist".to_string(),
                    "5 euro korting bij je volgende aankoop vanaf 20 euro".to_string(),
                ),
                _ => (
                    Trigger::FirstVisit,
                    "Welkom!".to_string(),
                    "10% korting op je volgende boodschappen".to_string(),
                ),
            };
            let kind = trigger.kind().name().replace('_', "-");
            let id = format!("c{k:02}-{kind}");
            assert!(is_valid_campaign_id(&id), "{id}");
            Campaign {
                id,
                name,
                trigger,
                offer,
                valid_days: rng.range(7, 30) as u32,
                control_percent: *rng.pick(&[0, 5, 10, 10, 20, 50]),
                max_per_customer: rng.range(1, 3) as u32,
                cap_days: *rng.pick(&[7, 14, 30, 90]),
                stores: match k % 5 {
                    0 => Some(vec!["S002".to_string()]),
                    1 => Some(vec![STORE.to_string(), "S003".to_string()]),
                    _ => None,
                },
                segments: (k % 9 == 4).then(|| vec![rng.pick(SEGMENTS).to_string()]),
                priority: rng.range(0, 10) as i32,
                offline: !rng.percent(10),
            }
        })
        .collect();
    CampaignSet {
        version: 1,
        campaigns,
        settings: Settings::default(),
    }
}

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

/// Nearest-rank percentile, in microseconds.
fn percentile_us(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_nanos() as f64 / 1000.0
}

fn report(label: &str, times: &[Duration]) {
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    println!("{label} p50: {:.1} us", percentile_us(&sorted, 0.50));
    println!("{label} p99: {:.1} us", percentile_us(&sorted, 0.99));
    println!("{label} max: {:.1} us", percentile_us(&sorted, 1.0));
}

/// The desk as the till core holds it: the campaign state the hub pushed (keyring with
/// campaign numbers 1.., the catalog) and the digest cache keyed by card key.
fn coupon_desk(campaigns: &CampaignSet, digests: &HashMap<CardNumber, Digest>) -> CouponDesk {
    const MASTER: &[u8] = b"bench master secret, 32 bytes or more";
    let till_key = derive_till_key(MASTER, STORE, TILL);
    let keyring = Keyring {
        till_number: TILL_NUMBER,
        till_key: *till_key.as_bytes(),
        store_tills: vec![(TILL_NUMBER, *till_key.as_bytes())],
        campaign_numbers: campaigns
            .campaigns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.clone(), i as u16 + 1))
            .collect(),
        digest_key: derive_digest_key(MASTER),
    };
    let catalog = CATALOG
        .iter()
        .map(|p| CatalogItem {
            sku: String::new(),
            description: p.description.to_string(),
            category: p.category.to_string(),
            sensitive: p.sensitive,
        })
        .collect();
    let mut desk = CouponDesk::new(COLUMNS, "Geldig t/m");
    let keyed: Vec<_> = digests
        .iter()
        .map(|(card, digest)| (keyring.card_key(card), digest.clone()))
        .collect();
    desk.on_campaigns(CampaignState {
        version: campaigns.version,
        set: campaigns.clone(),
        keyring,
        catalog,
    });
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
