//! Cutting a scanner's byte stream into scans (pure, bounded, check-then-parse).
//!
//! A serial scanner sends each scan as ASCII followed by a configured suffix
//! (`[scanner] suffix`: `cr`, `lf`, `crlf`) or wrapped in STX … ETX (`stx_etx`).
//! Whatever does not make a clean frame — stray bytes between scans, a half scan cut by
//! an unplug, an over-long line — comes out as a [`ScanError`] diagnostic for the caller
//! to log, and the framer resyncs on the next frame. Memory stays bounded by
//! [`MAX_FRAME`] whatever the input.

use std::collections::VecDeque;

use super::ScanError;

/// The longest frame we accept; real barcodes are far shorter (a GS1 element string
/// tops out near 100), so anything longer is noise or a scanner without a suffix, and is
/// dropped up to the next frame end.
pub const MAX_FRAME: usize = 128;

const CR: u8 = b'\r';
const LF: u8 = b'\n';
const STX: u8 = 0x02;
const ETX: u8 = 0x03;
/// FNC1 as scanners transmit it inside GS1 element strings.
pub const GS: u8 = 0x1D;

/// What ends (or wraps) a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suffix {
    Cr,
    Lf,
    CrLf,
    /// STX before the scan, ETX after it.
    StxEtx,
}

impl std::str::FromStr for Suffix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cr" => Ok(Suffix::Cr),
            "lf" => Ok(Suffix::Lf),
            "crlf" => Ok(Suffix::CrLf),
            "stx_etx" => Ok(Suffix::StxEtx),
            _ => Err(format!(
                "unknown scanner suffix {s:?}: expected one of \"cr\", \"lf\", \"crlf\", \"stx_etx\""
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
            Suffix::StxEtx => "stx_etx",
        })
    }
}

/// Cuts a scanner's byte stream into scans. Sans-IO: `feed` bytes, `poll` scans.
#[derive(Debug, Clone)]
pub struct ScanFramer {
    suffix: Suffix,
    pub(super) frame: Vec<u8>,
    /// Bytes of the current frame that did not fit (the frame is dropped at its end).
    overflow: usize,
    /// `crlf`: the previous byte was a CR that may start the suffix.
    /// `cr`: the previous byte ended a frame, so an LF now is the scanner's line end.
    after_cr: bool,
    /// `stx_etx`: between an STX and its ETX.
    in_frame: bool,
    /// `stx_etx`: bytes seen outside any frame since the last report.
    stray: usize,
    out: VecDeque<Result<String, ScanError>>,
}

impl ScanFramer {
    pub fn new(suffix: Suffix) -> Self {
        Self {
            suffix,
            frame: Vec::with_capacity(MAX_FRAME),
            overflow: 0,
            after_cr: false,
            in_frame: false,
            stray: 0,
            out: VecDeque::new(),
        }
    }

    pub fn suffix(&self) -> Suffix {
        self.suffix
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            match self.suffix {
                Suffix::StxEtx => self.push_stx_etx(byte),
                _ => self.push_line(byte),
            }
        }
    }

    /// One framed scan: ASCII (GS allowed, for GS1) with surrounding spaces trimmed.
    /// Each queued item stems from fed bytes, so the queue is bounded by what the caller
    /// fed since its last `poll`.
    pub fn poll(&mut self) -> Option<Result<String, ScanError>> {
        self.out.pop_front()
    }

    /// The port went away: whatever was half received is reported as cut, so a scan
    /// interrupted by an unplug never glues onto the first scan after the replug.
    pub fn finish(&mut self) {
        let frame = std::mem::take(&mut self.frame);
        let overflow = std::mem::take(&mut self.overflow);
        let stray = std::mem::take(&mut self.stray);
        let pending_cr = std::mem::take(&mut self.after_cr) && self.suffix == Suffix::CrLf;
        let in_frame = std::mem::take(&mut self.in_frame);
        let len = frame.len() + overflow + usize::from(pending_cr);
        if stray > 0 {
            self.emit(Err(ScanError::Stray { len: stray }));
        }
        if len > 0 && (in_frame || self.suffix != Suffix::StxEtx) {
            self.emit(Err(ScanError::Cut {
                partial: escape(&frame),
                len,
            }));
        }
    }

    fn push_line(&mut self, byte: u8) {
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

    fn push_stx_etx(&mut self, byte: u8) {
        match (self.in_frame, byte) {
            (false, STX) => {
                self.report_stray();
                self.in_frame = true;
            }
            // Line ends after ETX are common (STX … ETX CR LF) and are not noise.
            (false, CR | LF) => {}
            (false, _) => self.stray = self.stray.saturating_add(1),
            (true, ETX) => {
                self.in_frame = false;
                self.end_frame();
            }
            (true, STX) => {
                // A new frame before the old one ended: the old one was cut short.
                let frame = std::mem::take(&mut self.frame);
                let len = frame.len() + std::mem::take(&mut self.overflow);
                if len > 0 {
                    self.emit(Err(ScanError::Cut {
                        partial: escape(&frame),
                        len,
                    }));
                }
            }
            (true, _) => self.store(byte),
        }
    }

    fn report_stray(&mut self) {
        let stray = std::mem::take(&mut self.stray);
        if stray > 0 {
            self.emit(Err(ScanError::Stray { len: stray }));
        }
    }

    fn store(&mut self, byte: u8) {
        if self.frame.len() < MAX_FRAME {
            self.frame.push(byte);
        } else {
            self.overflow = self.overflow.saturating_add(1);
        }
    }

    fn emit(&mut self, item: Result<String, ScanError>) {
        self.out.push_back(item);
    }

    fn end_frame(&mut self) {
        let frame = std::mem::take(&mut self.frame);
        let overflow = std::mem::take(&mut self.overflow);
        if overflow > 0 {
            self.emit(Err(ScanError::TooLong {
                len: frame.len().saturating_add(overflow),
                max: MAX_FRAME,
            }));
            return;
        }
        let mut body = frame.trim_ascii();
        // A scanner set to STX/ETX *and* a line suffix: the wrapper is not part of the scan.
        if self.suffix != Suffix::StxEtx {
            body = body.strip_prefix(&[STX]).unwrap_or(body);
            body = body.strip_suffix(&[ETX]).unwrap_or(body);
            body = body.trim_ascii();
        }
        if body.is_empty() {
            // Blank frames (a suffix on its own, an LF left over) are no scan at all.
            return;
        }
        if body.iter().all(|&b| (0x20..0x7F).contains(&b) || b == GS) {
            // All ASCII, so valid UTF-8.
            self.emit(Ok(String::from_utf8_lossy(body).into_owned()));
        } else {
            self.emit(Err(ScanError::Garbage(escape(body))));
        }
    }
}

/// Shows bytes for a log line: printable ASCII as is, the rest as `\xNN`.
pub(super) fn escape(bytes: &[u8]) -> String {
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
