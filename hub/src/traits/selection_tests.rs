//! The panel, the learned correction, scoring, selection without peeking and the
//! back-test report.

use chrono::NaiveDate;
use till360_shared::Timestamp;

use super::backtest::{backtest, write_table};
use super::bgnbd::Observation;
use super::correction::{Correction, FEATURES, FEATURE_NAMES};
use super::history::{day_number, Channel, CouponIssue, CustomerHistory, Purchase, MS_PER_DAY};
use super::model::ModelKind;
use super::panel::{group, Covariates, Panel};
use super::rfm::summarize;
use super::selection::{
    learn_window, score, select, winner, Candidate, Trainer, Window, PARETO_GGG,
};
use super::shoppers::{self, ShopperMix};
use super::simulate::{self, Rng};

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn on(date: NaiveDate, online: bool, cents: i64, discounted: i64) -> Purchase {
    Purchase {
        at: Timestamp::from_unix_ms(day_number(date) * MS_PER_DAY + 10 * 3_600_000, 0),
        channel: if online {
            Channel::Online
        } else {
            Channel::Store
        },
        store: (!online).then(|| "S001".to_string()),
        amount_cents: cents,
        discounted_cents: discounted,
        categories: Vec::new(),
    }
}

fn customer(purchases: Vec<Purchase>) -> CustomerHistory {
    CustomerHistory {
        profile_id: "p".into(),
        purchases,
        ..CustomerHistory::default()
    }
}

#[test]
fn the_panel_agrees_with_the_rfm_summary_and_never_reads_past_its_day() {
    // Two purchases on 3 March count as one day; the order of purchases does not matter.
    let h = customer(vec![
        on(day(2026, 3, 10), true, 500, 500),
        on(day(2026, 3, 1), false, 1_000, 0),
        on(day(2026, 3, 3), false, 300, 0),
        on(day(2026, 3, 3), false, 200, 100),
        on(day(2026, 4, 2), false, 700, 0),
    ]);
    let panel = Panel::new(std::slice::from_ref(&h));
    for as_of in [
        day(2026, 2, 28),
        day(2026, 3, 3),
        day(2026, 3, 20),
        day(2026, 5, 1),
    ] {
        let d = day_number(as_of);
        let expected = summarize(&h.purchases, d)
            .map(|s| (s.frequency, f64::from(s.recency_days), f64::from(s.t_days)));
        let actual = panel.observation(0, d).map(|o| (o.x, o.t_x, o.t));
        assert_eq!(actual, expected, "as of {as_of}");
        assert_eq!(
            panel.summary(0, d),
            summarize(&h.purchases, d),
            "as of {as_of}"
        );
    }
    // Distinct purchase days 1, 3 and 10 March and 2 April: gaps of 2, 7 and 23 days.
    for (as_of, gaps) in [
        (day(2026, 3, 2), vec![]),
        (day(2026, 3, 3), vec![2.0]),
        (day(2026, 3, 20), vec![2.0, 7.0]),
        (day(2026, 5, 1), vec![2.0, 7.0, 23.0]),
    ] {
        let expected: f64 = gaps.iter().map(|g: &f64| g.ln()).sum();
        let actual = panel.sum_ln_gaps(0, day_number(as_of));
        assert!(
            (actual - expected).abs() < 1e-12,
            "as of {as_of}: {actual} ≠ {expected}"
        );
    }
    // Purchase days after 3 March up to 2 April: 10 March and 2 April.
    assert_eq!(
        panel.purchase_days_between(0, day_number(day(2026, 3, 3)), day_number(day(2026, 4, 2))),
        2
    );
    assert_eq!(
        panel.purchase_days_between(0, day_number(day(2026, 3, 2)), day_number(day(2026, 3, 3))),
        1,
        "two purchases on one day are one purchase day"
    );
    // Covariates as of 3 March: 3 purchases, none online; 100 of 1,500 cents discounted.
    let c = panel.covariates(0, day_number(day(2026, 3, 3)));
    assert_eq!(c.online_share, 0.0);
    assert!((c.sale_share - 100.0 / 1_500.0).abs() < 1e-12);
    let c = panel.covariates(0, day_number(day(2026, 3, 10)));
    assert!((c.online_share - 0.25).abs() < 1e-12);
    assert_eq!(panel.first_day(), Some(day_number(day(2026, 3, 1))));
    assert_eq!(panel.last_day(), Some(day_number(day(2026, 4, 2))));
}

