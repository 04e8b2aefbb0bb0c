//! Campaign KPIs: pure functions over ledger rows (which scan of a code is THE
//! redemption, counts, revenue, uplift against the control group). The store loads
//! the rows (`store::coupon_kpis`). Everything is computed when read. Which scan of a code counts is
//! decided by the hub's commit order (`redemptions.commit_seq`), not by the tills'
//! clocks: the KPIs are deterministic given the commit order.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::ledger::RedemptionStatus;

pub(crate) const DAY_MS: i64 = 86_400_000;

/// A coupon row as the KPIs need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCoupon {
    pub store: String,
    pub till: String,
    pub seq: u64,
    pub control: bool,
    pub code: Option<String>,
    /// The profile of the coupon's card now (cards can join profiles after the issue).
    pub profile_id: Option<String>,
    pub issued_at_ms: i64,
    pub receipt_seq: u64,
}

/// A scan of a code, with the total of the receipt it was used on (if that receipt
/// reached the hub).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    pub store: String,
    pub till: String,
    pub seq: u64,
    pub code: String,
    pub at_ms: i64,
    /// The hub's commit sequence of the scan's row (see `ledger`).
    pub commit_seq: u64,
    pub status: RedemptionStatus,
    pub receipt_total_cents: Option<i64>,
}

/// A receipt of a profile, for the spend after a coupon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileReceipt {
    pub profile_id: String,
    pub store: String,
    pub till: String,
    pub seq: u64,
    pub at_ms: i64,
    pub total_cents: i64,
}

/// `GET /api/v1/campaigns/{id}/kpis`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CampaignKpis {
    pub campaign_id: String,
    /// Printed coupons.
    pub issued: u64,
    /// Control-group would-haves.
    pub control: u64,
    /// Codes with a counted redemption (one per code).
    pub redeemed: u64,
    /// `redeemed / issued`, 0 when nothing was issued.
    pub redemption_rate: f64,
    /// Genuine scans of an already redeemed code.
    pub duplicate_redemptions: u64,
    /// Scans the tills accepted whose signature the hub refutes.
    pub forged_redemptions: u64,
    /// Sum of the receipts the counted redemptions were used on.
    pub revenue_cents: i64,
    pub uplift: Uplift,
}

/// Spend per customer after the coupon, treated against control.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Uplift {
    pub window_days: u32,
    pub treated_customers: u64,
    pub control_customers: u64,
    pub treated_spend_per_customer_cents: i64,
    pub control_spend_per_customer_cents: i64,
    /// `None` when either group has no customer yet (nothing to compare).
    pub uplift_cents_per_customer: Option<i64>,
    /// `None` when there is no comparison, or the control group spent nothing (no
    /// base for a percentage).
    pub uplift_percent: Option<f64>,
}

/// Counts per campaign for `GET /api/v1/campaigns`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CouponCounts {
    pub issued: u64,
    pub control: u64,
    pub redeemed: u64,
}

/// Scans per store (where the code was scanned): `GET /api/v1/coupons/stores`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StoreCoupons {
    pub store: String,
    pub redeemed: u64,
    pub duplicates: u64,
    pub forged: u64,
    pub refused: u64,
}

/// The scans that count, split into THE redemption of each code (the first the hub
/// committed: a till's timestamp is its own clock and may be backdated) and the
/// duplicates.
pub struct Tally<'a> {
    pub redemptions: Vec<&'a Scan>,
    pub duplicates: Vec<&'a Scan>,
}

pub fn tally(scans: &[Scan]) -> Tally<'_> {
    let mut per_code: BTreeMap<&str, Vec<&Scan>> = BTreeMap::new();
    for scan in scans.iter().filter(|s| s.status.counts()) {
        per_code.entry(scan.code.as_str()).or_default().push(scan);
    }
    let mut out = Tally {
        redemptions: Vec::new(),
        duplicates: Vec::new(),
    };
    for (_, mut list) in per_code {
        list.sort_by(|a, b| {
            (a.commit_seq, &a.store, &a.till, a.seq).cmp(&(b.commit_seq, &b.store, &b.till, b.seq))
        });
        let mut list = list.into_iter();
        out.redemptions.extend(list.next());
        out.duplicates.extend(list);
    }
    out
}

/// `sum / n` rounded half away from zero (0 when `n` is 0).
pub fn mean_cents(sum: i128, n: u64) -> i64 {
    if n == 0 {
        return 0;
    }
    let n = i128::from(n);
    let (q, r) = (sum / n, sum % n);
    let rounded = if 2 * r.abs() >= n {
        q + sum.signum()
    } else {
        q
    };
    i64::try_from(rounded).unwrap_or(if rounded < 0 { i64::MIN } else { i64::MAX })
}

