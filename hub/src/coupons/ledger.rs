//! The coupon ledger: coupon events merged into the `coupons` and `redemptions` tables.
//!
//! Each event becomes one row keyed by the event's (store, till, seq), so a replay is
//! refused by the key. A scan's status is the hub's own check of the code's signature
//! (the till's `verified` is kept, never trusted). Every scan row also gets the hub's
//! `commit_seq`, strictly increasing in commit order: which scan of a code is THE
//! redemption is decided when read (`kpis`) by that order, never by the till's clock
//! (a till can be backdated). The same sequence versions the redeemed-codes downlink
//! (`store::coupon_ledger::redeemed_since`), with the store that issued each code and its
//! expiry. The rows and statuses are here; writing and reading them is the store's
//! (`store/coupon_ledger.rs`).

// The rows a coupon event becomes are the profile model's (`profile::merge_ops` makes
// them); the store's ledger writes them.
pub use crate::profile::{CouponRow, RedemptionRow, ScanOutcome};

/// The `status` column of `redemptions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RedemptionStatus {
    /// Accepted by the till, and the hub's check of the signature passed.
    Genuine,
    /// Accepted by the till, but the hub's check failed.
    Forged,
    /// Accepted by the till while the hub had no master secret to check it with:
    /// counted as genuine.
    Unchecked,
    /// Refused by the till.
    Refused,
}

impl RedemptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RedemptionStatus::Genuine => "genuine",
            RedemptionStatus::Forged => "forged",
            RedemptionStatus::Unchecked => "unchecked",
            RedemptionStatus::Refused => "refused",
        }
    }

    /// `None` for a value this hub did not write.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "genuine" => Some(RedemptionStatus::Genuine),
            "forged" => Some(RedemptionStatus::Forged),
            "unchecked" => Some(RedemptionStatus::Unchecked),
            "refused" => Some(RedemptionStatus::Refused),
            _ => None,
        }
    }

    /// Whether a scan with this status can be the redemption of its code.
    pub fn counts(self) -> bool {
        matches!(
            self,
            RedemptionStatus::Genuine | RedemptionStatus::Unchecked
        )
    }
}

/// The statuses [`RedemptionStatus::counts`] accepts, for SQL.
pub(crate) const COUNTING_STATUSES: &str = "('genuine', 'unchecked')";

/// How the hub classifies a scan: its status, the campaign it names (the checked one
/// for a genuine code, the one its campaign number claims otherwise) and a reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    pub status: RedemptionStatus,
    pub campaign_id: Option<String>,
    pub reason: Option<String>,
}
