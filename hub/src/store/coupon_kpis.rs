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
const COUPON_PROFILE: &str = "CASE WHEN c.card IS NULL THEN c.profile_id
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

/// Loads the rows of one campaign and computes its KPIs over `window_days`.
pub fn campaign_kpis(
    db: &dyn Sql,
    campaign_id: &str,
    window_days: u32,
) -> Result<CampaignKpis, StoreError> {
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
    Ok(kpis::campaign_kpis(
        campaign_id,
        window_days,
        &coupons,
        &scans,
        &receipts,
    ))
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
