//! The coupon ledger's reads and writes (`coupons`, `redemptions`): the rows and
//! statuses are `coupons::ledger`'s, the decisions (which scan is THE redemption) are
//! made when read (`coupons::kpis`).
//!
//! `redemptions.commit_seq` is strictly increasing in commit order: the redeemed-codes
//! feed hands codes to tills by it. With several hubs on one PostgreSQL the number is
//! taken under [`locks::merge`], held until the commit, so no two hubs take one number
//! and a smaller number never commits after a larger one.

use chrono::NaiveDate;
use till360_shared::coupon::parse;
use till360_shared::CardNumber;

use super::coupon_checks::check_code;
use super::sql::{self, Sql, SqlExt};
use super::{locks, numbering, StoreError};
use crate::coupons::ledger::{
    Classification, CouponRow, RedemptionRow, RedemptionStatus, ScanOutcome, COUNTING_STATUSES,
};
use crate::coupons::verify::{code_digits, CodeCheck};
use crate::sql_params;

const INSERT_COUPON: &str = "INSERT INTO coupons (store, till, seq, campaign_id, control, code,
         card, profile_id, customer_key, issued_at_ms, offset_min, expires, receipt_seq)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";
const INSERT_REDEMPTION: &str = "INSERT INTO redemptions (store, till, seq, code, at_ms,
         offset_min, receipt_seq, verified, status, reason, campaign_id, commit_seq,
         issuer_store, expires)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11,
         (SELECT coalesce(max(commit_seq), 0) + 1 FROM redemptions), ?12, ?13)";

/// Adds a coupon row (the caller has resolved its profile).
pub fn insert_coupon(db: &dyn Sql, row: &CouponRow) -> Result<(), StoreError> {
    db.execute(
        INSERT_COUPON,
        sql_params![
            row.store,
            row.till,
            sql::int(row.seq)?,
            row.campaign_id,
            row.control,
            row.code,
            row.card.as_ref().map(CardNumber::as_str),
            row.profile_id,
            row.customer_key,
            row.issued_at.unix_ms,
            i64::from(row.issued_at.offset_min),
            row.expires.format("%Y-%m-%d").to_string(),
            sql::int(row.receipt_seq)?,
        ],
    )?;
    Ok(())
}

/// Classifies a scan with the master secret (if the hub has one).
pub fn classify(
    db: &dyn Sql,
    master: Option<&[u8]>,
    code: &str,
    outcome: &ScanOutcome,
) -> Result<Classification, StoreError> {
    match (outcome, master) {
        (ScanOutcome::Refused { reason }, _) => Ok(Classification {
            status: RedemptionStatus::Refused,
            campaign_id: claimed_campaign(db, code)?,
            reason: Some(reason.clone()),
        }),
        (ScanOutcome::Accepted { .. }, None) => Ok(Classification {
            status: RedemptionStatus::Unchecked,
            campaign_id: claimed_campaign(db, code)?,
            reason: None,
        }),
        (ScanOutcome::Accepted { .. }, Some(master)) => match check_code(db, master, code)? {
            CodeCheck::Genuine { campaign_id, .. } => Ok(Classification {
                status: RedemptionStatus::Genuine,
                campaign_id: Some(campaign_id),
                reason: None,
            }),
            CodeCheck::Forged(reason) => Ok(Classification {
                status: RedemptionStatus::Forged,
                campaign_id: claimed_campaign(db, code)?,
                reason: Some(reason),
            }),
        },
    }
}

/// The campaign a code's campaign number names, without checking its signature.
fn claimed_campaign(db: &dyn Sql, code: &str) -> Result<Option<String>, StoreError> {
    match parse(code) {
        Ok(fields) => numbering::campaign_of_number(db, fields.campaign()),
        Err(_) => Ok(None),
    }
}

/// Adds a scan row, classified by the hub's own check of the code.
pub fn insert_redemption(
    db: &dyn Sql,
    row: &RedemptionRow,
    master: Option<&[u8]>,
) -> Result<RedemptionStatus, StoreError> {
    let code = code_digits(&row.code);
    let class = classify(db, master, &code, &row.outcome)?;
    let issuer = issuer_of(db, &code)?;
    let (receipt_seq, verified) = match &row.outcome {
        ScanOutcome::Accepted {
            receipt_seq,
            verified,
        } => (
            receipt_seq.map(sql::int).transpose()?,
            Some(verified.as_str()),
        ),
        ScanOutcome::Refused { .. } => (None, None),
    };
    locks::merge(db)?;
    db.execute(
        INSERT_REDEMPTION,
        sql_params![
            row.store,
            row.till,
            sql::int(row.seq)?,
            code,
            row.at.unix_ms,
            i64::from(row.at.offset_min),
            receipt_seq,
            verified,
            class.status.as_str(),
            class.reason,
            class.campaign_id,
            issuer.as_ref().map(|(store, _)| store),
            issuer.as_ref().map(|(_, expires)| expires),
        ],
    )?;
    Ok(class.status)
}

/// The store whose till a code names (without checking its signature) and the code's
/// expiry day (`YYYY-MM-DD`); `None` for a misread or an unknown till number.
pub fn issuer_of(db: &dyn Sql, code: &str) -> Result<Option<(String, String)>, StoreError> {
    let Ok(fields) = parse(code) else {
        return Ok(None);
    };
    Ok(numbering::till_of_number(db, fields.till())?
        .map(|till| (till.store, fields.expires().format("%Y-%m-%d").to_string())))
}

/// The redeemed-codes downlink of `store`: codes whose counted redemption (genuine or
/// unchecked) was scanned at one of its tills or issued by one, committed after
/// `after`, not expired before `today`, oldest commit first, at most `limit`, as
/// `(commit_seq, code)`.
pub fn redeemed_since(
    db: &dyn Sql,
    store: &str,
    after: u64,
    today: NaiveDate,
    limit: usize,
) -> Result<Vec<(u64, String)>, StoreError> {
    let mut codes = Vec::new();
    db.query_each(
        &format!(
            "SELECT commit_seq, code FROM redemptions
             WHERE commit_seq > ?1 AND status IN {COUNTING_STATUSES}
               AND (store = ?2 OR issuer_store = ?2)
               AND (expires IS NULL OR expires >= ?3)
             ORDER BY commit_seq LIMIT ?4"
        ),
        sql_params![
            sql::int(after)?,
            store,
            today.format("%Y-%m-%d").to_string(),
            i64::try_from(limit).unwrap_or(i64::MAX)
        ],
        &mut |row| {
            codes.push((row.get::<i64>(0)?.max(0) as u64, row.get(1)?));
            Ok(())
        },
    )?;
    Ok(codes)
}

/// The newest commit sequence of the ledger (0: empty).
pub fn redeemed_version(db: &dyn Sql) -> Result<u64, StoreError> {
    let max: Option<i64> = db
        .query_one("SELECT max(commit_seq) FROM redemptions", sql_params![])?
        .get(0)?;
    Ok(max.unwrap_or(0).max(0) as u64)
}
