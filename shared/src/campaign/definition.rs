//! Campaign definitions: what marketers write in the hub's `campaigns` TOML and what the
//! downlink carries to every till (the typed values, encoded with `codec`).
//!
//! The TOML is read key by key (not with one derived `Deserialize`) so that every error
//! can name the file, the campaign (`[[campaign]] #n`, counted from 1, and its id), the
//! key and the reason. Unknown keys are errors: a typo never silently becomes a default.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::event::AgentId;

/// Every campaign the hub pushes, with the global limits. `version` grows with every
/// change so a reconnecting agent fetches only a newer set.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CampaignSet {
    pub version: u64,
    pub campaigns: Vec<Campaign>,
    pub settings: Settings,
}

/// `[settings]`: limits across campaigns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Coupons (printed plus would-have) per receipt.
    pub max_per_receipt: u32,
    /// Coupons (printed plus would-have) per customer in any rolling 7 days, across
    /// campaigns and channels.
    pub max_per_customer_per_week: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_per_receipt: 1,
            max_per_customer_per_week: 2,
        }
    }
}

/// One `[[campaign]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Campaign {
    /// Stable id, `[a-z0-9-]{1,32}`: the key of KPIs, caps and control groups.
    pub id: String,
    pub name: String,
    pub trigger: Trigger,
    /// The printed offer text (no control characters: it goes into the printer stream).
    pub offer: String,
    /// The coupon is valid up to and including the issue date (till's local) + this.
    pub valid_days: u32,
    /// Share of customers (0–100) in the control group: logged, nothing printed.
    pub control_percent: u8,
    /// At most this many coupons of this campaign per customer within `cap_days`.
    pub max_per_customer: u32,
    pub cap_days: u32,
    /// Only these stores issue it; `None` means every store.
    pub stores: Option<Vec<String>>,
    /// Only customers in at least one of these hub segments (a profile trigger: needs
    /// personalisation consent); `None` means no restriction.
    pub segments: Option<Vec<String>>,
    /// Higher first; equal priorities in id order.
    pub priority: i32,
    /// Whether a till that cannot reach the hub still issues it (caps used at other
    /// stores may then be stale).
    pub offline: bool,
}

/// What makes a campaign fire, with its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Trigger {
    /// Non-sensitive basket total ≥ `min_total_cents`.
    BasketTotal { min_total_cents: i64 },
    /// Non-sensitive spend in `category` ≥ `min_total_cents` (default 1: any purchase).
    BasketCategory {
        category: String,
        min_total_cents: i64,
    },
    /// Today (till's local date) is at most `within_days` from the birthday.
    Birthday { within_days: u32 },
    /// Today is at most `within_days` from a yearly return of `member_since`.
    Anniversary { within_days: u32 },
    /// The customer holds at least `points` points.
    PointsThreshold { points: i64 },
    /// The previous visit was at least `lapsed_days` days ago.
    Lapsed { lapsed_days: u32 },
    /// The hub knows the customer but has no visit yet.
    FirstVisit,
}

/// The trigger names of the TOML (`trigger = "…"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TriggerKind {
    BasketTotal,
    BasketCategory,
    Birthday,
    Anniversary,
    PointsThreshold,
    Lapsed,
    FirstVisit,
}

impl TriggerKind {
    pub const ALL: [TriggerKind; 7] = [
        TriggerKind::BasketTotal,
        TriggerKind::BasketCategory,
        TriggerKind::Birthday,
        TriggerKind::Anniversary,
        TriggerKind::PointsThreshold,
        TriggerKind::Lapsed,
        TriggerKind::FirstVisit,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TriggerKind::BasketTotal => "basket_total",
            TriggerKind::BasketCategory => "basket_category",
            TriggerKind::Birthday => "birthday",
            TriggerKind::Anniversary => "anniversary",
            TriggerKind::PointsThreshold => "points_threshold",
            TriggerKind::Lapsed => "lapsed",
            TriggerKind::FirstVisit => "first_visit",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Profile triggers use what the hub knows about the person and so need the
    /// profile's personalisation consent; basket triggers look only at this receipt.
    pub fn uses_profile(self) -> bool {
        !matches!(self, TriggerKind::BasketTotal | TriggerKind::BasketCategory)
    }

    /// The parameter keys this trigger accepts.
    fn parameters(self) -> &'static [&'static str] {
        match self {
            TriggerKind::BasketTotal => &["min_total_cents"],
            TriggerKind::BasketCategory => &["category", "min_total_cents"],
            TriggerKind::Birthday | TriggerKind::Anniversary => &["within_days"],
            TriggerKind::PointsThreshold => &["points"],
            TriggerKind::Lapsed => &["lapsed_days"],
            TriggerKind::FirstVisit => &[],
        }
    }
}

