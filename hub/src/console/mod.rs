//! The marketer's console (HTML) under `/console/` (paths binding, DESIGN.md): the
//! overview, customer search and the 360° page, campaigns with their lift, segments
//! and tills. Server-rendered with maud (every value escaped), no script, one embedded
//! stylesheet, charts as inline SVG: nothing to download, nothing from the internet.
//!
//! Every page reads through the same store functions as the API behind it (the
//! profile view, the campaign rows, the segment listings, the agents), on the API's
//! pooled connections, so no page is slower than its API call. Export, erase and the
//! mailing list call the API's own handlers.
//!
//! Role files: `session` (sign-in, signed session cookies, CSRF), `i18n` (English and
//! Dutch labels), `page` (the page shell, formats, security headers), `charts` (SVG),
//! and one file per page: `overview`, `customers`, `campaigns`, `segments`, `tills`.

mod campaigns;
mod charts;
mod customers;
pub mod i18n;
mod overview;
mod page;
mod segments;
pub mod session;
mod tills;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{middleware, Router};
use serde::Deserialize;

use crate::api::{ApiError, ApiState};
use crate::listener::Gate;
use i18n::{Lang, Msg, LANG_COOKIE};
use session::{Keys, Session};

/// What the console needs besides the API's state.
#[derive(Clone)]
pub struct ConsoleOptions {
    /// How long a sign-in lasts (`[console] session_hours`).
    pub session_ttl: Duration,
    /// A till not connected and not heard from for this long is silent
    /// (`[console] silent_after_seconds`).
    pub silent_after: Duration,
    /// The listener's admission gate: which tills are connected now, and the revocation
    /// list (`None` in tests without a listener).
    pub gate: Option<Gate>,
    /// The `[[segment]]` tables as configured: the segments page shows their rules.
    pub segment_rules: Vec<toml::Table>,
}

impl std::fmt::Debug for ConsoleOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleOptions")
            .field("session_ttl", &self.session_ttl)
            .field("silent_after", &self.silent_after)
            .field("gate", &self.gate.as_ref().map(|_| "set"))
            .field("segment_rules", &self.segment_rules.len())
            .finish()
    }
}

impl ConsoleOptions {
    /// `[console]` and the segments of `config`; the gate is the server's to give.
    pub fn from_config(config: &crate::config::HubConfig) -> Self {
        Self {
            session_ttl: Duration::from_secs(config.console.session_hours * 3600),
            silent_after: Duration::from_secs(config.console.silent_after_seconds),
            gate: None,
            segment_rules: config.segments.clone(),
        }
    }

    /// The console as pages of the API (`ApiOptions::pages`), signing in with `token`.
    pub fn into_pages(self, token: Option<String>) -> crate::api::Pages {
        crate::api::Pages(Some(std::sync::Arc::new(move |api: ApiState| {
            router(api, token.as_deref(), self.clone())
        })))
    }
}

impl Default for ConsoleOptions {
    fn default() -> Self {
        let config = crate::config::ConsoleConfig::default();
        Self {
            session_ttl: Duration::from_secs(config.session_hours * 3600),
            silent_after: Duration::from_secs(config.silent_after_seconds),
            gate: None,
            segment_rules: Vec::new(),
        }
    }
}

/// The console's state: the API's, the session keys and the options.
#[derive(Clone)]
pub struct Console {
    api: ApiState,
    keys: Arc<Keys>,
    options: Arc<ConsoleOptions>,
}

