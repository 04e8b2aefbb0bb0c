//! `hub.toml`: keys are binding (DESIGN.md). Relative paths are relative to the folder
//! of the config file; every error names the file, the key and the reason.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: key `{key}`: {reason}")]
    Invalid {
        path: PathBuf,
        key: String,
        reason: String,
    },
}

/// Where the hub keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(PostgresUrl),
}

impl std::fmt::Display for DatabaseUrl {
    /// The URL as messages show it: never with a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatabaseUrl::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            DatabaseUrl::Postgres(url) => url.fmt(f),
        }
    }
}

/// `postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?sslmode=..]` (or `postgresql://`), checked
/// when the config is read. `Display` and `Debug` leave the password out; only the store's
/// PostgreSQL backend reads it ([`PostgresUrl::connection_string`]).
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl {
    scheme: String,
    /// As written (percent-encoded, if it was).
    user: String,
    password: Option<String>,
    host: String,
    port: u16,
    dbname: String,
    /// `key=value` pairs after `?`, as written.
    query: Vec<(String, String)>,
}

impl PostgresUrl {
    pub fn parse(text: &str) -> Result<Self, String> {
        let expected =
            "expected postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?sslmode=disable|prefer]";
        let (scheme, rest) = if let Some(rest) = text.strip_prefix("postgres://") {
            ("postgres", rest)
        } else if let Some(rest) = text.strip_prefix("postgresql://") {
            ("postgresql", rest)
        } else {
            return Err(expected.into());
        };
        let (rest, query_text) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (rest, None),
        };
        let (authority, dbname) = rest
            .split_once('/')
            .ok_or_else(|| format!("no database name: {expected}"))?;
        if dbname.is_empty() || dbname.contains('/') {
            return Err(format!("no database name: {expected}"));
        }
        let (userinfo, hostport) = authority
            .rsplit_once('@')
            .ok_or_else(|| format!("no user: {expected}"))?;
        let (user, password) = match userinfo.split_once(':') {
            Some((user, password)) => (user, Some(password.to_string())),
            None => (userinfo, None),
        };
        if user.is_empty() {
            return Err(format!("no user: {expected}"));
        }
        // `[::1]:5432`, `db.example:5432`, `db.example`.
        let (host, port) = match hostport.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => {
                let port = port
                    .parse::<u16>()
                    .map_err(|_| format!("port {port:?} is not a number: {expected}"))?;
                (host, port)
            }
            _ => (hostport, 5432),
        };
        if host.is_empty() {
            return Err(format!("no host: {expected}"));
        }
        let mut query = Vec::new();
        for pair in query_text
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if key == "sslmode" {
                match value {
                    "disable" | "prefer" => {}
                    "require" | "verify-ca" | "verify-full" => {
                        return Err(format!(
                        "sslmode={value}: this hub talks to PostgreSQL without TLS (it is built \
                             without a TLS library for it); use sslmode=disable or prefer on a \
                             trusted network, or reach the server through a tunnel"
                    ))
                    }
                    other => return Err(format!("sslmode={other}: expected disable or prefer")),
                }
            }
            query.push((key.to_string(), value.to_string()));
        }
        Ok(Self {
            scheme: scheme.into(),
            user: user.into(),
            password,
            host: host.into(),
            port,
            dbname: dbname.into(),
            query,
        })
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dbname(&self) -> &str {
        &self.dbname
    }

    /// Whether the URL carries a password (else the backend reads `PGPASSWORD`).
    pub fn has_password(&self) -> bool {
        self.password.is_some() || self.query.iter().any(|(key, _)| key == "password")
    }

    /// The same server and credentials, another database (a scratch database for tests,
    /// the server's maintenance database).
    pub fn with_dbname(&self, dbname: &str) -> Self {
        Self {
            dbname: dbname.into(),
            ..self.clone()
        }
    }

    /// The full URL, password included: for the PostgreSQL backend's connect only.
    pub fn connection_string(&self) -> String {
        self.write(true)
    }

    fn write(&self, with_password: bool) -> String {
        let mut out = format!("{}://{}", self.scheme, self.user);
        if let Some(password) = &self.password {
            out.push(':');
            out.push_str(if with_password { password } else { "***" });
        }
        out.push_str(&format!("@{}:{}/{}", self.host, self.port, self.dbname));
        let mut first = true;
        for (key, value) in &self.query {
            out.push(if first { '?' } else { '&' });
            first = false;
            let shown = if key == "password" && !with_password {
                "***"
            } else {
                value
            };
            out.push_str(&format!("{key}={shown}"));
        }
        out
    }
}

impl std::fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.write(false))
    }
}

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgresUrl({self})")
    }
}

