//! What every request passes through: a request id (the `x-request-id` header of every
//! answer, and what finds a failure in the log), the host check, the timeout, and the
//! rewriting of internal errors (logged in full with the id; the client gets the id).
//!
//! The host check: an API on loopback without a token trusts whoever can reach it, and a
//! web page can reach it through DNS rebinding (its own name re-pointed at 127.0.0.1), so
//! it answers only requests naming a loopback host: `localhost`, `127.0.0.1` or `[::1]`,
//! with any port. A rebinding page's requests name the page's host.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::ApiError;

/// The detail of an internal error, carried from the handler to [`guard`] (never sent).
#[derive(Debug, Clone)]
pub(super) struct Internal(pub String);

#[derive(Clone)]
pub(super) struct Guard {
    loopback_hosts_only: bool,
    timeout: Duration,
    /// Request ids: this hub's start (seconds, hex) and a counter.
    started: u32,
    next: Arc<AtomicU64>,
}

impl Guard {
    pub(super) fn new(loopback_hosts_only: bool, timeout: Duration) -> Self {
        let started = chrono::Utc::now().timestamp() as u32;
        Self {
            loopback_hosts_only,
            timeout,
            started,
            next: Arc::new(AtomicU64::new(1)),
        }
    }

    fn request_id(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{:08x}-{n:06}", self.started)
    }
}

pub(super) async fn guard(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let id = guard.request_id();
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let console = super::auth::is_console(request.uri().path());
    // The route, not the path: a path can carry a card number, which logs never do.
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("(no route)", |p| p.as_str())
        .to_string();
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    let mut response = if guard.loopback_hosts_only && !host.as_deref().is_some_and(is_loopback) {
        let shown: String = host.unwrap_or_default().chars().take(64).collect();
        tracing::warn!(
            "request {id}: {method} {path} for host {:?} refused: this API (loopback, no \
             api_token) answers only localhost, 127.0.0.1 and [::1]",
            shown.escape_debug().to_string()
        );
        ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "this API answers only requests for localhost, 127.0.0.1 or [::1] (set api_token \
             to serve other host names)",
        )
        .into_response()
    } else {
        match tokio::time::timeout(guard.timeout, next.run(request)).await {
            Ok(response) => response,
            Err(_) => {
                tracing::error!(
                    "request {id}: {method} {path} did not finish within {:?}",
                    guard.timeout
                );
                with_id(
                    console,
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "the request did not finish within {} s (request id {id}); a change \
                         it asked for may still be made",
                        guard.timeout.as_secs()
                    ),
                    &id,
                )
            }
        }
    };
    if let Some(Internal(detail)) = response.extensions_mut().remove::<Internal>() {
        tracing::error!("request {id}: {method} {path}: {detail}");
        response = with_id(
            console,
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error (request id {id}; the hub's log has the details)"),
            &id,
        );
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    crate::metrics::record_http(
        &path,
        method.as_str(),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// The failure as JSON, or as a plain page for the console's browser.
fn with_id(console: bool, status: StatusCode, message: String, id: &str) -> Response {
    if console {
        return (status, message).into_response();
    }
    (status, Json(json!({ "error": message, "request_id": id }))).into_response()
}

/// Whether a `Host` value names a loopback host (any port).
fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((inner, port)) if port.is_empty() || is_port(port) => inner,
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return false,
            None => host,
        }
    };
    name.eq_ignore_ascii_case("localhost") || name == "127.0.0.1" || name == "::1"
}

fn is_port(text: &str) -> bool {
    text.strip_prefix(':')
        .unwrap_or(text)
        .parse::<u16>()
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::is_loopback;

    #[test]
    fn loopback_names_with_any_port() {
        for host in [
            "localhost",
            "LocalHost:80",
            "127.0.0.1",
            "127.0.0.1:8080",
            "[::1]",
            "[::1]:8080",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "evil.example",
            "localhost.evil.example",
            "localhost:x",
            "127.0.0.2",
            "[::2]",
            "[::1]x",
            "::1",
            "",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }
}
