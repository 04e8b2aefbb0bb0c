//! Segment listings for marketers (`GET /api/v1/segments`, the mailing CSV) and the
//! blocked identifiers: the rows the last traits recompute stored, read as they are.
//! Which profile belongs to a segment is decided by the pure `segments` engine at the
//! recompute (`store::traits`), not here.

use std::collections::HashMap;

use till360_shared::Timestamp;

use super::freshness;
use super::sql::{transaction, Sql, TxKind};
use super::StoreError;
use crate::identity::BlockedIdentifier;
use crate::sql_params;

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

/// Every identifier blocked from merging, by kind and value.
pub fn blocked_identifiers(db: &dyn Sql) -> Result<Vec<BlockedIdentifier>, StoreError> {
    let mut rows = Vec::new();
    db.query_each(
        "SELECT kind, value, customers, reason FROM blocked_identifiers ORDER BY kind, value",
        sql_params![],
        &mut |r| {
            rows.push(BlockedIdentifier {
                kind: r.get(0)?,
                value: r.get(1)?,
                customers: r.get::<i64>(2)?.max(0) as u64,
                reason: r.get(3)?,
            });
            Ok(())
        },
    )?;
    Ok(rows)
}
