//! What the downlink to the tills reads and numbers, on every engine: the erasure log
//! feed, the redeemed-codes feed, the keyring numbers (till and campaign numbers a
//! coupon code carries) and the catalog a campaign set needs.
//!
//! Numbers are handed out by the database inside the transaction that records them:
//! a till or campaign number is the lowest free one, chosen after the numbering table
//! is locked ([`lock_numbering`]), so two hubs serving their first tills at the same
//! time never give out one number twice.

use till360_shared::campaign::{CampaignSet, CatalogItem, Trigger};
use till360_shared::coupon::CouponFields;
use till360_shared::AgentId;

use super::sql::{transaction, Engine, Sql, SqlExt, TxKind};
use super::StoreError;
use crate::sql_params;

// The feeds read the erasure log and the coupon ledger where they are kept.
pub use super::coupon_ledger::{redeemed_since, redeemed_version};
pub use super::erasures::{erasure_version, erasures_since};

/// Takes the erasure log for the rest of the write transaction that appends to it (call
/// before the append). Versions come from the log's own key, so two hubs never give out
/// one twice; but a till that read version `v` must never miss a smaller one committed
/// later, so appends must commit in version order. SQLite's write transaction already
/// excludes every other writer; PostgreSQL takes a lock that only other appends wait for
/// (the pollers and the tills' reads go on).
pub fn lock_erasure_log(db: &dyn Sql) -> Result<(), StoreError> {
    if db.engine() == Engine::Postgres {
        db.batch("LOCK TABLE erasures IN SHARE ROW EXCLUSIVE MODE")?;
    }
    Ok(())
}

/// The numbers of one till's keyring, read (and assigned where missing) in one
/// transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyringNumbers {
    /// The asking till's number.
    pub till_number: u16,
    /// Every numbered till of the till's store: (number, till), by number.
    pub store_tills: Vec<(u16, String)>,
    /// The campaigns' numbers, in the order asked.
    pub campaign_numbers: Vec<(String, u16)>,
}

/// The numbers `agent`'s keyring carries: its till number and its campaigns' numbers,
/// each assigned (the lowest free one) on first use and kept forever, and its store's
/// numbered tills.
pub fn keyring_numbers(
    db: &dyn Sql,
    agent: &AgentId,
    campaign_ids: &[&str],
) -> Result<KeyringNumbers, StoreError> {
    transaction(db, TxKind::Write, |tx| {
        let till_number = till_number(tx, agent)?;
        let campaign_numbers = campaign_numbers(tx, campaign_ids)?;
        let store_tills = store_tills(tx, &agent.store)?;
        Ok(KeyringNumbers {
            till_number,
            store_tills,
            campaign_numbers,
        })
    })
}

/// Takes `table` (a numbering table) for the rest of the write transaction, so that the
/// lowest free number it reads stays free until it commits. SQLite's write transaction
/// already excludes every other writer; on PostgreSQL, readers (coupon checks) still
/// read the table meanwhile.
fn lock_numbering(db: &dyn Sql, table: &str) -> Result<(), StoreError> {
    if db.engine() == Engine::Postgres {
        db.batch(&format!("LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE"))?;
    }
    Ok(())
}

/// The till's number, assigned (the lowest free one) if it has none yet. Call inside a
/// write transaction.
fn till_number(tx: &dyn Sql, agent: &AgentId) -> Result<u16, StoreError> {
    let find = || {
        tx.query_value::<i64>(
            "SELECT number FROM till_numbers WHERE store = ?1 AND till = ?2",
            sql_params![agent.store, agent.till],
        )
    };
    if let Some(number) = find()? {
        return to_u16(number, "till number");
    }
    lock_numbering(tx, "till_numbers")?;
    // Another hub may have numbered it while this one waited for the lock.
    if let Some(number) = find()? {
        return to_u16(number, "till number");
    }
    let next: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(number) + 1, 0) FROM till_numbers",
            sql_params![],
        )?
        .get(0)?;
    if next > i64::from(CouponFields::MAX_TILL) {
        return Err(StoreError::Corrupt(format!(
            "no coupon till number left for {agent} (all {} are assigned)",
            u32::from(CouponFields::MAX_TILL) + 1
        )));
    }
    tx.execute(
        "INSERT INTO till_numbers (number, store, till) VALUES (?1, ?2, ?3)",
        sql_params![next, agent.store, agent.till],
    )?;
    to_u16(next, "till number")
}

