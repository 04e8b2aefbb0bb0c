//! The event envelope and the event kinds an agent records.

use serde::{Deserialize, Serialize};

use crate::card::CardNumber;
use crate::money::Currency;
use crate::time::Timestamp;

/// Who wrote an event: a till in a store. On the hub this comes from the agent's
/// client certificate, never from the payload (DESIGN.md principle 4).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AgentId {
    pub store: String,
    pub till: String,
}

impl AgentId {
    pub fn new(store: impl Into<String>, till: impl Into<String>) -> Self {
        Self {
            store: store.into(),
            till: till.into(),
        }
    }

    /// Store and till ids are short printable names: `[A-Za-z0-9_.-]{1,32}`.
    pub fn is_valid_part(part: &str) -> bool {
        !part.is_empty()
            && part.len() <= 32
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    }
}

impl std::fmt::Display for AgentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.store, self.till)
    }
}

/// One recorded fact. `seq` is gapless per agent, starting at 1; `(agent, seq)` is the
/// event's identity for exactly-once merging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub agent: AgentId,
    pub seq: u64,
    pub recorded_at: Timestamp,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// A loyalty card was scanned at the till.
    CardScanned { card: CardNumber },
    /// A receipt was printed and parsed.
    Receipt(Receipt),
    /// An event whose only content was an identifier erased since (a card scan of an
    /// erased card). It keeps its seq, so the journal stays gapless; the hub ignores it.
    Redacted,
    /// A coupon was printed right before the cut of the receipt journaled as
    /// `receipt_seq` (journaled only once the printer has the block).
    CouponIssued(CouponIssue),
    /// Control group: the coupon this receipt would have had. Nothing was printed; the
    /// hub counts it for the KPIs and the caps. `code` is `None`.
    CouponWouldHave(CouponIssue),
    /// A coupon code scanned at this till and accepted, used on the receipt journaled
    /// as `receipt_seq` (`None` when the till stopped before the next receipt).
    CouponRedeemed(CouponRedemption),
    /// A coupon code scanned at this till and refused (forged, expired, unknown
    /// campaign): reported so the hub can count refused codes per store.
    CouponRefused { code: String, reason: String },
    /// A journal row that could no longer be read (disk corruption): its content is lost,
    /// its seq is kept so the sequence stays gapless; the till keeps the raw bytes in its
    /// quarantine and the hub reports it.
    Quarantined { reason: String },
}

/// A coupon decided at the cut (printed or, for the control group, would-have).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CouponIssue {
    /// The campaign's stable id (`[[campaign]] id`).
    pub campaign_id: String,
    /// The printed code (24 digits); `None` for a would-have.
    pub code: Option<String>,
    /// The loyalty card of the receipt, if any.
    pub card: Option<CardNumber>,
    /// The digest's pseudonymous customer key (the control-group key), if any.
    pub customer_key: Option<String>,
    /// Last day the coupon is valid.
    pub expires: chrono::NaiveDate,
    /// The journal seq of the receipt the coupon belongs to.
    pub receipt_seq: u64,
}

/// A coupon code accepted at a till.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CouponRedemption {
    /// The 24 digits as scanned.
    pub code: String,
    /// The journal seq of the receipt the coupon was used on.
    pub receipt_seq: Option<u64>,
    pub verified: Verification,
}

/// How a till checked a scanned coupon code before accepting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verification {
    /// Signed by a till of this store: checked offline with the store's keys.
    OwnStore,
    /// Another store's code, confirmed by the hub at the scan.
    Hub,
    /// Another store's code while the hub could not be asked: accepted and flagged;
    /// the hub checks the signature when the event arrives.
    Unverified,
}

impl Verification {
    pub fn as_str(self) -> &'static str {
        match self {
            Verification::OwnStore => "own_store",
            Verification::Hub => "hub",
            Verification::Unverified => "unverified",
        }
    }
}

impl EventKind {
    /// Removes every card for which `erased` is true (an erase on the hub): a scan of
    /// such a card becomes [`EventKind::Redacted`], a receipt loses its card and the
    /// printed last digits. Returns whether anything changed.
    pub fn forget_cards(&mut self, erased: impl Fn(&CardNumber) -> bool) -> bool {
        match self {
            EventKind::CardScanned { card } if erased(card) => {
                *self = EventKind::Redacted;
                true
            }
            EventKind::Receipt(receipt) if receipt.card.as_ref().is_some_and(&erased) => {
                receipt.card = None;
                receipt.card_last4 = None;
                true
            }
            EventKind::CouponIssued(issue) | EventKind::CouponWouldHave(issue)
                if issue.card.as_ref().is_some_and(&erased) =>
            {
                issue.card = None;
                issue.customer_key = None;
                true
            }
            _ => false,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            EventKind::CardScanned { .. } => "card_scanned",
            EventKind::Receipt(_) => "receipt",
            EventKind::Redacted => "redacted",
            EventKind::CouponIssued(_) => "coupon_issued",
            EventKind::CouponWouldHave(_) => "coupon_would_have",
            EventKind::CouponRedeemed(_) => "coupon_redeemed",
            EventKind::CouponRefused { .. } => "coupon_refused",
            EventKind::Quarantined { .. } => "quarantined",
        }
    }
}

