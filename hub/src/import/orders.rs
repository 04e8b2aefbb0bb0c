//! `import orders FILE.jsonl`: one online order per line.

use std::io::BufRead;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};
use till360_shared::Timestamp;

use super::{finish, ImportError, ImportSummary, ProgressFn, Rejection};
use crate::config::IdentityConfig;
use crate::identity::{IdKind, Identifier, LinkRow};
use crate::store::erasures::Suppression;
use crate::store::identity::apply_link;

/// An order line as the file has it and `orders.lines` stores it (JSON).
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

struct Order {
    order_id: String,
    identifiers: Vec<Identifier>,
    at: Timestamp,
    channel: String,
    lines: String,
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
    conn: &mut Connection,
    reader: impl BufRead,
    config: &IdentityConfig,
    suppression: Option<&Suppression>,
    now: Timestamp,
    progress: ProgressFn<'_>,
) -> Result<ImportSummary, ImportError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
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
                apply(&tx, &order, config, suppression, now, &mut summary)?
            }
            Ok(_) => {}
        }
    }
    progress(summary.read);
    finish(tx, summary)
}

fn apply(
    conn: &Connection,
    order: &Order,
    config: &IdentityConfig,
    suppression: Option<&Suppression>,
    now: Timestamp,
    summary: &mut ImportSummary,
) -> Result<(), ImportError> {
    let known = conn
        .prepare_cached("SELECT 1 FROM orders WHERE order_id = ?1")?
        .query_row([&order.order_id], |_| Ok(()))
        .optional()?
        .is_some();
    if known {
        summary.unchanged += 1;
        return Ok(());
    }
    // An order from before an erase of one of its identifiers is kept (sales stay
    // counted) without the person, as the erase left the orders it found.
    let erased = super::erased_at(conn, suppression, &order.identifiers)?;
    if erased.is_some_and(|ms| ms >= order.at.unix_ms) {
        summary.suppressed += 1;
        insert_order(conn, order, None)?;
        summary.inserted += 1;
        return Ok(());
    }
    let outcome = apply_link(
        conn,
        &LinkRow {
            key: format!("order:{}", order.order_id),
            source: "online".into(),
            identifiers: order.identifiers.clone(),
            seen_at: order.at,
        },
        config.max_customers_per_identifier,
        now,
    )?;
    summary.blocked.extend(outcome.newly_blocked);
    if outcome.merged {
        summary.merged += 1;
    }
    // A customer number on an order names the profile as a CRM row would: the smallest
    // one wins (independent of import order), so a web-only customer is exported by it.
    let customer_no = order
        .identifiers
        .iter()
        .find(|id| id.kind == IdKind::CustomerNo);
    if let (Some(profile_id), Some(no)) = (&outcome.profile_id, customer_no) {
        conn.prepare_cached(
            "UPDATE profiles SET customer_no = ?2
             WHERE profile_id = ?1 AND (customer_no IS NULL OR ?2 < customer_no)",
        )?
        .execute(params![profile_id, no.value])?;
    }
    insert_order(conn, order, outcome.profile_id.as_deref())?;
    summary.inserted += 1;
    Ok(())
}

fn insert_order(
    conn: &Connection,
    order: &Order,
    profile_id: Option<&str>,
) -> Result<(), ImportError> {
    conn.prepare_cached(
        "INSERT INTO orders (order_id, profile_id, ordered_at_ms, offset_min, channel,
             total_cents, currency, lines) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        order.order_id,
        profile_id,
        order.at.unix_ms,
        order.at.offset_min,
        order.channel,
        order.total_cents,
        order.currency,
        order.lines
    ])?;
    Ok(())
}
