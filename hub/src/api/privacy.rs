//! Privacy endpoints: export everything held on a person, erase a person, set
//! consents (`store::privacy`).

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;
use till360_shared::Timestamp;

use super::{ApiError, DigestsHook, ProfileDatabase};
use crate::store::{privacy as store, ConsentChange, ErasureReport, StoreError};

/// The consent purposes the hub knows.
pub(crate) const PURPOSES: [&str; 4] = ["email", "sms", "post", "personalization"];

/// Consents set through the API are recorded with this source.
const SOURCE: &str = "api";

fn now() -> Timestamp {
    Timestamp::from_utc(chrono::Utc::now(), 0)
}

pub(crate) async fn export(
    State(db): State<ProfileDatabase>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let shown = id.clone();
    let Some(export) = db.run(move |conn| store::export_profile(conn, &id)).await? else {
        return Err(ApiError::not_found(format!("no profile {shown:?}")));
    };
    // Only a stored id gets here, but the header must never carry odd bytes.
    let file: String = shown
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .collect();
    let disposition = format!("attachment; filename=\"profile-{file}.json\"");
    Ok(([(header::CONTENT_DISPOSITION, disposition)], Json(export)).into_response())
}

pub(super) async fn erase(
    State(db): State<ProfileDatabase>,
    State(digests_changed): State<DigestsHook>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let shown = id.clone();
    match erase_profile(&db, &digests_changed, id).await? {
        Some(report) => Ok(Json(report).into_response()),
        None => Err(ApiError::not_found(format!("no profile {shown:?}"))),
    }
}

/// Erases profile `id` (`None`: no such profile), logs it and refreshes the tills'
/// digests: `DELETE /api/v1/profiles/{id}` and the console's erase button.
pub(crate) async fn erase_profile(
    db: &ProfileDatabase,
    digests_changed: &DigestsHook,
    id: String,
) -> Result<Option<ErasureReport>, ApiError> {
    let at = now();
    let suppression = db.suppression.clone();
    let erased = db.run(move |conn| {
        let suppression = suppression.ok_or(StoreError::NoMasterSecret)?;
        store::erase_profile(conn, &suppression, &id, at)
    });
    let report = erased.await?;
    if let Some(report) = &report {
        tracing::info!(
            "erased profile {}: {} identifiers, {} transactions anonymised, erasure version {}",
            report.profile_id,
            report.identifiers_removed,
            report.transactions_anonymised,
            report.erasure_version
        );
        digests_changed.call();
    }
    Ok(report)
}

/// Sets consents of profile `id` with `source` (`None`: no such profile).
pub(crate) async fn set_consents(
    db: &ProfileDatabase,
    id: String,
    changes: Vec<ConsentChange>,
    source: &'static str,
) -> Result<Option<crate::profile::ProfileView>, ApiError> {
    let at = now();
    db.run(move |conn| store::set_consents(conn, &id, &changes, source, at))
        .await
}

pub(super) async fn consents(
    State(db): State<ProfileDatabase>,
    Path(id): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let changes = consent_changes(&body)?;
    let shown = id.clone();
    match set_consents(&db, id, changes, SOURCE).await? {
        Some(view) => Ok(Json(view).into_response()),
        None => Err(ApiError::not_found(format!("no profile {shown:?}"))),
    }
}

/// Reads `{"email": true, ...}` or `[{"purpose": "email", "granted": true}, ...]`.
fn consent_changes(body: &Value) -> Result<Vec<ConsentChange>, ApiError> {
    let changes: Vec<ConsentChange> = match body {
        Value::Object(map) => map
            .iter()
            .map(|(purpose, granted)| match granted {
                Value::Bool(granted) => Ok(ConsentChange {
                    purpose: purpose.clone(),
                    granted: *granted,
                }),
                other => Err(ApiError::bad_request(format!(
                    "consent {purpose:?}: expected true or false, got {other}"
                ))),
            })
            .collect::<Result<_, _>>()?,
        Value::Array(_) => serde_json::from_value(body.clone()).map_err(|e| {
            ApiError::bad_request(format!(
                "expected [{{\"purpose\": ..., \"granted\": true|false}}]: {e}"
            ))
        })?,
        _ => {
            return Err(ApiError::bad_request(
                "expected {\"email\": true, ...} or [{\"purpose\": ..., \"granted\": ...}]",
            ))
        }
    };
    if changes.is_empty() {
        return Err(ApiError::bad_request("no consent given"));
    }
    if let Some(unknown) = changes
        .iter()
        .find(|c| !PURPOSES.contains(&c.purpose.as_str()))
    {
        return Err(ApiError::bad_request(format!(
            "unknown consent purpose {:?} (known: {})",
            unknown.purpose,
            PURPOSES.join(", ")
        )));
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn change(purpose: &str, granted: bool) -> ConsentChange {
        ConsentChange {
            purpose: purpose.into(),
            granted,
        }
    }

    #[test]
    fn both_body_shapes() {
        let map = consent_changes(&json!({"email": true, "sms": false})).unwrap();
        assert_eq!(map, vec![change("email", true), change("sms", false)]);
        let list = consent_changes(&json!([{"purpose": "post", "granted": true}])).unwrap();
        assert_eq!(list, vec![change("post", true)]);
    }

    #[test]
    fn refuses_unknown_purposes_and_odd_values() {
        let err = consent_changes(&json!({"email": true, "fax": true})).unwrap_err();
        assert!(err.message.contains("\"fax\""), "{}", err.message);
        assert!(consent_changes(&json!({"email": "yes"})).is_err());
        assert!(consent_changes(&json!([{"purpose": "email"}])).is_err());
        assert!(consent_changes(&json!({})).is_err());
        assert!(consent_changes(&json!(true)).is_err());
    }
}
