//! Relying parties (apps), their resources, and the groups bound to guard them: the records,
//! the outcomes, the [`AppStore`] trait and its one SQL implementation, generic over the backend
//! as the rest of the store is. No row here names a member (INV-1): a binding says which group
//! guards a resource, and who bound it (sealed, as owners are).
//!
//! The rule that spans rows — a group may guard a resource only when its label ranks at least
//! as high ([`domain::may_bind`]) — is checked in the transaction that binds, with the group row
//! locked (`FOR UPDATE`, as every owner's write holds it) and the two labels held `FOR SHARE`;
//! re-labelling a group holds the same group row, so a bind and a move cannot interleave into a
//! group guarding a resource ranked above its label.

use super::sql::Reads;
use super::{corrupt, label_from, GroupTuple, LabelTuple, SealedStore, StoreError};
use crate::catalog_audit::{self, AuditContext, CatalogEvent};
use async_trait::async_trait;
use domain::{BindingRefusal, GroupId, GroupState, Guard, Label, Subject};
use service_kit::db;
use service_kit::sql::Dialect;
use sqlx::{Encode, Executor, FromRow, IntoArguments, Type};
use uuid::Uuid;

/// Most resources one relying party may have: its lookup answers them all at once.
pub const MAX_RESOURCES_PER_APP: usize = 100;
/// Most groups that may guard one resource: the lookup answers them all, and a decision asks
/// the tenant about each one the person's kind leaves open.
pub const MAX_GROUPS_PER_RESOURCE: usize = 50;
/// Most relying parties: the operators' list and the resource list are not paged.
pub const MAX_RELYING_PARTIES: usize = 500;

/// Which relying party: by id, or by its audience.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppKey {
    /// Its id.
    Id(Uuid),
    /// Its audience.
    Audience(String),
}

/// A registered app, with its resources and the groups guarding each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelyingParty {
    /// Its id (the `client_id` it authenticates with).
    pub id: Uuid,
    /// Its display name.
    pub name: String,
    /// The `aud` of everything Hush signs for it; unique.
    pub audience: String,
    /// SHA-256 of its current credential, lower-case hex.
    pub credential_sha256: String,
    /// Whether it gets decisions.
    pub enabled: bool,
    /// When it was registered, in milliseconds since the epoch.
    pub created_at: i64,
    /// Its resources, by name.
    pub resources: Vec<ResourceRecord>,
}

/// A resource, with the groups that guard it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRecord {
    /// Its id.
    pub id: Uuid,
    /// Its name, unique within its app.
    pub name: String,
    /// Its label now.
    pub label: Label,
    /// The groups bound to it, each with its state and label now, by group id.
    pub guards: Vec<Guard>,
}

/// A resource as owners choose one to bind: which app, which resource, which label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceListing {
    /// The resource's id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// Its app's id.
    pub app_id: Uuid,
    /// Its app's name.
    pub app_name: String,
    /// Its label now.
    pub label: Label,
}

/// A group's binding to a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingRecord {
    /// The resource.
    pub resource: ResourceListing,
    /// When it was bound, in milliseconds since the epoch.
    pub bound_at: i64,
}

/// A relying party to register.
#[derive(Debug, Clone)]
pub struct NewApp {
    /// Its id.
    pub id: Uuid,
    /// Its display name.
    pub name: String,
    /// Its audience.
    pub audience: String,
    /// SHA-256 of its first credential, lower-case hex.
    pub credential_sha256: String,
}

/// Outcome of registering a relying party.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppInsert {
    /// Written.
    Created(RelyingParty),
    /// Another relying party has this audience.
    AudienceTaken,
    /// There are [`MAX_RELYING_PARTIES`] already.
    TooMany,
}

/// Outcome of adding a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceInsert {
    /// Written.
    Created(ResourceRecord),
    /// No relying party has this id.
    NoSuchApp,
    /// No label has this name.
    NoSuchLabel,
    /// The app has a resource with this name.
    NameTaken,
    /// The app has [`MAX_RESOURCES_PER_APP`] resources already.
    TooMany,
}

