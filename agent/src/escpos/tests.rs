use super::commands::{lookup, Lookup, COMMANDS};
use super::*;
use proptest::prelude::*;

const ESC: u8 = 0x1B;
const GS: u8 = 0x1D;
const FS: u8 = 0x1C;
const DLE: u8 = 0x10;

/// Bytes that would print as a receipt line if a parser let them through.
const POISON: &[u8] = b"TOTAAL 99,99\nPOISON\n";

fn events_of(bytes: &[u8]) -> Vec<PrintEvent> {
    let mut parser = EscPosParser::new(CodePage::Cp437);
    parser.feed(bytes);
    drain(&mut parser)
}

fn drain(parser: &mut EscPosParser) -> Vec<PrintEvent> {
    std::iter::from_fn(|| parser.poll()).collect()
}

fn lines_of(bytes: &[u8]) -> Vec<String> {
    events_of(bytes)
        .into_iter()
        .filter_map(|e| match e {
            PrintEvent::Line(l) => Some(l),
            _ => None,
        })
        .collect()
}

fn diagnostics(events: &[PrintEvent]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, PrintEvent::Diagnostic(_)))
        .count()
}

/// `before`, then the command, then `after`: the command must vanish without a trace.
fn assert_skipped(name: &str, command: &[u8]) {
    let mut stream = b"before\n".to_vec();
    stream.extend_from_slice(command);
    stream.extend_from_slice(b"after\n");
    let events = events_of(&stream);
    assert_eq!(
        events,
        vec![
            PrintEvent::Line("before".into()),
            PrintEvent::Line("after".into())
        ],
        "{name}"
    );
}

fn with_poison(mut head: Vec<u8>, repeat: usize) -> Vec<u8> {
    for _ in 0..repeat {
        head.extend_from_slice(POISON);
    }
    head
}

#[test]
fn table_codes_are_unambiguous() {
    for a in COMMANDS {
        for b in COMMANDS {
            if std::ptr::eq(a, b) || a.prefix != b.prefix {
                continue;
            }
            assert!(
                !b.code.starts_with(a.code),
                "{} is a prefix of {}",
                a.name,
                b.name
            );
        }
        let mut bytes = vec![a.prefix];
        bytes.extend_from_slice(a.code);
        assert!(matches!(lookup(&bytes), Lookup::Found(c) if c.name == a.name));
    }
}

#[test]
fn lines_end_at_lf_cr_lf_lone_cr_and_print_feed() {
    let stream = b"one  \ntwo\r\nthree\rfour\x1bd\x03five\x1bJ\x10six\x0c\n";
    assert_eq!(
        lines_of(stream),
        ["one", "two", "three", "four", "five", "six", ""]
    );
    // A print-and-feed with nothing buffered only feeds paper.
    assert_eq!(lines_of(b"x\n\x1bd\x05\x1bJ\x20y\n"), ["x", "y"]);
    // Blank lines printed with LF are kept.
    assert_eq!(lines_of(b"a\n\nb\n"), ["a", "", "b"]);
}

#[test]
fn tabs_become_spaces_and_controls_are_dropped() {
    assert_eq!(lines_of(b"a\tb\x00\x07\x7fc \t\n"), ["a bc"]);
}

