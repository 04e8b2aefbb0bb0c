//! `import customers FILE.csv`: CRM master data, identifiers and consents.

use std::io::BufRead;

use chrono::NaiveDate;
use till360_shared::Timestamp;

use super::strict_csv::StrictCsv;
use super::{parse_flag, Columns, ImportError, ImportSummary, ProgressFn, Rejection};
use crate::config::IdentityConfig;
use crate::identity::{IdKind, Identifier};
use crate::store::erasures::Suppression;
use crate::store::imports::{self as store_imports, CustomerRecord as Customer};
use crate::store::sql::Sql;

const REQUIRED: &[&str] = &["customer_no"];
const CONSENTS: [(&str, &str); 4] = [
    ("consent_email", "email"),
    ("consent_sms", "sms"),
    ("consent_post", "post"),
    ("consent_personalization", "personalization"),
];

/// Rows applied together: the store looks up a chunk's identifiers in one go.
const CHUNK: usize = 5_000;

fn optional(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_string())
}

fn date(value: &str, column: &str) -> Result<Option<String>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .map(|d| Some(d.format("%Y-%m-%d").to_string()))
        .map_err(|_| {
            format!(
                "{column}: not a date YYYY-MM-DD ({} characters)",
                value.chars().count()
            )
        })
}

fn parse(cols: &Columns, record: &csv::StringRecord, cc: u16) -> Result<Customer, String> {
    let customer_no = Identifier::parse(IdKind::CustomerNo, cols.get(record, "customer_no"), cc)
        .map_err(|e| format!("customer_no: {e}"))?;
    let mut identifiers = vec![customer_no.clone()];
    for (column, kind) in [("email", IdKind::Email), ("phone", IdKind::Phone)] {
        let raw = cols.get(record, column);
        if !raw.is_empty() {
            identifiers
                .push(Identifier::parse(kind, raw, cc).map_err(|e| format!("{column}: {e}"))?);
        }
    }
    for card in cols.get(record, "cards").split(';').map(str::trim) {
        if !card.is_empty() {
            identifiers.push(
                Identifier::parse(IdKind::Card, card, cc).map_err(|e| format!("cards: {e}"))?,
            );
        }
    }
    let mut consents = Vec::new();
    for (column, purpose) in CONSENTS {
        if let Some(granted) = parse_flag(cols.get(record, column), column)? {
            consents.push((purpose, granted));
        }
    }
    Ok(Customer {
        customer_no: customer_no.value,
        identifiers,
        first_name: optional(cols.get(record, "first_name")),
        last_name: optional(cols.get(record, "last_name")),
        birth_date: date(cols.get(record, "birth_date"), "birth_date")?,
        postal_code: optional(cols.get(record, "postal_code")),
        member_since: date(cols.get(record, "member_since"), "member_since")?,
        language: optional(cols.get(record, "language")),
        consents,
    })
}

pub(super) fn run(
    db: &dyn Sql,
    reader: impl BufRead,
    config: &IdentityConfig,
    suppression: Option<&Suppression>,
    now: Timestamp,
    progress: ProgressFn<'_>,
) -> Result<ImportSummary, ImportError> {
    let (mut csv, cols) = StrictCsv::open(reader, REQUIRED)?;
    let mut summary = ImportSummary::default();
    let mut chunk = Vec::with_capacity(CHUNK);
    while let Some((line, record)) = csv.next(&mut summary, &mut *progress)? {
        match parse(&cols, record, config.default_country_code) {
            Err(reason) => summary.rejected.push(Rejection { line, reason }),
            // After a bad line nothing more is applied: it will be rolled back anyway.
            Ok(c) if summary.rejected.is_empty() => {
                chunk.push(c);
                if chunk.len() == CHUNK {
                    apply(db, &mut chunk, config, suppression, now, &mut summary)?;
                }
            }
            Ok(_) => {}
        }
    }
    if summary.rejected.is_empty() {
        apply(db, &mut chunk, config, suppression, now, &mut summary)?;
    }
    progress(summary.read);
    Ok(summary)
}

/// Applies (and empties) a chunk of rows, in file order.
fn apply(
    db: &dyn Sql,
    chunk: &mut Vec<Customer>,
    config: &IdentityConfig,
    suppression: Option<&Suppression>,
    now: Timestamp,
    summary: &mut ImportSummary,
) -> Result<(), ImportError> {
    if chunk.is_empty() {
        return Ok(());
    }
    let identifiers: Vec<&[Identifier]> = chunk.iter().map(|c| &c.identifiers[..]).collect();
    let erased = store_imports::erased_at(db, suppression, &identifiers)?;
    let mut kept = Vec::with_capacity(chunk.len());
    for (c, erased) in chunk.drain(..).zip(erased) {
        match erased {
            Some(erased_at_ms) if !signed_up_again(&c, erased_at_ms) => summary.suppressed += 1,
            _ => kept.push(c),
        }
    }
    let outcomes =
        store_imports::apply_customers(db, &kept, config.max_customers_per_identifier, now)?;
    for outcome in outcomes {
        summary.blocked.extend(outcome.newly_blocked);
        summary.count(outcome.applied);
    }
    Ok(())
}

/// A row naming an erased person is a new sign-up when its `member_since` is on or
/// after the day of the erase and it gives a consent; otherwise it is an old record.
fn signed_up_again(c: &Customer, erased_at_ms: i64) -> bool {
    let erase_day = Timestamp::from_unix_ms(erased_at_ms, 0)
        .utc()
        .date_naive()
        .format("%Y-%m-%d")
        .to_string();
    let joined_after = c.member_since.as_deref().is_some_and(|d| *d >= *erase_day);
    joined_after && c.consents.iter().any(|(_, granted)| *granted)
}
