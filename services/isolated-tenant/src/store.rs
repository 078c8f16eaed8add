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
//! Locks are always taken in the same order — the group row, then identity rows in id order,
//! then membership rows — so concurrent writers on Postgres wait for each other instead of
//! deadlocking. Should the database still report a deadlock or a serialization failure, the
//! operation is retried a few times; every write is idempotent, so retrying is safe.
//!
//! INV-3: adding and removing run the same statements whether or not the person was a member:
//! the identity is locked and rewritten, the membership insert (or delete) runs and matches a
//! row or does not, and the sealed group list is rewritten with a fresh nonce either way.
//!
//! What the tables cannot hide from someone holding the raw database files (rather than a
//! logical dump): on Postgres, system columns such as `xmin` tie together the rows one
//! transaction wrote (a membership row and the identity it updated), and heap order follows
//! write order. `pg_dump` output carries neither. Group sizes are visible to such a reader
//! too, since `group_id` is in clear for counting.

use crate::seal::{Profile, SealError, SealKey, SealKeys};
use async_trait::async_trait;
use domain::{CountBucket, GroupId, IdentityKind, Subject};
use service_kit::db::{self, Backend};
use std::sync::Arc;
use std::time::Duration;
use tenant_client::{DistributionGroup, MemberRef, ProvisionGroup};
use uuid::Uuid;

