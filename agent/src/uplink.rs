//! The QUIC uplink: streams journal events to the hub and compacts what it acknowledges.
//!
//! The protocol lives in `till360_shared::sync::UplinkSession`; this task only moves
//! frames. One bidirectional stream per connection, opened by the agent: `Hello` →
//! `Welcome {acked_seq}` (or `Refused`), then `Events` frames within the window and
//! `Ack` after each hub commit. Every ack is written to the journal, which deletes
//! the acknowledged events. Right after `Hello` the agent sends `Subscribe` with the
//! journal's erasure version; `Erasures` frames from the hub are applied to the journal
//! (one transaction with the new version), passed on to the till core (a pending card
//! is dropped) and answered with `ErasuresApplied`. `Subscribe` also carries the
//! campaign set version held; a `Campaigns` frame (set + this till's coupon key) is
//! stored in the journal and needs no answer. After any error the task reconnects with a jittered
//! exponential backoff, forever, and resumes from the hub's `Welcome`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::crypto::rustls::QuicClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Serialize;
use thiserror::Error;
use till360_shared::codec::{self, CodecError, FrameDecoder};
use till360_shared::sync::{SyncError, UplinkEvent, UplinkSession};
use till360_shared::wire::{Message, ALPN};
use till360_shared::{AgentId, CardNumber};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::HubLink;
use crate::journal::{Journal, JournalError};

pub const SOFTWARE: &str = concat!("till360-agent/", env!("CARGO_PKG_VERSION"));
// A dead hub is noticed within the idle timeout; keep-alives keep a quiet link up.
const KEEP_ALIVE: Duration = Duration::from_secs(2);
const IDLE_TIMEOUT: Duration = Duration::from_secs(8);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

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

/// What the uplink is doing, for `status` and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UplinkStatus {
    /// A session with the hub is established (welcome received).
    pub connected: bool,
    /// The highest seq the hub has acknowledged.
    pub acked_seq: u64,
    /// Why the last session ended, if it failed.
    pub last_error: Option<String>,
    /// The newest hub erasure the journal has applied.
    pub erasure_version: u64,
    /// The version of the campaign set the journal holds (0: none).
    pub campaign_version: u64,
}

#[derive(Debug, Error)]
enum UplinkError {
    #[error("cannot resolve hub address {address}: {reason}")]
    Resolve { address: String, reason: String },
    #[error("cannot bind a UDP socket: {0}")]
    Bind(std::io::Error),
    #[error("connecting to the hub: {0}")]
    Connect(#[from] quinn::ConnectError),
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("connecting to the hub timed out")]
    ConnectTimeout,
    #[error("sending: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("receiving: {0}")]
    Read(#[from] quinn::ReadError),
    #[error("the hub closed the stream")]
    HubClosed,
    #[error("frame: {0}")]
    Codec(#[from] CodecError),
    #[error("protocol: {0}")]
    Sync(#[from] SyncError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("journal task failed: {0}")]
    JournalTask(String),
    #[error("journal returned no events for seq {0} although the session expects some")]
    NothingToSend(u64),
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
/// TLS 1.3 with the ring provider, ALPN `till360/1`, keep-alive below the idle timeout.
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
    let quic = QuicClientConfig::try_from(tls).map_err(|e| build(e.to_string()))?;
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(KEEP_ALIVE));
    transport.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(IDLE_TIMEOUT).map_err(|e| build(e.to_string()))?,
    ));
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// A running uplink task.
pub struct UplinkHandle {
    status: watch::Receiver<UplinkStatus>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl UplinkHandle {
    /// Follows the uplink's status (connected, acked seq, last error).
    pub fn status(&self) -> watch::Receiver<UplinkStatus> {
        self.status.clone()
    }

    /// Closes the connection and waits for the task to end.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::error!("uplink task failed: {e}");
        }
    }
}

/// Everything one uplink task needs.
pub struct Uplink {
    pub agent: AgentId,
    pub hub: HubLink,
    pub client_config: quinn::ClientConfig,
    /// Shared with the till core, which appends; the uplink reads and acks.
    pub journal: Arc<Mutex<Journal>>,
    /// The last seq appended; a change wakes the uplink.
    pub journal_seq: watch::Receiver<u64>,
    /// Where erased cards go once the journal has applied them (the till core drops
    /// a pending scan of one). `None`: journal only.
    pub erased_cards: Option<std::sync::mpsc::Sender<Vec<CardNumber>>>,
}

impl Uplink {
    /// Starts the reconnecting uplink on the current tokio runtime.
    pub fn spawn(self) -> UplinkHandle {
        let (status_tx, status) = watch::channel(UplinkStatus::default());
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(self.run(status_tx, stop_rx));
        UplinkHandle { status, stop, task }
    }

