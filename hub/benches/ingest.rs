//! Ingest throughput: the hub's ingest path (plan_ingest + merge + commit through the
//! store writer, one batch at a time as agents send them) next to a baseline measured
//! in the same run: raw batched SQLite inserts of the same rows into the same schema
//! (prepared statements, one transaction per batch). Both open their file through
//! `store::Database`, so both run on the schema the hub migrates to.
//!
//! `cargo bench -p till360-hub --bench ingest`; `TILL360_BENCH_RECEIPTS=N` changes N.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection};
use till360_hub::config::{DatabaseUrl, FraudConfig};
use till360_hub::profile::{merge_ops, MergeOp};
use till360_hub::store::ingest::stored_payload;
use till360_hub::store::{spawn_writer, Database, DatabaseOptions, SqlStore};
use till360_hub::synthetic::Generator;
use till360_shared::{codec, AgentId, Event, EventKind, Timestamp};

// The agent's default `[hub] batch_max`.
const BATCH: usize = 500;
const CARDS: usize = 2_000;
const CARDED_PERCENT: u64 = 80;

fn main() {
    let receipts: usize = std::env::var("TILL360_BENCH_RECEIPTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let agents = [AgentId::new("S001", "T01"), AgentId::new("S002", "T01")];
    let mut gen = Generator::new(2026, CARDS, CARDED_PERCENT);
    let per_agent = receipts / agents.len();
    // Batches in the order the hub receives them: the two stores alternate.
    let streams: Vec<Vec<Vec<Event>>> = agents
        .iter()
        .map(|a| {
            let events: Vec<Event> = (1..=per_agent as u64)
                .map(|seq| gen.receipt(a, seq))
                .collect();
            events.chunks(BATCH).map(<[Event]>::to_vec).collect()
        })
        .collect();
    let mut batches = Vec::new();
    for i in 0..streams.iter().map(Vec::len).max().unwrap_or(0) {
        for (agent, stream) in agents.iter().zip(&streams) {
            if let Some(batch) = stream.get(i) {
                batches.push((agent.clone(), batch.clone()));
            }
        }
    }
    let total = per_agent * agents.len();
    let lines: usize = batches
        .iter()
        .flat_map(|(_, b)| b)
        .map(|e| match &e.kind {
            EventKind::Receipt(r) => r.lines.len(),
            _ => 0,
        })
        .sum();

    println!(
        "ingest: {total} receipts ({lines} lines), {} stores, batches of {BATCH}, {CARDS} cards, \
         {CARDED_PERCENT}% carded, on-disk SQLite WAL synchronous=FULL",
        agents.len()
    );
    // Disk flushes dominate and vary: alternate the two paths over several rounds on
    // fresh databases and keep each path's best round.
    let rounds: usize = std::env::var("TILL360_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut hub = Duration::MAX;
    let mut unchecked = Duration::MAX;
    let mut baseline = Duration::MAX;
    for round in 0..rounds {
        let hub_db = dir.path().join(format!("hub-{round}.db"));
        let unchecked_db = dir.path().join(format!("unchecked-{round}.db"));
        let base_db = dir.path().join(format!("baseline-{round}.db"));
        if round % 2 == 0 {
            hub = hub.min(hub_path(&hub_db, batches.clone(), true));
            unchecked = unchecked.min(hub_path(&unchecked_db, batches.clone(), false));
            baseline = baseline.min(baseline_path(&base_db, &batches));
        } else {
            baseline = baseline.min(baseline_path(&base_db, &batches));
            unchecked = unchecked.min(hub_path(&unchecked_db, batches.clone(), false));
            hub = hub.min(hub_path(&hub_db, batches.clone(), true));
        }
    }
    println!("best of {rounds} rounds each, alternating order");
    let rate = |d: Duration| total as f64 / d.as_secs_f64();
    println!(
        "hub ingest path (plan_ingest + merge + commit via writer): {:>9.0} receipts/s ({:.0} ms)",
        rate(hub),
        hub.as_secs_f64() * 1e3
    );
    println!(
        "hub ingest path with [fraud] enabled = false:              {:>9.0} receipts/s ({:.0} ms)",
        rate(unchecked),
        unchecked.as_secs_f64() * 1e3
    );
    println!(
        "baseline raw batched inserts (same rows, prepared, 1 tx/batch): {:>9.0} receipts/s ({:.0} ms)",
        rate(baseline),
        baseline.as_secs_f64() * 1e3
    );
    println!("ratio hub / baseline: {:.2}", rate(hub) / rate(baseline));
    let sizes: (f64, f64) = Connection::open(dir.path().join("hub-0.db"))
        .and_then(|c| {
            c.query_row(
                "SELECT avg(length(event)), avg(length(lines)) FROM transactions",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
        .expect("row sizes");
    println!(
        "bytes per receipt: transactions.event {:.0} (the event without its lines), transactions.lines {:.0}",
        sizes.0, sizes.1
    );
    for table in [
        "events",
        "transactions",
        "profiles",
        "identifiers",
        "agents",
    ] {
        let count = |db: &str| -> i64 {
            Connection::open(dir.path().join(db))
                .and_then(|c| {
                    c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                })
                .expect("count rows")
        };
        assert_eq!(
            count("hub-0.db"),
            count("baseline-0.db"),
            "{table}: both paths wrote the same rows"
        );
    }
}

fn now() -> Timestamp {
    Timestamp::from_utc(chrono::Utc::now(), 0)
}

/// The hub's ingest path; `fraud`: with the card-fraud checks at ingest (the default).
fn hub_path(db: &Path, batches: Vec<(AgentId, Vec<Event>)>, fraud: bool) -> Duration {
    let database = Database::open(
        &DatabaseUrl::Sqlite(db.to_path_buf()),
        &DatabaseOptions::default(),
    )
    .expect("open hub database");
    let mut store = SqlStore::open(&database).expect("open hub store");
    if !fraud {
        store.set_fraud_config(FraudConfig {
            enabled: false,
            ..FraudConfig::default()
        });
    }
    let (writer, thread) = spawn_writer(Box::new(store)).expect("writer");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let elapsed = runtime.block_on(async move {
        let start = Instant::now();
        for (agent, batch) in batches {
            let last = batch.last().map_or(0, |e| e.seq);
            let acked = writer.ingest(agent, batch, now()).await.expect("commit");
            assert_eq!(acked, Ok(last));
        }
        start.elapsed()
    });
    thread.join();
    elapsed
}

/// The rows the hub writes, precomputed, so the baseline measures SQLite alone.
struct Rows {
    events: Vec<EventRow>,
    profiles: Vec<(String, i64, i16, String)>,
    transactions: Vec<TxRow>,
    agent: (String, String, i64),
}

type EventRow = (String, String, i64, &'static str, i64, i16, Vec<u8>);
type TxRow = (
    String,
    String,
    i64,
    Option<String>,
    i64,
    i16,
    Option<i64>,
    Option<i16>,
    Option<String>,
    Option<String>,
    i64,
    String,
    Vec<u8>,
    Vec<u8>,
);

/// As the hub stores them: a receipt in one `transactions` row (its event without its
/// lines in `event`), any other event in `events`.
fn rows(agent: &AgentId, batch: &[Event]) -> Rows {
    let mut rows = Rows {
        events: Vec::new(),
        profiles: Vec::new(),
        transactions: Vec::new(),
        agent: (
            agent.store.clone(),
            agent.till.clone(),
            batch.last().map_or(0, |e| e.seq as i64),
        ),
    };
    for e in batch {
        let payload = stored_payload(e).expect("encode");
        if !matches!(e.kind, EventKind::Receipt(_)) {
            rows.events.push((
                e.agent.store.clone(),
                e.agent.till.clone(),
                e.seq as i64,
                e.kind.name(),
                e.recorded_at.unix_ms,
                e.recorded_at.offset_min,
                payload.clone(),
            ));
        }
        for op in merge_ops(e).0 {
            match op {
                MergeOp::EnsureProfile {
                    card,
                    profile_id,
                    seen_at,
                } => rows.profiles.push((
                    profile_id,
                    seen_at.unix_ms,
                    seen_at.offset_min,
                    card.to_string(),
                )),
                MergeOp::AddTransaction(t) => rows.transactions.push((
                    t.store,
                    t.till,
                    t.seq as i64,
                    t.receipt_no,
                    t.at.unix_ms,
                    t.at.offset_min,
                    t.printed_at.map(|p| p.unix_ms),
                    t.printed_at.map(|p| p.offset_min),
                    t.card.map(|c| c.to_string()),
                    t.profile_id,
                    t.total_cents,
                    t.currency,
                    codec::to_bytes(&t.lines).expect("encode"),
                    payload.clone(),
                )),
                // The bench's events are receipts and scans: no coupon rows.
                MergeOp::AddCoupon(_) | MergeOp::AddRedemption(_) => {}
            }
        }
    }
    rows
}

fn baseline_path(db: &Path, batches: &[(AgentId, Vec<Event>)]) -> Duration {
    let prepared: Vec<Rows> = batches.iter().map(|(a, b)| rows(a, b)).collect();
    // The schema the hub migrates to, then the hub's connection settings.
    drop(
        Database::open(
            &DatabaseUrl::Sqlite(db.to_path_buf()),
            &DatabaseOptions::default(),
        )
        .expect("migrate baseline"),
    );
    let mut conn = Connection::open(db).expect("open baseline");
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;
         PRAGMA cache_size = -65536; PRAGMA wal_autocheckpoint = 16384;",
    )
    .expect("pragmas");
    let start = Instant::now();
    for batch in &prepared {
        let tx = conn.transaction().expect("begin");
        {
            let mut ev = tx
                .prepare_cached("INSERT INTO events VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
                .expect("prepare");
            for r in &batch.events {
                ev.execute(params![r.0, r.1, r.2, r.3, r.4, r.5, r.6])
                    .expect("event");
            }
            let mut pr = tx
                .prepare_cached("INSERT OR IGNORE INTO profiles (profile_id, created_at_ms, created_offset_min) VALUES (?1, ?2, ?3)")
                .expect("prepare");
            let mut ca = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO identifiers VALUES ('card', ?1, ?2, 'till', ?3)",
                )
                .expect("prepare");
            for p in &batch.profiles {
                pr.execute(params![p.0, p.1, p.2]).expect("profile");
                ca.execute(params![p.3, p.0, p.1]).expect("card");
            }
            let mut trs = tx
                .prepare_cached(
                    "INSERT INTO transactions VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 0, ?14)",
                )
                .expect("prepare");
            for t in &batch.transactions {
                trs.execute(params![
                    t.0, t.1, t.2, t.3, t.4, t.5, t.6, t.7, t.8, t.9, t.10, t.11, t.12, t.13
                ])
                .expect("transaction");
            }
            tx.prepare_cached(
                "INSERT OR REPLACE INTO agents (store, till, last_seq, last_seen_ms) VALUES (?1, ?2, ?3, 0)",
            )
                .expect("prepare")
                .execute(params![batch.agent.0, batch.agent.1, batch.agent.2])
                .expect("agent");
        }
        tx.commit().expect("commit");
    }
    start.elapsed()
}
