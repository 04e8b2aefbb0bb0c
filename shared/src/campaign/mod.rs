//! Campaigns: definitions (parsed from the hub's `campaigns` TOML, pushed to every agent)
//! and the pure coupon decision the till makes at the cut (DESIGN.md "Coupons",
//! principles 1 and 7).
//!
//! - [`definition`]: [`CampaignSet`], [`Campaign`], [`Trigger`], [`Settings`] and
//!   [`CampaignSet::from_toml_str`], whose errors name the file, the campaign, the key
//!   and the reason.
//! - [`decision`]: [`decide`] — basket + digest + campaigns + `now` → which offers to
//!   print, which are "would-have" offers of the control group, and why every other
//!   campaign was skipped. No IO, no clock, deterministic.
//! - [`control`]: the stable hash that splits customers into treated and control.
//!
//! The decision says WHAT to issue; the caller mints the coupon code (`coupon::`).

pub mod control;
pub mod decision;
pub mod definition;

pub use control::{control_bucket, fnv1a64, in_control_group, ControlSubject};
pub use decision::{
    decide, BasketLine, CatalogItem, Decision, DecisionInput, Digest, MonthDay, Offer, Reason,
};
pub use definition::{
    Campaign, CampaignError, CampaignSet, Section, SensitiveConflict, Settings, Trigger,
    TriggerKind,
};

#[cfg(test)]
mod tests;
