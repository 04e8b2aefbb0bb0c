//! When to try a device again, and when that is worth a log line (sans-IO: the caller
//! passes `now` and does the opening and the logging).
//!
//! Attempts are spaced 100 ms doubling to 2 s, so a dead port costs at most ten opens in
//! its first second and one every 2 s after: never a busy loop. A port that opens but
//! dies again within [`STABLE_FOR`] keeps its backoff, so a device that flaps (opens,
//! hangs up at once) is not retried ten times a second forever. One outage gives one
//! [`Notice::Lost`] (or [`Notice::Absent`] when the device was never there) and one
//! [`Notice::Back`]; the attempts in between are silent.

#![deny(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

/// The first retry comes this soon after a loss.
pub const MIN_RECONNECT_DELAY: Duration = Duration::from_millis(100);
/// Retries are never further apart than this, so a replugged device is found quickly.
pub const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);
/// A connection that lasted this long was a real one: its loss starts a fresh backoff.
const STABLE_FOR: Duration = Duration::from_secs(2);

/// What the caller should log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The device was never opened and the first attempt failed.
    Absent,
    /// A device that was open went away.
    Lost,
    /// The device is open again after an outage.
    Back { down_for: Duration, attempts: u32 },
}

/// The reconnect schedule of one device.
#[derive(Debug, Default)]
pub struct Reconnect {
    /// Failed attempts (and quick losses) since the last stable connection.
    attempt: u32,
    next_at: Option<Instant>,
    /// Set while the device is away: since when, and how many opens failed.
    outage: Option<(Instant, u32)>,
    opened_at: Option<Instant>,
    /// An outage was already reported, so further failures stay quiet.
    reported: bool,
}

impl Reconnect {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether an open may be tried at `now`.
    pub fn is_due(&self, now: Instant) -> bool {
        self.next_at.is_none_or(|at| now >= at)
    }

    /// How long until an open may be tried.
    pub fn wait(&self, now: Instant) -> Duration {
        self.next_at
            .map_or(Duration::ZERO, |at| at.saturating_duration_since(now))
    }

    /// An open failed at `now`. Only the first failure of an outage asks for a log line.
    pub fn open_failed(&mut self, now: Instant) -> Option<Notice> {
        let (_, failures) = self.outage.get_or_insert((now, 0));
        *failures += 1;
        self.schedule(now);
        if self.reported {
            return None;
        }
        self.reported = true;
        Some(Notice::Absent)
    }

    /// The device opened at `now`; after an outage this is worth a log line.
    pub fn opened(&mut self, now: Instant) -> Option<Notice> {
        self.next_at = None;
        self.opened_at = Some(now);
        let notice = self.outage.take().map(|(since, attempts)| Notice::Back {
            down_for: now.saturating_duration_since(since),
            attempts: attempts + 1,
        });
        self.reported = false;
        notice
    }

    /// An open device went away at `now`.
    pub fn lost(&mut self, now: Instant) -> Option<Notice> {
        let stable = self
            .opened_at
            .take()
            .is_some_and(|at| now.saturating_duration_since(at) >= STABLE_FOR);
        if stable {
            self.attempt = 0;
        }
        self.outage = Some((now, 0));
        self.schedule(now);
        if self.reported {
            return None;
        }
        self.reported = true;
        Some(Notice::Lost)
    }

    fn schedule(&mut self, now: Instant) {
        let delay = MIN_RECONNECT_DELAY
            .saturating_mul(1u32 << self.attempt.min(10))
            .min(MAX_RECONNECT_DELAY);
        self.attempt = self.attempt.saturating_add(1);
        self.next_at = Some(now + delay);
    }
}

/// Logs a notice about `role` (e.g. "printer") and its port.
pub fn log_notice(role: &str, port: &str, notice: &Notice, reason: &dyn std::fmt::Display) {
    match notice {
        Notice::Absent => {
            tracing::error!("{role}: {reason}; retrying until it is there")
        }
        Notice::Lost => tracing::warn!("{role}: {port} went away ({reason}); reconnecting"),
        Notice::Back { down_for, attempts } => tracing::info!(
            "{role}: {port} is back after {:.1} s ({attempts} attempts)",
            down_for.as_secs_f64()
        ),
    }
}
