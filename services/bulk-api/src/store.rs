//! bulk-api's own database: jobs, their chunks (sealed input, checkpoints, leases) and line
//! errors. Job input (who is to be added or removed) is held only sealed (INV-5), cleared from
//! a chunk once it is applied and deleted with every chunk row when the job ends; reports are
//! counts by reason, never per person (INV-3).
//!
//! One trait, two backends. Both implementations are generated from one macro body, so the SQL
//! cannot drift between them: it is written once with `$n` placeholders, which Postgres and
//! sqlx's SQLite driver both read. The one difference is passed in: Postgres leases chunks with
//! `FOR UPDATE SKIP LOCKED`, so replicas sharing a database never take the same chunk and never
//! wait for each other; SQLite has one writer at a time and needs no clause. The backend is
//! chosen once, from the URL's scheme.

use crate::jobs::{Job, JobState, Rejections};
use async_trait::async_trait;
use domain::Subject;
use service_kit::db::{self, Backend};
use std::sync::Arc;
use tenant_api::BatchOutcome;
use uuid::Uuid;

/// Line errors kept per job for its report (the count is kept in full).
pub const MAX_LINE_ERRORS: usize = 100;

/// A job about to be received.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Its id.
    pub id: Uuid,
    /// Who submits it.
    pub submitted_by: Subject,
    /// The caller's `Idempotency-Key`, if any.
    pub idempotency_key: Option<String>,
    /// Now, in ms since the epoch.
    pub now_ms: i64,
}

/// What creating a job found.
#[derive(Debug, Clone)]
pub enum Created {
    /// A new job, in intake.
    New,
    /// The same caller already submitted with this idempotency key: that job.
    Existing(Job),
    /// The same caller's upload with this idempotency key is still being received.
    InProgress,
}

/// A chunk a worker holds.
#[derive(Debug, Clone)]
pub struct Lease {
    /// The job.
    pub job_id: Uuid,
    /// The chunk's position.
    pub seq: u64,
    /// Operations in it.
    pub ops: u64,
    /// Its sealed operations.
    pub sealed: Vec<u8>,
    /// Failed tries so far.
    pub failures: u64,
}

