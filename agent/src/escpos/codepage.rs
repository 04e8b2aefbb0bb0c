//! Single-byte code pages used by receipt printers, and Epson's `ESC t n` numbering.
//!
//! Bytes below 0x80 are ASCII in every supported page; the upper halves are tables
//! generated from the Unicode mappings (bytes a page leaves undefined decode to U+FFFD).

/// A printer character code table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodePage {
    Cp437,
    Cp850,
    Cp852,
    Cp858,
    Cp866,
    Cp1252,
}

impl CodePage {
    /// Parses a configured name: `cp858`, `CP858`, `pc858`, `ibm858`, `858`,
    /// `windows-1252`, `wpc1252` ... (case-insensitive).
    pub fn from_name(name: &str) -> Option<CodePage> {
        let lower = name.trim().to_ascii_lowercase();
        let number = ["windows-", "windows", "wpc", "cp", "pc", "ibm", ""]
            .iter()
            .find_map(|prefix| lower.strip_prefix(prefix))?;
        match number {
            "437" => Some(CodePage::Cp437),
            "850" => Some(CodePage::Cp850),
            "852" => Some(CodePage::Cp852),
            "858" => Some(CodePage::Cp858),
            "866" => Some(CodePage::Cp866),
            "1252" => Some(CodePage::Cp1252),
            _ => None,
        }
    }

    /// The page selected by Epson `ESC t n`, if we support it.
    pub fn from_esc_t(n: u8) -> Option<CodePage> {
        match n {
            0 => Some(CodePage::Cp437),
            2 => Some(CodePage::Cp850),
            16 => Some(CodePage::Cp1252),
            17 => Some(CodePage::Cp866),
            18 => Some(CodePage::Cp852),
            19 => Some(CodePage::Cp858),
            _ => None,
        }
    }

    /// The canonical lower-case name (`cp858`), as config files spell it.
    pub fn name(self) -> &'static str {
        match self {
            CodePage::Cp437 => "cp437",
            CodePage::Cp850 => "cp850",
            CodePage::Cp852 => "cp852",
            CodePage::Cp858 => "cp858",
            CodePage::Cp866 => "cp866",
            CodePage::Cp1252 => "cp1252",
        }
    }

    /// Decodes one printable byte (the parser never passes control bytes).
    pub fn decode(self, byte: u8) -> char {
        if byte < 0x80 {
            return char::from(byte);
        }
        // CP858 is CP850 with the euro sign where CP850 has a dotless i.
        if self == CodePage::Cp858 && byte == 0xD5 {
            return '\u{20AC}';
        }
        let high = match self {
            CodePage::Cp437 => &CP437_HIGH,
            CodePage::Cp850 | CodePage::Cp858 => &CP850_HIGH,
            CodePage::Cp852 => &CP852_HIGH,
            CodePage::Cp866 => &CP866_HIGH,
            CodePage::Cp1252 => &CP1252_HIGH,
        };
        high[usize::from(byte - 0x80)]
    }
}

/// Which code page each `ESC t n` selects on one printer model: Epson's numbering
/// by default, changed per number by `[pos] codepage_map` for printers that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EscTTable {
    pages: [Option<CodePage>; 256],
}

impl EscTTable {
    /// The `printer_model` presets [`for_model`](Self::for_model) knows.
    pub const MODELS: &'static [&'static str] = &["epson"];

    /// Epson TM printers (and the many that copy them): 0 PC437, 2 PC850, 16 WPC1252,
    /// 17 PC866, 18 PC852, 19 PC858; other numbers select pages we do not decode.
    pub fn epson() -> Self {
        let mut pages = [None; 256];
        for n in 0..=255u8 {
            pages[usize::from(n)] = CodePage::from_esc_t(n);
        }
        EscTTable { pages }
    }

    /// The preset for a `printer_model` name (case-insensitive), if there is one.
    pub fn for_model(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "epson" => Some(Self::epson()),
            _ => None,
        }
    }

    /// The same table with `ESC t n` selecting `page` instead.
    pub fn with(mut self, n: u8, page: CodePage) -> Self {
        self.pages[usize::from(n)] = Some(page);
        self
    }

    /// The page `ESC t n` selects, `None` when we cannot decode it.
    pub fn get(&self, n: u8) -> Option<CodePage> {
        self.pages[usize::from(n)]
    }

    /// The `n` to send in `ESC t n` to select `page` on this printer (the lowest, if
    /// several select it), for text the agent prints itself.
    pub fn number_of(&self, page: CodePage) -> Option<u8> {
        (0..=255u8).find(|&n| self.get(n) == Some(page))
    }
}

