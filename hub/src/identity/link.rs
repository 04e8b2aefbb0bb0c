//! Link rows: what names identifiers of one person (a CRM customer, an online order),
//! and what applying one did. The store applies them to the graph it keeps
//! (`store/identity.rs`), recomputing joined or split profiles with the pure
//! [`super::components`], so the result does not depend on the order rows arrive in.

use till360_shared::Timestamp;

use super::{BlockedIdentifier, Identifier};

/// A row that names identifiers of one person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRow {
    /// Stable key of the row in its source (`crm:<customer_no>`, `order:<order_id>`):
    /// applying the same row twice changes nothing.
    pub key: String,
    /// `till`, `crm`, `online` or `api` (kept with each identifier it adds).
    pub source: String,
    pub identifiers: Vec<Identifier>,
    /// The time the row speaks of; a profile exists at least since then.
    pub seen_at: Timestamp,
}

/// What applying a link row did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkOutcome {
    /// The row's profile (`None` when all its identifiers are blocked).
    pub profile_id: Option<String>,
    /// The row created a profile.
    pub created: bool,
    /// The row joined profiles (or, by blocking an identifier, split one).
    pub merged: bool,
    /// Identifiers this row pushed over the limit of customers.
    pub newly_blocked: Vec<BlockedIdentifier>,
}

/// Whom a till event's card names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardOwner {
    Profile(String),
    /// The card is blocked from identifying anyone (a shared store card): anonymous.
    Blocked,
}
