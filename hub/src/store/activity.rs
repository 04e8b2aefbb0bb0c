//! What the console's overview counts: profiles, receipts and revenue in all and per
//! day, and each campaign's coupons and redemptions per day. Days are UTC days
//! (`unix_ms / 86_400_000`), the same on every engine. Receipts and revenue come from
//! `receipt_days` (kept by the ingest, one row per day and till), new profiles from the
//! `profiles_created` index: neither reads the receipts themselves.

use std::collections::BTreeMap;

use super::sql::{transaction, Sql, SqlExt, TxKind};
use super::StoreError;
use crate::coupons::ledger::COUNTING_STATUSES;
use crate::sql_params;

pub const DAY_MS: i64 = 86_400_000;

/// Totals over the whole store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub profiles: u64,
    pub transactions: u64,
    pub revenue_cents: i64,
}

/// One UTC day's new profiles, receipts and revenue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayActivity {
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    pub new_profiles: u64,
    pub transactions: u64,
    pub revenue_cents: i64,
}

/// One campaign's printed and control coupons and first counted redemptions of a UTC day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CouponDay {
    pub issued: u64,
    pub control: u64,
    pub redeemed: u64,
}

fn count(v: i64) -> u64 {
    v.max(0) as u64
}

/// Profiles and receipts in all, and the revenue of every receipt (in cents of any
/// currency: the hub's stores share one).
pub fn totals(db: &dyn Sql) -> Result<Totals, StoreError> {
    transaction(db, TxKind::Read, |db| {
        let profiles: i64 = db
            .query_one("SELECT COUNT(*) FROM profiles", sql_params![])?
            .get(0)?;
        let row = db.query_one(
            "SELECT CAST(COALESCE(SUM(receipts), 0) AS BIGINT),
                    CAST(COALESCE(SUM(revenue_cents), 0) AS BIGINT)
             FROM receipt_days",
            sql_params![],
        )?;
        Ok(Totals {
            profiles: count(profiles),
            transactions: count(row.get(0)?),
            revenue_cents: row.get(1)?,
        })
    })
}

/// Per UTC day from `since_ms` (a day's start) on: new profiles, receipts and revenue
/// (days without any are absent), oldest first.
pub fn daily_activity(db: &dyn Sql, since_ms: i64) -> Result<Vec<DayActivity>, StoreError> {
    transaction(db, TxKind::Read, |db| {
        let mut days: BTreeMap<i64, DayActivity> = BTreeMap::new();
        db.query_each(
            "SELECT created_at_ms / 86400000, COUNT(*) FROM profiles
             WHERE created_at_ms >= ?1 GROUP BY created_at_ms / 86400000",
            sql_params![since_ms],
            &mut |r| {
                let day: i64 = r.get(0)?;
                days.entry(day)
                    .or_insert(DayActivity {
                        day,
                        ..DayActivity::default()
                    })
                    .new_profiles = count(r.get(1)?);
                Ok(())
            },
        )?;
        db.query_each(
            "SELECT day, CAST(SUM(receipts) AS BIGINT), CAST(SUM(revenue_cents) AS BIGINT)
             FROM receipt_days WHERE day >= ?1 GROUP BY day",
            sql_params![since_ms.div_euclid(DAY_MS)],
            &mut |r| {
                let day: i64 = r.get(0)?;
                let entry = days.entry(day).or_insert(DayActivity {
                    day,
                    ..DayActivity::default()
                });
                entry.transactions = count(r.get(1)?);
                entry.revenue_cents = r.get(2)?;
                Ok(())
            },
        )?;
        Ok(days.into_values().collect())
    })
}

