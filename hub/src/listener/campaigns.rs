//! The campaign downlink as the listener sees it: the set loaded at start (no live
//! re-push when the file changes; a restart serves the new set), the master secret
//! every coupon key is derived from, and the numbers codes carry (assigned on first use
//! in the hub's database, see `store::numbering`).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use till360_shared::campaign::{fnv1a64, CampaignSet, CatalogItem, Trigger};
use till360_shared::coupon::{derive_digest_key, derive_till_key, Keyring};
use till360_shared::wire::Message;
use till360_shared::AgentId;

use crate::campaigns::MasterKey;
use crate::store::{numbering, StoreError};

/// Shared by all connection tasks (cheap to clone).
#[derive(Clone)]
pub struct CampaignFeed {
    set: Arc<CampaignSet>,
    master: MasterKey,
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for CampaignFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CampaignFeed")
            .field("version", &self.set.version)
            .finish_non_exhaustive()
    }
}

impl CampaignFeed {
    /// Opens its own connection on the hub's database (whose schema exists).
    pub fn new(set: CampaignSet, master: MasterKey, db_path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(db_path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        Ok(Self {
            set: Arc::new(set),
            master,
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// The set as loaded.
    pub fn set(&self) -> &CampaignSet {
        &self.set
    }

    pub fn master(&self) -> &MasterKey {
        &self.master
    }

    /// The `Campaigns` frame for `agent` (from its certificate): the set and its keyring.
    /// Its `version` covers the set and the keyring, so a till learns of a new till in
    /// its store at its next connect. Blocking (a few small queries): call from a
    /// blocking context.
    pub fn frame_for(&self, agent: &AgentId) -> Result<Message, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let till_number = numbering::till_number(&*conn, agent)?;
        let ids: Vec<&str> = self.set.campaigns.iter().map(|c| c.id.as_str()).collect();
        let campaign_numbers = numbering::campaign_numbers(&*conn, &ids)?;
        let store_tills = numbering::store_tills(&*conn, &agent.store)?;
        let catalog = catalog_for(&conn, &self.set)?;
        drop(conn);
        let master = self.master.as_bytes();
        let keyring = Keyring {
            till_number,
            till_key: *derive_till_key(master, &agent.store, &agent.till).as_bytes(),
            store_tills: store_tills
                .iter()
                .map(|(n, till)| (*n, *derive_till_key(master, &agent.store, till).as_bytes()))
                .collect(),
            campaign_numbers,
            digest_key: derive_digest_key(master, &agent.store),
        };
        let mut fingerprint = self.set.version.to_be_bytes().to_vec();
        fingerprint.extend_from_slice(&till_number.to_be_bytes());
        for (n, _) in &store_tills {
            fingerprint.extend_from_slice(&n.to_be_bytes());
        }
        for (id, n) in &keyring.campaign_numbers {
            fingerprint.extend_from_slice(id.as_bytes());
            fingerprint.extend_from_slice(&n.to_be_bytes());
        }
        for item in &catalog {
            for part in [&item.sku, &item.description, &item.category] {
                fingerprint.extend_from_slice(&(part.len() as u64).to_be_bytes());
                fingerprint.extend_from_slice(part.as_bytes());
            }
            fingerprint.push(u8::from(item.sensitive));
        }
        // 0 means "none held" on the agent; tills store versions as SQLite integers.
        let version = (fnv1a64(&fingerprint) & i64::MAX as u64).max(1);
        Ok(Message::Campaigns {
            version,
            set: (*self.set).clone(),
            keyring,
            catalog,
        })
    }
}

/// The catalog items a till needs to apply `set`: every sensitive product (never counted
/// towards a trigger) and every product of a category a campaign targets.
fn catalog_for(conn: &Connection, set: &CampaignSet) -> Result<Vec<CatalogItem>, StoreError> {
    let targeted: Vec<String> = set
        .campaigns
        .iter()
        .filter_map(|c| match &c.trigger {
            Trigger::BasketCategory { category, .. } => Some(category.to_lowercase()),
            _ => None,
        })
        .collect();
    let mut stmt = conn.prepare_cached(
        "SELECT sku, description, category, sensitive FROM products ORDER BY sku",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(CatalogItem {
            sku: r.get(0)?,
            description: r.get(1)?,
            category: r.get(2)?,
            sensitive: r.get::<_, i64>(3)? != 0,
        })
    })?;
    let mut items = Vec::new();
    for row in rows {
        let item = row?;
        if item.sensitive || targeted.contains(&item.category.to_lowercase()) {
            items.push(item);
        }
    }
    Ok(items)
}
