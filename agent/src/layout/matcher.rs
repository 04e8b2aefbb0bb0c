//! Applying a layout to the text lines of one receipt.

#![deny(clippy::disallowed_methods)]

use chrono::{NaiveDate, NaiveDateTime};
use regex::Captures;
use till360_shared::money::parse_amount;
use till360_shared::ReceiptLine;

use super::{Layout, ParsedReceipt};

/// A quantity line (`2 x 1,29`) waiting for the item line it belongs to.
struct PendingQuantity {
    qty_milli: i64,
    unit_cents: Option<i64>,
    line: String,
}

impl Layout {
    /// Matches the printed lines of one receipt. Per line the patterns are tried in
    /// this order: ignore, receipt_no, timestamp, card, total, discount, quantity,
    /// items. Item, quantity and discount lines count only before the total line
    /// (after it come payment and change lines that often look like items).
    pub fn match_lines<'a, I: IntoIterator<Item = &'a str>>(&self, lines: I) -> ParsedReceipt {
        let mut out = ParsedReceipt::default();
        let mut pending: Option<PendingQuantity> = None;
        let mut after_total = false;
        for raw in lines {
            let line = raw.trim();
            if line.is_empty() || self.ignore.iter().any(|r| r.is_match(line)) {
                continue;
            }
            if let Some(caps) = self.receipt_no.as_ref().and_then(|r| r.captures(line)) {
                if out.receipt_no.is_none() {
                    out.receipt_no = Some(group(&caps, "no").to_string());
                }
                continue;
            }
            if let Some((regex, format)) = &self.timestamp {
                if let Some(caps) = regex.captures(line) {
                    let ts = group(&caps, "ts");
                    match parse_timestamp(ts, format) {
                        Some(at) if out.printed_at.is_none() => out.printed_at = Some(at),
                        Some(_) => {}
                        None => out
                            .unmatched
                            .push(format!("bad timestamp {ts:?} (format {format:?}): {line}")),
                    }
                    continue;
                }
            }
            if let Some(caps) = self.card.as_ref().and_then(|r| r.captures(line)) {
                if out.card_last4.is_none() {
                    out.card_last4 = Some(group(&caps, "last4").to_string());
                }
                continue;
            }
            if after_total {
                out.unmatched.push(line.to_string());
                continue;
            }
            if let Some(caps) = self.total.captures(line) {
                after_total = true;
                if let Some(q) = pending.take() {
                    out.unmatched
                        .push(format!("quantity line without an item: {}", q.line));
                }
                if let Some(cents) = self.amount(&caps, "amount", line, &mut out.unmatched) {
                    out.total_cents = Some(cents);
                }
                continue;
            }
            if let Some(caps) = self.discount.as_ref().and_then(|r| r.captures(line)) {
                if let Some(cents) = self.amount(&caps, "amount", line, &mut out.unmatched) {
                    let description = caps
                        .name("desc")
                        .map(|m| m.as_str().trim())
                        .filter(|d| !d.is_empty())
                        .unwrap_or(line);
                    // Attached to the item above: it carries that item's SKU.
                    let sku = out
                        .lines
                        .iter()
                        .rev()
                        .find(|l| !l.discount)
                        .and_then(|l| l.sku.clone());
                    out.lines.push(ReceiptLine {
                        description: description.to_string(),
                        sku,
                        quantity_milli: 1000,
                        unit_cents: None,
                        // Printed with or without a minus sign, a discount lowers the total.
                        amount_cents: -cents.abs(),
                        discount: true,
                    });
                }
                continue;
            }
            if let Some(caps) = self.quantity.as_ref().and_then(|r| r.captures(line)) {
                if let Some(q) = pending.take() {
                    out.unmatched
                        .push(format!("quantity line without an item: {}", q.line));
                }
                let qty = group(&caps, "qty");
                match parse_quantity(qty, self.decimal) {
                    Some(qty_milli) => {
                        let unit_cents = caps
                            .name("unit")
                            .and_then(|_| self.amount(&caps, "unit", line, &mut out.unmatched));
                        pending = Some(PendingQuantity {
                            qty_milli,
                            unit_cents,
                            line: line.to_string(),
                        });
                    }
                    None => out.unmatched.push(format!("bad quantity {qty:?}: {line}")),
                }
                continue;
            }
            if let Some(caps) = self.items.iter().find_map(|r| r.captures(line)) {
                let Some(amount_cents) = self.amount(&caps, "amount", line, &mut out.unmatched)
                else {
                    continue;
                };
                let mut quantity_milli = None;
                if let Some(qty) = caps.name("qty").map(|m| m.as_str()) {
                    quantity_milli = parse_quantity(qty, self.decimal);
                    if quantity_milli.is_none() {
                        out.unmatched.push(format!("bad quantity {qty:?}: {line}"));
                    }
                }
                let mut unit_cents = caps
                    .name("unit")
                    .and_then(|_| self.amount(&caps, "unit", line, &mut out.unmatched));
                if let Some(q) = pending.take() {
                    quantity_milli = quantity_milli.or(Some(q.qty_milli));
                    unit_cents = unit_cents.or(q.unit_cents);
                }
                out.lines.push(ReceiptLine {
                    description: group(&caps, "desc").trim().to_string(),
                    sku: caps
                        .name("sku")
                        .map(|m| m.as_str().trim().to_string())
                        .filter(|s| !s.is_empty()),
                    quantity_milli: quantity_milli.unwrap_or(1000),
                    unit_cents,
                    amount_cents,
                    discount: false,
                });
                continue;
            }
            out.unmatched.push(line.to_string());
        }
        if let Some(q) = pending {
            out.unmatched
                .push(format!("quantity line without an item: {}", q.line));
        }
        out
    }

    /// Parses the amount in group `name`; a failure becomes a diagnostic in `unmatched`.
    fn amount(
        &self,
        caps: &Captures<'_>,
        name: &str,
        line: &str,
        unmatched: &mut Vec<String>,
    ) -> Option<i64> {
        let text = group(caps, name);
        match parse_amount(text, self.decimal) {
            Ok(cents) => Some(cents),
            Err(e) => {
                unmatched.push(format!("bad {name} amount ({e}): {line}"));
                None
            }
        }
    }
}

/// A named group's text; groups that did not take part in the match are empty.
fn group<'t>(caps: &Captures<'t>, name: &str) -> &'t str {
    caps.name(name).map_or("", |m| m.as_str())
}

/// Parses a printed time with a strftime format; a date-only format means midnight.
fn parse_timestamp(text: &str, format: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(text.trim(), format)
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(text.trim(), format)
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
}

/// Parses a printed quantity into thousandths: `2` → 2000, `0,512` → 512 (with `,`
/// as decimal separator), `1.5` → 1500 (with `.`). At most three decimals; no signs.
pub fn parse_quantity(text: &str, decimal: char) -> Option<i64> {
    let text = text.trim();
    let (int_part, frac_part) = match text.split_once(decimal) {
        Some((i, f)) => (i, f),
        None => (text, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int_part.is_empty() && frac_part.is_empty()
        || frac_part.len() > 3
        || !digits(int_part)
        || !digits(frac_part)
        || int_part.len() > 12
    {
        return None;
    }
    let units: i64 = if int_part.is_empty() {
        0
    } else {
        int_part.parse().ok()?
    };
    let frac: i64 = format!("{frac_part:0<3}").parse().ok()?;
    units.checked_mul(1000)?.checked_add(frac)
}
