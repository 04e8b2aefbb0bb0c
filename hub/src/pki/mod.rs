//! The hub's small certificate authority: one CA, one hub server certificate, and one
//! client certificate per agent whose identity (store/till) the hub trusts instead of
//! anything the agent says in its payload (DESIGN.md principle 4). Each agent
//! certificate also carries its till's epoch ([`epochs`]) and can be revoked
//! ([`revocations`]).

pub mod epochs;
pub mod revocations;

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chrono::{Datelike, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use thiserror::Error;
use till360_shared::AgentId;

/// File names inside the PKI folder (`ca init`) and an agent's output folder (`ca issue`).
pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";
pub const HUB_CERT: &str = "hub.pem";
pub const HUB_KEY: &str = "hub.key";
pub const AGENT_CERT: &str = "agent.pem";
pub const AGENT_KEY: &str = "agent.key";

/// The SAN URI prefix that carries an agent's identity: `urn:till360:agent:STORE:TILL`.
pub const AGENT_URI_PREFIX: &str = "urn:till360:agent:";
/// The SAN URI prefix that carries the certificate's epoch: `urn:till360:epoch:N`.
pub const EPOCH_URI_PREFIX: &str = "urn:till360:epoch:";

pub use epochs::{current_epoch, EPOCHS_FILE};
pub use revocations::{
    normalize_serial, revocation_list_path, revoke, RevocationList, RevokeOutcome, Revoked,
    REVOKED_FILE,
};

const CA_YEARS: i32 = 20;
const LEAF_YEARS: i32 = 5;

#[derive(Debug, Error)]
pub enum PkiError {
    #[error(
        "{0} already exists: refusing to overwrite an existing CA (use --force to replace it)"
    )]
    AlreadyExists(PathBuf),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid {what} {value:?}: use 1 to 32 of A-Z a-z 0-9 _ . -")]
    BadIdentity { what: &'static str, value: String },
    #[error("invalid DNS name {0:?}")]
    BadName(String),
    #[error("{path}: {reason}")]
    BadCa { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    BadFile { path: PathBuf, reason: String },
    #[error("{0} not found: not a PKI folder (create one with `ca init`)")]
    NotAPki(PathBuf),
    #[error("invalid serial {0:?}: expected hex digits (colons allowed)")]
    BadSerial(String),
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error(
        "{path} has mode {mode:04o}: group or others may read this key; the hub does not \
         start until it is 0600 (chmod 600 {path})"
    )]
    KeyOpenToOthers { path: String, mode: u32 },
}

