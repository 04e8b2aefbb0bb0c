//! The traits CSV (`till360-hub traits export`): point in time, back-testable.

use std::io::Write;

use chrono::NaiveDate;

use crate::config::TraitsConfig;
use crate::segments::Segment;
use crate::spreadsheet::text_cell;
use crate::store::{self, sql::Sql};
use crate::traits::history::{day_number, MS_PER_DAY};
use crate::traits::population::{compute, round_cents, Models};
use crate::traits::subject;
use crate::traits::TraitsError;

/// The header, exactly (scripts depend on it).
pub const CSV_HEADER: &str = "profile_id,customer_no,cards,frequency,recency_days,t_days,monetary_cents,rfm,p_alive,expected_purchases,clv_cents,churn_risk,segments,provisional,p_alive_low,p_alive_high,expected_purchases_low,expected_purchases_high,clv_cents_low,clv_cents_high";

/// What an export wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportSummary {
    /// Data rows (customers with a purchase on or before `as_of`).
    pub customers: usize,
    /// The models fitted for it, with notes on any left out.
    pub models: Models,
    /// Receipts/orders whose lines could not be read (counted without categories).
    pub unreadable_lines: usize,
}

/// Writes the traits CSV as of the end of `as_of`, fitting the models on that data
/// only. Without segment definitions at hand, the `segments` column holds the
/// membership stored by the last `recompute`; [`export_csv_with_segments`] evaluates
/// the config's segments as of `as_of` instead (what a back-test wants).
pub fn export_csv(
    db: &dyn Sql,
    config: &TraitsConfig,
    as_of: NaiveDate,
    horizon_days: u32,
    out: &mut dyn Write,
) -> Result<ExportSummary, TraitsError> {
    write_csv(db, config, Membership::Stored, as_of, horizon_days, out)
}

/// Writes one row per customer with a purchase on or before the end of `as_of`
/// (local till date), fitting the models on exactly that data; segment membership is
/// evaluated as of that date too (consents given later do not count). Model columns
/// are empty when the data cannot support a fit (`ExportSummary::models.notes` says
/// why); a population without purchases gives just the header.
pub fn export_csv_with_segments(
    db: &dyn Sql,
    config: &TraitsConfig,
    segments: &[Segment],
    as_of: NaiveDate,
    horizon_days: u32,
    out: &mut dyn Write,
) -> Result<ExportSummary, TraitsError> {
    write_csv(
        db,
        config,
        Membership::AsOf(segments),
        as_of,
        horizon_days,
        out,
    )
}

/// Where the `segments` column comes from.
enum Membership<'a> {
    /// Evaluate these definitions as of the export date.
    AsOf(&'a [Segment]),
    /// The `segment_members` rows of the last recompute.
    Stored,
}

fn write_csv(
    db: &dyn Sql,
    config: &TraitsConfig,
    membership: Membership<'_>,
    as_of: NaiveDate,
    horizon_days: u32,
    out: &mut dyn Write,
) -> Result<ExportSummary, TraitsError> {
    // One read transaction: every table read from the same snapshot.
    let (data, stored) = store::traits::histories_and_membership(
        db,
        as_of,
        matches!(membership, Membership::Stored),
    )?;
    let population = compute(&data.histories, as_of, horizon_days, config.margin_percent);
    let consents_until = (day_number(as_of) + 1) * MS_PER_DAY;

    let mut out = std::io::BufWriter::new(out);
    writeln!(out, "{CSV_HEADER}")?;
    let mut rows = 0;
    for (i, history) in data.histories.iter().enumerate() {
        let Some(t) = &population.customers[i] else {
            continue;
        };
        let member_of: Vec<&str> = match (&membership, &stored) {
            (Membership::AsOf(segments), _) => {
                let s = subject(Some(t), &data.consents[i], Some(consents_until));
                segments
                    .iter()
                    .filter(|seg| seg.matches(&s))
                    .map(|seg| seg.id.as_str())
                    .collect()
            }
            (Membership::Stored, Some(stored)) => stored
                .get(&history.profile_id)
                .map(|ids| ids.iter().map(String::as_str).collect())
                .unwrap_or_default(),
            (Membership::Stored, None) => Vec::new(),
        };
        let cells = [
            text_cell(&history.profile_id),
            text_cell(history.customer_no.as_deref().unwrap_or("")),
            text_cell(&history.cards.join(";")),
            t.frequency.to_string(),
            t.recency_days.to_string(),
            t.t_days.to_string(),
            round_cents(t.monetary_cents).to_string(),
            text_cell(&t.rfm),
            decimal(t.p_alive),
            decimal(t.expected_purchases),
            cents(t.clv_cents),
            decimal(t.churn_risk),
            text_cell(&member_of.join(";")),
            // 1: p_alive, expected purchases and CLV come from the population defaults
            // (too little data to fit; the summary's notes say why).
            u8::from(t.provisional).to_string(),
            // The central 80 % under the model's uncertainty (notes: how it was found).
            decimal(t.p_alive_interval.map(|v| v[0])),
            decimal(t.p_alive_interval.map(|v| v[1])),
            decimal(t.expected_purchases_interval.map(|v| v[0])),
            decimal(t.expected_purchases_interval.map(|v| v[1])),
            cents(t.clv_interval_cents.map(|v| v[0])),
            cents(t.clv_interval_cents.map(|v| v[1])),
        ];
        writeln!(out, "{}", cells.join(","))?;
        rows += 1;
    }
    out.flush()?;
    Ok(ExportSummary {
        customers: rows,
        models: population.models,
        unreadable_lines: data.unreadable_lines,
    })
}

/// Whole cents; empty for a missing value.
fn cents(value: Option<f64>) -> String {
    value
        .filter(|v| v.is_finite())
        .map(round_cents)
        .map_or_else(String::new, |c| c.to_string())
}

/// Four decimals; empty for a missing or non-finite value.
fn decimal(value: Option<f64>) -> String {
    value
        .filter(|v| v.is_finite())
        .map(|v| format!("{v:.4}"))
        .unwrap_or_default()
}
