//! `/console/campaigns` and `/console/campaigns/{id}`: every campaign of the campaign
//! file with its definition and counts; one campaign's KPIs (the API's
//! `/api/v1/campaigns/{id}/kpis`, from the same rows), its uplift with a 95 % interval
//! or "too few customers yet", per store and per day, and the spend curves.

use axum::extract::{Path, State};
use axum::response::Response;
use maud::{html, Markup};
use till360_shared::campaign::{Campaign, Trigger};

use super::charts::{self, Chart, Series, Style};
use super::i18n::{Lang, Msg};
use super::overview::day_label;
use super::page::{fill, money, money_f, percent, render, Section};
use super::{read, Console, Ctx, PageError};
use crate::coupons::kpis;
use crate::coupons::report::{campaign_report, Certainty, MIN_CUSTOMERS_PER_GROUP};
use crate::store::coupon_kpis;

/// The trigger in words, with its parameters.
pub fn trigger_text(trigger: &Trigger, lang: Lang) -> String {
    let nl = lang == Lang::Nl;
    let euros = |cents: i64| money(cents, "EUR", lang);
    match trigger {
        Trigger::BasketTotal { min_total_cents } => {
            if nl {
                format!("bon van minstens {}", euros(*min_total_cents))
            } else {
                format!("basket of at least {}", euros(*min_total_cents))
            }
        }
        Trigger::BasketCategory {
            category,
            min_total_cents,
        } => {
            if nl {
                format!("{} aan {category}", euros(*min_total_cents))
            } else {
                format!("{} on {category}", euros(*min_total_cents))
            }
        }
        Trigger::Birthday { within_days } => {
            if nl {
                format!("verjaardag (binnen {within_days} dagen)")
            } else {
                format!("birthday (within {within_days} days)")
            }
        }
        Trigger::Anniversary { within_days } => {
            if nl {
                format!("lidmaatschapsjubileum (binnen {within_days} dagen)")
            } else {
                format!("membership anniversary (within {within_days} days)")
            }
        }
        Trigger::PointsThreshold { points } => {
            if nl {
                format!("minstens {points} punten")
            } else {
                format!("at least {points} points")
            }
        }
        Trigger::Lapsed { lapsed_days } => {
            if nl {
                format!("{lapsed_days} dagen niet geweest")
            } else {
                format!("no visit for {lapsed_days} days")
            }
        }
        Trigger::FirstVisit => {
            if nl {
                "eerste bezoek (welkom)".into()
            } else {
                "first visit (welcome)".into()
            }
        }
    }
}

fn stores_text(ctx: &Ctx, campaign: &Campaign) -> String {
    match &campaign.stores {
        None => ctx.t(Msg::AllStores).to_string(),
        Some(stores) => stores.join(", "),
    }
}

fn caps_text(ctx: &Ctx, campaign: &Campaign) -> String {
    fill(
        ctx.t(Msg::CapText),
        &[
            i64::from(campaign.max_per_customer),
            i64::from(campaign.cap_days),
        ],
    )
}

pub async fn list(State(console): State<Console>, ctx: Ctx) -> Result<Response, PageError> {
    let Some(set) = console.api.campaigns.as_ref().clone() else {
        let body = html! { p { (ctx.t(Msg::NoCampaigns)) } };
        return Ok(render(
            &ctx,
            Section::Campaigns,
            ctx.t(Msg::Campaigns),
            body,
        ));
    };
    let counts = read(&console, &ctx, coupon_kpis::coupon_counts).await?;
    let body = html! {
        div.table-wrap { table #campaigns {
            thead { tr {
                th { (ctx.t(Msg::Campaigns)) }
                th { (ctx.t(Msg::Trigger)) }
                th { (ctx.t(Msg::Stores)) }
                th.num { (ctx.t(Msg::ControlShare)) }
                th { (ctx.t(Msg::Caps)) }
                th.num { (ctx.t(Msg::Issued)) }
                th.num { (ctx.t(Msg::WouldHave)) }
                th.num { (ctx.t(Msg::Redeemed)) }
            } }
            tbody {
                @for c in &set.campaigns {
                    @let n = counts.get(&c.id).copied().unwrap_or_default();
                    tr data-campaign=(c.id) {
                        td { a href={ "/console/campaigns/" (c.id) } { (c.name) } br; code { (c.id) } }
                        td { (trigger_text(&c.trigger, ctx.lang)) }
                        td { (stores_text(&ctx, c)) }
                        td.num { (c.control_percent) " %" }
                        td { (caps_text(&ctx, c)) }
                        td.num { (n.issued) }
                        td.num { (n.control) }
                        td.num { (n.redeemed) }
                    }
                }
            }
        } }
    };
    Ok(render(
        &ctx,
        Section::Campaigns,
        ctx.t(Msg::Campaigns),
        body,
    ))
}

