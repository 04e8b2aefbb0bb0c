//! Imports against a real database (the engine `TILL360_TEST_ENGINE` picks): CRM customers, online orders and products join
//! till profiles; bad files are not half-applied; re-imports change nothing.

use std::io::BufReader;
use std::path::Path;

use till360_hub::config::IdentityConfig;
use till360_hub::import::{self, ImportError};
use till360_hub::store::sql::{transaction, SqlExt as _, TxKind};
use till360_hub::store::{IngestRequest, ProfileQuery, Store};

use crate::common::engine::StoreOnTestDatabase;
use till360_shared::{
    AgentId, CardNumber, Currency, Event, EventKind, Receipt, ReceiptLine, Timestamp,
};

fn now() -> Timestamp {
    Timestamp::from_unix_ms(1_768_000_000_000, 0)
}

fn data(name: &str) -> BufReader<std::fs::File> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    BufReader::new(std::fs::File::open(&path).expect("test data"))
}

fn card(code: &str) -> CardNumber {
    CardNumber::parse(code).unwrap()
}

/// A receipt from its own till (seq 1), so receipts can be ingested in any order.
fn receipt(till: &str, card: Option<&str>, ms: i64, lines: &[(&str, i64)]) -> Event {
    let at = Timestamp::from_unix_ms(ms, 60);
    Event {
        agent: AgentId::new("S1", till),
        seq: 1,
        recorded_at: at,
        kind: EventKind::Receipt(Receipt {
            receipt_no: Some(format!("{till}-1")),
            printed_at: Some(at),
            completed_at: at,
            card: card.map(self::card),
            card_last4: None,
            lines: lines
                .iter()
                .map(|(desc, cents)| ReceiptLine {
                    description: desc.to_string(),
                    sku: None,
                    quantity_milli: 1000,
                    unit_cents: Some(*cents),
                    amount_cents: *cents,
                    discount: false,
                })
                .collect(),
            total_cents: lines.iter().map(|l| l.1).sum(),
            currency: Currency::EUR,
            unbalanced: false,
            unmatched_lines: 0,
        }),
    }
}

fn ingest(store: &mut StoreOnTestDatabase, event: &Event) {
    let out = store
        .ingest(
            &[IngestRequest {
                agent: &event.agent,
                events: std::slice::from_ref(event),
            }],
            now(),
        )
        .unwrap();
    assert_eq!(out, vec![Ok(1)]);
}

fn count(store: &StoreOnTestDatabase, sql: &str) -> i64 {
    crate::common::count(store.sql(), sql)
}

fn open() -> StoreOnTestDatabase {
    StoreOnTestDatabase::new()
}

