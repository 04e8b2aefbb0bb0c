//! The coupon decision at the cut: pure, deterministic, never panics.
//!
//! Campaigns are tried in order of priority (higher first), then id. For each, the first
//! rule it fails is recorded as the [`Reason`] it was skipped; a campaign that passes
//! every rule is *selected*: printed, or — for a subject in its control group — logged
//! as a would-have with nothing printed. A would-have counts exactly like a printed
//! coupon against the receipt limit and the caps, so a control customer is treated the
//! same as a treated one in every way but the coupon (and does not get the next
//! campaign instead, which would spoil the comparison).
//!
//! Rules, in the order they are checked:
//! 1. `stores` (if set) contains this store — else [`Reason::NotThisStore`];
//! 2. the till is online, or the campaign allows offline issue — else [`Reason::Offline`];
//! 3. profile triggers and `segments` need a digest ([`Reason::NoProfile`]) with
//!    personalisation consent ([`Reason::NoConsent`]) and a matching segment
//!    ([`Reason::NotInSegment`]); basket triggers need neither;
//! 4. the trigger is met — lines in a sensitive category never count
//!    ([`Reason::TriggerNotMet`], [`Reason::SensitiveOnly`], [`Reason::SensitiveCategory`]);
//! 5. known customers only: fewer than `max_per_customer` of this campaign within
//!    `cap_days` ([`Reason::Capped`]) and fewer than `max_per_customer_per_week` of any
//!    campaign in the last 7 days ([`Reason::GlobalCap`]), counting the digest's caps
//!    (every channel) plus what this decision already selected;
//! 6. fewer than `max_per_receipt` selected on this receipt ([`Reason::ReceiptLimit`]).
//!
//! Anonymous baskets (no digest) can only meet basket triggers, have no caps, and are
//! split into control/treated by the receipt key ([`ControlSubject::Receipt`]).

use chrono::{Datelike, Days, NaiveDate, TimeDelta};
use serde::{Deserialize, Serialize};

use super::control::{in_control_group, ControlSubject};
use super::definition::{Campaign, CampaignSet, Trigger};
use crate::time::Timestamp;

const DAY_MS: i64 = 86_400_000;

/// Everything the till knows at the cut.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DecisionInput {
    pub store: String,
    pub basket: Vec<BasketLine>,
    /// What the till knows about the card holder; `None` for an anonymous basket or a
    /// card the till has no digest for.
    pub digest: Option<Digest>,
    /// The till cannot reach the hub right now.
    pub offline: bool,
    /// Control-group key of an anonymous basket: unique per receipt, e.g.
    /// `S001/T01/<receipt number or journal seq>`. Unused when there is a digest.
    pub receipt_key: String,
}

/// One receipt line as the trigger sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BasketLine {
    /// Negative for a discount line.
    pub amount_cents: i64,
    pub discount: bool,
    /// The catalog category, when the product is known.
    pub category: Option<String>,
    /// The product is in a sensitive category (catalog flag). The caller marks a
    /// discount line sensitive when the item it belongs to is.
    pub sensitive: bool,
}

/// A product the till must recognise on a receipt line: sensitive ones (never counted)
/// and those in a category a campaign targets. Matched by sku, else by description
/// (case-insensitive), as the hub matches lines. Other lines count with no category.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CatalogItem {
    pub sku: String,
    pub description: String,
    pub category: String,
    pub sensitive: bool,
}

/// A birthday without a year (the till does not need the year).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonthDay {
    pub month: u8,
    pub day: u8,
}

/// What a till holds about one card holder (pushed by the hub, pseudonymised): what the
/// triggers, the control group and the caps need, no name. Without personalisation
/// consent the hub sends only `customer_key` and `caps_used`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Digest {
    /// Pseudonymous customer key (a keyed hash of the card): the control-group key.
    pub customer_key: String,
    pub birthday: Option<MonthDay>,
    pub member_since: Option<NaiveDate>,
    pub points: i64,
    /// The previous visit (not the one being printed now).
    pub last_visit: Option<Timestamp>,
    pub personalisation_consent: bool,
    pub segments: Vec<String>,
    /// Coupons already given to this customer, any channel: (campaign id, issued at).
    /// The hub should include would-haves, so control and treated are capped alike.
    pub caps_used: Vec<(String, Timestamp)>,
}

/// What to issue; the caller mints the code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    pub campaign_id: String,
    pub text: String,
    /// Last day of validity (inclusive): the till's local date + `valid_days`.
    pub expires: NaiveDate,
}

