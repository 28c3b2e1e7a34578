//! The tenant's audit log, cursor-paged by global sequence.

use actix_web::{web, HttpResponse};
use payrail_actors::domain::events::EVENT_TYPES;
use serde::Deserialize;

use super::auth::TenantKey;
use super::errors::ApiError;
use super::{detached, views, AppState};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/events", web::get().to(list));
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EventQuery {
    #[serde(rename = "type")]
    event_type: Option<String>,
    subject_id: Option<String>,
    limit: Option<u32>,
    /// The `sequence` of the last event seen.
    starting_after: Option<i64>,
}

async fn list(
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
    let items: Vec<_> = events.iter().map(views::event).collect();
    Ok(HttpResponse::Ok()
        .json(serde_json::json!({"items": items, "hasMore": has_more, "nextCursor": next})))
}
