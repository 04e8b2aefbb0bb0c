//! `import orders FILE.jsonl`: one online order per line.

use std::io::BufRead;

use serde::Deserialize;
use till360_shared::Timestamp;

use super::{ImportError, ImportSummary, ProgressFn, Rejection};
use crate::config::IdentityConfig;
use crate::identity::{IdKind, Identifier};
use crate::store::erasures::Suppression;
use crate::store::imports::{self as store_imports, OrderLine, OrderRecord as Order};
use crate::store::sql::Sql;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrder {
    order_id: String,
    #[serde(default)]
    customer_no: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    card: Option<String>,
    #[serde(default)]
    online_account: Option<String>,
    ordered_at: String,
    channel: String,
    lines: Vec<OrderLine>,
    total_cents: i64,
    currency: String,
}

fn parse(text: &str, cc: u16) -> Result<Order, String> {
    let raw: RawOrder = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let order_id = raw.order_id.trim().to_string();
    if order_id.is_empty() {
        return Err("order_id: empty".into());
    }
    let mut identifiers = Vec::new();
    for (column, kind, value) in [
        ("customer_no", IdKind::CustomerNo, &raw.customer_no),
        ("email", IdKind::Email, &raw.email),
        ("card", IdKind::Card, &raw.card),
        ("online_account", IdKind::OnlineAccount, &raw.online_account),
    ] {
        if let Some(value) = value.as_deref().filter(|v| !v.trim().is_empty()) {
            identifiers
                .push(Identifier::parse(kind, value, cc).map_err(|e| format!("{column}: {e}"))?);
        }
    }
    if identifiers.is_empty() {
        return Err("no customer_no, email, card or online_account".into());
    }
    let at = chrono::DateTime::parse_from_rfc3339(raw.ordered_at.trim())
        .map_err(|e| format!("ordered_at: {:?} is not RFC 3339 ({e})", raw.ordered_at))?;
    let offset_min = i16::try_from(at.offset().local_minus_utc() / 60)
        .map_err(|_| "ordered_at: offset out of range".to_string())?;
    let channel = raw.channel.trim().to_string();
    if channel.is_empty() {
        return Err("channel: empty".into());
    }
    let currency = raw.currency.trim().to_string();
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(format!("currency: {currency:?} is not an ISO 4217 code"));
    }
    for (i, l) in raw.lines.iter().enumerate() {
        if !(l.qty.is_finite() && l.qty > 0.0) {
            return Err(format!("lines[{i}].qty: must be a positive number"));
        }
        if l.description.trim().is_empty() && l.sku.as_deref().is_none_or(|s| s.trim().is_empty()) {
            return Err(format!("lines[{i}]: neither sku nor description"));
        }
    }
    Ok(Order {
        order_id,
        identifiers,
        at: Timestamp::from_unix_ms(at.timestamp_millis(), offset_min),
        channel,
        lines: serde_json::to_string(&raw.lines).map_err(|e| e.to_string())?,
        total_cents: raw.total_cents,
        currency,
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
    let mut summary = ImportSummary::default();
    for (i, text) in reader.lines().enumerate() {
        let line = i as u64 + 1;
        let text = match text {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                summary.read += 1;
                summary.rejected.push(Rejection {
                    line,
                    reason: "not UTF-8".into(),
                });
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if text.trim().is_empty() {
            continue;
        }
        summary.read += 1;
        if summary.read % super::progress::EVERY == 0 {
            progress(summary.read);
        }
        match parse(&text, config.default_country_code) {
            Err(reason) => summary.rejected.push(Rejection { line, reason }),
            Ok(order) if summary.rejected.is_empty() => {
                apply(db, &order, config, suppression, now, &mut summary)?
            }
            Ok(_) => {}
        }
    }
    progress(summary.read);
    Ok(summary)
}

fn apply(
    db: &dyn Sql,
    order: &Order,
    config: &IdentityConfig,
    suppression: Option<&Suppression>,
    now: Timestamp,
    summary: &mut ImportSummary,
) -> Result<(), ImportError> {
    if store_imports::order_known(db, &order.order_id)? {
        summary.unchanged += 1;
        return Ok(());
    }
    // An order from before an erase of one of its identifiers is kept (sales stay
    // counted) without the person, as the erase left the orders it found.
    let erased = store_imports::erased_at(db, suppression, &[&order.identifiers])?;
    if erased[0].is_some_and(|ms| ms >= order.at.unix_ms) {
        summary.suppressed += 1;
        store_imports::insert_anonymous_order(db, order)?;
        summary.inserted += 1;
        return Ok(());
    }
    let outcome = store_imports::apply_order(db, order, config.max_customers_per_identifier, now)?;
    summary.blocked.extend(outcome.newly_blocked);
    if outcome.merged {
        summary.merged += 1;
    }
    summary.inserted += 1;
    Ok(())
}
