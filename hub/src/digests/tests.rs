use rusqlite::{params, Connection};
use till360_shared::campaign::{Digest, MonthDay};
use till360_shared::coupon::{derive_customer_key, derive_digest_key, CardKey};
use till360_shared::{codec, CardNumber, Timestamp};

use super::*;
use crate::store::SqliteStore;

const MASTER: &[u8; 32] = b"0123456789abcdef0123456789abcdef";
const DAY_MS: i64 = 86_400_000;
/// 2026-06-01T10:00:00Z
const NOW_MS: i64 = 1_780_308_000_000;

fn now() -> Timestamp {
    Timestamp::from_unix_ms(NOW_MS, 0)
}

fn days_ago(days: i64) -> i64 {
    NOW_MS - days * DAY_MS
}

fn card(code: &str) -> CardNumber {
    CardNumber::parse(code).unwrap()
}

fn key(code: &str) -> CardKey {
    CardKey::of(&derive_digest_key(MASTER), &card(code))
}

fn facts() -> ProfileFacts {
    ProfileFacts {
        profile_id: "p-1".into(),
        first_name: Some(" Anna ".into()),
        birth_date: Some("1985-03-14".into()),
        member_since: Some("2019-05-01".into()),
        // 2020-02-29T23:30Z, at +60: 1 March locally.
        first_seen: Timestamp::from_unix_ms(1_583_019_000_000, 60),
        points: Some(120),
        last_visit: Some(Timestamp::from_unix_ms(days_ago(3), 60)),
        personalisation: Some(true),
        segments: vec!["vip".into(), "newsletter".into(), "vip".into()],
        coupons: vec![
            ("birthday".into(), Timestamp::from_unix_ms(days_ago(10), 60)),
            (
                "big-basket".into(),
                Timestamp::from_unix_ms(days_ago(400), 60),
            ),
            (
                "big-basket".into(),
                Timestamp::from_unix_ms(days_ago(20), 60),
            ),
        ],
    }
}

#[test]
fn a_digest_carries_what_the_triggers_need() {
    let d = build_digest(MASTER, &facts(), now());
    assert_eq!(d.customer_key, derive_customer_key(MASTER, "p-1"));
    assert_eq!(d.first_name.as_deref(), Some("Anna"));
    assert_eq!(d.birthday, Some(MonthDay { month: 3, day: 14 }));
    assert_eq!(
        d.member_since.map(|m| m.to_string()).as_deref(),
        Some("2019-05-01")
    );
    assert_eq!(d.points, 120);
    assert_eq!(d.last_visit, Some(Timestamp::from_unix_ms(days_ago(3), 60)));
    assert!(d.personalisation_consent);
    assert_eq!(
        d.segments,
        vec!["newsletter".to_string(), "vip".to_string()]
    );
    // The 400-day-old coupon is outside the caps window; oldest first.
    assert_eq!(
        d.caps_used,
        vec![
            (
                "big-basket".to_string(),
                Timestamp::from_unix_ms(days_ago(20), 60)
            ),
            (
                "birthday".to_string(),
                Timestamp::from_unix_ms(days_ago(10), 60)
            ),
        ]
    );
}

#[test]
fn missing_or_odd_facts_give_safe_defaults() {
    let bare = ProfileFacts {
        first_name: Some("  ".into()),
        birth_date: Some("14-03-1985".into()),
        member_since: None,
        points: None,
        last_visit: None,
        personalisation: None,
        segments: vec![],
        coupons: vec![],
        ..facts()
    };
    let d = build_digest(MASTER, &bare, now());
    assert_eq!(d.first_name, None);
    assert_eq!(d.birthday, None, "a date in another shape is unknown");
    assert_eq!(
        d.member_since.map(|m| m.to_string()).as_deref(),
        Some("2020-03-01"),
        "first seen, in the till's local date"
    );
    assert_eq!(d.points, 0);
    assert!(!d.personalisation_consent, "never asked is no consent");
    assert!(d.caps_used.is_empty());
    let withdrawn = ProfileFacts {
        personalisation: Some(false),
        ..facts()
    };
    assert!(!build_digest(MASTER, &withdrawn, now()).personalisation_consent);
}

