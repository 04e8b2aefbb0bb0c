//! What the imports write (CRM customers, online orders, products) and read back (known
//! orders and products, the suppression list, the catalog's sensitive categories),
//! written once for every engine. `crate::import` parses and checks the files into the
//! records below and runs one import in ONE transaction ([`begin`], [`commit`],
//! [`rollback`]).
//!
//! Speed: a CRM file is applied a chunk of rows at a time. The chunk's identifiers are
//! looked up at once (SQLite: an `IN (…)` list per kind and table; PostgreSQL: one
//! statement over text arrays, `postgres/imports.rs`) to find those the database already
//! knows; a row whose identifiers are all new, not shared with another row of the chunk
//! and not blocked, flagged or erased is a plain addition (a new profile, exactly what
//! `identity::apply_link` would make of it), appended (SQLite: one-row INSERTs, prepared
//! once; PostgreSQL: binary COPY). Every other row goes through `apply_link` one by one,
//! in file order: those rows share no identifier with the plain ones, so the result is the
//! same as applying the file row by row. The chunk is decided under the merge lock, so
//! another hub on the same PostgreSQL cannot link its identifiers meanwhile.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use till360_shared::Timestamp;

use super::erasures::Suppression;
use super::identity::{apply_link, text_array};
use super::locks;
use super::postgres::imports as postgres_sql;
use super::sql::{Engine, Param, Sql, SqlExt, ToParam, TxKind};
use super::StoreError;
use crate::identity::{BlockedIdentifier, IdKind, Identifier, LinkRow};
use crate::sql_params;

/// An order line as an order file has it and `orders.lines` stores it (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderLine {
    #[serde(default)]
    pub sku: Option<String>,
    pub description: String,
    pub qty: f64,
    #[serde(default)]
    pub unit_cents: Option<i64>,
    pub amount_cents: i64,
}

/// One checked CRM row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerRecord {
    pub customer_no: String,
    /// The customer number first, then e-mail, phone and cards as the row names them.
    pub identifiers: Vec<Identifier>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub birth_date: Option<String>,
    pub postal_code: Option<String>,
    pub member_since: Option<String>,
    pub language: Option<String>,
    /// (purpose, granted) for the consents the row states.
    pub consents: Vec<(&'static str, bool)>,
}

/// One checked online order.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRecord {
    pub order_id: String,
    pub identifiers: Vec<Identifier>,
    pub at: Timestamp,
    pub channel: String,
    /// The lines as JSON (`Vec<OrderLine>`).
    pub lines: String,
    pub total_cents: i64,
    pub currency: String,
}

/// One checked catalog row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductRecord {
    pub sku: String,
    pub description: String,
    pub category: String,
    pub sensitive: bool,
}

/// What applying one record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// A new row: a profile created, an order stored, a product added.
    Inserted,
    /// An existing row's values changed.
    Updated,
    /// The record joined (or split) existing profiles.
    Merged,
    /// Nothing changed (already imported).
    Unchanged,
    /// Nothing to apply: every identifier of the record is blocked.
    Nothing,
}

/// What applying one CRM row did, with the identifiers it blocked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerOutcome {
    pub applied: Applied,
    pub newly_blocked: Vec<BlockedIdentifier>,
}

/// What applying one order did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderOutcome {
    /// Whether the order joined profiles.
    pub merged: bool,
    pub newly_blocked: Vec<BlockedIdentifier>,
}

/// Starts an import's one transaction (the write lock at once on SQLite). Not retried as
/// a whole: the file is streamed once; a lost race fails the import, and running it again
/// is safe (imports are idempotent).
pub fn begin(db: &dyn Sql) -> Result<(), StoreError> {
    db.begin(TxKind::Write)?;
    if db.engine() == Engine::Postgres {
        if let Err(err) = db.batch(postgres_sql::TRANSACTION_SETTINGS) {
            let _ = db.rollback();
            return Err(err);
        }
    }
    Ok(())
}

/// Commits the import; `changed` bumps the import counter the running hub polls to
/// recompute traits and segments.
pub fn commit(db: &dyn Sql, changed: bool) -> Result<(), StoreError> {
    if changed {
        super::freshness::note_import(db)?;
    }
    db.commit()
}

/// Rolls the import back (a bad line, or an error).
pub fn rollback(db: &dyn Sql) -> Result<(), StoreError> {
    db.rollback()
}

