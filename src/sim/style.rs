//! The two receipt layouts the simulated shops print, and their catalogues. The text
//! is what `config/receipts/supermarket.toml` (Dutch, comma decimals) and
//! `config/receipts/boutique.toml` (English, dot decimals, SKUs) read.

use chrono::{NaiveDateTime, Timelike};
use till360_shared::ReceiptLine;

use super::rng::SimRng;

/// Printable columns: an 80 mm printer in font A at 42 columns (a common POS default).
pub const WIDTH: usize = 42;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReceiptStyle {
    Supermarket,
    Boutique,
}

/// How an article was sold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    Pieces(u32),
    /// Weighed goods: grams, price per kg in cents.
    Grams(u32),
}

/// One article in a basket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasketItem {
    pub desc: String,
    pub sku: Option<String>,
    pub quantity: Quantity,
    /// Price per piece, or per kg for weighed goods.
    pub unit_cents: i64,
    /// A discount printed under the item: description and cents (positive).
    pub discount: Option<(String, i64)>,
}

impl BasketItem {
    pub fn amount_cents(&self) -> i64 {
        match self.quantity {
            Quantity::Pieces(n) => i64::from(n) * self.unit_cents,
            // Scales round to the nearest cent.
            Quantity::Grams(g) => (i64::from(g) * self.unit_cents + 500) / 1000,
        }
    }

    /// The receipt lines the agent should read for this item (the item, then its
    /// discount, which inherits the item's SKU).
    pub fn expected_lines(&self) -> Vec<ReceiptLine> {
        let (quantity_milli, unit_cents) = match self.quantity {
            Quantity::Pieces(1) => (1000, None),
            Quantity::Pieces(n) => (i64::from(n) * 1000, Some(self.unit_cents)),
            Quantity::Grams(g) => (i64::from(g), None),
        };
        let mut out = vec![ReceiptLine {
            description: self.desc.clone(),
            sku: self.sku.clone(),
            quantity_milli,
            unit_cents,
            amount_cents: self.amount_cents(),
            discount: false,
        }];
        if let Some((desc, cents)) = &self.discount {
            out.push(ReceiptLine {
                description: desc.clone(),
                sku: self.sku.clone(),
                quantity_milli: 1000,
                unit_cents: None,
                amount_cents: -cents,
                discount: true,
            });
        }
        out
    }
}

/// (description, cents per piece)
const GROCERIES: &[(&str, i64)] = &[
    ("Halfvolle melk 1L", 129),
    ("Roomboter 250g", 239),
    ("Brood volkoren", 249),
    ("Appels Elstar 1kg", 279),
    ("Muesli noten", 329),
    ("Koffie bonen 1kg", 1499),
    ("Yoghurt naturel 1L", 139),
    ("Eieren vrije uitloop 10", 329),
    ("Pasta penne 500g", 119),
    ("Olijfolie extra 0,75L", 799),
    ("Spa rood 6x1,5L", 354),
    ("Sinaasappelsap 1L", 219),
    ("Chocolade puur", 149),
    ("Toiletpapier 8 rol", 429),
    ("Afwasmiddel", 135),
    ("Kipfilet 400g", 599),
    ("Zalmfilet 250g", 649),
    ("Rioja crianza", 899),
    ("Pizza margherita", 249),
    ("Crème fraîche", 99),
    ("Paté de campagne", 279),
    ("Wasmiddel 2L", 999),
    ("Bloemen boeket", 799),
    ("Paracetamol 500mg 20st", 189),
];

/// (description, cents per kg) for goods sold by weight.
const WEIGHED: &[(&str, i64)] = &[
    ("Bananen", 199),
    ("Tomaten los", 349),
    ("Kaas jong belegen", 1290),
    ("Druiven wit", 499),
];

/// (sku, description, cents)
const FASHION: &[(&str, &str, i64)] = &[
    ("100234", "Merino sweater", 8900),
    ("100871", "Silk scarf", 4950),
    ("101202", "Slim jeans", 11900),
    ("101977", "Leather belt", 5900),
    ("102310", "T-shirt organic", 2995),
    ("102455", "Summer dress", 13900),
    ("103001", "Knit beanie", 2450),
    ("103118", "Socks bamboo", 750),
    ("104560", "Wool coat", 124900),
    ("104777", "Linen blouse", 6900),
    ("105012", "Sneaker white", 9900),
    ("105230", "Suède handbag", 17900),
];

