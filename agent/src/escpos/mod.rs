//! ESC/POS text extraction (pure): which lines a receipt printer prints, where the
//! paper is cut and when the POS asks for printer status.
//!
//! - `codepage`: single-byte code pages, Epson's `ESC t n` numbering (per printer
//!   model, [`EscTTable`]) and the `ESC R n` international sets.
//! - `commands`: the command table (argument shapes as data).
//! - `parser`: the streaming `feed`/`poll` state machine over that table.
//! - `gate`: holds a cut until its coupon decision (or its budget), inserting the block.

#![deny(clippy::disallowed_methods)]

mod codepage;
mod commands;
pub mod encode;
pub mod gate;
mod parser;
#[cfg(test)]
mod tests;

pub use codepage::{CodePage, EscTTable};
pub use parser::{EscPosParser, PrintEvent, StatusCommand, MAX_LINE_CHARS, MAX_PAGE_CHARS};
