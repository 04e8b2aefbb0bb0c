//! The campaign downlink as the listener sees it: the set loaded at start (no live
//! re-push when the file changes; a restart serves the new set), the master secret
//! every coupon key is derived from, and the numbers codes carry (assigned on first use
//! in the hub's database, see `store::downlink::keyring_numbers`).

use std::sync::Arc;

use till360_shared::campaign::{fnv1a64, CampaignSet};
use till360_shared::coupon::{derive_digest_key, derive_till_key, Keyring};
use till360_shared::wire::Message;
use till360_shared::AgentId;

use crate::campaigns::MasterKey;
use crate::store::downlink::{catalog_for, keyring_numbers};
use crate::store::{Database, StoreError};

/// Shared by all connection tasks (cheap to clone).
#[derive(Clone)]
pub struct CampaignFeed {
    set: Arc<CampaignSet>,
    master: MasterKey,
    db: Database,
}

impl std::fmt::Debug for CampaignFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CampaignFeed")
            .field("version", &self.set.version)
            .finish_non_exhaustive()
    }
}

impl CampaignFeed {
    /// Numbers tills and campaigns in the hub's database (whose schema exists).
    pub fn new(set: CampaignSet, master: MasterKey, db: Database) -> Result<Self, StoreError> {
        Ok(Self {
            set: Arc::new(set),
            master,
            db,
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
        let conn = self.db.get()?;
        let ids: Vec<&str> = self.set.campaigns.iter().map(|c| c.id.as_str()).collect();
        let numbers = keyring_numbers(&*conn, agent, &ids)?;
        let catalog = catalog_for(&*conn, &self.set)?;
        drop(conn);
        let (till_number, store_tills, campaign_numbers) = (
            numbers.till_number,
            numbers.store_tills,
            numbers.campaign_numbers,
        );
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
