//! The SQL of the tenant's side tables (member lists, mail, break-glass), written once and run
//! on either backend.
//!
//! A query is a value ([`Sql`]: text with `$n` placeholders, and its arguments) that runs on
//! a Postgres or a SQLite connection ([`Exec`]). The two backends share every statement; where
//! they differ, the difference is named here and nowhere else:
//!
//! | what | Postgres | SQLite |
//! |---|---|---|
//! | a write transaction begins with | `BEGIN` | `BEGIN IMMEDIATE`: the write lock at once, so two writers never deadlock upgrading a read lock |
//! | a row read to be changed ([`Pool::for_update`]) | `FOR UPDATE` | nothing: the write transaction holds the database |
//! | a queue row leased ([`Pool::skip_locked`]) | `FOR UPDATE SKIP LOCKED` | nothing, as above |
//! | audit events appended | [`Append`] for `Postgres` | [`Append`] for `Sqlite` |
//!
//! Why values rather than code generic over `sqlx::Database`: Rust does not carry a trait's
//! `where` clauses to the places that name the trait, so every generic function would restate
//! the same dozen bounds (`Uuid: Encode<DB>`, `&mut DB::Connection: Executor`, …). Here they are
//! stated once, in `arguments`; the stores above read as plain functions.

use crate::audit::{Append, Context, Db, NewEvent};
use service_kit::db::{self, Backend};
use service_kit::sql::Dialect as _;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Arguments as _, Database, Encode, FromRow, PgConnection, SqliteConnection, Type};
use uuid::Uuid;

/// A pool on either backend.
#[derive(Debug, Clone)]
pub enum Pool {
    /// Postgres.
    Postgres(sqlx::PgPool),
    /// SQLite.
    Sqlite(sqlx::SqlitePool),
}

impl Pool {
    /// Opens a pool of at most `max` connections on the (already migrated) database `url`.
    pub async fn connect(url: &str, max: u32) -> anyhow::Result<Self> {
        Ok(match Backend::from_url(url)? {
            Backend::Postgres => Self::Postgres(db::connect_postgres(url, max).await?),
            Backend::Sqlite => Self::Sqlite(db::connect_sqlite(url, max).await?),
        })
    }

    /// Begins a write transaction. Callers run it, from here to its commit or rollback, in a
    /// task of its own ([`db::run_to_end`]), so that a dropped caller cannot stop it half-way.
    pub async fn begin_write(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Self::Postgres(p) => Tx::Postgres(p.begin_with(sqlx::Postgres::BEGIN_WRITE).await?),
            Self::Sqlite(p) => Tx::Sqlite(p.begin_with(sqlx::Sqlite::BEGIN_WRITE).await?),
        })
    }

    /// The clause that locks the rows a `SELECT` reads until the transaction ends.
    pub fn for_update(&self) -> &'static str {
        match self {
            Self::Postgres(_) => sqlx::Postgres::FOR_UPDATE,
            Self::Sqlite(_) => sqlx::Sqlite::FOR_UPDATE,
        }
    }

    /// The clause with which workers sharing a queue each lease different rows of `of`.
    pub fn lease_rows(&self, of: &str) -> String {
        match self {
            Self::Postgres(_) => sqlx::Postgres::lease_rows(of),
            Self::Sqlite(_) => sqlx::Sqlite::lease_rows(of),
        }
    }

    /// A connection for reads outside a transaction.
    pub async fn acquire(&self) -> Result<Conn, sqlx::Error> {
        Ok(match self {
            Self::Postgres(p) => Conn::Postgres(p.acquire().await?),
            Self::Sqlite(p) => Conn::Sqlite(p.acquire().await?),
        })
    }
}

/// The audit chain's database is the tenant's database: the same pools.
impl From<Db> for Pool {
    fn from(db: Db) -> Self {
        match db {
            Db::Postgres(p) => Self::Postgres(p),
            Db::Sqlite(p) => Self::Sqlite(p),
        }
    }
}

/// A write transaction on either backend. Dropped without [`Tx::commit`], it rolls back.
pub enum Tx {
    /// Postgres.
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    /// SQLite.
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
}

