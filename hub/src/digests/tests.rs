use till360_shared::campaign::{Digest, MonthDay};
use till360_shared::coupon::{derive_customer_key, derive_digest_key, CardKey};
use till360_shared::{codec, CardNumber, Timestamp};

use super::*;
use crate::sql_params;
use crate::store::digests::{
    compact, compacted_through, digest_of_card, max_version, refresh_all, rows_after, FeedPage,
    COMPACTION_BATCH,
};
use crate::store::sql::{Sql, SqlExt};
use crate::store::test_support::for_each_engine;
use crate::store::{Database, Pooled};

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

/// The card key of `code` in `store`'s digests.
fn key_in(store: &str, code: &str) -> CardKey {
    CardKey::of(&derive_digest_key(MASTER, store), &card(code))
}

fn facts() -> ProfileFacts {
    ProfileFacts {
        profile_id: "p-1".into(),
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
        birth_date: Some("14-03-1985".into()),
        member_since: None,
        points: None,
        last_visit: None,
        segments: vec![],
        coupons: vec![],
        ..facts()
    };
    let d = build_digest(MASTER, &bare, now());
    assert_eq!(d.birthday, None, "a date in another shape is unknown");
    assert_eq!(
        d.member_since.map(|m| m.to_string()).as_deref(),
        Some("2020-03-01"),
        "first seen, in the till's local date"
    );
    assert_eq!(d.points, 0);
    assert!(d.caps_used.is_empty());
    let never_asked = ProfileFacts {
        personalisation: None,
        ..facts()
    };
    let d = build_digest(MASTER, &never_asked, now());
    assert!(!d.personalisation_consent, "never asked is no consent");
    assert_eq!((d.birthday, d.member_since, d.points), (None, None, 0));
    let withdrawn = ProfileFacts {
        personalisation: Some(false),
        ..facts()
    };
    assert!(!build_digest(MASTER, &withdrawn, now()).personalisation_consent);
}