#[test]
fn grouping_counts_identical_observations_in_a_fixed_order() {
    let o = |x, t_x, t| super::bgnbd::Observation { x, t_x, t };
    let grouped = group(
        [
            o(1, 2.0, 9.0),
            o(0, 0.0, 3.0),
            o(1, 2.0, 9.0),
            o(1, 1.0, 9.0),
        ]
        .into_iter(),
    );
    assert_eq!(
        grouped,
        vec![
            (o(0, 0.0, 3.0), 1),
            (o(1, 1.0, 9.0), 1),
            (o(1, 2.0, 9.0), 2)
        ]
    );
}

#[test]
fn the_correction_recovers_known_weights_and_stays_put_without_signal() {
    let mut rng = Rng::new(5);
    let rows: Vec<([f64; FEATURES], f64)> = (0..2_000)
        .map(|_| {
            let f: [f64; FEATURES] = std::array::from_fn(|_| rng.uniform() * 3.0);
            (f, 1.3 * f[0] - 0.4 * f[1] + 0.5 * f[6])
        })
        .collect();
    let c = Correction::learn(&rows).unwrap();
    let expected = [1.3, -0.4, 0.0, 0.0, 0.0, 0.0, 0.5, 0.0];
    for (w, e) in c.weights.iter().zip(expected) {
        assert!((w - e).abs() < 0.01, "{:?}", c.weights);
    }
    // The model is right already: the correction leaves it alone.
    let exact: Vec<_> = rows.iter().map(|(f, _)| (*f, f[0])).collect();
    let c = Correction::learn(&exact).unwrap();
    for (w, e) in c.weights.iter().zip(Correction::IDENTITY.weights) {
        assert!((w - e).abs() < 1e-6, "{:?}", c.weights);
    }
    // All-zero features: only the shrinkage speaks, and it says "no correction".
    let zeros = vec![([0.0; FEATURES], 1.0); 10];
    assert_eq!(Correction::learn(&zeros), None);
    assert_eq!(Correction::learn(&[]), None);
    // Never a negative prediction.
    let negative = Correction {
        weights: std::array::from_fn(|i| if i == 0 { -1.0 } else { 0.0 }),
    };
    assert_eq!(negative.apply(&[2.0; FEATURES]), 0.0);
}

#[test]
fn scores_by_hand() {
    // (predicted, actual)
    let pairs = [(1.0, 0.0), (2.0, 4.0), (0.5, 0.0), (3.0, 3.0), (0.0, 1.0)];
    let s = score("m".into(), &pairs, 1);
    assert!((s.mae - (1.0 + 2.0 + 0.5 + 0.0 + 1.0) / 5.0).abs() < 1e-12);
    assert!((s.rmse - ((1.0 + 4.0 + 0.25 + 0.0 + 1.0) / 5.0f64).sqrt()).abs() < 1e-12);
    assert!((s.predicted_total - 6.5).abs() < 1e-12);
    assert_eq!(s.actual_total, 8);
    assert!((s.total_error_percent - (6.5 - 8.0) / 8.0 * 100.0).abs() < 1e-9);
    // Top 10 % of 5 is one customer: the top prediction (3.0) bought 3; the actual top
    // is 4, so it is a miss.
    assert_eq!(s.top_decile_precision, 0.0);
    let pairs = [(1.0, 0.0), (2.0, 4.0), (0.5, 0.0)];
    assert_eq!(score("m".into(), &pairs, 0).top_decile_precision, 1.0);
    // Nobody bought: no one is in the actual top, so no hit.
    assert_eq!(
        score("m".into(), &[(1.0, 0.0), (0.0, 0.0)], 0).top_decile_precision,
        0.0
    );
    assert_eq!(s.unconverged, 1);
}

