//! The tenant's database: distribution groups, identities and sealed membership (INV-5).
//!
//! One trait, [`Store`], what the handlers use; behind it, in plain code (no macros):
//!
//! - `rules`: the tenant's rules, one function per operation — find the people, plan,
//!   check the label, write, append the audit events — over the roles below. Start here.
//! - `roles`: small traits for what the rules ask of the database (`Groups`, `Identities`,
//!   `Memberships`, `AuditLog`), each method one statement.
//! - `sql`: the roles' SQL — all of this store's SQL — once for both backends: the statements
//!   are the same text on Postgres and SQLite (with `$n` placeholders, which both read; see
//!   [`crate::backend`]), and where the two take locks differently, one fact about each backend decides it (`BEGIN IMMEDIATE` on
//!   SQLite, so a transaction never has to upgrade a read lock and fail with `SQLITE_BUSY`; the
//!   row-locking clauses `FOR SHARE` / `FOR UPDATE` that Postgres needs and SQLite, holding the
//!   whole database for the writer, does not).
//! - `postgres` and `sqlite`: what else differs — migrations, the bulk batches' pool, the
//!   statement run after a batch.
//! - `sql_store`: the store itself: transactions, write turns, retries.
//! - `batch_plan`: what a bulk batch does, planned in memory; `turns`: SQLite's write queue.
//!
//! # Pools
//!
//! Routine calls use the pool [`connect`] opens. Bulk batches run on a pool of their own
//! ([`Store::with_own_pool`], made by the bulk lane in [`crate::batch`]), so they never take the
//! connections joins and leaves wait for; the two pools share the write turns.
//!
//! # Layout
//!
//! - `identities`: one row per person or agent, found by `subject_tag` (keyed hash of the IdP
//!   subject) or `email_tag` (keyed hash of the lowercased address); either may be NULL, not
//!   both. An identity an owner added by address has no subject until the person is seen with
//!   a token carrying both, which binds the subject to it (`identity::plan_add`). Who
//!   it is (subject, address, kind) is sealed. It lists no groups: a person's groups are found
//!   by computing their membership tag in every group and looking the tags up
//!   (`rules::groups_of_identity`), so a membership write never touches the person's row.
//! - `memberships`: one row per (group, identity), found by `member_tag` (keyed hash of both,
//!   different in every group), carrying the identity id sealed to its group.
//!
//! An identity row is written when it is created and when what it says changes (a subject
//! bound, a kind corrected, an address moved, a row under an old key): never for a membership
//! alone, since a row rewritten beside each membership would tie the person's memberships in
//! different groups together for anyone who reads the database's log (issue 16). Every identity
//! write writes the whole row under the active key: the sealed values, `key_id`, and both tags
//! recomputed from the profile. A row's `email_tag` is either NULL or the tag of
//! its profile's address; it is set only where a write resolved every identity that held the
//! address first, so the UNIQUE constraint never fires on a live path.
//!
//! # Locks and retries
//!
//! On Postgres, writers take transaction-scoped advisory locks (`roles::Locks`), never row
//! locks on groups or identities: a row lock is written into the row and the WAL, and would tie
//! the locked row to the membership written beside it. Locks are always taken in the same
//! order — the group's key (shared by adds and removes, exclusive for deprovisioning and rule
//! changes), then identities' keys (exclusive, after which the identities are read again) — so
//! concurrent writers wait for each other instead of deadlocking. Should the database still report a deadlock or a serialization failure (or two
//! writers race to create the same identity and one meets the other's UNIQUE tag), the
//! operation is retried a few times (`service_kit::retry`, widened to that unique violation in
//! `sql_store`); every write is idempotent, so retrying is safe. On SQLite writers take turns
//! instead, and routine writes go before bulk batches waiting for theirs (`turns`).
//!
//! # INV-3
//!
//! Adding and removing run the same statements whether or not the person was a member, and
//! whether or not the tenant has seen them: the identities are looked up, locked (a stand-in's
//! key for a stranger) and looked up again, the label decides, the membership insert (or
//! delete) runs and matches a row or does not, and an add's identity insert runs, creating a
//! stranger's row or meeting the known person's and writing nothing. Only the rare binding paths (an address that moves to the person now holding it)
//! add statements, and those depend on other identities, not on this membership.
//!
//! # Offboarding and mail
//!
//! Offboarding deletes the identity's membership rows and the identity in one transaction. Mail
//! expansion ([`crate::mail`]) reads membership rows, so an offboarded identity stops receiving a
//! group's mail at once.
//!
//! # What this cannot hide
//!
//! Someone holding the raw database files (rather than a logical dump) sees more: on Postgres,
//! system columns such as `xmin` tie together the rows one transaction wrote, and heap order
//! follows write order; the log holds each transaction's rows. A routine membership write
//! writes one membership row, so that ties nothing; the transactions that do write several of
//! one person's rows at once are those about the person as a whole — creating them (their row
//! and one membership), offboarding them, a kind that changes (the memberships it ends) — and
//! they tie only keyed references of the groups concerned, not their ids.

