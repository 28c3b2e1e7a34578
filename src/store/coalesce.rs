//! Point reads that arrive while a read is running go out together in the next one: one
//! statement and one round trip for the many keys that would otherwise take one each.
//!
//! The first caller to find no read running starts a task that reads everything queued, then
//! whatever queued meanwhile, until nothing waits. A caller that goes away only drops its
//! answer; the read it joined runs on.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use payrail_actors::ports::StoreError;
use tokio::sync::oneshot;

/// At most this many keys in one read.
pub(crate) const KEYS_PER_READ_MAX: usize = 256;

type Answer<V> = oneshot::Sender<Result<Option<V>, StoreError>>;

/// Keys waiting for the next read, and whether a task is reading.
pub(crate) struct Coalesced<K, V> {
    queue: Mutex<Queue<K, V>>,
}

struct Queue<K, V> {
    waiting: Vec<(K, Answer<V>)>,
    reading: bool,
}

impl<K, V> Default for Coalesced<K, V> {
    fn default() -> Self {
        Self {
            queue: Mutex::new(Queue {
                waiting: Vec::new(),
                reading: false,
            }),
        }
    }
}

impl<K, V> Coalesced<K, V> {
    fn lock(&self) -> MutexGuard<'_, Queue<K, V>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<K: Send + 'static, V: Send + 'static> Coalesced<K, V> {
    /// The value stored under `key`, read together with every key queued alongside it.
    /// `read` gets up to [`KEYS_PER_READ_MAX`] keys and answers the found ones by their
    /// position in what it got; a key it does not answer has no value. It runs on a task of
    /// its own (spawned on the caller's runtime).
    pub(crate) async fn get<R, Fut>(
        self: &Arc<Self>,
        key: K,
        read: R,
    ) -> Result<Option<V>, StoreError>
    where
        R: Fn(Vec<K>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<(usize, V)>, StoreError>> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let start = {
            let mut queue = self.lock();
            queue.waiting.push((key, answer));
            !std::mem::replace(&mut queue.reading, true)
        };
        if start {
            tokio::spawn(Arc::clone(self).drain(read));
        }
        answered
            .await
            .unwrap_or_else(|_| Err(StoreError::Unavailable("the read was stopped".into())))
    }

    async fn drain<R, Fut>(self: Arc<Self>, read: R)
    where
        R: Fn(Vec<K>) -> Fut,
        Fut: Future<Output = Result<Vec<(usize, V)>, StoreError>>,
    {
        let mut reading = Reading {
            queue: &self,
            done: false,
        };
        loop {
            let (keys, answers): (Vec<K>, Vec<Answer<V>>) = {
                let mut queue = self.lock();
                if queue.waiting.is_empty() {
                    queue.reading = false;
                    reading.done = true;
                    return;
                }
                let n = queue.waiting.len().min(KEYS_PER_READ_MAX);
                queue.waiting.drain(..n).unzip()
            };
            match read(keys).await {
                Ok(found) => {
                    let mut values: Vec<Option<V>> = answers.iter().map(|_| None).collect();
                    for (at, value) in found {
                        if let Some(slot) = values.get_mut(at) {
                            *slot = Some(value);
                        }
                    }
                    for (answer, value) in answers.into_iter().zip(values) {
                        let _ = answer.send(Ok(value));
                    }
                }
                Err(e) => {
                    for answer in answers {
                        let _ = answer.send(Err(e.clone()));
                    }
                }
            }
        }
    }
}

/// Held by the reading task: if the task ends without finding the queue empty (its runtime
/// shut down, or a read panicked), the keys still waiting are answered `Unavailable` (their
/// senders dropped) and the next caller starts a read again.
struct Reading<'a, K, V> {
    queue: &'a Coalesced<K, V>,
    done: bool,
}

