use till360_shared::{AgentId, Event, Timestamp};

use super::test_support::{for_each_engine, scratch_databases, Scratch};
use super::{Database, DatabaseOptions, IngestRequest, SqlStore, Store};
use crate::sql_params;
use crate::store::sql::{Sql, SqlExt};
use crate::synthetic::Generator;

fn now() -> Timestamp {
    Timestamp::from_unix_ms(1_800_000_000_000, 0)
}

fn ingest_one(store: &mut SqlStore, agent: &AgentId, events: &[Event]) -> super::IngestOutcome {
    let mut out = store
        .ingest(&[IngestRequest { agent, events }], now())
        .unwrap();
    assert_eq!(out.len(), 1);
    out.remove(0)
}

/// Till events stored (`events` and receipts' `transactions.event`).
fn stored_events(db: &dyn Sql) -> i64 {
    super::ingest::stored_event_count(db).unwrap() as i64
}

fn count(db: &dyn Sql, table: &str) -> i64 {
    db.query_one(&format!("SELECT count(*) FROM {table}"), sql_params![])
        .unwrap()
        .get(0)
        .unwrap()
}

/// The same events merged in two orders, on two fresh databases of each engine.
#[test]
fn merge_is_order_independent_across_interleavings_and_batch_sizes() {
    let agents = [
        AgentId::new("S1", "T1"),
        AgentId::new("S1", "T2"),
        AgentId::new("S2", "T1"),
    ];
    // Few cards so that the agents share customers.
    let mut gen = Generator::new(7, 25, 80);
    let streams: Vec<Vec<Event>> = agents.iter().map(|a| gen.events(a, 1, 120)).collect();

    for (first, second) in scratch_databases().into_iter().zip(scratch_databases()) {
        let engine = first.db.engine();
        let mut a = SqlStore::open(&first.db).unwrap();
        let mut b = SqlStore::open(&second.db).unwrap();

        // Order A: each agent completely, in agent order, batches of 10.
        for (agent, stream) in agents.iter().zip(&streams) {
            for batch in stream.chunks(10) {
                assert!(ingest_one(&mut a, agent, batch).is_ok(), "{engine}");
            }
        }
        // Order B: agents in reverse, interleaved batch by batch, uneven batch sizes, and
        // several agents' batches in one group commit.
        let mut cursors = [0usize; 3];
        let mut size = 1;
        while cursors.iter().zip(&streams).any(|(c, s)| *c < s.len()) {
            let mut slices = Vec::new();
            for i in (0..agents.len()).rev() {
                let stream = &streams[i];
                let end = (cursors[i] + size).min(stream.len());
                slices.push((i, cursors[i], end));
                cursors[i] = end;
            }
            let requests: Vec<IngestRequest<'_>> = slices
                .iter()
                .map(|&(i, from, to)| IngestRequest {
                    agent: &agents[i],
                    events: &streams[i][from..to],
                })
                .collect();
            for outcome in b.ingest(&requests, now()).unwrap() {
                assert!(outcome.is_ok(), "{engine}: {outcome:?}");
            }
            size = size % 17 + 3;
        }

        let profiles_a = a.profiles(usize::MAX).unwrap();
        let profiles_b = b.profiles(usize::MAX).unwrap();
        assert!(profiles_a.len() > 10, "the generator makes many profiles");
        assert_eq!(profiles_a, profiles_b, "{engine}");
        assert_eq!(a.agents().unwrap(), b.agents().unwrap(), "{engine}");
        for table in ["events", "transactions", "identifiers"] {
            assert_eq!(
                count(a.sql(), table),
                count(b.sql(), table),
                "{engine}: {table}"
            );
        }
        assert_eq!(stored_events(a.sql()), 360, "{engine}");
        // The per-day counts the ingest keeps are the receipts' own, in either order.
        let days = |db: &dyn Sql, sql: &str| -> Vec<(i64, String, String, i64, i64)> {
            db.query(sql, sql_params![])
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r.get(0).unwrap(),
                        r.get(1).unwrap(),
                        r.get(2).unwrap(),
                        r.get(3).unwrap(),
                        r.get(4).unwrap(),
                    )
                })
                .collect()
        };
        let kept = "SELECT day, store, till, receipts, revenue_cents FROM receipt_days
                    ORDER BY day, store, till";
        let counted = "SELECT at_ms / 86400000, store, till, COUNT(*),
                              CAST(SUM(total_cents) AS BIGINT)
                       FROM transactions GROUP BY at_ms / 86400000, store, till
                       ORDER BY 1, 2, 3";
        assert_eq!(days(a.sql(), kept), days(a.sql(), counted), "{engine}");
        assert_eq!(days(a.sql(), kept), days(b.sql(), kept), "{engine}");
        assert!(!days(a.sql(), kept).is_empty());
        let carded: u64 = profiles_a.iter().map(|p| p.transactions.count).sum();
        let anonymous: i64 = a
            .sql()
            .query_value(
                "SELECT count(*) FROM transactions WHERE profile_id IS NULL",
                sql_params![],
            )
            .unwrap()
            .unwrap();
        assert_eq!(
            carded as i64 + anonymous,
            count(a.sql(), "transactions"),
            "{engine}"
        );
    }
}

