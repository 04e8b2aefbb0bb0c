//! ESC/POS output (pure): the coupon block the agent inserts before a receipt's cut, the
//! notice slip for the cashier (a refused coupon code), and text encoding into the
//! printer's code page.
//!
//! Raw ESC/POS bytes, no library: the block needs Code128 (`GS k 73`), which the `escpos`
//! crate lacks, and a handful of fixed commands is clearer written out than wrapped.
//!
//! The block starts with `ESC @` so its own formatting starts from known defaults, selects
//! the POS's code page (the printer's power-on page may differ) and ends with `ESC @` plus
//! `ESC t n` again: the printer is left in defaults with the POS's code page, which is all
//! of the POS's state the parser tracks.

use std::io;

use chrono::NaiveDate;

use super::codepage::CodePage;
use super::parser::EscPosParser;

const ESC: u8 = 0x1B;
const GS: u8 = 0x1D;
const LF: u8 = 0x0A;

const RESET: [u8; 2] = [ESC, b'@'];
const ALIGN_CENTER: [u8; 3] = [ESC, b'a', 1];
const BOLD_ON: [u8; 3] = [ESC, b'E', 1];
const BOLD_OFF: [u8; 3] = [ESC, b'E', 0];
/// `GS ! n`: bit 0 = double height (width stays single, so `columns` still holds).
const DOUBLE_HEIGHT: [u8; 3] = [GS, b'!', 0x01];
const NORMAL_SIZE: [u8; 3] = [GS, b'!', 0x00];
/// Barcode 80 dots (10 mm at 203 dpi) high.
const BARCODE_HEIGHT: [u8; 3] = [GS, b'h', 80];
/// 2-dot modules: 24 digits in code set C are 334 dots wide, within 58 mm paper.
const BARCODE_MODULE: [u8; 3] = [GS, b'w', 2];
/// No printer-made HRI text: the block prints the code as a text line the parser can read.
const BARCODE_NO_HRI: [u8; 3] = [GS, b'H', 0];
/// `GS k m n d1..dn` with m = 73: Code128, length-prefixed data.
const CODE128: [u8; 3] = [GS, b'k', 73];
/// Most data bytes `GS k 73 n` can carry (n is one byte).
const MAX_BARCODE_BYTES: usize = 255;

/// What a coupon block prints. The texts are final (already in the customer's language).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrintedCoupon {
    /// Printed bold and double height, e.g. the campaign name.
    pub headline: String,
    /// The offer, word-wrapped to `columns`.
    pub offer: String,
    /// Put before the expiry date, e.g. `Geldig t/m` → `Geldig t/m 09-12-2026`.
    pub expiry_label: String,
    /// The last day the coupon is valid.
    pub expires: NaiveDate,
    /// The coupon code the barcode carries (digits use Code128 set C, anything else set B).
    pub code: String,
    /// Characters per line in the printer's normal font (48 on 80 mm paper, 32 on 58 mm).
    pub columns: usize,
}

/// The POS's printer state to restore after the block. The parser tracks only the code
/// page (alignment, emphasis and size are not tracked, so they are left at defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrinterModes {
    pub code_page: CodePage,
    /// The `ESC t` number that selects `code_page` on this printer (its model's table).
    pub esc_t: u8,
}

impl PrinterModes {
    /// The state the parser has seen the POS select so far, numbered as the parser's
    /// printer model numbers it.
    pub fn of(parser: &EscPosParser) -> Self {
        let code_page = parser.code_page();
        Self {
            code_page,
            esc_t: parser
                .esc_t_table()
                .number_of(code_page)
                .unwrap_or_else(|| code_page.esc_t_number()),
        }
    }

    /// `code_page` on an Epson-numbered printer.
    pub fn epson(code_page: CodePage) -> Self {
        Self {
            code_page,
            esc_t: code_page.esc_t_number(),
        }
    }
}

impl CodePage {
    /// Epson's `ESC t n` number of this page (the inverse of [`CodePage::from_esc_t`]).
    pub fn esc_t_number(self) -> u8 {
        match self {
            CodePage::Cp437 => 0,
            CodePage::Cp850 => 2,
            CodePage::Cp1252 => 16,
            CodePage::Cp866 => 17,
            CodePage::Cp852 => 18,
            CodePage::Cp858 => 19,
        }
    }

    /// The byte that prints `c` in this page, or `?` if the page has no such character.
    /// Control characters also become `?`: text must never turn into commands.
    pub fn encode(self, c: char) -> u8 {
        match u8::try_from(c) {
            Ok(b @ 0x20..=0x7E) => b,
            _ if c.is_control() || c == char::REPLACEMENT_CHARACTER => b'?',
            _ => (0x80..=0xFF).find(|&b| self.decode(b) == c).unwrap_or(b'?'),
        }
    }

    /// `text` in this page, one byte per character.
    pub fn encode_str(self, text: &str) -> Vec<u8> {
        text.chars().map(|c| self.encode(c)).collect()
    }
}

