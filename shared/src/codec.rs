//! The one place that knows the byte layout of frames and stored payloads.
//!
//! A frame is `len: u32 BE` (bytes that follow), `version: u16 BE`, then the bincode 2
//! encoding of a [`Message`]. The decoder is check-then-parse: it returns `Ok(None)`
//! until a whole frame is buffered, checks the length limit before buffering a body,
//! and checks the version before decoding it. Swapping bincode for another codec means
//! changing this file only.

use serde::{de::DeserializeOwned, Serialize};
use thiserror::Error;

use crate::wire::{Message, MAX_FRAME_LEN, PROTOCOL_VERSION};

const LEN_BYTES: usize = 4;
const VERSION_BYTES: usize = 2;

#[derive(Debug, Error)]
pub enum CodecError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("frame of {len} bytes is too short to hold a protocol version")]
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

/// Encodes one message as a complete frame.
pub fn encode_frame(msg: &Message) -> Result<Vec<u8>, CodecError> {
    let body = to_bytes(msg)?;
    let len = VERSION_BYTES + body.len();
    if len > MAX_FRAME_LEN {
        return Err(CodecError::TooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    let mut out = Vec::with_capacity(LEN_BYTES + len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
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
        if len < VERSION_BYTES {
            return Err(CodecError::TooShort { len });
        }
        // The version is checked as soon as it is here, before waiting for the body.
        if self.buf.len() >= LEN_BYTES + VERSION_BYTES {
            let theirs = u16::from_be_bytes([self.buf[4], self.buf[5]]);
            if theirs != PROTOCOL_VERSION {
                return Err(CodecError::VersionMismatch {
                    theirs,
                    ours: PROTOCOL_VERSION,
                });
            }
        }
        if self.buf.len() < LEN_BYTES + len {
            return Ok(None);
        }
        let msg = from_bytes(&self.buf[LEN_BYTES + VERSION_BYTES..LEN_BYTES + len]);
        self.buf.drain(..LEN_BYTES + len);
        msg.map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::AgentId;

    fn hello() -> Message {
        Message::Hello {
            agent: AgentId::new("S001", "T01"),
            journal_last_seq: 42,
            software: "test".into(),
        }
    }

    #[test]
    fn round_trip_in_any_chunking() {
        let mut stream = encode_frame(&hello()).unwrap();
        stream.extend(encode_frame(&Message::Ack { acked_seq: 7 }).unwrap());
        for chunk in 1..stream.len() {
            let mut dec = FrameDecoder::new();
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                dec.feed(piece);
                while let Some(m) = dec.poll().unwrap() {
                    got.push(m);
                }
            }
            assert_eq!(got, vec![hello(), Message::Ack { acked_seq: 7 }]);
            assert_eq!(dec.buffered(), 0);
        }
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
                ours: 1
            })
        ));
    }

    #[test]
    fn refuses_oversize_before_buffering() {
        let mut dec = FrameDecoder::new();
        dec.feed(&((MAX_FRAME_LEN as u32) + 1).to_be_bytes());
        assert!(matches!(dec.poll(), Err(CodecError::TooLarge { .. })));
    }

    #[test]
    fn refuses_garbage_body() {
        let mut dec = FrameDecoder::new();
        dec.feed(&[0, 0, 0, 5, 0, 1, 0xff, 0xff, 0xff]);
        assert!(matches!(dec.poll(), Err(CodecError::Malformed(_))));
    }

    #[test]
    fn never_panics_on_random_bytes() {
        // A cheap deterministic sweep; the fuzz target goes further.
        let mut x: u32 = 0x1234_5678;
        for _ in 0..2000 {
            let mut bytes = Vec::new();
            for _ in 0..(x % 64) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                bytes.push(x as u8);
            }
            let mut dec = FrameDecoder::new();
            dec.feed(&[0, 0, 0, bytes.len() as u8 + 2, 0, 1]);
            dec.feed(&bytes);
            let _ = dec.poll();
        }
    }
}
