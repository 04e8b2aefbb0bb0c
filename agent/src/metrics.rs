//! Prometheus metrics of the agent, served on `[metrics] listen` (off unless set) at
//! `GET /metrics`: the `metrics` facade, rendered by `metrics-exporter-prometheus`'s
//! handle. A tiny HTTP/1.1 answer over a tokio listener: the agent has no HTTP stack and
//! needs none for one read-only page.
//!
//! The recorder is installed once per process ([`handle`]); counters are recorded where
//! things happen (the proxy, the till core, the scanner), the journal and link gauges
//! are read when scraped.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::journal::Journal;
use crate::uplink::UplinkStatus;

pub const PROXIED_BYTES: &str = "till360_agent_proxied_bytes_total";
pub const RECEIPTS_PARSED: &str = "till360_agent_receipts_parsed_total";
pub const RECEIPTS_UNPARSED: &str = "till360_agent_receipts_unparsed_total";
pub const SCANS: &str = "till360_agent_scans_total";
pub const COUPON_DECISION_SECONDS: &str = "till360_agent_coupon_decision_duration_seconds";
pub const JOURNAL_BYTES: &str = "till360_agent_journal_bytes";
pub const JOURNAL_PENDING: &str = "till360_agent_journal_pending_events";
pub const LINK_UP: &str = "till360_agent_link_up";
pub const DEVICE_RECONNECTS: &str = "till360_agent_device_reconnects_total";

/// Every family the agent exports (the dashboard may use only these and the hub's).
pub const FAMILIES: &[&str] = &[
    PROXIED_BYTES,
    RECEIPTS_PARSED,
    RECEIPTS_UNPARSED,
    SCANS,
    COUPON_DECISION_SECONDS,
    JOURNAL_BYTES,
    JOURNAL_PENDING,
    LINK_UP,
    DEVICE_RECONNECTS,
];

/// A coupon decision takes well under the cut's budget (tens of milliseconds).
const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// How often histogram samples are folded into their buckets between scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// How long a scraper may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The process's recorder, installed on first use (with its upkeep thread) and the
/// families described. If another recorder was installed first, the handle renders only
/// what was recorded through it: nothing; that is logged once.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = match PrometheusBuilder::new().set_buckets(SECONDS_BUCKETS) {
            Ok(builder) => builder,
            Err(err) => {
                tracing::error!("metrics buckets: {err}");
                PrometheusBuilder::new()
            }
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if let Err(err) = metrics::set_global_recorder(recorder) {
            tracing::error!("metrics: another recorder is installed in this process: {err}");
        }
        describe();
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || loop {
                std::thread::sleep(UPKEEP_EVERY);
                upkeep.run_upkeep();
            });
        if let Err(err) = spawned {
            tracing::warn!("metrics upkeep thread: {err}");
        }
        handle
    })
}

fn describe() {
    describe_counter!(
        PROXIED_BYTES,
        Unit::Bytes,
        "Bytes read from the POS and passed to the printer."
    );
    describe_counter!(
        RECEIPTS_PARSED,
        "Receipts read whose lines add up to their total."
    );
    describe_counter!(
        RECEIPTS_UNPARSED,
        "Receipts read whose lines do not add up to their total (a layout that misreads this POS)."
    );
    describe_counter!(
        SCANS,
        "Scanner reads, by kind (card, coupon, unrecognised)."
    );
    describe_histogram!(
        COUPON_DECISION_SECONDS,
        Unit::Seconds,
        "Time from a receipt's cut to its coupon decision."
    );
    describe_gauge!(JOURNAL_BYTES, Unit::Bytes, "Size of the journal.");
    describe_gauge!(
        JOURNAL_PENDING,
        "Journaled events the hub has not acknowledged."
    );
    describe_gauge!(LINK_UP, "1 while a session with the hub is established.");
    describe_counter!(
        DEVICE_RECONNECTS,
        "Device connections lost (the agent reopens them), by device."
    );
    // Families without labels show from the start (a dashboard's zero, not a gap).
    counter!(PROXIED_BYTES).increment(0);
    counter!(RECEIPTS_PARSED).increment(0);
    counter!(RECEIPTS_UNPARSED).increment(0);
}