/// Why a campaign gave no coupon on this receipt. `as_str` names are stable (KPIs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Reason {
    NotThisStore,
    Offline,
    NoProfile,
    NoConsent,
    NotInSegment,
    TriggerNotMet,
    /// The trigger would have been met only by counting sensitive products.
    SensitiveOnly,
    /// The campaign's category is sensitive in this store's catalog: never targeted.
    SensitiveCategory,
    Capped,
    GlobalCap,
    ReceiptLimit,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotThisStore => "not_this_store",
            Reason::Offline => "offline",
            Reason::NoProfile => "no_profile",
            Reason::NoConsent => "no_consent",
            Reason::NotInSegment => "not_in_segment",
            Reason::TriggerNotMet => "trigger_not_met",
            Reason::SensitiveOnly => "sensitive_only",
            Reason::SensitiveCategory => "sensitive_category",
            Reason::Capped => "capped",
            Reason::GlobalCap => "global_cap",
            Reason::ReceiptLimit => "receipt_limit",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome for one receipt: every campaign of the set appears in exactly one list.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Decision {
    /// Print these (in priority order).
    pub issue: Vec<Offer>,
    /// Control group: log these, print nothing.
    pub would_have: Vec<Offer>,
    pub skipped: Vec<(String, Reason)>,
}

/// Decides which coupons this receipt gets. See the module docs for the rules.
pub fn decide(input: &DecisionInput, set: &CampaignSet, now: Timestamp) -> Decision {
    let today = local_date(now);
    let basket = BasketTotals::of(&input.basket);
    let digest = input.digest.as_ref();
    let subject = match digest {
        Some(d) => ControlSubject::Customer(&d.customer_key),
        None => ControlSubject::Receipt(&input.receipt_key),
    };

    let mut order: Vec<&Campaign> = set.campaigns.iter().collect();
    order.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.id.cmp(&b.id)));

    let week_start = now.unix_ms.saturating_sub(7 * DAY_MS);
    let mut used_this_week = digest.map_or(0, |d| {
        d.caps_used
            .iter()
            .filter(|(_, at)| at.unix_ms > week_start)
            .count()
    });
    let max_per_receipt = usize::try_from(set.settings.max_per_receipt).unwrap_or(usize::MAX);
    let max_per_week =
        usize::try_from(set.settings.max_per_customer_per_week).unwrap_or(usize::MAX);

    let mut decision = Decision::default();
    for campaign in order {
        let verdict = eligible(campaign, input, &basket, today).and_then(|()| {
            if let Some(d) = digest {
                let selected_here = decision
                    .issue
                    .iter()
                    .chain(&decision.would_have)
                    .filter(|o| o.campaign_id == campaign.id)
                    .count();
                let used = used_within(d, campaign, now).saturating_add(selected_here);
                if used >= usize::try_from(campaign.max_per_customer).unwrap_or(usize::MAX) {
                    return Err(Reason::Capped);
                }
                if used_this_week >= max_per_week {
                    return Err(Reason::GlobalCap);
                }
            }
            if decision.issue.len() + decision.would_have.len() >= max_per_receipt {
                return Err(Reason::ReceiptLimit);
            }
            Ok(())
        });
        match verdict {
            Err(reason) => decision.skipped.push((campaign.id.clone(), reason)),
            Ok(()) => {
                used_this_week = used_this_week.saturating_add(1);
                let offer = Offer {
                    campaign_id: campaign.id.clone(),
                    text: campaign.offer.clone(),
                    expires: today
                        .checked_add_days(Days::new(u64::from(campaign.valid_days)))
                        .unwrap_or(NaiveDate::MAX),
                };
                if in_control_group(&campaign.id, subject, campaign.control_percent) {
                    decision.would_have.push(offer);
                } else {
                    decision.issue.push(offer);
                }
            }
        }
    }
    decision
}