/// The database of `scratch` opened again, as a restarted hub opens it.
fn reopen(scratch: &Scratch) -> Database {
    Database::open(&scratch.url, &DatabaseOptions::default()).unwrap()
}

#[test]
fn high_water_survives_reopen_and_unknown_agents_start_at_zero() {
    let agent = AgentId::new("S1", "T1");
    for scratch in scratch_databases() {
        let mut gen = Generator::new(5, 10, 50);
        {
            let mut store = SqlStore::open(&scratch.db).unwrap();
            assert_eq!(store.hello(&agent, now()).unwrap(), 0);
            assert_eq!(
                ingest_one(&mut store, &agent, &gen.events(&agent, 1, 4)),
                Ok(4)
            );
        }
        let db = reopen(&scratch);
        let mut store = SqlStore::open(&db).unwrap();
        assert_eq!(store.hello(&agent, now()).unwrap(), 4);
        assert_eq!(store.hello(&AgentId::new("S2", "T1"), now()).unwrap(), 0);
        let agents = store.agents().unwrap();
        assert_eq!(agents.len(), 2);
        assert_eq!((agents[0].store.as_str(), agents[0].last_seq), ("S1", 4));
    }
}

/// A SQLite file is written ahead (WAL) and each commit is on disk before the hub
/// acknowledges it (`synchronous=FULL`), on every connection of the pool.
#[test]
fn sqlite_commits_are_durable() {
    let scratch = super::test_support::sqlite();
    let text = |sql: &str| -> String {
        let value = scratch
            .db
            .get()
            .unwrap()
            .query_one(sql, sql_params![])
            .unwrap();
        match value.get::<String>(0) {
            Ok(text) => text,
            Err(_) => value.get::<i64>(0).unwrap().to_string(),
        }
    };
    assert_eq!(text("PRAGMA journal_mode"), "wal");
    assert_eq!(text("PRAGMA synchronous"), "2", "synchronous=FULL");
}

#[test]
fn writer_serves_concurrent_agents() {
    for_each_engine(|db| {
        let store = SqlStore::open(db).unwrap();
        let (writer, thread) = super::spawn_writer(Box::new(store)).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut tasks = Vec::new();
            for t in 0..8 {
                let writer = writer.clone();
                tasks.push(tokio::spawn(async move {
                    let agent = AgentId::new("S1", format!("T{t}"));
                    let mut gen = Generator::new(t + 1, 30, 80);
                    let events = gen.events(&agent, 1, 50);
                    assert_eq!(writer.hello(agent.clone(), now()).await.unwrap(), 0);
                    for batch in events.chunks(7) {
                        let acked = batch.last().unwrap().seq;
                        let got = writer
                            .ingest(agent.clone(), batch.to_vec(), now())
                            .await
                            .unwrap();
                        assert_eq!(got, Ok(acked));
                    }
                }));
            }
            for task in tasks {
                task.await.unwrap();
            }
        });
        drop(writer);
        thread.join();
        let store = SqlStore::open(db).unwrap();
        assert_eq!(stored_events(store.sql()), 400);
        assert!(store.agents().unwrap().iter().all(|a| a.last_seq == 50));
    });
}

/// The write path on every engine (`for_each_engine`), through the engine-neutral store.
mod every_engine {
    use std::collections::BTreeSet;

    use till360_shared::wire::Refusal;
    use till360_shared::{AgentId, Event};

    use super::{now, stored_events};
    use crate::identity::{IdKind, Identifier, LinkRow};
    use crate::sql_params;
    use crate::store::sql::{transaction, Sql, SqlExt, TxKind};
    use crate::store::test_support::{for_each_engine, sqlite};
    use crate::store::{identity, Database, IngestOutcome, IngestRequest, SqlStore, Store};
    use crate::synthetic::Generator;

