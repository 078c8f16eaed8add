//! Per-caller rate limits, shared by every replica through membership-api's database.
//!
//! Each (action, caller) pair has a budget that refills continuously (GCRA: a burst of the full
//! budget, then one request per `period / budget`). The budgets live in the `rate_limits` table
//! ([`service_kit::limits`]), one row each, spent in one atomic statement, so N replicas on one
//! database allow each caller the documented rate, not N times it.
//!
//! **What a row holds.** Its key is HMAC-SHA256, under a subkey of the membership seal key
//! (`hush/membership/limits`, which every replica derives alike), of the UTC day, the action and
//! the caller's subject; its value is a time. A dump of the table therefore names no one and no
//! group, and the day in the key means a caller's rows of two days cannot be linked even by
//! someone who saw both. A budget does not refill at midnight: a new day's row starts from where
//! the previous day's stood. Full budgets are swept (at most once a minute per replica).
//!
//! **When the database fails** (decided per action, docs/operations.md):
//! - redemptions and the failed-redemption budget fail **closed** (503): that budget is what
//!   stops invite codes being guessed, and a redemption needs the database anyway;
//! - joins, leaves, owner writes and assertions fall back to this replica's own in-memory
//!   budget (each replica then allows the full rate: N times it in all, for as long as the
//!   database is away), so a person can still leave while it is;
//! - an app's access decisions are always budgeted per replica, in memory: a decision is the
//!   hot path (thousands a second), a database round trip per decision would cost more than
//!   the budget protects, and the budget exists to keep one app from starving a replica, whose
//!   capacity is per replica too.
//!
//! Nothing here is logged with a caller or a key (INV-6).

use crate::config::AbuseLimits;
use crate::error::ApiError;
use crate::seal::RequestKey;
use rand::RngCore as _;
use service_kit::limits::{us, LimitTable, Rate};
use service_kit::seal::hmac;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use zeroize::Zeroizing;

/// Entries kept in memory before fully refilled ones (equal to absent) are swept out.
const SWEEP_ABOVE: usize = 10_000;
/// How often (ms, by the service's clock) one replica sweeps full budgets from the table.
const SWEEP_EVERY_MS: i64 = 60_000;
/// A day, in ms: how long one key names a budget.
const DAY_MS: i64 = 86_400_000;

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

    /// The byte that keeps the actions' keys apart.
    fn tag(self) -> u8 {
        match self {
            Self::Join => 1,
            Self::Leave => 2,
            Self::Redeem => 3,
            Self::RedeemFailure => 4,
            Self::OwnerWrite => 5,
            Self::Decision => 6,
            Self::Assertion => 7,
        }
    }

    /// Where the budget is kept when the database is up, and what happens when it is not.
    fn policy(self) -> Policy {
        match self {
            Self::Redeem | Self::RedeemFailure => Policy::SharedOrRefuse,
            Self::Join | Self::Leave | Self::OwnerWrite | Self::Assertion => Policy::SharedOrLocal,
            Self::Decision => Policy::Local,
        }
    }
}

/// Where an action's budget lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    /// In the database; when it fails, the request is refused (503).
    SharedOrRefuse,
    /// In the database; when it fails, in this replica's memory.
    SharedOrLocal,
    /// In this replica's memory, always.
    Local,
}

/// A refused request: how long until the caller may try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// What was limited.
    pub action: Action,
    /// Whole seconds to wait (at least 1): the `Retry-After` value.
    pub retry_after_secs: u64,
}

impl Limited {
    fn after_us(action: Action, wait_us: i64) -> Self {
        Self {
            action,
            retry_after_secs: u64::try_from((wait_us + 999_999) / 1_000_000)
                .unwrap_or(1)
                .max(1),
        }
    }
}

/// The budgets as configured.
#[derive(Debug, Clone, Copy)]
struct Rates {
    per_minute: Rate,
    failures: Rate,
    decisions: Rate,
}

