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

/// A pty pair whose slave is named by a symlink in a folder of its own (`path`), as
/// `/dev/serial/by-id/...` names a device in a shop. The link goes first when the pair is
/// dropped: an agent of an ended test that still reopens its port finds nothing there,
/// instead of the kernel's next pty with the same number — another test's port (tests run
/// in parallel, and a port is held exclusively).
pub struct Pty {
    // Declared (so dropped) first.
    _link_dir: tempfile::TempDir,
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
        let node = std::fs::read_link(format!("/proc/self/fd/{}", pair.slave.as_raw_fd())).unwrap();
        let link_dir = tempfile::tempdir().unwrap();
        let path = link_dir.path().join("tty");
        std::os::unix::fs::symlink(&node, &path).unwrap();
        Pty {
            _link_dir: link_dir,
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

/// An `agent.toml` for store S001, till T01 over these ports (paths of pty slaves or
/// symlinks to them), the supermarket layout, loyalty prefix 2401, no hub; `extra` is
/// appended (more sections, e.g. `[coupons]`). `data_dir` is `dir/data`.
pub fn agent_config(
    dir: &std::path::Path,
    scanner: &std::path::Path,
    pos: &std::path::Path,
    printer: &std::path::Path,
    extra: &str,
) -> till360_agent::config::AgentConfig {
    let layout = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../config/receipts/supermarket.toml");
    let text = format!(
        r#"
store = "S001"
till = "T01"
data_dir = "data"

[scanner]
port = "{}"
suffix = "cr"

[pos]
port = "{}"
codepage = "cp858"
layout = "{}"

[printer]
port = "{}"

[cards]
prefixes = ["2401"]
{extra}
"#,
        scanner.display(),
        pos.display(),
        layout.display(),
        printer.display()
    );
    till360_agent::config::AgentConfig::from_toml_str(&text, &dir.join("agent.toml")).unwrap()
}
