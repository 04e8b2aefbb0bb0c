//! The streaming text extractor: bytes in (split anywhere), print events out.

use std::collections::VecDeque;

use super::codepage::{CodePage, EscTTable, NationalSet};
use super::commands::{
    dle_dc4_args, lookup, prefix_name, unknown_function, Args, Command, Effect, Lookup, DLE, ESC,
    FS, GS,
};

const LF: u8 = 0x0A;
const CR: u8 = 0x0D;
const HT: u8 = 0x09;
const FF: u8 = 0x0C;
/// Page mode: cancel the print data of the page.
const CAN: u8 = 0x18;
const DEL: u8 = 0x7F;

/// A line longer than this (in characters) is emitted in pieces, so a POS that never
/// sends a line feed cannot make the parser grow without bound.
pub const MAX_LINE_CHARS: usize = 1024;
/// A page-mode page holding more text than this (in characters) is emitted early, so
/// a POS that never prints its page cannot make the parser grow without bound.
pub const MAX_PAGE_CHARS: usize = 16 * 1024;
/// `GS D` arguments before the BMP file.
const BMP_ARGS: usize = 7;
/// NUL-terminated barcode data longer than this is not a barcode: give up skipping.
const MAX_BARCODE_DATA: u16 = 255;

/// What the text extractor saw in the print stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrintEvent {
    /// A printed text line (ended by LF, CR LF, ESC d n / ESC J n print-and-feed, FF);
    /// trailing spaces trimmed.
    Line(String),
    /// A cut (GS V m [n], ESC i, ESC m): ends the receipt. Pending text is emitted as a
    /// Line first. `offset` = stream offset of the cut command's first byte.
    Cut { offset: u64, partial: bool },
    /// The POS asked the printer for status (DLE EOT n, GS r n, GS a n); informational.
    StatusRequest { command: StatusCommand },
    /// Something odd but harmless (unknown command, bad argument); never a failure.
    Diagnostic(String),
}

/// A status request the POS sent, with its argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusCommand {
    DleEot(u8),
    GsR(u8),
    GsA(u8),
    /// `DLE DC4 7 m`: transmit the specified status in real time.
    DleDc4(u8),
}

/// Repeated records inside one command's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Record {
    /// `ESC &`: per character `x` then `y * x` bytes.
    UserChar { y: u8 },
    /// `FS q`: per image `xL xH yL yH` then `x * y * 8` bytes.
    NvImage,
}

impl Record {
    fn header_len(self) -> usize {
        match self {
            Record::UserChar { .. } => 1,
            Record::NvImage => 4,
        }
    }

