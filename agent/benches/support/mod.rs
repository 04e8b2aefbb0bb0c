//! The generated store both coupon benches use: a seeded catalog, 50 campaigns, 100,000
//! profile digests and ESC/POS supermarket receipts (see `generate`), the campaign state
//! the hub would push for them, and the percentile report.
//!
//! Each bench includes this with `mod support;` and uses a part of it.
#![allow(dead_code)]

pub mod generate;

use std::time::Duration;

use till360_agent::hub_link::CampaignState;
use till360_shared::campaign::{CampaignSet, CatalogItem};
use till360_shared::coupon::{derive_digest_key, derive_till_key, Keyring};

pub use generate::{generate_campaigns, generate_digests, generate_receipt, GeneratedReceipt, Rng};

pub const CAMPAIGNS: usize = 50;
pub const DIGESTS: usize = 100_000;
pub const STORE: &str = "S001";
pub const TILL: &str = "T01";
pub const TILL_NUMBER: u16 = 1;
/// Characters per line of the supermarket's 80 mm printer.
pub const COLUMNS: usize = 48;
/// Reads from the POS port return 1..=MAX_CHUNK bytes.
pub const MAX_CHUNK: usize = 128;
/// Issue 4's goal for cut byte in → coupon bytes out.
pub const GOAL: Duration = Duration::from_millis(5);
/// 2026-11-23 08:00 local (CET), the first receipt; one receipt a minute after it.
pub const START_MS: i64 = 1_795_417_200_000;
pub const OFFSET_MIN: i16 = 60;
pub const MINUTE_MS: i64 = 60_000;
pub const DAY_MS: i64 = 86_400_000;
/// The secret the hub derives the till's coupon key and the digest key from.
pub const MASTER: &[u8] = b"bench master secret, 32 bytes or more";

pub const ESC: u8 = 0x1B;
pub const GS: u8 = 0x1D;
pub const LF: u8 = 0x0A;
/// Full cut with feed (`GS V 66 0`): every generated receipt ends with it.
pub const CUT: [u8; 4] = [GS, b'V', 66, 0];

/// What the hub pushes for the store: the campaigns, this till's keyring (campaign
/// numbers 1.., keys derived from [`MASTER`]) and the catalog with categories and
/// sensitive flags.
pub fn campaign_state(campaigns: &CampaignSet) -> CampaignState {
    let till_key = derive_till_key(MASTER, STORE, TILL);
    let keyring = Keyring {
        till_number: TILL_NUMBER,
        till_key: *till_key.as_bytes(),
        store_tills: vec![(TILL_NUMBER, *till_key.as_bytes())],
        campaign_numbers: campaigns
            .campaigns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.clone(), i as u16 + 1))
            .collect(),
        digest_key: derive_digest_key(MASTER, "S001"),
    };
    let catalog = generate::CATALOG
        .iter()
        .map(|p| CatalogItem {
            sku: String::new(),
            description: p.description.to_string(),
            category: p.category.to_string(),
            sensitive: p.sensitive,
        })
        .collect();
    CampaignState {
        version: campaigns.version,
        set: campaigns.clone(),
        keyring,
        catalog,
    }
}

/// Nearest-rank percentile, in microseconds.
pub fn percentile_us(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_nanos() as f64 / 1000.0
}

pub fn report(label: &str, times: &[Duration]) {
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    println!("{label} p50: {:.1} us", percentile_us(&sorted, 0.50));
    println!("{label} p99: {:.1} us", percentile_us(&sorted, 0.99));
    println!("{label} max: {:.1} us", percentile_us(&sorted, 1.0));
}