fn simulated(seed: u64, customers: usize, end: NaiveDate) -> Vec<CustomerHistory> {
    let (truth, spend) = (simulate::CDNOW_DAYS, simulate::CDNOW_SPEND);
    simulate::histories(seed, customers, end, 730, &truth, &spend)
}

#[test]
fn selection_looks_at_nothing_after_its_day() {
    let as_of = day(2026, 6, 30);
    let histories = simulated(3, 700, day(2026, 12, 31));
    let mut cut = histories.clone();
    for h in &mut cut {
        h.purchases.retain(|p| p.local_day() <= day_number(as_of));
    }
    let horizon = 90;
    let with_future = {
        let panel = Panel::new(&histories);
        select(&mut Trainer::new(&panel), day_number(as_of), horizon).unwrap()
    };
    let without = {
        let panel = Panel::new(&cut);
        select(&mut Trainer::new(&panel), day_number(as_of), horizon).unwrap()
    };
    assert_eq!(with_future, without);
    assert_eq!(with_future.holdout_days, 90);
    // A year and a half of data: the same season a year before.
    assert_eq!(with_future.calibration_end, day(2025, 6, 30));
    // Half a year of data before that window: too little to learn a 90-day correction
    // for it, so only the uncorrected candidates are judged, and Pareto/GGG (few
    // customers: it is sampled).
    let names: Vec<&str> = with_future
        .scores
        .iter()
        .map(|s| s.model.as_str())
        .collect();
    let mut expected: Vec<&str> = ModelKind::ALL.iter().map(|k| k.name()).collect();
    expected.push(PARETO_GGG);
    assert_eq!(names, expected, "{:?}", with_future.skipped);
    let ggg = with_future.scores.last().unwrap();
    assert!(ggg.parameters.starts_with("t "), "{ggg:?}");
    assert!(ggg.mae.is_finite() && ggg.predicted_total > 0.0, "{ggg:?}");
    assert!(with_future.scores.iter().all(|s| !s.model.contains('+')));
    assert_eq!(with_future.skipped.len(), ModelKind::ALL.len());
    for why in &with_future.skipped {
        assert!(
            why.contains("+correction: the data before 2025-06-30 are too short to learn a 90-day correction"),
            "{why}"
        );
    }
    assert_eq!(with_future.scores[0].model, "bgnbd");
    assert_eq!(
        with_future.chosen,
        winner(&with_future.scores).unwrap().model
    );
}

#[test]
fn corrected_candidates_are_judged_when_their_correction_window_is_as_long_as_the_one_they_predict()
{
    // Two years of data, 30 days: the window is December a year before, and the 11
    // months before it hold a 30-day correction.
    let histories = simulated(3, 700, day(2026, 12, 31));
    let panel = Panel::new(&histories);
    let selection = select(&mut Trainer::new(&panel), day_number(day(2026, 12, 31)), 30).unwrap();
    assert_eq!(selection.holdout_days, 30);
    assert_eq!(selection.calibration_end, day(2025, 12, 31));
    assert_eq!(
        selection.scores.len(),
        Candidate::all().len() + 1,
        "{:?}",
        selection.skipped
    );
    assert!(selection.skipped.is_empty(), "{:?}", selection.skipped);
}

