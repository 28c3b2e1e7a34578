//! What outbound endpoints received: the attempts log (cursor-paged, newest first), a replay of
//! a time range to one endpoint, and the redelivery of one event. Reads take any role, the
//! rest the admin role; another tenant's endpoint or event is a 404.

use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use payrail_actors::domain::{AttemptId, EndpointId, EventId, FieldError};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{Role, TenantKey};
use super::constraints;
use super::errors::ApiError;
use super::idempotency::{parse, Once, Replay};
use super::openapi::{
    BadRequest, Forbidden, InFlight, Internal, InvalidParameter, KeyReused, NotFound, RateLimited,
    Unauthenticated, Unavailable, Unprocessable,
};
use super::views::{to_json, ts};
use super::webhook_endpoints::find;
use super::{detached, AppState};
use crate::store::{AttemptRow, AttemptStatus, REPLAY_EVENTS_MAX};

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AttemptQuery {
    /// `succeeded`, `failed` (no attempt follows) or `pending` (failed, a retry is scheduled).
    #[param(schema_with = constraints::attempt_status)]
    status: Option<String>,
    /// 1-100, default 50.
    #[param(schema_with = constraints::page_size)]
    limit: Option<u32>,
    /// The id of the last attempt seen (a page's `nextCursor`).
    #[param(schema_with = constraints::attempt_id_param)]
    starting_after: Option<String>,
}

/// One attempt to deliver one event.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = WebhookAttempt)]
pub struct AttemptView {
    #[schema(example = "wa_01jd6x2c8ef9r4t7bq5n1k3h2m")]
    id: String,
    event_id: String,
    /// 1 for the first attempt of a delivery.
    attempt: i64,
    /// `succeeded`, `pending` (failed; retried at `nextAttemptAt`) or `failed` (no retry).
    status: &'static str,
    /// The receiver's HTTP status; none when it did not answer (timeout, connection failure).
    response_status: Option<u16>,
    /// The first 1 KiB of the answer, or why there was none.
    response_body: Option<String>,
    duration_ms: i64,
    #[schema(format = DateTime)]
    attempted_at: String,
    #[schema(format = DateTime)]
    next_attempt_at: Option<String>,
}

/// A page of attempts, newest first.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptPage {
    items: Vec<AttemptView>,
    has_more: bool,
    /// Pass as `startingAfter` for the next page.
    next_cursor: Option<String>,
}

fn view(a: &AttemptRow) -> AttemptView {
    AttemptView {
        id: a.id.to_string(),
        event_id: a.event_id.to_string(),
        attempt: a.attempt,
        status: a.status.as_str(),
        response_status: a.response_status,
        response_body: a.response_body.clone(),
        duration_ms: a.duration_ms,
        attempted_at: ts(&a.attempted_at),
        next_attempt_at: a.next_attempt_at.as_ref().map(ts),
    }
}

/// An endpoint's delivery attempts (any role), newest first.
#[utoipa::path(
    operation_id = "listWebhookAttempts",
    tag = "webhook-endpoints",
    security(("apiKey" = [])),
    params(("id" = String, Path, description = "Endpoint id (`we_…`)"), AttemptQuery),
    responses(
        (status = 200, description = "A page of attempts", body = AttemptPage),
        InvalidParameter, Unauthenticated, NotFound, RateLimited, Internal, Unavailable,
    )
)]
#[get("/api/webhook-endpoints/{id}/attempts")]
pub async fn attempts(
    auth: TenantKey,
    state: web::Data<AppState>,
    id: web::Path<String>,
    q: web::Query<AttemptQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::InvalidRequest("limit must be 1-100".into()));
    }
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(AttemptStatus::parse(s).ok_or_else(|| {
            ApiError::InvalidRequest("status must be succeeded, failed or pending".into())
        })?),
    };
    let after: Option<AttemptId> =
        match q.starting_after.as_deref() {
            None => None,
            Some(s) => Some(s.parse().map_err(|_| {
                ApiError::InvalidRequest("startingAfter is not an attempt id".into())
            })?),
        };
    let endpoint = find(&state, &auth, &id).await?;
    let db = state.db.clone();
    let mut rows = detached(async move {
        Ok(db
            .list_attempts(
                endpoint.tenant_id,
                endpoint.id,
                status,
                limit as usize,
                after,
            )
            .await?)
    })
    .await?;
    let has_more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = rows.last().filter(|_| has_more).map(|a| a.id.to_string());
    Ok(HttpResponse::Ok().json(AttemptPage {
        items: rows.iter().map(view).collect(),
        has_more,
        next_cursor,
    }))
}

