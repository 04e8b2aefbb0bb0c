//! The coupon block, read back by the agent's own ESC/POS parser: the printed lines are
//! the offer, the expiry and the code, the barcode data never shows up as text, and the
//! POS's code page is back in force afterwards.

use chrono::NaiveDate;
use proptest::prelude::*;
use till360_agent::escpos::encode::{write_coupon_block, PrintedCoupon, PrinterModes};
use till360_agent::escpos::{CodePage, EscPosParser, PrintEvent};
use till360_shared::coupon::{derive_till_key, mint, verify, CouponFields};

const ESC: u8 = 0x1B;
const GS: u8 = 0x1D;
const LF: u8 = 0x0A;

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn coupon(code: &str) -> PrintedCoupon {
    PrintedCoupon {
        headline: "Bedankt voor je aankoop".into(),
        offer: "€5 korting bij je volgende aankoop vanaf €25".into(),
        expiry_label: "Geldig t/m".into(),
        expires: date(2026, 12, 9),
        code: code.into(),
        columns: 32,
    }
}

fn block(coupon: &PrintedCoupon, page: CodePage) -> Vec<u8> {
    let mut out = Vec::new();
    write_coupon_block(&mut out, coupon, &PrinterModes::epson(page)).unwrap();
    out
}

fn events(parser: &mut EscPosParser, bytes: &[u8]) -> Vec<PrintEvent> {
    parser.feed(bytes);
    std::iter::from_fn(|| parser.poll()).collect()
}

