//! [`Store`] on SQL ([`SealedStore`]: a `SqlStore` with this service's [`super::Schema`], and the key owners are sealed with): one implementation, generic over the backend ([`Dialect`]), so each
//! statement is written once. Where the backends differ (how a write transaction begins, the
//! row locks Postgres takes and SQLite, with one writer at a time, does not need) the statement
//! takes its clause from [`Dialect`].

use super::apps;
use super::relabels::{self, RelabelRow, Relabels, RELABEL_SELECT};
use super::{
    corrupt, dropped_join_policies, edit_events, group_from, join_policies_text, label_detail,
    label_from, like_pattern, owner_plan, Claim, DiscoverQuery, GroupInsert, GroupTuple,
    GroupWrite, LabelApproval, LabelDelete, LabelInsert, LabelTuple, LabelUpdate, OwnerContact,
    PendingLabelChange, PendingRelabel, Relabel, RelabelApproval, SagaStatus, SealedStore, Store,
    StoreError,
};
use crate::catalog_audit::{self, AuditContext, AuditEntry, CatalogEvent};
use crate::model::{GroupChanges, GroupRecord, NewGroup};
use crate::seal::{OwnerKey, Purpose};
use async_trait::async_trait;
use domain::{Email, GroupId, GroupState, IdentityKind, JoinPolicy, Label, LabelName, Subject};
use service_kit::db;
use service_kit::sql::{self, Dialect};
use sqlx::{Encode, Executor, FromRow, IntoArguments, Type};
use std::collections::HashMap;
use std::marker::PhantomData;
use uuid::Uuid;

/// Ids per statement when reading many groups at once: well under both backends' limit on
/// bound parameters.
const CHUNK: usize = 500;

/// The name under which the default labels' seeding is recorded.
const DEFAULT_LABELS_SEED: &str = "default-labels";

/// The columns of [`LabelTuple`].
const LABEL_SELECT: &str = "SELECT name, description, guests_allowed, agents_allowed, \
     join_policies, sender_policy, anonymous_posting, rank FROM labels";

/// The columns of [`GroupTuple`]; every group read goes through it.
///
/// A security group's address is read as NULL: its stored one is a reserved placeholder (see
/// migration 0012) that no read of the catalog returns, and the NULL is how [`group_from`]
/// knows the group's type (a tuple read takes at most 16 columns, and this one has them all).
const GROUP_SELECT: &str = "SELECT g.id, g.name, g.description, \
     CASE WHEN g.group_type = 'mail' THEN g.contact_address END, \
     g.join_policy, g.sender_policy, g.state, g.created_at, g.updated_at, \
     l.name, l.description, l.guests_allowed, l.agents_allowed, l.join_policies, l.sender_policy, \
     l.anonymous_posting, l.rank FROM groups g JOIN labels l ON l.name = g.label";

/// A row of the catalog's audit.
type AuditRow = (
    i64,
    i64,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
);

fn attempts_from(n: i32) -> u32 {
    u32::try_from(n).unwrap_or_default()
}

/// A stored subject, opened ([`crate::seal`]).
pub(super) fn open_subject(key: &OwnerKey, stored: &str) -> Result<Subject, StoreError> {
    let subject = key.open(Purpose::Subject, stored).map_err(corrupt)?;
    Subject::parse(subject).map_err(corrupt)
}

/// The reads that several operations share, each on the caller's connection or transaction.
/// The one statement that writes a new label: the default labels' seed and label-admins'
/// creates.
struct Labels<DB>(PhantomData<DB>);

impl<DB: Dialect> Labels<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i32: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    /// Inserts `label`, created and updated at `now`; `suffix` ends the statement (a conflict
    /// clause, or nothing).
    async fn insert(
        conn: &mut DB::Connection,
        label: &Label,
        now: i64,
        suffix: &str,
    ) -> Result<DB::QueryResult, sqlx::Error> {
        let sql = format!(
            "INSERT INTO labels (name, description, guests_allowed, agents_allowed, \
             join_policies, sender_policy, anonymous_posting, rank, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9){suffix}"
        );
        sqlx::query(&sql)
            .bind(label.name.as_str())
            .bind(label.description.as_str())
            .bind(label.policy.guests_allowed)
            .bind(label.policy.agents_allowed)
            .bind(join_policies_text(&label.policy.join_policies))
            .bind(label.policy.sender_policy.as_str())
            .bind(label.policy.anonymous_posting)
            .bind(i32::from(label.policy.rank))
            .bind(now)
            .execute(conn)
            .await
    }
}

pub(super) struct Reads<DB>(PhantomData<DB>);

