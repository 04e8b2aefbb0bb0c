//! Ingest throughput on PostgreSQL: the hub's store path (plan_ingest + merge + commit,
//! one commit per batch as tills send them) next to a baseline measured in the same run:
//! a raw binary COPY of the same rows into the same tables (one transaction per batch).
//! Then "two hubs sharing the load on one database": two store writers (two threads,
//! each its own `Database`, each half of the tills) against one writer with every till,
//! and the staging-table variant of the raw path (binary COPY into temporary tables,
//! then `INSERT … SELECT … ON CONFLICT DO NOTHING`) beside the direct COPY.
//!
//! The events are those of `benches/ingest.rs` (receipts with lines and cards). Each run
//! makes its own databases on the server (`TILL360_TEST_POSTGRES`, default
//! `postgres://postgres@127.0.0.1:5432/test`) and drops them.
//!
//! `cargo bench -p till360-hub --bench ingest_postgres`; `TILL360_BENCH_RECEIPTS=N`,
//! `TILL360_BENCH_ROUNDS=N`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
use postgres::{Client, NoTls};
use till360_hub::config::{DatabaseUrl, FraudConfig, PostgresUrl};
use till360_hub::profile::{merge_ops, MergeOp};
use till360_hub::store::ingest::stored_payload;
use till360_hub::store::postgres::TemporaryDatabase;
use till360_hub::store::{Database, DatabaseOptions, IngestRequest, SqlStore, Store};
use till360_hub::synthetic::Generator;
use till360_shared::{codec, AgentId, Event, EventKind, Timestamp};

// The agent's default `[hub] batch_max`.
const BATCH: usize = 500;
const CARDS: usize = 2_000;
const CARDED_PERCENT: u64 = 80;

type Batches = Vec<(AgentId, Vec<Event>)>;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let server = std::env::var("TILL360_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let server = PostgresUrl::parse(&server).expect("TILL360_TEST_POSTGRES");
    let receipts = env_number("TILL360_BENCH_RECEIPTS", 20_000);
    let rounds = env_number("TILL360_BENCH_ROUNDS", 1).max(1);
    // Four tills so that two writers each get two: the events per till are as in
    // benches/ingest.rs (receipts of a 2,000-card population, 80% carded).
    let agents = [
        AgentId::new("S001", "T01"),
        AgentId::new("S002", "T01"),
        AgentId::new("S003", "T01"),
        AgentId::new("S004", "T01"),
    ];
    let batches = batches(&agents, receipts);
    let total: usize = batches.iter().map(|(_, b)| b.len()).sum();
    let lines: usize = batches
        .iter()
        .flat_map(|(_, b)| b)
        .map(|e| match &e.kind {
            EventKind::Receipt(r) => r.lines.len(),
            _ => 0,
        })
        .sum();
    println!(
        "ingest on PostgreSQL ({}): {total} receipts ({lines} lines), {} tills, batches of \
         {BATCH}, {CARDS} cards, {CARDED_PERCENT}% carded",
        server,
        agents.len()
    );
    let mut hub = Duration::MAX;
    let mut copy = Duration::MAX;
    let mut two = Duration::MAX;
    let mut unchecked = Duration::MAX;
    let mut staged = Duration::MAX;
    for round in 0..rounds {
        // Alternate the order so that neither path always runs on a warmer server.
        let mut run_hub = || hub = hub.min(hub_path(&server, &batches, 1, true));
        let mut run_copy = || copy = copy.min(copy_path(&server, &batches, false));
        if round % 2 == 0 {
            run_hub();
            run_copy();
        } else {
            run_copy();
            run_hub();
        }
        staged = staged.min(copy_path(&server, &batches, true));
        two = two.min(hub_path(&server, &batches, 2, true));
        unchecked = unchecked.min(hub_path(&server, &batches, 1, false));
    }
    let rate = |d: Duration| total as f64 / d.as_secs_f64();
    println!("best of {rounds} round(s) each");
    println!(
        "hub store path, one writer (plan + merge + commit per batch): {:>8.0} receipts/s ({:.0} ms)",
        rate(hub),
        hub.as_secs_f64() * 1e3
    );
    println!(
        "baseline raw binary COPY (same rows, same tables, 1 tx/batch): {:>8.0} receipts/s ({:.0} ms)",
        rate(copy),
        copy.as_secs_f64() * 1e3
    );
    println!("ratio hub / raw COPY: {:.2}", rate(hub) / rate(copy));
    println!(
        "raw COPY into staging tables, then INSERT … SELECT … ON CONFLICT DO NOTHING: {:>8.0} receipts/s ({:.0} ms, {:.2}× direct COPY)",
        rate(staged),
        staged.as_secs_f64() * 1e3,
        rate(staged) / rate(copy)
    );
    println!(
        "hub store path, one writer, [fraud] enabled = false:          {:>8.0} receipts/s ({:.0} ms)",
        rate(unchecked),
        unchecked.as_secs_f64() * 1e3
    );
    println!(
        "two writers (own Database each, half of the tills each):      {:>8.0} receipts/s ({:.0} ms)",
        rate(two),
        two.as_secs_f64() * 1e3
    );
    println!(
        "ratio two writers / one writer: {:.2}",
        rate(two) / rate(hub)
    );
}

