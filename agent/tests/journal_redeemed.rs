//! The store's coupon redemption ledger in the journal (a SQLite file on disk): this
//! till's own redemptions enter it with their event, the hub's `Redeemed` frames with
//! their version, expired codes leave it, and an older journal gains it on open.

use chrono::NaiveDate;
use rusqlite::Connection;
use till360_agent::journal::{Journal, JOURNAL_FILE};
use till360_shared::coupon::{derive_till_key, mint, CouponFields};
use till360_shared::event::{CouponRedemption, Verification};
use till360_shared::{AgentId, EventKind, Timestamp};

fn agent() -> AgentId {
    AgentId::new("S001", "T01")
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, d).unwrap()
}

fn code(serial: u16, expires: NaiveDate) -> String {
    let key = derive_till_key(&[3; 32], "S001", "T02");
    mint(&key, &CouponFields::new(1, 2, expires, serial).unwrap())
        .as_str()
        .to_string()
}

fn redeemed(code: &str) -> EventKind {
    EventKind::CouponRedeemed(CouponRedemption {
        code: code.to_string(),
        receipt_seq: Some(1),
        verified: Verification::OwnStore,
    })
}

#[test]
fn an_own_redemption_enters_the_ledger_with_its_event() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), &agent()).unwrap();
    let mine = code(1, day(20));
    assert!(!j.is_redeemed(&mine).unwrap());
    j.append(Timestamp::from_unix_ms(1, 60), redeemed(&mine))
        .unwrap();
    // A misread is journaled as scanned, but is no code to keep.
    j.append(Timestamp::from_unix_ms(2, 60), redeemed("1234"))
        .unwrap();
    drop(j);
    let j = Journal::open(dir.path(), &agent()).unwrap();
    assert!(j.is_redeemed(&mine).unwrap());
    let grouped: String = mine
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(j.is_redeemed(&grouped).unwrap(), "typed with spaces");
    assert!(!j.is_redeemed("1234").unwrap());
    assert_eq!(
        j.redeemed_version().unwrap(),
        0,
        "own codes move no version"
    );
}

#[test]
fn the_hubs_codes_are_kept_with_their_version_until_a_day_after_they_expire() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), &agent()).unwrap();
    let (old, fresh) = (code(1, day(2)), code(2, day(20)));
    assert_eq!(
        j.apply_redeemed(&[old.clone(), fresh.clone()], 7, day(1))
            .unwrap(),
        2
    );
    assert_eq!(j.redeemed_version().unwrap(), 7);
    assert!(j.is_redeemed(&old).unwrap() && j.is_redeemed(&fresh).unwrap());
    // On the day after its expiry a code is still kept (time zones); then dropped.
    assert_eq!(j.apply_redeemed(&[], 8, day(3)).unwrap(), 2);
    assert_eq!(j.apply_redeemed(&[], 9, day(4)).unwrap(), 1);
    drop(j);
    let j = Journal::open(dir.path(), &agent()).unwrap();
    assert!(!j.is_redeemed(&old).unwrap());
    assert!(j.is_redeemed(&fresh).unwrap());
    assert_eq!(j.redeemed_version().unwrap(), 9);
}

#[test]
fn a_schema_5_journal_gains_the_ledger_at_version_0() {
    let dir = tempfile::tempdir().unwrap();
    drop(Journal::open(dir.path(), &agent()).unwrap());
    Connection::open(dir.path().join(JOURNAL_FILE))
        .unwrap()
        .execute_batch(
            "DROP TABLE redeemed_codes;
             ALTER TABLE journal_meta DROP COLUMN redeemed_version;
             UPDATE journal_meta SET schema_version = 5;",
        )
        .unwrap();
    let mut j = Journal::open(dir.path(), &agent()).unwrap();
    assert_eq!(j.redeemed_version().unwrap(), 0);
    j.apply_redeemed(&[code(1, day(20))], 3, day(1)).unwrap();
    drop(j);
    // Opening again is a no-op.
    let j = Journal::open(dir.path(), &agent()).unwrap();
    assert_eq!(j.redeemed_version().unwrap(), 3);
    assert!(j.is_redeemed(&code(1, day(20))).unwrap());
}
