//! The `digest_feed` table: per store, one row per card key as last pushed, each change
//! under a new version (strictly increasing per store), so an agent at version `v`
//! catches up with the rows after `v`. A refresh streams a store's eligible profiles a
//! page at a time (committing each page), so memory stays bounded for big stores.
//!
//! A change overwrites the card key's row, so the feed holds one row per card key ever
//! pushed; what would grow without end are the removals (lapsed or erased customers).
//! [`compact`] drops removals older than the retention and raises the store's
//! `compacted_through` to the newest version it dropped. An agent that has read up to
//! that version or further never needed those rows (they are at or below its version);
//! an agent behind it gets them from no delta, so the downlink starts it over from an
//! empty cache (a `reset` frame, then the current digests: see
//! `listener::session::digest_frame`), which the agent already handles. Versions never go
//! back: the next version follows the newest row or `compacted_through`, whichever is
//! higher.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use till360_shared::coupon::{derive_digest_key, CardKey};
use till360_shared::wire::DigestEntry;
use till360_shared::{codec, Timestamp};

use super::build::build_digest;
use super::facts::{cards_of, profile_facts};
use crate::store::StoreError;

/// Profiles handled per write transaction of a refresh (the ingest writer waits at
/// most one page for the database lock).
const PROFILE_PAGE: i64 = 200;
/// Removals written per transaction.
const REMOVAL_PAGE: i64 = 500;
/// Removal rows one compaction run drops at most (over all stores): a backlog (the
/// first run after an upgrade, a long-stopped hub) is worked off over several runs.
pub const COMPACTION_BATCH: usize = 5_000;
const DAY_MS: i64 = 86_400_000;

/// What a refresh changed, over all stores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefreshSummary {
    pub stores: usize,
    /// Rows that got a new or changed digest.
    pub changed: usize,
    /// Rows turned into removals (no longer a customer of the store, or erased).
    pub removed: usize,
    /// Removal rows dropped by the compaction after the refresh (see [`compact`]).
    pub compacted: usize,
}

impl RefreshSummary {
    pub fn any(&self) -> bool {
        self.changed + self.removed > 0
    }
}

/// The window of `[digests] months`: a profile with a transaction in the store at or
/// after this instant is the store's customer.
pub fn customers_since(now: Timestamp, months: u32) -> Timestamp {
    // A month as 30.44 days: the window needs no calendar precision.
    let ms = i64::from(months).saturating_mul(DAY_MS * 3044 / 100);
    Timestamp::from_unix_ms(now.unix_ms.saturating_sub(ms), now.offset_min)
}

/// Refreshes every store in `agents` (see [`refresh_store`]).
pub fn refresh_all(
    conn: &mut Connection,
    master: &[u8],
    months: u32,
    now: Timestamp,
) -> Result<RefreshSummary, StoreError> {
    let stores = conn
        .prepare("SELECT DISTINCT store FROM agents ORDER BY store")?
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    let mut summary = RefreshSummary::default();
    for store in &stores {
        let one = refresh_store(conn, master, store, customers_since(now, months), now)?;
        summary.changed += one.changed;
        summary.removed += one.removed;
    }
    summary.stores = stores.len();
    Ok(summary)
}

