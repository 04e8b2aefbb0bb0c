//! Every customer's purchase days, reduced to what the purchase models and their
//! back-tests read: the observation `(x, t_x, T)` as of any day, the purchase days in a
//! later window, and a few covariates. Reading "as of a day" never looks past that day,
//! which is what makes a back-test honest.

use super::bgnbd::Observation;
use super::history::{Channel, CouponIssue, CustomerHistory};
use super::rfm::{summarize_sorted, Summary};

/// One purchase, reduced.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Visit {
    day: i64,
    online: bool,
    amount_cents: i64,
    discounted_cents: i64,
}

/// What the correction model may know about a customer besides (x, t_x, T).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Covariates {
    /// Share of purchases made online.
    pub online_share: f64,
    /// Share of spend on discounted lines.
    pub sale_share: f64,
    /// Distinct categories bought (the breadth of the category mix).
    pub categories: u32,
    /// Share of the coupons printed for them that they redeemed (0 without coupons).
    pub coupon_response: f64,
    /// Coupons in hand: printed, still valid after the day and not yet redeemed.
    pub live_coupons: u32,
}

/// The purchase days of a population (days since 1970-01-01, local till dates).
#[derive(Debug, Clone, Default)]
pub struct Panel {
    customers: Vec<Vec<Visit>>,
    /// Per customer, the day each category was first bought, sorted.
    first_category_days: Vec<Vec<i64>>,
    /// Per customer, the coupons printed for them, by issue day.
    coupons: Vec<Vec<CouponIssue>>,
}

impl Panel {
    pub fn new(histories: &[CustomerHistory]) -> Self {
        let mut customers = Vec::with_capacity(histories.len());
        let mut first_category_days = Vec::with_capacity(histories.len());
        let mut coupons = Vec::with_capacity(histories.len());
        // One pass over each customer's purchases: the visits and the categories' days.
        for h in histories {
            let mut visits = Vec::with_capacity(h.purchases.len());
            let mut categories: Vec<(&str, i64)> = Vec::new();
            for p in &h.purchases {
                let day = p.local_day();
                visits.push(Visit {
                    day,
                    online: p.channel == Channel::Online,
                    amount_cents: p.amount_cents,
                    discounted_cents: p.discounted_cents,
                });
                categories.extend(p.categories.iter().map(|(c, _)| (c.as_str(), day)));
            }
            visits.sort_by_key(|v: &Visit| v.day);
            // The earliest day of each category: sorted by (category, day), keep the first
            // of each run.
            categories.sort_unstable();
            categories.dedup_by(|later, earlier| later.0 == earlier.0);
            let mut days: Vec<i64> = categories.into_iter().map(|(_, day)| day).collect();
            days.sort_unstable();
            customers.push(visits);
            first_category_days.push(days);
            let mut issued = h.coupons.clone();
            issued.sort_by_key(|c| c.issued_day);
            coupons.push(issued);
        }
        Self {
            customers,
            first_category_days,
            coupons,
        }
    }

    /// Customers, with or without purchases.
    pub fn len(&self) -> usize {
        self.customers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.customers.is_empty()
    }

    /// The newest purchase day of anyone.
    pub fn last_day(&self) -> Option<i64> {
        self.customers
            .iter()
            .filter_map(|v| v.last().map(|v| v.day))
            .max()
    }

    /// The oldest purchase day of anyone.
    pub fn first_day(&self) -> Option<i64> {
        self.customers
            .iter()
            .filter_map(|v| v.first().map(|v| v.day))
            .min()
    }

    /// Customer `i`'s repeat-purchase summary at the end of `day`: x repeat purchase
    /// days, the last t_x days after the first, T days from the first to `day`. `None`
    /// before the first purchase.
    pub fn observation(&self, i: usize, day: i64) -> Option<Observation> {
        let visits = &self.customers[i];
        let first = visits.first().filter(|v| v.day <= day)?.day;
        let mut x = 0u32;
        let mut last = first;
        for v in visits.iter().take_while(|v| v.day <= day) {
            if v.day != last {
                x += 1;
                last = v.day;
            }
        }
        Some(Observation {
            x,
            t_x: (last - first) as f64,
            t: (day - first) as f64,
        })
    }

