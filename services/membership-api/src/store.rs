//! membership-api's own database: membership *intents* (join requests awaiting an owner,
//! hashed invite codes, claim rules), never a membership list — the tenant is the membership
//! truth (INV-1).
//!
//! What is kept, and why it is not a member list:
//! - a **pending** request names the requester (subject, address, kind) to the owners, by
//!   design, but only through membership-api's key: the requester is sealed at rest
//!   ([`crate::seal`]), and rows are found by a keyed hash of the subject. Once approved the row
//!   is *deleted* (a table of approved requests would list members at rest); a denied row stays
//!   for the requester to see, with the keyed hash only; a withdrawn one is deleted. After each
//!   deletion the SQLite log is truncated, so the files do not keep what the rows held.
//! - an **invite** holds the SHA-256 of its code and a use count, never who redeemed it.
//! - **claim rules** are an owner's conditions over token claims; they name no one.
//!
//! One trait, two backends: [`PgStore`] and [`SqliteStore`] are one implementation
//! ([`SealedStore`]: a [`SqlStore`] with this service's [`Schema`], and the seal key; in `sql`),
//! generic over the backend, so the SQL cannot drift
//! between them: it is written once with `$n` placeholders, which Postgres and sqlx's SQLite driver
//! both read. The backend is chosen once, from the URL's scheme. Every time is milliseconds since
//! the Unix epoch, passed in by the caller (the service's clock).

use crate::seal::RequestKey;
use async_trait::async_trait;
use domain::{Email, GroupId, IdentityKind, Subject};
use service_kit::db::Backend;
use service_kit::sql::{Migrations, SqlStore};
use std::sync::Arc;
use uuid::Uuid;

/// The migrations, embedded in the binary.
static MIGRATIONS: Migrations = Migrations {
    postgres: sqlx::migrate!("../../migrations/membership-api/postgres"),
    sqlite: sqlx::migrate!("../../migrations/membership-api/sqlite"),
};

mod sql;

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

/// The schema of membership-api's database.
pub struct Schema;

impl service_kit::sql::Schema for Schema {
    fn migrations() -> &'static Migrations {
        &MIGRATIONS
    }
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

    /// The rate-limit budgets this database keeps for every replica ([`crate::limits`]).
    fn limit_table(&self) -> Arc<dyn service_kit::limits::LimitTable>;

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
    /// How many requests of `group` are pending (what its owners can list), for the owners'
    /// notification.
    async fn count_pending(&self, group: GroupId) -> Result<i64, sqlx::Error>;
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
    /// Deletes every request `subject` filed, in every group, pending or denied (forget-me).
    async fn forget_requester(&self, subject: &Subject) -> Result<(), sqlx::Error>;
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

/// membership-api's store on backend `DB`: its database, and the key requesters are sealed
/// with.
pub struct SealedStore<DB: sqlx::Database> {
    sql: SqlStore<DB, Schema>,
    key: RequestKey,
}

// Not derived: a derive would ask the backend's marker type for `Clone`.
impl<DB: sqlx::Database> Clone for SealedStore<DB> {
    fn clone(&self) -> Self {
        Self {
            sql: self.sql.clone(),
            key: self.key.clone(),
        }
    }
}

impl<DB: sqlx::Database> SealedStore<DB> {
    /// The store over `sql`, sealing with `key`.
    pub fn new(sql: SqlStore<DB, Schema>, key: RequestKey) -> Self {
        Self { sql, key }
    }

    /// The pool: for the store's own statements, and for tests that work on the schema.
    pub fn pool(&self) -> &sqlx::Pool<DB> {
        self.sql.pool()
    }
}

/// The production store.
pub type PgStore = SealedStore<sqlx::Postgres>;
/// The embedded store of `hush up`.
pub type SqliteStore = SealedStore<sqlx::Sqlite>;

/// Opens the database `url` names (`postgres://…` or `sqlite:…`), with at most `max`
/// connections, migrates it, and seals any requests written before requests were sealed.
pub async fn connect(url: &str, max: u32, key: RequestKey) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match Backend::from_url(url)? {
        Backend::Postgres => {
            let store = PgStore::new(SqlStore::open(url, max).await?, key);
            store.seal_legacy_requests().await?;
            Arc::new(store)
        }
        Backend::Sqlite => {
            let store = SqliteStore::new(SqlStore::open(url, max).await?, key);
            store.seal_legacy_requests().await?;
            Arc::new(store)
        }
    })
}

#[cfg(test)]
mod tests;
