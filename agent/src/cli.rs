//! Command line: `till360-agent run --config agent.toml`,
//! `till360-agent status --config agent.toml [--json]` and
//! `till360-agent doctor --config agent.toml [--seconds N] [--json]` and
//! `till360-agent check --config agent.toml [--json]`.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{AgentConfig, ConfigError};
use crate::journal::{Journal, JournalError, JournalStatus};
use crate::layout::LayoutError;
use crate::uplink::TlsConfigError;

#[derive(Debug, Parser)]
#[command(
    name = "till360-agent",
    version,
    about = "Till360 agent: scanner, ESC/POS proxy, journal, uplink"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Proxy the POS to the printer, journal cards and receipts, sync to the hub.
    Run {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Show the journal: store/till, last and acknowledged seq, pending events.
    Status {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check agent.toml and the files, devices and folders it names; open and create
    /// nothing. Every problem on its own line; exit 0 when all is well, 78 otherwise.
    Check {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Print one JSON object instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Open every configured port, listen, and report what each one sends.
    Doctor {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// How long to listen on the ports.
        #[arg(long, value_name = "N", default_value_t = crate::doctor::DEFAULT_LISTEN.as_secs())]
        seconds: u64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Exit code for a bad config file (1 is every other failure).
const EXIT_BAD_CONFIG: u8 = 2;

/// Runs the agent's command line; `args` includes the program name.
pub fn main_with_args(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_BAD_CONFIG)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if let Command::Check { config, json } = &cli.command {
        let problems = crate::config_check::check_agent(config);
        let mut out = std::io::stdout().lock();
        return match crate::config_check::print_report(config, &problems, *json, &mut out) {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("error: cannot write the report: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let result = match cli.command {
        Command::Run { config } => run(&config),
        Command::Status { config, json } => status(&config, json),
        Command::Doctor {
            config,
            seconds,
            json,
        } => doctor(&config, seconds, json),
        Command::Check { .. } => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            if is_config_error(&e) {
                ExitCode::from(EXIT_BAD_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn is_config_error(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause.is::<ConfigError>()
            || cause.is::<TlsConfigError>()
            || cause.is::<LayoutError>()
            || matches!(
                cause.downcast_ref::<JournalError>(),
                Some(JournalError::AgentMismatch { .. })
            )
    })
}

fn report(e: &anyhow::Error) {
    let mut err = std::io::stderr().lock();
    let mut shown = e.to_string();
    let _ = writeln!(err, "error: {shown}");
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        // Many messages already end with their source's text: don't say it twice.
        if !shown.contains(&text) {
            let _ = writeln!(err, "  caused by: {text}");
        }
        shown = text;
    }
}

fn init_tracing(config: Option<&AgentConfig>) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        let directive = config.and_then(|c| c.log.as_deref()).unwrap_or("info");
        EnvFilter::try_new(directive).unwrap_or_else(|_| EnvFilter::new("info"))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let json = config.is_some_and(|c| c.log_format == crate::config::LogFormat::Json);
    // Ignore "already set": the root package's passthrough may have installed one.
    let _ = if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .try_init()
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init()
    };
}

fn run(config_path: &Path) -> anyhow::Result<()> {
    let config = AgentConfig::load(config_path)?;
    init_tracing(Some(&config));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("till360-agent")
        .build()?;
    runtime.block_on(crate::runtime::run(config, shutdown_signal()))
}

/// Resolves on Ctrl-C or SIGTERM (how systemd stops the agent).
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!("cannot listen for SIGTERM: {e}; only Ctrl-C stops the agent");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("stopping");
}

fn status(config_path: &Path, json: bool) -> anyhow::Result<()> {
    let config = AgentConfig::load(config_path)?;
    init_tracing(Some(&config));
    let mut journal = Journal::open_existing(&config.data_dir, &config.agent_id())?;
    journal.set_max_bytes(config.journal.max_bytes);
    let status = journal.status()?;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&status)?)?;
    } else {
        write!(out, "{}", status_text(&status))?;
    }
    Ok(())
}

fn doctor(config_path: &Path, seconds: u64, json: bool) -> anyhow::Result<()> {
    let config = AgentConfig::load(config_path)?;
    init_tracing(Some(&config));
    let report = crate::doctor::examine(&config, std::time::Duration::from_secs(seconds));
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write!(out, "{}", report.to_text())?;
    }
    out.flush()?;
    let problems = report.problems();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(anyhow::anyhow!("{}", problems.join("; ")))
    }
}

/// The text form of `status`, one `key: value` per line.
pub fn status_text(status: &JournalStatus) -> String {
    let oldest = status
        .oldest_pending_at
        .map_or_else(|| "-".to_string(), |t| t.to_rfc3339());
    format!(
        "store: {}\ntill: {}\nlast_seq: {}\nacked_seq: {}\npending: {}\noldest_pending: {}\n\
         erasure_version: {}\ncampaign_version: {}\ndigests: {}\ndigest_version: {}\n\
         quarantined: {}\nbytes: {}\nmax_bytes: {}\nquota_exceeded: {}\nchain_head: {}\n\
         unbalanced_receipts: {}\nunrecognised_scans: {}\n",
        status.store,
        status.till,
        status.last_seq,
        status.acked_seq,
        status.pending,
        oldest,
        status.erasure_version,
        status.campaign_set.as_deref().unwrap_or("none"),
        status.digests,
        status.digest_version,
        status.quarantined,
        status.bytes,
        status.max_bytes,
        status.quota_exceeded,
        status.chain_head,
        status.unbalanced_receipts,
        status.unrecognised_scans
    )
}
