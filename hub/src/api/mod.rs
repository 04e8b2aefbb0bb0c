//! The HTTP API (JSON). Paths and field names are binding (DESIGN.md). Reads go
//! through their own store connections, never through the writer: profile reads,
//! search, export, erase and consents take a pooled connection of the hub's
//! [`Database`] and call the store's functions (`store::profiles`, `store::privacy`).
//!
//! Role files: `auth` (bearer token), `profiles` (profile reads and search),
//! `privacy` (export, erase, consents), `segments` (segment sizes, mailing CSV,
//! blocked identifiers), `coupons` (campaign list with counts, KPIs, scans per store),
//! `suspicious` (cards the fraud rules flagged, and clearing them).

mod auth;
mod coupons;
mod guard;
pub(crate) mod privacy;
mod profiles;
pub(crate) mod segments;
mod suspicious;

pub(crate) use auth::constant_time_eq;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{middleware, Json, Router};
use serde_json::json;

use crate::config::HubConfig;
use crate::store::erasures::Suppression;
use crate::store::sql::{Sql, SqlExt as _};
use crate::store::{Database, StoreError};

pub use segments::SegmentDef;

/// How many store connections the API reads through at once.
pub const READ_CONNECTIONS: usize = 4;

/// The database every endpoint reads (and the few API writes go) through, shared by all
/// requests: a
/// pooled connection per request, at most [`READ_CONNECTIONS`] at once (WAL lets them
/// read beside the writer), so one slow request does not hold up the others. The few
/// API writes (erase, consents) also go through it: they must not queue behind agent
/// ingest, and the database serialises them with the writer thread's commits.
#[derive(Clone)]
pub struct ProfileDatabase {
    database: Option<Database>,
    permits: Arc<tokio::sync::Semaphore>,
    /// `[identity] default_country_code`: how a searched phone number is normalised.
    pub(crate) default_country_code: u16,
    /// Erasing needs the suppression list's key (from the coupon master secret).
    suppression: Option<Suppression>,
    /// `[identity] max_customers_per_identifier`: a cleared suspicious card relinks
    /// under it.
    max_customers_per_identifier: usize,
}

impl ProfileDatabase {
    /// Runs `f` on a pooled connection off the async runtime, waiting for a permit if
    /// [`READ_CONNECTIONS`] requests already hold one. The connection (and its permit)
    /// is given back when `f` ends, even if the request gave up waiting for it (its
    /// timeout).
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Sql) -> Result<T, StoreError> + Send + 'static,
    {
        let database = self
            .database
            .clone()
            .ok_or_else(|| ApiError::internal("the API was started without a database"))?;
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|e| ApiError::internal(format!("database permits closed: {e}")))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = database.get()?;
            f(&*conn)
        })
        .await
        .map_err(|e| ApiError::internal(format!("store task failed: {e}")))?
        .map_err(ApiError::from)
    }
}

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;

/// What the API needs besides the store.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// Bearer token every endpoint except health requires (`hub.toml` `api_token`).
    pub token: Option<String>,
    /// Segment definitions (`[[segment]]` tables; the API uses `id` and `name`).
    pub segments: Vec<toml::Table>,
    /// The hub's database: profile reads, search, export, erase and consents (and the
    /// segment and blocked-identifier listings) work on it.
    pub database: Option<Database>,
    /// `[identity] default_country_code`, for phone number searches.
    pub default_country_code: u16,
    /// `[identity] max_customers_per_identifier`, for a cleared suspicious card.
    pub max_customers_per_identifier: usize,
    /// The suppression list's key (from the coupon master secret): erasing needs it.
    pub suppression: Option<Suppression>,
    /// The campaign set the hub serves, if `campaigns` is configured.
    pub campaigns: Option<till360_shared::campaign::CampaignSet>,
    /// Answer only requests naming a loopback host (set when the API listens on
    /// loopback without a token: DNS rebinding).
    pub loopback_hosts_only: bool,
    /// How long a request may take before it is answered 503 (`[api]
    /// request_timeout_seconds`).
    pub request_timeout: Duration,
    /// The running hub's traits thread (`POST /api/v1/traits/recompute`).
    pub traits: Option<crate::jobs::RecomputeHandle>,
    /// Called after a change to who may have a digest (an erase, a suspicious card
    /// cleared): the server refreshes the tills' digests at once.
    pub digests_changed: DigestsHook,
    /// The listener's per-till request guards, for `probing` in `GET /api/v1/agents`.
    pub tills: Option<crate::listener::TillGuards>,
    /// Pages served beside the API, behind the same guard: the console (`server.rs`
    /// plugs it in; the API does not know it).
    pub pages: Pages,
}

