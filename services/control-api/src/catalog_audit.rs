//! The catalog's audit: who changed what in the catalog, readable by label-admins at
//! `GET /control/v1/audit`. Every catalog change — a group created, edited (description, join
//! policy), its owners added or removed, archived; a label or its policy created, changed or
//! deleted — appends one row in the same transaction as the change ([`append`]), so a
//! change that rolls back leaves no row. The table is append-only in the database (migration
//! `0002_catalog_audit.sql`). It never holds membership: control-api has none (INV-1).
//!
//! Who acted and in which request is passed, never looked up: a handler builds an
//! [`AuditContext`] from what it extracted (the caller's subject, the request's id from the
//! [`crate::extract::RequestId`] extractor) and hands it to the store method, which hands it to
//! [`append`]. Work done outside a request passes [`AuditContext::system`].

use crate::error::ApiError;
use crate::extract::LabelAdmin;
use crate::seal::{OwnerKey, Purpose, Unopened};
use crate::AppState;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use service_kit::{AppJson, Problem};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

/// Events per page by default.
pub const DEFAULT_LIMIT: u32 = 100;
/// Most events per page.
pub const MAX_LIMIT: u32 = 1000;

/// One catalog change to record.
#[derive(Debug, Clone)]
pub struct CatalogEvent {
    /// What happened, e.g. `group.created`.
    pub action: &'static str,
    /// Who did it (an explicit actor; else the [`AuditContext`]'s).
    pub actor: Option<String>,
    /// The group concerned.
    pub group_id: Option<String>,
    /// The label concerned.
    pub label: Option<String>,
    /// What changed, as JSON.
    pub detail: serde_json::Value,
}

impl CatalogEvent {
    /// An event about a group.
    pub fn group(action: &'static str, group: domain::GroupId, detail: serde_json::Value) -> Self {
        Self {
            action,
            actor: None,
            group_id: Some(group.to_string()),
            label: None,
            detail,
        }
    }

    /// An event about a label.
    pub fn label(action: &'static str, label: &str, detail: serde_json::Value) -> Self {
        Self {
            action,
            actor: None,
            group_id: None,
            label: Some(label.to_string()),
            detail,
        }
    }

    /// An event about a relying party or its resources (which it names in `detail`).
    pub fn app(action: &'static str, detail: serde_json::Value) -> Self {
        Self {
            action,
            actor: None,
            group_id: None,
            label: None,
            detail,
        }
    }

    /// The same event, by `actor`.
    #[must_use]
    pub fn by(mut self, actor: &domain::Subject) -> Self {
        self.actor = Some(actor.as_str().to_string());
        self
    }
}

/// Who is acting and in which request: recorded beside every catalog change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditContext {
    /// The authenticated user acting; `None` for work done outside a request.
    pub actor: Option<domain::Subject>,
    /// The request's id (`x-request-id`, sanitised); `None` outside a request.
    pub request_id: Option<String>,
}

impl AuditContext {
    /// A request by `actor`, with the request's id if it had one.
    pub fn request(actor: &domain::Subject, request_id: Option<String>) -> Self {
        Self {
            actor: Some(actor.clone()),
            request_id,
        }
    }

    /// Work done outside a request: no actor, no request id.
    pub fn system() -> Self {
        Self::default()
    }
}

/// Appends `events` inside the caller's transaction (one statement each; catalog changes come
/// one or a few at a time), with the acting user and request id of `ctx` (an event's own
/// actor, if it names one, comes first). The actor and the detail are sealed under `key`
/// ([`crate::seal`]): the detail names owners.
pub async fn append<DB>(
    key: &OwnerKey,
    conn: &mut DB::Connection,
    ctx: &AuditContext,
    events: &[CatalogEvent],
    now: i64,
) -> Result<(), sqlx::Error>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let ctx_actor = ctx.actor.as_ref().map(|s| s.as_str().to_string());
    let seal_actor = |a: &String| key.seal(Purpose::Subject, a);
    for e in events {
        sqlx::query(
            "INSERT INTO catalog_audit (at_ms, actor, action, group_id, label, detail, \
             request_id) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(now)
        .bind(e.actor.as_ref().or(ctx_actor.as_ref()).map(seal_actor))
        .bind(e.action)
        .bind(e.group_id.clone())
        .bind(e.label.clone())
        .bind(key.seal_fresh(Purpose::Detail, &e.detail.to_string()))
        .bind(ctx.request_id.clone())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// `entry` as read, its actor and `detail` (as stored) opened: sealed ones with `key`, those
/// of events recorded before sealing as they were.
pub fn opened(key: &OwnerKey, mut entry: AuditEntry, detail: &str) -> Result<AuditEntry, Unopened> {
    entry.actor = entry
        .actor
        .map(|a| key.open(Purpose::Subject, &a))
        .transpose()?;
    let detail = key.open(Purpose::Detail, detail)?;
    entry.detail = serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null);
    Ok(entry)
}

/// One recorded catalog change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// Position, increasing.
    pub seq: i64,
    /// When, RFC 3339.
    pub at: String,
    /// The acting user's subject (none for the system itself, e.g. seeding default labels).
    pub actor: Option<String>,
    /// What happened: `group.created`, `group.edited`, `group.owner-added`,
    /// `group.owner-removed`, `group.archived`, `group.bound`, `group.unbound`,
    /// `label.created`, `label.updated`, `label.deleted`, `relying-party.registered`,
    /// `relying-party.enabled`, `relying-party.disabled`, `relying-party.credential-rotated`,
    /// `resource.added`, `resource.removed`, among others.
    pub action: String,
    /// The group concerned.
    pub group_id: Option<String>,
    /// The label concerned.
    pub label: Option<String>,
    /// What changed.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    /// The request that made the change.
    pub request_id: Option<String>,
}

/// A page of the catalog's audit.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    /// Entries in sequence order.
    pub entries: Vec<AuditEntry>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<i64>,
}

/// Paging.
#[derive(Debug, Deserialize, IntoParams)]
pub struct PageQuery {
    /// Entries after this sequence number (from the previous page's `next_after`).
    pub after: Option<i64>,
    /// Entries per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

/// The catalog's audit, oldest first, paged (role `label-admin`). Catalog changes only:
/// never membership.
#[utoipa::path(
    get,
    path = "/control/v1/audit",
    tag = "audit",
    params(PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of entries.", body = AuditPage),
        (status = "4XX", description = "`401` No valid bearer token. `403` The caller lacks the role `label-admin`. `422` `limit` is outside 1 to 1000.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list(
    State(state): State<AppState>,
    _admin: LabelAdmin,
    Query(q): Query<PageQuery>,
) -> Result<AppJson<AuditPage>, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::Invalid(format!("limit: 1 to {MAX_LIMIT}")));
    }
    let rows = state
        .store
        .catalog_audit(q.after.unwrap_or(0), i64::from(limit) + 1)
        .await?;
    let more = rows.len() > limit as usize;
    let entries: Vec<AuditEntry> = rows.into_iter().take(limit as usize).collect();
    let next_after = more.then(|| entries.last().map(|e| e.seq)).flatten();
    Ok(AppJson(AuditPage {
        entries,
        next_after,
    }))
}

/// RFC 3339 of milliseconds since the epoch.
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
