#![no_main]
//! `cargo +nightly fuzz run layout`: layout loading and the line matcher (see checks.rs).

use libfuzzer_sys::fuzz_target;

mod checks;

fuzz_target!(|data: &[u8]| checks::layout(data));
