//! API reads under load: `GET /api/v1/profiles/by-card/{card}` from `wrk` (16 connections,
//! 2 threads, on loopback) against a real hub (`till360_hub::server` on 127.0.0.1 ports),
//! rotating over the cards of customers with ~50 receipts each, among many customers.
//!
//! For each engine (SQLite; PostgreSQL when `TILL360_TEST_POSTGRES` names a server, on a
//! database of its own, dropped at the end) it prints, from the same run:
//! - `health`: `GET /api/v1/health` (no database): what the HTTP stack and wrk reach on
//!   this machine, the ceiling;
//! - `by-card, hub idle`: the baseline;
//! - `by-card while tills sync`: simulated tills (real QUIC, mutual TLS, the hub's wire
//!   protocol) send receipt batches at a steady rate during the whole wrk run; the ingest
//!   rate the hub acknowledged meanwhile is printed beside it.
//!
//! The goal (issue 11): ≥ 2,000 requests/s with p99 ≤ 20 ms on SQLite while tills sync.
//!
//! `cargo bench -p till360-hub --bench api_reads`. Needs `wrk` (`apt-get install -y wrk`);
//! without it the bench says so and exits non-zero. Not run in CI.
//! Environment: `TILL360_BENCH_SECONDS` (each wrk run, default 10),
//! `TILL360_BENCH_PROBED` (customers probed, default 400, ~50 receipts each),
//! `TILL360_BENCH_CUSTOMERS` (other customers, default 20,000),
//! `TILL360_BENCH_SYNC_RATE` (receipts/s the tills send while syncing, default 1,000),
//! `TILL360_BENCH_TILLS` (syncing tills, default 8),
//! `TILL360_BENCH_ENGINES` (`sqlite,postgres` by default).

// The hub tests' helpers (a site, a minimal QUIC agent); the bench uses a few of them.
#[allow(unused_macros)]
#[path = "../tests/common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::engine::TestDatabase;
use common::{Agent, Site};
use till360_hub::synthetic::Generator;
use till360_shared::wire::Message;
use till360_shared::{AgentId, CardNumber, Event, Timestamp};

/// Events per batch while seeding.
const SEED_BATCH: usize = 500;
/// Receipts each probed customer has, on average.
const RECEIPTS_PER_PROBED: usize = 50;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().replace('_', "").parse().ok())
        .unwrap_or(default)
}

struct Settings {
    seconds: usize,
    probed: usize,
    customers: usize,
    sync_rate: usize,
    tills: usize,
}

