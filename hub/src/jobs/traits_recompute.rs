//! The scheduled recompute: traits and segment membership as of now, written in one
//! transaction.

use till360_shared::Timestamp;

use crate::config::HubConfig;
use crate::segments::compile;
use crate::store::{self, sql::Sql, StoreError};
use crate::traits::population::{compute, Models};
use crate::traits::subject;
use crate::traits::TraitsError;

/// What a recompute wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct RecomputeSummary {
    /// `profile_traits` rows written (every profile, with or without purchases).
    pub profiles: usize,
    /// Members per segment id, in config order.
    pub segments: Vec<(String, usize)>,
    pub models: Models,
    pub unreadable_lines: usize,
    /// When it was computed (`GET /api/v1/segments` `computed_at`).
    pub computed_at: Timestamp,
}

/// Fits the models on all data up to `now`'s (local) date, then replaces every row of
/// `profile_traits` and `segment_members` in ONE transaction. Histories are read in
/// an earlier read transaction so ingest is not blocked while the models fit; rows are
/// only written for profiles that still exist then (an erase or merge in between
/// wins). The one job that writes traits: the scheduler runs it, so does
/// `till360-hub traits recompute`.
pub fn recompute(
    db: &dyn Sql,
    config: &HubConfig,
    now: Timestamp,
) -> Result<RecomputeSummary, TraitsError> {
    let started = std::time::Instant::now();
    let summary = fit_and_write(db, config, now);
    crate::metrics::record_traits_run(started.elapsed());
    summary
}

/// The recompute itself; [`recompute`] times it.
fn fit_and_write(
    db: &dyn Sql,
    config: &HubConfig,
    now: Timestamp,
) -> Result<RecomputeSummary, TraitsError> {
    let segments = compile(&config.segments).map_err(|source| TraitsError::Segments {
        file: config.origin.clone(),
        source,
    })?;
    let as_of = now.local().date_naive();
    let data = store::traits::histories(db, as_of)?;
    let population = compute(
        &data.histories,
        as_of,
        config.traits.horizon_days,
        config.traits.margin_percent,
    );
    let model = serde_json::json!({
        "version": population.models.version,
        "as_of": as_of.to_string(),
        "horizon_days": config.traits.horizon_days,
        "margin_percent": config.traits.margin_percent,
        // Why p_alive, expected purchases and CLV are the population defaults (null: fitted).
        "provisional": population.models.provisional,
        // The purchase model behind p_alive and expected purchases, and how it won.
        "purchase_model": population.models.purchase_model_name(),
        "selection": population.models.selection.as_ref().map(|s| serde_json::json!({
            "chosen": s.chosen,
            "mae_gain_percent": s.mae_gain_percent,
            "holdout_days": s.holdout_days,
            "calibration_end": s.calibration_end.to_string(),
        })),
        "interval": population.models.interval,
    });

    // The traits as JSON, encoded before the write transaction's rows are written; an
    // encoding failure (none is expected) rolls the transaction back and is reported.
    let mut unencodable: Option<serde_json::Error> = None;
    let (profiles, counts) = store::traits::replace_all(db, now, |out| {
        let mut counts = vec![0usize; segments.len()];
        let mut profiles = 0;
        for (i, history) in data.histories.iter().enumerate() {
            let traits = population.customers[i].as_ref();
            let mut json = match traits.map(serde_json::to_value).transpose() {
                Ok(Some(json)) => json,
                Ok(None) => serde_json::json!({ "purchases": 0 }),
                Err(e) => {
                    let message = format!("traits of {}: {e}", history.profile_id);
                    unencodable = Some(e);
                    return Err(StoreError::CommitFailed(message));
                }
            };
            if let Some(object) = json.as_object_mut() {
                object.insert("model".into(), model.clone());
            }
            if !out.traits(&history.profile_id, &json.to_string())? {
                continue;
            }
            profiles += 1;
            let s = subject(traits, &data.consents[i], None);
            for (k, segment) in segments.iter().enumerate() {
                if segment.matches(&s) && out.member(&segment.id, &history.profile_id)? {
                    counts[k] += 1;
                }
            }
        }
        Ok((profiles, counts))
    })
    .map_err(|e| match unencodable.take() {
        Some(json) => TraitsError::Json(json),
        None => TraitsError::from(e),
    })?;
    Ok(RecomputeSummary {
        computed_at: now,
        profiles,
        segments: segments
            .iter()
            .zip(counts)
            .map(|(s, n)| (s.id.clone(), n))
            .collect(),
        models: population.models,
        unreadable_lines: data.unreadable_lines,
    })
}

impl From<StoreError> for TraitsError {
    fn from(err: StoreError) -> Self {
        TraitsError::Db(Box::new(err))
    }
}
