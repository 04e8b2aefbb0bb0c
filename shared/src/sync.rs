//! The sync protocol as two state machines over messages (no sockets, no clocks).
//!
//! Agent side ([`UplinkSession`]): send `Hello`, wait for `Welcome { acked_seq }`, then
//! stream journal events after `acked_seq` in batches with at most `window` events
//! unacknowledged; every `Ack` lets the journal compact. A reconnect starts a new
//! session from the hub's `acked_seq`, so nothing is skipped and nothing is resent twice
//! into the hub's commit (the hub drops seqs at or below its high-water mark).
//!
//! Downlink (erasures): right after `Hello` the agent sends `Subscribe` with the
//! erasure version it has applied; once streaming, the hub sends `Erasures` frames with
//! strictly increasing `up_to_version`, and the agent answers each with
//! `ErasuresApplied` after persisting it (see [`UplinkSession::erasures_applied`]).
//!
//! Downlink (campaigns): `Subscribe` also carries the campaign set version the agent
//! holds; when the hub's differs it sends one `Campaigns` frame after `Welcome` (the
//! whole set and the till's coupon key), which the agent persists.
//!
//! Downlink (digests): `Subscribe` carries the digest version of the agent's cache; the
//! hub sends `Digests` deltas (strictly increasing `up_to_version`, or `reset` to start
//! over). A card scan may send `DigestRequest`, answered by `DigestReply`; a coupon code
//! of another store may send `CouponCheck`, answered by `CouponVerdict`. Answers that
//! come too late are the caller's to drop (the session only passes them on).
//!
//! Downlink (redeemed codes): `Subscribe` carries the version of the store's redeemed-
//! codes ledger the agent holds; the hub sends `Redeemed` frames with strictly increasing
//! `up_to_version` (its commit sequence), which the agent persists with the codes.
//!
//! Hub side ([`plan_ingest`]): given the stored high-water mark and a batch, which
//! events are new, which are replays, and whether the batch leaves a gap.

use thiserror::Error;

use crate::campaign::{CampaignSet, CatalogItem, Digest};
use crate::card::CardNumber;
use crate::coupon::{CardKey, Keyring};
use crate::event::{AgentId, Event};
use crate::wire::{CouponVerdict, DigestEntry, Message, Refusal};

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SyncError {
    #[error("unexpected {got} message while {state}")]
    Unexpected {
        got: &'static str,
        state: &'static str,
    },
    #[error("hub acknowledged seq {acked} but only {sent} was sent")]
    AckBeyondSent { acked: u64, sent: u64 },
    #[error("hub acknowledged seq {acked}, below its earlier acknowledgement {previous}")]
    AckWentBack { acked: u64, previous: u64 },
    #[error("hub says it has seq {hub} but this journal only reached {journal}: journal lost data or the till was re-provisioned")]
    HubAhead { hub: u64, journal: u64 },
    #[error("hub refused: {reason:?}: {detail}")]
    Refused { reason: Refusal, detail: String },
    #[error(
        "hub sent erasures up to version {got}, not newer than version {previous} already received"
    )]
    ErasureWentBack { got: u64, previous: u64 },
    #[error(
        "hub sent digests up to version {got}, not newer than version {previous} already received"
    )]
    DigestWentBack { got: u64, previous: u64 },
    #[error(
        "hub sent redeemed codes up to version {got}, not newer than version {previous} already received"
    )]
    RedeemedWentBack { got: u64, previous: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitingWelcome,
    Streaming,
}