/// Outcome of binding a group to a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bind {
    /// The group guards the resource (now, or already did: then `new` is false).
    Bound {
        /// The binding.
        binding: BindingRecord,
        /// Whether this call wrote it.
        new: bool,
    },
    /// No group has this id.
    NoSuchGroup,
    /// The actor does not own the group.
    NotOwner,
    /// The group is being archived or is archived.
    NotEditable(GroupState),
    /// No resource has this id.
    NoSuchResource,
    /// The group's label ranks below the resource's; nothing was written.
    Refused(BindingRefusal),
    /// [`MAX_GROUPS_PER_RESOURCE`] groups guard the resource already.
    TooMany,
}

/// Outcome of unbinding a group from a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unbind {
    /// The group no longer guards the resource.
    Unbound,
    /// It did not guard it.
    NotBound,
    /// No group has this id.
    NoSuchGroup,
    /// The actor does not own the group.
    NotOwner,
}

/// The first resource among those `guarded` (their labels) that a group under `label` could not
/// guard: a group is not moved below a resource it guards.
pub fn first_refusal(label: &Label, guarded: &[Label]) -> Option<BindingRefusal> {
    guarded
        .iter()
        .find_map(|resource| domain::may_bind(label, resource).err())
}

/// What control-api keeps about relying parties. Every write is one transaction and records
/// itself in the catalog's audit, which also moves the catalog's version (membership-api
/// caches lookups by it).
#[async_trait]
pub trait AppStore: Send + Sync + 'static {
    /// Registers a relying party, enabled, without resources.
    async fn insert_app(
        &self,
        app: &NewApp,
        ctx: &AuditContext,
        now: i64,
    ) -> Result<AppInsert, StoreError>;

    /// Every relying party, by name.
    async fn list_apps(&self) -> Result<Vec<RelyingParty>, StoreError>;

    /// One relying party.
    async fn get_app(&self, key: &AppKey) -> Result<Option<RelyingParty>, StoreError>;

    /// Enables or disables a relying party; `None` when there is none.
    async fn set_app_enabled(
        &self,
        id: Uuid,
        enabled: bool,
        ctx: &AuditContext,
        now: i64,
    ) -> Result<Option<RelyingParty>, StoreError>;

    /// Replaces a relying party's credential (its SHA-256); false when there is none.
    async fn rotate_credential(
        &self,
        id: Uuid,
        credential_sha256: &str,
        ctx: &AuditContext,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// Adds resource `id` named `name` under `label` to app `app`.
    async fn insert_resource(
        &self,
        app: Uuid,
        id: Uuid,
        name: &str,
        label: &str,
        ctx: &AuditContext,
        now: i64,
    ) -> Result<ResourceInsert, StoreError>;

    /// Removes a resource of `app`, and with it every binding to it; false when there is none.
    async fn delete_resource(
        &self,
        app: Uuid,
        resource: Uuid,
        ctx: &AuditContext,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// Every resource of every app, by app name then resource name.
    async fn list_resources(&self) -> Result<Vec<ResourceListing>, StoreError>;

    /// The resources the group guards, by app name then resource name.
    async fn group_bindings(&self, group: GroupId) -> Result<Vec<BindingRecord>, StoreError>;

    /// Binds the group to the resource on the word of `actor`, who must own it; refused when
    /// the group's label ranks below the resource's ([`domain::may_bind`]).
    async fn bind(
        &self,
        group: GroupId,
        resource: Uuid,
        actor: &Subject,
        ctx: &AuditContext,
        now: i64,
    ) -> Result<Bind, StoreError>;

    /// Unbinds the group from the resource on the word of `actor`, who must own it.
    async fn unbind(
        &self,
        group: GroupId,
        resource: Uuid,
        actor: &Subject,
        ctx: &AuditContext,
        now: i64,
    ) -> Result<Unbind, StoreError>;
}

/// The columns of a relying party's row.
const APP_SELECT: &str =
    "SELECT id, name, audience, credential_sha256, enabled, created_at FROM relying_parties";

/// A relying party's row.
type AppRow = (Uuid, String, String, String, bool, i64);

/// A label's columns, as `l`.
const L: &str = "l.name, l.description, l.guests_allowed, l.agents_allowed, l.join_policies, \
     l.sender_policy, l.anonymous_posting, l.rank";

/// A resource's row: id, name, then its label's columns.
#[derive(sqlx::FromRow)]
struct ResourceRow(
    Uuid,
    String,
    String,
    String,
    bool,
    bool,
    String,
    String,
    bool,
    i32,
);

/// A guard's row: resource, group, state, then the group's label's columns.
#[derive(sqlx::FromRow)]
struct GuardRow(
    Uuid,
    Uuid,
    String,
    String,
    String,
    bool,
    bool,
    String,
    String,
    bool,
    i32,
);

/// A listed resource's row: id, name, app id, app name, bound at (0 when not read), then its
/// label's columns.
#[derive(sqlx::FromRow)]
struct ListingRow(
    Uuid,
    String,
    Uuid,
    String,
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

fn label_of(t: LabelTuple) -> Result<Label, StoreError> {
    label_from(t)
}

fn listing_from(r: ListingRow) -> Result<(ResourceListing, i64), StoreError> {
    let ListingRow(id, name, app_id, app_name, at, ln, ld, lg, la, lj, ls, lanon, lrank) = r;
    Ok((
        ResourceListing {
            id,
            name,
            app_id,
            app_name,
            label: label_of((ln, ld, lg, la, lj, ls, lanon, lrank))?,
        },
        at,
    ))
}

/// The audit detail of a relying party: never its credential, nor the credential's hash.
fn app_detail(id: Uuid, name: &str, audience: &str) -> serde_json::Value {
    serde_json::json!({ "relying_party": id.to_string(), "name": name, "audience": audience })
}

/// The relying party `key` names, with its resources and their guards, on `conn`.
async fn read_app<DB: Dialect>(
    conn: &mut DB::Connection,
    key: &AppKey,
) -> Result<Option<RelyingParty>, StoreError>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Uuid: Encode<'q, DB> + Type<DB>,
    for<'r> AppRow: FromRow<'r, DB::Row>,
    for<'r> ResourceRow: FromRow<'r, DB::Row>,
    for<'r> GuardRow: FromRow<'r, DB::Row>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    let row: Option<AppRow> = match key {
        AppKey::Id(id) => {
            sqlx::query_as(&format!("{APP_SELECT} WHERE id = $1"))
                .bind(*id)
                .fetch_optional(&mut *conn)
                .await?
        }
        AppKey::Audience(aud) => {
            sqlx::query_as(&format!("{APP_SELECT} WHERE audience = $1"))
                .bind(aud.as_str())
                .fetch_optional(&mut *conn)
                .await?
        }
    };
    let Some((id, name, audience, credential_sha256, enabled, created_at)) = row else {
        return Ok(None);
    };
    let resources: Vec<ResourceRow> = sqlx::query_as(&format!(
        "SELECT r.id, r.name, {L} FROM resources r JOIN labels l ON l.name = r.label \
             WHERE r.relying_party = $1 ORDER BY r.name"
    ))
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let guards: Vec<GuardRow> = sqlx::query_as(&format!(
        "SELECT b.resource_id, g.id, g.state, {L} FROM resource_bindings b \
             JOIN resources r ON r.id = b.resource_id \
             JOIN groups g ON g.id = b.group_id JOIN labels l ON l.name = g.label \
             WHERE r.relying_party = $1 ORDER BY b.resource_id, g.id"
    ))
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let mut guards_of: Vec<(Uuid, Guard)> = guards
        .into_iter()
        .map(
            |GuardRow(r, g, state, ln, ld, lg, la, lj, ls, lanon, lrank)| {
                Ok((
                    r,
                    Guard {
                        group: GroupId::from(g),
                        state: GroupState::parse(&state).map_err(corrupt)?,
                        label: label_of((ln, ld, lg, la, lj, ls, lanon, lrank))?,
                    },
                ))
            },
        )
        .collect::<Result<_, StoreError>>()?;
    let resources = resources
        .into_iter()
        .map(
            |ResourceRow(rid, rname, ln, ld, lg, la, lj, ls, lanon, lrank)| {
                let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut guards_of)
                    .into_iter()
                    .partition(|(r, _)| *r == rid);
                guards_of = rest;
                Ok(ResourceRecord {
                    id: rid,
                    name: rname,
                    label: label_of((ln, ld, lg, la, lj, ls, lanon, lrank))?,
                    guards: mine.into_iter().map(|(_, g)| g).collect(),
                })
            },
        )
        .collect::<Result<_, StoreError>>()?;
    Ok(Some(RelyingParty {
        id,
        name,
        audience,
        credential_sha256,
        enabled,
        created_at,
        resources,
    }))
}

