//! `[metrics] listen` on a real agent over ptys: a card scan and a printed receipt, then
//! `GET /metrics` over TCP. Other agents of this test binary share the process's
//! recorder, so counters are compared before and after.

use std::io::Write;
use std::net::SocketAddr;

use crate::common;

use common::{Pty, GIVE_UP};
use till360_agent::runtime::RunningAgent;
use till360_shared::card::with_check_digit;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

async fn scrape(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(GIVE_UP, stream.read_to_end(&mut raw))
        .await
        .expect("metrics answer timed out")
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("no header end");
    (head.to_string(), body.to_string())
}

/// The value of the sample `name{labels}` (labels as rendered, `""` for none).
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let key = if labels.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{labels}}}")
    };
    text.lines()
        .find_map(|line| line.strip_prefix(&key)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_proxied_receipts_and_scans_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let scanner = Pty::new();
    let pos = Pty::new();
    let mut printer = Pty::new();
    let config = common::agent_config(
        dir.path(),
        &scanner.path,
        &pos.path,
        &printer.path,
        "[metrics]\nlisten = \"127.0.0.1:0\"\n",
    );
    let agent = RunningAgent::start(config).unwrap();
    let addr = agent.metrics_addr().expect("[metrics] listen is set");

    let (head, before) = scrape(addr, "/metrics").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let bytes_before = sample(&before, "till360_agent_proxied_bytes_total", "").unwrap();
    let parsed_before = sample(&before, "till360_agent_receipts_parsed_total", "").unwrap();
    let cards_before =
        sample(&before, "till360_agent_scans_total", r#"kind="card""#).unwrap_or(0.0);

    let card = with_check_digit("240100000012").unwrap();
    let mut scanner_out = scanner.master.try_clone().unwrap();
    scanner_out
        .write_all(format!("{card}\r").as_bytes())
        .unwrap();
    let mut seq = agent.journal_seq();
    tokio::time::timeout(GIVE_UP, seq.wait_for(|s| *s >= 1))
        .await
        .expect("the scan was not journaled")
        .unwrap();

    let receipt: &[u8] = b"\x1b@\x1bt\x13SUPERMARKT\n\
Bon 0012-3456\n\
Halfvolle melk 1L        1,29\n\
2 x 0,99\n\
Appels                   1,98 B\n\
TOTAAL                   3,27\n\
PIN                      3,27\n\
\x1bd\x03\x1dV\x00";
    let mut pos_out = pos.master.try_clone().unwrap();
    let printed = std::thread::spawn({
        let n = receipt.len();
        move || {
            let got = printer.read_exactly(n);
            (got, printer)
        }
    });
    pos_out.write_all(receipt).unwrap();
    let (got, _printer) = printed.join().unwrap();
    assert_eq!(got, receipt);
    tokio::time::timeout(GIVE_UP, seq.wait_for(|s| *s >= 2))
        .await
        .expect("the receipt was not journaled")
        .unwrap();

    let (_, after) = scrape(addr, "/metrics").await;
    let bytes_after = sample(&after, "till360_agent_proxied_bytes_total", "").unwrap();
    assert!(
        bytes_after - bytes_before >= receipt.len() as f64,
        "{bytes_before} -> {bytes_after}"
    );
    let parsed_after = sample(&after, "till360_agent_receipts_parsed_total", "").unwrap();
    assert!(parsed_after - parsed_before >= 1.0, "{after}");
    let cards_after = sample(&after, "till360_agent_scans_total", r#"kind="card""#).unwrap();
    assert!(cards_after - cards_before >= 1.0, "{after}");
    // Read from this agent's journal when scraped: two events, none acked (no hub).
    assert_eq!(
        sample(&after, "till360_agent_journal_pending_events", ""),
        Some(2.0),
        "{after}"
    );
    assert!(sample(&after, "till360_agent_journal_bytes", "").unwrap() > 0.0);
    assert_eq!(sample(&after, "till360_agent_link_up", ""), Some(0.0));
    for (family, kind) in [
        ("till360_agent_proxied_bytes_total", "counter"),
        ("till360_agent_receipts_parsed_total", "counter"),
        ("till360_agent_receipts_unparsed_total", "counter"),
        ("till360_agent_scans_total", "counter"),
        ("till360_agent_journal_bytes", "gauge"),
        ("till360_agent_journal_pending_events", "gauge"),
        ("till360_agent_link_up", "gauge"),
    ] {
        assert!(
            after.contains(&format!("# TYPE {family} {kind}\n")),
            "no TYPE {kind} for {family}:\n{after}"
        );
        assert!(
            after.contains(&format!("# HELP {family} ")),
            "no HELP for {family}:\n{after}"
        );
    }
    let (head, _) = scrape(addr, "/elsewhere").await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    promtool_check_metrics(&after);
    agent.shutdown().await;
    // Stopped with the agent: nothing answers on its port any more.
    let refused = tokio::time::timeout(GIVE_UP, async {
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_err() {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(
        refused.is_ok(),
        "the metrics port still answers after shutdown"
    );
}

#[test]
fn a_metrics_listen_that_is_not_an_address_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        "store = \"S001\"\ntill = \"T01\"\ndata_dir = \"data\"\n\
         [pos]\nport = \"/dev/null\"\nlayout = \"l.toml\"\n[printer]\nport = \"/dev/null\"\n\
         [cards]\nprefixes = [\"2401\"]\n[metrics]\nlisten = \"localhost\"\n",
    )
    .unwrap();
    let err = till360_agent::config::AgentConfig::load(&path).unwrap_err();
    assert!(err.to_string().contains("[metrics] listen"), "{err}");
}

/// Pipes `text` into `promtool check metrics` and asserts it passes. Without promtool on
/// PATH the check is skipped (loudly), or fails when `TILL360_REQUIRE_PROMTOOL=1`.
fn promtool_check_metrics(text: &str) {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let spawned = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var("TILL360_REQUIRE_PROMTOOL").as_deref() != Ok("1"),
                "TILL360_REQUIRE_PROMTOOL=1 but promtool is not on PATH (Debian: prometheus)"
            );
            eprintln!("SKIPPED: promtool check metrics: promtool is not on PATH");
            return;
        }
        Err(err) => panic!("promtool: {err}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