/// Each till's receipts in batches, in the order the hub receives them (tills alternate).
fn batches(agents: &[AgentId], receipts: usize) -> Batches {
    let mut gen = Generator::new(2026, CARDS, CARDED_PERCENT);
    let per_agent = receipts / agents.len();
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
    batches
}

fn now() -> Timestamp {
    Timestamp::from_utc(chrono::Utc::now(), 0)
}

/// The hub's store path (`fraud`: with the card-fraud checks at ingest, the default)
/// with `writers` writers, each on its own `Database` and its
/// share of the tills (till i goes to writer i % writers); returns the wall time.
fn hub_path(server: &PostgresUrl, batches: &Batches, writers: usize, fraud: bool) -> Duration {
    let scratch = TemporaryDatabase::create(server, "bench_ingest_hub").expect("database");
    let url = DatabaseUrl::Postgres(scratch.url().clone());
    if let Ok(mode) = std::env::var("TILL360_BENCH_PLAN_CACHE_MODE") {
        let mut admin = Client::connect(&scratch.url().connection_string(), NoTls).expect("admin");
        admin
            .batch_execute(&format!(
                "ALTER DATABASE {} SET plan_cache_mode = {mode}",
                scratch.url().dbname()
            ))
            .expect("plan_cache_mode");
    }
    // Migrated once before the clock starts.
    drop(Database::open(&url, &DatabaseOptions::default()).expect("open"));
    let mut tills: Vec<AgentId> = batches.iter().map(|(a, _)| a.clone()).collect();
    tills.sort_by(|a, b| (&a.store, &a.till).cmp(&(&b.store, &b.till)));
    tills.dedup();
    let shares: Vec<Batches> = (0..writers)
        .map(|w| {
            batches
                .iter()
                .filter(|(a, _)| tills.iter().position(|t| t == a).unwrap_or(0) % writers == w)
                .cloned()
                .collect()
        })
        .collect();
    let stores: Vec<SqlStore> = shares
        .iter()
        .map(|_| {
            let db = Database::open(&url, &DatabaseOptions::default()).expect("open");
            let mut store = SqlStore::new(db.get().expect("connection"));
            if !fraud {
                store.set_fraud_config(FraudConfig {
                    enabled: false,
                    ..FraudConfig::default()
                });
            }
            store
        })
        .collect();
    let start = Instant::now();
    std::thread::scope(|scope| {
        for (mut store, share) in stores.into_iter().zip(&shares) {
            scope.spawn(move || {
                let mut slow = Vec::new();
                for (agent, batch) in share {
                    let t = Instant::now();
                    let last = batch.last().map_or(0, |e| e.seq);
                    let outcomes = store
                        .ingest(
                            &[IngestRequest {
                                agent,
                                events: batch,
                            }],
                            now(),
                        )
                        .expect("commit");
                    assert_eq!(outcomes, vec![Ok(last)]);
                    slow.push((t.elapsed().as_millis(), agent.store.clone(), last));
                }
                if std::env::var_os("TILL360_BENCH_TRACE").is_some() {
                    eprintln!("writers {writers}: per batch ms {:?}", slow);
                }
            });
        }
    });
    let elapsed = start.elapsed();
    let mut check = Client::connect(&scratch.url().connection_string(), NoTls).expect("check");
    let events: i64 = check
        .query_one(
            "SELECT (SELECT count(*) FROM events)
                 + (SELECT count(*) FROM transactions WHERE event IS NOT NULL)",
            &[],
        )
        .expect("count")
        .get(0);
    let receipts: usize = batches.iter().map(|(_, b)| b.len()).sum();
    assert_eq!(events as usize, receipts, "every event stored once");
    elapsed
}