impl Default for EscTTable {
    fn default() -> Self {
        Self::epson()
    }
}

/// The ASCII positions an `ESC R n` international character set replaces.
const NATIONAL_POSITIONS: [u8; 12] = [
    0x23, 0x24, 0x40, 0x5B, 0x5C, 0x5D, 0x5E, 0x60, 0x7B, 0x7C, 0x7D, 0x7E,
];

/// What each Epson `ESC R n` set prints at [`NATIONAL_POSITIONS`], `n` = index.
const NATIONAL_SETS: [[char; 12]; 17] = [
    ['#', '$', '@', '[', '\\', ']', '^', '`', '{', '|', '}', '~'], // 0 USA
    ['#', '$', 'à', '°', 'ç', '§', '^', '`', 'é', 'ù', 'è', '¨'],  // 1 France
    ['#', '$', '§', 'Ä', 'Ö', 'Ü', '^', '`', 'ä', 'ö', 'ü', 'ß'],  // 2 Germany
    ['£', '$', '@', '[', '\\', ']', '^', '`', '{', '|', '}', '~'], // 3 UK
    ['#', '$', '@', 'Æ', 'Ø', 'Å', '^', '`', 'æ', 'ø', 'å', '~'],  // 4 Denmark I
    ['#', '¤', 'É', 'Ä', 'Ö', 'Å', 'Ü', 'é', 'ä', 'ö', 'å', 'ü'],  // 5 Sweden
    ['#', '$', '@', '°', '\\', 'é', '^', 'ù', 'à', 'ò', 'è', 'ì'], // 6 Italy
    ['₧', '$', '@', '¡', 'Ñ', '¿', '^', '`', '¨', 'ñ', '}', '~'],  // 7 Spain I
    ['#', '$', '@', '[', '¥', ']', '^', '`', '{', '|', '}', '~'],  // 8 Japan
    ['#', '¤', 'É', 'Æ', 'Ø', 'Å', 'Ü', 'é', 'æ', 'ø', 'å', 'ü'],  // 9 Norway
    ['#', '$', 'É', 'Æ', 'Ø', 'Å', 'Ü', 'é', 'æ', 'ø', 'å', 'ü'],  // 10 Denmark II
    ['#', '$', 'á', '¡', 'Ñ', '¿', 'é', '`', 'í', 'ñ', 'ó', 'ú'],  // 11 Spain II
    ['#', '$', 'á', '¡', 'Ñ', '¿', 'é', 'ü', 'í', 'ñ', 'ó', 'ú'],  // 12 Latin America
    ['#', '$', '@', '[', '₩', ']', '^', '`', '{', '|', '}', '~'],  // 13 Korea
    ['#', '$', 'Ž', 'Š', 'Đ', 'Ć', 'Č', 'ž', 'š', 'đ', 'ć', 'č'],  // 14 Slovenia/Croatia
    ['#', '¥', '@', '[', '\\', ']', '^', '`', '{', '|', '}', '~'], // 15 China
    ['#', '₫', '@', '[', '\\', ']', '^', '`', '{', '|', '}', '~'], // 16 Vietnam
];

/// An Epson `ESC R n` international character set: it changes 12 ASCII positions
/// (`#`, `$`, `@`, `[` ...) into national letters and currency signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NationalSet(u8);

impl NationalSet {
    pub const USA: NationalSet = NationalSet(0);

    /// The set `ESC R n` selects, if we decode it (0 to 16; Arabia and the Indian
    /// scripts are not).
    pub fn from_esc_r(n: u8) -> Option<NationalSet> {
        (usize::from(n) < NATIONAL_SETS.len()).then_some(NationalSet(n))
    }

