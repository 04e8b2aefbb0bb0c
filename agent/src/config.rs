//! `agent.toml`: what a till's agent connects to and where it keeps its journal.
//!
//! Parsing is two steps: serde reads the raw shape (unknown keys refused), then
//! [`AgentConfig::from_toml_str`] checks every value and resolves relative paths
//! against the config file's folder. Every error names the file, the key and the reason.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;
use till360_shared::{AgentId, CardPrefixes};

use crate::escpos::{CodePage, EscTTable};
use crate::ports::PortSpec;
use crate::scanner::Suffix;

pub const DEFAULT_BAUD: u32 = 9600;
pub const DEFAULT_SUFFIX: &str = "cr";
pub const DEFAULT_CODEPAGE: &str = "cp437";
pub const DEFAULT_CARD_TIMEOUT_SECS: u64 = 600;
pub const DEFAULT_BATCH_MAX: usize = 500;
pub const DEFAULT_WINDOW: u64 = 2000;
pub const DEFAULT_COUPON_BUDGET_MS: u64 = 50;
pub const DEFAULT_DIGEST_TIMEOUT_MS: u64 = 150;
pub const DEFAULT_COUPON_COLUMNS: usize = 48;
pub const DEFAULT_EXPIRY_LABEL: &str = "Geldig t/m";
/// Other stores' codes accepted unverified per hub outage, unless `[coupons]
/// max_unverified` says otherwise.
pub const DEFAULT_MAX_UNVERIFIED: u32 = 5;
/// The first line of the notice printed for a refused coupon code.
pub const DEFAULT_NOTICE_TEXT: &str = "COUPON GEWEIGERD";
/// The largest `[coupons] max_unverified`.
const MAX_MAX_UNVERIFIED: u32 = 1000;
/// The longest a cut may wait for its coupon: beyond this the POS would notice.
pub const MAX_COUPON_BUDGET_MS: u64 = 1000;
pub const MAX_DIGEST_TIMEOUT_MS: u64 = 10_000;
pub const COUPON_COLUMNS: std::ops::RangeInclusive<usize> = 16..=96;

/// A config problem, already worded for the operator: `agent.toml: [scanner] suffix: ...`.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {key}{reason}")]
    Invalid {
        file: String,
        /// `[section] key`, `[section]` or `key`; empty when the error has no position.
        key: String,
        reason: String,
    },
}

impl ConfigError {
    fn invalid(file: &str, key: &str, reason: impl fmt::Display) -> Self {
        ConfigError::Invalid {
            file: file.to_string(),
            key: if key.is_empty() {
                String::new()
            } else {
                format!("{key}: ")
            },
            reason: reason.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    /// The file this config came from (used in messages).
    pub origin: PathBuf,
    pub store: String,
    pub till: String,
    pub data_dir: PathBuf,
    pub scanner: Option<ScannerConfig>,
    pub pos: PosConfig,
    pub printer: PrinterConfig,
    pub cards: CardsConfig,
    /// `None`: no `[hub]` section, the agent only journals.
    pub hub: Option<HubLink>,
    pub checkout: CheckoutConfig,
    pub coupons: CouponsConfig,
    pub journal: JournalConfig,
    /// A `tracing` filter such as `info` or `info,till360_agent=debug`; `RUST_LOG` wins.
    pub log: Option<String>,
    /// `log_format`: `text` (default) or `json` (one object a line, with span fields).
    pub log_format: LogFormat,
    /// `[metrics] listen`: where Prometheus scrapes `GET /metrics` (`None`: off).
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// `log_format`: how log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object a line, with the span fields (store, till).
    Json,
}

/// `[journal]`: the outbox's disk quota.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalConfig {
    /// Above this size the agent alarms (error log, `status`); events are never dropped.
    pub max_bytes: u64,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            max_bytes: crate::journal::DEFAULT_MAX_BYTES,
        }
    }
}

impl AgentConfig {
    pub fn agent_id(&self) -> AgentId {
        AgentId::new(&self.store, &self.till)
    }

