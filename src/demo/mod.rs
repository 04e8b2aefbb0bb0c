//! `till360 demo`: a hub and two tills (a supermarket and a boutique) in one process,
//! each till on three virtual serial ports, a morning of shopping played through them,
//! then the merged profiles as the hub's API shows them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use till360_agent::config::AgentConfig;
use till360_agent::journal::Journal;
use till360_hub::config::{DatabaseUrl, HubConfig};
use till360_hub::import::{self, ImportError};
use till360_shared::{AgentId, Timestamp};
use tokio::sync::watch;

use crate::http_client::http_get;
use crate::rig::{
    fetch_profile, free_tcp_addr, free_udp_addr, install_layouts, play_visit, profile_differences,
    write_agent_config, write_hub_config_with_segments, AgentSettings, PlayOptions, SegmentSpec,
    TillDevices,
};
use crate::sim::{BackOffice, Morning, MorningPlan, SimRng, StoreSetup, Suffix, Visit};

mod coupons;

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

    let hub_files = write_hub_config_with_segments(
        &dir,
        &pki,
        free_udp_addr()?,
        free_tcp_addr()?,
        &demo_segments(),
    )?;
    coupons::install_campaigns(&dir, &hub_files.config)?;
    let hub_config = HubConfig::load(&hub_files.config)?;

    // The back office first: the CRM, catalogue and web shop know these customers
    // before the morning starts, as in a real chain.
    let stores = StoreSetup::demo_stores();
    let morning = Morning::generate(&MorningPlan::new(args.seed, args.receipts), &stores);
    let office = BackOffice::generate(&morning, args.seed, chrono::Local::now().date_naive());
    import_back_office(&dir, &hub_config, &office)?;

    let hub = till360_hub::server::start(hub_config)
        .await
        .context("starting the hub")?;
    let http = hub.http_addr();
    eprintln!("hub: QUIC udp {}, API http://{http}/", hub.quic_addr());

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
                coupon_timeouts_ms: None,
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

    let mut outcome = wait_for_hub(http, &tills, &expected).await;
    if outcome.is_ok() {
        eprintln!("the hub has every receipt, each counted once");
        outcome = show_360(&hub, &expected).await;
    }
    if outcome.is_ok() {
        outcome = show_coupons(http, tills.clone(), args.seed).await;
    }
    // What each printer got, for a look with any ESC/POS viewer.
    for till in tills.iter() {
        let path = dir.join(format!(
            "printer-{}-{}.bin",
            till.setup.store, till.setup.till
        ));
        if let Err(e) = std::fs::write(&path, till.devices.printer.bytes()) {
            eprintln!("cannot write {}: {e}", path.display());
        }
    }
    match &outcome {
        Ok(()) => {
            println!();
            println!("hub API: http://{http}/api/v1/agents");
            println!("         http://{http}/api/v1/profiles/by-card/{{card}}");
            println!("         http://{http}/api/v1/segments/{{id}}/members.csv?channel=email");
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

/// The demo's segments: who comes back, and who may be e-mailed.
fn demo_segments() -> Vec<SegmentSpec> {
    vec![
        SegmentSpec {
            id: "regulars".into(),
            name: "Regulars: bought on 3 or more days".into(),
            conditions: vec!["frequency >= 2".into()],
        },
        SegmentSpec {
            id: "emailable".into(),
            name: "May be e-mailed".into(),
            conditions: vec!["consent.email = true".into()],
        },
    ]
}

/// The current time with this machine's UTC offset, as a till stamps it.
fn local_now() -> Timestamp {
    let now = chrono::Local::now();
    let offset_min = i16::try_from(now.offset().local_minus_utc() / 60).unwrap_or(0);
    Timestamp::from_unix_ms(now.timestamp_millis(), offset_min)
}

/// Writes the back office's files into `dir` and imports them into the hub's store,
/// as `till360-hub import products|customers|orders` would. Products first (they only
/// categorise), then customers, then orders (which find their customer by e-mail).
fn import_back_office(dir: &Path, config: &HubConfig, office: &BackOffice) -> anyhow::Result<()> {
    // The hub has not started yet: its SQLite file's folder may not exist.
    if let DatabaseUrl::Sqlite(db) = &config.database {
        if let Some(parent) = db.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
    }
    let database = till360_hub::server::open_database(config)?;
    let conn = database
        .get()
        .with_context(|| format!("opening the hub store {}", database.name()))?;
    let now = local_now();
    enum Kind {
        Products,
        Customers,
        Orders,
    }
    let files = [
        ("products.csv", office.products_csv(), Kind::Products),
        ("customers.csv", office.customers_csv(), Kind::Customers),
        ("orders.jsonl", office.orders_jsonl(), Kind::Orders),
    ];
    for (name, text, kind) in files {
        let path = dir.join(name);
        std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
        let file = std::fs::File::open(&path)
            .map(std::io::BufReader::new)
            .with_context(|| format!("reading {}", path.display()))?;
        let conn: &dyn till360_hub::store::sql::Sql = &*conn;
        let result = match kind {
            Kind::Products => import::products(conn, file, now),
            // A new demo hub: nobody was erased yet, the suppression list is empty.
            Kind::Customers => import::customers(conn, file, &config.identity, None, now),
            Kind::Orders => import::orders(conn, file, &config.identity, None, now),
        };
        match result {
            Ok(summary) => eprintln!("imported {}: {summary}", path.display()),
            // The summary lists every bad line; the error alone only counts them.
            Err(ImportError::Rejected(summary)) => {
                bail!("importing {}: nothing imported: {summary}", path.display())
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!("importing {}", path.display())))
            }
        }
    }
    eprintln!(
        "back office: {} CRM customers, {} products, {} online orders",
        office.customers.len(),
        office.catalogue.len(),
        office.orders.len()
    );
    Ok(())
}

