//! `till360 demo`: a hub and two tills (a supermarket and a boutique) in one process,
//! each till on three virtual serial ports, a morning of shopping played through them,
//! then the merged profiles as the hub's API shows them.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use till360_agent::config::AgentConfig;
use till360_agent::journal::Journal;
use till360_hub::config::HubConfig;
use till360_shared::AgentId;
use tokio::sync::watch;

use crate::http_client::http_get;
use crate::rig::{
    fetch_profile, free_tcp_addr, free_udp_addr, install_layouts, play_visit, profile_differences,
    write_agent_config, write_hub_config, AgentSettings, PlayOptions, TillDevices,
};
use crate::sim::{Morning, MorningPlan, SimRng, StoreSetup, Suffix, Visit};

/// How long the hub may take to have everything after the last receipt.
const SYNC_DEADLINE: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Folder for the PKI, configs and data (default: a new temporary folder, kept).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// How many receipts the morning has.
    #[arg(long, default_value_t = 300)]
    pub receipts: usize,
    /// Seed of the simulation (the same seed plays the same morning).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Stop once everything is at the hub instead of serving until Ctrl-C.
    #[arg(long)]
    pub exit: bool,
}

struct DemoTill {
    setup: StoreSetup,
    devices: TillDevices,
    data_dir: PathBuf,
}

/// Runs the demo; `Ok` only if every receipt reached the hub exactly once.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let dir = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            d.clone()
        }
        None => tempfile::Builder::new()
            .prefix("till360-demo-")
            .tempdir()
            .context("creating a temporary folder")?
            .keep(),
    };
    eprintln!("demo folder: {}", dir.display());

    // PKI: a fresh CA per run, so a reused --dir never mixes certificates.
    let pki = dir.join("pki");
    till360_hub::pki::init_ca(
        &pki,
        &["localhost".to_string()],
        &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
        true,
    )
    .context("creating the demo CA")?;
    let layouts = dir.join("receipts");
    install_layouts(&layouts)?;

    let hub_files = write_hub_config(&dir, &pki, free_udp_addr()?, free_tcp_addr()?)?;
    let hub_config = HubConfig::load(&hub_files.config)?;
    let hub = till360_hub::server::start(hub_config)
        .await
        .context("starting the hub")?;
    let http = hub.http_addr();
    eprintln!("hub: QUIC udp {}, API http://{http}/", hub.quic_addr());

    let stores = StoreSetup::demo_stores();
    let (stop_agents, stop_rx) = watch::channel(false);
    let mut tills = Vec::new();
    let mut agent_tasks = Vec::new();
    for (i, setup) in stores.iter().enumerate() {
        let name = format!("{}-{}", setup.store, setup.till);
        let certs = dir.join(format!("certs-{name}"));
        till360_hub::pki::issue_agent(&pki, &setup.store, &setup.till, &certs)
            .with_context(|| format!("issuing the certificate of {name}"))?;
        let suffix = if i % 2 == 0 { Suffix::Cr } else { Suffix::CrLf };
        let devices = TillDevices::open(suffix)?;
        let data_dir = dir.join(format!("agent-{name}"));
        let config_path = dir.join(format!("agent-{name}.toml"));
        write_agent_config(
            &config_path,
            &AgentSettings {
                store: &setup.store,
                till: &setup.till,
                data_dir: &data_dir,
                layout: &layouts.join(format!("{}.toml", setup.style.layout_name())),
                hub: hub.quic_addr(),
                certs: &certs,
            },
            &devices,
        )?;
        let config = AgentConfig::load(&config_path)?;
        eprintln!(
            "till {name}: scanner {}, POS {}, printer {}",
            devices.scanner.path().display(),
            devices.pos.path().display(),
            devices.printer_port.path().display()
        );
        let mut stop = stop_rx.clone();
        agent_tasks.push(tokio::spawn(till360_agent::runtime::run(
            config,
            async move {
                let _ = stop.wait_for(|s| *s).await;
            },
        )));
        tills.push(DemoTill {
            setup: setup.clone(),
            devices,
            data_dir,
        });
    }

    let morning = Morning::generate(&MorningPlan::new(args.seed, args.receipts), &stores);
    let expected = morning.expected_by_card();
    eprintln!(
        "playing a morning of {} receipts ({} carded, {} loyalty customers), seed {}",
        morning.visits.len(),
        morning.visits.iter().filter(|v| v.card.is_some()).count(),
        expected.len(),
        args.seed
    );
    let tills = Arc::new(tills);
    let played = play_morning(tills.clone(), &morning).await?;
    eprintln!("all {played} receipts printed; waiting for the hub");

    let outcome = wait_for_hub(http, &tills, &expected).await;
    match &outcome {
        Ok(()) => {
            eprintln!("the hub has every receipt, each counted once");
            show_profiles(http, &expected);
            println!("hub API: http://{http}/api/v1/agents");
            println!("         http://{http}/api/v1/profiles/by-card/{{card}}");
        }
        Err(e) => eprintln!("error: {e:#}"),
    }

    if !args.exit && outcome.is_ok() {
        eprintln!("serving; press Ctrl-C to stop");
        let _ = tokio::signal::ctrl_c().await;
    }
    let _ = stop_agents.send(true);
    for task in agent_tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("agent stopped with an error: {e:#}"),
            Err(e) => eprintln!("agent task failed: {e}"),
        }
    }
    hub.shutdown().await;
    drop(tills);
    outcome
}

