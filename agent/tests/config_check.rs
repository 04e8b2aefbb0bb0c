//! `till360-agent check` on the real binary: a good config is ok (0), a bad one names
//! every problem (78); `log_format = "json"` writes one JSON object a line carrying the
//! agent's store and till.

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

use crate::common::{Pty, GIVE_UP};

fn layout_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/receipts/supermarket.toml")
}

/// `ca.pem`, a current `agent.pem` + `agent.key`, and `expired.pem` (same key, same CA,
/// expired in 2021) in `dir`.
fn write_pki(dir: &Path) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let agent_key = KeyPair::generate().unwrap();
    let agent = CertificateParams::new(vec!["S001-T01".to_string()])
        .unwrap()
        .signed_by(&agent_key, &issuer)
        .unwrap();
    let mut expired = CertificateParams::new(vec!["S001-T01".to_string()]).unwrap();
    expired.not_before = rcgen::date_time_ymd(2020, 1, 1);
    expired.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let expired = expired.signed_by(&agent_key, &issuer).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("agent.pem"), agent.pem()).unwrap();
    std::fs::write(dir.join("expired.pem"), expired.pem()).unwrap();
    std::fs::write(dir.join("agent.key"), agent_key.serialize_pem()).unwrap();
}

/// A config for `dir` with the POS on `pos` and `extra` at the top level.
fn config_text(pos: &Path, layout: &Path, top: &str, hub: bool) -> String {
    let hub = if hub {
        "[hub]\naddress = \"127.0.0.1:4433\"\nserver_name = \"localhost\"\n\
         ca = \"ca.pem\"\ncert = \"agent.pem\"\nkey = \"agent.key\"\n"
    } else {
        ""
    };
    format!(
        "store = \"S001\"\ntill = \"T01\"\ndata_dir = \"data\"\n{top}\n\
         [pos]\nport = \"{}\"\nlayout = \"{}\"\n\n\
         [printer]\nport = \"tcp://127.0.0.1:9\"\n\n\
         [cards]\nprefixes = [\"2401\"]\n\n{hub}",
        pos.display(),
        layout.display()
    )
}

fn check(config: &Path, json: bool) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_till360-agent"));
    command.arg("check").arg("--config").arg(config);
    if json {
        command.arg("--json");
    }
    let out = command.output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap(), text)
}

#[test]
fn a_good_config_is_ok_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    write_pki(dir.path());
    let pos = Pty::new();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        config_text(&pos.path, &layout_path(), "log_format = \"json\"", true),
    )
    .unwrap();
    let (code, out) = check(&config, false);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("agent.toml: ok"), "{out}");
    assert!(!dir.path().join("data").exists(), "check creates nothing");
    let (code, out) = check(&config, true);
    assert_eq!(code, 0, "{out}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["ok"], true);
}

#[test]
fn every_problem_is_named_and_the_exit_code_is_78() {
    let dir = tempfile::tempdir().unwrap();
    write_pki(dir.path());
    // A layout whose receipt number pattern does not compile.
    let layout = std::fs::read_to_string(layout_path()).unwrap();
    let broken: String = layout
        .lines()
        .map(|line| {
            if line.starts_with("receipt_no =") {
                "receipt_no = '^Bon (?P<no>[0-9]+'".to_string()
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(broken, layout);
    std::fs::write(dir.path().join("broken.toml"), broken).unwrap();
    let pos = Pty::new();
    let text = config_text(
        &pos.path,
        &dir.path().join("broken.toml"),
        "log_format = \"xml\"",
        true,
    )
    .replace("ca = \"ca.pem\"", "ca = \"gone.pem\"")
    .replace("cert = \"agent.pem\"", "cert = \"expired.pem\"")
        + "\n[journal]\nmax_bytes = \"big\"\n";
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, text).unwrap();

    let (code, out) = check(&config, false);
    assert_eq!(code, 78, "{out}");
    let named = |key: &str, reason: &str| {
        out.lines().any(|line| {
            line.contains("agent.toml: ")
                && line.contains(&format!("key `{key}`: "))
                && line.contains(reason)
        })
    };
    assert!(named("[journal] max_bytes", "invalid type"), "{out}");
    assert!(named("log_format", "\"xml\""), "{out}");
    assert!(named("[hub] ca", "gone.pem"), "{out}");
    assert!(named("[hub] cert", "expired"), "{out}");
    assert!(named("[pos] layout", "receipt_no"), "{out}");
    assert!(out.contains("5 errors"), "{out}");
    // One line a problem, then the summary.
    assert_eq!(out.lines().count(), 6, "{out}");

    let (code, out) = check(&config, true);
    assert_eq!(code, 78, "{out}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["errors"], 5, "{out}");
}

#[test]
fn a_bad_required_key_does_not_hide_the_problems_after_it() {
    let dir = tempfile::tempdir().unwrap();
    write_pki(dir.path());
    let pos = Pty::new();
    let text = config_text(&pos.path, &layout_path(), "", true)
        .replace("ca = \"ca.pem\"", "ca = \"gone.pem\"");
    // A required key of the wrong type, first in the file.
    let text = format!("store = 5\n{}", text.replacen("store = ", "# store = ", 1));
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, text).unwrap();
    let (code, out) = check(&config, false);
    assert_eq!(code, 78, "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("key `store`: ") && l.contains("invalid type")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("key `[hub] ca`: ") && l.contains("gone.pem")),
        "the checks after the bad key still run: {out}"
    );
    assert!(out.contains("2 errors"), "{out}");
}

/// Kills the agent it holds when dropped (also when an assertion fails).
struct AgentProcess(std::process::Child);

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the agent (no hub) with `log_format` until it logs that it journals only;
/// every line of standard error up to that one.
fn log_lines_until_started(log_format: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let (pos, printer) = (Pty::new(), Pty::new());
    let top = format!("log_format = \"{log_format}\"");
    let text = config_text(&pos.path, &layout_path(), &top, false).replace(
        "port = \"tcp://127.0.0.1:9\"",
        &format!("port = \"{}\"", printer.path.display()),
    );
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, text).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_till360-agent"))
        .arg("run")
        .arg("--config")
        .arg(&config)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let _agent = AgentProcess(child);
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + GIVE_UP;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no 'journaling only' line; seen: {seen:#?}"));
        let done = line.contains("journaling only");
        seen.push(line);
        if done {
            return seen;
        }
    }
}

#[test]
fn json_logs_carry_the_store_and_till() {
    for line in log_lines_until_started("json") {
        let value: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert_eq!(value["span"]["store"], "S001", "{line}");
        assert_eq!(value["span"]["till"], "T01", "{line}");
        assert_eq!(value["spans"][0]["till"], "T01", "{line}");
        assert!(value["fields"]["message"].is_string(), "{line}");
    }
}

#[test]
fn text_logs_carry_the_store_and_till() {
    for line in log_lines_until_started("text") {
        assert!(line.contains("till{store=S001 till=T01}"), "{line}");
        assert!(
            serde_json::from_str::<serde_json::Value>(&line).is_err(),
            "{line}"
        );
    }
}