/// The resolved hub configuration (all paths absolute or relative to the working
/// directory, never to the config file any more).
#[derive(Debug, Clone, PartialEq)]
pub struct HubConfig {
    /// The config file this came from (for messages).
    pub origin: PathBuf,
    pub data_dir: PathBuf,
    /// QUIC (UDP) listen address for agents.
    pub listen: SocketAddr,
    /// HTTP (TCP) listen address for the API and console.
    pub http: SocketAddr,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub campaigns: Option<PathBuf>,
    pub database: DatabaseUrl,
    /// `[database] timeout_seconds`: how long a statement waits for another connection's
    /// (or hub's) lock before the store reports the database busy; every connection is
    /// opened with it.
    pub database_timeout: std::time::Duration,
    /// Bearer token the HTTP API requires. Mandatory when `http` is not a loopback
    /// address: people's data never goes out unauthenticated.
    pub api_token: Option<String>,
    pub identity: IdentityConfig,
    pub traits: TraitsConfig,
    pub digests: DigestsConfig,
    pub coupons: CouponsConfig,
    /// `[[segment]]` tables, as written; `segments::` compiles them.
    pub segments: Vec<toml::Table>,
    /// `[fraud]` thresholds with the `[[store]]` locations.
    pub fraud: FraudConfig,
    /// `[till_requests]`: what each till may ask at a scan, and how often.
    pub till_requests: TillRequestsConfig,
    pub api: ApiConfig,
    pub console: ConsoleConfig,
    /// `log`: the tracing filter (RUST_LOG overrides it), `info` when unset.
    pub log: Option<String>,
    /// `log_format`: `text` (default) or `json`.
    pub log_format: LogFormat,
}

/// `[api]`: the HTTP API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// A request not answered within this many seconds gets 503 (with its request id).
    pub request_timeout_seconds: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            request_timeout_seconds: 30,
        }
    }
}

/// `[console]`: the marketer's web console (`/console/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// A till not connected and not heard from for this many seconds is shown as silent.
    pub silent_after_seconds: u64,
    /// How long a console sign-in lasts, in hours.
    pub session_hours: u64,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            silent_after_seconds: 900,
            session_hours: 8,
        }
    }
}

/// `[identity]`: how identifiers are normalised and when they may link customers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// Country calling code for phone numbers written without one (`31` for NL).
    pub default_country_code: u16,
    /// An identifier (e-mail, phone, card, ...) that would link more than this many
    /// customers is blocked from merging and reported (a shared store card, a junk
    /// e-mail address).
    pub max_customers_per_identifier: usize,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            default_country_code: 31,
            max_customers_per_identifier: 3,
        }
    }
}

/// `[traits]`: customer value and behaviour models.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TraitsConfig {
    /// Horizon of expected purchases and CLV, in days.
    pub horizon_days: u32,
    /// Gross margin applied to expected spend for CLV, in percent (100 = revenue).
    pub margin_percent: f64,
    /// How often the hub recomputes traits and segments, in minutes.
    pub recompute_minutes: u32,
}

impl Default for TraitsConfig {
    fn default() -> Self {
        Self {
            horizon_days: 365,
            margin_percent: 100.0,
            recompute_minutes: 60,
        }
    }
}

/// `[digests]`: the profile digests pushed to each store's tills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DigestsConfig {
    /// A store's tills get the digests of customers with a transaction in that store
    /// within this many months.
    pub months: u32,
    /// How often the hub refreshes the digests (also at start and after every traits
    /// recompute), in seconds.
    pub refresh_seconds: u64,
    /// How long the feed keeps a removal (a customer lapsed or erased), in days. A till
    /// that was away longer gets all its store's digests again, its cache emptied first.
    pub removal_retention_days: u32,
}

impl Default for DigestsConfig {
    fn default() -> Self {
        Self {
            months: 12,
            refresh_seconds: 300,
            removal_retention_days: 30,
        }
    }
}

/// `[coupons]`: checks on the tills' coupon redemptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CouponsConfig {
    /// A till whose clock differs from the hub's by more than this many seconds is
    /// logged at warn and flagged in `GET /api/v1/agents` (its timestamps do not decide
    /// which redemption of a code counts either way: the hub's commit order does).
    pub max_clock_skew_secs: u64,
}

impl Default for CouponsConfig {
    fn default() -> Self {
        Self {
            max_clock_skew_secs: 300,
        }
    }
}

/// `[till_requests]`: the digest requests and coupon checks a till sends at a scan are
/// answered at the pace of a real till (a token bucket per till), and a till asking about
/// many cards or codes nobody knows is reported as probing (see `listener::till_guard`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TillRequestsConfig {
    /// Requests (digest requests and coupon checks together) a till may send at once ...
    pub burst: u32,
    /// ... and per minute after that. Requests beyond it get no answer (the till uses its
    /// cache, as when the hub is slow).
    pub per_minute: u32,
    /// Digests of customers who never shopped at the till's store (a first visit) a till
    /// gets per hour; beyond it the answer is "no digest".
    pub foreign_cards_per_hour: u32,
    /// A till asking about this many unknown cards or forged codes ...
    pub probe_threshold: u32,
    /// ... within this many minutes is reported as probing.
    pub probe_window_minutes: u32,
}

impl Default for TillRequestsConfig {
    fn default() -> Self {
        Self {
            burst: 30,
            per_minute: 20,
            foreign_cards_per_hour: 20,
            probe_threshold: 20,
            probe_window_minutes: 10,
        }
    }
}