/// Per campaign and UTC day from `since_ms` on: coupons printed, control coupons, and
/// codes whose first counted scan fell on that day (a later scan of the same code is a
/// duplicate, not a redemption).
pub fn coupon_days(
    db: &dyn Sql,
    since_ms: i64,
) -> Result<BTreeMap<(String, i64), CouponDay>, StoreError> {
    transaction(db, TxKind::Read, |db| {
        let mut days: BTreeMap<(String, i64), CouponDay> = BTreeMap::new();
        db.query_each(
            "SELECT campaign_id, issued_at_ms / 86400000,
                    CAST(SUM(CASE WHEN control = 0 THEN 1 ELSE 0 END) AS BIGINT),
                    CAST(SUM(CASE WHEN control = 1 THEN 1 ELSE 0 END) AS BIGINT)
             FROM coupons WHERE issued_at_ms >= ?1
             GROUP BY campaign_id, issued_at_ms / 86400000",
            sql_params![since_ms],
            &mut |r| {
                let day = days.entry((r.get(0)?, r.get(1)?)).or_default();
                day.issued = count(r.get(2)?);
                day.control = count(r.get(3)?);
                Ok(())
            },
        )?;
        db.query_each(
            &format!(
                "SELECT campaign, first_ms / 86400000, COUNT(*) FROM
                     (SELECT MIN(r.at_ms) AS first_ms,
                             COALESCE((SELECT c.campaign_id FROM coupons c
                                       WHERE c.code = r.code AND c.control = 0
                                       ORDER BY c.issued_at_ms LIMIT 1), MIN(r.campaign_id))
                                 AS campaign
                      FROM redemptions r WHERE r.status IN {COUNTING_STATUSES}
                      GROUP BY r.code) AS firsts
                 WHERE campaign IS NOT NULL AND first_ms >= ?1
                 GROUP BY campaign, first_ms / 86400000"
            ),
            sql_params![since_ms],
            &mut |r| {
                days.entry((r.get(0)?, r.get(1)?)).or_default().redeemed = count(r.get(2)?);
                Ok(())
            },
        )?;
        Ok(days)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::coupon_kpis::tests::{ledger, T0};
    use crate::store::test_support::for_each_engine;

    #[test]
    fn totals_days_and_coupon_days_on_every_engine() {
        for_each_engine(|database| {
            let conn = database.get().unwrap();
            let db: &dyn Sql = &*conn;
            ledger(db);
            // The ledger's receipts went in by hand: counted per day as schema 11 counts
            // the receipts it finds (the ingest's own counting is tested in store::tests).
            db.batch(
                "INSERT INTO receipt_days (day, store, till, receipts, revenue_cents)
                 SELECT at_ms / 86400000, store, till, COUNT(*), SUM(total_cents)
                 FROM transactions GROUP BY at_ms / 86400000, store, till",
            )
            .unwrap();
            assert_eq!(
                totals(db).unwrap(),
                Totals {
                    profiles: 3,
                    transactions: 3,
                    revenue_cents: 2000 + 1000 + 9999,
                }
            );
            let day0 = T0 / DAY_MS;
            let days = daily_activity(db, 0).unwrap();
            let got: Vec<(i64, u64, u64, i64)> = days
                .iter()
                .map(|d| (d.day, d.new_profiles, d.transactions, d.revenue_cents))
                .collect();
            assert_eq!(
                got,
                vec![
                    (0, 3, 0, 0),
                    (day0 - 1, 0, 1, 9999),
                    (day0 + 1, 0, 1, 2000),
                    (day0 + 2, 0, 1, 1000),
                ]
            );
            // From a day on: older days are left out.
            assert_eq!(daily_activity(db, (day0 + 1) * DAY_MS).unwrap().len(), 2);

            let coupons = coupon_days(db, 0).unwrap();
            let coupon_day = |campaign: &str, day: i64| {
                coupons
                    .get(&(campaign.to_string(), day))
                    .copied()
                    .unwrap_or_default()
            };
            assert_eq!(
                coupon_day("big", day0),
                CouponDay {
                    issued: 2,
                    control: 1,
                    redeemed: 0
                }
            );
            // code-1 scanned twice that day counts once; refused and forged scans not.
            assert_eq!(
                coupon_day("big", day0 + 1),
                CouponDay {
                    issued: 0,
                    control: 0,
                    redeemed: 1
                }
            );
            assert_eq!(coupon_day("other", day0).issued, 1);
            assert_eq!(coupons.len(), 3, "{coupons:?}");
            assert!(coupon_days(db, (day0 + 2) * DAY_MS).unwrap().is_empty());
        });
    }
}
