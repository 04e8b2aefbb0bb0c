//! Coupons end to end (issue 4) over real parts: pty pairs as the POS, printer and
//! scanner ports, the hub and agents as child processes talking QUIC on 127.0.0.1,
//! SQLite files, the hub's HTTP API. Every wait is bounded by `harness::DEADLINE`.
//!
//! The printed stream is checked byte for byte: a coupon is exactly one block inserted
//! right before the receipt's cut, every other byte as the POS sent it.

use crate::harness;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chrono::Datelike;
use harness::{read_log, Proc, Site, Till, DEADLINE};
use serde_json::Value;
use till360::rig::{wait_until, PlayOptions};
use till360::sim::scanner::card_number;
use till360::sim::{BasketItem, PosSimulator, Quantity, ReceiptStyle, Scan, Suffix, Visit};
use till360_agent::escpos::{CodePage, EscPosParser, PrintEvent};
use till360_shared::campaign::{in_control_group, ControlSubject};
use till360_shared::coupon::{derive_customer_key, derive_till_key, mint, verify, CouponFields};

const ESC: u8 = 0x1B;
const GS: u8 = 0x1D;

/// The campaign set of these tests; `{control}` is big-basket's control percentage.
const CAMPAIGNS: &str = r#"
[settings]
max_per_receipt = 1
max_per_customer_per_week = 5

[[campaign]]
id = "big-basket"
name = "Bedankt voor je aankoop"
trigger = "basket_total"
min_total_cents = 5000
offer = "5 euro korting bij je volgende aankoop vanaf 25 euro"
valid_days = 14
control_percent = {control}
max_per_customer = 1
cap_days = 30

[[campaign]]
id = "birthday"
name = "Gefeliciteerd"
trigger = "birthday"
within_days = 3
offer = "Gefeliciteerd! 10% korting op je volgende aankoop"
valid_days = 30
control_percent = 0
max_per_customer = 1
cap_days = 365
priority = 20
"#;

const PRODUCTS: &str = "sku,description,category,sensitive\n\
    8710000000017,Koffie bonen 1kg,coffee,no\n\
    8710000000024,Halfvolle melk 1L,dairy,no\n\
    8710000000031,Paracetamol 500mg 20st,pharmacy,yes\n";

/// CRM customers 1..=CUSTOMERS with card `card_number(n)`.
const CUSTOMERS: u64 = 40;

/// Customers 1, 3, .., 11 have their birthday today; the others half a year away.
fn has_birthday_today(n: u64) -> bool {
    n <= 12 && n % 2 == 1
}

/// Only customers 1..=6 gave personalisation consent.
fn customers_csv() -> String {
    let today = chrono::Local::now().date_naive();
    let far = today - chrono::Days::new(182);
    let mut csv = String::from(
        "customer_no,first_name,last_name,email,phone,birth_date,postal_code,member_since,\
         cards,language,consent_email,consent_sms,consent_post,consent_personalization\n",
    );
    for n in 1..=CUSTOMERS {
        let day = if has_birthday_today(n) { today } else { far };
        // Born 40 years before (29 February falls back to the 28th).
        let year = day.year() - 40;
        let birth = chrono::NaiveDate::from_ymd_opt(year, day.month(), day.day())
            .or_else(|| chrono::NaiveDate::from_ymd_opt(year, day.month(), 28))
            .map(|d| d.to_string())
            .unwrap_or_default();
        let consent = if n <= 6 { "yes" } else { "no" };
        csv.push_str(&format!(
            "C{n:05},Klant{n},Test,klant{n}@example.nl,,{birth},3512AB,2020-05-01,{},nl,yes,no,no,{consent}\n",
            card_number(n)
        ));
    }
    csv
}

/// A hub with the campaign set, catalog and CRM above, and tills at S001 and S002.
struct CouponSite {
    site: Site,
    hub: Option<Proc>,
    tills: Vec<Till>,
    agents: Vec<Proc>,
    pos: Vec<PosSimulator>,
}

