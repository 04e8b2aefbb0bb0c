//! The profile read side, on every engine: the 360° view (`GET /api/v1/profiles/...`),
//! the newest profiles, search by identifier or name prefix, and the blocked
//! identifiers. The view is assembled by the pure `profile::profile_view` from rows read
//! here.
//!
//! `GET /api/v1/profiles/by-card/{card}` is the hot read: a fixed number of statements
//! per view, whatever the number of receipts and lines (the card's profile row in one
//! join; each table once; the product catalogue matched for all lines at once, in
//! chunks of [`CATALOG_CHUNK`] values bound to one cached statement).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::Deserialize;
use till360_shared::{codec, CardNumber, ReceiptLine, Timestamp};

use super::sql::{transaction, Engine, Row, Sql, SqlExt, ToParam, TxKind, Value};
use super::{ProfileQuery, StoreError};
use crate::identity::{IdKind, Identifier};
use crate::profile::{
    profile_view, ConsentView, CouponSummary, LoyaltyView, PersonalView, ProfileParts, ProfileView,
    Purchase, PurchaseLine, TimelineLine,
};
use crate::sql_params;

pub use super::identity::blocked_identifiers;

/// The profile row's columns, as [`Head::read`] reads them.
macro_rules! profile_columns {
    () => {
        "p.profile_id, p.created_at_ms, p.created_offset_min, p.customer_no, p.first_name,
         p.last_name, p.birth_date, p.postal_code, p.language, p.member_since, p.points"
    };
}

const PROFILE_BY_ID: &str = concat!(
    "SELECT ",
    profile_columns!(),
    " FROM profiles p WHERE p.profile_id = ?1"
);

/// The card's profile in one statement (the identifier and the profile row).
const PROFILE_BY_CARD: &str = concat!(
    "SELECT ",
    profile_columns!(),
    " FROM identifiers i JOIN profiles p ON p.profile_id = i.profile_id
      WHERE i.kind = 'card' AND i.value = ?1"
);

/// How many skus or descriptions one catalogue statement matches; shorter lists are
/// padded with NULL (which matches nothing), so each engine prepares it once.
pub const CATALOG_CHUNK: usize = 32;

/// The 360° view of a profile, `None` if unknown.
pub fn load_view(db: &dyn Sql, profile_id: &str) -> Result<Option<ProfileView>, StoreError> {
    view_where(db, PROFILE_BY_ID, profile_id)
}

/// One identifier of a profile with where and when it joined (`identifiers.source`,
/// `added_at_ms`): the console's merge history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentifierRecord {
    pub kind: String,
    pub value: String,
    /// `crm`, `till`, `web`, ... as the import or the merge recorded it.
    pub source: String,
    pub added_at: Timestamp,
}

/// The 360° view of a profile and its identifiers' history, from one snapshot (the
/// console's customer page); `None` if unknown.
pub fn load_view_with_history(
    db: &dyn Sql,
    profile_id: &str,
) -> Result<Option<(ProfileView, Vec<IdentifierRecord>)>, StoreError> {
    transaction(db, TxKind::Read, |tx| {
        tx.prefer_cached_plans()?;
        let Some(view) = read_view(tx, PROFILE_BY_ID, profile_id)? else {
            return Ok(None);
        };
        let mut history = Vec::new();
        tx.query_each(
            "SELECT kind, value, source, added_at_ms FROM identifiers WHERE profile_id = ?1
             ORDER BY added_at_ms, kind, value",
            sql_params![profile_id],
            &mut |mut row| {
                history.push(IdentifierRecord {
                    kind: text(row.take(0), "identifier kind")?,
                    value: text(row.take(1), "identifier value")?,
                    source: text(row.take(2), "identifier source")?,
                    added_at: Timestamp::from_unix_ms(row.get(3)?, 0),
                });
                Ok(())
            },
        )?;
        Ok(Some((view, history)))
    })
}

/// A search hit as the console lists it: names, identifiers and the last receipt,
/// without the receipts themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileSummary {
    pub profile_id: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub customer_no: Option<String>,
    pub cards: Vec<String>,
    pub emails: Vec<String>,
    /// The latest receipt's time (UTC ms), if any.
    pub last_at_ms: Option<i64>,
}

/// Summaries of `ids` (unknown ids are skipped), in the order given.
pub fn summaries(db: &dyn Sql, ids: &[String]) -> Result<Vec<ProfileSummary>, StoreError> {
    transaction(db, TxKind::Read, |db| {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(row) = db.query_opt(
                "SELECT p.first_name, p.last_name, p.customer_no,
                        (SELECT MAX(t.at_ms) FROM transactions t WHERE t.profile_id = p.profile_id)
                 FROM profiles p WHERE p.profile_id = ?1",
                sql_params![id],
            )?
            else {
                continue;
            };
            let mut summary = ProfileSummary {
                profile_id: id.clone(),
                first_name: row.get(0)?,
                last_name: row.get(1)?,
                customer_no: row.get(2)?,
                cards: Vec::new(),
                emails: Vec::new(),
                last_at_ms: row.get(3)?,
            };
            db.query_each(
                "SELECT kind, value FROM identifiers
                 WHERE profile_id = ?1 AND kind IN ('card', 'email') ORDER BY kind, value",
                sql_params![id],
                &mut |r| {
                    let kind: String = r.get(0)?;
                    let list = if kind == "card" {
                        &mut summary.cards
                    } else {
                        &mut summary.emails
                    };
                    list.push(r.get(1)?);
                    Ok(())
                },
            )?;
            out.push(summary);
        }
        Ok(out)
    })
}

