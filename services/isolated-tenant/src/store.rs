//! The tenant's database: distribution groups, identities and sealed membership (INV-5). All
//! the tenant's SQL is in this module.
//!
//! One trait, two backends. Both implementations are generated from one macro body, so the SQL
//! cannot drift between them: it is written once with `$n` placeholders, which Postgres and
//! sqlx's SQLite driver both read. The only differences are passed in as fragments: how a write
//! transaction begins (`BEGIN IMMEDIATE` on SQLite, so a transaction never has to upgrade a
//! read lock to a write lock and fail with `SQLITE_BUSY`) and the row-locking clauses Postgres
//! needs (`FOR SHARE` / `FOR UPDATE`) and SQLite, holding the whole database for the writer,
//! does not.
//!
//! # Layout
//!
//! - `identities`: one row per person or agent, found by `subject_tag` (keyed hash of the IdP
//!   subject) or `email_tag` (keyed hash of the lowercased address); either may be NULL, not
//!   both. An identity an owner added by address has no subject until the person is seen with
//!   a token carrying both, which binds the subject to it (`identity::plan_add`). Who
//!   it is (subject, address, kind) and the list of its groups are sealed.
//! - `memberships`: one row per (group, identity), found by `member_tag` (keyed hash of both,
//!   different in every group), carrying the identity id sealed to its group.
//!
//! Every identity write writes the whole row under the active key: the sealed values, `key_id`,
//! and both tags recomputed from the profile. A row's `email_tag` is either NULL or the tag of
//! its profile's address; it is set only where a write resolved every identity that held the
//! address first, so the UNIQUE constraint never fires on a live path.
//!
//! # Locks and retries
//!
//! Locks are always taken in the same order — the group row, then identity rows in id order,
//! then membership rows — so concurrent writers on Postgres wait for each other instead of
//! deadlocking. Should the database still report a deadlock or a serialization failure (or two
//! writers race to create the same identity and one meets the other's UNIQUE tag), the
//! operation is retried a few times; every write is idempotent, so retrying is safe.
//!
//! # INV-3
//!
//! Adding and removing run the same statements whether or not the person was a member, and
//! whether or not the tenant has seen them: the identities are looked up (and locked), the
//! label decides, the membership insert (or delete) runs and matches a row or does not, and the
//! identity is upserted (or updated by id, matching no row for a stranger) with a fresh nonce
//! either way. Only the rare binding paths (an address that moves to the person now holding it)
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
//! system columns such as `xmin` tie together the rows one transaction wrote (a membership row
//! and the identity it updated), and heap order follows write order. `pg_dump` output carries
//! neither. Group sizes are visible to such a reader too, since `group_id` is in clear for
//! counting.

use crate::audit::{self, action, Append as _, NewEvent};
use crate::identity::{self, AddPlan, CorporateDomains, Known, Target, Unidentified};
use crate::seal::{Profile, SealError, SealKey, SealKeys};
use async_trait::async_trait;
use domain::{CountBucket, Email, EntryRefusal, GroupId, IdentityKind, Subject};
use service_kit::background::Priority;
use service_kit::db::{self, Backend};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tenant_api::{
    AddMember, ApplyBatch, BatchOpKind, BatchOutcome, DistributionGroup, IdentityRef,
    ProvisionGroup,
};
use uuid::Uuid;

/// How many times an operation is tried when the database reports a deadlock, a serialization
/// failure or a race to create the same identity.
const ATTEMPTS: u32 = 4;
/// Tries of a batch. Two batches adding the same new person race to create their identity on
/// Postgres, and the loser meets the winner's UNIQUE tag; it plans again inside its
/// transaction ([`MADE_TRIES`] times), and after that its retry finds the identity. Big
/// batches share many people, so they get more tries than single calls.
const BATCH_ATTEMPTS: u32 = 8;
/// Plans of one batch transaction, each after finding that another batch made some of its new
/// people first; the last try's unique violation goes to [`BATCH_ATTEMPTS`].
const MADE_TRIES: u32 = 8;
/// Rows per statement when one statement touches many rows: well under both backends' limit
/// on bound parameters (at most 6 per row).
const CHUNK: usize = 500;

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
    fn is_unique_violation(&self) -> bool {
        matches!(self, Self::Db(e) if db::is_unique_violation(e))
    }

    /// A deadlock, a serialization failure, a busy database, or a unique tag another writer
    /// took first: worth another try, which will find what the other writer wrote.
    fn is_transient(&self) -> bool {
        let Self::Db(sqlx::Error::Database(e)) = self else {
            return false;
        };
        // Postgres: serialization_failure, deadlock_detected, unique_violation. SQLite: BUSY,
        // BUSY_SNAPSHOT (unique violations cannot race there: writers are serialised).
        matches!(
            e.code().as_deref(),
            Some("40001" | "40P01" | "23505" | "5" | "517")
        )
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
/// [`Store::reseal`], which is a sequence of bounded transactions.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Answers when the database does (readiness).
    async fn ping(&self) -> Result<(), StoreError>;

    /// The same store (database, seal keys, corporate domains and, on SQLite, write turns)
    /// over a pool of its own of at most `max_connections` connections, each made when first
    /// needed, on the runtime that needs it: what bulk batches use, so they never take the
    /// connections routine calls wait for, and their sockets are driven by their own threads.
    /// With a `priority` below the service's own (nice above 0, or CPUs named), a Postgres
    /// server on this same machine is asked to serve these connections at that priority too
    /// (see [`lower_local_backend`]).
    fn with_own_pool(&self, max_connections: u32, priority: Priority) -> Arc<dyn Store>;

    /// Creates the distribution group, or confirms it when it exists with the same address
    /// (taking the new display name).
    async fn provision_group(&self, request: &ProvisionGroup) -> Result<Provisioned, StoreError>;

    /// Removes the group, its membership rows, and the group from every member's sealed
    /// list. Idempotent: a missing group is not an error.
    async fn deprovision_group(&self, group: GroupId) -> Result<(), StoreError>;

    /// Makes `request.member` a member of `group`, creating their identity on first sight and
    /// binding subject and address when the person is present with a token. Refuses, before
    /// writing anything, when `request.label` does not admit the identity's kind. Runs the same
    /// statements whether or not they already were a member, or known at all (INV-3).
    async fn add_member(&self, group: GroupId, request: &AddMember) -> Result<(), StoreError>;

    /// Makes sure `who` is not a member of `group`. With a subject, that is the person's own
    /// identities (the one with the subject and, when an address is given too, one with the
    /// address and no subject yet), never one bound to another subject; by address alone,
    /// whoever holds the address. Runs the same statements whether or not they were a member,
    /// or are known at all (INV-3).
    async fn remove_member(&self, group: GroupId, who: &IdentityRef) -> Result<(), StoreError>;

    /// Removes `who` from every group at once and deletes their identity (and an identity that
    /// holds their address without another subject). Idempotent.
    async fn offboard(&self, who: &IdentityRef) -> Result<(), StoreError>;

    /// Applies a batch of adds and removes in one transaction, each with the same statements
    /// (and label check) as [`Store::add_member`] / [`Store::remove_member`]; refusals are
    /// counted by reason, never reported per person. Idempotent.
    async fn apply_batch(&self, batch: &ApplyBatch) -> Result<BatchOutcome, StoreError>;

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

    /// The bucket of the group's member count (INV-4).
    async fn member_count(&self, group: GroupId) -> Result<CountBucket, StoreError>;

    /// Rewrites every row not entirely under the active key — sealed values, `key_id` and
    /// tags — in transactions of at most `batch` rows, so the other keys can be dropped.
    /// Also gives rows written before addresses were tagged the tag of their address. Safe to
    /// run beside live traffic and to run again after a crash: rows already under the active
    /// key are left alone.
    async fn reseal(&self, batch: usize) -> Result<ResealReport, StoreError>;

    /// The audit chain's database (the same pool), for reading the chain and for events not
    /// tied to a store write.
    fn audit_db(&self) -> audit::Db;

    /// Every row of every table but the audit chain's (an append-only log, which grows with
    /// every write; its own tests check what it reveals), each column as text: text as it is, bytes as lowercase hex,
    /// UUIDs as both their usual form and hex. For the tests that check what a dump reveals.
    #[cfg(test)]
    async fn dump(&self) -> Vec<(String, Vec<Vec<String>>)>;
}

