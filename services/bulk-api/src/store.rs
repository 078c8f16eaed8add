//! bulk-api's own database: jobs and their counts. Job input (who is to be added or removed)
//! never lands here in readable form (INV-5), and reports are counts, never per person (INV-3).
//!
//! One trait, two backends. Both implementations are generated from one macro body, so the SQL
//! cannot drift between them: it is written once with `$n` placeholders, which Postgres and
//! sqlx's SQLite driver both read. The backend is chosen once, from the URL's scheme.

use crate::jobs::{Job, JobState};
use async_trait::async_trait;
use domain::Subject;
use service_kit::db::{self, Backend};
use std::sync::Arc;
use uuid::Uuid;

/// What bulk-api keeps. Every method is one statement or one transaction.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Answers when the database does (readiness).
    async fn ping(&self) -> Result<(), sqlx::Error>;

    /// The newest `limit` jobs, newest first.
    async fn list_jobs(&self, limit: u32) -> Result<Vec<Job>, sqlx::Error>;
}

/// Migrations for each backend, embedded in the binary.
static PG_MIGRATIONS: sqlx::migrate::Migrator =
    sqlx::migrate!("../../migrations/bulk-api/postgres");
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator =
    sqlx::migrate!("../../migrations/bulk-api/sqlite");

/// Reads one `jobs` row. A value the schema's checks should have kept out is a decode error
/// (answered 500 and logged), not a panic.
fn job_from_row<R>(row: &R) -> Result<Job, sqlx::Error>
where
    R: sqlx::Row,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'r> Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let decode = |e: domain::DomainError| sqlx::Error::Decode(Box::new(e));
    let count = |col: &str| -> Result<u64, sqlx::Error> {
        let n: i64 = row.try_get(col)?;
        u64::try_from(n).map_err(|e| sqlx::Error::Decode(Box::new(e)))
    };
    Ok(Job {
        id: row.try_get("id")?,
        state: JobState::parse(&row.try_get::<String, _>("state")?).map_err(decode)?,
        submitted_by: Subject::parse(row.try_get::<String, _>("submitted_by")?).map_err(decode)?,
        created_at_ms: row.try_get("created_at")?,
        total: count("total")?,
        applied: count("applied")?,
        rejected: count("rejected")?,
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
    ($db:ty, $migrator:expr) => {
        impl SqlStore<$db> {
            /// Wraps a pool, bringing its schema up to date first.
            pub async fn migrate(pool: sqlx::Pool<$db>) -> anyhow::Result<Self> {
                $migrator.run(&pool).await?;
                Ok(Self { pool })
            }
        }

        #[async_trait]
        impl Store for SqlStore<$db> {
            async fn ping(&self) -> Result<(), sqlx::Error> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn list_jobs(&self, limit: u32) -> Result<Vec<Job>, sqlx::Error> {
                let rows = sqlx::query(
                    "SELECT id, state, submitted_by, created_at, total, applied, rejected \
                     FROM jobs ORDER BY created_at DESC, id DESC LIMIT $1",
                )
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(job_from_row).collect()
            }
        }
    };
}

sql_store!(sqlx::Postgres, PG_MIGRATIONS);
sql_store!(sqlx::Sqlite, SQLITE_MIGRATIONS);

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
