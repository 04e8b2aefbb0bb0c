//! The identity graph's reads and writes: link rows applied (`identity_links`,
//! `identifiers`, `profiles`), cards resolved to profiles at ingest, identifiers blocked.
//! Every link row is kept as evidence, so whenever a merge is not a plain addition
//! (profiles join, or an identifier gets blocked and a profile splits) the affected
//! profiles are recomputed from the evidence with the pure [`components`]. That makes
//! the result independent of the order rows arrive in.
//!
//! Several hubs on one PostgreSQL: every write to the graph runs under
//! [`locks::merge`] (held until the commit) and reads what it decides on after taking
//! it, so two hubs merging the same identifiers end as one hub would. A known card at
//! ingest (the common case) reads only and takes no lock.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use till360_shared::{CardNumber, Timestamp};

use super::sql::{Engine, Sql, SqlExt, Value};
use super::{locks, suspicious, StoreError};
use crate::identity::{
    components, BlockedIdentifier, CardOwner, IdKind, Identifier, LinkOutcome, LinkRow,
};
use crate::sql_params;

// Keep the earliest sighting so the creation time does not depend on arrival order.
const ENSURE_PROFILE: &str = "INSERT INTO profiles (profile_id, created_at_ms, created_offset_min)
     VALUES (?1, ?2, ?3)
     ON CONFLICT (profile_id) DO UPDATE SET
         created_at_ms = excluded.created_at_ms,
         created_offset_min = excluded.created_offset_min
     WHERE (excluded.created_at_ms, excluded.created_offset_min)
         < (profiles.created_at_ms, profiles.created_offset_min)";
const INSERT_IDENTIFIER: &str =
    "INSERT INTO identifiers (kind, value, profile_id, source, added_at_ms)
     VALUES (?1, ?2, ?3, ?4, ?5)
     ON CONFLICT (kind, value) DO UPDATE SET profile_id = excluded.profile_id";
const PROFILE_OF: &str = "SELECT profile_id FROM identifiers WHERE kind = ?1 AND value = ?2";
const IS_BLOCKED: &str = "SELECT 1 FROM blocked_identifiers WHERE kind = ?1 AND value = ?2";
// `+c.kind`: keep SQLite from scanning every customer_no through the (kind, value)
// index; the rows of one identifier are few, their members are found by row_key.
const CUSTOMERS_OF_SQLITE: &str = "SELECT count(DISTINCT c.value) FROM identity_links x
     JOIN identity_links c ON c.row_key = x.row_key AND +c.kind = 'customer_no'
     WHERE x.kind = ?1 AND x.value = ?2";
// PostgreSQL has no unary plus on text (and plans this join well without the hint).
const CUSTOMERS_OF: &str = "SELECT count(DISTINCT c.value) FROM identity_links x
     JOIN identity_links c ON c.row_key = x.row_key AND c.kind = 'customer_no'
     WHERE x.kind = ?1 AND x.value = ?2";
// The card's profile, its creation time and whether the card is blocked, in one read.
const CARD_OWNER: &str = "SELECT i.profile_id, p.created_at_ms, p.created_offset_min,
        (SELECT count(*) FROM blocked_identifiers WHERE kind = 'card' AND value = ?1)
     FROM (SELECT 1 AS one) AS one
     LEFT JOIN identifiers i ON i.kind = 'card' AND i.value = ?1
     LEFT JOIN profiles p ON p.profile_id = i.profile_id";

fn offset(value: i64) -> Result<i16, StoreError> {
    i16::try_from(value).map_err(|_| StoreError::Corrupt(format!("UTC offset {value} minutes")))
}

/// What [`CARD_OWNER`] says of a card: (profile, its creation, blocked).
pub type CardRow = (Option<String>, Option<(i64, i16)>, bool);

