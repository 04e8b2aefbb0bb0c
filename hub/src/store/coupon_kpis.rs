//! The rows the campaign KPIs are computed from (`coupons::kpis`, pure): a campaign's
//! coupons, the scans of its codes with the receipts they were used on, and its
//! customers' receipts after the first coupon; the coupon counts per campaign and per
//! profile. Everything is computed when read.

use std::collections::BTreeMap;

use super::sql::{Row, Sql, SqlExt};
use super::StoreError;
use crate::coupons::kpis::{self, IssuedCoupon, ProfileReceipt, Scan};
use crate::coupons::ledger::{RedemptionStatus, COUNTING_STATUSES};
use crate::coupons::{CampaignKpis, CouponCounts, StoreCoupons};
use crate::profile::CouponSummary;
use crate::sql_params;

/// The profile a coupon belongs to now: its card's profile in the identity graph (a
/// card can join another profile after the issue; an erased card has none), else the
/// profile recorded at merge.
pub(super) const COUPON_PROFILE: &str = "CASE WHEN c.card IS NULL THEN c.profile_id
     ELSE (SELECT i.profile_id FROM identifiers i WHERE i.kind = 'card' AND i.value = c.card) END";

/// The campaign a scanned code belongs to: the printed coupon with that code, else the
/// campaign its number names (stored at merge).
const SCAN_CAMPAIGN: &str = "COALESCE((SELECT c.campaign_id FROM coupons c
         WHERE c.code = r.code AND c.control = 0
         ORDER BY c.issued_at_ms, c.store, c.till, c.seq LIMIT 1), r.campaign_id)";

/// Scans with the total of the receipt of the scanning till they were used on.
const SCANS: &str = "SELECT r.store, r.till, r.seq, r.code, r.at_ms, r.status, t.total_cents,
            r.commit_seq
     FROM redemptions r
     LEFT JOIN transactions t
         ON t.store = r.store AND t.till = r.till AND t.seq = r.receipt_seq";

/// A seq or count as stored (never negative: the hub writes none).
fn seq_of(value: i64) -> u64 {
    value.max(0) as u64
}

fn status_of(text: &str) -> Result<RedemptionStatus, StoreError> {
    RedemptionStatus::parse(text)
        .ok_or_else(|| StoreError::Corrupt(format!("redemption status {text:?}")))
}

/// Everything a campaign's KPIs are computed from: its coupons, the scans of its codes
/// and its customers' receipts after its first coupon.
#[derive(Debug, Clone, Default)]
pub struct CampaignRows {
    pub coupons: Vec<IssuedCoupon>,
    pub scans: Vec<Scan>,
    pub receipts: Vec<ProfileReceipt>,
}

/// Loads the rows of one campaign and computes its KPIs over `window_days`.
pub fn campaign_kpis(
    db: &dyn Sql,
    campaign_id: &str,
    window_days: u32,
) -> Result<CampaignKpis, StoreError> {
    let rows = campaign_rows(db, campaign_id)?;
    Ok(kpis::campaign_kpis(
        campaign_id,
        window_days,
        &rows.coupons,
        &rows.scans,
        &rows.receipts,
    ))
}

/// Loads the rows of one campaign (the API's KPIs and the console's campaign page).
pub fn campaign_rows(db: &dyn Sql, campaign_id: &str) -> Result<CampaignRows, StoreError> {
    let mut coupons = Vec::new();
    db.query_each(
        &format!(
            "SELECT c.store, c.till, c.seq, c.control, c.code, {COUPON_PROFILE},
                    c.issued_at_ms, c.receipt_seq
             FROM coupons c WHERE c.campaign_id = ?1"
        ),
        sql_params![campaign_id],
        &mut |r| {
            coupons.push(IssuedCoupon {
                store: r.get(0)?,
                till: r.get(1)?,
                seq: seq_of(r.get(2)?),
                control: r.get(3)?,
                code: r.get(4)?,
                profile_id: r.get(5)?,
                issued_at_ms: r.get(6)?,
                receipt_seq: seq_of(r.get(7)?),
            });
            Ok(())
        },
    )?;
    let scans = scans(db, Some(campaign_id))?;
    let mut receipts = Vec::new();
    db.query_each(
        &format!(
            "SELECT t.profile_id, t.store, t.till, t.seq, t.at_ms, t.total_cents
             FROM transactions t
             WHERE t.profile_id IN (SELECT {COUPON_PROFILE} FROM coupons c WHERE c.campaign_id = ?1)
               AND t.at_ms > (SELECT MIN(issued_at_ms) FROM coupons WHERE campaign_id = ?1)"
        ),
        sql_params![campaign_id],
        &mut |r| {
            receipts.push(ProfileReceipt {
                profile_id: r.get(0)?,
                store: r.get(1)?,
                till: r.get(2)?,
                seq: seq_of(r.get(3)?),
                at_ms: r.get(4)?,
                total_cents: r.get(5)?,
            });
            Ok(())
        },
    )?;
    Ok(CampaignRows {
        coupons,
        scans,
        receipts,
    })
}