impl<K, V> Drop for Reading<'_, K, V> {
    fn drop(&mut self) {
        if !self.done {
            let mut queue = self.queue.lock();
            queue.reading = false;
            queue.waiting.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::sync::Mutex as StdMutex;

    use tokio::sync::Semaphore;

    use super::*;

    /// A read that waits for a permit of `gate`, records the keys it got, and finds the even
    /// ones (value `k * 10`).
    macro_rules! gated_read {
        ($gate:expr, $reads:expr) => {{
            let (gate, reads) = ($gate.clone(), $reads.clone());
            move |keys: Vec<u32>| {
                let (gate, reads) = (gate.clone(), reads.clone());
                async move {
                    gate.acquire().await.unwrap().forget();
                    reads.lock().unwrap().push(keys.clone());
                    Ok(keys
                        .iter()
                        .enumerate()
                        .filter(|(_, k)| *k % 2 == 0)
                        .map(|(at, k)| (at, k * 10))
                        .collect::<Vec<_>>())
                }
            }
        }};
    }

    #[tokio::test]
    async fn keys_queued_during_a_read_share_the_next_one() {
        let coalesced = Arc::new(Coalesced::<u32, u32>::default());
        let gate = Arc::new(Semaphore::new(0));
        let reads = Arc::new(StdMutex::new(Vec::new()));
        let read = gated_read!(gate, reads);
        let get = |k: u32| {
            let (c, read) = (coalesced.clone(), read.clone());
            tokio::spawn(async move { c.get(k, read).await })
        };
        let first = get(0);
        // The first read has taken its key and waits at the gate.
        while !(coalesced.lock().reading && coalesced.lock().waiting.is_empty()) {
            tokio::task::yield_now().await;
        }
        let rest: Vec<_> = (1..=5).map(get).collect();
        while coalesced.lock().waiting.len() < 5 {
            tokio::task::yield_now().await;
        }
        gate.add_permits(2);
        assert_eq!(first.await.unwrap(), Ok(Some(0)));
        let mut answers = Vec::new();
        for caller in rest {
            answers.push(caller.await.unwrap().unwrap());
        }
        assert_eq!(answers, [None, Some(20), None, Some(40), None]);
        assert_eq!(*reads.lock().unwrap(), [vec![0], vec![1, 2, 3, 4, 5]]);
        assert!(!coalesced.lock().reading);
    }

    #[tokio::test]
    async fn a_failed_read_fails_its_keys_only() {
        let coalesced = Arc::new(Coalesced::<u32, u32>::default());
        let failing = |_: Vec<u32>| async { Err(StoreError::Unavailable("down".into())) };
        assert_eq!(
            coalesced.get(1, failing).await,
            Err(StoreError::Unavailable("down".into()))
        );
        let found = |keys: Vec<u32>| async move { Ok(vec![(0, keys[0] + 1)]) };
        assert_eq!(coalesced.get(1, found).await, Ok(Some(2)));
    }

    #[tokio::test]
    async fn a_read_that_panics_answers_its_keys_and_reading_starts_again() {
        let coalesced = Arc::new(Coalesced::<u32, u32>::default());
        let panics = |keys: Vec<u32>| async move {
            assert!(keys.is_empty(), "the read failed");
            Ok(Vec::new())
        };
        assert!(matches!(
            coalesced.get(1, panics).await,
            Err(StoreError::Unavailable(_))
        ));
        assert!(!coalesced.lock().reading);
        let found = |keys: Vec<u32>| async move { Ok(vec![(0, keys[0])]) };
        assert_eq!(coalesced.get(7, found).await, Ok(Some(7)));
    }

    #[tokio::test]
    async fn no_read_takes_more_than_the_most_keys() {
        let coalesced = Arc::new(Coalesced::<usize, usize>::default());
        let gate = Arc::new(Semaphore::new(0));
        let sizes = Arc::new(StdMutex::new(Vec::new()));
        let read = {
            let (gate, sizes) = (gate.clone(), sizes.clone());
            move |keys: Vec<usize>| {
                let (gate, sizes) = (gate.clone(), sizes.clone());
                async move {
                    gate.acquire().await.unwrap().forget();
                    sizes.lock().unwrap().push(keys.len());
                    Ok(keys.into_iter().enumerate().collect::<Vec<_>>())
                }
            }
        };
        let callers: Vec<_> = (0..KEYS_PER_READ_MAX + 10)
            .map(|k| {
                let (c, read) = (coalesced.clone(), read.clone());
                tokio::spawn(async move { c.get(k, read).await })
            })
            .collect();
        gate.add_permits(3);
        for (k, caller) in callers.into_iter().enumerate() {
            assert_eq!(caller.await.unwrap(), Ok(Some(k)));
        }
        let sizes = sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), KEYS_PER_READ_MAX + 10);
        assert!(sizes.iter().all(|&n| n <= KEYS_PER_READ_MAX), "{sizes:?}");
    }
}