#[test]
fn online_order_joins_a_till_profile_through_the_crm() {
    let cfg = IdentityConfig::default();
    let mut store = open();
    ingest(
        &mut store,
        &receipt(
            "T1",
            Some("2401000009013"),
            1_767_000_000_000,
            &[("Milk 1l", 119)],
        ),
    );
    let till_only = store
        .profile_by_card(&card("2401000009013"))
        .unwrap()
        .unwrap();
    assert_eq!(till_only.channels.online.count, 0);

    let p = import::products(store.sql(), data("products.csv"), now()).unwrap();
    assert_eq!((p.read, p.inserted), (4, 4));
    // The order names only an e-mail: before the CRM knows it, it is a profile of its own.
    let o = import::orders(store.sql(), data("orders.jsonl"), &cfg, None, now()).unwrap();
    assert_eq!((o.read, o.inserted, o.unchanged), (3, 2, 1), "{o}");
    assert_eq!(count(&store, "SELECT count(*) FROM orders"), 2);
    let c = import::customers(store.sql(), data("customers.csv"), &cfg, None, now()).unwrap();
    assert_eq!(c.read, 3);
    assert!(c.rejected.is_empty() && c.blocked.is_empty(), "{c}");

    let anna = store
        .profile_by_card(&card("2401000009013"))
        .unwrap()
        .unwrap();
    assert_eq!(anna.customer_no.as_deref(), Some("C001"));
    assert_eq!(anna.identity.emails, vec!["anna.devries@example.nl"]);
    assert_eq!(anna.identity.phones, vec!["+31612345678"]);
    assert_eq!(anna.personal.first_name.as_deref(), Some("Anna"));
    assert_eq!(anna.personal.birth_date.as_deref(), Some("1985-03-14"));
    assert_eq!(anna.loyalty.member_since.as_deref(), Some("2019-05-01"));
    assert_eq!(anna.channels.store.count, 1);
    assert_eq!(anna.channels.online.count, 1);
    assert_eq!(anna.channels.online.total_cents, 8999);
    assert_eq!(anna.transactions.count, 1);
    assert_eq!(anna.timeline.len(), 2);
    assert_eq!(anna.timeline[0].kind, "order", "newest first");
    assert_eq!(anna.timeline[0].lines[0].description, "Running shoes");
    let consent = &anna.consents["email"];
    assert!(consent.granted);
    assert_eq!(consent.source, "crm");
    assert!(!anna.consents["sms"].granted);
    assert!(anna.consents["personalization"].granted);
    // Categories: by sku (shoes) and by description, case-insensitive (milk).
    let cats: Vec<(&str, i64)> = anna
        .categories
        .iter()
        .map(|c| (c.category.as_str(), c.spend_cents))
        .collect();
    assert_eq!(cats, vec![("sports", 8999), ("dairy", 119)]);
    // The merged id is the smallest over its identifiers, and no stray profile is left.
    let ids = [
        till360_hub::identity::Identifier::parse(
            till360_hub::identity::IdKind::Card,
            "2401000009013",
            31,
        )
        .unwrap(),
        till360_hub::identity::Identifier::parse(
            till360_hub::identity::IdKind::Email,
            "anna.devries@example.nl",
            31,
        )
        .unwrap(),
        till360_hub::identity::Identifier::parse(
            till360_hub::identity::IdKind::CustomerNo,
            "C001",
            31,
        )
        .unwrap(),
        till360_hub::identity::Identifier::parse(
            till360_hub::identity::IdKind::Phone,
            "+31612345678",
            31,
        )
        .unwrap(),
    ];
    let smallest = ids.iter().map(|i| i.profile_id()).min().unwrap();
    assert_eq!(anna.profile_id, smallest);
    assert_eq!(count(&store, "SELECT count(*) FROM profiles"), 3);

    // A sensitive product's category never shows.
    let sofie = store
        .search(&ProfileQuery::CustomerNo(" C003 ".into()), 10)
        .unwrap();
    assert_eq!(sofie.len(), 1);
    let cats: Vec<&str> = sofie[0]
        .categories
        .iter()
        .map(|c| c.category.as_str())
        .collect();
    assert_eq!(cats, vec!["sports"]);
}

#[test]
fn search_normalises_identifiers_and_matches_name_prefixes() {
    let cfg = IdentityConfig::default();
    let store = open();
    import::customers(store.sql(), data("customers.csv"), &cfg, None, now()).unwrap();
    let ids = |q: ProfileQuery| -> Vec<Option<String>> {
        store
            .search(&q, 10)
            .unwrap()
            .into_iter()
            .map(|p| p.customer_no)
            .collect()
    };
    let c1 = vec![Some("C001".to_string())];
    assert_eq!(
        ids(ProfileQuery::Email("ANNA.devries@example.nl ".into())),
        c1
    );
    assert_eq!(ids(ProfileQuery::Phone("+31 6 1234 5678".into())), c1);
    assert_eq!(ids(ProfileQuery::Phone("0612345678".into())), c1);
    assert_eq!(ids(ProfileQuery::Card("2401000009013".into())), c1);
    assert_eq!(ids(ProfileQuery::CustomerNo("C001".into())), c1);
    assert_eq!(ids(ProfileQuery::NamePrefix("ann".into())), c1);
    assert_eq!(
        ids(ProfileQuery::NamePrefix("JANS".into())),
        vec![Some("C002".to_string())]
    );
    assert!(ids(ProfileQuery::NamePrefix("%".into())).is_empty());
    assert!(ids(ProfileQuery::Card("1234".into())).is_empty());
    assert!(ids(ProfileQuery::Email("nobody@example.nl".into())).is_empty());
}

