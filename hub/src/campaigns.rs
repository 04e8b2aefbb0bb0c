//! The campaign set the hub serves (`hub.toml` `campaigns`): read at start, checked
//! against the catalog's sensitive categories (principle 7: never target them), and
//! versioned by content so agents can tell a changed set from the one they hold.

use std::path::Path;

use rusqlite::Connection;
use thiserror::Error;
use till360_shared::campaign::{fnv1a64, CampaignError, CampaignSet};

#[derive(Debug, Error)]
pub enum CampaignsError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Invalid(#[from] CampaignError),
    #[error("{path}: campaign {campaign:?} names the sensitive category {category:?} in `{key}`: sensitive products are never targeted")]
    Sensitive {
        path: std::path::PathBuf,
        campaign: String,
        key: &'static str,
        category: String,
    },
    #[error("cannot read the catalog's sensitive categories: {0}")]
    Catalog(#[from] rusqlite::Error),
}

/// Reads and checks the campaign file. Without a `version` in the file, the version is
/// a hash of its content: the same file always gives the same version.
pub fn load(path: &Path, catalog: &Connection) -> Result<CampaignSet, CampaignsError> {
    let text = std::fs::read_to_string(path).map_err(|source| CampaignsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut set = CampaignSet::from_toml_str(&text, path)?;
    if set.version == 0 {
        // Never 0: 0 means "no campaigns yet" to an agent.
        set.version = fnv1a64(text.as_bytes()).max(1);
    }
    let sensitive: Vec<String> = catalog
        .prepare("SELECT DISTINCT category FROM products WHERE sensitive != 0")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if let Some(conflict) = set.sensitive_conflicts(&sensitive).into_iter().next() {
        return Err(CampaignsError::Sensitive {
            path: path.to_path_buf(),
            campaign: conflict.campaign_id,
            key: conflict.key,
            category: conflict.category,
        });
    }
    Ok(set)
}
