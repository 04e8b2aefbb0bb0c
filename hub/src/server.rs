//! Runs a hub: store writer thread, QUIC listener and HTTP API, started from a
//! [`HubConfig`] and stopped cleanly (the last commit finishes before `shutdown` returns).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::HubConfig;
use crate::jobs::DigestRefresh;
use crate::jobs::{RecomputeSummary, TraitsSchedule};
use crate::store::digests::RefreshSummary;
use crate::store::{spawn_writer, Database, DatabaseOptions, SqlStore, WriterThread};
use crate::{api, listener, segments};

const HTTP_DRAIN: Duration = Duration::from_secs(5);

pub struct RunningHub {
    quic_addr: SocketAddr,
    http_addr: SocketAddr,
    stop: watch::Sender<bool>,
    quic_task: Option<JoinHandle<()>>,
    erasure_task: Option<JoinHandle<()>>,
    digest_task: Option<JoinHandle<()>>,
    redeemed_task: Option<JoinHandle<()>>,
    revocation_task: Option<JoinHandle<()>>,
    gate: listener::Gate,
    digests: DigestRefresh,
    http_task: Option<JoinHandle<std::io::Result<()>>>,
    writer_thread: WriterThread,
    traits: Arc<Mutex<Option<TraitsSchedule>>>,
    /// Released when the hub is dropped (after `shutdown`).
    _lock: crate::instance::HubLock,
}

/// Checks what a start reads before anything is created (`till360-hub check`, and the
/// first step of [`start`]): the TLS files (readable, PEM, the key fits the
/// certificate), the revocation list, the segments and the campaigns file. Errors name
/// the config file, the key and the reason.
pub fn check(config: &HubConfig) -> anyhow::Result<()> {
    let origin = config.origin.display();
    let named = |key: &str, path: &std::path::Path, reason: &dyn std::fmt::Display| {
        anyhow::anyhow!("{origin}: {key} = \"{}\": {reason}", path.display())
    };
    let tls_reason = |err: listener::TlsSetupError| match err {
        listener::TlsSetupError::File { reason, .. } => reason,
        other => other.to_string(),
    };
    for (key, path) in [
        ("ca", &config.ca),
        ("cert", &config.cert),
        ("key", &config.key),
    ] {
        std::fs::File::open(path).map_err(|e| named(key, path, &e))?;
    }
    listener::load_certs(&config.ca).map_err(|e| named("ca", &config.ca, &tls_reason(e)))?;
    listener::load_certs(&config.cert).map_err(|e| named("cert", &config.cert, &tls_reason(e)))?;
    listener::load_key(&config.key).map_err(|e| named("key", &config.key, &tls_reason(e)))?;
    // Keys others could read are refused before anything is created or started (the
    // data folder's keys only once they exist).
    for key in [
        config.key.clone(),
        config.data_dir.join(crate::campaigns::MASTER_KEY_FILE),
        config.data_dir.join(crate::listener::RESET_KEY_FILE),
    ] {
        crate::pki::check_key_file(&key).map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
    }
    // Builds the whole TLS setup: a key that does not fit the certificate fails here
    // (named by the file the error is about).
    listener::server_config(&config.ca, &config.cert, &config.key).map_err(|e| {
        let (key, path) = match &e {
            listener::TlsSetupError::File { path, .. } if path == &config.ca => ("ca", &config.ca),
            listener::TlsSetupError::File { path, .. } if path == &config.cert => {
                ("cert", &config.cert)
            }
            _ => ("key", &config.key),
        };
        named(key, path, &tls_reason(e))
    })?;
    let pki_dir = config.ca.parent().unwrap_or(std::path::Path::new("."));
    crate::pki::RevocationList::load(&crate::pki::revocation_list_path(pki_dir))
        .with_context(|| format!("{origin}: ca: revocation list"))?;
    // A bad segment definition is a config error at start, not a log line an hour later.
    segments::compile(&config.segments).with_context(|| format!("{origin}: [[segment]]"))?;
    if let Some(path) = &config.campaigns {
        let text = std::fs::read_to_string(path).map_err(|e| named("campaigns", path, &e))?;
        till360_shared::campaign::CampaignSet::from_toml_str(&text, path)
            .map_err(|e| named("campaigns", path, &e))?;
    }
    Ok(())
}

/// Opens the one [`Database`] a hub or a command works on (schema brought up to date),
/// every connection with `[database] timeout_seconds`. A broken URL or a database that
/// cannot be reached is an error naming the file, the key and the reason.
pub fn open_database(config: &HubConfig) -> anyhow::Result<Database> {
    let options = DatabaseOptions {
        timeout: config.database_timeout,
        ..DatabaseOptions::default()
    };
    Database::open(&config.database, &options).map_err(|err| {
        anyhow::anyhow!(
            "{}: database.url = \"{}\": cannot open the database: {err}",
            config.origin.display(),
            config.database
        )
    })
}

