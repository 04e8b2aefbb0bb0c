use super::symbology::{parse_gs1, strip_aim};
use super::*;
use proptest::prelude::*;
use till360_shared::card::with_check_digit;

fn scans(suffix: Suffix, bytes: &[u8]) -> Vec<Result<String, ScanError>> {
    let mut framer = ScanFramer::new(suffix);
    framer.feed(bytes);
    std::iter::from_fn(|| framer.poll()).collect()
}

fn ok(s: &str) -> Result<String, ScanError> {
    Ok(s.to_string())
}

fn prefixes() -> CardPrefixes {
    CardPrefixes::new(["2401", "0201"]).unwrap()
}

fn card13() -> String {
    with_check_digit("240100000012").unwrap()
}

fn as_card(code: &str) -> Result<Scan, ScanError> {
    Ok(Scan::Card(CardNumber::parse(code).unwrap()))
}

fn coupon_code() -> String {
    let key = coupon::TillKey::from_bytes([7; 32]);
    let expires = chrono::NaiveDate::from_ymd_opt(2026, 12, 9).unwrap();
    let fields = coupon::CouponFields::new(5, 1, expires, 2).unwrap();
    coupon::mint(&key, &fields).as_str().to_string()
}

#[test]
fn suffix_parses_and_names_the_allowed_values() {
    assert_eq!("cr".parse::<Suffix>(), Ok(Suffix::Cr));
    assert_eq!("LF".parse::<Suffix>(), Ok(Suffix::Lf));
    assert_eq!("crlf".parse::<Suffix>(), Ok(Suffix::CrLf));
    assert_eq!("stx_etx".parse::<Suffix>(), Ok(Suffix::StxEtx));
    assert_eq!(Suffix::StxEtx.to_string(), "stx_etx");
    let err = "tab".parse::<Suffix>().unwrap_err();
    assert!(
        err.contains("\"cr\", \"lf\", \"crlf\", \"stx_etx\""),
        "{err}"
    );
}

#[test]
fn cr_frames_and_ignores_a_following_lf() {
    assert_eq!(
        scans(Suffix::Cr, b"4006381333931\r\n96385074\r 123 \r"),
        vec![ok("4006381333931"), ok("96385074"), ok("123")]
    );
}

#[test]
fn lf_frames_and_trims_a_preceding_cr() {
    assert_eq!(
        scans(Suffix::Lf, b"4006381333931\r\n96385074\n"),
        vec![ok("4006381333931"), ok("96385074")]
    );
}

#[test]
fn crlf_is_not_split_by_a_lone_cr_or_lf() {
    let out = scans(Suffix::CrLf, b"4006\r381333931\r\n12\n34\r\n\r\r\n5\r\n");
    assert_eq!(out.len(), 3, "{out:?}");
    assert!(matches!(&out[0], Err(ScanError::Garbage(g)) if g == "4006\\x0D381333931"));
    assert!(matches!(&out[1], Err(ScanError::Garbage(g)) if g == "12\\x0A34"));
    assert_eq!(out[2], ok("5"));
}

#[test]
fn stx_etx_frames_and_ignores_line_ends_after_etx() {
    assert_eq!(
        scans(
            Suffix::StxEtx,
            b"\x024006381333931\x03\r\n\x02]E496385074\x03"
        ),
        vec![ok("4006381333931"), ok("]E496385074")]
    );
}

#[test]
fn stx_etx_reports_stray_bytes_and_a_frame_cut_by_a_new_stx() {
    let out = scans(Suffix::StxEtx, b"junk\x024006\x0296385074\x03");
    assert_eq!(
        out,
        vec![
            Err(ScanError::Stray { len: 4 }),
            Err(ScanError::Cut {
                partial: "4006".into(),
                len: 4
            }),
            ok("96385074"),
        ]
    );
    assert!(out[0].as_ref().unwrap_err().is_noise());
}

#[test]
fn line_suffixes_strip_an_stx_etx_wrapper_too() {
    assert_eq!(
        scans(Suffix::Cr, b"\x024006381333931\x03\r"),
        vec![ok("4006381333931")]
    );
}

#[test]
fn gs_is_kept_inside_a_frame_for_gs1() {
    assert_eq!(
        scans(Suffix::Cr, b"]C10104006381333931\x1d10AB\r"),
        vec![ok("]C10104006381333931\x1d10AB")]
    );
}

