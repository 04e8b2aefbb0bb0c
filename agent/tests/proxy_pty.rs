//! The POS ↔ printer proxy over real pty pairs: the test holds the masters (the POS
//! writes to one, the printer reads the other); the proxy opens the slaves by path.
//! With a coupon gate, the test plays the till core: it reads the tap, finds the cut
//! and answers it (or does not).

use std::fs::File;
use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::Duration;

use crate::common;

use common::{Pty, GIVE_UP};
use till360_agent::escpos::gate::CutOutcome;
use till360_agent::escpos::{CodePage, EscPosParser, PrintEvent};
use till360_agent::ports::PortSpec;
use till360_agent::proxy::{CouponGate, CutDecision, Proxy, TapEvent};

/// Deterministic pseudo-random numbers for chunk sizes and payloads.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A receipt as a POS sends it: init, code page, text, a raster logo (GS v 0) whose data
/// holds every byte value, an EAN-13 and a Code128 barcode, a QR code (GS ( k), a drawer
/// kick, a status request and a cut.
fn receipt(rng: &mut XorShift) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(b"\x1b@\x1bt\x13");
    // GS v 0: 48 bytes wide, 40 dots high.
    r.extend_from_slice(&[0x1d, b'v', b'0', 0, 48, 0, 40, 0]);
    for i in 0..48 * 40 {
        r.push(if i < 256 { i as u8 } else { rng.next() as u8 });
    }
    r.extend_from_slice(b"\x1ba\x01SUPERMARKT MUSTER\n\x1ba\x00");
    for i in 0..30 {
        r.extend_from_slice(format!("Artikel {i:02}            {i},99 A\r\n").as_bytes());
    }
    r.extend_from_slice(b"\xe4\xf6\xfc \x80 SUMME  EUR 123,45\n");
    // Barcodes: EAN-13 (GS k 2 ... NUL) and Code128 (GS k 73 n ...).
    r.extend_from_slice(b"\x1dk\x024006381333931\x00");
    r.extend_from_slice(b"\x1dk\x49\x0c{BR-0001-2345");
    // QR: model, size, store data, print.
    r.extend_from_slice(&[0x1d, b'(', b'k', 4, 0, 49, 65, 50, 0]);
    r.extend_from_slice(&[0x1d, b'(', b'k', 3, 0, 49, 67, 6]);
    let qr = b"https://till360.example/r/0001";
    let len = qr.len() + 3;
    r.extend_from_slice(&[0x1d, b'(', b'k', len as u8, 0, 49, 80, 48]);
    r.extend_from_slice(qr);
    r.extend_from_slice(&[0x1d, b'(', b'k', 3, 0, 49, 81, 48]);
    // Drawer kick, status request, feed and cut.
    r.extend_from_slice(&[0x1b, b'p', 0, 25, 250]);
    r.extend_from_slice(&[0x10, 0x04, 0x01]);
    r.extend_from_slice(b"\x1bd\x05\x1dV\x42\x00");
    r
}

/// Writes `bytes` to `out` in random chunk sizes from a separate thread.
fn write_in_chunks(mut out: File, bytes: Vec<u8>, seed: u64) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut rng = XorShift(seed);
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let n = (1 + rng.next() as usize % 700).min(rest.len());
            out.write_all(&rest[..n]).unwrap();
            rest = &rest[n..];
        }
    })
}

/// The next bytes from the tap (no gate: the tap carries nothing else).
fn tapped_bytes(tap: &mpsc::Receiver<TapEvent>) -> Vec<u8> {
    match tap.recv_timeout(GIVE_UP).expect("tap fell silent") {
        TapEvent::Bytes(bytes) => bytes,
        other => panic!("expected bytes, got {other:?}"),
    }
}

#[test]
fn bytes_reach_the_printer_unchanged_in_any_chunking() {
    let pos = Pty::new();
    let mut printer = Pty::new();
    let (tap_tx, tap_rx) = mpsc::channel::<TapEvent>();
    let proxy = Proxy::start(pos.spec(), printer.spec(), tap_tx, None).unwrap();

    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut sent = Vec::new();
    for seed in 1..=4u64 {
        let bytes = receipt(&mut rng);
        let writer = write_in_chunks(pos.writer(), bytes.clone(), seed);
        let got = printer.read_exactly(bytes.len());
        writer.join().unwrap();
        assert!(
            got == bytes,
            "printer bytes differ from what the POS sent (receipt {seed})"
        );
        sent.extend_from_slice(&bytes);
    }

    // The tap saw the same bytes, in order.
    let mut tapped = Vec::new();
    while tapped.len() < sent.len() {
        tapped.extend_from_slice(&tapped_bytes(&tap_rx));
    }
    assert!(tapped == sent, "tap bytes differ");
    proxy.stop();
}