    async fn run(mut self, status: watch::Sender<UplinkStatus>, mut stop: watch::Receiver<bool>) {
        let mut attempt = 0u32;
        let mut jitter = Jitter::seeded();
        loop {
            if *stop.borrow() {
                break;
            }
            let result = tokio::select! {
                r = self.session(&status, &mut attempt, stop.clone()) => r,
                _ = stopped(&mut stop) => Ok(()),
            };
            status.send_modify(|s| s.connected = false);
            match result {
                Ok(()) => break,
                Err(e) => {
                    if attempt == 0 {
                        tracing::warn!("uplink to {}: {e}; reconnecting", self.hub.address);
                    } else {
                        tracing::debug!("uplink to {}: {e}; reconnecting", self.hub.address);
                    }
                    status.send_modify(|s| s.last_error = Some(e.to_string()));
                }
            }
            let delay = jitter.backoff(attempt);
            attempt = attempt.saturating_add(1);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stopped(&mut stop) => break,
            }
        }
    }

    /// One connection: returns `Ok` only when asked to stop.
    async fn session(
        &mut self,
        status: &watch::Sender<UplinkStatus>,
        attempt: &mut u32,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), UplinkError> {
        let addr = resolve(&self.hub.address).await?;
        let bind: SocketAddr = if addr.is_ipv6() {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        };
        let mut endpoint = quinn::Endpoint::client(bind).map_err(UplinkError::Bind)?;
        endpoint.set_default_client_config(self.client_config.clone());
        let result = self
            .converse(&endpoint, addr, status, attempt, &mut stop)
            .await;
        endpoint.close(0u32.into(), b"agent closing");
        // Give the close frame a moment to leave; never block shutdown for long.
        let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
        result
    }

    async fn converse(
        &mut self,
        endpoint: &quinn::Endpoint,
        addr: SocketAddr,
        status: &watch::Sender<UplinkStatus>,
        attempt: &mut u32,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), UplinkError> {
        let connecting = endpoint.connect(addr, &self.hub.server_name)?;
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| UplinkError::ConnectTimeout)??;
        let (mut send, mut recv) = conn.open_bi().await?;

        let (journal_last, erasure_version, campaign_version) = self
            .with_journal(|j| Ok((j.last_seq(), j.erasure_version()?, j.campaign_version()?)))
            .await?;
        status.send_modify(|s| {
            s.erasure_version = erasure_version;
            s.campaign_version = campaign_version;
        });
        let mut session = UplinkSession::new(
            self.agent.clone(),
            journal_last.max(*self.journal_seq.borrow_and_update()),
            self.hub.window,
            self.hub.batch_max,
        )
        .with_erasure_version(erasure_version)
        .with_campaign_version(campaign_version);
        let mut opening = codec::encode_frame(&session.hello(SOFTWARE))?;
        opening.extend(codec::encode_frame(&session.subscribe())?);
        send.write_all(&opening).await?;

        let mut decoder = FrameDecoder::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut journal_seq_open = true;
        loop {
            while let Some((first, max)) = session.poll_batch() {
                let events = self.with_journal(move |j| j.read_from(first, max)).await?;
                let Some(last) = events.last().map(|e| e.seq) else {
                    return Err(UplinkError::NothingToSend(first));
                };
                send_events(&mut send, events).await?;
                session.on_sent(last);
            }
            tokio::select! {
                read = recv.read(&mut buf) => {
                    let Some(n) = read? else {
                        return Err(UplinkError::HubClosed);
                    };
                    decoder.feed(&buf[..n]);
                    while let Some(msg) = decoder.poll()? {
                        let was_streaming = session.is_streaming();
                        match session.handle(msg)? {
                            Some(UplinkEvent::Acked(seq)) => {
                                self.with_journal(move |j| j.ack(seq)).await?;
                                status.send_modify(|s| {
                                    s.acked_seq = seq;
                                    s.connected = true;
                                    s.last_error = None;
                                });
                                if !was_streaming {
                                    tracing::info!("uplink: connected to {}, hub has seq {seq}", self.hub.address);
                                    *attempt = 0;
                                }
                            }
                            Some(UplinkEvent::Erase { cards, up_to_version }) => {
                                self.apply_erasures(cards, up_to_version, status).await?;
                                let applied = session.erasures_applied(up_to_version);
                                send.write_all(&codec::encode_frame(&applied)?).await?;
                            }
                            Some(UplinkEvent::Campaigns { version, set, keyring, catalog: _ }) => {
                                let count = set.campaigns.len();
                                self.with_journal(move |j| j.store_campaigns(version, &set, &keyring)).await?;
                                // The key is never logged.
                                tracing::info!("uplink: {count} campaigns stored (version {version}) with this till's coupon key");
                                status.send_modify(|s| s.campaign_version = version);
                            }
                            // TODO(issue 4): digest cache and coupon verdicts.
                            Some(UplinkEvent::Digests { .. } | UplinkEvent::Digest { .. } | UplinkEvent::CouponVerdict { .. }) => {}
                            None => {}
                        }
                    }
                }
                changed = self.journal_seq.changed(), if journal_seq_open => {
                    match changed {
                        Ok(()) => session.journal_advanced(*self.journal_seq.borrow_and_update()),
                        // The till core stopped; keep draining what is journaled.
                        Err(_) => journal_seq_open = false,
                    }
                }
                _ = stopped(stop) => {
                    conn.close(0u32.into(), b"agent stopping");
                    return Ok(());
                }
            }
        }
    }

    /// Pseudonymises the journal's events of `cards` and stores `up_to_version` (one
    /// transaction), then tells the till core so a pending scan is dropped too.
    async fn apply_erasures(
        &self,
        cards: Vec<CardNumber>,
        up_to_version: u64,
        status: &watch::Sender<UplinkStatus>,
    ) -> Result<(), UplinkError> {
        let count = cards.len();
        let (outcome, cards) = self
            .with_journal(move |j| Ok((j.apply_erasures(&cards, up_to_version)?, cards)))
            .await?;
        tracing::info!(
            "uplink: {count} erased cards applied (erasure version {}), {} journal events pseudonymised",
            outcome.erasure_version,
            outcome.events_pseudonymised
        );
        if let Some(tx) = &self.erased_cards {
            if !cards.is_empty() {
                // The till core may have stopped; the journal is what counts.
                let _ = tx.send(cards);
            }
        }
        status.send_modify(|s| s.erasure_version = outcome.erasure_version);
        Ok(())
    }

    async fn with_journal<T, F>(&self, f: F) -> Result<T, UplinkError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Journal) -> Result<T, JournalError> + Send + 'static,
    {
        let journal = Arc::clone(&self.journal);
        tokio::task::spawn_blocking(move || {
            // A panic elsewhere leaves SQLite consistent (transactions roll back).
            let mut guard = journal.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| UplinkError::JournalTask(e.to_string()))?
        .map_err(UplinkError::from)
    }
}

