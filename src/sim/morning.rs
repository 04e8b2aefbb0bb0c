//! A morning of shopping: customers with loyalty cards (some regulars) visiting the
//! stores, most of them carded, some anonymous. Deterministic by seed; it knows what
//! every profile on the hub should say afterwards.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDateTime;

use super::pos::{PosSimulator, SimReceipt};
use super::rng::SimRng;
use super::scanner::{card_number, with_bad_check_digit};
use super::style::ReceiptStyle;

/// One till in one store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSetup {
    pub store: String,
    pub till: String,
    pub style: ReceiptStyle,
}

impl StoreSetup {
    /// The demo's chain: a supermarket (S001) and a boutique (S002), one till each.
    pub fn demo_stores() -> Vec<StoreSetup> {
        vec![
            StoreSetup {
                store: "S001".into(),
                till: "T01".into(),
                style: ReceiptStyle::Supermarket,
            },
            StoreSetup {
                store: "S002".into(),
                till: "T01".into(),
                style: ReceiptStyle::Boutique,
            },
        ]
    }
}

/// What the scanner sends before a receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scan {
    Card(String),
    /// A misread: the card's digits with a wrong check digit (the cashier rescans).
    BadCheckDigit(String),
    /// Line noise from the scanner (never contains the suffix bytes).
    Garbage(Vec<u8>),
    /// A coupon code (24 digits) scanned at the till to redeem it.
    Coupon(String),
}

/// One customer at one till.
#[derive(Debug, Clone)]
pub struct Visit {
    pub store_index: usize,
    /// The card the receipt belongs to, if any.
    pub card: Option<String>,
    pub scans: Vec<Scan>,
    pub receipt: SimReceipt,
}

/// What the hub's profile for one card should show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CardExpectation {
    pub count: u64,
    pub total_cents: i64,
    pub stores: BTreeSet<String>,
}

#[derive(Debug, Clone)]
pub struct Morning {
    pub stores: Vec<StoreSetup>,
    pub visits: Vec<Visit>,
}

/// Knobs of the generator.
#[derive(Debug, Clone)]
pub struct MorningPlan {
    pub seed: u64,
    pub receipts: usize,
    /// Percent of visits with a loyalty card.
    pub carded_percent: u64,
    /// Percent of carded visits whose first scan is a misread.
    pub misread_percent: u64,
    /// The POS clock at opening (local time).
    pub opening: NaiveDateTime,
}

impl MorningPlan {
    pub fn new(seed: u64, receipts: usize) -> Self {
        Self {
            seed,
            receipts,
            carded_percent: 80,
            misread_percent: 3,
            opening: chrono::NaiveDate::from_ymd_opt(2026, 11, 25)
                .and_then(|d| d.and_hms_opt(8, 0, 0))
                .expect("a fixed valid date"),
        }
    }
}

impl Morning {
    pub fn generate(plan: &MorningPlan, stores: &[StoreSetup]) -> Morning {
        let mut rng = SimRng::new(plan.seed);
        let mut pos: Vec<PosSimulator> = stores
            .iter()
            .map(|s| PosSimulator::new(s.style, &s.store, plan.opening, rng.next_u64()))
            .collect();
        // A pool of cards; the first fifth are regulars who come back often, each with a
        // home store.
        let pool = (plan.receipts / 4).max(20) as u64;
        let regulars = (pool / 5).max(1);
        let card_base = rng.range(1, 9_000_000);
        let mut visits = Vec::with_capacity(plan.receipts);
        for _ in 0..plan.receipts {
            let carded = !stores.is_empty() && rng.chance(plan.carded_percent);
            let (customer, store_index) = if carded {
                let customer = if rng.chance(50) {
                    rng.below(regulars)
                } else {
                    rng.below(pool)
                };
                let home = (customer as usize) % stores.len().max(1);
                let store = if rng.chance(75) {
                    home
                } else {
                    rng.below(stores.len() as u64) as usize
                };
                (Some(customer), store)
            } else {
                (None, rng.below(stores.len().max(1) as u64) as usize)
            };
            let card = customer.map(|c| card_number(card_base + c));
            let mut scans = Vec::new();
            if let Some(card) = &card {
                if rng.chance(plan.misread_percent) {
                    scans.push(Scan::BadCheckDigit(with_bad_check_digit(card)));
                }
                scans.push(Scan::Card(card.clone()));
            }
            let last4 = card.as_deref().map(|c| &c[c.len() - 4..]);
            let receipt = match pos.get_mut(store_index) {
                Some(p) => p.next_receipt(last4),
                None => continue,
            };
            visits.push(Visit {
                store_index,
                card,
                scans,
                receipt,
            });
        }
        Morning {
            stores: stores.to_vec(),
            visits,
        }
    }

    /// Per card: how many receipts, their total and in which stores.
    pub fn expected_by_card(&self) -> BTreeMap<String, CardExpectation> {
        let mut out: BTreeMap<String, CardExpectation> = BTreeMap::new();
        for v in &self.visits {
            if let Some(card) = &v.card {
                let e = out.entry(card.clone()).or_default();
                e.count += 1;
                e.total_cents += v.receipt.expected.total_cents;
                e.stores.insert(self.stores[v.store_index].store.clone());
            }
        }
        out
    }

    /// The visits at one till, in order.
    pub fn visits_at(&self, store_index: usize) -> impl Iterator<Item = &Visit> {
        self.visits
            .iter()
            .filter(move |v| v.store_index == store_index)
    }
}
