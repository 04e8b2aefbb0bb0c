//! Profile reads: by id, by card, newest first, search (`store::profiles`).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use till360_shared::CardNumber;

use super::{ApiError, ProfileDatabase, DEFAULT_LIMIT, MAX_LIMIT};
use crate::store::{profiles as store, ProfileQuery};

pub(super) async fn profile_by_card(
    State(db): State<ProfileDatabase>,
    Path(card): Path<String>,
) -> Result<Response, ApiError> {
    let card = CardNumber::parse(&card).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let shown = card.to_string();
    match db
        .run(move |conn| store::profile_by_card(conn, &card))
        .await?
    {
        Some(view) => Ok(Json(view).into_response()),
        None => Err(ApiError::not_found(format!("no profile for card {shown}"))),
    }
}

pub(super) async fn profile(
    State(db): State<ProfileDatabase>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let shown = id.clone();
    match db.run(move |conn| store::load_view(conn, &id)).await? {
        Some(view) => Ok(Json(view).into_response()),
        None => Err(ApiError::not_found(format!("no profile {shown:?}"))),
    }
}

#[derive(Deserialize)]
pub(super) struct ListParams {
    limit: Option<usize>,
}

fn limit_of(limit: Option<usize>) -> usize {
    limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT)
}

pub(super) async fn profiles(
    State(db): State<ProfileDatabase>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = limit_of(params.limit);
    let views = db.run(move |conn| store::profiles(conn, limit)).await?;
    Ok(Json(views).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SearchParams {
    card: Option<String>,
    customer_no: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    name: Option<String>,
    limit: Option<usize>,
}

impl SearchParams {
    /// Exactly one criterion, not blank.
    fn query(self) -> Result<ProfileQuery, ApiError> {
        let given: Vec<ProfileQuery> = [
            self.card.map(ProfileQuery::Card),
            self.customer_no.map(ProfileQuery::CustomerNo),
            self.email.map(ProfileQuery::Email),
            self.phone.map(ProfileQuery::Phone),
            self.name.map(ProfileQuery::NamePrefix),
        ]
        .into_iter()
        .flatten()
        .collect();
        let mut given = given.into_iter();
        match (given.next(), given.next()) {
            (Some(query), None) if !criterion(&query).trim().is_empty() => Ok(query),
            (Some(_), None) => Err(ApiError::bad_request("the search value is empty")),
            _ => Err(ApiError::bad_request(
                "give exactly one of card, customer_no, email, phone, name",
            )),
        }
    }
}

fn criterion(query: &ProfileQuery) -> &str {
    match query {
        ProfileQuery::Card(v)
        | ProfileQuery::CustomerNo(v)
        | ProfileQuery::Email(v)
        | ProfileQuery::Phone(v)
        | ProfileQuery::NamePrefix(v) => v,
    }
}

pub(super) async fn search(
    State(db): State<ProfileDatabase>,
    params: Result<Query<SearchParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = limit_of(params.limit);
    let query = params.query()?;
    let country_code = db.default_country_code;
    let views = db
        .run(move |conn| store::search(conn, &query, limit, country_code))
        .await?;
    Ok(Json(views).into_response())
}
