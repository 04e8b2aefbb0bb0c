//! The traits' inputs and outputs: purchase histories as of a date (streamed row by
//! row into the pure `traits::history::HistoryBuilder`), the stored segment
//! membership, and a recompute's writes (`profile_traits`, `segment_members`,
//! `traits_runs`) in one transaction.

use std::collections::HashMap;

use chrono::NaiveDate;
use till360_shared::Timestamp;

use super::freshness;
use super::sql::{transaction, Row, Sql, TxKind, Value};
use super::StoreError;
use crate::sql_params;
use crate::traits::history::{end_of_local_day_ms, ConsentRow, HistoryBuilder, HubData};

/// Column `i` moved out of the row as text (no copy: the rows are many).
fn text(row: &mut Row, i: usize) -> Result<String, StoreError> {
    match row.take(i) {
        Value::Text(text) => Ok(text),
        other => Err(StoreError::Corrupt(format!(
            "column {i} holds {other:?}, not text"
        ))),
    }
}

fn blob(row: &mut Row, i: usize) -> Result<Vec<u8>, StoreError> {
    match row.take(i) {
        Value::Blob(bytes) => Ok(bytes),
        // A blob column SQLite was given as text still holds the bytes.
        Value::Text(text) => Ok(text.into_bytes()),
        other => Err(StoreError::Corrupt(format!(
            "column {i} holds {other:?}, not a blob"
        ))),
    }
}

/// Every profile with its cards, consents and the purchases whose local date is on or
/// before `as_of` (point in time). Call inside a read transaction so every table is
/// read from one snapshot.
pub fn load_histories(db: &dyn Sql, as_of: NaiveDate) -> Result<HubData, StoreError> {
    let end_local_ms = end_of_local_day_ms(as_of);
    let mut data = HistoryBuilder::new();
    db.query_each(
        "SELECT profile_id, customer_no FROM profiles ORDER BY profile_id",
        sql_params![],
        &mut |mut r| {
            let profile_id = text(&mut r, 0)?;
            data.profile(profile_id, r.get(1)?);
            Ok(())
        },
    )?;
    db.query_each(
        "SELECT profile_id, value FROM identifiers WHERE kind = 'card' ORDER BY value",
        sql_params![],
        &mut |mut r| {
            let card = text(&mut r, 1)?;
            data.card(&text(&mut r, 0)?, card);
            Ok(())
        },
    )?;
    db.query_each(
        "SELECT profile_id, purpose, granted, at_ms FROM consents ORDER BY profile_id, purpose",
        sql_params![],
        &mut |mut r| {
            let consent = ConsentRow {
                purpose: text(&mut r, 1)?,
                granted: r.get(2)?,
                at_ms: r.get(3)?,
            };
            data.consent(&text(&mut r, 0)?, consent);
            Ok(())
        },
    )?;
    db.query_each(
        "SELECT sku, description, category, sensitive FROM products ORDER BY sku",
        sql_params![],
        &mut |mut r| {
            let sku = text(&mut r, 0)?;
            let description = text(&mut r, 1)?;
            data.product(sku, &description, text(&mut r, 2)?, r.get(3)?);
            Ok(())
        },
    )?;
    db.query_each(
        "SELECT profile_id, store, at_ms, offset_min, total_cents, lines FROM transactions
         WHERE profile_id IS NOT NULL AND unbalanced = 0 AND at_ms + offset_min * 60000 < ?1
         ORDER BY at_ms, store, till, seq",
        sql_params![end_local_ms],
        &mut |mut r| {
            let lines = blob(&mut r, 5)?;
            let store = text(&mut r, 1)?;
            data.receipt(
                &text(&mut r, 0)?,
                store,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                &lines,
            );
            Ok(())
        },
    )?;
    db.query_each(
        "SELECT profile_id, ordered_at_ms, offset_min, total_cents, lines FROM orders
         WHERE profile_id IS NOT NULL AND ordered_at_ms + offset_min * 60000 < ?1
         ORDER BY ordered_at_ms, order_id",
        sql_params![end_local_ms],
        &mut |mut r| {
            let lines = text(&mut r, 4)?;
            data.order(&text(&mut r, 0)?, r.get(1)?, r.get(2)?, r.get(3)?, &lines);
            Ok(())
        },
    )?;
    Ok(data.finish())
}

