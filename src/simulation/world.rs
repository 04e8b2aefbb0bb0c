//! The simulated world: the clock, the schedule, the tills, the hub and the network,
//! and the faults the seed draws.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;
use till360_agent::escpos::gate::CutOutcome;
use till360_agent::hub_link::{HubNews, HubRequest};
use till360_agent::layout::Layout;
use till360_agent::till_core::{TillEffect, TillInput};
use till360_agent::uplink::conversation::{Answer, Conversation, Output, Pacing, Transmit};
use till360_agent::uplink::{offline_answer, Reply};
use till360_shared::campaign::CampaignSet;
use till360_shared::wire::Message;
use till360_shared::{CardNumber, Event, EventKind, Timestamp};

use super::checks::{self, Observed, Verdict};
use super::hub::SimHub;
use super::network::{Connection, NetworkModel};
use super::till::{instant, layout_path, SimTill};
use crate::sim::SimRng;

/// What a run may do.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Faults on (the sweep) or off (a reference run).
    pub faults: bool,
    /// Simulated shopping hours per run.
    pub shopping_hours: u32,
    /// Keep a trace of every action (for a replay).
    pub trace: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            faults: true,
            shopping_hours: 4,
            trace: false,
        }
    }
}

/// What one run did and what the checks found.
#[derive(Debug)]
pub struct SimReport {
    pub seed: u64,
    pub tills: usize,
    /// Tills × simulated days.
    pub till_days: f64,
    pub receipts: u64,
    pub events: u64,
    pub faults: BTreeMap<&'static str, u64>,
    pub verdict: Verdict,
    pub trace: Vec<String>,
}

/// Simulated time: milliseconds since the run's start.
type SimMs = i64;

#[derive(Debug)]
enum Action {
    /// A shopper at a till.
    Visit(usize),
    /// A frame arrives (`sent_at`: when it left).
    Deliver {
        conn: u64,
        to_hub: bool,
        sent_at: SimMs,
        msg: Box<Message>,
    },
    /// The till's uplink dials the hub.
    Dial(usize),
    /// The till's uplink notices its connection is gone.
    Dropped {
        till: usize,
        conn: u64,
    },
    /// Pending requests time out.
    Expire(usize),
    /// The hub notices a dead connection (its idle timeout): the session goes.
    HubNotices(u64),
    CrashAgent(usize),
    RestartAgent(usize),
    CrashHub,
    RestartHub,
    Partition(usize),
    CutLink(usize),
    ClockJump(usize),
    DiskFull(usize),
    DiskFreed(usize),
    Erase,
    /// The hub's digest refresh and compaction jobs run (its timer).
    DigestRefresh,
    /// Nothing but time passing (the healing phase looks for convergence at each).
    Tick,
    /// Shopping ends: faults stop, everything heals.
    Heal,
}

struct Scheduled {
    at: SimMs,
    order: u64,
    action: Action,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

/// How long an agent takes to notice a dead connection (quinn's idle timeout).
const IDLE_TIMEOUT_MS: SimMs = 8_000;
/// The uplink's backoff bounds.
const BACKOFF_MIN_MS: u64 = 100;
const BACKOFF_MAX_MS: u64 = 10_000;
/// A run doing more than this is in a livelock (a healthy one does some thousands).
const MAX_ACTIONS: u64 = 400_000;
/// How long the healing phase may take before the run counts as stuck.
const HEAL_LIMIT_MS: SimMs = 30 * 60_000;
/// The run starts on a Monday morning (UTC).
const START_UNIX_MS: i64 = 1_772_434_800_000; // 2026-03-02T07:00:00Z

struct World {
    rng: SimRng,
    shoppers: SimRng,
    now: SimMs,
    order: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    tills: Vec<SimTill>,
    hub: SimHub,
    conns: BTreeMap<u64, Connection>,
    next_conn: u64,
    network: NetworkModel,
    faults_on: bool,
    healing: bool,
    cards: Vec<CardNumber>,
    /// How often (per mille of batches) a fault is aimed at a batch in flight: a cut
    /// while it or its ack travels, a hub crash right after its commit.
    targeted_per_mille: u64,
    /// `[digests] removal_retention_days` of this seed (0: removals compacted at once).
    digest_retention_days: u32,
    /// The campaign sets the hub restarts with (the operator changes them).
    campaign_sets: [CampaignSet; 2],
    /// Coupon codes printed so far (shoppers bring some back).
    codes: Vec<String>,
    base_instant: Instant,
    observed: Observed,
    fault_counts: BTreeMap<&'static str, u64>,
    trace: Option<Vec<String>>,
}

/// Runs one seed: shopping with faults, healing, then the checks.
pub fn run_seed(seed: u64, options: &SimOptions) -> anyhow::Result<SimReport> {
    run_seed_with(seed, options, |_| Ok(()))
}

/// As [`run_seed`], with `tamper` let at the hub's store before the checks (how the
/// tests show that a checker catches what it is for).
pub fn run_seed_with(
    seed: u64,
    options: &SimOptions,
    tamper: impl FnOnce(&mut till360_hub::store::SqlStore) -> anyhow::Result<()>,
) -> anyhow::Result<SimReport> {
    let dir = scratch_dir()?;
    let mut world = World::new(seed, options, dir.path())?;
    world.run(options)?;
    if let Some(store) = world.hub.store() {
        tamper(store)?;
    }
    let verdict = world.check()?;
    let tills = world.tills.len();
    Ok(SimReport {
        seed,
        tills,
        till_days: tills as f64 * f64::from(options.shopping_hours) / 24.0,
        receipts: world.observed.receipts.len() as u64,
        events: world.observed.events.values().map(|e| e.len() as u64).sum(),
        faults: world.fault_counts,
        verdict,
        trace: world.trace.unwrap_or_default(),
    })
}

/// A fresh folder on tmpfs when there is one (SQLite's fsyncs cost nothing there).
fn scratch_dir() -> anyhow::Result<tempfile::TempDir> {
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::Builder::new()
            .prefix("till360-sim")
            .tempdir_in(shm)
    } else {
        tempfile::Builder::new().prefix("till360-sim").tempdir()
    };
    dir.context("a scratch folder for the simulation")
}

