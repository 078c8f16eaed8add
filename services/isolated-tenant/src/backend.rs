//! Code generic over the tenant's database backend (Postgres or SQLite).
//!
//! sqlx runs and binds nothing for a database it knows only as a type parameter without a long
//! list of trait bounds. They are written once, here, on [`Run`] and [`Column`], which every
//! sqlx database that has them gets for free. Code generic over a backend `DB: Run + Column<T>`
//! then writes a [`Statement`], binds values into it, runs it with `DB::run` / `DB::rows` and
//! reads a column with `DB::get`, with no bounds of its own.
//!
//! A [`Statement`] holds its values until it runs (sqlx's `QueryBuilder` ties its arguments to
//! a lifetime that generic code cannot shorten), and writes each value's place as `$1`, `$2`, …
//! for Postgres and as `?` for SQLite (its places are bound in order; see [`Statement::bind`]).

use sqlx::error::BoxDynError;
use sqlx::{Database, Row as _};
use std::fmt::Write as _;
use std::future::Future;

/// A statement being written: its text, with the place of the n-th value (`$n`, or `?` on
/// SQLite) where it goes, and the values.
pub struct Statement<DB> {
    sql: String,
    values: Vec<Box<dyn Bind<DB>>>,
}

impl<DB: Database> Statement<DB> {
    /// A statement starting with `sql`.
    pub fn new(sql: impl Into<String>) -> Self {
        Self {
            sql: sql.into(),
            values: Vec::new(),
        }
    }

    /// Appends `sql`.
    pub fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    /// Appends the place of `value`, bound.
    pub fn bind<T>(&mut self, value: T) -> &mut Self
    where
        DB: Column<T>,
    {
        self.values.push(DB::boxed(value));
        if DB::NAME == "SQLite" {
            // In order, unnamed: sqlx looks up every named place of a statement by its name,
            // which SQLite finds by walking the list of names, so a statement with a few
            // hundred `$n` spent more time binding than running.
            self.sql.push('?');
        } else {
            let _ = write!(self.sql, "${}", self.values.len());
        }
        self
    }

    /// Appends `{column} IN (…)` over `values`, bound (at least one).
    pub fn in_list<T>(&mut self, column: &str, values: impl IntoIterator<Item = T>) -> &mut Self
    where
        DB: Column<T>,
    {
        self.push(column).push(" IN (");
        let mut list = List::new(self);
        for value in values {
            list.bind(value);
        }
        self.push(")")
    }

    /// Appends `VALUES (…), (…)`, one tuple per row, whose values `tuple` binds.
    pub fn values<R>(
        &mut self,
        rows: impl IntoIterator<Item = R>,
        mut tuple: impl FnMut(&mut List<'_, DB>, R),
    ) -> &mut Self {
        self.push("VALUES ");
        for (i, row) in rows.into_iter().enumerate() {
            self.push(if i == 0 { "(" } else { ", (" });
            tuple(&mut List::new(self), row);
            self.push(")");
        }
        self
    }
}

/// Values bound one after another, separated by commas.
pub struct List<'s, DB> {
    statement: &'s mut Statement<DB>,
    first: bool,
}

impl<'s, DB: Database> List<'s, DB> {
    fn new(statement: &'s mut Statement<DB>) -> Self {
        Self {
            statement,
            first: true,
        }
    }

    /// Appends the place of `value` (after a comma but for the first), bound.
    pub fn bind<T>(&mut self, value: T) -> &mut Self
    where
        DB: Column<T>,
    {
        if !std::mem::take(&mut self.first) {
            self.statement.push(", ");
        }
        self.statement.bind(value);
        self
    }
}

/// A value waiting to be bound when its statement runs.
pub trait Bind<DB: Database>: Send {
    /// Adds the value to `args`.
    fn add_to(self: Box<Self>, args: &mut DB::Arguments<'_>) -> Result<(), BoxDynError>;
}

impl<DB, T> Bind<DB> for T
where
    DB: Database,
    T: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB> + Send + 'static,
{
    fn add_to(self: Box<Self>, args: &mut DB::Arguments<'_>) -> Result<(), BoxDynError> {
        sqlx::Arguments::add(args, *self)
    }
}

/// Running a [`Statement`] on a connection. Every sqlx database has it.
pub trait Run: Database {
    /// Runs `statement`.
    fn run(
        conn: &mut Self::Connection,
        statement: Statement<Self>,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// Runs `statement`; answers its rows.
    fn rows(
        conn: &mut Self::Connection,
        statement: Statement<Self>,
    ) -> impl Future<Output = Result<Vec<Self::Row>, sqlx::Error>> + Send;
}

impl<DB> Run for DB
where
    DB: Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    async fn run(conn: &mut DB::Connection, statement: Statement<DB>) -> Result<(), sqlx::Error> {
        let Statement { sql, values } = statement;
        let args = arguments::<DB>(values)?;
        sqlx::Executor::execute(conn, sqlx::query_with(&sql, args)).await?;
        Ok(())
    }

    async fn rows(
        conn: &mut DB::Connection,
        statement: Statement<DB>,
    ) -> Result<Vec<DB::Row>, sqlx::Error> {
        let Statement { sql, values } = statement;
        let args = arguments::<DB>(values)?;
        sqlx::Executor::fetch_all(conn, sqlx::query_with(&sql, args)).await
    }
}

/// The arguments of a statement, from its values.
fn arguments<'q, DB: Database>(
    values: Vec<Box<dyn Bind<DB>>>,
) -> Result<DB::Arguments<'q>, sqlx::Error> {
    let mut args = DB::Arguments::default();
    for value in values {
        value.add_to(&mut args).map_err(sqlx::Error::Encode)?;
    }
    Ok(args)
}

/// Binding a `T` into a [`Statement`] and reading one back from a row. Every sqlx database has
/// it for the types it stores.
pub trait Column<T>: Database {
    /// `value`, to bind when its statement runs.
    fn boxed(value: T) -> Box<dyn Bind<Self>>;
    /// Column `index` of `row`.
    fn get(row: &Self::Row, index: usize) -> Result<T, sqlx::Error>;
}

impl<DB, T> Column<T> for DB
where
    DB: Database,
    T: for<'q> sqlx::Encode<'q, DB> + for<'r> sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    T: Send + 'static,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    fn boxed(value: T) -> Box<dyn Bind<DB>> {
        Box::new(value)
    }

    fn get(row: &DB::Row, index: usize) -> Result<T, sqlx::Error> {
        row.try_get(index)
    }
}
