//! Test helpers shared by the agent's integration tests: real pseudo-terminal pairs.
#![allow(dead_code)]

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use nix::pty::openpty;
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
use till360_agent::ports::PortSpec;

/// A deadlock guard for reads, not a timing assertion.
pub const GIVE_UP: Duration = Duration::from_secs(20);

pub struct Pty {
    pub master: File,
    /// Kept open so the pair lives as long as the test.
    _slave: OwnedFd,
    pub path: PathBuf,
}

impl Pty {
    pub fn new() -> Pty {
        let pair = openpty(None, None).expect("openpty");
        // Raw before any byte moves, or the line discipline echoes and translates.
        let mut termios = tcgetattr(&pair.slave).unwrap();
        cfmakeraw(&mut termios);
        tcsetattr(&pair.slave, SetArg::TCSANOW, &termios).unwrap();
        let path = std::fs::read_link(format!("/proc/self/fd/{}", pair.slave.as_raw_fd())).unwrap();
        Pty {
            master: File::from(pair.master),
            _slave: pair.slave,
            path,
        }
    }

    pub fn spec(&self) -> PortSpec {
        PortSpec::Path {
            path: self.path.clone(),
            baud: 115_200,
        }
    }

    pub fn writer(&self) -> File {
        self.master.try_clone().unwrap()
    }

    /// Reads exactly `n` bytes from the master, failing the test if they never come.
    pub fn read_exactly(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n);
        let mut buf = [0u8; 4096];
        while out.len() < n {
            let mut pfd = libc::pollfd {
                fd: self.master.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the duration of the call.
            let ready = unsafe { libc::poll(&mut pfd, 1, GIVE_UP.as_millis() as i32) };
            assert!(ready > 0, "gave up after {} of {n} bytes", out.len());
            let want = (n - out.len()).min(buf.len());
            let got = self.master.read(&mut buf[..want]).unwrap();
            out.extend_from_slice(&buf[..got]);
        }
        out
    }
}
