//! The rows and queries the HTTP layer exchanges with the store (beyond the `EventStore` port).

use chrono::{DateTime, NaiveDate, Utc};
use payrail_actors::domain::{
    ApiKeyId, Currency, Event, Invoice, InvoiceId, InvoiceStatus, TenantId,
};
use payrail_actors::ports::IdempotencyRecord;
use secrecy::SecretString;

/// The largest page any list answers, whatever is asked.
pub const PAGE_SIZE_MAX: u32 = 100;
/// The largest `limit` of the audit-log and cursor-mode lists.
pub const LIST_LIMIT_MAX: u32 = 100;

/// A tenant, with its webhook secrets in the clear: they are sealed under the master key on
/// their way into the database and opened on the way out.
#[derive(Debug, Clone)]
pub struct TenantRow {
    pub id: TenantId,
    pub name: String,
    pub webhook_secret: SecretString,
    pub previous_webhook_secret: Option<SecretString>,
    pub previous_valid_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRow {
    pub tenant_id: TenantId,
    pub id: ApiKeyId,
    pub name: String,
    pub role: String,
    pub secret_hash: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A response kept for replay under an idempotency key, written in the same transaction as
/// the effect. `scope` is the key's namespace: the tenant's id, or [`PLATFORM_SCOPE`] for the
/// platform admin's requests.
#[derive(Debug, Clone, PartialEq)]
pub struct ScopedResponse {
    pub scope: String,
    pub record: IdempotencyRecord,
}

/// The idempotency scope of the platform admin (tenant ids are `ten_…`, so never this).
pub const PLATFORM_SCOPE: &str = "platform";

/// An audit event with its global sequence number (the audit log's cursor).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub sequence: i64,
    pub event: Event,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InvoiceSort {
    CreatedAt,
    #[default]
    CreatedAtDesc,
    Total,
    TotalDesc,
    DueDate,
    DueDateDesc,
}

impl InvoiceSort {
    /// Parses the API's `sort` parameter (`createdAt`, `-total`, …).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "createdAt" => Self::CreatedAt,
            "-createdAt" => Self::CreatedAtDesc,
            "total" => Self::Total,
            "-total" => Self::TotalDesc,
            "dueDate" => Self::DueDate,
            "-dueDate" => Self::DueDateDesc,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Paging {
    /// `page` from 1; answers `total_items`.
    Offset { page: u32, page_size: u32 },
    /// Keyset paging after an invoice id; answers `has_more` and `next_cursor`.
    Cursor {
        limit: u32,
        starting_after: Option<InvoiceId>,
    },
}

impl Default for Paging {
    fn default() -> Self {
        Self::Offset {
            page: 1,
            page_size: 10,
        }
    }
}

/// Every filter of `GET /api/invoices`; all combine with AND.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InvoiceQuery {
    pub status: Option<InvoiceStatus>,
    /// Case-insensitive substring of the customer's name or email.
    pub customer: Option<String>,
    /// Inclusive bounds on `created_at`.
    pub created_from: Option<DateTime<Utc>>,
    pub created_to: Option<DateTime<Utc>>,
    /// Due strictly before this date.
    pub due_before: Option<NaiveDate>,
    /// Open and due strictly before `today`.
    pub overdue: bool,
    /// The date `overdue` compares with (`None`: today in UTC).
    pub today: Option<NaiveDate>,
    pub min_total: Option<i64>,
    pub max_total: Option<i64>,
    pub currency: Option<Currency>,
    pub sort: InvoiceSort,
    pub paging: Paging,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct InvoicePage {
    pub items: Vec<Invoice>,
    /// Offset mode only.
    pub total_items: Option<u64>,
    /// Cursor mode only (always false in offset mode).
    pub has_more: bool,
    /// Cursor mode: the id to pass as `starting_after` for the next page.
    pub next_cursor: Option<InvoiceId>,
}
