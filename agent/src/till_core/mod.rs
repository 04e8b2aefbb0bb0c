#![deny(clippy::disallowed_methods)]
//! The till core (sans-IO): printed bytes, scans, the proxy's cut releases and the
//! hub's news in, with `now`; effects out (answer this held cut, print this notice, ask
//! the hub this, this seq was journaled). Like `CutGate` and quinn-proto, it reads no
//! clock, owns no channel, thread, file or socket: the runtime moves values in and out
//! and holds the journal's lock around [`TillCore::handle`] only.
//!
//! Inside: the ESC/POS parser, the receipt layout, the checkout (a card belongs to the
//! next receipt), the coupon desk (coupons decided at a cut), the scanned coupon codes.
//! The journal is seen through [`TillJournal`], a narrow interface; a journal failure is
//! logged and printing goes on (principle 1).
//!
//! A receipt's cut waits in the proxy for its coupon decision (at most the budget), so
//! a [`TillInput::Print`] whose bytes end a receipt returns right after the
//! [`TillEffect::Decide`], before the receipt is journaled; [`TillCore::poll`] (or the
//! next [`TillCore::handle`]) does the rest, in order, while [`TillCore::wants_poll`].

use std::collections::HashMap;
use std::ops::Range;

use chrono::NaiveDate;
use till360_shared::campaign::Digest;
use till360_shared::coupon::CardKey;
use till360_shared::event::{CouponIssue, CouponRedemption};
use till360_shared::{CardNumber, Currency, EventKind, Money, Receipt, Timestamp};

use crate::checkout::Checkout;
use crate::coupons::{
    CouponDesk, CutCoupons, ScanContext, ScanOutcome, ScannedCoupons, SerialBlocks, VerdictOutcome,
};
use crate::escpos::encode::{notice_block, PrinterModes};
use crate::escpos::gate::CutOutcome;
use crate::escpos::{CodePage, EscPosParser, EscTTable, PrintEvent};
use crate::hub_link::{CampaignState, HubNews, HubRequest};
use crate::journal::{Journal, JournalError};
use crate::layout::Layout;

/// What the till core is told.
#[derive(Debug)]
pub enum TillInput {
    /// Bytes the POS sent (already on their way to the printer, or held with a cut).
    Print(Vec<u8>),
    /// The proxy released the cut at this stream offset (with the coupon or without).
    CutReleased { offset: u64, outcome: CutOutcome },
    /// A loyalty card was scanned (at its scan time).
    Card(CardNumber, Timestamp),
    /// A coupon code (well-formed, not yet verified) was scanned (at its scan time).
    Coupon(String, Timestamp),
    /// A clean scan that was neither a loyalty card nor a coupon (counted).
    Unrecognised,
    /// News from the uplink.
    Hub(HubNews),
    /// Cards erased on the hub (already cleared from the journal by the uplink).
    Erased(crate::uplink::ErasedCards),
    /// A [`TillEffect::AskHub`] could not be delivered: the uplink is gone. The hub is
    /// no longer asked; a coupon check is decided as if unanswered.
    Undelivered(HubRequest),
}

/// What the till core asks the runtime to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TillEffect {
    /// Answer the proxy's held cut at `offset` (with a coupon block to print before it,
    /// or none). Only with a gate ([`TillSettings::has_gate`]).
    Decide { offset: u64, block: Option<Vec<u8>> },
    /// Print this notice for the cashier (between receipts). Only with
    /// [`TillSettings::has_notices`].
    Notice(Vec<u8>),
    /// Send this request to the uplink. Only with [`TillSettings::has_uplink`]; when it
    /// cannot be delivered, feed back [`TillInput::Undelivered`].
    AskHub(HubRequest),
    /// An event was journaled at this seq (the journal's last seq).
    Journaled(u64),
}

