//! Tests of campaign definitions and the coupon decision.

use std::path::Path;

use chrono::{NaiveDate, NaiveDateTime, TimeZone, Utc};
use proptest::prelude::*;

use super::*;
use crate::time::Timestamp;

const ORIGIN: &str = "config/campaigns.toml";
const EXAMPLE: &str = include_str!("../../../config/campaigns.toml");

/// A local wall-clock time at UTC+1 (CET), like the tills.
fn at(local: &str) -> Timestamp {
    let naive = NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M").unwrap();
    let utc = Utc.from_utc_datetime(&(naive - chrono::TimeDelta::minutes(60)));
    Timestamp::from_utc(utc, 60)
}

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn days_before(now: Timestamp, days: i64) -> Timestamp {
    Timestamp::from_unix_ms(now.unix_ms - days * 86_400_000, now.offset_min)
}

fn campaign(id: &str, trigger: Trigger) -> Campaign {
    Campaign {
        id: id.into(),
        name: format!("campaign {id}"),
        trigger,
        offer: format!("offer of {id}"),
        valid_days: 14,
        control_percent: 0,
        max_per_customer: 1,
        cap_days: 30,
        stores: None,
        segments: None,
        priority: 0,
        offline: true,
    }
}

fn set_of(campaigns: Vec<Campaign>) -> CampaignSet {
    CampaignSet {
        version: 1,
        campaigns,
        settings: Settings::default(),
    }
}

fn line(cents: i64) -> BasketLine {
    BasketLine {
        amount_cents: cents,
        ..BasketLine::default()
    }
}

fn in_category(cents: i64, category: &str) -> BasketLine {
    BasketLine {
        amount_cents: cents,
        category: Some(category.into()),
        ..BasketLine::default()
    }
}

fn sensitive(mut l: BasketLine) -> BasketLine {
    l.sensitive = true;
    l
}

fn customer(key: &str) -> Digest {
    Digest {
        customer_key: key.into(),
        personalisation_consent: true,
        ..Digest::default()
    }
}

fn input(basket: Vec<BasketLine>, digest: Option<Digest>) -> DecisionInput {
    DecisionInput {
        store: "S001".into(),
        basket,
        digest,
        offline: false,
        receipt_key: "S001/T01/1".into(),
    }
}

fn big_basket() -> Campaign {
    campaign(
        "big-basket",
        Trigger::BasketTotal {
            min_total_cents: 5000,
        },
    )
}

fn issued(d: &Decision) -> Vec<&str> {
    d.issue.iter().map(|o| o.campaign_id.as_str()).collect()
}

fn reason(d: &Decision, id: &str) -> Option<Reason> {
    d.skipped.iter().find(|(c, _)| c == id).map(|(_, r)| *r)
}

/// A customer key that is (or is not) in the control group of `campaign_id`.
fn key_with_control(campaign_id: &str, percent: u8, control: bool) -> String {
    (0..10_000)
        .map(|i| format!("cust-{i}"))
        .find(|k| in_control_group(campaign_id, ControlSubject::Customer(k), percent) == control)
        .unwrap()
}

// ---- triggers -------------------------------------------------------------------------

#[test]
fn basket_total_is_met_at_the_threshold_and_not_below() {
    let set = set_of(vec![big_basket()]);
    let now = at("2026-03-10 12:00");
    let d = decide(&input(vec![line(3000), line(2000)], None), &set, now);
    assert_eq!(issued(&d), ["big-basket"]);

    let d = decide(&input(vec![line(3000), line(1999)], None), &set, now);
    assert!(d.issue.is_empty());
    assert_eq!(reason(&d, "big-basket"), Some(Reason::TriggerNotMet));

    // A discount line lowers the total that counts.
    let discount = BasketLine {
        amount_cents: -100,
        discount: true,
        ..BasketLine::default()
    };
    let d = decide(&input(vec![line(5000), discount], None), &set, now);
    assert_eq!(reason(&d, "big-basket"), Some(Reason::TriggerNotMet));
}

#[test]
fn basket_category_counts_only_spend_in_that_category() {
    let bakery = campaign(
        "bakery",
        Trigger::BasketCategory {
            category: "bakery".into(),
            min_total_cents: 500,
        },
    );
    let set = set_of(vec![bakery]);
    let now = at("2026-03-10 12:00");
    let d = decide(
        &input(
            vec![
                in_category(300, "bakery"),
                in_category(9000, "dairy"),
                line(900),
            ],
            None,
        ),
        &set,
        now,
    );
    assert_eq!(reason(&d, "bakery"), Some(Reason::TriggerNotMet));

    let d = decide(
        &input(
            vec![in_category(300, "Bakery"), in_category(200, "bakery")],
            None,
        ),
        &set,
        now,
    );
    assert_eq!(
        issued(&d),
        ["bakery"],
        "case-insensitive, summed over lines"
    );
}

fn birthday_set(within_days: u32) -> CampaignSet {
    set_of(vec![campaign(
        "birthday",
        Trigger::Birthday { within_days },
    )])
}

fn born(month: u8, day: u8) -> Digest {
    Digest {
        birthday: Some(MonthDay { month, day }),
        ..customer("c1")
    }
}

