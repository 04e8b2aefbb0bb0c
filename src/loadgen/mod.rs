//! `till360 loadgen`: N simulated tills, each with its own certificate (issued from a
//! PKI folder) and its own QUIC connection, send R synthetic receipts to a running hub
//! and wait for every acknowledgement; one JSON line sums it up.
//!
//! Each till speaks the real protocol through the shared [`UplinkSession`] and codec
//! (no journal, no ptys): the receipts come from `till360_hub::synthetic`, and a till's
//! ack latency is measured per `Events` frame, from the write to the ack covering it.
//!
//! [`UplinkSession`]: till360_shared::sync::UplinkSession

mod till;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use till360_agent::config::HubLink;
use till360_shared::AgentId;

pub use till::{run_till, TillOutcome, TillPlan};

/// How many times one till reconnects after a failed connection before it gives up.
const ATTEMPTS: u32 = 3;

#[derive(Debug, Clone, clap::Args)]
pub struct LoadgenArgs {
    /// The PKI folder of `till360-hub ca init` (ca.pem, ca.key).
    #[arg(long)]
    pub pki: PathBuf,
    /// The hub's QUIC address, HOST:PORT.
    #[arg(long)]
    pub hub: String,
    /// Simulated tills (stores LG001…, till T01), each on its own connection.
    #[arg(long, default_value_t = 10)]
    pub agents: usize,
    /// Receipts each till sends.
    #[arg(long, default_value_t = 100)]
    pub receipts: u64,
    /// Receipts per `Events` frame.
    #[arg(long, default_value_t = 50)]
    pub batch: usize,
    /// Receipts sent and not yet acknowledged, per till.
    #[arg(long, default_value_t = 500)]
    pub window: u64,
    /// The name the hub's certificate carries.
    #[arg(long, default_value = "localhost")]
    pub server_name: String,
    /// Where the tills' certificates are written (default: a temporary folder).
    #[arg(long)]
    pub certs: Option<PathBuf>,
}

/// The one JSON line `loadgen` prints.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct LoadReport {
    pub agents: usize,
    /// Receipts the hub acknowledged (N × R when nothing failed).
    pub receipts: u64,
    pub seconds: f64,
    pub receipts_per_s: f64,
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    /// Failed connections (each retried up to 3 times) plus tills that gave up.
    pub errors: u64,
}

/// The store name of simulated till `i` (from 0): `LG001`, `LG002`, …
pub fn store_name(i: usize) -> String {
    format!("LG{:03}", i + 1)
}

/// Issues a certificate for every simulated till into `certs/STORE/`.
pub fn issue_certificates(pki: &Path, certs: &Path, agents: usize) -> anyhow::Result<Vec<PathBuf>> {
    (0..agents)
        .map(|i| {
            let store = store_name(i);
            let out = certs.join(&store);
            till360_hub::pki::issue_agent(pki, &store, "T01", &out).with_context(|| {
                format!(
                    "cannot issue a certificate for {store}/T01 from {}",
                    pki.display()
                )
            })?;
            Ok(out)
        })
        .collect()
}

/// The uplink settings of a till whose certificate lies in `dir`.
pub fn hub_link(args: &LoadgenArgs, dir: &Path) -> HubLink {
    HubLink {
        addresses: vec![args.hub.clone()],
        server_name: args.server_name.clone(),
        ca: dir.join("ca.pem"),
        cert: dir.join("agent.pem"),
        key: dir.join("agent.key"),
        batch_max: args.batch.max(1),
        window: args.window.max(1),
        origin: "loadgen".into(),
    }
}

/// Runs the load and returns the report (also for tests and benchmarks).
pub async fn run(args: LoadgenArgs) -> anyhow::Result<LoadReport> {
    anyhow::ensure!(args.agents > 0, "--agents must be at least 1");
    let temp;
    let certs = match &args.certs {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::tempdir().context("cannot create a temporary folder")?;
            temp.path().to_path_buf()
        }
    };
    let dirs = {
        let (pki, certs, n) = (args.pki.clone(), certs.clone(), args.agents);
        tokio::task::spawn_blocking(move || issue_certificates(&pki, &certs, n))
            .await
            .context("certificate task failed")??
    };
    let addr = tokio::net::lookup_host(&args.hub)
        .await
        .with_context(|| format!("cannot resolve --hub {}", args.hub))?
        .next()
        .with_context(|| format!("--hub {}: no address", args.hub))?;

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, dir) in dirs.iter().enumerate() {
        let link = hub_link(&args, dir);
        let config = till360_agent::uplink::client_config(&link)
            .with_context(|| format!("TLS files of {}", dir.display()))?;
        let plan = TillPlan {
            agent: AgentId::new(store_name(i), "T01"),
            hub: addr,
            server_name: args.server_name.clone(),
            config,
            receipts: args.receipts,
            batch: args.batch.max(1),
            window: args.window.max(1),
            seed: i as u64 + 1,
            attempts: ATTEMPTS,
        };
        tasks.spawn(run_till(plan));
    }
    let mut latencies = Vec::new();
    let mut receipts = 0;
    let mut errors = 0;
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(outcome) => {
                receipts += outcome.acked;
                errors += outcome.errors;
                if outcome.acked < args.receipts {
                    errors += 1;
                    if let Some(e) = &outcome.last_error {
                        tracing::warn!("{}: gave up: {e}", outcome.agent);
                    }
                }
                latencies.extend(outcome.ack_latencies);
            }
            Err(e) => {
                tracing::error!("till task failed: {e}");
                errors += 1;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort();
    Ok(LoadReport {
        agents: args.agents,
        receipts,
        seconds: round3(seconds),
        receipts_per_s: round3(receipts as f64 / seconds.max(1e-9)),
        ack_p50_ms: round3(millis(percentile(&latencies, 50.0))),
        ack_p99_ms: round3(millis(percentile(&latencies, 99.0))),
        errors,
    })
}

/// Nearest-rank percentile of sorted samples (zero when there are none).
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The command: runs the load on a fresh runtime and prints the JSON line.
pub fn main(args: LoadgenArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = runtime.block_on(run(args))?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

#[cfg(test)]
mod tests;
