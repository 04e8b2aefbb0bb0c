//! Campaigns and coupons: the campaign list with its counts, one campaign's KPIs, and
//! the scan report per store.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{ApiError, ApiState};
use crate::store::coupon_kpis;

/// `GET /api/v1/campaigns`: the campaign set the hub serves, each campaign with the
/// set's content version (`CampaignSet::content_version`) and its `issued`, `control` and `redeemed` counts (empty when no
/// `campaigns` file is configured).
pub(super) async fn campaigns(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let campaigns = state.campaigns.clone();
    let Some(set) = campaigns.as_ref() else {
        return Ok(Json(serde_json::Value::Array(Vec::new())).into_response());
    };
    let counts = state.profiles.run(coupon_kpis::coupon_counts).await?;
    // As `till360-agent status` shows the set a till holds.
    let version = set.content_version();
    let list: Vec<serde_json::Value> = set
        .campaigns
        .iter()
        .map(|c| {
            let mut v = serde_json::to_value(c).unwrap_or_default();
            if let Some(obj) = v.as_object_mut() {
                let n = counts.get(&c.id).copied().unwrap_or_default();
                obj.insert("version".into(), version.clone().into());
                obj.insert("issued".into(), n.issued.into());
                obj.insert("control".into(), n.control.into());
                obj.insert("redeemed".into(), n.redeemed.into());
            }
            v
        })
        .collect();
    Ok(Json(serde_json::Value::Array(list)).into_response())
}

/// `GET /api/v1/campaigns/{id}/kpis`: 404 for an id not in the hub's campaign set.
pub(super) async fn campaign_kpis(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let window_days = state
        .campaigns
        .as_ref()
        .as_ref()
        .and_then(|set| set.get(&id))
        .map(|c| c.valid_days)
        .ok_or_else(|| ApiError::not_found(format!("no campaign {id:?}")))?;
    let kpis = state
        .profiles
        .run(move |db| coupon_kpis::campaign_kpis(db, &id, window_days))
        .await?;
    Ok(Json(kpis).into_response())
}

/// `GET /api/v1/coupons/stores`: per store where codes were scanned, the counted
/// redemptions, duplicates, forged and refused scans.
pub(super) async fn stores(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let report = state.profiles.run(coupon_kpis::coupon_stores).await?;
    Ok(Json(report).into_response())
}
