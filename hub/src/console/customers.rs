//! `/console/customers?q=…` (search) and `/console/customers/{profile_id}`, the 360°
//! page: identity with its history, personal data, consents (changed with a
//! confirmation), loyalty and the key moments coming up, traits with what they mean,
//! segments, coupons and the timeline; export and erase for the privacy officer,
//! through the API's own handlers.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{Datelike, NaiveDate};
use maud::{html, Markup};
use serde::Deserialize;
use till360_shared::campaign::Trigger;
use till360_shared::CardNumber;

use super::i18n::{Lang, Msg};
use super::page::{error_page, fill, money, percent, render, when, Section};
use super::session::{CsrfField, CsrfForm};
use super::{read, Console, Ctx, PageError};
use crate::api::privacy::PURPOSES;
use crate::profile::ProfileView;
use crate::store::profiles::{self as store, IdentifierRecord, ProfileSummary};
use crate::store::{ConsentChange, ProfileQuery};

/// Search hits shown (per kind of identifier tried).
const SEARCH_LIMIT: usize = 50;

/// Which searches a typed text stands for: a card number (valid check digit), an
/// e-mail address, a phone or customer number, or the start of a name.
pub fn queries_for(text: &str) -> Vec<ProfileQuery> {
    let text = text.trim();
    if text.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    if CardNumber::parse(text).is_ok() {
        out.push(ProfileQuery::Card(text.to_string()));
    }
    if text.contains('@') {
        out.push(ProfileQuery::Email(text.to_string()));
        return out;
    }
    out.push(ProfileQuery::CustomerNo(text.to_string()));
    let digits = text.chars().filter(char::is_ascii_digit).count();
    let phone_like = text
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')' | '.'));
    if phone_like && digits >= 6 {
        out.push(ProfileQuery::Phone(text.to_string()));
    }
    if text.chars().any(char::is_alphabetic) {
        out.push(ProfileQuery::NamePrefix(text.to_string()));
    }
    out
}

#[derive(Deserialize)]
pub struct SearchQuery {
    q: Option<String>,
}

pub async fn search(
    State(console): State<Console>,
    ctx: Ctx,
    query: Result<Query<SearchQuery>, QueryRejection>,
) -> Result<Response, PageError> {
    let text = query.ok().and_then(|q| q.0.q).unwrap_or_default();
    let queries = queries_for(&text);
    let country_code = console.api.profiles.default_country_code;
    let searched = !queries.is_empty();
    let hits = read(&console, &ctx, move |db| {
        let mut ids: Vec<String> = Vec::new();
        for query in &queries {
            for id in store::search_ids(db, query, SEARCH_LIMIT, country_code)? {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        store::summaries(db, &ids)
    })
    .await?;
    // An identifier that names one customer opens their page at once.
    if let [only] = hits.as_slice() {
        return Ok(
            Redirect::to(&format!("/console/customers/{}", only.profile_id)).into_response(),
        );
    }
    let body = html! {
        (search_form(&ctx, &text))
        @if searched {
            @if hits.is_empty() {
                p #no-results { (ctx.t(Msg::NoResults)) }
            } @else {
                (results(&ctx, &hits))
            }
        }
    };
    Ok(render(
        &ctx,
        Section::Customers,
        ctx.t(Msg::Customers),
        body,
    ))
}

fn search_form(ctx: &Ctx, text: &str) -> Markup {
    html! {
        form.search method="get" action="/console/customers" role="search" {
            label for="q" class="help" { (ctx.t(Msg::SearchHelp)) }
            input #q type="search" name="q" value=(text) placeholder=(ctx.t(Msg::SearchHelp)) autofocus;
            button type="submit" { (ctx.t(Msg::Search)) }
        }
    }
}

fn results(ctx: &Ctx, hits: &[ProfileSummary]) -> Markup {
    html! {
        div.table-wrap { table #results {
            thead { tr { th { (ctx.t(Msg::Name)) } th { (ctx.t(Msg::Cards)) } th { (ctx.t(Msg::CustomerNo)) } th { (ctx.t(Msg::Email)) } th { (ctx.t(Msg::LastVisit)) } } }
            tbody {
                @for h in hits {
                    tr {
                        td { a href={ "/console/customers/" (h.profile_id) } { (display_name(h.first_name.as_deref(), h.last_name.as_deref(), &h.profile_id)) } }
                        td { (h.cards.join(", ")) }
                        td { (h.customer_no.as_deref().unwrap_or("–")) }
                        td { (h.emails.join(", ")) }
                        td { (h.last_at_ms.map(|ms| format!("{} UTC", when(&till360_shared::Timestamp::from_unix_ms(ms, 0).to_rfc3339()))).unwrap_or_else(|| "–".into())) }
                    }
                }
            }
        } }
    }
}

fn display_name(first: Option<&str>, last: Option<&str>, id: &str) -> String {
    let name = [first, last]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if name.is_empty() {
        id.to_string()
    } else {
        name
    }
}

/// A key moment: what, the date it next comes, how many days until.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moment {
    pub what: Msg,
    pub date: NaiveDate,
    pub in_days: i64,
}

