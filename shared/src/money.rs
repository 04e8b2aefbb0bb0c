//! Money as integer minor units with an ISO 4217 currency (DESIGN.md principle 6).

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// An ISO 4217 currency code, three ASCII upper-case letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Currency([u8; 3]);

impl Currency {
    pub const EUR: Currency = Currency(*b"EUR");

    pub fn new(code: &str) -> Result<Self, MoneyError> {
        let b = code.as_bytes();
        if b.len() == 3 && b.iter().all(u8::is_ascii_uppercase) {
            Ok(Currency([b[0], b[1], b[2]]))
        } else {
            Err(MoneyError::BadCurrency(code.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        // Only constructed from ASCII upper-case letters (or deserialized; see below).
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl std::fmt::Display for Currency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Default for Currency {
    fn default() -> Self {
        Currency::EUR
    }
}

/// An amount in minor units (cents) of a currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    pub cents: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(cents: i64, currency: Currency) -> Self {
        Self { cents, currency }
    }
}

/// For people and logs: `13.29 EUR`.
impl std::fmt::Display for Money {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", format_cents(self.cents), self.currency)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MoneyError {
    #[error("not a currency code: {0:?} (expected three upper-case letters such as EUR)")]
    BadCurrency(String),
    #[error("not an amount: {0:?}")]
    BadAmount(String),
    #[error("amount out of range: {0:?}")]
    Overflow(String),
}

/// Parses a printed amount such as `12,99`, `-1,50`, `1.234,56`, `3,5`, `1,50-` or `€ 7,00`
/// into cents, with `decimal` as the decimal separator (`,` or `.`); the other of the two
/// is accepted as a thousands separator. A trailing minus (common on receipts) negates.
/// More than two decimals are refused rather than rounded: money is never guessed.
pub fn parse_amount(text: &str, decimal: char) -> Result<i64, MoneyError> {
    let bad = || MoneyError::BadAmount(text.to_string());
    let thousands = if decimal == ',' { '.' } else { ',' };
    let mut s: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '€' && *c != '$' && *c != '£')
        .collect();
    if s.starts_with("EUR") {
        s.drain(..3);
    }
    let mut negative = false;
    if let Some(rest) = s.strip_prefix('-') {
        negative = true;
        s = rest.to_string();
    } else if let Some(rest) = s.strip_suffix('-') {
        negative = true;
        s = rest.to_string();
    }
    if let Some(rest) = s.strip_prefix('+') {
        s = rest.to_string();
    }
    let (int_part, frac_part) = match s.rfind(decimal) {
        Some(i) => (&s[..i], &s[i + decimal.len_utf8()..]),
        None => (&s[..], ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(bad());
    }
    if frac_part.len() > 2 || !frac_part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    // Thousands separators must sit between groups of three digits.
    let groups: Vec<&str> = int_part.split(thousands).collect();
    if groups.len() > 1 && groups[1..].iter().any(|g| g.len() != 3) {
        return Err(bad());
    }
    let digits: String = groups.concat();
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let units: i64 = if digits.is_empty() {
        0
    } else {
        digits
            .parse()
            .map_err(|_| MoneyError::Overflow(text.to_string()))?
    };
    let frac: i64 = match frac_part.len() {
        0 => 0,
        1 => frac_part.parse::<i64>().map_err(|_| bad())? * 10,
        _ => frac_part.parse().map_err(|_| bad())?,
    };
    let cents = units
        .checked_mul(100)
        .and_then(|c| c.checked_add(frac))
        .ok_or_else(|| MoneyError::Overflow(text.to_string()))?;
    Ok(if negative { -cents } else { cents })
}

/// Formats cents for people: `1234` → `12.34`, `-5` → `-0.05`.
pub fn format_cents(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_shows_units_and_cents_with_its_currency() {
        assert_eq!(Money::new(1329, Currency::EUR).to_string(), "13.29 EUR");
        assert_eq!(Money::new(-5, Currency::EUR).to_string(), "-0.05 EUR");
    }

    #[test]
    fn parses_comma_decimal() {
        assert_eq!(parse_amount("12,99", ','), Ok(1299));
        assert_eq!(parse_amount("1.234,56", ','), Ok(123_456));
        assert_eq!(parse_amount("-1,50", ','), Ok(-150));
        assert_eq!(parse_amount("1,50-", ','), Ok(-150));
        assert_eq!(parse_amount("€ 7,00", ','), Ok(700));
        assert_eq!(parse_amount("3,5", ','), Ok(350));
        assert_eq!(parse_amount("0,05", ','), Ok(5));
        assert_eq!(parse_amount("12", ','), Ok(1200));
    }

    #[test]
    fn parses_dot_decimal() {
        assert_eq!(parse_amount("1,234.56", '.'), Ok(123_456));
        assert_eq!(parse_amount("$9.99", '.'), Ok(999));
    }

    #[test]
    fn refuses_garbage() {
        for s in [
            "",
            "-",
            "abc",
            "1,234",
            "12.3.4",
            "1.23,456",
            "9999999999999999999,00",
        ] {
            assert!(parse_amount(s, ',').is_err(), "{s:?} should be refused");
        }
        assert!(parse_amount("1,2345", '.').is_err());
    }

    #[test]
    fn currency_codes() {
        assert_eq!(Currency::new("EUR").unwrap(), Currency::EUR);
        assert!(Currency::new("eur").is_err());
        assert!(Currency::new("EURO").is_err());
        assert_eq!(format_cents(-5), "-0.05");
        assert_eq!(format_cents(123_456), "1234.56");
    }
}
