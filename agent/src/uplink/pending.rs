//! The till core's requests awaiting the hub's answer (sans-IO: `now` is an argument).
//!
//! Every coupon check is answered exactly once: with the hub's verdict when it comes in
//! time, else with `None` (at its deadline, when the set is full, or when the connection
//! ends). A digest request has no "no answer" news: the till core keeps its cached
//! digest. Answers are matched to the oldest request for the same card or code.

#![deny(clippy::disallowed_methods)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use till360_shared::wire::CouponVerdict;
use till360_shared::CardNumber;

use crate::hub_link::HubNews;

/// Requests outstanding at once; beyond that the oldest is given up.
pub const MAX_PENDING: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Asked {
    Digest(CardNumber),
    Coupon(String),
}

#[derive(Debug)]
struct Pending {
    asked: Asked,
    deadline: Instant,
}

#[derive(Debug)]
pub struct PendingRequests {
    entries: VecDeque<Pending>,
    timeout: Duration,
    capacity: usize,
}

/// What became of a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// It answers a request still waiting: pass it on.
    InTime,
    /// Nobody waits for it any more (too late, or never asked): drop it.
    Late,
}

impl PendingRequests {
    pub fn new(timeout: Duration, capacity: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            timeout,
            capacity: capacity.max(1),
        }
    }

    /// A digest request was sent at `now`. Returns the news of a request given up to
    /// make room.
    pub fn digest_sent(&mut self, card: CardNumber, now: Instant) -> Option<HubNews> {
        self.push(Asked::Digest(card), now)
    }

    /// A coupon check was sent at `now`. Returns the news of a request given up to
    /// make room.
    pub fn coupon_sent(&mut self, code: String, now: Instant) -> Option<HubNews> {
        self.push(Asked::Coupon(code), now)
    }

    fn push(&mut self, asked: Asked, now: Instant) -> Option<HubNews> {
        let evicted = if self.entries.len() >= self.capacity {
            self.entries.pop_front().and_then(given_up)
        } else {
            None
        };
        self.entries.push_back(Pending {
            asked,
            deadline: now + self.timeout,
        });
        evicted
    }

    /// The hub answered a digest request at `now`.
    pub fn digest_reply(&mut self, card: &CardNumber, now: Instant) -> Reply {
        self.take(|a| matches!(a, Asked::Digest(c) if c == card), now)
    }

    /// The hub answered a coupon check at `now`: the news to deliver, if anyone waits.
    pub fn coupon_reply(
        &mut self,
        code: &str,
        verdict: CouponVerdict,
        now: Instant,
    ) -> Option<HubNews> {
        match self.take(|a| matches!(a, Asked::Coupon(c) if c == code), now) {
            Reply::InTime => Some(HubNews::CouponVerdict {
                code: code.to_string(),
                verdict: Some(verdict),
            }),
            Reply::Late => None,
        }
    }

    fn take(&mut self, matches: impl Fn(&Asked) -> bool, now: Instant) -> Reply {
        let Some(index) = self
            .entries
            .iter()
            .position(|p| matches(&p.asked) && now <= p.deadline)
        else {
            return Reply::Late;
        };
        self.entries.remove(index);
        Reply::InTime
    }

    /// The earliest deadline of a waiting request.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.entries.iter().map(|p| p.deadline).min()
    }

    /// Gives up every request whose deadline passed before `now`; the news to deliver.
    pub fn expire(&mut self, now: Instant) -> Vec<HubNews> {
        let mut news = Vec::new();
        self.entries.retain(|p| {
            if p.deadline < now {
                news.extend(given_up(Pending {
                    asked: p.asked.clone(),
                    deadline: p.deadline,
                }));
                false
            } else {
                true
            }
        });
        news
    }

    /// The connection ended: nothing will be answered.
    pub fn give_up_all(&mut self) -> Vec<HubNews> {
        self.entries.drain(..).filter_map(given_up).collect()
    }
}

fn given_up(pending: Pending) -> Option<HubNews> {
    match pending.asked {
        Asked::Digest(_) => None,
        Asked::Coupon(code) => Some(HubNews::CouponVerdict {
            code,
            verdict: None,
        }),
    }
}

/// The answer to a request made while the hub cannot be asked.
pub fn offline_answer(request: crate::hub_link::HubRequest) -> Option<HubNews> {
    match request {
        crate::hub_link::HubRequest::Digest { .. } => None,
        crate::hub_link::HubRequest::CouponCheck { code } => Some(HubNews::CouponVerdict {
            code,
            verdict: None,
        }),
    }
}
