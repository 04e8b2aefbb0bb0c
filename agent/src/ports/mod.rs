//! Byte pipes to the till's devices: serial ports (including pty slaves), device files
//! such as `/dev/usb/lp0`, and raw TCP printers (`tcp://HOST:9100`).
//!
//! Every port reads with a short timeout so the thread that owns it can notice a
//! shutdown; a timeout is "no bytes yet", never end of file. End of file, EIO or a
//! hang-up means the device went away: [`Port::read_chunk`] reports that as
//! [`PortError::Gone`] so the caller can reopen with [`Reconnect`] (a schedule that
//! never spins on a dead port and logs once per outage).
//!
//! A path is resolved again at every open, so a symlink such as
//! `/dev/serial/by-id/usb-...` finds a replugged device under its new node. A path that
//! is not a tty is a printer device file (`/dev/usb/lp0`): opened read-write when it
//! allows (bidirectional printers answer status requests), write-only otherwise; a plain
//! file is appended to and never read.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

mod devices;
pub mod exclusive;
mod reconnect;
#[cfg(test)]
mod tests;

pub use reconnect::{log_notice, Notice, Reconnect, MAX_RECONNECT_DELAY, MIN_RECONNECT_DELAY};

use devices::{open_path, open_tcp};

/// How long a read waits before giving the owning thread a chance to check for shutdown.
pub const READ_TIMEOUT: Duration = Duration::from_millis(200);
/// How long a TCP printer connect may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a port is, as written in `agent.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSpec {
    /// A serial device or a device file; which one is decided when it is opened.
    Path { path: PathBuf, baud: u32 },
    /// A raw TCP printer (`tcp://HOST:PORT`).
    Tcp { address: String },
}

#[derive(Debug, Error)]
pub enum PortSpecError {
    #[error("{0:?} is not tcp://HOST:PORT")]
    BadTcp(String),
}

#[derive(Debug, Error)]
pub enum PortError {
    #[error("cannot open {port}: {source}")]
    Open {
        port: String,
        #[source]
        source: io::Error,
    },
    #[error("{port} went away: {reason}")]
    Gone { port: String, reason: String },
    #[error("{port}: {source}")]
    Io {
        port: String,
        #[source]
        source: io::Error,
    },
}

impl PortSpec {
    /// Parses a config value; relative paths are taken from `base` (the config's folder).
    pub fn parse(value: &str, baud: u32, base: &Path) -> Result<Self, PortSpecError> {
        let value = value.trim();
        if let Some(address) = value.strip_prefix("tcp://") {
            let address = address.trim_end_matches('/');
            match address.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                    return Ok(PortSpec::Tcp {
                        address: address.to_string(),
                    })
                }
                _ => return Err(PortSpecError::BadTcp(value.to_string())),
            }
        }
        let path = Path::new(value);
        let path = if path.is_absolute() {
            path.to_path_buf()
        } else {
            base.join(path)
        };
        Ok(PortSpec::Path { path, baud })
    }

    pub fn open(&self) -> Result<Box<dyn Port>, PortError> {
        match self {
            PortSpec::Path { path, baud } => open_path(path, *baud),
            PortSpec::Tcp { address } => open_tcp(address),
        }
    }
}

impl std::fmt::Display for PortSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortSpec::Path { path, .. } => write!(f, "{}", path.display()),
            PortSpec::Tcp { address } => write!(f, "tcp://{address}"),
        }
    }
}

/// A device the agent reads and writes. Clones share the device so a reader thread and
/// a writer thread can work at the same time.
pub trait Port: Read + Write + Send {
    fn try_clone_port(&self) -> io::Result<Box<dyn Port>>;

    /// The name used in messages (the path or `tcp://...`).
    fn name(&self) -> &str;

    /// Reads what is there: `Ok(Some(n))` bytes, `Ok(None)` when nothing came within
    /// the read timeout, `Err(Gone)` when the device went away.
    fn read_chunk(&mut self, buf: &mut [u8]) -> Result<Option<usize>, PortError> {
        match self.read(buf) {
            Ok(0) => Err(PortError::Gone {
                port: self.name().to_string(),
                reason: "end of file".into(),
            }),
            Ok(n) => Ok(Some(n)),
            Err(e) if is_idle(&e) => Ok(None),
            Err(e) => Err(PortError::Gone {
                port: self.name().to_string(),
                reason: e.to_string(),
            }),
        }
    }
}

pub(crate) fn is_idle(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// Writes all of `bytes`, waiting out timeouts (a printer busy feeding paper) until
/// `keep_going()` says stop. Returns how many bytes were written when it fails or stops,
/// so the caller can resend the rest on a reopened port.
pub fn write_fully(
    port: &mut dyn Port,
    bytes: &[u8],
    keep_going: &dyn Fn() -> bool,
) -> Result<(), (usize, PortError)> {
    let mut written = 0;
    while written < bytes.len() {
        match port.write(&bytes[written..]) {
            Ok(0) => {
                return Err((
                    written,
                    PortError::Gone {
                        port: port.name().to_string(),
                        reason: "write accepted no bytes".into(),
                    },
                ))
            }
            Ok(n) => written += n,
            Err(e) if is_idle(&e) => {
                if !keep_going() {
                    return Err((
                        written,
                        PortError::Io {
                            port: port.name().to_string(),
                            source: io::Error::new(io::ErrorKind::Interrupted, "stopping"),
                        },
                    ));
                }
            }
            Err(e) => {
                return Err((
                    written,
                    PortError::Gone {
                        port: port.name().to_string(),
                        reason: e.to_string(),
                    },
                ))
            }
        }
    }
    Ok(())
}
