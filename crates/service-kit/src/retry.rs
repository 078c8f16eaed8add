//! Which database failures are worth another try, and the one loop that tries again.
//!
//! Every store in Hush writes in transactions that commit whole or not at all, and every write is
//! idempotent, so a write that failed because of another writer can simply run again. Which
//! failures those are is decided here, once, for both backends:
//!
//! | backend  | code    | meaning                                                        |
//! |----------|---------|----------------------------------------------------------------|
//! | Postgres | `40001` | serialization_failure                                          |
//! | Postgres | `40P01` | deadlock_detected                                              |
//! | SQLite   | `5`     | SQLITE_BUSY: another connection held the lock past the timeout |
//! | SQLite   | `6`     | SQLITE_LOCKED: a table lock inside this connection's database  |
//! | SQLite   | `517`   | SQLITE_BUSY_SNAPSHOT: a read snapshot went stale before a write|
//!
//! A caller that has a reason of its own to try again widens the rule at the call site, in
//! plain sight: the tenant also retries a unique violation when two writers race to create
//! the same identity ([`crate::db::is_unique_violation`]), and background workers also retry a
//! pool that had no free connection in time ([`is_pool_timeout`]). Routine calls do not retry a
//! pool timeout: a client is already waiting, and waiting again multiplies the wait.

use std::future::Future;
use std::time::Duration;

/// Whether `e` is a failure caused by another writer at the same moment, which the same
/// transaction run again will not meet (see the table in the module docs).
pub fn is_transient(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(d) = e else {
        return false;
    };
    matches!(
        d.code().as_deref(),
        Some("40001" | "40P01" | "5" | "6" | "517")
    )
}

/// Whether the pool had no free connection within its acquire timeout.
pub fn is_pool_timeout(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::PoolTimedOut)
}

/// How often, and with what pauses, an operation is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Tries in all, the first included (at least 1).
    pub attempts: u32,
    /// Pause after the first failed try; the n-th pause is n times this.
    pub step: Duration,
}

impl Retry {
    /// `attempts` tries, pausing `step`, `2 × step`, … between them.
    pub const fn new(attempts: u32, step: Duration) -> Self {
        Self { attempts, step }
    }

    /// Runs `op` until it succeeds, fails with an error `worth_retrying` does not accept, or
    /// has had [`Retry::attempts`] tries; answers the last outcome. Each retry is logged at
    /// `warn` with the error (store errors carry no personal data: INV-6).
    pub async fn run<T, E, F, Fut>(
        self,
        worth_retrying: impl Fn(&E) -> bool,
        mut op: F,
    ) -> Result<T, E>
    where
        E: std::fmt::Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut attempt = 1;
        loop {
            match op().await {
                Err(e) if attempt < self.attempts && worth_retrying(&e) => {
                    tracing::warn!(attempt, error = %e, "transient database failure; retrying");
                    tokio::time::sleep(self.step * attempt).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[tokio::test]
    async fn an_operation_is_tried_again_only_while_its_error_is_worth_it() {
        let tries = Cell::new(0);
        let out: Result<u32, &str> = Retry::new(4, Duration::ZERO)
            .run(
                |e| *e == "busy",
                || {
                    tries.set(tries.get() + 1);
                    let n = tries.get();
                    async move {
                        match n {
                            1 | 2 => Err("busy"),
                            _ => Ok(n),
                        }
                    }
                },
            )
            .await;
        assert_eq!(out, Ok(3));

        tries.set(0);
        let out: Result<u32, &str> = Retry::new(4, Duration::ZERO)
            .run(
                |e| *e == "busy",
                || {
                    tries.set(tries.get() + 1);
                    async { Err("refused") }
                },
            )
            .await;
        assert_eq!(out, Err("refused"));
        assert_eq!(tries.get(), 1, "a lasting failure is not tried again");
    }

    #[tokio::test]
    async fn the_last_error_is_answered_after_the_last_try() {
        let tries = Cell::new(0);
        let out: Result<(), &str> = Retry::new(3, Duration::ZERO)
            .run(
                |_| true,
                || {
                    tries.set(tries.get() + 1);
                    async { Err("busy") }
                },
            )
            .await;
        assert_eq!(out, Err("busy"));
        assert_eq!(tries.get(), 3);
    }

    #[test]
    fn only_database_errors_can_be_transient() {
        assert!(!is_transient(&sqlx::Error::RowNotFound));
        assert!(!is_transient(&sqlx::Error::PoolTimedOut));
        assert!(is_pool_timeout(&sqlx::Error::PoolTimedOut));
    }

    #[tokio::test]
    async fn a_busy_sqlite_database_is_transient() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let holder = crate::db::connect_sqlite(&url, 1).await.unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&holder)
            .await
            .unwrap();
        let mut lock = holder.begin().await.unwrap();
        sqlx::query("INSERT INTO t VALUES (1)")
            .execute(&mut *lock)
            .await
            .unwrap();
        let opts = url
            .parse::<sqlx::sqlite::SqliteConnectOptions>()
            .unwrap()
            .busy_timeout(Duration::ZERO);
        let other = sqlx::SqlitePool::connect_with(opts).await.unwrap();
        let err = sqlx::query("INSERT INTO t VALUES (2)")
            .execute(&other)
            .await
            .expect_err("the first connection holds the write lock");
        assert!(is_transient(&err), "{err}");
        lock.rollback().await.unwrap();
    }
}
