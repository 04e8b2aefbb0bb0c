//! Runs a hub: store writer thread, QUIC listener and HTTP API, started from a
//! [`HubConfig`] and stopped cleanly (the last commit finishes before `shutdown` returns).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{DatabaseUrl, HubConfig};
use crate::digests::{DigestRefresh, RefreshSummary};
use crate::store::{spawn_writer, SqliteStore, Store, WriterThread};
use crate::traits::{RecomputeSummary, TraitsSchedule};
use crate::{api, listener, segments};

const HTTP_DRAIN: Duration = Duration::from_secs(5);

pub struct RunningHub {
    quic_addr: SocketAddr,
    http_addr: SocketAddr,
    stop: watch::Sender<bool>,
    quic_task: Option<JoinHandle<()>>,
    erasure_task: Option<JoinHandle<()>>,
    digest_task: Option<JoinHandle<()>>,
    revocation_task: Option<JoinHandle<()>>,
    digests: DigestRefresh,
    http_task: Option<JoinHandle<std::io::Result<()>>>,
    writer_thread: WriterThread,
    traits: Arc<Mutex<Option<TraitsSchedule>>>,
}

/// Opens the store, binds both listeners and starts serving.
pub async fn start(config: HubConfig) -> anyhow::Result<RunningHub> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data_dir {}", config.data_dir.display()))?;
    let DatabaseUrl::Sqlite(db_path) = &config.database;
    // A bad segment definition is a config error at start, not a log line an hour later.
    segments::compile(&config.segments)
        .with_context(|| format!("{}: [[segment]]", config.origin.display()))?;
    let mut write_store = SqliteStore::open(db_path)
        .with_context(|| format!("cannot open the store {}", db_path.display()))?;
    let mut read_store = SqliteStore::open(db_path)
        .with_context(|| format!("cannot open the store {}", db_path.display()))?;
    write_store.set_identity_config(config.identity.clone());
    write_store.set_fraud_config(config.fraud.clone());
    let campaigns = match &config.campaigns {
        Some(path) => Some(
            crate::campaigns::load(path, write_store.connection())
                .with_context(|| format!("{}: campaigns", config.origin.display()))?,
        ),
        None => None,
    };
    if let Some(set) = &campaigns {
        tracing::info!(
            "campaigns: {} loaded, version {}",
            set.campaigns.len(),
            set.version
        );
    }
    read_store.set_identity_config(config.identity.clone());
    // Created on first start even without campaigns: codes already issued are
    // verified with it later.
    let master = crate::campaigns::MasterKey::load_or_create(&config.data_dir)
        .with_context(|| format!("{}: data_dir", config.origin.display()))?;
    // Coupon events are checked (genuine or forged) as they are merged.
    write_store.set_coupon_master(master.as_bytes());
    let campaign_feed = match campaigns.clone() {
        Some(set) => Some(
            listener::CampaignFeed::new(set, master.clone(), db_path)
                .with_context(|| format!("cannot open the store {}", db_path.display()))?,
        ),
        None => None,
    };

    let quic_config = listener::server_config(&config.ca, &config.cert, &config.key)
        .with_context(|| format!("{}: TLS files", config.origin.display()))?;
    let endpoint = listener::bind(quic_config, config.listen, &config.data_dir)
        .with_context(|| format!("cannot listen for QUIC on udp {}", config.listen))?;
    let quic_addr = endpoint.local_addr().context("QUIC endpoint address")?;
    let http_listener = tokio::net::TcpListener::bind(config.http)
        .await
        .with_context(|| format!("cannot listen for HTTP on tcp {}", config.http))?;
    let http_addr = http_listener.local_addr().context("HTTP address")?;

    // The revocation list lives in the PKI folder, beside the CA certificate. Read before
    // any task starts: a hub that refuses to start leaves nothing running behind.
    let pki_dir = config.ca.parent().unwrap_or(std::path::Path::new("."));
    let gate = listener::Gate::open(&crate::pki::revocation_list_path(pki_dir), db_path)
        .with_context(|| format!("{}: ca: revocation list", config.origin.display()))?;
    let (writer, writer_thread) =
        spawn_writer(Box::new(write_store)).context("cannot start the store writer")?;
    let (stop, stop_rx) = watch::channel(false);

    // Its own read connection: polls the erasure log for the downlink to every agent.
    let (erasures, erasure_task) =
        listener::ErasureFeed::start(db_path, listener::ERASURE_POLL, stop_rx.clone())
            .with_context(|| format!("cannot read the erasure log in {}", db_path.display()))?;
    // Its own write connection: refreshes the digest feed, at start and on its timer.
    let (digests, digest_task) =
        DigestRefresh::start(db_path, master.clone(), config.digests, stop_rx.clone())
            .with_context(|| format!("cannot open the store {}", db_path.display()))?;
    let digest_feed = listener::DigestFeed::new(db_path, master, &digests)
        .with_context(|| format!("cannot open the store {}", db_path.display()))?;
    let tills = listener::TillGuards::new(config.till_requests, config.digests.months);
    let downlinks = listener::Downlinks {
        erasures,
        campaigns: campaign_feed,
        digests: digest_feed,
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
        gate,
        stop_rx.clone(),
    ));
    let reader: api::Reader = Arc::new(Mutex::new(Box::new(read_store) as Box<dyn Store>));
    let mut api_options = api::ApiOptions::from_config(&config);
    api_options.campaigns = campaigns;
    api_options.tills = Some(tills);
    let app = api::router(reader, api_options);
    let mut http_stop = stop_rx;
    let http_task = tokio::spawn(async move {
        axum::serve(http_listener, app)
            .with_graceful_shutdown(async move {
                let _ = http_stop.wait_for(|stopped| *stopped).await;
            })
            .await
    });
    // Every finished traits run (start, schedule, asked) refreshes the digests at once:
    // they carry the segments.
    let refresh_on_traits = digests.clone();
    let traits = TraitsSchedule::start(
        db_path,
        config.clone(),
        Box::new(move || {
            refresh_on_traits.trigger();
        }),
    )
    .context("cannot start the traits schedule")?;
    tracing::info!(
        "hub listening: QUIC udp {quic_addr}, HTTP tcp {http_addr}, store {}",
        db_path.display()
    );
    Ok(RunningHub {
        quic_addr,
        http_addr,
        stop,
        quic_task: Some(quic_task),
        erasure_task: Some(erasure_task),
        digest_task: Some(digest_task),
        revocation_task: Some(revocation_task),
        digests,
        http_task: Some(http_task),
        writer_thread,
        traits: Arc::new(Mutex::new(Some(traits))),
    })
}

impl RunningHub {
    pub fn quic_addr(&self) -> SocketAddr {
        self.quic_addr
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
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
        let (Some(quic), Some(http)) = (self.quic_task.as_mut(), self.http_task.as_mut()) else {
            return self.shutdown().await;
        };
        // Which task ended by itself (and must not be awaited again).
        let ended = tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("interrupted: shutting down");
                None
            }
            _ = terminated => {
                tracing::info!("terminated: shutting down");
                None
            }
            result = quic => {
                tracing::error!("QUIC listener stopped unexpectedly: {result:?}");
                Some(true)
            }
            result = http => {
                tracing::error!("HTTP server stopped unexpectedly: {result:?}");
                Some(false)
            }
        };
        match ended {
            Some(true) => self.quic_task = None,
            Some(false) => self.http_task = None,
            None => {}
        }
        self.shutdown().await
    }
}
