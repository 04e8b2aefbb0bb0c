//! Coupon codes: what a printed coupon's barcode says, signed by the till that issued it.
//!
//! A code is exactly [`CODE_LEN`] (24) decimal digits, so Code128 code set C prints it as
//! 12 symbols (about 42 mm at a 2-dot module on a 203 dpi printer, narrow enough for 58 mm
//! paper). The 24 digits are:
//!
//! - 23 digits: a 76-bit number, zero-padded, laid out (most significant first) as
//!   campaign number (12 bits, 0..=4095) | till number (13 bits, 0..=8191) |
//!   expiry in days since 2024-01-01 (13 bits: through 2046-06-05) | serial (12 bits,
//!   0..=4095) | MAC (26 bits). 2^76 < 10^23, so the leading digit is at most 7; numbers
//!   from 2^76 up (leading 8 or 9) are reserved for a future format.
//! - 1 Damm check digit over the 23: every single-digit substitution and every swap of two
//!   adjacent digits is refused by [`parse`] deterministically, before any key is needed
//!   (a misread or mistyped code is never mistaken for a forgery).
//!
//! **MAC**: HMAC-SHA256 under the issuing till's key ([`derive_till_key`], derived on the hub
//! from a master secret and the till's store and till names) over a domain tag and the
//! 50 payload bits, truncated to its first [`MAC_BITS`] (26) bits. A forger without the key
//! has a 1 in 2^26 (1 in 67,108,864) chance per attempt of a code that verifies; each attempt
//! is a physical scan at a till, and the hub reports refused codes per store.
//!
//! The till and campaign are compact numbers the hub assigns (the key and the campaign
//! definition are found through them). `(campaign, till, expiry, serial)` must be unique:
//! a till counts serials per campaign and expiry day (4096 coupons per till, campaign and
//! day).
//!
//! Pure: no clock (`today` is an argument), no IO, never panics on input.

mod check_digit;
mod key;
mod keyring;
#[cfg(test)]
mod tests;

use chrono::NaiveDate;

pub use key::{derive_customer_key, derive_digest_key, derive_till_key, CardKey, TillKey};
pub use keyring::Keyring;

/// Digits in a coupon code.
pub const CODE_LEN: usize = 24;
/// Bits of the truncated HMAC-SHA256 in a code: forgery odds 1 in 2^26 per attempt.
pub const MAC_BITS: u32 = 26;

const CAMPAIGN_BITS: u32 = 12;
const TILL_BITS: u32 = 13;
const DAY_BITS: u32 = 13;
const SERIAL_BITS: u32 = 12;
const PAYLOAD_BITS: u32 = CAMPAIGN_BITS + TILL_BITS + DAY_BITS + SERIAL_BITS;
const TOTAL_BITS: u32 = PAYLOAD_BITS + MAC_BITS;
/// The digits before the check digit.
const NUMBER_DIGITS: usize = CODE_LEN - 1;
/// Longest input `parse` looks at (room for spaces between digit groups).
const MAX_INPUT_LEN: usize = 64;

/// Why a coupon code is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CouponError {
    #[error("coupon code must have {CODE_LEN} digits, found {0}")]
    WrongLength(usize),
    #[error(
        "coupon code has {found:?} at position {position}: only digits (and spaces) are allowed"
    )]
    NotADigit { found: char, position: usize },
    #[error("coupon code check digit does not match: misread or mistyped")]
    CheckDigit,
    #[error("coupon code is of an unknown format")]
    UnknownFormat,
    #[error("coupon code is not signed by this till's key")]
    BadSignature,
    #[error("coupon {field} {value} is out of range ({min}..={max})")]
    OutOfRange {
        field: &'static str,
        value: i64,
        min: i64,
        max: i64,
    },
    #[error("coupon expired on {expires}")]
    Expired { expires: NaiveDate },
}

/// What a coupon code says. Constructed only within the ranges a code can carry, so
/// [`mint`] cannot fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CouponFields {
    campaign: u16,
    till: u16,
    expires: NaiveDate,
    serial: u16,
}

impl CouponFields {
    pub const MAX_CAMPAIGN: u16 = (1 << CAMPAIGN_BITS) - 1;
    pub const MAX_TILL: u16 = (1 << TILL_BITS) - 1;
    pub const MAX_SERIAL: u16 = (1 << SERIAL_BITS) - 1;

    /// `campaign` and `till` are the hub-assigned compact numbers; `expires` is the last
    /// day the coupon is valid.
    pub fn new(
        campaign: u16,
        till: u16,
        expires: NaiveDate,
        serial: u16,
    ) -> Result<Self, CouponError> {
        in_range("campaign number", campaign, Self::MAX_CAMPAIGN)?;
        in_range("till number", till, Self::MAX_TILL)?;
        in_range("serial", serial, Self::MAX_SERIAL)?;
        let day = (expires - Self::first_expiry()).num_days();
        let last_day = i64::from(max_value(DAY_BITS));
        if !(0..=last_day).contains(&day) {
            return Err(CouponError::OutOfRange {
                field: "expiry day (days since 2024-01-01)",
                value: day,
                min: 0,
                max: last_day,
            });
        }
        Ok(Self {
            campaign,
            till,
            expires,
            serial,
        })
    }

    pub fn campaign(&self) -> u16 {
        self.campaign
    }

    pub fn till(&self) -> u16 {
        self.till
    }

    /// The last day the coupon may be redeemed.
    pub fn expires(&self) -> NaiveDate {
        self.expires
    }

    pub fn serial(&self) -> u16 {
        self.serial
    }

