//! `till360-agent doctor`: opens every configured port, listens for a while and says
//! what it saw. This file is the IO edge (open, lock check, read, write `DLE EOT 1`);
//! `probe` says what the bytes mean and `report` words the result.
//!
//! An agent running with the same config is found by its data folder's lock
//! (`instance`): then no port is touched, so the doctor never steals a live till's
//! bytes, whatever the port kind (tcp and device-file printers have no lock of their
//! own). Otherwise a port held by another process is detected by its lock: the agent
//! opens serial ports with a shared `flock`, so the doctor's non-blocking exclusive
//! `flock` fails; a port opened exclusively (`TIOCEXCL`) by anyone refuses the open
//! with `EBUSY`.

pub mod probe;
pub mod report;
#[cfg(test)]
mod tests;

use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::config::AgentConfig;
use crate::escpos::{CodePage, EscPosParser, EscTTable};
use crate::instance::running_agent;
use crate::ports::{write_fully, Port, PortError, PortSpec};

use probe::{guess_scanner, preview, summarize_escpos, PrinterStatus, PRINTER_STATUS_REQUEST};
pub use report::{DoctorReport, OpenState, PortReport, PrinterProbe, Role};

/// How long `doctor` listens on each port unless told otherwise.
pub const DEFAULT_LISTEN: Duration = Duration::from_secs(10);
/// Bytes kept per port for analysis; more are counted, not kept.
const CAPTURE_MAX: usize = 64 * 1024;
/// Bytes shown in the preview.
const PREVIEW_BYTES: usize = 32;

/// What to do with a port's bytes once it is open.
enum Probe {
    Scanner {
        suffix: String,
    },
    Pos {
        codepage: CodePage,
        /// Boxed: a table of 256 code pages dwarfs the other variants.
        esc_t: Box<EscTTable>,
    },
    Printer,
    /// Only open it and count what comes back.
    Listen,
}

struct Target {
    role: Role,
    spec: PortSpec,
    probe: Probe,
}

/// Opens every port of `config` at once, listens on all of them for `listen`, and
/// reports per port. Never fails: a port that cannot be opened is a finding.
pub fn examine(config: &AgentConfig, listen: Duration) -> DoctorReport {
    let mut targets = Vec::new();
    if let Some(scanner) = &config.scanner {
        targets.push(Target {
            role: Role::Scanner,
            spec: scanner.port.clone(),
            probe: Probe::Scanner {
                suffix: scanner.suffix.to_string(),
            },
        });
    }
    if let Some(forward_to) = config.scanner.as_ref().and_then(|s| s.forward_to.as_ref()) {
        targets.push(Target {
            role: Role::ScannerForward,
            spec: forward_to.clone(),
            probe: Probe::Listen,
        });
    }
    targets.push(Target {
        role: Role::Pos,
        spec: config.pos.port.clone(),
        probe: Probe::Pos {
            codepage: config.pos.codepage,
            esc_t: Box::new(config.pos.esc_t),
        },
    });
    targets.push(Target {
        role: Role::Printer,
        spec: config.printer.port.clone(),
        probe: Probe::Printer,
    });

    let config_name = config.origin.display().to_string();
    if let Some(holder) = running_agent(&config.data_dir) {
        let ports = targets
            .iter()
            .map(|t| {
                PortReport::new(
                    t.role,
                    t.spec.to_string(),
                    OpenState::HeldByAgent { pid: holder.pid },
                )
            })
            .collect();
        return DoctorReport::new(config_name, 0, ports, Some(holder));
    }

    let deadline = Instant::now() + listen;
    let ports = std::thread::scope(|scope| {
        let handles: Vec<_> = targets
            .iter()
            .map(|t| scope.spawn(move || examine_port(t, deadline)))
            .collect();
        handles
            .into_iter()
            .zip(&targets)
            .map(|(h, t)| {
                h.join().unwrap_or_else(|_| {
                    PortReport::new(
                        t.role,
                        t.spec.to_string(),
                        OpenState::Failed("the probe crashed".into()),
                    )
                })
            })
            .collect()
    });
    DoctorReport::new(config_name, listen.as_secs(), ports, None)
}