/// What the uplink should do after handling a hub message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UplinkEvent {
    /// The hub has committed everything up to this seq: the journal may compact it.
    Acked(u64),
    /// Cards with these keys (the till's store's card keys) were erased on the hub:
    /// drop them, persist `up_to_version` with the change, then send
    /// [`UplinkSession::erasures_applied`].
    Erase {
        card_keys: Vec<CardKey>,
        up_to_version: u64,
    },
    /// The hub's campaign set and this till's coupon keyring: persist both with
    /// `version` (one transaction). `Debug` of this variant never shows a key.
    Campaigns {
        version: u64,
        set: CampaignSet,
        keyring: Keyring,
        catalog: Vec<CatalogItem>,
    },
    /// Digest changes: persist them with `up_to_version` (one transaction); with `reset`
    /// drop the cache first.
    Digests {
        entries: Vec<DigestEntry>,
        up_to_version: u64,
        reset: bool,
    },
    /// The answer to a `DigestRequest`.
    Digest {
        card: CardNumber,
        digest: Option<Digest>,
    },
    /// The answer to a `CouponCheck`.
    CouponVerdict {
        code: String,
        verdict: CouponVerdict,
    },
    /// Codes redeemed at the store: persist them with `up_to_version` (one transaction).
    Redeemed {
        codes: Vec<String>,
        up_to_version: u64,
    },
}

/// The agent's half of one connection.
#[derive(Debug, Clone)]
pub struct UplinkSession {
    agent: AgentId,
    phase: Phase,
    acked: u64,
    sent: u64,
    journal_last: u64,
    window: u64,
    max_batch: usize,
    /// The newest erasure version applied at connect or received since.
    erasure_version: u64,
    /// The campaign set version held at connect or received since (0: none).
    campaign_version: u64,
    /// The digest version of the cache at connect or received since (0: empty).
    digest_version: u64,
    /// The redeemed-codes version held at connect or received since (0: none).
    redeemed_version: u64,
}

impl UplinkSession {
    /// `journal_last` is the highest seq in the journal now; `window` bounds the
    /// unacknowledged events in flight and `max_batch` the events per frame.
    pub fn new(agent: AgentId, journal_last: u64, window: u64, max_batch: usize) -> Self {
        Self {
            agent,
            phase: Phase::AwaitingWelcome,
            acked: 0,
            sent: 0,
            journal_last,
            window: window.max(1),
            max_batch: max_batch.max(1),
            erasure_version: 0,
            campaign_version: 0,
            digest_version: 0,
            redeemed_version: 0,
        }
    }

    /// The redeemed-codes version the journal holds (0: none).
    pub fn with_redeemed_version(mut self, redeemed_version: u64) -> Self {
        self.redeemed_version = redeemed_version;
        self
    }

    /// The redeemed-codes version held (received frames included).
    pub fn redeemed_version(&self) -> u64 {
        self.redeemed_version
    }

    /// The digest version the journal's cache holds (0: empty).
    pub fn with_digest_version(mut self, digest_version: u64) -> Self {
        self.digest_version = digest_version;
        self
    }

    /// The digest version held (received deltas included).
    pub fn digest_version(&self) -> u64 {
        self.digest_version
    }

    /// The campaign set version the journal holds (0 for none).
    pub fn with_campaign_version(mut self, campaign_version: u64) -> Self {
        self.campaign_version = campaign_version;
        self
    }

    /// The campaign set version held (received sets included).
    pub fn campaign_version(&self) -> u64 {
        self.campaign_version
    }

    /// The erasure version the journal has applied (0 for a fresh journal).
    pub fn with_erasure_version(mut self, erasure_version: u64) -> Self {
        self.erasure_version = erasure_version;
        self
    }

    /// Sent right after [`Self::hello`]: asks for the erasures newer than ours.
    pub fn subscribe(&self) -> Message {
        Message::Subscribe {
            erasure_version: self.erasure_version,
            campaign_version: self.campaign_version,
            digest_version: self.digest_version,
            redeemed_version: self.redeemed_version,
        }
    }

    /// The newest erasure version received (applied, or being applied).
    pub fn erasure_version(&self) -> u64 {
        self.erasure_version
    }

    /// The answer once an [`UplinkEvent::Erase`] is persisted.
    pub fn erasures_applied(&self, up_to_version: u64) -> Message {
        Message::ErasuresApplied { up_to_version }
    }

