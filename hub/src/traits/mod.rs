//! Customer traits: RFM, buy-till-you-die (BG/NBD), Gamma–Gamma spend, CLV, churn
//! risk and behaviour (favourite categories, sale share, channel mix).
//!
//! The models are pure (`population::compute` takes histories and `as_of`;
//! `history::HistoryBuilder` turns stored rows into histories). The edges talk to the
//! store through its functions (`store::traits`): `export_csv` (the CSV of
//! `till360-hub traits export`), `recompute` (the one job that refreshes
//! `profile_traits` and `segment_members`) and `schedule` (when the running hub runs
//! it). Time is measured in days, money in cents.

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

pub use export::{export_csv, export_csv_with_segments, ExportSummary, CSV_HEADER};
pub use history::{Channel, CustomerHistory, Purchase};
pub use population::{compute, CustomerTraits, Models, Population, MODEL_VERSION};
pub use recompute::{recompute, RecomputeSummary};
pub use schedule::{RecomputeHandle, TraitsSchedule};

/// Why traits could not be computed or written. (A population too small or too
/// uniform for a model is not an error: its outputs are left out with a note.)
#[derive(Debug, Error)]
pub enum TraitsError {
    /// The store's error (kept boxed: the traits models do not know the store).
    #[error("traits database error: {0}")]
    Db(Box<dyn std::error::Error + Send + Sync>),
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
