//! A campaign's report for the console, pure: per store and per day counts, the
//! cumulative spend per customer of the treated and the control group after their
//! coupon, and how sure the uplift is (a 95 % interval, or "too few customers yet").
//! Computed from the same rows as the API's KPIs (`store::coupon_kpis::campaign_rows`).

use std::collections::BTreeMap;

use super::kpis::{exposures, tally, Exposure, IssuedCoupon, ProfileReceipt, Scan, DAY_MS};
use super::ledger::RedemptionStatus;

/// Below this many customers in either group the console says "too few customers yet"
/// instead of an interval: the normal approximation behind it needs a few dozen.
pub const MIN_CUSTOMERS_PER_GROUP: usize = 30;

/// z for a two-sided 95 % interval.
const Z_95: f64 = 1.959_964;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreRow {
    pub store: String,
    pub issued: u64,
    pub control: u64,
    pub redeemed: u64,
    pub duplicates: u64,
    pub forged: u64,
    pub refused: u64,
}

/// One UTC day (days since 1970-01-01) of a campaign.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayRow {
    pub day: i64,
    pub issued: u64,
    pub control: u64,
    pub redeemed: u64,
}

/// The mean cumulative spend per customer `day` days after the coupon.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpendPoint {
    pub day: u32,
    pub treated_cents: f64,
    pub control_cents: f64,
}

/// How sure the uplift (treated minus control spend per customer) is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Certainty {
    /// Fewer than [`MIN_CUSTOMERS_PER_GROUP`] customers in a group.
    TooFew { treated: usize, control: usize },
    /// A 95 % interval of the difference in mean spend (Welch, normal approximation).
    Interval {
        difference_cents: f64,
        low_cents: f64,
        high_cents: f64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct CampaignReport {
    pub stores: Vec<StoreRow>,
    pub days: Vec<DayRow>,
    pub spend: Vec<SpendPoint>,
    pub certainty: Certainty,
}

pub fn campaign_report(
    window_days: u32,
    coupons: &[IssuedCoupon],
    scans: &[Scan],
    receipts: &[ProfileReceipt],
) -> CampaignReport {
    let treated = exposures(window_days, coupons, receipts, false);
    let control = exposures(window_days, coupons, receipts, true);
    CampaignReport {
        stores: stores(coupons, scans),
        days: days(coupons, scans),
        spend: spend_curve(window_days, &treated, &control),
        certainty: certainty(&treated, &control),
    }
}

fn stores(coupons: &[IssuedCoupon], scans: &[Scan]) -> Vec<StoreRow> {
    fn entry<'m>(out: &'m mut BTreeMap<String, StoreRow>, store: &str) -> &'m mut StoreRow {
        out.entry(store.to_string()).or_insert_with(|| StoreRow {
            store: store.to_string(),
            ..StoreRow::default()
        })
    }
    let mut out = BTreeMap::new();
    for c in coupons {
        let r = entry(&mut out, &c.store);
        if c.control {
            r.control += 1;
        } else {
            r.issued += 1;
        }
    }
    let counted = tally(scans);
    for s in &counted.redemptions {
        entry(&mut out, &s.store).redeemed += 1;
    }
    for s in &counted.duplicates {
        entry(&mut out, &s.store).duplicates += 1;
    }
    for s in scans {
        match s.status {
            RedemptionStatus::Forged => entry(&mut out, &s.store).forged += 1,
            RedemptionStatus::Refused => entry(&mut out, &s.store).refused += 1,
            RedemptionStatus::Genuine | RedemptionStatus::Unchecked => {}
        }
    }
    out.into_values().collect()
}

fn days(coupons: &[IssuedCoupon], scans: &[Scan]) -> Vec<DayRow> {
    fn entry(out: &mut BTreeMap<i64, DayRow>, at_ms: i64) -> &mut DayRow {
        let day = at_ms.div_euclid(DAY_MS);
        out.entry(day).or_insert(DayRow {
            day,
            ..DayRow::default()
        })
    }
    let mut out = BTreeMap::new();
    for c in coupons {
        let r = entry(&mut out, c.issued_at_ms);
        if c.control {
            r.control += 1;
        } else {
            r.issued += 1;
        }
    }
    for s in tally(scans).redemptions {
        entry(&mut out, s.at_ms).redeemed += 1;
    }
    out.into_values().collect()
}

/// Day 0..=window: the mean over each group's customers of what they spent up to and
/// including that many days after their coupon.
fn spend_curve(window_days: u32, treated: &[Exposure], control: &[Exposure]) -> Vec<SpendPoint> {
    let cumulative = |group: &[Exposure], day: u32| -> f64 {
        if group.is_empty() {
            return 0.0;
        }
        let limit = i64::from(day + 1) * DAY_MS;
        let total: i64 = group
            .iter()
            .flat_map(|e| e.spends.iter())
            .filter(|(after, _)| *after <= limit)
            .map(|(_, cents)| *cents)
            .fold(0, i64::saturating_add);
        total as f64 / group.len() as f64
    };
    (0..=window_days)
        .map(|day| SpendPoint {
            day,
            treated_cents: cumulative(treated, day),
            control_cents: cumulative(control, day),
        })
        .collect()
}

fn certainty(treated: &[Exposure], control: &[Exposure]) -> Certainty {
    if treated.len() < MIN_CUSTOMERS_PER_GROUP || control.len() < MIN_CUSTOMERS_PER_GROUP {
        return Certainty::TooFew {
            treated: treated.len(),
            control: control.len(),
        };
    }
    let (mean_t, var_t) = mean_and_variance(treated);
    let (mean_c, var_c) = mean_and_variance(control);
    let difference = mean_t - mean_c;
    let se = (var_t / treated.len() as f64 + var_c / control.len() as f64).sqrt();
    Certainty::Interval {
        difference_cents: difference,
        low_cents: difference - Z_95 * se,
        high_cents: difference + Z_95 * se,
    }
}

/// Mean and sample variance (n − 1) of the customers' spend.
fn mean_and_variance(group: &[Exposure]) -> (f64, f64) {
    let n = group.len() as f64;
    let values: Vec<f64> = group.iter().map(|e| e.spend_cents() as f64).collect();
    let mean = values.iter().sum::<f64>() / n;
    let variance = if group.len() > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, variance)
}

#[cfg(test)]
mod tests;
