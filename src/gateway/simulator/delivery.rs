//! Webhook delivery: one worker task keeps the schedule (a heap by due time, bounded by the
//! reserved capacity), applies the chaos knobs when events fall due (reorder, batch, duplicate,
//! drop first attempt) and hands each request to a task that signs it afresh per attempt and
//! retries non-2xx answers with backoff. Every random choice comes from the seeded RNG.

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::model::{EventBatch, GatewayEvent};
use super::state::{bump, Scheduled, Shared};
use crate::gateway::signature::{sign, SIGNATURE_HEADER};

/// Mixed into the seed so the worker's choices differ from the handlers' delay draws.
const WORKER_SEED_SALT: u64 = 0x9e37_79b9_7f4a_7c15;
/// Spreads event sequence numbers over the seed space for per-event decisions.
const SEQUENCE_MIX: u64 = 0xbf58_476d_1ce4_e5b9;

/// Heap entry: earliest due first, then arrival order (stable for equal due times).
struct Entry {
    seq: u64,
    item: Scheduled,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        // Reversed: BinaryHeap is a max-heap.
        (other.item.due, other.seq).cmp(&(self.item.due, self.seq))
    }
}

/// One webhook request to make: events of one account, original or duplicate.
struct Delivery {
    /// Sequence number of its first event: seeds its own choices (drop, jitter).
    seq: u64,
    account: String,
    events: Vec<GatewayEvent>,
    follow_ups: Vec<(GatewayEvent, Duration)>,
    duplicate: bool,
    batched: bool,
}

pub async fn run_worker(shared: Arc<Shared>, mut queue: mpsc::Receiver<Scheduled>) {
    let config = shared.config.clone();
    let mut rng = StdRng::seed_from_u64(config.seed ^ WORKER_SEED_SALT);
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_millis(config.webhook_timeout_ms))
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "gateway simulator: cannot build webhook client");
            return;
        }
    };
    let permits = Arc::new(Semaphore::new(config.max_concurrent_deliveries));
    let mut tasks = JoinSet::new();
    let mut heap = BinaryHeap::new();
    let mut ready: Vec<(u64, Scheduled)> = Vec::new();
    let mut hold_until: Option<Instant> = None;
    let mut seq = 0u64;
    let gathers = config.batch_size > 1 || config.reorder_window > 1;
    let gather_target = config.batch_size.max(config.reorder_window);
    let linger = Duration::from_millis(if gathers { config.batch_linger_ms } else { 0 });
    loop {
        let now = Instant::now();
        while heap.peek().is_some_and(|e: &Entry| e.item.due <= now) {
            if let Some(entry) = heap.pop() {
                ready.push((entry.seq, entry.item));
                hold_until.get_or_insert(now + linger);
            }
        }
        if !ready.is_empty()
            && (ready.len() >= gather_target || hold_until.is_some_and(|h| h <= now))
        {
            let due = std::mem::take(&mut ready);
            hold_until = None;
            for delivery in plan(&shared, due, &mut rng) {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let purpose = if delivery.duplicate {
                    shared.hold_copy();
                    Purpose::DuplicateDelivery
                } else {
                    Purpose::Delivery
                };
                let mut choices = decision_rng(config.seed, delivery.seq, purpose);
                let drop_first = choices.random_bool(config.drop_first_attempt_rate);
                let seed = choices.random::<u64>();
                let args = (shared.clone(), client.clone(), permit);
                tasks.spawn(deliver(args, delivery, drop_first, seed));
            }
        }
        while tasks.try_join_next().is_some() {}
        let next_due = heap.peek().map(|e| e.item.due);
        let wake = match (next_due, hold_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        tokio::select! {
            received = queue.recv() => match received {
                Some(item) => {
                    seq += 1;
                    heap.push(Entry { seq, item });
                }
                None => return,
            },
            () = sleep_until_opt(wake), if wake.is_some() => {}
        }
    }
}

/// Choices about one event or delivery come from its own RNG, seeded by the config seed and its
/// arrival sequence, so they do not depend on how events happened to be grouped in time: the same
/// seed and the same sequence of requests give the same duplicates and drops.
fn decision_rng(seed: u64, seq: u64, purpose: Purpose) -> StdRng {
    StdRng::seed_from_u64(seed ^ seq.wrapping_mul(SEQUENCE_MIX) ^ purpose as u64)
}

/// Separate streams per decision, so e.g. "duplicated" and "first attempt dropped" are
/// independent for the same event.
#[derive(Clone, Copy)]
#[repr(u64)]
enum Purpose {
    Duplicate = 0x2545_f491_4f6c_dd1d,
    Delivery = 0x94d0_49bb_1331_11eb,
    DuplicateDelivery = 0x5851_f42d_4c95_7f2d,
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(deadline).await;
    }
}

