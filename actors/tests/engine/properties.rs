//! Property tests: random interleavings of payments, duplicated and shuffled gateway outcomes,
//! refunds, voids, passivation, actor panics and store failures (whole batches, one unit in the
//! middle of a pipeline, lost replies), with and without a commit linger that packs many units
//! of one entity into a batch, against every invariant of the engine.
//! `PROPTEST_CASES` raises the case count (default 256).

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;
use std::time::Duration;

use payrail_actors::domain::{GatewayOutcome, InvoiceCommand, PaymentId, StreamId};
use payrail_actors::engine::{GatewayEvent, Outcome, PaymentAttempt};
use proptest::prelude::*;

use crate::support::{card, config, harness, Harness};

#[derive(Debug, Clone)]
enum Op {
    Pay {
        invoice: usize,
        amount: Option<i64>,
    },
    Outcome {
        payment: usize,
        success: bool,
        copies: usize,
        reverse: bool,
    },
    Refund {
        payment: usize,
        amount: Option<i64>,
    },
    Void {
        invoice: usize,
    },
    Panic {
        payment: usize,
        invoice_side: bool,
    },
    FailStore {
        batches: usize,
    },
    /// The unit at this position of the next batch fails (units behind it are fenced).
    FailUnit {
        index: usize,
    },
    /// The next batch commits but its outcome is reported unknown.
    LoseReply,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, prop::option::of(1..600i64)).prop_map(|(invoice, amount)| Op::Pay { invoice, amount }),
        4 => (0..12usize, any::<bool>(), 1..=5usize, any::<bool>())
            .prop_map(|(payment, success, copies, reverse)| Op::Outcome { payment, success, copies, reverse }),
        2 => (0..12usize, prop::option::of(1..400i64)).prop_map(|(payment, amount)| Op::Refund { payment, amount }),
        1 => (0..3usize).prop_map(|invoice| Op::Void { invoice }),
        1 => (0..12usize, any::<bool>()).prop_map(|(payment, invoice_side)| Op::Panic { payment, invoice_side }),
        1 => (1..3usize).prop_map(|batches| Op::FailStore { batches }),
        1 => (1..6usize).prop_map(|index| Op::FailUnit { index }),
        1 => Just(Op::LoseReply),
    ]
}

/// What the engine acknowledged: it must all be durable afterwards.
#[derive(Default)]
struct Acknowledged {
    payments: Vec<PaymentId>,
    refunds: Vec<(PaymentId, payrail_actors::domain::RefundId)>,
    applied: usize,
}

async fn run_op(
    h: &Harness,
    invoices: &[payrail_actors::domain::InvoiceId],
    payments: &[PaymentId],
    op: Op,
    ack: &mut Acknowledged,
) {
    match op {
        Op::Pay { invoice, amount } => {
            let attempt = PaymentAttempt {
                invoice_id: invoices[invoice],
                amount,
                method: card("4242424242424242"),
            };
            if let Ok(Outcome::Fresh(p)) = h.engine.attempt_payment(h.ctx(), attempt).await {
                ack.payments.push(p.id);
            }
        }
        Op::Outcome {
            payment,
            success,
            copies,
            reverse,
        } => {
            let Some(&payment_id) = payments.get(payment) else {
                return;
            };
            let kind = if success { "ok" } else { "fail" };
            let outcome = if success {
                GatewayOutcome::Succeeded {
                    reference: None,
                    amount: None,
                    currency: None,
                }
            } else {
                GatewayOutcome::Failed {
                    code: "card_declined".into(),
                    message: "declined".into(),
                    amount: None,
                    currency: None,
                }
            };
            let processing = GatewayEvent {
                id: format!("evt_gw_{payment_id}_processing"),
                payment_id,
                outcome: GatewayOutcome::Processing {
                    reference: format!("ch_{payment_id}"),
                },
            };
            let event = GatewayEvent {
                id: format!("evt_gw_{payment_id}_{kind}"),
                payment_id,
                outcome,
            };
            let mut batch = vec![processing];
            batch.extend(std::iter::repeat_n(event, copies));
            if reverse {
                batch.reverse();
            }
            if let Ok(summary) = h.engine.apply_gateway_events(h.tenant, batch).await {
                ack.applied += summary.applied;
            }
        }
        Op::Refund { payment, amount } => {
            let Some(&payment_id) = payments.get(payment) else {
                return;
            };
            if let Ok(Outcome::Fresh(r)) = h.engine.refund(h.ctx(), payment_id, amount, None).await
            {
                ack.refunds.push((payment_id, r.id));
                let done = GatewayEvent {
                    id: format!("evt_gw_{}", r.id),
                    payment_id,
                    outcome: GatewayOutcome::RefundSucceeded { refund_id: r.id },
                };
                if let Ok(summary) = h
                    .engine
                    .apply_gateway_events(h.tenant, vec![done.clone(), done])
                    .await
                {
                    ack.applied += summary.applied;
                }
            }
        }
        Op::Void { invoice } => {
            let _ = h
                .engine
                .invoice_command(h.ctx(), invoices[invoice], InvoiceCommand::Void)
                .await;
        }
        Op::Panic {
            payment,
            invoice_side,
        } => {
            let target = match (invoice_side, payments.get(payment)) {
                (true, _) | (false, None) => StreamId::Invoice(invoices[payment % invoices.len()]),
                (false, Some(p)) => StreamId::Payment(*p),
            };
            h.engine.inject_panic(h.tenant, target).await;
        }
        Op::FailStore { batches } => h.store.fail_next_batches(batches),
        Op::FailUnit { index } => h.store.fail_unit_of_next_batch(index),
        Op::LoseReply => h.store.lose_next_replies(1),
    }
}

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
}