impl Default for ApiOptions {
    fn default() -> Self {
        Self {
            token: None,
            segments: Vec::new(),
            database: None,
            default_country_code: crate::config::IdentityConfig::default().default_country_code,
            max_customers_per_identifier: crate::config::IdentityConfig::default()
                .max_customers_per_identifier,
            suppression: None,
            campaigns: None,
            loopback_hosts_only: false,
            request_timeout: Duration::from_secs(
                crate::config::ApiConfig::default().request_timeout_seconds,
            ),
            traits: None,
            digests_changed: DigestsHook::default(),
            tills: None,
            pages: Pages::default(),
        }
    }
}

/// Routes built on the API's state and served beside it (`None`: none).
#[derive(Clone, Default)]
pub struct Pages(pub(crate) Option<Arc<PagesFn>>);

pub(crate) type PagesFn = dyn Fn(ApiState) -> Router<ApiState> + Send + Sync;

impl std::fmt::Debug for Pages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Pages(set)"
        } else {
            "Pages(none)"
        })
    }
}

/// What a change to the tills' digests sets off beside the store (`None`: nothing).
#[derive(Clone, Default)]
pub struct DigestsHook(pub Option<Arc<dyn Fn() + Send + Sync>>);

impl DigestsHook {
    pub fn call(&self) {
        if let Some(hook) = &self.0 {
            hook();
        }
    }
}

impl std::fmt::Debug for DigestsHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "DigestsHook(set)"
        } else {
            "DigestsHook(none)"
        })
    }
}

impl ApiOptions {
    /// The options `config` sets; the database and the suppression key are the
    /// server's to give.
    pub fn from_config(config: &HubConfig) -> Self {
        Self {
            token: config.api_token.clone(),
            segments: config.segments.clone(),
            database: None,
            default_country_code: config.identity.default_country_code,
            max_customers_per_identifier: config.identity.max_customers_per_identifier,
            suppression: None,
            campaigns: None,
            loopback_hosts_only: config.api_token.is_none(),
            request_timeout: Duration::from_secs(config.api.request_timeout_seconds),
            traits: None,
            digests_changed: DigestsHook::default(),
            tills: None,
            pages: Pages::default(),
        }
    }
}

/// Shared by every handler; handlers that only read the store extract the
/// [`ProfileDatabase`].
#[derive(Clone)]
pub(crate) struct ApiState {
    pub(crate) profiles: ProfileDatabase,
    pub(crate) segments: Arc<Vec<SegmentDef>>,
    database: Option<crate::store::Database>,
    pub(crate) campaigns: Arc<Option<till360_shared::campaign::CampaignSet>>,
    traits: Option<crate::jobs::RecomputeHandle>,
    pub(crate) digests_changed: DigestsHook,
    pub(crate) tills: Option<crate::listener::TillGuards>,
}

impl FromRef<ApiState> for ProfileDatabase {
    fn from_ref(state: &ApiState) -> ProfileDatabase {
        state.profiles.clone()
    }
}

impl FromRef<ApiState> for DigestsHook {
    fn from_ref(state: &ApiState) -> DigestsHook {
        state.digests_changed.clone()
    }
}

