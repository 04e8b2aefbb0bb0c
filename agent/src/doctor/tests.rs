use super::probe::*;
use super::report::{DoctorReport, OpenState, PortReport, Role};
use crate::escpos::{CodePage, EscPosParser};

#[test]
fn guesses_each_suffix() {
    let cases: [(&[u8], Framing); 4] = [
        (b"4006381333931\r2401000000017\r", Framing::Cr),
        (b"4006381333931\n2401000000017\n", Framing::Lf),
        (b"4006381333931\r\n2401000000017\r\n", Framing::CrLf),
        (
            b"\x024006381333931\x03\x022401000000017\x03",
            Framing::StxEtx,
        ),
    ];
    for (bytes, framing) in cases {
        let guess = guess_scanner(bytes, "cr");
        assert_eq!(guess.framing, Some(framing), "{}", escape(bytes));
        assert_eq!(guess.scans, 2, "{}", escape(bytes));
        assert_eq!(
            guess.first_scans,
            vec!["4006381333931", "2401000000017"],
            "{}",
            escape(bytes)
        );
        assert_eq!(guess.matches_config, Some(framing == Framing::Cr));
        assert_eq!(guess.trailing, 0);
        assert_eq!(guess.aim, None);
    }
}

#[test]
fn stx_etx_with_a_cr_after_etx_is_still_stx_etx() {
    let guess = guess_scanner(b"\x02]C1(01)0400638133393\x03\r", "crlf");
    assert_eq!(guess.framing, Some(Framing::StxEtx));
    assert_eq!(guess.aim.as_deref(), Some("]C1"));
    assert_eq!(guess.matches_config, Some(false));
}

#[test]
fn finds_aim_identifier_and_config_match() {
    let guess = guess_scanner(b"]E04006381333931\r", "CR");
    assert_eq!(guess.framing, Some(Framing::Cr));
    assert_eq!(guess.aim.as_deref(), Some("]E0"));
    assert_eq!(guess.matches_config, Some(true));
    assert_eq!(aim_identifier(b"]Q1hello").as_deref(), Some("]Q1"));
    assert_eq!(aim_identifier(b"]1Qhello"), None);
    assert_eq!(aim_identifier(b"4006381333931"), None);
}

#[test]
fn no_suffix_is_no_guess_with_trailing_bytes() {
    let guess = guess_scanner(b"4006381333931", "cr");
    assert_eq!(guess.framing, None);
    assert_eq!(guess.matches_config, None);
    assert_eq!(guess.scans, 0);
    assert_eq!(guess.trailing, 13);

    let empty = guess_scanner(b"", "cr");
    assert_eq!(empty.framing, None);
    assert_eq!(empty.trailing, 0);
}

#[test]
fn half_scan_at_the_end_is_trailing() {
    let guess = guess_scanner(b"4006381333931\r\n40063", "crlf");
    assert_eq!(guess.framing, Some(Framing::CrLf));
    assert_eq!(guess.scans, 1);
    assert_eq!(guess.trailing, 5);
}

#[test]
fn most_common_line_end_wins() {
    // One stray LF among CR scans does not turn the guess into lf.
    let guess = guess_scanner(b"111\r222\r\n333\r", "cr");
    assert_eq!(guess.framing, Some(Framing::Cr));
}

#[test]
fn decodes_printer_status_bits() {
    let online = PrinterStatus::decode(0x12).unwrap();
    assert!(online.online);
    assert!(
        !online.drawer_pin3_high && !online.waiting_for_recovery && !online.feed_button_pressed
    );
    assert_eq!(online.to_string(), "0x12: online");

    let offline = PrinterStatus::decode(0x1a | 0x20 | 0x04).unwrap();
    assert!(!offline.online);
    assert!(offline.waiting_for_recovery && offline.drawer_pin3_high);
    assert!(offline.to_string().starts_with("0x3e: offline, waiting"));

    // XON, XOFF, an ASB first byte and bit 7 set are not DLE EOT 1 replies.
    for noise in [0x11u8, 0x13, 0x10, 0x92, 0x00, 0xff] {
        assert_eq!(PrinterStatus::decode(noise), None, "{noise:#x}");
    }
    assert_eq!(
        PrinterStatus::find(&[0x11, 0x00, 0x1a]).map(|s| s.byte),
        Some(0x1a)
    );
    assert_eq!(PrinterStatus::find(&[]), None);
}