#[test]
fn birthday_is_met_within_the_window_across_the_new_year() {
    let set = birthday_set(3);
    let d = decide(
        &input(vec![], Some(born(12, 30))),
        &set,
        at("2027-01-02 09:00"),
    );
    assert_eq!(issued(&d), ["birthday"], "3 days after 30 December");
    let d = decide(
        &input(vec![], Some(born(12, 30))),
        &set,
        at("2027-01-03 09:00"),
    );
    assert_eq!(reason(&d, "birthday"), Some(Reason::TriggerNotMet));
    let d = decide(
        &input(vec![], Some(born(1, 2))),
        &set,
        at("2026-12-30 09:00"),
    );
    assert_eq!(issued(&d), ["birthday"], "3 days before 2 January");

    let on_the_day = birthday_set(0);
    let d = decide(
        &input(vec![], Some(born(3, 10))),
        &on_the_day,
        at("2026-03-10 23:59"),
    );
    assert_eq!(issued(&d), ["birthday"]);
    let d = decide(
        &input(vec![], Some(born(3, 10))),
        &on_the_day,
        at("2026-03-11 00:00"),
    );
    assert_eq!(reason(&d, "birthday"), Some(Reason::TriggerNotMet));
    // 29 February is celebrated on the 28th in other years.
    let d = decide(
        &input(vec![], Some(born(2, 29))),
        &on_the_day,
        at("2027-02-28 10:00"),
    );
    assert_eq!(issued(&d), ["birthday"]);
    // No birthday known, or an impossible one: not met, no panic.
    let d = decide(
        &input(vec![], Some(customer("c1"))),
        &set,
        at("2027-02-28 10:00"),
    );
    assert_eq!(reason(&d, "birthday"), Some(Reason::TriggerNotMet));
    let d = decide(
        &input(vec![], Some(born(13, 40))),
        &set,
        at("2027-02-28 10:00"),
    );
    assert_eq!(reason(&d, "birthday"), Some(Reason::TriggerNotMet));
}

#[test]
fn anniversary_is_a_yearly_return_of_member_since_never_the_joining_day() {
    let set = set_of(vec![campaign(
        "anniversary",
        Trigger::Anniversary { within_days: 2 },
    )]);
    let member = Digest {
        member_since: Some(date("2024-03-10")),
        ..customer("c1")
    };
    let decide_on = |local: &str| decide(&input(vec![], Some(member.clone())), &set, at(local));
    assert_eq!(
        reason(&decide_on("2024-03-10 12:00"), "anniversary"),
        Some(Reason::TriggerNotMet)
    );
    assert_eq!(
        reason(&decide_on("2024-03-12 12:00"), "anniversary"),
        Some(Reason::TriggerNotMet)
    );
    assert_eq!(issued(&decide_on("2025-03-12 12:00")), ["anniversary"]);
    assert_eq!(issued(&decide_on("2028-03-08 12:00")), ["anniversary"]);
    assert_eq!(
        reason(&decide_on("2025-03-13 12:00"), "anniversary"),
        Some(Reason::TriggerNotMet)
    );
}

#[test]
fn points_threshold_needs_at_least_the_points() {
    let set = set_of(vec![campaign(
        "points",
        Trigger::PointsThreshold { points: 1000 },
    )]);
    let now = at("2026-03-10 12:00");
    let with = |points| Digest {
        points,
        ..customer("c1")
    };
    assert_eq!(
        issued(&decide(&input(vec![], Some(with(1000))), &set, now)),
        ["points"]
    );
    assert_eq!(
        reason(
            &decide(&input(vec![], Some(with(999))), &set, now),
            "points"
        ),
        Some(Reason::TriggerNotMet)
    );
}

#[test]
fn lapsed_counts_local_days_since_the_previous_visit() {
    let set = set_of(vec![campaign(
        "win-back",
        Trigger::Lapsed { lapsed_days: 60 },
    )]);
    let now = at("2026-03-10 12:00");
    let visited = |last: Option<Timestamp>| Digest {
        last_visit: last,
        ..customer("c1")
    };
    let d = decide(
        &input(vec![], Some(visited(Some(days_before(now, 60))))),
        &set,
        now,
    );
    assert_eq!(issued(&d), ["win-back"]);
    let d = decide(
        &input(vec![], Some(visited(Some(days_before(now, 59))))),
        &set,
        now,
    );
    assert_eq!(reason(&d, "win-back"), Some(Reason::TriggerNotMet));
    let d = decide(&input(vec![], Some(visited(None))), &set, now);
    assert_eq!(
        reason(&d, "win-back"),
        Some(Reason::TriggerNotMet),
        "never visited is a first visit, not a lapse"
    );
}

#[test]
fn first_visit_needs_a_known_customer_without_visits() {
    let set = set_of(vec![campaign("welcome", Trigger::FirstVisit)]);
    let now = at("2026-03-10 12:00");
    let d = decide(&input(vec![], Some(customer("c1"))), &set, now);
    assert_eq!(issued(&d), ["welcome"]);
    let returning = Digest {
        last_visit: Some(days_before(now, 3)),
        ..customer("c1")
    };
    let d = decide(&input(vec![], Some(returning)), &set, now);
    assert_eq!(reason(&d, "welcome"), Some(Reason::TriggerNotMet));
    let d = decide(&input(vec![], None), &set, now);
    assert_eq!(reason(&d, "welcome"), Some(Reason::NoProfile));
}

