//! [`Store`] on SQL ([`SealedStore`]: a [`service_kit::sql::SqlStore`] with this service's
//! schema, and the seal key): one implementation, generic over the backend ([`Dialect`]), so
//! each statement is written once.

use super::{
    InviteRecord, MyRequest, NewInvite, NewRequest, PendingRequest, RequestStatus, SealedStore,
    Store,
};
use crate::seal::Requester;
use async_trait::async_trait;
use domain::{Email, GroupId, IdentityKind, Subject};
use service_kit::db::{self, is_unique_violation};
use service_kit::retry::Retry;
use service_kit::sql::Dialect;
use sqlx::{Encode, Executor, FromRow, IntoArguments, Type};
use std::time::Duration;
use uuid::Uuid;

/// How often filing tries, when it loses a race to file the same request.
const FILE_ATTEMPTS: u32 = 3;

const PENDING_COLUMNS: &str = "id, group_id, sealed_requester, created_at";

type PendingRow = (Uuid, Uuid, Option<Vec<u8>>, i64);
/// A row of the table requests were kept in, in clear, before they were sealed.
type LegacyRow = (
    Uuid,
    Uuid,
    String,
    Option<String>,
    Option<String>,
    String,
    i64,
    Option<i64>,
);
type MyRequestRow = (Uuid, Uuid, String, i64, Option<i64>);
type InviteRow = (Uuid, i32, i32, i64, bool, i64);

/// A stored value that does not parse back into its domain type: the database was written by
/// something other than this store.
fn corrupt(what: &'static str) -> sqlx::Error {
    sqlx::Error::Decode(format!("stored {what} does not parse").into())
}

impl<DB: Dialect> SealedStore<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    /// After a statement that deletes request rows or empties their requester: truncates the
    /// log when it changed any row ([`service_kit::sql::SqlStore::forget`]), so a no-op (a
    /// request already decided, nothing pending to drop) costs no checkpoint; answers how many
    /// rows it changed.
    async fn forget_changed(&self, done: &DB::QueryResult) -> u64 {
        let changed = DB::rows_affected(done);
        if changed > 0 {
            self.sql.forget().await;
        }
        changed
    }

    /// Opens a pending row's requester. A row that does not open (sealed under another key:
    /// the key was changed or lost) is an error an operator sees in the log.
    fn pending_from_row(&self, row: PendingRow) -> Result<PendingRequest, sqlx::Error> {
        let (id, group, sealed, created_at) = row;
        let group = GroupId::from(group);
        let who = sealed
            .and_then(|s| self.key.open(group, &s))
            .ok_or_else(|| {
                corrupt("requester (does the seal key match the one it was sealed with?)")
            })?;
        Ok(PendingRequest {
            id,
            group,
            subject: Subject::parse(who.subject).map_err(|_| corrupt("subject"))?,
            email: Email::parse(who.email).map_err(|_| corrupt("address"))?,
            kind: IdentityKind::parse(&who.kind).map_err(|_| corrupt("kind"))?,
            created_at,
        })
    }
}

