//! Imports: CRM customers (CSV), online orders (JSONL) and products (CSV).
//!
//! Each import runs in ONE transaction: every line is parsed and checked, good lines
//! are applied as they come, and if any line is bad the whole transaction is rolled
//! back and the bad lines are reported with their line numbers (nothing half-applied).
//! Re-importing a file changes nothing: customers and products are upserted only
//! where a value differs, an order id already stored is skipped.
//!
//! This module parses and checks; what is written, and how, is the store's
//! (`store::imports`), on whatever engine the database runs.

mod customers;
mod orders;
mod products;
pub mod progress;
mod strict_csv;

use std::io::BufRead;

use serde::Serialize;
use thiserror::Error;
use till360_shared::Timestamp;

use crate::config::IdentityConfig;
use crate::identity::BlockedIdentifier;
use crate::store::erasures::Suppression;
use crate::store::imports::{self as store_imports, Applied};
use crate::store::sql::Sql;
use crate::store::StoreError;

pub use crate::store::imports::OrderLine;

/// A rejected line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// 1-based line number in the file.
    pub line: u64,
    pub reason: String,
}

/// What an import read and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    /// Records read (header and blank lines excluded).
    pub read: u64,
    /// New rows: profiles created (customers), orders stored, products added.
    pub inserted: u64,
    /// Existing rows whose values changed (customers' data, products).
    pub updated: u64,
    /// Times this import joined (or split) existing profiles.
    pub merged: u64,
    /// Records that changed nothing (already imported).
    pub unchanged: u64,
    pub rejected: Vec<Rejection>,
    /// Records that name an erased person (an identifier on the suppression list, dated
    /// before the erase): skipped (customers) or kept without the person (orders).
    pub suppressed: u64,
    /// Identifiers this import blocked from merging.
    pub blocked: Vec<BlockedIdentifier>,
}

impl std::fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "read {}, inserted {}, updated {}, merged {}, unchanged {}, rejected {}",
            self.read,
            self.inserted,
            self.updated,
            self.merged,
            self.unchanged,
            self.rejected.len()
        )?;
        if self.suppressed > 0 {
            write!(f, ", suppressed {} (erased)", self.suppressed)?;
        }
        for r in &self.rejected {
            write!(f, "\n  line {}: {}", r.line, r.reason)?;
        }
        for b in &self.blocked {
            write!(f, "\n  blocked {} {}: {}", b.kind, b.value, b.reason)?;
        }
        Ok(())
    }
}

