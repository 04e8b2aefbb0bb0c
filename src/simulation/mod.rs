//! Deterministic simulation of tills and hub: the real till core, journal (SQLite on
//! tmpfs), uplink conversation, hub session and store, driven by one seeded schedule
//! of shoppers, messages and faults under a simulated clock. One seed is one history;
//! the same seed replays it exactly. No thread, socket or timer: the world is a
//! priority queue of actions ordered by simulated time (then by insertion), and every
//! random choice comes from the seed.
//!
//! A run has a shopping phase (shoppers, network faults, crashes, clock jumps, a full
//! disk, erasures) and a healing phase (faults stop, everything comes back, the world
//! runs until every till has delivered its journal and applied every erasure). Then
//! the checkers of [`checks`] look at the hub and the tills. See ARCHITECTURE.md
//! ("The simulator") for what is real and what is re-enacted.

mod checks;
mod hub;
mod network;
mod till;
mod world;

pub use checks::Verdict;
pub use world::{run_seed, run_seed_with, SimOptions, SimReport};

/// The variable `cargo test` reads for the number of seeds of the sweep.
pub const SEEDS_VAR: &str = "TILL360_SIM_SEEDS";
/// The variable naming the first seed of the sweep (default 0).
pub const FIRST_SEED_VAR: &str = "TILL360_SIM_FIRST_SEED";
/// The variable naming one seed to replay (with its trace printed).
pub const SEED_VAR: &str = "TILL360_SIM_SEED";

/// The one-line command that replays `seed` exactly, with its trace.
pub fn replay_command(seed: u64) -> String {
    format!(
        "{SEED_VAR}={seed} cargo test -p till360 --test integration simulation::replay_one_seed -- --nocapture"
    )
}

/// One failed seed: why, and how to replay it.
#[derive(Debug, Clone)]
pub struct SeedFailure {
    pub seed: u64,
    pub problems: Vec<String>,
}

impl std::fmt::Display for SeedFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "seed {} failed:", self.seed)?;
        for p in self.problems.iter().take(10) {
            writeln!(f, "  - {p}")?;
        }
        if self.problems.len() > 10 {
            writeln!(f, "  - … {} more", self.problems.len() - 10)?;
        }
        write!(f, "  replay: {}", replay_command(self.seed))
    }
}

/// Runs `seed` and its checks; a panic anywhere in the real code counts as a failure.
pub fn check_seed(seed: u64, options: &SimOptions) -> Result<SimReport, SeedFailure> {
    let outcome =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_seed(seed, options)));
    match outcome {
        Ok(Ok(report)) if report.verdict.problems.is_empty() => Ok(report),
        Ok(Ok(report)) => Err(SeedFailure {
            seed,
            problems: report.verdict.problems,
        }),
        Ok(Err(e)) => Err(SeedFailure {
            seed,
            problems: vec![format!("the simulation could not run: {e:#}")],
        }),
        Err(panic) => {
            let text = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".to_string());
            Err(SeedFailure {
                seed,
                problems: vec![format!("panicked: {text}")],
            })
        }
    }
}

/// What a sweep found.
#[derive(Debug, Default)]
pub struct SweepReport {
    pub seeds: u64,
    pub failures: Vec<SeedFailure>,
    /// Simulated till-days run (tills × simulated days of each seed).
    pub till_days: f64,
    pub receipts: u64,
    pub events: u64,
    /// Faults injected, by kind, over all seeds.
    pub faults: std::collections::BTreeMap<&'static str, u64>,
}

/// A sweep stops taking new seeds after this many failures (each failing seed is one
/// replay away; a bug fails many).
pub const MAX_FAILURES: usize = 5;

/// Runs `count` seeds from `first` on `threads` threads (each seed is independent),
/// until [`MAX_FAILURES`] failed.
pub fn sweep(first: u64, count: u64, threads: usize, options: &SimOptions) -> SweepReport {
    let next = std::sync::atomic::AtomicU64::new(first);
    let end = first.saturating_add(count);
    let results = std::sync::Mutex::new(SweepReport::default());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let failed = results.lock().map_or(0, |r| r.failures.len());
                if seed >= end || failed >= MAX_FAILURES {
                    break;
                }
                let outcome = check_seed(seed, options);
                let mut all = results.lock().unwrap_or_else(|p| p.into_inner());
                all.seeds += 1;
                match outcome {
                    Ok(report) => {
                        all.till_days += report.till_days;
                        all.receipts += report.receipts;
                        all.events += report.events;
                        for (kind, n) in report.faults {
                            *all.faults.entry(kind).or_default() += n;
                        }
                    }
                    Err(failure) => all.failures.push(failure),
                }
            });
        }
    });
    let mut report = results.into_inner().unwrap_or_else(|p| p.into_inner());
    report.failures.sort_by_key(|f| f.seed);
    report
}

/// `till360 simulate`: a sweep from the command line (the nightly-style run), or one
/// seed replayed with its trace.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// How many seeds to run.
    #[arg(long, default_value_t = 1_000)]
    pub seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    pub first: u64,
    /// Replay this one seed and print its trace (ignores --seeds and --first).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Threads (default: the machine's cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Simulated shopping hours per seed.
    #[arg(long, default_value_t = SimOptions::default().shopping_hours)]
    pub hours: u32,
    /// Also run the same seeds without faults and print that rate beside (the cost of
    /// the faults and the healing, against the same tills and shoppers).
    #[arg(long)]
    pub baseline: bool,
}

/// Runs `till360 simulate`; exit 1 when a seed fails.
pub fn simulate_command(args: SimulateArgs) -> std::process::ExitCode {
    let options = SimOptions {
        shopping_hours: args.hours,
        trace: args.seed.is_some(),
        ..SimOptions::default()
    };
    if let Some(seed) = args.seed {
        return match check_seed(seed, &options) {
            Ok(report) => {
                for line in &report.trace {
                    println!("{line}");
                }
                println!(
                    "seed {seed}: passed ({} tills, {} receipts, {} events, faults {:?})",
                    report.tills, report.receipts, report.events, report.faults
                );
                std::process::ExitCode::SUCCESS
            }
            Err(failure) => {
                if let Ok(report) = run_seed(seed, &options) {
                    for line in &report.trace {
                        println!("{line}");
                    }
                }
                eprintln!("{failure}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let started = std::time::Instant::now();
    let report = sweep(args.first, args.seeds, threads, &options);
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{} seeds from {} in {elapsed:.1} s on {threads} threads: {:.0} simulated till-days, \
         {} receipts, {} events; {:.0} till-days per wall minute; {} failed",
        report.seeds,
        args.first,
        report.till_days,
        report.receipts,
        report.events,
        report.till_days / elapsed * 60.0,
        report.failures.len()
    );
    if args.baseline {
        let quiet = SimOptions {
            faults: false,
            ..options.clone()
        };
        let started = std::time::Instant::now();
        let base = sweep(args.first, args.seeds, threads, &quiet);
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "baseline, the same seeds without faults: {:.1} s, {:.0} till-days, {} receipts; \
             {:.0} till-days per wall minute; {} failed",
            elapsed,
            base.till_days,
            base.receipts,
            base.till_days / elapsed * 60.0,
            base.failures.len()
        );
    }
    for failure in &report.failures {
        eprintln!("{failure}");
    }
    if report.failures.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
