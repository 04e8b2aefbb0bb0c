//! Online copies of the hub's SQLite file for `till360-hub backup`: SQLite's backup API
//! under one read transaction, so the copy is one committed state while the hub goes on
//! writing (WAL: readers and the writer do not block each other).

use std::path::Path;
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use crate::store::StoreError;

/// Pages copied per backup step (4 MiB at the default 4 KiB page): progress between steps.
const PAGES_PER_STEP: std::ffi::c_int = 1024;

/// What [`copy_consistent`] copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// `PRAGMA user_version` of the copy: the schema version.
    pub schema_version: i64,
    pub pages: u64,
}

/// Copies the database at `source` into a new file `dest` (which must not exist) as one
/// committed state. `progress(copied, total)` is told the pages after each step.
pub fn copy_consistent(
    source: &Path,
    dest: &Path,
    timeout: Duration,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Snapshot, StoreError> {
    if dest.exists() {
        return Err(StoreError::Io {
            path: dest.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "already exists"),
        });
    }
    if !source.is_file() {
        return Err(StoreError::Io {
            path: source.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no database file"),
        });
    }
    // Read-write without CREATE: a read-only connection to a WAL file still needs the
    // shared-memory index, and a missing file must not be made here.
    let src = Connection::open_with_flags(
        source,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    src.busy_timeout(timeout)?;
    let mut dst = Connection::open_with_flags(
        dest,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // The copy holds people's data: private from its first page (SQLite gives its
    // -wal and -shm the database file's mode).
    dst.query_row("PRAGMA schema_version", [], |_| Ok(()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| StoreError::Io {
                path: dest.to_path_buf(),
                source,
            },
        )?;
    }
    // One read transaction over every step: each step reads the same snapshot, and a
    // commit by the hub in between neither shows up half nor restarts the copy.
    src.execute_batch("BEGIN DEFERRED")?;
    let schema_version: i64 = src.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let copied = (|| -> Result<u64, StoreError> {
        let backup = Backup::new(&src, &mut dst)?;
        loop {
            let step = backup.step(PAGES_PER_STEP)?;
            let p = backup.progress();
            let total = u64::try_from(p.pagecount).unwrap_or(0);
            let left = u64::try_from(p.remaining).unwrap_or(0);
            progress(total.saturating_sub(left), total);
            match step {
                StepResult::Done => return Ok(total),
                StepResult::More => {}
                // Busy or locked: a lock is held elsewhere for a moment; try again.
                _ => std::thread::sleep(BUSY_PAUSE),
            }
        }
    })();
    let ended = src.execute_batch("COMMIT");
    let pages = copied?;
    ended?;
    let check: String = dst.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(StoreError::Corrupt(format!(
            "the copy of {} fails its check: {check}",
            source.display()
        )));
    }
    Ok(Snapshot {
        schema_version,
        pages,
    })
}

/// Pause after a busy backup step (the source's lock is held by a checkpoint).
const BUSY_PAUSE: Duration = Duration::from_millis(20);

/// The schema version (`PRAGMA user_version`) of the database file at `path`, read
/// without changing it; and whether SQLite finds the file sound.
pub fn inspect(path: &Path) -> Result<Snapshot, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let schema_version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(StoreError::Corrupt(format!(
            "{} fails its check: {check}",
            path.display()
        )));
    }
    Ok(Snapshot {
        schema_version,
        pages: u64::try_from(pages).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_holds_what_was_committed_and_its_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("hub.db");
        let conn = super::super::driver::open(&source, Duration::from_secs(1)).unwrap();
        conn.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB); PRAGMA user_version = 11;",
        )
        .unwrap();
        conn.execute_batch(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
             INSERT INTO t (id, v) SELECT i, zeroblob(4000) FROM n",
        )
        .unwrap();
        let dest = dir.path().join("copy.db");
        let mut steps = Vec::new();
        let snap = copy_consistent(
            &source,
            &dest,
            Duration::from_secs(1),
            &mut |done, total| steps.push((done, total)),
        )
        .unwrap();
        assert_eq!(snap.schema_version, 11);
        assert!(steps.len() > 1, "{steps:?}");
        assert_eq!(steps.last().map(|s| s.0), Some(snap.pages));
        assert_eq!(inspect(&dest).unwrap(), snap);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dest).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let copy = Connection::open(&dest).unwrap();
        let n: i64 = copy
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2000);
        // An existing destination is never overwritten.
        let again = copy_consistent(&source, &dest, Duration::from_secs(1), &mut |_, _| {});
        assert!(again.is_err());
    }

    #[test]
    fn commits_during_the_copy_are_not_in_it_and_do_not_restart_it() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("hub.db");
        let conn = super::super::driver::open(&source, Duration::from_secs(1)).unwrap();
        conn.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
             INSERT INTO t (id, v) SELECT i, zeroblob(4000) FROM n",
        )
        .unwrap();
        // Another connection (the running hub) commits between the copy's steps.
        let hub = super::super::driver::open(&source, Duration::from_secs(1)).unwrap();
        let dest = dir.path().join("copy.db");
        let mut commits = 0;
        let mut restarts = 0;
        let mut last = 0;
        copy_consistent(&source, &dest, Duration::from_secs(1), &mut |done, _| {
            if done < last {
                restarts += 1;
            }
            last = done;
            hub.execute_batch(&format!(
                "BEGIN IMMEDIATE; INSERT INTO t (id, v) VALUES ({}, zeroblob(4000));
                 UPDATE t SET v = zeroblob(10) WHERE id = {}; COMMIT;",
                10_000 + commits,
                commits + 1
            ))
            .unwrap();
            commits += 1;
        })
        .unwrap();
        assert!(commits > 1, "{commits} steps");
        assert_eq!(restarts, 0);
        let copy = Connection::open(&dest).unwrap();
        let (n, short): (i64, i64) = copy
            .query_row("SELECT count(*), sum(length(v) = 10) FROM t", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((n, short), (2000, 0), "the state when the copy began");
        let now: i64 = hub
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(now, 2000 + i64::from(commits));
    }
}
