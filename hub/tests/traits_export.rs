//! Traits export and recompute against a hub database of the test engine (`TILL360_TEST_ENGINE`).

use chrono::{NaiveDate, TimeZone, Utc};
use till360_hub::config::HubConfig;
use till360_hub::jobs::{export_csv, export_csv_with_segments, recompute, CSV_HEADER};
use till360_hub::segments::compile;
use till360_hub::sql_params;
use till360_hub::store::sql::{Sql, SqlExt as _};
use till360_hub::store::Pooled;

use crate::common::engine::TestStore;
use till360_shared::{codec, ReceiptLine, Timestamp};

const SEGMENTS: &str = r#"
[[segment]]
id = "wine-lovers"
where = ["category = wine"]
[[segment]]
id = "health"
where = ["category = health"]
[[segment]]
id = "mailable"
where = ["consent.email = true"]
"#;

fn config(dir: &std::path::Path) -> HubConfig {
    let text = format!(
        "data_dir = \"data\"\nlisten = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\nca = \"ca.pem\"\ncert = \"hub.pem\"\nkey = \"hub.key\"\n[traits]\nhorizon_days = 90\nmargin_percent = 40.0\n{SEGMENTS}"
    );
    HubConfig::from_toml_str(&text, dir.join("hub.toml")).unwrap()
}

/// Local wall time `y-m-d h:min` at `offset_min` east of UTC, as stored (UTC ms).
fn at(y: i32, m: u32, d: u32, h: u32, min: u32, offset_min: i64) -> i64 {
    Utc.with_ymd_and_hms(y, m, d, h, min, 0)
        .unwrap()
        .timestamp_millis()
        - offset_min * 60_000
}

fn line(sku: Option<&str>, description: &str, cents: i64, discount: bool) -> ReceiptLine {
    ReceiptLine {
        description: description.into(),
        sku: sku.map(str::to_string),
        quantity_milli: 1000,
        unit_cents: None,
        amount_cents: cents,
        discount,
    }
}

/// A connection to a fresh database of the test engine (dropped before the database).
struct Hub {
    conn: Pooled,
    config: HubConfig,
    _database: TestStore,
}

impl Hub {
    fn sql(&self) -> &dyn Sql {
        &*self.conn
    }
}

