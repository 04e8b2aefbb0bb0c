//! The scheduled recompute: traits and segment membership as of now, written in one
//! transaction.

use rusqlite::{params, Connection, TransactionBehavior};
use till360_shared::Timestamp;

use super::history::load;
use super::population::{compute, Models};
use super::subject::subject;
use super::TraitsError;
use crate::config::HubConfig;
use crate::segments::compile;

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
/// wins).
pub fn recompute(
    conn: &mut Connection,
    config: &HubConfig,
    now: Timestamp,
) -> Result<RecomputeSummary, TraitsError> {
    let segments = compile(&config.segments).map_err(|source| TraitsError::Segments {
        file: config.origin.clone(),
        source,
    })?;
    let as_of = now.local().date_naive();
    let data = {
        let read = conn.transaction()?;
        let data = load(&read, as_of)?;
        read.commit()?;
        data
    };
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
    });

    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute("DELETE FROM profile_traits", [])?;
    tx.execute("DELETE FROM segment_members", [])?;
    let mut counts = vec![0usize; segments.len()];
    let mut profiles = 0;
    {
        let mut insert_traits = tx.prepare(
            "INSERT INTO profile_traits (profile_id, as_of_ms, traits)
             SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM profiles WHERE profile_id = ?1)",
        )?;
        let mut insert_member = tx.prepare(
            "INSERT INTO segment_members (segment_id, profile_id)
             SELECT ?1, ?2 WHERE EXISTS (SELECT 1 FROM profiles WHERE profile_id = ?2)",
        )?;
        for (i, history) in data.histories.iter().enumerate() {
            let traits = population.customers[i].as_ref();
            let mut json = match traits {
                Some(t) => serde_json::to_value(t).map_err(TraitsError::Json)?,
                None => serde_json::json!({ "purchases": 0 }),
            };
            if let Some(object) = json.as_object_mut() {
                object.insert("model".into(), model.clone());
            }
            let written = insert_traits.execute(params![
                history.profile_id,
                now.unix_ms,
                json.to_string()
            ])?;
            if written == 0 {
                continue;
            }
            profiles += 1;
            let s = subject(traits, &data.consents[i], None);
            for (k, segment) in segments.iter().enumerate() {
                if segment.matches(&s) {
                    counts[k] += insert_member.execute(params![segment.id, history.profile_id])?;
                }
            }
        }
    }
    crate::store::freshness::record_run(&tx, now)?;
    tx.commit()?;
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
