//! The hub's campaign set, this till's coupon keyring and the catalog items.
//!
//! They live in a one-row `campaigns` table, written together by one statement
//! ([`Journal::store_campaigns`]): after a crash the old state or the new one is
//! there, never a mix.

use rusqlite::{params, OptionalExtension};
use till360_shared::campaign::{CampaignSet, CatalogItem};
use till360_shared::codec;
use till360_shared::coupon::Keyring;

use super::{to_i64, to_u64, Journal, JournalError};
use crate::hub_link::CampaignState;

/// A `campaigns` row as stored: version, set, keyring and catalog blobs.
type CampaignRow = (i64, Vec<u8>, Vec<u8>, Vec<u8>);

impl Journal {
    /// The version of the campaign set held (0 when none was received).
    pub fn campaign_version(&self) -> Result<u64, JournalError> {
        self.conn
            .query_row("SELECT version FROM campaigns WHERE id = 1", [], |r| {
                Ok(to_u64(r.get(0)?))
            })
            .optional()
            .map(|v| v.unwrap_or(0))
            .map_err(|e| self.sql_err(e))
    }

    /// Replaces the campaign set, this till's coupon keyring and the catalog with the
    /// hub's frame (one statement, so after a crash the old state or the new one is
    /// there, never a mix).
    pub fn store_campaigns(&mut self, state: &CampaignState) -> Result<(), JournalError> {
        let encode = |e: till360_shared::codec::CodecError| JournalError::Encode {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        };
        let set_blob = codec::to_bytes(&state.set).map_err(encode)?;
        let ring_blob = codec::to_bytes(&state.keyring).map_err(encode)?;
        let catalog_blob = codec::to_bytes(&state.catalog).map_err(encode)?;
        self.conn
            .execute(
                "INSERT OR REPLACE INTO campaigns (id, version, campaign_set, keyring, catalog)
                 VALUES (1, ?1, ?2, ?3, ?4)",
                params![to_i64(state.version), set_blob, ring_blob, catalog_blob],
            )
            .map_err(|e| self.sql_err(e))?;
        Ok(())
    }

    /// The campaign set, coupon keyring and catalog held, for the coupon decision;
    /// `None` before the hub sent any.
    pub fn campaigns(&self) -> Result<Option<CampaignState>, JournalError> {
        let row: Option<CampaignRow> = self
            .conn
            .query_row(
                "SELECT version, campaign_set, keyring, catalog FROM campaigns WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(|e| self.sql_err(e))?;
        let Some((version, set_blob, ring_blob, catalog_blob)) = row else {
            return Ok(None);
        };
        let corrupt = |reason: String| JournalError::CorruptCampaigns {
            path: self.path.display().to_string(),
            reason,
        };
        let set: CampaignSet = codec::from_bytes(&set_blob).map_err(|e| corrupt(e.to_string()))?;
        let keyring: Keyring =
            codec::from_bytes(&ring_blob).map_err(|e| corrupt(format!("keyring: {e}")))?;
        let catalog: Vec<CatalogItem> =
            codec::from_bytes(&catalog_blob).map_err(|e| corrupt(format!("catalog: {e}")))?;
        Ok(Some(CampaignState {
            version: to_u64(version),
            set,
            keyring,
            catalog,
        }))
    }
}
