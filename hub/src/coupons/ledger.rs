//! The coupon ledger: coupon events merged into the `coupons` and `redemptions` tables.
//!
//! Each event becomes one row keyed by the event's (store, till, seq), so a replay is
//! refused by the key. A scan's status is the hub's own check of the code's signature
//! (the till's `verified` is kept, never trusted). Every scan row also gets the hub's
//! `commit_seq`, strictly increasing in commit order: which scan of a code is THE
//! redemption is decided when read (`kpis`) by that order, never by the till's clock
//! (a till can be backdated). The same sequence versions the redeemed-codes downlink
//! ([`redeemed_since`]), with the store that issued each code and its expiry.

use chrono::NaiveDate;
use rusqlite::{params, Connection};
use till360_shared::coupon::parse;
use till360_shared::CardNumber;

use super::verify::{check_code, code_digits, CodeCheck};
use crate::store::{numbering, StoreError};

// The rows a coupon event becomes are the profile model's (`profile::merge_ops` makes
// them); the ledger writes them.
pub use crate::profile::{CouponRow, RedemptionRow, ScanOutcome};

/// The `status` column of `redemptions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RedemptionStatus {
    /// Accepted by the till, and the hub's check of the signature passed.
    Genuine,
    /// Accepted by the till, but the hub's check failed.
    Forged,
    /// Accepted by the till while the hub had no master secret to check it with:
    /// counted as genuine.
    Unchecked,
    /// Refused by the till.
    Refused,
}

impl RedemptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RedemptionStatus::Genuine => "genuine",
            RedemptionStatus::Forged => "forged",
            RedemptionStatus::Unchecked => "unchecked",
            RedemptionStatus::Refused => "refused",
        }
    }

    /// `None` for a value this hub did not write.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "genuine" => Some(RedemptionStatus::Genuine),
            "forged" => Some(RedemptionStatus::Forged),
            "unchecked" => Some(RedemptionStatus::Unchecked),
            "refused" => Some(RedemptionStatus::Refused),
            _ => None,
        }
    }

    /// Whether a scan with this status can be the redemption of its code.
    pub fn counts(self) -> bool {
        matches!(
            self,
            RedemptionStatus::Genuine | RedemptionStatus::Unchecked
        )
    }
}

/// The statuses [`RedemptionStatus::counts`] accepts, for SQL.
pub(crate) const COUNTING_STATUSES: &str = "('genuine', 'unchecked')";

const INSERT_COUPON: &str = "INSERT INTO coupons (store, till, seq, campaign_id, control, code,
         card, profile_id, customer_key, issued_at_ms, offset_min, expires, receipt_seq)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";
const INSERT_REDEMPTION: &str = "INSERT INTO redemptions (store, till, seq, code, at_ms,
         offset_min, receipt_seq, verified, status, reason, campaign_id, commit_seq,
         issuer_store, expires)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11,
         (SELECT coalesce(max(commit_seq), 0) + 1 FROM redemptions), ?12, ?13)";

fn sql_int(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value} beyond i64")))
}

/// Adds a coupon row (the caller has resolved its profile).
pub fn insert_coupon(conn: &Connection, row: &CouponRow) -> Result<(), StoreError> {
    conn.prepare_cached(INSERT_COUPON)?.execute(params![
        row.store,
        row.till,
        sql_int(row.seq, "seq")?,
        row.campaign_id,
        row.control,
        row.code,
        row.card.as_ref().map(CardNumber::as_str),
        row.profile_id,
        row.customer_key,
        row.issued_at.unix_ms,
        row.issued_at.offset_min,
        row.expires.format("%Y-%m-%d").to_string(),
        sql_int(row.receipt_seq, "receipt_seq")?,
    ])?;
    Ok(())
}

/// How the hub classifies a scan: its status, the campaign it names (the checked one
/// for a genuine code, the one its campaign number claims otherwise) and a reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    pub status: RedemptionStatus,
    pub campaign_id: Option<String>,
    pub reason: Option<String>,
}

/// Classifies a scan with the master secret (if the hub has one).
pub fn classify(
    conn: &Connection,
    master: Option<&[u8]>,
    code: &str,
    outcome: &ScanOutcome,
) -> Result<Classification, StoreError> {
    match (outcome, master) {
        (ScanOutcome::Refused { reason }, _) => Ok(Classification {
            status: RedemptionStatus::Refused,
            campaign_id: claimed_campaign(conn, code)?,
            reason: Some(reason.clone()),
        }),
        (ScanOutcome::Accepted { .. }, None) => Ok(Classification {
            status: RedemptionStatus::Unchecked,
            campaign_id: claimed_campaign(conn, code)?,
            reason: None,
        }),
        (ScanOutcome::Accepted { .. }, Some(master)) => match check_code(conn, master, code)? {
            CodeCheck::Genuine { campaign_id, .. } => Ok(Classification {
                status: RedemptionStatus::Genuine,
                campaign_id: Some(campaign_id),
                reason: None,
            }),
            CodeCheck::Forged(reason) => Ok(Classification {
                status: RedemptionStatus::Forged,
                campaign_id: claimed_campaign(conn, code)?,
                reason: Some(reason),
            }),
        },
    }
}