fn card_row(db: &dyn Sql, card: &CardNumber) -> Result<CardRow, StoreError> {
    let mut found = (None, None, false);
    db.query_each(CARD_OWNER, sql_params![card.as_str()], &mut |mut row| {
        let created = match (row.get::<Option<i64>>(1)?, row.get::<Option<i64>>(2)?) {
            (Some(ms), Some(off)) => Some((ms, offset(off)?)),
            _ => None,
        };
        // Moved out, not copied: this read runs for every carded event.
        let profile = match row.take(0) {
            Value::Text(id) => Some(id),
            Value::Null => None,
            other => return Err(StoreError::Corrupt(format!("a profile id {other:?}"))),
        };
        found = (profile, created, row.get::<i64>(3)? > 0);
        Ok(())
    })?;
    Ok(found)
}

/// A PostgreSQL array literal of `items`, each quoted.
pub(super) fn text_array<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let mut array = String::from("{");
    for (i, item) in items.enumerate() {
        if i > 0 {
            array.push(',');
        }
        array.push('"');
        for c in item.chars() {
            if matches!(c, '"' | '\\') {
                array.push('\\');
            }
            array.push(c);
        }
        array.push('"');
    }
    array.push('}');
    array
}

fn int_array(items: impl Iterator<Item = i64>) -> String {
    let items: Vec<String> = items.map(|i| i.to_string()).collect();
    format!("{{{}}}", items.join(","))
}

/// What one batch's till events say of a card: it was seen first at `first` (in the
/// batch's order) and at the earliest at `earliest`.
pub struct CardSighting {
    pub card: CardNumber,
    pub first: Timestamp,
    pub earliest: (i64, i16),
}

/// [`resolve_card`] for every card of a batch at once (PostgreSQL: `unnest` arrays), as
/// resolving each sighting in turn would leave the graph: missing profiles and card
/// identifiers created, profiles' creation moved back to the earliest sighting. Returns
/// every card's row as it stands after that (the batch's sightings then resolve without
/// a write). Nothing is written when every card is known and old enough.
pub fn resolve_cards(
    db: &dyn Sql,
    sightings: &BTreeMap<String, CardSighting>,
) -> Result<HashMap<String, CardRow>, StoreError> {
    let cards: BTreeSet<&str> = sightings.keys().map(String::as_str).collect();
    let mut rows = card_rows(db, &cards)?;
    let to_write: BTreeSet<&str> = sightings
        .iter()
        .filter(|(key, seen)| match rows.get(*key) {
            Some((_, _, true)) => false,
            Some((Some(_), Some(created), false)) => *created > seen.earliest,
            _ => true,
        })
        .map(|(key, _)| key.as_str())
        .collect();
    if to_write.is_empty() {
        return Ok(rows);
    }
    // Another hub may have linked or blocked one of them since: those are read again
    // under the lock (the others need no write, as a batch that writes nothing).
    locks::merge(db)?;
    rows.extend(card_rows(db, &to_write)?);
    let (mut ids, mut ms, mut offsets) = (Vec::new(), Vec::new(), Vec::new());
    let (mut new_cards, mut new_ids, mut added) = (Vec::new(), Vec::new(), Vec::new());
    for (key, seen) in sightings
        .iter()
        .filter(|(key, _)| to_write.contains(key.as_str()))
    {
        let (existing, created, blocked) = rows.get(key).cloned().unwrap_or((None, None, false));
        if blocked {
            continue;
        }
        let profile_id = existing
            .clone()
            .unwrap_or_else(|| Identifier::card(&seen.card).profile_id());
        if existing.is_none() || created.is_none_or(|c| c > seen.earliest) {
            ids.push(profile_id.clone());
            ms.push(seen.earliest.0);
            offsets.push(i64::from(seen.earliest.1));
        }
        if existing.is_none() {
            new_cards.push(key.clone());
            new_ids.push(profile_id.clone());
            added.push(seen.first.unix_ms);
        }
        let created = created.map_or(seen.earliest, |c| c.min(seen.earliest));
        rows.insert(key.clone(), (Some(profile_id), Some(created), false));
    }
    if !ids.is_empty() {
        db.execute(
            "INSERT INTO profiles (profile_id, created_at_ms, created_offset_min)
             SELECT * FROM unnest(CAST(CAST(?1 AS TEXT) AS TEXT[]),
                 CAST(CAST(?2 AS TEXT) AS BIGINT[]), CAST(CAST(?3 AS TEXT) AS BIGINT[]))
             ON CONFLICT (profile_id) DO UPDATE SET
                 created_at_ms = excluded.created_at_ms,
                 created_offset_min = excluded.created_offset_min
             WHERE (excluded.created_at_ms, excluded.created_offset_min)
                 < (profiles.created_at_ms, profiles.created_offset_min)",
            sql_params![
                text_array(ids.iter().map(String::as_str)),
                int_array(ms.into_iter()),
                int_array(offsets.into_iter())
            ],
        )?;
    }
    if !new_cards.is_empty() {
        // A foreign-key check per new card.
        db.execute_bulk(
            "INSERT INTO identifiers (kind, value, profile_id, source, added_at_ms)
             SELECT 'card', c.value, c.profile_id, 'till', c.added_at_ms
             FROM unnest(CAST(CAST(?1 AS TEXT) AS TEXT[]), CAST(CAST(?2 AS TEXT) AS TEXT[]),
                 CAST(CAST(?3 AS TEXT) AS BIGINT[])) AS c(value, profile_id, added_at_ms)
             ON CONFLICT (kind, value) DO UPDATE SET profile_id = excluded.profile_id",
            sql_params![
                text_array(new_cards.iter().map(String::as_str)),
                text_array(new_ids.iter().map(String::as_str)),
                int_array(added.into_iter())
            ],
        )?;
    }
    Ok(rows)
}

