//! No log line of the hub or a till carries a full card number, an e-mail, a phone
//! number or a name (issue 10 item 6): the demo runs as a real process with our crates
//! logging at debug level, and everything it logged is searched for every identifier
//! its back office and its morning used.
//!
//! Every tracing line goes to stderr; stdout is the demo's report, which by design shows
//! the busiest customer's profile as the API serves it to an authorised caller, so it is
//! not searched.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use till360::sim::{BackOffice, Morning, MorningPlan, Scan, StoreSetup};

const SEED: u64 = 42;
const RECEIPTS: usize = 60;
/// The demo ends by itself (`--exit`); this bounds a hang.
const DEMO_DEADLINE: Duration = Duration::from_secs(240);
const LOG_LEVELS: &str =
    "warn,till360=debug,till360_agent=debug,till360_hub=debug,till360_shared=debug";

/// What must never be logged, with what it is (for the failure message).
fn secrets() -> Vec<(&'static str, String)> {
    let stores = StoreSetup::demo_stores();
    let morning = Morning::generate(&MorningPlan::new(SEED, RECEIPTS), &stores);
    let office = BackOffice::generate(&morning, SEED, chrono::Local::now().date_naive());
    let mut cards = BTreeSet::new();
    for visit in &morning.visits {
        cards.extend(visit.card.clone());
        for scan in &visit.scans {
            if let Scan::Card(code) | Scan::BadCheckDigit(code) = scan {
                cards.insert(code.clone());
            }
        }
    }
    let mut out = Vec::new();
    for customer in &office.customers {
        cards.extend(customer.cards.iter().cloned());
        out.push(("e-mail", customer.email.clone()));
        out.push((
            "name",
            format!("{} {}", customer.first_name, customer.last_name),
        ));
        if let Some(phone) = &customer.phone {
            out.push(("phone", phone.clone()));
            let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
            out.push(("phone (digits)", digits.clone()));
            // The E.164 form the hub normalises Dutch numbers to.
            if let Some(national) = digits.strip_prefix('0') {
                out.push(("phone (E.164)", format!("+31{national}")));
            }
        }
    }
    for order in &office.orders {
        out.push(("e-mail", order.email.clone()));
    }
    // A card's first twelve digits are the card whatever the check digit: a misread
    // scan logged in full gives the card away as well.
    for card in cards {
        out.push(("card", card[..card.len() - 1].to_string()));
    }
    out.sort();
    out.dedup();
    out
}

/// Runs `till360 demo --exit` in `dir` and returns its stderr.
fn run_demo(dir: &Path) -> String {
    let stderr_path = dir.join("demo.stderr");
    let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_till360"))
        .args(["demo", "--exit", "--seed", &SEED.to_string()])
        .args(["--receipts", &RECEIPTS.to_string()])
        .arg("--dir")
        .arg(dir.join("demo"))
        .env("RUST_LOG", LOG_LEVELS)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn till360 demo");
    let deadline = Instant::now() + DEMO_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the demo") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the demo did not end within {DEMO_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = std::fs::read_to_string(&stderr_path).expect("read stderr");
    assert!(status.success(), "the demo failed ({status}):\n{log}");
    log
}

/// Every `*.log` file under `dir` (none today; a logging change must not hide one).
fn log_files(dir: &Path, out: &mut Vec<(String, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            log_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "log") {
            let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap_or_default()).into();
            out.push((path.display().to_string(), text));
        }
    }
}

#[test]
fn the_demo_logs_no_card_number_email_phone_or_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let stderr = run_demo(dir.path());
    assert!(
        stderr.contains("DEBUG"),
        "debug lines must be checked too; RUST_LOG={LOG_LEVELS} gave none:\n{stderr}"
    );
    let mut logs = vec![("stderr".to_string(), stderr)];
    log_files(dir.path(), &mut logs);
    let mut leaks = Vec::new();
    for (what, secret) in secrets() {
        for (name, text) in &logs {
            if let Some(line) = text.lines().find(|l| l.contains(&secret)) {
                leaks.push(format!("{what} {secret:?} in {name}: {line}"));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "{} identifiers logged:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
}
