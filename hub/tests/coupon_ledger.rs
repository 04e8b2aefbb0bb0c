//! The hub's coupon ledger on the test engine's store: coupon events merged exactly once and
//! in any order, one redemption per code (later scans are duplicates), forged codes
//! reported with the store that scanned them, revenue of the redeeming receipts, the
//! uplift against the control group; and the HTTP endpoints over the real router.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;

use crate::common::engine::{blocking, StoreOnTestDatabase, TestStore};

use chrono::NaiveDate;
use till360_hub::api::{self, ApiOptions};
use till360_hub::coupons::CampaignKpis;
use till360_hub::sql_params;
use till360_hub::store::sql::{Sql, SqlExt as _};
use till360_hub::store::{numbering, IngestRequest, SqlStore, Store};
use till360_shared::campaign::CampaignSet;
use till360_shared::coupon::{derive_till_key, mint, CouponFields};
use till360_shared::event::{CouponIssue, CouponRedemption, Verification};
use till360_shared::{AgentId, CardNumber, Currency, Event, EventKind, Receipt, Timestamp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MASTER: &[u8; 32] = b"0123456789abcdef0123456789abcdef";
const T0: i64 = 1_767_000_000_000;
const DAY: i64 = 86_400_000;
const CAMPAIGNS: &str = "[[campaign]]\nid = \"big-basket\"\nname = \"Big\"\n\
    trigger = \"basket_total\"\nmin_total_cents = 5000\noffer = \"5 off\"\n\
    valid_days = 14\ncontrol_percent = 10\n";

fn s1() -> AgentId {
    AgentId::new("S001", "T01")
}

fn s2() -> AgentId {
    AgentId::new("S002", "T01")
}

fn card(body: &str) -> CardNumber {
    CardNumber::parse(&till360_shared::card::with_check_digit(body).unwrap()).unwrap()
}

fn card_a() -> CardNumber {
    card("240100000001")
}

fn card_b() -> CardNumber {
    card("240100000002")
}

fn expires() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, 31).unwrap()
}

fn ev(agent: &AgentId, seq: u64, at_ms: i64, kind: EventKind) -> Event {
    Event {
        agent: agent.clone(),
        seq,
        recorded_at: Timestamp::from_unix_ms(at_ms, 60),
        kind,
    }
}

fn receipt(card: Option<CardNumber>, total_cents: i64, at_ms: i64) -> EventKind {
    EventKind::Receipt(Receipt {
        receipt_no: None,
        printed_at: None,
        completed_at: Timestamp::from_unix_ms(at_ms, 60),
        card,
        card_last4: None,
        lines: vec![],
        total_cents,
        currency: Currency::EUR,
        unbalanced: false,
        unmatched_lines: 0,
    })
}

fn issue(code: Option<&str>, card: CardNumber, receipt_seq: u64) -> CouponIssue {
    CouponIssue {
        campaign_id: "big-basket".into(),
        code: code.map(str::to_string),
        card: Some(card),
        customer_key: Some("ck".into()),
        expires: expires(),
        receipt_seq,
    }
}

fn redeemed(code: &str, receipt_seq: u64) -> EventKind {
    EventKind::CouponRedeemed(CouponRedemption {
        code: code.into(),
        receipt_seq: Some(receipt_seq),
        verified: Verification::Hub,
    })
}

/// Till and campaign numbers as the campaign downlink assigns them.
fn number(conn: &dyn Sql) -> u16 {
    numbering::till_number(conn, &s1()).unwrap();
    numbering::till_number(conn, &s2()).unwrap();
    numbering::campaign_numbers(conn, &["big-basket"]).unwrap()[0].1
}

/// A code printed by S001/T01 (`forged`: signed with another till's key).
fn code(conn: &dyn Sql, serial: u16, forged: bool) -> String {
    let campaign = number(conn);
    let till = numbering::till_number(conn, &s1()).unwrap();
    let key = derive_till_key(MASTER, "S001", if forged { "T09" } else { "T01" });
    let fields = CouponFields::new(campaign, till, expires(), serial).unwrap();
    mint(&key, &fields).as_str().to_string()
}

fn open(with_master: bool) -> StoreOnTestDatabase {
    let mut store = StoreOnTestDatabase::new();
    number(store.sql());
    if with_master {
        store.set_coupon_master(MASTER).unwrap();
    }
    store
}

