//! The `digest_feed` table: per store, one row per card key as last pushed, each change
//! under a new version (strictly increasing per store), so an agent at version `v`
//! catches up with the rows after `v`. A refresh streams a store's eligible profiles a
//! page at a time (committing each page), so memory stays bounded for big stores.

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
const DAY_MS: i64 = 86_400_000;

/// What a refresh changed, over all stores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefreshSummary {
    pub stores: usize,
    /// Rows that got a new or changed digest.
    pub changed: usize,
    /// Rows turned into removals (no longer a customer of the store, or erased).
    pub removed: usize,
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
    let digest_key = derive_digest_key(master);
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
                "UPDATE digest_feed SET version = ?3, digest = NULL
                 WHERE store = ?1 AND card_key = ?2",
            )?
            .execute(params![store, key, to_sql(next_version)?])?;
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
        "INSERT INTO digest_feed (store, card_key, version, digest) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (store, card_key) DO UPDATE SET
             version = excluded.version, digest = excluded.digest",
    )?
    .execute(params![store, &key.0[..], to_sql(version)?, digest])?;
    Ok(())
}

fn to_sql(version: u64) -> Result<i64, StoreError> {
    i64::try_from(version)
        .map_err(|_| StoreError::Corrupt(format!("digest version {version} beyond i64")))
}

/// The newest version of `store`'s rows (0: none).
pub fn max_version(conn: &Connection, store: &str) -> Result<u64, StoreError> {
    let v: i64 = conn
        .prepare_cached("SELECT coalesce(max(version), 0) FROM digest_feed WHERE store = ?1")?
        .query_row([store], |r| r.get(0))?;
    Ok(v.max(0) as u64)
}

/// A page of `store`'s feed: the entries to send and the version of the last row read
/// (`None`: nothing after the asked version).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FeedPage {
    pub entries: Vec<DigestEntry>,
    pub last_version: Option<u64>,
}

/// `store`'s rows after `after_version`, oldest first, at most `limit`. A row the hub
/// cannot read any more (a digest from an older hub) goes out as a removal, so the till
/// asks on the next scan instead of holding a stale digest; a damaged card key is
/// skipped. Either way the feed never stalls on it.
pub fn rows_after(
    conn: &Connection,
    store: &str,
    after_version: u64,
    limit: usize,
) -> Result<FeedPage, StoreError> {
    let after = i64::try_from(after_version).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(
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
    let mut page = FeedPage::default();
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
