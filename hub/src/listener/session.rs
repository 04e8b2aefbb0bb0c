//! One agent connection as a pure state machine: messages in, steps out. The IO task
//! in `connection.rs` performs the steps (store calls, frames) and nothing else.
//!
//! The erasure downlink (`shared::sync::ErasureDownlink`) runs beside the uplink:
//! after `Welcome`, [`HubSession::poll_erasures`] says which part of the erasure log
//! to read and [`HubSession::erasure_frame`] turns the rows into the frame to send.
//! The digest downlink works the same way ([`HubSession::poll_digests`],
//! [`HubSession::digest_frame`]); the on-scan requests (`DigestRequest`,
//! `CouponCheck`) become steps whose store results [`HubSession::digest_reply`] and
//! [`HubSession::coupon_reply`] turn into answers.

#![deny(clippy::disallowed_methods)]

use till360_shared::campaign::Digest;
use till360_shared::codec::CodecError;
use till360_shared::coupon::CardKey;
use till360_shared::sync::ErasureDownlink;
use till360_shared::wire::{CouponVerdict, Message, Refusal, TillHealth};
use till360_shared::{AgentId, CardNumber, Event};

use crate::store::digests::FeedPage;
use crate::store::{IngestOutcome, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitingHello,
    Streaming,
}

/// What the connection task must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The hello matched the certificate: read the high-water mark, answer `Welcome`.
    Welcome {
        journal_last_seq: u64,
        software: String,
    },
    /// Commit these events for the certificate's agent, then answer with [`HubSession::after_ingest`].
    Ingest(Vec<Event>),
    /// Check the agent's journal chain claim (its link at `last_seq`) against the
    /// hub's; nothing to answer (a break is recorded, not refused: nothing is lost).
    Chain { last_seq: u64, hash: [u8; 32] },
    /// Send `Refused` and close the connection.
    Refuse { reason: Refusal, detail: String },
    /// The agent has applied erasures up to this version (its subscribe, or an
    /// `ErasuresApplied`); nothing to answer.
    ErasuresApplied { up_to_version: u64 },
    /// Read the card holder's digest, answer with [`HubSession::digest_reply`].
    DigestRequest { card: CardNumber },
    /// Check the code, answer with [`HubSession::coupon_reply`].
    CouponCheck { code: String },
    /// Record the till's health report; nothing to answer.
    Health(TillHealth),
    /// Compare the till's clock with the hub's; nothing to answer.
    TillClock { unix_ms: i64 },
}

/// Digests per `Digests` frame, at most.
pub const DIGEST_BATCH: usize = 1000;

/// What to read from the store's digest feed next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestPoll {
    /// Rows with a version after this one...
    pub after: u64,
    /// ...at most this many.
    pub limit: usize,
}

/// The digest downlink of one connection.
#[derive(Debug, Default)]
struct DigestDownlink {
    /// The version the agent subscribed with (`None`: not subscribed).
    held: Option<u64>,
    /// Decided at the first poll: the first frame tells the agent to drop its cache.
    reset_pending: bool,
    /// The agent starts from an empty cache: removals up to `initial_max` (the feed's
    /// newest version at the first poll) mean nothing to it.
    from_empty: bool,
    initial_max: u64,
    started: bool,
    /// The version the agent holds once it has read what was sent.
    sent: u64,
}

/// Codes per `Redeemed` frame, at most.
pub const REDEEMED_BATCH: usize = 1000;

/// Cards per `Erasures` frame.
pub const ERASURE_BATCH: usize = 500;
/// Erasure versions sent but not yet applied by the agent, at most.
pub const ERASURE_WINDOW: u64 = 4 * ERASURE_BATCH as u64;

/// The answer to a finished store call; `close` means "after sending, close".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub message: Message,
    pub close: bool,
}

#[derive(Debug)]
pub struct HubSession {
    agent: AgentId,
    phase: Phase,
    /// `Welcome` was sent: downlink frames may follow.
    welcomed: bool,
    erasures: ErasureDownlink,
    /// The campaign version the agent subscribed with (`None`: not subscribed).
    campaign_version: Option<u64>,
    /// The `Campaigns` frame went out on this connection (once per connection).
    campaigns_sent: bool,
    digests: DigestDownlink,
    /// The redeemed-codes version the agent holds: subscribed, then what was sent
    /// (`None`: not subscribed).
    redeemed: Option<u64>,
}

