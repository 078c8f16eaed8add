//! Group commit on a single-writer database (SQLite): routine writes that wait for the write
//! turn at the same moment are run by one of them, the leader, in one transaction, each in a
//! savepoint of its own, and committed once. Each still gets its own answer, and one that
//! fails is rolled back to its savepoint alone.
//!
//! Without it, eight people joining at once take eight turns, eight `BEGIN`s and eight commits
//! one after another, and the turn, not the machine, limits the rate.
//!
//! # What a transaction ties together
//!
//! A transaction's rows are written together (one commit in SQLite's log), so a copy of the
//! files could tie them to each other. Routine writes about *different* people may share a
//! transaction: that says only that they happened at the same moment, as the log's order says
//! anyway. Two writes about the *same* person never do: the second waits for the next
//! transaction ([`pick`]), so a person's memberships of two groups are never tied by a commit
//! (see "What this cannot hide" in the store's docs).
//!
//! # Who leads
//!
//! A writer queues its operation, then waits for the write turn. When it gets the turn, its
//! operation may already be done by an earlier leader: it takes the answer and gives the turn
//! back. Otherwise it leads: it takes the waiting operations ([`pick`]) and runs them in a
//! task of its own to the end ([`service_kit::db::run_to_end`]), answering each before it
//! gives the turn back. A writer dropped while it waits (its client went away) leaves its
//! operation queued with no one to answer, and the next leader drops it unrun.

use super::roles::Tx;
use super::rules::Rules;
use super::StoreError;
use std::any::Any;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use tokio::sync::oneshot;

/// Most routine writes committed in one transaction.
pub(super) const MOST_TOGETHER: usize = 32;

/// A routine write, ready to run in the leader's transaction; what it answers is boxed, and
/// its writer unboxes it.
pub(super) type Op = Box<
    dyn for<'t> FnOnce(
            &'t Rules<'t>,
            &'t mut (dyn Tx + 't),
        ) -> Pin<
            Box<dyn Future<Output = Result<Box<dyn Any + Send>, StoreError>> + Send + 't>,
        > + Send,
>;

/// What a queued write is answered.
pub(super) enum Answer {
    /// It ran in a transaction that committed (or it failed alone and was rolled back to its
    /// savepoint): its own outcome.
    Ran(Result<Box<dyn Any + Send>, StoreError>),
    /// The shared transaction failed as a whole (it did not begin, a savepoint failed, or the
    /// commit did): nothing of it holds, and the writer runs its operation alone instead.
    Alone,
}

/// A queued routine write.
pub(super) struct Pending {
    /// Whom it is about (subject and address, as given): two writes naming the same person
    /// never share a transaction. Held in memory only while it waits; never logged.
    pub(super) people: Vec<String>,
    pub(super) op: Op,
    pub(super) reply: oneshot::Sender<Answer>,
}

/// The routine writes waiting for a leader.
#[derive(Default)]
pub(super) struct Together {
    waiting: Mutex<VecDeque<Pending>>,
    /// Shared transactions committed, for tests that show writes were grouped.
    #[cfg(test)]
    pub(super) committed: std::sync::atomic::AtomicUsize,
}

impl Together {
    /// Queues a write.
    pub(super) fn push(&self, pending: Pending) {
        self.lock().push_back(pending);
    }

    /// The writes the next transaction runs ([`pick`]); the others stay queued, in order.
    pub(super) fn take(&self) -> Vec<Pending> {
        let mut waiting = self.lock();
        let (chosen, rest) = pick(
            std::mem::take(&mut *waiting),
            MOST_TOGETHER,
            |p| &p.people,
            |p| p.reply.is_closed(),
        );
        *waiting = rest;
        chosen
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Pending>> {
        // A panic while the lock was held cannot leave the queue half-changed: every change
        // is a single push or swap.
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Splits `waiting` into the writes one transaction runs and those that wait for the next:
/// in arrival order, at most `most`, and never two that name a person in common (`people`);
/// writes whose writer is `gone` are dropped.
pub(super) fn pick<T>(
    waiting: VecDeque<T>,
    most: usize,
    people: impl Fn(&T) -> &[String],
    gone: impl Fn(&T) -> bool,
) -> (Vec<T>, VecDeque<T>) {
    let mut chosen: Vec<T> = Vec::new();
    let mut rest = VecDeque::new();
    for item in waiting {
        if gone(&item) {
            continue;
        }
        let shares_someone = chosen
            .iter()
            .any(|c| people(c).iter().any(|p| people(&item).contains(p)));
        if chosen.len() < most && !shares_someone {
            chosen.push(item);
        } else {
            rest.push_back(item);
        }
    }
    (chosen, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &'static str, people: &[&str], gone: bool) -> (&'static str, Vec<String>, bool) {
        (name, people.iter().map(|p| p.to_string()).collect(), gone)
    }

    fn names<'a>(
        items: impl IntoIterator<Item = &'a (&'static str, Vec<String>, bool)>,
    ) -> Vec<&'static str> {
        items.into_iter().map(|i| i.0).collect()
    }

    #[test]
    fn two_writes_about_one_person_never_share_a_transaction() {
        let waiting = VecDeque::from([
            write("ana joins g1", &["ana", "ana@corp.example"], false),
            write("bo joins g1", &["bo"], false),
            // Ana again, named by address only: still Ana.
            write("ana joins g2", &["ana@corp.example"], false),
            write("group provisioned", &[], false),
        ]);
        let (now, later) = pick(waiting, 32, |w| &w.1, |w| w.2);
        assert_eq!(
            names(&now),
            ["ana joins g1", "bo joins g1", "group provisioned"]
        );
        assert_eq!(names(&later), ["ana joins g2"]);
    }

    #[test]
    fn a_transaction_holds_at_most_so_many_writes_in_arrival_order_and_skips_the_abandoned() {
        let waiting = VecDeque::from([
            write("a", &["a"], false),
            write("b", &["b"], true),
            write("c", &["c"], false),
            write("d", &["d"], false),
        ]);
        let (now, later) = pick(waiting, 2, |w| &w.1, |w| w.2);
        assert_eq!(names(&now), ["a", "c"]);
        assert_eq!(names(&later), ["d"], "b's writer went away: b is not run");
    }
}