fn scan_of(r: &Row) -> Result<Scan, StoreError> {
    Ok(Scan {
        store: r.get(0)?,
        till: r.get(1)?,
        seq: seq_of(r.get(2)?),
        code: r.get(3)?,
        at_ms: r.get(4)?,
        status: status_of(&r.get::<String>(5)?)?,
        receipt_total_cents: r.get(6)?,
        commit_seq: seq_of(r.get::<Option<i64>>(7)?.unwrap_or(0)),
    })
}

/// Every scan, or those of one campaign's codes.
pub fn scans(db: &dyn Sql, campaign_id: Option<&str>) -> Result<Vec<Scan>, StoreError> {
    let mut scans = Vec::new();
    let mut each = |r: Row| {
        scans.push(scan_of(&r)?);
        Ok(())
    };
    match campaign_id {
        Some(id) => db.query_each(
            &format!("{SCANS} WHERE {SCAN_CAMPAIGN} = ?1"),
            sql_params![id],
            &mut each,
        )?,
        None => db.query_each(SCANS, sql_params![], &mut each)?,
    }
    Ok(scans)
}

/// Issued, control and redeemed per campaign id (campaigns without rows are absent).
pub fn coupon_counts(db: &dyn Sql) -> Result<BTreeMap<String, CouponCounts>, StoreError> {
    let mut counts: BTreeMap<String, CouponCounts> = BTreeMap::new();
    db.query_each(
        "SELECT campaign_id,
                CAST(SUM(CASE WHEN control = 0 THEN 1 ELSE 0 END) AS BIGINT),
                CAST(SUM(CASE WHEN control = 1 THEN 1 ELSE 0 END) AS BIGINT)
         FROM coupons GROUP BY campaign_id",
        sql_params![],
        &mut |r| {
            let entry = counts.entry(r.get(0)?).or_default();
            entry.issued = seq_of(r.get(1)?);
            entry.control = seq_of(r.get(2)?);
            Ok(())
        },
    )?;
    db.query_each(
        &format!(
            "SELECT campaign, COUNT(DISTINCT code) FROM
                 (SELECT r.code AS code, {SCAN_CAMPAIGN} AS campaign FROM redemptions r
                  WHERE r.status IN {COUNTING_STATUSES}) AS counted
             WHERE campaign IS NOT NULL GROUP BY campaign"
        ),
        sql_params![],
        &mut |r| {
            counts.entry(r.get(0)?).or_default().redeemed = seq_of(r.get(1)?);
            Ok(())
        },
    )?;
    Ok(counts)
}

/// The scan report per store where codes were scanned.
pub fn coupon_stores(db: &dyn Sql) -> Result<Vec<StoreCoupons>, StoreError> {
    Ok(kpis::store_report(&scans(db, None)?))
}