fn hub() -> Hub {
    let database = TestStore::new();
    let conn = database.db.get().unwrap();
    let seq = std::cell::Cell::new(0);
    let receipt = |profile: &str, store: &str, at_ms: i64, offset: i64, lines: Vec<ReceiptLine>| {
        seq.set(seq.get() + 1);
        let total: i64 = lines.iter().map(|l| l.amount_cents).sum();
        conn.execute(
            "INSERT INTO transactions (store, till, seq, receipt_no, at_ms, offset_min, card,
                 profile_id, total_cents, currency, lines)
             VALUES (?1, 'T1', ?2, NULL, ?3, ?4, NULL, ?5, ?6, 'EUR', ?7)",
            sql_params![
                store,
                seq.get(),
                at_ms,
                offset,
                profile,
                total,
                codec::to_bytes(&lines).unwrap()
            ],
        )
        .unwrap();
    };
    for (id, no) in [
        ("p1", Some("C1")),
        ("p2", Some("C2, \"the\" second")),
        ("p3", None),
        ("p4", Some("C4")),
    ] {
        conn.execute(
            "INSERT INTO profiles (profile_id, created_at_ms, created_offset_min, customer_no)
             VALUES (?1, 0, 0, ?2)",
            sql_params![id, no],
        )
        .unwrap();
    }
    for (card, id) in [
        ("2000000000028", "p1"),
        ("2000000000011", "p1"),
        ("2000000000035", "p2"),
    ] {
        conn.execute(
            "INSERT INTO identifiers (kind, value, profile_id, source, added_at_ms)
             VALUES ('card', ?1, ?2, 'till', 0)",
            sql_params![card, id],
        )
        .unwrap();
    }
    conn.batch(
        "INSERT INTO products (sku, description, category, sensitive) VALUES
             ('111', 'Rioja', 'wine', 0), ('222', 'Condoms', 'health', 1), ('333', 'Gouda', 'cheese', 0);",
    )
    .unwrap();
    let wine = || {
        vec![
            line(Some("111"), "Rioja", 1000, false),
            line(Some("111"), "Korting", -200, true),
        ]
    };
    // p1: Jan 5, Jan 12 (twice), Jan 31 23:30 local (+01:00; still Jan 31), then
    // Feb 1 00:30 local (UTC still Jan 31) and Feb 5: after an as-of of Jan 31.
    receipt("p1", "S001", at(2026, 1, 5, 10, 0, 60), 60, wine());
    receipt(
        "p1",
        "S001",
        at(2026, 1, 12, 10, 0, 60),
        60,
        vec![line(None, "gouda", 500, false)],
    );
    receipt(
        "p1",
        "S002",
        at(2026, 1, 12, 17, 0, 60),
        60,
        vec![line(None, "gouda", 700, false)],
    );
    receipt("p1", "S001", at(2026, 1, 31, 23, 30, 60), 60, wine());
    receipt("p1", "S001", at(2026, 2, 1, 0, 30, 60), 60, wine());
    receipt("p1", "S001", at(2026, 2, 5, 12, 0, 60), 60, wine());
    // p2: a sensitive purchase at the till and an online order.
    receipt(
        "p2",
        "S002",
        at(2026, 1, 20, 9, 0, 60),
        60,
        vec![line(Some("222"), "Condoms", 900, false)],
    );
    conn.execute(
        "INSERT INTO orders (order_id, profile_id, ordered_at_ms, offset_min, channel, total_cents, currency, lines)
         VALUES ('o1', 'p2', ?1, 60, 'web', 1500, 'EUR', ?2)",
        sql_params![
            at(2026, 1, 25, 20, 0, 60),
            r#"[{"sku":"333","description":"Gouda","qty":3,"unit_cents":600,"amount_cents":1500}]"#
        ],
    )
    .unwrap();
    // p4 buys only after the as-of date; an anonymous receipt belongs to nobody.
    receipt("p4", "S001", at(2026, 2, 20, 9, 0, 60), 60, wine());
    conn.execute(
        "INSERT INTO transactions (store, till, seq, at_ms, offset_min, total_cents, currency, lines)
         VALUES ('S009', 'T1', 999, ?1, 0, 5000, 'EUR', ?2)",
        sql_params![at(2026, 1, 10, 9, 0, 0), codec::to_bytes(&Vec::<ReceiptLine>::new()).unwrap()],
    )
    .unwrap();
    for (id, granted, at_ms) in [
        ("p1", 1, at(2026, 1, 10, 0, 0, 0)),
        ("p2", 1, at(2026, 2, 10, 0, 0, 0)),
    ] {
        conn.execute(
            "INSERT INTO consents (profile_id, purpose, granted, source, at_ms)
             VALUES (?1, 'email', ?2, 'crm', ?3)",
            sql_params![id, granted, at_ms],
        )
        .unwrap();
    }
    let config = config(database.dir.path());
    Hub {
        conn,
        config,
        _database: database,
    }
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn export(hub: &Hub, as_of: NaiveDate) -> (String, till360_hub::jobs::ExportSummary) {
    let segments = compile(&hub.config.segments).unwrap();
    let mut out = Vec::new();
    let summary = export_csv_with_segments(
        hub.sql(),
        &hub.config.traits,
        &segments,
        as_of,
        90,
        &mut out,
    )
    .unwrap();
    (String::from_utf8(out).unwrap(), summary)
}

/// Splits one CSV record (RFC 4180 quoting).
fn cells(record: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let (mut quoted, mut chars) = (false, record.chars().peekable());
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                out.last_mut().unwrap().push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(String::new()),
            (c, _) => out.last_mut().unwrap().push(c),
        }
    }
    out
}

fn is_decimal4(cell: &str) -> bool {
    cell.split_once('.')
        .is_some_and(|(i, f)| i.parse::<i64>().is_ok() && f.len() == 4 && f.parse::<u32>().is_ok())
}

