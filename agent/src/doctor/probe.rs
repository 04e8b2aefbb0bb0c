//! What the bytes a port sent mean (pure): the scanner's framing, the printer's status
//! reply, whether the POS side speaks ESC/POS, and a short preview for people.

#![deny(clippy::disallowed_methods)]

use serde::Serialize;

use crate::escpos::{EscPosParser, PrintEvent};

const STX: u8 = 0x02;
const ETX: u8 = 0x03;
const CR: u8 = b'\r';
const LF: u8 = b'\n';

/// `DLE EOT 1`: transmit printer status (one byte back).
pub const PRINTER_STATUS_REQUEST: [u8; 3] = [0x10, 0x04, 0x01];

/// How many scans / lines / diagnostics a report lists (the counts are complete).
const LISTED: usize = 5;

/// How a scanner ends (or wraps) each scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    Cr,
    Lf,
    CrLf,
    StxEtx,
}

impl Framing {
    /// The name as `[scanner] suffix` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Framing::Cr => "cr",
            Framing::Lf => "lf",
            Framing::CrLf => "crlf",
            Framing::StxEtx => "stx_etx",
        }
    }
}

impl std::fmt::Display for Framing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The framing guess for a scanner's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScannerGuess {
    /// `None`: no suffix or STX/ETX seen (nothing scanned, or the scanner sends none).
    pub framing: Option<Framing>,
    /// The first AIM symbology identifier seen at the start of a scan (`]E0`, `]C1`, ...).
    pub aim: Option<String>,
    /// The configured `[scanner] suffix`.
    pub configured: String,
    /// Whether the guess equals the configured suffix; `None` when there is no guess.
    pub matches_config: Option<bool>,
    /// Complete scans seen.
    pub scans: usize,
    /// The first few scans, framing removed, escaped for printing.
    pub first_scans: Vec<String>,
    /// Bytes after the last complete scan (a half scan, or a scanner without suffix).
    pub trailing: usize,
}

/// Guesses the framing of `bytes` a scanner sent; `configured` is `[scanner] suffix`.
pub fn guess_scanner(bytes: &[u8], configured: &str) -> ScannerGuess {
    let (framing, frames, trailing) = match split_stx_etx(bytes) {
        Some((frames, trailing)) => (Some(Framing::StxEtx), frames, trailing),
        None => match suffix_by_count(bytes) {
            Some(framing) => {
                let (frames, trailing) = split_suffix(bytes, framing);
                (Some(framing), frames, trailing)
            }
            None => (None, Vec::new(), bytes.len()),
        },
    };
    let aim = frames.iter().find_map(|f| aim_identifier(f));
    ScannerGuess {
        framing,
        aim,
        configured: configured.to_string(),
        matches_config: framing.map(|f| f.name() == configured.trim().to_ascii_lowercase()),
        scans: frames.len(),
        first_scans: frames.iter().take(LISTED).map(|f| escape(f)).collect(),
        trailing,
    }
}

/// `]` + symbology letter + modifier: the AIM identifier some scanners put before the data.
pub fn aim_identifier(scan: &[u8]) -> Option<String> {
    match scan {
        [b']', code, modifier, ..]
            if code.is_ascii_alphabetic() && modifier.is_ascii_alphanumeric() =>
        {
            Some(String::from_utf8_lossy(&scan[..3]).into_owned())
        }
        _ => None,
    }
}

/// Scans between STX and ETX; `None` when no STX…ETX pair is there. Bytes outside the
/// pairs (a CR some scanners add after ETX) are ignored; an open STX is trailing.
fn split_stx_etx(bytes: &[u8]) -> Option<(Vec<&[u8]>, usize)> {
    let mut frames = Vec::new();
    let mut start = None;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            STX => start = Some(i + 1),
            ETX => {
                if let Some(s) = start.take() {
                    frames.push(&bytes[s..i]);
                }
            }
            _ => {}
        }
    }
    if frames.is_empty() {
        return None;
    }
    let trailing = start.map_or(0, |s| bytes.len() - s + 1);
    Some((frames, trailing))
}

/// The line end used most often; ties go to the longer suffix (CR LF over CR over LF),
/// since a CR LF scanner is also "a CR scanner" to a careless count.
fn suffix_by_count(bytes: &[u8]) -> Option<Framing> {
    let (mut cr, mut lf, mut crlf) = (0usize, 0usize, 0usize);
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1)) {
            (CR, Some(&LF)) => {
                crlf += 1;
                i += 1;
            }
            (CR, _) => cr += 1,
            (LF, _) => lf += 1,
            _ => {}
        }
        i += 1;
    }
    [(crlf, Framing::CrLf), (cr, Framing::Cr), (lf, Framing::Lf)]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        // max_by_key keeps the last of equals: reverse so the earlier (longer) one wins.
        .rev()
        .max_by_key(|(n, _)| *n)
        .map(|(_, f)| f)
}