impl HubSession {
    /// `agent` is the identity from the client certificate.
    pub fn new(agent: AgentId) -> Self {
        Self {
            agent,
            phase: Phase::AwaitingHello,
            welcomed: false,
            erasures: ErasureDownlink::new(ERASURE_BATCH, ERASURE_WINDOW),
            campaign_version: None,
            campaigns_sent: false,
            digests: DigestDownlink::default(),
            redeemed: None,
        }
    }

    /// What to read from the redeemed-codes ledger whose newest commit is `hub_max`:
    /// `(after, limit)`, or `None` before `Welcome`, unsubscribed, or up to date. An
    /// agent ahead of the hub (a replaced database) gets nothing until the ledger
    /// passes it.
    pub fn poll_redeemed(&self, hub_max: u64) -> Option<(u64, usize)> {
        let held = self.redeemed.filter(|_| self.welcomed)?;
        (held < hub_max).then_some((held, REDEEMED_BATCH))
    }

    /// The `Redeemed` frame for rows `(commit_seq, code)` read after
    /// [`Self::poll_redeemed`]. None of them (no code of this store was committed after
    /// what was sent): nothing to send, and the agent counts as up to `hub_max`.
    pub fn redeemed_frame(&mut self, rows: Vec<(u64, String)>, hub_max: u64) -> Option<Message> {
        let held = self.redeemed.as_mut()?;
        let Some(last) = rows.last().map(|(v, _)| *v) else {
            *held = (*held).max(hub_max);
            return None;
        };
        if last <= *held {
            *held = (*held).max(hub_max);
            return None;
        }
        *held = last;
        Some(Message::Redeemed {
            codes: rows.into_iter().map(|(_, code)| code).collect(),
            up_to_version: last,
        })
    }

    /// The ledger could not be read: the agent resumes on a new connection.
    pub fn redeemed_unavailable(&self, err: StoreError) -> Reply {
        unavailable(err)
    }

    /// Whether a `Campaigns` frame may be due: after `Welcome`, to a subscribed agent,
    /// not yet sent on this connection (the frame's version decides, see
    /// [`Self::campaigns_due`]).
    pub fn campaigns_pending(&self) -> bool {
        self.welcomed && !self.campaigns_sent && self.campaign_version.is_some()
    }

    /// The campaign frame could not be built (the database failed).
    pub fn campaigns_unavailable(&self, err: StoreError) -> Reply {
        unavailable(err)
    }

    /// Whether the till's campaign frame (at `hub_version`) must be sent now: after
    /// `Welcome`, to a subscribed agent holding another version, once.
    pub fn campaigns_due(&self, hub_version: u64) -> bool {
        self.welcomed
            && !self.campaigns_sent
            && self
                .campaign_version
                .is_some_and(|held| held != hub_version)
    }

    /// The `Campaigns` frame is being sent.
    pub fn campaigns_sent(&mut self) {
        self.campaigns_sent = true;
    }

    /// What to read from the erasure log standing at `hub_version`: erasures after the
    /// returned version, at most the returned count (see `ErasureDownlink::poll`).
    pub fn poll_erasures(&self, hub_version: u64) -> Option<(u64, usize)> {
        if !self.welcomed {
            return None;
        }
        self.erasures.poll(hub_version)
    }

    /// The `Erasures` frame for rows read after [`Self::poll_erasures`].
    pub fn erasure_frame(
        &mut self,
        rows: Vec<(u64, Vec<CardKey>)>,
        hub_version: u64,
    ) -> Option<Message> {
        self.erasures.frame(rows, hub_version)
    }

    pub fn agent(&self) -> &AgentId {
        &self.agent
    }

    /// Whether digests may flow: after `Welcome`, to an agent that subscribed.
    pub fn digests_subscribed(&self) -> bool {
        self.welcomed && self.digests.held.is_some()
    }

    /// What to read from the agent's store's feed, whose newest version is `store_max`
    /// (`None`: the agent is up to date). The first call decides whether the agent must
    /// drop its cache: it holds nothing (0), or more than the feed has (the feed was
    /// rebuilt); then the whole feed is sent from the start.
    pub fn poll_digests(&mut self, store_max: u64) -> Option<DigestPoll> {
        if !self.welcomed {
            return None;
        }
        let held = self.digests.held?;
        let d = &mut self.digests;
        if !d.started {
            d.started = true;
            d.initial_max = store_max;
            if held == 0 || held > store_max {
                d.reset_pending = true;
                d.from_empty = true;
                d.sent = 0;
            } else {
                d.sent = held;
            }
        }
        // An agent holding a cache the feed no longer knows hears so even when the
        // feed is empty; an empty agent of an empty store hears nothing.
        let must_reset = d.reset_pending && held > 0;
        (must_reset || d.sent < store_max).then_some(DigestPoll {
            after: d.sent,
            limit: DIGEST_BATCH,
        })
    }

