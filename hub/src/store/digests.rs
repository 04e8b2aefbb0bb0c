//! The digest feed's storage, on every engine: the facts a digest is built from (the
//! same tables the profile view reads), the profile a card belongs to, and the
//! `digest_feed` table per store.
//!
//! Per store, one row per card key as last pushed, each change under a new version
//! (strictly increasing per store), so an agent at version `v` catches up with the rows
//! after `v`. A refresh streams a store's eligible profiles a page at a time (committing
//! each page), so memory stays bounded for big stores.
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
//!
//! Versions are handed out by the database, never by the hub's memory: each write
//! transaction locks the store's feed ([`lock_feed`]), reads the newest version and
//! numbers its rows after it, so two hubs (or a refresh and a compaction) never give out
//! one version twice, and a store's versions commit in the order they were given out
//! (a till that read version `v` never misses a smaller one committed later).

use till360_shared::campaign::Digest;
use till360_shared::coupon::{derive_digest_key, CardKey};
use till360_shared::wire::DigestEntry;
use till360_shared::{codec, CardNumber, Timestamp};

use super::sql::{int, transaction, Engine, Row, Sql, SqlExt, TxKind};
use super::StoreError;
use crate::digests::build::{build_digest, caps_since, customers_since, ProfileFacts};
use crate::sql_params;

/// Profiles handled per write transaction of a refresh (the ingest writer waits at
/// most one page for the database lock).
const PROFILE_PAGE: i64 = 200;
/// Removals written per transaction.
const REMOVAL_PAGE: i64 = 500;
/// Removal rows one compaction run drops at most (over all stores): a backlog (the
/// first run after an upgrade, a long-stopped hub) is worked off over several runs.
pub const COMPACTION_BATCH: usize = 5_000;
const DAY_MS: i64 = 86_400_000;

/// A card flagged as suspicious gets no digest, so no till prints it a personal coupon.
const NOT_FLAGGED: &str = "AND value NOT IN
    (SELECT card FROM suspicious_cards WHERE cleared_at_ms IS NULL)";

/// The profile `card` belongs to; `None` when unknown, erased (an erase deletes the
/// card's identifier) or flagged as suspicious.
pub fn profile_of_card(db: &dyn Sql, card: &CardNumber) -> Result<Option<String>, StoreError> {
    db.query_value(
        &format!(
            "SELECT profile_id FROM identifiers WHERE kind = 'card' AND value = ?1 {NOT_FLAGGED}"
        ),
        sql_params![card.as_str()],
    )
}

/// What `card` is to `store`: `None` when unknown (or erased); else whether it is flagged
/// as suspicious and whether its holder has a transaction in the store at or after
/// `since_ms` (the store's customer, whom its digest feed carries).
pub fn standing_at_store(
    db: &dyn Sql,
    card: &CardNumber,
    store: &str,
    since_ms: i64,
) -> Result<Option<(bool, bool)>, StoreError> {
    db.query_opt(
        "SELECT EXISTS (SELECT 1 FROM suspicious_cards
                        WHERE card = i.value AND cleared_at_ms IS NULL),
                EXISTS (SELECT 1 FROM transactions t WHERE t.profile_id = i.profile_id
                        AND t.store = ?1 AND t.at_ms >= ?2)
         FROM identifiers i WHERE i.kind = 'card' AND i.value = ?3",
        sql_params![store, since_ms, card.as_str()],
    )?
    .map(|row| Ok((row.get::<bool>(0)?, row.get::<bool>(1)?)))
    .transpose()
}

/// The valid card numbers of a profile that are not flagged as suspicious (a stored value
/// that is not a card is skipped: a till could never scan it).
pub fn cards_of(db: &dyn Sql, profile_id: &str) -> Result<Vec<CardNumber>, StoreError> {
    let mut cards = Vec::new();
    db.query_each(
        &format!(
            "SELECT value FROM identifiers WHERE profile_id = ?1 AND kind = 'card'
                 {NOT_FLAGGED} ORDER BY value"
        ),
        sql_params![profile_id],
        &mut |row| {
            let value: String = row.get(0)?;
            match CardNumber::parse(&value) {
                Ok(card) => cards.push(card),
                Err(e) => tracing::warn!(
                    "profile {profile_id}: stored card {:?} is invalid: {e}",
                    till360_shared::card::masked(&value)
                ),
            }
            Ok(())
        },
    )?;
    Ok(cards)
}

