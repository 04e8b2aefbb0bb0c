//! Pure: is a loyalty card used the way one household's card is used? Three patterns the
//! tills' own evidence shows (no loyalty system we know of looks for them):
//!
//! - **impossible travel**: consecutive receipts at different stores closer in time than
//!   the road between them allows (`[[store]]` locations and `max_speed_kmh`, with
//!   `clock_slack_minutes` for tills' clocks; between stores without a location, closer
//!   than `min_minutes_between_stores`), at `travel_min_stores` stores or more: a cloned
//!   or shared-out card. A family sharing its card is in as many places at once as it has
//!   shoppers out: two commuters and someone at home make three stores, so the default
//!   asks for four;
//! - **too many receipts**: more than `max_receipts_per_day` on one local date;
//! - **house card**: the cashier scans a card of the store for customers without one: a run
//!   of at least `house_card_receipts` receipts with different baskets, each within
//!   `house_card_gap_minutes` of the one before, on at least `house_card_tills` tills.
//!
//! [`assess`] takes one card's receipts (store, till, time, basket) and returns the
//! findings with their evidence. No clock, no IO: the store loads the receipts around a
//! new one at ingest (`store::suspicious`) and keeps the flags.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use till360_shared::Timestamp;

use crate::config::{FraudConfig, StoreLocation};

/// Receipts named as evidence per finding at most (a house card may have hundreds).
pub const MAX_EVIDENCE: usize = 20;
const MINUTE_MS: i64 = 60_000;

/// A fingerprint of a basket, from its lines as stored (their canonical encoding): equal
/// baskets, equal fingerprints (FNV-1a, stable across builds).
pub fn basket_fingerprint(encoded_lines: &[u8]) -> u64 {
    encoded_lines.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// One receipt of the card, as the tills reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardReceipt {
    pub store: String,
    pub till: String,
    pub seq: u64,
    pub at: Timestamp,
    pub total_cents: i64,
    /// A fingerprint of the basket (what was bought, how many): equal baskets, equal value.
    pub basket: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    ImpossibleTravel,
    TooManyReceipts,
    HouseCard,
}

/// A receipt named as evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub store: String,
    pub till: String,
    pub seq: u64,
    /// RFC 3339 with the till's offset.
    pub at: String,
    pub at_ms: i64,
    pub total_cents: i64,
}

impl From<&CardReceipt> for Evidence {
    fn from(r: &CardReceipt) -> Self {
        Self {
            store: r.store.clone(),
            till: r.till.clone(),
            seq: r.seq,
            at: r.at.to_rfc3339(),
            at_ms: r.at.unix_ms,
            total_cents: r.total_cents,
        }
    }
}

/// One pattern found, with what it rests on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub rule: Rule,
    /// For people: what was seen against which threshold.
    pub detail: String,
    /// The receipts (at most [`MAX_EVIDENCE`], in time order).
    pub receipts: Vec<Evidence>,
}

impl Finding {
    /// Identifies the finding across re-assessments: its rule and first receipt.
    pub fn key(&self) -> (Rule, Option<(&str, &str, u64)>) {
        (
            self.rule,
            self.receipts
                .first()
                .map(|e| (e.store.as_str(), e.till.as_str(), e.seq)),
        )
    }

    /// The time of its latest receipt.
    pub fn last_at_ms(&self) -> i64 {
        self.receipts.iter().map(|e| e.at_ms).max().unwrap_or(0)
    }
}

fn evidence<'a>(receipts: impl IntoIterator<Item = &'a CardReceipt>) -> Vec<Evidence> {
    receipts
        .into_iter()
        .take(MAX_EVIDENCE)
        .map(Evidence::from)
        .collect()
}

/// Great-circle distance in km (haversine; the earth as a sphere is close enough here).
pub fn distance_km(a: StoreLocation, b: StoreLocation) -> f64 {
    const EARTH_KM: f64 = 6371.0;
    let (la1, la2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = la2 - la1;
    let dlon = (b.lon - a.lon).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_KM * h.sqrt().min(1.0).asin()
}

/// The findings over one card's `receipts` (any order; duplicates by (store, till, seq)
/// count once).
pub fn assess(rules: &FraudConfig, receipts: &[CardReceipt]) -> Vec<Finding> {
    let mut sorted: Vec<&CardReceipt> = receipts.iter().collect();
    sorted.sort_by(|a, b| {
        (a.at.unix_ms, &a.store, &a.till, a.seq).cmp(&(b.at.unix_ms, &b.store, &b.till, b.seq))
    });
    sorted.dedup_by(|a, b| (&a.store, &a.till, a.seq) == (&b.store, &b.till, b.seq));
    let mut findings = travel(rules, &sorted);
    findings.extend(per_day(rules, &sorted));
    findings.extend(house_card(rules, &sorted));
    findings
}

fn travel(rules: &FraudConfig, sorted: &[&CardReceipt]) -> Vec<Finding> {
    let mut out = Vec::new();
    // The current chain of impossible hops: its receipts and what each hop needed.
    let mut chain: Vec<&CardReceipt> = Vec::new();
    let mut details: Vec<String> = Vec::new();
    for pair in sorted.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        match impossible_hop(rules, a, b) {
            Some(detail) => {
                if chain.is_empty() {
                    chain.push(a);
                }
                chain.push(b);
                details.push(detail);
            }
            None => {
                out.extend(travel_finding(rules, &chain, &details));
                chain.clear();
                details.clear();
            }
        }
    }
    out.extend(travel_finding(rules, &chain, &details));
    out
}

