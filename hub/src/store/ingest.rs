//! The write path: till batches planned against the high-water mark, merged into
//! profiles, the coupon ledger and the fraud checks, and committed with the new
//! high-water marks in one transaction.
//!
//! - The high-water mark is read and advanced inside the merge's transaction. On
//!   PostgreSQL the agents' rows are locked first (in a fixed order, one upsert per
//!   agent that inserts a missing row and locks it as `SELECT … FOR UPDATE` would), so
//!   two hubs committing batches of one till wait for each other and never both apply a
//!   seq; SQLite's `BEGIN IMMEDIATE` already serialises every writer.
//! - Batches sharing a commit are each merged under a savepoint: a batch whose values
//!   the database refuses is refused alone, the others in the commit keep theirs. A
//!   batch alone in its commit needs none: refused, the commit is rolled back and run
//!   again with the savepoint, which records the refusal.
//! - A receipt is stored once, in its `transactions` row: its lines there, its event
//!   without them in `transactions.event` ([`stored_payload`]), not in `events` (which
//!   holds every other event). [`stored_events`] gives back whole events from both.
//! - The whole commit runs in [`transaction`]: a serialization failure or deadlock
//!   (PostgreSQL) runs it again from the start. Nothing outside the database changes
//!   inside it (the outcomes are returned, never kept), so a retry starts clean.

use till360_shared::chain::{link_bytes, ChainHash, GENESIS};
use till360_shared::sync::plan_ingest;
use till360_shared::wire::Refusal;
use till360_shared::{codec, AgentId, CardNumber, Event, EventKind, Timestamp};

use super::agents::record_refusal;
use super::erasures::{self, Suppression};
use super::identity::{
    card_rows, resolve_card, resolve_card_from, resolve_cards, CardRow, CardSighting,
};
use super::sql::{self, savepoint, transaction, DbErrorKind, Engine, Param, Sql, SqlExt, TxKind};
use super::{chain, coupon_ledger, suspicious, IngestOutcome, IngestRequest, StoreError};
use crate::config::FraudConfig;
use crate::coupons::RedemptionStatus;
use crate::identity::{CardOwner, Identifier};
use crate::profile::{card_sighting, merge_ops_without_lines, MergeOp, TransactionRow};
use crate::sql_params;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};

const INSERT_EVENT: &str =
    "INSERT INTO events (store, till, seq, kind, recorded_at_ms, offset_min, payload)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
const INSERT_TRANSACTION: &str =
    "INSERT INTO transactions (store, till, seq, receipt_no, at_ms, offset_min,
         printed_at_ms, printed_offset_min, card, profile_id, total_cents, currency, lines,
         unbalanced, event)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)";
/// After a merge: the new high-water mark with the chain extended to it.
const UPSERT_AGENT_CHAIN: &str =
    "INSERT INTO agents (store, till, last_seq, last_seen_ms, chain_hash)
     VALUES (?1, ?2, ?3, ?4, ?5)
     ON CONFLICT (store, till) DO UPDATE SET
         last_seq = excluded.last_seq,
         last_seen_ms = excluded.last_seen_ms,
         chain_hash = excluded.chain_hash";

/// What a merge needs besides the events: the hub's configuration and keys.
#[derive(Clone, Copy)]
pub struct MergeSettings<'a> {
    /// `[fraud]`: the rules every carded receipt is checked against at ingest.
    pub fraud: &'a FraudConfig,
    /// The coupon master secret, to check redeemed codes at merge; without it every
    /// accepted scan is stored as `unchecked` (and counted as genuine).
    pub coupon_master: Option<&'a [u8; 32]>,
    /// The suppression list's key (from the master secret): till events naming an
    /// erased card are merged without it.
    pub suppression: Option<&'a Suppression>,
}

