//! Each thread's outbox: the units its actors decided, held until the thread's ready actors
//! have run and then left in their writers' inboxes, once per writer.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use super::inbox::Link;
use super::{Queued, Waiter};
use crate::domain::TenantId;
use crate::ports::{DedupKey, Unit};

/// Units decided on one thread and not yet sent to one writer.
struct Outgoing {
    writer: Arc<Link>,
    units: Vec<Queued>,
    /// Per tenant, the unit among `units` that gathers its ignored gateway events' records
    /// (`WriterHandle::record_ignored`).
    records: Vec<(TenantId, usize)>,
}

type Outbox = Vec<Outgoing>;

thread_local! {
    /// Units decided on this thread and not yet handed to their writer, by writer. They go
    /// together once the thread's ready actors have run: a webhook request's hundred payments
    /// (or a burst of single requests) wake the writer's thread once, not once per unit.
    static OUTBOX: RefCell<Outbox> = const { RefCell::new(Vec::new()) };
    /// How many units this thread last sent a writer in one burst: a new burst's list starts
    /// with room for as many, rather than growing (and copying its units) as it fills.
    static LAST_BURST: Cell<usize> = const { Cell::new(0) };
}

/// Puts `unit` in this thread's outbox for `writer`, behind every unit put there before it.
/// The first unit of a burst spawns the task that sends the outbox; it runs after the tasks
/// already woken on this thread (the other actors of the burst). All units of one tenant are
/// decided on its supervisor's thread, so each tenant's units keep their order.
/// A unit that gathers records (`gathers`) is its tenant's for the rest of the burst.
pub(super) fn hand_over(writer: &Arc<Link>, unit: Unit, waiter: Waiter, gathers: bool) {
    let first = OUTBOX.with_borrow_mut(|outbox| {
        let first = outbox.is_empty();
        let at = match position(outbox, writer) {
            Some(at) => at,
            None => {
                outbox.push(Outgoing {
                    writer: Arc::clone(writer),
                    units: Vec::with_capacity(LAST_BURST.get()),
                    records: Vec::new(),
                });
                outbox.len() - 1
            }
        };
        let outgoing = &mut outbox[at];
        if let (true, Some(tenant)) = (gathers, unit.tenant_id) {
            outgoing.records.push((tenant, outgoing.units.len()));
        }
        outgoing.units.push((unit, waiter));
        first
    });
    if first {
        actix::spawn(async {
            for outgoing in OUTBOX.take() {
                LAST_BURST.set(outgoing.units.len());
                outgoing.writer.deliver(outgoing.units);
            }
        });
    }
}

/// Adds `key` to the unit gathering `tenant`'s records for `writer` in this thread's outbox;
/// gives it back if there is none yet.
pub(super) fn gather(writer: &Arc<Link>, tenant: TenantId, key: DedupKey) -> Result<(), DedupKey> {
    OUTBOX.with_borrow_mut(|outbox| {
        let gathering = position(outbox, writer)
            .and_then(|at| outbox.get_mut(at))
            .and_then(|o| {
                let at = o
                    .records
                    .iter()
                    .find_map(|&(t, at)| (t == tenant).then_some(at))?;
                o.units.get_mut(at)
            });
        match gathering {
            Some((unit, _)) => {
                unit.dedup_keys.push(key);
                Ok(())
            }
            None => Err(key),
        }
    })
}

/// Where `writer`'s units are in `outbox`, if it has any.
fn position(outbox: &Outbox, writer: &Arc<Link>) -> Option<usize> {
    outbox.iter().position(|o| Arc::ptr_eq(&o.writer, writer))
}
