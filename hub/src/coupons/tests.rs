//! The pure KPI functions over hand-made rows.

use super::kpis::*;
use super::ledger::RedemptionStatus;

const DAY: i64 = 86_400_000;
const T0: i64 = 1_767_000_000_000;

fn coupon(store: &str, seq: u64, control: bool, profile: Option<&str>, at: i64) -> IssuedCoupon {
    IssuedCoupon {
        store: store.into(),
        till: "T01".into(),
        seq,
        control,
        code: (!control).then(|| format!("code-{store}-{seq}")),
        profile_id: profile.map(str::to_string),
        issued_at_ms: at,
        // The receipt the coupon was printed on is the event before it.
        receipt_seq: seq - 1,
    }
}

/// A scan committed in the order of its till's timestamp (an honest clock).
fn scan(store: &str, seq: u64, code: &str, at: i64, status: RedemptionStatus) -> Scan {
    Scan {
        store: store.into(),
        till: "T01".into(),
        seq,
        code: code.into(),
        at_ms: at,
        commit_seq: (at - T0 + DAY) as u64,
        status,
        receipt_total_cents: Some(1_000 * seq as i64),
    }
}

fn receipt(profile: &str, store: &str, seq: u64, at: i64, cents: i64) -> ProfileReceipt {
    ProfileReceipt {
        profile_id: profile.into(),
        store: store.into(),
        till: "T01".into(),
        seq,
        at_ms: at,
        total_cents: cents,
    }
}

#[test]
fn the_earliest_counting_scan_of_a_code_is_the_redemption() {
    use RedemptionStatus::*;
    let scans = vec![
        scan("S2", 7, "A", T0 + 50, Genuine),
        scan("S1", 3, "A", T0 + 10, Unchecked),
        // Same instant: the store name breaks the tie.
        scan("S3", 1, "B", T0, Genuine),
        scan("S2", 1, "B", T0, Genuine),
        scan("S1", 9, "A", T0 + 5, Forged),
        scan("S1", 10, "C", T0, Refused),
    ];
    let counted = tally(&scans);
    let firsts: Vec<(&str, &str, u64)> = counted
        .redemptions
        .iter()
        .map(|s| (s.code.as_str(), s.store.as_str(), s.seq))
        .collect();
    assert_eq!(firsts, vec![("A", "S1", 3), ("B", "S2", 1)]);
    let dups: Vec<(&str, u64)> = counted
        .duplicates
        .iter()
        .map(|s| (s.store.as_str(), s.seq))
        .collect();
    assert_eq!(dups, vec![("S2", 7), ("S3", 1)]);

    // The same scans in reverse give the same answer.
    let mut reversed = scans.clone();
    reversed.reverse();
    let again = tally(&reversed);
    assert_eq!(again.redemptions, counted.redemptions);
    assert_eq!(again.duplicates, counted.duplicates);
}

#[test]
fn a_backdated_scan_loses_to_the_scan_the_hub_committed_first() {
    use RedemptionStatus::*;
    let honest = Scan {
        commit_seq: 1,
        ..scan("S1", 4, "A", T0, Genuine)
    };
    // Committed later, but its till's clock says a day earlier.
    let backdated = Scan {
        commit_seq: 2,
        ..scan("S2", 9, "A", T0 - DAY, Genuine)
    };
    for scans in [
        vec![honest.clone(), backdated.clone()],
        vec![backdated.clone(), honest.clone()],
    ] {
        let counted = tally(&scans);
        assert_eq!(counted.redemptions, vec![&honest]);
        assert_eq!(counted.duplicates, vec![&backdated]);
    }
}

#[test]
fn means_round_half_away_from_zero() {
    assert_eq!(mean_cents(0, 0), 0);
    assert_eq!(mean_cents(4000, 2), 2000);
    assert_eq!(mean_cents(5, 2), 3);
    assert_eq!(mean_cents(-5, 2), -3);
    assert_eq!(mean_cents(4, 3), 1);
    assert_eq!(mean_cents(5, 3), 2);
    assert_eq!(mean_cents(-4, 3), -1);
}