/// This hub's name among the hubs sharing a database, for job leases: its host and
/// `data_dir` (one hub per `data_dir`, see `instance.rs`), the same across its restarts,
/// so a restarted hub takes its own lease back at once.
pub fn lease_holder(config: &HubConfig) -> String {
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown-host".into());
    format!("{host}:{}", config.data_dir.display())
}

/// What a hub opens in its database before it serves: the database (clones of it go to
/// every part of the hub), the writer thread's store, the campaign set, and the secrets
/// every hub of the database shares.
#[allow(clippy::type_complexity)]
fn prepare_store(
    config: &HubConfig,
) -> anyhow::Result<(
    Database,
    SqlStore,
    Option<till360_shared::campaign::CampaignSet>,
    crate::campaigns::MasterKey,
    [u8; 32],
)> {
    let db = open_database(config)?;
    // The writer thread's store: a connection of `db` of its own (a new one if it breaks).
    let mut write_store =
        SqlStore::open(&db).with_context(|| format!("cannot open the store {}", db.name()))?;
    write_store.set_identity_config(config.identity.clone());
    write_store.set_fraud_config(config.fraud.clone());
    let campaigns = match &config.campaigns {
        Some(path) => Some(
            crate::campaigns::load(path, &*db.get()?)
                .with_context(|| format!("{}: campaigns", config.origin.display()))?,
        ),
        None => None,
    };
    if let Some(set) = &campaigns {
        tracing::info!(
            "campaigns: {} loaded, version {}",
            set.campaigns.len(),
            set.content_version()
        );
    }
    // Created on first start even without campaigns: codes already issued are
    // verified with it later.
    // Shared by every hub of the database (`hub_secrets.rs`).
    let master = crate::hub_secrets::coupon_master(&db, &config.data_dir)
        .with_context(|| format!("{}: data_dir", config.origin.display()))?;
    let reset_secret = crate::hub_secrets::reset_secret(&db, &config.data_dir)
        .with_context(|| format!("{}: data_dir", config.origin.display()))?;
    // Coupon events are checked (genuine or forged) as they are merged; the API erases
    // and the store suppresses with the keys derived from it.
    write_store
        .set_coupon_master(master.as_bytes())
        .with_context(|| format!("cannot convert the erasure log in {}", db.name()))?;
    Ok((db, write_store, campaigns, master, reset_secret))
}

