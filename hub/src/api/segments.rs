//! Segments (sizes, members as a mailing CSV) and blocked identifiers: listings for
//! marketers, not profile reads, read through the store's segment functions
//! (`store::segments`) on a connection of the hub's database.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState};
use crate::spreadsheet::text_cell;
use crate::store::segments::{self as listings, MailingAddress};
use crate::store::sql::Sql;
use crate::store::StoreError;

/// A segment as the config defines it (`[[segment]]` `id` and `name`; the conditions
/// are the segment engine's business).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentDef {
    pub id: String,
    pub name: String,
}

impl SegmentDef {
    /// The config's segments as the segment engine reads them; the hub refuses to start
    /// with a bad definition (`server::start`), so nothing is skipped silently here.
    pub fn from_tables(tables: &[toml::Table]) -> Vec<SegmentDef> {
        crate::segments::compile(tables)
            .map(|segments| {
                segments
                    .into_iter()
                    .map(|s| SegmentDef {
                        id: s.id,
                        name: s.name,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[derive(Debug, Serialize)]
struct SegmentSize {
    id: String,
    name: String,
    size: u64,
    /// When the members were computed (hub clock, RFC 3339); null before the first run.
    computed_at: Option<String>,
}

/// Runs `f` on a connection of the hub's database, off the runtime.
async fn query<T, F>(state: &ApiState, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&dyn Sql) -> Result<T, StoreError> + Send + 'static,
{
    let Some(database) = state.database.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "this hub has no database to list from",
        ));
    };
    tokio::task::spawn_blocking(move || database.get().and_then(|conn| f(&*conn)))
        .await
        .map_err(|e| ApiError::internal(format!("listing task failed: {e}")))?
        .map_err(|e| ApiError::internal(format!("listing: {e}")))
}

pub(super) async fn list(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let (sizes, computed_at): (HashMap<String, u64>, _) = query(&state, |db| {
        // One snapshot: sizes and their time agree.
        let (sizes, at) = listings::sizes(db)?;
        Ok((sizes, at.map(|t| t.to_rfc3339())))
    })
    .await?;
    let list: Vec<SegmentSize> = state
        .segments
        .iter()
        .map(|def| SegmentSize {
            id: def.id.clone(),
            name: def.name.clone(),
            size: sizes.get(&def.id).copied().unwrap_or(0),
            computed_at: computed_at.clone(),
        })
        .collect();
    Ok(Json(list).into_response())
}

/// `POST /api/v1/traits/recompute`: traits and segments now (they also follow every
/// import and the schedule); answers what was computed.
pub(super) async fn recompute(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let Some(traits) = state.traits.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "this API runs without a traits schedule",
        ));
    };
    let summary = tokio::task::spawn_blocking(move || traits.recompute_now())
        .await
        .map_err(|e| ApiError::internal(format!("recompute task failed: {e}")))?
        .map_err(|e| ApiError::internal(format!("recompute: {e}")))?;
    let segments: Vec<serde_json::Value> = summary
        .segments
        .iter()
        .map(|(id, size)| serde_json::json!({ "id": id, "size": size }))
        .collect();
    Ok(Json(serde_json::json!({
        "profiles": summary.profiles,
        "segments": segments,
        "computed_at": summary.computed_at.to_rfc3339(),
        "notes": summary.models.notes,
    }))
    .into_response())
}

/// A mailing channel and what a mailing on it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    Email,
    Post,
}

impl Channel {
    /// The consent purpose that allows mailing on this channel.
    fn purpose(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Post => "post",
        }
    }

    fn header(self) -> [&'static str; 4] {
        match self {
            Channel::Email => ["customer_no", "first_name", "last_name", "email"],
            Channel::Post => ["customer_no", "first_name", "last_name", "postal_code"],
        }
    }

    /// The address column: an e-mail identifier, or the profile's postal code.
    fn address(self) -> MailingAddress {
        match self {
            Channel::Email => MailingAddress::Email,
            Channel::Post => MailingAddress::PostalCode,
        }
    }
}

/// The query string as given; `channel` is checked by hand so a client is told the
/// parameter and its values, not a deserializer's message.
#[derive(Deserialize)]
pub(crate) struct CsvParams {
    pub(crate) channel: Option<String>,
}

impl CsvParams {
    fn channel(&self) -> Result<Channel, ApiError> {
        match self.channel.as_deref() {
            None => Err(ApiError::bad_request(
                "query parameter `channel` is required: `email` or `post`",
            )),
            Some("email") => Ok(Channel::Email),
            Some("post") => Ok(Channel::Post),
            Some(other) => Err(ApiError::bad_request(format!(
                "query parameter `channel` must be `email` or `post`, not {other:?}"
            ))),
        }
    }
}

/// Members of a segment with that channel's consent granted (and an address on it),
/// as CSV for a mailing house.
pub(crate) async fn members_csv(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    params: Result<Query<CsvParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| {
        ApiError::bad_request(format!(
            "query parameter `channel` must be `email` or `post`: {}",
            e.body_text()
        ))
    })?;
    let channel = params.channel()?;
    if !state.segments.iter().any(|def| def.id == id) {
        return Err(ApiError::not_found(format!("no segment {id:?}")));
    }
    let file: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .collect();
    let rows = query(&state, move |db| {
        listings::mailing(db, &id, channel.purpose(), channel.address())
    })
    .await?;
    let mut csv = String::new();
    write_csv_row(&mut csv, channel.header().map(Some).as_slice());
    // Without an address on the channel a row cannot be mailed.
    for row in rows.iter().filter(|row| row[3].is_some()) {
        write_csv_row(&mut csv, row.as_slice());
    }
    let disposition = format!(
        "attachment; filename=\"segment-{file}-{}.csv\"",
        channel.purpose()
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        csv,
    )
        .into_response())
}

fn write_csv_row<S: AsRef<str>>(out: &mut String, fields: &[Option<S>]) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&text_cell(field.as_ref().map_or("", AsRef::as_ref)));
    }
    out.push_str("\r\n");
}

pub(super) async fn blocked(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let rows = query(&state, listings::blocked_identifiers).await?;
    Ok(Json(rows).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_what_needs_it() {
        let mut out = String::new();
        write_csv_row(
            &mut out,
            &[Some("1"), None, Some("O\"Neil, Jr"), Some("a\nb")],
        );
        assert_eq!(out, "1,,\"O\"\"Neil, Jr\",\"a\nb\"\r\n");
    }

    #[test]
    fn definitions_come_from_the_segment_engine() {
        let tables: Vec<toml::Table> = vec![
            toml::from_str("id = \"vip\"\nname = \"Best customers\"").unwrap(),
            toml::from_str("id = \"lapsing\"").unwrap(),
        ];
        assert_eq!(
            SegmentDef::from_tables(&tables),
            vec![
                SegmentDef {
                    id: "vip".into(),
                    name: "Best customers".into()
                },
                SegmentDef {
                    id: "lapsing".into(),
                    name: "lapsing".into()
                },
            ]
        );
    }
}
