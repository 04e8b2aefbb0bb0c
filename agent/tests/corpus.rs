//! Data-driven test over a corpus of raw ESC/POS print streams.
//!
//! Each stream is made by a deterministic builder below and checked in as
//! `tests/data/receipts/<name>.bin`, next to what the agent must read from it:
//! `<name>.expected.txt` (the print events, one per line) and `<name>.expected.json`
//! (the ParsedReceipt of every cut-terminated receipt under the stream's layout).
//!
//! `UPDATE_EXPECT=1 cargo test -p till360-agent --test integration corpus::` rewrites the `.bin`
//! files from the builders and the expectations from the current code; review the diff.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use till360_agent::checkout::Checkout;
use till360_agent::escpos::{CodePage, EscPosParser, PrintEvent};
use till360_agent::layout::{Layout, ParsedReceipt};
use till360_shared::{Currency, Timestamp};

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
    Case {
        name: "diy_store_vat_table",
        layout: "baumarkt",
        codepage: CodePage::Cp858,
        build: diy_store_vat_table,
    },
    Case {
        name: "diy_store_multi_page",
        layout: "baumarkt",
        codepage: CodePage::Cp858,
        build: diy_store_multi_page,
    },
    Case {
        name: "pharmacy_cp850_status_polls",
        layout: "supermarket",
        codepage: CodePage::Cp437,
        build: pharmacy_cp850_status_polls,
    },
    Case {
        name: "clothing_returns_negative_total",
        layout: "supermarket",
        codepage: CodePage::Cp858,
        build: clothing_returns_negative_total,
    },
    Case {
        name: "supermarket_vat_table_print_modes",
        layout: "supermarket",
        codepage: CodePage::Cp858,
        build: supermarket_vat_table_print_modes,
    },
    Case {
        name: "supermarket_deposits_and_weighed",
        layout: "supermarket",
        codepage: CodePage::Cp858,
        build: supermarket_deposits_and_weighed,
    },
    Case {
        name: "receipt_and_card_slip_one_write",
        layout: "supermarket",
        codepage: CodePage::Cp858,
        build: receipt_and_card_slip_one_write,
    },
    Case {
        name: "pos_restart_mid_logo",
        layout: "supermarket",
        codepage: CodePage::Cp858,
        build: pos_restart_mid_logo,
    },
    Case {
        name: "boutique_nv_graphics_gs_paren_l",
        layout: "boutique",
        codepage: CodePage::Cp858,
        build: boutique_nv_graphics_gs_paren_l,
    },
    Case {
        name: "boutique_two_d_codes_all_symbols",
        layout: "boutique",
        codepage: CodePage::Cp858,
        build: boutique_two_d_codes_all_symbols,
    },
    Case {
        name: "boutique_user_chars_intl_set",
        layout: "boutique",
        codepage: CodePage::Cp858,
        build: boutique_user_chars_intl_set,
    },
    Case {
        name: "deli_page_mode",
        layout: "supermarket",
        codepage: CodePage::Cp858,
        build: deli_page_mode,
    },
    Case {
        name: "code_page_switches_mid_receipt",
        layout: "supermarket",
        codepage: CodePage::Cp437,
        build: code_page_switches_mid_receipt,
    },
    Case {
        name: "kanji_mode_commands_ignored",
        layout: "supermarket",
        codepage: CodePage::Cp858,
        build: kanji_mode_commands_ignored,
    },
    Case {
        name: "old_pos_crlf_print_feed",
        layout: "supermarket",
        codepage: CodePage::Cp437,
        build: old_pos_crlf_print_feed,
    },
    Case {
        name: "diy_store_huge_logo_real_time",
        layout: "baumarkt",
        codepage: CodePage::Cp858,
        build: diy_store_huge_logo_real_time,
    },
];

// ---------------------------------------------------------------------------------
// The stream builder (local to this test: the POS simulator has its own).

