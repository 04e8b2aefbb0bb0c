use super::*;
use chrono::NaiveDate;
use till360_shared::Currency;

const SUPERMARKET: &str = include_str!("../../../config/receipts/supermarket.toml");
const BOUTIQUE: &str = include_str!("../../../config/receipts/boutique.toml");

fn supermarket() -> Layout {
    Layout::from_toml_str(SUPERMARKET, "supermarket.toml").expect("shipped layout loads")
}

fn boutique() -> Layout {
    Layout::from_toml_str(BOUTIQUE, "boutique.toml").expect("shipped layout loads")
}

fn item(desc: &str, qty: i64, unit: Option<i64>, amount: i64) -> ReceiptLine {
    ReceiptLine {
        description: desc.into(),
        sku: None,
        quantity_milli: qty,
        unit_cents: unit,
        amount_cents: amount,
        discount: false,
    }
}

fn at(y: i32, m: u32, d: u32, h: u32, min: u32, s: u32) -> chrono::NaiveDateTime {
    NaiveDate::from_ymd_opt(y, m, d)
        .and_then(|d| d.and_hms_opt(h, min, s))
        .expect("valid date")
}

#[test]
fn supermarket_receipt() {
    let lines = [
        "   SUPERMARKT DE HOEK",
        "",
        "Bon 0012-3456",
        "25-11-2026 09:14  Kassa 3",
        "----------------------------------------",
        "Halfvolle melk 1L             1,29",
        "2 x 1,29",
        "Volkoren brood                2,58",
        "Korting 2e halve prijs       -0,65",
        "Bananen 0,812 kg              1,62",
        "0,512 kg x 2,49",
        "Kaas jong belegen             1,27 B",
        "Wasmiddel 2L                 12,99",
        "Korting actie                 1,00",
        "SUBTOTAAL                    19,10",
        "TOTAAL                       18,10",
        "PIN                          18,10",
        "Statiegeld                    0,25",
        "Klantenkaart ****1234",
        "Bedankt en tot ziens!",
    ];
    let parsed = supermarket().match_lines(lines);
    let discount = |desc: &str, amount: i64| ReceiptLine {
        description: desc.into(),
        sku: None,
        quantity_milli: 1000,
        unit_cents: None,
        amount_cents: amount,
        discount: true,
    };
    assert_eq!(
        parsed,
        ParsedReceipt {
            receipt_no: Some("0012-3456".into()),
            printed_at: Some(at(2026, 11, 25, 9, 14, 0)),
            card_last4: Some("1234".into()),
            lines: vec![
                item("Halfvolle melk 1L", 1000, None, 129),
                item("Volkoren brood", 2000, Some(129), 258),
                discount("Korting 2e halve prijs", -65),
                item("Bananen", 812, None, 162),
                item("Kaas jong belegen", 512, Some(249), 127),
                item("Wasmiddel 2L", 1000, None, 1299),
                // Printed without a minus sign, still a discount.
                discount("Korting actie", -100),
            ],
            total_cents: Some(1810),
            // After the total nothing counts as an item.
            unmatched: vec![
                "SUPERMARKT DE HOEK".into(),
                "Statiegeld                    0,25".into()
            ],
        }
    );
    let sum: i64 = parsed.lines.iter().map(|l| l.amount_cents).sum();
    assert_eq!(Some(sum), parsed.total_cents);
    assert_eq!(supermarket().currency(), Currency::EUR);
}

