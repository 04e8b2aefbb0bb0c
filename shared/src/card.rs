//! GTIN check digits (EAN-13, EAN-8, UPC-A) and loyalty-card recognition.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The symbologies whose check digit we verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gtin {
    Ean13,
    Ean8,
    UpcA,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CardError {
    #[error("not a barcode number: {} (only digits are allowed)", tail(.0))]
    NotDigits(String),
    #[error("unsupported length {len} in {} (expected EAN-13, EAN-8 or UPC-A)", tail(.code))]
    BadLength { code: String, len: usize },
    #[error("bad check digit in {}: expected {expected}, found {found}", tail(.code))]
    BadCheckDigit {
        code: String,
        expected: u8,
        found: u8,
    },
    #[error("{} is a valid barcode but not a loyalty card (no configured prefix matches)", tail(.0))]
    NotLoyalty(String),
    #[error("bad card prefix {0:?}: prefixes are 1 to 12 digits")]
    BadPrefix(String),
}

/// A scanned or typed code as messages show it (see [`masked`]), quoted.
fn tail(code: &str) -> String {
    format!("\"{}\"", masked(code))
}

/// The GS1 mod-10 check digit of `body` (all digits but the last).
fn gs1_check_digit(body: &[u8]) -> u8 {
    // Weights 3,1,3,1... from the rightmost body digit.
    let sum: u32 = body
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| u32::from(d - b'0') * if i % 2 == 0 { 3 } else { 1 })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

/// Validates a GTIN's length and check digit and tells which symbology it is.
pub fn validate_gtin(code: &str) -> Result<Gtin, CardError> {
    let bytes = code.as_bytes();
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return Err(CardError::NotDigits(code.to_string()));
    }
    let kind = match bytes.len() {
        13 => Gtin::Ean13,
        12 => Gtin::UpcA,
        8 => Gtin::Ean8,
        len => {
            return Err(CardError::BadLength {
                code: code.to_string(),
                len,
            })
        }
    };
    let (body, last) = bytes.split_at(bytes.len() - 1);
    let expected = gs1_check_digit(body);
    let found = last[0] - b'0';
    if expected != found {
        return Err(CardError::BadCheckDigit {
            code: code.to_string(),
            expected,
            found,
        });
    }
    Ok(kind)
}

/// A loyalty card number: a valid EAN-13 (UPC-A is normalised to EAN-13 with a leading 0).
/// `Display` is the number itself (for data: URLs, files); `Debug` shows the last four
/// digits only, so a `{:?}` of an event or receipt in a log line leaks no card. Logs use
/// [`CardNumber::masked`].
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CardNumber(String);

impl CardNumber {
    /// Parses a scanned or typed number, checking its check digit. EAN-8 cards are kept
    /// as they are (8 digits); UPC-A becomes EAN-13.
    pub fn parse(code: &str) -> Result<Self, CardError> {
        let code = code.trim();
        match validate_gtin(code)? {
            Gtin::UpcA => Ok(CardNumber(format!("0{code}"))),
            Gtin::Ean13 | Gtin::Ean8 => Ok(CardNumber(code.to_string())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last four digits, as receipts print them.
    pub fn last4(&self) -> &str {
        &self.0[self.0.len().saturating_sub(4)..]
    }

    /// The card as a log line may show it: `…` and the last four digits.
    pub fn masked(&self) -> Masked<'_> {
        masked(&self.0)
    }
}

impl std::fmt::Debug for CardNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CardNumber({})", self.masked())
    }
}

impl std::fmt::Display for CardNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A card number (or any scanned or stored code) as logs and error messages show it:
/// its last four characters after `…`, so no log line carries a whole card number.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Masked<'a>(&'a str);

/// `code` as a log line may show it: see [`Masked`].
pub fn masked(code: &str) -> Masked<'_> {
    Masked(code)
}

impl std::fmt::Display for Masked<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let start = self.0.char_indices().rev().nth(3).map_or(0, |(i, _)| i);
        if start > 0 {
            f.write_str("…")?;
        }
        f.write_str(&self.0[start..])
    }
}

impl std::fmt::Debug for Masked<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// The EAN prefixes that mark a barcode as one of our loyalty cards (`[cards] prefixes`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardPrefixes(Vec<String>);