impl CouponSite {
    fn start(big_basket_control: u8) -> CouponSite {
        let site = Site::new();
        let dir = site.path().to_path_buf();
        std::fs::write(
            dir.join("campaigns.toml"),
            CAMPAIGNS.replace("{control}", &big_basket_control.to_string()),
        )
        .unwrap();
        let config = site.hub.config.clone();
        let hub_toml = std::fs::read_to_string(&config).unwrap();
        std::fs::write(
            &config,
            format!("campaigns = \"campaigns.toml\"\n{hub_toml}"),
        )
        .unwrap();
        std::fs::write(dir.join("products.csv"), PRODUCTS).unwrap();
        std::fs::write(dir.join("customers.csv"), customers_csv()).unwrap();
        import(&config, "products", &dir.join("products.csv"));
        import(&config, "customers", &dir.join("customers.csv"));

        let hub = site.start_hub();
        let tills = vec![
            site.till("S001", ReceiptStyle::Supermarket, Suffix::Cr, 41),
            site.till("S002", ReceiptStyle::Supermarket, Suffix::CrLf, 42),
        ];
        let agents: Vec<Proc> = tills.iter().map(|t| site.start_agent(t)).collect();
        let opening = chrono::Local::now().naive_local();
        let pos = vec![
            PosSimulator::new(ReceiptStyle::Supermarket, "S001", opening, 1),
            PosSimulator::new(ReceiptStyle::Supermarket, "S002", opening, 2),
        ];
        let mut this = CouponSite {
            site,
            hub: Some(hub),
            tills,
            agents,
            pos,
        };
        for i in 0..this.agents.len() {
            this.wait_for_log(i, "catalog items stored");
        }
        this
    }

    /// Waits until agent `i`'s log contains `needle`.
    fn wait_for_log(&mut self, i: usize, needle: &str) {
        let agent = &mut self.agents[i];
        let found = wait_until(DEADLINE, || {
            agent.assert_running();
            std::fs::read_to_string(&agent.log)
                .unwrap_or_default()
                .contains(needle)
                .then_some(())
        });
        assert!(
            found.is_some(),
            "agent {i} never logged {needle:?}:\n{}",
            read_log(&agent.log)
        );
    }

    fn master(&self) -> Vec<u8> {
        std::fs::read(self.site.hub.data_dir.join("coupon-master.key")).expect("master secret")
    }

    fn profile_id(&self, card: &str) -> String {
        let profile = self.site.profile(card).expect("a CRM profile for the card");
        profile["profile_id"]
            .as_str()
            .expect("profile_id")
            .to_string()
    }

    /// A CRM card whose customer is (`control`) or is not in big-basket's control group,
    /// among the customers without a birthday today (a birthday coupon would win).
    fn card_in_control_group(&self, control: bool, percent: u8, skip: &[String]) -> String {
        let master = self.master();
        (1..=CUSTOMERS)
            .filter(|n| !has_birthday_today(*n))
            .map(card_number)
            .filter(|card| !skip.contains(card))
            .find(|card| {
                let key = derive_customer_key(&master, &self.profile_id(card));
                in_control_group("big-basket", ControlSubject::Customer(&key), percent) == control
            })
            .expect("34 customers give both groups at 50 %")
    }

    /// Plays a receipt with `basket` at till `i`, after scanning `scans`; returns the bytes
    /// the POS sent and the bytes the printer got.
    fn play(
        &mut self,
        i: usize,
        card: Option<&str>,
        scans: Vec<Scan>,
        basket: Vec<BasketItem>,
    ) -> Printed {
        let last4 = card.map(|c| c[c.len() - 4..].to_string());
        let receipt = self.pos[i].receipt_for(basket, last4.as_deref());
        let visit = Visit {
            store_index: i,
            card: card.map(str::to_string),
            scans,
            receipt,
        };
        let till = &mut self.tills[i];
        let before = till.devices.printer.bytes().len();
        // Room for the till's digest request (150 ms) before the receipt prints.
        let options = PlayOptions {
            scan_gap: Duration::from_millis(400),
            ..PlayOptions::default()
        };
        till.play_with(&visit, &options);
        Printed {
            sent: visit.receipt.bytes(),
            printed: till.devices.printer.bytes()[before..].to_vec(),
            total_cents: visit.receipt.expected.total_cents,
        }
    }

