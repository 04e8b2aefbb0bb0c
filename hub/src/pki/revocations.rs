//! The revocation list `PKI/revoked.toml`: `ca revoke` appends to it, the hub reads it
//! at start and whenever it changes. One entry revokes either one certificate (by
//! serial) or every certificate of a till up to an epoch, so re-provisioning the till
//! (`ca issue`, a higher epoch) gives it a working certificate again.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use till360_shared::AgentId;

use super::epochs::{self, current_epoch};
use super::{replace_file, CertIdentity, PkiError, CA_CERT};

pub const REVOKED_FILE: &str = "revoked.toml";
/// The `serial` of an entry that revokes every certificate of the till.
pub const ALL_SERIALS: &str = "all";

/// One line of the revocation list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revoked {
    pub store: String,
    pub till: String,
    /// A certificate serial in hex, or `all`.
    pub serial: String,
    /// With `serial = "all"`: certificates up to this epoch are revoked (absent: every
    /// epoch, also future ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub through_epoch: Option<u64>,
    /// When it was revoked (RFC 3339, UTC).
    #[serde(default)]
    pub when: String,
    #[serde(default)]
    pub reason: String,
}

impl Revoked {
    fn covers(&self, cert: &CertIdentity) -> bool {
        if self.store != cert.agent.store || self.till != cert.agent.till {
            return false;
        }
        if self.serial == ALL_SERIALS {
            self.through_epoch.is_none_or(|last| cert.epoch <= last)
        } else {
            normalize_serial(&self.serial).as_deref() == Some(cert.serial.as_str())
        }
    }

    /// What the refused agent is told.
    pub fn describe(&self) -> String {
        let what = if self.serial == ALL_SERIALS {
            match self.through_epoch {
                Some(epoch) => format!(
                    "certificates of {}/{} through epoch {epoch}",
                    self.store, self.till
                ),
                None => format!("every certificate of {}/{}", self.store, self.till),
            }
        } else {
            format!(
                "certificate {} of {}/{}",
                self.serial, self.store, self.till
            )
        };
        let reason = if self.reason.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.reason)
        };
        format!("{what} revoked {}{reason}", self.when)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokedFile {
    #[serde(default)]
    revoked: Vec<Revoked>,
}

/// The parsed revocation list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationList {
    entries: Vec<Revoked>,
}

