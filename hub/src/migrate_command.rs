//! `till360-hub migrate --config hub.toml --to postgres://USER@HOST:PORT/DB`: copies the
//! hub's SQLite database into an empty PostgreSQL database (`store/transfer.rs` does the
//! copy and the check), with progress on stderr. Every message shows the target URL
//! without its password.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::{DatabaseUrl, HubConfig, PostgresUrl};
use crate::progress_bar::{Bar, Unit};
use crate::store::transfer::{self, TransferProgress, TransferReport};
use crate::store::{Database, DatabaseOptions};

/// Progress on stderr: a bar per table on a terminal (`progress_bar`), and a line per
/// table when it is done, also when stderr is not a terminal (logs stay readable).
pub struct MigrateProgress {
    bar: Bar,
}

impl MigrateProgress {
    pub fn new() -> Self {
        Self {
            bar: Bar::new("migrate", Unit::Items("rows"), None),
        }
    }
}

impl Default for MigrateProgress {
    fn default() -> Self {
        Self::new()
    }
}

fn rate(rows: u64, elapsed: Duration) -> f64 {
    rows as f64 / elapsed.as_secs_f64().max(1e-3)
}

impl TransferProgress for MigrateProgress {
    fn table_started(&mut self, table: &str, total: u64) {
        self.bar
            .phase(format!("migrate {table:<24}"), Unit::Items("rows"));
        self.bar.set(0, Some(total));
    }

    fn rows_copied(&mut self, _table: &str, done: u64, total: u64) {
        self.bar.set(done, Some(total));
    }

    fn table_done(&mut self, table: &str, rows: u64, elapsed: Duration) {
        self.bar.line(&format!(
            "migrate {table}: {rows} rows in {:.2} s ({:.0} rows/s)",
            elapsed.as_secs_f64(),
            rate(rows, elapsed)
        ));
    }
}

impl Drop for MigrateProgress {
    fn drop(&mut self) {
        self.bar.finish();
    }
}

/// The `--to` URL: PostgreSQL only. The error never repeats the URL past its scheme
/// (it may hold a password).
pub fn target_url(to: &str) -> Result<PostgresUrl, String> {
    if to.starts_with("postgres://") || to.starts_with("postgresql://") {
        return PostgresUrl::parse(to).map_err(|reason| format!("--to: {reason}"));
    }
    let scheme = to.split("://").next().unwrap_or_default();
    if scheme == "sqlite" {
        return Err(format!(
            "--to {to}: the target is SQLite; migrate copies a SQLite hub into PostgreSQL \
             (--to postgres://USER@HOST:PORT/DB)"
        ));
    }
    Err(format!(
        "--to {scheme:?}: expected a PostgreSQL URL, postgres://USER@HOST:PORT/DB"
    ))
}

/// Copies the database of the hub `config_path` describes into `to` and checks it.
pub fn migrate(
    config_path: &Path,
    to: &str,
    progress: &mut dyn TransferProgress,
) -> Result<(PostgresUrl, TransferReport), String> {
    let config = HubConfig::load(config_path).map_err(|e| e.to_string())?;
    let target = target_url(to)?;
    let source_path = match &config.database {
        DatabaseUrl::Sqlite(path) => path.clone(),
        DatabaseUrl::Postgres(url) => {
            return Err(format!(
                "{}: database.url = \"{url}\" is already PostgreSQL; migrate copies a SQLite \
                 hub's database into PostgreSQL",
                config.origin.display()
            ))
        }
    };
    if !source_path.is_file() {
        return Err(format!(
            "{}: the hub's database {} does not exist: nothing to migrate",
            config.origin.display(),
            source_path.display()
        ));
    }
    // No hub may write the source while it is copied (a hub holds this lock while it runs).
    let _lock = if config.data_dir.is_dir() {
        Some(crate::instance::HubLock::acquire(&config.data_dir).map_err(|e| e.to_string())?)
    } else {
        None
    };
    let options = DatabaseOptions {
        timeout: config.database_timeout,
        ..DatabaseOptions::default()
    };
    let source = Database::open(&config.database, &options).map_err(|e| {
        format!(
            "{}: database.url = \"{}\": cannot open the database: {e}",
            config.origin.display(),
            config.database
        )
    })?;
    let source_conn = source
        .get()
        .map_err(|e| format!("{}: {e}", source.name()))?;
    // An older hub's erasure log keeps cards in clear; the running hub hashes them when it
    // has the master secret, and the PostgreSQL schema has no column for them.
    let master_path = config.data_dir.join(crate::campaigns::MASTER_KEY_FILE);
    if master_path.exists() {
        let master = crate::campaigns::MasterKey::load_or_create(&config.data_dir)
            .map_err(|e| format!("{}: data_dir: {e}", config.origin.display()))?;
        let suppression = crate::store::erasures::Suppression::from_master(master.as_bytes());
        crate::store::erasures::hash_clear_erasures(&*source_conn, &suppression)
            .map_err(|e| format!("the erasure log: {e}"))?;
    }
    let report = transfer::into_postgres(&*source_conn, &target, &options, progress)
        .map_err(|e| format!("migrate {} → {target}: {e}", source.name()))?;
    Ok((target, report))
}

/// `till360-hub migrate`: exit 0 only when the copy holds every row and profile.
pub fn run(config_path: &Path, to: &str) -> ExitCode {
    let mut progress = MigrateProgress::new();
    let migrated = migrate(config_path, to, &mut progress);
    // The bar goes before the report is printed.
    drop(progress);
    let (target, report) = match migrated {
        Ok(done) => done,
        Err(err) => {
            eprintln!("till360-hub: {err}");
            return ExitCode::FAILURE;
        }
    };
    let rows = report.rows();
    let seconds = report.copy_time().as_secs_f64();
    println!(
        "copied {rows} rows of {} tables into {target} in {seconds:.1} s ({:.0} rows/s)",
        report.tables.len(),
        rate(rows, report.copy_time())
    );
    for (table, source, copied) in &report.counts {
        let mark = if source == copied { "ok" } else { "DIFFERENT" };
        println!("  {table:<24} {source:>10} {copied:>10}  {mark}");
    }
    if report.differences.is_empty() {
        println!(
            "checked: every table's row count and {} profiles' checksums are equal; \
             set [database] url = \"{target}\" in {} and start the hub",
            report.profiles_checked,
            config_path.display()
        );
        ExitCode::SUCCESS
    } else {
        for difference in &report.differences {
            eprintln!("till360-hub: migrate: {difference}");
        }
        eprintln!(
            "till360-hub: migrate: {} difference(s) between the source and {target}: do not \
             switch the hub to it",
            report.differences.len()
        );
        ExitCode::FAILURE
    }
}
