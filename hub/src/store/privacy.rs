//! Privacy operations, on every engine: access (export everything held on a person),
//! erasure, and consent changes. Each write runs in ONE transaction
//! (`sql::transaction`, run again if it lost a race with another hub).

use serde_json::{json, Map, Value};
use till360_shared::{codec, Event, EventKind, ReceiptLine, Timestamp};

use super::erasures::{self, Suppression};
use super::profiles;
use super::sql::{transaction, Engine, Row, Sql, SqlExt, TxKind};
use super::{ConsentChange, ErasureReport, StoreError};
use crate::identity::{IdKind, Identifier};
use crate::profile::ProfileView;
use crate::sql_params;

fn rfc3339(ms: i64, offset_min: i64) -> Result<String, StoreError> {
    let offset = i16::try_from(offset_min)
        .map_err(|_| StoreError::Corrupt(format!("a time offset of {offset_min} minutes")))?;
    Ok(Timestamp::from_unix_ms(ms, offset).to_rfc3339())
}

fn profile_exists(db: &dyn Sql, profile_id: &str) -> Result<bool, StoreError> {
    db.exists(
        "SELECT 1 FROM profiles WHERE profile_id = ?1",
        sql_params![profile_id],
    )
}

/// `f` applied to every row of `sql` with `profile_id` bound to `?1`.
fn rows_of<T>(
    db: &dyn Sql,
    sql: &str,
    profile_id: &str,
    f: impl Fn(&Row) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    db.query(sql, sql_params![profile_id])?
        .iter()
        .map(f)
        .collect()
}

