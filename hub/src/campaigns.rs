//! The campaign set the hub serves (`hub.toml` `campaigns`): read at start, checked
//! against the catalog's sensitive categories (principle 7: never target them), and
//! versioned by content so agents can tell a changed set from the one they hold.

use std::path::Path;

use thiserror::Error;
use till360_shared::campaign::{fnv1a64, CampaignError, CampaignSet};

use crate::store::sql::Sql;
use crate::store::{downlink, StoreError};

#[derive(Debug, Error)]
pub enum CampaignsError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Invalid(#[from] CampaignError),
    #[error("{path}: campaign {campaign:?} names the sensitive category {category:?} in `{key}`: sensitive products are never targeted")]
    Sensitive {
        path: std::path::PathBuf,
        campaign: String,
        key: &'static str,
        category: String,
    },
    #[error("cannot read the catalog's sensitive categories: {0}")]
    Catalog(#[from] StoreError),
}

/// Reads and checks the campaign file. Without a `version` in the file, the version is
/// a hash of its content: the same file always gives the same version.
pub fn load(path: &Path, catalog: &dyn Sql) -> Result<CampaignSet, CampaignsError> {
    let text = std::fs::read_to_string(path).map_err(|source| CampaignsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut set = CampaignSet::from_toml_str(&text, path)?;
    if set.version == 0 {
        // Never 0: 0 means "no campaigns yet" to an agent.
        set.version = fnv1a64(text.as_bytes()).max(1);
    }
    let sensitive = downlink::sensitive_categories(catalog)?;
    if let Some(conflict) = set.sensitive_conflicts(&sensitive).into_iter().next() {
        return Err(CampaignsError::Sensitive {
            path: path.to_path_buf(),
            campaign: conflict.campaign_id,
            key: conflict.key,
            category: conflict.category,
        });
    }
    Ok(set)
}

/// The file in `data_dir` holding the master secret every till's coupon key derives
/// from (`shared::coupon::derive_till_key`).
pub const MASTER_KEY_FILE: &str = "coupon-master.key";
/// Length of the master secret in bytes.
pub const MASTER_KEY_LEN: usize = 32;

#[derive(Debug, Error)]
pub enum MasterKeyError {
    #[error("{path}: cannot read the coupon master key: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: the coupon master key must be exactly {MASTER_KEY_LEN} bytes, found {found}: the file is corrupt (restore it from a backup; deleting it makes every issued coupon unverifiable)")]
    Corrupt {
        path: std::path::PathBuf,
        found: usize,
    },
    #[error("{path}: cannot create the coupon master key: {reason}")]
    Create {
        path: std::path::PathBuf,
        reason: String,
    },
}

/// The coupon master secret: read from `data_dir/coupon-master.key`, or created there
/// (32 random bytes, mode 0600) when the file is absent. A file of any other length is
/// an error, never silently replaced: issued coupons depend on it. `Debug` hides it.
#[derive(Clone)]
pub struct MasterKey([u8; MASTER_KEY_LEN]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    pub fn load_or_create(data_dir: &Path) -> Result<MasterKey, MasterKeyError> {
        match Self::read(data_dir)? {
            Some(key) => Ok(key),
            None => {
                let key = Self::random(&data_dir.join(MASTER_KEY_FILE))?;
                key.save(data_dir)?;
                Ok(key)
            }
        }
    }

    /// The key in `data_dir`, if the file is there; a file of another length is an error.
    pub fn read(data_dir: &Path) -> Result<Option<MasterKey>, MasterKeyError> {
        let path = data_dir.join(MASTER_KEY_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => Self::from_bytes(&bytes)
                .map(Some)
                .ok_or(MasterKeyError::Corrupt {
                    path,
                    found: bytes.len(),
                }),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(MasterKeyError::Read { path, source }),
        }
    }

    /// A key of exactly [`MASTER_KEY_LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<MasterKey> {
        bytes.try_into().ok().map(MasterKey)
    }

    /// 32 bytes from the system's random source (`path` names the key in the error).
    pub fn random(path: &Path) -> Result<MasterKey, MasterKeyError> {
        use ring::rand::SecureRandom;
        let mut key = [0u8; MASTER_KEY_LEN];
        ring::rand::SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| MasterKeyError::Create {
                path: path.to_path_buf(),
                reason: "the system random source failed".into(),
            })?;
        Ok(MasterKey(key))
    }

    /// Writes the key to `data_dir`: a temp file (0600, fsynced) renamed into place, so a
    /// crash never leaves a short key file behind.
    pub fn save(&self, data_dir: &Path) -> Result<(), MasterKeyError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;

        let path = data_dir.join(MASTER_KEY_FILE);
        let path = path.as_path();
        let failed = |reason: String| MasterKeyError::Create {
            path: path.to_path_buf(),
            reason,
        };
        let key = self.0;
        let tmp = path.with_extension("key.tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| failed(format!("{}: {e}", tmp.display())))?;
        file.write_all(&key)
            .and_then(|()| file.sync_all())
            .map_err(|e| failed(format!("{}: {e}", tmp.display())))?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(|e| failed(e.to_string()))?;
        tracing::info!("wrote the coupon master key {}", path.display());
        Ok(())
    }

    pub fn as_bytes(&self) -> &[u8; MASTER_KEY_LEN] {
        &self.0
    }
}

#[cfg(test)]
mod master_key_tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_once_with_mode_0600_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = MasterKey::load_or_create(dir.path()).unwrap();
        let path = dir.path().join(MASTER_KEY_FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), first.as_bytes().to_vec());
        let again = MasterKey::load_or_create(dir.path()).unwrap();
        assert_eq!(again.as_bytes(), first.as_bytes());
        assert_eq!(format!("{first:?}"), "MasterKey(..)");
    }

    #[test]
    fn a_short_file_is_an_error_and_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MASTER_KEY_FILE);
        std::fs::write(&path, [7u8; 5]).unwrap();
        let err = MasterKey::load_or_create(dir.path()).unwrap_err();
        assert!(
            matches!(err, MasterKeyError::Corrupt { found: 5, .. }),
            "{err}"
        );
        assert!(err.to_string().contains(MASTER_KEY_FILE), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), vec![7u8; 5]);
    }
}
