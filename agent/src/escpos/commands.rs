//! The ESC/POS command TABLE: every command the parser knows, as data.
//!
//! Each entry says which bytes name the command, how its arguments and data are laid
//! out (so the parser can skip them without ever printing them) and what the command
//! means for text extraction. No entry's `code` may be a prefix of another entry's
//! `code` under the same prefix byte (a unit test checks this), so a lookup is never
//! ambiguous.

pub(crate) const ESC: u8 = 0x1B;
pub(crate) const GS: u8 = 0x1D;
pub(crate) const FS: u8 = 0x1C;
pub(crate) const DLE: u8 = 0x10;

/// How the bytes after a command's code are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Args {
    /// No arguments.
    None,
    /// A fixed number of argument bytes.
    Fixed(usize),
    /// `head` argument bytes, then a little-endian length of `width` bytes, then
    /// `length` data bytes (`GS ( k pL pH ...`, `GS 8 L p1 p2 p3 p4 ...`).
    Length { head: usize, width: usize },
    /// Arguments up to and including a NUL, at most `max` bytes (`ESC D n1 ... NUL`).
    NulTerminated { max: u16 },
    /// `GS v 0 m xL xH yL yH`, then `(xL + xH*256) * (yL + yH*256)` bytes.
    Raster,
    /// `ESC * m nL nH`, then `(nL + nH*256) * (m <= 1 ? 1 : 3)` bytes.
    BitImage,
    /// `GS * x y`, then `x * y * 8` bytes.
    DownloadedBitImage,
    /// `GS k m`: m 0..=6 NUL-terminated data; m 65..=79 a length byte then data.
    Barcode,
    /// `GS V m [n]`: `n` follows only for m 65, 66, 97, 98, 103, 104.
    Cut,
    /// `DLE EOT n [a]`: `a` follows only for n 7 and 8.
    DleEot,
    /// `ESC & y c1 c2`, then for each of `c2 - c1 + 1` characters: `x` then `y * x` bytes.
    UserChars,
    /// `FS q n`, then for each of `n` images: `xL xH yL yH` then `x * y * 8` bytes.
    NvImages,
}

/// What a command means for text extraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Formatting, feeding geometry, images, drawer kicks ...: nothing for the text.
    Nothing,
    /// Prints the line buffer (`ESC d n`, `ESC J n`, `ESC e n`).
    PrintAndFeed,
    /// A paper cut with a fixed kind (`ESC i`, `ESC m`).
    Cut { partial: bool },
    /// `GS V m [n]`: full or partial depends on `m`.
    CutByMode,
    /// `ESC @`: back to the configured code page.
    Reset,
    /// `ESC t n`.
    SelectCodePage,
    /// `DLE EOT n`.
    StatusDleEot,
    /// `GS r n`.
    StatusGsR,
    /// `GS a n`.
    StatusGsA,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Command {
    pub prefix: u8,
    /// The bytes after the prefix that name the command.
    pub code: &'static [u8],
    pub name: &'static str,
    pub args: Args,
    pub effect: Effect,
}

const fn cmd(
    prefix: u8,
    code: &'static [u8],
    name: &'static str,
    args: Args,
    effect: Effect,
) -> Command {
    Command {
        prefix,
        code,
        name,
        args,
        effect,
    }
}

use Args::{Fixed, Length, None as NoArgs};
use Effect::Nothing;

