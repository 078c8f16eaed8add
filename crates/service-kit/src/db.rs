//! Database connection for the stateful services. The backend is chosen once, from the URL's
//! scheme: `postgres://…` or `sqlite://…` (a missing SQLite file is created).
//!
//! # Cancelled requests
//!
//! A request whose client goes away is dropped at whichever await it had reached. Two things
//! keep that from leaving a transaction open behind it, on either backend:
//!
//! - every write transaction runs from its BEGIN to its COMMIT or ROLLBACK in a task of its own
//!   ([`run_to_end`]): dropping the request drops only the wait for the outcome;
//! - every pool refuses a connection that comes back to it still inside a transaction
//!   ([`refuse_open_transactions`]) and closes it, which ends the transaction.

use sqlx::pool::PoolOptions;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions as _, Connection as _, PgPool, SqlitePool};
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;
use tracing::Instrument as _;

pub mod wal;

/// Which store a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL, the production store.
    Postgres,
    /// SQLite, the embedded default of `hush up`.
    Sqlite,
}

impl Backend {
    /// Reads the backend from the URL's scheme.
    pub fn from_url(url: &str) -> anyhow::Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else {
            anyhow::bail!("database URL must start with postgres:// or sqlite:")
        }
    }
}

/// Opens a Postgres pool of at most `max` connections.
///
/// Statement logging is off at every level (INV-6): sqlx would otherwise log each statement
/// with its `rows_affected` at DEBUG, and on a membership table that count, joined to the audit
/// chain by request id, tells whether an owner's add or remove changed anything.
pub async fn connect_postgres(url: &str, max: u32) -> anyhow::Result<PgPool> {
    let opts = PgConnectOptions::from_str(url)?.disable_statement_logging();
    Ok(refuse_open_transactions(PgPoolOptions::new())
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(opts)
        .await?)
}

/// How often a SQLite pool's background task checkpoints the write-ahead log.
pub const SQLITE_CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Rows a SQLite connection's thread may hand over before the task reading them takes any
/// (sqlx's default is 50). At 50, a read of a few thousand rows (the tenant's group list for "my
/// groups", a member list) made SQLite's thread stop and wait to be woken every 50 rows, the
/// largest cost of such a read in a profile; a bounded buffer still holds back a reader that
/// stops reading.
pub const SQLITE_ROW_BUFFER: usize = 4096;

/// Opens a SQLite pool in WAL mode with foreign keys on and a busy timeout, creating the file.
///
/// `secure_delete` is on: SQLite overwrites the bytes of a deleted or updated row with zeros
/// instead of leaving them in a freed page of the main file, where a file-level copy would find
/// them. Statement logging is off at every level, as for Postgres.
///
/// Checkpoints run off the request path (issue 17): SQLite's own, which the commit that
/// crosses 1,000 log pages runs inside that request (about one join in seventy took 10 ms
/// more for it), are off; a task of the pool's own runs a passive checkpoint every
/// [`SQLITE_CHECKPOINT_EVERY`] instead, which never waits for a writer and never makes one
/// wait. A second task keeps the log to a bounded size ([`wal`]): passive checkpoints alone
/// never restart it under steady writes. Both end when the pool is closed.
pub async fn connect_sqlite(url: &str, max: u32) -> anyhow::Result<SqlitePool> {
    let opts = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .pragma("secure_delete", "ON")
        .pragma("wal_autocheckpoint", "0")
        .busy_timeout(Duration::from_secs(10))
        .row_buffer_size(SQLITE_ROW_BUFFER)
        .disable_statement_logging();
    let pool = refuse_open_transactions(SqlitePoolOptions::new())
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(opts.clone())
        .await?;
    tokio::spawn(checkpoint_in_the_background(pool.clone()));
    tokio::spawn(wal::keep_bounded(pool.clone(), opts));
    Ok(pool)
}

async fn checkpoint_in_the_background(pool: SqlitePool) {
    let mut tick = tokio::time::interval(SQLITE_CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        if pool.is_closed() {
            return;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            if pool.is_closed() {
                return;
            }
            tracing::warn!(error = %e, "a background checkpoint of the write-ahead log failed");
        }
    }
}

/// `options` with a check on every connection that comes back to the pool: one still inside a
/// transaction is closed (which ends the transaction) instead of being handed out again.
///
/// sqlx rolls back a dropped transaction lazily, when its connection is next used; the check
/// lets that rollback run first. What it catches is a transaction nobody owns: on SQLite,
/// sqlx 0.8's `begin_with` runs the BEGIN, then, in a second step, checks that the connection
/// is in a transaction; dropped between the two, it leaves the connection inside a transaction
/// that no `Transaction` value will ever end. Back in the pool, that connection held SQLite's
/// write lock for good, and every `begin_with` on it failed with "attempted to call begin_with
/// at non-zero transaction depth".
pub fn refuse_open_transactions<DB: sqlx::Database>(options: PoolOptions<DB>) -> PoolOptions<DB> {
    options.after_release(|conn, _| {
        Box::pin(async move {
            if !conn.is_in_transaction() {
                return Ok(true);
            }
            // A dropped transaction's ROLLBACK may be queued but not yet run (SQLite runs it
            // on the connection's own thread, in order): let it run, then look again.
            conn.ping().await?;
            if conn.is_in_transaction() {
                tracing::warn!("a connection came back to its pool inside a transaction; closed");
                return Ok(false);
            }
            Ok(true)
        })
    })
}

