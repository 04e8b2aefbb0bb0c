//! The HTTP API (JSON). Paths and field names are binding (DESIGN.md). Reads go
//! through their own store connection, never through the writer.

use std::sync::{Arc, Mutex};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use till360_shared::CardNumber;

use crate::store::{Store, StoreError};

/// The read side of the store, shared by all requests.
pub type Reader = Arc<Mutex<Box<dyn Store>>>;

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;

pub fn router(reader: Reader) -> Router {
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/agents", get(agents))
        .route("/api/v1/profiles", get(profiles))
        .route("/api/v1/profiles/by-card/{card}", get(profile_by_card))
        .route("/api/v1/profiles/{id}", get(profile))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(reader)
}

/// An error as JSON: `{"error": "..."}` with a status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        tracing::error!("API read failed: {err}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, err.to_string())
    }
}

/// Runs a blocking store read off the async runtime.
async fn read<T, F>(reader: Reader, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let store = reader
            .lock()
            .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store lock poisoned"))?;
        f(store.as_ref()).map_err(ApiError::from)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({
        "status": "ok",
        "service": "till360-hub",
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

async fn agents(State(reader): State<Reader>) -> Result<Response, ApiError> {
    let agents = read(reader, |s| s.agents()).await?;
    Ok(Json(agents).into_response())
}

async fn profile_by_card(
    State(reader): State<Reader>,
    Path(card): Path<String>,
) -> Result<Response, ApiError> {
    let card = CardNumber::parse(&card)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let shown = card.to_string();
    match read(reader, move |s| s.profile_by_card(&card)).await? {
        Some(view) => Ok(Json(view).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no profile for card {shown}"),
        )),
    }
}

async fn profile(
    State(reader): State<Reader>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let shown = id.clone();
    match read(reader, move |s| s.profile(&id)).await? {
        Some(view) => Ok(Json(view).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no profile {shown:?}"),
        )),
    }
}

#[derive(Deserialize)]
struct ListParams {
    limit: Option<usize>,
}

async fn profiles(
    State(reader): State<Reader>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) =
        params.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    let views = read(reader, move |s| s.profiles(limit)).await?;
    Ok(Json(views).into_response())
}