#[test]
fn uplift_on_a_hand_computed_example() {
    let coupons = vec![
        coupon("S1", 2, false, Some("p-a"), T0),
        // p-a's second coupon does not start a second window.
        coupon("S1", 6, false, Some("p-a"), T0 + 2 * DAY),
        coupon("S1", 4, false, Some("p-b"), T0 + DAY),
        coupon("S2", 2, true, Some("p-c"), T0),
        // No profile: in the counts, not in the uplift.
        coupon("S2", 4, false, None, T0),
    ];
    let receipts = vec![
        // The issuing receipt of p-a's first coupon (same ms as the issue: excluded anyway).
        receipt("p-a", "S1", 1, T0 - 1, 7777),
        receipt("p-a", "S1", 3, T0 + DAY, 2000),
        receipt("p-a", "S2", 9, T0 + 7 * DAY, 1000),
        // Out of window (after 7 days) and before the coupon.
        receipt("p-a", "S1", 20, T0 + 7 * DAY + 1, 9999),
        receipt("p-a", "S1", 0, T0 - DAY, 9999),
        // p-b: the receipt the coupon was printed on comes after the coupon event's
        // time here; it is still the issuing receipt and excluded.
        receipt("p-b", "S1", 3, T0 + DAY + 5, 9999),
        receipt("p-b", "S1", 10, T0 + 3 * DAY, 1000),
        receipt("p-c", "S2", 5, T0 + DAY, 1000),
        receipt("p-c", "S2", 6, T0 + 8 * DAY, 9999),
    ];
    let u = uplift(7, &coupons, &receipts);
    assert_eq!(
        u,
        Uplift {
            window_days: 7,
            treated_customers: 2,
            control_customers: 1,
            treated_spend_per_customer_cents: 2000,
            control_spend_per_customer_cents: 1000,
            uplift_cents_per_customer: Some(1000),
            uplift_percent: Some(100.0),
        }
    );

    // Without control spend there is no percentage.
    let no_control = uplift(7, &coupons[..3], &receipts);
    assert_eq!(no_control.control_customers, 0);
    assert_eq!(
        no_control.uplift_cents_per_customer, None,
        "no control group: no uplift"
    );
    assert_eq!(no_control.treated_spend_per_customer_cents, 2000);
    assert_eq!(no_control.uplift_percent, None);

    // A window of one day keeps only p-a's 2000 and p-c's 1000.
    let short = uplift(1, &coupons, &receipts);
    assert_eq!(short.treated_spend_per_customer_cents, 1000);
    assert_eq!(short.uplift_percent, Some(0.0));
}

#[test]
fn campaign_kpis_count_once_and_sum_the_redeeming_receipts() {
    use RedemptionStatus::*;
    let coupons = vec![
        coupon("S1", 2, false, Some("p-a"), T0),
        coupon("S1", 4, false, Some("p-b"), T0),
        coupon("S1", 6, false, None, T0),
        coupon("S1", 8, true, Some("p-c"), T0),
    ];
    let a = coupons[0].code.clone().unwrap();
    let b = coupons[1].code.clone().unwrap();
    let scans = vec![
        scan("S2", 3, &a, T0 + DAY, Genuine),
        scan("S1", 5, &a, T0 + 2 * DAY, Genuine),
        scan("S2", 4, &b, T0 + DAY, Unchecked),
        scan("S3", 1, "999", T0 + DAY, Forged),
        scan("S3", 2, "998", T0 + DAY, Refused),
    ];
    let k = campaign_kpis("big-basket", 14, &coupons, &scans, &[]);
    assert_eq!((k.issued, k.control, k.redeemed), (3, 1, 2));
    assert_eq!(k.duplicate_redemptions, 1);
    assert_eq!(k.forged_redemptions, 1);
    // Receipts S2 seq 3 and S2 seq 4 (the helper's total is 1000 × seq).
    assert_eq!(k.revenue_cents, 7000);
    assert!((k.redemption_rate - 2.0 / 3.0).abs() < 1e-12);
    assert_eq!(k.uplift.window_days, 14);

    let none = campaign_kpis("x", 7, &[], &[], &[]);
    assert_eq!(
        (none.issued, none.redeemed, none.redemption_rate),
        (0, 0, 0.0)
    );

    let stores = store_report(&scans);
    let rows: Vec<(&str, u64, u64, u64, u64)> = stores
        .iter()
        .map(|s| {
            (
                s.store.as_str(),
                s.redeemed,
                s.duplicates,
                s.forged,
                s.refused,
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![("S1", 0, 1, 0, 0), ("S2", 2, 0, 0, 0), ("S3", 0, 0, 1, 1)]
    );
}