/// For each record's identifiers: when the latest of them on the suppression list was
/// erased (unix ms), `Some` meaning the record names an erased person. Without the key
/// the list cannot be read: fine while it is empty, an error otherwise (never a silent
/// re-import).
pub fn erased_at(
    db: &dyn Sql,
    suppression: Option<&Suppression>,
    records: &[&[Identifier]],
) -> Result<Vec<Option<i64>>, StoreError> {
    let anyone_erased = db.exists(
        "SELECT 1 FROM suppressed_identifiers LIMIT 1",
        sql_params![],
    )?;
    if !anyone_erased {
        return Ok(vec![None; records.len()]);
    }
    let Some(suppression) = suppression else {
        return Err(StoreError::NoMasterSecret);
    };
    let mut found = Vec::with_capacity(records.len());
    for identifiers in records {
        let mut latest: Option<i64> = None;
        for id in identifiers.iter() {
            let hash = suppression.hash(id.kind, &id.value);
            let at: Option<i64> = db.query_value(
                "SELECT erased_at_ms FROM suppressed_identifiers WHERE kind = ?1 AND hash = ?2",
                sql_params![id.kind.as_str(), hash],
            )?;
            latest = latest.max(at);
        }
        found.push(latest);
    }
    Ok(found)
}

// `updated_at_ms` moves only when a value changes, so a re-import reports "unchanged".
const CUSTOMER_DATA: &str = "UPDATE profiles SET
         customer_no = CASE WHEN customer_no IS NULL OR ?2 < customer_no
                       THEN ?2 ELSE customer_no END,
         first_name = coalesce(?3, first_name), last_name = coalesce(?4, last_name),
         birth_date = coalesce(?5, birth_date), postal_code = coalesce(?6, postal_code),
         member_since = coalesce(?7, member_since), language = coalesce(?8, language),
         updated_at_ms = ?9
     WHERE profile_id = ?1 AND NOT (
         customer_no IS NOT DISTINCT FROM (CASE WHEN customer_no IS NULL OR ?2 < customer_no
                                           THEN ?2 ELSE customer_no END)
         AND first_name IS NOT DISTINCT FROM coalesce(?3, first_name)
         AND last_name IS NOT DISTINCT FROM coalesce(?4, last_name)
         AND birth_date IS NOT DISTINCT FROM coalesce(?5, birth_date)
         AND postal_code IS NOT DISTINCT FROM coalesce(?6, postal_code)
         AND member_since IS NOT DISTINCT FROM coalesce(?7, member_since)
         AND language IS NOT DISTINCT FROM coalesce(?8, language))";
const UPSERT_CONSENT: &str = "INSERT INTO consents (profile_id, purpose, granted, source, at_ms)
     VALUES (?1, ?2, ?3, 'crm', ?4)
     ON CONFLICT (profile_id, purpose) DO UPDATE SET
         granted = excluded.granted, source = excluded.source, at_ms = excluded.at_ms
     WHERE consents.granted <> excluded.granted";

/// Applies CRM rows (none of them naming an erased person) in the caller's transaction,
/// in order; one outcome per row.
pub fn apply_customers(
    db: &dyn Sql,
    rows: &[CustomerRecord],
    max_customers: usize,
    now: Timestamp,
) -> Result<Vec<CustomerOutcome>, StoreError> {
    // Another hub may link these identifiers meanwhile: decide which rows are plain
    // additions under the graph's lock (`apply_link` takes it anyway).
    locks::merge(db)?;
    let sets: Vec<BTreeSet<&Identifier>> = rows
        .iter()
        .map(|r| r.identifiers.iter().collect())
        .collect();
    // With a limit of 0 every identifier blocks: no row is a plain addition.
    let plain = if max_customers >= 1 {
        plain_rows(db, &sets)?
    } else {
        Vec::new()
    };
    let mut outcomes: Vec<Option<CustomerOutcome>> = vec![None; rows.len()];
    let added: Vec<(&CustomerRecord, String)> = plain
        .iter()
        .map(|(i, target)| (&rows[*i], target.clone()))
        .collect();
    insert_new_customers(db, &added, now)?;
    for (i, _) in &plain {
        outcomes[*i] = Some(CustomerOutcome {
            applied: Applied::Inserted,
            newly_blocked: Vec::new(),
        });
    }
    for (row, outcome) in rows.iter().zip(outcomes.iter_mut()) {
        if outcome.is_none() {
            *outcome = Some(apply_customer(db, row, max_customers, now)?);
        }
    }
    Ok(outcomes.into_iter().flatten().collect())
}

