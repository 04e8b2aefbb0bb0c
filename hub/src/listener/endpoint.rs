//! The hub's UDP endpoint: bound with a stateless-reset key that survives restarts.
//!
//! QUIC lets a server that lost a connection's state (a restart) answer that
//! connection's next packet with a stateless reset, which the peer recognises by a
//! token derived from the connection id under the server's reset key. quinn picks a
//! random key per endpoint by default, so after a restart the tokens no longer match
//! and agents sit out their idle timeout instead. The key here is derived from a secret
//! in `data_dir` ([`RESET_KEY_FILE`], 32 random bytes, 0600, created on first start).
//! So is the key of quinn's connection-id generator: quinn only resets packets whose
//! connection id it recognises as its own (a keyed hash inside the id), so with a fresh
//! generator key after a restart it would silently drop the old connection's packets.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ring::rand::SecureRandom;
use thiserror::Error;

/// The reset secret's file name inside the hub's `data_dir`.
pub const RESET_KEY_FILE: &str = "quic-reset.key";
const RESET_SECRET_LEN: usize = 32;
/// Domain separation: the secret is only ever used through these derivations.
const RESET_KEY_LABEL: &[u8] = b"till360 quic stateless reset v1";
const CID_KEY_LABEL: &[u8] = b"till360 quic connection id v1";

#[derive(Debug, Error)]
pub enum EndpointError {
    #[error("{path}: {reason}")]
    ResetKey { path: PathBuf, reason: String },
    // The reason is in the message, not a `source`: a chain would print it twice.
    #[error("cannot listen for QUIC on udp {addr}: {reason}")]
    Bind {
        addr: SocketAddr,
        reason: std::io::Error,
    },
}

/// The stateless-reset secret of `data_dir`, created (0600, fsynced, renamed into
/// place) when missing. A file of another length is an error and left alone.
pub fn load_or_create_reset_secret(data_dir: &Path) -> Result<[u8; 32], EndpointError> {
    if let Some(secret) = read_reset_secret(data_dir)? {
        return Ok(secret);
    }
    let mut secret = [0u8; RESET_SECRET_LEN];
    ring::rand::SystemRandom::new()
        .fill(&mut secret)
        .map_err(|_| EndpointError::ResetKey {
            path: data_dir.join(RESET_KEY_FILE),
            reason: "the system random source failed".into(),
        })?;
    save_reset_secret(data_dir, &secret)?;
    Ok(secret)
}

/// The reset secret in `data_dir`, if the file is there.
pub fn read_reset_secret(data_dir: &Path) -> Result<Option<[u8; 32]>, EndpointError> {
    let path = data_dir.join(RESET_KEY_FILE);
    let failed = |reason: String| EndpointError::ResetKey {
        path: path.clone(),
        reason,
    };
    match std::fs::read(&path) {
        Ok(bytes) => bytes.as_slice().try_into().map(Some).map_err(|_| {
            failed(format!(
                "holds {} bytes, expected {RESET_SECRET_LEN}; remove it to create a new one \
                 (connected agents then reconnect after their idle timeout)",
                bytes.len()
            ))
        }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(failed(err.to_string())),
    }
}

/// Writes the reset secret to `data_dir` (0600, fsynced, renamed into place).
pub fn save_reset_secret(data_dir: &Path, secret: &[u8; 32]) -> Result<(), EndpointError> {
    let path = data_dir.join(RESET_KEY_FILE);
    let tmp = path.with_extension("key.tmp");
    let _ = std::fs::remove_file(&tmp);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut file| {
            file.write_all(secret)?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, &path));
    written.map_err(|e| EndpointError::ResetKey {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    tracing::info!("wrote the QUIC stateless-reset key {}", path.display());
    Ok(())
}

/// The HMAC key quinn signs reset tokens with, derived from the secret.
fn reset_key(secret: &[u8; 32]) -> ring::hmac::Key {
    let derive = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let key_bytes = ring::hmac::sign(&derive, RESET_KEY_LABEL);
    ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key_bytes.as_ref())
}

/// The key of the connection-id generator, derived from the secret.
fn cid_key(secret: &[u8; 32]) -> u64 {
    let derive = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&derive, CID_KEY_LABEL);
    let mut first = [0u8; 8];
    first.copy_from_slice(&tag.as_ref()[..8]);
    u64::from_le_bytes(first)
}

/// The endpoint config whose reset key and connection-id key are derived from
/// `secret`, so a restarted hub resets the connections of its previous run.
pub fn endpoint_config(secret: &[u8; 32]) -> quinn::EndpointConfig {
    let mut config = quinn::EndpointConfig::new(Arc::new(reset_key(secret)));
    let cid_key = cid_key(secret);
    config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
            as Box<dyn quinn::ConnectionIdGenerator>
    });
    config
}

/// Binds the QUIC endpoint (UDP) at `addr` with the stateless-reset `secret` (every
/// hub of one database holds the same: see `store::secrets`).
pub fn bind(
    config: quinn::ServerConfig,
    addr: SocketAddr,
    secret: &[u8; 32],
) -> Result<quinn::Endpoint, EndpointError> {
    let secret = *secret;
    let bind_err = |reason| EndpointError::Bind { addr, reason };
    let socket = std::net::UdpSocket::bind(addr).map_err(bind_err)?;
    let runtime = quinn::default_runtime()
        .ok_or_else(|| bind_err(std::io::Error::other("no async runtime found")))?;
    quinn::Endpoint::new(endpoint_config(&secret), Some(config), socket, runtime).map_err(bind_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_secret_is_created_once_0600_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_reset_secret(dir.path()).unwrap();
        let path = dir.path().join(RESET_KEY_FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), first.to_vec());
        assert_eq!(load_or_create_reset_secret(dir.path()).unwrap(), first);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(load_or_create_reset_secret(other.path()).unwrap(), first);
    }

    #[test]
    fn a_short_secret_file_is_an_error_naming_the_file_and_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RESET_KEY_FILE);
        std::fs::write(&path, [7u8; 5]).unwrap();
        let err = load_or_create_reset_secret(dir.path()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(RESET_KEY_FILE) && text.contains("5 bytes"),
            "{text}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), vec![7u8; 5]);
    }

    #[test]
    fn the_reset_key_depends_only_on_the_secret() {
        use quinn::crypto::HmacKey;
        let sign = |secret: &[u8; 32]| {
            let mut out = [0u8; 32];
            reset_key(secret).sign(b"connection id", &mut out);
            out
        };
        assert_eq!(sign(&[1; 32]), sign(&[1; 32]));
        assert_ne!(sign(&[1; 32]), sign(&[2; 32]));
        assert_eq!(cid_key(&[1; 32]), cid_key(&[1; 32]));
        assert_ne!(cid_key(&[1; 32]), cid_key(&[2; 32]));
    }
}
