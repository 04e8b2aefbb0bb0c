//! Wires the agent together: the proxy threads, the scanner thread, the till core
//! thread and the QUIC uplink.
//!
//! The proxy never waits for anything else (principle 1): it hands POS bytes to the
//! till core through an unbounded channel. The one exception is a receipt's cut, which
//! waits at most `[coupons] budget_ms` for the till core's coupon decision (the till
//! core answers every cut it sees, at once when there is nothing to decide). The till
//! core ([`crate::till_core::TillCore`]) is a pure state machine and the only writer of
//! events to the journal; its thread here only moves values: it receives inputs, locks
//! the journal around one `handle`, and performs the effects (decisions and notices to
//! the proxy, requests to the uplink, the journal's seq). `now` is read from the system
//! clock here, at the edge, and passed in.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::Context;
use till360_shared::{CardPrefixes, Timestamp};
use tokio::sync::watch;

use crate::config::{AgentConfig, ScannerConfig};
use crate::hub_link::{HubRequest, NewsSink};
use crate::instance::{InstanceError, InstanceLock};
use crate::journal::{Journal, JournalError};
use crate::layout::Layout;
use crate::ports::{log_notice, PortError, PortSpec, Reconnect};
use crate::proxy::{CouponGate, CutDecision, Proxy, TapEvent};
use crate::scanner::{classify, Scan, ScanCounts, ScanError, ScanFramer};
use crate::till_core::{TillCore, TillEffect, TillInput, TillSettings};
use crate::uplink::{self, ErasedCards, Uplink, UplinkHandle, UplinkStatus};

/// The current time with the till's local offset.
pub fn now() -> Timestamp {
    let local = chrono::Local::now();
    let offset_min = i16::try_from(local.offset().local_minus_utc() / 60).unwrap_or(0);
    Timestamp::from_unix_ms(local.timestamp_millis(), offset_min)
}

impl From<TapEvent> for TillInput {
    fn from(event: TapEvent) -> Self {
        match event {
            TapEvent::Bytes(bytes) => TillInput::Print(bytes),
            TapEvent::CutReleased { offset, outcome } => TillInput::CutReleased { offset, outcome },
        }
    }
}

/// The uplink's way into the till core's queue. Taken at shutdown, so the queue can
/// close while the uplink still runs.
type NewsSender = Arc<Mutex<Option<Sender<TillInput>>>>;

fn news_sink(sender: NewsSender) -> NewsSink {
    Arc::new(move |news| {
        let sender = sender.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sender) = sender.as_ref() {
            // A closed queue means the till core is stopping: the news no longer matters.
            let _ = sender.send(TillInput::Hub(news));
        }
    })
}

/// How often an idle till core looks for cards erased by the hub (a pending scan of
/// one is dropped; every input checks first anyway).
const ERASURE_CHECK: std::time::Duration = std::time::Duration::from_millis(500);

/// When the till core (or, before the journal opens, the journal opener) last went
/// round its loop. The systemd watchdog is fed only while it keeps going round, so a
/// till core stuck (on a hung disk, say) gets the agent restarted.
#[derive(Clone)]
struct Heartbeat {
    epoch: std::time::Instant,
    last_ms: Arc<AtomicU64>,
}