/// The rows (by index) that are plain additions, each with the id of the profile it
/// makes: every identifier unknown to the database (not linked, not held by a profile,
/// not blocked, no flagged card) and named by no other row of the chunk, and the new
/// profile's id not taken.
fn plain_rows(
    db: &dyn Sql,
    sets: &[BTreeSet<&Identifier>],
) -> Result<Vec<(usize, String)>, StoreError> {
    let mut named: HashMap<&Identifier, usize> = HashMap::new();
    for set in sets {
        for id in set {
            *named.entry(*id).or_default() += 1;
        }
    }
    // In key order: the indexes are probed in order, each page once.
    let mut ids: Vec<&Identifier> = named.keys().copied().collect();
    ids.sort_unstable();
    let known = known_identifiers(db, &ids)?;
    let mut candidates = Vec::new();
    let mut targets = HashSet::new();
    for (i, set) in sets.iter().enumerate() {
        let fresh = !set.is_empty() && set.iter().all(|id| named[id] == 1 && !known.contains(*id));
        if !fresh {
            continue;
        }
        let Some(target) = set.iter().map(|id| id.profile_id()).min() else {
            continue;
        };
        // Two new profiles with one id (a hash collision) are left to `apply_link`.
        if targets.insert(target.clone()) {
            candidates.push((i, target));
        }
    }
    let mut ids: Vec<&str> = candidates.iter().map(|(_, t)| t.as_str()).collect();
    ids.sort_unstable();
    let taken = taken_profiles(db, &ids)?;
    candidates.retain(|(_, target)| !taken.contains(target));
    Ok(candidates)
}

/// Of `ids`, those the database knows: linked (`identity_links`), held by a profile
/// (`identifiers`), blocked, or (cards) flagged or cleared as suspicious (their held-back
/// links are `relink`'s business). One statement on PostgreSQL (text arrays); per kind
/// and table `IN (…)` lists elsewhere.
fn known_identifiers(db: &dyn Sql, ids: &[&Identifier]) -> Result<HashSet<Identifier>, StoreError> {
    let mut known = HashSet::new();
    if db.engine() == Engine::Postgres {
        let kinds = text_array(ids.iter().map(|id| id.kind.as_str()));
        let values = text_array(ids.iter().map(|id| id.value.as_str()));
        db.query_each(
            postgres_sql::KNOWN_IDENTIFIERS,
            sql_params![kinds, values],
            &mut |row| {
                let kind: String = row.get(0)?;
                let kind = IdKind::parse(&kind)
                    .ok_or_else(|| StoreError::Corrupt(format!("an identifier kind {kind:?}")))?;
                known.insert(Identifier {
                    kind,
                    value: row.get(1)?,
                });
                Ok(())
            },
        )?;
        return Ok(known);
    }
    let mut by_kind: BTreeMap<IdKind, Vec<&str>> = BTreeMap::new();
    for id in ids {
        by_kind.entry(id.kind).or_default().push(&id.value);
    }
    for (kind, values) in &by_kind {
        let mut found = |value: String| {
            known.insert(Identifier { kind: *kind, value });
        };
        for table in ["identifiers", "identity_links", "blocked_identifiers"] {
            let sql_for = |n| {
                format!(
                    "SELECT value FROM {table} WHERE kind = ?1 AND value IN ({})",
                    placeholders(2, n)
                )
            };
            select_in(db, &sql_for, &[&kind.as_str()], values)?
                .into_iter()
                .for_each(&mut found);
        }
        if *kind == IdKind::Card {
            let sql_for = |n| {
                format!(
                    "SELECT card FROM suspicious_cards WHERE card IN ({})",
                    placeholders(1, n)
                )
            };
            select_in(db, &sql_for, &[], values)?
                .into_iter()
                .for_each(&mut found);
        }
    }
    Ok(known)
}

/// Of the profile ids `ids`, those taken.
fn taken_profiles(db: &dyn Sql, ids: &[&str]) -> Result<HashSet<String>, StoreError> {
    if db.engine() == Engine::Postgres {
        let mut taken = HashSet::new();
        db.query_each(
            postgres_sql::TAKEN_PROFILES,
            sql_params![text_array(ids.iter().copied())],
            &mut |row| {
                taken.insert(row.get(0)?);
                Ok(())
            },
        )?;
        return Ok(taken);
    }
    let sql_for = |n| {
        format!(
            "SELECT profile_id FROM profiles WHERE profile_id IN ({})",
            placeholders(1, n)
        )
    };
    Ok(select_in(db, &sql_for, &[], ids)?.into_iter().collect())
}

/// How many values one `IN (...)` list holds (well under both engines' parameter limits).
const IN_LIST: usize = 500;