#[test]
fn images_barcodes_and_codes_are_skipped() {
    // GS v 0: 3 bytes wide, 14 rows = 42 bytes of data.
    let raster = with_poison(vec![GS, b'v', b'0', 0, 3, 0, 14, 0], 0);
    let mut raster = raster;
    raster.extend(POISON.iter().cycle().take(42));
    assert_skipped("GS v 0", &raster);

    // ESC * m=33 (24-dot): 14 columns * 3 bytes = 42.
    let mut bit_image = vec![ESC, b'*', 33, 14, 0];
    bit_image.extend(POISON.iter().cycle().take(42));
    assert_skipped("ESC * 33", &bit_image);
    // ESC * m=0 (8-dot): 20 columns * 1 byte.
    let mut bit_image = vec![ESC, b'*', 0, 20, 0];
    bit_image.extend(POISON.iter().take(20));
    assert_skipped("ESC * 0", &bit_image);

    // GS k m=4 (CODE39) NUL-terminated; GS k m=73 (CODE128) length-prefixed.
    let mut barcode = vec![GS, b'k', 4];
    barcode.extend_from_slice(b"TOTAAL 99,99 POISON\x00");
    assert_skipped("GS k 4", &barcode);
    let mut barcode = vec![GS, b'k', 73, POISON.len() as u8];
    barcode.extend_from_slice(POISON);
    assert_skipped("GS k 73", &barcode);

    // GS ( k: QR store data (pL pH count cn fn m and the data).
    let data = with_poison(vec![49, 80, 48], 3);
    let mut qr = vec![GS, b'(', b'k', data.len() as u8, 0];
    qr.extend_from_slice(&data);
    assert_skipped("GS ( k", &qr);

    // GS ( L with a 2-byte length and GS 8 L with a 4-byte length.
    let data = with_poison(vec![48, 112, 48, 1, 1, 49], 20);
    let mut graphics = vec![
        GS,
        b'(',
        b'L',
        (data.len() % 256) as u8,
        (data.len() / 256) as u8,
    ];
    graphics.extend_from_slice(&data);
    assert_skipped("GS ( L", &graphics);
    let len = (data.len() as u32).to_le_bytes();
    let mut graphics = vec![GS, b'8', b'L', len[0], len[1], len[2], len[3]];
    graphics.extend_from_slice(&data);
    assert_skipped("GS 8 L", &graphics);

    // GS * x y: 2 * 3 * 8 = 48 bytes.
    let mut download = vec![GS, b'*', 2, 3];
    download.extend(POISON.iter().cycle().take(48));
    assert_skipped("GS *", &download);

    // ESC & y=3 chars 'A'..'B': each x=2 then 6 bytes.
    let mut user = vec![ESC, b'&', 3, b'A', b'B'];
    for _ in 0..2 {
        user.push(2);
        user.extend_from_slice(&POISON[..6]);
    }
    assert_skipped("ESC &", &user);

    // FS q with two NV images of 1x1 (8 bytes each).
    let mut nv = vec![FS, b'q', 2];
    for _ in 0..2 {
        nv.extend_from_slice(&[1, 0, 1, 0]);
        nv.extend_from_slice(&POISON[..8]);
    }
    assert_skipped("FS q", &nv);

    // FS ( A pL pH with data.
    let mut fs = vec![FS, b'(', b'A', 4, 0];
    fs.extend_from_slice(b"ABCD");
    assert_skipped("FS ( A", &fs);
}

#[test]
fn argument_commands_are_skipped() {
    let commands: &[(&str, &[u8])] = &[
        ("ESC @", &[ESC, b'@']),
        ("ESC !", &[ESC, b'!', b'X']),
        ("ESC E", &[ESC, b'E', b'1']),
        ("ESC -", &[ESC, b'-', b'2']),
        ("ESC a", &[ESC, b'a', b'1']),
        ("ESC 2", &[ESC, b'2']),
        ("ESC 3", &[ESC, b'3', b'Z']),
        ("ESC R", &[ESC, b'R', 2]),
        ("ESC {", &[ESC, b'{', b'1']),
        ("ESC V", &[ESC, b'V', b'1']),
        ("ESC M", &[ESC, b'M', b'1']),
        ("ESC G", &[ESC, b'G', b'1']),
        ("ESC SP", &[ESC, b' ', b'W']),
        ("ESC $", &[ESC, b'$', b'A', b'B']),
        ("ESC \\", &[ESC, b'\\', b'A', b'B']),
        ("ESC c 3", &[ESC, b'c', b'3', b'X']),
        ("ESC c 4", &[ESC, b'c', b'4', b'X']),
        ("ESC c 5", &[ESC, b'c', b'5', b'X']),
        ("ESC p", &[ESC, b'p', 0, b'2', b'P']),
        ("ESC D", &[ESC, b'D', 8, 16, 24, 0]),
        ("GS !", &[GS, b'!', b'A']),
        ("GS B", &[GS, b'B', b'1']),
        ("GS H", &[GS, b'H', b'2']),
        ("GS h", &[GS, b'h', b'P']),
        ("GS w", &[GS, b'w', b'3']),
        ("GS f", &[GS, b'f', b'1']),
        ("GS L", &[GS, b'L', b'A', b'B']),
        ("GS W", &[GS, b'W', b'A', b'B']),
        ("GS I", &[GS, b'I', b'A']),
        ("FS p", &[FS, b'p', b'1', b'0']),
        ("FS .", &[FS, b'.']),
        ("FS &", &[FS, b'&']),
        ("DLE ENQ", &[DLE, 0x05, b'2']),
        ("DLE DC4", &[DLE, 0x14, 1, b'A', b'B']),
    ];
    for (name, command) in commands {
        assert_skipped(name, command);
    }
}

