//! Keeps the SQLite write-ahead log to a bounded size (issue 17, storage).
//!
//! Since checkpoints left the commit (issue 17, item 5), a background task of each pool runs a
//! passive checkpoint every 500 ms. A passive checkpoint copies the log into the database but
//! never restarts it: SQLite starts writing the log from its beginning again only when a
//! writer begins just after a checkpoint that copied *every* frame, and under steady joins some
//! writer always appends while the checkpoint runs. So the log grew by every page every write
//! touched, about 25–30 KB a join, for as long as the load lasted (`hush-dev bench storage`: 98 MB
//! of log beside a 3 MB database after 4,000 joins), and the file never shrank afterwards,
//! since nothing truncates it (no `journal_size_limit`). Its old frames are also what a
//! file-level copy would find of rows since rewritten or deleted.
//!
//! A task of the tenant's own, on a connection of its own, looks at the log's size every second
//! and truncates it (`PRAGMA wal_checkpoint(TRUNCATE)`) when it is over [`LOG_LIMIT`], or over
//! [`IDLE_FLOOR`] once no write has come for [`IDLE_TICKS`] seconds. It first copies what it
//! can with a passive checkpoint, beside writers; the truncating checkpoint then holds the write
//! lock while it copies the rest, waits for readers of older frames and syncs the database file
//! (26–38 ms in the benchmark): writes wait for it, once per two to three thousand joins at full
//! rate, never inside a request's own transaction. A try that still finds such readers after
//! [`BUSY_FOR`] gives up and is repeated [`RETRY_AFTER`] later, up to [`ATTEMPTS`] times.
//!
//! This belongs with the pools' own checkpoint task in `service_kit::db`, for every service;
//! it is here until that module is free to change.

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions as _, Connection as _, SqliteConnection};
use std::path::PathBuf;
use std::str::FromStr as _;
use std::time::Duration;
use tokio::task::JoinHandle;

/// A log larger than this is truncated at the next look, whatever the load.
pub const LOG_LIMIT: u64 = 64 * 1024 * 1024;
/// A log larger than this is truncated once writes have stopped for [`IDLE_TICKS`] looks.
pub const IDLE_FLOOR: u64 = 4 * 1024 * 1024;
/// Looks without a write, one a [`TICK`], before an idle log is truncated.
const IDLE_TICKS: u32 = 5;
/// How often the task looks.
const TICK: Duration = Duration::from_secs(1);
/// How long a truncating checkpoint waits for the write lock and for readers.
const BUSY_FOR: Duration = Duration::from_millis(25);
/// Tries of a truncating checkpoint at one look.
const ATTEMPTS: u32 = 40;
/// The pause between two tries.
const RETRY_AFTER: Duration = Duration::from_millis(10);

/// Starts the task for the database `url` names, when it is SQLite; `None` for Postgres, whose
/// WAL the server recycles itself (`max_wal_size`).
pub async fn start(url: &str) -> anyhow::Result<Option<JoinHandle<()>>> {
    if !url.starts_with("sqlite:") {
        return Ok(None);
    }
    let options = SqliteConnectOptions::from_str(url)?
        .busy_timeout(BUSY_FOR)
        .disable_statement_logging();
    let mut log = options.get_filename().as_os_str().to_owned();
    log.push("-wal");
    let conn = SqliteConnection::connect_with(&options).await?;
    Ok(Some(tokio::spawn(keep_bounded(conn, PathBuf::from(log)))))
}

/// Looks at the log every [`TICK`], and truncates it when [`due`] says so.
async fn keep_bounded(mut conn: SqliteConnection, log: PathBuf) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut version = None;
    let mut quiet = 0;
    loop {
        tick.tick().await;
        let size = tokio::fs::metadata(&log).await.map_or(0, |m| m.len());
        // Changes whenever another connection has committed since the last look.
        let now = sqlx::query_scalar::<_, i64>("PRAGMA data_version")
            .fetch_one(&mut conn)
            .await
            .ok();
        quiet = if now.is_some() && now == version {
            quiet + 1
        } else {
            0
        };
        version = now;
        if !due(size, quiet) {
            continue;
        }
        truncate(&mut conn, size).await;
    }
}

/// Truncates the log: up to [`ATTEMPTS`] tries, [`RETRY_AFTER`] apart. A try fails at once
/// when one of the pools' passive checkpoints is running, or after [`BUSY_FOR`] when readers
/// of older frames stay.
async fn truncate(conn: &mut SqliteConnection, size: u64) {
    for attempt in 1..=ATTEMPTS {
        // Copy what the pools' checkpoints have not yet copied while writers go on, so the
        // truncating checkpoint, which holds writers back, has little left to copy.
        let _ = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&mut *conn)
            .await;
        let started = std::time::Instant::now();
        match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&mut *conn)
            .await
        {
            Ok((0, _, _)) => {
                tracing::debug!(
                    bytes = size,
                    attempt,
                    took_ms = started.elapsed().as_millis() as u64,
                    "the write-ahead log was truncated"
                );
                return;
            }
            Ok(_) => tracing::debug!(
                attempt,
                took_ms = started.elapsed().as_millis() as u64,
                "the write-ahead log was busy"
            ),
            Err(e) => tracing::debug!(error = %e, attempt, "truncating the write-ahead log failed"),
        }
        tokio::time::sleep(RETRY_AFTER).await;
    }
}

/// Whether a log of `size` bytes, after `quiet` looks without a write, is truncated now.
fn due(size: u64, quiet: u32) -> bool {
    size > LOG_LIMIT || (quiet >= IDLE_TICKS && size > IDLE_FLOOR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_over_the_limit_is_truncated_at_once_and_a_smaller_one_only_when_idle() {
        assert!(due(LOG_LIMIT + 1, 0));
        assert!(!due(LOG_LIMIT, 0));
        assert!(!due(IDLE_FLOOR + 1, IDLE_TICKS - 1));
        assert!(due(IDLE_FLOOR + 1, IDLE_TICKS));
        assert!(!due(IDLE_FLOOR, u32::MAX));
    }

    /// The log a burst of writes left shrinks to nothing once writes stop, and the rows are in
    /// the database.
    #[tokio::test]
    async fn an_idle_log_is_truncated_and_nothing_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        // A writer that never checkpoints, so the log surely grows.
        let options = SqliteConnectOptions::from_str(&url)
            .unwrap()
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .pragma("wal_autocheckpoint", "0");
        let mut writer = SqliteConnection::connect_with(&options).await.unwrap();
        sqlx::query("CREATE TABLE t (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID")
            .execute(&mut writer)
            .await
            .unwrap();
        // Random keys, as the tenant's tags are: each insert dirties pages all over the tree.
        for _ in 0..3000 {
            sqlx::query("INSERT INTO t VALUES (randomblob(32), randomblob(300))")
                .execute(&mut writer)
                .await
                .unwrap();
        }
        let log = dir.path().join("t.db-wal");
        let before = std::fs::metadata(&log).unwrap().len();
        assert!(
            before > IDLE_FLOOR,
            "the burst left a log of {before} bytes"
        );
        let task = start(&url).await.unwrap().expect("SQLite");
        let deadline = std::time::Instant::now() + TICK * (IDLE_TICKS + 10);
        while std::fs::metadata(&log).map_or(0, |m| m.len()) > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the idle log was never truncated"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        task.abort();
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&mut writer)
            .await
            .unwrap();
        assert_eq!(n, 3000);
    }
}
