//! Progress bars of the long commands (imports, traits export, migrate, backup, restore)
//! on stderr with `indicatif`. Drawn only when stderr is a terminal: in logs, pipes and
//! tests a bar prints nothing.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// What a bar counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    /// Records, rows, pages, customers: `noun` names them.
    Items(&'static str),
}

/// One bar on stderr; hidden when stderr is not a terminal.
pub struct Bar {
    bar: ProgressBar,
    unit: Unit,
    known_total: bool,
}

impl Bar {
    /// A bar labelled `label`; `total` when known (otherwise a spinner with a count).
    pub fn new(label: impl Into<String>, unit: Unit, total: Option<u64>) -> Self {
        // Styled before it may draw: the default style would flash first.
        let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::hidden());
        bar.set_message(label.into());
        let this = Self {
            bar,
            unit,
            known_total: total.is_some(),
        };
        this.restyle();
        this.bar.set_draw_target(ProgressDrawTarget::stderr());
        // A spinner or a slow step still moves; nothing to tick when nothing is drawn.
        if !this.bar.is_hidden() {
            this.bar.enable_steady_tick(Duration::from_millis(200));
        }
        this
    }

    fn restyle(&self) {
        let template = match (self.unit, self.known_total) {
            (Unit::Bytes, true) => {
                "{msg} [{bar:20}] {percent:>3}% {bytes}/{total_bytes} ({bytes_per_sec})"
                    .to_string()
            }
            (Unit::Bytes, false) => "{spinner} {msg} {bytes} ({bytes_per_sec})".to_string(),
            (Unit::Items(noun), true) => format!(
                "{{msg}} [{{bar:20}}] {{percent:>3}}% {{human_pos}}/{{human_len}} {noun} ({{eta}} left)"
            ),
            (Unit::Items(noun), false) => {
                format!("{{spinner}} {{msg}} {{human_pos}} {noun}")
            }
        };
        if let Ok(style) = ProgressStyle::with_template(&template) {
            self.bar.set_style(style.progress_chars("#>-"));
        }
    }

    /// `done` so far, of `total` (which may change: a phase with a new size).
    pub fn set(&mut self, done: u64, total: Option<u64>) {
        if total.is_some() != self.known_total {
            self.known_total = total.is_some();
            self.restyle();
        }
        match total {
            Some(total) => self.bar.set_length(total),
            None => self.bar.unset_length(),
        }
        self.bar.set_position(done);
    }

    /// `done` so far, the total unchanged.
    pub fn position(&self, done: u64) {
        self.bar.set_position(done);
    }

    /// Prints a line on stderr above the bar (or alone, when no bar is drawn).
    pub fn line(&self, text: &str) {
        if self.bar.is_hidden() {
            eprintln!("{text}");
        } else {
            self.bar.println(text);
        }
    }

    /// Replaces the label (a count the bar does not show, such as records read).
    pub fn label(&self, label: impl Into<String>) {
        self.bar.set_message(label.into());
    }

    /// A new phase: `label`, counting `unit`.
    pub fn phase(&mut self, label: impl Into<String>, unit: Unit) {
        self.unit = unit;
        self.bar.reset();
        self.bar.set_message(label.into());
        self.restyle();
    }

    /// Removes the bar (the command prints its own summary line).
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if !self.bar.is_finished() {
            self.bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bar_on_a_stderr_that_is_not_a_terminal_is_hidden() {
        // `cargo test` captures or pipes stderr: the bar must draw nothing there.
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            return;
        }
        let mut bar = Bar::new("copy", Unit::Bytes, Some(10));
        assert!(bar.bar.is_hidden());
        bar.set(5, Some(10));
        bar.phase("check", Unit::Items("rows"));
        bar.set(1, None);
        bar.finish();
    }
}
