//! Privacy, consents, search, segments and the bearer token, over real HTTP on
//! 127.0.0.1 against a hub with a real SQLite file (till data arrives over QUIC).

use crate::common;

use std::net::SocketAddr;
use std::path::PathBuf;

use common::{send_all, Site, STEP};
use serde_json::{json, Value};
use till360_hub::server::{self, RunningHub};
use till360_shared::{
    AgentId, CardNumber, Currency, Event, EventKind, Receipt, ReceiptLine, Timestamp,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "test-token-0123456789abcdef";

fn card(body: &str) -> CardNumber {
    CardNumber::parse(&till360_shared::card::with_check_digit(body).unwrap()).unwrap()
}

fn scan(agent: &AgentId, seq: u64, unix_ms: i64, card: &CardNumber) -> Event {
    Event {
        agent: agent.clone(),
        seq,
        recorded_at: Timestamp::from_unix_ms(unix_ms, 60),
        kind: EventKind::CardScanned { card: card.clone() },
    }
}

fn receipt(
    agent: &AgentId,
    seq: u64,
    unix_ms: i64,
    card: Option<&CardNumber>,
    cents: i64,
) -> Event {
    let at = Timestamp::from_unix_ms(unix_ms, 60);
    Event {
        agent: agent.clone(),
        seq,
        recorded_at: at,
        kind: EventKind::Receipt(Receipt {
            receipt_no: Some(format!("R{seq}")),
            printed_at: Some(at),
            completed_at: at,
            card: card.cloned(),
            card_last4: card.map(|c| c.last4().to_string()),
            lines: vec![ReceiptLine {
                description: "Espresso beans".into(),
                sku: Some("SKU-1".into()),
                quantity_milli: 1000,
                unit_cents: Some(cents),
                amount_cents: cents,
                discount: false,
            }],
            total_cents: cents,
            currency: Currency::EUR,
            unbalanced: false,
            unmatched_lines: 0,
        }),
    }
}

/// A raw HTTP/1.1 exchange.
struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body {:?}: {e}", self.body))
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_string())
        })
    }
}