/// A hub database with two stores: Anna (one card) shops at S1, Piet (two cards) at
/// S2, Old (one card) at S1 twenty months ago.
fn database() -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.db");
    drop(SqliteStore::open(&path).unwrap());
    let conn = Connection::open(&path).unwrap();
    for (store, till) in [("S1", "T1"), ("S2", "T1")] {
        conn.execute(
            "INSERT INTO agents (store, till, last_seq, last_seen_ms) VALUES (?1, ?2, 0, 0)",
            [store, till],
        )
        .unwrap();
    }
    let people = [
        ("p-anna", "Anna", &["4006381333931"][..], "S1", days_ago(5)),
        (
            "p-piet",
            "Piet",
            &["96385074", "2401000009013"][..],
            "S2",
            days_ago(1),
        ),
        ("p-old", "Old", &["2401000009020"][..], "S1", days_ago(610)),
    ];
    for (seq, (id, name, cards, store, at)) in people.iter().enumerate() {
        conn.execute(
            "INSERT INTO profiles (profile_id, created_at_ms, created_offset_min, first_name)
             VALUES (?1, ?2, 60, ?3)",
            params![id, at, name],
        )
        .unwrap();
        for c in *cards {
            conn.execute(
                "INSERT INTO identifiers (kind, value, profile_id, source, added_at_ms)
                 VALUES ('card', ?1, ?2, 'test', 0)",
                params![c, id],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO transactions (store, till, seq, at_ms, offset_min, card, profile_id,
                 total_cents, currency, lines)
             VALUES (?1, 'T1', ?2, ?3, 60, ?4, ?5, 1000, 'EUR', x'00')",
            params![store, seq as i64 + 1, at, cards[0], id],
        )
        .unwrap();
    }
    (dir, conn)
}

fn digest_of(entry: &till360_shared::wire::DigestEntry) -> &Digest {
    entry.digest.as_ref().expect("a digest, not a removal")
}

#[test]
fn the_feed_holds_each_stores_recent_customers_under_growing_versions() {
    let (_dir, mut conn) = database();
    let summary = refresh_all(&mut conn, MASTER, 12, now()).unwrap();
    assert_eq!(
        (summary.stores, summary.changed, summary.removed),
        (2, 3, 0)
    );

    let s1 = rows_after(&conn, "S1", 0, 100).unwrap();
    assert_eq!(s1.last_version, Some(1));
    assert_eq!(s1.entries.len(), 1, "Old shopped too long ago");
    assert_eq!(s1.entries[0].card_key, key("4006381333931"));
    assert_eq!(
        digest_of(&s1.entries[0]).first_name.as_deref(),
        Some("Anna")
    );
    let s2 = rows_after(&conn, "S2", 0, 100).unwrap();
    let mut keys: Vec<CardKey> = s2.entries.iter().map(|e| e.card_key).collect();
    keys.sort();
    let mut want = vec![key("96385074"), key("2401000009013")];
    want.sort();
    assert_eq!(keys, want, "every card of the profile");
    assert_eq!(s2.last_version, Some(2));
    assert_eq!(max_version(&conn, "S2").unwrap(), 2);
    // Pages resume after the last version read.
    let first = rows_after(&conn, "S2", 0, 1).unwrap();
    assert_eq!((first.entries.len(), first.last_version), (1, Some(1)));
    let rest = rows_after(&conn, "S2", 1, 1).unwrap();
    assert_eq!((rest.entries.len(), rest.last_version), (1, Some(2)));
    assert_eq!(rows_after(&conn, "S2", 2, 10).unwrap(), FeedPage::default());

    // Nothing changed: no new versions.
    assert!(!refresh_all(&mut conn, MASTER, 12, now()).unwrap().any());
    assert_eq!(max_version(&conn, "S1").unwrap(), 1);

    // A longer window takes Old in, under the next version of S1 only.
    let wide = refresh_all(&mut conn, MASTER, 24, now()).unwrap();
    assert_eq!((wide.changed, wide.removed), (1, 0));
    let delta = rows_after(&conn, "S1", 1, 100).unwrap();
    assert_eq!(delta.last_version, Some(2));
    assert_eq!(delta.entries[0].card_key, key("2401000009020"));
    assert_eq!(max_version(&conn, "S2").unwrap(), 2);
}