#[test]
fn reimport_changes_nothing() {
    let cfg = IdentityConfig::default();
    let store = open();
    let conn = store.sql();
    import::products(conn, data("products.csv"), now()).unwrap();
    import::customers(conn, data("customers.csv"), &cfg, None, now()).unwrap();
    import::orders(conn, data("orders.jsonl"), &cfg, None, now()).unwrap();
    let snapshot = |store: &StoreOnTestDatabase| -> String {
        let mut out = String::new();
        for table in ["profiles", "identifiers", "consents", "orders", "products"] {
            let rows = store
                .sql()
                .query(&format!("SELECT * FROM {table} ORDER BY 1, 2"), &[])
                .unwrap();
            for row in rows {
                out.push_str(&format!("{row:?}"));
                out.push('\n');
            }
        }
        out
    };
    let before = snapshot(&store);
    let later = Timestamp::from_unix_ms(now().unix_ms + 86_400_000, 0);
    let conn = store.sql();
    let c = import::customers(conn, data("customers.csv"), &cfg, None, later).unwrap();
    assert_eq!(
        (c.read, c.unchanged, c.inserted, c.updated, c.merged),
        (3, 3, 0, 0, 0)
    );
    let o = import::orders(conn, data("orders.jsonl"), &cfg, None, later).unwrap();
    assert_eq!((o.unchanged, o.inserted), (3, 0));
    let p = import::products(conn, data("products.csv"), later).unwrap();
    assert_eq!((p.unchanged, p.inserted, p.updated), (4, 0, 0));
    assert_eq!(snapshot(&store), before);
}

#[test]
fn a_bad_line_is_reported_with_its_number_and_nothing_is_applied() {
    let cfg = IdentityConfig::default();
    let store = open();
    let err = import::customers(
        store.sql(),
        data("customers_bad_line7.csv"),
        &cfg,
        None,
        now(),
    )
    .unwrap_err();
    let ImportError::Rejected(summary) = err else {
        panic!("expected a rejection, got {err}");
    };
    assert_eq!(summary.read, 7);
    assert_eq!(summary.rejected.len(), 1);
    assert_eq!(summary.rejected[0].line, 7);
    assert!(
        summary.rejected[0].reason.contains("birth_date"),
        "{summary}"
    );
    for table in ["profiles", "identifiers", "consents", "identity_links"] {
        assert_eq!(
            count(&store, &format!("SELECT count(*) FROM {table}")),
            0,
            "{table}"
        );
    }
    // A bad order line and a bad product line are rejected the same way.
    let orders = "{\"order_id\":\"A\",\"email\":\"a@b.nl\",\"ordered_at\":\"2026-01-01T00:00:00Z\",\"channel\":\"web\",\"lines\":[],\"total_cents\":0,\"currency\":\"EUR\"}\n{\"order_id\":\"B\",\"ordered_at\":\"2026-01-01T00:00:00Z\",\"channel\":\"web\",\"lines\":[],\"total_cents\":0,\"currency\":\"EUR\"}\nnot json\n";
    let err = import::orders(store.sql(), orders.as_bytes(), &cfg, None, now()).unwrap_err();
    let ImportError::Rejected(summary) = err else {
        panic!("expected a rejection");
    };
    let lines: Vec<u64> = summary.rejected.iter().map(|r| r.line).collect();
    assert_eq!(lines, vec![2, 3]);
    assert_eq!(count(&store, "SELECT count(*) FROM orders"), 0);
    let products = "sku,description,category,sensitive\nA,a,x,no\nB,b,y,maybe\n";
    let err = import::products(store.sql(), products.as_bytes(), now()).unwrap_err();
    assert!(
        matches!(&err, ImportError::Rejected(s) if s.rejected[0].line == 3),
        "{err}"
    );
    assert_eq!(count(&store, "SELECT count(*) FROM products"), 0);
}

