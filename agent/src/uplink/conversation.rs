//! One connection's conversation with the hub, without IO: what the uplink does with
//! each frame the hub sends and what it sends next, given the journal. The protocol's
//! state is `UplinkSession` (shared); this adds what the agent keeps beside it: the
//! erasures held until everything sent is acknowledged, the digest key, the journal
//! writes each frame calls for. The quinn task (`Uplink::converse`) moves frames and
//! news; the simulator (root `src/simulation`) drives the same code under a simulated
//! network and clock.

#![deny(clippy::disallowed_methods)]

use chrono::NaiveDate;
use thiserror::Error;
use till360_shared::chain::ChainHash;
use till360_shared::coupon::CardKey;
use till360_shared::sync::{SyncError, UplinkEvent, UplinkSession};
use till360_shared::wire::{Message, TillHealth};
use till360_shared::{AgentId, CardNumber, Event};

use super::{health, ErasedCards, UplinkStatus};
use crate::hub_link::{CampaignState, HubNews};
use crate::journal::{Journal, JournalError};

#[derive(Debug, Error)]
pub enum ConversationError {
    #[error("protocol: {0}")]
    Sync(#[from] SyncError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("journal returned no events for seq {0} although the session expects some")]
    NothingToSend(u64),
}

/// Something to send to the hub.
#[derive(Debug, Clone, PartialEq)]
pub enum Transmit {
    Message(Message),
    /// Journal events with their chain links: one `Events` frame (split if too large),
    /// each followed by its `Chain` claim.
    Events(Vec<(Event, ChainHash)>),
}

/// An answer to one of the till core's requests, for the pending-request table to
/// match (it knows whether it came in time).
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Digest {
        card: CardNumber,
        digest: Option<till360_shared::campaign::Digest>,
    },
    CouponVerdict {
        code: String,
        verdict: till360_shared::wire::CouponVerdict,
    },
}

/// A digest the hub answered in time, kept in the journal's cache under the card's key
/// (`digest_key` of [`Conversation::digest_key`]; without a keyring there is no key and
/// the till core still gets it for this scan).
pub fn store_digest(
    digest_key: Option<[u8; 32]>,
    card: &CardNumber,
    digest: Option<&till360_shared::campaign::Digest>,
    journal: &mut Journal,
) -> Result<(), JournalError> {
    if let Some(key) = digest_key {
        journal.put_digest(&CardKey::of(&key, card), digest)?;
    }
    Ok(())
}

/// What handling a frame (or polling) produced.
#[derive(Debug, Default)]
pub struct Output {
    pub transmit: Vec<Transmit>,
    /// For the till core.
    pub news: Vec<HubNews>,
    /// Cards the journal has just erased (the till core drops a pending scan of one).
    pub erased: Vec<ErasedCards>,
    pub answers: Vec<Answer>,
    /// The hub acknowledged up to this seq (the journal has deleted up to it).
    pub acked: Option<u64>,
    /// The session has just started streaming (the first `Welcome`).
    pub went_online: bool,
}

/// What the journal held when the connection opened.
struct Opening {
    journal_last: u64,
    erasure_version: u64,
    campaign_version: u64,
    digest_version: u64,
    redeemed_version: u64,
    digest_key: Option<[u8; 32]>,
    health: TillHealth,
}

impl Opening {
    fn read(journal: &Journal) -> Result<Opening, JournalError> {
        // A corrupt stored set only costs the key until the hub resends it.
        let digest_key = match journal.campaigns() {
            Ok(state) => state.map(|s| s.keyring.digest_key),
            Err(e) => {
                tracing::warn!("{e}");
                None
            }
        };
        Ok(Opening {
            journal_last: journal.last_seq(),
            erasure_version: journal.erasure_version()?,
            campaign_version: journal.campaign_version()?,
            digest_version: journal.digest_version()?,
            redeemed_version: journal.redeemed_version()?,
            digest_key,
            health: health::of_status(&journal.status()?),
        })
    }
}

/// Window and batch size of the session (`[hub] window`, `batch_max`).
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    pub window: u64,
    pub batch_max: usize,
}

