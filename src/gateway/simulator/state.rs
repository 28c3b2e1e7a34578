//! The simulator's shared state: registered accounts, the idempotency ledger of charges and
//! refunds, the counters tests read, and the bounded schedule of events waiting for delivery.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::config::SimulatorConfig;
use super::model::{ChargeRecord, GatewayEvent, RefundRecord};

/// Where and how an account's webhooks go. The latest registration wins. Shared by the
/// deliveries under way, its URL parsed once at registration.
pub struct Account {
    pub webhook_url: url::Url,
    pub webhook_secret: String,
}

/// An event waiting for its due time, possibly with a stale follow-up that is scheduled only
/// once this one has been delivered (so the follow-up can never overtake it).
#[derive(Debug)]
pub struct Scheduled {
    pub due: Instant,
    pub event: GatewayEvent,
    pub follow_up: Option<(GatewayEvent, Duration)>,
}

/// Idempotency records, keyed by (account, idempotency key), evicted oldest first.
#[derive(Default)]
pub struct Ledger {
    pub charges: HashMap<(String, String), ChargeRecord>,
    pub refunds: HashMap<(String, String), RefundRecord>,
    /// Charge idempotency key → charges created under it (stays 1 if idempotency holds).
    pub creations_by_key: HashMap<String, u32>,
    /// Payment id → charges created for it under any key: a second charge under another key
    /// is invisible per key, not here.
    pub charges_by_payment: HashMap<String, u32>,
    /// (account, payment id) → the charge's idempotency key, for refunds.
    keys_by_payment: HashMap<(String, String), String>,
    order: VecDeque<Record>,
}

enum Record {
    Charge(String, String),
    Refund(String, String),
}

impl Ledger {
    pub fn insert_charge(&mut self, account: &str, key: &str, record: ChargeRecord, max: usize) {
        let id = (account.to_owned(), key.to_owned());
        self.keys_by_payment.insert(
            (account.to_owned(), record.payment_id.clone()),
            key.to_owned(),
        );
        *self
            .charges_by_payment
            .entry(record.payment_id.clone())
            .or_insert(0) += 1;
        self.charges.insert(id, record);
        *self.creations_by_key.entry(key.to_owned()).or_insert(0) += 1;
        self.order
            .push_back(Record::Charge(account.to_owned(), key.to_owned()));
        self.evict(max);
    }

    pub fn insert_refund(&mut self, account: &str, key: &str, record: RefundRecord, max: usize) {
        self.refunds
            .insert((account.to_owned(), key.to_owned()), record);
        self.order
            .push_back(Record::Refund(account.to_owned(), key.to_owned()));
        self.evict(max);
    }

    fn evict(&mut self, max: usize) {
        while self.order.len() > max {
            match self.order.pop_front() {
                Some(Record::Charge(account, key)) => {
                    if let Some(charge) = self.charges.remove(&(account.clone(), key.clone())) {
                        self.charges_by_payment.remove(&charge.payment_id);
                        self.keys_by_payment.remove(&(account, charge.payment_id));
                    }
                    self.creations_by_key.remove(&key);
                }
                Some(Record::Refund(account, key)) => {
                    self.refunds.remove(&(account, key));
                }
                None => break,
            }
        }
    }

    /// The charge of `payment_id` on `account`, whatever key it was created under.
    pub fn charge_of_payment(
        &mut self,
        account: &str,
        payment_id: &str,
    ) -> Option<&mut ChargeRecord> {
        let key = self
            .keys_by_payment
            .get(&(account.to_owned(), payment_id.to_owned()))?
            .clone();
        self.charges.get_mut(&(account.to_owned(), key))
    }
}

/// Counters for tests and operators. Monotonic.
#[derive(Default)]
pub struct Counters {
    pub charges_received: AtomicU64,
    pub charges_created: AtomicU64,
    pub refunds_received: AtomicU64,
    pub refunds_created: AtomicU64,
    pub events_emitted: AtomicU64,
    pub webhook_attempts: AtomicU64,
    pub webhook_attempts_dropped: AtomicU64,
    pub webhooks_delivered: AtomicU64,
    pub events_delivered: AtomicU64,
    pub duplicate_deliveries: AtomicU64,
    pub webhooks_given_up: AtomicU64,
}