/// What the till core is configured with.
#[derive(Debug, Clone)]
pub struct TillSettings {
    pub store: String,
    pub till: String,
    /// The receipt layout; its currency is the receipts' currency.
    pub layout: Layout,
    /// `[pos] codepage` and `esc_t`.
    pub codepage: CodePage,
    pub esc_t: EscTTable,
    /// `[checkout]`: how long a scanned card waits for its receipt.
    pub card_timeout_ms: i64,
    /// `[coupons] enabled`: coupons are decided at cuts.
    pub coupons_enabled: bool,
    /// The proxy holds each cut until its [`TillEffect::Decide`].
    pub has_gate: bool,
    /// The proxy prints [`TillEffect::Notice`]s.
    pub has_notices: bool,
    /// An uplink takes [`TillEffect::AskHub`].
    pub has_uplink: bool,
    /// `[coupons] notice_text`, `columns`, `expiry_label`, `max_unverified`.
    pub notice_text: String,
    pub columns: usize,
    pub expiry_label: String,
    pub max_unverified: u32,
}

/// The journal as the till core sees it: a narrow interface.
pub trait TillJournal {
    /// Journals an event; its seq.
    fn append(&mut self, at: Timestamp, kind: EventKind) -> Result<u64, JournalError>;
    /// The last journaled seq (0 when empty).
    fn last_seq(&self) -> u64;
    /// The code is in the store's redemption ledger.
    fn is_redeemed(&self, code: &str) -> Result<bool, JournalError>;
    /// Reserves `count` serials of a campaign and expiry day (committed before use).
    fn reserve_coupon_serials(
        &mut self,
        campaign_number: u16,
        expires: NaiveDate,
        count: u16,
    ) -> Result<Range<u16>, JournalError>;
    /// Counts a scan that was neither a card nor a coupon.
    fn count_unrecognised_scan(&mut self) -> Result<(), JournalError>;
    /// The campaign set held, if any.
    fn campaigns(&self) -> Result<Option<CampaignState>, JournalError>;
    /// The digest cache.
    fn digests(&self) -> Result<Vec<(CardKey, Digest)>, JournalError>;
}

impl TillJournal for Journal {
    fn append(&mut self, at: Timestamp, kind: EventKind) -> Result<u64, JournalError> {
        Journal::append(self, at, kind).map(|event| event.seq)
    }

    fn last_seq(&self) -> u64 {
        Journal::last_seq(self)
    }

    fn is_redeemed(&self, code: &str) -> Result<bool, JournalError> {
        Journal::is_redeemed(self, code)
    }

    fn reserve_coupon_serials(
        &mut self,
        campaign_number: u16,
        expires: NaiveDate,
        count: u16,
    ) -> Result<Range<u16>, JournalError> {
        Journal::reserve_coupon_serials(self, campaign_number, expires, count)
    }

    fn count_unrecognised_scan(&mut self) -> Result<(), JournalError> {
        Journal::count_unrecognised_scan(self)
    }

    fn campaigns(&self) -> Result<Option<CampaignState>, JournalError> {
        Journal::campaigns(self)
    }

    fn digests(&self) -> Result<Vec<(CardKey, Digest)>, JournalError> {
        Journal::digests(self)
    }
}

/// Coupons decided at a cut whose release the proxy has not reported yet.
#[derive(Debug)]
struct PrintingCoupons {
    /// The journal seq of their receipt (`None`: the receipt was not journaled).
    receipt_seq: Option<u64>,
    issued: Vec<CouponIssue>,
}

/// A receipt whose cut was decided and whose journaling is still to do.
#[derive(Debug)]
struct CutTail {
    offset: u64,
    at: Timestamp,
    receipt: Receipt,
    coupons: CutCoupons,
}

/// The till core: turns printed bytes into receipts and scans into card events, and
/// journals both. See the module documentation.
#[derive(Debug)]
pub struct TillCore {
    parser: EscPosParser,
    layout: Layout,
    currency: Currency,
    checkout: Checkout,
    /// Lines of the receipt being printed (since the last cut).
    lines: Vec<String>,
    store: String,
    till: String,
    coupons_enabled: bool,
    has_gate: bool,
    has_notices: bool,
    /// An uplink takes requests (until it is gone).
    has_uplink: bool,
    /// Campaigns, keyring, catalog and digest cache: decides the coupons at a cut.
    desk: CouponDesk,
    /// Coupon serials reserved in the journal, handed out at cuts.
    serials: SerialBlocks,
    /// The uplink is connected to the hub.
    online: bool,
    /// Coupon codes scanned for the next receipt.
    scanned: ScannedCoupons,
    /// Coupons handed to the proxy, by cut offset, until it says whether they printed.
    printing: HashMap<u64, PrintingCoupons>,
    /// `[coupons] notice_text` and `columns`.
    notice_text: String,
    columns: usize,
    /// A decided cut's receipt, journaled by the next `poll` or `handle`.
    tail: Option<CutTail>,
}

