//! The ESC/POS command TABLE: every command the parser knows, as data.
//!
//! Each entry says which bytes name the command, how its arguments and data are laid
//! out (so the parser can skip them without ever printing them) and what the command
//! means for text extraction. No entry's `code` may be a prefix of another entry's
//! `code` under the same prefix byte (a unit test checks this), so a lookup is never
//! ambiguous.
//!
//! Deliberately left out: `GS C ;` (a `;`-separated counter format of the 1990s) and
//! printer-specific extensions outside the Epson reference; they are diagnostics.
//! Kanji mode (`FS &` ... `FS .`) is skipped, not decoded: receipts are read as
//! single-byte text, which is all the layouts match.

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
    /// `length` data bytes (`GS ( k pL pH ...`, `GS 8 L p1 p2 p3 p4 ...`). The first
    /// `peek` data bytes (fewer if the length is shorter) are read as part of the header:
    /// they name the function (`cn fn`, `m fn`), checked by [`unknown_function`].
    Length {
        head: usize,
        width: usize,
        peek: usize,
    },
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
    /// `DLE DC4 fn ...`: the argument count depends on `fn` (see [`dle_dc4_args`]).
    DleDc4,
    /// `GS D m fn a kc1 kc2 b c`, then a Windows BMP file whose size is in its own
    /// header (`BM` and a little-endian u32 `bfSize`).
    WindowsBmp,
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
    /// `ESC @`: back to the configured code page, standard mode.
    Reset,
    /// `ESC L`: page mode: text collects in the page until ESC FF / FF prints it.
    PageMode,
    /// `ESC S`: standard mode; an unprinted page is discarded.
    StandardMode,
    /// `ESC FF`: prints the page, staying in page mode.
    PrintPage,
    /// `ESC t n`.
    SelectCodePage,
    /// `ESC R n`: international character set (12 ASCII positions).
    SelectNationalSet,
    /// `DLE EOT n`.
    StatusDleEot,
    /// `GS r n`.
    StatusGsR,
    /// `GS a n`.
    StatusGsA,
    /// `DLE DC4 fn ...`: `fn` 7 asks for status in real time.
    RealTimeDc4,
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
    cmd(
        ESC,
        b"(",
        "ESC (",
        Length {
            head: 1,
            width: 2,
            peek: 0,
        },
        Nothing,
    ),
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
    cmd(ESC, b"L", "ESC L", NoArgs, Effect::PageMode),
    cmd(ESC, b"M", "ESC M", Fixed(1), Nothing),
    cmd(ESC, b"R", "ESC R", Fixed(1), Effect::SelectNationalSet),
    cmd(ESC, b"S", "ESC S", NoArgs, Effect::StandardMode),
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
    cmd(ESC, b"f", "ESC f", Fixed(2), Nothing),
    // Epson documents both as partial cuts (one / three points left uncut).
    cmd(ESC, b"i", "ESC i", NoArgs, Effect::Cut { partial: true }),
    cmd(ESC, b"m", "ESC m", NoArgs, Effect::Cut { partial: true }),
    cmd(ESC, b"p", "ESC p", Fixed(3), Nothing),
    cmd(ESC, b"r", "ESC r", Fixed(1), Nothing),
    cmd(ESC, b"t", "ESC t", Fixed(1), Effect::SelectCodePage),
    cmd(ESC, b"u", "ESC u", Fixed(1), Nothing),
    cmd(ESC, b"v", "ESC v", NoArgs, Nothing),
    cmd(ESC, b"{", "ESC {", Fixed(1), Nothing),
    cmd(ESC, &[0x0C], "ESC FF", NoArgs, Effect::PrintPage),
    // Double width on/off of older and compatible printers (Star, Citizen).
    cmd(ESC, &[0x0E], "ESC SO", NoArgs, Nothing),
    cmd(ESC, &[0x14], "ESC DC4", NoArgs, Nothing),
    // GS: character size, barcodes, 2D codes, graphics, cut, status.
    cmd(GS, b"!", "GS !", Fixed(1), Nothing),
    cmd(GS, b"$", "GS $", Fixed(2), Nothing),
    // Every `GS ( X pL pH` (A, C, D, E, H, K, L, M, N, P, Q, k, z ...) has this shape;
    // the first two data bytes name the function (`cn fn` for k, `m fn` for L).
    cmd(
        GS,
        b"(",
        "GS (",
        Length {
            head: 1,
            width: 2,
            peek: 2,
        },
        Nothing,
    ),
    cmd(GS, b"*", "GS *", Args::DownloadedBitImage, Nothing),
    cmd(GS, b"/", "GS /", Fixed(1), Nothing),
    cmd(
        GS,
        b"8L",
        "GS 8 L",
        Length {
            head: 0,
            width: 4,
            peek: 2,
        },
        Nothing,
    ),
    cmd(GS, b":", "GS :", NoArgs, Nothing),
    cmd(GS, b"B", "GS B", Fixed(1), Nothing),
    // Counter printing (obsolete, still sent by older POS software).
    cmd(GS, b"C0", "GS C 0", Fixed(2), Nothing),
    cmd(GS, b"C1", "GS C 1", Fixed(6), Nothing),
    cmd(GS, b"C2", "GS C 2", Fixed(2), Nothing),
    cmd(GS, b"D", "GS D", Args::WindowsBmp, Nothing),
    cmd(GS, b"E", "GS E", Fixed(1), Nothing),
    cmd(GS, b"H", "GS H", Fixed(1), Nothing),
    cmd(GS, b"I", "GS I", Fixed(1), Nothing),
    cmd(GS, b"L", "GS L", Fixed(2), Nothing),
    cmd(GS, b"P", "GS P", Fixed(2), Nothing),
    // Variable vertical size bit image: the same shape as `GS v 0`.
    cmd(GS, b"Q0", "GS Q 0", Args::Raster, Nothing),
    cmd(GS, b"T", "GS T", Fixed(1), Nothing),
    cmd(GS, b"V", "GS V", Args::Cut, Effect::CutByMode),
    cmd(GS, b"W", "GS W", Fixed(2), Nothing),
    cmd(GS, b"\\", "GS \\", Fixed(2), Nothing),
    cmd(GS, b"^", "GS ^", Fixed(3), Nothing),
    cmd(GS, b"a", "GS a", Fixed(1), Effect::StatusGsA),
    cmd(GS, b"b", "GS b", Fixed(1), Nothing),
    cmd(GS, b"c", "GS c", NoArgs, Nothing),
    cmd(GS, b"f", "GS f", Fixed(1), Nothing),
    // Maintenance counters: initialise / transmit (m nL nH).
    cmd(GS, b"g0", "GS g 0", Fixed(3), Nothing),
    cmd(GS, b"g2", "GS g 2", Fixed(3), Nothing),
    cmd(GS, b"h", "GS h", Fixed(1), Nothing),
    cmd(GS, b"j", "GS j", Fixed(1), Nothing),
    cmd(GS, b"k", "GS k", Args::Barcode, Nothing),
    cmd(GS, b"r", "GS r", Fixed(1), Effect::StatusGsR),
    cmd(GS, b"v0", "GS v 0", Args::Raster, Nothing),
    cmd(GS, b"w", "GS w", Fixed(1), Nothing),
    cmd(GS, b"z0", "GS z 0", Fixed(2), Nothing),
    // FS: kanji modes and NV images.
    cmd(FS, b"!", "FS !", Fixed(1), Nothing),
    cmd(FS, b"&", "FS &", NoArgs, Nothing),
    cmd(
        FS,
        b"(",
        "FS (",
        Length {
            head: 1,
            width: 2,
            peek: 0,
        },
        Nothing,
    ),
    cmd(FS, b"-", "FS -", Fixed(1), Nothing),
    // Define a user-defined kanji character: c1 c2, then a 24x24 dot pattern.
    cmd(FS, b"2", "FS 2", Fixed(2 + 72), Nothing),
    cmd(FS, b"?", "FS ?", Fixed(2), Nothing),
    cmd(FS, b".", "FS .", NoArgs, Nothing),
    cmd(FS, b"C", "FS C", Fixed(1), Nothing),
    cmd(FS, b"S", "FS S", Fixed(2), Nothing),
    cmd(FS, b"W", "FS W", Fixed(1), Nothing),
    // NV user memory: write (m a1..a4 nL nH data) and read (m a1..a4 nL nH).
    cmd(
        FS,
        b"g1",
        "FS g 1",
        Length {
            head: 5,
            width: 2,
            peek: 0,
        },
        Nothing,
    ),
    cmd(FS, b"g2", "FS g 2", Fixed(7), Nothing),
    cmd(FS, b"p", "FS p", Fixed(2), Nothing),
    cmd(FS, b"q", "FS q", Args::NvImages, Nothing),
    // DLE: real-time commands.
    cmd(DLE, &[0x04], "DLE EOT", Args::DleEot, Effect::StatusDleEot),
    cmd(DLE, &[0x05], "DLE ENQ", Fixed(1), Nothing),
    cmd(DLE, &[0x14], "DLE DC4", Args::DleDc4, Effect::RealTimeDc4),
];

