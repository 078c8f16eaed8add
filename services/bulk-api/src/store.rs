//! bulk-api's own database: jobs, their chunks (sealed input, checkpoints, leases) and line
//! errors. Job input (who is to be added or removed) is held only sealed (INV-5), cleared from
//! a chunk once it is applied and deleted with every chunk row when the job ends; reports are
//! counts by reason, never per person (INV-3).
//!
//! One trait, two backends: [`PgStore`] and [`SqliteStore`] are one implementation ([`SqlStore`]
//! with this service's [`Schema`], in `sql`), generic over the backend, so the SQL cannot drift
//! between them: it is written once with `$n` placeholders, which Postgres and sqlx's SQLite driver
//! both read, and what really differs (how a write begins, leasing `SKIP LOCKED`) comes from
//! [`service_kit::sql::Dialect`]. The backend is chosen once, from the URL's scheme.

use crate::jobs::{Job, JobState};
use async_trait::async_trait;
use domain::Subject;
use service_kit::sql::{Migrations, SqlStore};
use std::sync::Arc;
use tenant_api::BatchOutcome;
use uuid::Uuid;

/// The migrations, embedded in the binary.
static MIGRATIONS: Migrations = Migrations {
    postgres: sqlx::migrate!("../../migrations/bulk-api/postgres"),
    sqlite: sqlx::migrate!("../../migrations/bulk-api/sqlite"),
};

mod sql;

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
    /// The name of the file it comes from, sealed ([`crate::JobKey::seal_name`]).
    pub sealed_name: Option<Vec<u8>>,
    /// Now, in ms since the epoch.
    pub now_ms: i64,
}

/// The schema of bulk-api's database.
pub struct Schema;

impl service_kit::sql::Schema for Schema {
    fn migrations() -> &'static Migrations {
        &MIGRATIONS
    }
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

    /// The rate budgets this database keeps for every replica: the bulk throttle.
    fn limit_table(&self) -> Arc<dyn service_kit::limits::LimitTable>;
    /// How many jobs are queued, running and paused (for the `hush_bulk_jobs` gauge): one
    /// count per state, over every job.
    async fn jobs_in_flight(&self) -> Result<Vec<(String, i64)>, sqlx::Error>;

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

/// The production store.
pub type PgStore = SqlStore<sqlx::Postgres, Schema>;
/// The embedded store of `hush up`.
pub type SqliteStore = SqlStore<sqlx::Sqlite, Schema>;

/// Opens the database `url` names (`postgres://…` or `sqlite:…`), with at most `max`
/// connections, and migrates it.
pub async fn connect(url: &str, max: u32) -> anyhow::Result<Arc<dyn Store>> {
    service_kit::sql::connect::<Schema, dyn Store>(url, max, |s| Arc::new(s), |s| Arc::new(s)).await
}

#[cfg(test)]
mod tests;