fn certainty_text(ctx: &Ctx, certainty: Certainty) -> Markup {
    let lang = ctx.lang;
    match certainty {
        Certainty::TooFew { treated, control } => html! {
            p #certainty.notice data-certainty="too-few" {
                (fill(ctx.t(Msg::TooFew), &[treated as i64, control as i64, MIN_CUSTOMERS_PER_GROUP as i64]))
            }
        },
        Certainty::Interval {
            difference_cents,
            low_cents,
            high_cents,
        } => html! {
            p #certainty data-certainty="interval" {
                (ctx.t(Msg::Interval95)) ": " (money_f(low_cents, "EUR", lang)) " … " (money_f(high_cents, "EUR", lang))
                " (" (ctx.t(Msg::Difference)) " " (money_f(difference_cents, "EUR", lang)) "). "
                @if low_cents <= 0.0 && high_cents >= 0.0 { (ctx.t(Msg::NotSure)) } @else { (ctx.t(Msg::Sure)) }
            }
        },
    }
}

pub async fn page(
    State(console): State<Console>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let Some(campaign) = console
        .api
        .campaigns
        .as_ref()
        .as_ref()
        .and_then(|set| set.get(&id))
        .cloned()
    else {
        return Err(PageError::not_found(&ctx, format!("no campaign {id:?}")));
    };
    let campaign_id = campaign.id.clone();
    let rows = read(&console, &ctx, move |db| {
        coupon_kpis::campaign_rows(db, &campaign_id)
    })
    .await?;
    let window = campaign.valid_days;
    let kpis = kpis::campaign_kpis(
        &campaign.id,
        window,
        &rows.coupons,
        &rows.scans,
        &rows.receipts,
    );
    let report = campaign_report(window, &rows.coupons, &rows.scans, &rows.receipts);
    let lang = ctx.lang;
    let up = &kpis.uplift;
    let day_labels: Vec<String> = report.days.iter().map(|d| day_label(d.day)).collect();
    let spend_labels: Vec<String> = report.spend.iter().map(|p| p.day.to_string()).collect();
    let count = |v: f64| format!("{v:.0}");
    let euros = |v: f64| money_f(v, "EUR", lang);
    let per_day = [
        Series {
            name: ctx.t(Msg::Issued),
            values: report.days.iter().map(|d| d.issued as f64).collect(),
            style: Style::Solid,
        },
        Series {
            name: ctx.t(Msg::Redeemed),
            values: report.days.iter().map(|d| d.redeemed as f64).collect(),
            style: Style::Alternate,
        },
    ];
    let spend = [
        Series {
            name: ctx.t(Msg::Treated),
            values: report.spend.iter().map(|p| p.treated_cents).collect(),
            style: Style::Solid,
        },
        Series {
            name: ctx.t(Msg::Control),
            values: report.spend.iter().map(|p| p.control_cents).collect(),
            style: Style::Alternate,
        },
    ];
    let body = html! {
        div.grid {
            section.card {
                h2 { (ctx.t(Msg::Trigger)) }
                dl.facts {
                    dt { "id" } dd { code { (campaign.id) } }
                    dt { (ctx.t(Msg::Trigger)) } dd { (trigger_text(&campaign.trigger, lang)) }
                    dt { (ctx.t(Msg::Offer)) } dd { (campaign.offer) }
                    dt { (ctx.t(Msg::Stores)) } dd { (stores_text(&ctx, &campaign)) }
                    dt { (ctx.t(Msg::ControlShare)) } dd { (campaign.control_percent) " %" }
                    dt { (ctx.t(Msg::Caps)) } dd { (caps_text(&ctx, &campaign)) }
                    dt { (ctx.t(Msg::ValidDays)) } dd { (campaign.valid_days) }
                    @if let Some(segments) = &campaign.segments {
                        dt { (ctx.t(Msg::Segments)) } dd { (segments.join(", ")) }
                    }
                }
            }
            section.card #kpis {
                h2 { (ctx.t(Msg::Kpis)) }
                dl.figures {
                    div { dt { (ctx.t(Msg::Issued)) } dd #kpi-issued { (kpis.issued) } }
                    div { dt { (ctx.t(Msg::WouldHave)) } dd #kpi-control { (kpis.control) } }
                    div { dt { (ctx.t(Msg::Redeemed)) } dd #kpi-redeemed { (kpis.redeemed) } }
                    div { dt { (ctx.t(Msg::RedemptionRate)) } dd #kpi-rate { (percent(kpis.redemption_rate, lang)) } }
                    div { dt { (ctx.t(Msg::Revenue)) } dd #kpi-revenue { (money(kpis.revenue_cents, "EUR", lang)) } }
                    div { dt { (ctx.t(Msg::Duplicates)) } dd #kpi-duplicates { (kpis.duplicate_redemptions) } }
                    div { dt { (ctx.t(Msg::Forgeries)) } dd #kpi-forged { (kpis.forged_redemptions) } }
                }
            }
            section.card #uplift {
                h2 { (ctx.t(Msg::Uplift)) }
                p.help { (fill(ctx.t(Msg::UpliftWindow), &[i64::from(up.window_days)])) }
                div.table-wrap { table {
                    thead { tr { th {} th.num { (ctx.t(Msg::Customers)) } th.num { (ctx.t(Msg::SpendPerCustomer)) } } }
                    tbody {
                        tr { th { (ctx.t(Msg::Treated)) } td.num #treated-customers { (up.treated_customers) } td.num #treated-spend { (money(up.treated_spend_per_customer_cents, "EUR", lang)) } }
                        tr { th { (ctx.t(Msg::Control)) } td.num #control-customers { (up.control_customers) } td.num #control-spend { (money(up.control_spend_per_customer_cents, "EUR", lang)) } }
                    }
                } }
                p {
                    strong { (ctx.t(Msg::Uplift)) ": " }
                    span #uplift-value {
                        @match (up.uplift_cents_per_customer, up.uplift_percent) {
                            (Some(cents), Some(pct)) => { (money(cents, "EUR", lang)) " (" (format!("{pct:+.2}")) " %)" }
                            (Some(cents), None) => { (money(cents, "EUR", lang)) }
                            _ => "–",
                        }
                    }
                }
                (certainty_text(&ctx, report.certainty))
            }
        }
        section.card.wide {
            h2 { (ctx.t(Msg::PerStore)) }
            div.table-wrap { table #per-store {
                thead { tr {
                    th { (ctx.t(Msg::Store)) }
                    th.num { (ctx.t(Msg::Issued)) }
                    th.num { (ctx.t(Msg::WouldHave)) }
                    th.num { (ctx.t(Msg::Redeemed)) }
                    th.num { (ctx.t(Msg::Duplicates)) }
                    th.num { (ctx.t(Msg::Forgeries)) }
                    th.num { (ctx.t(Msg::Refused)) }
                } }
                tbody {
                    @for s in &report.stores {
                        tr data-store=(s.store) {
                            td { (s.store) }
                            td.num { (s.issued) }
                            td.num { (s.control) }
                            td.num { (s.redeemed) }
                            td.num { (s.duplicates) }
                            td.num { (s.forged) }
                            td.num { (s.refused) }
                        }
                    }
                }
            } }
        }
        section.card.wide {
            div.charts {
                (charts::bars(&Chart { lang, id: "per-day", title: ctx.t(Msg::IssuedRedeemedPerDay), axis: ctx.t(Msg::Day), labels: &day_labels, series: &per_day, fmt: &count, floor: 1.0 }))
                (charts::lines(&Chart { lang, id: "spend", title: ctx.t(Msg::CumulativeSpend), axis: ctx.t(Msg::DaysAfter), labels: &spend_labels, series: &spend, fmt: &euros, floor: 100.0 }))
            }
        }
    };
    Ok(render(&ctx, Section::Campaigns, &campaign.name, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_read_as_sentences_in_both_languages() {
        let t = Trigger::BasketTotal {
            min_total_cents: 5000,
        };
        assert_eq!(trigger_text(&t, Lang::En), "basket of at least €50.00");
        assert_eq!(trigger_text(&t, Lang::Nl), "bon van minstens € 50,00");
        assert_eq!(
            trigger_text(&Trigger::Lapsed { lapsed_days: 60 }, Lang::Nl),
            "60 dagen niet geweest"
        );
        assert_eq!(
            trigger_text(&Trigger::PointsThreshold { points: 500 }, Lang::En),
            "at least 500 points"
        );
    }
}