#[test]
fn a_backtest_scores_every_candidate_against_what_the_customers_then_did() {
    let split = day(2026, 6, 30);
    let horizon = 120;
    let histories = simulated(11, 1_000, day(2026, 10, 28));
    let report = backtest(&histories, split, horizon);
    assert_eq!(report.holdout_end, day(2026, 10, 28));
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    // Independently: customers known at the split and their purchase days after it.
    let (s, e) = (day_number(split), day_number(split) + i64::from(horizon));
    let mut customers = 0;
    let mut actual = 0u64;
    for h in &histories {
        let mut days: Vec<i64> = h.purchases.iter().map(Purchase::local_day).collect();
        days.sort_unstable();
        days.dedup();
        if days.first().is_some_and(|&d| d <= s) {
            customers += 1;
            actual += days.iter().filter(|&&d| d > s && d <= e).count() as u64;
        }
    }
    assert_eq!(report.customers, customers);
    assert_eq!(report.models[0].model, "bgnbd");
    for m in &report.models {
        assert_eq!(
            (m.customers, m.actual_total),
            (customers, actual),
            "{}",
            m.model
        );
        assert!(m.mae.is_finite() && m.rmse >= m.mae, "{m:?}");
    }
    // The data are BG/NBD's own: its total is close to the truth.
    let bgnbd = &report.models[0];
    assert!(bgnbd.total_error_percent.abs() < 15.0, "{bgnbd:?}");
    let chosen = report.chosen.clone().unwrap();
    assert!(report.models.iter().any(|m| m.model == chosen));

    let mut table = Vec::new();
    write_table(&report, &mut table).unwrap();
    let table = String::from_utf8(table).unwrap();
    eprintln!("{table}");
    assert!(
        table.contains("model") && table.contains("top 10%"),
        "{table}"
    );
    // The chosen model is marked in the table and in the hub's own back-test below it.
    let marked: Vec<&str> = table.lines().filter(|l| l.ends_with(" *")).collect();
    assert_eq!(marked.len(), 2, "{table}");
    assert!(marked[0].starts_with(&format!("{chosen} ")), "{table}");
    assert!(marked[1].starts_with(&format!("  {chosen} ")), "{table}");
    assert!(
        table.contains("the hub's own back-test before the split"),
        "{table}"
    );

    // A hold-out past the data is flagged.
    let early = backtest(&histories, split, 400);
    assert!(
        early.warnings.iter().any(|w| w.contains("incomplete")),
        "{:?}",
        early.warnings
    );
}

#[test]
fn the_window_to_learn_from_is_the_same_season_a_year_before_when_the_data_reach() {
    let h = customer(vec![
        on(day(2024, 1, 1), false, 100, 0),
        on(day(2025, 12, 1), false, 100, 0),
    ]);
    let panel = Panel::new(&[h]);
    let d = |y, m, dd| day_number(day(y, m, dd));
    // Two years back: a year before, the horizon long.
    assert_eq!(
        learn_window(&panel, d(2025, 6, 30), 90),
        Some(Window {
            start: d(2024, 6, 30),
            days: 90
        })
    );
    // Not 90 days of data before a year back: the end of the calibration window, at
    // most a third of the span (182 days: 60).
    assert_eq!(
        learn_window(&panel, d(2024, 7, 1), 90),
        Some(Window {
            start: d(2024, 7, 1) - 60,
            days: 60
        })
    );
    // A horizon over a year: the end of the calibration window (546 days: 182).
    assert_eq!(
        learn_window(&panel, d(2025, 6, 30), 400),
        Some(Window {
            start: d(2025, 6, 30) - 182,
            days: 182
        })
    );
    // Too little data to hold anything out; nothing before the first purchase.
    assert_eq!(learn_window(&panel, d(2024, 1, 20), 90), None);
    assert_eq!(learn_window(&panel, d(2023, 6, 1), 90), None);
}