/// How replay and redelivery treat `Idempotency-Key`: checked, and never needed, since
/// scheduling the same events again only re-sends them (delivery is at least once anyway).
const RESCHEDULE_KEY: &str = "Optional, 1-255 printable ASCII chars (else 400). A retry with the \
    same key and body gets the first answer back and schedules nothing again.";

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRange {
    /// Events that occurred at or after this time…
    #[schema(format = DateTime)]
    since: String,
    /// …and before this one (default: now).
    #[schema(format = DateTime)]
    until: Option<String>,
}

/// How many events were scheduled.
#[derive(Serialize, ToSchema)]
pub struct Scheduled {
    scheduled: usize,
}

fn timestamp(name: &str, raw: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ApiError::Validation(vec![FieldError {
                field: name.into(),
                message: "must be an RFC 3339 timestamp".into(),
            }])
        })
}

/// Send an endpoint the events of a time range again (admin key).
#[utoipa::path(
    operation_id = "replayWebhookEndpoint",
    tag = "webhook-endpoints",
    security(("apiKey" = [])),
    request_body = ReplayRange,
    params(
        ("id" = String, Path, description = "Endpoint id (`we_…`)"),
        ("Idempotency-Key" = Option<String>, Header, nullable = false, description = RESCHEDULE_KEY),
    ),
    responses(
        (status = 202, description = "The events are scheduled", body = Scheduled),
        BadRequest, Unauthenticated, Forbidden, NotFound, InFlight, Unprocessable, RateLimited,
        Internal, Unavailable,
    )
)]
#[post("/api/webhook-endpoints/{id}/replay")]
pub async fn replay(
    auth: TenantKey,
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    auth.require(Role::Admin)?;
    let input: ReplayRange = parse(&body)?;
    let once = Once::begin(&req, &body, &auth.tenant.to_string(), &state.in_flight)?;
    if let Some(stored) = earlier(once.as_ref(), &state).await? {
        return Ok(stored.respond());
    }
    let now = state.clock.now();
    let since = timestamp("since", &input.since)?;
    let until = match &input.until {
        Some(u) => timestamp("until", u)?,
        None => now,
    };
    let endpoint = find(&state, &auth, &id).await?;
    let endpoint_id = endpoint.id;
    let db = state.db.clone();
    let seqs = detached(async move {
        let wanted = |t: &str| endpoint.wants(t);
        Ok(db
            .replay_range(endpoint.tenant_id, endpoint.id, since, until, wanted)
            .await?)
    })
    .await?
    .ok_or_else(|| {
        ApiError::Validation(vec![FieldError {
            field: "since".into(),
            message: format!("the range holds more than {REPLAY_EVENTS_MAX} events; narrow it"),
        }])
    })?;
    let answer = to_json(&Scheduled {
        scheduled: seqs.len(),
    });
    let response = once
        .as_ref()
        .map(|o| o.keep(StatusCode::ACCEPTED, &answer, now))
        .transpose()?;
    let (db, tenant) = (state.db.clone(), auth.tenant);
    let scheduled = detached(async move {
        Ok(db
            .schedule(tenant, endpoint_id, &seqs, now, response.as_ref())
            .await?)
    })
    .await;
    answer_scheduled(&state, once.as_ref(), scheduled, answer).await
}

