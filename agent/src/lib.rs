//! Till360 agent: sits between a till's POS, its receipt printer and its barcode
//! scanner; journals what it sees and syncs it to the hub.
//!
//! Pure cores (no IO, `now` passed in): `escpos`, `scanner`, `layout`, `checkout`,
//! `coupons`, `till_core`.
//! IO edges: `ports`, `proxy`, `journal`, `uplink`, `runtime`, `doctor`, `cli`.

pub mod checkout;
pub mod cli;
pub mod config;
pub mod config_check;
pub mod coupons;
pub mod doctor;
pub mod escpos;
pub mod file_modes;
pub mod hub_link;
pub mod instance;
pub mod journal;
pub mod layout;
pub mod metrics;
pub mod ports;
pub mod proxy;
pub mod runtime;
pub mod scanner;
pub mod service_manager;
pub mod till_core;
pub mod uplink;
