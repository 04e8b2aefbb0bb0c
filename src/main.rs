//! `till360`: the demo, plus passthroughs to the agent and hub command lines, so one
//! binary runs real agent and hub processes (the tests use it).

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "till360",
    version,
    about = "Till360: demo of agents, tills and a hub"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a hub and two simulated tills, play a morning of shopping, show profiles.
    Demo(till360::demo::DemoArgs),
    /// Simulate N tills sending R receipts each to a running hub; print one JSON line.
    Loadgen(till360::loadgen::LoadgenArgs),
    /// Deterministic simulation: run seeds of tills and hub under faults, check each
    /// history, print the failing seeds with their replay commands.
    Simulate(till360::simulation::SimulateArgs),
    /// The hub's command line, as `till360-hub` (see `till360 hub --help`).
    Hub {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// The agent's command line, as `till360-agent` (see `till360 agent --help`).
    Agent {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    // Passthroughs take the rest of the line as the other binary would see it (their
    // `--help` too); clap only lists them.
    match args.get(1).and_then(|a| a.to_str()) {
        Some("agent") => return agent(&args[2..]),
        Some("hub") => return hub(&args[2..]),
        _ => {}
    }
    let cli = Cli::parse_from(args);
    match cli.command {
        Command::Hub { args } => hub(&args),
        Command::Agent { args } => agent(&args),
        Command::Loadgen(loadgen_args) => {
            init_tracing();
            match till360::loadgen::main(loadgen_args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Simulate(simulate_args) => till360::simulation::simulate_command(simulate_args),
        Command::Demo(demo_args) => {
            init_tracing();
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(till360::demo::run(demo_args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn hub(args: &[OsString]) -> ExitCode {
    let rest = std::iter::once(OsString::from("till360-hub")).chain(args.iter().cloned());
    till360_hub::cli::main_with_args(rest)
}

fn agent(args: &[OsString]) -> ExitCode {
    let rest = std::iter::once(OsString::from("till360-agent")).chain(args.iter().cloned());
    till360_agent::cli::main_with_args(rest)
}

/// Warnings only by default, so the demo's own output stays readable; RUST_LOG wins.
fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