/// A hub database with two stores: Anna (one card) shops at S1, Piet (two cards) at
/// S2, Old (one card) at S1 twenty months ago.
fn database(db: &Database) -> Pooled {
    let conn = db.get().unwrap();
    for (store, till) in [("S1", "T1"), ("S2", "T1")] {
        conn.execute(
            "INSERT INTO agents (store, till, last_seq, last_seen_ms) VALUES (?1, ?2, 0, 0)",
            sql_params![store, till],
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
            sql_params![id, at, name],
        )
        .unwrap();
        for c in *cards {
            conn.execute(
                "INSERT INTO identifiers (kind, value, profile_id, source, added_at_ms)
                 VALUES ('card', ?1, ?2, 'test', 0)",
                sql_params![c, id],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO transactions (store, till, seq, at_ms, offset_min, card, profile_id,
                 total_cents, currency, lines)
             VALUES (?1, 'T1', ?2, ?3, 60, ?4, ?5, 1000, 'EUR', ?6)",
            sql_params![store, seq as i64 + 1, at, cards[0], id, LINES],
        )
        .unwrap();
    }
    conn
}

/// A transaction's lines as stored (the feed never reads them).
const LINES: [u8; 1] = [0];

fn digest_of(entry: &till360_shared::wire::DigestEntry) -> &Digest {
    entry.digest.as_ref().expect("a digest, not a removal")
}

#[test]
fn the_feed_holds_each_stores_recent_customers_under_growing_versions() {
    for_each_engine(|db| {
        let pooled = database(db);
        let conn: &dyn Sql = &*pooled;
        let summary = refresh_all(conn, MASTER, 12, now()).unwrap();
        assert_eq!(
            (summary.stores, summary.changed, summary.removed),
            (2, 3, 0)
        );

        let s1 = rows_after(conn, "S1", 0, 100).unwrap();
        assert_eq!(s1.last_version, Some(1));
        assert_eq!(s1.entries.len(), 1, "Old shopped too long ago");
        assert_eq!(s1.entries[0].card_key, key_in("S1", "4006381333931"));
        assert_eq!(
            digest_of(&s1.entries[0]).customer_key,
            derive_customer_key(MASTER, "p-anna")
        );
        let s2 = rows_after(conn, "S2", 0, 100).unwrap();
        let mut keys: Vec<CardKey> = s2.entries.iter().map(|e| e.card_key).collect();
        keys.sort();
        let mut want = vec![key_in("S2", "96385074"), key_in("S2", "2401000009013")];
        want.sort();
        assert_eq!(keys, want, "every card of the profile");
        assert_eq!(s2.last_version, Some(2));
        assert_eq!(max_version(conn, "S2").unwrap(), 2);
        // Pages resume after the last version read.
        let first = rows_after(conn, "S2", 0, 1).unwrap();
        assert_eq!((first.entries.len(), first.last_version), (1, Some(1)));
        let rest = rows_after(conn, "S2", 1, 1).unwrap();
        assert_eq!((rest.entries.len(), rest.last_version), (1, Some(2)));
        assert_eq!(rows_after(conn, "S2", 2, 10).unwrap(), FeedPage::default());

        // Nothing changed: no new versions.
        assert!(!refresh_all(conn, MASTER, 12, now()).unwrap().any());
        assert_eq!(max_version(conn, "S1").unwrap(), 1);

        // A longer window takes Old in, under the next version of S1 only.
        let wide = refresh_all(conn, MASTER, 24, now()).unwrap();
        assert_eq!((wide.changed, wide.removed), (1, 0));
        let delta = rows_after(conn, "S1", 1, 100).unwrap();
        assert_eq!(delta.last_version, Some(2));
        assert_eq!(delta.entries[0].card_key, key_in("S1", "2401000009020"));
        assert_eq!(max_version(conn, "S2").unwrap(), 2);
    });
}

#[test]
fn changes_get_new_versions_and_lapsed_or_erased_customers_become_removals() {
    for_each_engine(|db| {
        let pooled = database(db);
        let conn: &dyn Sql = &*pooled;
        refresh_all(conn, MASTER, 12, now()).unwrap();

        conn.execute(
            "INSERT INTO consents (profile_id, purpose, granted, source, at_ms)
             VALUES ('p-anna', 'personalization', 1, 'test', 0)",
            sql_params![],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO coupons (store, till, seq, campaign_id, control, code, card, profile_id,
                 customer_key, issued_at_ms, offset_min, expires, receipt_seq)
             VALUES ('S1', 'T1', 9, 'big-basket', 1, NULL, '4006381333931', 'p-anna', 'k',
                 ?1, 60, '2026-06-15', 8)",
            sql_params![days_ago(2)],
        )
        .unwrap();
        let s = refresh_all(conn, MASTER, 12, now()).unwrap();
        assert_eq!((s.changed, s.removed), (1, 0));
        let delta = rows_after(conn, "S1", 1, 100).unwrap();
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
            .query_one(
                "SELECT digest FROM digest_feed WHERE store = 'S1' AND version = 2",
                sql_params![],
            )
            .unwrap()
            .get(0)
            .unwrap();
        assert_eq!(codec::from_bytes::<Digest>(&stored).unwrap(), *d);

        // Piet's only S2 visit falls out of a 1-month window a month later.
        let later = Timestamp::from_unix_ms(NOW_MS + 40 * DAY_MS, 0);
        let s = refresh_all(conn, MASTER, 1, later).unwrap();
        assert_eq!(s.removed, 2 + 1, "Piet's two cards, and Anna's too");
        let s2 = rows_after(conn, "S2", 2, 100).unwrap();
        assert_eq!(s2.last_version, Some(4));
        assert!(s2.entries.iter().all(|e| e.digest.is_none()));
        // Removals stay removals: no new versions on the next refresh.
        assert!(!refresh_all(conn, MASTER, 1, later).unwrap().any());

        // Back in the window, then erased (as the store's erase leaves it): a removal.
        refresh_all(conn, MASTER, 12, now()).unwrap();
        let before = max_version(conn, "S1").unwrap();
        conn.batch(
            "UPDATE transactions SET profile_id = NULL, card = NULL WHERE profile_id = 'p-anna';
             DELETE FROM identifiers WHERE profile_id = 'p-anna';
             DELETE FROM consents WHERE profile_id = 'p-anna';
             DELETE FROM profiles WHERE profile_id = 'p-anna';",
        )
        .unwrap();
        let s = refresh_all(conn, MASTER, 12, now()).unwrap();
        assert_eq!((s.changed, s.removed), (0, 1));
        let gone = rows_after(conn, "S1", before, 100).unwrap();
        assert_eq!(gone.last_version, Some(before + 1));
        assert_eq!(gone.entries[0].card_key, key_in("S1", "4006381333931"));
        assert_eq!(gone.entries[0].digest, None);
        assert_eq!(
            digest_of_card(conn, MASTER, &card("4006381333931"), now()).unwrap(),
            None,
            "an erased card has no digest"
        );
    });
}

#[test]
fn a_card_lookup_builds_the_digest_fresh_for_any_store() {
    for_each_engine(|db| {
        let pooled = database(db);
        let conn: &dyn Sql = &*pooled;
        conn.execute(
            "INSERT INTO consents (profile_id, purpose, granted, source, at_ms)
             VALUES ('p-old', 'personalization', 1, 'crm', 0)",
            sql_params![],
        )
        .unwrap();
        // No refresh ran and Old is in no store's window: still answered.
        let d = digest_of_card(conn, MASTER, &card("2401000009020"), now())
            .unwrap()
            .expect("a known card");
        assert_eq!(d.customer_key, derive_customer_key(MASTER, "p-old"));
        assert_eq!(
            d.last_visit,
            Some(Timestamp::from_unix_ms(days_ago(610), 60))
        );
        assert_eq!(
            digest_of_card(conn, MASTER, &card("5901234123457"), now()).unwrap(),
            None
        );
    });
}

#[test]
fn an_unreadable_row_goes_out_as_a_removal_and_a_bad_key_is_skipped() {
    for_each_engine(|db| {
        let pooled = database(db);
        let conn: &dyn Sql = &*pooled;
        let key: [u8; 16] = [
            0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ];
        conn.execute(
            "INSERT INTO digest_feed (store, card_key, version, digest) VALUES ('S1', ?1, 1, ?2)",
            sql_params![key, [0xffu8; 4]],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO digest_feed (store, card_key, version, digest) VALUES ('S1', ?1, 2, NULL)",
            sql_params![[0x00u8, 0x11]],
        )
        .unwrap();
        let page = rows_after(conn, "S1", 0, 10).unwrap();
        assert_eq!(page.last_version, Some(2), "the feed moves past both");
        assert_eq!(page.entries.len(), 1);
        assert_eq!(page.entries[0].digest, None);
    });
}

fn feed_rows(conn: &dyn Sql, store: &str) -> (i64, i64) {
    let row = conn
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE digest IS NULL) FROM digest_feed
         WHERE store = ?1",
            sql_params![store],
        )
        .unwrap();
    (row.get(0).unwrap(), row.get(1).unwrap())
}