    /// What the printer prints for ASCII `byte` in this set.
    pub fn decode(self, byte: u8) -> char {
        if self.0 != 0 {
            if let Some(i) = NATIONAL_POSITIONS.iter().position(|&p| p == byte) {
                return NATIONAL_SETS[usize::from(self.0)][i];
            }
        }
        char::from(byte)
    }
}

impl std::fmt::Display for CodePage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Bytes 0x80..=0xFF of CP437.
const CP437_HIGH: [char; 128] = [
    '\u{00C7}', '\u{00FC}', '\u{00E9}', '\u{00E2}', '\u{00E4}', '\u{00E0}', '\u{00E5}',
    '\u{00E7}', // 0x80
    '\u{00EA}', '\u{00EB}', '\u{00E8}', '\u{00EF}', '\u{00EE}', '\u{00EC}', '\u{00C4}',
    '\u{00C5}', // 0x88
    '\u{00C9}', '\u{00E6}', '\u{00C6}', '\u{00F4}', '\u{00F6}', '\u{00F2}', '\u{00FB}',
    '\u{00F9}', // 0x90
    '\u{00FF}', '\u{00D6}', '\u{00DC}', '\u{00A2}', '\u{00A3}', '\u{00A5}', '\u{20A7}',
    '\u{0192}', // 0x98
    '\u{00E1}', '\u{00ED}', '\u{00F3}', '\u{00FA}', '\u{00F1}', '\u{00D1}', '\u{00AA}',
    '\u{00BA}', // 0xA0
    '\u{00BF}', '\u{2310}', '\u{00AC}', '\u{00BD}', '\u{00BC}', '\u{00A1}', '\u{00AB}',
    '\u{00BB}', // 0xA8
    '\u{2591}', '\u{2592}', '\u{2593}', '\u{2502}', '\u{2524}', '\u{2561}', '\u{2562}',
    '\u{2556}', // 0xB0
    '\u{2555}', '\u{2563}', '\u{2551}', '\u{2557}', '\u{255D}', '\u{255C}', '\u{255B}',
    '\u{2510}', // 0xB8
    '\u{2514}', '\u{2534}', '\u{252C}', '\u{251C}', '\u{2500}', '\u{253C}', '\u{255E}',
    '\u{255F}', // 0xC0
    '\u{255A}', '\u{2554}', '\u{2569}', '\u{2566}', '\u{2560}', '\u{2550}', '\u{256C}',
    '\u{2567}', // 0xC8
    '\u{2568}', '\u{2564}', '\u{2565}', '\u{2559}', '\u{2558}', '\u{2552}', '\u{2553}',
    '\u{256B}', // 0xD0
    '\u{256A}', '\u{2518}', '\u{250C}', '\u{2588}', '\u{2584}', '\u{258C}', '\u{2590}',
    '\u{2580}', // 0xD8
    '\u{03B1}', '\u{00DF}', '\u{0393}', '\u{03C0}', '\u{03A3}', '\u{03C3}', '\u{00B5}',
    '\u{03C4}', // 0xE0
    '\u{03A6}', '\u{0398}', '\u{03A9}', '\u{03B4}', '\u{221E}', '\u{03C6}', '\u{03B5}',
    '\u{2229}', // 0xE8
    '\u{2261}', '\u{00B1}', '\u{2265}', '\u{2264}', '\u{2320}', '\u{2321}', '\u{00F7}',
    '\u{2248}', // 0xF0
    '\u{00B0}', '\u{2219}', '\u{00B7}', '\u{221A}', '\u{207F}', '\u{00B2}', '\u{25A0}',
    '\u{00A0}', // 0xF8
];

