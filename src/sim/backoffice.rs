//! The back office that goes with a simulated morning: the CRM's customer file, the
//! product catalogue and a few online orders, written in the hub's import formats
//! (`till360-hub import customers|products|orders`, see `hub/tests/data`).
//!
//! Deterministic by seed and by the day the files are dated from: the tills stamp
//! receipts with the real clock, so member dates and online orders are placed before
//! `today` to sit in the same history as the morning's receipts.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;

use chrono::{Datelike, Days, NaiveDate};
use till360_shared::card::with_check_digit;

use super::morning::Morning;
use super::rng::SimRng;
use super::scanner::card_number;
use super::style::ReceiptStyle;

/// The busiest cards of the morning are always in the CRM and shop online too, so the
/// demo's first profiles show every source.
pub const SHOWCASE: usize = 5;
/// Percent of the other carded customers the CRM knows (the rest signed up at the till
/// and are not registered yet).
const CRM_PERCENT: u64 = 85;
/// Percent of CRM customers with a replaced (older) card still on file.
const OLD_CARD_PERCENT: u64 = 10;
/// Percent of the other CRM customers who ordered online.
const ONLINE_PERCENT: u64 = 20;
/// Online orders use CET, like the stores.
const ORDER_OFFSET: &str = "+01:00";

/// Category per article the simulated tills print; `SENSITIVE` ones are never used
/// for targeting (the hub leaves them out of categories and segments).
const CATEGORIES: &[(&str, &str)] = &[
    ("Halfvolle melk 1L", "dairy"),
    ("Roomboter 250g", "dairy"),
    ("Yoghurt naturel 1L", "dairy"),
    ("Eieren vrije uitloop 10", "dairy"),
    ("Crème fraîche", "dairy"),
    ("Kaas jong belegen", "cheese"),
    ("Brood volkoren", "bakery"),
    ("Appels Elstar 1kg", "produce"),
    ("Bananen", "produce"),
    ("Tomaten los", "produce"),
    ("Druiven wit", "produce"),
    ("Muesli noten", "breakfast"),
    ("Koffie bonen 1kg", "coffee"),
    ("Pasta penne 500g", "pantry"),
    ("Olijfolie extra 0,75L", "pantry"),
    ("Spa rood 6x1,5L", "drinks"),
    ("Sinaasappelsap 1L", "drinks"),
    ("Chocolade puur", "sweets"),
    ("Toiletpapier 8 rol", "household"),
    ("Afwasmiddel", "household"),
    ("Wasmiddel 2L", "household"),
    ("Kipfilet 400g", "meat"),
    ("Zalmfilet 250g", "fish"),
    ("Rioja crianza", "wine"),
    ("Pizza margherita", "frozen"),
    ("Paté de campagne", "deli"),
    ("Bloemen boeket", "flowers"),
    ("Paracetamol 500mg 20st", "pharmacy"),
    ("Merino sweater", "clothing"),
    ("Slim jeans", "clothing"),
    ("T-shirt organic", "clothing"),
    ("Summer dress", "clothing"),
    ("Socks bamboo", "clothing"),
    ("Wool coat", "clothing"),
    ("Linen blouse", "clothing"),
    ("Silk scarf", "accessories"),
    ("Leather belt", "accessories"),
    ("Knit beanie", "accessories"),
    ("Sneaker white", "shoes"),
    ("Suède handbag", "bags"),
];

const SENSITIVE: &[&str] = &["pharmacy"];

const FIRST_NAMES: &[&str] = &[
    "Anna", "Daan", "Sophie", "Lucas", "Emma", "Sem", "Julia", "Milan", "Tess", "Levi", "Sara",
    "Bram", "Noor", "Finn", "Lotte", "Jesse", "Fleur", "Thijs", "Eva", "Ruben", "Lisa", "Niels",
    "Sanne", "Joost", "Iris", "Pieter", "Maud", "Wouter", "Femke", "Gijs", "Anouk", "Koen",
    "Marieke", "Hendrik", "Ingrid", "Willem", "Els", "Jan", "Ria", "Kees",
];

