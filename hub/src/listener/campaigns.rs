//! The campaign downlink as the listener sees it: the set loaded at start (no live
//! re-push when the file changes; a restart serves the new set) and the master secret
//! each till's coupon key is derived from, for the certificate's store/till.

use std::sync::Arc;

use till360_shared::campaign::CampaignSet;
use till360_shared::coupon::derive_till_key;
use till360_shared::wire::Message;
use till360_shared::AgentId;

use crate::campaigns::MasterKey;

/// Shared by all connection tasks (cheap to clone).
#[derive(Clone, Debug)]
pub struct CampaignFeed {
    set: Arc<CampaignSet>,
    master: MasterKey,
}

impl CampaignFeed {
    pub fn new(set: CampaignSet, master: MasterKey) -> Self {
        Self {
            set: Arc::new(set),
            master,
        }
    }

    /// The version agents compare with theirs.
    pub fn version(&self) -> u64 {
        self.set.version
    }

    /// The `Campaigns` frame for `agent` (from its certificate): the set and its key.
    pub fn frame_for(&self, agent: &AgentId) -> Message {
        let key = derive_till_key(self.master.as_bytes(), &agent.store, &agent.till);
        Message::Campaigns {
            set: (*self.set).clone(),
            till_key: *key.as_bytes(),
        }
    }
}
