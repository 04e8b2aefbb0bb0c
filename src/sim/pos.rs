//! The POS side: receipts as a POS application prints them, each with the
//! transaction the agent should read from it.

use std::io;
use std::time::{Duration, Instant};

use chrono::{NaiveDateTime, TimeDelta};
use till360_shared::ReceiptLine;

use super::escpos::{Align, EscPosWriter, CODEPAGE_PC858};
use super::pty::VirtualPort;
use super::rng::SimRng;
use super::style::{BasketItem, ReceiptStyle};

/// What the agent should record for one printed receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedReceipt {
    pub receipt_no: String,
    /// The POS clock's local time as printed.
    pub printed_at: NaiveDateTime,
    /// Items and discounts in print order (discounts negative, `discount = true`).
    pub lines: Vec<ReceiptLine>,
    pub total_cents: i64,
}

/// A piece of what the POS sends: bytes to print, or a status request it then waits on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PosSegment {
    Bytes(Vec<u8>),
    /// `DLE EOT n` was sent (its bytes are in the segment before); the POS waits for
    /// the one-byte answer before it goes on.
    AwaitStatus(u8),
}

/// One receipt: the byte stream in order, and what it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimReceipt {
    pub segments: Vec<PosSegment>,
    pub expected: ExpectedReceipt,
    /// Items in the receipt (for the summary; `expected.lines` has the discounts too).
    pub item_count: usize,
}

impl SimReceipt {
    /// Every byte the POS sends for this receipt, i.e. what the printer must receive.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for seg in &self.segments {
            if let PosSegment::Bytes(b) = seg {
                out.extend_from_slice(b);
            }
        }
        out
    }

    pub fn status_polls(&self) -> usize {
        self.segments
            .iter()
            .filter(|s| matches!(s, PosSegment::AwaitStatus(_)))
            .count()
    }
}

/// What playing a receipt to a port observed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlayReport {
    /// The status bytes that came back for each `DLE EOT`.
    pub status_replies: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum PlayError {
    #[error("the POS port failed: {0}")]
    Port(io::Error),
    #[error("no answer to DLE EOT {0} within {1:?}")]
    NoStatus(u8, Duration),
}

/// A POS till printing receipts of one layout style. Deterministic by seed.
#[derive(Debug, Clone)]
pub struct PosSimulator {
    style: ReceiptStyle,
    rng: SimRng,
    store: String,
    next_no: u64,
    clock: NaiveDateTime,
    /// Percent of receipts that poll the printer status first.
    pub status_poll_percent: u64,
}

impl PosSimulator {
    /// `opening` is the POS clock at the first receipt.
    pub fn new(style: ReceiptStyle, store: &str, opening: NaiveDateTime, seed: u64) -> Self {
        Self {
            style,
            rng: SimRng::new(seed),
            store: store.to_string(),
            next_no: 1,
            clock: opening,
            status_poll_percent: 30,
        }
    }

    pub fn style(&self) -> ReceiptStyle {
        self.style
    }

    /// Builds the next receipt; `card_last4` is printed when a loyalty card was scanned.
    pub fn next_receipt(&mut self, card_last4: Option<&str>) -> SimReceipt {
        let basket = self.style.basket(&mut self.rng);
        self.receipt_for(basket, card_last4)
    }

    /// The next receipt with a given basket (a test that needs a big basket, or a
    /// sensitive product, chooses its own).
    pub fn receipt_for(&mut self, basket: Vec<BasketItem>, card_last4: Option<&str>) -> SimReceipt {
        let receipt_no = self.style.receipt_no(&self.store, self.next_no);
        self.next_no += 1;
        self.clock += TimeDelta::seconds(self.rng.range(20, 150) as i64);
        let printed_at = self.style.printed_time(self.clock);

        let mut lines = Vec::new();
        let mut printed = Vec::new();
        for item in &basket {
            printed.extend(self.style.item_lines(item));
            lines.extend(item.expected_lines());
        }
        let total_cents: i64 = lines.iter().map(|l| l.amount_cents).sum();

        let poll_first = self.rng.chance(self.status_poll_percent);
        let kick = self.rng.chance(70);
        let content = ReceiptContent {
            receipt_no: &receipt_no,
            printed_at,
            printed_items: &printed,
            total_cents,
            card_last4,
            drawer_kick: kick,
        };
        let mut segments = Vec::new();
        let mut head = EscPosWriter::new(Vec::new());
        head.init()
            .and_then(|w| w.codepage(CODEPAGE_PC858))
            .expect("writes into a Vec cannot fail");
        if poll_first {
            head.status_request(1)
                .expect("writes into a Vec cannot fail");
        }
        segments.push(PosSegment::Bytes(head.into_inner()));
        if poll_first {
            segments.push(PosSegment::AwaitStatus(1));
        }
        let mut body = EscPosWriter::new(Vec::new());
        self.write_body(&mut body, &content)
            .expect("writes into a Vec cannot fail");
        segments.push(PosSegment::Bytes(body.into_inner()));

        SimReceipt {
            segments,
            expected: ExpectedReceipt {
                receipt_no,
                printed_at,
                lines,
                total_cents,
            },
            item_count: basket.len(),
        }
    }

