//! The one place that knows the byte layout of frames and stored payloads.
//!
//! A frame (protocol version 2) is `len: u32 BE` (bytes that follow), `version: u16 BE`,
//! `flags: u8`, then the body: the bincode 2 encoding of a [`Message`], zstd-compressed
//! when flag bit 0 ([`FLAG_ZSTD`]) is set. Bulk messages (`Events`, digest and erasure
//! batches) are compressed when that makes them smaller; small frames never are.
//!
//! The decoder is check-then-parse: it returns `Ok(None)` until a whole frame is
//! buffered, checks the length limit before buffering a body, checks the version before
//! decoding it, and inflates a compressed body through a bounded reader, so a body that
//! would inflate beyond [`MAX_FRAME_LEN`] is [`CodecError::TooLarge`] after at most that
//! many bytes, never an unbounded allocation. Swapping bincode or zstd means changing
//! this file only.

use std::cell::RefCell;
use std::io::Read;

use serde::{de::DeserializeOwned, Serialize};
use thiserror::Error;

use crate::event::{Event, EventKind};
use crate::wire::{Message, MAX_FRAME_LEN, PROTOCOL_VERSION};

const LEN_BYTES: usize = 4;
/// Version and flags: what every frame carries before its body.
const HEADER_BYTES: usize = 3;

/// Flag bit 0: the body is one zstd frame holding the bincode bytes.
pub const FLAG_ZSTD: u8 = 0b0000_0001;
const KNOWN_FLAGS: u8 = FLAG_ZSTD;

/// Bodies shorter than this are sent as they are: zstd's own header would eat the gain.
const COMPRESS_MIN: usize = 128;
/// Fast level: the uplink drains backlogs at link speed; higher levels gain little on
/// receipts (many repeated strings) and cost CPU on the till.
const ZSTD_LEVEL: i32 = 3;

#[derive(Debug, Error)]
pub enum CodecError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("frame of {len} bytes is too short to hold a protocol version and flags")]
    TooShort { len: usize },
    #[error("peer speaks protocol version {theirs}, this side speaks {ours}")]
    VersionMismatch { theirs: u16, ours: u16 },
    #[error("malformed payload: {0}")]
    Malformed(String),
    #[error("cannot encode: {0}")]
    Encode(String),
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_FRAME_LEN>()
}

/// Encodes any serde value (journal payloads, store rows) with the project's codec.
pub fn to_bytes<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| CodecError::Encode(e.to_string()))
}

/// Decodes a value written by [`to_bytes`]; trailing bytes are an error.
pub fn from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if used != bytes.len() {
        return Err(CodecError::Malformed(format!(
            "{} trailing bytes after the value",
            bytes.len() - used
        )));
    }
    Ok(value)
}

/// A receipt event's canonical encoding ([`to_bytes`] of the event) with its lines
/// located in it, so a store can keep the event without its lines and the lines apart
/// (each line stored once) from one encoding instead of three.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptEncoding {
    /// `to_bytes(event)`: what the journal's hash chain is over.
    pub whole: Vec<u8>,
    lines: std::ops::Range<usize>,
}

impl ReceiptEncoding {
    /// The encoding of `event` (a receipt): `None` for any other event.
    pub fn of(event: &Event) -> Result<Option<Self>, CodecError> {
        let EventKind::Receipt(receipt) = &event.kind else {
            return Ok(None);
        };
        let whole = to_bytes(event)?;
        // The lines are followed by the receipt's last fields, and those end the event.
        let after = encoded_len(&(
            receipt.total_cents,
            receipt.currency,
            receipt.unbalanced,
            receipt.unmatched_lines,
        ))?;
        let end = whole.len().checked_sub(after);
        let start = end.and_then(|end| end.checked_sub(encoded_len(&receipt.lines).ok()?));
        match (start, end) {
            (Some(start), Some(end)) => Ok(Some(Self {
                whole,
                lines: start..end,
            })),
            _ => Err(CodecError::Encode(
                "a receipt's lines are not where its encoding should hold them".into(),
            )),
        }
    }

    /// `to_bytes(&receipt.lines)`.
    pub fn lines(&self) -> &[u8] {
        &self.whole[self.lines.clone()]
    }