// ---- consent, anonymous, sensitive ----------------------------------------------------

/// One campaign per trigger, each met by [`everything_met`] at [`everything_now`].
fn one_per_trigger() -> CampaignSet {
    let mut set = set_of(vec![
        big_basket(),
        campaign(
            "bakery",
            Trigger::BasketCategory {
                category: "bakery".into(),
                min_total_cents: 1,
            },
        ),
        campaign("birthday", Trigger::Birthday { within_days: 0 }),
        campaign("anniversary", Trigger::Anniversary { within_days: 0 }),
        campaign("points", Trigger::PointsThreshold { points: 10 }),
        campaign("win-back", Trigger::Lapsed { lapsed_days: 30 }),
        campaign("welcome", Trigger::FirstVisit),
    ]);
    set.settings.max_per_receipt = 10;
    set.settings.max_per_customer_per_week = 10;
    set
}

fn everything_now() -> Timestamp {
    at("2026-03-10 12:00")
}

/// Meets every trigger but `first_visit` (which excludes `lapsed`).
fn everything_met(consent: bool) -> DecisionInput {
    let digest = Digest {
        birthday: Some(MonthDay { month: 3, day: 10 }),
        member_since: Some(date("2020-03-10")),
        points: 10,
        last_visit: Some(days_before(everything_now(), 40)),
        personalisation_consent: consent,
        ..customer("c1")
    };
    input(vec![line(6000), in_category(100, "bakery")], Some(digest))
}

#[test]
fn profile_triggers_need_consent_basket_triggers_do_not() {
    let set = one_per_trigger();
    let with_consent = decide(&everything_met(true), &set, everything_now());
    let mut ids = issued(&with_consent);
    ids.sort_unstable();
    assert_eq!(
        ids,
        [
            "anniversary",
            "bakery",
            "big-basket",
            "birthday",
            "points",
            "win-back"
        ]
    );

    let without = decide(&everything_met(false), &set, everything_now());
    let mut ids = issued(&without);
    ids.sort_unstable();
    assert_eq!(ids, ["bakery", "big-basket"]);
    for c in &set.campaigns {
        if c.trigger.kind().uses_profile() {
            assert_eq!(reason(&without, &c.id), Some(Reason::NoConsent), "{}", c.id);
        }
    }
}

#[test]
fn anonymous_baskets_only_meet_basket_triggers() {
    let set = one_per_trigger();
    let mut anonymous = everything_met(true);
    anonymous.digest = None;
    let d = decide(&anonymous, &set, everything_now());
    let mut ids = issued(&d);
    ids.sort_unstable();
    assert_eq!(ids, ["bakery", "big-basket"]);
    for kind in TriggerKind::ALL.into_iter().filter(|k| k.uses_profile()) {
        let id = &set
            .campaigns
            .iter()
            .find(|c| c.trigger.kind() == kind)
            .unwrap()
            .id;
        assert_eq!(reason(&d, id), Some(Reason::NoProfile), "{kind}");
    }
}

#[test]
fn a_sensitive_line_does_not_count_towards_basket_total() {
    let set = set_of(vec![big_basket()]);
    let now = at("2026-03-10 12:00");
    let basket = vec![line(4000), sensitive(line(2000))];
    let d = decide(&input(basket, Some(customer("c1"))), &set, now);
    assert!(d.issue.is_empty() && d.would_have.is_empty());
    assert_eq!(reason(&d, "big-basket"), Some(Reason::SensitiveOnly));
}

#[test]
fn a_sensitive_category_is_never_targeted() {
    let set = set_of(vec![campaign(
        "pharmacy",
        Trigger::BasketCategory {
            category: "pharmacy".into(),
            min_total_cents: 1,
        },
    )]);
    let now = at("2026-03-10 12:00");
    let basket = vec![
        in_category(900, "pharmacy"),
        sensitive(in_category(500, "pharmacy")),
    ];
    let d = decide(&input(basket, None), &set, now);
    assert_eq!(reason(&d, "pharmacy"), Some(Reason::SensitiveCategory));
}

#[test]
fn sensitive_conflicts_find_campaigns_targeting_or_naming_a_sensitive_category() {
    let mut naming = big_basket();
    naming.offer = "10% off Alcohol next time".into();
    let targeting = campaign(
        "wine",
        Trigger::BasketCategory {
            category: "alcohol".into(),
            min_total_cents: 1,
        },
    );
    let set = set_of(vec![
        naming,
        targeting,
        campaign("welcome", Trigger::FirstVisit),
    ]);
    let conflicts = set.sensitive_conflicts(&["alcohol".to_string()]);
    let found: Vec<(&str, &str)> = conflicts
        .iter()
        .map(|c| (c.campaign_id.as_str(), c.key))
        .collect();
    assert_eq!(found, [("big-basket", "offer"), ("wine", "category")]);
    assert!(set.sensitive_conflicts(&["tobacco".to_string()]).is_empty());
}

