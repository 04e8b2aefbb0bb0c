//! A till rig: the three virtual devices of one till (scanner, POS, printer), the config
//! files that point an agent and a hub at them, and playing visits through them. Shared
//! by the demo and the end-to-end tests.

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::http_client::HubApi;
pub use crate::loopback_ports::{free_tcp_addr, free_udp_addr};
use crate::sim::scanner::CARD_PREFIX;
use crate::sim::{
    play_receipt, PlayError, PrinterSimulator, PtyError, Scan, ScannerSimulator, SimRng, Suffix,
    VirtualPort, Visit,
};

/// The receipt layouts the simulated POS prints, as shipped in `config/receipts/`.
pub const LAYOUTS: &[(&str, &str)] = &[
    (
        "supermarket.toml",
        include_str!("../config/receipts/supermarket.toml"),
    ),
    (
        "boutique.toml",
        include_str!("../config/receipts/boutique.toml"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum RigError {
    #[error(transparent)]
    Pty(#[from] PtyError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Play(#[from] PlayError),
    #[error("the printer saw {seen} cuts, expected {expected}, within {waited:?}")]
    MissingCut {
        seen: usize,
        expected: usize,
        waited: Duration,
    },
    #[error("the agent did not read the scan from its scanner port within {0:?}")]
    ScanNotRead(Duration),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> RigError {
    let what = what.into();
    move |source| RigError::Io { what, source }
}

/// One till's devices. The printer answers from a background thread.
pub struct TillDevices {
    // Declared (so dropped) before its port: the thread stops before the pty closes.
    pub printer: PrinterSimulator,
    pub printer_port: VirtualPort,
    pub scanner: VirtualPort,
    pub pos: VirtualPort,
    pub suffix: Suffix,
}

impl TillDevices {
    pub fn open(suffix: Suffix) -> Result<Self, RigError> {
        let scanner = VirtualPort::open()?;
        let pos = VirtualPort::open()?;
        let printer_port = VirtualPort::open()?;
        let printer =
            PrinterSimulator::start(&printer_port).map_err(io_err("starting the printer"))?;
        Ok(Self {
            scanner,
            pos,
            printer_port,
            printer,
            suffix,
        })
    }

    pub fn scanner(&self) -> ScannerSimulator<'_> {
        ScannerSimulator::new(&self.scanner, self.suffix)
    }
}

/// How a visit is played to the devices.
#[derive(Debug, Clone)]
pub struct PlayOptions {
    /// Largest write to the POS port (writes are 1..=max_chunk bytes).
    pub max_chunk: usize,
    /// Pause after the agent has read a scan, before the receipt starts (at a real till the
    /// receipt follows seconds later); covers the agent's step from reading to queueing.
    pub scan_gap: Duration,
    /// Pause after the printer has the cut, before the next customer (at a real till,
    /// seconds). The agent queues printed bytes and scans in read order, so no pause is
    /// needed for correctness; a short one keeps the demo's pace readable.
    pub customer_gap: Duration,
    /// Bound for each receipt (writing, status answers, the cut at the printer).
    pub timeout: Duration,
}

impl Default for PlayOptions {
    fn default() -> Self {
        Self {
            max_chunk: 48,
            scan_gap: Duration::from_millis(30),
            customer_gap: Duration::from_millis(5),
            timeout: Duration::from_secs(30),
        }
    }
}

/// Plays one visit: the scans, then the receipt; returns once the printer has the cut,
/// so the next customer's scan cannot overtake this receipt. `cuts_before` is the
/// printer's cut count before this visit.
pub fn play_visit(
    devices: &TillDevices,
    visit: &Visit,
    rng: &mut SimRng,
    cuts_before: usize,
    options: &PlayOptions,
) -> Result<crate::sim::pos::PlayReport, RigError> {
    let scanner = devices.scanner();
    for scan in &visit.scans {
        match scan {
            Scan::Card(code) | Scan::BadCheckDigit(code) | Scan::Coupon(code) => scanner.scan(code),
            Scan::Garbage(bytes) => scanner.scan_bytes(bytes),
        }
        .map_err(io_err("scanning"))?;
        // The receipt must not start before the agent has the scan: its ports are read on
        // separate threads, and on a busy machine a fixed pause was sometimes not enough.
        let read = devices
            .scanner
            .wait_read_by_agent(Instant::now() + options.timeout)
            .map_err(io_err("waiting for the agent to read the scan"))?;
        if !read {
            return Err(RigError::ScanNotRead(options.timeout));
        }
        std::thread::sleep(options.scan_gap);
    }
    let report = play_receipt(
        &devices.pos,
        &visit.receipt,
        rng,
        options.max_chunk,
        options.timeout,
    )?;
    if !devices
        .printer
        .wait_for_cuts(cuts_before + 1, options.timeout)
    {
        return Err(RigError::MissingCut {
            seen: devices.printer.cuts(),
            expected: cuts_before + 1,
            waited: options.timeout,
        });
    }
    std::thread::sleep(options.customer_gap);
    Ok(report)
}

fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn path_str(p: &Path) -> String {
    quoted(&p.display().to_string())
}

/// Writes the receipt layouts into `dir` (created if needed).
pub fn install_layouts(dir: &Path) -> Result<(), RigError> {
    std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
    for (name, text) in LAYOUTS {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(io_err(format!("writing {}", path.display())))?;
    }
    Ok(())
}

/// The hub's files and addresses.
#[derive(Debug, Clone)]
pub struct HubFiles {
    pub config: PathBuf,
    pub data_dir: PathBuf,
    pub quic: SocketAddr,
    pub http: SocketAddr,
}

/// A `[[segment]]` of the hub config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentSpec {
    pub id: String,
    pub name: String,
    /// Conditions such as `frequency >= 2` (hub `segments` syntax), all must hold.
    pub conditions: Vec<String>,
}

/// Writes `dir/hub.toml` using the PKI in `pki` (`ca.pem hub.pem hub.key`).
pub fn write_hub_config(
    dir: &Path,
    pki: &Path,
    quic: SocketAddr,
    http: SocketAddr,
) -> Result<HubFiles, RigError> {
    write_hub_config_with_segments(dir, pki, quic, http, &[])
}

/// [`write_hub_config`] plus `[[segment]]` definitions.
pub fn write_hub_config_with_segments(
    dir: &Path,
    pki: &Path,
    quic: SocketAddr,
    http: SocketAddr,
    segments: &[SegmentSpec],
) -> Result<HubFiles, RigError> {
    write_hub_config_on(dir, pki, quic, http, segments, None)
}

/// [`write_hub_config_with_segments`] with the hub on `database_url` (`None`: SQLite,
/// `hub-data/hub.db`), e.g. a PostgreSQL database of the end-to-end tests.
pub fn write_hub_config_on(
    dir: &Path,
    pki: &Path,
    quic: SocketAddr,
    http: SocketAddr,
    segments: &[SegmentSpec],
    database_url: Option<&str>,
) -> Result<HubFiles, RigError> {
    let data_dir = dir.join("hub-data");
    let database_url = match database_url {
        Some(url) => url.to_string(),
        None => format!("sqlite://{}", data_dir.join("hub.db").display()),
    };
    let config = dir.join("hub.toml");
    let mut text = format!(
        "# Written by till360 (demo / end-to-end tests).\n\
         data_dir = {}\nlisten = {}\nhttp = {}\nca = {}\ncert = {}\nkey = {}\n\n\
         [database]\nurl = {}\n\n\
         # Simulated tills scan at machine speed, and the demo's morning packs weeks of a\n\
         # regular's visits into hours (9 to 17 receipts a card: the fraud rules would\n\
         # rightly flag 11 of its 60 cards).\n\
         [till_requests]\nburst = 100000\nper_minute = 1000000\nforeign_cards_per_hour = 1000000\n\n\
         [fraud]\nenabled = false\n",
        path_str(&data_dir),
        quoted(&quic.to_string()),
        quoted(&http.to_string()),
        path_str(&pki.join("ca.pem")),
        path_str(&pki.join("hub.pem")),
        path_str(&pki.join("hub.key")),
        quoted(&database_url),
    );
    for segment in segments {
        let conditions: Vec<String> = segment.conditions.iter().map(|c| quoted(c)).collect();
        // Writing into a String cannot fail.
        let _ = write!(
            text,
            "\n[[segment]]\nid = {}\nname = {}\nwhere = [{}]\n",
            quoted(&segment.id),
            quoted(&segment.name),
            conditions.join(", ")
        );
    }
    std::fs::write(&config, text).map_err(io_err(format!("writing {}", config.display())))?;
    Ok(HubFiles {
        config,
        data_dir,
        quic,
        http,
    })
}

/// What an agent config names.
#[derive(Debug, Clone)]
pub struct AgentSettings<'a> {
    pub store: &'a str,
    pub till: &'a str,
    pub data_dir: &'a Path,
    /// The layout file for this till's POS.
    pub layout: &'a Path,
    /// The hub's QUIC address.
    pub hub: SocketAddr,
    /// Folder with `ca.pem agent.pem agent.key` from `ca issue`.
    pub certs: &'a Path,
    /// `[coupons] budget_ms` and `digest_timeout_ms` (`None`: the agent's defaults).
    pub coupon_timeouts_ms: Option<(u64, u64)>,
}

/// Writes an agent config for `devices` at `path`.
pub fn write_agent_config(
    path: &Path,
    settings: &AgentSettings<'_>,
    devices: &TillDevices,
) -> Result<(), RigError> {
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = write!(
        text,
        "# Written by till360 (demo / end-to-end tests).\n\
         store = {}\ntill = {}\ndata_dir = {}\n\n\
         [scanner]\nport = {}\nbaud = 9600\nsuffix = {}\n\n\
         [pos]\nport = {}\nbaud = 115200\ncodepage = \"cp858\"\nlayout = {}\n\n\
         [printer]\nport = {}\nbaud = 115200\n\n\
         [cards]\nprefixes = [{}]\n\n\
         [hub]\naddress = {}\nserver_name = \"localhost\"\nca = {}\ncert = {}\nkey = {}\n",
        quoted(settings.store),
        quoted(settings.till),
        path_str(settings.data_dir),
        path_str(devices.scanner.path()),
        quoted(devices.suffix.as_config()),
        path_str(devices.pos.path()),
        path_str(settings.layout),
        path_str(devices.printer_port.path()),
        quoted(CARD_PREFIX),
        quoted(&settings.hub.to_string()),
        path_str(&settings.certs.join("ca.pem")),
        path_str(&settings.certs.join("agent.pem")),
        path_str(&settings.certs.join("agent.key")),
    );
    if let Some((budget_ms, digest_timeout_ms)) = settings.coupon_timeouts_ms {
        let _ = write!(
            text,
            "\n[coupons]\nbudget_ms = {budget_ms}\ndigest_timeout_ms = {digest_timeout_ms}\n"
        );
    }
    std::fs::write(path, text).map_err(io_err(format!("writing {}", path.display())))
}

/// Polls `check` every 100 ms until it returns `Some` or `timeout` passes.
pub fn wait_until<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The profile for `card` from the hub `api` (an address, or a [`HubApi`] with its token):
/// `Some(json)` on 200, `None` otherwise.
pub fn fetch_profile(api: impl Into<HubApi>, card: &str) -> Option<serde_json::Value> {
    let r = api
        .into()
        .get(
            &format!("/api/v1/profiles/by-card/{card}"),
            Duration::from_secs(5),
        )
        .ok()?;
    if r.status == 200 {
        r.json()
    } else {
        None
    }
}

/// Per card, how the hub's profile differs from the simulation's expectation (count,
/// total and stores); empty when everything arrived exactly once.
pub fn profile_differences(
    api: impl Into<HubApi>,
    expected: &std::collections::BTreeMap<String, crate::sim::CardExpectation>,
) -> Vec<String> {
    let api = api.into();
    let mut diffs = Vec::new();
    for (card, want) in expected {
        let Some(p) = fetch_profile(api.clone(), card) else {
            diffs.push(format!("{card}: no profile"));
            continue;
        };
        let t = &p["transactions"];
        let count = t["count"].as_u64();
        let total = t["total_cents"].as_i64();
        let mut stores: Vec<String> = t["stores"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        stores.sort();
        let want_stores: Vec<String> = want.stores.iter().cloned().collect();
        if count != Some(want.count) || total != Some(want.total_cents) || stores != want_stores {
            diffs.push(format!(
                "{card}: hub has count {count:?} total {total:?} stores {stores:?}, \
                 expected {} / {} / {want_stores:?}",
                want.count, want.total_cents
            ));
        }
    }
    diffs
}
