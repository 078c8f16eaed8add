//! What differs between the two SQL backends, said once for every store.
//!
//! Each stateful service writes its SQL once, with `$n` placeholders (Postgres and sqlx's SQLite
//! driver both read them), in plain code generic over the backend (`DB: Dialect`). The few
//! places where the backends really differ are the items of [`Dialect`], implemented here for
//! [`sqlx::Postgres`] and [`sqlx::Sqlite`]:
//!
//! - how a transaction that writes begins: SQLite takes its one write lock up front
//!   (`BEGIN IMMEDIATE`), so the transaction never has to upgrade a read lock and fail with
//!   `SQLITE_BUSY`;
//! - the row locks Postgres needs so replicas sharing a database cannot interleave (`FOR UPDATE`,
//!   `FOR SHARE`, leases taken `SKIP LOCKED`), which SQLite, holding the whole database for its
//!   one writer, does not;
//! - whether one writer holds the whole database ([`Dialect::SINGLE_WRITER`]), so a store may
//!   queue its writers in process (the tenant's write turns);
//! - how many rows a statement touched (sqlx answers it per backend, not through a trait);
//! - how a pool is opened ([`crate::db`]).
//!
//! [`SqlStore`] is what every service's store is on either backend: a pool of a database
//! migrated to the service's [`Schema`]. A service implements its own store trait for it.

use crate::db::{self, Backend};
use sqlx::migrate::{Migrate, Migrator};
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

/// A SQL backend a store runs on: Postgres or SQLite.
pub trait Dialect: sqlx::Database {
    /// Which backend this is.
    const BACKEND: Backend;
    /// One writer at a time holds the whole database (SQLite): writes begin with the write
    /// lock, need no row locks, and a store may queue its writers in process. Otherwise
    /// (Postgres) writers run side by side, locking the rows they read.
    const SINGLE_WRITER: bool;
    /// The statement that begins a transaction that writes.
    const BEGIN_WRITE: &'static str;
    /// Ends a `SELECT` whose rows the transaction will change: no one else may change them
    /// until it commits.
    const FOR_UPDATE: &'static str;
    /// Ends a `SELECT` whose rows the transaction depends on: no one may change them until it
    /// commits, though others may read and share-lock them too.
    const FOR_SHARE: &'static str;

    /// Ends a `SELECT` of work to lease: locks the rows of `of` (a table or alias of the query)
    /// and passes over rows another replica holds, so replicas never take the same work and
    /// never wait for each other.
    fn lease_rows(of: &str) -> String;

    /// Rows a statement inserted, changed or deleted.
    fn rows_affected(result: &Self::QueryResult) -> u64;

    /// The statement that makes deleted rows unrecoverable from the database's files, run
    /// after a write that deleted personal rows ([`SqlStore::forget`]): SQLite checkpoints its
    /// write-ahead log and truncates it (the log still holds the rows' old pages; the main
    /// file's freed cells are zeroed by `secure_delete`). `None` where no such statement helps
    /// (Postgres: see docs/architecture.md on dead tuples and WAL).
    const FORGET: Option<&'static str>;

    /// Opens a pool of at most `max` connections to `url`.
    fn connect(
        url: &str,
        max: u32,
    ) -> impl Future<Output = anyhow::Result<sqlx::Pool<Self>>> + Send;
}

impl Dialect for sqlx::Postgres {
    const BACKEND: Backend = Backend::Postgres;
    const SINGLE_WRITER: bool = false;
    const BEGIN_WRITE: &'static str = "BEGIN";
    const FOR_UPDATE: &'static str = " FOR UPDATE";
    const FOR_SHARE: &'static str = " FOR SHARE";
    const FORGET: Option<&'static str> = None;

    fn lease_rows(of: &str) -> String {
        format!(" FOR UPDATE OF {of} SKIP LOCKED")
    }

    fn rows_affected(result: &sqlx::postgres::PgQueryResult) -> u64 {
        result.rows_affected()
    }

    fn connect(url: &str, max: u32) -> impl Future<Output = anyhow::Result<sqlx::PgPool>> + Send {
        db::connect_postgres(url, max)
    }
}

/// One writer at a time holds the whole database, so no row locks are needed.
impl Dialect for sqlx::Sqlite {
    const BACKEND: Backend = Backend::Sqlite;
    const SINGLE_WRITER: bool = true;
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    const FOR_UPDATE: &'static str = "";
    const FOR_SHARE: &'static str = "";
    const FORGET: Option<&'static str> = Some("PRAGMA wal_checkpoint(TRUNCATE)");

    fn lease_rows(_of: &str) -> String {
        String::new()
    }

    fn rows_affected(result: &sqlx::sqlite::SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    fn connect(
        url: &str,
        max: u32,
    ) -> impl Future<Output = anyhow::Result<sqlx::SqlitePool>> + Send {
        db::connect_sqlite(url, max)
    }
}

/// A service's migrations, one set per backend.
pub struct Migrations {
    /// For Postgres.
    pub postgres: Migrator,
    /// For SQLite.
    pub sqlite: Migrator,
}

/// The schema of one service's database: its migrations (`migrations/<service>/<backend>`).
pub trait Schema: 'static {
    /// The service's migrations, embedded in the binary.
    fn migrations() -> &'static Migrations;
}

/// A service's store on backend `DB`: a pool of a database migrated to schema `S`. Each
/// service implements its store trait for `SqlStore<DB, ItsSchema>`, once, generic over `DB`.
pub struct SqlStore<DB: sqlx::Database, S> {
    pool: sqlx::Pool<DB>,
    schema: PhantomData<fn() -> S>,
}