/// Refuses a key file that group or others may access (a missing one is fine: the hub
/// creates its own secrets 0600, and a missing TLS key fails where it is read).
pub fn check_key_file(path: &Path) -> Result<(), PkiError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = match fs::metadata(path) {
        Ok(meta) => meta.permissions().mode() & 0o7777,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(PkiError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if mode & 0o077 == 0 {
        Ok(())
    } else {
        Err(PkiError::KeyOpenToOthers {
            path: path.display().to_string(),
            mode,
        })
    }
}

/// Creates `ca.pem ca.key hub.pem hub.key` in `dir`. The hub certificate names every
/// DNS name in `names` and every address in `ips` (agents connect by one of them).
pub fn init_ca(dir: &Path, names: &[String], ips: &[IpAddr], force: bool) -> Result<(), PkiError> {
    for existing in [CA_CERT, CA_KEY] {
        let path = dir.join(existing);
        if path.exists() && !force {
            return Err(PkiError::AlreadyExists(path));
        }
    }
    fs::create_dir_all(dir).map_err(|source| PkiError::Write {
        path: dir.to_path_buf(),
        source,
    })?;

    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = name("Till360 CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut ca_params, CA_YEARS);
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let hub_key = KeyPair::generate()?;
    let mut sans = Vec::new();
    for n in names {
        let dns = n
            .as_str()
            .try_into()
            .map_err(|_| PkiError::BadName(n.clone()))?;
        sans.push(SanType::DnsName(dns));
    }
    sans.extend(ips.iter().copied().map(SanType::IpAddress));
    let mut hub_params = CertificateParams::default();
    hub_params.distinguished_name = name("Till360 hub");
    hub_params.subject_alt_names = sans;
    hub_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    hub_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    set_validity(&mut hub_params, LEAF_YEARS);
    let hub_cert = hub_params.signed_by(&hub_key, &issuer)?;

    write_file(&dir.join(CA_CERT), ca_cert.pem().as_bytes(), false)?;
    write_file(
        &dir.join(CA_KEY),
        issuer.key().serialize_pem().as_bytes(),
        true,
    )?;
    write_file(&dir.join(HUB_CERT), hub_cert.pem().as_bytes(), false)?;
    write_file(&dir.join(HUB_KEY), hub_key.serialize_pem().as_bytes(), true)?;
    Ok(())
}

/// What `ca issue` wrote: the till's new epoch and the certificate's serial (what
/// `ca revoke --serial` takes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCert {
    pub epoch: u64,
    pub serial: String,
}

pub(crate) fn validate_identity(store: &str, till: &str) -> Result<(), PkiError> {
    for (what, value) in [("store", store), ("till", till)] {
        if !AgentId::is_valid_part(value) {
            return Err(PkiError::BadIdentity {
                what,
                value: value.to_string(),
            });
        }
    }
    Ok(())
}

/// Issues a client certificate for the till `store/till` with the CA in `dir`, writing
/// `ca.pem agent.pem agent.key` to `out` (everything the agent's `[hub]` section needs).
/// Each certificate gets the till's next epoch: once the hub has seen it, certificates
/// issued earlier for the same till are fenced.
pub fn issue_agent(
    dir: &Path,
    store: &str,
    till: &str,
    out: &Path,
) -> Result<IssuedCert, PkiError> {
    validate_identity(store, till)?;
    let ca_cert_path = dir.join(CA_CERT);
    let ca_key_path = dir.join(CA_KEY);
    let ca_pem = read_string(&ca_cert_path)?;
    let ca_key = KeyPair::from_pem(&read_string(&ca_key_path)?).map_err(|e| PkiError::BadCa {
        path: ca_key_path.clone(),
        reason: e.to_string(),
    })?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).map_err(|e| PkiError::BadCa {
        path: ca_cert_path.clone(),
        reason: e.to_string(),
    })?;

    let agent = AgentId::new(store, till);
    let agent_key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = name(&agent.to_string());
    let uri = agent_uri(&agent)
        .as_str()
        .try_into()
        .map_err(|_| PkiError::BadIdentity {
            what: "agent",
            value: agent.to_string(),
        })?;
    // The lock is held until the certificate is written, so epochs are handed out in
    // the order certificates appear.
    let held = epochs::lock(dir)?;
    let epoch = epochs::next_epoch(dir, &agent, &held)?;
    let epoch_uri = format!("{EPOCH_URI_PREFIX}{epoch}")
        .as_str()
        .try_into()
        .map_err(|_| PkiError::BadIdentity {
            what: "agent",
            value: agent.to_string(),
        })?;
    params.subject_alt_names = vec![SanType::URI(uri), SanType::URI(epoch_uri)];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    set_validity(&mut params, LEAF_YEARS);
    let cert = params.signed_by(&agent_key, &issuer)?;
    let serial = identity_from_cert_der(cert.der())
        .map_err(|e| PkiError::BadCa {
            path: ca_cert_path.clone(),
            reason: format!("issued an unreadable certificate: {e}"),
        })?
        .serial;

    fs::create_dir_all(out).map_err(|source| PkiError::Write {
        path: out.to_path_buf(),
        source,
    })?;
    write_file(&out.join(CA_CERT), ca_pem.as_bytes(), false)?;
    write_file(&out.join(AGENT_CERT), cert.pem().as_bytes(), false)?;
    write_file(
        &out.join(AGENT_KEY),
        agent_key.serialize_pem().as_bytes(),
        true,
    )?;
    drop(held);
    Ok(IssuedCert { epoch, serial })
}

/// The SAN URI that names `agent` in its certificate.
pub fn agent_uri(agent: &AgentId) -> String {
    format!("{AGENT_URI_PREFIX}{}:{}", agent.store, agent.till)
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdentityError {
    #[error("the peer presented no certificate")]
    NoCertificate,
    #[error("the peer certificate cannot be parsed: {0}")]
    Unparsable(String),
    #[error("the peer certificate has no {AGENT_URI_PREFIX}STORE:TILL subject alternative name")]
    NoAgentUri,
    #[error("the peer certificate names an invalid agent {0:?}")]
    BadAgentUri(String),
    #[error("the peer certificate has an invalid epoch {0:?}")]
    BadEpoch(String),
}

/// Everything the hub reads from an agent certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertIdentity {
    pub agent: AgentId,
    /// 0 for certificates issued before epochs existed.
    pub epoch: u64,
    /// Normalized hex ([`normalize_serial`]).
    pub serial: String,
}

/// Reads the agent identity from a DER end-entity certificate's SAN URI.
pub fn agent_from_cert_der(der: &[u8]) -> Result<AgentId, IdentityError> {
    identity_from_cert_der(der).map(|identity| identity.agent)
}

