//! The checkers run after every simulated history: what the tills journaled against
//! what the hub holds. The tills' journaled events (read back right after each
//! append, before any erasure rewrote them) are the truth.

use std::collections::{BTreeMap, BTreeSet};

use till360_hub::config::DatabaseUrl;
use till360_hub::store::sql::SqlExt as _;
use till360_hub::store::{Database, DatabaseOptions, IngestRequest, SqlStore, Store};
use till360_shared::coupon::CardKey;
use till360_shared::{AgentId, CardNumber, Event, EventKind, Timestamp};

use crate::faults::total_queue::{ReceiptKey, TotalQueue};

/// What the run saw happen.
#[derive(Debug, Default)]
pub struct Observed {
    /// Every journaled event per till, in seq order, as appended.
    pub events: BTreeMap<AgentId, Vec<Event>>,
    /// Every journaled receipt.
    pub receipts: Vec<ReceiptKey>,
    /// Erasures: the erased cards, when (hub time, ms) and the log's version.
    pub erasures: Vec<(Vec<CardNumber>, i64, u64)>,
    /// Liveness problems (the run did not converge).
    pub stuck: Vec<String>,
    /// `Refused` frames the tills got.
    pub refusals: Vec<String>,
}

impl Observed {
    pub fn journaled(&mut self, agent: &AgentId, event: Event) {
        if let EventKind::Receipt(receipt) = &event.kind {
            let no = receipt.receipt_no.clone().unwrap_or_default();
            self.receipts
                .push(ReceiptKey::new(&agent.store, &agent.till, &no));
        }
        self.events.entry(agent.clone()).or_default().push(event);
    }

    pub fn erased(&mut self, cards: Vec<CardNumber>, at_ms: i64, version: u64) {
        self.erasures.push((cards, at_ms, version));
    }
}

/// What a till's journal holds at the end.
#[derive(Debug)]
pub struct TillEnd {
    pub id: AgentId,
    pub erasure_version: u64,
    /// The digest cache's card keys, and the key that makes them from a card.
    pub cached_digests: Vec<CardKey>,
    pub digest_key: Option<[u8; 32]>,
}

/// The checks' findings; a run passes when there are no problems.
#[derive(Debug, Default)]
pub struct Verdict {
    pub problems: Vec<String>,
    /// Profiles compared with the fault-free reference.
    pub profiles_compared: usize,
}