/// Bytes 0x80..=0xFF of CP850.
const CP850_HIGH: [char; 128] = [
    '\u{00C7}', '\u{00FC}', '\u{00E9}', '\u{00E2}', '\u{00E4}', '\u{00E0}', '\u{00E5}',
    '\u{00E7}', // 0x80
    '\u{00EA}', '\u{00EB}', '\u{00E8}', '\u{00EF}', '\u{00EE}', '\u{00EC}', '\u{00C4}',
    '\u{00C5}', // 0x88
    '\u{00C9}', '\u{00E6}', '\u{00C6}', '\u{00F4}', '\u{00F6}', '\u{00F2}', '\u{00FB}',
    '\u{00F9}', // 0x90
    '\u{00FF}', '\u{00D6}', '\u{00DC}', '\u{00F8}', '\u{00A3}', '\u{00D8}', '\u{00D7}',
    '\u{0192}', // 0x98
    '\u{00E1}', '\u{00ED}', '\u{00F3}', '\u{00FA}', '\u{00F1}', '\u{00D1}', '\u{00AA}',
    '\u{00BA}', // 0xA0
    '\u{00BF}', '\u{00AE}', '\u{00AC}', '\u{00BD}', '\u{00BC}', '\u{00A1}', '\u{00AB}',
    '\u{00BB}', // 0xA8
    '\u{2591}', '\u{2592}', '\u{2593}', '\u{2502}', '\u{2524}', '\u{00C1}', '\u{00C2}',
    '\u{00C0}', // 0xB0
    '\u{00A9}', '\u{2563}', '\u{2551}', '\u{2557}', '\u{255D}', '\u{00A2}', '\u{00A5}',
    '\u{2510}', // 0xB8
    '\u{2514}', '\u{2534}', '\u{252C}', '\u{251C}', '\u{2500}', '\u{253C}', '\u{00E3}',
    '\u{00C3}', // 0xC0
    '\u{255A}', '\u{2554}', '\u{2569}', '\u{2566}', '\u{2560}', '\u{2550}', '\u{256C}',
    '\u{00A4}', // 0xC8
    '\u{00F0}', '\u{00D0}', '\u{00CA}', '\u{00CB}', '\u{00C8}', '\u{0131}', '\u{00CD}',
    '\u{00CE}', // 0xD0
    '\u{00CF}', '\u{2518}', '\u{250C}', '\u{2588}', '\u{2584}', '\u{00A6}', '\u{00CC}',
    '\u{2580}', // 0xD8
    '\u{00D3}', '\u{00DF}', '\u{00D4}', '\u{00D2}', '\u{00F5}', '\u{00D5}', '\u{00B5}',
    '\u{00FE}', // 0xE0
    '\u{00DE}', '\u{00DA}', '\u{00DB}', '\u{00D9}', '\u{00FD}', '\u{00DD}', '\u{00AF}',
    '\u{00B4}', // 0xE8
    '\u{00AD}', '\u{00B1}', '\u{2017}', '\u{00BE}', '\u{00B6}', '\u{00A7}', '\u{00F7}',
    '\u{00B8}', // 0xF0
    '\u{00B0}', '\u{00A8}', '\u{00B7}', '\u{00B9}', '\u{00B3}', '\u{00B2}', '\u{25A0}',
    '\u{00A0}', // 0xF8
];