#[test]
fn boutique_receipt() {
    let lines = [
        "MAISON LUMEN",
        "Store 014 Utrecht",
        "Receipt #A-1029",
        "2026-11-25T14:03:12",
        "SKU 100234  T-shirt organic        29.95",
        "SKU 100555  Socks bamboo  2 @ 7.50      15.00",
        "SKU 200871  Linen shirt            59.90",
        "Member discount 10%                -5.99",
        "Subtotal                           98.81",
        "Total EUR 98.81",
        "Card                               98.81",
        "Member card ************1234",
        "Thank you for shopping with us",
    ];
    let parsed = boutique().match_lines(lines);
    let with_sku = |sku: &str, mut line: ReceiptLine| {
        line.sku = Some(sku.into());
        line
    };
    assert_eq!(parsed.receipt_no.as_deref(), Some("A-1029"));
    assert_eq!(parsed.printed_at, Some(at(2026, 11, 25, 14, 3, 12)));
    assert_eq!(parsed.card_last4.as_deref(), Some("1234"));
    assert_eq!(parsed.total_cents, Some(9881));
    assert_eq!(
        parsed.lines,
        vec![
            with_sku("100234", item("T-shirt organic", 1000, None, 2995)),
            with_sku("100555", item("Socks bamboo", 2000, Some(750), 1500)),
            with_sku("200871", item("Linen shirt", 1000, None, 5990)),
            // The discount carries the SKU of the item it applies to.
            ReceiptLine {
                description: "Member discount 10%".into(),
                sku: Some("200871".into()),
                quantity_milli: 1000,
                unit_cents: None,
                amount_cents: -599,
                discount: true,
            },
        ]
    );
    assert_eq!(parsed.unmatched, vec!["MAISON LUMEN".to_string()]);
}

#[test]
fn quantity_without_item_and_bad_values_are_diagnostics() {
    let parsed = supermarket().match_lines([
        "2 x 1,29",
        "3 x 0,99",
        "Appels                2,97",
        "1,5 x 2,00",
        "TOTAAL  2,97",
        "31-02-2026 10:00",
    ]);
    assert_eq!(parsed.lines, vec![item("Appels", 3000, Some(99), 297)]);
    assert_eq!(
        parsed.unmatched,
        vec![
            "quantity line without an item: 2 x 1,29".to_string(),
            "quantity line without an item: 1,5 x 2,00".to_string(),
            "bad timestamp \"31-02-2026 10:00\" (format \"%d-%m-%Y %H:%M\"): 31-02-2026 10:00"
                .to_string(),
        ]
    );
    assert_eq!(parsed.printed_at, None);
}

#[test]
fn unparsable_amounts_are_kept_as_diagnostics() {
    let layout = Layout::from_toml_str(
        r#"
decimal = ","
items = ['^(?P<desc>\w+)\s+(?P<amount>\S+)$']
total = '^TOTAAL\s+(?P<amount>\S+)$'
"#,
        "loose.toml",
    )
    .unwrap();
    let parsed = layout.match_lines(["Kaas 12,345", "Melk 1,29", "TOTAAL 1,2,3"]);
    assert_eq!(parsed.lines, vec![item("Melk", 1000, None, 129)]);
    assert_eq!(parsed.total_cents, None);
    assert_eq!(parsed.unmatched.len(), 2);
    assert!(
        parsed.unmatched[0].contains("Kaas 12,345"),
        "{:?}",
        parsed.unmatched
    );
    assert!(
        parsed.unmatched[1].contains("TOTAAL 1,2,3"),
        "{:?}",
        parsed.unmatched
    );
}

#[test]
fn first_receipt_number_wins_and_ignore_comes_first() {
    let layout = Layout::from_toml_str(
        r#"
decimal = "."
receipt_no = '^No (?P<no>\d+)$'
items = ['^(?P<desc>.+?)\s{2,}(?P<amount>\d+\.\d{2})$']
total = '^Total\s+(?P<amount>\d+\.\d{2})$'
ignore = ['^No 0+$']
currency = "CHF"
"#,
        "x.toml",
    )
    .unwrap();
    let parsed = layout.match_lines(["No 000", "No 17", "No 18", "Tea  3.00", "Total  3.00"]);
    assert_eq!(parsed.receipt_no.as_deref(), Some("17"));
    assert_eq!(layout.currency(), Currency::new("CHF").unwrap());
    assert_eq!(layout.decimal(), '.');
}