proptest! {
    /// Adding sensitive lines never changes what basket_total campaigns select.
    #[test]
    fn sensitive_lines_never_change_a_basket_total_decision(
        plain in prop::collection::vec(-500i64..5_000, 0..8),
        extra in prop::collection::vec(0i64..100_000, 1..5),
        thresholds in prop::collection::vec(1i64..20_000, 1..5),
    ) {
        let mut set = set_of(
            thresholds
                .iter()
                .enumerate()
                .map(|(i, t)| campaign(&format!("t{i}"), Trigger::BasketTotal { min_total_cents: *t }))
                .collect(),
        );
        set.settings.max_per_receipt = 10;
        let now = at("2026-03-10 12:00");
        let base: Vec<BasketLine> = plain.iter().map(|c| line(*c)).collect();
        let mut with_sensitive = base.clone();
        with_sensitive.extend(extra.iter().map(|c| sensitive(line(*c))));
        let a = decide(&input(base, None), &set, now);
        let b = decide(&input(with_sensitive, None), &set, now);
        prop_assert_eq!(a.issue, b.issue);
        prop_assert_eq!(a.would_have, b.would_have);
    }
}

// ---- store, offline, segments ---------------------------------------------------------

#[test]
fn stores_offline_and_segments_restrict() {
    let now = at("2026-03-10 12:00");
    let basket = vec![line(6000)];
    let mut elsewhere = big_basket();
    elsewhere.stores = Some(vec!["S002".into()]);
    let d = decide(
        &input(basket.clone(), None),
        &set_of(vec![elsewhere.clone()]),
        now,
    );
    assert_eq!(reason(&d, "big-basket"), Some(Reason::NotThisStore));
    elsewhere.stores = Some(vec!["S002".into(), "S001".into()]);
    let d = decide(&input(basket.clone(), None), &set_of(vec![elsewhere]), now);
    assert_eq!(issued(&d), ["big-basket"]);

    let mut online_only = big_basket();
    online_only.offline = false;
    let mut offline = input(basket.clone(), None);
    offline.offline = true;
    let d = decide(&offline, &set_of(vec![online_only.clone()]), now);
    assert_eq!(reason(&d, "big-basket"), Some(Reason::Offline));
    let d = decide(&offline, &set_of(vec![big_basket()]), now);
    assert_eq!(issued(&d), ["big-basket"], "offline issue is the default");

    let mut vip = big_basket();
    vip.segments = Some(vec!["vip".into()]);
    let set = set_of(vec![vip]);
    let mut member = customer("c1");
    let d = decide(&input(basket.clone(), Some(member.clone())), &set, now);
    assert_eq!(reason(&d, "big-basket"), Some(Reason::NotInSegment));
    member.segments = vec!["loyal".into(), "vip".into()];
    let d = decide(&input(basket.clone(), Some(member.clone())), &set, now);
    assert_eq!(issued(&d), ["big-basket"]);
    member.personalisation_consent = false;
    let d = decide(&input(basket.clone(), Some(member)), &set, now);
    assert_eq!(
        reason(&d, "big-basket"),
        Some(Reason::NoConsent),
        "segments use the profile"
    );
    let d = decide(&input(basket, None), &set, now);
    assert_eq!(reason(&d, "big-basket"), Some(Reason::NoProfile));
}

// ---- caps and receipt limit -----------------------------------------------------------

#[test]
fn the_campaign_cap_holds_within_its_window_across_channels() {
    let now = at("2026-03-10 12:00");
    let set = set_of(vec![big_basket()]);
    let with_caps = |caps: Vec<(String, Timestamp)>| {
        let digest = Digest {
            caps_used: caps,
            ..customer("c1")
        };
        decide(&input(vec![line(6000)], Some(digest)), &set, now)
    };
    let d = with_caps(vec![("big-basket".into(), days_before(now, 29))]);
    assert_eq!(reason(&d, "big-basket"), Some(Reason::Capped));
    let d = with_caps(vec![("big-basket".into(), days_before(now, 31))]);
    assert_eq!(issued(&d), ["big-basket"], "outside cap_days");
    let d = with_caps(vec![("other".into(), days_before(now, 1))]);
    assert_eq!(issued(&d), ["big-basket"], "another campaign's coupon");

    let mut twice = big_basket();
    twice.max_per_customer = 2;
    let set = set_of(vec![twice]);
    let digest = Digest {
        caps_used: vec![("big-basket".into(), days_before(now, 1))],
        ..customer("c1")
    };
    let d = decide(&input(vec![line(6000)], Some(digest.clone())), &set, now);
    assert_eq!(issued(&d), ["big-basket"]);
    let mut both = digest;
    both.caps_used
        .push(("big-basket".into(), days_before(now, 2)));
    let d = decide(&input(vec![line(6000)], Some(both)), &set, now);
    assert_eq!(reason(&d, "big-basket"), Some(Reason::Capped));
}

