//! What the tenant's rules ([`super::rules`]) ask of the database, one small trait per thing
//! it keeps: [`Groups`], [`Identities`], [`Memberships`], and [`AuditLog`] for the audit chain.
//! [`Tx`] is all four on one write transaction. Each method is one statement, or one statement
//! per [`super::sql::CHUNK`] rows; none decides anything. Their one implementation, for both
//! backends, is in [`super::sql`].
//!
//! Rows travel sealed: an [`IdentityRow`] read is opened by the rules with the seal keys, and
//! one to write is built by the rules under the active key.

use super::StoreError;
use crate::audit::{Context, NewEvent};
use crate::seal::{Profile, SealKey, SealKeys};
use async_trait::async_trait;
use domain::{CountBucket, Email, EntryRule, GroupId, LabelName, Subject};
use std::collections::HashSet;
use tenant_api::ProvisionGroup;
use uuid::Uuid;

/// The distribution groups.
#[async_trait]
pub(super) trait Groups {
    /// Creates the group; false when a group with its id is there already. Another group with
    /// the address is [`StoreError::AddressTaken`].
    async fn create_group(&mut self, request: &ProvisionGroup) -> Result<bool, StoreError>;
    /// The group's address and display name, locked until the transaction ends.
    async fn group_for_update(&mut self, group: GroupId) -> Result<(String, String), StoreError>;
    /// Sets the group's display name.
    async fn rename_group(&mut self, group: GroupId, display_name: &str) -> Result<(), StoreError>;
    /// Fails with [`StoreError::GroupNotFound`] unless the group exists, and holds it (shared)
    /// until the transaction ends, so it cannot be deprovisioned meanwhile.
    async fn hold_group(&mut self, group: GroupId) -> Result<(), StoreError>;
    /// Locks the group (exclusive) until the transaction ends; false when there is none.
    async fn lock_group(&mut self, group: GroupId) -> Result<bool, StoreError>;
    /// Of `groups` (sorted), those that exist, each held (shared, in id order) until the
    /// transaction ends.
    async fn hold_groups(&mut self, groups: &[GroupId]) -> Result<HashSet<GroupId>, StoreError>;
    /// Of `groups`, those that still exist, sorted; not held.
    async fn existing_groups(&mut self, groups: &[GroupId]) -> Result<Vec<GroupId>, StoreError>;
    /// Deletes the group row.
    async fn delete_group(&mut self, group: GroupId) -> Result<(), StoreError>;
    /// The entry rule kept for each of `groups` that exists (`None`: not told yet); not held.
    async fn group_rules(
        &mut self,
        groups: &[GroupId],
    ) -> Result<Vec<(GroupId, Option<EntryRule>)>, StoreError>;
    /// Keeps `rule` as the group's entry rule; with `only_if_unknown`, only when it has none
    /// yet.
    async fn set_group_rule(
        &mut self,
        group: GroupId,
        rule: &EntryRule,
        only_if_unknown: bool,
    ) -> Result<(), StoreError>;
    /// The groups whose kept rule is the label `label`'s, sorted.
    async fn groups_under_label(&mut self, label: &LabelName) -> Result<Vec<GroupId>, StoreError>;
}

/// Which tag of an identity row a lookup goes by.
#[derive(Debug, Clone, Copy)]
pub(super) enum TagColumn {
    /// `subject_tag`: the keyed hash of the IdP subject.
    Subject,
    /// `email_tag`: the keyed hash of the lowercased address, on the identity that owns it.
    Email,
}

impl TagColumn {
    /// The column's name.
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Subject => "subject_tag",
            Self::Email => "email_tag",
        }
    }
}

