//! Data-driven test over a corpus of raw ESC/POS print streams.
//!
//! Each stream is made by a deterministic builder below and checked in as
//! `tests/data/receipts/<name>.bin`, next to what the agent must read from it:
//! `<name>.expected.txt` (the print events, one per line) and `<name>.expected.json`
//! (the ParsedReceipt of every cut-terminated receipt under the stream's layout).
//!
//! `UPDATE_EXPECT=1 cargo test -p till360-agent --test corpus` rewrites the `.bin`
//! files from the builders and the expectations from the current code; review the diff.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use till360_agent::escpos::{CodePage, EscPosParser, PrintEvent};
use till360_agent::layout::{Layout, ParsedReceipt};

/// Bytes that would show up as receipt lines if image, barcode or code data leaked into
/// the text. No extracted line may contain them.
const POISON: &[u8] = b"TOTAAL 99,99\nPOISON\n";

struct Case {
    name: &'static str,
    layout: &'static str,
    /// The `[pos] codepage` the agent would be configured with.
    codepage: CodePage,
    build: fn() -> Vec<u8>,
}

const CASES: &[Case] = &[
    Case {
        name: "supermarket_logo_barcode_qr",
        layout: "supermarket",
        codepage: CodePage::Cp858,
        build: supermarket_logo_barcode_qr,
    },
    Case {
        name: "supermarket_cp858_euro",
        layout: "supermarket",
        codepage: CodePage::Cp437,
        build: supermarket_cp858_euro,
    },
    Case {
        name: "supermarket_cp1252",
        layout: "supermarket",
        codepage: CodePage::Cp437,
        build: supermarket_cp1252,
    },
    Case {
        name: "boutique_bit_image_sku",
        layout: "boutique",
        codepage: CodePage::Cp858,
        build: boutique_bit_image_sku,
    },
    Case {
        name: "two_receipts_one_stream",
        layout: "supermarket",
        codepage: CodePage::Cp858,
        build: two_receipts_one_stream,
    },
    Case {
        name: "unknown_and_truncated_command",
        layout: "supermarket",
        codepage: CodePage::Cp858,
        build: unknown_and_truncated_command,
    },
];

// ---------------------------------------------------------------------------------
// The stream builder (local to this test: the POS simulator has its own).

const ESC: u8 = 0x1B;
const GS: u8 = 0x1D;
const DLE: u8 = 0x10;

struct Stream {
    bytes: Vec<u8>,
    page: CodePage,
}

impl Stream {
    /// A print job as POS software starts one: `ESC @` (initialise).
    fn new(page: CodePage) -> Self {
        Stream {
            bytes: vec![ESC, b'@'],
            page,
        }
    }

    fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(bytes);
        self
    }

    /// A text line in the active code page, ended by LF.
    fn line(&mut self, text: &str) -> &mut Self {
        for c in text.chars() {
            let byte = encode(c, self.page);
            self.bytes.push(byte);
        }
        self.bytes.push(b'\n');
        self
    }

    /// Two columns padded to a 40-character line, as receipt software does.
    fn columns(&mut self, left: &str, right: &str) -> &mut Self {
        let pad = 40usize.saturating_sub(left.chars().count() + right.chars().count());
        self.line(&format!("{left}{}{right}", " ".repeat(pad.max(2))))
    }

    fn code_page(&mut self, esc_t: u8) -> &mut Self {
        self.page = CodePage::from_esc_t(esc_t).expect("supported code page");
        self.raw(&[ESC, b't', esc_t])
    }

    fn align(&mut self, n: u8) -> &mut Self {
        self.raw(&[ESC, b'a', n])
    }

    fn bold(&mut self, on: bool) -> &mut Self {
        self.raw(&[ESC, b'E', u8::from(on)])
    }

    fn double_size(&mut self, on: bool) -> &mut Self {
        self.raw(&[GS, b'!', if on { 0x11 } else { 0 }])
    }

    /// `GS v 0`: a raster logo `width` bytes wide and `height` rows high.
    fn raster_logo(&mut self, width: u16, height: u16) -> &mut Self {
        let [xl, xh] = width.to_le_bytes();
        let [yl, yh] = height.to_le_bytes();
        self.raw(&[GS, b'v', b'0', 0, xl, xh, yl, yh]);
        self.poison(usize::from(width) * usize::from(height))
    }

    /// `ESC * 33`: one 24-dot bit image band of `columns` columns (3 bytes each).
    fn bit_image(&mut self, columns: u16) -> &mut Self {
        let [nl, nh] = columns.to_le_bytes();
        self.raw(&[ESC, b'*', 33, nl, nh]);
        self.poison(usize::from(columns) * 3)
    }

    /// `ESC & 3 c c`: one user-defined character, 12 columns wide.
    fn user_char(&mut self, code: u8) -> &mut Self {
        self.raw(&[ESC, b'&', 3, code, code, 12]);
        self.poison(36)
    }

    /// `GS k 73`: CODE128 with a length byte (HRI below, height 80).
    fn code128(&mut self, data: &[u8]) -> &mut Self {
        self.raw(&[GS, b'H', 2, GS, b'h', 80, GS, b'w', 2]);
        self.raw(&[
            GS,
            b'k',
            73,
            u8::try_from(data.len()).expect("short barcode"),
        ]);
        self.raw(data)
    }

    /// `GS k 4`: CODE39, NUL-terminated.
    fn code39(&mut self, data: &[u8]) -> &mut Self {
        self.raw(&[GS, b'k', 4]).raw(data).raw(&[0])
    }

    /// `GS ( k`: a QR code (model, size, error correction, store, print).
    fn qr(&mut self, data: &[u8]) -> &mut Self {
        self.raw(&[GS, b'(', b'k', 4, 0, 49, 65, 50, 0]);
        self.raw(&[GS, b'(', b'k', 3, 0, 49, 67, 6]);
        self.raw(&[GS, b'(', b'k', 3, 0, 49, 69, 48]);
        let [pl, ph] = u16::try_from(data.len() + 3)
            .expect("short QR data")
            .to_le_bytes();
        self.raw(&[GS, b'(', b'k', pl, ph, 49, 80, 48]).raw(data);
        self.raw(&[GS, b'(', b'k', 3, 0, 49, 81, 48])
    }

    /// `ESC p 0 t1 t2`: kick the cash drawer. The pulse times are 10 and 13 (LF and CR
    /// as bytes) to prove arguments are never read as text.
    fn drawer_kick(&mut self) -> &mut Self {
        self.raw(&[ESC, b'p', 0, 10, 13])
    }

    fn feed(&mut self, lines: u8) -> &mut Self {
        self.raw(&[ESC, b'd', lines])
    }

    /// `GS V 66 n`: feed and partial cut.
    fn partial_cut(&mut self) -> &mut Self {
        self.raw(&[GS, b'V', 66, 3])
    }

    /// `GS V 0`: full cut.
    fn full_cut(&mut self) -> &mut Self {
        self.raw(&[GS, b'V', 0])
    }

    fn poison(&mut self, len: usize) -> &mut Self {
        let data: Vec<u8> = POISON.iter().cycle().take(len).copied().collect();
        self.raw(&data)
    }

    fn build(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.bytes)
    }
}

/// The byte for `c` in `page` (the builder only uses characters the page has).
fn encode(c: char, page: CodePage) -> u8 {
    if c.is_ascii() {
        return c as u8;
    }
    (0x80..=0xFF)
        .find(|&b| page.decode(b) == c)
        .unwrap_or_else(|| panic!("{c:?} is not in {page}"))
}

fn supermarket_header(s: &mut Stream, receipt_no: &str, time: &str) {
    s.align(1).raster_logo(8, 12).bold(true).double_size(true);
    s.line("SUPERMARKT DE HOEK").double_size(false).bold(false);
    s.line("Dorpsstraat 12, Utrecht").align(0);
    s.line(&format!("Bon {receipt_no}"));
    s.line(&format!("{time}  Kassa 3"));
    s.line(&"-".repeat(40));
}

fn supermarket_logo_barcode_qr() -> Vec<u8> {
    let mut s = Stream::new(CodePage::Cp858);
    supermarket_header(&mut s, "0012-3456", "25-11-2026 09:14");
    s.columns("Halfvolle melk 1L", "1,29");
    s.line("2 x 1,29").columns("Volkoren brood", "2,58");
    s.columns("Korting 2e halve prijs", "-0,65");
    s.columns("Bananen 0,812 kg", "1,62");
    s.line("0,512 kg x 2,49")
        .columns("Kaas jong belegen", "1,27 B");
    s.columns("Wasmiddel 2L", "12,99");
    s.columns("Korting actie", "1,00");
    s.line(&"-".repeat(40)).columns("SUBTOTAAL", "19,10");
    s.bold(true).columns("TOTAAL", "18,10").bold(false);
    s.columns("PIN", "18,10").drawer_kick();
    s.line("Klantenkaart ****1234");
    s.align(1).code128(b"{B0012-3456\nTOTAAL 99,99\n");
    s.qr(b"https://till360.example/r/0012-3456\nTOTAAL 99,99\nPOISON\n");
    s.line("Bedankt en tot ziens!").feed(4).partial_cut();
    s.build()
}

