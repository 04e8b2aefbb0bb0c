//! `agent.toml`: the annotated example loads, and every error names file, key, reason.

use std::path::{Path, PathBuf};

use till360_agent::config::{AgentConfig, ConfigError};
use till360_agent::ports::PortSpec;

const MINIMAL: &str = r#"
store = "S001"
till = "T01"
data_dir = "data"

[scanner]
port = "/dev/ttyACM0"
suffix = "crlf"

[pos]
port = "/dev/ttyS0"
layout = "receipts/default.toml"

[printer]
port = "tcp://10.1.2.3:9100"

[cards]
prefixes = ["2401"]
"#;

fn origin() -> PathBuf {
    PathBuf::from("/etc/till360/agent.toml")
}

fn load(text: &str) -> Result<AgentConfig, ConfigError> {
    AgentConfig::from_toml_str(text, &origin())
}

fn error(text: &str) -> String {
    match load(text) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

/// `MINIMAL` with one `key = value` line replaced (or added to the end of a section).
fn with(section: &str, key: &str, value: &str) -> String {
    let mut out = String::new();
    let mut current = String::new();
    let mut done = false;
    let lines: Vec<&str> = MINIMAL.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            current = trimmed.trim_matches(|c| c == '[' || c == ']').to_string();
        }
        if current == section && trimmed.starts_with(&format!("{key} =")) {
            out.push_str(&format!("{key} = {value}\n"));
            done = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
        let next_is_new_section = lines.get(i + 1).is_none_or(|l| l.trim().starts_with('['));
        if !done && current == section && next_is_new_section {
            out.push_str(&format!("{key} = {value}\n"));
            done = true;
        }
    }
    assert!(done, "no section {section}");
    out
}

#[test]
fn minimal_config_gets_defaults_and_resolved_paths() {
    let c = load(MINIMAL).unwrap();
    assert_eq!(c.store, "S001");
    assert_eq!(c.data_dir, Path::new("/etc/till360/data"));
    assert_eq!(
        c.pos.layout,
        Path::new("/etc/till360/receipts/default.toml")
    );
    assert_eq!(
        c.pos.port,
        PortSpec::Path {
            path: "/dev/ttyS0".into(),
            baud: 9600
        }
    );
    assert_eq!(
        c.printer.port,
        PortSpec::Tcp {
            address: "10.1.2.3:9100".into()
        }
    );
    assert!(c.hub.is_none(), "no [hub]: journal only");
    assert_eq!(c.checkout.card_timeout_secs, 600);
    assert_eq!(c.checkout.card_timeout_ms(), 600_000);
    assert_eq!(c.scanner.unwrap().suffix.to_string(), "crlf");
}

#[test]
fn annotated_example_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/agent.toml");
    let c = AgentConfig::load(&path).unwrap();
    let folder = path.parent().unwrap();
    assert_eq!(c.data_dir, folder.join("data/S001-T01"));
    let hub = c.hub.expect("the example configures a hub");
    assert_eq!(hub.ca, folder.join("pki/ca.pem"));
    assert_eq!(hub.server_name, "hub.example.com");
    assert_eq!((hub.batch_max, hub.window), (500, 2000));
    assert_eq!(c.log.as_deref(), Some("info"));
}

#[test]
fn bad_suffix_names_file_key_and_reason() {
    assert_eq!(
        error(&with("scanner", "suffix", "\"crr\"")),
        r#"/etc/till360/agent.toml: [scanner] suffix: "crr" is not one of cr, lf, crlf, stx_etx"#
    );
}

#[test]
fn unknown_key_is_refused() {
    let e = error(&with("pos", "bauds", "9600"));
    assert!(
        e.starts_with("/etc/till360/agent.toml: [pos] bauds: unknown field `bauds`"),
        "{e}"
    );
}

#[test]
fn wrong_type_names_the_key() {
    let e = error(&with("printer", "baud", "\"fast\""));
    assert!(
        e.starts_with("/etc/till360/agent.toml: [printer] baud: invalid type"),
        "{e}"
    );
}

