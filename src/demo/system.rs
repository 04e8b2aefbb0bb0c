//! The demo as a running system: a hub with the back office imported, two tills (a
//! supermarket and a boutique) on virtual serial ports with their agents, a morning of
//! shopping played and at the hub, and the afternoon's coupons redeemed. `till360 demo`
//! starts one and prints what it does; tests start one quietly and look at the hub.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use till360_agent::config::AgentConfig;
use till360_agent::journal::Journal;
use till360_hub::config::{DatabaseUrl, HubConfig};
use till360_hub::import::{self, ImportError};
use till360_hub::server::RunningHub;
use till360_shared::{AgentId, Timestamp};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::coupons;
use crate::http_client::HubApi;
use crate::rig::{free_tcp_addr, free_udp_addr};
use crate::rig::{
    install_layouts, play_visit, profile_differences, write_agent_config,
    write_hub_config_with_segments, AgentSettings, PlayOptions, SegmentSpec, TillDevices,
};
use crate::sim::{
    BackOffice, CardExpectation, Morning, MorningPlan, SimRng, StoreSetup, Suffix, Visit,
};

/// How long the hub may take to have everything after the last receipt.
pub const SYNC_DEADLINE: Duration = Duration::from_secs(120);

/// What a [`DemoSystem`] is made of.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Folder for the PKI, configs and data (`None`: a new temporary folder, kept).
    pub dir: Option<PathBuf>,
    /// How many receipts the morning has.
    pub receipts: usize,
    /// Seed of the simulation (the same seed plays the same morning).
    pub seed: u64,
    /// The hub's `api_token`: written into hub.toml and sent by the system's own API calls.
    pub api_token: Option<String>,
    /// TOML put at the top of hub.toml (top-level keys must come before any table).
    pub hub_toml_top: String,
    /// TOML appended to hub.toml (tables such as `[console]`).
    pub hub_toml_extra: String,
    /// Say each step on stderr and print the profiles and campaign KPIs on stdout, as
    /// `till360 demo` does; quiet otherwise.
    pub verbose: bool,
}

impl Default for DemoOptions {
    /// The command's defaults (300 receipts, seed 42), quiet.
    fn default() -> Self {
        Self {
            dir: None,
            receipts: 300,
            seed: 42,
            api_token: None,
            hub_toml_top: String::new(),
            hub_toml_extra: String::new(),
            verbose: false,
        }
    }
}

/// Progress lines on stderr, said only by a verbose system.
#[derive(Debug, Clone, Copy)]
pub(super) struct Voice(bool);

impl Voice {
    pub(super) fn say(self, line: impl Display) {
        if self.0 {
            eprintln!("{line}");
        }
    }

    pub(super) fn verbose(self) -> bool {
        self.0
    }
}

pub(super) struct DemoTill {
    pub(super) setup: StoreSetup,
    pub(super) devices: TillDevices,
    pub(super) data_dir: PathBuf,
}

/// A till's agent, running as a task with its own stop signal.
struct RunningAgent {
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl RunningAgent {
    /// Asks the agent to stop and waits until it has.
    async fn stop(self, setup: &StoreSetup) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        let name = format!("{}/{}", setup.store, setup.till);
        match self.task.await {
            Ok(result) => result.with_context(|| format!("agent {name} stopped with an error")),
            Err(e) => Err(anyhow!("agent {name}: its task failed: {e}")),
        }
    }
}

/// A hub and the demo's tills, running in this process. Dropping it lets the agents stop
/// on their own; [`DemoSystem::stop`] stops everything and waits for it.
pub struct DemoSystem {
    dir: PathBuf,
    api: HubApi,
    hub: RunningHub,
    stores: Vec<StoreSetup>,
    tills: Arc<Vec<DemoTill>>,
    /// One per till, `None` once that till's agent is stopped.
    agents: Vec<Option<RunningAgent>>,
    office: BackOffice,
    morning: Morning,
    expected: BTreeMap<String, CardExpectation>,
    coupons_redeemed: usize,
    voice: Voice,
}

