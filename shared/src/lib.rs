//! The language the Till360 agent and hub speak: events, money, cards, wire messages
//! and the sync protocol state machines. No IO: this crate never touches a socket, a
//! port, a file or a clock (`now` is always an argument). `tests/invariants.rs` holds
//! that line by checking the manifest.

#![deny(clippy::disallowed_methods)]

pub mod campaign;
pub mod card;
pub mod chain;
pub mod codec;
pub mod coupon;
pub mod event;
pub mod money;
pub mod sync;
pub mod time;
pub mod wire;

pub use card::{CardError, CardNumber, CardPrefixes, Gtin};
pub use event::{AgentId, Event, EventKind, Receipt, ReceiptLine};
pub use money::{Currency, Money, MoneyError};
pub use time::Timestamp;
