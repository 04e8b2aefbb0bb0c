//! Suspicious cards (`suspicious_cards`): the SQL around the pure rules of
//! `identity::suspicious`. At ingest every carded receipt has its card's receipts around it
//! assessed ([`check_card`], in the ingest transaction, so the flag and the receipt commit
//! together and the order receipts arrive in does not matter: whichever receipt completes
//! a pattern sees the others). A flagged card gets no digest (no personal coupon) and links
//! nothing further in the identity graph until a marketer clears it ([`clear`]); clearing
//! covers the receipts seen so far, a new pattern after it flags the card again.

use serde::Serialize;
use till360_shared::{CardNumber, Timestamp};

use super::sql::{transaction, Sql, SqlExt, TxKind};
use super::StoreError;
use crate::config::FraudConfig;
use crate::identity::suspicious::{assess, basket_fingerprint, CardReceipt, Finding};
use crate::sql_params;

/// Receipts around a new one that the rules look at: a day and a half either side covers
/// the longest pattern (a local day; a chain of hops or a house card's run within it).
const WINDOW_MS: i64 = 36 * 3_600_000;
/// At most this many receipts of one card are read per check (a house card's busiest
/// stretch is plenty to show it).
const MAX_RECEIPTS: i64 = 2_000;
/// Findings kept per card (the first ones are the evidence that matters).
const MAX_FINDINGS: usize = 20;

/// A flagged (or cleared) card as `GET /api/v1/identifiers/suspicious` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SuspiciousCard {
    /// The path segment of `.../suspicious/{id}/clear`: the card number.
    pub id: String,
    pub kind: &'static str,
    pub card: String,
    /// `flagged` (no digest, no further merging) or `cleared`.
    pub status: &'static str,
    pub flagged_at: String,
    pub cleared_at: Option<String>,
    pub findings: Vec<Finding>,
}

/// Whether `card` is flagged and not cleared.
pub fn is_flagged(db: &dyn Sql, card: &str) -> Result<bool, StoreError> {
    db.exists(
        "SELECT 1 FROM suspicious_cards WHERE card = ?1 AND cleared_at_ms IS NULL",
        sql_params![card],
    )
}

/// Assesses `card`'s receipts around `at` and records what is found. Returns the findings
/// when this check flagged the card (it was not flagged before).
///
/// A card's receipts are read through its profile (`profile_id`, which every receipt of
/// the card shares: they follow the card when profiles merge), as the profile and time
/// index serves them. A blocked card (no profile) is never checked: it is no one's card,
/// it gets no digest and links nothing already.
pub fn check_card(
    conn: &dyn Sql,
    rules: &FraudConfig,
    (profile_id, card): (&str, &CardNumber),
    at: Timestamp,
    now: Timestamp,
) -> Result<Option<Vec<Finding>>, StoreError> {
    if !rules.enabled {
        return Ok(None);
    }
    // Most cards have a receipt or two around a new one, in a store or two: fewer than
    // any rule needs. The profile's receipts and stores are counted (its other cards'
    // too, an upper bound), which the profile, time and store index answers alone.
    let (from, to) = (
        at.unix_ms.saturating_sub(WINDOW_MS),
        at.unix_ms.saturating_add(WINDOW_MS),
    );
    // Stores are counted (a DISTINCT costs a temporary table per check) only when
    // impossible travel is what could fire.
    let around = conn.query_one(
        "SELECT count(*), min(store) = max(store) FROM transactions
         WHERE profile_id = ?1 AND at_ms BETWEEN ?2 AND ?3",
        sql_params![profile_id, from, to],
    )?;
    let receipts: i64 = around.get(0)?;
    let stores_at_most = match around.get::<Option<bool>>(1)? {
        Some(true) => 1,
        _ => receipts,
    };
    if !could_fire(rules, receipts, stores_at_most) {
        return Ok(None);
    }
    if !could_fire(rules, receipts, 0) {
        let stores: i64 = conn
            .query_one(
                "SELECT count(DISTINCT store) FROM transactions
                 WHERE profile_id = ?1 AND at_ms BETWEEN ?2 AND ?3",
                sql_params![profile_id, from, to],
            )?
            .get(0)?;
        if !could_fire(rules, receipts, stores) {
            return Ok(None);
        }
    }
    let mut receipts = Vec::new();
    conn.query_each(
        "SELECT store, till, seq, at_ms, offset_min, total_cents, lines FROM transactions
         WHERE profile_id = ?1 AND at_ms BETWEEN ?2 AND ?3 AND card = ?5
         ORDER BY at_ms LIMIT ?4",
        sql_params![profile_id, from, to, MAX_RECEIPTS, card.as_str()],
        &mut |mut row| {
            let basket = match row.take(6) {
                crate::store::sql::Value::Blob(lines) => basket_fingerprint(&lines),
                _ => {
                    return Err(StoreError::Corrupt(
                        "a receipt's lines are not a blob".into(),
                    ))
                }
            };
            receipts.push(CardReceipt {
                store: row.get(0)?,
                till: row.get(1)?,
                seq: row.get::<i64>(2)?.max(0) as u64,
                at: Timestamp::from_unix_ms(
                    row.get(3)?,
                    i16::try_from(row.get::<i64>(4)?)
                        .map_err(|_| StoreError::Corrupt("a UTC offset beyond i16".into()))?,
                ),
                total_cents: row.get(5)?,
                basket,
            });
            Ok(())
        },
    )?;
    record(conn, card, assess(rules, &receipts), now)
}