#[test]
fn cuts_flush_pending_text_and_carry_their_offset() {
    let stream = b"abc\nno newline\x1dVA\x03tail\x1bi\x1dV\x01\x1bm";
    let events = events_of(stream);
    assert_eq!(
        events,
        vec![
            PrintEvent::Line("abc".into()),
            PrintEvent::Line("no newline".into()),
            PrintEvent::Cut {
                offset: 14,
                partial: false
            },
            PrintEvent::Line("tail".into()),
            PrintEvent::Cut {
                offset: 22,
                partial: true
            },
            PrintEvent::Cut {
                offset: 24,
                partial: true
            },
            PrintEvent::Cut {
                offset: 27,
                partial: true
            },
        ]
    );
    // An unknown cut mode cuts nothing.
    let events = events_of(b"\x1dV\x07x\n");
    assert_eq!(diagnostics(&events), 1);
    assert_eq!(events[1], PrintEvent::Line("x".into()));
}

#[test]
fn status_requests_are_reported() {
    let events = events_of(b"\x10\x04\x01\x10\x04\x07\x01\x1dr\x01\x1da\x0fok\n");
    assert_eq!(
        events,
        vec![
            PrintEvent::StatusRequest {
                command: StatusCommand::DleEot(1)
            },
            PrintEvent::StatusRequest {
                command: StatusCommand::DleEot(7)
            },
            PrintEvent::StatusRequest {
                command: StatusCommand::GsR(1)
            },
            PrintEvent::StatusRequest {
                command: StatusCommand::GsA(15)
            },
            PrintEvent::Line("ok".into()),
        ]
    );
}

#[test]
fn code_pages_switch_with_esc_t_and_reset_with_esc_at() {
    let mut parser = EscPosParser::new(CodePage::Cp850);
    // 0xD5 is dotless i in CP850 and the euro sign in CP858; 0x80 is the euro in CP1252.
    parser.feed(b"\xd5\n\x1bt\x13\xd5 1,00\n\x1bt\x10\x80 2,00\n\x1bt\x63\x80\n\x1b@\xd5\n");
    let events = drain(&mut parser);
    assert_eq!(events[0], PrintEvent::Line("ı".into()));
    assert_eq!(events[1], PrintEvent::Line("€ 1,00".into()));
    assert_eq!(events[2], PrintEvent::Line("€ 2,00".into()));
    assert!(matches!(&events[3], PrintEvent::Diagnostic(m) if m.contains("ESC t 99")));
    // Unknown page: CP1252 stays active.
    assert_eq!(events[4], PrintEvent::Line("€".into()));
    assert_eq!(events[5], PrintEvent::Line("ı".into()));
    assert_eq!(parser.code_page(), CodePage::Cp850);
}

#[test]
fn code_page_names_and_numbers() {
    assert_eq!(CodePage::from_name("CP858"), Some(CodePage::Cp858));
    assert_eq!(CodePage::from_name("pc858"), Some(CodePage::Cp858));
    assert_eq!(CodePage::from_name("windows-1252"), Some(CodePage::Cp1252));
    assert_eq!(CodePage::from_name("cp437"), Some(CodePage::Cp437));
    assert_eq!(CodePage::from_name("Cp850"), Some(CodePage::Cp850));
    assert_eq!(CodePage::from_name("utf8"), None);
    assert_eq!(CodePage::from_esc_t(0), Some(CodePage::Cp437));
    assert_eq!(CodePage::from_esc_t(2), Some(CodePage::Cp850));
    assert_eq!(CodePage::from_esc_t(16), Some(CodePage::Cp1252));
    assert_eq!(CodePage::from_esc_t(19), Some(CodePage::Cp858));
    assert_eq!(CodePage::from_esc_t(1), None);
    assert_eq!(CodePage::Cp858.decode(0xD5), '€');
    assert_eq!(CodePage::Cp1252.decode(0x80), '€');
    assert_eq!(CodePage::Cp437.decode(0x81), 'ü');
    assert_eq!(CodePage::Cp850.decode(0x9B), 'ø');
    assert_eq!(CodePage::Cp1252.decode(0xE9), 'é');
    assert_eq!(CodePage::Cp866.decode(0x80), 'А');
    assert_eq!(CodePage::Cp852.decode(0xA5), 'ą');
}

