//! [`Store`] on SQL ([`SqlStore`] with this service's [`Schema`]): one implementation, generic over the backend ([`Dialect`]), so each
//! statement is written once. Postgres leases chunks `FOR UPDATE OF c SKIP LOCKED`, so replicas
//! sharing a database never take the same chunk and never wait for each other; SQLite has one
//! writer at a time and needs no clause.

use super::{Created, Lease, NewJob, Schema, Store, MAX_LINE_ERRORS};
use crate::jobs::{Job, JobState, Rejections};
use async_trait::async_trait;
use domain::Subject;
use service_kit::db;
use service_kit::sql::{self, Dialect, SqlStore};
use sqlx::{Encode, Executor, FromRow, IntoArguments, Type};
use tenant_api::BatchOutcome;
use uuid::Uuid;

/// The columns [`job_from_row`] reads.
const JOB_COLUMNS: &str = "id, state, submitted_by, created_at, started_at, finished_at, total, \
     applied, rejected, rejected_unknown_identity, rejected_label_refused, \
     rejected_unknown_group, invalid_lines, error, source_name, \
     (SELECT CAST(COALESCE(SUM(c.ops), 0) AS BIGINT) FROM job_chunks c \
      WHERE c.job_id = jobs.id AND c.state = 'pending' AND c.failures > 0) AS retrying";

/// A job past intake, by id.
fn job_by_id() -> String {
    format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 AND state <> 'intake'")
}

/// Deletes a job's chunks: its sealed input (INV-5).
const PURGE_CHUNKS: &str = "DELETE FROM job_chunks WHERE job_id = $1";

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
    for<'r> Option<Vec<u8>>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
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
        sealed_name: row.try_get("source_name")?,
    })
}

