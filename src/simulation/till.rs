//! A simulated till: the agent's real till core and journal (a SQLite file on tmpfs
//! that outlives a crash), the real uplink conversation and pending-request table,
//! and a POS printing receipts in the supermarket layout.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use till360_agent::config::AgentConfig;
use till360_agent::journal::Journal;
use till360_agent::layout::Layout;
use till360_agent::till_core::{TillCore, TillSettings};
use till360_agent::uplink::conversation::Conversation;
use till360_shared::{AgentId, Timestamp};

use crate::sim::{PosSimulator, ReceiptStyle};

/// The till's agent while it runs (a crash drops all of it; the journal file stays).
pub struct Agent {
    pub journal: Journal,
    pub core: TillCore,
    /// The connection the uplink uses, and its conversation (after `open`).
    pub conn: Option<(u64, Conversation)>,
    pub pending: till360_agent::uplink::PendingRequests,
    /// Consecutive failed dials (the backoff's exponent).
    pub attempt: u32,
    /// A dial is scheduled.
    pub dialling: bool,
}

pub struct SimTill {
    pub id: AgentId,
    pub dir: PathBuf,
    pub config: AgentConfig,
    pub layout: Layout,
    pub pos: PosSimulator,
    pub agent: Option<Agent>,
    /// Till clock minus true time (clock jumps move it).
    pub clock_offset_ms: i64,
    /// Local offset of the till's clock (minutes east of UTC).
    pub utc_offset_min: i16,
    /// The link to the hub is partitioned until then.
    pub partitioned_until: i64,
    /// The journal's disk is full until then.
    pub disk_full_until: i64,
}

/// How long a till waits for the hub's answer (DESIGN.md: 150 ms).
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(150);

impl SimTill {
    pub fn new(
        store: &str,
        till: &str,
        dir: PathBuf,
        layout: Layout,
        opening: chrono::NaiveDateTime,
        seed: u64,
    ) -> anyhow::Result<SimTill> {
        let text = format!(
            "store = \"{store}\"\ntill = \"{till}\"\ndata_dir = \"{}\"\n\
             [scanner]\nport = \"/dev/null\"\n[pos]\nport = \"/dev/null\"\ncodepage = \"cp858\"\n\
             layout = \"{}\"\n[printer]\nport = \"/dev/null\"\n[cards]\nprefixes = [\"2\"]\n\
             [coupons]\nenabled = true\n",
            dir.display(),
            layout_path().display()
        );
        let config = AgentConfig::from_toml_str(&text, &dir.join("agent.toml"))?;
        Ok(SimTill {
            id: AgentId::new(store, till),
            dir,
            config,
            layout,
            pos: PosSimulator::new(ReceiptStyle::Supermarket, store, opening, seed),
            agent: None,
            clock_offset_ms: 0,
            utc_offset_min: 60,
            partitioned_until: 0,
            disk_full_until: 0,
        })
    }

    /// Starts (or restarts) the agent from its journal.
    pub fn start(&mut self) -> anyhow::Result<()> {
        let mut journal = Journal::open(&self.dir, &self.id)?;
        journal.set_max_bytes(self.config.journal.max_bytes);
        let c = &self.config;
        let settings = TillSettings {
            store: c.store.clone(),
            till: c.till.clone(),
            layout: self.layout.clone(),
            codepage: c.pos.codepage,
            esc_t: c.pos.esc_t,
            card_timeout_ms: c.checkout.card_timeout_ms(),
            coupons_enabled: c.coupons.enabled,
            has_gate: true,
            has_notices: true,
            has_uplink: true,
            notice_text: c.coupons.notice_text.clone(),
            columns: c.coupons.columns,
            expiry_label: c.coupons.expiry_label.clone(),
            max_unverified: c.coupons.max_unverified,
        };
        let core = TillCore::new(settings, &journal);
        self.agent = Some(Agent {
            journal,
            core,
            conn: None,
            pending: till360_agent::uplink::PendingRequests::new(REQUEST_TIMEOUT, 64),
            attempt: 0,
            dialling: false,
        });
        Ok(())
    }

    /// The till's clock at true time `unix_ms`.
    pub fn clock(&self, unix_ms: i64) -> Timestamp {
        Timestamp::from_unix_ms(unix_ms + self.clock_offset_ms, self.utc_offset_min)
    }
}

/// The supermarket layout the simulated POS prints.
pub fn layout_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/receipts/supermarket.toml")
}

/// Simulated milliseconds as an `Instant` for the pending-request table (which only
/// compares them).
pub fn instant(base: Instant, sim_ms: i64) -> Instant {
    base + Duration::from_millis(u64::try_from(sim_ms).unwrap_or(0))
}