/// Sends `events` as one frame, or as several if one would exceed the frame limit.
async fn send_events(
    send: &mut quinn::SendStream,
    events: Vec<till360_shared::Event>,
) -> Result<(), UplinkError> {
    let mut pending = vec![events];
    while let Some(batch) = pending.pop() {
        match codec::encode_frame(&Message::Events(batch.clone())) {
            Ok(frame) => send.write_all(&frame).await?,
            Err(CodecError::TooLarge { .. }) if batch.len() > 1 => {
                let mut first = batch;
                let second = first.split_off(first.len() / 2);
                // Popped last-in-first-out: push the later half first.
                pending.push(second);
                pending.push(first);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Resolves when a stop is requested (or the handle is gone). Returns nothing so no
/// watch guard lives across an await.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn resolve(address: &str) -> Result<SocketAddr, UplinkError> {
    let mut addrs = tokio::net::lookup_host(address)
        .await
        .map_err(|e| UplinkError::Resolve {
            address: address.to_string(),
            reason: e.to_string(),
        })?;
    addrs.next().ok_or_else(|| UplinkError::Resolve {
        address: address.to_string(),
        reason: "no address found".into(),
    })
}

/// Exponential backoff with ±25 % jitter so a fleet of tills does not reconnect in step.
struct Jitter(u64);

impl Jitter {
    fn seeded() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Jitter(u64::from(nanos) | 1)
    }

    fn next(&mut self) -> u64 {
        // xorshift64: plenty for spreading reconnects.
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn backoff(&mut self, attempt: u32) -> Duration {
        let base = BACKOFF_MIN
            .saturating_mul(1u32 << attempt.min(16))
            .min(BACKOFF_MAX);
        let base_ms = base.as_millis() as u64;
        let spread = base_ms / 2;
        let offset = if spread == 0 { 0 } else { self.next() % spread };
        Duration::from_millis(base_ms - base_ms / 4 + offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        let mut j = Jitter(12345);
        let first = j.backoff(0);
        assert!(first >= Duration::from_millis(75) && first <= Duration::from_millis(125));
        for attempt in 10..40 {
            let d = j.backoff(attempt);
            assert!(
                d >= Duration::from_millis(7500) && d <= Duration::from_millis(12500),
                "{d:?}"
            );
        }
    }
}