/// The rows the hub writes for one batch, precomputed, so the baseline measures the
/// database alone.
#[derive(Default)]
struct Rows {
    events: Vec<EventRow>,
    /// Profiles and their card identifiers not written by an earlier batch.
    profiles: Vec<(String, i64, i64, String)>,
    transactions: Vec<TxRow>,
    agent: (String, String, i64),
}

type EventRow = (String, String, i64, &'static str, i64, i64, Vec<u8>);
type TxRow = (
    String,
    String,
    i64,
    Option<String>,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    i64,
    String,
    Vec<u8>,
    Vec<u8>,
);

/// As the hub stores them: a receipt in one `transactions` row (its event without its
/// lines in `event`), any other event in `events`.
fn rows(agent: &AgentId, batch: &[Event], seen: &mut HashSet<String>) -> Rows {
    let mut rows = Rows {
        agent: (
            agent.store.clone(),
            agent.till.clone(),
            batch.last().map_or(0, |e| e.seq as i64),
        ),
        ..Rows::default()
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
                e.recorded_at.offset_min.into(),
                payload.clone(),
            ));
        }
        for op in merge_ops(e).0 {
            match op {
                MergeOp::EnsureProfile {
                    card,
                    profile_id,
                    seen_at,
                } => {
                    if seen.insert(profile_id.clone()) {
                        rows.profiles.push((
                            profile_id,
                            seen_at.unix_ms,
                            seen_at.offset_min.into(),
                            card.to_string(),
                        ))
                    }
                }
                MergeOp::AddTransaction(t) => rows.transactions.push((
                    t.store,
                    t.till,
                    t.seq as i64,
                    t.receipt_no,
                    t.at.unix_ms,
                    t.at.offset_min.into(),
                    t.printed_at.map(|p| p.unix_ms),
                    t.printed_at.map(|p| p.offset_min.into()),
                    t.card.map(|c| c.to_string()),
                    t.profile_id,
                    t.total_cents,
                    t.currency,
                    codec::to_bytes(&t.lines).expect("encode"),
                    payload.clone(),
                )),
                // The bench's events are receipts: no coupon rows.
                MergeOp::AddCoupon(_) | MergeOp::AddRedemption(_) => {}
            }
        }
    }
    rows
}

fn copy_rows(
    tx: &mut postgres::Transaction<'_>,
    statement: &str,
    types: &[Type],
    rows: &mut dyn Iterator<Item = Vec<&(dyn ToSql + Sync)>>,
) {
    let sink = tx.copy_in(statement).expect("COPY");
    let mut writer = BinaryCopyInWriter::new(sink, types);
    for row in rows {
        writer.write(&row).expect("COPY row");
    }
    writer.finish().expect("COPY end");
}

/// The tables the raw paths write, in the order their foreign keys need.
const RAW_TABLES: [&str; 4] = ["profiles", "identifiers", "events", "transactions"];