impl<DB: Dialect> Reads<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'r> (i32,): FromRow<'r, DB::Row>,
    for<'r> (String, String): FromRow<'r, DB::Row>,
    for<'r> (Uuid, String): FromRow<'r, DB::Row>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'r> GroupTuple: FromRow<'r, DB::Row>,
    for<'r> LabelTuple: FromRow<'r, DB::Row>,
    for<'q> Uuid: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
{
    /// The owners of each of `ids`, sorted.
    pub(super) async fn owners_of(
        key: &OwnerKey,
        conn: &mut DB::Connection,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, Vec<Subject>>, StoreError> {
        let mut out: HashMap<Uuid, Vec<Subject>> = HashMap::new();
        for chunk in ids.chunks(CHUNK) {
            let sql = format!(
                "SELECT group_id, subject FROM group_owners WHERE group_id IN ({})",
                sql::placeholders(1, chunk.len())
            );
            let mut q = sqlx::query_as::<DB, (Uuid, String)>(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            let rows = q.fetch_all(&mut *conn).await?;
            for (id, subject) in rows {
                out.entry(id)
                    .or_default()
                    .push(open_subject(key, &subject)?);
            }
        }
        // Sorted once opened: the sealed texts' order says nothing.
        for owners in out.values_mut() {
            owners.sort();
        }
        Ok(out)
    }

    /// Turns group rows into records, reading their owners in one statement.
    pub(super) async fn records(
        key: &OwnerKey,
        conn: &mut DB::Connection,
        rows: Vec<GroupTuple>,
    ) -> Result<Vec<GroupRecord>, StoreError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
        let mut owners = Self::owners_of(key, conn, &ids).await?;
        rows.into_iter()
            .map(|r| {
                let o = owners.remove(&r.0).unwrap_or_default();
                group_from(r, o)
            })
            .collect()
    }

    pub(super) async fn read_group(
        key: &OwnerKey,
        conn: &mut DB::Connection,
        id: GroupId,
    ) -> Result<Option<GroupRecord>, StoreError> {
        let sql = format!("{GROUP_SELECT} WHERE g.id = $1");
        let row: Option<GroupTuple> = sqlx::query_as(&sql)
            .bind(*id.as_uuid())
            .fetch_optional(&mut *conn)
            .await?;
        Ok(Self::records(key, conn, row.into_iter().collect())
            .await?
            .pop())
    }

    /// Locks a label row for reading (Postgres: `FOR SHARE`) and reads it.
    pub(super) async fn hold_label(
        conn: &mut DB::Connection,
        name: &str,
    ) -> Result<Option<Label>, StoreError> {
        let sql = format!("{LABEL_SELECT} WHERE name = $1{}", DB::FOR_SHARE);
        let row: Option<LabelTuple> = sqlx::query_as(&sql)
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?;
        row.map(label_from).transpose()
    }

    /// Locks a group row (Postgres: `FOR UPDATE`) and checks `actor` owns it; gives the
    /// group's state and label name when so.
    pub(super) async fn hold_owned_group(
        key: &OwnerKey,
        conn: &mut DB::Connection,
        id: GroupId,
        actor: &Subject,
    ) -> Result<Result<(GroupState, String), GroupWrite>, StoreError> {
        let sql = format!(
            "SELECT state, label FROM groups WHERE id = $1{}",
            DB::FOR_UPDATE
        );
        let row: Option<(String, String)> = sqlx::query_as(&sql)
            .bind(*id.as_uuid())
            .fetch_optional(&mut *conn)
            .await?;
        let Some((state, label)) = row else {
            return Ok(Err(GroupWrite::NotFound));
        };
        let owner: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM group_owners WHERE group_id = $1 AND subject = $2")
                .bind(*id.as_uuid())
                .bind(key.subject(actor))
                .fetch_optional(&mut *conn)
                .await?;
        if owner.is_none() {
            return Ok(Err(GroupWrite::NotOwner));
        }
        Ok(Ok((GroupState::parse(&state).map_err(corrupt)?, label)))
    }
}

/// The columns of [`ChangeRow`].
const CHANGE_SELECT: &str =
    "SELECT id, label, proposed, base, proposed_by, proposed_at FROM label_changes";

/// A pending label change's row: id, label, proposed (JSON), base (JSON), proposer, when.
type ChangeRow = (Uuid, String, String, String, String, i64);

/// A change as the API takes it, stored as `proposed`.
#[derive(serde::Serialize, serde::Deserialize)]
struct ProposedJson {
    description: String,
    policy: domain::LabelPolicy,
}

fn change_from(key: &OwnerKey, row: ChangeRow) -> Result<PendingLabelChange, StoreError> {
    let (id, label, proposed, base, proposed_by, proposed_at) = row;
    let name = LabelName::parse(label).map_err(corrupt)?;
    let p: ProposedJson = serde_json::from_str(&proposed).map_err(corrupt)?;
    Ok(PendingLabelChange {
        id,
        proposed: Label {
            name,
            description: p.description,
            policy: p.policy,
        },
        before: serde_json::from_str(&base).map_err(corrupt)?,
        proposed_by: open_subject(key, &proposed_by)?,
        proposed_at,
    })
}

/// The statements of label edits and their approvals, each on the caller's transaction.
struct LabelChanges<DB>(PhantomData<DB>);

impl<DB: Dialect> LabelChanges<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i32: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> Uuid: Encode<'q, DB> + Type<DB>,
    for<'r> (String,): FromRow<'r, DB::Row>,
    for<'r> (Uuid,): FromRow<'r, DB::Row>,
    for<'r> LabelTuple: FromRow<'r, DB::Row>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    /// The label, locked until the transaction ends.
    async fn current(
        conn: &mut DB::Connection,
        name: &LabelName,
    ) -> Result<Option<Label>, StoreError> {
        let sql = format!("{LABEL_SELECT} WHERE name = $1{}", DB::FOR_UPDATE);
        let row: Option<LabelTuple> = sqlx::query_as(&sql)
            .bind(name.as_str())
            .fetch_optional(&mut *conn)
            .await?;
        row.map(label_from).transpose()
    }

    /// The join policies the label's groups that are not archived use (none: not in use).
    async fn used_join_policies(
        conn: &mut DB::Connection,
        name: &LabelName,
    ) -> Result<Vec<JoinPolicy>, StoreError> {
        let used: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT join_policy FROM groups WHERE label = $1 AND state <> 'archived'",
        )
        .bind(name.as_str())
        .fetch_all(&mut *conn)
        .await?;
        used.iter()
            .map(|p| JoinPolicy::parse(p).map_err(corrupt))
            .collect()
    }

    /// The id of the change to the label waiting for approval, if any.
    async fn pending_id(
        conn: &mut DB::Connection,
        name: &LabelName,
    ) -> Result<Option<Uuid>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT id FROM label_changes WHERE label = $1")
                .bind(name.as_str())
                .fetch_optional(&mut *conn)
                .await?,
        )
    }

    /// Files `change` for approval.
    async fn file(
        key: &OwnerKey,
        conn: &mut DB::Connection,
        change: &PendingLabelChange,
    ) -> Result<(), StoreError> {
        let proposed = ProposedJson {
            description: change.proposed.description.clone(),
            policy: change.proposed.policy.clone(),
        };
        sqlx::query(
            "INSERT INTO label_changes (id, label, proposed, base, proposed_by, proposed_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(change.id)
        .bind(change.proposed.name.as_str())
        .bind(serde_json::to_string(&proposed).map_err(corrupt)?)
        .bind(serde_json::to_string(&change.before).map_err(corrupt)?)
        .bind(key.subject(&change.proposed_by))
        .bind(change.proposed_at)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Removes the pending change `id`.
    async fn drop_change(conn: &mut DB::Connection, id: Uuid) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM label_changes WHERE id = $1")
            .bind(id)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Writes the label's description and policy.
    async fn write(conn: &mut DB::Connection, label: &Label, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE labels SET description = $1, guests_allowed = $2, agents_allowed = $3, \
             join_policies = $4, sender_policy = $5, anonymous_posting = $6, rank = $7, \
             updated_at = $8 WHERE name = $9",
        )
        .bind(label.description.as_str())
        .bind(label.policy.guests_allowed)
        .bind(label.policy.agents_allowed)
        .bind(join_policies_text(&label.policy.join_policies))
        .bind(label.policy.sender_policy.as_str())
        .bind(label.policy.anonymous_posting)
        .bind(i32::from(label.policy.rank))
        .bind(now)
        .bind(label.name.as_str())
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

impl<DB: Dialect> SealedStore<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
    for<'q> Uuid: Encode<'q, DB> + Type<DB>,
    for<'r> (Uuid, String): FromRow<'r, DB::Row>,
    for<'r> (Uuid, String, String): FromRow<'r, DB::Row>,
    for<'r> (String, Option<String>, Option<String>): FromRow<'r, DB::Row>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    /// Seals the rows written before owners were sealed (migration 0007), in one transaction;
    /// answers how many rows changed. Runs at every start and finds nothing once done. The
    /// catalog's audit is append-only: its older rows stay as they were.
    pub(crate) async fn seal_clear_rows(&self) -> Result<u64, StoreError> {
        let key = &self.key;
        let clear = |column: &str| format!("{column} NOT LIKE 'hs1.%'");
        let mut tx = self.pool().begin_with(DB::BEGIN_WRITE).await?;
        let mut changed = 0u64;
        let owners: Vec<(Uuid, String)> = sqlx::query_as(&format!(
            "SELECT group_id, subject FROM group_owners WHERE {}",
            clear("subject")
        ))
        .fetch_all(&mut *tx)
        .await?;
        for (group, subject) in owners {
            sqlx::query(
                "UPDATE group_owners SET subject = $1 WHERE group_id = $2 AND subject = $3",
            )
            .bind(key.seal(Purpose::Subject, &subject))
            .bind(group)
            .bind(subject.as_str())
            .execute(&mut *tx)
            .await?;
            changed += 1;
        }
        let invitations: Vec<(Uuid, String, String)> = sqlx::query_as(&format!(
            "SELECT group_id, subject, invited_by FROM owner_invitations WHERE {} OR {}",
            clear("subject"),
            clear("invited_by")
        ))
        .fetch_all(&mut *tx)
        .await?;
        for (group, subject, by) in invitations {
            sqlx::query(
                "UPDATE owner_invitations SET subject = $1, invited_by = $2 \
                 WHERE group_id = $3 AND subject = $4",
            )
            .bind(key.seal_if_clear(Purpose::Subject, &subject))
            .bind(key.seal_if_clear(Purpose::Subject, &by))
            .bind(group)
            .bind(subject.as_str())
            .execute(&mut *tx)
            .await?;
            changed += 1;
        }
        let contacts: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(&format!(
            "SELECT subject, name, email FROM owner_contacts WHERE {} OR {} OR {}",
            clear("subject"),
            clear("name"),
            clear("email")
        ))
        .fetch_all(&mut *tx)
        .await?;
        for (subject, name, email) in contacts {
            sqlx::query(
                "UPDATE owner_contacts SET subject = $1, name = $2, email = $3 WHERE subject = $4",
            )
            .bind(key.seal_if_clear(Purpose::Subject, &subject))
            .bind(name.map(|n| key.seal_if_clear(Purpose::Name, &n)))
            .bind(email.map(|e| key.seal_if_clear(Purpose::Email, &e)))
            .bind(subject.as_str())
            .execute(&mut *tx)
            .await?;
            changed += 1;
        }
        for table in ["label_changes", "group_relabels"] {
            let rows: Vec<(Uuid, String)> = sqlx::query_as(&format!(
                "SELECT id, proposed_by FROM {table} WHERE {}",
                clear("proposed_by")
            ))
            .fetch_all(&mut *tx)
            .await?;
            for (id, by) in rows {
                sqlx::query(&format!(
                    "UPDATE {table} SET proposed_by = $1 WHERE id = $2"
                ))
                .bind(key.seal(Purpose::Subject, &by))
                .bind(id)
                .execute(&mut *tx)
                .await?;
                changed += 1;
            }
        }
        let creators: Vec<(Uuid, String)> =
            sqlx::query_as("SELECT id, created_by FROM groups WHERE created_by NOT LIKE 'ht1.%'")
                .fetch_all(&mut *tx)
                .await?;
        for (id, creator) in creators {
            // A creator that is not a valid subject still gets a tag: it is never read back.
            let tag = match Subject::parse(creator.as_str()) {
                Ok(s) => key.creator(&s),
                Err(_) => key.creator(&Subject::parse("unknown").map_err(corrupt)?),
            };
            sqlx::query("UPDATE groups SET created_by = $1 WHERE id = $2")
                .bind(tag)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            changed += 1;
        }
        tx.commit().await?;
        if changed > 0 {
            tracing::info!(
                rows = changed,
                "sealed owner rows written before owners were sealed"
            );
            // The clear values' old pages: out of SQLite's log too.
            self.sql.forget().await;
        }
        Ok(changed)
    }
}

#[async_trait]
impl<DB: Dialect> Store for SealedStore<DB>
where
    service_kit::sql::SqlStore<DB, super::Schema>: service_kit::limits::LimitTable,
    SealedStore<DB>: super::AppStore,
    for<'q> i32: Encode<'q, DB> + Type<DB>,
    for<'r> (i64, i64, i64): FromRow<'r, DB::Row>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'r> (i32, Option<String>, Option<i64>): FromRow<'r, DB::Row>,
    for<'r> (i32,): FromRow<'r, DB::Row>,
    for<'r> (String, String): FromRow<'r, DB::Row>,
    for<'r> (String,): FromRow<'r, DB::Row>,
    for<'r> (Uuid, String): FromRow<'r, DB::Row>,
    for<'r> (Uuid, String, i32): FromRow<'r, DB::Row>,
    for<'r> AuditRow: FromRow<'r, DB::Row>,
    for<'q> bool: Encode<'q, DB> + Type<DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'r> GroupTuple: FromRow<'r, DB::Row>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'r> LabelTuple: FromRow<'r, DB::Row>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<Uuid>: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> Uuid: Encode<'q, DB> + Type<DB>,
    for<'r> (Uuid,): FromRow<'r, DB::Row>,
    for<'r> ChangeRow: FromRow<'r, DB::Row>,
    for<'r> (String, Option<String>, Option<String>): FromRow<'r, DB::Row>,
    for<'r> (String, String, String, String): FromRow<'r, DB::Row>,
    for<'r> (Uuid, String, String, String, String): FromRow<'r, DB::Row>,
    for<'r> RelabelRow: FromRow<'r, DB::Row>,
{
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(self.pool()).await?;
        Ok(())
    }

    fn limit_table(&self) -> std::sync::Arc<dyn service_kit::limits::LimitTable> {
        std::sync::Arc::new(self.sql.clone())
    }

    async fn catalog_version(&self) -> Result<String, StoreError> {
        let (seq, updated, groups): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT COALESCE(MAX(seq), 0) FROM catalog_audit), \
             (SELECT COALESCE(MAX(updated_at), 0) FROM groups), \
             (SELECT COUNT(*) FROM groups)",
        )
        .fetch_one(self.pool())
        .await?;
        Ok(format!("{seq}.{updated}.{groups}"))
    }

    async fn catalog_audit(&self, after: i64, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT seq, at_ms, actor, action, group_id, label, detail, request_id \
             FROM catalog_audit WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(seq, at, actor, action, group_id, label, detail, request_id)| {
                    catalog_audit::opened(
                        &self.key,
                        AuditEntry {
                            seq,
                            at: catalog_audit::rfc3339(at),
                            actor,
                            action,
                            group_id,
                            label,
                            detail: serde_json::Value::Null,
                            request_id,
                        },
                        &detail,
                    )
                },
            )
            .collect::<Result<_, _>>()
            .map_err(corrupt)?)
    }

    async fn seed_labels(&self, labels: &[Label], now: i64) -> Result<bool, StoreError> {
        let (this, labels) = (self.clone(), labels.to_vec());
        db::run_to_end(async move {
            let labels = &labels[..];
            // Every early return below rolls back explicitly: dropping a sqlx transaction only
            // queues its ROLLBACK, sent a moment later when the connection goes back to the
            // pool; until then the rows it locked stay locked, and a saga worker's SKIP
            // LOCKED would pass that group by.
            let mut tx = this.pool().begin_with(DB::BEGIN_WRITE).await?;
            // Two replicas starting together: the second waits on the first's row here,
            // then finds it and writes nothing.
            let first = sqlx::query(
                "INSERT INTO seeds (name, applied_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            )
            .bind(DEFAULT_LABELS_SEED)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let first = DB::rows_affected(&first) == 1;
            if first {
                for l in labels {
                    Labels::<DB>::insert(&mut *tx, l, now, " ON CONFLICT DO NOTHING").await?;
                }
            }
            tx.commit().await?;
            Ok(first)
        })
        .await
    }

    async fn list_labels(&self) -> Result<Vec<Label>, StoreError> {
        let rows: Vec<LabelTuple> = sqlx::query_as(&format!("{LABEL_SELECT} ORDER BY name"))
            .fetch_all(self.pool())
            .await?;
        rows.into_iter().map(label_from).collect()
    }

    async fn get_label(&self, name: &LabelName) -> Result<Option<Label>, StoreError> {
        let row: Option<LabelTuple> = sqlx::query_as(&format!("{LABEL_SELECT} WHERE name = $1"))
            .bind(name.as_str())
            .fetch_optional(self.pool())
            .await?;
        row.map(label_from).transpose()
    }

    async fn insert_label(
        &self,
        label: &Label,
        ctx: &AuditContext,
        now: i64,
    ) -> Result<LabelInsert, StoreError> {
        let (this, label, ctx) = (self.clone(), label.clone(), ctx.clone());
        db::run_to_end(async move {
            let (label, ctx) = (&label, &ctx);
            let mut tx = this.pool().begin_with(DB::BEGIN_WRITE).await?;
            let res = Labels::<DB>::insert(&mut *tx, label, now, "").await;
            match res {
                Ok(_) => {
                    let event = CatalogEvent::label(
                        "label.created",
                        label.name.as_str(),
                        label_detail(label),
                    );
                    catalog_audit::append::<DB>(&this.key, &mut *tx, ctx, &[event], now).await?;
                    tx.commit().await?;
                    Ok(LabelInsert::Created)
                }
                Err(e) if db::is_unique_violation(&e) => {
                    tx.rollback().await?;
                    Ok(LabelInsert::NameTaken)
                }
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    async fn update_label(
        &self,
        label: &Label,
        proposer: &Subject,
        ctx: &AuditContext,
        now: i64,
    ) -> Result<LabelUpdate, StoreError> {
        let (this, label, proposer, ctx) =
            (self.clone(), label.clone(), proposer.clone(), ctx.clone());
        db::run_to_end(async move {
            let (label, ctx) = (&label, &ctx);
            let mut tx = this.pool().begin_with(DB::BEGIN_WRITE).await?;
            let Some(before) = LabelChanges::<DB>::current(&mut tx, &label.name).await? else {
                tx.rollback().await?;
                return Ok(LabelUpdate::NotFound);
            };
            let used = LabelChanges::<DB>::used_join_policies(&mut tx, &label.name).await?;
            let dropped = dropped_join_policies(&label.policy, &used);
            if !dropped.is_empty() {
                tx.rollback().await?;
                return Ok(LabelUpdate::JoinPoliciesInUse(dropped));
            }
            // Loosening a label groups use waits for a second label-admin.
            if label.policy.loosens(&before.policy) && !used.is_empty() {
                if let Some(pending) = LabelChanges::<DB>::pending_id(&mut tx, &label.name).await? {
                    tx.rollback().await?;
                    return Ok(LabelUpdate::ChangePending(pending));
                }
                let change = PendingLabelChange {
                    id: Uuid::new_v4(),
                    proposed: label.clone(),
                    before,
                    proposed_by: proposer,
                    proposed_at: now,
                };
                LabelChanges::<DB>::file(&this.key, &mut tx, &change).await?;
                let event = CatalogEvent::label(
                    "label.change-proposed",
                    label.name.as_str(),
                    serde_json::json!({
                        "change": change.id.to_string(),
                        "before": label_detail(&change.before),
                        "proposed": label_detail(label),
                    }),
                );
                catalog_audit::append::<DB>(&this.key, &mut *tx, ctx, &[event], now).await?;
                tx.commit().await?;
                return Ok(LabelUpdate::Proposed(change));
            }
            LabelChanges::<DB>::write(&mut tx, label, now).await?;
            let event =
                CatalogEvent::label("label.updated", label.name.as_str(), label_detail(label));
            catalog_audit::append::<DB>(&this.key, &mut *tx, ctx, &[event], now).await?;
            tx.commit().await?;
            Ok(LabelUpdate::Updated(label.clone()))
        })
        .await
    }

    async fn pending_label_changes(&self) -> Result<Vec<PendingLabelChange>, StoreError> {
        let rows: Vec<ChangeRow> =
            sqlx::query_as(&format!("{CHANGE_SELECT} ORDER BY proposed_at, label"))
                .fetch_all(self.pool())
                .await?;
        rows.into_iter()
            .map(|r| change_from(&self.key, r))
            .collect()
    }

    async fn approve_label_change(
        &self,
        id: Uuid,
        approver: &Subject,
        ctx: &AuditContext,
        now: i64,
    ) -> Result<LabelApproval, StoreError> {
        let (this, approver, ctx) = (self.clone(), approver.clone(), ctx.clone());
        db::run_to_end(async move {
            let ctx = &ctx;
            let mut tx = this.pool().begin_with(DB::BEGIN_WRITE).await?;
            let sql = format!("{CHANGE_SELECT} WHERE id = $1{}", DB::FOR_UPDATE);
            let row: Option<ChangeRow> = sqlx::query_as(&sql)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(change) = row.map(|r| change_from(&this.key, r)).transpose()? else {
                tx.rollback().await?;
                return Ok(LabelApproval::NotFound);
            };
            if change.proposed_by == approver {
                tx.rollback().await?;
                return Ok(LabelApproval::SameAdmin);
            }
            let name = change.proposed.name.clone();
            let current = LabelChanges::<DB>::current(&mut tx, &name).await?;
            LabelChanges::<DB>::drop_change(&mut tx, id).await?;
            if current.as_ref() != Some(&change.before) {
                let event = CatalogEvent::label(
                    "label.change-overtaken",
                    name.as_str(),
                    serde_json::json!({ "change": id.to_string() }),
                )
                .by(&approver);
                catalog_audit::append::<DB>(&this.key, &mut *tx, ctx, &[event], now).await?;
                tx.commit().await?;
                return Ok(LabelApproval::Overtaken);
            }
            let used = LabelChanges::<DB>::used_join_policies(&mut tx, &name).await?;
            let dropped = dropped_join_policies(&change.proposed.policy, &used);
            if !dropped.is_empty() {
                tx.rollback().await?;
                return Ok(LabelApproval::JoinPoliciesInUse(dropped));
            }
            LabelChanges::<DB>::write(&mut tx, &change.proposed, now).await?;
            let mut detail = label_detail(&change.proposed);
            detail["change"] = change.id.to_string().into();
            detail["proposed_by"] = change.proposed_by.as_str().into();
            let event = CatalogEvent::label("label.change-approved", name.as_str(), detail);
            catalog_audit::append::<DB>(&this.key, &mut *tx, ctx, &[event], now).await?;
            tx.commit().await?;
            Ok(LabelApproval::Approved(change.proposed))
        })
        .await
    }

    async fn reject_label_change(
        &self,
        id: Uuid,
        admin: &Subject,
        ctx: &AuditContext,
        now: i64,
    ) -> Result<bool, StoreError> {
        let (this, admin, ctx) = (self.clone(), admin.clone(), ctx.clone());
        db::run_to_end(async move {
            let ctx = &ctx;
            let mut tx = this.pool().begin_with(DB::BEGIN_WRITE).await?;
            let label: Option<String> =
                sqlx::query_scalar("DELETE FROM label_changes WHERE id = $1 RETURNING label")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some(label) = label else {
                tx.rollback().await?;
                return Ok(false);
            };
            let event = CatalogEvent::label(
                "label.change-rejected",
                &label,
                serde_json::json!({ "change": id.to_string() }),
            )
            .by(&admin);
            catalog_audit::append::<DB>(&this.key, &mut *tx, ctx, &[event], now).await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    async fn groups_under_label(&self, name: &LabelName) -> Result<Vec<GroupId>, StoreError> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM groups WHERE label = $1 AND state <> 'archived' ORDER BY id",
        )
        .bind(name.as_str())
        .fetch_all(self.pool())
        .await?;
        Ok(ids.into_iter().map(GroupId::from).collect())
    }

    async fn delete_label(
        &self,
        name: &LabelName,
        ctx: &AuditContext,
    ) -> Result<LabelDelete, StoreError> {
        let (this, name, ctx) = (self.clone(), name.clone(), ctx.clone());
        db::run_to_end(async move {
            let (name, ctx) = (&name, &ctx);
            let label_for_update =
                format!("SELECT name FROM labels WHERE name = $1{}", DB::FOR_UPDATE);
            let mut tx = this.pool().begin_with(DB::BEGIN_WRITE).await?;
            let found: Option<String> = sqlx::query_scalar(&label_for_update)
                .bind(name.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            if found.is_none() {
                tx.rollback().await?;
                return Ok(LabelDelete::NotFound);
            }
            let used: Option<i32> = sqlx::query_scalar(
                "SELECT 1 FROM groups WHERE label = $1 \
                 UNION ALL SELECT 1 FROM resources WHERE label = $1 LIMIT 1",
            )
            .bind(name.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            if used.is_some() {
                tx.rollback().await?;
                return Ok(LabelDelete::InUse);
            }
            sqlx::query("DELETE FROM labels WHERE name = $1")
                .bind(name.as_str())
                .execute(&mut *tx)
                .await?;
            let event = CatalogEvent::label("label.deleted", name.as_str(), serde_json::json!({}));
            catalog_audit::append::<DB>(&this.key, &mut *tx, ctx, &[event], db::now_ms()).await?;
            tx.commit().await?;
            Ok(LabelDelete::Deleted)
        })
        .await
    }

    async fn insert_group(
        &self,
        group: &NewGroup,
        ctx: &AuditContext,
        now: i64,
    ) -> Result<GroupInsert, StoreError> {
        let (this, group, ctx) = (self.clone(), group.clone(), ctx.clone());
        db::run_to_end(async move {
            let (group, ctx) = (&group, &ctx);
            let mut tx = this.pool().begin_with(DB::BEGIN_WRITE).await?;
            // Held until commit: the label cannot change or go away under the new group.
            let Some(label) = Reads::<DB>::hold_label(&mut *tx, group.label.as_str()).await? else {
                tx.rollback().await?;
                return Ok(GroupInsert::NoSuchLabel);
            };
            if !label.policy.allows_join_policy(group.join_policy) {
                tx.rollback().await?;
                return Ok(GroupInsert::JoinPolicyRefused(label));
            }
            if let Some(senders) = group.sender_policy {
                if !label.policy.allows_sender_policy(senders) {
                    tx.rollback().await?;
                    return Ok(GroupInsert::SenderPolicyRefused(label));
                }
            }
            let inserted = sqlx::query(
                "INSERT INTO groups (id, name, description, contact_address, label, join_policy, \
                 sender_policy, state, created_by, created_at, updated_at, next_attempt_at, \
                 group_type) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'provisioning', $8, $9, $9, $9, $10)",
            )
            .bind(*group.id.as_uuid())
            .bind(group.name.as_str())
            .bind(group.description.as_str())
            .bind(group.stored_address().as_str())
            .bind(label.name.as_str())
            .bind(group.join_policy.as_str())
            .bind(group.sender_policy.map(|p| p.as_str()))
            .bind(this.key.creator(&group.creator))
            .bind(now)
            .bind(group.group_type.as_str())
            .execute(&mut *tx)
            .await;
            match inserted {
                Ok(_) => {}
                Err(e) if db::is_unique_violation(&e) => {
                    tx.rollback().await?;
                    return Ok(GroupInsert::AddressTaken);
                }
                Err(e) => return Err(e.into()),
            }
            sqlx::query("INSERT INTO group_owners (group_id, subject) VALUES ($1, $2)")
                .bind(*group.id.as_uuid())
                .bind(this.key.subject(&group.creator))
                .execute(&mut *tx)
                .await?;
            let record = Reads::<DB>::read_group(&this.key, &mut *tx, group.id)
                .await?
                .ok_or_else(|| corrupt("a group just written cannot be read back"))?;
            let event = CatalogEvent::group(
                "group.created",
                group.id,
                serde_json::json!({
                    "name": group.name.as_str(),
                    "label": label.name.as_str(),
                    "join_policy": group.join_policy.as_str(),
                    "sender_policy": group.sender_policy.map(|p| p.as_str()),
                    "type": group.group_type.as_str(),
                    "contact_address": group.contact_address.as_ref().map(Email::as_str),
                    "owners": [group.creator.as_str()],
                }),
            )
            .by(&group.creator);
            catalog_audit::append::<DB>(&this.key, &mut *tx, ctx, &[event], now).await?;
            tx.commit().await?;
            Ok(GroupInsert::Created(record))
        })
        .await
    }

    async fn get_group(&self, id: GroupId) -> Result<Option<GroupRecord>, StoreError> {
        let mut conn = self.pool().acquire().await?;
        Reads::<DB>::read_group(&self.key, &mut *conn, id).await
    }

    async fn lookup_groups(&self, ids: &[GroupId]) -> Result<Vec<GroupRecord>, StoreError> {
        let mut ids: Vec<Uuid> = ids.iter().map(|id| *id.as_uuid()).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut conn = self.pool().acquire().await?;
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK) {
            let sql = format!(
                "{GROUP_SELECT} WHERE g.id IN ({})",
                sql::placeholders(1, chunk.len())
            );
            let mut q = sqlx::query_as::<DB, GroupTuple>(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            let rows = q.fetch_all(&mut *conn).await?;
            out.extend(Reads::<DB>::records(&self.key, &mut *conn, rows).await?);
        }
        Ok(out)
    }

    async fn discover(&self, query: &DiscoverQuery) -> Result<Vec<GroupRecord>, StoreError> {
        let (after_name, after_id) = match &query.after {
            Some((name, id)) => (Some(name.as_str()), Some(*id.as_uuid())),
            None => (None, None),
        };
        let mut conn = self.pool().acquire().await?;
        let sql = format!(
            "{GROUP_SELECT} WHERE g.state = 'active' \
              AND (l.guests_allowed OR NOT $1) \
              AND (l.agents_allowed OR NOT $2) \
              AND (LOWER(g.name) LIKE LOWER($3) ESCAPE '\\' \
                   OR LOWER(g.description) LIKE LOWER($3) ESCAPE '\\') \
              AND ($4 IS NULL OR g.name > $4 OR (g.name = $4 AND g.id > $5)) \
              ORDER BY g.name, g.id LIMIT $6"
        );
        let rows: Vec<GroupTuple> = sqlx::query_as(&sql)
            .bind(query.kind == IdentityKind::Guest)
            .bind(query.kind == IdentityKind::Agent)
            .bind(like_pattern(&query.text))
            .bind(after_name)
            .bind(after_id)
            .bind(i64::from(query.limit))
            .fetch_all(&mut *conn)
            .await?;
        Reads::<DB>::records(&self.key, &mut *conn, rows).await
    }

    async fn update_group(
        &self,
        id: GroupId,
        actor: &Subject,
        changes: &GroupChanges,
        ctx: &AuditContext,
        now: i64,
    ) -> Result<GroupWrite, StoreError> {
        let (this, actor, changes, ctx) =
            (self.clone(), actor.clone(), changes.clone(), ctx.clone());
        db::run_to_end(async move {
            let (actor, changes, ctx) = (&actor, &changes, &ctx);
            let mut tx = this.pool().begin_with(DB::BEGIN_WRITE).await?;
            let (state, label) =
                match Reads::<DB>::hold_owned_group(&this.key, &mut *tx, id, actor).await? {
                    Ok(held) => held,
                    Err(refusal) => {
                        tx.rollback().await?;
                        return Ok(refusal);
                    }
                };
            if matches!(state, GroupState::Archiving | GroupState::Archived) {
                tx.rollback().await?;
                return Ok(GroupWrite::NotEditable(state));
            }
            // The label the changes are checked against, held until commit (only read when a
            // change depends on it).
            let label = if changes.join_policy.is_some()
                || changes.sender_policy.is_some()
                || changes.owners.is_some()
            {
                Some(
                    Reads::<DB>::hold_label(&mut *tx, &label)
                        .await?
                        .ok_or_else(|| corrupt("a group names a label that does not exist"))?,
                )
            } else {
                None
            };
            if let (Some(policy), Some(label)) = (changes.join_policy, &label) {
                if !label.policy.allows_join_policy(policy) {
                    tx.rollback().await?;
                    return Ok(GroupWrite::JoinPolicyRefused(label.clone()));
                }
            }
            if let (Some(senders), Some(label)) = (changes.sender_policy, &label) {
                if !label.policy.allows_sender_policy(senders) {
                    tx.rollback().await?;
                    return Ok(GroupWrite::SenderPolicyRefused(label.clone()));
                }
            }
            let plan = match (&changes.owners, &label) {
                (Some(owners), Some(label)) => {
                    let before = Reads::<DB>::owners_of(&this.key, &mut *tx, &[*id.as_uuid()])
                        .await?
                        .remove(id.as_uuid())
                        .unwrap_or_default();
                    let plan = owner_plan(actor, &before, owners.as_slice(), &label.policy);
                    Some((before, plan))
                }
                _ => None,
            };
            let events = edit_events(
                id,
                actor,
                changes,
                plan.as_ref().map(|(b, p)| (b.as_slice(), p)),
            );
            if !changes.is_empty() {
                sqlx::query(
                    "UPDATE groups SET description = COALESCE($1, description), \
                     join_policy = COALESCE($2, join_policy), \
                     sender_policy = COALESCE($3, sender_policy), updated_at = $4 WHERE id = $5",
                )
                .bind(changes.description.as_ref().map(|d| d.as_str()))
                .bind(changes.join_policy.map(|p| p.as_str()))
                .bind(changes.sender_policy.map(|p| p.as_str()))
                .bind(now)
                .bind(*id.as_uuid())
                .execute(&mut *tx)
                .await?;
            }
            if let Some((_, plan)) = &plan {
                for table in ["group_owners", "owner_invitations"] {
                    sqlx::query(&format!("DELETE FROM {table} WHERE group_id = $1"))
                        .bind(*id.as_uuid())
                        .execute(&mut *tx)
                        .await?;
                }
                if !plan.owners.is_empty() {
                    let sql = format!(
                        "INSERT INTO group_owners (group_id, subject) VALUES {}",
                        sql::value_rows(plan.owners.len(), 2)
                    );
                    let mut q = sqlx::query(&sql);
                    for subject in &plan.owners {
                        q = q.bind(*id.as_uuid()).bind(this.key.subject(subject));
                    }
                    q.execute(&mut *tx).await?;
                }
                if !plan.invited.is_empty() {
                    let sql = format!(
                        "INSERT INTO owner_invitations (group_id, subject, invited_by, invited_at) \
                         VALUES {}",
                        sql::value_rows(plan.invited.len(), 4)
                    );
                    let mut q = sqlx::query(&sql);
                    let inviter = this.key.subject(actor);
                    for subject in &plan.invited {
                        q = q
                            .bind(*id.as_uuid())
                            .bind(this.key.subject(subject))
                            .bind(inviter.clone())
                            .bind(now);
                    }
                    q.execute(&mut *tx).await?;
                }
            }
            let record = Reads::<DB>::read_group(&this.key, &mut *tx, id)
                .await?
                .ok_or_else(|| corrupt("a group being edited cannot be read back"))?;
            catalog_audit::append::<DB>(&this.key, &mut *tx, ctx, &events, now).await?;
            tx.commit().await?;
            Ok(GroupWrite::Done(record))
        })
        .await
    }

    async fn note_owner_contact(
        &self,
        subject: &Subject,
        contact: &OwnerContact,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO owner_contacts (subject, name, email, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (subject) DO UPDATE SET name = excluded.name, email = excluded.email, \
             updated_at = excluded.updated_at",
        )
        .bind(self.key.subject(subject))
        .bind(contact.name.as_deref().map(|n| self.key.seal(Purpose::Name, n)))
        .bind(
            contact
                .email
                .as_ref()
                .map(|e| self.key.seal(Purpose::Email, e.as_str())),
        )
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn owner_contacts(
        &self,
        subjects: &[Subject],
    ) -> Result<Vec<(Subject, OwnerContact)>, StoreError> {
        let mut out = Vec::new();
        for chunk in subjects.chunks(CHUNK) {
            let sql = format!(
                "SELECT subject, name, email FROM owner_contacts WHERE subject IN ({})",
                sql::placeholders(1, chunk.len())
            );
            let mut q = sqlx::query_as::<_, (String, Option<String>, Option<String>)>(&sql);
            for s in chunk {
                q = q.bind(self.key.subject(s));
            }
            for (subject, name, email) in q.fetch_all(self.pool()).await? {
                let open = |purpose, v: &str| self.key.open(purpose, v).map_err(corrupt);
                out.push((
                    open_subject(&self.key, &subject)?,
                    OwnerContact {
                        name: name.map(|n| open(Purpose::Name, &n)).transpose()?,
                        email: email
                            .map(|e| {
                                open(Purpose::Email, &e)
                                    .and_then(|e| Email::parse(e).map_err(corrupt))
                            })
                            .transpose()?,
                    },
                ));
            }
        }
        Ok(out)
    }

    async fn owned_groups(&self, subject: &Subject) -> Result<Vec<GroupRecord>, StoreError> {
        let sql = format!(
            "{GROUP_SELECT} WHERE g.state <> 'archived' AND g.id IN \
             (SELECT group_id FROM group_owners WHERE subject = $1) ORDER BY g.name, g.id"
        );
        let rows: Vec<GroupTuple> = sqlx::query_as(&sql)
            .bind(self.key.subject(subject))
            .fetch_all(self.pool())
            .await?;
        let mut conn = self.pool().acquire().await?;
        Reads::<DB>::records(&self.key, &mut *conn, rows).await
    }

    async fn invited_owners(&self, id: GroupId) -> Result<Vec<Subject>, StoreError> {
        let rows: Vec<String> =
            sqlx::query_scalar("SELECT subject FROM owner_invitations WHERE group_id = $1")
                .bind(*id.as_uuid())
                .fetch_all(self.pool())
                .await?;
        let mut invited = rows
            .iter()
            .map(|s| open_subject(&self.key, s))
            .collect::<Result<Vec<_>, _>>()?;
        invited.sort();
        Ok(invited)
    }

    async fn answer_ownership(
        &self,
        id: GroupId,
        who: &Subject,
        accept: bool,
        ctx: &AuditContext,
        now: i64,
    ) -> Result<Option<GroupRecord>, StoreError> {
        let (this, who, ctx) = (self.clone(), who.clone(), ctx.clone());
        db::run_to_end(async move {
            let (who, ctx) = (&who, &ctx);
            let mut tx = this.pool().begin_with(DB::BEGIN_WRITE).await?;
            let sql = format!("SELECT state FROM groups WHERE id = $1{}", DB::FOR_UPDATE);
            let state: Option<String> = sqlx::query_scalar(&sql)
                .bind(*id.as_uuid())
                .fetch_optional(&mut *tx)
                .await?;
            let editable = matches!(state.as_deref(), Some("provisioning" | "active"));
            let invited: Option<String> = if editable {
                sqlx::query_scalar(
                    "DELETE FROM owner_invitations WHERE group_id = $1 AND subject = $2 \
                     RETURNING subject",
                )
                .bind(*id.as_uuid())
                .bind(this.key.subject(who))
                .fetch_optional(&mut *tx)
                .await?
            } else {
                None
            };
            if invited.is_none() {
                tx.rollback().await?;
                return Ok(None);
            }
            if accept {
                sqlx::query(
                    "INSERT INTO group_owners (group_id, subject) VALUES ($1, $2) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(*id.as_uuid())
                .bind(this.key.subject(who))
                .execute(&mut *tx)
                .await?;
            }
            let action = if accept {
                "group.owner-accepted"
            } else {
                "group.owner-declined"
            };
            let event =
                CatalogEvent::group(action, id, serde_json::json!({ "subject": who.as_str() }))
                    .by(who);
            catalog_audit::append::<DB>(&this.key, &mut *tx, ctx, &[event], now).await?;
            sqlx::query("UPDATE groups SET updated_at = $1 WHERE id = $2")
                .bind(now)
                .bind(*id.as_uuid())
                .execute(&mut *tx)
                .await?;
            let record = Reads::<DB>::read_group(&this.key, &mut *tx, id).await?;
            tx.commit().await?;
            Ok(record)
        })
        .await
    }

    async fn archive_group(
        &self,
        id: GroupId,
        actor: &Subject,
        ctx: &AuditContext,
        now: i64,
    ) -> Result<GroupWrite, StoreError> {
        let (this, actor, ctx) = (self.clone(), actor.clone(), ctx.clone());
        db::run_to_end(async move {
            let (actor, ctx) = (&actor, &ctx);
            let mut tx = this.pool().begin_with(DB::BEGIN_WRITE).await?;
            if let Err(refusal) =
                Reads::<DB>::hold_owned_group(&this.key, &mut *tx, id, actor).await?
            {
                tx.rollback().await?;
                return Ok(refusal);
            }
            // A worker holding a provisioning lease keeps it: it finishes its call, finds
            // the state changed, and releases the group to be deprovisioned after it — so
            // a late provisioning call can never land after the deprovisioning one.
            let archived = sqlx::query(
                "UPDATE groups SET state = 'archiving', attempts = 0, last_error = NULL, \
                 updated_at = $1, \
                 next_attempt_at = CASE WHEN lease_token IS NULL THEN $1 ELSE next_attempt_at END \
                 WHERE id = $2 AND state IN ('provisioning', 'active')",
            )
            .bind(now)
            .bind(*id.as_uuid())
            .execute(&mut *tx)
            .await?;
            if DB::rows_affected(&archived) == 1 {
                let event =
                    CatalogEvent::group("group.archived", id, serde_json::json!({})).by(actor);
                catalog_audit::append::<DB>(&this.key, &mut *tx, ctx, &[event], now).await?;
            }
            let record = Reads::<DB>::read_group(&this.key, &mut *tx, id)
                .await?
                .ok_or_else(|| corrupt("a group being archived cannot be read back"))?;
            tx.commit().await?;
            Ok(GroupWrite::Done(record))
        })
        .await
    }

    async fn relabel_group(
        &self,
        id: GroupId,
        to: &LabelName,
        actor: &Subject,
        ctx: &AuditContext,
        now: i64,
    ) -> Result<Relabel, StoreError> {
        let (this, to, actor, ctx) = (self.clone(), to.clone(), actor.clone(), ctx.clone());
        db::run_to_end(async move {
            let ctx = &ctx;
            let mut tx = this.pool().begin_with(DB::BEGIN_WRITE).await?;
            let Some(group) = Relabels::<DB>::hold_group(&mut tx, id).await? else {
                tx.rollback().await?;
                return Ok(Relabel::NotFound);
            };
            if group.state != GroupState::Active {
                tx.rollback().await?;
                return Ok(Relabel::NotEditable(group.state));
            }
            let from = Reads::<DB>::hold_label(&mut tx, group.label.as_str())
                .await?
                .ok_or_else(|| corrupt("a group names a label that does not exist"))?;
            let Some(new) = Reads::<DB>::hold_label(&mut tx, to.as_str()).await? else {
                tx.rollback().await?;
                return Ok(Relabel::NoSuchLabel);
            };
            if !new.policy.allows_join_policy(group.join_policy) {
                tx.rollback().await?;
                return Ok(Relabel::JoinPolicyRefused(new));
            }
            let guarded = apps::guarded_labels::<DB>(&mut tx, id).await?;
            if let Some(refusal) = apps::first_refusal(&new, &guarded) {
                tx.rollback().await?;
                return Ok(Relabel::GuardsResource(refusal));
            }
            if super::relabel_loosens(&new.policy, &from.policy) {
                if let Some(pending) = Relabels::<DB>::pending_id(&mut tx, id).await? {
                    tx.rollback().await?;
                    return Ok(Relabel::Pending(pending));
                }
                let change = PendingRelabel {
                    id: Uuid::new_v4(),
                    group: id,
                    group_name: group.name,
                    from: from.name.clone(),
                    to: new,
                    proposed_by: actor,
                    proposed_at: now,
                };
                Relabels::<DB>::file(&this.key, &mut tx, &change).await?;
                let event = relabels::event(
                    "group.relabel-proposed",
                    id,
                    &change.from,
                    &change.to,
                    Some(change.id),
                );
                catalog_audit::append::<DB>(&this.key, &mut *tx, ctx, &[event], now).await?;
                tx.commit().await?;
                return Ok(Relabel::Proposed(change));
            }
            if new.name != from.name {
                Relabels::<DB>::write(&mut tx, id, &new.name, now).await?;
                let event = relabels::event("group.relabeled", id, &from.name, &new, None);
                catalog_audit::append::<DB>(&this.key, &mut *tx, ctx, &[event], now).await?;
            }
            let record = Reads::<DB>::read_group(&this.key, &mut tx, id)
                .await?
                .ok_or_else(|| corrupt("a group being re-labelled cannot be read back"))?;
            tx.commit().await?;
            Ok(Relabel::Done(record))
        })
        .await
    }

    async fn pending_relabels(&self) -> Result<Vec<PendingRelabel>, StoreError> {
        let rows: Vec<RelabelRow> =
            sqlx::query_as(&format!("{RELABEL_SELECT} ORDER BY r.proposed_at, r.id"))
                .fetch_all(self.pool())
                .await?;
        rows.into_iter()
            .map(|r| relabels::relabel_from(&self.key, r))
            .collect()
    }

    async fn approve_relabel(
        &self,
        id: Uuid,
        approver: &Subject,
        ctx: &AuditContext,
        now: i64,
    ) -> Result<RelabelApproval, StoreError> {
        let (this, approver, ctx) = (self.clone(), approver.clone(), ctx.clone());
        db::run_to_end(async move {
            let ctx = &ctx;
            let mut tx = this.pool().begin_with(DB::BEGIN_WRITE).await?;
            let Some(change) = Relabels::<DB>::hold(&this.key, &mut tx, id).await? else {
                tx.rollback().await?;
                return Ok(RelabelApproval::NotFound);
            };
            if change.proposed_by == approver {
                tx.rollback().await?;
                return Ok(RelabelApproval::SameAdmin);
            }
            let group = Relabels::<DB>::hold_group(&mut tx, change.group).await?;
            let new = Reads::<DB>::hold_label(&mut tx, change.to.as_str()).await?;
            let current = match (&group, &new) {
                (Some(g), Some(l))
                    if g.state == GroupState::Active
                        && g.label == change.from
                        && l.policy == change.to_policy =>
                {
                    Some((g, l))
                }
                _ => None,
            };
            let Some((group, new)) = current else {
                Relabels::<DB>::drop_change(&mut tx, id).await?;
                let event = CatalogEvent::group(
                    "group.relabel-overtaken",
                    change.group,
                    serde_json::json!({ "change": id.to_string() }),
                )
                .by(&approver);
                catalog_audit::append::<DB>(&this.key, &mut *tx, ctx, &[event], now).await?;
                tx.commit().await?;
                return Ok(RelabelApproval::Overtaken);
            };
            if !new.policy.allows_join_policy(group.join_policy) {
                tx.rollback().await?;
                return Ok(RelabelApproval::JoinPolicyRefused(new.clone()));
            }
            let guarded = apps::guarded_labels::<DB>(&mut tx, change.group).await?;
            if let Some(refusal) = apps::first_refusal(new, &guarded) {
                tx.rollback().await?;
                return Ok(RelabelApproval::GuardsResource(refusal));
            }
            Relabels::<DB>::drop_change(&mut tx, id).await?;
            Relabels::<DB>::write(&mut tx, change.group, &new.name, now).await?;
            let mut event = relabels::event(
                "group.relabel-approved",
                change.group,
                &change.from,
                new,
                Some(id),
            );
            event.detail["proposed_by"] = change.proposed_by.as_str().into();
            catalog_audit::append::<DB>(&this.key, &mut *tx, ctx, &[event], now).await?;
            let record = Reads::<DB>::read_group(&this.key, &mut tx, change.group)
                .await?
                .ok_or_else(|| corrupt("a group being re-labelled cannot be read back"))?;
            tx.commit().await?;
            Ok(RelabelApproval::Approved(record))
        })
        .await
    }

    async fn reject_relabel(
        &self,
        id: Uuid,
        admin: &Subject,
        ctx: &AuditContext,
        now: i64,
    ) -> Result<bool, StoreError> {
        let (this, admin, ctx) = (self.clone(), admin.clone(), ctx.clone());
        db::run_to_end(async move {
            let ctx = &ctx;
            let mut tx = this.pool().begin_with(DB::BEGIN_WRITE).await?;
            let Some(change) = Relabels::<DB>::hold(&this.key, &mut tx, id).await? else {
                tx.rollback().await?;
                return Ok(false);
            };
            Relabels::<DB>::drop_change(&mut tx, id).await?;
            let event = CatalogEvent::group(
                "group.relabel-rejected",
                change.group,
                serde_json::json!({ "change": id.to_string(), "to": change.to.as_str() }),
            )
            .by(&admin);
            catalog_audit::append::<DB>(&this.key, &mut *tx, ctx, &[event], now).await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    async fn claim_due(&self, now: i64, lease_until: i64) -> Result<Option<Claim>, StoreError> {
        let lease = Uuid::new_v4();
        let sql = format!(
            "UPDATE groups SET lease_token = $1, next_attempt_at = $2, last_attempt_at = $3 \
             WHERE id = (SELECT id FROM groups WHERE next_attempt_at <= $3 \
                         ORDER BY next_attempt_at, id LIMIT 1{}) \
             AND next_attempt_at <= $3 RETURNING id, state, attempts",
            DB::lease_rows("groups")
        );
        let row: Option<(Uuid, String, i32)> = sqlx::query_as(&sql)
            .bind(lease)
            .bind(lease_until)
            .bind(now)
            .fetch_optional(self.pool())
            .await?;
        row.map(|(id, state, attempts)| {
            Ok(Claim {
                group: GroupId::from(id),
                state: GroupState::parse(&state).map_err(corrupt)?,
                attempts: attempts_from(attempts),
                lease,
            })
        })
        .transpose()
    }

    async fn complete(&self, claim: &Claim, to: GroupState, now: i64) -> Result<bool, StoreError> {
        let (this, claim) = (self.clone(), claim.clone());
        db::run_to_end(async move {
            let claim = &claim;
            let mut tx = this.pool().begin_with(DB::BEGIN_WRITE).await?;
            let moved = sqlx::query(
                "UPDATE groups SET state = $1, next_attempt_at = NULL, lease_token = NULL, \
                 attempts = 0, last_error = NULL, updated_at = $2 \
                 WHERE id = $3 AND lease_token = $4 AND state = $5",
            )
            .bind(to.as_str())
            .bind(now)
            .bind(*claim.group.as_uuid())
            .bind(claim.lease)
            .bind(claim.state.as_str())
            .execute(&mut *tx)
            .await?;
            let moved = DB::rows_affected(&moved) == 1;
            if !moved {
                sqlx::query(
                    "UPDATE groups SET lease_token = NULL, next_attempt_at = $1 \
                     WHERE id = $2 AND lease_token = $3",
                )
                .bind(now)
                .bind(*claim.group.as_uuid())
                .bind(claim.lease)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(moved)
        })
        .await
    }

    async fn defer(
        &self,
        claim: &Claim,
        error: &str,
        retry_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE groups SET lease_token = NULL, \
             attempts = CASE WHEN state = $1 THEN attempts + 1 ELSE 0 END, \
             last_error = CASE WHEN state = $1 THEN $2 ELSE NULL END, \
             next_attempt_at = CASE WHEN state = $1 THEN $3 ELSE $4 END \
             WHERE id = $5 AND lease_token = $6",
        )
        .bind(claim.state.as_str())
        .bind(error)
        .bind(retry_at)
        .bind(now)
        .bind(*claim.group.as_uuid())
        .bind(claim.lease)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn saga_status(&self, id: GroupId) -> Result<Option<SagaStatus>, StoreError> {
        let row: Option<(i32, Option<String>, Option<i64>)> = sqlx::query_as(
            "SELECT attempts, last_error, next_attempt_at FROM groups WHERE id = $1",
        )
        .bind(*id.as_uuid())
        .fetch_optional(self.pool())
        .await?;
        Ok(
            row.map(|(attempts, last_error, next_attempt_at)| SagaStatus {
                attempts: attempts_from(attempts),
                last_error,
                next_attempt_at,
            }),
        )
    }
}