/// Plans each batch against the high-water mark read inside the transaction, merges
/// the new events, stores the new high-water marks and commits everything in one
/// transaction (see the module's notes and `Store::ingest`).
pub fn ingest(
    db: &dyn Sql,
    settings: MergeSettings<'_>,
    requests: &[IngestRequest<'_>],
    now: Timestamp,
) -> Result<Vec<IngestOutcome>, StoreError> {
    // One till's batch alone in its commit (the common case) needs no savepoint: if the
    // database refuses its values the whole commit is rolled back and run again with
    // the savepoint, which refuses that batch and records why.
    let alone = requests.len() == 1;
    let run = |isolate: bool| {
        transaction(db, TxKind::Write, |tx| {
            ingest_in_transaction(tx, settings, requests, now, isolate)
        })
    };
    match run(!alone) {
        Err(err) if alone && is_batch_fault(&err) => run(true),
        other => other,
    }
}

/// The agents' high-water marks and chain heads as this transaction knows them: read
/// once per agent (under its row lock on PostgreSQL), then advanced by its own batches.
type Heads<'a> = HashMap<&'a AgentId, (u64, Option<ChainHash>)>;

/// Reads (PostgreSQL: inserting a missing row first, then locking it) the agents' heads
/// and whether anybody was ever erased, in one statement per agent on PostgreSQL.
fn read_heads<'a>(
    tx: &dyn Sql,
    requests: &[IngestRequest<'a>],
    now: Timestamp,
) -> Result<(Heads<'a>, bool), StoreError> {
    let mut heads = HashMap::new();
    if tx.engine() == Engine::Sqlite {
        // `BEGIN IMMEDIATE` already serialises every writer.
        for req in requests {
            if !heads.contains_key(req.agent) {
                heads.insert(req.agent, chain::head(tx, req.agent)?);
            }
        }
        return Ok((heads, erasures::any_suppressed(tx)?));
    }
    // Every agent of this commit, locked in one order (no deadlock between hubs). The
    // upsert's no-op update locks the row as `SELECT … FOR UPDATE` would (a second hub
    // waits here for the first's commit, then reads what it committed), and a new
    // agent's row is inserted and locked by the same statement.
    let mut agents: Vec<&'a AgentId> = requests.iter().map(|r| r.agent).collect();
    agents.sort_by(|a, b| (&a.store, &a.till).cmp(&(&b.store, &b.till)));
    agents.dedup();
    let mut suppressed = false;
    for agent in agents {
        let mut head = None;
        tx.query_each(
            "INSERT INTO agents (store, till, last_seq, last_seen_ms, chain_hash)
             VALUES (?1, ?2, 0, ?3, ?4)
             ON CONFLICT (store, till) DO UPDATE SET last_seq = agents.last_seq
             RETURNING last_seq, chain_hash,
                 EXISTS (SELECT 1 FROM suppressed_identifiers)",
            sql_params![agent.store, agent.till, now.unix_ms, &GENESIS[..]],
            &mut |row| {
                let hash = row
                    .get::<Option<Vec<u8>>>(1)?
                    .and_then(|h| ChainHash::try_from(h.as_slice()).ok());
                head = Some((u64::try_from(row.get::<i64>(0)?).unwrap_or(0), hash));
                suppressed |= row.get::<bool>(2)?;
                Ok(())
            },
        )?;
        let head = head.ok_or_else(|| {
            StoreError::Corrupt(format!("agent {agent}: the upsert returned no row"))
        })?;
        heads.insert(agent, head);
    }
    Ok((heads, suppressed))
}

/// `isolate`: each batch under its own savepoint (several tills in one commit).
fn ingest_in_transaction(
    tx: &dyn Sql,
    settings: MergeSettings<'_>,
    requests: &[IngestRequest<'_>],
    now: Timestamp,
    isolate: bool,
) -> Result<Vec<IngestOutcome>, StoreError> {
    let (mut heads, any_suppressed) = read_heads(tx, requests, now)?;
    // Nobody erased yet (the common case): no keyed hash and lookup per card. Read in
    // the transaction, so an erase committed before it is seen.
    let suppression = settings.suppression.filter(|_| any_suppressed);
    let merge = Merge {
        coupon_master: settings.coupon_master.map(|m| m.as_slice()),
        suppression,
        fraud: settings.fraud,
        now,
        days: RefCell::default(),
    };
    let mut outcomes = Vec::with_capacity(requests.len());
    for req in requests {
        // Read inside the transaction: two connections of one agent cannot both
        // pass the same seq.
        let (high_water, head) = heads.get(req.agent).copied().unwrap_or((0, Some(GENESIS)));
        let plan = match plan_ingest(req.agent, high_water, req.events) {
            Ok(plan) => plan,
            Err(refusal) => {
                record_refusal(tx, req.agent, &refusal, now)?;
                outcomes.push(Err(refusal));
                continue;
            }
        };
        let new = &req.events[plan.first_new..];
        // What can be checked before SQL is; the rest is isolated by a savepoint, so
        // one till's bad batch never costs the others in this commit theirs.
        let merged = match unstorable(new) {
            Some(detail) => Err(detail),
            None => match if isolate {
                savepoint(tx, "batch", |tx| merge.batch(tx, new, head))
            } else {
                merge.batch(tx, new, head)
            } {
                Ok(head) => Ok(head),
                Err(err) if isolate && is_batch_fault(&err) => Err(format!(
                    "the hub cannot store events seq {}..={}: {err}",
                    new.first().map_or(0, |e| e.seq),
                    new.last().map_or(0, |e| e.seq)
                )),
                Err(err) => return Err(err),
            },
        };
        match merged {
            Ok(head) => {
                tx.execute(
                    UPSERT_AGENT_CHAIN,
                    sql_params![
                        req.agent.store,
                        req.agent.till,
                        sql::int(plan.new_high_water)?,
                        now.unix_ms,
                        head.as_ref().map(|h| &h[..])
                    ],
                )?;
                heads.insert(req.agent, (plan.new_high_water, head));
                outcomes.push(Ok(plan.new_high_water));
            }
            Err(detail) => {
                // Logged once, where the till is told (listener/connection.rs).
                let refusal = (Refusal::ProtocolError, detail);
                record_refusal(tx, req.agent, &refusal, now)?;
                outcomes.push(Err(refusal));
            }
        }
    }
    Ok(outcomes)
}

/// One commit's merge settings, borrowed.
struct Merge<'a> {
    coupon_master: Option<&'a [u8]>,
    /// `None` also while nobody was ever erased.
    suppression: Option<&'a Suppression>,
    fraud: &'a FraudConfig,
    now: Timestamp,
    /// The receipts of the batch being merged, per day and till (written at its end,
    /// inside its savepoint: a refused batch counts nothing).
    days: RefCell<ReceiptDays>,
}

impl Merge<'_> {
    /// Merges `events` and returns the chain head extended over them.
    fn batch(
        &self,
        tx: &dyn Sql,
        events: &[Event],
        mut head: Option<ChainHash>,
    ) -> Result<Option<ChainHash>, StoreError> {
        // PostgreSQL: a statement per row is a round trip per row; the batch's rows are
        // gathered and written together instead (binary COPY), its cards read at once.
        let mut pending = match tx.engine() {
            Engine::Sqlite => None,
            Engine::Postgres => Some(Pending::read_cards(tx, events, self.suppression.is_none())?),
        };
        // What an earlier batch left after an error is not this batch's.
        self.days.take();
        for event in events {
            let encoded = self.event(tx, event, pending.as_mut())?;
            head = head.map(|prev| link_bytes(&prev, &encoded));
        }
        if let Some(pending) = pending.as_mut() {
            self.flush(tx, pending)?;
        }
        self.days.take().write(tx)?;
        Ok(head)
    }

    /// Writes the gathered events and receipts, then runs the fraud checks of the
    /// carded ones (after all of them are in: each check sees the batch's receipts).
    fn flush(&self, tx: &dyn Sql, pending: &mut Pending) -> Result<(), StoreError> {
        let mut values = Vec::with_capacity(pending.events.len() * EVENT_COLUMNS.len());
        for e in &pending.events {
            values.extend([
                Param::Text(&e.store),
                Param::Text(&e.till),
                Param::Int(e.seq),
                Param::Text(e.kind),
                Param::Int(e.recorded_at_ms),
                Param::Int(e.offset_min),
                Param::Blob(&e.payload),
            ]);
        }
        if !tx.copy_in("events", &EVENT_COLUMNS, &values)? {
            for row in values.chunks(EVENT_COLUMNS.len()) {
                let row: Vec<&dyn sql::ToParam> = row.iter().map(|p| p as _).collect();
                tx.execute(INSERT_EVENT, &row)?;
            }
        }
        pending.events.clear();
        let mut seqs = Vec::with_capacity(pending.transactions.len());
        let mut values = Vec::with_capacity(pending.transactions.len() * TRANSACTION_COLUMNS.len());
        for (row, lines, event) in &pending.transactions {
            let seq = sql::int(row.seq)?;
            if row.card.is_some() {
                seqs.push(seq);
            }
            values.extend([
                Param::Text(&row.store),
                Param::Text(&row.till),
                Param::Int(seq),
                row.receipt_no.as_deref().map_or(Param::Null, Param::Text),
                Param::Int(row.at.unix_ms),
                Param::Int(i64::from(row.at.offset_min)),
                row.printed_at
                    .map_or(Param::Null, |t| Param::Int(t.unix_ms)),
                row.printed_at
                    .map_or(Param::Null, |t| Param::Int(i64::from(t.offset_min))),
                row.card
                    .as_ref()
                    .map_or(Param::Null, |c| Param::Text(c.as_str())),
                row.profile_id.as_deref().map_or(Param::Null, Param::Text),
                Param::Int(row.total_cents),
                Param::Text(&row.currency),
                Param::Blob(lines),
                Param::Int(i64::from(row.unbalanced)),
                event.as_deref().map_or(Param::Null, Param::Blob),
            ]);
        }
        if !tx.copy_in("transactions", &TRANSACTION_COLUMNS, &values)? {
            for row in values.chunks(TRANSACTION_COLUMNS.len()) {
                let row: Vec<&dyn sql::ToParam> = row.iter().map(|p| p as _).collect();
                tx.execute(INSERT_TRANSACTION, &row)?;
            }
        }
        drop(values);
        let mut days = self.days.borrow_mut();
        for (row, _, _) in &pending.transactions {
            days.add(row);
        }
        drop(days);
        let agent = pending
            .transactions
            .first()
            .map(|(row, _, _)| (row.store.clone(), row.till.clone()));
        pending.transactions.clear();
        let (Some((store, till)), Some(first), Some(last)) = (agent, seqs.first(), seqs.last())
        else {
            return Ok(());
        };
        for (seq, card, findings) in
            suspicious::check_receipts(tx, self.fraud, (&store, &till), (*first, *last), self.now)?
        {
            for f in findings {
                tracing::warn!(
                    "card …{} flagged as suspicious ({:?}) after {store}/{till} seq {seq}: {}",
                    card.last4(),
                    f.rule,
                    f.detail
                );
            }
        }
        Ok(())
    }

    /// `event` without the cards erased at or after it was recorded (a till that was
    /// offline since before the erase, or a replay): `None` when it names none.
    fn without_erased_cards(
        &self,
        tx: &dyn Sql,
        event: &Event,
    ) -> Result<Option<Event>, StoreError> {
        let Some(suppression) = self.suppression else {
            return Ok(None);
        };
        let failed = std::cell::RefCell::new(None);
        let mut scrubbed = event.clone();
        let changed = scrubbed.kind.forget_cards(|card| {
            match erasures::suppressed_since(tx, suppression, &Identifier::card(card)) {
                Ok(erased_at) => erased_at.is_some_and(|ms| ms >= event.recorded_at.unix_ms),
                Err(e) => {
                    failed.borrow_mut().get_or_insert(e);
                    false
                }
            }
        });
        if let Some(e) = failed.into_inner() {
            return Err(e);
        }
        if !changed {
            return Ok(None);
        }
        tracing::info!(
            "{}/{} seq {}: an erased card left out (suppressed)",
            event.agent.store,
            event.agent.till,
            event.seq
        );
        tx.execute(
            "INSERT INTO agent_counters (store, till, name, counter)
             VALUES (?1, ?2, 'suppressed_events', 1)
             ON CONFLICT (store, till, name) DO UPDATE SET counter = agent_counters.counter + 1",
            sql_params![event.agent.store, event.agent.till],
        )?;
        Ok(Some(scrubbed))
    }

    /// Merges one event; returns its canonical encoding (what the chain is over). The
    /// stored copy and the merge leave out cards on the suppression list.
    fn event(
        &self,
        tx: &dyn Sql,
        event: &Event,
        mut pending: Option<&mut Pending>,
    ) -> Result<Vec<u8>, StoreError> {
        let Encodings {
            whole: encoded,
            mut stored,
            mut lines,
        } = Encodings::of(event)?;
        let scrubbed = self.without_erased_cards(tx, event)?;
        if let Some(scrubbed) = &scrubbed {
            Encodings { stored, lines, .. } = Encodings::of(scrubbed)?;
        }
        let event = scrubbed.as_ref().unwrap_or(event);
        // A receipt's event goes into its transaction row (taken there below); any other
        // event, or a receipt that merged into none, into `events`.
        let mut payload = Some(stored);
        if !matches!(event.kind, EventKind::Receipt(_)) {
            self.store_event(tx, event, &mut payload, pending.as_deref_mut())?;
        }
        // The lines are in `lines` already: not copied into the transaction row.
        let (ops, notes) = merge_ops_without_lines(event);
        for note in notes {
            tracing::warn!("{note}");
        }
        let mut resolved = None;
        for op in ops {
            if matches!(op, MergeOp::AddCoupon(_) | MergeOp::AddRedemption(_)) {
                // The ledger reads the receipts it refers to: they go in first.
                if let Some(pending) = pending.as_deref_mut() {
                    self.flush(tx, pending)?;
                }
            }
            match op {
                // The profile comes from the identity graph (the card may have joined
                // a larger profile, or be blocked), not from the pure op; erased cards
                // were left out above.
                MergeOp::EnsureProfile { card, seen_at, .. } => {
                    resolved = Some(match pending.as_deref_mut() {
                        Some(pending) => pending.resolve(tx, &card, seen_at)?,
                        None => resolve_card(tx, &card, seen_at)?,
                    });
                }
                MergeOp::AddTransaction(mut row) => {
                    if row.card.is_some() {
                        row.profile_id = None;
                        match resolved.take() {
                            Some(CardOwner::Profile(id)) => row.profile_id = Some(id),
                            Some(CardOwner::Blocked) => {}
                            None => row.card = None,
                        }
                    }
                    let stored_event = payload.take();
                    let lines = lines.take().ok_or_else(|| {
                        StoreError::Corrupt(format!(
                            "{}/{} seq {}: a transaction from an event that is no receipt",
                            row.store, row.till, row.seq
                        ))
                    })?;
                    if let Some(pending) = pending.as_deref_mut() {
                        pending.transactions.push((row, lines, stored_event));
                        continue;
                    }
                    insert_transaction(tx, &row, &lines, stored_event.as_deref())?;
                    self.days.borrow_mut().add(&row);
                    if let (Some(card), Some(profile_id)) = (&row.card, &row.profile_id) {
                        let flagged = suspicious::check_card(
                            tx,
                            self.fraud,
                            (profile_id, card),
                            row.at,
                            self.now,
                        )?;
                        for f in flagged.into_iter().flatten() {
                            tracing::warn!(
                                "card …{} flagged as suspicious ({:?}) after {}/{} seq {}: {}",
                                card.last4(),
                                f.rule,
                                row.store,
                                row.till,
                                row.seq,
                                f.detail
                            );
                        }
                    }
                }
                MergeOp::AddCoupon(mut row) => {
                    if row.card.is_some() {
                        row.profile_id = None;
                        match resolved.take() {
                            Some(CardOwner::Profile(id)) => row.profile_id = Some(id),
                            Some(CardOwner::Blocked) => {}
                            // The customer key names the person as much as the card.
                            None => {
                                row.card = None;
                                row.customer_key = None;
                            }
                        }
                    }
                    coupon_ledger::insert_coupon(tx, &row)?
                }
                MergeOp::AddRedemption(row) => {
                    let status = coupon_ledger::insert_redemption(tx, &row, self.coupon_master)?;
                    if status == RedemptionStatus::Forged {
                        tracing::warn!(
                            "{}/{} seq {}: coupon code {:?} accepted by the till is forged",
                            row.store,
                            row.till,
                            row.seq,
                            row.code
                        );
                    }
                }
            }
        }
        self.store_event(tx, event, &mut payload, pending)?;
        Ok(encoded)
    }

    /// Stores `event` in `events` with `payload` (taken), unless a transaction row took
    /// it already.
    fn store_event(
        &self,
        tx: &dyn Sql,
        event: &Event,
        payload: &mut Option<Vec<u8>>,
        pending: Option<&mut Pending>,
    ) -> Result<(), StoreError> {
        let Some(payload) = payload.take() else {
            return Ok(());
        };
        match pending {
            Some(pending) => pending.events.push(EventRow {
                store: event.agent.store.clone(),
                till: event.agent.till.clone(),
                seq: sql::int(event.seq)?,
                kind: event.kind.name(),
                recorded_at_ms: event.recorded_at.unix_ms,
                offset_min: i64::from(event.recorded_at.offset_min),
                payload,
            }),
            None => insert_event(tx, event, &payload)?,
        }
        Ok(())
    }
}