#[test]
fn unknown_commands_are_diagnostics_and_skip_the_command_byte() {
    let events = events_of(b"\x1b\x01abc\n\x1d\xffdef\n\x10Xghi\n");
    assert_eq!(diagnostics(&events), 3);
    let lines: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, PrintEvent::Line(_)))
        .cloned()
        .collect();
    assert_eq!(
        lines,
        vec![
            PrintEvent::Line("abc".into()),
            PrintEvent::Line("def".into()),
            PrintEvent::Line("Xghi".into())
        ]
    );
}

#[test]
fn truncated_command_waits_and_emits_nothing() {
    let mut parser = EscPosParser::new(CodePage::Cp437);
    parser.feed(b"done\nhalf");
    parser.feed(&[GS, b'v', b'0', 0, 10]);
    assert_eq!(drain(&mut parser), vec![PrintEvent::Line("done".into())]);
    assert!(parser.in_command());
    assert_eq!(parser.offset(), 14);
    // The rest of the header and the data arrive later: still no trace of the image.
    parser.feed(&[0, 1, 0]);
    parser.feed(&[b'X'; 10]);
    parser.feed(b"\n");
    assert_eq!(drain(&mut parser), vec![PrintEvent::Line("half".into())]);
    assert!(!parser.in_command());
}

#[test]
fn huge_declared_lengths_are_counted_not_buffered() {
    let mut parser = EscPosParser::new(CodePage::Cp437);
    // GS 8 L declaring 3 MB of graphics data, then the data in 4 KiB chunks.
    let len: u32 = 3 * 1024 * 1024;
    let mut header = vec![GS, b'8', b'L'];
    header.extend_from_slice(&len.to_le_bytes());
    parser.feed(&header);
    let chunk = POISON
        .iter()
        .cycle()
        .take(4096)
        .copied()
        .collect::<Vec<_>>();
    // The data names its function (m=48 fn=112: store raster graphics) like real data.
    let mut first = chunk.clone();
    first[..2].copy_from_slice(&[48, 112]);
    for i in 0..(len / 4096) {
        parser.feed(if i == 0 { &first } else { &chunk });
        assert!(parser.buffered_len() == 0);
    }
    parser.feed(b"after\n");
    assert_eq!(drain(&mut parser), vec![PrintEvent::Line("after".into())]);
    assert_eq!(parser.offset(), 7 + u64::from(len) + 6);
}

#[test]
fn unterminated_barcode_gives_up_after_bounded_data() {
    let mut stream = vec![GS, b'k', 4];
    stream.extend(std::iter::repeat_n(b'1', 300));
    stream.extend_from_slice(b"\nnext\n");
    let events = events_of(&stream);
    assert_eq!(diagnostics(&events), 1);
    assert_eq!(events.last(), Some(&PrintEvent::Line("next".into())));
}

#[test]
fn endless_lines_are_split() {
    let stream = vec![b'a'; MAX_LINE_CHARS * 2 + 5];
    let mut parser = EscPosParser::new(CodePage::Cp437);
    parser.feed(&stream);
    parser.feed(b"\n");
    let lines: Vec<usize> = drain(&mut parser)
        .into_iter()
        .filter_map(|e| match e {
            PrintEvent::Line(l) => Some(l.len()),
            _ => None,
        })
        .collect();
    assert_eq!(lines, [MAX_LINE_CHARS, MAX_LINE_CHARS, 5]);
}

/// `GS ( k pL pH cn fn` followed by `data`.
fn two_d(cn: u8, function: u8, data: &[u8]) -> Vec<u8> {
    let len = u16::try_from(data.len() + 2).expect("short").to_le_bytes();
    let mut bytes = vec![GS, b'(', b'k', len[0], len[1], cn, function];
    bytes.extend_from_slice(data);
    bytes
}

