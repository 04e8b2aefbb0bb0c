//! Copying a hub's database into another one (`till360-hub migrate`): every table in
//! foreign-key order, identity sequences moved past the copied ids, then a check that
//! both hold the same rows (counts per table) and the same profiles (a digest of each
//! profile's rows, computed the same way on both engines).
//!
//! Portable over [`Sql`]: the catalog queries are the only place the engines differ.
//! Rows go over inside ONE transaction on the target, so a copy that fails leaves the
//! target empty and can simply be run again: in multi-row INSERTs ([`Inserts`], any
//! engine) or, into PostgreSQL, by binary COPY (`store/postgres/copy.rs`, faster: see
//! [`into_postgres`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::sql::{Engine, Param, Row, Sql, SqlExt, ToParam, TxKind, Value};
use super::StoreError;
use crate::sql_params;

/// Rows read from the source between two progress reports (and two INSERT rounds).
const CHUNK_ROWS: usize = 5_000;
/// Parameters per INSERT: below SQLite's 32,766 and PostgreSQL's 65,535.
const PARAMS_PER_INSERT: usize = 8_000;
/// Profiles whose digests are computed per round (the `IN` list of each query).
const PROFILES_PER_ROUND: usize = 400;

/// A table as the catalog lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub name: String,
    pub columns: Vec<String>,
}

/// Why a copy did not start or did not finish (a difference found afterwards is in the
/// [`TransferReport`], not here).
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("the target is not empty: table {table} holds {rows} row(s); migrate copies into an empty database only")]
    TargetNotEmpty { table: String, rows: u64 },
    #[error("the source is at schema version {source_version}, the target at {target_version}")]
    SchemaVersions {
        source_version: i64,
        target_version: i64,
    },
    #[error("the target's tables differ from the source's: {0}")]
    Tables(String),
    #[error("table {table}: {error}")]
    Copy { table: String, error: StoreError },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the copy and the check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransferReport {
    /// Per table, in copy order: rows copied and how long it took.
    pub tables: Vec<TableCopied>,
    /// Per table, in copy order: rows in the source and in the target afterwards.
    pub counts: Vec<(String, u64, u64)>,
    /// Profiles compared by digest.
    pub profiles_checked: u64,
    /// Every difference found; empty when the target equals the source.
    pub differences: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCopied {
    pub table: String,
    pub rows: u64,
    pub elapsed: Duration,
}

impl TransferReport {
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }

    pub fn copy_time(&self) -> Duration {
        self.tables.iter().map(|t| t.elapsed).sum()
    }
}

/// What a copy tells as it goes (the command line draws its progress from it).
pub trait TransferProgress {
    /// `table` starts; `total` rows to copy.
    fn table_started(&mut self, table: &str, total: u64);
    /// `done` of the table's rows copied so far.
    fn rows_copied(&mut self, table: &str, done: u64, total: u64);
    fn table_done(&mut self, table: &str, rows: u64, elapsed: Duration);
}

/// No progress shown (tests).
pub struct Silent;

impl TransferProgress for Silent {
    fn table_started(&mut self, _: &str, _: u64) {}
    fn rows_copied(&mut self, _: &str, _: u64, _: u64) {}
    fn table_done(&mut self, _: &str, _: u64, _: Duration) {}
}

/// How copied rows reach the target.
pub trait RowWriter {
    /// The target connection (the copy's transaction, the checks).
    fn target(&self) -> &dyn Sql;
    /// Writes `rows` (all of `table`'s columns, in order) into the target.
    fn write_rows(&self, table: &Table, rows: &[Row]) -> Result<(), StoreError>;
}

/// Multi-row INSERTs, on any engine.
pub struct Inserts<'a>(pub &'a dyn Sql);

impl RowWriter for Inserts<'_> {
    fn target(&self) -> &dyn Sql {
        self.0
    }

    fn write_rows(&self, table: &Table, rows: &[Row]) -> Result<(), StoreError> {
        insert_rows(self.0, table, rows)
    }
}

