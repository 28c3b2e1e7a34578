//! Webhook delivery under the simulator's chaos knobs (duplicates, batching, dropped first
//! attempts, reordering, a seeded random source) and a receiver that refuses attempts.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use payrail_actors::domain::{PaymentId, TenantId};
use payrail_actors::ports::Gateway;

use super::{
    card, charge, quiet_config, register, setup, token, types_by_payment, SimulatorConfig,
    IDLE_TIMEOUT, OTHER_SECRET,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_knob_delivers_every_event_twice() {
    let config = SimulatorConfig {
        duplicate_rate: 1.0,
        ..quiet_config()
    };
    let (simulator, receiver, gateway, account) = setup(config, 0).await;
    for _ in 0..3 {
        gateway
            .create_charge(&charge(account, PaymentId::new(), token("tok_visa")))
            .await
            .unwrap();
    }
    assert!(simulator.wait_idle(IDLE_TIMEOUT).await);
    // Duplicates are not tracked as pending: give the copies a moment to land.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for event in receiver.events() {
        *seen
            .entry(event["id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(seen.len(), 6);
    assert!(seen.values().all(|&n| n == 2), "{seen:?}");
    let stats = simulator.stats();
    assert_eq!(stats.duplicate_deliveries, 6);
    assert_eq!(stats.events_delivered, 12);
    simulator.stop().await;
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batching_groups_events_of_one_account_per_request() {
    let config = SimulatorConfig {
        batch_size: 10,
        batch_linger_ms: 100,
        webhook_delay_min_ms: 10,
        webhook_delay_max_ms: 10,
        ..quiet_config()
    };
    let (simulator, receiver, gateway, account) = setup(config, 0).await;
    let second = TenantId::new();
    register(&gateway, second, &receiver.url, OTHER_SECRET).await;
    let charges = (0..8).map(|i| {
        let owner = if i % 2 == 0 { account } else { second };
        let gateway = gateway.clone();
        async move {
            gateway
                .create_charge(&charge(owner, PaymentId::new(), token("tok_visa")))
                .await
        }
    });
    for result in futures::future::join_all(charges).await {
        result.unwrap();
    }
    assert!(simulator.wait_idle(IDLE_TIMEOUT).await);
    let received = receiver.received();
    let total: usize = received.iter().map(|r| r.events.len()).sum();
    assert_eq!(total, 16);
    assert!(received.iter().all(|r| r.batched && r.events.len() <= 10));
    for request in &received {
        assert!(request
            .events
            .iter()
            .all(|e| e["account"] == request.account.as_str()));
    }
    assert!(
        received.len() < 16,
        "expected some batching, got {} requests",
        received.len()
    );
    assert_eq!(receiver.state.bad_signatures.load(Ordering::SeqCst), 0);
    simulator.stop().await;
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deliveries_are_retried() {
    let (simulator, receiver, gateway, account) = setup(quiet_config(), 2).await;
    gateway
        .create_charge(&charge(account, PaymentId::new(), token("tok_visa")))
        .await
        .unwrap();
    assert!(simulator.wait_idle(IDLE_TIMEOUT).await);
    assert_eq!(receiver.events().len(), 2);
    let stats = simulator.stats();
    assert_eq!(
        stats.webhook_attempts, 4,
        "two refused attempts, then two delivered"
    );
    assert_eq!(stats.webhooks_delivered, 2);
    simulator.stop().await;
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_first_attempts_are_retried() {
    let config = SimulatorConfig {
        drop_first_attempt_rate: 1.0,
        ..quiet_config()
    };
    let (simulator, receiver, gateway, account) = setup(config, 0).await;
    gateway
        .create_charge(&charge(account, PaymentId::new(), card("4000000000000002")))
        .await
        .unwrap();
    assert!(simulator.wait_idle(IDLE_TIMEOUT).await);
    assert_eq!(receiver.events().len(), 2);
    let stats = simulator.stats();
    assert_eq!(stats.webhook_attempts_dropped, 2);
    assert_eq!(stats.webhook_attempts, 2);
    simulator.stop().await;
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorder_knob_still_delivers_everything_once() {
    let config = SimulatorConfig {
        reorder_window: 8,
        batch_linger_ms: 30,
        ..quiet_config()
    };
    let (simulator, receiver, gateway, account) = setup(config, 0).await;
    let charges = (0..6).map(|_| {
        let gateway = gateway.clone();
        async move {
            gateway
                .create_charge(&charge(account, PaymentId::new(), token("tok_visa")))
                .await
        }
    });
    for result in futures::future::join_all(charges).await {
        result.unwrap();
    }
    assert!(simulator.wait_idle(IDLE_TIMEOUT).await);
    let events = receiver.events();
    assert_eq!(events.len(), 12);
    let by_payment = types_by_payment(&events);
    assert_eq!(by_payment.len(), 6);
    assert!(by_payment.values().all(|types| types.len() == 2));
    simulator.stop().await;
    receiver.stop().await;
}

/// Duplicate and drop decisions for the same seed and request sequence.
async fn chaos_counts(seed: u64) -> (u64, u64) {
    let config = SimulatorConfig {
        duplicate_rate: 0.5,
        drop_first_attempt_rate: 0.5,
        seed,
        ..quiet_config()
    };
    let (simulator, receiver, gateway, account) = setup(config, 0).await;
    for _ in 0..10 {
        gateway
            .create_charge(&charge(account, PaymentId::new(), token("tok_visa")))
            .await
            .unwrap();
    }
    assert!(simulator.wait_idle(IDLE_TIMEOUT).await);
    let stats = simulator.stats();
    simulator.stop().await;
    receiver.stop().await;
    (stats.duplicate_deliveries, stats.webhook_attempts_dropped)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_is_reproducible_under_a_seed() {
    let first = chaos_counts(42).await;
    assert_eq!(first, chaos_counts(42).await);
    assert!(first.0 > 0 && first.0 < 20, "{first:?}");
    assert!(first.1 > 0, "{first:?}");
}
