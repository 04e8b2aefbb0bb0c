//! Byte pipes to the till's devices: serial ports (including pty slaves), device files
//! such as `/dev/usb/lp0`, and raw TCP printers (`tcp://HOST:9100`).
//!
//! Every port reads with a short timeout so the thread that owns it can notice a
//! shutdown; a timeout is "no bytes yet", never end of file. End of file, EIO or a
//! hang-up means the device went away: [`Port::read_chunk`] reports that as
//! [`PortError::Gone`] so the caller can reopen with [`reopen_backoff`].

use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

/// How long a read waits before giving the owning thread a chance to check for shutdown.
pub const READ_TIMEOUT: Duration = Duration::from_millis(200);
/// How long a TCP printer connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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

fn is_idle(e: &io::Error) -> bool {
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

/// Sleeps before reopening a port: 100 ms doubling to 5 s, in 100 ms steps so a shutdown
/// is seen promptly. Returns `false` if `keep_going()` turned false meanwhile.
pub fn reopen_backoff(attempt: u32, keep_going: &dyn Fn() -> bool) -> bool {
    let delay = Duration::from_millis(100u64.saturating_mul(1 << attempt.min(6)))
        .min(Duration::from_secs(5));
    let step = Duration::from_millis(100);
    let mut waited = Duration::ZERO;
    while waited < delay {
        if !keep_going() {
            return false;
        }
        std::thread::sleep(step);
        waited += step;
    }
    keep_going()
}

fn open_path(path: &Path, baud: u32) -> Result<Box<dyn Port>, PortError> {
    let name = path.display().to_string();
    let open_err = |source: io::Error| PortError::Open {
        port: name.clone(),
        source,
    };
    // Open once to learn whether this is a tty; serialport then owns the tty setup.
    // O_NOCTTY: a pty slave must never become this daemon's controlling terminal.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(path)
        .map_err(open_err)?;
    if file.is_terminal() {
        drop(file);
        let port = serialport::new(name.as_str(), baud)
            .data_bits(serialport::DataBits::Eight)
            .parity(serialport::Parity::None)
            .stop_bits(serialport::StopBits::One)
            .flow_control(serialport::FlowControl::None)
            .timeout(READ_TIMEOUT)
            // Shared, so a reopen after a hiccup (or a diagnostic tool) is not locked out.
            .exclusive(false)
            .open_native()
            .map_err(|e| open_err(io::Error::other(e.to_string())))?;
        Ok(Box::new(SerialPortHandle { port, name }))
    } else {
        Ok(Box::new(DeviceFile { file, name }))
    }
}

fn open_tcp(address: &str) -> Result<Box<dyn Port>, PortError> {
    let name = format!("tcp://{address}");
    let open_err = |source: io::Error| PortError::Open {
        port: name.clone(),
        source,
    };
    let addrs: Vec<_> = address.to_socket_addrs().map_err(open_err)?.collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "address resolved to nothing");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(stream) => {
                stream
                    .set_read_timeout(Some(READ_TIMEOUT))
                    .map_err(open_err)?;
                stream
                    .set_write_timeout(Some(READ_TIMEOUT))
                    .map_err(open_err)?;
                // Receipts are small and the printer should see each chunk at once.
                stream.set_nodelay(true).map_err(open_err)?;
                return Ok(Box::new(TcpPrinter { stream, name }));
            }
            Err(e) => last = e,
        }
    }
    Err(open_err(last))
}

struct SerialPortHandle {
    port: serialport::TTYPort,
    name: String,
}

impl Read for SerialPortHandle {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.port.read(buf)
    }
}

impl Write for SerialPortHandle {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.port.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        // tcdrain on a pty whose other side is slow can block; bytes are already queued.
        Ok(())
    }
}

impl Port for SerialPortHandle {
    fn try_clone_port(&self) -> io::Result<Box<dyn Port>> {
        let port = self
            .port
            .try_clone_native()
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Box::new(SerialPortHandle {
            port,
            name: self.name.clone(),
        }))
    }
    fn name(&self) -> &str {
        &self.name
    }
}

