//! Barcode scanner framing and classification (pure).
//!
//! A serial scanner sends each scan as printable ASCII followed by a configured
//! suffix (`[scanner] suffix`: `cr`, `lf` or `crlf`). [`ScanFramer`] cuts the byte
//! stream into scans; [`classify`] decides what a scan means for the agent.

use std::collections::VecDeque;

use thiserror::Error;
use till360_shared::coupon;
use till360_shared::{CardError, CardNumber, CardPrefixes};

/// The longest frame we accept; real barcodes are far shorter, so anything longer is
/// noise (or a scanner without a suffix) and is dropped up to the next suffix.
pub const MAX_FRAME: usize = 128;

const CR: u8 = b'\r';
const LF: u8 = b'\n';

/// What ends a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suffix {
    Cr,
    Lf,
    CrLf,
}

impl std::str::FromStr for Suffix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cr" => Ok(Suffix::Cr),
            "lf" => Ok(Suffix::Lf),
            "crlf" => Ok(Suffix::CrLf),
            _ => Err(format!(
                "unknown scanner suffix {s:?}: expected one of \"cr\", \"lf\", \"crlf\""
            )),
        }
    }
}

impl std::fmt::Display for Suffix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Suffix::Cr => "cr",
            Suffix::Lf => "lf",
            Suffix::CrLf => "crlf",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScanError {
    #[error("scan contains non-printable bytes: {0}")]
    Garbage(String),
    #[error("scan longer than {max} bytes ({len} bytes before the suffix): dropped")]
    TooLong { len: usize, max: usize },
    #[error("empty scan")]
    Empty,
    #[error(transparent)]
    Card(#[from] CardError),
}

/// Cuts a scanner's byte stream into scans. Sans-IO: `feed` bytes, `poll` scans.
#[derive(Debug, Clone)]
pub struct ScanFramer {
    suffix: Suffix,
    frame: Vec<u8>,
    /// Bytes of the current frame that did not fit (the frame is dropped at its end).
    overflow: usize,
    /// `crlf`: the previous byte was a CR that may start the suffix.
    /// `cr`: the previous byte ended a frame, so an LF now is the scanner's line end.
    after_cr: bool,
    out: VecDeque<Result<String, ScanError>>,
}

impl ScanFramer {
    pub fn new(suffix: Suffix) -> Self {
        Self {
            suffix,
            frame: Vec::new(),
            overflow: 0,
            after_cr: false,
            out: VecDeque::new(),
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.push(byte);
        }
    }

    /// One framed scan: printable ASCII with surrounding spaces trimmed.
    pub fn poll(&mut self) -> Option<Result<String, ScanError>> {
        self.out.pop_front()
    }

    fn push(&mut self, byte: u8) {
        let after_cr = std::mem::replace(&mut self.after_cr, false);
        match (self.suffix, byte) {
            (Suffix::Cr, CR) => {
                self.end_frame();
                self.after_cr = true;
            }
            // Many scanners are set to CR LF; with `cr` the LF is not part of the next scan.
            (Suffix::Cr, LF) if after_cr => {}
            (Suffix::Lf, LF) => self.end_frame(),
            (Suffix::CrLf, LF) if after_cr => self.end_frame(),
            (Suffix::CrLf, CR) => {
                // A lone CR is held back: it is either the suffix or garbage in the scan.
                if after_cr {
                    self.store(CR);
                }
                self.after_cr = true;
            }
            _ => {
                if after_cr && self.suffix == Suffix::CrLf {
                    self.store(CR);
                }
                self.store(byte);
            }
        }
    }

    fn store(&mut self, byte: u8) {
        if self.frame.len() < MAX_FRAME {
            self.frame.push(byte);
        } else {
            self.overflow += 1;
        }
    }

    fn end_frame(&mut self) {
        let frame = std::mem::take(&mut self.frame);
        let overflow = std::mem::take(&mut self.overflow);
        if overflow > 0 {
            self.out.push_back(Err(ScanError::TooLong {
                len: frame.len() + overflow,
                max: MAX_FRAME,
            }));
            return;
        }
        let trimmed = frame.trim_ascii();
        if trimmed.is_empty() {
            // Blank frames (a suffix on its own, an LF left over) are no scan at all.
            return;
        }
        if trimmed.iter().all(|b| (0x20..0x7F).contains(b)) {
            // All printable ASCII, so valid UTF-8.
            self.out
                .push_back(Ok(String::from_utf8_lossy(trimmed).into_owned()));
        } else {
            self.out.push_back(Err(ScanError::Garbage(escape(trimmed))));
        }
    }
}

/// Shows bytes for a log line: printable ASCII as is, the rest as `\xNN`.
fn escape(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if (0x20..0x7F).contains(&b) {
                char::from(b).to_string()
            } else {
                format!("\\x{b:02X}")
            }
        })
        .collect()
}

