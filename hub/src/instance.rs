//! One hub per data folder. Two hubs on one database would each think they own the
//! writer, the digest feed and the schedules, so `run` takes an exclusive `flock` on
//! `DATA_DIR/hub.lock` (holding its pid) for as long as it runs; a second hub is refused
//! naming the first. The kernel drops the lock when the process dies, so a kill -9
//! never leaves a stale lock. (The agent does the same in its own crate: the two never
//! depend on each other.)

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// The lock file's name inside the data folder.
pub const LOCK_FILE: &str = "hub.lock";

#[derive(Debug, Error)]
pub enum InstanceError {
    #[error("another hub is running with data_dir {} ({}); stop it first (its lock: {})",
        .data_dir.display(), describe_pid(*.pid), .lock.display())]
    AlreadyRunning {
        data_dir: PathBuf,
        lock: PathBuf,
        pid: Option<u32>,
    },
    #[error("cannot take the hub lock {}: {reason}", .lock.display())]
    Unavailable { lock: PathBuf, reason: io::Error },
}

fn describe_pid(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("pid {pid}"),
        None => "pid unknown".into(),
    }
}

/// Held while the hub runs; dropping it releases the lock.
#[derive(Debug)]
pub struct HubLock {
    _file: File,
}

impl HubLock {
    /// Takes `data_dir`'s lock for this process (the folder must exist).
    pub fn acquire(data_dir: &Path) -> Result<HubLock, InstanceError> {
        let lock = data_dir.join(LOCK_FILE);
        let unavailable = |reason| InstanceError::Unavailable {
            lock: lock.clone(),
            reason,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock)
            .map_err(unavailable)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let pid = Read::by_ref(&mut file)
                    .take(32)
                    .read_to_string(&mut text)
                    .ok()
                    .and_then(|_| text.trim().parse().ok());
                return Err(InstanceError::AlreadyRunning {
                    data_dir: data_dir.to_path_buf(),
                    lock,
                    pid,
                });
            }
            Err(TryLockError::Error(e)) => return Err(unavailable(e)),
        }
        // The pid is for people; the lock alone decides.
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()));
        Ok(HubLock { _file: file })
    }
}
