//! `import products FILE.csv`: the catalogue receipt and order lines are matched to
//! (by sku, else by description) for categories.

use std::io::BufRead;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use till360_shared::Timestamp;

use super::strict_csv::StrictCsv;
use super::{finish, parse_flag, Columns, ImportError, ImportSummary, ProgressFn, Rejection};

const REQUIRED: &[&str] = &["sku", "description", "category", "sensitive"];

struct Product {
    sku: String,
    description: String,
    category: String,
    sensitive: bool,
}

fn parse(cols: &Columns, record: &csv::StringRecord) -> Result<Product, String> {
    let field = |name: &str| -> Result<String, String> {
        let v = cols.get(record, name);
        if v.is_empty() {
            Err(format!("{name}: empty"))
        } else {
            Ok(v.to_string())
        }
    };
    Ok(Product {
        sku: field("sku")?,
        description: field("description")?,
        category: field("category")?,
        sensitive: parse_flag(cols.get(record, "sensitive"), "sensitive")?
            .ok_or("sensitive: empty (yes or no)")?,
    })
}

pub(super) fn run(
    conn: &mut Connection,
    reader: impl BufRead,
    _now: Timestamp,
    progress: ProgressFn<'_>,
) -> Result<ImportSummary, ImportError> {
    let (mut csv, cols) = StrictCsv::open(reader, REQUIRED)?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut summary = ImportSummary::default();
    while let Some((line, record)) = csv.next(&mut summary, &mut *progress)? {
        match parse(&cols, record) {
            Err(reason) => summary.rejected.push(Rejection { line, reason }),
            Ok(p) if summary.rejected.is_empty() => {
                let existed = tx
                    .prepare_cached("SELECT 1 FROM products WHERE sku = ?1")?
                    .query_row([&p.sku], |_| Ok(()))
                    .optional()?
                    .is_some();
                let changed = tx
                    .prepare_cached(
                        "INSERT INTO products (sku, description, category, sensitive)
                         VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (sku) DO UPDATE SET description = excluded.description,
                             category = excluded.category, sensitive = excluded.sensitive
                         WHERE products.description <> excluded.description
                             OR products.category <> excluded.category
                             OR products.sensitive <> excluded.sensitive",
                    )?
                    .execute(params![p.sku, p.description, p.category, p.sensitive])?;
                match (existed, changed) {
                    (false, _) => summary.inserted += 1,
                    (true, 0) => summary.unchanged += 1,
                    (true, _) => summary.updated += 1,
                }
            }
            Ok(_) => {}
        }
    }
    progress(summary.read);
    finish(tx, summary)
}