pub fn router(options: ApiOptions) -> Router {
    let state = ApiState {
        profiles: ProfileDatabase {
            database: options.database.clone(),
            permits: Arc::new(tokio::sync::Semaphore::new(READ_CONNECTIONS)),
            default_country_code: options.default_country_code,
            suppression: options.suppression,
            max_customers_per_identifier: options.max_customers_per_identifier,
        },
        segments: Arc::new(SegmentDef::from_tables(&options.segments)),
        database: options.database,
        campaigns: Arc::new(options.campaigns),
        traits: options.traits,
        digests_changed: options.digests_changed,
        tills: options.tills,
    };
    let pages = match &options.pages.0 {
        Some(pages) => pages(state.clone()),
        None => Router::new(),
    };
    let token = auth::Token::new(options.token);
    let guard = guard::Guard::new(options.loopback_hosts_only, options.request_timeout);
    Router::new()
        .route(auth::HEALTH_PATH, get(health))
        // The console signs its visitors in itself (session cookie, CSRF): the bearer
        // check below lets `/console` through to it.
        .merge(pages)
        .route("/api/v1/agents", get(agents))
        // Behind the bearer token like the API (Prometheus sends it: `authorization`).
        .route("/metrics", get(metrics))
        .route("/api/v1/profiles", get(profiles::profiles))
        .route("/api/v1/profiles/search", get(profiles::search))
        .route(
            "/api/v1/profiles/by-card/{card}",
            get(profiles::profile_by_card),
        )
        .route(
            "/api/v1/profiles/{id}",
            get(profiles::profile).delete(privacy::erase),
        )
        .route("/api/v1/profiles/{id}/export", get(privacy::export))
        .route("/api/v1/profiles/{id}/consents", put(privacy::consents))
        .route("/api/v1/segments", get(segments::list))
        .route(
            "/api/v1/segments/{id}/members.csv",
            get(segments::members_csv),
        )
        .route("/api/v1/identifiers/blocked", get(segments::blocked))
        .route("/api/v1/traits/recompute", post(segments::recompute))
        .route("/api/v1/identifiers/suspicious", get(suspicious::list))
        .route(
            "/api/v1/identifiers/suspicious/{id}/clear",
            post(suspicious::clear),
        )
        .route("/api/v1/campaigns", get(coupons::campaigns))
        .route("/api/v1/campaigns/{id}/kpis", get(coupons::campaign_kpis))
        .route("/api/v1/coupons/stores", get(coupons::stores))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        // On the whole router (fallback included): nothing answers without the token
        // but health.
        .layer(middleware::from_fn_with_state(token, auth::require_token))
        // Outermost: every answer, the token's refusals included, carries a request id.
        .layer(middleware::from_fn_with_state(guard, guard::guard))
        .with_state(state)
}

/// An error as JSON: `{"error": "..."}` with a status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    pub(crate) fn message(&self) -> &str {
        &self.message
    }
}

impl ApiError {
    /// A failure of the hub, not the request: logged with the request id by the guard,
    /// never shown to the client.
    fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            let mut response = self.status.into_response();
            response
                .extensions_mut()
                .insert(guard::Internal(self.message));
            return response;
        }
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        ApiError::internal(format!("store: {err}"))
    }
}

/// `GET /api/v1/agents`: the store's view of each till, with `probing` (`null`, or
/// `{unknown_cards, unknown_codes, since}` since the hub started) from the listener.
async fn agents(
    axum::extract::State(state): axum::extract::State<ApiState>,
) -> Result<Response, ApiError> {
    let agents = state
        .profiles
        .run(|db| crate::store::agents::agents(db))
        .await?;
    let mut out = Vec::with_capacity(agents.len());
    for agent in agents {
        let probing = state
            .tills
            .as_ref()
            .and_then(|t| t.probing(&agent.store, &agent.till));
        let mut value = serde_json::to_value(&agent)
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        if let Some(fields) = value.as_object_mut() {
            fields.insert("probing".into(), json!(probing));
        }
        out.push(value);
    }
    Ok(Json(out).into_response())
}

/// `GET /metrics`: Prometheus text. The per-till gauges and the digest feed's size are
/// read from the store now; counters and histograms were recorded as things happened.
async fn metrics(
    axum::extract::State(state): axum::extract::State<ApiState>,
) -> Result<Response, ApiError> {
    let handle = crate::metrics::handle();
    if state.database.is_some() {
        let (agents, feed_rows) = state
            .profiles
            .run(|db| {
                let agents = crate::store::agents::agents(db)?;
                let feed_rows = db
                    .query_value::<i64>("SELECT COUNT(*) FROM digest_feed", &[])?
                    .unwrap_or(0);
                Ok((agents, feed_rows))
            })
            .await?;
        let now_ms = chrono::Utc::now().timestamp_millis();
        for agent in &agents {
            let last_seen_age = chrono::DateTime::parse_from_rfc3339(&agent.last_seen)
                .ok()
                .map(|seen| {
                    let age_ms = now_ms.saturating_sub(seen.timestamp_millis()).max(0);
                    Duration::from_millis(u64::try_from(age_ms).unwrap_or(0))
                });
            crate::metrics::record_till(&crate::metrics::TillSample {
                store: &agent.store,
                till: &agent.till,
                last_seen_age,
                chain_broken: matches!(agent.chain, crate::store::ChainStatus::Broken { .. }),
                health: agent
                    .health
                    .as_ref()
                    .map(|health| crate::metrics::TillHealthSample {
                        pending: health.pending,
                        journal_bytes: health.journal_bytes,
                        quota_exceeded: health.quota_exceeded,
                    }),
            });
        }
        crate::metrics::record_digest_feed(u64::try_from(feed_rows).unwrap_or(0));
    }
    let text = handle.render();
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({
        "status": "ok",
        "service": "till360-hub",
        "version": env!("CARGO_PKG_VERSION"),
    }))
}
