//! The hub's QUIC/TLS server configuration: TLS 1.3 with ring only, client
//! certificates REQUIRED and verified against the hub's CA.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;
use till360_shared::wire::ALPN;

/// Without traffic for this long a connection is dead (agents keep it alive).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Below the shortest idle timeout an agent negotiates (the agent's 8 s), so the
/// hub's side of the rule holds whatever the agent sends.
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// Flow-control windows: a connection's buffers grow only with data in flight, so
/// these bound what one agent can make the hub hold. One uplink stream carries at most
/// an 8 MiB frame; 1 MiB per window keeps a loopback or LAN link busy (window / RTT)
/// while 2,000 tills draining at once cannot pin more than 2 GiB in the worst case.
pub const STREAM_RECEIVE_WINDOW: u32 = 1024 * 1024;
pub const RECEIVE_WINDOW: u32 = 1024 * 1024;
/// The downlink (campaign sets, digest batches) is small and bursty.
pub const SEND_WINDOW: u64 = 512 * 1024;
/// TLS handshake messages buffered per connection (certificate chains are small).
const CRYPTO_BUFFER: usize = 8 * 1024;

#[derive(Debug, Error)]
pub enum TlsSetupError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("TLS setup: {0}")]
    Tls(String),
}

fn file_err(path: &Path, reason: impl ToString) -> TlsSetupError {
    TlsSetupError::File {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Every certificate in a PEM file, in order (at least one).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, e))?;
    if certs.is_empty() {
        return Err(file_err(path, "no CERTIFICATE found"));
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_err(path, e))
}

/// The quinn server config for the hub: mutual TLS against `ca`, ALPN `till360/1`, no
/// 0-RTT, the transport of [`transport_config`].
pub fn server_config(
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> Result<quinn::ServerConfig, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca_cert in load_certs(ca)? {
        roots.add(ca_cert).map_err(|e| file_err(ca, e))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| file_err(ca, e))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsSetupError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(cert)?, load_key(key)?)
        .map_err(|e| file_err(key, format!("does not fit {}: {e}", cert.display())))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    // No 0-RTT: replayable early data has no place in an exactly-once uplink.
    tls.max_early_data_size = 0;
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| TlsSetupError::Tls(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    config.transport_config(Arc::new(transport_config()?));
    Ok(config)
}

/// Transport parameters for every agent connection: idle timeout and keep-alive, one
/// stream, bounded windows, no datagrams (see the constants for the reasoning).
pub fn transport_config() -> Result<quinn::TransportConfig, TlsSetupError> {
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(IDLE_TIMEOUT)
            .map_err(|e| TlsSetupError::Tls(e.to_string()))?,
    ));
    transport.keep_alive_interval(Some(KEEP_ALIVE));
    // The protocol uses exactly one bidirectional stream per connection.
    transport.max_concurrent_bidi_streams(1u32.into());
    transport.max_concurrent_uni_streams(0u32.into());
    transport.stream_receive_window(STREAM_RECEIVE_WINDOW.into());
    transport.receive_window(RECEIVE_WINDOW.into());
    transport.send_window(SEND_WINDOW);
    transport.crypto_buffer_size(CRYPTO_BUFFER);
    // Datagrams are unused: advertise none and reserve no buffer for them.
    transport.datagram_receive_buffer_size(None);
    transport.datagram_send_buffer_size(0);
    Ok(transport)
}
