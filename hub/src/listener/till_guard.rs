//! What a till may ask at a scan, and how often (pure: `now` is an argument).
//!
//! The rule. A digest request *is* a scan: the till asks for the card just scanned. The
//! hub cannot see the scan itself (its event arrives later, through the journal), so it
//! answers by what the card is to the asking till's store:
//!
//! - a **customer of the store** (a transaction there within `[digests] months`: the card
//!   the store's digest feed carries anyway) gets its fresh digest;
//! - a **customer of other stores only** (a first visit here) gets its digest too, but
//!   from a small allowance per till (`foreign_cards_per_hour`): real first visits are
//!   few, and a till asking for many strangers is reading the chain's customers, not
//!   serving them; beyond the allowance the answer is "no digest" (no personal coupon);
//! - a card **flagged as suspicious** gets no digest (not counted against the till);
//! - an **unknown card** gets "no digest" and counts as unknown.
//!
//! A coupon check is answered for any code (customers bring other stores' coupons); a
//! code that is not genuine counts as unknown. Every request, digest or coupon, draws
//! from the till's token bucket (`burst`, `per_minute`): beyond it the hub does not
//! answer, and the till falls back to its cache (as when the hub is slow), so a cached
//! digest is never removed by a refusal. A till with `probe_threshold` unknown cards and
//! codes within `probe_window_minutes` is reported as probing (`GET /api/v1/agents`,
//! and a warning in the log); the report stays until the hub restarts.
//!
//! The state is per till, not per connection: reconnecting does not refill the bucket.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use till360_shared::{AgentId, Timestamp};

use crate::config::TillRequestsConfig;

const MINUTE_MS: i64 = 60_000;

/// A token bucket: `capacity` tokens, refilled at `per_ms` a millisecond.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBucket {
    capacity: f64,
    per_ms: f64,
    tokens: f64,
    last_ms: i64,
}

impl TokenBucket {
    /// Full at `now_ms`; `per_minute` tokens come back a minute.
    pub fn new(capacity: u32, per_minute: f64, now_ms: i64) -> Self {
        Self {
            capacity: f64::from(capacity),
            per_ms: per_minute / MINUTE_MS as f64,
            tokens: f64::from(capacity),
            last_ms: now_ms,
        }
    }

    /// Takes a token if there is one at `now_ms` (a clock going back refills nothing).
    pub fn take(&mut self, now_ms: i64) -> bool {
        let elapsed = (now_ms - self.last_ms).max(0) as f64;
        self.tokens = (self.tokens + elapsed * self.per_ms).min(self.capacity);
        self.last_ms = self.last_ms.max(now_ms);
        // A hair of slack: a refill of exactly one token must not come out at 0.999….
        if self.tokens >= 1.0 - 1e-9 {
            self.tokens = (self.tokens - 1.0).max(0.0);
            true
        } else {
            false
        }
    }
}

/// What a card is to the asking till's store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    StoreCustomer,
    OtherStores,
    Flagged,
    Unknown,
}

/// How to answer a digest request whose card has a [`Standing`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardAnswer {
    /// With the card holder's digest.
    Digest,
    /// "No digest" (`DigestReply { digest: None }`).
    NoDigest,
}

/// A till reported as probing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Probing {
    /// Unknown cards and forged codes since `since`.
    pub unknown_cards: u64,
    pub unknown_codes: u64,
    /// The first unknown request of the window that tripped the report (hub clock).
    pub since: String,
}

/// One till's requests.
#[derive(Debug, Clone, PartialEq)]
pub struct TillGuard {
    config: TillRequestsConfig,
    requests: TokenBucket,
    foreign: TokenBucket,
    /// Unknown requests within the window: (at, is a card).
    recent: VecDeque<(i64, bool)>,
    /// Since when the till is probing, with the counts since then.
    probing: Option<(i64, u64, u64)>,
}

impl TillGuard {
    pub fn new(config: TillRequestsConfig, now_ms: i64) -> Self {
        let foreign_burst = config.foreign_cards_per_hour.clamp(0, 5);
        Self {
            requests: TokenBucket::new(config.burst, f64::from(config.per_minute), now_ms),
            foreign: TokenBucket::new(
                foreign_burst,
                f64::from(config.foreign_cards_per_hour) / 60.0,
                now_ms,
            ),
            config,
            recent: VecDeque::new(),
            probing: None,
        }
    }

    /// Whether a request (digest or coupon) at `now_ms` is answered at all.
    pub fn admit(&mut self, now_ms: i64) -> bool {
        self.requests.take(now_ms)
    }

    /// The answer to a digest request for a card of `standing`; `true` in the second
    /// place when this request made the till a prober (log it).
    pub fn card(&mut self, standing: Standing, now_ms: i64) -> (CardAnswer, bool) {
        match standing {
            Standing::StoreCustomer => (CardAnswer::Digest, false),
            Standing::OtherStores if self.foreign.take(now_ms) => (CardAnswer::Digest, false),
            Standing::OtherStores | Standing::Flagged => (CardAnswer::NoDigest, false),
            Standing::Unknown => (CardAnswer::NoDigest, self.unknown(true, now_ms)),
        }
    }

    /// Notes a checked coupon code; `true` when this request made the till a prober.
    pub fn code(&mut self, genuine: bool, now_ms: i64) -> bool {
        !genuine && self.unknown(false, now_ms)
    }

