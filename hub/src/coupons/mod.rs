//! Coupons on the hub: checking a scanned code (`verify`), the ledger of issued,
//! would-have and redeemed coupons (`ledger`), and the campaign KPIs (`kpis`).

pub mod kpis;
pub mod ledger;
pub mod report;
pub mod verify;

#[cfg(test)]
mod tests;

pub use kpis::{CampaignKpis, CouponCounts, StoreCoupons, Uplift};
pub use ledger::{CouponRow, RedemptionRow, RedemptionStatus, ScanOutcome};
pub use verify::{code_digits, CodeCheck};