fn lines(events: &[PrintEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            PrintEvent::Line(l) => Some(l.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn parser_reads_offer_expiry_and_code_and_skips_the_barcode() {
    let key = derive_till_key(b"master secret for the test hub!!", "S001", "T01");
    let fields = CouponFields::new(7, 12, date(2026, 12, 9), 1).unwrap();
    let code = mint(&key, &fields);
    let bytes = block(&coupon(code.as_str()), CodePage::Cp858);

    // The POS selected CP858 (ESC t 19) although the printer is configured for CP437.
    let mut parser = EscPosParser::new(CodePage::Cp437);
    let before = events(&mut parser, &[ESC, b't', 19, b'X', LF]);
    assert_eq!(lines(&before), vec!["X"]);
    let seen = events(&mut parser, &bytes);

    let separator = "-".repeat(32);
    assert_eq!(
        lines(&seen),
        vec![
            separator.clone(),
            "Bedankt voor je aankoop".to_string(),
            "€5 korting bij je volgende".to_string(),
            "aankoop vanaf €25".to_string(),
            "Geldig t/m 09-12-2026".to_string(),
            code.grouped(),
            separator,
        ]
    );
    assert!(
        !seen.iter().any(|e| matches!(e, PrintEvent::Diagnostic(_))),
        "{seen:?}"
    );
    assert_eq!(
        parser.code_page(),
        CodePage::Cp858,
        "POS code page restored"
    );
    assert!(!parser.in_command());

    // The printed code is the one that verifies (a cashier may type it in).
    let printed = &lines(&seen)[5];
    assert_eq!(verify(&key, printed), Ok(fields));
}

#[test]
fn restores_the_pos_page_even_when_it_differs_from_the_printer_default() {
    let bytes = block(&coupon("12345678"), CodePage::Cp866);
    let mut parser = EscPosParser::new(CodePage::Cp437);
    let seen = events(&mut parser, &bytes);
    assert_eq!(parser.code_page(), CodePage::Cp866);
    // CP866 has no euro sign: it prints as '?', never as a stray byte.
    assert_eq!(lines(&seen)[2], "?5 korting bij je volgende");
    // Text after the block decodes in the POS's page.
    let after = events(&mut parser, &[0x86, LF]);
    assert_eq!(lines(&after), vec!["Ж"]);
}

#[test]
fn non_digit_code_is_printed_with_code_set_b_and_skipped() {
    let bytes = block(&coupon("WELKOM-2026"), CodePage::Cp437);
    let at = bytes
        .windows(3)
        .position(|w| w == [GS, b'k', 73])
        .expect("a Code128 barcode");
    let n = usize::from(bytes[at + 3]);
    assert_eq!(&bytes[at + 4..at + 4 + n], b"{BWELKOM-2026");
    let mut parser = EscPosParser::new(CodePage::Cp437);
    let seen = lines(&events(&mut parser, &bytes));
    assert_eq!(seen[5], "WELKOM-2026");
    assert_eq!(seen.len(), 7);
}

#[test]
fn a_code_too_long_for_a_barcode_writes_nothing() {
    let mut out = Vec::new();
    let result = write_coupon_block(
        &mut out,
        &coupon(&"A".repeat(300)),
        &PrinterModes::epson(CodePage::Cp437),
    );
    assert_eq!(
        result.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::InvalidInput)
    );
    assert!(out.is_empty());
}

#[test]
fn golden_block_bytes() {
    let coupon = PrintedCoupon {
        headline: "Bedankt!".into(),
        offer: "€5 korting".into(),
        expiry_label: "Geldig t/m".into(),
        expires: date(2026, 12, 9),
        code: "12345678".into(),
        columns: 12,
    };
    let mut expected = Vec::new();
    expected.extend_from_slice(&[ESC, b'@', ESC, b't', 19, ESC, b'a', 1]);
    expected.extend_from_slice(b"------------\n");
    expected.extend_from_slice(&[ESC, b'E', 1, GS, b'!', 1]);
    expected.extend_from_slice(b"Bedankt!\n");
    expected.extend_from_slice(&[GS, b'!', 0, ESC, b'E', 0]);
    expected.extend_from_slice(b"\xD55 korting\n");
    // "Geldig t/m 09-12-2026" is wider than 12 columns: wrapped at the space.
    expected.extend_from_slice(b"Geldig t/m\n09-12-2026\n");
    expected.extend_from_slice(&[GS, b'h', 80, GS, b'w', 2, GS, b'H', 0]);
    expected.extend_from_slice(&[GS, b'k', 73, 6, b'{', b'C', 12, 34, 56, 78]);
    expected.extend_from_slice(b"1234 5678\n------------\n");
    expected.extend_from_slice(&[ESC, b'@', ESC, b't', 19]);
    assert_eq!(block(&coupon, CodePage::Cp858), expected);
}

proptest! {
    /// Whatever the campaign texts contain (control characters, emoji, any script), the
    /// block never smuggles a command into the stream: the parser sees lines within the
    /// width, no diagnostics, the expiry, the code, and the POS's page afterwards.
    #[test]
    fn any_text_stays_text(
        headline in "\\PC{0,40}",
        offer in ".{0,120}",
        label in "[\\x00-\\x7f]{0,20}",
        digits in "[0-9]{2,24}",
        columns in 10usize..64, // the date (10 characters) fits
    ) {
        let coupon = PrintedCoupon {
            headline,
            offer,
            expiry_label: label,
            expires: date(2027, 1, 31),
            code: digits.clone(),
            columns,
        };
        let bytes = block(&coupon, CodePage::Cp852);
        let mut parser = EscPosParser::new(CodePage::Cp437);
        let seen = events(&mut parser, &bytes);
        prop_assert!(!seen.iter().any(|e| matches!(e, PrintEvent::Diagnostic(_))), "{:?}", seen);
        prop_assert!(!seen.iter().any(|e| matches!(e, PrintEvent::Cut { .. })), "no cut");
        let printed = lines(&seen);
        prop_assert!(printed.iter().all(|l| l.chars().count() <= columns), "{:?}", printed);
        let expiry = printed.iter().rposition(|l| l.ends_with("31-01-2027"));
        prop_assert!(expiry.is_some(), "{:?}", printed);
        let expiry = expiry.unwrap_or_default();
        // Between the expiry and the closing separator: the code, wrapped if need be.
        let code: String = printed[expiry + 1..printed.len() - 1].concat().replace(' ', "");
        prop_assert_eq!(code, digits);
        prop_assert_eq!(parser.code_page(), CodePage::Cp852);
        prop_assert!(!parser.in_command());
    }
}

#[test]
fn the_code_page_is_restored_with_the_printer_models_own_number() {
    // A printer whose table puts CP858 at ESC t 5 (not Epson's 19).
    let table = till360_agent::escpos::EscTTable::epson().with(5, CodePage::Cp858);
    let mut parser = EscPosParser::with_esc_t(CodePage::Cp437, table);
    parser.feed(&[0x1B, b't', 5]);
    while parser.poll().is_some() {}
    let modes = PrinterModes::of(&parser);
    assert_eq!((modes.code_page, modes.esc_t), (CodePage::Cp858, 5));
    let mut out = Vec::new();
    write_coupon_block(&mut out, &coupon("123456789012"), &modes).unwrap();
    assert!(
        out.windows(3).any(|w| w == [0x1B, b't', 5]),
        "the block selects and restores the page as this printer numbers it"
    );
    assert!(!out.windows(3).any(|w| w == [0x1B, b't', 19]));
}
