//! Bearer-token check: when `api_token` is set, every request but health needs
//! `Authorization: Bearer <token>`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// The one path that answers without a token (load balancers and monitors probe it).
pub(super) const HEALTH_PATH: &str = "/api/v1/health";

/// The configured token, if any.
#[derive(Clone)]
pub(super) struct Token(Option<Arc<[u8]>>);

impl Token {
    pub(super) fn new(token: Option<String>) -> Self {
        Self(token.map(|t| Arc::from(t.into_bytes())))
    }
}

pub(super) async fn require_token(
    State(token): State<Token>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = token.0.as_deref() else {
        return next.run(request).await;
    };
    if request.uri().path() == HEALTH_PATH || is_console(request.uri().path()) {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|value| bearer(value.as_bytes()));
    match presented {
        None => unauthorized("missing Authorization: Bearer token"),
        Some(Some(given)) if constant_time_eq(given, expected) => next.run(request).await,
        Some(_) => unauthorized("invalid bearer token"),
    }
}

/// The console's paths: it asks for the same token on its sign-in page and keeps a
/// session (`console::session`).
pub(crate) fn is_console(path: &str) -> bool {
    path == "/console" || path.starts_with("/console/")
}

/// The token of an `Authorization: Bearer <token>` value (scheme case-insensitive).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    Some(rest.trim_ascii())
}

/// Compares without an early exit, so the time taken does not reveal how many leading
/// bytes of a guess were right (the length is not secret).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unauthorized(message: &str) -> Response {
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_values() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bear"), None);
    }

    #[test]
    fn compares_whole_tokens() {
        assert!(constant_time_eq(b"secret-token", b"secret-token"));
        assert!(!constant_time_eq(b"secret-tokeX", b"secret-token"));
        assert!(!constant_time_eq(b"secret", b"secret-token"));
        assert!(!constant_time_eq(b"", b"secret-token"));
    }
}
