//! Seeded generators: catalog, campaigns, digests and receipts (deterministic xorshift,
//! so every run sees the same store).

use std::collections::HashMap;

use chrono::{Datelike, NaiveDate, Timelike};
use till360_agent::escpos::CodePage;
use till360_shared::campaign::definition::is_valid_campaign_id;
use till360_shared::campaign::{Campaign, CampaignSet, Digest, MonthDay, Settings, Trigger};
use till360_shared::card::with_check_digit;
use till360_shared::{CardNumber, Timestamp};

use super::{
    CAMPAIGNS, COLUMNS, CUT, DAY_MS, DIGESTS, ESC, GS, LF, MAX_CHUNK, MINUTE_MS, OFFSET_MIN,
    START_MS, STORE,
};

/// Seeded xorshift64: the same receipts, digests and campaigns on every run.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    pub fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// One product of the store's catalog (what the hub pushes with the campaigns).
pub struct Product {
    pub description: &'static str,
    pub cents: i64,
    pub category: &'static str,
    pub sensitive: bool,
    /// Price per kg, printed with the weight on the item line.
    pub weighed: bool,
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

pub const CATALOG: &[Product] = &[
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

fn eur(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let c = cents.unsigned_abs();
    format!("{sign}{},{:02}", c / 100, c % 100)
}

pub fn card_number(i: usize) -> CardNumber {
    CardNumber::parse(&with_check_digit(&format!("2403{i:08}")).expect("card")).expect("card")
}

/// One receipt as the POS sends it, with what the generator knows about it.
pub struct GeneratedReceipt {
    pub bytes: Vec<u8>,
    /// Chunk lengths, as reads from the POS port return them.
    pub chunks: Vec<usize>,
    /// The card scanned for this receipt (the scanner side of checkout), if any.
    pub card: Option<CardNumber>,
    pub total_cents: i64,
    pub now: Timestamp,
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

pub fn generate_receipt(rng: &mut Rng, n: usize) -> GeneratedReceipt {
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

pub fn generate_digests(rng: &mut Rng, campaigns: &CampaignSet) -> HashMap<CardNumber, Digest> {
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

pub fn generate_campaigns(rng: &mut Rng) -> CampaignSet {
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