#[test]
fn compaction_drops_old_removals_and_versions_never_go_back() {
    for_each_engine(|db| {
        let pooled = database(db);
        let conn: &dyn Sql = &*pooled;
        refresh_all(conn, MASTER, 12, now()).unwrap();
        // Everyone lapses in a 1-month window 40 days on: Anna (S1, v1) and Piet's two
        // cards (S2, v1 and v2) become removals (S1 v2, S2 v3 and v4).
        let lapsed = now().unix_ms + 40 * DAY_MS;
        let at = |days: i64| Timestamp::from_unix_ms(lapsed + days * DAY_MS, 0);
        assert_eq!(refresh_all(conn, MASTER, 1, at(0)).unwrap().removed, 3);
        assert_eq!(feed_rows(conn, "S2"), (2, 2));

        // Within the retention nothing goes.
        assert_eq!(compact(conn, at(6), 7, COMPACTION_BATCH).unwrap(), 0);
        assert_eq!(compacted_through(conn, "S2").unwrap(), 0);
        // A budget of one: S1's only removal, the oldest by store then version.
        assert_eq!(compact(conn, at(7), 7, 1).unwrap(), 1);
        assert_eq!(feed_rows(conn, "S1"), (0, 0));
        assert_eq!(compacted_through(conn, "S1").unwrap(), 2);
        assert_eq!(compacted_through(conn, "S2").unwrap(), 0);
        assert_eq!(compact(conn, at(7), 7, COMPACTION_BATCH).unwrap(), 2);
        assert_eq!(feed_rows(conn, "S2"), (0, 0));
        assert_eq!(compacted_through(conn, "S2").unwrap(), 4);

        // The feed is empty but its versions stand: the page says what was dropped.
        assert_eq!(max_version(conn, "S2").unwrap(), 4);
        let page = rows_after(conn, "S2", 0, 100).unwrap();
        assert_eq!(
            (
                page.entries.len(),
                page.last_version,
                page.compacted_through
            ),
            (0, None, 4)
        );
        // Piet is back: his cards come after the dropped versions, not at 1 and 2.
        assert_eq!(refresh_all(conn, MASTER, 12, now()).unwrap().changed, 3);
        let back = rows_after(conn, "S2", 0, 100).unwrap();
        assert_eq!((back.last_version, back.compacted_through), (Some(6), 4));
        assert!(back.entries.iter().all(|e| e.digest.is_some()));
        assert_eq!(max_version(conn, "S1").unwrap(), 3);

        // A removal written before schema 6 (no time) is kept a full retention from the
        // first compaction that sees it.
        conn.execute(
            "INSERT INTO digest_feed (store, card_key, version, digest) VALUES ('S1', ?1, 9, NULL)",
            sql_params![[7u8; 16]],
        )
        .unwrap();
        assert_eq!(compact(conn, at(100), 7, COMPACTION_BATCH).unwrap(), 0);
        assert_eq!(compact(conn, at(106), 7, COMPACTION_BATCH).unwrap(), 0);
        assert_eq!(compact(conn, at(107), 7, COMPACTION_BATCH).unwrap(), 1);
        assert_eq!(compacted_through(conn, "S1").unwrap(), 9);
    });
}