impl RevocationList {
    /// Reads `path`; a missing file is an empty list.
    pub fn load(path: &Path) -> Result<RevocationList, PkiError> {
        match fs::read_to_string(path) {
            Ok(text) => Self::parse(path, &text),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(PkiError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Parses the list's text; errors name `path`, the entry and the key.
    pub fn parse(path: &Path, text: &str) -> Result<RevocationList, PkiError> {
        let bad = |reason: String| PkiError::BadFile {
            path: path.to_path_buf(),
            reason,
        };
        let file: RevokedFile = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        for (i, entry) in file.revoked.iter().enumerate() {
            for (key, value) in [("store", &entry.store), ("till", &entry.till)] {
                if !AgentId::is_valid_part(value) {
                    return Err(bad(format!(
                        "revoked[{i}].{key}: invalid {value:?} (1 to 32 of A-Z a-z 0-9 _ . -)"
                    )));
                }
            }
            if entry.serial != ALL_SERIALS && normalize_serial(&entry.serial).is_none() {
                return Err(bad(format!(
                    "revoked[{i}].serial: {:?} is neither hex nor \"{ALL_SERIALS}\"",
                    entry.serial
                )));
            }
        }
        Ok(RevocationList {
            entries: file.revoked,
        })
    }

    pub fn entries(&self) -> &[Revoked] {
        &self.entries
    }

    /// The entry that revokes `cert`, if any.
    pub fn revoking(&self, cert: &CertIdentity) -> Option<&Revoked> {
        self.entries.iter().find(|entry| entry.covers(cert))
    }
}

/// The revocation list of the PKI folder `dir`.
pub fn revocation_list_path(dir: &Path) -> PathBuf {
    dir.join(REVOKED_FILE)
}

/// A serial as the hub compares it: lowercase hex without separators or leading zeros.
/// `None` when it is not hex.
pub fn normalize_serial(serial: &str) -> Option<String> {
    let digits: String = serial
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let trimmed = digits.trim_start_matches('0').to_ascii_lowercase();
    Some(if trimmed.is_empty() {
        "0".to_string()
    } else {
        trimmed
    })
}

/// What `ca revoke` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeOutcome {
    Added(Revoked),
    /// An entry already covers it: nothing written.
    AlreadyRevoked(Revoked),
}

/// Appends a revocation of `store/till` (one certificate when `serial` is given, else
/// every certificate issued so far) to `dir/revoked.toml`. Idempotent.
pub fn revoke(
    dir: &Path,
    store: &str,
    till: &str,
    serial: Option<&str>,
    reason: &str,
) -> Result<RevokeOutcome, PkiError> {
    super::validate_identity(store, till)?;
    let ca = dir.join(CA_CERT);
    if !ca.is_file() {
        return Err(PkiError::NotAPki(ca));
    }
    let serial = match serial {
        Some(raw) => {
            Some(normalize_serial(raw).ok_or_else(|| PkiError::BadSerial(raw.to_string()))?)
        }
        None => None,
    };
    let held = epochs::lock(dir)?;
    let agent = AgentId::new(store, till);
    let path = revocation_list_path(dir);
    let list = RevocationList::load(&path)?;
    let entry = Revoked {
        store: store.to_string(),
        till: till.to_string(),
        serial: serial.clone().unwrap_or_else(|| ALL_SERIALS.to_string()),
        through_epoch: match serial {
            Some(_) => None,
            None => Some(current_epoch(dir, &agent)?),
        },
        when: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        reason: reason.to_string(),
    };
    let existing = list.entries.iter().find(|old| {
        old.store == entry.store
            && old.till == entry.till
            && match (&serial, old.serial.as_str()) {
                // An "all" entry through a later epoch also covers this one.
                (None, ALL_SERIALS) => match (old.through_epoch, entry.through_epoch) {
                    (None, _) => true,
                    (Some(old_last), Some(new_last)) => old_last >= new_last,
                    (Some(_), None) => false,
                },
                (Some(hex), old_serial) => normalize_serial(old_serial).as_ref() == Some(hex),
                (None, _) => false,
            }
    });
    if let Some(existing) = existing {
        return Ok(RevokeOutcome::AlreadyRevoked(existing.clone()));
    }
    let mut entries = list.entries;
    entries.push(entry.clone());
    let body =
        toml::to_string(&RevokedFile { revoked: entries }).map_err(|e| PkiError::BadFile {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    let text = format!(
        "# Written by `till360-hub ca revoke`; the hub rereads it within a second.\n\
         # serial = \"all\": every certificate of the till through `through_epoch`.\n\n{body}"
    );
    replace_file(&path, text.as_bytes())?;
    drop(held);
    Ok(RevokeOutcome::Added(entry))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(store: &str, till: &str, epoch: u64, serial: &str) -> CertIdentity {
        CertIdentity {
            agent: AgentId::new(store, till),
            epoch,
            serial: serial.to_string(),
        }
    }

    fn list(text: &str) -> RevocationList {
        RevocationList::parse(Path::new("revoked.toml"), text).unwrap()
    }

    #[test]
    fn all_through_an_epoch_spares_later_certificates_and_other_tills() {
        let revoked = list(
            "[[revoked]]\nstore = \"S1\"\ntill = \"T1\"\nserial = \"all\"\nthrough_epoch = 2\n",
        );
        assert!(revoked.revoking(&cert("S1", "T1", 0, "ab")).is_some());
        assert!(revoked.revoking(&cert("S1", "T1", 2, "ab")).is_some());
        assert!(revoked.revoking(&cert("S1", "T1", 3, "ab")).is_none());
        assert!(revoked.revoking(&cert("S1", "T2", 1, "ab")).is_none());
        assert!(revoked.revoking(&cert("S2", "T1", 1, "ab")).is_none());
    }

    #[test]
    fn all_without_an_epoch_revokes_every_epoch() {
        let revoked = list("[[revoked]]\nstore = \"S1\"\ntill = \"T1\"\nserial = \"all\"\n");
        assert!(revoked.revoking(&cert("S1", "T1", 99, "ab")).is_some());
    }

    #[test]
    fn a_serial_revokes_only_that_certificate_whatever_its_spelling() {
        let revoked = list("[[revoked]]\nstore = \"S1\"\ntill = \"T1\"\nserial = \"00:0A:bC\"\n");
        assert!(revoked.revoking(&cert("S1", "T1", 1, "abc")).is_some());
        assert!(revoked.revoking(&cert("S1", "T1", 1, "abd")).is_none());
    }

    #[test]
    fn bad_entries_name_the_file_entry_and_key() {
        for (text, needle) in [
            (
                "[[revoked]]\nstore = \"S 1\"\ntill = \"T1\"\nserial = \"all\"\n",
                "revoked[0].store",
            ),
            (
                "[[revoked]]\nstore = \"S1\"\ntill = \"T1\"\nserial = \"xyz\"\n",
                "revoked[0].serial",
            ),
            ("[[revoked]]\nstore = \"S1\"\ntill = \"T1\"\n", "serial"),
            ("revoked = 3", "revoked"),
        ] {
            let err = RevocationList::parse(Path::new("/pki/revoked.toml"), text).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("/pki/revoked.toml"), "{text}");
            assert!(text.contains(needle), "{text}");
        }
    }

    #[test]
    fn serials_normalize() {
        assert_eq!(normalize_serial("00:1F").as_deref(), Some("1f"));
        assert_eq!(normalize_serial("000").as_deref(), Some("0"));
        assert_eq!(normalize_serial("g1"), None);
        assert_eq!(normalize_serial(""), None);
    }
}
