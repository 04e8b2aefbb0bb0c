//! The erasure log and the suppression list. Neither holds an erased identifier in
//! clear (issue 10 item 4):
//!
//! - `erasures`: one version per erase, so each agent can be brought up to date after
//!   any reconnect ("an erase on the hub reaches every till", DESIGN.md principle 7);
//! - `erasure_card_keys`: per version, the erased cards as the card keys of every store
//!   the hub knew at erase time (`shared::coupon::derive_digest_key` is per store). A
//!   till gets its own store's keys and finds the cards it holds by computing their
//!   card keys; a till of another store learns nothing from them;
//! - `suppressed_identifiers`: every identifier of an erased person (card, customer
//!   number, e-mail, phone, online account) as an HMAC-SHA256 under a key derived from
//!   the coupon master secret (`data_dir/coupon-master.key`, with its own domain tag),
//!   with the time of the erase. Imports and till events dated at or before that time
//!   that name one of them are skipped (`suppressed_since`), so an old CRM file, an
//!   order feed or a replayed till event cannot bring the person back.

use ring::hmac;
use till360_shared::coupon::{derive_digest_key, CardKey};
use till360_shared::{CardNumber, Timestamp};

use super::sql::{transaction, Engine, Sql, SqlExt, TxKind};
use super::StoreError;
use crate::identity::{IdKind, Identifier};
use crate::sql_params;

const SUPPRESSION_KEY_TAG: &[u8] = b"till360/suppression-key/v1";

/// The key of the suppression list's keyed hashes, derived from the coupon master
/// secret. `Debug` never shows it.
#[derive(Clone)]
pub struct Suppression {
    key: hmac::Key,
    master: [u8; 32],
}

impl std::fmt::Debug for Suppression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Suppression(..)")
    }
}

impl Suppression {
    pub fn from_master(master: &[u8; 32]) -> Self {
        let derived = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, master),
            SUPPRESSION_KEY_TAG,
        );
        Suppression {
            key: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
            master: *master,
        }
    }

    /// The keyed hash of a normalised identifier (kind and value, length-prefixed).
    pub fn hash(&self, kind: IdKind, value: &str) -> Vec<u8> {
        let mut ctx = hmac::Context::with_key(&self.key);
        let kind = kind.as_str();
        ctx.update(&(kind.len() as u64).to_be_bytes());
        ctx.update(kind.as_bytes());
        ctx.update(value.as_bytes());
        ctx.sign().as_ref().to_vec()
    }

    /// The card key of `card` in `store`'s digests (what that store's tills hold).
    pub fn card_key(&self, store: &str, card: &CardNumber) -> CardKey {
        CardKey::of(&derive_digest_key(&self.master, store), card)
    }
}

/// Every store whose tills may hold a card: stores with agents (every transaction came
/// from one, and the digest feed is refreshed for exactly these) or with numbered tills
/// (a till that fetched its keyring but never sent an event).
pub fn known_stores(db: &dyn Sql) -> Result<Vec<String>, StoreError> {
    db.query(
        "SELECT store FROM agents UNION SELECT store FROM till_numbers
         UNION SELECT store FROM digest_compaction ORDER BY 1",
        sql_params![],
    )?
    .iter()
    .map(|r| r.get::<String>(0))
    .collect()
}

/// Appends an erasure (call it inside the transaction that erases the profile) and
/// returns its version: `identifiers` go on the suppression list, the cards among them
/// into the log as the card keys of `stores`. The version comes from the database in
/// this transaction (`erasures.version`), so two hubs never hand out the same one.
pub fn record_erasure(
    db: &dyn Sql,
    suppression: &Suppression,
    identifiers: &[Identifier],
    stores: &[String],
    now: Timestamp,
) -> Result<u64, StoreError> {
    // Versions commit in order across hubs (a till never skips one).
    super::downlink::lock_erasure_log(db)?;
    let version: i64 = db
        .query_one(
            "INSERT INTO erasures (erased_at_ms) VALUES (?1) RETURNING version",
            sql_params![now.unix_ms],
        )?
        .get(0)?;
    for id in identifiers {
        suppress(db, suppression, id.kind, &id.value, now.unix_ms)?;
        if id.kind != IdKind::Card {
            continue;
        }
        // Agents only hold valid cards: nothing to push for another value.
        let Ok(card) = CardNumber::parse(&id.value) else {
            continue;
        };
        record_card_keys(db, suppression, version, &card, stores)?;
    }
    Ok(version.max(0) as u64)
}