impl World {
    fn new(seed: u64, options: &SimOptions, dir: &Path) -> anyhow::Result<World> {
        let mut rng = SimRng::new(seed);
        let shoppers = rng.fork();
        let mut setup = rng.fork();
        let network = NetworkModel::of_seed(&mut rng, options.faults);
        let text = std::fs::read_to_string(campaigns_path())?;
        let set = CampaignSet::from_toml_str(&text, &campaigns_path())?;
        // The set an operator switches to at some hub restarts: a lower big-basket bar.
        let changed = text.replacen("min_total_cents = 5000", "min_total_cents = 2500", 1);
        let campaign_sets = [
            set.clone(),
            CampaignSet::from_toml_str(&changed, &campaigns_path())?,
        ];
        let hub_dir = dir.join("hub");
        std::fs::create_dir_all(&hub_dir)?;
        let mut master = [0u8; 32];
        for chunk in master.chunks_mut(8) {
            chunk.copy_from_slice(&setup.next_u64().to_le_bytes());
        }
        let hub = SimHub::start(&hub_dir, set, master)?;
        let layout = Layout::load(&layout_path())?;
        let stores = setup.range(1, 2) as usize;
        let per_store = setup.range(1, 3) as usize;
        let opening = chrono::DateTime::from_timestamp_millis(START_UNIX_MS)
            .context("start time")?
            .naive_utc();
        let mut tills = Vec::new();
        for s in 0..stores {
            for t in 0..per_store {
                let (store, till) = (format!("S00{}", s + 1), format!("T0{}", t + 1));
                let till_dir = dir.join(format!("{store}-{till}"));
                let pos_seed = setup.next_u64();
                tills.push(SimTill::new(
                    &store,
                    &till,
                    till_dir,
                    layout.clone(),
                    opening,
                    pos_seed,
                )?);
            }
        }
        let customers = setup.range(5, 40);
        let cards = (0..customers)
            .map(|n| CardNumber::parse(&crate::sim::scanner::card_number(n + 1)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut world = World {
            rng,
            shoppers,
            now: 0,
            order: 0,
            queue: BinaryHeap::new(),
            tills,
            hub,
            conns: BTreeMap::new(),
            next_conn: 1,
            network,
            faults_on: options.faults,
            healing: false,
            cards,
            digest_retention_days: if setup.chance(50) { 0 } else { 30 },
            targeted_per_mille: if options.faults {
                setup.range(0, 30)
            } else {
                0
            },
            campaign_sets,
            codes: Vec::new(),
            base_instant: Instant::now(),
            observed: Observed::default(),
            fault_counts: BTreeMap::new(),
            trace: options.trace.then(Vec::new),
        };
        for i in 0..world.tills.len() {
            world.start_agent(i)?;
            let first = world.shoppers.range(0, 60_000) as SimMs;
            world.schedule(first, Action::Visit(i));
        }
        world.schedule(i64::from(options.shopping_hours) * 3_600_000, Action::Heal);
        let refresh = world.rng.range(60_000, 1_800_000) as SimMs;
        world.schedule(refresh, Action::DigestRefresh);
        if options.faults {
            world.schedule_faults(options.shopping_hours);
        }
        Ok(world)
    }

    /// The seed's faults over the shopping hours.
    fn schedule_faults(&mut self, hours: u32) {
        let span = i64::from(hours) * 3_600_000;
        let tills = self.tills.len() as u64;
        let count = self.rng.range(2, 24);
        for _ in 0..count {
            let at = self.rng.below(span as u64) as SimMs;
            let till = self.rng.below(tills) as usize;
            let action = match self.rng.below(9) {
                0 => Action::CrashAgent(till),
                1 => Action::CrashHub,
                2 | 3 => Action::Partition(till),
                4 | 5 => Action::CutLink(till),
                6 => Action::ClockJump(till),
                7 => Action::DiskFull(till),
                _ => Action::Erase,
            };
            self.schedule(at, action);
        }
    }

    fn schedule(&mut self, at: SimMs, action: Action) {
        self.order += 1;
        self.queue.push(Reverse(Scheduled {
            at: at.max(self.now),
            order: self.order,
            action,
        }));
    }

    fn after(&mut self, delay: SimMs, action: Action) {
        self.schedule(self.now + delay, action);
    }

    fn note(&mut self, what: impl FnOnce() -> String) {
        if let Some(trace) = &mut self.trace {
            trace.push(format!("{:>9} ms  {}", self.now, what()));
        }
    }

    fn count_fault(&mut self, name: &'static str) {
        *self.fault_counts.entry(name).or_default() += 1;
    }

    /// True time as a hub timestamp.
    fn hub_now(&self) -> Timestamp {
        Timestamp::from_unix_ms(START_UNIX_MS + self.now, 0)
    }

    fn run(&mut self, _options: &SimOptions) -> anyhow::Result<()> {
        let mut heal_started = None;
        let mut actions = 0u64;
        while let Some(Reverse(next)) = self.queue.pop() {
            self.now = next.at;
            actions += 1;
            if actions > MAX_ACTIONS {
                self.observed.stuck.push(format!(
                    "more than {MAX_ACTIONS} actions by {} ms: a livelock (reconnecting or resending without end?)",
                    self.now
                ));
                return Ok(());
            }
            if let Some(started) = heal_started {
                if self.converged()? {
                    self.note(|| "converged".to_string());
                    return Ok(());
                }
                if self.now - started > HEAL_LIMIT_MS {
                    let why = self.behind()?.unwrap_or_default();
                    self.observed.stuck.push(format!(
                        "not converged {} min after healing: {why}",
                        HEAL_LIMIT_MS / 60_000
                    ));
                    return Ok(());
                }
            }
            if matches!(next.action, Action::Heal) {
                heal_started = Some(self.now);
            }
            self.act(next.action)?;
        }
        if !self.converged()? {
            self.observed
                .stuck
                .push("nothing left to do, yet not converged".to_string());
        }
        Ok(())
    }

    fn act(&mut self, action: Action) -> anyhow::Result<()> {
        match action {
            Action::Visit(till) => self.visit(till)?,
            Action::Deliver {
                conn,
                to_hub,
                sent_at,
                msg,
            } => self.deliver(conn, to_hub, sent_at, *msg)?,
            Action::Dial(till) => self.dial(till)?,
            Action::Dropped { till, conn } => self.dropped(till, conn)?,
            Action::Expire(till) => self.expire(till)?,
            Action::HubNotices(conn) => self.hub_forgets(conn),
            Action::CrashAgent(till) => {
                if self.faults_on && self.tills[till].agent.is_some() {
                    self.count_fault("agent crash");
                    self.note(|| format!("till {till}: agent crashes"));
                    self.crash_agent(till);
                    let delay = self.rng.range(500, 120_000) as SimMs;
                    self.after(delay, Action::RestartAgent(till));
                }
            }
            Action::RestartAgent(till) => {
                if self.tills[till].agent.is_none() {
                    self.note(|| format!("till {till}: agent restarts"));
                    self.start_agent(till)?;
                }
            }
            Action::CrashHub => {
                if self.faults_on && self.hub.is_up() {
                    self.count_fault("hub crash");
                    self.note(|| "hub crashes".to_string());
                    self.crash_hub();
                    let delay = self.rng.range(1_000, 300_000) as SimMs;
                    self.after(delay, Action::RestartHub);
                }
            }
            Action::RestartHub => {
                if !self.hub.is_up() {
                    let set = self.rng.below(2) as usize;
                    if set == 1 {
                        self.count_fault("campaign change");
                    }
                    self.note(|| format!("hub restarts with campaign set {set}"));
                    self.hub.restart_with(self.campaign_sets[set].clone())?;
                }
            }
            Action::Partition(till) => {
                if self.faults_on {
                    self.count_fault("partition");
                    let length = self.rng.range(1_000, 1_800_000) as SimMs;
                    self.note(|| format!("till {till}: partitioned for {length} ms"));
                    self.tills[till].partitioned_until = self.now + length;
                    self.cut(till);
                }
            }
            Action::CutLink(till) => {
                if self.faults_on {
                    self.count_fault("link cut");
                    self.note(|| format!("till {till}: connection cut"));
                    self.cut(till);
                }
            }
            Action::ClockJump(till) => {
                if self.faults_on {
                    self.count_fault("clock jump");
                    let minutes = self.rng.range(1, 240) as i64;
                    let sign = if self.rng.chance(50) { -1 } else { 1 };
                    self.tills[till].clock_offset_ms += sign * minutes * 60_000;
                    self.note(|| format!("till {till}: clock jumps {} min", sign * minutes));
                }
            }
            Action::DiskFull(till) => self.disk_full(till)?,
            Action::DiskFreed(till) => {
                if let Some(agent) = self.tills[till].agent.as_mut() {
                    agent.journal.limit_pages(u64::from(u32::MAX))?;
                }
            }
            Action::Tick => {}
            Action::DigestRefresh => {
                if !self.healing {
                    let next = self.rng.range(600_000, 5_400_000) as SimMs;
                    self.after(next, Action::DigestRefresh);
                }
                if self.hub.is_up() {
                    let retention = self.digest_retention_days;
                    self.note(|| "hub refreshes the digest feed".to_string());
                    self.hub.refresh_digests(self.hub_now(), retention)?;
                    self.push_all()?;
                }
            }
            Action::Erase => self.erase()?,
            Action::Heal => self.heal()?,
        }
        Ok(())
    }

    // ---- the till side ----

    fn start_agent(&mut self, till: usize) -> anyhow::Result<()> {
        self.tills[till].start()?;
        if self.now < self.tills[till].disk_full_until {
            self.fill_disk(till)?;
        }
        self.schedule_dial(till, 0);
        Ok(())
    }

    fn crash_agent(&mut self, till: usize) {
        if let Some(agent) = self.tills[till].agent.take() {
            if let Some((conn, _)) = agent.conn {
                self.kill_conn(conn);
            }
        }
    }

    /// A shopper: maybe a card, maybe a coupon brought back, then the receipt.
    fn visit(&mut self, till: usize) -> anyhow::Result<()> {
        if self.healing {
            return Ok(());
        }
        let gap = self.shoppers.range(20_000, 600_000) as SimMs;
        self.after(gap, Action::Visit(till));
        let carded = self.shoppers.chance(75);
        let card = carded
            .then(|| self.cards[self.shoppers.below(self.cards.len() as u64) as usize].clone());
        let code = (!self.codes.is_empty() && self.shoppers.chance(15))
            .then(|| self.codes[self.shoppers.below(self.codes.len() as u64) as usize].clone());
        let receipt = self.tills[till]
            .pos
            .next_receipt(card.as_ref().map(|c| c.last4()));
        if self.tills[till].agent.is_none() {
            // The till prints without its agent; nothing is journaled.
            return Ok(());
        }
        let at = self.tills[till].clock(START_UNIX_MS + self.now);
        if let Some(card) = card {
            self.core(till, TillInput::Card(card, at))?;
        }
        if let Some(code) = code {
            self.core(till, TillInput::Coupon(code, at))?;
        }
        self.core(till, TillInput::Print(receipt.bytes()))?;
        Ok(())
    }

    /// Gives the till core one input and performs its effects.
    fn core(&mut self, till: usize, input: TillInput) -> anyhow::Result<()> {
        let at = self.tills[till].clock(START_UNIX_MS + self.now);
        let Some(agent) = self.tills[till].agent.as_mut() else {
            return Ok(());
        };
        let mut effects = agent.core.handle(input, at, &mut agent.journal);
        let mut i = 0;
        while i < effects.len() || agent_wants_poll(&self.tills[till]) {
            if i == effects.len() {
                let Some(agent) = self.tills[till].agent.as_mut() else {
                    break;
                };
                let more = agent.core.poll(at, &mut agent.journal);
                effects.extend(more);
                continue;
            }
            let effect = effects[i].clone();
            i += 1;
            match effect {
                TillEffect::Decide { offset, block } => {
                    // The printer has the block before the cut at once.
                    let outcome = if block.is_some() {
                        CutOutcome::CouponPrinted
                    } else {
                        CutOutcome::Declined
                    };
                    let Some(agent) = self.tills[till].agent.as_mut() else {
                        break;
                    };
                    let more = agent.core.handle(
                        TillInput::CutReleased { offset, outcome },
                        at,
                        &mut agent.journal,
                    );
                    effects.extend(more);
                }
                TillEffect::Notice(_) => {}
                TillEffect::AskHub(request) => self.ask_hub(till, request)?,
                TillEffect::Journaled(seq) => self.journaled(till, seq)?,
            }
        }
        self.pump(till)
    }

    /// An event reached the journal: remember it as the checks' truth, wake the uplink.
    fn journaled(&mut self, till: usize, seq: u64) -> anyhow::Result<()> {
        let Some(agent) = self.tills[till].agent.as_mut() else {
            return Ok(());
        };
        let events = agent.journal.read_from(seq, 1)?;
        if let Some((_, conversation)) = &mut agent.conn {
            conversation.journal_advanced(seq);
        }
        let id = self.tills[till].id.clone();
        for event in events.into_iter().filter(|e| e.seq == seq) {
            if let EventKind::CouponIssued(issue) = &event.kind {
                if let Some(code) = &issue.code {
                    self.codes.push(code.clone());
                }
            }
            self.note(|| {
                format!(
                    "till {till}: journaled seq {} {}",
                    event.seq,
                    event.kind.name()
                )
            });
            self.observed.journaled(&id, event);
        }
        Ok(())
    }

    fn ask_hub(&mut self, till: usize, request: HubRequest) -> anyhow::Result<()> {
        let now_instant = instant(self.base_instant, self.now);
        let streaming = self.tills[till]
            .agent
            .as_ref()
            .and_then(|a| a.conn.as_ref())
            .is_some_and(|(_, c)| c.is_streaming());
        if !streaming {
            if let Some(news) = offline_answer(request) {
                self.core(till, TillInput::Hub(news))?;
            }
            return Ok(());
        }
        let Some(agent) = self.tills[till].agent.as_mut() else {
            return Ok(());
        };
        let (msg, evicted) = match request {
            HubRequest::Digest { card } => (
                Message::DigestRequest { card: card.clone() },
                agent.pending.digest_sent(card, now_instant),
            ),
            HubRequest::CouponCheck { code } => (
                Message::CouponCheck { code: code.clone() },
                agent.pending.coupon_sent(code, now_instant),
            ),
        };
        let conn = agent.conn.as_ref().map(|(c, _)| *c);
        if let Some(conn) = conn {
            self.send(conn, true, msg);
        }
        self.after(
            super::till::REQUEST_TIMEOUT.as_millis() as SimMs + 1,
            Action::Expire(till),
        );
        if let Some(news) = evicted {
            self.core(till, TillInput::Hub(news))?;
        }
        Ok(())
    }

    fn expire(&mut self, till: usize) -> anyhow::Result<()> {
        let now_instant = instant(self.base_instant, self.now);
        let news = match self.tills[till].agent.as_mut() {
            Some(agent) => agent.pending.expire(now_instant),
            None => return Ok(()),
        };
        for news in news {
            self.core(till, TillInput::Hub(news))?;
        }
        Ok(())
    }

    /// The conversation's due work (erasures, batches) goes out.
    fn pump(&mut self, till: usize) -> anyhow::Result<()> {
        let Some(agent) = self.tills[till].agent.as_mut() else {
            return Ok(());
        };
        let Some((conn, conversation)) = agent.conn.as_mut() else {
            return Ok(());
        };
        let conn = *conn;
        let mut out = Output::default();
        if let Err(e) = conversation.poll(&mut agent.journal, &mut out) {
            self.note(|| format!("till {till}: uplink error {e}"));
            return self.agent_closes(till, conn);
        }
        self.take_output(till, conn, out)
    }

    /// What the conversation produced: frames out, news and answers to the core.
    fn take_output(&mut self, till: usize, conn: u64, out: Output) -> anyhow::Result<()> {
        for item in out.transmit {
            match item {
                Transmit::Message(msg) => self.send(conn, true, msg),
                Transmit::Events(events) => {
                    let last = events.last().map(|(e, link)| (e.seq, *link));
                    let first = events.first().map_or(0, |(e, _)| e.seq);
                    let end = last.map_or(0, |(seq, _)| seq);
                    self.note(|| format!("till {till}: sends seqs {first}..={end} on {conn}"));
                    let events: Vec<Event> = events.into_iter().map(|(e, _)| e).collect();
                    self.send(conn, true, Message::Events(events));
                    if let Some((last_seq, hash)) = last {
                        self.send(conn, true, Message::Chain { last_seq, hash });
                    }
                }
            }
        }
        if out.went_online {
            if let Some(agent) = self.tills[till].agent.as_mut() {
                agent.attempt = 0;
            }
            self.core(till, TillInput::Hub(HubNews::Online(true)))?;
        }
        for erased in out.erased {
            self.core(till, TillInput::Erased(erased))?;
        }
        for news in out.news {
            self.core(till, TillInput::Hub(news))?;
        }
        for answer in out.answers {
            self.answer(till, answer)?;
        }
        Ok(())
    }

    fn answer(&mut self, till: usize, answer: Answer) -> anyhow::Result<()> {
        let now_instant = instant(self.base_instant, self.now);
        let Some(agent) = self.tills[till].agent.as_mut() else {
            return Ok(());
        };
        match answer {
            Answer::Digest { card, digest } => {
                if agent.pending.digest_reply(&card, now_instant) == Reply::Late {
                    return Ok(());
                }
                let key = agent.conn.as_ref().and_then(|(_, c)| c.digest_key());
                till360_agent::uplink::conversation::store_digest(
                    key,
                    &card,
                    digest.as_ref(),
                    &mut agent.journal,
                )?;
                self.core(till, TillInput::Hub(HubNews::Digest { card, digest }))
            }
            Answer::CouponVerdict { code, verdict } => {
                match agent.pending.coupon_reply(&code, verdict, now_instant) {
                    Some(news) => self.core(till, TillInput::Hub(news)),
                    None => Ok(()),
                }
            }
        }
    }

    // ---- the network ----

    /// Puts a frame on the wire (`to_hub`: from the till; else from the hub).
    fn send(&mut self, conn: u64, to_hub: bool, msg: Message) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.dead_at.is_some() {
            return;
        }
        let till = c.till;
        let at = self.network.deliver(&mut self.rng, c, to_hub, self.now);
        // Buggify: a link cut while a batch or its ack is in flight.
        let in_flight = matches!(msg, Message::Events(_) | Message::Ack { .. });
        if in_flight && self.faults_on && self.rng.below(1000) < self.targeted_per_mille {
            let when = self.rng.range(0, (at - self.now).max(1) as u64 * 2) as SimMs;
            self.after(when, Action::CutLink(till));
        }
        self.schedule(
            at,
            Action::Deliver {
                conn,
                to_hub,
                sent_at: self.now,
                msg: Box::new(msg),
            },
        );
    }

    fn deliver(
        &mut self,
        conn: u64,
        to_hub: bool,
        sent_at: SimMs,
        msg: Message,
    ) -> anyhow::Result<()> {
        let coin = self.rng.chance(50);
        let Some(c) = self.conns.get_mut(&conn) else {
            return Ok(());
        };
        if !c.arrives(to_hub, sent_at, coin) {
            return Ok(());
        }
        let till = c.till;
        if to_hub {
            if c.hub_incarnation != self.hub.incarnation || !self.hub.is_up() || c.hub_gone {
                return Ok(());
            }
            if c.dead_at.is_some() {
                self.count_fault("late frame");
            }
            let agent = self.tills[till].id.clone();
            let ingest = matches!(msg, Message::Events(_));
            if let Message::Events(events) = &msg {
                let (first, last) = (
                    events.first().map_or(0, |e| e.seq),
                    events.last().map_or(0, |e| e.seq),
                );
                self.note(|| format!("hub gets seqs {first}..={last} of till {till} on {conn}"));
            }
            let out = self.hub.on_frame(conn, &agent, msg, self.hub_now())?;
            for reply in out.replies {
                self.send(conn, false, reply);
            }
            // Buggify: the hub dies right after a commit, its ack still on the wire.
            if ingest && self.faults_on && self.rng.below(1000) < self.targeted_per_mille {
                self.act(Action::CrashHub)?;
                return Ok(());
            }
            if out.close {
                self.note(|| format!("hub closes connection {conn}"));
                self.kill_conn(conn);
                self.hub_forgets(conn);
                let delay = self.rng.range(1, 50) as SimMs;
                self.after(delay, Action::Dropped { till, conn });
            }
            return Ok(());
        }
        let Some(agent) = self.tills[till].agent.as_mut() else {
            return Ok(());
        };
        let Some((current, _)) = agent.conn.as_ref() else {
            return Ok(());
        };
        if *current != conn {
            return Ok(());
        }
        if let Message::Refused { reason, detail } = &msg {
            // Faults alone never make a till and its hub disagree.
            let id = self.tills[till].id.clone();
            self.observed.refusals.push(format!(
                "till {id}: the hub refused it: {reason:?} {detail}"
            ));
        }
        if let Message::Digests {
            up_to_version,
            reset,
            entries,
        } = &msg
        {
            let (v, r, n) = (*up_to_version, *reset, entries.len());
            self.note(|| format!("till {till}: digests to {v} (reset {r}, {n} entries) on {conn}"));
        }
        let today = self.tills[till]
            .clock(START_UNIX_MS + self.now)
            .local()
            .date_naive();
        let mut out = Output::default();
        let agent = self.tills[till].agent.as_mut().expect("checked above");
        let (_, conversation) = agent.conn.as_mut().expect("checked above");
        match conversation.handle(msg, &mut agent.journal, today, &mut out) {
            Ok(()) => {
                self.take_output(till, conn, out)?;
                self.pump(till)
            }
            Err(e) => {
                self.note(|| format!("till {till}: uplink error {e}"));
                self.agent_closes(till, conn)
            }
        }
    }

    /// The agent's side of a connection ends at once (its own error): redial later.
    fn agent_closes(&mut self, till: usize, conn: u64) -> anyhow::Result<()> {
        self.kill_conn(conn);
        self.dropped(till, conn)
    }

    /// The connection dies on the wire; the hub's session lives on until the hub
    /// notices (its idle timeout) or closes it.
    fn kill_conn(&mut self, conn: u64) {
        if let Some(c) = self.conns.get_mut(&conn) {
            if c.dead_at.is_none() {
                c.dead_at = Some(self.now);
                self.after(IDLE_TIMEOUT_MS, Action::HubNotices(conn));
            }
        }
    }

    /// The hub is done with a connection: its session goes.
    fn hub_forgets(&mut self, conn: u64) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.hub_gone = true;
        }
        self.hub.forget(conn);
    }

    /// The till's link breaks.
    /// The agent notices at once (its network went down: an error) or only at its
    /// idle timeout (the path failed silently).
    fn cut(&mut self, till: usize) {
        let notice_ms = if self.rng.chance(50) {
            self.rng.range(0, 100) as SimMs
        } else {
            IDLE_TIMEOUT_MS
        };
        let conn = self.tills[till]
            .agent
            .as_ref()
            .and_then(|a| a.conn.as_ref())
            .map(|(c, _)| *c);
        if let Some(conn) = conn {
            self.kill_conn(conn);
            self.after(notice_ms, Action::Dropped { till, conn });
        }
    }

    fn dropped(&mut self, till: usize, conn: u64) -> anyhow::Result<()> {
        let Some(agent) = self.tills[till].agent.as_mut() else {
            return Ok(());
        };
        if agent.conn.as_ref().map(|(c, _)| *c) != Some(conn) {
            return Ok(());
        }
        let was_streaming = agent.conn.as_ref().is_some_and(|(_, c)| c.is_streaming());
        agent.conn = None;
        let news = agent.pending.give_up_all();
        for news in news {
            self.core(till, TillInput::Hub(news))?;
        }
        if was_streaming {
            self.core(till, TillInput::Hub(HubNews::Online(false)))?;
        }
        let attempt = self.tills[till].agent.as_ref().map_or(0, |a| a.attempt);
        self.schedule_dial(till, attempt);
        Ok(())
    }

    fn schedule_dial(&mut self, till: usize, attempt: u32) {
        let Some(agent) = self.tills[till].agent.as_mut() else {
            return;
        };
        if agent.dialling {
            return;
        }
        agent.dialling = true;
        let ceiling = BACKOFF_MIN_MS
            .saturating_mul(1 << attempt.min(10))
            .min(BACKOFF_MAX_MS);
        let delay = self.rng.range(ceiling / 2, ceiling) as SimMs;
        self.after(delay, Action::Dial(till));
    }

    fn dial(&mut self, till: usize) -> anyhow::Result<()> {
        let reachable = self.hub.is_up() && self.now >= self.tills[till].partitioned_until;
        let Some(agent) = self.tills[till].agent.as_mut() else {
            return Ok(());
        };
        agent.dialling = false;
        if agent.conn.is_some() {
            return Ok(());
        }
        if !reachable {
            agent.attempt = agent.attempt.saturating_add(1);
            let attempt = agent.attempt;
            self.schedule_dial(till, attempt);
            return Ok(());
        }
        let conn = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(
            conn,
            Connection {
                till,
                hub_incarnation: self.hub.incarnation,
                hub_gone: false,
                lost: [false; 2],
                dead_at: None,
                last_to_hub: self.now,
                last_to_till: self.now,
            },
        );
        let till_ms = self.tills[till].clock(START_UNIX_MS + self.now).unix_ms;
        let pacing = Pacing {
            window: 2_000,
            batch_max: 1 + self.rng.below(64) as usize,
        };
        let id = self.tills[till].id.clone();
        let agent = self.tills[till].agent.as_mut().expect("checked above");
        let seq = agent.journal.last_seq();
        let (conversation, opening) = match Conversation::open(
            id,
            pacing,
            &agent.journal,
            seq,
            "till360-agent/sim",
            till_ms,
        ) {
            Ok(opened) => opened,
            Err(e) => {
                agent.attempt = agent.attempt.saturating_add(1);
                let attempt = agent.attempt;
                self.note(|| format!("till {till}: cannot open the conversation: {e}"));
                self.schedule_dial(till, attempt);
                return Ok(());
            }
        };
        agent.conn = Some((conn, conversation));
        self.note(|| format!("till {till}: connection {conn} opens"));
        self.take_output(till, conn, opening)?;
        self.pump(till)
    }

    // ---- the hub side and faults ----

    fn crash_hub(&mut self) {
        self.hub.crash();
        let live: Vec<(u64, usize)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.dead_at.is_none())
            .map(|(id, c)| (*id, c.till))
            .collect();
        for (conn, till) in live {
            self.kill_conn(conn);
            self.after(IDLE_TIMEOUT_MS, Action::Dropped { till, conn });
        }
    }

    fn disk_full(&mut self, till: usize) -> anyhow::Result<()> {
        if !self.faults_on {
            return Ok(());
        }
        self.count_fault("disk full");
        let length = self.rng.range(10_000, 3_600_000) as SimMs;
        self.tills[till].disk_full_until = self.now + length;
        self.note(|| format!("till {till}: disk full for {length} ms"));
        self.fill_disk(till)?;
        self.after(length, Action::DiskFreed(till));
        Ok(())
    }

    fn fill_disk(&mut self, till: usize) -> anyhow::Result<()> {
        if let Some(agent) = self.tills[till].agent.as_mut() {
            agent.journal.limit_pages(1)?;
        }
        Ok(())
    }

    /// The hub erases a customer it knows (a privacy request), then pushes the erasure
    /// to every connected till.
    fn erase(&mut self) -> anyhow::Result<()> {
        if !self.faults_on || !self.hub.is_up() {
            return Ok(());
        }
        let card = self.cards[self.rng.below(self.cards.len() as u64) as usize].clone();
        let now = self.hub_now();
        let Some(store) = self.hub.store() else {
            return Ok(());
        };
        use till360_hub::store::Store as _;
        let Some(profile) = store.profile_by_card(&card)? else {
            return Ok(());
        };
        let Some(report) = store.erase_profile(&profile.profile_id, now)? else {
            return Ok(());
        };
        self.count_fault("erasure");
        let cards: Vec<CardNumber> = profile
            .cards
            .iter()
            .filter_map(|c| CardNumber::parse(c).ok())
            .collect();
        self.note(|| {
            format!(
                "hub erases {} (version {})",
                profile.profile_id, report.erasure_version
            )
        });
        self.observed
            .erased(cards, now.unix_ms, report.erasure_version);
        let refresh = self.rng.range(0, 600_000) as SimMs;
        self.after(refresh, Action::DigestRefresh);
        self.push_all()
    }

    /// What the hub sends every connection after a wake (an erase).
    fn push_all(&mut self) -> anyhow::Result<()> {
        let now = self.hub_now();
        for conn in self.hub.connections() {
            let mut out = super::hub::HubOutput::default();
            self.hub.push(conn, now, &mut out)?;
            for reply in out.replies {
                self.send(conn, false, reply);
            }
        }
        Ok(())
    }

    /// Faults stop; every till and the hub come back; shoppers go home.
    fn heal(&mut self) -> anyhow::Result<()> {
        self.note(|| "healing".to_string());
        self.healing = true;
        self.faults_on = false;
        if !self.hub.is_up() {
            self.hub.restart()?;
        }
        for till in 0..self.tills.len() {
            self.tills[till].partitioned_until = 0;
            self.tills[till].disk_full_until = 0;
            if self.tills[till].agent.is_none() {
                self.start_agent(till)?;
            } else if let Some(agent) = self.tills[till].agent.as_mut() {
                // The disk has room again.
                agent.journal.limit_pages(u64::from(u32::MAX))?;
            }
            self.pump(till)?;
        }
        self.hub
            .refresh_digests(self.hub_now(), self.digest_retention_days)?;
        self.push_all()?;
        // The check for convergence runs at every action; keep some coming.
        for step in 1..=(HEAL_LIMIT_MS / 1_000) {
            self.schedule(self.now + step * 1_000, Action::Tick);
        }
        Ok(())
    }

    /// Every till has its journal acknowledged, every erasure applied and its store's
    /// digest feed read.
    fn converged(&mut self) -> anyhow::Result<bool> {
        Ok(self.behind()?.is_none())
    }

    /// The first till not yet caught up, and how.
    fn behind(&mut self) -> anyhow::Result<Option<String>> {
        let hub_version = self.hub.erasure_version()?;
        for till in &self.tills {
            let Some(agent) = &till.agent else {
                return Ok(Some(format!("till {}: agent down", till.id)));
            };
            let (acked, last) = (agent.journal.acked_seq(), agent.journal.last_seq());
            if acked < last {
                return Ok(Some(format!(
                    "till {}: acknowledged {acked} of {last}",
                    till.id
                )));
            }
            let erasures = agent.journal.erasure_version()?;
            if erasures < hub_version {
                return Ok(Some(format!(
                    "till {}: erasures applied to {erasures}, hub at {hub_version}",
                    till.id
                )));
            }
            let (digests, feed) = (
                agent.journal.digest_version()?,
                self.hub.digest_version(&till.id.store)?,
            );
            if digests < feed {
                return Ok(Some(format!(
                    "till {}: digest feed read to {digests}, the store's is at {feed}",
                    till.id
                )));
            }
        }
        Ok(None)
    }

    fn check(&mut self) -> anyhow::Result<Verdict> {
        let tills: Vec<_> = self.tills.iter().map(|t| t.id.clone()).collect();
        let mut journals = Vec::new();
        for till in &self.tills {
            if let Some(agent) = &till.agent {
                journals.push(checks::TillEnd {
                    id: till.id.clone(),
                    erasure_version: agent.journal.erasure_version()?,
                    cached_digests: agent
                        .journal
                        .digests()?
                        .into_iter()
                        .map(|(k, _)| k)
                        .collect(),
                    digest_key: agent.journal.campaigns()?.map(|s| s.keyring.digest_key),
                });
            }
        }
        let store = self.hub.store().context("the hub is up after healing")?;
        checks::check(store, &tills, &journals, &self.observed)
    }
}

fn agent_wants_poll(till: &SimTill) -> bool {
    till.agent.as_ref().is_some_and(|a| a.core.wants_poll())
}

fn campaigns_path() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/campaigns.toml")
}