/// [`CARD_OWNER`] for several cards in one read (PostgreSQL only: the cards go as one
/// text array), keyed by card number.
pub fn card_rows(
    db: &dyn Sql,
    cards: &BTreeSet<&str>,
) -> Result<HashMap<String, CardRow>, StoreError> {
    let array = text_array(cards.iter().copied());
    let mut found = HashMap::with_capacity(cards.len());
    db.query_each(
        "SELECT c.card, i.profile_id, p.created_at_ms, p.created_offset_min,
             (SELECT count(*) FROM blocked_identifiers b
              WHERE b.kind = 'card' AND b.value = c.card)
         FROM unnest(CAST(CAST(?1 AS TEXT) AS TEXT[])) AS c(card)
         LEFT JOIN identifiers i ON i.kind = 'card' AND i.value = c.card
         LEFT JOIN profiles p ON p.profile_id = i.profile_id",
        sql_params![array],
        &mut |mut row| {
            let created = match (row.get::<Option<i64>>(2)?, row.get::<Option<i64>>(3)?) {
                (Some(ms), Some(off)) => Some((ms, offset(off)?)),
                _ => None,
            };
            let card = match row.take(0) {
                Value::Text(card) => card,
                other => return Err(StoreError::Corrupt(format!("a card number {other:?}"))),
            };
            let profile = match row.take(1) {
                Value::Text(id) => Some(id),
                Value::Null => None,
                other => return Err(StoreError::Corrupt(format!("a profile id {other:?}"))),
            };
            found.insert(card, (profile, created, row.get::<i64>(4)? > 0));
            Ok(())
        },
    )?;
    Ok(found)
}

/// The profile a till event with `card` recorded `at` belongs to, creating it when
/// the card is new.
pub fn resolve_card(
    db: &dyn Sql,
    card: &CardNumber,
    at: Timestamp,
) -> Result<CardOwner, StoreError> {
    let row = card_row(db, card)?;
    resolve_card_from(db, card, at, row)
}

