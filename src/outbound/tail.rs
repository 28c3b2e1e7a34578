//! The end of a tenant's log, read once for all of its endpoints. Every endpoint of a tenant
//! sends the same events, mostly at about the same time: rather than each worker reading them
//! and building each body, the tenant's workers share one window of recent events, each with
//! its body as sent, and one read at a time extends it.
//!
//! The window holds every event of the tenant with `start < sequence <= end` (each read asks
//! for the events after `end`, and the log's sequences grow in commit order), so a worker
//! whose cursor lies inside it takes the next events from it without a read. A worker at the
//! window's end needs a read that began after it asked, since the commit that woke it may be
//! later than the last read: it waits for the read under way, if any, and then either finds
//! that a later read has answered for it or reads itself. A worker behind the window (an
//! endpoint far behind the others) reads on its own.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use payrail_actors::domain::{EventId, TenantId};
use payrail_actors::ports::StoreError;

use crate::http::views;
use crate::store::{Db, StoredEvent};

/// Events kept per tenant: a few rounds' worth, so that workers a round apart share reads.
pub(crate) const TAIL_EVENTS_MAX: usize = 256;

/// One event as every endpoint receives it.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) sequence: i64,
    pub(crate) id: EventId,
    /// The `webhook-id` header: the event id.
    pub(crate) webhook_id: String,
    pub(crate) event_type: &'static str,
    /// The event as `GET /api/events` shows it.
    pub(crate) body: Vec<u8>,
}

impl Outgoing {
    pub(crate) fn new(stored: &StoredEvent) -> Self {
        let body = match views::event(stored) {
            Ok(view) => serde_json::to_vec(&view).unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        Self {
            sequence: stored.sequence,
            id: stored.event.id,
            webhook_id: stored.event.id.to_string(),
            event_type: stored.event.event_type(),
            body,
        }
    }
}

/// Where a tail reads the log: the store (a fake in tests).
pub(crate) trait Source: Sync {
    /// The tenant's events after `cursor`, in commit order, at most `limit`.
    fn read(
        &self,
        tenant: TenantId,
        cursor: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Arc<Outgoing>>, StoreError>> + Send;
}

impl Source for Db {
    async fn read(
        &self,
        tenant: TenantId,
        cursor: i64,
        limit: usize,
    ) -> Result<Vec<Arc<Outgoing>>, StoreError> {
        Ok(self
            .events_after(tenant, cursor, limit)
            .await?
            .iter()
            .map(|e| Arc::new(Outgoing::new(e)))
            .collect())
    }
}

/// Events after a cursor, and whether they are all there were when the caller asked.
pub(crate) struct Batch {
    pub(crate) events: Vec<Arc<Outgoing>>,
    /// False when they came from the window without a read begun after the call: there may
    /// be more, and the caller asks again before it waits for the next commit.
    pub(crate) complete: bool,
}

struct Window {
    start: i64,
    end: i64,
    events: VecDeque<Arc<Outgoing>>,
    /// Reads begun so far, and the number of the last one that completed (reads run one at a
    /// time, in order).
    begun: u64,
    completed: u64,
}

impl Window {
    /// The window's events after `cursor` (at most `limit`), if it covers `cursor`.
    fn after(&self, cursor: i64, limit: usize) -> Option<Vec<Arc<Outgoing>>> {
        if cursor < self.start || cursor > self.end {
            return None;
        }
        let from = self.events.partition_point(|e| e.sequence <= cursor);
        Some(self.events.range(from..).take(limit).cloned().collect())
    }

