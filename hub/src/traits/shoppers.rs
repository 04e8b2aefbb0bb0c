//! Realistic synthetic shoppers for the purchase models' back-tests: fit on the
//! purchases up to a split date, predict each customer's repeat purchase days after it,
//! compare with what the customer then did.
//!
//! The data is deliberately *not* drawn from BG/NBD (or Pareto/NBD): it mimics a grocery
//! or drugstore chain's loyalty customers, with the features those models leave out:
//!
//! - first purchases spread over the whole period, more in some months
//!   ([`ShopperMix::join_month_weights`]);
//! - purchase rates with a long tail (log-normal mean gaps: a few weekly shoppers, many
//!   monthly ones, many who buy a few times a year);
//! - regular buyers (Erlang-k gaps, k in 3..=6, many of them on a fixed weekday: the
//!   "every Saturday" type) next to irregular ones (exponential or Erlang-2 gaps);
//! - dropout at a random calendar time (not only right after a purchase), with a
//!   heterogeneous (log-normal) mean lifetime, and one-time buyers who never return;
//! - seasonality: a yearly cycle (December up, a summer dip), a weekly one (Saturdays
//!   up, Sundays down), public holidays nearly empty, promotion weeks a little up;
//! - a sale-only segment that buys only in promotion weeks, mostly discounted items;
//! - lapsing customers who stay away for months and come back;
//! - spend per purchase gamma-distributed around a log-normal per-customer mean, a small
//!   category list, some online orders (no store), the rest in stores `S001`….
//!
//! The seasonal and weekly cycles act through "operational time": a customer's renewal
//! process runs on the cumulative intensity of the calendar, so a regular buyer stays
//! regular while buying more often in December.

use chrono::{Datelike, Duration, NaiveDate, Weekday};
use till360_shared::Timestamp;

use super::history::{day_number, Channel, CouponIssue, CustomerHistory, Purchase, MS_PER_DAY};
use super::simulate::Rng;

/// The product categories purchases are split over.
pub const CATEGORIES: [&str; 10] = [
    "groceries",
    "fresh",
    "dairy",
    "bakery",
    "drinks",
    "household",
    "personal care",
    "baby",
    "health",
    "pet",
];

/// What kind of shopper a customer was drawn as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Segment {
    /// Buys once and never returns.
    OneTime,
    /// Erlang-k gaps with k in 3..=6; most of the frequent ones on a fixed weekday.
    Regular,
    /// Exponential (k = 1) or Erlang-2 gaps.
    Irregular,
    /// Buys only in promotion weeks, mostly discounted items.
    SaleOnly,
    /// Irregular-to-regular gaps (k in 1..=3) with one break of months, then back.
    Lapsing,
}

/// The population's make-up and calendar. [`Default`] is the realistic mix; every field
/// can be varied (a test switches a feature off to see that it was what showed).
#[derive(Debug, Clone, PartialEq)]
pub struct ShopperMix {
    /// Share of one-time buyers (one purchase, never back).
    pub one_time: f64,
    /// Share of the sale-only segment.
    pub sale_only: f64,
    /// Share of customers with one lapse of months.
    pub lapsing: f64,
    /// Share of regular (Erlang k ≥ 3) buyers; the rest are irregular.
    pub regular: f64,
    /// Median over customers of the mean gap between purchases, in days (irregular and
    /// lapsing customers; regular ones have half of it).
    pub median_gap_days: f64,
    /// σ of the log of the mean gap (the long tail of rates).
    pub gap_spread: f64,
    /// Median over customers of the mean lifetime (days from the first purchase until
    /// the customer drops out; each lifetime is exponential around its mean).
    pub median_lifetime_days: f64,
    /// σ of the log of the mean lifetime.
    pub lifetime_spread: f64,
    /// Relative weight of each calendar month (January first) for first purchases.
    pub join_month_weights: [f64; 12],
    /// December's purchase intensity over the year's base (0.4: +40 %).
    pub december_lift: f64,
    /// July's and August's intensity below the base (June and September half of it).
    pub summer_dip: f64,
    /// Saturday's intensity over a Monday's (Sunday is at half a Monday's); also how
    /// many regular buyers keep to Saturday (0.5: 42 % of those who keep to a weekday).
    pub saturday_lift: f64,
    /// Promotions: `promo_weeks` weeks (Monday to Sunday) of every `promo_period_weeks`,
    /// counted from Monday 1970-01-05.
    pub promo_period_weeks: u32,
    pub promo_weeks: u32,
    /// Everyone's intensity in promotion weeks over the base.
    pub promo_lift: f64,
    /// Mean probability that a sale-only customer shops in a given promotion.
    pub sale_only_visit: f64,
    /// Mean share of a customer's purchases made online (most customers never do,
    /// a few almost always do).
    pub online: f64,
    /// Number of stores, `S001`…
    pub stores: u32,
    /// Median over customers of the mean spend per purchase, in cents.
    pub median_spend_cents: f64,
    /// Share of store purchases that print a personal coupon. 0 prints none, and the
    /// rest of the data is then what it is without coupons (they have their own random
    /// stream).
    pub coupon_share: f64,
    /// Days a coupon stays valid after the purchase that printed it: it is redeemed at
    /// the customer's next store purchase within them, if the customer cares (each has a
    /// Beta-distributed responsiveness, the chance they redeem one).
    pub coupon_days: u32,
    /// How much longer a customer who redeems every coupon stays: the mean lifetime ×
    /// (1 + this × responsiveness). 0: coupon response says nothing about the future.
    pub coupon_loyalty: f64,
    /// The chance that a customer who redeems every coupon comes back for one their next
    /// visit would miss (× their responsiveness), while still a customer: the extra
    /// visit a campaign buys. 0: coupons only ride on visits that happen anyway.
    pub coupon_pull: f64,
}

