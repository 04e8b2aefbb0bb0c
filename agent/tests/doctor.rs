//! `till360-agent doctor` against real ptys: the test holds the masters (it plays the
//! scanner, the POS and the printer); the doctor opens the slaves by path.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread::JoinHandle;

use crate::common;

use common::Pty;

const SCAN: &[u8] = b"]E04006381333931\r";
const DLE_EOT_1: [u8; 3] = [0x10, 0x04, 0x01];
const ONLINE: u8 = 0x12;

fn receipt() -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(b"\x1b@\x1bt\x10\x1ba\x01SUPERMARKT MUSTER\n\x1ba\x00");
    r.extend_from_slice(b"Brot                 1,99 A\r\n");
    r.extend_from_slice(b"Milch                0,89 A\r\n");
    r.extend_from_slice(b"SUMME          EUR   2,88\n");
    r.extend_from_slice(b"\x1dk\x024006381333931\x00");
    r.extend_from_slice(&DLE_EOT_1);
    r.extend_from_slice(b"\x1bd\x03\x1dV\x42\x00");
    r
}

fn write_config(dir: &Path, scanner: &Path, pos: &Path, printer: &Path) -> PathBuf {
    let path = dir.join("agent.toml");
    std::fs::write(
        &path,
        format!(
            r#"store = "S001"
till = "T01"
data_dir = "data"
[scanner]
port = "{}"
suffix = "cr"
[pos]
port = "{}"
layout = "receipts/none.toml"
[printer]
port = "{}"
[cards]
prefixes = ["2401"]
"#,
            scanner.display(),
            pos.display(),
            printer.display()
        ),
    )
    .unwrap();
    path
}

fn doctor(config: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_till360-agent"))
        .args([
            "doctor",
            "--config",
            config.to_str().unwrap(),
            "--seconds",
            "1",
        ])
        .args(extra)
        .env("RUST_LOG", "off")
        .output()
        .unwrap()
}

/// Plays a printer: waits for `DLE EOT 1`, answers `reply`, hands the pty back (alive).
fn answer_status(mut printer: Pty, reply: u8) -> JoinHandle<(Pty, Vec<u8>)> {
    std::thread::spawn(move || {
        let request = printer.read_exactly(DLE_EOT_1.len());
        printer.master.write_all(&[reply]).unwrap();
        (printer, request)
    })
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn all_ports_present_reports_framing_escpos_and_printer_status() {
    let dir = tempfile::tempdir().unwrap();
    let (scanner, pos, mut printer) = (Pty::new(), Pty::new(), Pty::new());
    let config = write_config(dir.path(), &scanner.path, &pos.path, &printer.path);

    // The bytes wait in the slaves' input queues until the doctor opens them.
    scanner.writer().write_all(SCAN).unwrap();
    pos.writer().write_all(&receipt()).unwrap();
    let responder = answer_status(printer, ONLINE);
    let out = doctor(&config, &[]);
    let (back, request) = responder.join().unwrap();
    printer = back;
    assert_eq!(request, DLE_EOT_1);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{out:?}\n{stdout}");
    assert!(
        stdout.contains("framing: cr (matches [scanner] suffix cr)"),
        "{stdout}"
    );
    assert!(stdout.contains("AIM identifier: yes (]E0)"), "{stdout}");
    assert!(stdout.contains("]E04006381333931"), "{stdout}");
    assert!(stdout.contains("ESC/POS: yes"), "{stdout}");
    assert!(stdout.contains("| SUPERMARKT MUSTER"), "{stdout}");
    assert!(
        stdout.contains("status (DLE EOT 1): 0x12: online"),
        "{stdout}"
    );
    assert!(stdout.contains("result: 3 of 3 ports opened"), "{stdout}");

    // The same findings for scripts; this time the printer says it is offline.
    scanner.writer().write_all(SCAN).unwrap();
    pos.writer().write_all(&receipt()).unwrap();
    let responder = answer_status(printer, 0x1a);
    let out = doctor(&config, &["--json"]);
    let (_printer, _) = responder.join().unwrap();
    assert!(out.status.success(), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["ok"], true);
    let port = |role: &str| {
        json["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["role"] == role)
            .unwrap_or_else(|| panic!("no {role} in {json}"))
            .clone()
    };
    let scanner_report = port("scanner");
    assert_eq!(scanner_report["open"]["state"], "opened");
    assert_eq!(scanner_report["bytes"], SCAN.len());
    assert_eq!(scanner_report["scanner"]["framing"], "cr");
    assert_eq!(scanner_report["scanner"]["aim"], "]E0");
    assert_eq!(scanner_report["scanner"]["matches_config"], true);
    let pos_report = port("pos");
    assert_eq!(pos_report["bytes"], receipt().len());
    assert_eq!(pos_report["pos"]["looks_like_escpos"], true);
    assert_eq!(pos_report["pos"]["cuts"], 1);
    assert_eq!(pos_report["pos"]["status_requests"], 1);
    let printer_report = port("printer");
    assert_eq!(printer_report["key"], "[printer] port");
    assert_eq!(printer_report["printer"]["reply"]["byte"], 0x1a);
    assert_eq!(printer_report["printer"]["reply"]["online"], false);
}

#[test]
fn missing_printer_fails_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (scanner, pos) = (Pty::new(), Pty::new());
    let gone = dir.path().join("ttyUSB-printer");
    let config = write_config(dir.path(), &scanner.path, &pos.path, &gone);

    let out = doctor(&config, &[]);
    assert!(!out.status.success(), "{out:?}");
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "[printer] port: {}: no such device",
            gone.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("[scanner] port"), "{stderr}");
    // The ports that are there are still examined.
    let stdout = text(&out.stdout);
    assert!(stdout.contains("result: 2 of 3 ports opened"), "{stdout}");
}