/// How many bytes follow `DLE DC4 fn` for each function, `None` for a function the
/// reference does not define (then only `fn` is consumed).
pub(crate) fn dle_dc4_args(function: u8) -> Option<usize> {
    match function {
        // Pulse (m t), power-off (a b).
        1 | 2 => Some(2),
        // Buzzer: a n r t1 t2.
        3 => Some(5),
        // Transmit specified status: m.
        7 => Some(1),
        // Clear buffers: d1..d7 = 1 3 20 1 6 2 8.
        8 => Some(7),
        _ => None,
    }
}

/// `GS ( k` symbols (`cn`) and the functions (`fn`) each one has.
const TWO_D_CODES: &[(u8, &str, &[u8])] = &[
    (48, "PDF417", &[65, 66, 67, 68, 69, 70, 80, 81, 82]),
    (49, "QR Code", &[65, 67, 69, 80, 81, 82]),
    (50, "MaxiCode", &[65, 80, 81, 82]),
    (51, "GS1 DataBar", &[67, 71, 80, 81, 82]),
    (52, "Composite", &[67, 71, 72, 80, 81, 82]),
    (53, "Aztec", &[66, 67, 69, 80, 81, 82]),
    (54, "DataMatrix", &[66, 67, 80, 81, 82]),
];

