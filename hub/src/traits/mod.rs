//! Customer traits: RFM, buy-till-you-die (BG/NBD), Gamma–Gamma spend, CLV, churn
//! risk and behaviour (favourite categories, sale share, channel mix).
//!
//! The models are pure (`population::compute` takes histories and `as_of`); the edges
//! are `history::load` (SQLite → histories), `export_csv` (the CSV of
//! `till360-hub traits export`) and `recompute` (the hub's scheduled refresh of
//! `profile_traits` and `segment_members`). Time is measured in days, money in cents.

pub mod behaviour;
pub mod bgnbd;
mod export;
pub mod gamma_gamma;
pub mod history;
pub mod optimize;
pub mod population;
mod recompute;
pub mod rfm;
mod schedule;
pub mod simulate;
pub mod special;
mod subject;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

use thiserror::Error;

pub use export::{export_csv_with_segments, ExportSummary, CSV_HEADER};
pub use history::{Channel, CustomerHistory, Purchase};
pub use population::{compute, CustomerTraits, Models, Population, MODEL_VERSION};
pub use recompute::{recompute, RecomputeSummary};
pub use schedule::{RecomputeHandle, TraitsSchedule};

/// Why traits could not be computed or written. (A population too small or too
/// uniform for a model is not an error: its outputs are left out with a note.)
#[derive(Debug, Error)]
pub enum TraitsError {
    #[error("traits database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("traits output error: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot encode traits: {0}")]
    Json(serde_json::Error),
    #[error("{file}: {source}")]
    Segments {
        file: PathBuf,
        source: crate::segments::SegmentError,
    },
}

/// Writes the traits CSV as of the end of `as_of`, fitting the models on that data
/// only. Without segment definitions at hand, the `segments` column holds the
/// membership stored by the last `recompute`; [`export_csv_with_segments`] evaluates
/// the config's segments as of `as_of` instead (what a back-test wants).
pub fn export_csv(
    conn: &rusqlite::Connection,
    config: &crate::config::TraitsConfig,
    as_of: chrono::NaiveDate,
    horizon_days: u32,
    out: &mut dyn std::io::Write,
) -> Result<ExportSummary, TraitsError> {
    export::write_csv(
        conn,
        config,
        export::Membership::Stored,
        as_of,
        horizon_days,
        out,
    )
}
