//! The payment state machine (`processing → succeeded | failed`,
//! `succeeded → partially_refunded → refunded`) and its refunds (`pending → succeeded | failed`).
//! Forward only: a stale or out-of-order gateway outcome is ignored, never an error.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::card::CardSummary;
use super::events::{Event, EventData, StreamId};
use super::ids::{InvoiceId, PaymentId, RefundId, TenantId};
use super::money::Currency;
use super::DomainError;

pub const REFUND_REASON_MAX_CHARS: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Processing,
    Succeeded,
    Failed,
    PartiallyRefunded,
    Refunded,
}

impl PaymentStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Processing => "processing",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::PartiallyRefunded => "partially_refunded",
            Self::Refunded => "refunded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Processing,
            Self::Succeeded,
            Self::Failed,
            Self::PartiallyRefunded,
            Self::Refunded,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
    }

    /// Position in the forward-only order; a transition must never lower it.
    pub fn rank(&self) -> u8 {
        match self {
            Self::Processing => 0,
            Self::Succeeded | Self::Failed => 1,
            Self::PartiallyRefunded => 2,
            Self::Refunded => 3,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    Pending,
    Succeeded,
    Failed,
}

impl RefundStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Refund {
    pub id: RefundId,
    pub payment_id: PaymentId,
    pub invoice_id: InvoiceId,
    pub amount: i64,
    pub currency: Currency,
    pub reason: Option<String>,
    pub status: RefundStatus,
    pub failure_code: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A payment's full state; also its snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    pub id: PaymentId,
    pub tenant_id: TenantId,
    pub invoice_id: InvoiceId,
    pub amount: i64,
    pub currency: Currency,
    pub status: PaymentStatus,
    pub amount_refunded: i64,
    /// Shared with the event that set it and with every later state and snapshot of the
    /// payment: it never changes, and each change of the payment copies the rest.
    pub payment_method: Arc<CardSummary>,
    /// The gateway token the payment was made with, if any (re-sendable from durable state).
    #[serde(default)]
    pub source_token: Option<String>,
    pub gateway_reference: Option<String>,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: u64,
    pub refunds: Vec<Refund>,
}

/// An outcome the gateway reports about a payment or one of its refunds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayOutcome {
    Processing {
        reference: String,
    },
    Succeeded {
        reference: Option<String>,
        amount: Option<i64>,
        currency: Option<Currency>,
    },
    Failed {
        code: String,
        message: String,
        amount: Option<i64>,
        currency: Option<Currency>,
    },
    RefundSucceeded {
        refund_id: RefundId,
    },
    RefundFailed {
        refund_id: RefundId,
        code: String,
    },
}

/// What to do with a gateway outcome.
#[derive(Debug, Clone, PartialEq)]
pub enum Disposition {
    /// A forward move: these events record it.
    Apply(Vec<EventData>),
    /// Valid but stale for the forward-only state machine.
    Ignore,
    /// Does not match this payment (amount, currency, unknown refund).
    Reject(String),
}

impl Payment {
    /// A blank state for `payment.attempted` to fill in.
    pub fn blank(tenant_id: TenantId, id: PaymentId, at: DateTime<Utc>) -> Self {
        Self {
            id,
            tenant_id,
            invoice_id: InvoiceId::from_uuid(uuid::Uuid::nil()),
            amount: 0,
            currency: Currency::XXX,
            status: PaymentStatus::Processing,
            amount_refunded: 0,
            payment_method: Arc::new(CardSummary {
                kind: "card".into(),
                brand: String::new(),
                last4: String::new(),
                exp_month: 0,
                exp_year: 0,
                fingerprint: String::new(),
            }),
            source_token: None,
            gateway_reference: None,
            failure_code: None,
            failure_message: None,
            created_at: at,
            updated_at: at,
            version: 0,
            refunds: Vec::new(),
        }
    }