pub(crate) const COMMANDS: &[Command] = &[
    // ESC: print modes, feeding, code pages, images, drawer, cut.
    cmd(ESC, b" ", "ESC SP", Fixed(1), Nothing),
    cmd(ESC, b"!", "ESC !", Fixed(1), Nothing),
    cmd(ESC, b"$", "ESC $", Fixed(2), Nothing),
    cmd(ESC, b"%", "ESC %", Fixed(1), Nothing),
    cmd(ESC, b"&", "ESC &", Args::UserChars, Nothing),
    cmd(ESC, b"(", "ESC (", Length { head: 1, width: 2 }, Nothing),
    cmd(ESC, b"*", "ESC *", Args::BitImage, Nothing),
    cmd(ESC, b"-", "ESC -", Fixed(1), Nothing),
    cmd(ESC, b"2", "ESC 2", NoArgs, Nothing),
    cmd(ESC, b"3", "ESC 3", Fixed(1), Nothing),
    cmd(ESC, b"<", "ESC <", NoArgs, Nothing),
    cmd(ESC, b"=", "ESC =", Fixed(1), Nothing),
    cmd(ESC, b"?", "ESC ?", Fixed(1), Nothing),
    cmd(ESC, b"@", "ESC @", NoArgs, Effect::Reset),
    cmd(ESC, b"D", "ESC D", Args::NulTerminated { max: 33 }, Nothing),
    cmd(ESC, b"E", "ESC E", Fixed(1), Nothing),
    cmd(ESC, b"G", "ESC G", Fixed(1), Nothing),
    cmd(ESC, b"J", "ESC J", Fixed(1), Effect::PrintAndFeed),
    cmd(ESC, b"K", "ESC K", Fixed(1), Nothing),
    cmd(ESC, b"L", "ESC L", NoArgs, Nothing),
    cmd(ESC, b"M", "ESC M", Fixed(1), Nothing),
    cmd(ESC, b"R", "ESC R", Fixed(1), Nothing),
    cmd(ESC, b"S", "ESC S", NoArgs, Nothing),
    cmd(ESC, b"T", "ESC T", Fixed(1), Nothing),
    cmd(ESC, b"U", "ESC U", Fixed(1), Nothing),
    cmd(ESC, b"V", "ESC V", Fixed(1), Nothing),
    cmd(ESC, b"W", "ESC W", Fixed(8), Nothing),
    cmd(ESC, b"\\", "ESC \\", Fixed(2), Nothing),
    cmd(ESC, b"a", "ESC a", Fixed(1), Nothing),
    cmd(ESC, b"c0", "ESC c 0", Fixed(1), Nothing),
    cmd(ESC, b"c1", "ESC c 1", Fixed(1), Nothing),
    cmd(ESC, b"c3", "ESC c 3", Fixed(1), Nothing),
    cmd(ESC, b"c4", "ESC c 4", Fixed(1), Nothing),
    cmd(ESC, b"c5", "ESC c 5", Fixed(1), Nothing),
    cmd(ESC, b"d", "ESC d", Fixed(1), Effect::PrintAndFeed),
    cmd(ESC, b"e", "ESC e", Fixed(1), Effect::PrintAndFeed),
    // Epson documents both as partial cuts (one / three points left uncut).
    cmd(ESC, b"i", "ESC i", NoArgs, Effect::Cut { partial: true }),
    cmd(ESC, b"m", "ESC m", NoArgs, Effect::Cut { partial: true }),
    cmd(ESC, b"p", "ESC p", Fixed(3), Nothing),
    cmd(ESC, b"r", "ESC r", Fixed(1), Nothing),
    cmd(ESC, b"t", "ESC t", Fixed(1), Effect::SelectCodePage),
    cmd(ESC, b"u", "ESC u", Fixed(1), Nothing),
    cmd(ESC, b"v", "ESC v", NoArgs, Nothing),
    cmd(ESC, b"{", "ESC {", Fixed(1), Nothing),
    cmd(ESC, &[0x0C], "ESC FF", NoArgs, Nothing),
    // GS: character size, barcodes, 2D codes, graphics, cut, status.
    cmd(GS, b"!", "GS !", Fixed(1), Nothing),
    cmd(GS, b"$", "GS $", Fixed(2), Nothing),
    cmd(GS, b"(", "GS (", Length { head: 1, width: 2 }, Nothing),
    cmd(GS, b"*", "GS *", Args::DownloadedBitImage, Nothing),
    cmd(GS, b"/", "GS /", Fixed(1), Nothing),
    cmd(GS, b"8L", "GS 8 L", Length { head: 0, width: 4 }, Nothing),
    cmd(GS, b":", "GS :", NoArgs, Nothing),
    cmd(GS, b"B", "GS B", Fixed(1), Nothing),
    cmd(GS, b"E", "GS E", Fixed(1), Nothing),
    cmd(GS, b"H", "GS H", Fixed(1), Nothing),
    cmd(GS, b"I", "GS I", Fixed(1), Nothing),
    cmd(GS, b"L", "GS L", Fixed(2), Nothing),
    cmd(GS, b"P", "GS P", Fixed(2), Nothing),
    cmd(GS, b"T", "GS T", Fixed(1), Nothing),
    cmd(GS, b"V", "GS V", Args::Cut, Effect::CutByMode),
    cmd(GS, b"W", "GS W", Fixed(2), Nothing),
    cmd(GS, b"\\", "GS \\", Fixed(2), Nothing),
    cmd(GS, b"^", "GS ^", Fixed(3), Nothing),
    cmd(GS, b"a", "GS a", Fixed(1), Effect::StatusGsA),
    cmd(GS, b"b", "GS b", Fixed(1), Nothing),
    cmd(GS, b"c", "GS c", NoArgs, Nothing),
    cmd(GS, b"f", "GS f", Fixed(1), Nothing),
    cmd(GS, b"h", "GS h", Fixed(1), Nothing),
    cmd(GS, b"j", "GS j", Fixed(1), Nothing),
    cmd(GS, b"k", "GS k", Args::Barcode, Nothing),
    cmd(GS, b"r", "GS r", Fixed(1), Effect::StatusGsR),
    cmd(GS, b"v0", "GS v 0", Args::Raster, Nothing),
    cmd(GS, b"w", "GS w", Fixed(1), Nothing),
    // FS: kanji modes and NV images.
    cmd(FS, b"!", "FS !", Fixed(1), Nothing),
    cmd(FS, b"&", "FS &", NoArgs, Nothing),
    cmd(FS, b"(", "FS (", Length { head: 1, width: 2 }, Nothing),
    cmd(FS, b"-", "FS -", Fixed(1), Nothing),
    cmd(FS, b".", "FS .", NoArgs, Nothing),
    cmd(FS, b"C", "FS C", Fixed(1), Nothing),
    cmd(FS, b"S", "FS S", Fixed(2), Nothing),
    cmd(FS, b"W", "FS W", Fixed(1), Nothing),
    cmd(FS, b"p", "FS p", Fixed(2), Nothing),
    cmd(FS, b"q", "FS q", Args::NvImages, Nothing),
    // DLE: real-time commands.
    cmd(DLE, &[0x04], "DLE EOT", Args::DleEot, Effect::StatusDleEot),
    cmd(DLE, &[0x05], "DLE ENQ", Fixed(1), Nothing),
    // Epson's DLE DC4 functions differ in length; fn 1 and 2 (pulse, power-off) take two bytes.
    cmd(DLE, &[0x14], "DLE DC4", Fixed(3), Nothing),
];

/// The result of looking up the command at the start of `bytes` (prefix included).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Lookup {
    Found(&'static Command),
    /// More bytes are needed to tell which command this is.
    Incomplete,
    /// No command starts with these bytes.
    Unknown,
}

pub(crate) fn lookup(bytes: &[u8]) -> Lookup {
    let Some((&prefix, rest)) = bytes.split_first() else {
        return Lookup::Incomplete;
    };
    let mut incomplete = false;
    for command in COMMANDS.iter().filter(|c| c.prefix == prefix) {
        let n = command.code.len().min(rest.len());
        if command.code[..n] == rest[..n] {
            if n == command.code.len() {
                return Lookup::Found(command);
            }
            incomplete = true;
        }
    }
    if incomplete {
        Lookup::Incomplete
    } else {
        Lookup::Unknown
    }
}

/// A name for a prefix byte, for diagnostics.
pub(crate) fn prefix_name(prefix: u8) -> &'static str {
    match prefix {
        ESC => "ESC",
        GS => "GS",
        FS => "FS",
        DLE => "DLE",
        _ => "?",
    }
}