    fn data_len(self, header: &[u8]) -> u64 {
        match self {
            Record::UserChar { y } => u64::from(y) * u64::from(header[0]),
            Record::NvImage => le(&header[0..2]) * le(&header[2..4]) * 8,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Text and command headers.
    Normal,
    /// Counting off command data; afterwards continue with `then` records, if any.
    Skip {
        left: u64,
        then: Option<(u32, Record)>,
    },
    /// Skipping data up to a NUL; give up after `left` more bytes.
    UntilNul { left: u16, name: &'static str },
    /// `left` more records of `record` follow.
    Records { left: u32, record: Record },
}

/// Extracts printed text, cuts and status requests from an ESC/POS byte stream.
///
/// Sans-IO: [`feed`](Self::feed) bytes as they arrive (a command may be split anywhere),
/// then [`poll`](Self::poll) events. Feeding one byte at a time gives the same events as
/// feeding everything at once. Memory is bounded: only an incomplete command header
/// (at most 76 bytes, `FS 2`), the current line and an unprinted page-mode page
/// ([`MAX_PAGE_CHARS`]) are kept; command data is skipped by counting, however long
/// the length it declares.
#[derive(Debug, Clone)]
pub struct EscPosParser {
    default_page: CodePage,
    esc_t: EscTTable,
    page: CodePage,
    national: NationalSet,
    /// Bytes fed but not yet consumed (after `feed` returns: at most an incomplete header).
    pending: Vec<u8>,
    /// Stream offset of `pending[0]`.
    pending_start: u64,
    mode: Mode,
    line: String,
    line_chars: usize,
    /// The previous byte ended a line with CR, so an LF right after it is the same line end.
    after_cr: bool,
    /// In page mode (ESC L) lines collect in `page_lines` until the page is printed
    /// (FF, ESC FF); a page that is cleared or abandoned never prints.
    page_mode: bool,
    page_lines: Vec<String>,
    page_chars: usize,
    events: VecDeque<PrintEvent>,
}

impl EscPosParser {
    /// A parser for an Epson-numbered printer (`ESC t n` as in [`EscTTable::epson`]).
    pub fn new(default_codepage: CodePage) -> Self {
        Self::with_esc_t(default_codepage, EscTTable::epson())
    }

    /// A parser for a printer whose `ESC t n` numbering is `esc_t` (`[pos] printer_model`
    /// and `codepage_map`).
    /// The printer model's `ESC t` table this parser decodes with.
    pub fn esc_t_table(&self) -> EscTTable {
        self.esc_t
    }

    pub fn with_esc_t(default_codepage: CodePage, esc_t: EscTTable) -> Self {
        Self {
            default_page: default_codepage,
            esc_t,
            page: default_codepage,
            national: NationalSet::USA,
            pending: Vec::new(),
            pending_start: 0,
            mode: Mode::Normal,
            line: String::new(),
            line_chars: 0,
            after_cr: false,
            page_mode: false,
            page_lines: Vec::new(),
            page_chars: 0,
            events: VecDeque::new(),
        }
    }

    /// Bytes as the POS sent them, in arbitrary chunks (a command may be split anywhere).
    pub fn feed(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.pending.extend_from_slice(bytes);
        let consumed = self.process();
        self.pending.drain(..consumed);
        self.pending_start += consumed as u64;
    }

    pub fn poll(&mut self) -> Option<PrintEvent> {
        self.events.pop_front()
    }

    /// Total bytes fed so far.
    pub fn offset(&self) -> u64 {
        self.pending_start + self.pending.len() as u64
    }

    /// Bytes held back because they start a command whose header is incomplete
    /// (never more than a command header: data is counted, not buffered).
    pub fn buffered_len(&self) -> usize {
        self.pending.len()
    }

    /// The code page text is currently decoded with.
    pub fn code_page(&self) -> CodePage {
        self.page
    }

    /// Whether the stream currently ends inside a command (header or data): the bytes
    /// so far are not a complete print job.
    pub fn in_command(&self) -> bool {
        self.mode != Mode::Normal || !self.pending.is_empty()
    }

    /// Consumes as much of `pending` as possible; returns how many bytes were consumed.
    fn process(&mut self) -> usize {
        let mut pos = 0;
        loop {
            let available = self.pending.len() - pos;
            match self.mode {
                Mode::Skip { left, then } => {
                    let n = left.min(available as u64);
                    // n <= available, which is a usize.
                    pos += n as usize;
                    if n < left {
                        self.mode = Mode::Skip {
                            left: left - n,
                            then,
                        };
                        return pos;
                    }
                    self.mode = match then {
                        Some((left, record)) => Mode::Records { left, record },
                        None => Mode::Normal,
                    };
                }
                Mode::UntilNul { left, name } => {
                    let Some(&byte) = self.pending.get(pos) else {
                        return pos;
                    };
                    pos += 1;
                    if byte == 0 {
                        self.mode = Mode::Normal;
                    } else if left <= 1 {
                        let at = self.pending_start + pos as u64;
                        self.diagnostic(format!(
                            "{name}: data not NUL-terminated, resuming at offset {at}"
                        ));
                        self.mode = Mode::Normal;
                    } else {
                        self.mode = Mode::UntilNul {
                            left: left - 1,
                            name,
                        };
                    }
                }
                Mode::Records { left, record } => {
                    if left == 0 {
                        self.mode = Mode::Normal;
                        continue;
                    }
                    let header_len = record.header_len();
                    if available < header_len {
                        return pos;
                    }
                    let data = record.data_len(&self.pending[pos..pos + header_len]);
                    pos += header_len;
                    self.mode = Mode::Skip {
                        left: data,
                        then: Some((left - 1, record)),
                    };
                }
                Mode::Normal => {
                    let Some(&byte) = self.pending.get(pos) else {
                        return pos;
                    };
                    if byte != LF {
                        self.after_cr = false;
                    }
                    match byte {
                        LF => {
                            if !std::mem::take(&mut self.after_cr) {
                                self.end_line();
                            }
                            pos += 1;
                        }
                        CR => {
                            self.end_line();
                            self.after_cr = true;
                            pos += 1;
                        }
                        HT => {
                            self.push_char(' ');
                            pos += 1;
                        }
                        FF => {
                            // In page mode FF prints the page and returns to standard mode.
                            self.print_page();
                            self.page_mode = false;
                            pos += 1;
                        }
                        CAN => {
                            if self.page_mode {
                                self.discard_page("CAN");
                            }
                            pos += 1;
                        }
                        ESC | GS | FS | DLE => match self.command(pos) {
                            Some(used) => pos += used,
                            None => return pos,
                        },
                        0x00..=0x1F | DEL => pos += 1,
                        0x20..=0x7E => {
                            let c = self.national.decode(byte);
                            self.push_char(c);
                            pos += 1;
                        }
                        _ => {
                            let c = self.page.decode(byte);
                            self.push_char(c);
                            pos += 1;
                        }
                    }
                }
            }
        }
    }

    /// Handles the command starting at `pending[pos]`. Returns the bytes consumed
    /// (code and header; data is left to the mode), or `None` if more bytes are needed.
    fn command(&mut self, pos: usize) -> Option<usize> {
        let offset = self.pending_start + pos as u64;
        let command = match lookup(&self.pending[pos..]) {
            Lookup::Incomplete => return None,
            Lookup::Found(command) => command,
            Lookup::Unknown => {
                let prefix = self.pending[pos];
                let code = self.pending[pos + 1];
                self.diagnostic(format!(
                    "unknown command {} 0x{code:02X} at offset {offset}",
                    prefix_name(prefix)
                ));
                // A stray DLE is only a control byte: what follows may well be text.
                return Some(if prefix == DLE { 1 } else { 2 });
            }
        };
        let start = pos + 1 + command.code.len();
        let args = &self.pending[start..];
        let header_len = header_len(command.args, args)?;
        let header: Vec<u8> = args[..header_len].to_vec();
        self.apply(command, &header, offset);
        Some(1 + command.code.len() + header_len)
    }

    /// Acts on a complete command header and sets up skipping of its data.
    fn apply(&mut self, command: &Command, header: &[u8], offset: u64) {
        match command.effect {
            Effect::Nothing => {}
            Effect::PrintAndFeed => self.end_line_if_text(),
            Effect::Cut { partial } => self.cut(offset, partial),
            Effect::CutByMode => match header[0] {
                0 | 48 | 65 | 97 | 103 => self.cut(offset, false),
                1 | 49 | 66 | 98 | 104 => self.cut(offset, true),
                m => self.diagnostic(format!(
                    "GS V with unknown cut mode {m} at offset {offset}: ignored"
                )),
            },
            Effect::Reset => {
                self.page = self.default_page;
                self.national = NationalSet::USA;
                if self.page_mode {
                    self.discard_page("ESC @");
                    self.page_mode = false;
                }
            }
            Effect::PageMode => {
                if !self.page_mode {
                    self.end_line_if_text();
                    self.page_mode = true;
                }
            }
            Effect::StandardMode => {
                if self.page_mode {
                    self.discard_page("ESC S");
                    self.page_mode = false;
                }
            }
            Effect::PrintPage => self.print_page(),
            Effect::SelectCodePage => match self.esc_t.get(header[0]) {
                Some(page) => self.page = page,
                None => self.diagnostic(format!(
                    "ESC t {} at offset {offset}: unsupported code page, keeping {}",
                    header[0], self.page
                )),
            },
            Effect::SelectNationalSet => match NationalSet::from_esc_r(header[0]) {
                Some(set) => self.national = set,
                None => {
                    self.national = NationalSet::USA;
                    self.diagnostic(format!(
                        "ESC R {} at offset {offset}: international set not decoded, using USA",
                        header[0]
                    ));
                }
            },
            Effect::StatusDleEot => self.status(StatusCommand::DleEot(header[0])),
            Effect::StatusGsR => self.status(StatusCommand::GsR(header[0])),
            Effect::StatusGsA => self.status(StatusCommand::GsA(header[0])),
            Effect::RealTimeDc4 => match (header[0], dle_dc4_args(header[0])) {
                (7, _) => self.status(StatusCommand::DleDc4(header[1])),
                (_, Some(_)) => {}
                (function, None) => self.diagnostic(format!(
                    "DLE DC4 with unknown function {function} at offset {offset}"
                )),
            },
        }
        self.mode = match command.args {
            Args::None | Args::Fixed(_) | Args::Cut | Args::DleEot | Args::DleDc4 => Mode::Normal,
            Args::Length { head, width, .. } => {
                let length = le(&header[head..head + width]);
                let peeked = &header[head + width..];
                let letter = header.first().copied().unwrap_or(0);
                if let Some(odd) = unknown_function(command, letter, peeked) {
                    self.diagnostic(format!("{odd} at offset {offset}: skipped"));
                }
                // The peeked bytes are part of the declared length.
                skip(length - peeked.len() as u64)
            }
            Args::NulTerminated { max } => Mode::UntilNul {
                left: max,
                name: command.name,
            },
            Args::Raster => skip(le(&header[1..3]) * le(&header[3..5])),
            Args::WindowsBmp => {
                let (magic, size) = header[BMP_ARGS..].split_at(2);
                if magic == b"BM" {
                    // bfSize counts the whole file, the 6 bytes already read included.
                    skip(le(size).saturating_sub(6))
                } else {
                    self.diagnostic(format!(
                        "GS D at offset {offset}: data is not a BMP file, not skipped"
                    ));
                    Mode::Normal
                }
            }
            Args::BitImage => {
                let columns = le(&header[1..3]);
                skip(if header[0] <= 1 { columns } else { columns * 3 })
            }
            Args::DownloadedBitImage => skip(u64::from(header[0]) * u64::from(header[1]) * 8),
            Args::Barcode => match header[0] {
                0..=6 => Mode::UntilNul {
                    left: MAX_BARCODE_DATA + 1,
                    name: command.name,
                },
                65..=79 => skip(u64::from(header[1])),
                m => {
                    self.diagnostic(format!(
                        "GS k with unknown barcode system {m} at offset {offset}"
                    ));
                    Mode::Normal
                }
            },
            Args::UserChars => {
                let (y, first, last) = (header[0], header[1], header[2]);
                if last < first {
                    self.diagnostic(format!(
                        "ESC & with character range {first}..{last} at offset {offset}: empty"
                    ));
                    Mode::Normal
                } else {
                    Mode::Records {
                        left: u32::from(last - first) + 1,
                        record: Record::UserChar { y },
                    }
                }
            }
            Args::NvImages => Mode::Records {
                left: u32::from(header[0]),
                record: Record::NvImage,
            },
        };
    }

    fn push_char(&mut self, c: char) {
        if self.line_chars >= MAX_LINE_CHARS {
            self.diagnostic(format!(
                "line longer than {MAX_LINE_CHARS} characters: split"
            ));
            self.end_line();
        }
        self.line.push(c);
        self.line_chars += 1;
    }

    fn end_line(&mut self) {
        let mut line = std::mem::take(&mut self.line);
        let chars = std::mem::take(&mut self.line_chars);
        line.truncate(line.trim_end().len());
        if !self.page_mode {
            self.events.push_back(PrintEvent::Line(line));
            return;
        }
        if self.page_chars + chars > MAX_PAGE_CHARS {
            self.diagnostic(format!(
                "page mode: more than {MAX_PAGE_CHARS} characters unprinted, emitted early"
            ));
            self.flush_page();
        }
        self.page_chars += chars;
        self.page_lines.push(line);
    }

    /// FF / ESC FF: the page (and a pending line) is printed.
    fn print_page(&mut self) {
        self.end_line_if_text();
        self.flush_page();
    }

    fn flush_page(&mut self) {
        self.page_chars = 0;
        for line in std::mem::take(&mut self.page_lines) {
            self.events.push_back(PrintEvent::Line(line));
        }
    }

    /// The page's text will never be printed (ESC S, CAN, ESC @ in page mode).
    fn discard_page(&mut self, by: &str) {
        let lines = self.page_lines.len() + usize::from(!self.line.is_empty());
        self.page_lines.clear();
        self.page_chars = 0;
        self.line.clear();
        self.line_chars = 0;
        if lines > 0 {
            self.diagnostic(format!(
                "page mode: {by} discarded {lines} unprinted line(s)"
            ));
        }
    }

    /// Print-and-feed commands print the buffer; with nothing buffered they only feed paper.
    fn end_line_if_text(&mut self) {
        if !self.line.is_empty() {
            self.end_line();
        }
    }

    fn cut(&mut self, offset: u64, partial: bool) {
        if self.page_mode {
            // Capture what the POS meant to print rather than lose the receipt.
            self.diagnostic(format!(
                "cut in page mode at offset {offset}: page emitted, standard mode"
            ));
            self.flush_page();
            self.page_mode = false;
        }
        self.end_line_if_text();
        self.events.push_back(PrintEvent::Cut { offset, partial });
    }

    fn status(&mut self, command: StatusCommand) {
        self.events.push_back(PrintEvent::StatusRequest { command });
    }

    fn diagnostic(&mut self, message: String) {
        self.events.push_back(PrintEvent::Diagnostic(message));
    }
}

fn skip(left: u64) -> Mode {
    if left == 0 {
        Mode::Normal
    } else {
        Mode::Skip { left, then: None }
    }
}

/// A little-endian unsigned number of up to 8 bytes.
fn le(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rev()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

/// How many header bytes `args` needs, given the bytes available after the command
/// code; `None` if more bytes are needed to know or to have them all.
/// The length of the complete command header at the start of `bytes` (prefix, code
/// and arguments; data that follows the header is not counted). `None` when `bytes`
/// do not start with a known, complete command header.
pub(crate) fn command_len(bytes: &[u8]) -> Option<usize> {
    let Lookup::Found(command) = lookup(bytes) else {
        return None;
    };
    let args = bytes.get(1 + command.code.len()..)?;
    Some(1 + command.code.len() + header_len(command.args, args)?)
}

fn header_len(args: Args, available: &[u8]) -> Option<usize> {
    let needed = match args {
        Args::None | Args::NulTerminated { .. } => 0,
        Args::Fixed(n) => n,
        Args::Length { head, width, peek } => {
            let fixed = head + width;
            let length = le(available.get(head..fixed)?);
            // length >= the peeked part, so the skip that follows never underflows.
            fixed + peek.min(usize::try_from(length).unwrap_or(usize::MAX))
        }
        Args::Raster => 5,
        // m fn a kc1 kc2 b c, then "BM" and the file size.
        Args::WindowsBmp => BMP_ARGS + 6,
        Args::BitImage => 3,
        Args::DownloadedBitImage => 2,
        Args::UserChars => 3,
        Args::NvImages => 1,
        Args::Barcode => match available.first()? {
            65..=79 => 2,
            _ => 1,
        },
        Args::Cut => match available.first()? {
            65 | 66 | 97 | 98 | 103 | 104 => 2,
            _ => 1,
        },
        Args::DleEot => match available.first()? {
            7 | 8 => 2,
            _ => 1,
        },
        Args::DleDc4 => 1 + dle_dc4_args(*available.first()?).unwrap_or(0),
    };
    (available.len() >= needed).then_some(needed)
}