    fn store(db: &Database) -> SqlStore {
        SqlStore::new(db.get().unwrap())
    }

    fn ingest_one(store: &mut SqlStore, agent: &AgentId, events: &[Event]) -> IngestOutcome {
        let mut out = store
            .ingest(&[IngestRequest { agent, events }], now())
            .unwrap();
        assert_eq!(out.len(), 1);
        out.remove(0)
    }

    fn count(db: &dyn Sql, table: &str) -> i64 {
        db.query_one(&format!("SELECT count(*) FROM {table}"), sql_params![])
            .unwrap()
            .get(0)
            .unwrap()
    }

    /// Every row of the merged tables, as text: what two runs must agree on.
    fn merged_rows(db: &dyn Sql) -> Vec<String> {
        let mut rows = Vec::new();
        for select in [
            "SELECT profile_id, created_at_ms, created_offset_min FROM profiles ORDER BY 1",
            "SELECT kind, value, profile_id FROM identifiers ORDER BY 1, 2",
            "SELECT kind, value, customers FROM blocked_identifiers ORDER BY 1, 2",
            "SELECT store, till, seq, card, profile_id, total_cents FROM transactions
             ORDER BY 1, 2, 3",
        ] {
            for row in db.query(select, sql_params![]).unwrap() {
                rows.push(format!("{row:?}"));
            }
        }
        rows
    }

    #[test]
    fn replay_is_a_no_op_and_refusals_write_nothing() {
        for_each_engine(|db| {
            let agent = AgentId::new("S1", "T1");
            let mut gen = Generator::new(3, 50, 100);
            let events = gen.events(&agent, 1, 6);
            let mut store = store(db);

            assert_eq!(ingest_one(&mut store, &agent, &events[..3]), Ok(3));
            let before = merged_rows(store.sql());
            assert_eq!(ingest_one(&mut store, &agent, &events[1..3]), Ok(3));
            assert_eq!(merged_rows(store.sql()), before, "replay changed rows");
            assert_eq!(stored_events(store.sql()), 3);

            // A gap (4 missing) is refused and writes nothing but the refusal.
            let err = ingest_one(&mut store, &agent, &events[4..]).unwrap_err();
            assert_eq!(err.0, Refusal::SequenceGap);
            // Someone else's events are refused.
            let err = ingest_one(&mut store, &AgentId::new("S9", "T1"), &events[3..]).unwrap_err();
            assert_eq!(err.0, Refusal::IdentityMismatch);
            assert_eq!(stored_events(store.sql()), 3);
            assert_eq!(store.hello(&agent, now()).unwrap(), 3);
            let agents = store.agents().unwrap();
            let refused = agents.iter().find(|a| a.store == "S1").unwrap();
            assert_eq!(
                refused.last_refusal.as_ref().map(|r| r.reason.as_str()),
                Some("SequenceGap")
            );

            // Overlapping resend: 2..=6 merges only 4..=6.
            assert_eq!(ingest_one(&mut store, &agent, &events[1..]), Ok(6));
            assert_eq!(stored_events(store.sql()), 6);
        });
    }

    /// A till reconnecting to another hub while the first still commits its batches:
    /// both hubs (here: two connections, each its own store) get every batch, in
    /// overlapping order. Every event is merged exactly once and both acknowledge.
    #[test]
    fn two_hubs_committing_one_tills_batches_merge_each_event_once() {
        for_each_engine(|db| {
            let agent = AgentId::new("S1", "T1");
            let mut gen = Generator::new(11, 40, 80);
            let events = gen.events(&agent, 1, 200);
            let batches: Vec<Vec<Event>> = events.chunks(9).map(<[Event]>::to_vec).collect();
            let hubs: Vec<_> = (0..2)
                .map(|hub| {
                    let db = db.clone();
                    let agent = agent.clone();
                    let batches = batches.clone();
                    std::thread::spawn(move || {
                        let mut store = store(&db);
                        store.hello(&agent, now()).unwrap();
                        // The second hub starts a few batches behind: it resends some.
                        for batch in batches.iter().skip(hub * 3) {
                            match ingest_one(&mut store, &agent, batch) {
                                Ok(high_water) => {
                                    assert!(high_water >= batch.last().unwrap().seq)
                                }
                                // The other hub is behind this batch's start: the till
                                // resends from its high-water mark.
                                Err((Refusal::SequenceGap, _)) => {}
                                Err(other) => panic!("{other:?}"),
                            }
                        }
                    })
                })
                .collect();
            for hub in hubs {
                hub.join().unwrap();
            }
            let mut store = store(db);
            // Whatever a gap left out is resent once more, as the till would.
            let high_water = store.hello(&agent, now()).unwrap();
            let rest = &events[high_water as usize..];
            if !rest.is_empty() {
                assert_eq!(ingest_one(&mut store, &agent, rest), Ok(200));
            }
            assert_eq!(stored_events(store.sql()), 200);
            let receipts = events
                .iter()
                .filter(|e| matches!(e.kind, till360_shared::EventKind::Receipt(_)))
                .count();
            assert_eq!(count(store.sql(), "transactions"), receipts as i64);
            assert_eq!(store.agents().unwrap()[0].last_seq, 200);
        });
    }