/// The console's routes (all under `/console`), to be merged into the API's router.
pub(crate) fn router<S>(api: ApiState, token: Option<&str>, options: ConsoleOptions) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let console = Console {
        api,
        keys: Arc::new(Keys::new(token)),
        options: Arc::new(options),
    };
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(overview::page))
        .route(
            session::SIGN_IN_PATH,
            get(page::sign_in_page).post(page::sign_in),
        )
        .route("/console/sign-out", post(page::sign_out))
        .route("/console/lang/{code}", get(switch_language))
        .route("/console/assets/console.css", get(page::stylesheet))
        .route("/console/customers", get(customers::search))
        .route("/console/customers/{id}", get(customers::page))
        .route("/console/customers/{id}/consents", post(customers::consent))
        .route("/console/customers/{id}/export", get(customers::export))
        .route("/console/customers/{id}/erase", post(customers::erase))
        .route("/console/campaigns", get(campaigns::list))
        .route("/console/campaigns/{id}", get(campaigns::page))
        .route("/console/segments", get(segments::list))
        .route("/console/segments/{id}", get(segments::page))
        .route(
            "/console/segments/{id}/members.csv",
            get(segments::mailing_list),
        )
        .route("/console/tills", get(tills::page))
        .route("/console/{*rest}", get(not_found).post(not_found))
        .layer(middleware::from_fn_with_state(
            console.clone(),
            session::require_session,
        ))
        // Outermost: every answer, redirects to the sign-in page included.
        .layer(middleware::from_fn(page::security_headers))
        .with_state(console)
}

/// What every page handler knows about the request: language, session and the CSRF
/// token its forms carry.
pub struct Ctx {
    pub lang: Lang,
    pub csrf: String,
    pub token_required: bool,
    /// The path and query of this page, for the language switch.
    pub here: String,
}

impl Ctx {
    pub fn t(&self, msg: Msg) -> &'static str {
        msg.text(self.lang)
    }
}

impl FromRequestParts<Console> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Self, Response> {
        let lang = Lang::of_request(&parts.headers);
        let csrf = parts
            .extensions
            .get::<Session>()
            .map(|s| console.keys.csrf_token(s))
            .unwrap_or_default();
        let here = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        Ok(Ctx {
            lang,
            csrf,
            token_required: console.keys.token_required(),
            here,
        })
    }
}

/// A page's failure: the API's error, shown as a page in the visitor's language.
pub struct PageError {
    error: ApiError,
    lang: Lang,
}

impl PageError {
    pub fn new(ctx: &Ctx, error: ApiError) -> Self {
        PageError {
            error,
            lang: ctx.lang,
        }
    }

    pub fn not_found(ctx: &Ctx, what: String) -> Self {
        Self::new(ctx, ApiError::not_found(what))
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        if self.error.status() == StatusCode::INTERNAL_SERVER_ERROR {
            // The guard logs it with the request id and answers for it.
            return self.error.into_response();
        }
        page::error_page(self.lang, self.error.status(), self.error.message())
    }
}

async fn not_found(ctx: Ctx) -> Response {
    page::error_page(ctx.lang, StatusCode::NOT_FOUND, ctx.t(Msg::NotFound))
}

#[derive(Deserialize)]
struct Back {
    back: Option<String>,
}

/// `GET /console/lang/{code}?back=…`: keeps the language in a cookie and goes back.
async fn switch_language(Path(code): Path<String>, Query(back): Query<Back>) -> Response {
    let Some(lang) = Lang::from_code(&code) else {
        return (StatusCode::NOT_FOUND, "unknown language").into_response();
    };
    let target = session::safe_next(back.back.as_deref());
    let mut response = Redirect::to(&target).into_response();
    let cookie = format!(
        "{LANG_COOKIE}={}; Path=/console; Max-Age=31536000; SameSite=Strict",
        lang.code()
    );
    if let Ok(value) = header::HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// Runs a store read on the API's pooled connections (as the API does).
async fn read<T, F>(console: &Console, ctx: &Ctx, f: F) -> Result<T, PageError>
where
    T: Send + 'static,
    F: FnOnce(&dyn crate::store::sql::Sql) -> Result<T, crate::store::StoreError> + Send + 'static,
{
    console
        .api
        .profiles
        .run(f)
        .await
        .map_err(|e| PageError::new(ctx, e))
}