    /// The config file as messages name it (the path as given).
    pub fn origin_name(&self) -> String {
        file_label(&self.origin)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScannerConfig {
    pub port: PortSpec,
    pub suffix: Suffix,
    /// The POS's scanner input: every scanner byte is copied there unchanged.
    pub forward_to: Option<PortSpec>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PosConfig {
    pub port: PortSpec,
    pub codepage: CodePage,
    /// What `ESC t n` selects on this printer (`printer_model` preset + `codepage_map`).
    pub esc_t: EscTTable,
    /// The receipt layout file (`config/receipts/*.toml`).
    pub layout: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PrinterConfig {
    pub port: PortSpec,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CardsConfig {
    pub prefixes: CardPrefixes,
}

/// How to reach the hub: `[hub]`.
#[derive(Debug, Clone, PartialEq)]
pub struct HubLink {
    /// `HOST:PORT` (UDP) of each hub, resolved at every connect: the agent uses one at a
    /// time and fails over to the next (a name resolving to several addresses counts as
    /// several hubs). Never empty.
    pub addresses: Vec<String>,
    /// The name the hub's certificate must carry.
    pub server_name: String,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Events per `Events` frame.
    pub batch_max: usize,
    /// Events sent but not yet acknowledged.
    pub window: u64,
    /// The config file name, for TLS loading messages.
    pub origin: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckoutConfig {
    /// How long a scanned card waits for its receipt.
    pub card_timeout_secs: u64,
}

impl CheckoutConfig {
    pub fn card_timeout_ms(&self) -> i64 {
        i64::try_from(self.card_timeout_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
    }
}

impl Default for CheckoutConfig {
    fn default() -> Self {
        Self {
            card_timeout_secs: DEFAULT_CARD_TIMEOUT_SECS,
        }
    }
}

/// `[coupons]`: printing coupons at the cut and redeeming scanned ones.
#[derive(Debug, Clone, PartialEq)]
pub struct CouponsConfig {
    /// `false`: no coupon is decided or printed; the proxy never holds a cut.
    pub enabled: bool,
    /// How long a cut waits for its coupon decision at most.
    pub budget_ms: u64,
    /// How long the uplink waits for the hub's answer to a request (a scanned card's
    /// digest, another store's coupon code).
    pub digest_timeout_ms: u64,
    /// Characters per line in the printer's normal font (48 on 80 mm paper, 32 on 58 mm).
    pub columns: usize,
    /// Printed before the expiry date.
    pub expiry_label: String,
    /// Other stores' codes accepted while the hub is unreachable, per outage; more
    /// are refused (`unverifiable`). 0: none.
    pub max_unverified: u32,
    /// The first line of the notice printed for a refused or unverifiable code.
    pub notice_text: String,
}

impl CouponsConfig {
    pub fn budget(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.budget_ms)
    }

    pub fn digest_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.digest_timeout_ms)
    }
}

impl Default for CouponsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            budget_ms: DEFAULT_COUPON_BUDGET_MS,
            digest_timeout_ms: DEFAULT_DIGEST_TIMEOUT_MS,
            columns: DEFAULT_COUPON_COLUMNS,
            expiry_label: DEFAULT_EXPIRY_LABEL.to_string(),
            max_unverified: DEFAULT_MAX_UNVERIFIED,
            notice_text: DEFAULT_NOTICE_TEXT.to_string(),
        }
    }
}

/// The smallest `[journal] max_bytes` accepted.
const MIN_JOURNAL_BYTES: u64 = 1 << 20;

// ---- the raw shape, as serde reads it ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    store: String,
    till: String,
    data_dir: String,
    scanner: Option<RawScanner>,
    pos: RawPos,
    printer: RawPrinter,
    cards: RawCards,
    hub: Option<RawHub>,
    checkout: Option<RawCheckout>,
    coupons: Option<RawCoupons>,
    journal: Option<RawJournal>,
    log: Option<String>,
    log_format: Option<String>,
    metrics: Option<RawMetrics>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJournal {
    max_bytes: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScanner {
    port: String,
    baud: Option<u32>,
    suffix: Option<String>,
    forward_to: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPos {
    port: String,
    baud: Option<u32>,
    codepage: Option<String>,
    printer_model: Option<String>,
    /// `ESC t` number (a TOML key is a string: `{ 19 = "cp858" }`) to code page name.
    codepage_map: Option<std::collections::BTreeMap<String, String>>,
    layout: String,
}

/// `[pos] printer_model` (default "epson") with `[pos] codepage_map` on top; an error
/// is (key, reason).
fn esc_t_table(pos: &RawPos) -> Result<EscTTable, (&'static str, String)> {
    let model = pos.printer_model.as_deref().unwrap_or("epson");
    let mut table = EscTTable::for_model(model).ok_or_else(|| {
        (
            "[pos] printer_model",
            format!(
                "{model:?} is not a known printer model (known: {})",
                EscTTable::MODELS.join(", ")
            ),
        )
    })?;
    for (number, name) in pos.codepage_map.iter().flatten() {
        let n: u8 = number.trim().parse().map_err(|_| {
            (
                "[pos] codepage_map",
                format!("{number:?} is not an ESC t number (0 to 255)"),
            )
        })?;
        let page = CodePage::from_name(name).ok_or_else(|| {
            (
                "[pos] codepage_map",
                format!("{number} = {name:?} is not a supported code page"),
            )
        })?;
        table = table.with(n, page);
    }
    Ok(table)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrinter {
    port: String,
    baud: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCards {
    prefixes: Vec<String>,
}

/// `address = "HOST:PORT"` or `address = ["HOST:PORT", ...]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawAddresses {
    One(String),
    Several(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHub {
    address: RawAddresses,
    server_name: Option<String>,
    ca: String,
    cert: String,
    key: String,
    batch_max: Option<usize>,
    window: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheckout {
    card_timeout_secs: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCoupons {
    enabled: Option<bool>,
    budget_ms: Option<u64>,
    digest_timeout_ms: Option<u64>,
    columns: Option<usize>,
    expiry_label: Option<String>,
    max_unverified: Option<u32>,
    notice_text: Option<String>,
}

/// The config file as messages name it: the path as given (as the hub does), so an
/// operator with several configs knows which one is meant.
fn file_label(path: &Path) -> String {
    path.display().to_string()
}

impl AgentConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.display().to_string(),
            source,
        })?;
        Self::from_toml_str(&text, path)
    }

    /// Parses `text` as if read from `origin` (whose folder anchors relative paths).
    /// The sections are checked in file order, so the first error reported is the same
    /// whatever else is wrong further down.
    pub fn from_toml_str(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let file = file_label(origin);
        let raw = parse_raw(text, &file)?;
        let cx = Checker {
            file: &file,
            base: origin.parent().map(Path::to_path_buf).unwrap_or_default(),
        };
        identity_section(&raw, &cx)?;
        let scanner = raw
            .scanner
            .as_ref()
            .map(|s| scanner_section(s, &cx))
            .transpose()?;
        let pos = pos_section(&raw.pos, &cx)?;
        let printer = printer_section(&raw.printer, &cx)?;
        let cards = cards_section(&raw.cards, &cx)?;
        let hub = raw.hub.map(|h| hub_section(h, &cx)).transpose()?;
        let checkout = checkout_section(raw.checkout.as_ref(), &cx)?;
        let coupons = match raw.coupons {
            None => CouponsConfig::default(),
            Some(c) => coupons_section(c, &cx)?,
        };
        let journal = journal_section(raw.journal.as_ref(), &cx)?;
        let log_format = logging_section(raw.log.as_deref(), raw.log_format.as_deref(), &cx)?;
        let metrics_listen = metrics_section(raw.metrics, &cx)?;
        Ok(AgentConfig {
            origin: origin.to_path_buf(),
            data_dir: cx.resolve(&raw.data_dir),
            store: raw.store,
            till: raw.till,
            scanner,
            pos,
            printer,
            cards,
            hub,
            checkout,
            coupons,
            journal,
            log: raw.log,
            log_format,
            metrics_listen,
        })
    }
}

// ---- the checks, one function per section, composed by `from_toml_str` ----

/// What every section's check needs: the file as errors name it and the folder that
/// anchors relative paths.
struct Checker<'a> {
    file: &'a str,
    base: PathBuf,
}

impl Checker<'_> {
    /// The error for `key` (`[section] key`, or a top-level key).
    fn bad(&self, key: &str, reason: impl fmt::Display) -> ConfigError {
        ConfigError::invalid(self.file, key, reason)
    }

    /// `Err(bad(key, reason()))` unless `ok`.
    fn ensure(
        &self,
        ok: bool,
        key: &str,
        reason: impl FnOnce() -> String,
    ) -> Result<(), ConfigError> {
        if ok {
            Ok(())
        } else {
            Err(self.bad(key, reason()))
        }
    }

    /// `value` must hold more than white space.
    fn not_empty(&self, key: &str, value: &str, reason: &str) -> Result<(), ConfigError> {
        self.ensure(!value.trim().is_empty(), key, || reason.to_string())
    }

    /// A path as given, or relative to the config file's folder.
    fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    /// A device at `value` for `key`: a serial device (or a pty), or with `tcp_ok` also
    /// `tcp://` (only the printer).
    fn device(
        &self,
        key: &str,
        value: &str,
        baud: u32,
        tcp_ok: bool,
    ) -> Result<PortSpec, ConfigError> {
        let spec = PortSpec::parse(value, baud, &self.base).map_err(|e| self.bad(key, e))?;
        self.ensure(tcp_ok || !matches!(spec, PortSpec::Tcp { .. }), key, || {
            format!("{value:?}: tcp:// is only for the printer; use a serial device")
        })?;
        Ok(spec)
    }

    /// `[section] port` and `[section] baud`.
    fn port(
        &self,
        section: &str,
        value: &str,
        baud: Option<u32>,
        tcp_ok: bool,
    ) -> Result<PortSpec, ConfigError> {
        let key = format!("[{section}] port");
        self.not_empty(&key, value, "must not be empty")?;
        let baud = baud.unwrap_or(DEFAULT_BAUD);
        self.ensure(baud != 0, &format!("[{section}] baud"), || {
            "must be above 0".into()
        })?;
        self.device(&key, value, baud, tcp_ok)
    }
}

/// serde's reading of the file; its error names the key it points at.
fn parse_raw(text: &str, file: &str) -> Result<RawConfig, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let key = match e.span() {
            None => String::new(),
            // A missing key is reported on its table: the whole file for the top
            // level (blame no key), the header line for a section.
            Some(span) if e.message().starts_with("missing field") => {
                let table = key_at(text, span.start);
                let whole_file = span.start == 0 && span.end >= text.trim_end().len();
                if whole_file || !table.starts_with('[') || table.contains("] ") {
                    String::new()
                } else {
                    table
                }
            }
            Some(span) => key_at(text, span.start),
        };
        ConfigError::invalid(file, &key, e.message())
    })
}