/// The stored answer of an earlier request with the same `Idempotency-Key`, if any.
async fn earlier(once: Option<&Once>, state: &AppState) -> Result<Option<Replay>, ApiError> {
    match once {
        Some(once) => once.earlier(&state.db).await,
        None => Ok(None),
    }
}

/// 202 with `answer` once the deliveries (and the answer, under the request's key) are stored;
/// if another node stored an answer under the same key first, that one.
async fn answer_scheduled(
    state: &AppState,
    once: Option<&Once>,
    scheduled: Result<(), ApiError>,
    answer: String,
) -> Result<HttpResponse, ApiError> {
    if let Err(e) = scheduled {
        return match earlier(once, state).await? {
            Some(stored) => Ok(stored.respond()),
            None => Err(e),
        };
    }
    state.outbound.endpoints_changed();
    Ok(HttpResponse::Accepted()
        .content_type("application/json")
        .body(answer))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Redeliver {
    /// One endpoint (`we_…`); default: every endpoint subscribed to the event's type.
    endpoint_id: Option<String>,
}

/// Send one event again (admin key), to one endpoint or to every subscribed one.
#[utoipa::path(
    operation_id = "redeliverEvent",
    tag = "webhook-endpoints",
    security(("apiKey" = [])),
    request_body = Redeliver,
    params(
        ("id" = String, Path, description = "Event id (`evt_…`)"),
        ("Idempotency-Key" = Option<String>, Header, nullable = false, description = RESCHEDULE_KEY),
    ),
    responses(
        (status = 202, description = "Scheduled", body = Scheduled),
        BadRequest, Unauthenticated, Forbidden, NotFound, InFlight, KeyReused, RateLimited,
        Internal, Unavailable,
    )
)]
#[post("/api/events/{id}/redeliver")]
pub async fn redeliver(
    auth: TenantKey,
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    auth.require(Role::Admin)?;
    let input: Redeliver = if body.is_empty() {
        Redeliver::default()
    } else {
        parse(&body)?
    };
    let once = Once::begin(&req, &body, &auth.tenant.to_string(), &state.in_flight)?;
    if let Some(stored) = earlier(once.as_ref(), &state).await? {
        return Ok(stored.respond());
    }
    let event_id: EventId = id.parse().map_err(|_| ApiError::NotFound("event"))?;
    let only: Option<EndpointId> = match &input.endpoint_id {
        Some(raw) => Some(find(&state, &auth, raw).await?.id),
        None => None,
    };
    let (db, tenant, now) = (state.db.clone(), auth.tenant, state.clock.now());
    let (sequence, chosen) = detached(async move {
        let Some(event) = db.find_event(tenant, event_id).await? else {
            return Ok(None);
        };
        let chosen: Vec<EndpointId> = db
            .list_endpoints(tenant)
            .await?
            .into_iter()
            .filter(|endpoint| match only {
                Some(id) => id == endpoint.id,
                None => endpoint.wants(event.event.event_type()),
            })
            .map(|endpoint| endpoint.id)
            .collect();
        Ok(Some((event.sequence, chosen)))
    })
    .await?
    .ok_or(ApiError::NotFound("event"))?;
    let answer = to_json(&Scheduled {
        scheduled: chosen.len(),
    });
    let response = once
        .as_ref()
        .map(|o| o.keep(StatusCode::ACCEPTED, &answer, now))
        .transpose()?;
    let db = state.db.clone();
    let scheduled = detached(async move {
        // The answer is stored with the last endpoint's schedule (alone if there is none).
        let last = chosen.len().saturating_sub(1);
        if chosen.is_empty() {
            return Ok(db
                .schedule(tenant, EndpointId::new(), &[], now, response.as_ref())
                .await?);
        }
        for (i, endpoint) in chosen.into_iter().enumerate() {
            let kept = if i == last { response.as_ref() } else { None };
            db.schedule(tenant, endpoint, &[sequence], now, kept)
                .await?;
        }
        Ok(())
    })
    .await;
    answer_scheduled(&state, once.as_ref(), scheduled, answer).await
}