/// `[fraud]`: when a card is used in a way one household's card is not (see
/// `identity::suspicious`). The defaults never flag a simulated month of honest shoppers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FraudConfig {
    /// Off: nothing is flagged (cards already flagged stay until cleared).
    pub enabled: bool,
    /// Between two stores with locations (`[[store]]`), a card may travel at most this
    /// fast (km/h) between consecutive receipts.
    pub max_speed_kmh: f64,
    /// Added to the time between two receipts before the speed is computed: tills'
    /// clocks and the time from the cut to the next store's card scan.
    pub clock_slack_minutes: u32,
    /// Impossible hops must touch at least this many stores before a card is flagged
    /// (a family sharing its card is in as many places at once as it has shoppers out).
    pub travel_min_stores: u32,
    /// When a store has no location: two receipts at different stores closer than this
    /// (minutes) are too close.
    pub min_minutes_between_stores: u32,
    /// More receipts than this on one day (the till's local date) is more than a
    /// household makes.
    pub max_receipts_per_day: u32,
    /// A house card: at least this many receipts with different baskets, ...
    pub house_card_receipts: u32,
    /// ... on at least this many tills, ...
    pub house_card_tills: u32,
    /// ... each within this many minutes of the one before.
    pub house_card_gap_minutes: u32,
    /// `[[store]] id lat lon` of hub.toml, by store id.
    #[serde(skip)]
    pub stores: std::collections::BTreeMap<String, StoreLocation>,
}

impl Default for FraudConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_speed_kmh: 150.0,
            clock_slack_minutes: 10,
            travel_min_stores: 4,
            min_minutes_between_stores: 3,
            max_receipts_per_day: 10,
            house_card_receipts: 6,
            house_card_tills: 2,
            house_card_gap_minutes: 20,
            stores: Default::default(),
        }
    }
}

/// A store's location (`[[store]]`), in degrees (WGS 84).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoreLocation {
    pub lat: f64,
    pub lon: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    id: String,
    lat: f64,
    lon: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    data_dir: PathBuf,
    listen: String,
    http: String,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    campaigns: Option<PathBuf>,
    #[serde(default)]
    database: RawDatabase,
    api_token: Option<String>,
    #[serde(default)]
    identity: IdentityConfig,
    #[serde(default)]
    traits: TraitsConfig,
    #[serde(default)]
    digests: DigestsConfig,
    #[serde(default)]
    coupons: CouponsConfig,
    #[serde(default)]
    segment: Vec<toml::Table>,
    #[serde(default)]
    api: ApiConfig,
    #[serde(default)]
    console: ConsoleConfig,
    #[serde(default)]
    fraud: FraudConfig,
    #[serde(default)]
    store: Vec<RawStore>,
    #[serde(default)]
    till_requests: TillRequestsConfig,
    log: Option<String>,
    log_format: Option<String>,
}

/// The keys a hub.toml must have, with stand-ins that pass serde, so a file whose other
/// keys are wrong can still be checked key by key.
const REQUIRED_KEYS: [(&str, &str); 6] = [
    ("data_dir", "."),
    ("listen", "127.0.0.1:0"),
    ("http", "127.0.0.1:0"),
    ("ca", ""),
    ("cert", ""),
    ("key", ""),
];

/// Reads a TOML table serde refused as a whole one key at a time (each beside stand-ins
/// for the required keys), so every bad key is named; the raw config of the good keys,
/// with stand-ins for the bad and missing required ones, unless even that fails.
fn raw_config_by_key(
    table: toml::Table,
    origin: &Path,
    errors: &mut Vec<ConfigError>,
) -> Option<RawConfig> {
    let stand_ins: toml::Table = REQUIRED_KEYS
        .iter()
        .map(|(key, value)| (key.to_string(), toml::Value::String(value.to_string())))
        .collect();
    let mut good = toml::Table::new();
    for (key, value) in table {
        let mut probe = stand_ins.clone();
        probe.insert(key.clone(), value.clone());
        match toml::Value::Table(probe).try_into::<RawConfig>() {
            Ok(_) => {
                good.insert(key, value);
            }
            Err(e) => {
                let by_subkey = match &value {
                    toml::Value::Table(section) => section_errors(&stand_ins, &key, section),
                    _ => Vec::new(),
                };
                if by_subkey.is_empty() {
                    errors.push(ConfigError::Invalid {
                        path: origin.to_path_buf(),
                        key,
                        reason: e.message().trim_end().to_string(),
                    });
                } else {
                    errors.extend(by_subkey.into_iter().map(|(key, reason)| {
                        ConfigError::Invalid {
                            path: origin.to_path_buf(),
                            key,
                            reason,
                        }
                    }));
                }
            }
        }
    }
    for (key, value) in REQUIRED_KEYS {
        if !good.contains_key(key) {
            if !errors
                .iter()
                .any(|e| matches!(e, ConfigError::Invalid { key: k, .. } if k == key))
            {
                errors.push(ConfigError::Invalid {
                    path: origin.to_path_buf(),
                    key: key.to_string(),
                    reason: format!("missing field `{key}`"),
                });
            }
            good.insert(key.to_string(), toml::Value::String(value.to_string()));
        }
    }
    toml::Value::Table(good).try_into::<RawConfig>().ok()
}

/// The keys of a `[section]` serde refused, one at a time (`section.key`, reason).
fn section_errors(
    stand_ins: &toml::Table,
    section: &str,
    table: &toml::Table,
) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    for (key, value) in table {
        let mut probe = stand_ins.clone();
        let one: toml::Table = std::iter::once((key.clone(), value.clone())).collect();
        probe.insert(section.to_string(), toml::Value::Table(one));
        if let Err(e) = toml::Value::Table(probe).try_into::<RawConfig>() {
            errors.push((
                format!("{section}.{key}"),
                e.message().trim_end().to_string(),
            ));
        }
    }
    errors
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

impl LogFormat {
    /// `"text"` or `"json"`; anything else is the reason for a config error.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "{other:?} is not a log format: use \"text\" or \"json\""
            )),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    url: Option<String>,
    timeout_seconds: Option<u64>,
}