/// Everything held on the person (GDPR access request): personal data, identifiers,
/// consents, transactions with lines, orders, traits, segments, coupons and what the
/// fraud rules found about the person's cards. `None` if unknown.
pub fn export_profile(db: &dyn Sql, profile_id: &str) -> Result<Option<Value>, StoreError> {
    let person = db.query_opt(
        "SELECT created_at_ms, created_offset_min, customer_no, first_name, last_name,
                birth_date, postal_code, language, member_since, points, updated_at_ms
         FROM profiles WHERE profile_id = ?1",
        sql_params![profile_id],
    )?;
    let Some(r) = person else {
        return Ok(None);
    };
    let person = json!({
        "created_at": rfc3339(r.get(0)?, r.get(1)?)?,
        "customer_no": r.get::<Option<String>>(2)?,
        "first_name": r.get::<Option<String>>(3)?,
        "last_name": r.get::<Option<String>>(4)?,
        "birth_date": r.get::<Option<String>>(5)?,
        "postal_code": r.get::<Option<String>>(6)?,
        "language": r.get::<Option<String>>(7)?,
        "member_since": r.get::<Option<String>>(8)?,
        "points": r.get::<Option<i64>>(9)?,
        "updated_at": r.get::<Option<i64>>(10)?.map(|ms| rfc3339(ms, 0)).transpose()?,
    });

    let identifiers = rows_of(
        db,
        "SELECT kind, value, source, added_at_ms FROM identifiers
         WHERE profile_id = ?1 ORDER BY kind, value",
        profile_id,
        |r| {
            Ok(json!({
                "kind": r.get::<String>(0)?,
                "value": r.get::<String>(1)?,
                "source": r.get::<String>(2)?,
                "added_at": rfc3339(r.get(3)?, 0)?,
            }))
        },
    )?;

    let consents = rows_of(
        db,
        "SELECT purpose, granted, source, at_ms FROM consents
         WHERE profile_id = ?1 ORDER BY purpose",
        profile_id,
        |r| {
            Ok(json!({
                "purpose": r.get::<String>(0)?,
                "granted": r.get::<bool>(1)?,
                "source": r.get::<String>(2)?,
                "at": rfc3339(r.get(3)?, 0)?,
            }))
        },
    )?;

    let transactions = rows_of(
        db,
        "SELECT store, till, seq, receipt_no, at_ms, offset_min, printed_at_ms,
                printed_offset_min, card, total_cents, currency, lines
         FROM transactions WHERE profile_id = ?1 ORDER BY at_ms, store, till, seq",
        profile_id,
        |r| {
            let (store, till, seq): (String, String, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
            let blob: Vec<u8> = r.get(11)?;
            let lines: Vec<ReceiptLine> = codec::from_bytes(&blob).map_err(|e| {
                StoreError::Corrupt(format!("lines of transaction {store}/{till}/{seq}: {e}"))
            })?;
            let printed_at = match (r.get::<Option<i64>>(6)?, r.get::<Option<i64>>(7)?) {
                (Some(ms), offset) => Some(rfc3339(ms, offset.unwrap_or(0))?),
                (None, _) => None,
            };
            Ok(json!({
                "store": store,
                "till": till,
                "seq": seq,
                "receipt_no": r.get::<Option<String>>(3)?,
                "at": rfc3339(r.get(4)?, r.get(5)?)?,
                "printed_at": printed_at,
                "card": r.get::<Option<String>>(8)?,
                "total_cents": r.get::<i64>(9)?,
                "currency": r.get::<String>(10)?,
                "lines": serde_json::to_value(&lines)
                    .map_err(|e| StoreError::Corrupt(format!("receipt lines: {e}")))?,
            }))
        },
    )?;

    let orders = rows_of(
        db,
        "SELECT order_id, ordered_at_ms, offset_min, channel, total_cents, currency, lines
         FROM orders WHERE profile_id = ?1 ORDER BY ordered_at_ms, order_id",
        profile_id,
        |r| {
            let lines: String = r.get(6)?;
            Ok(json!({
                "order_id": r.get::<String>(0)?,
                "ordered_at": rfc3339(r.get(1)?, r.get(2)?)?,
                "channel": r.get::<String>(3)?,
                "total_cents": r.get::<i64>(4)?,
                "currency": r.get::<String>(5)?,
                // Kept as stored if it is not JSON: an export must not hide data.
                "lines": serde_json::from_str::<Value>(&lines).unwrap_or(Value::String(lines)),
            }))
        },
    )?;

    let traits = db
        .query_opt(
            "SELECT as_of_ms, traits FROM profile_traits WHERE profile_id = ?1",
            sql_params![profile_id],
        )?
        .map(|r| -> Result<Value, StoreError> {
            let text: String = r.get(1)?;
            Ok(json!({
                "as_of": rfc3339(r.get(0)?, 0)?,
                "values": serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text)),
            }))
        })
        .transpose()?;

    let segments = rows_of(
        db,
        "SELECT segment_id FROM segment_members WHERE profile_id = ?1 ORDER BY segment_id",
        profile_id,
        |r| r.get::<String>(0),
    )?;

    // Coupons printed for the person (or withheld: the control group), by profile or
    // by one of the person's cards.
    let coupons = db
        .query(
            "SELECT campaign_id, control, code, issued_at_ms, offset_min, expires, store, till
             FROM coupons
             WHERE profile_id = ?1
                OR card IN (SELECT value FROM identifiers WHERE profile_id = ?2 AND kind = 'card')
             ORDER BY issued_at_ms, store, till, seq",
            sql_params![profile_id, profile_id],
        )?
        .iter()
        .map(|r| {
            Ok(json!({
                "campaign_id": r.get::<String>(0)?,
                "control_group": r.get::<bool>(1)?,
                "code": r.get::<Option<String>>(2)?,
                "issued_at": rfc3339(r.get(3)?, r.get(4)?)?,
                "expires": r.get::<String>(5)?,
                "store": r.get::<String>(6)?,
                "till": r.get::<String>(7)?,
            }))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;

    // What the fraud rules found about the person's cards is about the person too.
    let suspicious = rows_of(
        db,
        "SELECT s.card, s.flagged_at_ms, s.findings, s.cleared_at_ms FROM suspicious_cards s
         JOIN identifiers i ON i.kind = 'card' AND i.value = s.card
         WHERE i.profile_id = ?1 ORDER BY s.card",
        profile_id,
        |r| super::suspicious::view(r.get(0)?, r.get(1)?, &r.get::<String>(2)?, r.get(3)?),
    )?;

    let mut out = Map::new();
    out.insert("profile_id".into(), Value::String(profile_id.to_string()));
    out.insert("personal".into(), person);
    out.insert("identifiers".into(), Value::Array(identifiers));
    out.insert("consents".into(), Value::Array(consents));
    out.insert("transactions".into(), Value::Array(transactions));
    out.insert("orders".into(), Value::Array(orders));
    out.insert("traits".into(), traits.unwrap_or(Value::Null));
    out.insert("segments".into(), json!(segments));
    out.insert("coupons".into(), Value::Array(coupons));
    out.insert("suspicious_cards".into(), json!(suspicious));
    Ok(Some(Value::Object(out)))
}

/// Erases a person in one transaction: identifiers, consents, traits, segment
/// memberships and the profile row are deleted; transactions and orders keep amounts,
/// lines, store and time but lose every link to the person; raw events of the
/// person's cards lose the card (a bare card scan is deleted). One erasure version
/// records every identifier of the person on the suppression list (keyed hashes) and
/// the cards as each known store's card keys, so agents drop them and no later import
/// or till event brings the person back (see `store/erasures.rs`). On SQLite the WAL
/// is then checkpointed and truncated, so the deleted bytes leave the files too
/// (`secure_delete` overwrites them in the database). `None` if the profile is unknown.
pub fn erase_profile(
    db: &dyn Sql,
    suppression: &Suppression,
    profile_id: &str,
    now: Timestamp,
) -> Result<Option<ErasureReport>, StoreError> {
    let report = transaction(db, TxKind::Write, |db| {
        erase_in_transaction(db, suppression, profile_id, now)
    })?;
    if report.is_some() && db.engine() == Engine::Sqlite {
        // Readers hold no snapshot for long; a checkpoint that cannot finish now leaves
        // the old frames until the next one overwrites them.
        match db.query_value::<i64>("PRAGMA wal_checkpoint(TRUNCATE)", sql_params![]) {
            Ok(Some(0)) => {}
            Ok(_) => tracing::warn!("erase: the WAL checkpoint was blocked by a reader"),
            Err(e) => tracing::warn!("erase: WAL checkpoint failed: {e}"),
        }
    }
    Ok(report)
}

fn erase_in_transaction(
    db: &dyn Sql,
    suppression: &Suppression,
    profile_id: &str,
    now: Timestamp,
) -> Result<Option<ErasureReport>, StoreError> {
    // The profile row is read (and on PostgreSQL locked) first: a concurrent merge
    // into it waits for the erase.
    let lock = match db.engine() {
        Engine::Sqlite => "SELECT customer_no FROM profiles WHERE profile_id = ?1",
        Engine::Postgres => "SELECT customer_no FROM profiles WHERE profile_id = ?1 FOR UPDATE",
    };
    let Some(profile) = db.query_opt(lock, sql_params![profile_id])? else {
        return Ok(None);
    };
    // The CRM's number may be on the profile only.
    let customer_no: Option<String> = profile.get(0)?;
    let mut erased_ids: Vec<(String, String)> = rows_of(
        db,
        "SELECT kind, value FROM identifiers WHERE profile_id = ?1",
        profile_id,
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    erased_ids.extend(customer_no.map(|no| ("customer_no".to_string(), no)));
    let erased_ids: Vec<Identifier> = erased_ids
        .into_iter()
        .filter_map(|(kind, value)| {
            Some(Identifier {
                kind: IdKind::parse(&kind)?,
                value,
            })
        })
        .collect();
    let stores = erasures::known_stores(db)?;
    let cards = rows_of(
        db,
        "SELECT value FROM identifiers WHERE profile_id = ?1 AND kind = 'card' ORDER BY value",
        profile_id,
        |r| r.get::<String>(0),
    )?;

    let mut anonymised = db.execute(
        "UPDATE transactions SET profile_id = NULL, card = NULL WHERE profile_id = ?1",
        sql_params![profile_id],
    )?;
    for card in &cards {
        // Receipts that name the card without a profile (it was blocked then): the
        // card's other receipts share the profile and were anonymised above.
        anonymised += db.execute(
            "UPDATE transactions SET card = NULL WHERE card = ?1 AND profile_id IS NULL",
            sql_params![card],
        )?;
        scrub_events(db, card)?;
        // The hub keeps no card of an erased person, flagged ones included.
        super::suspicious::forget(db, card)?;
    }
    anonymised += db.execute(
        "UPDATE orders SET profile_id = NULL WHERE profile_id = ?1",
        sql_params![profile_id],
    )?;
    // Coupons stay counted in the KPIs, without the person.
    let forget_coupons = "UPDATE coupons SET card = NULL, profile_id = NULL, customer_key = NULL
                          WHERE profile_id = ?1 OR card = ?2";
    db.execute(forget_coupons, sql_params![profile_id, profile_id])?;
    for card in &cards {
        db.execute(forget_coupons, sql_params![card, card])?;
    }

    // The identity graph's evidence names the person too; without it a later merge
    // could not bring the erased identifiers back. A row holding one of the person's
    // (unblocked) identifiers only ever linked into this profile.
    db.execute(
        "DELETE FROM identity_links WHERE row_key IN
             (SELECT l.row_key FROM identity_links l
              JOIN identifiers i ON i.kind = l.kind AND i.value = l.value
              WHERE i.profile_id = ?1)",
        sql_params![profile_id],
    )?;
    let identifiers_removed = db.execute(
        "DELETE FROM identifiers WHERE profile_id = ?1",
        sql_params![profile_id],
    )?;
    for delete in [
        "DELETE FROM consents WHERE profile_id = ?1",
        "DELETE FROM profile_traits WHERE profile_id = ?1",
        "DELETE FROM segment_members WHERE profile_id = ?1",
        "DELETE FROM profiles WHERE profile_id = ?1",
    ] {
        db.execute(delete, sql_params![profile_id])?;
    }

    let erasure_version = erasures::record_erasure(db, suppression, &erased_ids, &stores, now)?;
    Ok(Some(ErasureReport {
        profile_id: profile_id.to_string(),
        identifiers_removed: count(identifiers_removed),
        transactions_anonymised: count(anonymised),
        erasure_version,
    }))
}

fn count(rows: u64) -> usize {
    usize::try_from(rows).unwrap_or(usize::MAX)
}

/// Removes `card` from the raw events (`events`, and receipts' `transactions.event`): a
/// receipt is re-encoded without it (and without its printed last digits), a card scan
/// is deleted. The byte search only narrows the candidates; each is decoded and checked.
fn scrub_events(db: &dyn Sql, card: &str) -> Result<(), StoreError> {
    let holds_card = |column: &str| match db.engine() {
        Engine::Sqlite => format!("instr({column}, ?1) > 0"),
        Engine::Postgres => format!("position(?1 in {column}) > 0"),
    };
    let receipts = format!(
        "SELECT store, till, seq, event FROM transactions WHERE event IS NOT NULL AND {}",
        holds_card("event")
    );
    for r in db.query(&receipts, sql_params![card.as_bytes()])? {
        let (store, till, seq): (String, String, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
        let mut event = Event::decode_stored(&r.get::<Vec<u8>>(3)?)
            .map_err(|e| StoreError::Corrupt(format!("receipt {store}/{till}/{seq}: {e}")))?;
        if event.kind.forget_cards(|c| c.as_str() == card) {
            db.execute(
                "UPDATE transactions SET event = ?1 WHERE store = ?2 AND till = ?3 AND seq = ?4",
                sql_params![codec::to_bytes(&event)?, store, till, seq],
            )?;
        }
    }
    let events = format!(
        "SELECT store, till, seq, payload FROM events WHERE {}",
        holds_card("payload")
    );
    let rows = db.query(&events, sql_params![card.as_bytes()])?;
    for r in rows {
        let (store, till, seq): (String, String, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
        let payload: Vec<u8> = r.get(3)?;
        let mut event = Event::decode_stored(&payload)
            .map_err(|e| StoreError::Corrupt(format!("event {store}/{till}/{seq}: {e}")))?;
        match &mut event.kind {
            EventKind::CardScanned { card: scanned } if scanned.as_str() == card => {
                db.execute(
                    "DELETE FROM events WHERE store = ?1 AND till = ?2 AND seq = ?3",
                    sql_params![store, till, seq],
                )?;
            }
            // Receipts and coupons keep what happened, without the card; otherwise the
            // card's digits happened to occur in other bytes.
            kind => {
                if kind.forget_cards(|c| c.as_str() == card) {
                    db.execute(
                        "UPDATE events SET payload = ?1 WHERE store = ?2 AND till = ?3 AND seq = ?4",
                        sql_params![codec::to_bytes(&event)?, store, till, seq],
                    )?;
                }
            }
        }
    }
    Ok(())
}

/// Records consent changes (upsert per purpose) with their source and time, in one
/// transaction, and returns the profile as it is then. Purposes are validated by the
/// caller. `None` if the profile is unknown.
pub fn set_consents(
    db: &dyn Sql,
    profile_id: &str,
    changes: &[ConsentChange],
    source: &str,
    now: Timestamp,
) -> Result<Option<ProfileView>, StoreError> {
    let known = transaction(db, TxKind::Write, |db| {
        if !profile_exists(db, profile_id)? {
            return Ok(false);
        }
        for change in changes {
            db.execute(
                "INSERT INTO consents (profile_id, purpose, granted, source, at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (profile_id, purpose) DO UPDATE SET
                     granted = excluded.granted, source = excluded.source,
                     at_ms = excluded.at_ms",
                sql_params![
                    profile_id,
                    change.purpose,
                    change.granted,
                    source,
                    now.unix_ms
                ],
            )?;
        }
        Ok(true)
    })?;
    if !known {
        return Ok(None);
    }
    profiles::load_view(db, profile_id)
}
