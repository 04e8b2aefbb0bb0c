//! Virtual serial ports: real pseudo-terminal pairs. The agent opens the slave path
//! (e.g. `/dev/pts/7`) as if it were a serial device; the simulator reads and writes
//! the master side.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum PtyError {
    #[error("cannot open a pseudo-terminal pair: {0}")]
    Open(nix::Error),
    #[error("cannot put the pseudo-terminal in raw mode: {0}")]
    Raw(nix::Error),
    #[error("cannot find the name of the pseudo-terminal slave: {0}")]
    Name(nix::Error),
    #[error("cannot set the pseudo-terminal's file flags: {0}")]
    Cloexec(nix::Error),
}

/// One pty pair standing in for a serial device.
#[derive(Debug)]
pub struct VirtualPort {
    master: File,
    // Held so the pty never hangs up while the agent closes and reopens its side, and to
    // see how many bytes wait for the agent.
    slave: OwnedFd,
    path: PathBuf,
}

impl VirtualPort {
    pub fn open() -> Result<Self, PtyError> {
        let pair = nix::pty::openpty(None, None).map_err(PtyError::Open)?;
        // Raw before any byte moves: a cooked line discipline would echo bytes and turn
        // LF into CR LF, which corrupts ESC/POS.
        let mut termios = tcgetattr(pair.slave.as_fd()).map_err(PtyError::Raw)?;
        cfmakeraw(&mut termios);
        tcsetattr(pair.slave.as_fd(), SetArg::TCSANOW, &termios).map_err(PtyError::Raw)?;
        // openpty does not set close-on-exec; a child process (hub, agent) holding our
        // master would keep the pty alive after we drop it.
        for fd in [&pair.master, &pair.slave] {
            fcntl(fd.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
                .map_err(PtyError::Cloexec)?;
        }
        // Non-blocking master: every read and write below waits with poll and a
        // deadline, and a write must never block on a full pty buffer.
        fcntl(
            pair.master.as_raw_fd(),
            FcntlArg::F_SETFL(OFlag::O_NONBLOCK),
        )
        .map_err(PtyError::Cloexec)?;
        let path = nix::unistd::ttyname(pair.slave.as_fd()).map_err(PtyError::Name)?;
        Ok(Self {
            master: File::from(pair.master),
            slave: pair.slave,
            path,
        })
    }

    /// The device path the agent's config names.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A second handle on the master, for a reader thread next to a writer.
    pub fn try_clone_master(&self) -> io::Result<File> {
        self.master.try_clone()
    }

    /// Writes all of `bytes`, failing with `TimedOut` if the agent does not drain the
    /// pty before `deadline` (a dead agent must fail a test, not hang it).
    pub fn write_all_by(&self, bytes: &[u8], deadline: Instant) -> io::Result<()> {
        write_all_by(&self.master, bytes, deadline)
    }

    /// Waits until the agent has read every byte written so far (the slave's input queue is
    /// empty), at most until `deadline`; false when bytes are still waiting. The agent reads
    /// its ports on separate threads, so a till that prints right after a scan must know the
    /// scan was taken, or a busy machine may let the receipt overtake it.
    pub fn wait_read_by_agent(&self, deadline: Instant) -> io::Result<bool> {
        loop {
            // Polling the slave (not FIONREAD) first moves bytes the kernel still holds in
            // the pty's flip buffer to the line discipline, so "nothing to read" means the
            // agent read them, not that they have not arrived yet.
            let mut fds = [PollFd::new(self.slave.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::ZERO) {
                Ok(0) => return Ok(true),
                Ok(_) => {}
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(io::Error::from(e)),
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Reads what is available, waiting at most `timeout`; `Ok(0)` means nothing came.
    pub fn read_timeout(&self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        read_timeout(&self.master, buf, timeout)
    }
}

fn wait_for(file: &File, flags: PollFlags, timeout: Duration) -> io::Result<bool> {
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    let mut fds = [PollFd::new(file.as_fd(), flags)];
    loop {
        match poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(io::Error::from(e)),
        }
    }
}

/// Reads from a pty master, waiting at most `timeout`; `Ok(0)` means nothing came.
pub fn read_timeout(mut file: &File, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
    if !wait_for(file, PollFlags::POLLIN, timeout)? {
        return Ok(0);
    }
    match file.read(buf) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
        other => other,
    }
}

/// Writes to a pty master in pieces the line discipline accepts, up to `deadline`.
pub fn write_all_by(mut file: &File, mut bytes: &[u8], deadline: Instant) -> io::Result<()> {
    while !bytes.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || !wait_for(file, PollFlags::POLLOUT, left)? {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{} bytes not accepted before the deadline", bytes.len()),
            ));
        }
        match file.write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
