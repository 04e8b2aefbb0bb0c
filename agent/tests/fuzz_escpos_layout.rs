//! Replays the inputs kept from fuzzing the ESC/POS parser and the layout matcher
//! (`agent/fuzz`, cargo-fuzz on nightly) with the fuzz targets' own checks, so CI
//! keeps them fixed without cargo-fuzz. New crashes go to
//! `tests/data/fuzz/escpos/` and `tests/data/fuzz/layout/` under any file name.

use std::path::{Path, PathBuf};

#[path = "../fuzz/fuzz_targets/checks.rs"]
mod checks;

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fuzz")
        .join(target);
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("directory entry").path();
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            (path, bytes)
        })
        .collect();
    out.sort();
    out
}

fn replay(target: &str, check: fn(&[u8])) {
    let inputs = inputs(target);
    assert!(!inputs.is_empty(), "no kept inputs for {target}");
    for (path, bytes) in inputs {
        let outcome = std::panic::catch_unwind(|| check(&bytes));
        assert!(outcome.is_ok(), "{} fails again", path.display());
    }
}

#[test]
fn kept_escpos_fuzz_inputs_pass_the_fuzz_checks() {
    replay("escpos", checks::escpos);
}

#[test]
fn kept_layout_fuzz_inputs_pass_the_fuzz_checks() {
    replay("layout", checks::layout);
}
