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
//! - how many rows a statement touched (sqlx answers it per backend, not through a trait);
//! - how a pool is opened ([`crate::db`]).

use crate::db::{self, Backend};
use std::future::Future;

/// A SQL backend a store runs on: Postgres or SQLite.
pub trait Dialect: sqlx::Database {
    /// Which backend this is.
    const BACKEND: Backend;
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

    /// Opens a pool of at most `max` connections to `url`.
    fn connect(
        url: &str,
        max: u32,
    ) -> impl Future<Output = anyhow::Result<sqlx::Pool<Self>>> + Send;
}

impl Dialect for sqlx::Postgres {
    const BACKEND: Backend = Backend::Postgres;
    const BEGIN_WRITE: &'static str = "BEGIN";
    const FOR_UPDATE: &'static str = " FOR UPDATE";
    const FOR_SHARE: &'static str = " FOR SHARE";

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
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    const FOR_UPDATE: &'static str = "";
    const FOR_SHARE: &'static str = "";

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