fn main() -> ExitCode {
    if let Err(e) = Command::new("wrk").arg("--version").output() {
        eprintln!(
            "api_reads: cannot run wrk ({e}). Install it: `apt-get install -y wrk` \
             (Debian/Ubuntu), then run `cargo bench -p till360-hub --bench api_reads` again."
        );
        return ExitCode::FAILURE;
    }
    let settings = Settings {
        seconds: env("TILL360_BENCH_SECONDS", 10).max(1),
        probed: env("TILL360_BENCH_PROBED", 400).max(1),
        customers: env("TILL360_BENCH_CUSTOMERS", 20_000),
        sync_rate: env("TILL360_BENCH_SYNC_RATE", 1_000).max(1),
        tills: env("TILL360_BENCH_TILLS", 8).max(1),
    };
    let engines = std::env::var("TILL360_BENCH_ENGINES").unwrap_or("sqlite,postgres".into());
    println!(
        "api_reads: {} probed customers with ~{RECEIPTS_PER_PROBED} receipts each, {} other \
         customers; wrk -t2 -c16 -d{}s --latency rotating over the probed cards; syncing: {} \
         tills sending {} receipts/s in all",
        settings.probed, settings.customers, settings.seconds, settings.tills, settings.sync_rate
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut failed = false;
    for engine in engines.split(',').map(str::trim) {
        let database = match engine {
            "sqlite" => TestDatabase::sqlite(),
            "postgres" => match TestDatabase::postgres_if_configured("api_reads on PostgreSQL") {
                Some(database) => database,
                None => continue,
            },
            other => {
                eprintln!("TILL360_BENCH_ENGINES: {other:?} is neither sqlite nor postgres");
                return ExitCode::FAILURE;
            }
        };
        let site = Site::on(database);
        if let Err(e) = runtime.block_on(run(engine, &site, &settings)) {
            eprintln!("api_reads on {engine}: {e}");
            failed = true;
        }
        // The site (and a PostgreSQL database) goes after the hub has stopped.
        drop(site);
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

async fn run(engine: &str, site: &Site, settings: &Settings) -> Result<(), String> {
    import_catalog(site)?;
    let hub = site.start().await;
    let started = Instant::now();
    let probed = seed(site, hub.quic_addr(), settings).await?;
    hub.recompute_traits().await.map_err(|e| e.to_string())?;
    analyze(site)?;
    println!(
        "{engine}: seeded and traits computed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let http = hub.http_addr();
    let dir = site.dir.path();
    let script = write_script(dir, &probed)?;
    check_answers(http, &probed[..3.min(probed.len())]).await?;

    let health = wrk(http, "/api/v1/health", None, settings.seconds).await?;
    let idle = wrk(http, "/", Some(&script), settings.seconds).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let tills = start_tills(site, hub.quic_addr(), settings, &stop, &acked).await?;
    let sync_started = Instant::now();
    let syncing = wrk(http, "/", Some(&script), settings.seconds).await;
    let receipts = acked.load(Ordering::Relaxed);
    let sync_secs = sync_started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for till in tills {
        till.await.map_err(|e| e.to_string())??;
    }
    let syncing = syncing?;
    println!("{engine}: requests/s      p50       p99   (ratio to idle by-card)  hub process CPU");
    health.print("health (no database, ceiling)", &idle);
    idle.print("by-card, hub idle (baseline)", &idle);
    syncing.print("by-card while tills sync", &idle);
    println!(
        "{engine}: ingest while reading: {:.0} receipts/s acknowledged (asked {}/s)",
        receipts as f64 / sync_secs,
        settings.sync_rate
    );
    let goal = syncing.rps >= 2_000.0 && syncing.p99 <= Duration::from_millis(20);
    println!(
        "{engine}: goal ≥ 2,000 req/s with p99 ≤ 20 ms while syncing: {}",
        if goal { "met" } else { "not met" }
    );
    hub.shutdown().await;
    Ok(())
}

/// The products the synthetic receipts name (by sku) and a catalogue around them, imported
/// as `till360-hub import products` does.
fn import_catalog(site: &Site) -> Result<(), String> {
    let mut csv = String::from("sku,description,category,sensitive\n");
    for (i, (name, unit)) in till360_hub::synthetic::PRODUCTS.iter().enumerate() {
        for qty in 1..=3 {
            let category = if i % 4 == 0 { "fresh" } else { "grocery" };
            writeln!(csv, "400{:010},{name},{category},no", unit * 7 + qty).expect("string");
        }
    }
    for i in 0..5_000 {
        writeln!(csv, "9{i:012},Other product {i},other,no").expect("string");
    }
    let config = site.config();
    // On a thread of its own: the PostgreSQL client must not run on a runtime thread.
    std::thread::spawn(move || -> Result<(), String> {
        let database = till360_hub::server::open_database(&config).map_err(|e| e.to_string())?;
        let conn = database.get().map_err(|e| e.to_string())?;
        let now = Timestamp::from_unix_ms(1_767_600_000_000, 0);
        till360_hub::import::products(&*conn, csv.as_bytes(), now).map_err(|e| e.to_string())?;
        Ok(())
    })
    .join()
    .map_err(|_| "the catalogue import panicked".to_string())?
}

/// On PostgreSQL, fresh planner statistics, as autovacuum gathers them within a minute of
/// the seeding: without them the planner takes the just-imported catalogue for a tiny
/// table and scans it for every view.
fn analyze(site: &Site) -> Result<(), String> {
    let config = site.config();
    std::thread::spawn(move || -> Result<(), String> {
        let database = till360_hub::server::open_database(&config).map_err(|e| e.to_string())?;
        if database.engine() == till360_hub::store::Engine::Postgres {
            let conn = database.get().map_err(|e| e.to_string())?;
            conn.batch("ANALYZE").map_err(|e| e.to_string())?;
        }
        Ok(())
    })
    .join()
    .map_err(|_| "ANALYZE panicked".to_string())?
}

/// Seeds the hub through its QUIC listener: the probed customers' receipts (~50 each)
/// from one till, the other customers' (~2 each) from another. Returns the probed cards.
async fn seed(
    site: &Site,
    hub: SocketAddr,
    settings: &Settings,
) -> Result<Vec<CardNumber>, String> {
    let mut probed = Generator::new(7, settings.probed, 100);
    let cards = probed.cards().to_vec();
    let receipts = settings.probed * RECEIPTS_PER_PROBED;
    let events = (1..=receipts as u64)
        .map(|seq| probed.receipt(&AgentId::new("S900", "T01"), seq))
        .collect();
    send_batches(site, hub, "S900", events).await?;
    if settings.customers > 0 {
        let mut others = Generator::new(11, settings.probed + settings.customers, 90);
        let events = others.events(&AgentId::new("S901", "T01"), 1, settings.customers * 2);
        send_batches(site, hub, "S901", events).await?;
    }
    Ok(cards)
}

/// Sends `events` (seq 1.. of `store`/T01) in batches, each acknowledged before the next.
async fn send_batches(
    site: &Site,
    hub: SocketAddr,
    store: &str,
    events: Vec<Event>,
) -> Result<(), String> {
    let mut till = Till::hello(site, hub, store, events.len() as u64).await?;
    for batch in events.chunks(SEED_BATCH) {
        till.send(batch.to_vec()).await?;
    }
    Ok(())
}

/// A simulated till: the hub tests' minimal QUIC agent client.
struct Till {
    agent: Agent,
    store: String,
}

impl Till {
    async fn hello(site: &Site, hub: SocketAddr, store: &str, last: u64) -> Result<Self, String> {
        let mut agent = site.connect(hub, store, "T01").await;
        let hello = Message::Hello {
            agent: AgentId::new(store, "T01"),
            journal_last_seq: last,
            software: "api_reads bench".into(),
        };
        match agent.call(&hello).await? {
            Message::Welcome { acked_seq: 0 } => Ok(Till {
                agent,
                store: store.into(),
            }),
            other => Err(format!("{store}: hello answered {other:?}")),
        }
    }

    /// Sends one batch and waits for its acknowledgement (messages the hub pushes on its
    /// own, such as digests, are skipped).
    async fn send(&mut self, batch: Vec<Event>) -> Result<(), String> {
        let last = batch.last().map_or(0, |e| e.seq);
        self.agent.send(&Message::Events(batch)).await?;
        loop {
            match self.agent.recv().await? {
                Message::Ack { acked_seq } if acked_seq == last => return Ok(()),
                Message::Ack { .. } => {}
                Message::Refused { reason, detail } => {
                    return Err(format!(
                        "{}: batch refused: {reason:?} {detail}",
                        self.store
                    ))
                }
                _ => {}
            }
        }
    }
}

/// `settings.tills` tills, each sending a batch every 100 ms so that all of them send
/// `settings.sync_rate` receipts a second, until `stop`. Each adds what the hub
/// acknowledged to `acked`.
async fn start_tills(
    site: &Site,
    hub: SocketAddr,
    settings: &Settings,
    stop: &Arc<AtomicBool>,
    acked: &Arc<AtomicU64>,
) -> Result<Vec<tokio::task::JoinHandle<Result<(), String>>>, String> {
    const TICK: Duration = Duration::from_millis(100);
    let per_tick = (settings.sync_rate / 10 / settings.tills).max(1);
    let mut handles = Vec::new();
    for t in 0..settings.tills {
        let store = format!("S{:03}", 100 + t);
        let mut till = Till::hello(site, hub, &store, u64::MAX / 2).await?;
        let (stop, acked) = (Arc::clone(stop), Arc::clone(acked));
        let mut gen = Generator::new(100 + t as u64, settings.probed + settings.customers, 90);
        handles.push(tokio::spawn(async move {
            let agent = AgentId::new(&store, "T01");
            let mut next = 1u64;
            let mut ticks = tokio::time::interval(TICK);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stop.load(Ordering::Relaxed) {
                ticks.tick().await;
                let batch: Vec<Event> = (next..next + per_tick as u64)
                    .map(|seq| gen.receipt(&agent, seq))
                    .collect();
                next += per_tick as u64;
                till.send(batch).await?;
                acked.fetch_add(per_tick as u64, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    Ok(handles)
}

/// Every probed card answers 200 with the profile and its receipts before anything is
/// measured.
async fn check_answers(http: SocketAddr, cards: &[CardNumber]) -> Result<(), String> {
    for card in cards {
        let (status, body) =
            common::http_get(http, &format!("/api/v1/profiles/by-card/{card}")).await;
        let count = body["transactions"]["count"].as_u64().unwrap_or(0);
        if status != 200 || count < 10 {
            return Err(format!("card {card}: {status}, {count} receipts: {body}"));
        }
    }
    Ok(())
}

/// A wrk script that rotates over `cards`, each wrk thread from its own place.
fn write_script(dir: &std::path::Path, cards: &[CardNumber]) -> Result<String, String> {
    let list: Vec<String> = cards.iter().map(|c| format!("\"{c}\"")).collect();
    let script = format!(
        "local cards = {{{}}}\n\
         local threads = 0\n\
         function setup(thread) thread:set(\"offset\", threads * 7919); threads = threads + 1 end\n\
         local i = 0\n\
         function request()\n\
           i = i + 1\n\
           local card = cards[((offset or 0) + i) % #cards + 1]\n\
           return wrk.format(\"GET\", \"/api/v1/profiles/by-card/\" .. card)\n\
         end\n",
        list.join(",")
    );
    let path = dir.join("by_card.lua");
    std::fs::write(&path, script).map_err(|e| e.to_string())?;
    Ok(path.display().to_string())
}

/// What one wrk run measured.
struct Measured {
    rps: f64,
    p50: Duration,
    p99: Duration,
    /// CPU time of this process (the hub and the simulated tills) per request, from
    /// `/proc/self/stat`: steadier than requests/s on a machine others load.
    cpu_per_request: Duration,
}

impl Measured {
    fn print(&self, what: &str, baseline: &Measured) {
        println!(
            "  {what:<34} {:>8.0}  {:>7.2} ms  {:>7.2} ms  ({:.2}×)  {:>6.0} µs CPU/request",
            self.rps,
            ms(self.p50),
            ms(self.p99),
            self.rps / baseline.rps,
            self.cpu_per_request.as_secs_f64() * 1e6
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs `wrk -t2 -c16 -d{seconds}s --latency` on `path` (or the script's requests) and
/// parses requests/s and the 50th and 99th percentile latencies. Any non-2xx answer or
/// socket error fails the run.
async fn wrk(
    http: SocketAddr,
    path: &str,
    script: Option<&str>,
    seconds: usize,
) -> Result<Measured, String> {
    let mut cmd = tokio::process::Command::new("wrk");
    cmd.args(["-t2", "-c16", &format!("-d{seconds}s"), "--latency"]);
    if let Some(script) = script {
        cmd.args(["-s", script]);
    }
    cmd.arg(format!("http://{http}{path}"));
    let cpu = process_cpu()?;
    let out = cmd.output().await.map_err(|e| format!("wrk: {e}"))?;
    let cpu = process_cpu()?.saturating_sub(cpu);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "wrk failed: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let mut measured = parse_wrk(&text).map_err(|e| format!("{e} in wrk's output:\n{text}"))?;
    let requests = (measured.rps * seconds as f64).max(1.0);
    measured.cpu_per_request = cpu.div_f64(requests);
    Ok(measured)
}

/// User and system CPU time of this process so far (`/proc/self/stat`, in clock ticks of
/// 10 ms, Linux's `USER_HZ`).
fn process_cpu() -> Result<Duration, String> {
    let stat = std::fs::read_to_string("/proc/self/stat").map_err(|e| e.to_string())?;
    // Fields after the command name (which may hold spaces) in parentheses: utime and
    // stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    match fields[..] {
        [user, system] => Ok(Duration::from_millis((user + system) * 10)),
        _ => Err(format!("/proc/self/stat: {stat}")),
    }
}

fn parse_wrk(text: &str) -> Result<Measured, String> {
    for bad in ["Non-2xx or 3xx responses", "Socket errors"] {
        if let Some(line) = text.lines().find(|l| l.trim_start().starts_with(bad)) {
            return Err(format!("failed requests ({})", line.trim()));
        }
    }
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .ok_or("no Requests/sec")?;
    let percentile = |p: &str| -> Result<Duration, String> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(p))
            .and_then(|v| latency(v.trim()))
            .ok_or(format!("no {p} latency"))
    };
    Ok(Measured {
        rps,
        p50: percentile("50%")?,
        p99: percentile("99%")?,
        cpu_per_request: Duration::ZERO,
    })
}

/// `123.45us`, `1.23ms`, `1.02s`, `2.00m` as wrk prints them.
fn latency(v: &str) -> Option<Duration> {
    let split = v.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = v.split_at(split);
    let number: f64 = number.parse().ok()?;
    let secs = match unit {
        "us" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        "m" => number * 60.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}
