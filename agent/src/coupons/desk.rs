//! The coupon desk (pure): from "receipt + card + held digest cache + campaign state +
//! now" to "blocks to print, events to journal".
//!
//! The desk holds what the hub pushed (campaign set, keyring, catalog) and the digest
//! cache, keyed by the pseudonymous [`CardKey`] (the card number is never a key here).
//! At a cut, [`CouponDesk::decide_at_cut`] builds the basket from the receipt lines
//! (catalog category and sensitive flag per line), runs [`decide`], mints a code for each
//! offer to print and renders the coupon blocks. Serials come from the caller (the
//! journal counts them), so the desk itself stays free of IO.

use std::collections::HashMap;

use chrono::NaiveDate;
use till360_shared::campaign::{decide, BasketLine, CatalogItem, DecisionInput, Digest, Reason};
use till360_shared::coupon::{mint, CardKey, CouponFields};
use till360_shared::event::CouponIssue;
use till360_shared::wire::DigestEntry;
use till360_shared::{CardNumber, Receipt, Timestamp};

use crate::escpos::encode::{coupon_block, PrintedCoupon, PrinterModes};
use crate::hub_link::CampaignState;

/// Default characters per line (80 mm paper).
pub const DEFAULT_COLUMNS: usize = 48;
/// Default text before the expiry date.
pub const DEFAULT_EXPIRY_LABEL: &str = "Geldig t/m";

/// An offer the decision issued that is not printed, and why (logged by the desk too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotPrinted {
    pub campaign_id: String,
    pub reason: String,
}

/// What the desk decided at one cut.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CutCoupons {
    /// Print this right before the cut (several coupons: one block after the other).
    pub block: Option<Vec<u8>>,
    /// The coupons in `block`; `receipt_seq` is 0 until the receipt is journaled.
    pub issued: Vec<CouponIssue>,
    /// Control group: journal these (`code` is `None`), print nothing.
    pub would_have: Vec<CouponIssue>,
    /// Campaigns that gave nothing on this receipt, with the reason.
    pub skipped: Vec<(String, Reason)>,
    /// Offers decided but not printed (no campaign number, serial or block error).
    pub not_printed: Vec<NotPrinted>,
}

/// The till's coupon state: campaigns, keyring, catalog and digest cache.
#[derive(Debug, Clone)]
pub struct CouponDesk {
    state: Option<CampaignState>,
    /// Catalog index into `state.catalog`, by sku and by lowercased description.
    by_sku: HashMap<String, usize>,
    by_description: HashMap<String, usize>,
    digests: HashMap<CardKey, Digest>,
    columns: usize,
    expiry_label: String,
}

impl Default for CouponDesk {
    fn default() -> Self {
        Self::new(DEFAULT_COLUMNS, DEFAULT_EXPIRY_LABEL)
    }
}

impl CouponDesk {
    /// `columns`: characters per printed line; `expiry_label`: put before the date.
    pub fn new(columns: usize, expiry_label: impl Into<String>) -> Self {
        Self {
            state: None,
            by_sku: HashMap::new(),
            by_description: HashMap::new(),
            digests: HashMap::new(),
            columns,
            expiry_label: expiry_label.into(),
        }
    }

    /// The campaign state held, if the hub sent one.
    pub fn state(&self) -> Option<&CampaignState> {
        self.state.as_ref()
    }

    /// Digests in the cache.
    pub fn digest_count(&self) -> usize {
        self.digests.len()
    }

    /// A new campaign set, keyring and catalog (replaces the old one).
    pub fn on_campaigns(&mut self, state: CampaignState) {
        self.by_sku.clear();
        self.by_description.clear();
        // First entry wins on duplicates, as a lookup in the list would.
        for (i, item) in state.catalog.iter().enumerate() {
            if !item.sku.is_empty() {
                self.by_sku.entry(item.sku.clone()).or_insert(i);
            }
            let description = normalise(&item.description);
            if !description.is_empty() {
                self.by_description.entry(description).or_insert(i);
            }
        }
        self.state = Some(state);
    }

    /// Digest changes from the hub (`reset`: the cache is emptied first); an entry
    /// without a digest removes the card.
    pub fn on_digests(&mut self, entries: Vec<DigestEntry>, reset: bool) {
        if reset {
            self.digests.clear();
        }
        for entry in entries {
            match entry.digest {
                Some(digest) => {
                    self.digests.insert(entry.card_key, digest);
                }
                None => {
                    self.digests.remove(&entry.card_key);
                }
            }
        }
    }

    /// Digests loaded from the journal at start.
    pub fn load_digests(&mut self, digests: impl IntoIterator<Item = (CardKey, Digest)>) {
        self.digests.extend(digests);
    }

    /// The hub's answer for one scanned card (`None`: no such customer). Without a
    /// keyring the card cannot be keyed, so the answer is dropped.
    pub fn on_digest(&mut self, card: &CardNumber, digest: Option<Digest>) {
        let Some(state) = &self.state else {
            return;
        };
        let key = state.keyring.card_key(card);
        match digest {
            Some(digest) => {
                self.digests.insert(key, digest);
            }
            None => {
                self.digests.remove(&key);
            }
        }
    }

