//! The `till360-agent` binary: `status` as text and JSON, and exit codes for errors.

use std::path::{Path, PathBuf};
use std::process::Command;

use till360_agent::journal::Journal;
use till360_shared::card::with_check_digit;
use till360_shared::{AgentId, CardNumber, EventKind, Timestamp};

fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("agent.toml");
    std::fs::write(
        &path,
        format!(
            r#"store = "S001"
till = "T01"
data_dir = "data"
[pos]
port = "/dev/null"
layout = "receipts/none.toml"
[printer]
port = "/dev/null"
[cards]
prefixes = ["2401"]
{extra}"#
        ),
    )
    .unwrap();
    path
}

fn agent(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_till360-agent"))
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .unwrap()
}

fn journal_with_events(dir: &Path) {
    let mut j = Journal::open(&dir.join("data"), &AgentId::new("S001", "T01")).unwrap();
    for n in 1..=3u64 {
        let card = CardNumber::parse(&with_check_digit(&format!("2401{n:08}")).unwrap()).unwrap();
        j.append(
            Timestamp::from_unix_ms(1_764_060_000_000 + n as i64, 60),
            EventKind::CardScanned { card },
        )
        .unwrap();
    }
    j.ack(1).unwrap();
}

#[test]
fn status_prints_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    journal_with_events(dir.path());
    let config = config.to_str().unwrap();

    let out = agent(&["status", "--config", config]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("store: S001\ntill: T01\n"), "{text}");
    assert!(
        text.contains("last_seq: 3\nacked_seq: 1\npending: 2\n"),
        "{text}"
    );
    assert!(
        text.contains("oldest_pending: 2025-11-25T09:40:00.002+01:00"),
        "{text}"
    );
    assert!(text.contains("erasure_version: 0\n"), "{text}");
    assert!(text.contains("campaign_version: none\n"), "{text}");
    assert!(text.contains("unbalanced_receipts: 0\n"), "{text}");
    assert!(text.contains("unrecognised_scans: 0\n"), "{text}");

    let out = agent(&["status", "--config", config, "--json"]);
    assert!(out.status.success(), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["store"], "S001");
    assert_eq!(json["last_seq"], 3);
    assert_eq!(json["acked_seq"], 1);
    assert_eq!(json["pending"], 2);
    assert_eq!(json["oldest_pending_at"], "2025-11-25T09:40:00.002+01:00");
}

#[test]
fn bad_config_exits_2_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[scanner]\nport = \"/dev/null\"\nsuffix = \"crr\"\n",
    );
    for command in ["status", "run"] {
        let out = agent(&[command, "--config", config.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{command}: {out:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        // The path as given (as the hub shows it), not just the file's name.
        let expected = format!(
            r#"error: {}: [scanner] suffix: "crr" is not one of cr, lf, crlf"#,
            config.display()
        );
        assert!(err.starts_with(&expected), "{command}: {err}");
    }
}

#[test]
fn status_without_a_journal_fails_with_1() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let out = agent(&["status", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with("error: journal ") && err.contains("does not exist"),
        "{err}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "status must not create a journal"
    );
}

#[test]
fn run_with_a_missing_layout_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let out = agent(&["run", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with(&format!("error: {}: [pos] layout\n", config.display())),
        "{err}"
    );
    assert!(err.contains("none.toml"), "{err}");
}
