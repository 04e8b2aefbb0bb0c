//! The compact numbers coupon codes carry (`shared::coupon`): 13 bits for the issuing
//! till, 12 bits for the campaign. Assigned by the hub on first use, kept forever (a
//! code printed years ago still names the same till and campaign), never reused.
//!
//! Several hubs may assign at once (one PostgreSQL): a number is taken with
//! `ON CONFLICT DO NOTHING`, and a hub that lost the race (the number, or the till's or
//! campaign's row, was taken by another hub meanwhile) reads again and retries, so two
//! hubs never hand out one number twice nor two numbers to one till.

use till360_shared::coupon::CouponFields;
use till360_shared::AgentId;

use super::sql::{transaction, Sql, SqlExt, TxKind};
use super::StoreError;
use crate::sql_params;

/// The till's number, assigned (the lowest free one) if it has none yet.
pub fn till_number(db: &dyn Sql, agent: &AgentId) -> Result<u16, StoreError> {
    let number = transaction(db, TxKind::Write, |tx| loop {
        let existing: Option<i64> = tx.query_value(
            "SELECT number FROM till_numbers WHERE store = ?1 AND till = ?2",
            sql_params![agent.store, agent.till],
        )?;
        if let Some(n) = existing {
            return Ok(n);
        }
        let next = next_free(tx, "till_numbers")?;
        if next > i64::from(CouponFields::MAX_TILL) {
            return Err(StoreError::Corrupt(format!(
                "no coupon till number left for {agent} (all {} are assigned)",
                u32::from(CouponFields::MAX_TILL) + 1
            )));
        }
        let taken = tx.execute(
            "INSERT INTO till_numbers (number, store, till) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
            sql_params![next, agent.store, agent.till],
        )?;
        if taken == 1 {
            return Ok(next);
        }
    })?;
    to_u16(number, "till number")
}

/// The lowest number not yet used in `table` (a `number` column).
fn next_free(db: &dyn Sql, table: &str) -> Result<i64, StoreError> {
    db.query_one(
        &format!("SELECT COALESCE(MAX(number) + 1, 0) FROM {table}"),
        sql_params![],
    )?
    .get(0)
}

/// Every numbered till of `store`: (number, till), by number.
pub fn store_tills(db: &dyn Sql, store: &str) -> Result<Vec<(u16, String)>, StoreError> {
    let mut tills = Vec::new();
    db.query_each(
        "SELECT number, till FROM till_numbers WHERE store = ?1 ORDER BY number",
        sql_params![store],
        &mut |row| {
            tills.push((to_u16(row.get(0)?, "till number")?, row.get(1)?));
            Ok(())
        },
    )?;
    Ok(tills)
}

/// The till a code's till number names, if any.
pub fn till_of_number(db: &dyn Sql, number: u16) -> Result<Option<AgentId>, StoreError> {
    db.query_opt(
        "SELECT store, till FROM till_numbers WHERE number = ?1",
        sql_params![i64::from(number)],
    )?
    .map(|row| Ok(AgentId::new(row.get::<String>(0)?, row.get::<String>(1)?)))
    .transpose()
}

