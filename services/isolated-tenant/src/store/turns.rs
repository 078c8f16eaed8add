//! Write turns on a single-writer database (SQLite): routine writes go before queued bulk work.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

/// Who is asking for a write turn on a single-writer database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Writer {
    /// A join, leave, owner write, provisioning or offboarding: someone is waiting on it.
    Routine,
    /// A bulk batch or a re-seal step: throughput work that yields to routine writers.
    Bulk,
}

/// Write turns on a single-writer database (SQLite), first come first served, except that
/// bulk work lets routine writers that are already waiting go first. A routine write then waits
/// for at most the one bulk transaction in progress; bulk work waits for a quiet moment, or
/// after [`Turns::BULK_PATIENCE`] yields takes its turn anyway so it cannot starve.
#[derive(Debug, Default)]
pub(super) struct Turns {
    lock: Arc<tokio::sync::Mutex<()>>,
    routine_waiting: AtomicUsize,
}

/// A routine writer's place among the waiting ones, given up when dropped: when its turn
/// comes, or when the request that waited is dropped first (its client went away). Counted
/// by hand, a cancelled waiter stayed counted, and bulk work kept yielding to it.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, SeqCst);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

impl Turns {
    /// How many times bulk work gives its turn to waiting routine writers before it keeps it.
    const BULK_PATIENCE: usize = 64;

    /// Waits for a write turn as `kind`; the turn lasts until the guard is dropped. Dropped
    /// while waiting, it leaves the queue as if it had never joined.
    pub(super) async fn take(&self, kind: Writer) -> tokio::sync::OwnedMutexGuard<()> {
        if kind == Writer::Routine {
            let _waiting = Waiting::new(&self.routine_waiting);
            return self.lock.clone().lock_owned().await;
        }
        for _ in 0..Self::BULK_PATIENCE {
            let turn = self.lock.clone().lock_owned().await;
            if self.routine_waiting.load(SeqCst) == 0 {
                return turn;
            }
            // The queue is fair: the routine writers already waiting get the lock before this
            // task asks again.
            drop(turn);
            tokio::task::yield_now().await;
        }
        self.lock.clone().lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::{poll_fn, Future};
    use std::pin::Pin;
    use std::task::Poll;

    /// Polls `f` once: whether it finished.
    async fn ready_at_once<F: Future>(f: &mut Pin<Box<F>>) -> bool {
        poll_fn(|cx| Poll::Ready(f.as_mut().poll(cx).is_ready())).await
    }

    #[tokio::test]
    async fn a_routine_writer_dropped_while_it_waits_leaves_no_place_in_the_queue() {
        let turns = Turns::default();
        let bulk_turn = turns.take(Writer::Bulk).await;
        let mut join = Box::pin(turns.take(Writer::Routine));
        assert!(!ready_at_once(&mut join).await, "waits for the bulk turn");
        assert_eq!(turns.routine_waiting.load(SeqCst), 1);

        // The join's client goes away while it waits.
        drop(join);
        assert_eq!(turns.routine_waiting.load(SeqCst), 0);

        // So the next bulk step takes its turn at once, yielding to no one.
        drop(bulk_turn);
        let mut next_bulk = Box::pin(turns.take(Writer::Bulk));
        assert!(ready_at_once(&mut next_bulk).await);
    }

    #[tokio::test]
    async fn a_waiting_routine_writer_goes_before_bulk_work() {
        let turns = Arc::new(Turns::default());
        let bulk_turn = turns.take(Writer::Bulk).await;
        let mut join = Box::pin(turns.take(Writer::Routine));
        assert!(!ready_at_once(&mut join).await);
        let mut bulk = Box::pin(turns.take(Writer::Bulk));
        assert!(!ready_at_once(&mut bulk).await);

        drop(bulk_turn);
        let join_turn = join.await;
        assert_eq!(turns.routine_waiting.load(SeqCst), 0);
        assert!(!ready_at_once(&mut bulk).await, "bulk waits for the join");
        drop(join_turn);
        drop(bulk.await);
    }
}