/// `name` as a quoted SQL identifier (both engines).
pub fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The hub's tables and their columns (the migration history's own bookkeeping left out).
pub fn tables(db: &dyn Sql) -> Result<Vec<Table>, StoreError> {
    let sql = match db.engine() {
        Engine::Sqlite => {
            "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' ORDER BY m.name, p.cid"
        }
        Engine::Postgres => {
            "SELECT CAST(c.table_name AS TEXT), CAST(c.column_name AS TEXT)
             FROM information_schema.columns c
             JOIN information_schema.tables t
               ON t.table_schema = c.table_schema AND t.table_name = c.table_name
             WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'
               AND c.table_name <> 'schema_migrations'
             ORDER BY c.table_name, c.ordinal_position"
        }
    };
    let mut by_name = BTreeMap::<String, Vec<String>>::new();
    db.query_each(sql, sql_params![], &mut |row| {
        by_name.entry(row.get(0)?).or_default().push(row.get(1)?);
        Ok(())
    })?;
    Ok(by_name
        .into_iter()
        .map(|(name, columns)| Table { name, columns })
        .collect())
}

/// Child table → the tables its foreign keys name.
fn foreign_keys(db: &dyn Sql) -> Result<BTreeMap<String, BTreeSet<String>>, StoreError> {
    let sql = match db.engine() {
        Engine::Sqlite => {
            "SELECT m.name, f.\"table\" FROM sqlite_master m, pragma_foreign_key_list(m.name) f
             WHERE m.type = 'table'"
        }
        Engine::Postgres => {
            "SELECT CAST(child.relname AS TEXT), CAST(parent.relname AS TEXT)
             FROM pg_constraint c
             JOIN pg_class child ON child.oid = c.conrelid
             JOIN pg_class parent ON parent.oid = c.confrelid
             JOIN pg_namespace n ON n.oid = c.connamespace
             WHERE c.contype = 'f' AND n.nspname = current_schema()"
        }
    };
    let mut parents = BTreeMap::<String, BTreeSet<String>>::new();
    db.query_each(sql, sql_params![], &mut |row| {
        parents.entry(row.get(0)?).or_default().insert(row.get(1)?);
        Ok(())
    })?;
    Ok(parents)
}

/// `tables` with every table after the tables its foreign keys name (by name otherwise).
pub fn dependency_order(db: &dyn Sql, tables: Vec<Table>) -> Result<Vec<Table>, StoreError> {
    let parents = foreign_keys(db)?;
    let mut left: Vec<Table> = tables;
    let mut placed = BTreeSet::<String>::new();
    let mut ordered = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let ready = left.iter().position(|t| {
            parents
                .get(&t.name)
                .is_none_or(|ps| ps.iter().all(|p| p == &t.name || placed.contains(p)))
        });
        let Some(index) = ready else {
            return Err(StoreError::Corrupt(format!(
                "foreign keys in a circle among {}",
                left.iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let table = left.remove(index);
        placed.insert(table.name.clone());
        ordered.push(table);
    }
    Ok(ordered)
}

/// Rows in `table`.
pub fn count(db: &dyn Sql, table: &str) -> Result<u64, StoreError> {
    Ok(db
        .query_value::<u64>(
            &format!("SELECT COUNT(*) FROM {}", quoted(table)),
            sql_params![],
        )?
        .unwrap_or(0))
}

/// The first table of `db` that holds a row, and how many.
pub fn first_non_empty(db: &dyn Sql) -> Result<Option<(String, u64)>, StoreError> {
    for table in tables(db)? {
        let rows = count(db, &table.name)?;
        if rows > 0 {
            return Ok(Some((table.name, rows)));
        }
    }
    Ok(None)
}

/// A read value as a parameter again.
pub fn param(value: &Value) -> Param<'_> {
    match value {
        Value::Null => Param::Null,
        Value::Int(v) => Param::Int(*v),
        Value::Real(v) => Param::Real(*v),
        Value::Text(v) => Param::Text(v),
        Value::Blob(v) => Param::Blob(v),
    }
}

/// `INSERT INTO table (columns) VALUES (?1, ..), (..)` for `rows` rows.
fn insert_statement(table: &Table, rows: usize) -> String {
    let width = table.columns.len();
    let columns: Vec<String> = table.columns.iter().map(|c| quoted(c)).collect();
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES ",
        quoted(&table.name),
        columns.join(", ")
    );
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..width {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("?{}", r * width + c + 1));
        }
        sql.push(')');
    }
    sql
}