/// The labels of the resources `group` guards, on the caller's transaction: a move of the
/// group to another label checks them ([`first_refusal`]).
pub(super) async fn guarded_labels<DB: Dialect>(
    conn: &mut DB::Connection,
    group: GroupId,
) -> Result<Vec<Label>, StoreError>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> Uuid: Encode<'q, DB> + Type<DB>,
    for<'r> LabelTuple: FromRow<'r, DB::Row>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    let rows: Vec<LabelTuple> = sqlx::query_as(&format!(
        "SELECT DISTINCT {L} FROM resource_bindings b JOIN resources r ON r.id = b.resource_id \
         JOIN labels l ON l.name = r.label WHERE b.group_id = $1 ORDER BY l.rank DESC, l.name"
    ))
    .bind(*group.as_uuid())
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter().map(label_of).collect()
}

#[async_trait]
impl<DB: Dialect> AppStore for SealedStore<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
    for<'q> Uuid: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Type<DB>,
    for<'r> (i64,): FromRow<'r, DB::Row>,
    for<'r> (i32,): FromRow<'r, DB::Row>,
    for<'r> (Uuid,): FromRow<'r, DB::Row>,
    for<'r> (String, String): FromRow<'r, DB::Row>,
    for<'r> (Uuid, String): FromRow<'r, DB::Row>,
    for<'r> AppRow: FromRow<'r, DB::Row>,
    for<'r> ResourceRow: FromRow<'r, DB::Row>,
    for<'r> GuardRow: FromRow<'r, DB::Row>,
    for<'r> ListingRow: FromRow<'r, DB::Row>,
    for<'r> LabelTuple: FromRow<'r, DB::Row>,
    for<'r> GroupTuple: FromRow<'r, DB::Row>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    async fn insert_app(
        &self,
        app: &NewApp,
        ctx: &AuditContext,
        now: i64,
    ) -> Result<AppInsert, StoreError> {
        let (this, app, ctx) = (self.clone(), app.clone(), ctx.clone());
        db::run_to_end(async move {
            let (app, ctx) = (&app, &ctx);
            let mut tx = this.pool().begin_with(DB::BEGIN_WRITE).await?;
            let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM relying_parties")
                .fetch_one(&mut *tx)
                .await?;
            if usize::try_from(count).unwrap_or(usize::MAX) >= MAX_RELYING_PARTIES {
                tx.rollback().await?;
                return Ok(AppInsert::TooMany);
            }
            let inserted = sqlx::query(
                "INSERT INTO relying_parties (id, name, audience, credential_sha256, enabled, \
                 created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(app.id)
            .bind(app.name.as_str())
            .bind(app.audience.as_str())
            .bind(app.credential_sha256.as_str())
            .bind(true)
            .bind(now)
            .execute(&mut *tx)
            .await;
            match inserted {
                Ok(_) => {}
                Err(e) if db::is_unique_violation(&e) => {
                    tx.rollback().await?;
                    return Ok(AppInsert::AudienceTaken);
                }
                Err(e) => return Err(e.into()),
            }
            let event = CatalogEvent::app(
                "relying-party.registered",
                app_detail(app.id, &app.name, &app.audience),
            );
            catalog_audit::append::<DB>(&this.key, &mut *tx, ctx, &[event], now).await?;
            let record = read_app::<DB>(&mut tx, &AppKey::Id(app.id))
                .await?
                .ok_or_else(|| corrupt("a relying party just written cannot be read back"))?;
            tx.commit().await?;
            Ok(AppInsert::Created(record))
        })
        .await
    }

    async fn list_apps(&self) -> Result<Vec<RelyingParty>, StoreError> {
        let mut conn = self.pool().acquire().await?;
        let ids: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM relying_parties ORDER BY name, id")
            .fetch_all(&mut *conn)
            .await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(app) = read_app::<DB>(&mut conn, &AppKey::Id(id)).await? {
                out.push(app);
            }
        }
        Ok(out)
    }

    async fn get_app(&self, key: &AppKey) -> Result<Option<RelyingParty>, StoreError> {
        let mut conn = self.pool().acquire().await?;
        read_app::<DB>(&mut conn, key).await
    }

    async fn set_app_enabled(
        &self,
        id: Uuid,
        enabled: bool,
        ctx: &AuditContext,
        now: i64,
    ) -> Result<Option<RelyingParty>, StoreError> {
        let (this, ctx) = (self.clone(), ctx.clone());
        db::run_to_end(async move {
            let ctx = &ctx;
            let mut tx = this.pool().begin_with(DB::BEGIN_WRITE).await?;
            let sql = format!("{APP_SELECT} WHERE id = $1{}", DB::FOR_UPDATE);
            let row: Option<AppRow> = sqlx::query_as(&sql)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            let Some((_, name, audience, _, was, _)) = row else {
                tx.rollback().await?;
                return Ok(None);
            };
            if was != enabled {
                sqlx::query("UPDATE relying_parties SET enabled = $1 WHERE id = $2")
                    .bind(enabled)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                let action = if enabled {
                    "relying-party.enabled"
                } else {
                    "relying-party.disabled"
                };
                let event = CatalogEvent::app(action, app_detail(id, &name, &audience));
                catalog_audit::append::<DB>(&this.key, &mut *tx, ctx, &[event], now).await?;
            }
            let record = read_app::<DB>(&mut tx, &AppKey::Id(id)).await?;
            tx.commit().await?;
            Ok(record)
        })
        .await
    }

    async fn rotate_credential(
        &self,
        id: Uuid,
        credential_sha256: &str,
        ctx: &AuditContext,
        now: i64,
    ) -> Result<bool, StoreError> {
        let (this, hash, ctx) = (self.clone(), credential_sha256.to_string(), ctx.clone());
        db::run_to_end(async move {
            let ctx = &ctx;
            let mut tx = this.pool().begin_with(DB::BEGIN_WRITE).await?;
            let row: Option<(String, String)> = sqlx::query_as(
                "UPDATE relying_parties SET credential_sha256 = $1 WHERE id = $2 \
                 RETURNING name, audience",
            )
            .bind(hash.as_str())
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((name, audience)) = row else {
                tx.rollback().await?;
                return Ok(false);
            };
            let event = CatalogEvent::app(
                "relying-party.credential-rotated",
                app_detail(id, &name, &audience),
            );
            catalog_audit::append::<DB>(&this.key, &mut *tx, ctx, &[event], now).await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    async fn insert_resource(
        &self,
        app: Uuid,
        id: Uuid,
        name: &str,
        label: &str,
        ctx: &AuditContext,
        now: i64,
    ) -> Result<ResourceInsert, StoreError> {
        let (this, name, label, ctx) = (
            self.clone(),
            name.to_string(),
            label.to_string(),
            ctx.clone(),
        );
        db::run_to_end(async move {
            let ctx = &ctx;
            let mut tx = this.pool().begin_with(DB::BEGIN_WRITE).await?;
            // The app row, locked: two adds cannot both pass the count below.
            let sql = format!("{APP_SELECT} WHERE id = $1{}", DB::FOR_UPDATE);
            let row: Option<AppRow> = sqlx::query_as(&sql)
                .bind(app)
                .fetch_optional(&mut *tx)
                .await?;
            if row.is_none() {
                tx.rollback().await?;
                return Ok(ResourceInsert::NoSuchApp);
            }
            let Some(held) = Reads::<DB>::hold_label(&mut tx, &label).await? else {
                tx.rollback().await?;
                return Ok(ResourceInsert::NoSuchLabel);
            };
            let count: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM resources WHERE relying_party = $1")
                    .bind(app)
                    .fetch_one(&mut *tx)
                    .await?;
            if usize::try_from(count).unwrap_or(usize::MAX) >= MAX_RESOURCES_PER_APP {
                tx.rollback().await?;
                return Ok(ResourceInsert::TooMany);
            }
            let inserted = sqlx::query(
                "INSERT INTO resources (id, relying_party, name, label, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id)
            .bind(app)
            .bind(name.as_str())
            .bind(held.name.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await;
            match inserted {
                Ok(_) => {}
                Err(e) if db::is_unique_violation(&e) => {
                    tx.rollback().await?;
                    return Ok(ResourceInsert::NameTaken);
                }
                Err(e) => return Err(e.into()),
            }
            let mut event = CatalogEvent::app(
                "resource.added",
                serde_json::json!({
                    "relying_party": app.to_string(),
                    "resource": id.to_string(),
                    "name": name,
                    "rank": held.policy.rank,
                }),
            );
            event.label = Some(held.name.to_string());
            catalog_audit::append::<DB>(&this.key, &mut *tx, ctx, &[event], now).await?;
            tx.commit().await?;
            Ok(ResourceInsert::Created(ResourceRecord {
                id,
                name,
                label: held,
                guards: Vec::new(),
            }))
        })
        .await
    }

    async fn delete_resource(
        &self,
        app: Uuid,
        resource: Uuid,
        ctx: &AuditContext,
        now: i64,
    ) -> Result<bool, StoreError> {
        let (this, ctx) = (self.clone(), ctx.clone());
        db::run_to_end(async move {
            let ctx = &ctx;
            let mut tx = this.pool().begin_with(DB::BEGIN_WRITE).await?;
            let row: Option<(String, String)> = sqlx::query_as(
                "DELETE FROM resources WHERE id = $1 AND relying_party = $2 \
                 RETURNING name, label",
            )
            .bind(resource)
            .bind(app)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((name, label)) = row else {
                tx.rollback().await?;
                return Ok(false);
            };
            let mut event = CatalogEvent::app(
                "resource.removed",
                serde_json::json!({
                    "relying_party": app.to_string(),
                    "resource": resource.to_string(),
                    "name": name,
                }),
            );
            event.label = Some(label);
            catalog_audit::append::<DB>(&this.key, &mut *tx, ctx, &[event], now).await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    async fn list_resources(&self) -> Result<Vec<ResourceListing>, StoreError> {
        let rows: Vec<ListingRow> = sqlx::query_as(&format!(
            "SELECT r.id, r.name, p.id, p.name, r.created_at, {L} FROM resources r \
             JOIN relying_parties p ON p.id = r.relying_party JOIN labels l ON l.name = r.label \
             ORDER BY p.name, p.id, r.name"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|r| listing_from(r).map(|(l, _)| l))
            .collect()
    }

    async fn group_bindings(&self, group: GroupId) -> Result<Vec<BindingRecord>, StoreError> {
        let rows: Vec<ListingRow> = sqlx::query_as(&format!(
            "SELECT r.id, r.name, p.id, p.name, b.bound_at, {L} FROM resource_bindings b \
             JOIN resources r ON r.id = b.resource_id \
             JOIN relying_parties p ON p.id = r.relying_party JOIN labels l ON l.name = r.label \
             WHERE b.group_id = $1 ORDER BY p.name, p.id, r.name"
        ))
        .bind(*group.as_uuid())
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|r| {
                listing_from(r).map(|(resource, bound_at)| BindingRecord { resource, bound_at })
            })
            .collect()
    }

    async fn bind(
        &self,
        group: GroupId,
        resource: Uuid,
        actor: &Subject,
        ctx: &AuditContext,
        now: i64,
    ) -> Result<Bind, StoreError> {
        let (this, actor, ctx) = (self.clone(), actor.clone(), ctx.clone());
        db::run_to_end(async move {
            let (actor, ctx) = (&actor, &ctx);
            let mut tx = this.pool().begin_with(DB::BEGIN_WRITE).await?;
            let (state, label) =
                match Reads::<DB>::hold_owned_group(&this.key, &mut tx, group, actor).await? {
                    Ok(held) => held,
                    Err(refusal) => {
                        tx.rollback().await?;
                        return Ok(match refusal {
                            super::GroupWrite::NotOwner => Bind::NotOwner,
                            _ => Bind::NoSuchGroup,
                        });
                    }
                };
            if matches!(state, GroupState::Archiving | GroupState::Archived) {
                tx.rollback().await?;
                return Ok(Bind::NotEditable(state));
            }
            let sql = format!(
                "SELECT r.id, r.name, p.id, p.name, r.created_at, {L} FROM resources r \
                 JOIN relying_parties p ON p.id = r.relying_party \
                 JOIN labels l ON l.name = r.label WHERE r.id = $1{}",
                DB::FOR_SHARE
            );
            let row: Option<ListingRow> = sqlx::query_as(&sql)
                .bind(resource)
                .fetch_optional(&mut *tx)
                .await?;
            let Some((listing, _)) = row.map(listing_from).transpose()? else {
                tx.rollback().await?;
                return Ok(Bind::NoSuchResource);
            };
            // Both labels held until commit: neither rank moves under the check.
            let group_label = Reads::<DB>::hold_label(&mut tx, &label)
                .await?
                .ok_or_else(|| corrupt("a group names a label that does not exist"))?;
            let resource_label = Reads::<DB>::hold_label(&mut tx, listing.label.name.as_str())
                .await?
                .ok_or_else(|| corrupt("a resource names a label that does not exist"))?;
            if let Err(refusal) = domain::may_bind(&group_label, &resource_label) {
                tx.rollback().await?;
                return Ok(Bind::Refused(refusal));
            }
            let listing = ResourceListing {
                label: resource_label,
                ..listing
            };
            let existing: Option<i64> = sqlx::query_scalar(
                "SELECT bound_at FROM resource_bindings WHERE resource_id = $1 AND group_id = $2",
            )
            .bind(resource)
            .bind(*group.as_uuid())
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(bound_at) = existing {
                tx.rollback().await?;
                return Ok(Bind::Bound {
                    binding: BindingRecord {
                        resource: listing,
                        bound_at,
                    },
                    new: false,
                });
            }
            let count: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM resource_bindings WHERE resource_id = $1")
                    .bind(resource)
                    .fetch_one(&mut *tx)
                    .await?;
            if usize::try_from(count).unwrap_or(usize::MAX) >= MAX_GROUPS_PER_RESOURCE {
                tx.rollback().await?;
                return Ok(Bind::TooMany);
            }
            sqlx::query(
                "INSERT INTO resource_bindings (resource_id, group_id, bound_by, bound_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(resource)
            .bind(*group.as_uuid())
            .bind(this.key.subject(actor))
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let event = CatalogEvent::group(
                "group.bound",
                group,
                serde_json::json!({
                    "resource": resource.to_string(),
                    "resource_name": listing.name,
                    "relying_party": listing.app_id.to_string(),
                    "resource_label": listing.label.name.as_str(),
                    "group_label": group_label.name.as_str(),
                }),
            )
            .by(actor);
            catalog_audit::append::<DB>(&this.key, &mut *tx, ctx, &[event], now).await?;
            tx.commit().await?;
            Ok(Bind::Bound {
                binding: BindingRecord {
                    resource: listing,
                    bound_at: now,
                },
                new: true,
            })
        })
        .await
    }

    async fn unbind(
        &self,
        group: GroupId,
        resource: Uuid,
        actor: &Subject,
        ctx: &AuditContext,
        now: i64,
    ) -> Result<Unbind, StoreError> {
        let (this, actor, ctx) = (self.clone(), actor.clone(), ctx.clone());
        db::run_to_end(async move {
            let (actor, ctx) = (&actor, &ctx);
            let mut tx = this.pool().begin_with(DB::BEGIN_WRITE).await?;
            if let Err(refusal) =
                Reads::<DB>::hold_owned_group(&this.key, &mut tx, group, actor).await?
            {
                tx.rollback().await?;
                return Ok(match refusal {
                    super::GroupWrite::NotOwner => Unbind::NotOwner,
                    _ => Unbind::NoSuchGroup,
                });
            }
            let deleted: Option<Uuid> = sqlx::query_scalar(
                "DELETE FROM resource_bindings WHERE resource_id = $1 AND group_id = $2 \
                 RETURNING resource_id",
            )
            .bind(resource)
            .bind(*group.as_uuid())
            .fetch_optional(&mut *tx)
            .await?;
            if deleted.is_none() {
                tx.rollback().await?;
                return Ok(Unbind::NotBound);
            }
            let event = CatalogEvent::group(
                "group.unbound",
                group,
                serde_json::json!({ "resource": resource.to_string() }),
            )
            .by(actor);
            catalog_audit::append::<DB>(&this.key, &mut *tx, ctx, &[event], now).await?;
            tx.commit().await?;
            Ok(Unbind::Unbound)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(name: &str, rank: u16) -> Label {
        let mut l = Label::defaults()[0].clone();
        l.name = domain::LabelName::parse(name).unwrap();
        l.policy.rank = rank;
        l
    }

    #[test]
    fn a_group_is_not_moved_below_any_resource_it_guards() {
        let guarded = [label("HC", 20), label("C", 10)];
        assert!(first_refusal(&label("Top", 20), &guarded).is_none());
        let refusal = first_refusal(&label("Mid", 10), &guarded).unwrap();
        assert_eq!(refusal.resource_label.as_str(), "HC");
        assert!(
            first_refusal(&label("Low", 0), &[]).is_none(),
            "guards nothing"
        );
    }
}
