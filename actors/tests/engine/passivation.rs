//! Live actors are bounded: idle entity actors and idle tenant supervisors stop, the least
//! recently used go first past the per-tenant cap, and every one comes back from storage.

use std::time::Duration;

use crate::support::{config, harness};

#[actix_rt::test]
async fn idle_actors_are_passivated_and_come_back() {
    let mut cfg = config();
    cfg.passivation_idle = Duration::from_millis(20);
    cfg.passivation_check_interval = Duration::from_millis(10);
    let h = harness(cfg);
    let invoice = h.open_invoice(1_000).await;
    assert!(h.engine.active_entities(h.tenant).await.unwrap() >= 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(h.engine.active_entities(h.tenant).await.unwrap(), 0);
    let again = h.engine.invoice(h.tenant, invoice.id).await.unwrap();
    assert_eq!(again, invoice);
}

/// A tenant with nothing live has its supervisor retired too, and the next command starts a
/// new one that numbers invoices on from where the last left off.
#[actix_rt::test]
async fn idle_supervisors_are_retired_and_come_back() {
    use std::sync::atomic::Ordering::SeqCst;
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
