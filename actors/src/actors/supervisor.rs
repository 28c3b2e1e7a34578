//! The tenant supervisor owns one tenant's entity actors: it starts them on demand, passivates
//! idle ones (timeout, plus an LRU cap), notices dead ones and lets the next message restart them
//! from storage, lends invoice actors to payment actors and assigns gap-free invoice numbers.
//! (The idempotency keys in flight are claimed on the tenant's handle, `registry.rs`.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix::dev::ToEnvelope;
use actix::prelude::*;

use super::invoice::InvoiceActor;
use super::messages::{Caller, CreateInvoice, Passivate};
use super::payment::PaymentActor;
use super::{done, Deps, Fence, Pending};
use crate::domain::{IdMap, Invoice, InvoiceId, InvoiceInput, PaymentId, TenantId};
use crate::error::EngineError;

mod lease;
mod routing;

pub use lease::{InvoiceLease, LeaseInvoice};
pub use routing::{ToInvoice, ToNewPayment, ToPayment, ToPayments};

/// Create an invoice with the tenant's next number.
#[derive(Message)]
#[rtype(result = "Result<Pending<Invoice>, EngineError>")]
pub struct NewInvoice {
    pub id: InvoiceId,
    pub input: InvoiceInput,
    pub finalize: bool,
    pub caller: Caller,
}

#[derive(Message)]
#[rtype(result = "usize")]
pub struct ActiveEntities;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum EntityKey {
    Invoice(InvoiceId),
    Payment(PaymentId),
}

/// A message forwarded or a lease given, booked against the incarnation of the actor it went
/// to: an answer from (or a lease on) an actor that has since been replaced counts for nothing,
/// so it cannot make the replacement look idle.
#[derive(Clone, Copy)]
struct Booking {
    key: EntityKey,
    incarnation: u64,
}

struct Entry<A: Actor> {
    addr: Addr<A>,
    last_used: Instant,
    /// Messages forwarded to the actor and not yet answered, plus leases held on it: while
    /// any, the actor is never passivated.
    in_flight: usize,
    /// Which of the entity's actors this is, one number per start.
    incarnation: u64,
}

impl<A: Actor> Entry<A> {
    fn new(addr: Addr<A>, incarnation: u64) -> Self {
        Self {
            addr,
            last_used: Instant::now(),
            in_flight: 0,
            incarnation,
        }
    }

    /// Books one more message (or lease) on this actor, handed to it by `send` (which gets
    /// its address without a clone of it: each clone of an actix address allocates); answers
    /// what `send` returned and the booking that `finished` takes back.
    fn book<R>(&mut self, key: EntityKey, send: impl FnOnce(&Addr<A>) -> R) -> (R, Booking) {
        self.in_flight += 1;
        self.last_used = Instant::now();
        let booking = Booking {
            key,
            incarnation: self.incarnation,
        };
        (send(&self.addr), booking)
    }
}

pub struct TenantSupervisor {
    tenant: TenantId,
    deps: Deps,
    invoices: IdMap<InvoiceId, Entry<InvoiceActor>>,
    payments: IdMap<PaymentId, Entry<PaymentActor>>,
    numbering: Numbering,
    /// The number the next actor started gets (`Entry::incarnation`).
    next_incarnation: u64,
    /// Since when the supervisor has held no live actor and nothing in flight, as the periodic
    /// check saw it.
    idle_since: Option<Instant>,
    /// Set once idle past the passivation timeout: the registry may then stop the supervisor
    /// (when nobody holds its handle), and start a fresh one on the tenant's next command.
    idle: Arc<AtomicBool>,
}

/// Stops an idle supervisor the registry has already forgotten.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retire;

/// The node holds more live actors than its cap: give up this tenant's share of the excess.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Trim {
    pub node_active: usize,
}

/// Gap-free invoice numbers without a commit per creation. Creations are numbered as they are
/// queued; their units share `fence`, and a store accepts a number only right after its
/// predecessor. When a creation fails, the ones numbered after it fail with it and the last
/// number is read again from storage (behind a barrier, once everything queued has resolved).
#[derive(Default)]
struct Numbering {
    /// The last number queued, once known.
    last: Option<u64>,
    fence: Fence,
}

