//! The hub's jobs: the edges that run the pure models over the store. They import the
//! models and the store; neither imports them (no circle: see the architecture test).
//!
//! - `traits_recompute`: the one job that refreshes `profile_traits` and
//!   `segment_members`; `traits_schedule`: when the running hub runs it (start, timer,
//!   after an import, on demand), under the `traits` lease when several hubs share one
//!   database; `traits_export`: the CSV of `till360-hub traits export`;
//! - `digest_refresh`: the task that refreshes (then compacts) the digest feed at start,
//!   on a timer (under the `digests` lease), on demand and when a traits run finished.

pub mod digest_refresh;
mod traits_backtest;
mod traits_export;
mod traits_recompute;
mod traits_schedule;

pub use digest_refresh::DigestRefresh;
pub use traits_backtest::backtest as traits_backtest;
pub use traits_export::{export_csv, export_csv_with_segments, ExportSummary, CSV_HEADER};
pub use traits_recompute::{recompute, RecomputeSummary};
pub use traits_schedule::{RecomputeHandle, TraitsSchedule};
