//! Checkout (pure): pairs the loyalty card scanned at the till with the receipt that
//! follows it, and builds the Receipt event payload.

#![deny(clippy::disallowed_methods)]

use chrono::Duration;
use till360_shared::{CardNumber, Currency, Receipt, Timestamp};

use crate::layout::ParsedReceipt;

/// Default for how long a scanned card waits for its receipt.
pub const DEFAULT_CARD_TIMEOUT_MS: i64 = 10 * 60 * 1000;

/// The till's state between a card scan and the receipt it belongs to.
#[derive(Debug, Clone)]
pub struct Checkout {
    card_timeout_ms: i64,
    card: Option<(CardNumber, Timestamp)>,
}

impl Checkout {
    pub fn new(card_timeout_ms: i64) -> Self {
        Self {
            card_timeout_ms,
            card: None,
        }
    }

    /// A loyalty card was scanned. A second scan before a receipt replaces the first
    /// (the cashier scanned the wrong card, or the customer changed their mind).
    pub fn on_card(&mut self, card: CardNumber, now: Timestamp) {
        self.card = Some((card, now));
    }

    /// The card waiting for a receipt, if any and still fresh at `now`.
    pub fn pending_card(&self, now: Timestamp) -> Option<&CardNumber> {
        self.card
            .as_ref()
            .filter(|(_, at)| self.is_fresh(*at, now))
            .map(|(card, _)| card)
    }

    /// Cards erased on the hub: a pending card among them is dropped, so it never
    /// reaches a receipt. Returns whether one was dropped.
    pub fn forget_cards(&mut self, erased: impl Fn(&CardNumber) -> bool) -> bool {
        let pending_erased = self.card.as_ref().is_some_and(|(card, _)| erased(card));
        if pending_erased {
            self.card = None;
        }
        pending_erased
    }

    /// Builds the Receipt event payload. The card scanned since the previous receipt
    /// (and not older than the timeout) belongs to this receipt and is consumed; a
    /// stale card is dropped too, so it cannot attach to a later receipt.
    /// `printed_at` (the POS's local wall-clock time) is converted to UTC using
    /// `now.offset_min`, the till's offset.
    pub fn on_receipt(
        &mut self,
        parsed: ParsedReceipt,
        currency: Currency,
        now: Timestamp,
    ) -> Receipt {
        let card = self
            .card
            .take()
            .filter(|(_, at)| self.is_fresh(*at, now))
            .map(|(card, _)| card);
        let printed_at = parsed.printed_at.map(|local| {
            let utc = local - Duration::minutes(i64::from(now.offset_min));
            Timestamp::from_unix_ms(utc.and_utc().timestamp_millis(), now.offset_min)
        });
        let lines_sum: i64 = parsed.lines.iter().map(|l| l.amount_cents).sum();
        // No total line matched (layout drift, a truncated printout): the lines are all
        // we know, so the total is their sum rather than zero, which would read as a
        // free purchase. Such a receipt, like one whose lines miss the printed total
        // (a total line read as an item), is flagged: the layout misread it. A printout
        // with neither items nor a total (a card terminal's slip, a report) sold
        // nothing and has nothing to misread; its unmatched lines still show.
        let sold_nothing = parsed.lines.is_empty() && parsed.total_cents.is_none();
        let unbalanced = !sold_nothing && parsed.total_cents != Some(lines_sum);
        let total_cents = parsed.total_cents.unwrap_or(lines_sum);
        Receipt {
            receipt_no: parsed.receipt_no,
            printed_at,
            completed_at: now,
            card,
            card_last4: parsed.card_last4,
            lines: parsed.lines,
            total_cents,
            currency,
            unbalanced,
            unmatched_lines: u32::try_from(parsed.unmatched.len()).unwrap_or(u32::MAX),
        }
    }

    /// A card is fresh up to the timeout. A clock that stepped back (scan "after" now)
    /// keeps the card: the scan certainly happened before this receipt.
    fn is_fresh(&self, scanned_at: Timestamp, now: Timestamp) -> bool {
        now.unix_ms.saturating_sub(scanned_at.unix_ms) <= self.card_timeout_ms
    }
}

