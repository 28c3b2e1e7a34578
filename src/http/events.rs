//! The tenant's audit log, cursor-paged by global sequence.

use actix_web::{get, web, HttpResponse};
use payrail_actors::domain::events::EVENT_TYPES;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::TenantKey;
use super::constraints;
use super::errors::ApiError;
use super::openapi::{Internal, InvalidParameter, RateLimited, Unauthenticated, Unavailable};
use super::views::EventView;
use super::{detached, views, AppState};

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// One event type, e.g. `invoice.paid`.
    #[serde(rename = "type")]
    #[param(schema_with = constraints::event_type)]
    event_type: Option<String>,
    /// The subject's id (`inv_…`, `pay_…`, `re_…`, `key_…`); any other value matches nothing.
    #[param(schema_with = constraints::subject_filter)]
    subject_id: Option<String>,
    /// 1-100, default 50.
    #[param(schema_with = constraints::page_size)]
    limit: Option<u32>,
    /// The `sequence` of the last event seen (a page's `nextCursor`).
    #[param(schema_with = constraints::sequence)]
    starting_after: Option<i64>,
}

/// A page of the audit log, oldest first.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventPage {
    items: Vec<EventView>,
    has_more: bool,
    /// Pass as `startingAfter` for the next page.
    next_cursor: Option<i64>,
}

/// The tenant's audit log, cursor-paged by sequence.
#[utoipa::path(
    operation_id = "listEvents",
    tag = "events",
    security(("apiKey" = [])),
    params(EventQuery),
    responses(
        (status = 200, description = "A page of events", body = EventPage),
        InvalidParameter, Unauthenticated, RateLimited, Internal, Unavailable,
    )
)]
#[get("/api/events")]
pub async fn list(
    auth: TenantKey,
    state: web::Data<AppState>,
    q: web::Query<EventQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::InvalidRequest("limit must be 1-100".into()));
    }
    if q.event_type
        .as_deref()
        .is_some_and(|t| !EVENT_TYPES.contains(&t))
    {
        return Err(ApiError::InvalidRequest("unknown event type".into()));
    }
    if q.subject_id.as_deref().is_some_and(|s| s.contains('\0')) {
        return Err(ApiError::InvalidRequest(
            "subjectId may not contain U+0000".into(),
        ));
    }
    let (db, tenant) = (state.db.clone(), auth.tenant);
    let (event_type, subject, after) =
        (q.event_type.clone(), q.subject_id.clone(), q.starting_after);
    // One more than asked tells whether another page exists.
    let mut events = detached(async move {
        Ok(db
            .list_events(
                tenant,
                event_type.as_deref(),
                subject.as_deref(),
                limit + 1,
                after,
            )
            .await?)
    })
    .await?;
    let has_more = events.len() > limit as usize;
    events.truncate(limit as usize);
    let next = events.last().filter(|_| has_more).map(|e| e.sequence);
    let items = events
        .iter()
        .map(views::event)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(EventPage {
        items,
        has_more,
        next_cursor: next,
    }))
}