impl TillCore {
    /// The till core with the desk the journal holds (campaign state, digest cache). A
    /// journal that cannot say starts the desk empty: no coupons until the hub sends them.
    pub fn new(settings: TillSettings, journal: &impl TillJournal) -> TillCore {
        let mut desk = CouponDesk::new(settings.columns, settings.expiry_label.clone());
        match journal.campaigns() {
            Ok(Some(state)) => {
                tracing::info!(
                    "coupons: campaign set version {} held",
                    state.set.content_version()
                );
                desk.on_campaigns(state);
            }
            Ok(None) => tracing::info!("coupons: no campaign set yet"),
            Err(e) => tracing::error!("coupons: cannot read the campaign set: {e}"),
        }
        match journal.digests() {
            Ok(digests) => desk.load_digests(digests),
            Err(e) => tracing::error!("coupons: cannot read the digest cache: {e}"),
        }
        TillCore {
            parser: EscPosParser::with_esc_t(settings.codepage, settings.esc_t),
            currency: settings.layout.currency(),
            layout: settings.layout,
            checkout: Checkout::new(settings.card_timeout_ms),
            lines: Vec::new(),
            store: settings.store,
            till: settings.till,
            coupons_enabled: settings.coupons_enabled,
            has_gate: settings.has_gate,
            has_notices: settings.has_notices,
            has_uplink: settings.has_uplink,
            desk,
            serials: SerialBlocks::default(),
            online: false,
            scanned: ScannedCoupons::new(settings.max_unverified),
            printing: HashMap::new(),
            notice_text: settings.notice_text,
            columns: settings.columns,
            tail: None,
        }
    }

    /// Takes one input at `now` (the time of a receipt's cut, of a print confirmation,
    /// of a refusal after a late verdict; scans carry their own time). Finishes first
    /// what an earlier cut left. Returns after a [`TillEffect::Decide`] when the bytes
    /// end a receipt: call [`TillCore::poll`] while [`TillCore::wants_poll`].
    pub fn handle(
        &mut self,
        input: TillInput,
        now: Timestamp,
        journal: &mut impl TillJournal,
    ) -> Vec<TillEffect> {
        let mut out = Vec::new();
        self.drain(now, journal, &mut out, false);
        match input {
            TillInput::Print(bytes) => {
                self.parser.feed(&bytes);
                self.drain(now, journal, &mut out, true);
            }
            TillInput::CutReleased { offset, outcome } => {
                self.on_cut_released(offset, outcome, now, journal, &mut out);
            }
            TillInput::Card(card, at) => {
                crate::metrics::record_scan("card");
                tracing::info!("card scanned: {}", card.masked());
                self.checkout.on_card(card.clone(), at);
                self.ask_hub(HubRequest::Digest { card: card.clone() }, &mut out);
                self.record(at, EventKind::CardScanned { card }, journal, &mut out);
            }
            TillInput::Coupon(code, at) => {
                crate::metrics::record_scan("coupon");
                self.on_coupon_scanned(code, at, now, journal, &mut out);
            }
            TillInput::Unrecognised => {
                crate::metrics::record_scan("unrecognised");
                if let Err(e) = journal.count_unrecognised_scan() {
                    tracing::error!("unrecognised scan not counted: {e}");
                }
            }
            TillInput::Hub(news) => self.on_hub_news(news, now, journal, &mut out),
            TillInput::Erased(erased) => {
                if self.checkout.forget_cards(|card| erased.names(card)) {
                    tracing::info!("a scanned card was erased on the hub; it is dropped");
                }
            }
            TillInput::Undelivered(request) => {
                if self.has_uplink {
                    tracing::warn!("the uplink is gone: the hub is no longer asked");
                }
                self.has_uplink = false;
                if let HubRequest::CouponCheck { code } = request {
                    self.on_verdict(code, None, now, journal, &mut out);
                }
            }
        }
        out
    }

    /// Whether a decided cut's receipt (and the bytes after it) still wait for
    /// [`TillCore::poll`].
    pub fn wants_poll(&self) -> bool {
        self.tail.is_some()
    }