#[test]
fn a_junk_email_shared_by_five_customers_is_blocked() {
    let cfg = IdentityConfig::default();
    assert_eq!(cfg.max_customers_per_identifier, 3);
    let store = open();
    let s = import::customers(
        store.sql(),
        data("customers_junk_email.csv"),
        &cfg,
        None,
        now(),
    )
    .unwrap();
    assert_eq!(s.blocked.len(), 1, "{s}");
    assert_eq!(
        (s.blocked[0].kind.as_str(), s.blocked[0].value.as_str()),
        ("email", "info@junk.example")
    );
    assert_eq!(s.blocked[0].customers, 4);
    // Every customer keeps a profile of their own (their other identifiers still merge).
    assert_eq!(count(&store, "SELECT count(*) FROM profiles"), 5);
    for (no, code) in [
        ("C101", "2401000009044"),
        ("C103", "2401000009068"),
        ("C105", "2401000009082"),
    ] {
        let p = store.profile_by_card(&card(code)).unwrap().unwrap();
        assert_eq!(p.customer_no.as_deref(), Some(no));
        assert_eq!(p.identity.customer_no, vec![no]);
        assert!(p.identity.emails.is_empty());
    }
    let blocked = store.blocked_identifiers().unwrap();
    assert_eq!(blocked.len(), 1);
    assert_eq!(blocked[0].customers, 5);
    assert!(store
        .search(&ProfileQuery::Email("info@junk.example".into()), 10)
        .unwrap()
        .is_empty());
    // An order by the junk e-mail alone is anonymous; with a card it joins that card.
    let orders = "{\"order_id\":\"J1\",\"email\":\"info@junk.example\",\"ordered_at\":\"2026-01-01T00:00:00Z\",\"channel\":\"web\",\"lines\":[],\"total_cents\":100,\"currency\":\"EUR\"}\n{\"order_id\":\"J2\",\"email\":\"info@junk.example\",\"card\":\"2401000009051\",\"ordered_at\":\"2026-01-01T00:00:00Z\",\"channel\":\"web\",\"lines\":[],\"total_cents\":200,\"currency\":\"EUR\"}\n";
    import::orders(store.sql(), orders.as_bytes(), &cfg, None, now()).unwrap();
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM orders WHERE profile_id IS NULL"
        ),
        1
    );
    let c102 = store
        .profile_by_card(&card("2401000009051"))
        .unwrap()
        .unwrap();
    assert_eq!(c102.channels.online.total_cents, 200);
}

#[test]
fn a_replaced_card_stays_in_the_same_profile() {
    let cfg = IdentityConfig::default();
    let mut store = open();
    // Receipts on the old card, then on the new one, before the CRM knows either.
    ingest(
        &mut store,
        &receipt(
            "T1",
            Some("2401000009020"),
            1_767_000_000_000,
            &[("Bread", 249)],
        ),
    );
    ingest(
        &mut store,
        &receipt(
            "T2",
            Some("2401000009037"),
            1_767_100_000_000,
            &[("Cheese", 389)],
        ),
    );
    assert_eq!(count(&store, "SELECT count(*) FROM profiles"), 2);
    import::customers(store.sql(), data("customers.csv"), &cfg, None, now()).unwrap();
    let old = store
        .profile_by_card(&card("2401000009020"))
        .unwrap()
        .unwrap();
    let new = store
        .profile_by_card(&card("2401000009037"))
        .unwrap()
        .unwrap();
    assert_eq!(old.profile_id, new.profile_id);
    assert_eq!(old.cards, vec!["2401000009020", "2401000009037"]);
    assert_eq!(old.transactions.count, 2);
    assert_eq!(
        old.personal.first_name.as_deref(),
        Some("Piet, Jr."),
        "CSV quoting"
    );
    // Later receipts on either card land there too.
    ingest(
        &mut store,
        &receipt(
            "T3",
            Some("2401000009020"),
            1_767_200_000_000,
            &[("Bread", 249)],
        ),
    );
    let p = store
        .profile_by_card(&card("2401000009037"))
        .unwrap()
        .unwrap();
    assert_eq!(p.transactions.count, 3);
    assert_eq!(count(&store, "SELECT count(*) FROM profiles"), 3);
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM transactions WHERE profile_id IS NULL"
        ),
        0
    );
}