/// [`resolve_card`] with the card's row already read in this transaction (`row`, as
/// [`card_rows`] reads it).
pub fn resolve_card_from(
    db: &dyn Sql,
    card: &CardNumber,
    at: Timestamp,
    row: CardRow,
) -> Result<CardOwner, StoreError> {
    // One read for the common case (a known card, profile already older than the
    // event): no write at all.
    // Cards on the suppression list (erased) never get here: the store leaves them out
    // of the event first (`store::ingest`).
    let (existing, created, blocked) = row;
    if blocked {
        return Ok(CardOwner::Blocked);
    }
    if let (Some(id), Some(created)) = (&existing, created) {
        if created <= (at.unix_ms, at.offset_min) {
            return Ok(CardOwner::Profile(id.clone()));
        }
    }
    // A write: on PostgreSQL another hub may have linked or blocked the card since the
    // read above, so read again under the lock.
    let existing = match db.engine() {
        Engine::Sqlite => existing,
        Engine::Postgres => {
            locks::merge(db)?;
            let (existing, _, blocked) = card_row(db, card)?;
            if blocked {
                return Ok(CardOwner::Blocked);
            }
            existing
        }
    };
    let profile_id = existing
        .clone()
        .unwrap_or_else(|| Identifier::card(card).profile_id());
    db.execute(
        ENSURE_PROFILE,
        sql_params![profile_id, at.unix_ms, i64::from(at.offset_min)],
    )?;
    if existing.is_none() {
        db.execute(
            INSERT_IDENTIFIER,
            sql_params!["card", card.as_str(), profile_id, "till", at.unix_ms],
        )?;
    }
    Ok(CardOwner::Profile(profile_id))
}

/// Every blocked identifier, for the import summary and the API.
pub fn blocked_identifiers(db: &dyn Sql) -> Result<Vec<BlockedIdentifier>, StoreError> {
    let mut blocked = Vec::new();
    db.query_each(
        "SELECT kind, value, customers, reason FROM blocked_identifiers ORDER BY kind, value",
        sql_params![],
        &mut |row| {
            blocked.push(BlockedIdentifier {
                kind: row.get(0)?,
                value: row.get(1)?,
                customers: row.get::<i64>(2)?.max(0) as u64,
                reason: row.get(3)?,
            });
            Ok(())
        },
    )?;
    Ok(blocked)
}

fn profile_of(db: &dyn Sql, id: &Identifier) -> Result<Option<String>, StoreError> {
    db.query_value(PROFILE_OF, sql_params![id.kind.as_str(), id.value])
}