#[derive(Debug, Error)]
pub enum ImportError {
    #[error("cannot read the file: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Header(String),
    /// Bad lines: the file was not applied.
    #[error("{} bad line(s); nothing was imported", .0.rejected.len())]
    Rejected(ImportSummary),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Called every [`progress::EVERY`] records and at the end, with the records read.
pub type ProgressFn<'a> = &'a mut dyn FnMut(u64);

/// Imports CRM customers (CSV with a header). `suppression` (the key of the erasure
/// log's suppression list, from the coupon master secret) keeps erased people out;
/// without it an import is refused once anyone was erased.
pub fn customers(
    db: &dyn Sql,
    reader: impl BufRead,
    config: &IdentityConfig,
    suppression: Option<&Suppression>,
    now: Timestamp,
) -> Result<ImportSummary, ImportError> {
    in_transaction(db, |db| {
        customers::run(db, reader, config, suppression, now, &mut |_| {})
    })
}

/// [`customers`] with a progress callback.
pub fn customers_with_progress(
    db: &dyn Sql,
    reader: impl BufRead,
    config: &IdentityConfig,
    suppression: Option<&Suppression>,
    now: Timestamp,
    progress: ProgressFn<'_>,
) -> Result<ImportSummary, ImportError> {
    in_transaction(db, |db| {
        customers::run(db, reader, config, suppression, now, progress)
    })
}

/// Imports online orders (one JSON object per line).
pub fn orders(
    db: &dyn Sql,
    reader: impl BufRead,
    config: &IdentityConfig,
    suppression: Option<&Suppression>,
    now: Timestamp,
) -> Result<ImportSummary, ImportError> {
    in_transaction(db, |db| {
        orders::run(db, reader, config, suppression, now, &mut |_| {})
    })
}

/// [`orders`] with a progress callback.
pub fn orders_with_progress(
    db: &dyn Sql,
    reader: impl BufRead,
    config: &IdentityConfig,
    suppression: Option<&Suppression>,
    now: Timestamp,
    progress: ProgressFn<'_>,
) -> Result<ImportSummary, ImportError> {
    in_transaction(db, |db| {
        orders::run(db, reader, config, suppression, now, progress)
    })
}

/// Imports products (CSV with a header).
pub fn products(
    db: &dyn Sql,
    reader: impl BufRead,
    now: Timestamp,
) -> Result<ImportSummary, ImportError> {
    in_transaction(db, |db| products::run(db, reader, now, &mut |_| {}))
}

/// [`products`] with a progress callback.
pub fn products_with_progress(
    db: &dyn Sql,
    reader: impl BufRead,
    now: Timestamp,
    progress: ProgressFn<'_>,
) -> Result<ImportSummary, ImportError> {
    in_transaction(db, |db| products::run(db, reader, now, progress))
}

/// `yes/no/true/false/1/0` (any case); empty is `None`.
fn parse_flag(raw: &str, column: &str) -> Result<Option<bool>, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "" => Ok(None),
        "yes" | "true" | "1" => Ok(Some(true)),
        "no" | "false" | "0" => Ok(Some(false)),
        other => Err(format!("{column}: {other:?} is not yes/no/true/false/1/0")),
    }
}

/// Column positions of a CSV header, by name.
struct Columns {
    names: Vec<String>,
}

impl Columns {
    fn new(header: &csv::StringRecord, required: &[&str]) -> Result<Self, ImportError> {
        let names: Vec<String> = header
            .iter()
            .map(|h| h.trim().trim_start_matches('\u{feff}').to_ascii_lowercase())
            .collect();
        let missing: Vec<&str> = required
            .iter()
            .copied()
            .filter(|r| !names.iter().any(|n| n == r))
            .collect();
        if !missing.is_empty() {
            return Err(ImportError::Header(format!(
                "line 1: the header lacks column(s) {}",
                missing.join(", ")
            )));
        }
        Ok(Self { names })
    }

    /// The trimmed field of `column` (empty when the column is absent).
    fn get<'r>(&self, record: &'r csv::StringRecord, column: &str) -> &'r str {
        self.names
            .iter()
            .position(|n| n == column)
            .and_then(|i| record.get(i))
            .map_or("", str::trim)
    }
}

/// Runs an import in ONE transaction: committed when every line was good, else rolled
/// back and the bad lines reported (also rolled back on any error).
fn in_transaction(
    db: &dyn Sql,
    run: impl FnOnce(&dyn Sql) -> Result<ImportSummary, ImportError>,
) -> Result<ImportSummary, ImportError> {
    store_imports::begin(db)?;
    let summary = match run(db) {
        Ok(summary) => summary,
        Err(err) => {
            // The rollback's own error is not the news: the first error is.
            let _ = store_imports::rollback(db);
            return Err(err);
        }
    };
    if summary.rejected.is_empty() {
        // The running hub recomputes traits and segments when it sees a change.
        let changed = summary.inserted + summary.updated + summary.merged > 0;
        if let Err(err) = store_imports::commit(db, changed) {
            let _ = store_imports::rollback(db);
            return Err(err.into());
        }
        Ok(summary)
    } else {
        store_imports::rollback(db)?;
        Err(ImportError::Rejected(summary))
    }
}

impl ImportSummary {
    /// Counts what applying one record did.
    fn count(&mut self, applied: Applied) {
        match applied {
            Applied::Inserted => self.inserted += 1,
            Applied::Updated => self.updated += 1,
            Applied::Merged => self.merged += 1,
            Applied::Unchanged => self.unchanged += 1,
            Applied::Nothing => {}
        }
    }
}