/// `[database] timeout_seconds` when the file does not say.
pub const DEFAULT_DATABASE_TIMEOUT_SECONDS: u64 = 10;

impl HubConfig {
    /// Reads and checks `path` like [`Self::load`], going on after a problem (see
    /// [`Self::check_toml_str`]).
    pub fn load_checked(path: impl AsRef<Path>) -> (Option<Self>, Vec<ConfigError>) {
        let path = path.as_ref();
        match std::fs::read_to_string(path) {
            Ok(text) => Self::check_toml_str(&text, path),
            Err(source) => (
                None,
                vec![ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                }],
            ),
        }
    }

    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text, path)
    }

    /// Parses config text as if it had been read from `origin_path` (relative paths
    /// resolve against that file's folder).
    pub fn from_toml_str(text: &str, origin_path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        match Self::check_toml_str(text, origin_path) {
            (Some(config), errors) if errors.is_empty() => Ok(config),
            (_, errors) => Err(errors
                .into_iter()
                .next()
                .unwrap_or_else(|| ConfigError::Parse {
                    path: PathBuf::new(),
                    message: "invalid configuration".into(),
                })),
        }
    }

    /// Checks config text like [`Self::from_toml_str`] but goes on after a problem:
    /// every problem found, and a best-effort config (values in error replaced by
    /// stand-ins) unless the TOML itself does not parse (`till360-hub check`).
    pub fn check_toml_str(
        text: &str,
        origin_path: impl AsRef<Path>,
    ) -> (Option<Self>, Vec<ConfigError>) {
        let origin = origin_path.as_ref().to_path_buf();
        let mut errors = Vec::new();
        let raw: RawConfig = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                let parse_error = ConfigError::Parse {
                    path: origin.clone(),
                    message: e.to_string().trim_end().to_string(),
                };
                match toml::from_str::<toml::Table>(text) {
                    // Valid TOML with bad keys: name every one, then go on with the rest.
                    Ok(table) => match raw_config_by_key(table, &origin, &mut errors) {
                        Some(raw) => raw,
                        None => {
                            if errors.is_empty() {
                                errors.push(parse_error);
                            }
                            return (None, errors);
                        }
                    },
                    Err(_) => return (None, vec![parse_error]),
                }
            }
        };
        let base = origin.parent().map(Path::to_path_buf).unwrap_or_default();
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let invalid = |key: &str, reason: String| ConfigError::Invalid {
            path: origin.clone(),
            key: key.to_string(),
            reason,
        };
        let addr = |key: &str, text: &str| {
            text.parse::<SocketAddr>().map_err(|e| {
                invalid(
                    key,
                    format!("{text:?} is not an address such as 127.0.0.1:4433: {e}"),
                )
            })
        };
        // A bad address is named, and the checks after it go on with a stand-in.
        let stand_in = SocketAddr::from(([127, 0, 0, 1], 0));
        let listen = addr("listen", &raw.listen).unwrap_or_else(|e| {
            errors.push(e);
            stand_in
        });
        let http = addr("http", &raw.http).unwrap_or_else(|e| {
            errors.push(e);
            stand_in
        });
        let data_dir = resolve(&raw.data_dir);
        let database = match raw.database.url.as_deref() {
            None => DatabaseUrl::Sqlite(data_dir.join("hub.db")),
            Some(url) => {
                if let Some(path) = url.strip_prefix("sqlite://") {
                    if path.is_empty() {
                        errors.push(invalid(
                            "database.url",
                            "sqlite:// needs a file path".into(),
                        ));
                        DatabaseUrl::Sqlite(data_dir.join("hub.db"))
                    } else {
                        DatabaseUrl::Sqlite(resolve(Path::new(path)))
                    }
                } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                    // The error never repeats the URL: it may hold a password.
                    match PostgresUrl::parse(url) {
                        Ok(url) => DatabaseUrl::Postgres(url),
                        Err(reason) => {
                            errors.push(invalid("database.url", reason));
                            DatabaseUrl::Sqlite(data_dir.join("hub.db"))
                        }
                    }
                } else {
                    errors.push(invalid(
                        "database.url",
                        // Only the scheme: the rest may hold a password.
                        format!(
                            "{:?}: expected sqlite://PATH or postgres://…",
                            url.split("://").next().unwrap_or_default()
                        ),
                    ));
                    DatabaseUrl::Sqlite(data_dir.join("hub.db"))
                }
            }
        };
        let database_timeout = raw
            .database
            .timeout_seconds
            .unwrap_or(DEFAULT_DATABASE_TIMEOUT_SECONDS);
        if !(1..=3600).contains(&database_timeout) {
            errors.push(invalid(
                "database.timeout_seconds",
                format!("{database_timeout} is not within 1..=3600 (one hour)"),
            ));
        }
        if let Some(token) = &raw.api_token {
            if token.len() < 16 || token.chars().any(char::is_whitespace) {
                errors.push(invalid(
                    "api_token",
                    "must be at least 16 characters without spaces".into(),
                ));
            }
        } else if !http.ip().is_loopback() {
            errors.push(invalid(
                "api_token",
                format!(
                    "the API listens on {http}, which is not a loopback address: set api_token"
                ),
            ));
        }
        if raw.identity.max_customers_per_identifier == 0 {
            errors.push(invalid(
                "identity.max_customers_per_identifier",
                "must be at least 1".into(),
            ));
        }
        if raw.traits.horizon_days == 0 || !(0.0..=100.0).contains(&raw.traits.margin_percent) {
            errors.push(invalid(
                "traits",
                "horizon_days must be at least 1 and margin_percent within 0..=100".into(),
            ));
        }
        if !(1..=120).contains(&raw.digests.months) {
            errors.push(invalid(
                "digests.months",
                format!("{} is not within 1..=120", raw.digests.months),
            ));
        }
        if !(1..=86_400).contains(&raw.digests.refresh_seconds) {
            errors.push(invalid(
                "digests.refresh_seconds",
                format!(
                    "{} is not within 1..=86400 (one day)",
                    raw.digests.refresh_seconds
                ),
            ));
        }
        if !(1..=3650).contains(&raw.digests.removal_retention_days) {
            errors.push(invalid(
                "digests.removal_retention_days",
                format!(
                    "{} is not within 1..=3650 (ten years)",
                    raw.digests.removal_retention_days
                ),
            ));
        }
        if !(1..=3600).contains(&raw.api.request_timeout_seconds) {
            errors.push(invalid(
                "api.request_timeout_seconds",
                format!(
                    "{} is not within 1..=3600 (one hour)",
                    raw.api.request_timeout_seconds
                ),
            ));
        }
        if !(1..=604_800).contains(&raw.console.silent_after_seconds) {
            errors.push(invalid(
                "console.silent_after_seconds",
                format!(
                    "{} is not within 1..=604800 (a week)",
                    raw.console.silent_after_seconds
                ),
            ));
        }
        if !(1..=720).contains(&raw.console.session_hours) {
            errors.push(invalid(
                "console.session_hours",
                format!(
                    "{} is not within 1..=720 (30 days)",
                    raw.console.session_hours
                ),
            ));
        }
        if !(1..=86_400).contains(&raw.coupons.max_clock_skew_secs) {
            errors.push(invalid(
                "coupons.max_clock_skew_secs",
                format!(
                    "{} is not within 1..=86400 (one day)",
                    raw.coupons.max_clock_skew_secs
                ),
            ));
        }
        let fraud = fraud_config(raw.fraud.clone(), raw.store).unwrap_or_else(|(key, reason)| {
            errors.push(invalid(key, reason));
            raw.fraud
        });
        for (key, value) in [
            ("till_requests.burst", raw.till_requests.burst),
            ("till_requests.per_minute", raw.till_requests.per_minute),
            (
                "till_requests.probe_threshold",
                raw.till_requests.probe_threshold,
            ),
            (
                "till_requests.probe_window_minutes",
                raw.till_requests.probe_window_minutes,
            ),
        ] {
            if value == 0 {
                errors.push(invalid(key, "must be at least 1".into()));
            }
        }
        let log_format = match raw.log_format.as_deref() {
            None => LogFormat::Text,
            Some(text) => LogFormat::parse(text).unwrap_or_else(|reason| {
                errors.push(invalid("log_format", reason));
                LogFormat::Text
            }),
        };
        if let Some(filter) = &raw.log {
            if let Err(e) = tracing_subscriber::EnvFilter::try_new(filter) {
                errors.push(invalid(
                    "log",
                    format!("{filter:?} is not a log filter: {e}"),
                ));
            }
        }
        let config = HubConfig {
            api: raw.api,
            console: raw.console,
            fraud,
            till_requests: raw.till_requests,
            api_token: raw.api_token,
            digests: raw.digests,
            coupons: raw.coupons,
            identity: raw.identity,
            traits: raw.traits,
            segments: raw.segment,
            data_dir,
            listen,
            http,
            ca: resolve(&raw.ca),
            cert: resolve(&raw.cert),
            key: resolve(&raw.key),
            campaigns: raw.campaigns.as_deref().map(resolve),
            database,
            database_timeout: std::time::Duration::from_secs(database_timeout),
            origin,
            log: raw.log,
            log_format,
        };
        (Some(config), errors)
    }
}

