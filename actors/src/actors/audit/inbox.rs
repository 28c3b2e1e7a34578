//! Each writer's inbox: where the threads' outboxes leave units for it. A writer is woken only
//! when it would not look again on its own: while a batch is in flight it takes what arrived
//! once the batch returns, so a burst that lands meanwhile costs its thread no wake-up call
//! and the writer's thread no extra turn.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use actix::prelude::*;

use super::{AuditActor, Queued};
use crate::ports::EventStore;

/// Units handed to one writer and not yet taken by it.
#[derive(Default)]
pub(super) struct Inbox {
    units: Vec<Queued>,
    /// The writer will look here again without being told: a batch of its is in flight, a
    /// flush is scheduled, or a `Take` is on its way to it.
    watching: bool,
    /// The writer has stopped: units left now are dropped, which answers them unavailable.
    closed: bool,
}

/// Wakes a writer to take what its inbox holds.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Take;

/// How the threads reach one writer: its inbox, and its address to wake it.
pub(super) struct Link {
    addr: Addr<AuditActor>,
    pub(super) inbox: Shared,
    store: Arc<dyn EventStore>,
}

/// A writer's inbox as the writer and its link share it.
pub(super) type Shared = Arc<Mutex<Inbox>>;

fn lock(inbox: &Shared) -> MutexGuard<'_, Inbox> {
    // Nothing panics while holding it; a poisoned lock still guards whole values.
    inbox.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Link {
    pub(super) fn new(addr: Addr<AuditActor>, inbox: Shared, store: Arc<dyn EventStore>) -> Self {
        Self { addr, inbox, store }
    }

    /// Leaves `units` behind every unit left before them, waking the writer if it is idle.
    /// The store renders their rows first, on this thread, while the writer's batch before
    /// them commits.
    pub(super) fn deliver(&self, units: Vec<Queued>) {
        for (unit, _) in &units {
            self.store.prepare(unit);
        }
        let (wake, refused) = {
            let mut inbox = lock(&self.inbox);
            if inbox.closed {
                (false, units)
            } else {
                join(&mut inbox.units, units);
                (!std::mem::replace(&mut inbox.watching, true), Vec::new())
            }
        };
        if wake && self.addr.try_send(Take).is_err() {
            // The writer stopped: close its inbox. Dropping the units trips their fences and
            // answers them `Unavailable`.
            drop(close(&self.inbox));
        }
        drop(refused);
    }
}

/// Puts `units` behind those in `queue`; into an empty queue, as they are, without a copy.
pub(super) fn join(queue: &mut Vec<Queued>, units: Vec<Queued>) {
    if queue.is_empty() {
        *queue = units;
    } else {
        queue.extend(units);
    }
}

/// What the writer does with its inbox when it looks.
pub(super) enum Look {
    /// Take the units, and keep watching.
    Take,
    /// Nothing else to do: take the units, and if there are none, stop watching, so that
    /// the next delivery wakes it.
    TakeOrRest,
}

/// The units `inbox` holds, taken by its writer.
pub(super) fn take(inbox: &Shared, look: Look) -> Vec<Queued> {
    let mut inbox = lock(inbox);
    let units = std::mem::take(&mut inbox.units);
    if units.is_empty() && matches!(look, Look::TakeOrRest) {
        inbox.watching = false;
    }
    units
}

/// Closes `inbox` as its writer stops, giving back what it held.
pub(super) fn close(inbox: &Shared) -> Vec<Queued> {
    let mut inbox = lock(inbox);
    inbox.closed = true;
    std::mem::take(&mut inbox.units)
}

/// Whether `inbox` holds units.
pub(super) fn holds_units(inbox: &Shared) -> bool {
    !lock(inbox).units.is_empty()
}

/// Whether the writer of `inbox` will look at it again without being woken.
#[cfg(test)]
pub(super) fn is_watched(inbox: &Shared) -> bool {
    lock(inbox).watching
}

/// Whether the writer of `inbox` has stopped.
#[cfg(test)]
pub(super) fn is_closed(inbox: &Shared) -> bool {
    lock(inbox).closed
}