#[test]
fn finish_drops_a_half_scan_so_it_never_glues_onto_the_next() {
    for suffix in [Suffix::Cr, Suffix::Lf, Suffix::CrLf, Suffix::StxEtx] {
        let mut framer = ScanFramer::new(suffix);
        let start: &[u8] = if suffix == Suffix::StxEtx {
            b"\x024006381"
        } else {
            b"4006381"
        };
        framer.feed(start);
        assert_eq!(framer.poll(), None);
        framer.finish();
        assert_eq!(
            framer.poll(),
            Some(Err(ScanError::Cut {
                partial: "4006381".into(),
                len: 7
            })),
            "{suffix}"
        );
        framer.feed(if suffix == Suffix::StxEtx {
            b"\x0296385074\x03"
        } else {
            b"96385074\r\n"
        });
        assert_eq!(framer.poll(), Some(ok("96385074")), "{suffix}");
    }
}

#[test]
fn split_anywhere_gives_the_same_scans() {
    let stream = b"4006381333931\r\n\x00bad\r\n96385074\r\n";
    let whole = scans(Suffix::CrLf, stream);
    let mut framer = ScanFramer::new(Suffix::CrLf);
    let mut one_by_one = Vec::new();
    for b in stream {
        framer.feed(&[*b]);
        one_by_one.extend(std::iter::from_fn(|| framer.poll()));
    }
    assert_eq!(one_by_one, whole);
    assert_eq!(whole.len(), 3);
}

#[test]
fn garbage_is_reported_and_the_next_scan_still_found() {
    let out = scans(Suffix::Cr, b"\x00\xff\x13noise\r4006381333931\r");
    assert!(matches!(&out[0], Err(ScanError::Garbage(g)) if g.starts_with("\\x00\\xFF")));
    assert_eq!(out[1], ok("4006381333931"));
}

#[test]
fn overlong_frames_are_dropped_and_framing_resyncs() {
    for (suffix, start, end) in [
        (Suffix::CrLf, &b""[..], &b"\r\n"[..]),
        (Suffix::StxEtx, &b"\x02"[..], &b"\x03"[..]),
    ] {
        let mut stream = start.to_vec();
        stream.extend(vec![b'7'; 1000]);
        stream.extend_from_slice(end);
        stream.extend_from_slice(start);
        stream.extend_from_slice(b"4006381333931");
        stream.extend_from_slice(end);
        let mut framer = ScanFramer::new(suffix);
        framer.feed(&stream);
        assert_eq!(
            framer.poll(),
            Some(Err(ScanError::TooLong {
                len: 1000,
                max: MAX_FRAME
            }))
        );
        assert!(framer.frame.capacity() <= 2 * MAX_FRAME);
        assert_eq!(framer.poll(), Some(ok("4006381333931")));
        assert_eq!(framer.poll(), None);
    }
}

#[test]
fn aim_identifiers_are_recognised_and_stripped() {
    let (aim, data) = strip_aim("]E04006381333931");
    assert_eq!(aim.map(|a| a.to_string()).as_deref(), Some("]E0"));
    assert_eq!(data, "4006381333931");
    assert_eq!(strip_aim("]Q3x").0.map(AimId::is_gs1), Some(true));
    assert_eq!(strip_aim("]C0x").0.map(AimId::is_gs1), Some(false));
    // Not an identifier: left alone.
    assert_eq!(strip_aim("]1Ex"), (None, "]1Ex"));
    assert_eq!(strip_aim("]E"), (None, "]E"));

    let card = card13();
    let ean8 = with_check_digit("2401003").unwrap();
    for scan in [
        format!("]E0{card}"),
        format!("]C0{card}"),
        format!("]Q1{card}"),
        format!("]I0{card}"),
        format!("]X9{card}"),
        card.clone(),
    ] {
        assert_eq!(classify(&scan, &prefixes()), as_card(&card), "{scan}");
    }
    assert_eq!(classify(&format!("]E4{ean8}"), &prefixes()), as_card(&ean8));
    // EAN-13 with a 2- and a 5-digit add-on.
    assert_eq!(
        classify(&format!("]E3{card}12"), &prefixes()),
        as_card(&card)
    );
    assert_eq!(
        classify(&format!("]E3{card}12345"), &prefixes()),
        as_card(&card)
    );
}

#[test]
fn upc_a_is_normalised_to_ean_13() {
    let upc = with_check_digit("20100000001").unwrap();
    assert_eq!(upc.len(), 12);
    let scanned = classify(&upc, &prefixes()).unwrap();
    assert_eq!(scanned, as_card(&format!("0{upc}")).unwrap());
    match scanned {
        Scan::Card(c) => assert_eq!(c.as_str(), format!("0{upc}")),
        other => panic!("{other:?}"),
    }
    // The same card sent as EAN-13 by a scanner with AIM ids on.
    assert_eq!(
        classify(&format!("]E00{upc}"), &prefixes()),
        as_card(&format!("0{upc}"))
    );
}

