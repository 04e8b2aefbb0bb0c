//! Scanners over real ptys, through a whole `RunningAgent`: each suffix (cr, lf, crlf,
//! STX/ETX), AIM identifiers, UPC-A, a GS1-128 string carrying a card, noise before a
//! good scan, and `forward_to` passing every scanner byte on to a second pty.

use std::io::Write;
use std::path::Path;

use crate::common;

use common::{Pty, GIVE_UP};
use till360_agent::config::AgentConfig;
use till360_agent::runtime::RunningAgent;
use till360_shared::card::with_check_digit;
use till360_shared::EventKind;

struct Till {
    _dir: tempfile::TempDir,
    scanner: Pty,
    _pos: Pty,
    _printer: Pty,
    agent: RunningAgent,
}

fn start(suffix: &str, forward_to: Option<&Pty>) -> Till {
    let dir = tempfile::tempdir().unwrap();
    let (scanner, pos, printer) = (Pty::new(), Pty::new(), Pty::new());
    let layout = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/receipts/supermarket.toml");
    let forward = forward_to
        .map(|p| format!("forward_to = \"{}\"\n", p.path.display()))
        .unwrap_or_default();
    let text = format!(
        r#"
store = "S001"
till = "T01"
data_dir = "data"

[scanner]
port = "{}"
suffix = "{suffix}"
{forward}
[pos]
port = "{}"
layout = "{}"

[printer]
port = "{}"

[cards]
prefixes = ["2401", "0201"]
"#,
        scanner.path.display(),
        pos.path.display(),
        layout.display(),
        printer.path.display()
    );
    let config = AgentConfig::from_toml_str(&text, &dir.path().join("agent.toml")).unwrap();
    let agent = RunningAgent::start(config).unwrap();
    Till {
        _dir: dir,
        scanner,
        _pos: pos,
        _printer: printer,
        agent,
    }
}

/// Waits until `n` events are journaled and returns the scanned card numbers, in order.
async fn scanned_cards(agent: &RunningAgent, n: u64) -> Vec<String> {
    let mut rx = agent.journal_seq();
    tokio::time::timeout(GIVE_UP, rx.wait_for(|s| *s >= n))
        .await
        .expect("journal did not reach the seq")
        .unwrap();
    let journal = agent.journal().expect("journal is open");
    let events = journal.lock().unwrap().read_from(1, 100).unwrap();
    events
        .iter()
        .map(|e| match &e.kind {
            EventKind::CardScanned { card } => card.as_str().to_string(),
            other => panic!("expected only card scans, got {other:?}"),
        })
        .collect()
}

fn framed(suffix: &str, scan: &[u8]) -> Vec<u8> {
    let (start, end): (&[u8], &[u8]) = match suffix {
        "cr" => (b"", b"\r"),
        "lf" => (b"", b"\n"),
        "crlf" => (b"", b"\r\n"),
        "stx_etx" => (b"\x02", b"\x03"),
        other => panic!("no suffix {other}"),
    };
    [start, scan, end].concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_suffix_frames_aim_upc_a_and_gs1_scans_after_noise() {
    let card = with_check_digit("240100000012").unwrap();
    let ean8 = with_check_digit("2401003").unwrap();
    let upc_a = with_check_digit("20100000001").unwrap();
    let gs1_card = with_check_digit("240100000029").unwrap();
    for suffix in ["cr", "lf", "crlf", "stx_etx"] {
        let till = start(suffix, None);
        let mut scanner = till.scanner.writer();
        // Noise first: stray control bytes, then a frame of garbage.
        let mut stream = b"\x01\x7f\x18junk".to_vec();
        stream.extend(framed(suffix, b"\x00\xffnoise"));
        for scan in [
            format!("]E0{card}"),
            // A product, not a card: counted and ignored, never journaled.
            "]E04006381333931".to_string(),
            upc_a.clone(),
            format!("]E4{ean8}"),
            format!("]C1010{gs1_card}17261231\x1d10LOT42"),
        ] {
            stream.extend(framed(suffix, scan.as_bytes()));
        }
        // Written in small pieces, as a slow serial line delivers them.
        for piece in stream.chunks(5) {
            scanner.write_all(piece).unwrap();
        }
        let cards = scanned_cards(&till.agent, 4).await;
        till.agent.shutdown().await;
        assert_eq!(
            cards,
            vec![
                card.clone(),
                format!("0{upc_a}"),
                ean8.clone(),
                gs1_card.clone()
            ],
            "suffix {suffix}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_to_delivers_every_scanner_byte_unchanged() {
    let mut pos_scanner_input = Pty::new();
    let till = start("crlf", Some(&pos_scanner_input));
    let card = with_check_digit("240100000036").unwrap();
    let mut stream: Vec<u8> = (0..=255u8).collect();
    stream.extend(framed("crlf", b"]E0"));
    stream.extend(framed("crlf", format!("]E0{card}").as_bytes()));
    stream.extend(b"\x02half a scan");
    stream.extend(framed("crlf", card.as_bytes()));
    let mut scanner = till.scanner.writer();
    let expected = stream.clone();
    let forwarded = std::thread::spawn(move || pos_scanner_input.read_exactly(expected.len()));
    for piece in stream.chunks(7) {
        scanner.write_all(piece).unwrap();
    }
    assert_eq!(
        forwarded.join().unwrap(),
        stream,
        "the POS gets the scanner bytes byte-exact"
    );
    let cards = scanned_cards(&till.agent, 1).await;
    till.agent.shutdown().await;
    assert_eq!(cards, vec![card]);
}

#[test]
fn forward_to_config_names_file_key_and_reason() {
    let base = "store = \"S1\"\ntill = \"T1\"\ndata_dir = \"d\"\n[pos]\nport = \"/dev/p\"\nlayout = \"l.toml\"\n[printer]\nport = \"/dev/q\"\n[cards]\nprefixes = [\"2401\"]\n[scanner]\nport = \"/dev/s\"\nsuffix = \"stx_etx\"\n";
    let parse = |extra: &str| {
        AgentConfig::from_toml_str(&format!("{base}{extra}"), Path::new("/etc/agent.toml"))
    };
    let ok = parse("forward_to = \"/dev/pos-scan\"\n").unwrap();
    let scanner = ok.scanner.unwrap();
    assert_eq!(scanner.suffix.to_string(), "stx_etx");
    assert_eq!(
        scanner.forward_to.map(|p| p.to_string()).as_deref(),
        Some("/dev/pos-scan")
    );
    assert_eq!(parse("").unwrap().scanner.unwrap().forward_to, None);
    for (value, reason) in [
        ("\"\"", "must not be empty"),
        ("\"tcp://pos:9000\"", "tcp:// is only for the printer"),
        ("\"/dev/s\"", "is the scanner's own port"),
    ] {
        let err = parse(&format!("forward_to = {value}\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("/etc/agent.toml: [scanner] forward_to: ") && err.contains(reason),
            "{err}"
        );
    }
}
