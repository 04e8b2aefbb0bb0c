//! One simulated till: connects, says `Hello`, streams synthetic receipts within the
//! window and times every ack; reconnects (resuming from the hub's `Welcome`) after a
//! failed connection, a bounded number of times.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use thiserror::Error;
use till360_hub::synthetic::Generator;
use till360_shared::codec::{self, CodecError, FrameDecoder};
use till360_shared::sync::{SyncError, UplinkEvent, UplinkSession};
use till360_shared::wire::Message;
use till360_shared::AgentId;

const SOFTWARE: &str = concat!("till360-loadgen/", env!("CARGO_PKG_VERSION"));
/// No single step (handshake, an answer) may take longer than this.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// What one till is to do.
pub struct TillPlan {
    pub agent: AgentId,
    pub hub: SocketAddr,
    pub server_name: String,
    pub config: quinn::ClientConfig,
    pub receipts: u64,
    pub batch: usize,
    pub window: u64,
    /// Seeds the receipt generator (one per till, so tills differ).
    pub seed: u64,
    /// Connections tried before giving up.
    pub attempts: u32,
}

/// What one till achieved.
#[derive(Debug, Default)]
pub struct TillOutcome {
    pub agent: String,
    /// The highest seq the hub acknowledged.
    pub acked: u64,
    /// Connections that failed.
    pub errors: u64,
    pub last_error: Option<String>,
    /// Per `Events` frame: from its write to the ack covering it.
    pub ack_latencies: Vec<Duration>,
}

#[derive(Debug, Error)]
pub enum TillError {
    #[error("cannot bind a UDP socket: {0}")]
    Bind(std::io::Error),
    #[error("connecting: {0}")]
    Connect(#[from] quinn::ConnectError),
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("sending: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("receiving: {0}")]
    Read(#[from] quinn::ReadError),
    #[error("the hub closed the stream")]
    HubClosed,
    #[error("no answer from the hub within {0:?}")]
    Timeout(Duration),
    #[error("frame: {0}")]
    Codec(#[from] CodecError),
    #[error("protocol: {0}")]
    Sync(#[from] SyncError),
}

/// Runs the till to the end (everything acked, or out of attempts); never panics.
pub async fn run_till(plan: TillPlan) -> TillOutcome {
    let mut outcome = TillOutcome {
        agent: format!("{}/{}", plan.agent.store, plan.agent.till),
        ..TillOutcome::default()
    };
    let mut generator = Generator::new(plan.seed, 1000, 70);
    for _ in 0..plan.attempts.max(1) {
        match connection(&plan, &mut generator, &mut outcome).await {
            Ok(()) => break,
            Err(e) => {
                outcome.errors += 1;
                outcome.last_error = Some(e.to_string());
            }
        }
    }
    outcome
}

/// One connection: returns when the hub has acknowledged every receipt.
async fn connection(
    plan: &TillPlan,
    generator: &mut Generator,
    outcome: &mut TillOutcome,
) -> Result<(), TillError> {
    let bind: SocketAddr = if plan.hub.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let endpoint = quinn::Endpoint::client(bind).map_err(TillError::Bind)?;
    let result = converse(plan, &endpoint, generator, outcome).await;
    endpoint.close(0u32.into(), b"loadgen done");
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    result
}

async fn converse(
    plan: &TillPlan,
    endpoint: &quinn::Endpoint,
    generator: &mut Generator,
    outcome: &mut TillOutcome,
) -> Result<(), TillError> {
    let connecting = endpoint.connect_with(plan.config.clone(), plan.hub, &plan.server_name)?;
    let conn = timed(connecting).await??;
    let (mut send, mut recv) = timed(conn.open_bi()).await??;
    let mut session =
        UplinkSession::new(plan.agent.clone(), plan.receipts, plan.window, plan.batch);
    send.write_all(&codec::encode_frame(&session.hello(SOFTWARE))?)
        .await?;
    let mut decoder = FrameDecoder::new();
    let mut buf = vec![0u8; 64 * 1024];
    // Frames in flight: (last seq, when written).
    let mut in_flight: VecDeque<(u64, Instant)> = VecDeque::new();
    loop {
        while let Some((first, max)) = session.poll_batch() {
            let events = (first..first + max as u64)
                .map(|seq| generator.receipt(&plan.agent, seq))
                .collect();
            let frame = codec::encode_frame(&Message::Events(events))?;
            let last = first + max as u64 - 1;
            send.write_all(&frame).await?;
            in_flight.push_back((last, Instant::now()));
            session.on_sent(last);
        }
        if session.is_streaming() && session.acked() >= plan.receipts {
            conn.close(0u32.into(), b"loadgen done");
            return Ok(());
        }
        let Some(n) = timed(recv.read(&mut buf)).await?? else {
            return Err(TillError::HubClosed);
        };
        decoder.feed(&buf[..n]);
        while let Some(msg) = decoder.poll()? {
            if let Some(UplinkEvent::Acked(seq)) = session.handle(msg)? {
                let now = Instant::now();
                while in_flight.front().is_some_and(|(last, _)| *last <= seq) {
                    if let Some((_, sent_at)) = in_flight.pop_front() {
                        outcome.ack_latencies.push(now - sent_at);
                    }
                }
                outcome.acked = outcome.acked.max(seq);
            }
        }
    }
}

async fn timed<F: std::future::Future>(fut: F) -> Result<F::Output, TillError> {
    tokio::time::timeout(STEP_TIMEOUT, fut)
        .await
        .map_err(|_| TillError::Timeout(STEP_TIMEOUT))
}
