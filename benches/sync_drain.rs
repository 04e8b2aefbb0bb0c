//! Backlog drain: N events journaled in a real agent journal (SQLite file on disk), then
//! the agent's real uplink sends them over QUIC on 127.0.0.1 to a real hub (in this
//! process) until the hub has committed and acknowledged all of them. Beside it, from
//! the same run: the hub's raw ingest of the same events through its store writer on a
//! fresh database, without the network and without the agent's journal.
//!
//! Where the time goes, each stage alone on the same events: reading the journal (the
//! uplink's `read_linked` in batches), encoding the batches as frames, and the hub's
//! ingest (the baseline).
//!
//! `cargo bench -p till360 --bench sync_drain`; `TILL360_BENCH_EVENTS=N` changes N
//! (default 1,000,000; the goal is ≤ 20 s on SQLite). `TILL360_BENCH_DATABASE=postgres://…`
//! runs the hub on PostgreSQL: each run creates its own databases on that server and
//! drops them (default: SQLite files).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use till360_agent::config::HubLink;
use till360_agent::journal::Journal;
use till360_agent::uplink::{client_config, Uplink, DEFAULT_REQUEST_TIMEOUT};
use till360_hub::config::{DatabaseUrl, HubConfig, PostgresUrl};
use till360_hub::store::postgres::TemporaryDatabase;
use till360_hub::store::{spawn_writer, Database, DatabaseOptions, SqlStore};
use till360_hub::synthetic::Generator;
use till360_shared::wire::Message;
use till360_shared::{codec, AgentId, Event, Timestamp};

const BATCH: usize = 500;
const WINDOW: u64 = 4000;