/// A till as the agent keeps it: its digest version and cache (`Journal::apply_digests`:
/// a reset empties the cache, a digest replaces, a removal deletes).
#[derive(Debug, Clone, Default)]
struct Till {
    version: u64,
    cache: std::collections::BTreeMap<CardKey, Digest>,
    resets: usize,
}

/// Connects `till` to `store`'s downlink as the listener does (session + feed reads)
/// and applies every frame until the session has nothing more to send.
fn sync(conn: &dyn Sql, store: &str, till: &mut Till) {
    use crate::listener::HubSession;
    use till360_shared::wire::Message;
    use till360_shared::AgentId;
    let agent = AgentId::new(store, "T9");
    let mut session = HubSession::new(agent.clone());
    session.handle(Message::Hello {
        agent,
        journal_last_seq: 0,
        software: "model".into(),
    });
    session.handle(Message::Subscribe {
        erasure_version: 0,
        campaign_version: 0,
        digest_version: till.version,
        redeemed_version: 0,
    });
    session.after_hello(Ok(0));
    for _ in 0..10_000 {
        let store_max = max_version(conn, store).unwrap();
        let Some(poll) = session.poll_digests(store_max) else {
            return;
        };
        let page = rows_after(conn, store, poll.after, poll.limit).unwrap();
        let Some(frame) = session.digest_frame(page, store_max) else {
            continue;
        };
        let Message::Digests {
            entries,
            up_to_version,
            reset,
        } = frame
        else {
            panic!("not a digest frame: {frame:?}");
        };
        // What the agent's uplink session checks.
        assert!(reset || up_to_version > till.version, "the feed went back");
        if reset {
            till.cache.clear();
            till.resets += 1;
        }
        for entry in entries {
            match entry.digest {
                Some(digest) => till.cache.insert(entry.card_key, digest),
                None => till.cache.remove(&entry.card_key),
            };
        }
        till.version = up_to_version;
    }
    panic!("the downlink never settled");
}

