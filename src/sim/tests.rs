use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::time::Duration;

use till360_shared::card::validate_gtin;
use till360_shared::CardPrefixes;

use super::escpos::{encode_cp858, EscPosWriter};
use super::printer::{PrinterAction, STATUS_ONLINE};
use super::scanner::{card_number, with_bad_check_digit, CARD_PREFIX};
use super::*;

fn opening() -> chrono::NaiveDateTime {
    MorningPlan::new(0, 0).opening
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn rng_is_deterministic_by_seed() {
    let draw = |seed| {
        let mut r = SimRng::new(seed);
        (0..8).map(|_| r.next_u64()).collect::<Vec<_>>()
    };
    assert_eq!(draw(7), draw(7));
    assert_ne!(draw(7), draw(8));
    let mut r = SimRng::new(1);
    for _ in 0..1000 {
        let v = r.range(3, 5);
        assert!((3..=5).contains(&v));
    }
}

#[test]
fn cp858_has_euro_at_d5() {
    assert_eq!(
        encode_cp858("€ äöüß"),
        vec![0xD5, b' ', 0x84, 0x94, 0x81, 0xE1]
    );
    assert_eq!(encode_cp858("日"), b"?");
}

#[test]
fn receipt_carries_every_command_kind() {
    for style in [ReceiptStyle::Supermarket, ReceiptStyle::Boutique] {
        let mut pos = PosSimulator::new(style, "S001", opening(), 3);
        pos.status_poll_percent = 100;
        let r = pos.next_receipt(Some("1234"));
        let bytes = r.bytes();
        assert_eq!(&bytes[..5], &[0x1B, b'@', 0x1B, b't', 19], "{style:?}");
        assert!(contains(&bytes, &[0x10, 0x04, 1]), "status poll");
        assert!(contains(&bytes, &[0x1D, b'v', b'0', 0]), "raster logo");
        assert!(contains(&bytes, &[0x1D, b'k', 73]), "code128");
        assert!(contains(&bytes, &[0x1D, b'(', b'k']), "qr");
        assert!(contains(&bytes, &[0x1D, b'V', 66, 0]), "cut");
        assert!(bytes.ends_with(&[0x1D, b'V', 66, 0]));
        assert!(contains(&bytes, b"1234"));
        assert!(contains(&bytes, r.expected.receipt_no.as_bytes()));
        assert_eq!(r.status_polls(), 1);
        let sum: i64 = r.expected.lines.iter().map(|l| l.amount_cents).sum();
        assert_eq!(sum, r.expected.total_cents);
        assert!(r.expected.total_cents > 0);
    }
    let mut boutique = PosSimulator::new(ReceiptStyle::Boutique, "S002", opening(), 3);
    assert!(
        boutique.next_receipt(None).bytes().contains(&0xD5),
        "€ in CP858"
    );
}

#[test]
fn receipts_are_deterministic_by_seed() {
    let make = |seed| {
        let mut pos = PosSimulator::new(ReceiptStyle::Supermarket, "S001", opening(), seed);
        (0..5).map(|_| pos.next_receipt(None)).collect::<Vec<_>>()
    };
    assert_eq!(make(11), make(11));
    assert_ne!(make(11), make(12));
}

#[test]
fn printer_model_answers_status_and_counts_cuts_in_any_chunking() {
    let mut pos = PosSimulator::new(ReceiptStyle::Supermarket, "S001", opening(), 5);
    pos.status_poll_percent = 100;
    let mut stream = Vec::new();
    for _ in 0..3 {
        stream.extend(pos.next_receipt(None).bytes());
    }
    for chunk in [1, 2, 3, 7, 64, 1000, stream.len()] {
        let mut model = PrinterModel::new();
        let actions: Vec<PrinterAction> =
            stream.chunks(chunk).flat_map(|c| model.feed(c)).collect();
        let cuts = actions.iter().filter(|a| **a == PrinterAction::Cut).count();
        let replies: Vec<_> = actions
            .iter()
            .filter(|a| matches!(a, PrinterAction::Reply(_)))
            .collect();
        assert_eq!(cuts, 3, "chunk {chunk}");
        assert_eq!(replies, vec![&PrinterAction::Reply(STATUS_ONLINE); 3]);
    }
}

#[test]
fn printer_model_skips_raster_payload() {
    // A raster whose payload holds a cut command and a status request must do nothing.
    let mut w = EscPosWriter::new(Vec::new());
    w.raster(4, 2, &[0x1D, b'V', 66, 0, 0x10, 0x04, 1, 0])
        .unwrap();
    let mut model = PrinterModel::new();
    assert!(model.feed(&w.into_inner()).is_empty());
    assert_eq!(model.feed(&[0x1D, b'V', 66, 0]), vec![PrinterAction::Cut]);
}

#[test]
fn cards_are_valid_loyalty_ean13() {
    let prefixes = CardPrefixes::new([CARD_PREFIX]).unwrap();
    for n in [0, 1, 42, 99_999_999] {
        let card = card_number(n);
        assert_eq!(card.len(), 13);
        assert!(prefixes.loyalty_card(&card).is_ok(), "{card}");
        assert!(validate_gtin(&with_bad_check_digit(&card)).is_err());
    }
}

#[test]
fn garbage_stays_one_frame() {
    let mut a = SimRng::new(4);
    let mut b = SimRng::new(4);
    for _ in 0..200 {
        let g = super::scanner::garbage(&mut a);
        assert!(!g.is_empty() && !g.contains(&b'\r') && !g.contains(&b'\n'));
        assert_eq!(g, super::scanner::garbage(&mut b));
    }
}

#[test]
fn morning_is_deterministic_and_adds_up() {
    let stores = StoreSetup::demo_stores();
    let plan = MorningPlan::new(99, 300);
    let a = Morning::generate(&plan, &stores);
    let b = Morning::generate(&plan, &stores);
    assert_eq!(a.visits.len(), 300);
    assert_eq!(a.expected_by_card(), b.expected_by_card());
    let expected = a.expected_by_card();
    let carded = a.visits.iter().filter(|v| v.card.is_some()).count();
    assert!(
        carded > 150 && carded < 300,
        "most but not all carded: {carded}"
    );
    assert_eq!(
        expected.values().map(|e| e.count as usize).sum::<usize>(),
        carded
    );
    assert!(
        expected.values().any(|e| e.count >= 3),
        "regulars come back"
    );
    assert!(
        expected.values().any(|e| e.stores.len() == 2),
        "someone visits both"
    );
    assert!(a.visits_at(0).count() > 0 && a.visits_at(1).count() > 0);
    // Receipt numbers are unique per till.
    for i in 0..2 {
        let nos: std::collections::BTreeSet<_> = a
            .visits_at(i)
            .map(|v| v.receipt.expected.receipt_no.clone())
            .collect();
        assert_eq!(nos.len(), a.visits_at(i).count());
    }
}

fn open_slave(port: &VirtualPort) -> std::fs::File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(port.path())
        .unwrap()
}

