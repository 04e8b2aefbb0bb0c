//! The HTTP API's guards: a loopback API without a token answers only requests for a
//! loopback host (no DNS rebinding), database errors are logged with a request id and
//! not shown, every request has a timeout, and one request stuck on the database does
//! not hold up the others.

use std::net::SocketAddr;

use crate::common::{self, Site};
use till360_shared::{AgentId, CardNumber, Timestamp};

async fn exchange(addr: SocketAddr, request: String) -> (u16, String, String) {
    common::http_exchange(addr, &request).await
}

async fn get_with_host(addr: SocketAddr, path: &str, host: Option<&str>) -> u16 {
    let host = host.map(|h| format!("Host: {h}\r\n")).unwrap_or_default();
    let (status, _, _) = exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\n{host}Connection: close\r\n\r\n"),
    )
    .await;
    status
}

fn request_id(head: &str) -> Option<String> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case("x-request-id")
            .then(|| value.trim().to_string())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_only_loopback_hosts_are_answered() {
    let site = Site::new();
    let hub = site.start().await;
    let http = hub.http_addr();
    for host in [
        "localhost",
        "localhost:8080",
        "127.0.0.1",
        &http.to_string(),
        "[::1]",
        "[::1]:9",
        "LOCALHOST:1",
    ] {
        assert_eq!(
            get_with_host(http, "/api/v1/agents", Some(host)).await,
            200,
            "{host}"
        );
    }
    for host in [
        Some("evil.example"),
        Some("evil.example:8080"),
        Some("localhost.evil.example"),
        Some("127.0.0.1.nip.io"),
        Some("10.0.0.1"),
        None,
    ] {
        let status = get_with_host(http, "/api/v1/agents", host).await;
        assert!(status == 421 || status == 403, "{host:?}: {status}");
    }
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_error_is_not_shown_but_carries_a_request_id() {
    let site = Site::new();
    let hub = site.start().await;
    let http = hub.http_addr();
    site.with_db(|db| db.batch("DROP TABLE agents").unwrap());
    let (status, head, body) = exchange(
        http,
        format!("GET /api/v1/agents HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 500, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = request_id(&head).expect("every answer names its request");
    assert_eq!(json["request_id"], id.as_str(), "{body}");
    assert!(
        !body.contains("agent_alerts") && !body.contains("table"),
        "{body}"
    );
    assert!(json["error"].as_str().unwrap().contains(&id), "{body}");
    hub.shutdown().await;
}

/// An erase stuck behind another process's write lock: its request times out with a
/// request id, and reads go on meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_stuck_on_the_database_times_out_and_holds_up_no_other() {
    let site = Site::new();
    let path = site.dir.path().join("hub.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{text}[api]\nrequest_timeout_seconds = 1\n")).unwrap();
    let hub = site.start().await;
    let http = hub.http_addr();
    let card = CardNumber::parse(&till360_shared::card::with_check_digit("240100000777").unwrap())
        .unwrap();
    let till = AgentId::new("S001", "T01");
    let at = Timestamp::from_unix_ms(1_764_060_000_000, 60);
    common::send_all(
        &site,
        hub.quic_addr(),
        &till,
        vec![common::one_line_receipt(
            &till,
            1,
            Some(&card),
            at,
            ("Tea", 300),
        )],
    )
    .await;
    let (status, profile) =
        common::http_get(http, &format!("/api/v1/profiles/by-card/{card}")).await;
    assert_eq!(status, 200);
    let id = profile["profile_id"].as_str().unwrap().to_string();

    // Another process holds the write lock (an import, say) for the whole test.
    let blocker = common::WriteBlocker::hold(&site);
    let (status, head, body) = exchange(
        http,
        format!(
            "DELETE /api/v1/profiles/{id} HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert!(status == 503 || status == 504, "{status} {body}");
    let rid = request_id(&head).expect("a request id");
    assert!(body.contains(&rid), "{body}");
    // The erase still waits for the lock on its connection; reads have others.
    for path in [
        format!("/api/v1/profiles/{id}"),
        "/api/v1/agents".to_string(),
        "/api/v1/profiles?limit=5".to_string(),
    ] {
        let (status, _) = common::http_get(http, &path).await;
        assert_eq!(status, 200, "{path}");
    }
    blocker.release();
    hub.shutdown().await;
}
