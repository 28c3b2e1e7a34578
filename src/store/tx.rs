//! The error of a transaction body and how it maps onto the port's `StoreError`.

use diesel::result::{DatabaseErrorInformation, DatabaseErrorKind, Error as DieselError};
use payrail_actors::ports::StoreError;

#[derive(Debug)]
pub(crate) enum TxError {
    Db(DieselError),
    Store(StoreError),
}

impl From<DieselError> for TxError {
    fn from(e: DieselError) -> Self {
        Self::Db(e)
    }
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

pub(crate) fn is_unique_violation(e: &TxError) -> bool {
    matches!(
        e,
        TxError::Db(DieselError::DatabaseError(
            DatabaseErrorKind::UniqueViolation,
            _
        ))
    )
}

/// A failure before COMMIT, or one the server reported, wrote nothing: `Unavailable`. A
/// connection-level failure once the body had run may have hit the COMMIT after the server
/// applied it: `Ambiguous`.
pub(crate) fn outcome_error(e: TxError, body_done: bool) -> StoreError {
    match e {
        TxError::Store(e) => e,
        TxError::Db(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info))
            if is_idempotency_table(info.as_ref()) =>
        {
            StoreError::IdempotencyKeyTaken
        }
        TxError::Db(e @ DieselError::DatabaseError(..)) => StoreError::Unavailable(e.to_string()),
        TxError::Db(e) if body_done => StoreError::Ambiguous(e.to_string()),
        TxError::Db(e) => StoreError::Unavailable(e.to_string()),
    }
}

/// PostgreSQL names the table; SQLite only says "UNIQUE constraint failed: table.column, …".
fn is_idempotency_table(info: &dyn DatabaseErrorInformation) -> bool {
    info.table_name() == Some("idempotency_keys") || info.message().contains("idempotency_keys.")
}

/// Whole-batch failures: every unit gets `Unavailable` (or `Ambiguous` when COMMIT's outcome is
/// unknown).
pub(crate) fn batch_error(e: TxError, body_done: bool) -> StoreError {
    match outcome_error(e, body_done) {
        e @ (StoreError::Ambiguous(_) | StoreError::Unavailable(_)) => e,
        other => StoreError::Unavailable(other.to_string()),
    }
}

/// The server refused the statement (as opposed to a broken connection).
fn is_database_error(e: &TxError) -> bool {
    matches!(e, TxError::Db(DieselError::DatabaseError(..)))
}

/// The store refused a write: the server did, or an update found fewer stored rows than it
/// must (`check_rows`). Either way the transaction rolls back whole, and a batch is re-run one
/// savepoint per unit so that only the offending unit fails.
pub(crate) fn is_refused(e: &TxError) -> bool {
    is_database_error(e) || matches!(e, TxError::Store(StoreError::Corrupt(_)))
}

/// A unit the server refused on its own (e.g. a constraint the pre-check doesn't know about).
pub(crate) fn unit_rejected(e: TxError) -> StoreError {
    match e {
        TxError::Store(e) => e,
        TxError::Db(e) => StoreError::Unavailable(format!("unit rejected: {e}")),
    }
}