/// Cents in the style's notation: `1234` → `12,34` (comma) or `12.34` (dot).
pub fn format_amount(cents: i64, decimal: char) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}{decimal}{:02}", abs / 100, abs % 100)
}

/// Left text and right text on one line of `WIDTH` columns, at least two spaces apart
/// (the layouts split description and amount on a run of spaces). A line too long for
/// the paper is sent whole: the printer wraps it, the text stream keeps it as one line.
fn columns(left: &str, right: &str) -> String {
    let pad = WIDTH
        .saturating_sub(left.chars().count() + right.chars().count())
        .max(2);
    format!("{left}{}{right}", " ".repeat(pad))
}

impl ReceiptStyle {
    /// The layout file name under `config/receipts/`.
    pub fn layout_name(self) -> &'static str {
        match self {
            ReceiptStyle::Supermarket => "supermarket",
            ReceiptStyle::Boutique => "boutique",
        }
    }

    pub fn decimal(self) -> char {
        match self {
            ReceiptStyle::Supermarket => ',',
            ReceiptStyle::Boutique => '.',
        }
    }

    fn amount(self, cents: i64) -> String {
        format_amount(cents, self.decimal())
    }

    pub fn shop_name(self) -> &'static str {
        match self {
            ReceiptStyle::Supermarket => "VERSMARKT",
            ReceiptStyle::Boutique => "MAISON LINA",
        }
    }

    pub fn header_lines(self, store: &str) -> Vec<String> {
        match self {
            ReceiptStyle::Supermarket => vec![
                format!("Filiaal {store}"),
                "Dorpsstraat 12, 1012 AB Amsterdam".into(),
                "Tel. 020-1234567".into(),
            ],
            ReceiptStyle::Boutique => vec![
                "Fashion & accessories".into(),
                format!("Store {store} - 5 Rue Royale, Paris"),
            ],
        }
    }

    /// The receipt number as printed (the layouts constrain its characters).
    pub fn receipt_no(self, store: &str, n: u64) -> String {
        let digits: String = store.chars().filter(char::is_ascii_digit).collect();
        match self {
            ReceiptStyle::Supermarket => format!("{digits:0>4}-{n:06}"),
            ReceiptStyle::Boutique => format!("{}-{n:05}", store.to_ascii_uppercase()),
        }
    }

    pub fn receipt_no_line(self, no: &str) -> String {
        match self {
            ReceiptStyle::Supermarket => format!("Bon {no}"),
            ReceiptStyle::Boutique => format!("Receipt #{no}"),
        }
    }

    /// The printed time at the layout's precision (the supermarket prints minutes).
    pub fn printed_time(self, at: NaiveDateTime) -> NaiveDateTime {
        match self {
            ReceiptStyle::Supermarket => at.with_second(0).unwrap_or(at),
            ReceiptStyle::Boutique => at,
        }
    }

    pub fn timestamp_line(self, at: NaiveDateTime) -> String {
        match self {
            ReceiptStyle::Supermarket => at.format("%d-%m-%Y %H:%M").to_string(),
            ReceiptStyle::Boutique => at.format("%Y-%m-%dT%H:%M:%S").to_string(),
        }
    }

    /// The lines printed for one item: a quantity line if the layout has one, the item,
    /// its discount.
    pub fn item_lines(self, item: &BasketItem) -> Vec<String> {
        let mut out = Vec::new();
        let amount = self.amount(item.amount_cents());
        match self {
            ReceiptStyle::Supermarket => {
                match item.quantity {
                    Quantity::Pieces(1) => out.push(columns(&item.desc, &format!("{amount} A"))),
                    Quantity::Pieces(n) => {
                        out.push(format!("  {n} x {}", self.amount(item.unit_cents)));
                        out.push(columns(&item.desc, &format!("{amount} A")));
                    }
                    Quantity::Grams(g) => {
                        let weight = format!("{},{:03} kg", g / 1000, g % 1000);
                        out.push(columns(&format!("{} {weight}", item.desc), &amount));
                    }
                }
                if let Some((desc, cents)) = &item.discount {
                    out.push(columns(&format!("  {desc}"), &self.amount(-cents)));
                }
            }
            ReceiptStyle::Boutique => {
                let sku = item.sku.as_deref().unwrap_or("000000");
                let left = match item.quantity {
                    Quantity::Pieces(n) if n > 1 => format!(
                        "SKU {sku} {} {n} @ {}",
                        item.desc,
                        self.amount(item.unit_cents)
                    ),
                    _ => format!("SKU {sku}  {}", item.desc),
                };
                out.push(columns(&left, &amount));
                if let Some((desc, cents)) = &item.discount {
                    out.push(columns(&format!("  {desc}"), &self.amount(-cents)));
                }
            }
        }
        out
    }

    pub fn total_line(self, cents: i64) -> String {
        match self {
            ReceiptStyle::Supermarket => columns("TOTAAL", &self.amount(cents)),
            ReceiptStyle::Boutique => format!("Total EUR {}", self.amount(cents)),
        }
    }

    pub fn card_line(self, last4: &str) -> String {
        match self {
            ReceiptStyle::Supermarket => format!("Klantenkaart ****{last4}"),
            ReceiptStyle::Boutique => format!("Member card ************{last4}"),
        }
    }

    /// Lines after the total: VAT with a € sign (CP858 0xD5) and the payment.
    pub fn footer_lines(self, total_cents: i64) -> Vec<String> {
        let vat = (total_cents * 21 + 60) / 121;
        match self {
            ReceiptStyle::Supermarket => vec![
                columns("BTW 21%", &format!("€ {}", self.amount(vat))),
                columns("PIN", &self.amount(total_cents)),
                "Bedankt voor uw bezoek!".into(),
            ],
            ReceiptStyle::Boutique => vec![
                columns("Incl. VAT 20%", &format!("€{}", self.amount(vat))),
                columns("Card", &self.amount(total_cents)),
                "Thank you & à bientôt!".into(),
            ],
        }
    }

    /// Every article this shop can print: (sku if printed, description, cents per
    /// piece or per kg). The demo's product catalogue is checked against it.
    pub fn articles(self) -> Vec<(Option<&'static str>, &'static str, i64)> {
        match self {
            ReceiptStyle::Supermarket => GROCERIES
                .iter()
                .chain(WEIGHED)
                .map(|&(desc, cents)| (None, desc, cents))
                .collect(),
            ReceiptStyle::Boutique => FASHION
                .iter()
                .map(|&(sku, desc, cents)| (Some(sku), desc, cents))
                .collect(),
        }
    }

    /// A random basket from this shop's catalogue.
    pub fn basket(self, rng: &mut SimRng) -> Vec<BasketItem> {
        match self {
            ReceiptStyle::Supermarket => {
                let n = rng.range(1, 12);
                (0..n)
                    .map(|_| {
                        let (desc, unit_cents, quantity) = if rng.chance(15) {
                            let (desc, per_kg) = *rng.pick(WEIGHED);
                            (desc, per_kg, Quantity::Grams(rng.range(150, 1800) as u32))
                        } else {
                            let (desc, unit) = *rng.pick(GROCERIES);
                            let n = if rng.chance(20) { rng.range(2, 4) } else { 1 };
                            (desc, unit, Quantity::Pieces(n as u32))
                        };
                        let mut item = BasketItem {
                            desc: desc.to_string(),
                            sku: None,
                            quantity,
                            unit_cents,
                            discount: None,
                        };
                        if rng.chance(12) {
                            let off = (item.amount_cents() * 25 + 50) / 100;
                            item.discount = Some(("Korting 25%".to_string(), off));
                        }
                        item
                    })
                    .collect()
            }
            ReceiptStyle::Boutique => {
                let n = rng.range(1, 3);
                (0..n)
                    .map(|_| {
                        let (sku, desc, unit) = *rng.pick(FASHION);
                        let n = if rng.chance(15) { rng.range(2, 3) } else { 1 };
                        let mut item = BasketItem {
                            desc: desc.to_string(),
                            sku: Some(sku.to_string()),
                            quantity: Quantity::Pieces(n as u32),
                            unit_cents: unit,
                            discount: None,
                        };
                        if rng.chance(15) {
                            let off = (item.amount_cents() * 10 + 50) / 100;
                            item.discount = Some(("Member discount 10%".to_string(), off));
                        }
                        item
                    })
                    .collect()
            }
        }
    }
}
