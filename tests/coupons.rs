//! Coupons end to end (issue 4) over real parts: pty pairs as the POS, printer and
//! scanner ports, the hub and agents as child processes talking QUIC on 127.0.0.1,
//! SQLite files, the hub's HTTP API. Every wait is bounded by `harness::DEADLINE`.
//!
//! The printed stream is checked byte for byte: a coupon is exactly one block inserted
//! right before the receipt's cut, every other byte as the POS sent it.

use crate::harness;

use std::path::Path;
use std::process::Command;

use chrono::Datelike;
use harness::{read_log, Proc, Site, Till, DEADLINE};
use serde_json::Value;
use till360::rig::{wait_until, PlayOptions};
use till360::sim::scanner::card_number;
use till360::sim::{BasketItem, PosSimulator, Quantity, ReceiptStyle, Scan, Suffix, Visit};
use till360_agent::escpos::encode::{notice_block, PrinterModes};
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

/// `[coupons] budget_ms` (the largest allowed) and `digest_timeout_ms` of every till.
const TIMEOUTS_MS: (u64, u64) = (1000, 2000);

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
        Self::start_with(big_basket_control, false)
    }

    /// With `second_s001_till`, a third till: S001/T02 (index 2). Every till gets a
    /// generous coupon budget and hub timeout: these tests are not about them.
    fn start_with(big_basket_control: u8, second_s001_till: bool) -> CouponSite {
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
        let mut stations = vec![("S001", "T01", Suffix::Cr), ("S002", "T01", Suffix::CrLf)];
        if second_s001_till {
            stations.push(("S001", "T02", Suffix::Cr));
        }
        let style = ReceiptStyle::Supermarket;
        let tills: Vec<Till> = (0u64..)
            .zip(&stations)
            .map(|(i, (store, till, suffix))| {
                site.till_named(store, till, style, *suffix, 41 + i, Some(TIMEOUTS_MS))
            })
            .collect();
        let agents: Vec<Proc> = tills.iter().map(|t| site.start_agent(t)).collect();
        let opening = chrono::Local::now().naive_local();
        let pos = (0u64..)
            .zip(&stations)
            .map(|(i, (store, ..))| PosSimulator::new(style, store, opening, 1 + i))
            .collect();
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
        self.wait_for_logged(i, needle, 1);
    }

    /// Waits until agent `i`'s log contains `needle` at least `times` times.
    fn wait_for_logged(&mut self, i: usize, needle: &str, times: usize) {
        let agent = &mut self.agents[i];
        let found = wait_until(DEADLINE, || {
            agent.assert_running();
            (std::fs::read_to_string(&agent.log)
                .unwrap_or_default()
                .matches(needle)
                .count()
                >= times)
                .then_some(())
        });
        assert!(
            found.is_some(),
            "agent {i} never logged {needle:?} {times} times:\n{}",
            read_log(&agent.log)
        );
    }

    /// Scans `code` at till `i` and waits until its agent has judged it (`verdict`: the
    /// log's words, e.g. "refused: already_redeemed", for the `times`th time); a refused
    /// code also until its notice is printed. Returns what the printer got meanwhile.
    fn scan_coupon(&mut self, i: usize, code: &str, verdict: &str, times: usize) -> Vec<u8> {
        let devices = &self.tills[i].devices;
        let before = devices.printer.bytes().len();
        devices.scanner().scan(code).expect("scan");
        self.wait_for_logged(i, &format!("coupon {code} {verdict}"), times);
        if verdict.starts_with("refused") {
            self.wait_for_notice(i, before)
        } else {
            self.tills[i].devices.printer.bytes()[before..].to_vec()
        }
    }

    /// Waits until till `i`'s printer has got a whole notice after its first `before`
    /// bytes; returns the printer's bytes from `before` on.
    fn wait_for_notice(&self, i: usize, before: usize) -> Vec<u8> {
        let printer = &self.tills[i].devices.printer;
        let len = notice("", "0000", 0).len();
        wait_until(DEADLINE, || {
            let bytes = printer.bytes();
            let new = bytes.get(before..)?;
            let stars = new
                .windows(STARS.len())
                .position(|w| w == STARS.as_bytes())?;
            // Its first row comes after ESC @, ESC t n, ESC E 1; the reason is longer.
            (new.len() >= stars - 8 + len).then(|| new.to_vec())
        })
        .unwrap_or_else(|| panic!("no notice printed at till {i}"))
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
        let before = self.tills[i].devices.printer.bytes().len();
        // Each scan is settled before the receipt prints, as at a real till where seconds
        // pass: the hub's digest for a card (while the hub runs), the verdict on a code.
        // Waited for in the agent's log, not guessed with a pause.
        let hub_up = self.hub.is_some();
        for scan in &visit.scans {
            self.scan_settled(i, scan, hub_up);
        }
        let visit = Visit {
            scans: Vec::new(),
            ..visit
        };
        let till = &mut self.tills[i];
        let options = PlayOptions::default();
        till.play_with(&visit, &options);
        Printed {
            sent: visit.receipt.bytes(),
            printed: till.devices.printer.bytes()[before..].to_vec(),
            total_cents: visit.receipt.expected.total_cents,
        }
    }

    /// Scans `scan` at till `i` and waits until the agent has settled it: logged the hub's
    /// digest of a card (only asked while the hub runs) or its verdict on a code.
    fn scan_settled(&mut self, i: usize, scan: &Scan, hub_up: bool) {
        let (code, needles) = match scan {
            Scan::Card(card) => (
                card.clone(),
                if hub_up {
                    vec![format!(
                        "card {}: the hub's digest",
                        till360_shared::card::masked(card)
                    )]
                } else {
                    Vec::new()
                },
            ),
            Scan::Coupon(code) => (
                code.clone(),
                ["accepted", "refused", "scanned again"]
                    .iter()
                    .map(|outcome| format!("coupon {code} {outcome}"))
                    .collect(),
            ),
            other => panic!("the coupon tests scan cards and codes, not {other:?}"),
        };
        let log = self.agents[i].log.clone();
        let settled = |text: &str| -> usize {
            needles
                .iter()
                .map(|n| text.matches(n.as_str()).count())
                .sum()
        };
        let before = settled(&read_log(&log));
        let devices = &self.tills[i].devices;
        devices.scanner().scan(&code).expect("scanning");
        let read = devices
            .scanner
            .wait_read_by_agent(std::time::Instant::now() + DEADLINE)
            .expect("waiting for the agent to read the scan");
        assert!(read, "the agent never read the scan");
        if needles.is_empty() {
            return;
        }
        let done = wait_until(DEADLINE, || {
            (settled(&read_log(&log)) > before).then_some(())
        });
        assert!(
            done.is_some(),
            "the scan was never settled ({needles:?}):\n{}",
            read_log(&log)
        );
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

/// A notice's rows of stars (`[coupons] columns` = 48).
const STARS: &str = "************************************************";

/// The notice for a refused code as the agent prints it: `notice_text` (the default),
/// the reason and the code's last four digits. `esc_t` is the code page number the
/// printed notice restores.
fn notice(reason: &str, code: &str, esc_t: u8) -> Vec<u8> {
    let lines = [
        till360_agent::config::DEFAULT_NOTICE_TEXT.to_string(),
        format!("{reason}  ...{}", &code[code.len() - 4..]),
    ];
    let modes = PrinterModes {
        code_page: CodePage::Cp858,
        esc_t,
    };
    notice_block(&lines, 48, &modes)
}

/// Takes the one notice out of `printed` (which must hold exactly `notice(reason,
/// code)`), checks it sits where nothing is mid-receipt in the POS's bytes (before any
/// of them, or right after a cut), and returns the rest: the POS's bytes.
fn without_notice(printed: &[u8], reason: &str, code: &str) -> (Vec<u8>, usize) {
    let stars = printed
        .windows(STARS.len())
        .position(|w| w == STARS.as_bytes())
        .expect("a notice");
    // ESC @, ESC t n, ESC E 1 before the first row.
    let start = stars - 8;
    let expected = notice(reason, code, printed[start + 4]);
    assert_eq!(
        &printed[start..start + expected.len()],
        &expected[..],
        "the notice, whole"
    );
    let mut rest = printed[..start].to_vec();
    rest.extend_from_slice(&printed[start + expected.len()..]);
    (rest, start)
}

/// Whether POS offset `at` is a point where nothing is mid-receipt: the start, or right
/// after one of the POS's cuts (`GS V 66 n` / `GS V m` as the simulator prints them).
fn between_receipts(sent: &[u8], at: usize) -> bool {
    at == 0
        || (at >= 4 && sent[at - 4..at - 2] == [GS, b'V'] && sent[at - 2] >= 65)
        || (at >= 3 && sent[at - 3..at - 1] == [GS, b'V'] && sent[at - 1] < 65)
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

    // Redeemed at the issuing store ...
    let used = s.play(0, None, vec![Scan::Coupon(code.clone())], small_basket());
    // ... and once more at the same store: refused there (the till's own ledger).
    s.play(0, None, vec![Scan::Coupon(code.clone())], small_basket());
    s.wait_for_log(0, &format!("coupon {code} refused: already_redeemed"));
    let kpis = s.wait_for_kpis("big-basket", |k| n(k, "redeemed") == 1);
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
    s.wait_for_store_report("S001", |r| n(r, "refused") == 2 && n(r, "duplicates") == 0);
    let kpis = s.wait_for_kpis("big-basket", |k| n(k, "redeemed") == 1);
    assert_eq!(n(&kpis, "issued"), 1);
    assert_eq!(n(&kpis, "duplicate_redemptions"), 0);
}

#[test]
fn a_photocopied_coupon_is_refused_at_its_own_store_at_every_till_and_with_the_hub_down() {
    let mut s = CouponSite::start_with(0, true);
    let card = card_number(18);
    let issued = s.play(0, Some(&card), card_scan(&card), big_basket());
    let code = issued.coupon_code().expect("a coupon");
    s.scan_coupon(0, &code, "accepted", 1);
    s.play(0, None, vec![], small_basket());

    // The photocopy at the same till: refused, and the cashier gets a notice at once
    // (the POS is idle between receipts); the next receipt prints exactly as sent.
    let printed = s.scan_coupon(0, &code, "refused: already_redeemed", 1);
    let (rest, at) = without_notice(&printed, "already_redeemed", &code);
    assert_eq!(
        (rest.len(), at),
        (0, 0),
        "only the notice, between receipts"
    );
    let next = s.play(0, None, vec![], small_basket());
    assert_eq!(next.printed, next.sent, "the POS's bytes unchanged");

    // The hub pushed the redemption to the store's other till; with the hub gone it
    // refuses the code from its own ledger, and so does the first till.
    s.wait_for_log(2, "codes redeemed in this store received");
    s.hub.take().expect("hub").kill();
    s.scan_coupon(2, &code, "refused: already_redeemed", 1);
    s.scan_coupon(0, &code, "refused: already_redeemed", 2);
    // A coupon issued and redeemed while the hub is down is refused the second time.
    let other_card = card_number(19);
    let offline = s.play(0, Some(&other_card), card_scan(&other_card), big_basket());
    let offline_code = offline.coupon_code().expect("a coupon decided offline");
    s.scan_coupon(0, &offline_code, "accepted", 1);
    s.play(0, None, vec![], small_basket());
    s.scan_coupon(0, &offline_code, "refused: already_redeemed", 1);

    s.hub = Some(s.site.start_hub());
    let report = s.wait_for_store_report("S001", |r| n(r, "refused") == 4);
    assert_eq!((n(&report, "redeemed"), n(&report, "duplicates")), (2, 0));
}

#[test]
fn with_the_hub_down_a_till_accepts_at_most_max_unverified_other_store_codes_per_outage() {
    let mut s = CouponSite::start(0);
    let card = card_number(20);
    let issued = s.play(0, Some(&card), card_scan(&card), big_basket());
    let code = issued.coupon_code().expect("a coupon");
    // Genuine codes of S001/T01's (other serials of the same campaign and day).
    let key = derive_till_key(&s.master(), "S001", "T01");
    let fields = verify(&key, &code).unwrap();
    let codes: Vec<String> = (0..7)
        .map(|k| {
            let serial =
                CouponFields::new(fields.campaign(), fields.till(), fields.expires(), 200 + k);
            mint(&key, &serial.unwrap()).as_str().to_string()
        })
        .collect();

    s.hub.take().expect("hub").kill();
    // At S002: five are accepted unverified (the default), the sixth refused, with a
    // notice for the cashier.
    let before = s.tills[1].devices.printer.bytes().len();
    for code in &codes[..6] {
        s.tills[1].devices.scanner().scan(code).expect("scan");
    }
    s.wait_for_logged(1, "accepted (unverified)", 5);
    s.wait_for_logged(1, "refused: unverifiable", 1);
    let refused = codes[..6]
        .iter()
        .find(|c| read_log(&s.agents[1].log).contains(&format!("coupon {c} refused")))
        .expect("the refused code")
        .clone();
    let printed = s.wait_for_notice(1, before);
    let (rest, at) = without_notice(&printed, "unverifiable", &refused);
    assert_eq!(
        (rest.len(), at),
        (0, 0),
        "only the notice, between receipts"
    );
    let receipt = s.play(1, None, vec![], small_basket());
    assert_eq!(receipt.printed, receipt.sent);

    // The link comes back: the next outage starts a new count.
    s.hub = Some(s.site.start_hub());
    s.wait_for_logged(1, "uplink: connected to", 2);
    s.hub.take().expect("hub").kill();
    s.scan_coupon(1, &codes[6], "accepted (unverified)", 1);
    s.play(1, None, vec![], small_basket());

    s.hub = Some(s.site.start_hub());
    let report = s.wait_for_store_report("S002", |r| n(r, "redeemed") == 6);
    assert_eq!(n(&report, "refused"), 1);
}

#[test]
fn a_code_refused_at_the_cut_gets_its_notice_right_after_the_receipt() {
    let mut s = CouponSite::start(0);
    let card = card_number(22);
    let issued = s.play(0, Some(&card), card_scan(&card), big_basket());
    let code = issued.coupon_code().expect("a coupon");
    s.play(0, None, vec![Scan::Coupon(code.clone())], small_basket());
    // The photocopy scanned as part of a visit: the notice goes right after that
    // receipt's cut (or before it starts), never inside it.
    let visit = s.play(0, None, vec![Scan::Coupon(code.clone())], small_basket());
    let start = s.tills[0].devices.printer.bytes().len() - visit.printed.len();
    let printed = s.wait_for_notice(0, start);
    let (rest, at) = without_notice(&printed, "already_redeemed", &code);
    assert_eq!(rest, visit.sent, "the POS's bytes unchanged");
    assert!(
        between_receipts(&visit.sent, at),
        "notice at {at} is mid-receipt"
    );
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
