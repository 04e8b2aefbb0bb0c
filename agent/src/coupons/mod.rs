//! Coupons at the till (pure): what the till core decides at a receipt's cut and what it
//! makes of a scanned coupon code. No clock, no IO: `now` and every state come in as
//! arguments; the till core (runtime) journals and prints what comes out.
//!
//! - [`desk`]: [`CouponDesk`] — the campaign state and digest cache the till holds, and
//!   "receipt + card + now" → the coupon block to print before the cut and the
//!   `CouponIssued` / `CouponWouldHave` events.
//! - [`redeem`]: [`ScannedCoupons`] — a scanned code checked offline (own store), by the
//!   hub (another store), and attached to the next receipt.

#![deny(clippy::disallowed_methods)]

pub mod desk;
pub mod redeem;
pub mod serials;
#[cfg(test)]
mod tests;

pub use desk::{CouponDesk, CutCoupons, NotPrinted};
pub use redeem::{
    check_code, CodeCheck, ReceiptCodes, ScanContext, ScanOutcome, ScannedCoupons, VerdictOutcome,
};
pub use serials::{SerialBlocks, SERIAL_BLOCK};
