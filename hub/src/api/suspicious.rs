//! Cards the fraud rules flagged: `GET /api/v1/identifiers/suspicious` lists them with
//! their evidence; `POST /api/v1/identifiers/suspicious/{card}/clear` is a marketer's "this
//! is fine": the card gets digests (personal coupons) again and links as before.

use axum::extract::{Path, State};
use axum::Json;
use till360_shared::{CardNumber, Timestamp};

use super::{read, write, ApiError, DigestsHook, Reader};
use crate::store::suspicious::SuspiciousCard;

pub(super) async fn list(
    State(reader): State<Reader>,
) -> Result<Json<Vec<SuspiciousCard>>, ApiError> {
    read(reader, |s| s.suspicious_cards()).await.map(Json)
}

pub(super) async fn clear(
    State(reader): State<Reader>,
    State(digests_changed): State<DigestsHook>,
    Path(id): Path<String>,
) -> Result<Json<SuspiciousCard>, ApiError> {
    let card = CardNumber::parse(id.trim())
        .map_err(|e| ApiError::bad_request(format!("not a card number: {e}")))?;
    let last4 = card.last4().to_string();
    let at = Timestamp::from_utc(chrono::Utc::now(), 0);
    match write(reader, move |s| s.clear_suspicious(card.as_str(), at)).await? {
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