/// An event's bytes as the store needs them, from one encoding cut up.
struct Encodings {
    /// The canonical encoding: what the chain is over.
    whole: Vec<u8>,
    /// What it is stored with (a receipt without its lines).
    stored: Vec<u8>,
    /// A receipt's lines.
    lines: Option<Vec<u8>>,
}

impl Encodings {
    fn of(event: &Event) -> Result<Self, StoreError> {
        Ok(match codec::ReceiptEncoding::of(event)? {
            Some(split) => Self {
                stored: split.without_lines(),
                lines: Some(split.lines().to_vec()),
                whole: split.whole,
            },
            None => {
                let whole = codec::to_bytes(event)?;
                Self {
                    stored: whole.clone(),
                    whole,
                    lines: None,
                }
            }
        })
    }
}

#[cfg(test)]
fn has_lines(kind: &EventKind) -> bool {
    matches!(kind, EventKind::Receipt(r) if !r.lines.is_empty())
}

/// The bytes `event` is stored with in `events.payload`: a receipt without its lines,
/// which its `transactions` row holds (each line is stored once); any other event
/// whole. [`stored_events`] puts the lines back.
pub fn stored_payload(event: &Event) -> Result<Vec<u8>, StoreError> {
    Ok(Encodings::of(event)?.stored)
}

