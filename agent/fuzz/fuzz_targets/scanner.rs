#![no_main]
//! `cargo +nightly fuzz run scanner`: scanner framing and classification. The property
//! lives in the library (`scanner::check_framing_invariants`) so the kept inputs under
//! `agent/tests/data/fuzz/scanner/` are replayed by a regular test exactly as fuzzed.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| till360_agent::scanner::check_framing_invariants(data));