/// Rows per `INSERT` statement. PostgreSQL: many (one round trip for 64 rows). SQLite:
/// one, measured faster: a multi-row INSERT needs a statement journal (every page it
/// touches is copied first, in case a later row fails), a one-row INSERT does not.
fn insert_rows_per_statement(db: &dyn Sql) -> usize {
    match db.engine() {
        Engine::Sqlite => 1,
        Engine::Postgres => 64,
    }
}

/// `?first, ?first+1, ...` (`n` of them).
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Column 0 of `sql_for(n)` run with `fixed` then up to [`IN_LIST`] of `values` at a time.
fn select_in(
    db: &dyn Sql,
    sql_for: &dyn Fn(usize) -> String,
    fixed: &[&dyn ToParam],
    values: &[&str],
) -> Result<Vec<String>, StoreError> {
    let mut found = Vec::new();
    for part in values.chunks(IN_LIST) {
        let mut params: Vec<&dyn ToParam> = fixed.to_vec();
        params.extend(part.iter().map(|v| v as &dyn ToParam));
        db.query_each(&sql_for(part.len()), &params, &mut |row| {
            found.push(row.get::<String>(0)?);
            Ok(())
        })?;
    }
    Ok(found)
}

/// Runs `INSERT INTO {into} VALUES (...), (...)` over `rows`, each row giving `columns`
/// parameters, [`insert_rows_per_statement`] rows a statement.
fn insert_rows(
    db: &dyn Sql,
    into: &str,
    columns: usize,
    rows: &[Vec<&dyn ToParam>],
) -> Result<(), StoreError> {
    let per_statement = insert_rows_per_statement(db);
    let statement = |n: usize| {
        let values = (0..n)
            .map(|r| format!("({})", placeholders(1 + r * columns, columns)))
            .collect::<Vec<_>>()
            .join(", ");
        format!("INSERT INTO {into} VALUES {values}")
    };
    let full = statement(per_statement);
    let mut params: Vec<&dyn ToParam> = Vec::with_capacity(per_statement * columns);
    for part in rows.chunks(per_statement) {
        params.clear();
        params.extend(part.iter().flatten().copied());
        if part.len() == per_statement {
            db.execute(&full, &params)?;
        } else {
            db.execute(&statement(part.len()), &params)?;
        }
    }
    Ok(())
}

/// The columns a new CRM customer's rows fill, in the order its values are written.
pub const PROFILE_COLUMNS: [&str; 11] = [
    "profile_id",
    "created_at_ms",
    "created_offset_min",
    "customer_no",
    "first_name",
    "last_name",
    "birth_date",
    "postal_code",
    "member_since",
    "language",
    "updated_at_ms",
];
pub const IDENTIFIER_COLUMNS: [&str; 5] = ["kind", "value", "profile_id", "source", "added_at_ms"];
pub const LINK_COLUMNS: [&str; 3] = ["row_key", "kind", "value"];
pub const CONSENT_COLUMNS: [&str; 5] = ["profile_id", "purpose", "granted", "source", "at_ms"];

/// Writes plain-addition CRM rows: what `apply_link` then the customer's data and
/// consents would write for a row whose identifiers are all new: the link evidence, a
/// profile created `now` holding the row's data, its identifiers and consents.
fn insert_new_customers(
    db: &dyn Sql,
    rows: &[(&CustomerRecord, String)],
    now: Timestamp,
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let at = now.unix_ms;
    let offset = i64::from(now.offset_min);
    let keys: Vec<String> = rows
        .iter()
        .map(|(r, _)| format!("crm:{}", r.customer_no))
        .collect();
    // Sorted as apply_link walks them (a set), so the evidence rows are the same.
    let sets: Vec<BTreeSet<&Identifier>> = rows
        .iter()
        .map(|(r, _)| r.identifiers.iter().collect())
        .collect();
    // Each table's rows in its key order: the B-tree pages are visited in order, once.
    type Params<'p> = Vec<&'p dyn ToParam>;
    let mut links: Vec<((&str, &Identifier), Params)> = Vec::new();
    let mut idents: Vec<(&Identifier, Params)> = Vec::new();
    let mut consents: Vec<((&str, &str), Params)> = Vec::new();
    let mut profiles: Vec<(&str, Params)> = Vec::new();
    for (((row, target), key), set) in rows.iter().zip(&keys).zip(&sets) {
        for id in set {
            links.push(((key, id), vec![key, kind_param(id.kind), &id.value]));
            idents.push((
                id,
                vec![kind_param(id.kind), &id.value, target, &"crm", &at],
            ));
        }
        for (purpose, granted) in &row.consents {
            consents.push((
                (target, purpose),
                vec![target, purpose, granted, &"crm", &at],
            ));
        }
        profiles.push((
            target,
            vec![
                target,
                &at,
                &offset,
                &row.customer_no,
                &row.first_name,
                &row.last_name,
                &row.birth_date,
                &row.postal_code,
                &row.member_since,
                &row.language,
                &at,
            ],
        ));
    }
    fn in_key_order<K: Ord, P>(mut rows: Vec<(K, P)>) -> Vec<P> {
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        rows.into_iter().map(|(_, params)| params).collect()
    }
    let (links, idents) = (in_key_order(links), in_key_order(idents));
    let (consents, profiles) = (in_key_order(consents), in_key_order(profiles));
    write_rows(db, "identity_links", &LINK_COLUMNS, &links)?;
    write_rows(db, "profiles", &PROFILE_COLUMNS, &profiles)?;
    write_rows(db, "identifiers", &IDENTIFIER_COLUMNS, &idents)?;
    write_rows(db, "consents", &CONSENT_COLUMNS, &consents)?;
    Ok(())
}