/// Everything a digest needs about `profile_id`; `None` when there is no such profile
/// (erased, or merged away). Coupons older than the caps window at `now` are not read.
pub fn profile_facts(
    db: &dyn Sql,
    profile_id: &str,
    now: Timestamp,
) -> Result<Option<ProfileFacts>, StoreError> {
    let Some(row) = db.query_opt(
        "SELECT birth_date, member_since, points, created_at_ms, created_offset_min
         FROM profiles WHERE profile_id = ?1",
        sql_params![profile_id],
    )?
    else {
        return Ok(None);
    };
    let birth_date: Option<String> = row.get(0)?;
    let member_since: Option<String> = row.get(1)?;
    let points: Option<i64> = row.get(2)?;
    let first_seen = timestamp(&row, 3)?;
    let last_visit = db
        .query_opt(
            "SELECT at_ms, offset_min FROM transactions WHERE profile_id = ?1 AND unbalanced = 0
             ORDER BY at_ms DESC LIMIT 1",
            sql_params![profile_id],
        )?
        .map(|row| timestamp(&row, 0))
        .transpose()?;
    let personalisation = db
        .query_value::<i64>(
            "SELECT granted FROM consents WHERE profile_id = ?1 AND purpose = 'personalization'",
            sql_params![profile_id],
        )?
        .map(|granted| granted != 0);
    let mut segments = Vec::new();
    db.query_each(
        "SELECT segment_id FROM segment_members WHERE profile_id = ?1 ORDER BY segment_id",
        sql_params![profile_id],
        &mut |row| {
            segments.push(row.get::<String>(0)?);
            Ok(())
        },
    )?;
    // Printed coupons and would-haves alike: control and treated are capped the same.
    let mut coupons = Vec::new();
    db.query_each(
        "SELECT campaign_id, issued_at_ms, offset_min FROM coupons
         WHERE profile_id = ?1 AND issued_at_ms >= ?2
         ORDER BY issued_at_ms, campaign_id",
        sql_params![profile_id, caps_since(now).unix_ms],
        &mut |row| {
            coupons.push((row.get::<String>(0)?, timestamp(&row, 1)?));
            Ok(())
        },
    )?;
    Ok(Some(ProfileFacts {
        profile_id: profile_id.to_string(),
        birth_date,
        member_since,
        first_seen,
        points,
        last_visit,
        personalisation,
        segments,
        coupons,
    }))
}

/// A timestamp stored as unix milliseconds (column `at`) and the till's UTC offset in
/// minutes (column `at + 1`).
fn timestamp(row: &Row, at: usize) -> Result<Timestamp, StoreError> {
    let offset: i64 = row.get(at + 1)?;
    let offset = i16::try_from(offset)
        .map_err(|_| StoreError::Corrupt(format!("a UTC offset of {offset} minutes")))?;
    Ok(Timestamp::from_unix_ms(row.get(at)?, offset))
}

/// The digest of `card`'s holder, fresh from the database (a till asking on a scan);
/// `None` when the card is unknown or erased.
pub fn digest_of_card(
    db: &dyn Sql,
    master: &[u8],
    card: &CardNumber,
    now: Timestamp,
) -> Result<Option<Digest>, StoreError> {
    let Some(profile_id) = profile_of_card(db, card)? else {
        return Ok(None);
    };
    Ok(profile_facts(db, &profile_id, now)?.map(|f| build_digest(master, &f, now)))
}

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

/// Refreshes every store in `agents` (see [`refresh_store`]).
pub fn refresh_all(
    db: &dyn Sql,
    master: &[u8],
    months: u32,
    now: Timestamp,
) -> Result<RefreshSummary, StoreError> {
    let mut stores = Vec::new();
    db.query_each(
        "SELECT DISTINCT store FROM agents ORDER BY store",
        sql_params![],
        &mut |row| {
            stores.push(row.get::<String>(0)?);
            Ok(())
        },
    )?;
    let mut summary = RefreshSummary::default();
    for store in &stores {
        let one = refresh_store(db, master, store, customers_since(now, months), now)?;
        summary.changed += one.changed;
        summary.removed += one.removed;
    }
    summary.stores = stores.len();
    Ok(summary)
}

