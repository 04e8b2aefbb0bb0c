//! The page shell (header, navigation, language switch, sign-out), the sign-in page,
//! the stylesheet, security headers, and how money, times and shares are written.

use std::sync::LazyLock;

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde::Deserialize;

use super::i18n::{Lang, Msg};
use super::session::{
    self, behind_https, cookie, now_ms, set_cookie, CsrfField, Kind, Session, SESSION_COOKIE,
    SIGN_IN_COOKIE, SIGN_IN_FORM_TTL,
};
use super::{Console, Ctx};

pub const STYLESHEET: &str = include_str!("assets/console.css");

/// The stylesheet's hash for the sign-in page's Content-Security-Policy: that page
/// inlines it, because nothing but the sign-in page is served without a session.
static STYLESHEET_HASH: LazyLock<String> = LazyLock::new(|| {
    let digest = ring::digest::digest(&ring::digest::SHA256, STYLESHEET.as_bytes());
    format!("'sha256-{}'", STANDARD.encode(digest.as_ref()))
});

/// The sections of the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Overview,
    Customers,
    Campaigns,
    Segments,
    Tills,
}

impl Section {
    const ALL: [(Section, Msg, &'static str); 5] = [
        (Section::Overview, Msg::Overview, "/console/"),
        (Section::Customers, Msg::Customers, "/console/customers"),
        (Section::Campaigns, Msg::Campaigns, "/console/campaigns"),
        (Section::Segments, Msg::Segments, "/console/segments"),
        (Section::Tills, Msg::Tills, "/console/tills"),
    ];
}

/// A full page: header with navigation, language switch and sign-out, then `body`.
pub fn render(ctx: &Ctx, section: Section, title: &str, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang=(ctx.lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (ctx.t(Msg::AppName)) }
                link rel="stylesheet" href="/console/assets/console.css";
            }
            body {
                a.skip href="#main" { (ctx.t(Msg::SkipToContent)) }
                header.top {
                    a.brand href="/console/" { "Till360" }
                    nav aria-label=(ctx.t(Msg::AppName)) {
                        ul {
                            @for (s, label, href) in Section::ALL {
                                li {
                                    @if s == section {
                                        a href=(href) aria-current="page" { (ctx.t(label)) }
                                    } @else {
                                        a href=(href) { (ctx.t(label)) }
                                    }
                                }
                            }
                        }
                    }
                    div.tools {
                        (language_switch(ctx))
                        @if ctx.token_required {
                            form method="post" action="/console/sign-out" {
                                input type="hidden" name="csrf" value=(ctx.csrf);
                                button type="submit" { (ctx.t(Msg::SignOut)) }
                            }
                        }
                    }
                }
                main #main {
                    h1 { (title) }
                    (body)
                }
                footer {
                    p {
                        @if ctx.token_required { (ctx.t(Msg::RolesLater)) }
                        @else { (ctx.t(Msg::NoTokenNotice)) }
                    }
                }
            }
        }
    };
    html_response(StatusCode::OK, markup)
}

fn language_switch(ctx: &Ctx) -> Markup {
    let back: String = form_urlencoded::byte_serialize(ctx.here.as_bytes()).collect();
    html! {
        ul.lang aria-label=(ctx.t(Msg::Language)) {
            @for lang in Lang::ALL {
                li {
                    @if lang == ctx.lang {
                        span aria-current="true" lang=(lang.code()) { (lang.code().to_uppercase()) }
                    } @else {
                        a href={ "/console/lang/" (lang.code()) "?back=" (back) } lang=(lang.code()) hreflang=(lang.code()) {
                            (lang.code().to_uppercase())
                        }
                    }
                }
            }
        }
    }
}

pub fn html_response(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

/// A page without navigation (errors, sign-in) with the stylesheet inline.
fn bare_page(lang: Lang, status: StatusCode, title: &str, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (Msg::AppName.text(lang)) }
                style { (PreEscaped(STYLESHEET)) }
            }
            body {
                main #main.narrow {
                    p.brand { "Till360" }
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    html_response(status, markup)
}

