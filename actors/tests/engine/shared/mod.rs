//! The property scenario and its history checker, shared by every store's run: the in-memory
//! store here, SQLite in the `payrail` crate (which includes this module by path).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod check;
pub mod faults;
pub mod gateway;
pub mod ledger;
pub mod scenario;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

use payrail_actors::domain::{PaymentStatus, RefundStatus};

use gateway::Mode;
use scenario::{Backend, Plan};

/// Panics other than injected faults: a `debug_assert!` on a domain invariant firing inside an
/// actor kills only that actor, so they are counted here and must stay at zero.
static UNEXPECTED_PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_unexpected_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info.to_string().contains("injected fault") {
                UNEXPECTED_PANICS.fetch_add(1, Ordering::SeqCst);
                previous(info);
            }
        }));
    });
    UNEXPECTED_PANICS.store(0, Ordering::SeqCst);
}

/// Recovery sweeps after a plan, at most (the loop stops at the first that finds nothing).
const RECOVERY_PASSES_MAX: usize = 20;

/// Runs the plan against the backend, recovers (faults off, gateway healthy, recovery sweep),
/// then checks every tenant's history.
pub async fn run(backend: &dyn Backend, plan: Plan) {
    count_unexpected_panics();
    let world = scenario::world(backend, &plan).await;
    for round in plan.rounds {
        // Ops in a round run concurrently: real interleavings inside the actors.
        let runs = round
            .into_iter()
            .map(|op| world.run_op(backend.faults(), op));
        futures::future::join_all(runs).await;
    }
    backend.faults().disarm_faults();
    world.gateway.set_modes(Mode::Healthy, Mode::Healthy);
    scenario::quiesce(&world.engine, backend.faults()).await;
    // Passes of the recovery sweep, as its timer would run them, until one finds nothing to do:
    // an answer that could not be recorded in one pass (its actor was passivating) is asked for
    // again in the next. With actors passivating every millisecond on a busy machine, three
    // passes were once not enough for one payment. A pass that sends nothing may still have
    // found a charge it could not send (its supervisor was stopping as the sweep reached it),
    // so passes go on while the store holds a payment awaiting its charge.
    for _ in 0..RECOVERY_PASSES_MAX {
        let charges = world.engine.resubmit_pending_charges().await;
        let refunds = world.engine.resubmit_pending_refunds().await;
        scenario::quiesce(&world.engine, backend.faults()).await;
        let awaiting = backend.store().payments_awaiting_charge(None, 1).await;
        if charges == Ok(0) && refunds == Ok(0) && awaiting.is_ok_and(|p| p.is_empty()) {
            break;
        }
    }
    assert_eq!(
        UNEXPECTED_PANICS.load(Ordering::SeqCst),
        0,
        "an actor panicked on an invariant"
    );
    let gateway = world.gateway.record();
    let store = backend.store();
    for (i, &tenant) in world.tenants.iter().enumerate() {
        let view = backend.view(tenant).await;
        check::check_log(tenant, &view);
        check::check_money(&view);
        let keys: Vec<String> = world.ledgers[i]
            .lock()
            .unwrap()
            .keys()
            .map(str::to_owned)
            .collect();
        let mut records = HashMap::new();
        for key in keys {
            let record = store.idempotency_record(tenant, &key).await.unwrap();
            records.insert(key, record);
        }
        let with_gateway_ids = view
            .events
            .iter()
            .filter(|e| e.gateway_event_id.is_some())
            .count();
        {
            let ledger = world.ledgers[i].lock().unwrap();
            ledger.verify(&view, &records);
            assert!(ledger.applied <= with_gateway_ids, "applied events missing");
        }

        // The gateway acted only on what is durable, and everything durable reached it.
        for (payment, (_, amount)) in gateway.charges.iter().filter(|(_, (t, _))| *t == tenant) {
            let stored = view.payments.get(payment).map(|p| p.amount);
            assert_eq!(
                stored,
                Some(*amount),
                "charged {payment} that is not durable"
            );
        }
        for (refund, (_, payment, amount)) in
            gateway.refunds.iter().filter(|(_, (t, ..))| *t == tenant)
        {
            let stored = view.payments.get(payment).and_then(|p| p.refund(*refund));
            assert_eq!(
                stored.map(|r| r.amount),
                Some(*amount),
                "refunded {refund} that is not durable"
            );
        }
        for payment in view.payments.values() {
            let stranded =
                payment.status == PaymentStatus::Processing && payment.gateway_reference.is_none();
            assert!(
                !stranded,
                "after recovery {} still awaits its charge: {payment:?}",
                payment.id
            );
            let refunded_at_gateway: i64 = gateway
                .refunds
                .values()
                .filter(|(_, p, _)| *p == payment.id)
                .map(|(.., amount)| amount)
                .sum();
            assert!(
                refunded_at_gateway <= payment.amount,
                "gateway refunded more than paid"
            );
            for refund in &payment.refunds {
                let asked = gateway.refunds.contains_key(&refund.id);
                let pending = refund.status == RefundStatus::Pending;
                assert!(
                    !pending || asked,
                    "after recovery refund {} never reached the gateway",
                    refund.id
                );
            }
        }

        // Every actor's state equals the durable projection.
        for (id, stored) in &view.invoices {
            let live = retry(|| world.engine.invoice(tenant, *id)).await;
            assert_eq!(&live, stored, "live invoice differs from storage");
        }
        for (id, stored) in &view.payments {
            let live = retry(|| world.engine.payment(tenant, *id)).await;
            assert_eq!(&live, stored, "live payment differs from storage");
        }
    }
}

/// A read, asked again while its actor is stopping (passivation): what a client does on 503.
async fn retry<T, F, Fut>(read: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, payrail_actors::EngineError>>,
{
    for _ in 0..50 {
        match read().await {
            Ok(value) => return value,
            Err(payrail_actors::EngineError::Unavailable(_)) => {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            Err(err) => panic!("read failed: {err}"),
        }
    }
    panic!("read kept failing")
}