#[test]
fn every_two_d_code_function_is_skipped_without_diagnostic() {
    // (cn, functions) of PDF417, QR, MaxiCode, GS1 DataBar, Composite, Aztec, DataMatrix.
    let symbols: &[(u8, &[u8])] = &[
        (48, &[65, 66, 67, 68, 69, 70, 80, 81, 82]),
        (49, &[65, 67, 69, 80, 81, 82]),
        (50, &[65, 80, 81, 82]),
        (51, &[67, 71, 80, 81, 82]),
        (52, &[67, 71, 72, 80, 81, 82]),
        (53, &[66, 67, 69, 80, 81, 82]),
        (54, &[66, 67, 80, 81, 82]),
    ];
    for &(cn, functions) in symbols {
        for &function in functions {
            // Store-data functions carry the symbol text; the others a parameter or two.
            let data = if function == 80 {
                with_poison(vec![48], 4)
            } else {
                vec![b'\n', 48]
            };
            assert_skipped(
                &format!("GS ( k cn={cn} fn={function}"),
                &two_d(cn, function, &data),
            );
        }
    }
}

#[test]
fn unknown_two_d_symbols_and_functions_are_diagnostics_but_still_skipped() {
    for (command, expect) in [
        (two_d(55, 80, POISON), "unknown symbol cn=55"),
        (two_d(49, 99, POISON), "QR Code with unknown function fn=99"),
        // pL pH = 1: too short to hold cn and fn.
        (vec![GS, b'(', b'k', 1, 0, 49], "too short"),
    ] {
        let mut stream = command.clone();
        stream.extend_from_slice(b"after\n");
        let events = events_of(&stream);
        assert!(
            matches!(&events[0], PrintEvent::Diagnostic(m) if m.contains(expect)),
            "{events:?}"
        );
        assert_eq!(events[1..], [PrintEvent::Line("after".into())]);
    }
}

#[test]
fn graphics_functions_of_gs_paren_l_and_gs_8_l_are_skipped() {
    // fn 67 / 83: define NV / download graphics (raster), then fn 69 / 85 prints them,
    // fn 112 stores raster data in the print buffer and fn 50 prints it.
    for function in [67u8, 83, 112, 68, 84, 113] {
        let data = with_poison(vec![48, function, 48, b'G', b'1', 1, 8, 0, 8, 0], 4);
        let len = u16::try_from(data.len()).expect("short").to_le_bytes();
        let mut paren = vec![GS, b'(', b'L', len[0], len[1]];
        paren.extend_from_slice(&data);
        assert_skipped(&format!("GS ( L fn={function}"), &paren);
        let len = u32::try_from(data.len()).expect("short").to_le_bytes();
        let mut eight = vec![GS, b'8', b'L', len[0], len[1], len[2], len[3]];
        eight.extend_from_slice(&data);
        assert_skipped(&format!("GS 8 L fn={function}"), &eight);
    }
    assert_skipped("GS ( L fn=50", &[GS, b'(', b'L', 2, 0, 48, 50]);
    assert_skipped(
        "GS ( L fn=69",
        &[GS, b'(', b'L', 6, 0, 48, 69, b'G', b'1', 1, 1],
    );
    let events = events_of(&[GS, b'(', b'L', 2, 0, 48, 99, b'o', b'k', b'\n']);
    assert!(matches!(&events[0], PrintEvent::Diagnostic(m) if m.contains("fn=99")));
    assert_eq!(events[1..], [PrintEvent::Line("ok".into())]);
}

#[test]
fn nv_images_print_and_define_are_skipped() {
    assert_skipped("FS p", &[FS, b'p', 1, 3]);
    // FS q with one 2x3 image (48 bytes) whose data contains line ends.
    let mut nv = vec![FS, b'q', 1, 2, 0, 3, 0];
    nv.extend(POISON.iter().cycle().take(48));
    assert_skipped("FS q 2x3", &nv);
    // FS q 0 defines nothing.
    assert_skipped("FS q 0", &[FS, b'q', 0]);
}

