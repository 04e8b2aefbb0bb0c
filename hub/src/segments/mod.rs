//! Segments defined in the hub config (`[[segment]]` tables) and their pure evaluation.
//!
//! ```toml
//! [[segment]]
//! id = "at-risk-regulars"
//! name = "Regulars about to leave"
//! where = ["frequency >= 3", "churn_risk >= 0.6", "consent.email = true", "category = wine"]
//! ```
//! All conditions must hold (an empty `where` matches everybody). A numeric condition
//! on a trait the subject does not have (no purchases yet, no model fitted) is false,
//! whatever the operator: a segment never guesses.

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashSet};

use thiserror::Error;

/// Consent purposes a condition may name (the `consents.purpose` values).
pub const CONSENT_PURPOSES: [&str; 4] = ["email", "sms", "post", "personalization"];

/// A segment definition that cannot be used. Names the segment (1-based index in the
/// config and its id when known), the condition and the reason.
#[derive(Debug, Error, PartialEq)]
#[error("[[segment]] #{index}{}{}: {reason}",
    id.as_ref().map(|i| format!(" (id {i:?})")).unwrap_or_default(),
    condition.as_ref().map(|c| format!(", condition {c:?}")).unwrap_or_default())]
pub struct SegmentError {
    /// 1-based position of the `[[segment]]` table in the config.
    pub index: usize,
    pub id: Option<String>,
    pub condition: Option<String>,
    pub reason: String,
}

/// Numeric traits a condition may compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NumericField {
    Frequency,
    RecencyDays,
    TDays,
    MonetaryCents,
    PAlive,
    ExpectedPurchases,
    ClvCents,
    ChurnRisk,
    SaleShare,
    OnlineShare,
    RfmR,
    RfmF,
    RfmM,
}

impl NumericField {
    pub const COUNT: usize = 13;
    pub const ALL: [NumericField; Self::COUNT] = [
        Self::Frequency,
        Self::RecencyDays,
        Self::TDays,
        Self::MonetaryCents,
        Self::PAlive,
        Self::ExpectedPurchases,
        Self::ClvCents,
        Self::ChurnRisk,
        Self::SaleShare,
        Self::OnlineShare,
        Self::RfmR,
        Self::RfmF,
        Self::RfmM,
    ];

    /// The name used in conditions (and in the traits JSON).
    pub fn name(self) -> &'static str {
        match self {
            Self::Frequency => "frequency",
            Self::RecencyDays => "recency_days",
            Self::TDays => "t_days",
            Self::MonetaryCents => "monetary_cents",
            Self::PAlive => "p_alive",
            Self::ExpectedPurchases => "expected_purchases",
            Self::ClvCents => "clv_cents",
            Self::ChurnRisk => "churn_risk",
            Self::SaleShare => "sale_share",
            Self::OnlineShare => "online_share",
            Self::RfmR => "rfm_r",
            Self::RfmF => "rfm_f",
            Self::RfmM => "rfm_m",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What a segment is evaluated against: one customer's traits, consents, categories
/// (non-sensitive only), visited stores and behaviour labels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Subject {
    numbers: [Option<f64>; NumericField::COUNT],
    /// purpose → granted. A purpose without a row is not granted.
    pub consents: BTreeMap<String, bool>,
    categories: BTreeSet<String>,
    pub stores: BTreeSet<String>,
    pub labels: BTreeSet<String>,
}

impl Subject {
    pub fn set_number(&mut self, field: NumericField, value: Option<f64>) {
        self.numbers[field.index()] = value.filter(|v| v.is_finite());
    }

    pub fn number(&self, field: NumericField) -> Option<f64> {
        self.numbers[field.index()]
    }

    /// Categories compare case-insensitively.
    pub fn add_category(&mut self, category: &str) {
        self.categories.insert(category.to_lowercase());
    }

    pub fn has_category(&self, category: &str) -> bool {
        self.categories.contains(&category.to_lowercase())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "=" => Self::Eq,
            "!=" => Self::Ne,
            "<" => Self::Lt,
            "<=" => Self::Le,
            ">" => Self::Gt,
            ">=" => Self::Ge,
            _ => return None,
        })
    }

    fn compare(self, left: f64, right: f64) -> bool {
        match self {
            Self::Eq => left == right,
            Self::Ne => left != right,
            Self::Lt => left < right,
            Self::Le => left <= right,
            Self::Gt => left > right,
            Self::Ge => left >= right,
        }
    }
}

/// One compiled condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Number {
        field: NumericField,
        op: Op,
        value: f64,
    },
    /// `consent.<purpose> = true|false` (`!=` negates).
    Consent { purpose: String, granted: bool },
    /// Bought (`=`) or never bought (`!=`) a non-sensitive category (lower-cased).
    Category { name: String, present: bool },
    /// Visited (`=`) or never visited (`!=`) a store.
    Store { id: String, present: bool },
    /// Has (`=`) or has not (`!=`) a behaviour label such as `sale_hunter`.
    Label { name: String, present: bool },
}

impl Condition {
    pub fn holds(&self, subject: &Subject) -> bool {
        match self {
            Self::Number { field, op, value } => subject
                .number(*field)
                .is_some_and(|v| op.compare(v, *value)),
            Self::Consent { purpose, granted } => {
                subject.consents.get(purpose).copied().unwrap_or(false) == *granted
            }
            Self::Category { name, present } => subject.categories.contains(name) == *present,
            Self::Store { id, present } => subject.stores.contains(id) == *present,
            Self::Label { name, present } => subject.labels.contains(name) == *present,
        }
    }
}

