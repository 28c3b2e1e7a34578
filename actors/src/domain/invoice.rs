//! The invoice state machine: `draft → open → paid`, `open → void`,
//! `open → uncollectible → paid | void`, and its accounting of reserved, paid and refunded money.
//! Invariant: `amount_paid + amount_pending ≤ total`, always.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::events::{Event, EventData, StreamId};
use super::ids::{IdMap, InvoiceId, PaymentId, TenantId};
use super::money::{self, Currency};
use super::{DomainError, FieldError};

pub const LINE_ITEMS_MAX: usize = 100;
pub const TAX_RATE_MAX_BPS: i64 = 10_000;
pub const CUSTOMER_NAME_MAX_CHARS: usize = 200;
pub const DESCRIPTION_MAX_CHARS: usize = 500;
pub const METADATA_MAX_KEYS: usize = 50;
pub const METADATA_VALUE_MAX_CHARS: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceStatus {
    Draft,
    Open,
    Paid,
    Void,
    Uncollectible,
}

impl InvoiceStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Open => "open",
            Self::Paid => "paid",
            Self::Void => "void",
            Self::Uncollectible => "uncollectible",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Draft,
            Self::Open,
            Self::Paid,
            Self::Void,
            Self::Uncollectible,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
    }

    fn accepts_payments(&self) -> bool {
        matches!(self, Self::Open | Self::Uncollectible)
    }
}

/// A line item as the client gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LineItemInput {
    pub description: String,
    pub quantity: i64,
    pub unit_amount: i64,
}

/// The editable fields of an invoice, as the client gives them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InvoiceInput {
    pub customer_name: String,
    #[serde(default)]
    pub customer_email: Option<String>,
    pub currency: Currency,
    #[serde(default)]
    pub due_date: Option<NaiveDate>,
    pub line_items: Vec<LineItemInput>,
    #[serde(default)]
    pub tax_rate_bps: Option<i64>,
    #[serde(default)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LineItem {
    pub description: String,
    pub quantity: i64,
    pub unit_amount: i64,
    pub amount: i64,
}

/// Validated fields with computed totals: what `invoice.created`/`invoice.updated` carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceDetails {
    pub customer_name: String,
    pub customer_email: Option<String>,
    pub currency: Currency,
    pub due_date: Option<NaiveDate>,
    pub line_items: Vec<LineItem>,
    pub subtotal: i64,
    pub tax_rate_bps: i64,
    pub tax: i64,
    pub total: i64,
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

impl InvoiceInput {
    /// Validates every field and computes the totals; all problems are reported at once.
    pub fn validate(&self) -> Result<InvoiceDetails, DomainError> {
        let mut errors = Vec::new();
        let mut push = |field: &str, message: &str| {
            errors.push(FieldError {
                field: field.into(),
                message: message.into(),
            })
        };
        let name = self.customer_name.trim();
        if name.is_empty() || name.chars().count() > CUSTOMER_NAME_MAX_CHARS {
            push("customerName", "must be 1-200 characters");
        }
        if let Some(email) = &self.customer_email {
            let valid = email.chars().count() <= 254
                && email
                    .split_once('@')
                    .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
            if !valid {
                push("customerEmail", "must be an email address");
            }
        }
        if self.line_items.is_empty() || self.line_items.len() > LINE_ITEMS_MAX {
            push("lineItems", "must have 1-100 items");
        }
        let tax_rate_bps = self.tax_rate_bps.unwrap_or(0);
        if !(0..=TAX_RATE_MAX_BPS).contains(&tax_rate_bps) {
            push("taxRateBps", "must be 0-10000");
        }
        for (i, item) in self.line_items.iter().enumerate() {
            let desc = item.description.trim();
            if desc.is_empty() || desc.chars().count() > DESCRIPTION_MAX_CHARS {
                push(
                    &format!("lineItems[{i}].description"),
                    "must be 1-500 characters",
                );
            }
            if item.quantity < 1 {
                push(&format!("lineItems[{i}].quantity"), "must be positive");
            }
            if item.unit_amount < 1 {
                push(&format!("lineItems[{i}].unitAmount"), "must be positive");
            }
        }
        let metadata = self.metadata.clone().unwrap_or_default();
        let metadata_ok = metadata.len() <= METADATA_MAX_KEYS
            && metadata.iter().all(|(k, v)| {
                !k.is_empty()
                    && k.chars().count() <= 40
                    && v.as_str()
                        .is_some_and(|s| s.chars().count() <= METADATA_VALUE_MAX_CHARS)
            });
        if !metadata_ok {
            push(
                "metadata",
                "at most 50 string values of up to 500 characters, keys up to 40",
            );
        }
        if !errors.is_empty() {
            return Err(DomainError::Validation(errors));
        }
        let mut line_items = Vec::with_capacity(self.line_items.len());
        let mut subtotal: i64 = 0;
        for item in &self.line_items {
            let amount = money::mul(item.quantity, item.unit_amount)?;
            subtotal = money::add(subtotal, amount)?;
            line_items.push(LineItem {
                description: item.description.trim().to_owned(),
                quantity: item.quantity,
                unit_amount: item.unit_amount,
                amount,
            });
        }
        let tax = money::apply_basis_points(subtotal, tax_rate_bps)?;
        let total = money::add(subtotal, tax)?;
        Ok(InvoiceDetails {
            customer_name: name.to_owned(),
            customer_email: self.customer_email.clone(),
            currency: self.currency,
            due_date: self.due_date,
            line_items,
            subtotal,
            tax_rate_bps,
            tax,
            total,
            metadata,
        })
    }
}