    fn unknown(&mut self, card: bool, now_ms: i64) -> bool {
        if let Some((_, cards, codes)) = &mut self.probing {
            *if card { cards } else { codes } += 1;
            return false;
        }
        let window = i64::from(self.config.probe_window_minutes) * MINUTE_MS;
        self.recent.push_back((now_ms, card));
        while self
            .recent
            .front()
            .is_some_and(|(at, _)| *at <= now_ms - window)
        {
            self.recent.pop_front();
        }
        if self.recent.len() < self.config.probe_threshold as usize {
            return false;
        }
        let since = self.recent.front().map_or(now_ms, |(at, _)| *at);
        let cards = self.recent.iter().filter(|(_, c)| *c).count() as u64;
        let codes = self.recent.len() as u64 - cards;
        self.probing = Some((since, cards, codes));
        self.recent.clear();
        true
    }

    /// The probing report, if the till probed.
    pub fn probing(&self) -> Option<Probing> {
        self.probing.map(|(since, cards, codes)| Probing {
            unknown_cards: cards,
            unknown_codes: codes,
            since: Timestamp::from_unix_ms(since, 0).to_rfc3339(),
        })
    }
}

/// Every till's guard, shared by its connections and the API (cheap to clone).
#[derive(Debug, Clone)]
pub struct TillGuards {
    config: TillRequestsConfig,
    /// `[digests] months`: a card with a transaction at the store within it is the
    /// store's customer.
    customer_months: u32,
    tills: Arc<Mutex<BTreeMap<AgentId, TillGuard>>>,
}

impl TillGuards {
    pub fn new(config: TillRequestsConfig, customer_months: u32) -> Self {
        Self {
            config,
            customer_months,
            tills: Arc::default(),
        }
    }

    pub fn customer_months(&self) -> u32 {
        self.customer_months
    }

    /// Runs `f` on `agent`'s guard (created on first use).
    pub fn with<T>(&self, agent: &AgentId, now_ms: i64, f: impl FnOnce(&mut TillGuard) -> T) -> T {
        let mut tills = self.tills.lock().unwrap_or_else(|p| p.into_inner());
        let guard = tills
            .entry(agent.clone())
            .or_insert_with(|| TillGuard::new(self.config, now_ms));
        f(guard)
    }

    /// The probing report of `store`/`till`, if it probed.
    pub fn probing(&self, store: &str, till: &str) -> Option<Probing> {
        let tills = self.tills.lock().unwrap_or_else(|p| p.into_inner());
        tills.get(&AgentId::new(store, till))?.probing()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> TillRequestsConfig {
        TillRequestsConfig {
            burst: 3,
            per_minute: 6,
            foreign_cards_per_hour: 2,
            probe_threshold: 4,
            probe_window_minutes: 10,
        }
    }

    #[test]
    fn the_bucket_allows_a_burst_then_its_rate() {
        let mut b = TokenBucket::new(3, 6.0, 0);
        assert!((0..3).all(|_| b.take(0)));
        assert!(!b.take(0), "the burst is spent");
        assert!(!b.take(9_999), "a token comes back every 10 s");
        assert!(b.take(10_000));
        assert!(!b.take(10_000));
        // A long pause refills up to the burst, not more.
        assert_eq!((0..5).filter(|_| b.take(3_600_000)).count(), 3);
        // A clock going back refills nothing.
        assert!(!b.take(0));
    }

    #[test]
    fn store_customers_always_strangers_from_an_allowance() {
        let mut g = TillGuard::new(config(), 0);
        for _ in 0..10 {
            assert_eq!(
                g.card(Standing::StoreCustomer, 0),
                (CardAnswer::Digest, false)
            );
        }
        assert_eq!(g.card(Standing::OtherStores, 0).0, CardAnswer::Digest);
        assert_eq!(g.card(Standing::OtherStores, 0).0, CardAnswer::Digest);
        assert_eq!(g.card(Standing::OtherStores, 0).0, CardAnswer::NoDigest);
        // Two an hour: one back after 30 minutes.
        assert_eq!(
            g.card(Standing::OtherStores, 30 * MINUTE_MS).0,
            CardAnswer::Digest
        );
        assert_eq!(g.card(Standing::Flagged, 0).0, CardAnswer::NoDigest);
        assert_eq!(g.probing(), None, "none of this is probing");
    }

    #[test]
    fn unknown_cards_and_codes_within_the_window_are_probing() {
        let mut g = TillGuard::new(config(), 0);
        // Spread out: never four within ten minutes.
        for i in 0..8 {
            assert!(!g.card(Standing::Unknown, i * 4 * MINUTE_MS).1);
        }
        assert_eq!(g.probing(), None);
        let t = 100 * MINUTE_MS;
        assert!(!g.card(Standing::Unknown, t).1);
        assert!(!g.code(true, t), "a genuine code is no probe");
        assert!(!g.code(false, t + 1));
        assert!(!g.card(Standing::Unknown, t + 2).1);
        assert!(g.code(false, t + 3), "the fourth unknown within the window");
        assert!(!g.code(false, t + 4), "reported once");
        assert_eq!(
            g.probing(),
            Some(Probing {
                unknown_cards: 2,
                unknown_codes: 3,
                since: Timestamp::from_unix_ms(t, 0).to_rfc3339(),
            })
        );
    }

    #[test]
    fn guards_are_per_till_and_outlive_connections() {
        let guards = TillGuards::new(config(), 12);
        let a = AgentId::new("S001", "T01");
        let b = AgentId::new("S001", "T02");
        assert_eq!(
            (0..5)
                .filter(|_| guards.with(&a, 0, |g| g.admit(0)))
                .count(),
            3
        );
        assert!(
            guards.with(&b, 0, |g| g.admit(0)),
            "another till has its own bucket"
        );
        assert!(
            !guards.with(&a, 0, |g| g.admit(0)),
            "a's bucket stays spent"
        );
        assert_eq!(guards.probing("S001", "T01"), None);
    }
}
