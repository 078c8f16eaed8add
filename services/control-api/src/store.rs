//! control-api's database: the label catalog and the group catalog, and the provisioning
//! saga's queue, which is three columns of the group row. All of control-api's SQL is in this
//! module. No table holds a member (INV-1).
//!
//! One trait, two backends: [`PgStore`] and [`SqliteStore`] are one implementation
//! ([`SealedStore`]: a [`SqlStore`] with this service's [`Schema`] and the key owners are sealed
//! with, in `sql`), generic over the backend, so the SQL cannot drift
//! between them: it is written once with `$n` placeholders, which Postgres and sqlx's SQLite driver
//! both read. What really differs comes from [`service_kit::sql::Dialect`]: how a write transaction
//! begins (`BEGIN IMMEDIATE` on SQLite, so a transaction never has to upgrade a read lock and fail
//! with `SQLITE_BUSY`) and the row-locking clauses Postgres needs and SQLite, holding the whole
//! database for its one writer, does not. The rules the writes enforce are plain functions here (a
//! label edit may not drop a join policy in use; what an edit records).
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

use crate::catalog_audit::{AuditContext, CatalogEvent};
use crate::model::{Description, GroupChanges, GroupRecord, NewGroup, Owners};
use crate::seal::OwnerKey;
use async_trait::async_trait;
use domain::{
    Email, GroupId, GroupName, GroupState, GroupType, IdentityKind, JoinPolicy, Label, LabelName,
    LabelPolicy, SenderPolicy, Subject,
};
#[cfg(test)]
use service_kit::db;
use service_kit::db::Backend;
use service_kit::sql::{Migrations, SqlStore};
use std::sync::Arc;
use uuid::Uuid;

/// The migrations, embedded in the binary.
static MIGRATIONS: Migrations = Migrations {
    postgres: sqlx::migrate!("../../migrations/control-api/postgres"),
    sqlite: sqlx::migrate!("../../migrations/control-api/sqlite"),
};

pub mod apps;
mod relabels;
mod sql;

pub use apps::AppStore;

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

/// The schema of control-api's database.
pub struct Schema;

impl service_kit::sql::Schema for Schema {
    fn migrations() -> &'static Migrations {
        &MIGRATIONS
    }
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
    /// The change loosens a label groups use: it waits for a second label-admin's approval.
    Proposed(PendingLabelChange),
    /// Another change to this label is waiting for approval (its id); decide that one first.
    ChangePending(Uuid),
}

/// A change to a label waiting for a second label-admin's approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingLabelChange {
    /// The change's id.
    pub id: Uuid,
    /// The label as it is to become (name, description, policy).
    pub proposed: Label,
    /// The label as it was when the change was proposed.
    pub before: Label,
    /// The label-admin who proposed it (who may not approve it).
    pub proposed_by: Subject,
    /// When, in milliseconds since the epoch.
    pub proposed_at: i64,
}

/// Outcome of approving a pending label change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelApproval {
    /// Applied; the label as it is now.
    Approved(Label),
    /// No pending change has this id.
    NotFound,
    /// The approver proposed the change: a second, distinct label-admin must approve.
    SameAdmin,
    /// The label changed after the proposal; the change is dropped (propose it again).
    Overtaken,
    /// Groups that are not archived use join policies the change drops.
    JoinPoliciesInUse(Vec<JoinPolicy>),
}

/// Outcome of re-labelling a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relabel {
    /// The new label is as strict as the old one or stricter, and is the group's label now
    /// (or already was); the group as it is now.
    Done(GroupRecord),
    /// The new label is looser: the change waits for a label-admin's approval.
    Proposed(PendingRelabel),
    /// A looser re-labelling of this group is waiting for approval (its id).
    Pending(Uuid),
    /// No group has this id.
    NotFound,
    /// No label has the name given.
    NoSuchLabel,
    /// The group is not active (being provisioned, archived or being archived).
    NotEditable(GroupState),
    /// The new label does not allow the group's join policy; here is the label.
    JoinPolicyRefused(Label),
    /// The group guards a resource the new label ranks below.
    GuardsResource(domain::BindingRefusal),
}