struct Scenario {
    code: String,
    forged: String,
    s1: Vec<Event>,
    s2: Vec<Event>,
}

/// S001 prints a coupon for card A on a big basket and a would-have for card B; card A
/// redeems it at S002 a day later (receipt 2500) and scans it again (duplicate); S002
/// also accepts a forged code, refuses one, and both customers shop in the window.
fn scenario(store: &SqlStore) -> Scenario {
    let conn = store.sql();
    let code = code(conn, 1, false);
    let forged = self::code(conn, 2, true);
    let s1 = vec![
        ev(&s1(), 1, T0, receipt(Some(card_a()), 6000, T0)),
        ev(
            &s1(),
            2,
            T0 + 1,
            EventKind::CouponIssued(issue(Some(&code), card_a(), 1)),
        ),
        ev(&s1(), 3, T0 + 10, receipt(Some(card_b()), 5500, T0 + 10)),
        ev(
            &s1(),
            4,
            T0 + 11,
            EventKind::CouponWouldHave(issue(None, card_b(), 3)),
        ),
        ev(
            &s1(),
            5,
            T0 + 2 * DAY,
            receipt(Some(card_a()), 3000, T0 + 2 * DAY),
        ),
        // Out of the 14-day window.
        ev(
            &s1(),
            6,
            T0 + 20 * DAY,
            receipt(Some(card_a()), 9999, T0 + 20 * DAY),
        ),
    ];
    let s2 = vec![
        ev(&s2(), 1, T0 + DAY, receipt(Some(card_a()), 2500, T0 + DAY)),
        ev(&s2(), 2, T0 + DAY + 1, redeemed(&code, 1)),
        ev(&s2(), 3, T0 + 3 * DAY, receipt(None, 400, T0 + 3 * DAY)),
        ev(&s2(), 4, T0 + 3 * DAY + 1, redeemed(&code, 3)),
        ev(&s2(), 5, T0 + 3 * DAY + 2, redeemed(&forged, 3)),
        ev(
            &s2(),
            6,
            T0 + 3 * DAY + 3,
            EventKind::CouponRefused {
                code: "1234 5678".into(),
                reason: "expired".into(),
            },
        ),
        ev(
            &s2(),
            7,
            T0 + 2 * DAY,
            receipt(Some(card_b()), 1000, T0 + 2 * DAY),
        ),
    ];
    Scenario {
        code,
        forged,
        s1,
        s2,
    }
}

fn ingest(store: &mut SqlStore, agent: &AgentId, events: &[Event]) -> u64 {
    let now = Timestamp::from_unix_ms(T0 + 30 * DAY, 0);
    let out = store
        .ingest(&[IngestRequest { agent, events }], now)
        .unwrap();
    out[0].clone().unwrap()
}

fn count(store: &SqlStore, sql: &str) -> i64 {
    common::count(store.sql(), sql)
}

fn kpis(store: &SqlStore) -> CampaignKpis {
    store.campaign_kpis("big-basket", 14).unwrap()
}

#[test]
fn coupon_events_merge_exactly_once_across_replays() {
    let mut store = open(true);
    let sc = scenario(&store);
    assert_eq!(ingest(&mut store, &s1(), &sc.s1[..3]), 3);
    // A resend of what was committed plus the rest: only the new events merge.
    assert_eq!(ingest(&mut store, &s1(), &sc.s1), 6);
    assert_eq!(ingest(&mut store, &s1(), &sc.s1), 6);
    assert_eq!(ingest(&mut store, &s2(), &sc.s2), 7);
    assert_eq!(ingest(&mut store, &s2(), &sc.s2[2..]), 7);
    assert_eq!(count(&store, "SELECT count(*) FROM coupons"), 2);
    assert_eq!(count(&store, "SELECT count(*) FROM redemptions"), 4);
    let r = store
        .sql()
        .query_one(
            "SELECT campaign_id, control, code, expires, receipt_seq FROM coupons WHERE seq = 2",
            sql_params![],
        )
        .unwrap();
    let printed: (String, i64, Option<String>, String, i64) = (
        r.get(0).unwrap(),
        r.get(1).unwrap(),
        r.get(2).unwrap(),
        r.get(3).unwrap(),
        r.get(4).unwrap(),
    );
    assert_eq!(
        printed,
        (
            "big-basket".into(),
            0,
            Some(sc.code.clone()),
            "2026-12-31".into(),
            1
        )
    );
    let profile: Option<String> = store
        .sql()
        .query_value(
            "SELECT profile_id FROM coupons WHERE seq = 4",
            sql_params![],
        )
        .unwrap()
        .unwrap();
    assert_eq!(
        profile,
        Some(till360_hub::profile::profile_id_for(&card_b()))
    );
    let statuses: Vec<(i64, String, Option<String>)> = store
        .sql()
        .query(
            "SELECT seq, status, verified FROM redemptions ORDER BY seq",
            sql_params![],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0).unwrap(), r.get(1).unwrap(), r.get(2).unwrap()))
        .collect();
    assert_eq!(
        statuses,
        vec![
            (2, "genuine".into(), Some("hub".into())),
            (4, "genuine".into(), Some("hub".into())),
            (5, "forged".into(), Some("hub".into())),
            (6, "refused".into(), None),
        ]
    );
    assert_eq!(kpis(&store).redeemed, 1);
}