/// Runs `work`, a write transaction from its BEGIN to its COMMIT or ROLLBACK, in a task of its
/// own, and answers its outcome. A caller dropped while it waits (its client went away) drops
/// only the wait: the transaction still ends as it would have, committed or rolled back, and
/// its connection goes back to the pool outside any transaction. A write is therefore either
/// applied whole or not at all, whether or not anyone is still waiting for it.
///
/// A panic in `work` is the caller's panic. The task is lost without an outcome only when the
/// runtime shuts down; that is answered as an interrupted I/O error.
pub async fn run_to_end<T, E>(
    work: impl Future<Output = Result<T, E>> + Send + 'static,
) -> Result<T, E>
where
    T: Send + 'static,
    E: From<sqlx::Error> + Send + 'static,
{
    match tokio::spawn(work.in_current_span()).await {
        Ok(outcome) => outcome,
        Err(lost) => match lost.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::Interrupted,
                "the runtime shut down before the transaction ended",
            ))
            .into()),
        },
    }
}

/// Milliseconds since the Unix epoch: the one time representation stores use, because it is the
/// same `BIGINT`/`INTEGER` on both backends.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Whether a sqlx error is a unique-constraint violation (turned into 409 by callers).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// `url` with its database name replaced by `name` (query parameters kept): the URL of a
/// database made on the server an admin URL names.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn sqlite_pool(dir: &tempfile::TempDir, max: u32) -> (String, SqlitePool) {
        let url = format!("sqlite:{}", dir.path().join("t.db").display());
        let pool = connect_sqlite(&url, max).await.unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&pool)
            .await
            .unwrap();
        (url, pool)
    }

    #[tokio::test]
    async fn sqlite_checkpoints_in_the_background_not_in_a_commit() {
        let dir = tempfile::tempdir().unwrap();
        let (_, pool) = sqlite_pool(&dir, 2).await;
        let auto: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(auto, 0, "no commit checkpoints");
        let main = dir.path().join("t.db");
        let before = std::fs::metadata(&main).unwrap().len();
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) \
             INSERT INTO t SELECT i FROM n",
        )
        .execute(&pool)
        .await
        .unwrap();
        // The rows reach the main file without anyone asking: the pool's task checkpoints.
        let deadline = std::time::Instant::now() + SQLITE_CHECKPOINT_EVERY * 8;
        while std::fs::metadata(&main).unwrap().len() <= before + 100_000 {
            assert!(std::time::Instant::now() < deadline, "never checkpointed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        pool.close().await;
    }

    /// A write transaction of a fresh connection outside the pool, taken at once or never.
    async fn outside_write(url: &str) -> Result<(), sqlx::Error> {
        let opts = SqliteConnectOptions::from_str(url)?.busy_timeout(Duration::from_secs(2));
        let mut conn = sqlx::SqliteConnection::connect_with(&opts).await?;
        let tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        tx.commit().await
    }

    /// Dropping `begin_with` at every moment from 0 to 250 µs into it, thousands of times: before this pool
    /// refused connections left inside a transaction, one in a few hundred came back at depth 1,
    /// holding SQLite's write lock.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_begin_dropped_at_any_moment_leaves_no_pooled_connection_in_a_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let (url, pool) = sqlite_pool(&dir, 4).await;
        for i in 0..4000u64 {
            let p = pool.clone();
            let _ = tokio::time::timeout(Duration::from_micros(i % 250), async move {
                p.begin_with("BEGIN IMMEDIATE").await?.commit().await
            })
            .await;
            let mut conn = pool.acquire().await.unwrap();
            assert!(
                !conn.is_in_transaction(),
                "iteration {i}: handed out in a transaction"
            );
            let tx =
                tokio::time::timeout(Duration::from_secs(2), conn.begin_with("BEGIN IMMEDIATE"))
                    .await
                    .unwrap_or_else(|_| panic!("iteration {i}: the write lock is held"))
                    .unwrap_or_else(|e| panic!("iteration {i}: {e}"));
            tx.rollback().await.unwrap();
        }
        outside_write(&url)
            .await
            .expect("nothing holds the write lock");
    }

    #[tokio::test]
    async fn a_write_run_to_its_end_commits_though_its_caller_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (url, pool) = sqlite_pool(&dir, 2).await;
        let (begun, begun_rx) = tokio::sync::oneshot::channel();
        let (go, go_rx) = tokio::sync::oneshot::channel::<()>();
        let (done, done_rx) = tokio::sync::oneshot::channel();
        let p = pool.clone();
        let caller = tokio::spawn(run_to_end(async move {
            let mut tx = p.begin_with("BEGIN IMMEDIATE").await?;
            sqlx::query("INSERT INTO t (x) VALUES (1)")
                .execute(&mut *tx)
                .await?;
            let _ = begun.send(());
            let _ = go_rx.await;
            let committed = tx.commit().await;
            let _ = done.send(());
            committed
        }));
        begun_rx.await.unwrap();
        caller.abort();
        assert!(caller.await.unwrap_err().is_cancelled());
        go.send(()).unwrap();
        done_rx.await.expect("the transaction ran to its end");
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM t")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(n, 1);
        outside_write(&url)
            .await
            .expect("nothing holds the write lock");
    }
}