impl Numbering {
    fn known(&self) -> Option<u64> {
        self.last.filter(|_| !self.fence.is_tripped())
    }
}

impl TenantSupervisor {
    pub fn new(tenant: TenantId, deps: Deps, idle: Arc<AtomicBool>) -> Self {
        Self {
            tenant,
            deps,
            invoices: IdMap::default(),
            payments: IdMap::default(),
            numbering: Numbering::default(),
            next_incarnation: 0,
            idle_since: None,
            idle,
        }
    }

    /// Notes whether the supervisor has idled past the passivation timeout: no live actor and
    /// nothing in flight for that long.
    fn note_idleness(&mut self, now: Instant) {
        let empty = self.invoices.is_empty() && self.payments.is_empty();
        let idle = if empty {
            let since = *self.idle_since.get_or_insert(now);
            now.duration_since(since) >= self.deps.config.passivation_idle
        } else {
            self.idle_since = None;
            false
        };
        self.idle.store(idle, Ordering::SeqCst);
    }

    /// The invoice's actor, started if needed, with one more message booked on it and given
    /// to it by `send`.
    fn invoice<R>(
        &mut self,
        id: InvoiceId,
        fresh: bool,
        send: impl FnOnce(&Addr<InvoiceActor>) -> R,
    ) -> (R, Booking) {
        let key = EntityKey::Invoice(id);
        if let Some(entry) = self.invoices.get_mut(&id) {
            if entry.addr.connected() {
                return entry.book(key, send);
            }
            self.deps
                .metrics
                .actor_restarts
                .fetch_add(1, Ordering::Relaxed);
        }
        let (tenant, deps) = (self.tenant, self.deps.clone());
        let addr = InvoiceActor::new(tenant, id, deps, fresh).start();
        let mut entry = Entry::new(addr, self.incarnation());
        let booked = entry.book(key, send);
        self.invoices.insert(id, entry);
        self.enforce_cap();
        booked
    }

    /// The payment's actor, started if needed, with one more message booked on it and given
    /// to it by `send`.
    fn payment<R>(
        &mut self,
        id: PaymentId,
        fresh: bool,
        ctx: &mut Context<Self>,
        send: impl FnOnce(&Addr<PaymentActor>) -> R,
    ) -> (R, Booking) {
        let key = EntityKey::Payment(id);
        if let Some(entry) = self.payments.get_mut(&id) {
            if entry.addr.connected() {
                return entry.book(key, send);
            }
            self.deps
                .metrics
                .actor_restarts
                .fetch_add(1, Ordering::Relaxed);
        }
        let (tenant, deps, me) = (self.tenant, self.deps.clone(), ctx.address());
        let addr = PaymentActor::new(tenant, id, deps, me, fresh).start();
        let mut entry = Entry::new(addr, self.incarnation());
        let booked = entry.book(key, send);
        self.payments.insert(id, entry);
        self.enforce_cap();
        booked
    }

