//! Keeps a SQLite database's write-ahead log to a bounded size (issue 17, storage).
//!
//! A pool's background task runs a passive checkpoint every [`super::SQLITE_CHECKPOINT_EVERY`].
//! A passive checkpoint copies the log into the database but never restarts it: SQLite writes
//! the log from its beginning again only when a writer begins just after a checkpoint that
//! copied *every* frame, and under steady writes some writer always appends while the
//! checkpoint runs. So the log grew by every page every write touched (about 27 KB a join on
//! the tenant: 1.3 GB of log beside a 65 MB database in `hush-dev bench storage`, and as much
//! again on bulk-api's database through a long job), and the file never shrank afterwards.
//! Its old frames are also what a file-level copy would find of rows since rewritten or
//! deleted.
//!
//! So every SQLite pool made by [`super::connect_sqlite`] also has this task: it looks at the
//! log's size every [`TICK`] and truncates it (`PRAGMA wal_checkpoint(TRUNCATE)`) when it is
//! over [`LOG_LIMIT`], or over [`IDLE_FLOOR`] once the log has not changed for [`IDLE_TICKS`]
//! looks. It first copies what it can with a passive checkpoint, beside writers; the
//! truncating checkpoint then holds the write lock while it copies the rest, waits for readers
//! of older frames and syncs the database file (26–38 ms on the tenant under load): writes wait
//! for it, once per two to three thousand joins at full rate, never inside a request's own
//! transaction. It runs on a connection of its own, opened only to truncate, whose busy
//! timeout is [`BUSY_FOR`], so it never holds writers back long while readers stay; a try
//! that fails is repeated [`RETRY_AFTER`] later, up to [`ATTEMPTS`] times.

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions as _, Connection as _, SqliteConnection, SqlitePool};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// A log larger than this is truncated at the next look, whatever the load.
pub const LOG_LIMIT: u64 = 64 * 1024 * 1024;
/// A log larger than this is truncated once it has not changed for [`IDLE_TICKS`] looks.
pub const IDLE_FLOOR: u64 = 4 * 1024 * 1024;
/// Looks at an unchanged log, one a [`TICK`], before it counts as idle.
pub const IDLE_TICKS: u32 = 5;
/// How often the task looks.
pub const TICK: Duration = Duration::from_secs(1);
/// How long a truncating checkpoint waits for the write lock and for readers.
const BUSY_FOR: Duration = Duration::from_millis(25);
/// Tries of a truncating checkpoint at one look.
const ATTEMPTS: u32 = 40;
/// The pause between two tries.
const RETRY_AFTER: Duration = Duration::from_millis(10);

/// Keeps the log of `pool`'s database (opened with `options`) bounded until the pool is
/// closed.
pub(super) async fn keep_bounded(pool: SqlitePool, options: SqliteConnectOptions) {
    let options = options.busy_timeout(BUSY_FOR).disable_statement_logging();
    let mut log = options.get_filename().as_os_str().to_owned();
    log.push("-wal");
    let log = PathBuf::from(log);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<(u64, Option<SystemTime>)> = None;
    let mut quiet = 0;
    loop {
        tick.tick().await;
        if pool.is_closed() {
            return;
        }
        let seen = tokio::fs::metadata(&log)
            .await
            .map_or((0, None), |m| (m.len(), m.modified().ok()));
        // Any write changes the log's modification time, whether or not it grows the file.
        quiet = if last == Some(seen) { quiet + 1 } else { 0 };
        last = Some(seen);
        if due(seen.0, quiet) && truncate(&options).await {
            last = None;
        }
    }
}

/// Truncates the log: up to [`ATTEMPTS`] tries, [`RETRY_AFTER`] apart. A try fails at once
/// when one of the pool's passive checkpoints is running, or after [`BUSY_FOR`] when readers
/// of older frames stay. Whether it was truncated.
async fn truncate(options: &SqliteConnectOptions) -> bool {
    let mut conn = match SqliteConnection::connect_with(options).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "opening a connection to truncate the write-ahead log");
            return false;
        }
    };
    for attempt in 1..=ATTEMPTS {
        // Copy what the pool's checkpoints have not yet copied while writers go on, so the
        // truncating checkpoint, which holds writers back, has little left to copy.
        let _ = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&mut conn)
            .await;
        let started = std::time::Instant::now();
        match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&mut conn)
            .await
        {
            Ok((0, _, _)) => {
                tracing::debug!(
                    attempt,
                    took_ms = started.elapsed().as_millis() as u64,
                    "the write-ahead log was truncated"
                );
                let _ = conn.close().await;
                return true;
            }
            Ok(_) => tracing::debug!(attempt, "the write-ahead log was busy"),
            Err(e) => tracing::debug!(error = %e, attempt, "truncating the write-ahead log failed"),
        }
        tokio::time::sleep(RETRY_AFTER).await;
    }
    tracing::warn!(
        attempts = ATTEMPTS,
        "the write-ahead log stayed busy; it is tried again"
    );
    let _ = conn.close().await;
    false
}

/// Whether a log of `size` bytes, after `quiet` looks at it unchanged, is truncated now.
fn due(size: u64, quiet: u32) -> bool {
    size > LOG_LIMIT || (quiet >= IDLE_TICKS && size > IDLE_FLOOR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr as _;

    #[test]
    fn a_log_over_the_limit_is_truncated_at_once_and_a_smaller_one_only_when_idle() {
        assert!(due(LOG_LIMIT + 1, 0));
        assert!(!due(LOG_LIMIT, 0));
        assert!(!due(IDLE_FLOOR + 1, IDLE_TICKS - 1));
        assert!(due(IDLE_FLOOR + 1, IDLE_TICKS));
        assert!(!due(IDLE_FLOOR, u32::MAX));
    }

    /// The log a burst of writes left shrinks to nothing once writes stop, and the rows are in
    /// the database: a pool of [`super::super::connect_sqlite`] does it by itself.
    #[tokio::test]
    async fn an_idle_log_is_truncated_and_nothing_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let pool = super::super::connect_sqlite(&url, 2).await.unwrap();
        // A writer that, as the pool's connections, never checkpoints in its commits: the log
        // grows by the pages its random keys touch, as the tenant's tags do.
        let options = SqliteConnectOptions::from_str(&url)
            .unwrap()
            .pragma("wal_autocheckpoint", "0");
        let mut writer = SqliteConnection::connect_with(&options).await.unwrap();
        sqlx::query("CREATE TABLE t (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID")
            .execute(&mut writer)
            .await
            .unwrap();
        let log = dir.path().join("t.db-wal");
        let mut peak = 0;
        for _ in 0..6000 {
            sqlx::query("INSERT INTO t VALUES (randomblob(32), randomblob(300))")
                .execute(&mut writer)
                .await
                .unwrap();
            peak = peak.max(std::fs::metadata(&log).map_or(0, |m| m.len()));
        }
        assert!(peak > IDLE_FLOOR, "the burst grew the log to {peak} bytes");
        let deadline = std::time::Instant::now() + TICK * (IDLE_TICKS + 10);
        while std::fs::metadata(&log).map_or(0, |m| m.len()) > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the idle log was never truncated"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(n, 6000);
        pool.close().await;
    }
}