impl Rates {
    fn new(limits: &AbuseLimits) -> Self {
        let second = 1_000_000;
        Self {
            per_minute: Rate::per(limits.rate_limit_per_minute, 60 * second),
            failures: Rate::per(limits.redeem_failures_per_hour, 3600 * second),
            decisions: Rate::per(limits.decisions_per_second_per_app, second),
        }
    }

    fn of(&self, action: Action) -> Rate {
        match action {
            Action::RedeemFailure => self.failures,
            Action::Decision => self.decisions,
            _ => self.per_minute,
        }
    }
}

/// The per-caller budgets of membership-api.
pub struct RateLimiter {
    /// The shared budgets: the `rate_limits` table of membership-api's database.
    table: Arc<dyn LimitTable>,
    /// The key budgets are named under (from the seal key, so alike on every replica).
    key: Zeroizing<[u8; 32]>,
    rates: Rates,
    /// This replica's own budgets: decisions, and the fallback when the table fails.
    local: LocalBudgets,
    /// When (ms) this replica last swept the table.
    last_sweep: AtomicI64,
    /// Whether the table is failing, so the change is logged once, not per request.
    table_failing: AtomicBool,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter").finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// Budgets as `limits` configures them, kept in `table`, named under `key`'s limit subkey.
    pub fn new(limits: &AbuseLimits, table: Arc<dyn LimitTable>, key: &RequestKey) -> Self {
        let rates = Rates::new(limits);
        Self {
            table,
            key: key.limit_key(),
            rates,
            local: LocalBudgets::new(rates),
            last_sweep: AtomicI64::new(i64::MIN),
            table_failing: AtomicBool::new(false),
        }
    }

    /// The row key of `subject`'s `action` budget on the UTC day `day`.
    fn row_key(&self, action: Action, subject: &str, day: i64) -> [u8; 32] {
        hmac(
            self.key.as_ref(),
            &[
                b"v1",
                &day.to_be_bytes(),
                &[action.tag()],
                subject.as_bytes(),
            ],
        )
    }

    /// Spends one unit of `subject`'s `action` budget at `now_ms`, or refuses (429, or 503
    /// when the budget cannot be read and the action fails closed).
    pub async fn hit(&self, action: Action, subject: &str, now_ms: i64) -> Result<(), ApiError> {
        self.check(action, subject, now_ms, true).await
    }

    /// Whether `subject` has `action` budget left at `now_ms`, without spending it (failed
    /// redemptions are counted only once they have failed).
    pub async fn peek(&self, action: Action, subject: &str, now_ms: i64) -> Result<(), ApiError> {
        self.check(action, subject, now_ms, false).await
    }

    async fn check(
        &self,
        action: Action,
        subject: &str,
        now_ms: i64,
        spend: bool,
    ) -> Result<(), ApiError> {
        let rate = self.rates.of(action);
        let policy = action.policy();
        if policy == Policy::Local {
            return self.local.check(action, subject, now_ms, spend);
        }
        self.sweep_now_and_then(now_ms);
        let day = now_ms.div_euclid(DAY_MS);
        let key = self.row_key(action, subject, day);
        let previous = self.row_key(action, subject, day - 1);
        let now = us(now_ms);
        let answer = if spend {
            self.table.spend(&key, &previous, rate, now).await
        } else {
            self.table.peek(&key, &previous, rate, now).await
        };
        match answer {
            Ok(wait) => {
                if self.table_failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("the rate-limit table answers again; budgets are shared");
                }
                match wait {
                    None => Ok(()),
                    Some(w) => Err(Limited::after_us(action, w).into()),
                }
            }
            Err(e) => {
                if !self.table_failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        error = %crate::error::describe_db_error(&e),
                        "the rate-limit table is failing: redemptions are refused, other \
                         budgets are this replica's own until it answers"
                    );
                }
                match policy {
                    Policy::SharedOrRefuse => Err(ApiError::LimitsUnavailable),
                    _ => self.local.check(action, subject, now_ms, spend),
                }
            }
        }
    }

    /// Sweeps full budgets from the table when this replica has not for a minute, in the
    /// background (a request never waits for it).
    fn sweep_now_and_then(&self, now_ms: i64) {
        let last = self.last_sweep.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) < SWEEP_EVERY_MS
            || self
                .last_sweep
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let table = Arc::clone(&self.table);
        tokio::spawn(async move {
            if let Err(e) = table.sweep(us(now_ms)).await {
                tracing::warn!(error = %crate::error::describe_db_error(&e), "sweeping full rate-limit budgets failed");
            }
        });
    }
}