#[test]
fn the_winner_has_the_lowest_mae_among_those_with_a_sound_total() {
    let scored = |model: &str, mae: f64, total: f64| {
        let mut s = score(model.into(), &[(1.0, 1.0)], 0);
        s.mae = mae;
        s.total_error_percent = total;
        s
    };
    let scores = vec![
        scored("bgnbd", 0.50, 4.0),
        scored("shrunk", 0.40, -22.0),
        scored("mbgnbd", 0.45, -9.5),
        scored("pareto_nbd", 0.45, 2.0),
    ];
    // "shrunk" has the lowest MAE but misses the total by 22 %; of the equals, the first.
    assert_eq!(winner(&scores).unwrap().model, "mbgnbd");
    // Nobody within 10 %: the lowest MAE.
    let off: Vec<_> = scores
        .iter()
        .map(|s| scored(&s.model, s.mae, 30.0 + s.total_error_percent.abs()))
        .collect();
    assert_eq!(winner(&off).unwrap().model, "shrunk");
    // Ties go to the baseline, which comes first.
    let tie = vec![scored("bgnbd", 0.4, 1.0), scored("pareto_nbd", 0.4, 0.0)];
    assert_eq!(winner(&tie).unwrap().model, "bgnbd");
    assert!(winner(&[]).is_none());
}

#[test]
fn predict_is_p_alive_and_expected_purchases_for_every_model() {
    use super::bgnbd::Observation;
    use super::model::{ModelKind, PurchaseModel};
    let histories = simulated(5, 400, day(2026, 6, 30));
    let panel = Panel::new(&histories);
    let as_of = day_number(day(2026, 6, 30));
    let (_, grouped) = panel.observations(as_of);
    let sum_ln_gaps = (0..panel.len()).map(|i| panel.sum_ln_gaps(i, as_of)).sum();
    for kind in ModelKind::ALL {
        let m = PurchaseModel::fit(kind, &grouped, sum_ln_gaps).unwrap();
        assert_eq!(m.kind(), kind);
        for o in [
            Observation {
                x: 0,
                t_x: 0.0,
                t: 40.0,
            },
            Observation {
                x: 3,
                t_x: 100.0,
                t: 300.0,
            },
            Observation {
                x: 12,
                t_x: 299.0,
                t: 300.0,
            },
        ] {
            let (p, e) = m.predict(o, 90.0);
            assert_eq!(p, m.p_alive(o), "{kind:?} {o:?}");
            assert_eq!(e, m.expected_purchases(o, 90.0), "{kind:?} {o:?}");
        }
    }
}

#[test]
fn pareto_ggg_is_left_out_above_its_sampler_limit_and_says_why() {
    use super::pareto_ggg::MAX_CUSTOMERS;
    let end = day(2026, 6, 30);
    let histories = simulated(9, MAX_CUSTOMERS + 1, end);
    let panel = Panel::new(&histories);
    let mut trainer = Trainer::new(&panel);
    let (known, _) = trainer.population(day_number(end));
    assert!(known > MAX_CUSTOMERS, "{known}");
    let why = trainer.score_pareto_ggg(day_number(end), 90).unwrap_err();
    assert_eq!(
        why,
        format!("{known} customers are more than its sampler's limit of {MAX_CUSTOMERS}")
    );
}

#[test]
fn covariates_count_the_distinct_categories_bought_so_far() {
    let with = |date: NaiveDate, categories: &[&str]| Purchase {
        categories: categories.iter().map(|c| (c.to_string(), 100)).collect(),
        ..on(date, false, 100 * categories.len() as i64, 0)
    };
    let h = customer(vec![
        with(day(2026, 3, 10), &["bread", "wine"]),
        with(day(2026, 3, 1), &["wine", "cheese"]),
        with(day(2026, 3, 3), &["wine"]),
        with(day(2026, 4, 2), &[]),
    ]);
    let panel = Panel::new(std::slice::from_ref(&h));
    for (as_of, categories) in [
        (day(2026, 2, 28), 0),
        (day(2026, 3, 1), 2),
        (day(2026, 3, 9), 2),
        (day(2026, 3, 10), 3),
        (day(2026, 5, 1), 3),
    ] {
        let c = panel.covariates(0, day_number(as_of));
        assert_eq!(c.categories, categories, "as of {as_of}");
    }
}