impl Tx {
    /// Commits.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Self::Postgres(t) => t.commit().await,
            Self::Sqlite(t) => t.commit().await,
        }
    }

    /// Rolls back.
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self {
            Self::Postgres(t) => t.rollback().await,
            Self::Sqlite(t) => t.rollback().await,
        }
    }

    /// Appends `events` to the audit chain, recorded as `context`, as the last statements of
    /// this transaction.
    pub async fn append(
        &mut self,
        context: &Context,
        events: &[NewEvent],
    ) -> Result<(), sqlx::Error> {
        match self {
            Self::Postgres(t) => sqlx::Postgres::append(t, context, events).await,
            Self::Sqlite(t) => sqlx::Sqlite::append(t, context, events).await,
        }
    }
}

/// A pooled connection on either backend.
pub enum Conn {
    /// Postgres.
    Postgres(sqlx::pool::PoolConnection<sqlx::Postgres>),
    /// SQLite.
    Sqlite(sqlx::pool::PoolConnection<sqlx::Sqlite>),
}

/// Where a query runs: a transaction's or a pooled connection.
pub enum Exec<'a> {
    /// Postgres.
    Postgres(&'a mut PgConnection),
    /// SQLite.
    Sqlite(&'a mut SqliteConnection),
}

impl<'a> From<&'a mut Tx> for Exec<'a> {
    fn from(tx: &'a mut Tx) -> Self {
        match tx {
            Tx::Postgres(t) => Exec::Postgres(t),
            Tx::Sqlite(t) => Exec::Sqlite(t),
        }
    }
}

impl<'a> From<&'a mut Conn> for Exec<'a> {
    fn from(conn: &'a mut Conn) -> Self {
        match conn {
            Conn::Postgres(c) => Exec::Postgres(c),
            Conn::Sqlite(c) => Exec::Sqlite(c),
        }
    }
}

/// A shorter borrow of the same connection, for one of several queries.
impl<'a, 'b> From<&'a mut Exec<'b>> for Exec<'a> {
    fn from(on: &'a mut Exec<'b>) -> Self {
        match on {
            Exec::Postgres(c) => Exec::Postgres(c),
            Exec::Sqlite(c) => Exec::Sqlite(c),
        }
    }
}

/// A row a query reads, on either backend: tuples of the column types below.
pub trait Row: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin {}

impl<T> Row for T where T: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin
{}

/// One argument of a query: the column types the side tables use.
#[derive(Debug, Clone)]
pub enum Arg {
    /// `UUID` on Postgres, a 16-byte `BLOB` on SQLite.
    Uuid(Uuid),
    /// `BYTEA` / `BLOB`.
    Bytes(Option<Vec<u8>>),
    /// `TEXT`.
    Text(Option<String>),
    /// `BIGINT` / `INTEGER`.
    Int(Option<i64>),
    /// `INTEGER` on Postgres.
    Int32(i32),
    /// `BOOLEAN`.
    Bool(bool),
}

impl From<Uuid> for Arg {
    fn from(v: Uuid) -> Self {
        Self::Uuid(v)
    }
}

impl From<&Uuid> for Arg {
    fn from(v: &Uuid) -> Self {
        Self::Uuid(*v)
    }
}

impl From<Vec<u8>> for Arg {
    fn from(v: Vec<u8>) -> Self {
        Self::Bytes(Some(v))
    }
}

impl From<Option<Vec<u8>>> for Arg {
    fn from(v: Option<Vec<u8>>) -> Self {
        Self::Bytes(v)
    }
}

impl From<String> for Arg {
    fn from(v: String) -> Self {
        Self::Text(Some(v))
    }
}

impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Self::Text(Some(v.to_string()))
    }
}

impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Self {
        Self::Text(v)
    }
}

impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Self::Int(Some(v))
    }
}

impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Self {
        Self::Int(v)
    }
}

impl From<i32> for Arg {
    fn from(v: i32) -> Self {
        Self::Int32(v)
    }
}

impl From<bool> for Arg {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}

/// A statement and its arguments. `$n` is the n-th argument, on both backends.
#[derive(Debug, Clone)]
#[must_use = "a query does nothing until it runs"]
pub struct Sql {
    text: String,
    args: Vec<Arg>,
}