/// `GS ( L` / `GS 8 L` graphics functions (`fn`, after `m` = 48); both the
/// ASCII-digit and the binary numbering of the capacity/print functions exist.
const GRAPHICS_FUNCTIONS: &[u8] = &[
    0, 1, 2, 3, 4, 48, 49, 50, 51, 52, 64, 65, 66, 67, 68, 69, 80, 81, 82, 83, 84, 85, 112, 113,
];

/// For the function-style commands, a description of what is odd about the function
/// named by the first data bytes (`data`, at most `peek` of them), or `None` when the
/// reference knows it. `letter` is the byte after `GS (` (unused for `GS 8 L`).
pub(crate) fn unknown_function(command: &Command, letter: u8, data: &[u8]) -> Option<String> {
    let graphics = match (command.name, letter) {
        ("GS 8 L", _) | ("GS (", b'L') => true,
        ("GS (", b'k') => false,
        _ => return None,
    };
    let name = if command.name == "GS (" {
        format!("GS ( {}", char::from(letter))
    } else {
        command.name.to_string()
    };
    let &[first, function] = data else {
        return Some(format!("{name} too short to name a function"));
    };
    if graphics {
        if first != 48 || !GRAPHICS_FUNCTIONS.contains(&function) {
            return Some(format!(
                "{name} with unknown function m={first} fn={function}"
            ));
        }
        return None;
    }
    match TWO_D_CODES.iter().find(|(cn, _, _)| *cn == first) {
        None => Some(format!("{name} with unknown symbol cn={first}")),
        Some((_, symbol, functions)) if !functions.contains(&function) => Some(format!(
            "{name} {symbol} with unknown function fn={function}"
        )),
        Some(_) => None,
    }
}

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
