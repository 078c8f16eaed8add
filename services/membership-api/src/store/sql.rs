//! [`Store`] on SQL ([`SqlStore`] with this service's [`Schema`]): one implementation, generic over the backend ([`Dialect`]), so each
//! statement is written once.

use super::{
    InviteRecord, MyRequest, NewInvite, NewRequest, PendingRequest, RequestStatus, Schema, Store,
};
use async_trait::async_trait;
use domain::{Email, GroupId, IdentityKind, Subject};
use service_kit::db::{self, is_unique_violation};
use service_kit::retry::Retry;
use service_kit::sql::{Dialect, SqlStore};
use sqlx::{Encode, Executor, FromRow, IntoArguments, Type};
use std::time::Duration;
use uuid::Uuid;

/// How often filing tries, when it loses a race to file the same request.
const FILE_ATTEMPTS: u32 = 3;

const PENDING_COLUMNS: &str =
    "id, group_id, requester_subject, requester_email, requester_kind, created_at";

type PendingRow = (Uuid, Uuid, String, Option<String>, Option<String>, i64);
type MyRequestRow = (Uuid, Uuid, String, i64, Option<i64>);
type InviteRow = (Uuid, i32, i32, i64, bool, i64);

/// A stored value that does not parse back into its domain type: the database was written by
/// something other than this store.
fn corrupt(what: &'static str) -> sqlx::Error {
    sqlx::Error::Decode(format!("stored {what} does not parse").into())
}

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

#[async_trait]
impl<DB: Dialect> Store for SqlStore<DB, Schema>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'r> (String,): FromRow<'r, DB::Row>,
    for<'r> (Uuid, i64): FromRow<'r, DB::Row>,
    for<'r> (Uuid, Uuid): FromRow<'r, DB::Row>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i32: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'r> InviteRow: FromRow<'r, DB::Row>,
    for<'r> MyRequestRow: FromRow<'r, DB::Row>,
    for<'r> PendingRow: FromRow<'r, DB::Row>,
    for<'q> Uuid: Encode<'q, DB> + Type<DB>,
{
    async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(self.pool()).await?;
        Ok(())
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
                    let mut tx = this.pool().begin_with(DB::BEGIN_WRITE).await?;
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
        .fetch_optional(self.pool())
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
        .execute(self.pool())
        .await?;
        // No record of who was approved stays, in the database's files either.
        self.forget().await;
        Ok(DB::rows_affected(&done) == 1)
    }

    async fn deny_request(&self, group: GroupId, id: Uuid, now: i64) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE join_requests SET status = 'denied', decided_at = $3, \
             requester_email = NULL, requester_kind = NULL \
             WHERE id = $1 AND group_id = $2 AND status = 'pending'",
        )
        .bind(id)
        .bind(*group.as_uuid())
        .bind(now)
        .execute(self.pool())
        .await?;
        // The address and kind are gone from the row: make them gone from the files too.
        self.forget().await;
        Ok(DB::rows_affected(&done) == 1)
    }

    async fn my_requests(&self, subject: &Subject) -> Result<Vec<MyRequest>, sqlx::Error> {
        let rows: Vec<MyRequestRow> = sqlx::query_as(
            "SELECT id, group_id, status, created_at, decided_at FROM join_requests \
             WHERE requester_subject = $1 ORDER BY created_at DESC, id LIMIT 1000",
        )
        .bind(subject.as_str())
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
        let done =
            sqlx::query("DELETE FROM join_requests WHERE id = $1 AND requester_subject = $2")
                .bind(id)
                .bind(subject.as_str())
                .execute(self.pool())
                .await?;
        self.forget().await;
        Ok(DB::rows_affected(&done) == 1)
    }

    async fn drop_pending(&self, group: GroupId, subject: &Subject) -> Result<(), sqlx::Error> {
        sqlx::query(
            "DELETE FROM join_requests \
             WHERE group_id = $1 AND requester_subject = $2 AND status = 'pending'",
        )
        .bind(*group.as_uuid())
        .bind(subject.as_str())
        .execute(self.pool())
        .await?;
        self.forget().await;
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