/// The raw events of `agent` with seqs in `seqs`, in seq order, as the hub stored them
/// (erased cards left out), each receipt whole again from its `transactions` row (its
/// event in `event`, or in `events` when stored before schema 10; its lines in `lines`,
/// or still in the event when stored before lines were stored once).
pub fn stored_events(
    db: &dyn Sql,
    agent: &AgentId,
    seqs: std::ops::RangeInclusive<u64>,
) -> Result<Vec<Event>, StoreError> {
    let mut events = Vec::new();
    db.query_each(
        "SELECT seq, payload, lines FROM (
             SELECT e.seq, e.payload, t.lines FROM events e
             LEFT JOIN transactions t ON t.store = e.store AND t.till = e.till
                 AND t.seq = e.seq
             WHERE e.store = ?1 AND e.till = ?2 AND e.seq BETWEEN ?3 AND ?4
             UNION ALL
             SELECT seq, event, lines FROM transactions
             WHERE store = ?1 AND till = ?2 AND seq BETWEEN ?3 AND ?4 AND event IS NOT NULL
         ) AS stored ORDER BY seq",
        sql_params![
            agent.store,
            agent.till,
            sql::int(*seqs.start())?,
            sql::int(*seqs.end())?
        ],
        &mut |row| {
            let seq: i64 = row.get(0)?;
            let payload: Vec<u8> = row.get(1)?;
            let mut event = Event::decode_stored(&payload).map_err(|e| {
                StoreError::Corrupt(format!("event {}/{}/{seq}: {e}", agent.store, agent.till))
            })?;
            if let (EventKind::Receipt(receipt), Some(lines)) =
                (&mut event.kind, row.get::<Option<Vec<u8>>>(2)?)
            {
                if receipt.lines.is_empty() {
                    receipt.lines = codec::from_bytes(&lines).map_err(|e| {
                        StoreError::Corrupt(format!(
                            "lines of transaction {}/{}/{seq}: {e}",
                            agent.store, agent.till
                        ))
                    })?;
                }
            }
            events.push(event);
            Ok(())
        },
    )?;
    Ok(events)
}