/// A transaction as read from the printed receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The receipt number as printed, if the layout found one.
    pub receipt_no: Option<String>,
    /// The time printed on the receipt (the POS clock), if the layout found one.
    pub printed_at: Option<Timestamp>,
    /// When the agent saw the cut that ended the receipt (the agent's clock).
    pub completed_at: Timestamp,
    /// The loyalty card scanned for this receipt, if any.
    pub card: Option<CardNumber>,
    /// Last digits of a card as printed on the receipt, if the layout found them.
    pub card_last4: Option<String>,
    pub lines: Vec<ReceiptLine>,
    pub total_cents: i64,
    pub currency: Currency,
}

/// One line of a receipt. A discount line has `discount = true` and a negative amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptLine {
    pub description: String,
    pub sku: Option<String>,
    /// Quantity in thousandths (1 piece = 1000, 0.512 kg = 512).
    pub quantity_milli: i64,
    /// Unit price in cents, when printed.
    pub unit_cents: Option<i64>,
    pub amount_cents: i64,
    pub discount: bool,
}

impl Receipt {
    /// Sum of line amounts; compared with `total_cents` to flag misparsed receipts.
    pub fn lines_sum_cents(&self) -> i64 {
        self.lines.iter().map(|l| l.amount_cents).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(card: Option<&str>) -> EventKind {
        EventKind::Receipt(Receipt {
            receipt_no: Some("1".into()),
            printed_at: None,
            completed_at: Timestamp::from_unix_ms(1, 0),
            card: card.map(|c| CardNumber::parse(c).unwrap()),
            card_last4: card.map(|c| c[c.len() - 4..].to_string()),
            lines: vec![],
            total_cents: 100,
            currency: Currency::EUR,
        })
    }

    #[test]
    fn forgetting_a_card_redacts_scans_and_strips_receipts() {
        let erased = |c: &CardNumber| c.as_str() == "4006381333931";
        let mut scan = EventKind::CardScanned {
            card: CardNumber::parse("4006381333931").unwrap(),
        };
        assert!(scan.forget_cards(erased));
        assert_eq!(scan, EventKind::Redacted);

        let mut other_scan = EventKind::CardScanned {
            card: CardNumber::parse("96385074").unwrap(),
        };
        assert!(!other_scan.forget_cards(erased));
        assert_eq!(other_scan.name(), "card_scanned");

        let mut carded = receipt(Some("4006381333931"));
        assert!(carded.forget_cards(erased));
        let EventKind::Receipt(r) = &carded else {
            panic!("still a receipt")
        };
        assert_eq!((r.card.as_ref(), r.card_last4.as_ref()), (None, None));
        assert_eq!(r.total_cents, 100, "the purchase itself is kept");

        let mut someone_else = receipt(Some("96385074"));
        assert!(!someone_else.forget_cards(erased));
        assert_eq!(someone_else, receipt(Some("96385074")));
        let mut anonymous = receipt(None);
        assert!(!anonymous.forget_cards(erased));

        let issue = |card: &str| CouponIssue {
            campaign_id: "big-basket".into(),
            code: Some("0".repeat(24)),
            card: Some(CardNumber::parse(card).unwrap()),
            customer_key: Some("k".into()),
            expires: chrono::NaiveDate::from_ymd_opt(2026, 12, 9).unwrap(),
            receipt_seq: 7,
        };
        let mut coupon = EventKind::CouponIssued(issue("4006381333931"));
        assert!(coupon.forget_cards(erased));
        let EventKind::CouponIssued(stripped) = &coupon else {
            panic!("still a coupon")
        };
        assert_eq!(
            (stripped.card.as_ref(), stripped.customer_key.as_ref()),
            (None, None)
        );
        assert_eq!(
            stripped.code,
            issue("4006381333931").code,
            "the coupon itself is kept"
        );
        let mut would_have = EventKind::CouponWouldHave(issue("96385074"));
        assert!(!would_have.forget_cards(erased));
    }
}