/// The erasure log's entry of `card` for each of `stores`: its card key there.
fn record_card_keys(
    db: &dyn Sql,
    suppression: &Suppression,
    version: i64,
    card: &CardNumber,
    stores: &[String],
) -> Result<(), StoreError> {
    for store in stores {
        db.execute(
            "INSERT INTO erasure_card_keys (version, store, card_key) VALUES (?1, ?2, ?3)
             ON CONFLICT (store, version, card_key) DO NOTHING",
            sql_params![version, store, suppression.card_key(store, card).0],
        )?;
    }
    Ok(())
}

fn suppress(
    db: &dyn Sql,
    suppression: &Suppression,
    kind: IdKind,
    value: &str,
    erased_at_ms: i64,
) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO suppressed_identifiers (kind, hash, erased_at_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (kind, hash) DO UPDATE SET erased_at_ms =
             CASE WHEN excluded.erased_at_ms > suppressed_identifiers.erased_at_ms
                  THEN excluded.erased_at_ms ELSE suppressed_identifiers.erased_at_ms END",
        sql_params![kind.as_str(), suppression.hash(kind, value), erased_at_ms],
    )?;
    Ok(())
}

/// Whether anyone was ever erased (the suppression list is not empty).
pub fn any_suppressed(db: &dyn Sql) -> Result<bool, StoreError> {
    db.exists(
        "SELECT 1 FROM suppressed_identifiers LIMIT 1",
        sql_params![],
    )
}

/// When `id` was last erased (unix ms), if it is on the suppression list. Evidence
/// dated at or before that time names the erased person and must not be merged.
pub fn suppressed_since(
    db: &dyn Sql,
    suppression: &Suppression,
    id: &Identifier,
) -> Result<Option<i64>, StoreError> {
    db.query_value(
        "SELECT erased_at_ms FROM suppressed_identifiers WHERE kind = ?1 AND hash = ?2",
        sql_params![id.kind.as_str(), suppression.hash(id.kind, &id.value)],
    )
}

/// The newest erasure version (0 when nothing was ever erased).
pub fn erasure_version(db: &dyn Sql) -> Result<u64, StoreError> {
    let v: i64 = db
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM erasures",
            sql_params![],
        )?
        .get(0)?;
    Ok(v.max(0) as u64)
}

/// Erasures after `after_version`, oldest first, at most `limit` versions, each with
/// the card keys of `store` (none when the person had no card, or the store was not
/// known at erase time).
pub fn erasures_since(
    db: &dyn Sql,
    store: &str,
    after_version: u64,
    limit: usize,
) -> Result<Vec<(u64, Vec<CardKey>)>, StoreError> {
    let after = i64::try_from(after_version).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut out: Vec<(u64, Vec<CardKey>)> = Vec::new();
    db.query_each(
        "SELECT e.version, k.card_key
         FROM (SELECT version FROM erasures WHERE version > ?1 ORDER BY version LIMIT ?2) e
         LEFT JOIN erasure_card_keys k ON k.version = e.version AND k.store = ?3
         ORDER BY e.version",
        sql_params![after, limit, store],
        &mut |r| {
            let version = r.get::<i64>(0)?.max(0) as u64;
            let key: Option<Vec<u8>> = r.get(1)?;
            if out.last().is_none_or(|(v, _)| *v != version) {
                out.push((version, Vec::new()));
            }
            let Some(key) = key else { return Ok(()) };
            let key = <[u8; 16]>::try_from(key.as_slice()).map_err(|_| {
                StoreError::Corrupt(format!(
                    "erasure {version}: card key of {} bytes",
                    key.len()
                ))
            })?;
            if let Some((_, keys)) = out.last_mut() {
                keys.push(CardKey(key));
            }
            Ok(())
        },
    )?;
    Ok(out)
}