fn error_of(text: &str) -> String {
    Layout::from_toml_str(text, "shop.toml")
        .expect_err("layout must be refused")
        .to_string()
}

#[test]
fn errors_name_file_key_and_reason() {
    let base = "decimal = \",\"\ntotal = '^T (?P<amount>.+)$'\n";
    let items = "items = ['^(?P<desc>.+) (?P<amount>.+)$', '^(?P<desc>.+) (?P<amount>[0-9+$']\n";
    let e = error_of(&format!("{base}{items}"));
    assert!(
        e.starts_with("shop.toml: key `items[1]`: bad regular expression"),
        "{e}"
    );

    let e = error_of(
        "decimal = \",\"\nitems = ['(?P<desc>.)(?P<amount>.)']\ntotal = '^T (?P<sum>.+)$'\n",
    );
    assert!(
        e.starts_with("shop.toml: key `total`: pattern has no named group `amount`"),
        "{e}"
    );

    let e = error_of(
        "decimal = \";\"\nitems = ['(?P<desc>.)(?P<amount>.)']\ntotal = '(?P<amount>.)'\n",
    );
    assert!(e.starts_with("shop.toml: key `decimal`:"), "{e}");

    let e = error_of(&format!(
        "{base}items = ['(?P<desc>.)(?P<amount>.)']\ncolour = 'red'\n"
    ));
    assert!(
        e.starts_with("shop.toml: ") && e.contains("unknown field `colour`"),
        "{e}"
    );

    let e = error_of(&format!(
        "{base}items = ['(?P<desc>.)(?P<amount>.)(?P<price>.)']\n"
    ));
    assert!(
        e.contains("key `items[0]`") && e.contains("unknown named group `price`"),
        "{e}"
    );

    let e = error_of(&format!(
        "{base}items = ['(?P<desc>.)(?P<amount>.)']\ntimestamp = '(?P<ts>.+)'\n"
    ));
    assert!(e.contains("key `timestamp_format`: missing"), "{e}");

    let e = error_of(&format!(
        "{base}items = ['(?P<desc>.)(?P<amount>.)']\ntimestamp = '(?P<ts>.+)'\ntimestamp_format = '%Q'\n"
    ));
    assert!(e.contains("key `timestamp_format`"), "{e}");

    let e = error_of(&format!("{base}items = []\n"));
    assert!(e.contains("key `items`: needs at least one pattern"), "{e}");

    let e = error_of(&format!(
        "{base}items = ['(?P<desc>.)(?P<amount>.)']\ncurrency = 'euro'\n"
    ));
    assert!(e.contains("key `currency`"), "{e}");

    let e = error_of("decimal = \",\"\ntotal = '(?P<amount>.)'\n");
    assert!(e.contains("missing field `items`"), "{e}");
}

#[test]
fn load_reads_a_file_and_names_it_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shop.toml");
    std::fs::write(&path, SUPERMARKET).unwrap();
    let layout = Layout::load(&path).unwrap();
    assert_eq!(layout.origin(), path.display().to_string());
    let missing = dir.path().join("missing.toml");
    let e = Layout::load(&missing).unwrap_err().to_string();
    assert!(e.starts_with(&missing.display().to_string()), "{e}");
}

#[test]
fn quantities_in_thousandths() {
    assert_eq!(parse_quantity("2", ','), Some(2000));
    assert_eq!(parse_quantity("0,512", ','), Some(512));
    assert_eq!(parse_quantity("1,5", ','), Some(1500));
    assert_eq!(parse_quantity("1.25", '.'), Some(1250));
    assert_eq!(parse_quantity(",5", ','), Some(500));
    for bad in ["", ",", "1,2345", "-1", "1.5", "x", "9999999999999"] {
        assert_eq!(parse_quantity(bad, ','), None, "{bad:?}");
    }
}
