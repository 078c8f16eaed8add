//! Per-caller rate limits, in memory.
//!
//! Each (action, caller) pair has a budget that refills continuously (GCRA: a burst of the full
//! budget, then one request per `period / budget`). Callers are keyed by a SHA-256 of their
//! subject under a random per-process salt, so the table holds no subject and its keys cannot be
//! matched against anything outside this process; nothing here is logged (INV-6).
//!
//! The limits are per replica: N replicas allow up to N times the budget. That bounds abuse by
//! a constant factor, which is what the limits are for (the codes' entropy, not the limit, is
//! what makes guessing an invite hopeless).

use crate::config::AbuseLimits;
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;

/// Entries kept before fully refilled ones (equal to absent) are swept out.
const SWEEP_ABOVE: usize = 10_000;

/// What a budget is for. Each has its own budget per caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Joining, asking to join, withdrawing a request.
    Join,
    /// Leaving.
    Leave,
    /// Redeeming an invite code.
    Redeem,
    /// A redemption that failed (bad code): its own, slower budget.
    RedeemFailure,
    /// An owner's write: add, remove, approve, deny, claim rules, invites.
    OwnerWrite,
    /// An access decision an app asks for (token exchange), budgeted per app per second; the
    /// caller here is the app's id, not a person.
    Decision,
    /// A membership assertion a person asks for, for an app.
    Assertion,
}

impl Action {
    /// What the 429's detail calls it.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Join => "join requests",
            Self::Leave => "leave requests",
            Self::Redeem => "invite redemptions",
            Self::RedeemFailure => "failed invite redemptions",
            Self::OwnerWrite => "owner changes",
            Self::Decision => "access decisions for this app",
            Self::Assertion => "membership assertions",
        }
    }
}

/// A refused request: how long until the caller may try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// What was limited.
    pub action: Action,
    /// Whole seconds to wait (at least 1): the `Retry-After` value.
    pub retry_after_secs: u64,
}

/// The per-caller budgets of one replica. Times are kept in microseconds, so a budget of
/// thousands per second (an app's decisions) refills as smoothly as one of a few per hour.
pub struct RateLimiter {
    salt: [u8; 32],
    /// Microseconds between two requests at the steady rate, per action, and the burst.
    per_minute_interval: i64,
    per_minute_burst: i64,
    failure_interval: i64,
    failure_burst: i64,
    decision_interval: i64,
    decision_burst: i64,
    /// Theoretical arrival time (µs) of each caller's next request, per action.
    tat: Mutex<HashMap<(Action, [u8; 32]), i64>>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter").finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// Budgets as `limits` configures them.
    pub fn new(limits: &AbuseLimits) -> Self {
        let mut salt = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let per_minute = i64::from(limits.rate_limit_per_minute.max(1));
        let failures = i64::from(limits.redeem_failures_per_hour.max(1));
        let decisions = i64::from(limits.decisions_per_second_per_app.max(1));
        let second = 1_000_000;
        let minute = 60 * second;
        let hour = 60 * minute;
        Self {
            salt,
            per_minute_interval: minute / per_minute,
            per_minute_burst: minute - minute / per_minute,
            failure_interval: hour / failures,
            failure_burst: hour - hour / failures,
            decision_interval: second / decisions,
            decision_burst: second - second / decisions,
            tat: Mutex::new(HashMap::new()),
        }
    }

