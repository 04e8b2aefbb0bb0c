//! Till360 hub: PKI, the QUIC listener with exactly-once ingest, the profile store and
//! the HTTP API and the console. `cli::main_with_args` is the binary; `server::start` runs a hub
//! in-process (the demo and end-to-end tests use it).

pub mod api;
pub mod backup;
pub mod campaigns;
pub mod cli;
pub mod config;
pub mod config_check;
pub mod console;
pub mod coupons;
pub mod digests;
pub mod hub_secrets;
pub mod identity;
pub mod import;
pub mod instance;
pub mod jobs;
pub mod listener;
pub mod metrics;
pub mod migrate_command;
pub mod pki;
pub mod profile;
pub mod progress_bar;
pub mod segments;
pub mod server;
pub mod service_manager;
pub mod spreadsheet;
pub mod store;
pub mod synthetic;
pub mod traits;