/// Which scan of a code is THE redemption follows the hub's commit order, so the KPIs
/// are deterministic given that order; counts (redeemed, duplicates, forged) do not
/// depend on it at all. Here both scans of the code come from one till, so every
/// arrival order commits them in the same order and gives the same KPIs.
#[test]
fn the_same_events_in_another_order_give_the_same_kpis() {
    let mut first = open(true);
    let mut second = open(true);
    let sc = scenario(&first);
    let sc2 = scenario(&second);
    assert_eq!(sc.code, sc2.code);

    ingest(&mut first, &s1(), &sc.s1);
    ingest(&mut first, &s2(), &sc.s2);
    // The redemptions arrive before the coupon was issued (the issuing till was
    // offline), in small batches.
    for chunk in sc.s2.chunks(2) {
        ingest(&mut second, &s2(), chunk);
    }
    ingest(&mut second, &s1(), &sc.s1);

    let k = kpis(&first);
    assert_eq!(k, kpis(&second));
    assert_eq!(
        first.coupon_stores().unwrap(),
        second.coupon_stores().unwrap()
    );
    assert_eq!(
        first.coupon_counts().unwrap(),
        second.coupon_counts().unwrap()
    );
    assert_eq!(
        (k.issued, k.control, k.redeemed, k.duplicate_redemptions),
        (1, 1, 1, 1)
    );
}

#[test]
fn a_second_scan_is_a_duplicate_and_a_forgery_is_reported_with_its_store() {
    let mut store = open(true);
    let sc = scenario(&store);
    ingest(&mut store, &s1(), &sc.s1);
    ingest(&mut store, &s2(), &sc.s2);
    let k = kpis(&store);
    assert_eq!(k.redeemed, 1, "{k:?}");
    assert_eq!(k.duplicate_redemptions, 1);
    assert_eq!(k.forged_redemptions, 1);
    assert!((k.redemption_rate - 1.0).abs() < 1e-12);
    let stores = store.coupon_stores().unwrap();
    assert_eq!(stores.len(), 1, "{stores:?}");
    let s = &stores[0];
    assert_eq!(
        (
            s.store.as_str(),
            s.redeemed,
            s.duplicates,
            s.forged,
            s.refused
        ),
        ("S002", 1, 1, 1, 1)
    );
    let reason: String = store
        .sql()
        .query_value(
            "SELECT reason FROM redemptions WHERE code = ?1",
            sql_params![sc.forged],
        )
        .unwrap()
        .unwrap();
    assert!(!reason.is_empty());
    // The refused code is kept as the digits the till saw.
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM redemptions WHERE code = '12345678' AND reason = 'expired'"
        ),
        1
    );
}

#[test]
fn revenue_is_the_redeeming_receipt_and_uplift_compares_spend_after_the_coupon() {
    let mut store = open(true);
    let sc = scenario(&store);
    ingest(&mut store, &s1(), &sc.s1);
    ingest(&mut store, &s2(), &sc.s2);
    let k = kpis(&store);
    // The counted redemption was used on S002's receipt 1 (2500); the duplicate's
    // receipt (400) does not count.
    assert_eq!(k.revenue_cents, 2500);
    // Card A after its coupon: 2500 + 3000 in the window (the issuing receipt and the
    // receipt 20 days later excluded); card B after its would-have: 1000.
    let u = &k.uplift;
    assert_eq!(u.window_days, 14);
    assert_eq!((u.treated_customers, u.control_customers), (1, 1));
    assert_eq!(u.treated_spend_per_customer_cents, 5500);
    assert_eq!(u.control_spend_per_customer_cents, 1000);
    assert_eq!(u.uplift_cents_per_customer, Some(4500));
    assert_eq!(u.uplift_percent, Some(450.0));
}