#[test]
fn export_is_point_in_time_with_lifetimes_conventions() {
    let hub = hub();
    let (csv, summary) = export(&hub, date(2026, 1, 31));
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], CSV_HEADER);
    assert_eq!(
        CSV_HEADER,
        "profile_id,customer_no,cards,frequency,recency_days,t_days,monetary_cents,rfm,p_alive,expected_purchases,clv_cents,churn_risk,segments,provisional,p_alive_low,p_alive_high,expected_purchases_low,expected_purchases_high,clv_cents_low,clv_cents_high"
    );
    assert_eq!(
        lines.len(),
        3,
        "p1 and p2 only (p3 never bought, p4 later): {csv}"
    );
    assert_eq!(summary.customers, 2);

    // Past the profile id, which has its own test.
    let data = |line: &str| cells(line)[1..].to_vec();
    let p1 = data(lines[1]);
    assert_eq!(p1.len(), 19);
    // Two customers cannot support a fit: the population defaults, said so.
    assert_eq!(p1[12], "1", "provisional");
    let why = summary.models.provisional.as_deref().unwrap_or_default();
    assert!(why.contains("2 customers"), "{why}");
    assert!(summary.models.notes.iter().any(|n| n == why));
    assert_eq!(p1[0], "C1");
    assert_eq!(p1[1], "2000000000011;2000000000028");
    // Days Jan 5, Jan 12, Jan 31 (local): two repeat days; Jan 12 spent 1200, Jan 31 800.
    assert_eq!(&p1[2..5], ["2", "26", "26"]);
    // Money leaves the hub in whole cents, model outputs with four decimals.
    assert_eq!(p1[5], "1000");
    assert_eq!(p1[6].len(), 3);
    for cell in [&p1[7], &p1[8], &p1[10]] {
        assert!(is_decimal4(cell), "{cell:?} in {p1:?}");
    }
    assert!(p1[9].parse::<i64>().is_ok(), "clv_cents {:?}", p1[9]);
    let (p_alive, churn): (f64, f64) = (p1[7].parse().unwrap(), p1[10].parse().unwrap());
    assert!((p_alive + churn - 1.0).abs() < 2e-4);
    // Provisional traits come with the prior's wide intervals around the value.
    let number = |i: usize| -> f64 { p1[i].parse().unwrap_or_else(|_| panic!("{i}: {p1:?}")) };
    let (expected, clv) = (number(8), number(9));
    assert!(number(13) <= p_alive && p_alive <= number(14), "{p1:?}");
    assert!(number(15) < expected && expected < number(16), "{p1:?}");
    assert!(number(17) <= clv && clv <= number(18), "{p1:?}");
    assert!(
        p1[17].parse::<i64>().is_ok() && is_decimal4(&p1[13]),
        "{p1:?}"
    );
    // Consent given Jan 10 counts; the e-mail consent of p2 (Feb 10) does not yet.
    assert_eq!(p1[11], "wine-lovers;mailable");

    let p2 = data(lines[2]);
    assert!(
        lines[2].starts_with("p2,\"C2, \"\"the\"\" second\","),
        "{}",
        lines[2]
    );
    assert_eq!(p2[0], "C2, \"the\" second");
    assert_eq!(&p2[2..5], ["1", "5", "11"]);
    assert_eq!(p2[11], "", "a sensitive category never makes a segment");

    // A month later the February purchases and p2's consent count.
    let (csv, summary) = export(&hub, date(2026, 2, 28));
    assert_eq!(summary.customers, 3);
    let rows: Vec<Vec<String>> = csv.lines().skip(1).map(data).collect();
    assert_eq!(&rows[0][2..5], ["4", "31", "54"]);
    assert_eq!(rows[1][11], "mailable");
    assert_eq!(rows[2][0], "C4");
    assert_eq!(&rows[2][2..5], ["0", "0", "8"]);
}