impl Heartbeat {
    fn new() -> Heartbeat {
        Heartbeat {
            epoch: std::time::Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn beat(&self) {
        let elapsed = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(elapsed, Ordering::Relaxed);
    }

    fn age(&self) -> std::time::Duration {
        let last = std::time::Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }
}

/// How often an agent whose journal could not be opened tries again.
const JOURNAL_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

/// The parts that need the journal. They start as soon as it opens, which may be
/// after the proxy is already printing (principle 1: a broken disk never stops it).
#[derive(Default)]
struct JournaledParts {
    core: Option<JoinHandle<()>>,
    uplink: Option<UplinkHandle>,
    journal: Option<Arc<Mutex<Journal>>>,
}

/// A running agent. Prefer [`RunningAgent::shutdown`]; dropping it only signals the
/// threads to stop and does not wait for them.
pub struct RunningAgent {
    running: Arc<AtomicBool>,
    news: NewsSender,
    proxy: Option<Proxy>,
    scanner: Option<JoinHandle<()>>,
    journal_opener: Option<JoinHandle<()>>,
    parts: Arc<Mutex<JournaledParts>>,
    journal_seq: watch::Receiver<u64>,
    heartbeat: Heartbeat,
    /// Set once the scanner's port has been opened (from the start when there is none).
    scanner_open: Arc<AtomicBool>,
    /// `[metrics] listen`'s bound address and its server's stop (dropped: it stops).
    metrics: Option<(std::net::SocketAddr, watch::Sender<bool>)>,
    /// Declared last so it is released last, after everything else has stopped.
    _instance: Option<InstanceLock>,
}

/// Everything needed to start the till core and the uplink once the journal is open.
struct CoreSetup {
    config: AgentConfig,
    layout: Layout,
    client_config: Option<quinn::ClientConfig>,
    core_rx: Receiver<TillInput>,
    seq_tx: watch::Sender<u64>,
    runtime: tokio::runtime::Handle,
    /// Where the till core answers held cuts; `None` when coupons are disabled.
    decisions: Option<Sender<CutDecision>>,
    /// Where the till core sends notices for the cashier; `None` when coupons are disabled.
    notices: Option<Sender<Vec<u8>>>,
    news: NewsSender,
    heartbeat: Heartbeat,
}

impl CoreSetup {
    fn start(self, mut journal: Journal, parts: &Mutex<JournaledParts>) -> std::io::Result<()> {
        journal.set_max_bytes(self.config.journal.max_bytes);
        let agent = self.config.agent_id();
        let last_seq = journal.last_seq();
        tracing::info!(
            "agent {agent}: journal {} at seq {last_seq} (hub acked {})",
            journal.path().display(),
            journal.acked_seq()
        );
        self.seq_tx.send_replace(last_seq);
        let journal_seq = self.seq_tx.subscribe();
        let has_uplink = self.config.hub.is_some() && self.client_config.is_some();
        let settings = TillSettings {
            store: self.config.store.clone(),
            till: self.config.till.clone(),
            layout: self.layout,
            codepage: self.config.pos.codepage,
            esc_t: self.config.pos.esc_t,
            card_timeout_ms: self.config.checkout.card_timeout_ms(),
            coupons_enabled: self.config.coupons.enabled,
            has_gate: self.decisions.is_some(),
            has_notices: self.notices.is_some(),
            has_uplink,
            notice_text: self.config.coupons.notice_text.clone(),
            columns: self.config.coupons.columns,
            expiry_label: self.config.coupons.expiry_label.clone(),
            max_unverified: self.config.coupons.max_unverified,
        };
        let till_core = TillCore::new(settings, &journal);
        let journal = Arc::new(Mutex::new(journal));
        let (requests_tx, requests_rx) = tokio::sync::mpsc::unbounded_channel();
        // Erasures reach the uplink; the cards go on to the till core's checkout. A
        // separate channel: the uplink must not keep the core's input queue open.
        let (erased_tx, erased_rx) = mpsc::channel();
        let core = CoreLoop {
            core: till_core,
            journal: Arc::clone(&journal),
            seq_tx: self.seq_tx,
            erased_rx,
            decisions: self.decisions,
            requests: has_uplink.then_some(requests_tx),
            notices: self.notices,
            heartbeat: self.heartbeat.clone(),
        };
        let core_rx = self.core_rx;
        let core = std::thread::Builder::new()
            .name("till-core".into())
            .spawn(in_current_span(move || core.run(core_rx)))?;
        let uplink = match (self.config.hub, self.client_config) {
            (Some(hub), Some(client_config)) => {
                let _runtime = self.runtime.enter();
                Some(
                    Uplink {
                        agent,
                        hub,
                        client_config,
                        journal: Arc::clone(&journal),
                        journal_seq,
                        erased_cards: Some(erased_tx),
                        news: Some(news_sink(Arc::clone(&self.news))),
                        requests: Some(requests_rx),
                        request_timeout: self.config.coupons.digest_timeout(),
                    }
                    .spawn(),
                )
            }
            _ => {
                tracing::info!("no [hub] configured: journaling only");
                None
            }
        };
        let mut parts = parts.lock().unwrap_or_else(|p| p.into_inner());
        parts.core = Some(core);
        parts.uplink = uplink;
        parts.journal = Some(journal);
        Ok(())
    }
}

impl RunningAgent {
    /// Checks the configuration (layout, TLS files), starts the proxy and the scanner,
    /// then opens the journal and starts the till core and the uplink. A journal that
    /// cannot be opened (full or broken disk) is retried in the background while the
    /// proxy prints and bytes and scans queue for the till core; only a journal that
    /// belongs to another till is fatal. Must be called inside a tokio runtime.
    pub fn start(config: AgentConfig) -> anyhow::Result<RunningAgent> {
        let agent = config.agent_id();
        refuse_files_open_to_others(&config)?;
        let layout = Layout::load(&config.pos.layout)
            .with_context(|| format!("{}: [pos] layout", config.origin_name()))?;
        let client_config = match &config.hub {
            Some(hub) => Some(uplink::client_config(hub)?),
            None => None,
        };
        // Before any port or the journal is touched: a second agent on the same data
        // folder would share the journal's seqs. A lock that cannot be taken at all (full
        // or read-only disk) must not stop printing.
        let instance = match InstanceLock::acquire(&config.data_dir) {
            Ok(lock) => Some(lock),
            Err(e @ InstanceError::AlreadyRunning { .. }) => anyhow::bail!("{e}"),
            Err(e @ InstanceError::Unavailable { .. }) => {
                tracing::warn!("{e}; starting without it");
                None
            }
        };
        // Before any byte is read: a second agent on the same ports would split them.
        check_ports_free(&config)?;
        let metrics_listener = match config.metrics_listen {
            Some(listen) => Some(crate::metrics::bind(listen).with_context(|| {
                format!("{}: [metrics] listen = \"{listen}\"", config.origin_name())
            })?),
            None => None,
        };
        let first_try = Journal::open(&config.data_dir, &agent);
        if let Err(e @ (JournalError::AgentMismatch { .. } | JournalError::Schema { .. })) =
            &first_try
        {
            anyhow::bail!("{e}");
        }

        let running = Arc::new(AtomicBool::new(true));
        let (core_tx, core_rx) = mpsc::channel::<TillInput>();
        // With coupons on, the proxy holds each cut until the till core's decision (at
        // most the budget); off, it never holds anything.
        let (decisions, notices, gate) = if config.coupons.enabled {
            let (tx, rx) = mpsc::channel();
            let (notices_tx, notices_rx) = mpsc::channel();
            let gate = CouponGate {
                budget: config.coupons.budget(),
                decisions: rx,
                notices: Some(notices_rx),
            };
            (Some(tx), Some(notices_tx), Some(gate))
        } else {
            (None, None, None)
        };
        // The proxy sends printed bytes straight into the till core's queue, the same
        // queue scans go to: a scan read after a cut is ordered after that cut, so a
        // quick next customer's card never lands on the previous receipt.
        let proxy = Proxy::start(
            config.pos.port.clone(),
            config.printer.port.clone(),
            core_tx.clone(),
            gate,
        )
        .context("starting the POS/printer proxy")?;
        let news: NewsSender = Arc::new(Mutex::new(config.hub.is_some().then(|| core_tx.clone())));

        let scanner_open = Arc::new(AtomicBool::new(config.scanner.is_none()));
        let scanner = match config.scanner.clone() {
            Some(scanner) => {
                let running = Arc::clone(&running);
                let opened = Arc::clone(&scanner_open);
                let prefixes = config.cards.prefixes.clone();
                let core_tx = core_tx.clone();
                Some(
                    std::thread::Builder::new()
                        .name("scanner".into())
                        .spawn(in_current_span(move || {
                            read_scanner(scanner, prefixes, core_tx, &running, &opened)
                        }))
                        .context("starting the scanner thread")?,
                )
            }
            None => None,
        };
        drop(core_tx);

        let (seq_tx, journal_seq) = watch::channel(0);
        let heartbeat = Heartbeat::new();
        let setup = CoreSetup {
            heartbeat: heartbeat.clone(),
            config,
            layout,
            client_config,
            core_rx,
            seq_tx,
            runtime: tokio::runtime::Handle::current(),
            decisions,
            notices,
            news: Arc::clone(&news),
        };
        let parts = Arc::new(Mutex::new(JournaledParts::default()));
        let journal_opener = match first_try {
            Ok(journal) => {
                setup
                    .start(journal, &parts)
                    .context("starting the till core thread")?;
                None
            }
            Err(e) => {
                tracing::error!("{e}: printing goes on; journaling starts when it opens");
                let parts = Arc::clone(&parts);
                let running = Arc::clone(&running);
                Some(
                    std::thread::Builder::new()
                        .name("journal-opener".into())
                        .spawn(in_current_span(move || {
                            open_journal_later(setup, &parts, &running)
                        }))
                        .context("starting the journal opener thread")?,
                )
            }
        };

        let metrics = match metrics_listener {
            Some(listener) => {
                let addr = listener
                    .local_addr()
                    .context("the metrics listener's address")?;
                let (stop_tx, stop_rx) = watch::channel(false);
                let journal_parts = Arc::clone(&parts);
                let link_parts = Arc::clone(&parts);
                let sources = crate::metrics::Sources {
                    journal: Arc::new(move || {
                        let parts = journal_parts.lock().unwrap_or_else(|p| p.into_inner());
                        parts.journal.clone()
                    }),
                    link: Arc::new(move || {
                        let parts = link_parts.lock().unwrap_or_else(|p| p.into_inner());
                        parts.uplink.as_ref().map(UplinkHandle::status)
                    }),
                };
                tokio::spawn(crate::metrics::serve(listener, sources, stop_rx));
                tracing::info!("metrics: http://{addr}/metrics");
                Some((addr, stop_tx))
            }
            None => None,
        };

        Ok(RunningAgent {
            metrics,
            running,
            news,
            proxy: Some(proxy),
            scanner,
            journal_opener,
            parts,
            journal_seq,
            heartbeat,
            scanner_open,
            _instance: instance,
        })
    }

    /// What is not up yet of what the agent needs to serve the till: the POS and printer
    /// ports, the scanner's port and the journal (empty once everything is).
    pub fn not_up_yet(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        match &self.proxy {
            Some(proxy) => {
                if !proxy.pos_open() {
                    missing.push("[pos] port");
                }
                if !proxy.printer_open() {
                    missing.push("[printer] port");
                }
            }
            None => missing.push("proxy"),
        }
        if !self.scanner_open.load(Ordering::SeqCst) {
            missing.push("[scanner] port");
        }
        if self.journal().is_none() {
            missing.push("journal");
        }
        missing
    }

    /// Where `GET /metrics` answers (`[metrics] listen`, its port if 0 was asked).
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics.as_ref().map(|(addr, _)| *addr)
    }

    /// Follows the last journaled seq (0 until the journal is open).
    pub fn journal_seq(&self) -> watch::Receiver<u64> {
        self.journal_seq.clone()
    }

    /// The uplink's status, if a hub is configured and the journal is open.
    pub fn uplink_status(&self) -> Option<watch::Receiver<UplinkStatus>> {
        let parts = self.parts.lock().unwrap_or_else(|p| p.into_inner());
        parts.uplink.as_ref().map(UplinkHandle::status)
    }

    /// The journal the agent writes (shared; lock briefly), once it is open.
    pub fn journal(&self) -> Option<Arc<Mutex<Journal>>> {
        let parts = self.parts.lock().unwrap_or_else(|p| p.into_inner());
        parts.journal.clone()
    }

    /// Stops the ports, lets the till core journal what it already has, then closes the
    /// uplink.
    pub async fn shutdown(mut self) {
        self.running.store(false, Ordering::SeqCst);
        if let Some((_, stop)) = self.metrics.take() {
            stop.send_replace(true);
        }
        let proxy = self.proxy.take();
        let scanner = self.scanner.take();
        let opener = self.journal_opener.take();
        let parts = Arc::clone(&self.parts);
        // The uplink's way into the queue closes first, so the till core can end.
        self.news.lock().unwrap_or_else(|p| p.into_inner()).take();
        let joined = tokio::task::spawn_blocking(move || {
            if let Some(proxy) = proxy {
                proxy.stop();
            }
            join_thread(scanner, "scanner");
            join_thread(opener, "journal opener");
            // Every sender is gone now: the core drains its queue and ends.
            let core = parts.lock().unwrap_or_else(|p| p.into_inner()).core.take();
            join_thread(core, "till core");
        })
        .await;
        if let Err(e) = joined {
            tracing::error!("stopping threads failed: {e}");
        }
        let uplink = self
            .parts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .uplink
            .take();
        if let Some(uplink) = uplink {
            uplink.shutdown().await;
        }
    }
}

fn join_thread(thread: Option<JoinHandle<()>>, name: &str) {
    if let Some(thread) = thread {
        if thread.join().is_err() {
            tracing::error!("{name} thread panicked");
        }
    }
}

/// Refuses to start while another process holds a configured device (see
/// `ports::exclusive`; each port holds its device exclusively once open).
fn check_ports_free(config: &AgentConfig) -> anyhow::Result<()> {
    let mut ports = vec![
        ("[pos] port", &config.pos.port),
        ("[printer] port", &config.printer.port),
    ];
    if let Some(scanner) = &config.scanner {
        ports.push(("[scanner] port", &scanner.port));
        if let Some(forward) = &scanner.forward_to {
            ports.push(("[scanner] forward_to", forward));
        }
    }
    for (key, spec) in ports {
        crate::ports::exclusive::check_free(key, spec)?;
    }
    Ok(())
}

/// The data folder, the journal and the till's key must be the agent's user's alone
/// (checked before anything is opened or created).
fn refuse_files_open_to_others(config: &AgentConfig) -> anyhow::Result<()> {
    use crate::file_modes::{check_private, journal_files};
    if config.data_dir.is_dir() {
        check_private(&config.data_dir)?;
    }
    for file in journal_files(&config.data_dir) {
        check_private(&file)?;
    }
    if let Some(hub) = &config.hub {
        check_private(&hub.key)?;
    }
    Ok(())
}

/// Retries opening the journal until it opens or the agent stops. Meanwhile printed
/// bytes and scans wait in the till core's queue, so receipts printed while the disk
/// was unusable are still journaled once it is back.
fn open_journal_later(setup: CoreSetup, parts: &Mutex<JournaledParts>, running: &AtomicBool) {
    let agent = setup.config.agent_id();
    loop {
        let deadline = std::time::Instant::now() + JOURNAL_RETRY;
        while std::time::Instant::now() < deadline {
            if !running.load(Ordering::SeqCst) {
                return;
            }
            setup.heartbeat.beat();
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        match Journal::open(&setup.config.data_dir, &agent) {
            Ok(journal) => {
                tracing::info!("journal opened after all; journaling resumes");
                if let Err(e) = setup.start(journal, parts) {
                    tracing::error!("cannot start the till core: {e}");
                }
                return;
            }
            Err(e) => tracing::warn!("journal still unavailable: {e}"),
        }
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        self.running.store(false, Ordering::SeqCst);
    }
}

/// Runs the agent until `shutdown` resolves. Under systemd (`Type=notify`) it reports
/// ready once the ports are open, the proxy runs and the journal is open (or, if the disk
/// refuses it, is being retried: printing must not wait for it), feeds the watchdog while
/// the till core keeps going round its loop, and reports stopping before the shutdown.
pub async fn run(config: AgentConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    use tracing::Instrument;
    // Every log line of this agent, in text and JSON logs, names its store and till:
    // its threads and tasks start inside this span.
    let span = tracing::info_span!("till", store = %config.store, till = %config.till);
    let agent = span.in_scope(|| RunningAgent::start(config))?;
    let mut shutdown = std::pin::pin!(shutdown.instrument(span.clone()));
    // Ports are opened by their threads: wait for them (and the journal) a while, but a
    // device that is absent must not keep the unit from starting: the proxy keeps trying.
    let deadline = tokio::time::Instant::now() + READY_WAIT;
    let stopped_before_ready = loop {
        let missing = agent.not_up_yet();
        if missing.is_empty() {
            crate::service_manager::ready();
            break false;
        }
        if tokio::time::Instant::now() >= deadline {
            let status = format!("not up yet: {}", missing.join(", "));
            span.in_scope(|| tracing::warn!("ready without everything: {status}"));
            crate::service_manager::ready_with_status(&status);
            break false;
        }
        tokio::select! {
            () = &mut shutdown => break true,
            () = tokio::time::sleep(READY_POLL) => {}
        }
    };
    if !stopped_before_ready {
        let watchdog = crate::service_manager::watchdog_period().map(|period| {
            let heartbeat = agent.heartbeat.clone();
            tokio::spawn(feed_watchdog(heartbeat, period).instrument(span.clone()))
        });
        shutdown.await;
        if let Some(watchdog) = watchdog {
            watchdog.abort();
        }
    }
    crate::service_manager::stopping();
    agent.shutdown().instrument(span).await;
    Ok(())
}

/// How long `run` waits for the ports and the journal before telling systemd it is
/// ready anyway (well below systemd's default start timeout of 90 s).
const READY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// How often `run` looks whether they are up.
const READY_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// Feeds the systemd watchdog every `period` (half its timeout) while the till core's
/// heartbeat is younger than the timeout.
async fn feed_watchdog(heartbeat: Heartbeat, period: std::time::Duration) {
    let timeout = period * 2;
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let age = heartbeat.age();
        if age < timeout {
            crate::service_manager::watchdog();
        } else {
            tracing::error!(
                "the till core has not gone round its loop for {} ms: not feeding the watchdog",
                age.as_millis()
            );
        }
    }
}

/// `f` to run on another thread inside the span current here (a thread does not
/// inherit its spawner's span).
pub fn in_current_span<T>(f: impl FnOnce() -> T) -> impl FnOnce() -> T {
    let span = tracing::Span::current();
    move || span.in_scope(f)
}

/// The till core's thread: receives inputs, hands each to the pure [`TillCore`] with
/// `now()` and the journal locked (briefly: the uplink shares it), then performs the
/// effects. It only moves values.
struct CoreLoop {
    core: TillCore,
    journal: Arc<Mutex<Journal>>,
    seq_tx: watch::Sender<u64>,
    /// Cards erased on the hub (already cleared from the journal by the uplink).
    erased_rx: Receiver<ErasedCards>,
    /// Answers to the proxy's held cuts; `None` when coupons are disabled (no gate) or
    /// the proxy is gone.
    decisions: Option<Sender<CutDecision>>,
    /// Requests to the hub; `None` without an uplink (or once it is gone).
    requests: Option<tokio::sync::mpsc::UnboundedSender<HubRequest>>,
    /// Notices for the cashier (a refused code), printed by the proxy between receipts.
    notices: Option<Sender<Vec<u8>>>,
    heartbeat: Heartbeat,
}

impl CoreLoop {
    fn run(mut self, inputs: Receiver<TillInput>) {
        loop {
            self.heartbeat.beat();
            let input = match inputs.recv_timeout(ERASURE_CHECK) {
                Ok(input) => Some(input),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            // Erased cards first: a pending scan of one must not reach a receipt.
            while let Ok(erased) = self.erased_rx.try_recv() {
                self.step(TillInput::Erased(erased));
            }
            if let Some(input) = input {
                self.step(input);
            }
        }
        self.core.finish();
    }

    /// One input through the core, then the rest of a decided cut's work and what an
    /// undelivered request feeds back, each with its effects performed.
    fn step(&mut self, input: TillInput) {
        let mut inputs = VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            let is_print = matches!(input, TillInput::Print(_));
            let started = std::time::Instant::now();
            let effects = {
                let at = now();
                let mut journal = self.journal.lock().unwrap_or_else(|p| p.into_inner());
                self.core.handle(input, at, &mut *journal)
            };
            self.perform(effects, is_print.then_some(started), &mut inputs);
            while self.core.wants_poll() {
                let started = std::time::Instant::now();
                let effects = {
                    let at = now();
                    let mut journal = self.journal.lock().unwrap_or_else(|p| p.into_inner());
                    self.core.poll(at, &mut *journal)
                };
                self.perform(effects, Some(started), &mut inputs);
            }
        }
    }