impl DemoSystem {
    /// Builds and starts the demo: PKI, receipt layouts, hub config and campaigns, the
    /// back office imported, the hub, one agent per till; then plays the morning, waits
    /// until the hub has every receipt exactly once, recomputes traits and segments and
    /// redeems half of the morning's coupons at the other store. On an error everything
    /// started is stopped again.
    pub async fn start(options: DemoOptions) -> anyhow::Result<DemoSystem> {
        let voice = Voice(options.verbose);
        let dir = match &options.dir {
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
        voice.say(format_args!("demo folder: {}", dir.display()));

        // PKI: a fresh CA per run, so a reused folder never mixes certificates.
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
        add_to_hub_toml(&hub_files.config, &options)?;
        let hub_config = HubConfig::load(&hub_files.config)?;

        // The back office first: the CRM, catalogue and web shop know these customers
        // before the morning starts, as in a real chain.
        let stores = StoreSetup::demo_stores();
        let morning = Morning::generate(&MorningPlan::new(options.seed, options.receipts), &stores);
        let office =
            BackOffice::generate(&morning, options.seed, chrono::Local::now().date_naive());
        import_back_office(&dir, &hub_config, &office, voice)?;

        let hub = till360_hub::server::start(hub_config)
            .await
            .context("starting the hub")?;
        let http = hub.http_addr();
        voice.say(format_args!(
            "hub: QUIC udp {}, API http://{http}/",
            hub.quic_addr()
        ));

        let mut tills = Vec::new();
        let mut agents = Vec::new();
        for (i, setup) in stores.iter().enumerate() {
            let (till, agent) = start_till(&dir, &pki, &layouts, hub.quic_addr(), i, setup, voice)?;
            tills.push(till);
            agents.push(Some(agent));
        }

        let expected = morning.expected_by_card();
        let mut system = DemoSystem {
            dir,
            api: HubApi::new(http, options.api_token.clone()),
            hub,
            stores,
            tills: Arc::new(tills),
            agents,
            office,
            morning,
            expected,
            coupons_redeemed: 0,
            voice,
        };
        let outcome = system.play(options.seed).await;
        system.write_printer_files();
        match outcome {
            Ok(redeemed) => {
                system.coupons_redeemed = redeemed;
                Ok(system)
            }
            Err(e) => {
                if let Err(stopping) = system.stop().await {
                    eprintln!("{stopping:#}");
                }
                Err(e)
            }
        }
    }

    /// The morning, the hub's check, traits and segments, the coupon afternoon; returns
    /// how many coupons came back.
    async fn play(&self, seed: u64) -> anyhow::Result<usize> {
        let voice = self.voice;
        voice.say(format_args!(
            "playing a morning of {} receipts ({} carded, {} loyalty customers), seed {seed}",
            self.morning.visits.len(),
            self.morning
                .visits
                .iter()
                .filter(|v| v.card.is_some())
                .count(),
            self.expected.len(),
        ));
        let played = play_morning(self.tills.clone(), &self.morning, voice).await?;
        voice.say(format_args!(
            "all {played} receipts printed; waiting for the hub"
        ));
        wait_for_hub(&self.api, &self.tills, &self.expected).await?;
        voice.say("the hub has every receipt, each counted once");
        super::show_360(&self.hub, &self.api, &self.expected, voice).await?;
        redeem_coupons(&self.api, self.tills.clone(), seed, voice).await
    }

    /// What each printer got, for a look with any ESC/POS viewer.
    fn write_printer_files(&self) {
        for till in self.tills.iter() {
            let path = self.dir.join(format!(
                "printer-{}-{}.bin",
                till.setup.store, till.setup.till
            ));
            if let Err(e) = std::fs::write(&path, till.devices.printer.bytes()) {
                eprintln!("cannot write {}: {e}", path.display());
            }
        }
    }

    /// The hub's HTTP address (API and console).
    pub fn http_addr(&self) -> SocketAddr {
        self.hub.http_addr()
    }

    /// The hub's QUIC address (the tills' uplink).
    pub fn quic_addr(&self) -> SocketAddr {
        self.hub.quic_addr()
    }

    /// `http://ADDR/console/`.
    pub fn console_url(&self) -> String {
        format!("http://{}/console/", self.http_addr())
    }

    /// The hub's API with the system's token.
    pub fn api(&self) -> &HubApi {
        &self.api
    }

    pub fn api_token(&self) -> Option<&str> {
        self.api.token.as_deref()
    }

    /// The running hub (e.g. to recompute traits again).
    pub fn hub(&self) -> &RunningHub {
        &self.hub
    }

    /// The demo's folder: PKI, configs (`hub.toml`, `agent-*.toml`), data, the back
    /// office's files and what the printers printed.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The tills, in the order of [`DemoSystem::stop_till`]'s index.
    pub fn tills(&self) -> &[StoreSetup] {
        &self.stores
    }

    /// Whether till `index`'s agent still runs.
    pub fn till_running(&self, index: usize) -> bool {
        self.agents.get(index).is_some_and(Option::is_some)
    }

    /// The CRM customers, catalogue and online orders imported into the hub.
    pub fn back_office(&self) -> &BackOffice {
        &self.office
    }

    /// The morning played at the tills.
    pub fn morning(&self) -> &Morning {
        &self.morning
    }

    /// Per loyalty card, the receipts the hub has for it (count, total, stores).
    pub fn expected(&self) -> &BTreeMap<String, CardExpectation> {
        &self.expected
    }

    /// How many coupons were scanned in the afternoon (the hub has counted them all, or
    /// the deadline passed).
    pub fn coupons_redeemed(&self) -> usize {
        self.coupons_redeemed
    }

    /// Stops till `index`'s agent and waits until it has stopped; the hub and the other
    /// tills keep running.
    pub async fn stop_till(&mut self, index: usize) -> anyhow::Result<()> {
        let setup = self
            .stores
            .get(index)
            .with_context(|| format!("the demo has no till {index}"))?;
        let agent = self
            .agents
            .get_mut(index)
            .and_then(Option::take)
            .with_context(|| format!("till {}/{} is stopped already", setup.store, setup.till))?;
        agent.stop(setup).await
    }

    /// Stops every agent still running, then the hub. The first agent error, if any, once
    /// everything is stopped.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let mut outcome = Ok(());
        for index in 0..self.agents.len() {
            if !self.till_running(index) {
                continue;
            }
            let stopped = self.stop_till(index).await;
            if outcome.is_ok() {
                outcome = stopped;
            }
        }
        self.hub.shutdown().await;
        outcome
    }
}