    pub fn hello(&self, software: &str) -> Message {
        Message::Hello {
            agent: self.agent.clone(),
            journal_last_seq: self.journal_last,
            software: software.to_string(),
        }
    }

    pub fn acked(&self) -> u64 {
        self.acked
    }

    pub fn sent(&self) -> u64 {
        self.sent
    }

    pub fn is_streaming(&self) -> bool {
        self.phase == Phase::Streaming
    }

    /// The journal grew (new events were committed locally).
    pub fn journal_advanced(&mut self, journal_last: u64) {
        self.journal_last = self.journal_last.max(journal_last);
    }

    pub fn handle(&mut self, msg: Message) -> Result<Option<UplinkEvent>, SyncError> {
        match (self.phase, msg) {
            (_, Message::Refused { reason, detail }) => Err(SyncError::Refused { reason, detail }),
            (Phase::AwaitingWelcome, Message::Welcome { acked_seq }) => {
                if acked_seq > self.journal_last {
                    return Err(SyncError::HubAhead {
                        hub: acked_seq,
                        journal: self.journal_last,
                    });
                }
                self.phase = Phase::Streaming;
                self.acked = acked_seq;
                self.sent = acked_seq;
                Ok(Some(UplinkEvent::Acked(acked_seq)))
            }
            (Phase::Streaming, Message::Ack { acked_seq }) => {
                if acked_seq > self.sent {
                    return Err(SyncError::AckBeyondSent {
                        acked: acked_seq,
                        sent: self.sent,
                    });
                }
                if acked_seq < self.acked {
                    return Err(SyncError::AckWentBack {
                        acked: acked_seq,
                        previous: self.acked,
                    });
                }
                self.acked = acked_seq;
                Ok(Some(UplinkEvent::Acked(acked_seq)))
            }
            (
                Phase::Streaming,
                Message::Erasures {
                    card_keys,
                    up_to_version,
                },
            ) => {
                if up_to_version <= self.erasure_version {
                    return Err(SyncError::ErasureWentBack {
                        got: up_to_version,
                        previous: self.erasure_version,
                    });
                }
                self.erasure_version = up_to_version;
                Ok(Some(UplinkEvent::Erase {
                    card_keys,
                    up_to_version,
                }))
            }
            (
                Phase::Streaming,
                Message::Campaigns {
                    version,
                    set,
                    keyring,
                    catalog,
                },
            ) => {
                // A set replaces the one held whatever its version: the hub's file may
                // have been rolled back, and its content hash is not ordered.
                self.campaign_version = version;
                Ok(Some(UplinkEvent::Campaigns {
                    version,
                    set,
                    keyring,
                    catalog,
                }))
            }
            (
                Phase::Streaming,
                Message::Digests {
                    entries,
                    up_to_version,
                    reset,
                },
            ) => {
                if !reset && up_to_version <= self.digest_version {
                    return Err(SyncError::DigestWentBack {
                        got: up_to_version,
                        previous: self.digest_version,
                    });
                }
                self.digest_version = up_to_version;
                Ok(Some(UplinkEvent::Digests {
                    entries,
                    up_to_version,
                    reset,
                }))
            }
            (Phase::Streaming, Message::DigestReply { card, digest }) => {
                Ok(Some(UplinkEvent::Digest { card, digest }))
            }
            (Phase::Streaming, Message::CouponVerdict { code, verdict }) => {
                Ok(Some(UplinkEvent::CouponVerdict { code, verdict }))
            }
            (
                Phase::Streaming,
                Message::Redeemed {
                    codes,
                    up_to_version,
                },
            ) => {
                if up_to_version <= self.redeemed_version {
                    return Err(SyncError::RedeemedWentBack {
                        got: up_to_version,
                        previous: self.redeemed_version,
                    });
                }
                self.redeemed_version = up_to_version;
                Ok(Some(UplinkEvent::Redeemed {
                    codes,
                    up_to_version,
                }))
            }
            (phase, other) => Err(SyncError::Unexpected {
                got: other.name(),
                state: match phase {
                    Phase::AwaitingWelcome => "awaiting welcome",
                    Phase::Streaming => "streaming",
                },
            }),
        }
    }