    /// Looks up the entries of `ids` (a request's payments) ahead of the work on them. Their
    /// actors were last used long ago, so each lookup misses the cache, twice (the table's
    /// control bytes, then the entry) and once more for the actor's mailbox; made back to back,
    /// with nothing in between, the misses of all of them overlap, where one by one each would
    /// wait behind the sending of the message before it.
    fn warm<'a>(&self, ids: impl Iterator<Item = &'a PaymentId>) {
        for id in ids {
            std::hint::black_box(self.payments.get(id).map(|entry| entry.addr.connected()));
        }
    }

    fn incarnation(&mut self) -> u64 {
        self.next_incarnation += 1;
        self.next_incarnation
    }

    /// A booked message was answered (or a lease given back).
    fn finished(&mut self, booking: Booking) {
        fn settle<A: Actor>(entry: Option<&mut Entry<A>>, incarnation: u64) -> bool {
            match entry {
                Some(entry) if entry.incarnation == incarnation => {
                    entry.in_flight = entry.in_flight.saturating_sub(1);
                    entry.last_used = Instant::now();
                    !entry.addr.connected() && entry.in_flight == 0
                }
                _ => false,
            }
        }
        let incarnation = booking.incarnation;
        match booking.key {
            EntityKey::Invoice(id) => {
                if settle(self.invoices.get_mut(&id), incarnation) {
                    self.invoices.remove(&id);
                }
            }
            EntityKey::Payment(id) => {
                if settle(self.payments.get_mut(&id), incarnation) {
                    self.payments.remove(&id);
                }
            }
        }
        // Past the cap with nothing idle, a start evicts nothing; the first actor to go idle
        // is evicted now instead of at the next start or trim.
        if self.invoices.len() + self.payments.len()
            > self.deps.config.max_active_entities_per_tenant
        {
            self.enforce_cap();
        }
    }

    /// Stops actors idle past the timeout; returns how many.
    fn passivate_idle(&mut self) -> usize {
        let idle = self.deps.config.passivation_idle;
        let now = Instant::now();
        let stale =
            |last: Instant, in_flight: usize| in_flight == 0 && now.duration_since(last) >= idle;
        let before = self.invoices.len() + self.payments.len();
        self.invoices
            .retain(|_, e| keep(e, stale(e.last_used, e.in_flight)));
        self.payments
            .retain(|_, e| keep(e, stale(e.last_used, e.in_flight)));
        let stopped = before - (self.invoices.len() + self.payments.len());
        self.deps
            .metrics
            .passivations
            .fetch_add(stopped as u64, Ordering::Relaxed);
        stopped
    }

    /// Keeps the number of live actors under both caps, the tenant's and the node's, by
    /// passivating the least recently used idle ones. Past the node's cap the tenant starting
    /// an actor gives up its share of the excess (in proportion to its live actors); the
    /// periodic node-wide trim (`Trim`) takes care of tenants that start nothing.
    fn enforce_cap(&mut self) {
        let active = self.invoices.len() + self.payments.len();
        let tenant_cap = self.deps.config.max_active_entities_per_tenant;
        // Evict down to 90% of a cap at once: the scan below is O(n log n), so doing it for
        // every new actor past the cap would make each start cost a full sort.
        let mut target = active;
        if active > tenant_cap {
            target = tenant_cap - tenant_cap / 10;
        }
        let node_cap = self.deps.config.max_active_entities;
        let node_active = usize::try_from(self.deps.metrics.active_entities()).unwrap_or(0);
        if node_active > node_cap {
            target = target.min(proportional_share(active, node_active, node_cap));
        }
        self.passivate_least_recent(active.saturating_sub(target));
    }

    /// Passivates up to `count` idle actors (nothing in flight), least recently used first.
    fn passivate_least_recent(&mut self, count: usize) {
        if count == 0 {
            return;
        }
        let mut idle: Vec<(Instant, EntityKey)> = self
            .invoices
            .iter()
            .filter(|(_, e)| e.in_flight == 0)
            .map(|(id, e)| (e.last_used, EntityKey::Invoice(*id)))
            .chain(
                self.payments
                    .iter()
                    .filter(|(_, e)| e.in_flight == 0)
                    .map(|(id, e)| (e.last_used, EntityKey::Payment(*id))),
            )
            .collect();
        idle.sort_by_key(|(at, _)| *at);
        for (_, key) in idle.into_iter().take(count) {
            match key {
                EntityKey::Invoice(id) => {
                    if let Some(e) = self.invoices.remove(&id) {
                        e.addr.do_send(Passivate);
                    }
                }
                EntityKey::Payment(id) => {
                    if let Some(e) = self.payments.remove(&id) {
                        e.addr.do_send(Passivate);
                    }
                }
            }
            self.deps
                .metrics
                .passivations
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// How many of a tenant's `active` actors it keeps when the node holds `node_active` against
/// `node_cap`: its proportion of 90% of the cap.
pub(crate) fn proportional_share(active: usize, node_active: usize, node_cap: usize) -> usize {
    let target = node_cap - node_cap / 10;
    ((active as u128 * target as u128) / node_active.max(1) as u128) as usize
}

/// `retain` predicate that also tells a passivated actor to stop.
fn keep<A: Actor + Handler<Passivate>>(entry: &Entry<A>, stale: bool) -> bool
where
    A::Context: ToEnvelope<A, Passivate>,
{
    if stale || !entry.addr.connected() {
        // Not on a money path: a lost Passivate only leaves an idle actor running.
        entry.addr.do_send(Passivate);
        return false;
    }
    true
}

impl Actor for TenantSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.deps.config.supervisor_mailbox_capacity);
        self.deps
            .metrics
            .active_supervisors
            .fetch_add(1, Ordering::Relaxed);
        let every = self.deps.config.passivation_check_interval;
        if !every.is_zero() {
            ctx.run_interval(every, |act, _| {
                act.passivate_idle();
                act.note_idleness(Instant::now());
            });
        }
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.deps
            .metrics
            .active_supervisors
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl Handler<Retire> for TenantSupervisor {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Self::Context) {
        for entry in self.invoices.values() {
            entry.addr.do_send(Passivate);
        }
        for entry in self.payments.values() {
            entry.addr.do_send(Passivate);
        }
        ctx.stop();
    }
}