/// How many times an operation is tried when the database reports a deadlock or a
/// serialization failure.
const ATTEMPTS: u32 = 3;
/// Rows per statement when deprovisioning touches many identities at once: well under both
/// backends' limit on bound parameters (4 per row).
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
    /// A sealed value did not open: the database is not what this tenant wrote, or a key
    /// that sealed it is no longer configured.
    #[error(transparent)]
    Sealed(#[from] SealError),
    /// The database failed.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

impl StoreError {
    /// A deadlock, a serialization failure or a busy database: worth another try.
    fn is_transient(&self) -> bool {
        let Self::Db(sqlx::Error::Database(e)) = self else {
            return false;
        };
        // Postgres: serialization_failure, deadlock_detected. SQLite: BUSY, BUSY_SNAPSHOT.
        matches!(e.code().as_deref(), Some("40001" | "40P01" | "5" | "517"))
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

/// What the tenant keeps. Every method is one statement or one transaction.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Answers when the database does (readiness).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Creates the distribution group, or confirms it when it exists with the same address
    /// (taking the new display name).
    async fn provision_group(&self, request: &ProvisionGroup) -> Result<Provisioned, StoreError>;

    /// Removes the group, its membership rows, and the group from every member's sealed
    /// list. Idempotent: a missing group is not an error.
    async fn deprovision_group(&self, group: GroupId) -> Result<(), StoreError>;

    /// Makes `member` a member of `group`, creating their identity on first sight. Runs the
    /// same statements whether or not they already were (INV-3).
    async fn add_member(&self, group: GroupId, member: &MemberRef) -> Result<(), StoreError>;

    /// Makes sure `subject` is not a member of `group`. Runs the same statements whether or
    /// not they were (INV-3).
    async fn remove_member(&self, group: GroupId, subject: &Subject) -> Result<(), StoreError>;

    /// Whether `subject` is a member of `group`.
    async fn is_member(&self, group: GroupId, subject: &Subject) -> Result<bool, StoreError>;

    /// The groups `subject` is in, sorted; only groups that still exist.
    async fn groups_of(&self, subject: &Subject) -> Result<Vec<GroupId>, StoreError>;

    /// The bucket of the group's member count (INV-4).
    async fn member_count(&self, group: GroupId) -> Result<CountBucket, StoreError>;

    /// Every row of every table, each column as text: text as it is, bytes as lowercase hex,
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
async fn retrying<T, F, Fut>(mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                tracing::warn!(attempt, error = %e, "transient database failure; retrying");
                tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt))).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// The profile a removal of an unknown subject seals and throws away, so that path does the
/// same cryptographic work as the others (INV-3).
fn stand_in_profile(subject: &Subject) -> Profile {
    Profile {
        subject: subject.clone(),
        email: None,
        kind: IdentityKind::Guest,
    }
}

#[cfg(test)]
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An identity row as the store reads it back.
struct IdentityRow {
    id: Uuid,
    sealed_profile: Vec<u8>,
    sealed_groups: Vec<u8>,
    key_id: String,
}

impl IdentityRow {
    fn open(self, keys: &SealKeys) -> Result<(Uuid, Profile, Vec<GroupId>), StoreError> {
        let key = keys.get(&self.key_id)?;
        let profile = key.open_profile(self.id, &self.sealed_profile)?;
        let groups = key.open_group_list(self.id, &self.sealed_groups)?;
        Ok((self.id, profile, groups))
    }
}

type IdentityTuple = (Uuid, Vec<u8>, Vec<u8>, String);

impl From<IdentityTuple> for IdentityRow {
    fn from((id, sealed_profile, sealed_groups, key_id): IdentityTuple) -> Self {
        Self {
            id,
            sealed_profile,
            sealed_groups,
            key_id,
        }
    }
}

/// Sealed columns of one identity, ready to write with the active key.
fn reseal(key: &SealKey, id: Uuid, profile: &Profile, groups: &[GroupId]) -> (Vec<u8>, Vec<u8>) {
    (
        key.seal_profile(id, profile),
        key.seal_group_list(id, groups),
    )
}

macro_rules! sql_store {
    (
        $(#[$doc:meta])* $name:ident, $db:ty, $migrator:expr,
        begin_write = $begin:literal,
        for_share = $for_share:literal,
        for_update = $for_update:literal,
        list_tables = $list_tables:literal $(,)?
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name {
            pool: sqlx::Pool<$db>,
            keys: Arc<SealKeys>,
        }

        impl $name {
            /// Wraps a pool, bringing its schema up to date first; `keys` seal and open
            /// everything written.
            pub async fn migrate(pool: sqlx::Pool<$db>, keys: Arc<SealKeys>) -> anyhow::Result<Self> {
                $migrator.run(&pool).await?;
                Ok(Self { pool, keys })
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

            /// Re-tags an identity found under a retired key with the active key's tag, so the
            /// statements after this one find it by the active tag alone.
            async fn retag_identity(
                &self,
                conn: &mut <$db as sqlx::Database>::Connection,
                subject: &Subject,
                active_tag: &[u8],
            ) -> Result<(), StoreError> {
                for old in self.keys.retired() {
                    sqlx::query("UPDATE identities SET subject_tag = $1 WHERE subject_tag = $2")
                        .bind(active_tag)
                        .bind(old.subject_tag(subject))
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(())
            }

            /// Locks the identity with this tag (an UPDATE: a write lock on both backends) and
            /// reads it.
            async fn lock_identity(
                conn: &mut <$db as sqlx::Database>::Connection,
                subject_tag: &[u8],
            ) -> Result<Option<IdentityRow>, StoreError> {
                let row: Option<IdentityTuple> = sqlx::query_as(
                    "UPDATE identities SET disabled = disabled WHERE subject_tag = $1 \
                     RETURNING id, sealed_profile, sealed_groups, key_id",
                )
                .bind(subject_tag)
                .fetch_optional(&mut *conn)
                .await?;
                Ok(row.map(IdentityRow::from))
            }

            /// Writes an identity's sealed columns with the active key.
            async fn write_identity(
                &self,
                conn: &mut <$db as sqlx::Database>::Connection,
                id: Uuid,
                profile: &Profile,
                groups: &[GroupId],
            ) -> Result<(), StoreError> {
                let active = self.keys.active();
                let (sealed_profile, sealed_groups) = reseal(active, id, profile, groups);
                sqlx::query(
                    "UPDATE identities SET sealed_profile = $1, sealed_groups = $2, key_id = $3 \
                     WHERE id = $4",
                )
                .bind(sealed_profile)
                .bind(sealed_groups)
                .bind(active.id())
                .bind(id)
                .execute(&mut *conn)
                .await?;
                Ok(())
            }

            /// Finds an identity by its subject under any configured key (read-only).
            async fn find_identity(
                &self,
                conn: &mut <$db as sqlx::Database>::Connection,
                subject: &Subject,
            ) -> Result<Option<IdentityRow>, StoreError> {
                for key in self.keys.all() {
                    let row: Option<IdentityTuple> = sqlx::query_as(
                        "SELECT id, sealed_profile, sealed_groups, key_id FROM identities \
                         WHERE subject_tag = $1",
                    )
                    .bind(key.subject_tag(subject))
                    .fetch_optional(&mut *conn)
                    .await?;
                    if let Some(row) = row {
                        return Ok(Some(row.into()));
                    }
                }
                Ok(None)
            }

            async fn provision_once(&self, request: &ProvisionGroup) -> Result<Provisioned, StoreError> {
                let group = request.group_id;
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
                    }
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
                    let mut select = sqlx::QueryBuilder::<$db>::new(
                        "SELECT id, sealed_profile, sealed_groups, key_id FROM identities WHERE id IN (",
                    );
                    let mut list = select.separated(", ");
                    for id in chunk {
                        list.push_bind(*id);
                    }
                    select.push(concat!(") ORDER BY id", $for_update));
                    let rows: Vec<IdentityTuple> =
                        select.build_query_as().fetch_all(&mut *tx).await?;
                    let mut rewritten = Vec::with_capacity(rows.len());
                    for row in rows {
                        let (id, profile, mut groups) = IdentityRow::from(row).open(&self.keys)?;
                        groups.retain(|g| *g != group);
                        let (p, g) = reseal(active, id, &profile, &groups);
                        rewritten.push((id, p, g));
                    }
                    if rewritten.is_empty() {
                        continue;
                    }
                    let mut update = sqlx::QueryBuilder::<$db>::new(
                        "UPDATE identities SET sealed_profile = v.column2, sealed_groups = v.column3, \
                         key_id = v.column4 FROM (",
                    );
                    update.push_values(rewritten, |mut b, (id, p, g)| {
                        b.push_bind(id).push_bind(p).push_bind(g).push_bind(active.id().to_string());
                    });
                    update.push(") AS v WHERE identities.id = v.column1");
                    update.build().execute(&mut *tx).await?;
                }
                sqlx::query("DELETE FROM memberships WHERE group_id = $1")
                    .bind(group.as_uuid())
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM distribution_groups WHERE group_id = $1")
                    .bind(group.as_uuid())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn add_once(&self, group: GroupId, member: &MemberRef) -> Result<(), StoreError> {
                let active = self.keys.active();
                let mut tx = self.pool.begin_with($begin).await?;
                Self::hold_group(&mut tx, group).await?;

                // The identity: created on first sight, then locked and read. From here on the
                // statements are the same whether or not the person is a member (INV-3).
                let subject_tag = active.subject_tag(&member.subject);
                self.retag_identity(&mut tx, &member.subject, &subject_tag).await?;
                let profile = Profile {
                    subject: member.subject.clone(),
                    email: Some(member.email.clone()),
                    kind: member.kind,
                };
                let fresh = Uuid::new_v4();
                let (sealed_profile, sealed_groups) = reseal(active, fresh, &profile, &[]);
                sqlx::query(
                    "INSERT INTO identities (id, subject_tag, sealed_profile, sealed_groups, key_id) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (subject_tag) DO NOTHING",
                )
                .bind(fresh)
                .bind(&subject_tag)
                .bind(sealed_profile)
                .bind(sealed_groups)
                .bind(active.id())
                .execute(&mut *tx)
                .await?;
                let row = Self::lock_identity(&mut tx, &subject_tag)
                    .await?
                    .ok_or(StoreError::Db(sqlx::Error::RowNotFound))?;
                let (id, _, mut groups) = row.open(&self.keys)?;

                // The membership row: moved to the active key if an older one made it, then
                // inserted, which does nothing when it is there.
                let member_tag = active.member_tag(group, id);
                for old in self.keys.retired() {
                    sqlx::query(
                        "UPDATE memberships SET member_tag = $1, sealed_identity = $2, key_id = $3 \
                         WHERE member_tag = $4",
                    )
                    .bind(&member_tag)
                    .bind(active.seal_member(group, id))
                    .bind(active.id())
                    .bind(old.member_tag(group, id))
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query(
                    "INSERT INTO memberships (member_tag, group_id, sealed_identity, key_id) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (member_tag) DO NOTHING",
                )
                .bind(&member_tag)
                .bind(group.as_uuid())
                .bind(active.seal_member(group, id))
                .bind(active.id())
                .execute(&mut *tx)
                .await?;

                // The sealed list, rewritten with a fresh nonce either way.
                groups.push(group);
                groups.sort_unstable();
                groups.dedup();
                self.write_identity(&mut tx, id, &profile, &groups).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn remove_once(&self, group: GroupId, subject: &Subject) -> Result<(), StoreError> {
                let mut tx = self.pool.begin_with($begin).await?;
                Self::hold_group(&mut tx, group).await?;

                let subject_tag = self.keys.active().subject_tag(subject);
                self.retag_identity(&mut tx, subject, &subject_tag).await?;
                // Someone the tenant has never seen is no member; the same statements still
                // run, on an id that matches no row (INV-3).
                let (id, profile, mut groups) = match Self::lock_identity(&mut tx, &subject_tag).await? {
                    Some(row) => row.open(&self.keys)?,
                    None => (Uuid::new_v4(), stand_in_profile(subject), Vec::new()),
                };
                for key in self.keys.all() {
                    sqlx::query("DELETE FROM memberships WHERE member_tag = $1")
                        .bind(key.member_tag(group, id))
                        .execute(&mut *tx)
                        .await?;
                }
                groups.retain(|g| *g != group);
                self.write_identity(&mut tx, id, &profile, &groups).await?;
                tx.commit().await?;
                Ok(())
            }
        }

        #[async_trait]
        impl Store for $name {
            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn provision_group(&self, request: &ProvisionGroup) -> Result<Provisioned, StoreError> {
                retrying(|| self.provision_once(request)).await
            }

            async fn deprovision_group(&self, group: GroupId) -> Result<(), StoreError> {
                retrying(|| self.deprovision_once(group)).await
            }

            async fn add_member(&self, group: GroupId, member: &MemberRef) -> Result<(), StoreError> {
                retrying(|| self.add_once(group, member)).await
            }

            async fn remove_member(&self, group: GroupId, subject: &Subject) -> Result<(), StoreError> {
                retrying(|| self.remove_once(group, subject)).await
            }

            async fn is_member(&self, group: GroupId, subject: &Subject) -> Result<bool, StoreError> {
                let mut conn = self.pool.acquire().await?;
                let exists: Option<i32> =
                    sqlx::query_scalar("SELECT 1 FROM distribution_groups WHERE group_id = $1")
                        .bind(group.as_uuid())
                        .fetch_optional(&mut *conn)
                        .await?;
                if exists.is_none() {
                    return Err(StoreError::GroupNotFound);
                }
                let Some(identity) = self.find_identity(&mut conn, subject).await? else {
                    return Ok(false);
                };
                for key in self.keys.all() {
                    let found: Option<i32> =
                        sqlx::query_scalar("SELECT 1 FROM memberships WHERE member_tag = $1")
                            .bind(key.member_tag(group, identity.id))
                            .fetch_optional(&mut *conn)
                            .await?;
                    if found.is_some() {
                        return Ok(true);
                    }
                }
                Ok(false)
            }

            async fn groups_of(&self, subject: &Subject) -> Result<Vec<GroupId>, StoreError> {
                let mut conn = self.pool.acquire().await?;
                let Some(identity) = self.find_identity(&mut conn, subject).await? else {
                    return Ok(Vec::new());
                };
                let (_, _, groups) = identity.open(&self.keys)?;
                // The list may name a group deprovisioned since; only existing ones count.
                let mut existing = Vec::with_capacity(groups.len());
                for chunk in groups.chunks(CHUNK) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "SELECT group_id FROM distribution_groups WHERE group_id IN (",
                    );
                    let mut list = q.separated(", ");
                    for g in chunk {
                        list.push_bind(*g.as_uuid());
                    }
                    q.push(")");
                    let found: Vec<Uuid> = q.build_query_scalar().fetch_all(&mut *conn).await?;
                    existing.extend(found.into_iter().map(GroupId::from));
                }
                existing.sort_unstable();
                Ok(existing)
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
                                        v.map(|b| hex(&b)).unwrap_or_default()
                                    } else if let Ok(v) = row.try_get::<Option<bool>, _>(i) {
                                        v.map(|b| b.to_string()).unwrap_or_default()
                                    } else if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
                                        v.map(|n| n.to_string()).unwrap_or_default()
                                    } else if let Ok(v) = row.try_get::<Option<Uuid>, _>(i) {
                                        v.map(|u| format!("{u} {}", hex(u.as_bytes())))
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
    list_tables = "SELECT table_name::text FROM information_schema.tables \
                   WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations' \
                   ORDER BY table_name",
);
sql_store!(
    /// The embedded store of `hush up`.
    SqliteStore,
    sqlx::Sqlite,
    SQLITE_MIGRATIONS,
    begin_write = "BEGIN IMMEDIATE",
    for_share = "",
    for_update = "",
    list_tables = "SELECT name FROM sqlite_master WHERE type = 'table' \
                   AND name <> '_sqlx_migrations' ORDER BY name",
);

/// Opens the database `url` names (`postgres://…` or `sqlite:…`), with at most
/// `max_connections` connections, migrates it, and seals with `keys`.
pub async fn connect(
    url: &str,
    max_connections: u32,
    keys: Arc<SealKeys>,
) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match Backend::from_url(url)? {
        Backend::Postgres => Arc::new(
            PgStore::migrate(db::connect_postgres(url, max_connections).await?, keys).await?,
        ),
        Backend::Sqlite => Arc::new(
            SqliteStore::migrate(db::connect_sqlite(url, max_connections).await?, keys).await?,
        ),
    })
}

#[cfg(test)]
mod tests;