/// The connection-private scratch tables of a refresh, created once per connection and
/// emptied before and after each use (SQLite keeps them on disk when they grow).
fn scratch_tables(db: &dyn Sql) -> Result<(), StoreError> {
    let blob = match db.engine() {
        Engine::Sqlite => "BLOB",
        Engine::Postgres => "BYTEA",
    };
    db.batch(&format!(
        "CREATE TEMP TABLE IF NOT EXISTS digest_eligible (profile_id TEXT PRIMARY KEY);
         CREATE TEMP TABLE IF NOT EXISTS digest_seen (card_key {blob} PRIMARY KEY);
         DELETE FROM digest_eligible;
         DELETE FROM digest_seen;"
    ))
}

/// Takes `store`'s feed for the rest of the write transaction, so that the versions it
/// reads and gives out are its own. SQLite's write transaction already excludes every
/// other writer; PostgreSQL locks the store's `digest_compaction` row (created at 0,
/// which reads as "nothing compacted").
pub fn lock_feed(db: &dyn Sql, store: &str) -> Result<(), StoreError> {
    if db.engine() == Engine::Postgres {
        db.execute(
            "INSERT INTO digest_compaction (store, compacted_through) VALUES (?1, 0)
             ON CONFLICT (store) DO NOTHING",
            sql_params![store],
        )?;
        db.query_opt(
            "SELECT compacted_through FROM digest_compaction WHERE store = ?1 FOR UPDATE",
            sql_params![store],
        )?;
    }
    Ok(())
}

/// Brings `store`'s rows in line with the database: every card of every profile with a
/// transaction in the store since `since` gets its current digest (a new version only
/// when the bytes differ), every other row with a digest becomes a removal.
pub fn refresh_store(
    db: &dyn Sql,
    master: &[u8],
    store: &str,
    since: Timestamp,
    now: Timestamp,
) -> Result<RefreshSummary, StoreError> {
    scratch_tables(db)?;
    db.execute(
        "INSERT INTO digest_eligible (profile_id)
         SELECT DISTINCT profile_id FROM transactions
         WHERE store = ?1 AND at_ms >= ?2 AND profile_id IS NOT NULL",
        sql_params![store, since.unix_ms],
    )?;
    let digest_key = derive_digest_key(master, store);
    let mut summary = RefreshSummary {
        stores: 1,
        ..RefreshSummary::default()
    };
    let mut after = String::new();
    loop {
        let page = transaction(db, TxKind::Write, |tx| {
            refresh_page(tx, master, store, &digest_key, &after, now)
        })?;
        let Some((last, changed)) = page else {
            break;
        };
        after = last;
        summary.changed += changed;
    }
    loop {
        let removed = transaction(db, TxKind::Write, |tx| remove_unseen(tx, store, now))?;
        if removed == 0 {
            break;
        }
        summary.removed += removed;
    }
    db.batch("DELETE FROM digest_eligible; DELETE FROM digest_seen;")?;
    Ok(summary)
}

/// One page of eligible profiles after `after`, in one write transaction: each card
/// whose digest changed gets the next version. Returns the last profile of the page and
/// the rows changed, or `None` when no profile is left.
fn refresh_page(
    tx: &dyn Sql,
    master: &[u8],
    store: &str,
    digest_key: &[u8; 32],
    after: &str,
    now: Timestamp,
) -> Result<Option<(String, usize)>, StoreError> {
    let mut page = Vec::new();
    tx.query_each(
        "SELECT profile_id FROM digest_eligible WHERE profile_id > ?1
         ORDER BY profile_id LIMIT ?2",
        sql_params![after, PROFILE_PAGE],
        &mut |row| {
            page.push(row.get::<String>(0)?);
            Ok(())
        },
    )?;
    let Some(last) = page.last().cloned() else {
        return Ok(None);
    };
    lock_feed(tx, store)?;
    let mut next_version = max_version(tx, store)? + 1;
    let mut changed = 0;
    for profile_id in &page {
        // Merged away or erased since the page was listed: its cards are not seen,
        // so the removal pass takes them out.
        let Some(facts) = profile_facts(tx, profile_id, now)? else {
            continue;
        };
        let bytes = codec::to_bytes(&build_digest(master, &facts, now))?;
        for card in cards_of(tx, profile_id)? {
            let key = CardKey::of(digest_key, &card);
            let inserted = tx.execute(
                "INSERT INTO digest_seen (card_key) VALUES (?1) ON CONFLICT (card_key) DO NOTHING",
                sql_params![&key.0[..]],
            )?;
            if inserted == 0 {
                // A card in two profiles cannot happen in the identity graph; the
                // first one listed wins rather than flapping between versions.
                continue;
            }
            let stored: Option<Option<Vec<u8>>> = tx.query_value(
                "SELECT digest FROM digest_feed WHERE store = ?1 AND card_key = ?2",
                sql_params![store, &key.0[..]],
            )?;
            if stored.as_ref().and_then(Option::as_deref) == Some(bytes.as_slice()) {
                continue;
            }
            upsert(tx, store, &key, next_version, &bytes)?;
            next_version += 1;
            changed += 1;
        }
    }
    Ok(Some((last, changed)))
}

