//! What is inside a framed scan (pure): AIM symbology identifiers and GS1 element
//! strings.
//!
//! Scanners may prefix each scan with an AIM identifier (`]` + symbology letter +
//! modifier: `]E0` EAN-13/UPC-A, `]E4` EAN-8, `]E3` EAN with add-on, `]C0` Code 128,
//! `]C1` GS1-128, `]Q1`/`]Q3` QR, `]e0` GS1 DataBar, `]d2` GS1 DataMatrix …) whatever
//! the agent's config says, so the identifier is always recognised and stripped.
//! GS1 symbols carry element strings: application identifiers (AIs) followed by their
//! data, variable-length fields ended by FNC1 (sent as GS, 0x1D). Human-readable
//! `(01)…(8110)…` text is understood as well.

use thiserror::Error;
use till360_shared::card::masked;

use super::framing::GS;

/// An AIM symbology identifier: `]` + symbology letter + modifier character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AimId {
    pub symbology: char,
    pub modifier: char,
}

impl AimId {
    /// Symbologies whose data is a GS1 element string (FNC1 in first position).
    pub fn is_gs1(self) -> bool {
        matches!(
            (self.symbology, self.modifier),
            ('C', '1') | ('e', '0') | ('d', '2') | ('Q', '3') | ('J', '1')
        )
    }

    /// EAN/UPC with a 2- or 5-digit add-on (`]E3`): the add-on is not part of the GTIN.
    pub fn is_ean_with_addon(self) -> bool {
        (self.symbology, self.modifier) == ('E', '3')
    }
}

impl std::fmt::Display for AimId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "]{}{}", self.symbology, self.modifier)
    }
}

/// Splits a leading AIM identifier off a scan.
pub fn strip_aim(text: &str) -> (Option<AimId>, &str) {
    let bytes = text.as_bytes();
    match bytes {
        [b']', s, m, ..] if s.is_ascii_alphabetic() && m.is_ascii_alphanumeric() => (
            Some(AimId {
                symbology: char::from(*s),
                modifier: char::from(*m),
            }),
            // The three bytes are ASCII, so index 3 is a char boundary.
            &text[3..],
        ),
        _ => (None, text),
    }
}

/// The data part of an EAN-13 + add-on scan (`]E3`): the first 13 digits.
pub fn without_addon(data: &str) -> &str {
    match data.len() {
        15 | 18 if data.bytes().all(|b| b.is_ascii_digit()) => &data[..13],
        _ => data,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Gs1Error {
    #[error("unknown application identifier at {:?}", masked(.0))]
    UnknownAi(String),
    #[error("AI ({ai}) needs {want} characters, found {found}")]
    Short {
        ai: String,
        want: usize,
        found: usize,
    },
    #[error("AI ({ai}) value is longer than {max} characters")]
    TooLong { ai: String, max: usize },
    #[error("AI ({ai}) is empty")]
    Empty { ai: String },
    #[error("bad human-readable GS1 text: {:?}", masked(.0))]
    BadBrackets(String),
    #[error("no element string")]
    Nothing,
}

/// One AI and its value, e.g. `("01", "04006381333931")`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub ai: String,
    pub value: String,
}

/// How an AI's value is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Length {
    /// Exactly this many characters, no FNC1 needed after it.
    Fixed(usize),
    /// Up to this many characters, ended by FNC1 or the end of the symbol.
    Upto(usize),
}