async fn scenario(ops: Vec<Vec<Op>>, passivate: bool, linger: bool) {
    count_unexpected_panics();
    let mut cfg = config();
    if linger {
        // Batches then hold several units of one entity: pipelines meet failures mid-way.
        cfg.commit_linger = Duration::from_micros(500);
    }
    if passivate {
        cfg.passivation_idle = Duration::ZERO;
        cfg.passivation_check_interval = Duration::from_millis(1);
    }
    let h = harness(cfg);
    let mut invoices = Vec::new();
    for total in [500, 800, 1_000] {
        invoices.push(h.open_invoice(total).await.id);
    }
    let mut ack = Acknowledged::default();
    for round in ops {
        // Ops in a round run concurrently: real interleavings inside the actors.
        let payments = ack.payments.clone();
        let runs = round.into_iter().map(|op| {
            let (h, invoices, payments) = (&h, &invoices, &payments);
            async move {
                let mut local = Acknowledged::default();
                run_op(h, invoices, payments, op, &mut local).await;
                local
            }
        });
        for local in futures::future::join_all(runs).await {
            ack.payments.extend(local.payments);
            ack.refunds.extend(local.refunds);
            ack.applied += local.applied;
        }
    }
    h.store.disarm_faults();
    assert_eq!(
        UNEXPECTED_PANICS.load(Ordering::SeqCst),
        0,
        "an actor panicked on an invariant"
    );
    // Invariants 2, 3, 5 and 1 on the durable log and projections.
    h.check_log();
    // Nothing acknowledged is missing.
    for payment in &ack.payments {
        assert!(
            h.store.payment_snapshot(h.tenant, *payment).is_some(),
            "acknowledged payment {payment} lost"
        );
    }
    for (payment, refund) in &ack.refunds {
        let stored = h.store.payment_snapshot(h.tenant, *payment).unwrap();
        assert!(
            stored.refund(*refund).is_some(),
            "acknowledged refund {refund} lost"
        );
    }
    let with_gateway_ids: HashSet<_> = h
        .store
        .all_events()
        .into_iter()
        .filter_map(|e| e.gateway_event_id)
        .collect();
    assert!(ack.applied <= with_gateway_ids.len());
    // Every actor's state equals the durable projection (a replay, by check_log).
    for id in &invoices {
        let live = h.engine.invoice(h.tenant, *id).await.unwrap();
        assert_eq!(Some(live), h.store.invoice_snapshot(h.tenant, *id));
    }
    for id in &ack.payments {
        // A charge reference may land concurrently: the live version sits between two reads.
        let before = h.store.payment_snapshot(h.tenant, *id).unwrap();
        let live = h.engine.payment(h.tenant, *id).await.unwrap();
        let after = h.store.payment_snapshot(h.tenant, *id).unwrap();
        assert!(before.version <= live.version && live.version <= after.version);
        assert_eq!(live.status, after.status);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { max_shrink_iters: 64, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_under_random_interleavings(
        rounds in prop::collection::vec(prop::collection::vec(op(), 1..4), 1..12),
        passivate in any::<bool>(),
        linger in any::<bool>(),
    ) {
        actix_rt::System::new().block_on(scenario(rounds, passivate, linger));
    }
}
