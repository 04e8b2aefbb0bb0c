//! The digest cache and coupon serials in a real SQLite journal in a tempdir: the cache
//! follows a model through deltas, resets, on-scan answers and reopens; a bad row costs
//! only itself; serials count per campaign and expiry day across reopens and end with
//! a clear error.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use proptest::prelude::*;
use rusqlite::Connection;
use till360_agent::cli::status_text;
use till360_agent::journal::{Journal, JournalError, JOURNAL_FILE};
use till360_shared::campaign::{Digest, MonthDay};
use till360_shared::coupon::{CardKey, CouponFields};
use till360_shared::wire::DigestEntry;
use till360_shared::AgentId;

fn agent() -> AgentId {
    AgentId::new("S001", "T01")
}

fn key(n: u8) -> CardKey {
    CardKey([n; 16])
}

fn digest(points: i64) -> Digest {
    Digest {
        customer_key: format!("c{points:04}"),
        birthday: Some(MonthDay { month: 3, day: 14 }),
        member_since: NaiveDate::from_ymd_opt(2020, 1, 2),
        points,
        personalisation_consent: points % 2 == 0,
        segments: vec!["regular".into()],
        ..Digest::default()
    }
}

fn entry(n: u8, points: Option<i64>) -> DigestEntry {
    DigestEntry {
        card_key: key(n),
        digest: points.map(digest),
    }
}

fn sorted(mut v: Vec<(CardKey, Digest)>) -> Vec<(CardKey, Digest)> {
    v.sort_by_key(|(k, _)| *k);
    v
}

#[test]
fn deltas_store_replace_and_delete_and_a_reset_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), &agent()).unwrap();
    assert_eq!(j.digest_version().unwrap(), 0);
    assert!(j.digests().unwrap().is_empty());

    j.apply_digests(&[entry(1, Some(10)), entry(2, Some(20))], 3, false)
        .unwrap();
    j.apply_digests(
        &[entry(1, Some(11)), entry(2, None), entry(3, None)],
        5,
        false,
    )
    .unwrap();
    assert_eq!(j.digest_version().unwrap(), 5);
    assert_eq!(j.digests().unwrap(), vec![(key(1), digest(11))]);

    j.apply_digests(&[entry(4, Some(40))], 2, true).unwrap();
    assert_eq!(j.digest_version().unwrap(), 2, "a reset may start lower");
    assert_eq!(j.digests().unwrap(), vec![(key(4), digest(40))]);
    drop(j);

    let j = Journal::open(dir.path(), &agent()).unwrap();
    assert_eq!(j.digest_version().unwrap(), 2);
    assert_eq!(j.digests().unwrap(), vec![(key(4), digest(40))]);
}

#[test]
fn an_on_scan_answer_is_cached_without_moving_the_version() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), &agent()).unwrap();
    j.apply_digests(&[entry(1, Some(10))], 7, false).unwrap();
    j.put_digest(&key(2), Some(&digest(20))).unwrap();
    j.put_digest(&key(1), None).unwrap();
    assert_eq!(j.digest_version().unwrap(), 7);
    assert_eq!(j.digests().unwrap(), vec![(key(2), digest(20))]);
    // Deleting what is not there is fine.
    j.put_digest(&key(9), None).unwrap();
    assert_eq!(j.digests().unwrap().len(), 1);
}

#[test]
fn status_counts_digests_and_shows_the_version_but_no_content() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), &agent()).unwrap();
    j.apply_digests(&[entry(1, Some(10)), entry(2, Some(20))], 31, false)
        .unwrap();
    let status = j.status().unwrap();
    assert_eq!((status.digests, status.digest_version), (2, 31));
    let text = status_text(&status);
    assert!(text.contains("digests: 2\n"), "{text}");
    assert!(text.contains("digest_version: 31\n"), "{text}");
    let json = serde_json::to_string(&status).unwrap();
    assert!(json.contains("\"digests\":2"), "{json}");
    assert!(json.contains("\"digest_version\":31"), "{json}");
    for shown in [&text, &json] {
        assert!(!shown.contains("Name10"), "{shown}");
        assert!(!shown.contains("c0010"), "{shown}");
    }
}

#[test]
fn a_corrupt_digest_row_is_skipped_and_the_rest_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), &agent()).unwrap();
    j.apply_digests(&[entry(1, Some(10)), entry(2, Some(20))], 1, false)
        .unwrap();
    let side = Connection::open(dir.path().join(JOURNAL_FILE)).unwrap();
    side.execute(
        "UPDATE digests SET digest = x'ffff' WHERE card_key = ?1",
        [&key(2).0[..]],
    )
    .unwrap();
    side.execute(
        "INSERT INTO digests (card_key, digest) VALUES (x'010203', x'00')",
        [],
    )
    .unwrap();
    assert_eq!(j.digests().unwrap(), vec![(key(1), digest(10))]);
    // The hub's next entry for the card repairs it.
    j.apply_digests(&[entry(2, Some(21))], 2, false).unwrap();
    assert_eq!(
        sorted(j.digests().unwrap()),
        vec![(key(1), digest(10)), (key(2), digest(21))]
    );
}