/// Migrations for each backend, embedded in the binary.
static PG_MIGRATIONS: sqlx::migrate::Migrator =
    sqlx::migrate!("../../migrations/isolated-tenant/postgres");
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator =
    sqlx::migrate!("../../migrations/isolated-tenant/sqlite");

/// Runs `op` until it succeeds, fails for good, or has had [`ATTEMPTS`] tries.
async fn retrying<T, F, Fut>(op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    retrying_up_to(ATTEMPTS, op).await
}

/// Runs `op` until it succeeds, fails for good, or has had `attempts` tries.
async fn retrying_up_to<T, F, Fut>(attempts: u32, mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if e.is_transient() && attempt < attempts => {
                tracing::warn!(attempt, error = %e, "transient database failure; retrying");
                tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt))).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// The profile a write about someone the tenant has never seen seals and throws away, so that
/// path does the same cryptographic work as the others (INV-3).
fn stand_in_profile(who: &IdentityRef) -> Profile {
    Profile {
        subject: who.subject.clone(),
        email: who.email.clone(),
        kind: IdentityKind::Guest,
    }
}

/// An identity row as the store reads it back.
struct IdentityRow {
    id: Uuid,
    subject_tag: Option<Vec<u8>>,
    email_tag: Option<Vec<u8>>,
    sealed_profile: Vec<u8>,
    sealed_groups: Vec<u8>,
    key_id: String,
}

/// The columns every identity query selects, in [`IdentityTuple`] order.
const IDENTITY_COLUMNS: &str = "id, subject_tag, email_tag, sealed_profile, sealed_groups, key_id";

type IdentityTuple = (
    Uuid,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Vec<u8>,
    Vec<u8>,
    String,
);

impl From<IdentityTuple> for IdentityRow {
    fn from(
        (id, subject_tag, email_tag, sealed_profile, sealed_groups, key_id): IdentityTuple,
    ) -> Self {
        Self {
            id,
            subject_tag,
            email_tag,
            sealed_profile,
            sealed_groups,
            key_id,
        }
    }
}

/// An identity, opened.
#[derive(Debug, Clone)]
struct Opened {
    id: Uuid,
    profile: Profile,
    groups: Vec<GroupId>,
    /// Whether the row carries the tag of its address.
    email_owned: bool,
}

impl IdentityRow {
    fn open(&self, keys: &SealKeys) -> Result<Opened, StoreError> {
        let key = keys.get(&self.key_id)?;
        Ok(Opened {
            id: self.id,
            profile: key.open_profile(self.id, &self.sealed_profile)?,
            groups: key.open_group_list(self.id, &self.sealed_groups)?,
            email_owned: self.email_tag.is_some(),
        })
    }
}

/// A whole identity row, sealed and tagged under one key, ready to write.
struct IdentityWrite {
    id: Uuid,
    subject_tag: Option<Vec<u8>>,
    email_tag: Option<Vec<u8>>,
    sealed_profile: Vec<u8>,
    sealed_groups: Vec<u8>,
    key_id: String,
}

impl IdentityWrite {
    /// The row of identity `id` under `key`. The address is tagged only when the identity
    /// owns it (see the module docs).
    fn new(
        key: &SealKey,
        id: Uuid,
        profile: &Profile,
        groups: &[GroupId],
        email_owned: bool,
    ) -> Self {
        Self {
            id,
            subject_tag: profile.subject.as_ref().map(|s| key.subject_tag(s)),
            email_tag: profile
                .email
                .as_ref()
                .filter(|_| email_owned)
                .map(|e| key.email_tag(e)),
            sealed_profile: key.seal_profile(id, profile),
            sealed_groups: key.seal_group_list(id, groups),
            key_id: key.id().to_string(),
        }
    }

    /// Whether `row` already is this write, but for the fresh nonces of its sealed values.
    fn matches_tags_of(&self, row: &IdentityRow) -> bool {
        row.key_id == self.key_id
            && row.subject_tag == self.subject_tag
            && row.email_tag == self.email_tag
    }
}

/// The tags, under every configured key, that could find `subject`.
fn subject_tags(keys: &SealKeys, subject: &Subject) -> Vec<Vec<u8>> {
    keys.all().iter().map(|k| k.subject_tag(subject)).collect()
}

/// The tags, under every configured key, that could find `email`.
fn email_tags(keys: &SealKeys, email: &Email) -> Vec<Vec<u8>> {
    keys.all().iter().map(|k| k.email_tag(email)).collect()
}

/// The tags, under every configured key, of the membership of `identity` in `group`.
fn member_tags(keys: &[SealKey], group: GroupId, identity: Uuid) -> Vec<Vec<u8>> {
    keys.iter().map(|k| k.member_tag(group, identity)).collect()
}

/// Who is asking for a write turn on a single-writer database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writer {
    /// A join, leave, owner write, provisioning or offboarding: someone is waiting on it.
    Routine,
    /// A bulk batch or a re-seal step: throughput work that yields to routine writers.
    Bulk,
}

/// Write turns on a single-writer database (SQLite), first come first served, except that
/// bulk work lets routine writers that are already waiting go first. A routine write then waits
/// for at most the one bulk transaction in progress; bulk work waits for a quiet moment, or
/// after [`Turns::BULK_PATIENCE`] yields takes its turn anyway so it cannot starve.
#[derive(Debug, Default)]
struct Turns {
    lock: Arc<tokio::sync::Mutex<()>>,
    routine_waiting: std::sync::atomic::AtomicUsize,
}

impl Turns {
    /// How many times bulk work gives its turn to waiting routine writers before it keeps it.
    const BULK_PATIENCE: usize = 64;

    async fn take(&self, kind: Writer) -> tokio::sync::OwnedMutexGuard<()> {
        use std::sync::atomic::Ordering::SeqCst;
        if kind == Writer::Routine {
            self.routine_waiting.fetch_add(1, SeqCst);
            let turn = self.lock.clone().lock_owned().await;
            self.routine_waiting.fetch_sub(1, SeqCst);
            return turn;
        }
        for _ in 0..Self::BULK_PATIENCE {
            let turn = self.lock.clone().lock_owned().await;
            if self.routine_waiting.load(SeqCst) == 0 {
                return turn;
            }
            // The queue is fair: the routine writers already waiting get the lock before this
            // task asks again.
            drop(turn);
            tokio::task::yield_now().await;
        }
        self.lock.clone().lock_owned().await
    }
}