/// The identities, sealed.
#[async_trait]
pub(super) trait Identities {
    /// Every identity whose subject tag is one of `subject_tags` or whose address tag is one of
    /// `email_tags` (at least one list is not empty), in id order; not locked (take
    /// [`Locks::lock_keys`] and read again).
    async fn find_identities(
        &mut self,
        subject_tags: Vec<Vec<u8>>,
        email_tags: Vec<Vec<u8>>,
    ) -> Result<Vec<IdentityRow>, StoreError>;
    /// The ids of the identities whose `column` is one of `tags`; not locked.
    async fn identity_ids(
        &mut self,
        column: TagColumn,
        tags: &[Vec<u8>],
    ) -> Result<Vec<Uuid>, StoreError>;
    /// The identities with these ids (sorted), in id order; not locked (take
    /// [`Locks::lock_keys`] first).
    async fn identities_by_id(&mut self, ids: &[Uuid]) -> Result<Vec<IdentityRow>, StoreError>;
    /// At most `limit` identities with ids after `after`, in id order, locked until the
    /// transaction ends.
    async fn identities_after(
        &mut self,
        after: Uuid,
        limit: usize,
    ) -> Result<Vec<IdentityRow>, StoreError>;
    /// Of `tags`, the address tags some identity holds.
    async fn taken_email_tags(&mut self, tags: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, StoreError>;
    /// Creates identity rows with fresh ids. Plainly: a conflict clause costs a speculative
    /// insertion per row, and a tag another transaction took meanwhile fails the statement
    /// either way (a batch then plans again, finding that person).
    async fn insert_identities(&mut self, rows: Vec<IdentityRow>) -> Result<(), StoreError>;
    /// Creates the identity row unless a row with its id is there, which is left as it is
    /// (one statement either way, so adding a known person and a stranger look alike, INV-3,
    /// and a known person's row is not rewritten by a membership write).
    async fn insert_identity_if_absent(&mut self, row: IdentityRow) -> Result<(), StoreError>;
    /// Rewrites every column of the identity rows with these ids (an id with no row matches
    /// nothing), in set-based statements.
    async fn update_identities(&mut self, rows: Vec<IdentityRow>) -> Result<(), StoreError>;
    /// Deletes the identity rows with these ids (one statement, however many match).
    async fn delete_identities(&mut self, ids: &[Uuid]) -> Result<(), StoreError>;
}

/// The membership rows: one per (group, identity), found by its tag.
#[async_trait]
pub(super) trait Memberships {
    /// Makes each (group, identity) of `pairs` a membership under `key`; one already there
    /// (under this key) is left as it is.
    async fn insert_members(
        &mut self,
        key: &SealKey,
        pairs: &[(GroupId, Uuid)],
    ) -> Result<(), StoreError>;
    /// Makes each (group, identity) of `pairs` a membership under `key`, where no row can be
    /// there yet: the identities were made in this transaction, and a tag is a keyed hash of a
    /// fresh random id. Without the conflict clause, which costs the database a speculative
    /// insertion per row.
    async fn insert_new_members(
        &mut self,
        key: &SealKey,
        pairs: &[(GroupId, Uuid)],
    ) -> Result<(), StoreError>;
    /// Deletes the membership rows with these tags (none is fine).
    async fn delete_members(&mut self, tags: &[Vec<u8>]) -> Result<(), StoreError>;
    /// Deletes every membership row of the group whose references (one per key: see
    /// [`SealKeys::group_refs`]) are `refs`.
    async fn delete_group_members(&mut self, refs: &[Uuid]) -> Result<(), StoreError>;
    /// The sealed identity and key id of every membership row of the group whose references
    /// are `refs`: the group's members, for deprovisioning to take the group off their sealed
    /// lists.
    async fn sealed_members(&mut self, refs: &[Uuid])
        -> Result<Vec<(Vec<u8>, String)>, StoreError>;
    /// Whether a membership row has one of these tags (not empty).
    async fn any_member(&mut self, tags: &[Vec<u8>]) -> Result<bool, StoreError>;
    /// Of `tags`, those a membership row has.
    async fn present_tags(&mut self, tags: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, StoreError>;
    /// At most `limit` membership rows with tags after `after`, in tag order, locked until the
    /// transaction ends.
    async fn memberships_after(
        &mut self,
        after: &[u8],
        limit: usize,
    ) -> Result<Vec<MemberRow>, StoreError>;
    /// Rewrites each row with the tag of a move (old tag, group, identity) as that
    /// membership under `key`: its tag, seal and key id.
    async fn retag_members(
        &mut self,
        key: &SealKey,
        moves: &[(Vec<u8>, GroupId, Uuid)],
    ) -> Result<(), StoreError>;
    /// How many membership rows the group (whose references are `refs`) has; `None` when
    /// there is no such group.
    async fn count_members(
        &mut self,
        group: GroupId,
        refs: &[Uuid],
    ) -> Result<Option<u64>, StoreError>;
    /// Every group the tenant has, for telling which group a membership row's reference
    /// names.
    async fn all_groups(&mut self) -> Result<Vec<GroupId>, StoreError>;
    /// Whether a membership row still holds a group's clear id (written before references).
    async fn any_legacy_members(&mut self) -> Result<bool, StoreError>;
    /// Rewrites rows written before membership rows held references: each row whose group
    /// column holds `group`'s clear id under `key` gets `group`'s reference under that key.
    async fn reference_legacy_members(
        &mut self,
        key: &SealKey,
        group: GroupId,
    ) -> Result<(), StoreError>;
    /// The group's count snapshot: its bucket, and the moment (ms) after which the next read
    /// takes a new one.
    async fn count_snapshot(
        &mut self,
        group: GroupId,
    ) -> Result<Option<(CountBucket, i64)>, StoreError>;
    /// Keeps `bucket` as the group's count snapshot until `refresh_after_ms`.
    async fn save_count_snapshot(
        &mut self,
        group: GroupId,
        bucket: CountBucket,
        refresh_after_ms: i64,
    ) -> Result<(), StoreError>;
}

/// Locks that leave no trace in the database's files.
///
/// A row lock on Postgres (`FOR SHARE`, `FOR UPDATE`) is written into the row's tuple header and
/// into the WAL, in the transaction that takes it: a membership write that locked the person's
/// identity row, or the group's row, would tie that row to the membership it wrote for anyone
/// reading the WAL (issue 16). Writers therefore take transaction-scoped advisory locks, which
/// live only in the server's memory, on keys derived from the ids ([`group_key`],
/// [`identity_key`]). SQLite needs none: a write transaction holds the whole database.
#[async_trait]
pub(super) trait Locks {
    /// Takes the locks on `keys` (shared or exclusive) until the transaction ends, in key order;
    /// false, taking nothing, on a backend that needs no locks.
    async fn lock_keys(&mut self, keys: &[i64], exclusive: bool) -> Result<bool, StoreError>;
}

/// The lock key of a group: its id folded to 64 bits.
pub(super) fn group_key(group: GroupId) -> i64 {
    fold(*group.as_uuid())
}

/// The lock key of an identity: its id folded to 64 bits, apart from groups' keys.
pub(super) fn identity_key(id: Uuid) -> i64 {
    !fold(id)
}

/// Both halves of `id`, xored: random in a v4 and in a v7 id alike.
fn fold(id: Uuid) -> i64 {
    let (hi, lo) = id.as_u64_pair();
    i64::from_ne_bytes((hi ^ lo).to_ne_bytes())
}

/// Offboardings: the moment from which a subject's earlier tokens are void.
#[async_trait]
pub(super) trait Revocations {
    /// Records that tokens of the subject with `tag` issued before `not_before_ms` are void
    /// (a later offboarding moves the moment forward, never back).
    async fn revoke(&mut self, tag: Vec<u8>, not_before_ms: i64) -> Result<(), StoreError>;
    /// The latest moment recorded under any of `tags`, if any.
    async fn revoked_before(&mut self, tags: &[Vec<u8>]) -> Result<Option<i64>, StoreError>;
}

/// The audit chain, appended to inside the caller's transaction.
#[async_trait]
pub(super) trait AuditLog {
    /// Appends `events` (none: no statement), recorded as `context`, as the transaction's last
    /// statements; see [`crate::audit::Append`].
    async fn append(&mut self, context: &Context, events: &[NewEvent]) -> Result<(), StoreError>;
}

/// One write transaction (or, for reads, one connection): every role, and savepoints.
#[async_trait]
pub(super) trait Tx:
    Groups + Identities + Memberships + Revocations + AuditLog + Locks + Send
{
    /// `SAVEPOINT name`.
    async fn savepoint(&mut self, name: &str) -> Result<(), StoreError>;
    /// `RELEASE SAVEPOINT name`.
    async fn release_savepoint(&mut self, name: &str) -> Result<(), StoreError>;
    /// `ROLLBACK TO SAVEPOINT name`.
    async fn rollback_to_savepoint(&mut self, name: &str) -> Result<(), StoreError>;
}

/// A whole identity row, sealed and tagged under one key: as the store reads it back, or as
/// the rules build it to write.
pub(super) struct IdentityRow {
    pub id: Uuid,
    pub subject_tag: Option<Vec<u8>>,
    pub email_tag: Option<Vec<u8>>,
    pub sealed_profile: Vec<u8>,
    pub key_id: String,
}

/// A membership row as the store reads it back.
pub(super) struct MemberRow {
    pub tag: Vec<u8>,
    /// The row's reference to its group ([`SealKey::group_ref`] under the row's key).
    pub group_ref: Uuid,
    pub sealed: Vec<u8>,
    pub key_id: String,
}

/// An identity, opened.
#[derive(Debug, Clone)]
pub(super) struct Opened {
    pub id: Uuid,
    pub profile: Profile,
    /// Whether the row carries the tag of its address.
    pub email_owned: bool,
    /// The key the row is under.
    pub key_id: String,
}

impl IdentityRow {
    /// The row opened with whichever of `keys` sealed it.
    pub(super) fn open(&self, keys: &SealKeys) -> Result<Opened, StoreError> {
        let key = keys.get(&self.key_id)?;
        Ok(Opened {
            id: self.id,
            profile: key.open_profile(self.id, &self.sealed_profile)?,
            email_owned: self.email_tag.is_some(),
            key_id: self.key_id.clone(),
        })
    }