pub fn error_page(lang: Lang, status: StatusCode, message: &str) -> Response {
    bare_page(
        lang,
        status,
        Msg::Error.text(lang),
        html! {
            p role="alert" { (message) }
            p { a href="/console/" { (Msg::BackTo.text(lang)) } }
        },
    )
}

#[derive(Deserialize)]
pub struct SignInQuery {
    next: Option<String>,
    failed: Option<String>,
}

/// `GET /console/sign-in`: the token form, with its own short-lived cookie for CSRF.
pub async fn sign_in_page(State(console): State<Console>, request: Request) -> Response {
    let lang = Lang::of_request(request.headers());
    let query: SignInQuery =
        Query::try_from_uri(request.uri())
            .map(|q| q.0)
            .unwrap_or(SignInQuery {
                next: None,
                failed: None,
            });
    if !console.keys.token_required() {
        return Redirect::to("/console/").into_response();
    }
    let now = now_ms();
    let value = console.keys.issue(Kind::SignInForm, now, SIGN_IN_FORM_TTL);
    let form_session = console
        .keys
        .verify(&value, Kind::SignInForm, now)
        .expect("a cookie just issued verifies");
    let csrf = console.keys.csrf_token(&form_session);
    let next = session::safe_next(query.next.as_deref());
    let failed = query.failed.as_deref();
    let body = html! {
        @match failed {
            Some("expired") => p.notice role="alert" { (Msg::SignInExpired.text(lang)) },
            Some(_) => p.notice role="alert" { (Msg::SignInFailed.text(lang)) },
            None => {},
        }
        p { (Msg::SignInHelp.text(lang)) }
        form.sign-in method="post" action="/console/sign-in" {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="next" value=(next);
            label for="token" { (Msg::Token.text(lang)) }
            input #token type="password" name="token" autocomplete="current-password" required autofocus;
            button type="submit" { (Msg::SignIn.text(lang)) }
        }
    };
    let mut response = bare_page(lang, StatusCode::OK, Msg::SignIn.text(lang), body);
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            SIGN_IN_COOKIE,
            &value,
            SIGN_IN_FORM_TTL,
            behind_https(request.headers()),
        ),
    );
    response
}

#[derive(Deserialize)]
pub struct SignInForm {
    csrf: String,
    token: String,
    next: Option<String>,
}

/// `POST /console/sign-in`: a right token (and the form's own CSRF token) gets a
/// session cookie.
pub async fn sign_in(
    State(console): State<Console>,
    headers: axum::http::HeaderMap,
    axum::Form(form): axum::Form<SignInForm>,
) -> Response {
    let now = now_ms();
    let keys = &console.keys;
    let next = session::safe_next(form.next.as_deref());
    let retry = |why: &str| {
        let next: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
        Redirect::to(&format!("/console/sign-in?failed={why}&next={next}")).into_response()
    };
    let form_session =
        cookie(&headers, SIGN_IN_COOKIE).and_then(|v| keys.verify(v, Kind::SignInForm, now).ok());
    let Some(form_session) = form_session else {
        return retry("expired");
    };
    if !keys.csrf_ok(&form_session, &form.csrf) {
        return (
            StatusCode::FORBIDDEN,
            "CSRF check failed: reload the sign-in page",
        )
            .into_response();
    }
    if !keys.token_matches(&form.token) {
        tracing::warn!("console: a sign-in with a wrong token");
        // Slows down guessing; the token is long, this is only a brake.
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        return retry("token");
    }
    let ttl = console.options.session_ttl;
    let secure = behind_https(&headers);
    let value = keys.issue(Kind::Session, now, ttl);
    let mut response = Redirect::to(&next).into_response();
    let headers_out = response.headers_mut();
    headers_out.append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, &value, ttl, secure),
    );
    headers_out.append(
        header::SET_COOKIE,
        set_cookie(SIGN_IN_COOKIE, "", std::time::Duration::ZERO, secure),
    );
    response
}

#[derive(Deserialize)]
pub struct SignOutForm {
    csrf: String,
}