impl Handler<Trim> for TenantSupervisor {
    type Result = ();

    fn handle(&mut self, msg: Trim, _: &mut Self::Context) {
        let active = self.invoices.len() + self.payments.len();
        let keep = proportional_share(
            active,
            msg.node_active,
            self.deps.config.max_active_entities,
        );
        self.passivate_least_recent(active.saturating_sub(keep));
    }
}

impl Handler<NewInvoice> for TenantSupervisor {
    type Result = AtomicResponse<Self, Result<Pending<Invoice>, EngineError>>;

    /// Atomic, but never across a commit: only across reading the last number (rarely) and
    /// the fresh invoice actor's answer that it queued (or refused) the creation.
    fn handle(&mut self, msg: NewInvoice, _: &mut Self::Context) -> Self::Result {
        let (addr, booking) = self.invoice(msg.id, true, Addr::clone);
        let known = self.numbering.known();
        let (store, tenant) = (Arc::clone(&self.deps.store), self.tenant);
        // After a failed creation, read the last number only once every creation queued before
        // has resolved. The first read needs no wait: storage refuses a number taken meanwhile.
        let barrier = self
            .numbering
            .fence
            .is_tripped()
            .then(|| self.deps.audit.barrier(tenant));
        let last = async move {
            match (known, barrier) {
                (Some(last), _) => Ok((last, false)),
                (None, barrier) => {
                    if let Some(barrier) = barrier {
                        barrier.await?;
                    }
                    Ok((store.last_invoice_number(tenant).await?, true))
                }
            }
        };
        AtomicResponse::new(Box::pin(last.into_actor(self).then(
            move |last: Result<(u64, bool), EngineError>, act, _| {
                let (last, reloaded) = match last {
                    Ok(last) => last,
                    Err(err) => return done(Err(err)).into_future(),
                };
                if reloaded {
                    act.numbering = Numbering {
                        last: Some(last),
                        fence: Fence::new(),
                    };
                }
                let number = last + 1;
                let create = CreateInvoice {
                    number,
                    numbering: act.numbering.fence.clone(),
                    input: msg.input,
                    finalize: msg.finalize,
                    caller: msg.caller,
                };
                let queued = async move { addr.send(create).await };
                Box::pin(queued.into_actor(act).map(move |result, act, _| {
                    act.finished(booking);
                    match result {
                        Ok(Ok(pending)) => {
                            act.numbering.last = Some(number);
                            Ok(pending)
                        }
                        failed => {
                            // Refused before it was queued: the number stays free. An actor
                            // that died meanwhile leaves it unknown: read it again.
                            if failed.is_err() {
                                act.numbering.last = None;
                            }
                            if let Some(entry) = act.invoices.remove(&msg.id) {
                                entry.addr.do_send(Passivate);
                            }
                            failed?
                        }
                    }
                }))
            },
        )))
    }
}

impl Handler<ActiveEntities> for TenantSupervisor {
    type Result = usize;

    fn handle(&mut self, _: ActiveEntities, _: &mut Self::Context) -> usize {
        self.invoices.len() + self.payments.len()
    }
}