use crate::audit::{self, Context};
use crate::identity::{CorporateDomains, Unidentified};
use crate::seal::{SealError, SealKeys};
use async_trait::async_trait;
use domain::{CountBucket, Email, EntryRefusal, GroupId, IdentityKind, Subject};
use service_kit::db::{self, Backend};
use std::sync::Arc;
use tenant_api::{
    AddMember, ApplyBatch, ApplyRule, BatchOutcome, DistributionGroup, IdentityRef, ProvisionGroup,
    RuleApplied,
};

mod batch_plan;
mod postgres;

/// The tenant's Postgres migrations, for `hush db-setup`, which runs them as the database's
/// owner before the tenant starts under a role that may only read and write rows.
pub fn postgres_migrations() -> &'static sqlx::migrate::Migrator {
    &postgres::PG_MIGRATIONS
}
mod roles;
mod rules;
mod sql;
mod sql_store;
mod sqlite;
mod together;
mod turns;

pub use postgres::PgStore;
pub use sql_store::SqlStore;
pub use sqlite::SqliteStore;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No distribution group has this id.
    #[error("no distribution group with this id")]
    GroupNotFound,
    /// Another distribution group already has the address.
    #[error("another distribution group has this address")]
    AddressTaken,
    /// The group exists with a different address (addresses do not change).
    #[error("the distribution group exists with a different address")]
    AddressMismatch,
    /// The request names nobody: neither subject nor address.
    #[error(transparent)]
    Unidentified(#[from] Unidentified),
    /// The group's label does not admit the identity's kind. Says which kind and which label,
    /// nothing else.
    #[error(transparent)]
    LabelRefused(#[from] EntryRefusal),
    /// A sealed value did not open: the database is not what this tenant wrote, or a key
    /// that sealed it is no longer configured.
    #[error(transparent)]
    Sealed(#[from] SealError),
    /// The database failed.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

impl StoreError {
    /// A unique constraint met: on a batch's insert of new people, another batch made some of
    /// them first.
    pub(crate) fn is_unique_violation(&self) -> bool {
        matches!(self, Self::Db(e) if db::is_unique_violation(e))
    }
}

/// A provisioned group and whether this call created it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provisioned {
    /// The group as stored.
    pub group: DistributionGroup,
    /// True when this call created it; false when it was there already.
    pub created: bool,
}

/// What a re-seal rewrote: counts only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResealReport {
    /// Identity rows rewritten under the active key.
    pub identities: u64,
    /// Membership rows rewritten under the active key.
    pub memberships: u64,
}

/// What the tenant keeps. Every method is one statement or one transaction, except
/// [`Store::reseal`], which is a sequence of bounded transactions. A method that changes
/// state takes the [`Context`] its audit events record: the caller's
/// ([`crate::Permit::context`]), or [`Context::tenant`] for the tenant's own work.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Answers when the database does (readiness).
    async fn ping(&self) -> Result<(), StoreError>;

    /// The same store (database, seal keys, corporate domains and, on SQLite, write turns)
    /// over a pool of its own of at most `max_connections` connections, each made when first
    /// needed, on the runtime that needs it: what bulk batches use, so they never take the
    /// connections routine calls wait for, and their sockets are driven by their own threads.
    /// On Postgres they are named `hush-tenant-bulk` (`application_name`); on SQLite they
    /// leave copying the write-ahead log to after each batch, out of the write turn.
    fn with_own_pool(&self, max_connections: u32) -> Arc<dyn Store>;

    /// Creates the distribution group, or confirms it when it exists with the same address
    /// (taking the new display name).
    async fn provision_group(
        &self,
        context: &Context,
        request: &ProvisionGroup,
    ) -> Result<Provisioned, StoreError>;

    /// Removes the group and its membership rows. Idempotent: a missing group is not an
    /// error.
    async fn deprovision_group(&self, context: &Context, group: GroupId) -> Result<(), StoreError>;

    /// Makes `request.member` a member of `group`, creating their identity on first sight and
    /// binding subject and address when the person is present with a token. Refuses, before
    /// writing anything, when `request.label` does not admit the identity's kind. Runs the same
    /// statements whether or not they already were a member, or known at all (INV-3).
    async fn add_member(
        &self,
        context: &Context,
        group: GroupId,
        request: &AddMember,
    ) -> Result<(), StoreError>;

    /// Makes sure `who` is not a member of `group`. With a subject, that is the person's own
    /// identities (the one with the subject and, when an address is given too, one with the
    /// address and no subject yet), never one bound to another subject; by address alone,
    /// whoever holds the address. Runs the same statements whether or not they were a member,
    /// or are known at all (INV-3).
    async fn remove_member(
        &self,
        context: &Context,
        group: GroupId,
        who: &IdentityRef,
    ) -> Result<(), StoreError>;

    /// Removes `who` from every group at once and deletes their identity (and an identity that
    /// holds their address without another subject), and voids every token of theirs issued
    /// before now ([`Store::token_revoked`]). Idempotent.
    async fn offboard(&self, context: &Context, who: &IdentityRef) -> Result<(), StoreError>;

    /// Applies a batch of adds and removes in one transaction, each with the same statements
    /// (and label check) as [`Store::add_member`] / [`Store::remove_member`]; refusals are
    /// counted by reason, never reported per person. Idempotent.
    async fn apply_batch(
        &self,
        context: &Context,
        batch: &ApplyBatch,
    ) -> Result<BatchOutcome, StoreError>;

    /// Whether the person signed in as `subject` (with the address `email`, when their token
    /// carries one) is a member of `group`: through the identity with their subject, or through
    /// one with their address and no subject yet (added by address before they signed in).
    /// Never through an identity bound to another subject.
    async fn is_member(
        &self,
        group: GroupId,
        subject: &Subject,
        email: Option<&Email>,
    ) -> Result<bool, StoreError>;

    /// The groups the person signed in as `subject` (with the address `email`) is in, through
    /// the same identities as [`Store::is_member`]; sorted, each once, only groups that still
    /// exist.
    async fn groups_of(
        &self,
        subject: &Subject,
        email: Option<&Email>,
    ) -> Result<Vec<GroupId>, StoreError>;

    /// As [`Store::groups_of`], among `groups` only: one keyed hash per named group and
    /// identity, not per group the tenant keeps.
    async fn groups_among(
        &self,
        subject: &Subject,
        email: Option<&Email>,
        groups: &[GroupId],
    ) -> Result<Vec<GroupId>, StoreError>;

    /// Stores `kind` as the kind of the person signed in as `subject` (with `email`): the word
    /// of their own token. When it differs from the kind stored for any of their identities,
    /// every membership the new kind's labels bar ends in the same transaction, with audit
    /// events and nothing said to anyone else. Reads first and writes only when a kind
    /// differs; answers whether anything changed.
    async fn settle_kind(
        &self,
        context: &Context,
        subject: &Subject,
        email: Option<&Email>,
        kind: IdentityKind,
    ) -> Result<bool, StoreError>;

    /// Makes sure the person the directory (SCIM) provisions, signed in as `subject`, has an
    /// identity of the directory's `kind`: corrected when it differs (ending the memberships
    /// the new kind bars), created in no group when the tenant has not seen them.
    async fn sync_identity(
        &self,
        context: &Context,
        subject: &Subject,
        email: Option<&Email>,
        kind: IdentityKind,
    ) -> Result<(), StoreError>;

    /// Applies a label's entry rule to the groups named and to every group the tenant keeps
    /// under the label: each group in a transaction of its own, which keeps the rule and, when
    /// it bars a kind the group's rule admitted, ends every membership it now bars.
    async fn apply_rule(
        &self,
        context: &Context,
        request: &ApplyRule,
    ) -> Result<RuleApplied, StoreError>;

    /// Whether tokens of `subject` issued at `issued_at` (seconds since the epoch; `None`
    /// when the token carries no issue time) were voided by an offboarding since then
    /// ([`Store::offboard`] records the moment). Public services ask before accepting a caller.
    async fn token_revoked(
        &self,
        subject: &Subject,
        issued_at: Option<i64>,
    ) -> Result<bool, StoreError>;

    /// The bucket of the group's live member count. No route serves it (owners are shown
    /// [`Store::shown_count`]); the tenant's own checks and tests read it.
    async fn member_count(&self, group: GroupId) -> Result<CountBucket, StoreError>;

    /// The bucket an owner is shown (INV-4): the group's count snapshot, taken anew only at the
    /// first read at or after its refresh moment, and then kept until `next_refresh_ms`
    /// (which the caller draws at random, a day or more ahead). Adds and removes in between
    /// change nothing this answers, so an owner cannot calibrate the bucket with writes.
    async fn shown_count(
        &self,
        group: GroupId,
        now_ms: i64,
        next_refresh_ms: i64,
    ) -> Result<CountBucket, StoreError>;

    /// Rewrites every row not entirely under the active key — sealed values, `key_id` and
    /// tags — in transactions of at most `batch` rows, so the other keys can be dropped.
    /// Also gives rows written before addresses were tagged the tag of their address. Safe to
    /// run beside live traffic and to run again after a crash: rows already under the active
    /// key are left alone.
    async fn reseal(&self, context: &Context, batch: usize) -> Result<ResealReport, StoreError>;

    /// The audit chain's database (the same pool), for reading the chain and for events not
    /// tied to a store write.
    fn audit_db(&self) -> audit::Db;

    /// Every row of every table but the audit chain's (an append-only log, which grows with
    /// every write; its own tests check what it reveals), each column as text: text as it is, bytes as lowercase hex,
    /// UUIDs as both their usual form and hex. For the tests that check what a dump reveals.
    #[cfg(test)]
    async fn dump(&self) -> Vec<(String, Vec<Vec<String>>)>;
}

/// Opens the database `url` names (`postgres://…` or `sqlite:…`), with at most
/// `max_connections` connections, migrates it, seals with `keys`, and infers the kind of
/// identities added by address from `corporate`.
pub async fn connect(
    url: &str,
    max_connections: u32,
    keys: Arc<SealKeys>,
    corporate: CorporateDomains,
) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match Backend::from_url(url)? {
        Backend::Postgres => Arc::new(
            PgStore::migrate(db::connect_postgres(url, max_connections).await?, keys)
                .await?
                .with_corporate_domains(corporate),
        ),
        Backend::Sqlite => Arc::new(
            SqliteStore::migrate(db::connect_sqlite(url, max_connections).await?, keys)
                .await?
                .with_corporate_domains(corporate),
        ),
    })
}

#[cfg(test)]
mod tests;
