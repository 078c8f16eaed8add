//! control-api's database: the label catalog and the group catalog, and the provisioning
//! saga's queue, which is three columns of the group row. All of control-api's SQL is in this
//! module. No table holds a member (INV-1).
//!
//! One trait, two backends. Both implementations are generated from one macro body, so the SQL
//! cannot drift between them: it is written once with `$n` placeholders, which Postgres and
//! sqlx's SQLite driver both read. The only differences are passed in as fragments: how a write
//! transaction begins (`BEGIN IMMEDIATE` on SQLite, so a transaction never has to upgrade a read
//! lock and fail with `SQLITE_BUSY`) and the row-locking clauses Postgres needs and SQLite,
//! holding the whole database for its one writer, does not.
//!
//! Rules that span rows are checked inside the transaction that writes, under the lock of the
//! row they depend on: a group's join policy against its label (creation and edits hold the
//! label `FOR SHARE`; a label edit holds it `FOR UPDATE`), ownership against the group row
//! (`FOR UPDATE`), and "is this label in use" against the label row. So two replicas on one
//! Postgres cannot interleave into a state no single request would have produced.
//!
//! The saga leases work with one atomic `UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP LOCKED)
//! RETURNING`: a claim pushes `next_attempt_at` past the lease and stamps a fresh
//! `lease_token`, so another replica neither sees the group as due nor can finish it, and a
//! replica that dies mid-call loses its lease when the time runs out.

use crate::catalog_audit::{self, CatalogEvent};
use crate::model::{Description, GroupChanges, GroupRecord, NewGroup, Owners};
use async_trait::async_trait;
use domain::{
    Email, GroupId, GroupName, GroupState, IdentityKind, JoinPolicy, Label, LabelName, LabelPolicy,
    SenderPolicy, Subject,
};
use service_kit::db::{self, Backend};
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

/// Ids per statement when reading many groups at once: well under both backends' limit on
/// bound parameters.
const CHUNK: usize = 500;

/// The name under which the default labels' seeding is recorded.
const DEFAULT_LABELS_SEED: &str = "default-labels";

/// Why a store operation failed. Every refusal a caller can cause is an outcome, not an error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// A row holds a value this version cannot read (written by hand, or by a newer version).
    #[error("a stored row does not hold valid values: {0}")]
    Corrupt(String),
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// Outcome of creating a label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelInsert {
    /// Written.
    Created,
    /// A label with this name (ignoring case) exists.
    NameTaken,
}

/// Outcome of changing a label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelUpdate {
    /// Written; the label as it is now.
    Updated(Label),
    /// No label has this name.
    NotFound,
    /// Groups that are not archived use join policies the new policy drops.
    JoinPoliciesInUse(Vec<JoinPolicy>),
}

/// Outcome of deleting a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelDelete {
    /// Gone.
    Deleted,
    /// No label has this name.
    NotFound,
    /// Some group (archived ones included: they keep their record) names it.
    InUse,
}

/// Outcome of creating a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupInsert {
    /// Written, in state `provisioning`.
    Created(GroupRecord),
    /// No label has the name given.
    NoSuchLabel,
    /// The label does not allow the join policy given; here is the label.
    JoinPolicyRefused(Label),
    /// Another group (ever) has the contact address.
    AddressTaken,
}

/// Outcome of an owner's write to a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupWrite {
    /// Written (or nothing to write); the group as it is now.
    Done(GroupRecord),
    /// No group has this id.
    NotFound,
    /// The actor is not among the group's owners.
    NotOwner,
    /// The group is being archived or is archived: it takes no edits.
    NotEditable(GroupState),
    /// The new join policy is not allowed by the group's label; here is the label.
    JoinPolicyRefused(Label),
}

/// What discovery looks for.
#[derive(Debug, Clone)]
pub struct DiscoverQuery {
    /// The caller's kind: only groups whose label admits it are returned.
    pub kind: IdentityKind,
    /// Text to find in the name or the description, case-insensitively; empty finds all.
    pub text: String,
    /// Resume after this (name, id), exclusive.
    pub after: Option<(String, GroupId)>,
    /// At most this many groups.
    pub limit: u32,
}