    /// The `Digests` frame for a page read after [`Self::poll_digests`] (`None`:
    /// nothing to send). A page of a compacted feed whose dropped removals the agent may
    /// still need (it read less than `compacted_through`, and its cache is not about
    /// to be emptied) is not sent: the agent starts over with a reset from the next
    /// poll, as if it held more than the feed has.
    pub fn digest_frame(&mut self, page: FeedPage, store_max: u64) -> Option<Message> {
        let d = &mut self.digests;
        let emptying = d.reset_pending && d.sent == 0;
        // Removals dropped at or below the max a download from empty started at were
        // removals before it began: the agent cannot hold their cards from it. Only a
        // compaction past that start may have dropped a removal it needs.
        let compacted_before_start = d.from_empty && page.compacted_through <= d.initial_max;
        if page.compacted_through > d.sent && !emptying && !compacted_before_start {
            d.reset_pending = true;
            d.from_empty = true;
            d.initial_max = store_max;
            d.sent = 0;
            return None;
        }
        let reset = d.reset_pending;
        let Some(last) = page.last_version else {
            // Nothing after what was sent: the agent is up to date at the feed's max
            // (the rows above the newest one were removals compacted away, or the max
            // was read before a rebuild). It is told so, and needs nothing next time.
            let behind = d.sent < store_max;
            d.sent = d.sent.max(store_max);
            d.reset_pending = false;
            let held = d.held.unwrap_or(0);
            return ((reset && held > 0) || behind).then_some(Message::Digests {
                entries: Vec::new(),
                up_to_version: d.sent,
                reset: reset && held > 0,
            });
        };
        d.sent = last;
        d.reset_pending = false;
        let mut entries = page.entries;
        if d.from_empty && last <= d.initial_max {
            entries.retain(|e| e.digest.is_some());
        }
        Some(Message::Digests {
            entries,
            up_to_version: last,
            reset,
        })
    }

    /// The digest feed could not be read: the agent resumes on a new connection.
    pub fn digests_unavailable(&self, err: StoreError) -> Reply {
        unavailable(err)
    }

    /// The answer to a `DigestRequest` once the store has read the digest.
    pub fn digest_reply(
        &self,
        card: CardNumber,
        digest: Result<Option<Digest>, StoreError>,
    ) -> Reply {
        match digest {
            Ok(digest) => Reply {
                message: Message::DigestReply { card, digest },
                close: false,
            },
            Err(err) => unavailable(err),
        }
    }

    /// The answer to a `CouponCheck` once the store has checked the code.
    pub fn coupon_reply(&self, code: String, verdict: Result<CouponVerdict, StoreError>) -> Reply {
        match verdict {
            Ok(verdict) => Reply {
                message: Message::CouponVerdict { code, verdict },
                close: false,
            },
            Err(err) => unavailable(err),
        }
    }

    pub fn handle(&mut self, msg: Message) -> Step {
        match (self.phase, msg) {
            (
                Phase::AwaitingHello,
                Message::Hello {
                    agent,
                    journal_last_seq,
                    software,
                },
            ) => {
                if agent != self.agent {
                    return Step::Refuse {
                        reason: Refusal::IdentityMismatch,
                        detail: format!(
                            "hello claims agent {agent}, the certificate says {}",
                            self.agent
                        ),
                    };
                }
                self.phase = Phase::Streaming;
                Step::Welcome {
                    journal_last_seq,
                    software,
                }
            }
            (Phase::Streaming, Message::Events(events)) => Step::Ingest(events),
            (Phase::Streaming, Message::Chain { last_seq, hash }) => Step::Chain { last_seq, hash },
            (Phase::Streaming, Message::Health(health)) => Step::Health(health),
            (
                Phase::Streaming,
                Message::Subscribe {
                    erasure_version,
                    campaign_version,
                    digest_version,
                    redeemed_version,
                },
            ) => match self.erasures.subscribe(erasure_version) {
                Ok(()) => {
                    self.campaign_version = Some(campaign_version);
                    self.digests.held = Some(digest_version);
                    self.redeemed = Some(redeemed_version);
                    Step::ErasuresApplied {
                        up_to_version: erasure_version,
                    }
                }
                Err(err) => protocol_error(err),
            },
            (Phase::Streaming, Message::DigestRequest { card }) => Step::DigestRequest { card },
            (Phase::Streaming, Message::CouponCheck { code }) => Step::CouponCheck { code },
            (Phase::Streaming, Message::TillClock { unix_ms }) => Step::TillClock { unix_ms },
            (Phase::Streaming, Message::ErasuresApplied { up_to_version }) => {
                match self.erasures.on_applied(up_to_version) {
                    Ok(()) => Step::ErasuresApplied { up_to_version },
                    Err(err) => protocol_error(err),
                }
            }
            (phase, other) => Step::Refuse {
                reason: Refusal::ProtocolError,
                detail: format!(
                    "unexpected {} message {}",
                    other.name(),
                    match phase {
                        Phase::AwaitingHello => "before hello",
                        Phase::Streaming => "while streaming",
                    }
                ),
            },
        }
    }

