//! What can go wrong when asking the engine to do something.

use crate::domain::DomainError;
use crate::ports::StoreError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// A state machine or validation rule refused the command.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The entity does not exist for this tenant.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Bounded queues are full: try again later (HTTP 503 with `Retry-After`).
    #[error("engine overloaded")]
    Overloaded,
    /// Another writer moved the entity on; it has been reloaded.
    #[error("version conflict")]
    VersionConflict,
    /// The same idempotency key is still being processed.
    #[error("a request with this idempotency key is still in flight")]
    IdempotencyInFlight,
    /// The idempotency key was used for a different request.
    #[error("idempotency key reused with a different request")]
    IdempotencyKeyReused,
    /// Storage failed; nothing acknowledged was lost.
    #[error(transparent)]
    Storage(StoreError),
    /// An actor stopped (restart, passivation race) before answering; retry is safe.
    #[error("entity unavailable: {0}")]
    Unavailable(String),
    /// The engine is draining for shutdown.
    #[error("shutting down")]
    ShuttingDown,
}

impl From<StoreError> for EngineError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::VersionConflict(_) => Self::VersionConflict,
            other => Self::Storage(other),
        }
    }
}

impl From<actix::MailboxError> for EngineError {
    fn from(err: actix::MailboxError) -> Self {
        match err {
            actix::MailboxError::Closed => Self::Unavailable("actor stopped".into()),
            actix::MailboxError::Timeout => Self::Unavailable("actor timed out".into()),
        }
    }
}