#[test]
fn user_defined_characters_of_varying_widths_are_skipped() {
    // ESC & y=2 for ' '..'#': widths 0, 5, 12 and 1: x then 2*x bytes each.
    let mut user = vec![ESC, b'&', 2, b' ', b'#'];
    for x in [0u8, 5, 12, 1] {
        user.push(x);
        user.extend(POISON.iter().cycle().take(2 * usize::from(x)));
    }
    assert_skipped("ESC & varying", &user);
    assert_skipped("ESC % on", &[ESC, b'%', 1]);
    assert_skipped("ESC ? cancel", &[ESC, b'?', b' ']);
    // A reversed range defines nothing: a diagnostic, and the text goes on.
    let events = events_of(b"\x1b&\x03BAok\n");
    assert_eq!(diagnostics(&events), 1);
    assert_eq!(events.last(), Some(&PrintEvent::Line("ok".into())));
}

#[test]
fn page_mode_text_is_extracted_and_its_commands_skipped() {
    let mut stream = vec![ESC, b'L'];
    // ESC W: print area x y dx dy (8 bytes, with LF / CR values); ESC T direction.
    stream.extend_from_slice(&[ESC, b'W', 10, 0, 13, 0, 0, 2, 0, 1]);
    stream.extend_from_slice(&[ESC, b'T', 1, GS, b'$', 10, 0, ESC, b'$', 13, 0]);
    stream.extend_from_slice(b"page line\n");
    stream.extend_from_slice(&[GS, b'\\', 10, 0, ESC, b'\\', 13, 0]);
    // ESC FF prints the page (and a pending line); CAN then clears an empty page.
    stream.extend_from_slice(b"second\x1b\x0c\x18");
    stream.extend_from_slice(&[ESC, b'S']);
    stream.extend_from_slice(b"standard\n");
    assert_eq!(lines_of(&stream), ["page line", "second", "standard"]);
    assert_eq!(diagnostics(&events_of(&stream)), 0);
    // FF in page mode prints the page and ends a pending line.
    assert_eq!(lines_of(b"\x1bLa\x0cb\n"), ["a", "b"]);
    // Nothing is printed before the page is: a cut-off page never shows up.
    let mut parser = EscPosParser::new(CodePage::Cp437);
    parser.feed(b"\x1bLone\ntwo\n");
    assert_eq!(drain(&mut parser), []);
    parser.feed(b"\x0c");
    assert_eq!(
        drain(&mut parser),
        [
            PrintEvent::Line("one".into()),
            PrintEvent::Line("two".into())
        ]
    );
    // A page left with ESC S, cleared with CAN or reset with ESC @ is not printed.
    for discard in [&b"\x1bS"[..], b"\x18", b"\x1b@"] {
        let mut stream = b"\x1bLgone\n".to_vec();
        stream.extend_from_slice(discard);
        // After CAN the page mode goes on: FF prints what came after.
        stream.extend_from_slice(b"kept\n\x0c");
        let events = events_of(&stream);
        assert_eq!(diagnostics(&events), 1, "{discard:?}");
        assert_eq!(events.last(), Some(&PrintEvent::Line("kept".into())));
        assert!(!events.contains(&PrintEvent::Line("gone".into())));
    }
}

#[test]
fn kanji_mode_commands_are_skipped_and_ignored() {
    let mut kanji = vec![FS, b'2', 0x77, 0x21];
    kanji.extend(POISON.iter().cycle().take(72));
    let commands: &[(&str, &[u8])] = &[
        ("FS &", &[FS, b'&']),
        ("FS !", &[FS, b'!', b'\n']),
        ("FS -", &[FS, b'-', 1]),
        ("FS C", &[FS, b'C', 1]),
        ("FS S", &[FS, b'S', 10, 13]),
        ("FS W", &[FS, b'W', 1]),
        ("FS ?", &[FS, b'?', 0x77, 0x21]),
        ("FS 2", &kanji),
        ("FS ( A", &[FS, b'(', b'A', 2, 0, 48, 1]),
        ("FS .", &[FS, b'.']),
    ];
    for (name, command) in commands {
        assert_skipped(name, command);
    }
}

