//! Coupons on the hub: checking a scanned code (`verify`), the ledger of issued,
//! would-have and redeemed coupons, and the campaign KPIs.

pub mod verify;

pub use verify::{check_code, coupon_verdict, CodeCheck};
