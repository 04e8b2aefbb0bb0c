//! An ESC/POS byte-stream builder, as a POS application would emit it. Generic over
//! `Write` so tests can build into a `Vec<u8>`.

use std::io::{self, Write};

pub const ESC: u8 = 0x1B;
pub const GS: u8 = 0x1D;
pub const DLE: u8 = 0x10;
pub const EOT: u8 = 0x04;
pub const LF: u8 = 0x0A;

/// ESC t code page number of PC858 (CP850 with € at 0xD5) on Epson-compatible printers.
pub const CODEPAGE_PC858: u8 = 19;

/// Encodes text to CP858. Characters outside the code page become `?`, as a POS would
/// print them.
pub fn encode_cp858(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| {
            if c.is_ascii() {
                return c as u8;
            }
            match c {
                '€' => 0xD5,
                'Ç' => 0x80,
                'ü' => 0x81,
                'é' => 0x82,
                'â' => 0x83,
                'ä' => 0x84,
                'à' => 0x85,
                'ç' => 0x87,
                'ê' => 0x88,
                'è' => 0x8A,
                'ï' => 0x8B,
                'î' => 0x8C,
                'Ä' => 0x8E,
                'É' => 0x90,
                'ô' => 0x93,
                'ö' => 0x94,
                'û' => 0x96,
                'ù' => 0x97,
                'Ö' => 0x99,
                'Ü' => 0x9A,
                'ø' => 0x9B,
                '£' => 0x9C,
                'á' => 0xA0,
                'í' => 0xA1,
                'ó' => 0xA2,
                'ú' => 0xA3,
                'ñ' => 0xA4,
                'Ñ' => 0xA5,
                'ß' => 0xE1,
                _ => b'?',
            }
        })
        .collect()
}

/// Text alignment (`ESC a n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left = 0,
    Center = 1,
    Right = 2,
}

/// Writes ESC/POS commands and CP858 text to `W`.
#[derive(Debug)]
pub struct EscPosWriter<W: Write> {
    out: W,
}

impl<W: Write> EscPosWriter<W> {
    pub fn new(out: W) -> Self {
        Self { out }
    }

    pub fn into_inner(self) -> W {
        self.out
    }

    pub fn raw(&mut self, bytes: &[u8]) -> io::Result<&mut Self> {
        self.out.write_all(bytes)?;
        Ok(self)
    }

    /// `ESC @`: reset the printer.
    pub fn init(&mut self) -> io::Result<&mut Self> {
        self.raw(&[ESC, b'@'])
    }

    /// `ESC t n`: select the character code table.
    pub fn codepage(&mut self, table: u8) -> io::Result<&mut Self> {
        self.raw(&[ESC, b't', table])
    }

    pub fn align(&mut self, align: Align) -> io::Result<&mut Self> {
        self.raw(&[ESC, b'a', align as u8])
    }

    /// `ESC E n`: emphasised on/off.
    pub fn bold(&mut self, on: bool) -> io::Result<&mut Self> {
        self.raw(&[ESC, b'E', u8::from(on)])
    }

    /// `GS ! n`: character size (0x11 = double width and height).
    pub fn size(&mut self, n: u8) -> io::Result<&mut Self> {
        self.raw(&[GS, b'!', n])
    }

    /// One line of CP858 text followed by LF.
    pub fn line(&mut self, text: &str) -> io::Result<&mut Self> {
        let bytes = encode_cp858(text);
        self.out.write_all(&bytes)?;
        self.raw(&[LF])
    }

    /// `GS v 0 m xL xH yL yH d…`: a raster bit image, `width_bytes` × `height` dots/8.
    /// `data` must hold `width_bytes * height` bytes.
    pub fn raster(&mut self, width_bytes: u16, height: u16, data: &[u8]) -> io::Result<&mut Self> {
        if data.len() != usize::from(width_bytes) * usize::from(height) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "raster of {width_bytes}x{height} needs {} bytes, got {}",
                    usize::from(width_bytes) * usize::from(height),
                    data.len()
                ),
            ));
        }
        let [xl, xh] = width_bytes.to_le_bytes();
        let [yl, yh] = height.to_le_bytes();
        self.raw(&[GS, b'v', b'0', 0, xl, xh, yl, yh])?;
        self.raw(data)
    }

    /// `GS k 73 n {B data`: a CODE128 barcode in code set B.
    pub fn code128(&mut self, data: &str) -> io::Result<&mut Self> {
        let mut payload = b"{B".to_vec();
        payload.extend_from_slice(data.as_bytes());
        let n = u8::try_from(payload.len()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "CODE128 data longer than 253 bytes",
            )
        })?;
        // Height 60 dots, HRI below.
        self.raw(&[GS, b'h', 60, GS, b'H', 2, GS, b'k', 73, n])?;
        self.raw(&payload)
    }

    /// A QR code via `GS ( k`: model 2, module size 4, error level M, store, print.
    pub fn qr(&mut self, data: &str) -> io::Result<&mut Self> {
        let store_len = u16::try_from(data.len() + 3).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "QR data longer than 65532 bytes",
            )
        })?;
        let [pl, ph] = store_len.to_le_bytes();
        self.raw(&[GS, b'(', b'k', 4, 0, 49, 65, 50, 0])?;
        self.raw(&[GS, b'(', b'k', 3, 0, 49, 67, 4])?;
        self.raw(&[GS, b'(', b'k', 3, 0, 49, 69, 49])?;
        self.raw(&[GS, b'(', b'k', pl, ph, 49, 80, 48])?;
        self.raw(data.as_bytes())?;
        self.raw(&[GS, b'(', b'k', 3, 0, 49, 81, 48])
    }

    /// `ESC p 0 25 250`: pulse drawer pin 2.
    pub fn drawer_kick(&mut self) -> io::Result<&mut Self> {
        self.raw(&[ESC, b'p', 0, 25, 250])
    }

    /// `ESC d n`: print and feed n lines.
    pub fn feed(&mut self, lines: u8) -> io::Result<&mut Self> {
        self.raw(&[ESC, b'd', lines])
    }

    /// `GS V 66 0`: feed to the cutter and partial cut.
    pub fn cut(&mut self) -> io::Result<&mut Self> {
        self.raw(&[GS, b'V', 66, 0])
    }

    /// `DLE EOT n`: real-time status request.
    pub fn status_request(&mut self, n: u8) -> io::Result<&mut Self> {
        self.raw(&[DLE, EOT, n])
    }
}