pub struct Conversation {
    session: UplinkSession,
    /// Erasure frames waiting for everything sent to be acknowledged: an erasure
    /// re-links the chain, and the hub must hold no copy of an event it rewrites.
    deferred_erasures: Vec<(Vec<CardKey>, u64)>,
    /// An erasure that could not be applied (no keyring) holds back every later one on
    /// this connection: applying a newer version would skip its cards.
    erasures_stalled: bool,
    /// The digest key of the keyring held (to store a digest answered for a card).
    digest_key: Option<[u8; 32]>,
    /// The till's health as last reported on this connection.
    last_health: TillHealth,
    /// The newest erasure version the journal has applied (the session's is the newest
    /// received).
    erasures_applied: u64,
}

impl Conversation {
    /// Opens a conversation: the session from what the journal holds (`journal_seq`:
    /// the last seq the till core announced, which may be ahead of a read), and the
    /// opening frames: hello, subscribe, the till's health and its clock (`till_ms`).
    pub fn open(
        agent: AgentId,
        pacing: Pacing,
        journal: &Journal,
        journal_seq: u64,
        software: &str,
        till_ms: i64,
    ) -> Result<(Conversation, Output), ConversationError> {
        let opening = Opening::read(journal)?;
        let session = UplinkSession::new(
            agent,
            opening.journal_last.max(journal_seq),
            pacing.window,
            pacing.batch_max,
        )
        .with_erasure_version(opening.erasure_version)
        .with_campaign_version(opening.campaign_version)
        .with_digest_version(opening.digest_version)
        .with_redeemed_version(opening.redeemed_version);
        let mut out = Output::default();
        out.transmit.extend(
            [
                session.hello(software),
                session.subscribe(),
                Message::Health(opening.health),
                Message::TillClock { unix_ms: till_ms },
            ]
            .map(Transmit::Message),
        );
        let conversation = Conversation {
            session,
            deferred_erasures: Vec::new(),
            erasures_stalled: false,
            digest_key: opening.digest_key,
            last_health: opening.health,
            erasures_applied: opening.erasure_version,
        };
        Ok((conversation, out))
    }

    pub fn is_streaming(&self) -> bool {
        self.session.is_streaming()
    }

    /// The till core journaled up to `seq`.
    pub fn journal_advanced(&mut self, seq: u64) {
        self.session.journal_advanced(seq);
    }

    /// The versions this conversation has reached, into the uplink's status.
    pub fn fill_status(&self, status: &mut UplinkStatus) {
        status.erasure_version = self.erasures_applied;
        status.campaign_version = self.session.campaign_version();
        status.digest_version = self.session.digest_version();
        if self.session.is_streaming() {
            status.acked_seq = self.session.acked();
        }
    }

    /// A frame from the hub. `today`: the till's local date (expired redeemed codes
    /// are dropped on the way in).
    pub fn handle(
        &mut self,
        msg: Message,
        journal: &mut Journal,
        today: NaiveDate,
        out: &mut Output,
    ) -> Result<(), ConversationError> {
        let was_streaming = self.session.is_streaming();
        let event = self.session.handle(msg)?;
        if !was_streaming && self.session.is_streaming() {
            out.went_online = true;
        }
        match event {
            Some(UplinkEvent::Acked(seq)) => {
                journal.ack(seq)?;
                out.acked = Some(seq);
            }
            // Applied by `poll` once nothing is in flight.
            Some(UplinkEvent::Erase {
                card_keys,
                up_to_version,
            }) => self.deferred_erasures.push((card_keys, up_to_version)),
            Some(UplinkEvent::Campaigns {
                version,
                set,
                keyring,
                catalog,
            }) => {
                let state = CampaignState {
                    version,
                    set,
                    keyring,
                    catalog,
                };
                journal.store_campaigns(&state)?;
                // The keys are never logged.
                tracing::info!(
                    "uplink: {} campaigns and {} catalog items stored (version {version}) with this till's keyring",
                    state.set.campaigns.len(),
                    state.catalog.len()
                );
                self.digest_key = Some(state.keyring.digest_key);
                out.news.push(HubNews::Campaigns(Box::new(state)));
            }
            Some(UplinkEvent::Digests {
                entries,
                up_to_version,
                reset,
            }) => {
                journal.apply_digests(&entries, up_to_version, reset)?;
                tracing::debug!(
                    "uplink: {} digest changes applied (digest version {up_to_version}, reset {reset})",
                    entries.len()
                );
                out.news.push(HubNews::Digests { entries, reset });
            }
            Some(UplinkEvent::Digest { card, digest }) => {
                out.answers.push(Answer::Digest { card, digest });
            }
            Some(UplinkEvent::Redeemed {
                codes,
                up_to_version,
            }) => {
                let count = codes.len();
                let held = journal.apply_redeemed(&codes, up_to_version, today)?;
                tracing::info!(
                    "uplink: {count} codes redeemed in this store received (version {up_to_version}, {held} held)"
                );
            }
            Some(UplinkEvent::CouponVerdict { code, verdict }) => {
                out.answers.push(Answer::CouponVerdict { code, verdict });
            }
            None => {}
        }
        Ok(())
    }

