//! Sign-in, sessions and CSRF. A session is a signed cookie, not a server-side row, so
//! it survives a hub restart and works on every hub of a PostgreSQL cluster behind one
//! address:
//!
//! `v1.<kind>.<expires_ms>.<nonce>.<mac>` with `mac = HMAC-SHA256(key, "v1.<kind>.<expires_ms>.<nonce>")`,
//! the key derived from `api_token` (changing the token signs everyone out). Kind `s` is
//! a session, `p` the short-lived cookie of the sign-in form. The CSRF token of a form is
//! `HMAC(key, "csrf." + cookie)`: a page of another site can neither read it nor forge it,
//! and the cookie is `SameSite=Strict` besides. Without `api_token` the key is random per
//! process and every visitor gets a session at once (the API then answers loopback only).
//!
//! The checks are pure ([`Keys::verify`], [`Keys::csrf_ok`]) and take `now`; the
//! middleware only moves cookies and requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use serde::de::DeserializeOwned;

use super::Console;

pub const SESSION_COOKIE: &str = "till360_session";
pub const SIGN_IN_COOKIE: &str = "till360_signin";
/// How long the sign-in form may be left open.
pub const SIGN_IN_FORM_TTL: Duration = Duration::from_secs(15 * 60);
/// The one page a visitor without a session may see.
pub const SIGN_IN_PATH: &str = "/console/sign-in";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Session,
    SignInForm,
}

impl Kind {
    fn tag(self) -> &'static str {
        match self {
            Kind::Session => "s",
            Kind::SignInForm => "p",
        }
    }
}

/// A verified cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub kind: Kind,
    pub expires_ms: i64,
    /// The cookie's value, which the CSRF token is bound to.
    value: String,
    nonce: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("malformed session cookie")]
    Malformed,
    #[error("the session cookie's signature is wrong")]
    Forged,
    #[error("the session expired")]
    Expired,
    #[error("the session was signed out")]
    SignedOut,
    #[error("a cookie of another kind")]
    WrongKind,
}

/// The signing key, whether a token guards the console, and the sessions signed out
/// on this hub before their expiry.
pub struct Keys {
    key: hmac::Key,
    /// The API token (`None`: the console needs no sign-in).
    token: Option<Arc<[u8]>>,
    rng: SystemRandom,
    signed_out: Mutex<HashMap<String, i64>>,
}

impl Keys {
    pub fn new(token: Option<&str>) -> Keys {
        let rng = SystemRandom::new();
        let key = match token {
            Some(token) => {
                // A key of its own, so a session cookie never reveals a MAC under the
                // token itself.
                let derive = hmac::Key::new(hmac::HMAC_SHA256, token.as_bytes());
                let tag = hmac::sign(&derive, b"till360 console session key v1");
                hmac::Key::new(hmac::HMAC_SHA256, tag.as_ref())
            }
            None => hmac::Key::generate(hmac::HMAC_SHA256, &rng)
                .unwrap_or_else(|_| hmac::Key::new(hmac::HMAC_SHA256, &nonce_bytes(&rng))),
        };
        Keys {
            key,
            token: token.map(|t| Arc::from(t.as_bytes())),
            rng,
            signed_out: Mutex::new(HashMap::new()),
        }
    }

    pub fn token_required(&self) -> bool {
        self.token.is_some()
    }

    /// Whether `given` is the API token (constant time).
    pub fn token_matches(&self, given: &str) -> bool {
        self.token
            .as_deref()
            .is_some_and(|t| crate::api::constant_time_eq(given.trim().as_bytes(), t))
    }

    /// A new signed cookie value of `kind` valid until `now_ms + ttl`.
    pub fn issue(&self, kind: Kind, now_ms: i64, ttl: Duration) -> String {
        let expires = now_ms.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        let nonce = URL_SAFE_NO_PAD.encode(nonce_bytes(&self.rng));
        let body = format!("v1.{}.{expires}.{nonce}", kind.tag());
        let mac = URL_SAFE_NO_PAD.encode(hmac::sign(&self.key, body.as_bytes()).as_ref());
        format!("{body}.{mac}")
    }

