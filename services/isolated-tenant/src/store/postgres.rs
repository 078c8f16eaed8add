//! The production backend: Postgres. Writers run side by side and lock the rows they read, in
//! one order (see the store's module docs), so they wait for each other instead of deadlocking.
//!
//! What a copy of the raw database files shows beyond a logical dump is in the store's module
//! docs ("What this cannot hide").

use super::sql::SqlBackend;
use crate::audit;

/// The migrations, embedded in the binary.
pub(super) static PG_MIGRATIONS: sqlx::migrate::Migrator =
    sqlx::migrate!("../../migrations/isolated-tenant/postgres");

/// The production store.
pub type PgStore = super::sql_store::SqlStore<sqlx::Postgres>;

impl SqlBackend for sqlx::Postgres {
    const AFTER_BULK_BATCH: Option<&'static str> = None;
    const KEY_LOCKS: Option<(&'static str, &'static str)> =
        Some(("pg_advisory_xact_lock", "pg_advisory_xact_lock_shared"));
    #[cfg(test)]
    const LIST_TABLES: &'static str = "SELECT table_name::text FROM information_schema.tables \
        WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations' \
        AND table_name NOT LIKE 'audit\\_%' ORDER BY table_name";

    async fn migrate(pool: &sqlx::PgPool) -> anyhow::Result<()> {
        service_kit::sql::run_migrations(&PG_MIGRATIONS, pool).await
    }

    /// Named, so an operator tells bulk batches from routine calls in `pg_stat_activity`.
    fn bulk_pool(
        options: sqlx::pool::PoolOptions<Self>,
        connect: &sqlx::postgres::PgConnectOptions,
    ) -> sqlx::PgPool {
        options.connect_lazy_with(connect.clone().application_name("hush-tenant-bulk"))
    }

    fn audit_db(pool: sqlx::PgPool) -> audit::Db {
        audit::Db::Postgres(pool)
    }
}