    fn get_json(&self, path: &str) -> Option<Value> {
        self.site
            .get(path)
            .filter(|r| r.status == 200)
            .and_then(|r| r.json())
    }

    /// Waits until big-basket's (or `campaign`'s) KPIs satisfy `check`; returns them.
    fn wait_for_kpis(&self, campaign: &str, check: impl Fn(&Value) -> bool) -> Value {
        let path = format!("/api/v1/campaigns/{campaign}/kpis");
        let mut last = Value::Null;
        let found = wait_until(DEADLINE, || {
            last = self.get_json(&path)?;
            check(&last).then(|| last.clone())
        });
        found.unwrap_or_else(|| {
            let logs: Vec<String> = self.agents.iter().map(|a| read_log(&a.log)).collect();
            panic!(
                "KPIs of {campaign} never matched; last {last}\nagent logs:\n{}",
                logs.join("\n---\n")
            )
        })
    }

    fn wait_for_store_report(&self, store: &str, check: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        let found = wait_until(DEADLINE, || {
            last = self.get_json("/api/v1/coupons/stores")?;
            let row = last
                .as_array()?
                .iter()
                .find(|r| r["store"] == store)?
                .clone();
            check(&row).then_some(row)
        });
        found.unwrap_or_else(|| panic!("coupon report of {store} never matched; last {last}"))
    }
}

/// One receipt as sent and as printed.
struct Printed {
    sent: Vec<u8>,
    printed: Vec<u8>,
    total_cents: i64,
}

impl Printed {
    /// The coupon block inserted into the printed stream, checking that it is the only
    /// difference and sits right before the cut; `None` when printed == sent.
    fn coupon_block(&self) -> Option<Vec<u8>> {
        if self.printed == self.sent {
            return None;
        }
        let common = self
            .sent
            .iter()
            .zip(&self.printed)
            .take_while(|(a, b)| a == b)
            .count();
        let rest = &self.sent[common..];
        assert!(
            rest.starts_with(&[GS, b'V']),
            "the printed stream differs before the cut (at byte {common} of {})",
            self.sent.len()
        );
        assert!(
            self.printed.ends_with(rest),
            "everything from the cut on must be printed unchanged"
        );
        let block = self.printed[common..self.printed.len() - rest.len()].to_vec();
        assert!(
            block.starts_with(&[ESC, b'@']),
            "the block starts with ESC @"
        );
        assert!(
            block.windows(3).any(|w| w == [GS, b'k', 73]),
            "the block has a Code128 barcode"
        );
        Some(block)
    }

    /// The coupon code printed in the block (the human-readable line).
    fn coupon_code(&self) -> Option<String> {
        let block = self.coupon_block()?;
        let mut parser = EscPosParser::new(CodePage::Cp858);
        parser.feed(&block);
        let mut code = None;
        while let Some(event) = parser.poll() {
            if let PrintEvent::Line(line) = event {
                let digits: String = line.chars().filter(|c| !c.is_whitespace()).collect();
                if digits.len() == 24 && digits.bytes().all(|b| b.is_ascii_digit()) {
                    code = Some(digits);
                }
            }
        }
        Some(code.expect("the block prints its code as text"))
    }

    fn text(&self) -> String {
        let mut parser = EscPosParser::new(CodePage::Cp858);
        parser.feed(&self.printed);
        let mut text = String::new();
        while let Some(event) = parser.poll() {
            if let PrintEvent::Line(line) = event {
                text.push_str(&line);
                text.push('\n');
            }
        }
        text
    }
}