    /// Checks a cookie value: well-formed, signed by this key, of `kind`, not expired,
    /// not signed out.
    pub fn verify(&self, value: &str, kind: Kind, now_ms: i64) -> Result<Session, SessionError> {
        let (body, mac) = value.rsplit_once('.').ok_or(SessionError::Malformed)?;
        let mac = URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| SessionError::Malformed)?;
        hmac::verify(&self.key, body.as_bytes(), &mac).map_err(|_| SessionError::Forged)?;
        let mut parts = body.split('.');
        let (Some("v1"), Some(tag), Some(expires), Some(nonce), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(SessionError::Malformed);
        };
        if tag != kind.tag() {
            return Err(SessionError::WrongKind);
        }
        let expires_ms: i64 = expires.parse().map_err(|_| SessionError::Malformed)?;
        if expires_ms <= now_ms {
            return Err(SessionError::Expired);
        }
        if self.lock_signed_out().contains_key(nonce) {
            return Err(SessionError::SignedOut);
        }
        Ok(Session {
            kind,
            expires_ms,
            value: value.to_string(),
            nonce: nonce.to_string(),
        })
    }

    /// Ends `session` on this hub before its expiry (its cookie is cleared too).
    pub fn sign_out(&self, session: &Session, now_ms: i64) {
        let mut signed_out = self.lock_signed_out();
        signed_out.retain(|_, expires| *expires > now_ms);
        signed_out.insert(session.nonce.clone(), session.expires_ms);
    }

    fn lock_signed_out(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        self.signed_out.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The CSRF token of forms shown in `session`.
    pub fn csrf_token(&self, session: &Session) -> String {
        let tag = hmac::sign(&self.key, format!("csrf.{}", session.value).as_bytes());
        URL_SAFE_NO_PAD.encode(tag.as_ref())
    }

    pub fn csrf_ok(&self, session: &Session, presented: &str) -> bool {
        let Ok(mac) = URL_SAFE_NO_PAD.decode(presented.trim()) else {
            return false;
        };
        hmac::verify(
            &self.key,
            format!("csrf.{}", session.value).as_bytes(),
            &mac,
        )
        .is_ok()
    }
}

fn nonce_bytes(rng: &SystemRandom) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    // SystemRandom reads the OS generator; it does not fail on Linux.
    let _ = rng.fill(&mut bytes);
    bytes
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim())
}

/// A `Set-Cookie` value for the console's paths: HttpOnly, SameSite=Strict, `Secure`
/// when the request came through HTTPS (a proxy's `X-Forwarded-Proto`).
pub fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text = format!(
        "{name}={value}; Path=/console; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
        max_age.as_secs()
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub fn behind_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Every console request: a valid session goes on (the [`Session`] in the request's
/// extensions); without one, only the sign-in page answers (or, when no token is set,
/// a session is issued on the spot).
pub async fn require_session(
    State(console): State<Console>,
    mut request: Request,
    next: Next,
) -> Response {
    let now = now_ms();
    let keys = &console.keys;
    let session =
        cookie(request.headers(), SESSION_COOKIE).map(|v| keys.verify(v, Kind::Session, now));
    if let Some(Ok(session)) = session {
        request.extensions_mut().insert(session);
        return next.run(request).await;
    }
    if !keys.token_required() {
        let ttl = console.options.session_ttl;
        let value = keys.issue(Kind::Session, now, ttl);
        let secure = behind_https(request.headers());
        let session = keys
            .verify(&value, Kind::Session, now)
            .expect("a session just issued verifies");
        request.extensions_mut().insert(session);
        let mut response = next.run(request).await;
        response.headers_mut().append(
            header::SET_COOKIE,
            set_cookie(SESSION_COOKIE, &value, ttl, secure),
        );
        return response;
    }
    if request.uri().path() == SIGN_IN_PATH {
        return next.run(request).await;
    }
    if request.method() == Method::GET || request.method() == Method::HEAD {
        let wanted = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let target = format!(
            "{SIGN_IN_PATH}?next={}",
            form_urlencoded::byte_serialize(wanted.as_bytes()).collect::<String>()
        );
        return Redirect::to(&target).into_response();
    }
    (StatusCode::UNAUTHORIZED, "sign in first").into_response()
}

/// Where a sign-in may send the browser afterwards: a console path, nothing else (no
/// open redirect).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with("/console/")
                && !path.contains("//")
                && !path.contains('\\')
                && !path.chars().any(char::is_control) =>
        {
            path.to_string()
        }
        _ => "/console/".to_string(),
    }
}

/// The form fields every console form posts besides its own.
pub trait CsrfField {
    fn csrf(&self) -> &str;
}

/// A posted form whose CSRF token matches the session: anything else is refused with
/// 403 before the handler runs.
pub struct CsrfForm<T>(pub T);