/// `got` equals `want`, or a short account of the difference (a full dump of a few
/// hundred digests says nothing).
fn assert_same_cache(
    got: &std::collections::BTreeMap<CardKey, Digest>,
    want: &std::collections::BTreeMap<CardKey, Digest>,
    what: &str,
) {
    let stale = got.keys().filter(|k| !want.contains_key(k)).count();
    let missing = want.keys().filter(|k| !got.contains_key(k)).count();
    let different = want
        .iter()
        .filter(|(k, d)| got.get(k).is_some_and(|g| g != *d))
        .count();
    assert_eq!(
        (stale, missing, different),
        (0, 0, 0),
        "{what}: digests it should not hold, missing, different"
    );
}

/// 90 days of a store whose customers come, shop again, lapse after a month or are
/// erased, refreshed and compacted daily (7 days' retention): the feed stays within the
/// current customers plus a week of removals, and tills that resume after any absence
/// end with exactly the digests a new till gets, which are the store's customers'.
#[test]
fn the_feed_stays_bounded_under_churn_and_every_till_catches_up_exactly() {
    for_each_engine(|db| churn(&*db.get().unwrap()));
}

fn churn(conn: &dyn Sql) {
    const DAYS: i64 = 90;
    const NEW_PER_DAY: i64 = 4;
    const RETENTION: u32 = 7;
    conn.execute(
        "INSERT INTO agents (store, till, last_seq, last_seen_ms) VALUES ('S1', 'T1', 0, 0)",
        sql_params![],
    )
    .unwrap();
    let start = NOW_MS;
    let day = |d: i64| Timestamp::from_unix_ms(start + d * DAY_MS, 0);
    let card_of = |n: i64| {
        CardNumber::parse(&till360_shared::card::with_check_digit(&format!("24{n:010}")).unwrap())
            .unwrap()
    };
    let mut seq = 0i64;
    let mut shop = |conn: &dyn Sql, n: i64, at: Timestamp| {
        seq += 1;
        conn.execute(
            "INSERT INTO transactions (store, till, seq, at_ms, offset_min, card, profile_id,
                 total_cents, currency, lines)
             VALUES ('S1', 'T1', ?1, ?2, 0, ?3, ?4, 1000, 'EUR', ?5)",
            sql_params![
                seq,
                at.unix_ms,
                card_of(n).as_str(),
                format!("p-{n:05}"),
                LINES
            ],
        )
        .unwrap();
    };

    let mut tills: Vec<(i64, Till)> = [3, 10, 40, 80, 86]
        .into_iter()
        .map(|d| (d, Till::default()))
        .collect();
    let mut daily = Till::default();
    let mut removed_ever = 0;
    let mut compacted_ever = 0;
    for d in 0..DAYS {
        let now = day(d);
        for i in 0..NEW_PER_DAY {
            let n = d * NEW_PER_DAY + i;
            conn.execute(
                "INSERT INTO profiles (profile_id, created_at_ms, created_offset_min, first_name)
                 VALUES (?1, ?2, 0, ?3)",
                sql_params![format!("p-{n:05}"), now.unix_ms, format!("C{n}")],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO identifiers (kind, value, profile_id, source, added_at_ms)
                 VALUES ('card', ?1, ?2, 'test', 0)",
                sql_params![card_of(n).as_str(), format!("p-{n:05}")],
            )
            .unwrap();
            // Consenting customers: a visit changes their digest (the last visit).
            conn.execute(
                "INSERT INTO consents (profile_id, purpose, granted, source, at_ms)
                 VALUES (?1, 'personalization', 1, 'test', 0)",
                sql_params![format!("p-{n:05}")],
            )
            .unwrap();
            shop(conn, n, now);
        }
        // A customer of three days ago comes back (a changed digest); every fifth day
        // one of last week's is erased (as the store's erase leaves it).
        if d >= 3 {
            shop(conn, (d - 3) * NEW_PER_DAY, now);
        }
        if d >= 7 && d % 5 == 0 {
            let id = format!("p-{:05}", (d - 7) * NEW_PER_DAY + 1);
            conn.execute(
                "UPDATE transactions SET profile_id = NULL, card = NULL WHERE profile_id = ?1",
                sql_params![id],
            )
            .unwrap();
            for table in ["identifiers", "consents", "profiles"] {
                conn.execute(
                    &format!("DELETE FROM {table} WHERE profile_id = ?1"),
                    sql_params![id],
                )
                .unwrap();
            }
        }
        let s = refresh_all(conn, MASTER, 1, now).unwrap();
        removed_ever += s.removed;
        compacted_ever += compact(conn, now, RETENTION, COMPACTION_BATCH).unwrap();

        let (rows, removals) = feed_rows(conn, "S1");
        let live = rows - removals;
        // About a month of customers are current; removals of the last week remain.
        assert!(live <= 32 * NEW_PER_DAY, "day {d}: {live} live rows");
        assert!(
            removals <= i64::from(RETENTION) * (NEW_PER_DAY + 1),
            "day {d}: {removals} removals kept"
        );
        let stale: i64 = conn
            .query_one(
                "SELECT count(*) FROM digest_feed WHERE digest IS NULL AND removed_at_ms <= ?1",
                sql_params![now.unix_ms - i64::from(RETENTION) * DAY_MS],
            )
            .unwrap()
            .get(0)
            .unwrap();
        assert_eq!(stale, 0, "day {d}: removals past the retention");

        sync(conn, "S1", &mut daily);
        for (last_seen, till) in &mut tills {
            if *last_seen == d {
                sync(conn, "S1", till);
            }
        }
    }
    assert!(
        removed_ever > 4 * i64::from(RETENTION) as usize * NEW_PER_DAY as usize,
        "churn made {removed_ever} removals"
    );
    assert!(compacted_ever > 0 && compacted_ever < removed_ever);

    // What the store should see: the current digest of every card that shopped there
    // within the month, built fresh.
    let last = day(DAYS - 1);
    let since = customers_since(last, 1).unix_ms;
    let mut expected = std::collections::BTreeMap::new();
    let cards: Vec<String> = conn
        .query(
            "SELECT DISTINCT card FROM transactions WHERE card IS NOT NULL AND at_ms >= ?1",
            sql_params![since],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0).unwrap())
        .collect();
    for code in cards {
        let digest = digest_of_card(conn, MASTER, &card(&code), last)
            .unwrap()
            .expect("a current customer");
        expected.insert(key_in("S1", &code), digest);
    }
    assert!(expected.len() as i64 > 25 * NEW_PER_DAY);

    let mut fresh = Till::default();
    sync(conn, "S1", &mut fresh);
    assert_same_cache(&fresh.cache, &expected, "a new till");
    assert_same_cache(&daily.cache, &expected, "the till that synced daily");
    assert_eq!(daily.resets, 1, "only its first sync");
    let floor = compacted_through(conn, "S1").unwrap();
    for (last_seen, mut till) in tills {
        let held = till.version;
        let resets = till.resets;
        sync(conn, "S1", &mut till);
        assert_same_cache(
            &till.cache,
            &expected,
            &format!("the till last seen on day {last_seen}"),
        );
        assert_eq!(till.version, max_version(conn, "S1").unwrap());
        // Away longer than the retention (removals made after its last sync were
        // dropped): one reset more; otherwise a plain delta.
        let behind = last_seen + 1 < DAYS - 1 - i64::from(RETENTION);
        assert_eq!(
            (held < floor, till.resets - resets),
            (behind, usize::from(behind)),
            "the till last seen on day {last_seen} held v{held}, compacted through v{floor}"
        );
    }
}

