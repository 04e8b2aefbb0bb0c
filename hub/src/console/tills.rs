//! `/console/tills`: every agent with its state. Which state a till is in is decided
//! here, pure ([`classify`]): connected to this hub, or heard from (receipts, health,
//! the clock report every minute) within `[console] silent_after_seconds`, or silent.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use maud::{html, Markup};
use till360_shared::AgentId;

use super::i18n::Msg;
use super::page::{self, fill, render, Section};
use super::{read, Console, Ctx, PageError};
use crate::pki::revocations::Revoked;
use crate::store::{AgentView, ChainStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TillState {
    /// Not connected and not heard from within the silence threshold.
    Silent,
    /// Connected, with events still to send.
    Behind,
    /// Not connected now, but heard from recently.
    Offline,
    /// Connected with nothing pending.
    Syncing,
}

impl TillState {
    pub fn label(self) -> Msg {
        match self {
            TillState::Silent => Msg::Silent,
            TillState::Behind => Msg::Behind,
            TillState::Offline => Msg::Offline,
            TillState::Syncing => Msg::Syncing,
        }
    }

    pub fn class(self) -> &'static str {
        match self {
            TillState::Silent => "silent",
            TillState::Behind => "behind",
            TillState::Offline => "offline",
            TillState::Syncing => "syncing",
        }
    }
}

/// A till as the console shows it.
#[derive(Debug, Clone)]
pub struct TillRow {
    pub agent: AgentView,
    pub state: TillState,
    /// The latest of last seen, health report and clock report (hub clock, ms).
    pub last_contact_ms: Option<i64>,
    /// The epoch of the live connection's certificate, else the highest seen.
    pub epoch: Option<u64>,
    pub connected: bool,
    pub revoked: Vec<Revoked>,
}