/// Reads the agent identity, epoch and serial from a DER end-entity certificate.
pub fn identity_from_cert_der(der: &[u8]) -> Result<CertIdentity, IdentityError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| IdentityError::Unparsable(e.to_string()))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| IdentityError::Unparsable(e.to_string()))?
        .ok_or(IdentityError::NoAgentUri)?;
    let mut agent = None;
    let mut epoch = None;
    for general in &san.value.general_names {
        if let x509_parser::extensions::GeneralName::URI(uri) = general {
            if let Some(rest) = uri.strip_prefix(AGENT_URI_PREFIX) {
                if agent.is_none() {
                    agent = Some(
                        parse_agent_part(rest)
                            .ok_or_else(|| IdentityError::BadAgentUri(uri.to_string()))?,
                    );
                }
            } else if let Some(rest) = uri.strip_prefix(EPOCH_URI_PREFIX) {
                if epoch.is_none() {
                    epoch = Some(
                        rest.parse::<u64>()
                            .map_err(|_| IdentityError::BadEpoch(uri.to_string()))?,
                    );
                }
            }
        }
    }
    let agent = agent.ok_or(IdentityError::NoAgentUri)?;
    let serial = serial_hex(cert.raw_serial());
    Ok(CertIdentity {
        agent,
        epoch: epoch.unwrap_or(0),
        serial,
    })
}

fn serial_hex(bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    // Every byte string is hex: normalizing only strips leading zeros.
    normalize_serial(&hex).unwrap_or(hex)
}

fn parse_agent_part(rest: &str) -> Option<AgentId> {
    let (store, till) = rest.split_once(':')?;
    (AgentId::is_valid_part(store) && AgentId::is_valid_part(till))
        .then(|| AgentId::new(store, till))
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Till360");
    dn.push(DnType::CommonName, common_name);
    dn
}

/// Valid from yesterday (tolerates small clock skew between hub and tills) for `years`.
fn set_validity(params: &mut CertificateParams, years: i32) {
    let yesterday = Utc::now().date_naive() - chrono::Days::new(1);
    let (y, m, d) = (
        yesterday.year(),
        yesterday.month() as u8,
        yesterday.day() as u8,
    );
    params.not_before = rcgen::date_time_ymd(y, m, d);
    // Day 28 exists in every month, so the expiry date is always valid.
    params.not_after = rcgen::date_time_ymd(y + years, m, d.min(28));
}

fn read_string(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Replaces a record file whole (temp file + rename), so the hub, reading it while it
/// changes, sees either the old or the new list, never half of one.
fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    let temp = PathBuf::from(temp);
    write_file(&temp, bytes, false)?;
    fs::rename(&temp, path).map_err(|source| PkiError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes a file; private keys get mode 0600 from the moment they exist.
fn write_file(path: &Path, bytes: &[u8], private: bool) -> Result<(), PkiError> {
    let wrap = |source| PkiError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mode = if private { 0o600 } else { 0o644 };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(wrap)?;
    // `mode` only applies to new files: tighten an existing key file too.
    if private {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(wrap)?;
    }
    file.write_all(bytes).map_err(wrap)?;
    file.sync_all().map_err(wrap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_uri_parts_are_validated() {
        assert_eq!(
            parse_agent_part("S001:T01"),
            Some(AgentId::new("S001", "T01"))
        );
        assert_eq!(parse_agent_part("S001"), None);
        assert_eq!(parse_agent_part("S001:T 1"), None);
        assert_eq!(parse_agent_part(":T1"), None);
        assert_eq!(parse_agent_part("S1:T1:x"), None);
    }

    fn self_signed_with_uris(uris: &[&str]) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.subject_alt_names = uris
            .iter()
            .map(|u| SanType::URI((*u).try_into().unwrap()))
            .collect();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn a_certificate_without_an_epoch_is_epoch_zero_and_a_bad_epoch_is_an_error() {
        let legacy = self_signed_with_uris(&["urn:till360:agent:S1:T1"]);
        let read = identity_from_cert_der(&legacy).unwrap();
        assert_eq!((read.agent, read.epoch), (AgentId::new("S1", "T1"), 0));
        assert!(!read.serial.is_empty());
        let epoch = self_signed_with_uris(&["urn:till360:epoch:7", "urn:till360:agent:S1:T1"]);
        assert_eq!(identity_from_cert_der(&epoch).unwrap().epoch, 7);
        let bad = self_signed_with_uris(&["urn:till360:agent:S1:T1", "urn:till360:epoch:x"]);
        assert!(matches!(
            identity_from_cert_der(&bad),
            Err(IdentityError::BadEpoch(_))
        ));
    }

    #[test]
    fn garbage_certificate_is_an_error_not_a_panic() {
        assert!(matches!(
            agent_from_cert_der(b"not a certificate"),
            Err(IdentityError::Unparsable(_))
        ));
    }
}