    fn id(kind: IdKind, value: &str) -> Identifier {
        Identifier {
            kind,
            value: value.into(),
        }
    }

    /// CRM rows that share e-mails and cards, so applying them joins profiles.
    fn link_rows() -> Vec<LinkRow> {
        (0..40)
            .map(|n| {
                let mut identifiers = vec![
                    id(IdKind::CustomerNo, &format!("C{n}")),
                    id(IdKind::Email, &format!("p{}@example.nl", n / 3)),
                ];
                if n % 4 == 0 {
                    identifiers.push(id(IdKind::Phone, &format!("+3161234{:04}", n / 8)));
                }
                LinkRow {
                    key: format!("crm:C{n}"),
                    source: "crm".into(),
                    identifiers,
                    seen_at: now(),
                }
            })
            .collect()
    }

    fn apply_all(db: &dyn Sql, rows: &[LinkRow]) {
        for row in rows {
            transaction(db, TxKind::Write, |tx| {
                identity::apply_link(tx, row, 1000, now())
            })
            .unwrap();
        }
    }

    /// Two hubs applying the same identifiers at once, in opposite orders, end with the
    /// profiles one hub applying them in order makes.
    #[test]
    fn identity_merges_racing_on_two_hubs_end_as_one_hub() {
        let rows = link_rows();
        let single = sqlite();
        apply_all(&*single.db.get().unwrap(), &rows);
        let expected = merged_rows(&*single.db.get().unwrap());
        assert!(
            expected.iter().filter(|r| r.contains("p-")).count() > 40,
            "rows join"
        );
        for_each_engine(|db| {
            let hubs: Vec<_> = [false, true]
                .into_iter()
                .map(|reversed| {
                    let db = db.clone();
                    let mut rows = rows.clone();
                    if reversed {
                        rows.reverse();
                    }
                    std::thread::spawn(move || apply_all(&*db.get().unwrap(), &rows))
                })
                .collect();
            for hub in hubs {
                hub.join().unwrap();
            }
            let got = merged_rows(&*db.get().unwrap());
            assert_eq!(got, expected);
            let profiles: BTreeSet<String> = db
                .get()
                .unwrap()
                .query("SELECT profile_id FROM identifiers", sql_params![])
                .unwrap()
                .iter()
                .map(|r| r.get(0).unwrap())
                .collect();
            assert!(profiles.len() < 40, "joined: {}", profiles.len());
        });
    }