/// Rules 1–4: store, offline, profile/consent/segment, trigger.
fn eligible(
    campaign: &Campaign,
    input: &DecisionInput,
    basket: &BasketTotals,
    today: NaiveDate,
) -> Result<(), Reason> {
    if let Some(stores) = &campaign.stores {
        if !stores.contains(&input.store) {
            return Err(Reason::NotThisStore);
        }
    }
    if input.offline && !campaign.offline {
        return Err(Reason::Offline);
    }
    let digest = input.digest.as_ref();
    if campaign.trigger.kind().uses_profile() || campaign.segments.is_some() {
        let d = digest.ok_or(Reason::NoProfile)?;
        if !d.personalisation_consent {
            return Err(Reason::NoConsent);
        }
        if let Some(wanted) = &campaign.segments {
            if !wanted.iter().any(|w| d.segments.contains(w)) {
                return Err(Reason::NotInSegment);
            }
        }
    }
    let met = |yes: bool| {
        if yes {
            Ok(())
        } else {
            Err(Reason::TriggerNotMet)
        }
    };
    match &campaign.trigger {
        Trigger::BasketTotal { min_total_cents } => {
            if basket.eligible_cents >= *min_total_cents {
                Ok(())
            } else if basket.all_cents >= *min_total_cents {
                Err(Reason::SensitiveOnly)
            } else {
                Err(Reason::TriggerNotMet)
            }
        }
        Trigger::BasketCategory {
            category,
            min_total_cents,
        } => {
            category_spend(&input.basket, category).and_then(|spent| met(spent >= *min_total_cents))
        }
        // Profile triggers: step 3 guarantees a digest; `None` only if that changes.
        Trigger::Birthday { within_days } => {
            let birthday = digest
                .and_then(|d| d.birthday)
                .ok_or(Reason::TriggerNotMet)?;
            met(days_from_yearly(today, birthday, None)
                .is_some_and(|days| days <= i64::from(*within_days)))
        }
        Trigger::Anniversary { within_days } => {
            let since = digest
                .and_then(|d| d.member_since)
                .ok_or(Reason::TriggerNotMet)?;
            let day = MonthDay {
                month: u8::try_from(since.month()).unwrap_or(0),
                day: u8::try_from(since.day()).unwrap_or(0),
            };
            met(days_from_yearly(today, day, Some(since.year()))
                .is_some_and(|days| days <= i64::from(*within_days)))
        }
        Trigger::PointsThreshold { points } => met(digest.is_some_and(|d| d.points >= *points)),
        Trigger::Lapsed { lapsed_days } => {
            let last = digest
                .and_then(|d| d.last_visit)
                .ok_or(Reason::TriggerNotMet)?;
            let away = today.signed_duration_since(local_date(last)).num_days();
            met(away >= i64::from(*lapsed_days))
        }
        Trigger::FirstVisit => met(digest.is_some_and(|d| d.last_visit.is_none())),
    }
}

/// Basket sums with and without sensitive lines (saturating: amounts come from parsed
/// receipts).
struct BasketTotals {
    eligible_cents: i64,
    all_cents: i64,
}

impl BasketTotals {
    fn of(lines: &[BasketLine]) -> Self {
        let mut totals = BasketTotals {
            eligible_cents: 0,
            all_cents: 0,
        };
        for line in lines {
            totals.all_cents = totals.all_cents.saturating_add(line.amount_cents);
            if !line.sensitive {
                totals.eligible_cents = totals.eligible_cents.saturating_add(line.amount_cents);
            }
        }
        totals
    }
}

/// Spend in `category` (ASCII case-insensitive), or `SensitiveCategory` when any line of
/// that category is sensitive: then the category itself is, and is never targeted.
fn category_spend(lines: &[BasketLine], category: &str) -> Result<i64, Reason> {
    let wanted = category.trim();
    let mut spent: i64 = 0;
    for line in lines {
        let Some(c) = &line.category else { continue };
        if !c.trim().eq_ignore_ascii_case(wanted) {
            continue;
        }
        if line.sensitive {
            return Err(Reason::SensitiveCategory);
        }
        spent = spent.saturating_add(line.amount_cents);
    }
    Ok(spent)
}

/// Days between `today` and the nearest yearly return of `day` (29 February is the 28th
/// in other years). With `after_year`, only returns in later years count (an anniversary
/// is not the joining day). `None` for an impossible date.
fn days_from_yearly(today: NaiveDate, day: MonthDay, after_year: Option<i32>) -> Option<i64> {
    let year = today.year();
    [year - 1, year, year + 1]
        .into_iter()
        .filter(|y| after_year.is_none_or(|first| *y > first))
        .filter_map(|y| {
            let (m, d) = (u32::from(day.month), u32::from(day.day));
            NaiveDate::from_ymd_opt(y, m, d).or_else(|| {
                (m == 2 && d == 29)
                    .then(|| NaiveDate::from_ymd_opt(y, 2, 28))
                    .flatten()
            })
        })
        .map(|date| today.signed_duration_since(date).num_days().abs())
        .min()
}

/// This campaign's coupons for the customer within its cap window.
fn used_within(digest: &Digest, campaign: &Campaign, now: Timestamp) -> usize {
    let start = now
        .unix_ms
        .saturating_sub(i64::from(campaign.cap_days).saturating_mul(DAY_MS));
    digest
        .caps_used
        .iter()
        .filter(|(id, at)| *id == campaign.id && at.unix_ms > start)
        .count()
}

/// The till's local date of `ts`, like `Timestamp::local` but total: chrono panics on a
/// local time past the end of its range, and digests come from outside.
fn local_date(ts: Timestamp) -> NaiveDate {
    let utc = ts.utc().naive_utc();
    // The same rule as `Timestamp::local`: an offset of a day or more is treated as UTC.
    let offset_min = if ts.offset_min.unsigned_abs() < 24 * 60 {
        i64::from(ts.offset_min)
    } else {
        0
    };
    utc.checked_add_signed(TimeDelta::minutes(offset_min))
        .unwrap_or(utc)
        .date()
}
