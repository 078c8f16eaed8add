//! membership-api's own database: membership *intents* (join requests awaiting an owner,
//! hashed invite codes, claim rules), never a membership list — the tenant is the membership
//! truth (INV-1).
//!
//! What is kept, and why it is not a member list:
//! - a **pending** request names the requester (subject, address, kind): asking for approval
//!   shows the requester to the owners, by design. Once approved the row is *deleted* (a table
//!   of approved requests would list members at rest); a denied row stays for the requester to
//!   see, without address or kind; a withdrawn one is deleted.
//! - an **invite** holds the SHA-256 of its code and a use count, never who redeemed it.
//! - **claim rules** are an owner's conditions over token claims; they name no one.
//!
//! One trait, two backends. Both implementations are generated from one macro body, so the SQL
//! cannot drift between them: it is written once with `$n` placeholders, which Postgres and
//! sqlx's SQLite driver both read. The backend is chosen once, from the URL's scheme. Every
//! time is milliseconds since the Unix epoch, passed in by the caller (the service's clock).

use async_trait::async_trait;
use domain::{Email, GroupId, IdentityKind, Subject};
use service_kit::db::{self, is_unique_violation, Backend};
use std::sync::Arc;
use uuid::Uuid;

/// A request to join, as the requester files it.
#[derive(Clone)]
pub struct NewRequest {
    /// The group asked to join.
    pub group: GroupId,
    /// Who asks.
    pub subject: Subject,
    /// Where the group's mail will reach them once approved.
    pub email: Email,
    /// Their kind, as their token says; approval re-checks the label with it.
    pub kind: IdentityKind,
}

/// A request waiting for an owner: everything approval needs.
#[derive(Clone, PartialEq, Eq)]
pub struct PendingRequest {
    /// The request's id.
    pub id: Uuid,
    /// The group asked to join.
    pub group: GroupId,
    /// Who asks.
    pub subject: Subject,
    /// Their address.
    pub email: Email,
    /// Their kind when they asked.
    pub kind: IdentityKind,
    /// When they asked (ms).
    pub created_at: i64,
}

/// INV-6: the id and the kind, never the person.
impl std::fmt::Debug for PendingRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingRequest")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// Where a request the requester can still see stands. Approved and withdrawn requests are
/// gone, so they have no status here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestStatus {
    /// Waiting for an owner.
    Pending,
    /// An owner said no.
    Denied,
}

impl RequestStatus {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "denied" => Some(Self::Denied),
            _ => None,
        }
    }
}

/// One of the caller's own requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MyRequest {
    /// The request's id.
    pub id: Uuid,
    /// The group asked to join.
    pub group: GroupId,
    /// Pending or denied.
    pub status: RequestStatus,
    /// When it was filed (ms).
    pub created_at: i64,
    /// When it was denied (ms).
    pub decided_at: Option<i64>,
}

/// A new invite: only the code's hash is kept.
#[derive(Debug, Clone)]
pub struct NewInvite {
    /// The invite's id (shown to owners; not the code).
    pub id: Uuid,
    /// The group it admits to.
    pub group: GroupId,
    /// SHA-256 of the code.
    pub code_hash: [u8; 32],
    /// How many redemptions it allows.
    pub max_uses: i32,
    /// When it stops working (ms).
    pub expires_at: i64,
    /// The owner who made it.
    pub created_by: Subject,
    /// When it was made (ms).
    pub created_at: i64,
}

/// An invite as its group's owners see it: counts and dates, never a code or a redeemer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InviteRecord {
    /// The invite's id.
    pub id: Uuid,
    /// Redemptions so far.
    pub uses: i32,
    /// Redemptions allowed.
    pub max_uses: i32,
    /// When it stops working (ms).
    pub expires_at: i64,
    /// Whether an owner revoked it.
    pub revoked: bool,
    /// When it was made (ms).
    pub created_at: i64,
}

