//! The wire side of a live stream: server-sent-event frames, and the response body that drains
//! a pump's bounded buffer. When the pump closes the stream it leaves a reason; the body then
//! sends `event: close` at once, ahead of anything still buffered (the client resumes from the
//! last `id:` it received, so dropping those frames loses nothing), and ends.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use actix_web::web::Bytes;
use futures::Stream;
use serde::Serialize;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use crate::http::views::EventView;

/// The comment line sent when nothing else was.
pub const HEARTBEAT: &[u8] = b": keep-alive\n\n";

/// Why the server ended a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client accepted nothing for the stall timeout while events waited.
    TooSlow,
    /// The server is draining for shutdown.
    ShuttingDown,
    /// The API key was revoked (or deleted) while the stream was open.
    KeyRevoked,
    /// Storage could not be read; reconnect shortly.
    Unavailable,
    /// The client went away (nothing is sent).
    Gone,
}

impl CloseReason {
    pub const ALL: [CloseReason; 5] = [
        Self::TooSlow,
        Self::ShuttingDown,
        Self::KeyRevoked,
        Self::Unavailable,
        Self::Gone,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooSlow => "too_slow",
            Self::ShuttingDown => "shutting_down",
            Self::KeyRevoked => "key_revoked",
            Self::Unavailable => "unavailable",
            Self::Gone => "gone",
        }
    }

    fn detail(self) -> &'static str {
        match self {
            Self::TooSlow => {
                "the client read too slowly and was cut off; reconnect with Last-Event-ID to resume"
            }
            Self::ShuttingDown => {
                "the server is shutting down; reconnect with Last-Event-ID to resume"
            }
            Self::KeyRevoked => "the API key was revoked",
            Self::Unavailable => {
                "storage is unavailable; reconnect with Last-Event-ID to resume shortly"
            }
            Self::Gone => "the client went away",
        }
    }

    /// The last frame the client gets.
    fn frame(self) -> Bytes {
        #[derive(Serialize)]
        struct Close {
            reason: &'static str,
            detail: &'static str,
        }
        let data = serde_json::to_string(&Close {
            reason: self.as_str(),
            detail: self.detail(),
        })
        .unwrap_or_default();
        Bytes::from(format!("event: close\ndata: {data}\n\n"))
    }
}

/// One event as a frame: `id:`, `event:` and the event's JSON on one `data:` line (JSON text
/// never holds a raw newline: serde escapes them inside strings).
pub fn event_frame(sequence: i64, event_type: &str, view: &EventView) -> Result<Bytes, String> {
    let data = serde_json::to_string(view).map_err(|e| format!("event did not serialize: {e}"))?;
    Ok(Bytes::from(format!(
        "id: {sequence}\nevent: {event_type}\ndata: {data}\n\n"
    )))
}

/// A frame waiting in a subscriber's buffer, holding its share of the buffer's byte budget
/// until the body hands it to the connection.
pub struct Queued {
    bytes: Bytes,
    _budget: OwnedSemaphorePermit,
}

impl Queued {
    pub fn new(bytes: Bytes, budget: OwnedSemaphorePermit) -> Self {
        Self {
            bytes,
            _budget: budget,
        }
    }
}

/// Where the pump leaves its reason for closing.
pub type CloseSlot = Arc<OnceLock<CloseReason>>;

/// The response body of a live stream.
pub struct SseBody {
    frames: mpsc::Receiver<Queued>,
    close: CloseSlot,
    done: bool,
}

impl SseBody {
    pub fn new(frames: mpsc::Receiver<Queued>, close: CloseSlot) -> Self {
        Self {
            frames,
            close,
            done: false,
        }
    }

    /// The close frame, once, if the pump left a reason worth telling.
    fn closing(&mut self) -> Option<Bytes> {
        let reason = *self.close.get()?;
        self.done = true;
        self.frames.close();
        (reason != CloseReason::Gone).then(|| reason.frame())
    }
}

impl Stream for SseBody {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.close.get().is_some() {
            return Poll::Ready(self.closing().map(Ok));
        }
        match self.frames.poll_recv(cx) {
            Poll::Ready(Some(queued)) => Poll::Ready(Some(Ok(queued.bytes))),
            // The pump sets its reason before dropping its sender.
            Poll::Ready(None) => Poll::Ready(self.closing().map(Ok)),
            Poll::Pending => Poll::Pending,
        }
    }
}