fn main() {
    let count: u64 = std::env::var("TILL360_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let agent = AgentId::new("S001", "T01");
    let dir = tempfile::tempdir().expect("tempdir");
    println!("sync drain: {count} synthetic events (receipts and card scans), batch {BATCH}, window {WINDOW}");

    let started = Instant::now();
    let journal_dir = dir.path().join("agent");
    fill_journal(&journal_dir, &agent, count);
    println!(
        "  journal filled in {:.1} s (prefilled on tmpfs, then copied to disk)",
        started.elapsed().as_secs_f64()
    );

    let (read, encode) = journal_stages(&journal_dir, &agent, count);
    let server = std::env::var("TILL360_BENCH_DATABASE")
        .ok()
        .filter(|url| !url.is_empty())
        .map(|url| PostgresUrl::parse(&url).expect("TILL360_BENCH_DATABASE"));
    println!(
        "  hub database: {}",
        server
            .as_ref()
            .map_or("SQLite (a file on disk)".to_string(), |s| format!(
                "PostgreSQL ({s})"
            ))
    );
    let hub_db = server
        .as_ref()
        .map(|s| TemporaryDatabase::create(s, "bench_sync_drain_hub").expect("hub database"));
    let baseline_db = server.as_ref().map(|s| {
        TemporaryDatabase::create(s, "bench_sync_drain_baseline").expect("baseline database")
    });
    let url = |scratch: &Option<TemporaryDatabase>, file: &str| match scratch {
        Some(db) => DatabaseUrl::Postgres(db.url().clone()),
        None => DatabaseUrl::Sqlite(dir.path().join(file)),
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let rate = |d: Duration| count as f64 / d.as_secs_f64();
    let drain = runtime.block_on(drain_over_quic(
        dir.path(),
        &journal_dir,
        &agent,
        count,
        &url(&hub_db, "hub/hub.db"),
    ));
    println!(
        "  drain over QUIC, journal → hub commit: {:>8.2} s  {:>9.0} events/s  (goal ≤ 20 s for 1M)",
        drain.as_secs_f64(),
        rate(drain)
    );
    // Opened off the runtime: the PostgreSQL client blocks on a runtime of its own.
    let database = Database::open(
        &url(&baseline_db, "baseline.db"),
        &DatabaseOptions::default(),
    )
    .expect("open database");
    let store = SqlStore::open(&database).expect("open store");
    let baseline = runtime.block_on(raw_ingest(store, &agent, count));

    println!(
        "  baseline hub raw ingest (writer, no network): {:>8.2} s  {:>9.0} events/s",
        baseline.as_secs_f64(),
        rate(baseline)
    );
    println!(
        "  ratio drain / raw ingest: {:.2}",
        drain.as_secs_f64() / baseline.as_secs_f64()
    );
    println!(
        "  stages alone: journal reads {:.2} s, frame encoding {:.2} s, hub ingest {:.2} s",
        read.as_secs_f64(),
        encode.as_secs_f64(),
        baseline.as_secs_f64()
    );
}

/// The agent's side alone: the journal read in the uplink's batches (with their chain
/// links), and those batches encoded as the frames the uplink sends.
fn journal_stages(journal_dir: &Path, agent: &AgentId, count: u64) -> (Duration, Duration) {
    let journal = Journal::open(journal_dir, agent).expect("open journal");
    let (mut read, mut encode) = (Duration::ZERO, Duration::ZERO);
    let mut first = 1;
    while first <= count {
        let started = Instant::now();
        let linked = journal.read_linked(first, BATCH).expect("read");
        read += started.elapsed();
        let started = Instant::now();
        let events: Vec<Event> = linked.into_iter().map(|(event, _)| event).collect();
        first += events.len() as u64;
        let frame = codec::encode_frame(&Message::Events(events)).expect("encode");
        std::hint::black_box(frame);
        encode += started.elapsed();
    }
    (read, encode)
}

/// The same events the journal holds, in seq order (the generator is deterministic).
fn events(agent: &AgentId, first: u64, count: usize, gen: &mut Generator) -> Vec<Event> {
    gen.events(agent, first, count)
}

/// Appends `count` events through the journal's own API. Each append is one fsynced
/// transaction, so it runs on tmpfs; the closed file is then copied to disk.
fn fill_journal(target: &Path, agent: &AgentId, count: u64) {
    let shm = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("tempdir");
    let mut gen = Generator::new(2026, 2_000, 80);
    let path = {
        let mut journal = Journal::open(shm.path(), agent).expect("open journal");
        let mut seq = 1;
        while seq <= count {
            let n = (count - seq + 1).min(10_000) as usize;
            for e in events(agent, seq, n, &mut gen) {
                journal.append(e.recorded_at, e.kind).expect("append");
            }
            seq += n as u64;
        }
        journal.checkpoint();
        journal.path().to_path_buf()
    };
    std::fs::create_dir_all(target).expect("agent dir");
    for entry in std::fs::read_dir(shm.path()).expect("read tmpfs dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), target.join(entry.file_name())).expect("copy journal");
    }
    assert!(target.join(path.file_name().expect("file name")).exists());
}

async fn drain_over_quic(
    site: &Path,
    journal_dir: &Path,
    agent: &AgentId,
    count: u64,
    database: &DatabaseUrl,
) -> Duration {
    let pki = site.join("pki");
    till360_hub::pki::init_ca(
        &pki,
        &["localhost".to_string()],
        &["127.0.0.1".parse().expect("ip")],
        false,
    )
    .expect("init CA");
    let certs = site.join("certs");
    till360_hub::pki::issue_agent(&pki, &agent.store, &agent.till, &certs).expect("issue");
    let hub_toml = site.join("hub.toml");
    let database = match database {
        DatabaseUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
        DatabaseUrl::Postgres(url) => url.connection_string(),
    };
    std::fs::write(
        &hub_toml,
        format!(
            "data_dir = \"hub\"\nlisten = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n\
             ca = \"pki/ca.pem\"\ncert = \"pki/hub.pem\"\nkey = \"pki/hub.key\"\n\
             [database]\nurl = \"{database}\"\n"
        ),
    )
    .expect("hub.toml");
    let hub = till360_hub::server::start(HubConfig::load(&hub_toml).expect("hub config"))
        .await
        .expect("hub starts");

    let journal = Journal::open(journal_dir, agent).expect("open copied journal");
    assert_eq!(
        journal.last_seq(),
        count,
        "the copied journal holds every event"
    );
    let link = HubLink {
        addresses: vec![hub.quic_addr().to_string()],
        server_name: "localhost".into(),
        ca: certs.join("ca.pem"),
        cert: certs.join("agent.pem"),
        key: certs.join("agent.key"),
        batch_max: BATCH,
        window: WINDOW,
        origin: "bench".into(),
    };
    let (_seq_tx, journal_seq) = tokio::sync::watch::channel(count);
    let uplink = Uplink {
        agent: agent.clone(),
        client_config: client_config(&link).expect("client config"),
        hub: link,
        journal: Arc::new(Mutex::new(journal)),
        journal_seq,
        erased_cards: None,
        news: None,
        requests: None,
        request_timeout: DEFAULT_REQUEST_TIMEOUT,
    };
    let started = Instant::now();
    let handle = uplink.spawn();
    let mut status = handle.status();
    let waited = tokio::time::timeout(
        Duration::from_secs(600),
        status.wait_for(|s| s.acked_seq >= count),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    let elapsed = started.elapsed();
    assert!(
        waited,
        "the hub acknowledged only {} of {count}",
        status.borrow().acked_seq
    );
    handle.shutdown().await;
    hub.shutdown().await;
    elapsed
}

async fn raw_ingest(store: SqlStore, agent: &AgentId, count: u64) -> Duration {
    let (writer, thread) = spawn_writer(Box::new(store)).expect("writer");
    let mut gen = Generator::new(2026, 2_000, 80);
    // Generated outside the clock, a chunk at a time to bound memory.
    let mut elapsed = Duration::ZERO;
    let mut seq = 1;
    while seq <= count {
        let chunk = events(
            agent,
            seq,
            (count - seq + 1).min(100_000) as usize,
            &mut gen,
        );
        seq += chunk.len() as u64;
        let started = Instant::now();
        for batch in chunk.chunks(BATCH) {
            let last = batch.last().map_or(0, |e| e.seq);
            let now = Timestamp::from_utc(chrono::Utc::now(), 0);
            let acked = writer
                .ingest(agent.clone(), batch.to_vec(), now)
                .await
                .expect("commit");
            assert_eq!(acked, Ok(last));
        }
        elapsed += started.elapsed();
    }
    drop(writer);
    thread.join();
    elapsed
}