/// Opens the store, binds both listeners and starts serving.
pub async fn start(config: HubConfig) -> anyhow::Result<RunningHub> {
    check(&config)?;
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "{}: data_dir = \"{}\": cannot create it",
            config.origin.display(),
            config.data_dir.display()
        )
    })?;
    // Before the store is opened: a second hub must not touch the first one's files.
    let lock = crate::instance::HubLock::acquire(&config.data_dir)?;
    // Once per process: the writer, the listener and `/metrics` record through it.
    crate::metrics::handle();
    // Everything that touches the database before the tasks start runs off the async
    // runtime (the PostgreSQL client blocks on a runtime of its own).
    let prepare_config = config.clone();
    let (db, write_store, campaigns, master, reset_secret) =
        tokio::task::spawn_blocking(move || prepare_store(&prepare_config))
            .await
            .context("store start-up task")??;
    // The downlink's feeds, pollers and jobs share the hub's pool of connections, and so
    // does every API endpoint.
    let database = db.clone();
    let api_database = db.clone();
    let api_suppression = crate::store::erasures::Suppression::from_master(master.as_bytes());
    let campaign_feed = match campaigns.clone() {
        Some(set) => Some(
            listener::CampaignFeed::new(set, master.clone(), database.clone())
                .with_context(|| format!("cannot open the store {}", db.name()))?,
        ),
        None => None,
    };

    let quic_config = listener::server_config(&config.ca, &config.cert, &config.key)
        .with_context(|| format!("{}: TLS files", config.origin.display()))?;
    let endpoint = listener::bind(quic_config, config.listen, &reset_secret)
        .with_context(|| format!("{}: listen", config.origin.display()))?;
    let quic_addr = endpoint.local_addr().context("QUIC endpoint address")?;
    let http_listener = tokio::net::TcpListener::bind(config.http)
        .await
        .with_context(|| {
            format!(
                "{}: http: cannot listen for HTTP on tcp {}",
                config.origin.display(),
                config.http
            )
        })?;
    let http_addr = http_listener.local_addr().context("HTTP address")?;

    // The revocation list lives in the PKI folder, beside the CA certificate. Read before
    // any task starts: a hub that refuses to start leaves nothing running behind.
    let pki_dir = config.ca.parent().unwrap_or(std::path::Path::new("."));
    let list_path = crate::pki::revocation_list_path(pki_dir);
    let gate_db = database.clone();
    let gate = tokio::task::spawn_blocking(move || listener::Gate::open(&list_path, gate_db))
        .await
        .context("revocation list task")?
        .with_context(|| format!("{}: ca: revocation list", config.origin.display()))?;
    let (writer, writer_thread) =
        spawn_writer(Box::new(write_store)).context("cannot start the store writer")?;
    let (stop, stop_rx) = watch::channel(false);

    // Polls the erasure log for the downlink to every agent.
    let (erasures, erasure_task) =
        listener::ErasureFeed::start(database.clone(), listener::ERASURE_POLL, stop_rx.clone())
            .await
            .with_context(|| format!("cannot read the erasure log in {}", db.name()))?;
    // Refreshes the digest feed, at start and on its timer.
    let (digests, digest_task) = DigestRefresh::start(
        database.clone(),
        master.clone(),
        config.digests,
        lease_holder(&config),
        stop_rx.clone(),
    )
    .with_context(|| format!("cannot open the store {}", db.name()))?;
    let digest_feed = listener::DigestFeed::new(database.clone(), master, &digests)
        .with_context(|| format!("cannot open the store {}", db.name()))?;
    let (redeemed, redeemed_task) = listener::RedeemedFeed::start(
        database.clone(),
        listener::REDEEMED_POLL,
        std::time::Duration::from_secs(config.coupons.max_clock_skew_secs),
        stop_rx.clone(),
    )
    .await
    .with_context(|| format!("cannot read the coupon ledger in {}", db.name()))?;
    let tills = listener::TillGuards::new(config.till_requests, config.digests.months);
    let downlinks = listener::Downlinks {
        erasures,
        campaigns: campaign_feed,
        digests: digest_feed,
        redeemed,
        tills: tills.clone(),
    };
    let revocation_task = tokio::spawn(
        gate.clone()
            .watch(listener::REVOCATION_POLL, stop_rx.clone()),
    );
    let quic_task = tokio::spawn(listener::accept_loop(
        endpoint,
        writer,
        downlinks,
        gate.clone(),
        stop_rx.clone(),
    ));
    // Every finished traits run (start, schedule, import, asked) refreshes the digests
    // at once: they carry the segments.
    let refresh_on_traits = digests.clone();
    // The traits job and the segment listings work on the hub's database.
    let database = db.clone();
    let traits = TraitsSchedule::start(
        database.clone(),
        config.clone(),
        lease_holder(&config),
        Box::new(move || {
            refresh_on_traits.trigger();
        }),
    )
    .context("cannot start the traits schedule")?;
    let mut api_options = api::ApiOptions::from_config(&config);
    api_options.database = Some(api_database);
    api_options.suppression = Some(api_suppression);
    api_options.campaigns = campaigns;
    api_options.traits = Some(traits.handle());
    api_options.database = Some(database);
    api_options.tills = Some(tills);
    let mut console = crate::console::ConsoleOptions::from_config(&config);
    console.gate = Some(gate.clone());
    api_options.pages = console.into_pages(config.api_token.clone());
    // An erase or a cleared suspicious card changes the tills' digests: refreshed at once,
    // not at the next timer.
    let refresh_on_change = digests.clone();
    api_options.digests_changed = api::DigestsHook(Some(Arc::new(move || {
        refresh_on_change.trigger();
    })));
    let app = api::router(api_options);
    let mut http_stop = stop_rx;
    let http_task = tokio::spawn(async move {
        axum::serve(http_listener, app)
            .with_graceful_shutdown(async move {
                let _ = http_stop.wait_for(|stopped| *stopped).await;
            })
            .await
    });
    tracing::info!(
        "hub listening: QUIC udp {quic_addr}, HTTP tcp {http_addr}, store {}",
        db.name()
    );
    Ok(RunningHub {
        quic_addr,
        http_addr,
        stop,
        quic_task: Some(quic_task),
        erasure_task: Some(erasure_task),
        digest_task: Some(digest_task),
        redeemed_task: Some(redeemed_task),
        revocation_task: Some(revocation_task),
        gate,
        digests,
        http_task: Some(http_task),
        writer_thread,
        traits: Arc::new(Mutex::new(Some(traits))),
        _lock: lock,
    })
}