/// Every row names its profile; a text cell a spreadsheet would run as a formula is
/// neutralised, numbers are left as they are.
#[test]
fn export_rows_carry_profile_id_and_formulas_are_neutralised() {
    let hub = hub();
    hub.sql()
        .execute(
            "UPDATE profiles SET customer_no = '=cmd|'' /C calc''!A0' WHERE profile_id = 'p1'",
            sql_params![],
        )
        .unwrap();
    let (csv, _) = export(&hub, date(2026, 1, 31));
    let lines: Vec<&str> = csv.lines().collect();
    let header = cells(lines[0]);
    for column in [
        "profile_id",
        "customer_no",
        "expected_purchases",
        "p_alive",
        "clv_cents",
    ] {
        assert!(header.iter().any(|h| h == column), "{column} in {header:?}");
    }
    let at = |name: &str| header.iter().position(|h| h == name).unwrap();
    let p1 = cells(lines[1]);
    assert_eq!(p1[at("profile_id")], "p1");
    assert_eq!(p1[at("customer_no")], "'=cmd|' /C calc'!A0");
    assert_eq!(cells(lines[2])[at("profile_id")], "p2");
}

#[test]
fn export_before_any_purchase_is_just_the_header() {
    let hub = hub();
    let (csv, summary) = export(&hub, date(2025, 12, 31));
    assert_eq!(csv, format!("{CSV_HEADER}\n"));
    assert_eq!(summary.customers, 0);
    assert!(summary.models.bgnbd.is_none() && !summary.models.notes.is_empty());
}