/// The next yearly return of `date`'s day and month on or after `today` (29 February
/// on 28 February in other years).
pub fn next_yearly(date: NaiveDate, today: NaiveDate) -> NaiveDate {
    let on = |year: i32| {
        NaiveDate::from_ymd_opt(year, date.month(), date.day())
            .or_else(|| NaiveDate::from_ymd_opt(year, date.month(), date.day() - 1))
            .unwrap_or(today)
    };
    let this_year = on(today.year());
    if this_year >= today {
        this_year
    } else {
        on(today.year() + 1)
    }
}

/// Birthday and membership anniversary coming up, soonest first.
pub fn key_moments(view: &ProfileView, today: NaiveDate) -> Vec<Moment> {
    let parse = |d: &Option<String>| {
        d.as_deref()
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
    };
    let mut out = Vec::new();
    if let Some(birth) = parse(&view.personal.birth_date) {
        let date = next_yearly(birth, today);
        out.push(Moment {
            what: Msg::Birthday,
            date,
            in_days: (date - today).num_days(),
        });
    }
    if let Some(since) = parse(&view.loyalty.member_since) {
        // The day itself is not an anniversary.
        let date = next_yearly(since, today.max(since.succ_opt().unwrap_or(since)));
        out.push(Moment {
            what: Msg::Anniversary,
            date,
            in_days: (date - today).num_days(),
        });
    }
    out.sort_by_key(|m| m.in_days);
    out
}

/// The traits shown, in order, with their label and one-line meaning.
const TRAITS: [(&str, Msg, Msg); 6] = [
    ("rfm", Msg::Rfm, Msg::RfmHelp),
    ("clv_cents", Msg::Clv, Msg::ClvHelp),
    ("churn_risk", Msg::ChurnRisk, Msg::ChurnHelp),
    (
        "expected_purchases",
        Msg::ExpectedPurchases,
        Msg::ExpectedHelp,
    ),
    (
        "favourite_categories",
        Msg::FavouriteCategories,
        Msg::FavouriteHelp,
    ),
    ("sale_share", Msg::SaleShare, Msg::SaleShareHelp),
];

