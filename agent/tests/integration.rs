//! All of this crate's integration tests in one binary: one link instead of one per file keeps a
//! test build small on disk and quick to link. `autotests = false` in Cargo.toml; every file
//! under tests/ is a module here (`tests/architecture.rs` checks none is left out).

mod common;

mod cli;
mod config;
mod config_check;
mod corpus;
mod coupon_block;
mod coupons_pty;
mod cut_gate;
mod devices_pty;
mod doctor;
mod fuzz_escpos_layout;
mod journal;
mod journal_campaigns;
mod journal_digests;
mod journal_erasures;
mod journal_integrity;
mod journal_redeemed;
mod metrics_endpoint;
mod proxy_pty;
mod runtime;
mod scanner_pty;
mod startup_guards;
mod tls_config;
mod uplink;
mod uplink_conversation;