/// Appends `rows` (new rows: they conflict with none) to `table`: by the engine's bulk
/// path where it has one (PostgreSQL's binary COPY), else by [`insert_rows`].
fn write_rows(
    db: &dyn Sql,
    table: &str,
    columns: &[&str],
    rows: &[Vec<&dyn ToParam>],
) -> Result<(), StoreError> {
    if db.engine() == Engine::Postgres {
        let values: Vec<Param<'_>> = rows.iter().flatten().map(|p| p.to_param()).collect();
        if db.copy_in(table, columns, &values)? {
            return Ok(());
        }
    }
    insert_rows(
        db,
        &format!("{table} ({})", columns.join(", ")),
        columns.len(),
        rows,
    )
}

/// An identifier kind as a statement parameter.
fn kind_param(kind: IdKind) -> &'static dyn ToParam {
    match kind {
        IdKind::Card => &"card",
        IdKind::CustomerNo => &"customer_no",
        IdKind::Email => &"email",
        IdKind::Phone => &"phone",
        IdKind::OnlineAccount => &"online_account",
    }
}

/// One CRM row through the identity graph (joins, blocks), then its data and consents:
/// empty CRM fields keep what is known; the smallest customer number of a joined profile
/// is its customer_no (independent of import order).
fn apply_customer(
    db: &dyn Sql,
    row: &CustomerRecord,
    max_customers: usize,
    now: Timestamp,
) -> Result<CustomerOutcome, StoreError> {
    let outcome = apply_link(
        db,
        &LinkRow {
            key: format!("crm:{}", row.customer_no),
            source: "crm".into(),
            identifiers: row.identifiers.clone(),
            seen_at: now,
        },
        max_customers,
        now,
    )?;
    let Some(profile_id) = outcome.profile_id else {
        return Ok(CustomerOutcome {
            applied: Applied::Nothing,
            newly_blocked: outcome.newly_blocked,
        });
    };
    let changed = db.execute(
        CUSTOMER_DATA,
        sql_params![
            profile_id,
            row.customer_no,
            row.first_name,
            row.last_name,
            row.birth_date,
            row.postal_code,
            row.member_since,
            row.language,
            now.unix_ms
        ],
    )?;
    let mut consents_changed = 0;
    for (purpose, granted) in &row.consents {
        consents_changed += db.execute(
            UPSERT_CONSENT,
            sql_params![profile_id, purpose, granted, now.unix_ms],
        )?;
    }
    let applied = if outcome.created {
        Applied::Inserted
    } else if outcome.merged {
        Applied::Merged
    } else if changed + consents_changed > 0 {
        Applied::Updated
    } else {
        Applied::Unchanged
    };
    Ok(CustomerOutcome {
        applied,
        newly_blocked: outcome.newly_blocked,
    })
}

/// Whether an order with this id is stored already.
pub fn order_known(db: &dyn Sql, order_id: &str) -> Result<bool, StoreError> {
    db.exists(
        "SELECT 1 FROM orders WHERE order_id = ?1",
        sql_params![order_id],
    )
}

/// Stores an order that names an erased person: kept (sales stay counted) without the
/// person, as the erase left the orders it found.
pub fn insert_anonymous_order(db: &dyn Sql, order: &OrderRecord) -> Result<(), StoreError> {
    insert_order(db, order, None)
}

