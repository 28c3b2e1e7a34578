//! The audit actor: the single write path. It gathers units from many entity actors and commits
//! them in group commits (one batch in flight per writer), answering each unit only once its
//! batch is durable. A failing unit fails alone; a failing batch fails every unit in it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::config::EngineConfig;
use crate::error::EngineError;
use crate::metrics::EngineMetrics;
use crate::ports::{EventStore, StoreError, Unit};

/// Commit one unit; the reply comes after it is durable.
#[derive(Message)]
#[rtype(result = "Result<(), EngineError>")]
pub struct Append(pub Unit);

#[derive(Message)]
#[rtype(result = "()")]
struct Flush;

type Waiter = oneshot::Sender<Result<(), StoreError>>;

pub struct AuditActor {
    store: Arc<dyn EventStore>,
    config: Arc<EngineConfig>,
    metrics: Arc<EngineMetrics>,
    buffer: Vec<(Unit, Waiter)>,
    in_flight: usize,
    flush_scheduled: bool,
}

impl AuditActor {
    pub fn new(
        store: Arc<dyn EventStore>,
        config: Arc<EngineConfig>,
        metrics: Arc<EngineMetrics>,
    ) -> Self {
        Self {
            store,
            config,
            metrics,
            buffer: Vec::new(),
            in_flight: 0,
            flush_scheduled: false,
        }
    }

    fn schedule_flush(&mut self, ctx: &mut Context<Self>) {
        if self.flush_scheduled || self.in_flight > 0 || self.buffer.is_empty() {
            return;
        }
        self.flush_scheduled = true;
        if self.config.commit_linger.is_zero() {
            // Runs after the mailbox drains, so the batch holds every waiting caller.
            ctx.notify(Flush);
        } else {
            ctx.notify_later(Flush, self.config.commit_linger);
        }
    }
}

impl Actor for AuditActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.config.audit_queue_capacity);
    }

    fn stopping(&mut self, _ctx: &mut Self::Context) -> Running {
        // Never stop with units unanswered: drain first.
        if self.buffer.is_empty() && self.in_flight == 0 {
            Running::Stop
        } else {
            Running::Continue
        }
    }
}

impl Handler<Append> for AuditActor {
    type Result = ResponseFuture<Result<(), EngineError>>;

    fn handle(&mut self, Append(unit): Append, ctx: &mut Self::Context) -> Self::Result {
        let queued = self.buffer.len() + self.in_flight;
        if queued >= self.config.audit_queue_capacity {
            self.metrics.overloaded.fetch_add(1, Ordering::Relaxed);
            return Box::pin(async { Err(EngineError::Overloaded) });
        }
        let (tx, rx) = oneshot::channel();
        self.buffer.push((unit, tx));
        self.metrics
            .audit_queue_depth
            .fetch_add(1, Ordering::Relaxed);
        self.schedule_flush(ctx);
        Box::pin(async move {
            match rx.await {
                Ok(result) => result.map_err(EngineError::from),
                Err(_) => Err(EngineError::Unavailable("audit writer stopped".into())),
            }
        })
    }
}

impl Handler<Flush> for AuditActor {
    type Result = ();

    fn handle(&mut self, _: Flush, ctx: &mut Self::Context) {
        self.flush_scheduled = false;
        if self.in_flight > 0 || self.buffer.is_empty() {
            return;
        }
        let take = self.buffer.len().min(self.config.commit_batch_max_units);
        let batch: Vec<(Unit, Waiter)> = self.buffer.drain(..take).collect();
        let (units, waiters): (Vec<Unit>, Vec<Waiter>) = batch.into_iter().unzip();
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
            act.metrics
                .audit_queue_depth
                .fetch_sub(waiters.len() as i64, Ordering::Relaxed);
            let mut results = results.into_iter();
            for waiter in waiters {
                let result = results.next().unwrap_or_else(|| {
                    Err(StoreError::Unavailable(
                        "store returned too few results".into(),
                    ))
                });
                // A caller that went away no longer needs its answer; the unit is durable anyway.
                let _ = waiter.send(result);
            }
            act.in_flight = 0;
            act.schedule_flush(ctx);
        }));
    }
}