/// Budgets in this replica's memory: decisions, and the others while the table fails. Keyed by
/// a SHA-256 of the caller under a random per-process salt, so they hold no subject either.
struct LocalBudgets {
    salt: [u8; 32],
    rates: Rates,
    /// Theoretical arrival time (µs) of each caller's next request, per action.
    tat: Mutex<HashMap<(Action, [u8; 32]), i64>>,
}

impl LocalBudgets {
    fn new(rates: Rates) -> Self {
        let mut salt = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        Self {
            salt,
            rates,
            tat: Mutex::new(HashMap::new()),
        }
    }

    fn key(&self, subject: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.salt);
        h.update(subject.as_bytes());
        h.finalize().into()
    }

    fn check(
        &self,
        action: Action,
        subject: &str,
        now_ms: i64,
        spend: bool,
    ) -> Result<(), ApiError> {
        let now = us(now_ms);
        let rate = self.rates.of(action);
        let key = (action, self.key(subject));
        let mut tat = self
            .tat
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if tat.len() > SWEEP_ABOVE {
            tat.retain(|_, t| *t > now);
        }
        let current = tat.get(&key).copied();
        let wait = rate.wait(current, now);
        if wait > 0 {
            return Err(Limited::after_us(action, wait).into());
        }
        if spend {
            tat.insert(key, current.unwrap_or(now).max(now) + rate.interval_us);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;

    fn rates(per_minute: u32, failures_per_hour: u32) -> Rates {
        Rates::new(&AbuseLimits {
            rate_limit_per_minute: per_minute,
            redeem_failures_per_hour: failures_per_hour,
            decisions_per_second_per_app: 1000,
        })
    }

    fn limited(r: Result<(), ApiError>) -> Limited {
        match r {
            Err(ApiError::RateLimited(l)) => l,
            other => panic!("expected a 429, got {other:?}"),
        }
    }

    #[test]
    fn a_full_budget_then_429_until_it_refills() {
        let l = LocalBudgets::new(rates(3, 10));
        let t = 1_000_000;
        for _ in 0..3 {
            l.check(Action::Join, "alice", t, true).unwrap();
        }
        let refused = limited(l.check(Action::Join, "alice", t, true));
        assert_eq!(refused.action, Action::Join);
        assert_eq!(refused.retry_after_secs, 20, "one unit refills every 20 s");
        assert!(l.check(Action::Join, "alice", t + 19_000, true).is_err());
        l.check(Action::Join, "alice", t + 20_000, true).unwrap();
    }

    #[test]
    fn budgets_are_per_caller_and_per_action() {
        let l = LocalBudgets::new(rates(1, 10));
        let t = 5_000;
        l.check(Action::Join, "alice", t, true).unwrap();
        assert!(l.check(Action::Join, "alice", t, true).is_err());
        l.check(Action::Join, "bob", t, true).unwrap();
        l.check(Action::Leave, "alice", t, true).unwrap();
        l.check(Action::OwnerWrite, "alice", t, true).unwrap();
    }

    #[test]
    fn an_apps_decisions_have_a_per_second_budget_of_their_own() {
        let l = LocalBudgets::new(rates(60, 10));
        let t = 7_000;
        for _ in 0..1000 {
            l.check(Action::Decision, "app-a", t, true).unwrap();
        }
        assert_eq!(
            limited(l.check(Action::Decision, "app-a", t, true)).retry_after_secs,
            1
        );
        l.check(Action::Decision, "app-b", t, true).unwrap();
        l.check(Action::Decision, "app-a", t + 1, true).unwrap();
        assert!(
            l.check(Action::Decision, "app-a", t + 1, true).is_err(),
            "one per millisecond"
        );
    }

    #[test]
    fn peeking_spends_nothing() {
        let l = LocalBudgets::new(rates(60, 2));
        for _ in 0..5 {
            l.check(Action::RedeemFailure, "alice", 0, false).unwrap();
        }
        l.check(Action::RedeemFailure, "alice", 0, true).unwrap();
        l.check(Action::RedeemFailure, "alice", 0, true).unwrap();
        assert_eq!(
            limited(l.check(Action::RedeemFailure, "alice", 0, false)).retry_after_secs,
            1800,
            "two per hour: one every 30 minutes"
        );
    }

    #[test]
    fn fully_refilled_entries_are_swept_from_memory() {
        let l = LocalBudgets::new(rates(60, 10));
        for i in 0..=SWEEP_ABOVE {
            l.check(Action::Join, &i.to_string(), 0, true).unwrap();
        }
        l.check(Action::Join, "late", 10 * 60_000, true).unwrap();
        assert_eq!(l.tat.lock().unwrap().len(), 1);
    }

    /// A table whose database is down.
    struct Down;

    #[async_trait]
    impl LimitTable for Down {
        async fn spend(
            &self,
            _: &[u8],
            _: &[u8],
            _: Rate,
            _: i64,
        ) -> Result<Option<i64>, sqlx::Error> {
            Err(sqlx::Error::PoolTimedOut)
        }
        async fn peek(
            &self,
            _: &[u8],
            _: &[u8],
            _: Rate,
            _: i64,
        ) -> Result<Option<i64>, sqlx::Error> {
            Err(sqlx::Error::PoolTimedOut)
        }
        async fn charge(&self, _: &[u8], _: i64, _: i64, _: i64) -> Result<i64, sqlx::Error> {
            Err(sqlx::Error::PoolTimedOut)
        }
        async fn sweep(&self, _: i64) -> Result<u64, sqlx::Error> {
            Err(sqlx::Error::PoolTimedOut)
        }
    }

    #[tokio::test]
    async fn without_the_table_redemptions_fail_closed_and_the_rest_fall_back_to_this_replica() {
        let l = RateLimiter::new(
            &AbuseLimits {
                rate_limit_per_minute: 1,
                ..AbuseLimits::default()
            },
            Arc::new(Down),
            &RequestKey::random(),
        );
        for action in [Action::Redeem, Action::RedeemFailure] {
            assert!(matches!(
                l.hit(action, "alice", 0).await,
                Err(ApiError::LimitsUnavailable)
            ));
            assert!(matches!(
                l.peek(action, "alice", 0).await,
                Err(ApiError::LimitsUnavailable)
            ));
        }
        l.hit(Action::Leave, "alice", 0).await.unwrap();
        assert_eq!(
            limited(l.hit(Action::Leave, "alice", 0).await).retry_after_secs,
            60,
            "the replica's own budget still holds"
        );
    }

    #[test]
    fn row_keys_name_no_one_and_change_every_day() {
        let key = RequestKey::random();
        let l = RateLimiter::new(&AbuseLimits::default(), Arc::new(Down), &key);
        let today = l.row_key(Action::Join, "alice@corp.example", 20_000);
        assert!(!today.windows(5).any(|w| w == b"alice"));
        assert_ne!(&today[..], Sha256::digest(b"alice@corp.example").as_slice());
        assert_ne!(today, l.row_key(Action::Join, "alice@corp.example", 20_001));
        assert_ne!(
            today,
            l.row_key(Action::Leave, "alice@corp.example", 20_000)
        );
        assert_ne!(today, l.row_key(Action::Join, "bob@corp.example", 20_000));
        // Another replica with the same seal key names the same budget alike.
        let other = RateLimiter::new(&AbuseLimits::default(), Arc::new(Down), &key);
        assert_eq!(
            today,
            other.row_key(Action::Join, "alice@corp.example", 20_000)
        );
        let stranger = RateLimiter::new(
            &AbuseLimits::default(),
            Arc::new(Down),
            &RequestKey::random(),
        );
        assert_ne!(
            today,
            stranger.row_key(Action::Join, "alice@corp.example", 20_000)
        );
    }
}