macro_rules! sql_store {
    (
        $(#[$doc:meta])* $name:ident, $db:ty, $migrator:expr,
        begin_write = $begin:literal,
        for_share = $for_share:literal,
        for_update = $for_update:literal,
        serial_writes = $serial:literal,
        bulk_pool = $bulk_pool:ident,
        after_bulk_batch = $after_bulk:expr,
        list_tables = $list_tables:literal $(,)?
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name {
            pool: sqlx::Pool<$db>,
            keys: Arc<SealKeys>,
            corporate: Arc<CorporateDomains>,
            /// Write transactions take turns here, first come first served, when the database
            /// has a single writer (SQLite). Without it, writers waiting for SQLite's lock poll
            /// it with growing sleeps, and a join can starve behind a stream of bulk batches
            /// for seconds; in a queue it waits for at most the batch in front of it.
            turns: Option<Arc<Turns>>,
        }

        impl $name {
            /// Wraps a pool, bringing its schema up to date first; `keys` seal and open
            /// everything written. Every domain counts as corporate until
            /// [`Self::with_corporate_domains`] says otherwise.
            pub async fn migrate(pool: sqlx::Pool<$db>, keys: Arc<SealKeys>) -> anyhow::Result<Self> {
                $migrator.run(&pool).await?;
                Ok(Self {
                    pool,
                    keys,
                    corporate: Arc::default(),
                    turns: $serial.then(Arc::default),
                })
            }

            /// The domains whose addresses are the company's own, for inferring the kind of
            /// an identity added by address.
            #[must_use]
            pub fn with_corporate_domains(mut self, corporate: CorporateDomains) -> Self {
                self.corporate = Arc::new(corporate);
                self
            }

            /// Waits for this writer's turn (see `turns`); holds it until dropped. Nothing to
            /// wait for where the database takes concurrent writers (Postgres).
            async fn turn(&self, kind: Writer) -> Option<tokio::sync::OwnedMutexGuard<()>> {
                match &self.turns {
                    Some(t) => Some(t.take(kind).await),
                    None => None,
                }
            }

            /// Commits `tx` when `done` succeeded; otherwise rolls it back now and answers the
            /// error. A transaction only dropped is rolled back lazily on Postgres (when its
            /// connection is next used), holding its row locks until then: a label refusal
            /// would keep the person's identity locked for whoever touches it next.
            async fn finish<T>(
                tx: sqlx::Transaction<'_, $db>,
                done: Result<T, StoreError>,
            ) -> Result<T, StoreError> {
                match done {
                    Ok(value) => {
                        tx.commit().await?;
                        Ok(value)
                    }
                    Err(e) => {
                        // The error that matters is `e`; a failed rollback closes the
                        // connection, which ends the transaction too.
                        let _ = tx.rollback().await;
                        Err(e)
                    }
                }
            }

            /// The pool, for tests that inspect or tamper with the tables directly.
            #[cfg(test)]
            pub(crate) fn pool(&self) -> &sqlx::Pool<$db> {
                &self.pool
            }

            /// Fails with `GroupNotFound` unless the group exists, and holds the group (shared)
            /// until the write transaction ends, so it cannot be deprovisioned meanwhile.
            async fn hold_group(
                conn: &mut <$db as sqlx::Database>::Connection,
                group: GroupId,
            ) -> Result<(), StoreError> {
                let found: Option<Uuid> = sqlx::query_scalar(concat!(
                    "SELECT group_id FROM distribution_groups WHERE group_id = $1",
                    $for_share
                ))
                .bind(group.as_uuid())
                .fetch_optional(&mut *conn)
                .await?;
                found.map(drop).ok_or(StoreError::GroupNotFound)
            }

            /// Every identity whose subject tag or address tag, under any configured key,
            /// names `subject` or `email`, opened, in id order; locked (on Postgres) when
            /// `lock`. Usually one row, two when an address and a subject name different
            /// identities.
            async fn find_identities(
                &self,
                conn: &mut <$db as sqlx::Database>::Connection,
                subject: Option<&Subject>,
                email: Option<&Email>,
                lock: bool,
            ) -> Result<Vec<Opened>, StoreError> {
                let mut q = sqlx::QueryBuilder::<$db>::new(format!(
                    "SELECT {IDENTITY_COLUMNS} FROM identities WHERE "
                ));
                let mut clauses = Vec::new();
                if let Some(s) = subject {
                    clauses.push(("subject_tag", subject_tags(&self.keys, s)));
                }
                if let Some(e) = email {
                    clauses.push(("email_tag", email_tags(&self.keys, e)));
                }
                if clauses.is_empty() {
                    return Err(Unidentified.into());
                }
                for (i, (column, tags)) in clauses.into_iter().enumerate() {
                    if i > 0 {
                        q.push(" OR ");
                    }
                    q.push(column).push(" IN (");
                    let mut list = q.separated(", ");
                    for tag in tags {
                        list.push_bind(tag);
                    }
                    list.push_unseparated(")");
                }
                q.push(" ORDER BY id");
                if lock {
                    q.push($for_update);
                }
                let rows: Vec<IdentityTuple> = q.build_query_as().fetch_all(&mut *conn).await?;
                rows.into_iter()
                    .map(|r| IdentityRow::from(r).open(&self.keys))
                    .collect()
            }

            /// The identities of the person signed in as `subject` with the address `email`
            /// ([`identity::own`]), opened; not locked.
            async fn own_identities(
                &self,
                conn: &mut <$db as sqlx::Database>::Connection,
                subject: &Subject,
                email: Option<&Email>,
            ) -> Result<Vec<Opened>, StoreError> {
                let found = self.find_identities(&mut *conn, Some(subject), email, false).await?;
                let known: Vec<Known<'_>> = found
                    .iter()
                    .map(|o| Known { profile: &o.profile, email_owned: o.email_owned })
                    .collect();
                let (by_subject, by_email) = identity::own(subject, email, &known);
                Ok([by_subject, by_email]
                    .into_iter()
                    .flatten()
                    .map(|i| found[i].clone())
                    .collect())
            }

            /// Deletes the membership rows with these tags (none is fine).
            async fn delete_members(
                conn: &mut <$db as sqlx::Database>::Connection,
                tags: &[Vec<u8>],
            ) -> Result<u64, StoreError> {
                let mut deleted = 0;
                for chunk in tags.chunks(CHUNK) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "DELETE FROM memberships WHERE member_tag IN (",
                    );
                    let mut list = q.separated(", ");
                    for tag in chunk {
                        list.push_bind(tag.as_slice());
                    }
                    list.push_unseparated(")");
                    deleted += q.build().execute(&mut *conn).await?.rows_affected();
                }
                Ok(deleted)
            }

            /// Makes each (group, identity) of `pairs` a membership under `key`; one already
            /// there (under this key) is left as it is.
            async fn insert_members(
                conn: &mut <$db as sqlx::Database>::Connection,
                key: &SealKey,
                pairs: &[(GroupId, Uuid)],
            ) -> Result<(), StoreError> {
                Self::write_members(conn, key, pairs, " ON CONFLICT (member_tag) DO NOTHING").await
            }

            /// Makes each (group, identity) of `pairs` a membership under `key`, where no row
            /// can be there yet: the identities were made in this transaction, and a tag is a
            /// keyed hash of a fresh random id. Without the conflict clause, which costs the
            /// database a speculative insertion per row.
            async fn insert_new_members(
                conn: &mut <$db as sqlx::Database>::Connection,
                key: &SealKey,
                pairs: &[(GroupId, Uuid)],
            ) -> Result<(), StoreError> {
                Self::write_members(conn, key, pairs, "").await
            }

            async fn write_members(
                conn: &mut <$db as sqlx::Database>::Connection,
                key: &SealKey,
                pairs: &[(GroupId, Uuid)],
                on_conflict: &str,
            ) -> Result<(), StoreError> {
                for chunk in pairs.chunks(CHUNK) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO memberships (member_tag, group_id, sealed_identity, key_id) ",
                    );
                    q.push_values(chunk, |mut b, (g, identity)| {
                        b.push_bind(key.member_tag(*g, *identity))
                            .push_bind(*g.as_uuid())
                            .push_bind(key.seal_member(*g, *identity))
                            .push_bind(key.id().to_string());
                    });
                    q.push(on_conflict);
                    q.build().execute(&mut *conn).await?;
                }
                Ok(())
            }

            /// Of `groups`, those that still exist.
            async fn existing_groups(
                conn: &mut <$db as sqlx::Database>::Connection,
                groups: &[GroupId],
            ) -> Result<Vec<GroupId>, StoreError> {
                let mut existing = Vec::with_capacity(groups.len());
                for chunk in groups.chunks(CHUNK) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "SELECT group_id FROM distribution_groups WHERE group_id IN (",
                    );
                    let mut list = q.separated(", ");
                    for g in chunk {
                        list.push_bind(*g.as_uuid());
                    }
                    list.push_unseparated(")");
                    let found: Vec<Uuid> = q.build_query_scalar().fetch_all(&mut *conn).await?;
                    existing.extend(found.into_iter().map(GroupId::from));
                }
                existing.sort_unstable();
                Ok(existing)
            }

            /// Creates the identity row, or replaces every column of it.
            async fn upsert_identity(
                conn: &mut <$db as sqlx::Database>::Connection,
                row: IdentityWrite,
            ) -> Result<(), StoreError> {
                Self::write_identities(
                    conn,
                    vec![row],
                    " ON CONFLICT (id) DO UPDATE SET subject_tag = excluded.subject_tag, \
                     email_tag = excluded.email_tag, sealed_profile = excluded.sealed_profile, \
                     sealed_groups = excluded.sealed_groups, key_id = excluded.key_id",
                )
                .await
            }

            /// Creates identity rows with fresh ids, [`CHUNK`] rows a statement. Plainly: a
            /// conflict clause costs a speculative insertion per row, and a tag another
            /// transaction took meanwhile fails the statement either way (a batch then plans
            /// again, finding that person: see `batch_once`).
            async fn insert_identities(
                conn: &mut <$db as sqlx::Database>::Connection,
                rows: Vec<IdentityWrite>,
            ) -> Result<(), StoreError> {
                Self::write_identities(conn, rows, "").await
            }

            async fn write_identities(
                conn: &mut <$db as sqlx::Database>::Connection,
                rows: Vec<IdentityWrite>,
                on_conflict: &str,
            ) -> Result<(), StoreError> {
                let mut rows = rows.into_iter().peekable();
                while rows.peek().is_some() {
                    let chunk: Vec<IdentityWrite> = rows.by_ref().take(CHUNK).collect();
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO identities \
                         (id, subject_tag, email_tag, sealed_profile, sealed_groups, key_id) ",
                    );
                    q.push_values(chunk, |mut b, r| {
                        b.push_bind(r.id)
                            .push_bind(r.subject_tag)
                            .push_bind(r.email_tag)
                            .push_bind(r.sealed_profile)
                            .push_bind(r.sealed_groups)
                            .push_bind(r.key_id);
                    });
                    q.push(on_conflict);
                    q.build().execute(&mut *conn).await?;
                }
                Ok(())
            }

            /// Rewrites every column of the identity rows with these ids (an id with no row
            /// matches nothing), in set-based statements.
            async fn update_identities(
                conn: &mut <$db as sqlx::Database>::Connection,
                rows: Vec<IdentityWrite>,
            ) -> Result<(), StoreError> {
                let mut rows = rows.into_iter().peekable();
                while rows.peek().is_some() {
                    let chunk: Vec<IdentityWrite> = rows.by_ref().take(CHUNK).collect();
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "UPDATE identities SET subject_tag = v.column2, email_tag = v.column3, \
                         sealed_profile = v.column4, sealed_groups = v.column5, key_id = v.column6 \
                         FROM (",
                    );
                    q.push_values(chunk, |mut b, r| {
                        b.push_bind(r.id)
                            .push_bind(r.subject_tag)
                            .push_bind(r.email_tag)
                            .push_bind(r.sealed_profile)
                            .push_bind(r.sealed_groups)
                            .push_bind(r.key_id);
                    });
                    q.push(") AS v WHERE identities.id = v.column1");
                    q.build().execute(&mut *conn).await?;
                }
                Ok(())
            }

            async fn provision_once(&self, request: &ProvisionGroup) -> Result<Provisioned, StoreError> {
                let group = request.group_id;
                let _turn = self.turn(Writer::Routine).await;
                let mut tx = self.pool.begin_with($begin).await?;
                let inserted = sqlx::query(
                    "INSERT INTO distribution_groups (group_id, address, display_name) \
                     VALUES ($1, $2, $3) ON CONFLICT (group_id) DO NOTHING",
                )
                .bind(group.as_uuid())
                .bind(request.address.as_str())
                .bind(request.display_name.as_str())
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    if db::is_unique_violation(&e) {
                        StoreError::AddressTaken
                    } else {
                        StoreError::Db(e)
                    }
                })?
                .rows_affected();
                let created = inserted == 1;
                if !created {
                    let (address, display_name): (String, String) = sqlx::query_as(concat!(
                        "SELECT address, display_name FROM distribution_groups WHERE group_id = $1",
                        $for_update
                    ))
                    .bind(group.as_uuid())
                    .fetch_one(&mut *tx)
                    .await?;
                    if address != request.address.as_str() {
                        return Err(StoreError::AddressMismatch);
                    }
                    if display_name != request.display_name.as_str() {
                        sqlx::query("UPDATE distribution_groups SET display_name = $1 WHERE group_id = $2")
                            .bind(request.display_name.as_str())
                            .bind(group.as_uuid())
                            .execute(&mut *tx)
                            .await?;
                        <$db>::append(&mut tx, &[NewEvent::new(action::GROUP_RENAMED, Some(group))]).await?;
                    }
                } else {
                    <$db>::append(&mut tx, &[NewEvent::new(action::GROUP_PROVISIONED, Some(group))]).await?;
                }
                tx.commit().await?;
                Ok(Provisioned {
                    group: DistributionGroup {
                        group_id: group,
                        address: request.address.clone(),
                        display_name: request.display_name.clone(),
                    },
                    created,
                })
            }

            async fn deprovision_once(&self, group: GroupId) -> Result<(), StoreError> {
                let active = self.keys.active();
                let _turn = self.turn(Writer::Routine).await;
                let mut tx = self.pool.begin_with($begin).await?;
                // Exclusive: adds and removes in flight finish first, later ones find no group.
                let found: Option<Uuid> = sqlx::query_scalar(concat!(
                    "SELECT group_id FROM distribution_groups WHERE group_id = $1",
                    $for_update
                ))
                .bind(group.as_uuid())
                .fetch_optional(&mut *tx)
                .await?;
                if found.is_none() {
                    tx.commit().await?;
                    return Ok(());
                }
                let sealed: Vec<(Vec<u8>, String)> = sqlx::query_as(
                    "SELECT sealed_identity, key_id FROM memberships WHERE group_id = $1",
                )
                .bind(group.as_uuid())
                .fetch_all(&mut *tx)
                .await?;
                let mut ids = sealed
                    .iter()
                    .map(|(s, kid)| Ok(self.keys.get(kid)?.open_member(group, s)?))
                    .collect::<Result<Vec<Uuid>, StoreError>>()?;
                // Identity locks in id order, as every other writer takes them.
                ids.sort_unstable();
                ids.dedup();
                for chunk in ids.chunks(CHUNK) {
                    let mut select = sqlx::QueryBuilder::<$db>::new(format!(
                        "SELECT {IDENTITY_COLUMNS} FROM identities WHERE id IN ("
                    ));
                    let mut list = select.separated(", ");
                    for id in chunk {
                        list.push_bind(*id);
                    }
                    select.push(concat!(") ORDER BY id", $for_update));
                    let rows: Vec<IdentityTuple> =
                        select.build_query_as().fetch_all(&mut *tx).await?;
                    let mut rewritten = Vec::with_capacity(rows.len());
                    for row in rows {
                        let mut o = IdentityRow::from(row).open(&self.keys)?;
                        o.groups.retain(|g| *g != group);
                        rewritten.push(IdentityWrite::new(active, o.id, &o.profile, &o.groups, o.email_owned));
                    }
                    Self::update_identities(&mut tx, rewritten).await?;
                }
                sqlx::query("DELETE FROM memberships WHERE group_id = $1")
                    .bind(group.as_uuid())
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM distribution_groups WHERE group_id = $1")
                    .bind(group.as_uuid())
                    .execute(&mut *tx)
                    .await?;
                <$db>::append(&mut tx, &[NewEvent::new(action::GROUP_DEPROVISIONED, Some(group))]).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn add_once(&self, group: GroupId, request: &AddMember) -> Result<(), StoreError> {
                let member = &request.member;
                if member.subject.is_none() && member.email.is_none() {
                    return Err(Unidentified.into());
                }
                let _turn = self.turn(Writer::Routine).await;
                let mut tx = self.pool.begin_with($begin).await?;
                let done = async {
                    Self::hold_group(&mut tx, group).await?;
                    let mut events = Vec::new();
                    self.add_in(&mut tx, group, request, &mut events).await?;
                    <$db>::append(&mut tx, &events).await?;
                    Ok(())
                }
                .await;
                Self::finish(tx, done).await
            }

            /// The add itself, inside the caller's write transaction, which already holds the
            /// group and has checked that someone is named. Refuses (label) before writing
            /// anything, so a refusal leaves the transaction as it was. Pushes the audit events of what it did to
            /// `events` (for the caller to append as its transaction's last statements).
            async fn add_in(
                &self,
                tx: &mut <$db as sqlx::Database>::Connection,
                group: GroupId,
                request: &AddMember,
                events: &mut Vec<NewEvent>,
            ) -> Result<(), StoreError> {
                let member = &request.member;
                let active = self.keys.active();

                // Preparation, all reads: who this is, what kind, and whether the label admits
                // them. Nothing is written unless it does.
                let found = self
                    .find_identities(&mut *tx, member.subject.as_ref(), member.email.as_ref(), true)
                    .await?;
                let known: Vec<Known<'_>> = found
                    .iter()
                    .map(|o| Known { profile: &o.profile, email_owned: o.email_owned })
                    .collect();
                let AddPlan { target, profile, email_owned, merge, strip } =
                    identity::plan_add(member, &known, &self.corporate)?;
                domain::may_enter(profile.kind, &request.label.name, &request.label.policy)?;

                let (id, mut groups) = match target {
                    Target::Existing(i) => (found[i].id, found[i].groups.clone()),
                    Target::Fresh => (Uuid::new_v4(), Vec::new()),
                };
                let pseudonym = audit::member(active, group, id);
                let actor = audit::self_or_service(member.kind.is_some());
                // The address moved to this person: its former holder keeps the rest.
                if let Some(b) = strip {
                    let other = &found[b];
                    let mut without = other.profile.clone();
                    without.email = None;
                    let row = IdentityWrite::new(active, other.id, &without, &other.groups, false);
                    Self::update_identities(&mut *tx, vec![row]).await?;
                    events.push(
                        NewEvent::new(action::IDENTITY_ADDRESS_RELEASED, None)
                            .about(audit::identity_alone(active, other.id)),
                    );
                }
                // The same person, added by address before: their memberships move here.
                if let Some(b) = merge {
                    let other = &found[b];
                    let moved = Self::existing_groups(&mut *tx, &other.groups).await?;
                    let mut stale = Vec::new();
                    for g in &moved {
                        stale.extend(member_tags(self.keys.all(), *g, other.id));
                        stale.extend(member_tags(self.keys.retired(), *g, id));
                    }
                    Self::delete_members(&mut *tx, &stale).await?;
                    let pairs: Vec<(GroupId, Uuid)> = moved.iter().map(|g| (*g, id)).collect();
                    Self::insert_members(&mut *tx, active, &pairs).await?;
                    sqlx::query("DELETE FROM identities WHERE id = $1")
                        .bind(other.id)
                        .execute(&mut *tx)
                        .await?;
                    groups.extend(moved);
                    events.push(
                        NewEvent::new(action::IDENTITY_BOUND, Some(group))
                            .about(pseudonym.clone())
                            .by(actor.clone()),
                    );
                }

                // From here the statements are the same whether or not the person is a member,
                // or was known (INV-3). A membership made under a retired key goes, and the row
                // under the active key is inserted, which does nothing when it is there.
                if !self.keys.retired().is_empty() {
                    Self::delete_members(&mut *tx, &member_tags(self.keys.retired(), group, id)).await?;
                }
                Self::insert_members(&mut *tx, active, &[(group, id)]).await?;
                // The sealed list, rewritten with a fresh nonce either way.
                groups.push(group);
                groups.sort_unstable();
                groups.dedup();
                let row = IdentityWrite::new(active, id, &profile, &groups, email_owned);
                Self::upsert_identity(&mut *tx, row).await?;
                events.push(
                    NewEvent::new(action::MEMBERSHIP_ADDED, Some(group)).about(pseudonym).by(actor),
                );
                Ok(())
            }

            async fn remove_once(&self, group: GroupId, who: &IdentityRef) -> Result<(), StoreError> {
                if who.subject.is_none() && who.email.is_none() {
                    return Err(Unidentified.into());
                }
                let _turn = self.turn(Writer::Routine).await;
                let mut tx = self.pool.begin_with($begin).await?;
                let done = async {
                    Self::hold_group(&mut tx, group).await?;
                    let mut events = Vec::new();
                    self.remove_in(&mut tx, group, who, &mut events).await?;
                    <$db>::append(&mut tx, &events).await?;
                    Ok(())
                }
                .await;
                Self::finish(tx, done).await
            }

            /// The removal itself, inside the caller's write transaction, which already holds
            /// the group and has checked that someone is named. Pushes one audit event to `events`, about the first candidate (a
            /// stand-in's pseudonym for someone the tenant has never seen, INV-3).
            async fn remove_in(
                &self,
                tx: &mut <$db as sqlx::Database>::Connection,
                group: GroupId,
                who: &IdentityRef,
                events: &mut Vec<NewEvent>,
            ) -> Result<(), StoreError> {
                let found = self
                    .find_identities(&mut *tx, who.subject.as_ref(), who.email.as_ref(), true)
                    .await?;
                let known: Vec<Known<'_>> = found
                    .iter()
                    .map(|o| Known { profile: &o.profile, email_owned: o.email_owned })
                    .collect();
                // One slot per candidate (two when a subject and an address are given: the
                // person's own identity and one made from their address). A candidate the
                // tenant has never seen is no member; the same statements still run, on an id
                // that matches no row (INV-3).
                let targets: Vec<Opened> =
                    identity::removal_targets(who.subject.as_ref(), who.email.as_ref(), &known)
                        .into_iter()
                        .map(|slot| match slot {
                            Some(i) => found[i].clone(),
                            None => Opened {
                                id: Uuid::new_v4(),
                                profile: stand_in_profile(who),
                                groups: Vec::new(),
                                email_owned: false,
                            },
                        })
                        .collect();
                let tags: Vec<Vec<u8>> = targets
                    .iter()
                    .flat_map(|t| member_tags(self.keys.all(), group, t.id))
                    .collect();
                Self::delete_members(&mut *tx, &tags).await?;
                if let Some(first) = targets.first() {
                    events.push(
                        NewEvent::new(action::MEMBERSHIP_REMOVED, Some(group))
                            .about(audit::member(self.keys.active(), group, first.id)),
                    );
                }
                let rows = targets
                    .into_iter()
                    .map(|Opened { id, profile, mut groups, email_owned }| {
                        groups.retain(|g| *g != group);
                        IdentityWrite::new(self.keys.active(), id, &profile, &groups, email_owned)
                    })
                    .collect();
                Self::update_identities(&mut *tx, rows).await?;
                Ok(())
            }

            /// A batch in one write transaction, in a handful of set-based statements
            /// whatever its size: the groups it names are held (shared, in id order), every
            /// identity it could be about is read and locked (in id order), the operations are
            /// planned in memory in order ([`batch_plan`]: label checks included), and the
            /// result is written as one delete, one insert and one upsert per [`CHUNK`] rows.
            /// A refusal (label, nobody named, unknown group) is counted and writes nothing
            /// for that operation; any database failure rolls the whole batch back, so a
            /// chunk is applied whole or not at all.
            async fn batch_once(&self, batch: &ApplyBatch) -> Result<BatchOutcome, StoreError> {
                let mut named: Vec<GroupId> = batch.ops.iter().map(|o| o.group_id).collect();
                named.sort_unstable();
                named.dedup();
                let _turn = self.turn(Writer::Bulk).await;
                let mut tx = self.pool.begin_with($begin).await?;
                let done = async {
                    let mut held = HashSet::with_capacity(named.len());
                    for chunk in named.chunks(CHUNK) {
                        let mut q = sqlx::QueryBuilder::<$db>::new(
                            "SELECT group_id FROM distribution_groups WHERE group_id IN (",
                        );
                        let mut list = q.separated(", ");
                        for g in chunk {
                            list.push_bind(*g.as_uuid());
                        }
                        list.push_unseparated(") ORDER BY group_id");
                        q.push($for_share);
                        let found: Vec<Uuid> = q.build_query_scalar().fetch_all(&mut *tx).await?;
                        held.extend(found.into_iter().map(GroupId::from));
                    }
                    let active = self.keys.active();
                    // The people this batch makes are written first, in the order of their
                    // tags (the same order in every batch, so two batches making the same
                    // people wait for each other instead of deadlocking). When another batch
                    // made some of them meanwhile, the insert waits for it to commit and then
                    // meets its tags: this batch undoes its own insert, reads everyone again
                    // (now including them) and plans again, holding what it holds, instead of
                    // starting over and racing the next batch.
                    let mut known = self.batch_people(&mut tx, batch, &held).await?;
                    let mut tries = 1;
                    let (plan, existing) = loop {
                        let existing: HashSet<Uuid> = known.iter().map(|p| p.id).collect();
                        let plan = batch_plan::plan(batch, &held, known, &self.corporate);
                        let mut made: Vec<IdentityWrite> = plan
                            .identities
                            .iter()
                            .filter(|p| !existing.contains(&p.id))
                            .map(|p| IdentityWrite::new(active, p.id, &p.profile, &p.groups, p.email_owned))
                            .collect();
                        made.sort_by(|a, b| {
                            (&a.subject_tag, &a.email_tag, a.id).cmp(&(&b.subject_tag, &b.email_tag, b.id))
                        });
                        sqlx::query("SAVEPOINT batch_made").execute(&mut *tx).await?;
                        match Self::insert_identities(&mut tx, made).await {
                            Ok(()) => {
                                sqlx::query("RELEASE SAVEPOINT batch_made").execute(&mut *tx).await?;
                                break (plan, existing);
                            }
                            Err(e) if e.is_unique_violation() && tries < MADE_TRIES => {
                                sqlx::query("ROLLBACK TO SAVEPOINT batch_made").execute(&mut *tx).await?;
                                tries += 1;
                                tracing::debug!(tries, "another batch made some of this batch's new people first; planning again");
                                known = self.batch_people(&mut tx, batch, &held).await?;
                            }
                            Err(e) => return Err(e),
                        }
                    };

                    let mut gone = Vec::new();
                    let mut present = Vec::new();
                    for (&(g, id), &holds) in &plan.memberships {
                        if holds {
                            // A membership made under a retired key goes; the active one stays.
                            gone.extend(member_tags(self.keys.retired(), g, id));
                            present.push((g, id));
                        } else {
                            gone.extend(member_tags(self.keys.all(), g, id));
                        }
                    }
                    Self::delete_members(&mut tx, &gone).await?;
                    // People made by this batch have no membership row yet, under any key.
                    let (fresh, known_pairs): (Vec<_>, Vec<_>) =
                        present.into_iter().partition(|(_, id)| !existing.contains(id));
                    Self::insert_members(&mut tx, active, &known_pairs).await?;
                    let changed: Vec<IdentityWrite> = plan
                        .identities
                        .iter()
                        .filter(|p| existing.contains(&p.id))
                        .map(|p| IdentityWrite::new(active, p.id, &p.profile, &p.groups, p.email_owned))
                        .collect();
                    Self::update_identities(&mut tx, changed).await?;
                    Self::insert_new_members(&mut tx, active, &fresh).await?;
                    // AUDIT (issue 6): every event of the chunk, in one append, last in the
                    // transaction. A removal of someone never seen is recorded under a stand-in's
                    // pseudonym, as the single call records it (INV-3).
                    let events: Vec<NewEvent> = plan
                        .applied
                        .iter()
                        .map(|&(kind, g, id)| {
                            let action = match kind {
                                BatchOpKind::Add => action::MEMBERSHIP_ADDED,
                                BatchOpKind::Remove => action::MEMBERSHIP_REMOVED,
                            };
                            let id = id.unwrap_or_else(Uuid::new_v4);
                            NewEvent::new(action, Some(g)).about(audit::member(active, g, id))
                        })
                        .collect();
                    <$db>::append(&mut tx, &events).await?;
                    Ok(plan.outcome)
                }
                .await;
                Self::finish(tx, done).await
            }

            /// Every identity an operation of `batch` on a held group could be about (by the
            /// tags of its subject and address, under every key), opened and locked. Found
            /// first, then locked in id order in a second pass, so two batches sharing people
            /// take their locks in the same order.
            async fn batch_people(
                &self,
                tx: &mut <$db as sqlx::Database>::Connection,
                batch: &ApplyBatch,
                held: &HashSet<GroupId>,
            ) -> Result<Vec<batch_plan::Person>, StoreError> {
                let mut by_subject: HashSet<Vec<u8>> = HashSet::new();
                let mut by_email: HashSet<Vec<u8>> = HashSet::new();
                for op in batch.ops.iter().filter(|o| held.contains(&o.group_id)) {
                    if let Some(s) = &op.subject {
                        by_subject.extend(subject_tags(&self.keys, s));
                    }
                    if let Some(e) = &op.email {
                        by_email.extend(email_tags(&self.keys, e));
                    }
                }
                let mut ids: Vec<Uuid> = Vec::new();
                for (column, tags) in [("subject_tag", by_subject), ("email_tag", by_email)] {
                    let tags: Vec<Vec<u8>> = tags.into_iter().collect();
                    for chunk in tags.chunks(CHUNK) {
                        let mut q = sqlx::QueryBuilder::<$db>::new("SELECT id FROM identities WHERE ");
                        q.push(column).push(" IN (");
                        let mut list = q.separated(", ");
                        for tag in chunk {
                            list.push_bind(tag.as_slice());
                        }
                        list.push_unseparated(")");
                        let found: Vec<Uuid> = q.build_query_scalar().fetch_all(&mut *tx).await?;
                        ids.extend(found);
                    }
                }
                ids.sort_unstable();
                ids.dedup();
                let mut people = Vec::with_capacity(ids.len());
                for chunk in ids.chunks(CHUNK) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(format!(
                        "SELECT {IDENTITY_COLUMNS} FROM identities WHERE id IN ("
                    ));
                    let mut list = q.separated(", ");
                    for id in chunk {
                        list.push_bind(*id);
                    }
                    q.push(concat!(") ORDER BY id", $for_update));
                    let rows: Vec<IdentityTuple> = q.build_query_as().fetch_all(&mut *tx).await?;
                    for row in rows {
                        let mut o = IdentityRow::from(row).open(&self.keys)?;
                        o.groups.sort_unstable();
                        o.groups.dedup();
                        people.push(batch_plan::Person {
                            id: o.id,
                            profile: o.profile,
                            groups: o.groups,
                            email_owned: o.email_owned,
                        });
                    }
                }
                Ok(people)
            }

            async fn offboard_once(&self, who: &IdentityRef) -> Result<(), StoreError> {
                if who.subject.is_none() && who.email.is_none() {
                    return Err(Unidentified.into());
                }
                let _turn = self.turn(Writer::Routine).await;
                let mut tx = self.pool.begin_with($begin).await?;
                let found = self
                    .find_identities(&mut tx, who.subject.as_ref(), who.email.as_ref(), true)
                    .await?;
                let known: Vec<Known<'_>> = found
                    .iter()
                    .map(|o| Known { profile: &o.profile, email_owned: o.email_owned })
                    .collect();
                let targets = identity::offboard_targets(who.subject.as_ref(), who.email.as_ref(), &known);
                // A stranger: the delete still runs, on an id that matches no row.
                let mut ids = vec![Uuid::new_v4()];
                let subject = targets.first().map_or(ids[0], |i| found[*i].id);
                let mut tags = Vec::new();
                for i in targets {
                    let o = &found[i];
                    ids.push(o.id);
                    for g in &o.groups {
                        tags.extend(member_tags(self.keys.all(), *g, o.id));
                    }
                }
                // Mail expands from membership rows: once these are gone, so is the mail.
                Self::delete_members(&mut tx, &tags).await?;
                let mut q = sqlx::QueryBuilder::<$db>::new("DELETE FROM identities WHERE id IN (");
                let mut list = q.separated(", ");
                for id in ids {
                    list.push_bind(id);
                }
                list.push_unseparated(")");
                q.build().execute(&mut *tx).await?;
                // One event, about no group, under an identity-only pseudonym (see crate::audit).
                let event = NewEvent::new(action::IDENTITY_OFFBOARDED, None)
                    .about(audit::identity_alone(self.keys.active(), subject));
                <$db>::append(&mut tx, &[event]).await?;
                tx.commit().await?;
                Ok(())
            }

            /// Re-seals the identities after `after` in id order, at most `batch` of them, in
            /// one transaction. Answers how many it rewrote and where the next batch starts
            /// (`None`: that was the last).
            async fn reseal_identities_once(
                &self,
                after: Uuid,
                batch: usize,
            ) -> Result<(u64, Option<Uuid>), StoreError> {
                let active = self.keys.active();
                let _turn = self.turn(Writer::Bulk).await;
                let mut tx = self.pool.begin_with($begin).await?;
                let rows: Vec<IdentityTuple> = sqlx::query_as(&format!(
                    "SELECT {IDENTITY_COLUMNS} FROM identities WHERE id > $1 ORDER BY id LIMIT $2{}",
                    $for_update
                ))
                .bind(after)
                .bind(i64::try_from(batch).unwrap_or(i64::MAX))
                .fetch_all(&mut *tx)
                .await?;
                let next = (rows.len() >= batch).then(|| rows.last().map(|r| r.0)).flatten();
                let rows: Vec<IdentityRow> = rows.into_iter().map(IdentityRow::from).collect();
                let opened = rows
                    .iter()
                    .map(|r| r.open(&self.keys))
                    .collect::<Result<Vec<Opened>, StoreError>>()?;

                // Rows written before addresses were tagged get the tag of their address,
                // unless another identity holds it (under any key) or one earlier in this batch
                // takes it.
                let candidates: Vec<&Email> = opened
                    .iter()
                    .filter(|o| !o.email_owned)
                    .filter_map(|o| o.profile.email.as_ref())
                    .collect();
                let mut taken: HashSet<Vec<u8>> = HashSet::new();
                let all_tags: Vec<Vec<u8>> =
                    candidates.iter().flat_map(|e| email_tags(&self.keys, e)).collect();
                for chunk in all_tags.chunks(CHUNK) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "SELECT email_tag FROM identities WHERE email_tag IN (",
                    );
                    let mut list = q.separated(", ");
                    for tag in chunk {
                        list.push_bind(tag.as_slice());
                    }
                    list.push_unseparated(")");
                    let held: Vec<Vec<u8>> = q.build_query_scalar().fetch_all(&mut *tx).await?;
                    taken.extend(held);
                }

                let mut writes = Vec::new();
                for (row, o) in rows.iter().zip(&opened) {
                    let mut owned = o.email_owned;
                    if let (false, Some(e)) = (owned, o.profile.email.as_ref()) {
                        let tags = email_tags(&self.keys, e);
                        if tags.iter().all(|t| !taken.contains(t)) {
                            owned = true;
                            taken.extend(tags);
                        }
                    }
                    let write = IdentityWrite::new(active, o.id, &o.profile, &o.groups, owned);
                    if !write.matches_tags_of(row) {
                        writes.push(write);
                    }
                }
                let rewritten = writes.len() as u64;
                Self::update_identities(&mut tx, writes).await?;
                if rewritten > 0 {
                    <$db>::append(&mut tx, &[NewEvent::new(action::KEY_ROTATION_RESEALED, None)]).await?;
                }
                tx.commit().await?;
                Ok((rewritten, next))
            }

            /// Re-seals the membership rows after `after` in tag order, at most `batch` of
            /// them, in one transaction; as [`Self::reseal_identities_once`].
            async fn reseal_memberships_once(
                &self,
                after: &[u8],
                batch: usize,
            ) -> Result<(u64, Option<Vec<u8>>), StoreError> {
                let active = self.keys.active();
                let _turn = self.turn(Writer::Bulk).await;
                let mut tx = self.pool.begin_with($begin).await?;
                let rows: Vec<(Vec<u8>, Uuid, Vec<u8>, String)> = sqlx::query_as(concat!(
                    "SELECT member_tag, group_id, sealed_identity, key_id FROM memberships \
                     WHERE member_tag > $1 ORDER BY member_tag LIMIT $2",
                    $for_update
                ))
                .bind(after)
                .bind(i64::try_from(batch).unwrap_or(i64::MAX))
                .fetch_all(&mut *tx)
                .await?;
                let next = (rows.len() >= batch).then(|| rows.last().map(|r| r.0.clone())).flatten();
                // Every writer writes a membership's tag, seal and key id together, so a row
                // under the active key is entirely under it.
                let mut moves = Vec::new();
                for (tag, group, sealed, kid) in rows.into_iter().filter(|r| r.3 != active.id()) {
                    let group = GroupId::from(group);
                    let identity = self.keys.get(&kid)?.open_member(group, &sealed)?;
                    moves.push((tag, group, identity));
                }
                if moves.is_empty() {
                    tx.commit().await?;
                    return Ok((0, next));
                }
                // A row under the active key for the same membership may have been written
                // meanwhile: then the old row simply goes.
                let new_tags: Vec<Vec<u8>> =
                    moves.iter().map(|(_, g, id)| active.member_tag(*g, *id)).collect();
                let mut present: HashSet<Vec<u8>> = HashSet::new();
                for chunk in new_tags.chunks(CHUNK) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "SELECT member_tag FROM memberships WHERE member_tag IN (",
                    );
                    let mut list = q.separated(", ");
                    for tag in chunk {
                        list.push_bind(tag.as_slice());
                    }
                    list.push_unseparated(")");
                    let found: Vec<Vec<u8>> = q.build_query_scalar().fetch_all(&mut *tx).await?;
                    present.extend(found);
                }
                let rewritten = moves.len() as u64;
                let (dropped, kept): (Vec<_>, Vec<_>) = moves
                    .into_iter()
                    .zip(new_tags)
                    .partition(|(_, new)| present.contains(new));
                let dropped: Vec<Vec<u8>> = dropped.into_iter().map(|((old, _, _), _)| old).collect();
                Self::delete_members(&mut tx, &dropped).await?;
                for chunk in kept.chunks(CHUNK) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "UPDATE memberships SET member_tag = v.column2, sealed_identity = v.column3, \
                         key_id = v.column4 FROM (",
                    );
                    q.push_values(chunk, |mut b, ((old, group, identity), new)| {
                        b.push_bind(old.as_slice())
                            .push_bind(new.as_slice())
                            .push_bind(active.seal_member(*group, *identity))
                            .push_bind(active.id().to_string());
                    });
                    q.push(") AS v WHERE memberships.member_tag = v.column1");
                    q.build().execute(&mut *tx).await?;
                }
                <$db>::append(&mut tx, &[NewEvent::new(action::KEY_ROTATION_RESEALED, None)]).await?;
                tx.commit().await?;
                Ok((rewritten, next))
            }
        }

        #[async_trait]
        impl Store for $name {
            fn with_own_pool(&self, max_connections: u32, priority: Priority) -> Arc<dyn Store> {
                let options = sqlx::pool::PoolOptions::<$db>::new()
                    .max_connections(max_connections.max(1))
                    .acquire_timeout(self.pool.options().get_acquire_timeout());
                let pool = $bulk_pool(options, &self.pool.connect_options(), priority);
                Arc::new(Self { pool, ..self.clone() })
            }

            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            fn audit_db(&self) -> audit::Db {
                self.pool.clone().into()
            }

            async fn provision_group(&self, request: &ProvisionGroup) -> Result<Provisioned, StoreError> {
                retrying(|| self.provision_once(request)).await
            }

            async fn deprovision_group(&self, group: GroupId) -> Result<(), StoreError> {
                retrying(|| self.deprovision_once(group)).await
            }

            async fn add_member(&self, group: GroupId, request: &AddMember) -> Result<(), StoreError> {
                retrying(|| self.add_once(group, request)).await
            }

            async fn remove_member(&self, group: GroupId, who: &IdentityRef) -> Result<(), StoreError> {
                retrying(|| self.remove_once(group, who)).await
            }

            async fn offboard(&self, who: &IdentityRef) -> Result<(), StoreError> {
                retrying(|| self.offboard_once(who)).await
            }

            async fn apply_batch(&self, batch: &ApplyBatch) -> Result<BatchOutcome, StoreError> {
                let outcome = retrying_up_to(BATCH_ATTEMPTS, || self.batch_once(batch)).await?;
                // Out of the write turn, so routine writers need not wait for it.
                let after: Option<&str> = $after_bulk;
                if let Some(statement) = after {
                    if let Err(e) = sqlx::query(statement).execute(&self.pool).await {
                        tracing::warn!(error = %e, "after a bulk batch");
                    }
                }
                Ok(outcome)
            }

            async fn is_member(
                &self,
                group: GroupId,
                subject: &Subject,
                email: Option<&Email>,
            ) -> Result<bool, StoreError> {
                let mut conn = self.pool.acquire().await?;
                let exists: Option<i32> =
                    sqlx::query_scalar("SELECT 1 FROM distribution_groups WHERE group_id = $1")
                        .bind(group.as_uuid())
                        .fetch_optional(&mut *conn)
                        .await?;
                if exists.is_none() {
                    return Err(StoreError::GroupNotFound);
                }
                let own = self.own_identities(&mut conn, subject, email).await?;
                if own.is_empty() {
                    return Ok(false);
                }
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "SELECT 1 FROM memberships WHERE member_tag IN (",
                );
                let mut list = q.separated(", ");
                for tag in own.iter().flat_map(|o| member_tags(self.keys.all(), group, o.id)) {
                    list.push_bind(tag);
                }
                list.push_unseparated(") LIMIT 1");
                let found: Option<i32> = q.build_query_scalar().fetch_optional(&mut *conn).await?;
                Ok(found.is_some())
            }

            async fn groups_of(
                &self,
                subject: &Subject,
                email: Option<&Email>,
            ) -> Result<Vec<GroupId>, StoreError> {
                let mut conn = self.pool.acquire().await?;
                let own = self.own_identities(&mut conn, subject, email).await?;
                let mut groups: Vec<GroupId> = own.into_iter().flat_map(|o| o.groups).collect();
                groups.sort_unstable();
                groups.dedup();
                // The lists may name a group deprovisioned since; only existing ones count.
                Self::existing_groups(&mut conn, &groups).await
            }

            async fn member_count(&self, group: GroupId) -> Result<CountBucket, StoreError> {
                let n: Option<i64> = sqlx::query_scalar(
                    "SELECT (SELECT COUNT(*) FROM memberships WHERE group_id = $1) \
                     FROM distribution_groups WHERE group_id = $1",
                )
                .bind(group.as_uuid())
                .fetch_optional(&self.pool)
                .await?;
                let n = n.ok_or(StoreError::GroupNotFound)?;
                Ok(CountBucket::of(u64::try_from(n).unwrap_or_default()))
            }

            async fn reseal(&self, batch: usize) -> Result<ResealReport, StoreError> {
                let batch = batch.max(1);
                let mut report = ResealReport::default();
                let mut after = Uuid::nil();
                loop {
                    let (n, next) = retrying(|| self.reseal_identities_once(after, batch)).await?;
                    report.identities += n;
                    match next {
                        Some(id) => after = id,
                        None => break,
                    }
                }
                let mut after: Vec<u8> = Vec::new();
                loop {
                    let (n, next) = retrying(|| self.reseal_memberships_once(&after, batch)).await?;
                    report.memberships += n;
                    match next {
                        Some(tag) => after = tag,
                        None => break,
                    }
                }
                Ok(report)
            }

            #[cfg(test)]
            async fn dump(&self) -> Vec<(String, Vec<Vec<String>>)> {
                use sqlx::Row as _;
                let tables: Vec<String> = sqlx::query_scalar($list_tables)
                    .fetch_all(&self.pool)
                    .await
                    .expect("list tables");
                let mut out = Vec::new();
                for table in tables {
                    let rows = sqlx::query(&format!("SELECT * FROM {table}"))
                        .fetch_all(&self.pool)
                        .await
                        .expect("select *");
                    let rows = rows
                        .iter()
                        .map(|row| {
                            (0..row.len())
                                .map(|i| {
                                    if let Ok(v) = row.try_get::<Option<String>, _>(i) {
                                        v.unwrap_or_default()
                                    } else if let Ok(v) = row.try_get::<Option<Vec<u8>>, _>(i) {
                                        v.map(hex::encode).unwrap_or_default()
                                    } else if let Ok(v) = row.try_get::<Option<bool>, _>(i) {
                                        v.map(|b| b.to_string()).unwrap_or_default()
                                    } else if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
                                        v.map(|n| n.to_string()).unwrap_or_default()
                                    } else if let Ok(v) = row.try_get::<Option<Uuid>, _>(i) {
                                        v.map(|u| format!("{u} {}", hex::encode(u.as_bytes())))
                                            .unwrap_or_default()
                                    } else {
                                        panic!("{table}: column {i} has a type the dump cannot show")
                                    }
                                })
                                .collect()
                        })
                        .collect();
                    out.push((table, rows));
                }
                out
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
    for_share = " FOR SHARE",
    for_update = " FOR UPDATE",
    serial_writes = false,
    bulk_pool = pg_bulk_pool,
    after_bulk_batch = None,
    list_tables = "SELECT table_name::text FROM information_schema.tables \
                   WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations' \
                   AND table_name NOT LIKE 'audit\\_%' ORDER BY table_name",
);
sql_store!(
    /// The embedded store of `hush up`.
    SqliteStore,
    sqlx::Sqlite,
    SQLITE_MIGRATIONS,
    begin_write = "BEGIN IMMEDIATE",
    for_share = "",
    for_update = "",
    serial_writes = true,
    bulk_pool = sqlite_bulk_pool,
    // A batch's pages are copied from the log into the database here, beside routine writes,
    // instead of in the commit of whichever write comes next (see `sqlite_bulk_pool`).
    after_bulk_batch = Some("PRAGMA wal_checkpoint(PASSIVE)"),
    list_tables = "SELECT name FROM sqlite_master WHERE type = 'table' \
                   AND name <> '_sqlx_migrations' AND name NOT LIKE 'audit\\_%' ESCAPE '\\' \
                   ORDER BY name",
);

