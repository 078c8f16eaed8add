//! Write turns on a single-writer database (SQLite): routine writes go before queued bulk work.

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
    routine_waiting: std::sync::atomic::AtomicUsize,
}

impl Turns {
    /// How many times bulk work gives its turn to waiting routine writers before it keeps it.
    const BULK_PATIENCE: usize = 64;

    pub(super) async fn take(&self, kind: Writer) -> tokio::sync::OwnedMutexGuard<()> {
        use std::sync::atomic::Ordering::SeqCst;
        if kind == Writer::Routine {
            self.routine_waiting.fetch_add(1, SeqCst);
            let turn = self.lock.clone().lock_owned().await;
            self.routine_waiting.fetch_sub(1, SeqCst);
            return turn;
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
