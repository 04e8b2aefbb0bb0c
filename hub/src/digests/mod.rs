//! Profile digests for the tills (issue 4): what the campaign triggers need about a
//! card holder, pseudonymised by the card key.
//!
//! - [`build`]: pure, [`ProfileFacts`] → [`Digest`](till360_shared::campaign::Digest);
//! - the facts, the profile of a card and the versioned `digest_feed` per store (refresh,
//!   delta reads, compaction of old removals) are stored by `store::digests`;
//! - `jobs::digest_refresh`: the task that refreshes (then compacts) the feed at start,
//!   on a timer, on demand and when a traits run finished.

pub mod build;

#[cfg(test)]
mod tests;

pub use build::{build_digest, customers_since, ProfileFacts, CAPS_WINDOW_DAYS};
