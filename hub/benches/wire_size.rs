//! Bytes on the wire per receipt line: `Events` frames as the uplink sends them
//! (bincode, zstd when smaller, frame header included) next to two baselines from the
//! same receipts in the same run: the same frames uncompressed, and the JSON encoding
//! (serde_json) of the same events, one batch per JSON array.
//!
//! `cargo bench -p till360-hub --bench wire_size`; `TILL360_BENCH_RECEIPTS=N` changes N.

use std::time::Instant;

use till360_hub::synthetic::Generator;
use till360_shared::codec::{self, FLAG_ZSTD};
use till360_shared::wire::Message;
use till360_shared::{AgentId, Event, EventKind};

const CARDS: usize = 2_000;
const CARDED_PERCENT: u64 = 80;

fn main() {
    let receipts: u64 = std::env::var("TILL360_BENCH_RECEIPTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let agent = AgentId::new("S001", "T01");
    let mut gen = Generator::new(2026, CARDS, CARDED_PERCENT);
    let events: Vec<Event> = (1..=receipts).map(|seq| gen.receipt(&agent, seq)).collect();
    let lines: usize = events
        .iter()
        .map(|e| match &e.kind {
            EventKind::Receipt(r) => r.lines.len(),
            _ => 0,
        })
        .sum();
    println!(
        "wire size: {receipts} synthetic receipts, {lines} lines ({:.1} per receipt), \
         {CARDED_PERCENT}% carded",
        lines as f64 / receipts as f64
    );
    println!(
        "{:>6}  {:>14}  {:>14}  {:>14}  {:>8}  {:>12}",
        "batch", "framed+zstd", "framed plain", "JSON", "JSON/zstd", "encode MB/s"
    );
    // 1: a till sending each receipt as it is cut; 500: the agent's default batch_max
    // (a backlog drain).
    for batch in [1usize, 10, 100, 500] {
        let mut framed = 0usize;
        let mut plain = 0usize;
        let mut json = 0usize;
        let mut compressed_frames = 0usize;
        let started = Instant::now();
        for chunk in events.chunks(batch) {
            let msg = Message::Events(chunk.to_vec());
            let frame = codec::encode_frame(&msg).expect("a batch fits in a frame");
            if frame[6] & FLAG_ZSTD != 0 {
                compressed_frames += 1;
            }
            framed += frame.len();
        }
        let encode_secs = started.elapsed().as_secs_f64();
        for chunk in events.chunks(batch) {
            // The uncompressed frame: 4-byte length, 2-byte version, 1 flags byte.
            plain += 7 + codec::to_bytes(&Message::Events(chunk.to_vec()))
                .expect("encodes")
                .len();
            json += serde_json::to_vec(chunk).expect("JSON").len();
        }
        let per_line = |bytes: usize| bytes as f64 / lines as f64;
        println!(
            "{batch:>6}  {:>9.1} B/ln  {:>9.1} B/ln  {:>9.1} B/ln  {:>7.1}x  {:>12.1}",
            per_line(framed),
            per_line(plain),
            per_line(json),
            json as f64 / framed as f64,
            plain as f64 / 1e6 / encode_secs,
        );
        assert!(
            batch == 1 || compressed_frames > 0,
            "batches of {batch} are compressed"
        );
    }
}