impl Default for ShopperMix {
    fn default() -> Self {
        Self {
            one_time: 0.22,
            sale_only: 0.07,
            lapsing: 0.08,
            regular: 0.23,
            median_gap_days: 30.0,
            gap_spread: 1.0,
            median_lifetime_days: 450.0,
            lifetime_spread: 0.9,
            // New Year's resolutions, back to school, the run-up to Christmas.
            join_month_weights: [1.5, 1.1, 1.1, 1.0, 1.0, 0.9, 0.7, 0.8, 1.3, 1.1, 1.3, 1.6],
            december_lift: 0.4,
            summer_dip: 0.2,
            saturday_lift: 0.5,
            promo_period_weeks: 8,
            promo_weeks: 2,
            promo_lift: 0.1,
            sale_only_visit: 0.55,
            online: 0.12,
            stores: 8,
            median_spend_cents: 2_800.0,
            coupon_share: 0.0,
            coupon_days: 28,
            coupon_loyalty: 0.0,
            coupon_pull: 0.0,
        }
    }
}

impl ShopperMix {
    /// Whether `date` is in a promotion week.
    pub fn promotion(&self, date: NaiveDate) -> bool {
        self.promotion_day(day_number(date))
    }

    fn promotion_day(&self, day: i64) -> bool {
        // 1970-01-05 (day 4) was a Monday.
        let week = (day - 4).div_euclid(7);
        week.rem_euclid(i64::from(self.promo_period_weeks.max(1))) < i64::from(self.promo_weeks)
    }

    /// The intensity of `date` before normalisation: season × weekday × holiday ×
    /// promotion.
    fn raw_intensity(&self, date: NaiveDate) -> f64 {
        let dip = self.summer_dip;
        let season = match date.month() {
            12 => 1.0 + self.december_lift,
            7 | 8 => 1.0 - dip,
            6 | 9 => 1.0 - dip / 2.0,
            _ => 1.0,
        };
        let weekday = match date.weekday() {
            Weekday::Mon | Weekday::Tue => 1.0,
            Weekday::Wed => 1.05,
            Weekday::Thu => 1.1,
            Weekday::Fri => 1.3,
            Weekday::Sat => 1.0 + self.saturday_lift,
            Weekday::Sun => 0.5,
        };
        let holiday = match (date.month(), date.day()) {
            (12, 25) | (1, 1) => 0.05,
            (12, 26) => 0.4,
            _ => 1.0,
        };
        let promo = if self.promotion(date) {
            1.0 + self.promo_lift
        } else {
            1.0
        };
        (season * weekday * holiday * promo).max(1e-6)
    }

    fn check(&self) {
        let shares = [self.one_time, self.sale_only, self.lapsing, self.regular];
        assert!(
            shares.iter().all(|s| (0.0..=1.0).contains(s)) && shares.iter().sum::<f64>() <= 1.0,
            "segment shares must be in [0, 1] and sum to at most 1: {shares:?}"
        );
        assert!(self.median_gap_days > 0.0 && self.median_lifetime_days > 0.0);
        assert!(self.promo_weeks <= self.promo_period_weeks && self.promo_period_weeks > 0);
        assert!(self.stores >= 1 && self.stores <= 999);
        assert!(self.join_month_weights.iter().all(|w| *w >= 0.0));
        assert!(self.join_month_weights.iter().any(|w| *w > 0.0));
        assert!((0.0..=1.0).contains(&self.coupon_share) && self.coupon_loyalty >= 0.0);
        assert!((0.0..=1.0).contains(&self.coupon_pull));
    }
}

/// One synthetic customer: the history and what it was drawn from (for checks and for
/// reading a back-test's errors by segment).
#[derive(Debug, Clone, PartialEq)]
pub struct Shopper {
    pub segment: Segment,
    /// Erlang shape of the gaps between purchases (0 for one-time and sale-only
    /// shoppers, who have no renewal process).
    pub k: u32,
    /// Mean gap between purchases in days of average intensity (0 for one-time and
    /// sale-only shoppers).
    pub mean_gap_days: f64,
    /// The weekday a regular buyer keeps to (moving each purchase to the next such day:
    /// at most one purchase a week however short `mean_gap_days`).
    pub weekday: Option<Weekday>,
    /// The last day the customer was still a customer, when they dropped out before
    /// the end (one-time buyers: the day of their purchase).
    pub dropped_out: Option<NaiveDate>,
    /// The chance they redeem a coupon they can (0 when the mix prints none).
    pub coupon_responsiveness: f64,
    pub history: CustomerHistory,
}

/// `customers` synthetic histories with local purchase dates in `[start, end]`: profile
/// ids `s0000001`…, customer numbers `C0000001`…, one card each. Deterministic for a seed.
pub fn histories(
    seed: u64,
    customers: usize,
    start: NaiveDate,
    end: NaiveDate,
    mix: &ShopperMix,
) -> Vec<CustomerHistory> {
    shoppers(seed, customers, start, end, mix)
        .into_iter()
        .map(|s| s.history)
        .collect()
}

/// As [`histories`], with each customer's segment and parameters.
///
/// # Panics
/// When `end` is before `start` or `mix` is inconsistent (shares out of range or summing
/// above 1, no stores, more promotion weeks than weeks in the cycle).
pub fn shoppers(
    seed: u64,
    customers: usize,
    start: NaiveDate,
    end: NaiveDate,
    mix: &ShopperMix,
) -> Vec<Shopper> {
    assert!(start <= end, "start {start} after end {end}");
    mix.check();
    let calendar = Calendar::new(start, end, mix);
    let mut rng = Rng::new(seed);
    // "coupons!": their own stream, so printing none leaves every other draw as it was.
    let mut coupon_rng = Rng::new(seed ^ 0x636f_7570_6f6e_7321);
    let mut days = Vec::new();
    (0..customers)
        .map(|n| calendar.shopper(&mut rng, &mut coupon_rng, mix, n + 1, &mut days))
        .collect()
}

/// The period's days (index 0 = `start`): intensity, its running sum (operational
/// time), UTC offset, promotions, weights for first purchases.
struct Calendar {
    start: NaiveDate,
    first_day: i64,
    intensity: Vec<f64>,
    /// `cum[i]` = intensity of the days before day i; `cum.len() = days + 1`.
    cum: Vec<f64>,
    offset_min: Vec<i16>,
    /// Promotion periods within the range: (first day, last day), indices.
    promotions: Vec<(usize, usize)>,
    join_weight: Vec<f64>,
    december: Vec<bool>,
    /// `S001`…
    stores: Vec<String>,
}

