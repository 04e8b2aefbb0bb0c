//! Real-time status requests (`DLE EOT n`) in the POS stream, and what an off-line
//! printer answers to them (sans-IO).
//!
//! A printer acts on `10 04 n` wherever it appears in its input, even inside another
//! command's data (the Epson reference warns about exactly that), so a byte-level scan
//! with no command context is what a printer does too.

const DLE: u8 = 0x10;
const EOT: u8 = 0x04;

/// Finds `DLE EOT n` requests, also when one is split across chunks.
#[derive(Debug, Default)]
pub struct StatusRequests {
    /// Bytes of a request seen so far: 0, 1 (DLE) or 2 (DLE EOT).
    seen: u8,
}

impl StatusRequests {
    /// Feeds POS bytes; returns the `n` of every request completed in them, in order.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut requests = Vec::new();
        for &byte in bytes {
            self.seen = match (self.seen, byte) {
                (2, n) => {
                    requests.push(n);
                    u8::from(n == DLE)
                }
                (1, EOT) => 2,
                (_, DLE) => 1,
                _ => 0,
            };
        }
        requests
    }
}

/// The byte a printer that is off line sends for `DLE EOT n`, per the Epson ESC/POS
/// reference (bits 1 and 4 are fixed to 1 in every status byte). `None` for requests
/// an off-line printer would not answer this way (n = 7/8 take another byte and report
/// ink/peripherals; anything else is out of range and ignored by a printer).
///
/// | n | status            | answer | bits set                                  |
/// |---|-------------------|--------|-------------------------------------------|
/// | 1 | printer           | `0x1A` | bit 3: off-line                           |
/// | 2 | off-line cause    | `0x52` | bit 6: error occurred                     |
/// | 3 | error cause       | `0x52` | bit 6: automatically recoverable error    |
/// | 4 | roll paper sensor | `0x12` | none: paper present (we cannot know more) |
///
/// The error is "automatically recoverable" because the agent reconnects by itself: the
/// POS should wait and retry, not ask the cashier to power-cycle the printer.
pub fn offline_status(n: u8) -> Option<u8> {
    const FIXED: u8 = 0x12;
    match n {
        1 => Some(FIXED | 0x08),
        2 | 3 => Some(FIXED | 0x40),
        4 => Some(FIXED),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_requests_anywhere_and_across_chunks() {
        let mut requests = StatusRequests::default();
        assert_eq!(requests.feed(b"abc\x10\x04\x01def\x10"), vec![1]);
        assert_eq!(requests.feed(b"\x04"), Vec::<u8>::new());
        assert_eq!(requests.feed(b"\x02\x10\x10\x04\x04"), vec![2, 4]);
        // DLE DLE EOT n is still a request (the second DLE starts it).
        assert_eq!(requests.feed(b"\x10\x10\x04\x03"), vec![3]);
        // A request whose n is DLE: the DLE may start the next request.
        assert_eq!(requests.feed(b"\x10\x04\x10\x04\x01"), vec![0x10, 1]);
        assert_eq!(requests.feed(b"\x04\x01\x10\x05\x01"), Vec::<u8>::new());
    }

    #[test]
    fn offline_answers_follow_the_reference() {
        assert_eq!(offline_status(1), Some(0x1A));
        assert_eq!(offline_status(2), Some(0x52));
        assert_eq!(offline_status(3), Some(0x52));
        assert_eq!(offline_status(4), Some(0x12));
        for n in [0, 5, 7, 8, 0x10, 0xff] {
            assert_eq!(offline_status(n), None, "n = {n}");
        }
        for n in 1..=4 {
            let status = offline_status(n).unwrap();
            assert_eq!(status & 0x93, 0x12, "fixed bits of n = {n}");
        }
    }
}
