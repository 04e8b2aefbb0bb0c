//! Real-time requests (`DLE EOT n [a]`, `DLE ENQ n`) in the POS stream, and what an
//! off-line printer answers to them (sans-IO).
//!
//! A printer acts on `10 04 n` wherever it appears in its input, even inside another
//! command's data (the Epson reference warns about exactly that), so a byte-level scan
//! with no command context is what a printer does too.

#![deny(clippy::disallowed_methods)]

const DLE: u8 = 0x10;
const EOT: u8 = 0x04;
const ENQ: u8 = 0x05;

/// A real-time request the POS sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RealTimeRequest {
    /// `DLE EOT n`, or `DLE EOT n a` for n 7 (ink status) and 8 (peeler status):
    /// transmit real-time status.
    Status { n: u8, a: Option<u8> },
    /// `DLE ENQ n`: a request to the printer (recover from an error, restart); it is
    /// never answered. Recognised so its `n` is read as its argument, as a printer
    /// reads it, never as text or the start of something else.
    Enq { n: u8 },
}

/// Where a request found in the stream has got to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Seen {
    #[default]
    Nothing,
    Dle,
    DleEot,
    /// `DLE EOT n` with n 7 or 8: its argument `a` comes next.
    DleEotN(u8),
    DleEnq,
}

/// Finds real-time requests, also when one is split across chunks.
#[derive(Debug, Default)]
pub struct StatusRequests {
    seen: Seen,
}

impl StatusRequests {
    /// Feeds POS bytes; returns every request completed in them, in order.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<RealTimeRequest> {
        let mut requests = Vec::new();
        for &byte in bytes {
            let (done, next) = match (self.seen, byte) {
                (Seen::DleEot, n @ (7 | 8)) => (None, Seen::DleEotN(n)),
                (Seen::DleEot, n) => (Some(RealTimeRequest::Status { n, a: None }), Seen::Nothing),
                (Seen::DleEotN(n), a) => (
                    Some(RealTimeRequest::Status { n, a: Some(a) }),
                    Seen::Nothing,
                ),
                (Seen::DleEnq, n) => (Some(RealTimeRequest::Enq { n }), Seen::Nothing),
                (Seen::Dle, EOT) => (None, Seen::DleEot),
                (Seen::Dle, ENQ) => (None, Seen::DleEnq),
                _ => (None, Seen::Nothing),
            };
            // An argument byte that is DLE may start the next request: a request with
            // such an argument is answered by nothing, so scanning on loses nothing.
            self.seen = match next {
                Seen::Nothing if byte == DLE => Seen::Dle,
                next => next,
            };
            requests.extend(done);
        }
        requests
    }
}