async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = body.map(Value::to_string).unwrap_or_default();
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(STEP, stream.read_to_end(&mut raw))
        .await
        .expect("HTTP response timed out")
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("no header end");
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "expected a Content-Length body"
    );
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("no status");
    Reply {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

async fn get(addr: SocketAddr, path: &str) -> Reply {
    call(addr, "GET", path, None, None).await
}

/// `DELETE /api/v1/profiles/{id}` without a token.
async fn erase(addr: SocketAddr, id: &str) -> Reply {
    call(
        addr,
        "DELETE",
        &format!("/api/v1/profiles/{id}"),
        None,
        None,
    )
    .await
}

/// The hub's database (either engine), as an import or the trait job would write it.
fn db(site: &Site) -> &Site {
    site
}

/// Rewrites the site's hub.toml with extra lines (and another HTTP address).
fn configure(site: &Site, http: &str, extra: &str) {
    std::fs::write(
        site.dir.path().join("hub.toml"),
        format!(
            "data_dir = \"data\"\nlisten = \"127.0.0.1:0\"\nhttp = \"{http}\"\n\
             ca = \"pki/ca.pem\"\ncert = \"pki/hub.pem\"\nkey = \"pki/hub.key\"\n{}{extra}",
            site.database.toml()
        ),
    )
    .unwrap();
}

/// Starts the hub and waits for its start-up traits run, which replaces all of
/// `profile_traits` and `segment_members`: rows the tests write afterwards stay (the
/// next scheduled run is an hour away).
async fn start(site: &Site) -> RunningHub {
    let hub = server::start(site.config()).await.unwrap();
    hub.recompute_traits().await.unwrap();
    hub
}

fn store_statistics(site: &Site) -> Vec<(String, i64, i64)> {
    site.query(
        "SELECT store, count(*), CAST(sum(total_cents) AS BIGINT) FROM transactions
         GROUP BY store ORDER BY store",
        args![],
    )
    .iter()
    .map(|r| (r.get(0).unwrap(), r.get(1).unwrap(), r.get(2).unwrap()))
    .collect()
}

/// Alice (two receipts in two stores, a scan, CRM data, an order, traits, a segment)
/// and Bob (one receipt) plus one anonymous receipt. Returns Alice's profile id.
async fn alice_and_bob(
    site: &Site,
    hub: &RunningHub,
    alice: &CardNumber,
    bob: &CardNumber,
) -> String {
    let s1 = AgentId::new("S001", "T01");
    let s2 = AgentId::new("S002", "T01");
    let t0 = 1_764_060_000_000;
    send_all(
        site,
        hub.quic_addr(),
        &s1,
        vec![
            scan(&s1, 1, t0 - 60_000, alice),
            receipt(&s1, 2, t0, Some(alice), 1299),
            receipt(&s1, 3, t0 + 1000, None, 500),
            receipt(&s1, 4, t0 + 2000, Some(bob), 250),
        ],
    )
    .await;
    send_all(
        site,
        hub.quic_addr(),
        &s2,
        vec![receipt(&s2, 1, t0 + 3_600_000, Some(alice), 701)],
    )
    .await;
    let found = get(
        hub.http_addr(),
        &format!("/api/v1/profiles/by-card/{alice}"),
    )
    .await;
    assert_eq!(found.status, 200, "{}", found.body);
    let id = found.json()["profile_id"].as_str().unwrap().to_string();

    let conn = db(site);
    conn.execute(
        "UPDATE profiles SET customer_no = 'C-100', first_name = 'Alice', last_name = 'Jansen',
             birth_date = '1980-04-02', postal_code = '1011AB', language = 'nl'
         WHERE profile_id = ?1",
        args![id],
    );
    conn.execute(
        "INSERT INTO identifiers (kind, value, profile_id, source, added_at_ms)
         VALUES ('email', 'alice@example.com', ?1, 'crm', ?2)",
        args![id, t0],
    );
    conn.execute(
        "INSERT INTO consents (profile_id, purpose, granted, source, at_ms)
         VALUES (?1, 'email', 1, 'crm', ?2)",
        args![id, t0],
    );
    conn.execute(
        "INSERT INTO orders (order_id, profile_id, ordered_at_ms, offset_min, channel,
             total_cents, currency, lines)
         VALUES ('W-1', ?1, ?2, 60, 'web', 4200, 'EUR',
             '[{\"sku\":\"SKU-9\",\"description\":\"Grinder\",\"qty\":1,\"unit_cents\":4200,\"amount_cents\":4200}]')",
        args![id, t0 + 7_200_000],
    );
    conn.execute(
        "INSERT INTO profile_traits (profile_id, as_of_ms, traits) VALUES (?1, ?2, '{\"rfm\":\"555\"}')",
        args![id, t0],
    );
    conn.execute(
        "INSERT INTO segment_members (segment_id, profile_id) VALUES ('vip', ?1)",
        args![id],
    );
    // The identity graph's evidence: Alice's CRM row, and someone else's.
    for (key, kind, value) in [
        ("crm:C-100", "customer_no", "C-100"),
        ("crm:C-100", "email", "alice@example.com"),
        ("crm:C-100", "card", alice.as_str()),
        ("crm:C-200", "customer_no", "C-200"),
    ] {
        conn.execute(
            "INSERT INTO identity_links (row_key, kind, value) VALUES (?1, ?2, ?3)
             ON CONFLICT DO NOTHING",
            args![key, kind, value],
        );
    }
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_erase_keeps_only_anonymous_statistics() {
    let site = Site::new();
    let hub = start(&site).await;
    let http = hub.http_addr();
    let alice = card("240100000011");
    let bob = card("240100000012");
    let id = alice_and_bob(&site, &hub, &alice, &bob).await;

    let export = get(http, &format!("/api/v1/profiles/{id}/export")).await;
    assert_eq!(export.status, 200, "{}", export.body);
    let disposition = export.header("content-disposition").unwrap();
    assert!(disposition.starts_with("attachment"), "{disposition}");
    let e = export.json();
    assert_eq!(e["profile_id"], id.as_str());
    assert_eq!(e["personal"]["first_name"], "Alice");
    assert_eq!(e["personal"]["birth_date"], "1980-04-02");
    let identifiers: Vec<(&str, &str)> = e["identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["kind"].as_str().unwrap(), i["value"].as_str().unwrap()))
        .collect();
    assert!(
        identifiers.contains(&("card", alice.as_str())),
        "{identifiers:?}"
    );
    assert!(
        identifiers.contains(&("email", "alice@example.com")),
        "{identifiers:?}"
    );
    assert!(!identifiers.iter().any(|(_, v)| *v == bob.as_str()));
    assert_eq!(
        e["consents"],
        json!([{"purpose": "email", "granted": true, "source": "crm", "at": "2025-11-25T08:40:00.000+00:00"}])
    );
    let receipts = e["transactions"].as_array().unwrap();
    let totals: Vec<i64> = receipts
        .iter()
        .map(|t| t["total_cents"].as_i64().unwrap())
        .collect();
    assert_eq!(totals, vec![1299, 701]);
    assert_eq!(receipts[0]["store"], "S001");
    assert_eq!(receipts[0]["lines"][0]["description"], "Espresso beans");
    assert_eq!(receipts[0]["lines"][0]["amount_cents"], 1299);
    assert_eq!(e["orders"][0]["order_id"], "W-1");
    assert_eq!(e["orders"][0]["lines"][0]["description"], "Grinder");
    assert_eq!(e["traits"]["values"]["rfm"], "555");
    assert_eq!(e["segments"], json!(["vip"]));

    let conn = db(&site);
    let statistics = store_statistics(conn);
    assert_eq!(
        statistics,
        vec![("S001".into(), 3, 2049), ("S002".into(), 1, 701)]
    );

    let erased = erase(http, &id).await;
    assert_eq!(erased.status, 200, "{}", erased.body);
    let report = erased.json();
    assert_eq!(report["profile_id"], id.as_str());
    assert_eq!(report["identifiers_removed"], 2, "card and e-mail");
    assert_eq!(
        report["transactions_anonymised"], 3,
        "two receipts, one order"
    );
    assert_eq!(report["erasure_version"], 1);

    // Gone from every read path.
    assert_eq!(
        get(http, &format!("/api/v1/profiles/by-card/{alice}"))
            .await
            .status,
        404
    );
    assert_eq!(
        get(http, &format!("/api/v1/profiles/{id}")).await.status,
        404
    );
    assert_eq!(
        get(http, &format!("/api/v1/profiles/{id}/export"))
            .await
            .status,
        404
    );
    let again = erase(http, &id).await;
    assert_eq!(again.status, 404);
    assert_eq!(
        get(http, &format!("/api/v1/profiles/by-card/{bob}"))
            .await
            .status,
        200
    );

    // Store statistics unchanged; nothing left that names Alice.
    assert_eq!(store_statistics(conn), statistics);
    for sql in [
        "SELECT count(*) FROM profiles WHERE profile_id = ?1",
        "SELECT count(*) FROM identifiers WHERE profile_id = ?1",
        "SELECT count(*) FROM consents WHERE profile_id = ?1",
        "SELECT count(*) FROM profile_traits WHERE profile_id = ?1",
        "SELECT count(*) FROM segment_members WHERE profile_id = ?1",
        "SELECT count(*) FROM transactions WHERE profile_id = ?1",
        "SELECT count(*) FROM orders WHERE profile_id = ?1",
        "SELECT count(*) FROM identifiers WHERE value = 'alice@example.com'",
    ] {
        let n = if sql.contains("?1") {
            conn.count(sql, args![id])
        } else {
            conn.count(sql, args![])
        };
        assert_eq!(n, 0, "{sql}");
    }
    assert_eq!(
        conn.count(
            "SELECT count(*) FROM transactions WHERE card = ?1",
            args![alice.as_str()]
        ),
        0
    );
    assert_eq!(
        conn.count(
            "SELECT count(*) FROM orders WHERE order_id = ?1",
            args!["W-1"]
        ),
        1
    );
    // Raw events (a receipt's in its transaction row): the scan is gone, the receipts
    // no longer carry the card.
    let payloads: Vec<Vec<u8>> = conn.column(
        "SELECT payload FROM events
         UNION ALL SELECT event FROM transactions WHERE event IS NOT NULL",
        args![],
    );
    let needle = alice.as_str().as_bytes();
    let with_card = payloads
        .iter()
        .filter(|p| p.windows(needle.len()).any(|w| w == needle))
        .count();
    assert_eq!(with_card, 0);
    assert_eq!(payloads.len(), 4, "five events minus Alice's scan");
    // One erasure; her card as each known store's card key, her identifiers (card,
    // e-mail, customer number) as keyed hashes: never in clear.
    let erasures: Vec<i64> = conn.column("SELECT version FROM erasures ORDER BY version", args![]);
    assert_eq!(erasures, vec![1]);
    let card_keys: Vec<String> = conn.column(
        "SELECT store FROM erasure_card_keys ORDER BY store",
        args![],
    );
    assert_eq!(card_keys, vec!["S001".to_string(), "S002".to_string()]);
    let suppressed: Vec<String> = conn.column(
        "SELECT kind FROM suppressed_identifiers ORDER BY kind",
        args![],
    );
    assert_eq!(suppressed, vec!["card", "customer_no", "email"]);
    let links: Vec<String> = conn.column(
        "SELECT row_key FROM identity_links ORDER BY row_key",
        args![],
    );
    assert_eq!(links, vec!["crm:C-200".to_string()]);
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consents_round_trip() {
    let site = Site::new();
    let hub = start(&site).await;
    let http = hub.http_addr();
    let alice = card("240100000021");
    let bob = card("240100000022");
    let id = alice_and_bob(&site, &hub, &alice, &bob).await;
    let path = format!("/api/v1/profiles/{id}/consents");

    let set = call(
        http,
        "PUT",
        &path,
        None,
        Some(&json!({"email": false, "sms": true})),
    )
    .await;
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(set.json()["profile_id"], id.as_str());
    let consents = |e: Value| -> Vec<(String, bool, String)> {
        e["consents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["purpose"].as_str().unwrap().to_string(),
                    c["granted"].as_bool().unwrap(),
                    c["source"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let export = get(http, &format!("/api/v1/profiles/{id}/export"))
        .await
        .json();
    assert_eq!(
        consents(export),
        vec![
            ("email".into(), false, "api".into()),
            ("sms".into(), true, "api".into())
        ]
    );

    let list = json!([{"purpose": "post", "granted": true}, {"purpose": "sms", "granted": false}]);
    assert_eq!(
        call(http, "PUT", &path, None, Some(&list)).await.status,
        200
    );
    let export = get(http, &format!("/api/v1/profiles/{id}/export"))
        .await
        .json();
    assert_eq!(
        consents(export),
        vec![
            ("email".into(), false, "api".into()),
            ("post".into(), true, "api".into()),
            ("sms".into(), false, "api".into())
        ]
    );

    // An unknown purpose refuses the whole request, naming it.
    let bad = call(
        http,
        "PUT",
        &path,
        None,
        Some(&json!({"email": true, "fax": true})),
    )
    .await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.json()["error"].as_str().unwrap().contains("\"fax\""),
        "{}",
        bad.body
    );
    let export = get(http, &format!("/api/v1/profiles/{id}/export"))
        .await
        .json();
    assert_eq!(consents(export)[0], ("email".into(), false, "api".into()));
    let not_json = call(http, "PUT", &path, None, None).await;
    assert_eq!(not_json.status, 400);
    let unknown = call(
        http,
        "PUT",
        "/api/v1/profiles/p-0000000000000000/consents",
        None,
        Some(&json!({"email": true})),
    )
    .await;
    assert_eq!(unknown.status, 404);
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_required_off_loopback_except_health() {
    let site = Site::new();
    configure(&site, "0.0.0.0:0", &format!("api_token = \"{TOKEN}\"\n"));
    let hub = start(&site).await;
    assert!(hub.http_addr().ip().is_unspecified());
    // Listening on every address; reached here through loopback.
    let http = SocketAddr::from(([127, 0, 0, 1], hub.http_addr().port()));

    let health = get(http, "/api/v1/health").await;
    assert_eq!(
        (health.status, health.json()["status"].clone()),
        (200, json!("ok"))
    );

    for (method, path) in [
        ("GET", "/api/v1/agents"),
        ("GET", "/api/v1/profiles"),
        ("GET", "/api/v1/profiles/p-0000000000000000/export"),
        ("DELETE", "/api/v1/profiles/p-0000000000000000"),
        ("GET", "/api/v1/segments"),
        ("GET", "/api/v1/identifiers/blocked"),
        ("GET", "/api/v1/nothing"),
    ] {
        let missing = call(http, method, path, None, None).await;
        assert_eq!(missing.status, 401, "{method} {path}");
        assert_eq!(
            missing.header("www-authenticate").as_deref(),
            Some("Bearer")
        );
        let wrong = call(
            http,
            method,
            path,
            Some("test-token-0123456789abcdeX"),
            None,
        )
        .await;
        assert_eq!(wrong.status, 401, "{method} {path}");
    }
    let agents = call(http, "GET", "/api/v1/agents", Some(TOKEN), None).await;
    assert_eq!((agents.status, agents.json()), (200, json!([])));
    let unknown = call(
        http,
        "DELETE",
        "/api/v1/profiles/p-0000000000000000",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(unknown.status, 404);
    hub.shutdown().await;
}

/// Inserts a person as an import would.
fn person(
    conn: &Site,
    id: &str,
    customer_no: &str,
    first: &str,
    email: Option<&str>,
    postal: Option<&str>,
) {
    conn.execute(
        "INSERT INTO profiles (profile_id, created_at_ms, created_offset_min, customer_no,
             first_name, last_name, postal_code)
         VALUES (?1, 0, 0, ?2, ?3, 'Tester', ?4)",
        args![id, customer_no, first, postal],
    );
    conn.execute(
        "INSERT INTO identifiers (kind, value, profile_id, source, added_at_ms)
         VALUES ('customer_no', ?2, ?1, 'crm', 0)",
        args![id, customer_no],
    );
    if let Some(email) = email {
        conn.execute(
            "INSERT INTO identifiers (kind, value, profile_id, source, added_at_ms)
             VALUES ('email', ?2, ?1, 'crm', 0)",
            args![id, email],
        );
    }
}

fn consent(conn: &Site, id: &str, purpose: &str, granted: bool) {
    conn.execute(
        "INSERT INTO consents (profile_id, purpose, granted, source, at_ms) VALUES (?1, ?2, ?3, 'crm', 0)",
        args![id, purpose, granted],
    );
}

fn member(conn: &Site, segment: &str, id: &str) {
    conn.execute(
        "INSERT INTO segment_members (segment_id, profile_id) VALUES (?1, ?2)",
        args![segment, id],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_mailing_lists_only_consenting_people() {
    let site = Site::new();
    configure(
        &site,
        "127.0.0.1:0",
        "[[segment]]\nid = \"vip\"\nname = \"Best customers\"\nwhere = [\"frequency >= 3\"]\n\n\
         [[segment]]\nid = \"lapsing\"\nname = \"About to leave\"\nwhere = [\"churn_risk >= 0.6\"]\n",
    );
    let hub = start(&site).await;
    let http = hub.http_addr();
    let conn = db(&site);
    // Ann: e-mail yes, post no. Ben: e-mail refused, post yes. Cas: no consents.
    // Dee: both yes but only in `lapsing`. Eve: e-mail yes but no address on file.
    person(
        conn,
        "p-a",
        "C1",
        "Ann",
        Some("ann@example.com"),
        Some("1011AB"),
    );
    person(
        conn,
        "p-b",
        "C2",
        "Ben, \"B\"",
        Some("ben@example.com"),
        Some("2022CD"),
    );
    person(
        conn,
        "p-c",
        "C3",
        "Cas",
        Some("cas@example.com"),
        Some("3033EF"),
    );
    person(
        conn,
        "p-d",
        "C4",
        "Dee",
        Some("dee@example.com"),
        Some("4044GH"),
    );
    person(conn, "p-e", "C5", "Eve", None, None);
    consent(conn, "p-a", "email", true);
    consent(conn, "p-a", "post", false);
    consent(conn, "p-b", "email", false);
    consent(conn, "p-b", "post", true);
    consent(conn, "p-d", "email", true);
    consent(conn, "p-d", "post", true);
    consent(conn, "p-e", "email", true);
    for id in ["p-a", "p-b", "p-c", "p-e"] {
        member(conn, "vip", id);
    }
    member(conn, "lapsing", "p-d");
    conn.execute(
        "INSERT INTO blocked_identifiers (kind, value, customers, reason)
         VALUES ('email', 'info@shop.example', 7, 'links 7 customers (limit 3)')",
        args![],
    );

    let segments = get(http, "/api/v1/segments").await;
    assert_eq!(segments.status, 200, "{}", segments.body);
    let mut listed = segments.json();
    for segment in listed.as_array_mut().unwrap() {
        let computed_at = segment.as_object_mut().unwrap().remove("computed_at");
        assert!(computed_at.unwrap().is_string(), "{}", segments.body);
    }
    assert_eq!(
        listed,
        json!([
            {"id": "vip", "name": "Best customers", "size": 4},
            {"id": "lapsing", "name": "About to leave", "size": 1}
        ])
    );

    let email = get(http, "/api/v1/segments/vip/members.csv?channel=email").await;
    assert_eq!(email.status, 200, "{}", email.body);
    assert!(email
        .header("content-type")
        .unwrap()
        .starts_with("text/csv"));
    assert!(email
        .header("content-disposition")
        .unwrap()
        .starts_with("attachment"));
    assert_eq!(
        email.body,
        "customer_no,first_name,last_name,email\r\nC1,Ann,Tester,ann@example.com\r\n"
    );
    let post = get(http, "/api/v1/segments/vip/members.csv?channel=post").await;
    assert_eq!(post.status, 200, "{}", post.body);
    assert_eq!(
        post.body,
        "customer_no,first_name,last_name,postal_code\r\nC2,\"Ben, \"\"B\"\"\",Tester,2022CD\r\n"
    );
    let lapsing = get(http, "/api/v1/segments/lapsing/members.csv?channel=email").await;
    assert_eq!(
        lapsing.body,
        "customer_no,first_name,last_name,email\r\nC4,Dee,Tester,dee@example.com\r\n"
    );

    assert_eq!(
        get(http, "/api/v1/segments/vip/members.csv?channel=sms")
            .await
            .status,
        400
    );
    assert_eq!(
        get(http, "/api/v1/segments/vip/members.csv").await.status,
        400
    );
    assert_eq!(
        get(http, "/api/v1/segments/nope/members.csv?channel=email")
            .await
            .status,
        404
    );

    let blocked = get(http, "/api/v1/identifiers/blocked").await;
    assert_eq!(blocked.status, 200, "{}", blocked.body);
    assert_eq!(
        blocked.json(),
        json!([{"kind": "email", "value": "info@shop.example", "customers": 7,
                "reason": "links 7 customers (limit 3)"}])
    );
    hub.shutdown().await;
}

/// A name or number a spreadsheet would run as a formula reaches the mailing house as
/// text; the request without a channel is told what to send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailing_lists_neutralise_spreadsheet_formulas() {
    let site = Site::new();
    configure(
        &site,
        "127.0.0.1:0",
        "[[segment]]\nid = \"vip\"\nwhere = [\"frequency >= 3\"]\n",
    );
    let hub = start(&site).await;
    let http = hub.http_addr();
    let conn = db(&site);
    person(
        conn,
        "p-a",
        "-C1",
        "=HYPERLINK(\"http://evil.example\",\"x\")",
        Some("@ann@example.com"),
        Some("+1011AB"),
    );
    consent(conn, "p-a", "email", true);
    consent(conn, "p-a", "post", true);
    member(conn, "vip", "p-a");
    let email = get(http, "/api/v1/segments/vip/members.csv?channel=email").await;
    assert_eq!(email.status, 200, "{}", email.body);
    assert_eq!(
        email.body,
        "customer_no,first_name,last_name,email\r\n\
         '-C1,\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"x\"\")\",Tester,'@ann@example.com\r\n"
    );
    let post = get(http, "/api/v1/segments/vip/members.csv?channel=post").await;
    assert!(post.body.ends_with(",Tester,'+1011AB\r\n"), "{}", post.body);

    let missing = get(http, "/api/v1/segments/vip/members.csv").await;
    assert_eq!(missing.status, 400);
    assert_eq!(
        missing.json(),
        json!({"error": "query parameter `channel` is required: `email` or `post`"})
    );
    let wrong = get(http, "/api/v1/segments/vip/members.csv?channel=sms").await;
    assert_eq!(wrong.status, 400);
    assert_eq!(
        wrong.json(),
        json!({"error": "query parameter `channel` must be `email` or `post`, not \"sms\""})
    );
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_by_each_identifier() {
    let site = Site::new();
    let hub = start(&site).await;
    let http = hub.http_addr();
    let alice = card("240100000031");
    let bob = card("240100000032");
    let id = alice_and_bob(&site, &hub, &alice, &bob).await;
    db(&site).execute(
        "INSERT INTO identifiers (kind, value, profile_id, source, added_at_ms)
             VALUES ('customer_no', 'C-100', ?1, 'crm', 0)",
        args![id],
    );
    let found = |reply: Reply| -> Vec<String> {
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["profile_id"].as_str().unwrap().to_string())
            .collect()
    };
    for query in [
        format!("card={alice}"),
        "customer_no=C-100".to_string(),
        "email=%20Alice@Example.COM".to_string(),
        "name=ali".to_string(),
    ] {
        let reply = get(http, &format!("/api/v1/profiles/search?{query}")).await;
        assert_eq!(found(reply), vec![id.clone()], "{query}");
    }
    let none = get(http, "/api/v1/profiles/search?email=nobody@example.com").await;
    assert!(found(none).is_empty());
    assert_eq!(get(http, "/api/v1/profiles/search").await.status, 400);
    assert_eq!(
        get(http, "/api/v1/profiles/search?card=1&email=a@b.c")
            .await
            .status,
        400
    );
    assert_eq!(
        get(http, "/api/v1/profiles/search?colour=red").await.status,
        400
    );
    hub.shutdown().await;
}

/// Occurrences of `needle` in the hub's SQLite file and its WAL, as a disk image would
/// show them (PostgreSQL's files are the server's: `None`).
fn on_disk(site: &Site, needle: &str) -> Option<Vec<String>> {
    let till360_hub::config::DatabaseUrl::Sqlite(db_path) = site.config().database else {
        return None;
    };
    let mut found = Vec::new();
    for suffix in ["", "-wal"] {
        let path = PathBuf::from(format!("{}{suffix}", db_path.display()));
        let bytes = std::fs::read(&path).unwrap_or_default();
        if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
            found.push(path.display().to_string());
        }
    }
    Some(found)
}

/// Deleted means gone from the files, and from every export: after an erase through
/// the API the hub's database file and WAL hold neither the card nor the e-mail (not
/// in the erasure log, not in freed pages), and no mailing list, search or traits
/// export names the person.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_person_is_gone_from_the_files_and_every_export() {
    let site = Site::new();
    configure(
        &site,
        "127.0.0.1:0",
        "[[segment]]\nid = \"vip\"\nname = \"Best customers\"\nwhere = [\"frequency >= 1\"]\n",
    );
    let hub = start(&site).await;
    let http = hub.http_addr();
    let alice = card("240100000041");
    let bob = card("240100000042");
    let id = alice_and_bob(&site, &hub, &alice, &bob).await;
    let list = get(http, "/api/v1/segments/vip/members.csv?channel=email").await;
    assert!(list.body.contains("alice@example.com"), "{}", list.body);
    if let Some(found) = on_disk(&site, "alice@example.com") {
        assert!(!found.is_empty());
    }

    let erased = erase(http, &id).await;
    assert_eq!(erased.status, 200, "{}", erased.body);

    let list = get(http, "/api/v1/segments/vip/members.csv?channel=email").await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(!list.body.contains("alice"), "{}", list.body);
    for query in [
        format!("card={alice}"),
        "email=alice@example.com".to_string(),
        "name=Alice".to_string(),
    ] {
        let found = get(http, &format!("/api/v1/profiles/search?{query}")).await;
        assert_eq!(found.status, 200, "{query}: {}", found.body);
        assert_eq!(found.json(), json!([]), "{query}");
    }
    let mut export = Vec::new();
    let traits = site.config().traits;
    site.with_db(|db| {
        till360_hub::jobs::export_csv(
            db,
            &traits,
            chrono::NaiveDate::from_ymd_opt(2025, 12, 31).unwrap(),
            90,
            &mut export,
        )
        .unwrap()
    });
    let export = String::from_utf8(export).unwrap();
    assert!(
        !export.contains(&id) && !export.contains("C-100"),
        "{export}"
    );

    for needle in [alice.as_str(), "alice@example.com"] {
        if let Some(found) = on_disk(&site, needle) {
            assert_eq!(found, Vec::<String>::new(), "{needle}");
        }
    }
    hub.shutdown().await;
}

/// An erase refreshes the digest feed at once (the debounced trigger a traits run
/// uses), not at the next timer: a connected till of the store gets the removal of
/// the card's digest while the timer is a day away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erase_removes_the_digest_from_the_tills_at_once() {
    use crate::downlink_digests::{card_key, subscribed};
    use till360_shared::wire::Message;

    let site = Site::new();
    configure(&site, "127.0.0.1:0", "[digests]\nrefresh_seconds = 86400\n");
    let hub = start(&site).await;
    let http = hub.http_addr();
    let alice = card("240100000051");
    let bob = card("240100000052");
    let id = alice_and_bob(&site, &hub, &alice, &bob).await;
    // The receipts of the fixture are old: a window that takes them in.
    let shop = AgentId::new("S001", "T05");
    let recent = chrono::Utc::now().timestamp_millis() - 86_400_000;
    send_all(
        &site,
        hub.quic_addr(),
        &shop,
        vec![receipt(&shop, 1, recent, Some(&alice), 300)],
    )
    .await;
    assert!(hub.refresh_digests().await.unwrap().changed >= 1);

    let till = AgentId::new("S001", "T09");
    let mut client = subscribed(&site, hub.quic_addr(), &till, 0, 0).await;
    let alice_key = card_key(&site, alice.as_str());
    let mut version = 0;
    loop {
        match client.recv().await {
            Ok(Message::Digests {
                entries,
                up_to_version,
                ..
            }) => {
                version = up_to_version;
                if entries
                    .iter()
                    .any(|e| e.card_key == alice_key && e.digest.is_some())
                {
                    break;
                }
            }
            Ok(Message::Erasures { .. }) => {}
            other => panic!("expected Alice's digest (feed at v{version}), got {other:?}"),
        }
    }

    let erased = erase(http, &id).await;
    assert_eq!(erased.status, 200, "{}", erased.body);
    // `recv` waits a bounded time: far shorter than the digest timer.
    loop {
        match client.recv().await {
            Ok(Message::Digests { entries, .. }) => {
                if entries
                    .iter()
                    .any(|e| e.card_key == alice_key && e.digest.is_none())
                {
                    break;
                }
            }
            Ok(Message::Erasures { .. }) => {}
            other => panic!("expected the removal of Alice's digest, got {other:?}"),
        }
    }
    hub.shutdown().await;
}