#[async_trait]
impl<DB: Dialect> Store for SqlStore<DB, Schema>
where
    SqlStore<DB, Schema>: service_kit::limits::LimitTable,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'c> &'c str: sqlx::ColumnIndex<DB::Row>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'r> (i64, i64): FromRow<'r, DB::Row>,
    for<'r> (i64, Option<Vec<u8>>, i64): FromRow<'r, DB::Row>,
    for<'r> (i64, String): FromRow<'r, DB::Row>,
    for<'r> (String, i64): FromRow<'r, DB::Row>,
    for<'r> (Uuid, i64): FromRow<'r, DB::Row>,
    for<'r> (Uuid, String): FromRow<'r, DB::Row>,
    for<'r> (Uuid,): FromRow<'r, DB::Row>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'r> i64: sqlx::Decode<'r, DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q [u8]>: Encode<'q, DB> + Type<DB>,
    for<'r> Option<Vec<u8>>: sqlx::Decode<'r, DB> + Type<DB>,
    for<'r> Option<i64>: sqlx::Decode<'r, DB> + Type<DB>,
    for<'r> Option<String>: sqlx::Decode<'r, DB> + Type<DB>,
    for<'r> String: sqlx::Decode<'r, DB> + Type<DB>,
    for<'q> Uuid: Encode<'q, DB> + Type<DB>,
    for<'r> Uuid: sqlx::Decode<'r, DB>,
{
    async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(self.pool()).await?;
        Ok(())
    }

    fn limit_table(&self) -> std::sync::Arc<dyn service_kit::limits::LimitTable> {
        std::sync::Arc::new(self.clone())
    }

    async fn jobs_in_flight(&self) -> Result<Vec<(String, i64)>, sqlx::Error> {
        sqlx::query_as(
            "SELECT state, COUNT(*) FROM jobs \
             WHERE state IN ('queued', 'running', 'paused') GROUP BY state",
        )
        .fetch_all(self.pool())
        .await
    }

    async fn list_jobs(&self, limit: u32) -> Result<Vec<Job>, sqlx::Error> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE state <> 'intake' \
             ORDER BY created_at DESC, id DESC LIMIT $1"
        );
        let rows = sqlx::query(&sql)
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn create_job(&self, job: &NewJob) -> Result<Created, sqlx::Error> {
        let inserted = sqlx::query(
            "INSERT INTO jobs (id, state, submitted_by, idempotency_key, created_at, updated_at, \
             source_name) VALUES ($1, 'intake', $2, $3, $4, $4, $5) \
             ON CONFLICT (submitted_by, idempotency_key) DO NOTHING",
        )
        .bind(job.id)
        .bind(job.submitted_by.as_str())
        .bind(job.idempotency_key.as_deref())
        .bind(job.now_ms)
        .bind(job.sealed_name.as_deref())
        .execute(self.pool())
        .await?;
        if DB::rows_affected(&inserted) == 1 {
            return Ok(Created::New);
        }
        let (id, state): (Uuid, String) = sqlx::query_as(
            "SELECT id, state FROM jobs WHERE submitted_by = $1 AND idempotency_key = $2",
        )
        .bind(job.submitted_by.as_str())
        .bind(job.idempotency_key.as_deref())
        .fetch_one(self.pool())
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
        .execute(self.pool())
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
        let (this, line_errors) = (self.clone(), line_errors.to_vec());
        db::run_to_end(async move {
            let line_errors = &line_errors[..];
            let mut tx = this.pool().begin_with(DB::BEGIN_WRITE).await?;
            let kept = &line_errors[..line_errors.len().min(MAX_LINE_ERRORS)];
            if !kept.is_empty() {
                let sql = format!(
                    "INSERT INTO job_line_errors (job_id, line, reason) VALUES {}",
                    sql::value_rows(kept.len(), 3)
                );
                let mut q = sqlx::query(&sql);
                for (line, reason) in kept {
                    q = q.bind(job).bind(to_i64(*line)).bind(*reason);
                }
                q.execute(&mut *tx).await?;
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
        })
        .await
    }

    async fn discard_job(&self, job: Uuid) -> Result<(), sqlx::Error> {
        let this = self.clone();
        db::run_to_end(async move {
            let mut tx = this.pool().begin_with(DB::BEGIN_WRITE).await?;
            for sql in [
                PURGE_CHUNKS,
                "DELETE FROM job_line_errors WHERE job_id = $1",
                "DELETE FROM jobs WHERE id = $1",
            ] {
                sqlx::query(sql).bind(job).execute(&mut *tx).await?;
            }
            tx.commit().await
        })
        .await
    }

    async fn job(&self, id: Uuid) -> Result<Option<Job>, sqlx::Error> {
        let row = sqlx::query(&job_by_id())
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn line_errors(&self, id: Uuid) -> Result<Vec<(u64, String)>, sqlx::Error> {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT line, reason FROM job_line_errors WHERE job_id = $1 ORDER BY line",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter().map(|(l, r)| Ok((to_u64(l)?, r))).collect()
    }

    async fn transition(
        &self,
        id: Uuid,
        from: &[JobState],
        to: JobState,
        now_ms: i64,
    ) -> Result<Option<Job>, sqlx::Error> {
        let (this, from) = (self.clone(), from.to_vec());
        db::run_to_end(async move {
            let from = &from[..];
            let mut tx = this.pool().begin_with(DB::BEGIN_WRITE).await?;
            // $1 the job, $2 now, then the states it may move from, then (unless resuming) the
            // state it moves to.
            let state = if to == JobState::Running {
                // Resuming: a job that never started goes back to the queue.
                "CASE WHEN started_at IS NULL THEN 'queued' ELSE 'running' END".to_owned()
            } else {
                format!("${}", 3 + from.len())
            };
            let finished = if to.is_final() {
                ", finished_at = $2"
            } else {
                ""
            };
            let sql = format!(
                "UPDATE jobs SET state = {state}, updated_at = $2{finished} \
                 WHERE id = $1 AND state IN ({})",
                sql::placeholders(3, from.len())
            );
            let mut q = sqlx::query(&sql).bind(id).bind(now_ms);
            for s in from {
                q = q.bind(s.as_str());
            }
            if to != JobState::Running {
                q = q.bind(to.as_str());
            }
            let changed = q.execute(&mut *tx).await?;
            if DB::rows_affected(&changed) == 0 {
                tx.commit().await?;
                return Ok(None);
            }
            if to.is_final() {
                sqlx::query(PURGE_CHUNKS).bind(id).execute(&mut *tx).await?;
            }
            let row = sqlx::query(&job_by_id())
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            let job = row.as_ref().map(job_from_row).transpose()?;
            tx.commit().await?;
            Ok(job)
        })
        .await
    }

    async fn lease_chunk(
        &self,
        owner: Uuid,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<Option<Lease>, sqlx::Error> {
        let this = self.clone();
        db::run_to_end(async move {
            let mut tx = this.pool().begin_with(DB::BEGIN_WRITE).await?;
            let pick = format!(
                "SELECT c.job_id, c.seq FROM job_chunks c JOIN jobs j ON j.id = c.job_id \
                 WHERE c.state = 'pending' AND j.state IN ('queued', 'running') \
                 AND (c.lease_until IS NULL OR c.lease_until < $1) \
                 ORDER BY j.created_at, c.job_id, c.seq LIMIT 1{}",
                DB::lease_rows("c")
            );
            let picked: Option<(Uuid, i64)> = sqlx::query_as(&pick)
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
        })
        .await
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
        .execute(self.pool())
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
        let (this, outcome) = (self.clone(), *outcome);
        db::run_to_end(async move {
            let outcome = &outcome;
            let mut tx = this.pool().begin_with(DB::BEGIN_WRITE).await?;
            let done = sqlx::query(
                "UPDATE job_chunks SET state = 'done', sealed = NULL, lease_owner = NULL, \
                 lease_until = NULL WHERE job_id = $1 AND seq = $2 AND lease_owner = $3 \
                 AND state = 'pending'",
            )
            .bind(job)
            .bind(to_i64(seq))
            .bind(owner)
            .execute(&mut *tx)
            .await?;
            if DB::rows_affected(&done) == 0 {
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
            .await?;
            if DB::rows_affected(&finished) == 1 {
                // INV-5: the job's input goes with the job.
                sqlx::query(PURGE_CHUNKS)
                    .bind(job)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    async fn fail_job(&self, job: Uuid, reason: &str, now_ms: i64) -> Result<(), sqlx::Error> {
        let (this, reason) = (self.clone(), reason.to_string());
        db::run_to_end(async move {
            let reason = reason.as_str();
            let mut tx = this.pool().begin_with(DB::BEGIN_WRITE).await?;
            sqlx::query(
                "UPDATE jobs SET state = 'failed', error = $2, finished_at = $3, updated_at = $3 \
                 WHERE id = $1 AND state IN ('queued', 'running', 'paused')",
            )
            .bind(job)
            .bind(reason)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            sqlx::query(PURGE_CHUNKS)
                .bind(job)
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        })
        .await
    }

    async fn sweep_intakes(&self, before_ms: i64) -> Result<u64, sqlx::Error> {
        let stale: Vec<Uuid> =
            sqlx::query_scalar("SELECT id FROM jobs WHERE state = 'intake' AND updated_at < $1")
                .bind(before_ms)
                .fetch_all(self.pool())
                .await?;
        for id in &stale {
            self.discard_job(*id).await?;
        }
        Ok(stale.len() as u64)
    }

    async fn chunk_rows(&self, job: Uuid) -> Result<(u64, u64), sqlx::Error> {
        let (rows, sealed): (i64, i64) =
            sqlx::query_as("SELECT COUNT(*), COUNT(sealed) FROM job_chunks WHERE job_id = $1")
                .bind(job)
                .fetch_one(self.pool())
                .await?;
        Ok((to_u64(rows)?, to_u64(sealed)?))
    }
}