impl Calendar {
    fn new(start: NaiveDate, end: NaiveDate, mix: &ShopperMix) -> Self {
        let first_day = day_number(start);
        let len = (day_number(end) - first_day + 1) as usize;
        let dates: Vec<NaiveDate> = (0..len).map(|i| start + Duration::days(i as i64)).collect();
        let mut intensity: Vec<f64> = dates.iter().map(|d| mix.raw_intensity(*d)).collect();
        let mean = intensity.iter().sum::<f64>() / len as f64;
        intensity.iter_mut().for_each(|s| *s /= mean);
        let mut cum = Vec::with_capacity(len + 1);
        let mut total = 0.0;
        cum.push(total);
        for s in &intensity {
            total += s;
            cum.push(total);
        }
        let mut promotions: Vec<(usize, usize)> = Vec::new();
        for (i, d) in dates.iter().enumerate() {
            if mix.promotion(*d) {
                match promotions.last_mut() {
                    Some((_, last)) if *last + 1 == i => *last = i,
                    _ => promotions.push((i, i)),
                }
            }
        }
        let max_weight = mix.join_month_weights.iter().cloned().fold(0.0, f64::max);
        Self {
            start,
            first_day,
            offset_min: dates.iter().map(|d| amsterdam_offset(*d)).collect(),
            join_weight: dates
                .iter()
                .map(|d| mix.join_month_weights[d.month0() as usize] / max_weight)
                .collect(),
            december: dates.iter().map(|d| d.month() == 12).collect(),
            stores: (1..=mix.stores).map(|s| format!("S{s:03}")).collect(),
            intensity,
            cum,
            promotions,
        }
    }

    fn len(&self) -> usize {
        self.intensity.len()
    }

    /// The day at operational time `tau`, if within the period.
    fn day_at(&self, tau: f64) -> Option<usize> {
        if tau >= self.cum[self.len()] {
            return None;
        }
        Some(self.cum.partition_point(|c| *c <= tau).max(1) - 1)
    }

    fn date(&self, day: usize) -> NaiveDate {
        self.start + Duration::days(day as i64)
    }

    fn join_day(&self, rng: &mut Rng) -> usize {
        loop {
            let day = ((rng.uniform() * self.len() as f64) as usize).min(self.len() - 1);
            if rng.uniform() < self.join_weight[day] {
                return day;
            }
        }
    }

    /// Draws customer `n` (1-based); `days` is scratch space.
    fn shopper(
        &self,
        rng: &mut Rng,
        coupon_rng: &mut Rng,
        mix: &ShopperMix,
        n: usize,
        days: &mut Vec<usize>,
    ) -> Shopper {
        days.clear();
        let u = rng.uniform();
        let mut edge = 0.0;
        let mut segment = Segment::Irregular;
        for (share, s) in [
            (mix.one_time, Segment::OneTime),
            (mix.sale_only, Segment::SaleOnly),
            (mix.lapsing, Segment::Lapsing),
            (mix.regular, Segment::Regular),
        ] {
            edge += share;
            if u < edge {
                segment = s;
                break;
            }
        }
        // A sale-only customer needs a promotion in the period.
        let segment = if segment == Segment::SaleOnly && self.promotions.is_empty() {
            Segment::Irregular
        } else {
            segment
        };
        let join = self.join_day(rng);
        let responsiveness = if mix.coupon_share > 0.0 {
            coupon_rng.beta(0.6, 0.9)
        } else {
            0.0
        };
        let mean_life = mix.median_lifetime_days
            * (mix.lifetime_spread * rng.normal()).exp()
            * (1.0 + mix.coupon_loyalty * responsiveness);
        let life = rng.exponential(1.0 / mean_life);
        // Death in (fractional) days from the period's start.
        let mut death = join as f64 + rng.uniform() + life;
        let (mut k, mut mean_gap, mut weekday) = (0, 0.0, None);
        match segment {
            Segment::OneTime => {
                days.push(join);
                death = join as f64;
            }
            Segment::SaleOnly => self.sale_only(rng, mix, join, death, days),
            Segment::Regular | Segment::Irregular | Segment::Lapsing => {
                let ln_gap = mix.gap_spread * rng.normal();
                mean_gap = (mix.median_gap_days * ln_gap.exp()).clamp(3.0, 400.0);
                k = match segment {
                    Segment::Regular => 3 + (rng.uniform() * 4.0) as u32,
                    Segment::Irregular => 1 + u32::from(rng.uniform() < 0.3),
                    _ => 1 + (rng.uniform() * 3.0) as u32,
                }
                .min(6);
                let mut lapse = None;
                if segment == Segment::Regular {
                    mean_gap = (mean_gap / 2.0).max(5.0);
                    // Frequent regular buyers mostly keep to one weekday, Saturday first.
                    if mean_gap <= 24.0 && rng.uniform() < 0.7 {
                        let saturday = mix.saturday_lift.max(0.0);
                        weekday = Some(if rng.uniform() < saturday / (0.7 + saturday) {
                            Weekday::Sat
                        } else {
                            weekday_of((rng.uniform() * 7.0) as u32)
                        });
                    }
                } else if segment == Segment::Lapsing {
                    let from = join as f64 + 20.0 + rng.uniform() * 250.0;
                    let to = from + 75.0 + rng.uniform() * 165.0;
                    death = death.max(to + 30.0 + rng.exponential(1.0 / mean_life));
                    lapse = Some((from, to));
                }
                self.renewal(rng, join, k, mean_gap, death, lapse, days);
            }
        }
        if let Some(weekday) = weekday {
            self.keep_to(weekday, days);
        }
        days.dedup();
        let last = days.last().copied().unwrap_or(join);
        let dropped_out =
            (death < self.len() as f64).then(|| self.date((death.floor() as usize).max(last)));
        let mut purchases = self.purchases(rng, mix, segment, days);
        // The last local day they can still shop: their dropout or the period's end.
        let last_day = self.first_day + (death.floor().max(0.0) as i64).min(self.len() as i64 - 1);
        let coupons = coupons(coupon_rng, mix, &mut purchases, responsiveness, last_day);
        Shopper {
            segment,
            k,
            mean_gap_days: mean_gap,
            weekday,
            dropped_out,
            coupon_responsiveness: responsiveness,
            history: CustomerHistory {
                profile_id: format!("s{n:07}"),
                customer_no: Some(format!("C{n:07}")),
                cards: vec![format!("2{n:012}")],
                purchases,
                coupons,
            },
        }
    }