fn supermarket_cp858_euro() -> Vec<u8> {
    let mut s = Stream::new(CodePage::Cp437);
    s.code_page(19);
    supermarket_header(&mut s, "0012-3457", "25-11-2026 09:21");
    s.line("Prijzen in €");
    s.columns("Crème fraîche", "1,49");
    s.columns("Cadeaubon €10", "10,00");
    s.columns("Paté ardennes", "2,19");
    s.bold(true).columns("TOTAAL", "13,68").bold(false);
    s.columns("Contant € 20,00", "");
    s.columns("Wisselgeld", "6,32");
    s.feed(3).full_cut();
    s.build()
}

fn supermarket_cp1252() -> Vec<u8> {
    let mut s = Stream::new(CodePage::Cp437);
    s.code_page(16);
    supermarket_header(&mut s, "0012-3458", "25-11-2026 10:02");
    s.columns("Brötchen", "0,45");
    s.line("3 x 0,89").columns("Café crème", "2,67");
    s.columns("Korting Café", "-0,30");
    s.bold(true).columns("TOTAAL", "2,82").bold(false);
    s.line("€ 2,82 betaald met PIN");
    s.feed(3).full_cut();
    s.build()
}

fn boutique_bit_image_sku() -> Vec<u8> {
    let mut s = Stream::new(CodePage::Cp858);
    s.align(1).bit_image(16).raw(b"\n").user_char(0x20);
    s.line("MAISON LUMEN").line("Store 014 Utrecht").align(0);
    s.line("Receipt #A-1029").line("2026-11-25T14:03:12");
    s.line(&"=".repeat(40));
    s.columns("SKU 100234  T-shirt organic", "29.95");
    s.columns("SKU 100555  Socks bamboo  2 @ 7.50", "15.00");
    s.columns("SKU 200871  Linen shirt", "59.90");
    s.columns("Member discount 10%", "-5.99");
    s.columns("Subtotal", "98.81");
    s.bold(true).line("Total EUR 98.81").bold(false);
    s.columns("Card", "98.81");
    s.line("Member card ************5678");
    s.code39(b"A-1029 TOTAAL 99,99");
    s.line("Returns within 30 days").feed(5).raw(&[ESC, b'i']);
    s.build()
}

fn two_receipts_one_stream() -> Vec<u8> {
    let mut s = Stream::new(CodePage::Cp858);
    s.raw(&[DLE, 0x04, 1]);
    supermarket_header(&mut s, "0012-3460", "25-11-2026 11:00");
    s.columns("Appels Elstar", "2,49");
    s.bold(true).columns("TOTAAL", "2,49").bold(false);
    s.line("Klantenkaart ****4321").feed(3).partial_cut();
    s.raw(&[DLE, 0x04, 4, GS, b'r', 1]);
    s.raw(&[ESC, b'@']);
    supermarket_header(&mut s, "0012-3461", "25-11-2026 11:02");
    s.line("2 x 0,99").columns("Yoghurt", "1,98");
    // No TOTAAL line: the receipt-level total stays unknown.
    s.line("Bedankt!").feed(3).partial_cut();
    s.build()
}

fn unknown_and_truncated_command() -> Vec<u8> {
    let mut s = Stream::new(CodePage::Cp858);
    // ESC y and GS Z are not in the table: diagnostics, skipped as two bytes.
    s.raw(&[ESC, b'y']).raw(&[GS, b'Z']);
    supermarket_header(&mut s, "0012-3462", "25-11-2026 12:30");
    s.columns("Thee", "1,99");
    s.bold(true).columns("TOTAAL", "1,99").bold(false);
    s.feed(3).full_cut();
    // The next job is cut off mid-command: text without a line end, then a QR
    // "store data" header declaring 200 bytes of which only some arrive.
    s.raw(b"Bon 0012-3463");
    s.raw(&[GS, b'(', b'k', 203, 0, 49, 80, 48])
        .raw(b"TOTAAL 99,99");
    s.build()
}

// ---------------------------------------------------------------------------------
// The check.

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/receipts")
}

fn updating() -> bool {
    std::env::var_os("UPDATE_EXPECT").is_some_and(|v| v == "1")
}