    /// A connection whose first commits lose a race (PostgreSQL's serialization failure).
    struct LosesRaces<'a> {
        inner: &'a dyn Sql,
        losses: std::cell::Cell<u32>,
    }

    impl Sql for LosesRaces<'_> {
        fn engine(&self) -> crate::store::Engine {
            self.inner.engine()
        }
        fn execute(
            &self,
            sql: &str,
            params: &[&dyn crate::store::sql::ToParam],
        ) -> Result<u64, crate::store::StoreError> {
            self.inner.execute(sql, params)
        }
        fn query_each(
            &self,
            sql: &str,
            params: &[&dyn crate::store::sql::ToParam],
            each: &mut dyn FnMut(crate::store::sql::Row) -> Result<(), crate::store::StoreError>,
        ) -> Result<(), crate::store::StoreError> {
            self.inner.query_each(sql, params, each)
        }
        fn batch(&self, sql: &str) -> Result<(), crate::store::StoreError> {
            self.inner.batch(sql)
        }
        fn begin(&self, kind: TxKind) -> Result<(), crate::store::StoreError> {
            self.inner.begin(kind)
        }
        fn commit(&self) -> Result<(), crate::store::StoreError> {
            if self.losses.get() > 0 {
                self.losses.set(self.losses.get() - 1);
                return Err(crate::store::StoreError::Database(crate::store::DbError {
                    engine: self.engine(),
                    kind: crate::store::DbErrorKind::Retry,
                    message: "could not serialize access (test)".into(),
                }));
            }
            self.inner.commit()
        }
        fn rollback(&self) -> Result<(), crate::store::StoreError> {
            self.inner.rollback()
        }
    }

    /// A commit that loses a race is run again from the start: the retry merges every
    /// event once, and what the first attempt did (profiles, counters, refusals) is gone
    /// with its rollback.
    #[test]
    fn a_commit_that_loses_a_race_is_retried_and_merges_once() {
        for_each_engine(|db| {
            let (s1, s2) = (AgentId::new("S1", "T1"), AgentId::new("S2", "T1"));
            let mut gen = Generator::new(17, 15, 90);
            let (a, b) = (gen.events(&s1, 1, 40), gen.events(&s2, 1, 40));
            let conn = db.get().unwrap();
            let flaky = LosesRaces {
                inner: &*conn,
                losses: std::cell::Cell::new(2),
            };
            let fraud = crate::config::FraudConfig::default();
            let settings = crate::store::ingest::MergeSettings {
                fraud: &fraud,
                coupon_master: None,
                suppression: None,
            };
            let requests = [
                IngestRequest {
                    agent: &s1,
                    events: &a,
                },
                // A gap: refused (and its refusal recorded) on every attempt.
                IngestRequest {
                    agent: &s2,
                    events: &b[5..],
                },
                IngestRequest {
                    agent: &s2,
                    events: &b,
                },
            ];
            let outcomes =
                crate::store::ingest::ingest(&flaky, settings, &requests, now()).unwrap();
            assert_eq!(flaky.losses.get(), 0, "both losses were retried");
            assert_eq!(outcomes[0], Ok(40));
            assert_eq!(outcomes[1].as_ref().unwrap_err().0, Refusal::SequenceGap);
            assert_eq!(outcomes[2], Ok(40));
            assert_eq!(stored_events(&*conn), 80);
            assert_eq!(count(&*conn, "agent_alerts"), 1);

            // The same batches into a database that never lost a race: the same rows.
            let once = sqlite();
            let mut store = store(&once.db);
            store.ingest(&requests, now()).unwrap();
            assert_eq!(merged_rows(&*conn), merged_rows(store.sql()));
        });
    }

    /// PostgreSQL writes a batch's rows together (its cards resolved at once, its fraud
    /// checks after its receipts): the profiles, receipts and suspicious cards are those
    /// of SQLite's row-by-row merge, batches of two tills interleaved so that later
    /// batches carry earlier sightings of known cards.
    #[test]
    fn a_batched_merge_ends_as_the_row_by_row_merge() {
        let fraud = crate::config::FraudConfig {
            max_receipts_per_day: 3,
            house_card_receipts: 4,
            ..crate::config::FraudConfig::default()
        };
        let (s1, s2) = (AgentId::new("S1", "T1"), AgentId::new("S2", "T1"));
        let mut gen = Generator::new(29, 12, 80);
        let (a, b) = (gen.events(&s1, 1, 120), gen.events(&s2, 1, 120));
        let ingest_all = |store: &mut SqlStore| {
            // Till 2's batches lag behind till 1's: its receipts are older.
            for (agent, batch) in [
                (&s1, &a[..50]),
                (&s1, &a[50..]),
                (&s2, &b[..30]),
                (&s2, &b[30..]),
            ] {
                assert_eq!(
                    ingest_one(store, agent, batch),
                    Ok(batch.last().unwrap().seq)
                );
            }
        };
        let suspicious = |db: &dyn Sql| -> Vec<String> {
            db.query(
                "SELECT card, findings FROM suspicious_cards ORDER BY card",
                sql_params![],
            )
            .unwrap()
            .iter()
            .map(|row| format!("{row:?}"))
            .collect()
        };
        let reference = sqlite();
        let mut expected = store(&reference.db);
        expected.set_fraud_config(fraud.clone());
        ingest_all(&mut expected);
        assert!(
            !suspicious(expected.conn()).is_empty(),
            "the rules flag some cards of these receipts"
        );
        for_each_engine(|db| {
            let mut store = store(db);
            store.set_fraud_config(fraud.clone());
            ingest_all(&mut store);
            assert_eq!(merged_rows(store.conn()), merged_rows(expected.conn()));
            assert_eq!(suspicious(store.conn()), suspicious(expected.conn()));
        });
    }
}