// Not derived: a derive would ask the backend's and the schema's marker types for the traits.
impl<DB: sqlx::Database, S> Clone for SqlStore<DB, S> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            schema: PhantomData,
        }
    }
}

impl<DB: sqlx::Database, S> std::fmt::Debug for SqlStore<DB, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("pool", &self.pool)
            .finish()
    }
}

impl<DB: Dialect, S: Schema> SqlStore<DB, S>
where
    DB::Connection: Migrate,
{
    /// Wraps a pool, bringing its schema up to date first.
    pub async fn migrate(pool: sqlx::Pool<DB>) -> anyhow::Result<Self> {
        let migrations = S::migrations();
        let migrator = match DB::BACKEND {
            Backend::Postgres => &migrations.postgres,
            Backend::Sqlite => &migrations.sqlite,
        };
        run_migrations(migrator, &pool).await?;
        Ok(Self {
            pool,
            schema: PhantomData,
        })
    }

    /// Opens the database at `url` with at most `max_connections` connections, and migrates it.
    pub async fn open(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        Self::migrate(DB::connect(url, max_connections).await?).await
    }
}

impl<DB: sqlx::Database, S> SqlStore<DB, S> {
    /// The pool: for the store's own statements, and for tests that work on the schema.
    pub fn pool(&self) -> &sqlx::Pool<DB> {
        &self.pool
    }
}

impl<DB: Dialect, S> SqlStore<DB, S>
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    /// After a write that deleted personal rows: runs [`Dialect::FORGET`], so a file-level
    /// copy of the database taken from now on does not hold them (SQLite: the write-ahead log
    /// is checkpointed and truncated). Best effort: a failure is logged and the write stands;
    /// the rows then leave the log at the next checkpoint.
    pub async fn forget(&self) {
        let Some(statement) = DB::FORGET else {
            return;
        };
        if let Err(e) = sqlx::query(statement).execute(&self.pool).await {
            tracing::warn!(error = %e, "truncating the write-ahead log after a deletion failed");
        }
    }
}

/// Brings the database of `pool` up to date with `migrator`, doing nothing (and asking for no
/// right beyond reading `_sqlx_migrations`) when every migration is applied already.
///
/// Why not `migrator.run` alone: sqlx begins by `CREATE TABLE IF NOT EXISTS _sqlx_migrations`,
/// which Postgres refuses to a role without CREATE on the schema even when the table exists.
/// In production each service connects as a role that may only read and write rows (`hush
/// db-setup` runs the migrations as the owner beforehand, see docs/deploy.md), so an
/// up-to-date schema must not need DDL. A schema that is behind (or whose applied migrations
/// differ from ours) still goes through `migrator.run`, which migrates or names the mismatch.
pub async fn run_migrations<DB: Dialect>(
    migrator: &Migrator,
    pool: &sqlx::Pool<DB>,
) -> anyhow::Result<()>
where
    DB::Connection: Migrate,
{
    if up_to_date(migrator, pool).await {
        return Ok(());
    }
    migrator.run(pool).await?;
    Ok(())
}

/// Whether every up migration of `migrator` is applied with the same checksum. Any failure to
/// tell (no migrations table yet, no connection) answers no, so `migrator.run` decides.
async fn up_to_date<DB: Dialect>(migrator: &Migrator, pool: &sqlx::Pool<DB>) -> bool
where
    DB::Connection: Migrate,
{
    let Ok(mut conn) = pool.acquire().await else {
        return false;
    };
    let Ok(applied) = conn.list_applied_migrations().await else {
        return false;
    };
    let applied: std::collections::HashMap<i64, _> = applied
        .into_iter()
        .map(|m| (m.version, m.checksum))
        .collect();
    migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .all(|m| applied.get(&m.version) == Some(&m.checksum))
}

/// Opens the database `url` names (`postgres://…` or `sqlite:…`; the backend is chosen here,
/// once) with at most `max_connections` connections, migrated to schema `S`, and hands it out
/// as the service's store `T` (`postgres` and `sqlite` wrap it, e.g. `|s| Arc::new(s)`).
pub async fn connect<S: Schema, T: ?Sized>(
    url: &str,
    max_connections: u32,
    postgres: impl FnOnce(SqlStore<sqlx::Postgres, S>) -> Arc<T>,
    sqlite: impl FnOnce(SqlStore<sqlx::Sqlite, S>) -> Arc<T>,
) -> anyhow::Result<Arc<T>> {
    Ok(match Backend::from_url(url)? {
        Backend::Postgres => postgres(SqlStore::open(url, max_connections).await?),
        Backend::Sqlite => sqlite(SqlStore::open(url, max_connections).await?),
    })
}

/// `n` placeholders numbered from `from`, comma-separated (`$3, $4, $5`): a list for `IN (…)`.
/// Generic code binds lists this way rather than with `sqlx::QueryBuilder`, whose built query
/// borrows the builder for as long as the backend's argument type lives.
pub fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `rows` rows of `cols` placeholders numbered from 1 (`($1, $2), ($3, $4)`): the rows of a
/// multi-row `VALUES`, bound row by row.
pub fn value_rows(rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| format!("({})", placeholders(1 + r * cols, cols)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_order() {
        assert_eq!(placeholders(3, 3), "$3, $4, $5");
        assert_eq!(placeholders(1, 0), "");
        assert_eq!(value_rows(2, 2), "($1, $2), ($3, $4)");
    }
}
