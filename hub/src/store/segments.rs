//! Segment listings for marketers (`GET /api/v1/segments`, the mailing CSV) and the
//! blocked identifiers: the rows the last traits recompute stored, read as they are.
//! Which profile belongs to a segment is decided by the pure `segments` engine at the
//! recompute (`store::traits`), not here.

use std::collections::HashMap;

use till360_shared::Timestamp;

use super::freshness;
use super::sql::{transaction, Sql, SqlExt, TxKind};
use super::StoreError;
use crate::sql_params;

pub use super::identity::blocked_identifiers;

/// Members per segment id and when they were computed (`None` before the first run),
/// from one snapshot so that they agree.
pub fn sizes(db: &dyn Sql) -> Result<(HashMap<String, u64>, Option<Timestamp>), StoreError> {
    transaction(db, TxKind::Read, |db| {
        let mut sizes = HashMap::new();
        db.query_each(
            "SELECT segment_id, COUNT(*) FROM segment_members GROUP BY segment_id",
            sql_params![],
            &mut |r| {
                sizes.insert(r.get(0)?, r.get::<i64>(1)?.max(0) as u64);
                Ok(())
            },
        )?;
        Ok((sizes, freshness::computed_at(db)?))
    })
}

/// Where a mailing goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailingAddress {
    /// The profile's e-mail identifier (the smallest, if it has several).
    Email,
    /// The profile's postal code.
    PostalCode,
}

impl MailingAddress {
    fn column(self) -> &'static str {
        match self {
            MailingAddress::Email => {
                "(SELECT MIN(i.value) FROM identifiers i
                  WHERE i.profile_id = p.profile_id AND i.kind = 'email')"
            }
            MailingAddress::PostalCode => "p.postal_code",
        }
    }
}

/// One member of a mailing: customer number, first name, last name, address (`None`:
/// the profile has none on that channel).
pub type MailingRow = [Option<String>; 4];

/// The members of `segment_id` who granted consent `purpose`, with their `address`,
/// by customer number (profiles without one first, as on every engine) then profile id.
pub fn mailing(
    db: &dyn Sql,
    segment_id: &str,
    purpose: &str,
    address: MailingAddress,
) -> Result<Vec<MailingRow>, StoreError> {
    let sql = format!(
        "SELECT p.customer_no, p.first_name, p.last_name, {address}
         FROM segment_members m
         JOIN profiles p ON p.profile_id = m.profile_id
         JOIN consents c ON c.profile_id = m.profile_id AND c.purpose = ?1 AND c.granted = 1
         WHERE m.segment_id = ?2
         ORDER BY p.customer_no NULLS FIRST, p.profile_id",
        address = address.column()
    );
    let mut rows = Vec::new();
    db.query_each(&sql, sql_params![purpose, segment_id], &mut |r| {
        rows.push([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?]);
        Ok(())
    })?;
    Ok(rows)
}

/// A segment member as the console lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub profile_id: String,
    pub customer_no: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

