//! Profile digests for the tills (issue 4): what the campaign triggers need about a
//! card holder, pseudonymised by the card key.
//!
//! - [`build`]: pure, [`ProfileFacts`] → [`Digest`];
//! - [`facts`]: reads the facts of a profile (and the profile of a card);
//! - [`feed`]: the versioned `digest_feed` table per store (refresh, delta reads,
//!   compaction of old removals);
//! - [`refresh`]: the task that refreshes (then compacts) the feed at start, on a timer,
//!   on demand and when a traits run finished.

pub mod build;
pub mod facts;
pub mod feed;
pub mod refresh;

#[cfg(test)]
mod tests;

use rusqlite::Connection;
use till360_shared::campaign::Digest;
use till360_shared::{CardNumber, Timestamp};

pub use build::{build_digest, ProfileFacts, CAPS_WINDOW_DAYS};
pub use feed::{
    compact, compacted_through, max_version, refresh_all, refresh_store, rows_after, FeedPage,
    RefreshSummary, COMPACTION_BATCH,
};
pub use refresh::DigestRefresh;

use crate::store::StoreError;

/// The digest of `card`'s holder, fresh from the database (a till asking on a scan);
/// `None` when the card is unknown or erased.
pub fn digest_of_card(
    conn: &Connection,
    master: &[u8],
    card: &CardNumber,
    now: Timestamp,
) -> Result<Option<Digest>, StoreError> {
    let Some(profile_id) = facts::profile_of_card(conn, card)? else {
        return Ok(None);
    };
    Ok(facts::profile_facts(conn, &profile_id, now)?.map(|f| build_digest(master, &f, now)))
}
