//! Write turns on a single-writer database (SQLite): routine writes go before queued bulk work.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

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
#[derive(Debug)]
pub(super) struct Turns {
    lock: Arc<tokio::sync::Mutex<()>>,
    routine_waiting: AtomicUsize,
    /// How many operations of a bulk batch the next bulk turn applies ([`bulk_slice_after`]).
    bulk_slice: AtomicUsize,
}

impl Default for Turns {
    fn default() -> Self {
        Self {
            lock: Arc::default(),
            routine_waiting: AtomicUsize::new(0),
            bulk_slice: AtomicUsize::new(BULK_SLICE_FIRST),
        }
    }
}

/// How long one bulk write turn should last: a routine write that arrives during one waits for
/// at most about this long. Shorter turns cost throughput (each is a transaction that reads
/// its groups and people and commits); longer ones are the join's tail.
pub(super) const BULK_TURN: Duration = Duration::from_millis(8);
/// Operations in the first bulk turn, before any has been timed.
const BULK_SLICE_FIRST: usize = 100;
/// The fewest operations in a bulk turn: below this a turn is mostly its fixed cost.
const BULK_SLICE_MIN: usize = 16;
/// The most operations in a bulk turn.
const BULK_SLICE_MAX: usize = 2_000;

/// How many operations the next bulk turn should apply, given that the last applied `ops` in
/// `took`: the rate it showed, over [`BULK_TURN`], moved at most halfway from `ops` (so one
/// slow commit does not shrink turns to nothing), within [`BULK_SLICE_MIN`] and
/// [`BULK_SLICE_MAX`].
pub(super) fn bulk_slice_after(ops: usize, took: Duration) -> usize {
    let ops = ops.max(1);
    let fits = if took.is_zero() {
        BULK_SLICE_MAX
    } else {
        let rate = ops as f64 / took.as_secs_f64();
        (rate * BULK_TURN.as_secs_f64()) as usize
    };
    let next = fits.clamp(ops / 2, ops.saturating_mul(2));
    next.clamp(BULK_SLICE_MIN, BULK_SLICE_MAX)
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

    /// How many operations of a bulk batch the next bulk turn applies.
    pub(super) fn bulk_slice(&self) -> usize {
        self.bulk_slice.load(SeqCst)
    }

    /// Records that a bulk turn applied `ops` operations in `took`, sizing the next.
    pub(super) fn bulk_turn_took(&self, ops: usize, took: Duration) {
        self.bulk_slice.store(bulk_slice_after(ops, took), SeqCst);
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

    #[test]
    fn bulk_turns_are_sized_to_last_about_the_turn_target() {
        // 100 operations in 16 ms: 50 fit in 8 ms.
        assert_eq!(bulk_slice_after(100, Duration::from_millis(16)), 50);
        // 100 in 4 ms: 200 fit.
        assert_eq!(bulk_slice_after(100, Duration::from_millis(4)), 200);
        // One very slow commit halves the turn at most; a very fast one doubles it at most.
        assert_eq!(bulk_slice_after(100, Duration::from_secs(2)), 50);
        assert_eq!(bulk_slice_after(100, Duration::from_micros(1)), 200);
        // Within bounds, whatever was measured.
        assert_eq!(bulk_slice_after(10, Duration::from_secs(1)), BULK_SLICE_MIN);
        assert_eq!(bulk_slice_after(1_900, Duration::ZERO), BULK_SLICE_MAX);
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