/// A printer device file such as `/dev/usb/lp0`. Such files have no read timeout and
/// often answer a read with 0 bytes when the printer has nothing to say, so 0 here
/// means "idle", not "gone".
struct DeviceFile {
    file: File,
    name: String,
}

impl Read for DeviceFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }
}

impl Write for DeviceFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Port for DeviceFile {
    fn try_clone_port(&self) -> io::Result<Box<dyn Port>> {
        Ok(Box::new(DeviceFile {
            file: self.file.try_clone()?,
            name: self.name.clone(),
        }))
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn read_chunk(&mut self, buf: &mut [u8]) -> Result<Option<usize>, PortError> {
        match self.file.read(buf) {
            Ok(0) => {
                // Nothing to read: wait as a timed-out read would, never spin.
                std::thread::sleep(READ_TIMEOUT);
                Ok(None)
            }
            Ok(n) => Ok(Some(n)),
            Err(e) if is_idle(&e) => Ok(None),
            Err(e) => Err(PortError::Gone {
                port: self.name.clone(),
                reason: e.to_string(),
            }),
        }
    }
}

struct TcpPrinter {
    stream: TcpStream,
    name: String,
}

impl Read for TcpPrinter {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.read(buf)
    }
}

impl Write for TcpPrinter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

impl Port for TcpPrinter {
    fn try_clone_port(&self) -> io::Result<Box<dyn Port>> {
        Ok(Box::new(TcpPrinter {
            stream: self.stream.try_clone()?,
            name: self.name.clone(),
        }))
    }
    fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        let base = Path::new("/etc/till360");
        assert_eq!(
            PortSpec::parse("tcp://10.0.0.5:9100", 9600, base).unwrap(),
            PortSpec::Tcp {
                address: "10.0.0.5:9100".into()
            }
        );
        assert!(PortSpec::parse("tcp://printer", 9600, base).is_err());
        assert_eq!(
            PortSpec::parse("/dev/ttyUSB0", 19200, base).unwrap(),
            PortSpec::Path {
                path: "/dev/ttyUSB0".into(),
                baud: 19200
            }
        );
        assert_eq!(
            PortSpec::parse("dev/pos", 9600, base).unwrap(),
            PortSpec::Path {
                path: "/etc/till360/dev/pos".into(),
                baud: 9600
            }
        );
    }

    #[test]
    fn device_file_reads_and_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lp0");
        std::fs::write(&path, b"").unwrap();
        let spec = PortSpec::parse(path.to_str().unwrap(), 9600, dir.path()).unwrap();
        let mut port = spec.open().unwrap();
        write_fully(port.as_mut(), b"hello", &|| true).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello");
        // A device file with nothing to say is idle, not gone.
        let mut buf = [0u8; 8];
        assert!(matches!(port.read_chunk(&mut buf), Ok(None)));
    }

    #[test]
    fn tcp_printer_round_trip() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let spec = PortSpec::parse(&format!("tcp://{addr}"), 0, Path::new("/")).unwrap();
        let mut port = spec.open().unwrap();
        let (mut printer, _) = listener.accept().unwrap();
        write_fully(port.as_mut(), b"\x1b@receipt", &|| true).unwrap();
        let mut got = [0u8; 9];
        printer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"\x1b@receipt");
        let mut buf = [0u8; 4];
        assert!(
            matches!(port.read_chunk(&mut buf), Ok(None)),
            "timeout is idle"
        );
        printer.write_all(&[0x12]).unwrap();
        let mut reader = port.try_clone_port().unwrap();
        let n = loop {
            if let Some(n) = reader.read_chunk(&mut buf).unwrap() {
                break n;
            }
        };
        assert_eq!(&buf[..n], &[0x12]);
        drop(printer);
        let gone = loop {
            match reader.read_chunk(&mut buf) {
                Ok(None) => continue,
                other => break other,
            }
        };
        assert!(matches!(gone, Err(PortError::Gone { .. })), "{gone:?}");
    }
}
