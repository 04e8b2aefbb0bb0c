//! The erasure log: every card erased on the hub gets a version, so each agent can be
//! brought up to date after any reconnect ("an erase on the hub reaches every till",
//! DESIGN.md principle 7). Rows hold the card number only as long as tills may still
//! hold it; they are the one place the hub keeps an erased identifier, for that purpose.

use rusqlite::{params, Connection};
use till360_shared::{CardNumber, Timestamp};

use super::StoreError;

/// Appends an erasure (call it inside the transaction that erases the profile) and
/// returns its version.
pub fn record_erasure(
    conn: &Connection,
    card: &CardNumber,
    now: Timestamp,
) -> Result<u64, StoreError> {
    conn.prepare_cached("INSERT INTO erasures (card, erased_at_ms) VALUES (?1, ?2)")?
        .execute(params![card.as_str(), now.unix_ms])?;
    Ok(conn.last_insert_rowid().max(0) as u64)
}

/// The newest erasure version (0 when nothing was ever erased).
pub fn erasure_version(conn: &Connection) -> Result<u64, StoreError> {
    let v: i64 = conn.query_row("SELECT coalesce(max(version), 0) FROM erasures", [], |r| {
        r.get(0)
    })?;
    Ok(v.max(0) as u64)
}

/// Erasures after `after_version`, oldest first, at most `limit`.
pub fn erasures_since(
    conn: &Connection,
    after_version: u64,
    limit: usize,
) -> Result<Vec<(u64, CardNumber)>, StoreError> {
    let after = i64::try_from(after_version).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(
        "SELECT version, card FROM erasures WHERE version > ?1 ORDER BY version LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![after, limit], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (version, card) = row?;
        let card = CardNumber::parse(&card)
            .map_err(|e| StoreError::Corrupt(format!("erasure {version}: {e}")))?;
        out.push((version.max(0) as u64, card));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_grow_and_resume_after_any_version() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(crate::store::SCHEMA).unwrap();
        assert_eq!(erasure_version(&conn).unwrap(), 0);
        let a = CardNumber::parse("4006381333931").unwrap();
        let b = CardNumber::parse("96385074").unwrap();
        let now = Timestamp::from_unix_ms(1, 0);
        assert_eq!(record_erasure(&conn, &a, now).unwrap(), 1);
        assert_eq!(record_erasure(&conn, &b, now).unwrap(), 2);
        assert_eq!(erasure_version(&conn).unwrap(), 2);
        assert_eq!(
            erasures_since(&conn, 0, 10).unwrap(),
            vec![(1, a), (2, b.clone())]
        );
        assert_eq!(erasures_since(&conn, 1, 10).unwrap(), vec![(2, b)]);
        assert!(erasures_since(&conn, 2, 10).unwrap().is_empty());
    }
}
