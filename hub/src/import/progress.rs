//! Import progress on stderr: a `\r`-updated line on a terminal, otherwise a plain
//! line now and then (logs stay readable).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Records between progress callbacks.
pub const EVERY: u64 = 1_000;
/// Seconds between plain progress lines when stderr is not a terminal.
const PLAIN_INTERVAL: Duration = Duration::from_secs(5);

/// Shows records read and, when the file size is known, the share of bytes read.
pub struct ProgressLine {
    label: String,
    terminal: bool,
    started: Instant,
    last_plain: Instant,
    total_bytes: Option<u64>,
}

impl ProgressLine {
    pub fn new(label: impl Into<String>, total_bytes: Option<u64>) -> Self {
        let now = Instant::now();
        Self {
            label: label.into(),
            terminal: std::io::stderr().is_terminal(),
            started: now,
            last_plain: now,
            total_bytes,
        }
    }

    /// `records` read so far, `bytes` of the input consumed so far.
    pub fn update(&mut self, records: u64, bytes: u64) {
        let rate = records as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        let share = match self.total_bytes {
            Some(total) if total > 0 => {
                let pct = (bytes.min(total) as f64 * 100.0 / total as f64).round() as usize;
                let filled = pct / 5;
                format!(
                    "[{}{}] {pct:>3}% ",
                    "#".repeat(filled),
                    " ".repeat(20 - filled.min(20))
                )
            }
            _ => String::new(),
        };
        let text = format!("{}: {share}{records} records ({rate:.0}/s)", self.label);
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(err, "\r{text}");
            let _ = err.flush();
        } else if self.last_plain.elapsed() >= PLAIN_INTERVAL {
            self.last_plain = Instant::now();
            let _ = writeln!(err, "{text}");
        }
    }

    /// Ends the `\r` line.
    pub fn finish(&mut self) {
        if self.terminal {
            let _ = writeln!(std::io::stderr());
        }
    }
}