const LAST_NAMES: &[&str] = &[
    "de Jong",
    "Jansen",
    "de Vries",
    "van den Berg",
    "van Dijk",
    "Bakker",
    "Janssen",
    "Visser",
    "Smit",
    "Meijer",
    "de Boer",
    "Mulder",
    "de Groot",
    "Bos",
    "Vos",
    "Peters",
    "Hendriks",
    "van Leeuwen",
    "Dekker",
    "Brouwer",
    "de Wit",
    "Dijkstra",
    "Smits",
    "de Graaf",
    "van der Meer",
    "van der Linden",
    "Kok",
    "Jacobs",
    "de Haan",
    "Vermeulen",
    "van den Heuvel",
    "van der Veen",
    "van den Broek",
    "Schouten",
    "Willems",
];

const EMAIL_DOMAINS: &[&str] = &["example.nl", "example.com", "mail.example.nl"];
/// Letters Dutch postcodes use (no F, I, O, Q, U, Y).
const POSTCODE_LETTERS: &[u8] = b"ABCDEGHJKLMNPRSTVWXZ";

/// One product of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    /// The SKU the boutique prints, or an EAN-13 for supermarket articles (whose
    /// receipts carry only the description, which the hub matches instead).
    pub sku: String,
    pub description: String,
    pub category: &'static str,
    pub sensitive: bool,
    /// Price per piece, or per kg for weighed goods.
    pub cents: i64,
    pub weighed: bool,
}

/// The consents a customer gave the CRM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Consents {
    pub email: bool,
    pub sms: bool,
    pub post: bool,
    pub personalization: bool,
}

/// One CRM customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrmCustomer {
    pub customer_no: String,
    pub first_name: &'static str,
    pub last_name: &'static str,
    pub email: String,
    pub phone: Option<String>,
    pub birth_date: Option<NaiveDate>,
    pub postal_code: String,
    pub member_since: NaiveDate,
    /// The card used this morning first, then a replaced one if any.
    pub cards: Vec<String>,
    pub language: &'static str,
    pub consents: Consents,
}

/// One online order line: an index into the catalogue and a quantity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    pub product: usize,
    pub qty: u32,
}

/// One online order, naming its customer by e-mail only (as a web shop does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnlineOrder {
    pub order_id: String,
    pub email: String,
    pub date: NaiveDate,
    /// Local time of day, `HH:MM`.
    pub time: String,
    pub channel: &'static str,
    pub lines: Vec<OrderLine>,
}

/// Customers, catalogue and orders for one morning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackOffice {
    pub customers: Vec<CrmCustomer>,
    pub catalogue: Vec<Product>,
    pub orders: Vec<OnlineOrder>,
}

/// The category of an article, and whether it is sensitive.
pub fn category_of(description: &str) -> Option<(&'static str, bool)> {
    CATEGORIES
        .iter()
        .find(|(d, _)| *d == description)
        .map(|&(_, c)| (c, SENSITIVE.contains(&c)))
}

/// Every article both simulated shops can print, with its category. Articles without
/// a category are left out (the unit tests make sure there are none).
pub fn catalogue() -> Vec<Product> {
    let mut out = Vec::new();
    for style in [ReceiptStyle::Supermarket, ReceiptStyle::Boutique] {
        for (i, (sku, description, cents)) in style.articles().into_iter().enumerate() {
            let Some((category, sensitive)) = category_of(description) else {
                continue;
            };
            let sku = match sku {
                Some(sku) => sku.to_string(),
                // 871 is the Dutch GS1 prefix; digits always get a check digit.
                None => with_check_digit(&format!("871000{:06}", i + 1))
                    .unwrap_or_else(|_| format!("P{:04}", i + 1)),
            };
            out.push(Product {
                sku,
                description: description.to_string(),
                category,
                sensitive,
                cents,
                weighed: style == ReceiptStyle::Supermarket && is_weighed(description),
            });
        }
    }
    out
}

/// Weighed goods are priced per kg and never ordered online by the piece.
fn is_weighed(description: &str) -> bool {
    matches!(
        description,
        "Bananen" | "Tomaten los" | "Kaas jong belegen" | "Druiven wit"
    )
}