/// Receipts per UTC day and till, with their revenue: what a batch adds to
/// `receipt_days` (the console's overview).
#[derive(Default)]
struct ReceiptDays(BTreeMap<(i64, String, String), (i64, i64)>);

impl ReceiptDays {
    fn add(&mut self, row: &TransactionRow) {
        // As SQL's integer division: schema 11 counted the older receipts with it.
        let day = row.at.unix_ms / super::activity::DAY_MS;
        let entry = self
            .0
            .entry((day, row.store.clone(), row.till.clone()))
            .or_default();
        entry.0 += 1;
        entry.1 = entry.1.saturating_add(row.total_cents);
    }

    /// One upsert per day and till.
    fn write(self, tx: &dyn Sql) -> Result<(), StoreError> {
        for ((day, store, till), (receipts, revenue_cents)) in self.0 {
            tx.execute(
                "INSERT INTO receipt_days (day, store, till, receipts, revenue_cents)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (day, store, till) DO UPDATE SET
                     receipts = receipt_days.receipts + excluded.receipts,
                     revenue_cents = receipt_days.revenue_cents + excluded.revenue_cents",
                sql_params![day, store, till, receipts, revenue_cents],
            )?;
        }
        Ok(())
    }
}

/// How many till events the hub holds: `events` and the receipts' `transactions.event`.
pub fn stored_event_count(db: &dyn Sql) -> Result<u64, StoreError> {
    let count: i64 = db
        .query_one(
            "SELECT (SELECT count(*) FROM events)
                 + (SELECT count(*) FROM transactions WHERE event IS NOT NULL)",
            sql_params![],
        )?
        .get(0)?;
    Ok(u64::try_from(count).unwrap_or(0))
}