/// What makes the hop from `a` to `b` impossible, if it is.
fn impossible_hop(rules: &FraudConfig, a: &CardReceipt, b: &CardReceipt) -> Option<String> {
    if a.store == b.store {
        return None;
    }
    let gap_ms = b.at.unix_ms - a.at.unix_ms;
    let minutes = gap_ms as f64 / MINUTE_MS as f64;
    match (rules.stores.get(&a.store), rules.stores.get(&b.store)) {
        (Some(&from), Some(&to)) => {
            let km = distance_km(from, to);
            let hours = (minutes + f64::from(rules.clock_slack_minutes)) / 60.0;
            let speed = if hours > 0.0 {
                km / hours
            } else {
                f64::INFINITY
            };
            (speed > rules.max_speed_kmh).then(|| {
                format!(
                    "{} to {}: {km:.0} km in {minutes:.0} min needs {speed:.0} km/h",
                    a.store, b.store
                )
            })
        }
        _ => (gap_ms < i64::from(rules.min_minutes_between_stores) * MINUTE_MS).then(|| {
            format!(
                "{} to {} in {minutes:.0} min (no [[store]] location)",
                a.store, b.store
            )
        }),
    }
}

/// A chain of impossible hops is a finding when it touches `travel_min_stores` stores: one
/// household may be in two places at once (a card shared with a commuter), a card in more
/// places at once than that is not one household's.
fn travel_finding(
    rules: &FraudConfig,
    chain: &[&CardReceipt],
    details: &[String],
) -> Option<Finding> {
    let stores: BTreeSet<&str> = chain.iter().map(|r| r.store.as_str()).collect();
    if chain.is_empty() || stores.len() < rules.travel_min_stores as usize {
        return None;
    }
    Some(Finding {
        rule: Rule::ImpossibleTravel,
        detail: format!(
            "{}: {} stores at once (travel_min_stores {}, max_speed_kmh {}, \
             clock_slack_minutes {}, min_minutes_between_stores {})",
            details.join("; "),
            stores.len(),
            rules.travel_min_stores,
            rules.max_speed_kmh,
            rules.clock_slack_minutes,
            rules.min_minutes_between_stores
        ),
        receipts: evidence(chain.iter().copied()),
    })
}

fn per_day(rules: &FraudConfig, sorted: &[&CardReceipt]) -> Vec<Finding> {
    let mut days: BTreeMap<chrono::NaiveDate, Vec<&CardReceipt>> = BTreeMap::new();
    for r in sorted {
        days.entry(r.at.local().date_naive()).or_default().push(r);
    }
    days.into_iter()
        .filter(|(_, day)| day.len() > rules.max_receipts_per_day as usize)
        .map(|(date, day)| Finding {
            rule: Rule::TooManyReceipts,
            detail: format!(
                "{} receipts on {date} (max_receipts_per_day {})",
                day.len(),
                rules.max_receipts_per_day
            ),
            receipts: evidence(day.iter().copied()),
        })
        .collect()
}