#[derive(Debug, Clone)]
enum Op {
    Apply {
        entries: Vec<(u8, Option<i64>)>,
        reset: bool,
    },
    Put(u8, Option<i64>),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let change = (0u8..6, proptest::option::of(0i64..1000));
    prop_oneof![
        4 => (proptest::collection::vec(change.clone(), 0..6), proptest::bool::weighted(0.2))
            .prop_map(|(entries, reset)| Op::Apply { entries, reset }),
        2 => change.prop_map(|(k, d)| Op::Put(k, d)),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn the_cache_follows_a_model(ops in proptest::collection::vec(op(), 1..12)) {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), &agent()).unwrap();
        let mut model: BTreeMap<CardKey, Digest> = BTreeMap::new();
        let mut version = 0u64;
        for op in ops {
            match op {
                Op::Apply { entries, reset } => {
                    let entries: Vec<DigestEntry> =
                        entries.iter().map(|(k, d)| entry(*k, *d)).collect();
                    version += 1;
                    j.apply_digests(&entries, version, reset).unwrap();
                    if reset {
                        model.clear();
                    }
                    for e in entries {
                        match e.digest {
                            Some(d) => model.insert(e.card_key, d),
                            None => model.remove(&e.card_key),
                        };
                    }
                }
                Op::Put(k, d) => {
                    j.put_digest(&key(k), d.map(digest).as_ref()).unwrap();
                    match d {
                        Some(p) => model.insert(key(k), digest(p)),
                        None => model.remove(&key(k)),
                    };
                }
                Op::Reopen => {
                    drop(j);
                    j = Journal::open(dir.path(), &agent()).unwrap();
                }
            }
            let expected: Vec<(CardKey, Digest)> =
                model.iter().map(|(k, d)| (*k, d.clone())).collect();
            prop_assert_eq!(sorted(j.digests().unwrap()), expected);
            prop_assert_eq!(j.digest_version().unwrap(), version);
            prop_assert_eq!(j.status().unwrap().digests, model.len() as u64);
        }
    }
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 6, d).unwrap()
}

#[test]
fn serials_count_per_campaign_and_expiry_day_across_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), &agent()).unwrap();
    assert_eq!(j.next_coupon_serial(7, day(10)).unwrap(), 0);
    assert_eq!(j.next_coupon_serial(7, day(10)).unwrap(), 1);
    assert_eq!(j.next_coupon_serial(7, day(11)).unwrap(), 0);
    assert_eq!(j.next_coupon_serial(8, day(10)).unwrap(), 0);
    drop(j);
    let mut j = Journal::open(dir.path(), &agent()).unwrap();
    assert_eq!(j.next_coupon_serial(7, day(10)).unwrap(), 2);
    assert_eq!(j.next_coupon_serial(7, day(11)).unwrap(), 1);
    assert_eq!(j.next_coupon_serial(8, day(10)).unwrap(), 1);
}

#[test]
fn serial_blocks_are_reserved_whole_and_never_handed_out_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), &agent()).unwrap();
    assert_eq!(j.reserve_coupon_serials(4, day(2), 64).unwrap(), 0..64);
    drop(j);
    // A restart skips what the stopped till core had reserved but not printed.
    let mut j = Journal::open(dir.path(), &agent()).unwrap();
    assert_eq!(j.next_coupon_serial(4, day(2)).unwrap(), 64);
    assert_eq!(j.reserve_coupon_serials(4, day(2), 4095).unwrap(), 65..4096);
    let err = j.reserve_coupon_serials(4, day(2), 64).unwrap_err();
    assert!(
        matches!(err, JournalError::SerialsExhausted { .. }),
        "{err}"
    );
}

#[test]
fn a_serial_is_committed_before_it_is_returned() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), &agent()).unwrap();
    assert_eq!(j.next_coupon_serial(3, day(1)).unwrap(), 0);
    // Another connection (a process after a crash) sees it at once.
    let side = Connection::open(dir.path().join(JOURNAL_FILE)).unwrap();
    let next: i64 = side
        .query_row(
            "SELECT next_serial FROM coupon_serials WHERE campaign_number = 3",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(next, 1);
}

#[test]
fn serials_end_with_a_clear_error_that_costs_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), &agent()).unwrap();
    assert_eq!(j.next_coupon_serial(5, day(20)).unwrap(), 0);
    // Jump near the end rather than commit 4096 coupons one by one.
    Connection::open(dir.path().join(JOURNAL_FILE))
        .unwrap()
        .execute(
            "UPDATE coupon_serials SET next_serial = ?1",
            [i64::from(CouponFields::MAX_SERIAL)],
        )
        .unwrap();
    assert_eq!(
        j.next_coupon_serial(5, day(20)).unwrap(),
        CouponFields::MAX_SERIAL
    );
    for _ in 0..2 {
        let err = j.next_coupon_serial(5, day(20)).unwrap_err();
        assert!(
            matches!(err, JournalError::SerialsExhausted { campaign: 5, expires, .. } if expires == day(20)),
            "{err}"
        );
        let text = err.to_string();
        assert!(text.contains("campaign number 5"), "{text}");
        assert!(text.contains("2025-06-20"), "{text}");
        assert!(text.contains(JOURNAL_FILE), "{text}");
    }
    assert_eq!(j.next_coupon_serial(5, day(21)).unwrap(), 0);
    assert_eq!(j.next_coupon_serial(6, day(20)).unwrap(), 0);
}

#[test]
fn counters_of_coupons_expired_long_ago_are_forgotten_but_recent_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), &agent()).unwrap();
    let old = NaiveDate::from_ymd_opt(2023, 1, 1).unwrap();
    let recent = NaiveDate::from_ymd_opt(2025, 5, 1).unwrap();
    j.next_coupon_serial(1, old).unwrap();
    j.next_coupon_serial(1, recent).unwrap();
    j.next_coupon_serial(1, day(1)).unwrap();
    let rows: i64 = Connection::open(dir.path().join(JOURNAL_FILE))
        .unwrap()
        .query_row("SELECT COUNT(*) FROM coupon_serials", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 2);
    assert_eq!(j.next_coupon_serial(1, recent).unwrap(), 1);
}