/// `store`, `till` and `data_dir`.
fn identity_section(raw: &RawConfig, cx: &Checker<'_>) -> Result<(), ConfigError> {
    for (key, value) in [("store", &raw.store), ("till", &raw.till)] {
        cx.ensure(AgentId::is_valid_part(value), key, || {
            format!("{value:?} is not a valid id (1 to 32 of A-Z a-z 0-9 _ . -)")
        })?;
    }
    cx.not_empty("data_dir", &raw.data_dir, "must not be empty")
}

/// `[scanner]`: its port, suffix and the optional port it forwards scans to.
fn scanner_section(s: &RawScanner, cx: &Checker<'_>) -> Result<ScannerConfig, ConfigError> {
    let suffix_text = s.suffix.as_deref().unwrap_or(DEFAULT_SUFFIX);
    let suffix = suffix_text.parse::<Suffix>().map_err(|_| {
        cx.bad(
            "[scanner] suffix",
            format!("{suffix_text:?} is not one of cr, lf, crlf, stx_etx"),
        )
    })?;
    let port = cx.port("scanner", &s.port, s.baud, false)?;
    let forward_to = match s.forward_to.as_deref() {
        None => None,
        Some(value) => Some(scanner_forward_to(value, s.baud, &port, cx)?),
    };
    Ok(ScannerConfig {
        port,
        suffix,
        forward_to,
    })
}

