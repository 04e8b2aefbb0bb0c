//! Purchase histories: the pure model's input, built from the rows the store reads
//! (`store::traits`: carded till transactions and online orders, lines matched to
//! products).

use std::collections::HashMap;

use chrono::NaiveDate;
use till360_shared::{codec, ReceiptLine, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Store,
    Online,
}

/// One purchase (a till receipt or an online order).
#[derive(Debug, Clone, PartialEq)]
pub struct Purchase {
    pub at: Timestamp,
    pub channel: Channel,
    pub store: Option<String>,
    pub amount_cents: i64,
    /// Spend on discount lines and on lines with a discount line below them.
    pub discounted_cents: i64,
    /// Non-sensitive category → cents spent on it in this purchase.
    pub categories: Vec<(String, i64)>,
}

impl Purchase {
    /// Days since 1970-01-01 of the purchase's local (till) date.
    pub fn local_day(&self) -> i64 {
        local_day(self.at)
    }
}

/// Days since 1970-01-01 of `at`'s local (till) date.
fn local_day(at: Timestamp) -> i64 {
    (at.unix_ms + i64::from(at.offset_min) * 60_000).div_euclid(MS_PER_DAY)
}

/// A personal coupon printed for the customer (control-group coupons are never printed
/// and are not here): the local day it was issued, the last day it is valid and, once
/// redeemed, the local day of its first counting scan (genuine or unchecked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CouponIssue {
    pub issued_day: i64,
    pub expires_day: i64,
    pub redeemed_day: Option<i64>,
}

/// Everything the traits are computed from for one profile.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CustomerHistory {
    pub profile_id: String,
    pub customer_no: Option<String>,
    pub cards: Vec<String>,
    pub purchases: Vec<Purchase>,
    /// The coupons printed for them, in any order.
    pub coupons: Vec<CouponIssue>,
}

/// A consent row as stored (purpose, granted, when it was last set).
#[derive(Debug, Clone, PartialEq)]
pub struct ConsentRow {
    pub purpose: String,
    pub granted: bool,
    pub at_ms: i64,
}

/// What the loader read, in profile id order; `consents[i]` belongs to `histories[i]`.
#[derive(Debug, Default)]
pub struct HubData {
    pub histories: Vec<CustomerHistory>,
    pub consents: Vec<Vec<ConsentRow>>,
    /// Receipts or orders whose stored lines could not be read (counted, not fatal:
    /// the purchase still counts with its total, just without categories).
    pub unreadable_lines: usize,
}

pub const MS_PER_DAY: i64 = 86_400_000;

/// Days since 1970-01-01 of a date.
pub fn day_number(date: NaiveDate) -> i64 {
    date.signed_duration_since(NaiveDate::default()).num_days()
}

/// The date of a day number (the inverse of [`day_number`]); out-of-range days clamp.
pub fn date_of_day(day: i64) -> NaiveDate {
    NaiveDate::default()
        .checked_add_signed(chrono::Duration::days(day))
        .unwrap_or(if day < 0 {
            NaiveDate::MIN
        } else {
            NaiveDate::MAX
        })
}

/// Builds [`HubData`] from the rows the store reads (`store::traits::load_histories`):
/// profiles, then their cards, consents, the product catalogue, receipts and orders.
/// Rows of profiles it was not given are skipped (a profile created meanwhile waits
/// for the next run).
#[derive(Debug, Default)]
pub struct HistoryBuilder {
    data: HubData,
    index: HashMap<String, usize>,
    products: Products,
}