/// A group the saga has leased: it alone works on it until it completes, defers, or the lease
/// runs out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The group.
    pub group: GroupId,
    /// The state the work is for: `provisioning` or `archiving`.
    pub state: GroupState,
    /// Failed attempts before this one.
    pub attempts: u32,
    /// Proves the lease when completing or deferring.
    pub lease: Uuid,
}

/// The saga's bookkeeping for one group, for tests and operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SagaStatus {
    /// Failed attempts since the group last changed state.
    pub attempts: u32,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the saga will next try (or when the current lease runs out).
    pub next_attempt_at: Option<i64>,
}

/// What control-api keeps. Every method is one statement or one transaction.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Answers when the database does (readiness).
    async fn ping(&self) -> Result<(), StoreError>;

    /// The catalog's audit entries with `seq > after`, oldest first, at most `limit`.
    async fn catalog_audit(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<crate::catalog_audit::AuditEntry>, StoreError>;

    /// Writes `labels` unless this database was seeded before; labels that exist are left as
    /// they are. Returns whether this call seeded. Once seeded, never again: a default label an
    /// admin edited or deleted stays that way.
    async fn seed_labels(&self, labels: &[Label], now: i64) -> Result<bool, StoreError>;

    /// Every label, by name.
    async fn list_labels(&self) -> Result<Vec<Label>, StoreError>;

    /// One label.
    async fn get_label(&self, name: &LabelName) -> Result<Option<Label>, StoreError>;

    /// Creates a label.
    async fn insert_label(&self, label: &Label, now: i64) -> Result<LabelInsert, StoreError>;

    /// Replaces a label's description and policy (the name is its identity and stays).
    async fn update_label(&self, label: &Label, now: i64) -> Result<LabelUpdate, StoreError>;

    /// Deletes a label no group uses.
    async fn delete_label(&self, name: &LabelName) -> Result<LabelDelete, StoreError>;

    /// Creates a group in state `provisioning`, owned by its creator, due for the saga now.
    async fn insert_group(&self, group: &NewGroup, now: i64) -> Result<GroupInsert, StoreError>;

    /// One group.
    async fn get_group(&self, id: GroupId) -> Result<Option<GroupRecord>, StoreError>;

    /// The groups among `ids` that exist, in no particular order.
    async fn lookup_groups(&self, ids: &[GroupId]) -> Result<Vec<GroupRecord>, StoreError>;

    /// Active groups matching `query`, by name then id.
    async fn discover(&self, query: &DiscoverQuery) -> Result<Vec<GroupRecord>, StoreError>;

    /// Applies an owner's changes.
    async fn update_group(
        &self,
        id: GroupId,
        actor: &Subject,
        changes: &GroupChanges,
        now: i64,
    ) -> Result<GroupWrite, StoreError>;

    /// Moves a provisioning or active group to `archiving` (due for the saga); a group already
    /// archiving or archived is left as it is.
    async fn archive_group(
        &self,
        id: GroupId,
        actor: &Subject,
        now: i64,
    ) -> Result<GroupWrite, StoreError>;

    /// Leases the group whose tenant work is most overdue, until `lease_until`.
    async fn claim_due(&self, now: i64, lease_until: i64) -> Result<Option<Claim>, StoreError>;

    /// The tenant confirmed `claim`'s work: move the group to `to` and clear the saga columns.
    /// If the group changed state meanwhile (archived while provisioning), nothing moves and
    /// the lease is released so the new work is due at once. Returns whether the group moved.
    async fn complete(&self, claim: &Claim, to: GroupState, now: i64) -> Result<bool, StoreError>;

    /// The tenant call for `claim` failed: record it and release the lease until `retry_at`
    /// (or now, if the group changed state meanwhile).
    async fn defer(
        &self,
        claim: &Claim,
        error: &str,
        retry_at: i64,
        now: i64,
    ) -> Result<(), StoreError>;

    /// The saga's bookkeeping for one group.
    async fn saga_status(&self, id: GroupId) -> Result<Option<SagaStatus>, StoreError>;
}

/// Migrations for each backend, embedded in the binary.
static PG_MIGRATIONS: sqlx::migrate::Migrator =
    sqlx::migrate!("../../migrations/control-api/postgres");
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator =
    sqlx::migrate!("../../migrations/control-api/sqlite");