/// Turns up to a page of `store`'s digests whose card was not seen by this refresh into
/// removals, each under the next version. Returns how many.
fn remove_unseen(tx: &dyn Sql, store: &str, now: Timestamp) -> Result<usize, StoreError> {
    let mut gone = Vec::new();
    tx.query_each(
        "SELECT card_key FROM digest_feed
         WHERE store = ?1 AND digest IS NOT NULL
           AND card_key NOT IN (SELECT card_key FROM digest_seen)
         ORDER BY version LIMIT ?2",
        sql_params![store, REMOVAL_PAGE],
        &mut |row| {
            gone.push(row.get::<Vec<u8>>(0)?);
            Ok(())
        },
    )?;
    if gone.is_empty() {
        return Ok(0);
    }
    lock_feed(tx, store)?;
    let first_version = max_version(tx, store)? + 1;
    for (next_version, key) in (first_version..).zip(&gone) {
        tx.execute(
            "UPDATE digest_feed SET version = ?1, digest = NULL, removed_at_ms = ?2
             WHERE store = ?3 AND card_key = ?4",
            sql_params![int(next_version)?, now.unix_ms, store, key],
        )?;
    }
    Ok(gone.len())
}

fn upsert(
    db: &dyn Sql,
    store: &str,
    key: &CardKey,
    version: u64,
    digest: &[u8],
) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO digest_feed (store, card_key, version, digest, removed_at_ms)
         VALUES (?1, ?2, ?3, ?4, NULL)
         ON CONFLICT (store, card_key) DO UPDATE SET
             version = excluded.version, digest = excluded.digest, removed_at_ms = NULL",
        sql_params![store, &key.0[..], int(version)?, digest],
    )?;
    Ok(())
}

/// The newest version `store`'s feed has given out (0: none): its newest row, or the
/// newest version compaction dropped if that is higher (versions never go back).
pub fn max_version(db: &dyn Sql, store: &str) -> Result<u64, StoreError> {
    let row = db.query_one(
        "SELECT (SELECT max(version) FROM digest_feed WHERE store = ?1),
                (SELECT compacted_through FROM digest_compaction WHERE store = ?2)",
        sql_params![store, store],
    )?;
    let newest: Option<i64> = row.get(0)?;
    let compacted: Option<i64> = row.get(1)?;
    Ok(newest.unwrap_or(0).max(compacted.unwrap_or(0)).max(0) as u64)
}

/// The version at or below which `store`'s removals may have been dropped (0: none).
pub fn compacted_through(db: &dyn Sql, store: &str) -> Result<u64, StoreError> {
    let v: Option<i64> = db.query_value(
        "SELECT compacted_through FROM digest_compaction WHERE store = ?1",
        sql_params![store],
    )?;
    Ok(v.unwrap_or(0).max(0) as u64)
}