fn split_suffix(bytes: &[u8], framing: Framing) -> (Vec<&[u8]>, usize) {
    let suffix: &[u8] = match framing {
        Framing::Cr => b"\r",
        Framing::Lf => b"\n",
        Framing::CrLf => b"\r\n",
        Framing::StxEtx => return (Vec::new(), bytes.len()),
    };
    let mut frames = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + suffix.len() <= bytes.len() {
        if &bytes[i..i + suffix.len()] == suffix {
            let frame = &bytes[start..i];
            // The other half of a CR LF line end under a CR or LF guess is not a scan.
            let frame = frame.strip_prefix(b"\n").unwrap_or(frame);
            let frame = frame.strip_suffix(b"\r").unwrap_or(frame);
            if !frame.is_empty() {
                frames.push(frame);
            }
            i += suffix.len();
            start = i;
        } else {
            i += 1;
        }
    }
    let rest = &bytes[start..];
    let rest = rest.strip_prefix(b"\n").unwrap_or(rest);
    (frames, rest.len())
}

/// The printer's answer to `DLE EOT 1`, bit by bit (Epson ESC/POS reference).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PrinterStatus {
    pub byte: u8,
    pub online: bool,
    /// Drawer kick-out connector pin 3 is high (on most drawers: the drawer is open).
    pub drawer_pin3_high: bool,
    pub waiting_for_recovery: bool,
    pub feed_button_pressed: bool,
}

impl PrinterStatus {
    /// Decodes one byte; `None` when its fixed bits (`0xx1xx10`) say it is not a
    /// `DLE EOT 1` reply (an ASB message, XON/XOFF, noise).
    pub fn decode(byte: u8) -> Option<Self> {
        if byte & 0b1001_0011 != 0b0001_0010 {
            return None;
        }
        Some(Self {
            byte,
            online: byte & 0b0000_1000 == 0,
            drawer_pin3_high: byte & 0b0000_0100 != 0,
            waiting_for_recovery: byte & 0b0010_0000 != 0,
            feed_button_pressed: byte & 0b0100_0000 != 0,
        })
    }

    /// The first byte of `reply` that is a status byte.
    pub fn find(reply: &[u8]) -> Option<Self> {
        reply.iter().find_map(|&b| Self::decode(b))
    }
}

impl std::fmt::Display for PrinterStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "0x{:02x}: {}",
            self.byte,
            if self.online { "online" } else { "offline" }
        )?;
        if self.waiting_for_recovery {
            f.write_str(", waiting for online recovery")?;
        }
        if self.feed_button_pressed {
            f.write_str(", feed button pressed")?;
        }
        if self.drawer_pin3_high {
            f.write_str(", drawer pin 3 high")?;
        }
        Ok(())
    }
}

/// What the agent's ESC/POS parser made of the POS side's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EscPosSummary {
    pub looks_like_escpos: bool,
    /// Multi-byte commands started (ESC, GS, FS, DLE sequences).
    pub commands: usize,
    pub lines: usize,
    pub cuts: usize,
    pub status_requests: usize,
    pub diagnostics: usize,
    /// The stream stopped inside a command (a print job still being sent).
    pub ends_in_command: bool,
    pub first_lines: Vec<String>,
    pub first_diagnostics: Vec<String>,
}

/// Runs the POS side's bytes through `parser`, set up as the agent sets up its own.
pub fn summarize_escpos(bytes: &[u8], mut parser: EscPosParser) -> EscPosSummary {
    let mut summary = EscPosSummary {
        looks_like_escpos: false,
        commands: 0,
        lines: 0,
        cuts: 0,
        status_requests: 0,
        diagnostics: 0,
        ends_in_command: false,
        first_lines: Vec::new(),
        first_diagnostics: Vec::new(),
    };
    // Byte by byte: every multi-byte command leaves the parser "in a command" after its
    // first byte, so rising edges count commands without knowing the table.
    let mut in_command = false;
    for &byte in bytes {
        parser.feed(&[byte]);
        let now = parser.in_command();
        if now && !in_command {
            summary.commands += 1;
        }
        in_command = now;
        while let Some(event) = parser.poll() {
            match event {
                PrintEvent::Line(text) => {
                    summary.lines += 1;
                    if summary.first_lines.len() < LISTED && !text.trim().is_empty() {
                        summary.first_lines.push(text);
                    }
                }
                PrintEvent::Cut { .. } => summary.cuts += 1,
                PrintEvent::StatusRequest { .. } => summary.status_requests += 1,
                PrintEvent::Diagnostic(text) => {
                    summary.diagnostics += 1;
                    if summary.first_diagnostics.len() < LISTED {
                        summary.first_diagnostics.push(text);
                    }
                }
            }
        }
    }
    summary.ends_in_command = in_command;
    // Plain text with the odd control byte is not ESC/POS; a stream of unknown
    // commands is not either.
    summary.looks_like_escpos = summary.commands > 0 && summary.diagnostics < summary.commands;
    summary
}

/// The first bytes as hex and as escaped text, for a person to recognise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Preview {
    pub hex: String,
    pub text: String,
    /// More bytes were seen than the preview shows.
    pub truncated: bool,
}

pub fn preview(bytes: &[u8], max: usize) -> Preview {
    let shown = &bytes[..bytes.len().min(max)];
    Preview {
        hex: shown
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" "),
        text: escape(shown),
        truncated: bytes.len() > shown.len(),
    }
}

/// Printable ASCII as is, everything else as `\r`, `\n`, `\t` or `\xNN`.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}