/// An invoice's full state: also its snapshot (the projection row's `data`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Invoice {
    pub id: InvoiceId,
    pub tenant_id: TenantId,
    pub number: String,
    pub status: InvoiceStatus,
    /// Shared with the events that set them and with the snapshots of queued units: they
    /// change only with an edit of a draft, and every settlement snapshots the invoice.
    #[serde(flatten)]
    pub details: Arc<InvoiceDetails>,
    pub amount_paid: i64,
    pub amount_pending: i64,
    pub amount_refunded: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finalized_at: Option<DateTime<Utc>>,
    pub paid_at: Option<DateTime<Utc>>,
    pub voided_at: Option<DateTime<Utc>>,
    pub version: u64,
    /// Money reserved by payments still in flight, by payment. Not part of the stored
    /// snapshot (it would grow with every payment): storage rebuilds it from the invoice's
    /// payments that are still `processing`.
    #[serde(skip)]
    pub reservations: IdMap<PaymentId, i64>,
}

/// A partial edit of a draft: absent fields keep their value, `Some(None)` clears a clearable
/// one. It is merged with the invoice inside its actor, so concurrent edits of different
/// fields both land, and `expected_version` (if given) refuses an edit made on a stale read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InvoicePatch {
    pub customer_name: Option<String>,
    pub customer_email: Option<Option<String>>,
    pub currency: Option<Currency>,
    pub due_date: Option<Option<NaiveDate>>,
    pub line_items: Option<Vec<LineItemInput>>,
    pub tax_rate_bps: Option<i64>,
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    pub expected_version: Option<u64>,
}

impl InvoicePatch {
    /// The full input this patch makes of `current`.
    pub fn merged(&self, current: &InvoiceDetails) -> InvoiceInput {
        let line_items = self.line_items.clone().unwrap_or_else(|| {
            current
                .line_items
                .iter()
                .map(|l| LineItemInput {
                    description: l.description.clone(),
                    quantity: l.quantity,
                    unit_amount: l.unit_amount,
                })
                .collect()
        });
        InvoiceInput {
            customer_name: self
                .customer_name
                .clone()
                .unwrap_or_else(|| current.customer_name.clone()),
            customer_email: self
                .customer_email
                .clone()
                .unwrap_or_else(|| current.customer_email.clone()),
            currency: self.currency.unwrap_or(current.currency),
            due_date: self.due_date.unwrap_or(current.due_date),
            line_items,
            tax_rate_bps: Some(self.tax_rate_bps.unwrap_or(current.tax_rate_bps)),
            metadata: Some(
                self.metadata
                    .clone()
                    .unwrap_or_else(|| current.metadata.clone()),
            ),
        }
    }
}

/// What may be asked of an invoice.
#[derive(Debug, Clone, PartialEq)]
pub enum InvoiceCommand {
    Update(InvoiceInput),
    /// A partial edit, merged with the current draft.
    Patch(InvoicePatch),
    Finalize,
    Void,
    MarkUncollectible,
    /// Reserve `amount` for a payment attempt (`None`: whatever remains).
    Reserve {
        payment_id: PaymentId,
        amount: Option<i64>,
    },
}

/// Formats the per-tenant, gap-free invoice number.
pub fn format_number(n: u64) -> String {
    format!("INV-{n:06}")
}

/// The sequence number of a formatted invoice number.
pub fn parse_number(number: &str) -> Option<u64> {
    number.strip_prefix("INV-")?.parse().ok()
}