/// What membership-api keeps. Cheap to clone behind an `Arc`; every method is one statement or
/// one transaction.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Answers when the database does (readiness).
    async fn ping(&self) -> Result<(), sqlx::Error>;

    /// Files `req` at `now`, or refreshes the address and kind of the requester's pending
    /// request for the group (asking twice is the same request). Their earlier denied requests
    /// for the group are dropped. Returns the pending request's id and filing time.
    async fn file_request(&self, req: &NewRequest, now: i64) -> Result<(Uuid, i64), sqlx::Error>;
    /// A group's pending requests, oldest first, after the `(created_at, id)` cursor.
    async fn pending_requests(
        &self,
        group: GroupId,
        after: Option<(i64, Uuid)>,
        limit: u32,
    ) -> Result<Vec<PendingRequest>, sqlx::Error>;
    /// One pending request of `group`.
    async fn pending_request(
        &self,
        group: GroupId,
        id: Uuid,
    ) -> Result<Option<PendingRequest>, sqlx::Error>;
    /// Removes an approved request: its requester is now a member, and no row may say so.
    /// False when it was no longer pending.
    async fn delete_approved(&self, group: GroupId, id: Uuid) -> Result<bool, sqlx::Error>;
    /// Marks a pending request denied at `now`, forgetting the address and kind. False when it
    /// was not pending.
    async fn deny_request(&self, group: GroupId, id: Uuid, now: i64) -> Result<bool, sqlx::Error>;
    /// `subject`'s own requests (pending and denied), newest first.
    async fn my_requests(&self, subject: &Subject) -> Result<Vec<MyRequest>, sqlx::Error>;
    /// Deletes one of `subject`'s own requests (withdraws a pending one, dismisses a denied
    /// one). False when `subject` has no request with this id.
    async fn delete_my_request(&self, subject: &Subject, id: Uuid) -> Result<bool, sqlx::Error>;
    /// Deletes `subject`'s pending request for `group`, if any: they were just admitted another
    /// way (claim rules), and the row must not outlive the reason it existed.
    async fn drop_pending(&self, group: GroupId, subject: &Subject) -> Result<(), sqlx::Error>;

    /// The group's claim rules document (JSON), if it has one.
    async fn claim_rules(&self, group: GroupId) -> Result<Option<String>, sqlx::Error>;
    /// Replaces the group's claim rules; `None` removes them.
    async fn set_claim_rules(
        &self,
        group: GroupId,
        rules: Option<&str>,
        now: i64,
    ) -> Result<(), sqlx::Error>;

    /// Stores a new invite (a duplicate code hash is a unique violation).
    async fn create_invite(&self, invite: &NewInvite) -> Result<(), sqlx::Error>;
    /// A group's invites, newest first, at most `limit`.
    async fn invites(&self, group: GroupId, limit: u32) -> Result<Vec<InviteRecord>, sqlx::Error>;
    /// Revokes one of `group`'s invites (again is fine). False when `group` has no such invite.
    async fn revoke_invite(&self, group: GroupId, id: Uuid) -> Result<bool, sqlx::Error>;
    /// The invite with this code hash that can still be redeemed at `now`: its id and group.
    async fn live_invite(
        &self,
        code_hash: &[u8; 32],
        now: i64,
    ) -> Result<Option<(Uuid, GroupId)>, sqlx::Error>;
    /// Takes one use of the invite if it is still live at `now` (atomically: two redeemers of
    /// the last use cannot both have it). False when it is not.
    async fn take_invite_use(&self, id: Uuid, now: i64) -> Result<bool, sqlx::Error>;
    /// Gives back a use taken by a redemption that then failed upstream.
    async fn return_invite_use(&self, id: Uuid) -> Result<(), sqlx::Error>;
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

/// A stored value that does not parse back into its domain type: the database was written by
/// something other than this store.
fn corrupt(what: &'static str) -> sqlx::Error {
    sqlx::Error::Decode(format!("stored {what} does not parse").into())
}

type PendingRow = (Uuid, Uuid, String, Option<String>, Option<String>, i64);

fn pending_from_row(row: PendingRow) -> Result<PendingRequest, sqlx::Error> {
    let (id, group, subject, email, kind, created_at) = row;
    Ok(PendingRequest {
        id,
        group: GroupId::from(group),
        subject: Subject::parse(subject).map_err(|_| corrupt("subject"))?,
        email: email
            .and_then(|e| Email::parse(e).ok())
            .ok_or_else(|| corrupt("address"))?,
        kind: kind
            .and_then(|k| IdentityKind::parse(&k).ok())
            .ok_or_else(|| corrupt("kind"))?,
        created_at,
    })
}

const PENDING_COLUMNS: &str =
    "id, group_id, requester_subject, requester_email, requester_kind, created_at";

/// How often filing retries after losing a race to file the same request.
const FILE_ATTEMPTS: usize = 3;