#[test]
fn covariates_take_the_share_of_coupons_redeemed_and_those_in_hand_so_far() {
    let d = |m, dd| day_number(day(2026, m, dd));
    let coupon = |issued, redeemed| CouponIssue {
        issued_day: issued,
        expires_day: issued + 28,
        redeemed_day: redeemed,
    };
    let h = CustomerHistory {
        coupons: vec![
            coupon(d(3, 20), None),
            coupon(d(3, 1), Some(d(3, 10))),
            coupon(d(3, 5), Some(d(3, 25))),
        ],
        ..customer(vec![on(day(2026, 3, 1), false, 100, 0)])
    };
    let panel = Panel::new(std::slice::from_ref(&h));
    for (as_of, response, live) in [
        (d(2, 28), 0.0, 0),
        (d(3, 1), 0.0, 1),
        (d(3, 9), 0.0, 2),
        (d(3, 10), 0.5, 1),
        (d(3, 19), 0.5, 1),
        (d(3, 20), 1.0 / 3.0, 2),
        (d(3, 25), 2.0 / 3.0, 1),
        (d(4, 16), 2.0 / 3.0, 1),
        (d(4, 17), 2.0 / 3.0, 0),
    ] {
        let c = panel.covariates(0, as_of);
        assert!(
            (c.coupon_response - response).abs() < 1e-12,
            "day {as_of}: {}",
            c.coupon_response
        );
        assert_eq!(c.live_coupons, live, "day {as_of}");
    }
}

/// Where a coupon brings a customer who redeems back before it expires, the corrected
/// model learns a positive weight for a coupon in hand from a customer who redeems, and
/// raises their prediction over an identical customer's who holds none; with the
/// coupons hidden, it learns nothing from them (their weights stay the identity's).
/// The gain is small here (the shoppers' past visits already show most of it), so the
/// test asks only that it costs nothing.
#[test]
fn the_correction_reads_coupon_response_and_the_coupons_in_hand() {
    let pulled = ShopperMix {
        coupon_share: 0.5,
        coupon_pull: 1.0,
        ..ShopperMix::default()
    };
    let histories = shoppers::histories(21, 6_000, day(2024, 1, 1), day(2026, 6, 30), &pulled);
    let hidden: Vec<CustomerHistory> = histories
        .iter()
        .map(|h| CustomerHistory {
            coupons: Vec::new(),
            ..h.clone()
        })
        .collect();
    let (as_of, horizon) = (day_number(day(2025, 12, 31)), 182);
    let candidate = Candidate {
        kind: ModelKind::BgNbd,
        corrected: true,
    };
    let run = |histories: &[CustomerHistory]| {
        let panel = Panel::new(histories);
        let window = learn_window(&panel, as_of, horizon);
        assert_eq!(window.map(|w| w.days), Some(horizon));
        let mut trainer = Trainer::new(&panel);
        let predictor = trainer.train(candidate, as_of, window).unwrap();
        let score = trainer.score(&predictor, as_of, horizon);
        (predictor, score)
    };
    let (seen, seen_score) = run(&histories);
    let (blind, blind_score) = run(&hidden);
    let in_hand = FEATURE_NAMES
        .iter()
        .position(|n| *n == "coupon_response*live_coupons")
        .unwrap();
    let response = FEATURE_NAMES
        .iter()
        .position(|n| *n == "expected*coupon_response")
        .unwrap();
    let weights = |p: &super::selection::Predictor| p.correction.unwrap().weights;
    assert_eq!(weights(&blind)[in_hand], 0.0);
    assert_eq!(weights(&blind)[response], 0.0);
    assert!(
        weights(&seen)[in_hand] > 0.03,
        "weights {:?}",
        weights(&seen)
    );
    let o = Observation {
        x: 4,
        t_x: 300.0,
        t: 310.0,
    };
    let holder = Covariates {
        coupon_response: 1.0,
        live_coupons: 1,
        ..Covariates::default()
    };
    let predict = |c| seen.expected_purchases(o, c, 182.0).unwrap();
    assert!(predict(holder) > predict(Covariates::default()) + 0.03);
    assert!(
        seen_score.mae <= blind_score.mae * 1.005,
        "MAE {:.4} with coupons, {:.4} without",
        seen_score.mae,
        blind_score.mae
    );
}