    /// Purchase days of a renewal process with Erlang-`k` gaps of mean `mean_gap` in
    /// operational time, from `join` until `death` or the period's end, none in `lapse`.
    #[allow(clippy::too_many_arguments)]
    fn renewal(
        &self,
        rng: &mut Rng,
        join: usize,
        k: u32,
        mean_gap: f64,
        death: f64,
        lapse: Option<(f64, f64)>,
        days: &mut Vec<usize>,
    ) {
        days.push(join);
        let mut tau = self.cum[join] + rng.uniform() * self.intensity[join];
        let scale = mean_gap / f64::from(k);
        loop {
            tau += erlang(rng, k, scale);
            let Some(day) = self.day_at(tau) else {
                return;
            };
            // The fraction of the day the purchase falls in, to compare with death.
            let at = day as f64 + (tau - self.cum[day]) / self.intensity[day];
            if at >= death {
                return;
            }
            if lapse.is_some_and(|(from, to)| at >= from && at < to) {
                continue;
            }
            days.push(day);
        }
    }

    /// Purchase days of a sale-only customer: the first in the first promotion on or
    /// after `join` (or the last one, when none follows), then in each later promotion
    /// with a probability of their own, until `death`.
    fn sale_only(
        &self,
        rng: &mut Rng,
        mix: &ShopperMix,
        join: usize,
        death: f64,
        days: &mut Vec<usize>,
    ) {
        let first = self
            .promotions
            .iter()
            .position(|(_, last)| *last >= join)
            .unwrap_or(self.promotions.len() - 1);
        let (from, to) = self.promotions[first];
        let join = if join >= from && join <= to {
            join
        } else {
            from + (rng.uniform() * (to - from + 1) as f64) as usize
        };
        days.push(join.min(to));
        let visit = rng.beta(
            2.0,
            2.0 * (1.0 - mix.sale_only_visit) / mix.sale_only_visit.max(0.01),
        );
        for &(from, to) in &self.promotions[first + 1..] {
            if from as f64 >= death {
                break;
            }
            let lift = if self.december[from] {
                1.0 + mix.december_lift
            } else {
                1.0
            };
            if rng.uniform() >= (visit * lift).min(0.98) {
                continue;
            }
            let width = (to - from + 1) as f64;
            let mut visits = [from + (rng.uniform() * width) as usize, usize::MAX];
            if rng.uniform() < 0.3 {
                visits[1] = from + (rng.uniform() * width) as usize;
            }
            visits.sort_unstable();
            for day in visits {
                if day <= to && (day as f64) < death {
                    days.push(day);
                }
            }
        }
    }

    /// Moves each purchase to the next `weekday`; drops those that would then fall
    /// after the period (but never the first). The days stay sorted (not distinct).
    fn keep_to(&self, weekday: Weekday, days: &mut Vec<usize>) {
        let start = self.date(0).weekday().num_days_from_monday();
        let target = weekday.num_days_from_monday();
        let moved = |day: usize| day + ((target + 7 - (start + (day % 7) as u32) % 7) % 7) as usize;
        if moved(days[0]) >= self.len() {
            days.truncate(1);
            return;
        }
        days.retain_mut(|day| {
            *day = moved(*day);
            *day < self.len()
        });
    }

    /// The purchases of a customer of `segment` on `days` (sorted, distinct).
    fn purchases(
        &self,
        rng: &mut Rng,
        mix: &ShopperMix,
        segment: Segment,
        days: &[usize],
    ) -> Vec<Purchase> {
        let sale_only = segment == Segment::SaleOnly;
        // Spend: a log-normal mean per customer, gamma around it per purchase.
        let mean_spend = mix.median_spend_cents * (0.7 * rng.normal()).exp();
        let shape = 2 + (rng.uniform() * 5.0) as u32;
        let discount_share = if sale_only { 0.0 } else { rng.beta(1.2, 9.0) };
        let online_share = {
            // Scaled so that the mean over customers is `mix.online`.
            let u = rng.uniform();
            let scale = mix.online / 0.12;
            (if u < 0.72 {
                0.0
            } else if u < 0.93 {
                0.1 + 0.3 * rng.uniform()
            } else {
                0.8 + 0.2 * rng.uniform()
            } * scale)
                .min(1.0)
        };
        // A home store (the first ones larger) and a favourite category.
        let stores = self.stores.len();
        let home = ((rng.uniform().powi(2) * stores as f64) as usize).min(stores - 1);
        let favourite = ((rng.uniform().powf(1.5) * CATEGORIES.len() as f64) as usize)
            .min(CATEGORIES.len() - 1);
        days.iter()
            .map(|&day| {
                let date_day = self.first_day + day as i64;
                let promo = mix.promotion_day(date_day);
                let online = rng.uniform() < online_share;
                let lift = if self.december[day] { 1.15 } else { 1.0 };
                let amount = erlang(rng, shape, mean_spend * lift / f64::from(shape))
                    .round()
                    .max(50.0) as i64;
                let discounted_share = if sale_only {
                    0.6 + 0.35 * rng.uniform()
                } else if promo {
                    (discount_share * (1.5 + rng.uniform())).min(1.0)
                } else {
                    (discount_share * (0.5 + rng.uniform())).min(1.0)
                };
                let discounted_cents =
                    ((amount as f64 * discounted_share).round() as i64).min(amount);
                // Local time of day: stores 8:00–21:00 peaking mid-afternoon, online
                // 7:00–24:00.
                let minute = if online {
                    420.0 + 1_019.0 * rng.uniform()
                } else {
                    480.0 + 389.0 * (rng.uniform() + rng.uniform())
                };
                let offset = self.offset_min[day];
                let local_ms = date_day * MS_PER_DAY
                    + (minute * 60_000.0) as i64
                    + (rng.uniform() * 60_000.0) as i64;
                let store = (!online).then(|| {
                    let s = if rng.uniform() < 0.88 {
                        home
                    } else {
                        ((rng.uniform() * stores as f64) as usize).min(stores - 1)
                    };
                    self.stores[s].clone()
                });
                Purchase {
                    at: Timestamp::from_unix_ms(local_ms - i64::from(offset) * 60_000, offset),
                    channel: if online {
                        Channel::Online
                    } else {
                        Channel::Store
                    },
                    store,
                    amount_cents: amount,
                    discounted_cents,
                    categories: categories(rng, favourite, amount),
                }
            })
            .collect()
    }
}

