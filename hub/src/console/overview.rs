//! `/console/`: the overview. Profiles, receipts and revenue per day (30 days), the
//! active campaigns with today's coupons, the tills by state, and the identifiers
//! blocked from merging or flagged as suspicious.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::Response;
use maud::html;

use super::charts::{self, Chart, Series, Style};
use super::i18n::Msg;
use super::page::{money, render, Section};
use super::tills::{state_badge, till_rows, TillState};
use super::{read, Console, Ctx, PageError};
use crate::store::activity::{self, DayActivity, DAY_MS};

/// How many days the charts show.
pub const DAYS: i64 = 30;

/// The last [`DAYS`] UTC days ending with today's, with zeros for days without
/// activity.
pub fn last_days(today: i64, activity: &[DayActivity]) -> Vec<DayActivity> {
    let by_day: BTreeMap<i64, &DayActivity> = activity.iter().map(|d| (d.day, d)).collect();
    (today - DAYS + 1..=today)
        .map(|day| {
            by_day.get(&day).map_or(
                DayActivity {
                    day,
                    ..DayActivity::default()
                },
                |d| **d,
            )
        })
        .collect()
}

/// `MM-DD` of a UTC day number.
pub fn day_label(day: i64) -> String {
    chrono::DateTime::from_timestamp_millis(day * DAY_MS)
        .map(|t| t.format("%m-%d").to_string())
        .unwrap_or_default()
}

pub async fn page(State(console): State<Console>, ctx: Ctx) -> Result<Response, PageError> {
    let now = super::session::now_ms();
    let today = now.div_euclid(DAY_MS);
    let since = (today - DAYS + 1) * DAY_MS;
    let (totals, activity, coupon_days, blocked, suspicious) = read(&console, &ctx, move |db| {
        Ok((
            activity::totals(db)?,
            activity::daily_activity(db, since)?,
            activity::coupon_days(db, today * DAY_MS)?,
            crate::store::segments::blocked_identifiers(db)?,
            crate::store::suspicious::list(db)?,
        ))
    })
    .await?;
    let tills = till_rows(&console, &ctx).await?;
    let days = last_days(today, &activity);
    let labels: Vec<String> = days.iter().map(|d| day_label(d.day)).collect();
    let lang = ctx.lang;
    let count = |v: f64| format!("{v:.0}");
    let euros = |v: f64| money(v.round() as i64, "EUR", lang);
    let flagged: Vec<_> = suspicious
        .iter()
        .filter(|s| s.status == "flagged")
        .collect();
    let campaigns = console.api.campaigns.as_ref().as_ref();
    let state_count = |state: TillState| tills.iter().filter(|t| t.state == state).count();
    let day_chart =
        |id: &str, title: Msg, values: Vec<f64>, fmt: &dyn Fn(f64) -> String, floor: f64| {
            let series = [Series {
                name: ctx.t(title),
                values,
                style: Style::Solid,
            }];
            charts::bars(&Chart {
                lang,
                id,
                title: ctx.t(title),
                axis: ctx.t(Msg::Day),
                labels: &labels,
                series: &series,
                fmt,
                floor,
            })
        };
    let body = html! {
        div.grid {
            section.card {
                h2 { (ctx.t(Msg::Profiles)) " · " (ctx.t(Msg::Transactions)) }
                dl.figures {
                    div { dt { (ctx.t(Msg::Profiles)) } dd #total-profiles { (totals.profiles) } }
                    div { dt { (ctx.t(Msg::Transactions)) } dd #total-transactions { (totals.transactions) } }
                    div { dt { (ctx.t(Msg::Revenue)) } dd { (money(totals.revenue_cents, "EUR", lang)) } }
                }
            }
            section.card {
                h2 { a href="/console/tills" { (ctx.t(Msg::Tills)) } }
                dl.figures {
                    @for state in [TillState::Syncing, TillState::Behind, TillState::Offline, TillState::Silent] {
                        div { dt { (state_badge(&ctx, state)) } dd data-state=(state.class()) { (state_count(state)) } }
                    }
                }
                @let silent: Vec<_> = tills.iter().filter(|t| t.state == TillState::Silent).collect();
                @if !silent.is_empty() {
                    p { (ctx.t(Msg::Silent)) ": "
                        @for (i, t) in silent.iter().enumerate() {
                            @if i > 0 { ", " }
                            (t.agent.store) "/" (t.agent.till)
                        }
                    }
                }
            }
            section.card {
                h2 { (ctx.t(Msg::Blocked)) " · " (ctx.t(Msg::Suspicious)) }
                dl.figures {
                    div { dt { (ctx.t(Msg::Blocked)) } dd { (blocked.len()) } }
                    div { dt { (ctx.t(Msg::Suspicious)) } dd { (flagged.len()) } }
                }
                @if !blocked.is_empty() || !flagged.is_empty() {
                    ul.plain {
                        @for b in blocked.iter().take(5) {
                            li { code { (b.kind) " " (b.value) } " — " (b.reason) }
                        }
                        @for s in flagged.iter().take(5) {
                            li { code { (s.kind) " " (s.card) } " — " (s.flagged_at) }
                        }
                    }
                }
            }
        }
        section.card.wide {
            h2 { (ctx.t(Msg::PerDay)) }
            div.charts {
                (day_chart("new-profiles", Msg::NewProfiles, days.iter().map(|d| d.new_profiles as f64).collect(), &count, 1.0))
                (day_chart("receipts", Msg::Transactions, days.iter().map(|d| d.transactions as f64).collect(), &count, 1.0))
                (day_chart("revenue", Msg::Revenue, days.iter().map(|d| d.revenue_cents as f64).collect(), &euros, 100.0))
            }
        }
        section.card.wide {
            h2 { (ctx.t(Msg::ActiveCampaigns)) }
            @match campaigns {
                None => p { (ctx.t(Msg::NoCampaigns)) },
                Some(set) => div.table-wrap { table #active-campaigns {
                    thead { tr { th { (ctx.t(Msg::Campaigns)) } th { (ctx.t(Msg::Trigger)) } th.num { (ctx.t(Msg::IssuedToday)) } th.num { (ctx.t(Msg::RedeemedToday)) } } }
                    tbody {
                        @for c in &set.campaigns {
                            @let day = coupon_days.get(&(c.id.clone(), today)).copied().unwrap_or_default();
                            tr data-campaign=(c.id) {
                                td { a href={ "/console/campaigns/" (c.id) } { (c.name) } }
                                td { (super::campaigns::trigger_text(&c.trigger, lang)) }
                                td.num { (day.issued) }
                                td.num { (day.redeemed) }
                            }
                        }
                    }
                } },
            }
        }
    };
    Ok(render(&ctx, Section::Overview, ctx.t(Msg::Overview), body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirty_days_with_zeros_for_quiet_days() {
        let today = 20_000;
        let activity = [
            DayActivity {
                day: today,
                transactions: 3,
                ..DayActivity::default()
            },
            DayActivity {
                day: today - 40,
                transactions: 9,
                ..DayActivity::default()
            },
        ];
        let days = last_days(today, &activity);
        assert_eq!(days.len(), 30);
        assert_eq!(days[0].day, today - 29);
        assert_eq!(days[29].transactions, 3);
        assert_eq!(days.iter().map(|d| d.transactions).sum::<u64>(), 3);
        assert_eq!(day_label(20_000), "10-04");
    }
}