fn insert_event(tx: &dyn Sql, stored: &Event, stored_bytes: &[u8]) -> Result<(), StoreError> {
    tx.execute(
        INSERT_EVENT,
        sql_params![
            stored.agent.store,
            stored.agent.till,
            sql::int(stored.seq)?,
            stored.kind.name(),
            stored.recorded_at.unix_ms,
            i64::from(stored.recorded_at.offset_min),
            stored_bytes,
        ],
    )?;
    Ok(())
}

const EVENT_COLUMNS: [&str; 7] = [
    "store",
    "till",
    "seq",
    "kind",
    "recorded_at_ms",
    "offset_min",
    "payload",
];
const TRANSACTION_COLUMNS: [&str; 15] = [
    "store",
    "till",
    "seq",
    "receipt_no",
    "at_ms",
    "offset_min",
    "printed_at_ms",
    "printed_offset_min",
    "card",
    "profile_id",
    "total_cents",
    "currency",
    "lines",
    "unbalanced",
    "event",
];

/// An `events` row gathered for [`Pending`].
struct EventRow {
    store: String,
    till: String,
    seq: i64,
    kind: &'static str,
    recorded_at_ms: i64,
    offset_min: i64,
    payload: Vec<u8>,
}

/// One batch's rows gathered on PostgreSQL, written by `Merge::flush`, and its cards'
/// owners as read at the batch's start and kept up to date by the batch's own writes.
struct Pending {
    events: Vec<EventRow>,
    /// Each receipt with its lines encoded and its event as stored.
    transactions: Vec<(TransactionRow, Vec<u8>, Option<Vec<u8>>)>,
    cards: HashMap<String, CardRow>,
}

impl Pending {
    /// `resolve_all`: the batch's cards are resolved here, at once (not while erased
    /// cards may have to be left out of its events).
    fn read_cards(tx: &dyn Sql, events: &[Event], resolve_all: bool) -> Result<Self, StoreError> {
        if resolve_all {
            let mut sightings: BTreeMap<String, CardSighting> = BTreeMap::new();
            for (card, seen_at) in events.iter().filter_map(card_sighting) {
                let at = (seen_at.unix_ms, seen_at.offset_min);
                sightings
                    .entry(card.as_str().to_owned())
                    .and_modify(|s| s.earliest = s.earliest.min(at))
                    .or_insert(CardSighting {
                        card,
                        first: seen_at,
                        earliest: at,
                    });
            }
            return Ok(Self {
                events: Vec::with_capacity(events.len()),
                transactions: Vec::with_capacity(events.len()),
                cards: if sightings.is_empty() {
                    HashMap::new()
                } else {
                    resolve_cards(tx, &sightings)?
                },
            });
        }
        let cards: BTreeSet<&str> = events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Receipt(receipt) => receipt.card.as_ref().map(CardNumber::as_str),
                _ => None,
            })
            .collect();
        Ok(Self {
            events: Vec::with_capacity(events.len()),
            transactions: Vec::with_capacity(events.len()),
            cards: if cards.is_empty() {
                HashMap::new()
            } else {
                card_rows(tx, &cards)?
            },
        })
    }

    /// `resolve_card`, from the batch's read of the card when there is one.
    fn resolve(
        &mut self,
        tx: &dyn Sql,
        card: &CardNumber,
        at: Timestamp,
    ) -> Result<CardOwner, StoreError> {
        let Some(row) = self.cards.get(card.as_str()) else {
            return resolve_card(tx, card, at);
        };
        let owner = resolve_card_from(tx, card, at, row.clone())?;
        // What the resolution wrote: the profile exists, created no later than `at`.
        let seen = (at.unix_ms, at.offset_min);
        let updated = match &owner {
            CardOwner::Profile(id) => (
                Some(id.clone()),
                Some(row.1.map_or(seen, |created| created.min(seen))),
                false,
            ),
            CardOwner::Blocked => (row.0.clone(), row.1, true),
        };
        self.cards.insert(card.as_str().to_owned(), updated);
        Ok(owner)
    }
}

