//! One agent per device: every device port is held exclusively while it is open (a
//! tty through serialport's exclusive mode, `TIOCEXCL` plus an exclusive `flock`; a
//! device file or plain file through an exclusive `flock`), and `run` checks each
//! configured device at start, so a second agent with another data_dir but the same
//! ports is refused, naming the port and the holder, instead of splitting the bytes.
//! (`doctor` reports the same lock as "in use".) The agent's own reopen after a hiccup
//! is not locked out: every side closes its descriptors before it reopens.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use thiserror::Error;

use super::PortSpec;

#[derive(Debug, Error)]
#[error(
    "{key} {port} is in use by another process{}: another agent (or another program) \
     reads or writes it; stop it first",
    holder.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
)]
pub struct PortInUse {
    /// The config key, e.g. `[pos] port`.
    pub key: String,
    pub port: String,
    /// The process holding the lock, when `/proc/locks` tells.
    pub holder: Option<u32>,
}

/// Whether the device `spec` names is free right now (nothing is kept locked). A
/// `tcp://` printer, a device not plugged in yet or a file system without locks count
/// as free: they are checked again at every open.
pub fn check_free(key: &str, spec: &PortSpec) -> Result<(), PortInUse> {
    let PortSpec::Path { path, .. } = spec else {
        return Ok(());
    };
    let Ok(node) = std::fs::canonicalize(path) else {
        return Ok(());
    };
    let in_use = |holder| PortInUse {
        key: key.to_string(),
        port: path.display().to_string(),
        holder,
    };
    // O_NONBLOCK: a serial line waiting for carrier must not hang the start.
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(&node)
        .or_else(|_| {
            OpenOptions::new()
                .append(true)
                .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
                .open(&node)
        });
    match opened {
        Ok(file) => match hold(&file, &node) {
            Err(e) if e.kind() == io::ErrorKind::ResourceBusy => Err(in_use(holder_of(&node))),
            _ => Ok(()),
        },
        // A tty in exclusive mode refuses other openers (but root).
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Err(in_use(holder_of(&node))),
        Err(_) => Ok(()),
    }
}

/// Takes the exclusive `flock` on an open device; held until every descriptor of this
/// open is closed. Another holder is `ResourceBusy`, naming its pid when known.
pub(super) fn hold(file: &File, node: &Path) -> io::Result<()> {
    // SAFETY: `file` owns a valid descriptor for the duration of the call.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if locked == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
        // A file system without locks says nothing about other users.
        return Ok(());
    }
    Err(busy(node))
}

/// The error for a device another process holds.
pub(super) fn busy(node: &Path) -> io::Error {
    let holder = holder_of(node)
        .map(|pid| format!(" (pid {pid})"))
        .unwrap_or_default();
    io::Error::new(
        io::ErrorKind::ResourceBusy,
        format!("in use by another process{holder}"),
    )
}

/// The pid holding an exclusive `flock` on `node`, from `/proc/locks` (lines such as
/// `1: FLOCK  ADVISORY  WRITE 4242 00:1a:5 0 EOF`: pid, then the file system's device
/// major:minor in hex and the inode).
fn holder_of(node: &Path) -> Option<u32> {
    let meta = std::fs::metadata(node).ok()?;
    let dev = meta.dev();
    let wanted = format!(
        "{:02x}:{:02x}:{}",
        libc::major(dev),
        libc::minor(dev),
        meta.ino()
    );
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    holder_in(&locks, &wanted)
}

fn holder_in(locks: &str, device_inode: &str) -> Option<u32> {
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [_, "FLOCK", _, "WRITE", pid, id, ..] if *id == device_inode => pid.parse().ok(),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_is_read_from_proc_locks() {
        let locks = "1: FLOCK  ADVISORY  READ 77 00:1a:5 0 EOF\n\
                     2: POSIX  ADVISORY  WRITE 88 00:1a:5 0 EOF\n\
                     3: FLOCK  ADVISORY  WRITE 4242 00:1a:5 0 EOF\n\
                     4: FLOCK  ADVISORY  WRITE 99 fe:00:5 0 EOF\n";
        assert_eq!(holder_in(locks, "00:1a:5"), Some(4242));
        assert_eq!(holder_in(locks, "00:1a:6"), None);
    }

    #[test]
    fn a_held_device_is_refused_naming_key_port_and_holder() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("lp0");
        std::fs::write(&file, b"").unwrap();
        let spec = PortSpec::Path {
            path: file.clone(),
            baud: 9600,
        };
        check_free("[printer] port", &spec).unwrap();
        let held = File::open(&file).unwrap();
        hold(&held, &file).unwrap();
        let err = check_free("[printer] port", &spec).unwrap_err();
        assert_eq!(err.holder, Some(std::process::id()));
        assert_eq!(
            err.to_string(),
            format!(
                "[printer] port {} is in use by another process (pid {}): another agent \
                 (or another program) reads or writes it; stop it first",
                file.display(),
                std::process::id()
            )
        );
        let other = File::open(&file).unwrap();
        let e = hold(&other, &file).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("in use by another process (pid {})", std::process::id())
        );
        drop(held);
        check_free("[printer] port", &spec).unwrap();
        let tcp = PortSpec::Tcp {
            address: "127.0.0.1:9100".into(),
        };
        check_free("[printer] port", &tcp).unwrap();
        let missing = PortSpec::Path {
            path: dir.path().join("gone"),
            baud: 9600,
        };
        check_free("[printer] port", &missing).unwrap();
    }
}