fn import(config: &Path, kind: &str, file: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_till360"))
        .args(["hub", "import", kind])
        .arg(file)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run till360 hub import");
    assert!(
        out.status.success(),
        "import {kind} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn item(desc: &str, unit_cents: i64, pieces: u32) -> BasketItem {
    BasketItem {
        desc: desc.to_string(),
        sku: None,
        quantity: Quantity::Pieces(pieces),
        unit_cents,
        discount: None,
    }
}

/// 4 × 14,99 = 59,96: above big-basket's 50 euro.
fn big_basket() -> Vec<BasketItem> {
    vec![item("Koffie bonen 1kg", 1499, 4)]
}

fn small_basket() -> Vec<BasketItem> {
    vec![item("Halfvolle melk 1L", 129, 1)]
}

fn card_scan(card: &str) -> Vec<Scan> {
    vec![Scan::Card(card.to_string())]
}

fn n(v: &Value, key: &str) -> i64 {
    v[key].as_i64().unwrap_or(-1)
}

#[test]
fn a_big_basket_gets_its_coupon_before_the_cut_and_a_control_customer_only_a_would_have() {
    let mut s = CouponSite::start(50);
    let treated = s.card_in_control_group(false, 50, &[]);
    let control = s.card_in_control_group(true, 50, &[]);

    let printed = s.play(0, Some(&treated), card_scan(&treated), big_basket());
    let code = printed
        .coupon_code()
        .expect("a treated big basket gets a coupon");
    let key = derive_till_key(&s.master(), "S001", "T01");
    let fields = verify(&key, &code).expect("signed with S001/T01's key");
    assert!(fields.expires() >= chrono::Local::now().date_naive() + chrono::Days::new(14));
    assert!(
        printed.text().contains("5 euro korting"),
        "{}",
        printed.text()
    );

    let printed = s.play(0, Some(&control), card_scan(&control), big_basket());
    assert_eq!(
        printed.coupon_block(),
        None,
        "a control customer gets nothing printed"
    );

    // A small basket: nothing, byte for byte.
    let printed = s.play(0, Some(&treated), card_scan(&treated), small_basket());
    assert_eq!(printed.coupon_block(), None);

    let kpis = s.wait_for_kpis("big-basket", |k| {
        n(k, "issued") == 1 && n(k, "control") == 1
    });
    assert_eq!(n(&kpis, "redeemed"), 0);
    let profile = s.site.profile(&treated).unwrap();
    assert_eq!(profile["coupons"]["issued"], 1, "{profile}");
}

#[test]
fn the_cap_holds_across_two_stores() {
    let mut s = CouponSite::start(50);
    let treated = s.card_in_control_group(false, 50, &[]);
    let first = s.play(0, Some(&treated), card_scan(&treated), big_basket());
    assert!(
        first.coupon_code().is_some(),
        "first big basket at S001: a coupon"
    );
    s.wait_for_kpis("big-basket", |k| n(k, "issued") == 1);

    // The same customer at the other store: the hub's fresh digest carries the cap.
    let second = s.play(1, Some(&treated), card_scan(&treated), big_basket());
    assert_eq!(
        second.coupon_block(),
        None,
        "max_per_customer = 1 within 30 days"
    );
    // A second customer at S002 still gets one: the store is not the problem.
    let other = s.card_in_control_group(false, 50, std::slice::from_ref(&treated));
    let third = s.play(1, Some(&other), card_scan(&other), big_basket());
    assert!(third.coupon_code().is_some());
    s.wait_for_kpis("big-basket", |k| n(k, "issued") == 2);
}

#[test]
fn a_birthday_coupon_is_printed_only_with_consent() {
    let mut s = CouponSite::start(0);
    // Customers 1 (birthday today, consent) and 7 (birthday today, no consent).
    let with_consent = card_number(1);
    let without = card_number(7);
    let printed = s.play(
        0,
        Some(&with_consent),
        card_scan(&with_consent),
        small_basket(),
    );
    assert!(
        printed.coupon_code().is_some(),
        "birthday + consent: a coupon"
    );
    assert!(
        printed.text().contains("Gefeliciteerd"),
        "{}",
        printed.text()
    );
    let printed = s.play(0, Some(&without), card_scan(&without), small_basket());
    assert_eq!(
        printed.coupon_block(),
        None,
        "no consent: no profile trigger"
    );
    s.wait_for_kpis("birthday", |k| n(k, "issued") == 1 && n(k, "control") == 0);
}

#[test]
fn a_sensitive_product_does_not_count_towards_the_basket_total() {
    let mut s = CouponSite::start(0);
    let card = card_number(8);
    // 3 × 14,99 coffee + 4 × 1,89 paracetamol = 52,53, of which 44,97 counts.
    let basket = vec![
        item("Koffie bonen 1kg", 1499, 3),
        item("Paracetamol 500mg 20st", 189, 4),
    ];
    let printed = s.play(0, Some(&card), card_scan(&card), basket);
    assert!(printed.total_cents >= 5000);
    assert_eq!(printed.coupon_block(), None);
    // The same customer with 4 coffees does get one: the campaign works for them.
    let printed = s.play(0, Some(&card), card_scan(&card), big_basket());
    assert!(printed.coupon_code().is_some());
}

#[test]
fn a_coupon_is_redeemed_once_a_second_scan_is_a_duplicate_and_a_forgery_is_refused() {
    let mut s = CouponSite::start(0);
    let card = card_number(16);
    let issued = s.play(0, Some(&card), card_scan(&card), big_basket());
    let code = issued.coupon_code().expect("a coupon");

    // Redeemed at the issuing store (checked offline with the store's keys) ...
    let used = s.play(0, None, vec![Scan::Coupon(code.clone())], small_basket());
    // ... and once more at the same store: the till cannot know, the hub reports it.
    s.play(0, None, vec![Scan::Coupon(code.clone())], small_basket());
    let kpis = s.wait_for_kpis("big-basket", |k| {
        n(k, "redeemed") == 1 && n(k, "duplicate_redemptions") == 1
    });
    assert_eq!(n(&kpis, "revenue_cents"), used.total_cents);
    assert_eq!(kpis["redemption_rate"].as_f64(), Some(1.0));

    // At another store the hub is asked: already redeemed, refused there.
    s.play(1, None, vec![Scan::Coupon(code.clone())], small_basket());
    s.wait_for_store_report("S002", |r| n(r, "refused") == 1);

    // A code with a valid check digit but signed with a key the till does not hold.
    let fields = verify(&derive_till_key(&s.master(), "S001", "T01"), &code).unwrap();
    let forged = mint(
        &derive_till_key(b"not the master secret, 32 bytes!", "S001", "T01"),
        &CouponFields::new(fields.campaign(), fields.till(), fields.expires(), 99).unwrap(),
    );
    s.play(
        0,
        None,
        vec![Scan::Coupon(forged.as_str().to_string())],
        small_basket(),
    );
    s.wait_for_store_report("S001", |r| n(r, "refused") == 1 && n(r, "duplicates") == 1);
    let kpis = s.wait_for_kpis("big-basket", |k| n(k, "redeemed") == 1);
    assert_eq!(n(&kpis, "issued"), 1);
}

#[test]
fn with_the_hub_down_coupons_are_issued_and_redeemed_and_counted_when_it_returns() {
    let mut s = CouponSite::start(0);
    let card = card_number(10);
    // Warm up: the tills know the hub's set and keys; then the hub goes away.
    s.hub.take().expect("hub").kill();

    let issued = s.play(0, Some(&card), card_scan(&card), big_basket());
    let code = issued
        .coupon_code()
        .expect("a basket campaign is decided offline");
    // Another store accepts it unverified while the hub is down ...
    let used = s.play(1, None, vec![Scan::Coupon(code.clone())], small_basket());
    // ... and, unable to check, a forgery naming S001's till too: the hub finds it out.
    let fields = verify(&derive_till_key(&s.master(), "S001", "T01"), &code).unwrap();
    let forged = mint(
        &derive_till_key(b"not the master secret, 32 bytes!", "S001", "T01"),
        &CouponFields::new(fields.campaign(), fields.till(), fields.expires(), 7).unwrap(),
    );
    s.play(
        1,
        None,
        vec![Scan::Coupon(forged.as_str().to_string())],
        small_basket(),
    );

    s.hub = Some(s.site.start_hub());
    let kpis = s.wait_for_kpis("big-basket", |k| {
        n(k, "issued") == 1 && n(k, "redeemed") == 1
    });
    assert_eq!(n(&kpis, "revenue_cents"), used.total_cents);
    assert_eq!(n(&kpis, "duplicate_redemptions"), 0);
    let report = s.wait_for_store_report("S002", |r| n(r, "forged") == 1);
    assert_eq!(n(&report, "redeemed"), 1);
    assert_eq!(
        n(&report, "refused"),
        0,
        "accepted unverified, not refused at the till"
    );
}
