//! Wire messages between agent and hub. Every frame carries [`PROTOCOL_VERSION`];
//! the byte layout lives in [`crate::codec`].

use serde::{Deserialize, Serialize};

use crate::campaign::CampaignSet;
use crate::card::CardNumber;
use crate::event::{AgentId, Event};

/// Version of the message set below; a peer speaking another version is refused with
/// a clear message, never misread.
pub const PROTOCOL_VERSION: u16 = 1;

/// QUIC ALPN protocol id.
pub const ALPN: &[u8] = b"till360/1";

/// Frames larger than this are refused before any allocation of their size.
pub const MAX_FRAME_LEN: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Agent → hub, first frame on a connection: who the agent claims to be (checked
    /// against its certificate) and the last seq it has journaled.
    Hello {
        agent: AgentId,
        journal_last_seq: u64,
        software: String,
    },
    /// Hub → agent: the highest seq the hub has committed for this agent; the agent
    /// resumes sending after it.
    Welcome { acked_seq: u64 },
    /// Agent → hub: events in seq order, contiguous.
    Events(Vec<Event>),
    /// Hub → agent: everything up to and including `acked_seq` is committed.
    Ack { acked_seq: u64 },
    /// Either side: the connection is refused or closed for this reason.
    Refused { reason: Refusal, detail: String },
    /// Agent → hub, right after `Hello`: the downlink versions this agent has applied.
    /// The hub then sends only what is newer (the delta) and keeps pushing new
    /// changes. A peer that never subscribes gets no downlink frames.
    /// `campaign_version` is the version of the campaign set the agent holds (0: none).
    Subscribe {
        erasure_version: u64,
        campaign_version: u64,
    },
    /// Hub → agent: cards erased on the hub, in version order, everything up to and
    /// including `up_to_version` (bounded batches; the agent drops these cards).
    Erasures {
        cards: Vec<CardNumber>,
        up_to_version: u64,
    },
    /// Agent → hub: erasures up to `up_to_version` are applied and persisted.
    ErasuresApplied { up_to_version: u64 },
    /// Hub → agent, after `Welcome` and only when the agent subscribed with another
    /// campaign version: the whole set (small) and this till's coupon signing key,
    /// derived for the certificate's store/till. Never log this frame's fields.
    Campaigns {
        set: CampaignSet,
        till_key: [u8; 32],
    },
}

impl Message {
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "hello",
            Message::Welcome { .. } => "welcome",
            Message::Events(_) => "events",
            Message::Ack { .. } => "ack",
            Message::Refused { .. } => "refused",
            Message::Subscribe { .. } => "subscribe",
            Message::Erasures { .. } => "erasures",
            Message::ErasuresApplied { .. } => "erasures_applied",
            Message::Campaigns { .. } => "campaigns",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// The payload names a store/till other than the client certificate.
    IdentityMismatch,
    /// Events do not continue the agent's sequence (a gap, or out of order).
    SequenceGap,
    /// A frame could not be decoded or was not expected in this state.
    ProtocolError,
    /// The hub could not commit; the agent should retry later.
    Unavailable,
}