macro_rules! sql_store {
    ($db:ty, $migrator:expr) => {
        impl SqlStore<$db> {
            /// Wraps a pool, bringing its schema up to date first.
            pub async fn migrate(pool: sqlx::Pool<$db>) -> anyhow::Result<Self> {
                $migrator.run(&pool).await?;
                Ok(Self { pool })
            }

            async fn file_once(&self, req: &NewRequest, now: i64) -> Result<(Uuid, i64), sqlx::Error> {
                let group = *req.group.as_uuid();
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "DELETE FROM join_requests \
                     WHERE group_id = $1 AND requester_subject = $2 AND status = 'denied'",
                )
                .bind(group)
                .bind(req.subject.as_str())
                .execute(&mut *tx)
                .await?;
                let existing: Option<(Uuid, i64)> = sqlx::query_as(
                    "UPDATE join_requests SET requester_email = $3, requester_kind = $4 \
                     WHERE group_id = $1 AND requester_subject = $2 AND status = 'pending' \
                     RETURNING id, created_at",
                )
                .bind(group)
                .bind(req.subject.as_str())
                .bind(req.email.as_str())
                .bind(req.kind.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                let filed = match existing {
                    Some(found) => found,
                    None => {
                        let id = Uuid::new_v4();
                        sqlx::query(
                            "INSERT INTO join_requests (id, group_id, requester_subject, \
                             requester_email, requester_kind, status, created_at) \
                             VALUES ($1, $2, $3, $4, $5, 'pending', $6)",
                        )
                        .bind(id)
                        .bind(group)
                        .bind(req.subject.as_str())
                        .bind(req.email.as_str())
                        .bind(req.kind.as_str())
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                        (id, now)
                    }
                };
                tx.commit().await?;
                Ok(filed)
            }
        }

        #[async_trait]
        impl Store for SqlStore<$db> {
            async fn ping(&self) -> Result<(), sqlx::Error> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn file_request(
                &self,
                req: &NewRequest,
                now: i64,
            ) -> Result<(Uuid, i64), sqlx::Error> {
                // Two filings of the same request at once: one inserts, the other hits the
                // one-pending index and, on its next attempt, finds the row the first made.
                let mut attempt = 1;
                loop {
                    match self.file_once(req, now).await {
                        Err(e) if is_unique_violation(&e) && attempt < FILE_ATTEMPTS => {
                            attempt += 1;
                        }
                        other => return other,
                    }
                }
            }

            async fn pending_requests(
                &self,
                group: GroupId,
                after: Option<(i64, Uuid)>,
                limit: u32,
            ) -> Result<Vec<PendingRequest>, sqlx::Error> {
                let (after_at, after_id) = after.unwrap_or((i64::MIN, Uuid::nil()));
                let rows: Vec<PendingRow> = sqlx::query_as(&format!(
                    "SELECT {PENDING_COLUMNS} FROM join_requests \
                     WHERE group_id = $1 AND status = 'pending' \
                       AND (created_at > $2 OR (created_at = $2 AND id > $3)) \
                     ORDER BY created_at, id LIMIT $4"
                ))
                .bind(*group.as_uuid())
                .bind(after_at)
                .bind(after_id)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(pending_from_row).collect()
            }

            async fn pending_request(
                &self,
                group: GroupId,
                id: Uuid,
            ) -> Result<Option<PendingRequest>, sqlx::Error> {
                let row: Option<PendingRow> = sqlx::query_as(&format!(
                    "SELECT {PENDING_COLUMNS} FROM join_requests \
                     WHERE id = $1 AND group_id = $2 AND status = 'pending'"
                ))
                .bind(id)
                .bind(*group.as_uuid())
                .fetch_optional(&self.pool)
                .await?;
                row.map(pending_from_row).transpose()
            }

            async fn delete_approved(&self, group: GroupId, id: Uuid) -> Result<bool, sqlx::Error> {
                let done = sqlx::query(
                    "DELETE FROM join_requests \
                     WHERE id = $1 AND group_id = $2 AND status = 'pending'",
                )
                .bind(id)
                .bind(*group.as_uuid())
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn deny_request(
                &self,
                group: GroupId,
                id: Uuid,
                now: i64,
            ) -> Result<bool, sqlx::Error> {
                let done = sqlx::query(
                    "UPDATE join_requests SET status = 'denied', decided_at = $3, \
                     requester_email = NULL, requester_kind = NULL \
                     WHERE id = $1 AND group_id = $2 AND status = 'pending'",
                )
                .bind(id)
                .bind(*group.as_uuid())
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn my_requests(&self, subject: &Subject) -> Result<Vec<MyRequest>, sqlx::Error> {
                let rows: Vec<(Uuid, Uuid, String, i64, Option<i64>)> = sqlx::query_as(
                    "SELECT id, group_id, status, created_at, decided_at FROM join_requests \
                     WHERE requester_subject = $1 ORDER BY created_at DESC, id LIMIT 1000",
                )
                .bind(subject.as_str())
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(|(id, group, status, created_at, decided_at)| {
                        Ok(MyRequest {
                            id,
                            group: GroupId::from(group),
                            status: RequestStatus::parse(&status)
                                .ok_or_else(|| corrupt("status"))?,
                            created_at,
                            decided_at,
                        })
                    })
                    .collect()
            }

            async fn delete_my_request(
                &self,
                subject: &Subject,
                id: Uuid,
            ) -> Result<bool, sqlx::Error> {
                let done = sqlx::query(
                    "DELETE FROM join_requests WHERE id = $1 AND requester_subject = $2",
                )
                .bind(id)
                .bind(subject.as_str())
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn drop_pending(&self, group: GroupId, subject: &Subject) -> Result<(), sqlx::Error> {
                sqlx::query(
                    "DELETE FROM join_requests \
                     WHERE group_id = $1 AND requester_subject = $2 AND status = 'pending'",
                )
                .bind(*group.as_uuid())
                .bind(subject.as_str())
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn claim_rules(&self, group: GroupId) -> Result<Option<String>, sqlx::Error> {
                let row: Option<(String,)> =
                    sqlx::query_as("SELECT rules FROM claim_rules WHERE group_id = $1")
                        .bind(*group.as_uuid())
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(row.map(|(r,)| r))
            }

            async fn set_claim_rules(
                &self,
                group: GroupId,
                rules: Option<&str>,
                now: i64,
            ) -> Result<(), sqlx::Error> {
                match rules {
                    None => {
                        sqlx::query("DELETE FROM claim_rules WHERE group_id = $1")
                            .bind(*group.as_uuid())
                            .execute(&self.pool)
                            .await?;
                    }
                    Some(rules) => {
                        sqlx::query(
                            "INSERT INTO claim_rules (group_id, rules, updated_at) \
                             VALUES ($1, $2, $3) ON CONFLICT (group_id) \
                             DO UPDATE SET rules = excluded.rules, updated_at = excluded.updated_at",
                        )
                        .bind(*group.as_uuid())
                        .bind(rules)
                        .bind(now)
                        .execute(&self.pool)
                        .await?;
                    }
                }
                Ok(())
            }

            async fn create_invite(&self, invite: &NewInvite) -> Result<(), sqlx::Error> {
                sqlx::query(
                    "INSERT INTO invites (id, group_id, code_hash, max_uses, uses, expires_at, \
                     revoked, created_by, created_at) \
                     VALUES ($1, $2, $3, $4, 0, $5, FALSE, $6, $7)",
                )
                .bind(invite.id)
                .bind(*invite.group.as_uuid())
                .bind(&invite.code_hash[..])
                .bind(invite.max_uses)
                .bind(invite.expires_at)
                .bind(invite.created_by.as_str())
                .bind(invite.created_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn invites(
                &self,
                group: GroupId,
                limit: u32,
            ) -> Result<Vec<InviteRecord>, sqlx::Error> {
                let rows: Vec<(Uuid, i32, i32, i64, bool, i64)> = sqlx::query_as(
                    "SELECT id, uses, max_uses, expires_at, revoked, created_at FROM invites \
                     WHERE group_id = $1 ORDER BY created_at DESC, id LIMIT $2",
                )
                .bind(*group.as_uuid())
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(id, uses, max_uses, expires_at, revoked, created_at)| InviteRecord {
                        id,
                        uses,
                        max_uses,
                        expires_at,
                        revoked,
                        created_at,
                    })
                    .collect())
            }

            async fn revoke_invite(&self, group: GroupId, id: Uuid) -> Result<bool, sqlx::Error> {
                let done =
                    sqlx::query("UPDATE invites SET revoked = TRUE WHERE id = $1 AND group_id = $2")
                        .bind(id)
                        .bind(*group.as_uuid())
                        .execute(&self.pool)
                        .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn live_invite(
                &self,
                code_hash: &[u8; 32],
                now: i64,
            ) -> Result<Option<(Uuid, GroupId)>, sqlx::Error> {
                let row: Option<(Uuid, Uuid)> = sqlx::query_as(
                    "SELECT id, group_id FROM invites WHERE code_hash = $1 \
                     AND revoked = FALSE AND expires_at > $2 AND uses < max_uses",
                )
                .bind(&code_hash[..])
                .bind(now)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|(id, group)| (id, GroupId::from(group))))
            }

            async fn take_invite_use(&self, id: Uuid, now: i64) -> Result<bool, sqlx::Error> {
                let done = sqlx::query(
                    "UPDATE invites SET uses = uses + 1 WHERE id = $1 \
                     AND revoked = FALSE AND expires_at > $2 AND uses < max_uses",
                )
                .bind(id)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn return_invite_use(&self, id: Uuid) -> Result<(), sqlx::Error> {
                sqlx::query("UPDATE invites SET uses = uses - 1 WHERE id = $1 AND uses > 0")
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
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
