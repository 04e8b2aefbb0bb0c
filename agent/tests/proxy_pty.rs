//! The POS ↔ printer proxy over real pty pairs: the test holds the masters (the POS
//! writes to one, the printer reads the other); the proxy opens the slaves by path.

use std::fs::File;
use std::io::{Read, Write};
use std::sync::mpsc;

mod common;

use common::{Pty, GIVE_UP};
use till360_agent::ports::PortSpec;
use till360_agent::proxy::Proxy;

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

#[test]
fn bytes_reach_the_printer_unchanged_in_any_chunking() {
    let pos = Pty::new();
    let mut printer = Pty::new();
    let (tap_tx, tap_rx) = mpsc::channel::<Vec<u8>>();
    let proxy = Proxy::start(pos.spec(), printer.spec(), tap_tx).unwrap();

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
        let chunk = tap_rx.recv_timeout(GIVE_UP).expect("tap fell silent");
        tapped.extend_from_slice(&chunk);
    }
    assert!(tapped == sent, "tap bytes differ");
    proxy.stop();
}

#[test]
fn status_replies_go_back_to_the_pos() {
    let mut pos = Pty::new();
    let mut printer = Pty::new();
    let (tap_tx, _tap_rx) = mpsc::channel::<Vec<u8>>();
    let proxy = Proxy::start(pos.spec(), printer.spec(), tap_tx).unwrap();

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
    let (tap_tx, tap_rx) = mpsc::channel::<Vec<u8>>();
    let proxy = Proxy::start(pos.spec(), printer.spec(), tap_tx).unwrap();

    let mut rng = XorShift(7);
    let first = receipt(&mut rng);
    let writer = write_in_chunks(pos.writer(), first.clone(), 11);
    assert!(printer.read_exactly(first.len()) == first);
    writer.join().unwrap();
    let mut tapped = 0;
    while tapped < first.len() {
        tapped += tap_rx.recv_timeout(GIVE_UP).expect("tap fell silent").len();
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
    let (tap_tx, _tap_rx) = mpsc::channel::<Vec<u8>>();
    let proxy = Proxy::start(pos.spec(), printer, tap_tx).unwrap();

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