impl std::fmt::Display for TriggerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Trigger {
    pub fn kind(&self) -> TriggerKind {
        match self {
            Trigger::BasketTotal { .. } => TriggerKind::BasketTotal,
            Trigger::BasketCategory { .. } => TriggerKind::BasketCategory,
            Trigger::Birthday { .. } => TriggerKind::Birthday,
            Trigger::Anniversary { .. } => TriggerKind::Anniversary,
            Trigger::PointsThreshold { .. } => TriggerKind::PointsThreshold,
            Trigger::Lapsed { .. } => TriggerKind::Lapsed,
            Trigger::FirstVisit => TriggerKind::FirstVisit,
        }
    }
}

/// Where in the file an error is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Section {
    TopLevel,
    Settings,
    /// `number` counts `[[campaign]]` tables from 1 in file order; `id` when it was
    /// readable.
    Campaign {
        number: usize,
        id: Option<String>,
    },
}

impl std::fmt::Display for Section {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Section::TopLevel => f.write_str("top level"),
            Section::Settings => f.write_str("[settings]"),
            Section::Campaign {
                number,
                id: Some(id),
            } => write!(f, "[[campaign]] #{number} (id {id:?})"),
            Section::Campaign { number, id: None } => write!(f, "[[campaign]] #{number}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CampaignError {
    #[error("{}: not valid TOML: {message}", .origin.display())]
    Syntax { origin: PathBuf, message: String },
    #[error("{}: {section}: key `{key}`: {reason}", .origin.display())]
    Invalid {
        origin: PathBuf,
        section: Section,
        key: String,
        reason: String,
    },
}

/// A campaign that would target or name a sensitive category (see
/// [`CampaignSet::sensitive_conflicts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SensitiveConflict {
    pub campaign_id: String,
    /// The key that names it: `category`, `name` or `offer`.
    pub key: &'static str,
    pub category: String,
}

const CAMPAIGN_KEYS: &[&str] = &[
    "id",
    "name",
    "trigger",
    "offer",
    "valid_days",
    "control_percent",
    "max_per_customer",
    "cap_days",
    "stores",
    "segments",
    "priority",
    "offline",
];
const PARAMETER_KEYS: &[&str] = &[
    "min_total_cents",
    "category",
    "within_days",
    "points",
    "lapsed_days",
];
const OFFER_MAX_CHARS: usize = 240;
const NAME_MAX_CHARS: usize = 120;

impl CampaignSet {
    /// The set's content version as people see it (hub API, `till360-agent status`): 12
    /// lowercase hex digits of the SHA-256 of its canonical encoding. Both sides compute
    /// it from the same set, so they show the same text.
    pub fn content_version(&self) -> String {
        use sha2::{Digest as _, Sha256};
        // Encoding a set cannot fail (no size limit is near); an empty input still hashes.
        let bytes = crate::codec::to_bytes(self).unwrap_or_default();
        Sha256::digest(&bytes)[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Parses the hub's campaigns file. `origin` is the file's path, for messages only.
    /// The optional top-level `version` defaults to 0; the hub may set a newer one.
    pub fn from_toml_str(text: &str, origin: &Path) -> Result<Self, CampaignError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            let reason = e.message().trim().replace('\n', "; ");
            CampaignError::Syntax {
                origin: origin.to_path_buf(),
                message: match e.span() {
                    Some(span) => format!("{}: {reason}", line_column(text, span.start)),
                    None => reason,
                },
            }
        })?;
        let mut top = Reader::new(&table, origin, Section::TopLevel);
        // Range-checked to be non-negative, so the conversion cannot fail.
        let version = top
            .int_in("version", 0, i64::MAX)?
            .map_or(0, |v| u64::try_from(v).unwrap_or(0));
        let settings = match table.get("settings") {
            None => Settings::default(),
            Some(toml::Value::Table(t)) => parse_settings(t, origin)?,
            Some(_) => return Err(top.err("settings", "must be a table: [settings]")),
        };
        let campaign_tables: Vec<&toml::Table> = match table.get("campaign") {
            None => Vec::new(),
            Some(toml::Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    toml::Value::Table(t) => Ok(t),
                    _ => Err(top.err("campaign", "every entry must be a [[campaign]] table")),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(top.err(
                    "campaign",
                    "must be an array of tables: write [[campaign]], not [campaign]",
                ))
            }
        };
        top.mark_used("settings");
        top.mark_used("campaign");
        top.reject_unknown(|_| None)?;

