//! Profiles, pure: what an event means for the profile store (as a list of idempotent,
//! commutative operations) and how a profile is presented. No SQL, no IO: the store
//! applies [`MergeOp`]s, and because every op is "ensure" or "add a row keyed by
//! (agent, seq)", the same events in any order leave the same profiles (DESIGN.md
//! principle 3).

#![deny(clippy::disallowed_methods)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::NaiveDate;
use serde::Serialize;
use till360_shared::event::Verification;
use till360_shared::{CardNumber, Event, EventKind, ReceiptLine, Timestamp};

/// The deterministic profile id of a card: `p-` and 16 hex digits of SHA-256(card).
/// The same card gives the same id on every hub, whatever order events arrive in.
pub fn profile_id_for(card: &CardNumber) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, card.as_str().as_bytes());
    crate::identity::profile_id_of_digest(digest.as_ref())
}

/// One transaction as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionRow {
    pub store: String,
    pub till: String,
    pub seq: u64,
    pub receipt_no: Option<String>,
    /// When the agent saw the receipt end (its clock, with the till's offset).
    pub at: Timestamp,
    /// The time printed on the receipt (the POS clock), when the layout found it.
    pub printed_at: Option<Timestamp>,
    pub card: Option<CardNumber>,
    pub profile_id: Option<String>,
    pub total_cents: i64,
    pub currency: String,
    pub lines: Vec<ReceiptLine>,
    /// The till could not balance the receipt: kept, but no traits or digests use it.
    pub unbalanced: bool,
}

/// A printed coupon (`control == false`) or a control-group would-have, as merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CouponRow {
    pub store: String,
    pub till: String,
    pub seq: u64,
    pub campaign_id: String,
    pub control: bool,
    /// The printed digits (no spaces); `None` for a would-have.
    pub code: Option<String>,
    pub card: Option<CardNumber>,
    /// Filled by the store from the identity graph (like a receipt's profile).
    pub profile_id: Option<String>,
    pub customer_key: Option<String>,
    /// The event's `recorded_at`.
    pub issued_at: Timestamp,
    pub expires: NaiveDate,
    pub receipt_seq: u64,
}

/// What the till did with a scanned code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanOutcome {
    Accepted {
        receipt_seq: Option<u64>,
        verified: Verification,
    },
    Refused {
        reason: String,
    },
}

/// A coupon code scanned at a till, as merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedemptionRow {
    pub store: String,
    pub till: String,
    pub seq: u64,
    /// The code as scanned, spaces removed (a misread stays as it is).
    pub code: String,
    pub at: Timestamp,
    pub outcome: ScanOutcome,
}

/// A change to the profile store. Every op is idempotent and commutes with the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeOp {
    /// The card belongs to this profile; the profile exists at least since `seen_at`
    /// (the store keeps the earliest `seen_at`, so order does not matter).
    EnsureProfile {
        card: CardNumber,
        profile_id: String,
        seen_at: Timestamp,
    },
    /// A new transaction, keyed by (store, till, seq).
    AddTransaction(TransactionRow),
    /// A printed coupon or a would-have, keyed by (store, till, seq); its profile is
    /// the one the `EnsureProfile` before it resolves to.
    AddCoupon(CouponRow),
    /// A scanned coupon code (accepted or refused), keyed by (store, till, seq).
    AddRedemption(RedemptionRow),
}

/// What one event does to the profile store, plus diagnostics for odd input (never a
/// failure: the raw event is kept regardless and can be re-derived later).
pub fn merge_ops(event: &Event) -> (Vec<MergeOp>, Vec<String>) {
    ops_of(event, true)
}

/// [`merge_ops`] with each transaction's `lines` left empty: for the store, which keeps
/// a receipt's lines as their encoding (cut from the event's, `codec::ReceiptEncoding`)
/// and so need not copy them.
pub fn merge_ops_without_lines(event: &Event) -> (Vec<MergeOp>, Vec<String>) {
    ops_of(event, false)
}

