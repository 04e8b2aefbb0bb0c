//! All of this crate's integration tests in one binary: one link instead of one per file keeps a
//! test build small on disk and quick to link. `autotests = false` in Cargo.toml; every file
//! under tests/ is a module here (`tests/architecture.rs` checks none is left out).

mod harness;

mod architecture;
mod browser_smoke;
mod campaigns_downlink;
mod cli_help;
mod console_browser;
mod coupons;
mod end_to_end;
mod erasure;
mod log_privacy;
mod metrics_files;
mod metrics_scrape;
mod migrate_demo;
mod packages;
mod service;
mod simulation;
mod sync_faults;
mod tamper;
mod two_hubs;
mod wire;