/// Links an order's identifiers (joins, blocks), names the profile by the order's
/// customer number where it is the smallest, and stores the order.
pub fn apply_order(
    db: &dyn Sql,
    order: &OrderRecord,
    max_customers: usize,
    now: Timestamp,
) -> Result<OrderOutcome, StoreError> {
    let outcome = apply_link(
        db,
        &LinkRow {
            key: format!("order:{}", order.order_id),
            source: "online".into(),
            identifiers: order.identifiers.clone(),
            seen_at: order.at,
        },
        max_customers,
        now,
    )?;
    // A customer number on an order names the profile as a CRM row would: the smallest
    // one wins (independent of import order), so a web-only customer is exported by it.
    let customer_no = order
        .identifiers
        .iter()
        .find(|id| id.kind == IdKind::CustomerNo);
    if let (Some(profile_id), Some(no)) = (&outcome.profile_id, customer_no) {
        db.execute(
            "UPDATE profiles SET customer_no = ?2
             WHERE profile_id = ?1 AND (customer_no IS NULL OR ?2 < customer_no)",
            sql_params![profile_id, no.value],
        )?;
    }
    insert_order(db, order, outcome.profile_id.as_deref())?;
    Ok(OrderOutcome {
        merged: outcome.merged,
        newly_blocked: outcome.newly_blocked,
    })
}

fn insert_order(
    db: &dyn Sql,
    order: &OrderRecord,
    profile_id: Option<&str>,
) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO orders (order_id, profile_id, ordered_at_ms, offset_min, channel,
             total_cents, currency, lines) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        sql_params![
            order.order_id,
            profile_id,
            order.at.unix_ms,
            i64::from(order.at.offset_min),
            order.channel,
            order.total_cents,
            order.currency,
            order.lines
        ],
    )?;
    Ok(())
}

/// Adds a product or updates it where a value differs.
pub fn upsert_product(db: &dyn Sql, product: &ProductRecord) -> Result<Applied, StoreError> {
    let existed = db.exists(
        "SELECT 1 FROM products WHERE sku = ?1",
        sql_params![product.sku],
    )?;
    let changed = db.execute(
        "INSERT INTO products (sku, description, category, sensitive)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (sku) DO UPDATE SET description = excluded.description,
             category = excluded.category, sensitive = excluded.sensitive
         WHERE products.description <> excluded.description
             OR products.category <> excluded.category
             OR products.sensitive <> excluded.sensitive",
        sql_params![
            product.sku,
            product.description,
            product.category,
            product.sensitive
        ],
    )?;
    Ok(match (existed, changed) {
        (false, _) => Applied::Inserted,
        (true, 0) => Applied::Unchanged,
        (true, _) => Applied::Updated,
    })
}

