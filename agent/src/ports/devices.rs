//! Opening the three kinds of device and the handles that wrap them.

use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{is_idle, Port, PortError, CONNECT_TIMEOUT, READ_TIMEOUT};

/// Follows a `/dev/serial/by-id/...` style symlink to the node it names right now. Done
/// at every open, so a device replugged under a new node is found through the same
/// configured path.
fn resolve(path: &Path) -> io::Result<PathBuf> {
    std::fs::canonicalize(path)
}

/// The name used in messages: the configured path, and the node when they differ.
fn display_name(path: &Path, node: &Path) -> String {
    if path == node {
        path.display().to_string()
    } else {
        format!("{} (-> {})", path.display(), node.display())
    }
}

pub(super) fn open_path(path: &Path, baud: u32) -> Result<Box<dyn Port>, PortError> {
    let open_err = |port: String, source: io::Error| PortError::Open { port, source };
    let node = resolve(path).map_err(|e| open_err(path.display().to_string(), e))?;
    let name = display_name(path, &node);
    // Open once to learn whether this is a tty; serialport then owns the tty setup.
    // O_NOCTTY: a pty slave must never become this daemon's controlling terminal.
    let read_write = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&node);
    let file = match read_write {
        Ok(file) => file,
        // A printer device that only takes bytes (or that we may only write to).
        Err(e) if write_only_may_work(&e) => {
            return open_write_only(&node, name.clone()).map_err(|e| open_err(name, e))
        }
        Err(e) => return Err(open_err(name, e)),
    };
    if file.is_terminal() {
        // Said with the holder's pid before serialport's own (anonymous) refusal; the
        // probe's lock goes with it.
        let free = super::exclusive::hold(&file, &node);
        drop(file);
        free.map_err(|e| open_err(name.clone(), e))?;
        let port = serialport::new(node.to_string_lossy(), baud)
            .data_bits(serialport::DataBits::Eight)
            .parity(serialport::Parity::None)
            .stop_bits(serialport::StopBits::One)
            .flow_control(serialport::FlowControl::None)
            .timeout(READ_TIMEOUT)
            // TIOCEXCL and an exclusive flock: a second agent on this port is refused
            // (every side of this agent closes the port before it reopens it).
            .exclusive(true)
            .open_native()
            .map_err(|e| open_err(name.clone(), io::Error::other(e.to_string())))?;
        return Ok(Box::new(SerialPortHandle { port, name }));
    }
    let is_regular = file
        .metadata()
        .map_err(|e| open_err(name.clone(), e))?
        .is_file();
    if is_regular {
        // A plain file (a capture, a test): append, never overwrite, and never read our
        // own bytes back as printer replies.
        drop(file);
        return open_write_only(&node, name.clone()).map_err(|e| open_err(name, e));
    }
    // A character device such as /dev/usb/lp0: bidirectional printers answer status
    // requests through it, so it is kept readable.
    super::exclusive::hold(&file, &node).map_err(|e| open_err(name.clone(), e))?;
    Ok(Box::new(DeviceFile {
        file,
        name,
        readable: true,
    }))
}

fn write_only_may_work(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EACCES | libc::EPERM | libc::EROFS | libc::EINVAL | libc::ENXIO)
    )
}

fn open_write_only(node: &Path, name: String) -> io::Result<Box<dyn Port>> {
    let file = OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_NOCTTY)
        .open(node)?;
    super::exclusive::hold(&file, node)?;
    Ok(Box::new(DeviceFile {
        file,
        name,
        readable: false,
    }))
}

pub(super) fn open_tcp(address: &str) -> Result<Box<dyn Port>, PortError> {
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

/// A printer device file such as `/dev/usb/lp0` (or a plain file). Such files have no
/// read timeout and often answer a read with 0 bytes when the printer has nothing to
/// say, so 0 here means "idle", not "gone". One opened write-only has nothing to read.
struct DeviceFile {
    file: File,
    name: String,
    readable: bool,
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
            readable: self.readable,
        }))
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn read_chunk(&mut self, buf: &mut [u8]) -> Result<Option<usize>, PortError> {
        if !self.readable {
            // Nothing can come back: wait as a timed-out read would, never spin.
            std::thread::sleep(READ_TIMEOUT);
            return Ok(None);
        }
        match self.file.read(buf) {
            Ok(0) => {
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