impl Invoice {
    /// Decides the creation of an invoice: `invoice.created`, then `invoice.finalized` if asked.
    pub fn decide_create(
        number: u64,
        input: &InvoiceInput,
        finalize: bool,
    ) -> Result<Vec<EventData>, DomainError> {
        let details = Arc::new(input.validate()?);
        let mut events = vec![EventData::InvoiceCreated {
            number: format_number(number),
            details,
        }];
        if finalize {
            events.push(EventData::InvoiceFinalized {});
        }
        Ok(events)
    }

    /// The invoice as storage keeps it: all but the reservations, which storage rebuilds from
    /// the payments in flight. Costs the same however many payments are in flight.
    pub fn snapshot(&self) -> Invoice {
        Invoice {
            id: self.id,
            tenant_id: self.tenant_id,
            number: self.number.clone(),
            status: self.status,
            details: self.details.clone(),
            amount_paid: self.amount_paid,
            amount_pending: self.amount_pending,
            amount_refunded: self.amount_refunded,
            created_at: self.created_at,
            updated_at: self.updated_at,
            finalized_at: self.finalized_at,
            paid_at: self.paid_at,
            voided_at: self.voided_at,
            version: self.version,
            reservations: IdMap::default(),
        }
    }

    /// A blank state for `invoice.created` to fill in.
    pub fn blank(tenant_id: TenantId, id: InvoiceId, at: DateTime<Utc>) -> Self {
        Self {
            id,
            tenant_id,
            number: String::new(),
            status: InvoiceStatus::Draft,
            details: Arc::new(InvoiceDetails {
                customer_name: String::new(),
                customer_email: None,
                currency: Currency::XXX,
                due_date: None,
                line_items: Vec::new(),
                subtotal: 0,
                tax_rate_bps: 0,
                tax: 0,
                total: 0,
                metadata: serde_json::Map::new(),
            }),
            amount_paid: 0,
            amount_pending: 0,
            amount_refunded: 0,
            created_at: at,
            updated_at: at,
            finalized_at: None,
            paid_at: None,
            voided_at: None,
            version: 0,
            reservations: IdMap::default(),
        }
    }

    pub fn amount_remaining(&self) -> i64 {
        self.details.total - self.amount_paid - self.amount_pending
    }

    pub fn decide(&self, command: &InvoiceCommand) -> Result<Vec<EventData>, DomainError> {
        match command {
            InvoiceCommand::Update(input) => {
                self.require(
                    self.status == InvoiceStatus::Draft,
                    "only a draft can be edited",
                )?;
                Ok(vec![EventData::InvoiceUpdated {
                    details: Arc::new(input.validate()?),
                }])
            }
            InvoiceCommand::Patch(patch) => {
                self.require(
                    self.status == InvoiceStatus::Draft,
                    "only a draft can be edited",
                )?;
                Ok(vec![EventData::InvoiceUpdated {
                    details: Arc::new(patch.merged(&self.details).validate()?),
                }])
            }
            InvoiceCommand::Finalize => {
                self.require(
                    self.status == InvoiceStatus::Draft,
                    "only a draft can be finalized",
                )?;
                Ok(vec![EventData::InvoiceFinalized {}])
            }
            InvoiceCommand::Void => {
                self.require(
                    matches!(
                        self.status,
                        InvoiceStatus::Open | InvoiceStatus::Uncollectible
                    ),
                    "only an open or uncollectible invoice can be voided",
                )?;
                self.require(self.amount_pending == 0, "a payment is in flight")?;
                Ok(vec![EventData::InvoiceVoided {}])
            }
            InvoiceCommand::MarkUncollectible => {
                self.require(
                    self.status == InvoiceStatus::Open,
                    "only an open invoice can be marked uncollectible",
                )?;
                Ok(vec![EventData::InvoiceMarkedUncollectible {}])
            }
            InvoiceCommand::Reserve { payment_id, amount } => {
                self.decide_reserve(*payment_id, *amount)
            }
        }
    }

    fn decide_reserve(
        &self,
        payment_id: PaymentId,
        amount: Option<i64>,
    ) -> Result<Vec<EventData>, DomainError> {
        self.require(
            self.status.accepts_payments(),
            "the invoice must be open or uncollectible to take a payment",
        )?;
        self.require(
            !self.reservations.contains_key(&payment_id),
            "this payment already holds a reservation",
        )?;
        let remaining = self.amount_remaining();
        let amount = amount.unwrap_or(remaining);
        if amount < 1 {
            return Err(if remaining == 0 {
                DomainError::AmountExceedsRemaining {
                    requested: amount.max(1),
                    remaining,
                    currency: self.details.currency,
                }
            } else {
                DomainError::validation("amount", "must be positive")
            });
        }
        if amount > remaining {
            return Err(DomainError::AmountExceedsRemaining {
                requested: amount,
                remaining,
                currency: self.details.currency,
            });
        }
        Ok(vec![EventData::InvoicePaymentPending {
            payment_id,
            amount,
        }])
    }

