//! Behaviour traits: favourite categories, sale share, channel mix, stores visited.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::history::{Channel, Purchase};

/// At least this share of spend on discounted lines makes a sale hunter.
pub const SALE_HUNTER_SHARE: f64 = 0.5;
/// At most this share makes a new-collection buyer.
pub const NEW_COLLECTION_SHARE: f64 = 0.1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    SaleHunter,
    NewCollectionBuyer,
}

impl Label {
    pub fn name(self) -> &'static str {
        match self {
            Self::SaleHunter => "sale_hunter",
            Self::NewCollectionBuyer => "new_collection_buyer",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Behaviour {
    /// Top 3 non-sensitive categories by spend (ties by name).
    pub favourite_categories: Vec<String>,
    /// Every non-sensitive category bought, sorted.
    pub categories: Vec<String>,
    /// Every store visited, sorted.
    pub stores: Vec<String>,
    /// Discounted spend / spend; `None` when the spend is not positive.
    pub sale_share: Option<f64>,
    pub label: Option<Label>,
    /// Shares of purchases (by count, so zero-spend purchases still count).
    pub store_share: f64,
    pub online_share: f64,
}

pub fn behaviour<'a>(purchases: impl IntoIterator<Item = &'a Purchase>) -> Behaviour {
    let mut by_category: BTreeMap<&str, i64> = BTreeMap::new();
    let mut stores: BTreeSet<&str> = BTreeSet::new();
    let (mut spend, mut discounted, mut count, mut online) = (0i64, 0i64, 0u32, 0u32);
    for p in purchases {
        count += 1;
        if p.channel == Channel::Online {
            online += 1;
        }
        spend += p.amount_cents;
        discounted += p.discounted_cents.clamp(0, p.amount_cents.max(0));
        if let Some(s) = &p.store {
            stores.insert(s);
        }
        for (name, cents) in &p.categories {
            *by_category.entry(name).or_default() += cents;
        }
    }
    let mut ranked: Vec<(&str, i64)> = by_category
        .iter()
        .filter(|(_, cents)| **cents > 0)
        .map(|(n, c)| (*n, *c))
        .collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let sale_share = (spend > 0).then(|| (discounted as f64 / spend as f64).clamp(0.0, 1.0));
    let label = sale_share.and_then(|s| {
        if s >= SALE_HUNTER_SHARE {
            Some(Label::SaleHunter)
        } else if s <= NEW_COLLECTION_SHARE {
            Some(Label::NewCollectionBuyer)
        } else {
            None
        }
    });
    let share = |n: u32| {
        if count == 0 {
            0.0
        } else {
            f64::from(n) / f64::from(count)
        }
    };
    Behaviour {
        favourite_categories: ranked.iter().take(3).map(|(n, _)| n.to_string()).collect(),
        categories: by_category.keys().map(|n| n.to_string()).collect(),
        stores: stores.into_iter().map(str::to_string).collect(),
        sale_share,
        label,
        store_share: share(count - online),
        online_share: share(online),
    }
}