impl BackOffice {
    /// The back office for `morning`: most of its cards registered in the CRM (always
    /// the [`SHOWCASE`] busiest), dates before `today`.
    pub fn generate(morning: &Morning, seed: u64, today: NaiveDate) -> BackOffice {
        // Its own stream, so the back office never shifts the morning's numbers.
        let mut rng = SimRng::new(seed ^ 0xB0FF_1CE0_C12A_0001);
        let expected = morning.expected_by_card();
        let mut busiest: Vec<(&String, u64)> = expected.iter().map(|(c, e)| (c, e.count)).collect();
        busiest.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let showcase: BTreeSet<&String> = busiest.iter().take(SHOWCASE).map(|b| b.0).collect();

        let mut used_cards: HashSet<String> = expected.keys().cloned().collect();
        let mut emails = HashSet::new();
        let mut phones = HashSet::new();
        let mut customers = Vec::new();
        let mut shows = Vec::new();
        for card in expected.keys() {
            let shown = showcase.contains(card);
            if !shown && !rng.chance(CRM_PERCENT) {
                continue;
            }
            let no = customers.len() + 1;
            let mut cards = vec![card.clone()];
            if rng.chance(OLD_CARD_PERCENT) {
                // Old cards sit above the morning's card numbers, so they have no receipts.
                let old = card_number(90_000_000 + rng.below(9_999_999));
                if used_cards.insert(old.clone()) {
                    cards.push(old);
                }
            }
            customers.push(person(&mut rng, no, cards, today, &mut emails, &mut phones));
            shows.push(shown);
        }

        let catalogue = catalogue();
        let orderable: Vec<usize> = (0..catalogue.len())
            .filter(|&i| !catalogue[i].weighed)
            .collect();
        let mut orders = Vec::new();
        for (customer, shown) in customers.iter().zip(shows) {
            let count = if shown {
                rng.range(2, 3)
            } else if rng.chance(ONLINE_PERCENT) {
                rng.range(1, 2)
            } else {
                continue;
            };
            // Distinct past days, so each order is a purchase day of its own.
            let mut days = BTreeSet::new();
            while days.len() < count as usize {
                days.insert(rng.range(3, 150));
            }
            for days_ago in days.into_iter().rev() {
                let date = today.checked_sub_days(Days::new(days_ago)).unwrap_or(today);
                let n_lines = rng.range(1, 3);
                let mut lines: Vec<OrderLine> = Vec::new();
                for _ in 0..n_lines {
                    let product = *rng.pick(&orderable);
                    match lines.iter_mut().find(|l| l.product == product) {
                        Some(line) => line.qty += 1,
                        None => lines.push(OrderLine { product, qty: 1 }),
                    }
                }
                orders.push(OnlineOrder {
                    order_id: format!("W-{}", 10_001 + orders.len()),
                    email: customer.email.clone(),
                    date,
                    time: format!("{:02}:{:02}", rng.range(7, 22), rng.below(60)),
                    channel: if rng.chance(65) { "web" } else { "app" },
                    lines,
                });
            }
        }
        BackOffice {
            customers,
            catalogue,
            orders,
        }
    }

    /// `customers.csv` for `import customers`.
    pub fn customers_csv(&self) -> String {
        let mut out = String::from(
            "customer_no,first_name,last_name,email,phone,birth_date,postal_code,member_since,\
             cards,language,consent_email,consent_sms,consent_post,consent_personalization\n",
        );
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        for c in &self.customers {
            let birth = c.birth_date.map(|d| d.to_string()).unwrap_or_default();
            let fields = [
                c.customer_no.as_str(),
                c.first_name,
                c.last_name,
                &c.email,
                c.phone.as_deref().unwrap_or(""),
                &birth,
                &c.postal_code,
                &c.member_since.to_string(),
                &c.cards.join(";"),
                c.language,
                yes_no(c.consents.email),
                yes_no(c.consents.sms),
                yes_no(c.consents.post),
                yes_no(c.consents.personalization),
            ];
            csv_row(&mut out, &fields);
        }
        out
    }

