use super::*;

const T0: i64 = 1_767_000_000_000 - 1_767_000_000_000 % DAY_MS;

fn coupon(n: u64, profile: &str, control: bool, at_ms: i64, store: &str) -> IssuedCoupon {
    IssuedCoupon {
        store: store.into(),
        till: "T1".into(),
        seq: n,
        control,
        code: (!control).then(|| format!("CODE{n}")),
        profile_id: Some(profile.into()),
        issued_at_ms: at_ms,
        receipt_seq: n,
    }
}

fn receipt(profile: &str, seq: u64, at_ms: i64, cents: i64) -> ProfileReceipt {
    ProfileReceipt {
        profile_id: profile.into(),
        store: "S9".into(),
        till: "T9".into(),
        seq,
        at_ms,
        total_cents: cents,
    }
}

fn scan(store: &str, seq: u64, code: &str, at_ms: i64, status: RedemptionStatus) -> Scan {
    Scan {
        store: store.into(),
        till: "T1".into(),
        seq,
        code: code.into(),
        at_ms,
        commit_seq: seq,
        status,
        receipt_total_cents: Some(1000),
    }
}

#[test]
fn counts_per_store_and_day_with_duplicates_forgeries_and_refusals() {
    let coupons = vec![
        coupon(1, "p1", false, T0 + 1000, "S1"),
        coupon(2, "p2", false, T0 + DAY_MS + 5, "S1"),
        coupon(3, "p3", true, T0 + DAY_MS + 6, "S2"),
    ];
    let scans = vec![
        scan("S2", 10, "CODE1", T0 + DAY_MS, RedemptionStatus::Genuine),
        scan(
            "S1",
            11,
            "CODE1",
            T0 + DAY_MS + 1,
            RedemptionStatus::Genuine,
        ),
        scan("S2", 12, "CODE9", T0 + DAY_MS + 2, RedemptionStatus::Forged),
        scan(
            "S1",
            13,
            "CODE2",
            T0 + 2 * DAY_MS,
            RedemptionStatus::Refused,
        ),
    ];
    let report = campaign_report(14, &coupons, &scans, &[]);
    assert_eq!(
        report.stores,
        vec![
            StoreRow {
                store: "S1".into(),
                issued: 2,
                duplicates: 1,
                refused: 1,
                ..StoreRow::default()
            },
            StoreRow {
                store: "S2".into(),
                control: 1,
                redeemed: 1,
                forged: 1,
                ..StoreRow::default()
            },
        ]
    );
    let day0 = T0 / DAY_MS;
    assert_eq!(
        report.days,
        vec![
            DayRow {
                day: day0,
                issued: 1,
                ..DayRow::default()
            },
            DayRow {
                day: day0 + 1,
                issued: 1,
                control: 1,
                redeemed: 1,
            },
        ]
    );
}

#[test]
fn the_spend_curve_accumulates_per_customer_within_the_window() {
    let coupons = vec![
        coupon(1, "a", false, T0, "S1"),
        coupon(2, "b", false, T0, "S1"),
        coupon(3, "c", true, T0, "S1"),
    ];
    let receipts = vec![
        receipt("a", 1, T0 + 3_600_000, 1000),
        receipt("b", 2, T0 + DAY_MS + 1, 3000),
        receipt("c", 3, T0 + 2 * DAY_MS + 1, 500),
        // After the 3-day window: not counted.
        receipt("a", 4, T0 + 3 * DAY_MS + 1, 9999),
    ];
    let report = campaign_report(3, &coupons, &[], &receipts);
    let points: Vec<(u32, f64, f64)> = report
        .spend
        .iter()
        .map(|p| (p.day, p.treated_cents, p.control_cents))
        .collect();
    assert_eq!(
        points,
        vec![
            (0, 500.0, 0.0),
            (1, 2000.0, 0.0),
            (2, 2000.0, 500.0),
            (3, 2000.0, 500.0),
        ]
    );
}

#[test]
fn too_few_customers_give_no_interval() {
    let mut coupons = Vec::new();
    for i in 0..30 {
        coupons.push(coupon(i, &format!("t{i}"), false, T0, "S1"));
    }
    for i in 0..29 {
        coupons.push(coupon(100 + i, &format!("c{i}"), true, T0, "S1"));
    }
    let report = campaign_report(7, &coupons, &[], &[]);
    assert_eq!(
        report.certainty,
        Certainty::TooFew {
            treated: 30,
            control: 29
        }
    );
}

#[test]
fn the_interval_is_welchs_at_95_percent() {
    // Treated: 15 customers spent 1000, 15 spent 3000 (mean 2000, sample variance
    // 30e6 / 29); control: 30 customers spent 1000 (variance 0). The difference is 1000
    // and its standard error sqrt(30e6 / 29 / 30) = 185.695...
    let mut coupons = Vec::new();
    let mut receipts = Vec::new();
    for i in 0..30u64 {
        let t = format!("t{i}");
        coupons.push(coupon(i, &t, false, T0, "S1"));
        receipts.push(receipt(&t, i, T0 + 1, if i % 2 == 0 { 1000 } else { 3000 }));
        let c = format!("c{i}");
        coupons.push(coupon(100 + i, &c, true, T0, "S1"));
        receipts.push(receipt(&c, 100 + i, T0 + 1, 1000));
    }
    let report = campaign_report(7, &coupons, &[], &receipts);
    let Certainty::Interval {
        difference_cents,
        low_cents,
        high_cents,
    } = report.certainty
    else {
        panic!("expected an interval, got {:?}", report.certainty);
    };
    let se = (30e6f64 / 29.0 / 30.0).sqrt();
    assert!((se - 185.695).abs() < 0.001, "{se}");
    assert!((difference_cents - 1000.0).abs() < 1e-9);
    assert!(
        (low_cents - (1000.0 - 1.959_964 * se)).abs() < 1e-6,
        "{low_cents}"
    );
    assert!(
        (high_cents - (1000.0 + 1.959_964 * se)).abs() < 1e-6,
        "{high_cents}"
    );
    assert!((low_cents - 636.05).abs() < 0.01, "{low_cents}");
}