const ESC: u8 = 0x1B;
const GS: u8 = 0x1D;
const DLE: u8 = 0x10;
const FS: u8 = 0x1C;

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

    /// `GS ( k` with `cn fn` and the data (length from the data).
    fn two_d(&mut self, cn: u8, function: u8, data: &[u8]) -> &mut Self {
        let [pl, ph] = u16::try_from(data.len() + 2)
            .expect("short 2D data")
            .to_le_bytes();
        self.raw(&[GS, b'(', b'k', pl, ph, cn, function]).raw(data)
    }

    /// `GS ( L` (2-byte length) with `m fn` and the rest of the function's data.
    fn graphics(&mut self, function: u8, data: &[u8]) -> &mut Self {
        let [pl, ph] = u16::try_from(data.len() + 2)
            .expect("short graphics data")
            .to_le_bytes();
        self.raw(&[GS, b'(', b'L', pl, ph, 48, function]).raw(data)
    }

    /// `GS 8 L` (4-byte length): store `width` x `height` raster dots in the print
    /// buffer (fn 112), the data made of poison.
    fn big_graphics(&mut self, width: u16, height: u16) -> &mut Self {
        let data_len = usize::from(width).div_ceil(8) * usize::from(height);
        let len = u32::try_from(data_len + 10).expect("fits").to_le_bytes();
        let [xl, xh] = width.to_le_bytes();
        let [yl, yh] = height.to_le_bytes();
        self.raw(&[GS, b'8', b'L']).raw(&len);
        self.raw(&[48, 112, 48, 1, 1, 49, xl, xh, yl, yh]);
        self.poison(data_len)
    }

    /// A plain-ASCII line as old POS software ends it: CR LF.
    fn crlf_line(&mut self, text: &str) -> &mut Self {
        self.raw(text.as_bytes()).raw(b"\r\n")
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
    s.columns("Subtotal", "98.86");
    s.bold(true).line("Total EUR 98.86").bold(false);
    s.columns("Card", "98.86");
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

/// German DIY store: article numbers, quantity lines in Stk and metres, a VAT letter
/// after each amount, a VAT table after the total, an NV logo printed with GS ( L.
fn diy_header(s: &mut Stream, beleg: &str, when: &str) {
    // GS ( L fn 69: print the NV graphics stored under key "LG".
    s.align(1).graphics(69, b"LG\x01\x01");
    s.bold(true).line("BAUMARKT HAMMER & SÖHNE").bold(false);
    s.line("Industriestraße 4, 50667 Köln").align(0);
    s.line(&format!("Beleg-Nr. {beleg}"));
    s.line(&format!("Datum {when} Kasse 2"));
    s.line(&"-".repeat(40));
}

fn diy_store_vat_table() -> Vec<u8> {
    let mut s = Stream::new(CodePage::Cp858);
    diy_header(&mut s, "4711-0815", "25.11.2026 Zeit 15:42");
    s.line("3 Stk x 4,99")
        .columns("Art.-Nr. 401234 Holzschrauben", "14,97 A");
    s.columns("Art.-Nr. 400017 Dübel 8mm 50St", "3,49 A");
    s.columns("Rabatt 10% Aktion", "-0,35 A");
    s.line("2,500 m x 1,20")
        .columns("Art.-Nr. 512200 Kette verz.", "3,00 A");
    s.columns("Art.-Nr. 700100 Blumenerde 40L", "5,99 B");
    s.line(&"-".repeat(40));
    s.columns("Zwischensumme", "27,10");
    s.bold(true).columns("SUMME EUR", "27,10").bold(false);
    s.columns("EC-Karte", "27,10");
    s.line("MwSt      Netto    MwSt   Brutto");
    s.line("A 19%     17,74    3,37    21,11");
    s.line("B  7%      5,60    0,39     5,99");
    s.line("Kundenkarte Nr. ********9876");
    s.align(1).code128(b"{B4711-0815\nTOTAAL 99,99\n");
    s.line("Vielen Dank für Ihren Einkauf!").feed(4);
    s.raw(&[GS, b'V', 65, 5]);
    s.build()
}

/// A long receipt the POS prints as three jobs (ESC @ and the header again on each
/// page, "Seite n von 3"), with the one cut at the end.
fn diy_store_multi_page() -> Vec<u8> {
    let mut s = Stream::new(CodePage::Cp858);
    let mut total = 0u32;
    for page in 1..=3u32 {
        if page > 1 {
            s.raw(&[ESC, b'@']);
        }
        diy_header(&mut s, "4711-0816", "25.11.2026 Zeit 16:05");
        s.line(&format!("Seite {page} von 3"));
        for i in 0..12u32 {
            let n = (page - 1) * 12 + i;
            let cents = 99 + n * 37;
            total += cents;
            s.columns(
                &format!("Art.-Nr. {} Artikel {n:02}", 300_000 + n * 7),
                &format!("{},{:02} A", cents / 100, cents % 100),
            );
        }
        if page < 3 {
            s.line("Fortsetzung auf Seite ...").feed(2);
        }
    }
    s.bold(true)
        .columns("SUMME EUR", &format!("{},{:02}", total / 100, total % 100))
        .bold(false);
    s.columns("EC-Karte", &format!("{},{:02}", total / 100, total % 100));
    s.line("Vielen Dank für Ihren Einkauf!").feed(4).full_cut();
    s.build()
}

/// Pharmacy software on a CP850 printer (accents, no euro sign) that polls the
/// printer's status before every block.
fn pharmacy_cp850_status_polls() -> Vec<u8> {
    let mut s = Stream::new(CodePage::Cp437);
    s.raw(&[DLE, 0x04, 1, DLE, 0x04, 2, DLE, 0x04, 4])
        .code_page(2);
    s.align(1)
        .line("APOTHEEK DE LINDE")
        .line("Lindelaan 3, Zwolle")
        .align(0);
    s.line("Bon 0077-0012").line("25-11-2026 08:31  Kassa 1");
    s.line(&"-".repeat(40));
    s.raw(&[DLE, 0x04, 1]);
    s.columns("Paracetamol 500mg 20st", "1,89 A");
    s.columns("Crème à l'arnica 50ml", "7,45 A");
    s.line("2 x 3,99")
        .columns("Keelpastilles citroen", "7,98 A");
    s.columns("Korting 2e artikel", "-2,00");
    s.columns("Eigen bijdrage recept", "12,50 B");
    s.raw(&[DLE, 0x04, 1, GS, b'r', 1]);
    s.line(&"-".repeat(40));
    s.bold(true).columns("TOTAAL", "27,82").bold(false);
    s.columns("PIN", "27,82");
    s.line("BTW    over     bedrag");
    s.line("BTW 9%  14,06    1,26");
    s.line("BTW 21% 10,33    2,17");
    s.line("Klantenkaart ****5521");
    s.line("Bedankt, beterschap!").feed(3).partial_cut();
    s.raw(&[DLE, 0x04, 1]);
    s.build()
}

/// A fashion store till: an exchange with a returned item (negative line) and a
/// refund, so the total is negative.
fn clothing_returns_negative_total() -> Vec<u8> {
    let mut s = Stream::new(CodePage::Cp858);
    s.align(1).bit_image(24).raw(b"\n");
    s.double_size(true)
        .line("MODEHUIS VAN DAM")
        .double_size(false);
    s.line("Kalverstraat 101, Amsterdam").align(0);
    s.line("Bon 0310-0991").line("25-11-2026 17:48  Kassa 4");
    s.line(&"=".repeat(40));
    s.columns("Trui merino grijs M", "49,95");
    s.columns("Korting 20% winteractie", "-9,99");
    s.columns("Retour spijkerbroek slim 32", "-79,95");
    s.columns("Retour riem leer", "-24,95");
    s.line("2 x 4,50").columns("Sokken katoen", "9,00");
    s.line(&"=".repeat(40));
    s.bold(true).columns("TOTAAL", "-55,94").bold(false);
    s.columns("PIN terugbetaling", "-55,94");
    s.line("Klantenkaart ****0042");
    s.line("Bedankt en tot ziens!").feed(5).full_cut();
    s.build()
}

/// Supermarket with a VAT table and every print mode command around the text.
fn supermarket_vat_table_print_modes() -> Vec<u8> {
    let mut s = Stream::new(CodePage::Cp858);
    supermarket_header(&mut s, "0012-3500", "25-11-2026 13:15");
    s.raw(&[ESC, b'!', 0x08, ESC, b'-', 1, GS, b'B', 1]);
    s.line("KLANTENKAART VOORDEEL");
    s.raw(&[ESC, b'!', 0, ESC, b'-', 0, GS, b'B', 0, ESC, b'M', 1]);
    s.columns("Koffiebonen 1kg", "12,49 A");
    s.raw(&[ESC, b'M', 0, ESC, b'3', 30, ESC, b' ', 1, GS, b'L', 10, 0]);
    s.columns("Thee groen 20st", "2,19 A");
    s.columns("Korting bonus", "-0,50");
    s.raw(&[ESC, b'2', ESC, b'V', 1, ESC, b'{', 0, ESC, b'G', 1]);
    s.columns("Schoonmaakazijn 1L", "1,09 B");
    s.raw(&[ESC, b'V', 0, ESC, b'G', 0, GS, b'W', 0x40, 2]);
    s.line("3 x 0,89").columns("Tomaten blik", "2,67 A");
    s.line(&"-".repeat(40)).columns("SUBTOTAAL", "17,94");
    s.bold(true).columns("TOTAAL", "17,94").bold(false);
    s.columns("Contant", "20,00").columns("Wisselgeld", "2,06");
    s.line("BTW    excl     btw    incl");
    s.line("BTW A 9%   15,46   1,39   16,85");
    s.line("BTW B 21%   0,90   0,19    1,09");
    s.line("Klantenkaart ****7788").drawer_kick();
    s.line("Bedankt en tot ziens!").feed(4).partial_cut();
    s.build()
}

/// Weighed goods, bottle deposits and a deposit return (negative line).
fn supermarket_deposits_and_weighed() -> Vec<u8> {
    let mut s = Stream::new(CodePage::Cp858);
    supermarket_header(&mut s, "0012-3501", "25-11-2026 18:02");
    s.columns("Appels Jonagold 1,245 kg", "2,48");
    s.line("0,318 kg x 12,99").columns("Oude kaas", "4,13");
    s.line("6 x 1,19").columns("Cola 1,5L", "7,14");
    s.line("6 x 0,25").columns("Statiegeld fles", "1,50");
    s.columns("Retour statiegeld", "-3,75");
    s.columns("Korting 6 halen 5 betalen", "-1,19");
    s.line(&"-".repeat(40)).columns("SUBTOTAAL", "10,31");
    s.bold(true).columns("TOTAAL", "10,31").bold(false);
    s.columns("PIN", "10,31");
    s.line("Bedankt en tot ziens!").feed(4).partial_cut();
    s.build()
}

/// The POS writes the receipt and the card terminal's slip in one write: two cuts.
fn receipt_and_card_slip_one_write() -> Vec<u8> {
    let mut s = Stream::new(CodePage::Cp858);
    supermarket_header(&mut s, "0012-3502", "25-11-2026 18:10");
    s.columns("Brood wit", "1,99").columns("Pindakaas", "3,29");
    s.bold(true).columns("TOTAAL", "5,28").bold(false);
    s.columns("PIN", "5,28").line("Klantenkaart ****3141");
    s.feed(3).partial_cut();
    s.raw(&[ESC, b'@']).align(1);
    s.line("KLANTTICKET").line("Betaalautomaat 0042").align(0);
    s.columns("Kaart", "MAESTRO")
        .columns("Kaartnummer", "xxxxxxxxxxxx1234");
    s.columns("Datum", "25-11-2026 18:10")
        .columns("Bedrag", "EUR 5,28");
    s.line("Akkoord").feed(3).partial_cut();
    s.build()
}

/// The POS dies while sending the logo (40 of 96 raster bytes sent) and, restarted,
/// prints the receipt again from ESC @ without a logo. The printer takes the first 56
/// bytes after the restart as the rest of the image, and so does the parser: the
/// shop name is lost, the line after it starts mid-word; the receipt is still read.
fn pos_restart_mid_logo() -> Vec<u8> {
    let mut s = Stream::new(CodePage::Cp858);
    s.align(1).raw(&[GS, b'v', b'0', 0, 8, 0, 12, 0]).poison(40);
    s.raw(&[ESC, b'@']).align(1).bold(true).double_size(true);
    s.line("SUPERMARKT DE HOEK").double_size(false).bold(false);
    s.line("Dorpsstraat 12, Utrecht").align(0);
    s.line("Bon 0012-3503").line("25-11-2026 19:20  Kassa 3");
    s.line(&"-".repeat(40));
    s.columns("Chips paprika", "1,79")
        .columns("Frisdrank 1L", "0,99");
    s.bold(true).columns("TOTAAL", "2,78").bold(false);
    s.columns("Contant", "5,00").columns("Wisselgeld", "2,22");
    s.feed(3).partial_cut();
    s.build()
}

/// A clothing store that defines its logo once in NV memory (GS ( L fn 67), prints it
/// (fn 69), a BMP logo with GS D, prints a promo banner through the print buffer
/// (GS 8 L fn 112 + fn 50) and an old-style NV bit image (FS q define, FS p print).
fn boutique_nv_graphics_gs_paren_l() -> Vec<u8> {
    let mut s = Stream::new(CodePage::Cp858);
    // fn 67: a1 kc1 kc2 b xL xH yL yH c, then 2 x 16 bytes of raster.
    let mut logo = vec![48, b'L', b'G', 1, 16, 0, 16, 0, 49];
    logo.extend(POISON.iter().cycle().take(32));
    s.graphics(67, &logo);
    // GS D fn 67: the same logo once more as a Windows BMP (bfSize = 62 + 64 bytes).
    s.raw(&[
        GS, b'D', 48, 67, 48, b'L', b'H', 1, 49, b'B', b'M', 126, 0, 0, 0,
    ]);
    s.poison(120);
    s.raw(&[FS, b'q', 1, 1, 0, 2, 0]).poison(16);
    s.align(1).graphics(69, b"LG\x01\x01");
    s.line("MAISON LUMEN").line("Store 014 Utrecht").align(0);
    s.line("Receipt #A-1030").line("2026-11-25T14:20:00");
    s.line(&"=".repeat(40));
    s.columns("SKU 100234  T-shirt organic", "29.95");
    s.columns("SKU 300100  Scarf wool", "39.00");
    s.columns("Subtotal", "68.95");
    s.bold(true).line("Total EUR 68.95").bold(false);
    s.columns("Cash", "70.00").columns("Change", "1.05");
    s.big_graphics(384, 60).graphics(50, &[]);
    s.raw(&[FS, b'p', 1, 0]);
    s.line("Returns within 30 days").feed(5).raw(&[ESC, b'i']);
    s.build()
}

/// Every 2D symbology of GS ( k, each with settings, store and print functions.
fn boutique_two_d_codes_all_symbols() -> Vec<u8> {
    let mut s = Stream::new(CodePage::Cp858);
    s.align(1)
        .line("MAISON LUMEN")
        .line("Store 022 Haarlem")
        .align(0);
    s.line("Receipt #B-0007").line("2026-11-25T15:45:30");
    s.line(&"=".repeat(40));
    s.columns("SKU 100555  Socks bamboo  3 @ 7.50", "22.50");
    s.columns("SKU 400001  Gift card", "25.00");
    s.bold(true).line("Total EUR 47.50").bold(false);
    s.columns("Card", "47.50")
        .line("Member card ************9090");
    let data: &[u8] = b"B-0007\nTOTAAL 99,99\nPOISON\n";
    // Store-data functions: m (or a symbol-specific argument) then the text.
    let store = |head: &[u8], text: &[u8]| [head, text].concat();
    // PDF417: columns, rows, width, row height, error level, options; store; print.
    for (function, arg) in [(65u8, 0u8), (66, 0), (67, 3), (68, 3), (70, 0)] {
        s.two_d(48, function, &[48, arg]);
    }
    s.two_d(48, 69, &[48, 49, 1]);
    s.two_d(48, 80, &store(&[48], data)).two_d(48, 81, &[48]);
    // MaxiCode mode 2, store, print.
    s.two_d(50, 65, &[50]).two_d(50, 80, &store(&[48], data));
    s.two_d(50, 81, &[48]);
    // GS1 DataBar: width, expanded stacked max width, store, print.
    s.two_d(51, 67, &[2]).two_d(51, 71, &[0, 0]);
    s.two_d(51, 80, &store(&[48, 72], b"0101234567890128"));
    s.two_d(51, 81, &[]);
    // Composite: width, max width, font, store, print.
    s.two_d(52, 67, &[2])
        .two_d(52, 71, &[0, 0])
        .two_d(52, 72, &[1]);
    s.two_d(52, 80, &store(&[48, 65], data)).two_d(52, 81, &[]);
    // Aztec: mode, size, error correction, store, print.
    s.two_d(53, 66, &[0, 0])
        .two_d(53, 67, &[3])
        .two_d(53, 69, &[23]);
    s.two_d(53, 80, &store(&[48], data)).two_d(53, 81, &[48]);
    // DataMatrix: type, size, store, print.
    s.two_d(54, 66, &[0, 0, 0]).two_d(54, 67, &[3]);
    s.two_d(54, 80, &store(&[48], data)).two_d(54, 81, &[48]);
    s.qr(data);
    s.line("Thank you!").feed(5).full_cut();
    s.build()
}

/// User-defined characters (a small icon set, printed as the codes they replace) and
/// an international character set (ESC R 2, Germany) for one product line.
fn boutique_user_chars_intl_set() -> Vec<u8> {
    let mut s = Stream::new(CodePage::Cp858);
    // ESC & 3 for '!'..'#' with widths 12, 6 and 0, then ESC % 1 to use them.
    s.raw(&[ESC, b'&', 3, b'!', b'#', 12]).poison(36);
    s.raw(&[6]).poison(18).raw(&[0]);
    s.raw(&[ESC, b'%', 1])
        .align(1)
        .raw(b"!\"\n")
        .raw(&[ESC, b'%', 0]);
    s.raw(&[ESC, b'?', b'!']);
    s.line("MAISON LUMEN").line("Store 014 Utrecht").align(0);
    s.line("Receipt #A-1031").line("2026-11-25T16:02:45");
    // The German set for the German product name: "Gr|~e" prints as "Größe".
    s.raw(&[ESC, b'R', 2]);
    s.columns("SKU 200871  Leinenhemd Gr|~e M", "59.90");
    s.columns("Member discount 10%", "-5.99");
    s.raw(&[ESC, b'R', 0]);
    s.bold(true).line("Total EUR 53.91").bold(false);
    s.columns("Card", "53.91");
    s.line("Member card ************5678");
    s.line("Returns within 30 days").feed(5).partial_cut();
    s.build()
}

/// A deli counter POS that prints the order header in page mode (print area, text
/// direction, absolute positions), prints the page with ESC FF, drafts a second page
/// that it cancels with CAN, and prints the items in standard mode.
fn deli_page_mode() -> Vec<u8> {
    let mut s = Stream::new(CodePage::Cp858);
    s.raw(&[
        ESC, b'L', ESC, b'W', 0, 0, 0, 0, 0x80, 1, 0xC8, 0, ESC, b'T', 0,
    ]);
    s.raw(&[GS, b'$', 10, 0, ESC, b'$', 13, 0])
        .line("SUPERMARKT DE HOEK");
    s.raw(&[GS, b'$', 40, 0]).line("Versafdeling");
    s.raw(&[ESC, 0x0C]);
    s.raw(&[ESC, b'T', 1])
        .line("CONCEPT - NIET GELDIG")
        .raw(&[0x18]);
    s.raw(&[ESC, b'S']);
    s.line("Bon 0012-3504").line("25-11-2026 10:45  Kassa 7");
    s.line(&"-".repeat(40));
    s.line("0,150 kg x 24,90").columns("Serranoham", "3,74");
    s.columns("Olijven gemengd 1,200 kg", "8,38");
    s.bold(true).columns("TOTAAL", "12,12").bold(false);
    s.raw(&[ESC, b'L'])
        .line("PIN  12,12")
        .line("Bedankt!")
        .raw(&[0x0C]);
    s.feed(3).partial_cut();
    s.build()
}

/// Code pages switched mid-receipt: CP850, CP858 for the euro, CP1252, CP866 for a
/// Russian product name, CP852 for a Polish one, an unknown ESC t (kept), ESC @ back
/// to the configured CP437.
fn code_page_switches_mid_receipt() -> Vec<u8> {
    let mut s = Stream::new(CodePage::Cp437);
    supermarket_header(&mut s, "0012-3505", "25-11-2026 20:00");
    s.code_page(2).columns("Crème brûlée 2st", "3,49");
    s.code_page(19).line("Prijzen in €");
    s.code_page(16).columns("Brötchen ‘Körner’", "0,59");
    s.code_page(17).columns("Водка Столичная 0,5L", "14,99");
    s.code_page(18).columns("Żubrówka 0,7L", "17,49");
    // ESC t 30 (TCVN-3 on Epson) is not decoded: CP852 stays.
    s.raw(&[ESC, b't', 30]).columns("Ogórki kiszone", "2,29");
    s.raw(&[ESC, b'@']);
    s.page = CodePage::Cp437;
    s.bold(true).columns("TOTAAL", "38,85").bold(false);
    s.columns("PIN", "38,85").line("Klantenkaart ****6060");
    s.feed(3).full_cut();
    s.build()
}

/// POS software written for Asian-market printers: it switches kanji mode on and off,
/// sets kanji print modes and defines a user kanji. The agent reads single-byte text
/// only; these commands are skipped.
fn kanji_mode_commands_ignored() -> Vec<u8> {
    let mut s = Stream::new(CodePage::Cp858);
    s.raw(&[FS, b'.', FS, b'C', 0, FS, b'!', 0x0C, FS, b'S', 0, 2]);
    s.raw(&[FS, b'2', 0x77, 0x21]).poison(72);
    s.raw(&[
        FS, b'&', FS, b'-', 1, FS, b'W', 1, FS, b'.', FS, b'?', 0x77, 0x21,
    ]);
    supermarket_header(&mut s, "0012-3506", "25-11-2026 20:15");
    s.raw(&[FS, b'(', b'A', 2, 0, 48, 1]);
    s.columns("Sushi rijst 1kg", "3,99")
        .columns("Sojasaus 250ml", "2,49");
    s.raw(&[FS, b'&'])
        .columns("Nori vellen 10st", "4,29")
        .raw(&[FS, b'.']);
    s.bold(true).columns("TOTAAL", "10,77").bold(false);
    s.columns("PIN", "10,77");
    s.feed(3).partial_cut();
    s.build()
}

/// Old POS software: CR LF line ends, lines printed with ESC J (print and feed) and
/// ESC d instead of LF, a lone CR, line spacing set, ESC i to cut.
fn old_pos_crlf_print_feed() -> Vec<u8> {
    let mut s = Stream::new(CodePage::Cp437);
    s.raw(&[ESC, b'3', 24, ESC, b'D', 10, 20, 0]);
    s.crlf_line("SUPERMARKT DE HOEK").crlf_line("Bon 0012-3507");
    s.raw(b"25-11-2026 07:55  Kassa 1").raw(&[ESC, b'J', 10]);
    s.raw(b"Melk vol 1L              1,19\r");
    s.raw(b"Eieren 10st              3,29").raw(&[ESC, b'd', 1]);
    s.crlf_line("TOTAAL                   4,48");
    s.crlf_line("Contant                  5,00").crlf_line("");
    s.raw(&[ESC, b'd', 5, ESC, b'i']);
    s.build()
}

/// A DIY store with a 48 kB banner (GS 8 L), a drawer pulse and buzzer through
/// DLE DC4 and real-time status requests between the lines.
fn diy_store_huge_logo_real_time() -> Vec<u8> {
    let mut s = Stream::new(CodePage::Cp858);
    s.big_graphics(576, 680).graphics(50, &[]);
    diy_header(&mut s, "4711-0817", "26.11.2026 Zeit 09:01");
    s.raw(&[DLE, 0x14, 7, 1, DLE, 0x05, 2]);
    s.columns("Art.-Nr. 880001 Akkuschrauber 18V", "89,00 A");
    s.raw(&[DLE, 0x04, 4, DLE, 0x14, 8, 1, 3, 20, 1, 6, 2, 8]);
    s.columns("Art.-Nr. 880002 Bitset 32tlg", "12,99 A");
    s.bold(true).columns("SUMME EUR", "101,99").bold(false);
    s.columns("EC-Karte", "101,99");
    s.line("Kundenkarte Nr. ********1111");
    s.raw(&[DLE, 0x14, 1, 0, 10, DLE, 0x14, 3, 1, 10, 13, 5, 5]);
    s.line("Umtausch innerhalb 14 Tagen").feed(4).full_cut();
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
        // Every receipt of the corpus balances: its lines (with discounts) add up to the
        // printed total, so the balance check flags misreads only.
        for receipt in &parsed {
            let checked = Checkout::default().on_receipt(
                receipt.clone(),
                Currency::EUR,
                Timestamp::from_unix_ms(0, 0),
            );
            // The one receipt printed without a total line is flagged, as it must be.
            let no_total = (case.name, receipt.receipt_no.as_deref())
                == ("two_receipts_one_stream", Some("0012-3461"));
            assert_eq!(
                checked.unbalanced,
                no_total,
                "{}: receipt {:?}: lines {} vs total {:?}",
                case.name,
                receipt.receipt_no,
                checked.lines_sum_cents(),
                receipt.total_cents
            );
        }
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