        let mut campaigns = Vec::with_capacity(campaign_tables.len());
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for (i, t) in campaign_tables.into_iter().enumerate() {
            let number = i + 1;
            let campaign = parse_campaign(t, origin, number)?;
            if let Some(first) = seen.insert(campaign.id.clone(), number) {
                return Err(CampaignError::Invalid {
                    origin: origin.to_path_buf(),
                    section: Section::Campaign {
                        number,
                        id: Some(campaign.id),
                    },
                    key: "id".into(),
                    reason: format!("duplicate id: [[campaign]] #{first} already uses it"),
                });
            }
            campaigns.push(campaign);
        }
        Ok(CampaignSet {
            version,
            campaigns,
            settings,
        })
    }

    pub fn get(&self, id: &str) -> Option<&Campaign> {
        self.campaigns.iter().find(|c| c.id == id)
    }

    /// Campaigns that target a sensitive category or name one in their name or offer
    /// text (case-insensitive). The hub checks this against its catalog's sensitive
    /// categories before pushing a set: sensitive products are never targeted or named.
    pub fn sensitive_conflicts(&self, sensitive_categories: &[String]) -> Vec<SensitiveConflict> {
        let mut out = Vec::new();
        for c in &self.campaigns {
            let name = c.name.to_lowercase();
            let offer = c.offer.to_lowercase();
            for category in sensitive_categories {
                let needle = category.trim().to_lowercase();
                if needle.is_empty() {
                    continue;
                }
                let mut conflict = |key| {
                    out.push(SensitiveConflict {
                        campaign_id: c.id.clone(),
                        key,
                        category: category.clone(),
                    })
                };
                if let Trigger::BasketCategory { category: own, .. } = &c.trigger {
                    if own.to_lowercase() == needle {
                        conflict("category");
                    }
                }
                if name.contains(&needle) {
                    conflict("name");
                }
                if offer.contains(&needle) {
                    conflict("offer");
                }
            }
        }
        out
    }
}

/// `line L, column C` (both from 1) of a byte offset, for syntax errors.
fn line_column(text: &str, offset: usize) -> String {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}")
}

/// `[a-z0-9-]{1,32}`.
pub fn is_valid_campaign_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn parse_settings(table: &toml::Table, origin: &Path) -> Result<Settings, CampaignError> {
    let mut r = Reader::new(table, origin, Section::Settings);
    let defaults = Settings::default();
    let settings = Settings {
        max_per_receipt: r
            .int_in("max_per_receipt", 0, 10)?
            .map_or(defaults.max_per_receipt, to_u32),
        max_per_customer_per_week: r
            .int_in("max_per_customer_per_week", 0, 100)?
            .map_or(defaults.max_per_customer_per_week, to_u32),
    };
    r.reject_unknown(|_| None)?;
    Ok(settings)
}