/// The length of the AI itself (2, 3 or 4 digits) and of its value, from the GS1
/// General Specifications. Only families whose AI length is certain are tabled; an AI
/// outside them stops parsing (its end cannot be known).
fn ai_rule(digits: &[u8]) -> Option<(usize, Length)> {
    let d = |i: usize| {
        digits
            .get(i)
            .filter(|b| b.is_ascii_digit())
            .map(|b| b - b'0')
    };
    let two = d(0)? * 10 + d(1)?;
    // The predefined-length AIs: these never carry an FNC1 after their data.
    let fixed = match two {
        0 => Some((2, 18)),
        1..=3 => Some((2, 14)),
        4 => Some((2, 16)),
        11..=19 => Some((2, 6)),
        20 => Some((2, 2)),
        31..=36 => Some((4, 6)),
        41 => Some((3, 13)),
        _ => None,
    };
    if let Some((ai_len, len)) = fixed {
        return Some((ai_len, Length::Fixed(len)));
    }
    let rule = match two {
        10 | 21 | 22 => (2, Length::Upto(20)),
        30 | 37 => (2, Length::Upto(8)),
        90 => (2, Length::Upto(30)),
        91..=99 => (2, Length::Upto(90)),
        23..=25 | 40 | 42 | 71 => {
            let three = u16::from(two) * 10 + u16::from(d(2)?);
            match three {
                235 => (3, Length::Upto(28)),
                240 | 241 | 250 | 251 | 253 | 400 | 401 | 403 => (3, Length::Upto(30)),
                242 => (3, Length::Upto(6)),
                243 | 254 | 420 => (3, Length::Upto(20)),
                255 => (3, Length::Upto(25)),
                402 => (3, Length::Upto(17)),
                421 => (3, Length::Upto(12)),
                422 | 424 | 426 => (3, Length::Upto(3)),
                423 | 425 => (3, Length::Upto(15)),
                427 => (3, Length::Upto(3)),
                710..=716 => (3, Length::Upto(20)),
                _ => return None,
            }
        }
        39 => match d(2)? {
            0 | 2 => (4, Length::Upto(15)),
            1 | 3 => (4, Length::Upto(18)),
            4 => (4, Length::Upto(4)),
            5 => (4, Length::Upto(6)),
            _ => return None,
        },
        70 | 72 | 80..=82 => {
            let four = u16::from(two) * 100 + u16::from(d(2)?) * 10 + u16::from(d(3)?);
            match four {
                7001 => (4, Length::Upto(13)),
                7002 | 7003 | 7005 | 7007 | 7009 | 7011 => (4, Length::Upto(30)),
                7004 | 7040 => (4, Length::Upto(4)),
                7006 => (4, Length::Upto(6)),
                7008 | 7010 | 7241 => (4, Length::Upto(3)),
                7020..=7023 | 7030..=7039 => (4, Length::Upto(30)),
                7240 => (4, Length::Upto(20)),
                7242 => (4, Length::Upto(25)),
                8001 | 8017 | 8018 | 8026 => (4, Length::Upto(18)),
                8002 | 8012 => (4, Length::Upto(20)),
                8003 | 8004 | 8010 => (4, Length::Upto(30)),
                8005 | 8111 => (4, Length::Upto(6)),
                8006 => (4, Length::Upto(18)),
                8007 => (4, Length::Upto(34)),
                8008 | 8011 => (4, Length::Upto(12)),
                8009 => (4, Length::Upto(50)),
                8013 | 8020 => (4, Length::Upto(25)),
                8019 => (4, Length::Upto(10)),
                8110 | 8112 | 8200 => (4, Length::Upto(70)),
                _ => return None,
            }
        }
        _ => return None,
    };
    Some(rule)
}

/// Whether `data` (AIM identifier already stripped) looks like a GS1 element string
/// without an identifier saying so: a leading FNC1, an FNC1 inside, or `(NN)` text.
pub fn looks_like_gs1(data: &str) -> bool {
    data.as_bytes().first() == Some(&GS) || data.as_bytes().contains(&GS) || data.starts_with('(')
}