/// What bulk-api keeps.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Answers when the database does (readiness).
    async fn ping(&self) -> Result<(), sqlx::Error>;

    /// The newest `limit` jobs past intake, newest first; only `submitted_by`'s when given.
    async fn list_jobs(&self, limit: u32) -> Result<Vec<Job>, sqlx::Error>;

    /// Starts receiving a job, or finds the one this caller submitted with the same key.
    async fn create_job(&self, job: &NewJob) -> Result<Created, sqlx::Error>;

    /// Stores chunk `seq` of a job in intake.
    async fn add_chunk(
        &self,
        job: Uuid,
        seq: u64,
        ops: u64,
        sealed: &[u8],
    ) -> Result<(), sqlx::Error>;

    /// Ends intake: the job is queued with `total` operations in `chunks` chunks, and its
    /// invalid lines (count, and the first [`MAX_LINE_ERRORS`] with their reasons).
    async fn finish_intake(
        &self,
        job: Uuid,
        total: u64,
        chunks: u64,
        invalid: u64,
        line_errors: &[(u64, &'static str)],
        now_ms: i64,
    ) -> Result<(), sqlx::Error>;

    /// Deletes a job and everything of it (a refused or abandoned intake).
    async fn discard_job(&self, job: Uuid) -> Result<(), sqlx::Error>;

    /// A job past intake.
    async fn job(&self, id: Uuid) -> Result<Option<Job>, sqlx::Error>;

    /// A job's kept line errors, in line order.
    async fn line_errors(&self, id: Uuid) -> Result<Vec<(u64, String)>, sqlx::Error>;

    /// Moves a job from one of `from` to `to`; `None` when it was in none of them. Ending
    /// states purge the job's chunks (its sealed input) in the same transaction.
    async fn transition(
        &self,
        id: Uuid,
        from: &[JobState],
        to: JobState,
        now_ms: i64,
    ) -> Result<Option<Job>, sqlx::Error>;

    /// Leases the oldest free pending chunk of a queued or running job to `owner` until
    /// `until_ms` (an expired lease is free), marking its job running.
    async fn lease_chunk(
        &self,
        owner: Uuid,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<Option<Lease>, sqlx::Error>;

    /// A failed try of a leased chunk: counted, and the chunk left to be retried by anyone
    /// from `retry_at_ms`.
    async fn retry_chunk(
        &self,
        job: Uuid,
        seq: u64,
        owner: Uuid,
        retry_at_ms: i64,
    ) -> Result<(), sqlx::Error>;

    /// The checkpoint: the chunk is done and its counts added to its job, in one transaction,
    /// if `owner` still holds it (false otherwise: another worker took it over, or the job
    /// was cancelled). The last chunk ends the job (succeeded) and purges its chunks.
    async fn complete_chunk(
        &self,
        job: Uuid,
        seq: u64,
        owner: Uuid,
        outcome: &BatchOutcome,
        now_ms: i64,
    ) -> Result<bool, sqlx::Error>;

    /// Ends a job as failed for `reason` (which names no person) and purges its chunks.
    async fn fail_job(&self, job: Uuid, reason: &str, now_ms: i64) -> Result<(), sqlx::Error>;

    /// Removes intakes that stopped (their upload died) before `before_ms`.
    async fn sweep_intakes(&self, before_ms: i64) -> Result<u64, sqlx::Error>;

    /// Chunk rows a job still has, and how many still hold sealed input (tests of purging).
    async fn chunk_rows(&self, job: Uuid) -> Result<(u64, u64), sqlx::Error>;
}

/// Migrations for each backend, embedded in the binary.
static PG_MIGRATIONS: sqlx::migrate::Migrator =
    sqlx::migrate!("../../migrations/bulk-api/postgres");
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator =
    sqlx::migrate!("../../migrations/bulk-api/sqlite");

/// The columns [`job_from_row`] reads.
const JOB_COLUMNS: &str = "id, state, submitted_by, created_at, started_at, finished_at, total, \
     applied, rejected, rejected_unknown_identity, rejected_label_refused, \
     rejected_unknown_group, invalid_lines, error, \
     (SELECT CAST(COALESCE(SUM(c.ops), 0) AS BIGINT) FROM job_chunks c \
      WHERE c.job_id = jobs.id AND c.state = 'pending' AND c.failures > 0) AS retrying";

fn to_u64(n: i64) -> Result<u64, sqlx::Error> {
    u64::try_from(n).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Reads one `jobs` row. A value the schema's checks should have kept out is a decode error
/// (answered 500 and logged), not a panic.
fn job_from_row<R>(row: &R) -> Result<Job, sqlx::Error>
where
    R: sqlx::Row,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'r> Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let decode = |e: domain::DomainError| sqlx::Error::Decode(Box::new(e));
    let count = |col: &str| -> Result<u64, sqlx::Error> { to_u64(row.try_get(col)?) };
    Ok(Job {
        id: row.try_get("id")?,
        state: JobState::parse(&row.try_get::<String, _>("state")?).map_err(decode)?,
        submitted_by: Subject::parse(row.try_get::<String, _>("submitted_by")?).map_err(decode)?,
        created_at_ms: row.try_get("created_at")?,
        started_at_ms: row.try_get("started_at")?,
        finished_at_ms: row.try_get("finished_at")?,
        total: count("total")?,
        applied: count("applied")?,
        rejected: count("rejected")?,
        rejected_by_reason: Rejections {
            unknown_identity: count("rejected_unknown_identity")?,
            label_refused: count("rejected_label_refused")?,
            unknown_group: count("rejected_unknown_group")?,
        },
        invalid_lines: count("invalid_lines")?,
        retrying: count("retrying")?,
        error: row.try_get("error")?,
    })
}

/// The store on one sqlx backend; [`PgStore`] and [`SqliteStore`] are the two there are.
#[derive(Debug, Clone)]
pub struct SqlStore<DB: sqlx::Database> {
    pool: sqlx::Pool<DB>,
}

/// The production store.
pub type PgStore = SqlStore<sqlx::Postgres>;
/// The embedded store of `hush up`.
pub type SqliteStore = SqlStore<sqlx::Sqlite>;

impl<DB: sqlx::Database> SqlStore<DB> {
    /// The pool, for tests that work on the schema directly.
    #[cfg(test)]
    pub(crate) fn pool(&self) -> &sqlx::Pool<DB> {
        &self.pool
    }
}

macro_rules! sql_store {
    ($db:ty, $migrator:expr, begin_write = $begin:literal, skip_locked = $skip:literal) => {
        impl SqlStore<$db> {
            /// Wraps a pool, bringing its schema up to date first.
            pub async fn migrate(pool: sqlx::Pool<$db>) -> anyhow::Result<Self> {
                $migrator.run(&pool).await?;
                Ok(Self { pool })
            }

            async fn job_in(
                conn: &mut <$db as sqlx::Database>::Connection,
                id: Uuid,
            ) -> Result<Option<Job>, sqlx::Error> {
                let row = sqlx::query(&format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 AND state <> 'intake'"
                ))
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
                row.as_ref().map(job_from_row).transpose()
            }
        }

        #[async_trait]
        impl Store for SqlStore<$db> {
            async fn ping(&self) -> Result<(), sqlx::Error> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn list_jobs(&self, limit: u32) -> Result<Vec<Job>, sqlx::Error> {
                let rows = sqlx::query(&format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE state <> 'intake' \
                     ORDER BY created_at DESC, id DESC LIMIT $1"
                ))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(job_from_row).collect()
            }

            async fn create_job(&self, job: &NewJob) -> Result<Created, sqlx::Error> {
                let inserted = sqlx::query(
                    "INSERT INTO jobs (id, state, submitted_by, idempotency_key, created_at, updated_at) \
                     VALUES ($1, 'intake', $2, $3, $4, $4) \
                     ON CONFLICT (submitted_by, idempotency_key) DO NOTHING",
                )
                .bind(job.id)
                .bind(job.submitted_by.as_str())
                .bind(job.idempotency_key.as_deref())
                .bind(job.now_ms)
                .execute(&self.pool)
                .await?
                .rows_affected();
                if inserted == 1 {
                    return Ok(Created::New);
                }
                let (id, state): (Uuid, String) = sqlx::query_as(
                    "SELECT id, state FROM jobs WHERE submitted_by = $1 AND idempotency_key = $2",
                )
                .bind(job.submitted_by.as_str())
                .bind(job.idempotency_key.as_deref())
                .fetch_one(&self.pool)
                .await?;
                if state == "intake" {
                    return Ok(Created::InProgress);
                }
                match self.job(id).await? {
                    Some(j) => Ok(Created::Existing(j)),
                    None => Ok(Created::InProgress),
                }
            }

            async fn add_chunk(
                &self,
                job: Uuid,
                seq: u64,
                ops: u64,
                sealed: &[u8],
            ) -> Result<(), sqlx::Error> {
                sqlx::query(
                    "INSERT INTO job_chunks (job_id, seq, ops, sealed, state) \
                     VALUES ($1, $2, $3, $4, 'pending')",
                )
                .bind(job)
                .bind(to_i64(seq))
                .bind(to_i64(ops))
                .bind(sealed)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn finish_intake(
                &self,
                job: Uuid,
                total: u64,
                chunks: u64,
                invalid: u64,
                line_errors: &[(u64, &'static str)],
                now_ms: i64,
            ) -> Result<(), sqlx::Error> {
                let mut tx = self.pool.begin_with($begin).await?;
                if !line_errors.is_empty() {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO job_line_errors (job_id, line, reason) ",
                    );
                    q.push_values(line_errors.iter().take(MAX_LINE_ERRORS), |mut b, (line, reason)| {
                        b.push_bind(job).push_bind(to_i64(*line)).push_bind(*reason);
                    });
                    q.build().execute(&mut *tx).await?;
                }
                // An empty job has nothing to run: it succeeds at once.
                let state = if chunks == 0 { "succeeded" } else { "queued" };
                sqlx::query(
                    "UPDATE jobs SET state = $2, total = $3, chunks = $4, invalid_lines = $5, \
                     updated_at = $6, finished_at = CASE WHEN $4 = 0 THEN $6 ELSE NULL END \
                     WHERE id = $1 AND state = 'intake'",
                )
                .bind(job)
                .bind(state)
                .bind(to_i64(total))
                .bind(to_i64(chunks))
                .bind(to_i64(invalid))
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                tx.commit().await
            }

            async fn discard_job(&self, job: Uuid) -> Result<(), sqlx::Error> {
                let mut tx = self.pool.begin_with($begin).await?;
                for table in ["job_chunks", "job_line_errors"] {
                    sqlx::query(&format!("DELETE FROM {table} WHERE job_id = $1"))
                        .bind(job)
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query("DELETE FROM jobs WHERE id = $1")
                    .bind(job)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await
            }

            async fn job(&self, id: Uuid) -> Result<Option<Job>, sqlx::Error> {
                let mut conn = self.pool.acquire().await?;
                Self::job_in(&mut conn, id).await
            }

            async fn line_errors(&self, id: Uuid) -> Result<Vec<(u64, String)>, sqlx::Error> {
                let rows: Vec<(i64, String)> = sqlx::query_as(
                    "SELECT line, reason FROM job_line_errors WHERE job_id = $1 ORDER BY line",
                )
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(|(l, r)| Ok((to_u64(l)?, r)))
                    .collect()
            }

            async fn transition(
                &self,
                id: Uuid,
                from: &[JobState],
                to: JobState,
                now_ms: i64,
            ) -> Result<Option<Job>, sqlx::Error> {
                let mut tx = self.pool.begin_with($begin).await?;
                let mut q = sqlx::QueryBuilder::<$db>::new("UPDATE jobs SET state = ");
                if to == JobState::Running {
                    // Resuming: a job that never started goes back to the queue.
                    q.push("CASE WHEN started_at IS NULL THEN 'queued' ELSE 'running' END");
                } else {
                    q.push_bind(to.as_str());
                }
                q.push(", updated_at = ").push_bind(now_ms);
                if to.is_final() {
                    q.push(", finished_at = ").push_bind(now_ms);
                }
                q.push(" WHERE id = ").push_bind(id).push(" AND state IN (");
                let mut list = q.separated(", ");
                for s in from {
                    list.push_bind(s.as_str());
                }
                list.push_unseparated(")");
                let changed = q.build().execute(&mut *tx).await?.rows_affected();
                if changed == 0 {
                    tx.commit().await?;
                    return Ok(None);
                }
                if to.is_final() {
                    sqlx::query("DELETE FROM job_chunks WHERE job_id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                let job = Self::job_in(&mut tx, id).await?;
                tx.commit().await?;
                Ok(job)
            }

            async fn lease_chunk(
                &self,
                owner: Uuid,
                now_ms: i64,
                until_ms: i64,
            ) -> Result<Option<Lease>, sqlx::Error> {
                let mut tx = self.pool.begin_with($begin).await?;
                let picked: Option<(Uuid, i64)> = sqlx::query_as(concat!(
                    "SELECT c.job_id, c.seq FROM job_chunks c JOIN jobs j ON j.id = c.job_id \
                     WHERE c.state = 'pending' AND j.state IN ('queued', 'running') \
                     AND (c.lease_until IS NULL OR c.lease_until < $1) \
                     ORDER BY j.created_at, c.job_id, c.seq LIMIT 1",
                    $skip
                ))
                .bind(now_ms)
                .fetch_optional(&mut *tx)
                .await?;
                let Some((job_id, seq)) = picked else {
                    tx.commit().await?;
                    return Ok(None);
                };
                let (ops, sealed, failures): (i64, Option<Vec<u8>>, i64) = sqlx::query_as(
                    "UPDATE job_chunks SET lease_owner = $3, lease_until = $4, attempts = attempts + 1 \
                     WHERE job_id = $1 AND seq = $2 RETURNING ops, sealed, failures",
                )
                .bind(job_id)
                .bind(seq)
                .bind(owner)
                .bind(until_ms)
                .fetch_one(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE jobs SET state = 'running', started_at = COALESCE(started_at, $2), \
                     updated_at = $2 WHERE id = $1 AND state = 'queued'",
                )
                .bind(job_id)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(Some(Lease {
                    job_id,
                    seq: to_u64(seq)?,
                    ops: to_u64(ops)?,
                    sealed: sealed.unwrap_or_default(),
                    failures: to_u64(failures)?,
                }))
            }

            async fn retry_chunk(
                &self,
                job: Uuid,
                seq: u64,
                owner: Uuid,
                retry_at_ms: i64,
            ) -> Result<(), sqlx::Error> {
                sqlx::query(
                    "UPDATE job_chunks SET failures = failures + 1, lease_owner = NULL, lease_until = $4 \
                     WHERE job_id = $1 AND seq = $2 AND lease_owner = $3 AND state = 'pending'",
                )
                .bind(job)
                .bind(to_i64(seq))
                .bind(owner)
                .bind(retry_at_ms)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn complete_chunk(
                &self,
                job: Uuid,
                seq: u64,
                owner: Uuid,
                outcome: &BatchOutcome,
                now_ms: i64,
            ) -> Result<bool, sqlx::Error> {
                let mut tx = self.pool.begin_with($begin).await?;
                let done = sqlx::query(
                    "UPDATE job_chunks SET state = 'done', sealed = NULL, lease_owner = NULL, \
                     lease_until = NULL WHERE job_id = $1 AND seq = $2 AND lease_owner = $3 \
                     AND state = 'pending'",
                )
                .bind(job)
                .bind(to_i64(seq))
                .bind(owner)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if done == 0 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                sqlx::query(
                    "UPDATE jobs SET applied = applied + $2, rejected = rejected + $3, \
                     rejected_unknown_identity = rejected_unknown_identity + $4, \
                     rejected_label_refused = rejected_label_refused + $5, \
                     rejected_unknown_group = rejected_unknown_group + $6, \
                     chunks_done = chunks_done + 1, updated_at = $7 WHERE id = $1",
                )
                .bind(job)
                .bind(to_i64(outcome.applied))
                .bind(to_i64(outcome.rejected()))
                .bind(to_i64(outcome.unknown_identity))
                .bind(to_i64(outcome.label_refused))
                .bind(to_i64(outcome.unknown_group))
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                let finished = sqlx::query(
                    "UPDATE jobs SET state = 'succeeded', finished_at = $2 \
                     WHERE id = $1 AND chunks_done = chunks AND state IN ('queued', 'running', 'paused')",
                )
                .bind(job)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if finished == 1 {
                    // INV-5: the job's input goes with the job.
                    sqlx::query("DELETE FROM job_chunks WHERE job_id = $1")
                        .bind(job)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(true)
            }

            async fn fail_job(&self, job: Uuid, reason: &str, now_ms: i64) -> Result<(), sqlx::Error> {
                let mut tx = self.pool.begin_with($begin).await?;
                sqlx::query(
                    "UPDATE jobs SET state = 'failed', error = $2, finished_at = $3, updated_at = $3 \
                     WHERE id = $1 AND state IN ('queued', 'running', 'paused')",
                )
                .bind(job)
                .bind(reason)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                sqlx::query("DELETE FROM job_chunks WHERE job_id = $1")
                    .bind(job)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await
            }

            async fn sweep_intakes(&self, before_ms: i64) -> Result<u64, sqlx::Error> {
                let stale: Vec<Uuid> = sqlx::query_scalar(
                    "SELECT id FROM jobs WHERE state = 'intake' AND updated_at < $1",
                )
                .bind(before_ms)
                .fetch_all(&self.pool)
                .await?;
                for id in &stale {
                    self.discard_job(*id).await?;
                }
                Ok(stale.len() as u64)
            }

            async fn chunk_rows(&self, job: Uuid) -> Result<(u64, u64), sqlx::Error> {
                let (rows, sealed): (i64, i64) = sqlx::query_as(
                    "SELECT COUNT(*), COUNT(sealed) FROM job_chunks WHERE job_id = $1",
                )
                .bind(job)
                .fetch_one(&self.pool)
                .await?;
                Ok((to_u64(rows)?, to_u64(sealed)?))
            }
        }
    };
}

sql_store!(
    sqlx::Postgres,
    PG_MIGRATIONS,
    begin_write = "BEGIN",
    skip_locked = " FOR UPDATE OF c SKIP LOCKED"
);
sql_store!(
    sqlx::Sqlite,
    SQLITE_MIGRATIONS,
    begin_write = "BEGIN IMMEDIATE",
    skip_locked = ""
);

/// Opens the database `url` names (`postgres://…` or `sqlite:…`), with at most `max_connections`
/// connections, and migrates it.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match Backend::from_url(url)? {
        Backend::Postgres => {
            Arc::new(PgStore::migrate(db::connect_postgres(url, max_connections).await?).await?)
        }
        Backend::Sqlite => {
            Arc::new(SqliteStore::migrate(db::connect_sqlite(url, max_connections).await?).await?)
        }
    })
}

#[cfg(test)]
mod tests;