impl<T> FromRequest<Console> for CsrfForm<T>
where
    T: DeserializeOwned + CsrfField + Send,
{
    type Rejection = Response;

    async fn from_request(request: Request, console: &Console) -> Result<Self, Self::Rejection> {
        let session = request.extensions().get::<Session>().cloned();
        let bytes = axum::body::Bytes::from_request(request, console)
            .await
            .map_err(IntoResponse::into_response)?;
        let forbidden = || {
            (
                StatusCode::FORBIDDEN,
                "CSRF check failed: reload the page and try again",
            )
                .into_response()
        };
        let Some(session) = session else {
            return Err(forbidden());
        };
        let presented = form_urlencoded::parse(&bytes)
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.into_owned());
        match presented {
            Some(token) if console.keys.csrf_ok(&session, &token) => {}
            _ => return Err(forbidden()),
        }
        let form: T = serde_urlencoded::from_bytes(&bytes)
            .map_err(|e| (StatusCode::BAD_REQUEST, format!("bad form: {e}")).into_response())?;
        debug_assert!(console.keys.csrf_ok(&session, form.csrf()));
        Ok(CsrfForm(form))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_session_verifies_until_it_expires() {
        let keys = Keys::new(Some("secret"));
        let value = keys.issue(Kind::Session, 1_000, HOUR);
        let session = keys.verify(&value, Kind::Session, 1_000).unwrap();
        assert_eq!(session.expires_ms, 1_000 + 3_600_000);
        assert_eq!(
            keys.verify(&value, Kind::Session, 1_000 + 3_600_000),
            Err(SessionError::Expired)
        );
        assert_eq!(
            keys.verify(&value, Kind::SignInForm, 1_000),
            Err(SessionError::WrongKind)
        );
    }

    #[test]
    fn forged_and_malformed_cookies_are_refused() {
        let keys = Keys::new(Some("secret"));
        let value = keys.issue(Kind::Session, 0, HOUR);
        // Another token's key, a longer expiry written in, junk.
        let other = Keys::new(Some("other"));
        assert_eq!(
            other.verify(&value, Kind::Session, 0),
            Err(SessionError::Forged)
        );
        let (body, mac) = value.rsplit_once('.').unwrap();
        let longer = body.replace(".3600000.", ".9999999999999.");
        assert_eq!(
            keys.verify(&format!("{longer}.{mac}"), Kind::Session, 0),
            Err(SessionError::Forged)
        );
        for junk in ["", ".", "v1", "v1.s.1.n.!!", "a.b.c.d.e.f", "\u{0}"] {
            assert!(keys.verify(junk, Kind::Session, 0).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn sign_out_ends_the_session_and_its_csrf_token() {
        let keys = Keys::new(Some("secret"));
        let a = keys
            .verify(&keys.issue(Kind::Session, 0, HOUR), Kind::Session, 0)
            .unwrap();
        let b = keys
            .verify(&keys.issue(Kind::Session, 0, HOUR), Kind::Session, 0)
            .unwrap();
        let token = keys.csrf_token(&a);
        assert!(keys.csrf_ok(&a, &token));
        assert!(!keys.csrf_ok(&b, &token), "a token is bound to its session");
        assert!(!keys.csrf_ok(&a, ""));
        assert!(!keys.csrf_ok(&a, "not base64 !"));
        keys.sign_out(&a, 0);
        assert_eq!(
            keys.verify(&a.value, Kind::Session, 1),
            Err(SessionError::SignedOut)
        );
        assert!(keys.verify(&b.value, Kind::Session, 1).is_ok());
    }

    #[test]
    fn the_token_is_compared_whole() {
        let keys = Keys::new(Some("s3cret"));
        assert!(keys.token_matches("s3cret"));
        assert!(keys.token_matches(" s3cret\n"));
        assert!(!keys.token_matches("s3cre"));
        assert!(!Keys::new(None).token_matches(""));
    }

    #[test]
    fn cookies_are_found_by_name() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; till360_session=xyz"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, "c"), None);
    }

    proptest::proptest! {
        /// Any cookie value, well-formed or not, is refused or accepted, never a panic;
        /// only one this key issued is accepted.
        #[test]
        fn any_cookie_value_is_checked_without_panicking(value in ".{0,120}", n in 0i64..i64::MAX) {
            let keys = Keys::new(Some("secret"));
            proptest::prop_assert!(keys.verify(&value, Kind::Session, n).is_err());
            let issued = keys.issue(Kind::Session, 0, HOUR);
            let mut changed = issued.clone();
            changed.push_str(&value);
            proptest::prop_assert_eq!(
                keys.verify(&changed, Kind::Session, 1).is_ok(),
                value.is_empty()
            );
        }

        #[test]
        fn any_accept_language_is_read_without_panicking(value in ".{0,80}") {
            let _ = crate::console::i18n::accept_language(&value);
        }
    }

    #[test]
    fn next_stays_inside_the_console() {
        assert_eq!(safe_next(Some("/console/tills")), "/console/tills");
        for bad in [
            "https://evil.example/",
            "//evil.example/console/",
            "/console//evil",
            "/api/v1/profiles",
            "/console/\\evil",
        ] {
            assert_eq!(safe_next(Some(bad)), "/console/", "{bad}");
        }
        assert_eq!(safe_next(None), "/console/");
    }
}