/// Numbers for `campaign_ids` (in the given order), assigning the lowest free numbers
/// to ids that have none yet.
pub fn campaign_numbers(
    db: &dyn Sql,
    campaign_ids: &[&str],
) -> Result<Vec<(String, u16)>, StoreError> {
    transaction(db, TxKind::Write, |tx| {
        let mut numbers = Vec::with_capacity(campaign_ids.len());
        for id in campaign_ids {
            let number = loop {
                let existing: Option<i64> = tx.query_value(
                    "SELECT number FROM campaign_numbers WHERE campaign_id = ?1",
                    sql_params![id],
                )?;
                if let Some(n) = existing {
                    break n;
                }
                let next = next_free(tx, "campaign_numbers")?;
                if next > i64::from(CouponFields::MAX_CAMPAIGN) {
                    return Err(StoreError::Corrupt(format!(
                        "no coupon campaign number left for campaign {id:?}"
                    )));
                }
                let taken = tx.execute(
                    "INSERT INTO campaign_numbers (number, campaign_id) VALUES (?1, ?2)
                     ON CONFLICT DO NOTHING",
                    sql_params![next, id],
                )?;
                if taken == 1 {
                    break next;
                }
            };
            numbers.push((id.to_string(), to_u16(number, "campaign number")?));
        }
        Ok(numbers)
    })
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
    use crate::store::test_support::for_each_engine;

    #[test]
    fn numbers_are_assigned_once_and_kept_across_reopen() {
        for_each_engine(|db| {
            let conn = db.get().unwrap();
            let t1 = AgentId::new("S001", "T01");
            let t2 = AgentId::new("S001", "T02");
            let t3 = AgentId::new("S002", "T01");
            assert_eq!(till_number(&*conn, &t1).unwrap(), 0);
            assert_eq!(till_number(&*conn, &t2).unwrap(), 1);
            assert_eq!(till_number(&*conn, &t1).unwrap(), 0, "kept");
            assert_eq!(till_number(&*conn, &t3).unwrap(), 2);
            assert_eq!(
                store_tills(&*conn, "S001").unwrap(),
                vec![(0, "T01".to_string()), (1, "T02".to_string())]
            );
            assert_eq!(till_of_number(&*conn, 2).unwrap(), Some(t3.clone()));
            assert_eq!(till_of_number(&*conn, 3).unwrap(), None);
            assert_eq!(
                campaign_numbers(&*conn, &["welcome", "big-basket"]).unwrap(),
                vec![("welcome".to_string(), 0), ("big-basket".to_string(), 1)]
            );
            drop(conn);
            // Another connection (another hub on the same database) sees the same numbers.
            let conn = db.get().unwrap();
            let other = db.get().unwrap();
            assert_eq!(
                campaign_numbers(&*other, &["big-basket", "lapsed"]).unwrap(),
                vec![("big-basket".to_string(), 1), ("lapsed".to_string(), 2)]
            );
            assert_eq!(
                campaign_of_number(&*conn, 0).unwrap().as_deref(),
                Some("welcome")
            );
            assert_eq!(till_number(&*conn, &t3).unwrap(), 2);
        });
    }

    /// Two hubs numbering new tills and campaigns at once never share a number.
    #[test]
    fn concurrent_assignments_never_collide() {
        for_each_engine(|db| {
            let threads: Vec<_> = (0..4)
                .map(|hub| {
                    let db = db.clone();
                    std::thread::spawn(move || {
                        let conn = db.get().unwrap();
                        let mut got = Vec::new();
                        for till in 0..10 {
                            let agent = AgentId::new(format!("S{hub}"), format!("T{till}"));
                            got.push((agent.clone(), till_number(&*conn, &agent).unwrap()));
                        }
                        let campaigns: Vec<String> =
                            (0..10).map(|c| format!("c{}", (c + hub) % 10)).collect();
                        let ids: Vec<&str> = campaigns.iter().map(String::as_str).collect();
                        (got, campaign_numbers(&*conn, &ids).unwrap())
                    })
                })
                .collect();
            let mut tills = std::collections::BTreeMap::new();
            let mut campaigns = std::collections::BTreeMap::new();
            for t in threads {
                let (got, numbered) = t.join().unwrap();
                for (agent, n) in got {
                    assert!(tills.insert(n, agent).is_none(), "till number {n} twice");
                }
                for (id, n) in numbered {
                    if let Some(other) = campaigns.insert(n, id.clone()) {
                        assert_eq!(other, id, "campaign number {n} for two campaigns");
                    }
                }
            }
            assert_eq!(tills.len(), 40);
            assert_eq!(campaigns.len(), 10);
        });
    }
}