/// A snapshot of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimulatorStats {
    /// Every `POST /v1/charges`, replays included.
    pub charges_received: u64,
    /// Distinct charges created.
    pub charges_created: u64,
    pub refunds_received: u64,
    pub refunds_created: u64,
    /// Events generated (duplicates not counted).
    pub events_emitted: u64,
    /// Webhook HTTP requests actually sent.
    pub webhook_attempts: u64,
    /// First attempts skipped by the drop-first-attempt knob (not sent).
    pub webhook_attempts_dropped: u64,
    /// Webhook requests answered 2xx (duplicates included).
    pub webhooks_delivered: u64,
    /// Events inside 2xx-answered requests (duplicates included).
    pub events_delivered: u64,
    /// Extra deliveries made by the duplicate knob.
    pub duplicate_deliveries: u64,
    /// Deliveries abandoned after `max_attempts`.
    pub webhooks_given_up: u64,
}

impl Counters {
    pub fn snapshot(&self) -> SimulatorStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SimulatorStats {
            charges_received: get(&self.charges_received),
            charges_created: get(&self.charges_created),
            refunds_received: get(&self.refunds_received),
            refunds_created: get(&self.refunds_created),
            events_emitted: get(&self.events_emitted),
            webhook_attempts: get(&self.webhook_attempts),
            webhook_attempts_dropped: get(&self.webhook_attempts_dropped),
            webhooks_delivered: get(&self.webhooks_delivered),
            events_delivered: get(&self.events_delivered),
            duplicate_deliveries: get(&self.duplicate_deliveries),
            webhooks_given_up: get(&self.webhooks_given_up),
        }
    }
}

pub fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

/// Everything the handlers and the delivery worker share.
pub struct Shared {
    pub config: SimulatorConfig,
    pub accounts: Mutex<HashMap<String, Arc<Account>>>,
    pub ledger: Mutex<Ledger>,
    pub rng: Mutex<StdRng>,
    pub counters: Counters,
    /// Events scheduled and not yet delivered or given up (follow-ups included from the start).
    pub outstanding: AtomicUsize,
    pub queue: mpsc::Sender<Scheduled>,
}

/// Locks a mutex, recovering the data if a panicking holder poisoned it: every critical section
/// here leaves the data consistent at each step.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    pub fn new(config: SimulatorConfig, queue: mpsc::Sender<Scheduled>) -> Self {
        Self {
            rng: Mutex::new(StdRng::seed_from_u64(config.seed)),
            config,
            accounts: Mutex::new(HashMap::new()),
            ledger: Mutex::new(Ledger::default()),
            counters: Counters::default(),
            outstanding: AtomicUsize::new(0),
            queue,
        }
    }

    pub fn account(&self, id: &str) -> Option<Arc<Account>> {
        lock(&self.accounts).get(id).cloned()
    }

    /// Claims room for `n` events, or `false` if the schedule is full (the caller answers 503).
    pub fn reserve(&self, n: usize) -> bool {
        let capacity = self.config.queue_capacity;
        self.outstanding
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                (current + n <= capacity).then_some(current + n)
            })
            .is_ok()
    }

    /// Counts a duplicate delivery as outstanding until it is done, so `wait_idle` (and the
    /// stats read after it) also wait for the copies. Not bounded: copies need no room.
    pub fn hold_copy(&self) {
        self.outstanding.fetch_add(1, Ordering::AcqRel);
    }

    pub fn release(&self, n: usize) {
        self.outstanding.fetch_sub(n, Ordering::AcqRel);
    }

    /// One webhook delay drawn from the configured range.
    pub fn draw_delay(&self) -> Duration {
        let (min, max) = (
            self.config.webhook_delay_min_ms,
            self.config.webhook_delay_max_ms,
        );
        let ms = lock(&self.rng).random_range(min..=max);
        Duration::from_millis(ms)
    }

    /// Schedules an event whose room was reserved. Fails only if the worker has stopped.
    pub fn schedule(&self, item: Scheduled) -> bool {
        bump(&self.counters.events_emitted, 1);
        let held = 1 + usize::from(item.follow_up.is_some());
        if self.queue.try_send(item).is_ok() {
            true
        } else {
            self.release(held);
            false
        }
    }
}
