//! The layout file: format, validation (errors name file, key and reason) and
//! compilation of its patterns.

use std::path::Path;

use chrono::format::{Item, StrftimeItems};
use regex::Regex;
use serde::Deserialize;
use thiserror::Error;
use till360_shared::Currency;

#[derive(Debug, Error)]
pub enum LayoutError {
    #[error("{file}: cannot read receipt layout: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    /// TOML syntax, a missing or unknown key, a value of the wrong type (the TOML
    /// error text names the key and line).
    #[error("{file}: {reason}")]
    Syntax { file: String, reason: String },
    #[error("{file}: key `{key}`: {reason}")]
    Invalid {
        file: String,
        key: String,
        reason: String,
    },
}

/// The layout file as written (see `config/receipts/supermarket.toml`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LayoutFile {
    decimal: String,
    currency: Option<String>,
    receipt_no: Option<String>,
    timestamp: Option<String>,
    timestamp_format: Option<String>,
    items: Vec<String>,
    quantity: Option<String>,
    discount: Option<String>,
    total: String,
    card: Option<String>,
    #[serde(default)]
    ignore: Vec<String>,
}

/// A compiled receipt layout.
#[derive(Debug, Clone)]
pub struct Layout {
    pub(super) origin: String,
    pub(super) decimal: char,
    pub(super) currency: Currency,
    pub(super) receipt_no: Option<Regex>,
    pub(super) timestamp: Option<(Regex, String)>,
    pub(super) items: Vec<Regex>,
    pub(super) quantity: Option<Regex>,
    pub(super) discount: Option<Regex>,
    pub(super) total: Regex,
    pub(super) card: Option<Regex>,
    pub(super) ignore: Vec<Regex>,
}

/// Named groups a pattern must have and may have.
struct Groups {
    required: &'static [&'static str],
    optional: &'static [&'static str],
}

const RECEIPT_NO: Groups = Groups {
    required: &["no"],
    optional: &[],
};
const TIMESTAMP: Groups = Groups {
    required: &["ts"],
    optional: &[],
};
const ITEM: Groups = Groups {
    required: &["desc", "amount"],
    optional: &["qty", "unit", "sku"],
};
const QUANTITY: Groups = Groups {
    required: &["qty"],
    optional: &["unit"],
};
const DISCOUNT: Groups = Groups {
    required: &["amount"],
    optional: &["desc"],
};
const TOTAL: Groups = Groups {
    required: &["amount"],
    optional: &[],
};
const CARD: Groups = Groups {
    required: &["last4"],
    optional: &[],
};
const IGNORE: Groups = Groups {
    required: &[],
    optional: &[],
};

impl Layout {
    /// Parses and validates a layout; `origin` (the file name) prefixes every error.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Layout, LayoutError> {
        let file: LayoutFile = toml::from_str(text).map_err(|e| LayoutError::Syntax {
            file: origin.to_string(),
            reason: e.to_string().trim_end().to_string(),
        })?;
        let invalid = |key: &str, reason: String| LayoutError::Invalid {
            file: origin.to_string(),
            key: key.to_string(),
            reason,
        };
        let compile = |key: &str, pattern: &str, groups: &Groups| {
            compile(pattern, groups).map_err(|reason| invalid(key, reason))
        };
        let optional = |key: &str, pattern: &Option<String>, groups: &Groups| {
            pattern
                .as_deref()
                .map(|p| compile(key, p, groups))
                .transpose()
        };

        let decimal = match file.decimal.as_str() {
            "," => ',',
            "." => '.',
            other => {
                return Err(invalid(
                    "decimal",
                    format!("{other:?} is not a decimal separator: use \",\" or \".\""),
                ))
            }
        };
        let currency = match &file.currency {
            None => Currency::EUR,
            Some(code) => Currency::new(code).map_err(|e| invalid("currency", e.to_string()))?,
        };
        if file.items.is_empty() {
            return Err(invalid("items", "needs at least one pattern".into()));
        }
        let items = file
            .items
            .iter()
            .enumerate()
            .map(|(i, p)| compile(&format!("items[{i}]"), p, &ITEM))
            .collect::<Result<Vec<_>, _>>()?;
        let ignore = file
            .ignore
            .iter()
            .enumerate()
            .map(|(i, p)| compile(&format!("ignore[{i}]"), p, &IGNORE))
            .collect::<Result<Vec<_>, _>>()?;
        let timestamp = match (&file.timestamp, &file.timestamp_format) {
            (None, None) => None,
            (Some(pattern), Some(format)) => {
                let regex = compile("timestamp", pattern, &TIMESTAMP)?;
                check_strftime(format).map_err(|r| invalid("timestamp_format", r))?;
                Some((regex, format.clone()))
            }
            (Some(_), None) => {
                return Err(invalid(
                    "timestamp_format",
                    "missing: required when `timestamp` is set (e.g. \"%d-%m-%Y %H:%M\")".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "timestamp",
                    "missing: `timestamp_format` is set but there is no `timestamp` pattern".into(),
                ))
            }
        };
        Ok(Layout {
            origin: origin.to_string(),
            decimal,
            currency,
            receipt_no: optional("receipt_no", &file.receipt_no, &RECEIPT_NO)?,
            timestamp,
            items,
            quantity: optional("quantity", &file.quantity, &QUANTITY)?,
            discount: optional("discount", &file.discount, &DISCOUNT)?,
            total: compile("total", &file.total, &TOTAL)?,
            card: optional("card", &file.card, &CARD)?,
            ignore,
        })
    }

    pub fn load(path: &Path) -> Result<Layout, LayoutError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| LayoutError::Read {
            file: file.clone(),
            source,
        })?;
        Layout::from_toml_str(&text, &file)
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// The file this layout came from (for log lines).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The decimal separator amounts are printed with.
    pub fn decimal(&self) -> char {
        self.decimal
    }
}

fn compile(pattern: &str, groups: &Groups) -> Result<Regex, String> {
    let regex = Regex::new(pattern).map_err(|e| format!("bad regular expression: {e}"))?;
    let names: Vec<&str> = regex.capture_names().flatten().collect();
    if let Some(missing) = groups.required.iter().find(|g| !names.contains(g)) {
        return Err(format!(
            "pattern has no named group `{missing}` (write it as (?P<{missing}>...))"
        ));
    }
    if let Some(unknown) = names
        .iter()
        .find(|n| !groups.required.contains(n) && !groups.optional.contains(n))
    {
        let allowed: Vec<&str> = groups
            .required
            .iter()
            .chain(groups.optional)
            .copied()
            .collect();
        return Err(if allowed.is_empty() {
            format!("unknown named group `{unknown}`: this pattern takes no groups")
        } else {
            format!(
                "unknown named group `{unknown}` (allowed: {})",
                allowed.join(", ")
            )
        });
    }
    Ok(regex)
}

fn check_strftime(format: &str) -> Result<(), String> {
    if format.trim().is_empty() {
        return Err("empty format".into());
    }
    if StrftimeItems::new(format).any(|item| matches!(item, Item::Error)) {
        return Err(format!("{format:?} is not a valid chrono strftime format"));
    }
    Ok(())
}
