//! Customer import throughput on SQLite and on PostgreSQL: `import::customers` (CSV
//! parsing, normalisation, identity graph with evidence and blocking checks, personal
//! data, consents, one transaction) next to a baseline from the same run on the same
//! engine: raw inserts of the rows the import writes.
//!
//! The rows: per customer one `profiles` row (the id the identity graph gives it), four
//! `identifiers`, four `identity_links` (the evidence the graph keeps of the CRM row) and
//! four `consents`: 13 rows, normalised and hashed before the baseline's clock starts (the
//! baseline measures the writes only; the import parses, normalises and hashes on its own
//! clock). Baselines:
//! - SQLite: the rows inserted one statement each, prepared once, in one transaction, on a
//!   connection from `store::Database` (the hub's pragmas: WAL, `synchronous=FULL`,
//!   foreign keys, its page cache). A second figure leaves the evidence rows out (the
//!   row set of this bench's first baseline, which inserted profiles, identifiers and
//!   consents only), so the figures can be set beside the earlier ones.
//! - PostgreSQL: the rows written by binary `COPY` (the fastest way in), one `COPY` per
//!   table per 5,000 customers (the import's chunk), in one transaction, into a database
//!   `store::Database` migrated, through `Sql::copy_in` on a connection from it (the hub's
//!   session settings). A batched multi-row INSERT is slower than COPY, so COPY is the
//!   stricter baseline; it is also the baseline of `benches/ingest_postgres.rs`.
//!
//! Each PostgreSQL run creates its own database on the server `TILL360_TEST_POSTGRES`
//! names (default `postgres://postgres@127.0.0.1:5432/test`) and drops it.
//!
//! `cargo bench -p till360-hub --bench import`; `TILL360_BENCH_CUSTOMERS=N` (default 1M),
//! `TILL360_BENCH_ENGINES=sqlite,postgres` (default both).

