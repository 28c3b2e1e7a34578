//! An entity actor's answers: a step decided at once or run before the actor's next message
//! (`Step`), the reply it becomes (`Reply`), and the answer a caller awaits once the units it
//! rests on are durable (`Pending`).

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use actix::dev::{MessageResponse, OneshotSender};
use actix::prelude::*;
use futures::future::BoxFuture;

use super::Durable;
use crate::error::EngineError;

/// A command's answer once its unit is queued: resolves when that unit is durable. The actor
/// has already moved on to its next command by then. An answer known as it is given (a read, a
/// duplicate or a stale event behind units already durable) is held as it is, without a
/// future of its own.
pub struct Pending<T>(Answer<T>);

enum Answer<T> {
    Known(Option<Result<T, EngineError>>),
    Waiting(BoxFuture<'static, Result<T, EngineError>>),
}

impl<T> Pending<T> {
    pub(crate) fn known(result: Result<T, EngineError>) -> Self {
        Self(Answer::Known(Some(result)))
    }

    pub(crate) fn waiting(
        future: impl Future<Output = Result<T, EngineError>> + Send + 'static,
    ) -> Self {
        Self(Answer::Waiting(Box::pin(future)))
    }
}

// Nothing in a `Pending` is pinned in place: a known answer is moved out whole, and a
// waiting one is boxed.
impl<T> Unpin for Pending<T> {}

impl<T> Future for Pending<T> {
    type Output = Result<T, EngineError>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            Answer::Known(answer) => {
                Poll::Ready(answer.take().unwrap_or_else(|| {
                    Err(EngineError::Unavailable("answer already taken".into()))
                }))
            }
            Answer::Waiting(future) => future.as_mut().poll(cx),
        }
    }
}

/// The answer of a command sent to an actor, once its unit is durable.
pub(crate) async fn durably<T>(
    sent: Result<Result<Pending<T>, EngineError>, MailboxError>,
) -> Result<T, EngineError> {
    sent??.await
}

/// Answers `value` once `durable` has resolved.
pub(crate) fn when_durable<T: Send + 'static>(durable: Durable, value: T) -> Pending<T> {
    after(durable, move |outcome| outcome.map(|()| value))
}

/// Answers `value` once `tail` (the last unit queued before the read) has resolved. If that
/// unit failed, the value may show what never became durable: the read is refused as
/// `Unavailable`, which a reader simply asks again of the reloaded actor.
pub(crate) fn read_when_durable<T: Send + 'static>(tail: Durable, value: T) -> Pending<T> {
    after(tail, move |outcome| {
        outcome
            .map(|()| value)
            .map_err(|_| EngineError::Unavailable("a queued change failed; reloading".into()))
    })
}

/// `answer` made of `durable`'s outcome: now if it is known, else once it is.
fn after<T>(
    durable: Durable,
    answer: impl FnOnce(Result<(), EngineError>) -> Result<T, EngineError> + Send + 'static,
) -> Pending<T> {
    match durable.outcome() {
        Some(outcome) => Pending::known(answer(outcome)),
        None => Pending::waiting(async move { answer(durable.await) }),
    }
}

/// An entity actor's answer: given as the handler returns when its step was decided at once
/// (`Step::Done`), else once the step's future is done, the actor handling nothing else
/// meanwhile (it must reload first or ask another actor; never a commit).
pub enum Reply<A: Actor, T> {
    Now(Result<T, EngineError>),
    Atomic(AtomicResponse<A, Result<T, EngineError>>),
}

impl<A, M, T> MessageResponse<A, M> for Reply<A, T>
where
    A: Actor<Context = Context<A>>,
    M: Message<Result = Result<T, EngineError>>,
    T: 'static,
{
    fn handle(self, ctx: &mut Context<A>, tx: Option<OneshotSender<M::Result>>) {
        match self {
            // A caller that went away no longer needs its answer.
            Self::Now(result) => {
                if let Some(tx) = tx {
                    let _ = tx.send(result);
                }
            }
            Self::Atomic(response) => {
                <AtomicResponse<A, M::Result> as MessageResponse<A, M>>::handle(response, ctx, tx)
            }
        }
    }
}