/// Bulk batches' Postgres pool: connections made lazily (on the bulk lane's threads) and, when
/// the server runs on this machine, served at `priority` ([`lower_local_backend`]).
fn pg_bulk_pool(
    options: sqlx::pool::PoolOptions<sqlx::Postgres>,
    connect: &sqlx::postgres::PgConnectOptions,
    priority: Priority,
) -> sqlx::PgPool {
    let host = connect.get_host();
    let local = host.starts_with('/')
        || host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let options = if local && (priority.nice > 0 || priority.cpus.is_some()) {
        options.after_connect(move |conn, _| {
            let priority = priority.clone();
            Box::pin(async move {
                let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                    .fetch_one(&mut *conn)
                    .await?;
                lower_local_backend(pid, &priority);
                Ok(())
            })
        })
    } else {
        options
    };
    // Named, so an operator tells bulk batches from routine calls in `pg_stat_activity`.
    options.connect_lazy_with(connect.clone().application_name("hush-tenant-bulk"))
}

/// Bulk batches' SQLite pool: connections made lazily, on the bulk lane's threads (SQLite runs
/// in them, so their priority is the lane's). A batch of random keyed tags dirties thousands of
/// pages; SQLite copies them from its write-ahead log into the database in the commit that
/// first finds the log over 1,000 pages, which would be the commit of the join right after
/// the batch (it waited for the batch, and then for the copy). Bulk connections never copy in
/// a commit: the lane does it after each batch, out of the write turn (`after_bulk_batch`),
/// and a routine commit then finds the log copied. Their page cache is larger, so the indexes
/// a batch walks stay in memory.
fn sqlite_bulk_pool(
    options: sqlx::pool::PoolOptions<sqlx::Sqlite>,
    connect: &sqlx::sqlite::SqliteConnectOptions,
    _priority: Priority,
) -> sqlx::SqlitePool {
    options.connect_lazy_with(
        connect
            .clone()
            .pragma("wal_autocheckpoint", "0")
            .pragma("cache_size", SQLITE_BULK_CACHE_KIB),
    )
}

/// Page cache of a bulk batch's SQLite connection, in KiB as SQLite takes it (negative).
const SQLITE_BULK_CACHE_KIB: &str = "-32768";

/// Lowers the OS priority of the Postgres backend process `pid` serving one of bulk batches'
/// connections, when the server runs on this machine (the caller checked its address) and the
/// process is Postgres's (checked by `lower_local_process`, so that a number from another
/// machine's process table never touches a local process). A Postgres server shared with routine calls otherwise
/// gives a batch's statements the same CPU share as a join's, and on a busy machine the
/// slowest joins wait for batches. Not permitted (another user's server, without the right to
/// renice it): logged once, and batches run at the server's priority.
fn lower_local_backend(pid: i32, priority: &Priority) {
    static REFUSED: std::sync::Once = std::sync::Once::new();
    if let Err(e) = service_kit::background::lower_local_process(pid, "postgres", priority) {
        REFUSED.call_once(|| {
            tracing::info!(error = %e, "bulk batches' database connections keep the server's priority");
        });
    }
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

mod batch_plan;

#[cfg(test)]
mod tests;
