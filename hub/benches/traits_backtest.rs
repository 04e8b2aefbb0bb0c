//! The candidate purchase models back-tested on synthetic data sets, each printed as
//! `till360-hub traits backtest` prints it, BG/NBD (the baseline) first: realistic
//! shoppers (heterogeneous rates, regular and irregular buyers, dropout, seasonality,
//! promotions, a sale-only segment, lapses; `traits::shoppers`) at several splits and
//! horizons, a grocer's mostly regular shoppers (where the Erlang-k models should pay
//! off), shoppers with personal coupons (where the coupon covariates may), and
//! customers drawn from BG/NBD itself (where BG/NBD is the truth).
//! `TILL360_BENCH_CUSTOMERS` sets the size (default 20,000). Public data (CDNOW) goes
//! through the hub itself: see the README, "Predictions".

use std::time::Instant;

use chrono::NaiveDate;
use till360_hub::traits::backtest::{backtest, write_table};
use till360_hub::traits::history::CustomerHistory;
use till360_hub::traits::shoppers::{self, ShopperMix};
use till360_hub::traits::simulate;

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
}

fn run(name: &str, histories: &[CustomerHistory], split: NaiveDate, horizon_days: u32) {
    // TILL360_BENCH_ONLY=TEXT runs only the data sets whose name contains TEXT.
    if std::env::var("TILL360_BENCH_ONLY").is_ok_and(|only| !name.contains(&only)) {
        return;
    }
    let started = Instant::now();
    let report = backtest(histories, split, horizon_days);
    println!("== {name}: {} customers in the data", histories.len());
    let mut out = std::io::stdout().lock();
    write_table(&report, &mut out).expect("stdout");
    let baseline = report.models.iter().find(|m| m.model == "bgnbd");
    let chosen = report
        .chosen
        .as_ref()
        .and_then(|c| report.models.iter().find(|m| &m.model == c));
    if let (Some(b), Some(c)) = (baseline, chosen) {
        println!(
            "-> chosen {}: MAE {:.4} vs BG/NBD {:.4} ({:+.1} %), total {:+.1} % vs BG/NBD {:+.1} %; in {:.2?}\n",
            c.model,
            c.mae,
            b.mae,
            (c.mae - b.mae) / b.mae * 100.0,
            c.total_error_percent,
            b.total_error_percent,
            started.elapsed()
        );
    }
}

fn main() {
    let customers: usize = std::env::var("TILL360_BENCH_CUSTOMERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let mix = ShopperMix::default();
    let realistic = shoppers::histories(1, customers, date(2023, 1, 1), date(2025, 12, 31), &mix);
    run(
        "realistic shoppers, 26 weeks after a mid-year split",
        &realistic,
        date(2025, 6, 30),
        182,
    );
    run(
        "realistic shoppers, a year after a year-end split",
        &realistic,
        date(2024, 12, 31),
        365,
    );
    run(
        "realistic shoppers, 13 weeks over Christmas",
        &realistic,
        date(2025, 9, 30),
        91,
    );
    let other = shoppers::histories(2, customers, date(2024, 1, 1), date(2025, 12, 31), &mix);
    run(
        "realistic shoppers (another seed, 2 years), 26 weeks",
        &other,
        date(2025, 6, 30),
        182,
    );
    // A grocer's customers: most buy on a rhythm (every other week or so), few once.
    let grocer = ShopperMix {
        one_time: 0.10,
        sale_only: 0.03,
        lapsing: 0.05,
        regular: 0.60,
        median_gap_days: 20.0,
        ..ShopperMix::default()
    };
    let regular = shoppers::histories(4, customers, date(2024, 1, 1), date(2025, 12, 31), &grocer);
    run(
        "a grocer's regular shoppers (60 % on a rhythm), 13 weeks",
        &regular,
        date(2025, 6, 30),
        91,
    );

    // Personal coupons at half the store visits; a coupon brings a customer who redeems
    // back before it expires, and those who redeem stay a little longer.
    let couponed = ShopperMix {
        coupon_share: 0.5,
        coupon_pull: 1.0,
        coupon_loyalty: 1.0,
        ..ShopperMix::default()
    };
    let coupons = shoppers::histories(
        5,
        customers,
        date(2023, 1, 1),
        date(2025, 12, 31),
        &couponed,
    );
    run(
        "shoppers with personal coupons (printed at half the visits), 26 weeks",
        &coupons,
        date(2025, 6, 30),
        182,
    );
    // The same customers with their coupons hidden: what the coupon covariates add.
    let hidden: Vec<CustomerHistory> = coupons
        .into_iter()
        .map(|h| CustomerHistory {
            coupons: Vec::new(),
            ..h
        })
        .collect();
    run(
        "the same shoppers, their coupons hidden (no coupon covariates), 26 weeks",
        &hidden,
        date(2025, 6, 30),
        182,
    );

    let truth = simulate::CDNOW_DAYS;
    let spend = simulate::CDNOW_SPEND;
    let drawn = simulate::histories(3, customers, date(2025, 12, 31), 730, &truth, &spend);
    run(
        "customers drawn from BG/NBD itself, 26 weeks",
        &drawn,
        date(2025, 6, 30),
        182,
    );
}