fn ms_of(rfc3339: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Each agent with its state at `now_ms`; silent tills first, then by store and till.
pub fn classify(
    agents: Vec<AgentView>,
    connected: &BTreeMap<AgentId, u64>,
    epochs: &std::collections::HashMap<AgentId, u64>,
    revocations: &[Revoked],
    now_ms: i64,
    silent_after: Duration,
) -> Vec<TillRow> {
    let silent_ms = i64::try_from(silent_after.as_millis()).unwrap_or(i64::MAX);
    let mut rows: Vec<TillRow> = agents
        .into_iter()
        .map(|agent| {
            let id = AgentId::new(agent.store.clone(), agent.till.clone());
            let last_contact_ms = [
                ms_of(&agent.last_seen),
                agent.health.as_ref().and_then(|h| ms_of(&h.reported_at)),
                agent.clock.as_ref().and_then(|c| ms_of(&c.reported_at)),
            ]
            .into_iter()
            .flatten()
            .max();
            let live_epoch = connected.get(&id).copied();
            let is_connected = live_epoch.is_some();
            // A report's backlog is stale once a batch came in after it (tills report
            // the backlog in steps, not every change).
            let pending = agent
                .health
                .as_ref()
                .filter(|h| ms_of(&h.reported_at) >= ms_of(&agent.last_seen))
                .map_or(0, |h| h.pending);
            let heard_recently =
                last_contact_ms.is_some_and(|at| now_ms.saturating_sub(at) <= silent_ms);
            let state = match (is_connected, heard_recently) {
                (true, _) if pending > 0 => TillState::Behind,
                (true, _) => TillState::Syncing,
                (false, true) => TillState::Offline,
                (false, false) => TillState::Silent,
            };
            let revoked = revocations
                .iter()
                .filter(|r| r.store == agent.store && r.till == agent.till)
                .cloned()
                .collect();
            TillRow {
                epoch: live_epoch.or_else(|| epochs.get(&id).copied()),
                agent,
                state,
                last_contact_ms,
                connected: is_connected,
                revoked,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        (a.state != TillState::Silent, &a.agent.store, &a.agent.till).cmp(&(
            b.state != TillState::Silent,
            &b.agent.store,
            &b.agent.till,
        ))
    });
    rows
}

/// The tills now, for this page and the overview.
pub async fn till_rows(console: &Console, ctx: &Ctx) -> Result<Vec<TillRow>, PageError> {
    let (agents, epochs) = read(console, ctx, |db| {
        Ok((
            crate::store::agents::agents(db)?,
            crate::store::pki::till_epochs(db)?,
        ))
    })
    .await?;
    let (connected, revocations) = match &console.options.gate {
        Some(gate) => (gate.connected(), gate.revocations()),
        None => (BTreeMap::new(), Vec::new()),
    };
    Ok(classify(
        agents,
        &connected,
        &epochs,
        &revocations,
        super::session::now_ms(),
        console.options.silent_after,
    ))
}

pub fn state_badge(ctx: &Ctx, state: TillState) -> Markup {
    html! { span.badge.(state.class()) { (ctx.t(state.label())) } }
}

/// A journal size in KiB below a MiB, else in MiB.
fn bytes(n: u64) -> String {
    const KIB: f64 = 1024.0;
    if n < 1024 * 1024 {
        format!("{:.0} KiB", n as f64 / KIB)
    } else {
        format!("{:.1} MiB", n as f64 / (KIB * KIB))
    }
}

pub async fn page(State(console): State<Console>, ctx: Ctx) -> Result<Response, PageError> {
    let rows = till_rows(&console, &ctx).await?;
    let silent_secs = console.options.silent_after.as_secs() as i64;
    let body = html! {
        p.help { (fill(ctx.t(Msg::SilentHelp), &[silent_secs])) }
        @if rows.is_empty() {
            p { (ctx.t(Msg::NoTills)) }
        } @else {
            div.table-wrap {
                table #tills {
                    thead { tr {
                        th { (ctx.t(Msg::Store)) " / " (ctx.t(Msg::Till)) }
                        th { (ctx.t(Msg::Status)) }
                        th { (ctx.t(Msg::LastSeen)) }
                        th.num { (ctx.t(Msg::LastSeq)) }
                        th.num { (ctx.t(Msg::Backlog)) }
                        th { (ctx.t(Msg::Journal)) }
                        th { (ctx.t(Msg::Chain)) }
                        th.num { (ctx.t(Msg::Epoch)) }
                        th { (ctx.t(Msg::Revoked)) }
                    } }
                    tbody {
                        @for row in &rows {
                            tr.silent[row.state == TillState::Silent] data-till={ (row.agent.store) "/" (row.agent.till) } data-state=(row.state.class()) {
                                td { (row.agent.store) " / " (row.agent.till) }
                                td {
                                    (state_badge(&ctx, row.state))
                                    @if row.connected { " " span.muted { (ctx.t(Msg::Connected)) } }
                                }
                                td { (row.last_contact_ms.map(|ms| till360_shared::Timestamp::from_unix_ms(ms, 0).to_rfc3339()).map(|t| page::when(&t)).unwrap_or_default()) " UTC" }
                                td.num { (row.agent.last_seq) }
                                td.num { (row.agent.health.as_ref().map(|h| h.pending.to_string()).unwrap_or_else(|| "–".into())) }
                                td {
                                    @match &row.agent.health {
                                        Some(h) => {
                                            (bytes(h.journal_bytes)) " / " (bytes(h.journal_max_bytes)) " " (ctx.t(Msg::Quota))
                                            @if h.quota_exceeded { " " span.badge.bad { (ctx.t(Msg::QuotaExceeded)) } }
                                        }
                                        None => "–",
                                    }
                                }
                                td {
                                    @match &row.agent.chain {
                                        ChainStatus::Ok => span.badge.good { "ok" },
                                        ChainStatus::Broken { broken_at_seq, detected_at } => {
                                            span.badge.bad { (ctx.t(Msg::BrokenAt)) " " (broken_at_seq) }
                                            " " span.muted { (page::when(detected_at)) }
                                        }
                                    }
                                }
                                td.num { (row.epoch.map(|e| e.to_string()).unwrap_or_else(|| "–".into())) }
                                td {
                                    @if row.revoked.is_empty() {
                                        (ctx.t(Msg::No))
                                    } @else {
                                        span.badge.bad { (ctx.t(Msg::Yes)) }
                                        @for r in &row.revoked {
                                            " " span.muted { (r.describe()) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(render(&ctx, Section::Tills, ctx.t(Msg::Tills), body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::HealthView;

    fn agent(till: &str, last_seen: &str, pending: Option<u64>) -> AgentView {
        AgentView {
            store: "S1".into(),
            till: till.into(),
            last_seq: 7,
            last_seen: last_seen.into(),
            chain: ChainStatus::Ok,
            health: pending.map(|pending| HealthView {
                journal_bytes: 1,
                journal_max_bytes: 2,
                quota_exceeded: false,
                quarantined: 0,
                pending,
                reported_at: last_seen.into(),
                unbalanced_receipts: 0,
                unrecognised_scans: 0,
            }),
            last_refusal: None,
            certificate_alert: None,
            clock: None,
            suppressed_events: 0,
        }
    }

    #[test]
    fn states_follow_connection_contact_and_backlog() {
        // now = 2026-12-05T10:00:00Z; silent after 15 minutes.
        let now = 1_796_464_800_000;
        let agents = vec![
            agent("T1", "2026-12-05T09:59:00Z", Some(0)),
            agent("T2", "2026-12-05T09:59:00Z", Some(12)),
            // A backlog reported before the last batch came in is gone.
            AgentView {
                last_seen: "2026-12-05T09:59:30Z".into(),
                ..agent("T6", "2026-12-05T09:59:00Z", Some(40))
            },
            agent("T3", "2026-12-05T09:50:00Z", None),
            agent("T4", "2026-12-05T09:40:00Z", None),
            // Connected but not heard from for long (an idle till between clock
            // reports is still connected): not silent.
            agent("T5", "2026-12-05T08:00:00Z", None),
        ];
        let connected: BTreeMap<AgentId, u64> = [
            (AgentId::new("S1", "T1"), 2),
            (AgentId::new("S1", "T2"), 1),
            (AgentId::new("S1", "T5"), 1),
            (AgentId::new("S1", "T6"), 1),
        ]
        .into();
        let epochs = [(AgentId::new("S1", "T4"), 3)].into();
        let revoked = vec![Revoked {
            store: "S1".into(),
            till: "T4".into(),
            serial: "all".into(),
            through_epoch: None,
            when: String::new(),
            reason: "stolen".into(),
        }];
        let rows = classify(
            agents,
            &connected,
            &epochs,
            &revoked,
            now,
            Duration::from_secs(900),
        );
        let got: Vec<(&str, TillState, Option<u64>, usize)> = rows
            .iter()
            .map(|r| (r.agent.till.as_str(), r.state, r.epoch, r.revoked.len()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("T4", TillState::Silent, Some(3), 1),
                ("T1", TillState::Syncing, Some(2), 0),
                ("T2", TillState::Behind, Some(1), 0),
                ("T3", TillState::Offline, None, 0),
                ("T5", TillState::Syncing, Some(1), 0),
                ("T6", TillState::Syncing, Some(1), 0),
            ]
        );
    }
}
