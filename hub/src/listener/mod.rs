//! The QUIC listener: accepts agents (mutual TLS), one task per connection, all
//! commits through the store writer; erasures flow back to every agent through the
//! [`ErasureFeed`], the campaign set and till keys through the [`CampaignFeed`], the
//! store's profile digests through the [`DigestFeed`] (which also answers the on-scan
//! digest requests and coupon checks), the store's redeemed coupon codes through the
//! [`RedeemedFeed`].

pub mod campaigns;
mod connection;
mod digests;
mod endpoint;
mod erasures;
mod redeemed;
mod revocation;
pub mod session;
mod till_guard;
mod tls;

use tokio::sync::watch;
use tokio::task::JoinSet;

pub use campaigns::CampaignFeed;
pub use connection::{CLOSE_DONE, CLOSE_REFUSED, CLOSE_SHUTDOWN};
pub use digests::DigestFeed;
pub use endpoint::{
    bind, endpoint_config, load_or_create_reset_secret, read_reset_secret, save_reset_secret,
    EndpointError, RESET_KEY_FILE,
};
pub use erasures::{ErasureFeed, ERASURE_POLL};
pub use redeemed::{RedeemedFeed, REDEEMED_POLL};
pub use revocation::{Gate, GateError, Kick, Ticket, REVOCATION_POLL};
pub use session::{
    DigestPoll, HubSession, Reply, Step, DIGEST_BATCH, ERASURE_BATCH, ERASURE_WINDOW,
    REDEEMED_BATCH,
};
pub use till_guard::{CardAnswer, Probing, Standing, TillGuard, TillGuards, TokenBucket};
pub use tls::{
    load_certs, load_key, server_config, transport_config, TlsSetupError, IDLE_TIMEOUT, KEEP_ALIVE,
    RECEIVE_WINDOW, SEND_WINDOW, STREAM_RECEIVE_WINDOW,
};

use crate::store::StoreWriter;

/// What the hub pushes to every agent (cheap to clone: one per connection).
#[derive(Clone)]
pub struct Downlinks {
    pub erasures: ErasureFeed,
    /// `None`: no campaigns configured, nothing is sent.
    pub campaigns: Option<CampaignFeed>,
    pub digests: DigestFeed,
    /// The store's redeemed codes (and the tills' clock check).
    pub redeemed: RedeemedFeed,
    /// What each till may ask at a scan, and how often.
    pub tills: TillGuards,
}

/// How long a stopping hub lets its connections finish their batches before it closes
/// them (well inside systemd's TimeoutStopSec=30s).
pub const SHUTDOWN_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Accepts connections until `stop` turns true, then lets every connection finish the
/// batches it has read (committed and acknowledged) and close, for at most
/// [`SHUTDOWN_DRAIN`]; then closes what is left and waits for their tasks (a commit in
/// progress still finishes; its ack may not reach the agent, which resends and gets a
/// no-op).
pub async fn accept_loop(
    endpoint: quinn::Endpoint,
    writer: StoreWriter,
    downlinks: Downlinks,
    gate: Gate,
    mut stop: watch::Receiver<bool>,
) {
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break;
                }
            }
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => {
                    tasks.spawn(connection::serve(
                        incoming,
                        writer.clone(),
                        downlinks.clone(),
                        gate.clone(),
                        stop.clone(),
                    ));
                }
                None => break,
            },
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(err) = done {
                    tracing::error!("connection task failed: {err}");
                }
            }
        }
    }
    // No new connections from here; those open see `stop` between two frames.
    endpoint.set_server_config(None);
    let drained = tokio::time::timeout(SHUTDOWN_DRAIN, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "{} connection(s) still busy after {SHUTDOWN_DRAIN:?}: closing them",
            tasks.len()
        );
    }
    endpoint.close(CLOSE_SHUTDOWN.into(), b"hub shutting down");
    while tasks.join_next().await.is_some() {}
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), endpoint.wait_idle()).await;
}