    /// The row to write for identity `id` under `key`. The address is tagged only when the
    /// identity owns it (see the store's module docs).
    pub(super) fn new(key: &SealKey, id: Uuid, profile: &Profile, email_owned: bool) -> Self {
        Self {
            id,
            subject_tag: profile.subject.as_ref().map(|s| key.subject_tag(s)),
            email_tag: profile
                .email
                .as_ref()
                .filter(|_| email_owned)
                .map(|e| key.email_tag(e)),
            sealed_profile: key.seal_profile(id, profile),
            key_id: key.id().to_string(),
        }
    }

    /// Whether `row` already is this write, but for the fresh nonces of its sealed values.
    pub(super) fn matches_tags_of(&self, row: &IdentityRow) -> bool {
        row.key_id == self.key_id
            && row.subject_tag == self.subject_tag
            && row.email_tag == self.email_tag
    }
}

/// The tags, under every configured key, that could find `subject`.
pub(super) fn subject_tags(keys: &SealKeys, subject: &Subject) -> Vec<Vec<u8>> {
    keys.all().iter().map(|k| k.subject_tag(subject)).collect()
}

/// The tags, under every configured key, that could find `email`.
pub(super) fn email_tags(keys: &SealKeys, email: &Email) -> Vec<Vec<u8>> {
    keys.all().iter().map(|k| k.email_tag(email)).collect()
}

/// The tags, under each of `keys`, of the membership of `identity` in `group`.
pub(super) fn member_tags(keys: &[SealKey], group: GroupId, identity: Uuid) -> Vec<Vec<u8>> {
    keys.iter().map(|k| k.member_tag(group, identity)).collect()
}