#[test]
fn recompute_replaces_traits_and_segments_in_one_go() {
    let hub = hub();
    let now = Timestamp::from_unix_ms(at(2026, 3, 1, 12, 0, 0), 0);
    let first = recompute(hub.sql(), &hub.config, now).unwrap();
    assert_eq!(first.profiles, 4, "every profile gets a traits row");
    assert_eq!(
        first.segments,
        vec![
            ("wine-lovers".to_string(), 2),
            ("health".to_string(), 0),
            ("mailable".to_string(), 2)
        ]
    );
    let count = |conn: &dyn Sql, table: &str| -> i64 {
        crate::common::count(conn, &format!("SELECT count(*) FROM {table}"))
    };
    assert_eq!(count(hub.sql(), "profile_traits"), 4);
    assert_eq!(count(hub.sql(), "segment_members"), 4);

    let traits: String = hub
        .sql()
        .query_value(
            "SELECT traits FROM profile_traits WHERE profile_id = 'p1'",
            sql_params![],
        )
        .unwrap()
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&traits).unwrap();
    assert_eq!(json["frequency"], 4);
    assert_eq!(
        json["favourite_categories"],
        serde_json::json!(["wine", "cheese"])
    );
    assert_eq!(json["stores"], serde_json::json!(["S001", "S002"]));
    assert_eq!(json["model"]["version"], "selected-btyd+gamma-gamma/4");
    assert_eq!(json["model"]["purchase_model"], "bgnbd");
    assert_eq!(json["model"]["interval"]["source"], "prior");
    let [low, high] = [0, 1].map(|k| json["expected_purchases_interval"][k].as_f64().unwrap());
    let e = json["expected_purchases"].as_f64().unwrap();
    assert!(low < e && e < high, "{json}");
    // Four customers: provisional traits, and the model says why (the API serves both).
    assert_eq!(json["provisional"], true);
    assert!(
        json["model"]["provisional"]
            .as_str()
            .is_some_and(|why| why.contains("too few")),
        "{json}"
    );
    assert!(json["rfm"].as_str().is_some_and(|r| r.len() == 3));
    let all: Vec<String> = hub
        .sql()
        .query("SELECT traits FROM profile_traits", sql_params![])
        .unwrap()
        .iter()
        .map(|r| r.get(0).unwrap())
        .collect();
    assert!(
        all.iter()
            .all(|t| !t.contains("health") && !t.contains("NaN")),
        "{all:?}"
    );
    let p2: serde_json::Value = serde_json::from_str(
        all.iter()
            .find(|t| t.contains("\"online_share\":0.5"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(p2["categories"], serde_json::json!(["cheese"]));
    // The order (1500 of 2400) sold below list price; the till purchase did not.
    assert_eq!(p2["sale_share"], 0.625);

    // The stored membership feeds the plain export.
    let mut out = Vec::new();
    export_csv(
        hub.sql(),
        &hub.config.traits,
        date(2026, 3, 1),
        90,
        &mut out,
    )
    .unwrap();
    let csv = String::from_utf8(out).unwrap();
    let first_row = cells(csv.lines().nth(1).unwrap());
    assert_eq!(first_row[12], "mailable;wine-lovers");

    // A second run replaces rather than adds; a removed profile loses its rows.
    hub.sql()
        .batch(
            "DELETE FROM consents WHERE profile_id = 'p2';
             DELETE FROM transactions WHERE profile_id = 'p4';
             DELETE FROM profiles WHERE profile_id = 'p4';",
        )
        .unwrap();
    let second = recompute(hub.sql(), &hub.config, now).unwrap();
    assert_eq!(second.profiles, 3);
    assert_eq!(second.segments[0], ("wine-lovers".to_string(), 1));
    assert_eq!(second.segments[2], ("mailable".to_string(), 1));
    assert_eq!(count(hub.sql(), "profile_traits"), 3);
    assert_eq!(count(hub.sql(), "segment_members"), 2);
}

#[test]
fn recompute_refuses_a_bad_segment_naming_the_file() {
    let mut hub = hub();
    hub.config.segments = {
        #[derive(serde::Deserialize)]
        struct File {
            segment: Vec<toml::Table>,
        }
        toml::from_str::<File>("[[segment]]\nid = \"x\"\nwhere = [\"frequency >> 2\"]\n")
            .unwrap()
            .segment
    };
    let now = Timestamp::from_unix_ms(at(2026, 3, 1, 12, 0, 0), 0);
    let err = recompute(hub.sql(), &hub.config, now)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("hub.toml") && err.contains(">>") && err.contains("\"x\""),
        "{err}"
    );
    let rows = crate::common::count(hub.sql(), "SELECT count(*) FROM profile_traits");
    assert_eq!(rows, 0, "nothing written");
}

/// A receipt the till could not balance (its layout misread it) is kept, but neither
/// the traits history nor a digest's last visit uses it (issue 10 item 20).
#[test]
fn an_unbalanced_receipt_feeds_no_traits_and_no_digest() {
    use till360_hub::store::{IngestRequest, Store};
    use till360_shared::{AgentId, CardNumber, EventKind};

    let database = TestStore::new();
    let mut store = database.store();
    let agent = AgentId::new("S001", "T01");
    let card = CardNumber::parse("2401000000010").unwrap();
    let day = |d: u32| Timestamp::from_unix_ms(at(2026, 11, d, 10, 0, 60), 60);
    let fine = crate::common::one_line_receipt(&agent, 1, Some(&card), day(2), ("Kaas", 1329));
    let mut misread =
        crate::common::one_line_receipt(&agent, 2, Some(&card), day(3), ("Kaas", 2658));
    if let EventKind::Receipt(r) = &mut misread.kind {
        r.unbalanced = true;
    }
    let out = store
        .ingest(
            &[IngestRequest {
                agent: &agent,
                events: &[fine, misread],
            }],
            day(4),
        )
        .unwrap();
    assert_eq!(out, vec![Ok(2)]);

    let conn = store.sql();
    let kept = crate::common::count(conn, "SELECT COUNT(*) FROM transactions");
    assert_eq!(kept, 2, "nothing recorded is lost");
    let data =
        till360_hub::store::traits::histories(conn, NaiveDate::from_ymd_opt(2026, 11, 30).unwrap())
            .unwrap();
    let history = data
        .histories
        .iter()
        .find(|h| h.cards.contains(&card.to_string()))
        .expect("the card's profile");
    assert_eq!(history.purchases.len(), 1, "{:?}", history.purchases);
    let profile = till360_hub::store::digests::profile_of_card(conn, &card)
        .unwrap()
        .expect("a profile");
    let facts = till360_hub::store::digests::profile_facts(conn, &profile, day(4))
        .unwrap()
        .expect("facts");
    assert_eq!(
        facts.last_visit,
        Some(day(2)),
        "the misread visit is not used"
    );
}