    /// The cached digest of `card`, if any.
    pub fn digest_of(&self, card: &CardNumber) -> Option<&Digest> {
        let state = self.state.as_ref()?;
        self.digests.get(&state.keyring.card_key(card))
    }

    /// The receipt's basket as triggers see it: each line matched to a catalog item by
    /// sku, else by description (case-insensitive); a discount line takes the category
    /// and sensitivity of the item above it.
    pub fn basket(&self, receipt: &Receipt) -> Vec<BasketLine> {
        let catalog: &[CatalogItem] = self.state.as_ref().map_or(&[], |s| &s.catalog);
        let mut previous: Option<&CatalogItem> = None;
        receipt
            .lines
            .iter()
            .map(|line| {
                let item = if line.discount {
                    previous
                } else {
                    line.sku
                        .as_ref()
                        .and_then(|sku| self.by_sku.get(sku))
                        .or_else(|| self.by_description.get(&normalise(&line.description)))
                        .and_then(|&i| catalog.get(i))
                };
                previous = item;
                BasketLine {
                    amount_cents: line.amount_cents,
                    discount: line.discount,
                    category: item.map(|i| i.category.clone()),
                    sensitive: item.is_some_and(|i| i.sensitive),
                }
            })
            .collect()
    }

    /// Decides the coupons for `receipt` at its cut. Without a campaign state: nothing.
    /// `serial(campaign_number, expires)` hands out the next serial for a code; when it
    /// fails, that coupon is not printed. `receipt_key` is the control-group key of an
    /// anonymous basket (unique per receipt).
    #[allow(clippy::too_many_arguments)] // each one is a distinct input of the decision
    pub fn decide_at_cut<E: std::fmt::Display>(
        &self,
        receipt: &Receipt,
        receipt_key: &str,
        store: &str,
        offline: bool,
        modes: PrinterModes,
        now: Timestamp,
        mut serial: impl FnMut(u16, NaiveDate) -> Result<u16, E>,
    ) -> CutCoupons {
        let Some(state) = &self.state else {
            return CutCoupons::default();
        };
        let digest = receipt.card.as_ref().and_then(|card| self.digest_of(card));
        let customer_key = digest.map(|d| d.customer_key.clone());
        let input = DecisionInput {
            store: store.to_string(),
            basket: self.basket(receipt),
            digest: digest.cloned(),
            offline,
            receipt_key: receipt_key.to_string(),
        };
        let decision = decide(&input, &state.set, now);

        let issue = |campaign_id: &str, code: Option<String>, expires| CouponIssue {
            campaign_id: campaign_id.to_string(),
            code,
            card: receipt.card.clone(),
            customer_key: customer_key.clone(),
            expires,
            receipt_seq: 0,
        };
        let mut out = CutCoupons {
            would_have: decision
                .would_have
                .iter()
                .map(|offer| issue(&offer.campaign_id, None, offer.expires))
                .collect(),
            skipped: decision.skipped,
            ..CutCoupons::default()
        };
        let mut block = Vec::new();
        for offer in &decision.issue {
            let mut not_printed = |reason: String| {
                tracing::warn!(
                    "coupon of campaign {} decided but not printed: {reason}",
                    offer.campaign_id
                );
                out.not_printed.push(NotPrinted {
                    campaign_id: offer.campaign_id.clone(),
                    reason,
                });
            };
            let Some(number) = state.keyring.campaign_number(&offer.campaign_id) else {
                not_printed("the keyring has no number for this campaign".into());
                continue;
            };
            let serial = match serial(number, offer.expires) {
                Ok(serial) => serial,
                Err(e) => {
                    not_printed(format!("no serial: {e}"));
                    continue;
                }
            };
            let fields =
                match CouponFields::new(number, state.keyring.till_number, offer.expires, serial) {
                    Ok(fields) => fields,
                    Err(e) => {
                        not_printed(e.to_string());
                        continue;
                    }
                };
            let code = mint(&state.keyring.till_key(), &fields);
            let headline = state
                .set
                .get(&offer.campaign_id)
                .map_or_else(|| offer.campaign_id.clone(), |c| c.name.clone());
            let printed = PrintedCoupon {
                headline,
                offer: offer.text.clone(),
                expiry_label: self.expiry_label.clone(),
                expires: offer.expires,
                code: code.as_str().to_string(),
                columns: self.columns,
            };
            match coupon_block(&printed, &modes) {
                Ok(bytes) => {
                    block.extend_from_slice(&bytes);
                    out.issued.push(issue(
                        &offer.campaign_id,
                        Some(code.as_str().to_string()),
                        offer.expires,
                    ));
                }
                Err(e) => not_printed(format!("coupon block: {e}")),
            }
        }
        if !block.is_empty() {
            out.block = Some(block);
        }
        out
    }
}

/// Descriptions compare case-insensitively and without surrounding spaces.
fn normalise(description: &str) -> String {
    description.trim().to_lowercase()
}