/// Plays every till's visits on its own thread, with a progress line on stderr.
async fn play_morning(tills: Arc<Vec<DemoTill>>, morning: &Morning) -> anyhow::Result<usize> {
    let total = morning.visits.len();
    let done = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    for i in 0..tills.len() {
        let visits: Vec<Visit> = morning.visits_at(i).cloned().collect();
        let (tills, done) = (tills.clone(), done.clone());
        let seed = 1000 + i as u64;
        threads.push(tokio::task::spawn_blocking(
            move || -> anyhow::Result<()> {
                let till = &tills[i];
                let mut rng = SimRng::new(seed);
                let options = PlayOptions::default();
                for (n, visit) in visits.iter().enumerate() {
                    play_visit(&till.devices, visit, &mut rng, n, &options).with_context(|| {
                        format!(
                            "{}/{}: receipt {}",
                            till.setup.store,
                            till.setup.till,
                            n + 1
                        )
                    })?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            },
        ));
    }
    let step = (total / 10).max(1);
    let mut shown = 0;
    let mut all = Box::pin(futures_join(threads));
    loop {
        tokio::select! {
            result = &mut all => {
                result?;
                break;
            }
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                let now = done.load(Ordering::Relaxed);
                if now >= shown + step {
                    shown = now - now % step;
                    eprintln!("  printed {now}/{total} receipts");
                }
            }
        }
    }
    Ok(done.load(Ordering::Relaxed))
}

/// Awaits every thread, returning the first error.
async fn futures_join(
    threads: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
) -> anyhow::Result<()> {
    for t in threads {
        t.await.context("a till thread panicked")??;
    }
    Ok(())
}

/// Waits until each agent's journal is acknowledged by the hub and every card's
/// profile matches the simulation.
async fn wait_for_hub(
    http: SocketAddr,
    tills: &Arc<Vec<DemoTill>>,
    expected: &BTreeMap<String, crate::sim::CardExpectation>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + SYNC_DEADLINE;
    let mut last_problem = String::new();
    while Instant::now() < deadline {
        let (tills, expected) = (tills.clone(), expected.clone());
        let problem = tokio::task::spawn_blocking(move || hub_problem(http, &tills, &expected))
            .await
            .context("checking the hub")?;
        match problem {
            None => return Ok(()),
            Some(p) => last_problem = p,
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    bail!(
        "the hub is still missing data after {:?}: {last_problem}",
        SYNC_DEADLINE
    )
}

/// What the hub does not have yet, or `None` when it has everything.
fn hub_problem(
    http: SocketAddr,
    tills: &[DemoTill],
    expected: &BTreeMap<String, crate::sim::CardExpectation>,
) -> Option<String> {
    let agents = http_get(http, "/api/v1/agents", Duration::from_secs(5))
        .ok()
        .and_then(|r| r.json())
        .unwrap_or_default();
    for till in tills {
        let journal_last = journal_last_seq(&till.data_dir, &till.setup);
        let hub_last = agents.as_array().and_then(|list| {
            list.iter()
                .find(|a| {
                    a["store"] == till.setup.store.as_str() && a["till"] == till.setup.till.as_str()
                })
                .and_then(|a| a["last_seq"].as_u64())
        });
        if journal_last.is_none() || hub_last != journal_last {
            return Some(format!(
                "{}/{}: journal at seq {journal_last:?}, hub at {hub_last:?}",
                till.setup.store, till.setup.till
            ));
        }
    }
    let diffs = profile_differences(http, expected);
    (!diffs.is_empty()).then(|| {
        let shown: Vec<&str> = diffs.iter().take(5).map(String::as_str).collect();
        format!("{} profiles differ:\n  {}", diffs.len(), shown.join("\n  "))
    })
}

fn journal_last_seq(data_dir: &Path, setup: &StoreSetup) -> Option<u64> {
    let agent = AgentId::new(&setup.store, &setup.till);
    Journal::open_existing(data_dir, &agent)
        .and_then(|j| j.status())
        .ok()
        .map(|s| s.last_seq)
}

/// Prints the busiest customers' profiles.
fn show_profiles(http: SocketAddr, expected: &BTreeMap<String, crate::sim::CardExpectation>) {
    let mut busiest: Vec<_> = expected.iter().collect();
    busiest.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(b.0)));
    println!("busiest customers:");
    for (card, e) in busiest.iter().take(3) {
        println!(
            "  card {card}: {} receipts, {} EUR, stores {:?}",
            e.count,
            till360_shared::money::format_cents(e.total_cents),
            e.stores
        );
    }
    for (card, _) in busiest.iter().take(2) {
        println!("GET /api/v1/profiles/by-card/{card}");
        match fetch_profile(http, card) {
            Some(p) => println!(
                "{}",
                serde_json::to_string_pretty(&p).unwrap_or_else(|_| p.to_string())
            ),
            None => println!("  (no profile)"),
        }
    }
}