    /// Performs the core's effects in order; an undelivered request goes to `feedback`.
    /// `decision_started`: when the `handle` that decided a receipt's cut began (for the
    /// coupon decision's latency).
    fn perform(
        &mut self,
        effects: Vec<TillEffect>,
        decision_started: Option<std::time::Instant>,
        feedback: &mut VecDeque<TillInput>,
    ) {
        // The core stops right after a receipt's decision, with its journaling to do.
        let receipt_decided = self.core.wants_poll();
        let last_decide = effects
            .iter()
            .rposition(|e| matches!(e, TillEffect::Decide { .. }));
        for (i, effect) in effects.into_iter().enumerate() {
            match effect {
                TillEffect::Decide { offset, block } => {
                    if let Some(decisions) = &self.decisions {
                        if decisions.send((offset, block)).is_err() {
                            tracing::error!("the proxy is gone: coupons are no longer printed");
                            self.decisions = None;
                        }
                    }
                    if let Some(started) = decision_started {
                        if receipt_decided && last_decide == Some(i) {
                            crate::metrics::record_coupon_decision(started.elapsed());
                        }
                    }
                }
                TillEffect::Notice(notice) => {
                    if let Some(notices) = &self.notices {
                        if notices.send(notice).is_err() {
                            tracing::error!(
                                "the proxy is gone: refused coupons are no longer printed"
                            );
                            self.notices = None;
                        }
                    }
                }
                TillEffect::AskHub(request) => {
                    let undelivered = match &self.requests {
                        Some(requests) => requests.send(request).err().map(|e| e.0),
                        None => Some(request),
                    };
                    if let Some(request) = undelivered {
                        self.requests = None;
                        feedback.push_back(TillInput::Undelivered(request));
                    }
                }
                TillEffect::Journaled(seq) => {
                    self.seq_tx.send_replace(seq);
                }
            }
        }
    }
}

/// Reads the scanner port forever (reopening it when it goes away) and passes loyalty
/// cards and coupon codes to the till core. Noise is logged; other scans are counted and
/// ignored. With `[scanner] forward_to`, every byte read is also copied to that port by
/// a second thread, so a slow or absent POS input never holds up reading.
fn read_scanner(
    config: ScannerConfig,
    prefixes: CardPrefixes,
    core: Sender<TillInput>,
    running: &AtomicBool,
    opened: &AtomicBool,
) {
    std::thread::scope(|scope| {
        let forward = config.forward_to.clone().and_then(|spec| {
            let (tx, rx) = mpsc::sync_channel(FORWARD_QUEUE_CHUNKS);
            let started = std::thread::Builder::new()
                .name("scanner-forward".into())
                .spawn_scoped(scope, move || forward_scanner(spec, rx, running));
            match started {
                Ok(_) => Some(tx),
                Err(e) => {
                    tracing::error!("scanner: cannot start forwarding: {e}");
                    None
                }
            }
        });
        read_scanner_port(&config, &prefixes, &core, forward.as_ref(), running, opened);
        // Dropping the sender ends the forward thread once its queue is written.
    });
}

/// Chunks (of up to 512 bytes) queued for `forward_to` while it is slow or absent;
/// beyond that, bytes are dropped with a log line rather than memory growing.
const FORWARD_QUEUE_CHUNKS: usize = 64;
/// Longest sleep while the scanner is away, so a shutdown is seen promptly.
const SCANNER_IDLE_SLICE: std::time::Duration = std::time::Duration::from_millis(100);

fn read_scanner_port(
    config: &ScannerConfig,
    prefixes: &CardPrefixes,
    core: &Sender<TillInput>,
    forward: Option<&mpsc::SyncSender<Vec<u8>>>,
    running: &AtomicBool,
    opened: &AtomicBool,
) {
    let keep_going = || running.load(Ordering::SeqCst);
    let mut reconnect = Reconnect::new();
    let mut counts = ScanCounts::default();
    let mut forward_dropped = 0usize;
    // Returns false when the till core is gone.
    let handle = |framer: &mut ScanFramer, counts: &mut ScanCounts| -> bool {
        while let Some(frame) = framer.poll() {
            let scan = frame.and_then(|code| classify(&code, prefixes));
            counts.record(&scan);
            let input = match scan {
                Ok(Scan::Card(card)) => TillInput::Card(card, now()),
                Ok(Scan::Coupon(code)) => TillInput::Coupon(code, now()),
                Err(ScanError::Empty) => continue,
                Err(e) if e.is_noise() => {
                    tracing::warn!("scanner: {e} ({} noise frames so far)", counts.noise);
                    continue;
                }
                // Said at info (the error shows the last four digits only): a wrong
                // `[cards] prefixes` shows during a pilot, and `status` counts them.
                Err(e) => {
                    tracing::info!(
                        "scanner: neither a loyalty card nor a coupon ({} so far): {e}",
                        counts.ignored
                    );
                    TillInput::Unrecognised
                }
            };
            if core.send(input).is_err() {
                return false;
            }
        }
        true
    };
    while keep_going() {
        let tried_at = std::time::Instant::now();
        if !reconnect.is_due(tried_at) {
            std::thread::sleep(reconnect.wait(tried_at).min(SCANNER_IDLE_SLICE));
            continue;
        }
        let mut port = match config.port.open() {
            Ok(port) => port,
            Err(e) => {
                match reconnect.open_failed(tried_at) {
                    Some(notice) => log_notice("scanner", &config.port.to_string(), &notice, &e),
                    None => tracing::debug!("scanner: {e}"),
                }
                continue;
            }
        };
        match reconnect.opened(tried_at) {
            Some(notice) => log_notice("scanner", port.name(), &notice, &""),
            None => tracing::info!("scanner: reading {}", port.name()),
        }
        opened.store(true, Ordering::SeqCst);
        let mut framer = ScanFramer::new(config.suffix);
        let mut buf = [0u8; 512];
        let gone: Result<(), PortError> = (|| {
            while keep_going() {
                let Some(n) = port.read_chunk(&mut buf)? else {
                    continue;
                };
                if let Some(forward) = forward {
                    match forward.try_send(buf[..n].to_vec()) {
                        Ok(()) if forward_dropped > 0 => {
                            tracing::warn!(
                                "scanner: forwarding again; {forward_dropped} bytes were dropped"
                            );
                            forward_dropped = 0;
                        }
                        Ok(()) => {}
                        Err(mpsc::TrySendError::Full(chunk)) => {
                            if forward_dropped == 0 {
                                tracing::warn!(
                                    "scanner: forward port not keeping up; dropping bytes for it"
                                );
                            }
                            forward_dropped = forward_dropped.saturating_add(chunk.len());
                        }
                        // The forward thread ended (shutdown): nothing to forward to.
                        Err(mpsc::TrySendError::Disconnected(_)) => {}
                    }
                }
                framer.feed(&buf[..n]);
                if !handle(&mut framer, &mut counts) {
                    return Ok(());
                }
            }
            Ok(())
        })();
        if let Err(e) = gone {
            // A scan cut by the unplug must not glue onto the first scan after it.
            framer.finish();
            handle(&mut framer, &mut counts);
            crate::metrics::record_device_lost("scanner");
            if let Some(notice) = reconnect.lost(std::time::Instant::now()) {
                log_notice("scanner", port.name(), &notice, &e);
            }
        }
    }
}

/// Copies scanner bytes to `[scanner] forward_to` unchanged, reopening it with backoff
/// when it fails; bytes queued meanwhile are delivered once it is back.
fn forward_scanner(spec: PortSpec, chunks: Receiver<Vec<u8>>, running: &AtomicBool) {
    let keep_going = || running.load(Ordering::SeqCst);
    let name = spec.to_string();
    let mut reconnect = Reconnect::new();
    // What a failed write left unwritten, sent first on the reopened port.
    let mut unwritten: Option<Vec<u8>> = None;
    while keep_going() {
        let tried_at = std::time::Instant::now();
        if !reconnect.is_due(tried_at) {
            std::thread::sleep(reconnect.wait(tried_at).min(SCANNER_IDLE_SLICE));
            continue;
        }
        let mut port = match spec.open() {
            Ok(port) => port,
            Err(e) => {
                match reconnect.open_failed(tried_at) {
                    Some(notice) => log_notice("scanner forward_to", &name, &notice, &e),
                    None => tracing::debug!("scanner forward_to: {e}"),
                }
                continue;
            }
        };
        match reconnect.opened(tried_at) {
            Some(notice) => log_notice("scanner forward_to", port.name(), &notice, &""),
            None => tracing::info!("scanner: forwarding to {}", port.name()),
        }
        loop {
            let chunk = match unwritten.take() {
                Some(chunk) => chunk,
                None => match chunks.recv_timeout(crate::ports::READ_TIMEOUT) {
                    Ok(chunk) => chunk,
                    Err(RecvTimeoutError::Timeout) if keep_going() => continue,
                    Err(_) => return,
                },
            };
            let written = crate::ports::write_fully(&mut *port, &chunk, &keep_going);
            if let Err((written, e)) = written {
                unwritten = Some(chunk[written..].to_vec());
                if !keep_going() {
                    return;
                }
                crate::metrics::record_device_lost("scanner_forward");
                if let Some(notice) = reconnect.lost(std::time::Instant::now()) {
                    log_notice("scanner forward_to", port.name(), &notice, &e);
                }
                break;
            }
        }
    }
}