#[test]
fn missing_key_names_the_section_or_key() {
    let e = error(&MINIMAL.replace("layout = \"receipts/default.toml\"\n", ""));
    assert!(e.starts_with("/etc/till360/agent.toml: "), "{e}");
    assert!(
        e.contains("[pos]") && e.contains("missing field `layout`"),
        "{e}"
    );
    // The file starts with `store = ...`: the error must not blame that line.
    let e = error(MINIMAL.replace("till = \"T01\"\n", "").trim_start());
    assert_eq!(e, "/etc/till360/agent.toml: missing field `till`");
}

#[test]
fn ids_are_checked() {
    assert_eq!(
        error(&MINIMAL.replace("\"S001\"", "\"S 001\"")),
        r#"/etc/till360/agent.toml: store: "S 001" is not a valid id (1 to 32 of A-Z a-z 0-9 _ . -)"#
    );
    let e = error(&MINIMAL.replace("\"T01\"", "\"\""));
    assert!(e.starts_with("/etc/till360/agent.toml: till: "), "{e}");
}

#[test]
fn values_are_checked() {
    let cases = [
        (
            with("pos", "port", "\"tcp://10.0.0.1:9100\""),
            "/etc/till360/agent.toml: [pos] port: ",
        ),
        (
            with("printer", "port", "\"tcp://printer\""),
            "/etc/till360/agent.toml: [printer] port: ",
        ),
        (
            with("pos", "codepage", "\"ebcdic\""),
            "/etc/till360/agent.toml: [pos] codepage: \"ebcdic\" is not",
        ),
        (
            with("cards", "prefixes", "[\"24x\"]"),
            "/etc/till360/agent.toml: [cards] prefixes: bad card prefix",
        ),
        (
            with("cards", "prefixes", "[]"),
            "/etc/till360/agent.toml: [cards] prefixes: lists no prefix",
        ),
        (
            with("scanner", "baud", "0"),
            "/etc/till360/agent.toml: [scanner] baud: must be above 0",
        ),
    ];
    for (text, prefix) in cases {
        let e = error(&text);
        assert!(e.starts_with(prefix), "{e:?} should start with {prefix:?}");
    }
}

#[test]
fn hub_and_checkout_sections() {
    let hub = format!(
        "{MINIMAL}\n[hub]\naddress = \"hub.example:4433\"\nca = \"pki/ca.pem\"\ncert = \"/abs/agent.pem\"\nkey = \"pki/agent.key\"\nwindow = 10\n\n[checkout]\ncard_timeout_secs = 30\n"
    );
    let c = load(&hub).unwrap();
    let h = c.hub.unwrap();
    assert_eq!(h.server_name, "hub.example", "defaults to the address host");
    assert_eq!(h.ca, Path::new("/etc/till360/pki/ca.pem"));
    assert_eq!(h.cert, Path::new("/abs/agent.pem"));
    assert_eq!((h.batch_max, h.window), (500, 10));
    assert_eq!(c.checkout.card_timeout_secs, 30);

    let e = error(&hub.replace("hub.example:4433", "hub.example"));
    assert!(
        e.starts_with("/etc/till360/agent.toml: [hub] address: "),
        "{e}"
    );
    let e = error(&hub.replace("window = 10", "window = 0"));
    assert_eq!(e, "/etc/till360/agent.toml: [hub] window: must be above 0");
    let e = error(&hub.replace("cert = \"/abs/agent.pem\"\n", ""));
    assert!(
        e.contains("[hub]") && e.contains("missing field `cert`"),
        "{e}"
    );
    let e = error(&hub.replace("card_timeout_secs = 30", "card_timeout_secs = 0"));
    assert_eq!(
        e,
        "/etc/till360/agent.toml: [checkout] card_timeout_secs: must be above 0"
    );
}

#[test]
fn unreadable_file_names_the_path() {
    let e = AgentConfig::load(Path::new("/nonexistent/agent.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("/nonexistent/agent.toml: cannot read: "),
        "{e}"
    );
}

#[test]
fn syntax_error_names_the_file() {
    let e = error("store = \"S001\n");
    assert!(e.starts_with("/etc/till360/agent.toml: "), "{e}");
}
