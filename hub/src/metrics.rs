//! Prometheus metrics of the hub (`GET /metrics` on the `http` address): the `metrics`
//! facade, rendered by `metrics-exporter-prometheus`'s handle. The recorder is installed
//! once per process ([`handle`]): hubs started side by side in one process (the tests)
//! share its counters, so a reader compares values before and after, or per label.
//!
//! Counters and histograms are recorded where things happen (the writer thread, the
//! listener, the HTTP guard, the traits job); the per-till gauges are read from the
//! store's agents view when scraped ([`record_till`]).

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use till360_shared::{Event, EventKind};

pub const INGEST_EVENTS: &str = "till360_hub_ingest_events_total";
pub const INGEST_BATCHES: &str = "till360_hub_ingest_batches_total";
pub const COMMIT_SECONDS: &str = "till360_hub_commit_duration_seconds";
pub const CONNECTED_TILLS: &str = "till360_hub_connected_tills";
pub const TILL_BACKLOG: &str = "till360_hub_till_backlog_events";
pub const TILL_LAST_SEEN_AGE: &str = "till360_hub_till_last_seen_age_seconds";
pub const TILL_JOURNAL_BYTES: &str = "till360_hub_till_journal_bytes";
pub const TILL_QUOTA_EXCEEDED: &str = "till360_hub_till_quota_exceeded";
pub const CHAIN_BREAKS: &str = "till360_hub_chain_breaks";
pub const REFUSALS: &str = "till360_hub_refusals_total";
pub const COUPON_DECISIONS: &str = "till360_hub_coupon_decisions_total";
pub const COUPONS_ISSUED: &str = "till360_hub_coupons_issued_total";
pub const COUPONS_REDEEMED: &str = "till360_hub_coupons_redeemed_total";
pub const COUPONS_REFUSED: &str = "till360_hub_coupons_refused_total";
pub const DIGEST_FEED_ROWS: &str = "till360_hub_digest_feed_rows";
pub const HTTP_REQUEST_SECONDS: &str = "till360_hub_http_request_duration_seconds";
pub const TRAITS_RUN_SECONDS: &str = "till360_hub_traits_run_duration_seconds";

/// Every family the hub exports (the dashboard and alert rules may use only these).
pub const FAMILIES: &[&str] = &[
    INGEST_EVENTS,
    INGEST_BATCHES,
    COMMIT_SECONDS,
    CONNECTED_TILLS,
    TILL_BACKLOG,
    TILL_LAST_SEEN_AGE,
    TILL_JOURNAL_BYTES,
    TILL_QUOTA_EXCEEDED,
    CHAIN_BREAKS,
    REFUSALS,
    COUPON_DECISIONS,
    COUPONS_ISSUED,
    COUPONS_REDEEMED,
    COUPONS_REFUSED,
    DIGEST_FEED_ROWS,
    HTTP_REQUEST_SECONDS,
    TRAITS_RUN_SECONDS,
];

/// Histogram buckets (seconds): a commit or an HTTP answer takes about a millisecond, a
/// traits run minutes.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0, 900.0,
];

/// How often histogram samples are folded into their buckets between scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The process's recorder, installed on first use (with its upkeep thread) and the
/// families described. If another recorder was installed first (not one of ours), the
/// handle renders only what was recorded through it: nothing; that is logged once.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new();
        let builder = match builder.set_buckets(SECONDS_BUCKETS) {
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
            // Rendering runs the upkeep too: only memory between scrapes is at stake.
            tracing::warn!("metrics upkeep thread: {err}");
        }
        handle
    })
}

fn describe() {
    describe_counter!(INGEST_EVENTS, "Events committed by the ingest.");
    describe_counter!(INGEST_BATCHES, "Batches committed by the ingest.");
    describe_histogram!(
        COMMIT_SECONDS,
        Unit::Seconds,
        "Time of one group commit of the writer thread."
    );
    describe_gauge!(CONNECTED_TILLS, "Tills connected over QUIC now.");
    describe_gauge!(
        TILL_BACKLOG,
        "Events a till's journal holds that the hub has not acknowledged (its last health report)."
    );
    describe_gauge!(
        TILL_LAST_SEEN_AGE,
        Unit::Seconds,
        "Seconds since the hub last heard from a till."
    );
    describe_gauge!(
        TILL_JOURNAL_BYTES,
        Unit::Bytes,
        "Size of a till's journal (its last health report)."
    );
    describe_gauge!(
        TILL_QUOTA_EXCEEDED,
        "1 when a till's journal is over its quota (its last health report)."
    );
    describe_gauge!(
        CHAIN_BREAKS,
        "1 when the hub found a break in a till's journal hash chain."
    );
    describe_counter!(REFUSALS, "Refusals sent to agents, by reason.");
    describe_counter!(
        COUPON_DECISIONS,
        "Coupon decisions ingested (printed or control group)."
    );
    describe_counter!(COUPONS_ISSUED, "Printed coupons ingested.");
    describe_counter!(COUPONS_REDEEMED, "Coupon redemptions ingested.");
    describe_counter!(COUPONS_REFUSED, "Coupon codes refused at a till, ingested.");
    describe_gauge!(
        DIGEST_FEED_ROWS,
        "Rows of the digest feed the tills follow."
    );
    describe_histogram!(
        HTTP_REQUEST_SECONDS,
        Unit::Seconds,
        "Time to answer an HTTP request, by route, method and status."
    );
    describe_histogram!(
        TRAITS_RUN_SECONDS,
        Unit::Seconds,
        "Time of one traits recompute."
    );
    // Families without labels show from the start (a dashboard's zero, not a gap).
    counter!(INGEST_EVENTS).increment(0);
    counter!(INGEST_BATCHES).increment(0);
    gauge!(CONNECTED_TILLS).increment(0.0);
}

