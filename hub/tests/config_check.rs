//! `till360-hub check` on the real binary: a good config is ok (0), a bad one names every
//! problem (78); `log_format = "json"` writes one JSON object a line, and the lines
//! about a till carry its store and till.

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::{Site, STEP};
use till360_shared::wire::Message;
use till360_shared::AgentId;

fn run_check(config: &Path, json: bool) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_till360-hub"));
    command.arg("check").arg("--config").arg(config);
    if json {
        command.arg("--json");
    }
    let out = command.output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap(), text)
}

/// Puts `lines` at the top of the site's hub.toml (before any `[table]`).
fn prepend_config(site: &Site, lines: &str) {
    let path = site.dir.path().join("hub.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{lines}\n{text}")).unwrap();
}

fn replace_in_config(site: &Site, from: &str, to: &str) {
    let path = site.dir.path().join("hub.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{text}");
    std::fs::write(&path, text.replace(from, to)).unwrap();
}

/// A certificate for the hub's own key, signed by the site's CA, that expired in 2021.
fn write_expired_hub_cert(site: &Site, out: &Path) {
    let pki = site.pki();
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(pki.join("ca.key")).unwrap()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(
        &std::fs::read_to_string(pki.join("ca.pem")).unwrap(),
        ca_key,
    )
    .unwrap();
    let hub_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(pki.join("hub.key")).unwrap()).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let cert = params.signed_by(&hub_key, &issuer).unwrap();
    std::fs::write(out, cert.pem()).unwrap();
}

#[test]
fn a_good_config_is_ok() {
    let site = Site::new();
    prepend_config(&site, "log_format = \"json\"");
    let config = site.dir.path().join("hub.toml");
    let (code, out) = run_check(&config, false);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("hub.toml: ok"), "{out}");
    assert!(
        !site.dir.path().join("data").exists(),
        "check creates nothing"
    );

    let (code, out) = run_check(&config, true);
    assert_eq!(code, 0, "{out}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["ok"], true, "{out}");
}

#[test]
fn every_problem_is_named_and_the_exit_code_is_78() {
    let site = Site::new();
    // 1: a key of the wrong type; 2: a file that is not there; 3: an expired
    // certificate; 4: a log format that does not exist.
    replace_in_config(&site, "listen = \"127.0.0.1:0\"", "listen = 4433");
    replace_in_config(
        &site,
        "ca = \"pki/ca.pem\"",
        "ca = \"pki/ca.pem\"\ncampaigns = \"gone.toml\"",
    );
    write_expired_hub_cert(&site, &site.pki().join("expired.pem"));
    replace_in_config(
        &site,
        "cert = \"pki/hub.pem\"",
        "cert = \"pki/expired.pem\"",
    );
    prepend_config(&site, "log_format = \"xml\"");
    let config = site.dir.path().join("hub.toml");

    let (code, out) = run_check(&config, false);
    assert_eq!(code, 78, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let named = |key: &str, reason: &str| {
        lines.iter().any(|line| {
            line.contains("hub.toml: ")
                && line.contains(&format!("key `{key}`: "))
                && line.contains(reason)
        })
    };
    assert!(named("listen", "invalid type: integer `4433`"), "{out}");
    assert!(named("campaigns", "gone.toml"), "{out}");
    assert!(named("cert", "expired"), "{out}");
    assert!(named("log_format", "\"xml\""), "{out}");
    assert!(out.contains("4 errors"), "{out}");

    let (code, out) = run_check(&config, true);
    assert_eq!(code, 78, "{out}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["errors"], 4, "{out}");

    // `run` refuses the same file, naming a key, before starting anything.
    let out = Command::new(env!("CARGO_BIN_EXE_till360-hub"))
        .arg("run")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("key `"),
        "{out:?}"
    );
    assert!(!site.dir.path().join("data").exists());
}

/// Kills the hub it holds when dropped (also when an assertion fails).
struct HubProcess(std::process::Child);

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The next log line for which `wanted` holds, within [`STEP`]; every line read is
/// kept in `seen`.
fn wait_for_line(
    lines: &mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    wanted: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + STEP;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left.max(Duration::from_millis(1)))
            .unwrap_or_else(|_| panic!("no such log line; seen: {seen:#?}"));
        seen.push(line.clone());
        if wanted(&line) {
            return line;
        }
    }
}

