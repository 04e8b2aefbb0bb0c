//! The wire under load and across a hub crash, against a real hub process:
//! `till360 loadgen` with 20 tills × 50 receipts, and the stateless reset that tells a
//! connected agent at once that the hub it talked to is gone.

use crate::harness;

use std::process::Command;
use std::time::Duration;

use harness::{read_log, Site};
use serde_json::Value;
use till360::loadgen::{hub_link, LoadReport, LoadgenArgs};
use till360_shared::codec::{encode_frame, FrameDecoder};
use till360_shared::wire::Message;
use till360_shared::AgentId;

#[test]
fn loadgen_with_20_tills_gets_every_receipt_acked_and_committed() {
    let site = Site::new();
    let hub = site.start_hub();
    let out = Command::new(env!("CARGO_BIN_EXE_till360"))
        .args(["loadgen", "--pki"])
        .arg(&site.pki)
        .args(["--hub", &site.hub.quic.to_string()])
        .args(["--agents", "20", "--receipts", "50", "--batch", "8"])
        .arg("--certs")
        .arg(site.path().join("loadgen-certs"))
        .output()
        .expect("run till360 loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "loadgen failed: {}\n{stdout}\n--- hub log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        read_log(&hub.log)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one JSON line: {stdout}");
    let report: LoadReport = serde_json::from_str(lines[0]).expect("the line is the report");
    assert_eq!(report.agents, 20);
    assert_eq!(report.receipts, 1000);
    assert_eq!(report.errors, 0);
    assert!(report.seconds > 0.0);
    let rate = report.receipts as f64 / report.seconds;
    assert!(
        (report.receipts_per_s - rate).abs() <= rate * 0.01 + 0.01,
        "receipts_per_s {} is receipts / seconds {rate}",
        report.receipts_per_s
    );
    assert!(report.ack_p50_ms > 0.0 && report.ack_p50_ms <= report.ack_p99_ms);

    // The hub committed every till's 50 receipts.
    let agents = site.get("/api/v1/agents").and_then(|r| r.json());
    let agents = agents
        .as_ref()
        .and_then(Value::as_array)
        .expect("agents list");
    let mut loadgen: Vec<(String, u64)> = agents
        .iter()
        .filter_map(|a| {
            let store = a["store"].as_str()?;
            store
                .starts_with("LG")
                .then(|| (store.to_string(), a["last_seq"].as_u64().unwrap_or(0)))
        })
        .collect();
    loadgen.sort();
    let expected: Vec<(String, u64)> = (1..=20).map(|i| (format!("LG{i:03}"), 50)).collect();
    assert_eq!(loadgen, expected);
}

#[test]
fn a_connected_agent_learns_of_a_hub_restart_by_stateless_reset() {
    let (reason, restart) = close_reason_after_hub_restart(true);
    assert!(
        matches!(reason, quinn::ConnectionError::Reset),
        "expected a stateless reset, got {reason:?} (the hub took {restart:?} to restart; \
         the connection's idle timeout is {:?})",
        till360_hub::listener::IDLE_TIMEOUT
    );
}

#[test]
fn without_the_persisted_reset_key_the_agent_waits_for_its_idle_timeout() {
    // The control for the test above: same crash and restart, but the hub starts with a
    // new reset secret, so the agent cannot recognise the hub's resets.
    let (reason, _) = close_reason_after_hub_restart(false);
    assert!(
        matches!(reason, quinn::ConnectionError::TimedOut),
        "expected an idle timeout, got {reason:?}"
    );
}

/// Connects an agent (its real transport config), crashes the hub (SIGKILL: no
/// CONNECTION_CLOSE leaves it), starts a new hub on the same port and data_dir (with
/// its reset secret kept or removed) and returns why the agent's connection ended and
/// how long the restart took.
///
/// With the key kept, the agent's idle timeout is raised to the hub's (30 s; the
/// connection uses the smaller of the two): the reset must arrive before the idle
/// timeout ends the connection, and the agent's own 8 s made that a race with the new
/// hub process's start on a loaded machine. The control keeps the agent's real config.
fn close_reason_after_hub_restart(
    keep_reset_key: bool,
) -> (quinn::ConnectionError, std::time::Duration) {
    let site = Site::new();
    let mut hub = site.start_hub();
    let certs = site.issue("S001", "T01");
    let args = LoadgenArgs {
        pki: site.pki.clone(),
        hub: site.hub.quic.to_string(),
        agents: 1,
        receipts: 0,
        batch: 1,
        window: 1,
        server_name: "localhost".into(),
        certs: None,
    };
    let mut config = till360_agent::uplink::client_config(&hub_link(&args, &certs)).unwrap();
    if keep_reset_key {
        let mut transport = quinn::TransportConfig::default();
        transport.keep_alive_interval(Some(Duration::from_secs(2)));
        transport.max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(till360_hub::listener::IDLE_TIMEOUT).unwrap(),
        ));
        config.transport_config(std::sync::Arc::new(transport));
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let conn = endpoint
            .connect_with(config, site.hub.quic, "localhost")
            .unwrap()
            .await
            .expect("connected");
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let hello = Message::Hello {
            agent: AgentId::new("S001", "T01"),
            journal_last_seq: 0,
            software: "test".into(),
        };
        send.write_all(&encode_frame(&hello).unwrap())
            .await
            .unwrap();
        let mut decoder = FrameDecoder::new();
        let mut buf = [0u8; 4096];
        let welcome = loop {
            if let Some(msg) = decoder.poll().unwrap() {
                break msg;
            }
            let n = recv.read(&mut buf).await.unwrap().expect("stream open");
            decoder.feed(&buf[..n]);
        };
        assert_eq!(welcome, Message::Welcome { acked_seq: 0 });

        let killed = std::time::Instant::now();
        hub.kill();
        let key = site
            .hub
            .data_dir
            .join(till360_hub::listener::RESET_KEY_FILE);
        assert!(key.exists(), "the hub persisted its reset secret");
        if !keep_reset_key {
            // A new secret: gone from the data_dir and from the database the hubs share.
            std::fs::remove_file(&key).unwrap();
            // Off the async runtime: the PostgreSQL client blocks on a runtime of its own.
            std::thread::scope(|scope| {
                scope
                    .spawn(|| {
                        let db = site.hub_database().unwrap();
                        till360_hub::store::secrets::forget(
                            &*db.get().unwrap(),
                            till360_hub::listener::RESET_KEY_FILE,
                        )
                        .unwrap();
                    })
                    .join()
                    .unwrap()
            });
        }
        let _restarted = site.start_hub();
        let restart = killed.elapsed();
        // The agent's keep-alives reach the new hub, which answers with a stateless
        // reset; only with the same key do its tokens match.
        let reason = tokio::time::timeout(Duration::from_secs(90), conn.closed())
            .await
            .expect("the connection ends");
        (reason, restart)
    })
}