/// A scan as the agent uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scan {
    Card(CardNumber),
    /// A coupon code: 24 digits with a valid check digit (not yet verified).
    Coupon(String),
}

/// Classifies a framed scan. A leading AIM symbology identifier (`]E0`, `]E3` ...),
/// which some scanners are configured to send, is ignored. Loyalty cards first; a
/// well-formed coupon code (24 digits, valid check digit) is a coupon; anything else is
/// refused with the card error.
pub fn classify(text: &str, prefixes: &CardPrefixes) -> Result<Scan, ScanError> {
    let mut code = text.trim();
    if let Some(rest) = code.strip_prefix(']') {
        code = rest.get(2..).unwrap_or("");
    }
    if code.is_empty() {
        return Err(ScanError::Empty);
    }
    match prefixes.loyalty_card(code) {
        Ok(card) => Ok(Scan::Card(card)),
        Err(_) if coupon::parse(code).is_ok() => Ok(Scan::Coupon(code.to_string())),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use till360_shared::card::with_check_digit;

    fn scans(suffix: Suffix, bytes: &[u8]) -> Vec<Result<String, ScanError>> {
        let mut framer = ScanFramer::new(suffix);
        framer.feed(bytes);
        std::iter::from_fn(|| framer.poll()).collect()
    }

    fn ok(s: &str) -> Result<String, ScanError> {
        Ok(s.to_string())
    }

    #[test]
    fn suffix_parses_and_names_the_allowed_values() {
        assert_eq!("cr".parse::<Suffix>(), Ok(Suffix::Cr));
        assert_eq!("LF".parse::<Suffix>(), Ok(Suffix::Lf));
        assert_eq!("crlf".parse::<Suffix>(), Ok(Suffix::CrLf));
        let err = "tab".parse::<Suffix>().unwrap_err();
        assert!(err.contains("\"cr\", \"lf\", \"crlf\""), "{err}");
    }

    #[test]
    fn cr_frames_and_ignores_a_following_lf() {
        assert_eq!(
            scans(Suffix::Cr, b"4006381333931\r\n96385074\r 123 \r"),
            vec![ok("4006381333931"), ok("96385074"), ok("123")]
        );
    }

    #[test]
    fn lf_frames_and_trims_a_preceding_cr() {
        assert_eq!(
            scans(Suffix::Lf, b"4006381333931\r\n96385074\n"),
            vec![ok("4006381333931"), ok("96385074")]
        );
    }

    #[test]
    fn crlf_is_not_split_by_a_lone_cr_or_lf() {
        let out = scans(Suffix::CrLf, b"4006\r381333931\r\n12\n34\r\n\r\r\n5\r\n");
        assert_eq!(out.len(), 3, "{out:?}");
        assert!(matches!(&out[0], Err(ScanError::Garbage(g)) if g == "4006\\x0D381333931"));
        assert!(matches!(&out[1], Err(ScanError::Garbage(g)) if g == "12\\x0A34"));
        assert_eq!(out[2], ok("5"));
    }

    #[test]
    fn split_anywhere_gives_the_same_scans() {
        let stream = b"4006381333931\r\n\x00bad\r\n96385074\r\n";
        let whole = scans(Suffix::CrLf, stream);
        let mut framer = ScanFramer::new(Suffix::CrLf);
        let mut one_by_one = Vec::new();
        for b in stream {
            framer.feed(&[*b]);
            one_by_one.extend(std::iter::from_fn(|| framer.poll()));
        }
        assert_eq!(one_by_one, whole);
        assert_eq!(whole.len(), 3);
    }

    #[test]
    fn garbage_is_reported_and_the_next_scan_still_found() {
        let out = scans(Suffix::Cr, b"\x00\xff\x13noise\r4006381333931\r");
        assert!(matches!(&out[0], Err(ScanError::Garbage(g)) if g.starts_with("\\x00\\xFF")));
        assert_eq!(out[1], ok("4006381333931"));
    }

    #[test]
    fn overlong_frames_are_dropped_and_framing_resyncs() {
        let mut stream = vec![b'7'; 1000];
        stream.extend_from_slice(b"\r\n4006381333931\r\n");
        let mut framer = ScanFramer::new(Suffix::CrLf);
        framer.feed(&stream);
        assert_eq!(
            framer.poll(),
            Some(Err(ScanError::TooLong {
                len: 1000,
                max: MAX_FRAME
            }))
        );
        assert!(framer.frame.capacity() <= 2 * MAX_FRAME);
        assert_eq!(framer.poll(), Some(ok("4006381333931")));
        assert_eq!(framer.poll(), None);
    }

    #[test]
    fn classify_accepts_only_loyalty_cards() {
        let prefixes = CardPrefixes::new(["2401"]).unwrap();
        let card = with_check_digit("240100000012").unwrap();
        assert_eq!(
            classify(&card, &prefixes),
            Ok(Scan::Card(CardNumber::parse(&card).unwrap()))
        );
        assert_eq!(
            classify(&format!("]E0{card}"), &prefixes),
            Ok(Scan::Card(CardNumber::parse(&card).unwrap()))
        );
        assert!(matches!(
            classify("4006381333931", &prefixes),
            Err(ScanError::Card(CardError::NotLoyalty(_)))
        ));
        let mut bad = card.clone().into_bytes();
        bad[12] = b'0' + (bad[12] - b'0' + 1) % 10;
        assert!(matches!(
            classify(std::str::from_utf8(&bad).unwrap(), &prefixes),
            Err(ScanError::Card(CardError::BadCheckDigit { .. }))
        ));
        assert!(matches!(
            classify("HELLO", &prefixes),
            Err(ScanError::Card(CardError::NotDigits(_)))
        ));
        assert_eq!(classify("  ", &prefixes), Err(ScanError::Empty));
    }

    #[test]
    fn classify_knows_coupon_codes_by_their_check_digit() {
        let prefixes = CardPrefixes::new(["2401"]).unwrap();
        let key = coupon::TillKey::from_bytes([7; 32]);
        let expires = chrono::NaiveDate::from_ymd_opt(2026, 12, 9).unwrap();
        let fields = coupon::CouponFields::new(5, 1, expires, 2).unwrap();
        let code = coupon::mint(&key, &fields).as_str().to_string();
        assert_eq!(
            classify(&format!("]C0{code}"), &prefixes),
            Ok(Scan::Coupon(code.clone()))
        );
        // One digit misread: not a coupon, and refused like any other unknown scan.
        let mut misread = code.into_bytes();
        misread[5] = b'0' + (misread[5] - b'0' + 1) % 10;
        assert!(matches!(
            classify(std::str::from_utf8(&misread).unwrap(), &prefixes),
            Err(ScanError::Card(_))
        ));
    }

    proptest! {
        /// Whatever noise comes first, a good scan after a suffix is still found.
        #[test]
        fn noise_never_hides_the_next_good_scan(
            noise in proptest::collection::vec(any::<u8>(), 0..400),
            suffix in prop_oneof![Just(Suffix::Cr), Just(Suffix::Lf), Just(Suffix::CrLf)],
        ) {
            let end: &[u8] = match suffix {
                Suffix::Cr => b"\r",
                Suffix::Lf => b"\n",
                Suffix::CrLf => b"\r\n",
            };
            let mut stream = noise.clone();
            stream.extend_from_slice(end);
            stream.extend_from_slice(b"4006381333931");
            stream.extend_from_slice(end);
            let out = scans(suffix, &stream);
            prop_assert_eq!(out.last(), Some(&ok("4006381333931")));
        }
    }
}