    /// What the invoice itself records when one of its payments' events commits: `invoice.paid`
    /// once settled payments cover the total. Events that don't touch the invoice yield nothing.
    pub fn decide_payment_effect(&self, payment_event: &EventData) -> Vec<EventData> {
        if let EventData::PaymentSucceeded { amount, .. } = payment_event {
            let paid = self.amount_paid.saturating_add(*amount);
            if paid >= self.details.total && self.status.accepts_payments() {
                return vec![EventData::InvoicePaid { amount_paid: paid }];
            }
        }
        Vec::new()
    }

    fn require(&self, condition: bool, message: &str) -> Result<(), DomainError> {
        if condition {
            Ok(())
        } else {
            Err(DomainError::invalid_state(format!(
                "invoice {} is {}: {message}",
                self.id,
                self.status.as_str()
            )))
        }
    }

    /// Applies an event of this invoice's own stream (bumping its version) or of one of its
    /// payments' streams (moving money between pending, paid and refunded).
    pub fn apply(&mut self, event: &Event) {
        match event.stream {
            StreamId::Invoice(id) if id == self.id => {
                debug_assert_eq!(
                    event.version,
                    self.version + 1,
                    "non-contiguous invoice stream"
                );
                self.version = event.version;
                self.updated_at = event.occurred_at;
                self.apply_own(&event.data, event.occurred_at);
            }
            StreamId::Payment(payment_id) => self.apply_payment(payment_id, &event.data),
            _ => {}
        }
        debug_assert!(
            self.check_invariants().is_ok(),
            "{:?}",
            self.check_invariants()
        );
    }

    fn apply_own(&mut self, data: &EventData, at: DateTime<Utc>) {
        match data {
            EventData::InvoiceCreated { number, details } => {
                self.number = number.clone();
                self.details = details.clone();
                self.created_at = at;
            }
            EventData::InvoiceUpdated { details } => self.details = details.clone(),
            EventData::InvoiceFinalized {} => {
                self.status = InvoiceStatus::Open;
                self.finalized_at = Some(at);
            }
            EventData::InvoicePaymentPending { payment_id, amount } => {
                self.reservations.insert(*payment_id, *amount);
                self.amount_pending += amount;
            }
            EventData::InvoicePaid { .. } => {
                self.status = InvoiceStatus::Paid;
                self.paid_at = Some(at);
            }
            EventData::InvoiceVoided {} => {
                self.status = InvoiceStatus::Void;
                self.voided_at = Some(at);
            }
            EventData::InvoiceMarkedUncollectible {} => self.status = InvoiceStatus::Uncollectible,
            _ => {}
        }
    }

    fn apply_payment(&mut self, payment_id: PaymentId, data: &EventData) {
        match data {
            EventData::PaymentSucceeded { .. } => {
                if let Some(amount) = self.reservations.remove(&payment_id) {
                    self.amount_pending -= amount;
                    self.amount_paid += amount;
                }
            }
            EventData::PaymentFailed { .. } => {
                if let Some(amount) = self.reservations.remove(&payment_id) {
                    self.amount_pending -= amount;
                }
            }
            EventData::RefundSucceeded { amount, .. } => self.amount_refunded += amount,
            _ => {}
        }
    }

    /// ARCHITECTURE.md invariant 1 and the accounting identities.
    pub fn check_invariants(&self) -> Result<(), String> {
        let reserved: i64 = self.reservations.values().sum();
        let checks = [
            (
                self.amount_paid >= 0 && self.amount_pending >= 0,
                "negative amount",
            ),
            (
                self.amount_paid + self.amount_pending <= self.details.total,
                "collected more than the total",
            ),
            (
                reserved == self.amount_pending,
                "pending differs from reservations",
            ),
            (
                self.amount_refunded <= self.amount_paid,
                "refunded more than paid",
            ),
            (
                self.status != InvoiceStatus::Paid || self.amount_paid == self.details.total,
                "paid but not fully collected",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, what)) => Err(format!("invoice {}: {what}", self.id)),
            None => Ok(()),
        }
    }
}