/// Writes the coupon block: `ESC @`, separator, headline (bold, double height), offer,
/// expiry date, Code128 barcode, human-readable code, separator, then `ESC @` and the
/// POS's code page from `restore`. The block is assembled first and written with one
/// `write_all`, so a refused coupon (a code too long for a barcode) writes nothing.
pub fn write_coupon_block<W: io::Write>(
    w: &mut W,
    coupon: &PrintedCoupon,
    restore: &PrinterModes,
) -> io::Result<()> {
    w.write_all(&coupon_block(coupon, restore)?)
}

/// A notice for the cashier, printed between receipts (never inside one): the `lines`
/// (cut to `columns`) in bold between two rows of `*`, then blank lines so it shows
/// above the tear bar. It does not cut: the POS's receipts and their cuts stay exactly
/// the POS's. Starts with `ESC @` and ends with `ESC @` plus the POS's code page from
/// `restore`, like the coupon block.
pub fn notice_block(lines: &[String], columns: usize, restore: &PrinterModes) -> Vec<u8> {
    let columns = columns.max(1);
    let stars = "*".repeat(columns);
    let mut out = Vec::with_capacity(64 + columns * (lines.len() + 2));
    out.extend_from_slice(&RESET);
    out.extend_from_slice(&[ESC, b't', restore.esc_t]);
    out.extend_from_slice(&BOLD_ON);
    for line in std::iter::once(&stars)
        .chain(lines)
        .chain(std::iter::once(&stars))
    {
        let text: String = line.chars().take(columns).collect();
        out.extend_from_slice(&restore.code_page.encode_str(&text));
        out.push(LF);
    }
    out.extend_from_slice(&BOLD_OFF);
    out.extend_from_slice(&[LF; NOTICE_FEED_LINES]);
    out.extend_from_slice(&RESET);
    out.extend_from_slice(&[ESC, b't', restore.esc_t]);
    out
}

/// Blank lines after a notice, enough to bring it past a printer's tear bar.
const NOTICE_FEED_LINES: usize = 4;

/// The bytes of [`write_coupon_block`].
pub fn coupon_block(coupon: &PrintedCoupon, restore: &PrinterModes) -> io::Result<Vec<u8>> {
    let page = restore.code_page;
    let select_page = [ESC, b't', restore.esc_t];
    let columns = coupon.columns.max(1);
    let barcode = code128_data(&coupon.code)?;
    let separator = "-".repeat(columns);

    let mut out = Vec::with_capacity(256 + coupon.offer.len());
    let line = |out: &mut Vec<u8>, text: &str| {
        out.extend_from_slice(&page.encode_str(text));
        out.push(LF);
    };
    out.extend_from_slice(&RESET);
    out.extend_from_slice(&select_page);
    out.extend_from_slice(&ALIGN_CENTER);
    line(&mut out, &separator);

    out.extend_from_slice(&BOLD_ON);
    out.extend_from_slice(&DOUBLE_HEIGHT);
    for text in wrap(&coupon.headline, columns) {
        line(&mut out, &text);
    }
    out.extend_from_slice(&NORMAL_SIZE);
    out.extend_from_slice(&BOLD_OFF);
    for text in wrap(&coupon.offer, columns) {
        line(&mut out, &text);
    }
    let expiry = format!(
        "{} {}",
        coupon.expiry_label.trim(),
        coupon.expires.format("%d-%m-%Y")
    );
    for text in wrap(&expiry, columns) {
        line(&mut out, &text);
    }

    out.extend_from_slice(&BARCODE_HEIGHT);
    out.extend_from_slice(&BARCODE_MODULE);
    out.extend_from_slice(&BARCODE_NO_HRI);
    out.extend_from_slice(&CODE128);
    // code128_data keeps the data within MAX_BARCODE_BYTES, so its length fits n.
    out.push(barcode.len() as u8);
    out.extend_from_slice(&barcode);
    // The barcode leaves the print position at the start of a line: the code goes below it.
    for text in wrap(&human_readable(&coupon.code), columns) {
        line(&mut out, &text);
    }
    line(&mut out, &separator);

    out.extend_from_slice(&RESET);
    out.extend_from_slice(&select_page);
    Ok(out)
}

/// `{C` + one byte per digit pair for an even number of digits (half the symbols);
/// otherwise `{B` + printable ASCII, `{` doubled as Code128 on Epson requires.
fn code128_data(code: &str) -> io::Result<Vec<u8>> {
    let digits = code.bytes().all(|b| b.is_ascii_digit());
    let mut data = Vec::with_capacity(2 + code.len());
    if digits && !code.is_empty() && code.len().is_multiple_of(2) {
        data.extend_from_slice(b"{C");
        data.extend(
            code.as_bytes()
                .chunks(2)
                .map(|pair| (pair[0] - b'0') * 10 + (pair[1] - b'0')),
        );
    } else {
        data.extend_from_slice(b"{B");
        for c in code.chars() {
            match u8::try_from(c) {
                Ok(b'{') => data.extend_from_slice(b"{{"),
                Ok(b @ 0x20..=0x7E) => data.push(b),
                _ => data.push(b'?'),
            }
        }
    }
    if code.is_empty() || data.len() > MAX_BARCODE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "coupon code of {} characters does not fit a Code128 barcode (1..=253 bytes of data)",
                code.chars().count()
            ),
        ));
    }
    Ok(data)
}