/// Runs every check.
pub fn check(
    hub: &mut SqlStore,
    tills: &[AgentId],
    journals: &[TillEnd],
    observed: &Observed,
) -> anyhow::Result<Verdict> {
    let mut verdict = Verdict::default();
    verdict.problems.extend(observed.stuck.iter().cloned());
    verdict.problems.extend(observed.refusals.iter().cloned());
    let refused = hub.sql().query(
        "SELECT store, till, reason, detail FROM agent_alerts WHERE kind = 'refusal'",
        till360_hub::sql_params![],
    )?;
    for row in refused {
        let (store, till, reason, detail): (String, String, String, String) =
            (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
        verdict.problems.push(format!(
            "till {store}/{till}: a batch was refused ({reason}: {detail})"
        ));
    }
    exactly_once(hub, observed, &mut verdict)?;
    erasures(hub, tills, journals, observed, &mut verdict)?;
    coupons(hub, &mut verdict)?;
    profiles_match_reference(hub, observed, &mut verdict)?;
    Ok(verdict)
}

/// Lost 0, duplicated 0, unexpected 0: receipts by their number, and every event by
/// its till and seq.
fn exactly_once(hub: &SqlStore, observed: &Observed, verdict: &mut Verdict) -> anyhow::Result<()> {
    let at_hub = hub.committed_receipts()?.into_iter().map(|r| {
        ReceiptKey::new(
            &r.store,
            &r.till,
            r.receipt_no.as_deref().unwrap_or_default(),
        )
    });
    let queue = TotalQueue::count(observed.receipts.iter().cloned(), at_hub);
    if !queue.is_exactly_once() {
        verdict
            .problems
            .push(format!("receipts not exactly once: {queue}"));
    }
    // The console's daily rollup agrees with the receipts it sums (kept by the ingest).
    let rollup = hub.sql().query(
        "SELECT t.store, t.till, t.n, t.cents, COALESCE(d.n, 0), COALESCE(d.cents, 0)
         FROM (SELECT store, till, COUNT(*) AS n, SUM(total_cents) AS cents
               FROM transactions GROUP BY store, till) t
         LEFT JOIN (SELECT store, till, SUM(receipts) AS n, SUM(revenue_cents) AS cents
                    FROM receipt_days GROUP BY store, till) d
           ON d.store = t.store AND d.till = t.till",
        till360_hub::sql_params![],
    )?;
    for row in rollup {
        let (store, till): (String, String) = (row.get(0)?, row.get(1)?);
        let (n, cents, days_n, days_cents): (i64, i64, i64, i64) =
            (row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?);
        if (n, cents) != (days_n, days_cents) {
            verdict.problems.push(format!(
                "till {store}/{till}: {n} receipts of {cents} cents stored, the daily rollup says {days_n} of {days_cents}"
            ));
        }
    }
    for (agent, events) in &observed.events {
        let high_water: i64 = hub
            .sql()
            .query_one(
                "SELECT COALESCE(MAX(last_seq), 0) FROM agents WHERE store = ?1 AND till = ?2",
                till360_hub::sql_params![agent.store.clone(), agent.till.clone()],
            )?
            .get(0)?;
        let last = events.last().map_or(0, |e| e.seq);
        if high_water as u64 != last {
            verdict.problems.push(format!(
                "till {agent}: hub high-water mark {high_water}, journal's last seq {last}"
            ));
        }
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        let gapless = seqs.iter().enumerate().all(|(i, s)| *s == i as u64 + 1);
        if !gapless {
            verdict
                .problems
                .push(format!("till {agent}: journal seqs are not 1..n: {seqs:?}"));
        }
    }
    Ok(())
}

/// Every till that was reachable applied every erasure; an erased card is gone from
/// the hub unless an event dated after the erase named it again.
fn erasures(
    hub: &mut SqlStore,
    tills: &[AgentId],
    journals: &[TillEnd],
    observed: &Observed,
    verdict: &mut Verdict,
) -> anyhow::Result<()> {
    let hub_version = till360_hub::store::erasures::erasure_version(hub.sql())?;
    for till in tills {
        match journals.iter().find(|t| &t.id == till).map(|t| &t.erasure_version) {
            Some(version) if *version == hub_version => {}
            Some(version) => verdict.problems.push(format!(
                "till {till}: erasures applied up to version {version}, the hub's log is at {hub_version}"
            )),
            None => verdict.problems.push(format!("till {till}: not running at the end")),
        }
    }
    for (cards, at_ms, version) in &observed.erasures {
        for card in cards {
            let named_later = observed
                .events
                .values()
                .flatten()
                .any(|e| e.recorded_at.unix_ms >= *at_ms && event_names(e, card));
            if named_later {
                continue;
            }
            for till in journals {
                let Some(key) = till.digest_key else {
                    continue;
                };
                if till.cached_digests.contains(&CardKey::of(&key, card)) {
                    verdict.problems.push(format!(
                        "till {}: still holds the digest of card {} erased at version {version}",
                        till.id,
                        card.masked()
                    ));
                }
            }
            if let Some(profile) = hub.profile_by_card(card)? {
                verdict.problems.push(format!(
                    "card {} erased (version {version}) is back in profile {} with no event dated after the erase",
                    card.masked(),
                    profile.profile_id
                ));
            }
        }
    }
    Ok(())
}

fn event_names(event: &Event, card: &CardNumber) -> bool {
    match &event.kind {
        EventKind::CardScanned { card: c } => c == card,
        EventKind::Receipt(r) => r.card.as_ref() == Some(card),
        EventKind::CouponIssued(i) | EventKind::CouponWouldHave(i) => i.card.as_ref() == Some(card),
        _ => false,
    }
}

/// Control groups hold: no customer both held back and given a coupon of one campaign.
/// Every redemption of a code after the first is counted as a duplicate.
fn coupons(hub: &SqlStore, verdict: &mut Verdict) -> anyhow::Result<()> {
    let mixed = hub.sql().query(
        "SELECT campaign_id, customer_key FROM coupons WHERE customer_key IS NOT NULL
         GROUP BY campaign_id, customer_key HAVING MIN(control) <> MAX(control)",
        till360_hub::sql_params![],
    )?;
    for row in mixed {
        let campaign: String = row.get(0)?;
        verdict.problems.push(format!(
            "campaign {campaign}: one customer is both in the control group and treated"
        ));
    }
    let twice = hub.sql().query(
        "SELECT code, COUNT(*) FROM redemptions WHERE status IN ('genuine', 'unchecked')
         GROUP BY code HAVING COUNT(*) > 1",
        till360_hub::sql_params![],
    )?;
    let mut expected_duplicates: BTreeMap<String, u64> = BTreeMap::new();
    for row in twice {
        let code: String = row.get(0)?;
        let count: i64 = row.get(1)?;
        let campaign = hub
            .sql()
            .query_one(
                "SELECT COALESCE(MAX(campaign_id), '') FROM redemptions WHERE code = ?1",
                till360_hub::sql_params![code.clone()],
            )?
            .get::<String>(0)?;
        *expected_duplicates.entry(campaign).or_default() += count as u64 - 1;
    }
    for (campaign, expected) in expected_duplicates {
        let kpis = hub.campaign_kpis(&campaign, 14)?;
        if kpis.duplicate_redemptions < expected {
            verdict.problems.push(format!(
                "campaign {campaign}: {expected} repeated redemptions, {} counted as duplicates",
                kpis.duplicate_redemptions
            ));
        }
    }
    Ok(())
}

/// The hub's profiles equal those of a fault-free run of the same events: every
/// till's journal ingested in one go into a fresh store. Erased cards are left out
/// (the reference has no erasures).
fn profiles_match_reference(
    hub: &mut SqlStore,
    observed: &Observed,
    verdict: &mut Verdict,
) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("till360-sim-reference")
        .tempdir_in(if std::path::Path::new("/dev/shm").is_dir() {
            "/dev/shm"
        } else {
            "/tmp"
        })?;
    let db = Database::open(
        &DatabaseUrl::Sqlite(dir.path().join("reference.db")),
        &DatabaseOptions::default(),
    )?;
    let mut reference = SqlStore::open(&db)?;
    let now = Timestamp::from_unix_ms(0, 0);
    for (agent, events) in &observed.events {
        reference.hello(agent, now)?;
        let outcome = reference.ingest(&[IngestRequest { agent, events }], now)?;
        if let Some(Err((refusal, why))) = outcome.first() {
            verdict.problems.push(format!(
                "reference ingest of {agent} refused: {refusal:?} {why}"
            ));
        }
    }
    let erased: BTreeSet<&CardNumber> = observed
        .erasures
        .iter()
        .flat_map(|(cards, _, _)| cards)
        .collect();
    let cards: BTreeSet<&CardNumber> = observed
        .events
        .values()
        .flatten()
        .filter_map(|e| match &e.kind {
            EventKind::CardScanned { card } => Some(card),
            EventKind::Receipt(r) => r.card.as_ref(),
            _ => None,
        })
        .collect();
    for card in cards {
        if erased.contains(card) {
            continue;
        }
        let ours = hub.profile_by_card(card)?;
        let theirs = reference.profile_by_card(card)?;
        verdict.profiles_compared += 1;
        let summary = |p: &Option<till360_hub::profile::ProfileView>| {
            p.as_ref().map(|p| {
                (
                    p.profile_id.clone(),
                    p.cards.clone(),
                    p.transactions.count,
                    p.transactions.total_cents,
                    p.coupons.clone(),
                )
            })
        };
        let (a, b) = (summary(&ours), summary(&theirs));
        if a != b {
            verdict.problems.push(format!(
                "card {}: profile differs from the fault-free run: hub {a:?}, reference {b:?}",
                card.masked()
            ));
        }
    }
    Ok(())
}