#[test]
fn escpos_receipt_is_recognised() {
    let receipt = b"\x1b@\x1bt\x10\x1ba\x01SUPERMARKT\n\x1ba\x00Brot     1,99\nSUMME    1,99\n\x10\x04\x01\x1dV\x42\x00";
    let s = summarize_escpos(receipt, EscPosParser::new(CodePage::Cp437));
    assert!(s.looks_like_escpos, "{s:?}");
    // ESC @, ESC t, ESC a, ESC a, DLE EOT, GS V
    assert_eq!(s.commands, 6, "{s:?}");
    assert_eq!(s.lines, 3);
    assert_eq!(s.cuts, 1);
    assert_eq!(s.status_requests, 1);
    assert_eq!(s.first_lines[0], "SUPERMARKT");
    assert!(!s.ends_in_command);
}

#[test]
fn plain_text_is_not_escpos() {
    let s = summarize_escpos(b"hello\nworld\n", EscPosParser::new(CodePage::Cp437));
    assert!(!s.looks_like_escpos);
    assert_eq!(s.lines, 2);
    assert_eq!(s.commands, 0);
    let cut_short = summarize_escpos(b"\x1b@abc\x1d(k\x10", EscPosParser::new(CodePage::Cp437));
    assert!(cut_short.ends_in_command);
}

#[test]
fn preview_escapes_and_truncates() {
    let p = preview(b"]E0\r\n\x02\\", 32);
    assert_eq!(p.hex, "5d 45 30 0d 0a 02 5c");
    assert_eq!(p.text, "]E0\\r\\n\\x02\\\\");
    assert!(!p.truncated);
    let p = preview(&[b'a'; 40], 32);
    assert_eq!(p.text.len(), 32);
    assert!(p.truncated);
}

#[test]
fn report_names_key_and_reason_of_each_problem() {
    let report = DoctorReport::new(
        "agent.toml".into(),
        1,
        vec![
            PortReport::new(Role::Pos, "/dev/pos".into(), OpenState::Opened),
            PortReport::new(Role::Printer, "/dev/lp".into(), OpenState::Missing),
            PortReport::new(Role::Scanner, "/dev/scan".into(), OpenState::Busy),
        ],
        None,
    );
    assert!(!report.ok);
    assert_eq!(
        report.problems(),
        vec![
            "[printer] port: /dev/lp: no such device",
            "[scanner] port: /dev/scan: in use by another process (is the agent running?)",
        ]
    );
    let text = report.to_text();
    assert!(text.contains("result: 1 of 3 ports opened"), "{text}");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["ports"][1]["open"]["state"], "missing");
    assert_eq!(json["ports"][1]["key"], "[printer] port");
}

#[test]
fn a_running_agent_is_named_once_and_is_not_a_problem() {
    let held = OpenState::HeldByAgent { pid: Some(4242) };
    let report = DoctorReport::new(
        "agent.toml".into(),
        0,
        vec![
            PortReport::new(Role::Pos, "/dev/pos".into(), held.clone()),
            PortReport::new(Role::Printer, "tcp://10.0.0.7:9100".into(), held),
        ],
        Some(crate::instance::LockHolder { pid: Some(4242) }),
    );
    assert!(!report.ok, "nothing was examined");
    assert!(report.problems().is_empty(), "{:?}", report.problems());
    let text = report.to_text();
    assert!(
        text.starts_with("agent.toml: an agent is running with this config (pid 4242)"),
        "{text}"
    );
    assert_eq!(text.matches("4242").count(), 1, "{text}");
    assert!(
        text.contains("([printer] port): tcp://10.0.0.7:9100: left to the agent\n"),
        "{text}"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["agent_running"]["pid"], 4242);
    assert_eq!(json["ports"][0]["open"]["state"], "held_by_agent");
}