    /// A frame that cannot be decoded ends the connection: the stream is not trusted.
    pub fn decode_error(&self, err: &CodecError) -> Step {
        Step::Refuse {
            reason: Refusal::ProtocolError,
            detail: err.to_string(),
        }
    }

    /// The answer to the hello once the store has (or has not) read the high-water mark.
    pub fn after_hello(&mut self, high_water: Result<u64, StoreError>) -> Reply {
        match high_water {
            Ok(acked_seq) => {
                self.welcomed = true;
                Reply {
                    message: Message::Welcome { acked_seq },
                    close: false,
                }
            }
            Err(err) => unavailable(err),
        }
    }

    /// The erasure log could not be read: the agent retries on a new connection.
    pub fn erasures_unavailable(&self, err: StoreError) -> Reply {
        unavailable(err)
    }

    /// The answer to a batch once the store has committed (or refused) it.
    pub fn after_ingest(&self, outcome: Result<IngestOutcome, StoreError>) -> Reply {
        match outcome {
            Ok(Ok(acked_seq)) => Reply {
                message: Message::Ack { acked_seq },
                close: false,
            },
            Ok(Err((reason, detail))) => Reply {
                message: Message::Refused { reason, detail },
                close: true,
            },
            Err(err) => unavailable(err),
        }
    }
}

fn protocol_error(err: impl std::fmt::Display) -> Step {
    Step::Refuse {
        reason: Refusal::ProtocolError,
        detail: err.to_string(),
    }
}