/// Histories as of `as_of`, read in one read transaction.
pub fn histories(db: &dyn Sql, as_of: NaiveDate) -> Result<HubData, StoreError> {
    transaction(db, TxKind::Read, |db| load_histories(db, as_of))
}

/// profile id → segment ids (sorted), as the last recompute stored them.
pub fn stored_membership(db: &dyn Sql) -> Result<HashMap<String, Vec<String>>, StoreError> {
    let mut members: HashMap<String, Vec<String>> = HashMap::new();
    db.query_each(
        "SELECT profile_id, segment_id FROM segment_members ORDER BY profile_id, segment_id",
        sql_params![],
        &mut |mut r| {
            let segment = text(&mut r, 1)?;
            members.entry(text(&mut r, 0)?).or_default().push(segment);
            Ok(())
        },
    )?;
    Ok(members)
}

/// Histories as of `as_of` and, when `with_membership`, the stored segment membership,
/// from one snapshot.
pub fn histories_and_membership(
    db: &dyn Sql,
    as_of: NaiveDate,
    with_membership: bool,
) -> Result<(HubData, Option<HashMap<String, Vec<String>>>), StoreError> {
    transaction(db, TxKind::Read, |db| {
        let data = load_histories(db, as_of)?;
        let stored = if with_membership {
            Some(stored_membership(db)?)
        } else {
            None
        };
        Ok((data, stored))
    })
}

/// A recompute's writes, inside the transaction that replaced the old rows.
pub struct TraitsOutput<'a> {
    db: &'a dyn Sql,
    as_of_ms: i64,
}

impl TraitsOutput<'_> {
    /// Stores a profile's traits (JSON); `false` when the profile is gone (an erase or
    /// a merge since the histories were read wins).
    pub fn traits(&self, profile_id: &str, traits_json: &str) -> Result<bool, StoreError> {
        Ok(self.db.execute(
            // Typed: PostgreSQL does not infer a selected parameter's type from the
            // column it is inserted into.
            "INSERT INTO profile_traits (profile_id, as_of_ms, traits)
             SELECT CAST(?1 AS TEXT), CAST(?2 AS BIGINT), CAST(?3 AS TEXT)
             WHERE EXISTS (SELECT 1 FROM profiles WHERE profile_id = ?1)",
            sql_params![profile_id, self.as_of_ms, traits_json],
        )? > 0)
    }

    /// Makes a profile a member of a segment; `false` when the profile is gone.
    pub fn member(&self, segment_id: &str, profile_id: &str) -> Result<bool, StoreError> {
        Ok(self.db.execute(
            "INSERT INTO segment_members (segment_id, profile_id)
             SELECT CAST(?1 AS TEXT), CAST(?2 AS TEXT)
             WHERE EXISTS (SELECT 1 FROM profiles WHERE profile_id = ?2)",
            sql_params![segment_id, profile_id],
        )? > 0)
    }
}

/// Replaces every row of `profile_traits` and `segment_members` by what `write` stores,
/// and records the run at `now`, in ONE write transaction (run again from the start if
/// it lost a race with another hub).
pub fn replace_all<R>(
    db: &dyn Sql,
    now: Timestamp,
    mut write: impl FnMut(&TraitsOutput<'_>) -> Result<R, StoreError>,
) -> Result<R, StoreError> {
    transaction(db, TxKind::Write, |db| {
        db.execute("DELETE FROM profile_traits", sql_params![])?;
        db.execute("DELETE FROM segment_members", sql_params![])?;
        let written = write(&TraitsOutput {
            db,
            as_of_ms: now.unix_ms,
        })?;
        freshness::record_run(db, now)?;
        Ok(written)
    })
}