/// Writes `rows` of `table` into `target` in multi-row INSERTs.
fn insert_rows(target: &dyn Sql, table: &Table, rows: &[Row]) -> Result<(), StoreError> {
    let width = table.columns.len().max(1);
    let per_insert = (PARAMS_PER_INSERT / width).max(1);
    let mut full_statement = None;
    for group in rows.chunks(per_insert) {
        let sql = if group.len() == per_insert {
            full_statement
                .get_or_insert_with(|| insert_statement(table, per_insert))
                .clone()
        } else {
            insert_statement(table, group.len())
        };
        let values: Vec<Value> = group
            .iter()
            .flat_map(|row| (0..table.columns.len()).map(move |i| row.get::<Value>(i)))
            .collect::<Result<_, _>>()?;
        let params: Vec<Param<'_>> = values.iter().map(param).collect();
        let refs: Vec<&dyn ToParam> = params.iter().map(|p| p as &dyn ToParam).collect();
        target.execute(&sql, &refs)?;
    }
    Ok(())
}

/// Copies `table` from `source` into `target` (inside the caller's transactions).
fn copy_table(
    source: &dyn Sql,
    writer: &dyn RowWriter,
    table: &Table,
    total: u64,
    progress: &mut dyn TransferProgress,
) -> Result<u64, StoreError> {
    let columns: Vec<String> = table.columns.iter().map(|c| quoted(c)).collect();
    let select = format!("SELECT {} FROM {}", columns.join(", "), quoted(&table.name));
    let mut chunk = Vec::with_capacity(CHUNK_ROWS);
    let mut done = 0u64;
    source.query_each(&select, sql_params![], &mut |row| {
        chunk.push(row);
        if chunk.len() == CHUNK_ROWS {
            writer.write_rows(table, &chunk)?;
            done += chunk.len() as u64;
            chunk.clear();
            progress.rows_copied(&table.name, done, total);
        }
        Ok(())
    })?;
    if !chunk.is_empty() {
        writer.write_rows(table, &chunk)?;
        done += chunk.len() as u64;
        progress.rows_copied(&table.name, done, total);
    }
    Ok(done)
}

/// The highest value an identity column of `table` has given out on `source`: its
/// largest id, or SQLite's AUTOINCREMENT record if higher (ids of deleted rows are never
/// given out again).
fn highest_id(source: &dyn Sql, table: &str, column: &str) -> Result<i64, StoreError> {
    let largest = source
        .query_value::<Option<i64>>(
            &format!("SELECT MAX({}) FROM {}", quoted(column), quoted(table)),
            sql_params![],
        )?
        .flatten()
        .unwrap_or(0);
    let recorded = match source.engine() {
        Engine::Sqlite
            if source.exists(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'",
                sql_params![],
            )? =>
        {
            source
                .query_value::<i64>(
                    "SELECT seq FROM sqlite_sequence WHERE name = ?1",
                    sql_params![table],
                )?
                .unwrap_or(0)
        }
        _ => 0,
    };
    Ok(largest.max(recorded))
}

/// The INTEGER PRIMARY KEY column of a SQLite table declared AUTOINCREMENT.
fn autoincrement_column(db: &dyn Sql, table: &str) -> Result<Option<String>, StoreError> {
    let declared = db
        .query_value::<String>(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1",
            sql_params![table],
        )?
        .unwrap_or_default();
    if !declared.to_uppercase().contains("AUTOINCREMENT") {
        return Ok(None);
    }
    db.query_value::<String>(
        "SELECT name FROM pragma_table_info(?1) WHERE pk = 1",
        sql_params![table],
    )
}

/// Moves every identity sequence of `target` past the ids copied into it, so the next
/// row it numbers itself (an erasure's version) follows the source's last one.
fn reset_identities(source: &dyn Sql, target: &dyn Sql) -> Result<(), StoreError> {
    if target.engine() == Engine::Sqlite {
        // SQLite numbers an AUTOINCREMENT table after its largest row or its record of
        // ids given out, whichever is higher: the record is carried over.
        for table in tables(target)? {
            let Some(column) = autoincrement_column(target, &table.name)? else {
                continue;
            };
            let highest = highest_id(source, &table.name, &column)?;
            target.execute(
                "DELETE FROM sqlite_sequence WHERE name = ?1",
                sql_params![table.name],
            )?;
            target.execute(
                "INSERT INTO sqlite_sequence (name, seq) VALUES (?1, ?2)",
                sql_params![table.name, highest],
            )?;
        }
        return Ok(());
    }
    let identities = target.query(
        "SELECT CAST(table_name AS TEXT), CAST(column_name AS TEXT)
         FROM information_schema.columns
         WHERE table_schema = current_schema() AND is_identity = 'YES'",
        sql_params![],
    )?;
    for row in identities {
        let (table, column): (String, String) = (row.get(0)?, row.get(1)?);
        let highest = highest_id(source, &table, &column)?;
        if highest > 0 {
            target.query_each(
                "SELECT setval(CAST(pg_get_serial_sequence(?1, ?2) AS regclass), ?3)",
                sql_params![table, column, highest],
                &mut |_| Ok(()),
            )?;
        }
    }
    Ok(())
}