/// The 360° view of the profile holding `card`, `None` if no profile does.
pub fn profile_by_card(db: &dyn Sql, card: &CardNumber) -> Result<Option<ProfileView>, StoreError> {
    view_where(db, PROFILE_BY_CARD, card.as_str())
}

/// The view of the profile `head_sql` finds by `key`, read in one read transaction: one
/// snapshot for all of its statements (a merge or a receipt committed meanwhile is in
/// all of them or none; SQLite checks the WAL once, not per statement). On PostgreSQL
/// the transaction lets these reads use generic plans (`plan_cache_mode = auto`): the
/// sessions plan every statement for its values (`force_custom_plan`, which the
/// ingest's array statements need), and planning the view's statements cost several
/// times their execution (`benches/api_reads.rs`).
fn view_where(db: &dyn Sql, head_sql: &str, key: &str) -> Result<Option<ProfileView>, StoreError> {
    transaction(db, TxKind::Read, |tx| {
        tx.prefer_cached_plans()?;
        read_view(tx, head_sql, key)
    })
}

fn read_view(db: &dyn Sql, head_sql: &str, key: &str) -> Result<Option<ProfileView>, StoreError> {
    match db.query_opt(head_sql, sql_params![key])? {
        Some(row) => Ok(Some(view_of(db, Head::read(&row)?)?)),
        None => Ok(None),
    }
}

/// Profiles, newest first (by creation, then id), at most `limit`.
pub fn profiles(db: &dyn Sql, limit: usize) -> Result<Vec<ProfileView>, StoreError> {
    let heads = db.query(
        concat!(
            "SELECT ",
            profile_columns!(),
            " FROM profiles p ORDER BY p.created_at_ms DESC, p.profile_id LIMIT ?1"
        ),
        sql_params![sql_limit(limit)],
    )?;
    heads
        .iter()
        .map(|row| view_of(db, Head::read(row)?))
        .collect()
}

/// Profiles matching a search, at most `limit`: identifiers are normalised as the
/// identity graph stores them (`default_country_code` for phone numbers); a name is a
/// case-insensitive prefix of the first or last name.
pub fn search(
    db: &dyn Sql,
    query: &ProfileQuery,
    limit: usize,
    default_country_code: u16,
) -> Result<Vec<ProfileView>, StoreError> {
    let mut views = Vec::new();
    for id in search_ids(db, query, limit, default_country_code)? {
        if let Some(view) = load_view(db, &id)? {
            views.push(view);
        }
    }
    Ok(views)
}

/// Profile ids matching a search (see [`search`]).
pub fn search_ids(
    db: &dyn Sql,
    query: &ProfileQuery,
    limit: usize,
    default_country_code: u16,
) -> Result<Vec<String>, StoreError> {
    let (kind, raw) = match query {
        ProfileQuery::Card(v) => (IdKind::Card, v),
        ProfileQuery::CustomerNo(v) => (IdKind::CustomerNo, v),
        ProfileQuery::Email(v) => (IdKind::Email, v),
        ProfileQuery::Phone(v) => (IdKind::Phone, v),
        ProfileQuery::NamePrefix(prefix) => return name_prefix_ids(db, prefix, limit),
    };
    // Something that cannot be an identifier finds nobody.
    let Ok(id) = Identifier::parse(kind, raw, default_country_code) else {
        return Ok(Vec::new());
    };
    if limit == 0 {
        return Ok(Vec::new());
    }
    let found: Option<String> = db.query_value(
        "SELECT profile_id FROM identifiers WHERE kind = ?1 AND value = ?2",
        sql_params![id.kind.as_str(), id.value],
    )?;
    Ok(found.into_iter().collect())
}