fn parse_campaign(
    table: &toml::Table,
    origin: &Path,
    number: usize,
) -> Result<Campaign, CampaignError> {
    // The id goes into every later message, so read it leniently first.
    let id_hint = table.get("id").and_then(|v| v.as_str()).map(str::to_string);
    let mut r = Reader::new(
        table,
        origin,
        Section::Campaign {
            number,
            id: id_hint,
        },
    );

    // A typo is reported as itself, before it can look like a missing required key.
    if let Some(key) = table
        .keys()
        .find(|k| !CAMPAIGN_KEYS.contains(&k.as_str()) && !PARAMETER_KEYS.contains(&k.as_str()))
    {
        return Err(r.err(
            key,
            format!(
                "unknown key (known: {}, and the trigger's parameters {})",
                CAMPAIGN_KEYS.join(", "),
                PARAMETER_KEYS.join(", ")
            ),
        ));
    }

    let id: String = r.required("id")?;
    if !is_valid_campaign_id(&id) {
        return Err(r.err("id", "must be 1 to 32 characters of a-z, 0-9 and -"));
    }
    let name: String = r.required("name")?;
    check_text(&r, "name", &name, NAME_MAX_CHARS)?;
    let trigger_name: String = r.required("trigger")?;
    let kind = TriggerKind::from_name(&trigger_name).ok_or_else(|| {
        let known: Vec<&str> = TriggerKind::ALL.iter().map(|k| k.name()).collect();
        r.err(
            "trigger",
            format!(
                "unknown trigger {trigger_name:?} (one of: {})",
                known.join(", ")
            ),
        )
    })?;
    let trigger = parse_trigger(&mut r, kind)?;
    let offer: String = r.required("offer")?;
    check_text(&r, "offer", &offer, OFFER_MAX_CHARS)?;

    let valid_days = to_u32(r.required_int_in("valid_days", 1, 3650)?);
    let control_percent = r.int_in("control_percent", 0, 100)?.unwrap_or(0);
    let max_per_customer = r.int_in("max_per_customer", 1, 1000)?.map_or(1, to_u32);
    let cap_days = r.int_in("cap_days", 1, 3650)?.map_or(30, to_u32);
    let stores = r.optional::<Vec<String>>("stores")?;
    if let Some(stores) = &stores {
        if stores.is_empty() {
            return Err(r.err(
                "stores",
                "an empty list matches no store; leave the key out for every store",
            ));
        }
        if let Some(bad) = stores.iter().find(|s| !AgentId::is_valid_part(s)) {
            return Err(r.err(
                "stores",
                format!("{bad:?} is not a store id ([A-Za-z0-9_.-]{{1,32}})"),
            ));
        }
    }
    let segments = r.optional::<Vec<String>>("segments")?;
    if let Some(segments) = &segments {
        if segments.is_empty() || segments.iter().any(|s| s.trim().is_empty()) {
            return Err(r.err(
                "segments",
                "must list at least one non-empty segment id; leave the key out for everyone",
            ));
        }
    }
    let priority = r
        .int_in("priority", i64::from(i32::MIN), i64::from(i32::MAX))?
        .map_or(0, |p| i32::try_from(p).unwrap_or_default());
    let offline = r.optional::<bool>("offline")?.unwrap_or(true);

    r.reject_unknown(|key| {
        PARAMETER_KEYS.contains(&key).then(|| {
            let owners: Vec<&str> = TriggerKind::ALL
                .iter()
                .filter(|k| k.parameters().contains(&key))
                .map(|k| k.name())
                .collect();
            format!(
                "not a parameter of trigger {kind} (it belongs to: {})",
                owners.join(", ")
            )
        })
    })?;

    Ok(Campaign {
        id,
        name,
        trigger,
        offer,
        valid_days,
        control_percent: u8::try_from(control_percent).unwrap_or(100),
        max_per_customer,
        cap_days,
        stores,
        segments,
        priority,
        offline,
    })
}

fn parse_trigger(r: &mut Reader<'_>, kind: TriggerKind) -> Result<Trigger, CampaignError> {
    let max_cents = i64::MAX;
    Ok(match kind {
        TriggerKind::BasketTotal => Trigger::BasketTotal {
            min_total_cents: r.required_int_in("min_total_cents", 1, max_cents)?,
        },
        TriggerKind::BasketCategory => {
            let category: String = r.required("category")?;
            let category = category.trim().to_string();
            if category.is_empty() {
                return Err(r.err("category", "must not be empty"));
            }
            Trigger::BasketCategory {
                category,
                min_total_cents: r.int_in("min_total_cents", 1, max_cents)?.unwrap_or(1),
            }
        }
        TriggerKind::Birthday => Trigger::Birthday {
            within_days: r.int_in("within_days", 0, 183)?.map_or(0, to_u32),
        },
        TriggerKind::Anniversary => Trigger::Anniversary {
            within_days: r.int_in("within_days", 0, 183)?.map_or(0, to_u32),
        },
        TriggerKind::PointsThreshold => Trigger::PointsThreshold {
            points: r.required_int_in("points", 1, i64::MAX)?,
        },
        TriggerKind::Lapsed => Trigger::Lapsed {
            lapsed_days: to_u32(r.required_int_in("lapsed_days", 1, 3650)?),
        },
        TriggerKind::FirstVisit => Trigger::FirstVisit,
    })
}