impl<A: Actor, T: 'static> From<Step<A, T>> for Reply<A, T> {
    fn from(step: Step<A, T>) -> Self {
        match step {
            Step::Done(result) => Self::Now(result),
            Step::Then(future) => Self::Atomic(AtomicResponse::new(future)),
        }
    }
}

/// What an entity actor runs once its state is fresh: decided at once (no future, no
/// allocation), or a future the actor runs before its next message.
pub(crate) enum Step<A: Actor, T> {
    Done(Result<T, EngineError>),
    Then(ResponseActFuture<A, Result<T, EngineError>>),
}

impl<A: Actor, T: 'static> Step<A, T> {
    /// The step as a future, for a step chained after another.
    pub(crate) fn into_future(self) -> ResponseActFuture<A, Result<T, EngineError>> {
        match self {
            Self::Done(result) => Box::pin(actix::fut::ready(result)),
            Self::Then(future) => future,
        }
    }

    /// `then` applied to the step's result: at once for a decided step.
    pub(crate) fn map_result<U: 'static>(
        self,
        then: impl FnOnce(Result<T, EngineError>) -> Result<U, EngineError> + 'static,
    ) -> Step<A, U> {
        match self {
            Self::Done(result) => Step::Done(then(result)),
            Self::Then(future) => {
                Step::Then(Box::pin(future.map(move |result, _, _| then(result))))
            }
        }
    }

    /// `then` applied to the step's result, with the actor: at once for a decided step.
    pub(crate) fn map<U: 'static>(
        self,
        act: &mut A,
        ctx: &mut A::Context,
        then: impl FnOnce(Result<T, EngineError>, &mut A, &mut A::Context) -> Result<U, EngineError>
            + 'static,
    ) -> Step<A, U> {
        match self {
            Self::Done(result) => Step::Done(then(result, act, ctx)),
            Self::Then(future) => Step::Then(Box::pin(future.map(then))),
        }
    }
}

/// A step that is already decided.
pub(crate) fn done<A: Actor, T>(result: Result<T, EngineError>) -> Step<A, T> {
    Step::Done(result)
}

/// A step that waits for `future`.
pub(crate) fn later<A: Actor, T>(
    future: impl ActorFuture<A, Output = Result<T, EngineError>> + 'static,
) -> Step<A, T> {
    Step::Then(Box::pin(future))
}

/// A step that is already decided; an error also stops the actor (after answering), since an
/// actor with nothing (or nothing valid) loaded should not linger.
pub(crate) fn done_then_stop<A, T>(result: Result<T, EngineError>) -> Step<A, T>
where
    A: Actor<Context = Context<A>>,
    T: 'static,
{
    let ready = actix::fut::ready(result);
    later(ActorFutureExt::map(
        ready,
        |result, _, ctx: &mut Context<A>| {
            if result.is_err() {
                ctx.stop();
            }
            result
        },
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use futures::FutureExt as _;

    use super::super::durable::Wakes;
    use super::*;

    #[test]
    fn an_answer_known_when_given_is_ready_at_once_and_taken_once() {
        let mut read = read_when_durable(Durable::settled(Ok(())), 7);
        assert_eq!((&mut read).now_or_never(), Some(Ok(7)));
        assert!(matches!(
            read.now_or_never(),
            Some(Err(EngineError::Unavailable(_)))
        ));
        // Behind a unit that failed, a read is refused, not answered with what never held.
        let failed = Durable::settled(Err(EngineError::Unavailable("lost".into())));
        assert!(matches!(
            read_when_durable(failed, 7).now_or_never(),
            Some(Err(EngineError::Unavailable(reason))) if reason.contains("reloading")
        ));
    }

    #[tokio::test]
    async fn an_answer_behind_a_queued_unit_waits_for_it() {
        let (durable, settle) = Durable::queued();
        let mut answer = when_durable(durable, "done");
        assert!((&mut answer).now_or_never().is_none());
        settle.settle(Ok(()), &mut Wakes::default());
        assert_eq!(answer.await, Ok("done"));
    }
}