impl HistoryBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    fn of(&self, profile_id: &str) -> Option<usize> {
        self.index.get(profile_id).copied()
    }

    pub fn profile(&mut self, profile_id: String, customer_no: Option<String>) {
        self.index
            .insert(profile_id.clone(), self.data.histories.len());
        self.data.histories.push(CustomerHistory {
            profile_id,
            customer_no,
            ..CustomerHistory::default()
        });
        self.data.consents.push(Vec::new());
    }

    pub fn card(&mut self, profile_id: &str, card: String) {
        if let Some(i) = self.of(profile_id) {
            self.data.histories[i].cards.push(card);
        }
    }

    pub fn consent(&mut self, profile_id: &str, consent: ConsentRow) {
        if let Some(i) = self.of(profile_id) {
            self.data.consents[i].push(consent);
        }
    }

    /// A catalogue product; given in sku order, the first sku with a description names
    /// that description's category.
    pub fn product(&mut self, sku: String, description: &str, category: String, sensitive: bool) {
        self.products.add(sku, description, category, sensitive);
    }

    /// A carded till receipt with its stored lines (`codec` bytes of `ReceiptLine`s).
    pub fn receipt(
        &mut self,
        profile_id: &str,
        store: String,
        at_ms: i64,
        offset_min: i64,
        total_cents: i64,
        lines: &[u8],
    ) {
        let Some(i) = self.of(profile_id) else {
            return;
        };
        let lines = match codec::from_bytes::<Vec<ReceiptLine>>(lines) {
            Ok(lines) => lines
                .into_iter()
                .map(|l| Line {
                    sku: l.sku,
                    description: l.description,
                    amount_cents: l.amount_cents,
                    discount: l.discount,
                    below_list_price: false,
                })
                .collect(),
            Err(_) => {
                self.data.unreadable_lines += 1;
                Vec::new()
            }
        };
        let (discounted_cents, categories) = self.products.classify(&lines);
        self.data.histories[i].purchases.push(Purchase {
            at: Timestamp::from_unix_ms(at_ms, clamp_offset(offset_min)),
            channel: Channel::Store,
            store: Some(store),
            amount_cents: total_cents,
            discounted_cents,
            categories,
        });
    }

    /// An online order with its lines as imported (JSON text, see [`order_lines`]).
    pub fn order(
        &mut self,
        profile_id: &str,
        ordered_at_ms: i64,
        offset_min: i64,
        total_cents: i64,
        lines: &str,
    ) {
        let Some(i) = self.of(profile_id) else {
            return;
        };
        let lines = match order_lines(lines) {
            Some(lines) => lines,
            None => {
                self.data.unreadable_lines += 1;
                Vec::new()
            }
        };
        let (discounted_cents, categories) = self.products.classify(&lines);
        self.data.histories[i].purchases.push(Purchase {
            at: Timestamp::from_unix_ms(ordered_at_ms, clamp_offset(offset_min)),
            channel: Channel::Online,
            store: None,
            amount_cents: total_cents,
            discounted_cents,
            categories,
        });
    }

    /// A coupon printed for the profile at `issued_at_ms` (till offset `offset_min`),
    /// valid through `expires` (`YYYY-MM-DD`; unreadable: the issue day), with the local
    /// wall time (ms) of its first counting redemption, if any.
    pub fn coupon(
        &mut self,
        profile_id: &str,
        issued_at_ms: i64,
        offset_min: i64,
        expires: &str,
        redeemed_local_ms: Option<i64>,
    ) {
        let Some(i) = self.of(profile_id) else {
            return;
        };
        let issued_day = local_day(Timestamp::from_unix_ms(
            issued_at_ms,
            clamp_offset(offset_min),
        ));
        let expires_day = NaiveDate::parse_from_str(expires, "%Y-%m-%d")
            .map_or(issued_day, day_number)
            .max(issued_day);
        self.data.histories[i].coupons.push(CouponIssue {
            issued_day,
            expires_day,
            redeemed_day: redeemed_local_ms.map(|ms| ms.div_euclid(MS_PER_DAY)),
        });
    }

    pub fn finish(self) -> HubData {
        self.data
    }
}

