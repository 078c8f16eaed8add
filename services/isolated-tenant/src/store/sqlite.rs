//! The embedded backend of `hush up`: SQLite. One writer at a time: a write transaction takes
//! the database's write lock when it begins, and writers queue for it in write turns
//! ([`super::turns::Turns`]), where routine writes go before bulk batches.

use super::sql::SqlBackend;
use crate::audit;

/// The migrations, embedded in the binary.
pub(super) static SQLITE_MIGRATIONS: sqlx::migrate::Migrator =
    sqlx::migrate!("../../migrations/isolated-tenant/sqlite");

/// The embedded store of `hush up`.
pub type SqliteStore = super::sql_store::SqlStore<sqlx::Sqlite>;

/// Page cache of a bulk batch's SQLite connection, in KiB as SQLite takes it (negative).
const BULK_CACHE_KIB: &str = "-32768";

impl SqlBackend for sqlx::Sqlite {
    /// A batch's pages are copied from the log into the database here, beside routine writes,
    /// instead of in the commit of whichever write comes next (see `bulk_pool`).
    const AFTER_BULK_BATCH: Option<&'static str> = Some("PRAGMA wal_checkpoint(PASSIVE)");
    /// One writer at a time: a write transaction (`BEGIN IMMEDIATE`) holds the database.
    const KEY_LOCKS: Option<(&'static str, &'static str)> = None;
    #[cfg(test)]
    const LIST_TABLES: &'static str = "SELECT name FROM sqlite_master WHERE type = 'table' \
        AND name <> '_sqlx_migrations' AND name NOT LIKE 'audit\\_%' ESCAPE '\\' \
        ORDER BY name";

    async fn migrate(pool: &sqlx::SqlitePool) -> anyhow::Result<()> {
        service_kit::sql::run_migrations(&SQLITE_MIGRATIONS, pool).await
    }

    /// Bulk batches' connections run SQLite on the bulk lane's threads. A batch of random
    /// keyed tags dirties thousands of pages; SQLite copies them from its write-ahead log into
    /// the database in the commit that first finds the log over 1,000 pages, which would be
    /// the commit of the join right after the batch (it waited for the batch, and then for the
    /// copy). Bulk connections never copy in a commit: the store does it after each batch, out
    /// of the write turn (`AFTER_BULK_BATCH`), and a routine commit then finds the log copied.
    /// Their page cache is larger, so the indexes a batch walks stay in memory.
    fn bulk_pool(
        options: sqlx::pool::PoolOptions<Self>,
        connect: &sqlx::sqlite::SqliteConnectOptions,
    ) -> sqlx::SqlitePool {
        options.connect_lazy_with(
            connect
                .clone()
                .pragma("wal_autocheckpoint", "0")
                .pragma("cache_size", BULK_CACHE_KIB),
        )
    }

    fn audit_db(pool: sqlx::SqlitePool) -> audit::Db {
        audit::Db::Sqlite(pool)
    }
}
