//! The identity graph. Identifiers (card, customer number, e-mail, phone, online
//! account) are normalised here (pure); rows that name several identifiers ("link
//! rows": a CRM customer, an online order) connect them, and each connected component
//! is one profile whose id is the smallest `p-<hash>` over its identifiers, so the same
//! links in any order give the same profiles and ids. `graph` is the pure component
//! computation, `link` the rows and outcomes the store's `store/identity.rs` applies.

mod graph;
mod link;
mod normalise;
pub mod suspicious;

#[cfg(test)]
mod tests;

use serde::Serialize;

pub use graph::{components, Component};
pub use link::{CardOwner, LinkOutcome, LinkRow};
pub use normalise::{
    normalise_customer_no, normalise_email, normalise_online_account, normalise_phone,
    IdentifierError,
};

/// The kinds of identifier (the `identifiers.kind` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdKind {
    Card,
    CustomerNo,
    Email,
    Phone,
    OnlineAccount,
}

impl IdKind {
    pub const ALL: [IdKind; 5] = [
        IdKind::Card,
        IdKind::CustomerNo,
        IdKind::Email,
        IdKind::Phone,
        IdKind::OnlineAccount,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IdKind::Card => "card",
            IdKind::CustomerNo => "customer_no",
            IdKind::Email => "email",
            IdKind::Phone => "phone",
            IdKind::OnlineAccount => "online_account",
        }
    }

    pub fn parse(name: &str) -> Option<IdKind> {
        IdKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// A normalised identifier. Construct it through the normalisers (or
/// [`Identifier::card`]) so the same person's identifier is always spelled the same.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Identifier {
    pub kind: IdKind,
    pub value: String,
}

impl Identifier {
    pub fn card(card: &till360_shared::CardNumber) -> Self {
        Self {
            kind: IdKind::Card,
            value: card.as_str().to_string(),
        }
    }

    /// Normalises `raw` as an identifier of `kind` (`country_code` for national phone
    /// numbers).
    pub fn parse(kind: IdKind, raw: &str, country_code: u16) -> Result<Self, IdentifierError> {
        let value = match kind {
            IdKind::Card => till360_shared::CardNumber::parse(raw.trim())
                .map_err(|e| IdentifierError::Card(e.to_string()))?
                .as_str()
                .to_string(),
            IdKind::CustomerNo => normalise_customer_no(raw)?,
            IdKind::Email => normalise_email(raw)?,
            IdKind::Phone => normalise_phone(raw, country_code)?,
            IdKind::OnlineAccount => normalise_online_account(raw)?,
        };
        Ok(Self { kind, value })
    }

    /// The deterministic profile id this identifier alone would give: `p-` and 16 hex
    /// digits of SHA-256. A card hashes its digits only, so a till-only profile keeps
    /// the id `profile::profile_id_for` gives it; other kinds hash `kind:value`.
    pub fn profile_id(&self) -> String {
        let digest = match self.kind {
            IdKind::Card => ring::digest::digest(&ring::digest::SHA256, self.value.as_bytes()),
            kind => {
                let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
                ctx.update(kind.as_str().as_bytes());
                ctx.update(b":");
                ctx.update(self.value.as_bytes());
                ctx.finish()
            }
        };
        profile_id_of_digest(digest.as_ref())
    }
}

/// `p-` and the first 8 bytes of an identifier's SHA-256 in hex: its profile id. Once
/// per carded event at ingest, so hex by hand rather than a `format!` per byte.
pub(crate) fn profile_id_of_digest(digest: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(18);
    id.push_str("p-");
    for b in digest.iter().take(8) {
        id.push(char::from(HEX[usize::from(b >> 4)]));
        id.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    id
}

impl std::fmt::Display for Identifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind.as_str(), self.value)
    }
}

/// An identifier blocked from merging (it would link too many customers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockedIdentifier {
    pub kind: String,
    pub value: String,
    /// Distinct customer numbers it was seen with.
    pub customers: u64,
    pub reason: String,
}