fn trait_value(key: &str, value: &serde_json::Value, lang: Lang) -> String {
    use serde_json::Value;
    match (key, value) {
        (_, Value::Null) => "–".into(),
        ("clv_cents", Value::Number(n)) => money(n.as_i64().unwrap_or(0), "EUR", lang),
        ("churn_risk" | "sale_share", Value::Number(n)) => percent(n.as_f64().unwrap_or(0.0), lang),
        ("expected_purchases", Value::Number(n)) => {
            let text = format!("{:.2}", n.as_f64().unwrap_or(0.0));
            if lang == Lang::Nl {
                text.replace('.', ",")
            } else {
                text
            }
        }
        (_, Value::Array(items)) if items.is_empty() => "–".into(),
        (_, Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
            .collect::<Vec<_>>()
            .join(", "),
        (_, Value::String(s)) => s.clone(),
        (_, other) => other.to_string(),
    }
}

/// The 80 % range of a trait, if the traits carry one: CLV and expected purchases have
/// their own, churn risk is one minus the range of p_alive.
fn trait_range(
    key: &str,
    traits: &std::collections::BTreeMap<String, serde_json::Value>,
) -> Option<[serde_json::Value; 2]> {
    let pair = |name: &str| -> Option<[f64; 2]> {
        let v = traits.get(name)?.as_array()?;
        Some([v.first()?.as_f64()?, v.get(1)?.as_f64()?])
    };
    let number = |v: f64| serde_json::Number::from_f64(v).map(serde_json::Value::Number);
    let [low, high] = match key {
        "clv_cents" => {
            let [low, high] = pair("clv_interval_cents")?;
            return Some([
                serde_json::Value::from(low.round() as i64),
                serde_json::Value::from(high.round() as i64),
            ]);
        }
        "expected_purchases" => pair("expected_purchases_interval")?,
        "churn_risk" => {
            let [low, high] = pair("p_alive_interval")?;
            [1.0 - high, 1.0 - low]
        }
        _ => return None,
    };
    Some([number(low)?, number(high)?])
}

#[derive(Deserialize)]
pub struct ProfileQueryParams {
    changed: Option<String>,
}

pub async fn page(
    State(console): State<Console>,
    ctx: Ctx,
    Path(id): Path<String>,
    query: Result<Query<ProfileQueryParams>, QueryRejection>,
) -> Result<Response, PageError> {
    let wanted = id.clone();
    let loaded = read(&console, &ctx, move |db| {
        store::load_view_with_history(db, &wanted)
    })
    .await?;
    let Some((view, history)) = loaded else {
        return Err(PageError::not_found(&ctx, format!("no profile {id:?}")));
    };
    let changed = query.ok().and_then(|q| q.0.changed);
    let today = chrono::Utc::now().date_naive();
    let body = profile_body(&ctx, &console, &view, &history, today, changed.as_deref());
    let title = display_name(
        view.personal.first_name.as_deref(),
        view.personal.last_name.as_deref(),
        &view.profile_id,
    );
    Ok(render(&ctx, Section::Customers, &title, body))
}

fn profile_body(
    ctx: &Ctx,
    console: &Console,
    view: &ProfileView,
    history: &[IdentifierRecord],
    today: NaiveDate,
    changed: Option<&str>,
) -> Markup {
    let lang = ctx.lang;
    let first_join = history.iter().map(|r| r.added_at).min();
    let points_campaigns: Vec<(String, i64)> = console
        .api
        .campaigns
        .as_ref()
        .as_ref()
        .map(|set| {
            set.campaigns
                .iter()
                .filter_map(|c| match c.trigger {
                    Trigger::PointsThreshold { points } => Some((c.name.clone(), points)),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    html! {
        @if changed == Some("consent") { p.ok role="status" { (ctx.t(Msg::ConsentChanged)) } }
        p.muted { (ctx.t(Msg::Profile)) " " code #profile-id { (view.profile_id) } " · " (ctx.t(Msg::Created)) " " (when(&view.created_at)) }
        div.grid {
            section.card #identity {
                h2 { (ctx.t(Msg::Identity)) }
                dl.facts {
                    dt { (ctx.t(Msg::Cards)) } dd #cards { (list_or_dash(&view.identity.cards)) }
                    dt { (ctx.t(Msg::CustomerNo)) } dd #customer-no { (view.customer_no.as_deref().unwrap_or("–")) }
                    dt { (ctx.t(Msg::Email)) } dd #emails { (list_or_dash(&view.identity.emails)) }
                    dt { (ctx.t(Msg::Phone)) } dd #phones { (list_or_dash(&view.identity.phones)) }
                    dt { (ctx.t(Msg::OnlineAccounts)) } dd { (list_or_dash(&view.identity.online_accounts)) }
                }
                details {
                    summary { (ctx.t(Msg::IdentityHelp)) }
                    div.table-wrap { table #identifier-history {
                        thead { tr { th { (ctx.t(Msg::Kind)) } th { (ctx.t(Msg::Value)) } th { (ctx.t(Msg::Source)) } th { (ctx.t(Msg::Joined)) } } }
                        tbody {
                            @for r in history {
                                tr {
                                    td { (r.kind) }
                                    td { code { (r.value) } }
                                    td { (r.source) }
                                    td {
                                        (when(&r.added_at.to_rfc3339())) " UTC"
                                        @if Some(r.added_at) != first_join { " " span.badge.warn { (ctx.t(Msg::Merged)) } }
                                    }
                                }
                            }
                        }
                    } }
                }
            }
            section.card #personal {
                h2 { (ctx.t(Msg::PersonalData)) }
                dl.facts {
                    dt { (ctx.t(Msg::FirstName)) } dd #first-name { (view.personal.first_name.as_deref().unwrap_or("–")) }
                    dt { (ctx.t(Msg::LastName)) } dd #last-name { (view.personal.last_name.as_deref().unwrap_or("–")) }
                    dt { (ctx.t(Msg::BirthDate)) } dd { (view.personal.birth_date.as_deref().unwrap_or("–")) }
                    dt { (ctx.t(Msg::PostalCode)) } dd { (view.personal.postal_code.as_deref().unwrap_or("–")) }
                    dt { (ctx.t(Msg::Language)) } dd { (view.personal.language.as_deref().unwrap_or("–")) }
                }
            }
            section.card #loyalty {
                h2 { (ctx.t(Msg::Loyalty)) }
                dl.facts {
                    dt { (ctx.t(Msg::MemberSince)) } dd { (view.loyalty.member_since.as_deref().unwrap_or("–")) }
                    dt { (ctx.t(Msg::Points)) } dd #points { (view.loyalty.points.map(|p| p.to_string()).unwrap_or_else(|| "–".into())) }
                    dt { (ctx.t(Msg::Tier)) } dd { span.muted { (ctx.t(Msg::NoTiers)) } }
                    dt { (ctx.t(Msg::Transactions)) } dd #receipt-count { (view.transactions.count) }
                    dt { (ctx.t(Msg::Total)) } dd #receipt-total { (money(view.transactions.total_cents, view.transactions.currency.as_deref().unwrap_or("EUR"), lang)) }
                    dt { (ctx.t(Msg::Online)) } dd { (view.channels.online.count) " · " (money(view.channels.online.total_cents, "EUR", lang)) }
                    dt { (ctx.t(Msg::Coupons)) } dd #coupons { (ctx.t(Msg::Issued)) " " (view.coupons.issued) " · " (ctx.t(Msg::Redeemed)) " " (view.coupons.redeemed) }
                    dt { (ctx.t(Msg::Segments)) } dd #segments { (list_or_dash(&view.segments)) }
                }
                h3 { (ctx.t(Msg::KeyMoments)) }
                ul.plain #moments {
                    @for m in key_moments(view, today) {
                        li { strong { (ctx.t(m.what)) } ": " (m.date.to_string()) " — "
                            @if m.in_days == 0 { (ctx.t(Msg::Today)) } @else { (fill(ctx.t(Msg::InDays), &[m.in_days])) } }
                    }
                    @if let Some(points) = view.loyalty.points {
                        @for (name, threshold) in &points_campaigns {
                            li { strong { (ctx.t(Msg::PointsThreshold)) } " " (threshold) " (" (name) "): "
                                @if points >= *threshold { (ctx.t(Msg::Reached)) } @else { (fill(ctx.t(Msg::PointsToGo), &[threshold - points])) } }
                        }
                    }
                }
            }
            section.card.wide #consents {
                h2 { (ctx.t(Msg::Consents)) }
                div.table-wrap { table {
                    thead { tr { th { (ctx.t(Msg::Purpose)) } th { (ctx.t(Msg::Status)) } th { (ctx.t(Msg::Source)) } th { (ctx.t(Msg::When)) } th {} } }
                    tbody {
                        @for purpose in PURPOSES {
                            @let consent = view.consents.get(purpose);
                            tr data-purpose=(purpose) {
                                td { (purpose) }
                                td.consent-state {
                                    @match consent {
                                        Some(c) if c.granted => span.badge.good { (ctx.t(Msg::Granted)) },
                                        Some(_) => span.badge.bad { (ctx.t(Msg::Withdrawn)) },
                                        None => span.muted { (ctx.t(Msg::NotAsked)) },
                                    }
                                }
                                td { (consent.map(|c| c.source.as_str()).unwrap_or("–")) }
                                td { (consent.map(|c| when(&c.at)).unwrap_or_else(|| "–".into())) }
                                td {
                                    @let granted = consent.is_some_and(|c| c.granted);
                                    form.inline method="post" action={ "/console/customers/" (view.profile_id) "/consents" } {
                                        input type="hidden" name="csrf" value=(ctx.csrf);
                                        input type="hidden" name="purpose" value=(purpose);
                                        input type="hidden" name="granted" value=(if granted { "false" } else { "true" });
                                        button.secondary type="submit" name="action" value="ask" {
                                            (if granted { ctx.t(Msg::Withdraw) } else { ctx.t(Msg::Grant) })
                                            span.muted { " " (purpose) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                } }
            }
        }
        section.card.wide #traits {
            h2 { (ctx.t(Msg::Traits)) }
            @if view.traits.is_empty() {
                p { (ctx.t(Msg::TraitsNone)) }
            } @else {
                @if view.traits.get("provisional") == Some(&serde_json::Value::Bool(true)) {
                    p.notice #traits-provisional {
                        strong { (ctx.t(Msg::TraitsProvisional)) } " "
                        (view.traits.get("model").and_then(|m| m.get("provisional")).and_then(|r| r.as_str()).unwrap_or(""))
                    }
                }
                @if let Some(model) = view.traits.get("model").and_then(|m| m.get("purchase_model")).and_then(|m| m.as_str()) {
                    p.help #traits-model {
                        (ctx.t(Msg::TraitsModel)) " " code { (model) }
                        @if let Some(gain) = view.traits.get("model").and_then(|m| m.get("selection")).and_then(|s| s.get("mae_gain_percent")).and_then(|g| g.as_f64()) {
                            ", " (ctx.t(Msg::TraitsModelGain)) " " (percent(gain / 100.0, lang))
                        }
                    }
                }
                dl.facts {
                    @for (key, label, help) in TRAITS {
                        dt { (ctx.t(label)) }
                        dd data-trait=(key) {
                            strong { (trait_value(key, view.traits.get(key).unwrap_or(&serde_json::Value::Null), lang)) }
                            @if let Some([low, high]) = trait_range(key, &view.traits) {
                                " " span.range data-range=(key) { (ctx.t(Msg::TraitsRange)) " " (trait_value(key, &low, lang)) " – " (trait_value(key, &high, lang)) }
                            }
                            br; span.help { (ctx.t(help)) }
                        }
                    }
                }
            }
        }
        section.card.wide #timeline {
            h2 { (ctx.t(Msg::Timeline)) }
            p.help { (ctx.t(Msg::TimelineHelp)) }
            div.table-wrap { table {
                thead { tr { th { (ctx.t(Msg::When)) } th { (ctx.t(Msg::Kind)) } th { (ctx.t(Msg::Store)) } th { (ctx.t(Msg::Till)) } th { (ctx.t(Msg::Lines)) } th.num { (ctx.t(Msg::Total)) } } }
                tbody {
                    @for entry in &view.timeline {
                        tr data-kind=(entry.kind) {
                            td { (when(&entry.at)) }
                            td { (if entry.kind == "order" { ctx.t(Msg::Order) } else { ctx.t(Msg::Receipt) })
                                @if let Some(r) = &entry.reference { br; code { (r) } } }
                            td { (entry.place) }
                            td { (entry.till.as_deref().unwrap_or("–")) }
                            td {
                                details {
                                    summary { (entry.lines.len()) }
                                    ul.plain {
                                        @for line in &entry.lines {
                                            li { (line.description) " — " (money(line.amount_cents, &entry.currency, lang)) }
                                        }
                                    }
                                }
                            }
                            td.num { (money(entry.total_cents, &entry.currency, lang)) }
                        }
                    }
                }
            } }
        }
        section.card.wide #privacy {
            h2 { (ctx.t(Msg::Privacy)) }
            p { a #export href={ "/console/customers/" (view.profile_id) "/export" } download { (ctx.t(Msg::Export)) } }
            form.erase method="post" action={ "/console/customers/" (view.profile_id) "/erase" } {
                input type="hidden" name="csrf" value=(ctx.csrf);
                label for="confirm-erase" { (ctx.t(Msg::EraseHelp)) " " code { (view.profile_id) } }
                input #confirm-erase type="text" name="confirm" autocomplete="off" required;
                button.danger type="submit" { (ctx.t(Msg::Erase)) }
            }
        }
    }
}

fn list_or_dash(items: &[String]) -> Markup {
    html! {
        @if items.is_empty() { "–" } @else {
            @for (i, item) in items.iter().enumerate() { @if i > 0 { ", " } (item) }
        }
    }
}

#[derive(Deserialize)]
pub struct ConsentForm {
    csrf: String,
    purpose: String,
    granted: String,
    /// `ask` (show the confirmation) or `confirm` (change it).
    action: Option<String>,
}

impl CsrfField for ConsentForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /console/customers/{id}/consents`: first a confirmation page, then the change.
pub async fn consent(
    State(console): State<Console>,
    ctx: Ctx,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<ConsentForm>,
) -> Result<Response, PageError> {
    let Some(purpose) = PURPOSES.iter().find(|p| **p == form.purpose) else {
        return Ok(error_page(
            ctx.lang,
            StatusCode::BAD_REQUEST,
            &format!("unknown consent purpose {:?}", form.purpose),
        ));
    };
    let granted = match form.granted.as_str() {
        "true" => true,
        "false" => false,
        other => {
            return Ok(error_page(
                ctx.lang,
                StatusCode::BAD_REQUEST,
                &format!("granted must be true or false, not {other:?}"),
            ))
        }
    };
    if form.action.as_deref() != Some("confirm") {
        let body = html! {
            p { (ctx.t(Msg::ConfirmConsent)) ": " strong { (purpose) } " → "
                strong #consent-target { (if granted { ctx.t(Msg::Granted) } else { ctx.t(Msg::Withdrawn) }) } }
            p.muted { (ctx.t(Msg::Profile)) " " code { (id) } }
            form method="post" action={ "/console/customers/" (id) "/consents" } {
                input type="hidden" name="csrf" value=(ctx.csrf);
                input type="hidden" name="purpose" value=(purpose);
                input type="hidden" name="granted" value=(form.granted);
                button #confirm type="submit" name="action" value="confirm" { (ctx.t(Msg::Confirm)) }
                " "
                a href={ "/console/customers/" (id) } { (ctx.t(Msg::Cancel)) }
            }
        };
        return Ok(render(
            &ctx,
            Section::Customers,
            ctx.t(Msg::ConfirmConsent),
            body,
        ));
    }
    let changes = vec![ConsentChange {
        purpose: purpose.to_string(),
        granted,
    }];
    let changed =
        crate::api::privacy::set_consents(&console.api.profiles, id.clone(), changes, "console")
            .await
            .map_err(|e| PageError::new(&ctx, e))?;
    if changed.is_none() {
        return Err(PageError::not_found(&ctx, format!("no profile {id:?}")));
    }
    Ok(Redirect::to(&format!("/console/customers/{id}?changed=consent#consents")).into_response())
}

/// `GET /console/customers/{id}/export`: the API's export, as a download.
pub async fn export(State(console): State<Console>, Path(id): Path<String>) -> Response {
    crate::api::privacy::export(State(console.api.profiles.clone()), Path(id))
        .await
        .into_response()
}

#[derive(Deserialize)]
pub struct EraseForm {
    csrf: String,
    confirm: String,
}

impl CsrfField for EraseForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /console/customers/{id}/erase`: only with the profile id typed in.
pub async fn erase(
    State(console): State<Console>,
    ctx: Ctx,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<EraseForm>,
) -> Result<Response, PageError> {
    if form.confirm.trim() != id {
        return Ok(error_page(
            ctx.lang,
            StatusCode::BAD_REQUEST,
            ctx.t(Msg::EraseMismatch),
        ));
    }
    let report = crate::api::privacy::erase_profile(
        &console.api.profiles,
        &console.api.digests_changed,
        id.clone(),
    )
    .await
    .map_err(|e| PageError::new(&ctx, e))?;
    let Some(report) = report else {
        return Err(PageError::not_found(&ctx, format!("no profile {id:?}")));
    };
    let body = html! {
        p.ok role="status" #erased { (ctx.t(Msg::ErasedHelp)) }
        dl.facts {
            dt { (ctx.t(Msg::Profile)) } dd { code { (report.profile_id) } }
            dt { (ctx.t(Msg::Identifiers)) } dd { (report.identifiers_removed) }
            dt { (ctx.t(Msg::Transactions)) } dd { (report.transactions_anonymised) }
        }
        p { a href="/console/customers" { (ctx.t(Msg::BackTo)) } }
    };
    Ok(render(&ctx, Section::Customers, ctx.t(Msg::Erased), body))
}