/// A digit code in groups of four (how people read and type it); anything else as is.
fn human_readable(code: &str) -> String {
    if !code.bytes().all(|b| b.is_ascii_digit()) {
        return code.to_string();
    }
    let mut out = String::with_capacity(code.len() + code.len() / 4);
    for (i, c) in code.chars().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// Word-wraps `text` to lines of at most `columns` characters; a word longer than a line
/// is split. Line breaks in the text are kept; blank lines are dropped.
fn wrap(text: &str, columns: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.lines() {
        let mut current = String::new();
        let mut current_len = 0;
        for word in paragraph.split_whitespace() {
            let mut word: Vec<char> = word.chars().collect();
            // Split words that cannot fit on any line.
            while word.len() > columns {
                if current_len > 0 {
                    lines.push(std::mem::take(&mut current));
                    current_len = 0;
                }
                let rest = word.split_off(columns);
                lines.push(word.into_iter().collect());
                word = rest;
            }
            if word.is_empty() {
                continue;
            }
            let needed = if current_len == 0 {
                word.len()
            } else {
                current_len + 1 + word.len()
            };
            if needed > columns {
                lines.push(std::mem::take(&mut current));
                current_len = 0;
            }
            if current_len > 0 {
                current.push(' ');
                current_len += 1;
            }
            current.extend(word.iter());
            current_len += word.len();
        }
        if current_len > 0 {
            lines.push(current);
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn esc_t_numbers_invert_from_esc_t() {
        for page in [
            CodePage::Cp437,
            CodePage::Cp850,
            CodePage::Cp852,
            CodePage::Cp858,
            CodePage::Cp866,
            CodePage::Cp1252,
        ] {
            assert_eq!(CodePage::from_esc_t(page.esc_t_number()), Some(page));
        }
    }

    #[test]
    fn encode_inverts_decode_for_every_defined_byte() {
        for page in [
            CodePage::Cp437,
            CodePage::Cp850,
            CodePage::Cp852,
            CodePage::Cp858,
            CodePage::Cp866,
            CodePage::Cp1252,
        ] {
            for byte in 0x20..=0xFFu8 {
                let c = page.decode(byte);
                if byte == 0x7F || c == char::REPLACEMENT_CHARACTER {
                    continue;
                }
                assert_eq!(page.decode(page.encode(c)), c, "{page} byte 0x{byte:02X}");
            }
        }
    }

    #[test]
    fn encode_maps_euro_per_page_and_unknowns_to_question_mark() {
        assert_eq!(CodePage::Cp858.encode('€'), 0xD5);
        assert_eq!(CodePage::Cp1252.encode('€'), 0x80);
        assert_eq!(CodePage::Cp437.encode('€'), b'?');
        assert_eq!(CodePage::Cp850.encode('é'), 0x82);
        assert_eq!(CodePage::Cp866.encode('Ж'), 0x86);
        assert_eq!(CodePage::Cp437.encode('Ж'), b'?');
        assert_eq!(CodePage::Cp437.encode('😀'), b'?');
        assert_eq!(CodePage::Cp437.encode('\u{1B}'), b'?', "ESC is never text");
        assert_eq!(CodePage::Cp437.encode('\n'), b'?');
        assert_eq!(CodePage::Cp1252.encode('\u{FFFD}'), b'?');
    }

    #[test]
    fn wrap_breaks_at_words_and_splits_long_words() {
        assert_eq!(
            wrap("5 euro korting bij je volgende aankoop", 16),
            vec!["5 euro korting", "bij je volgende", "aankoop"]
        );
        assert_eq!(wrap("abcdefghij xy", 4), vec!["abcd", "efgh", "ij", "xy"]);
        assert_eq!(wrap("one\n\ntwo", 10), vec!["one", "two"]);
        assert_eq!(wrap("   ", 10), Vec::<String>::new());
        assert_eq!(wrap("exactly10!", 10), vec!["exactly10!"]);
    }

    #[test]
    fn digit_codes_use_code_set_c_others_set_b() {
        assert_eq!(code128_data("0123").unwrap(), vec![b'{', b'C', 1, 23]);
        assert_eq!(code128_data("123").unwrap(), b"{B123".to_vec());
        assert_eq!(code128_data("A{b").unwrap(), b"{BA{{b".to_vec());
        assert_eq!(code128_data("Aé").unwrap(), b"{BA?".to_vec());
        assert!(code128_data("").is_err());
        assert!(code128_data(&"A".repeat(254)).is_err());
        assert_eq!(code128_data(&"A".repeat(253)).unwrap().len(), 255);
    }
}