    /// Decides what a gateway outcome does to this payment.
    pub fn decide_gateway(&self, outcome: &GatewayOutcome) -> Disposition {
        match outcome {
            GatewayOutcome::Processing { reference } => {
                if self.status == PaymentStatus::Processing && self.gateway_reference.is_none() {
                    Disposition::Apply(vec![EventData::PaymentProcessing {
                        gateway_reference: reference.clone(),
                    }])
                } else {
                    Disposition::Ignore
                }
            }
            GatewayOutcome::Succeeded {
                reference,
                amount,
                currency,
            } => self.final_outcome(*amount, *currency, || EventData::PaymentSucceeded {
                amount: self.amount,
                gateway_reference: reference.clone().or_else(|| self.gateway_reference.clone()),
            }),
            GatewayOutcome::Failed {
                code,
                message,
                amount,
                currency,
            } => self.final_outcome(*amount, *currency, || EventData::PaymentFailed {
                amount: self.amount,
                failure_code: code.clone(),
                failure_message: message.clone(),
            }),
            GatewayOutcome::RefundSucceeded { refund_id } => match self.refund(*refund_id) {
                None => Disposition::Reject(format!("unknown refund {refund_id}")),
                Some(refund) if refund.status != RefundStatus::Pending => Disposition::Ignore,
                Some(refund) => Disposition::Apply(vec![EventData::RefundSucceeded {
                    refund_id: refund.id,
                    amount: refund.amount,
                }]),
            },
            GatewayOutcome::RefundFailed { refund_id, code } => match self.refund(*refund_id) {
                None => Disposition::Reject(format!("unknown refund {refund_id}")),
                Some(refund) if refund.status != RefundStatus::Pending => Disposition::Ignore,
                Some(refund) => Disposition::Apply(vec![EventData::RefundFailed {
                    refund_id: refund.id,
                    failure_code: code.clone(),
                }]),
            },
        }
    }

    /// A success or failure: refused if it does not match the payment, stale unless the
    /// payment is still processing.
    fn final_outcome(
        &self,
        amount: Option<i64>,
        currency: Option<Currency>,
        event: impl FnOnce() -> EventData,
    ) -> Disposition {
        if let Some(reason) = self.mismatch(amount, currency) {
            return Disposition::Reject(reason);
        }
        if self.status != PaymentStatus::Processing {
            return Disposition::Ignore;
        }
        Disposition::Apply(vec![event()])
    }

    fn mismatch(&self, amount: Option<i64>, currency: Option<Currency>) -> Option<String> {
        if amount.is_some_and(|a| a != self.amount) {
            return Some(format!("amount does not match payment {}", self.id));
        }
        if currency.is_some_and(|c| c != self.currency) {
            return Some(format!("currency does not match payment {}", self.id));
        }
        None
    }

    pub fn refund(&self, id: RefundId) -> Option<&Refund> {
        self.refunds.iter().find(|r| r.id == id)
    }

    /// Money not yet refunded or promised to a pending refund.
    pub fn refundable(&self) -> i64 {
        let promised: i64 = self
            .refunds
            .iter()
            .filter(|r| r.status != RefundStatus::Failed)
            .map(|r| r.amount)
            .sum();
        self.amount - promised
    }

    /// Decides a refund request (`amount` defaults to everything refundable).
    pub fn decide_refund(
        &self,
        refund_id: RefundId,
        amount: Option<i64>,
        reason: Option<String>,
    ) -> Result<Vec<EventData>, DomainError> {
        if !matches!(
            self.status,
            PaymentStatus::Succeeded | PaymentStatus::PartiallyRefunded
        ) {
            return Err(DomainError::invalid_state(format!(
                "payment {} is {}: only a succeeded payment can be refunded",
                self.id,
                self.status.as_str()
            )));
        }
        if reason
            .as_ref()
            .is_some_and(|r| r.is_empty() || r.chars().count() > REFUND_REASON_MAX_CHARS)
        {
            return Err(DomainError::validation(
                "reason",
                "must be 1-200 characters",
            ));
        }
        let refundable = self.refundable();
        let amount = amount.unwrap_or(refundable);
        if amount < 1 && refundable > 0 {
            return Err(DomainError::validation("amount", "must be positive"));
        }
        if amount > refundable || refundable == 0 {
            return Err(DomainError::RefundExceedsCaptured {
                requested: amount.max(1),
                refundable,
            });
        }
        Ok(vec![EventData::RefundCreated {
            refund_id,
            amount,
            reason,
        }])
    }