/// One value, self-delimiting, the same bytes from either engine.
fn encode_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.push(0),
        Value::Int(v) => {
            out.push(1);
            out.extend_from_slice(&v.to_be_bytes());
        }
        Value::Real(v) => {
            out.push(2);
            out.extend_from_slice(&v.to_bits().to_be_bytes());
        }
        Value::Text(v) => {
            out.push(3);
            out.extend_from_slice(&(v.len() as u64).to_be_bytes());
            out.extend_from_slice(v.as_bytes());
        }
        Value::Blob(v) => {
            out.push(4);
            out.extend_from_slice(&(v.len() as u64).to_be_bytes());
            out.extend_from_slice(v);
        }
    }
}

/// The tables holding a profile's rows, `profiles` first, then by name: the order a
/// profile's digest takes them in.
fn profile_tables(tables: &[Table]) -> Vec<&Table> {
    let mut out: Vec<&Table> = tables
        .iter()
        .filter(|t| t.columns.iter().any(|c| c == "profile_id"))
        .collect();
    out.sort_by_key(|t| (t.name != "profiles", t.name.clone()));
    out
}

/// A SHA-256 digest of each of `profile_ids`' rows in every table that names a profile:
/// the profile row, identifiers, consents, transactions, coupons, orders, traits and
/// segment memberships. Rows are ordered by their encoded bytes, not by the engine's
/// collation, so both engines give the same digest for the same rows. A profile that
/// does not exist is missing from the map.
pub fn profile_digests(
    db: &dyn Sql,
    tables: &[Table],
    profile_ids: &[String],
) -> Result<BTreeMap<String, [u8; 32]>, StoreError> {
    let mut rows_of = BTreeMap::<String, Vec<(usize, Vec<u8>)>>::new();
    let mut present = BTreeSet::<String>::new();
    let list: Vec<String> = (1..=profile_ids.len()).map(|i| format!("?{i}")).collect();
    let params: Vec<&dyn ToParam> = profile_ids.iter().map(|p| p as &dyn ToParam).collect();
    for (index, table) in profile_tables(tables).into_iter().enumerate() {
        let position = table
            .columns
            .iter()
            .position(|c| c == "profile_id")
            .expect("profile tables have profile_id");
        let columns: Vec<String> = table.columns.iter().map(|c| quoted(c)).collect();
        let sql = format!(
            "SELECT {} FROM {} WHERE profile_id IN ({})",
            columns.join(", "),
            quoted(&table.name),
            list.join(", ")
        );
        db.query_each(&sql, &params, &mut |row| {
            let profile: String = row.get(position)?;
            if table.name == "profiles" {
                present.insert(profile.clone());
            }
            let mut encoded = Vec::new();
            for i in 0..table.columns.len() {
                encode_value(&row.get::<Value>(i)?, &mut encoded);
            }
            rows_of.entry(profile).or_default().push((index, encoded));
            Ok(())
        })?;
    }
    let mut digests = BTreeMap::new();
    for profile in present {
        let mut rows = rows_of.remove(&profile).unwrap_or_default();
        rows.sort();
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        for (table, encoded) in &rows {
            context.update(&(*table as u64).to_be_bytes());
            context.update(&(encoded.len() as u64).to_be_bytes());
            context.update(encoded);
        }
        let mut digest = [0u8; 32];
        digest.copy_from_slice(context.finish().as_ref());
        digests.insert(profile, digest);
    }
    Ok(digests)
}

/// What [`compare`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Per table: rows in the source and in the target.
    pub counts: Vec<(String, u64, u64)>,
    pub profiles_checked: u64,
    /// Each names its table or profile.
    pub differences: Vec<String>,
}