/// The card `event` makes sure has a profile, and when it was seen: the
/// [`MergeOp::EnsureProfile`] of [`merge_ops`] without building the other ops (the store
/// gathers a batch's cards with it before merging).
pub fn card_sighting(event: &Event) -> Option<(CardNumber, Timestamp)> {
    let (card, seen_at) = match &event.kind {
        EventKind::CardScanned { card } => (card, event.recorded_at),
        EventKind::Receipt(receipt) => (receipt.card.as_ref()?, receipt.completed_at),
        EventKind::CouponIssued(issue) | EventKind::CouponWouldHave(issue) => {
            (issue.card.as_ref()?, event.recorded_at)
        }
        EventKind::CouponRedeemed(_)
        | EventKind::CouponRefused { .. }
        | EventKind::Redacted
        | EventKind::Quarantined { .. } => return None,
    };
    Some((checked_card(card)?, seen_at))
}

fn ops_of(event: &Event, with_lines: bool) -> (Vec<MergeOp>, Vec<String>) {
    let mut ops = Vec::new();
    let mut notes = Vec::new();
    match &event.kind {
        EventKind::CardScanned { card } => match checked_card(card) {
            Some(card) => ops.push(MergeOp::EnsureProfile {
                profile_id: profile_id_for(&card),
                card,
                seen_at: event.recorded_at,
            }),
            None => notes.push(format!(
                "{} seq {}: scanned card {:?} fails its check digit; no profile",
                event.agent,
                event.seq,
                card.masked()
            )),
        },
        EventKind::Receipt(receipt) => {
            let card = receipt.card.as_ref().and_then(|c| {
                let checked = checked_card(c);
                if checked.is_none() {
                    notes.push(format!(
                        "{} seq {}: receipt card {:?} fails its check digit; kept as anonymous",
                        event.agent,
                        event.seq,
                        c.masked()
                    ));
                }
                checked
            });
            let profile_id = card.as_ref().map(profile_id_for);
            if let (Some(card), Some(profile_id)) = (&card, &profile_id) {
                ops.push(MergeOp::EnsureProfile {
                    card: card.clone(),
                    profile_id: profile_id.clone(),
                    seen_at: receipt.completed_at,
                });
            }
            ops.push(MergeOp::AddTransaction(TransactionRow {
                store: event.agent.store.clone(),
                till: event.agent.till.clone(),
                seq: event.seq,
                receipt_no: receipt.receipt_no.clone(),
                at: receipt.completed_at,
                printed_at: receipt.printed_at,
                card,
                profile_id,
                total_cents: receipt.total_cents,
                currency: receipt.currency.as_str().to_string(),
                lines: if with_lines {
                    receipt.lines.clone()
                } else {
                    Vec::new()
                },
                unbalanced: receipt.unbalanced,
            }));
        }
        // A scan pseudonymised on the till after an erase: nothing to merge.
        EventKind::Redacted => {}
        // The till lost this row to disk corruption: nothing to merge, but worth a note.
        EventKind::Quarantined { reason } => notes.push(format!(
            "{} seq {}: the till quarantined this journal row: {reason}",
            event.agent, event.seq
        )),
        EventKind::CouponIssued(issue) | EventKind::CouponWouldHave(issue) => {
            let control = matches!(event.kind, EventKind::CouponWouldHave(_));
            let card = issue.card.as_ref().and_then(|c| {
                let checked = checked_card(c);
                if checked.is_none() {
                    notes.push(format!(
                        "{} seq {}: coupon card {:?} fails its check digit; kept as anonymous",
                        event.agent,
                        event.seq,
                        c.masked()
                    ));
                }
                checked
            });
            let code = issue.code.as_deref().map(code_digits);
            if control && code.is_some() {
                notes.push(format!(
                    "{} seq {}: a would-have with a code; the code is ignored",
                    event.agent, event.seq
                ));
            }
            if !control && code.is_none() {
                notes.push(format!(
                    "{} seq {}: a printed coupon without a code",
                    event.agent, event.seq
                ));
            }
            let profile_id = card.as_ref().map(profile_id_for);
            if let (Some(card), Some(profile_id)) = (&card, &profile_id) {
                ops.push(MergeOp::EnsureProfile {
                    card: card.clone(),
                    profile_id: profile_id.clone(),
                    seen_at: event.recorded_at,
                });
            }
            ops.push(MergeOp::AddCoupon(CouponRow {
                store: event.agent.store.clone(),
                till: event.agent.till.clone(),
                seq: event.seq,
                campaign_id: issue.campaign_id.clone(),
                control,
                code: if control { None } else { code },
                card,
                profile_id,
                customer_key: issue.customer_key.clone(),
                issued_at: event.recorded_at,
                expires: issue.expires,
                receipt_seq: issue.receipt_seq,
            }));
        }
        EventKind::CouponRedeemed(redemption) => {
            ops.push(MergeOp::AddRedemption(RedemptionRow {
                store: event.agent.store.clone(),
                till: event.agent.till.clone(),
                seq: event.seq,
                code: code_digits(&redemption.code),
                at: event.recorded_at,
                outcome: ScanOutcome::Accepted {
                    receipt_seq: redemption.receipt_seq,
                    verified: redemption.verified,
                },
            }));
        }
        EventKind::CouponRefused { code, reason } => {
            ops.push(MergeOp::AddRedemption(RedemptionRow {
                store: event.agent.store.clone(),
                till: event.agent.till.clone(),
                seq: event.seq,
                code: code_digits(code),
                at: event.recorded_at,
                outcome: ScanOutcome::Refused {
                    reason: reason.clone(),
                },
            }));
        }
    }
    (ops, notes)
}