#[test]
fn pty_is_raw_both_ways() {
    let port = VirtualPort::open().unwrap();
    assert!(port.path().starts_with("/dev/pts"), "{:?}", port.path());
    let mut slave = open_slave(&port);
    let bytes: Vec<u8> = (0..=255u8).collect();
    port.write_all_by(&bytes, std::time::Instant::now() + Duration::from_secs(5))
        .unwrap();
    let mut got = vec![0u8; bytes.len()];
    slave.read_exact(&mut got).unwrap();
    assert_eq!(got, bytes, "no LF→CRLF, no control-character processing");
    slave.write_all(b"\n\r\x03\x10\x04").unwrap();
    let mut back = Vec::new();
    let mut buf = [0u8; 16];
    while back.len() < 5 {
        let n = port.read_timeout(&mut buf, Duration::from_secs(5)).unwrap();
        assert!(n > 0, "timed out");
        back.extend_from_slice(&buf[..n]);
    }
    assert_eq!(back, b"\n\r\x03\x10\x04");
    // Nothing echoed back to the master.
    assert_eq!(
        port.read_timeout(&mut buf, Duration::from_millis(100))
            .unwrap(),
        0
    );
}

#[test]
fn a_scan_counts_as_read_only_once_the_agent_side_has_read_it() {
    let port = VirtualPort::open().unwrap();
    let mut agent_side = open_slave(&port);
    let now = std::time::Instant::now;
    assert!(
        port.wait_read_by_agent(now()).unwrap(),
        "nothing written yet"
    );
    port.write_all_by(b"2401000000017\r", now() + Duration::from_secs(5))
        .unwrap();
    assert!(
        !port
            .wait_read_by_agent(now() + Duration::from_millis(50))
            .unwrap(),
        "14 bytes still wait for the agent"
    );
    let mut got = [0u8; 14];
    agent_side.read_exact(&mut got).unwrap();
    assert!(port
        .wait_read_by_agent(now() + Duration::from_secs(5))
        .unwrap());
}

#[test]
fn printer_simulator_over_a_pty_keeps_bytes_and_answers() {
    let port = VirtualPort::open().unwrap();
    let printer = PrinterSimulator::start(&port).unwrap();
    let mut slave = open_slave(&port);
    let mut pos = PosSimulator::new(ReceiptStyle::Boutique, "S002", opening(), 8);
    pos.status_poll_percent = 100;
    let r = pos.next_receipt(Some("0042"));
    // The agent's side of the printer port: write the receipt, read the status answer.
    slave.write_all(&r.bytes()).unwrap();
    let mut status = [0u8; 1];
    slave.read_exact(&mut status).unwrap();
    assert_eq!(status[0], STATUS_ONLINE);
    assert!(printer.wait_for_cuts(1, Duration::from_secs(10)));
    assert_eq!(printer.bytes(), r.bytes());
    assert_eq!(printer.status_replies(), 1);
}

