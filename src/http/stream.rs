//! `GET /api/events/stream`: the tenant's audit log as server-sent events, live. The handler
//! checks the request and hands a subscription to a pump (`stream/pump.rs`) that reads the log
//! after the client's position whenever the store announces a commit; the response body
//! (`stream/body.rs`) drains the pump's bounded buffer. `Streams` holds the settings, the
//! shutdown signal every pump listens to, and the counters `/metrics` shows.

mod body;
mod pump;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::http::header::{CacheControl, CacheDirective};
use actix_web::{get, web, HttpRequest, HttpResponse};
use payrail_actors::domain::events::EVENT_TYPES;
use serde::Deserialize;
use tokio::sync::watch;
use utoipa::IntoParams;

use super::auth::TenantKey;
use super::errors::ApiError;
use super::openapi::{InvalidParameter, RateLimited, Unauthenticated, Unavailable};
use super::{detached, AppState};
use crate::store::feed::FeedFull;
use pump::{Filter, Pump};

pub use body::CloseReason;

/// A comment line this often keeps idle connections (and the proxies between) open.
pub const DEFAULT_HEARTBEAT_MS: u64 = 15_000;
/// A subscriber whose buffer stays full this long is cut off.
pub const DEFAULT_STALL_TIMEOUT_MS: u64 = 10_000;
/// The header a reconnecting `EventSource` sends with the last `id:` it received.
pub const LAST_EVENT_ID: &str = "last-event-id";
/// Seconds a client refused for too many streams should wait.
const RETRY_AFTER_FULL_SECS: u64 = 5;

/// Timings of live streams.
#[derive(Debug, Clone, Copy)]
pub struct StreamSettings {
    pub heartbeat: Duration,
    pub stall_timeout: Duration,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_millis(DEFAULT_HEARTBEAT_MS),
            stall_timeout: Duration::from_millis(DEFAULT_STALL_TIMEOUT_MS),
        }
    }
}

/// Live streams of this process: settings, the shutdown signal, counters.
pub struct Streams {
    settings: StreamSettings,
    shutdown: watch::Sender<bool>,
    opened: AtomicU64,
    closed: [AtomicU64; CloseReason::ALL.len()],
}

impl Streams {
    pub fn new(settings: StreamSettings) -> Self {
        Self {
            settings,
            shutdown: watch::Sender::new(false),
            opened: AtomicU64::new(0),
            closed: Default::default(),
        }
    }

    /// Ends every live stream (each sends its `close` event) and refuses new ones: called when
    /// the server starts draining, so open streams don't hold graceful shutdown open.
    pub fn shut_down(&self) {
        self.shutdown.send_replace(true);
    }

    fn is_shut_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    fn count_close(&self, reason: CloseReason) {
        if let Some(counter) = CloseReason::ALL
            .iter()
            .position(|r| *r == reason)
            .and_then(|i| self.closed.get(i))
        {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Prometheus text: live subscribers, streams opened, streams closed by reason.
    pub fn render_metrics(&self, live: usize) -> String {
        let mut out = format!(
            "# HELP payrail_event_streams Live event-stream subscribers\n\
             # TYPE payrail_event_streams gauge\npayrail_event_streams {live}\n\
             # HELP payrail_event_streams_opened_total Event streams opened\n\
             # TYPE payrail_event_streams_opened_total counter\n\
             payrail_event_streams_opened_total {}\n\
             # HELP payrail_event_streams_closed_total Event streams closed, by reason\n\
             # TYPE payrail_event_streams_closed_total counter\n",
            self.opened.load(Ordering::Relaxed)
        );
        for (reason, counter) in CloseReason::ALL.iter().zip(&self.closed) {
            out.push_str(&format!(
                "payrail_event_streams_closed_total{{reason=\"{}\"}} {}\n",
                reason.as_str(),
                counter.load(Ordering::Relaxed)
            ));
        }
        out
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Only events of this type, e.g. `invoice.paid`.
    #[serde(rename = "type")]
    #[param(schema_with = super::constraints::event_type)]
    event_type: Option<String>,
    /// Only events of this subject (`inv_…`, `pay_…`, `re_…`, `key_…`).
    subject_id: Option<String>,
    /// Resume after this `sequence` (the `Last-Event-ID` header wins when both are sent).
    /// Without either, the stream starts with the next event committed.
    #[param(minimum = 0)]
    after: Option<i64>,
}

/// The position to resume after: `Last-Event-ID`, else `after`, else none (start live).
fn resume_position(req: &HttpRequest, after: Option<i64>) -> Result<Option<i64>, ApiError> {
    let header = match req.headers().get(LAST_EVENT_ID) {
        None => None,
        Some(value) => {
            let text = value.to_str().unwrap_or_default().trim();
            Some(text.parse::<i64>().map_err(|_| {
                ApiError::InvalidRequest("Last-Event-ID must be an event's sequence".into())
            })?)
        }
    };
    // Both are checked, so an invalid `after` is refused even where the header wins.
    let position = header.or(after);
    if header.is_some_and(|p| p < 0) || after.is_some_and(|p| p < 0) {
        return Err(ApiError::InvalidRequest(
            "a position is never negative".into(),
        ));
    }
    Ok(position)
}

/// The tenant's audit events as they commit (server-sent events).
///
/// Each event is sent as `id: <sequence>`, `event: <eventType>` and `data: <the event as
/// GET /api/events shows it>`. `Last-Event-ID` (or `after`) resumes after that position with
/// nothing missed; a comment line is sent every 15 s. A client that accepts nothing for 10 s
/// while events wait is cut off; the stream then ends with `event: close` and
/// `data: {"reason":…}` (also sent on server shutdown or when the key is revoked). Any role.
#[utoipa::path(
    operation_id = "streamEvents",
    tag = "events",
    security(("apiKey" = [])),
    params(
        StreamQuery,
        ("Last-Event-ID" = Option<i64>, Header, nullable = false, minimum = 0, description = "Resume after this sequence"),
    ),
    responses(
        (status = 200, description = "An endless `text/event-stream`", body = super::schemas::StreamEventSchema,
         content_type = "text/event-stream"),
        InvalidParameter, Unauthenticated, RateLimited, Unavailable,
    )
)]
#[get("/api/events/stream")]
pub async fn subscribe(
    auth: TenantKey,
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<StreamQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    if q.event_type
        .as_deref()
        .is_some_and(|t| !EVENT_TYPES.contains(&t))
    {
        return Err(ApiError::InvalidRequest("unknown event type".into()));
    }
    let position = resume_position(&req, q.after)?;
    if state.streams.is_shut_down() {
        return Err(ApiError::ShuttingDown);
    }
    let subscription = state
        .db
        .feed()
        .subscribe(auth.tenant)
        .map_err(|full| match full {
            FeedFull::Tenant => ApiError::RateLimited {
                retry_after_secs: RETRY_AFTER_FULL_SECS,
            },
            FeedFull::Server => ApiError::Overloaded,
        })?;
    // Subscribed first, so a commit between this read and the pump's first wait still wakes it.
    let position = match position {
        Some(p) => p,
        None => {
            let (db, tenant) = (state.db.clone(), auth.tenant);
            detached(async move { Ok(db.last_sequence(tenant).await?) }).await?
        }
    };
    let filter = Filter {
        event_type: q.event_type,
        subject_id: q.subject_id,
    };
    state.streams.opened.fetch_add(1, Ordering::Relaxed);
    let body = Pump::start(state.into_inner(), auth, filter, position, subscription);
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(CacheControl(vec![CacheDirective::NoCache]))
        // Tells a buffering reverse proxy (nginx) to pass each event on at once.
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body))
}
