//! Customer import throughput: `import::customers` (CSV parsing, normalisation,
//! identity graph with evidence and blocking checks, personal data, consents, one
//! transaction) next to a baseline from the same run: the same CSV parsed and its rows
//! inserted raw (prepared statements, one transaction) into the same schema.
//!
//! `cargo bench -p till360-hub --bench import`; `TILL360_BENCH_CUSTOMERS=N` (default 1M).

use std::io::{BufReader, BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection};
use till360_hub::config::{DatabaseUrl, IdentityConfig};
use till360_hub::import;
use till360_hub::store::{Database, DatabaseOptions, SqliteStore};
use till360_shared::card::with_check_digit;
use till360_shared::Timestamp;

fn main() {
    let customers: usize = std::env::var("TILL360_BENCH_CUSTOMERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("customers.csv");
    write_customers(&csv, customers);
    let bytes = std::fs::metadata(&csv).map(|m| m.len()).unwrap_or(0);
    println!(
        "import: {customers} customers ({:.0} MB CSV: customer_no, name, e-mail, phone, card, 4 consents), \
         on-disk SQLite WAL synchronous=FULL",
        bytes as f64 / 1e6
    );

    let now = Timestamp::from_unix_ms(1_768_000_000_000, 0);
    let started = Instant::now();
    let db = Database::open(
        &DatabaseUrl::Sqlite(dir.path().join("hub.db")),
        &DatabaseOptions::default(),
    )
    .expect("open");
    let conn = db.get().expect("connection");
    let file = std::fs::File::open(&csv).expect("csv");
    let summary = import::customers(
        &*conn,
        BufReader::new(file),
        &IdentityConfig::default(),
        None,
        now,
    )
    .expect("import");
    let hub = started.elapsed();
    assert_eq!(summary.read as usize, customers);
    assert_eq!(summary.inserted as usize, customers, "{summary}");

    let baseline = baseline(&csv, &dir.path().join("baseline.db"), now);
    let rate = |d: Duration| customers as f64 / d.as_secs_f64();
    println!(
        "hub import customers (graph + personal data + consents, 1 tx): {:>9.0} customers/s ({:.1} s)",
        rate(hub),
        hub.as_secs_f64()
    );
    println!(
        "baseline raw inserts (same CSV parsed, prepared, 1 tx):       {:>9.0} customers/s ({:.1} s)",
        rate(baseline),
        baseline.as_secs_f64()
    );
    println!("ratio hub / baseline: {:.2}", rate(hub) / rate(baseline));
}

fn write_customers(path: &Path, n: usize) {
    let mut out = BufWriter::new(std::fs::File::create(path).expect("create csv"));
    writeln!(
        out,
        "customer_no,first_name,last_name,email,phone,birth_date,postal_code,member_since,cards,\
         language,consent_email,consent_sms,consent_post,consent_personalization"
    )
    .expect("write");
    for i in 0..n {
        let card = with_check_digit(&format!("2402{i:08}")).expect("card");
        writeln!(
            out,
            "C{i:08},First{i},Last{},c{i}@example.nl,06 {:08},19{:02}-{:02}-{:02},{:04} AB,2020-01-01,{card},nl,{},no,yes,{}",
            i % 997,
            i,
            50 + i % 50,
            1 + i % 12,
            1 + i % 28,
            1000 + i % 9000,
            if i % 2 == 0 { "yes" } else { "no" },
            if i % 3 == 0 { "yes" } else { "no" },
        )
        .expect("write");
    }
    out.flush().expect("flush");
}

fn baseline(csv: &Path, db: &Path, now: Timestamp) -> Duration {
    let started = Instant::now();
    // Same schema and pragmas as the hub's store.
    drop(SqliteStore::open(db).expect("open"));
    let mut conn = Connection::open(db).expect("open");
    conn.execute_batch("PRAGMA synchronous = FULL;")
        .expect("pragma");
    let tx = conn.transaction().expect("tx");
    {
        let mut profile = tx
            .prepare(
                "INSERT INTO profiles (profile_id, created_at_ms, created_offset_min, customer_no,
                     first_name, last_name, birth_date, postal_code, language, member_since,
                     updated_at_ms) VALUES (?1, ?2, 0, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?2)",
            )
            .expect("prepare");
        let mut ident = tx
            .prepare(
                "INSERT INTO identifiers (kind, value, profile_id, source, added_at_ms)
                 VALUES (?1, ?2, ?3, 'crm', ?4)",
            )
            .expect("prepare");
        let mut consent = tx
            .prepare(
                "INSERT INTO consents (profile_id, purpose, granted, source, at_ms)
                 VALUES (?1, ?2, ?3, 'crm', ?4)",
            )
            .expect("prepare");
        let mut reader = csv::Reader::from_path(csv).expect("csv");
        for record in reader.records() {
            let r = record.expect("record");
            let id = format!("b-{}", &r[0]);
            profile
                .execute(params![
                    id,
                    now.unix_ms,
                    &r[0],
                    &r[1],
                    &r[2],
                    &r[5],
                    &r[6],
                    &r[9],
                    &r[7]
                ])
                .expect("profile");
            for (kind, col) in [("customer_no", 0), ("email", 3), ("phone", 4), ("card", 8)] {
                ident
                    .execute(params![kind, &r[col], id, now.unix_ms])
                    .expect("identifier");
            }
            for (purpose, col) in [
                ("email", 10),
                ("sms", 11),
                ("post", 12),
                ("personalization", 13),
            ] {
                consent
                    .execute(params![id, purpose, &r[col] == "yes", now.unix_ms])
                    .expect("consent");
            }
        }
    }
    tx.commit().expect("commit");
    started.elapsed()
}
