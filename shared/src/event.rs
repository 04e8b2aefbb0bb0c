//! The event envelope and the event kinds an agent records.

use serde::{Deserialize, Serialize};

use crate::card::CardNumber;
use crate::codec;
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
    /// The lines (with their discounts) do not add up to the printed total, or no total
    /// line was found: the layout misread the receipt. Kept (nothing recorded is lost)
    /// but left out of traits, digests and coupon triggers.
    pub unbalanced: bool,
    /// Printed lines no pattern of the layout matched (headers, payment lines, and any
    /// line a wrong layout misses), so a wrong layout shows at once.
    pub unmatched_lines: u32,
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

impl EventKind {
    /// Decodes a stored event kind (a till's journal row), also one written before
    /// receipts carried `unbalanced` and `unmatched_lines` (journal schema 5).
    pub fn decode_stored(bytes: &[u8]) -> Result<EventKind, codec::CodecError> {
        codec::from_bytes(bytes).or_else(|e| {
            codec::from_bytes::<legacy::EventKind>(bytes)
                .map(EventKind::from)
                .map_err(|_| e)
        })
    }
}

impl Event {
    /// Decodes a stored event (the hub's `events` rows), also one written before
    /// receipts carried `unbalanced` and `unmatched_lines` (protocol 2).
    pub fn decode_stored(bytes: &[u8]) -> Result<Event, codec::CodecError> {
        codec::from_bytes(bytes).or_else(|e| {
            codec::from_bytes::<legacy::Event>(bytes)
                .map(|old| Event {
                    agent: old.agent,
                    seq: old.seq,
                    recorded_at: old.recorded_at,
                    kind: old.kind.into(),
                })
                .map_err(|_| e)
        })
    }
}

/// Events as encoded before receipts were cross-checked: the same variants in the same
/// order (bincode numbers them), with the receipt's fields of then.
mod legacy {
    use serde::Deserialize;

    use super::{AgentId, CouponIssue, CouponRedemption, ReceiptLine};
    use crate::card::CardNumber;
    use crate::money::Currency;
    use crate::time::Timestamp;

    #[derive(Deserialize)]
    pub(super) struct Event {
        pub agent: AgentId,
        pub seq: u64,
        pub recorded_at: Timestamp,
        pub kind: EventKind,
    }

    #[derive(Deserialize)]
    pub(super) enum EventKind {
        CardScanned { card: CardNumber },
        Receipt(Receipt),
        Redacted,
        CouponIssued(CouponIssue),
        CouponWouldHave(CouponIssue),
        CouponRedeemed(CouponRedemption),
        CouponRefused { code: String, reason: String },
        Quarantined { reason: String },
    }

    #[derive(Deserialize)]
    pub(super) struct Receipt {
        receipt_no: Option<String>,
        printed_at: Option<Timestamp>,
        completed_at: Timestamp,
        card: Option<CardNumber>,
        card_last4: Option<String>,
        lines: Vec<ReceiptLine>,
        total_cents: i64,
        currency: Currency,
    }

    impl From<EventKind> for super::EventKind {
        fn from(old: EventKind) -> Self {
            match old {
                EventKind::CardScanned { card } => Self::CardScanned { card },
                EventKind::Receipt(r) => {
                    let mut receipt = super::Receipt {
                        receipt_no: r.receipt_no,
                        printed_at: r.printed_at,
                        completed_at: r.completed_at,
                        card: r.card,
                        card_last4: r.card_last4,
                        lines: r.lines,
                        total_cents: r.total_cents,
                        currency: r.currency,
                        unbalanced: false,
                        unmatched_lines: 0,
                    };
                    // What can still be told: a total the lines miss. (A missing total
                    // line was stored as the lines' sum and cannot be told any more.)
                    receipt.unbalanced = receipt.lines_sum_cents() != receipt.total_cents;
                    Self::Receipt(receipt)
                }
                EventKind::Redacted => Self::Redacted,
                EventKind::CouponIssued(issue) => Self::CouponIssued(issue),
                EventKind::CouponWouldHave(issue) => Self::CouponWouldHave(issue),
                EventKind::CouponRedeemed(redemption) => Self::CouponRedeemed(redemption),
                EventKind::CouponRefused { code, reason } => Self::CouponRefused { code, reason },
                EventKind::Quarantined { reason } => Self::Quarantined { reason },
            }
        }
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
            unbalanced: false,
            unmatched_lines: 0,
        })
    }

    #[test]
    fn receipts_stored_before_the_balance_check_still_decode() {
        let mut kind = receipt(Some("4006381333931"));
        let lines = vec![ReceiptLine {
            description: "x".into(),
            sku: None,
            quantity_milli: 1000,
            unit_cents: None,
            amount_cents: 40,
            discount: false,
        }];
        if let EventKind::Receipt(r) = &mut kind {
            r.lines = lines.clone();
        }
        let new = codec::to_bytes(&kind).unwrap();
        // The two new fields (false, 0) are the last two bytes of a receipt's encoding.
        let old = &new[..new.len() - 2];
        assert!(codec::from_bytes::<EventKind>(old).is_err());
        let EventKind::Receipt(decoded) = EventKind::decode_stored(old).unwrap() else {
            panic!("still a receipt")
        };
        assert!(decoded.unbalanced, "40 cents of lines, 100 printed");
        assert_eq!(decoded.lines, lines);
        assert_eq!(EventKind::decode_stored(&new).unwrap(), kind);

        let event = Event {
            agent: AgentId::new("S1", "T1"),
            seq: 3,
            recorded_at: Timestamp::from_unix_ms(5, 60),
            kind: kind.clone(),
        };
        let new = codec::to_bytes(&event).unwrap();
        let old = Event::decode_stored(&new[..new.len() - 2]).unwrap();
        assert_eq!((old.seq, old.agent), (3, AgentId::new("S1", "T1")));
        let scan = Event {
            kind: EventKind::Redacted,
            ..event
        };
        assert_eq!(
            Event::decode_stored(&codec::to_bytes(&scan).unwrap()).unwrap(),
            scan
        );
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