#[test]
fn play_receipt_waits_for_the_status_answer() {
    let port = VirtualPort::open().unwrap();
    let slave = open_slave(&port);
    let mut pos = PosSimulator::new(ReceiptStyle::Supermarket, "S001", opening(), 9);
    pos.status_poll_percent = 100;
    let r = pos.next_receipt(None);
    let expected = r.bytes();
    // A stand-in agent that reads the POS port and answers the status poll.
    let agent = std::thread::spawn(move || {
        let mut slave = slave;
        let mut got = Vec::new();
        let mut model = PrinterModel::new();
        let mut buf = [0u8; 512];
        while got.len() < expected.len() {
            let n = slave.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
            for a in model.feed(&buf[..n]) {
                if let PrinterAction::Reply(b) = a {
                    slave.write_all(&[b]).unwrap();
                }
            }
        }
        got
    });
    let mut rng = SimRng::new(1);
    let report = play_receipt(&port, &r, &mut rng, 32, Duration::from_secs(10)).unwrap();
    assert_eq!(report.status_replies, vec![STATUS_ONLINE]);
    assert_eq!(agent.join().unwrap(), r.bytes());
}

#[test]
fn play_receipt_fails_without_status_answer() {
    let port = VirtualPort::open().unwrap();
    let _slave = open_slave(&port);
    let mut pos = PosSimulator::new(ReceiptStyle::Supermarket, "S001", opening(), 9);
    pos.status_poll_percent = 100;
    let r = pos.next_receipt(None);
    let mut rng = SimRng::new(1);
    let err = play_receipt(&port, &r, &mut rng, 32, Duration::from_millis(300)).unwrap_err();
    assert!(matches!(err, PlayError::NoStatus(1, _)), "{err}");
}

#[test]
fn scanner_writes_code_and_suffix() {
    let port = VirtualPort::open().unwrap();
    let mut slave = open_slave(&port);
    let scanner = ScannerSimulator::new(&port, Suffix::CrLf);
    let card = card_number(5);
    scanner.scan(&card).unwrap();
    let mut got = vec![0u8; 15];
    slave.read_exact(&mut got).unwrap();
    assert_eq!(got, format!("{card}\r\n").into_bytes());
}

/// The agent's own ESC/POS text extraction and layout matcher read exactly the
/// transaction each simulated receipt carries.
#[test]
fn agent_layouts_read_what_the_pos_prints() {
    use till360_agent::escpos::{CodePage, EscPosParser, PrintEvent};
    use till360_agent::layout::Layout;

    for (style, layout_file) in [
        (ReceiptStyle::Supermarket, "supermarket.toml"),
        (ReceiptStyle::Boutique, "boutique.toml"),
    ] {
        let text = crate::rig::LAYOUTS
            .iter()
            .find(|(name, _)| *name == layout_file)
            .map(|(_, t)| *t)
            .unwrap();
        let layout = Layout::from_toml_str(text, layout_file).unwrap();
        let mut pos = PosSimulator::new(style, "S002", opening(), 21);
        let mut parser = EscPosParser::new(CodePage::Cp437);
        for i in 0..60 {
            let card = (i % 3 != 0).then_some("4321");
            let r = pos.next_receipt(card);
            parser.feed(&r.bytes());
            let mut lines = Vec::new();
            let mut cut = false;
            while let Some(ev) = parser.poll() {
                match ev {
                    PrintEvent::Line(l) => lines.push(l),
                    PrintEvent::Cut { .. } => {
                        cut = true;
                        break;
                    }
                    _ => {}
                }
            }
            assert!(cut, "{style:?}: one cut per receipt");
            let parsed = layout.match_lines(lines.iter().map(String::as_str));
            let want = &r.expected;
            assert_eq!(parsed.receipt_no.as_deref(), Some(want.receipt_no.as_str()));
            assert_eq!(parsed.printed_at, Some(want.printed_at), "{style:?}");
            assert_eq!(parsed.total_cents, Some(want.total_cents), "{style:?}");
            assert_eq!(parsed.card_last4.as_deref(), card, "{style:?}");
            assert_eq!(parsed.lines, want.lines, "{style:?}: {lines:#?}");
            assert!(
                lines.iter().any(|l| l.contains('€')),
                "{style:?}: € decoded from CP858"
            );
        }
    }
}