/// The campaign a code's campaign number names, without checking its signature.
fn claimed_campaign(conn: &Connection, code: &str) -> Result<Option<String>, StoreError> {
    match parse(code) {
        Ok(fields) => numbering::campaign_of_number(conn, fields.campaign()),
        Err(_) => Ok(None),
    }
}

/// Adds a scan row, classified by the hub's own check of the code.
pub fn insert_redemption(
    conn: &Connection,
    row: &RedemptionRow,
    master: Option<&[u8]>,
) -> Result<RedemptionStatus, StoreError> {
    let code = code_digits(&row.code);
    let class = classify(conn, master, &code, &row.outcome)?;
    let issuer = issuer_of(conn, &code)?;
    let (receipt_seq, verified) = match &row.outcome {
        ScanOutcome::Accepted {
            receipt_seq,
            verified,
        } => (
            receipt_seq.map(|s| sql_int(s, "receipt_seq")).transpose()?,
            Some(verified.as_str()),
        ),
        ScanOutcome::Refused { .. } => (None, None),
    };
    conn.prepare_cached(INSERT_REDEMPTION)?.execute(params![
        row.store,
        row.till,
        sql_int(row.seq, "seq")?,
        code,
        row.at.unix_ms,
        row.at.offset_min,
        receipt_seq,
        verified,
        class.status.as_str(),
        class.reason,
        class.campaign_id,
        issuer.as_ref().map(|(store, _)| store),
        issuer.as_ref().map(|(_, expires)| expires),
    ])?;
    Ok(class.status)
}

/// The store whose till a code names (without checking its signature) and the code's
/// expiry day (`YYYY-MM-DD`); `None` for a misread or an unknown till number.
pub(crate) fn issuer_of(
    conn: &Connection,
    code: &str,
) -> Result<Option<(String, String)>, StoreError> {
    let Ok(fields) = parse(code) else {
        return Ok(None);
    };
    Ok(numbering::till_of_number(conn, fields.till())?
        .map(|till| (till.store, fields.expires().format("%Y-%m-%d").to_string())))
}

/// The redeemed-codes downlink of `store`: codes whose counted redemption (genuine or
/// unchecked) was scanned at one of its tills or issued by one, committed after
/// `after`, not expired before `today`, oldest commit first, at most `limit`, as
/// `(commit_seq, code)`.
pub fn redeemed_since(
    conn: &Connection,
    store: &str,
    after: u64,
    today: NaiveDate,
    limit: usize,
) -> Result<Vec<(u64, String)>, StoreError> {
    let rows = conn
        .prepare_cached(&format!(
            "SELECT commit_seq, code FROM redemptions
             WHERE commit_seq > ?1 AND status IN {COUNTING_STATUSES}
               AND (store = ?2 OR issuer_store = ?2)
               AND (expires IS NULL OR expires >= ?3)
             ORDER BY commit_seq LIMIT ?4"
        ))?
        .query_map(
            params![
                sql_int(after, "version")?,
                store,
                today.format("%Y-%m-%d").to_string(),
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
            |r| Ok((r.get::<_, i64>(0)?.max(0) as u64, r.get::<_, String>(1)?)),
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// The newest commit sequence of the ledger (0: empty).
pub fn redeemed_version(conn: &Connection) -> Result<u64, StoreError> {
    let max: Option<i64> =
        conn.query_row("SELECT max(commit_seq) FROM redemptions", [], |r| r.get(0))?;
    Ok(max.unwrap_or(0).max(0) as u64)
}

/// Schema 7 on an older database: `redemptions` gains `commit_seq` (existing rows keep
/// their insertion order, the rowid), `issuer_store` and `expires` (filled from each
/// code). Idempotent.
pub(crate) fn upgrade(conn: &Connection) -> Result<(), StoreError> {
    for (column, kind) in [
        ("commit_seq", "INTEGER"),
        ("issuer_store", "TEXT"),
        ("expires", "TEXT"),
    ] {
        let has: bool = conn
            .prepare("SELECT 1 FROM pragma_table_info('redemptions') WHERE name = ?1")?
            .exists([column])?;
        if !has {
            conn.execute_batch(&format!(
                "ALTER TABLE redemptions ADD COLUMN {column} {kind};"
            ))?;
        }
    }
    conn.execute_batch(
        "UPDATE redemptions SET commit_seq = rowid WHERE commit_seq IS NULL;
         CREATE UNIQUE INDEX IF NOT EXISTS redemptions_commit ON redemptions(commit_seq);",
    )?;
    let unfilled = conn
        .prepare("SELECT rowid, code FROM redemptions WHERE expires IS NULL")?
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    for (rowid, code) in unfilled {
        if let Some((store, expires)) = issuer_of(conn, &code)? {
            conn.execute(
                "UPDATE redemptions SET issuer_store = ?1, expires = ?2 WHERE rowid = ?3",
                params![store, expires, rowid],
            )?;
        }
    }
    Ok(())
}
