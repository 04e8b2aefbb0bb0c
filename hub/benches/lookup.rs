//! Profile lookup latency by card with many profiles: `Store::profile_by_card` (the
//! full 360° view: identifiers, personal data, consents, receipts with product
//! categories, orders, segments, traits) next to a baseline from the same run: the raw
//! indexed `SELECT profile_id FROM identifiers` of the same cards.
//!
//! `cargo bench -p till360-hub --bench lookup`; `TILL360_BENCH_PROFILES=N` (default 1M),
//! `TILL360_BENCH_LOOKUPS=N` (default 20 000).

use std::time::{Duration, Instant};

use rusqlite::{params, Connection};
use till360_hub::config::DatabaseUrl;
use till360_hub::store::{Database, DatabaseOptions, SqlStore, Store};
use till360_hub::synthetic::Generator;
use till360_shared::card::with_check_digit;
use till360_shared::{codec, AgentId, CardNumber, EventKind};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn card(i: usize) -> String {
    with_check_digit(&format!("2403{i:08}")).expect("card")
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

/// The hub's database on the SQLite file `db`, schema applied, as the hub opens it.
fn open(db: &std::path::Path) -> Database {
    Database::open(
        &DatabaseUrl::Sqlite(db.to_path_buf()),
        &DatabaseOptions::default(),
    )
    .expect("open")
}

/// Raw inserts (the lookup is measured, not the fill): the store's schema, ids as the
/// identity graph would give them.
fn fill(db: &std::path::Path, profiles: usize) {
    drop(open(db));
    let mut conn = Connection::open(db).expect("open");
    conn.execute_batch("PRAGMA synchronous = OFF;")
        .expect("pragma");
    let mut gen = Generator::new(11, 0, 0);
    let agent = AgentId::new("S001", "T01");
    let tx = conn.transaction().expect("tx");
    {
        let mut profile = tx
            .prepare(
                "INSERT INTO profiles (profile_id, created_at_ms, created_offset_min, customer_no,
                     first_name, last_name, birth_date) VALUES (?1, 0, 0, ?2, ?3, ?4, '1980-01-01')",
            )
            .expect("prepare");
        let mut ident = tx
            .prepare(
                "INSERT INTO identifiers (kind, value, profile_id, source, added_at_ms)
                 VALUES (?1, ?2, ?3, 'crm', 0)",
            )
            .expect("prepare");
        let mut consent = tx
            .prepare(
                "INSERT INTO consents (profile_id, purpose, granted, source, at_ms)
                 VALUES (?1, ?2, 1, 'crm', 0)",
            )
            .expect("prepare");
        let mut receipt = tx
            .prepare(
                "INSERT INTO transactions (store, till, seq, receipt_no, at_ms, offset_min,
                     card, profile_id, total_cents, currency, lines)
                 VALUES ('S001', 'T01', ?1, ?2, ?3, 60, ?4, ?5, ?6, 'EUR', ?7)",
            )
            .expect("prepare");
        let mut seq = 0u64;
        for i in 0..profiles {
            let code = card(i);
            let id = format!("p-{i:016x}");
            profile
                .execute(params![
                    id,
                    format!("C{i:08}"),
                    format!("First{i}"),
                    format!("Last{i}")
                ])
                .expect("profile");
            ident.execute(params!["card", code, id]).expect("card");
            ident
                .execute(params!["customer_no", format!("C{i:08}"), id])
                .expect("customer_no");
            ident
                .execute(params!["email", format!("c{i}@example.nl"), id])
                .expect("email");
            consent.execute(params![id, "email"]).expect("consent");
            consent.execute(params![id, "post"]).expect("consent");
            if i % 4 == 0 {
                for _ in 0..3 {
                    seq += 1;
                    let event = gen.receipt(&agent, seq);
                    let EventKind::Receipt(r) = event.kind else {
                        continue;
                    };
                    receipt
                        .execute(params![
                            seq as i64,
                            r.receipt_no,
                            r.completed_at.unix_ms,
                            code,
                            id,
                            r.total_cents,
                            codec::to_bytes(&r.lines).expect("encode")
                        ])
                        .expect("receipt");
                }
            }
        }
    }
    tx.commit().expect("commit");
}
