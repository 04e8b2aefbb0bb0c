//! `till360-hub traits backtest`: every candidate model fitted on the purchases up to a
//! split date, its predictions for the next N days compared per customer with what the
//! customers then did. Also says which model the hub itself would have chosen at the
//! split (by its in-window selection, which sees nothing after the split). Pure: the
//! report is computed from histories and written to any `Write`.

use std::io::{self, Write};

use chrono::NaiveDate;
use serde::Serialize;

use super::history::{date_of_day, day_number, CustomerHistory};
use super::panel::Panel;
use super::selection::{learn_window, select, Candidate, Score, Selection, Trainer, PARETO_GGG};

/// The back-test's findings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Backtest {
    /// Fitted on purchases up to the end of `split`; scored on the `horizon_days` after.
    pub split: NaiveDate,
    pub horizon_days: u32,
    pub holdout_end: NaiveDate,
    /// The newest purchase the data holds; before `holdout_end` the actual counts are
    /// incomplete (see `warnings`).
    pub data_ends: Option<NaiveDate>,
    /// Customers with a purchase on or before the split (those that are scored).
    pub customers: usize,
    /// One row per candidate that could be fitted, the baseline (BG/NBD) first.
    pub models: Vec<Score>,
    /// The candidate the hub would have chosen at the split, if it could choose.
    pub chosen: Option<String>,
    /// How it chose (its own back-test inside the calibration window).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selection: Option<Selection>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Back-tests every candidate at `split` over `horizon_days`.
pub fn backtest(histories: &[CustomerHistory], split: NaiveDate, horizon_days: u32) -> Backtest {
    let panel = Panel::new(histories);
    let split_day = day_number(split);
    let holdout_end_day = split_day + i64::from(horizon_days);
    let mut trainer = Trainer::new(&panel);
    let (customers, _) = trainer.population(split_day);
    let mut warnings = Vec::new();
    let data_ends = panel.last_day();
    match data_ends {
        None => warnings.push("the hub holds no purchases".to_string()),
        Some(last) if last < holdout_end_day => warnings.push(format!(
            "the newest purchase is of {}, before the end of the hold-out ({}): the actual \
             counts are incomplete",
            date_of_day(last),
            date_of_day(holdout_end_day)
        )),
        Some(_) => {}
    }
    if customers == 0 {
        warnings.push(format!("no customer has a purchase on or before {split}"));
    }
    let window = learn_window(&panel, split_day, horizon_days);
    let mut models = Vec::new();
    for candidate in Candidate::all() {
        match trainer.train(candidate, split_day, window) {
            Ok(predictor) => models.push(trainer.score(&predictor, split_day, horizon_days)),
            Err(why) => warnings.push(format!("{}: {why}", candidate.name())),
        }
    }
    match trainer.score_pareto_ggg(split_day, horizon_days) {
        Ok(score) => models.push(score),
        Err(why) => warnings.push(format!("{PARETO_GGG}: {why}")),
    }
    let selection = match select(&mut trainer, split_day, horizon_days) {
        Ok(selection) => Some(selection),
        Err(why) => {
            warnings.push(why);
            None
        }
    };
    let chosen = selection.as_ref().map(|s| s.chosen.clone()).or_else(|| {
        models
            .iter()
            .any(|m| m.model == Candidate::BASELINE.name())
            .then(|| Candidate::BASELINE.name())
    });
    Backtest {
        split,
        horizon_days,
        holdout_end: date_of_day(holdout_end_day),
        data_ends: data_ends.map(date_of_day),
        customers,
        models,
        chosen,
        selection,
        warnings,
    }
}

/// The report as a table, one line per model, the baseline first and the chosen one
/// marked.
pub fn write_table<W: Write>(report: &Backtest, mut out: W) -> io::Result<()> {
    writeln!(
        out,
        "back-test: fitted on purchases up to {}, scored on {} days to {} ({} customers)",
        report.split, report.horizon_days, report.holdout_end, report.customers
    )?;
    writeln!(
        out,
        "{:<24} {:>9} {:>9} {:>12} {:>9} {:>8} {:>9}",
        "model", "MAE", "RMSE", "predicted", "actual", "total", "top 10%"
    )?;
    for m in &report.models {
        let chosen = report.chosen.as_deref() == Some(m.model.as_str());
        write_score(&mut out, "", m, chosen)?;
    }
    match (&report.chosen, &report.selection) {
        (Some(chosen), Some(s)) => writeln!(
            out,
            "* chosen by the hub at the split: {chosen} (fitted to {}, scored on the {} days \
             after: MAE {:.1} % below BG/NBD's)",
            s.calibration_end, s.holdout_days, s.mae_gain_percent
        )?,
        (Some(chosen), None) => writeln!(out, "* chosen by the hub at the split: {chosen}")?,
        _ => {}
    }
    if let Some(s) = &report.selection {
        writeln!(
            out,
            "the hub's own back-test before the split (fitted to {}, scored on the {} days after):",
            s.calibration_end, s.holdout_days
        )?;
        for m in &s.scores {
            write_score(&mut out, "  ", m, m.model == s.chosen)?;
        }
        for why in &s.skipped {
            writeln!(out, "  not scored: {why}")?;
        }
    }
    // Each fitted model once (a corrected candidate shares its model's fit).
    let mut fitted: Vec<&Score> = Vec::new();
    for m in report.models.iter().filter(|m| !m.parameters.is_empty()) {
        if !fitted.iter().any(|f| f.parameters == m.parameters) {
            fitted.push(m);
        }
    }
    for m in fitted {
        writeln!(out, "fitted {}: {}", m.model, m.parameters)?;
    }
    for w in &report.warnings {
        writeln!(out, "warning: {w}")?;
    }
    Ok(())
}

/// One model's line of the table, `*` marking the chosen one.
fn write_score<W: Write>(out: &mut W, indent: &str, m: &Score, chosen: bool) -> io::Result<()> {
    let mark = if chosen { " *" } else { "" };
    writeln!(
        out,
        "{indent}{:<w$} {:>9.4} {:>9.4} {:>12.1} {:>9} {:>+7.1}% {:>8.1}%{mark}",
        m.model,
        m.mae,
        m.rmse,
        m.predicted_total,
        m.actual_total,
        m.total_error_percent,
        m.top_decile_precision * 100.0,
        w = 24 - indent.len()
    )
}