impl CsrfField for SignOutForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /console/sign-out`: ends the session on this hub and clears its cookie.
pub async fn sign_out(
    State(console): State<Console>,
    axum::Extension(session): axum::Extension<Session>,
    headers: axum::http::HeaderMap,
    _form: session::CsrfForm<SignOutForm>,
) -> Response {
    console.keys.sign_out(&session, now_ms());
    let mut response = Redirect::to("/console/sign-in").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            SESSION_COOKIE,
            "",
            std::time::Duration::ZERO,
            behind_https(&headers),
        ),
    );
    response
}

/// `GET /console/assets/console.css` (behind the session like every page).
pub async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "private, max-age=3600"),
        ],
        STYLESHEET,
    )
        .into_response()
}

/// Every console answer: no script may run, nothing loads from elsewhere, no framing,
/// no caching of personal data, no referrer leaving the console.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let csp = format!(
        "default-src 'none'; style-src 'self' {}; img-src 'self' data:; connect-src 'self'; \
         form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'",
        *STYLESHEET_HASH
    );
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Money as the language writes it: `€ 1.234,50` (nl) or `€1,234.50` (en); another
/// currency by its code.
pub fn money(cents: i64, currency: &str, lang: Lang) -> String {
    let negative = cents < 0;
    let abs = cents.unsigned_abs();
    let (units, rest) = (abs / 100, abs % 100);
    let (group, decimal) = match lang {
        Lang::En => (',', '.'),
        Lang::Nl => ('.', ','),
    };
    let digits = units.to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(group);
        }
        grouped.push(c);
    }
    let symbol = match currency {
        "EUR" => "€",
        "USD" => "$",
        "GBP" => "£",
        _ => "",
    };
    let sign = if negative { "−" } else { "" };
    let amount = format!("{grouped}{decimal}{rest:02}");
    match (symbol, lang) {
        ("", _) => format!("{sign}{amount} {currency}"),
        (s, Lang::Nl) => format!("{s} {sign}{amount}"),
        (s, Lang::En) => format!("{sign}{s}{amount}"),
    }
}

/// Euros of a float amount of cents (model outputs), rounded to whole cents.
pub fn money_f(cents: f64, currency: &str, lang: Lang) -> String {
    money(cents.round() as i64, currency, lang)
}

/// A share 0..=1 as a percentage with one decimal, in the language's notation.
pub fn percent(share: f64, lang: Lang) -> String {
    let text = format!("{:.1} %", share * 100.0);
    match lang {
        Lang::En => text.replace(' ', ""),
        Lang::Nl => text.replace('.', ","),
    }
}

/// An RFC 3339 time as `YYYY-MM-DD HH:MM` (the offset it was recorded with); other text
/// as it is.
pub fn when(rfc3339: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(rfc3339) {
        Ok(t) => t.format("%Y-%m-%d %H:%M").to_string(),
        Err(_) => rfc3339.to_string(),
    }
}

/// `%d` placeholders filled in order.
pub fn fill(template: &str, values: &[i64]) -> String {
    let mut out = String::new();
    let mut values = values.iter();
    let mut rest = template;
    while let Some(at) = rest.find("%d") {
        out.push_str(&rest[..at]);
        match values.next() {
            Some(v) => out.push_str(&v.to_string()),
            None => out.push_str("%d"),
        }
        rest = &rest[at + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_in_both_languages() {
        assert_eq!(money(123_450, "EUR", Lang::Nl), "€ 1.234,50");
        assert_eq!(money(123_450, "EUR", Lang::En), "€1,234.50");
        assert_eq!(money(-5, "EUR", Lang::En), "−€0.05");
        assert_eq!(money(100_000_000, "SEK", Lang::En), "1,000,000.00 SEK");
        assert_eq!(money(0, "EUR", Lang::Nl), "€ 0,00");
    }

    #[test]
    fn shares_times_and_placeholders() {
        assert_eq!(percent(0.1234, Lang::En), "12.3%");
        assert_eq!(percent(0.1234, Lang::Nl), "12,3 %");
        assert_eq!(when("2026-12-05T09:30:12+01:00"), "2026-12-05 09:30");
        assert_eq!(when("not a time"), "not a time");
        assert_eq!(fill("in %d days of %d", &[3, 7]), "in 3 days of 7");
        assert_eq!(fill("%d and %d", &[1]), "1 and %d");
    }
}
