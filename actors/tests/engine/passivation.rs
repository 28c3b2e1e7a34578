//! Live actors are bounded: idle entity actors and idle tenant supervisors stop, the least
//! recently used go first past the per-tenant cap, and every one comes back from storage. A
//! payment's lease on its invoice keeps the invoice live, and is given back when the payment
//! stops.

use std::ops::AsyncFnMut;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use payrail_actors::domain::{Invoice, StreamId, TenantId};
use payrail_actors::engine::{Context, Outcome};
use payrail_actors::EngineConfig;

use crate::support::{config, harness, invoice_input};

/// Actors idle for 500 ms are passivated (checked every 10 ms): long enough that an actor is
/// still live when a test first counts it, however busy the machine.
fn passivating() -> EngineConfig {
    let mut cfg = config();
    cfg.passivation_idle = Duration::from_millis(500);
    cfg.passivation_check_interval = Duration::from_millis(10);
    cfg
}

#[actix_rt::test]
async fn idle_actors_are_passivated_and_come_back() {
    let h = harness(passivating());
    let invoice = h.open_invoice(1_000).await;
    assert!(h.engine.active_entities(h.tenant).await.unwrap() >= 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while h.engine.active_entities(h.tenant).await.unwrap() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "idle actors never passivated"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let again = h.engine.invoice(h.tenant, invoice.id).await.unwrap();
    assert_eq!(again, invoice);
}

/// A tenant with nothing live has its supervisor retired too, and the next command starts a
/// new one that numbers invoices on from where the last left off.
#[actix_rt::test]
async fn idle_supervisors_are_retired_and_come_back() {
    let mut cfg = config();
    cfg.passivation_idle = Duration::from_millis(20);
    cfg.passivation_check_interval = Duration::from_millis(10);
    let h = harness(cfg);
    let metrics = h.engine.metrics();
    let first = h.open_invoice(1_000).await;
    assert_eq!(first.number, "INV-000001");
    assert_eq!(metrics.active_supervisors.load(SeqCst), 1);
    let mut retired = false;
    for _ in 0..200 {
        if metrics.active_supervisors.load(SeqCst) == 0 {
            retired = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(retired, "an idle supervisor kept running");
    let second = h.open_invoice(1_000).await;
    assert_eq!(second.number, "INV-000002");
    assert_eq!(h.engine.invoice(h.tenant, first.id).await.unwrap(), first);
    h.check_log();
}

#[actix_rt::test]
async fn active_actor_cap_evicts_least_recently_used() {
    let mut cfg = config();
    cfg.max_active_entities_per_tenant = 5;
    let h = harness(cfg);
    let mut ids = Vec::new();
    for _ in 0..12 {
        ids.push(h.open_invoice(100).await.id);
    }
    assert!(h.engine.active_entities(h.tenant).await.unwrap() <= 5);
    for id in ids {
        assert_eq!(h.engine.invoice(h.tenant, id).await.unwrap().id, id);
    }
}

/// A payment asks the supervisor for its invoice's actor once and settles with it directly;
/// the invoice stays live while a payment holds it and passivates once its payments have.
#[actix_rt::test]
async fn payments_lease_their_invoice_and_give_it_back() {
    let h = harness(passivating());
    let metrics = h.engine.metrics();
    let invoice = h.open_invoice(1_000).await;
    let payment = h.pay(invoice.id, Some(400)).await;
    assert_eq!(metrics.invoice_leases.load(SeqCst), 1);
    let summary = h
        .engine
        .apply_gateway_events(h.tenant, vec![crate::success("evt_gw_lease", payment.id)])
        .await
        .unwrap();
    assert_eq!(summary.applied, 1);
    assert_eq!(
        metrics.invoice_leases.load(SeqCst),
        1,
        "the settlement went through the supervisor again"
    );
    eventually("a leased invoice was never given back", async || {
        metrics.active_entities() == 0
    })
    .await;
    let after = h.engine.invoice(h.tenant, invoice.id).await.unwrap();
    assert_eq!((after.amount_paid, after.amount_pending), (400, 0));
    h.check_log();
}

/// A payment holding a lease on an invoice actor that died asks for its next incarnation, and
/// the lease it gives back on the dead one counts for nothing: the next incarnation is not
/// passivated while the payment holds it.
#[actix_rt::test]
async fn a_payment_finds_its_invoice_restarted_and_keeps_it() {
    let h = harness(passivating());
    let metrics = h.engine.metrics();
    let invoice = h.open_invoice(1_000).await;
    let payment = h.pay(invoice.id, Some(400)).await;
    h.engine
        .inject_panic(h.tenant, StreamId::Invoice(invoice.id))
        .await;
    let summary = h
        .engine
        .apply_gateway_events(h.tenant, vec![crate::success("evt_gw_next", payment.id)])
        .await
        .unwrap();
    assert_eq!(summary.applied, 1);
    assert_eq!(
        metrics.invoice_leases.load(SeqCst),
        2,
        "one lease for the attempt, one for the next incarnation"
    );
    let after = h.engine.invoice(h.tenant, invoice.id).await.unwrap();
    assert_eq!((after.amount_paid, after.amount_pending), (400, 0));
    // The payment stays in use past the idle timeout; its invoice gets no message of its own.
    let until = tokio::time::Instant::now() + Duration::from_millis(1_500);
    while tokio::time::Instant::now() < until {
        h.engine.payment(h.tenant, payment.id).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        metrics.active_invoice_actors.load(SeqCst),
        1,
        "the leased invoice was passivated"
    );
    h.check_log();
}

/// Past the per-tenant cap, payments are evicted but their invoice is not while any live
/// payment holds it: every settlement lands on the one live copy of the invoice.
#[actix_rt::test]
async fn a_leased_invoice_outlives_the_cap_and_settles_every_payment() {
    let mut cfg = config();
    cfg.max_active_entities_per_tenant = 4;
    let h = harness(cfg);
    let invoice = h.open_invoice(1_200).await;
    let mut payments = Vec::new();
    for _ in 0..12 {
        payments.push(h.pay(invoice.id, Some(100)).await);
    }
    // The cap holds once the actors are idle: each payment's charge answer, recorded after its
    // creation was acknowledged, restarts an evicted payment and keeps it busy for a moment,
    // and a busy actor is evicted only when it goes idle.
    eventually("live actors stayed past a cap of 4", async || {
        h.engine.active_entities(h.tenant).await.unwrap() <= 4
    })
    .await;
    let events = payments
        .iter()
        .enumerate()
        .map(|(i, p)| crate::success(&format!("evt_gw_cap_{i}"), p.id))
        .collect();
    let summary = h
        .engine
        .apply_gateway_events(h.tenant, events)
        .await
        .unwrap();
    assert_eq!(summary.applied, 12);
    let after = h.engine.invoice(h.tenant, invoice.id).await.unwrap();
    assert_eq!((after.amount_paid, after.amount_pending), (1_200, 0));
    h.check_log();
}

/// Waits (bounded) until `done` holds.
async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..500 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}");
}

async fn open_invoice_of(h: &crate::support::Harness, tenant: TenantId) -> Invoice {
    match h
        .engine
        .create_invoice(Context::new(tenant, "key_test"), invoice_input(100), true)
        .await
        .unwrap()
    {
        Outcome::Fresh(invoice) => invoice,
        Outcome::Replayed(_) => panic!("unexpected replay"),
    }
}

/// The node-wide cap holds across tenants: the tenants starting actors give up their share of
/// the excess, the periodic trim takes the rest, and every passivated invoice comes back.
#[actix_rt::test]
async fn node_actor_cap_holds_across_tenants() {
    let mut cfg = config();
    cfg.max_active_entities = 10;
    cfg.passivation_check_interval = Duration::from_millis(10);
    let h = harness(cfg);
    let metrics = h.engine.metrics();
    let tenants: Vec<TenantId> = (0..4).map(|_| TenantId::new()).collect();
    let mut opened = Vec::new();
    for round in 0..10 {
        for &tenant in &tenants {
            opened.push((tenant, open_invoice_of(&h, tenant).await));
        }
        assert!(
            metrics.active_entities() <= 10 + 4,
            "round {round}: {} live actors against a cap of 10",
            metrics.active_entities()
        );
    }
    eventually("the node stayed over its actor cap", async || {
        metrics.active_entities() <= 10
    })
    .await;
    assert!(metrics.passivations.load(SeqCst) >= 30);
    for (tenant, invoice) in opened {
        assert_eq!(h.engine.invoice(tenant, invoice.id).await.unwrap(), invoice);
    }
}

/// Past the cap on live supervisors the least recently used ones are retired even before
/// they idle out, and a retired tenant numbers on from where it left off.
#[actix_rt::test]
async fn supervisor_cap_retires_the_least_recently_used() {
    let mut cfg = config();
    cfg.engine_in_flight_max = 2;
    cfg.max_live_supervisors = 4;
    let h = harness(cfg);
    let metrics = h.engine.metrics();
    let tenants: Vec<TenantId> = (0..12).map(|_| TenantId::new()).collect();
    let mut first = Vec::new();
    for &tenant in &tenants {
        first.push(open_invoice_of(&h, tenant).await);
        eventually("live supervisors passed their cap", async || {
            metrics.active_supervisors.load(SeqCst) <= 4
        })
        .await;
    }
    let again = open_invoice_of(&h, tenants[0]).await;
    assert_eq!(first[0].number, "INV-000001");
    assert_eq!(again.number, "INV-000002");
    for (&tenant, invoice) in tenants.iter().zip(&first) {
        assert_eq!(
            h.engine.invoice(tenant, invoice.id).await.unwrap(),
            *invoice
        );
    }
}