#[test]
fn port_held_by_the_agent_is_reported_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let (scanner, pos, printer) = (Pty::new(), Pty::new(), Pty::new());
    let config = write_config(dir.path(), &scanner.path, &pos.path, &printer.path);
    // Opened exactly as the running agent opens it.
    let _held = scanner.spec().open().unwrap();
    let responder = answer_status(printer, ONLINE);

    let out = doctor(&config, &[]);
    let _ = responder.join().unwrap();
    assert!(!out.status.success(), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("[scanner] port"), "{stderr}");
    assert!(
        stderr.contains("in use by another process (is the agent running?)"),
        "{stderr}"
    );
    assert!(!stderr.contains("[printer] port"), "{stderr}");
}

#[test]
fn config_errors_name_file_key_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        Path::new("/dev/null"),
        Path::new("/dev/null"),
        Path::new("/dev/null"),
    );
    let broken = std::fs::read_to_string(&config)
        .unwrap()
        .replace("suffix = \"cr\"", "suffix = \"tab\"");
    std::fs::write(&config, broken).unwrap();
    let out = doctor(&config, &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("agent.toml: [scanner] suffix:"), "{stderr}");
}

#[test]
fn scanner_forward_to_is_opened_and_named_when_missing() {
    let dir = tempfile::tempdir().unwrap();
    let (scanner, pos, forward, printer) = (Pty::new(), Pty::new(), Pty::new(), Pty::new());
    let config = write_config(dir.path(), &scanner.path, &pos.path, &printer.path);
    let with_forward = |target: &Path| {
        let text = std::fs::read_to_string(&config).unwrap().replace(
            "suffix = \"cr\"",
            &format!("suffix = \"cr\"\nforward_to = \"{}\"", target.display()),
        );
        std::fs::write(&config, text).unwrap();
    };

    with_forward(&forward.path);
    let responder = answer_status(printer, ONLINE);
    let out = doctor(&config, &["--json"]);
    let (printer, _) = responder.join().unwrap();
    assert!(out.status.success(), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let forward_report = json["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["role"] == "scanner_forward")
        .unwrap_or_else(|| panic!("no forward port in {json}"));
    assert_eq!(forward_report["key"], "[scanner] forward_to");
    assert_eq!(forward_report["open"]["state"], "opened");

    let gone = dir.path().join("pos-scanner-input");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &forward.path.display().to_string(),
        &gone.display().to_string(),
    );
    std::fs::write(&config, text).unwrap();
    let responder = answer_status(printer, ONLINE);
    let out = doctor(&config, &[]);
    let _ = responder.join().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "[scanner] forward_to: {}: no such device",
            gone.display()
        )),
        "{stderr}"
    );
}

/// An agent process killed and reaped when the test ends, also when an assertion fails
/// (a leftover agent would hold ptys whose numbers later tests get).
struct Reaped(std::process::Child);

impl std::ops::Deref for Reaped {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for `child` to exit, killing it after `limit`; its output either way.
fn output_within(mut child: std::process::Child, limit: std::time::Duration) -> Output {
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait_with_output().unwrap()
}

#[test]
fn a_running_agent_is_named_its_ports_left_alone_and_a_second_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (scanner, pos, mut printer) = (Pty::new(), Pty::new(), Pty::new());
    let layout = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/receipts/supermarket.toml");
    let config = write_config(dir.path(), &scanner.path, &pos.path, &printer.path);
    let with_layout = std::fs::read_to_string(&config)
        .unwrap()
        .replace("receipts/none.toml", &layout.display().to_string());
    std::fs::write(&config, with_layout).unwrap();

    let run = |name: &str| {
        Command::new(env!("CARGO_BIN_EXE_till360-agent"))
            .args(["run", "--config", config.to_str().unwrap()])
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let mut first = Reaped(run("first agent"));
    let lock = dir.path().join("data/agent.lock");
    // The agent is up once its lock names it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::fs::read_to_string(&lock).unwrap_or_default().trim() != first.id().to_string() {
        assert!(
            std::time::Instant::now() < deadline,
            "the agent never took its lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    // A running agent is not a fault: said once, exit 0.
    let out = doctor(&config, &["--json"]);
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["agent_running"]["pid"], first.id(), "{report}");
    for port in report["ports"].as_array().unwrap() {
        assert_eq!(port["open"]["state"], "held_by_agent", "{report}");
    }
    let out = doctor(&config, &[]);
    assert!(out.status.success(), "{out:?}");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(stderr.is_empty(), "nothing repeated on stderr: {stderr}");
    assert_eq!(
        stdout.matches(&format!("(pid {})", first.id())).count(),
        1,
        "the running agent named once: {stdout}"
    );
    assert!(
        stdout.contains(&format!("{}: an agent is running", config.display())),
        "{stdout}"
    );

    // The doctor sent nothing to the printer and the agent still proxies the POS.
    pos.writer().write_all(b"still printing\n").unwrap();
    assert_eq!(printer.read_exactly(15), b"still printing\n");

    let second = output_within(run("second agent"), std::time::Duration::from_secs(20));
    assert!(!second.status.success(), "{second:?}");
    let stderr = text(&second.stderr);
    assert!(
        stderr.contains("another agent is already running with data_dir")
            && stderr.contains(&format!("pid {}", first.id())),
        "{stderr}"
    );

    // Killed hard, the lock goes with the process: the next agent starts.
    first.kill().unwrap();
    first.wait().unwrap();
    let mut third = Reaped(run("third agent"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::fs::read_to_string(&lock).unwrap_or_default().trim() != third.id().to_string() {
        assert!(
            third.try_wait().unwrap().is_none(),
            "the third agent exited"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the third agent never took its lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
