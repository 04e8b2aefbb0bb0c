//! Recency/frequency/monetary summaries (the `lifetimes` library's conventions) and
//! RFM quintile scores.

use super::history::Purchase;

/// One customer's purchase summary as of a date. Purchases on the same (local) day
/// count once for the model fields.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Purchases (receipts and orders), each counted.
    pub purchases: u32,
    pub spend_cents: i64,
    /// Repeat purchase days: distinct purchase days − 1.
    pub frequency: u32,
    /// Days from the first to the last purchase day.
    pub recency_days: u32,
    /// Days from the first purchase day to `as_of`.
    pub t_days: u32,
    /// Mean spend of the repeat purchase days (0 without repeats).
    pub monetary_cents: f64,
    /// Days from the last purchase day to `as_of`.
    pub days_since_last: u32,
}

/// Summarises the purchases with a local date on or before `as_of_day` (days since
/// 1970-01-01). `None` without such purchases.
pub fn summarize<'a>(
    purchases: impl IntoIterator<Item = &'a Purchase>,
    as_of_day: i64,
) -> Option<Summary> {
    let mut days: Vec<(i64, i64)> = purchases
        .into_iter()
        .map(|p| (p.local_day(), p.amount_cents))
        .collect();
    days.sort_unstable();
    summarize_sorted(days, as_of_day)
}

/// The same from (day, cents) pairs already sorted by day (later days are ignored), in
/// one pass: what the panel keeps per customer.
pub fn summarize_sorted(
    days: impl IntoIterator<Item = (i64, i64)>,
    as_of_day: i64,
) -> Option<Summary> {
    let mut days = days.into_iter().take_while(|(day, _)| *day <= as_of_day);
    let (first, first_cents) = days.next()?;
    let (mut purchases, mut spend_cents) = (1u32, first_cents);
    // Spend per distinct day, the first day excluded from the monetary mean.
    let (mut repeat_days, mut repeat_spend, mut previous) = (0u32, 0i64, first);
    for (day, cents) in days {
        purchases += 1;
        spend_cents += cents;
        if day != first {
            if day != previous {
                repeat_days += 1;
            }
            repeat_spend += cents;
        }
        previous = day;
    }
    let last = previous;
    let days_between = |from: i64, to: i64| u32::try_from(to - from).unwrap_or(u32::MAX);
    Some(Summary {
        purchases,
        spend_cents,
        frequency: repeat_days,
        recency_days: days_between(first, last),
        t_days: days_between(first, as_of_day),
        monetary_cents: if repeat_days == 0 {
            0.0
        } else {
            repeat_spend as f64 / f64::from(repeat_days)
        },
        days_since_last: days_between(last, as_of_day),
    })
}

/// Quintile scores 1–5, higher value → higher score, by mid-percentile: a value scores
/// 1 + ⌊5 · (below + tied / 2) / n⌋. Ties share a score, and a value everyone shares
/// scores 3 (no information is neither best nor worst: when all customers bought
/// today, nobody is "not recent").
pub fn quintile_scores(values: &[f64]) -> Vec<u8> {
    let mut sorted: Vec<f64> = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len().max(1);
    values
        .iter()
        .map(|v| {
            let below = sorted.partition_point(|s| s.total_cmp(v).is_lt());
            let upto = sorted.partition_point(|s| s.total_cmp(v).is_le());
            // Twice the mid-percentile's numerator, kept in integers.
            let twice_mid = 2 * below + (upto - below);
            (1 + 5 * twice_mid / (2 * n)).min(5) as u8
        })
        .collect()
}
