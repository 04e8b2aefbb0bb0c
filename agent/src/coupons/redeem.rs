//! Redeeming scanned coupon codes (pure).
//!
//! A code signed by a till of this store is checked here, offline, with the store's keys
//! from the keyring (signature, then expiry on the till's local date). Another store's
//! code is the hub's to judge: the till asks and accepts it as `Hub` on `Valid`, refuses
//! it on any other verdict, and accepts it `Unverified` when the hub did not answer in
//! time (the hub checks the signature when the event arrives). Accepted codes wait for
//! the next receipt, like a scanned card; a code still waiting for its verdict at the cut
//! goes on that receipt as `Unverified`.

use chrono::NaiveDate;
use till360_shared::coupon::{parse, verify, CouponError, Keyring};
use till360_shared::event::Verification;
use till360_shared::wire::CouponVerdict;

/// Reason of a refused code whose signature does not match (the hub's word for it too).
pub const FORGED: &str = "forged";
/// Reason of a refused code past its expiry date.
pub const EXPIRED: &str = "expired";

/// What the till can tell about a scanned code on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeCheck {
    Accepted(Verification),
    Refused(String),
    /// Another store's code (or no keyring yet): ask the hub.
    AskHub,
}

/// Checks `code` offline: an own-store code is verified and checked for expiry on
/// `today` (the till's local date); anything else needs the hub.
pub fn check_code(keyring: Option<&Keyring>, code: &str, today: NaiveDate) -> CodeCheck {
    let fields = match parse(code) {
        Ok(fields) => fields,
        Err(e) => return CodeCheck::Refused(refusal(&e)),
    };
    let Some(key) = keyring.and_then(|k| k.store_till_key(fields.till())) else {
        return CodeCheck::AskHub;
    };
    match verify(&key, code).and_then(|f| f.check_not_expired(today)) {
        Ok(()) => CodeCheck::Accepted(Verification::OwnStore),
        Err(e) => CodeCheck::Refused(refusal(&e)),
    }
}

fn refusal(e: &CouponError) -> String {
    match e {
        CouponError::BadSignature => FORGED.to_string(),
        CouponError::Expired { .. } => EXPIRED.to_string(),
        other => other.to_string(),
    }
}

/// What a scan did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanOutcome {
    /// Accepted for the next receipt.
    Accepted(Verification),
    /// Refused: journal `CouponRefused` with this reason.
    Refused(String),
    /// Ask the hub (`HubRequest::CouponCheck`); the code waits for the verdict.
    AskHub,
    /// The same code was already scanned for this receipt: counted once.
    Duplicate,
}

/// What a verdict from the hub did to a waiting code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerdictOutcome {
    Accepted(Verification),
    Refused(String),
}

/// The coupon codes scanned since the last receipt.
#[derive(Debug, Clone, Default)]
pub struct ScannedCoupons {
    /// Accepted codes, in scan order.
    accepted: Vec<(String, Verification)>,
    /// Other stores' codes waiting for the hub's verdict, in scan order.
    awaiting: Vec<String>,
}

impl ScannedCoupons {
    pub fn new() -> Self {
        Self::default()
    }

    /// A scanned code. See [`check_code`].
    pub fn on_scan(
        &mut self,
        code: &str,
        keyring: Option<&Keyring>,
        today: NaiveDate,
    ) -> ScanOutcome {
        let code = code.trim();
        if self.accepted.iter().any(|(c, _)| c == code) || self.awaiting.iter().any(|c| c == code) {
            return ScanOutcome::Duplicate;
        }
        match check_code(keyring, code, today) {
            CodeCheck::Accepted(verified) => {
                self.accepted.push((code.to_string(), verified));
                ScanOutcome::Accepted(verified)
            }
            CodeCheck::Refused(reason) => ScanOutcome::Refused(reason),
            CodeCheck::AskHub => {
                self.awaiting.push(code.to_string());
                ScanOutcome::AskHub
            }
        }
    }

    /// The hub's verdict on a waiting code (`None`: no answer in time). `None` back when
    /// the code is not waiting (already attached to a receipt, or never asked).
    pub fn on_verdict(
        &mut self,
        code: &str,
        verdict: Option<CouponVerdict>,
    ) -> Option<VerdictOutcome> {
        let at = self.awaiting.iter().position(|c| c == code)?;
        let code = self.awaiting.remove(at);
        let outcome = match verdict {
            Some(CouponVerdict::Valid) => VerdictOutcome::Accepted(Verification::Hub),
            None => VerdictOutcome::Accepted(Verification::Unverified),
            Some(refused) => return Some(VerdictOutcome::Refused(refused.as_str().to_string())),
        };
        if let VerdictOutcome::Accepted(verified) = outcome {
            self.accepted.push((code, verified));
        }
        Some(outcome)
    }

    /// The codes for the receipt being journaled: accepted ones, then those still
    /// waiting for a verdict (as `Unverified`). Leaves nothing behind.
    pub fn take_for_receipt(&mut self) -> Vec<(String, Verification)> {
        let mut codes = std::mem::take(&mut self.accepted);
        codes.extend(
            std::mem::take(&mut self.awaiting)
                .into_iter()
                .map(|code| (code, Verification::Unverified)),
        );
        codes
    }

    /// Codes scanned and not yet on a receipt.
    pub fn pending(&self) -> usize {
        self.accepted.len() + self.awaiting.len()
    }
}