/// Numbers for `campaign_ids` (in the given order), assigning the lowest free numbers
/// to ids that have none yet. Call inside a write transaction.
fn campaign_numbers(tx: &dyn Sql, campaign_ids: &[&str]) -> Result<Vec<(String, u16)>, StoreError> {
    let find = |id: &str| {
        tx.query_value::<i64>(
            "SELECT number FROM campaign_numbers WHERE campaign_id = ?1",
            sql_params![id],
        )
    };
    let mut locked = false;
    let mut numbers = Vec::with_capacity(campaign_ids.len());
    for id in campaign_ids {
        let mut existing = find(id)?;
        if existing.is_none() && !locked {
            lock_numbering(tx, "campaign_numbers")?;
            locked = true;
            existing = find(id)?;
        }
        let number = match existing {
            Some(n) => n,
            None => {
                let next: i64 = tx
                    .query_one(
                        "SELECT COALESCE(MAX(number) + 1, 0) FROM campaign_numbers",
                        sql_params![],
                    )?
                    .get(0)?;
                if next > i64::from(CouponFields::MAX_CAMPAIGN) {
                    return Err(StoreError::Corrupt(format!(
                        "no coupon campaign number left for campaign {id:?}"
                    )));
                }
                tx.execute(
                    "INSERT INTO campaign_numbers (number, campaign_id) VALUES (?1, ?2)",
                    sql_params![next, id],
                )?;
                next
            }
        };
        numbers.push((id.to_string(), to_u16(number, "campaign number")?));
    }
    Ok(numbers)
}

/// Every numbered till of `store`: (number, till), by number.
fn store_tills(db: &dyn Sql, store: &str) -> Result<Vec<(u16, String)>, StoreError> {
    let mut tills = Vec::new();
    db.query_each(
        "SELECT number, till FROM till_numbers WHERE store = ?1 ORDER BY number",
        sql_params![store],
        &mut |row| {
            tills.push((to_u16(row.get(0)?, "till number")?, row.get::<String>(1)?));
            Ok(())
        },
    )?;
    Ok(tills)
}

fn to_u16(value: i64, what: &str) -> Result<u16, StoreError> {
    u16::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value}")))
}

/// The catalog items a till needs to apply `set`: every sensitive product (never counted
/// towards a trigger) and every product of a category a campaign targets.
pub fn catalog_for(db: &dyn Sql, set: &CampaignSet) -> Result<Vec<CatalogItem>, StoreError> {
    let targeted: Vec<String> = set
        .campaigns
        .iter()
        .filter_map(|c| match &c.trigger {
            Trigger::BasketCategory { category, .. } => Some(category.to_lowercase()),
            _ => None,
        })
        .collect();
    let mut items = Vec::new();
    db.query_each(
        "SELECT sku, description, category, sensitive FROM products ORDER BY sku",
        sql_params![],
        &mut |row| {
            let item = CatalogItem {
                sku: row.get(0)?,
                description: row.get(1)?,
                category: row.get(2)?,
                sensitive: row.get::<i64>(3)? != 0,
            };
            if item.sensitive || targeted.contains(&item.category.to_lowercase()) {
                items.push(item);
            }
            Ok(())
        },
    )?;
    Ok(items)
}