/// Records `found` (what the rules found around one receipt of `card`); returns the
/// findings when this flagged the card (it was not flagged before).
fn record(
    conn: &dyn Sql,
    card: &CardNumber,
    found: Vec<Finding>,
    now: Timestamp,
) -> Result<Option<Vec<Finding>>, StoreError> {
    if found.is_empty() {
        return Ok(None);
    }
    let existing: Option<(String, Option<i64>, i64)> = conn
        .query_opt(
            "SELECT findings, cleared_at_ms, cleared_through_ms FROM suspicious_cards
             WHERE card = ?1",
            sql_params![card.as_str()],
        )?
        .map(|r| Ok::<_, StoreError>((r.get(0)?, r.get(1)?, r.get(2)?)))
        .transpose()?;
    let (mut kept, was_flagged, cleared_through) = match &existing {
        None => (Vec::new(), false, i64::MIN),
        Some((json, cleared_at, through)) => {
            let kept: Vec<Finding> = if cleared_at.is_none() {
                parse_findings(card.as_str(), json)?
            } else {
                Vec::new()
            };
            (kept, cleared_at.is_none(), *through)
        }
    };
    // What a marketer cleared stays cleared: only patterns with newer receipts count.
    let new: Vec<Finding> = found
        .into_iter()
        .filter(|f| f.last_at_ms() > cleared_through)
        .filter(|f| !kept.iter().any(|k| k.key() == f.key()))
        .collect();
    if new.is_empty() {
        return Ok(None);
    }
    kept.extend(new.iter().cloned());
    kept.truncate(MAX_FINDINGS);
    let json = serde_json::to_string(&kept)
        .map_err(|e| StoreError::Corrupt(format!("suspicious card findings: {e}")))?;
    if was_flagged {
        conn.execute(
            "UPDATE suspicious_cards SET findings = ?2 WHERE card = ?1",
            sql_params![card.as_str(), json],
        )?;
        return Ok(None);
    }
    conn.execute(
        "INSERT INTO suspicious_cards (card, flagged_at_ms, findings, cleared_at_ms,
             cleared_through_ms)
         VALUES (?1, ?2, ?3, NULL, ?4)
         ON CONFLICT (card) DO UPDATE SET flagged_at_ms = excluded.flagged_at_ms,
             findings = excluded.findings, cleared_at_ms = NULL",
        sql_params![card.as_str(), now.unix_ms, json, cleared_through.max(0)],
    )?;
    Ok(Some(new))
}