#[test]
fn status_replies_go_back_to_the_pos() {
    let mut pos = Pty::new();
    let mut printer = Pty::new();
    let (tap_tx, _tap_rx) = mpsc::channel::<TapEvent>();
    let proxy = Proxy::start(pos.spec(), printer.spec(), tap_tx, None).unwrap();

    // The fake printer answers DLE EOT 1 (printer status) and GS r 1 (paper status).
    let mut printer_out = printer.writer();
    let fake_printer = std::thread::spawn(move || {
        let request = printer.read_exactly(3);
        assert_eq!(request, [0x10, 0x04, 0x01]);
        printer_out.write_all(&[0x16]).unwrap();
        let request = printer.read_exactly(3);
        assert_eq!(request, [0x1d, b'r', 0x01]);
        printer_out.write_all(&[0x00]).unwrap();
        // Hand the pty back: closing its master now would hang up the printer side
        // before the proxy has read the reply.
        printer
    });

    let mut pos_out = pos.writer();
    pos_out.write_all(&[0x10, 0x04, 0x01]).unwrap();
    assert_eq!(pos.read_exactly(1), [0x16], "DLE EOT reply reaches the POS");
    pos_out.write_all(&[0x1d, b'r', 0x01]).unwrap();
    assert_eq!(pos.read_exactly(1), [0x00], "GS r reply reaches the POS");
    let printer = fake_printer.join().unwrap();
    proxy.stop();
    drop(printer);
}

#[test]
fn printing_goes_on_when_the_tap_is_dropped() {
    let pos = Pty::new();
    let mut printer = Pty::new();
    let (tap_tx, tap_rx) = mpsc::channel::<TapEvent>();
    let proxy = Proxy::start(pos.spec(), printer.spec(), tap_tx, None).unwrap();

    let mut rng = XorShift(7);
    let first = receipt(&mut rng);
    let writer = write_in_chunks(pos.writer(), first.clone(), 11);
    assert!(printer.read_exactly(first.len()) == first);
    writer.join().unwrap();
    let mut tapped = 0;
    while tapped < first.len() {
        tapped += tapped_bytes(&tap_rx).len();
    }
    drop(tap_rx);

    // The receipt reader is gone: the next receipts still print, byte for byte.
    for seed in 12..=13 {
        let bytes = receipt(&mut rng);
        let writer = write_in_chunks(pos.writer(), bytes.clone(), seed);
        assert!(printer.read_exactly(bytes.len()) == bytes, "receipt {seed}");
        writer.join().unwrap();
    }
    proxy.stop();
}

#[test]
fn reconnects_to_a_tcp_printer_that_went_away() {
    let pos = Pty::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let printer = PortSpec::Tcp {
        address: listener.local_addr().unwrap().to_string(),
    };
    let (tap_tx, _tap_rx) = mpsc::channel::<TapEvent>();
    let proxy = Proxy::start(pos.spec(), printer, tap_tx, None).unwrap();

    let read_n = |stream: &mut std::net::TcpStream, n: usize| {
        stream.set_read_timeout(Some(GIVE_UP)).unwrap();
        let mut got = vec![0u8; n];
        stream.read_exact(&mut got).unwrap();
        got
    };
    let (mut first, _) = listener.accept().unwrap();
    pos.writer().write_all(b"first receipt\n").unwrap();
    assert_eq!(read_n(&mut first, 14), b"first receipt\n");
    drop(first);

    // The proxy notices, reopens both sides and carries on with the next connection.
    let (mut second, _) = listener.accept().unwrap();
    pos.writer().write_all(b"second receipt\n").unwrap();
    assert_eq!(read_n(&mut second, 15), b"second receipt\n");
    proxy.stop();
}

// ---- the coupon gate ----

const BLOCK: &[u8] = b"\x1b@--- COUPON 10% ---\n\x1b@";

/// Reads the tap as the till core does: every POS byte once, through a parser, until
/// `cuts` cuts were seen; returns their offsets and the bytes seen.
fn read_cuts(tap: &mpsc::Receiver<TapEvent>, parser: &mut EscPosParser, cuts: usize) -> Vec<u64> {
    let mut offsets = Vec::new();
    while offsets.len() < cuts {
        match tap.recv_timeout(GIVE_UP).expect("tap fell silent") {
            TapEvent::Bytes(bytes) => {
                parser.feed(&bytes);
                while let Some(event) = parser.poll() {
                    if let PrintEvent::Cut { offset, .. } = event {
                        offsets.push(offset);
                    }
                }
            }
            TapEvent::CutReleased { .. } => panic!("a cut left before it was seen"),
        }
    }
    offsets
}

/// The next release the tap reports (skipping bytes).
fn next_release(tap: &mpsc::Receiver<TapEvent>) -> (u64, CutOutcome) {
    loop {
        match tap.recv_timeout(GIVE_UP).expect("tap fell silent") {
            TapEvent::Bytes(_) => continue,
            TapEvent::CutReleased { offset, outcome } => return (offset, outcome),
        }
    }
}

fn gated_proxy(
    pos: &Pty,
    printer: &Pty,
    budget: Duration,
) -> (Proxy, mpsc::Receiver<TapEvent>, mpsc::Sender<CutDecision>) {
    let (tap_tx, tap_rx) = mpsc::channel::<TapEvent>();
    let (decisions_tx, decisions) = mpsc::channel();
    let gate = CouponGate {
        budget,
        decisions,
        notices: None,
    };
    let proxy = Proxy::start(pos.spec(), printer.spec(), tap_tx, Some(gate)).unwrap();
    (proxy, tap_rx, decisions_tx)
}