/// The catalog's sensitive categories (a campaign naming one stops the hub at start).
pub fn sensitive_categories(db: &dyn Sql) -> Result<Vec<String>, StoreError> {
    let mut categories = Vec::new();
    db.query_each(
        "SELECT DISTINCT category FROM products WHERE sensitive != 0",
        sql_params![],
        &mut |row| {
            categories.push(row.get::<String>(0)?);
            Ok(())
        },
    )?;
    Ok(categories)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::for_each_engine;
    use chrono::NaiveDate;
    use till360_shared::coupon::CardKey;

    fn erase(db: &dyn Sql, keys: &[(&str, [u8; 16])]) -> i64 {
        let version: i64 = db
            .query_one(
                "INSERT INTO erasures (erased_at_ms) VALUES (0) RETURNING version",
                sql_params![],
            )
            .unwrap()
            .get(0)
            .unwrap();
        for (store, key) in keys {
            db.execute(
                "INSERT INTO erasure_card_keys (version, store, card_key) VALUES (?1, ?2, ?3)",
                sql_params![version, store, key],
            )
            .unwrap();
        }
        version
    }

    #[test]
    fn the_erasure_feed_gives_each_store_its_card_keys_by_version() {
        for_each_engine(|db| {
            let conn = db.get().unwrap();
            assert_eq!(erasure_version(&*conn).unwrap(), 0);
            assert!(erasures_since(&*conn, "S1", 0, 10).unwrap().is_empty());
            let first = erase(&*conn, &[("S1", [1; 16]), ("S2", [2; 16])]);
            let second = erase(&*conn, &[]);
            let third = erase(&*conn, &[("S1", [3; 16]), ("S1", [4; 16])]);
            assert!(first < second && second < third);
            assert_eq!(erasure_version(&*conn).unwrap(), third as u64);
            let v = |n: i64| n as u64;
            assert_eq!(
                erasures_since(&*conn, "S1", 0, 10).unwrap(),
                vec![
                    (v(first), vec![CardKey([1; 16])]),
                    (v(second), vec![]),
                    (v(third), vec![CardKey([3; 16]), CardKey([4; 16])]),
                ]
            );
            assert_eq!(
                erasures_since(&*conn, "S2", v(first), 1).unwrap(),
                vec![(v(second), vec![])],
                "every version, even without the store's cards: the till's version moves on"
            );
            assert!(erasures_since(&*conn, "S1", v(third), 10)
                .unwrap()
                .is_empty());
        });
    }

    #[test]
    fn the_redeemed_feed_gives_a_store_its_own_and_its_tills_codes_in_commit_order() {
        for_each_engine(|db| {
            let conn = db.get().unwrap();
            assert_eq!(redeemed_version(&*conn).unwrap(), 0);
            let scans = [
                // (scanned at, seq, code, status, commit_seq, issuer store, expires)
                ("S1", 1, "c-1", "genuine", 1, "S1", "2026-12-31"),
                ("S2", 1, "c-2", "genuine", 2, "S1", "2026-12-31"),
                ("S2", 2, "c-3", "genuine", 3, "S2", "2026-12-31"),
                ("S1", 2, "c-4", "forged", 4, "S1", "2026-12-31"),
                ("S1", 3, "c-5", "unchecked", 5, "S1", "2026-01-31"),
                ("S1", 4, "c-6", "unchecked", 6, "S1", "2026-12-31"),
            ];
            for (store, seq, code, status, commit_seq, issuer, expires) in scans {
                conn.execute(
                    "INSERT INTO redemptions (store, till, seq, code, at_ms, offset_min, status,
                         commit_seq, issuer_store, expires)
                     VALUES (?1, 'T1', ?2, ?3, 0, 0, ?4, ?5, ?6, ?7)",
                    sql_params![store, seq, code, status, commit_seq, issuer, expires],
                )
                .unwrap();
            }
            assert_eq!(redeemed_version(&*conn).unwrap(), 6);
            let today = NaiveDate::from_ymd_opt(2026, 6, 1).unwrap();
            let codes = |after, limit| {
                redeemed_since(&*conn, "S1", after, today, limit)
                    .unwrap()
                    .into_iter()
                    .map(|(seq, code)| format!("{seq}:{code}"))
                    .collect::<Vec<_>>()
            };
            // Not S2's own code, not a forged scan, not an expired code.
            assert_eq!(codes(0, 10), vec!["1:c-1", "2:c-2", "6:c-6"]);
            assert_eq!(codes(1, 1), vec!["2:c-2"]);
            assert!(codes(6, 10).is_empty());
        });
    }

    #[test]
    fn keyring_numbers_are_assigned_once_and_kept() {
        for_each_engine(|db| {
            let conn = db.get().unwrap();
            let t1 = AgentId::new("S001", "T01");
            let t2 = AgentId::new("S001", "T02");
            let t3 = AgentId::new("S002", "T01");
            let first = keyring_numbers(&*conn, &t1, &["welcome", "big-basket"]).unwrap();
            assert_eq!(first.till_number, 0);
            assert_eq!(first.store_tills, vec![(0, "T01".to_string())]);
            assert_eq!(
                first.campaign_numbers,
                vec![("welcome".to_string(), 0), ("big-basket".to_string(), 1)]
            );
            assert_eq!(keyring_numbers(&*conn, &t2, &[]).unwrap().till_number, 1);
            let again = keyring_numbers(&*conn, &t1, &["big-basket", "lapsed"]).unwrap();
            assert_eq!(again.till_number, 0, "kept");
            assert_eq!(
                again.store_tills,
                vec![(0, "T01".to_string()), (1, "T02".to_string())]
            );
            assert_eq!(
                again.campaign_numbers,
                vec![("big-basket".to_string(), 1), ("lapsed".to_string(), 2)]
            );
            let other_store = keyring_numbers(&*conn, &t3, &["welcome"]).unwrap();
            assert_eq!(other_store.till_number, 2);
            assert_eq!(other_store.store_tills, vec![(2, "T01".to_string())]);
        });
    }

    /// Tills of two hubs asking for their keyrings at the same time get distinct
    /// numbers, and the same campaign gets one number.
    #[test]
    fn keyring_numbers_asked_at_once_on_two_connections_never_collide() {
        for_each_engine(|db| {
            let ask = |hub: &'static str| {
                let db = db.clone();
                std::thread::spawn(move || {
                    let conn = db.get().unwrap();
                    (0..20)
                        .map(|i| {
                            let till = AgentId::new(hub, format!("T{i:02}"));
                            let ids = [format!("{hub}-{i}"), format!("shared-{i}")];
                            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                            keyring_numbers(&*conn, &till, &ids).unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            };
            let (a, b) = (ask("A"), ask("B"));
            let mut numbers: Vec<KeyringNumbers> = a.join().unwrap();
            numbers.extend(b.join().unwrap());
            let mut tills: Vec<u16> = numbers.iter().map(|n| n.till_number).collect();
            tills.sort_unstable();
            tills.dedup();
            assert_eq!(tills.len(), 40, "every till its own number");
            let mut campaigns = std::collections::BTreeMap::new();
            for (id, number) in numbers.iter().flat_map(|n| n.campaign_numbers.iter()) {
                assert_eq!(
                    *campaigns.entry(id.clone()).or_insert(*number),
                    *number,
                    "{id}"
                );
            }
            let mut distinct: Vec<u16> = campaigns.values().copied().collect();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(
                distinct.len(),
                campaigns.len(),
                "every campaign its own number"
            );
            assert_eq!(campaigns.len(), 60);
        });
    }

    #[test]
    fn the_catalog_holds_sensitive_and_targeted_products_only() {
        for_each_engine(|db| {
            let conn = db.get().unwrap();
            for (sku, category, sensitive) in
                [("1", "Pharmacy", 1), ("2", "Wine", 0), ("3", "Bread", 0)]
            {
                conn.execute(
                    "INSERT INTO products (sku, description, category, sensitive)
                     VALUES (?1, ?2, ?3, ?4)",
                    sql_params![sku, format!("item {sku}"), category, sensitive],
                )
                .unwrap();
            }
            assert_eq!(sensitive_categories(&*conn).unwrap(), vec!["Pharmacy"]);
            let set = CampaignSet::from_toml_str(
                "[[campaign]]\nid = \"wine\"\nname = \"Wine\"\ntrigger = \"basket_category\"\n\
                 category = \"WINE\"\noffer = \"10% off\"\nvalid_days = 7\n",
                std::path::Path::new("campaigns.toml"),
            )
            .unwrap();
            let skus: Vec<String> = catalog_for(&*conn, &set)
                .unwrap()
                .into_iter()
                .map(|item| item.sku)
                .collect();
            assert_eq!(skus, vec!["1", "2"]);
        });
    }
}