#[test]
fn classify_refuses_what_is_not_ours() {
    let card = card13();
    assert!(matches!(
        classify("4006381333931", &prefixes()),
        Err(ScanError::Card(CardError::NotLoyalty(_)))
    ));
    let mut bad = card.into_bytes();
    bad[12] = b'0' + (bad[12] - b'0' + 1) % 10;
    assert!(matches!(
        classify(std::str::from_utf8(&bad).unwrap(), &prefixes()),
        Err(ScanError::Card(CardError::BadCheckDigit { .. }))
    ));
    assert!(matches!(
        classify("HELLO", &prefixes()),
        Err(ScanError::Card(CardError::NotDigits(_)))
    ));
    assert_eq!(classify("  ", &prefixes()), Err(ScanError::Empty));
    assert_eq!(classify("]E0", &prefixes()), Err(ScanError::Empty));
}

#[test]
fn classify_knows_coupon_codes_by_their_check_digit() {
    let code = coupon_code();
    assert_eq!(
        classify(&format!("]C0{code}"), &prefixes()),
        Ok(Scan::Coupon(code.clone()))
    );
    // One digit misread: not a coupon, and refused like any other unknown scan.
    let mut misread = code.into_bytes();
    misread[5] = b'0' + (misread[5] - b'0' + 1) % 10;
    assert!(matches!(
        classify(std::str::from_utf8(&misread).unwrap(), &prefixes()),
        Err(ScanError::Card(_))
    ));
}

#[test]
fn gs1_128_carries_a_card_in_its_gtin() {
    let card = card13();
    let gtin14 = format!("0{card}");
    for scan in [
        format!("]C101{gtin14}"),
        format!("]C101{gtin14}17261231\x1d10LOT7\x1d"),
        format!("]C110LOT7\x1d01{gtin14}"),
        format!("\x1d01{gtin14}10LOT7"),
        format!("]e001{gtin14}3103000500"),
        format!("(01){gtin14}(17)261231(10)LOT7"),
        // No identifier, no FNC1: the bare element string of a GS1-128 label.
        format!("01{gtin14}17261231"),
        // An AI we cannot table after the GTIN does not hide the card.
        format!("]C101{gtin14}7777XYZ"),
    ] {
        assert_eq!(classify(&scan, &prefixes()), as_card(&card), "{scan:?}");
    }
    // A GTIN-8 card inside a GTIN-14.
    let ean8 = with_check_digit("2401003").unwrap();
    assert_eq!(
        classify(&format!("]C101000000{ean8}"), &prefixes()),
        as_card(&ean8)
    );
}

#[test]
fn gs1_coupon_ais_go_to_the_coupon_path() {
    let code = coupon_code();
    for scan in [
        format!("]C18110{code}"),
        format!("]e08112{code}"),
        format!("(8110){code}"),
        format!("]C10104006381333931\x1d8110{code}"),
    ] {
        assert_eq!(
            classify(&scan, &prefixes()),
            Ok(Scan::Coupon(code.clone())),
            "{scan:?}"
        );
    }
}

#[test]
fn other_gs1_symbols_are_refused_with_what_was_read() {
    let err = classify(
        "]C10104006381333931\x1d4144006381333931\x1d7240PROTO",
        &prefixes(),
    )
    .unwrap_err();
    assert!(!err.is_noise());
    match &err {
        ScanError::Gs1 { elements, problem } => {
            assert_eq!(elements, "(01)04006381333931(414)4006381333931(7240)PROTO");
            assert_eq!(problem, &None);
        }
        other => panic!("{other:?}"),
    }
    // A GTIN with a wrong check digit is no card even with our prefix.
    let card = card13();
    let mut gtin14 = format!("0{card}").into_bytes();
    gtin14[13] = b'0' + (gtin14[13] - b'0' + 1) % 10;
    let scan = format!("]C101{}", String::from_utf8(gtin14).unwrap());
    assert!(matches!(
        classify(&scan, &prefixes()),
        Err(ScanError::Gs1 { .. })
    ));
}

