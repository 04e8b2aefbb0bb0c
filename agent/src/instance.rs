//! One agent per data folder. Two agents on one journal would hand out the same sequence
//! numbers and fight over the ports and the hub connection, so `run` takes an exclusive
//! `flock` on `DATA_DIR/agent.lock` (holding its pid) for as long as it runs; a second
//! one is refused naming the first. The kernel drops the lock when the process dies, so
//! a kill -9 never leaves a stale lock behind. `doctor` asks the same lock whether an
//! agent is running.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// The lock file's name inside the data folder.
pub const LOCK_FILE: &str = "agent.lock";

#[derive(Debug, Error)]
pub enum InstanceError {
    #[error("another agent is already running with data_dir {} ({}); stop it first (its lock: {})",
        .data_dir.display(), describe_pid(*.pid), .lock.display())]
    AlreadyRunning {
        data_dir: PathBuf,
        lock: PathBuf,
        pid: Option<u32>,
    },
    /// The lock could not be taken for another reason (a full or read-only disk, a file
    /// system without locks): not a reason to stop printing.
    #[error("cannot take the agent lock {}: {source}", .lock.display())]
    Unavailable {
        lock: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn describe_pid(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("pid {pid}"),
        None => "pid unknown".into(),
    }
}

/// Held while the agent runs; dropping it releases the lock.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
    path: PathBuf,
}

impl InstanceLock {
    /// Takes the data folder's lock for this process (creating the folder if needed).
    pub fn acquire(data_dir: &Path) -> Result<InstanceLock, InstanceError> {
        let path = data_dir.join(LOCK_FILE);
        let unavailable = |source| InstanceError::Unavailable {
            lock: path.clone(),
            source,
        };
        crate::file_modes::create_private_dir(data_dir).map_err(unavailable)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(unavailable)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(InstanceError::AlreadyRunning {
                    data_dir: data_dir.to_path_buf(),
                    pid: read_pid(&mut file),
                    lock: path,
                })
            }
            Err(TryLockError::Error(e)) => return Err(unavailable(e)),
        }
        // The pid is for people and `doctor`; the lock alone decides. A failed write
        // (full disk) leaves the lock held with an unknown pid.
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()));
        Ok(InstanceLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The agent holding a data folder's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LockHolder {
    /// As it wrote it into the lock file; `None` if that failed.
    pub pid: Option<u32>,
}

/// The agent holding `data_dir`'s lock right now, if any (`None` also when the folder has
/// never had one).
pub fn running_agent(data_dir: &Path) -> Option<LockHolder> {
    let mut file = File::open(data_dir.join(LOCK_FILE)).ok()?;
    match file.try_lock_shared() {
        // Nobody holds it exclusively; our shared lock goes with `file`.
        Ok(()) => None,
        Err(TryLockError::WouldBlock) => Some(LockHolder {
            pid: read_pid(&mut file),
        }),
        Err(TryLockError::Error(_)) => None,
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_agent_on_the_same_folder_is_refused_naming_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        assert_eq!(running_agent(&data), None, "no lock file yet");
        let first = InstanceLock::acquire(&data).unwrap();
        assert_eq!(first.path(), data.join(LOCK_FILE));
        assert_eq!(
            running_agent(&data),
            Some(LockHolder {
                pid: Some(std::process::id())
            })
        );
        // flock locks belong to the open file description, so a second open in this
        // process contends exactly as a second process would.
        let err = InstanceLock::acquire(&data).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, InstanceError::AlreadyRunning { pid: Some(p), .. } if p == std::process::id()),
            "{text}"
        );
        assert!(text.contains(&data.display().to_string()), "{text}");
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        drop(first);
        assert_eq!(running_agent(&data), None, "released on drop");
        let again = InstanceLock::acquire(&data).unwrap();
        drop(again);
    }

    #[test]
    fn a_lock_that_cannot_be_taken_for_another_reason_is_not_a_running_agent() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the folder should be: the folder cannot be created.
        let data = dir.path().join("data");
        std::fs::write(&data, b"not a folder").unwrap();
        let err = InstanceLock::acquire(&data).unwrap_err();
        assert!(matches!(err, InstanceError::Unavailable { .. }), "{err}");
        assert_eq!(running_agent(&data), None);
    }
}
