//! Wire messages between agent and hub. Every frame carries [`PROTOCOL_VERSION`];
//! the byte layout lives in [`crate::codec`].

use serde::{Deserialize, Serialize};

use crate::campaign::{CampaignSet, CatalogItem, Digest};
use crate::card::CardNumber;
use crate::coupon::{CardKey, Keyring};
use crate::event::{AgentId, Event};

/// Version of the frame layout and the message set below; a peer speaking another
/// version is refused with a clear message, never misread. Version 2 added the flags
/// byte (compressed bodies); 3 the redeemed-codes downlink (`Subscribe.redeemed_version`,
/// `Redeemed`), the till's clock (`TillClock`), the receipt checks (`Receipt.unbalanced`,
/// `unmatched_lines`; `TillHealth.unbalanced_receipts`, `unrecognised_scans`), per-store
/// card keys, erasures as card keys and digests without a name.
pub const PROTOCOL_VERSION: u16 = 3;

/// QUIC ALPN protocol id (DESIGN.md). It names the protocol family and stays put
/// across frame versions, so a peer of another [`PROTOCOL_VERSION`] still connects and
/// is refused in-band with a clear `VersionMismatch` instead of an opaque handshake
/// failure.
pub const ALPN: &[u8] = b"till360/1";

/// Frames larger than this are refused before any allocation of their size; a
/// compressed body may not inflate beyond it either.
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
    /// Agent → hub, after `Welcome` and whenever it changes: the till's own health, so
    /// the hub's operators see a till in trouble before it loses anything.
    Health(TillHealth),
    /// Agent → hub, right after an `Events` frame: the journal's hash chain
    /// (`shared::chain`) at `last_seq`, the batch's last seq, as recorded when each event
    /// was journaled. The hub recomputes it over what it received and reports a
    /// mismatch (a journal edited on the till).
    Chain { last_seq: u64, hash: [u8; 32] },
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
        /// The digest version of the agent's cache (0: empty).
        digest_version: u64,
        /// The version of the store's redeemed-codes ledger the agent holds (0: none).
        redeemed_version: u64,
    },
    /// Hub → agent: cards erased on the hub, in version order, everything up to and
    /// including `up_to_version` (bounded batches), as the card keys of the agent's
    /// store (never in clear): the agent drops every card whose key
    /// (`Keyring::card_key`) is among them.
    Erasures {
        card_keys: Vec<CardKey>,
        up_to_version: u64,
    },
    /// Agent → hub: erasures up to `up_to_version` are applied and persisted.
    ErasuresApplied { up_to_version: u64 },
    /// Hub → agent, after `Welcome` and only when the agent subscribed with another
    /// campaign version: the whole set (small) and this till's coupon keyring (its
    /// number and key, its store's till keys, campaign numbers, the card-key secret),
    /// derived for the certificate's store/till, and the catalog items the triggers
    /// need (sensitive products, products of targeted categories). `version` covers all
    /// three. Never log this frame's fields.
    Campaigns {
        version: u64,
        set: CampaignSet,
        keyring: Keyring,
        catalog: Vec<CatalogItem>,
    },
    /// Hub → agent, after `Subscribe`: profile digests of the store's customers changed
    /// after the agent's `digest_version`, in version order, in bounded batches. `None`
    /// removes a card's digest (erased, or no longer a customer of this store). With
    /// `reset` the agent drops its whole cache first (the hub's feed was rebuilt).
    Digests {
        entries: Vec<DigestEntry>,
        up_to_version: u64,
        reset: bool,
    },
    /// Agent → hub: a card was scanned; its freshest digest, please.
    DigestRequest { card: CardNumber },
    /// Hub → agent: the answer (`None`: the hub knows no such customer).
    DigestReply {
        card: CardNumber,
        digest: Option<Digest>,
    },
    /// Agent → hub: may this coupon code (another store's) be redeemed?
    CouponCheck { code: String },
    /// Hub → agent: the answer to `CouponCheck`.
    CouponVerdict {
        code: String,
        verdict: CouponVerdict,
    },
    /// Hub → agent, after `Subscribe`: coupon codes redeemed at the agent's store (or
    /// issued by one of its tills and redeemed elsewhere) committed after the agent's
    /// `redeemed_version`, in commit order, in bounded batches; `up_to_version` is the
    /// hub's commit sequence of the last one. Expired codes are left out.
    Redeemed {
        codes: Vec<String>,
        up_to_version: u64,
    },
    /// Agent → hub, after `Subscribe` and every minute: the till's clock
    /// (UTC milliseconds) when sent, so the hub can report a till whose clock is off.
    TillClock { unix_ms: i64 },
}

/// What a till reports about itself (`Message::Health`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TillHealth {
    /// Size of the journal file.
    pub journal_bytes: u64,
    /// The journal's quota (`[journal] max_bytes`).
    pub journal_max_bytes: u64,
    /// The journal is past its quota (nothing is dropped; the disk may fill up).
    pub quota_exceeded: bool,
    /// Journal rows that could not be read and were quarantined.
    pub quarantined: u64,
    /// Events journaled but not yet acknowledged by the hub.
    pub pending: u64,
    /// Receipts journaled flagged `unbalanced` (lines do not add up to the total, or no
    /// total line), since the journal was created: a layout that misreads this POS.
    pub unbalanced_receipts: u64,
    /// Scans that were neither a loyalty card nor a coupon (unknown prefix, bad check
    /// digit, a product): a wrong `[cards] prefixes` shows here.
    pub unrecognised_scans: u64,
}

/// One card's digest in the digest downlink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestEntry {
    pub card_key: CardKey,
    pub digest: Option<Digest>,
}

/// The hub's answer about a scanned coupon code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CouponVerdict {
    /// Signed by the till it names, not expired, not redeemed before.
    Valid,
    /// Genuine, but already redeemed (a duplicate).
    AlreadyRedeemed,
    /// Genuine, past its expiry date.
    Expired,
    /// Not signed by the till it names, or naming an unknown till or campaign.
    Forged,
}

impl CouponVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            CouponVerdict::Valid => "valid",
            CouponVerdict::AlreadyRedeemed => "already_redeemed",
            CouponVerdict::Expired => "expired",
            CouponVerdict::Forged => "forged",
        }
    }
}

impl Message {
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "hello",
            Message::Welcome { .. } => "welcome",
            Message::Events(_) => "events",
            Message::Chain { .. } => "chain",
            Message::Health(_) => "health",
            Message::Ack { .. } => "ack",
            Message::Refused { .. } => "refused",
            Message::Subscribe { .. } => "subscribe",
            Message::Erasures { .. } => "erasures",
            Message::ErasuresApplied { .. } => "erasures_applied",
            Message::Campaigns { .. } => "campaigns",
            Message::Digests { .. } => "digests",
            Message::DigestRequest { .. } => "digest_request",
            Message::DigestReply { .. } => "digest_reply",
            Message::CouponCheck { .. } => "coupon_check",
            Message::CouponVerdict { .. } => "coupon_verdict",
            Message::Redeemed { .. } => "redeemed",
            Message::TillClock { .. } => "till_clock",
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
    /// The till's certificate is on the hub's revocation list.
    Revoked,
    /// A newer certificate was issued for this store/till (the till was re-provisioned):
    /// this older one may no longer write.
    Fenced,
}
