//! The barcode scanner: types card numbers into its serial port, with a suffix.

use std::io;
use std::time::{Duration, Instant};

use till360_shared::card::with_check_digit;

use super::pty::VirtualPort;
use super::rng::SimRng;

/// The loyalty-card prefix the simulated cards carry (`[cards] prefixes`).
pub const CARD_PREFIX: &str = "2401";

/// What the scanner appends to each code (`[scanner] suffix`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suffix {
    Cr,
    Lf,
    CrLf,
}

impl Suffix {
    pub fn bytes(self) -> &'static [u8] {
        match self {
            Suffix::Cr => b"\r",
            Suffix::Lf => b"\n",
            Suffix::CrLf => b"\r\n",
        }
    }

    /// The config spelling.
    pub fn as_config(self) -> &'static str {
        match self {
            Suffix::Cr => "cr",
            Suffix::Lf => "lf",
            Suffix::CrLf => "crlf",
        }
    }
}

/// The loyalty card number `n` (an EAN-13 with the loyalty prefix).
pub fn card_number(n: u64) -> String {
    let body = format!("{CARD_PREFIX}{:08}", n % 100_000_000);
    with_check_digit(&body).expect("a body of digits always gets a check digit")
}

/// The same card with a wrong check digit.
pub fn with_bad_check_digit(card: &str) -> String {
    let mut s = card.to_string();
    if let Some(last) = s.pop() {
        let d = last.to_digit(10).unwrap_or(0);
        s.push(char::from_digit((d + 1) % 10, 10).unwrap_or('0'));
    }
    s
}

/// A scanner on the master side of a virtual port.
pub struct ScannerSimulator<'a> {
    port: &'a VirtualPort,
    suffix: Suffix,
}

impl<'a> ScannerSimulator<'a> {
    pub fn new(port: &'a VirtualPort, suffix: Suffix) -> Self {
        Self { port, suffix }
    }

    /// Scans `code` (a card or a misread number) and sends the suffix.
    pub fn scan(&self, code: &str) -> io::Result<()> {
        self.scan_bytes(code.as_bytes())
    }

    /// Sends raw bytes and the suffix, as a misbehaving scanner would.
    pub fn scan_bytes(&self, bytes: &[u8]) -> io::Result<()> {
        let mut out = bytes.to_vec();
        out.extend_from_slice(self.suffix.bytes());
        self.port
            .write_all_by(&out, Instant::now() + Duration::from_secs(10))
    }
}

/// Line noise a bad read might produce: random bytes without CR or LF (so it stays
/// one frame).
pub fn garbage(rng: &mut SimRng) -> Vec<u8> {
    let len = rng.range(1, 20) as usize;
    (0..len)
        .map(|_| match rng.next_u64() as u8 {
            b'\r' | b'\n' => b'?',
            b => b,
        })
        .collect()
}
