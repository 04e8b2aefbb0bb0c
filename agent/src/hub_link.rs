//! What the till core and the uplink tell each other about coupons: requests the till
//! core makes of the hub (a card's fresh digest at a scan, a check of a scanned coupon
//! code) and the news the uplink brings back (a new campaign set and keyring,
//! digest deltas, answers). Plain values; the uplink answers every request, with `None`
//! when the hub could not answer in time (offline, or later than the timeout).

use std::sync::Arc;

use till360_shared::campaign::{CampaignSet, CatalogItem, Digest};
use till360_shared::coupon::Keyring;
use till360_shared::wire::{CouponVerdict, DigestEntry};
use till360_shared::CardNumber;

/// Till core → uplink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubRequest {
    /// A card was scanned: ask for its freshest digest (answered within the timeout).
    Digest { card: CardNumber },
    /// A coupon code was scanned (any store's, while the hub is connected): may it be
    /// redeemed?
    CouponCheck { code: String },
}

/// The campaign set a till holds, with its keyring and catalog items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignState {
    pub version: u64,
    pub set: CampaignSet,
    pub keyring: Keyring,
    pub catalog: Vec<CatalogItem>,
}

/// Uplink → till core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubNews {
    /// A new campaign set was persisted.
    Campaigns(Box<CampaignState>),
    /// Digest changes were persisted (with `reset`, the cache was emptied first).
    Digests {
        entries: Vec<DigestEntry>,
        reset: bool,
    },
    /// The answer to [`HubRequest::Digest`] (`None`: the hub knows no such customer),
    /// already persisted in the cache. Not sent when the hub did not answer in time.
    Digest {
        card: CardNumber,
        digest: Option<Digest>,
    },
    /// The answer to [`HubRequest::CouponCheck`]; `None` when the hub could not be
    /// asked or did not answer within the timeout.
    CouponVerdict {
        code: String,
        verdict: Option<CouponVerdict>,
    },
    /// The uplink connected (`true`) or lost the hub (`false`).
    Online(bool),
}

/// Where the uplink delivers news (the runtime forwards it into the till core's queue).
pub type NewsSink = Arc<dyn Fn(HubNews) + Send + Sync>;
