#![allow(dead_code)] // each fuzz target uses its own half of these checks
//! What the fuzz targets assert, shared with the replay test
//! (`agent/tests/fuzz_escpos_layout.rs` includes this file), so a kept input is
//! checked exactly as the fuzzer checked it.

use till360_agent::escpos::{CodePage, EscPosParser, PrintEvent, MAX_LINE_CHARS};
use till360_agent::layout::Layout;

/// The longest command header the parser may hold back (FS 2: prefix, code, c1 c2
/// and its 72-byte pattern); everything longer is data and must be counted, not kept.
pub const MAX_HEADER: usize = 2 + 2 + 72;

/// The shipped layouts the matcher is fuzzed with.
pub const LAYOUTS: &[&str] = &[
    include_str!("../../../config/receipts/supermarket.toml"),
    include_str!("../../../config/receipts/boutique.toml"),
];

fn events(parser: &mut EscPosParser) -> Vec<PrintEvent> {
    std::iter::from_fn(|| parser.poll()).collect()
}

/// ESC/POS parser: any bytes, whole or split where the first two bytes say, give the
/// same events; held-back bytes never exceed a header; lines stay bounded.
pub fn escpos(data: &[u8]) {
    let (split, stream) = match data {
        [a, b, rest @ ..] => (usize::from(*a) << 8 | usize::from(*b), rest),
        _ => (0, data),
    };
    let mut whole = EscPosParser::new(CodePage::Cp858);
    whole.feed(stream);
    let expected = events(&mut whole);
    assert!(
        whole.buffered_len() <= MAX_HEADER,
        "held {} bytes",
        whole.buffered_len()
    );
    assert_eq!(whole.offset(), stream.len() as u64);

    // Split into pieces of a size from the prefix (1 ..= 256 bytes).
    let step = split % 256 + 1;
    let mut chunked = EscPosParser::new(CodePage::Cp858);
    let mut got = Vec::new();
    for piece in stream.chunks(step) {
        chunked.feed(piece);
        assert!(chunked.buffered_len() <= MAX_HEADER);
        got.extend(events(&mut chunked));
    }
    assert_eq!(got, expected, "chunks of {step}");

    for event in &expected {
        if let PrintEvent::Line(line) = event {
            assert!(line.chars().count() <= MAX_LINE_CHARS);
        }
    }
}

/// Layout matcher: with byte 0 = 0 the rest is a layout file (it must load or be
/// refused, never panic; if it loads it matches a few lines); otherwise the rest is
/// receipt text matched with a shipped layout.
pub fn layout(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    if selector == 0 {
        if let Ok(layout) = Layout::from_toml_str(&text, "fuzz.toml") {
            let _ = layout.match_lines(["Bon 1", "TOTAAL 1,00", "a  1,00", "2 x 1,00"]);
        }
        return;
    }
    // Compiled once: building the regexes per input would make this target crawl.
    static SHIPPED: std::sync::OnceLock<Vec<Layout>> = std::sync::OnceLock::new();
    let shipped = SHIPPED.get_or_init(|| {
        LAYOUTS
            .iter()
            .map(|source| {
                Layout::from_toml_str(source, "shipped.toml").expect("shipped layout loads")
            })
            .collect()
    });
    let layout = &shipped[usize::from(selector) % shipped.len()];
    let lines: Vec<&str> = text.split('\n').collect();
    let parsed = layout.match_lines(lines.iter().copied());
    // At most one item per line given.
    assert!(parsed.lines.len() <= lines.len());
}