impl Default for Checkout {
    fn default() -> Self {
        Self::new(DEFAULT_CARD_TIMEOUT_MS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use till360_shared::card::with_check_digit;
    use till360_shared::ReceiptLine;

    const MINUTE: i64 = 60_000;
    const T0: i64 = 1_795_000_000_000;

    fn card(body: &str) -> CardNumber {
        CardNumber::parse(&with_check_digit(body).unwrap()).unwrap()
    }

    fn now(ms: i64) -> Timestamp {
        Timestamp::from_unix_ms(ms, 60)
    }

    fn line(amount: i64) -> ReceiptLine {
        ReceiptLine {
            description: "x".into(),
            sku: None,
            quantity_milli: 1000,
            unit_cents: None,
            amount_cents: amount,
            discount: false,
        }
    }

    #[test]
    fn card_belongs_to_the_next_receipt_only() {
        let mut checkout = Checkout::new(10 * MINUTE);
        let c = card("240100000012");
        checkout.on_card(c.clone(), now(T0));
        assert_eq!(checkout.pending_card(now(T0 + MINUTE)), Some(&c));
        let first = checkout.on_receipt(ParsedReceipt::default(), Currency::EUR, now(T0 + MINUTE));
        assert_eq!(first.card, Some(c));
        assert_eq!(first.completed_at, now(T0 + MINUTE));
        let second = checkout.on_receipt(
            ParsedReceipt::default(),
            Currency::EUR,
            now(T0 + 2 * MINUTE),
        );
        assert_eq!(second.card, None);
    }

    #[test]
    fn a_second_scan_replaces_the_first() {
        let mut checkout = Checkout::default();
        checkout.on_card(card("240100000012"), now(T0));
        checkout.on_card(card("240100000029"), now(T0 + 1000));
        let receipt = checkout.on_receipt(ParsedReceipt::default(), Currency::EUR, now(T0 + 2000));
        assert_eq!(receipt.card, Some(card("240100000029")));
    }

    #[test]
    fn an_erased_pending_card_never_reaches_the_receipt() {
        let mut checkout = Checkout::default();
        let kept = card("240100000029");
        checkout.on_card(kept.clone(), now(T0));
        let erased = card("240100000012");
        assert!(!checkout.forget_cards(|c| *c == erased));
        assert_eq!(checkout.pending_card(now(T0)), Some(&kept));

        checkout.on_card(card("240100000012"), now(T0));
        assert!(checkout.forget_cards(|c| *c == erased || *c == kept));
        assert_eq!(checkout.pending_card(now(T0)), None);
        let receipt = checkout.on_receipt(ParsedReceipt::default(), Currency::EUR, now(T0 + 1000));
        assert_eq!(receipt.card, None);
    }

    #[test]
    fn stale_cards_are_dropped() {
        let mut checkout = Checkout::new(10 * MINUTE);
        checkout.on_card(card("240100000012"), now(T0));
        assert_eq!(checkout.pending_card(now(T0 + 10 * MINUTE + 1)), None);
        let late = checkout.on_receipt(
            ParsedReceipt::default(),
            Currency::EUR,
            now(T0 + 10 * MINUTE + 1),
        );
        assert_eq!(late.card, None);
        // Exactly at the timeout the card still counts.
        checkout.on_card(card("240100000012"), now(T0));
        let on_time = checkout.on_receipt(
            ParsedReceipt::default(),
            Currency::EUR,
            now(T0 + 10 * MINUTE),
        );
        assert!(on_time.card.is_some());
    }

    #[test]
    fn printed_time_is_local_and_converted_with_the_till_offset() {
        let mut checkout = Checkout::default();
        let parsed = ParsedReceipt {
            receipt_no: Some("0012-3456".into()),
            printed_at: chrono::NaiveDate::from_ymd_opt(2026, 11, 25)
                .and_then(|d| d.and_hms_opt(9, 14, 0)),
            card_last4: Some("1234".into()),
            lines: vec![line(129), line(-65)],
            total_cents: Some(64),
            unmatched: vec![],
        };
        let receipt = checkout.on_receipt(parsed, Currency::EUR, now(T0));
        let printed = receipt.printed_at.expect("printed_at converted");
        assert_eq!(printed.offset_min, 60);
        assert_eq!(printed.to_rfc3339(), "2026-11-25T09:14:00.000+01:00");
        assert_eq!(printed.utc().to_rfc3339(), "2026-11-25T08:14:00+00:00");
        assert_eq!(receipt.receipt_no.as_deref(), Some("0012-3456"));
        assert_eq!(receipt.card_last4.as_deref(), Some("1234"));
        assert_eq!(receipt.total_cents, 64);
        assert_eq!(receipt.currency, Currency::EUR);
    }

    #[test]
    fn missing_total_falls_back_to_the_sum_of_lines() {
        let mut checkout = Checkout::default();
        let parsed = ParsedReceipt {
            lines: vec![line(1299), line(250), line(-100)],
            ..ParsedReceipt::default()
        };
        let receipt = checkout.on_receipt(parsed, Currency::EUR, now(T0));
        assert_eq!(receipt.total_cents, 1449);
        assert!(
            receipt.unbalanced,
            "no total line: nothing to check the lines against"
        );
    }

    #[test]
    fn a_receipt_balances_when_its_lines_and_discounts_add_up_to_the_total() {
        let mut checkout = Checkout::default();
        let parsed = |total: i64| ParsedReceipt {
            lines: vec![line(1299), line(250), line(-100)],
            total_cents: Some(total),
            unmatched: vec!["SUPERMARKT".into(), "PIN 14,49".into()],
            ..ParsedReceipt::default()
        };
        let fine = checkout.on_receipt(parsed(1449), Currency::EUR, now(T0));
        assert!(!fine.unbalanced);
        assert_eq!(fine.unmatched_lines, 2);
        let off = checkout.on_receipt(parsed(1329), Currency::EUR, now(T0));
        assert!(off.unbalanced);
        assert_eq!(off.total_cents, 1329, "the printed total is kept");
        let slip = ParsedReceipt {
            unmatched: vec!["KLANTTICKET".into()],
            ..ParsedReceipt::default()
        };
        let slip = checkout.on_receipt(slip, Currency::EUR, now(T0));
        assert!(!slip.unbalanced, "a card slip sold nothing");
        assert_eq!(slip.unmatched_lines, 1);
    }
}