    /// Applies an event of this payment's stream.
    pub fn apply(&mut self, event: &Event) {
        if event.stream != StreamId::Payment(self.id) {
            return;
        }
        debug_assert_eq!(
            event.version,
            self.version + 1,
            "non-contiguous payment stream"
        );
        let before = self.status.rank();
        self.version = event.version;
        self.updated_at = event.occurred_at;
        self.apply_data(&event.data, event.occurred_at);
        debug_assert!(self.status.rank() >= before, "payment moved backwards");
        debug_assert!(
            self.check_invariants().is_ok(),
            "{:?}",
            self.check_invariants()
        );
    }

    fn apply_data(&mut self, data: &EventData, at: DateTime<Utc>) {
        match data {
            EventData::PaymentAttempted {
                invoice_id,
                amount,
                currency,
                payment_method,
                token,
            } => {
                self.source_token = token.clone();
                self.invoice_id = *invoice_id;
                self.amount = *amount;
                self.currency = *currency;
                self.payment_method = Arc::clone(payment_method);
                self.status = PaymentStatus::Processing;
                self.created_at = at;
            }
            EventData::PaymentProcessing { gateway_reference } => {
                self.gateway_reference = Some(gateway_reference.clone());
            }
            EventData::PaymentSucceeded {
                gateway_reference, ..
            } => {
                self.status = PaymentStatus::Succeeded;
                if gateway_reference.is_some() {
                    self.gateway_reference = gateway_reference.clone();
                }
            }
            EventData::PaymentFailed {
                failure_code,
                failure_message,
                ..
            } => {
                self.status = PaymentStatus::Failed;
                self.failure_code = Some(failure_code.clone());
                self.failure_message = Some(failure_message.clone());
            }
            EventData::RefundCreated {
                refund_id,
                amount,
                reason,
            } => self.refunds.push(Refund {
                id: *refund_id,
                payment_id: self.id,
                invoice_id: self.invoice_id,
                amount: *amount,
                currency: self.currency,
                reason: reason.clone(),
                status: RefundStatus::Pending,
                failure_code: None,
                created_at: at,
                updated_at: at,
            }),
            EventData::RefundSucceeded { refund_id, amount } => {
                self.set_refund(*refund_id, RefundStatus::Succeeded, None, at);
                self.amount_refunded += amount;
                self.status = if self.amount_refunded >= self.amount {
                    PaymentStatus::Refunded
                } else {
                    PaymentStatus::PartiallyRefunded
                };
            }
            EventData::RefundFailed {
                refund_id,
                failure_code,
            } => self.set_refund(
                *refund_id,
                RefundStatus::Failed,
                Some(failure_code.clone()),
                at,
            ),
            _ => {}
        }
    }

    fn set_refund(
        &mut self,
        id: RefundId,
        status: RefundStatus,
        failure_code: Option<String>,
        at: DateTime<Utc>,
    ) {
        if let Some(refund) = self.refunds.iter_mut().find(|r| r.id == id) {
            refund.status = status;
            refund.failure_code = failure_code;
            refund.updated_at = at;
        }
    }

    /// Refunds never exceed the captured amount; accounting stays non-negative.
    pub fn check_invariants(&self) -> Result<(), String> {
        let succeeded: i64 = self
            .refunds
            .iter()
            .filter(|r| r.status == RefundStatus::Succeeded)
            .map(|r| r.amount)
            .sum();
        let checks = [
            (
                self.amount_refunded == succeeded,
                "refunded differs from refunds",
            ),
            (self.refundable() >= 0, "refunds exceed the captured amount"),
            (
                self.refunds.is_empty()
                    || matches!(
                        self.status,
                        PaymentStatus::Succeeded
                            | PaymentStatus::PartiallyRefunded
                            | PaymentStatus::Refunded
                    ),
                "refund of an uncaptured payment",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, what)) => Err(format!("payment {}: {what}", self.id)),
            None => Ok(()),
        }
    }
}