/// Compares `source` and `target`: row counts of every table, and the digest of every
/// profile of the source with the target's.
pub fn compare(
    source: &dyn Sql,
    target: &dyn Sql,
    tables: &[Table],
) -> Result<Comparison, StoreError> {
    let mut counts = Vec::new();
    let mut differences = Vec::new();
    for table in tables {
        let (in_source, in_target) = (count(source, &table.name)?, count(target, &table.name)?);
        if in_source != in_target {
            differences.push(format!(
                "table {}: {in_source} row(s) in the source, {in_target} in the target",
                table.name
            ));
        }
        counts.push((table.name.clone(), in_source, in_target));
    }
    let mut checked = 0u64;
    let mut after = String::new();
    loop {
        // Paged by the source's own order; the target is asked by id, so the engines'
        // different collations do not matter.
        let ids: Vec<String> = source
            .query(
                "SELECT profile_id FROM profiles WHERE profile_id > ?1 ORDER BY profile_id LIMIT ?2",
                sql_params![after, PROFILES_PER_ROUND as i64],
            )?
            .iter()
            .map(|row| row.get::<String>(0))
            .collect::<Result<_, _>>()?;
        let Some(last) = ids.last() else { break };
        after = last.clone();
        let in_source = profile_digests(source, tables, &ids)?;
        let in_target = profile_digests(target, tables, &ids)?;
        for id in &ids {
            checked += 1;
            match (in_source.get(id), in_target.get(id)) {
                (Some(a), Some(b)) if a == b => {}
                (Some(_), None) => differences.push(format!("profile {id}: not in the target")),
                _ => differences.push(format!(
                    "profile {id}: its rows differ (checksum of profile, identifiers, consents, \
                     transactions, coupons, orders, traits, segments)"
                )),
            }
        }
    }
    Ok(Comparison {
        counts,
        profiles_checked: checked,
        differences,
    })
}

/// Copies every row of `source` into the empty `target` (both at the same schema
/// version), then compares them (see [`compare`]).
pub fn transfer(
    source: &dyn Sql,
    writer: &dyn RowWriter,
    progress: &mut dyn TransferProgress,
) -> Result<TransferReport, TransferError> {
    let target = writer.target();
    let (source_version, target_version) = (
        super::migrations::version(source)?,
        super::migrations::version(target)?,
    );
    if source_version != target_version {
        return Err(TransferError::SchemaVersions {
            source_version,
            target_version,
        });
    }
    if let Some((table, rows)) = first_non_empty(target)? {
        return Err(TransferError::TargetNotEmpty { table, rows });
    }
    let source_tables = tables(source)?;
    let target_tables: BTreeMap<String, Vec<String>> = tables(target)?
        .into_iter()
        .map(|t| (t.name, t.columns))
        .collect();
    for table in &source_tables {
        match target_tables.get(&table.name) {
            None => {
                return Err(TransferError::Tables(format!(
                    "table {} is not in the target",
                    table.name
                )))
            }
            Some(columns) => {
                let mut missing = table.columns.iter().filter(|c| !columns.contains(c));
                if let Some(column) = missing.next() {
                    return Err(TransferError::Tables(format!(
                        "column {}.{column} is not in the target",
                        table.name
                    )));
                }
            }
        }
    }
    let ordered = dependency_order(source, source_tables)?;

    // One read snapshot of the source for the copy and the check; one transaction on the
    // target, so a failed copy leaves it empty.
    source.begin(TxKind::Read)?;
    let result = copy_all(source, writer, &ordered, progress);
    let _ = source.rollback();
    result
}

fn copy_all(
    source: &dyn Sql,
    writer: &dyn RowWriter,
    tables: &[Table],
    progress: &mut dyn TransferProgress,
) -> Result<TransferReport, TransferError> {
    let target = writer.target();
    let mut report = TransferReport::default();
    target.begin(TxKind::Write)?;
    let copied = (|| -> Result<(), TransferError> {
        if target.engine() == Engine::Postgres {
            // A bulk copy may rightly run longer than the one configured timeout.
            target.batch("SET LOCAL statement_timeout = 0")?;
        }
        for table in tables {
            let total = count(source, &table.name)?;
            progress.table_started(&table.name, total);
            let started = Instant::now();
            let rows = copy_table(source, writer, table, total, progress).map_err(|error| {
                TransferError::Copy {
                    table: table.name.clone(),
                    error,
                }
            })?;
            let elapsed = started.elapsed();
            progress.table_done(&table.name, rows, elapsed);
            report.tables.push(TableCopied {
                table: table.name.clone(),
                rows,
                elapsed,
            });
        }
        reset_identities(source, target)?;
        Ok(())
    })();
    match copied.and_then(|()| Ok(target.commit()?)) {
        Ok(()) => {}
        Err(err) => {
            let _ = target.rollback();
            return Err(err);
        }
    }
    let comparison = compare(source, target, tables)?;
    report.counts = comparison.counts;
    report.profiles_checked = comparison.profiles_checked;
    report.differences = comparison.differences;
    Ok(report)
}