/// Anna shops at S2 as well: her card's row in S2's feed.
fn anna_also_at_s2(conn: &dyn Sql) {
    conn.execute(
        "INSERT INTO transactions (store, till, seq, at_ms, offset_min, card, profile_id,
             total_cents, currency, lines)
         VALUES ('S2', 'T1', 9, ?1, 60, '4006381333931', 'p-anna', 500, 'EUR', ?2)",
        sql_params![days_ago(2), LINES],
    )
    .unwrap();
}

#[test]
fn a_till_of_one_store_cannot_find_another_stores_digests() {
    for_each_engine(|db| {
        let pooled = database(db);
        let conn: &dyn Sql = &*pooled;
        anna_also_at_s2(conn);
        refresh_all(conn, MASTER, 12, now()).unwrap();
        let s1: Vec<CardKey> = rows_after(conn, "S1", 0, 100)
            .unwrap()
            .entries
            .iter()
            .map(|e| e.card_key)
            .collect();
        let s2: Vec<CardKey> = rows_after(conn, "S2", 0, 100)
            .unwrap()
            .entries
            .iter()
            .map(|e| e.card_key)
            .collect();
        assert_eq!((s1.len(), s2.len()), (1, 3), "Anna is in both feeds");
        assert!(
            s1.iter().all(|k| !s2.contains(k)),
            "the same card has another key in every store: S1's key finds nothing in S2's feed"
        );
    });
}