/// Drops removal rows that became removals more than `retention_days` before `now`,
/// oldest versions first, at most `budget` rows, in ONE transaction; each store's
/// `compacted_through` rises to the newest version dropped there. Removals from before
/// schema 6 (no time) are stamped with `now` first, so their retention starts now.
/// Returns the rows dropped.
pub fn compact(
    db: &dyn Sql,
    now: Timestamp,
    retention_days: u32,
    budget: usize,
) -> Result<usize, StoreError> {
    let cutoff = now
        .unix_ms
        .saturating_sub(i64::from(retention_days).saturating_mul(DAY_MS));
    let budget = i64::try_from(budget).unwrap_or(i64::MAX);
    transaction(db, TxKind::Write, |tx| {
        tx.execute(
            "UPDATE digest_feed SET removed_at_ms = ?1 WHERE (store, card_key) IN (
                 SELECT store, card_key FROM digest_feed
                 WHERE digest IS NULL AND removed_at_ms IS NULL LIMIT ?2)",
            sql_params![now.unix_ms, budget],
        )?;
        let mut stores = Vec::new();
        tx.query_each(
            "SELECT DISTINCT store FROM digest_feed
             WHERE digest IS NULL AND removed_at_ms <= ?1 ORDER BY store",
            sql_params![cutoff],
            &mut |row| {
                stores.push(row.get::<String>(0)?);
                Ok(())
            },
        )?;
        let mut dropped: i64 = 0;
        for store in &stores {
            let left = budget - dropped;
            if left <= 0 {
                break;
            }
            lock_feed(tx, store)?;
            // The newest version among the `left` oldest droppable removals.
            let through: Option<Option<i64>> = tx.query_value(
                "SELECT max(version) FROM (
                     SELECT version FROM digest_feed
                     WHERE store = ?1 AND digest IS NULL AND removed_at_ms <= ?2
                     ORDER BY version LIMIT ?3) AS oldest",
                sql_params![store, cutoff, left],
            )?;
            // `max` of no rows is one NULL row.
            let Some(through) = through.flatten() else {
                continue;
            };
            let n = tx.execute(
                "DELETE FROM digest_feed
                 WHERE store = ?1 AND digest IS NULL AND removed_at_ms <= ?2 AND version <= ?3",
                sql_params![store, cutoff, through],
            )?;
            tx.execute(
                "INSERT INTO digest_compaction (store, compacted_through) VALUES (?1, ?2)
                 ON CONFLICT (store) DO UPDATE SET compacted_through = CASE
                     WHEN excluded.compacted_through > digest_compaction.compacted_through
                     THEN excluded.compacted_through
                     ELSE digest_compaction.compacted_through END",
                sql_params![store, through],
            )?;
            dropped += i64::try_from(n).unwrap_or(i64::MAX);
        }
        Ok(usize::try_from(dropped).unwrap_or(usize::MAX))
    })
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
    db: &dyn Sql,
    store: &str,
    after_version: u64,
    limit: usize,
) -> Result<FeedPage, StoreError> {
    let after = i64::try_from(after_version).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    transaction(db, TxKind::Read, |snapshot| {
        let mut page = FeedPage {
            compacted_through: compacted_through(snapshot, store)?,
            ..FeedPage::default()
        };
        snapshot.query_each(
            "SELECT version, card_key, digest FROM digest_feed
             WHERE store = ?1 AND version > ?2 ORDER BY version LIMIT ?3",
            sql_params![store, after, limit],
            &mut |row| {
                let version = row.get::<i64>(0)?.max(0) as u64;
                let key: Vec<u8> = row.get(1)?;
                let digest: Option<Vec<u8>> = row.get(2)?;
                page.last_version = Some(version);
                let Ok(key) = <[u8; 16]>::try_from(key.as_slice()) else {
                    tracing::warn!(
                        "digest feed {store} version {version}: card key of {} bytes skipped",
                        key.len()
                    );
                    return Ok(());
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
                Ok(())
            },
        )?;
        Ok(page)
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::test_support::for_each_engine;

    const MASTER: &[u8; 32] = b"0123456789abcdef0123456789abcdef";
    /// 2026-06-01T10:00:00Z
    const NOW_MS: i64 = 1_780_308_000_000;

    /// One store with one customer (a card, a visit yesterday).
    fn one_customer(db: &dyn Sql) {
        db.execute(
            "INSERT INTO agents (store, till, last_seq, last_seen_ms) VALUES ('S1', 'T1', 0, 0)",
            sql_params![],
        )
        .unwrap();
        db.execute(
            "INSERT INTO profiles (profile_id, created_at_ms, created_offset_min)
             VALUES ('p-anna', ?1, 60)",
            sql_params![NOW_MS],
        )
        .unwrap();
        db.execute(
            "INSERT INTO identifiers (kind, value, profile_id, source, added_at_ms)
             VALUES ('card', '4006381333931', 'p-anna', 'test', 0)",
            sql_params![],
        )
        .unwrap();
        db.execute(
            "INSERT INTO transactions (store, till, seq, at_ms, offset_min, card, profile_id,
                 total_cents, currency, lines)
             VALUES ('S1', 'T1', 1, ?1, 60, '4006381333931', 'p-anna', 1000, 'EUR', ?2)",
            sql_params![NOW_MS - 86_400_000, [0u8]],
        )
        .unwrap();
    }

    fn versions(db: &dyn Sql, store: &str) -> Vec<i64> {
        db.query(
            "SELECT version FROM digest_feed WHERE store = ?1 ORDER BY version",
            sql_params![store],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0).unwrap())
        .collect()
    }

    /// Another hub (or a compaction) commits a version of the store's feed while a
    /// refresh waits for the database: the refresh numbers after it, never reusing it.
    #[test]
    fn a_refresh_numbers_after_versions_another_writer_committed_meanwhile() {
        for_each_engine(|db| {
            let other = db.get().unwrap();
            one_customer(&*other);
            other.begin(TxKind::Write).unwrap();
            lock_feed(&*other, "S1").unwrap();
            let refresher = {
                let db = db.clone();
                std::thread::spawn(move || {
                    let conn = db.get().unwrap();
                    let now = Timestamp::from_unix_ms(NOW_MS, 0);
                    refresh_all(&*conn, MASTER, 12, now).unwrap()
                })
            };
            // The refresh has listed its page and waits for the feed.
            std::thread::sleep(Duration::from_millis(300));
            other
                .execute(
                    "INSERT INTO digest_feed (store, card_key, version, digest, removed_at_ms)
                     VALUES ('S1', ?1, 1, NULL, ?2)",
                    sql_params![[9u8; 16], NOW_MS],
                )
                .unwrap();
            other.commit().unwrap();
            let summary = refresher.join().unwrap();
            assert_eq!((summary.changed, summary.removed), (1, 0));
            assert_eq!(
                versions(&*other, "S1"),
                vec![1, 2],
                "no version given out twice"
            );
            assert_eq!(max_version(&*other, "S1").unwrap(), 2);
        });
    }

    #[test]
    fn the_facts_of_a_card_holder_come_from_the_profile_tables() {
        for_each_engine(|db| {
            let conn = db.get().unwrap();
            one_customer(&*conn);
            let card = CardNumber::parse("4006381333931").unwrap();
            let now = Timestamp::from_unix_ms(NOW_MS, 0);
            assert_eq!(
                profile_of_card(&*conn, &card).unwrap().as_deref(),
                Some("p-anna")
            );
            assert_eq!(
                standing_at_store(&*conn, &card, "S1", NOW_MS - 2 * 86_400_000).unwrap(),
                Some((false, true))
            );
            assert_eq!(
                standing_at_store(&*conn, &card, "S2", 0).unwrap(),
                Some((false, false))
            );
            let facts = profile_facts(&*conn, "p-anna", now).unwrap().unwrap();
            assert_eq!(
                facts.last_visit,
                Some(Timestamp::from_unix_ms(NOW_MS - 86_400_000, 60))
            );
            assert_eq!(facts.first_seen, Timestamp::from_unix_ms(NOW_MS, 60));
            assert_eq!(cards_of(&*conn, "p-anna").unwrap(), vec![card.clone()]);
            // A flagged card gives nothing away.
            conn.execute(
                "INSERT INTO suspicious_cards (card, flagged_at_ms, findings)
                 VALUES ('4006381333931', 0, '[]')",
                sql_params![],
            )
            .unwrap();
            assert_eq!(profile_of_card(&*conn, &card).unwrap(), None);
            assert_eq!(
                standing_at_store(&*conn, &card, "S1", 0).unwrap(),
                Some((true, true))
            );
            assert!(cards_of(&*conn, "p-anna").unwrap().is_empty());
            assert_eq!(digest_of_card(&*conn, MASTER, &card, now).unwrap(), None);
        });
    }
}