/// `[fraud]` checked, with the `[[store]]` locations.
fn fraud_config(
    mut fraud: FraudConfig,
    stores: Vec<RawStore>,
) -> Result<FraudConfig, (&'static str, String)> {
    if !(fraud.max_speed_kmh.is_finite() && fraud.max_speed_kmh > 0.0) {
        return Err(("fraud.max_speed_kmh", "must be a positive number".into()));
    }
    if fraud.travel_min_stores < 2 {
        return Err((
            "fraud.travel_min_stores",
            "must be at least 2 (a hop joins two stores)".into(),
        ));
    }
    for (key, value) in [
        ("fraud.max_receipts_per_day", fraud.max_receipts_per_day),
        ("fraud.house_card_receipts", fraud.house_card_receipts),
        ("fraud.house_card_tills", fraud.house_card_tills),
        ("fraud.house_card_gap_minutes", fraud.house_card_gap_minutes),
    ] {
        if value == 0 {
            return Err((key, "must be at least 1".into()));
        }
    }
    for s in stores {
        if !((-90.0..=90.0).contains(&s.lat) && (-180.0..=180.0).contains(&s.lon)) {
            return Err((
                "store",
                format!(
                    "store {:?}: lat must be within -90..=90 and lon within -180..=180",
                    s.id
                ),
            ));
        }
        let at = StoreLocation {
            lat: s.lat,
            lon: s.lon,
        };
        if fraud.stores.insert(s.id.clone(), at).is_some() {
            return Err(("store", format!("store {:?} is listed twice", s.id)));
        }
    }
    Ok(fraud)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
data_dir = "data"
listen = "127.0.0.1:0"
http = "127.0.0.1:0"
ca = "pki/ca.pem"
cert = "pki/hub.pem"
key = "/abs/hub.key"
"#;

    #[test]
    fn a_non_loopback_api_needs_a_token() {
        let open = MINIMAL.replace("http = \"127.0.0.1:0\"", "http = \"0.0.0.0:8080\"");
        let err = HubConfig::from_toml_str(&open, "/etc/hub.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/etc/hub.toml") && err.contains("api_token"),
            "{err}"
        );
        let with_token = format!("api_token = \"0123456789abcdef-secret\"\n{open}");
        let c = HubConfig::from_toml_str(&with_token, "/etc/hub.toml").unwrap();
        assert_eq!(c.api_token.as_deref(), Some("0123456789abcdef-secret"));
        let short = format!("api_token = \"short\"\n{open}");
        assert!(HubConfig::from_toml_str(&short, "/etc/hub.toml").is_err());
    }

    #[test]
    fn identity_traits_and_segments_sections() {
        let text = format!(
            "{MINIMAL}\n[identity]\nmax_customers_per_identifier = 5\n[traits]\nhorizon_days = 90\n[[segment]]\nid = \"vip\"\n"
        );
        let c = HubConfig::from_toml_str(&text, "/etc/hub.toml").unwrap();
        assert_eq!(c.identity.max_customers_per_identifier, 5);
        assert_eq!(c.identity.default_country_code, 31);
        assert_eq!(c.traits.horizon_days, 90);
        assert_eq!(c.segments.len(), 1);
        let bad = format!("{MINIMAL}\n[identity]\nmax_customers_per_identifier = 0\n");
        let err = HubConfig::from_toml_str(&bad, "/etc/hub.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("identity.max_customers_per_identifier"),
            "{err}"
        );
    }

    #[test]
    fn digests_section_has_defaults_and_checked_bounds() {
        let c = HubConfig::from_toml_str(MINIMAL, "/etc/hub.toml").unwrap();
        assert_eq!(c.digests, DigestsConfig::default());
        assert_eq!(
            (
                c.digests.months,
                c.digests.refresh_seconds,
                c.digests.removal_retention_days
            ),
            (12, 300, 30)
        );
        let text = format!(
            "{MINIMAL}\n[digests]\nmonths = 6\nrefresh_seconds = 60\nremoval_retention_days = 7\n"
        );
        let c = HubConfig::from_toml_str(&text, "/etc/hub.toml").unwrap();
        assert_eq!(
            (
                c.digests.months,
                c.digests.refresh_seconds,
                c.digests.removal_retention_days
            ),
            (6, 60, 7)
        );
        for (bad, key) in [
            ("months = 0", "digests.months"),
            ("refresh_seconds = 0", "digests.refresh_seconds"),
            (
                "removal_retention_days = 0",
                "digests.removal_retention_days",
            ),
            (
                "removal_retention_days = 3651",
                "digests.removal_retention_days",
            ),
        ] {
            let text = format!("{MINIMAL}\n[digests]\n{bad}\n");
            let msg = HubConfig::from_toml_str(&text, "/etc/hub.toml")
                .unwrap_err()
                .to_string();
            assert!(
                msg.contains("/etc/hub.toml") && msg.contains(key) && msg.contains("within"),
                "{msg}"
            );
        }
        let text = format!("{MINIMAL}\n[digests]\nmonth = 6\n");
        let msg = HubConfig::from_toml_str(&text, "/etc/hub.toml")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("/etc/hub.toml") && msg.contains("month"),
            "{msg}"
        );
    }

    #[test]
    fn resolves_relative_paths_against_the_file() {
        let c = HubConfig::from_toml_str(MINIMAL, "/etc/till360/hub.toml").unwrap();
        assert_eq!(c.data_dir, Path::new("/etc/till360/data"));
        assert_eq!(c.ca, Path::new("/etc/till360/pki/ca.pem"));
        assert_eq!(c.key, Path::new("/abs/hub.key"));
        assert_eq!(
            c.database,
            DatabaseUrl::Sqlite("/etc/till360/data/hub.db".into())
        );
        assert_eq!(c.campaigns, None);
        assert_eq!(c.listen.port(), 0);
    }

    #[test]
    fn sqlite_url_is_resolved_too() {
        let text = format!("{MINIMAL}\n[database]\nurl = \"sqlite://db/x.db\"\n");
        let c = HubConfig::from_toml_str(&text, "/srv/hub.toml").unwrap();
        assert_eq!(c.database, DatabaseUrl::Sqlite("/srv/db/x.db".into()));
    }

    #[test]
    fn database_timeout_seconds_has_a_default_and_checked_bounds() {
        let c = HubConfig::from_toml_str(MINIMAL, "/srv/hub.toml").unwrap();
        assert_eq!(c.database_timeout, std::time::Duration::from_secs(10));
        let text = format!("{MINIMAL}\n[database]\ntimeout_seconds = 30\n");
        let c = HubConfig::from_toml_str(&text, "/srv/hub.toml").unwrap();
        assert_eq!(c.database_timeout, std::time::Duration::from_secs(30));
        assert_eq!(c.database, DatabaseUrl::Sqlite("/srv/data/hub.db".into()));
        for bad in ["0", "3601"] {
            let text = format!("{MINIMAL}\n[database]\ntimeout_seconds = {bad}\n");
            let msg = HubConfig::from_toml_str(&text, "/srv/hub.toml")
                .unwrap_err()
                .to_string();
            assert!(
                msg.contains("/srv/hub.toml")
                    && msg.contains("database.timeout_seconds")
                    && msg.contains(&format!("{bad} is not within 1..=3600")),
                "{bad}: {msg}"
            );
        }
        let text = format!("{MINIMAL}\n[database]\ntimeout_seconds = \"ten\"\n");
        let msg = HubConfig::from_toml_str(&text, "/srv/hub.toml")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("/srv/hub.toml") && msg.contains("timeout_seconds"),
            "{msg}"
        );
    }

    #[test]
    fn fraud_section_and_store_locations() {
        let c = HubConfig::from_toml_str(MINIMAL, "/etc/hub.toml").unwrap();
        assert_eq!(c.fraud, FraudConfig::default());
        let text = format!(
            "{MINIMAL}\n[fraud]\nmax_receipts_per_day = 12\n\
             [[store]]\nid = \"S001\"\nlat = 52.37\nlon = 4.9\n"
        );
        let c = HubConfig::from_toml_str(&text, "/etc/hub.toml").unwrap();
        assert_eq!(c.fraud.max_receipts_per_day, 12);
        assert_eq!(
            c.fraud.stores["S001"],
            StoreLocation {
                lat: 52.37,
                lon: 4.9
            }
        );
        for (bad, key) in [
            ("[fraud]\nhouse_card_tills = 0\n", "fraud.house_card_tills"),
            ("[fraud]\ntravel_min_stores = 1\n", "fraud.travel_min_stores"),
            ("[fraud]\nmax_speed_kmh = -1.0\n", "fraud.max_speed_kmh"),
            ("[[store]]\nid = \"S1\"\nlat = 91.0\nlon = 0.0\n", "`store`"),
            (
                "[[store]]\nid = \"S1\"\nlat = 1.0\nlon = 0.0\n[[store]]\nid = \"S1\"\nlat = 2.0\nlon = 0.0\n",
                "listed twice",
            ),
        ] {
            let err = HubConfig::from_toml_str(&format!("{MINIMAL}\n{bad}"), "/etc/hub.toml")
                .unwrap_err()
                .to_string();
            assert!(err.contains("/etc/hub.toml") && err.contains(key), "{bad}: {err}");
        }
    }

    #[test]
    fn till_requests_section() {
        let c = HubConfig::from_toml_str(MINIMAL, "/etc/hub.toml").unwrap();
        assert_eq!(c.till_requests, TillRequestsConfig::default());
        let text = format!("{MINIMAL}\n[till_requests]\nburst = 5\nforeign_cards_per_hour = 0\n");
        let c = HubConfig::from_toml_str(&text, "/etc/hub.toml").unwrap();
        assert_eq!(
            (
                c.till_requests.burst,
                c.till_requests.foreign_cards_per_hour
            ),
            (5, 0)
        );
        let bad = format!("{MINIMAL}\n[till_requests]\nper_minute = 0\n");
        let err = HubConfig::from_toml_str(&bad, "/etc/hub.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/etc/hub.toml") && err.contains("till_requests.per_minute"),
            "{err}"
        );
    }

    #[test]
    fn the_example_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/hub.toml");
        let c = HubConfig::load(&path).unwrap();
        let folder = path.parent().unwrap();
        assert_eq!(c.ca, folder.join("../var/pki/ca.pem"));
        assert_eq!(
            c.database,
            DatabaseUrl::Sqlite(folder.join("../var/hub/hub.db"))
        );
        assert_eq!(c.listen, "127.0.0.1:4433".parse().unwrap());
        let segments = crate::segments::compile(&c.segments).unwrap();
        assert_eq!(segments.len(), 2, "the example's segments compile");
        assert_eq!(c.fraud.stores.len(), 2, "the example's store locations");
        assert_eq!(c.coupons, CouponsConfig::default());
    }

    #[test]
    fn coupons_max_clock_skew_secs_is_checked() {
        let c = HubConfig::from_toml_str(MINIMAL, "/srv/hub.toml").unwrap();
        assert_eq!(c.coupons.max_clock_skew_secs, 300);
        let text = format!("{MINIMAL}\n[coupons]\nmax_clock_skew_secs = 60\n");
        let c = HubConfig::from_toml_str(&text, "/srv/hub.toml").unwrap();
        assert_eq!(c.coupons.max_clock_skew_secs, 60);
        let text = format!("{MINIMAL}\n[coupons]\nmax_clock_skew_secs = 0\n");
        let msg = HubConfig::from_toml_str(&text, "/srv/hub.toml")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("/srv/hub.toml") && msg.contains("coupons.max_clock_skew_secs"),
            "{msg}"
        );
    }

    #[test]
    fn a_postgres_url_is_parsed_and_never_shown_with_its_password() {
        let text = format!(
            "{MINIMAL}\n[database]\nurl = \"postgres://hub:s3cret@db.example:6543/till360?sslmode=prefer\"\n"
        );
        let c = HubConfig::from_toml_str(&text, "/srv/hub.toml").unwrap();
        let DatabaseUrl::Postgres(url) = &c.database else {
            panic!("{:?}", c.database)
        };
        assert_eq!(
            (url.user(), url.host(), url.port(), url.dbname()),
            ("hub", "db.example", 6543, "till360")
        );
        assert!(url.has_password());
        assert_eq!(
            url.connection_string(),
            "postgres://hub:s3cret@db.example:6543/till360?sslmode=prefer"
        );
        for shown in [
            c.database.to_string(),
            format!("{:?}", c.database),
            format!("{c:?}"),
        ] {
            assert!(!shown.contains("s3cret"), "{shown}");
        }
        assert_eq!(
            c.database.to_string(),
            "postgres://hub:***@db.example:6543/till360?sslmode=prefer"
        );

        let url = PostgresUrl::parse("postgresql://postgres@127.0.0.1/test").unwrap();
        assert_eq!((url.port(), url.has_password()), (5432, false));
        assert_eq!(
            url.with_dbname("t360_x").to_string(),
            "postgresql://postgres@127.0.0.1:5432/t360_x"
        );
        let url = PostgresUrl::parse("postgres://u@[::1]:5433/d?password=pw").unwrap();
        assert_eq!((url.host(), url.port()), ("[::1]", 5433));
        assert!(!url.to_string().contains("pw") && url.has_password());

        for (bad, says) in [
            ("postgres://u:p@h/d?sslmode=require", "without TLS"),
            ("postgres://u:p@h:port/d", "port"),
            ("postgres://u:p@h:5432", "no database"),
            ("postgres://h:5432/d", "no user"),
            ("postgres://u:p@/d", "no host"),
        ] {
            let text = format!("{MINIMAL}\n[database]\nurl = \"{bad}\"\n");
            let msg = HubConfig::from_toml_str(&text, "/srv/hub.toml")
                .unwrap_err()
                .to_string();
            assert!(
                msg.contains("database.url") && msg.contains(says),
                "{bad}: {msg}"
            );
            assert!(!msg.contains(":p@"), "{msg}");
        }
        let text = format!("{MINIMAL}\n[database]\nurl = \"mysql://u:pw@h/d\"\n");
        let msg = HubConfig::from_toml_str(&text, "/srv/hub.toml")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("\"mysql\"") && !msg.contains("pw"), "{msg}");
    }

    #[test]
    fn errors_name_file_key_and_reason() {
        let text = MINIMAL.replace("127.0.0.1:0\"\nhttp", "nowhere\"\nhttp");
        let err = HubConfig::from_toml_str(&text, "/srv/hub.toml").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("/srv/hub.toml") && msg.contains("`listen`") && msg.contains("nowhere"),
            "{msg}"
        );

        let text = format!("{MINIMAL}\n[database]\nurl = \"postgres://db/hub\"\n");
        let msg = HubConfig::from_toml_str(&text, "/srv/hub.toml")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("database.url") && msg.contains("no user"),
            "{msg}"
        );

        let text = format!("{MINIMAL}\nlisten_port = 3\n");
        let msg = HubConfig::from_toml_str(&text, "/srv/hub.toml")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("/srv/hub.toml") && msg.contains("listen_port"),
            "{msg}"
        );

        let text = MINIMAL.replace("http = \"127.0.0.1:0\"\n", "");
        let msg = HubConfig::from_toml_str(&text, "/srv/hub.toml")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("missing field `http`"), "{msg}");
    }

    #[test]
    fn log_and_log_format_are_checked() {
        let c = HubConfig::from_toml_str(MINIMAL, "/srv/hub.toml").unwrap();
        assert_eq!((c.log, c.log_format), (None, LogFormat::Text));
        let text = format!("log = \"till360_hub=debug\"\nlog_format = \"json\"\n{MINIMAL}");
        let c = HubConfig::from_toml_str(&text, "/srv/hub.toml").unwrap();
        assert_eq!(c.log.as_deref(), Some("till360_hub=debug"));
        assert_eq!(c.log_format, LogFormat::Json);
        let text = format!("log_format = \"xml\"\n{MINIMAL}");
        let msg = HubConfig::from_toml_str(&text, "/srv/hub.toml")
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("/srv/hub.toml: key `log_format`: \"xml\""),
            "{msg}"
        );
    }

    #[test]
    fn a_check_names_every_problem() {
        let text = MINIMAL
            .replace("listen = \"127.0.0.1:0\"", "listen = 5")
            .replace("http = \"127.0.0.1:0\"\n", "")
            + "log_format = \"xml\"\nbogus = true\n[digests]\nmonths = 0\n[traits]\nhorizon_days = \"x\"\n";
        let (config, errors) = HubConfig::check_toml_str(&text, "/srv/hub.toml");
        assert!(
            config.is_some(),
            "a best-effort config for the other checks"
        );
        let keys: Vec<String> = errors
            .iter()
            .map(|e| match e {
                ConfigError::Invalid { key, .. } => key.clone(),
                other => panic!("{other}"),
            })
            .collect();
        for key in [
            "listen",
            "http",
            "log_format",
            "bogus",
            "digests.months",
            "traits.horizon_days",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key} in {keys:?}");
        }
        // TOML that does not parse is one problem, without a config.
        let (config, errors) = HubConfig::check_toml_str("listen = [", "/srv/hub.toml");
        assert!(config.is_none());
        assert_eq!(errors.len(), 1);
    }
}