    /// The earliest expiry a code can carry (its day 0).
    pub fn first_expiry() -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 1, 1).unwrap_or(NaiveDate::MIN)
    }

    /// The latest expiry a code can carry.
    pub fn last_expiry() -> NaiveDate {
        Self::first_expiry() + chrono::Days::new(u64::from(max_value(DAY_BITS)))
    }

    /// Valid through the expiry day itself; refused from the day after.
    pub fn check_not_expired(&self, today: NaiveDate) -> Result<(), CouponError> {
        if today > self.expires {
            Err(CouponError::Expired {
                expires: self.expires,
            })
        } else {
            Ok(())
        }
    }

    fn expiry_day(&self) -> u64 {
        // `new` keeps the expiry within 0..2^DAY_BITS days of the first expiry.
        (self.expires - Self::first_expiry())
            .num_days()
            .unsigned_abs()
    }

    /// The 50 payload bits.
    fn payload(&self) -> u64 {
        let mut bits = u64::from(self.campaign);
        bits = (bits << TILL_BITS) | u64::from(self.till);
        bits = (bits << DAY_BITS) | self.expiry_day();
        (bits << SERIAL_BITS) | u64::from(self.serial)
    }

    fn from_payload(bits: u64) -> Result<Self, CouponError> {
        let field = |shift: u32, width: u32| ((bits >> shift) & u64::from(max_value(width))) as u16;
        let serial = field(0, SERIAL_BITS);
        let day = field(SERIAL_BITS, DAY_BITS);
        let till = field(SERIAL_BITS + DAY_BITS, TILL_BITS);
        let campaign = field(SERIAL_BITS + DAY_BITS + TILL_BITS, CAMPAIGN_BITS);
        let expires = Self::first_expiry()
            .checked_add_days(chrono::Days::new(u64::from(day)))
            .ok_or(CouponError::UnknownFormat)?;
        Self::new(campaign, till, expires, serial)
    }
}

fn max_value(bits: u32) -> u32 {
    (1 << bits) - 1
}

fn in_range(field: &'static str, value: u16, max: u16) -> Result<(), CouponError> {
    if value > max {
        return Err(CouponError::OutOfRange {
            field,
            value: i64::from(value),
            min: 0,
            max: i64::from(max),
        });
    }
    Ok(())
}

/// A well-formed coupon code: [`CODE_LEN`] digits with a valid check digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CouponCode(String);

impl CouponCode {
    /// The digits, as the barcode carries them.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digits in groups of four separated by spaces, for people to read and type
    /// (`parse` accepts both forms).
    pub fn grouped(&self) -> String {
        let mut out = String::with_capacity(CODE_LEN + CODE_LEN / 4);
        for (i, c) in self.0.chars().enumerate() {
            if i > 0 && i % 4 == 0 {
                out.push(' ');
            }
            out.push(c);
        }
        out
    }
}

impl std::fmt::Display for CouponCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Signs `fields` with the issuing till's key.
pub fn mint(key: &TillKey, fields: &CouponFields) -> CouponCode {
    let payload = fields.payload();
    let number = (u128::from(payload) << MAC_BITS) | u128::from(key.mac(payload, MAC_BITS));
    let mut digits = format!("{number:0width$}", width = NUMBER_DIGITS);
    let check = check_digit::damm(digits.bytes().map(|b| b - b'0'));
    digits.push(char::from(b'0' + check));
    CouponCode(digits)
}

/// Reads a code without checking its signature: length, digits, check digit and format.
/// Spaces are ignored (people type the grouped form). Use [`verify`] before honouring it.
pub fn parse(input: &str) -> Result<CouponFields, CouponError> {
    parse_parts(input).map(|(fields, _)| fields)
}

/// Reads a code and checks its MAC under `key` (the key of the till the code names:
/// `parse(code)?.till()` says which) in constant time. Does not check the expiry: see
/// [`CouponFields::check_not_expired`].
pub fn verify(key: &TillKey, input: &str) -> Result<CouponFields, CouponError> {
    let (fields, mac) = parse_parts(input)?;
    let expected = key.mac(fields.payload(), MAC_BITS);
    if key::constant_time_eq(&expected.to_be_bytes(), &mac.to_be_bytes()) {
        Ok(fields)
    } else {
        Err(CouponError::BadSignature)
    }
}

/// Fields and the MAC a code carries.
fn parse_parts(input: &str) -> Result<(CouponFields, u32), CouponError> {
    if input.len() > MAX_INPUT_LEN {
        return Err(CouponError::WrongLength(input.chars().count()));
    }
    let mut digits = Vec::with_capacity(CODE_LEN);
    for (position, c) in input.chars().enumerate() {
        match c {
            ' ' => {}
            '0'..='9' => digits.push(c as u8 - b'0'),
            found => return Err(CouponError::NotADigit { found, position }),
        }
    }
    if digits.len() != CODE_LEN {
        return Err(CouponError::WrongLength(digits.len()));
    }
    if check_digit::damm(digits.iter().copied()) != 0 {
        return Err(CouponError::CheckDigit);
    }
    let number = digits[..NUMBER_DIGITS]
        .iter()
        .fold(0u128, |acc, &d| acc * 10 + u128::from(d));
    if number >> TOTAL_BITS != 0 {
        return Err(CouponError::UnknownFormat);
    }
    // Both fit: the number has TOTAL_BITS bits.
    let mac = (number & u128::from(max_value(MAC_BITS))) as u32;
    let payload = (number >> MAC_BITS) as u64;
    Ok((CouponFields::from_payload(payload)?, mac))
}