#[test]
fn the_global_weekly_cap_counts_every_campaign() {
    let now = at("2026-03-10 12:00");
    let mut set = set_of(vec![big_basket()]);
    set.settings.max_per_customer_per_week = 2;
    let digest = |caps: Vec<(&str, i64)>| Digest {
        caps_used: caps
            .into_iter()
            .map(|(id, days)| (id.to_string(), days_before(now, days)))
            .collect(),
        ..customer("c1")
    };
    let d = decide(
        &input(vec![line(6000)], Some(digest(vec![("a", 1), ("b", 6)]))),
        &set,
        now,
    );
    assert_eq!(reason(&d, "big-basket"), Some(Reason::GlobalCap));
    let d = decide(
        &input(vec![line(6000)], Some(digest(vec![("a", 1), ("b", 8)]))),
        &set,
        now,
    );
    assert_eq!(issued(&d), ["big-basket"]);
    // Anonymous baskets have no person to cap.
    let d = decide(&input(vec![line(6000)], None), &set, now);
    assert_eq!(issued(&d), ["big-basket"]);

    // Coupons selected on this receipt count too.
    let mut set = one_per_trigger();
    set.settings.max_per_customer_per_week = 1;
    let d = decide(&everything_met(true), &set, everything_now());
    assert_eq!(d.issue.len(), 1);
    assert_eq!(
        d.skipped
            .iter()
            .filter(|(_, r)| *r == Reason::GlobalCap)
            .count(),
        5
    );
}

#[test]
fn one_coupon_per_receipt_by_default_in_priority_then_id_order() {
    let now = at("2026-03-10 12:00");
    let mut low = campaign("a-low", Trigger::BasketTotal { min_total_cents: 1 });
    low.priority = 0;
    let mut high_b = campaign("b-high", Trigger::BasketTotal { min_total_cents: 1 });
    high_b.priority = 5;
    let mut high_c = campaign("c-high", Trigger::BasketTotal { min_total_cents: 1 });
    high_c.priority = 5;
    let mut set = set_of(vec![low, high_c, high_b]);
    let d = decide(&input(vec![line(100)], None), &set, now);
    assert_eq!(issued(&d), ["b-high"]);
    assert_eq!(reason(&d, "c-high"), Some(Reason::ReceiptLimit));
    assert_eq!(reason(&d, "a-low"), Some(Reason::ReceiptLimit));

    set.settings.max_per_receipt = 2;
    let d = decide(&input(vec![line(100)], None), &set, now);
    assert_eq!(issued(&d), ["b-high", "c-high"]);
}

// ---- control group --------------------------------------------------------------------

#[test]
fn fnv1a64_matches_the_reference_vectors() {
    assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
}

#[test]
fn the_control_split_is_deterministic_and_close_to_control_percent() {
    let keys: Vec<String> = (0..10_000).map(|i| format!("card-{i:05}")).collect();
    let control = |campaign: &str, percent: u8| -> Vec<bool> {
        keys.iter()
            .map(|k| in_control_group(campaign, ControlSubject::Customer(k), percent))
            .collect()
    };
    for (percent, low, high) in [(10u8, 850, 1150), (25, 2300, 2700), (50, 4800, 5200)] {
        let split = control("big-basket", percent);
        assert_eq!(split, control("big-basket", percent), "deterministic");
        let n = split.iter().filter(|c| **c).count();
        assert!(
            (low..=high).contains(&n),
            "{percent}%: {n} of 10000 in control"
        );
    }
    assert!(control("big-basket", 0).iter().all(|c| !c));
    assert!(control("big-basket", 100).iter().all(|c| *c));
    // Campaigns split independently: about 1% are in both 10% control groups.
    let a = control("big-basket", 10);
    let b = control("birthday", 10);
    let both = a.iter().zip(&b).filter(|(x, y)| **x && **y).count();
    assert!((40..=160).contains(&both), "{both} in both control groups");
}

#[test]
fn a_control_customer_gets_a_would_have_that_uses_the_receipt_slot() {
    let now = at("2026-03-10 12:00");
    let mut treated_first = big_basket();
    treated_first.control_percent = 50;
    treated_first.priority = 1;
    let runner_up = campaign("runner-up", Trigger::BasketTotal { min_total_cents: 1 });
    let set = set_of(vec![treated_first, runner_up]);

    let key = key_with_control("big-basket", 50, true);
    let d = decide(&input(vec![line(6000)], Some(customer(&key))), &set, now);
    assert!(d.issue.is_empty(), "nothing printed for the control group");
    assert_eq!(d.would_have.len(), 1);
    assert_eq!(d.would_have[0].campaign_id, "big-basket");
    assert_eq!(reason(&d, "runner-up"), Some(Reason::ReceiptLimit));

    let key = key_with_control("big-basket", 50, false);
    let d = decide(&input(vec![line(6000)], Some(customer(&key))), &set, now);
    assert_eq!(issued(&d), ["big-basket"]);
    assert!(d.would_have.is_empty());
}

#[test]
fn anonymous_baskets_are_split_per_receipt_key() {
    let now = at("2026-03-10 12:00");
    let mut c = big_basket();
    c.control_percent = 50;
    let set = set_of(vec![c]);
    let mut controls = 0;
    for i in 0..200 {
        let mut anonymous = input(vec![line(6000)], None);
        anonymous.receipt_key = format!("S001/T01/{i}");
        let d = decide(&anonymous, &set, now);
        assert_eq!(d, decide(&anonymous, &set, now));
        assert_eq!(d.issue.len() + d.would_have.len(), 1);
        let expected = in_control_group(
            "big-basket",
            ControlSubject::Receipt(&anonymous.receipt_key),
            50,
        );
        assert_eq!(d.would_have.len() == 1, expected);
        controls += d.would_have.len();
    }
    assert!(
        (60..=140).contains(&controls),
        "{controls} of 200 anonymous receipts in control"
    );
}

