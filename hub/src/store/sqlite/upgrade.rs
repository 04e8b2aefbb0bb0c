//! SQLite files of hubs older than schema 7 (before PostgreSQL): the schema they grow
//! into and the columns each older version lacks. From 7 on, both engines share the one
//! history of `store/migrations.rs`.

use rusqlite::{params, Connection};

use crate::store::{coupon_ledger, StoreError};

/// Bumped when the schema changes incompatibly. 4: the journal hash chain
/// (`agents.chain_hash`, `chain_breaks`); 6: digest feed compaction
/// (`digest_feed.removed_at_ms`, `digest_compaction`); 7: `agent_alerts`,
/// `traits_runs`, `change_counters`, the coupon ledger's commit order and
/// redeemed-codes feed (`redemptions.commit_seq`, `issuer_store`, `expires`), the
/// tills' clocks (`agent_clocks`), receipt checks (`transactions.unbalanced`,
/// `agent_health.unbalanced_receipts` and `unrecognised_scans`) and the erasure log
/// without clear cards (`erasure_card_keys`, `suppressed_identifiers`; see
/// `store/erasures.rs`) and suspicious cards
/// (`suspicious_cards`, `transactions_card`).
const SCHEMA_VERSION: i64 = 7;

/// The schema (also used by the ingest benchmark's raw-insert baseline).
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS agents (
    store TEXT NOT NULL,
    till TEXT NOT NULL,
    last_seq INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    -- The journal hash chain's link at last_seq (NULL: unknown, see store/chain.rs).
    chain_hash BLOB,
    PRIMARY KEY (store, till)
);
-- Chain claims of agents that differed from the hub's own link (a journal edited on
-- the till): seq is the claim's.
CREATE TABLE IF NOT EXISTS chain_breaks (
    store TEXT NOT NULL,
    till TEXT NOT NULL,
    seq INTEGER NOT NULL,
    detected_at_ms INTEGER NOT NULL,
    hub_hash BLOB NOT NULL,
    claimed_hash BLOB NOT NULL,
    PRIMARY KEY (store, till, seq)
);
CREATE TABLE IF NOT EXISTS events (
    store TEXT NOT NULL,
    till TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    recorded_at_ms INTEGER NOT NULL,
    offset_min INTEGER NOT NULL,
    payload BLOB NOT NULL,
    PRIMARY KEY (store, till, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS profiles (
    profile_id TEXT PRIMARY KEY,
    created_at_ms INTEGER NOT NULL,
    created_offset_min INTEGER NOT NULL,
    customer_no TEXT,
    first_name TEXT,
    last_name TEXT,
    birth_date TEXT,
    postal_code TEXT,
    language TEXT,
    member_since TEXT,
    points INTEGER,
    updated_at_ms INTEGER
);
CREATE INDEX IF NOT EXISTS profiles_first_name ON profiles(first_name COLLATE NOCASE);
CREATE INDEX IF NOT EXISTS profiles_last_name ON profiles(last_name COLLATE NOCASE);
CREATE TABLE IF NOT EXISTS identifiers (
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    profile_id TEXT NOT NULL REFERENCES profiles(profile_id),
    source TEXT NOT NULL,
    added_at_ms INTEGER NOT NULL,
    PRIMARY KEY (kind, value)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS identifiers_profile ON identifiers(profile_id);
CREATE TABLE IF NOT EXISTS blocked_identifiers (
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    customers INTEGER NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (kind, value)
);
CREATE TABLE IF NOT EXISTS identity_links (
    row_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (row_key, kind, value)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS identity_links_identifier ON identity_links(kind, value);
CREATE TABLE IF NOT EXISTS consents (
    profile_id TEXT NOT NULL REFERENCES profiles(profile_id),
    purpose TEXT NOT NULL,
    granted INTEGER NOT NULL,
    source TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (profile_id, purpose)
);
CREATE TABLE IF NOT EXISTS orders (
    order_id TEXT PRIMARY KEY,
    profile_id TEXT REFERENCES profiles(profile_id),
    ordered_at_ms INTEGER NOT NULL,
    offset_min INTEGER NOT NULL,
    channel TEXT NOT NULL,
    total_cents INTEGER NOT NULL,
    currency TEXT NOT NULL,
    lines TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_profile ON orders(profile_id);
CREATE TABLE IF NOT EXISTS products (
    sku TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    category TEXT NOT NULL,
    sensitive INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS products_description ON products(description COLLATE NOCASE);
CREATE TABLE IF NOT EXISTS profile_traits (
    profile_id TEXT PRIMARY KEY,
    as_of_ms INTEGER NOT NULL,
    traits TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS segment_members (
    segment_id TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    PRIMARY KEY (segment_id, profile_id)
);
CREATE INDEX IF NOT EXISTS segment_members_profile ON segment_members(profile_id);
-- When traits and segments were last computed (store/freshness.rs).
CREATE TABLE IF NOT EXISTS traits_runs (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    computed_at_ms INTEGER NOT NULL
);
-- Bumped by every import that changed something: the running hub polls it.
CREATE TABLE IF NOT EXISTS change_counters (
    name TEXT PRIMARY KEY,
    counter INTEGER NOT NULL
);
-- Per-till counts for `agents` (`suppressed_events`: events merged without an erased card).
CREATE TABLE IF NOT EXISTS agent_counters (
    store TEXT NOT NULL,
    till TEXT NOT NULL,
    name TEXT NOT NULL,
    counter INTEGER NOT NULL,
    PRIMARY KEY (store, till, name)
);
CREATE TABLE IF NOT EXISTS transactions (
    store TEXT NOT NULL,
    till TEXT NOT NULL,
    seq INTEGER NOT NULL,
    receipt_no TEXT,
    at_ms INTEGER NOT NULL,
    offset_min INTEGER NOT NULL,
    printed_at_ms INTEGER,
    printed_offset_min INTEGER,
    card TEXT,
    profile_id TEXT REFERENCES profiles(profile_id),
    total_cents INTEGER NOT NULL,
    currency TEXT NOT NULL,
    lines BLOB NOT NULL,
    -- 1: the till's lines and total disagree (a layout misread): no traits, no digests.
    unbalanced INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (store, till, seq)
);
CREATE INDEX IF NOT EXISTS transactions_profile ON transactions(profile_id);
CREATE INDEX IF NOT EXISTS profiles_created ON profiles(created_at_ms);
-- The erasure log (see store/erasures.rs): no identifier in clear. A database of an
-- older hub still has erasures.card until the store gets the master secret.
CREATE TABLE IF NOT EXISTS erasures (
    version INTEGER PRIMARY KEY AUTOINCREMENT,
    erased_at_ms INTEGER NOT NULL
);
-- Per erasure, its cards as the card keys of every store known at erase time.
CREATE TABLE IF NOT EXISTS erasure_card_keys (
    version INTEGER NOT NULL,
    store TEXT NOT NULL,
    card_key BLOB NOT NULL,
    PRIMARY KEY (store, version, card_key)
) WITHOUT ROWID;
-- Identifiers of erased people as keyed hashes: evidence dated at or before
-- erased_at_ms that names one is not merged.
CREATE TABLE IF NOT EXISTS suppressed_identifiers (
    kind TEXT NOT NULL,
    hash BLOB NOT NULL,
    erased_at_ms INTEGER NOT NULL,
    PRIMARY KEY (kind, hash)
) WITHOUT ROWID;
-- Coupon codes carry compact numbers for tills and campaigns, assigned once, never reused.
CREATE TABLE IF NOT EXISTS till_numbers (
    number INTEGER PRIMARY KEY,
    store TEXT NOT NULL,
    till TEXT NOT NULL,
    UNIQUE (store, till)
);
CREATE TABLE IF NOT EXISTS campaign_numbers (
    number INTEGER PRIMARY KEY,
    campaign_id TEXT NOT NULL UNIQUE
);
-- Coupons decided at tills: printed (control = 0, code set) and would-haves (control = 1).
CREATE TABLE IF NOT EXISTS coupons (
    store TEXT NOT NULL,
    till TEXT NOT NULL,
    seq INTEGER NOT NULL,
    campaign_id TEXT NOT NULL,
    control INTEGER NOT NULL,
    code TEXT,
    card TEXT,
    profile_id TEXT,
    customer_key TEXT,
    issued_at_ms INTEGER NOT NULL,
    offset_min INTEGER NOT NULL,
    expires TEXT NOT NULL,
    receipt_seq INTEGER NOT NULL,
    PRIMARY KEY (store, till, seq)
);
CREATE INDEX IF NOT EXISTS coupons_campaign ON coupons(campaign_id, control);
CREATE INDEX IF NOT EXISTS coupons_profile ON coupons(profile_id);
CREATE INDEX IF NOT EXISTS coupons_code ON coupons(code);
CREATE INDEX IF NOT EXISTS coupons_card ON coupons(card);
-- Coupon codes scanned at tills: accepted ones (status genuine or forged, as the hub's
-- check of the signature says; unchecked without a master secret) and ones the till
-- refused (status refused). campaign_id: the checked campaign of a genuine code, the
-- one its number claims otherwise. Which scan is THE redemption is decided when read.
CREATE TABLE IF NOT EXISTS redemptions (
    store TEXT NOT NULL,
    till TEXT NOT NULL,
    seq INTEGER NOT NULL,
    code TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    offset_min INTEGER NOT NULL,
    receipt_seq INTEGER,
    verified TEXT,
    status TEXT NOT NULL,
    reason TEXT,
    campaign_id TEXT,
    -- The hub's commit order (THE redemption of a code is its first committed genuine
    -- scan), the store whose till issued the code and its expiry: see coupons/ledger.rs.
    -- Added by an upgrade on older databases, which also creates their index.
    commit_seq INTEGER,
    issuer_store TEXT,
    expires TEXT,
    PRIMARY KEY (store, till, seq)
);
CREATE INDEX IF NOT EXISTS redemptions_code ON redemptions(code);
-- The last refused batch of an agent (kind 'refusal') and the last sign of a cloned
-- certificate (kind 'certificate': two live connections, or an old epoch), for `agents`.
CREATE TABLE IF NOT EXISTS agent_alerts (
    store TEXT NOT NULL,
    till TEXT NOT NULL,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (store, till, kind)
);
-- Each till's clock as it last reported it (`TillClock`): skew_ms = till - hub.
CREATE TABLE IF NOT EXISTS agent_clocks (
    store TEXT NOT NULL,
    till TEXT NOT NULL,
    skew_ms INTEGER NOT NULL,
    max_skew_ms INTEGER NOT NULL,
    reported_at_ms INTEGER NOT NULL,
    PRIMARY KEY (store, till)
);
-- The last health report of each till (journal size, quota alarm, quarantined rows).
CREATE TABLE IF NOT EXISTS agent_health (
    store TEXT NOT NULL,
    till TEXT NOT NULL,
    journal_bytes INTEGER NOT NULL,
    journal_max_bytes INTEGER NOT NULL,
    quota_exceeded INTEGER NOT NULL,
    quarantined INTEGER NOT NULL,
    pending INTEGER NOT NULL,
    reported_at_ms INTEGER NOT NULL,
    unbalanced_receipts INTEGER NOT NULL DEFAULT 0,
    unrecognised_scans INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (store, till)
);
-- Profile digests per store as last pushed (digest NULL: removed), versioned per store.
-- removed_at_ms: when the row became a removal (NULL for a digest, or a removal written
-- before schema 6); compaction drops removals older than `[digests]
-- removal_retention_days`.
CREATE TABLE IF NOT EXISTS digest_feed (
    store TEXT NOT NULL,
    card_key BLOB NOT NULL,
    version INTEGER NOT NULL,
    digest BLOB,
    removed_at_ms INTEGER,
    PRIMARY KEY (store, card_key)
);
CREATE INDEX IF NOT EXISTS digest_feed_version ON digest_feed(store, version);
CREATE INDEX IF NOT EXISTS digest_feed_removals ON digest_feed(store, version)
    WHERE digest IS NULL;
-- Per store: removal rows at or below this version may have been dropped, so an agent
-- holding an older version starts over from an empty cache (see digests/feed.rs).
CREATE TABLE IF NOT EXISTS digest_compaction (
    store TEXT PRIMARY KEY,
    compacted_through INTEGER NOT NULL
);
-- Cards flagged by the fraud rules (store/suspicious.rs): findings as JSON; cleared_at_ms
-- NULL while flagged; findings whose receipts are all at or before cleared_through_ms
-- were cleared by a marketer.
CREATE TABLE IF NOT EXISTS suspicious_cards (
    card TEXT PRIMARY KEY,
    flagged_at_ms INTEGER NOT NULL,
    findings TEXT NOT NULL,
    cleared_at_ms INTEGER,
    cleared_through_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS transactions_card ON transactions(card, at_ms);
";

/// Schema 7 on a database of an older hub: receipts that did not balance are marked
/// (older rows count as balanced) and health reports gain the pilot's counters.
fn upgrade_receipt_checks(conn: &Connection) -> Result<(), StoreError> {
    for (table, column) in [
        ("transactions", "unbalanced"),
        ("agent_health", "unbalanced_receipts"),
        ("agent_health", "unrecognised_scans"),
    ] {
        let has_column: bool = conn
            .prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")?
            .exists(params![table, column])?;
        if !has_column {
            conn.execute_batch(&format!(
                "ALTER TABLE {table} ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0;"
            ))?;
        }
    }
    Ok(())
}

/// Schema 6 on a database of an older hub: `digest_feed` gains `removed_at_ms`. Its
/// removals keep NULL there: compaction starts their retention when it first sees them.
fn upgrade_digest_feed(conn: &Connection) -> Result<(), StoreError> {
    let has_column: bool = conn
        .prepare("SELECT 1 FROM pragma_table_info('digest_feed') WHERE name = 'removed_at_ms'")?
        .exists([])?;
    if !has_column {
        conn.execute_batch("ALTER TABLE digest_feed ADD COLUMN removed_at_ms INTEGER;")?;
    }
    Ok(())
}

/// Columns and tables added by schema 4 to a database of an older hub.
fn upgrade_chain(conn: &Connection) -> Result<(), StoreError> {
    let has_chain: bool = conn
        .prepare("SELECT 1 FROM pragma_table_info('agents') WHERE name = 'chain_hash'")?
        .exists([])?;
    if !has_chain {
        // An agent that never sent anything starts at GENESIS; the others are unknown.
        conn.execute_batch(
            "ALTER TABLE agents ADD COLUMN chain_hash BLOB;
             UPDATE agents SET chain_hash = zeroblob(32) WHERE last_seq = 0;",
        )?;
    }
    Ok(())
}

/// Schema 7 on an older database: `redemptions` gains `commit_seq` (existing rows keep
/// their insertion order, the rowid), `issuer_store` and `expires` (filled from each
/// code). Idempotent.
fn upgrade_ledger(conn: &Connection) -> Result<(), StoreError> {
    for (column, kind) in [
        ("commit_seq", "INTEGER"),
        ("issuer_store", "TEXT"),
        ("expires", "TEXT"),
    ] {
        let has: bool = conn
            .prepare("SELECT 1 FROM pragma_table_info('redemptions') WHERE name = ?1")?
            .exists([column])?;
        if !has {
            conn.execute_batch(&format!(
                "ALTER TABLE redemptions ADD COLUMN {column} {kind};"
            ))?;
        }
    }
    conn.execute_batch(
        "UPDATE redemptions SET commit_seq = rowid WHERE commit_seq IS NULL;
         CREATE UNIQUE INDEX IF NOT EXISTS redemptions_commit ON redemptions(commit_seq);",
    )?;
    let unfilled = conn
        .prepare("SELECT rowid, code FROM redemptions WHERE expires IS NULL")?
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    for (rowid, code) in unfilled {
        if let Some((store, expires)) = coupon_ledger::issuer_of(conn, &code)? {
            conn.execute(
                "UPDATE redemptions SET issuer_store = ?1, expires = ?2 WHERE rowid = ?3",
                params![store, expires, rowid],
            )?;
        }
    }
    Ok(())
}

/// Brings a SQLite file of a hub older than schema 7 to 7 (`Database::open` calls it
/// before the shared history of `store/migrations.rs` goes on from there): every
/// statement of [`SCHEMA`] is `IF NOT EXISTS`, so an older file gains the new tables,
/// then the columns each version added. A file at 7 or newer is left alone (one newer
/// than this hub is refused by the caller).
pub(crate) fn upgrade_to_7(conn: &Connection) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version >= SCHEMA_VERSION {
        return Ok(());
    }
    conn.execute_batch(&format!("BEGIN IMMEDIATE; {SCHEMA}"))?;
    let upgraded = upgrade_chain(conn)
        .and_then(|()| upgrade_digest_feed(conn))
        .and_then(|()| upgrade_ledger(conn))
        .and_then(|()| upgrade_receipt_checks(conn))
        .and_then(|()| {
            Ok(conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"))?)
        });
    if let Err(e) = upgraded {
        let _ = conn.execute_batch("ROLLBACK;");
        return Err(e);
    }
    Ok(())
}

/// Files of older hubs, upgraded when the hub opens them (`Database::open`).
#[cfg(test)]
mod tests {
    use std::path::Path;

    use rusqlite::Connection;
    use till360_shared::AgentId;

    use crate::config::DatabaseUrl;
    use crate::store::{migrations, Database, DatabaseOptions, SqlStore, Store};

    /// `path` opened as the hub opens it (upgrades and migrations run), and a raw
    /// connection to the file.
    fn open(path: &Path) -> (Database, Connection) {
        let options = DatabaseOptions::default();
        let db = Database::open(&DatabaseUrl::Sqlite(path.to_path_buf()), &options).unwrap();
        let conn = super::super::driver::open(path, options.timeout).unwrap();
        (db, conn)
    }

    fn user_version(conn: &Connection) -> i64 {
        conn.query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    }

    fn count(conn: &Connection, table: &str) -> i64 {
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    /// A database of schema 5 (before digest feed compaction) opens as 7: the feed keeps its
    /// rows and gains `removed_at_ms` (NULL: compaction stamps such removals when it first
    /// sees them) and the `digest_compaction` table.
    #[test]
    fn a_schema_5_database_gains_the_digest_feed_removal_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        {
            let (_db, conn) = open(&path);
            // Back to schema 5's shape.
            conn.execute_batch(migrations::tests::UNDO_10).unwrap();
            conn.execute_batch(
                "DROP INDEX digest_feed_removals;
                     DROP TABLE digest_compaction;
                     ALTER TABLE digest_feed DROP COLUMN removed_at_ms;
                     INSERT INTO digest_feed (store, card_key, version, digest)
                         VALUES ('S1', x'01', 1, x'00'), ('S1', x'02', 2, NULL);
                     PRAGMA user_version = 5;",
            )
            .unwrap();
        }
        let (db, conn) = open(&path);
        assert_eq!(user_version(&conn), migrations::LATEST);
        let rows: Vec<(i64, Option<Vec<u8>>, Option<i64>)> = conn
            .prepare("SELECT version, digest, removed_at_ms FROM digest_feed ORDER BY version")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows, vec![(1, Some(vec![0]), None), (2, None, None)]);
        assert_eq!(count(&conn, "digest_compaction"), 0);
        drop((db, conn));
        // Opening again is a no-op.
        let (_db, conn) = open(&path);
        assert_eq!(count(&conn, "digest_feed"), 2);
    }

    #[test]
    fn a_schema_6_database_gains_the_coupon_ledgers_commit_order() {
        use till360_shared::coupon::{derive_till_key, mint, CouponFields};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        let code = {
            let (_db, conn) = open(&path);
            let till =
                crate::store::numbering::till_number(&conn, &AgentId::new("S1", "T1")).unwrap();
            let expires = chrono::NaiveDate::from_ymd_opt(2026, 12, 31).unwrap();
            let fields = CouponFields::new(1, till, expires, 1).unwrap();
            let code = mint(&derive_till_key(&[7; 32], "S1", "T1"), &fields);
            // Back to schema 6's shape, with two scans in insertion order.
            conn.execute_batch(migrations::tests::UNDO_10).unwrap();
            conn.execute_batch(&format!(
                "DROP INDEX IF EXISTS redemptions_commit;
                 ALTER TABLE redemptions DROP COLUMN commit_seq;
                 ALTER TABLE redemptions DROP COLUMN issuer_store;
                 ALTER TABLE redemptions DROP COLUMN expires;
                 INSERT INTO redemptions (store, till, seq, code, at_ms, offset_min, status)
                     VALUES ('S2', 'T1', 9, '{code}', 50, 0, 'genuine'),
                            ('S1', 'T1', 3, 'misread', 10, 0, 'refused');
                 PRAGMA user_version = 6;",
                code = code.as_str()
            ))
            .unwrap();
            code.as_str().to_string()
        };
        for _ in 0..2 {
            // The second open is a no-op.
            let (_db, conn) = open(&path);
            let rows: Vec<(String, i64, Option<String>, Option<String>)> = conn
                .prepare("SELECT code, commit_seq, issuer_store, expires FROM redemptions ORDER BY commit_seq")
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(
                rows,
                vec![
                    (
                        code.clone(),
                        1,
                        Some("S1".into()),
                        Some("2026-12-31".into())
                    ),
                    ("misread".into(), 2, None, None),
                ]
            );
        }
    }

    /// A database of schema 6 kept erased cards in clear in `erasures.card`. Opened as 7
    /// and given the master secret, each becomes a suppression hash and the card keys of
    /// the known stores; the clear column is gone (and its bytes with it); a till event
    /// from before the erase still merges without the card.
    #[test]
    fn a_schema_6_erasure_log_loses_its_clear_cards() {
        use crate::identity::Identifier;
        use crate::store::erasures::{erasures_since, suppressed_since, Suppression};
        use crate::store::IngestRequest;
        use till360_shared::{CardNumber, Event, EventKind, Timestamp};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        let card = CardNumber::parse("4006381333931").unwrap();
        {
            let (_db, conn) = open(&path);
            // Back to schema 6's erasure log.
            conn.execute_batch(migrations::tests::UNDO_10).unwrap();
            conn.execute_batch(
                    "DROP TABLE erasures;
                     CREATE TABLE erasures (
                         version INTEGER PRIMARY KEY AUTOINCREMENT,
                         card TEXT NOT NULL,
                         erased_at_ms INTEGER NOT NULL);
                     CREATE INDEX erasures_card ON erasures(card);
                     INSERT INTO erasures (card, erased_at_ms) VALUES ('4006381333931', 5000);
                     INSERT INTO agents (store, till, last_seq, last_seen_ms) VALUES ('S1', 'T1', 0, 0);
                     PRAGMA user_version = 6;",
                )
                .unwrap();
        }
        let master = [9u8; 32];
        let (db, conn) = open(&path);
        let mut store = SqlStore::open(&db).unwrap();
        store.set_coupon_master(&master).unwrap();
        let suppression = Suppression::from_master(&master);
        assert_eq!(
            erasures_since(&conn, "S1", 0, 10).unwrap(),
            vec![(1, vec![suppression.card_key("S1", &card)])]
        );
        assert_eq!(
            suppressed_since(&conn, &suppression, &Identifier::card(&card)).unwrap(),
            Some(5000)
        );
        let clear: i64 = conn
            .query_row(
                "SELECT count(*) FROM pragma_table_info('erasures') WHERE name = 'card'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(clear, 0);
        let agent = AgentId::new("S1", "T2");
        let scan = Event {
            agent: agent.clone(),
            seq: 1,
            recorded_at: Timestamp::from_unix_ms(4000, 0),
            kind: EventKind::CardScanned { card: card.clone() },
        };
        let events = [scan];
        store
            .ingest(
                &[IngestRequest {
                    agent: &agent,
                    events: &events,
                }],
                Timestamp::from_unix_ms(6000, 0),
            )
            .unwrap();
        assert!(store.profile_by_card(&card).unwrap().is_none());
        drop((store, db, conn));
        // Nothing names the card any more, in any table.
        let bytes = std::fs::read(&path).unwrap();
        let wal = std::fs::read(dir.path().join("hub.db-wal")).unwrap_or_default();
        for file in [&bytes, &wal] {
            assert!(!file.windows(13).any(|w| w == card.as_str().as_bytes()));
        }
    }

    /// A database of schema 6 (before suspicious cards) opens with `suspicious_cards`, and
    /// with the transactions' indexes of schema 10 (the card index of 7 made, then replaced).
    #[test]
    fn a_schema_6_database_gains_suspicious_cards() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        {
            let (_db, conn) = open(&path);
            conn.execute_batch(migrations::tests::UNDO_10).unwrap();
            conn.execute_batch(
                "DROP TABLE suspicious_cards; DROP INDEX transactions_card;
                     PRAGMA user_version = 6;",
            )
            .unwrap();
        }
        let (_db, conn) = open(&path);
        assert_eq!(user_version(&conn), migrations::LATEST);
        assert_eq!(count(&conn, "suspicious_cards"), 0);
        let indexes: Vec<String> = conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE tbl_name = 'transactions'
                 AND type = 'index' AND name NOT LIKE 'sqlite_%' ORDER BY name",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            indexes,
            ["transactions_profile_at", "transactions_unlinked_card"]
        );
    }
}