/// `[scanner] forward_to`: a serial device other than the scanner's own.
fn scanner_forward_to(
    value: &str,
    baud: Option<u32>,
    scanner_port: &PortSpec,
    cx: &Checker<'_>,
) -> Result<PortSpec, ConfigError> {
    let key = "[scanner] forward_to";
    cx.not_empty(
        key,
        value,
        "must not be empty (leave the key out to forward nothing)",
    )?;
    // The POS's scanner input runs at the scanner's line speed.
    let spec = cx.device(key, value, baud.unwrap_or(DEFAULT_BAUD), false)?;
    cx.ensure(spec != *scanner_port, key, || {
        format!("{value:?} is the scanner's own port")
    })?;
    Ok(spec)
}

/// `[pos]`: its port, code page, the printer model's `ESC t` numbering and the layout.
fn pos_section(pos: &RawPos, cx: &Checker<'_>) -> Result<PosConfig, ConfigError> {
    let codepage_name = pos.codepage.as_deref().unwrap_or(DEFAULT_CODEPAGE);
    let codepage = CodePage::from_name(codepage_name).ok_or_else(|| {
        cx.bad(
            "[pos] codepage",
            format!("{codepage_name:?} is not a supported code page"),
        )
    })?;
    cx.not_empty("[pos] layout", &pos.layout, "must not be empty")?;
    let esc_t = esc_t_table(pos).map_err(|(key, reason)| cx.bad(key, reason))?;
    Ok(PosConfig {
        port: cx.port("pos", &pos.port, pos.baud, false)?,
        codepage,
        esc_t,
        layout: cx.resolve(&pos.layout),
    })
}