#[test]
fn international_sets_and_other_settings_are_skipped() {
    for n in 0..=16u8 {
        assert_skipped("ESC R", &[ESC, b'R', n]);
    }
    let commands: &[(&str, &[u8])] = &[
        ("ESC f", &[ESC, b'f', 10, 13]),
        ("ESC SO", &[ESC, 0x0E]),
        ("ESC DC4", &[ESC, 0x14]),
        ("ESC ( A", &[ESC, b'(', b'A', 4, 0, 48, 55, 3, 10]),
        ("GS C 0", &[GS, b'C', b'0', 5, 10]),
        ("GS C 1", &[GS, b'C', b'1', 1, 0, 10, 0, 1, 13]),
        ("GS C 2", &[GS, b'C', b'2', 10, 0]),
        ("GS g 0", &[GS, b'g', b'0', 0, 20, 0]),
        ("GS g 2", &[GS, b'g', b'2', 0, 10, 0]),
        ("GS z 0", &[GS, b'z', b'0', 10, 13]),
        ("GS ( E", &[GS, b'(', b'E', 3, 0, 1, 73, 78]),
        ("GS ( K", &[GS, b'(', b'K', 2, 0, 49, 10]),
        ("FS g 2", &[FS, b'g', b'2', 48, 0, 0, 0, 0, 10, 0]),
    ];
    for (name, command) in commands {
        assert_skipped(name, command);
    }
    // GS Q 0: 2 bytes wide, 5 rows.
    let mut raster = vec![GS, b'Q', b'0', 0, 2, 0, 5, 0];
    raster.extend(POISON.iter().take(10));
    assert_skipped("GS Q 0", &raster);
    // FS g 1: write 20 bytes of NV user memory.
    let mut nv = vec![FS, b'g', b'1', 48, 0, 0, 0, 0, 20, 0];
    nv.extend(POISON.iter().take(20));
    assert_skipped("FS g 1", &nv);
}

#[test]
fn windows_bmp_graphics_are_skipped_by_their_file_size() {
    // GS D 48 67 48 "LG" 1 49, then a BMP of 62 + 40 bytes (bfSize = 102).
    let mut bmp = vec![
        GS, b'D', 48, 67, 48, b'L', b'G', 1, 49, b'B', b'M', 102, 0, 0, 0,
    ];
    bmp.extend(POISON.iter().cycle().take(96));
    assert_skipped("GS D", &bmp);
    // Not a BMP: a diagnostic, and what follows is read as it comes.
    let events = events_of(b"\x1dD0C0LG\x011XX\x00\x00\x00\x00ok\n");
    assert_eq!(diagnostics(&events), 1);
    assert_eq!(events.last(), Some(&PrintEvent::Line("ok".into())));
}

#[test]
fn real_time_commands_have_their_own_lengths() {
    let commands: &[(&str, &[u8])] = &[
        ("DLE DC4 1 pulse", &[DLE, 0x14, 1, 0, 10]),
        ("DLE DC4 2 power-off", &[DLE, 0x14, 2, 1, 8]),
        ("DLE DC4 3 buzzer", &[DLE, 0x14, 3, 1, 10, 13, 5, 5]),
        ("DLE DC4 8 clear", &[DLE, 0x14, 8, 1, 3, 20, 1, 6, 2, 8]),
        ("DLE ENQ", &[DLE, 0x05, 2]),
    ];
    for (name, command) in commands {
        assert_skipped(name, command);
    }
    let events = events_of(b"\x10\x14\x07\x01\x10\x04\x08\x03\x10\x14\x09ok\n");
    assert_eq!(
        events[..2],
        [
            PrintEvent::StatusRequest {
                command: StatusCommand::DleDc4(1)
            },
            PrintEvent::StatusRequest {
                command: StatusCommand::DleEot(8)
            },
        ]
    );
    assert!(matches!(&events[2], PrintEvent::Diagnostic(m) if m.contains("DLE DC4")));
    assert_eq!(events[3], PrintEvent::Line("ok".into()));
}

#[test]
fn esc_t_follows_the_printer_model_table() {
    // A printer where ESC t 40 is CP858 and ESC t 19 is CP866.
    let table = EscTTable::epson()
        .with(40, CodePage::Cp858)
        .with(19, CodePage::Cp866);
    let mut parser = EscPosParser::with_esc_t(CodePage::Cp437, table);
    parser.feed(b"\x1bt\x28\xd5\n\x1bt\x13\x80\n\x1bt\x10\x80\n");
    assert_eq!(
        drain(&mut parser),
        [
            PrintEvent::Line("€".into()),
            PrintEvent::Line("А".into()),
            PrintEvent::Line("€".into()),
        ]
    );
    // The Epson table does not know 40: the page stays.
    let events = events_of(b"\x1bt\x28\x81\n");
    assert_eq!(diagnostics(&events), 1);
    assert_eq!(events[1], PrintEvent::Line("ü".into()));
    assert_eq!(table.number_of(CodePage::Cp858), Some(40));
    assert_eq!(table.number_of(CodePage::Cp1252), Some(16));
    assert_eq!(EscTTable::epson().number_of(CodePage::Cp858), Some(19));
    assert_eq!(EscTTable::for_model("EPSON"), Some(EscTTable::epson()));
    assert_eq!(EscTTable::for_model("nonesuch"), None);
}

