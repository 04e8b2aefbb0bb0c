//! Pure: what the hub knows about one profile ([`ProfileFacts`], read by `facts.rs`)
//! → the [`Digest`] a till holds for each of the profile's cards. No IO, no clock:
//! `now` only bounds the coupon history.

#![deny(clippy::disallowed_methods)]

use chrono::{Datelike, NaiveDate};
use till360_shared::campaign::{Digest, MonthDay};
use till360_shared::coupon::derive_customer_key;
use till360_shared::Timestamp;

/// How far back coupons (and would-haves) count towards the caps a till applies: no
/// campaign caps over a longer window than a year.
pub const CAPS_WINDOW_DAYS: i64 = 365;
const DAY_MS: i64 = 86_400_000;

/// One profile as stored on the hub, already narrowed to what a digest needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileFacts {
    pub profile_id: String,
    /// `profiles.birth_date` as stored (`YYYY-MM-DD`).
    pub birth_date: Option<String>,
    /// `profiles.member_since` as stored (`YYYY-MM-DD`).
    pub member_since: Option<String>,
    /// When the hub first saw the profile (the fallback for `member_since`).
    pub first_seen: Timestamp,
    pub points: Option<i64>,
    /// The latest transaction of the profile, any store.
    pub last_visit: Option<Timestamp>,
    /// The `personalization` consent as last decided (`None`: never asked).
    pub personalisation: Option<bool>,
    pub segments: Vec<String>,
    /// Coupons and would-haves of the profile: (campaign id, issued at).
    pub coupons: Vec<(String, Timestamp)>,
}

/// The window of `[digests] months`: a profile with a transaction in the store at or
/// after this instant is the store's customer.
pub fn customers_since(now: Timestamp, months: u32) -> Timestamp {
    // A month as 30.44 days: the window needs no calendar precision.
    let ms = i64::from(months).saturating_mul(DAY_MS * 3044 / 100);
    Timestamp::from_unix_ms(now.unix_ms.saturating_sub(ms), now.offset_min)
}

/// The first instant whose coupons still count towards caps at `now`.
pub fn caps_since(now: Timestamp) -> Timestamp {
    Timestamp::from_unix_ms(
        now.unix_ms.saturating_sub(CAPS_WINDOW_DAYS * DAY_MS),
        now.offset_min,
    )
}

/// The digest of `facts`. Dates the CRM stored in another shape count as unknown
/// (a digest never fails to build).
///
/// A till holds only what its triggers need. Without personalisation consent it gets
/// none of the profile's fields (birthday, membership, points, last visit, segments):
/// only the pseudonymous customer key, so the customer stays in the same control group
/// at every till and visit, and the coupons already given, so the caps still protect
/// them. The consent flag is `false`, so every profile trigger and segment campaign
/// skips them (`no_consent`), as before.
pub fn build_digest(master: &[u8], facts: &ProfileFacts, now: Timestamp) -> Digest {
    let since = caps_since(now).unix_ms;
    let mut caps_used: Vec<(String, Timestamp)> = facts
        .coupons
        .iter()
        .filter(|(_, at)| at.unix_ms >= since)
        .cloned()
        .collect();
    // Stable bytes for the same history, so a refresh sees "unchanged".
    caps_used.sort_by(|a, b| (a.1.unix_ms, &a.0).cmp(&(b.1.unix_ms, &b.0)));
    let customer_key = derive_customer_key(master, &facts.profile_id);
    if facts.personalisation != Some(true) {
        return Digest {
            customer_key,
            caps_used,
            ..Digest::default()
        };
    }
    let mut segments = facts.segments.clone();
    segments.sort();
    segments.dedup();
    Digest {
        customer_key,
        birthday: facts
            .birth_date
            .as_deref()
            .and_then(parse_date)
            .map(|d| MonthDay {
                month: d.month() as u8,
                day: d.day() as u8,
            }),
        member_since: facts
            .member_since
            .as_deref()
            .and_then(parse_date)
            .or_else(|| Some(facts.first_seen.local().date_naive())),
        points: facts.points.unwrap_or(0),
        last_visit: facts.last_visit,
        personalisation_consent: true,
        segments,
        caps_used,
    }
}

fn parse_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").ok()
}