/// Compares `actual` with the file at `expected`, or rewrites it with UPDATE_EXPECT=1.
fn check(actual: &[u8], expected: &Path) {
    if updating() {
        std::fs::write(expected, actual)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", expected.display()));
        return;
    }
    let stored = std::fs::read(expected).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e} (run with UPDATE_EXPECT=1 to create it)",
            expected.display()
        )
    });
    if stored != actual {
        panic!(
            "{} differs (UPDATE_EXPECT=1 rewrites it; review the diff):\n--- expected\n{}\n--- actual\n{}",
            expected.display(),
            String::from_utf8_lossy(&stored),
            String::from_utf8_lossy(actual)
        );
    }
}

fn events(stream: &[u8], page: CodePage) -> Vec<PrintEvent> {
    let mut parser = EscPosParser::new(page);
    parser.feed(stream);
    std::iter::from_fn(|| parser.poll()).collect()
}

/// One event per line; text lines behind `| ` so blank and padded lines stay visible.
fn render(events: &[PrintEvent]) -> String {
    let mut out = String::new();
    for event in events {
        let line = match event {
            PrintEvent::Line(text) => format!("| {text}"),
            PrintEvent::Cut { offset, partial } => format!(
                "=== {} cut at offset {offset} ===",
                if *partial { "partial" } else { "full" }
            ),
            PrintEvent::StatusRequest { command } => format!("status request {command:?}"),
            PrintEvent::Diagnostic(message) => format!("diagnostic: {message}"),
        };
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Receipts end at cuts; text after the last cut is an unfinished job and not parsed.
fn receipts(events: &[PrintEvent], layout: &Layout) -> Vec<ParsedReceipt> {
    let mut out = Vec::new();
    let mut lines: Vec<&str> = Vec::new();
    for event in events {
        match event {
            PrintEvent::Line(text) => lines.push(text),
            PrintEvent::Cut { .. } => out.push(layout.match_lines(std::mem::take(&mut lines))),
            _ => {}
        }
    }
    out
}

fn stored_stream(case: &Case) -> Vec<u8> {
    let path = data_dir().join(format!("{}.bin", case.name));
    let built = (case.build)();
    check(&built, &path);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

#[test]
fn corpus_streams_give_the_expected_lines_and_receipts() {
    if updating() {
        std::fs::create_dir_all(data_dir()).expect("create the corpus folder");
    }
    for case in CASES {
        let stream = stored_stream(case);
        let events = events(&stream, case.codepage);
        for event in &events {
            if let PrintEvent::Line(text) = event {
                assert!(
                    !text.contains("POISON") && !text.contains("99,99"),
                    "{}: command data leaked into the text: {text:?}",
                    case.name
                );
            }
        }
        check(
            render(&events).as_bytes(),
            &data_dir().join(format!("{}.expected.txt", case.name)),
        );
        let layout_path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../config/receipts")
            .join(format!("{}.toml", case.layout));
        let layout = Layout::load(&layout_path).expect("shipped layout loads");
        let parsed = receipts(&events, &layout);
        let mut json = serde_json::to_string_pretty(&parsed).expect("serialize");
        json.push('\n');
        check(
            json.as_bytes(),
            &data_dir().join(format!("{}.expected.json", case.name)),
        );
    }
}

#[test]
fn one_byte_at_a_time_gives_the_same_events() {
    for case in CASES {
        let stream = (case.build)();
        let mut parser = EscPosParser::new(case.codepage);
        let mut one_by_one = Vec::new();
        for byte in &stream {
            parser.feed(std::slice::from_ref(byte));
            one_by_one.extend(std::iter::from_fn(|| parser.poll()));
        }
        assert_eq!(one_by_one, events(&stream, case.codepage), "{}", case.name);
        assert_eq!(parser.offset(), stream.len() as u64);
    }
}

proptest! {
    #[test]
    fn random_chunkings_of_the_corpus_give_the_same_events(
        index in 0..CASES.len(),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..40),
    ) {
        let case = &CASES[index];
        let stream = (case.build)();
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        points.sort_unstable();
        let mut parser = EscPosParser::new(case.codepage);
        let mut chunked = Vec::new();
        let mut start = 0;
        for end in points.into_iter().chain([stream.len()]) {
            parser.feed(&stream[start..end]);
            chunked.extend(std::iter::from_fn(|| parser.poll()));
            start = end;
        }
        prop_assert_eq!(chunked, events(&stream, case.codepage));
    }
}
