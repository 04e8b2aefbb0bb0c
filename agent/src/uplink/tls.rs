//! The uplink's TLS: trust only the configured CA, present this till's certificate.

use std::path::Path;
use std::sync::Arc;

use quinn::crypto::rustls::QuicClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;
use till360_shared::wire::ALPN;

use super::{IDLE_TIMEOUT, KEEP_ALIVE};
use crate::config::HubLink;

/// A problem with `[hub] ca`, `cert` or `key`, named as the config names it.
#[derive(Debug, Error)]
pub enum TlsConfigError {
    #[error("{file}: [hub] {key}: {path}: {reason}")]
    File {
        file: String,
        key: &'static str,
        path: String,
        reason: String,
    },
    #[error("{file}: [hub]: {reason}")]
    Build { file: String, reason: String },
}

fn file_err(
    hub: &HubLink,
    key: &'static str,
    path: &Path,
    reason: impl ToString,
) -> TlsConfigError {
    TlsConfigError::File {
        file: hub.origin.clone(),
        key,
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn pem_reason(e: rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(io) => io.to_string(),
        rustls_pki_types::pem::Error::NoItemsFound => {
            "no PEM item of the expected kind found".into()
        }
        other => format!("not valid PEM: {other}"),
    }
}

fn load_certs(
    hub: &HubLink,
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(hub, key, path, pem_reason(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(hub, key, path, pem_reason(e)))?;
    if certs.is_empty() {
        return Err(file_err(hub, key, path, "contains no CERTIFICATE"));
    }
    Ok(certs)
}

/// Builds the QUIC client config: trust only `[hub] ca`, present `[hub] cert` + `key`,
/// TLS 1.3 with the ring provider, ALPN `till360/1`, keep-alive below the idle timeout,
/// 0-RTT off.
pub fn client_config(hub: &HubLink) -> Result<quinn::ClientConfig, TlsConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certs(hub, "ca", &hub.ca)? {
        roots.add(cert).map_err(|e| {
            file_err(
                hub,
                "ca",
                &hub.ca,
                format!("not a usable CA certificate: {e}"),
            )
        })?;
    }
    let chain = load_certs(hub, "cert", &hub.cert)?;
    let key = PrivateKeyDer::from_pem_file(&hub.key)
        .map_err(|e| file_err(hub, "key", &hub.key, pem_reason(e)))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let build = |reason: String| TlsConfigError::Build {
        file: hub.origin.clone(),
        reason,
    };
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| build(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| {
            file_err(
                hub,
                "key",
                &hub.key,
                format!("does not fit [hub] cert: {e}"),
            )
        })?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    // Never 0-RTT: early data can be replayed, and the uplink promises exactly once.
    tls.enable_early_data = false;
    let quic = QuicClientConfig::try_from(tls).map_err(|e| build(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(Arc::new(transport_config().map_err(build)?));
    Ok(config)
}

/// The uplink's transport: keep-alive below the idle timeout, no streams opened by the
/// hub, small receive windows (the downlink is small), no datagrams.
fn transport_config() -> Result<quinn::TransportConfig, String> {
    const STREAM_RECEIVE_WINDOW: u32 = 1024 * 1024;
    const RECEIVE_WINDOW: u32 = 1024 * 1024;
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(KEEP_ALIVE));
    transport.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(IDLE_TIMEOUT).map_err(|e| e.to_string())?,
    ));
    // The agent opens the one stream; the hub opens none.
    transport.max_concurrent_bidi_streams(0u32.into());
    transport.max_concurrent_uni_streams(0u32.into());
    transport.stream_receive_window(STREAM_RECEIVE_WINDOW.into());
    transport.receive_window(RECEIVE_WINDOW.into());
    transport.datagram_receive_buffer_size(None);
    transport.datagram_send_buffer_size(0);
    Ok(transport)
}