/// `[printer]`: the one port that may be `tcp://`.
fn printer_section(printer: &RawPrinter, cx: &Checker<'_>) -> Result<PrinterConfig, ConfigError> {
    Ok(PrinterConfig {
        port: cx.port("printer", &printer.port, printer.baud, true)?,
    })
}

/// `[cards] prefixes`: at least one.
fn cards_section(cards: &RawCards, cx: &Checker<'_>) -> Result<CardsConfig, ConfigError> {
    let key = "[cards] prefixes";
    cx.ensure(!cards.prefixes.is_empty(), key, || {
        "lists no prefix: no scan could ever be a loyalty card".into()
    })?;
    let prefixes =
        CardPrefixes::new(cards.prefixes.iter().map(String::as_str)).map_err(|e| cx.bad(key, e))?;
    Ok(CardsConfig { prefixes })
}

/// `[hub]`: the hubs to fail over between, the TLS files and the uplink's sizes.
fn hub_section(h: RawHub, cx: &Checker<'_>) -> Result<HubLink, ConfigError> {
    let addresses = hub_addresses(h.address, cx)?;
    let server_name = match h.server_name {
        Some(name) => name,
        None => host_of(&addresses[0]).to_string(),
    };
    cx.not_empty("[hub] server_name", &server_name, "must not be empty")?;
    let batch_max = h.batch_max.unwrap_or(DEFAULT_BATCH_MAX);
    cx.ensure(batch_max != 0, "[hub] batch_max", || {
        "must be above 0".into()
    })?;
    let window = h.window.unwrap_or(DEFAULT_WINDOW);
    cx.ensure(window != 0, "[hub] window", || "must be above 0".into())?;
    for (key, value) in [("ca", &h.ca), ("cert", &h.cert), ("key", &h.key)] {
        cx.not_empty(&format!("[hub] {key}"), value, "must not be empty")?;
    }
    Ok(HubLink {
        addresses,
        server_name,
        ca: cx.resolve(&h.ca),
        cert: cx.resolve(&h.cert),
        key: cx.resolve(&h.key),
        batch_max,
        window,
        origin: cx.file.to_string(),
    })
}

/// `[hub] address`: one `HOST:PORT` or a non-empty list of them.
fn hub_addresses(address: RawAddresses, cx: &Checker<'_>) -> Result<Vec<String>, ConfigError> {
    let key = "[hub] address";
    let addresses = match address {
        RawAddresses::One(address) => vec![address],
        RawAddresses::Several(list) => list,
    };
    cx.ensure(!addresses.is_empty(), key, || {
        "lists no hub: give \"HOST:PORT\" or a list of them".into()
    })?;
    for address in &addresses {
        cx.ensure(
            !host_of(address).is_empty() && has_port(address),
            key,
            || format!("{address:?} is not HOST:PORT"),
        )?;
    }
    Ok(addresses)
}

/// `[checkout] card_timeout_secs`.
fn checkout_section(
    checkout: Option<&RawCheckout>,
    cx: &Checker<'_>,
) -> Result<CheckoutConfig, ConfigError> {
    match checkout.and_then(|c| c.card_timeout_secs) {
        Some(0) => Err(cx.bad("[checkout] card_timeout_secs", "must be above 0")),
        Some(secs) => Ok(CheckoutConfig {
            card_timeout_secs: secs,
        }),
        None => Ok(CheckoutConfig::default()),
    }
}

