//! The console's 360° page beside the JSON API for the same profile, over HTTP on
//! loopback against a real hub (`server::start`) on SQLite: a customer with 2,000
//! receipts among 1M profiles (every 4th with 3 receipts), and random small customers.
//! Requests alternate between the two so both see the same cache state; each time is
//! the whole request as the client sees it (so the server's share is at most that).
//!
//! The goal (issue 12): the 360° page of the big customer in p99 ≤ 50 ms.
//!
//! `cargo bench -p till360-hub --bench console`; `TILL360_BENCH_PROFILES=N` (default
//! 1M), `TILL360_BENCH_RECEIPTS=N` (the big customer's, default 2,000),
//! `TILL360_BENCH_REQUESTS=N` (each kind, default 300).

#[allow(unused_macros)]
#[path = "../tests/common/mod.rs"]
mod common;

#[path = "support/profiles.rs"]
mod profiles;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::Site;
use till360_hub::config::DatabaseUrl;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn percentiles(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.50).as_secs_f64() * 1e3, at(0.99).as_secs_f64() * 1e3)
}

/// One GET, timed; the status and body length.
async fn timed_get(http: SocketAddr, path: &str, cookie: &str) -> (Duration, u16, usize) {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {http}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
    );
    let started = Instant::now();
    let (status, _, body) = common::http_exchange(http, &request).await;
    (started.elapsed(), status, body.len())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let profiles_n = env("TILL360_BENCH_PROFILES", 1_000_000).max(2);
    let receipts = env("TILL360_BENCH_RECEIPTS", 2_000);
    let requests = env("TILL360_BENCH_REQUESTS", 300).max(1);
    let site = Site::on(common::engine::TestDatabase::sqlite());
    let DatabaseUrl::Sqlite(db) = site.config().database else {
        unreachable!("a SQLite site");
    };
    std::fs::create_dir_all(db.parent().expect("a data folder")).expect("data folder");
    let started = Instant::now();
    profiles::fill(&db, profiles_n);
    let big = profiles_n / 2;
    profiles::add_receipts(&db, big, receipts);
    profiles::count_receipt_days(&db);
    println!(
        "console: {profiles_n} profiles, one with {} receipts, filled in {:.1} s",
        receipts + if big.is_multiple_of(4) { 3 } else { 0 },
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let hub = site.start().await;
    println!(
        "hub started with its traits run in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let http = hub.http_addr();
    // One session for every console request (no api_token: issued on the first visit).
    let first = format!("GET /console/ HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n");
    let (_, head, _) = common::http_exchange(http, &first).await;
    let cookie = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_string();

    let big_id = profiles::profile_id(big);
    let mut state = 0x2545_F491_4F6C_DD1D_u64;
    let mut small = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        profiles::profile_id((state % profiles_n as u64) as usize)
    };
    for (what, ids) in [
        (
            "big customer",
            (0..requests).map(|_| big_id.clone()).collect::<Vec<_>>(),
        ),
        ("random customers", (0..requests).map(|_| small()).collect()),
    ] {
        let (mut page, mut api) = (Vec::new(), Vec::new());
        let (mut page_bytes, mut api_bytes) = (0, 0);
        for id in &ids {
            let (t, status, len) =
                timed_get(http, &format!("/console/customers/{id}"), &cookie).await;
            assert_eq!(status, 200, "the 360° page of {id}");
            page.push(t);
            page_bytes = len;
            let (t, status, len) =
                timed_get(http, &format!("/api/v1/profiles/{id}"), &cookie).await;
            assert_eq!(status, 200, "the API's view of {id}");
            api.push(t);
            api_bytes = len;
        }
        let (p50, p99) = percentiles(&mut page);
        let (b50, b99) = percentiles(&mut api);
        println!("{what}, {requests} requests each:");
        println!(
            "  console 360° page (HTML):       p50 {p50:>6.2} ms  p99 {p99:>6.2} ms  ({page_bytes} bytes)"
        );
        println!(
            "  baseline GET /api/v1/profiles:  p50 {b50:>6.2} ms  p99 {b99:>6.2} ms  ({api_bytes} bytes)"
        );
        if what == "big customer" {
            println!(
                "  goal p99 ≤ 50 ms: {}",
                if p99 <= 50.0 { "met" } else { "NOT met" }
            );
        }
    }
    // The other pages, for the record: the overview scans 30 days of receipts.
    println!("other pages, {} requests each:", requests.min(50));
    for path in [
        "/console/",
        "/console/segments",
        "/console/tills",
        "/console/customers?q=Last12",
    ] {
        let mut times = Vec::new();
        for _ in 0..requests.min(50) {
            let (t, status, _) = timed_get(http, path, &cookie).await;
            assert_eq!(status, 200, "{path}");
            times.push(t);
        }
        let (p50, p99) = percentiles(&mut times);
        println!("  {path:<32} p50 {p50:>7.2} ms  p99 {p99:>7.2} ms");
    }
    drop(hub);
}
