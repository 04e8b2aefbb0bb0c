//! PKI state the hub keeps in its database, on every engine: the highest certificate
//! epoch seen per till (`till_epochs`, which fences a clone of an older certificate, see
//! `listener::revocation`) and the certificate alerts shown by `GET /api/v1/agents`.

use std::collections::HashMap;

use till360_shared::{AgentId, Timestamp};

use super::sql::{int, Sql};
use super::StoreError;
use crate::sql_params;

/// The highest certificate epoch recorded for each till.
pub fn till_epochs(db: &dyn Sql) -> Result<HashMap<AgentId, u64>, StoreError> {
    let mut epochs = HashMap::new();
    db.query_each(
        "SELECT store, till, epoch FROM till_epochs",
        sql_params![],
        &mut |row| {
            let agent = AgentId::new(row.get::<String>(0)?, row.get::<String>(1)?);
            epochs.insert(agent, u64::try_from(row.get::<i64>(2)?).unwrap_or(0));
            Ok(())
        },
    )?;
    Ok(epochs)
}

/// Records that `agent` connected with a certificate of `epoch` at `now`; a lower epoch
/// than the one recorded leaves the record as it is (epochs only grow, also when two
/// hubs record at once).
pub fn record_till_epoch(
    db: &dyn Sql,
    agent: &AgentId,
    epoch: u64,
    now: Timestamp,
) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO till_epochs (store, till, epoch, seen_at_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (store, till) DO UPDATE
         SET epoch = excluded.epoch, seen_at_ms = excluded.seen_at_ms
         WHERE excluded.epoch > till_epochs.epoch",
        sql_params![agent.store, agent.till, int(epoch)?, now.unix_ms],
    )?;
    Ok(())
}

/// Keeps the latest sign of a cloned certificate of `agent` (two live connections, or
/// an old epoch) for `GET /api/v1/agents` (`agent_alerts`, kind `certificate`).
pub fn record_certificate_alert(
    db: &dyn Sql,
    agent: &AgentId,
    reason: &str,
    detail: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO agent_alerts (store, till, kind, reason, detail, at_ms)
         VALUES (?1, ?2, 'certificate', ?3, ?4, ?5)
         ON CONFLICT (store, till, kind) DO UPDATE SET
             reason = excluded.reason, detail = excluded.detail, at_ms = excluded.at_ms",
        sql_params![agent.store, agent.till, reason, detail, now.unix_ms],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sql::SqlExt;
    use crate::store::test_support::for_each_engine;

    #[test]
    fn epochs_only_grow_and_are_read_back() {
        for_each_engine(|db| {
            let conn = db.get().unwrap();
            let t1 = AgentId::new("S1", "T1");
            let t2 = AgentId::new("S1", "T2");
            let at = |ms| Timestamp::from_unix_ms(ms, 0);
            assert!(till_epochs(&*conn).unwrap().is_empty());
            record_till_epoch(&*conn, &t1, 2, at(1)).unwrap();
            record_till_epoch(&*conn, &t1, 1, at(2)).unwrap();
            record_till_epoch(&*conn, &t2, 1, at(3)).unwrap();
            let epochs = till_epochs(&*conn).unwrap();
            assert_eq!(
                (epochs[&t1], epochs[&t2]),
                (2, 1),
                "a lower epoch leaves it"
            );
            record_till_epoch(&*conn, &t1, 3, at(4)).unwrap();
            assert_eq!(till_epochs(&*conn).unwrap()[&t1], 3);
            assert!(record_till_epoch(&*conn, &t1, u64::MAX, at(5)).is_err());
        });
    }

    #[test]
    fn a_certificate_alert_keeps_the_latest() {
        for_each_engine(|db| {
            let conn = db.get().unwrap();
            let t1 = AgentId::new("S1", "T1");
            let at = |ms| Timestamp::from_unix_ms(ms, 0);
            record_certificate_alert(&*conn, &t1, "old_epoch", "first", at(1)).unwrap();
            record_certificate_alert(&*conn, &t1, "duplicate_connection", "second", at(2)).unwrap();
            let rows = conn
                .query(
                    "SELECT kind, reason, detail, at_ms FROM agent_alerts",
                    crate::sql_params![],
                )
                .unwrap();
            assert_eq!(rows.len(), 1);
            let row = &rows[0];
            assert_eq!(
                (
                    row.get::<String>(0).unwrap(),
                    row.get::<String>(1).unwrap(),
                    row.get::<String>(2).unwrap(),
                    row.get::<i64>(3).unwrap()
                ),
                (
                    "certificate".to_string(),
                    "duplicate_connection".to_string(),
                    "second".to_string(),
                    2
                )
            );
        });
    }
}