/// The byte a printer that is off line sends for a request, per the Epson ESC/POS
/// reference (every status byte has bits 1 and 4 set, bits 0 and 7 clear). `None` for
/// requests a printer does not answer: `DLE ENQ`, and `n`/`a` outside the reference.
///
/// | request   | status            | answer | bits set                                  |
/// |-----------|-------------------|--------|-------------------------------------------|
/// | `EOT 1`   | printer           | `0x1A` | bit 3: off-line                           |
/// | `EOT 2`   | off-line cause    | `0x52` | bit 6: error occurred                     |
/// | `EOT 3`   | error cause       | `0x52` | bit 6: automatically recoverable error    |
/// | `EOT 4`   | roll paper sensor | `0x12` | none: paper present (we cannot know more) |
/// | `EOT 7 1` | ink A (1st color) | `0x12` | none: no near-end, no end, cartridge in   |
/// | `EOT 7 2` | ink B (2nd color) | `0x12` | none: no near-end, no end, cartridge in   |
/// | `EOT 8 3` | peeler            | `0x12` | none: no label waiting, paper at peeler   |
///
/// The error is "automatically recoverable" because the agent reconnects by itself: the
/// POS should wait and retry, not ask the cashier to power-cycle the printer. The ink
/// and peeler statuses have no off-line bit (bits 2, 3, 5 report near-end, end and a
/// missing cartridge; bits 2 and 5 a label waiting to be taken and no paper at the
/// peeler), so the off-line state is told by `EOT 1..3`; here they say "nothing wrong",
/// as for the paper sensor, rather than invent a fault the POS would show the cashier.
pub fn offline_status(request: RealTimeRequest) -> Option<u8> {
    const FIXED: u8 = 0x12;
    match request {
        RealTimeRequest::Status { n: 1, a: None } => Some(FIXED | 0x08),
        RealTimeRequest::Status { n: 2 | 3, a: None } => Some(FIXED | 0x40),
        RealTimeRequest::Status { n: 4, a: None } => Some(FIXED),
        RealTimeRequest::Status {
            n: 7,
            a: Some(1 | 2),
        } => Some(FIXED),
        RealTimeRequest::Status { n: 8, a: Some(3) } => Some(FIXED),
        RealTimeRequest::Status { .. } | RealTimeRequest::Enq { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(n: u8) -> RealTimeRequest {
        RealTimeRequest::Status { n, a: None }
    }

    fn status_of(n: u8, a: u8) -> RealTimeRequest {
        RealTimeRequest::Status { n, a: Some(a) }
    }

    /// Streams, the requests in them and the off-line answers they get.
    fn cases() -> Vec<(&'static [u8], Vec<RealTimeRequest>, Vec<u8>)> {
        vec![
            (b"abc\x10\x04\x01def", vec![status(1)], vec![0x1A]),
            (
                b"\x10\x04\x02\x10\x04\x03\x10\x04\x04",
                vec![status(2), status(3), status(4)],
                vec![0x52, 0x52, 0x12],
            ),
            // Ink status A and B and the peeler status carry one more byte.
            (
                b"\x10\x04\x07\x01\x10\x04\x07\x02\x10\x04\x08\x03",
                vec![status_of(7, 1), status_of(7, 2), status_of(8, 3)],
                vec![0x12, 0x12, 0x12],
            ),
            // That byte is theirs: `a` = 4 or 1 after it is not read as text or as `n`.
            (
                b"\x10\x04\x07\x04\x10\x04\x08\x01x",
                vec![status_of(7, 4), status_of(8, 1)],
                vec![],
            ),
            // DLE ENQ n: recognised, never answered, its n is its own.
            (
                b"\x10\x05\x01\x10\x05\x02\x10\x04\x01",
                vec![
                    RealTimeRequest::Enq { n: 1 },
                    RealTimeRequest::Enq { n: 2 },
                    status(1),
                ],
                vec![0x1A],
            ),
            // DLE DLE EOT n is still a request (the second DLE starts it).
            (b"\x10\x10\x04\x03", vec![status(3)], vec![0x52]),
            // An argument that is DLE may start the next request.
            (
                b"\x10\x04\x10\x04\x01\x10\x04\x07\x10\x04\x02\x10\x05\x10\x04\x04",
                vec![
                    status(0x10),
                    status(1),
                    status_of(7, 0x10),
                    status(2),
                    RealTimeRequest::Enq { n: 0x10 },
                    status(4),
                ],
                vec![0x1A, 0x52, 0x12],
            ),
            // Other real-time commands and near misses are no requests.
            (
                b"\x04\x01\x10\x14\x01\x00\x01\x10x\x04\x01\x1b\x04\x01",
                vec![],
                vec![],
            ),
            // Out of range: recognised as requests, not answered.
            (
                b"\x10\x04\x00\x10\x04\x05\x10\x04\xff",
                vec![status(0), status(5), status(0xff)],
                vec![],
            ),
        ]
    }

    /// Feeds `bytes` cut before every index in `cuts` (a bit mask over the gaps).
    fn feed_cut(bytes: &[u8], cuts: u32) -> Vec<RealTimeRequest> {
        let mut requests = StatusRequests::default();
        let mut found = Vec::new();
        let mut start = 0;
        for end in 1..bytes.len() {
            if cuts & (1 << (end - 1)) != 0 {
                found.extend(requests.feed(&bytes[start..end]));
                start = end;
            }
        }
        found.extend(requests.feed(&bytes[start..]));
        found
    }

    #[test]
    fn requests_are_found_and_answered_in_any_chunking() {
        for (bytes, expected, answers) in cases() {
            // Every chunking: each gap between two bytes cut or not.
            let gaps = bytes.len() - 1;
            assert!(gaps <= 16, "keep the cases short");
            for cuts in 0..1u32 << gaps {
                let found = feed_cut(bytes, cuts);
                assert_eq!(found, expected, "{bytes:02x?} cut by {cuts:b}");
            }
            let answered: Vec<u8> = expected.iter().filter_map(|r| offline_status(*r)).collect();
            assert_eq!(answered, answers, "{bytes:02x?}");
        }
    }

    #[test]
    fn a_request_split_in_the_middle_waits_for_its_last_byte() {
        let mut requests = StatusRequests::default();
        assert_eq!(requests.feed(b"\x10\x04\x07"), vec![]);
        assert_eq!(requests.feed(b"\x01"), vec![status_of(7, 1)]);
        assert_eq!(requests.feed(b"\x10\x05"), vec![]);
        assert_eq!(
            requests.feed(b"\x02\x10"),
            vec![RealTimeRequest::Enq { n: 2 }]
        );
        assert_eq!(requests.feed(b"\x04"), vec![]);
        assert_eq!(requests.feed(b"\x08\x03"), vec![status_of(8, 3)]);
    }

    #[test]
    fn offline_answers_follow_the_reference() {
        let answered = [
            (status(1), 0x1A),
            (status(2), 0x52),
            (status(3), 0x52),
            (status(4), 0x12),
            (status_of(7, 1), 0x12),
            (status_of(7, 2), 0x12),
            (status_of(8, 3), 0x12),
        ];
        for (request, answer) in answered {
            assert_eq!(offline_status(request), Some(answer), "{request:?}");
            // Bits 1 and 4 on, 0 and 7 off: how a POS tells a status byte from others.
            assert_eq!(answer & 0x93, 0x12, "fixed bits of {request:?}");
        }
        let unanswered = [
            status(0),
            status(5),
            status(0x10),
            status(0xff),
            status_of(7, 0),
            status_of(7, 3),
            status_of(8, 1),
            status_of(8, 2),
            status_of(8, 4),
            RealTimeRequest::Enq { n: 1 },
            RealTimeRequest::Enq { n: 2 },
        ];
        for request in unanswered {
            assert_eq!(offline_status(request), None, "{request:?}");
        }
    }
}
