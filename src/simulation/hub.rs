//! The simulated hub: the real store on a real SQLite file and one real `HubSession`
//! per connection. What `hub::listener::connection` does with a session's steps is
//! re-enacted here synchronously, in the same order: the step's store call, its reply,
//! then what is newer for the agent (campaigns, redeemed codes, erasures). A crash
//! drops the store and every session; a restart opens the same file again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use till360_hub::campaigns::MasterKey;
use till360_hub::config::DatabaseUrl;
use till360_hub::config::DigestsConfig;
use till360_hub::jobs::digest_refresh::{compaction_job, refresh_job};
use till360_hub::listener::campaigns::CampaignFeed;
use till360_hub::listener::session::{HubSession, Reply, Step};
use till360_hub::store::coupon_checks::coupon_verdict;
use till360_hub::store::coupon_ledger::{redeemed_since, redeemed_version};
use till360_hub::store::digests::{digest_of_card, max_version, rows_after};
use till360_hub::store::erasures::{erasure_version, erasures_since};
use till360_hub::store::{
    Database, DatabaseOptions, IngestRequest, SqlStore, Store, StoreError, TillClock,
};
use till360_shared::campaign::CampaignSet;
use till360_shared::wire::Message;
use till360_shared::{AgentId, Timestamp};

/// What the hub sends back for one frame, and whether it closes the connection after.
#[derive(Debug, Default)]
pub struct HubOutput {
    pub replies: Vec<Message>,
    pub close: bool,
}

/// The hub's running half: gone while crashed.
struct Running {
    store: SqlStore,
    feed: CampaignFeed,
    db: Database,
    sessions: BTreeMap<u64, HubSession>,
}

pub struct SimHub {
    dir: PathBuf,
    set: CampaignSet,
    running: Option<Running>,
    /// Counts restarts: a connection of an earlier incarnation is dead.
    pub incarnation: u64,
}

/// Clock skew beyond which the hub logs a till (as `[coupons] max_clock_skew_secs`).
const MAX_CLOCK_SKEW_MS: i64 = 300_000;

impl SimHub {
    /// A hub in `dir` whose coupon master key is `master` (from the seed: a random key
    /// would change the control groups and card keys from one replay to the next).
    pub fn start(dir: &Path, set: CampaignSet, master: [u8; 32]) -> Result<SimHub, StoreError> {
        let key = MasterKey::from_bytes(&master).expect("32 bytes");
        key.save(dir)
            .map_err(|e| StoreError::CommitFailed(format!("coupon master key: {e}")))?;
        let mut hub = SimHub {
            dir: dir.to_path_buf(),
            set,
            running: None,
            incarnation: 0,
        };
        hub.restart()?;
        Ok(hub)
    }

    pub fn is_up(&self) -> bool {
        self.running.is_some()
    }

    /// Every session and the store go; the database file stays.
    pub fn crash(&mut self) {
        self.running = None;
    }

    /// Restarts with another campaign set (an operator changed `campaigns.toml`): every
    /// till gets it on its next connection.
    pub fn restart_with(&mut self, set: CampaignSet) -> Result<(), StoreError> {
        self.set = set;
        self.restart()
    }

    pub fn restart(&mut self) -> Result<(), StoreError> {
        let url = DatabaseUrl::Sqlite(self.dir.join("hub.db"));
        let db = Database::open(&url, &DatabaseOptions::default())?;
        let master = MasterKey::load_or_create(&self.dir)
            .map_err(|e| StoreError::CommitFailed(format!("coupon master key: {e}")))?;
        let mut store = SqlStore::open(&db)?;
        store.set_coupon_master(master.as_bytes())?;
        let feed = CampaignFeed::new(self.set.clone(), master, db.clone())?;
        self.incarnation += 1;
        self.running = Some(Running {
            store,
            feed,
            db,
            sessions: BTreeMap::new(),
        });
        Ok(())
    }

    /// The store, when the hub is up (for faults like an erase, and for the checks).
    pub fn store(&mut self) -> Option<&mut SqlStore> {
        self.running.as_mut().map(|r| &mut r.store)
    }

    pub fn erasure_version(&self) -> Result<u64, StoreError> {
        match &self.running {
            Some(r) => erasure_version(r.store.sql()),
            None => Ok(0),
        }
    }

    /// The digest refresh and compaction jobs, as the hub's timer runs them. Removals are
    /// kept `retention_days` (0: compacted at once, so a till behind starts over).
    pub fn refresh_digests(
        &mut self,
        now: Timestamp,
        retention_days: u32,
    ) -> Result<(), StoreError> {
        let Some(r) = &self.running else {
            return Ok(());
        };
        let config = DigestsConfig {
            removal_retention_days: retention_days,
            ..DigestsConfig::default()
        };
        refresh_job(&r.db, r.feed.master().as_bytes(), config, now)?;
        compaction_job(&r.db, config, now)?;
        Ok(())
    }