/// Profiles whose first or last name starts with `prefix`, ignoring case, by last name,
/// first name and id.
fn name_prefix_ids(db: &dyn Sql, prefix: &str, limit: usize) -> Result<Vec<String>, StoreError> {
    let prefix = prefix.trim();
    if prefix.is_empty() {
        return Ok(Vec::new());
    }
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    // SQLite's LIKE ignores ASCII case and can use the NOCASE name indexes; PostgreSQL's
    // LIKE does not ignore case, so both sides are lowered there (NULLs first, as SQLite
    // orders them).
    let sql = match db.engine() {
        Engine::Sqlite => {
            "SELECT profile_id FROM profiles
             WHERE first_name LIKE ?1 ESCAPE '\\' OR last_name LIKE ?1 ESCAPE '\\'
             ORDER BY last_name COLLATE NOCASE, first_name COLLATE NOCASE, profile_id
             LIMIT ?2"
        }
        Engine::Postgres => {
            "SELECT profile_id FROM profiles
             WHERE lower(first_name) LIKE lower(?1) ESCAPE '\\'
                OR lower(last_name) LIKE lower(?1) ESCAPE '\\'
             ORDER BY lower(last_name) NULLS FIRST, lower(first_name) NULLS FIRST, profile_id
             LIMIT ?2"
        }
    };
    db.query(sql, sql_params![pattern, sql_limit(limit)])?
        .iter()
        .map(|row| row.get::<String>(0))
        .collect()
}

fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// The profile row.
struct Head {
    profile_id: String,
    created_at: Timestamp,
    customer_no: Option<String>,
    personal: PersonalView,
    loyalty: LoyaltyView,
}

impl Head {
    fn read(row: &Row) -> Result<Self, StoreError> {
        Ok(Head {
            profile_id: row.get(0)?,
            created_at: timestamp(row.get(1)?, row.get(2)?)?,
            customer_no: row.get(3)?,
            personal: PersonalView {
                first_name: row.get(4)?,
                last_name: row.get(5)?,
                birth_date: row.get(6)?,
                postal_code: row.get(7)?,
                language: row.get(8)?,
            },
            loyalty: LoyaltyView {
                member_since: row.get(9)?,
                points: row.get(10)?,
            },
        })
    }
}

/// A stored time and the till's offset in minutes.
fn timestamp(unix_ms: i64, offset_min: i64) -> Result<Timestamp, StoreError> {
    let offset = i16::try_from(offset_min)
        .map_err(|_| StoreError::Corrupt(format!("a time offset of {offset_min} minutes")))?;
    Ok(Timestamp::from_unix_ms(unix_ms, offset))
}

fn text(value: Value, what: &str) -> Result<String, StoreError> {
    match value {
        Value::Text(s) => Ok(s),
        other => Err(StoreError::Corrupt(format!("{what}: {other:?}, not text"))),
    }
}

/// An order line as `orders.lines` stores it (JSON): only what the view shows.
#[derive(Deserialize)]
struct StoredOrderLine {
    #[serde(default)]
    sku: Option<String>,
    description: String,
    qty: f64,
    #[serde(default)]
    unit_cents: Option<i64>,
    amount_cents: i64,
}

/// A receipt or an order before its lines are matched to the catalogue.
struct Unmatched {
    reference: Option<String>,
    place: String,
    till: Option<String>,
    at: Timestamp,
    total_cents: i64,
    currency: String,
    lines: Vec<TimelineLine>,
}