/// A profile's printed coupons and how many of their codes were redeemed.
pub fn profile_coupons(db: &dyn Sql, profile_id: &str) -> Result<CouponSummary, StoreError> {
    let row = db.query_one(
        &format!(
            "SELECT COUNT(*), COALESCE(CAST(SUM(CASE WHEN EXISTS (SELECT 1 FROM redemptions r
                     WHERE r.code = c.code AND r.status IN {COUNTING_STATUSES})
                     THEN 1 ELSE 0 END) AS BIGINT), 0)
             FROM coupons c
             WHERE c.control = 0
               AND (c.card IN (SELECT value FROM identifiers WHERE kind = 'card' AND profile_id = ?1)
                    OR (c.card IS NULL AND c.profile_id = ?1))"
        ),
        sql_params![profile_id],
    )?;
    Ok(CouponSummary {
        issued: seq_of(row.get(0)?),
        redeemed: seq_of(row.get(1)?),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::coupons::Uplift;
    use crate::store::test_support::for_each_engine;

    const DAY: i64 = 86_400_000;
    pub(crate) const T0: i64 = 1_767_000_000_000;

    /// Three customers with a card each; campaign `big` printed for a and b (control:
    /// c), campaign `other` printed for a before a card was known (profile only).
    pub(crate) fn ledger(db: &dyn Sql) {
        for (profile, card) in [("p-a", "A1"), ("p-b", "B1"), ("p-c", "C1")] {
            db.execute(
                "INSERT INTO profiles (profile_id, created_at_ms, created_offset_min)
                 VALUES (?1, 0, 0)",
                sql_params![profile],
            )
            .unwrap();
            db.execute(
                "INSERT INTO identifiers (kind, value, profile_id, source, added_at_ms)
                 VALUES ('card', ?1, ?2, 'till', 0)",
                sql_params![card, profile],
            )
            .unwrap();
        }
        // seq, campaign, control, code, card, profile
        type CouponRow<'a> = (
            i64,
            &'a str,
            i64,
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
        );
        let coupons: [CouponRow; 4] = [
            (2, "big", 0, Some("code-1"), Some("A1"), None),
            (4, "big", 0, Some("code-2"), Some("B1"), None),
            (6, "big", 1, None, Some("C1"), None),
            (8, "other", 0, Some("code-9"), None, Some("p-a")),
        ];
        for (seq, campaign, control, code, card, profile) in coupons {
            db.execute(
                "INSERT INTO coupons (store, till, seq, campaign_id, control, code, card,
                     profile_id, issued_at_ms, offset_min, expires, receipt_seq)
                 VALUES ('S1', 'T01', ?1, ?2, ?3, ?4, ?5, ?6, ?7, 60, '2027-01-31', ?8)",
                sql_params![seq, campaign, control, code, card, profile, T0, seq - 1],
            )
            .unwrap();
        }
        // store, seq, code, status, receipt_seq, commit_seq
        type ScanRow<'a> = (&'a str, i64, &'a str, &'a str, Option<i64>, i64);
        let scans: [ScanRow; 4] = [
            ("S2", 3, "code-1", "genuine", Some(3), 1),
            ("S2", 5, "code-1", "genuine", Some(5), 2),
            ("S3", 1, "999", "forged", None, 3),
            ("S3", 2, "code-2", "refused", None, 4),
        ];
        for (store, seq, code, status, receipt_seq, commit_seq) in scans {
            db.execute(
                "INSERT INTO redemptions (store, till, seq, code, at_ms, offset_min, receipt_seq,
                     status, campaign_id, commit_seq)
                 VALUES (?1, 'T01', ?2, ?3, ?4, 60, ?5, ?6, 'big', ?7)",
                sql_params![store, seq, code, T0 + DAY, receipt_seq, status, commit_seq],
            )
            .unwrap();
        }
        // a's redeeming receipt in the window; c's (control) receipt; one before the coupons.
        let receipts: [(&str, i64, &str, i64, i64); 3] = [
            ("S2", 3, "p-a", T0 + DAY, 2000),
            ("S1", 10, "p-c", T0 + 2 * DAY, 1000),
            ("S1", 1, "p-a", T0 - DAY, 9999),
        ];
        for (store, seq, profile, at, total) in receipts {
            db.execute(
                "INSERT INTO transactions (store, till, seq, at_ms, offset_min, profile_id,
                     total_cents, currency, lines)
                 VALUES (?1, 'T01', ?2, ?3, 60, ?4, ?5, 'EUR', ?6)",
                sql_params![store, seq, at, profile, total, Vec::<u8>::new()],
            )
            .unwrap();
        }
    }

    #[test]
    fn kpis_counts_and_store_reports_come_from_the_ledger_rows() {
        for_each_engine(|database| {
            let conn = database.get().unwrap();
            let db: &dyn Sql = &*conn;
            ledger(db);

            let k = campaign_kpis(db, "big", 7).unwrap();
            assert_eq!((k.issued, k.control, k.redeemed), (2, 1, 1));
            assert_eq!((k.duplicate_redemptions, k.forged_redemptions), (1, 1));
            assert_eq!(k.revenue_cents, 2000, "the receipt code-1 was redeemed on");
            assert_eq!(
                k.uplift,
                Uplift {
                    window_days: 7,
                    treated_customers: 2,
                    control_customers: 1,
                    treated_spend_per_customer_cents: 1000,
                    control_spend_per_customer_cents: 1000,
                    uplift_cents_per_customer: Some(0),
                    uplift_percent: Some(0.0),
                }
            );

            let counts = coupon_counts(db).unwrap();
            assert_eq!(
                counts.get("big"),
                Some(&CouponCounts {
                    issued: 2,
                    control: 1,
                    redeemed: 1
                })
            );
            assert_eq!(
                counts.get("other"),
                Some(&CouponCounts {
                    issued: 1,
                    control: 0,
                    redeemed: 0
                })
            );
            assert_eq!(counts.len(), 2);

            let stores: Vec<(String, u64, u64, u64, u64)> = coupon_stores(db)
                .unwrap()
                .into_iter()
                .map(|s| (s.store, s.redeemed, s.duplicates, s.forged, s.refused))
                .collect();
            assert_eq!(
                stores,
                vec![("S2".into(), 1, 1, 0, 0), ("S3".into(), 0, 0, 1, 1)]
            );

            // By card (code-1, redeemed) and by profile where the coupon had no card.
            assert_eq!(
                profile_coupons(db, "p-a").unwrap(),
                CouponSummary {
                    issued: 2,
                    redeemed: 1
                }
            );
            assert_eq!(
                profile_coupons(db, "p-c").unwrap(),
                CouponSummary {
                    issued: 0,
                    redeemed: 0
                },
                "a control would-have is not a coupon"
            );
            assert_eq!(scans(db, None).unwrap().len(), 4);
            let of_big = scans(db, Some("big")).unwrap();
            assert_eq!(of_big.len(), 4, "each scan names big (code or number)");
            let redeeming = of_big.iter().find(|s| s.store == "S2" && s.seq == 3);
            assert_eq!(redeeming.unwrap().receipt_total_cents, Some(2000));
        });
    }
}