    fn key(&self, subject: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.salt);
        h.update(subject.as_bytes());
        h.finalize().into()
    }

    fn params(&self, action: Action) -> (i64, i64) {
        match action {
            Action::RedeemFailure => (self.failure_interval, self.failure_burst),
            Action::Decision => (self.decision_interval, self.decision_burst),
            _ => (self.per_minute_interval, self.per_minute_burst),
        }
    }

    /// Spends one unit of `subject`'s `action` budget at `now_ms`, or says how long to wait.
    pub fn hit(&self, action: Action, subject: &str, now_ms: i64) -> Result<(), Limited> {
        self.check(action, subject, now_ms, true)
    }

    /// Whether `subject` has `action` budget left at `now_ms`, without spending it (failed
    /// redemptions are counted only once they have failed).
    pub fn peek(&self, action: Action, subject: &str, now_ms: i64) -> Result<(), Limited> {
        self.check(action, subject, now_ms, false)
    }

    fn check(
        &self,
        action: Action,
        subject: &str,
        now_ms: i64,
        spend: bool,
    ) -> Result<(), Limited> {
        let now = now_ms.saturating_mul(1000);
        let (interval, burst) = self.params(action);
        let key = (action, self.key(subject));
        let mut tat = self
            .tat
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if tat.len() > SWEEP_ABOVE {
            tat.retain(|_, t| *t > now);
        }
        let current = tat.get(&key).copied().unwrap_or(now).max(now);
        let wait = current - now - burst;
        if wait > 0 {
            return Err(Limited {
                action,
                retry_after_secs: u64::try_from((wait + 999_999) / 1_000_000)
                    .unwrap_or(1)
                    .max(1),
            });
        }
        if spend {
            tat.insert(key, current + interval);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_minute: u32, failures_per_hour: u32) -> RateLimiter {
        RateLimiter::new(&AbuseLimits {
            rate_limit_per_minute: per_minute,
            redeem_failures_per_hour: failures_per_hour,
            decisions_per_second_per_app: 1000,
        })
    }

    #[test]
    fn a_full_budget_then_429_until_it_refills() {
        let l = limiter(3, 10);
        let t = 1_000_000;
        for _ in 0..3 {
            l.hit(Action::Join, "alice", t).unwrap();
        }
        let refused = l.hit(Action::Join, "alice", t).unwrap_err();
        assert_eq!(refused.action, Action::Join);
        assert_eq!(refused.retry_after_secs, 20, "one unit refills every 20 s");
        assert!(l.hit(Action::Join, "alice", t + 19_000).is_err());
        l.hit(Action::Join, "alice", t + 20_000).unwrap();
    }

    #[test]
    fn budgets_are_per_caller_and_per_action() {
        let l = limiter(1, 10);
        let t = 5_000;
        l.hit(Action::Join, "alice", t).unwrap();
        assert!(l.hit(Action::Join, "alice", t).is_err());
        l.hit(Action::Join, "bob", t).unwrap();
        l.hit(Action::Leave, "alice", t).unwrap();
        l.hit(Action::OwnerWrite, "alice", t).unwrap();
    }

    #[test]
    fn an_apps_decisions_have_a_per_second_budget_of_their_own() {
        let l = RateLimiter::new(&AbuseLimits {
            decisions_per_second_per_app: 1000,
            ..AbuseLimits::default()
        });
        let t = 7_000;
        for _ in 0..1000 {
            l.hit(Action::Decision, "app-a", t).unwrap();
        }
        let refused = l.hit(Action::Decision, "app-a", t).unwrap_err();
        assert_eq!(refused.retry_after_secs, 1);
        l.hit(Action::Decision, "app-b", t).unwrap();
        l.hit(Action::Decision, "app-a", t + 1).unwrap();
        assert!(
            l.hit(Action::Decision, "app-a", t + 1).is_err(),
            "one per millisecond"
        );
    }

    #[test]
    fn peeking_spends_nothing() {
        let l = limiter(60, 2);
        let t = 0;
        for _ in 0..5 {
            l.peek(Action::RedeemFailure, "alice", t).unwrap();
        }
        l.hit(Action::RedeemFailure, "alice", t).unwrap();
        l.hit(Action::RedeemFailure, "alice", t).unwrap();
        let refused = l.peek(Action::RedeemFailure, "alice", t).unwrap_err();
        assert_eq!(
            refused.retry_after_secs, 1800,
            "two per hour: one every 30 minutes"
        );
    }

    #[test]
    fn the_table_holds_no_subject() {
        let l = limiter(1, 1);
        l.hit(Action::Join, "alice@corp.example", 0).unwrap();
        let table = l.tat.lock().unwrap();
        let (_, key) = table.keys().next().unwrap();
        assert!(!key.windows(5).any(|w| w == b"alice"));
        // Salted: not the plain hash anyone could compute from the address.
        assert_ne!(&key[..], Sha256::digest(b"alice@corp.example").as_slice());
    }

    #[test]
    fn fully_refilled_entries_are_swept() {
        let l = limiter(60, 10);
        for i in 0..=SWEEP_ABOVE {
            l.hit(Action::Join, &i.to_string(), 0).unwrap();
        }
        l.hit(Action::Join, "late", 10 * 60_000).unwrap();
        assert_eq!(l.tat.lock().unwrap().len(), 1);
    }
}
