//! The customer digest cache.
//!
//! Digests are cached in `digests`, keyed by the card key (a keyed hash of the card:
//! the card number is never stored with a digest), with the feed's version in the meta
//! row, written in the same transaction as the delta that brings it.

use rusqlite::{params, TransactionBehavior};
use till360_shared::campaign::Digest;
use till360_shared::codec;
use till360_shared::coupon::CardKey;
use till360_shared::wire::DigestEntry;

use super::{sql_error, to_i64, Journal, JournalError};

impl Journal {
    /// The version of the hub's digest feed the cache holds (0: empty).
    pub fn digest_version(&self) -> Result<u64, JournalError> {
        self.meta_version("SELECT digest_version FROM journal_meta WHERE id = 1")
    }

    /// Applies a digest delta from the hub in ONE transaction: with `reset` the cache is
    /// emptied first; an entry with a digest stores it, one without deletes the card's;
    /// `up_to_version` is stored. Erasures need nothing here: digests are keyed by card
    /// key, not card, so [`Self::apply_erasures`] cannot find them; the hub turns an
    /// erased profile's digests into removals in this feed.
    pub fn apply_digests(
        &mut self,
        entries: &[DigestEntry],
        up_to_version: u64,
        reset: bool,
    ) -> Result<(), JournalError> {
        let path = self.path.display().to_string();
        let sql = sql_error(&path);
        let encoded = entries
            .iter()
            .map(|entry| {
                let blob = entry
                    .digest
                    .as_ref()
                    .map(codec::to_bytes)
                    .transpose()
                    .map_err(|e| JournalError::Encode {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                Ok((entry.card_key, blob))
            })
            .collect::<Result<Vec<_>, JournalError>>()?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        if reset {
            tx.execute("DELETE FROM digests", []).map_err(sql)?;
        }
        {
            let mut put = tx
                .prepare_cached("INSERT OR REPLACE INTO digests (card_key, digest) VALUES (?1, ?2)")
                .map_err(sql)?;
            let mut delete = tx
                .prepare_cached("DELETE FROM digests WHERE card_key = ?1")
                .map_err(sql)?;
            for (card_key, blob) in &encoded {
                match blob {
                    Some(blob) => put.execute(params![&card_key.0[..], blob]),
                    None => delete.execute(params![&card_key.0[..]]),
                }
                .map_err(sql)?;
            }
        }
        tx.execute(
            "UPDATE journal_meta SET digest_version = ?1 WHERE id = 1",
            params![to_i64(up_to_version)],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(())
    }

    /// Stores (or, with `None`, deletes) one card's digest as the hub answered it at a
    /// scan. The feed's version is left alone: the next delta may repeat this entry.
    pub fn put_digest(
        &mut self,
        card_key: &CardKey,
        digest: Option<&Digest>,
    ) -> Result<(), JournalError> {
        match digest {
            Some(digest) => {
                let blob = codec::to_bytes(digest).map_err(|e| JournalError::Encode {
                    path: self.path.display().to_string(),
                    reason: e.to_string(),
                })?;
                self.conn.execute(
                    "INSERT OR REPLACE INTO digests (card_key, digest) VALUES (?1, ?2)",
                    params![&card_key.0[..], blob],
                )
            }
            None => self.conn.execute(
                "DELETE FROM digests WHERE card_key = ?1",
                params![&card_key.0[..]],
            ),
        }
        .map_err(|e| self.sql_err(e))?;
        Ok(())
    }

    /// The whole digest cache, for the till core to load at start. A row that cannot
    /// be read is skipped with a warning: one bad digest must not cost every coupon.
    pub fn digests(&self) -> Result<Vec<(CardKey, Digest)>, JournalError> {
        let mut stmt = self
            .conn
            .prepare("SELECT card_key, digest FROM digests")
            .map_err(|e| self.sql_err(e))?;
        let mut rows = stmt.query([]).map_err(|e| self.sql_err(e))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| self.sql_err(e))? {
            let (key_blob, digest_blob): (Vec<u8>, Vec<u8>) = match (row.get(0), row.get(1)) {
                (Ok(k), Ok(d)) => (k, d),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!("journal {}: digest row skipped: {e}", self.path.display());
                    continue;
                }
            };
            let Ok(key) = <[u8; 16]>::try_from(key_blob.as_slice()) else {
                tracing::warn!(
                    "journal {}: digest row skipped: card key of {} bytes, not 16",
                    self.path.display(),
                    key_blob.len()
                );
                continue;
            };
            match codec::from_bytes::<Digest>(&digest_blob) {
                Ok(digest) => out.push((CardKey(key), digest)),
                Err(e) => tracing::warn!(
                    "journal {}: digest of {:?} skipped: {e}",
                    self.path.display(),
                    CardKey(key)
                ),
            }
        }
        Ok(out)
    }
}
