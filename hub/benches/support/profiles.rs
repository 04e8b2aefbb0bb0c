//! Many profiles in a hub's SQLite database by raw inserts (the benches measure reads,
//! not the fill): the store's schema, ids as the identity graph would give them.
//! Shared by the `lookup` and `console` benches (`#[path]`).

#![allow(dead_code)] // each bench uses a different part

use rusqlite::{params, Connection};
use till360_hub::config::DatabaseUrl;
use till360_hub::store::{Database, DatabaseOptions};
use till360_hub::synthetic::Generator;
use till360_shared::card::with_check_digit;
use till360_shared::{codec, AgentId, EventKind};

/// The card of profile `i`.
pub fn card(i: usize) -> String {
    with_check_digit(&format!("2403{i:08}")).expect("card")
}

/// The id of profile `i`.
pub fn profile_id(i: usize) -> String {
    format!("p-{i:016x}")
}

/// The hub's database on the SQLite file `db`, schema applied, as the hub opens it.
pub fn open(db: &std::path::Path) -> Database {
    Database::open(
        &DatabaseUrl::Sqlite(db.to_path_buf()),
        &DatabaseOptions::default(),
    )
    .expect("open")
}

/// Raw inserts (the lookup is measured, not the fill): the store's schema, ids as the
/// identity graph would give them.
pub fn fill(db: &std::path::Path, profiles: usize) {
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
        let mut receipt = tx.prepare(RECEIPT).expect("prepare");
        let mut seq = 0u64;
        for i in 0..profiles {
            let code = card(i);
            let id = profile_id(i);
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
            if i.is_multiple_of(4) {
                for _ in 0..3 {
                    seq += 1;
                    insert_receipt(&mut receipt, &mut gen, &agent, seq, 0, i);
                }
            }
        }
    }
    tx.commit().expect("commit");
}

/// A receipt row of store S001: till, seq, receipt number, time, card, profile, total,
/// lines.
const RECEIPT: &str = "INSERT INTO transactions (store, till, seq, receipt_no, at_ms, offset_min,
         card, profile_id, total_cents, currency, lines)
     VALUES ('S001', ?1, ?2, ?3, ?4, 60, ?5, ?6, ?7, 'EUR', ?8)";

/// The generator's receipt `seq` of `agent`, `shift_ms` before its own time, for
/// profile `i`.
fn insert_receipt(
    statement: &mut rusqlite::Statement,
    gen: &mut Generator,
    agent: &AgentId,
    seq: u64,
    shift_ms: i64,
    i: usize,
) {
    let event = gen.receipt(agent, seq);
    let EventKind::Receipt(r) = event.kind else {
        return;
    };
    statement
        .execute(params![
            agent.till,
            seq as i64,
            r.receipt_no,
            r.completed_at.unix_ms - shift_ms,
            card(i),
            profile_id(i),
            r.total_cents,
            codec::to_bytes(&r.lines).expect("encode")
        ])
        .expect("receipt");
}

/// Gives profile `i` (already filled) `receipts` more receipts of the generator's shape,
/// one a day back from the fill's receipts, on till T02.
pub fn add_receipts(db: &std::path::Path, i: usize, receipts: usize) {
    let mut conn = Connection::open(db).expect("open");
    let mut gen = Generator::new(12, 0, 0);
    let agent = AgentId::new("S001", "T02");
    let tx = conn.transaction().expect("tx");
    {
        let mut receipt = tx.prepare(RECEIPT).expect("prepare");
        for seq in 1..=receipts as u64 {
            insert_receipt(
                &mut receipt,
                &mut gen,
                &agent,
                seq,
                seq as i64 * 86_400_000,
                i,
            );
        }
    }
    tx.commit().expect("commit");
}

/// Counts the receipts per day and till as schema 11 does for a database it migrates
/// (the fill's raw inserts bypass the ingest that keeps them).
pub fn count_receipt_days(db: &std::path::Path) {
    let conn = Connection::open(db).expect("open");
    conn.execute_batch(
        "DELETE FROM receipt_days;
         INSERT INTO receipt_days (day, store, till, receipts, revenue_cents)
             SELECT at_ms / 86400000, store, till, COUNT(*), SUM(total_cents)
             FROM transactions GROUP BY at_ms / 86400000, store, till;",
    )
    .expect("receipt days");
}