/// `lines`: the encoding of the receipt's lines (`row.lines` is not read).
fn insert_transaction(
    tx: &dyn Sql,
    row: &TransactionRow,
    lines: &[u8],
    event: Option<&[u8]>,
) -> Result<(), StoreError> {
    tx.execute(
        INSERT_TRANSACTION,
        sql_params![
            row.store,
            row.till,
            sql::int(row.seq)?,
            row.receipt_no,
            row.at.unix_ms,
            i64::from(row.at.offset_min),
            row.printed_at.map(|t| t.unix_ms),
            row.printed_at.map(|t| i64::from(t.offset_min)),
            row.card.as_ref().map(CardNumber::as_str),
            row.profile_id,
            row.total_cents,
            row.currency,
            lines,
            row.unbalanced,
            event,
        ],
    )?;
    Ok(())
}

/// Why `events` cannot be stored as they are (a number beyond the databases' i64), if so.
fn unstorable(events: &[Event]) -> Option<String> {
    let beyond = |what: &str, seq: u64, value: u64| {
        (i64::try_from(value).is_err()).then(|| {
            format!("event seq {seq}: {what} {value} is beyond what the hub stores (2^63 - 1)")
        })
    };
    events.iter().find_map(|event| {
        let receipt_seq = match &event.kind {
            EventKind::CouponIssued(issue) | EventKind::CouponWouldHave(issue) => {
                Some(issue.receipt_seq)
            }
            EventKind::CouponRedeemed(redemption) => redemption.receipt_seq,
            _ => None,
        };
        beyond("seq", event.seq, event.seq)
            .or_else(|| receipt_seq.and_then(|value| beyond("receipt_seq", event.seq, value)))
    })
}

