//! Unit tests of the uplink's pure parts.

use super::pending::{self, offline_answer, PendingRequests};
use super::*;
use till360_shared::wire::CouponVerdict;

#[test]
fn backoff_grows_to_the_cap_with_jitter() {
    let mut j = Jitter(12345);
    let first = j.backoff(0);
    assert!(first >= Duration::from_millis(75) && first <= Duration::from_millis(125));
    for attempt in 10..40 {
        let d = j.backoff(attempt);
        assert!(
            d >= Duration::from_millis(7500) && d <= Duration::from_millis(12500),
            "{d:?}"
        );
    }
}

const TIMEOUT: Duration = Duration::from_millis(150);

fn card(n: &str) -> CardNumber {
    CardNumber::parse(n).unwrap()
}

fn verdict_news(code: &str, verdict: Option<CouponVerdict>) -> HubNews {
    HubNews::CouponVerdict {
        code: code.to_string(),
        verdict,
    }
}

#[test]
fn a_coupon_verdict_in_time_is_passed_on_once() {
    let t0 = Instant::now();
    let mut p = PendingRequests::new(TIMEOUT, 64);
    assert_eq!(p.coupon_sent("A1".into(), t0), None);
    assert_eq!(p.next_deadline(), Some(t0 + TIMEOUT));
    let at = t0 + Duration::from_millis(20);
    assert_eq!(
        p.coupon_reply("A1", CouponVerdict::Valid, at),
        Some(verdict_news("A1", Some(CouponVerdict::Valid)))
    );
    // A second answer to the same code finds nobody waiting.
    assert_eq!(p.coupon_reply("A1", CouponVerdict::Valid, at), None);
    assert_eq!(p.next_deadline(), None);
    assert!(p.expire(t0 + TIMEOUT * 10).is_empty());
}

#[test]
fn an_unanswered_coupon_check_gets_none_at_its_deadline_and_a_late_verdict_is_dropped() {
    let t0 = Instant::now();
    let mut p = PendingRequests::new(TIMEOUT, 64);
    p.coupon_sent("A1".into(), t0);
    p.digest_sent(card("6299001234567"), t0);
    assert!(
        p.expire(t0 + TIMEOUT).is_empty(),
        "not yet past the deadline"
    );
    let late = t0 + TIMEOUT + Duration::from_millis(1);
    // An unanswered digest request yields no news: the till core keeps its cache.
    assert_eq!(p.expire(late), vec![verdict_news("A1", None)]);
    assert_eq!(p.coupon_reply("A1", CouponVerdict::Forged, late), None);
    assert_eq!(
        p.digest_reply(&card("6299001234567"), late),
        pending::Reply::Late
    );
}

#[test]
fn a_reply_after_the_deadline_but_before_expiry_ran_is_still_late() {
    let t0 = Instant::now();
    let mut p = PendingRequests::new(TIMEOUT, 64);
    p.digest_sent(card("6299001234567"), t0);
    let late = t0 + TIMEOUT + Duration::from_millis(5);
    assert_eq!(
        p.digest_reply(&card("6299001234567"), late),
        pending::Reply::Late
    );
    assert_eq!(
        p.digest_reply(&card("6299001234567"), t0),
        pending::Reply::InTime,
        "still waiting until expired"
    );
}

#[test]
fn answers_are_matched_by_card_and_code_oldest_first() {
    let t0 = Instant::now();
    let mut p = PendingRequests::new(TIMEOUT, 64);
    p.digest_sent(card("6299001234567"), t0);
    p.coupon_sent("A1".into(), t0);
    p.coupon_sent("B2".into(), t0 + Duration::from_millis(10));
    p.coupon_sent("A1".into(), t0 + Duration::from_millis(20));
    let at = t0 + Duration::from_millis(30);
    assert_eq!(
        p.digest_reply(&card("6299009999994"), at),
        pending::Reply::Late,
        "never asked"
    );
    assert_eq!(
        p.coupon_reply("B2", CouponVerdict::Expired, at),
        Some(verdict_news("B2", Some(CouponVerdict::Expired)))
    );
    assert_eq!(
        p.digest_reply(&card("6299001234567"), at),
        pending::Reply::InTime
    );
    assert!(p.coupon_reply("A1", CouponVerdict::Valid, at).is_some());
    // The second A1 was asked later: its deadline is the latest left.
    assert_eq!(
        p.next_deadline(),
        Some(t0 + Duration::from_millis(20) + TIMEOUT)
    );
    assert!(p
        .coupon_reply("A1", CouponVerdict::AlreadyRedeemed, at)
        .is_some());
    assert_eq!(p.next_deadline(), None);
}

#[test]
fn a_full_set_gives_up_its_oldest_request() {
    let t0 = Instant::now();
    let mut p = PendingRequests::new(TIMEOUT, 2);
    assert_eq!(p.coupon_sent("A1".into(), t0), None);
    assert_eq!(p.digest_sent(card("6299001234567"), t0), None);
    assert_eq!(
        p.coupon_sent("C3".into(), t0),
        Some(verdict_news("A1", None))
    );
    // The digest request goes next, silently.
    assert_eq!(p.coupon_sent("D4".into(), t0), None);
    assert_eq!(p.coupon_reply("A1", CouponVerdict::Valid, t0), None);
    let mut left = p.give_up_all();
    left.sort_by_key(|n| format!("{n:?}"));
    assert_eq!(
        left,
        vec![verdict_news("C3", None), verdict_news("D4", None)]
    );
    assert_eq!(p.next_deadline(), None);
}

#[test]
fn requests_the_hub_cannot_be_asked_get_their_answer_at_once() {
    assert_eq!(
        offline_answer(HubRequest::CouponCheck { code: "X9".into() }),
        Some(verdict_news("X9", None))
    );
    assert_eq!(
        offline_answer(HubRequest::Digest {
            card: card("6299001234567")
        }),
        None
    );
}

#[test]
fn only_revoked_or_fenced_refusals_lock_the_till_out() {
    let refused = |reason| {
        UplinkError::Sync(SyncError::Refused {
            reason,
            detail: "x".into(),
        })
    };
    assert_eq!(
        locked_out(&refused(Refusal::Revoked)),
        Some(Refusal::Revoked)
    );
    assert_eq!(locked_out(&refused(Refusal::Fenced)), Some(Refusal::Fenced));
    assert_eq!(locked_out(&refused(Refusal::Unavailable)), None);
    assert_eq!(locked_out(&UplinkError::ConnectTimeout), None);
}