    /// `to_bytes` of the event with its lines left out (an empty list).
    pub fn without_lines(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.whole.len() - self.lines.len() + 1);
        bytes.extend_from_slice(&self.whole[..self.lines.start]);
        // An empty sequence: its length, zero, as one varint byte.
        bytes.push(0);
        bytes.extend_from_slice(&self.whole[self.lines.end..]);
        bytes
    }
}

/// How many bytes [`to_bytes`] would give for `value`, without allocating them.
pub fn encoded_len<T: Serialize>(value: &T) -> Result<usize, CodecError> {
    let mut counter = bincode::enc::write::SizeWriter::default();
    bincode::serde::encode_into_writer(value, &mut counter, config())
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    Ok(counter.bytes_written)
}

/// Messages that carry lists (and so repeat themselves) are worth compressing.
fn is_bulk(msg: &Message) -> bool {
    matches!(
        msg,
        Message::Events(_) | Message::Digests { .. } | Message::Erasures { .. }
    )
}

thread_local! {
    // One compression context per thread: creating one per frame costs more than
    // compressing a small batch.
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { RefCell::new(None) };
}

/// `body` compressed, or `None` when compression fails or does not make it smaller.
fn compress(body: &[u8]) -> Option<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = zstd::bulk::Compressor::new(ZSTD_LEVEL).ok();
        }
        let packed = slot.as_mut()?.compress(body).ok()?;
        (packed.len() < body.len()).then_some(packed)
    })
}

/// The largest zstd window a body may ask for: no body inflates beyond
/// [`MAX_FRAME_LEN`], so no window needs to be larger (zstd's own limit, 128 MiB, would
/// be allocated for a frame of a few bytes).
const WINDOW_LOG_MAX: u32 = MAX_FRAME_LEN.ilog2();

/// Inflates a compressed body, reading at most `MAX_FRAME_LEN + 1` bytes out of it,
/// through a window of at most `2^WINDOW_LOG_MAX` bytes.
fn decompress(packed: &[u8]) -> Result<Vec<u8>, CodecError> {
    let mut decoder = zstd::stream::read::Decoder::with_buffer(packed)
        .map_err(|e| CodecError::Malformed(format!("compressed body: {e}")))?;
    decoder
        .window_log_max(WINDOW_LOG_MAX)
        .map_err(|e| CodecError::Malformed(format!("compressed body: {e}")))?;
    // Grows with what actually comes out, up to the limit, never to a size the peer
    // claims.
    let mut out = Vec::with_capacity(packed.len().saturating_mul(4).min(MAX_FRAME_LEN));
    decoder
        .take(MAX_FRAME_LEN as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| {
            // zstd says "Frame requires too much memory": say which limit.
            if e.to_string().contains("too much memory") {
                CodecError::Malformed(format!(
                    "compressed body asks for a window larger than the limit of {} bytes",
                    1u64 << WINDOW_LOG_MAX
                ))
            } else {
                CodecError::Malformed(format!("compressed body: {e}"))
            }
        })?;
    if out.len() > MAX_FRAME_LEN {
        return Err(CodecError::TooLarge {
            len: out.len(),
            max: MAX_FRAME_LEN,
        });
    }
    Ok(out)
}

/// Encodes one message as a complete frame (bulk messages compressed when smaller).
pub fn encode_frame(msg: &Message) -> Result<Vec<u8>, CodecError> {
    let body = to_bytes(msg)?;
    // The limit holds for the inflated body too, so the peer never has to refuse it.
    let plain_len = HEADER_BYTES + body.len();
    if plain_len > MAX_FRAME_LEN {
        return Err(CodecError::TooLarge {
            len: plain_len,
            max: MAX_FRAME_LEN,
        });
    }
    let packed = if is_bulk(msg) && body.len() >= COMPRESS_MIN {
        compress(&body)
    } else {
        None
    };
    let (flags, body) = match packed {
        Some(packed) => (FLAG_ZSTD, packed),
        None => (0, body),
    };
    Ok(frame_bytes(flags, &body))
}