impl CardPrefixes {
    pub fn new<I, S>(prefixes: I) -> Result<Self, CardError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut list = Vec::new();
        for p in prefixes {
            let p: String = p.into();
            if p.is_empty() || p.len() > 12 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(CardError::BadPrefix(p));
            }
            list.push(p);
        }
        Ok(CardPrefixes(list))
    }

    pub fn matches(&self, card: &CardNumber) -> bool {
        self.0.iter().any(|p| card.as_str().starts_with(p.as_str()))
    }

    /// Parses a scan and keeps it only if it is a loyalty card.
    pub fn loyalty_card(&self, code: &str) -> Result<CardNumber, CardError> {
        let card = CardNumber::parse(code)?;
        if self.matches(&card) {
            Ok(card)
        } else {
            Err(CardError::NotLoyalty(card.0))
        }
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

/// Completes a 12-digit EAN-13 body (or 7-digit EAN-8 body) with its check digit:
/// used by generators (demo, tests) that mint card numbers.
pub fn with_check_digit(body: &str) -> Result<String, CardError> {
    if !body.bytes().all(|b| b.is_ascii_digit()) || body.is_empty() {
        return Err(CardError::NotDigits(body.to_string()));
    }
    Ok(format!("{body}{}", gs1_check_digit(body.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_and_errors_show_only_the_last_four_digits() {
        let card = CardNumber::parse("4006381333931").unwrap();
        assert_eq!(card.to_string(), "4006381333931", "Display is the number");
        assert_eq!(card.masked().to_string(), "…3931");
        assert_eq!(format!("{card:?}"), "CardNumber(…3931)");
        let receipt_card = Some(card);
        assert!(!format!("{receipt_card:?}").contains("400638133393"));
        for err in [
            validate_gtin("4006381333932").unwrap_err(),
            validate_gtin("40063813339").unwrap_err(),
            validate_gtin("4006381333x31").unwrap_err(),
            CardPrefixes::new(["2401"])
                .unwrap()
                .loyalty_card("4006381333931")
                .unwrap_err(),
        ] {
            let text = err.to_string();
            assert!(!text.contains("4006381"), "{text}");
            assert!(text.contains("…3"), "{text}");
        }
        assert_eq!(masked("123").to_string(), "123");
        assert_eq!(masked("ab€cdef").to_string(), "…cdef");
    }

    #[test]
    fn known_check_digits() {
        assert_eq!(validate_gtin("4006381333931"), Ok(Gtin::Ean13));
        assert_eq!(validate_gtin("96385074"), Ok(Gtin::Ean8));
        assert_eq!(validate_gtin("036000291452"), Ok(Gtin::UpcA));
        assert!(matches!(
            validate_gtin("4006381333932"),
            Err(CardError::BadCheckDigit {
                expected: 1,
                found: 2,
                ..
            })
        ));
        assert!(matches!(
            validate_gtin("40063813"),
            Err(CardError::BadCheckDigit { .. })
        ));
        assert!(matches!(
            validate_gtin("12345"),
            Err(CardError::BadLength { len: 5, .. })
        ));
        assert!(matches!(
            validate_gtin("40063A1333931"),
            Err(CardError::NotDigits(_))
        ));
    }

    #[test]
    fn upc_a_normalised() {
        assert_eq!(
            CardNumber::parse("036000291452").unwrap().as_str(),
            "0036000291452"
        );
    }

    #[test]
    fn prefixes() {
        let prefixes = CardPrefixes::new(["2401", "2402"]).unwrap();
        let card = with_check_digit("240100000012").unwrap();
        assert!(prefixes.loyalty_card(&card).is_ok());
        assert!(matches!(
            prefixes.loyalty_card("4006381333931"),
            Err(CardError::NotLoyalty(_))
        ));
        assert!(CardPrefixes::new(["24x"]).is_err());
        assert_eq!(CardNumber::parse(&card).unwrap().last4(), &card[9..]);
    }

    proptest::proptest! {
        #[test]
        fn any_single_digit_change_is_caught(body in "[0-9]{12}", pos in 0usize..13, delta in 1u8..10) {
            let code = with_check_digit(&body).unwrap();
            proptest::prop_assert!(validate_gtin(&code).is_ok());
            let mut bytes = code.into_bytes();
            bytes[pos] = b'0' + (bytes[pos] - b'0' + delta) % 10;
            let changed = String::from_utf8(bytes).unwrap();
            proptest::prop_assert!(validate_gtin(&changed).is_err());
        }
    }
}