    /// The next range of seqs to read from the journal and send, as
    /// `(first_seq, max_count)`, or `None` when there is nothing to send or the window
    /// is full.
    pub fn poll_batch(&self) -> Option<(u64, usize)> {
        if self.phase != Phase::Streaming || self.sent >= self.journal_last {
            return None;
        }
        let in_flight = self.sent - self.acked;
        if in_flight >= self.window {
            return None;
        }
        let room = (self.window - in_flight).min(self.journal_last - self.sent);
        Some((self.sent + 1, (room as usize).min(self.max_batch)))
    }

    /// Records that events up to `last_seq` were written to the connection.
    pub fn on_sent(&mut self, last_seq: u64) {
        self.sent = self.sent.max(last_seq);
    }
}

/// The hub's half of the erasure downlink for one connection: which part of the
/// erasure log to read next and the frame to send. Nothing is sent before the agent
/// subscribes; at most `window` versions are unapplied at a time, so a backlog of
/// millions of erasures streams in bounded batches without flooding a slow till.
#[derive(Debug, Clone)]
pub struct ErasureDownlink {
    max_batch: usize,
    window: u64,
    /// The agent's version at subscribe, then the end of the newest frame sent.
    sent: Option<u64>,
    applied: u64,
}

/// A downlink message the hub cannot accept.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DownlinkError {
    #[error("the agent subscribed twice")]
    SubscribedTwice,
    #[error("the agent applied erasures without subscribing")]
    NotSubscribed,
    #[error("the agent applied erasure version {got}, but only {sent} was sent")]
    AppliedBeyondSent { got: u64, sent: u64 },
    #[error("the agent applied erasure version {got}, below version {previous} it applied before")]
    AppliedWentBack { got: u64, previous: u64 },
}

impl ErasureDownlink {
    pub fn new(max_batch: usize, window: u64) -> Self {
        Self {
            max_batch: max_batch.max(1),
            window: window.max(1),
            sent: None,
            applied: 0,
        }
    }

    /// The agent has applied everything up to `erasure_version`.
    pub fn subscribe(&mut self, erasure_version: u64) -> Result<(), DownlinkError> {
        if self.sent.is_some() {
            return Err(DownlinkError::SubscribedTwice);
        }
        self.sent = Some(erasure_version);
        self.applied = erasure_version;
        Ok(())
    }

    pub fn is_subscribed(&self) -> bool {
        self.sent.is_some()
    }

    /// The newest version the agent confirmed as applied.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// What to read from the erasure log when it stands at `hub_version`: erasures after
    /// the returned version, at most the returned count. `None` when the agent is up to
    /// date, not subscribed, or has a full window to apply first.
    pub fn poll(&self, hub_version: u64) -> Option<(u64, usize)> {
        let sent = self.sent?;
        if sent >= hub_version || sent - self.applied >= self.window {
            return None;
        }
        Some((sent, self.max_batch))
    }

    /// The frame for erasures read after a [`Self::poll`] (`(version, the agent's store's
    /// card keys)`, oldest first). An empty read (rows pruned from the log) still moves the agent to
    /// `hub_version`, so it never asks for them again.
    pub fn frame(&mut self, rows: Vec<(u64, Vec<CardKey>)>, hub_version: u64) -> Option<Message> {
        let sent = self.sent?;
        let up_to_version = rows.last().map_or(hub_version, |(v, _)| *v);
        if up_to_version <= sent {
            return None;
        }
        self.sent = Some(up_to_version);
        Some(Message::Erasures {
            card_keys: rows.into_iter().flat_map(|(_, keys)| keys).collect(),
            up_to_version,
        })
    }