/// The categories the catalog marks sensitive (never targeted by a campaign).
pub fn sensitive_categories(db: &dyn Sql) -> Result<Vec<String>, StoreError> {
    db.query(
        "SELECT DISTINCT category FROM products WHERE sensitive <> 0",
        sql_params![],
    )?
    .iter()
    .map(|r| r.get::<String>(0))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::for_each_engine;

    fn customer(no: &str, email: &str, cards: &[&str], first_name: &str) -> CustomerRecord {
        let mut identifiers = vec![Identifier::parse(IdKind::CustomerNo, no, 31).unwrap()];
        if !email.is_empty() {
            identifiers.push(Identifier::parse(IdKind::Email, email, 31).unwrap());
        }
        for card in cards {
            identifiers.push(Identifier::parse(IdKind::Card, card, 31).unwrap());
        }
        CustomerRecord {
            customer_no: identifiers[0].value.clone(),
            identifiers,
            first_name: Some(first_name.to_string()),
            last_name: None,
            birth_date: None,
            postal_code: Some("1011 AB".into()),
            member_since: Some("2020-01-01".into()),
            language: None,
            consents: vec![("email", true), ("sms", false)],
        }
    }

    fn dump(db: &dyn Sql) -> Vec<String> {
        let mut out = Vec::new();
        for sql in [
            "SELECT profile_id, created_at_ms, created_offset_min, customer_no, first_name,
                 last_name, birth_date, postal_code, language, member_since, points,
                 updated_at_ms FROM profiles ORDER BY profile_id",
            "SELECT kind, value, profile_id, source, added_at_ms FROM identifiers
             ORDER BY kind, value",
            "SELECT row_key, kind, value FROM identity_links ORDER BY row_key, kind, value",
            "SELECT profile_id, purpose, granted, source, at_ms FROM consents
             ORDER BY profile_id, purpose",
            "SELECT kind, value, customers FROM blocked_identifiers ORDER BY kind, value",
        ] {
            for row in db.query(sql, sql_params![]).unwrap() {
                out.push(format!("{row:?}"));
            }
        }
        out
    }

    fn card(n: u32) -> String {
        till360_shared::card::with_check_digit(&format!("24000000{n:04}")).unwrap()
    }

    fn rows() -> Vec<CustomerRecord> {
        let (c1, c2, c3) = (card(1), card(2), card(3));
        vec![
            customer("C1", "a@example.nl", &[&c1], "Ann"),
            customer("C2", "b@example.nl", &[], "Bob"),
            // Shares C1's e-mail: joins C1 (not a plain addition).
            customer("C3", "a@example.nl", &[], "Cat"),
            customer("C4", "", &[&c2, &c3], "Dan"),
            // C2 again with a new name: an update of the same person.
            customer("C2", "b@example.nl", &[], "Bobby"),
            customer("C5", "shared@example.nl", &[], "Eve"),
            customer("C6", "shared@example.nl", &[], "Fay"),
            customer("C7", "shared@example.nl", &[], "Gus"),
            // A fourth customer on one e-mail: blocked (limit 3).
            customer("C8", "shared@example.nl", &[], "Hal"),
        ]
    }

    /// Applies `rows` one by one through `apply_link` (the reference) and rolls back:
    /// the tables and outcomes that gives.
    fn row_by_row(
        db: &dyn Sql,
        rows: &[CustomerRecord],
        now: Timestamp,
    ) -> (Vec<String>, Vec<CustomerOutcome>) {
        row_by_row_after(db, &|_| {}, rows, now)
    }

    /// [`row_by_row`] over what `seed` writes first (in the same transaction).
    fn row_by_row_after(
        db: &dyn Sql,
        seed: &dyn Fn(&dyn Sql),
        rows: &[CustomerRecord],
        now: Timestamp,
    ) -> (Vec<String>, Vec<CustomerOutcome>) {
        begin(db).unwrap();
        seed(db);
        let outcomes = rows
            .iter()
            .map(|row| apply_customer(db, row, 3, now).unwrap())
            .collect();
        let tables = dump(db);
        rollback(db).unwrap();
        assert!(dump(db).is_empty());
        (tables, outcomes)
    }

    #[test]
    fn a_chunk_gives_what_row_by_row_application_gives() {
        let now = Timestamp::from_unix_ms(1_768_000_000_000, 60);
        for_each_engine(|db| {
            let conn = db.get().unwrap();
            let sql: &dyn Sql = &*conn;
            let (expected, expected_outcomes) = row_by_row(sql, &rows(), now);
            assert!(
                expected_outcomes
                    .iter()
                    .any(|o| !o.newly_blocked.is_empty()),
                "the rows block an identifier"
            );
            begin(sql).unwrap();
            let outcomes = apply_customers(sql, &rows(), 3, now).unwrap();
            assert_eq!(outcomes, expected_outcomes);
            assert_eq!(dump(sql), expected);
            rollback(sql).unwrap();
            // The file again, as one chunk: as the rows applied twice one by one (a
            // re-import fills the profiles a block split off).
            let mut twice = rows();
            twice.extend(rows());
            let (expected, expected_outcomes) = row_by_row(sql, &twice, now);
            begin(sql).unwrap();
            let mut outcomes = apply_customers(sql, &rows(), 3, now).unwrap();
            outcomes.extend(apply_customers(sql, &rows(), 3, now).unwrap());
            commit(sql, true).unwrap();
            assert_eq!(outcomes, expected_outcomes);
            assert_eq!(dump(sql), expected);
        });
    }

    #[test]
    fn new_customers_in_one_chunk_are_plain_additions_written_as_apply_link_would() {
        let now = Timestamp::from_unix_ms(1_768_000_000_000, 0);
        let many: Vec<CustomerRecord> = (0..150)
            .map(|i| {
                let card = till360_shared::card::with_check_digit(&format!("2402{i:08}")).unwrap();
                customer(&format!("N{i}"), &format!("n{i}@example.nl"), &[&card], "N")
            })
            .collect();
        for_each_engine(|db| {
            let conn = db.get().unwrap();
            let sql: &dyn Sql = &*conn;
            let (expected, expected_outcomes) = row_by_row(sql, &many, now);
            assert!(expected_outcomes
                .iter()
                .all(|o| o.applied == Applied::Inserted));
            begin(sql).unwrap();
            let sets: Vec<BTreeSet<&Identifier>> = many
                .iter()
                .map(|r| r.identifiers.iter().collect())
                .collect();
            assert_eq!(plain_rows(sql, &sets).unwrap().len(), many.len());
            let outcomes = apply_customers(sql, &many, 3, now).unwrap();
            commit(sql, true).unwrap();
            assert_eq!(outcomes, expected_outcomes);
            assert_eq!(dump(sql), expected);
        });
    }
    #[test]
    fn a_chunk_over_existing_profiles_gives_what_row_by_row_application_gives() {
        let now = Timestamp::from_unix_ms(1_768_000_000_000, 60);
        let cards: Vec<String> = (10..20).map(card).collect();
        let c = |i: usize| cards[i].as_str();
        // Taken before the chunk: the id the row "N9" would give its new profile.
        let n9 = customer("N9", "n9@example.nl", &[c(8)], "Taken");
        let taken = n9
            .identifiers
            .iter()
            .map(Identifier::profile_id)
            .min()
            .unwrap();
        let seed = |db: &dyn Sql| {
            // A till-only profile, an earlier CRM customer, an identifier blocked before
            // (four customers on one e-mail, limit 3), a flagged card, a bare profile.
            let till_card = till360_shared::CardNumber::parse(c(0)).unwrap();
            let seen = Timestamp::from_unix_ms(1_700_000_000_000, 60);
            super::super::identity::resolve_card(db, &till_card, seen).unwrap();
            apply_customer(
                db,
                &customer("E1", "old@example.nl", &[c(1)], "Old"),
                3,
                now,
            )
            .unwrap();
            for n in 0..4 {
                let shared = customer(&format!("S{n}"), "store@example.nl", &[], "S");
                apply_customer(db, &shared, 3, now).unwrap();
            }
            db.execute(
                "INSERT INTO suspicious_cards (card, flagged_at_ms, findings)
                 VALUES (?1, 0, 'test')",
                sql_params![c(2)],
            )
            .unwrap();
            db.execute(
                "INSERT INTO profiles (profile_id, created_at_ms, created_offset_min)
                 VALUES (?1, 0, 0)",
                sql_params![taken],
            )
            .unwrap();
        };
        let mut rows = vec![
            customer("N1", "n1@example.nl", &[c(3)], "Plain"),
            // Joins the till-only profile, then the earlier customer.
            customer("N2", "n2@example.nl", &[c(0)], "Till"),
            customer("N3", "old@example.nl", &[], "Joins old"),
            // The blocked e-mail, shared by more customers of this chunk.
            customer("N4", "store@example.nl", &[c(4)], "Shared 1"),
            customer("N5", "store@example.nl", &[], "Shared 2"),
            // The flagged card links nothing.
            customer("N6", "n6@example.nl", &[c(2)], "Flagged"),
            // Two rows of the chunk on one card join; a duplicate row; an update.
            customer("N7", "n7@example.nl", &[c(5)], "A"),
            customer("N8", "n8@example.nl", &[c(5)], "B"),
            customer("N7", "n7@example.nl", &[c(5)], "A again"),
            customer("E1", "", &[], "Old renamed"),
            customer("N1", "n1@example.nl", &[c(3)], "Plain"),
            n9,
            // A new e-mail three rows of the chunk share, then a fourth: blocked.
            customer("N10", "club@example.nl", &[], "Club 1"),
            customer("N11", "club@example.nl", &[], "Club 2"),
            customer("N12", "club@example.nl", &[c(6)], "Club 3"),
            customer("N13", "club@example.nl", &[c(7)], "Club 4"),
        ];
        rows.extend((0..40).map(|i| {
            let card = till360_shared::card::with_check_digit(&format!("2403{i:08}")).unwrap();
            customer(&format!("P{i}"), &format!("p{i}@example.nl"), &[&card], "P")
        }));
        for_each_engine(|db| {
            let conn = db.get().unwrap();
            let sql: &dyn Sql = &*conn;
            let (expected, expected_outcomes) = row_by_row_after(sql, &seed, &rows, now);
            for applied in [
                Applied::Inserted,
                Applied::Updated,
                Applied::Merged,
                Applied::Unchanged,
            ] {
                assert!(
                    expected_outcomes.iter().any(|o| o.applied == applied),
                    "the rows give {applied:?}"
                );
            }
            assert!(expected_outcomes
                .iter()
                .any(|o| !o.newly_blocked.is_empty()));
            begin(sql).unwrap();
            seed(sql);
            let outcomes = apply_customers(sql, &rows, 3, now).unwrap();
            assert_eq!(outcomes, expected_outcomes);
            assert_eq!(dump(sql), expected);
            rollback(sql).unwrap();
        });
    }
}