// ---- offer ----------------------------------------------------------------------------

#[test]
fn the_offer_expires_valid_days_after_the_local_date() {
    // 23:30 UTC is already the 11th in the till's CET.
    let now = Timestamp::from_utc(Utc.with_ymd_and_hms(2026, 3, 10, 23, 30, 0).unwrap(), 60);
    let d = decide(
        &input(vec![line(6000)], None),
        &set_of(vec![big_basket()]),
        now,
    );
    assert_eq!(d.issue.len(), 1);
    assert_eq!(d.issue[0].expires, date("2026-03-25"));
    assert_eq!(d.issue[0].text, "offer of big-basket");
}

#[test]
fn decision_types_round_trip_through_the_codec() {
    let set = CampaignSet::from_toml_str(EXAMPLE, Path::new(ORIGIN)).unwrap();
    let bytes = crate::codec::to_bytes(&set).unwrap();
    assert_eq!(
        crate::codec::from_bytes::<CampaignSet>(&bytes).unwrap(),
        set
    );
    let input = everything_met(true);
    let bytes = crate::codec::to_bytes(&input).unwrap();
    assert_eq!(
        crate::codec::from_bytes::<DecisionInput>(&bytes).unwrap(),
        input
    );
    let decision = decide(&input, &one_per_trigger(), everything_now());
    let bytes = crate::codec::to_bytes(&decision).unwrap();
    assert_eq!(
        crate::codec::from_bytes::<Decision>(&bytes).unwrap(),
        decision
    );
}

// ---- definitions ----------------------------------------------------------------------

#[test]
fn the_example_config_parses_with_one_campaign_per_trigger() {
    let set = CampaignSet::from_toml_str(EXAMPLE, Path::new(ORIGIN)).unwrap();
    assert_eq!(set.version, 1);
    assert_eq!(set.settings, Settings::default());
    let mut kinds: Vec<TriggerKind> = set.campaigns.iter().map(|c| c.trigger.kind()).collect();
    kinds.sort();
    assert_eq!(kinds, TriggerKind::ALL);
    let big = set.get("big-basket").unwrap();
    assert_eq!(
        big.trigger,
        Trigger::BasketTotal {
            min_total_cents: 5000
        }
    );
    assert_eq!(big.control_percent, 10);
    assert_eq!(big.stores, None);
    assert_eq!(
        set.get("fresh-bakery").unwrap().stores,
        Some(vec!["S001".to_string(), "S002".to_string()])
    );
    assert!(!set.get("welcome").unwrap().offline);
}

#[test]
fn defaults_fill_optional_keys() {
    let text = "[[campaign]]\nid = \"x\"\nname = \"X\"\ntrigger = \"birthday\"\noffer = \"Hi\"\nvalid_days = 3\n";
    let set = CampaignSet::from_toml_str(text, Path::new(ORIGIN)).unwrap();
    assert_eq!(set.version, 0);
    let c = &set.campaigns[0];
    assert_eq!(c.trigger, Trigger::Birthday { within_days: 0 });
    assert_eq!(
        (
            c.control_percent,
            c.max_per_customer,
            c.cap_days,
            c.priority,
            c.offline
        ),
        (0, 1, 30, 0, true)
    );
    assert!(CampaignSet::from_toml_str("", Path::new(ORIGIN))
        .unwrap()
        .campaigns
        .is_empty());
}

const GOOD: &str = "id = \"big-basket\"\nname = \"Big\"\ntrigger = \"basket_total\"\nmin_total_cents = 5000\noffer = \"5 off\"\nvalid_days = 14\n";

/// Parses `[[campaign]]` tables: a valid first one, then `second` as written.
fn parse_with_second(second: &str) -> Result<CampaignSet, CampaignError> {
    let text = format!("[[campaign]]\n{GOOD}\n[[campaign]]\n{second}\n");
    CampaignSet::from_toml_str(&text, Path::new(ORIGIN))
}