impl Sql {
    /// The statement `text`, whose `$1`, `$2`, … [`Sql::bind`] fills in order.
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            args: Vec::new(),
        }
    }

    /// The argument of the next `$n` already in the text.
    pub fn bind(mut self, value: impl Into<Arg>) -> Self {
        self.args.push(value.into());
        self
    }

    /// Appends `text`.
    pub fn push(mut self, text: &str) -> Self {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder and its argument.
    pub fn push_bind(mut self, value: impl Into<Arg>) -> Self {
        self.args.push(value.into());
        self.text.push_str(&format!("${}", self.args.len()));
        self
    }

    /// Appends `$a, $b, …`, one placeholder per value (a list for `IN (…)`).
    pub fn push_list<V: Into<Arg>>(mut self, values: impl IntoIterator<Item = V>) -> Self {
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self = self.push_bind(v);
        }
        self
    }

    /// Appends `VALUES (…), (…)`: one row of placeholders for each row's arguments.
    pub fn push_rows<I: IntoIterator<Item = Arg>>(
        mut self,
        rows: impl IntoIterator<Item = I>,
    ) -> Self {
        self.text.push_str(" VALUES ");
        for (i, row) in rows.into_iter().enumerate() {
            self.text.push_str(if i > 0 { ", (" } else { "(" });
            self = self.push_list(row).push(")");
        }
        self
    }

    /// Runs a statement; answers the rows it changed.
    pub async fn execute<'a>(self, on: impl Into<Exec<'a>>) -> Result<u64, sqlx::Error> {
        Ok(match on.into() {
            Exec::Postgres(c) => {
                let args = arguments::<sqlx::Postgres>(self.args)?;
                sqlx::query_with(&self.text, args)
                    .execute(c)
                    .await?
                    .rows_affected()
            }
            Exec::Sqlite(c) => {
                let args = arguments::<sqlx::Sqlite>(self.args)?;
                sqlx::query_with(&self.text, args)
                    .execute(c)
                    .await?
                    .rows_affected()
            }
        })
    }

    /// Runs a query; answers every row.
    pub async fn fetch_all<'a, R: Row>(
        self,
        on: impl Into<Exec<'a>>,
    ) -> Result<Vec<R>, sqlx::Error> {
        match on.into() {
            Exec::Postgres(c) => {
                let args = arguments::<sqlx::Postgres>(self.args)?;
                sqlx::query_as_with(&self.text, args).fetch_all(c).await
            }
            Exec::Sqlite(c) => {
                let args = arguments::<sqlx::Sqlite>(self.args)?;
                sqlx::query_as_with(&self.text, args).fetch_all(c).await
            }
        }
    }

    /// Runs a query that answers at most a few rows; answers the first, if any.
    pub async fn fetch_optional<'a, R: Row>(
        self,
        on: impl Into<Exec<'a>>,
    ) -> Result<Option<R>, sqlx::Error> {
        Ok(self.fetch_all(on).await?.into_iter().next())
    }

    /// Runs a query that answers exactly one row.
    pub async fn fetch_one<'a, R: Row>(self, on: impl Into<Exec<'a>>) -> Result<R, sqlx::Error> {
        self.fetch_optional(on)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }
}

/// A query's arguments encoded for `DB`: the one place that states what sqlx needs to bind
/// each [`Arg`] on a backend.
fn arguments<'q, DB>(args: Vec<Arg>) -> Result<DB::Arguments<'q>, sqlx::Error>
where
    DB: Database,
    DB::Arguments<'q>: Default,
    Uuid: Encode<'q, DB> + Type<DB>,
    Option<Vec<u8>>: Encode<'q, DB> + Type<DB>,
    Option<String>: Encode<'q, DB> + Type<DB>,
    Option<i64>: Encode<'q, DB> + Type<DB>,
    i32: Encode<'q, DB> + Type<DB>,
    bool: Encode<'q, DB> + Type<DB>,
{
    let mut out = DB::Arguments::default();
    for a in args {
        match a {
            Arg::Uuid(v) => out.add(v),
            Arg::Bytes(v) => out.add(v),
            Arg::Text(v) => out.add(v),
            Arg::Int(v) => out.add(v),
            Arg::Int32(v) => out.add(v),
            Arg::Bool(v) => out.add(v),
        }
        .map_err(sqlx::Error::Encode)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_the_arguments_in_order() {
        let q = Sql::new("SELECT a FROM t WHERE b = $1 AND c IN (")
            .bind(1i64)
            .push_list([2i64, 3])
            .push(") AND d = ")
            .push_bind("x");
        assert_eq!(
            q.text,
            "SELECT a FROM t WHERE b = $1 AND c IN ($2, $3) AND d = $4"
        );
        assert_eq!(q.args.len(), 4);
        let rows = Sql::new("INSERT INTO t (a, b)").push_rows([
            [Arg::from(1i64), Arg::from(true)],
            [Arg::from(2i64), Arg::from(false)],
        ]);
        assert_eq!(rows.text, "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)");
    }
}
