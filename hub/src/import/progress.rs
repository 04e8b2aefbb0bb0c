//! Import progress on stderr: an `indicatif` bar over the bytes of the file read (with
//! the records so far), drawn only when stderr is a terminal (logs stay clean).

use crate::progress_bar::{Bar, Unit};

/// Records between progress callbacks.
pub const EVERY: u64 = 1_000;

/// Shows records read and, when the file size is known, the share of bytes read.
pub struct ProgressLine {
    label: String,
    bar: Bar,
    total_bytes: Option<u64>,
}

impl ProgressLine {
    pub fn new(label: impl Into<String>, total_bytes: Option<u64>) -> Self {
        let label = label.into();
        Self {
            bar: Bar::new(label.clone(), Unit::Bytes, total_bytes),
            label,
            total_bytes,
        }
    }

    /// `records` read so far, `bytes` of the input consumed so far.
    pub fn update(&mut self, records: u64, bytes: u64) {
        self.bar.label(format!("{}: {records} records", self.label));
        let done = match self.total_bytes {
            Some(total) => bytes.min(total),
            None => bytes,
        };
        self.bar.set(done, self.total_bytes);
    }

    /// Removes the bar (the command prints its summary).
    pub fn finish(&mut self) {
        self.bar.finish();
    }
}
