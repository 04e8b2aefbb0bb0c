//! Certificate epochs: `ca issue` numbers the certificates of each till 1, 2, … in
//! `PKI/epochs.toml` and writes the number into the certificate, so the hub can tell a
//! re-provisioned till's new certificate from the old one (which a clone may still hold).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use till360_shared::AgentId;

use super::{replace_file, PkiError};

/// Per store, per till: the epoch of the newest certificate issued.
pub const EPOCHS_FILE: &str = "epochs.toml";
/// Held (flock) while `ca issue` or `ca revoke` update the PKI folder's files, so two
/// commands at once never lose each other's update.
const LOCK_FILE: &str = "pki.lock";

type EpochTable = BTreeMap<String, BTreeMap<String, u64>>;

/// An exclusive lock on the PKI folder's record files, released on drop.
pub(super) struct PkiLock {
    _lock: Flock<fs::File>,
}

pub(super) fn lock(dir: &Path) -> Result<PkiLock, PkiError> {
    let path = dir.join(LOCK_FILE);
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| PkiError::Write {
            path: path.clone(),
            source,
        })?;
    let lock =
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| PkiError::Write {
            path,
            source: errno.into(),
        })?;
    Ok(PkiLock { _lock: lock })
}

fn read_table(path: &Path) -> Result<EpochTable, PkiError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(EpochTable::new()),
        Err(source) => {
            return Err(PkiError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    toml::from_str(&text).map_err(|e| PkiError::BadFile {
        path: path.to_path_buf(),
        reason: format!("expected [STORE] tables of TILL = epoch: {e}"),
    })
}

/// The epoch of the newest certificate issued for `agent` (0: none recorded, or only
/// certificates from before epochs existed).
pub fn current_epoch(dir: &Path, agent: &AgentId) -> Result<u64, PkiError> {
    let table = read_table(&dir.join(EPOCHS_FILE))?;
    Ok(lookup(&table, agent))
}

fn lookup(table: &EpochTable, agent: &AgentId) -> u64 {
    table
        .get(&agent.store)
        .and_then(|tills| tills.get(&agent.till))
        .copied()
        .unwrap_or(0)
}

/// Records and returns the next epoch for `agent`. The caller holds the [`lock`].
pub(super) fn next_epoch(dir: &Path, agent: &AgentId, _held: &PkiLock) -> Result<u64, PkiError> {
    let path: PathBuf = dir.join(EPOCHS_FILE);
    let mut table = read_table(&path)?;
    let next = lookup(&table, agent)
        .checked_add(1)
        .ok_or_else(|| PkiError::BadFile {
            path: path.clone(),
            reason: format!("{}.{}: epoch cannot grow any more", agent.store, agent.till),
        })?;
    table
        .entry(agent.store.clone())
        .or_default()
        .insert(agent.till.clone(), next);
    let body = toml::to_string(&table).map_err(|e| PkiError::BadFile {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let text = format!(
        "# Written by `till360-hub ca issue`: the epoch of each till's newest certificate.\n\
         # The hub refuses a certificate with a lower epoch than one it has seen (Fenced).\n\n{body}"
    );
    replace_file(&path, text.as_bytes())?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_count_per_till_and_survive_rereading() {
        let dir = tempfile::tempdir().unwrap();
        let a = AgentId::new("S1", "T1");
        let b = AgentId::new("S1.x", "T-2");
        assert_eq!(current_epoch(dir.path(), &a).unwrap(), 0);
        let held = lock(dir.path()).unwrap();
        assert_eq!(next_epoch(dir.path(), &a, &held).unwrap(), 1);
        assert_eq!(next_epoch(dir.path(), &a, &held).unwrap(), 2);
        assert_eq!(next_epoch(dir.path(), &b, &held).unwrap(), 1);
        drop(held);
        assert_eq!(current_epoch(dir.path(), &a).unwrap(), 2);
        assert_eq!(current_epoch(dir.path(), &b).unwrap(), 1);
    }

    #[test]
    fn a_damaged_epochs_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(EPOCHS_FILE), "S1 = \"not a table\"").unwrap();
        let err = current_epoch(dir.path(), &AgentId::new("S1", "T1")).unwrap_err();
        assert!(err.to_string().contains(EPOCHS_FILE), "{err}");
    }
}
