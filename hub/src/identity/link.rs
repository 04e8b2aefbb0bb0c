//! Applies link rows to SQLite (the edge of the identity graph). Every link row is
//! kept as evidence in `identity_links`, so whenever a merge is not a plain addition
//! (profiles join, or an identifier gets blocked and a profile splits) the affected
//! profiles are recomputed from the evidence with the pure [`components`]. That makes
//! the result independent of the order rows arrive in.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{params, Connection};
use till360_shared::{CardNumber, Timestamp};

use super::{components, BlockedIdentifier, IdKind, Identifier};
use crate::sql_params;
use crate::store::sql::{Sql, SqlExt};
use crate::store::StoreError;

/// A row that names identifiers of one person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRow {
    /// Stable key of the row in its source (`crm:<customer_no>`, `order:<order_id>`):
    /// applying the same row twice changes nothing.
    pub key: String,
    /// `till`, `crm`, `online` or `api` (kept with each identifier it adds).
    pub source: String,
    pub identifiers: Vec<Identifier>,
    /// The time the row speaks of; a profile exists at least since then.
    pub seen_at: Timestamp,
}

/// What applying a link row did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkOutcome {
    /// The row's profile (`None` when all its identifiers are blocked).
    pub profile_id: Option<String>,
    /// The row created a profile.
    pub created: bool,
    /// The row joined profiles (or, by blocking an identifier, split one).
    pub merged: bool,
    /// Identifiers this row pushed over the limit of customers.
    pub newly_blocked: Vec<BlockedIdentifier>,
}

// Keep the earliest sighting so the creation time does not depend on arrival order.
pub(crate) const ENSURE_PROFILE: &str =
    "INSERT INTO profiles (profile_id, created_at_ms, created_offset_min)
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
const CUSTOMERS_OF: &str = "SELECT count(DISTINCT c.value) FROM identity_links x
     JOIN identity_links c ON c.row_key = x.row_key AND +c.kind = 'customer_no'
     WHERE x.kind = ?1 AND x.value = ?2";

/// Whom a till event's card names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardOwner {
    Profile(String),
    /// The card is blocked from identifying anyone (a shared store card): anonymous.
    Blocked,
}

/// The profile a till event with `card` recorded `at` belongs to, creating it when
/// the card is new.
pub fn resolve_card(
    conn: &Connection,
    card: &CardNumber,
    at: Timestamp,
) -> Result<CardOwner, StoreError> {
    // One read for the common case (a known card, profile already older than the
    // event): no write at all.
    // Cards on the suppression list (erased) never get here: the store leaves them out
    // of the event first (`SqliteStore::merge_event`).
    let (existing, created, blocked): (Option<String>, Option<(i64, i16)>, bool) = conn
        .prepare_cached(
            "SELECT i.profile_id, p.created_at_ms, p.created_offset_min,
                    EXISTS (SELECT 1 FROM blocked_identifiers WHERE kind = 'card' AND value = ?1)
             FROM (SELECT 1)
             LEFT JOIN identifiers i ON i.kind = 'card' AND i.value = ?1
             LEFT JOIN profiles p ON p.profile_id = i.profile_id",
        )?
        .query_row(params![card.as_str()], |r| {
            let created = match (r.get::<_, Option<i64>>(1)?, r.get::<_, Option<i16>>(2)?) {
                (Some(ms), Some(offset)) => Some((ms, offset)),
                _ => None,
            };
            Ok((r.get(0)?, created, r.get(3)?))
        })?;
    if blocked {
        return Ok(CardOwner::Blocked);
    }
    if let (Some(id), Some(created)) = (&existing, created) {
        if created <= (at.unix_ms, at.offset_min) {
            return Ok(CardOwner::Profile(id.clone()));
        }
    }
    let profile_id = existing
        .clone()
        .unwrap_or_else(|| Identifier::card(card).profile_id());
    conn.prepare_cached(ENSURE_PROFILE)?
        .execute(params![profile_id, at.unix_ms, at.offset_min])?;
    if existing.is_none() {
        conn.prepare_cached(INSERT_IDENTIFIER)?.execute(params![
            "card",
            card.as_str(),
            profile_id,
            "till",
            at.unix_ms
        ])?;
    }
    Ok(CardOwner::Profile(profile_id))
}