#[test]
fn huge_two_d_and_nv_lengths_are_counted_not_buffered() {
    let mut parser = EscPosParser::new(CodePage::Cp437);
    parser.feed(&[GS, b'(', b'k', 0xFF, 0xFF, 49, 80, 48]);
    // 65535 declared: cn fn m (3) and 65532 bytes of data.
    let chunk = vec![b'\n'; 65_532];
    for piece in chunk.chunks(1000) {
        parser.feed(piece);
        assert_eq!(parser.buffered_len(), 0);
    }
    // FS q: one 65535 x 65535 image declares 34 GB; only the header is kept.
    parser.feed(&[FS, b'q', 1, 0xFF, 0xFF, 0xFF, 0xFF]);
    parser.feed(&vec![b'\n'; 100_000]);
    assert_eq!(parser.buffered_len(), 0);
    assert!(parser.in_command());
    assert_eq!(drain(&mut parser), []);
}

#[test]
fn international_sets_replace_their_ascii_positions_until_reset() {
    // Germany: [ \ ] { | } ~ @ are Ä Ö Ü ä ö ü ß §; UK: # is £; Spain I: # is ₧.
    let stream = b"\x1bR\x02Gr|~e [\\] {|} @\n\x1bR\x03#5\n\x1bR\x07#\n\x1b@#[\n";
    assert_eq!(lines_of(stream), ["Größe ÄÖÜ äöü §", "£5", "₧", "#["]);
    // Arabia (17) and beyond are not decoded: a diagnostic, back to USA.
    let events = events_of(b"\x1bR\x02\x1bR\x11[\n");
    assert_eq!(diagnostics(&events), 1);
    assert_eq!(events[1], PrintEvent::Line("[".into()));
    // Bytes above 0x7F still follow the code page.
    assert_eq!(lines_of(b"\x1bR\x02\x81\n"), ["ü"]);
}

fn chunked(bytes: &[u8], cuts: &[usize]) -> Vec<PrintEvent> {
    let mut parser = EscPosParser::new(CodePage::Cp858);
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.sort_unstable();
    let mut start = 0;
    let mut events = Vec::new();
    for p in points.into_iter().chain([bytes.len()]) {
        parser.feed(&bytes[start..p]);
        events.extend(drain(&mut parser));
        start = p;
    }
    assert_eq!(parser.offset(), bytes.len() as u64);
    events
}

proptest! {
    /// Any bytes, split anywhere: never a panic, always the same events.
    #[test]
    fn random_bytes_split_anywhere_give_the_same_events(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        cuts in proptest::collection::vec(any::<usize>(), 0..20),
    ) {
        let whole = chunked(&bytes, &[]);
        prop_assert_eq!(chunked(&bytes, &cuts), whole);
    }

    /// Command-heavy streams (bytes drawn mostly from prefixes and command letters).
    #[test]
    fn command_soup_split_anywhere_gives_the_same_events(
        bytes in proptest::collection::vec(
            prop_oneof![
                Just(ESC), Just(GS), Just(FS), Just(DLE), Just(b'\n'), Just(0u8),
                Just(b'k'), Just(b'('), Just(b'v'), Just(b'0'), Just(b'V'), Just(b'&'),
                Just(b't'), Just(b'*'), Just(b'8'), Just(b'q'), Just(b'p'), Just(b'g'),
                Just(0x14), 0u8..8, 48u8..=54, 65u8..=90, b'A'..=b'Z',
            ],
            0..400,
        ),
        cuts in proptest::collection::vec(any::<usize>(), 0..30),
    ) {
        let whole = chunked(&bytes, &[]);
        prop_assert_eq!(chunked(&bytes, &cuts), whole);
    }
}