/// Runs the real hub with `log_format`, connects till s7/t3, says hello and finishes;
/// every line of standard error up to the hub's line that the till finished.
async fn log_lines_of_a_till_session(log_format: &str) -> Vec<String> {
    let site = Site::new();
    prepend_config(&site, &format!("log_format = \"{log_format}\""));
    let agent_dir = site.agent("s7", "t3");
    let mut child = Command::new(env!("CARGO_BIN_EXE_till360-hub"))
        .arg("run")
        .arg("--config")
        .arg(site.dir.path().join("hub.toml"))
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let _hub = HubProcess(child);
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let listening = wait_for_line(&lines, &mut seen, |line| line.contains("hub listening"));
    let quic: std::net::SocketAddr = listening
        .split("QUIC udp ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap()
        .parse()
        .unwrap();

    let mut agent =
        crate::common::Agent::connect(quic, &agent_dir.join("ca.pem"), Some(&agent_dir))
            .await
            .unwrap();
    let reply = agent
        .call(&Message::Hello {
            agent: AgentId::new("s7", "t3"),
            journal_last_seq: 0,
            software: "test-agent".into(),
        })
        .await
        .unwrap();
    assert!(matches!(reply, Message::Welcome { .. }), "{reply:?}");
    agent.finish();
    let _ = agent.closed().await;
    wait_for_line(&lines, &mut seen, |line| {
        line.contains("s7/t3") && line.contains("finished")
    });
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_name_the_store_and_till_of_a_connection() {
    let seen = log_lines_of_a_till_session("json").await;
    let parsed: Vec<serde_json::Value> = seen
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    // Every line about this till carries its store and till, in the current span and
    // the span list.
    let about_the_till: Vec<&serde_json::Value> = parsed
        .iter()
        .filter(|v| {
            v["fields"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("s7/t3")
        })
        .collect();
    assert!(about_the_till.len() >= 2, "{seen:#?}");
    for line in about_the_till {
        assert_eq!(line["span"]["store"], "s7", "{line}");
        assert_eq!(line["span"]["till"], "t3", "{line}");
        assert_eq!(line["spans"][0]["till"], "t3", "{line}");
        assert_eq!(line["level"], "INFO", "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_name_the_store_and_till_of_a_connection() {
    let seen = log_lines_of_a_till_session("text").await;
    let about_the_till: Vec<&String> = seen.iter().filter(|l| l.contains("s7/t3")).collect();
    assert!(about_the_till.len() >= 2, "{seen:#?}");
    for line in about_the_till {
        assert!(line.contains("till{store=s7 till=t3}"), "{line}");
    }
}

#[test]
fn a_port_in_use_is_a_warning_and_an_unreachable_database_an_error() {
    let site = Site::new();
    let held = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    // Nothing listens on port 1: the connection is refused at once.
    let config = site.dir.path().join("other.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"data\"\nlisten = \"127.0.0.1:{port}\"\nhttp = \"127.0.0.1:0\"\n\
             ca = \"pki/ca.pem\"\ncert = \"pki/hub.pem\"\nkey = \"pki/hub.key\"\n"
        ),
    )
    .unwrap();
    let (code, out) = run_check(&config, false);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("key `listen`: warning: "), "{out}");
    assert!(out.contains("other.toml: ok (1 warning)"), "{out}");

    let text = std::fs::read_to_string(&config).unwrap()
        + "[database]\nurl = \"postgres://postgres@127.0.0.1:1/none\"\ntimeout_seconds = 2\n";
    std::fs::write(&config, text).unwrap();
    let (code, out) = run_check(&config, false);
    assert_eq!(code, 78, "{out}");
    assert!(out.contains("key `database.url`: "), "{out}");
    assert!(out.contains("127.0.0.1:1"), "{out}");
    drop(held);
}