/// Applies one link row inside the caller's transaction: records it as evidence,
/// blocks identifiers that now link more than `max_customers` customer numbers, and
/// merges (or splits) the profiles involved.
pub fn apply_link(
    db: &dyn Sql,
    row: &LinkRow,
    max_customers: usize,
    now: Timestamp,
) -> Result<LinkOutcome, StoreError> {
    locks::merge(db)?;
    let ids: BTreeSet<Identifier> = row.identifiers.iter().cloned().collect();
    for id in &ids {
        db.execute(
            "INSERT INTO identity_links (row_key, kind, value) VALUES (?1, ?2, ?3)
             ON CONFLICT DO NOTHING",
            sql_params![row.key, id.kind.as_str(), id.value],
        )?;
    }
    // A card flagged as suspicious links nothing until cleared (the row stays as evidence:
    // `relink` applies it then).
    let mut ids = ids;
    for id in ids.clone() {
        if id.kind == IdKind::Card && suspicious::is_flagged(db, &id.value)? {
            ids.remove(&id);
        }
    }
    let customers_of = match db.engine() {
        Engine::Sqlite => CUSTOMERS_OF_SQLITE,
        Engine::Postgres => CUSTOMERS_OF,
    };
    let has_customer = ids.iter().any(|id| id.kind == IdKind::CustomerNo);
    let mut active = Vec::new();
    let mut newly_blocked = Vec::new();
    let mut blocked_ids = Vec::new();
    for id in &ids {
        let was_blocked = db.exists(IS_BLOCKED, sql_params![id.kind.as_str(), id.value])?;
        let customers: i64 = if has_customer && id.kind != IdKind::CustomerNo {
            db.query_one(customers_of, sql_params![id.kind.as_str(), id.value])?
                .get(0)?
        } else {
            0
        };
        let over = usize::try_from(customers).unwrap_or(usize::MAX) > max_customers;
        if was_blocked {
            if over {
                db.execute(
                    "UPDATE blocked_identifiers
                     SET customers = CASE WHEN customers > ?3 THEN customers ELSE ?3 END
                     WHERE kind = ?1 AND value = ?2",
                    sql_params![id.kind.as_str(), id.value, customers],
                )?;
            }
        } else if over {
            let blocked = BlockedIdentifier {
                kind: id.kind.as_str().to_string(),
                value: id.value.clone(),
                customers: customers.max(0) as u64,
                reason: format!(
                    "links {customers} customers (more than max_customers_per_identifier = {max_customers})"
                ),
            };
            db.execute(
                "INSERT INTO blocked_identifiers (kind, value, customers, reason)
                 VALUES (?1, ?2, ?3, ?4)",
                sql_params![blocked.kind, blocked.value, customers, blocked.reason],
            )?;
            newly_blocked.push(blocked);
            blocked_ids.push(id.clone());
        } else {
            active.push(id.clone());
        }
    }

    let mut current: BTreeMap<Identifier, Option<String>> = BTreeMap::new();
    for id in active.iter().chain(&blocked_ids) {
        current.insert(id.clone(), profile_of(db, id)?);
    }
    let touched: BTreeSet<String> = current.values().flatten().cloned().collect();
    let missing: Vec<Identifier> = active
        .iter()
        .filter(|id| current.get(*id).is_some_and(Option::is_none))
        .cloned()
        .collect();

    let mut outcome = LinkOutcome {
        newly_blocked,
        ..LinkOutcome::default()
    };
    if blocked_ids.is_empty() {
        let Some(target) = touched
            .iter()
            .cloned()
            .chain(missing.iter().map(Identifier::profile_id))
            .min()
        else {
            return Ok(outcome);
        };
        // The common case: nothing to join, the id stays; only add what is new.
        if touched.len() <= 1 && touched.iter().all(|t| *t == target) {
            db.execute(
                ENSURE_PROFILE,
                sql_params![
                    target,
                    row.seen_at.unix_ms,
                    i64::from(row.seen_at.offset_min)
                ],
            )?;
            for id in &missing {
                db.execute(
                    INSERT_IDENTIFIER,
                    sql_params![id.kind.as_str(), id.value, target, row.source, now.unix_ms],
                )?;
            }
            outcome.created = touched.is_empty();
            outcome.profile_id = Some(target);
            return Ok(outcome);
        }
    }
    regroup(db, &touched, &missing, &blocked_ids, row, now)?;
    outcome.merged = true;
    outcome.profile_id = match active.first() {
        Some(id) => profile_of(db, id)?,
        None => None,
    };
    Ok(outcome)
}

/// Applies again every link row that names `id` (a card cleared after it was flagged:
/// the links it held back are made now).
pub fn relink(
    db: &dyn Sql,
    id: &Identifier,
    max_customers: usize,
    now: Timestamp,
) -> Result<(), StoreError> {
    for key in rows_naming(db, id)? {
        let identifiers = row_members(db, &key)?;
        let source = match key.split_once(':') {
            Some(("crm", _)) => "crm",
            Some(("order", _)) => "online",
            _ => "api",
        };
        let row = LinkRow {
            key,
            source: source.to_string(),
            identifiers,
            seen_at: now,
        };
        apply_link(db, &row, max_customers, now)?;
    }
    Ok(())
}