impl<DB: Dialect> SealedStore<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> Vec<u8>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<Vec<u8>>: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    for<'q> Uuid: Encode<'q, DB> + Type<DB>,
    for<'r> (i64,): FromRow<'r, DB::Row>,
    for<'r> LegacyRow: FromRow<'r, DB::Row>,
{
    /// Seals the requests a database written before requests were sealed still holds in clear
    /// (`join_requests_legacy`, left by migration 0003) into `join_requests` and deletes them, in
    /// one transaction, so a crash leaves it to the next start; then drops the legacy table when
    /// this role owns it (else `hush db-setup` does) and truncates the log.
    /// Nothing to do on a database that never had one.
    pub async fn seal_legacy_requests(&self) -> anyhow::Result<()> {
        let exists = match DB::BACKEND {
            service_kit::db::Backend::Sqlite => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' \
                 AND name = 'join_requests_legacy'"
            }
            service_kit::db::Backend::Postgres => {
                "SELECT COUNT(*) FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name = 'join_requests_legacy'"
            }
        };
        let (n,): (i64,) = sqlx::query_as(exists).fetch_one(self.pool()).await?;
        if n == 0 {
            return Ok(());
        }
        let mut tx = self.pool().begin_with(DB::BEGIN_WRITE).await?;
        let rows: Vec<LegacyRow> = sqlx::query_as(
            "SELECT id, group_id, requester_subject, requester_email, requester_kind, status, \
             created_at, decided_at FROM join_requests_legacy",
        )
        .fetch_all(&mut *tx)
        .await?;
        let sealed = rows.len();
        for (id, group, subject, email, kind, status, created_at, decided_at) in rows {
            let subject = Subject::parse(subject).map_err(|_| corrupt("subject"))?;
            let requester = match (status.as_str(), email, kind) {
                ("pending", Some(email), Some(kind)) => Some(self.key.seal(
                    GroupId::from(group),
                    &Requester {
                        subject: subject.as_str().to_string(),
                        email,
                        kind,
                    },
                )),
                _ => None,
            };
            sqlx::query(
                "INSERT INTO join_requests (id, group_id, requester_tag, sealed_requester, \
                 status, created_at, decided_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(id)
            .bind(group)
            .bind(self.key.tag(&subject))
            .bind(requester)
            .bind(status.as_str())
            .bind(created_at)
            .bind(decided_at)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM join_requests_legacy")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        // Dropping the emptied table needs its owner. In production the service's role only
        // reads and writes rows (`hush db-setup`), and db-setup drops it, empty, as the owner:
        // then it stays empty here until the next db-setup, which is harmless.
        if let Err(e) = sqlx::query("DROP TABLE join_requests_legacy")
            .execute(self.pool())
            .await
        {
            tracing::info!(error = %e, "the emptied join_requests_legacy stays until `hush db-setup` drops it");
        }
        self.sql.forget().await;
        if sealed > 0 {
            tracing::info!(sealed, "join requests written in clear are now sealed");
        }
        Ok(())
    }
}

#[async_trait]
impl<DB: Dialect> Store for SealedStore<DB>
where
    service_kit::sql::SqlStore<DB, super::Schema>: service_kit::limits::LimitTable,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'r> (String,): FromRow<'r, DB::Row>,
    for<'r> (Uuid, i64): FromRow<'r, DB::Row>,
    for<'r> (i64,): FromRow<'r, DB::Row>,
    for<'r> (Uuid, Uuid): FromRow<'r, DB::Row>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i32: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'r> InviteRow: FromRow<'r, DB::Row>,
    for<'r> MyRequestRow: FromRow<'r, DB::Row>,
    for<'r> PendingRow: FromRow<'r, DB::Row>,
    for<'q> Uuid: Encode<'q, DB> + Type<DB>,
    for<'q> Vec<u8>: Encode<'q, DB> + Type<DB>,
{
    async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(self.pool()).await?;
        Ok(())
    }

    fn limit_table(&self) -> std::sync::Arc<dyn service_kit::limits::LimitTable> {
        std::sync::Arc::new(self.sql.clone())
    }

    async fn file_request(&self, req: &NewRequest, now: i64) -> Result<(Uuid, i64), sqlx::Error> {
        // Two filings of the same request at once: one inserts, the other hits the
        // one-pending index and, on its next attempt, finds the row the first made. Each
        // attempt's transaction runs to its end in a task of its own (`db::run_to_end`).
        Retry::new(FILE_ATTEMPTS, Duration::ZERO)
            .run(is_unique_violation, || {
                let (this, req) = (self.clone(), req.clone());
                db::run_to_end(async move {
                    let req = &req;
                    let group = *req.group.as_uuid();
                    let tag = this.key.tag(&req.subject);
                    let sealed = this.key.seal(
                        req.group,
                        &Requester::new(&req.subject, &req.email, req.kind),
                    );
                    let mut tx = this.pool().begin_with(DB::BEGIN_WRITE).await?;
                    sqlx::query(
                        "DELETE FROM join_requests \
                         WHERE group_id = $1 AND requester_tag = $2 AND status = 'denied'",
                    )
                    .bind(group)
                    .bind(tag.clone())
                    .execute(&mut *tx)
                    .await?;
                    let existing: Option<(Uuid, i64)> = sqlx::query_as(
                        "UPDATE join_requests SET sealed_requester = $3 \
                         WHERE group_id = $1 AND requester_tag = $2 AND status = 'pending' \
                         RETURNING id, created_at",
                    )
                    .bind(group)
                    .bind(tag.clone())
                    .bind(sealed.clone())
                    .fetch_optional(&mut *tx)
                    .await?;
                    let filed = match existing {
                        Some(found) => found,
                        None => {
                            let id = Uuid::new_v4();
                            sqlx::query(
                                "INSERT INTO join_requests (id, group_id, requester_tag, \
                                 sealed_requester, status, created_at) \
                                 VALUES ($1, $2, $3, $4, 'pending', $5)",
                            )
                            .bind(id)
                            .bind(group)
                            .bind(tag)
                            .bind(sealed)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                            (id, now)
                        }
                    };
                    tx.commit().await?;
                    Ok(filed)
                })
            })
            .await
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
        .fetch_all(self.pool())
        .await?;
        rows.into_iter().map(|r| self.pending_from_row(r)).collect()
    }

    async fn count_pending(&self, group: GroupId) -> Result<i64, sqlx::Error> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM join_requests WHERE group_id = $1 AND status = 'pending'",
        )
        .bind(*group.as_uuid())
        .fetch_one(self.pool())
        .await?;
        Ok(n)
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
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| self.pending_from_row(r)).transpose()
    }

    async fn delete_approved(&self, group: GroupId, id: Uuid) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "DELETE FROM join_requests \
             WHERE id = $1 AND group_id = $2 AND status = 'pending'",
        )
        .bind(id)
        .bind(*group.as_uuid())
        .execute(self.pool())
        .await?;
        // No record of who was approved stays, in the database's files either.
        Ok(self.forget_changed(&done).await == 1)
    }

    async fn deny_request(&self, group: GroupId, id: Uuid, now: i64) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE join_requests SET status = 'denied', decided_at = $3, \
             sealed_requester = NULL \
             WHERE id = $1 AND group_id = $2 AND status = 'pending'",
        )
        .bind(id)
        .bind(*group.as_uuid())
        .bind(now)
        .execute(self.pool())
        .await?;
        // The requester is gone from the row: make it gone from the files too.
        Ok(self.forget_changed(&done).await == 1)
    }

    async fn my_requests(&self, subject: &Subject) -> Result<Vec<MyRequest>, sqlx::Error> {
        let rows: Vec<MyRequestRow> = sqlx::query_as(
            "SELECT id, group_id, status, created_at, decided_at FROM join_requests \
             WHERE requester_tag = $1 ORDER BY created_at DESC, id LIMIT 1000",
        )
        .bind(self.key.tag(subject))
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|(id, group, status, created_at, decided_at)| {
                Ok(MyRequest {
                    id,
                    group: GroupId::from(group),
                    status: RequestStatus::parse(&status).ok_or_else(|| corrupt("status"))?,
                    created_at,
                    decided_at,
                })
            })
            .collect()
    }

    async fn delete_my_request(&self, subject: &Subject, id: Uuid) -> Result<bool, sqlx::Error> {
        let done = sqlx::query("DELETE FROM join_requests WHERE id = $1 AND requester_tag = $2")
            .bind(id)
            .bind(self.key.tag(subject))
            .execute(self.pool())
            .await?;
        Ok(self.forget_changed(&done).await == 1)
    }

    async fn forget_requester(&self, subject: &Subject) -> Result<(), sqlx::Error> {
        let done = sqlx::query("DELETE FROM join_requests WHERE requester_tag = $1")
            .bind(self.key.tag(subject))
            .execute(self.pool())
            .await?;
        self.forget_changed(&done).await;
        Ok(())
    }

    async fn drop_pending(&self, group: GroupId, subject: &Subject) -> Result<(), sqlx::Error> {
        let done = sqlx::query(
            "DELETE FROM join_requests \
             WHERE group_id = $1 AND requester_tag = $2 AND status = 'pending'",
        )
        .bind(*group.as_uuid())
        .bind(self.key.tag(subject))
        .execute(self.pool())
        .await?;
        self.forget_changed(&done).await;
        Ok(())
    }

    async fn claim_rules(&self, group: GroupId) -> Result<Option<String>, sqlx::Error> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT rules FROM claim_rules WHERE group_id = $1")
                .bind(*group.as_uuid())
                .fetch_optional(self.pool())
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
                    .execute(self.pool())
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
                .execute(self.pool())
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
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn invites(&self, group: GroupId, limit: u32) -> Result<Vec<InviteRecord>, sqlx::Error> {
        let rows: Vec<InviteRow> = sqlx::query_as(
            "SELECT id, uses, max_uses, expires_at, revoked, created_at FROM invites \
             WHERE group_id = $1 ORDER BY created_at DESC, id LIMIT $2",
        )
        .bind(*group.as_uuid())
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(id, uses, max_uses, expires_at, revoked, created_at)| InviteRecord {
                    id,
                    uses,
                    max_uses,
                    expires_at,
                    revoked,
                    created_at,
                },
            )
            .collect())
    }

    async fn revoke_invite(&self, group: GroupId, id: Uuid) -> Result<bool, sqlx::Error> {
        let done = sqlx::query("UPDATE invites SET revoked = TRUE WHERE id = $1 AND group_id = $2")
            .bind(id)
            .bind(*group.as_uuid())
            .execute(self.pool())
            .await?;
        Ok(DB::rows_affected(&done) == 1)
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
        .fetch_optional(self.pool())
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
        .execute(self.pool())
        .await?;
        Ok(DB::rows_affected(&done) == 1)
    }

    async fn return_invite_use(&self, id: Uuid) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE invites SET uses = uses - 1 WHERE id = $1 AND uses > 0")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