/// Top-level keys and `[table]`s the options add to the hub.toml the demo wrote.
fn add_to_hub_toml(config: &Path, options: &DemoOptions) -> anyhow::Result<()> {
    let mut top = String::new();
    if let Some(token) = &options.api_token {
        top.push_str(&format!(
            "api_token = {}\n",
            toml::Value::String(token.clone())
        ));
    }
    top.push_str(&with_newline(&options.hub_toml_top));
    let extra = with_newline(&options.hub_toml_extra);
    if top.is_empty() && extra.is_empty() {
        return Ok(());
    }
    let text =
        std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
    let extra = if extra.is_empty() {
        extra
    } else {
        format!("\n{extra}")
    };
    std::fs::write(config, format!("{top}{text}{extra}"))
        .with_context(|| format!("writing {}", config.display()))
}

/// `text` ending in a newline (empty stays empty).
fn with_newline(text: &str) -> String {
    if text.is_empty() || text.ends_with('\n') {
        text.to_string()
    } else {
        format!("{text}\n")
    }
}

/// Issues till `i`'s certificate, opens its devices, writes its config and starts its agent.
fn start_till(
    dir: &Path,
    pki: &Path,
    layouts: &Path,
    hub: SocketAddr,
    i: usize,
    setup: &StoreSetup,
    voice: Voice,
) -> anyhow::Result<(DemoTill, RunningAgent)> {
    let name = format!("{}-{}", setup.store, setup.till);
    let certs = dir.join(format!("certs-{name}"));
    till360_hub::pki::issue_agent(pki, &setup.store, &setup.till, &certs)
        .with_context(|| format!("issuing the certificate of {name}"))?;
    let suffix = if i.is_multiple_of(2) {
        Suffix::Cr
    } else {
        Suffix::CrLf
    };
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
            hub,
            certs: &certs,
            coupon_timeouts_ms: None,
        },
        &devices,
    )?;
    let config = AgentConfig::load(&config_path)?;
    voice.say(format_args!(
        "till {name}: scanner {}, POS {}, printer {}",
        devices.scanner.path().display(),
        devices.pos.path().display(),
        devices.printer_port.path().display()
    ));
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(till360_agent::runtime::run(config, async move {
        // A dropped sender stops the agent too.
        let _ = stopped.await;
    }));
    let till = DemoTill {
        setup: setup.clone(),
        devices,
        data_dir,
    };
    Ok((till, RunningAgent { stop, task }))
}

