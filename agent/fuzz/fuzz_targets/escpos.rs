#![no_main]
//! `cargo +nightly fuzz run escpos`: the ESC/POS text extractor (see checks.rs).

use libfuzzer_sys::fuzz_target;

mod checks;

fuzz_target!(|data: &[u8]| checks::escpos(data));