    /// `products.csv` for `import products`.
    pub fn products_csv(&self) -> String {
        let mut out = String::from("sku,description,category,sensitive\n");
        for p in &self.catalogue {
            let sensitive = if p.sensitive { "yes" } else { "no" };
            csv_row(&mut out, &[&p.sku, &p.description, p.category, sensitive]);
        }
        out
    }

    /// `orders.jsonl` for `import orders`: one JSON object per line.
    pub fn orders_jsonl(&self) -> String {
        let mut out = String::new();
        for o in &self.orders {
            let mut total = 0i64;
            let lines: Vec<serde_json::Value> = o
                .lines
                .iter()
                .filter_map(|l| {
                    let p = self.catalogue.get(l.product)?;
                    let amount = p.cents * i64::from(l.qty);
                    total += amount;
                    Some(serde_json::json!({
                        "sku": p.sku,
                        "description": p.description,
                        "qty": l.qty,
                        "unit_cents": p.cents,
                        "amount_cents": amount,
                    }))
                })
                .collect();
            let order = serde_json::json!({
                "order_id": o.order_id,
                "email": o.email,
                "ordered_at": format!("{}T{}:00{ORDER_OFFSET}", o.date, o.time),
                "channel": o.channel,
                "lines": lines,
                "total_cents": total,
                "currency": "EUR",
            });
            let _ = writeln!(out, "{order}");
        }
        out
    }

    /// Customers per card (each card is on exactly one customer).
    pub fn customer_by_card(&self) -> BTreeMap<&str, &CrmCustomer> {
        self.customers
            .iter()
            .flat_map(|c| c.cards.iter().map(move |card| (card.as_str(), c)))
            .collect()
    }
}

/// A plausible Dutch customer with unique e-mail and phone.
fn person(
    rng: &mut SimRng,
    no: usize,
    cards: Vec<String>,
    today: NaiveDate,
    emails: &mut HashSet<String>,
    phones: &mut HashSet<u64>,
) -> CrmCustomer {
    let first_name = *rng.pick(FIRST_NAMES);
    let last_name = *rng.pick(LAST_NAMES);
    let local = format!(
        "{}.{}",
        first_name.to_ascii_lowercase(),
        last_name.replace(' ', "").to_ascii_lowercase()
    );
    let domain = *rng.pick(EMAIL_DOMAINS);
    let mut email = format!("{local}@{domain}");
    let mut n = 2;
    while !emails.insert(email.clone()) {
        email = format!("{local}{n}@{domain}");
        n += 1;
    }
    let phone = rng.chance(80).then(|| loop {
        let digits = rng.range(10_000_000, 99_999_999);
        if phones.insert(digits) {
            // Written as people write it; the hub normalises to +316…
            break if rng.chance(70) {
                format!("06 {:04} {:04}", digits / 10_000, digits % 10_000)
            } else {
                format!("+31 6 {digits}")
            };
        }
    });
    let birth_date = rng.chance(90).then(|| {
        let year = today.year() - rng.range(18, 82) as i32;
        NaiveDate::from_ymd_opt(year, rng.range(1, 12) as u32, rng.range(1, 28) as u32)
            .unwrap_or(today)
    });
    let letter = |rng: &mut SimRng| char::from(*rng.pick(POSTCODE_LETTERS));
    let postal_code = format!("{} {}{}", rng.range(1011, 9999), letter(rng), letter(rng));
    let member_since = today
        .checked_sub_days(Days::new(rng.range(20, 12 * 365)))
        .unwrap_or(today);
    let language = match rng.below(20) {
        0..=16 => "nl",
        17 | 18 => "en",
        _ => "fr",
    };
    let consents = Consents {
        email: rng.chance(65),
        sms: rng.chance(25),
        post: rng.chance(45),
        personalization: rng.chance(70),
    };
    CrmCustomer {
        customer_no: format!("C{:06}", 100_000 + no),
        first_name,
        last_name,
        email,
        phone,
        birth_date,
        postal_code,
        member_since,
        cards,
        language,
        consents,
    }
}