/// One page of `segment_id`'s members in profile id order (`offset`, at most `limit`)
/// and how many it has in all, from one snapshot.
pub fn members_page(
    db: &dyn Sql,
    segment_id: &str,
    offset: u64,
    limit: u64,
) -> Result<(Vec<Member>, u64), StoreError> {
    let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    transaction(db, TxKind::Read, |db| {
        let total: i64 = db
            .query_one(
                "SELECT COUNT(*) FROM segment_members WHERE segment_id = ?1",
                sql_params![segment_id],
            )?
            .get(0)?;
        let mut members = Vec::new();
        db.query_each(
            "SELECT p.profile_id, p.customer_no, p.first_name, p.last_name
             FROM segment_members m JOIN profiles p ON p.profile_id = m.profile_id
             WHERE m.segment_id = ?1
             ORDER BY m.profile_id LIMIT ?2 OFFSET ?3",
            sql_params![segment_id, clamp(limit), clamp(offset)],
            &mut |r| {
                members.push(Member {
                    profile_id: r.get(0)?,
                    customer_no: r.get(1)?,
                    first_name: r.get(2)?,
                    last_name: r.get(3)?,
                });
                Ok(())
            },
        )?;
        Ok((members, total.max(0) as u64))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::BlockedIdentifier;
    use crate::store::test_support::for_each_engine;

    fn profile(db: &dyn Sql, id: &str, customer_no: Option<&str>, postal_code: Option<&str>) {
        db.execute(
            "INSERT INTO profiles (profile_id, created_at_ms, created_offset_min, customer_no,
                 first_name, last_name, postal_code)
             VALUES (?1, 0, 0, ?2, 'Ann', 'Lee', ?3)",
            sql_params![id, customer_no, postal_code],
        )
        .unwrap();
    }

    fn consent(db: &dyn Sql, id: &str, purpose: &str, granted: bool) {
        db.execute(
            "INSERT INTO consents (profile_id, purpose, granted, source, at_ms)
             VALUES (?1, ?2, ?3, 'crm', 0)",
            sql_params![id, purpose, granted],
        )
        .unwrap();
    }

    #[test]
    fn sizes_mailings_and_blocked_identifiers_are_listed() {
        for_each_engine(|database| {
            let conn = database.get().unwrap();
            let db: &dyn Sql = &*conn;
            assert_eq!(sizes(db).unwrap(), (HashMap::new(), None));

            profile(db, "p-1", Some("C-2"), Some("1011"));
            profile(db, "p-2", Some("C-1"), None);
            profile(db, "p-3", None, Some("3011"));
            profile(db, "p-4", Some("C-4"), Some("4011"));
            for (id, email) in [("p-1", "b@example.com"), ("p-1", "a@example.com")] {
                db.execute(
                    "INSERT INTO identifiers (kind, value, profile_id, source, added_at_ms)
                     VALUES ('email', ?1, ?2, 'crm', 0)",
                    sql_params![email, id],
                )
                .unwrap();
            }
            consent(db, "p-1", "email", true);
            consent(db, "p-1", "post", true);
            consent(db, "p-2", "post", true);
            consent(db, "p-3", "post", true);
            consent(db, "p-4", "post", false);
            for id in ["p-1", "p-2", "p-3", "p-4"] {
                db.execute(
                    "INSERT INTO segment_members (segment_id, profile_id) VALUES ('vip', ?1)",
                    sql_params![id],
                )
                .unwrap();
            }
            db.execute(
                "INSERT INTO segment_members (segment_id, profile_id) VALUES ('lapsing', 'p-2')",
                sql_params![],
            )
            .unwrap();
            freshness::record_run(db, Timestamp::from_unix_ms(1_000, 0)).unwrap();

            let (counts, at) = sizes(db).unwrap();
            assert_eq!(counts.get("vip"), Some(&4));
            assert_eq!(counts.get("lapsing"), Some(&1));
            assert_eq!(at, Some(Timestamp::from_unix_ms(1_000, 0)));

            let some = |v: &str| Some(v.to_string());
            assert_eq!(
                mailing(db, "vip", "email", MailingAddress::Email).unwrap(),
                vec![[some("C-2"), some("Ann"), some("Lee"), some("a@example.com")]]
            );
            // Without a customer number first, then by number; no consent, no row.
            assert_eq!(
                mailing(db, "vip", "post", MailingAddress::PostalCode).unwrap(),
                vec![
                    [None, some("Ann"), some("Lee"), some("3011")],
                    [some("C-1"), some("Ann"), some("Lee"), None],
                    [some("C-2"), some("Ann"), some("Lee"), some("1011")],
                ]
            );

            // Pages of the members, in profile id order, with the total.
            let member = |id: &str, no: Option<&str>| Member {
                profile_id: id.into(),
                customer_no: no.map(str::to_string),
                first_name: some("Ann"),
                last_name: some("Lee"),
            };
            assert_eq!(
                members_page(db, "vip", 0, 3).unwrap(),
                (
                    vec![
                        member("p-1", Some("C-2")),
                        member("p-2", Some("C-1")),
                        member("p-3", None)
                    ],
                    4
                )
            );
            assert_eq!(
                members_page(db, "vip", 3, 3).unwrap(),
                (vec![member("p-4", Some("C-4"))], 4)
            );
            assert_eq!(members_page(db, "vip", 9, 3).unwrap(), (vec![], 4));
            assert_eq!(members_page(db, "none", 0, 3).unwrap(), (vec![], 0));

            db.execute(
                "INSERT INTO blocked_identifiers (kind, value, customers, reason)
                 VALUES ('phone', '+3120000000', 7, 'shared by 7 customers')",
                sql_params![],
            )
            .unwrap();
            assert_eq!(
                blocked_identifiers(db).unwrap(),
                vec![BlockedIdentifier {
                    kind: "phone".into(),
                    value: "+3120000000".into(),
                    customers: 7,
                    reason: "shared by 7 customers".into(),
                }]
            );
        });
    }
}