#[test]
fn changes_get_new_versions_and_lapsed_or_erased_customers_become_removals() {
    let (_dir, mut conn) = database();
    refresh_all(&mut conn, MASTER, 12, now()).unwrap();

    conn.execute(
        "INSERT INTO consents (profile_id, purpose, granted, source, at_ms)
         VALUES ('p-anna', 'personalization', 1, 'test', 0)",
        [],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO coupons (store, till, seq, campaign_id, control, code, card, profile_id,
             customer_key, issued_at_ms, offset_min, expires, receipt_seq)
         VALUES ('S1', 'T1', 9, 'big-basket', 1, NULL, '4006381333931', 'p-anna', 'k',
             ?1, 60, '2026-06-15', 8)",
        [days_ago(2)],
    )
    .unwrap();
    let s = refresh_all(&mut conn, MASTER, 12, now()).unwrap();
    assert_eq!((s.changed, s.removed), (1, 0));
    let delta = rows_after(&conn, "S1", 1, 100).unwrap();
    assert_eq!(delta.last_version, Some(2));
    let d = digest_of(&delta.entries[0]);
    assert!(d.personalisation_consent);
    assert_eq!(
        d.caps_used,
        vec![(
            "big-basket".to_string(),
            Timestamp::from_unix_ms(days_ago(2), 60)
        )],
        "would-haves count towards caps"
    );
    // The stored bytes are the digest's codec bytes.
    let stored: Vec<u8> = conn
        .query_row(
            "SELECT digest FROM digest_feed WHERE store = 'S1' AND version = 2",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(codec::from_bytes::<Digest>(&stored).unwrap(), *d);

    // Piet's only S2 visit falls out of a 1-month window a month later.
    let later = Timestamp::from_unix_ms(NOW_MS + 40 * DAY_MS, 0);
    let s = refresh_all(&mut conn, MASTER, 1, later).unwrap();
    assert_eq!(s.removed, 2 + 1, "Piet's two cards, and Anna's too");
    let s2 = rows_after(&conn, "S2", 2, 100).unwrap();
    assert_eq!(s2.last_version, Some(4));
    assert!(s2.entries.iter().all(|e| e.digest.is_none()));
    // Removals stay removals: no new versions on the next refresh.
    assert!(!refresh_all(&mut conn, MASTER, 1, later).unwrap().any());

    // Back in the window, then erased (as the store's erase leaves it): a removal.
    refresh_all(&mut conn, MASTER, 12, now()).unwrap();
    let before = max_version(&conn, "S1").unwrap();
    conn.execute_batch(
        "UPDATE transactions SET profile_id = NULL, card = NULL WHERE profile_id = 'p-anna';
         DELETE FROM identifiers WHERE profile_id = 'p-anna';
         DELETE FROM consents WHERE profile_id = 'p-anna';
         DELETE FROM profiles WHERE profile_id = 'p-anna';",
    )
    .unwrap();
    let s = refresh_all(&mut conn, MASTER, 12, now()).unwrap();
    assert_eq!((s.changed, s.removed), (0, 1));
    let gone = rows_after(&conn, "S1", before, 100).unwrap();
    assert_eq!(gone.last_version, Some(before + 1));
    assert_eq!(gone.entries[0].card_key, key("4006381333931"));
    assert_eq!(gone.entries[0].digest, None);
    assert_eq!(
        digest_of_card(&conn, MASTER, &card("4006381333931"), now()).unwrap(),
        None,
        "an erased card has no digest"
    );
}

#[test]
fn a_card_lookup_builds_the_digest_fresh_for_any_store() {
    let (_dir, conn) = database();
    // No refresh ran and Old is in no store's window: still answered.
    let d = digest_of_card(&conn, MASTER, &card("2401000009020"), now())
        .unwrap()
        .expect("a known card");
    assert_eq!(d.first_name.as_deref(), Some("Old"));
    assert_eq!(d.customer_key, derive_customer_key(MASTER, "p-old"));
    assert_eq!(
        d.last_visit,
        Some(Timestamp::from_unix_ms(days_ago(610), 60))
    );
    assert_eq!(
        digest_of_card(&conn, MASTER, &card("5901234123457"), now()).unwrap(),
        None
    );
}

#[test]
fn an_unreadable_row_goes_out_as_a_removal_and_a_bad_key_is_skipped() {
    let (_dir, conn) = database();
    conn.execute_batch(
        "INSERT INTO digest_feed (store, card_key, version, digest)
             VALUES ('S1', x'00112233445566778899aabbccddeeff', 1, x'ffffffff');
         INSERT INTO digest_feed (store, card_key, version, digest)
             VALUES ('S1', x'0011', 2, NULL);",
    )
    .unwrap();
    let page = rows_after(&conn, "S1", 0, 10).unwrap();
    assert_eq!(page.last_version, Some(2), "the feed moves past both");
    assert_eq!(page.entries.len(), 1);
    assert_eq!(page.entries[0].digest, None);
}
