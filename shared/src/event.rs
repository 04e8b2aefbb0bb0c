//! The event envelope and the event kinds an agent records.

use serde::{Deserialize, Serialize};

use crate::card::CardNumber;
use crate::money::Currency;
use crate::time::Timestamp;

/// Who wrote an event: a till in a store. On the hub this comes from the agent's
/// client certificate, never from the payload (DESIGN.md principle 4).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AgentId {
    pub store: String,
    pub till: String,
}

impl AgentId {
    pub fn new(store: impl Into<String>, till: impl Into<String>) -> Self {
        Self {
            store: store.into(),
            till: till.into(),
        }
    }

    /// Store and till ids are short printable names: `[A-Za-z0-9_.-]{1,32}`.
    pub fn is_valid_part(part: &str) -> bool {
        !part.is_empty()
            && part.len() <= 32
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    }
}

impl std::fmt::Display for AgentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.store, self.till)
    }
}

/// One recorded fact. `seq` is gapless per agent, starting at 1; `(agent, seq)` is the
/// event's identity for exactly-once merging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub agent: AgentId,
    pub seq: u64,
    pub recorded_at: Timestamp,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// A loyalty card was scanned at the till.
    CardScanned { card: CardNumber },
    /// A receipt was printed and parsed.
    Receipt(Receipt),
}

impl EventKind {
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::CardScanned { .. } => "card_scanned",
            EventKind::Receipt(_) => "receipt",
        }
    }
}

/// A transaction as read from the printed receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The receipt number as printed, if the layout found one.
    pub receipt_no: Option<String>,
    /// The time printed on the receipt (the POS clock), if the layout found one.
    pub printed_at: Option<Timestamp>,
    /// When the agent saw the cut that ended the receipt (the agent's clock).
    pub completed_at: Timestamp,
    /// The loyalty card scanned for this receipt, if any.
    pub card: Option<CardNumber>,
    /// Last digits of a card as printed on the receipt, if the layout found them.
    pub card_last4: Option<String>,
    pub lines: Vec<ReceiptLine>,
    pub total_cents: i64,
    pub currency: Currency,
}

/// One line of a receipt. A discount line has `discount = true` and a negative amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptLine {
    pub description: String,
    pub sku: Option<String>,
    /// Quantity in thousandths (1 piece = 1000, 0.512 kg = 512).
    pub quantity_milli: i64,
    /// Unit price in cents, when printed.
    pub unit_cents: Option<i64>,
    pub amount_cents: i64,
    pub discount: bool,
}

impl Receipt {
    /// Sum of line amounts; compared with `total_cents` to flag misparsed receipts.
    pub fn lines_sum_cents(&self) -> i64 {
        self.lines.iter().map(|l| l.amount_cents).sum()
    }
}