/// Bytes 0x80..=0xFF of CP1252.
const CP1252_HIGH: [char; 128] = [
    '\u{20AC}', '\u{FFFD}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}',
    '\u{2021}', // 0x80
    '\u{02C6}', '\u{2030}', '\u{0160}', '\u{2039}', '\u{0152}', '\u{FFFD}', '\u{017D}',
    '\u{FFFD}', // 0x88
    '\u{FFFD}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}',
    '\u{2014}', // 0x90
    '\u{02DC}', '\u{2122}', '\u{0161}', '\u{203A}', '\u{0153}', '\u{FFFD}', '\u{017E}',
    '\u{0178}', // 0x98
    '\u{00A0}', '\u{00A1}', '\u{00A2}', '\u{00A3}', '\u{00A4}', '\u{00A5}', '\u{00A6}',
    '\u{00A7}', // 0xA0
    '\u{00A8}', '\u{00A9}', '\u{00AA}', '\u{00AB}', '\u{00AC}', '\u{00AD}', '\u{00AE}',
    '\u{00AF}', // 0xA8
    '\u{00B0}', '\u{00B1}', '\u{00B2}', '\u{00B3}', '\u{00B4}', '\u{00B5}', '\u{00B6}',
    '\u{00B7}', // 0xB0
    '\u{00B8}', '\u{00B9}', '\u{00BA}', '\u{00BB}', '\u{00BC}', '\u{00BD}', '\u{00BE}',
    '\u{00BF}', // 0xB8
    '\u{00C0}', '\u{00C1}', '\u{00C2}', '\u{00C3}', '\u{00C4}', '\u{00C5}', '\u{00C6}',
    '\u{00C7}', // 0xC0
    '\u{00C8}', '\u{00C9}', '\u{00CA}', '\u{00CB}', '\u{00CC}', '\u{00CD}', '\u{00CE}',
    '\u{00CF}', // 0xC8
    '\u{00D0}', '\u{00D1}', '\u{00D2}', '\u{00D3}', '\u{00D4}', '\u{00D5}', '\u{00D6}',
    '\u{00D7}', // 0xD0
    '\u{00D8}', '\u{00D9}', '\u{00DA}', '\u{00DB}', '\u{00DC}', '\u{00DD}', '\u{00DE}',
    '\u{00DF}', // 0xD8
    '\u{00E0}', '\u{00E1}', '\u{00E2}', '\u{00E3}', '\u{00E4}', '\u{00E5}', '\u{00E6}',
    '\u{00E7}', // 0xE0
    '\u{00E8}', '\u{00E9}', '\u{00EA}', '\u{00EB}', '\u{00EC}', '\u{00ED}', '\u{00EE}',
    '\u{00EF}', // 0xE8
    '\u{00F0}', '\u{00F1}', '\u{00F2}', '\u{00F3}', '\u{00F4}', '\u{00F5}', '\u{00F6}',
    '\u{00F7}', // 0xF0
    '\u{00F8}', '\u{00F9}', '\u{00FA}', '\u{00FB}', '\u{00FC}', '\u{00FD}', '\u{00FE}',
    '\u{00FF}', // 0xF8
];

/// Bytes 0x80..=0xFF of CP852.
const CP852_HIGH: [char; 128] = [
    '\u{00C7}', '\u{00FC}', '\u{00E9}', '\u{00E2}', '\u{00E4}', '\u{016F}', '\u{0107}',
    '\u{00E7}', // 0x80
    '\u{0142}', '\u{00EB}', '\u{0150}', '\u{0151}', '\u{00EE}', '\u{0179}', '\u{00C4}',
    '\u{0106}', // 0x88
    '\u{00C9}', '\u{0139}', '\u{013A}', '\u{00F4}', '\u{00F6}', '\u{013D}', '\u{013E}',
    '\u{015A}', // 0x90
    '\u{015B}', '\u{00D6}', '\u{00DC}', '\u{0164}', '\u{0165}', '\u{0141}', '\u{00D7}',
    '\u{010D}', // 0x98
    '\u{00E1}', '\u{00ED}', '\u{00F3}', '\u{00FA}', '\u{0104}', '\u{0105}', '\u{017D}',
    '\u{017E}', // 0xA0
    '\u{0118}', '\u{0119}', '\u{00AC}', '\u{017A}', '\u{010C}', '\u{015F}', '\u{00AB}',
    '\u{00BB}', // 0xA8
    '\u{2591}', '\u{2592}', '\u{2593}', '\u{2502}', '\u{2524}', '\u{00C1}', '\u{00C2}',
    '\u{011A}', // 0xB0
    '\u{015E}', '\u{2563}', '\u{2551}', '\u{2557}', '\u{255D}', '\u{017B}', '\u{017C}',
    '\u{2510}', // 0xB8
    '\u{2514}', '\u{2534}', '\u{252C}', '\u{251C}', '\u{2500}', '\u{253C}', '\u{0102}',
    '\u{0103}', // 0xC0
    '\u{255A}', '\u{2554}', '\u{2569}', '\u{2566}', '\u{2560}', '\u{2550}', '\u{256C}',
    '\u{00A4}', // 0xC8
    '\u{0111}', '\u{0110}', '\u{010E}', '\u{00CB}', '\u{010F}', '\u{0147}', '\u{00CD}',
    '\u{00CE}', // 0xD0
    '\u{011B}', '\u{2518}', '\u{250C}', '\u{2588}', '\u{2584}', '\u{0162}', '\u{016E}',
    '\u{2580}', // 0xD8
    '\u{00D3}', '\u{00DF}', '\u{00D4}', '\u{0143}', '\u{0144}', '\u{0148}', '\u{0160}',
    '\u{0161}', // 0xE0
    '\u{0154}', '\u{00DA}', '\u{0155}', '\u{0170}', '\u{00FD}', '\u{00DD}', '\u{0163}',
    '\u{00B4}', // 0xE8
    '\u{00AD}', '\u{02DD}', '\u{02DB}', '\u{02C7}', '\u{02D8}', '\u{00A7}', '\u{00F7}',
    '\u{00B8}', // 0xF0
    '\u{00B0}', '\u{00A8}', '\u{02D9}', '\u{0171}', '\u{0158}', '\u{0159}', '\u{25A0}',
    '\u{00A0}', // 0xF8
];