/// A compiled `[[segment]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub id: String,
    pub name: String,
    pub conditions: Vec<Condition>,
}

impl Segment {
    /// True when every condition holds.
    pub fn matches(&self, subject: &Subject) -> bool {
        self.conditions.iter().all(|c| c.holds(subject))
    }
}

/// Compiles the `[[segment]]` tables of the hub config, in order.
pub fn compile(tables: &[toml::Table]) -> Result<Vec<Segment>, SegmentError> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(tables.len());
    for (i, table) in tables.iter().enumerate() {
        let segment = compile_one(i + 1, table)?;
        if !seen.insert(segment.id.clone()) {
            return Err(SegmentError {
                index: i + 1,
                id: Some(segment.id),
                condition: None,
                reason: "duplicate id (an earlier [[segment]] already uses it)".into(),
            });
        }
        out.push(segment);
    }
    Ok(out)
}

fn compile_one(index: usize, table: &toml::Table) -> Result<Segment, SegmentError> {
    let id = match table.get("id") {
        Some(toml::Value::String(s)) => s.clone(),
        Some(_) => return Err(error(index, None, None, "`id` must be a string")),
        None => return Err(error(index, None, None, "missing key `id`")),
    };
    let valid_id = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid_id {
        // Ids appear in URLs and `;`-joined CSV cells.
        return Err(error(
            index,
            Some(&id),
            None,
            "`id` must be non-empty and use only letters, digits, `-`, `_` and `.`",
        ));
    }
    if let Some(key) = table
        .keys()
        .find(|k| !matches!(k.as_str(), "id" | "name" | "where"))
    {
        return Err(error(
            index,
            Some(&id),
            None,
            &format!("unknown key `{key}` (expected id, name, where)"),
        ));
    }
    let name = match table.get("name") {
        Some(toml::Value::String(s)) => s.clone(),
        Some(_) => return Err(error(index, Some(&id), None, "`name` must be a string")),
        None => id.clone(),
    };
    let conditions = match table.get("where") {
        None => Vec::new(),
        Some(toml::Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                toml::Value::String(text) => parse_condition(text)
                    .map_err(|reason| error(index, Some(&id), Some(text), &reason)),
                other => Err(error(
                    index,
                    Some(&id),
                    Some(&other.to_string()),
                    "a condition must be a string such as \"frequency >= 3\"",
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(error(
                index,
                Some(&id),
                None,
                "`where` must be an array of condition strings",
            ))
        }
    };
    Ok(Segment {
        id,
        name,
        conditions,
    })
}

fn error(index: usize, id: Option<&str>, condition: Option<&str>, reason: &str) -> SegmentError {
    SegmentError {
        index,
        id: id.map(str::to_string),
        condition: condition.map(str::to_string),
        reason: reason.to_string(),
    }
}

/// Parses `field op value`, e.g. `churn_risk >= 0.6`. The reason is returned on error.
pub fn parse_condition(text: &str) -> Result<Condition, String> {
    let text = text.trim();
    let field_end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(text.len());
    let field = &text[..field_end];
    if field.is_empty() {
        return Err("expected `field op value`, e.g. \"frequency >= 3\"".into());
    }
    let rest = text[field_end..].trim_start();
    let op_end = rest
        .find(|c: char| !matches!(c, '=' | '!' | '<' | '>'))
        .unwrap_or(rest.len());
    let op_text = &rest[..op_end];
    if op_text.is_empty() {
        return Err(format!(
            "missing operator after `{field}` (use = != < <= > >=)"
        ));
    }
    let op = Op::parse(op_text)
        .ok_or_else(|| format!("bad operator `{op_text}` (use = != < <= > >=)"))?;
    let value = unquote(rest[op_end..].trim());
    if value.is_empty() {
        return Err(format!("missing value after `{field} {op_text}`"));
    }
    let presence = |what: &str| match op {
        Op::Eq => Ok(true),
        Op::Ne => Ok(false),
        _ => Err(format!(
            "bad operator `{op_text}` for {what} (only = and != apply)"
        )),
    };
    if let Some(purpose) = field.strip_prefix("consent.") {
        if !CONSENT_PURPOSES.contains(&purpose) {
            return Err(format!(
                "unknown consent purpose `{purpose}` (expected one of {})",
                CONSENT_PURPOSES.join(", ")
            ));
        }
        let wanted = match value {
            "true" => true,
            "false" => false,
            other => return Err(format!("bad value `{other}` for a consent (true or false)")),
        };
        return Ok(Condition::Consent {
            purpose: purpose.to_string(),
            granted: presence("a consent")? == wanted,
        });
    }
    match field {
        "category" => Ok(Condition::Category {
            name: value.to_lowercase(),
            present: presence("a category")?,
        }),
        "store" => Ok(Condition::Store {
            id: value.to_string(),
            present: presence("a store")?,
        }),
        "label" => Ok(Condition::Label {
            name: value.to_string(),
            present: presence("a label")?,
        }),
        _ => {
            let field = NumericField::parse(field).ok_or_else(|| {
                format!(
                    "unknown field `{field}` (expected one of {}, consent.<purpose>, category, store, label)",
                    NumericField::ALL.map(NumericField::name).join(", ")
                )
            })?;
            let number: f64 = value
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite())
                .ok_or_else(|| format!("bad number `{value}` for `{}`", field.name()))?;
            Ok(Condition::Number {
                field,
                op,
                value: number,
            })
        }
    }
}

fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
        .unwrap_or(value)
}
