//! Redeeming scanned coupon codes (pure).
//!
//! Every code is checked offline first: it must parse; a code signed by a till of this
//! store is verified with the store's keys (signature, then expiry on the till's local
//! date); and a code found in the store's redemption ledger (the journal's
//! `redeemed_codes`: codes redeemed at any till of the store, pushed by the hub, plus
//! this till's own) is refused as `already_redeemed`. Then, while the hub is reachable,
//! the till asks it about every code (own store or not) and accepts it as `Hub` on
//! `Valid`, refusing it on any other verdict. When the hub does not answer in time, or
//! is unreachable, the offline check decides: an own-store code is accepted `OwnStore`;
//! another store's code is accepted `Unverified` at most `max_unverified` times per
//! outage (the counter restarts when the link comes back), then refused as
//! `unverifiable`. Accepted codes wait for the next receipt, like a scanned card; a code
//! still waiting for its verdict at the cut is decided offline there.

use chrono::NaiveDate;
use till360_shared::coupon::{parse, verify, CouponError, Keyring};
use till360_shared::event::Verification;
use till360_shared::wire::CouponVerdict;

/// Reason of a refused code whose signature does not match (the hub's word for it too).
pub const FORGED: &str = "forged";
/// Reason of a refused code past its expiry date.
pub const EXPIRED: &str = "expired";
/// Reason of a refused code found in the store's redemption ledger (the hub's word too).
pub const ALREADY_REDEEMED: &str = "already_redeemed";
/// Reason of another store's code refused while the hub cannot be asked, beyond
/// `[coupons] max_unverified` in this outage.
pub const UNVERIFIABLE: &str = "unverifiable";

/// What the till can tell about a scanned code on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeCheck {
    Accepted(Verification),
    Refused(String),
    /// Another store's code (or no keyring yet): only the hub can tell.
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

/// What the till knows about a scanned code besides the code itself.
#[derive(Debug, Clone, Copy)]
pub struct ScanContext<'a> {
    pub keyring: Option<&'a Keyring>,
    /// The till's local date.
    pub today: NaiveDate,
    /// The code is in the store's redemption ledger.
    pub in_ledger: bool,
    /// The hub can be asked now (the uplink is connected).
    pub hub_reachable: bool,
}

/// What a scan did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanOutcome {
    /// Accepted for the next receipt.
    Accepted(Verification),
    /// Refused: journal `CouponRefused` with this reason and tell the cashier.
    Refused(String),
    /// Ask the hub (`HubRequest::CouponCheck`); the code waits for the verdict.
    AskHub,
    /// The same code was already scanned for this receipt: counted once.
    Duplicate,
}

/// What the till falls back on when the hub does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Offline {
    /// Verified with the store's keys, not in the ledger.
    OwnStore,
    /// Another store's code: only `max_unverified` per outage.
    OtherStore,
}

/// What a verdict from the hub did to a waiting code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerdictOutcome {
    Accepted(Verification),
    Refused(String),
}

/// The codes for one receipt: accepted ones to journal as redeemed, and codes refused
/// at the cut (still waiting for the hub, and beyond `max_unverified`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiptCodes {
    pub accepted: Vec<(String, Verification)>,
    pub refused: Vec<(String, String)>,
}

/// The coupon codes scanned since the last receipt, and the outage's unverified count.
#[derive(Debug, Clone, Default)]
pub struct ScannedCoupons {
    /// Accepted codes, in scan order.
    accepted: Vec<(String, Verification)>,
    /// Codes waiting for the hub's verdict, in scan order, with the offline fallback.
    awaiting: Vec<(String, Offline)>,
    /// Other stores' codes accepted unverified since the link was last up.
    unverified: u32,
    max_unverified: u32,
}

impl ScannedCoupons {
    /// `max_unverified`: other stores' codes accepted unverified per hub outage.
    pub fn new(max_unverified: u32) -> Self {
        Self {
            max_unverified,
            ..Self::default()
        }
    }

    /// A scanned code. See the module documentation.
    pub fn on_scan(&mut self, code: &str, context: ScanContext<'_>) -> ScanOutcome {
        let code = code.trim();
        if self.accepted.iter().any(|(c, _)| c == code)
            || self.awaiting.iter().any(|(c, _)| c == code)
        {
            return ScanOutcome::Duplicate;
        }
        let offline = match check_code(context.keyring, code, context.today) {
            CodeCheck::Refused(reason) => return ScanOutcome::Refused(reason),
            CodeCheck::Accepted(_) => Offline::OwnStore,
            CodeCheck::AskHub => Offline::OtherStore,
        };
        if context.in_ledger {
            return ScanOutcome::Refused(ALREADY_REDEEMED.to_string());
        }
        if context.hub_reachable {
            self.awaiting.push((code.to_string(), offline));
            return ScanOutcome::AskHub;
        }
        match self.decide_offline(code.to_string(), offline) {
            VerdictOutcome::Accepted(verified) => ScanOutcome::Accepted(verified),
            VerdictOutcome::Refused(reason) => ScanOutcome::Refused(reason),
        }
    }

    /// The hub's verdict on a waiting code (`None`: no answer in time, decided offline).
    /// `None` back when the code is not waiting (already on a receipt, or never asked).
    pub fn on_verdict(
        &mut self,
        code: &str,
        verdict: Option<CouponVerdict>,
    ) -> Option<VerdictOutcome> {
        let at = self.awaiting.iter().position(|(c, _)| c == code)?;
        let (code, offline) = self.awaiting.remove(at);
        Some(match verdict {
            Some(CouponVerdict::Valid) => {
                self.accepted.push((code, Verification::Hub));
                VerdictOutcome::Accepted(Verification::Hub)
            }
            Some(refused) => VerdictOutcome::Refused(refused.as_str().to_string()),
            None => self.decide_offline(code, offline),
        })
    }

    /// The link to the hub came back (`true`): a new outage starts its own count.
    pub fn on_link(&mut self, up: bool) {
        if up {
            self.unverified = 0;
        }
    }

    fn decide_offline(&mut self, code: String, offline: Offline) -> VerdictOutcome {
        let verified = match offline {
            Offline::OwnStore => Verification::OwnStore,
            Offline::OtherStore if self.unverified < self.max_unverified => {
                self.unverified += 1;
                Verification::Unverified
            }
            Offline::OtherStore => return VerdictOutcome::Refused(UNVERIFIABLE.to_string()),
        };
        self.accepted.push((code, verified));
        VerdictOutcome::Accepted(verified)
    }

    /// The codes for the receipt being journaled: accepted ones, then those still
    /// waiting for a verdict, decided offline. Leaves nothing behind.
    pub fn take_for_receipt(&mut self) -> ReceiptCodes {
        let mut refused = Vec::new();
        for (code, offline) in std::mem::take(&mut self.awaiting) {
            if let VerdictOutcome::Refused(reason) = self.decide_offline(code.clone(), offline) {
                refused.push((code, reason));
            }
        }
        ReceiptCodes {
            accepted: std::mem::take(&mut self.accepted),
            refused,
        }
    }

    /// Codes scanned and not yet on a receipt.
    pub fn pending(&self) -> usize {
        self.accepted.len() + self.awaiting.len()
    }
}
