//! Customer traits: RFM, buy-till-you-die purchase models (BG/NBD, the baseline;
//! MBG/NBD; Pareto/NBD; each with or without a learned correction, chosen per data set
//! by back-test), Gamma–Gamma spend, CLV with intervals, churn risk and behaviour
//! (favourite categories, sale share, channel mix).
//!
//! The models are pure (`population::compute` takes histories and `as_of`;
//! `history::HistoryBuilder` turns stored rows into histories) and import nothing from
//! the store. The jobs that read and write the store's traits live in `crate::jobs`
//! (export, recompute, backtest, the schedule). Time is measured in days, money in cents.
#![deny(clippy::disallowed_methods)]

pub mod backtest;
pub mod behaviour;
pub mod bgnbd;
pub mod cnbd;
pub mod correction;
pub mod gamma_gamma;
pub mod history;
pub mod mbgnbd;
pub mod model;
pub mod optimize;
pub mod panel;
pub mod pareto_ggg;
pub mod pareto_nbd;
pub mod population;
pub mod rfm;
pub mod selection;
pub mod shoppers;
pub mod simulate;
pub mod special;
mod subject;
pub mod uncertainty;
pub use subject::subject;

#[cfg(test)]
mod cnbd_tests;
#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod pareto_ggg_tests;
#[cfg(test)]
mod selection_tests;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

use thiserror::Error;

pub use history::{Channel, CustomerHistory, Purchase};
pub use population::{compute, CustomerTraits, Models, Population, MODEL_VERSION};

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