fn house_card(rules: &FraudConfig, sorted: &[&CardReceipt]) -> Vec<Finding> {
    let gap = i64::from(rules.house_card_gap_minutes) * MINUTE_MS;
    let mut out = Vec::new();
    let mut start = 0;
    while start < sorted.len() {
        // The run of receipts each within `gap` of the one before.
        let mut end = start + 1;
        while end < sorted.len() && sorted[end].at.unix_ms - sorted[end - 1].at.unix_ms <= gap {
            end += 1;
        }
        let run = &sorted[start..end];
        let baskets: BTreeSet<u64> = run.iter().map(|r| r.basket).collect();
        let tills: BTreeSet<(&str, &str)> = run
            .iter()
            .map(|r| (r.store.as_str(), r.till.as_str()))
            .collect();
        if baskets.len() >= rules.house_card_receipts as usize
            && tills.len() >= rules.house_card_tills as usize
        {
            let minutes = (run[run.len() - 1].at.unix_ms - run[0].at.unix_ms) / MINUTE_MS;
            out.push(Finding {
                rule: Rule::HouseCard,
                detail: format!(
                    "{} receipts with {} different baskets on {} tills in {minutes} min, \
                     none more than {} min apart (house_card_receipts {}, house_card_tills {})",
                    run.len(),
                    baskets.len(),
                    tills.len(),
                    rules.house_card_gap_minutes,
                    rules.house_card_receipts,
                    rules.house_card_tills
                ),
                receipts: evidence(run.iter().copied()),
            });
        }
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use till360_shared::{CardNumber, EventKind, Timestamp};

    use super::*;
    use crate::synthetic::{chain_locations, Generator};

    fn chain_rules() -> FraudConfig {
        FraudConfig {
            stores: chain_locations(),
            ..FraudConfig::default()
        }
    }

    /// 2026-01-06 (a Tuesday) 00:00 local at +01:00, plus `minutes`.
    fn at(minutes: i64) -> Timestamp {
        Timestamp::from_unix_ms(1_767_654_000_000 + minutes * MINUTE_MS, 60)
    }

    fn r(store: &str, till: &str, seq: u64, minutes: i64, basket: u64) -> CardReceipt {
        CardReceipt {
            store: store.into(),
            till: till.into(),
            seq,
            at: at(minutes),
            total_cents: 1000 + basket as i64,
            basket,
        }
    }

    fn rules_of(findings: &[Finding]) -> Vec<Rule> {
        findings.iter().map(|f| f.rule).collect()
    }

    #[test]
    fn a_month_of_honest_shoppers_flags_no_card() {
        let rules = chain_rules();
        let households = 3000;
        for seed in [2026, 1, 99] {
            let events = Generator::new(seed, 0, 0).honest_month(households, 30);
            let mut cards: BTreeMap<CardNumber, Vec<CardReceipt>> = BTreeMap::new();
            for e in &events {
                let EventKind::Receipt(receipt) = &e.kind else {
                    continue;
                };
                let Some(card) = &receipt.card else { continue };
                let lines = till360_shared::codec::to_bytes(&receipt.lines).unwrap();
                cards.entry(card.clone()).or_default().push(CardReceipt {
                    store: e.agent.store.clone(),
                    till: e.agent.till.clone(),
                    seq: e.seq,
                    at: receipt.completed_at,
                    total_cents: receipt.total_cents,
                    basket: basket_fingerprint(&lines),
                });
            }
            // How close honest shoppers come to each threshold.
            let mut most_per_day = 0;
            let mut most_in_a_run = 0;
            let mut stores_at_once = BTreeMap::<usize, usize>::new();
            // Each rule on its own: loosening all at once shows each one's margin.
            let loose = FraudConfig {
                max_receipts_per_day: 1,
                house_card_receipts: 1,
                house_card_tills: 1,
                travel_min_stores: 2,
                ..rules.clone()
            };
            for receipts in cards.values() {
                for f in assess(&loose, receipts) {
                    match f.rule {
                        Rule::TooManyReceipts => most_per_day = most_per_day.max(f.receipts.len()),
                        Rule::HouseCard => most_in_a_run = most_in_a_run.max(f.receipts.len()),
                        Rule::ImpossibleTravel => {
                            let stores: BTreeSet<&str> =
                                f.receipts.iter().map(|e| e.store.as_str()).collect();
                            *stores_at_once.entry(stores.len()).or_default() += 1;
                        }
                    }
                }
            }
            let flagged: Vec<_> = cards
                .iter()
                .map(|(card, receipts)| (card.last4().to_string(), assess(&rules, receipts)))
                .filter(|(_, findings)| !findings.is_empty())
                .collect();
            println!(
                "honest month (seed {seed}): {households} households, {} cards, {} receipts; \
                 flagged {} ({:.3} %); most receipts on a day {most_per_day} (max {}); \
                 longest run of short gaps {most_in_a_run} (house card needs {}); chains of \
                 impossible hops by stores touched: {stores_at_once:?} (flagged from {})",
                cards.len(),
                events.len(),
                flagged.len(),
                100.0 * flagged.len() as f64 / cards.len().max(1) as f64,
                rules.max_receipts_per_day,
                rules.house_card_receipts,
                rules.travel_min_stores,
            );
            assert!(
                events.len() > 20 * households,
                "a realistic month: {}",
                events.len()
            );
            assert!(
                flagged.is_empty(),
                "seed {seed}: honest cards flagged: {flagged:?}"
            );
        }
    }

    #[test]
    fn a_card_in_four_places_at_once_is_impossible_travel() {
        let rules = chain_rules();
        // Amsterdam 10:00, Rotterdam 10:05 (58 km), Groningen 11:00 (210 km), Maastricht
        // 11:30 (240 km).
        let clone = [
            r("S001", "T01", 1, 600, 1),
            r("S006", "T02", 7, 605, 2),
            r("S010", "T01", 3, 660, 3),
            r("S012", "T01", 9, 690, 4),
        ];
        let findings = assess(&rules, &clone);
        assert_eq!(rules_of(&findings), vec![Rule::ImpossibleTravel]);
        assert_eq!(findings[0].receipts.len(), 4);
        assert!(
            findings[0].detail.contains("S001 to S006") && findings[0].detail.contains("km/h"),
            "{}",
            findings[0].detail
        );
        // Three stores or two: what a family sharing the card with commuters does.
        assert!(assess(&rules, &clone[..3]).is_empty());
        assert!(assess(&rules, &clone[..2]).is_empty());
        let strict = FraudConfig {
            travel_min_stores: 2,
            ..rules.clone()
        };
        assert_eq!(
            rules_of(&assess(&strict, &clone[..2])),
            vec![Rule::ImpossibleTravel]
        );
        // The same stores hours apart: fine.
        let slow = [
            r("S001", "T01", 1, 480, 1),
            r("S006", "T02", 7, 720, 2),
            r("S010", "T01", 3, 1080, 3),
            r("S012", "T01", 9, 1440, 4),
        ];
        assert!(assess(&rules, &slow).is_empty());
    }

    #[test]
    fn stores_without_a_location_count_minutes() {
        let rules = FraudConfig::default();
        let hops = [
            r("X1", "T01", 1, 600, 1),
            r("X2", "T01", 1, 601, 2),
            r("X3", "T01", 1, 602, 3),
            r("X4", "T01", 1, 603, 4),
        ];
        let findings = assess(&rules, &hops);
        assert_eq!(rules_of(&findings), vec![Rule::ImpossibleTravel]);
        assert!(findings[0].detail.contains("no [[store]] location"));
        let apart = [
            r("X1", "T01", 1, 600, 1),
            r("X2", "T01", 1, 610, 2),
            r("X3", "T01", 1, 620, 3),
            r("X4", "T01", 1, 630, 4),
        ];
        assert!(assess(&rules, &apart).is_empty());
    }

    #[test]
    fn more_receipts_a_day_than_a_household_makes() {
        let rules = chain_rules();
        // Eleven trips to one till, 50 minutes apart: no run, no travel, too many.
        let day: Vec<_> = (0..11)
            .map(|i| r("S001", "T01", i + 1, 420 + 50 * i as i64, i))
            .collect();
        let findings = assess(&rules, &day);
        assert_eq!(rules_of(&findings), vec![Rule::TooManyReceipts]);
        assert_eq!(findings[0].receipts.len(), 11);
        assert!(findings[0].detail.starts_with("11 receipts on 2026-01-06"));
        assert!(assess(&rules, &day[..10]).is_empty(), "ten is allowed");
    }

    #[test]
    fn a_house_card_is_many_baskets_on_many_tills_in_short_gaps() {
        let rules = chain_rules();
        let tills = ["T01", "T02", "T03"];
        let house: Vec<_> = (0..6)
            .map(|i| {
                r(
                    "S001",
                    tills[i % 3],
                    i as u64 + 1,
                    600 + 7 * i as i64,
                    i as u64,
                )
            })
            .collect();
        let findings = assess(&rules, &house);
        assert_eq!(rules_of(&findings), vec![Rule::HouseCard]);
        assert_eq!(findings[0].receipts.len(), 6);
        // The same basket six times (one receipt replayed) is not a house card ...
        let same: Vec<_> = house
            .iter()
            .cloned()
            .map(|mut r| {
                r.basket = 9;
                r
            })
            .collect();
        assert!(assess(&rules, &same).is_empty());
        // ... nor six baskets at one till, nor with a long pause inside.
        let one_till: Vec<_> = house
            .iter()
            .cloned()
            .map(|mut r| {
                r.till = "T01".into();
                r
            })
            .collect();
        assert!(assess(&rules, &one_till).is_empty());
        let mut paused = house.clone();
        for r in &mut paused[3..] {
            r.at = Timestamp::from_unix_ms(r.at.unix_ms + 30 * MINUTE_MS, 60);
        }
        assert!(assess(&rules, &paused).is_empty());
    }
}