/// Bytes 0x80..=0xFF of CP866.
const CP866_HIGH: [char; 128] = [
    '\u{0410}', '\u{0411}', '\u{0412}', '\u{0413}', '\u{0414}', '\u{0415}', '\u{0416}',
    '\u{0417}', // 0x80
    '\u{0418}', '\u{0419}', '\u{041A}', '\u{041B}', '\u{041C}', '\u{041D}', '\u{041E}',
    '\u{041F}', // 0x88
    '\u{0420}', '\u{0421}', '\u{0422}', '\u{0423}', '\u{0424}', '\u{0425}', '\u{0426}',
    '\u{0427}', // 0x90
    '\u{0428}', '\u{0429}', '\u{042A}', '\u{042B}', '\u{042C}', '\u{042D}', '\u{042E}',
    '\u{042F}', // 0x98
    '\u{0430}', '\u{0431}', '\u{0432}', '\u{0433}', '\u{0434}', '\u{0435}', '\u{0436}',
    '\u{0437}', // 0xA0
    '\u{0438}', '\u{0439}', '\u{043A}', '\u{043B}', '\u{043C}', '\u{043D}', '\u{043E}',
    '\u{043F}', // 0xA8
    '\u{2591}', '\u{2592}', '\u{2593}', '\u{2502}', '\u{2524}', '\u{2561}', '\u{2562}',
    '\u{2556}', // 0xB0
    '\u{2555}', '\u{2563}', '\u{2551}', '\u{2557}', '\u{255D}', '\u{255C}', '\u{255B}',
    '\u{2510}', // 0xB8
    '\u{2514}', '\u{2534}', '\u{252C}', '\u{251C}', '\u{2500}', '\u{253C}', '\u{255E}',
    '\u{255F}', // 0xC0
    '\u{255A}', '\u{2554}', '\u{2569}', '\u{2566}', '\u{2560}', '\u{2550}', '\u{256C}',
    '\u{2567}', // 0xC8
    '\u{2568}', '\u{2564}', '\u{2565}', '\u{2559}', '\u{2558}', '\u{2552}', '\u{2553}',
    '\u{256B}', // 0xD0
    '\u{256A}', '\u{2518}', '\u{250C}', '\u{2588}', '\u{2584}', '\u{258C}', '\u{2590}',
    '\u{2580}', // 0xD8
    '\u{0440}', '\u{0441}', '\u{0442}', '\u{0443}', '\u{0444}', '\u{0445}', '\u{0446}',
    '\u{0447}', // 0xE0
    '\u{0448}', '\u{0449}', '\u{044A}', '\u{044B}', '\u{044C}', '\u{044D}', '\u{044E}',
    '\u{044F}', // 0xE8
    '\u{0401}', '\u{0451}', '\u{0404}', '\u{0454}', '\u{0407}', '\u{0457}', '\u{040E}',
    '\u{045E}', // 0xF0
    '\u{00B0}', '\u{2219}', '\u{00B7}', '\u{221A}', '\u{2116}', '\u{00A4}', '\u{25A0}',
    '\u{00A0}', // 0xF8
];
