//! Traits for N synthetic customers (default 1,000,000; `TILL360_BENCH_CUSTOMERS`
//! overrides), simulated from the CDNOW BG/NBD and Gamma–Gamma parameters (in days
//! and cents). Prints the model fit time, the full computation, profiles/s, next to
//! a baseline from the same run: one pass computing only frequency, recency and
//! monetary value per customer.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use chrono::NaiveDate;
use till360_hub::traits::bgnbd::{BgNbd, Observation};
use till360_hub::traits::gamma_gamma::GammaGamma;
use till360_hub::traits::history::day_number;
use till360_hub::traits::rfm::summarize;
use till360_hub::traits::{compute, simulate};

fn main() {
    let customers: usize = std::env::var("TILL360_BENCH_CUSTOMERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let as_of = NaiveDate::from_ymd_opt(2026, 6, 30).expect("valid date");
    let truth = BgNbd {
        r: 0.24,
        alpha: 4.41 * 7.0,
        a: 0.79,
        b: 2.43,
    };
    let spend = GammaGamma {
        p: 6.25,
        q: 3.74,
        gamma: 1544.0,
    };

    let started = Instant::now();
    let histories = simulate::histories(1, customers, as_of, 730, &truth, &spend);
    let purchases: usize = histories.iter().map(|h| h.purchases.len()).sum();
    println!(
        "traits benchmark: {customers} customers, {purchases} purchases ({:.2} per customer), generated in {:.2?}",
        purchases as f64 / customers.max(1) as f64,
        started.elapsed()
    );

    // Baseline: frequency / recency / monetary only, one pass.
    let as_of_day = day_number(as_of);
    let started = Instant::now();
    let summaries: Vec<_> = histories
        .iter()
        .map(|h| summarize(&h.purchases, as_of_day))
        .collect();
    let baseline = started.elapsed();
    black_box(&summaries);

    // The fits alone, on the grouped data compute() builds.
    let started = Instant::now();
    let mut grouped: HashMap<(u32, u32, u32), u64> = HashMap::new();
    let mut spends = Vec::new();
    for s in summaries.iter().flatten() {
        *grouped
            .entry((s.frequency, s.recency_days, s.t_days))
            .or_default() += 1;
        if s.frequency > 0 {
            spends.push((s.frequency, s.monetary_cents));
        }
    }
    let mut observations: Vec<(Observation, u64)> = grouped
        .iter()
        .map(|(&(x, t_x, t), &n)| {
            (
                Observation {
                    x,
                    t_x: f64::from(t_x),
                    t: f64::from(t),
                },
                n,
            )
        })
        .collect();
    observations.sort_by(|a, b| {
        (a.0.x, a.0.t_x, a.0.t)
            .partial_cmp(&(b.0.x, b.0.t_x, b.0.t))
            .expect("finite")
    });
    let bgnbd = BgNbd::fit(&observations);
    let bgnbd_time = started.elapsed();
    let started = Instant::now();
    let gamma_gamma = GammaGamma::fit(&spends);
    let gg_time = started.elapsed();

    // Scoring with the fitted models: p_alive, expected purchases, expected spend, CLV.
    let started = Instant::now();
    let mut clv_total = 0.0;
    if let (Ok(m), Ok(g)) = (&bgnbd, &gamma_gamma) {
        for s in summaries.iter().flatten() {
            let o = Observation {
                x: s.frequency,
                t_x: f64::from(s.recency_days),
                t: f64::from(s.t_days),
            };
            let p_alive = m.p_alive(o);
            let e = m.expected_purchases(o, 365.0).unwrap_or(0.0);
            clv_total += e * g.expected_spend(s.frequency, s.monetary_cents) * 0.4 + p_alive * 0.0;
        }
    }
    let scoring = started.elapsed();
    black_box(clv_total);

    // Everything: summaries, RFM quintiles, both fits, scoring, behaviour.
    let started = Instant::now();
    let population = compute(&histories, as_of, 365, 40.0);
    let full = started.elapsed();
    black_box(&population);

    let rate = |d: std::time::Duration| customers as f64 / d.as_secs_f64().max(1e-9);
    println!(
        "baseline (frequency/recency/monetary only): {baseline:.2?} = {:.0} profiles/s",
        rate(baseline)
    );
    println!(
        "BG/NBD fit on {} distinct (x, t_x, T) of {customers} customers: {bgnbd_time:.2?} -> {bgnbd:?}",
        observations.len()
    );
    println!(
        "Gamma-Gamma fit on {} repeat customers: {gg_time:.2?} -> {gamma_gamma:?}",
        spends.len()
    );
    println!(
        "scoring (p_alive, expected purchases over 365 days, expected spend, CLV): {scoring:.2?} = {:.0} profiles/s",
        rate(scoring)
    );
    println!(
        "full traits end to end (summaries, RFM quintiles, both fits, scoring, behaviour): {full:.2?} = {:.0} profiles/s, {:.1}x the baseline time",
        rate(full),
        full.as_secs_f64() / baseline.as_secs_f64().max(1e-9)
    );
    println!(
        "truth: {truth:?} / {spend:?}; notes: {:?}",
        population.models.notes
    );
}