    /// Journals the receipt of the cut last decided, then goes on with the bytes after
    /// it (stopping again after the next cut's [`TillEffect::Decide`]). Empty when there
    /// is nothing to do.
    pub fn poll(&mut self, now: Timestamp, journal: &mut impl TillJournal) -> Vec<TillEffect> {
        let mut out = Vec::new();
        if self.tail.is_some() {
            self.drain(now, journal, &mut out, true);
        }
        out
    }

    /// The till core stops: logs what is lost (lines not cut, coupon codes scanned
    /// without a receipt after them).
    pub fn finish(mut self) {
        if let Some(tail) = &self.tail {
            tracing::warn!(
                "stopping with receipt {} decided but not journaled",
                tail.receipt.receipt_no.as_deref().unwrap_or("?")
            );
        }
        if !self.lines.is_empty() {
            tracing::warn!(
                "stopping with {} printed lines not yet cut; they are not journaled",
                self.lines.len()
            );
        }
        let left = self.scanned.take_for_receipt();
        let codes = left.accepted.into_iter().map(|(code, _)| code);
        for code in codes.chain(left.refused.into_iter().map(|(code, _)| code)) {
            tracing::warn!("stopping with coupon {code} scanned but no receipt after it");
        }
    }

    /// Journals a pending cut's receipt and parses what is fed; with `stop_at_decide`,
    /// returns right after a cut's `Decide`.
    fn drain(
        &mut self,
        now: Timestamp,
        journal: &mut impl TillJournal,
        out: &mut Vec<TillEffect>,
        stop_at_decide: bool,
    ) {
        loop {
            if let Some(tail) = self.tail.take() {
                self.journal_cut(tail, journal, out);
            }
            let Some(event) = self.parser.poll() else {
                return;
            };
            match event {
                PrintEvent::Line(line) => self.lines.push(line),
                PrintEvent::Cut { offset, .. } => {
                    let decided = self.on_cut(offset, now, journal, out);
                    if decided && stop_at_decide {
                        return;
                    }
                }
                PrintEvent::StatusRequest { command } => {
                    tracing::trace!("status request {command:?}");
                }
                PrintEvent::Diagnostic(message) => tracing::debug!("escpos: {message}"),
            }
        }
    }

    /// A receipt ends at `now`: decide its coupons and answer the proxy first (the cut
    /// is waiting); its journaling is left in `tail`. `true` when a `Decide` was given
    /// for a receipt (a cut without text is answered and done with).
    fn on_cut(
        &mut self,
        offset: u64,
        now: Timestamp,
        journal: &mut impl TillJournal,
        out: &mut Vec<TillEffect>,
    ) -> bool {
        let lines = std::mem::take(&mut self.lines);
        if lines.iter().all(|l| l.trim().is_empty()) {
            tracing::debug!("cut without text: nothing to journal");
            self.decide(offset, None, out);
            return false;
        }
        let at = now;
        let parsed = self.layout.match_lines(lines.iter().map(String::as_str));
        let receipt = self.checkout.on_receipt(parsed, self.currency, at);
        crate::metrics::record_receipt(!receipt.unbalanced);
        if receipt.unbalanced {
            tracing::warn!(
                "receipt {}: its lines add up to {}, the total read is {} ({} lines \
                 not matched): journaled as unbalanced, no coupon; check [pos] layout",
                receipt.receipt_no.as_deref().unwrap_or("?"),
                Money::new(receipt.lines_sum_cents(), receipt.currency),
                Money::new(receipt.total_cents, receipt.currency),
                receipt.unmatched_lines
            );
        }
        // A misread receipt triggers nothing (its amounts cannot be trusted).
        let mut coupons =
            if self.coupons_enabled && self.desk.state().is_some() && !receipt.unbalanced {
                let receipt_key = self.receipt_key(receipt.receipt_no.as_deref(), journal);
                let serials = &mut self.serials;
                self.desk.decide_at_cut(
                    &receipt,
                    &receipt_key,
                    &self.store,
                    !self.online,
                    PrinterModes::of(&self.parser),
                    at,
                    |campaign, expires| {
                        serials
                            .next(campaign, expires, |campaign, expires, count| {
                                journal.reserve_coupon_serials(campaign, expires, count)
                            })
                            .map_err(|e| e.to_string())?
                            .ok_or_else(|| "the journal reserved no serial".to_string())
                    },
                )
            } else {
                CutCoupons::default()
            };
        let decided = self.decide(offset, coupons.block.take(), out);
        self.tail = Some(CutTail {
            offset,
            at,
            receipt,
            coupons,
        });
        decided
    }

