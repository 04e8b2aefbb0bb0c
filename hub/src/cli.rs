//! The `till360-hub` command line (binding, DESIGN.md). `main.rs` calls only
//! [`main_with_args`]; tests call it in-process too.

use std::ffi::OsString;
use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use till360_shared::Timestamp;

use crate::config::HubConfig;
use crate::import::{self, progress::ProgressLine, ImportError};
use crate::store::erasures::Suppression;
use crate::store::sql::Sql;
use crate::{pki, server};

#[derive(Parser, Debug)]
#[command(
    name = "till360-hub",
    version,
    about = "Till360 hub: merges till events into customer profiles"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The hub's certificate authority.
    Ca {
        #[command(subcommand)]
        action: CaAction,
    },
    /// Run the hub (QUIC listener + HTTP API) until Ctrl-C or SIGTERM.
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// Check hub.toml and the files it names (TLS, campaigns, segments); start nothing,
    /// create nothing.
    Check {
        #[arg(long)]
        config: PathBuf,
        /// Print one JSON object instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Import CRM customers, online orders or products from a file.
    Import {
        kind: ImportKind,
        file: PathBuf,
        #[arg(long)]
        config: PathBuf,
    },
    /// Customer traits (RFM, p_alive, CLV, churn risk).
    Traits {
        #[command(subcommand)]
        action: TraitsAction,
    },
    /// Copy the hub's SQLite database into an empty PostgreSQL database and check the copy.
    Migrate {
        #[arg(long)]
        config: PathBuf,
        /// The target: postgres://USER@HOST:PORT/DB (password from the URL or PGPASSWORD).
        #[arg(long)]
        to: String,
    },
    /// Write a consistent backup of a running (or stopped) SQLite hub to one file.
    ///
    /// One tar (mode 0600): an online copy of the database, the coupon master secret, the QUIC reset
    /// key and the PKI files (CA certificate and key, hub certificate and key,
    /// revoked.toml, epochs.toml), with a manifest of their sha256. On PostgreSQL it
    /// refuses and says what to back up instead (pg_dump plus the files).
    Backup {
        /// The hub's hub.toml (its database, data_dir and TLS files).
        #[arg(long)]
        config: PathBuf,
        /// The archive to write (must not exist; written as FILE.tmp, then renamed).
        #[arg(long)]
        out: PathBuf,
    },
    /// Put a backup into an empty data folder (a new or rebuilt hub).
    ///
    /// The database, the secrets and the PKI
    /// files go where hub.toml says, after every member's sha256 is checked. Refuses a
    /// non-empty data folder and every file that already exists.
    Restore {
        /// The new hub's hub.toml: every file goes where it says.
        #[arg(long)]
        config: PathBuf,
        /// The archive `backup` wrote.
        #[arg(long)]
        from: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum TraitsAction {
    /// Write traits as of the end of a date as CSV (standard output or --out).
    Export {
        #[arg(long)]
        config: PathBuf,
        /// Only events up to the end of this day count (YYYY-MM-DD).
        #[arg(long = "as-of")]
        as_of: chrono::NaiveDate,
        #[arg(long = "horizon-days")]
        horizon_days: u32,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Score every candidate purchase model on the data the hub holds: fitted on the
    /// purchases up to the end of --split, compared with each customer's purchase days
    /// in the --horizon-days after it (MAE, RMSE, totals, top-10 % precision), and the
    /// model the hub would have chosen then.
    Backtest {
        #[arg(long)]
        config: PathBuf,
        /// The last day of the calibration window (YYYY-MM-DD).
        #[arg(long)]
        split: chrono::NaiveDate,
        #[arg(long = "horizon-days", value_parser = clap::value_parser!(u32).range(1..))]
        horizon_days: u32,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Recompute traits and segments now (a running hub also does after every import
    /// and on its schedule, and passes the result on to the tills).
    Recompute {
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum CaAction {
    /// Create PKI/ca.pem ca.key hub.pem hub.key.
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// DNS name of the hub (repeatable).
        #[arg(long = "name", default_values = ["localhost"])]
        names: Vec<String>,
        /// IP address of the hub (repeatable).
        #[arg(long = "ip", default_values_t = [IpAddr::V4(Ipv4Addr::LOCALHOST)])]
        ips: Vec<IpAddr>,
        /// Replace an existing CA (every issued agent certificate stops working).
        #[arg(long)]
        force: bool,
    },
    /// Issue an agent certificate: OUT/ca.pem agent.pem agent.key.
    Issue {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        store: String,
        #[arg(long)]
        till: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Revoke a till's certificates (or one, by --serial) in PKI/revoked.toml; a running
    /// hub refuses them within a second, also on open connections.
    Revoke {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        store: String,
        #[arg(long)]
        till: String,
        /// Only the certificate with this serial (hex, as `ca issue` printed it).
        /// Without it: every certificate issued so far for the till; a certificate
        /// issued later (re-provisioning) works.
        #[arg(long)]
        serial: Option<String>,
        /// Why (kept in the list and told to the refused agent).
        #[arg(long, default_value = "")]
        reason: String,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum ImportKind {
    Customers,
    Orders,
    Products,
}

/// Parses `args` (including the program name) and runs the command.
pub fn main_with_args(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(2));
        }
    };
    match cli.command {
        Command::Ca { action } => run_ca(action),
        Command::Run { config } => run_hub(config),
        Command::Check { config, json } => run_check(&config, json),
        Command::Import { kind, file, config } => run_import(kind, &file, &config),
        Command::Traits {
            action:
                TraitsAction::Export {
                    config,
                    as_of,
                    horizon_days,
                    out,
                },
        } => run_traits_export(&config, as_of, horizon_days, out.as_deref()),
        Command::Traits {
            action:
                TraitsAction::Backtest {
                    config,
                    split,
                    horizon_days,
                    json,
                },
        } => run_traits_backtest(&config, split, horizon_days, json),
        Command::Traits {
            action: TraitsAction::Recompute { config },
        } => run_traits_recompute(&config),
        Command::Migrate { config, to } => crate::migrate_command::run(&config, &to),
        Command::Backup { config, out } => run_backup(&config, &out),
        Command::Restore { config, from } => run_restore(&config, &from),
    }
}

/// The hub's database (traits export and recompute).
fn open_database(config: &HubConfig) -> Result<crate::store::Database, String> {
    crate::store::Database::open(&config.database, &crate::store::DatabaseOptions::default())
        .map_err(|e| format!("cannot open the store {}: {e}", config.database))
}

/// Counts the bytes the import has consumed, for the progress bar.
struct CountingReader<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

fn run_import(kind: ImportKind, file: &Path, config_path: &Path) -> ExitCode {
    let name = format!("{kind:?}").to_lowercase();
    let config = match HubConfig::load(config_path) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("till360-hub: {err}");
            return ExitCode::FAILURE;
        }
    };
    let db = match server::open_database(&config) {
        Ok(db) => db,
        Err(err) => {
            eprintln!("till360-hub: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    // Erased people stay out of imports: the suppression list's key derives from the
    // master secret (given to the store too, which hashes an older hub's clear erasure
    // log first). No key file yet: nobody was erased on this hub.
    let master_path = config.data_dir.join(crate::campaigns::MASTER_KEY_FILE);
    let suppression = if master_path.exists() {
        let master = match crate::campaigns::MasterKey::load_or_create(&config.data_dir) {
            Ok(master) => master,
            Err(err) => {
                eprintln!("till360-hub: {}: data_dir: {err}", config_path.display());
                return ExitCode::FAILURE;
            }
        };
        let suppression = Suppression::from_master(master.as_bytes());
        let converted = db
            .get()
            .and_then(|conn| crate::store::erasures::hash_clear_erasures(&*conn, &suppression))
            .map_err(|e| e.to_string());
        if let Err(err) = converted {
            eprintln!("till360-hub: the erasure log: {err}");
            return ExitCode::FAILURE;
        }
        Some(suppression)
    } else {
        None
    };
    let opened = match std::fs::File::open(file) {
        Ok(f) => f,
        Err(err) => {
            eprintln!("till360-hub: {}: {err}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let size = opened.metadata().ok().map(|m| m.len());
    let consumed = Arc::new(AtomicU64::new(0));
    let reader = BufReader::new(CountingReader {
        inner: opened,
        read: Arc::clone(&consumed),
    });
    let mut bar = ProgressLine::new(format!("import {name}"), size);
    let mut progress = |records: u64| bar.update(records, consumed.load(Ordering::Relaxed));
    let now = Timestamp::from_utc(chrono::Utc::now(), 0);
    let conn = match db.get() {
        Ok(conn) => conn,
        Err(err) => {
            eprintln!(
                "till360-hub: {}: database.url: {err}",
                config_path.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let conn: &dyn Sql = &*conn;
    let result = match kind {
        ImportKind::Customers => {
            let s = suppression.as_ref();
            import::customers_with_progress(conn, reader, &config.identity, s, now, &mut progress)
        }
        ImportKind::Orders => {
            let s = suppression.as_ref();
            import::orders_with_progress(conn, reader, &config.identity, s, now, &mut progress)
        }
        ImportKind::Products => import::products_with_progress(conn, reader, now, &mut progress),
    };
    bar.finish();
    match result {
        Ok(summary) => {
            println!("import {name} {}: {summary}", file.display());
            ExitCode::SUCCESS
        }
        Err(ImportError::Rejected(summary)) => {
            eprintln!(
                "till360-hub: import {name} {}: NOT applied, nothing was written ({} bad line(s)); without them: {summary}",
                file.display(),
                summary.rejected.len()
            );
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("till360-hub: import {name} {}: {err}", file.display());
            ExitCode::FAILURE
        }
    }
}

fn run_traits_export(
    config_path: &Path,
    as_of: chrono::NaiveDate,
    horizon_days: u32,
    out: Option<&Path>,
) -> ExitCode {
    let result = (|| -> Result<crate::jobs::ExportSummary, String> {
        let config = HubConfig::load(config_path).map_err(|e| e.to_string())?;
        let segments = crate::segments::compile(&config.segments)
            .map_err(|e| format!("{}: {e}", config.origin.display()))?;
        let database = open_database(&config)?;
        let conn = database.get().map_err(|e| e.to_string())?;
        let file: Box<dyn Write> = match out {
            Some(path) => Box::new(BufWriter::new(
                std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?,
            )),
            None => Box::new(BufWriter::new(std::io::stdout().lock())),
        };
        // The bar counts the CSV lines written (the customers, after the header).
        let bar = crate::progress_bar::Bar::new(
            "traits export",
            crate::progress_bar::Unit::Items("lines"),
            None,
        );
        let mut sink = LineCounter {
            inner: file,
            lines: 0,
            bar: &bar,
        };
        // Segments are evaluated as of the date too, so a back-test sees what the
        // marketer would have seen then.
        let summary = crate::jobs::export_csv_with_segments(
            &*conn,
            &config.traits,
            &segments,
            as_of,
            horizon_days,
            &mut sink,
        )
        .map_err(|e| e.to_string())?;
        sink.flush().map_err(|e| e.to_string())?;
        bar.finish();
        Ok(summary)
    })();
    match result {
        Ok(summary) => {
            eprintln!(
                "traits export: {} customers as of {as_of}",
                summary.customers
            );
            for note in &summary.models.notes {
                eprintln!("traits export: note: {note}");
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("till360-hub: traits export: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run_traits_backtest(
    config_path: &Path,
    split: chrono::NaiveDate,
    horizon_days: u32,
    json: bool,
) -> ExitCode {
    let result = (|| -> Result<crate::traits::backtest::Backtest, String> {
        let config = HubConfig::load(config_path).map_err(|e| e.to_string())?;
        let database = open_database(&config)?;
        let conn = database.get().map_err(|e| e.to_string())?;
        crate::jobs::traits_backtest(&*conn, split, horizon_days).map_err(|e| e.to_string())
    })();
    let report = match result {
        Ok(report) => report,
        Err(err) => {
            eprintln!("till360-hub: traits backtest: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    let written = if json {
        serde_json::to_writer_pretty(&mut out, &report)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        crate::traits::backtest::write_table(&report, &mut out)
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("till360-hub: traits backtest: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Counts the lines written through it onto a progress bar.
struct LineCounter<'a, W> {
    inner: W,
    lines: u64,
    bar: &'a crate::progress_bar::Bar,
}

impl<W: Write> Write for LineCounter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        let newlines = buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
        if newlines > 0 {
            self.lines += newlines;
            self.bar.position(self.lines);
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn run_traits_recompute(config_path: &Path) -> ExitCode {
    let result = (|| -> Result<crate::jobs::RecomputeSummary, String> {
        let config = HubConfig::load(config_path).map_err(|e| e.to_string())?;
        let database = open_database(&config)?;
        let conn = database.get().map_err(|e| e.to_string())?;
        let now = Timestamp::from_utc(chrono::Utc::now(), 0);
        crate::jobs::recompute(&*conn, &config, now).map_err(|e| e.to_string())
    })();
    match result {
        Ok(summary) => {
            println!(
                "traits recomputed: {} profiles, segments {}",
                summary.profiles,
                summary
                    .segments
                    .iter()
                    .map(|(id, n)| format!("{id} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("till360-hub: traits recompute: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run_ca(action: CaAction) -> ExitCode {
    let result = match action {
        CaAction::Init {
            dir,
            names,
            ips,
            force,
        } => pki::init_ca(&dir, &names, &ips, force).map(|()| {
            println!(
                "CA and hub certificate written to {} (names {names:?}, addresses {ips:?})",
                dir.display()
            );
        }),
        CaAction::Issue {
            dir,
            store,
            till,
            out,
        } => pki::issue_agent(&dir, &store, &till, &out).map(|issued| {
            println!(
                "certificate for {store}/{till} (epoch {}, serial {}) written to {}",
                issued.epoch,
                issued.serial,
                out.display()
            );
        }),
        CaAction::Revoke {
            dir,
            store,
            till,
            serial,
            reason,
        } => pki::revoke(&dir, &store, &till, serial.as_deref(), &reason).map(|outcome| {
            let list = pki::revocation_list_path(&dir);
            match outcome {
                pki::RevokeOutcome::Added(entry) => {
                    println!("{}: {}", list.display(), entry.describe());
                }
                pki::RevokeOutcome::AlreadyRevoked(entry) => {
                    println!(
                        "{}: already there, nothing changed: {}",
                        list.display(),
                        entry.describe()
                    );
                }
            }
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("till360-hub: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run_check(config_path: &Path, json: bool) -> ExitCode {
    let problems = crate::config_check::check_hub(config_path);
    let mut out = std::io::stdout().lock();
    match crate::config_check::print_report(config_path, &problems, json, &mut out) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("till360-hub: cannot write the report: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to standard error as `log` and `log_format` say (RUST_LOG overrides `log`).
fn init_tracing(config: &HubConfig) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        let directive = config.log.as_deref().unwrap_or("info");
        EnvFilter::try_new(directive).unwrap_or_else(|_| EnvFilter::new("info"))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // "Already set" is ignored: an in-process caller (tests, the demo) may have one.
    let _ = match config.log_format {
        crate::config::LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        crate::config::LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
    };
}

fn run_hub(config_path: PathBuf) -> ExitCode {
    let config = match HubConfig::load(&config_path) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("till360-hub: {err}");
            return ExitCode::FAILURE;
        }
    };
    init_tracing(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("till360-hub: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match server::start(config).await {
            Ok(hub) => {
                hub.wait().await;
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("till360-hub: {err:#}");
                ExitCode::FAILURE
            }
        }
    })
}

fn backup_bar_step(
    bar: &mut crate::progress_bar::Bar,
    phase: &mut u8,
    step: crate::backup::Progress,
) {
    use crate::backup::Progress;
    use crate::progress_bar::Unit;
    match step {
        Progress::Pages { done, total } => {
            if *phase != 1 {
                *phase = 1;
                bar.phase("copy the database", Unit::Items("pages"));
            }
            bar.set(done, Some(total));
        }
        Progress::Bytes { done, total } => {
            if *phase != 2 {
                *phase = 2;
                bar.phase("archive", Unit::Bytes);
            }
            bar.set(done, Some(total));
        }
    }
}

fn run_backup(config_path: &Path, out: &Path) -> ExitCode {
    let config = match HubConfig::load(config_path) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("till360-hub: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut bar = crate::progress_bar::Bar::new("backup", crate::progress_bar::Unit::Bytes, None);
    let mut phase = 0;
    let result = crate::backup::backup(&config, out, &mut |step| {
        backup_bar_step(&mut bar, &mut phase, step)
    });
    bar.finish();
    match result {
        Ok(summary) => {
            let bytes: u64 = summary.manifest.members.values().map(|m| m.bytes).sum();
            println!(
                "backup {}: {} members, {bytes} bytes, schema {}",
                summary.out.display(),
                summary.manifest.members.len(),
                summary.manifest.schema_version
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("till360-hub: backup: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run_restore(config_path: &Path, from: &Path) -> ExitCode {
    let config = match HubConfig::load(config_path) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("till360-hub: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut bar = crate::progress_bar::Bar::new("restore", crate::progress_bar::Unit::Bytes, None);
    let mut phase = 0;
    let result = crate::backup::restore(&config, from, &mut |step| {
        backup_bar_step(&mut bar, &mut phase, step)
    });
    bar.finish();
    match result {
        Ok(summary) => {
            println!(
                "restored {} (taken {}, schema {}):",
                from.display(),
                summary.manifest.created_at,
                summary.manifest.schema_version
            );
            for path in &summary.written {
                println!("  {}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("till360-hub: restore: {err}");
            ExitCode::FAILURE
        }
    }
}
