//! One subscriber's pump, a task of its own: catch up from the client's position, then on
//! every commit the store announces (or every poll interval, for commits made by another
//! process) read the log after the last event sent and queue the frames. The queue is bounded;
//! a client that leaves it full for the stall timeout is cut off. Commits never wait on a pump:
//! the store only pokes the tenant's feed.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix_web::web::Bytes;
use payrail_actors::domain::TenantId;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::{interval_at, sleep, timeout, Instant, MissedTickBehavior};

use super::body::{event_frame, CloseReason, CloseSlot, Queued, SseBody, HEARTBEAT};
use super::StreamSettings;
use crate::http::auth::TenantKey;
use crate::http::{views, AppState};
use crate::store::feed::Subscription;
use crate::store::LIST_LIMIT_MAX;

/// Frames a subscriber may have queued and unsent.
pub const STREAM_BUFFER_FRAMES: usize = 256;
/// Bytes a subscriber may have queued and unsent (a larger frame takes the whole budget).
pub const STREAM_BUFFER_BYTES: usize = 512 * 1024;
/// Events read per query.
const STREAM_PAGE_EVENTS: u32 = LIST_LIMIT_MAX;
/// A pump reads at most this often, however often commits wake it.
const STREAM_READ_INTERVAL_MIN: Duration = Duration::from_millis(50);
/// Commits by other processes (which cannot poke this one) show up within this.
const STREAM_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// The stream's filters, as `GET /api/events` applies them.
pub struct Filter {
    pub event_type: Option<String>,
    pub subject_id: Option<String>,
}

pub struct Pump {
    state: Arc<AppState>,
    key: TenantKey,
    filter: Filter,
    /// The `sequence` of the last event queued (or the client's resume position).
    position: i64,
    subscription: Subscription,
    frames: mpsc::Sender<Queued>,
    /// The byte budget of the buffer, shared with the body, which returns each frame's share.
    budget: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
    settings: StreamSettings,
}

impl Pump {
    /// Spawns the pump; answers the response body it fills.
    pub fn start(
        state: Arc<AppState>,
        key: TenantKey,
        filter: Filter,
        position: i64,
        subscription: Subscription,
    ) -> SseBody {
        let (frames, receiver) = mpsc::channel(STREAM_BUFFER_FRAMES);
        let close: CloseSlot = Arc::new(OnceLock::new());
        let pump = Pump {
            shutdown: state.streams.shutdown.subscribe(),
            settings: state.streams.settings,
            state,
            key,
            filter,
            position,
            subscription,
            frames,
            budget: Arc::new(Semaphore::new(STREAM_BUFFER_BYTES)),
        };
        let slot = close.clone();
        actix_web::rt::spawn(async move {
            let mut pump = pump;
            let reason = pump.run().await;
            tracing::debug!(tenant = %pump.key.tenant, reason = reason.as_str(), "event stream closed");
            pump.state.streams.count_close(reason);
            // Set before the sender drops with the pump, so the body finds it.
            let _ = slot.set(reason);
        });
        SseBody::new(receiver, close)
    }

    async fn run(&mut self) -> CloseReason {
        let mut heartbeat = interval_at(
            Instant::now() + self.settings.heartbeat,
            self.settings.heartbeat,
        );
        let mut poll = interval_at(Instant::now() + STREAM_POLL_INTERVAL, STREAM_POLL_INTERVAL);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            if *self.shutdown.borrow() {
                return CloseReason::ShuttingDown;
            }
            let read_at = Instant::now();
            if let Err(reason) = self.catch_up().await {
                return reason;
            }
            tokio::select! {
                biased;
                _ = self.shutdown.changed() => return CloseReason::ShuttingDown,
                _ = self.frames.closed() => return CloseReason::Gone,
                _ = heartbeat.tick() => {
                    if let Err(reason) = self.heartbeat().await {
                        return reason;
                    }
                    continue;
                }
                _ = self.subscription.committed() => {}
                _ = poll.tick() => {}
            }
            // Coalesces a burst of commits into one read.
            sleep((read_at + STREAM_READ_INTERVAL_MIN).saturating_duration_since(Instant::now()))
                .await;
        }
    }

    /// Queues every event after the position, page by page.
    async fn catch_up(&mut self) -> Result<(), CloseReason> {
        loop {
            let events = self
                .state
                .db
                .list_events(
                    self.key.tenant,
                    self.filter.event_type.as_deref(),
                    self.filter.subject_id.as_deref(),
                    STREAM_PAGE_EVENTS,
                    Some(self.position),
                )
                .await
                .map_err(|e| self.unavailable(&e.to_string()))?;
            let more = events.len() >= STREAM_PAGE_EVENTS as usize;
            for stored in events.iter().take(STREAM_PAGE_EVENTS as usize) {
                let view = views::event(stored).map_err(|e| self.unavailable(&e.to_string()))?;
                let frame = event_frame(stored.sequence, stored.event.event_type(), &view)
                    .map_err(|e| self.unavailable(&e))?;
                self.deliver(frame).await?;
                self.position = stored.sequence;
            }
            if !more {
                return Ok(());
            }
        }
    }

    /// Checks the key is still valid, then sends a comment line.
    async fn heartbeat(&mut self) -> Result<(), CloseReason> {
        let key = self
            .state
            .db
            .find_api_key(self.key.key_id)
            .await
            .map_err(|e| self.unavailable(&e.to_string()))?;
        if !key.is_some_and(|k| k.revoked_at.is_none() && k.tenant_id == self.key.tenant) {
            return Err(CloseReason::KeyRevoked);
        }
        self.deliver(Bytes::from_static(HEARTBEAT)).await
    }

    /// Queues one frame, waiting at most the stall timeout for room.
    async fn deliver(&mut self, bytes: Bytes) -> Result<(), CloseReason> {
        let share = u32::try_from(bytes.len().clamp(1, STREAM_BUFFER_BYTES)).unwrap_or(u32::MAX);
        let (budget, frames) = (self.budget.clone(), self.frames.clone());
        let queue = async move {
            let budget = budget
                .acquire_many_owned(share)
                .await
                .map_err(|_| CloseReason::Gone)?;
            frames
                .send(Queued::new(bytes, budget))
                .await
                .map_err(|_| CloseReason::Gone)
        };
        tokio::select! {
            biased;
            _ = self.shutdown.changed() => Err(CloseReason::ShuttingDown),
            queued = timeout(self.settings.stall_timeout, queue) => {
                queued.unwrap_or(Err(CloseReason::TooSlow))
            }
        }
    }

    fn unavailable(&self, cause: &str) -> CloseReason {
        tracing::warn!(tenant = %self.tenant(), %cause, "event stream could not read the log");
        CloseReason::Unavailable
    }

    fn tenant(&self) -> TenantId {
        self.key.tenant
    }
}