    /// The newest version of `store`'s digest feed.
    pub fn digest_version(&self, store: &str) -> Result<u64, StoreError> {
        match &self.running {
            Some(r) => max_version(r.store.sql(), store),
            None => Ok(0),
        }
    }

    /// A connection ended (closed by either side, or noticed dead).
    pub fn forget(&mut self, conn: u64) {
        if let Some(r) = &mut self.running {
            r.sessions.remove(&conn);
        }
    }

    /// The connections with a session, for pushes after an erase.
    pub fn connections(&self) -> Vec<u64> {
        match &self.running {
            Some(r) => r.sessions.keys().copied().collect(),
            None => Vec::new(),
        }
    }

    /// One frame from `agent` on `conn`.
    pub fn on_frame(
        &mut self,
        conn: u64,
        agent: &AgentId,
        msg: Message,
        now: Timestamp,
    ) -> Result<HubOutput, StoreError> {
        let Some(r) = &mut self.running else {
            return Ok(HubOutput::default());
        };
        let session = r
            .sessions
            .entry(conn)
            .or_insert_with(|| HubSession::new(agent.clone()));
        // Every frame of a connection reaches its one session (the connection task
        // exists until the hub closes it or notices it dead).
        let step = session.handle(msg);
        let mut out = HubOutput::default();
        let reply = match step {
            Step::Welcome { .. } => {
                let high_water = r.store.hello(agent, now);
                Some(session.after_hello(high_water))
            }
            Step::Ingest(events) => {
                let request = IngestRequest {
                    agent,
                    events: &events,
                };
                let outcome = r
                    .store
                    .ingest(&[request], now)
                    .map(|mut outcomes| outcomes.remove(0));
                Some(session.after_ingest(outcome))
            }
            Step::Chain { last_seq, hash } => {
                r.store.chain_claim(agent, last_seq, &hash, now)?;
                None
            }
            Step::Health(health) => {
                r.store.set_health(agent, &health, now)?;
                None
            }
            Step::TillClock { unix_ms } => {
                let clock = TillClock {
                    skew_ms: unix_ms.saturating_sub(now.unix_ms),
                    max_skew_ms: MAX_CLOCK_SKEW_MS,
                };
                r.store.set_clock(agent, &clock, now)?;
                None
            }
            Step::Refuse { reason, detail } => Some(Reply {
                message: Message::Refused { reason, detail },
                close: true,
            }),
            Step::ErasuresApplied { .. } => None,
            Step::DigestRequest { card } => {
                let digest = digest_of_card(r.store.sql(), r.feed.master().as_bytes(), &card, now);
                Some(session.digest_reply(card, digest))
            }
            Step::CouponCheck { code } => {
                let today = now.local().date_naive();
                let verdict =
                    coupon_verdict(r.store.sql(), r.feed.master().as_bytes(), &code, today);
                Some(session.coupon_reply(code, verdict))
            }
        };
        if let Some(reply) = reply {
            out.close |= reply.close;
            out.replies.push(reply.message);
        }
        if !out.close {
            self.push(conn, now, &mut out)?;
        }
        if out.close {
            self.forget(conn);
        }
        Ok(out)
    }

    /// What is newer for the agent on `conn`: its campaign set (the keyring first: a
    /// till recognises erased cards by its card keys), its store's redeemed codes, the
    /// erasures. As `connection.rs` sends after every step and every wake.
    pub fn push(
        &mut self,
        conn: u64,
        now: Timestamp,
        out: &mut HubOutput,
    ) -> Result<(), StoreError> {
        let Some(r) = &mut self.running else {
            return Ok(());
        };
        let Some(session) = r.sessions.get_mut(&conn) else {
            return Ok(());
        };
        let agent = session.agent().clone();
        if session.campaigns_due(r.feed.set().version) {
            out.replies.push(r.feed.frame_for(&agent)?);
            session.campaigns_sent();
        }
        let db = r.db.get()?;
        let hub_max = redeemed_version(&*db)?;
        let today = now.utc().date_naive() - chrono::Days::new(1);
        while let Some((after, limit)) = session.poll_redeemed(hub_max) {
            let rows = redeemed_since(&*db, &agent.store, after, today, limit)?;
            match session.redeemed_frame(rows, hub_max) {
                Some(message) => out.replies.push(message),
                None => continue,
            }
        }
        let hub_version = erasure_version(&*db)?;
        while let Some((after, limit)) = session.poll_erasures(hub_version) {
            let rows = erasures_since(&*db, &agent.store, after, limit)?;
            match session.erasure_frame(rows, hub_version) {
                Some(message) => out.replies.push(message),
                None => break,
            }
        }
        // The digest feed's pages, as `send_digest_page` sends them between reads.
        if session.digests_subscribed() {
            let store_max = max_version(&*db, &agent.store)?;
            for _ in 0..1_000 {
                let Some(poll) = session.poll_digests(store_max) else {
                    break;
                };
                let page = rows_after(&*db, &agent.store, poll.after, poll.limit)?;
                if let Some(message) = session.digest_frame(page, store_max) {
                    out.replies.push(message);
                }
            }
        }
        Ok(())
    }
}