/// The coupons printed at a customer's store purchases (each with `mix.coupon_share`),
/// each redeemed (with `responsiveness`) at their next store purchase day if that is
/// within the coupon's days; if it is not, a customer who cares may come back for it
/// (`mix.coupon_pull`) up to `last_day`: that extra visit is added to `purchases`.
fn coupons(
    rng: &mut Rng,
    mix: &ShopperMix,
    purchases: &mut Vec<Purchase>,
    responsiveness: f64,
    last_day: i64,
) -> Vec<CouponIssue> {
    if mix.coupon_share <= 0.0 {
        return Vec::new();
    }
    let days = i64::from(mix.coupon_days);
    let mut out = Vec::new();
    let mut i = 0;
    while i < purchases.len() {
        let printed = purchases[i].clone();
        i += 1;
        if printed.channel != Channel::Store || rng.uniform() >= mix.coupon_share {
            continue;
        }
        let day = printed.local_day();
        let expires_day = day + days;
        let next = purchases[i..]
            .iter()
            .filter(|p| p.channel == Channel::Store)
            .map(Purchase::local_day)
            .find(|d| *d > day);
        let redeemed_day = match next {
            Some(next) if next <= expires_day => (rng.uniform() < responsiveness).then_some(next),
            _ if rng.uniform() < responsiveness * mix.coupon_pull => {
                let back = (day + 1 + (rng.uniform() * days as f64) as i64).min(expires_day);
                (back <= last_day).then(|| {
                    let visit = Purchase {
                        at: Timestamp::from_unix_ms(
                            printed.at.unix_ms + (back - day) * MS_PER_DAY,
                            printed.at.offset_min,
                        ),
                        ..printed
                    };
                    let at = purchases.partition_point(|p| p.local_day() <= back);
                    purchases.insert(at, visit);
                    back
                })
            }
            _ => None,
        };
        out.push(CouponIssue {
            issued_day: day,
            expires_day,
            redeemed_day,
        });
    }
    out
}

/// Splits `amount` over one to three distinct categories, the favourite most often
/// first.
fn categories(rng: &mut Rng, favourite: usize, amount: i64) -> Vec<(String, i64)> {
    let u = rng.uniform();
    let count = 1 + usize::from(u < 0.55) + usize::from(u < 0.2);
    let mut picked = [usize::MAX; 3];
    for i in 0..count {
        picked[i] = loop {
            let c = if i == 0 && rng.uniform() < 0.6 {
                favourite
            } else {
                ((rng.uniform() * CATEGORIES.len() as f64) as usize).min(CATEGORIES.len() - 1)
            };
            if !picked[..i].contains(&c) {
                break c;
            }
        };
    }
    let mut left = amount;
    let mut out = Vec::with_capacity(count);
    for (i, c) in picked[..count].iter().enumerate() {
        let part = if i + 1 == count {
            left
        } else {
            ((left as f64) * (0.4 + 0.5 * rng.uniform())).round() as i64
        };
        if part > 0 {
            out.push((CATEGORIES[*c].to_string(), part));
        }
        left -= part;
    }
    out
}

/// Erlang(k, scale): the sum of k exponentials, by one logarithm (k ≤ 6 here, so the
/// product of uniforms stays far from underflow).
fn erlang(rng: &mut Rng, k: u32, scale: f64) -> f64 {
    let mut product = 1.0;
    for _ in 0..k.max(1) {
        product *= rng.uniform();
    }
    -scale * product.ln()
}

fn weekday_of(n: u32) -> Weekday {
    [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ][(n % 7) as usize]
}

