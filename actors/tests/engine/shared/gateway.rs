//! A gateway that can be switched between healthy, down (transport errors, 5xx) and refusing
//! (4xx), and that remembers what it actually did: charges per payment and refunds it made.
//! Like a real gateway it is idempotent on the payment and refund ids, and a charge re-sent
//! without card data is known only if it was made before.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use payrail_actors::domain::{PaymentId, RefundId, TenantId};
use payrail_actors::ports::{
    AccountRegistration, ChargeRequest, Gateway, GatewayError, RefundRequest,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Healthy,
    /// Every call fails without reaching the gateway (retryable).
    Down,
    /// Every call is refused for good (HTTP 402).
    Refuse,
}

#[derive(Debug, Default)]
struct State {
    charge_mode: Mode,
    refund_mode: Mode,
    /// Charges made, by payment: (tenant, amount).
    charges: HashMap<PaymentId, (TenantId, i64)>,
    /// Charges refused for good.
    refused_charges: HashSet<PaymentId>,
    /// Refunds made, by refund: (tenant, payment, amount).
    refunds: HashMap<RefundId, (TenantId, PaymentId, i64)>,
    calls: usize,
}

#[derive(Debug, Default)]
pub struct FlakyGateway {
    state: Mutex<State>,
}

/// What the gateway did, read at once.
#[derive(Debug, Clone, Default)]
pub struct GatewayRecord {
    pub charges: HashMap<PaymentId, (TenantId, i64)>,
    pub refunds: HashMap<RefundId, (TenantId, PaymentId, i64)>,
    pub calls: usize,
}

impl FlakyGateway {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_modes(&self, charges: Mode, refunds: Mode) {
        let mut state = self.lock();
        state.charge_mode = charges;
        state.refund_mode = refunds;
    }

    pub fn record(&self) -> GatewayRecord {
        let state = self.lock();
        GatewayRecord {
            charges: state.charges.clone(),
            refunds: state.refunds.clone(),
            calls: state.calls,
        }
    }
}

fn refused(what: &str) -> GatewayError {
    GatewayError::Rejected {
        status: 402,
        message: format!("{what} refused"),
    }
}

#[async_trait]
impl Gateway for FlakyGateway {
    async fn register_account(&self, _: &AccountRegistration) -> Result<(), GatewayError> {
        Ok(())
    }

    async fn create_charge(&self, request: &ChargeRequest) -> Result<String, GatewayError> {
        let mut state = self.lock();
        state.calls += 1;
        let reference = format!("ch_{}", request.payment_id);
        if let Some((tenant, amount)) = state.charges.get(&request.payment_id) {
            // Idempotent: the same charge, never a second one.
            assert_eq!(
                (*tenant, *amount),
                (request.account, request.amount),
                "a charge re-sent with other terms"
            );
            return Ok(reference);
        }
        match state.charge_mode {
            Mode::Down => return Err(GatewayError::Unavailable("gateway down".into())),
            Mode::Refuse => {
                state.refused_charges.insert(request.payment_id);
                return Err(refused("charge"));
            }
            Mode::Healthy => {}
        }
        if request.source.is_none() || state.refused_charges.contains(&request.payment_id) {
            return Err(GatewayError::UnknownCharge);
        }
        state
            .charges
            .insert(request.payment_id, (request.account, request.amount));
        Ok(reference)
    }

    async fn create_refund(&self, request: &RefundRequest) -> Result<String, GatewayError> {
        let mut state = self.lock();
        state.calls += 1;
        let reference = format!("rf_{}", request.refund_id);
        if state.refunds.contains_key(&request.refund_id) {
            return Ok(reference);
        }
        match state.refund_mode {
            Mode::Down => return Err(GatewayError::Unavailable("gateway down".into())),
            Mode::Refuse => return Err(refused("refund")),
            Mode::Healthy => {}
        }
        state.refunds.insert(
            request.refund_id,
            (request.account, request.payment_id, request.amount),
        );
        Ok(reference)
    }
}