#[test]
fn an_erased_card_merges_as_anonymous_for_events_before_the_erasure() {
    let mut store = open();
    store.set_coupon_master(&[7; 32]).unwrap();
    let k = card("2401000009044");
    // In a transaction, as the erase does (PostgreSQL locks the log's table in it).
    transaction(store.sql(), TxKind::Write, |db| {
        till360_hub::store::erasures::record_erasure(
            db,
            &till360_hub::store::erasures::Suppression::from_master(&[7; 32]),
            &[till360_hub::identity::Identifier::card(&k)],
            &[],
            now(),
        )
    })
    .unwrap();
    ingest(
        &mut store,
        &receipt(
            "T1",
            Some(k.as_str()),
            now().unix_ms - 1000,
            &[("Bread", 249)],
        ),
    );
    assert!(store.profile_by_card(&k).unwrap().is_none());
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM transactions WHERE card IS NULL AND profile_id IS NULL"
        ),
        1
    );
    // A later use of the card (the person signed up again) makes a new profile.
    ingest(
        &mut store,
        &receipt(
            "T2",
            Some(k.as_str()),
            now().unix_ms + 1000,
            &[("Bread", 249)],
        ),
    );
    assert_eq!(
        store
            .profile_by_card(&k)
            .unwrap()
            .unwrap()
            .transactions
            .count,
        1
    );
}

/// A web-only customer known by a customer number from the orders alone gets it on
/// the profile, so `traits export` names them.
#[test]
fn an_order_carrying_a_customer_number_gives_it_to_the_profile() {
    let store = open();
    let orders = "{\"order_id\":\"W-9001\",\"customer_no\":\"C-0777\",\"ordered_at\":\"2026-01-11T09:00:00Z\",\
        \"channel\":\"web\",\"lines\":[{\"description\":\"Tea\",\"qty\":1,\"amount_cents\":450}],\
        \"total_cents\":450,\"currency\":\"EUR\"}\n\
        {\"order_id\":\"W-9002\",\"email\":\"web.only@example.com\",\"customer_no\":\"C-0778\",\
        \"ordered_at\":\"2026-01-12T09:00:00Z\",\"channel\":\"web\",\
        \"lines\":[{\"description\":\"Cup\",\"qty\":1,\"amount_cents\":900}],\
        \"total_cents\":900,\"currency\":\"EUR\"}\n";
    import::orders(
        store.sql(),
        orders.as_bytes(),
        &IdentityConfig::default(),
        None,
        now(),
    )
    .unwrap();
    let numbers: Vec<Option<String>> = store
        .sql()
        .query("SELECT customer_no FROM profiles ORDER BY customer_no", &[])
        .unwrap()
        .iter()
        .map(|row| row.get(0).unwrap())
        .collect();
    assert_eq!(
        numbers,
        vec![Some("C-0777".to_string()), Some("C-0778".to_string())]
    );
    let mut csv = Vec::new();
    till360_hub::jobs::export_csv_with_segments(
        store.sql(),
        &Default::default(),
        &[],
        chrono::NaiveDate::from_ymd_opt(2026, 1, 31).unwrap(),
        90,
        &mut csv,
    )
    .unwrap();
    let csv = String::from_utf8(csv).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{csv}");
    let mut exported: Vec<&str> = rows.iter().filter_map(|r| r.split(',').nth(1)).collect();
    exported.sort();
    assert_eq!(exported, ["C-0777", "C-0778"], "{csv}");
}

const ERIKA_CRM: &str = "customer_no,first_name,last_name,email,phone,birth_date,postal_code,\
member_since,cards,language,consent_email,consent_sms,consent_post,consent_personalization\n\
C900,Erika,Muster,erika@example.com,06 1111 2222,1980-01-02,1000 AA,2019-05-01,2401000009051,nl,yes,no,no,yes\n";

