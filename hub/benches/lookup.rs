//! Profile lookup latency by card with many profiles: `Store::profile_by_card` (the
//! full 360° view: identifiers, personal data, consents, receipts with product
//! categories, orders, segments, traits) next to a baseline from the same run: the raw
//! indexed `SELECT profile_id FROM identifiers` of the same cards.
//!
//! `cargo bench -p till360-hub --bench lookup`; `TILL360_BENCH_PROFILES=N` (default 1M),
//! `TILL360_BENCH_LOOKUPS=N` (default 20 000).

use std::time::{Duration, Instant};

use rusqlite::Connection;
use till360_hub::store::{SqlStore, Store};
use till360_shared::CardNumber;

#[path = "support/profiles.rs"]
mod profiles;

use profiles::{card, fill, open};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let profiles = env("TILL360_BENCH_PROFILES", 1_000_000).max(1);
    let lookups = env("TILL360_BENCH_LOOKUPS", 20_000).max(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("hub.db");
    let started = Instant::now();
    fill(&db, profiles);
    println!(
        "lookup: {profiles} profiles (card, customer_no, e-mail, personal data, 2 consents; \
         every 4th with 3 receipts), filled in {:.1} s; {lookups} lookups of random cards",
        started.elapsed().as_secs_f64()
    );
    let database = open(&db);
    let store = SqlStore::open(&database).expect("open");
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let cards: Vec<CardNumber> = (0..lookups)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            CardNumber::parse(&card((state % profiles as u64) as usize)).expect("card")
        })
        .collect();

    let mut raw = Vec::with_capacity(lookups);
    let mut full = Vec::with_capacity(lookups);
    let conn = Connection::open(&db).expect("open");
    let mut stmt = conn
        .prepare("SELECT profile_id FROM identifiers WHERE kind = 'card' AND value = ?1")
        .expect("prepare");
    // Alternate the two paths so both see the same cache state.
    for c in &cards {
        let t = Instant::now();
        let id: String = stmt
            .query_row([c.as_str()], |r| r.get(0))
            .expect("raw lookup");
        raw.push(t.elapsed());
        let t = Instant::now();
        let view = store.profile_by_card(c).expect("lookup").expect("profile");
        full.push(t.elapsed());
        assert_eq!(view.profile_id, id);
    }
    let (p50, p99) = percentiles(&mut full);
    let (b50, b99) = percentiles(&mut raw);
    println!(
        "hub profile_by_card (full view):        p50 {:>7.1} µs  p99 {:>7.1} µs",
        micros(p50),
        micros(p99)
    );
    println!(
        "baseline raw indexed SELECT of the card: p50 {:>7.1} µs  p99 {:>7.1} µs",
        micros(b50),
        micros(b99)
    );
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn percentiles(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.50), at(0.99))
}