/// Whether `err` comes from the batch's own values (refuse that batch) rather than
/// the database (disk, lock, a lost race: fail the commit, every till retries).
fn is_batch_fault(err: &StoreError) -> bool {
    match err {
        StoreError::Corrupt(_) | StoreError::Codec(_) => true,
        other => matches!(
            other.db_kind(),
            Some(DbErrorKind::Constraint | DbErrorKind::BadValue)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::merge_ops;
    use crate::store::sql::SqlExt;
    use crate::store::test_support::for_each_engine;
    use crate::store::{SqlStore, Store};
    use crate::synthetic::Generator;

    fn now() -> Timestamp {
        Timestamp::from_unix_ms(1_800_000_000_000, 0)
    }

    /// Each receipt line is stored once (in its `transactions` row, not again in the
    /// event's payload), and the raw events still come back whole: the same events the
    /// till sent, on both engines.
    #[test]
    fn receipt_lines_are_stored_once_and_the_raw_events_come_back_whole() {
        for_each_engine(|db| {
            let agent = AgentId::new("S1", "T1");
            let events = Generator::new(41, 10, 80).events(&agent, 1, 60);
            assert!(events.iter().any(|e| has_lines(&e.kind)));
            let mut store = SqlStore::open(db).unwrap();
            for events in events.chunks(25) {
                let request = [IngestRequest {
                    agent: &agent,
                    events,
                }];
                let last = events[events.len() - 1].seq;
                assert_eq!(store.ingest(&request, now()).unwrap(), vec![Ok(last)]);
            }
            let conn = db.get().unwrap();
            assert_eq!(stored_events(&*conn, &agent, 1..=60).unwrap(), events);
            assert_eq!(
                stored_events(&*conn, &agent, 10..=12).unwrap(),
                events[9..12]
            );
            // A receipt is one row (its event in `transactions.event`), and no line's
            // description is in any stored event.
            let receipts = events
                .iter()
                .filter(|e| matches!(e.kind, EventKind::Receipt(_)))
                .count();
            let mut payloads = Vec::new();
            conn.query_each(
                "SELECT payload FROM events UNION ALL
                 SELECT event FROM transactions WHERE event IS NOT NULL",
                sql_params![],
                &mut |row| {
                    payloads.push(row.get::<Vec<u8>>(0)?);
                    Ok(())
                },
            )
            .unwrap();
            assert_eq!(payloads.len(), events.len());
            assert_eq!(
                conn.query_value::<i64>(
                    "SELECT count(*) FROM transactions WHERE event IS NOT NULL",
                    sql_params![]
                )
                .unwrap(),
                Some(receipts as i64)
            );
            assert_eq!(stored_event_count(&*conn).unwrap(), events.len() as u64);
            for event in &events {
                if let EventKind::Receipt(receipt) = &event.kind {
                    for line in &receipt.lines {
                        let description = line.description.as_bytes();
                        assert!(!payloads
                            .iter()
                            .any(|p| p.windows(description.len()).any(|w| w == description)));
                    }
                }
            }
        });
    }

    /// A batch alone in its commit runs without a savepoint; when the database refuses
    /// one of its rows, that batch is refused (its refusal recorded, none of its rows
    /// kept) and the till's next attempt lands once the row can be stored.
    #[test]
    fn a_batch_alone_in_its_commit_that_the_database_refuses_is_refused_and_recorded() {
        for_each_engine(|db| {
            let conn = db.get().unwrap();
            conn.batch(match conn.engine() {
                Engine::Sqlite => {
                    "CREATE TRIGGER poison BEFORE INSERT ON transactions WHEN NEW.seq = 3
                     BEGIN SELECT RAISE(ABORT, 'poisoned row'); END;"
                }
                Engine::Postgres => {
                    "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN
                         IF NEW.seq = 3 THEN
                             RAISE EXCEPTION 'poisoned row' USING ERRCODE = '23514';
                         END IF;
                         RETURN NEW;
                     END $$ LANGUAGE plpgsql;
                     CREATE TRIGGER poison BEFORE INSERT ON transactions
                         FOR EACH ROW EXECUTE FUNCTION poison();"
                }
            })
            .unwrap();
            let agent = AgentId::new("S1", "T1");
            let mut gen = Generator::new(47, 10, 80);
            let events: Vec<Event> = (1..=5).map(|seq| gen.receipt(&agent, seq)).collect();
            let mut store = SqlStore::open(db).unwrap();
            let request = [IngestRequest {
                agent: &agent,
                events: &events,
            }];
            let outcome = store.ingest(&request, now()).unwrap();
            match &outcome[..] {
                [Err((Refusal::ProtocolError, detail))] => {
                    assert!(detail.contains("seq 1..=5"), "{detail}")
                }
                other => panic!("expected the batch refused, got {other:?}"),
            }
            let count = |table: &str| {
                conn.query_value::<i64>(&format!("SELECT count(*) FROM {table}"), sql_params![])
                    .unwrap()
                    .unwrap_or(0)
            };
            assert_eq!(stored_event_count(&*conn).unwrap(), 0);
            assert_eq!(count("transactions"), 0);
            assert_eq!(
                count("receipt_days"),
                0,
                "a refused batch counts no receipt"
            );
            assert_eq!(count("agent_alerts"), 1, "the refusal is recorded");
            conn.batch(match conn.engine() {
                Engine::Sqlite => "DROP TRIGGER poison",
                Engine::Postgres => "DROP TRIGGER poison ON transactions",
            })
            .unwrap();
            assert_eq!(store.ingest(&request, now()).unwrap(), vec![Ok(5)]);
            assert_eq!(stored_event_count(&*conn).unwrap(), 5);
            assert_eq!(count("transactions"), 5);
            let counted: i64 = conn
                .query_value(
                    "SELECT CAST(SUM(receipts) AS BIGINT) FROM receipt_days",
                    sql_params![],
                )
                .unwrap()
                .unwrap();
            assert_eq!(counted, 5, "counted once, when the batch went in");
        });
    }

    /// A receipt stored whole (before receipt lines were stored once) keeps its lines: the reader takes them
    /// from the payload.
    #[test]
    fn a_receipt_stored_with_its_lines_comes_back_whole() {
        for_each_engine(|db| {
            let agent = AgentId::new("S1", "T1");
            let mut gen = Generator::new(43, 10, 100);
            let event = gen.receipt(&agent, 1);
            assert!(has_lines(&event.kind));
            let conn = db.get().unwrap();
            insert_event(&*conn, &event, &codec::to_bytes(&event).unwrap()).unwrap();
            assert_eq!(stored_events(&*conn, &agent, 1..=1).unwrap(), vec![event]);
        });
    }

    /// Receipts stored before schema 10 (the event in `events`, without its lines; the
    /// transaction row without `event`) and after it (one row) come back whole, in seq
    /// order, with the events between them.
    #[test]
    fn receipts_stored_before_and_after_schema_10_come_back_whole_in_order() {
        for_each_engine(|db| {
            let agent = AgentId::new("S1", "T1");
            let events = Generator::new(44, 10, 100).events(&agent, 1, 12);
            let split = events
                .iter()
                .position(|e| has_lines(&e.kind))
                .expect("a receipt");
            let conn = db.get().unwrap();
            for event in &events[..=split] {
                insert_event(&*conn, event, &stored_payload(event).unwrap()).unwrap();
                for op in merge_ops(event).0 {
                    if let MergeOp::AddTransaction(mut row) = op {
                        // No profile needed to read the events back.
                        row.profile_id = None;
                        let lines = codec::to_bytes(&row.lines).unwrap();
                        insert_transaction(&*conn, &row, &lines, None).unwrap();
                    }
                }
            }
            let mut store = SqlStore::open(db).unwrap();
            // The hub's high-water mark as the old hub left it.
            conn.execute(
                UPSERT_AGENT_CHAIN,
                sql_params![
                    agent.store,
                    agent.till,
                    events[split].seq as i64,
                    0i64,
                    None::<Vec<u8>>
                ],
            )
            .unwrap();
            let rest = &events[split + 1..];
            let request = [IngestRequest {
                agent: &agent,
                events: rest,
            }];
            let last = events.last().unwrap().seq;
            assert_eq!(store.ingest(&request, now()).unwrap(), vec![Ok(last)]);
            assert_eq!(stored_events(&*conn, &agent, 1..=last).unwrap(), events);
            assert_eq!(stored_event_count(&*conn).unwrap(), events.len() as u64);
        });
    }
}