#[test]
fn a_decision_in_time_prints_the_block_right_before_the_cut() {
    let pos = Pty::new();
    let mut printer = Pty::new();
    // A budget no test machine misses: the decision is what releases the cut here.
    let (proxy, tap, decisions) = gated_proxy(&pos, &printer, Duration::from_secs(10));
    let mut rng = XorShift(21);
    let first = receipt(&mut rng);
    let second = receipt(&mut rng);
    let mut parser = EscPosParser::new(CodePage::Cp437);

    let writer = write_in_chunks(pos.writer(), first.clone(), 3);
    let cut = read_cuts(&tap, &mut parser, 1)[0];
    let cut_at = usize::try_from(cut).unwrap();
    assert_eq!(
        &first[cut_at..],
        b"\x1dV\x42\x00",
        "the parser found the cut"
    );
    // Everything before the cut is already at the printer while the cut waits.
    assert!(printer.read_exactly(cut_at) == first[..cut_at]);
    decisions.send((cut, Some(BLOCK.to_vec()))).unwrap();
    writer.join().unwrap();
    let rest = printer.read_exactly(BLOCK.len() + first.len() - cut_at);
    assert!(
        rest == [BLOCK, &first[cut_at..]].concat(),
        "block, then the cut"
    );
    assert_eq!(next_release(&tap), (cut, CutOutcome::CouponPrinted));

    // The next receipt's cut is held and answered the same way, offsets continuing.
    let writer = write_in_chunks(pos.writer(), second.clone(), 4);
    let cut2 = read_cuts(&tap, &mut parser, 1)[0];
    assert_eq!(cut2, (first.len() + second.len() - 4) as u64);
    decisions.send((cut2, None)).unwrap();
    writer.join().unwrap();
    assert!(
        printer.read_exactly(second.len()) == second,
        "declined: byte-exact"
    );
    assert_eq!(next_release(&tap), (cut2, CutOutcome::Declined));
    proxy.stop();
}

#[test]
fn no_decision_passes_the_receipt_through_after_the_budget() {
    let pos = Pty::new();
    let mut printer = Pty::new();
    let (proxy, tap, decisions) = gated_proxy(&pos, &printer, Duration::from_millis(50));
    let mut rng = XorShift(22);
    let bytes = [receipt(&mut rng), receipt(&mut rng)].concat();
    let writer = write_in_chunks(pos.writer(), bytes.clone(), 5);
    assert!(
        printer.read_exactly(bytes.len()) == bytes,
        "exact pass-through"
    );
    writer.join().unwrap();
    let (first_cut, outcome) = next_release(&tap);
    assert_eq!(outcome, CutOutcome::TimedOut);
    assert_eq!(&bytes[first_cut as usize..][..4], b"\x1dV\x42\x00");
    assert_eq!(next_release(&tap).1, CutOutcome::TimedOut);
    // A decision after the release is dropped: nothing more reaches the printer.
    decisions.send((first_cut, Some(BLOCK.to_vec()))).unwrap();
    pos.writer().write_all(b"after\n").unwrap();
    assert_eq!(printer.read_exactly(6), b"after\n");
    proxy.stop();
}

#[test]
fn a_gone_till_core_never_holds_up_printing() {
    let pos = Pty::new();
    let mut printer = Pty::new();
    let (proxy, tap, decisions) = gated_proxy(&pos, &printer, Duration::from_secs(600));
    drop(decisions);
    let mut rng = XorShift(23);
    for seed in 6..=8 {
        let bytes = receipt(&mut rng);
        let writer = write_in_chunks(pos.writer(), bytes.clone(), seed);
        // With a 10-minute budget, only passing without waiting gets these bytes out.
        assert!(printer.read_exactly(bytes.len()) == bytes, "receipt {seed}");
        writer.join().unwrap();
        assert_ne!(next_release(&tap).1, CutOutcome::CouponPrinted);
    }
    proxy.stop();
}

#[test]
fn a_stop_prints_the_cut_the_gate_still_held() {
    let pos = Pty::new();
    let mut printer = Pty::new();
    // No decision ever comes and the budget outlasts the test: only the stop releases it.
    let (proxy, tap, _decisions) = gated_proxy(&pos, &printer, Duration::from_secs(600));
    let bytes = receipt(&mut XorShift(23));
    let writer = write_in_chunks(pos.writer(), bytes.clone(), 6);
    let mut parser = EscPosParser::new(CodePage::Cp437);
    let cut_at = usize::try_from(read_cuts(&tap, &mut parser, 1)[0]).unwrap();
    writer.join().unwrap();
    assert!(printer.read_exactly(cut_at) == bytes[..cut_at]);

    // Stopping releases what the gate holds, and the printer side gets a grace to print
    // it before the connection (and its reply side) ends.
    let reader = std::thread::spawn(move || printer.read_exactly(bytes.len() - cut_at));
    proxy.stop();
    assert_eq!(reader.join().unwrap(), b"\x1dV\x42\x00");
}