/// Plays every till's visits on its own thread, with a progress line on stderr.
async fn play_morning(
    tills: Arc<Vec<DemoTill>>,
    morning: &Morning,
    voice: Voice,
) -> anyhow::Result<usize> {
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
                    voice.say(format_args!("  printed {now}/{total} receipts"));
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
    api: &HubApi,
    tills: &Arc<Vec<DemoTill>>,
    expected: &BTreeMap<String, CardExpectation>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + SYNC_DEADLINE;
    let mut last_problem = String::new();
    while Instant::now() < deadline {
        let (api, tills, expected) = (api.clone(), tills.clone(), expected.clone());
        let problem = tokio::task::spawn_blocking(move || hub_problem(&api, &tills, &expected))
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
    api: &HubApi,
    tills: &[DemoTill],
    expected: &BTreeMap<String, CardExpectation>,
) -> Option<String> {
    let agents = api
        .get("/api/v1/agents", Duration::from_secs(5))
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
    let diffs = profile_differences(api.clone(), expected);
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
fn import_back_office(
    dir: &Path,
    config: &HubConfig,
    office: &BackOffice,
    voice: Voice,
) -> anyhow::Result<()> {
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
            Ok(summary) => voice.say(format_args!("imported {}: {summary}", path.display())),
            // The summary lists every bad line; the error alone only counts them.
            Err(ImportError::Rejected(summary)) => {
                bail!("importing {}: nothing imported: {summary}", path.display())
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!("importing {}", path.display())))
            }
        }
    }
    voice.say(format_args!(
        "back office: {} CRM customers, {} products, {} online orders",
        office.customers.len(),
        office.catalogue.len(),
        office.orders.len()
    ));
    Ok(())
}