fn expect_invalid(
    result: Result<CampaignSet, CampaignError>,
    section: Section,
    key: &str,
    reason_part: &str,
) {
    let err = result.expect_err("must be refused");
    let shown = err.to_string();
    match err {
        CampaignError::Invalid {
            origin,
            section: s,
            key: k,
            reason,
        } => {
            assert_eq!(origin, Path::new(ORIGIN));
            assert_eq!(s, section, "{shown}");
            assert_eq!(k, key, "{shown}");
            assert!(reason.contains(reason_part), "{shown}");
            assert!(shown.starts_with(ORIGIN), "{shown}");
            assert!(shown.contains(&format!("key `{key}`")), "{shown}");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn second(id: &str) -> Section {
    Section::Campaign {
        number: 2,
        id: Some(id.into()),
    }
}

#[test]
fn errors_name_the_file_the_campaign_the_key_and_the_reason() {
    let replace = |from: &str, to: &str| GOOD.replace(from, to).replace("big-basket", "two");
    expect_invalid(
        parse_with_second(&replace("basket_total", "basket_size")),
        second("two"),
        "trigger",
        "unknown trigger \"basket_size\"",
    );
    expect_invalid(
        parse_with_second(&replace("min_total_cents = 5000\n", "")),
        second("two"),
        "min_total_cents",
        "missing",
    );
    expect_invalid(
        parse_with_second(&format!("{}control_percent = 101\n", replace("", ""))),
        second("two"),
        "control_percent",
        "between 0 and 100",
    );
    expect_invalid(
        parse_with_second(GOOD),
        second("big-basket"),
        "id",
        "duplicate id: [[campaign]] #1",
    );
    expect_invalid(
        parse_with_second(&format!("{}contol_percent = 5\n", replace("", ""))),
        second("two"),
        "contol_percent",
        "unknown key",
    );
    expect_invalid(
        parse_with_second(&format!("{}points = 5\n", replace("", ""))),
        second("two"),
        "points",
        "not a parameter of trigger basket_total (it belongs to: points_threshold)",
    );
    expect_invalid(
        parse_with_second(&GOOD.replace("big-basket", "Big Basket")),
        second("Big Basket"),
        "id",
        "a-z, 0-9",
    );
    expect_invalid(
        parse_with_second(&replace("valid_days = 14", "valid_days = \"14\"")),
        second("two"),
        "valid_days",
        "must be a whole number, not a string",
    );
    expect_invalid(
        parse_with_second(&replace("offer = \"5 off\"", "offer = \"5 off\\u001b@\"")),
        second("two"),
        "offer",
        "control character",
    );
    expect_invalid(
        parse_with_second(&GOOD.replace("id = \"big-basket\"\n", "")),
        Section::Campaign {
            number: 2,
            id: None,
        },
        "id",
        "missing",
    );
    expect_invalid(
        parse_with_second(&format!("{}stores = []\n", replace("", ""))),
        second("two"),
        "stores",
        "empty list",
    );
    expect_invalid(
        CampaignSet::from_toml_str("[settings]\nmax_per_reciept = 2\n", Path::new(ORIGIN)),
        Section::Settings,
        "max_per_reciept",
        "unknown key",
    );
    expect_invalid(
        CampaignSet::from_toml_str(&format!("[campaign]\n{GOOD}"), Path::new(ORIGIN)),
        Section::TopLevel,
        "campaign",
        "[[campaign]]",
    );
    expect_invalid(
        CampaignSet::from_toml_str("version = -1\n", Path::new(ORIGIN)),
        Section::TopLevel,
        "version",
        "at least 0",
    );
}

#[test]
fn a_syntax_error_names_the_file() {
    let err = CampaignSet::from_toml_str("[[campaign]\nid = ", Path::new(ORIGIN)).unwrap_err();
    assert!(matches!(err, CampaignError::Syntax { .. }), "{err:?}");
    assert!(err.to_string().starts_with(ORIGIN), "{err}");
    assert!(err.to_string().contains("line 1"), "{err}");
}

// ---- robustness -----------------------------------------------------------------------

fn any_timestamp() -> impl Strategy<Value = Timestamp> {
    prop_oneof![
        (any::<i64>(), any::<i16>()).prop_map(|(ms, off)| Timestamp::from_unix_ms(ms, off)),
        (1_700_000_000_000i64..1_900_000_000_000, -720i16..=840)
            .prop_map(|(ms, off)| Timestamp::from_unix_ms(ms, off)),
    ]
}

fn any_id() -> impl Strategy<Value = String> {
    "[a-d]{1,2}"
}

fn any_trigger() -> impl Strategy<Value = Trigger> {
    prop_oneof![
        any::<i64>().prop_map(|min_total_cents| Trigger::BasketTotal { min_total_cents }),
        ("[a-c]{0,2}", any::<i64>()).prop_map(|(category, min_total_cents)| {
            Trigger::BasketCategory {
                category,
                min_total_cents,
            }
        }),
        any::<u32>().prop_map(|within_days| Trigger::Birthday { within_days }),
        any::<u32>().prop_map(|within_days| Trigger::Anniversary { within_days }),
        any::<i64>().prop_map(|points| Trigger::PointsThreshold { points }),
        any::<u32>().prop_map(|lapsed_days| Trigger::Lapsed { lapsed_days }),
        Just(Trigger::FirstVisit),
    ]
}

/// Campaigns as the downlink could deliver them: not validated, any values.
fn any_campaign() -> impl Strategy<Value = Campaign> {
    (
        (any_id(), any_trigger(), any::<u32>(), any::<u8>()),
        (
            any::<u32>(),
            any::<u32>(),
            proptest::option::of(prop::collection::vec("S00[1-3]", 0..3)),
        ),
        (
            proptest::option::of(prop::collection::vec("[a-c]", 0..3)),
            any::<i32>(),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (id, trigger, valid_days, control_percent),
                (max_per_customer, cap_days, stores),
                (segments, priority, offline),
            )| Campaign {
                name: id.clone(),
                offer: format!("offer {id}"),
                id,
                trigger,
                valid_days,
                control_percent,
                max_per_customer,
                cap_days,
                stores,
                segments,
                priority,
                offline,
            },
        )
}

fn any_set() -> impl Strategy<Value = CampaignSet> {
    (
        prop::collection::vec(any_campaign(), 0..12),
        0u32..5,
        0u32..5,
    )
        .prop_map(
            |(campaigns, max_per_receipt, max_per_customer_per_week)| CampaignSet {
                version: 0,
                campaigns,
                settings: Settings {
                    max_per_receipt,
                    max_per_customer_per_week,
                },
            },
        )
}

fn any_line() -> impl Strategy<Value = BasketLine> {
    (
        any::<i64>(),
        any::<bool>(),
        proptest::option::of("[a-c]{0,2}"),
        any::<bool>(),
    )
        .prop_map(|(amount_cents, discount, category, sensitive)| BasketLine {
            amount_cents,
            discount,
            category,
            sensitive,
        })
}

fn any_digest() -> impl Strategy<Value = Digest> {
    (
        (
            "[a-z0-9]{0,8}",
            proptest::option::of((any::<u8>(), any::<u8>())),
        ),
        (
            proptest::option::of(
                any::<i32>().prop_map(|d| {
                    NaiveDate::from_num_days_from_ce_opt(d).unwrap_or(NaiveDate::MIN)
                }),
            ),
            any::<i64>(),
            proptest::option::of(any_timestamp()),
        ),
        (
            any::<bool>(),
            prop::collection::vec("[a-c]", 0..3),
            prop::collection::vec((any_id(), any_timestamp()), 0..6),
        ),
    )
        .prop_map(
            |(
                (customer_key, birthday),
                (member_since, points, last_visit),
                (consent, segments, caps_used),
            )| {
                Digest {
                    customer_key,
                    birthday: birthday.map(|(month, day)| MonthDay { month, day }),
                    member_since,
                    points,
                    last_visit,
                    personalisation_consent: consent,
                    segments,
                    caps_used,
                }
            },
        )
}

fn any_input() -> impl Strategy<Value = DecisionInput> {
    (
        "S00[1-3]",
        prop::collection::vec(any_line(), 0..8),
        proptest::option::of(any_digest()),
        any::<bool>(),
        "[0-9]{0,4}",
    )
        .prop_map(
            |(store, basket, digest, offline, receipt_key)| DecisionInput {
                store,
                basket,
                digest,
                offline,
                receipt_key,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Arbitrary (even unvalidated) input never panics, gives the same answer twice,
    /// accounts for every campaign once and respects the receipt limit.
    #[test]
    fn decide_is_total_and_deterministic(input in any_input(), set in any_set(), now in any_timestamp()) {
        let first = decide(&input, &set, now);
        let second = decide(&input, &set, now);
        prop_assert_eq!(&first, &second);
        let accounted = first.issue.len() + first.would_have.len() + first.skipped.len();
        prop_assert_eq!(accounted, set.campaigns.len());
        prop_assert!(first.issue.len() + first.would_have.len() <= set.settings.max_per_receipt as usize);
        if input.digest.is_none() {
            for o in first.issue.iter().chain(&first.would_have) {
                // Ids from an unvalidated downlink may repeat: one of them must be a basket trigger.
                prop_assert!(set
                    .campaigns
                    .iter()
                    .any(|c| c.id == o.campaign_id && !c.trigger.kind().uses_profile()));
            }
        }
    }

    /// Arbitrary text never panics the parser: it parses or names the file.
    #[test]
    fn from_toml_str_never_panics(text in "(\\[\\[campaign\\]\\]\n|id = \"[a-z-]{1,4}\"\n|trigger = \"[a-z_]{1,16}\"\n|[a-z_]{1,16} = -?[0-9]{1,3}\n|offer = \".{0,4}\"\n){0,12}") {
        match CampaignSet::from_toml_str(&text, Path::new(ORIGIN)) {
            Ok(_) => {}
            Err(e) => prop_assert!(e.to_string().starts_with(ORIGIN)),
        }
    }

    #[test]
    fn control_buckets_are_below_100(id in ".{0,8}", key in ".{0,8}") {
        prop_assert!(control_bucket(&id, ControlSubject::Customer(&key)) < 100);
        prop_assert!(!in_control_group(&id, ControlSubject::Receipt(&key), 0));
        prop_assert!(in_control_group(&id, ControlSubject::Receipt(&key), 100));
    }
}

#[test]
fn decide_survives_the_edges_of_time() {
    let set = one_per_trigger();
    let max_ms = NaiveDate::MAX
        .and_hms_opt(23, 59, 59)
        .unwrap()
        .and_utc()
        .timestamp_millis();
    let min_ms = NaiveDate::MIN
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_millis();
    for ms in [max_ms, min_ms, i64::MAX, i64::MIN, 0] {
        for offset in [i16::MIN, -1439, 0, 1439, i16::MAX] {
            let now = Timestamp::from_unix_ms(ms, offset);
            let mut input = everything_met(true);
            if let Some(d) = input.digest.as_mut() {
                d.last_visit = Some(now);
                d.member_since = Some(NaiveDate::MAX);
            }
            let d = decide(&input, &set, now);
            assert_eq!(
                d.issue.len() + d.would_have.len() + d.skipped.len(),
                set.campaigns.len()
            );
        }
    }
}