/// The keys of the link rows that name `id`.
fn rows_naming(db: &dyn Sql, id: &Identifier) -> Result<Vec<String>, StoreError> {
    let mut keys = Vec::new();
    db.query_each(
        "SELECT row_key FROM identity_links WHERE kind = ?1 AND value = ?2",
        sql_params![id.kind.as_str(), id.value],
        &mut |row| {
            keys.push(row.get(0)?);
            Ok(())
        },
    )?;
    Ok(keys)
}

/// The identifiers of `select` (kind, value), `?1` bound to `key`.
fn identifiers_of(db: &dyn Sql, select: &str, key: &str) -> Result<Vec<Identifier>, StoreError> {
    let mut ids = Vec::new();
    db.query_each(select, sql_params![key], &mut |row| {
        let kind: String = row.get(0)?;
        if let Some(kind) = IdKind::parse(&kind) {
            ids.push(Identifier {
                kind,
                value: row.get(1)?,
            });
        }
        Ok(())
    })?;
    Ok(ids)
}

/// The identifiers the link row `key` names.
fn row_members(db: &dyn Sql, key: &str) -> Result<Vec<Identifier>, StoreError> {
    identifiers_of(
        db,
        "SELECT kind, value FROM identity_links WHERE row_key = ?1",
        key,
    )
}

struct OldProfile {
    created: (i64, i16),
    customer_no: Option<String>,
    members: Vec<Identifier>,
}