    /// Journals a decided cut's receipt and what belongs to it.
    fn journal_cut(
        &mut self,
        tail: CutTail,
        journal: &mut impl TillJournal,
        out: &mut Vec<TillEffect>,
    ) {
        let CutTail {
            offset,
            at,
            receipt,
            coupons,
        } = tail;
        tracing::info!(
            "receipt {} total {} ({} lines, {} unmatched, {} coupons)",
            receipt.receipt_no.as_deref().unwrap_or("?"),
            Money::new(receipt.total_cents, receipt.currency),
            receipt.lines.len(),
            receipt.unmatched_lines,
            coupons.issued.len()
        );
        let receipt_seq = self.record(at, EventKind::Receipt(receipt), journal, out);
        let codes = self.scanned.take_for_receipt();
        for (code, verified) in codes.accepted {
            let redemption = CouponRedemption {
                code,
                receipt_seq,
                verified,
            };
            // Journaling it also puts it in the store's redemption ledger.
            self.record(at, EventKind::CouponRedeemed(redemption), journal, out);
        }
        for (code, reason) in codes.refused {
            self.refuse(code, reason, at, journal, out);
        }
        let Some(seq) = receipt_seq else {
            if !coupons.would_have.is_empty() || !coupons.issued.is_empty() {
                tracing::error!("coupons of a receipt that was not journaled are not journaled");
            }
            return;
        };
        for mut issue in coupons.would_have {
            issue.receipt_seq = seq;
            self.record(at, EventKind::CouponWouldHave(issue), journal, out);
        }
        if !coupons.issued.is_empty() {
            let printing = PrintingCoupons {
                receipt_seq,
                issued: coupons.issued,
            };
            self.printing.insert(offset, printing);
        }
    }

    /// Answers the proxy's held cut at `offset` (it waits for every cut it holds);
    /// `false` without a gate.
    fn decide(&mut self, offset: u64, block: Option<Vec<u8>>, out: &mut Vec<TillEffect>) -> bool {
        if !self.has_gate {
            return false;
        }
        out.push(TillEffect::Decide { offset, block });
        true
    }

    /// The control-group key of an anonymous basket: unique per receipt.
    fn receipt_key(&self, receipt_no: Option<&str>, journal: &impl TillJournal) -> String {
        let number = match receipt_no {
            Some(no) => no.to_string(),
            None => format!("seq{}", journal.last_seq() + 1),
        };
        format!("{}/{}/{number}", self.store, self.till)
    }

    /// The proxy released a cut: its coupons are journaled only if they were printed
    /// (at `now`, when the proxy said so).
    fn on_cut_released(
        &mut self,
        offset: u64,
        outcome: CutOutcome,
        now: Timestamp,
        journal: &mut impl TillJournal,
        out: &mut Vec<TillEffect>,
    ) {
        let Some(printing) = self.printing.remove(&offset) else {
            return;
        };
        if outcome != CutOutcome::CouponPrinted {
            let why = match outcome {
                CutOutcome::TimedOut => "timed out",
                CutOutcome::Overflow => "too many bytes held",
                CutOutcome::Flushed => "the printer session ended",
                CutOutcome::Declined | CutOutcome::CouponPrinted => "declined",
            };
            tracing::warn!(
                "{} coupon(s) decided but not printed ({why})",
                printing.issued.len()
            );
            return;
        }
        let Some(seq) = printing.receipt_seq else {
            return;
        };
        for mut issue in printing.issued {
            issue.receipt_seq = seq;
            tracing::info!("coupon of campaign {} printed", issue.campaign_id);
            self.record(now, EventKind::CouponIssued(issue), journal, out);
        }
    }

