//! The identity graph is order-independent: random link rows (CRM rows, orders) and
//! till receipts, applied in random orders into fresh stores, give identical profiles,
//! ids, identifiers, transaction counts and blocked identifiers, including when an
//! identifier gets blocked after it already joined customers (a split). On the test
//! engine (`TILL360_TEST_ENGINE`).

use std::collections::BTreeMap;

use proptest::prelude::*;
use till360_hub::identity::{IdKind, Identifier, LinkRow};
use till360_hub::sql_params;
use till360_hub::store::identity::apply_link;
use till360_hub::store::sql::{transaction, SqlExt as _, TxKind};
use till360_hub::store::{IngestRequest, SqlStore, Store};

use crate::common::engine::TestStore;
use till360_shared::card::with_check_digit;
use till360_shared::{AgentId, CardNumber, Currency, Event, EventKind, Receipt, Timestamp};

const MAX_CUSTOMERS: usize = 2;

fn now() -> Timestamp {
    Timestamp::from_unix_ms(1_768_000_000_000, 0)
}

fn card_code(i: usize) -> String {
    with_check_digit(&format!("2401{:08}", 500 + i)).unwrap()
}

fn identifier(pick: (u8, u8)) -> Identifier {
    let (kind, i) = (pick.0 % 4, usize::from(pick.1 % 5));
    match kind {
        0 => Identifier::parse(IdKind::Card, &card_code(i), 31),
        1 => Identifier::parse(IdKind::CustomerNo, &format!("C{i}"), 31),
        2 => Identifier::parse(IdKind::Email, &format!("p{i}@example.nl"), 31),
        _ => Identifier::parse(IdKind::Phone, &format!("06 1000 000{i}"), 31),
    }
    .unwrap()
}

#[derive(Debug, Clone)]
enum Input {
    Link(usize, Vec<(u8, u8)>),
    Receipt(usize, usize),
}

fn apply(store: &mut SqlStore, input: &Input) {
    match input {
        Input::Link(n, picks) => {
            let row = LinkRow {
                key: format!("crm:row{n}"),
                source: "crm".into(),
                identifiers: picks.iter().copied().map(identifier).collect(),
                seen_at: now(),
            };
            transaction(store.sql(), TxKind::Write, |tx| {
                apply_link(tx, &row, MAX_CUSTOMERS, now())
            })
            .unwrap();
        }
        Input::Receipt(n, card) => {
            // Each receipt from its own till (seq 1): any order is a valid arrival order.
            let agent = AgentId::new("S1", format!("T{n}"));
            let at = Timestamp::from_unix_ms(1_767_000_000_000 + *n as i64, 60);
            let event = Event {
                agent: agent.clone(),
                seq: 1,
                recorded_at: at,
                kind: EventKind::Receipt(Receipt {
                    receipt_no: None,
                    printed_at: None,
                    completed_at: at,
                    card: Some(CardNumber::parse(&card_code(card % 5)).unwrap()),
                    card_last4: None,
                    lines: vec![],
                    total_cents: 100,
                    currency: Currency::EUR,
                    unbalanced: false,
                    unmatched_lines: 0,
                }),
            };
            let out = store
                .ingest(
                    &[IngestRequest {
                        agent: &agent,
                        events: &[event],
                    }],
                    now(),
                )
                .unwrap();
            assert_eq!(out, vec![Ok(1)]);
        }
    }
}

/// Profiles as (id → (identifiers, transaction count)), plus blocked identifiers and
/// anonymous transactions.
type Snapshot = (
    BTreeMap<String, (Vec<(String, String)>, u64)>,
    Vec<(String, String)>,
    i64,
);