/// Turns due events into webhook requests: shuffle within the reorder window, group per account
/// into batches, and add duplicate deliveries.
fn plan(shared: &Shared, mut due: Vec<(u64, Scheduled)>, rng: &mut StdRng) -> Vec<Delivery> {
    let config = &shared.config;
    if config.reorder_window > 1 {
        for window in due.chunks_mut(config.reorder_window) {
            window.shuffle(rng);
        }
    }
    let batched = config.batch_size > 1;
    let mut deliveries: Vec<Delivery> = Vec::new();
    let mut duplicates: Vec<Delivery> = Vec::new();
    let mut open: HashMap<String, usize> = HashMap::new();
    for (seq, item) in due {
        let duplicate =
            decision_rng(config.seed, seq, Purpose::Duplicate).random_bool(config.duplicate_rate);
        if duplicate {
            for _ in 0..config.duplicate_copies {
                let copy = (seq, item.event.clone());
                push_event(
                    &mut duplicates,
                    &mut HashMap::new(),
                    copy,
                    None,
                    true,
                    batched,
                    1,
                );
            }
        }
        let original = (seq, item.event);
        let size = config.batch_size;
        push_event(
            &mut deliveries,
            &mut open,
            original,
            item.follow_up,
            false,
            batched,
            size,
        );
    }
    // Duplicates go out right after the originals, so both are often in flight at once.
    deliveries.extend(duplicates);
    deliveries
}

fn push_event(
    deliveries: &mut Vec<Delivery>,
    open: &mut HashMap<String, usize>,
    (seq, event): (u64, GatewayEvent),
    follow_up: Option<(GatewayEvent, Duration)>,
    duplicate: bool,
    batched: bool,
    batch_size: usize,
) {
    let slot = open
        .get(&event.account)
        .copied()
        .filter(|&i| deliveries[i].events.len() < batch_size);
    let index = match slot {
        Some(index) => index,
        None => {
            deliveries.push(Delivery {
                seq,
                account: event.account.clone(),
                events: Vec::new(),
                follow_ups: Vec::new(),
                duplicate,
                batched,
            });
            open.insert(event.account.clone(), deliveries.len() - 1);
            deliveries.len() - 1
        }
    };
    deliveries[index].events.push(event);
    deliveries[index].follow_ups.extend(follow_up);
}

fn body_of(delivery: &Delivery) -> Vec<u8> {
    let encoded = match (delivery.batched, delivery.events.as_slice()) {
        (false, [single]) => serde_json::to_vec(single),
        _ => serde_json::to_vec(&EventBatch {
            account: &delivery.account,
            events: delivery.events.iter().collect(),
        }),
    };
    // Serializing plain strings and integers cannot fail.
    encoded.unwrap_or_default()
}

/// A `Retry-After: <seconds>` answer (the engine's 429/503), capped at the max backoff.
fn retry_after_of(response: &reqwest::Response, max_ms: u64) -> Duration {
    let seconds = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    Duration::from_millis(seconds.saturating_mul(1_000).min(max_ms))
}

fn backoff(shared: &Shared, retry: u32, rng: &mut StdRng) -> Duration {
    let base = shared.config.retry_backoff_base_ms;
    let exponential = base
        .saturating_mul(1u64 << retry.min(20))
        .min(shared.config.retry_backoff_max_ms);
    let half = exponential / 2;
    Duration::from_millis(half + rng.random_range(0..=half))
}

async fn deliver(
    (shared, client, _permit): (Arc<Shared>, reqwest::Client, OwnedSemaphorePermit),
    delivery: Delivery,
    drop_first: bool,
    seed: u64,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let body = body_of(&delivery);
    let counters = &shared.counters;
    let mut delivered = false;
    let mut retry_after = Duration::ZERO;
    for attempt in 1..=shared.config.max_attempts {
        if attempt > 1 {
            let wait = backoff(&shared, attempt - 2, &mut rng).max(retry_after);
            tokio::time::sleep(wait).await;
        }
        if attempt == 1 && drop_first {
            bump(&counters.webhook_attempts_dropped, 1);
            continue;
        }
        // Looked up per attempt: a re-registration (new URL or rotated secret) applies at once.
        let Some(account) = shared.account(&delivery.account) else {
            break;
        };
        bump(&counters.webhook_attempts, 1);
        let signature = sign(
            &account.webhook_secret,
            chrono::Utc::now().timestamp(),
            &body,
        );
        let sent = client
            .post(account.webhook_url.clone())
            .header(SIGNATURE_HEADER, signature)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => {
                delivered = true;
                break;
            }
            Ok(response) => {
                retry_after = retry_after_of(&response, shared.config.retry_backoff_max_ms);
                tracing::debug!(account = %delivery.account, attempt, status = %response.status(), "gateway simulator: webhook refused");
            }
            Err(e) => {
                tracing::debug!(account = %delivery.account, attempt, error = %e.without_url(), "gateway simulator: webhook failed");
            }
        }
    }
    let events = delivery.events.len() as u64;
    if delivered {
        bump(&counters.webhooks_delivered, 1);
        bump(&counters.events_delivered, events);
    } else {
        bump(&counters.webhooks_given_up, 1);
        tracing::warn!(account = %delivery.account, events, "gateway simulator: webhook given up");
    }
    if delivery.duplicate {
        bump(&counters.duplicate_deliveries, 1);
        shared.release(1);
        return;
    }
    for (event, delay) in delivery.follow_ups {
        // The follow-up's room was reserved with the charge; only a delivered predecessor lets it
        // go out, so a stale event can never arrive before the one it contradicts.
        if delivered {
            let item = Scheduled {
                due: Instant::now() + delay,
                event,
                follow_up: None,
            };
            shared.schedule(item);
        } else {
            shared.release(1);
        }
    }
    shared.release(delivery.events.len());
}