/// Every blocked identifier, for the import summary and the API.
pub fn blocked_identifiers(conn: &Connection) -> Result<Vec<BlockedIdentifier>, StoreError> {
    let rows = conn
        .prepare_cached(
            "SELECT kind, value, customers, reason FROM blocked_identifiers ORDER BY kind, value",
        )?
        .query_map([], |r| {
            Ok(BlockedIdentifier {
                kind: r.get(0)?,
                value: r.get(1)?,
                customers: r.get::<_, i64>(2)?.max(0) as u64,
                reason: r.get(3)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

fn profile_of(conn: &dyn Sql, id: &Identifier) -> Result<Option<String>, StoreError> {
    conn.query_value(PROFILE_OF, sql_params![id.kind.as_str(), id.value])
}

/// Applies one link row inside the caller's transaction: records it as evidence,
/// blocks identifiers that now link more than `max_customers` customer numbers, and
/// merges (or splits) the profiles involved.
pub fn apply_link(
    conn: &dyn Sql,
    row: &LinkRow,
    max_customers: usize,
    now: Timestamp,
) -> Result<LinkOutcome, StoreError> {
    let ids: BTreeSet<Identifier> = row.identifiers.iter().cloned().collect();
    for id in &ids {
        conn.execute(
            "INSERT INTO identity_links (row_key, kind, value) VALUES (?1, ?2, ?3)
             ON CONFLICT DO NOTHING",
            sql_params![row.key, id.kind.as_str(), id.value],
        )?;
    }
    // A card flagged as suspicious links nothing until cleared (the row stays as evidence:
    // `relink` applies it then).
    let mut ids = ids;
    for id in ids.clone() {
        if id.kind == IdKind::Card && crate::store::suspicious::is_flagged(conn, &id.value)? {
            ids.remove(&id);
        }
    }
    let has_customer = ids.iter().any(|id| id.kind == IdKind::CustomerNo);
    let mut active = Vec::new();
    let mut newly_blocked = Vec::new();
    let mut blocked_ids = Vec::new();
    for id in &ids {
        let was_blocked = conn.exists(IS_BLOCKED, sql_params![id.kind.as_str(), id.value])?;
        let customers: i64 = if has_customer && id.kind != IdKind::CustomerNo {
            conn.query_one(CUSTOMERS_OF, sql_params![id.kind.as_str(), id.value])?
                .get(0)?
        } else {
            0
        };
        let over = usize::try_from(customers).unwrap_or(usize::MAX) > max_customers;
        if was_blocked {
            if over {
                conn.execute(
                    "UPDATE blocked_identifiers SET customers = max(customers, ?3)
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
            conn.execute(
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
        current.insert(id.clone(), profile_of(conn, id)?);
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
            conn.execute(
                ENSURE_PROFILE,
                sql_params![
                    target,
                    row.seen_at.unix_ms,
                    i64::from(row.seen_at.offset_min)
                ],
            )?;
            for id in &missing {
                conn.execute(
                    INSERT_IDENTIFIER,
                    sql_params![id.kind.as_str(), id.value, target, row.source, now.unix_ms],
                )?;
            }
            outcome.created = touched.is_empty();
            outcome.profile_id = Some(target);
            return Ok(outcome);
        }
    }
    regroup(conn, &touched, &missing, &blocked_ids, row, now)?;
    outcome.merged = true;
    outcome.profile_id = match active.first() {
        Some(id) => profile_of(conn, id)?,
        None => None,
    };
    Ok(outcome)
}

/// Applies again every link row that names `id` (a card cleared after it was flagged:
/// the links it held back are made now).
pub fn relink(
    conn: &Connection,
    id: &Identifier,
    max_customers: usize,
    now: Timestamp,
) -> Result<(), StoreError> {
    for key in rows_naming(conn, id)? {
        let identifiers = row_members(conn, &key)?;
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
        apply_link(conn, &row, max_customers, now)?;
    }
    Ok(())
}

/// The keys of the link rows that name `id`.
fn rows_naming(conn: &dyn Sql, id: &Identifier) -> Result<Vec<String>, StoreError> {
    conn.query(
        "SELECT row_key FROM identity_links WHERE kind = ?1 AND value = ?2",
        sql_params![id.kind.as_str(), id.value],
    )?
    .iter()
    .map(|r| r.get::<String>(0))
    .collect()
}

/// The identifiers the link row `key` names.
fn row_members(conn: &dyn Sql, key: &str) -> Result<Vec<Identifier>, StoreError> {
    members(
        conn,
        "SELECT kind, value FROM identity_links WHERE row_key = ?1",
        key,
    )
}

/// The identifiers `sql` lists (kind, value) for `key`; unknown kinds are skipped.
fn members(conn: &dyn Sql, sql: &str, key: &str) -> Result<Vec<Identifier>, StoreError> {
    let mut found = Vec::new();
    conn.query_each(sql, sql_params![key], &mut |r| {
        let kind: String = r.get(0)?;
        if let Some(kind) = IdKind::parse(&kind) {
            found.push(Identifier {
                kind,
                value: r.get(1)?,
            });
        }
        Ok(())
    })?;
    Ok(found)
}

struct OldProfile {
    created: (i64, i16),
    customer_no: Option<String>,
    members: Vec<Identifier>,
}

/// Recomputes the profiles `old_ids` (plus the row's new identifiers, minus the newly
/// blocked ones) from the evidence and moves everything hanging off them.
fn regroup(
    conn: &dyn Sql,
    old_ids: &BTreeSet<String>,
    added: &[Identifier],
    removed: &[Identifier],
    row: &LinkRow,
    now: Timestamp,
) -> Result<(), StoreError> {
    let mut old: BTreeMap<String, OldProfile> = BTreeMap::new();
    let mut origin: BTreeMap<Identifier, String> = BTreeMap::new();
    for p in old_ids {
        let r = conn.query_one(
            "SELECT created_at_ms, created_offset_min, customer_no FROM profiles
             WHERE profile_id = ?1",
            sql_params![p],
        )?;
        let (created, customer_no): ((i64, i16), Option<String>) =
            ((r.get(0)?, offset_minutes(r.get(1)?)?), r.get(2)?);
        let members = members(
            conn,
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
        row_keys.extend(rows_naming(conn, node)?);
    }
    let mut rows = Vec::with_capacity(row_keys.len());
    for key in &row_keys {
        rows.push(row_members(conn, key)?);
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
        conn.execute(
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
        conn.execute(
            "UPDATE profiles SET (customer_no, first_name, last_name, birth_date, postal_code,
                 language, member_since, points, updated_at_ms) =
               (SELECT coalesce(t.customer_no, o.customer_no), coalesce(t.first_name, o.first_name),
                 coalesce(t.last_name, o.last_name), coalesce(t.birth_date, o.birth_date),
                 coalesce(t.postal_code, o.postal_code), coalesce(t.language, o.language),
                 coalesce(t.member_since, o.member_since), coalesce(t.points, o.points),
                 max(coalesce(t.updated_at_ms, 0), coalesce(o.updated_at_ms, 0))
                FROM profiles t, profiles o WHERE t.profile_id = ?1 AND o.profile_id = ?2)
             WHERE profile_id = ?1",
            sql_params![target, p],
        )?;
        conn.execute(
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
            conn.execute(
                INSERT_IDENTIFIER,
                sql_params![m.kind.as_str(), m.value, comp.profile_id, source, added_at],
            )?;
        }
    }
    for id in removed {
        conn.execute(
            "DELETE FROM identifiers WHERE kind = ?1 AND value = ?2",
            sql_params![id.kind.as_str(), id.value],
        )?;
    }
    let survivors: BTreeSet<&str> = comps.iter().map(|c| c.profile_id.as_str()).collect();
    for p in old.keys() {
        conn.execute(
            "UPDATE transactions SET profile_id =
                 (SELECT i.profile_id FROM identifiers i WHERE i.kind = 'card' AND i.value = transactions.card)
             WHERE profile_id = ?1",
            sql_params![p],
        )?;
        conn.execute(
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
                conn.execute(sql, sql_params![p])?;
            }
        }
    }
    Ok(())
}

/// A time zone offset as stored (minutes, within ±24 h).
fn offset_minutes(stored: i64) -> Result<i16, StoreError> {
    i16::try_from(stored).map_err(|_| StoreError::Corrupt(format!("an offset of {stored} minutes")))
}
