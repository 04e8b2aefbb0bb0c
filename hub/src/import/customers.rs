//! `import customers FILE.csv`: CRM master data, identifiers and consents.

use std::io::BufRead;

use chrono::NaiveDate;
use rusqlite::{params, Connection, TransactionBehavior};
use till360_shared::Timestamp;

use super::strict_csv::StrictCsv;
use super::{finish, parse_flag, Columns, ImportError, ImportSummary, ProgressFn, Rejection};
use crate::config::IdentityConfig;
use crate::identity::{IdKind, Identifier, LinkRow};
use crate::store::erasures::Suppression;
use crate::store::identity::apply_link;

const REQUIRED: &[&str] = &["customer_no"];
const CONSENTS: [(&str, &str); 4] = [
    ("consent_email", "email"),
    ("consent_sms", "sms"),
    ("consent_post", "post"),
    ("consent_personalization", "personalization"),
];

/// One checked CRM row.
struct Customer {
    customer_no: String,
    identifiers: Vec<Identifier>,
    first_name: Option<String>,
    last_name: Option<String>,
    birth_date: Option<String>,
    postal_code: Option<String>,
    member_since: Option<String>,
    language: Option<String>,
    consents: Vec<(&'static str, bool)>,
}

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
    conn: &mut Connection,
    reader: impl BufRead,
    config: &IdentityConfig,
    suppression: Option<&Suppression>,
    now: Timestamp,
    progress: ProgressFn<'_>,
) -> Result<ImportSummary, ImportError> {
    let (mut csv, cols) = StrictCsv::open(reader, REQUIRED)?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut summary = ImportSummary::default();
    while let Some((line, record)) = csv.next(&mut summary, &mut *progress)? {
        match parse(&cols, record, config.default_country_code) {
            Err(reason) => summary.rejected.push(Rejection { line, reason }),
            // After a bad line nothing more is applied: it will be rolled back anyway.
            Ok(c) if summary.rejected.is_empty() => {
                apply(&tx, &c, config, suppression, now, &mut summary)?
            }
            Ok(_) => {}
        }
    }
    progress(summary.read);
    finish(tx, summary)
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

fn apply(
    conn: &Connection,
    c: &Customer,
    config: &IdentityConfig,
    suppression: Option<&Suppression>,
    now: Timestamp,
    summary: &mut ImportSummary,
) -> Result<(), ImportError> {
    if let Some(erased_at_ms) = super::erased_at(conn, suppression, &c.identifiers)? {
        if !signed_up_again(c, erased_at_ms) {
            summary.suppressed += 1;
            return Ok(());
        }
    }
    let outcome = apply_link(
        conn,
        &LinkRow {
            key: format!("crm:{}", c.customer_no),
            source: "crm".into(),
            identifiers: c.identifiers.clone(),
            seen_at: now,
        },
        config.max_customers_per_identifier,
        now,
    )?;
    summary.blocked.extend(outcome.newly_blocked);
    let Some(profile_id) = outcome.profile_id else {
        return Ok(());
    };
    // Empty CRM fields keep what is known; the smallest customer number of a joined
    // profile is its customer_no (independent of import order).
    let changed = conn
        .prepare_cached(
            "UPDATE profiles SET
                 customer_no = CASE WHEN customer_no IS NULL OR ?2 < customer_no
                               THEN ?2 ELSE customer_no END,
                 first_name = coalesce(?3, first_name), last_name = coalesce(?4, last_name),
                 birth_date = coalesce(?5, birth_date), postal_code = coalesce(?6, postal_code),
                 member_since = coalesce(?7, member_since), language = coalesce(?8, language),
                 updated_at_ms = ?9
             WHERE profile_id = ?1 AND NOT (
                 customer_no IS (CASE WHEN customer_no IS NULL OR ?2 < customer_no
                                 THEN ?2 ELSE customer_no END)
                 AND first_name IS coalesce(?3, first_name) AND last_name IS coalesce(?4, last_name)
                 AND birth_date IS coalesce(?5, birth_date) AND postal_code IS coalesce(?6, postal_code)
                 AND member_since IS coalesce(?7, member_since) AND language IS coalesce(?8, language))",
        )?
        .execute(params![
            profile_id,
            c.customer_no,
            c.first_name,
            c.last_name,
            c.birth_date,
            c.postal_code,
            c.member_since,
            c.language,
            now.unix_ms
        ])?;
    let mut consents_changed = 0;
    for (purpose, granted) in &c.consents {
        consents_changed += conn
            .prepare_cached(
                "INSERT INTO consents (profile_id, purpose, granted, source, at_ms)
                 VALUES (?1, ?2, ?3, 'crm', ?4)
                 ON CONFLICT (profile_id, purpose) DO UPDATE SET
                     granted = excluded.granted, source = excluded.source, at_ms = excluded.at_ms
                 WHERE consents.granted IS NOT excluded.granted",
            )?
            .execute(params![profile_id, purpose, granted, now.unix_ms])?;
    }
    if outcome.created {
        summary.inserted += 1;
    } else if outcome.merged {
        summary.merged += 1;
    } else if changed + consents_changed > 0 {
        summary.updated += 1;
    } else {
        summary.unchanged += 1;
    }
    Ok(())
}
