//! Cards the fraud rules flagged: `GET /api/v1/identifiers/suspicious` lists them with
//! their evidence; `POST /api/v1/identifiers/suspicious/{card}/clear` is a marketer's "this
//! is fine": the card gets digests (personal coupons) again and links as before.

use axum::extract::{Path, State};
use axum::Json;
use till360_shared::{CardNumber, Timestamp};

use super::{ApiError, DigestsHook, ProfileDatabase};
use crate::store::suspicious::{self, SuspiciousCard};

pub(super) async fn list(
    State(db): State<ProfileDatabase>,
) -> Result<Json<Vec<SuspiciousCard>>, ApiError> {
    db.run(suspicious::list).await.map(Json)
}

pub(super) async fn clear(
    State(db): State<ProfileDatabase>,
    State(digests_changed): State<DigestsHook>,
    Path(id): Path<String>,
) -> Result<Json<SuspiciousCard>, ApiError> {
    let card = CardNumber::parse(id.trim())
        .map_err(|e| ApiError::bad_request(format!("not a card number: {e}")))?;
    let last4 = card.last4().to_string();
    let at = Timestamp::from_utc(chrono::Utc::now(), 0);
    let max_customers = db.max_customers_per_identifier;
    let cleared = db
        .run(move |conn| suspicious::clear_and_relink(conn, card.as_str(), max_customers, at))
        .await?;
    match cleared {
        Some(cleared) => {
            tracing::info!("suspicious card …{last4} cleared through the API");
            // Its digest comes back to the tills now, not at the next refresh.
            digests_changed.call();
            Ok(Json(cleared))
        }
        None => Err(ApiError::not_found(format!(
            "card …{last4} is not flagged as suspicious"
        ))),
    }
}