    /// Appends what a read of the events after `end` found, keeping the newest events.
    fn extend(&mut self, read: &[Arc<Outgoing>]) {
        self.events.extend(read.iter().cloned());
        if let Some(last) = read.last() {
            self.end = last.sequence;
        }
        while self.events.len() > TAIL_EVENTS_MAX {
            if let Some(dropped) = self.events.pop_front() {
                self.start = dropped.sequence;
            }
        }
    }
}

/// The shared end of one tenant's log.
pub(crate) struct Tail {
    tenant: TenantId,
    window: Mutex<Window>,
    /// Held by the one read under way.
    reading: tokio::sync::Mutex<()>,
}

impl Tail {
    /// An empty window; the first read places it.
    pub(crate) fn new(tenant: TenantId) -> Self {
        Self {
            tenant,
            window: Mutex::new(Window {
                start: i64::MAX,
                end: i64::MAX,
                events: VecDeque::new(),
                begun: 0,
                completed: 0,
            }),
            reading: tokio::sync::Mutex::new(()),
        }
    }

    fn window(&self) -> MutexGuard<'_, Window> {
        // Every update of the window is complete before its lock is released.
        self.window.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The tenant's events after `cursor`, in commit order, at most `limit`.
    pub(crate) async fn after(
        &self,
        source: &impl Source,
        cursor: i64,
        limit: usize,
    ) -> Result<Batch, StoreError> {
        let ticket = {
            let window = self.window();
            match window.after(cursor, limit) {
                Some(events) if !events.is_empty() => {
                    return Ok(Batch {
                        events,
                        complete: false,
                    })
                }
                // Behind the window: a read of its own, which the window does not keep.
                None if cursor < window.start && window.start != i64::MAX => None,
                _ => Some(window.begun),
            }
        };
        let Some(ticket) = ticket else {
            return Ok(Batch {
                events: source.read(self.tenant, cursor, limit).await?,
                complete: true,
            });
        };
        let _reading = self.reading.lock().await;
        let read_number = {
            let mut window = self.window();
            match window.after(cursor, limit) {
                // A read begun after the call has completed: it answers for this caller.
                Some(events) if window.completed > ticket => {
                    return Ok(Batch {
                        events,
                        complete: true,
                    })
                }
                // The read under way when the caller came found more.
                Some(events) if !events.is_empty() => {
                    return Ok(Batch {
                        events,
                        complete: false,
                    })
                }
                _ => {}
            }
            window.begun += 1;
            window.begun
        };
        let events = source.read(self.tenant, cursor, limit).await?;
        let mut window = self.window();
        window.completed = read_number;
        if window.start == i64::MAX || cursor > window.end {
            // The first read, or a worker ahead of everything read so far: the window
            // starts again at this cursor.
            window.start = cursor;
            window.end = cursor;
            window.events.clear();
        }
        if window.end == cursor {
            window.extend(&events);
        }
        Ok(Batch {
            events,
            complete: true,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// A log of `len` events (sequences 1..=len) that counts its reads; each read takes
    /// `delay` and sees the log as it was when the read began.
    struct Log {
        len: Mutex<i64>,
        reads: AtomicUsize,
        delay: Duration,
    }

    impl Log {
        fn new(len: i64, delay: Duration) -> Self {
            Self {
                len: Mutex::new(len),
                reads: AtomicUsize::new(0),
                delay,
            }
        }

        fn commit(&self, n: i64) {
            *self.len.lock().unwrap() += n;
        }

        fn reads(&self) -> usize {
            self.reads.load(Ordering::SeqCst)
        }
    }

    impl Source for Log {
        async fn read(
            &self,
            _: TenantId,
            cursor: i64,
            limit: usize,
        ) -> Result<Vec<Arc<Outgoing>>, StoreError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            let len = *self.len.lock().unwrap();
            tokio::time::sleep(self.delay).await;
            Ok((cursor + 1..=len)
                .take(limit)
                .map(|sequence| {
                    let id = EventId::new();
                    Arc::new(Outgoing {
                        sequence,
                        id,
                        webhook_id: id.to_string(),
                        event_type: "invoice.created",
                        body: Vec::new(),
                    })
                })
                .collect())
        }
    }

    fn sequences(batch: &Batch) -> Vec<i64> {
        batch.events.iter().map(|e| e.sequence).collect()
    }

    #[tokio::test]
    async fn workers_at_the_end_share_reads() {
        let log = Log::new(5, Duration::from_millis(20));
        let tail = Tail::new(TenantId::new());
        let batches = futures::future::join_all((0..10).map(|_| tail.after(&log, 0, 64))).await;
        for batch in batches {
            let batch = batch.unwrap();
            assert_eq!(sequences(&batch), [1, 2, 3, 4, 5]);
        }
        // The first read, and at most one more for the callers that came while it ran.
        assert!(log.reads() <= 2, "{} reads", log.reads());
    }

    #[tokio::test]
    async fn a_worker_inside_the_window_reads_nothing_but_asks_again() {
        let log = Log::new(5, Duration::ZERO);
        let tail = Tail::new(TenantId::new());
        assert!(tail.after(&log, 0, 64).await.unwrap().complete);
        let batch = tail.after(&log, 2, 2).await.unwrap();
        assert_eq!((sequences(&batch), batch.complete), (vec![3, 4], false));
        assert_eq!(log.reads(), 1);
        // At the window's end: a read of its own, which finds what committed meanwhile.
        log.commit(2);
        let batch = tail.after(&log, 5, 64).await.unwrap();
        assert_eq!((sequences(&batch), batch.complete), (vec![6, 7], true));
        assert_eq!(log.reads(), 2);
    }

    #[tokio::test]
    async fn a_read_begun_before_the_call_does_not_answer_for_it() {
        let log = Arc::new(Log::new(3, Duration::from_millis(50)));
        let tail = Arc::new(Tail::new(TenantId::new()));
        let first = tokio::spawn({
            let (log, tail) = (log.clone(), tail.clone());
            async move { tail.after(&*log, 0, 64).await.unwrap() }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        // Commits while the first read runs; a caller woken by them must not stop at it.
        log.commit(2);
        let second = tail.after(&*log, 0, 64).await.unwrap();
        assert_eq!(sequences(&first.await.unwrap()), [1, 2, 3]);
        if second.complete {
            assert_eq!(sequences(&second), [1, 2, 3, 4, 5]);
        } else {
            assert_eq!(sequences(&second), [1, 2, 3]);
            let rest = tail.after(&*log, 3, 64).await.unwrap();
            assert_eq!((sequences(&rest), rest.complete), (vec![4, 5], true));
        }
    }

    #[tokio::test]
    async fn a_worker_behind_the_window_reads_alone_and_one_ahead_moves_it() {
        let total = TAIL_EVENTS_MAX as i64 + 10;
        let log = Log::new(total, Duration::ZERO);
        let tail = Tail::new(TenantId::new());
        let mut cursor = 0;
        while cursor < total {
            let batch = tail.after(&log, cursor, 64).await.unwrap();
            cursor = batch.events.last().map_or(cursor, |e| e.sequence);
        }
        let reads = log.reads();
        // Sequence 1 has left the window: a read of its own, the window stays.
        let behind = tail.after(&log, 0, 3).await.unwrap();
        assert_eq!((sequences(&behind), behind.complete), (vec![1, 2, 3], true));
        let inside = tail.after(&log, total - 2, 64).await.unwrap();
        assert_eq!(sequences(&inside), [total - 1, total]);
        assert_eq!(log.reads(), reads + 1);
        // A worker ahead of the window (another node moved its cursor) starts it afresh.
        log.commit(20);
        let ahead = tail.after(&log, total + 10, 64).await.unwrap();
        assert_eq!(
            sequences(&ahead),
            (total + 11..=total + 20).collect::<Vec<_>>()
        );
        let inside = tail.after(&log, total + 15, 64).await.unwrap();
        assert_eq!(
            sequences(&inside),
            (total + 16..=total + 20).collect::<Vec<_>>()
        );
        assert_eq!(log.reads(), reads + 2);
    }
}