/// Header plus `body` as given (the caller has checked the limit).
fn frame_bytes(flags: u8, body: &[u8]) -> Vec<u8> {
    let len = HEADER_BYTES + body.len();
    let mut out = Vec::with_capacity(LEN_BYTES + len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    out.push(flags);
    out.extend_from_slice(body);
    out
}

/// Reassembles frames from a byte stream fed in arbitrary chunks.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete message, `Ok(None)` when more bytes are needed. After an error
    /// the stream cannot be trusted: the caller closes the connection.
    pub fn poll(&mut self) -> Result<Option<Message>, CodecError> {
        if self.buf.len() < LEN_BYTES {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len > MAX_FRAME_LEN {
            return Err(CodecError::TooLarge {
                len,
                max: MAX_FRAME_LEN,
            });
        }
        // The version is checked as soon as it is here, before the rest of the header
        // and the body: a peer of another version gets the clearest error possible.
        if self.buf.len() >= LEN_BYTES + 2 && len >= 2 {
            let theirs = u16::from_be_bytes([self.buf[4], self.buf[5]]);
            if theirs != PROTOCOL_VERSION {
                return Err(CodecError::VersionMismatch {
                    theirs,
                    ours: PROTOCOL_VERSION,
                });
            }
        }
        if len < HEADER_BYTES {
            return Err(CodecError::TooShort { len });
        }
        if self.buf.len() < LEN_BYTES + len {
            return Ok(None);
        }
        let flags = self.buf[LEN_BYTES + 2];
        let body = &self.buf[LEN_BYTES + HEADER_BYTES..LEN_BYTES + len];
        let msg = if flags & !KNOWN_FLAGS != 0 {
            Err(CodecError::Malformed(format!(
                "unknown frame flags {flags:#04x}"
            )))
        } else if flags & FLAG_ZSTD != 0 {
            decompress(body).and_then(|plain| from_bytes(&plain))
        } else {
            from_bytes(body)
        };
        self.buf.drain(..LEN_BYTES + len);
        msg.map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{AgentId, Event, EventKind, Receipt, ReceiptLine};
    use crate::money::Currency;
    use crate::time::Timestamp;

    proptest::proptest! {
        /// One encoding gives what three would: the lines' encoding and the event's
        /// without them, for receipts of any shape (field sizes change varint widths).
        #[test]
        fn a_receipt_encoding_splits_into_its_lines_and_the_rest(
            lines in proptest::collection::vec(
                ("\\PC{0,40}", proptest::option::of("[0-9]{1,14}"), proptest::num::i64::ANY,
                 proptest::option::of(proptest::num::i64::ANY), proptest::num::i64::ANY,
                 proptest::bool::ANY),
                0..40,
            ),
            receipt_no in proptest::option::of("\\PC{0,20}"),
            total_cents in proptest::num::i64::ANY,
            unbalanced in proptest::bool::ANY,
            unmatched_lines in proptest::num::u32::ANY,
            seq in proptest::num::u64::ANY,
            at_ms in proptest::num::i64::ANY,
        ) {
            let receipt = Receipt {
                receipt_no,
                printed_at: None,
                completed_at: Timestamp::from_unix_ms(at_ms, 60),
                card: None,
                card_last4: Some("1234".into()),
                lines: lines
                    .into_iter()
                    .map(|(description, sku, quantity_milli, unit_cents, amount_cents, discount)| {
                        ReceiptLine { description, sku, quantity_milli, unit_cents, amount_cents, discount }
                    })
                    .collect(),
                total_cents,
                currency: Currency::EUR,
                unbalanced,
                unmatched_lines,
            };
            let mut event = Event {
                agent: AgentId::new("S001", "T01"),
                seq,
                recorded_at: Timestamp::from_unix_ms(at_ms, -120),
                kind: EventKind::Receipt(receipt.clone()),
            };
            let split = ReceiptEncoding::of(&event).unwrap().unwrap();
            proptest::prop_assert_eq!(&split.whole, &to_bytes(&event).unwrap());
            proptest::prop_assert_eq!(split.lines(), &to_bytes(&receipt.lines).unwrap()[..]);
            event.kind = EventKind::Receipt(Receipt { lines: Vec::new(), ..receipt });
            proptest::prop_assert_eq!(split.without_lines(), to_bytes(&event).unwrap());
        }
    }

    #[test]
    fn only_a_receipt_has_a_receipt_encoding() {
        let scan = Event {
            agent: AgentId::new("S001", "T01"),
            seq: 1,
            recorded_at: Timestamp::from_unix_ms(0, 0),
            kind: EventKind::Redacted,
        };
        assert_eq!(ReceiptEncoding::of(&scan).unwrap(), None);
    }

    fn hello() -> Message {
        Message::Hello {
            agent: AgentId::new("S001", "T01"),
            journal_last_seq: 42,
            software: "test".into(),
        }
    }

    fn receipts(count: u64) -> Message {
        let agent = AgentId::new("S001", "T01");
        let events = (1..=count)
            .map(|seq| {
                let at = Timestamp::from_unix_ms(1_767_600_000_000 + seq as i64 * 90_000, 60);
                let lines: Vec<ReceiptLine> = (0..5)
                    .map(|i| ReceiptLine {
                        description: ["Milk 1l", "Bread", "Coffee 500g"][i % 3].into(),
                        sku: Some(format!("4000000000{i:03}")),
                        quantity_milli: 1000,
                        unit_cents: Some(119 + i as i64),
                        amount_cents: 119 + i as i64,
                        discount: false,
                    })
                    .collect();
                Event {
                    agent: agent.clone(),
                    seq,
                    recorded_at: at,
                    kind: EventKind::Receipt(Receipt {
                        receipt_no: Some(format!("T01-{seq:06}")),
                        printed_at: Some(at),
                        completed_at: at,
                        card: None,
                        card_last4: None,
                        total_cents: lines.iter().map(|l| l.amount_cents).sum(),
                        lines,
                        currency: Currency::EUR,
                        unbalanced: false,
                        unmatched_lines: 0,
                    }),
                }
            })
            .collect();
        Message::Events(events)
    }

    /// A frame with the given flags and body, bypassing the encoder's checks.
    fn raw_frame(flags: u8, body: &[u8]) -> Vec<u8> {
        frame_bytes(flags, body)
    }

    fn decode_all(stream: &[u8], chunk: usize) -> Vec<Message> {
        let mut dec = FrameDecoder::new();
        let mut got = Vec::new();
        for piece in stream.chunks(chunk) {
            dec.feed(piece);
            while let Some(m) = dec.poll().unwrap() {
                got.push(m);
            }
        }
        assert_eq!(dec.buffered(), 0);
        got
    }

    #[test]
    fn round_trip_in_any_chunking() {
        let mut stream = encode_frame(&hello()).unwrap();
        stream.extend(encode_frame(&Message::Ack { acked_seq: 7 }).unwrap());
        for chunk in 1..stream.len() {
            assert_eq!(
                decode_all(&stream, chunk),
                vec![hello(), Message::Ack { acked_seq: 7 }]
            );
        }
    }

    #[test]
    fn events_are_compressed_and_small_frames_are_not() {
        let events = receipts(50);
        let frame = encode_frame(&events).unwrap();
        assert_eq!(frame[6], FLAG_ZSTD, "a batch of receipts is compressed");
        let plain = to_bytes(&events).unwrap();
        assert!(
            frame.len() * 2 < plain.len(),
            "compressed {} vs plain {}",
            frame.len(),
            plain.len()
        );
        assert_eq!(
            encode_frame(&hello()).unwrap()[6],
            0,
            "hello is never compressed"
        );
        let tiny = receipts(0);
        assert_eq!(
            encode_frame(&tiny).unwrap()[6],
            0,
            "an empty batch gains nothing"
        );
    }

    #[test]
    fn compressed_frames_split_anywhere_decode_the_same() {
        let mut stream = encode_frame(&hello()).unwrap();
        stream.extend(encode_frame(&receipts(20)).unwrap());
        stream.extend(encode_frame(&Message::Ack { acked_seq: 20 }).unwrap());
        for chunk in [1, 2, 3, 5, 7, 64, 1000, stream.len()] {
            assert_eq!(
                decode_all(&stream, chunk),
                vec![hello(), receipts(20), Message::Ack { acked_seq: 20 }]
            );
        }
        // Every split point of the compressed frame itself.
        let frame = encode_frame(&receipts(3)).unwrap();
        for cut in 0..=frame.len() {
            let mut dec = FrameDecoder::new();
            dec.feed(&frame[..cut]);
            if cut < frame.len() {
                assert!(dec.poll().unwrap().is_none(), "cut at {cut}");
            }
            dec.feed(&frame[cut..]);
            assert_eq!(dec.poll().unwrap(), Some(receipts(3)));
        }
    }

    #[test]
    fn a_corrupt_compressed_body_is_malformed() {
        let frame = encode_frame(&receipts(20)).unwrap();
        assert_eq!(frame[6], FLAG_ZSTD);
        // Flip bytes in the middle of the zstd data, and separately cut it short.
        let mut flipped = frame.clone();
        for b in flipped[20..60].iter_mut() {
            *b ^= 0x5a;
        }
        let truncated_body = &frame[7..frame.len() - 10];
        let truncated = raw_frame(FLAG_ZSTD, truncated_body);
        let not_zstd = raw_frame(FLAG_ZSTD, b"this is no zstd frame at all");
        for bytes in [flipped, truncated, not_zstd] {
            let mut dec = FrameDecoder::new();
            dec.feed(&bytes);
            assert!(
                matches!(dec.poll(), Err(CodecError::Malformed(_))),
                "corrupt body must be Malformed"
            );
        }
    }

    #[test]
    fn a_decompression_bomb_is_too_large_not_an_allocation() {
        // 64 MiB of zeros packs into a few KiB: far below the frame limit on the wire.
        let zeros = vec![0u8; 8 * MAX_FRAME_LEN];
        let packed = zstd::bulk::compress(&zeros, 19).unwrap();
        assert!(packed.len() < 64 * 1024, "bomb is {} bytes", packed.len());
        let mut dec = FrameDecoder::new();
        dec.feed(&raw_frame(FLAG_ZSTD, &packed));
        match dec.poll() {
            Err(CodecError::TooLarge { len, max }) => {
                assert_eq!(max, MAX_FRAME_LEN);
                assert_eq!(
                    len,
                    MAX_FRAME_LEN + 1,
                    "inflation stopped one byte past the limit"
                );
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert_eq!(dec.buffered(), 0, "the bomb frame is consumed");
    }

    #[test]
    fn a_tiny_frame_declaring_a_huge_window_is_refused_not_allocated() {
        // A few bytes that ask the decoder for a 128 MiB window (zstd's default limit
        // accepts it and allocates it before producing one byte).
        let mut packed = Vec::new();
        let mut encoder = zstd::stream::write::Encoder::new(&mut packed, 3).unwrap();
        encoder
            .set_parameter(zstd::stream::raw::CParameter::WindowLog(27))
            .unwrap();
        encoder.include_contentsize(false).unwrap();
        std::io::Write::write_all(&mut encoder, &to_bytes(&hello()).unwrap()).unwrap();
        encoder.finish().unwrap();
        assert!(packed.len() < 128, "frame is {} bytes", packed.len());
        let mut dec = FrameDecoder::new();
        dec.feed(&raw_frame(FLAG_ZSTD, &packed));
        match dec.poll() {
            Err(CodecError::Malformed(detail)) => {
                assert!(detail.contains("window"), "the error says why: {detail}")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(dec.buffered(), 0, "the frame is consumed");
        // What the encoder sends decodes as before.
        let mut dec = FrameDecoder::new();
        dec.feed(&encode_frame(&receipts(200)).unwrap());
        assert_eq!(dec.poll().unwrap(), Some(receipts(200)));
    }

    #[test]
    fn a_body_inflating_to_exactly_the_limit_is_still_decoded_as_a_message() {
        // Just under the limit: inflation succeeds and bincode judges the bytes.
        let zeros = vec![0u8; MAX_FRAME_LEN];
        let packed = zstd::bulk::compress(&zeros, 3).unwrap();
        let mut dec = FrameDecoder::new();
        dec.feed(&raw_frame(FLAG_ZSTD, &packed));
        // Variant 0 (Hello) with empty strings, then megabytes of trailing zeros.
        assert!(matches!(dec.poll(), Err(CodecError::Malformed(_))));
    }

    #[test]
    fn unknown_flags_are_malformed() {
        let body = to_bytes(&hello()).unwrap();
        let mut dec = FrameDecoder::new();
        dec.feed(&raw_frame(0b1000_0000, &body));
        assert!(matches!(dec.poll(), Err(CodecError::Malformed(_))));
    }

    #[test]
    fn encoder_refuses_what_would_inflate_beyond_the_limit() {
        // Highly compressible, but over the limit once inflated: refused at the source,
        // so the agent splits the batch instead of having the hub refuse it.
        let agent = AgentId::new("S001", "T01");
        let at = Timestamp::from_unix_ms(0, 0);
        let big = Message::Events(vec![Event {
            agent,
            seq: 1,
            recorded_at: at,
            kind: EventKind::CouponRefused {
                code: "x".repeat(MAX_FRAME_LEN),
                reason: String::new(),
            },
        }]);
        assert!(matches!(
            encode_frame(&big),
            Err(CodecError::TooLarge { .. })
        ));
    }

    #[test]
    fn refuses_other_version_before_body() {
        let mut frame = encode_frame(&hello()).unwrap();
        frame[4] = 0;
        frame[5] = 99;
        let mut dec = FrameDecoder::new();
        dec.feed(&frame[..6]);
        assert!(matches!(
            dec.poll(),
            Err(CodecError::VersionMismatch {
                theirs: 99,
                ours: PROTOCOL_VERSION
            })
        ));
    }

    #[test]
    fn a_version_1_peer_gets_a_version_mismatch() {
        // Version 1 layout: len, version, bincode body (no flags byte).
        let body = to_bytes(&hello()).unwrap();
        let mut v1 = ((2 + body.len()) as u32).to_be_bytes().to_vec();
        v1.extend_from_slice(&1u16.to_be_bytes());
        v1.extend_from_slice(&body);
        let mut dec = FrameDecoder::new();
        dec.feed(&v1);
        let err = dec.poll().unwrap_err();
        assert!(matches!(
            err,
            CodecError::VersionMismatch {
                theirs: 1,
                ours: PROTOCOL_VERSION
            }
        ));
        assert_eq!(
            err.to_string(),
            format!("peer speaks protocol version 1, this side speaks {PROTOCOL_VERSION}")
        );
    }

    #[test]
    fn refuses_oversize_before_buffering() {
        let mut dec = FrameDecoder::new();
        dec.feed(&((MAX_FRAME_LEN as u32) + 1).to_be_bytes());
        assert!(matches!(dec.poll(), Err(CodecError::TooLarge { .. })));
    }

    #[test]
    fn refuses_a_frame_without_room_for_the_header() {
        for len in 0u32..3 {
            let mut dec = FrameDecoder::new();
            let mut bytes = len.to_be_bytes().to_vec();
            bytes.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes()[..len as usize]);
            dec.feed(&bytes);
            assert!(
                matches!(dec.poll(), Err(CodecError::TooShort { .. })),
                "len {len}"
            );
        }
    }

    #[test]
    fn refuses_garbage_body() {
        let mut dec = FrameDecoder::new();
        let [hi, lo] = PROTOCOL_VERSION.to_be_bytes();
        dec.feed(&[0, 0, 0, 6, hi, lo, 0, 0xff, 0xff, 0xff]);
        assert!(matches!(dec.poll(), Err(CodecError::Malformed(_))));
    }

    #[test]
    fn never_panics_on_random_bytes() {
        // A cheap deterministic sweep over both plain and compressed bodies; the fuzz
        // target goes further.
        let mut x: u32 = 0x1234_5678;
        for round in 0..4000u32 {
            let mut bytes = Vec::new();
            for _ in 0..(x % 64) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                bytes.push(x as u8);
            }
            if round % 2 == 1 {
                // A real zstd magic number, so the decoder gets past the header check.
                bytes.splice(0..0, [0x28, 0xb5, 0x2f, 0xfd]);
            }
            let mut dec = FrameDecoder::new();
            dec.feed(&raw_frame((round % 2) as u8, &bytes));
            let _ = dec.poll();
        }
    }
}