fn check_text(
    r: &Reader<'_>,
    key: &str,
    text: &str,
    max_chars: usize,
) -> Result<(), CampaignError> {
    if text.trim().is_empty() {
        return Err(r.err(key, "must not be empty"));
    }
    if text.chars().count() > max_chars {
        return Err(r.err(key, format!("longer than {max_chars} characters")));
    }
    // The text is printed: an ESC or GS byte would become a printer command.
    if text.chars().any(char::is_control) {
        return Err(r.err(
            key,
            "contains a control character (line breaks, tabs, ESC, …)",
        ));
    }
    Ok(())
}

/// Only called on values already range-checked to fit.
fn to_u32(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// Reads one TOML table key by key, remembering which keys were read so the rest can be
/// reported as unknown.
struct Reader<'t> {
    table: &'t toml::Table,
    origin: &'t Path,
    section: Section,
    used: BTreeSet<String>,
}

impl<'t> Reader<'t> {
    fn new(table: &'t toml::Table, origin: &'t Path, section: Section) -> Self {
        Self {
            table,
            origin,
            section,
            used: BTreeSet::new(),
        }
    }

    fn err(&self, key: &str, reason: impl Into<String>) -> CampaignError {
        CampaignError::Invalid {
            origin: self.origin.to_path_buf(),
            section: self.section.clone(),
            key: key.to_string(),
            reason: reason.into(),
        }
    }

    fn mark_used(&mut self, key: &str) {
        self.used.insert(key.to_string());
    }

    fn optional<T: DeserializeOwned>(&mut self, key: &str) -> Result<Option<T>, CampaignError> {
        self.mark_used(key);
        match self.table.get(key) {
            None => Ok(None),
            Some(value) => value
                .clone()
                .try_into::<T>()
                .map(Some)
                .map_err(|e| self.err(key, e.message().trim().to_string())),
        }
    }

    fn required<T: DeserializeOwned>(&mut self, key: &str) -> Result<T, CampaignError> {
        self.optional(key)?
            .ok_or_else(|| self.err(key, "missing (required)"))
    }

    fn int_in(&mut self, key: &str, min: i64, max: i64) -> Result<Option<i64>, CampaignError> {
        let value = match self.optional::<toml::Value>(key)? {
            None => None,
            Some(toml::Value::Integer(v)) => Some(v),
            Some(other) => {
                return Err(self.err(
                    key,
                    format!("must be a whole number, not a {}", other.type_str()),
                ))
            }
        };
        match value {
            Some(v) if !(min..=max).contains(&v) => {
                let range = if max == i64::MAX {
                    format!("at least {min}")
                } else {
                    format!("between {min} and {max}")
                };
                Err(self.err(key, format!("{v} is out of range: must be {range}")))
            }
            other => Ok(other),
        }
    }

    fn required_int_in(&mut self, key: &str, min: i64, max: i64) -> Result<i64, CampaignError> {
        self.int_in(key, min, max)?
            .ok_or_else(|| self.err(key, "missing (required)"))
    }

    /// The first key never read is an error; `explain` may give a better reason than
    /// "unknown key" (e.g. a parameter of another trigger).
    fn reject_unknown(
        &self,
        explain: impl Fn(&str) -> Option<String>,
    ) -> Result<(), CampaignError> {
        match self.table.keys().find(|k| !self.used.contains(k.as_str())) {
            None => Ok(()),
            Some(key) => {
                let reason = explain(key).unwrap_or_else(|| match self.section {
                    Section::Campaign { .. } => format!(
                        "unknown key (known: {}, and the trigger's parameters)",
                        CAMPAIGN_KEYS.join(", ")
                    ),
                    Section::Settings => {
                        "unknown key (known: max_per_receipt, max_per_customer_per_week)".into()
                    }
                    Section::TopLevel => {
                        "unknown key (known: version, [settings], [[campaign]])".into()
                    }
                });
                Err(self.err(key, reason))
            }
        }
    }
}