    fn on_coupon_scanned(
        &mut self,
        code: String,
        at: Timestamp,
        now: Timestamp,
        journal: &mut impl TillJournal,
        out: &mut Vec<TillEffect>,
    ) {
        let in_ledger = journal.is_redeemed(&code).unwrap_or_else(|e| {
            // The hub (when reachable) still refuses a code redeemed before.
            tracing::error!("coupons: cannot read the redemption ledger: {e}");
            false
        });
        let context = ScanContext {
            keyring: self.desk.state().map(|s| &s.keyring),
            today: at.local().date_naive(),
            in_ledger,
            hub_reachable: self.online && self.has_uplink,
        };
        match self.scanned.on_scan(&code, context) {
            ScanOutcome::Accepted(verified) => {
                tracing::info!("coupon {code} accepted ({})", verified.as_str());
            }
            ScanOutcome::Refused(reason) => self.refuse(code, reason, at, journal, out),
            ScanOutcome::AskHub => {
                tracing::info!("coupon {code}: asking the hub");
                if !self.ask_hub(HubRequest::CouponCheck { code: code.clone() }, out) {
                    self.on_verdict(code, None, now, journal, out);
                }
            }
            ScanOutcome::Duplicate => tracing::info!("coupon {code} scanned again: counted once"),
        }
    }

    /// The hub's verdict on a waiting code (`None`: no answer), taken at `now`.
    fn on_verdict(
        &mut self,
        code: String,
        verdict: Option<till360_shared::wire::CouponVerdict>,
        now: Timestamp,
        journal: &mut impl TillJournal,
        out: &mut Vec<TillEffect>,
    ) {
        match self.scanned.on_verdict(&code, verdict) {
            Some(VerdictOutcome::Accepted(verified)) => {
                tracing::info!("coupon {code} accepted ({})", verified.as_str());
            }
            Some(VerdictOutcome::Refused(reason)) => self.refuse(code, reason, now, journal, out),
            None => tracing::debug!("verdict on coupon {code} after its receipt: ignored"),
        }
    }

    /// Journals a refused code and tells the cashier with a notice slip (the POS cannot
    /// be told: it is never changed).
    fn refuse(
        &mut self,
        code: String,
        reason: String,
        at: Timestamp,
        journal: &mut impl TillJournal,
        out: &mut Vec<TillEffect>,
    ) {
        tracing::warn!("coupon {code} refused: {reason}");
        if self.has_notices {
            let digits: String = code.chars().filter(char::is_ascii_digit).collect();
            let last4 = &digits[digits.len().saturating_sub(4)..];
            let lines = [self.notice_text.clone(), format!("{reason}  ...{last4}")];
            let notice = notice_block(&lines, self.columns, &PrinterModes::of(&self.parser));
            out.push(TillEffect::Notice(notice));
        }
        self.record(at, EventKind::CouponRefused { code, reason }, journal, out);
    }

    /// Asks the uplink; `false` when there is none to ask.
    fn ask_hub(&mut self, request: HubRequest, out: &mut Vec<TillEffect>) -> bool {
        if !self.has_uplink {
            return false;
        }
        out.push(TillEffect::AskHub(request));
        true
    }

    fn on_hub_news(
        &mut self,
        news: HubNews,
        now: Timestamp,
        journal: &mut impl TillJournal,
        out: &mut Vec<TillEffect>,
    ) {
        match news {
            HubNews::Campaigns(state) => {
                tracing::info!(
                    "coupons: campaign set version {} received",
                    state.set.content_version()
                );
                self.desk.on_campaigns(*state);
            }
            HubNews::Digests { entries, reset } => self.desk.on_digests(entries, reset),
            HubNews::Digest { card, digest } => {
                tracing::info!(
                    "card {}: the hub's digest {}",
                    card.masked(),
                    if digest.is_some() {
                        "arrived"
                    } else {
                        "is none"
                    }
                );
                self.desk.on_digest(&card, digest);
            }
            HubNews::CouponVerdict { code, verdict } => {
                self.on_verdict(code, verdict, now, journal, out);
            }
            HubNews::Online(online) => {
                self.online = online;
                self.scanned.on_link(online);
            }
        }
    }

    /// Journals an event; its seq, or `None` when the journal failed (logged).
    fn record(
        &mut self,
        at: Timestamp,
        kind: EventKind,
        journal: &mut impl TillJournal,
        out: &mut Vec<TillEffect>,
    ) -> Option<u64> {
        let name = kind.name();
        match journal.append(at, kind) {
            Ok(seq) => {
                out.push(TillEffect::Journaled(seq));
                Some(seq)
            }
            // Principle 1: the journal failing never stops printing.
            Err(e) => {
                tracing::error!("{name} event NOT journaled: {e}");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