#[test]
fn the_profile_view_counts_its_printed_and_redeemed_coupons() {
    let mut store = open(true);
    let sc = scenario(&store);
    ingest(&mut store, &s1(), &sc.s1);
    let a = store.profile_by_card(&card_a()).unwrap().unwrap();
    assert_eq!((a.coupons.issued, a.coupons.redeemed), (1, 0));
    ingest(&mut store, &s2(), &sc.s2);
    let a = store.profile_by_card(&card_a()).unwrap().unwrap();
    assert_eq!((a.coupons.issued, a.coupons.redeemed), (1, 1));
    // A would-have is not a coupon the customer holds.
    let b = store.profile_by_card(&card_b()).unwrap().unwrap();
    assert_eq!((b.coupons.issued, b.coupons.redeemed), (0, 0));
}

#[test]
fn an_erased_customer_leaves_the_kpis_but_not_their_coupons_or_events() {
    let mut store = open(true);
    let sc = scenario(&store);
    ingest(&mut store, &s1(), &sc.s1);
    ingest(&mut store, &s2(), &sc.s2);
    let before = kpis(&store);
    let profile = store.profile_by_card(&card_a()).unwrap().unwrap();
    let export = store.export_profile(&profile.profile_id).unwrap().unwrap();
    let coupons = export["coupons"].as_array().unwrap();
    assert_eq!(coupons.len(), 1, "{export}");
    assert_eq!(coupons[0]["code"], sc.code.as_str());

    let now = Timestamp::from_unix_ms(T0 + 40 * DAY, 0);
    store
        .erase_profile(&profile.profile_id, now)
        .unwrap()
        .unwrap();
    assert_eq!(
        kpis(&store).issued,
        before.issued,
        "the coupon still counts"
    );
    assert_eq!(kpis(&store).redeemed, before.redeemed);
    let a = card_a();
    let linked = count(
        &store,
        &format!(
            "SELECT COUNT(*) FROM coupons WHERE card = '{}' OR profile_id = '{}'",
            a.as_str(),
            profile.profile_id
        ),
    );
    assert_eq!(linked, 0, "no coupon row names the person");
    // The raw coupon event lost the card too.
    let events: Vec<Vec<u8>> = store
        .sql()
        .query(
            "SELECT payload FROM events WHERE kind = 'coupon_issued'",
            sql_params![],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0).unwrap())
        .collect();
    assert!(!events.is_empty());
    for payload in events {
        let event: Event = till360_shared::codec::from_bytes(&payload).unwrap();
        let EventKind::CouponIssued(issue) = event.kind else {
            panic!("a coupon event")
        };
        assert_eq!(issue.card, None);
        assert_eq!(issue.code.as_deref(), Some(sc.code.as_str()));
    }
}

#[test]
fn without_a_master_secret_scans_are_unchecked_and_count_as_genuine() {
    let mut store = open(false);
    let sc = scenario(&store);
    ingest(&mut store, &s1(), &sc.s1);
    ingest(&mut store, &s2(), &sc.s2);
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM redemptions WHERE status = 'unchecked'"
        ),
        3
    );
    let k = kpis(&store);
    // The unchecked "forged" code names big-basket by its number: counted too.
    assert_eq!(
        (k.redeemed, k.duplicate_redemptions, k.forged_redemptions),
        (2, 1, 0)
    );
}

#[test]
fn garbage_codes_are_forged_not_a_failure() {
    let mut store = open(true);
    let events: Vec<Event> = ["", "not a code ✓", &"9".repeat(300), "0000 0000 0000"]
        .iter()
        .enumerate()
        .map(|(i, code)| ev(&s1(), i as u64 + 1, T0 + i as i64, redeemed(code, 1)))
        .collect();
    assert_eq!(ingest(&mut store, &s1(), &events), 4);
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM redemptions WHERE status = 'forged' AND campaign_id IS NULL"
        ),
        4
    );
    let report = store.coupon_stores().unwrap();
    assert_eq!((report.len(), report[0].forged), (1, 4));
    // None of them claims a campaign.
    assert_eq!(kpis(&store).forged_redemptions, 0);
}

