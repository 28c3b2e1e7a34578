//! `Durable`: when a queued unit is durable, awaited by the caller and by the actor's own
//! follow-up work alike.
//!
//! One shared cell per unit, settled once by its writer: a unit's outcome used to cross a
//! oneshot channel into a boxed future made shareable by `futures::Shared`, four allocations
//! per unit and a lock-guarded waker slab besides, for one result read by one or two waiters.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use crate::error::EngineError;
use crate::ports::StoreError;

/// Resolves once a queued unit is durable, or with the reason it is not. Cloneable: every
/// clone resolves with the same outcome.
#[derive(Debug, Clone)]
pub struct Durable(Inner);

#[derive(Debug, Clone)]
enum Inner {
    /// Known when made: nothing to write, or refused before it was queued.
    Settled(Result<(), EngineError>),
    Queued(Arc<Cell>),
}

#[derive(Debug, Default)]
struct Cell(Mutex<State>);

#[derive(Debug)]
enum State {
    /// The tasks to wake when the outcome is known.
    Waiting(Vec<Waker>),
    Settled(Result<(), EngineError>),
}

impl Default for State {
    fn default() -> Self {
        Self::Waiting(Vec::new())
    }
}

impl Cell {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The lock guards a plain value that every step leaves whole.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Durable {
    /// Already resolved with `result`.
    pub fn settled(result: Result<(), EngineError>) -> Self {
        Self(Inner::Settled(result))
    }

    /// The outcome, if it is known already.
    pub fn outcome(&self) -> Option<Result<(), EngineError>> {
        match &self.0 {
            Inner::Settled(result) => Some(result.clone()),
            Inner::Queued(cell) => match &*cell.state() {
                State::Settled(result) => Some(result.clone()),
                State::Waiting(_) => None,
            },
        }
    }

    /// A unit's outcome still to come, and where its writer settles it.
    pub(crate) fn queued() -> (Self, Settle) {
        let cell = Arc::new(Cell::default());
        (Self(Inner::Queued(Arc::clone(&cell))), Settle(Some(cell)))
    }
}

impl Future for Durable {
    type Output = Result<(), EngineError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let cell = match &self.0 {
            Inner::Settled(result) => return Poll::Ready(result.clone()),
            Inner::Queued(cell) => cell,
        };
        let mut state = cell.state();
        match &mut *state {
            State::Settled(result) => Poll::Ready(result.clone()),
            State::Waiting(wakers) => {
                if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

/// The writer's end of a `Durable`: settles it once. Dropped unsettled (a writer stopping
/// with units still queued), it settles it as unavailable, so no waiter waits forever.
#[derive(Debug)]
pub(crate) struct Settle(Option<Arc<Cell>>);

impl Settle {
    /// Settles with `result`, and leaves the tasks to wake in `wakes`.
    pub(crate) fn settle(mut self, result: Result<(), StoreError>, wakes: &mut Wakes) {
        self.settle_with(result.map_err(EngineError::from), wakes);
    }

    fn settle_with(&mut self, result: Result<(), EngineError>, wakes: &mut Wakes) {
        let Some(cell) = self.0.take() else {
            return;
        };
        let waiting = std::mem::replace(&mut *cell.state(), State::Settled(result));
        if let State::Waiting(wakers) = waiting {
            wakes.0.extend(wakers);
        }
    }
}

impl Drop for Settle {
    fn drop(&mut self) {
        // Settled already, as nearly every one is: its error is not even made.
        if self.0.is_some() {
            let unavailable = EngineError::Unavailable("audit writer stopped".into());
            self.settle_with(Err(unavailable), &mut Wakes::default());
        }
    }
}

/// The tasks that units settled together wait on, woken when this is dropped, once every one
/// of those units is settled. A task awaiting several of them (a webhook request's events)
/// then finds them all settled when it first runs, instead of being woken, and running ahead
/// of the writer, once for each.
#[derive(Debug, Default)]
pub(crate) struct Wakes(Vec<Waker>);

impl Drop for Wakes {
    fn drop(&mut self) {
        self.0.drain(..).for_each(Waker::wake);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_clone_resolves_with_the_outcome_settled_later() {
        let (durable, settle) = Durable::queued();
        let waiters: Vec<_> = (0..3).map(|_| tokio::spawn(durable.clone())).collect();
        tokio::task::yield_now().await;
        settle.settle(
            Err(StoreError::Fenced("an earlier unit failed".into())),
            &mut Wakes::default(),
        );
        for waiter in waiters {
            assert!(matches!(
                waiter.await,
                Ok(Err(EngineError::Storage(StoreError::Fenced(_))))
            ));
        }
        assert!(matches!(
            durable.await,
            Err(EngineError::Storage(StoreError::Fenced(_)))
        ));
    }

    #[tokio::test]
    async fn a_clone_made_after_settling_resolves_at_once() {
        let (durable, settle) = Durable::queued();
        settle.settle(Ok(()), &mut Wakes::default());
        assert_eq!(durable.clone().await, Ok(()));
        assert_eq!(Durable::settled(Ok(())).await, Ok(()));
    }

    #[test]
    fn the_outcome_is_known_once_settled_and_not_before() {
        let (durable, settle) = Durable::queued();
        assert_eq!(durable.outcome(), None);
        settle.settle(
            Err(StoreError::Unavailable("down".into())),
            &mut Wakes::default(),
        );
        assert!(matches!(
            durable.outcome(),
            Some(Err(EngineError::Storage(StoreError::Unavailable(_))))
        ));
        assert_eq!(Durable::settled(Ok(())).outcome(), Some(Ok(())));
    }

    /// Counts the times it is woken.
    #[derive(Default)]
    struct Count(std::sync::atomic::AtomicUsize);

    impl futures::task::ArcWake for Count {
        fn wake_by_ref(count: &Arc<Self>) {
            count.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn units_settled_together_wake_their_tasks_once_all_are_settled() {
        let count = Arc::new(Count::default());
        let waker = futures::task::waker(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        let woken = || count.0.load(std::sync::atomic::Ordering::SeqCst);
        let (mut first, settle_first) = Durable::queued();
        let (mut second, settle_second) = Durable::queued();
        assert!(Pin::new(&mut first).poll(&mut cx).is_pending());
        assert!(Pin::new(&mut second).poll(&mut cx).is_pending());

        let mut wakes = Wakes::default();
        settle_first.settle(Ok(()), &mut wakes);
        assert_eq!(woken(), 0, "woken before the second unit settled");
        // Polled now, the first is settled already; the second still waits.
        assert_eq!(Pin::new(&mut first).poll(&mut cx), Poll::Ready(Ok(())));
        assert!(Pin::new(&mut second).poll(&mut cx).is_pending());
        settle_second.settle(Ok(()), &mut wakes);
        assert_eq!(woken(), 0);
        drop(wakes);
        assert_eq!(woken(), 2, "each waiting poll's waker is woken once");
        assert_eq!(Pin::new(&mut second).poll(&mut cx), Poll::Ready(Ok(())));
    }

    #[tokio::test]
    async fn an_outcome_never_settled_is_unavailable_not_pending_forever() {
        let (durable, settle) = Durable::queued();
        let waiter = tokio::spawn(durable.clone());
        tokio::task::yield_now().await;
        drop(settle);
        assert!(matches!(waiter.await, Ok(Err(EngineError::Unavailable(_)))));
        assert!(matches!(durable.await, Err(EngineError::Unavailable(_))));
    }
}
