//! Privacy operations on the SQLite store: access (export everything held on a
//! person), erasure, and consent changes. Free functions over a connection so the
//! store's `impl Store` only delegates; each write runs in ONE transaction.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde_json::{json, Map, Value};
use till360_shared::{codec, Event, EventKind, ReceiptLine, Timestamp};

use super::erasures::{self, Suppression};
use super::{ConsentChange, ErasureReport, StoreError};
use crate::identity::{IdKind, Identifier};

fn rfc3339(ms: i64, offset_min: i16) -> String {
    Timestamp::from_unix_ms(ms, offset_min).to_rfc3339()
}

fn profile_exists(conn: &Connection, profile_id: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM profiles WHERE profile_id = ?1")?
        .query_row([profile_id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Everything held on the person (GDPR access request): personal data, identifiers,
/// consents, transactions with lines, orders, traits, segments. `None` if unknown.
pub(super) fn export_profile(
    conn: &Connection,
    profile_id: &str,
) -> Result<Option<Value>, StoreError> {
    let person = conn
        .prepare_cached(
            "SELECT created_at_ms, created_offset_min, customer_no, first_name, last_name,
                    birth_date, postal_code, language, member_since, points, updated_at_ms
             FROM profiles WHERE profile_id = ?1",
        )?
        .query_row([profile_id], |r| {
            Ok(json!({
                "created_at": rfc3339(r.get(0)?, r.get(1)?),
                "customer_no": r.get::<_, Option<String>>(2)?,
                "first_name": r.get::<_, Option<String>>(3)?,
                "last_name": r.get::<_, Option<String>>(4)?,
                "birth_date": r.get::<_, Option<String>>(5)?,
                "postal_code": r.get::<_, Option<String>>(6)?,
                "language": r.get::<_, Option<String>>(7)?,
                "member_since": r.get::<_, Option<String>>(8)?,
                "points": r.get::<_, Option<i64>>(9)?,
                "updated_at": r.get::<_, Option<i64>>(10)?.map(|ms| rfc3339(ms, 0)),
            }))
        })
        .optional()?;
    let Some(person) = person else {
        return Ok(None);
    };

    let identifiers = conn
        .prepare_cached(
            "SELECT kind, value, source, added_at_ms FROM identifiers
             WHERE profile_id = ?1 ORDER BY kind, value",
        )?
        .query_map([profile_id], |r| {
            Ok(json!({
                "kind": r.get::<_, String>(0)?,
                "value": r.get::<_, String>(1)?,
                "source": r.get::<_, String>(2)?,
                "added_at": rfc3339(r.get(3)?, 0),
            }))
        })?
        .collect::<Result<Vec<_>, _>>()?;

    let consents = conn
        .prepare_cached(
            "SELECT purpose, granted, source, at_ms FROM consents
             WHERE profile_id = ?1 ORDER BY purpose",
        )?
        .query_map([profile_id], |r| {
            Ok(json!({
                "purpose": r.get::<_, String>(0)?,
                "granted": r.get::<_, i64>(1)? != 0,
                "source": r.get::<_, String>(2)?,
                "at": rfc3339(r.get(3)?, 0),
            }))
        })?
        .collect::<Result<Vec<_>, _>>()?;

    let mut transactions = Vec::new();
    {
        let mut stmt = conn.prepare_cached(
            "SELECT store, till, seq, receipt_no, at_ms, offset_min, printed_at_ms,
                    printed_offset_min, card, total_cents, currency, lines
             FROM transactions WHERE profile_id = ?1 ORDER BY at_ms, store, till, seq",
        )?;
        let mut rows = stmt.query([profile_id])?;
        while let Some(r) = rows.next()? {
            let (store, till, seq): (String, String, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
            let blob: Vec<u8> = r.get(11)?;
            let lines: Vec<ReceiptLine> = codec::from_bytes(&blob).map_err(|e| {
                StoreError::Corrupt(format!("lines of transaction {store}/{till}/{seq}: {e}"))
            })?;
            let printed_at = match (r.get::<_, Option<i64>>(6)?, r.get::<_, Option<i16>>(7)?) {
                (Some(ms), offset) => Some(rfc3339(ms, offset.unwrap_or(0))),
                (None, _) => None,
            };
            transactions.push(json!({
                "store": store,
                "till": till,
                "seq": seq,
                "receipt_no": r.get::<_, Option<String>>(3)?,
                "at": rfc3339(r.get(4)?, r.get(5)?),
                "printed_at": printed_at,
                "card": r.get::<_, Option<String>>(8)?,
                "total_cents": r.get::<_, i64>(9)?,
                "currency": r.get::<_, String>(10)?,
                "lines": serde_json::to_value(&lines)
                    .map_err(|e| StoreError::Corrupt(format!("receipt lines: {e}")))?,
            }));
        }
    }

    let orders = conn
        .prepare_cached(
            "SELECT order_id, ordered_at_ms, offset_min, channel, total_cents, currency, lines
             FROM orders WHERE profile_id = ?1 ORDER BY ordered_at_ms, order_id",
        )?
        .query_map([profile_id], |r| {
            let lines: String = r.get(6)?;
            Ok(json!({
                "order_id": r.get::<_, String>(0)?,
                "ordered_at": rfc3339(r.get(1)?, r.get(2)?),
                "channel": r.get::<_, String>(3)?,
                "total_cents": r.get::<_, i64>(4)?,
                "currency": r.get::<_, String>(5)?,
                // Kept as stored if it is not JSON: an export must not hide data.
                "lines": serde_json::from_str::<Value>(&lines).unwrap_or(Value::String(lines)),
            }))
        })?
        .collect::<Result<Vec<_>, _>>()?;

    let traits = conn
        .prepare_cached("SELECT as_of_ms, traits FROM profile_traits WHERE profile_id = ?1")?
        .query_row([profile_id], |r| {
            let text: String = r.get(1)?;
            Ok(json!({
                "as_of": rfc3339(r.get(0)?, 0),
                "values": serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text)),
            }))
        })
        .optional()?;

    let segments = conn
        .prepare_cached(
            "SELECT segment_id FROM segment_members WHERE profile_id = ?1 ORDER BY segment_id",
        )?
        .query_map([profile_id], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;

    // Coupons printed for the person (or withheld: the control group), by profile or
    // by one of the person's cards.
    let coupons = conn
        .prepare_cached(
            "SELECT campaign_id, control, code, issued_at_ms, offset_min, expires, store, till
             FROM coupons
             WHERE profile_id = ?1
                OR card IN (SELECT value FROM identifiers WHERE profile_id = ?1 AND kind = 'card')
             ORDER BY issued_at_ms, store, till, seq",
        )?
        .query_map([profile_id], |r| {
            Ok(json!({
                "campaign_id": r.get::<_, String>(0)?,
                "control_group": r.get::<_, bool>(1)?,
                "code": r.get::<_, Option<String>>(2)?,
                "issued_at": rfc3339(r.get(3)?, r.get(4)?),
                "expires": r.get::<_, String>(5)?,
                "store": r.get::<_, String>(6)?,
                "till": r.get::<_, String>(7)?,
            }))
        })?
        .collect::<Result<Vec<_>, _>>()?;

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
    // What the fraud rules found about the person's cards is about the person too.
    out.insert(
        "suspicious_cards".into(),
        json!(super::suspicious::of_profile(conn, profile_id)?),
    );
    Ok(Some(Value::Object(out)))
}

/// Erases a person in one transaction: identifiers, consents, traits, segment
/// memberships and the profile row are deleted; transactions and orders keep amounts,
/// lines, store and time but lose every link to the person; raw events of the
/// person's cards lose the card (a bare card scan is deleted). One erasure version
/// records every identifier of the person on the suppression list (keyed hashes) and
/// the cards as each known store's card keys, so agents drop them and no later import
/// or till event brings the person back (see `store/erasures.rs`). Afterwards the WAL
/// is checkpointed and truncated, so the deleted bytes leave the files too
/// (`secure_delete` overwrites them in the database). `None` if the profile is unknown.
pub(super) fn erase_profile(
    conn: &mut Connection,
    suppression: &Suppression,
    profile_id: &str,
    now: Timestamp,
) -> Result<Option<ErasureReport>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if !profile_exists(&tx, profile_id)? {
        return Ok(None);
    }
    let mut erased_ids = tx
        .prepare_cached("SELECT kind, value FROM identifiers WHERE profile_id = ?1")?
        .query_map([profile_id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    // The CRM's number may be on the profile only.
    let customer_no: Option<String> = tx
        .prepare_cached("SELECT customer_no FROM profiles WHERE profile_id = ?1")?
        .query_row([profile_id], |r| r.get(0))?;
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
    let stores = erasures::known_stores(&tx)?;
    let cards = tx
        .prepare_cached(
            "SELECT value FROM identifiers WHERE profile_id = ?1 AND kind = 'card' ORDER BY value",
        )?
        .query_map([profile_id], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;

    let mut anonymised = tx
        .prepare_cached(
            "UPDATE transactions SET profile_id = NULL, card = NULL WHERE profile_id = ?1",
        )?
        .execute([profile_id])?;
    for card in &cards {
        // Anonymous-at-the-time receipts that still name the card.
        anonymised += tx
            .prepare_cached("UPDATE transactions SET card = NULL WHERE card = ?1")?
            .execute([card])?;
        scrub_events(&tx, card)?;
        super::suspicious::forget(&*tx, card)?;
    }
    anonymised += tx
        .prepare_cached("UPDATE orders SET profile_id = NULL WHERE profile_id = ?1")?
        .execute([profile_id])?;
    // Coupons stay counted in the KPIs, without the person.
    let forget_coupons = "UPDATE coupons SET card = NULL, profile_id = NULL, customer_key = NULL
                          WHERE profile_id = ?1 OR card = ?1";
    tx.prepare_cached(forget_coupons)?.execute([profile_id])?;
    for card in &cards {
        tx.prepare_cached(forget_coupons)?.execute([card])?;
    }

    // The identity graph's evidence names the person too; without it a later merge
    // could not bring the erased identifiers back. A row holding one of the person's
    // (unblocked) identifiers only ever linked into this profile.
    tx.prepare_cached(
        "DELETE FROM identity_links WHERE row_key IN
             (SELECT l.row_key FROM identity_links l
              JOIN identifiers i ON i.kind = l.kind AND i.value = l.value
              WHERE i.profile_id = ?1)",
    )?
    .execute([profile_id])?;
    let identifiers_removed = tx
        .prepare_cached("DELETE FROM identifiers WHERE profile_id = ?1")?
        .execute([profile_id])?;
    for table in ["consents", "profile_traits", "segment_members"] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE profile_id = ?1"),
            [profile_id],
        )?;
    }
    tx.prepare_cached("DELETE FROM profiles WHERE profile_id = ?1")?
        .execute([profile_id])?;

    let erasure_version = erasures::record_erasure(&tx, suppression, &erased_ids, &stores, now)?;
    tx.commit()?;
    // Readers hold no snapshot for long; a checkpoint that cannot finish now leaves
    // the old frames until the next one overwrites them.
    match conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        r.get::<_, i64>(0)
    }) {
        Ok(0) => {}
        Ok(_) => tracing::warn!("erase: the WAL checkpoint was blocked by a reader"),
        Err(e) => tracing::warn!("erase: WAL checkpoint failed: {e}"),
    }
    Ok(Some(ErasureReport {
        profile_id: profile_id.to_string(),
        identifiers_removed,
        transactions_anonymised: anonymised,
        erasure_version,
    }))
}

/// Removes `card` from the raw events: a receipt is re-encoded without it (and without
/// its printed last digits), a card scan is deleted. The byte search only narrows the
/// candidates; each is decoded and checked.
fn scrub_events(tx: &Connection, card: &str) -> Result<(), StoreError> {
    let candidates = tx
        .prepare_cached(
            "SELECT store, till, seq, payload FROM events WHERE instr(payload, ?1) > 0",
        )?
        .query_map([card.as_bytes()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Vec<u8>>(3)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    for (store, till, seq, payload) in candidates {
        let mut event = match Event::decode_stored(&payload) {
            Ok(event) => event,
            Err(e) => {
                return Err(StoreError::Corrupt(format!(
                    "event {store}/{till}/{seq}: {e}"
                )))
            }
        };
        match &mut event.kind {
            EventKind::CardScanned { card: scanned } if scanned.as_str() == card => {
                tx.prepare_cached(
                    "DELETE FROM events WHERE store = ?1 AND till = ?2 AND seq = ?3",
                )?
                .execute(params![store, till, seq])?;
            }
            // Receipts and coupons keep what happened, without the card; otherwise the
            // card's digits happened to occur in other bytes.
            kind => {
                if kind.forget_cards(|c| c.as_str() == card) {
                    tx.prepare_cached(
                        "UPDATE events SET payload = ?4 WHERE store = ?1 AND till = ?2 AND seq = ?3",
                    )?
                    .execute(params![store, till, seq, codec::to_bytes(&event)?])?;
                }
            }
        }
    }
    Ok(())
}

/// Records consent changes (upsert per purpose) with their source and time, in one
/// transaction. Purposes are validated by the caller. `None` if the profile is unknown.
pub(super) fn set_consents(
    conn: &mut Connection,
    profile_id: &str,
    changes: &[ConsentChange],
    source: &str,
    now: Timestamp,
) -> Result<Option<()>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if !profile_exists(&tx, profile_id)? {
        return Ok(None);
    }
    for change in changes {
        tx.prepare_cached(
            "INSERT INTO consents (profile_id, purpose, granted, source, at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (profile_id, purpose) DO UPDATE SET
                 granted = excluded.granted, source = excluded.source, at_ms = excluded.at_ms",
        )?
        .execute(params![
            profile_id,
            change.purpose,
            change.granted,
            source,
            now.unix_ms
        ])?;
    }
    tx.commit()?;
    Ok(Some(()))
}