/// Copies `source` into the PostgreSQL database `target`: brings it to the hub's schema
/// first ([`Database::open`](super::Database::open)), then [`transfer`]s by binary COPY.
pub fn into_postgres(
    source: &dyn Sql,
    target: &crate::config::PostgresUrl,
    options: &super::DatabaseOptions,
    progress: &mut dyn TransferProgress,
) -> Result<TransferReport, TransferError> {
    drop(super::Database::open(
        &crate::config::DatabaseUrl::Postgres(target.clone()),
        options,
    )?);
    let writer = super::postgres::copy::BinaryCopy::connect(target, options.timeout)?;
    transfer(source, &writer, progress)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{for_each_engine, sqlite};

    #[test]
    fn tables_come_after_the_tables_their_foreign_keys_name() {
        for_each_engine(|db| {
            let conn = db.get().unwrap();
            let listed = tables(&*conn).unwrap();
            assert!(listed.len() > 25, "{listed:?}");
            let ordered = dependency_order(&*conn, listed).unwrap();
            let at = |name: &str| ordered.iter().position(|t| t.name == name).unwrap();
            for child in ["identifiers", "consents", "orders", "transactions"] {
                assert!(at("profiles") < at(child), "{child}");
            }
        });
    }

    #[test]
    fn a_copy_has_every_row_and_profile_and_goes_on_numbering_erasures() {
        let source = sqlite();
        let src = source.db.get().unwrap();
        src.batch(
            "INSERT INTO profiles (profile_id, created_at_ms, created_offset_min, first_name)
                 VALUES ('p1', 1, 60, 'Åsa'), ('p2', 2, 0, NULL);
             INSERT INTO identifiers VALUES ('card', '4006381333931', 'p1', 'till', 5);
             INSERT INTO consents VALUES ('p1', 'email', 1, 'crm', 7);
             INSERT INTO transactions (store, till, seq, at_ms, offset_min, profile_id,
                 total_cents, currency, lines) VALUES ('S1', 'T1', 1, 9, 0, 'p1', 129, 'EUR', x'0102');
             INSERT INTO agents VALUES ('S1', 'T1', 1, 10, x'00');
             INSERT INTO erasures (erased_at_ms) VALUES (11), (12);
             DELETE FROM erasures WHERE version = 2;",
        )
        .unwrap();
        for_each_engine(|target_db| {
            let target = target_db.get().unwrap();
            let report = transfer(&*src, &Inserts(&*target), &mut Silent).unwrap();
            assert_eq!(report.differences, Vec::<String>::new());
            assert_eq!(report.profiles_checked, 2);
            assert!(report.counts.iter().all(|(_, a, b)| a == b));
            assert_eq!(count(&*target, "transactions").unwrap(), 1);
            // The next erasure is numbered after the source's last one, deleted or not.
            let next: i64 = target
                .query_value(
                    "INSERT INTO erasures (erased_at_ms) VALUES (13) RETURNING version",
                    sql_params![],
                )
                .unwrap()
                .unwrap();
            assert_eq!(next, 3);
            // A target holding a row is refused, naming the table.
            let again = transfer(&*src, &Inserts(&*target), &mut Silent).unwrap_err();
            assert!(
                matches!(&again, TransferError::TargetNotEmpty { rows, .. } if *rows > 0),
                "{again}"
            );
        });
    }

    #[test]
    fn a_changed_profile_row_is_a_difference_naming_the_profile() {
        let source = sqlite();
        let src = source.db.get().unwrap();
        src.batch(
            "INSERT INTO profiles (profile_id, created_at_ms, created_offset_min)
                 VALUES ('p1', 1, 0), ('p2', 2, 0);
             INSERT INTO consents VALUES ('p2', 'sms', 0, 'api', 3);",
        )
        .unwrap();
        for_each_engine(|target_db| {
            let target = target_db.get().unwrap();
            let report = transfer(&*src, &Inserts(&*target), &mut Silent).unwrap();
            assert!(report.differences.is_empty(), "{:?}", report.differences);
            target
                .execute(
                    "UPDATE consents SET granted = 1 WHERE profile_id = 'p2'",
                    sql_params![],
                )
                .unwrap();
            let all = tables(&*src).unwrap();
            let Comparison {
                profiles_checked,
                differences,
                ..
            } = compare(&*src, &*target, &all).unwrap();
            assert_eq!(profiles_checked, 2);
            assert_eq!(differences.len(), 1, "{differences:?}");
            assert!(differences[0].starts_with("profile p2:"), "{differences:?}");
        });
    }
}