    /// The digest key of the keyring held, if any.
    pub fn digest_key(&self) -> Option<[u8; 32]> {
        self.digest_key
    }

    /// What is due now: erasures once everything sent is acknowledged, then journal
    /// batches within the window (none while an erasure waits).
    pub fn poll(
        &mut self,
        journal: &mut Journal,
        out: &mut Output,
    ) -> Result<(), ConversationError> {
        if !self.deferred_erasures.is_empty() && self.session.sent() <= self.session.acked() {
            for (card_keys, up_to_version) in std::mem::take(&mut self.deferred_erasures) {
                if self.erasures_stalled
                    || !self.apply_erasures(card_keys, up_to_version, journal, out)?
                {
                    // Not acknowledged: the hub sends them again on the next connection
                    // (by then the keyring is here).
                    self.erasures_stalled = true;
                    break;
                }
                let applied = self.session.erasures_applied(up_to_version);
                out.transmit.push(Transmit::Message(applied));
            }
        }
        while self.deferred_erasures.is_empty() {
            let Some((first, max)) = self.session.poll_batch() else {
                break;
            };
            let events = journal.read_linked(first, max)?;
            let Some(last) = events.last().map(|(e, _)| e.seq) else {
                return Err(ConversationError::NothingToSend(first));
            };
            out.transmit.push(Transmit::Events(events));
            self.session.on_sent(last);
        }
        Ok(())
    }

    /// The till's health, when it changed since the last report on this connection.
    pub fn health_report(
        &mut self,
        journal: &Journal,
    ) -> Result<Option<Message>, ConversationError> {
        let now = health::of_status(&journal.status()?);
        if !health::report_due(Some(&self.last_health), &now) {
            return Ok(None);
        }
        self.last_health = now;
        Ok(Some(Message::Health(now)))
    }

    /// Pseudonymises the journal's events of the erased cards, drops their digests,
    /// scrubs the quarantine and stores `up_to_version` (one transaction). `false`: not
    /// applied, as the journal holds no keyring to recognise the cards by (must not be
    /// acknowledged).
    fn apply_erasures(
        &mut self,
        card_keys: Vec<CardKey>,
        up_to_version: u64,
        journal: &mut Journal,
        out: &mut Output,
    ) -> Result<bool, ConversationError> {
        let count = card_keys.len();
        let Some(outcome) = journal.apply_erasures(&card_keys, up_to_version)? else {
            tracing::warn!(
                "uplink: erasures up to version {up_to_version} not applied yet: no keyring from the hub to recognise the cards by"
            );
            return Ok(false);
        };
        tracing::info!(
            "uplink: {count} erased card keys applied (erasure version {}): {} journal events pseudonymised, {} digests removed, {} quarantined rows scrubbed",
            outcome.erasure_version,
            outcome.events_pseudonymised,
            outcome.digests_removed,
            outcome.quarantine_scrubbed
        );
        self.erasures_applied = outcome.erasure_version;
        if !card_keys.is_empty() {
            // Applied with a keyring, so it reads; the core can do without.
            let digest_key = journal
                .campaigns()
                .ok()
                .flatten()
                .map(|s| s.keyring.digest_key);
            if let Some(digest_key) = digest_key {
                out.erased.push(ErasedCards {
                    digest_key,
                    card_keys,
                });
            }
        }
        Ok(true)
    }
}
