//! Barcode scanners (pure): framing a byte stream into scans and deciding what a scan
//! means for the agent.
//!
//! - [`ScanFramer`] (framing.rs) cuts the stream at the configured suffix (`cr`, `lf`,
//!   `crlf`) or STX … ETX, and turns noise into [`ScanError`] diagnostics.
//! - [`classify`] strips any AIM identifier (symbology.rs), reads GS1 element strings,
//!   normalises UPC-A to EAN-13 (via [`CardNumber`]) and says whether the scan is one of
//!   our loyalty cards, a coupon code, or something to count and ignore.

#![deny(clippy::disallowed_methods)]

pub mod framing;
pub mod symbology;
#[cfg(test)]
mod tests;

use thiserror::Error;
use till360_shared::card::masked;
use till360_shared::coupon;
use till360_shared::{CardError, CardNumber, CardPrefixes};

pub use framing::{ScanFramer, Suffix, MAX_FRAME};
pub use symbology::{AimId, Element, Gs1Error};

use symbology::{gtin14_inner, looks_like_gs1, parse_gs1, strip_aim, without_addon};

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScanError {
    // Texts are masked (last four characters): noise around a card must not log it.
    #[error("scan contains non-printable bytes: {}", masked(.0))]
    Garbage(String),
    #[error("scan longer than {max} bytes ({len} bytes before the suffix): dropped")]
    TooLong { len: usize, max: usize },
    #[error("{len} stray bytes between scans: dropped")]
    Stray { len: usize },
    #[error("half a scan ({len} bytes: {}) cut short: dropped", masked(.partial))]
    Cut { partial: String, len: usize },
    #[error("empty scan")]
    Empty,
    #[error(transparent)]
    Card(#[from] CardError),
    #[error("GS1 symbol without a loyalty card or coupon: {}{}", masked(.elements), problem.as_ref().map(|p| format!(" ({p})")).unwrap_or_default())]
    Gs1 {
        /// The elements read, as `(AI)value` text.
        elements: String,
        problem: Option<Gs1Error>,
    },
}

impl ScanError {
    /// Framing noise (bytes that never made a clean scan), as opposed to a clean scan
    /// of a barcode that is not ours.
    pub fn is_noise(&self) -> bool {
        matches!(
            self,
            ScanError::Garbage(_)
                | ScanError::TooLong { .. }
                | ScanError::Stray { .. }
                | ScanError::Cut { .. }
        )
    }
}

/// A scan as the agent uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scan {
    Card(CardNumber),
    /// A coupon code: 24 digits with a valid check digit (not yet verified).
    Coupon(String),
}

/// What the scanner has produced since the agent started, for log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanCounts {
    pub cards: u64,
    pub coupons: u64,
    /// Clean scans that are neither a card nor a coupon (products, foreign GS1 …).
    pub ignored: u64,
    /// Frames dropped as noise.
    pub noise: u64,
}

impl ScanCounts {
    pub fn record(&mut self, outcome: &Result<Scan, ScanError>) {
        let counter = match outcome {
            Ok(Scan::Card(_)) => &mut self.cards,
            Ok(Scan::Coupon(_)) => &mut self.coupons,
            Err(e) if e.is_noise() => &mut self.noise,
            Err(_) => &mut self.ignored,
        };
        *counter = counter.saturating_add(1);
    }
}

/// Classifies a framed scan. A leading AIM identifier is stripped whatever the config
/// says. GS1 symbols (by identifier, FNC1 or `(NN)` text) yield a card from (01)/(02)
/// or a coupon from (8110)/(8112); plain scans are a loyalty card (UPC-A as EAN-13) or a
/// well-formed coupon code (24 digits, valid check digit). Anything else is refused.
pub fn classify(text: &str, prefixes: &CardPrefixes) -> Result<Scan, ScanError> {
    let (aim, data) = strip_aim(text.trim());
    let data = data.trim();
    if data.is_empty() {
        return Err(ScanError::Empty);
    }
    if aim.is_some_and(AimId::is_gs1) || looks_like_gs1(data) {
        return classify_gs1(data, prefixes);
    }
    let data = if aim.is_some_and(AimId::is_ean_with_addon) {
        without_addon(data)
    } else {
        data
    };
    match prefixes.loyalty_card(data) {
        Ok(card) => Ok(Scan::Card(card)),
        Err(_) if coupon::parse(data).is_ok() => Ok(Scan::Coupon(data.to_string())),
        // A GS1-128 scan from a scanner that sends neither identifier nor FNC1.
        Err(e) if data.len() >= 16 && (data.starts_with("01") || data.starts_with("02")) => {
            classify_gs1(data, prefixes).map_err(|_| e.into())
        }
        Err(e) => Err(e.into()),
    }
}

fn classify_gs1(data: &str, prefixes: &CardPrefixes) -> Result<Scan, ScanError> {
    let (elements, problem) = parse_gs1(data);
    for element in &elements {
        if matches!(element.ai.as_str(), "01" | "02") {
            for gtin in gtin14_inner(&element.value).unwrap_or_default() {
                if let Ok(card) = prefixes.loyalty_card(gtin) {
                    return Ok(Scan::Card(card));
                }
            }
        }
    }
    for element in &elements {
        if matches!(element.ai.as_str(), "8110" | "8112")
            && element.value.len() == coupon::CODE_LEN
            && coupon::parse(&element.value).is_ok()
        {
            return Ok(Scan::Coupon(element.value.clone()));
        }
    }
    Err(ScanError::Gs1 {
        elements: elements
            .iter()
            .map(|e| format!("({}){}", e.ai, e.value))
            .collect(),
        problem,
    })
}

/// The fuzz property, shared by `agent/fuzz` and the regression test over the inputs it
/// found: the first byte picks the suffix and a split point, the rest is the stream.
/// Framing it whole and in two pieces must give the same scans, the pending part must
/// stay bounded, and classifying every frame must not panic.
#[doc(hidden)]
pub fn check_framing_invariants(input: &[u8]) {
    let Some((&control, stream)) = input.split_first() else {
        return;
    };
    let suffix = match control % 4 {
        0 => Suffix::Cr,
        1 => Suffix::Lf,
        2 => Suffix::CrLf,
        _ => Suffix::StxEtx,
    };
    let split = usize::from(control >> 2) * stream.len() / 64;
    let collect =
        |framer: &mut ScanFramer| std::iter::from_fn(|| framer.poll()).collect::<Vec<_>>();
    let mut whole = ScanFramer::new(suffix);
    whole.feed(stream);
    whole.finish();
    let whole = collect(&mut whole);
    let mut pieces = ScanFramer::new(suffix);
    let (a, b) = stream.split_at(split.min(stream.len()));
    pieces.feed(a);
    let mut split_out = collect(&mut pieces);
    pieces.feed(b);
    pieces.finish();
    split_out.extend(collect(&mut pieces));
    assert_eq!(whole, split_out, "split at {split} changed the scans");
    let prefixes = CardPrefixes::new(["2401", "0"]).expect("valid prefixes");
    for frame in whole.iter().flatten() {
        assert!(frame.len() <= MAX_FRAME, "frame over MAX_FRAME");
        let _ = classify(frame, &prefixes);
    }
}