/// Brings `store`'s rows in line with the database: every card of every profile with a
/// transaction in the store since `since` gets its current digest (a new version only
/// when the bytes differ), every other row with a digest becomes a removal.
pub fn refresh_store(
    conn: &mut Connection,
    master: &[u8],
    store: &str,
    since: Timestamp,
    now: Timestamp,
) -> Result<RefreshSummary, StoreError> {
    // Connection-private scratch tables: SQLite keeps them on disk when they grow.
    conn.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS digest_eligible (profile_id TEXT PRIMARY KEY);
         CREATE TEMP TABLE IF NOT EXISTS digest_seen (card_key BLOB PRIMARY KEY);
         DELETE FROM temp.digest_eligible;
         DELETE FROM temp.digest_seen;",
    )?;
    conn.execute(
        "INSERT OR IGNORE INTO temp.digest_eligible (profile_id)
         SELECT DISTINCT profile_id FROM transactions
         WHERE store = ?1 AND at_ms >= ?2 AND profile_id IS NOT NULL",
        params![store, since.unix_ms],
    )?;
    let digest_key = derive_digest_key(master, store);
    let mut next_version = max_version(conn, store)? + 1;
    let mut summary = RefreshSummary {
        stores: 1,
        ..RefreshSummary::default()
    };
    let mut after = String::new();
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let page = tx
            .prepare_cached(
                "SELECT profile_id FROM temp.digest_eligible WHERE profile_id > ?1
                 ORDER BY profile_id LIMIT ?2",
            )?
            .query_map(params![after, PROFILE_PAGE], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        let Some(last) = page.last() else {
            break;
        };
        after = last.clone();
        for profile_id in &page {
            // Merged away or erased since the page was listed: its cards are not seen,
            // so the removal pass below takes them out.
            let Some(facts) = profile_facts(&tx, profile_id, now)? else {
                continue;
            };
            let bytes = codec::to_bytes(&build_digest(master, &facts, now))?;
            for card in cards_of(&tx, profile_id)? {
                let key = CardKey::of(&digest_key, &card);
                let inserted = tx
                    .prepare_cached(
                        "INSERT OR IGNORE INTO temp.digest_seen (card_key) VALUES (?1)",
                    )?
                    .execute([&key.0[..]])?;
                if inserted == 0 {
                    // A card in two profiles cannot happen in the identity graph; the
                    // first one listed wins rather than flapping between versions.
                    continue;
                }
                let stored: Option<Option<Vec<u8>>> = tx
                    .prepare_cached(
                        "SELECT digest FROM digest_feed WHERE store = ?1 AND card_key = ?2",
                    )?
                    .query_row(params![store, &key.0[..]], |r| r.get(0))
                    .optional()?;
                if stored.as_ref().and_then(Option::as_deref) == Some(bytes.as_slice()) {
                    continue;
                }
                upsert(&tx, store, &key, next_version, &bytes)?;
                next_version += 1;
                summary.changed += 1;
            }
        }
        tx.commit()?;
    }
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let gone = tx
            .prepare_cached(
                "SELECT card_key FROM digest_feed
                 WHERE store = ?1 AND digest IS NOT NULL
                   AND card_key NOT IN (SELECT card_key FROM temp.digest_seen)
                 ORDER BY version LIMIT ?2",
            )?
            .query_map(params![store, REMOVAL_PAGE], |r| r.get::<_, Vec<u8>>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        if gone.is_empty() {
            break;
        }
        for key in &gone {
            tx.prepare_cached(
                "UPDATE digest_feed SET version = ?3, digest = NULL, removed_at_ms = ?4
                 WHERE store = ?1 AND card_key = ?2",
            )?
            .execute(params![store, key, to_sql(next_version)?, now.unix_ms])?;
            next_version += 1;
            summary.removed += 1;
        }
        tx.commit()?;
    }
    conn.execute_batch("DELETE FROM temp.digest_eligible; DELETE FROM temp.digest_seen;")?;
    Ok(summary)
}

fn upsert(
    conn: &Connection,
    store: &str,
    key: &CardKey,
    version: u64,
    digest: &[u8],
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO digest_feed (store, card_key, version, digest, removed_at_ms)
         VALUES (?1, ?2, ?3, ?4, NULL)
         ON CONFLICT (store, card_key) DO UPDATE SET
             version = excluded.version, digest = excluded.digest, removed_at_ms = NULL",
    )?
    .execute(params![store, &key.0[..], to_sql(version)?, digest])?;
    Ok(())
}

fn to_sql(version: u64) -> Result<i64, StoreError> {
    i64::try_from(version)
        .map_err(|_| StoreError::Corrupt(format!("digest version {version} beyond i64")))
}

/// The newest version `store`'s feed has given out (0: none): its newest row, or the
/// newest version compaction dropped if that is higher (versions never go back).
pub fn max_version(conn: &Connection, store: &str) -> Result<u64, StoreError> {
    let v: i64 = conn
        .prepare_cached(
            "SELECT max(
                 coalesce((SELECT max(version) FROM digest_feed WHERE store = ?1), 0),
                 coalesce((SELECT compacted_through FROM digest_compaction WHERE store = ?1), 0))",
        )?
        .query_row([store], |r| r.get(0))?;
    Ok(v.max(0) as u64)
}

/// The version at or below which `store`'s removals may have been dropped (0: none).
pub fn compacted_through(conn: &Connection, store: &str) -> Result<u64, StoreError> {
    let v: Option<i64> = conn
        .prepare_cached("SELECT compacted_through FROM digest_compaction WHERE store = ?1")?
        .query_row([store], |r| r.get(0))
        .optional()?;
    Ok(v.unwrap_or(0).max(0) as u64)
}