/// Appends one CSV record, quoting fields that need it (RFC 4180).
fn csv_row(out: &mut String, fields: &[&str]) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if field.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&field.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(field);
        }
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{MorningPlan, StoreSetup};
    use till360_hub::config::IdentityConfig;
    use till360_hub::config::{DatabaseUrl, PostgresUrl};
    use till360_hub::import;
    use till360_hub::store::postgres::TemporaryDatabase;
    use till360_hub::store::sql::SqlExt as _;
    use till360_hub::store::{Database, DatabaseOptions, SqlStore, Store};
    use till360_shared::card::validate_gtin;
    use till360_shared::{CardNumber, Timestamp};

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 25).unwrap()
    }

    fn morning(seed: u64) -> Morning {
        Morning::generate(&MorningPlan::new(seed, 200), &StoreSetup::demo_stores())
    }

    fn files(office: &BackOffice) -> [String; 3] {
        [
            office.customers_csv(),
            office.products_csv(),
            office.orders_jsonl(),
        ]
    }

    #[test]
    fn back_office_is_deterministic_by_seed() {
        let m = morning(42);
        let a = BackOffice::generate(&m, 42, today());
        assert_eq!(a, BackOffice::generate(&m, 42, today()));
        assert_eq!(files(&a), files(&BackOffice::generate(&m, 42, today())));
        let other = BackOffice::generate(&m, 43, today());
        assert_ne!(a.customers_csv(), other.customers_csv());
    }

    #[test]
    fn crm_covers_most_cards_each_once_with_valid_check_digits() {
        let m = morning(7);
        let office = BackOffice::generate(&m, 7, today());
        let expected = m.expected_by_card();
        let by_card = office.customer_by_card();
        let cards_on_file: usize = office.customers.iter().map(|c| c.cards.len()).sum();
        assert_eq!(by_card.len(), cards_on_file, "no card on two customers");
        for card in by_card.keys() {
            let parsed = CardNumber::parse(card).expect("a valid EAN-13 loyalty card");
            assert_eq!(parsed.as_str(), *card);
        }
        for c in &office.customers {
            assert!(
                expected.contains_key(&c.cards[0]),
                "{c:?}: a card of the morning"
            );
            // A replaced card has no receipts, so the morning's expectations still hold.
            assert!(c.cards[1..].iter().all(|old| !expected.contains_key(old)));
        }
        let covered = expected.keys().filter(|c| by_card.contains_key(c.as_str()));
        assert!(
            covered.count() * 100 >= expected.len() * 70,
            "most of {} cards",
            expected.len()
        );
        let mut busiest: Vec<_> = expected.iter().collect();
        busiest.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(b.0)));
        for (card, _) in busiest.iter().take(SHOWCASE) {
            let customer = by_card
                .get(card.as_str())
                .expect("the busiest are in the CRM");
            let orders = office
                .orders
                .iter()
                .filter(|o| o.email == customer.email)
                .count();
            assert!(orders >= 2, "{card}: {orders} online orders");
        }
        let emails: HashSet<&str> = office.customers.iter().map(|c| c.email.as_str()).collect();
        assert_eq!(emails.len(), office.customers.len(), "unique e-mails");
        assert!(office
            .orders
            .iter()
            .all(|o| emails.contains(o.email.as_str())));
        assert!(office.orders.iter().all(|o| o.date < today()));
        let granted = office.customers.iter().filter(|c| c.consents.email).count();
        assert!(granted > 0 && granted < office.customers.len(), "a mix");
    }

    #[test]
    fn catalogue_categorises_every_printed_article() {
        let catalogue = catalogue();
        for style in [ReceiptStyle::Supermarket, ReceiptStyle::Boutique] {
            for (sku, description, _) in style.articles() {
                let product = catalogue
                    .iter()
                    .find(|p| p.description == description)
                    .unwrap_or_else(|| panic!("{description:?} has no category"));
                if let Some(sku) = sku {
                    assert_eq!(product.sku, sku, "the SKU the boutique prints");
                } else {
                    assert!(validate_gtin(&product.sku).is_ok(), "{}", product.sku);
                }
            }
        }
        let skus: HashSet<&str> = catalogue.iter().map(|p| p.sku.as_str()).collect();
        assert_eq!(skus.len(), catalogue.len(), "unique SKUs");
        assert!(catalogue.iter().any(|p| p.sensitive));
        assert!(catalogue
            .iter()
            .all(|p| p.sensitive == (p.category == "pharmacy")));
    }

    /// A fresh SQLite database and, when `TILL360_TEST_POSTGRES` names a server, a fresh
    /// PostgreSQL one (said on stderr when skipped); each with what keeps it alive.
    fn databases() -> Vec<(Database, Box<dyn std::any::Any>)> {
        let options = DatabaseOptions::default();
        let dir = tempfile::tempdir().unwrap();
        let url = DatabaseUrl::Sqlite(dir.path().join("hub.db"));
        let mut databases: Vec<(Database, Box<dyn std::any::Any>)> =
            vec![(Database::open(&url, &options).unwrap(), Box::new(dir))];
        match std::env::var("TILL360_TEST_POSTGRES") {
            Ok(server) => {
                let server = PostgresUrl::parse(server.trim()).unwrap();
                let temporary = TemporaryDatabase::create(&server, "t360")
                    .unwrap_or_else(|e| panic!("TILL360_TEST_POSTGRES={server}: {e}"));
                let url = DatabaseUrl::Postgres(temporary.url().clone());
                databases.push((Database::open(&url, &options).unwrap(), Box::new(temporary)));
            }
            Err(_) => eprintln!(
                "SKIPPED on PostgreSQL: set TILL360_TEST_POSTGRES, e.g.                  postgres://postgres@127.0.0.1:5432/test"
            ),
        }
        databases
    }

    #[test]
    fn generated_files_import_without_rejected_lines() {
        for (db, _keep) in databases() {
            imports_without_rejected_lines(&SqlStore::open(&db).unwrap());
        }
    }

    fn imports_without_rejected_lines(store: &SqlStore) {
        let m = morning(42);
        let office = BackOffice::generate(&m, 42, today());
        let cfg = IdentityConfig::default();
        let now = Timestamp::from_unix_ms(1_795_000_000_000, 60);
        let [customers, products, orders] = files(&office);

        let p = import::products(store.sql(), products.as_bytes(), now).unwrap();
        assert!(p.rejected.is_empty(), "{p}");
        assert_eq!(p.inserted as usize, office.catalogue.len());
        let c = import::customers(store.sql(), customers.as_bytes(), &cfg, None, now).unwrap();
        assert!(c.rejected.is_empty() && c.blocked.is_empty(), "{c}");
        assert_eq!(c.inserted as usize, office.customers.len(), "{c}");
        let o = import::orders(store.sql(), orders.as_bytes(), &cfg, None, now).unwrap();
        assert!(o.rejected.is_empty() && o.blocked.is_empty(), "{o}");
        assert_eq!(o.inserted as usize, office.orders.len());
        assert_eq!(o.merged, 0, "every order finds its CRM customer by e-mail");

        // A description with a comma survives the CSV quoting.
        let oil: String = store
            .sql()
            .query_value(
                "SELECT description FROM products WHERE category = 'pantry' \
                 AND description LIKE 'Olijfolie%'",
                till360_hub::sql_params![],
            )
            .unwrap()
            .unwrap();
        assert_eq!(oil, "Olijfolie extra 0,75L");

        for customer in &office.customers {
            let card = CardNumber::parse(&customer.cards[0]).unwrap();
            let view = store.profile_by_card(&card).unwrap().expect("a profile");
            assert_eq!(
                view.customer_no.as_deref(),
                Some(customer.customer_no.as_str())
            );
            assert_eq!(
                view.personal.first_name.as_deref(),
                Some(customer.first_name)
            );
            assert_eq!(view.identity.emails, vec![customer.email.clone()]);
            assert_eq!(view.cards.len(), customer.cards.len());
            assert_eq!(view.consents["email"].granted, customer.consents.email);
            let orders = office
                .orders
                .iter()
                .filter(|o| o.email == customer.email)
                .count();
            assert_eq!(view.channels.online.count as usize, orders);
            assert!(view.categories.iter().all(|c| c.category != "pharmacy"));
        }
    }
}
