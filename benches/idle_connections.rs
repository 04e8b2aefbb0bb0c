//! Hub memory per idle agent: a real hub process (`till360 hub run`) and N tills, each
//! with its own certificate, connected from this process, past `Hello`/`Welcome`, then
//! idle (keep-alives only). The hub's RSS (`/proc/PID/status` VmRSS) before and after,
//! beside the RSS of the idle hub from the same run.
//!
//! `cargo bench -p till360 --bench idle_connections`; `TILL360_BENCH_TILLS=N` changes N
//! (default 2,000; the goal is ≤ 100 KiB per idle connection).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use till360::http_client::http_get;
use till360::loadgen::{hub_link, issue_certificates, store_name, LoadgenArgs};
use till360::rig::{free_tcp_addr, free_udp_addr, wait_until, write_hub_config};
use till360_shared::codec::{encode_frame, FrameDecoder};
use till360_shared::wire::Message;
use till360_shared::AgentId;

/// Connections opened at once (handshakes cost the hub CPU, not memory).
const CONCURRENT_CONNECTS: usize = 64;
/// Tills sharing one client UDP socket (the hub keeps state per connection, not per
/// socket).
const TILLS_PER_SOCKET: usize = 100;
const SETTLE: Duration = Duration::from_secs(3);

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("hub status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

fn main() {
    let tills: usize = std::env::var("TILL360_BENCH_TILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = dir.path().join("pki");
    till360_hub::pki::init_ca(
        &pki,
        &["localhost".to_string()],
        &["127.0.0.1".parse().expect("ip")],
        false,
    )
    .expect("init CA");
    let started = Instant::now();
    let certs = issue_certificates(&pki, &dir.path().join("certs"), tills).expect("certificates");
    println!(
        "idle connections: {tills} tills, certificates issued in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let files = write_hub_config(
        dir.path(),
        &pki,
        free_udp_addr().expect("udp port"),
        free_tcp_addr().expect("tcp port"),
    )
    .expect("hub.toml");
    let log = std::fs::File::create(dir.path().join("hub.log")).expect("log");
    let hub = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_till360"))
            .args(["hub", "run", "--config"])
            .arg(&files.config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn hub"),
    );
    let up = wait_until(Duration::from_secs(60), || {
        http_get(files.http, "/api/v1/health", Duration::from_secs(2))
            .ok()
            .filter(|r| r.status == 200)
    });
    assert!(up.is_some(), "hub did not come up");
    std::thread::sleep(SETTLE);
    let pid = hub.0.id();
    let idle_hub = rss_kib(pid);

    let args = LoadgenArgs {
        pki: pki.clone(),
        hub: files.quic.to_string(),
        agents: tills,
        receipts: 0,
        batch: 1,
        window: 1,
        server_name: "localhost".into(),
        certs: None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let connected_at = Instant::now();
    let held = runtime.block_on(connect_all(&args, &certs));
    println!(
        "  {} tills connected (hello/welcome) in {:.1} s",
        held.len(),
        connected_at.elapsed().as_secs_f64()
    );
    std::thread::sleep(SETTLE);
    let loaded = rss_kib(pid);
    let per = (loaded.saturating_sub(idle_hub)) as f64 / held.len().max(1) as f64;
    println!("  baseline: idle hub RSS                 {idle_hub:>8} KiB");
    println!(
        "  hub RSS with {:>5} idle tills          {loaded:>8} KiB",
        held.len()
    );
    println!("  growth per idle connection             {per:>8.1} KiB  (goal ≤ 100 KiB)");
    assert_eq!(held.len(), tills, "every till connected");
    drop(held);
    drop(hub);
    drop(dir);
}

type Held = (quinn::Connection, quinn::SendStream, quinn::RecvStream);

async fn connect_all(args: &LoadgenArgs, certs: &[std::path::PathBuf]) -> Vec<Held> {
    let endpoints: Vec<quinn::Endpoint> = (0..certs.len().div_ceil(TILLS_PER_SOCKET))
        .map(|_| quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("socket"))
        .collect();
    let hub: std::net::SocketAddr = args.hub.parse().expect("hub addr");
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(CONCURRENT_CONNECTS));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, dir) in certs.iter().enumerate() {
        let endpoint = endpoints[i / TILLS_PER_SOCKET].clone();
        let config = till360_agent::uplink::client_config(&hub_link(args, dir)).expect("config");
        let gate = gate.clone();
        let agent = AgentId::new(store_name(i), "T01");
        let name = dir_name(dir);
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await.expect("gate");
            connect_one(&endpoint, config, hub, agent, name).await
        });
    }
    let mut held = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done.expect("task") {
            Ok(h) => held.push(h),
            Err(e) => eprintln!("  a till failed: {e}"),
        }
    }
    // The endpoints live on in the connections' handles.
    held
}

fn dir_name(dir: &Path) -> String {
    dir.display().to_string()
}

async fn connect_one(
    endpoint: &quinn::Endpoint,
    config: quinn::ClientConfig,
    hub: std::net::SocketAddr,
    agent: AgentId,
    name: String,
) -> Result<Held, String> {
    let fail = |e: String| format!("{name}: {e}");
    let conn = endpoint
        .connect_with(config, hub, "localhost")
        .map_err(|e| fail(e.to_string()))?
        .await
        .map_err(|e| fail(e.to_string()))?;
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| fail(e.to_string()))?;
    let hello = Message::Hello {
        agent,
        journal_last_seq: 0,
        software: "bench".into(),
    };
    let frame = encode_frame(&hello).map_err(|e| fail(e.to_string()))?;
    send.write_all(&frame)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let mut decoder = FrameDecoder::new();
    let mut buf = [0u8; 1024];
    loop {
        if let Some(msg) = decoder.poll().map_err(|e| fail(e.to_string()))? {
            return match msg {
                Message::Welcome { .. } => Ok((conn, send, recv)),
                other => Err(fail(format!("expected welcome, got {}", other.name()))),
            };
        }
        match recv.read(&mut buf).await.map_err(|e| fail(e.to_string()))? {
            Some(n) => decoder.feed(&buf[..n]),
            None => return Err(fail("stream closed".into())),
        }
    }
}
