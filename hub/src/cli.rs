//! The `till360-hub` command line (binding, DESIGN.md). `main.rs` calls only
//! [`main_with_args`]; tests call it in-process too.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::HubConfig;
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
    /// Import CRM customers, online orders or products from a file.
    Import {
        kind: ImportKind,
        file: PathBuf,
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
        Command::Import { kind, .. } => {
            let kind = format!("{kind:?}").to_lowercase();
            eprintln!("till360-hub import {kind}: not implemented yet");
            ExitCode::from(2)
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
        } => pki::issue_agent(&dir, &store, &till, &out).map(|()| {
            println!(
                "certificate for {store}/{till} written to {}",
                out.display()
            );
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

fn run_hub(config_path: PathBuf) -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let config = match HubConfig::load(&config_path) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("till360-hub: {err}");
            return ExitCode::FAILURE;
        }
    };
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