/// Schema 7 on a SQLite database of an older hub: the erasure log kept cards in clear.
/// Each such row is hashed onto the suppression list and turned into card keys (needs
/// the master secret, so it runs when the store gets it), then the clear column is
/// dropped (with `secure_delete` on, its bytes are overwritten). Returns the rows
/// converted. A PostgreSQL database never had that column.
pub fn hash_clear_erasures(db: &dyn Sql, suppression: &Suppression) -> Result<usize, StoreError> {
    if db.engine() != Engine::Sqlite {
        return Ok(0);
    }
    let has_card = db.exists(
        "SELECT 1 FROM pragma_table_info('erasures') WHERE name = 'card'",
        sql_params![],
    )?;
    if !has_card {
        return Ok(0);
    }
    transaction(db, TxKind::Write, |db| {
        let stores = known_stores(db)?;
        let rows = db.query(
            "SELECT version, card, erased_at_ms FROM erasures WHERE card IS NOT NULL",
            sql_params![],
        )?;
        for r in &rows {
            let (version, card, erased_at_ms): (i64, String, i64) =
                (r.get(0)?, r.get(1)?, r.get(2)?);
            suppress(db, suppression, IdKind::Card, &card, erased_at_ms)?;
            if let Ok(card) = CardNumber::parse(&card) {
                record_card_keys(db, suppression, version, &card, &stores)?;
            }
        }
        db.batch(
            "DROP INDEX IF EXISTS erasures_card;
             ALTER TABLE erasures DROP COLUMN card;",
        )?;
        Ok(rows.len())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::for_each_engine;

    fn card(code: &str) -> Identifier {
        Identifier::card(&CardNumber::parse(code).unwrap())
    }

    #[test]
    fn versions_grow_and_carry_each_stores_card_keys_only() {
        for_each_engine(|db| {
            let conn = db.get().unwrap();
            let conn: &dyn Sql = &*conn;
            let s = Suppression::from_master(&[3; 32]);
            assert_eq!(erasure_version(conn).unwrap(), 0);
            let a = CardNumber::parse("4006381333931").unwrap();
            let stores = vec!["S1".to_string(), "S2".to_string()];
            let now = Timestamp::from_unix_ms(1, 0);
            let email = Identifier {
                kind: IdKind::Email,
                value: "a@example.com".into(),
            };
            // An erase appends in its own transaction (PostgreSQL locks the log in it).
            let append = |ids: &[Identifier]| {
                transaction(conn, TxKind::Write, |db| {
                    record_erasure(db, &s, ids, &stores, now)
                })
                .unwrap()
            };
            assert_eq!(append(&[card("4006381333931"), email.clone()]), 1);
            assert_eq!(append(&[]), 2);
            assert_eq!(erasure_version(conn).unwrap(), 2);
            let s1 = erasures_since(conn, "S1", 0, 10).unwrap();
            assert_eq!(s1, vec![(1, vec![s.card_key("S1", &a)]), (2, vec![])]);
            let s2 = erasures_since(conn, "S2", 0, 10).unwrap();
            assert_ne!(s1[0].1, s2[0].1, "per store");
            assert_eq!(
                erasures_since(conn, "S1", 1, 10).unwrap(),
                vec![(2, vec![])]
            );
            assert!(erasures_since(conn, "S1", 2, 10).unwrap().is_empty());
            assert_eq!(erasures_since(conn, "S9", 0, 1).unwrap(), vec![(1, vec![])]);
            assert_eq!(suppressed_since(conn, &s, &email).unwrap(), Some(1));
            let other = Identifier {
                kind: IdKind::Email,
                value: "b@example.com".into(),
            };
            assert_eq!(suppressed_since(conn, &s, &other).unwrap(), None);
            // Nothing in clear.
            let hashes = conn
                .query("SELECT hash FROM suppressed_identifiers", sql_params![])
                .unwrap();
            assert_eq!(hashes.len(), 2);
            for row in hashes {
                let hash: Vec<u8> = row.get(0).unwrap();
                for clear in [&b"4006381333931"[..], b"a@example.com"] {
                    assert!(!hash.windows(clear.len()).any(|w| w == clear));
                }
            }
        });
    }
}