pub fn record_proxied(bytes: usize) {
    counter!(PROXIED_BYTES).increment(bytes as u64);
}

pub fn record_receipt(balanced: bool) {
    counter!(if balanced {
        RECEIPTS_PARSED
    } else {
        RECEIPTS_UNPARSED
    })
    .increment(1);
}

/// `kind`: `card`, `coupon` or `unrecognised`.
pub fn record_scan(kind: &'static str) {
    counter!(SCANS, "kind" => kind).increment(1);
}

pub fn record_coupon_decision(elapsed: Duration) {
    metrics::histogram!(COUPON_DECISION_SECONDS).record(elapsed.as_secs_f64());
}

/// `device`: `pos`, `printer`, `scanner` or `scanner_forward`.
pub fn record_device_lost(device: &'static str) {
    counter!(DEVICE_RECONNECTS, "device" => device).increment(1);
}

/// What the scrape reads besides the recorder: the journal once it is open, the link
/// once the uplink runs.
#[derive(Clone)]
pub struct Sources {
    pub journal: Arc<dyn Fn() -> Option<Arc<Mutex<Journal>>> + Send + Sync>,
    pub link: Arc<dyn Fn() -> Option<watch::Receiver<UplinkStatus>> + Send + Sync>,
}

impl Sources {
    fn sample(&self) {
        if let Some(journal) = (self.journal)() {
            let journal = journal.lock().unwrap_or_else(|p| p.into_inner());
            match journal.bytes() {
                Ok(bytes) => gauge!(JOURNAL_BYTES).set(bytes as f64),
                Err(err) => tracing::debug!("metrics: journal size: {err}"),
            }
            let pending = journal.last_seq().saturating_sub(journal.acked_seq());
            gauge!(JOURNAL_PENDING).set(pending as f64);
        }
        let up = (self.link)().is_some_and(|status| status.borrow().connected);
        gauge!(LINK_UP).set(if up { 1.0 } else { 0.0 });
    }
}

/// Binds `listen` for the metrics endpoint (at start: a port in use is an error there,
/// not later). Must be called inside a tokio runtime.
pub fn bind(listen: SocketAddr) -> std::io::Result<TcpListener> {
    handle();
    let listener = std::net::TcpListener::bind(listen)?;
    listener.set_nonblocking(true)?;
    TcpListener::from_std(listener)
}

/// Answers `GET /metrics` on `listener` until `stop` turns true.
pub async fn serve(listener: TcpListener, sources: Sources, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stopped| *stopped) => return,
        };
        match accepted {
            Ok((stream, _)) => {
                let sources = sources.clone();
                tokio::spawn(answer(stream, sources));
            }
            Err(err) => {
                tracing::warn!("metrics: accept: {err}");
                // A full file table: give it a moment instead of spinning.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One request, one answer, then close.
async fn answer(mut stream: tokio::net::TcpStream, sources: Sources) {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(REQUEST_TIMEOUT, async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
            if head.len() > 16 * 1024 {
                break;
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if !matches!(read, Ok(Ok(()))) {
        return;
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (parts.next(), parts.next());
    let (status, body) = match (method, path) {
        (Some(b"GET"), Some(b"/metrics")) => {
            let sources = sources.clone();
            let text = tokio::task::spawn_blocking(move || {
                sources.sample();
                handle().render()
            })
            .await
            .unwrap_or_default();
            ("200 OK", text)
        }
        (Some(b"GET"), Some(_)) => ("404 Not Found", "not found: try /metrics\n".to_string()),
        _ => (
            "405 Method Not Allowed",
            "only GET /metrics is served here\n".to_string(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}