fn examine_port(target: &Target, deadline: Instant) -> PortReport {
    let name = target.spec.to_string();
    let spec = &target.spec;
    if let PortSpec::Path { path, .. } = spec {
        let state = check_free(path);
        if state != OpenState::Opened {
            return PortReport::new(target.role, name, state);
        }
    }
    let mut port = match spec.open() {
        Ok(port) => port,
        Err(e) => return PortReport::new(target.role, name, open_failure(e)),
    };
    let mut report = PortReport::new(target.role, name, OpenState::Opened);

    let mut request_sent = false;
    if matches!(target.probe, Probe::Printer) {
        match write_fully(port.as_mut(), &PRINTER_STATUS_REQUEST, &|| {
            Instant::now() < deadline
        }) {
            Ok(()) => request_sent = true,
            Err((_, e)) => report.error = Some(format!("sending DLE EOT 1: {e}")),
        }
    }

    let (captured, total, read_error) = listen(port.as_mut(), deadline);
    report.bytes = total;
    if total > 0 {
        report.preview = Some(preview(&captured, PREVIEW_BYTES));
    }
    if report.error.is_none() {
        report.error = read_error;
    }
    match &target.probe {
        Probe::Scanner { suffix } => report.scanner = Some(guess_scanner(&captured, suffix)),
        Probe::Pos { codepage, esc_t } => {
            let parser = EscPosParser::with_esc_t(*codepage, **esc_t);
            report.pos = Some(summarize_escpos(&captured, parser));
        }
        Probe::Printer => {
            report.printer = Some(PrinterProbe {
                request_sent,
                reply: PrinterStatus::find(&captured),
            })
        }
        Probe::Listen => {}
    }
    report
}

/// Reads until `deadline`: the first [`CAPTURE_MAX`] bytes, the total count, and why
/// reading stopped early if it did.
fn listen(port: &mut dyn Port, deadline: Instant) -> (Vec<u8>, u64, Option<String>) {
    let mut captured = Vec::new();
    let mut total = 0u64;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match port.read_chunk(&mut buf) {
            Ok(Some(n)) => {
                total += n as u64;
                let room = CAPTURE_MAX.saturating_sub(captured.len());
                captured.extend_from_slice(&buf[..n.min(room)]);
            }
            Ok(None) => {}
            Err(e) => return (captured, total, Some(e.to_string())),
        }
    }
    (captured, total, None)
}

/// Whether the device at `path` exists and nobody holds it. The probe file is closed
/// again at once (dropping its lock) so the real open below does not collide with it.
fn check_free(path: &Path) -> OpenState {
    // O_NONBLOCK: a serial line waiting for carrier must not hang the doctor.
    let file = match OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        Err(e) => return open_error_state(&e),
    };
    // SAFETY: `file` owns a valid descriptor for the duration of the call.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if locked != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EWOULDBLOCK) {
        return OpenState::Busy;
    }
    // Any other flock failure (a file system without locks) says nothing about users.
    OpenState::Opened
}

fn open_error_state(e: &io::Error) -> OpenState {
    match e.raw_os_error() {
        Some(libc::ENOENT | libc::ENODEV | libc::ENXIO) => OpenState::Missing,
        Some(libc::EBUSY) => OpenState::Busy,
        _ => OpenState::Failed(e.to_string()),
    }
}

fn open_failure(e: PortError) -> OpenState {
    match &e {
        PortError::Open { source, .. } if source.raw_os_error().is_some() => {
            open_error_state(source)
        }
        PortError::Open { source, .. } => OpenState::Failed(source.to_string()),
        _ => OpenState::Failed(e.to_string()),
    }
}