/// `[coupons]`: the cut's budget, the digest wait, the block's width and texts, the
/// offline allowance; a key left out keeps its default.
fn coupons_section(c: RawCoupons, cx: &Checker<'_>) -> Result<CouponsConfig, ConfigError> {
    let defaults = CouponsConfig::default();
    let budget_ms = c.budget_ms.unwrap_or(defaults.budget_ms);
    cx.ensure(
        (1..=MAX_COUPON_BUDGET_MS).contains(&budget_ms),
        "[coupons] budget_ms",
        || {
            format!(
                "{budget_ms} is out of range (1..={MAX_COUPON_BUDGET_MS}): \
                 the receipt's cut waits this long at most"
            )
        },
    )?;
    let digest_timeout_ms = c.digest_timeout_ms.unwrap_or(defaults.digest_timeout_ms);
    cx.ensure(
        (1..=MAX_DIGEST_TIMEOUT_MS).contains(&digest_timeout_ms),
        "[coupons] digest_timeout_ms",
        || format!("{digest_timeout_ms} is out of range (1..={MAX_DIGEST_TIMEOUT_MS})"),
    )?;
    let columns = c.columns.unwrap_or(defaults.columns);
    cx.ensure(
        COUPON_COLUMNS.contains(&columns),
        "[coupons] columns",
        || {
            format!(
                "{columns} is out of range ({}..={})",
                COUPON_COLUMNS.start(),
                COUPON_COLUMNS.end()
            )
        },
    )?;
    let expiry_label = c.expiry_label.unwrap_or(defaults.expiry_label);
    cx.ensure(printable(&expiry_label), "[coupons] expiry_label", || {
        format!("{expiry_label:?} must be printable text, not empty")
    })?;
    let max_unverified = c.max_unverified.unwrap_or(defaults.max_unverified);
    cx.ensure(
        max_unverified <= MAX_MAX_UNVERIFIED,
        "[coupons] max_unverified",
        || format!("{max_unverified} is out of range (0..={MAX_MAX_UNVERIFIED})"),
    )?;
    let notice_text = c.notice_text.unwrap_or(defaults.notice_text);
    cx.ensure(
        printable(&notice_text) && notice_text.chars().count() <= columns,
        "[coupons] notice_text",
        || {
            format!(
                "{notice_text:?} must be printable text, not empty, at most \
                 [coupons] columns ({columns}) characters"
            )
        },
    )?;
    Ok(CouponsConfig {
        enabled: c.enabled.unwrap_or(defaults.enabled),
        budget_ms,
        digest_timeout_ms,
        columns,
        expiry_label,
        max_unverified,
        notice_text,
    })
}

/// Text for the receipt: not blank, no control characters.
fn printable(text: &str) -> bool {
    !text.trim().is_empty() && !text.chars().any(char::is_control)
}

/// `[journal] max_bytes`: at least [`MIN_JOURNAL_BYTES`].
fn journal_section(
    journal: Option<&RawJournal>,
    cx: &Checker<'_>,
) -> Result<JournalConfig, ConfigError> {
    let Some(j) = journal else {
        return Ok(JournalConfig::default());
    };
    let max_bytes = j.max_bytes.unwrap_or(crate::journal::DEFAULT_MAX_BYTES);
    // Below 1 MiB every till would alarm after a few receipts offline.
    cx.ensure(
        max_bytes >= MIN_JOURNAL_BYTES,
        "[journal] max_bytes",
        || format!("{max_bytes} is below the minimum of {MIN_JOURNAL_BYTES} (1 MiB)"),
    )?;
    Ok(JournalConfig { max_bytes })
}

/// `log` (a filter, not blank when given) and `log_format`.
fn logging_section(
    log: Option<&str>,
    log_format: Option<&str>,
    cx: &Checker<'_>,
) -> Result<LogFormat, ConfigError> {
    if let Some(filter) = log {
        cx.not_empty("log", filter, "must not be empty (leave it out for info)")?;
    }
    match log_format {
        None | Some("text") => Ok(LogFormat::Text),
        Some("json") => Ok(LogFormat::Json),
        Some(other) => Err(cx.bad(
            "log_format",
            format!("{other:?} is not a log format: use \"text\" or \"json\""),
        )),
    }
}