/// Raw binary COPY of the rows the hub writes (events, profiles, card identifiers,
/// transactions) and the agent's high-water mark, one transaction per batch.
/// `staging`: the staging-table variant, each table's rows copied into a temporary table
/// and moved with `INSERT … SELECT … ON CONFLICT DO NOTHING`.
fn copy_path(server: &PostgresUrl, batches: &Batches, staging: bool) -> Duration {
    let scratch = TemporaryDatabase::create(server, "bench_ingest_copy").expect("database");
    let url = DatabaseUrl::Postgres(scratch.url().clone());
    drop(Database::open(&url, &DatabaseOptions::default()).expect("open"));
    let mut seen = HashSet::new();
    let prepared: Vec<Rows> = batches.iter().map(|(a, b)| rows(a, b, &mut seen)).collect();
    let mut client = Client::connect(&scratch.url().connection_string(), NoTls).expect("connect");
    let into = |table: &str| {
        if staging {
            format!("staging_{table}")
        } else {
            table.to_string()
        }
    };
    if staging {
        for table in RAW_TABLES {
            client
                .batch_execute(&format!(
                    "CREATE TEMPORARY TABLE staging_{table} (LIKE {table}) ON COMMIT DELETE ROWS"
                ))
                .expect("staging table");
        }
    }
    let start = Instant::now();
    for batch in &prepared {
        let mut tx = client.transaction().expect("begin");
        // As the hub's: no COPY for a batch without such rows (the bench's are receipts).
        if !batch.events.is_empty() {
            copy_rows(
                &mut tx,
                &format!(
                    "COPY {} (store, till, seq, kind, recorded_at_ms, offset_min, payload) \
                     FROM STDIN BINARY",
                    into("events")
                ),
                &[
                    Type::TEXT,
                    Type::TEXT,
                    Type::INT8,
                    Type::TEXT,
                    Type::INT8,
                    Type::INT8,
                    Type::BYTEA,
                ],
                &mut batch.events.iter().map(|r| {
                    vec![
                        &r.0 as _, &r.1 as _, &r.2 as _, &r.3 as _, &r.4 as _, &r.5 as _, &r.6 as _,
                    ]
                }),
            );
        }
        if !batch.profiles.is_empty() {
            copy_rows(
                &mut tx,
                &format!(
                    "COPY {} (profile_id, created_at_ms, created_offset_min) FROM STDIN BINARY",
                    into("profiles")
                ),
                &[Type::TEXT, Type::INT8, Type::INT8],
                &mut batch
                    .profiles
                    .iter()
                    .map(|p| vec![&p.0 as _, &p.1 as _, &p.2 as _]),
            );
            copy_rows(
                &mut tx,
                &format!(
                    "COPY {} (kind, value, profile_id, source, added_at_ms) FROM STDIN BINARY",
                    into("identifiers")
                ),
                &[Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT, Type::INT8],
                &mut batch
                    .profiles
                    .iter()
                    .map(|p| vec![&"card" as _, &p.3 as _, &p.0 as _, &"till" as _, &p.1 as _]),
            );
        }
        copy_rows(
            &mut tx,
            &format!(
                "COPY {} (store, till, seq, receipt_no, at_ms, offset_min, printed_at_ms, \
                 printed_offset_min, card, profile_id, total_cents, currency, lines, unbalanced, \
                 event) \
                 FROM STDIN BINARY",
                into("transactions")
            ),
            &[
                Type::TEXT,
                Type::TEXT,
                Type::INT8,
                Type::TEXT,
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::INT8,
                Type::TEXT,
                Type::BYTEA,
                Type::INT8,
                Type::BYTEA,
            ],
            &mut batch.transactions.iter().map(|t| {
                vec![
                    &t.0 as _, &t.1 as _, &t.2 as _, &t.3 as _, &t.4 as _, &t.5 as _, &t.6 as _,
                    &t.7 as _, &t.8 as _, &t.9 as _, &t.10 as _, &t.11 as _, &t.12 as _,
                    &0i64 as _, &t.13 as _,
                ]
            }),
        );
        if staging {
            for table in RAW_TABLES {
                tx.batch_execute(&format!(
                    "INSERT INTO {table} SELECT * FROM staging_{table} ON CONFLICT DO NOTHING"
                ))
                .expect("from staging");
            }
        }
        tx.execute(
            "INSERT INTO agents (store, till, last_seq, last_seen_ms) VALUES ($1, $2, $3, 0)
             ON CONFLICT (store, till) DO UPDATE SET last_seq = excluded.last_seq",
            &[&batch.agent.0, &batch.agent.1, &batch.agent.2],
        )
        .expect("agent");
        tx.commit().expect("commit");
    }
    start.elapsed()
}