/// The afternoon: half of the morning's coupons come back at the other store, and the
/// hub counts them (then, verbose, the campaign KPIs). Returns how many were scanned.
async fn redeem_coupons(
    api: &HubApi,
    tills: Arc<Vec<DemoTill>>,
    seed: u64,
    voice: Voice,
) -> anyhow::Result<usize> {
    let printed: usize = tills
        .iter()
        .map(|t| coupons::printed_codes(&t.devices.printer.bytes()).len())
        .sum();
    voice.say(format_args!(
        "{printed} coupons printed this morning; half of them come back this afternoon"
    ));
    let api = api.clone();
    tokio::task::spawn_blocking(move || {
        let scanned = coupons::redeem_in_the_afternoon(&tills, seed)?;
        voice.say(format_args!(
            "{scanned} coupons redeemed at the other store"
        ));
        let campaigns = coupons::wait_for_redemptions(&api, scanned, SYNC_DEADLINE)?;
        if voice.verbose() {
            coupons::print_kpis(&api, &campaigns);
        }
        Ok(scanned)
    })
    .await
    .context("the coupon afternoon")?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http_client::http_get;
    use crate::sim::PosSimulator;

    const TOKEN: &str = "demo-system-test-token";

    /// Till `index`'s `last_seq` as `GET /api/v1/agents` shows it.
    fn hub_last_seq(system: &DemoSystem, index: usize) -> Option<u64> {
        let setup = &system.tills()[index];
        let agents = system
            .api()
            .get("/api/v1/agents", Duration::from_secs(5))
            .ok()?
            .json()?;
        agents.as_array()?.iter().find_map(|a| {
            (a["store"] == setup.store.as_str() && a["till"] == setup.till.as_str())
                .then(|| a["last_seq"].as_u64())
                .flatten()
        })
    }

    /// One more customer (no card) at till `index`, each wait bounded by `timeout`.
    async fn play_one(system: &DemoSystem, index: usize, timeout: Duration) -> anyhow::Result<()> {
        let tills = system.tills.clone();
        tokio::task::spawn_blocking(move || {
            let till = &tills[index];
            let opening = chrono::Local::now().naive_local();
            let mut pos = PosSimulator::new(till.setup.style, &till.setup.store, opening, 99);
            let visit = Visit {
                store_index: index,
                card: None,
                scans: Vec::new(),
                receipt: pos.next_receipt(None),
            };
            let options = PlayOptions {
                timeout,
                ..PlayOptions::default()
            };
            let cuts = till.devices.printer.cuts();
            play_visit(&till.devices, &visit, &mut SimRng::new(5), cuts, &options)?;
            Ok(())
        })
        .await?
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_quiet_system_with_a_token_stops_one_till_while_the_other_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let mut system = DemoSystem::start(DemoOptions {
            dir: Some(dir.path().to_path_buf()),
            receipts: 24,
            seed: 7,
            api_token: Some(TOKEN.into()),
            hub_toml_top: "# top of the test".into(),
            hub_toml_extra: "# end of the test\n".into(),
            verbose: false,
        })
        .await
        .expect("the demo system starts");

        let hub_toml = std::fs::read_to_string(dir.path().join("hub.toml")).unwrap();
        assert!(
            hub_toml.starts_with(&format!("api_token = \"{TOKEN}\"\n# top of the test\n")),
            "{hub_toml}"
        );
        assert!(hub_toml.ends_with("\n# end of the test\n"), "{hub_toml}");
        assert_eq!(system.dir(), dir.path());
        assert_eq!(system.api_token(), Some(TOKEN));
        assert_eq!(
            system.console_url(),
            format!("http://{}/console/", system.http_addr())
        );

        // The hub wants the token, and the system's own calls carry it.
        let (http, api) = (system.http_addr(), system.api().clone());
        let (without, with) = tokio::task::spawn_blocking(move || {
            (
                http_get(http, "/api/v1/agents", Duration::from_secs(5)).unwrap(),
                api.get("/api/v1/agents", Duration::from_secs(5)).unwrap(),
            )
        })
        .await
        .unwrap();
        assert_eq!(without.status, 401, "{}", without.body);
        assert_eq!(with.status, 200, "{}", with.body);

        // Everything arrived: each card's profile is what the morning played.
        assert!(!system.expected().is_empty());
        assert!(!system.back_office().customers.is_empty());
        assert_eq!(system.tills().len(), 2);
        let (api, expected) = (system.api().clone(), system.expected().clone());
        let diffs = tokio::task::spawn_blocking(move || profile_differences(api, &expected))
            .await
            .unwrap();
        assert!(diffs.is_empty(), "{diffs:?}");

        // Till 0 stops; nothing passes its POS's receipts on to its printer any more.
        system.stop_till(0).await.expect("till 0 stops cleanly");
        assert!(!system.till_running(0) && system.till_running(1));
        let again = system.stop_till(0).await.unwrap_err().to_string();
        assert!(again.contains("stopped already"), "{again}");
        assert!(system.stop_till(2).await.is_err());
        let stopped = play_one(&system, 0, Duration::from_secs(2)).await;
        assert!(stopped.is_err(), "a stopped till printed a receipt");

        // Till 1 and the hub go on: its next receipt reaches the hub.
        let before = hub_last_seq(&system, 1).expect("till 1 at the hub");
        play_one(&system, 1, Duration::from_secs(30))
            .await
            .expect("till 1 still prints");
        let deadline = Instant::now() + Duration::from_secs(60);
        while hub_last_seq(&system, 1) <= Some(before) {
            assert!(
                Instant::now() < deadline,
                "till 1's receipt never reached the hub"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        system.stop().await.expect("everything stops cleanly");
    }
}
