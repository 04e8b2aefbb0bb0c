//! Locks several hubs on one PostgreSQL take for what row locks cannot cover: a
//! transaction-scoped advisory lock, released at commit or rollback. On SQLite every
//! writer already holds the database's one write lock (`BEGIN IMMEDIATE`), so these
//! are no-ops there.
//!
//! Lock order (no deadlock between hubs): an ingest first locks its agents' rows
//! (sorted, `store/ingest.rs`), then at most [`merge`].

use super::sql::{Engine, Sql, SqlExt};
use super::StoreError;
use crate::sql_params;

/// Advisory lock keys (one namespace for the hub: `0x7113_60..`).
const MERGE: i64 = 0x7113_6000_0001;

/// Serialises the writes whose outcome depends on what other hubs committed just
/// before: identity graph changes (joining or splitting profiles, creating a card's
/// profile) and the coupon ledger's commit order (`redemptions.commit_seq`, which the
/// redeemed-codes feed reads in order, so numbers must be handed out in commit order).
pub fn merge(db: &dyn Sql) -> Result<(), StoreError> {
    advisory(db, MERGE)
}

fn advisory(db: &dyn Sql, key: i64) -> Result<(), StoreError> {
    match db.engine() {
        Engine::Sqlite => Ok(()),
        Engine::Postgres => {
            // count(*): a BIGINT column every driver reads (the lock function returns void).
            db.query_one(
                "SELECT count(*) FROM (SELECT pg_advisory_xact_lock(?1)) AS held",
                sql_params![key],
            )?;
            Ok(())
        }
    }
}
