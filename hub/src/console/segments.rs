//! `/console/segments` and `/console/segments/{id}`: sizes and rules, the members a
//! page at a time, and the consented mailing list per channel (the API's
//! `members.csv`, called as it is).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde::Deserialize;

use super::i18n::Msg;
use super::page::{fill, render, Section};
use super::{read, Console, Ctx, PageError};
use crate::store::segments as listings;

/// Members per page.
pub const PAGE_SIZE: u64 = 50;

/// A segment's rule as configured: its `where` conditions (any other keys as
/// `key = value`).
pub fn rule_of(tables: &[toml::Table], id: &str) -> Vec<String> {
    let Some(table) = tables
        .iter()
        .find(|t| t.get("id").and_then(|v| v.as_str()) == Some(id))
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, value) in table {
        match (key.as_str(), value) {
            ("id" | "name", _) => {}
            ("where", toml::Value::Array(conditions)) => out.extend(
                conditions
                    .iter()
                    .map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_string)),
            ),
            (key, value) => out.push(format!("{key} = {value}")),
        }
    }
    out
}

fn rule_markup(ctx: &Ctx, rule: &[String]) -> Markup {
    html! {
        @if rule.is_empty() { "–" } @else {
            ul.plain { @for (i, c) in rule.iter().enumerate() { li { @if i > 0 { (ctx.t(Msg::And)) " " } code { (c) } } } }
        }
    }
}

pub async fn list(State(console): State<Console>, ctx: Ctx) -> Result<Response, PageError> {
    let (sizes, computed_at) = read(&console, &ctx, listings::sizes).await?;
    let rules = &console.options.segment_rules;
    let body = html! {
        p.help { (ctx.t(Msg::ComputedAt)) ": "
            @match computed_at { Some(t) => { (super::page::when(&t.to_rfc3339())) }, None => { (ctx.t(Msg::NotComputed)) } } }
        div.table-wrap { table #segments {
            thead { tr { th { (ctx.t(Msg::Segment)) } th { (ctx.t(Msg::Rule)) } th.num { (ctx.t(Msg::Size)) } th { (ctx.t(Msg::MailingList)) } } }
            tbody {
                @for def in console.api.segments.iter() {
                    tr data-segment=(def.id) {
                        td { a href={ "/console/segments/" (def.id) } { (def.name) } br; code { (def.id) } }
                        td { (rule_markup(&ctx, &rule_of(rules, &def.id))) }
                        td.num { (sizes.get(&def.id).copied().unwrap_or(0)) }
                        td { (mailing_links(&ctx, &def.id)) }
                    }
                }
            }
        } }
    };
    Ok(render(&ctx, Section::Segments, ctx.t(Msg::Segments), body))
}

fn mailing_links(ctx: &Ctx, id: &str) -> Markup {
    html! {
        a href={ "/console/segments/" (id) "/members.csv?channel=email" } download { (ctx.t(Msg::ByEmail)) }
        " · "
        a href={ "/console/segments/" (id) "/members.csv?channel=post" } download { (ctx.t(Msg::ByPost)) }
    }
}

#[derive(Deserialize)]
pub struct PageQuery {
    page: Option<u64>,
}

pub async fn page(
    State(console): State<Console>,
    ctx: Ctx,
    Path(id): Path<String>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Response, PageError> {
    let Some(def) = console.api.segments.iter().find(|d| d.id == id).cloned() else {
        return Err(PageError::not_found(&ctx, format!("no segment {id:?}")));
    };
    let page = query.ok().and_then(|q| q.0.page).unwrap_or(1).max(1);
    let segment_id = def.id.clone();
    let (members, total) = read(&console, &ctx, move |db| {
        listings::members_page(
            db,
            &segment_id,
            (page - 1).saturating_mul(PAGE_SIZE),
            PAGE_SIZE,
        )
    })
    .await?;
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let rule = rule_of(&console.options.segment_rules, &def.id);
    let body = html! {
        div.grid {
            section.card {
                dl.facts {
                    dt { "id" } dd { code { (def.id) } }
                    dt { (ctx.t(Msg::Rule)) } dd { (rule_markup(&ctx, &rule)) }
                    dt { (ctx.t(Msg::Size)) } dd #segment-size { (total) }
                    dt { (ctx.t(Msg::MailingList)) } dd { (mailing_links(&ctx, &def.id)) }
                }
            }
        }
        section.card.wide {
            h2 { (ctx.t(Msg::Members)) }
            div.table-wrap { table #members {
                thead { tr { th { (ctx.t(Msg::Name)) } th { (ctx.t(Msg::CustomerNo)) } th { (ctx.t(Msg::Profile)) } } }
                tbody {
                    @for m in &members {
                        tr {
                            td { a href={ "/console/customers/" (m.profile_id) } {
                                (m.first_name.as_deref().unwrap_or("")) " " (m.last_name.as_deref().unwrap_or(""))
                                @if m.first_name.is_none() && m.last_name.is_none() { "–" }
                            } }
                            td { (m.customer_no.as_deref().unwrap_or("–")) }
                            td { code { (m.profile_id) } }
                        }
                    }
                }
            } }
            nav.pager aria-label=(ctx.t(Msg::Members)) {
                @if page > 1 { a rel="prev" href={ "/console/segments/" (def.id) "?page=" (page - 1) } { (ctx.t(Msg::Previous)) } }
                span { (fill(ctx.t(Msg::PageOf), &[page as i64, pages as i64])) }
                @if page < pages { a rel="next" href={ "/console/segments/" (def.id) "?page=" (page + 1) } { (ctx.t(Msg::Next)) } }
            }
        }
    };
    Ok(render(&ctx, Section::Segments, &def.name, body))
}

#[derive(Deserialize)]
pub struct ChannelQuery {
    channel: Option<String>,
}

/// `GET /console/segments/{id}/members.csv?channel=…`: the API's mailing CSV.
pub async fn mailing_list(
    State(console): State<Console>,
    Path(id): Path<String>,
    Query(query): Query<ChannelQuery>,
) -> Response {
    crate::api::segments::members_csv(
        State(console.api.clone()),
        Path(id),
        Ok(Query(crate::api::segments::CsvParams {
            channel: query.channel,
        })),
    )
    .await
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_is_its_conditions() {
        let tables: Vec<toml::Table> = vec![toml::from_str(
            "id = \"vip\"\nname = \"Best\"\nwhere = [\"rfm_m >= 4\", \"consent.email = true\"]",
        )
        .unwrap()];
        assert_eq!(
            rule_of(&tables, "vip"),
            vec!["rfm_m >= 4".to_string(), "consent.email = true".to_string()]
        );
        assert!(rule_of(&tables, "other").is_empty());
    }
}
