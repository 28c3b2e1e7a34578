//! The audit actor: the single write path. Entity actors queue units here without waiting
//! (`AuditRouter::submit`); it commits them in group commits, one batch in flight per writer,
//! and resolves each unit's `Durable` once its batch is durable. A failing unit fails alone
//! (with the units fenced behind it); a failing batch fails every unit in it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

use crate::config::EngineConfig;
use crate::domain::TenantId;
use crate::error::EngineError;
use crate::metrics::EngineMetrics;
use crate::ports::{DedupKey, EventStore, StoreError, Unit};

mod inbox;
mod outbox;
use inbox::{Link, Look, Take};
use outbox::{gather, hand_over};

/// The units one incarnation of an entity actor has queued share a fence. The actor applies
/// each unit to its memory before the unit is durable, so once one of them fails (or its
/// outcome is unknown) that memory is wrong: the writer trips the fence, fails every later unit
/// behind it, and the actor reloads from storage under a new fence before deciding anything.
#[derive(Debug, Clone, Default)]
pub struct Fence(Arc<AtomicBool>);

impl Fence {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_tripped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    pub(crate) fn trip(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The fences of one unit: its own actor's, and at most one more whose memory holds the unit
/// too (the payment settling on an invoice, or the tenant's invoice numbering). Held in place:
/// a list of them cost every unit an allocation, which its writer then freed on another thread.
#[derive(Debug, Default)]
pub struct Fences([Option<Fence>; 2]);

impl Fences {
    /// No actor's memory holds the unit (a barrier, a dedup record).
    pub fn none() -> Self {
        Self::default()
    }

    pub fn of(own: Fence, also: Option<Fence>) -> Self {
        Self([Some(own), also])
    }

    fn iter(&self) -> impl Iterator<Item = &Fence> {
        self.0.iter().flatten()
    }
}

pub use super::durable::Durable;
use super::durable::{Settle, Wakes};

/// A unit already resolved (nothing to write, or refused before it was queued).
pub fn resolved(result: Result<(), EngineError>) -> Durable {
    Durable::settled(result)
}

/// A unit and where its outcome goes.
type Queued = (Unit, Waiter);

#[derive(Message)]
#[rtype(result = "()")]
struct Flush;

/// Where a unit's outcome goes. A unit that is not answered `Ok` (failed, or dropped with a
/// stopping writer) trips its fences first, so its actors never build on it.
struct Waiter {
    reply: Option<Settle>,
    fences: Fences,
    queued: Arc<AtomicUsize>,
}

impl Waiter {
    fn answer(mut self, result: Result<(), StoreError>, wakes: &mut Wakes) {
        if result.is_err() {
            self.fences.iter().for_each(Fence::trip);
        }
        if let Some(reply) = self.reply.take() {
            reply.settle(result, wakes);
        }
    }

    fn is_fenced(&self) -> bool {
        self.fences.iter().any(Fence::is_tripped)
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if self.reply.is_some() {
            // Unanswered: its `Durable` settles as unavailable when `reply` drops.
            self.fences.iter().for_each(Fence::trip);
        }
        self.queued.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One audit writer as entity actors see it: its address and how many units it holds.
#[derive(Clone)]
pub struct WriterHandle {
    /// Shared with the threads' outboxes, not cloned: cloning an actix address allocates.
    link: Arc<Link>,
    queued: Arc<AtomicUsize>,
    capacity: usize,
    metrics: Arc<EngineMetrics>,
    stats: Arc<WriterStats>,
}

/// One writer's own share of the commit counters, so an operator can see whether the writers
/// carry even loads (a tenant always goes to the same writer).
#[derive(Debug, Default)]
struct WriterStats {
    batches: AtomicU64,
    units: AtomicU64,
    commit_micros: AtomicU64,
}

/// What one writer holds and has committed so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterSnapshot {
    /// Units reserved or queued and not yet resolved.
    pub queued: usize,
    pub batches: u64,
    pub units: u64,
    /// Time spent committing batches.
    pub commit_micros: u64,
}

impl WriterHandle {
    /// Starts a writer on `arbiter`.
    pub fn start(
        arbiter: &ArbiterHandle,
        store: Arc<dyn EventStore>,
        config: Arc<EngineConfig>,
        metrics: Arc<EngineMetrics>,
    ) -> Self {
        let capacity = config.audit_queue_capacity.max(1);
        let stats = Arc::new(WriterStats::default());
        let (writer_metrics, writer_stats) = (Arc::clone(&metrics), Arc::clone(&stats));
        let inbox = inbox::Shared::default();
        let (writer_inbox, link_store) = (Arc::clone(&inbox), Arc::clone(&store));
        let addr = AuditActor::start_in_arbiter(arbiter, move |_| {
            AuditActor::new(store, config, writer_metrics, writer_stats, writer_inbox)
        });
        Self {
            link: Arc::new(Link::new(addr, inbox, link_store)),
            queued: Arc::new(AtomicUsize::new(0)),
            capacity,
            metrics,
            stats,
        }
    }

    /// What this writer holds and has committed.
    pub fn snapshot(&self) -> WriterSnapshot {
        WriterSnapshot {
            queued: self.pending(),
            batches: self.stats.batches.load(Ordering::Relaxed),
            units: self.stats.units.load(Ordering::Relaxed),
            commit_micros: self.stats.commit_micros.load(Ordering::Relaxed),
        }
    }

    /// Takes room for one unit, or refuses at once with `Overloaded` when the writer already
    /// holds its capacity. Taken before a change is applied to memory, so an actor never has to
    /// undo one it could not queue.
    /// Units reserved or queued on this writer and not yet resolved.
    pub fn pending(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// Records a gateway event that was handled and ignored, so that a re-delivery counts as
    /// a duplicate. Nothing changed, so nobody waits for the record: the records of one tenant
    /// decided on this thread in one burst (a webhook request's stale events) share one unit
    /// and one place in the queue, joining the first of them. They are written, or lost,
    /// together; a lost one only means a re-delivery is ignored again instead of counted as a
    /// duplicate. Refused with `Overloaded` when the first needs room the writer lacks.
    pub fn record_ignored(&self, tenant: TenantId, key: DedupKey) -> Result<(), EngineError> {
        let Err(key) = gather(&self.link, tenant, key) else {
            return Ok(());
        };
        let mut unit = Unit::new(tenant);
        unit.dedup_keys.push(key);
        self.reserve()?.queue(unit, None, Fences::none(), true);
        Ok(())
    }

    pub fn reserve(&self) -> Result<Slot<'_>, EngineError> {
        if self.queued.fetch_add(1, Ordering::Relaxed) >= self.capacity {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            self.metrics.overloaded.fetch_add(1, Ordering::Relaxed);
            return Err(EngineError::Overloaded);
        }
        Ok(Slot {
            writer: self,
            filled: false,
        })
    }
}

/// Room for one unit in a writer's queue; given back if dropped unused.
pub struct Slot<'a> {
    writer: &'a WriterHandle,
    filled: bool,
}

impl Slot<'_> {
    /// Queues `unit` behind every unit queued before it, without waiting for any commit.
    /// `fences`: the fences of the actors whose memory holds the unit.
    pub fn submit(self, unit: Unit, fences: Fences) -> Durable {
        let (durable, reply) = Durable::queued();
        self.queue(unit, Some(reply), fences, false);
        durable
    }

    /// `gathers`: the unit gathers its tenant's ignored events' records for the rest of the
    /// burst (`WriterHandle::record_ignored`).
    fn queue(mut self, unit: Unit, reply: Option<Settle>, fences: Fences, gathers: bool) {
        self.filled = true;
        let writer = self.writer;
        let waiter = Waiter {
            reply,
            fences,
            queued: Arc::clone(&writer.queued),
        };
        // The outbox and the inbox are first in, first out: units reach the batch in the
        // order their actors decided them.
        hand_over(&writer.link, unit, waiter, gathers);
        writer
            .metrics
            .audit_queue_depth
            .fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if !self.filled {
            self.writer.queued.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// How many ignored gateway events' dedup rows (`Unit::is_light`, with barriers) count as one
/// unit against a batch's cap. Each took a whole place in a batch, so at the cap of batched
/// webhooks half of a batch was dedup rows, and every batch has a fixed cost (~1.5 ms on
/// SQLite, the store's and the writer's). Counted this way, SQLite answered 3–8% more events
/// per second at saturation, and PostgreSQL held 480 batched requests per second in a slow
/// hour where it had not (docs/benchmarks-history.md, "SQLite's writer thread").
const LIGHT_UNITS_PER_UNIT: usize = 8;

/// How many of `queued`, from the front, the next batch takes: at most `max_units` units, a
/// light one counting as `1 / LIGHT_UNITS_PER_UNIT` per dedup row it holds (a barrier as one
/// row). Never none while something is queued. A cap of one turns group commit off: one unit
/// per transaction, light or not.
fn batch_len(queued: &[Queued], max_units: usize) -> usize {
    if max_units <= 1 {
        return queued.len().min(1);
    }
    let budget = max_units.saturating_mul(LIGHT_UNITS_PER_UNIT);
    let mut used = 0;
    for (taken, (unit, _)) in queued.iter().enumerate() {
        used += if unit.is_light() {
            unit.dedup_keys.len().max(1)
        } else {
            LIGHT_UNITS_PER_UNIT
        };
        if used > budget {
            return taken.max(1);
        }
    }
    queued.len()
}

pub struct AuditActor {
    store: Arc<dyn EventStore>,
    config: Arc<EngineConfig>,
    metrics: Arc<EngineMetrics>,
    stats: Arc<WriterStats>,
    inbox: inbox::Shared,
    buffer: Vec<Queued>,
    in_flight: usize,
    flush_scheduled: bool,
    /// Callers of the batch that just became durable, answered once the next batch is on its
    /// way to the store: waking a full batch's callers took the writer ~0.5 ms, which the
    /// store would otherwise wait out.
    durable: Vec<Waiter>,
}

impl AuditActor {
    fn new(
        store: Arc<dyn EventStore>,
        config: Arc<EngineConfig>,
        metrics: Arc<EngineMetrics>,
        stats: Arc<WriterStats>,
        inbox: inbox::Shared,
    ) -> Self {
        Self {
            store,
            config,
            metrics,
            stats,
            inbox,
            buffer: Vec::new(),
            in_flight: 0,
            flush_scheduled: false,
            durable: Vec::new(),
        }
    }

    /// Takes the units left in the inbox and schedules a flush.
    /// With nothing to do, the writer stops watching its inbox: the next delivery wakes it.
    fn take_inbox(&mut self, ctx: &mut Context<Self>) {
        let resting = self.in_flight == 0 && !self.flush_scheduled && self.buffer.is_empty();
        let look = if resting {
            Look::TakeOrRest
        } else {
            Look::Take
        };
        inbox::join(&mut self.buffer, inbox::take(&self.inbox, look));
        self.schedule_flush(ctx);
    }

    fn schedule_flush(&mut self, ctx: &mut Context<Self>) {
        if self.flush_scheduled || self.in_flight > 0 || self.buffer.is_empty() {
            return;
        }
        self.flush_scheduled = true;
        if self.config.commit_linger.is_zero() {
            // Runs after the mailbox drains, so the batch holds every waiting unit.
            ctx.notify(Flush);
        } else {
            ctx.notify_later(Flush, self.config.commit_linger);
        }
    }

    /// Sends the next batch to the store, if there is one and none is in flight.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight > 0 || self.buffer.is_empty() {
            return;
        }
        let take = batch_len(&self.buffer, self.config.commit_batch_max_units);
        let mut units = Vec::with_capacity(take);
        let mut waiters = Vec::with_capacity(take);
        // Barriers write nothing; they resolve with the batch, after every unit before them.
        let mut barriers = Vec::new();
        // Usually the whole queue: taken as it is, not copied unit by unit.
        let queued: Vec<Queued> = if take == self.buffer.len() {
            std::mem::take(&mut self.buffer)
        } else {
            self.buffer.drain(..take).collect()
        };
        for (unit, waiter) in queued {
            if unit.is_empty() {
                barriers.push(waiter);
            } else if waiter.is_fenced() {
                // Decided on top of a unit that failed: it must not commit.
                let stream = unit
                    .streams
                    .first()
                    .map_or_else(String::new, |s| s.stream.to_string());
                self.answer(
                    waiter,
                    Err(StoreError::Fenced(stream)),
                    &mut Wakes::default(),
                );
            } else {
                units.push(unit);
                waiters.push(waiter);
            }
        }
        if units.is_empty() {
            self.answer_all(barriers);
            self.schedule_flush(ctx);
            return;
        }
        let events: usize = units.iter().map(Unit::event_count).sum();
        self.in_flight = units.len();
        let store = Arc::clone(&self.store);
        let started = Instant::now();
        let commit = async move { store.append_batch(units).await };
        ctx.spawn(commit.into_actor(self).map(move |results, act, ctx| {
            let failed = results.iter().filter(|r| r.is_err()).count();
            let micros = started.elapsed().as_micros() as u64;
            act.metrics
                .record_batch(waiters.len(), events, failed, micros);
            act.stats.batches.fetch_add(1, Ordering::Relaxed);
            act.stats
                .units
                .fetch_add((waiters.len() - failed) as u64, Ordering::Relaxed);
            act.stats.commit_micros.fetch_add(micros, Ordering::Relaxed);
            let mut results = results.into_iter();
            // Failures first: answering one trips its fences, which the next batch checks.
            let mut durable = Vec::with_capacity(waiters.len() + barriers.len());
            let mut wakes = Wakes::default();
            for waiter in waiters {
                let result = results.next().unwrap_or_else(|| {
                    Err(StoreError::Unavailable(
                        "store returned too few results".into(),
                    ))
                });
                match result {
                    Ok(()) => durable.push(waiter),
                    Err(err) => act.answer(waiter, Err(err), &mut wakes),
                }
            }
            drop(wakes);
            durable.extend(barriers);
            act.in_flight = 0;
            act.take_inbox(ctx);
            if act.buffer.is_empty() || !act.config.commit_linger.is_zero() {
                act.answer_all(durable);
            } else {
                act.durable = durable;
            }
        }));
    }

    fn answer(&self, waiter: Waiter, result: Result<(), StoreError>, wakes: &mut Wakes) {
        self.metrics
            .audit_queue_depth
            .fetch_sub(1, Ordering::Relaxed);
        waiter.answer(result, wakes);
    }

    /// Answers `Ok` to the callers of units that became durable together, waking their tasks
    /// once all are settled.
    fn answer_all(&self, durable: Vec<Waiter>) {
        let mut wakes = Wakes::default();
        durable
            .into_iter()
            .for_each(|w| self.answer(w, Ok(()), &mut wakes));
    }
}

impl Actor for AuditActor {
    type Context = Context<Self>;

    fn stopping(&mut self, _ctx: &mut Self::Context) -> Running {
        // Never stop with units unanswered: drain first.
        let drained = self.buffer.is_empty() && self.in_flight == 0 && self.durable.is_empty();
        if drained && !inbox::holds_units(&self.inbox) {
            Running::Stop
        } else {
            Running::Continue
        }
    }
}

impl Drop for AuditActor {
    fn drop(&mut self) {
        // Units left for a writer that has stopped are answered `Unavailable` as they drop,
        // their fences tripped, as are those delivered later.
        drop(inbox::close(&self.inbox));
    }
}

impl Handler<Take> for AuditActor {
    type Result = ();

    fn handle(&mut self, _: Take, ctx: &mut Self::Context) {
        self.take_inbox(ctx);
    }
}

impl Handler<Flush> for AuditActor {
    type Result = ();

    fn handle(&mut self, _: Flush, ctx: &mut Self::Context) {
        self.flush_scheduled = false;
        // Units that arrived while the flush waited (a linger) join its batch.
        inbox::join(&mut self.buffer, inbox::take(&self.inbox, Look::Take));
        let durable = std::mem::take(&mut self.durable);
        self.flush(ctx);
        // What arrived since joins the queue; with nothing in flight and nothing queued, the
        // writer rests until woken.
        self.take_inbox(ctx);
        if !durable.is_empty() {
            // Spawned after the batch `flush` sent, so the context polls it after that batch's
            // first poll, which hands the batch to the store.
            let answer = actix::fut::ready(());
            ctx.spawn(ActorFutureExt::map(answer, move |(), act: &mut Self, _| {
                act.answer_all(durable);
            }));
        }
    }
}

#[cfg(test)]
mod tests;