/// Recomputes traits and segments, then prints the busiest customers' profiles and the
/// segment sizes as the API serves them.
async fn show_360(
    hub: &till360_hub::server::RunningHub,
    expected: &BTreeMap<String, crate::sim::CardExpectation>,
) -> anyhow::Result<()> {
    let summary = hub
        .recompute_traits()
        .await
        .context("recomputing traits and segments")?;
    let sizes: Vec<String> = summary
        .segments
        .iter()
        .map(|(id, n)| format!("{id} {n}"))
        .collect();
    eprintln!(
        "traits recomputed for {} profiles ({} with purchases, {} on more than one day); \
         segments: {}",
        summary.profiles,
        summary.models.customers,
        summary.models.repeat_customers,
        sizes.join(", ")
    );
    for note in &summary.models.notes {
        eprintln!("  model note: {note}");
    }
    let http = hub.http_addr();
    let mut busiest: Vec<String> = {
        let mut cards: Vec<_> = expected.iter().collect();
        cards.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(b.0)));
        cards.into_iter().map(|(card, _)| card.clone()).collect()
    };
    busiest.truncate(SHOWN_IN_TABLE);
    tokio::task::spawn_blocking(move || print_profiles(http, &busiest))
        .await
        .context("printing the profiles")?
}

/// The afternoon: half of the morning's coupons come back at the other store; then
/// the campaign KPIs.
async fn show_coupons(
    http: SocketAddr,
    tills: Arc<Vec<DemoTill>>,
    seed: u64,
) -> anyhow::Result<()> {
    let printed: usize = tills
        .iter()
        .map(|t| coupons::printed_codes(&t.devices.printer.bytes()).len())
        .sum();
    eprintln!("{printed} coupons printed this morning; half of them come back this afternoon");
    tokio::task::spawn_blocking(move || {
        let scanned = coupons::redeem_in_the_afternoon(&tills, seed)?;
        eprintln!("{scanned} coupons redeemed at the other store");
        coupons::print_kpis(http, scanned, SYNC_DEADLINE)
    })
    .await
    .context("the coupon afternoon")?
}

/// Rows in the table of busiest customers.
const SHOWN_IN_TABLE: usize = 10;