/// Counts one committed batch and the coupon events in it.
pub fn record_batch(events: &[Event]) {
    counter!(INGEST_BATCHES).increment(1);
    counter!(INGEST_EVENTS).increment(events.len() as u64);
    let (mut decisions, mut issued, mut redeemed, mut refused) = (0u64, 0u64, 0u64, 0u64);
    for event in events {
        match &event.kind {
            EventKind::CouponIssued(_) => {
                decisions += 1;
                issued += 1;
            }
            EventKind::CouponWouldHave(_) => decisions += 1,
            EventKind::CouponRedeemed(_) => redeemed += 1,
            EventKind::CouponRefused { .. } => refused += 1,
            _ => {}
        }
    }
    for (name, n) in [
        (COUPON_DECISIONS, decisions),
        (COUPONS_ISSUED, issued),
        (COUPONS_REDEEMED, redeemed),
        (COUPONS_REFUSED, refused),
    ] {
        if n > 0 {
            counter!(name).increment(n);
        }
    }
}

/// A till as the store last saw it, for its gauges (the API reads it when scraped).
#[derive(Debug, Clone)]
pub struct TillSample<'a> {
    pub store: &'a str,
    pub till: &'a str,
    /// Since the hub last heard from the till.
    pub last_seen_age: Option<Duration>,
    pub chain_broken: bool,
    /// From the till's last health report, if it sent one.
    pub health: Option<TillHealthSample>,
}

/// The part of a till's health report that has gauges.
#[derive(Debug, Clone, Copy)]
pub struct TillHealthSample {
    pub pending: u64,
    pub journal_bytes: u64,
    pub quota_exceeded: bool,
}

/// Sets one till's gauges.
pub fn record_till(till: &TillSample<'_>) {
    let labels = [
        ("store", till.store.to_string()),
        ("till", till.till.to_string()),
    ];
    if let Some(age) = till.last_seen_age {
        gauge!(TILL_LAST_SEEN_AGE, &labels).set(age.as_secs_f64());
    }
    gauge!(CHAIN_BREAKS, &labels).set(if till.chain_broken { 1.0 } else { 0.0 });
    if let Some(health) = &till.health {
        gauge!(TILL_BACKLOG, &labels).set(health.pending as f64);
        gauge!(TILL_JOURNAL_BYTES, &labels).set(health.journal_bytes as f64);
        gauge!(TILL_QUOTA_EXCEEDED, &labels).set(if health.quota_exceeded { 1.0 } else { 0.0 });
    }
}

/// Sets the digest feed's size.
pub fn record_digest_feed(rows: u64) {
    gauge!(DIGEST_FEED_ROWS).set(rows as f64);
}

/// Counts a refusal sent to an agent.
pub fn record_refusal(reason: till360_shared::wire::Refusal) {
    let reason = format!("{reason:?}");
    counter!(REFUSALS, "reason" => reason).increment(1);
}

/// A connected till, counted in [`CONNECTED_TILLS`] until dropped.
pub struct ConnectedTill(());

impl ConnectedTill {
    pub fn new() -> Self {
        gauge!(CONNECTED_TILLS).increment(1.0);
        Self(())
    }
}

impl Default for ConnectedTill {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for ConnectedTill {
    fn drop(&mut self) {
        gauge!(CONNECTED_TILLS).decrement(1.0);
    }
}

/// The time of one group commit.
pub fn record_commit(elapsed: Duration) {
    metrics::histogram!(COMMIT_SECONDS).record(elapsed.as_secs_f64());
}

/// The time of one HTTP answer (`route`: the matched route, never the path).
pub fn record_http(route: &str, method: &str, status: u16, elapsed: Duration) {
    metrics::histogram!(
        HTTP_REQUEST_SECONDS,
        "route" => route.to_string(),
        "method" => method.to_string(),
        "status" => status.to_string()
    )
    .record(elapsed.as_secs_f64());
}

/// The time of one traits recompute.
pub fn record_traits_run(elapsed: Duration) {
    metrics::histogram!(TRAITS_RUN_SECONDS).record(elapsed.as_secs_f64());
}
