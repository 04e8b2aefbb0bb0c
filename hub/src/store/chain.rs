//! Each agent's journal hash chain as the hub sees it (`shared::chain`).
//!
//! `agents.chain_hash` is the link at `agents.last_seq`, extended over every event the
//! hub commits in the merge's transaction (replays add nothing). After a batch the
//! agent claims its own stored link at the batch's last seq (`Message::Chain`); a claim
//! that differs from the hub's link at that seq is a break (the journal was edited on
//! the till): recorded in `chain_breaks` and logged, the events stay merged. The hub
//! then continues from the agent's claim, so one edit is one break, not one per batch.
//! `chain_hash` NULL means unknown (an agent the hub knew before it kept chains): the
//! first claim at its head is taken as the head.

use till360_shared::chain::{self, ChainHash, GENESIS};
use till360_shared::{AgentId, Timestamp};

use super::sql::{Engine, Sql, SqlExt};
use super::StoreError;
use crate::sql_params;

/// The agent's high-water mark and chain head (`None`: unknown). A new agent is at 0
/// with GENESIS.
pub(super) fn head(db: &dyn Sql, agent: &AgentId) -> Result<(u64, Option<ChainHash>), StoreError> {
    read_head(
        db,
        "SELECT last_seq, chain_hash FROM agents WHERE store = ?1 AND till = ?2",
        agent,
    )
}

/// As [`head`], and on PostgreSQL the agent's row stays locked until the transaction
/// ends: two hubs committing batches of one till wait for each other here, so they
/// can never both apply the same seq. (SQLite's `BEGIN IMMEDIATE` already serialises
/// every writer.) The row must exist to be locked: callers insert it first
/// ([`super::agents::ensure_agent`]).
pub(super) fn head_for_update(
    db: &dyn Sql,
    agent: &AgentId,
) -> Result<(u64, Option<ChainHash>), StoreError> {
    match db.engine() {
        Engine::Sqlite => head(db, agent),
        Engine::Postgres => read_head(
            db,
            "SELECT last_seq, chain_hash FROM agents WHERE store = ?1 AND till = ?2 FOR UPDATE",
            agent,
        ),
    }
}

fn read_head(
    db: &dyn Sql,
    select: &str,
    agent: &AgentId,
) -> Result<(u64, Option<ChainHash>), StoreError> {
    let mut found = None;
    db.query_each(select, sql_params![agent.store, agent.till], &mut |row| {
        found = Some((row.get::<i64>(0)?, row.get::<Option<Vec<u8>>>(1)?));
        Ok(())
    })?;
    Ok(match found {
        None => (0, Some(GENESIS)),
        Some((seq, hash)) => (
            u64::try_from(seq).unwrap_or(0),
            hash.and_then(|h| ChainHash::try_from(h.as_slice()).ok()),
        ),
    })
}

/// What the hub made of a `Chain` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainCheck {
    /// The claim equals the hub's link at that seq.
    Verified,
    /// The hub had no head for this agent: the claim is its head from now on.
    Adopted,
    /// The hub has no link at the claim's seq (a resent batch, a refused one): ignored.
    NoLink,
    /// The claim differs: recorded and logged.
    Broken,
}

/// A break as `GET /api/v1/agents` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub seq: u64,
    pub detected_at_ms: i64,
}

/// Checks `claimed` (the agent's link at `last_seq`) against the hub's head, inside the
/// caller's transaction.
pub(super) fn check_claim(
    tx: &dyn Sql,
    agent: &AgentId,
    last_seq: u64,
    claimed: &ChainHash,
    now: Timestamp,
) -> Result<ChainCheck, StoreError> {
    let exists = tx.exists(
        "SELECT 1 FROM agents WHERE store = ?1 AND till = ?2",
        sql_params![agent.store, agent.till],
    )?;
    if !exists {
        return Ok(ChainCheck::NoLink);
    }
    let (high_water, head) = head_for_update(tx, agent)?;
    if high_water != last_seq {
        return Ok(ChainCheck::NoLink);
    }
    let check = match head {
        Some(head) if head == *claimed => return Ok(ChainCheck::Verified),
        None => ChainCheck::Adopted,
        Some(head) => {
            tracing::error!(
                "agent {agent}: journal hash chain broken at or before seq {last_seq}: the hub \
                 computed {} over the events it received, the agent's journal claims {} \
                 (was the journal edited on the till?); the events are kept",
                chain::to_hex(&head),
                chain::to_hex(claimed)
            );
            tx.execute(
                "INSERT INTO chain_breaks
                     (store, till, seq, detected_at_ms, hub_hash, claimed_hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (store, till, seq) DO NOTHING",
                sql_params![
                    agent.store,
                    agent.till,
                    i64::try_from(last_seq).unwrap_or(i64::MAX),
                    now.unix_ms,
                    &head[..],
                    &claimed[..]
                ],
            )?;
            ChainCheck::Broken
        }
    };
    tx.execute(
        "UPDATE agents SET chain_hash = ?3 WHERE store = ?1 AND till = ?2",
        sql_params![agent.store, agent.till, &claimed[..]],
    )?;
    Ok(check)
}

/// The first break recorded for an agent, if any.
pub(super) fn first_break(
    db: &dyn Sql,
    store: &str,
    till: &str,
) -> Result<Option<ChainBreak>, StoreError> {
    db.query_opt(
        "SELECT seq, detected_at_ms FROM chain_breaks WHERE store = ?1 AND till = ?2
         ORDER BY detected_at_ms, seq LIMIT 1",
        sql_params![store, till],
    )?
    .map(|row| {
        Ok(ChainBreak {
            seq: u64::try_from(row.get::<i64>(0)?).unwrap_or(0),
            detected_at_ms: row.get(1)?,
        })
    })
    .transpose()
}
