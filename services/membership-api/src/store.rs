//! membership-api's own database: membership *intents* (join requests awaiting an owner,
//! hashed invite codes), never a membership list — the tenant is the membership truth (INV-1).
//!
//! One trait, two backends. Both implementations are generated from one macro body, so the SQL
//! cannot drift between them: it is written once with `$n` placeholders, which Postgres and
//! sqlx's SQLite driver both read. The backend is chosen once, from the URL's scheme.

use async_trait::async_trait;
use service_kit::db::{self, Backend};
use std::sync::Arc;

/// What membership-api keeps. Cheap to clone behind an `Arc`; every method is one statement or
/// one transaction.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Answers when the database does (readiness).
    async fn ping(&self) -> Result<(), sqlx::Error>;
}

/// Migrations for each backend, embedded in the binary.
static PG_MIGRATIONS: sqlx::migrate::Migrator =
    sqlx::migrate!("../../migrations/membership-api/postgres");
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator =
    sqlx::migrate!("../../migrations/membership-api/sqlite");

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