/// [`check_card`] for every carded receipt of `store`/`till` with seq in `first..=last`
/// (just written), as checking each right after writing it would, in seq order: each
/// sees the receipts before it, not the batch's later ones. Two reads for the batch: only
/// the receipts with enough of their profile's receipts around them (an upper bound of
/// their card's before them: the batch's later ones are counted too) are assessed.
/// Returns each flagging check's receipt seq, card and findings.
pub fn check_receipts(
    conn: &dyn Sql,
    rules: &FraudConfig,
    (store, till): (&str, &str),
    (first, last): (i64, i64),
    now: Timestamp,
) -> Result<Vec<(i64, CardNumber, Vec<Finding>)>, StoreError> {
    if !rules.enabled {
        return Ok(Vec::new());
    }
    let mut candidates = Vec::new();
    conn.query_each(
        "SELECT b.seq, b.card, b.at_ms, b.offset_min, around.receipts, b.profile_id,
             around.stores
         FROM transactions b
         CROSS JOIN LATERAL (
             SELECT count(*) AS receipts, count(DISTINCT t.store) AS stores
             FROM transactions t
             WHERE t.profile_id = b.profile_id
                 AND t.at_ms BETWEEN b.at_ms - ?4 AND b.at_ms + ?4
         ) AS around
         WHERE b.store = ?1 AND b.till = ?2 AND b.seq BETWEEN ?3 AND ?5 AND b.card IS NOT NULL
             AND b.profile_id IS NOT NULL
         ORDER BY b.seq",
        sql_params![store, till, first, WINDOW_MS, last],
        &mut |row| {
            if could_fire(rules, row.get(4)?, row.get(6)?) {
                let offset = i16::try_from(row.get::<i64>(3)?)
                    .map_err(|_| StoreError::Corrupt("a UTC offset beyond i16".into()))?;
                candidates.push((
                    row.get::<i64>(0)?,
                    row.get::<String>(1)?,
                    Timestamp::from_unix_ms(row.get(2)?, offset),
                    row.get::<String>(5)?,
                ));
            }
            Ok(())
        },
    )?;
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    // Every candidate's receipts in one read (PostgreSQL: their profiles as one array,
    // the other cards of those profiles left out), each candidate's window then taken
    // from them as `check_card` reads it.
    let cards: std::collections::BTreeSet<&str> = candidates
        .iter()
        .map(|(_, card, _, _)| card.as_str())
        .collect();
    let profiles: std::collections::BTreeSet<&str> = candidates
        .iter()
        .map(|(_, _, _, profile)| profile.as_str())
        .collect();
    let from = candidates.iter().map(|c| c.2.unix_ms).min().unwrap_or(0);
    let to = candidates.iter().map(|c| c.2.unix_ms).max().unwrap_or(0);
    let mut by_card: std::collections::HashMap<String, Vec<CardReceipt>> = Default::default();
    conn.query_each(
        "SELECT card, store, till, seq, at_ms, offset_min, total_cents, lines FROM transactions
         WHERE profile_id = ANY(CAST(CAST(?1 AS TEXT) AS TEXT[])) AND at_ms BETWEEN ?2 AND ?3
             AND card IS NOT NULL
         ORDER BY at_ms",
        sql_params![
            super::identity::text_array(profiles.iter().copied()),
            from.saturating_sub(WINDOW_MS),
            to.saturating_add(WINDOW_MS)
        ],
        &mut |mut row| {
            let card: String = row.get(0)?;
            if !cards.contains(card.as_str()) {
                return Ok(());
            }
            let basket = match row.take(7) {
                crate::store::sql::Value::Blob(lines) => basket_fingerprint(&lines),
                _ => {
                    return Err(StoreError::Corrupt(
                        "a receipt's lines are not a blob".into(),
                    ))
                }
            };
            by_card.entry(card).or_default().push(CardReceipt {
                store: row.get(1)?,
                till: row.get(2)?,
                seq: row.get::<i64>(3)?.max(0) as u64,
                at: Timestamp::from_unix_ms(
                    row.get(4)?,
                    i16::try_from(row.get::<i64>(5)?)
                        .map_err(|_| StoreError::Corrupt("a UTC offset beyond i16".into()))?,
                ),
                total_cents: row.get(6)?,
                basket,
            });
            Ok(())
        },
    )?;
    let mut flagged = Vec::new();
    for (seq, card, at, _) in candidates {
        let (from, to) = (
            at.unix_ms.saturating_sub(WINDOW_MS),
            at.unix_ms.saturating_add(WINDOW_MS),
        );
        let receipts: Vec<CardReceipt> = by_card
            .get(&card)
            .into_iter()
            .flatten()
            .filter(|r| (from..=to).contains(&r.at.unix_ms))
            // As the check of this receipt alone saw them: not the batch's later ones.
            .filter(|r| !(r.store == store && r.till == till && r.seq > seq.max(0) as u64))
            .take(MAX_RECEIPTS as usize)
            .cloned()
            .collect();
        let card = CardNumber::parse(&card)
            .map_err(|e| StoreError::Corrupt(format!("a stored card number: {e}")))?;
        if let Some(findings) = record(conn, &card, assess(rules, &receipts), now)? {
            flagged.push((seq, card, findings));
        }
    }
    Ok(flagged)
}

/// Whether any rule could fire on a window with this many receipts in this many stores
/// (or more: the counts may be upper bounds). Impossible travel needs
/// `travel_min_stores` stores; too many receipts on a day and a house card need
/// `max_receipts_per_day + 1` and `house_card_receipts` receipts.
fn could_fire(rules: &FraudConfig, receipts: i64, stores: i64) -> bool {
    let fewest_by_count = rules
        .max_receipts_per_day
        .saturating_add(1)
        .min(rules.house_card_receipts);
    stores >= i64::from(rules.travel_min_stores) || receipts >= i64::from(fewest_by_count)
}

fn parse_findings(card: &str, json: &str) -> Result<Vec<Finding>, StoreError> {
    serde_json::from_str(json).map_err(|e| {
        let last4 = &card[card.len().saturating_sub(4)..];
        StoreError::Corrupt(format!("suspicious card …{last4}: findings: {e}"))
    })
}