    /// The agent persisted erasures up to `up_to_version`.
    pub fn on_applied(&mut self, up_to_version: u64) -> Result<(), DownlinkError> {
        let sent = self.sent.ok_or(DownlinkError::NotSubscribed)?;
        if up_to_version > sent {
            return Err(DownlinkError::AppliedBeyondSent {
                got: up_to_version,
                sent,
            });
        }
        if up_to_version < self.applied {
            return Err(DownlinkError::AppliedWentBack {
                got: up_to_version,
                previous: self.applied,
            });
        }
        self.applied = up_to_version;
        Ok(())
    }
}

/// How the hub should treat one incoming batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestPlan {
    /// Index into the batch of the first event to merge; events before it are replays.
    pub first_new: usize,
    /// The agent's high-water mark after this batch commits.
    pub new_high_water: u64,
}

/// Checks a batch against the agent's stored high-water mark: events must be in seq
/// order without gaps and all belong to `agent`. Replayed events (seq ≤ high water)
/// are skipped, which makes a resend after a lost ack a no-op.
pub fn plan_ingest(
    agent: &AgentId,
    high_water: u64,
    batch: &[Event],
) -> Result<IngestPlan, (Refusal, String)> {
    let mut expected = None::<u64>;
    let mut first_new = batch.len();
    for (i, ev) in batch.iter().enumerate() {
        if &ev.agent != agent {
            return Err((
                Refusal::IdentityMismatch,
                format!(
                    "event seq {} claims agent {}, certificate says {}",
                    ev.seq, ev.agent, agent
                ),
            ));
        }
        if let Some(exp) = expected {
            if ev.seq != exp {
                return Err((
                    Refusal::SequenceGap,
                    format!("batch jumps to seq {} where {} was expected", ev.seq, exp),
                ));
            }
        }
        expected = Some(ev.seq + 1);
        if ev.seq > high_water && first_new == batch.len() {
            if ev.seq != high_water + 1 {
                return Err((
                    Refusal::SequenceGap,
                    format!(
                        "seq {} does not follow the committed seq {}",
                        ev.seq, high_water
                    ),
                ));
            }
            first_new = i;
        }
    }
    let new_high_water = batch.last().map_or(high_water, |e| e.seq.max(high_water));
    Ok(IngestPlan {
        first_new,
        new_high_water,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::CardNumber;
    use crate::event::EventKind;
    use crate::time::Timestamp;

    fn agent() -> AgentId {
        AgentId::new("S001", "T01")
    }

    fn ev(seq: u64) -> Event {
        Event {
            agent: agent(),
            seq,
            recorded_at: Timestamp::from_unix_ms(seq as i64, 0),
            kind: EventKind::CardScanned {
                card: CardNumber::parse("4006381333931").unwrap(),
            },
        }
    }

    #[test]
    fn streams_from_welcome_within_window() {
        let mut s = UplinkSession::new(agent(), 10, 4, 3);
        assert_eq!(s.poll_batch(), None, "nothing before welcome");
        assert_eq!(
            s.handle(Message::Welcome { acked_seq: 2 }),
            Ok(Some(UplinkEvent::Acked(2)))
        );
        assert_eq!(s.poll_batch(), Some((3, 3)));
        s.on_sent(5);
        assert_eq!(
            s.poll_batch(),
            Some((6, 1)),
            "window of 4 leaves room for one"
        );
        s.on_sent(6);
        assert_eq!(s.poll_batch(), None, "window full");
        assert_eq!(
            s.handle(Message::Ack { acked_seq: 6 }),
            Ok(Some(UplinkEvent::Acked(6)))
        );
        assert_eq!(s.poll_batch(), Some((7, 3)));
        s.on_sent(10);
        assert_eq!(s.poll_batch(), None, "journal drained");
        s.journal_advanced(11);
        assert_eq!(s.poll_batch(), None, "window: 7..=10 in flight");
    }

    #[test]
    fn refuses_impossible_acks() {
        let mut s = UplinkSession::new(agent(), 5, 10, 10);
        assert!(matches!(
            s.handle(Message::Ack { acked_seq: 1 }),
            Err(SyncError::Unexpected { .. })
        ));
        let mut s = UplinkSession::new(agent(), 5, 10, 10);
        assert!(matches!(
            s.handle(Message::Welcome { acked_seq: 9 }),
            Err(SyncError::HubAhead { .. })
        ));
        let mut s = UplinkSession::new(agent(), 5, 10, 10);
        s.handle(Message::Welcome { acked_seq: 3 }).unwrap();
        s.on_sent(5);
        assert!(matches!(
            s.handle(Message::Ack { acked_seq: 6 }),
            Err(SyncError::AckBeyondSent { .. })
        ));
        assert!(matches!(
            s.handle(Message::Ack { acked_seq: 2 }),
            Err(SyncError::AckWentBack { .. })
        ));
    }

    fn card(code: &str) -> CardNumber {
        CardNumber::parse(code).unwrap()
    }

    fn erasures(keys: &[u8], up_to_version: u64) -> Message {
        Message::Erasures {
            card_keys: keys.iter().map(|&k| CardKey([k; 16])).collect(),
            up_to_version,
        }
    }

    #[test]
    fn erasures_are_refused_before_welcome() {
        let mut s = UplinkSession::new(agent(), 5, 10, 10).with_erasure_version(3);
        assert_eq!(
            s.subscribe(),
            Message::Subscribe {
                erasure_version: 3,
                campaign_version: 0,
                digest_version: 0,
                redeemed_version: 0,
            }
        );
        assert!(matches!(
            s.handle(erasures(&[1], 4)),
            Err(SyncError::Unexpected {
                got: "erasures",
                state: "awaiting welcome"
            })
        ));
    }

    #[test]
    fn erasures_stream_after_welcome_with_growing_versions() {
        let mut s = UplinkSession::new(agent(), 5, 10, 10).with_erasure_version(3);
        s.handle(Message::Welcome { acked_seq: 5 }).unwrap();
        assert_eq!(
            s.handle(erasures(&[1, 2], 5)),
            Ok(Some(UplinkEvent::Erase {
                card_keys: vec![CardKey([1; 16]), CardKey([2; 16])],
                up_to_version: 5
            }))
        );
        assert_eq!(s.erasure_version(), 5);
        assert_eq!(
            s.erasures_applied(5),
            Message::ErasuresApplied { up_to_version: 5 }
        );
        // Acks and erasures interleave freely.
        assert_eq!(
            s.handle(Message::Ack { acked_seq: 5 }),
            Ok(Some(UplinkEvent::Acked(5)))
        );
        // An empty frame (pruned log) still moves the version.
        assert_eq!(
            s.handle(erasures(&[], 9)),
            Ok(Some(UplinkEvent::Erase {
                card_keys: vec![],
                up_to_version: 9
            }))
        );
        for stale in [9, 4] {
            assert_eq!(
                s.handle(erasures(&[1], stale)),
                Err(SyncError::ErasureWentBack {
                    got: stale,
                    previous: 9
                })
            );
        }
    }

    fn campaign_set(version: u64) -> CampaignSet {
        CampaignSet {
            version,
            ..CampaignSet::default()
        }
    }

    fn catalog_item() -> CatalogItem {
        CatalogItem {
            sku: "8710000000017".into(),
            description: "Zwangerschapstest".into(),
            category: "intieme verzorging".into(),
            sensitive: true,
        }
    }

    fn keyring(byte: u8) -> Keyring {
        Keyring {
            till_number: 1,
            till_key: [byte; 32],
            ..Keyring::default()
        }
    }

    #[test]
    fn campaigns_are_refused_before_welcome() {
        let mut s = UplinkSession::new(agent(), 5, 10, 10)
            .with_campaign_version(7)
            .with_digest_version(4);
        assert_eq!(
            s.subscribe(),
            Message::Subscribe {
                erasure_version: 0,
                campaign_version: 7,
                digest_version: 4,
                redeemed_version: 0,
            }
        );
        assert_eq!(
            s.handle(Message::Campaigns {
                version: 9,
                set: campaign_set(9),
                keyring: keyring(1),
                catalog: vec![],
            }),
            Err(SyncError::Unexpected {
                got: "campaigns",
                state: "awaiting welcome"
            })
        );
        assert_eq!(s.campaign_version(), 7, "a refused frame changes nothing");
    }

    #[test]
    fn campaigns_are_accepted_after_welcome_and_replace_the_version() {
        let mut s = UplinkSession::new(agent(), 5, 10, 10).with_campaign_version(7);
        s.handle(Message::Welcome { acked_seq: 5 }).unwrap();
        let event = s
            .handle(Message::Campaigns {
                version: 3,
                set: campaign_set(2),
                keyring: keyring(2),
                catalog: vec![catalog_item()],
            })
            .unwrap();
        assert_eq!(
            event,
            Some(UplinkEvent::Campaigns {
                version: 3,
                set: campaign_set(2),
                keyring: keyring(2),
                catalog: vec![catalog_item()],
            })
        );
        assert_eq!(
            s.campaign_version(),
            3,
            "the frame's version, not the set's"
        );
        let shown = format!("{event:?}");
        assert!(
            !shown.contains("2, 2, 2"),
            "Debug must not show the key: {shown}"
        );
    }

    fn digest_entry(byte: u8) -> DigestEntry {
        DigestEntry {
            card_key: crate::coupon::CardKey([byte; 16]),
            digest: Some(Digest {
                customer_key: format!("c{byte}"),
                ..Digest::default()
            }),
        }
    }

    #[test]
    fn digests_move_forward_unless_reset_and_answers_pass_through() {
        let mut s = UplinkSession::new(agent(), 0, 10, 10).with_digest_version(5);
        let early = s.handle(Message::DigestReply {
            card: card("4006381333931"),
            digest: None,
        });
        assert!(early.is_err(), "nothing but welcome first");
        s.handle(Message::Welcome { acked_seq: 0 }).unwrap();
        let delta = Message::Digests {
            entries: vec![digest_entry(1)],
            up_to_version: 8,
            reset: false,
        };
        assert_eq!(
            s.handle(delta.clone()).unwrap(),
            Some(UplinkEvent::Digests {
                entries: vec![digest_entry(1)],
                up_to_version: 8,
                reset: false
            })
        );
        assert_eq!(s.digest_version(), 8);
        assert_eq!(
            s.handle(delta),
            Err(SyncError::DigestWentBack {
                got: 8,
                previous: 8
            })
        );
        let rebuilt = s
            .handle(Message::Digests {
                entries: vec![],
                up_to_version: 2,
                reset: true,
            })
            .unwrap();
        assert!(matches!(
            rebuilt,
            Some(UplinkEvent::Digests { reset: true, .. })
        ));
        assert_eq!(s.digest_version(), 2, "a reset may go back");
        assert_eq!(
            s.handle(Message::CouponVerdict {
                code: "1".repeat(24),
                verdict: CouponVerdict::AlreadyRedeemed
            })
            .unwrap(),
            Some(UplinkEvent::CouponVerdict {
                code: "1".repeat(24),
                verdict: CouponVerdict::AlreadyRedeemed
            })
        );
    }

    #[test]
    fn redeemed_codes_move_forward_after_welcome() {
        let mut s = UplinkSession::new(agent(), 0, 10, 10).with_redeemed_version(4);
        assert_eq!(s.redeemed_version(), 4);
        assert!(matches!(
            s.subscribe(),
            Message::Subscribe {
                redeemed_version: 4,
                ..
            }
        ));
        let frame = |up_to_version| Message::Redeemed {
            codes: vec!["1".repeat(24)],
            up_to_version,
        };
        assert!(s.handle(frame(6)).is_err(), "nothing but welcome first");
        s.handle(Message::Welcome { acked_seq: 0 }).unwrap();
        assert_eq!(
            s.handle(frame(6)).unwrap(),
            Some(UplinkEvent::Redeemed {
                codes: vec!["1".repeat(24)],
                up_to_version: 6
            })
        );
        assert_eq!(s.redeemed_version(), 6);
        assert_eq!(
            s.handle(frame(6)),
            Err(SyncError::RedeemedWentBack {
                got: 6,
                previous: 6
            })
        );
    }

    #[test]
    fn downlink_sends_the_delta_in_bounded_batches_within_a_window() {
        let mut d = ErasureDownlink::new(2, 3);
        assert_eq!(d.poll(10), None, "nothing before subscribe");
        assert_eq!(d.on_applied(1), Err(DownlinkError::NotSubscribed));
        d.subscribe(4).unwrap();
        assert_eq!(d.subscribe(4), Err(DownlinkError::SubscribedTwice));
        assert_eq!(d.poll(4), None, "agent is up to date");
        assert_eq!(d.poll(10), Some((4, 2)), "only what is newer than 4");
        // Version 6 named no card of this store: the frame covers it all the same.
        let rows = vec![
            (5, vec![CardKey([1; 16])]),
            (6, vec![]),
            (7, vec![CardKey([2; 16]), CardKey([3; 16])]),
        ];
        assert_eq!(d.frame(rows, 10), Some(erasures(&[1, 2, 3], 7)));
        assert_eq!(d.poll(10), None, "window: 5..=7 unapplied");
        assert_eq!(
            d.on_applied(8),
            Err(DownlinkError::AppliedBeyondSent { got: 8, sent: 7 })
        );
        d.on_applied(7).unwrap();
        assert_eq!(d.applied(), 7);
        assert_eq!(
            d.on_applied(5),
            Err(DownlinkError::AppliedWentBack {
                got: 5,
                previous: 7
            })
        );
        assert_eq!(d.poll(10), Some((7, 2)));
        // Rows pruned from the log: the agent still moves to the hub's version.
        assert_eq!(d.frame(vec![], 10), Some(erasures(&[], 10)));
        assert_eq!(d.poll(10), None);
        assert_eq!(d.poll(11), None, "window: 8..=10 unapplied");
        d.on_applied(10).unwrap();
        assert_eq!(d.poll(11), Some((10, 2)));
        // A read that found nothing newer sends nothing.
        assert_eq!(d.frame(vec![], 10), None);
    }

    #[test]
    fn an_agent_ahead_of_the_hub_gets_nothing_until_the_log_passes_it() {
        let mut d = ErasureDownlink::new(100, 100);
        d.subscribe(50).unwrap();
        assert_eq!(d.poll(3), None);
        assert_eq!(d.poll(51), Some((50, 100)));
    }

    #[test]
    fn ingest_skips_replays_and_refuses_gaps() {
        let batch: Vec<Event> = (3..=6).map(ev).collect();
        assert_eq!(
            plan_ingest(&agent(), 4, &batch),
            Ok(IngestPlan {
                first_new: 2,
                new_high_water: 6
            })
        );
        assert_eq!(
            plan_ingest(&agent(), 9, &batch),
            Ok(IngestPlan {
                first_new: 4,
                new_high_water: 9
            })
        );
        assert_eq!(
            plan_ingest(&agent(), 1, &batch).unwrap_err().0,
            Refusal::SequenceGap
        );
        let holey = vec![ev(1), ev(3)];
        assert_eq!(
            plan_ingest(&agent(), 0, &holey).unwrap_err().0,
            Refusal::SequenceGap
        );
        let other = AgentId::new("S002", "T01");
        assert_eq!(
            plan_ingest(&other, 0, &[ev(1)]).unwrap_err().0,
            Refusal::IdentityMismatch
        );
    }
}