/// The end of `as_of` as local wall time, in ms since the epoch: a purchase is on or
/// before `as_of` (its till's local date) when `at_ms + offset_min * 60000` is below it.
pub fn end_of_local_day_ms(as_of: NaiveDate) -> i64 {
    (day_number(as_of) + 1) * MS_PER_DAY
}

fn clamp_offset(minutes: i64) -> i16 {
    minutes.clamp(-24 * 60, 24 * 60) as i16
}

/// A receipt or order line, reduced to what the traits need.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Line {
    pub sku: Option<String>,
    pub description: String,
    pub amount_cents: i64,
    /// A discount line (attached to the item above it).
    pub discount: bool,
    /// An order line sold below qty × unit price.
    pub below_list_price: bool,
}

/// Order lines as imported: `[{sku, description, qty, unit_cents, amount_cents}]`.
/// A negative amount is a discount on the line above, as on till receipts. `None` if
/// the text is not such an array.
pub(super) fn order_lines(text: &str) -> Option<Vec<Line>> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let items = value.as_array()?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let amount_cents = item.get("amount_cents")?.as_i64()?;
        let qty = item.get("qty").and_then(serde_json::Value::as_f64);
        let unit = item.get("unit_cents").and_then(serde_json::Value::as_f64);
        let below_list_price = match (qty, unit) {
            (Some(q), Some(u)) if q > 0.0 && u > 0.0 => (amount_cents as f64) < q * u - 0.5,
            _ => false,
        };
        out.push(Line {
            sku: item
                .get("sku")
                .and_then(serde_json::Value::as_str)
                .map(str::to_string),
            description: item
                .get("description")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_string(),
            amount_cents,
            discount: amount_cents < 0,
            below_list_price,
        });
    }
    Some(out)
}

/// The product catalogue: category and sensitivity by sku and by lower-cased description.
#[derive(Debug, Default)]
pub(super) struct Products {
    by_sku: HashMap<String, (String, bool)>,
    by_description: HashMap<String, (String, bool)>,
}

impl Products {
    fn add(&mut self, sku: String, description: &str, category: String, sensitive: bool) {
        let entry = (category, sensitive);
        self.by_description
            .entry(description.to_lowercase())
            .or_insert_with(|| entry.clone());
        self.by_sku.insert(sku, entry);
    }

    #[cfg(test)]
    pub(super) fn insert(&mut self, sku: &str, description: &str, category: &str, sensitive: bool) {
        let entry = (category.to_string(), sensitive);
        self.by_description
            .insert(description.to_lowercase(), entry.clone());
        self.by_sku.insert(sku.to_string(), entry);
    }

    /// (category, sensitive) of a line: by sku, else by description.
    fn lookup(&self, line: &Line) -> Option<&(String, bool)> {
        line.sku
            .as_ref()
            .and_then(|sku| self.by_sku.get(sku))
            .or_else(|| self.by_description.get(&line.description.to_lowercase()))
    }

    /// Discounted spend and non-sensitive category spend of a purchase's lines. A
    /// discount line counts towards the item above it (its category, and that item as
    /// discounted).
    pub(super) fn classify(&self, lines: &[Line]) -> (i64, Vec<(String, i64)>) {
        let mut discounted = 0;
        let mut categories: Vec<(String, i64)> = Vec::new();
        let mut item_category: Option<&(String, bool)> = None;
        for (i, line) in lines.iter().enumerate() {
            let discount_below = lines.get(i + 1).is_some_and(|l| l.discount);
            if line.discount || line.below_list_price || discount_below {
                discounted += line.amount_cents;
            }
            let category = if line.discount {
                self.lookup(line).or(item_category)
            } else {
                item_category = self.lookup(line);
                item_category
            };
            if let Some((name, false)) = category {
                match categories.iter_mut().find(|(n, _)| n == name) {
                    Some((_, cents)) => *cents += line.amount_cents,
                    None => categories.push((name.clone(), line.amount_cents)),
                }
            }
        }
        (discounted, categories)
    }
}