// ---- HTTP ----

/// `GET path` with an optional bearer token; the status and the JSON body.
async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(common::STEP, stream.read_to_end(&mut raw))
        .await
        .expect("HTTP response timed out")
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("no header end");
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("no status");
    let json = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
    (status, json)
}

/// The real router over a store with the scenario merged, on a 127.0.0.1 port.
/// The database goes with the returned value.
async fn serve(token: Option<&str>) -> (SocketAddr, TestStore) {
    let StoreOnTestDatabase { store, database } = blocking(|| {
        let mut store = open(true);
        let sc = scenario(&store);
        ingest(&mut store, &s1(), &sc.s1);
        ingest(&mut store, &s2(), &sc.s2);
        store
    });
    blocking(move || drop(store));
    let options = ApiOptions {
        token: token.map(str::to_string),
        database: Some(database.db.clone()),
        campaigns: Some(
            CampaignSet::from_toml_str(CAMPAIGNS, Path::new("campaigns.toml")).unwrap(),
        ),
        ..ApiOptions::default()
    };
    let app = api::router(options);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, database)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kpis_campaign_counts_and_store_report_over_http() {
    let (addr, _database) = serve(None).await;

    let (status, k) = get(addr, "/api/v1/campaigns/big-basket/kpis", None).await;
    assert_eq!(status, 200, "{k}");
    assert_eq!(k["campaign_id"], "big-basket");
    assert_eq!(
        (
            k["issued"].as_u64(),
            k["control"].as_u64(),
            k["redeemed"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!(k["redemption_rate"].as_f64(), Some(1.0));
    assert_eq!(k["duplicate_redemptions"].as_u64(), Some(1));
    assert_eq!(k["forged_redemptions"].as_u64(), Some(1));
    assert_eq!(k["revenue_cents"].as_i64(), Some(2500));
    let u = &k["uplift"];
    assert_eq!(u["window_days"].as_u64(), Some(14));
    assert_eq!(u["uplift_cents_per_customer"].as_i64(), Some(4500));
    assert_eq!(u["uplift_percent"].as_f64(), Some(450.0));

    let (status, err) = get(addr, "/api/v1/campaigns/no-such/kpis", None).await;
    assert_eq!(status, 404, "{err}");
    assert!(err["error"].as_str().unwrap().contains("no-such"), "{err}");

    let (status, list) = get(addr, "/api/v1/campaigns", None).await;
    assert_eq!(status, 200, "{list}");
    let c = &list[0];
    assert_eq!(c["id"], "big-basket");
    assert_eq!(c["valid_days"].as_u64(), Some(14));
    assert!(c["version"].is_string(), "{c}");
    assert_eq!(
        (
            c["issued"].as_u64(),
            c["control"].as_u64(),
            c["redeemed"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );

    let (status, stores) = get(addr, "/api/v1/coupons/stores", None).await;
    assert_eq!(status, 200, "{stores}");
    assert_eq!(
        stores,
        serde_json::json!([
            {"store": "S002", "redeemed": 1, "duplicates": 1, "forged": 1, "refused": 1}
        ])
    );

    let (status, profile) = get(
        addr,
        &format!("/api/v1/profiles/by-card/{}", card_a()),
        None,
    )
    .await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!(
        profile["coupons"],
        serde_json::json!({"issued": 1, "redeemed": 1})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coupon_endpoints_require_the_token_like_the_rest_of_the_api() {
    let (addr, _database) = serve(Some("s3cret")).await;
    for path in [
        "/api/v1/campaigns",
        "/api/v1/campaigns/big-basket/kpis",
        "/api/v1/campaigns/no-such/kpis",
        "/api/v1/coupons/stores",
    ] {
        assert_eq!(get(addr, path, None).await.0, 401, "{path}");
        assert_eq!(get(addr, path, Some("wrong")).await.0, 401, "{path}");
    }
    assert_eq!(
        get(addr, "/api/v1/campaigns/big-basket/kpis", Some("s3cret"))
            .await
            .0,
        200
    );
    assert_eq!(
        get(addr, "/api/v1/campaigns/no-such/kpis", Some("s3cret"))
            .await
            .0,
        404
    );
    assert_eq!(
        get(addr, "/api/v1/coupons/stores", Some("s3cret")).await.0,
        200
    );
}

/// Through a whole hub: events over QUIC, checked with the hub's master secret (the
/// test's, written where the hub keeps it), KPIs over HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_hub_counts_coupons_sent_over_quic() {
    let site = common::Site::new();
    std::fs::write(site.dir.path().join("campaigns.toml"), CAMPAIGNS).unwrap();
    let config = site.dir.path().join("hub.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("campaigns = \"campaigns.toml\"\n{text}")).unwrap();
    let data_dir = site.config().data_dir;
    std::fs::create_dir_all(&data_dir).unwrap();
    let master = data_dir.join("coupon-master.key");
    std::fs::write(&master, MASTER).unwrap();
    // As an operator restoring it must: the hub refuses a key others can read.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&master, std::fs::Permissions::from_mode(0o600)).unwrap();
    let sc = blocking(|| {
        let store = SqlStore::open(&site.open_database()).unwrap();
        number(store.sql());
        scenario(&store)
    });
    let hub = site.start().await;
    common::send_all(&site, hub.quic_addr(), &s1(), sc.s1.clone()).await;
    common::send_all(&site, hub.quic_addr(), &s2(), sc.s2.clone()).await;

    let (status, k) = common::http_get(hub.http_addr(), "/api/v1/campaigns/big-basket/kpis").await;
    assert_eq!(status, 200, "{k}");
    assert_eq!(
        (
            k["issued"].as_u64(),
            k["control"].as_u64(),
            k["redeemed"].as_u64(),
            k["duplicate_redemptions"].as_u64(),
            k["forged_redemptions"].as_u64(),
            k["revenue_cents"].as_i64()
        ),
        (Some(1), Some(1), Some(1), Some(1), Some(1), Some(2500))
    );
    let (_, list) = common::http_get(hub.http_addr(), "/api/v1/campaigns").await;
    assert_eq!(list[0]["redeemed"].as_u64(), Some(1), "{list}");
    let (_, stores) = common::http_get(hub.http_addr(), "/api/v1/coupons/stores").await;
    assert_eq!(stores[0]["forged"].as_u64(), Some(1), "{stores}");
    let (status, _) = common::http_get(hub.http_addr(), "/api/v1/campaigns/unknown/kpis").await;
    assert_eq!(status, 404);
    hub.shutdown().await;
}

#[test]
fn a_backdated_tills_redemption_loses_to_the_earlier_committed_one() {
    let mut store = open(true);
    let code = code(store.sql(), 7, false);
    // S001 redeems the code on day 5 (receipt 4200) and its events are committed first.
    let honest = vec![
        ev(&s1(), 1, T0 + 5 * DAY, receipt(None, 4200, T0 + 5 * DAY)),
        ev(&s1(), 2, T0 + 5 * DAY + 1, redeemed(&code, 1)),
    ];
    ingest(&mut store, &s1(), &honest);
    // S002's clock was set back four days: its later scan of the same code claims day 1.
    let backdated = vec![
        ev(&s2(), 1, T0 + DAY, receipt(None, 900, T0 + DAY)),
        ev(&s2(), 2, T0 + DAY + 1, redeemed(&code, 1)),
    ];
    ingest(&mut store, &s2(), &backdated);

    let k = kpis(&store);
    assert_eq!((k.redeemed, k.duplicate_redemptions), (1, 1), "{k:?}");
    assert_eq!(k.revenue_cents, 4200, "the first committed scan's receipt");
    let stores: Vec<(String, u64, u64)> = store
        .coupon_stores()
        .unwrap()
        .into_iter()
        .map(|s| (s.store, s.redeemed, s.duplicates))
        .collect();
    assert_eq!(
        stores,
        vec![("S001".to_string(), 1, 0), ("S002".to_string(), 0, 1)]
    );

    // The same events committed the other way round: the counts stay, THE redemption
    // (and its revenue) follows the commit order, and the same order gives the same KPIs.
    let others: Vec<CampaignKpis> = (0..2)
        .map(|_| {
            let mut other = open(true);
            ingest(&mut other, &s2(), &backdated);
            ingest(&mut other, &s1(), &honest);
            let k = kpis(&other);
            assert_eq!((k.redeemed, k.duplicate_redemptions), (1, 1));
            assert_eq!(k.revenue_cents, 900);
            k
        })
        .collect();
    assert_eq!(others[0], others[1]);
}
