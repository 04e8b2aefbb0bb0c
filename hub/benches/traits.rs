//! Traits for N synthetic customers (default 1,000,000; `TILL360_BENCH_CUSTOMERS`
//! overrides), simulated from the CDNOW BG/NBD and Gamma–Gamma parameters (in days
//! and cents). Prints each candidate model's fit time, scoring, the model selection and
//! the full computation, next to a baseline from the same run: one pass computing only
//! frequency, recency and monetary value per customer.

use std::hint::black_box;
use std::time::Instant;

use chrono::NaiveDate;
use till360_hub::traits::bgnbd::Observation;
use till360_hub::traits::gamma_gamma::GammaGamma;
use till360_hub::traits::history::day_number;
use till360_hub::traits::model::ModelKind;
use till360_hub::traits::panel::Panel;
use till360_hub::traits::rfm::summarize;
use till360_hub::traits::selection::{describe, select, Candidate, Trainer};
use till360_hub::traits::{compute, simulate};

fn main() {
    let customers: usize = std::env::var("TILL360_BENCH_CUSTOMERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let as_of = NaiveDate::from_ymd_opt(2026, 6, 30).expect("valid date");
    let truth = simulate::CDNOW_DAYS;
    let spend = simulate::CDNOW_SPEND;

    let started = Instant::now();
    let histories = simulate::histories(1, customers, as_of, 730, &truth, &spend);
    let purchases: usize = histories.iter().map(|h| h.purchases.len()).sum();
    println!(
        "traits benchmark: {customers} customers, {purchases} purchases ({:.2} per customer), generated in {:.2?}",
        purchases as f64 / customers.max(1) as f64,
        started.elapsed()
    );

    let rate = |d: std::time::Duration| customers as f64 / d.as_secs_f64().max(1e-9);

    // Baseline: frequency / recency / monetary only, one pass.
    let as_of_day = day_number(as_of);
    let started = Instant::now();
    let summaries: Vec<_> = histories
        .iter()
        .map(|h| summarize(&h.purchases, as_of_day))
        .collect();
    let baseline = started.elapsed();
    black_box(&summaries);

    // The candidate purchase models, each fitted alone on the data compute() fits on
    // (every customer grouped by (x, t_x, T), or a systematic sample above
    // MAX_FIT_CUSTOMERS).
    let panel = Panel::new(&histories);
    let mut trainer = Trainer::new(&panel);
    let started = Instant::now();
    let (known, repeaters) = trainer.population(as_of_day);
    let (sample, weight) = trainer.fit_sample(as_of_day);
    let (groups, sampled) = (sample.len(), sample.iter().map(|(_, n)| n).sum::<u64>());
    println!(
        "observations of {known} customers ({repeaters} with a repeat day) in {:.2?}; fits take {sampled} of them (x{weight:.1}) in {groups} distinct (x, t_x, T)",
        started.elapsed()
    );
    let mut fits = Vec::new();
    for kind in ModelKind::ALL {
        let started = Instant::now();
        let fit = trainer.fit(kind, as_of_day);
        let took = started.elapsed();
        println!(
            "{} fit: {took:.2?} ({:.1}x the RFM pass) -> {}",
            kind.label(),
            took.as_secs_f64() / baseline.as_secs_f64().max(1e-9),
            fit.as_ref().map_or_else(|e| e.to_string(), describe)
        );
        fits.push(fit);
    }
    let started = Instant::now();
    let gamma_gamma = GammaGamma::fit(
        &summaries
            .iter()
            .flatten()
            .filter(|s| s.frequency > 0)
            .map(|s| (s.frequency, s.monetary_cents))
            .collect::<Vec<_>>(),
    );
    let gg_time = started.elapsed();
    println!("Gamma-Gamma fit: {gg_time:.2?} -> {gamma_gamma:?}");

    // Scoring every customer with each fitted model: p_alive and expected purchases.
    for fit in fits.iter().flatten() {
        let started = Instant::now();
        let mut total = 0.0;
        for s in summaries.iter().flatten() {
            let o = Observation {
                x: s.frequency,
                t_x: f64::from(s.recency_days),
                t: f64::from(s.t_days),
            };
            total += fit.p_alive(o) * 0.0 + fit.expected_purchases(o, 365.0).unwrap_or(0.0);
        }
        let took = started.elapsed();
        black_box(total);
        println!(
            "{} scoring (p_alive, expected purchases over 365 days): {took:.2?} = {:.0} profiles/s",
            fit.kind().label(),
            rate(took)
        );
    }

    // The selection: every candidate fitted on the calibration window minus its last
    // 365 days, corrections learned, all scored on those days.
    let started = Instant::now();
    let selection = select(&mut trainer, as_of_day, 365);
    println!(
        "model selection ({} candidates, fits at 2 more dates, scoring): {:.2?} -> {}",
        Candidate::all().len(),
        started.elapsed(),
        selection.as_ref().map_or_else(
            |e| e.clone(),
            |s| format!(
                "{} (MAE {:.1} % below BG/NBD's)",
                s.chosen, s.mae_gain_percent
            )
        )
    );

    // Everything: summaries, RFM quintiles, selection, fits, scoring, intervals, behaviour.
    let started = Instant::now();
    let population = compute(&histories, as_of, 365, 40.0);
    let full = started.elapsed();
    black_box(&population);

    println!(
        "baseline (frequency/recency/monetary only): {baseline:.2?} = {:.0} profiles/s",
        rate(baseline)
    );
    println!(
        "full traits end to end (summaries, RFM quintiles, model selection, fits, scoring, intervals, behaviour): {full:.2?} = {:.0} profiles/s, {:.1}x the baseline time",
        rate(full),
        full.as_secs_f64() / baseline.as_secs_f64().max(1e-9)
    );
    println!(
        "truth: {truth:?} / {spend:?}; notes: {:?}",
        population.models.notes
    );
}
