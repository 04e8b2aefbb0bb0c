//! What `till360-agent run` refuses at start, as real processes on real ptys: a journal,
//! data folder or key that other users could read (issue 10 item 7), and ports another
//! process holds (item 18).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::Pty;

const DEADLINE: Duration = Duration::from_secs(20);

/// Kills (and reaps) the agent however the test ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn write_config(dir: &Path, data_dir: &str, pos: &Pty, printer: &Pty, extra: &str) -> PathBuf {
    let layout = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/receipts/supermarket.toml");
    let path = dir.join(format!("agent-{data_dir}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"store = "S001"
till = "T01"
data_dir = "{data_dir}"
[pos]
port = "{}"
layout = "{}"
[printer]
port = "{}"
[cards]
prefixes = ["2401"]
{extra}"#,
            pos.path.display(),
            layout.display(),
            printer.path.display()
        ),
    )
    .unwrap();
    path
}

/// `till360-agent run` under `umask 000`, so no mode can come from the umask.
fn spawn_agent(config: &Path) -> Reaped {
    let command = format!(
        "umask 000; exec '{}' run --config '{}'",
        env!("CARGO_BIN_EXE_till360-agent"),
        config.display()
    );
    Reaped(
        Command::new("sh")
            .args(["-c", &command])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// An agent expected to refuse: its output once it exits (killed at the deadline).
fn refused(config: &Path) -> Output {
    let mut agent = spawn_agent(config);
    let deadline = Instant::now() + DEADLINE;
    while agent.0.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = agent.0.kill();
    let child = std::mem::replace(&mut agent.0, Command::new("true").spawn().unwrap());
    child.wait_with_output().unwrap()
}

/// Waits until the agent running on `data_dir` holds its lock and has opened its
/// journal (the lock names its pid; SQLite's `-shm` exists).
fn wait_until_up(agent: &mut Reaped, data_dir: &Path) {
    let deadline = Instant::now() + DEADLINE;
    let pid = agent.0.id().to_string();
    loop {
        let lock = std::fs::read_to_string(data_dir.join("agent.lock")).unwrap_or_default();
        if lock.trim() == pid && data_dir.join("journal.db-shm").exists() {
            return;
        }
        assert!(
            agent.0.try_wait().unwrap().is_none(),
            "the agent exited: {:?}",
            agent
                .0
                .stderr
                .take()
                .map(|e| std::io::read_to_string(e).unwrap())
        );
        assert!(Instant::now() < deadline, "the agent never came up");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether another process holds the device (an exclusive `flock`, or a tty in
/// exclusive mode refusing this open).
fn held(path: &Path) -> bool {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(path)
    {
        // SAFETY: `file` owns a valid descriptor for the duration of the call.
        Ok(file) => unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) != 0 },
        Err(e) => e.raw_os_error() == Some(libc::EBUSY),
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_journal_is_private_whatever_the_umask_and_run_refuses_files_others_can_read() {
    let dir = tempfile::tempdir().unwrap();
    let (pos, printer) = (Pty::new(), Pty::new());
    let config = write_config(dir.path(), "data", &pos, &printer, "");
    let data = dir.path().join("data");
    {
        let mut agent = spawn_agent(&config);
        wait_until_up(&mut agent, &data);
        assert_eq!(mode(&data), 0o700, "the data folder");
        for file in ["journal.db", "journal.db-wal", "journal.db-shm"] {
            assert_eq!(mode(&data.join(file)), 0o600, "{file}");
        }
    }

    let journal = data.join("journal.db");
    chmod(&journal, 0o644);
    let out = refused(&config);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr(&out).contains(&format!("{} has mode 0644", journal.display())),
        "{}",
        stderr(&out)
    );
    chmod(&journal, 0o600);

    chmod(&data, 0o755);
    let out = refused(&config);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr(&out).contains(&format!("{} has mode 0755", data.display())),
        "{}",
        stderr(&out)
    );
    chmod(&data, 0o700);

    // The till's key, checked before it is even read.
    let key = dir.path().join("agent.key");
    std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\n").unwrap();
    chmod(&key, 0o640);
    let with_hub = write_config(
        dir.path(),
        "data",
        &pos,
        &printer,
        "[hub]\naddress = \"127.0.0.1:9\"\nca = \"ca.pem\"\ncert = \"agent.pem\"\nkey = \"agent.key\"\n",
    );
    let out = refused(&with_hub);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr(&out).contains(&format!("{} has mode 0640", key.display())),
        "{}",
        stderr(&out)
    );
}

/// A second agent with its own data folder but the same ports is refused, naming the
/// port and the agent holding it; the first keeps every receipt (issue 10 item 18).
#[test]
fn a_second_agent_on_the_same_ports_is_refused_and_the_first_keeps_every_receipt() {
    use std::io::Write;
    use till360_agent::journal::Journal;
    use till360_shared::{AgentId, EventKind};

    let dir = tempfile::tempdir().unwrap();
    let (pos, mut printer) = (Pty::new(), Pty::new());
    let first_config = write_config(dir.path(), "first", &pos, &printer, "");
    let second_config = write_config(dir.path(), "second", &pos, &printer, "");
    let mut first = spawn_agent(&first_config);
    wait_until_up(&mut first, &dir.path().join("first"));
    let deadline = Instant::now() + DEADLINE;
    while !held(&pos.path) || !held(&printer.path) {
        assert!(
            Instant::now() < deadline,
            "the agent never opened its ports"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let out = refused(&second_config);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = stderr(&out);
    assert!(
        err.contains(&format!("[pos] port {} is in use", pos.path.display()))
            && err.contains(&format!("(pid {})", first.0.id())),
        "{err}"
    );
    assert!(
        !dir.path().join("second/journal.db").exists(),
        "refused before its journal"
    );

    let receipts: Vec<Vec<u8>> = (1..=5)
        .map(|n| {
            format!(
                "\x1b@Bon 0012-000{n}\nAppels                   1,9{n}\nTOTAAL                   1,9{n}\n\x1dV\x00"
            )
            .into_bytes()
        })
        .collect();
    let all: Vec<u8> = receipts.concat();
    let mut pos_out = pos.writer();
    for receipt in &receipts {
        pos_out.write_all(receipt).unwrap();
    }
    assert_eq!(printer.read_exactly(all.len()), all, "every byte printed");
    let data = dir.path().join("first");
    let deadline = Instant::now() + DEADLINE;
    let journaled = loop {
        let journaled = Journal::open_existing(&data, &AgentId::new("S001", "T01"))
            .and_then(|j| j.read_from(1, 100))
            .map(|events| {
                events
                    .iter()
                    .filter(|e| matches!(e.kind, EventKind::Receipt(_)))
                    .count()
            })
            .unwrap_or(0);
        if journaled == receipts.len() || Instant::now() > deadline {
            break journaled;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        journaled,
        receipts.len(),
        "the first agent journaled them all"
    );
}