/// The KPIs of one campaign from its coupons, the scans of its codes and the receipts
/// of its customers.
pub fn campaign_kpis(
    campaign_id: &str,
    window_days: u32,
    coupons: &[IssuedCoupon],
    scans: &[Scan],
    receipts: &[ProfileReceipt],
) -> CampaignKpis {
    let issued = coupons.iter().filter(|c| !c.control).count() as u64;
    let control = coupons.iter().filter(|c| c.control).count() as u64;
    let counted = tally(scans);
    let redeemed = counted.redemptions.len() as u64;
    let revenue_cents = counted
        .redemptions
        .iter()
        .filter_map(|s| s.receipt_total_cents)
        .fold(0i64, i64::saturating_add);
    CampaignKpis {
        campaign_id: campaign_id.to_string(),
        issued,
        control,
        redeemed,
        redemption_rate: if issued == 0 {
            0.0
        } else {
            redeemed as f64 / issued as f64
        },
        duplicate_redemptions: counted.duplicates.len() as u64,
        forged_redemptions: scans
            .iter()
            .filter(|s| s.status == RedemptionStatus::Forged)
            .count() as u64,
        revenue_cents,
        uplift: uplift(window_days, coupons, receipts),
    }
}

/// One customer of a group (treated or control): their first coupon of the campaign
/// and what they spent in the window after it, the issuing receipt excluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposure<'a> {
    pub coupon: &'a IssuedCoupon,
    /// `(ms after the coupon, receipt total)`, in receipt order.
    pub spends: Vec<(i64, i64)>,
}

impl Exposure<'_> {
    pub fn spend_cents(&self) -> i64 {
        self.spends
            .iter()
            .map(|(_, c)| *c)
            .fold(0, i64::saturating_add)
    }
}

/// The customers of one group (`control` or printed) with their spend in the
/// `window_days` after their first coupon of the campaign, by profile id.
pub fn exposures<'a>(
    window_days: u32,
    coupons: &'a [IssuedCoupon],
    receipts: &[ProfileReceipt],
    control: bool,
) -> Vec<Exposure<'a>> {
    let mut by_profile: HashMap<&str, Vec<&ProfileReceipt>> = HashMap::new();
    for r in receipts {
        by_profile.entry(r.profile_id.as_str()).or_default().push(r);
    }
    let window_ms = i64::from(window_days) * DAY_MS;
    let mut first: BTreeMap<&str, &IssuedCoupon> = BTreeMap::new();
    for c in coupons.iter().filter(|c| c.control == control) {
        let Some(profile) = c.profile_id.as_deref() else {
            continue;
        };
        let key = |c: &IssuedCoupon| (c.issued_at_ms, c.store.clone(), c.till.clone(), c.seq);
        match first.get(profile) {
            Some(seen) if key(seen) <= key(c) => {}
            _ => {
                first.insert(profile, c);
            }
        }
    }
    first
        .into_iter()
        .map(|(profile, coupon)| {
            let end = coupon.issued_at_ms.saturating_add(window_ms);
            let spends = by_profile
                .get(profile)
                .into_iter()
                .flatten()
                .filter(|r| {
                    let issuing_receipt = r.store == coupon.store
                        && r.till == coupon.till
                        && r.seq == coupon.receipt_seq;
                    r.at_ms > coupon.issued_at_ms && r.at_ms <= end && !issuing_receipt
                })
                .map(|r| (r.at_ms - coupon.issued_at_ms, r.total_cents))
                .collect();
            Exposure { coupon, spends }
        })
        .collect()
}

/// Spend per customer in the `window_days` after their first coupon of the campaign
/// (treated: printed; control: would-have), the issuing receipt excluded.
pub fn uplift(window_days: u32, coupons: &[IssuedCoupon], receipts: &[ProfileReceipt]) -> Uplift {
    let group = |control: bool| -> (u64, i64) {
        let exposed = exposures(window_days, coupons, receipts, control);
        let total: i128 = exposed.iter().map(|e| i128::from(e.spend_cents())).sum();
        let customers = exposed.len() as u64;
        (customers, mean_cents(total, customers))
    };
    let (treated_customers, treated) = group(false);
    let (control_customers, control) = group(true);
    let uplift = treated.saturating_sub(control);
    let compared = treated_customers > 0 && control_customers > 0;
    Uplift {
        window_days,
        treated_customers,
        control_customers,
        treated_spend_per_customer_cents: treated,
        control_spend_per_customer_cents: control,
        uplift_cents_per_customer: compared.then_some(uplift),
        // Two decimals, computed in integers so it is the same on every machine.
        uplift_percent: (compared && control != 0).then(|| {
            mean_cents(i128::from(uplift) * 10_000, control.unsigned_abs()) as f64 / 100.0
        }),
    }
}

/// Per store where codes were scanned: counted redemptions, duplicates, forged and
/// refused scans, by store.
pub fn store_report(scans: &[Scan]) -> Vec<StoreCoupons> {
    fn entry<'m>(
        stores: &'m mut BTreeMap<String, StoreCoupons>,
        store: &str,
    ) -> &'m mut StoreCoupons {
        stores
            .entry(store.to_string())
            .or_insert_with(|| StoreCoupons {
                store: store.to_string(),
                ..StoreCoupons::default()
            })
    }
    let mut stores = BTreeMap::new();
    let counted = tally(scans);
    for s in &counted.redemptions {
        entry(&mut stores, &s.store).redeemed += 1;
    }
    for s in &counted.duplicates {
        entry(&mut stores, &s.store).duplicates += 1;
    }
    for s in scans {
        match s.status {
            RedemptionStatus::Forged => entry(&mut stores, &s.store).forged += 1,
            RedemptionStatus::Refused => entry(&mut stores, &s.store).refused += 1,
            RedemptionStatus::Genuine | RedemptionStatus::Unchecked => {}
        }
    }
    stores.into_values().collect()
}
