//! The chain's SQL, for both backends: appending inside the caller's write transaction, and
//! reading it back (the checkpoint writer, `hush audit verify`).

use super::chain::{self, Event, NewEvent};
use super::context::Context;
use crate::backend::{Column, Run, Statement};
use sqlx::QueryBuilder;
use std::time::{SystemTime, UNIX_EPOCH};

/// Rows per INSERT: 10 parameters each, well under both backends' limits.
const CHUNK: usize = 500;

/// The columns of `audit_events`, in [`EventTuple`] order.
const COLUMNS: &str =
    "seq, at_ms, service, actor, action, group_id, subject, request_id, prev_hash, hash";

type EventTuple = (
    i64,
    i64,
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Vec<u8>,
    Vec<u8>,
);

fn from_tuple(t: EventTuple) -> Event {
    let (seq, at_ms, service, actor, action, group_id, subject, request_id, prev_hash, hash) = t;
    Event {
        seq,
        at_ms,
        service,
        actor,
        action,
        group_id,
        subject,
        request_id,
        prev_hash,
        hash,
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// A database the chain lives in. Appending happens inside a store's transaction through
/// [`Append`]; this handle reads.
#[derive(Debug, Clone)]
pub enum Db {
    /// Postgres.
    Postgres(sqlx::PgPool),
    /// SQLite.
    Sqlite(sqlx::SqlitePool),
}

/// Appends events as the last statements of the caller's write transaction.
pub trait Append: sqlx::Database {
    /// Locks the chain's head (Postgres: `FOR UPDATE`; SQLite: the write transaction already
    /// holds the database), links `events` onto it with the caller's `context`, inserts them
    /// in multi-row statements and moves the head. No events, no statements.
    fn append(
        conn: &mut Self::Connection,
        context: &Context,
        events: &[NewEvent],
    ) -> impl std::future::Future<Output = Result<(), sqlx::Error>> + Send;
}

/// What differs between the backends in appending: how the linked events are inserted (the
/// head's lock is [`service_kit::sql::Dialect::FOR_UPDATE`]).
pub trait Insert: service_kit::sql::Dialect + Run + Column<i64> + Column<Vec<u8>> {
    /// Inserts linked events into `audit_events`.
    fn insert<'a>(
        conn: &'a mut Self::Connection,
        linked: &'a [Event],
    ) -> impl std::future::Future<Output = Result<(), sqlx::Error>> + Send + 'a;
}

impl<DB: Insert> Append for DB {
    async fn append(
        conn: &mut DB::Connection,
        context: &Context,
        events: &[NewEvent],
    ) -> Result<(), sqlx::Error> {
        if events.is_empty() {
            return Ok(());
        }
        let mut q = Statement::new("SELECT seq, hash FROM audit_head WHERE id = 1");
        // The head stays locked until the transaction ends.
        q.push(DB::FOR_UPDATE);
        let head = DB::rows(&mut *conn, q).await?;
        let head = head.first().ok_or(sqlx::Error::RowNotFound)?;
        let (seq, hash): (i64, Vec<u8>) = (DB::get(head, 0)?, DB::get(head, 1)?);
        let linked = chain::link(
            seq,
            &hash,
            now_ms(),
            context.service(),
            context.request_id.as_deref(),
            events,
        );
        DB::insert(&mut *conn, &linked).await?;
        let last = linked.last().expect("not empty");
        let mut q = Statement::new("UPDATE audit_head SET seq = ");
        q.bind(last.seq).push(", hash = ").bind(last.hash.clone());
        q.push(" WHERE id = 1");
        DB::run(&mut *conn, q).await
    }
}

/// On Postgres, one statement over arrays (`UNNEST`), whatever the count, since the chain's
/// head stays locked until the transaction commits and every other writer waits for it.
impl Insert for sqlx::Postgres {
    async fn insert(conn: &mut sqlx::PgConnection, linked: &[Event]) -> Result<(), sqlx::Error> {
        let col = |f: fn(&Event) -> Option<String>| linked.iter().map(f).collect::<Vec<_>>();
        sqlx::query(&format!(
            "INSERT INTO audit_events ({COLUMNS}) SELECT * FROM UNNEST($1::bigint[], $2::bigint[], \
             $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::bytea[], \
             $10::bytea[])"
        ))
        .bind(linked.iter().map(|e| e.seq).collect::<Vec<_>>())
        .bind(linked.iter().map(|e| e.at_ms).collect::<Vec<_>>())
        .bind(linked.iter().map(|e| e.service.clone()).collect::<Vec<_>>())
        .bind(col(|e| e.actor.clone()))
        .bind(linked.iter().map(|e| e.action.clone()).collect::<Vec<_>>())
        .bind(col(|e| e.group_id.clone()))
        .bind(col(|e| e.subject.clone()))
        .bind(col(|e| e.request_id.clone()))
        .bind(
            linked
                .iter()
                .map(|e| e.prev_hash.clone())
                .collect::<Vec<_>>(),
        )
        .bind(linked.iter().map(|e| e.hash.clone()).collect::<Vec<_>>())
        .execute(conn)
        .await?;
        Ok(())
    }
}

/// On SQLite (one writer anyway), multi-row `VALUES`, [`CHUNK`] rows a statement.
impl Insert for sqlx::Sqlite {
    async fn insert(
        conn: &mut sqlx::SqliteConnection,
        linked: &[Event],
    ) -> Result<(), sqlx::Error> {
        for rows in linked.chunks(CHUNK) {
            let mut q =
                QueryBuilder::<sqlx::Sqlite>::new(format!("INSERT INTO audit_events ({COLUMNS}) "));
            q.push_values(rows, |mut b, e| {
                b.push_bind(e.seq)
                    .push_bind(e.at_ms)
                    .push_bind(e.service.clone())
                    .push_bind(e.actor.clone())
                    .push_bind(e.action.clone())
                    .push_bind(e.group_id.clone())
                    .push_bind(e.subject.clone())
                    .push_bind(e.request_id.clone())
                    .push_bind(e.prev_hash.clone())
                    .push_bind(e.hash.clone());
            });
            q.build().execute(&mut *conn).await?;
        }
        Ok(())
    }
}

impl From<sqlx::PgPool> for Db {
    fn from(pool: sqlx::PgPool) -> Self {
        Db::Postgres(pool)
    }
}

impl From<sqlx::SqlitePool> for Db {
    fn from(pool: sqlx::SqlitePool) -> Self {
        Db::Sqlite(pool)
    }
}

impl Db {
    /// Opens the database `url` names without migrating it (for `hush audit verify`, which
    /// must not change what it checks).
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        use service_kit::db::{self as sdb, Backend};
        Ok(match Backend::from_url(url)? {
            Backend::Postgres => Db::Postgres(sdb::connect_postgres(url, 2).await?),
            Backend::Sqlite => {
                // Never create a database while checking one: a mistyped path is an error.
                let path = url
                    .trim_start_matches("sqlite://")
                    .trim_start_matches("sqlite:")
                    .split('?')
                    .next()
                    .unwrap_or_default();
                anyhow::ensure!(
                    path.starts_with(':') || std::path::Path::new(path).exists(),
                    "no SQLite database at {path}"
                );
                Db::Sqlite(sdb::connect_sqlite(url, 2).await?)
            }
        })
    }

    /// The last event's sequence number and hash, read from the events (not the head).
    pub async fn latest(&self) -> Result<Option<(i64, Vec<u8>)>, sqlx::Error> {
        const SQL: &str = "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1";
        match self {
            Db::Postgres(p) => sqlx::query_as(SQL).fetch_optional(p).await,
            Db::Sqlite(p) => sqlx::query_as(SQL).fetch_optional(p).await,
        }
    }

    /// Events with `seq > after`, in sequence order, at most `limit`.
    pub async fn events_after(&self, after: i64, limit: i64) -> Result<Vec<Event>, sqlx::Error> {
        let sql =
            format!("SELECT {COLUMNS} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2");
        let rows: Vec<EventTuple> = match self {
            Db::Postgres(p) => {
                sqlx::query_as(&sql)
                    .bind(after)
                    .bind(limit)
                    .fetch_all(p)
                    .await?
            }
            Db::Sqlite(p) => {
                sqlx::query_as(&sql)
                    .bind(after)
                    .bind(limit)
                    .fetch_all(p)
                    .await?
            }
        };
        Ok(rows.into_iter().map(from_tuple).collect())
    }

    /// Appends `events` in a transaction of their own (events not tied to another write:
    /// privileged reads), recorded as `context`. The transaction runs to its end in a task of
    /// its own, whether or not the caller still waits ([`service_kit::db::run_to_end`]).
    pub async fn append(&self, context: &Context, events: &[NewEvent]) -> Result<(), sqlx::Error> {
        let (db, context, events) = (self.clone(), context.clone(), events.to_vec());
        service_kit::db::run_to_end(async move {
            match db {
                Db::Postgres(p) => {
                    let mut tx = p.begin().await?;
                    <sqlx::Postgres as Append>::append(&mut tx, &context, &events).await?;
                    tx.commit().await
                }
                Db::Sqlite(p) => {
                    let mut tx = p
                        .begin_with(<sqlx::Sqlite as service_kit::sql::Dialect>::BEGIN_WRITE)
                        .await?;
                    <sqlx::Sqlite as Append>::append(&mut tx, &context, &events).await?;
                    tx.commit().await
                }
            }
        })
        .await
    }
}