fn unavailable(err: StoreError) -> Reply {
    Reply {
        message: Message::Refused {
            reason: Refusal::Unavailable,
            detail: format!("the hub cannot commit right now: {err}"),
        },
        close: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use till360_shared::coupon::CardKey;
    use till360_shared::wire::DigestEntry;

    fn hello(store: &str) -> Message {
        Message::Hello {
            agent: AgentId::new(store, "T1"),
            journal_last_seq: 9,
            software: "t".into(),
        }
    }

    #[test]
    fn hello_must_match_certificate_and_come_first() {
        let mut s = HubSession::new(AgentId::new("S1", "T1"));
        assert!(matches!(
            s.handle(Message::Events(vec![])),
            Step::Refuse {
                reason: Refusal::ProtocolError,
                ..
            }
        ));
        let mut s = HubSession::new(AgentId::new("S1", "T1"));
        assert!(matches!(
            s.handle(hello("S2")),
            Step::Refuse {
                reason: Refusal::IdentityMismatch,
                ..
            }
        ));
        let mut s = HubSession::new(AgentId::new("S1", "T1"));
        assert!(matches!(
            s.handle(hello("S1")),
            Step::Welcome {
                journal_last_seq: 9,
                ..
            }
        ));
        assert_eq!(s.handle(Message::Events(vec![])), Step::Ingest(vec![]));
        assert!(matches!(
            s.handle(hello("S1")),
            Step::Refuse {
                reason: Refusal::ProtocolError,
                ..
            }
        ));
    }

    fn erasure_rows(versions: std::ops::RangeInclusive<u64>) -> Vec<(u64, Vec<CardKey>)> {
        versions.map(|v| (v, vec![CardKey([7; 16])])).collect()
    }

    #[test]
    fn campaigns_are_due_once_after_welcome_for_another_version() {
        let mut s = HubSession::new(AgentId::new("S1", "T1"));
        s.handle(hello("S1"));
        assert!(!s.campaigns_due(5), "not subscribed");
        s.handle(Message::Subscribe {
            erasure_version: 0,
            campaign_version: 3,
            digest_version: 0,
            redeemed_version: 0,
        });
        assert!(!s.campaigns_due(5), "no welcome yet");
        s.after_hello(Ok(0));
        assert!(!s.campaigns_due(3), "the agent holds this version");
        assert!(s.campaigns_due(5));
        s.campaigns_sent();
        assert!(!s.campaigns_due(5), "once per connection");
    }

    #[test]
    fn erasures_flow_only_after_welcome_and_subscribe() {
        let mut s = HubSession::new(AgentId::new("S1", "T1"));
        assert!(matches!(
            s.handle(Message::Subscribe {
                erasure_version: 0,
                campaign_version: 0,
                digest_version: 0,
                redeemed_version: 0,
            }),
            Step::Refuse {
                reason: Refusal::ProtocolError,
                ..
            }
        ));
        let mut s = HubSession::new(AgentId::new("S1", "T1"));
        s.handle(hello("S1"));
        assert_eq!(
            s.handle(Message::Subscribe {
                erasure_version: 2,
                campaign_version: 0,
                digest_version: 0,
                redeemed_version: 0,
            }),
            Step::ErasuresApplied { up_to_version: 2 }
        );
        assert_eq!(s.poll_erasures(5), None, "not before the welcome is sent");
        s.after_hello(Ok(0));
        assert_eq!(s.poll_erasures(5), Some((2, ERASURE_BATCH)));
        assert_eq!(
            s.erasure_frame(erasure_rows(3..=5), 5),
            Some(Message::Erasures {
                card_keys: vec![CardKey([7; 16]); 3],
                up_to_version: 5
            })
        );
        assert_eq!(s.poll_erasures(5), None, "up to date");
        assert_eq!(
            s.handle(Message::ErasuresApplied { up_to_version: 5 }),
            Step::ErasuresApplied { up_to_version: 5 }
        );
        assert!(matches!(
            s.handle(Message::ErasuresApplied { up_to_version: 6 }),
            Step::Refuse {
                reason: Refusal::ProtocolError,
                ..
            }
        ));
    }

    #[test]
    fn a_peer_that_never_subscribes_gets_no_erasures() {
        let mut s = HubSession::new(AgentId::new("S1", "T1"));
        s.handle(hello("S1"));
        s.after_hello(Ok(0));
        assert_eq!(s.poll_erasures(100), None);
    }

    fn subscribed_at(digest_version: u64) -> HubSession {
        let mut s = HubSession::new(AgentId::new("S1", "T1"));
        s.handle(hello("S1"));
        s.handle(Message::Subscribe {
            erasure_version: 0,
            campaign_version: 0,
            digest_version,
            redeemed_version: 0,
        });
        s
    }

    fn entry(n: u8, present: bool) -> DigestEntry {
        DigestEntry {
            card_key: CardKey([n; 16]),
            digest: present.then(Digest::default),
        }
    }

    fn page(entries: Vec<DigestEntry>, last_version: u64) -> FeedPage {
        FeedPage {
            entries,
            last_version: Some(last_version),
            compacted_through: 0,
        }
    }

    fn compacted(page: FeedPage, through: u64) -> FeedPage {
        FeedPage {
            compacted_through: through,
            ..page
        }
    }

    #[test]
    fn an_agent_behind_a_compacted_feed_starts_over_with_a_reset() {
        // Held 3; removals up to 5 were dropped: the delta after 3 cannot be trusted.
        let mut s = subscribed_at(3);
        s.after_hello(Ok(0));
        assert_eq!(s.poll_digests(8).map(|p| p.after), Some(3));
        assert_eq!(
            s.digest_frame(compacted(page(vec![entry(6, true)], 8), 5), 8),
            None,
            "the page is not sent"
        );
        assert_eq!(s.poll_digests(8).map(|p| p.after), Some(0));
        assert_eq!(
            s.digest_frame(
                compacted(page(vec![entry(1, true), entry(6, false)], 8), 5),
                8
            ),
            Some(Message::Digests {
                entries: vec![entry(1, true)],
                up_to_version: 8,
                reset: true
            }),
            "the current set, removals up to the start left out"
        );
        assert_eq!(s.poll_digests(8), None);
        // Later pages are deltas again: the agent is past the compaction.
        assert_eq!(s.poll_digests(9).map(|p| p.after), Some(8));
        assert!(matches!(
            s.digest_frame(compacted(page(vec![entry(1, false)], 9), 5), 9),
            Some(Message::Digests { reset: false, ref entries, .. }) if entries.len() == 1
        ));

        // Held at (or past) the compacted version: the delta is whole.
        let mut s = subscribed_at(5);
        s.after_hello(Ok(0));
        assert_eq!(s.poll_digests(8).map(|p| p.after), Some(5));
        assert!(matches!(
            s.digest_frame(compacted(page(vec![entry(6, false)], 8), 5), 8),
            Some(Message::Digests {
                reset: false,
                up_to_version: 8,
                ..
            })
        ));

        // A compaction between two pages of a download, of removals from before it
        // began: the agent cannot hold their cards, the download goes on.
        let mut s = subscribed_at(0);
        s.after_hello(Ok(0));
        assert_eq!(s.poll_digests(2000).map(|p| p.after), Some(0));
        assert!(matches!(
            s.digest_frame(page(vec![entry(1, true)], 1000), 2000),
            Some(Message::Digests { reset: true, .. })
        ));
        assert_eq!(s.poll_digests(2000).map(|p| p.after), Some(1000));
        assert!(matches!(
            s.digest_frame(compacted(page(vec![entry(2, true)], 2000), 1500), 2000),
            Some(Message::Digests {
                reset: false,
                up_to_version: 2000,
                ..
            })
        ));
        // Of removals made during it (past its start, 2000): a card sent on the first
        // page may have lost its digest since, so from the start again.
        let mut s = subscribed_at(0);
        s.after_hello(Ok(0));
        assert_eq!(s.poll_digests(2000).map(|p| p.after), Some(0));
        assert!(s
            .digest_frame(page(vec![entry(1, true)], 1000), 2000)
            .is_some());
        assert_eq!(s.poll_digests(2100).map(|p| p.after), Some(1000));
        assert_eq!(
            s.digest_frame(compacted(page(vec![entry(2, true)], 2050), 2100), 2100),
            None
        );
        assert_eq!(s.poll_digests(2100).map(|p| p.after), Some(0));
        assert!(matches!(
            s.digest_frame(compacted(page(vec![entry(1, true)], 1000), 2100), 2100),
            Some(Message::Digests {
                reset: true,
                up_to_version: 1000,
                ..
            })
        ));

        // A fresh agent reads a compacted feed from the start: nothing to distrust.
        let mut s = subscribed_at(0);
        s.after_hello(Ok(0));
        assert_eq!(s.poll_digests(8).map(|p| p.after), Some(0));
        assert!(matches!(
            s.digest_frame(compacted(page(vec![entry(1, true)], 8), 5), 8),
            Some(Message::Digests {
                reset: true,
                up_to_version: 8,
                ..
            })
        ));
        // Every row dropped: a held cache is emptied even so.
        let mut s = subscribed_at(3);
        s.after_hello(Ok(0));
        assert_eq!(s.poll_digests(5).map(|p| p.after), Some(3));
        assert_eq!(s.digest_frame(compacted(FeedPage::default(), 5), 5), None);
        assert_eq!(s.poll_digests(5).map(|p| p.after), Some(0));
        assert_eq!(
            s.digest_frame(compacted(FeedPage::default(), 5), 5),
            Some(Message::Digests {
                entries: vec![],
                up_to_version: 5,
                reset: true
            }),
            "emptied, and at the feed's max (nothing to read again next time)"
        );
        assert_eq!(s.poll_digests(5), None);
    }

    /// Polls and sends pages of a feed whose rows end at `newest` and whose removals were
    /// compacted through `compacted`, until the session has nothing more (at most 10
    /// rounds): the frames sent.
    fn download(s: &mut HubSession, newest: u64, compacted: u64, store_max: u64) -> Vec<Message> {
        let mut frames = Vec::new();
        for _ in 0..10 {
            let Some(poll) = s.poll_digests(store_max) else {
                return frames;
            };
            let page = if poll.after < newest {
                let last = newest.min(poll.after + poll.limit as u64);
                FeedPage {
                    entries: vec![entry((last % 200) as u8, true)],
                    last_version: Some(last),
                    compacted_through: compacted,
                }
            } else {
                FeedPage {
                    compacted_through: compacted,
                    ..FeedPage::default()
                }
            };
            frames.extend(s.digest_frame(page, store_max));
        }
        panic!("still polling after 10 rounds: {frames:?}");
    }

    /// Found by the simulation (seed 31): the newest rows of a store's feed were removals
    /// and were compacted away, so the feed's max (49) is above its newest row (45). An
    /// agent behind it was reset, got every row to 45, was found behind the compaction
    /// again and reset again, forever (a busy loop of full downloads); and a fresh
    /// agent's download of a feed compacted past its first page restarted at each page.
    #[test]
    fn a_download_of_a_compacted_feed_ends_with_the_agent_at_the_feed_max() {
        for held in [0, 30, 45, 49] {
            let mut s = subscribed_at(held);
            s.after_hello(Ok(0));
            let frames = download(&mut s, 45, 49, 49);
            let last = frames.last().cloned();
            if held == 49 {
                assert_eq!(frames, vec![], "held {held}");
                continue;
            }
            assert!(
                matches!(
                    last,
                    Some(Message::Digests {
                        up_to_version: 49,
                        ..
                    })
                ),
                "held {held}: {frames:?}"
            );
            assert!(frames.len() <= 2, "held {held}: {frames:?}");
        }
        // Two pages of 1000, removals compacted through 1500 before the download.
        let mut s = subscribed_at(0);
        s.after_hello(Ok(0));
        let frames = download(&mut s, 2000, 1500, 2000);
        assert_eq!(frames.len(), 2, "{frames:?}");
        assert!(matches!(
            frames[1],
            Message::Digests {
                up_to_version: 2000,
                reset: false,
                ..
            }
        ));
    }

    #[test]
    fn a_fresh_agent_gets_the_whole_feed_once_with_reset_and_without_removals() {
        let mut s = subscribed_at(0);
        assert_eq!(s.poll_digests(5), None, "not before the welcome");
        s.after_hello(Ok(0));
        assert_eq!(
            s.poll_digests(5),
            Some(DigestPoll {
                after: 0,
                limit: DIGEST_BATCH
            })
        );
        assert_eq!(
            s.digest_frame(page(vec![entry(1, true), entry(2, false)], 3), 5),
            Some(Message::Digests {
                entries: vec![entry(1, true)],
                up_to_version: 3,
                reset: true
            })
        );
        assert_eq!(s.poll_digests(5).map(|p| p.after), Some(3));
        assert_eq!(
            s.digest_frame(page(vec![entry(3, true)], 5), 5),
            Some(Message::Digests {
                entries: vec![entry(3, true)],
                up_to_version: 5,
                reset: false
            })
        );
        assert_eq!(s.poll_digests(5), None, "up to date");
        // Later changes are deltas, removals included: the agent now holds a cache.
        assert_eq!(s.poll_digests(6).map(|p| p.after), Some(5));
        assert_eq!(
            s.digest_frame(page(vec![entry(1, false)], 6), 6),
            Some(Message::Digests {
                entries: vec![entry(1, false)],
                up_to_version: 6,
                reset: false
            })
        );
    }

    #[test]
    fn an_agent_gets_the_delta_or_a_reset_when_the_feed_was_rebuilt() {
        let mut s = subscribed_at(4);
        s.after_hello(Ok(0));
        assert_eq!(s.poll_digests(4), None, "holds the newest version");
        assert_eq!(s.poll_digests(6).map(|p| p.after), Some(4));
        assert!(matches!(
            s.digest_frame(page(vec![entry(1, false)], 6), 6),
            Some(Message::Digests { reset: false, ref entries, .. }) if entries.len() == 1
        ));

        // The agent holds more than the feed knows: start over, and say so.
        let mut s = subscribed_at(9);
        s.after_hello(Ok(0));
        assert_eq!(s.poll_digests(2).map(|p| p.after), Some(0));
        assert!(matches!(
            s.digest_frame(page(vec![entry(1, true)], 2), 2),
            Some(Message::Digests {
                reset: true,
                up_to_version: 2,
                ..
            })
        ));
        // ...even when the feed is empty.
        let mut s = subscribed_at(9);
        s.after_hello(Ok(0));
        assert_eq!(s.poll_digests(0).map(|p| p.after), Some(0));
        assert_eq!(
            s.digest_frame(FeedPage::default(), 0),
            Some(Message::Digests {
                entries: vec![],
                up_to_version: 0,
                reset: true
            })
        );
        assert_eq!(s.poll_digests(0), None);

        // An empty agent of an empty store hears nothing; an unsubscribed one neither.
        let mut s = subscribed_at(0);
        s.after_hello(Ok(0));
        assert_eq!(s.poll_digests(0), None);
        let mut s = HubSession::new(AgentId::new("S1", "T1"));
        s.handle(hello("S1"));
        s.after_hello(Ok(0));
        assert!(!s.digests_subscribed());
        assert_eq!(s.poll_digests(7), None);
    }

    #[test]
    fn requests_become_steps_and_answers() {
        let mut s = HubSession::new(AgentId::new("S1", "T1"));
        let card = CardNumber::parse("4006381333931").unwrap();
        assert!(matches!(
            s.handle(Message::DigestRequest { card: card.clone() }),
            Step::Refuse {
                reason: Refusal::ProtocolError,
                ..
            }
        ));
        let mut s = HubSession::new(AgentId::new("S1", "T1"));
        s.handle(hello("S1"));
        assert_eq!(
            s.handle(Message::DigestRequest { card: card.clone() }),
            Step::DigestRequest { card: card.clone() }
        );
        assert_eq!(
            s.handle(Message::CouponCheck { code: "12".into() }),
            Step::CouponCheck { code: "12".into() }
        );
        assert_eq!(
            s.digest_reply(card.clone(), Ok(None)),
            Reply {
                message: Message::DigestReply {
                    card: card.clone(),
                    digest: None
                },
                close: false
            }
        );
        assert_eq!(
            s.coupon_reply("12".into(), Ok(CouponVerdict::Forged))
                .message,
            Message::CouponVerdict {
                code: "12".into(),
                verdict: CouponVerdict::Forged
            }
        );
        let down = s.digest_reply(card, Err(StoreError::WriterGone));
        assert!(down.close);
        assert!(matches!(
            down.message,
            Message::Refused {
                reason: Refusal::Unavailable,
                ..
            }
        ));
    }

    #[test]
    fn redeemed_codes_flow_after_welcome_from_the_subscribed_version() {
        let mut s = HubSession::new(AgentId::new("S1", "T1"));
        s.handle(hello("S1"));
        s.after_hello(Ok(0));
        assert_eq!(s.poll_redeemed(9), None, "not subscribed");
        let mut s = HubSession::new(AgentId::new("S1", "T1"));
        s.handle(hello("S1"));
        s.handle(Message::Subscribe {
            erasure_version: 0,
            campaign_version: 0,
            digest_version: 0,
            redeemed_version: 4,
        });
        assert_eq!(s.poll_redeemed(9), None, "not before the welcome");
        s.after_hello(Ok(0));
        assert_eq!(s.poll_redeemed(4), None, "up to date");
        assert_eq!(s.poll_redeemed(9), Some((4, REDEEMED_BATCH)));
        assert_eq!(
            s.redeemed_frame(vec![(6, "a".into()), (8, "b".into())], 9),
            Some(Message::Redeemed {
                codes: vec!["a".into(), "b".into()],
                up_to_version: 8
            })
        );
        assert_eq!(s.poll_redeemed(9), Some((8, REDEEMED_BATCH)));
        // Only other stores' codes after 8: nothing to send, up to date.
        assert_eq!(s.redeemed_frame(vec![], 9), None);
        assert_eq!(s.poll_redeemed(9), None);
        assert_eq!(
            s.handle(Message::TillClock { unix_ms: 5 }),
            Step::TillClock { unix_ms: 5 }
        );
    }

    #[test]
    fn store_results_become_replies() {
        let mut s = HubSession::new(AgentId::new("S1", "T1"));
        assert_eq!(
            s.after_ingest(Ok(Ok(5))),
            Reply {
                message: Message::Ack { acked_seq: 5 },
                close: false
            }
        );
        let refused = s.after_ingest(Ok(Err((Refusal::SequenceGap, "gap".into()))));
        assert!(refused.close);
        assert!(matches!(
            refused.message,
            Message::Refused {
                reason: Refusal::SequenceGap,
                ..
            }
        ));
        let down = s.after_ingest(Err(StoreError::WriterGone));
        assert!(down.close);
        assert!(matches!(
            down.message,
            Message::Refused {
                reason: Refusal::Unavailable,
                ..
            }
        ));
        assert_eq!(
            s.after_hello(Ok(3)).message,
            Message::Welcome { acked_seq: 3 }
        );
    }
}