/// The hub does not trust a deserialized card number: it re-checks the check digit.
fn checked_card(card: &CardNumber) -> Option<CardNumber> {
    CardNumber::parse(card.as_str())
        .ok()
        .filter(|parsed| parsed == card)
}

/// The facts of one transaction a profile summary needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionFact {
    pub store: String,
    pub at: Timestamp,
    pub total_cents: i64,
    pub currency: String,
}

/// A profile as the HTTP API shows it (field names are binding, DESIGN.md).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProfileView {
    pub profile_id: String,
    /// The earliest event or record that named one of the profile's identifiers.
    pub created_at: String,
    pub cards: Vec<String>,
    pub customer_no: Option<String>,
    pub identity: IdentityView,
    pub personal: PersonalView,
    /// Per purpose (`email`, `sms`, `post`, `personalization`).
    pub consents: BTreeMap<String, ConsentView>,
    pub loyalty: LoyaltyView,
    /// Till receipts (the store channel).
    pub transactions: TransactionSummary,
    pub channels: ChannelsView,
    /// The most recent receipts and orders, newest first, with their lines.
    pub timeline: Vec<TimelineEntry>,
    /// Categories bought (sensitive ones never appear), by spend, largest first.
    pub categories: Vec<CategorySpend>,
    pub coupons: CouponSummary,
    pub segments: Vec<String>,
    pub traits: BTreeMap<String, serde_json::Value>,
}

