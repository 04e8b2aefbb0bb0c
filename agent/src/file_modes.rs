//! The till's data on disk is for the agent's user only: the data folder is created
//! 0700 and the journal (`journal.db`, `-wal`, `-shm`) 0600, whatever the umask, and
//! `run` refuses to start while the folder, the journal or the `[hub] key` is open to
//! group or others (the journal holds card numbers, the key is the till's identity).

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use thiserror::Error;

pub const PRIVATE_DIR: u32 = 0o700;
pub const PRIVATE_FILE: u32 = 0o600;

#[derive(Debug, Error)]
pub enum ModeError {
    #[error(
        "{path} has mode {mode:04o}: group or others may read it (it holds customer data or a \
         key); the agent does not start until it is {want:04o} (chmod {want:o} {path})"
    )]
    OpenToOthers { path: String, mode: u32, want: u32 },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// Creates `dir` (and missing parents) with mode 0700 set explicitly, not through the
/// umask; an existing folder is left as it is (see [`check_private`]).
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR)
        .create(dir)?;
    std::fs::set_permissions(dir, Permissions::from_mode(PRIVATE_DIR))
}

/// Creates `file` empty with mode 0600 if it does not exist yet (a new SQLite database
/// then gives its `-wal` and `-shm` the same mode).
pub fn create_private_file(file: &Path) -> io::Result<()> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE)
        .open(file)
    {
        Ok(_) => std::fs::set_permissions(file, Permissions::from_mode(PRIVATE_FILE)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Sets mode 0600 on `file` if it exists (the journal's `-wal` and `-shm`, made by SQLite).
pub fn make_private(file: &Path) -> io::Result<()> {
    match std::fs::set_permissions(file, Permissions::from_mode(PRIVATE_FILE)) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Refuses `path` when group or others have any access to it; a missing path is fine
/// (it will be created private), and so is one under a file where a folder should be
/// (the journal cannot open there, which `run` survives: it holds nothing yet).
pub fn check_private(path: &Path) -> Result<(), ModeError> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e)
            if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) =>
        {
            return Ok(())
        }
        Err(source) => {
            return Err(ModeError::Io {
                path: path.display().to_string(),
                source,
            })
        }
    };
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    Err(ModeError::OpenToOthers {
        path: path.display().to_string(),
        mode,
        want: if meta.is_dir() {
            PRIVATE_DIR
        } else {
            PRIVATE_FILE
        },
    })
}

/// The journal's files in `data_dir`: the database and SQLite's companions.
pub fn journal_files(data_dir: &Path) -> [PathBuf; 3] {
    let db = data_dir.join(crate::journal::JOURNAL_FILE);
    let with = |suffix: &str| {
        let mut name = db.clone().into_os_string();
        name.push(suffix);
        PathBuf::from(name)
    };
    [with("-wal"), with("-shm"), db]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_and_files_open_to_others_are_refused_naming_path_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("a/data");
        create_private_dir(&data).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        check_private(&data).unwrap();
        let file = data.join("journal.db");
        create_private_file(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        check_private(&file).unwrap();
        check_private(&data.join("missing")).unwrap();

        std::fs::set_permissions(&file, Permissions::from_mode(0o640)).unwrap();
        let err = check_private(&file).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{} has mode 0640", file.display())),
            "{err}"
        );
        make_private(&file).unwrap();
        check_private(&file).unwrap();
        std::fs::set_permissions(&data, Permissions::from_mode(0o755)).unwrap();
        let err = check_private(&data).unwrap_err().to_string();
        assert!(
            err.contains("mode 0755") && err.contains("chmod 700"),
            "{err}"
        );
    }
}