    /// Customer `i`'s RFM summary at the end of `day` (`None` before the first
    /// purchase): the same (x, t_x, T) as [`observation`](Self::observation).
    pub fn summary(&self, i: usize, day: i64) -> Option<Summary> {
        summarize_sorted(
            self.customers[i].iter().map(|v| (v.day, v.amount_cents)),
            day,
        )
    }

    /// Σ ln(gap) over customer `i`'s gaps between consecutive distinct purchase days up
    /// to the end of `day`, gaps in days (≥ 1): how regular the customer buys, as the
    /// Erlang-k models (BG/CNBD-k) read it. 0 without a repeat purchase day.
    pub fn sum_ln_gaps(&self, i: usize, day: i64) -> f64 {
        let mut previous: Option<i64> = None;
        let mut sum = 0.0;
        for v in self.customers[i].iter().take_while(|v| v.day <= day) {
            match previous {
                Some(p) if p == v.day => {}
                Some(p) => sum += ((v.day - p) as f64).ln(),
                None => {}
            }
            previous = Some(v.day);
        }
        sum
    }

    /// Every customer's observation at the end of `day` (`None` before their first
    /// purchase), and the same grouped by distinct (x, t_x, T) in a fixed order, as the
    /// fits take them.
    pub fn observations(&self, day: i64) -> (Vec<Option<Observation>>, Vec<(Observation, u64)>) {
        let each: Vec<Option<Observation>> =
            (0..self.len()).map(|i| self.observation(i, day)).collect();
        let grouped = group(each.iter().flatten().copied());
        (each, grouped)
    }

    /// Distinct purchase days of customer `i` after `after` up to and including `until`:
    /// what the models predict as "purchases in the next N days".
    pub fn purchase_days_between(&self, i: usize, after: i64, until: i64) -> u32 {
        let mut count = 0;
        let mut previous = None;
        for v in &self.customers[i] {
            if v.day > after && v.day <= until && previous != Some(v.day) {
                count += 1;
                previous = Some(v.day);
            }
        }
        count
    }

    /// Customer `i`'s covariates from the purchases up to the end of `day`.
    pub fn covariates(&self, i: usize, day: i64) -> Covariates {
        let (mut purchases, mut online, mut spend, mut discounted) = (0u32, 0u32, 0i64, 0i64);
        for v in self.customers[i].iter().take_while(|v| v.day <= day) {
            purchases += 1;
            online += u32::from(v.online);
            spend += v.amount_cents.max(0);
            discounted += v.discounted_cents.clamp(0, v.amount_cents.max(0));
        }
        let categories = self.first_category_days[i].partition_point(|&first| first <= day);
        let issued = &self.coupons[i][..self.coupons[i].partition_point(|c| c.issued_day <= day)];
        // One pass: redeemed by `day`, or still in hand (unexpired) after it.
        let (mut redeemed, mut live) = (0usize, 0usize);
        for c in issued {
            if c.redeemed_day.is_some_and(|r| r <= day) {
                redeemed += 1;
            } else if c.expires_day > day {
                live += 1;
            }
        }
        Covariates {
            live_coupons: u32::try_from(live).unwrap_or(u32::MAX),
            coupon_response: if issued.is_empty() {
                0.0
            } else {
                redeemed as f64 / issued.len() as f64
            },
            categories: u32::try_from(categories).unwrap_or(u32::MAX),
            online_share: if purchases > 0 {
                f64::from(online) / f64::from(purchases)
            } else {
                0.0
            },
            sale_share: if spend > 0 {
                discounted as f64 / spend as f64
            } else {
                0.0
            },
        }
    }
}

/// Groups observations by distinct (x, t_x, T), sorted, so the fit does not depend on
/// the order customers came in.
pub fn group(observations: impl Iterator<Item = Observation>) -> Vec<(Observation, u64)> {
    let mut keys: Vec<(u32, u64, u64)> = observations
        .map(|o| (o.x, o.t_x.to_bits(), o.t.to_bits()))
        .collect();
    // Non-negative finite floats order like their bit patterns.
    keys.sort_unstable();
    let mut grouped: Vec<(Observation, u64)> = Vec::new();
    for (x, t_x, t) in keys {
        let o = Observation {
            x,
            t_x: f64::from_bits(t_x),
            t: f64::from_bits(t),
        };
        match grouped.last_mut() {
            Some((last, n)) if *last == o => *n += 1,
            _ => grouped.push((o, 1)),
        }
    }
    grouped
}