/// `[metrics] listen`: `IP:PORT` when given.
fn metrics_section(
    metrics: Option<RawMetrics>,
    cx: &Checker<'_>,
) -> Result<Option<std::net::SocketAddr>, ConfigError> {
    let Some(listen) = metrics.and_then(|m| m.listen) else {
        return Ok(None);
    };
    listen.parse().map(Some).map_err(|e| {
        cx.bad(
            "[metrics] listen",
            format!("{listen:?} is not IP:PORT (e.g. \"127.0.0.1:9184\"): {e}"),
        )
    })
}

/// Whether `address` ends in `:PORT` with a port number.
fn has_port(address: &str) -> bool {
    address
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok_and(|p| p != 0))
}

/// The host part of `HOST:PORT` or `[V6]:PORT`.
fn host_of(address: &str) -> &str {
    if let Some(rest) = address.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    address.rsplit_once(':').map_or(address, |(host, _)| host)
}

/// Names the key a parse error points at: `[section] key`, `[section]` (the error is
/// about the table itself, e.g. a missing key) or `key` at the top level.
fn key_at(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("").trim();
    let section = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && !l.starts_with("[["))
        .map(|l| {
            l.split(']')
                .next()
                .unwrap_or(l)
                .trim_start_matches('[')
                .trim()
        });
    if line.starts_with('[') {
        // The error concerns a whole table (e.g. a missing key in it).
        let name = line
            .split(']')
            .next()
            .unwrap_or(line)
            .trim_start_matches('[');
        return format!("[{}]", name.trim());
    }
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string());
    match (section, key) {
        (Some(s), Some(k)) => format!("[{s}] {k}"),
        (None, Some(k)) => k,
        (Some(s), None) => format!("[{s}]"),
        (None, None) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_at_names_section_and_key() {
        let text = "store = \"S1\"\n[scanner]\nport = \"/dev/x\"\nbaud = \"fast\"\n";
        let at = text.find("\"fast\"").unwrap();
        assert_eq!(key_at(text, at), "[scanner] baud");
        assert_eq!(key_at(text, 2), "store");
        assert_eq!(key_at(text, text.find("[scanner]").unwrap()), "[scanner]");
    }

    #[test]
    fn coupons_default_and_errors_name_the_key() {
        let base = "store = \"S1\"\ntill = \"T1\"\ndata_dir = \"d\"\n\
                    [pos]\nport = \"/dev/a\"\nlayout = \"l.toml\"\n\
                    [printer]\nport = \"/dev/b\"\n[cards]\nprefixes = [\"2401\"]\n";
        let origin = Path::new("/etc/till/agent.toml");
        let config = AgentConfig::from_toml_str(base, origin).unwrap();
        assert_eq!(config.coupons, CouponsConfig::default());
        let with = |section: &str| {
            AgentConfig::from_toml_str(&format!("{base}[coupons]\n{section}"), origin)
        };
        let set =
            with("enabled = false\nbudget_ms = 80\ncolumns = 32\nexpiry_label = \"Valid until\"\n")
                .unwrap()
                .coupons;
        assert!(!set.enabled);
        assert_eq!((set.budget_ms, set.columns), (80, 32));
        assert_eq!(set.expiry_label, "Valid until");
        assert_eq!(set.digest_timeout_ms, DEFAULT_DIGEST_TIMEOUT_MS);
        let set = with("max_unverified = 0\nnotice_text = \"Refused coupon\"\n")
            .unwrap()
            .coupons;
        assert_eq!(
            (set.max_unverified, set.notice_text.as_str()),
            (0, "Refused coupon")
        );
        for (section, key) in [
            ("budget_ms = 0\n", "[coupons] budget_ms"),
            ("budget_ms = 5000\n", "[coupons] budget_ms"),
            ("digest_timeout_ms = 0\n", "[coupons] digest_timeout_ms"),
            ("columns = 3\n", "[coupons] columns"),
            ("expiry_label = \"\"\n", "[coupons] expiry_label"),
            ("max_unverified = 5000\n", "[coupons] max_unverified"),
            ("notice_text = \"\"\n", "[coupons] notice_text"),
            (
                "columns = 24\nnotice_text = \"a notice longer than the paper is wide\"\n",
                "[coupons] notice_text",
            ),
            ("colums = 32\n", "[coupons]"),
        ] {
            let err = with(section).unwrap_err().to_string();
            assert!(err.starts_with("/etc/till/agent.toml: "), "{err}");
            assert!(err.contains(key), "{section:?}: {err}");
        }
    }

    #[test]
    fn hub_address_is_one_hub_or_a_list_to_fail_over_between() {
        let base = "store = \"S1\"\ntill = \"T1\"\ndata_dir = \"d\"\n\
                    [printer]\nport = \"/dev/b\"\n[cards]\nprefixes = [\"2401\"]\n\
                    [pos]\nport = \"/dev/a\"\nlayout = \"l.toml\"\n\
                    [hub]\nca = \"ca.pem\"\ncert = \"a.pem\"\nkey = \"a.key\"\n";
        let origin = Path::new("/etc/till/agent.toml");
        let with = |keys: &str| AgentConfig::from_toml_str(&format!("{base}{keys}"), origin);
        let one = with("address = \"hub.example:4433\"\n")
            .unwrap()
            .hub
            .unwrap();
        assert_eq!(one.addresses, vec!["hub.example:4433".to_string()]);
        assert_eq!(one.server_name, "hub.example");
        let several = with("address = [\"hub-a.example:4433\", \"10.0.0.7:4433\"]\n")
            .unwrap()
            .hub
            .unwrap();
        assert_eq!(
            several.addresses,
            vec![
                "hub-a.example:4433".to_string(),
                "10.0.0.7:4433".to_string()
            ]
        );
        assert_eq!(several.server_name, "hub-a.example", "from the first hub");
        for (keys, reason) in [
            ("address = []\n", "lists no hub"),
            (
                "address = [\"hub:4433\", \"hub-b\"]\n",
                "\"hub-b\" is not HOST:PORT",
            ),
            ("address = \"hub:0\"\n", "\"hub:0\" is not HOST:PORT"),
            ("address = [\"hub:4433\", 7]\n", "[hub] address"),
        ] {
            let err = with(keys).unwrap_err().to_string();
            assert!(err.starts_with("/etc/till/agent.toml: "), "{err}");
            assert!(err.contains("[hub] address"), "{keys:?}: {err}");
            assert!(err.contains(reason), "{keys:?}: {err}");
        }
    }

    #[test]
    fn esc_t_numbering_from_printer_model_and_codepage_map() {
        let base = "store = \"S1\"\ntill = \"T1\"\ndata_dir = \"d\"\n\
                    [printer]\nport = \"/dev/b\"\n[cards]\nprefixes = [\"2401\"]\n\
                    [pos]\nport = \"/dev/a\"\nlayout = \"l.toml\"\n";
        let origin = Path::new("/etc/till/agent.toml");
        let with = |keys: &str| AgentConfig::from_toml_str(&format!("{base}{keys}"), origin);
        assert_eq!(with("").unwrap().pos.esc_t, EscTTable::epson());
        let mapped =
            with("printer_model = \"Epson\"\ncodepage_map = { 40 = \"cp858\", 16 = \"cp866\" }\n")
                .unwrap()
                .pos
                .esc_t;
        assert_eq!(mapped.get(40), Some(CodePage::Cp858));
        assert_eq!(mapped.get(16), Some(CodePage::Cp866));
        assert_eq!(
            mapped.get(19),
            Some(CodePage::Cp858),
            "the rest stays Epson"
        );
        for (keys, reason) in [
            (
                "printer_model = \"acme\"\n",
                "[pos] printer_model: \"acme\" is not a known",
            ),
            (
                "codepage_map = { 256 = \"cp858\" }\n",
                "[pos] codepage_map: \"256\"",
            ),
            (
                "codepage_map = { x = \"cp858\" }\n",
                "[pos] codepage_map: \"x\"",
            ),
            (
                "codepage_map = { 19 = \"utf8\" }\n",
                "[pos] codepage_map: 19 = \"utf8\"",
            ),
        ] {
            let err = with(keys).unwrap_err().to_string();
            assert!(err.starts_with("/etc/till/agent.toml: "), "{err}");
            assert!(err.contains(reason), "{keys:?}: {err}");
        }
    }

    #[test]
    fn host_of_handles_v6() {
        assert_eq!(host_of("hub.example:4433"), "hub.example");
        assert_eq!(host_of("[::1]:4433"), "::1");
    }
}
