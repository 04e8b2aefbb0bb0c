//! Talks to systemd (`Type=notify`): READY=1 once serving, WATCHDOG=1 from the main loop,
//! STOPPING=1 on shutdown. Without `NOTIFY_SOCKET` (not started by systemd) every call
//! does nothing.

use std::time::Duration;

use sd_notify::NotifyState;

/// Tells systemd the service is up.
pub fn ready() {
    send(&[NotifyState::Ready], "READY=1");
}

/// Tells systemd the service is up, with a status line (`systemctl status` shows it).
pub fn ready_with_status(status: &str) {
    send(
        &[NotifyState::Ready, NotifyState::Status(status)],
        "READY=1",
    );
}

/// Tells systemd the service is stopping (it then waits for the exit, not a timeout).
pub fn stopping() {
    send(&[NotifyState::Stopping], "STOPPING=1");
}

/// Feeds the watchdog.
pub fn watchdog() {
    send(&[NotifyState::Watchdog], "WATCHDOG=1");
}

/// How often to feed the watchdog: half of `WATCHDOG_USEC`, as sd_watchdog_enabled(3)
/// advises; `None` when systemd asked for no watchdog.
pub fn watchdog_period() -> Option<Duration> {
    sd_notify::watchdog_enabled()
        .filter(|timeout| !timeout.is_zero())
        .map(|timeout| timeout / 2)
}

fn send(state: &[NotifyState], what: &str) {
    // A service manager that cannot be told is no reason to stop serving.
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!("cannot notify the service manager ({what}): {e}");
    }
}
