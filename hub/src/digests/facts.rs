//! Reads a profile's [`ProfileFacts`] from the hub's database (the same tables the
//! profile view reads), and the profile a card belongs to.

use rusqlite::{Connection, OptionalExtension};
use till360_shared::{CardNumber, Timestamp};

use super::build::{caps_since, ProfileFacts};
use crate::store::StoreError;

/// A card flagged as suspicious gets no digest, so no till prints it a personal coupon.
const NOT_FLAGGED: &str = "AND value NOT IN
    (SELECT card FROM suspicious_cards WHERE cleared_at_ms IS NULL)";

/// The profile `card` belongs to; `None` when unknown, erased (an erase deletes the
/// card's identifier) or flagged as suspicious.
pub fn profile_of_card(conn: &Connection, card: &CardNumber) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT profile_id FROM identifiers WHERE kind = 'card' AND value = ?1 {NOT_FLAGGED}"
        ))?
        .query_row([card.as_str()], |r| r.get(0))
        .optional()?)
}

/// What `card` is to `store`: `None` when unknown (or erased); else whether it is flagged
/// as suspicious and whether its holder has a transaction in the store at or after
/// `since_ms` (the store's customer, whom its digest feed carries).
pub fn standing_at_store(
    conn: &Connection,
    card: &CardNumber,
    store: &str,
    since_ms: i64,
) -> Result<Option<(bool, bool)>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM suspicious_cards
                            WHERE card = i.value AND cleared_at_ms IS NULL),
                    EXISTS (SELECT 1 FROM transactions t WHERE t.profile_id = i.profile_id
                            AND t.store = ?2 AND t.at_ms >= ?3)
             FROM identifiers i WHERE i.kind = 'card' AND i.value = ?1",
        )?
        .query_row(rusqlite::params![card.as_str(), store, since_ms], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?)
}

/// The valid card numbers of a profile that are not flagged as suspicious (a stored value
/// that is not a card is skipped: a till could never scan it).
pub fn cards_of(conn: &Connection, profile_id: &str) -> Result<Vec<CardNumber>, StoreError> {
    let values = conn
        .prepare_cached(&format!(
            "SELECT value FROM identifiers WHERE profile_id = ?1 AND kind = 'card'
                 {NOT_FLAGGED} ORDER BY value"
        ))?
        .query_map([profile_id], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(values
        .iter()
        .filter_map(|v| match CardNumber::parse(v) {
            Ok(card) => Some(card),
            Err(e) => {
                tracing::warn!(
                    "profile {profile_id}: stored card {:?} is invalid: {e}",
                    till360_shared::card::masked(v)
                );
                None
            }
        })
        .collect())
}

/// Everything a digest needs about `profile_id`; `None` when there is no such profile
/// (erased, or merged away). Coupons older than the caps window at `now` are not read.
pub fn profile_facts(
    conn: &Connection,
    profile_id: &str,
    now: Timestamp,
) -> Result<Option<ProfileFacts>, StoreError> {
    let row = conn
        .prepare_cached(
            "SELECT birth_date, member_since, points, created_at_ms, created_offset_min
             FROM profiles WHERE profile_id = ?1",
        )?
        .query_row([profile_id], |r| {
            Ok((
                r.get::<_, Option<String>>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<i64>>(2)?,
                Timestamp::from_unix_ms(r.get(3)?, r.get(4)?),
            ))
        })
        .optional()?;
    let Some((birth_date, member_since, points, first_seen)) = row else {
        return Ok(None);
    };
    let last_visit = conn
        .prepare_cached(
            "SELECT at_ms, offset_min FROM transactions WHERE profile_id = ?1 AND unbalanced = 0
             ORDER BY at_ms DESC LIMIT 1",
        )?
        .query_row([profile_id], |r| {
            Ok(Timestamp::from_unix_ms(r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let personalisation = conn
        .prepare_cached(
            "SELECT granted FROM consents WHERE profile_id = ?1 AND purpose = 'personalization'",
        )?
        .query_row([profile_id], |r| r.get::<_, i64>(0))
        .optional()?
        .map(|granted| granted != 0);
    let segments = conn
        .prepare_cached(
            "SELECT segment_id FROM segment_members WHERE profile_id = ?1 ORDER BY segment_id",
        )?
        .query_map([profile_id], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    // Printed coupons and would-haves alike: control and treated are capped the same.
    let coupons = conn
        .prepare_cached(
            "SELECT campaign_id, issued_at_ms, offset_min FROM coupons
             WHERE profile_id = ?1 AND issued_at_ms >= ?2
             ORDER BY issued_at_ms, campaign_id",
        )?
        .query_map(
            rusqlite::params![profile_id, caps_since(now).unix_ms],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    Timestamp::from_unix_ms(r.get(1)?, r.get(2)?),
                ))
            },
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(ProfileFacts {
        profile_id: profile_id.to_string(),
        birth_date,
        member_since,
        first_seen,
        points,
        last_visit,
        personalisation,
        segments,
        coupons,
    }))
}
