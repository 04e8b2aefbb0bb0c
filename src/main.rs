//! `till360`: the demo, plus hidden passthroughs to the agent and hub command lines so
//! tests can run real agent and hub processes from this one binary.

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
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    // Passthroughs take the rest of the line as the other binary would see it.
    match args.get(1).and_then(|a| a.to_str()) {
        Some("agent") => {
            let rest =
                std::iter::once(OsString::from("till360-agent")).chain(args[2..].iter().cloned());
            return till360_agent::cli::main_with_args(rest);
        }
        Some("hub") => {
            let rest =
                std::iter::once(OsString::from("till360-hub")).chain(args[2..].iter().cloned());
            return till360_hub::cli::main_with_args(rest);
        }
        _ => {}
    }
    let cli = Cli::parse_from(args);
    match cli.command {
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