/// A label row: name, description, guests, agents, join policies, sender policy.
type LabelTuple = (String, String, bool, bool, String, String);

/// A group row joined with its label's row.
type GroupTuple = (
    Uuid,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    String,
    String,
    bool,
    bool,
    String,
    String,
);

/// The columns of [`GroupTuple`]; every group read goes through it.
macro_rules! group_select {
    () => {
        "SELECT g.id, g.name, g.description, g.contact_address, g.join_policy, g.state, \
         g.created_at, g.updated_at, \
         l.name, l.description, l.guests_allowed, l.agents_allowed, l.join_policies, l.sender_policy \
         FROM groups g JOIN labels l ON l.name = g.label"
    };
}

/// A label's policy, as its audit entries record it.
fn label_detail(label: &Label) -> serde_json::Value {
    serde_json::json!({
        "description": label.description,
        "guests_allowed": label.policy.guests_allowed,
        "agents_allowed": label.policy.agents_allowed,
        "join_policies": join_policies_text(&label.policy.join_policies),
        "sender_policy": label.policy.sender_policy.as_str(),
    })
}

fn join_policies_text(policies: &[JoinPolicy]) -> String {
    policies
        .iter()
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn label_from(t: LabelTuple) -> Result<Label, StoreError> {
    let (name, description, guests_allowed, agents_allowed, join_policies, sender_policy) = t;
    let policy = LabelPolicy {
        guests_allowed,
        agents_allowed,
        join_policies: join_policies
            .split(',')
            .map(JoinPolicy::parse)
            .collect::<Result<_, _>>()
            .map_err(corrupt)?,
        sender_policy: SenderPolicy::parse(&sender_policy).map_err(corrupt)?,
    };
    Ok(Label {
        name: LabelName::parse(name).map_err(corrupt)?,
        description,
        policy,
    })
}

fn group_from(t: GroupTuple, owners: Vec<Subject>) -> Result<GroupRecord, StoreError> {
    let (
        id,
        name,
        description,
        address,
        join_policy,
        state,
        created_at,
        updated_at,
        ln,
        ld,
        lg,
        la,
        lj,
        ls,
    ) = t;
    Ok(GroupRecord {
        id: GroupId::from(id),
        name: GroupName::parse(name).map_err(corrupt)?,
        description: Description::parse(description).map_err(corrupt)?,
        contact_address: Email::parse(address).map_err(corrupt)?,
        label: label_from((ln, ld, lg, la, lj, ls))?,
        join_policy: JoinPolicy::parse(&join_policy).map_err(corrupt)?,
        state: GroupState::parse(&state).map_err(corrupt)?,
        owners: Owners::parse(owners).map_err(corrupt)?,
        created_at,
        updated_at,
    })
}

/// `%text%` with LIKE's wildcards in `text` escaped (escape character `\`).
fn like_pattern(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('%');
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

fn attempts_from(n: i32) -> u32 {
    u32::try_from(n).unwrap_or_default()
}

macro_rules! sql_store {
    (
        $(#[$doc:meta])* $name:ident, $db:ty, $migrator:expr,
        begin_write = $begin:literal,
        for_update = $for_update:literal,
        for_share = $for_share:literal,
        skip_locked = $skip_locked:literal $(,)?
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name {
            pool: sqlx::Pool<$db>,
        }

        impl $name {
            /// Wraps a pool, bringing its schema up to date first.
            pub async fn migrate(pool: sqlx::Pool<$db>) -> anyhow::Result<Self> {
                $migrator.run(&pool).await?;
                Ok(Self { pool })
            }

            /// The pool, for tests that inspect the tables directly.
            #[cfg(test)]
            pub(crate) fn pool(&self) -> &sqlx::Pool<$db> {
                &self.pool
            }

            /// The owners of each of `ids`, sorted.
            async fn owners_of(
                conn: &mut <$db as sqlx::Database>::Connection,
                ids: &[Uuid],
            ) -> Result<HashMap<Uuid, Vec<Subject>>, StoreError> {
                let mut out: HashMap<Uuid, Vec<Subject>> = HashMap::new();
                for chunk in ids.chunks(CHUNK) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "SELECT group_id, subject FROM group_owners WHERE group_id IN (",
                    );
                    let mut list = q.separated(", ");
                    for id in chunk {
                        list.push_bind(*id);
                    }
                    q.push(") ORDER BY group_id, subject");
                    let rows: Vec<(Uuid, String)> = q.build_query_as().fetch_all(&mut *conn).await?;
                    for (id, subject) in rows {
                        out.entry(id)
                            .or_default()
                            .push(Subject::parse(subject).map_err(corrupt)?);
                    }
                }
                Ok(out)
            }

            /// Turns group rows into records, reading their owners in one statement.
            async fn records(
                conn: &mut <$db as sqlx::Database>::Connection,
                rows: Vec<GroupTuple>,
            ) -> Result<Vec<GroupRecord>, StoreError> {
                if rows.is_empty() {
                    return Ok(Vec::new());
                }
                let ids: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
                let mut owners = Self::owners_of(conn, &ids).await?;
                rows.into_iter()
                    .map(|r| {
                        let o = owners.remove(&r.0).unwrap_or_default();
                        group_from(r, o)
                    })
                    .collect()
            }

            async fn read_group(
                conn: &mut <$db as sqlx::Database>::Connection,
                id: GroupId,
            ) -> Result<Option<GroupRecord>, StoreError> {
                let row: Option<GroupTuple> = sqlx::query_as(concat!(group_select!(), " WHERE g.id = $1"))
                    .bind(id.as_uuid())
                    .fetch_optional(&mut *conn)
                    .await?;
                Ok(Self::records(conn, row.into_iter().collect()).await?.pop())
            }

            /// Locks a label row for reading (Postgres: `FOR SHARE`) and reads it.
            async fn hold_label(
                conn: &mut <$db as sqlx::Database>::Connection,
                name: &str,
            ) -> Result<Option<Label>, StoreError> {
                let row: Option<LabelTuple> = sqlx::query_as(concat!(
                    "SELECT name, description, guests_allowed, agents_allowed, join_policies, sender_policy \
                     FROM labels WHERE name = $1",
                    $for_share
                ))
                .bind(name)
                .fetch_optional(&mut *conn)
                .await?;
                row.map(label_from).transpose()
            }

            /// Locks a group row (Postgres: `FOR UPDATE`) and checks `actor` owns it; gives the
            /// group's state and label name when so.
            async fn hold_owned_group(
                conn: &mut <$db as sqlx::Database>::Connection,
                id: GroupId,
                actor: &Subject,
            ) -> Result<Result<(GroupState, String), GroupWrite>, StoreError> {
                let row: Option<(String, String)> = sqlx::query_as(concat!(
                    "SELECT state, label FROM groups WHERE id = $1",
                    $for_update
                ))
                .bind(id.as_uuid())
                .fetch_optional(&mut *conn)
                .await?;
                let Some((state, label)) = row else {
                    return Ok(Err(GroupWrite::NotFound));
                };
                let owner: Option<i32> = sqlx::query_scalar(
                    "SELECT 1 FROM group_owners WHERE group_id = $1 AND subject = $2",
                )
                .bind(id.as_uuid())
                .bind(actor.as_str())
                .fetch_optional(&mut *conn)
                .await?;
                if owner.is_none() {
                    return Ok(Err(GroupWrite::NotOwner));
                }
                Ok(Ok((GroupState::parse(&state).map_err(corrupt)?, label)))
            }
        }

        #[async_trait]
        impl Store for $name {
            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn catalog_audit(
                &self,
                after: i64,
                limit: i64,
            ) -> Result<Vec<crate::catalog_audit::AuditEntry>, StoreError> {
                type Row = (i64, i64, Option<String>, String, Option<String>, Option<String>, String, Option<String>);
                let rows: Vec<Row> = sqlx::query_as(
                    "SELECT seq, at_ms, actor, action, group_id, label, detail, request_id \
                     FROM catalog_audit WHERE seq > $1 ORDER BY seq LIMIT $2",
                )
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(seq, at, actor, action, group_id, label, detail, request_id)| {
                        crate::catalog_audit::AuditEntry {
                            seq,
                            at: crate::catalog_audit::rfc3339(at),
                            actor,
                            action,
                            group_id,
                            label,
                            detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
                            request_id,
                        }
                    })
                    .collect())
            }

            async fn seed_labels(&self, labels: &[Label], now: i64) -> Result<bool, StoreError> {
                // Every early return below rolls back explicitly: dropping a sqlx transaction only
                // queues its ROLLBACK, sent a moment later when the connection goes back to the
                // pool; until then the rows it locked stay locked, and a saga worker's SKIP
                // LOCKED would pass that group by.
                let mut tx = self.pool.begin_with($begin).await?;
                // Two replicas starting together: the second waits on the first's row here,
                // then finds it and writes nothing.
                let first = sqlx::query(
                    "INSERT INTO seeds (name, applied_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                )
                .bind(DEFAULT_LABELS_SEED)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if first {
                    for l in labels {
                        sqlx::query(
                            "INSERT INTO labels (name, description, guests_allowed, agents_allowed, \
                             join_policies, sender_policy, created_at, updated_at) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT DO NOTHING",
                        )
                        .bind(l.name.as_str())
                        .bind(&l.description)
                        .bind(l.policy.guests_allowed)
                        .bind(l.policy.agents_allowed)
                        .bind(join_policies_text(&l.policy.join_policies))
                        .bind(l.policy.sender_policy.as_str())
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                tx.commit().await?;
                Ok(first)
            }

            async fn list_labels(&self) -> Result<Vec<Label>, StoreError> {
                let rows: Vec<LabelTuple> = sqlx::query_as(
                    "SELECT name, description, guests_allowed, agents_allowed, join_policies, sender_policy \
                     FROM labels ORDER BY name",
                )
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(label_from).collect()
            }

            async fn get_label(&self, name: &LabelName) -> Result<Option<Label>, StoreError> {
                let row: Option<LabelTuple> = sqlx::query_as(
                    "SELECT name, description, guests_allowed, agents_allowed, join_policies, sender_policy \
                     FROM labels WHERE name = $1",
                )
                .bind(name.as_str())
                .fetch_optional(&self.pool)
                .await?;
                row.map(label_from).transpose()
            }

            async fn insert_label(&self, label: &Label, now: i64) -> Result<LabelInsert, StoreError> {
                let mut tx = self.pool.begin_with($begin).await?;
                let res = sqlx::query(
                    "INSERT INTO labels (name, description, guests_allowed, agents_allowed, \
                     join_policies, sender_policy, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                )
                .bind(label.name.as_str())
                .bind(&label.description)
                .bind(label.policy.guests_allowed)
                .bind(label.policy.agents_allowed)
                .bind(join_policies_text(&label.policy.join_policies))
                .bind(label.policy.sender_policy.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await;
                match res {
                    Ok(_) => {
                        let event = CatalogEvent::label("label.created", label.name.as_str(), label_detail(label));
                        <$db as catalog_audit::Append>::append(&mut tx, &[event], now).await?;
                        tx.commit().await?;
                        Ok(LabelInsert::Created)
                    }
                    Err(e) if db::is_unique_violation(&e) => {
                        tx.rollback().await?;
                        Ok(LabelInsert::NameTaken)
                    }
                    Err(e) => Err(e.into()),
                }
            }

            async fn update_label(&self, label: &Label, now: i64) -> Result<LabelUpdate, StoreError> {
                let mut tx = self.pool.begin_with($begin).await?;
                let found: Option<String> = sqlx::query_scalar(concat!(
                    "SELECT name FROM labels WHERE name = $1",
                    $for_update
                ))
                .bind(label.name.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                if found.is_none() {
                    tx.rollback().await?;
                    return Ok(LabelUpdate::NotFound);
                }
                let used: Vec<String> = sqlx::query_scalar(
                    "SELECT DISTINCT join_policy FROM groups WHERE label = $1 AND state <> 'archived'",
                )
                .bind(label.name.as_str())
                .fetch_all(&mut *tx)
                .await?;
                let mut dropped = Vec::new();
                for p in used {
                    let p = JoinPolicy::parse(&p).map_err(corrupt)?;
                    if !label.policy.allows_join_policy(p) {
                        dropped.push(p);
                    }
                }
                if !dropped.is_empty() {
                    dropped.sort_by_key(|p| JoinPolicy::ALL.iter().position(|q| q == p));
                    tx.rollback().await?;
                    return Ok(LabelUpdate::JoinPoliciesInUse(dropped));
                }
                sqlx::query(
                    "UPDATE labels SET description = $1, guests_allowed = $2, agents_allowed = $3, \
                     join_policies = $4, sender_policy = $5, updated_at = $6 WHERE name = $7",
                )
                .bind(&label.description)
                .bind(label.policy.guests_allowed)
                .bind(label.policy.agents_allowed)
                .bind(join_policies_text(&label.policy.join_policies))
                .bind(label.policy.sender_policy.as_str())
                .bind(now)
                .bind(label.name.as_str())
                .execute(&mut *tx)
                .await?;
                let event = CatalogEvent::label("label.updated", label.name.as_str(), label_detail(label));
                <$db as catalog_audit::Append>::append(&mut tx, &[event], now).await?;
                tx.commit().await?;
                Ok(LabelUpdate::Updated(label.clone()))
            }

            async fn delete_label(&self, name: &LabelName) -> Result<LabelDelete, StoreError> {
                let mut tx = self.pool.begin_with($begin).await?;
                let found: Option<String> = sqlx::query_scalar(concat!(
                    "SELECT name FROM labels WHERE name = $1",
                    $for_update
                ))
                .bind(name.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                if found.is_none() {
                    tx.rollback().await?;
                    return Ok(LabelDelete::NotFound);
                }
                let used: Option<i32> =
                    sqlx::query_scalar("SELECT 1 FROM groups WHERE label = $1 LIMIT 1")
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
                <$db as catalog_audit::Append>::append(&mut tx, &[event], db::now_ms()).await?;
                tx.commit().await?;
                Ok(LabelDelete::Deleted)
            }

            async fn insert_group(&self, group: &NewGroup, now: i64) -> Result<GroupInsert, StoreError> {
                let mut tx = self.pool.begin_with($begin).await?;
                // Held until commit: the label cannot change or go away under the new group.
                let Some(label) = Self::hold_label(&mut *tx, group.label.as_str()).await? else {
                    tx.rollback().await?;
                    return Ok(GroupInsert::NoSuchLabel);
                };
                if !label.policy.allows_join_policy(group.join_policy) {
                    tx.rollback().await?;
                    return Ok(GroupInsert::JoinPolicyRefused(label));
                }
                let inserted = sqlx::query(
                    "INSERT INTO groups (id, name, description, contact_address, label, join_policy, \
                     state, created_by, created_at, updated_at, next_attempt_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, 'provisioning', $7, $8, $8, $8)",
                )
                .bind(group.id.as_uuid())
                .bind(group.name.as_str())
                .bind(group.description.as_str())
                .bind(group.contact_address.as_str())
                .bind(label.name.as_str())
                .bind(group.join_policy.as_str())
                .bind(group.creator.as_str())
                .bind(now)
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
                    .bind(group.id.as_uuid())
                    .bind(group.creator.as_str())
                    .execute(&mut *tx)
                    .await?;
                let record = Self::read_group(&mut *tx, group.id)
                    .await?
                    .ok_or_else(|| corrupt("a group just written cannot be read back"))?;
                let event = CatalogEvent::group(
                    "group.created",
                    group.id,
                    serde_json::json!({
                        "name": group.name.as_str(),
                        "label": label.name.as_str(),
                        "join_policy": group.join_policy.as_str(),
                        "contact_address": group.contact_address.as_str(),
                        "owners": [group.creator.as_str()],
                    }),
                )
                .by(&group.creator);
                <$db as catalog_audit::Append>::append(&mut tx, &[event], now).await?;
                tx.commit().await?;
                Ok(GroupInsert::Created(record))
            }

            async fn get_group(&self, id: GroupId) -> Result<Option<GroupRecord>, StoreError> {
                let mut conn = self.pool.acquire().await?;
                Self::read_group(&mut *conn, id).await
            }

            async fn lookup_groups(&self, ids: &[GroupId]) -> Result<Vec<GroupRecord>, StoreError> {
                let mut ids: Vec<Uuid> = ids.iter().map(|id| *id.as_uuid()).collect();
                ids.sort_unstable();
                ids.dedup();
                let mut conn = self.pool.acquire().await?;
                let mut out = Vec::with_capacity(ids.len());
                for chunk in ids.chunks(CHUNK) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(concat!(group_select!(), " WHERE g.id IN ("));
                    let mut list = q.separated(", ");
                    for id in chunk {
                        list.push_bind(*id);
                    }
                    q.push(")");
                    let rows: Vec<GroupTuple> = q.build_query_as().fetch_all(&mut *conn).await?;
                    out.extend(Self::records(&mut *conn, rows).await?);
                }
                Ok(out)
            }

            async fn discover(&self, query: &DiscoverQuery) -> Result<Vec<GroupRecord>, StoreError> {
                let (after_name, after_id) = match &query.after {
                    Some((name, id)) => (Some(name.as_str()), Some(*id.as_uuid())),
                    None => (None, None),
                };
                let mut conn = self.pool.acquire().await?;
                let rows: Vec<GroupTuple> = sqlx::query_as(concat!(
                    group_select!(),
                    " WHERE g.state = 'active' \
                      AND (l.guests_allowed OR NOT $1) \
                      AND (l.agents_allowed OR NOT $2) \
                      AND (LOWER(g.name) LIKE LOWER($3) ESCAPE '\\' \
                           OR LOWER(g.description) LIKE LOWER($3) ESCAPE '\\') \
                      AND ($4 IS NULL OR g.name > $4 OR (g.name = $4 AND g.id > $5)) \
                      ORDER BY g.name, g.id LIMIT $6"
                ))
                .bind(query.kind == IdentityKind::Guest)
                .bind(query.kind == IdentityKind::Agent)
                .bind(like_pattern(&query.text))
                .bind(after_name)
                .bind(after_id)
                .bind(i64::from(query.limit))
                .fetch_all(&mut *conn)
                .await?;
                Self::records(&mut *conn, rows).await
            }

            async fn update_group(
                &self,
                id: GroupId,
                actor: &Subject,
                changes: &GroupChanges,
                now: i64,
            ) -> Result<GroupWrite, StoreError> {
                let mut tx = self.pool.begin_with($begin).await?;
                let (state, label) = match Self::hold_owned_group(&mut *tx, id, actor).await? {
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
                if let Some(policy) = changes.join_policy {
                    let label = Self::hold_label(&mut *tx, &label)
                        .await?
                        .ok_or_else(|| corrupt("a group names a label that does not exist"))?;
                    if !label.policy.allows_join_policy(policy) {
                        tx.rollback().await?;
                        return Ok(GroupWrite::JoinPolicyRefused(label));
                    }
                }
                let mut events = Vec::new();
                if changes.description.is_some() || changes.join_policy.is_some() {
                    let mut detail = serde_json::Map::new();
                    if changes.description.is_some() {
                        detail.insert("description".into(), serde_json::json!("changed"));
                    }
                    if let Some(p) = changes.join_policy {
                        detail.insert("join_policy".into(), serde_json::json!(p.as_str()));
                    }
                    events.push(CatalogEvent::group("group.edited", id, detail.into()).by(actor));
                }
                if !changes.is_empty() {
                    sqlx::query(
                        "UPDATE groups SET description = COALESCE($1, description), \
                         join_policy = COALESCE($2, join_policy), updated_at = $3 WHERE id = $4",
                    )
                    .bind(changes.description.as_ref().map(|d| d.as_str()))
                    .bind(changes.join_policy.map(|p| p.as_str()))
                    .bind(now)
                    .bind(id.as_uuid())
                    .execute(&mut *tx)
                    .await?;
                }
                if let Some(owners) = &changes.owners {
                    let before = Self::owners_of(&mut *tx, &[*id.as_uuid()])
                        .await?
                        .remove(id.as_uuid())
                        .unwrap_or_default();
                    for s in owners.as_slice().iter().filter(|s| !before.contains(s)) {
                        events.push(CatalogEvent::group("group.owner-added", id, serde_json::json!({"subject": s.as_str()})).by(actor));
                    }
                    for s in before.iter().filter(|s| !owners.as_slice().contains(s)) {
                        events.push(CatalogEvent::group("group.owner-removed", id, serde_json::json!({"subject": s.as_str()})).by(actor));
                    }
                    sqlx::query("DELETE FROM group_owners WHERE group_id = $1")
                        .bind(id.as_uuid())
                        .execute(&mut *tx)
                        .await?;
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO group_owners (group_id, subject) ",
                    );
                    q.push_values(owners.as_slice(), |mut row, subject| {
                        row.push_bind(id.as_uuid()).push_bind(subject.as_str());
                    });
                    q.build().execute(&mut *tx).await?;
                }
                let record = Self::read_group(&mut *tx, id)
                    .await?
                    .ok_or_else(|| corrupt("a group being edited cannot be read back"))?;
                <$db as catalog_audit::Append>::append(&mut tx, &events, now).await?;
                tx.commit().await?;
                Ok(GroupWrite::Done(record))
            }

            async fn archive_group(
                &self,
                id: GroupId,
                actor: &Subject,
                now: i64,
            ) -> Result<GroupWrite, StoreError> {
                let mut tx = self.pool.begin_with($begin).await?;
                if let Err(refusal) = Self::hold_owned_group(&mut *tx, id, actor).await? {
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
                .bind(id.as_uuid())
                .execute(&mut *tx)
                .await?;
                if archived.rows_affected() == 1 {
                    let event = CatalogEvent::group("group.archived", id, serde_json::json!({})).by(actor);
                    <$db as catalog_audit::Append>::append(&mut tx, &[event], now).await?;
                }
                let record = Self::read_group(&mut *tx, id)
                    .await?
                    .ok_or_else(|| corrupt("a group being archived cannot be read back"))?;
                tx.commit().await?;
                Ok(GroupWrite::Done(record))
            }

            async fn claim_due(&self, now: i64, lease_until: i64) -> Result<Option<Claim>, StoreError> {
                let lease = Uuid::new_v4();
                let row: Option<(Uuid, String, i32)> = sqlx::query_as(concat!(
                    "UPDATE groups SET lease_token = $1, next_attempt_at = $2, last_attempt_at = $3 \
                     WHERE id = (SELECT id FROM groups WHERE next_attempt_at <= $3 \
                                 ORDER BY next_attempt_at, id LIMIT 1",
                    $skip_locked,
                    ") AND next_attempt_at <= $3 RETURNING id, state, attempts"
                ))
                .bind(lease)
                .bind(lease_until)
                .bind(now)
                .fetch_optional(&self.pool)
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
                let mut tx = self.pool.begin_with($begin).await?;
                let moved = sqlx::query(
                    "UPDATE groups SET state = $1, next_attempt_at = NULL, lease_token = NULL, \
                     attempts = 0, last_error = NULL, updated_at = $2 \
                     WHERE id = $3 AND lease_token = $4 AND state = $5",
                )
                .bind(to.as_str())
                .bind(now)
                .bind(claim.group.as_uuid())
                .bind(claim.lease)
                .bind(claim.state.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if !moved {
                    sqlx::query(
                        "UPDATE groups SET lease_token = NULL, next_attempt_at = $1 \
                         WHERE id = $2 AND lease_token = $3",
                    )
                    .bind(now)
                    .bind(claim.group.as_uuid())
                    .bind(claim.lease)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(moved)
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
                .bind(claim.group.as_uuid())
                .bind(claim.lease)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn saga_status(&self, id: GroupId) -> Result<Option<SagaStatus>, StoreError> {
                let row: Option<(i32, Option<String>, Option<i64>)> = sqlx::query_as(
                    "SELECT attempts, last_error, next_attempt_at FROM groups WHERE id = $1",
                )
                .bind(id.as_uuid())
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|(attempts, last_error, next_attempt_at)| SagaStatus {
                    attempts: attempts_from(attempts),
                    last_error,
                    next_attempt_at,
                }))
            }
        }
    };
}

sql_store!(
    /// The production store.
    PgStore,
    sqlx::Postgres,
    PG_MIGRATIONS,
    begin_write = "BEGIN",
    for_update = " FOR UPDATE",
    for_share = " FOR SHARE",
    skip_locked = " FOR UPDATE SKIP LOCKED",
);
sql_store!(
    /// The embedded store of `hush up`. One writer at a time holds the whole database, so no
    /// row locks are needed; writes begin `IMMEDIATE` to take the write lock up front.
    SqliteStore,
    sqlx::Sqlite,
    SQLITE_MIGRATIONS,
    begin_write = "BEGIN IMMEDIATE",
    for_update = "",
    for_share = "",
    skip_locked = "",
);

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
