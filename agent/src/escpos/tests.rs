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
        ("ESC R", &[ESC, b'R', b'Q']),
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
    for _ in 0..(len / 4096) {
        parser.feed(&chunk);
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
                Just(b't'), Just(b'*'), 0u8..8, b'A'..=b'Z',
            ],
            0..400,
        ),
        cuts in proptest::collection::vec(any::<usize>(), 0..30),
    ) {
        let whole = chunked(&bytes, &[]);
        prop_assert_eq!(chunked(&bytes, &cuts), whole);
    }
}
