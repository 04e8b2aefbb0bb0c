//! The hub's erasures, applied to this till's unacknowledged events.
//!
//! Erasures ([`Journal::apply_erasures`]) pseudonymise the unacknowledged events of
//! erased cards in place (a seq is never lost), re-link the chain from the first
//! rewritten row, remove those cards' cached digests, scrub the quarantine and record
//! the erasure version in the meta row, all in the same transaction: after a crash both
//! or neither are there.

use std::collections::HashSet;

use rusqlite::{params, TransactionBehavior};
use till360_shared::codec;
use till360_shared::coupon::CardKey;
use till360_shared::{CardNumber, EventKind};

use super::{integrity, log_quarantined, sql_error, to_i64, to_u64, Journal, JournalError};

/// What [`Journal::apply_erasures`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ErasureOutcome {
    /// Unacknowledged events that carried an erased card and were pseudonymised.
    pub events_pseudonymised: usize,
    /// Cached digests of erased cards removed.
    pub digests_removed: usize,
    /// Quarantined rows whose bytes held an erased card (its digits are overwritten).
    pub quarantine_scrubbed: usize,
    /// The journal's erasure version afterwards.
    pub erasure_version: u64,
}

impl Journal {
    /// The newest hub erasure version applied to this journal (0 if none).
    pub fn erasure_version(&self) -> Result<u64, JournalError> {
        self.meta_version("SELECT erasure_version FROM journal_meta WHERE id = 1")
    }

    /// Applies erasures from the hub, which names the erased cards by their card keys
    /// in this store (never in clear): every unacknowledged event carrying a card whose
    /// key (`Keyring::card_key`) is among `card_keys` is pseudonymised in place (same
    /// seq; see `EventKind::forget_cards`), the chain re-linked from the first rewritten
    /// event (a row that cannot be read is quarantined on the way), the cached digests
    /// of those keys are removed, quarantined rows are scrubbed of those cards, and
    /// `up_to_version` is stored, in ONE transaction. A version at or below the stored
    /// one is a no-op (a resend after a lost `ErasuresApplied`). Acknowledged events are
    /// already deleted here; the hub erases its own copy.
    ///
    /// `None`: cards were named but the journal holds no keyring yet, so it cannot tell
    /// which cards they are; nothing is applied and the caller must not acknowledge
    /// (the hub sends them again on the next connection).
    pub fn apply_erasures(
        &mut self,
        card_keys: &[CardKey],
        up_to_version: u64,
    ) -> Result<Option<ErasureOutcome>, JournalError> {
        let path = self.path.display().to_string();
        let sql = sql_error(&path);
        let digest_key = if card_keys.is_empty() {
            None
        } else {
            // A stored set that cannot be read is no keyring either: the erasures wait
            // (they never fail the uplink over it).
            let keyring = self.campaigns().unwrap_or_else(|e| {
                tracing::warn!("{e}");
                None
            });
            match keyring {
                Some(state) => Some(state.keyring.digest_key),
                None if up_to_version <= self.erasure_version()? => None,
                None => return Ok(None),
            }
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let current: i64 = tx
            .query_row(
                "SELECT erasure_version FROM journal_meta WHERE id = 1",
                [],
                |r| r.get(0),
            )
            .map_err(sql)?;
        let current = to_u64(current);
        if up_to_version <= current {
            return Ok(Some(ErasureOutcome {
                erasure_version: current,
                ..ErasureOutcome::default()
            }));
        }
        let erased_keys: HashSet<&CardKey> = card_keys.iter().collect();
        let is_erased = |card: &CardNumber| {
            digest_key.is_some_and(|key| erased_keys.contains(&CardKey::of(&key, card)))
        };
        let mut outcome = ErasureOutcome {
            erasure_version: up_to_version,
            ..ErasureOutcome::default()
        };
        // The first row rewritten or found unreadable: the chain changes from there.
        let mut relink_from: Option<u64> = None;
        if digest_key.is_some() {
            // Every row still here is unacknowledged (an ack deletes).
            let mut select = tx
                .prepare("SELECT seq, payload FROM events ORDER BY seq")
                .map_err(sql)?;
            let mut rows = select.query([]).map_err(sql)?;
            let mut update = tx
                .prepare("UPDATE events SET kind = ?1, payload = ?2 WHERE seq = ?3")
                .map_err(sql)?;
            while let Some(row) = rows.next().map_err(sql)? {
                let seq: i64 = row.get(0).map_err(sql)?;
                let payload: Vec<u8> = row.get(1).map_err(sql)?;
                // An event that cannot be read holds no card anyone can read: the
                // re-link below quarantines it.
                let Ok(mut kind) = codec::from_bytes::<EventKind>(&payload) else {
                    relink_from.get_or_insert(to_u64(seq));
                    continue;
                };
                if kind.forget_cards(is_erased) {
                    relink_from.get_or_insert(to_u64(seq));
                    let payload = codec::to_bytes(&kind).map_err(|e| JournalError::Encode {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                    update
                        .execute(params![kind.name(), payload, seq])
                        .map_err(sql)?;
                    outcome.events_pseudonymised += 1;
                }
            }
            drop(rows);
            let mut remove = tx
                .prepare("DELETE FROM digests WHERE card_key = ?1")
                .map_err(sql)?;
            for key in card_keys {
                outcome.digests_removed += remove.execute([&key.0[..]]).map_err(sql)?;
            }
        }
        if let Some(first) = relink_from {
            let acked: i64 = tx
                .query_row("SELECT acked_seq FROM journal_meta WHERE id = 1", [], |r| {
                    r.get(0)
                })
                .map_err(sql)?;
            let quarantined =
                integrity::relink_from(&tx, &self.agent, first, to_u64(acked)).map_err(sql)?;
            log_quarantined(&path, &quarantined);
        }
        if digest_key.is_some() {
            outcome.quarantine_scrubbed =
                integrity::scrub_quarantine(&tx, &is_erased).map_err(sql)?;
        }
        tx.execute(
            "UPDATE journal_meta SET erasure_version = ?1 WHERE id = 1",
            params![to_i64(up_to_version)],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(Some(outcome))
    }
}