fn snapshot(store: &SqlStore) -> Snapshot {
    let conn = store.sql();
    let mut profiles = BTreeMap::new();
    for view in store.profiles(usize::MAX).unwrap() {
        let mut ids: Vec<(String, String)> = conn
            .query(
                "SELECT kind, value FROM identifiers WHERE profile_id = ?1",
                sql_params![view.profile_id],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0).unwrap(), r.get(1).unwrap()))
            .collect();
        ids.sort();
        // Every profile holds an identifier, and its id is the smallest of theirs.
        assert!(!ids.is_empty(), "empty profile {}", view.profile_id);
        let smallest = ids
            .iter()
            .map(|(k, v)| {
                Identifier {
                    kind: IdKind::parse(k).unwrap(),
                    value: v.clone(),
                }
                .profile_id()
            })
            .min()
            .unwrap();
        assert_eq!(view.profile_id, smallest);
        profiles.insert(view.profile_id.clone(), (ids, view.transactions.count));
    }
    let blocked = conn
        .query(
            "SELECT kind, value FROM blocked_identifiers ORDER BY 1, 2",
            sql_params![],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0).unwrap(), r.get(1).unwrap()))
        .collect();
    let anonymous = crate::common::count(
        conn,
        "SELECT count(*) FROM transactions WHERE profile_id IS NULL",
    );
    (profiles, blocked, anonymous)
}

fn inputs() -> impl Strategy<Value = Vec<Input>> {
    let link = prop::collection::vec((any::<u8>(), any::<u8>()), 1..4);
    let rows = prop::collection::vec(link, 1..12);
    let receipts = prop::collection::vec(0usize..5, 0..8);
    (rows, receipts).prop_map(|(rows, receipts)| {
        rows.into_iter()
            .enumerate()
            .map(|(n, picks)| Input::Link(n, picks))
            .chain(
                receipts
                    .into_iter()
                    .enumerate()
                    .map(|(n, c)| Input::Receipt(n, c)),
            )
            .collect()
    })
}

/// 48 random cases, each merged in two orders. The two databases are reused from case to
/// case, emptied before each ([`TestStore::reset`]): a PostgreSQL database per case costs
/// seconds.
#[test]
fn merges_in_random_orders_are_equal() {
    let databases = std::cell::RefCell::new([TestStore::new(), TestStore::new()]);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(48));
    let cases = (inputs(), any::<u64>(), any::<u64>());
    let outcome = runner.run(&cases, |(inputs, seed_a, seed_b)| {
        let mut databases = databases.borrow_mut();
        let mut results = Vec::new();
        for (database, seed) in databases.iter_mut().zip([seed_a, seed_b]) {
            let mut order = inputs.clone();
            shuffle(&mut order, seed);
            database.reset();
            let mut store = database.store();
            for input in &order {
                apply(&mut store, input);
            }
            // Applying everything again changes nothing.
            let first = snapshot(&store);
            for input in order.iter().filter(|i| matches!(i, Input::Link(..))) {
                apply(&mut store, input);
            }
            prop_assert_eq!(&snapshot(&store), &first);
            results.push(first);
        }
        prop_assert_eq!(&results[0], &results[1]);
        Ok(())
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}

/// Fisher–Yates with a fixed xorshift, so a failing case replays from its seed.
fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut state = seed | 1;
    for i in (1..items.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        items.swap(i, (state % (i as u64 + 1)) as usize);
    }
}

#[test]
fn an_identifier_blocked_after_it_joined_customers_splits_them_again() {
    // Rows: (C0, p0@, card0), (C1, p0@), (C2, p0@, phone0): p0@ links 3 > 2 customers.
    let rows = [
        Input::Link(0, vec![(1, 0), (2, 0), (0, 0)]),
        Input::Link(1, vec![(1, 1), (2, 0)]),
        Input::Link(2, vec![(1, 2), (2, 0), (3, 0)]),
        Input::Receipt(0, 0),
    ];
    let mut snapshots = Vec::new();
    for order in [[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2]] {
        let database = TestStore::new();
        let mut store = database.store();
        for k in order {
            apply(&mut store, &rows[k]);
        }
        let snap = snapshot(&store);
        assert_eq!(snap.0.len(), 3, "three customers again: {snap:?}");
        assert_eq!(
            snap.1,
            vec![("email".to_string(), "p0@example.nl".to_string())]
        );
        // The till receipt stays with card 0's customer.
        assert_eq!(snap.0.values().map(|p| p.1).sum::<u64>(), 1);
        snapshots.push(snap);
    }
    assert_eq!(snapshots[0], snapshots[1]);
    assert_eq!(snapshots[0], snapshots[2]);
}