use std::io::{BufReader, BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use till360_hub::config::{DatabaseUrl, IdentityConfig, PostgresUrl};
use till360_hub::identity::{IdKind, Identifier};
use till360_hub::import;
use till360_hub::sql_params;
use till360_hub::store::imports::{
    CONSENT_COLUMNS, IDENTIFIER_COLUMNS, LINK_COLUMNS, PROFILE_COLUMNS,
};
use till360_hub::store::postgres::TemporaryDatabase;
use till360_hub::store::sql::{Param, Sql, TxKind};
use till360_hub::store::{Database, DatabaseOptions};
use till360_shared::card::with_check_digit;
use till360_shared::Timestamp;

/// Customers per COPY in the PostgreSQL baseline (the import's chunk).
const CHUNK: usize = 5_000;

fn main() {
    let customers: usize = std::env::var("TILL360_BENCH_CUSTOMERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let engines = std::env::var("TILL360_BENCH_ENGINES").unwrap_or("sqlite,postgres".into());
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("customers.csv");
    write_customers(&csv, customers);
    let bytes = std::fs::metadata(&csv).map(|m| m.len()).unwrap_or(0);
    println!(
        "import: {customers} customers ({:.0} MB CSV: customer_no, name, e-mail, phone, card, \
         4 consents; 13 rows each: profile, 4 identifiers, 4 links, 4 consents)",
        bytes as f64 / 1e6
    );
    let now = Timestamp::from_unix_ms(1_768_000_000_000, 0);
    let rows = rows_of(&csv);
    assert_eq!(rows.len(), customers);
    let rate = |d: Duration| customers as f64 / d.as_secs_f64();
    let line = |what: &str, d: Duration| {
        println!(
            "  {what:<62} {:>9.0} customers/s ({:.1} s)",
            rate(d),
            d.as_secs_f64()
        )
    };

    if engines.contains("sqlite") {
        println!("SQLite (on-disk file, WAL, synchronous=FULL):");
        let hub = hub_import(
            &DatabaseUrl::Sqlite(dir.path().join("hub.db")),
            &csv,
            customers,
            now,
        );
        let raw = sqlite_baseline(&dir.path().join("baseline.db"), &rows, now, true);
        let narrow = sqlite_baseline(&dir.path().join("narrow.db"), &rows, now, false);
        line("hub import customers (graph + data + consents, 1 tx)", hub);
        line(
            "baseline raw inserts, the same 13 rows (prepared, 1 tx)",
            raw,
        );
        line("baseline raw inserts without the 4 evidence rows", narrow);
        println!(
            "  ratio hub / raw inserts: {:.2} (without evidence rows: {:.2})",
            rate(hub) / rate(raw),
            rate(hub) / rate(narrow)
        );
    }
    if engines.contains("postgres") {
        let server = std::env::var("TILL360_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let server = PostgresUrl::parse(&server).expect("TILL360_TEST_POSTGRES");
        println!("PostgreSQL ({server}):");
        let scratch = TemporaryDatabase::create(&server, "bench_import_hub").expect("database");
        let hub = hub_import(
            &DatabaseUrl::Postgres(scratch.url().clone()),
            &csv,
            customers,
            now,
        );
        drop(scratch);
        let scratch = TemporaryDatabase::create(&server, "bench_import_copy").expect("database");
        let raw = postgres_baseline(scratch.url(), &rows, now);
        drop(scratch);
        line("hub import customers (graph + data + consents, 1 tx)", hub);
        line("baseline raw binary COPY, the same 13 rows (1 tx)", raw);
        println!("  ratio hub / raw COPY: {:.2}", rate(hub) / rate(raw));
    }
}

/// A fresh hub database at `url` (migrated, the hub's settings).
fn open(url: DatabaseUrl) -> Database {
    Database::open(&url, &DatabaseOptions::default()).expect("open")
}

/// `import customers` of the file into a fresh hub database at `url`.
fn hub_import(url: &DatabaseUrl, csv: &Path, customers: usize, now: Timestamp) -> Duration {
    let db = open(url.clone());
    let conn = db.get().expect("connection");
    let started = Instant::now();
    let file = std::fs::File::open(csv).expect("csv");
    let summary = import::customers(
        &*conn,
        BufReader::new(file),
        &IdentityConfig::default(),
        None,
        now,
    )
    .expect("import");
    let took = started.elapsed();
    assert_eq!(summary.read as usize, customers);
    assert_eq!(summary.inserted as usize, customers, "{summary}");
    took
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

/// One customer's rows as the import writes them.
struct Rows {
    profile_id: String,
    link_key: String,
    /// customer_no, first_name, last_name, birth_date, postal_code, member_since, language
    data: [String; 7],
    identifiers: Vec<Identifier>,
    consents: Vec<(&'static str, i64)>,
}

/// The file's rows as the import writes them (identifiers normalised, the profile id the
/// graph gives a new customer: the smallest of its identifiers').
fn rows_of(csv: &Path) -> Vec<Rows> {
    let mut reader = csv::Reader::from_path(csv).expect("csv");
    let mut out = Vec::new();
    for record in reader.records() {
        let r = record.expect("record");
        let identifiers: Vec<Identifier> = [
            (IdKind::CustomerNo, 0),
            (IdKind::Email, 3),
            (IdKind::Phone, 4),
            (IdKind::Card, 8),
        ]
        .into_iter()
        .map(|(kind, col)| Identifier::parse(kind, &r[col], 31).expect("identifier"))
        .collect();
        let profile_id = identifiers
            .iter()
            .map(Identifier::profile_id)
            .min()
            .expect("identifiers");
        let consents = [
            ("email", 10),
            ("sms", 11),
            ("post", 12),
            ("personalization", 13),
        ]
        .into_iter()
        .map(|(purpose, col)| (purpose, i64::from(&r[col] == "yes")))
        .collect();
        out.push(Rows {
            profile_id,
            link_key: format!("crm:{}", identifiers[0].value),
            data: [0, 1, 2, 5, 6, 7, 9].map(|col| r[col].to_string()),
            identifiers,
            consents,
        });
    }
    out
}

/// Raw inserts of `rows` on SQLite (`evidence`: with the identity_links rows).
fn sqlite_baseline(path: &Path, rows: &[Rows], now: Timestamp, evidence: bool) -> Duration {
    let db = open(DatabaseUrl::Sqlite(path.to_path_buf()));
    let conn = db.get().expect("connection");
    let sql: &dyn Sql = &*conn;
    let at = now.unix_ms;
    let started = Instant::now();
    sql.begin(TxKind::Write).expect("begin");
    for r in rows {
        let [no, first, last, birth, postal, since, language] = &r.data;
        sql.execute(
            "INSERT INTO profiles (profile_id, created_at_ms, created_offset_min, customer_no,
                 first_name, last_name, birth_date, postal_code, member_since, language,
                 updated_at_ms) VALUES (?1, ?2, 0, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?2)",
            sql_params![
                r.profile_id,
                at,
                no,
                first,
                last,
                birth,
                postal,
                since,
                language
            ],
        )
        .expect("profile");
        for id in &r.identifiers {
            sql.execute(
                "INSERT INTO identifiers (kind, value, profile_id, source, added_at_ms)
                 VALUES (?1, ?2, ?3, 'crm', ?4)",
                sql_params![id.kind.as_str(), id.value, r.profile_id, at],
            )
            .expect("identifier");
            if evidence {
                sql.execute(
                    "INSERT INTO identity_links (row_key, kind, value) VALUES (?1, ?2, ?3)",
                    sql_params![r.link_key, id.kind.as_str(), id.value],
                )
                .expect("link");
            }
        }
        for (purpose, granted) in &r.consents {
            sql.execute(
                "INSERT INTO consents (profile_id, purpose, granted, source, at_ms)
                 VALUES (?1, ?2, ?3, 'crm', ?4)",
                sql_params![r.profile_id, purpose, granted, at],
            )
            .expect("consent");
        }
    }
    sql.commit().expect("commit");
    started.elapsed()
}

/// Raw binary COPY of `rows` (`Sql::copy_in`, the store's bulk path, on a connection
/// from `store::Database` with the hub's session settings) into a database migrated to
/// the hub's schema, one COPY per table per [`CHUNK`] customers, one transaction.
fn postgres_baseline(url: &PostgresUrl, rows: &[Rows], now: Timestamp) -> Duration {
    let db = open(DatabaseUrl::Postgres(url.clone()));
    let conn = db.get().expect("connection");
    let sql: &dyn Sql = &*conn;
    let at = Param::Int(now.unix_ms);
    let crm = Param::Text("crm");
    let copy = |table: &str, columns: &[&str], values: &[Param<'_>]| {
        assert!(sql.copy_in(table, columns, values).expect(table), "COPY");
    };
    let started = Instant::now();
    sql.begin(TxKind::Write).expect("begin");
    for part in rows.chunks(CHUNK) {
        let mut profiles = Vec::new();
        let (mut identifiers, mut links, mut consents) = (Vec::new(), Vec::new(), Vec::new());
        for r in part {
            let id = Param::Text(&r.profile_id);
            profiles.extend([id, at, Param::Int(0)]);
            profiles.extend(r.data.iter().map(|d| Param::Text(d.as_str())));
            profiles.push(at);
            for i in &r.identifiers {
                let (kind, value) = (Param::Text(i.kind.as_str()), Param::Text(&i.value));
                identifiers.extend([kind, value, id, crm, at]);
                links.extend([Param::Text(&r.link_key), kind, value]);
            }
            for (purpose, granted) in &r.consents {
                consents.extend([id, Param::Text(purpose), Param::Int(*granted), crm, at]);
            }
        }
        copy("profiles", &PROFILE_COLUMNS, &profiles);
        copy("identifiers", &IDENTIFIER_COLUMNS, &identifiers);
        copy("identity_links", &LINK_COLUMNS, &links);
        copy("consents", &CONSENT_COLUMNS, &consents);
    }
    sql.commit().expect("commit");
    started.elapsed()
}