#[test]
fn gs1_fixed_and_variable_lengths() {
    let (elements, problem) = parse_gs1("0104006381333931310300050017261231\x1d10A\x1d21S1");
    assert_eq!(problem, None);
    let pairs: Vec<(&str, &str)> = elements
        .iter()
        .map(|e| (e.ai.as_str(), e.value.as_str()))
        .collect();
    assert_eq!(
        pairs,
        vec![
            ("01", "04006381333931"),
            ("3103", "000500"),
            ("17", "261231"),
            ("10", "A"),
            ("21", "S1")
        ]
    );
    assert_eq!(
        parse_gs1("01040063813"),
        (
            vec![],
            Some(Gs1Error::Short {
                ai: "01".into(),
                want: 14,
                found: 9
            })
        )
    );
    let (elements, problem) = parse_gs1(&format!("10{}", "9".repeat(21)));
    assert!(elements.is_empty());
    assert_eq!(
        problem,
        Some(Gs1Error::TooLong {
            ai: "10".into(),
            max: 20
        })
    );
    assert!(matches!(parse_gs1("31"), (_, Some(Gs1Error::UnknownAi(_)))));
    assert!(matches!(
        parse_gs1("(01)123"),
        (_, Some(Gs1Error::Short { .. }))
    ));
    assert!(matches!(
        parse_gs1("(0x)123"),
        (_, Some(Gs1Error::UnknownAi(_)))
    ));
    assert!(matches!(
        parse_gs1("(01"),
        (_, Some(Gs1Error::BadBrackets(_)))
    ));
    assert_eq!(parse_gs1("\x1d"), (vec![], Some(Gs1Error::Nothing)));
}

#[test]
fn counts_tell_cards_coupons_ignored_and_noise_apart() {
    let mut counts = ScanCounts::default();
    counts.record(&classify(&card13(), &prefixes()));
    counts.record(&classify(&coupon_code(), &prefixes()));
    counts.record(&classify("4006381333931", &prefixes()));
    counts.record(&Err(ScanError::Stray { len: 3 }));
    assert_eq!(
        counts,
        ScanCounts {
            cards: 1,
            coupons: 1,
            ignored: 1,
            noise: 1
        }
    );
}

/// The inputs the fuzzer kept (agent/tests/data/fuzz/scanner/), replayed on every run.
#[test]
// A test reads its corpus from disk; the framing it checks stays pure.
#[allow(clippy::disallowed_methods)]
fn fuzz_regressions_hold() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz/scanner");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz regression folder") {
        let path = entry.unwrap().path();
        if path.is_file() {
            check_framing_invariants(&std::fs::read(&path).unwrap());
            seen += 1;
        }
    }
    assert!(seen > 0, "no regression inputs in {}", dir.display());
}

fn any_suffix() -> impl Strategy<Value = Suffix> {
    prop_oneof![
        Just(Suffix::Cr),
        Just(Suffix::Lf),
        Just(Suffix::CrLf),
        Just(Suffix::StxEtx)
    ]
}

fn frame(suffix: Suffix, scan: &str) -> Vec<u8> {
    match suffix {
        Suffix::Cr => format!("{scan}\r"),
        Suffix::Lf => format!("{scan}\n"),
        Suffix::CrLf => format!("{scan}\r\n"),
        Suffix::StxEtx => format!("\x02{scan}\x03"),
    }
    .into_bytes()
}

proptest! {
    /// Whatever noise comes first, a good scan after a frame end is still found.
    #[test]
    fn noise_never_hides_the_next_good_scan(
        noise in proptest::collection::vec(any::<u8>(), 0..400),
        suffix in any_suffix(),
    ) {
        let mut stream = noise;
        // Close whatever the noise left open, then the good scan.
        stream.extend(frame(suffix, ""));
        stream.extend(frame(suffix, "4006381333931"));
        let out = scans(suffix, &stream);
        prop_assert_eq!(out.last(), Some(&ok("4006381333931")));
    }

    /// Random bytes split anywhere never panic and give the same frames as unsplit.
    #[test]
    fn random_bytes_split_anywhere_frame_the_same(
        bytes in proptest::collection::vec(
            prop_oneof![any::<u8>(), Just(b'\r'), Just(b'\n'), Just(0x02u8), Just(0x03u8), Just(b'4')],
            0..600,
        ),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        suffix in any_suffix(),
    ) {
        let mut whole = ScanFramer::new(suffix);
        whole.feed(&bytes);
        whole.finish();
        let expected: Vec<_> = std::iter::from_fn(|| whole.poll()).collect();
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut framer = ScanFramer::new(suffix);
        let mut got = Vec::new();
        let mut from = 0;
        for to in points.into_iter().chain([bytes.len()]) {
            framer.feed(&bytes[from..to]);
            got.extend(std::iter::from_fn(|| framer.poll()));
            from = to;
        }
        framer.finish();
        got.extend(std::iter::from_fn(|| framer.poll()));
        prop_assert_eq!(&got, &expected);
        for scan in got.iter().flatten() {
            prop_assert!(scan.len() <= MAX_FRAME);
            let _ = classify(scan, &prefixes());
        }
    }

    /// Classification never panics on any text, GS1-looking or not.
    #[test]
    fn classify_never_panics(
        text in "(\\]([A-Za-z][0-9])?)?[\\(\\)0-9\\x1d A-Z]{0,80}",
    ) {
        let _ = classify(&text, &prefixes());
        let _ = parse_gs1(&text);
    }
}