pub(super) fn view(
    card: String,
    flagged: i64,
    json: &str,
    cleared: Option<i64>,
) -> Result<SuspiciousCard, StoreError> {
    Ok(SuspiciousCard {
        findings: parse_findings(&card, json)?,
        id: card.clone(),
        kind: "card",
        card,
        status: if cleared.is_some() {
            "cleared"
        } else {
            "flagged"
        },
        flagged_at: Timestamp::from_unix_ms(flagged, 0).to_rfc3339(),
        cleared_at: cleared.map(|ms| Timestamp::from_unix_ms(ms, 0).to_rfc3339()),
    })
}

/// Every flagged or cleared card, flagged ones first, newest first.
pub fn list(db: &dyn Sql) -> Result<Vec<SuspiciousCard>, StoreError> {
    views(
        db,
        "SELECT card, flagged_at_ms, findings, cleared_at_ms FROM suspicious_cards
         ORDER BY CASE WHEN cleared_at_ms IS NULL THEN 0 ELSE 1 END, flagged_at_ms DESC, card",
        sql_params![],
    )
}

/// The flagged or cleared cards of a profile (for its export).
pub fn of_profile(db: &dyn Sql, profile_id: &str) -> Result<Vec<SuspiciousCard>, StoreError> {
    views(
        db,
        "SELECT s.card, s.flagged_at_ms, s.findings, s.cleared_at_ms FROM suspicious_cards s
         JOIN identifiers i ON i.kind = 'card' AND i.value = s.card
         WHERE i.profile_id = ?1 ORDER BY s.card",
        sql_params![profile_id],
    )
}

/// The rows of `sql` (card, flagged_at_ms, findings, cleared_at_ms).
fn views(
    db: &dyn Sql,
    sql: &str,
    params: &[&dyn crate::store::sql::ToParam],
) -> Result<Vec<SuspiciousCard>, StoreError> {
    let mut cards = Vec::new();
    db.query_each(sql, params, &mut |row| {
        let json: String = row.get(2)?;
        cards.push(view(row.get(0)?, row.get(1)?, &json, row.get(3)?)?);
        Ok(())
    })?;
    Ok(cards)
}

/// Clears a flagged card (what it was flagged for so far no longer counts); `None` when the
/// card was never flagged. Clearing a cleared card changes nothing. The caller re-links the
/// card's identity rows in the same transaction.
pub fn clear(
    conn: &dyn Sql,
    card: &str,
    now: Timestamp,
) -> Result<Option<SuspiciousCard>, StoreError> {
    let row: Option<(i64, String, Option<i64>)> = conn
        .query_opt(
            "SELECT flagged_at_ms, findings, cleared_at_ms FROM suspicious_cards WHERE card = ?1",
            sql_params![card],
        )?
        .map(|r| Ok::<_, StoreError>((r.get(0)?, r.get(1)?, r.get(2)?)))
        .transpose()?;
    let Some((flagged, json, cleared)) = row else {
        return Ok(None);
    };
    if cleared.is_some() {
        return view(card.to_string(), flagged, &json, cleared).map(Some);
    }
    let through = parse_findings(card, &json)?
        .iter()
        .map(Finding::last_at_ms)
        .max()
        .unwrap_or(0);
    conn.execute(
        "UPDATE suspicious_cards SET cleared_at_ms = ?2,
             cleared_through_ms = CASE WHEN cleared_through_ms > ?3 THEN cleared_through_ms
                                       ELSE ?3 END
         WHERE card = ?1",
        sql_params![card, now.unix_ms, through],
    )?;
    view(card.to_string(), flagged, &json, Some(now.unix_ms)).map(Some)
}

/// Forgets `card` (an erase: the hub keeps no card of an erased person).
pub fn forget(db: &dyn Sql, card: &str) -> Result<(), StoreError> {
    db.execute(
        "DELETE FROM suspicious_cards WHERE card = ?1",
        sql_params![card],
    )?;
    Ok(())
}

/// Clears a flagged card and, in the same transaction, makes the links that stopped at
/// the card while it was flagged (see [`clear`]). `None` when the card was never flagged.
pub fn clear_and_relink(
    db: &dyn Sql,
    card: &str,
    max_customers: usize,
    now: Timestamp,
) -> Result<Option<SuspiciousCard>, StoreError> {
    transaction(db, TxKind::Write, |tx| {
        let Some(cleared) = clear(tx, card, now)? else {
            return Ok(None);
        };
        super::identity::relink(
            tx,
            &crate::identity::Identifier {
                kind: crate::identity::IdKind::Card,
                value: card.to_string(),
            },
            max_customers,
            now,
        )?;
        Ok(Some(cleared))
    })
}