/// Parses a GS1 element string. Parsing stops at the first element it cannot read; the
/// elements before it are returned with the error so a card in (01) is still found.
pub fn parse_gs1(data: &str) -> (Vec<Element>, Option<Gs1Error>) {
    if data.starts_with('(') {
        return parse_bracketed(data);
    }
    let bytes = data.as_bytes();
    let mut elements = Vec::new();
    let mut at = 0;
    loop {
        // FNC1 separators (and a leading FNC1) carry no data.
        while bytes.get(at) == Some(&GS) {
            at += 1;
        }
        if at >= bytes.len() {
            break;
        }
        let rest = &bytes[at..];
        let digits: Vec<u8> = rest
            .iter()
            .take(4)
            .take_while(|b| b.is_ascii_digit())
            .copied()
            .collect();
        let Some((ai_len, length)) = ai_rule(&digits).filter(|(len, _)| *len <= digits.len())
        else {
            return (elements, Some(Gs1Error::UnknownAi(escape_gs(rest, 8))));
        };
        let ai = String::from_utf8_lossy(&rest[..ai_len]).into_owned();
        let body = &rest[ai_len..];
        let until_gs = body.iter().position(|&b| b == GS).unwrap_or(body.len());
        let value_len = match length {
            Length::Fixed(n) if body.len() >= n && !body[..n].contains(&GS) => n,
            Length::Fixed(n) => {
                let found = until_gs;
                return (elements, Some(Gs1Error::Short { ai, want: n, found }));
            }
            Length::Upto(max) if until_gs > max => {
                return (elements, Some(Gs1Error::TooLong { ai, max }))
            }
            Length::Upto(_) if until_gs == 0 => return (elements, Some(Gs1Error::Empty { ai })),
            Length::Upto(_) => until_gs,
        };
        let value = String::from_utf8_lossy(&body[..value_len]).into_owned();
        elements.push(Element { ai, value });
        at += ai_len + value_len;
    }
    if elements.is_empty() {
        return (elements, Some(Gs1Error::Nothing));
    }
    (elements, None)
}

/// `(01)04006381333931(10)ABC`: the brackets delimit the AIs, so no table is needed to
/// split it, but a known AI's length is still checked.
fn parse_bracketed(data: &str) -> (Vec<Element>, Option<Gs1Error>) {
    let mut elements = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let Some(after_open) = rest.strip_prefix('(') else {
            return (elements, Some(Gs1Error::BadBrackets(shorten(rest))));
        };
        let Some((ai, tail)) = after_open.split_once(')') else {
            return (elements, Some(Gs1Error::BadBrackets(shorten(rest))));
        };
        let value_end = tail.find('(').unwrap_or(tail.len());
        let value = &tail[..value_end];
        rest = &tail[value_end..];
        let known = ai_rule(ai.as_bytes()).filter(|(len, _)| *len == ai.len());
        let Some((_, length)) = known.filter(|_| ai.bytes().all(|b| b.is_ascii_digit())) else {
            return (elements, Some(Gs1Error::UnknownAi(shorten(ai))));
        };
        let problem = match length {
            Length::Fixed(n) if value.len() != n => Some(Gs1Error::Short {
                ai: ai.to_string(),
                want: n,
                found: value.len(),
            }),
            Length::Upto(max) if value.len() > max => Some(Gs1Error::TooLong {
                ai: ai.to_string(),
                max,
            }),
            _ if value.is_empty() => Some(Gs1Error::Empty { ai: ai.to_string() }),
            _ => None,
        };
        if let Some(problem) = problem {
            return (elements, Some(problem));
        }
        elements.push(Element {
            ai: ai.to_string(),
            value: value.to_string(),
        });
    }
    if elements.is_empty() {
        return (elements, Some(Gs1Error::Nothing));
    }
    (elements, None)
}

/// The GTIN-13 (or GTIN-8) inside a valid GTIN-14, for matching against card numbers.
/// `None` when the check digit is wrong or the value is not 14 digits.
pub fn gtin14_inner(gtin14: &str) -> Option<Vec<&str>> {
    let bytes = gtin14.as_bytes();
    if bytes.len() != 14 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let expected = till360_shared::card::with_check_digit(&gtin14[..13]).ok()?;
    if expected != gtin14 {
        return None;
    }
    let mut candidates = Vec::new();
    // Indicator digit 0: the GTIN-13 (UPC-A gets its leading 0, as a CardNumber does).
    if bytes[0] == b'0' {
        candidates.push(&gtin14[1..]);
        if let Some(gtin8) = gtin14.strip_prefix("000000") {
            candidates.push(gtin8);
        }
    }
    Some(candidates)
}

fn escape_gs(bytes: &[u8], max: usize) -> String {
    super::framing::escape(&bytes[..bytes.len().min(max)])
}

fn shorten(text: &str) -> String {
    text.chars().take(16).collect()
}
