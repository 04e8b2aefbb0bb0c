//! Malformed CSV through the real `till360-hub import` binary: a file with an unclosed quote or
//! a row of the wrong width is not applied at all, and the bad lines are named.

use std::path::Path;
use std::process::Command;

use crate::common::Site;

const HEADER: &str = "customer_no,first_name,last_name,email,phone,birth_date,postal_code,\
                      member_since,cards,language,consent_email,consent_sms,consent_post,\
                      consent_personalization";

/// A test hub's site (the engine `TILL360_TEST_ENGINE` picks) and its `hub.toml`.
fn site() -> (Site, String) {
    let site = Site::new();
    let config = site.dir.path().join("hub.toml");
    let config = config.to_str().unwrap().to_string();
    (site, config)
}

/// Runs `till360-hub import KIND FILE`; (success, stdout + stderr).
fn import(config: &str, kind: &str, dir: &Path, name: &str, body: &str) -> (bool, String) {
    let file = dir.join(name);
    std::fs::write(&file, body).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_till360-hub"))
        .args(["import", kind, file.to_str().unwrap(), "--config", config])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn count(site: &Site, table: &str) -> i64 {
    site.count(&format!("SELECT count(*) FROM {table}"), &[])
}

fn customer(no: &str, first: &str) -> String {
    format!("{no},{first},Jansen,,,,,,,nl,yes,no,no,yes")
}

#[test]
fn an_unclosed_quote_in_customers_is_refused_with_its_line_and_nothing_is_applied() {
    let (site, config) = site();
    let dir = &site.dir;
    // Line 3 opens a quote it never closes: the reader would take lines 3..=5 as one field.
    let body = format!(
        "{HEADER}\n{}\nC002,\"Piet,Jansen,,,,,,,nl,yes,no,no,yes\n{}\n{}\n",
        customer("C001", "Anna"),
        customer("C003", "Sofie"),
        customer("C004", "Kees"),
    );
    let (ok, out) = import(&config, "customers", dir.path(), "crm.csv", &body);
    assert!(!ok, "a file with an unclosed quote is refused: {out}");
    assert!(out.contains("line 3"), "the line is named: {out}");
    assert!(
        out.contains("quote"),
        "the reason says what is wrong: {out}"
    );
    assert!(out.contains("NOT applied"), "{out}");
    assert_eq!(count(&site, "profiles"), 0, "nothing applied: {out}");

    // An unclosed quote on the last line of a file without a final newline.
    let body = format!(
        "{HEADER}\n{}\nC002,Piet,Jansen,,,,,,,nl,yes,no,no,\"yes",
        customer("C001", "Anna")
    );
    let (ok, out) = import(&config, "customers", dir.path(), "crm2.csv", &body);
    assert!(
        !ok,
        "an unclosed quote at the end of the file is refused: {out}"
    );
    assert!(out.contains("line 3") && out.contains("quote"), "{out}");
    assert_eq!(count(&site, "profiles"), 0, "nothing applied: {out}");
}

#[test]
fn customer_rows_of_the_wrong_width_are_refused_with_their_lines() {
    let (site, config) = site();
    let dir = &site.dir;
    let body = format!(
        "{HEADER}\n{}\nC002,Piet,Jansen,,,\n{}\n{},extra\n",
        customer("C001", "Anna"),
        customer("C003", "Sofie"),
        customer("C004", "Kees"),
    );
    let (ok, out) = import(&config, "customers", dir.path(), "crm.csv", &body);
    assert!(!ok, "rows of the wrong width are refused: {out}");
    assert!(out.contains("line 3: 6 fields"), "too few named: {out}");
    assert!(out.contains("line 5: 15 fields"), "too many named: {out}");
    assert!(out.contains("rejected 2"), "{out}");
    assert_eq!(count(&site, "profiles"), 0, "nothing applied: {out}");

    // The good rows alone import.
    let body = format!(
        "{HEADER}\n{}\n{}\n",
        customer("C001", "Anna"),
        customer("C003", "Sofie")
    );
    let (ok, out) = import(&config, "customers", dir.path(), "good.csv", &body);
    assert!(ok, "{out}");
    assert_eq!(count(&site, "profiles"), 2);
}

#[test]
fn malformed_product_rows_are_refused_with_their_lines() {
    let (site, config) = site();
    let dir = &site.dir;
    let header = "sku,description,category,sensitive";
    let body = format!(
        "{header}\n8710000000017,Running shoes,sports,no\n8710000000024,Yoga mat,sports\n\
         8710000000031,\"Vitamins,health,yes\n8710000000048,Towel,home,no\n"
    );
    let (ok, out) = import(&config, "products", dir.path(), "products.csv", &body);
    assert!(!ok, "{out}");
    assert!(out.contains("line 3: 3 fields"), "a short row named: {out}");
    assert!(out.contains("line 4") && out.contains("quote"), "{out}");
    assert_eq!(count(&site, "products"), 0, "nothing applied: {out}");
}