/// The Netherlands' UTC offset on a date (CEST from the last Sunday of March to the
/// last Sunday of October, by date: the switch is at night, before the shops open).
fn amsterdam_offset(date: NaiveDate) -> i16 {
    let last_sunday = |month: u32| {
        let last = NaiveDate::from_ymd_opt(date.year(), month, 31).expect("31 March/October");
        last - Duration::days(i64::from(last.weekday().num_days_from_sunday()))
    };
    if date >= last_sunday(3) && date < last_sunday(10) {
        120
    } else {
        60
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn two_years(seed: u64, customers: usize, mix: &ShopperMix) -> Vec<Shopper> {
        shoppers(seed, customers, day(2024, 1, 1), day(2025, 12, 31), mix)
    }

    fn local_date(p: &Purchase) -> NaiveDate {
        NaiveDate::default() + Duration::days(p.local_day())
    }

    fn purchases_in(shoppers: &[Shopper], from: NaiveDate, to: NaiveDate) -> usize {
        shoppers
            .iter()
            .flat_map(|s| &s.history.purchases)
            .filter(|p| (from..=to).contains(&local_date(p)))
            .count()
    }

    fn share(shoppers: &[Shopper], segment: Segment) -> f64 {
        shoppers.iter().filter(|s| s.segment == segment).count() as f64 / shoppers.len() as f64
    }

    /// Coefficient of variation of the gaps (days) between a customer's purchases.
    fn gap_cv(history: &CustomerHistory) -> f64 {
        let days: Vec<f64> = history
            .purchases
            .iter()
            .map(|p| p.local_day() as f64)
            .collect();
        let gaps: Vec<f64> = days.windows(2).map(|w| w[1] - w[0]).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        var.sqrt() / mean
    }

    fn median(mut values: Vec<f64>) -> f64 {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    }

    #[test]
    fn deterministic_for_a_seed() {
        let mix = ShopperMix::default();
        let a = two_years(11, 2_000, &mix);
        assert_eq!(a, two_years(11, 2_000, &mix));
        let b = two_years(12, 2_000, &mix);
        assert_ne!(a, b);
        // The same customers as plain histories, numbered from 1.
        let plain = histories(11, 2_000, day(2024, 1, 1), day(2025, 12, 31), &mix);
        assert!(a.iter().zip(&plain).all(|(s, h)| s.history == *h));
        assert_eq!(plain[0].profile_id, "s0000001");
        assert_eq!(plain[0].customer_no.as_deref(), Some("C0000001"));
        assert_eq!(plain[1_999].profile_id, "s0002000");
        assert!(plain.iter().all(|h| h.cards.len() == 1));
        let cards: std::collections::HashSet<_> = plain.iter().map(|h| &h.cards[0]).collect();
        assert_eq!(cards.len(), plain.len());
    }

    /// Coupons come from their own stream: printing them changes no purchase unless
    /// their response is made to matter. Each is printed on a store purchase day and
    /// redeemed only on the next store purchase day within its days; the more
    /// responsive a customer, the more they redeem.
    #[test]
    fn coupons_are_printed_at_store_visits_and_redeemed_at_the_next_one_in_time() {
        let plain = two_years(11, 3_000, &ShopperMix::default());
        assert!(plain.iter().all(|s| s.history.coupons.is_empty()));
        let printing = ShopperMix {
            coupon_share: 0.4,
            ..ShopperMix::default()
        };
        let printed = two_years(11, 3_000, &printing);
        let purchases = |all: &[Shopper]| -> Vec<Vec<Purchase>> {
            all.iter().map(|s| s.history.purchases.clone()).collect()
        };
        assert_eq!(purchases(&plain), purchases(&printed));

        let (mut issued, mut store_visits) = (0usize, 0usize);
        let (mut low, mut high) = ((0usize, 0usize), (0usize, 0usize));
        for s in &printed {
            let store_days: Vec<i64> = s
                .history
                .purchases
                .iter()
                .filter(|p| p.channel == Channel::Store)
                .map(Purchase::local_day)
                .collect();
            store_visits += store_days.len();
            issued += s.history.coupons.len();
            for c in &s.history.coupons {
                assert!(store_days.contains(&c.issued_day), "{c:?}");
                let next = store_days.iter().find(|d| **d > c.issued_day);
                if let Some(r) = c.redeemed_day {
                    assert_eq!(Some(&r), next, "redeemed at the next store visit");
                    assert!(r - c.issued_day <= 28, "{c:?}");
                }
                let can = next.is_some_and(|n| n - c.issued_day <= 28);
                let tally = if s.coupon_responsiveness < 0.3 {
                    &mut low
                } else {
                    &mut high
                };
                if can {
                    tally.0 += 1;
                    tally.1 += usize::from(c.redeemed_day.is_some());
                }
            }
        }
        let share = issued as f64 / store_visits as f64;
        assert!(
            (share - 0.4).abs() < 0.02,
            "printed at {share:.3} of visits"
        );
        let rate = |(can, did): (usize, usize)| did as f64 / can as f64;
        assert!(
            rate(high) > rate(low) + 0.3,
            "responsive {:.2}, not {:.2}",
            rate(high),
            rate(low)
        );

        // Made to matter, responsive customers stay longer.
        let loyal = two_years(
            11,
            3_000,
            &ShopperMix {
                coupon_loyalty: 3.0,
                ..printing
            },
        );
        let still_there = |all: &[Shopper], responsive: bool| -> f64 {
            let group: Vec<&Shopper> = all
                .iter()
                .filter(|s| s.segment != Segment::OneTime)
                .filter(|s| (s.coupon_responsiveness > 0.5) == responsive)
                .collect();
            group.iter().filter(|s| s.dropped_out.is_none()).count() as f64 / group.len() as f64
        };
        let lift = |all: &[Shopper]| still_there(all, true) - still_there(all, false);
        assert!(
            lift(&loyal) > lift(&printed) + 0.1,
            "responsive customers still there at the end: {:+.3} when loyal, {:+.3} when not",
            lift(&loyal),
            lift(&printed)
        );
    }

    #[test]
    fn purchases_in_range_sorted_and_consistent() {
        let mix = ShopperMix::default();
        for (start, end, customers) in [
            (day(2024, 1, 1), day(2025, 12, 31), 5_000),
            // Short windows: the edges (a weekday keeper at the end, a sale-only
            // customer joining after the last promotion, no promotion at all).
            (day(2025, 3, 10), day(2025, 4, 20), 2_000),
            (day(2025, 6, 2), day(2025, 6, 8), 2_000),
            (day(2025, 12, 31), day(2025, 12, 31), 200),
        ] {
            let all = shoppers(5, customers, start, end, &mix);
            assert_eq!(all.len(), customers);
            let mut stores = std::collections::BTreeSet::new();
            for s in &all {
                let p = &s.history.purchases;
                assert!(!p.is_empty(), "{}", s.history.profile_id);
                assert!(p.windows(2).all(|w| w[0].at.unix_ms < w[1].at.unix_ms));
                // One purchase a day.
                assert!(p.windows(2).all(|w| w[0].local_day() < w[1].local_day()));
                for purchase in p {
                    let date = local_date(purchase);
                    assert!(
                        date >= start && date <= end,
                        "{date} outside {start}..{end}"
                    );
                    assert!(purchase.amount_cents > 0);
                    assert!((0..=purchase.amount_cents).contains(&purchase.discounted_cents));
                    let parts: i64 = purchase.categories.iter().map(|(_, c)| c).sum();
                    assert_eq!(parts, purchase.amount_cents);
                    assert!(purchase
                        .categories
                        .iter()
                        .all(|(c, cents)| CATEGORIES.contains(&c.as_str()) && *cents > 0));
                    assert!([60, 120].contains(&purchase.at.offset_min));
                    match purchase.channel {
                        Channel::Online => assert_eq!(purchase.store, None),
                        Channel::Store => {
                            stores.insert(purchase.store.clone().expect("a store"));
                        }
                    }
                }
                if let Some(out) = s.dropped_out {
                    assert!(out >= local_date(p.last().unwrap()) && out <= end);
                }
            }
            assert!(stores.iter().all(|s| s.len() == 4
                && s.starts_with('S')
                && (1..=mix.stores).contains(&s[1..].parse().unwrap())));
            if customers >= 2_000 {
                assert_eq!(stores.len(), mix.stores as usize, "{stores:?}");
                let purchases: Vec<_> = all.iter().flat_map(|s| &s.history.purchases).collect();
                let online = purchases
                    .iter()
                    .filter(|p| p.channel == Channel::Online)
                    .count() as f64
                    / purchases.len() as f64;
                println!("{start}..{end}: online {online:.3}");
                assert!((0.05..0.25).contains(&online), "online {online:.3}");
            }
        }
        // Summer time: local noon in July is 10:00 UTC.
        let july = shoppers(1, 50, day(2025, 7, 14), day(2025, 7, 14), &mix);
        assert!(july
            .iter()
            .flat_map(|s| &s.history.purchases)
            .all(|p| p.at.offset_min == 120));
    }

    #[test]
    fn segments_in_their_shares() {
        let default = ShopperMix::default();
        let other = ShopperMix {
            one_time: 0.4,
            sale_only: 0.15,
            lapsing: 0.0,
            regular: 0.05,
            ..ShopperMix::default()
        };
        for mix in [default, other] {
            let all = two_years(21, 20_000, &mix);
            let irregular = 1.0 - mix.one_time - mix.sale_only - mix.lapsing - mix.regular;
            for (segment, expected) in [
                (Segment::OneTime, mix.one_time),
                (Segment::SaleOnly, mix.sale_only),
                (Segment::Lapsing, mix.lapsing),
                (Segment::Regular, mix.regular),
                (Segment::Irregular, irregular),
            ] {
                let measured = share(&all, segment);
                println!("{segment:?}: {measured:.4} (mix {expected:.2})");
                assert!(
                    (measured - expected).abs() < 0.015,
                    "{segment:?}: {measured:.4} vs {expected}"
                );
            }
            for s in &all {
                let expected_k = match s.segment {
                    Segment::OneTime | Segment::SaleOnly => 0..=0,
                    Segment::Regular => 3..=6,
                    Segment::Irregular => 1..=2,
                    Segment::Lapsing => 1..=3,
                };
                assert!(expected_k.contains(&s.k), "{:?} k={}", s.segment, s.k);
                if s.segment == Segment::OneTime {
                    assert_eq!(s.history.purchases.len(), 1);
                }
            }
        }
    }

    #[test]
    fn purchase_rates_have_a_long_tail() {
        let all = two_years(22, 20_000, &ShopperMix::default());
        // Repeat purchases a year of the ongoing customers who joined in the first half
        // of 2024 and were still customers at the end.
        let rates: Vec<f64> = all
            .iter()
            .filter(|s| matches!(s.segment, Segment::Regular | Segment::Irregular))
            .filter(|s| s.dropped_out.is_none())
            .filter(|s| local_date(&s.history.purchases[0]) < day(2024, 7, 1))
            .map(|s| {
                let first = local_date(&s.history.purchases[0]);
                let years = (day(2025, 12, 31) - first).num_days() as f64 / 365.0;
                (s.history.purchases.len() - 1) as f64 / years
            })
            .collect();
        assert!(rates.len() > 500, "{}", rates.len());
        let of = |low: f64, high: f64| {
            rates.iter().filter(|r| (low..high).contains(*r)).count() as f64 / rates.len() as f64
        };
        let (weekly, monthly, few) = (of(40.0, 400.0), of(8.0, 20.0), of(0.0, 6.0));
        println!(
            "{} ongoing: weekly {weekly:.3}, monthly {monthly:.3}, ≤ 6 a year {few:.3}",
            rates.len()
        );
        assert!((0.03..0.3).contains(&weekly), "weekly {weekly:.3}");
        assert!(monthly > 0.2, "monthly {monthly:.3}");
        assert!(few > 0.1, "a few times a year {few:.3}");
        // And first purchases all through the period, more in January than in July.
        let joined = |y, m| {
            all.iter()
                .filter(|s| {
                    let d = local_date(&s.history.purchases[0]);
                    d.year() == y && d.month() == m
                })
                .count()
        };
        for (y, m) in (1..=12).flat_map(|m| [(2024, m), (2025, m)]) {
            assert!(joined(y, m) > 300, "{y}-{m}: {}", joined(y, m));
        }
        let (january, july) = (
            joined(2024, 1) + joined(2025, 1),
            joined(2024, 7) + joined(2025, 7),
        );
        println!("first purchases: January {january}, July {july}");
        assert!(january as f64 > 1.6 * july as f64, "{january} vs {july}");
    }

    /// Purchases a day per customer active through the month (joined before it, not
    /// dropped out before its end).
    fn month_rate(all: &[Shopper], y: i32, m: u32) -> f64 {
        let from = day(y, m, 1);
        let to = (from + Duration::days(32)).with_day(1).unwrap() - Duration::days(1);
        let active: Vec<Shopper> = all
            .iter()
            .filter(|s| local_date(&s.history.purchases[0]) < from)
            .filter(|s| s.dropped_out.is_none_or(|d| d >= to))
            .cloned()
            .collect();
        purchases_in(&active, from, to) as f64 / active.len() as f64 / f64::from(to.day())
    }

    #[test]
    fn seasonality_shows() {
        let mix = ShopperMix::default();
        let all = two_years(31, 20_000, &mix);
        let (july, december, july_after) = (
            month_rate(&all, 2024, 7),
            month_rate(&all, 2024, 12),
            month_rate(&all, 2025, 7),
        );
        assert!(
            december > 1.4 * july,
            "December {december:.4}, July {july:.4}"
        );
        assert!(
            december > 1.3 * july_after,
            "December {december:.4}, July {july_after:.4}"
        );
        let saturday = |all: &[Shopper]| {
            let purchases: Vec<_> = all.iter().flat_map(|s| &s.history.purchases).collect();
            let on = purchases
                .iter()
                .filter(|p| local_date(p).weekday() == Weekday::Sat)
                .count();
            on as f64 / purchases.len() as f64
        };
        let on_saturday = saturday(&all);
        println!(
            "per active customer and day: July 2024 {july:.4}, December 2024 {december:.4}, \
             July 2025 {july_after:.4}; Saturday share {on_saturday:.3}"
        );
        assert!(on_saturday > 0.2, "{on_saturday:.3}");
        // Without the cycles the months and the weekdays even out.
        let flat = ShopperMix {
            december_lift: 0.0,
            summer_dip: 0.0,
            saturday_lift: 0.0,
            ..mix
        };
        let all = two_years(31, 20_000, &flat);
        let (july, december) = (month_rate(&all, 2024, 7), month_rate(&all, 2024, 12));
        assert!(
            (december / july - 1.0).abs() < 0.12,
            "December {december:.4}, July {july:.4}"
        );
        let on_saturday = saturday(&all);
        println!("flat: July {july:.4}, December {december:.4}, Saturday {on_saturday:.3}");
        assert!(on_saturday < 0.17, "{on_saturday:.3}");
    }

    #[test]
    fn sale_only_customers_buy_only_in_promotions() {
        let mix = ShopperMix::default();
        let all = two_years(41, 20_000, &mix);
        let (sale_only, others): (Vec<&Shopper>, Vec<&Shopper>) =
            all.iter().partition(|s| s.segment == Segment::SaleOnly);
        assert!(sale_only.len() > 1_000);
        let in_promotion = |s: &&Shopper| {
            s.history
                .purchases
                .iter()
                .filter(|p| mix.promotion(local_date(p)))
                .count()
        };
        for s in &sale_only {
            assert_eq!(in_promotion(s), s.history.purchases.len(), "{s:?}");
        }
        // Promotions are 2 weeks in 8: the others mostly buy outside them.
        let (theirs, total) = others.iter().fold((0, 0), |(a, b), s| {
            (a + in_promotion(s), b + s.history.purchases.len())
        });
        let share = theirs as f64 / total as f64;
        println!("others' purchases in promotion weeks: {share:.3}");
        assert!((0.2..0.35).contains(&share), "{share:.3}");
        // They come back for later promotions, and buy mostly discounted.
        let returning = sale_only
            .iter()
            .filter(|s| s.history.purchases.len() > 1)
            .count();
        println!("sale-only: {} customers, {returning} back", sale_only.len());
        assert!(
            returning as f64 > 0.4 * sale_only.len() as f64,
            "{returning}"
        );
        let discounted = |shoppers: &[&Shopper]| {
            let (d, a) = shoppers
                .iter()
                .flat_map(|s| &s.history.purchases)
                .fold((0, 0), |(d, a), p| {
                    (d + p.discounted_cents, a + p.amount_cents)
                });
            d as f64 / a as f64
        };
        let (theirs, others) = (discounted(&sale_only), discounted(&others));
        println!("discounted spend: sale-only {theirs:.3}, others {others:.3}");
        assert!(theirs > 0.6 && others < 0.25, "{theirs:.3} vs {others:.3}");
    }

    #[test]
    fn regular_gaps_vary_much_less_than_irregular_ones() {
        let all = two_years(51, 20_000, &ShopperMix::default());
        let cvs = |keep: &dyn Fn(&Shopper) -> bool| -> Vec<f64> {
            all.iter()
                .filter(|s| keep(s) && s.history.purchases.len() >= 6)
                .map(|s| gap_cv(&s.history))
                .collect()
        };
        let regular = cvs(&|s| s.segment == Segment::Regular);
        let exponential = cvs(&|s| s.segment == Segment::Irregular && s.k == 1);
        assert!(regular.len() > 500 && exponential.len() > 500);
        let (regular, exponential) = (median(regular), median(exponential));
        println!("median gap CV: regular {regular:.3}, exponential {exponential:.3}");
        assert!(regular < 0.5, "{regular:.3}");
        assert!(exponential > 0.75, "{exponential:.3}");
        assert!(
            regular < 0.6 * exponential,
            "{regular:.3} vs {exponential:.3}"
        );
        // The weekday keepers buy on their weekday.
        for s in all.iter().filter(|s| s.weekday.is_some()) {
            let on = s
                .history
                .purchases
                .iter()
                .filter(|p| Some(local_date(p).weekday()) == s.weekday)
                .count();
            // Only a first purchase in the period's last days is left where it was.
            let all = s.history.purchases.len();
            assert!(on == all || (all == 1 && on == 0), "{s:?}");
        }
    }

    #[test]
    fn some_never_return_and_some_lapse_and_come_back() {
        let single_share = |mix: &ShopperMix| {
            let all = two_years(61, 20_000, mix);
            // Customers who had at least a year to come back.
            let early: Vec<&Shopper> = all
                .iter()
                .filter(|s| local_date(&s.history.purchases[0]) < day(2025, 1, 1))
                .collect();
            let single = early
                .iter()
                .filter(|s| s.history.purchases.len() == 1)
                .count();
            (single as f64 / early.len() as f64, all)
        };
        let mix = ShopperMix::default();
        let (with, all) = single_share(&mix);
        assert!(
            with >= mix.one_time && with < mix.one_time + 0.12,
            "{with:.3}"
        );
        let (without, _) = single_share(&ShopperMix {
            one_time: 0.0,
            ..mix.clone()
        });
        println!(
            "single purchase, joined in 2024: {with:.3}; without one-time buyers {without:.3}"
        );
        assert!(with - without > 0.15, "{with:.3} vs {without:.3}");
        // Lapsing customers: a break of 75 days or more, then back; far fewer of the
        // irregular customers of similar rates show one.
        let lapsed = |segment: Segment| {
            let of: Vec<&Shopper> = all
                .iter()
                .filter(|s| s.segment == segment && s.mean_gap_days < 20.0)
                .filter(|s| local_date(&s.history.purchases[0]) < day(2024, 7, 1))
                .filter(|s| s.history.purchases.len() >= 3)
                .collect();
            let with_break = of
                .iter()
                .filter(|s| {
                    s.history
                        .purchases
                        .windows(2)
                        .any(|w| w[1].local_day() - w[0].local_day() >= 75)
                })
                .count();
            with_break as f64 / of.len() as f64
        };
        let (lapsing, irregular) = (lapsed(Segment::Lapsing), lapsed(Segment::Irregular));
        println!("a break of 75+ days: lapsing {lapsing:.3}, irregular {irregular:.3}");
        assert!(
            lapsing > 0.6 && irregular < 0.1,
            "{lapsing:.3} vs {irregular:.3}"
        );
    }
}
