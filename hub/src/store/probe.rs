//! Reaching the hub's database without changing it (`till360-hub check`): unlike
//! [`super::Database::open`] nothing is created or migrated.

use std::path::Path;
use std::time::Duration;

use crate::config::DatabaseUrl;

/// SQLite: an existing file opens read-only; a missing one needs a writable folder to
/// be created in (the nearest existing folder above it: the hub creates the rest).
/// PostgreSQL: a connection within `timeout`.
pub fn probe(url: &DatabaseUrl, timeout: Duration) -> Result<(), String> {
    match url {
        DatabaseUrl::Sqlite(path) if path.exists() => super::sqlite::probe::read_only(path),
        DatabaseUrl::Sqlite(path) => {
            let mut folder = path.parent();
            while let Some(dir) = folder {
                if dir.as_os_str().is_empty() {
                    folder = Some(Path::new("."));
                    break;
                }
                if dir.exists() {
                    break;
                }
                folder = dir.parent();
            }
            let dir = folder.unwrap_or(Path::new("/"));
            if !dir.is_dir() {
                return Err(format!("{} is not a folder", dir.display()));
            }
            nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).map_err(|e| {
                format!(
                    "{}: cannot create the database in {}: {e}",
                    path.display(),
                    dir.display()
                )
            })
        }
        DatabaseUrl::Postgres(url) => super::postgres::driver::connect(url, timeout)
            .map(drop)
            .map_err(|e| e.to_string()),
    }
}
