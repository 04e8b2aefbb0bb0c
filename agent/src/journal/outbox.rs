//! The outbox proper: appending events, reading them back, acknowledging them.
//!
//! An event counts as recorded once [`Journal::append`] returns: the row is committed
//! in WAL mode with `synchronous=FULL`. `seq` is gapless per agent from 1; `last_seq` and
//! `acked_seq` live in the one-row meta table, so deleting acknowledged events never lets
//! a seq be handed out twice. Every row carries its link of the hash chain, and the head
//! moves with the row in the same transaction ([`super::integrity`]).

use rusqlite::{params, OptionalExtension, TransactionBehavior};
use till360_shared::chain::{self, ChainHash, GENESIS};
use till360_shared::codec;
use till360_shared::{Event, EventKind, Timestamp};

use super::coupons::insert_redeemed;
use super::space::{self, CHECKPOINT_EVERY};
use super::status::{bump_counter, UNBALANCED_RECEIPTS};
use super::{
    integrity, log_quarantined, meta_seqs, sql_error, to_i64, to_u64, Journal, JournalError,
};

impl Journal {
    /// Records an event with the next seq and its chain link; it is committed (fsynced)
    /// when this returns. A full disk (or page limit) is [`JournalError::Full`]: nothing
    /// was recorded and the journal stays usable once space is back.
    pub fn append(
        &mut self,
        recorded_at: Timestamp,
        kind: EventKind,
    ) -> Result<Event, JournalError> {
        let payload = codec::to_bytes(&kind).map_err(|e| JournalError::Encode {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        })?;
        let path = self.path.display().to_string();
        let sql = |source: rusqlite::Error| {
            if source.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
                JournalError::Full {
                    path: path.clone(),
                    source,
                }
            } else {
                sql_error(&path)(source)
            }
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        // Read inside the write transaction: the meta row, not this struct, is the truth.
        let (last, acked) = meta_seqs(&tx).map_err(sql)?;
        let head = match integrity::chain_head(&tx).map_err(sql)? {
            Some(head) => head,
            None => {
                // A damaged head is rebuilt from the rows (quarantining what cannot be read).
                let quarantined =
                    integrity::relink_from(&tx, &self.agent, 0, acked).map_err(sql)?;
                log_quarantined(&path, &quarantined);
                integrity::chain_head(&tx).map_err(sql)?.unwrap_or(GENESIS)
            }
        };
        let seq = last + 1;
        let event = Event {
            agent: self.agent.clone(),
            seq,
            recorded_at,
            kind,
        };
        let link = chain::link(&head, &event).map_err(|e| JournalError::Encode {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        tx.execute(
            "INSERT INTO events (seq, recorded_at_ms, offset_min, kind, payload, link)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                to_i64(seq),
                recorded_at.unix_ms,
                recorded_at.offset_min,
                event.kind.name(),
                payload,
                &link[..]
            ],
        )
        .map_err(sql)?;
        tx.execute(
            "UPDATE journal_meta SET last_seq = ?1, chain_head = ?2 WHERE id = 1",
            params![to_i64(seq), &link[..]],
        )
        .map_err(sql)?;
        if let EventKind::CouponRedeemed(redemption) = &event.kind {
            // In the ledger with its event: a second scan is refused, also offline.
            insert_redeemed(&tx, &redemption.code, true).map_err(sql)?;
        }
        if matches!(&event.kind, EventKind::Receipt(r) if r.unbalanced) {
            bump_counter(&tx, UNBALANCED_RECEIPTS).map_err(sql)?;
        }
        tx.commit().map_err(sql)?;
        self.last_seq = seq;
        self.appends_since_checkpoint += 1;
        if self.appends_since_checkpoint >= CHECKPOINT_EVERY {
            self.checkpoint();
        }
        self.check_quota();
        Ok(event)
    }

    /// Up to `max` unacknowledged events from `first_seq` on, in seq order, contiguous.
    /// Asking for a seq already acknowledged (and deleted) is an error, not a skip. A
    /// row that cannot be read is quarantined (see [`integrity`]) and read as the
    /// `Quarantined` event that replaced it.
    pub fn read_from(&self, first_seq: u64, max: usize) -> Result<Vec<Event>, JournalError> {
        Ok(self
            .read_linked(first_seq, max)?
            .into_iter()
            .map(|(event, _)| event)
            .collect())
    }

    /// [`Self::read_from`] with each event's stored chain link (what the uplink claims
    /// in `Chain` after a batch).
    pub fn read_linked(
        &self,
        first_seq: u64,
        max: usize,
    ) -> Result<Vec<(Event, ChainHash)>, JournalError> {
        match self.try_read(first_seq, max)? {
            Ok(events) => Ok(events),
            Err(bad_seq) => {
                self.repair_from(bad_seq)?;
                match self.try_read(first_seq, max)? {
                    Ok(events) => Ok(events),
                    // Repair quarantines every unreadable row: this is not disk damage
                    // the journal can mend.
                    Err(seq) => Err(JournalError::CorruptEvent {
                        path: self.path.display().to_string(),
                        seq,
                        reason: "still unreadable after quarantine".into(),
                    }),
                }
            }
        }
    }

    /// The events, or the first seq whose row cannot be read or has no usable link.
    fn try_read(
        &self,
        first_seq: u64,
        max: usize,
    ) -> Result<Result<Vec<(Event, ChainHash)>, u64>, JournalError> {
        let first_seq = first_seq.max(1);
        let (last_seq, acked_seq) = self.read_meta()?;
        if first_seq <= acked_seq {
            return Err(JournalError::Compacted {
                path: self.path.display().to_string(),
                first_seq,
                acked_seq,
            });
        }
        if max == 0 || first_seq > last_seq {
            return Ok(Ok(Vec::new()));
        }
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT seq, recorded_at_ms, offset_min, payload, link FROM events
                 WHERE seq >= ?1 ORDER BY seq LIMIT ?2",
            )
            .map_err(|e| self.sql_err(e))?;
        let rows = stmt
            .query_map(params![to_i64(first_seq), to_i64(max as u64)], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                    r.get::<_, Option<Vec<u8>>>(4)?,
                ))
            })
            .map_err(|e| self.sql_err(e))?;
        let mut events = Vec::new();
        let mut expected = first_seq;
        for row in rows {
            let (seq, unix_ms, offset_min, payload, link) = row.map_err(|e| self.sql_err(e))?;
            let seq = to_u64(seq);
            if seq != expected {
                return Err(JournalError::Inconsistent {
                    path: self.path.display().to_string(),
                    reason: format!("event seq {expected} is missing (found {seq} next)"),
                });
            }
            let decoded = integrity::decode_row(&self.agent, seq, unix_ms, offset_min, &payload);
            match (decoded, integrity::stored_link(link)) {
                (Ok(event), Some(link)) => events.push((event, link)),
                _ => return Ok(Err(seq)),
            }
            expected += 1;
        }
        let wanted = (last_seq - first_seq + 1).min(max as u64);
        if (events.len() as u64) < wanted {
            return Err(JournalError::Inconsistent {
                path: self.path.display().to_string(),
                reason: format!("event seq {expected} is missing (journal reached {last_seq})"),
            });
        }
        Ok(Ok(events))
    }

    /// Quarantines the unreadable rows from `seq` on and re-links the tail, in one
    /// transaction (a legitimate rewrite, like an erasure).
    fn repair_from(&self, seq: u64) -> Result<(), JournalError> {
        let path = self.path.display().to_string();
        let sql = sql_error(&path);
        // `&self` readers may find a bad row: the connection itself is not shared.
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
            .map_err(sql)?;
        let acked: i64 = tx
            .query_row("SELECT acked_seq FROM journal_meta WHERE id = 1", [], |r| {
                r.get(0)
            })
            .map_err(sql)?;
        let quarantined =
            integrity::relink_from(&tx, &self.agent, seq, to_u64(acked)).map_err(sql)?;
        tx.commit().map_err(sql)?;
        log_quarantined(&path, &quarantined);
        Ok(())
    }

    /// The hash chain's head: the link at `last_seq` (GENESIS for a new journal).
    pub fn chain_head(&self) -> Result<ChainHash, JournalError> {
        integrity::chain_head(&self.conn)
            .map(|head| head.unwrap_or(GENESIS))
            .map_err(|e| self.sql_err(e))
    }

    /// The highest seq appended through this connection (or found at open).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The highest seq the hub acknowledged, as known to this connection.
    pub fn acked_seq(&self) -> u64 {
        self.acked_seq
    }

    /// Records that the hub committed everything up to `seq` and deletes those events,
    /// in one transaction (keeping the chain link at `seq` as the new base); then gives
    /// the space back and truncates the WAL. Acknowledging an older seq again is a no-op.
    pub fn ack(&mut self, seq: u64) -> Result<(), JournalError> {
        let path = self.path.display().to_string();
        let sql = sql_error(&path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let (last, acked) = meta_seqs(&tx).map_err(sql)?;
        if seq > last {
            return Err(JournalError::AckBeyondLast {
                path,
                seq,
                last_seq: last,
            });
        }
        if seq <= acked {
            self.acked_seq = acked;
            self.last_seq = last;
            return Ok(());
        }
        let link: Option<Vec<u8>> = tx
            .query_row(
                "SELECT link FROM events WHERE seq = ?1",
                params![to_i64(seq)],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)?
            .flatten();
        // A missing link (a damaged row) leaves the base unknown: the next re-link
        // starts from GENESIS, which the hub reports rather than hides.
        let link = integrity::stored_link(link).unwrap_or(GENESIS);
        tx.execute(
            "UPDATE journal_meta SET acked_seq = ?1, acked_link = ?2 WHERE id = 1",
            params![to_i64(seq), &link[..]],
        )
        .map_err(sql)?;
        tx.execute("DELETE FROM events WHERE seq <= ?1", params![to_i64(seq)])
            .map_err(sql)?;
        tx.commit().map_err(sql)?;
        self.acked_seq = seq;
        self.last_seq = last;
        if let Err(e) = space::give_back_free_pages(&self.conn) {
            tracing::warn!(
                "journal {}: incremental vacuum failed: {e}",
                self.path.display()
            );
        }
        self.checkpoint();
        self.check_quota();
        Ok(())
    }
}