/// Erika's CRM row, an order and a receipt; then she is erased. An old CRM file, an
/// order feed and a replayed till event (all dated before the erase) must not bring
/// her back: skipped and counted as suppressed. Signing up again afterwards (a CRM row
/// whose `member_since` is on or after the erase, with a consent given) makes a new
/// profile.
#[test]
fn an_old_crm_file_an_order_feed_or_a_replayed_event_do_not_bring_an_erased_person_back() {
    let cfg = IdentityConfig::default();
    let mut store = open();
    store.set_coupon_master(&[7; 32]).unwrap();
    let suppression = till360_hub::store::erasures::Suppression::from_master(&[7; 32]);
    let erika = card("2401000009051");
    let c = import::customers(
        store.sql(),
        ERIKA_CRM.as_bytes(),
        &cfg,
        Some(&suppression),
        now(),
    )
    .unwrap();
    assert_eq!(c.inserted, 1);
    let id = store.profile_by_card(&erika).unwrap().unwrap().profile_id;
    let erased_at = Timestamp::from_unix_ms(now().unix_ms + 86_400_000, 0);
    store
        .erase_profile(&id, erased_at)
        .unwrap()
        .expect("erased");

    let later = Timestamp::from_unix_ms(erased_at.unix_ms + 86_400_000, 0);
    let again = import::customers(
        store.sql(),
        ERIKA_CRM.as_bytes(),
        &cfg,
        Some(&suppression),
        later,
    )
    .unwrap();
    assert_eq!((again.read, again.inserted, again.suppressed), (1, 0, 1));
    assert!(again.to_string().contains("suppressed 1"), "{again}");
    let order = "{\"order_id\":\"W-9\",\"email\":\"Erika@Example.com\",\
                 \"ordered_at\":\"2026-01-09T10:00:00Z\",\"channel\":\"web\",\"lines\":[{\"description\":\"Mug\",\
                 \"qty\":1,\"amount_cents\":900}],\"total_cents\":900,\"currency\":\"EUR\"}\n";
    let o = import::orders(
        store.sql(),
        order.as_bytes(),
        &cfg,
        Some(&suppression),
        later,
    )
    .unwrap();
    assert_eq!(
        (o.inserted, o.suppressed),
        (1, 1),
        "kept, without the person"
    );
    // A till that was offline since before the erase sends her receipt now.
    ingest(
        &mut store,
        &receipt(
            "T7",
            Some(erika.as_str()),
            now().unix_ms + 1000,
            &[("Tea", 300)],
        ),
    );
    assert!(store.profile_by_card(&erika).unwrap().is_none());
    // Counted for the till that sent it, as an import counts its rows.
    let agents = store.agents().unwrap();
    let t7 = agents.iter().find(|a| a.till == "T7").expect("T7 listed");
    assert_eq!(t7.suppressed_events, 1, "{t7:?}");
    let card_bytes = erika.as_str().as_bytes();
    let raw = store
        .sql()
        .query(
            "SELECT payload FROM events
             UNION ALL SELECT event FROM transactions WHERE event IS NOT NULL",
            &[],
        )
        .unwrap()
        .iter()
        .filter(|row| {
            let payload: Vec<u8> = row.get(0).unwrap();
            payload.windows(card_bytes.len()).any(|w| w == card_bytes)
        })
        .count();
    assert_eq!(raw, 0, "the stored event does not keep the card either");
    // Without the key an import cannot tell: it refuses rather than bring her back.
    let blind = import::customers(store.sql(), ERIKA_CRM.as_bytes(), &cfg, None, later);
    assert!(blind.is_err(), "{blind:?}");
    for sql in [
        "SELECT count(*) FROM profiles",
        "SELECT count(*) FROM identifiers",
        "SELECT count(*) FROM orders WHERE profile_id IS NOT NULL",
        "SELECT count(*) FROM transactions WHERE card IS NOT NULL",
    ] {
        assert_eq!(count(&store, sql), 0, "{sql}");
    }

    // She signs up again after the erase, with fresh consent: a new profile.
    let signup = ERIKA_CRM.replace("2019-05-01", "2026-01-12");
    let new = import::customers(
        store.sql(),
        signup.as_bytes(),
        &cfg,
        Some(&suppression),
        later,
    )
    .unwrap();
    assert_eq!((new.inserted, new.suppressed), (1, 0));
    let profile = store
        .profile_by_card(&erika)
        .unwrap()
        .expect("a new profile");
    assert_eq!(
        profile.transactions.count, 0,
        "nothing from before the erase"
    );
}