/// Drops removal rows that became removals more than `retention_days` before `now`,
/// oldest versions first, at most `budget` rows, in ONE transaction; each store's
/// `compacted_through` rises to the newest version dropped there. Removals from before
/// schema 6 (no time) are stamped with `now` first, so their retention starts now.
/// Returns the rows dropped.
pub fn compact(
    conn: &mut Connection,
    now: Timestamp,
    retention_days: u32,
    budget: usize,
) -> Result<usize, StoreError> {
    let cutoff = now
        .unix_ms
        .saturating_sub(i64::from(retention_days).saturating_mul(DAY_MS));
    let budget = i64::try_from(budget).unwrap_or(i64::MAX);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.prepare_cached(
        "UPDATE digest_feed SET removed_at_ms = ?1 WHERE rowid IN (
             SELECT rowid FROM digest_feed
             WHERE digest IS NULL AND removed_at_ms IS NULL LIMIT ?2)",
    )?
    .execute(params![now.unix_ms, budget])?;
    let stores = tx
        .prepare_cached(
            "SELECT DISTINCT store FROM digest_feed
             WHERE digest IS NULL AND removed_at_ms <= ?1 ORDER BY store",
        )?
        .query_map([cutoff], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    let mut dropped: i64 = 0;
    for store in &stores {
        let left = budget - dropped;
        if left <= 0 {
            break;
        }
        // The newest version among the `left` oldest droppable removals.
        let through: Option<i64> = tx
            .prepare_cached(
                "SELECT max(version) FROM (
                     SELECT version FROM digest_feed
                     WHERE store = ?1 AND digest IS NULL AND removed_at_ms <= ?2
                     ORDER BY version LIMIT ?3)",
            )?
            .query_row(params![store, cutoff, left], |r| r.get(0))?;
        let Some(through) = through else {
            continue;
        };
        let n = tx
            .prepare_cached(
                "DELETE FROM digest_feed
                 WHERE store = ?1 AND digest IS NULL AND removed_at_ms <= ?2 AND version <= ?3",
            )?
            .execute(params![store, cutoff, through])?;
        tx.prepare_cached(
            "INSERT INTO digest_compaction (store, compacted_through) VALUES (?1, ?2)
             ON CONFLICT (store) DO UPDATE SET
                 compacted_through = max(compacted_through, excluded.compacted_through)",
        )?
        .execute(params![store, through])?;
        dropped += i64::try_from(n).unwrap_or(i64::MAX);
    }
    tx.commit()?;
    Ok(usize::try_from(dropped).unwrap_or(usize::MAX))
}

/// A page of `store`'s feed: the entries to send and the version of the last row read
/// (`None`: nothing after the asked version).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FeedPage {
    pub entries: Vec<DigestEntry>,
    pub last_version: Option<u64>,
    /// The store's [`compacted_through`], read with the rows: an agent that had read
    /// less than this (and holds a cache) cannot use the page and must start over.
    pub compacted_through: u64,
}

/// `store`'s rows after `after_version`, oldest first, at most `limit`, with the
/// store's `compacted_through` from the same read transaction (a compaction between the
/// two reads could otherwise hide a dropped removal). A row the hub cannot read any
/// more (a digest from an older hub) goes out as a removal, so the till asks on the
/// next scan instead of holding a stale digest; a damaged card key is skipped. Either
/// way the feed never stalls on it.
pub fn rows_after(
    conn: &Connection,
    store: &str,
    after_version: u64,
    limit: usize,
) -> Result<FeedPage, StoreError> {
    let after = i64::try_from(after_version).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    // Reads only: dropping it rolls back, which ends the snapshot all the same.
    let snapshot = conn.unchecked_transaction()?;
    let mut page = FeedPage {
        compacted_through: compacted_through(&snapshot, store)?,
        ..FeedPage::default()
    };
    let mut stmt = snapshot.prepare_cached(
        "SELECT version, card_key, digest FROM digest_feed
         WHERE store = ?1 AND version > ?2 ORDER BY version LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![store, after, limit], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, Vec<u8>>(1)?,
            r.get::<_, Option<Vec<u8>>>(2)?,
        ))
    })?;
    for row in rows {
        let (version, key, digest) = row?;
        let version = version.max(0) as u64;
        page.last_version = Some(version);
        let Ok(key) = <[u8; 16]>::try_from(key.as_slice()) else {
            tracing::warn!(
                "digest feed {store} version {version}: card key of {} bytes skipped",
                key.len()
            );
            continue;
        };
        let digest = match digest.map(|bytes| codec::from_bytes(&bytes)).transpose() {
            Ok(digest) => digest,
            Err(e) => {
                tracing::warn!(
                    "digest feed {store} version {version}: unreadable digest sent as a removal: {e}"
                );
                None
            }
        };
        page.entries.push(DigestEntry {
            card_key: CardKey(key),
            digest,
        });
    }
    Ok(page)
}