impl RunningHub {
    pub fn quic_addr(&self) -> SocketAddr {
        self.quic_addr
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// How many times the running hub found its revocation list changed but unreadable
    /// (it kept the previous list each time).
    pub fn revocation_list_rejections(&self) -> u64 {
        self.gate.rejected_reads()
    }

    /// Recomputes traits and segments now (they also refresh on the schedule) and
    /// returns once the digest refresh that the finished run triggered is done, so the
    /// tills see the new segments.
    pub async fn recompute_traits(&self) -> anyhow::Result<RecomputeSummary> {
        let traits = Arc::clone(&self.traits);
        let summary = tokio::task::spawn_blocking(move || {
            let guard = traits.lock().unwrap_or_else(|p| p.into_inner());
            match guard.as_ref() {
                Some(schedule) => schedule.recompute_now().map_err(anyhow::Error::msg),
                None => Err(anyhow::anyhow!("the hub is stopping")),
            }
        })
        .await??;
        // The run fired its trigger before answering: it is among those fired so far.
        let fired = self.digests.triggers_fired();
        self.digests
            .refreshed_after(fired)
            .await
            .map_err(anyhow::Error::msg)?;
        Ok(summary)
    }

    /// Refreshes the digest feed now (it also refreshes every `[digests]
    /// refresh_seconds`); connected agents get the changes right after.
    pub async fn refresh_digests(&self) -> anyhow::Result<RefreshSummary> {
        self.digests.refresh_now().await.map_err(anyhow::Error::msg)
    }

    /// Stops accepting, closes every connection, lets the writer finish its last
    /// commit and closes the store.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.quic_task.take() {
            if let Err(err) = task.await {
                tracing::error!("QUIC listener task failed: {err}");
            }
        }
        if let Some(task) = self.erasure_task.take() {
            if let Err(err) = task.await {
                tracing::error!("erasure poller failed: {err}");
            }
        }
        if let Some(task) = self.digest_task.take() {
            if let Err(err) = task.await {
                tracing::error!("digest refresh failed: {err}");
            }
        }
        if let Some(task) = self.redeemed_task.take() {
            if let Err(err) = task.await {
                tracing::error!("redeemed-codes poller failed: {err}");
            }
        }
        if let Some(task) = self.revocation_task.take() {
            if let Err(err) = task.await {
                tracing::error!("revocation list watcher failed: {err}");
            }
        }
        if let Some(mut task) = self.http_task.take() {
            match tokio::time::timeout(HTTP_DRAIN, &mut task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(err))) => tracing::error!("HTTP server failed: {err}"),
                Ok(Err(err)) => tracing::error!("HTTP server task failed: {err}"),
                Err(_) => task.abort(),
            }
        }
        let traits = self.traits.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(traits) = traits {
            let _ = tokio::task::spawn_blocking(move || traits.stop()).await;
        }
        // The accept loop and its connection tasks held the last writer handles.
        let thread = self.writer_thread;
        if tokio::task::spawn_blocking(move || thread.join())
            .await
            .is_err()
        {
            tracing::error!("could not wait for the store writer");
        }
        tracing::info!("hub stopped");
    }

    /// Serves until Ctrl-C, SIGTERM or a listener failing, then shuts down cleanly.
    /// Under systemd (`Type=notify`) it reports ready here (the store is open and both
    /// listeners are bound: [`start`] returned), feeds the watchdog from this loop and
    /// reports stopping before the shutdown.
    pub async fn wait(mut self) {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let terminated = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::pin!(terminated);
        let interrupted = tokio::signal::ctrl_c();
        tokio::pin!(interrupted);
        let watchdog_period = crate::service_manager::watchdog_period();
        // Without a watchdog the timer never fires (a period far beyond any uptime).
        let mut watchdog = tokio::time::interval(
            watchdog_period.unwrap_or(std::time::Duration::from_secs(365 * 24 * 3600)),
        );
        watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        crate::service_manager::ready();
        // Which task ended by itself (and must not be awaited again).
        let ended = loop {
            let (Some(quic), Some(http)) = (self.quic_task.as_mut(), self.http_task.as_mut())
            else {
                break None;
            };
            tokio::select! {
                _ = &mut interrupted => {
                    tracing::info!("interrupted: shutting down");
                    break None;
                }
                _ = &mut terminated => {
                    tracing::info!("terminated: shutting down");
                    break None;
                }
                result = quic => {
                    tracing::error!("QUIC listener stopped unexpectedly: {result:?}");
                    break Some(true);
                }
                result = http => {
                    tracing::error!("HTTP server stopped unexpectedly: {result:?}");
                    break Some(false);
                }
                _ = watchdog.tick(), if watchdog_period.is_some() => {
                    // A store writer that died stops the feeding: systemd restarts the hub.
                    if self.writer_thread.is_finished() {
                        tracing::error!("the store writer has stopped: not feeding the watchdog");
                    } else {
                        crate::service_manager::watchdog();
                    }
                }
            }
        };
        crate::service_manager::stopping();
        match ended {
            Some(true) => self.quic_task = None,
            Some(false) => self.http_task = None,
            None => {}
        }
        self.shutdown().await
    }
}