fn print_profiles(http: SocketAddr, busiest: &[String]) -> anyhow::Result<()> {
    let Some(first) = busiest.first() else {
        println!("no loyalty customers this morning");
        return Ok(());
    };
    let mut profile = fetch_profile(http, first)
        .with_context(|| format!("no profile for the busiest card {first}"))?;
    let entries = trim_timeline(&mut profile);
    println!("The busiest customer, as the hub sees them (timeline: the newest receipt and");
    println!("the newest online order of {entries} entries):");
    println!("GET /api/v1/profiles/by-card/{first}");
    println!("{}", pretty(&profile));

    println!();
    println!("The {} busiest customers:", busiest.len());
    println!(
        "{:<13}  {:<7}  {:<20}  {:>5}  {:>6}  {:>9}  {:>4}  {:>3}  {:<19}  {:<26}  segments",
        "card",
        "cust.",
        "name",
        "store",
        "online",
        "spend EUR",
        "freq",
        "RFM",
        "consents",
        "favourite categories",
    );
    for card in busiest {
        match fetch_profile(http, card) {
            Some(p) => println!("{}", table_row(card, &p)),
            None => println!("{card:<13}  (no profile)"),
        }
    }
    println!(
        "store/online: receipts and web orders; freq: repeat purchase days; RFM: recency, \
         frequency, monetary quintiles (5 = best)"
    );

    println!();
    println!("GET /api/v1/segments");
    let segments = http_get(http, "/api/v1/segments", Duration::from_secs(5))
        .context("GET /api/v1/segments")?;
    if segments.status != 200 {
        bail!("GET /api/v1/segments answered {}", segments.status);
    }
    let listing = segments.json().context("GET /api/v1/segments: not JSON")?;
    println!("{}", pretty(&listing));
    Ok(())
}

fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// Keeps the newest receipt and the newest order of the profile's timeline (newest
/// first, as served), so one profile fits on a screen; returns how many there were.
fn trim_timeline(profile: &mut serde_json::Value) -> usize {
    let Some(timeline) = profile
        .get_mut("timeline")
        .and_then(serde_json::Value::as_array_mut)
    else {
        return 0;
    };
    let total = timeline.len();
    let mut seen = BTreeSet::new();
    timeline.retain(|entry| seen.insert(entry["kind"].as_str().unwrap_or("").to_string()));
    total
}

/// One line of the busiest-customers table.
fn table_row(card: &str, p: &serde_json::Value) -> String {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    let name = format!(
        "{} {}",
        text(&p["personal"]["first_name"]),
        text(&p["personal"]["last_name"])
    );
    let name = match name.trim() {
        "" => "(not in the CRM)".to_string(),
        n => clip(n, 20),
    };
    let channels = &p["channels"];
    let spend = channels["store"]["total_cents"].as_i64().unwrap_or(0)
        + channels["online"]["total_cents"].as_i64().unwrap_or(0);
    let traits = &p["traits"];
    let consents: Vec<&str> = [
        ("email", "email"),
        ("sms", "sms"),
        ("post", "post"),
        ("personalization", "pers"),
    ]
    .into_iter()
    .filter(|(purpose, _)| p["consents"][purpose]["granted"].as_bool() == Some(true))
    .map(|(_, short)| short)
    .collect();
    let consents = if consents.is_empty() {
        "-".to_string()
    } else {
        consents.join(" ")
    };
    let favourites: Vec<String> = traits["favourite_categories"]
        .as_array()
        .map(|a| a.iter().map(text).collect())
        .unwrap_or_default();
    let segments: Vec<String> = p["segments"]
        .as_array()
        .map(|a| a.iter().map(text).collect())
        .unwrap_or_default();
    format!(
        "{card:<13}  {:<7}  {name:<20}  {:>5}  {:>6}  {:>9}  {:>4}  {:>3}  {consents:<19}  {:<26}  {}",
        p["customer_no"].as_str().unwrap_or("-"),
        channels["store"]["count"].as_u64().unwrap_or(0),
        channels["online"]["count"].as_u64().unwrap_or(0),
        till360_shared::money::format_cents(spend),
        traits["frequency"]
            .as_u64()
            .map_or_else(|| "-".to_string(), |f| f.to_string()),
        traits["rfm"].as_str().unwrap_or("-"),
        clip(&favourites.join(", "), 26),
        if segments.is_empty() {
            "-".to_string()
        } else {
            segments.join(", ")
        },
    )
}

/// At most `width` characters, with an ellipsis when cut.
fn clip(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else {
        let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}
