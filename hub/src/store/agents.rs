//! Agents as the hub knows them (`agents`, `agent_health`, `agent_clocks`,
//! `agent_alerts`, `agent_counters`, `chain_breaks`): hellos, health and clock reports,
//! alerts, and the `GET /api/v1/agents` view.

use till360_shared::chain::{ChainHash, GENESIS};
use till360_shared::wire::{Refusal, TillHealth};
use till360_shared::{AgentId, Timestamp};

use super::chain::{self, ChainBreak, ChainCheck};
use super::sql::{self, transaction, Sql, SqlExt, TxKind};
use super::{AgentView, AlertView, ChainStatus, ClockView, HealthView, StoreError, TillClock};
use crate::sql_params;

/// A new agent starts its chain at GENESIS; a known one keeps its head.
const UPSERT_AGENT: &str = "INSERT INTO agents (store, till, last_seq, last_seen_ms, chain_hash)
     VALUES (?1, ?2, ?3, ?4, ?5)
     ON CONFLICT (store, till) DO UPDATE SET
         last_seq = CASE WHEN agents.last_seq > excluded.last_seq THEN agents.last_seq
                         ELSE excluded.last_seq END,
         last_seen_ms = excluded.last_seen_ms";

/// Notes that `agent` connected at `now` and returns its committed high-water mark.
pub fn hello(db: &dyn Sql, agent: &AgentId, now: Timestamp) -> Result<u64, StoreError> {
    transaction(db, TxKind::Write, |tx| {
        let (high_water, _) = chain::head(tx, agent)?;
        tx.execute(
            UPSERT_AGENT,
            sql_params![
                agent.store,
                agent.till,
                sql::int(high_water)?,
                now.unix_ms,
                &GENESIS[..]
            ],
        )?;
        Ok(high_water)
    })
}

/// Checks an agent's `Chain` claim against the hub's own link (see `store/chain.rs`).
pub fn chain_claim(
    db: &dyn Sql,
    agent: &AgentId,
    last_seq: u64,
    claimed: &ChainHash,
    now: Timestamp,
) -> Result<ChainCheck, StoreError> {
    transaction(db, TxKind::Write, |tx| {
        chain::check_claim(tx, agent, last_seq, claimed, now)
    })
}

/// Keeps a till's latest health report (`Message::Health`).
pub fn set_health(
    db: &dyn Sql,
    agent: &AgentId,
    health: &TillHealth,
    now: Timestamp,
) -> Result<(), StoreError> {
    let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    db.execute(
        "INSERT INTO agent_health (store, till, journal_bytes, journal_max_bytes,
             quota_exceeded, quarantined, pending, reported_at_ms, unbalanced_receipts,
             unrecognised_scans)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (store, till) DO UPDATE SET
             journal_bytes = excluded.journal_bytes,
             journal_max_bytes = excluded.journal_max_bytes,
             quota_exceeded = excluded.quota_exceeded,
             quarantined = excluded.quarantined,
             pending = excluded.pending,
             reported_at_ms = excluded.reported_at_ms,
             unbalanced_receipts = excluded.unbalanced_receipts,
             unrecognised_scans = excluded.unrecognised_scans",
        sql_params![
            agent.store,
            agent.till,
            clamp(health.journal_bytes),
            clamp(health.journal_max_bytes),
            health.quota_exceeded,
            clamp(health.quarantined),
            clamp(health.pending),
            now.unix_ms,
            clamp(health.unbalanced_receipts),
            clamp(health.unrecognised_scans)
        ],
    )?;
    Ok(())
}

/// Keeps how far a till's clock is off (`Message::TillClock`).
pub fn set_clock(
    db: &dyn Sql,
    agent: &AgentId,
    clock: &TillClock,
    now: Timestamp,
) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO agent_clocks (store, till, skew_ms, max_skew_ms, reported_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (store, till) DO UPDATE SET
             skew_ms = excluded.skew_ms,
             max_skew_ms = excluded.max_skew_ms,
             reported_at_ms = excluded.reported_at_ms",
        sql_params![
            agent.store,
            agent.till,
            clock.skew_ms,
            clock.max_skew_ms,
            now.unix_ms
        ],
    )?;
    Ok(())
}

/// Keeps the latest alert of `kind` for an agent (see `agent_alerts`).
pub fn record_alert(
    db: &dyn Sql,
    agent: &AgentId,
    kind: &str,
    reason: &str,
    detail: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO agent_alerts (store, till, kind, reason, detail, at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (store, till, kind) DO UPDATE SET
             reason = excluded.reason, detail = excluded.detail, at_ms = excluded.at_ms",
        sql_params![agent.store, agent.till, kind, reason, detail, now.unix_ms],
    )?;
    Ok(())
}

