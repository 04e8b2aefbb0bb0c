//! Receipt layout matcher (pure): turns the printed text lines of one receipt into a
//! [`ParsedReceipt`] using per-line regex patterns from `config/receipts/*.toml`
//! (format: DESIGN.md "Receipt layout").
//!
//! - `config`: the layout file, its validation and compilation into a [`Layout`].
//! - `matcher`: applying a [`Layout`] to lines.

mod config;
mod matcher;
#[cfg(test)]
mod tests;

pub use config::{Layout, LayoutError};
pub use matcher::parse_quantity;

use serde::{Deserialize, Serialize};
use till360_shared::ReceiptLine;

/// What a layout found on one receipt.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ParsedReceipt {
    pub receipt_no: Option<String>,
    pub printed_at: Option<chrono::NaiveDateTime>,
    pub card_last4: Option<String>,
    pub lines: Vec<ReceiptLine>,
    pub total_cents: Option<i64>,
    /// Lines no pattern matched, and amounts that failed to parse (diagnostics).
    pub unmatched: Vec<String>,
}