/// A re-labelling of a group to a looser label, waiting for a label-admin's approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRelabel {
    /// The change's id.
    pub id: Uuid,
    /// The group.
    pub group: GroupId,
    /// The group's name, for the approver.
    pub group_name: GroupName,
    /// The group's label when the change was proposed.
    pub from: LabelName,
    /// The label proposed, as it was when proposed.
    pub to: Label,
    /// Who proposed it (an owner or a label-admin), who may not approve it.
    pub proposed_by: Subject,
    /// When, in milliseconds since the epoch.
    pub proposed_at: i64,
}

/// Outcome of approving a pending re-labelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelabelApproval {
    /// Applied; the group as it is now.
    Approved(GroupRecord),
    /// No pending re-labelling has this id.
    NotFound,
    /// The approver proposed it: someone else must approve.
    SameAdmin,
    /// The group's label, its state or the proposed label changed since; the change is dropped.
    Overtaken,
    /// The proposed label no longer allows the group's join policy; here is the label.
    JoinPolicyRefused(Label),
    /// The group guards a resource the proposed label ranks below.
    GuardsResource(domain::BindingRefusal),
}

/// Outcome of deleting a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelDelete {
    /// Gone.
    Deleted,
    /// No label has this name.
    NotFound,
    /// Some group (archived ones included: they keep their record) or resource names it.
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
    /// The sender policy given is wider than the label's; here is the label.
    SenderPolicyRefused(Label),
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
    /// The new sender policy is wider than the group's label allows; here is the label.
    SenderPolicyRefused(Label),
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
pub trait Store: AppStore + Send + Sync + 'static {
    /// Answers when the database does (readiness).
    async fn ping(&self) -> Result<(), StoreError>;
    /// The rate budgets this database keeps for every replica: SCIM's.
    fn limit_table(&self) -> Arc<dyn service_kit::limits::LimitTable>;
    /// The catalog's version ([`control_client::CatalogVersion`]): the last catalog audit
    /// event (every change to a group or label a lookup shows writes one, in its own
    /// transaction), the latest group update and the number of groups (the saga's state
    /// changes, which are not audited, touch `updated_at`).
    async fn catalog_version(&self) -> Result<String, StoreError>;

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

    /// Creates a label, recording it in the catalog's audit with `ctx`.
    async fn insert_label(
        &self,
        label: &Label,
        ctx: &AuditContext,
        now: i64,
    ) -> Result<LabelInsert, StoreError>;

    /// Replaces a label's description and policy (the name is its identity and stays),
    /// recording it in the catalog's audit with `ctx`; or, when the change loosens a label
    /// that groups (not archived) use, files it for a second label-admin's approval, proposed
    /// by `proposer` ([`LabelPolicy::loosens`]).
    async fn update_label(
        &self,
        label: &Label,
        proposer: &Subject,
        ctx: &AuditContext,
        now: i64,
    ) -> Result<LabelUpdate, StoreError>;

    /// The changes to labels waiting for a second label-admin's approval, oldest first.
    async fn pending_label_changes(&self) -> Result<Vec<PendingLabelChange>, StoreError>;

    /// Applies the pending change `id`, approved by `approver` (who must not be its proposer),
    /// unless the label changed since it was proposed; recorded in the catalog's audit.
    async fn approve_label_change(
        &self,
        id: Uuid,
        approver: &Subject,
        ctx: &AuditContext,
        now: i64,
    ) -> Result<LabelApproval, StoreError>;

    /// Drops the pending change `id` (any label-admin, the proposer included); false when
    /// there is none. Recorded in the catalog's audit.
    async fn reject_label_change(
        &self,
        id: Uuid,
        admin: &Subject,
        ctx: &AuditContext,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// The groups under the label that are not archived, for applying its entry rule in the
    /// tenant.
    async fn groups_under_label(&self, name: &LabelName) -> Result<Vec<GroupId>, StoreError>;

    /// Deletes a label no group uses, recording it in the catalog's audit with `ctx`.
    async fn delete_label(
        &self,
        name: &LabelName,
        ctx: &AuditContext,
    ) -> Result<LabelDelete, StoreError>;

    /// Creates a group in state `provisioning`, owned by its creator, due for the saga now.
    /// The catalog's audit records the creator as the actor, with `ctx`'s request id.
    async fn insert_group(
        &self,
        group: &NewGroup,
        ctx: &AuditContext,
        now: i64,
    ) -> Result<GroupInsert, StoreError>;

    /// One group.
    async fn get_group(&self, id: GroupId) -> Result<Option<GroupRecord>, StoreError>;

    /// The groups among `ids` that exist, in no particular order.
    async fn lookup_groups(&self, ids: &[GroupId]) -> Result<Vec<GroupRecord>, StoreError>;

    /// Active groups matching `query`, by name then id.
    async fn discover(&self, query: &DiscoverQuery) -> Result<Vec<GroupRecord>, StoreError>;

    /// Applies an owner's changes. `actor` must own the group; the catalog's audit records
    /// it as the actor, with `ctx`'s request id.
    async fn update_group(
        &self,
        id: GroupId,
        actor: &Subject,
        changes: &GroupChanges,
        ctx: &AuditContext,
        now: i64,
    ) -> Result<GroupWrite, StoreError>;

    /// Records how `subject`, an owner acting with their own token, is shown: their name and
    /// e-mail address as the token gives them (either may be absent).
    async fn note_owner_contact(
        &self,
        subject: &Subject,
        contact: &OwnerContact,
        now: i64,
    ) -> Result<(), StoreError>;

    /// How each of `subjects` is shown, for those recorded.
    async fn owner_contacts(
        &self,
        subjects: &[Subject],
    ) -> Result<Vec<(Subject, OwnerContact)>, StoreError>;

    /// The groups `subject` is named an owner of, archived ones left out, by name.
    async fn owned_groups(&self, subject: &Subject) -> Result<Vec<GroupRecord>, StoreError>;

    /// The people invited to own the group (named by an owner, not yet accepted), sorted.
    async fn invited_owners(&self, id: GroupId) -> Result<Vec<Subject>, StoreError>;

    /// `who` answers their invitation to own the group: accepting makes them an owner,
    /// declining drops it. `None` when they hold no invitation or the group takes no edits.
    /// The caller has checked that the group's label admits their kind before accepting.
    async fn answer_ownership(
        &self,
        id: GroupId,
        who: &Subject,
        accept: bool,
        ctx: &AuditContext,
        now: i64,
    ) -> Result<Option<GroupRecord>, StoreError>;

    /// Moves a provisioning or active group to `archiving` (due for the saga); a group already
    /// archiving or archived is left as it is. `actor` must own the group; the catalog's audit
    /// records it as the actor, with `ctx`'s request id.
    async fn archive_group(
        &self,
        id: GroupId,
        actor: &Subject,
        ctx: &AuditContext,
        now: i64,
    ) -> Result<GroupWrite, StoreError>;

    /// Moves the group to the label `to`, on the word of `actor` (an owner or a label-admin,
    /// as the caller checked). A label as strict as the group's or stricter
    /// ([`LabelPolicy::loosens`] is false) applies at once; a looser one is filed for a
    /// label-admin's approval. Only active groups are re-labelled. Audited with `ctx`.
    async fn relabel_group(
        &self,
        id: GroupId,
        to: &LabelName,
        actor: &Subject,
        ctx: &AuditContext,
        now: i64,
    ) -> Result<Relabel, StoreError>;

    /// The re-labellings waiting for approval, oldest first.
    async fn pending_relabels(&self) -> Result<Vec<PendingRelabel>, StoreError>;

    /// Applies the pending re-labelling `id`, approved by `approver` (not its proposer),
    /// unless the group or the proposed label changed since; audited with `ctx`.
    async fn approve_relabel(
        &self,
        id: Uuid,
        approver: &Subject,
        ctx: &AuditContext,
        now: i64,
    ) -> Result<RelabelApproval, StoreError>;

    /// Drops the pending re-labelling `id` (a label-admin's call); false when there is none.
    /// Audited with `ctx`.
    async fn reject_relabel(
        &self,
        id: Uuid,
        admin: &Subject,
        ctx: &AuditContext,
        now: i64,
    ) -> Result<bool, StoreError>;

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

/// A label row: name, description, guests, agents, join policies, sender policy, anonymous
/// posting, rank.
type LabelTuple = (String, String, bool, bool, String, String, bool, i32);

/// A group row joined with its label's row: a tuple struct, read by position, because it has
/// more columns than sqlx reads into a plain tuple.
#[derive(sqlx::FromRow)]
struct GroupTuple(
    Uuid,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    String,
    i64,
    i64,
    String,
    String,
    bool,
    bool,
    String,
    String,
    bool,
    i32,
);

/// A label's policy, as its audit entries record it.
fn label_detail(label: &Label) -> serde_json::Value {
    serde_json::json!({
        "description": label.description,
        "guests_allowed": label.policy.guests_allowed,
        "agents_allowed": label.policy.agents_allowed,
        "join_policies": join_policies_text(&label.policy.join_policies),
        "sender_policy": label.policy.sender_policy.as_str(),
        "anonymous_posting": label.policy.anonymous_posting,
        "rank": label.policy.rank,
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
    let (
        name,
        description,
        guests_allowed,
        agents_allowed,
        join_policies,
        sender_policy,
        anonymous_posting,
        rank,
    ) = t;
    let policy = LabelPolicy {
        guests_allowed,
        agents_allowed,
        join_policies: join_policies
            .split(',')
            .map(JoinPolicy::parse)
            .collect::<Result<_, _>>()
            .map_err(corrupt)?,
        sender_policy: SenderPolicy::parse(&sender_policy).map_err(corrupt)?,
        anonymous_posting,
        rank: u16::try_from(rank)
            .ok()
            .filter(|r| *r <= domain::MAX_LABEL_RANK)
            .ok_or_else(|| corrupt(format!("label rank {rank}")))?,
    };
    Ok(Label {
        name: LabelName::parse(name).map_err(corrupt)?,
        description,
        policy,
    })
}

fn group_from(t: GroupTuple, owners: Vec<Subject>) -> Result<GroupRecord, StoreError> {
    let GroupTuple(
        id,
        name,
        description,
        address,
        join_policy,
        own_sender_policy,
        state,
        created_at,
        updated_at,
        ln,
        ld,
        lg,
        la,
        lj,
        ls,
        lanon,
        lrank,
    ) = t;
    Ok(GroupRecord {
        id: GroupId::from(id),
        name: GroupName::parse(name).map_err(corrupt)?,
        description: Description::parse(description).map_err(corrupt)?,
        // The group select reads a security group's address as NULL (see `GROUP_SELECT`).
        group_type: if address.is_some() {
            GroupType::Mail
        } else {
            GroupType::Security
        },
        contact_address: address.map(Email::parse).transpose().map_err(corrupt)?,
        label: label_from((ln, ld, lg, la, lj, ls, lanon, lrank))?,
        join_policy: JoinPolicy::parse(&join_policy).map_err(corrupt)?,
        own_sender_policy: own_sender_policy
            .map(|p| SenderPolicy::parse(&p))
            .transpose()
            .map_err(corrupt)?,
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

/// Whether moving a group from a label with policy `from` to one with policy `to` loosens it,
/// so that the move waits for a label-admin: [`LabelPolicy::loosens`], leaving the rank aside.
/// A higher rank loosens a *label edit* (every group under it may suddenly guard more), but a
/// group moved to a higher-ranked label is held to that label's entry rule at once, and what
/// it may guard is still checked, binding by binding, against its label then; a move to a
/// lower-ranked label is refused while the group guards a resource ranked above it.
pub(crate) fn relabel_loosens(to: &LabelPolicy, from: &LabelPolicy) -> bool {
    let unranked = LabelPolicy {
        rank: from.rank,
        ..to.clone()
    };
    unranked.loosens(from)
}

/// The join policies among `used` (by groups that are not archived) that `policy` no longer
/// allows, in the order of [`JoinPolicy::ALL`]: a label edit that drops one in use is refused.
fn dropped_join_policies(policy: &LabelPolicy, used: &[JoinPolicy]) -> Vec<JoinPolicy> {
    JoinPolicy::ALL
        .iter()
        .copied()
        .filter(|p| used.contains(p) && !policy.allows_join_policy(*p))
        .collect()
}

/// What an owner's edit of group `id` records in the catalog's audit: the description (only
/// that it changed) and the join policy in one event, then each owner added, then each owner
/// removed, against the owners `before` the edit (given when the edit sets owners).
/// How an owner is shown, from their own token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnerContact {
    /// Their name (`name` claim), at most 200 characters.
    pub name: Option<String>,
    /// Their e-mail address.
    pub email: Option<Email>,
}

/// Who owns a group, and who is invited to, after an owner names its owners ([`owner_plan`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerPlan {
    /// The owners from now on.
    pub owners: Vec<Subject>,
    /// Those named who become owners only when they accept with their own token.
    pub invited: Vec<Subject>,
}

/// What naming `named` as a group's owners does, when `before` own it, under a label with
/// `policy`. Owners named again stay owners. Under a label that admits every kind of identity
/// the others become owners at once. Under one that bars guests or AI agents they are invited:
/// they become owners only when they accept with their own token, whose kind the label must
/// admit. Nobody is made owner on someone else's word about their kind, and the answer to the
/// owner who named them is the same whatever Hush knows of them (labels govern ownership).
/// A group always has an owner: when everyone named is invited, `actor` (the owner naming
/// them) stays owner until they remove themselves after an invited owner accepted.
pub fn owner_plan(
    actor: &Subject,
    before: &[Subject],
    named: &[Subject],
    policy: &LabelPolicy,
) -> OwnerPlan {
    let admits_everyone = policy.guests_allowed && policy.agents_allowed;
    let (mut owners, invited): (Vec<Subject>, Vec<Subject>) = named
        .iter()
        .cloned()
        .partition(|s| admits_everyone || before.contains(s));
    if owners.is_empty() {
        owners.push(actor.clone());
    }
    OwnerPlan { owners, invited }
}

fn edit_events(
    id: GroupId,
    actor: &Subject,
    changes: &GroupChanges,
    before: Option<(&[Subject], &OwnerPlan)>,
) -> Vec<CatalogEvent> {
    let mut events = Vec::new();
    if changes.description.is_some()
        || changes.join_policy.is_some()
        || changes.sender_policy.is_some()
    {
        let mut detail = serde_json::Map::new();
        if changes.description.is_some() {
            detail.insert("description".into(), serde_json::json!("changed"));
        }
        if let Some(p) = changes.join_policy {
            detail.insert("join_policy".into(), serde_json::json!(p.as_str()));
        }
        if let Some(p) = changes.sender_policy {
            detail.insert("sender_policy".into(), serde_json::json!(p.as_str()));
        }
        events.push(CatalogEvent::group("group.edited", id, detail.into()).by(actor));
    }
    if let Some((before, plan)) = before {
        let owner_event = |action, s: &Subject| {
            CatalogEvent::group(action, id, serde_json::json!({ "subject": s.as_str() })).by(actor)
        };
        for s in plan.owners.iter().filter(|s| !before.contains(s)) {
            events.push(owner_event("group.owner-added", s));
        }
        for s in &plan.invited {
            events.push(owner_event("group.owner-invited", s));
        }
        for s in before.iter().filter(|s| !plan.owners.contains(s)) {
            events.push(owner_event("group.owner-removed", s));
        }
    }
    events
}

/// control-api's store on backend `DB`: its database, and the key owners are sealed with
/// ([`crate::seal`]).
pub struct SealedStore<DB: sqlx::Database> {
    sql: SqlStore<DB, Schema>,
    key: OwnerKey,
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
    pub fn new(sql: SqlStore<DB, Schema>, key: OwnerKey) -> Self {
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
/// connections, migrates it, and seals any owner rows written before owners were sealed.
pub async fn connect(url: &str, max: u32, key: OwnerKey) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match Backend::from_url(url)? {
        Backend::Postgres => {
            let store = PgStore::new(SqlStore::open(url, max).await?, key);
            store.seal_clear_rows().await?;
            Arc::new(store)
        }
        Backend::Sqlite => {
            let store = SqliteStore::new(SqlStore::open(url, max).await?, key);
            store.seal_clear_rows().await?;
            Arc::new(store)
        }
    })
}

#[cfg(test)]
mod tests;
