//! Coupon serials and the store's redeemed-codes ledger.
//!
//! `coupon_serials` counts the serials handed out per campaign number and expiry day,
//! committed before a serial is handed out, so a coupon printed after a crash never
//! repeats a code.
//!
//! `redeemed_codes` is the store's coupon redemption ledger: codes redeemed at any till
//! of the store (or issued here and redeemed elsewhere) as the hub pushes them, with the
//! feed's version in the meta row, plus this till's own redemptions, recorded in the
//! same transaction as their `CouponRedeemed` event (so also offline; see
//! [`Journal::append`]). A code is kept until the day after its expiry: an expired code
//! is refused by its date anyway.

use chrono::NaiveDate;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use till360_shared::coupon::CouponFields;

use super::{sql_error, to_i64, to_u64, Journal, JournalError};

/// Serial counters this far before the expiry day asked for are deleted: a coupon
/// expired that long ago is never issued again, and the table stays small.
const SERIAL_RETENTION_DAYS: i64 = 400;

impl Journal {
    /// The next serial for a coupon of `campaign_number` expiring on `expires`: 0, 1,
    /// 2, … per (campaign, expiry day), committed before it returns so a code is never
    /// minted twice, even across a crash. After [`CouponFields::MAX_SERIAL`] the
    /// serials of that day are exhausted.
    pub fn next_coupon_serial(
        &mut self,
        campaign_number: u16,
        expires: NaiveDate,
    ) -> Result<u16, JournalError> {
        Ok(self
            .reserve_coupon_serials(campaign_number, expires, 1)?
            .start)
    }

    /// Reserves up to `count` serials at once (fewer near the end of the day's range),
    /// committed before it returns: the till core hands them out from memory, so a
    /// printed coupon rarely waits for the disk. Serials reserved but never printed
    /// (the agent stopped) are skipped, never reused.
    pub fn reserve_coupon_serials(
        &mut self,
        campaign_number: u16,
        expires: NaiveDate,
        count: u16,
    ) -> Result<std::ops::Range<u16>, JournalError> {
        let path = self.path.display().to_string();
        let sql = sql_error(&path);
        let day = expires.format("%Y-%m-%d").to_string();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let next: i64 = tx
            .query_row(
                "SELECT next_serial FROM coupon_serials WHERE campaign_number = ?1 AND expires = ?2",
                params![campaign_number, day],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)?
            .unwrap_or(0);
        let first = u16::try_from(next)
            .ok()
            .filter(|s| *s <= CouponFields::MAX_SERIAL)
            .ok_or_else(|| JournalError::SerialsExhausted {
                path: path.clone(),
                campaign: campaign_number,
                expires,
            })?;
        let end = (u32::from(first) + u32::from(count.max(1)))
            .min(u32::from(CouponFields::MAX_SERIAL) + 1);
        tx.execute(
            "INSERT OR REPLACE INTO coupon_serials (campaign_number, expires, next_serial)
             VALUES (?1, ?2, ?3)",
            params![campaign_number, day, i64::from(end)],
        )
        .map_err(sql)?;
        if first == 0 {
            // A new day's counter: forget the counters of coupons long expired.
            if let Some(cutoff) =
                expires.checked_sub_signed(chrono::Duration::days(SERIAL_RETENTION_DAYS))
            {
                tx.execute(
                    "DELETE FROM coupon_serials WHERE expires < ?1",
                    params![cutoff.format("%Y-%m-%d").to_string()],
                )
                .map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)?;
        // `end` ≤ MAX_SERIAL + 1 = 4096 fits in u16.
        Ok(first..u16::try_from(end).unwrap_or(u16::MAX))
    }

    /// The version of the store's redeemed-codes ledger held (0: none).
    pub fn redeemed_version(&self) -> Result<u64, JournalError> {
        self.meta_version("SELECT redeemed_version FROM journal_meta WHERE id = 1")
    }

    /// Whether `code` (spaces ignored) is in the store's redemption ledger.
    pub fn is_redeemed(&self, code: &str) -> Result<bool, JournalError> {
        self.conn
            .prepare_cached("SELECT 1 FROM redeemed_codes WHERE code = ?1")
            .and_then(|mut q| q.exists([code_key(code)]))
            .map_err(|e| self.sql_err(e))
    }

    /// Applies a `Redeemed` frame in ONE transaction: the codes join the ledger,
    /// `up_to_version` is stored, and codes that expired before `today` (the till's
    /// local date) less a day are dropped. Returns how many codes are held.
    pub fn apply_redeemed(
        &mut self,
        codes: &[String],
        up_to_version: u64,
        today: NaiveDate,
    ) -> Result<u64, JournalError> {
        let path = self.path.display().to_string();
        let sql = sql_error(&path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        for code in codes {
            insert_redeemed(&tx, code, false).map_err(sql)?;
        }
        let keep_from = today - chrono::Days::new(1);
        tx.execute(
            "DELETE FROM redeemed_codes WHERE expires < ?1",
            [keep_from.format("%Y-%m-%d").to_string()],
        )
        .map_err(sql)?;
        tx.execute(
            "UPDATE journal_meta SET redeemed_version = ?1 WHERE id = 1",
            params![to_i64(up_to_version)],
        )
        .map_err(sql)?;
        let held: i64 = tx
            .query_row("SELECT count(*) FROM redeemed_codes", [], |r| r.get(0))
            .map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(to_u64(held))
    }
}

/// A coupon code as the ledger keys it: the digits, spaces removed.
pub(super) fn code_key(code: &str) -> String {
    code.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Adds `code` to the redemption ledger with its expiry; a code that does not parse
/// (never accepted, so never redeemed) is left out.
pub(super) fn insert_redeemed(conn: &Connection, code: &str, own: bool) -> rusqlite::Result<()> {
    let key = code_key(code);
    let Ok(fields) = till360_shared::coupon::parse(&key) else {
        return Ok(());
    };
    conn.prepare_cached(
        "INSERT OR IGNORE INTO redeemed_codes (code, expires, own) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![
        key,
        fields.expires().format("%Y-%m-%d").to_string(),
        own
    ])?;
    Ok(())
}