/// All identifiers of a profile, sorted per kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IdentityView {
    pub cards: Vec<String>,
    pub customer_no: Vec<String>,
    pub emails: Vec<String>,
    pub phones: Vec<String>,
    pub online_accounts: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PersonalView {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// `YYYY-MM-DD`.
    pub birth_date: Option<String>,
    pub postal_code: Option<String>,
    pub language: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsentView {
    pub granted: bool,
    /// `crm`, `api`, ...
    pub source: String,
    /// RFC 3339 (UTC).
    pub at: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LoyaltyView {
    /// `YYYY-MM-DD`.
    pub member_since: Option<String>,
    pub points: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChannelsView {
    pub store: ChannelSummary,
    pub online: ChannelSummary,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChannelSummary {
    pub count: u64,
    /// In the channel's main currency.
    pub total_cents: i64,
    pub first_at: Option<String>,
    pub last_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEntry {
    /// `receipt` or `order`.
    pub kind: &'static str,
    pub at: String,
    /// Receipt number or order id.
    pub reference: Option<String>,
    /// The store for a receipt, the sales channel (`web`, `app`, ...) for an order.
    pub place: String,
    /// The till of a receipt (`null` for an order).
    pub till: Option<String>,
    pub total_cents: i64,
    pub currency: String,
    pub lines: Vec<TimelineLine>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineLine {
    pub sku: Option<String>,
    pub description: String,
    pub qty: f64,
    pub unit_cents: Option<i64>,
    pub amount_cents: i64,
    pub discount: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CategorySpend {
    pub category: String,
    pub spend_cents: i64,
    pub lines: u64,
}

/// A receipt or an order with its lines, as the store loaded it.
#[derive(Debug, Clone, PartialEq)]
pub struct Purchase {
    pub reference: Option<String>,
    /// Store (receipt) or channel (order).
    pub place: String,
    /// The till of a receipt; `None` for an order.
    pub till: Option<String>,
    pub at: Timestamp,
    pub total_cents: i64,
    pub currency: String,
    pub lines: Vec<PurchaseLine>,
}

/// A purchase line with the product category the store matched (by sku, else by
/// description), if any.
#[derive(Debug, Clone, PartialEq)]
pub struct PurchaseLine {
    pub line: TimelineLine,
    /// Shared by every line of the product (the store matches each product once).
    pub category: Option<Arc<str>>,
    pub sensitive: bool,
}

/// Everything stored on a profile, as loaded; [`profile_view`] presents it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProfileParts {
    pub profile_id: String,
    pub created_at: Option<Timestamp>,
    pub customer_no: Option<String>,
    /// `(kind, value)` as in the `identifiers` table.
    pub identifiers: Vec<(String, String)>,
    pub personal: PersonalView,
    pub loyalty: LoyaltyView,
    pub consents: BTreeMap<String, ConsentView>,
    pub receipts: Vec<Purchase>,
    pub orders: Vec<Purchase>,
    pub segments: Vec<String>,
    pub traits: BTreeMap<String, serde_json::Value>,
    /// Printed coupons of the profile and how many of them were redeemed.
    pub coupons: CouponSummary,
}

/// How many receipts and orders the timeline shows.
pub const TIMELINE_LEN: usize = 20;

/// Builds the API view of a profile from its stored parts.
pub fn profile_view(parts: ProfileParts) -> ProfileView {
    let mut identity = IdentityView::default();
    for (kind, value) in parts.identifiers {
        let list = match kind.as_str() {
            "card" => &mut identity.cards,
            "customer_no" => &mut identity.customer_no,
            "email" => &mut identity.emails,
            "phone" => &mut identity.phones,
            _ => &mut identity.online_accounts,
        };
        list.push(value);
    }
    for list in [
        &mut identity.cards,
        &mut identity.customer_no,
        &mut identity.emails,
        &mut identity.phones,
        &mut identity.online_accounts,
    ] {
        list.sort();
    }
    let facts = |purchases: &[Purchase]| -> Vec<TransactionFact> {
        purchases
            .iter()
            .map(|p| TransactionFact {
                store: p.place.clone(),
                at: p.at,
                total_cents: p.total_cents,
                currency: p.currency.clone(),
            })
            .collect()
    };
    let store_facts = facts(&parts.receipts);
    let transactions = summarize(&store_facts);
    let channel = |s: &TransactionSummary| ChannelSummary {
        count: s.count,
        total_cents: s.total_cents,
        first_at: s.first_at.clone(),
        last_at: s.last_at.clone(),
    };
    let channels = ChannelsView {
        store: channel(&transactions),
        online: channel(&summarize(&facts(&parts.orders))),
    };

    let mut spend: BTreeMap<&str, (i64, u64)> = BTreeMap::new();
    for p in parts.receipts.iter().chain(&parts.orders) {
        for l in &p.lines {
            if let (Some(category), false) = (&l.category, l.sensitive) {
                let entry = spend.entry(&**category).or_default();
                entry.0 = entry.0.saturating_add(l.line.amount_cents);
                entry.1 += 1;
            }
        }
    }
    let mut categories: Vec<CategorySpend> = spend
        .into_iter()
        .map(|(category, (spend_cents, lines))| CategorySpend {
            category: category.to_string(),
            spend_cents,
            lines,
        })
        .collect();
    categories.sort_by(|a, b| {
        b.spend_cents
            .cmp(&a.spend_cents)
            .then_with(|| a.category.cmp(&b.category))
    });

    // The purchases are moved into the timeline, not copied: a view of a regular
    // customer is mostly its receipts' lines (`benches/api_reads.rs`).
    let mut recent: Vec<(&'static str, Purchase)> = parts
        .receipts
        .into_iter()
        .map(|p| ("receipt", p))
        .chain(parts.orders.into_iter().map(|p| ("order", p)))
        .collect();
    recent.sort_by(|a, b| {
        b.1.at
            .cmp(&a.1.at)
            .then_with(|| a.1.reference.cmp(&b.1.reference))
    });
    let timeline = recent
        .into_iter()
        .take(TIMELINE_LEN)
        .map(|(kind, p)| TimelineEntry {
            kind,
            at: p.at.to_rfc3339(),
            reference: p.reference,
            place: p.place,
            till: p.till,
            total_cents: p.total_cents,
            currency: p.currency,
            lines: p.lines.into_iter().map(|l| l.line).collect(),
        })
        .collect();

    let customer_no = parts
        .customer_no
        .or_else(|| identity.customer_no.first().cloned());
    let mut segments = parts.segments;
    segments.sort();
    ProfileView {
        profile_id: parts.profile_id,
        created_at: parts.created_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
        cards: identity.cards.clone(),
        customer_no,
        identity,
        personal: parts.personal,
        consents: parts.consents,
        loyalty: parts.loyalty,
        transactions,
        channels,
        timeline,
        categories,
        coupons: parts.coupons,
        segments,
        traits: parts.traits,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TransactionSummary {
    pub count: u64,
    /// Total in `currency`, the profile's main currency (the one most transactions use).
    pub total_cents: i64,
    pub currency: Option<String>,
    pub first_at: Option<String>,
    pub last_at: Option<String>,
    pub stores: Vec<String>,
    /// Totals per currency, for the rare profile that paid in more than one.
    pub by_currency: Vec<CurrencyTotal>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CurrencyTotal {
    pub currency: String,
    pub count: u64,
    pub total_cents: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CouponSummary {
    pub issued: u64,
    pub redeemed: u64,
}

/// Count, totals, first/last time (in the till's own offset) and stores of a profile.
pub fn summarize(facts: &[TransactionFact]) -> TransactionSummary {
    let mut per_currency: BTreeMap<&str, (u64, i64)> = BTreeMap::new();
    for f in facts {
        let entry = per_currency.entry(f.currency.as_str()).or_default();
        entry.0 += 1;
        entry.1 = entry.1.saturating_add(f.total_cents);
    }
    // Most transactions wins; ties go to the alphabetically first code (deterministic).
    let main = per_currency
        .iter()
        .max_by(|a, b| a.1 .0.cmp(&b.1 .0).then(b.0.cmp(a.0)))
        .map(|(code, (_, total))| (code.to_string(), *total));
    let stores: BTreeSet<&str> = facts.iter().map(|f| f.store.as_str()).collect();
    TransactionSummary {
        count: facts.len() as u64,
        total_cents: main.as_ref().map_or(0, |m| m.1),
        currency: main.map(|m| m.0),
        first_at: facts.iter().map(|f| f.at).min().map(|t| t.to_rfc3339()),
        last_at: facts.iter().map(|f| f.at).max().map(|t| t.to_rfc3339()),
        stores: stores.into_iter().map(str::to_string).collect(),
        by_currency: per_currency
            .into_iter()
            .map(|(currency, (count, total_cents))| CurrencyTotal {
                currency: currency.to_string(),
                count,
                total_cents,
            })
            .collect(),
    }
}

/// A code as the ledger keys it: what was scanned or typed, whitespace removed (people
/// type the grouped form).
pub fn code_digits(code: &str) -> String {
    code.chars().filter(|c| !c.is_whitespace()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use till360_shared::{AgentId, Currency, Receipt};

    fn card(body: &str) -> CardNumber {
        CardNumber::parse(&till360_shared::card::with_check_digit(body).unwrap()).unwrap()
    }

    fn receipt_event(seq: u64, card: Option<CardNumber>) -> Event {
        let at = Timestamp::from_unix_ms(1_764_060_000_000 + seq as i64, 60);
        Event {
            agent: AgentId::new("S1", "T1"),
            seq,
            recorded_at: at,
            kind: EventKind::Receipt(Receipt {
                receipt_no: Some(format!("R{seq}")),
                printed_at: None,
                completed_at: at,
                card,
                card_last4: None,
                lines: vec![],
                total_cents: 250,
                currency: Currency::EUR,
                unbalanced: false,
                unmatched_lines: 0,
            }),
        }
    }

    #[test]
    fn profile_id_is_stable_and_distinct() {
        let a = profile_id_for(&card("240100000001"));
        assert_eq!(a, profile_id_for(&card("240100000001")));
        assert_ne!(a, profile_id_for(&card("240100000002")));
        assert_eq!(a.len(), 18);
        assert!(a.starts_with("p-") && a[2..].bytes().all(|b| b.is_ascii_hexdigit()));
        // SHA-256 test vector: the id is a prefix of the digest of the digits.
        let abc = CardNumber::parse("4006381333931").unwrap();
        let digest = ring::digest::digest(&ring::digest::SHA256, b"4006381333931");
        assert_eq!(
            profile_id_for(&abc)[2..4],
            format!("{:02x}", digest.as_ref()[0])
        );
    }

    /// `card_sighting` is the `EnsureProfile` of `merge_ops`, for events of every kind
    /// (with valid, forged and no cards).
    #[test]
    fn a_card_sighting_is_the_ensure_profile_op() {
        use till360_shared::event::CouponIssue;
        let mut events =
            crate::synthetic::Generator::new(5, 20, 70).events(&AgentId::new("S1", "T1"), 1, 200);
        // A card number that bypassed parsing on the wire (bad check digit).
        let forged: CardNumber = till360_shared::codec::from_bytes(
            &till360_shared::codec::to_bytes(&"4006381333932".to_string()).unwrap(),
        )
        .unwrap();
        for card in [Some(card("240100000001")), Some(forged), None] {
            let issue = CouponIssue {
                campaign_id: "welcome".into(),
                code: None,
                card: card.clone(),
                customer_key: None,
                expires: chrono::NaiveDate::from_ymd_opt(2027, 1, 31).unwrap(),
                receipt_seq: 8,
            };
            for kind in [
                EventKind::CouponIssued(issue.clone()),
                EventKind::CouponWouldHave(issue),
                EventKind::CardScanned {
                    card: card.clone().unwrap_or_else(|| self::card("240100000002")),
                },
            ] {
                let mut event = receipt_event(9, card.clone());
                event.kind = kind;
                events.push(event);
            }
            events.push(receipt_event(10, card));
        }
        for event in &events {
            let ensured = merge_ops(event).0.into_iter().find_map(|op| match op {
                MergeOp::EnsureProfile { card, seen_at, .. } => Some((card, seen_at)),
                _ => None,
            });
            assert_eq!(card_sighting(event), ensured, "{event:?}");
        }
    }

    #[test]
    fn carded_receipt_ensures_profile_and_adds_transaction() {
        let c = card("240100000001");
        let (ops, notes) = merge_ops(&receipt_event(4, Some(c.clone())));
        assert!(notes.is_empty());
        assert_eq!(ops.len(), 2);
        assert!(matches!(&ops[0], MergeOp::EnsureProfile { card, .. } if card == &c));
        match &ops[1] {
            MergeOp::AddTransaction(row) => {
                assert_eq!(row.profile_id, Some(profile_id_for(&c)));
                assert_eq!((row.store.as_str(), row.seq), ("S1", 4));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn anonymous_and_forged_cards_make_anonymous_transactions() {
        let (ops, _) = merge_ops(&receipt_event(1, None));
        assert!(matches!(&ops[..], [MergeOp::AddTransaction(row)] if row.profile_id.is_none()));
        // A card number that bypassed parsing on the wire (bad check digit).
        let forged: CardNumber = till360_shared::codec::from_bytes(
            &till360_shared::codec::to_bytes(&"4006381333932".to_string()).unwrap(),
        )
        .unwrap();
        let (ops, notes) = merge_ops(&receipt_event(2, Some(forged)));
        assert_eq!(notes.len(), 1);
        assert!(
            matches!(&ops[..], [MergeOp::AddTransaction(row)] if row.profile_id.is_none() && row.card.is_none())
        );
    }

    #[test]
    fn summary_uses_main_currency_and_local_offsets() {
        let fact = |store: &str, ms: i64, offset: i16, cents: i64, cur: &str| TransactionFact {
            store: store.into(),
            at: Timestamp::from_unix_ms(ms, offset),
            total_cents: cents,
            currency: cur.into(),
        };
        let s = summarize(&[
            fact("S2", 1_764_060_000_000, 60, 100, "EUR"),
            fact("S1", 1_764_050_000_000, 0, 999, "GBP"),
            fact("S1", 1_764_070_000_000, 60, 250, "EUR"),
        ]);
        assert_eq!(s.count, 3);
        assert_eq!((s.total_cents, s.currency.as_deref()), (350, Some("EUR")));
        assert_eq!(s.first_at.as_deref(), Some("2025-11-25T05:53:20.000+00:00"));
        assert_eq!(s.last_at.as_deref(), Some("2025-11-25T12:26:40.000+01:00"));
        assert_eq!(s.stores, vec!["S1", "S2"]);
        assert_eq!(s.by_currency.len(), 2);
        let empty = summarize(&[]);
        assert_eq!(
            (empty.count, empty.currency, empty.first_at),
            (0, None, None)
        );
    }
}