    /// The printed receipt after the reset: logo, header, items, total, barcodes, cut.
    pub fn write_body<W: io::Write>(
        &self,
        w: &mut EscPosWriter<W>,
        c: &ReceiptContent<'_>,
    ) -> io::Result<()> {
        let style = self.style;
        let rule = "-".repeat(super::style::WIDTH);
        w.align(Align::Center)?;
        let (lw, lh, logo) = logo_raster(style);
        w.raster(lw, lh, &logo)?;
        w.size(0x11)?.line(style.shop_name())?.size(0)?;
        for l in style.header_lines(&self.store) {
            w.line(&l)?;
        }
        w.align(Align::Left)?;
        w.line(&style.receipt_no_line(c.receipt_no))?;
        w.line(&style.timestamp_line(c.printed_at))?;
        w.line(&rule)?;
        for l in c.printed_items {
            w.line(l)?;
        }
        w.line(&rule)?;
        w.bold(true)?
            .line(&style.total_line(c.total_cents))?
            .bold(false)?;
        if let Some(last4) = c.card_last4 {
            w.line(&style.card_line(last4))?;
        }
        for l in style.footer_lines(c.total_cents) {
            w.line(&l)?;
        }
        w.line("")?;
        w.align(Align::Center)?;
        w.code128(c.receipt_no)?;
        w.qr(&format!("https://till360.example/r/{}", c.receipt_no))?;
        if c.drawer_kick {
            w.drawer_kick()?;
        }
        w.feed(4)?.cut()?;
        Ok(())
    }
}

/// The variable parts of one printed receipt.
#[derive(Debug, Clone)]
pub struct ReceiptContent<'a> {
    pub receipt_no: &'a str,
    pub printed_at: NaiveDateTime,
    /// Item, quantity and discount lines, already laid out.
    pub printed_items: &'a [String],
    pub total_cents: i64,
    pub card_last4: Option<&'a str>,
    pub drawer_kick: bool,
}

/// A 384×24 dot logo whose pixels happen to spell receipt-like ASCII: a parser that
/// reads raster data as text would invent a total here.
fn logo_raster(style: ReceiptStyle) -> (u16, u16, Vec<u8>) {
    const WIDTH_BYTES: u16 = 48;
    const HEIGHT: u16 = 24;
    let decoy: &[u8] = match style {
        ReceiptStyle::Supermarket => b"TOTAAL      999,99\nBon 9999-999999\n",
        ReceiptStyle::Boutique => b"Total EUR 999.00\nReceipt #X-99999\n",
    };
    let mut data = Vec::with_capacity(usize::from(WIDTH_BYTES) * usize::from(HEIGHT));
    let mut i = 0usize;
    while data.len() < usize::from(WIDTH_BYTES) * usize::from(HEIGHT) {
        // Alternate decoy text with a gradient of plain pixel bytes.
        if (i / 64).is_multiple_of(2) {
            data.push(decoy[i % decoy.len()]);
        } else {
            data.push(((i * 7) % 251) as u8 | 0x20);
        }
        i += 1;
    }
    (WIDTH_BYTES, HEIGHT, data)
}

/// Writes a receipt to the POS port in random chunks (as a POS application's writes
/// arrive), waiting for the status answer after each `DLE EOT`.
pub fn play_receipt(
    port: &VirtualPort,
    receipt: &SimReceipt,
    rng: &mut SimRng,
    max_chunk: usize,
    timeout: Duration,
) -> Result<PlayReport, PlayError> {
    let deadline = Instant::now() + timeout;
    let mut report = PlayReport::default();
    for seg in &receipt.segments {
        match seg {
            PosSegment::Bytes(bytes) => {
                let mut rest = &bytes[..];
                while !rest.is_empty() {
                    let n = (rng.range(1, max_chunk.max(1) as u64) as usize).min(rest.len());
                    port.write_all_by(&rest[..n], deadline)
                        .map_err(PlayError::Port)?;
                    rest = &rest[n..];
                    if rng.chance(10) {
                        std::thread::sleep(Duration::from_millis(rng.range(1, 3)));
                    }
                }
            }
            PosSegment::AwaitStatus(n) => {
                let mut buf = [0u8; 1];
                let left = deadline.saturating_duration_since(Instant::now());
                let got = port.read_timeout(&mut buf, left).map_err(PlayError::Port)?;
                if got == 0 {
                    return Err(PlayError::NoStatus(*n, timeout));
                }
                report.status_replies.push(buf[0]);
            }
        }
    }
    Ok(report)
}