/// Everything else of the view, each table read once.
fn view_of(db: &dyn Sql, head: Head) -> Result<ProfileView, StoreError> {
    let id = head.profile_id.as_str();
    let identifiers = db
        .query(
            "SELECT kind, value FROM identifiers WHERE profile_id = ?1",
            sql_params![id],
        )?
        .iter()
        .map(|row| Ok((row.get::<String>(0)?, row.get::<String>(1)?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    let mut consents = BTreeMap::new();
    db.query_each(
        "SELECT purpose, granted, source, at_ms FROM consents WHERE profile_id = ?1",
        sql_params![id],
        &mut |row| {
            consents.insert(
                row.get::<String>(0)?,
                ConsentView {
                    granted: row.get(1)?,
                    source: row.get(2)?,
                    at: Timestamp::from_unix_ms(row.get(3)?, 0).to_rfc3339(),
                },
            );
            Ok(())
        },
    )?;
    let mut receipts = Vec::new();
    db.query_each(
        "SELECT store, receipt_no, at_ms, offset_min, total_cents, currency, lines, till
         FROM transactions WHERE profile_id = ?1 ORDER BY at_ms, store, till, seq",
        sql_params![id],
        &mut |mut row| {
            let Value::Blob(blob) = row.take(6) else {
                return Err(StoreError::Corrupt(
                    "transaction lines that are not a blob".into(),
                ));
            };
            let lines: Vec<ReceiptLine> = codec::from_bytes(&blob)?;
            receipts.push(Unmatched {
                reference: row.get(1)?,
                place: text(row.take(0), "transaction store")?,
                till: Some(text(row.take(7), "transaction till")?),
                at: timestamp(row.get(2)?, row.get(3)?)?,
                total_cents: row.get(4)?,
                currency: text(row.take(5), "transaction currency")?,
                lines: lines
                    .into_iter()
                    .map(|l| TimelineLine {
                        sku: l.sku,
                        description: l.description,
                        qty: l.quantity_milli as f64 / 1000.0,
                        unit_cents: l.unit_cents,
                        amount_cents: l.amount_cents,
                        discount: l.discount,
                    })
                    .collect(),
            });
            Ok(())
        },
    )?;
    let mut orders = Vec::new();
    db.query_each(
        "SELECT order_id, channel, ordered_at_ms, offset_min, total_cents, currency, lines
         FROM orders WHERE profile_id = ?1 ORDER BY ordered_at_ms, order_id",
        sql_params![id],
        &mut |mut row| {
            let order_id = text(row.take(0), "order id")?;
            let json = text(row.take(6), "order lines")?;
            let lines: Vec<StoredOrderLine> = serde_json::from_str(&json)
                .map_err(|e| StoreError::Corrupt(format!("order {order_id} lines: {e}")))?;
            orders.push(Unmatched {
                reference: Some(order_id),
                place: text(row.take(1), "order channel")?,
                till: None,
                at: timestamp(row.get(2)?, row.get(3)?)?,
                total_cents: row.get(4)?,
                currency: text(row.take(5), "order currency")?,
                lines: lines
                    .into_iter()
                    .map(|l| TimelineLine {
                        sku: l.sku,
                        description: l.description,
                        qty: l.qty,
                        unit_cents: l.unit_cents,
                        amount_cents: l.amount_cents,
                        discount: false,
                    })
                    .collect(),
            });
            Ok(())
        },
    )?;
    let catalog = Catalog::load(
        db,
        receipts.iter().chain(&orders).flat_map(|p| p.lines.iter()),
    )?;
    let segments = db
        .query(
            "SELECT segment_id FROM segment_members WHERE profile_id = ?1",
            sql_params![id],
        )?
        .iter()
        .map(|row| row.get::<String>(0))
        .collect::<Result<Vec<_>, _>>()?;
    let traits_json: Option<String> = db.query_value(
        "SELECT traits FROM profile_traits WHERE profile_id = ?1",
        sql_params![id],
    )?;
    let traits = match traits_json.map(|j| serde_json::from_str(&j)) {
        None => BTreeMap::new(),
        Some(Ok(map)) => map,
        Some(Err(e)) => {
            tracing::warn!("profile {id}: unreadable traits ({e}); shown as none");
            BTreeMap::new()
        }
    };
    let coupons = coupon_summary(db, id)?;
    let matched = |list: Vec<Unmatched>| -> Vec<Purchase> {
        list.into_iter()
            .map(|p| Purchase {
                reference: p.reference,
                place: p.place,
                till: p.till,
                at: p.at,
                total_cents: p.total_cents,
                currency: p.currency,
                lines: p
                    .lines
                    .into_iter()
                    .map(|l| catalog.categorised(l))
                    .collect(),
            })
            .collect()
    };
    Ok(profile_view(ProfileParts {
        profile_id: head.profile_id,
        created_at: Some(head.created_at),
        customer_no: head.customer_no,
        identifiers,
        personal: head.personal,
        loyalty: head.loyalty,
        consents,
        receipts: matched(receipts),
        orders: matched(orders),
        segments,
        traits,
        coupons,
    }))
}

/// Printed coupons of the profile (by one of its cards, or by the profile when the
/// coupon names no card) and how many of them have a counted redemption (a genuine or
/// unchecked scan, as `coupons::ledger::RedemptionStatus::counts` says).
fn coupon_summary(db: &dyn Sql, profile_id: &str) -> Result<CouponSummary, StoreError> {
    let row = db.query_one(
        "SELECT count(*),
                CAST(COALESCE(SUM(CASE WHEN EXISTS (SELECT 1 FROM redemptions r
                     WHERE r.code = c.code AND r.status IN ('genuine', 'unchecked'))
                     THEN 1 ELSE 0 END), 0) AS BIGINT)
         FROM coupons c
         WHERE c.control = 0
           AND (c.card IN (SELECT value FROM identifiers WHERE kind = 'card' AND profile_id = ?1)
                OR (c.card IS NULL AND c.profile_id = ?2))",
        sql_params![profile_id, profile_id],
    )?;
    Ok(CouponSummary {
        issued: row.get::<i64>(0)?.max(0) as u64,
        redeemed: row.get::<i64>(1)?.max(0) as u64,
    })
}

/// The products a view's lines name: by sku, else by description ignoring case (the
/// first by sku when several match).
struct Catalog {
    engine: Engine,
    by_sku: HashMap<String, (Arc<str>, bool)>,
    by_description: HashMap<String, (Arc<str>, bool)>,
}

impl Catalog {
    fn load<'a>(
        db: &dyn Sql,
        lines: impl Iterator<Item = &'a TimelineLine> + Clone,
    ) -> Result<Self, StoreError> {
        let engine = db.engine();
        let mut catalog = Catalog {
            engine,
            by_sku: HashMap::new(),
            by_description: HashMap::new(),
        };
        let skus: BTreeSet<&str> = lines.clone().filter_map(|l| l.sku.as_deref()).collect();
        for chunk in skus.into_iter().collect::<Vec<_>>().chunks(CATALOG_CHUNK) {
            db.query_each(
                &in_list(
                    "SELECT sku, category, sensitive FROM products WHERE sku IN",
                    None,
                ),
                &padded(chunk),
                &mut |mut row| {
                    let sku = text(row.take(0), "product sku")?;
                    let product = (text(row.take(1), "product category")?.into(), row.get(2)?);
                    catalog.by_sku.insert(sku, product);
                    Ok(())
                },
            )?;
        }
        // One representative per description as the engine folds it.
        let mut descriptions: BTreeMap<String, &str> = BTreeMap::new();
        for line in lines {
            let known = line
                .sku
                .as_ref()
                .is_some_and(|sku| catalog.by_sku.contains_key(sku));
            if !known {
                descriptions
                    .entry(fold(engine, &line.description))
                    .or_insert(line.description.as_str());
            }
        }
        let wanted: Vec<&str> = descriptions.into_values().collect();
        let sql = match engine {
            // The NOCASE index on description answers this.
            Engine::Sqlite => in_list(
                "SELECT description, category, sensitive FROM products
                 WHERE description COLLATE NOCASE IN",
                None,
            ),
            Engine::Postgres => in_list(
                "SELECT description, category, sensitive FROM products WHERE lower(description) IN",
                Some("lower"),
            ),
        };
        for chunk in wanted.chunks(CATALOG_CHUNK) {
            let mut rows = db.query(&format!("{sql} ORDER BY sku"), &padded(chunk))?;
            for row in &mut rows {
                let key = fold(engine, &text(row.take(0), "product description")?);
                let product = (text(row.take(1), "product category")?.into(), row.get(2)?);
                // Ordered by sku: the first match of a description wins.
                catalog.by_description.entry(key).or_insert(product);
            }
        }
        Ok(catalog)
    }

    fn categorised(&self, line: TimelineLine) -> PurchaseLine {
        let product = line
            .sku
            .as_ref()
            .and_then(|sku| self.by_sku.get(sku))
            .or_else(|| {
                self.by_description
                    .get(&fold(self.engine, &line.description))
            });
        let (category, sensitive) = match product {
            Some((c, s)) => (Some(c.clone()), *s),
            None => (None, false),
        };
        PurchaseLine {
            line,
            category,
            sensitive,
        }
    }
}

/// A description as the engine compares it ignoring case: SQLite's NOCASE folds ASCII
/// only, PostgreSQL's `lower` every letter.
fn fold(engine: Engine, description: &str) -> String {
    match engine {
        Engine::Sqlite => description.to_ascii_lowercase(),
        Engine::Postgres => description.to_lowercase(),
    }
}

/// `{head} (?1, ..., ?N)` for N = [`CATALOG_CHUNK`], each wrapped in `func` if given.
fn in_list(head: &str, func: Option<&str>) -> String {
    let params: Vec<String> = (1..=CATALOG_CHUNK)
        .map(|i| match func {
            Some(f) => format!("{f}(?{i})"),
            None => format!("?{i}"),
        })
        .collect();
    format!("{head} ({})", params.join(", "))
}

/// `values` padded with NULLs to [`CATALOG_CHUNK`] parameters.
fn padded<'a>(values: &'a [&'a str]) -> Vec<&'a dyn ToParam> {
    const NONE: Option<&str> = None;
    let mut params: Vec<&dyn ToParam> = values.iter().map(|v| v as &dyn ToParam).collect();
    params.resize(CATALOG_CHUNK, &NONE);
    params
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use till360_shared::card::with_check_digit;

    use super::*;
    use crate::store::erasures::{self, Suppression};
    use crate::store::sql::TxKind;
    use crate::store::test_support::for_each_engine;
    use crate::store::{privacy, ConsentChange};

    /// Counts the statements a read sends.
    struct Counting<'a> {
        inner: &'a dyn Sql,
        statements: Cell<usize>,
    }

    impl Sql for Counting<'_> {
        fn engine(&self) -> Engine {
            self.inner.engine()
        }
        fn execute(&self, sql: &str, params: &[&dyn ToParam]) -> Result<u64, StoreError> {
            self.statements.set(self.statements.get() + 1);
            self.inner.execute(sql, params)
        }
        fn query_each(
            &self,
            sql: &str,
            params: &[&dyn ToParam],
            each: &mut dyn FnMut(Row) -> Result<(), StoreError>,
        ) -> Result<(), StoreError> {
            self.statements.set(self.statements.get() + 1);
            self.inner.query_each(sql, params, each)
        }
        fn batch(&self, sql: &str) -> Result<(), StoreError> {
            self.statements.set(self.statements.get() + 1);
            self.inner.batch(sql)
        }
        fn begin(&self, kind: TxKind) -> Result<(), StoreError> {
            self.inner.begin(kind)
        }
    }

    fn card(n: u32) -> CardNumber {
        CardNumber::parse(&with_check_digit(&format!("2401{n:08}")).unwrap()).unwrap()
    }

    const T0: i64 = 1_764_060_000_000;

    /// A profile with `card` and `receipts` receipts at store S1, each with the lines
    /// `lines(i)`.
    fn add_profile(
        db: &dyn Sql,
        id: &str,
        card: &CardNumber,
        first_name: &str,
        receipts: usize,
        lines: impl Fn(usize) -> Vec<ReceiptLine>,
    ) {
        db.execute(
            "INSERT INTO profiles (profile_id, created_at_ms, created_offset_min, first_name,
                 last_name) VALUES (?1, ?2, 60, ?3, 'Jansen')",
            sql_params![id, T0, first_name],
        )
        .unwrap();
        db.execute(
            "INSERT INTO identifiers (kind, value, profile_id, source, added_at_ms)
             VALUES ('card', ?1, ?2, 'till', ?3)",
            sql_params![card.as_str(), id, T0],
        )
        .unwrap();
        for i in 0..receipts {
            let lines = lines(i);
            let total: i64 = lines.iter().map(|l| l.amount_cents).sum();
            db.execute(
                "INSERT INTO transactions (store, till, seq, receipt_no, at_ms, offset_min, card,
                     profile_id, total_cents, currency, lines)
                 VALUES ('S1', ?1, ?2, ?3, ?4, 60, ?5, ?6, ?7, 'EUR', ?8)",
                sql_params![
                    id,
                    i as i64,
                    format!("R{i}"),
                    T0 + i as i64 * 60_000,
                    card.as_str(),
                    id,
                    total,
                    codec::to_bytes(&lines).unwrap()
                ],
            )
            .unwrap();
        }
    }

    fn line(description: &str, sku: Option<&str>, cents: i64) -> ReceiptLine {
        ReceiptLine {
            description: description.into(),
            sku: sku.map(str::to_string),
            quantity_milli: 1000,
            unit_cents: Some(cents),
            amount_cents: cents,
            discount: false,
        }
    }

    fn add_products(db: &dyn Sql) {
        for (sku, description, category, sensitive) in [
            ("100", "Milk", "dairy", false),
            ("101", "MILK", "other", false),
            ("200", "Pills", "pharmacy", true),
        ] {
            db.execute(
                "INSERT INTO products (sku, description, category, sensitive)
                 VALUES (?1, ?2, ?3, ?4)",
                sql_params![sku, description, category, sensitive],
            )
            .unwrap();
        }
        // Many products: more skus than one catalogue statement matches.
        for i in 0..100 {
            db.execute(
                "INSERT INTO products (sku, description, category, sensitive)
                 VALUES (?1, ?2, 'grocery', 0)",
                sql_params![format!("G{i:03}"), format!("Grocery {i}")],
            )
            .unwrap();
        }
    }

    #[test]
    fn the_view_by_card_needs_no_statement_per_receipt_or_line() {
        for_each_engine(|db| {
            let conn = db.get().unwrap();
            let conn: &dyn Sql = &*conn;
            add_products(conn);
            let (small, big) = (card(1), card(2));
            add_profile(conn, "p-small", &small, "Anna", 1, |_| {
                vec![line("milk", None, 100)]
            });
            // Every receipt its own skus (180 in all, more than a chunk), lines matched
            // by sku, by description in another case, and not at all.
            add_profile(conn, "p-big", &big, "Bert", 60, |i| {
                vec![
                    line("whatever", Some(&format!("G{:03}", i % 100)), 10),
                    line("mIlK", Some(&format!("X{i}")), 100),
                    line("pills", None, 500),
                    line("Unknown thing", None, 7),
                ]
            });
            let count = |card: &CardNumber| {
                let counting = Counting {
                    inner: conn,
                    statements: Cell::new(0),
                };
                let view = profile_by_card(&counting, card).unwrap().unwrap();
                (counting.statements.get(), view)
            };
            let (one, small_view) = count(&small);
            let (sixty, big_view) = count(&big);
            assert_eq!(small_view.transactions.count, 1);
            assert_eq!(big_view.transactions.count, 60);
            // 120 distinct skus take ceil(60 / 32) * 2 catalogue statements; the rest is
            // one statement per table, whatever the receipts and lines.
            let skus = 60_usize.div_ceil(CATALOG_CHUNK) + 60_usize.div_ceil(CATALOG_CHUNK);
            assert!(
                sixty <= one + skus,
                "{one} statements for one receipt, {sixty} for sixty"
            );
            assert!(sixty < 20, "{sixty} statements for one view");
            // "milk" in any case is the first product by sku with that description
            // (dairy, not other); pharmacy is sensitive and never shown.
            let categories: Vec<(&str, i64)> = big_view
                .categories
                .iter()
                .map(|c| (c.category.as_str(), c.spend_cents))
                .collect();
            assert_eq!(categories, vec![("dairy", 6000), ("grocery", 600)]);
            assert_eq!(small_view.categories[0].category, "dairy");
            let unknown = &big_view.timeline[0].lines[3];
            assert_eq!(unknown.description, "Unknown thing");
            assert_eq!(big_view.timeline.len(), crate::profile::TIMELINE_LEN);
            assert_eq!(
                load_view(conn, "p-big").unwrap().unwrap(),
                big_view,
                "by id and by card"
            );
            assert!(profile_by_card(conn, &card(3)).unwrap().is_none());
        });
    }

    #[test]
    fn a_view_is_read_in_a_transaction_that_leaves_the_connection_as_it_was() {
        for_each_engine(|db| {
            let conn = db.get().unwrap();
            let conn: &dyn Sql = &*conn;
            let c = card(1);
            add_profile(conn, "p-a", &c, "Anna", 3, |_| {
                vec![line("Milk", None, 100)]
            });
            let plan_mode = || -> Option<String> {
                if conn.engine() != Engine::Postgres {
                    return None;
                }
                conn.query_value("SELECT current_setting('plan_cache_mode')", sql_params![])
                    .unwrap()
            };
            let before = plan_mode();
            let view = profile_by_card(conn, &c).unwrap().unwrap();
            assert_eq!(view.transactions.count, 3);
            assert!(profile_by_card(conn, &card(2)).unwrap().is_none());
            assert!(load_view(conn, "p-x").unwrap().is_none());
            // No transaction left open: a write transaction starts and commits, and the
            // ingest's plan mode (a session setting) is the one it had.
            transaction(conn, TxKind::Write, |tx| {
                tx.execute(
                    "UPDATE profiles SET first_name = 'Anne' WHERE profile_id = 'p-a'",
                    sql_params![],
                )
            })
            .unwrap();
            assert!(!conn.is_broken());
            assert_eq!(plan_mode(), before);
            if conn.engine() == Engine::Postgres {
                assert_eq!(before.as_deref(), Some("force_custom_plan"));
            }
            let view = load_view(conn, "p-a").unwrap().unwrap();
            assert_eq!(view.personal.first_name.as_deref(), Some("Anne"));
        });
    }

    #[test]
    fn search_finds_by_normalised_identifier_and_name_prefix_in_any_case() {
        for_each_engine(|db| {
            let conn = db.get().unwrap();
            let conn: &dyn Sql = &*conn;
            add_profile(conn, "p-a", &card(1), "Anna", 0, |_| vec![]);
            add_profile(conn, "p-b", &card(2), "annemarie", 0, |_| vec![]);
            add_profile(conn, "p-c", &card(3), "Bob_by", 0, |_| vec![]);
            conn.execute(
                "INSERT INTO identifiers (kind, value, profile_id, source, added_at_ms)
                 VALUES ('email', 'anna@example.nl', 'p-a', 'crm', 0)",
                sql_params![],
            )
            .unwrap();
            let ids = |q: ProfileQuery| search_ids(conn, &q, 10, 31).unwrap();
            assert_eq!(ids(ProfileQuery::NamePrefix("ANN".into())), ["p-a", "p-b"]);
            assert_eq!(ids(ProfileQuery::NamePrefix("jans".into())).len(), 3);
            assert_eq!(ids(ProfileQuery::NamePrefix("bob_".into())), ["p-c"]);
            // Wildcards are plain characters.
            assert!(ids(ProfileQuery::NamePrefix("%".into())).is_empty());
            assert!(ids(ProfileQuery::NamePrefix("b_b".into())).is_empty());
            assert_eq!(
                search_ids(conn, &ProfileQuery::NamePrefix("ann".into()), 1, 31).unwrap(),
                ["p-a"]
            );
            assert_eq!(ids(ProfileQuery::Email(" Anna@EXAMPLE.nl".into())), ["p-a"]);
            assert_eq!(ids(ProfileQuery::Card(card(2).to_string())), ["p-b"]);
            assert!(ids(ProfileQuery::Card("1234".into())).is_empty());
            let views = search(conn, &ProfileQuery::NamePrefix("a".into()), 10, 31).unwrap();
            assert_eq!(views.len(), 2);
            assert_eq!(profiles(conn, 2).unwrap().len(), 2);
        });
    }

    #[test]
    fn summaries_and_identifier_history_on_every_engine() {
        for_each_engine(|db| {
            let conn = db.get().unwrap();
            let conn: &dyn Sql = &*conn;
            let (a, b) = (card(1), card(2));
            add_profile(conn, "p-a", &a, "Anna", 3, |_| {
                vec![line("milk", None, 100)]
            });
            add_profile(conn, "p-b", &b, "Bert", 0, |_| Vec::new());
            // A second card and an e-mail joined Anna's profile later, from the CRM.
            for (kind, value, at) in [
                ("card", card(3).as_str().to_string(), T0 + 5_000),
                ("email", "anna@example.com".to_string(), T0 + 9_000),
            ] {
                conn.execute(
                    "INSERT INTO identifiers (kind, value, profile_id, source, added_at_ms)
                     VALUES (?1, ?2, 'p-a', 'crm', ?3)",
                    sql_params![kind, value, at],
                )
                .unwrap();
            }
            let found = summaries(conn, &["p-b".into(), "p-none".into(), "p-a".into()]).unwrap();
            assert_eq!(
                found,
                vec![
                    ProfileSummary {
                        profile_id: "p-b".into(),
                        first_name: Some("Bert".into()),
                        last_name: Some("Jansen".into()),
                        customer_no: None,
                        cards: vec![b.as_str().to_string()],
                        emails: vec![],
                        last_at_ms: None,
                    },
                    ProfileSummary {
                        profile_id: "p-a".into(),
                        first_name: Some("Anna".into()),
                        last_name: Some("Jansen".into()),
                        customer_no: None,
                        cards: {
                            let mut cards =
                                vec![a.as_str().to_string(), card(3).as_str().to_string()];
                            cards.sort();
                            cards
                        },
                        emails: vec!["anna@example.com".into()],
                        last_at_ms: Some(T0 + 2 * 60_000),
                    },
                ]
            );
            let (view, history) = load_view_with_history(conn, "p-a").unwrap().unwrap();
            assert_eq!(view, load_view(conn, "p-a").unwrap().unwrap());
            let got: Vec<(&str, &str, i64)> = history
                .iter()
                .map(|r| (r.kind.as_str(), r.source.as_str(), r.added_at.unix_ms))
                .collect();
            assert_eq!(
                got,
                vec![
                    ("card", "till", T0),
                    ("card", "crm", T0 + 5_000),
                    ("email", "crm", T0 + 9_000)
                ]
            );
            // The timeline names each receipt's till.
            assert_eq!(view.timeline[0].till.as_deref(), Some("p-a"));
            assert!(load_view_with_history(conn, "p-none").unwrap().is_none());
        });
    }

    #[test]
    fn consents_export_and_erase_on_every_engine() {
        for_each_engine(|db| {
            let conn = db.get().unwrap();
            let conn: &dyn Sql = &*conn;
            conn.execute(
                "INSERT INTO agents (store, till, last_seq, last_seen_ms) VALUES ('S1', 'T1', 0, 0)",
                sql_params![],
            )
            .unwrap();
            let c = card(1);
            add_profile(conn, "p-a", &c, "Anna", 2, |_| {
                vec![line("Milk", None, 100)]
            });
            let now = Timestamp::from_unix_ms(T0 + 3_600_000, 0);
            let change = |purpose: &str, granted| ConsentChange {
                purpose: purpose.into(),
                granted,
            };
            let view = privacy::set_consents(
                conn,
                "p-a",
                &[change("email", true), change("sms", false)],
                "api",
                now,
            )
            .unwrap()
            .unwrap();
            assert!(view.consents["email"].granted && !view.consents["sms"].granted);
            let view = privacy::set_consents(conn, "p-a", &[change("sms", true)], "api", now)
                .unwrap()
                .unwrap();
            assert!(view.consents["sms"].granted);
            assert!(
                privacy::set_consents(conn, "p-x", &[change("sms", true)], "api", now)
                    .unwrap()
                    .is_none()
            );

            let export = privacy::export_profile(conn, "p-a").unwrap().unwrap();
            assert_eq!(export["personal"]["first_name"], "Anna");
            assert_eq!(export["transactions"].as_array().unwrap().len(), 2);
            assert_eq!(export["consents"].as_array().unwrap().len(), 2);
            assert_eq!(export["identifiers"][0]["value"], c.as_str());
            assert!(privacy::export_profile(conn, "p-x").unwrap().is_none());

            let suppression = Suppression::from_master(&[5; 32]);
            let report = privacy::erase_profile(conn, &suppression, "p-a", now)
                .unwrap()
                .unwrap();
            assert_eq!(
                (
                    report.identifiers_removed,
                    report.transactions_anonymised,
                    report.erasure_version
                ),
                (1, 2, 1)
            );
            assert!(load_view(conn, "p-a").unwrap().is_none());
            assert!(profile_by_card(conn, &c).unwrap().is_none());
            let left: i64 = conn
                .query_one(
                    "SELECT count(*) FROM transactions WHERE profile_id IS NULL AND card IS NULL",
                    sql_params![],
                )
                .unwrap()
                .get(0)
                .unwrap();
            assert_eq!(left, 2, "transactions kept, anonymised");
            for table in ["consents", "identifiers", "profiles"] {
                let n: i64 = conn
                    .query_one(&format!("SELECT count(*) FROM {table}"), sql_params![])
                    .unwrap()
                    .get(0)
                    .unwrap();
                assert_eq!(n, 0, "{table}");
            }
            assert_eq!(
                erasures::suppressed_since(conn, &suppression, &Identifier::card(&c)).unwrap(),
                Some(now.unix_ms)
            );
            assert_eq!(
                erasures::erasures_since(conn, "S1", 0, 10).unwrap(),
                vec![(1, vec![suppression.card_key("S1", &c)])]
            );
            assert!(privacy::erase_profile(conn, &suppression, "p-a", now)
                .unwrap()
                .is_none());
        });
    }
}