/// Keeps an agent's last refusal for `agents` (the till is told too).
pub(super) fn record_refusal(
    db: &dyn Sql,
    agent: &AgentId,
    (reason, detail): &(Refusal, String),
    now: Timestamp,
) -> Result<(), StoreError> {
    record_alert(db, agent, "refusal", &format!("{reason:?}"), detail, now)
}

fn rfc3339(ms: i64) -> String {
    Timestamp::from_unix_ms(ms, 0).to_rfc3339()
}

fn count(row: &sql::Row, i: usize) -> Result<u64, StoreError> {
    Ok(row.get::<i64>(i)?.max(0) as u64)
}

/// Every agent as `GET /api/v1/agents` lists it, by store and till.
pub fn agents(db: &dyn Sql) -> Result<Vec<AgentView>, StoreError> {
    let mut views = Vec::new();
    db.query_each(
        "SELECT store, till, last_seq, last_seen_ms FROM agents ORDER BY store, till",
        sql_params![],
        &mut |row| {
            views.push(AgentView {
                store: row.get(0)?,
                till: row.get(1)?,
                last_seq: count(&row, 2)?,
                last_seen: rfc3339(row.get(3)?),
                chain: ChainStatus::Ok,
                health: None,
                last_refusal: None,
                certificate_alert: None,
                clock: None,
                suppressed_events: 0,
            });
            Ok(())
        },
    )?;
    for view in &mut views {
        let (store, till) = (view.store.clone(), view.till.clone());
        let key = sql_params![store, till];
        view.health = db
            .query_opt(
                "SELECT journal_bytes, journal_max_bytes, quota_exceeded, quarantined,
                        pending, reported_at_ms, unbalanced_receipts, unrecognised_scans
                 FROM agent_health WHERE store = ?1 AND till = ?2",
                key,
            )?
            .map(|r| {
                Ok::<_, StoreError>(HealthView {
                    journal_bytes: count(&r, 0)?,
                    journal_max_bytes: count(&r, 1)?,
                    quota_exceeded: r.get(2)?,
                    quarantined: count(&r, 3)?,
                    pending: count(&r, 4)?,
                    reported_at: rfc3339(r.get(5)?),
                    unbalanced_receipts: count(&r, 6)?,
                    unrecognised_scans: count(&r, 7)?,
                })
            })
            .transpose()?;
        let alert = |kind: &str| -> Result<Option<AlertView>, StoreError> {
            db.query_opt(
                "SELECT reason, detail, at_ms FROM agent_alerts
                 WHERE store = ?1 AND till = ?2 AND kind = ?3",
                sql_params![store, till, kind],
            )?
            .map(|r| {
                Ok(AlertView {
                    reason: r.get(0)?,
                    detail: r.get(1)?,
                    at: rfc3339(r.get(2)?),
                })
            })
            .transpose()
        };
        let (last_refusal, certificate_alert) = (alert("refusal")?, alert("certificate")?);
        view.last_refusal = last_refusal;
        view.certificate_alert = certificate_alert;
        view.clock = db
            .query_opt(
                "SELECT skew_ms, max_skew_ms, reported_at_ms FROM agent_clocks
                 WHERE store = ?1 AND till = ?2",
                key,
            )?
            .map(|r| {
                let (skew_ms, max_skew_ms): (i64, i64) = (r.get(0)?, r.get(1)?);
                Ok::<_, StoreError>(ClockView {
                    skew_secs: skew_ms / 1000,
                    skewed: skew_ms.saturating_abs() > max_skew_ms,
                    reported_at: rfc3339(r.get(2)?),
                })
            })
            .transpose()?;
        let suppressed: Option<i64> = db.query_value(
            "SELECT counter FROM agent_counters
             WHERE store = ?1 AND till = ?2 AND name = 'suppressed_events'",
            key,
        )?;
        view.suppressed_events = suppressed.map_or(0, |n| n.max(0) as u64);
        if let Some(ChainBreak {
            seq,
            detected_at_ms,
        }) = chain::first_break(db, &store, &till)?
        {
            view.chain = ChainStatus::Broken {
                broken_at_seq: seq,
                detected_at: rfc3339(detected_at_ms),
            };
        }
    }
    Ok(views)
}
