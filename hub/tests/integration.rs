//! All of this crate's integration tests in one binary: one link instead of one per file keeps a
//! test build small on disk and quick to link. `autotests = false` in Cargo.toml; every file
//! under tests/ is a module here (`tests/architecture.rs` checks none is left out).

#[macro_use]
mod common;

mod backup_restore;
mod campaigns_api;
mod config_check;
mod console_http;
mod coupon_ledger;
mod downlink_campaigns;
mod downlink_digest_compaction;
mod downlink_digests;
mod downlink_digests_traits;
mod downlink_erasures;
mod downlink_redeemed;
mod http_api;
mod http_guard;
mod hub_start;
mod identity_merge_order;
mod import_cli;
mod import_files;
mod import_strict_csv;
mod job_leases;
mod journal_chain;
mod metrics_endpoint;
mod migrate_cli;
mod one_bad_till;
mod pki;
mod privacy_api;
mod quic_ingest;
mod revocation;
mod suspicious_cards;
mod till_health;
mod till_probing;
mod traits_backtest;
mod traits_export;
mod traits_running_hub;
