//! The compact numbers coupon codes carry (`shared::coupon`): 13 bits for the issuing
//! till, 12 bits for the campaign. Assigned by the hub on first use, kept forever (a
//! code printed years ago still names the same till and campaign), never reused.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use till360_shared::coupon::CouponFields;
use till360_shared::AgentId;

use super::sql::{Sql, SqlExt};
use super::StoreError;
use crate::sql_params;

/// The till's number, assigned (the lowest free one) if it has none yet.
pub fn till_number(conn: &mut Connection, agent: &AgentId) -> Result<u16, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let existing: Option<i64> = tx
        .query_row(
            "SELECT number FROM till_numbers WHERE store = ?1 AND till = ?2",
            params![agent.store, agent.till],
            |r| r.get(0),
        )
        .optional()?;
    let number = match existing {
        Some(n) => n,
        None => {
            let next: i64 = tx.query_row(
                "SELECT COALESCE(MAX(number) + 1, 0) FROM till_numbers",
                [],
                |r| r.get(0),
            )?;
            if next > i64::from(CouponFields::MAX_TILL) {
                return Err(StoreError::Corrupt(format!(
                    "no coupon till number left for {agent} (all {} are assigned)",
                    u32::from(CouponFields::MAX_TILL) + 1
                )));
            }
            tx.execute(
                "INSERT INTO till_numbers (number, store, till) VALUES (?1, ?2, ?3)",
                params![next, agent.store, agent.till],
            )?;
            next
        }
    };
    tx.commit()?;
    to_u16(number, "till number")
}

/// Every numbered till of `store`: (number, till), by number.
pub fn store_tills(conn: &Connection, store: &str) -> Result<Vec<(u16, String)>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT number, till FROM till_numbers WHERE store = ?1 ORDER BY number")?;
    let rows = stmt.query_map([store], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut tills = Vec::new();
    for row in rows {
        let (number, till) = row?;
        tills.push((to_u16(number, "till number")?, till));
    }
    Ok(tills)
}

/// The till a code's till number names, if any.
pub fn till_of_number(db: &dyn Sql, number: u16) -> Result<Option<AgentId>, StoreError> {
    db.query_opt(
        "SELECT store, till FROM till_numbers WHERE number = ?1",
        sql_params![i64::from(number)],
    )?
    .map(|r| Ok(AgentId::new(r.get::<String>(0)?, r.get::<String>(1)?)))
    .transpose()
}

/// Numbers for `campaign_ids` (in the given order), assigning the lowest free numbers
/// to ids that have none yet.
pub fn campaign_numbers(
    conn: &mut Connection,
    campaign_ids: &[&str],
) -> Result<Vec<(String, u16)>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut numbers = Vec::with_capacity(campaign_ids.len());
    for id in campaign_ids {
        let existing: Option<i64> = tx
            .query_row(
                "SELECT number FROM campaign_numbers WHERE campaign_id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()?;
        let number = match existing {
            Some(n) => n,
            None => {
                let next: i64 = tx.query_row(
                    "SELECT COALESCE(MAX(number) + 1, 0) FROM campaign_numbers",
                    [],
                    |r| r.get(0),
                )?;
                if next > i64::from(CouponFields::MAX_CAMPAIGN) {
                    return Err(StoreError::Corrupt(format!(
                        "no coupon campaign number left for campaign {id:?}"
                    )));
                }
                tx.execute(
                    "INSERT INTO campaign_numbers (number, campaign_id) VALUES (?1, ?2)",
                    params![next, id],
                )?;
                next
            }
        };
        numbers.push((id.to_string(), to_u16(number, "campaign number")?));
    }
    tx.commit()?;
    Ok(numbers)
}

/// The campaign a code's campaign number names, if any.
pub fn campaign_of_number(db: &dyn Sql, number: u16) -> Result<Option<String>, StoreError> {
    db.query_value(
        "SELECT campaign_id FROM campaign_numbers WHERE number = ?1",
        sql_params![i64::from(number)],
    )
}

fn to_u16(value: i64, what: &str) -> Result<u16, StoreError> {
    u16::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    #[test]
    fn numbers_are_assigned_once_and_kept_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        let mut conn = SqliteStore::open(&path).unwrap().conn;
        let t1 = AgentId::new("S001", "T01");
        let t2 = AgentId::new("S001", "T02");
        let t3 = AgentId::new("S002", "T01");
        assert_eq!(till_number(&mut conn, &t1).unwrap(), 0);
        assert_eq!(till_number(&mut conn, &t2).unwrap(), 1);
        assert_eq!(till_number(&mut conn, &t1).unwrap(), 0, "kept");
        assert_eq!(till_number(&mut conn, &t3).unwrap(), 2);
        assert_eq!(
            store_tills(&conn, "S001").unwrap(),
            vec![(0, "T01".to_string()), (1, "T02".to_string())]
        );
        assert_eq!(till_of_number(&conn, 2).unwrap(), Some(t3.clone()));
        assert_eq!(till_of_number(&conn, 3).unwrap(), None);
        assert_eq!(
            campaign_numbers(&mut conn, &["welcome", "big-basket"]).unwrap(),
            vec![("welcome".to_string(), 0), ("big-basket".to_string(), 1)]
        );
        drop(conn);
        let mut conn = SqliteStore::open(&path).unwrap().conn;
        assert_eq!(
            campaign_numbers(&mut conn, &["big-basket", "lapsed"]).unwrap(),
            vec![("big-basket".to_string(), 1), ("lapsed".to_string(), 2)]
        );
        assert_eq!(
            campaign_of_number(&conn, 0).unwrap().as_deref(),
            Some("welcome")
        );
        assert_eq!(till_number(&mut conn, &t3).unwrap(), 2);
    }
}