#[test]
fn a_digest_holds_no_name_and_no_profile_fields_without_consent() {
    for_each_engine(|db| {
        let pooled = database(db);
        let conn: &dyn Sql = &*pooled;
        conn.batch(
            "UPDATE profiles SET birth_date = '1985-03-14', points = 70, member_since = '2019-05-01';
             INSERT INTO consents (profile_id, purpose, granted, source, at_ms)
                 VALUES ('p-anna', 'personalization', 1, 'crm', 0),
                        ('p-piet', 'personalization', 0, 'crm', 0);
             INSERT INTO segment_members (segment_id, profile_id)
                 VALUES ('vip', 'p-anna'), ('vip', 'p-piet');",
        )
        .unwrap();
        conn.execute(
            "INSERT INTO coupons (store, till, seq, campaign_id, control, code, card, profile_id,
                 customer_key, issued_at_ms, offset_min, expires, receipt_seq)
             VALUES ('S2', 'T1', 50, 'big-basket', 1, NULL, '96385074', 'p-piet', NULL, ?1, 60,
                 '2026-07-01', 2)",
            sql_params![days_ago(3)],
        )
        .unwrap();
        refresh_all(conn, MASTER, 12, now()).unwrap();
        let raw: Vec<Vec<u8>> = conn
            .query(
                "SELECT digest FROM digest_feed WHERE digest IS NOT NULL",
                sql_params![],
            )
            .unwrap()
            .iter()
            .map(|row| row.get(0).unwrap())
            .collect();
        assert_eq!(raw.len(), 3);
        for bytes in &raw {
            for name in [&b"Anna"[..], b"Piet"] {
                assert!(
                    !bytes.windows(name.len()).any(|w| w == name),
                    "a till needs no first name"
                );
            }
        }
        // Anna consented: her profile fields go to the till.
        let anna = rows_after(conn, "S1", 0, 100).unwrap().entries.remove(0);
        let anna = anna.digest.expect("Anna's digest");
        assert!(anna.personalisation_consent);
        assert_eq!((anna.points, anna.segments.len()), (70, 1));
        assert!(anna.birthday.is_some() && anna.last_visit.is_some());
        // Piet did not: only what the control group and the caps need.
        for entry in rows_after(conn, "S2", 0, 100).unwrap().entries {
            let piet = entry.digest.expect("Piet's digest");
            assert!(!piet.personalisation_consent);
            assert_eq!(piet.customer_key, derive_customer_key(MASTER, "p-piet"));
            assert_eq!(piet.caps_used.len(), 1, "caps count for him too");
            assert_eq!(
                (
                    piet.birthday,
                    piet.member_since,
                    piet.points,
                    piet.last_visit
                ),
                (None, None, 0, None)
            );
            assert!(piet.segments.is_empty());
        }
    });
}
