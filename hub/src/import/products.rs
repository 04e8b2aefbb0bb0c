//! `import products FILE.csv`: the catalogue receipt and order lines are matched to
//! (by sku, else by description) for categories.

use std::io::BufRead;

use till360_shared::Timestamp;

use super::strict_csv::StrictCsv;
use super::{parse_flag, Columns, ImportError, ImportSummary, ProgressFn, Rejection};
use crate::store::imports::{self as store_imports, ProductRecord as Product};
use crate::store::sql::Sql;

const REQUIRED: &[&str] = &["sku", "description", "category", "sensitive"];

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
    db: &dyn Sql,
    reader: impl BufRead,
    _now: Timestamp,
    progress: ProgressFn<'_>,
) -> Result<ImportSummary, ImportError> {
    let (mut csv, cols) = StrictCsv::open(reader, REQUIRED)?;
    let mut summary = ImportSummary::default();
    while let Some((line, record)) = csv.next(&mut summary, &mut *progress)? {
        match parse(&cols, record) {
            Err(reason) => summary.rejected.push(Rejection { line, reason }),
            Ok(p) if summary.rejected.is_empty() => {
                summary.count(store_imports::upsert_product(db, &p)?);
            }
            Ok(_) => {}
        }
    }
    progress(summary.read);
    Ok(summary)
}