/// Recomputes the profiles `old_ids` (plus the row's new identifiers, minus the newly
/// blocked ones) from the evidence and moves everything hanging off them.
fn regroup(
    db: &dyn Sql,
    old_ids: &BTreeSet<String>,
    added: &[Identifier],
    removed: &[Identifier],
    row: &LinkRow,
    now: Timestamp,
) -> Result<(), StoreError> {
    let mut old: BTreeMap<String, OldProfile> = BTreeMap::new();
    let mut origin: BTreeMap<Identifier, String> = BTreeMap::new();
    for p in old_ids {
        let profile = db.query_one(
            "SELECT created_at_ms, created_offset_min, customer_no FROM profiles
             WHERE profile_id = ?1",
            sql_params![p],
        )?;
        let created = (profile.get::<i64>(0)?, offset(profile.get(1)?)?);
        let customer_no: Option<String> = profile.get(2)?;
        let members = identifiers_of(
            db,
            "SELECT kind, value FROM identifiers WHERE profile_id = ?1",
            p,
        )?;
        for m in &members {
            origin.insert(m.clone(), p.clone());
        }
        old.insert(
            p.clone(),
            OldProfile {
                created,
                customer_no,
                members,
            },
        );
    }
    let mut nodes: BTreeSet<Identifier> = origin.keys().cloned().collect();
    nodes.extend(added.iter().cloned());
    for id in removed {
        nodes.remove(id);
    }
    let mut row_keys = BTreeSet::new();
    for node in &nodes {
        row_keys.extend(rows_naming(db, node)?);
    }
    let mut rows = Vec::with_capacity(row_keys.len());
    for key in &row_keys {
        rows.push(row_members(db, key)?);
    }
    let comps = components(&nodes, &rows);
    let comp_of: BTreeMap<&Identifier, &str> = comps
        .iter()
        .flat_map(|c| c.members.iter().map(move |m| (m, c.profile_id.as_str())))
        .collect();

    // Profile rows first (identifiers and transactions reference them).
    for comp in &comps {
        let mut created = comp
            .members
            .iter()
            .filter_map(|m| origin.get(m))
            .map(|p| old[p].created)
            .min();
        if comp.members.iter().any(|m| !origin.contains_key(m)) {
            let seen = (row.seen_at.unix_ms, row.seen_at.offset_min);
            created = Some(created.map_or(seen, |c| c.min(seen)));
        }
        let (ms, offset) = created.unwrap_or((now.unix_ms, now.offset_min));
        db.execute(
            ENSURE_PROFILE,
            sql_params![comp.profile_id, ms, i64::from(offset)],
        )?;
    }
    // Personal data and consents follow the customer number of the old profile (else
    // any remaining member); a target keeps its own values and gains what it lacks.
    for (p, profile) in &old {
        let anchor = profile
            .customer_no
            .as_ref()
            .map(|c| Identifier {
                kind: IdKind::CustomerNo,
                value: c.clone(),
            })
            .filter(|c| comp_of.contains_key(c))
            .or_else(|| {
                profile
                    .members
                    .iter()
                    .find(|m| comp_of.contains_key(m))
                    .cloned()
            });
        let Some(target) = anchor.and_then(|a| comp_of.get(&a).copied()) else {
            continue;
        };
        if target == p {
            continue;
        }
        db.execute(
            "UPDATE profiles SET (customer_no, first_name, last_name, birth_date, postal_code,
                 language, member_since, points, updated_at_ms) =
               (SELECT coalesce(t.customer_no, o.customer_no), coalesce(t.first_name, o.first_name),
                 coalesce(t.last_name, o.last_name), coalesce(t.birth_date, o.birth_date),
                 coalesce(t.postal_code, o.postal_code), coalesce(t.language, o.language),
                 coalesce(t.member_since, o.member_since), coalesce(t.points, o.points),
                 CASE WHEN coalesce(t.updated_at_ms, 0) > coalesce(o.updated_at_ms, 0)
                      THEN coalesce(t.updated_at_ms, 0) ELSE coalesce(o.updated_at_ms, 0) END
                FROM profiles t, profiles o WHERE t.profile_id = ?1 AND o.profile_id = ?2)
             WHERE profile_id = ?1",
            sql_params![target, p],
        )?;
        db.execute(
            "INSERT INTO consents (profile_id, purpose, granted, source, at_ms)
             SELECT ?1, purpose, granted, source, at_ms FROM consents WHERE profile_id = ?2
             ON CONFLICT (profile_id, purpose) DO UPDATE SET
                 granted = excluded.granted, source = excluded.source, at_ms = excluded.at_ms
             WHERE excluded.at_ms > consents.at_ms",
            sql_params![target, p],
        )?;
    }
    for comp in &comps {
        for m in &comp.members {
            let (source, added_at) = if origin.contains_key(m) {
                ("", 0)
            } else {
                (row.source.as_str(), now.unix_ms)
            };
            db.execute(
                INSERT_IDENTIFIER,
                sql_params![m.kind.as_str(), m.value, comp.profile_id, source, added_at],
            )?;
        }
    }
    for id in removed {
        db.execute(
            "DELETE FROM identifiers WHERE kind = ?1 AND value = ?2",
            sql_params![id.kind.as_str(), id.value],
        )?;
    }
    let survivors: BTreeSet<&str> = comps.iter().map(|c| c.profile_id.as_str()).collect();
    for p in old.keys() {
        db.execute(
            "UPDATE transactions SET profile_id =
                 (SELECT i.profile_id FROM identifiers i WHERE i.kind = 'card' AND i.value = transactions.card)
             WHERE profile_id = ?1",
            sql_params![p],
        )?;
        db.execute(
            "UPDATE orders SET profile_id =
                 (SELECT min(i.profile_id) FROM identity_links l
                  JOIN identifiers i ON i.kind = l.kind AND i.value = l.value
                  WHERE l.row_key = 'order:' || orders.order_id)
             WHERE profile_id = ?1",
            sql_params![p],
        )?;
        if !survivors.contains(p.as_str()) {
            for sql in [
                "DELETE FROM consents WHERE profile_id = ?1",
                "DELETE FROM profile_traits WHERE profile_id = ?1",
                "DELETE FROM segment_members WHERE profile_id = ?1",
                "DELETE FROM profiles WHERE profile_id = ?1",
            ] {
                db.execute(sql, sql_params![p])?;
            }
        }
    }
    Ok(())
}
