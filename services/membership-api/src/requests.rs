//! Requests to join groups whose join policy is `approval`.
//!
//! A pending request is an *intent*, not a membership: it names the requester, and the group's
//! owners see it — that is what asking for approval means, and the 202 of the join says so.
//! Nobody else sees it: the requester sees their own requests (pending or denied), owners see
//! their group's pending queue. Approval re-checks the group's label with the kind the
//! requester had when they asked, adds them through the tenant (which checks the label again),
//! and then **deletes** the request: a record of approved requests would be a member list at
//! rest (INV-1). A denied request stays, without address or kind, for the requester to see
//! until they dismiss it; withdrawing deletes a pending one.

use crate::error::ApiError;
use crate::extract::{check_label, require_active, rfc3339, GroupPath, RequestPath};
use crate::limits::Action;
use crate::notices;
use crate::store::{MyRequest, PendingRequest, RequestStatus};
use crate::AppState;
use auth::Caller;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use domain::{Email, GroupId, IdentityKind, Subject};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use service_kit::{AppJson, Problem};
use tenant_api::{DecisionOutcome, MemberRef};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

/// Requests an owner sees per page unless they ask for another number.
pub const DEFAULT_PAGE: u32 = 100;
/// Most requests per page.
pub const MAX_PAGE: u32 = 500;

/// The request routes, documented.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(my_requests))
        .routes(routes!(withdraw))
        .routes(routes!(pending))
        .routes(routes!(approve))
        .routes(routes!(deny))
}

/// One of the caller's own requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MyRequestView {
    /// The request's id.
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    /// The group asked to join.
    pub group_id: GroupId,
    /// `pending` (waiting for an owner) or `denied`. An approved request is not listed: it
    /// became a membership (see `GET /membership/v1/me/groups`) and its record was deleted.
    pub status: String,
    /// When it was filed (RFC 3339).
    pub created_at: String,
    /// When it was denied (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<String>,
}

/// The caller's own requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MyRequests {
    /// Newest first.
    pub requests: Vec<MyRequestView>,
}

/// A pending request as the group's owners see it: who asked, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PendingView {
    /// The request's id.
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    /// The requester's subject.
    pub subject: Subject,
    /// The requester's e-mail address.
    pub email: Email,
    /// The requester's identity kind when they asked.
    pub kind: IdentityKind,
    /// When they asked (RFC 3339).
    pub created_at: String,
}

/// A page of a group's pending requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PendingRequests {
    /// Oldest first.
    pub requests: Vec<PendingView>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Paging of the owners' queue.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// How many requests (1–500, default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// An owner's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Decision {
    /// The request's id.
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    /// The group.
    pub group_id: GroupId,
    /// `approved` (the requester is a member; the request's record is deleted) or `denied`.
    pub status: String,
}

fn my_view(r: MyRequest) -> MyRequestView {
    MyRequestView {
        id: r.id,
        group_id: r.group,
        status: match r.status {
            RequestStatus::Pending => "pending",
            RequestStatus::Denied => "denied",
        }
        .into(),
        created_at: rfc3339(r.created_at),
        decided_at: r.decided_at.map(rfc3339),
    }
}

fn pending_view(r: PendingRequest) -> PendingView {
    PendingView {
        id: r.id,
        subject: r.subject,
        email: r.email,
        kind: r.kind,
        created_at: rfc3339(r.created_at),
    }
}

fn encode_cursor(r: &PendingRequest) -> String {
    format!("{}.{}", r.created_at, r.id.simple())
}

fn decode_cursor(s: &str) -> Option<(i64, Uuid)> {
    let (at, id) = s.split_once('.')?;
    Some((at.parse().ok()?, Uuid::parse_str(id).ok()?))
}

fn page(q: &PageQuery) -> Result<(u32, Option<(i64, Uuid)>), ApiError> {
    let limit = match &q.limit {
        None => DEFAULT_PAGE,
        Some(s) => s
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| ApiError::Invalid(format!("limit must be 1 to {MAX_PAGE}")))?,
    };
    let after = match &q.cursor {
        None => None,
        Some(c) => Some(
            decode_cursor(c)
                .ok_or_else(|| ApiError::Invalid("cursor is not one this service gave".into()))?,
        ),
    };
    Ok((limit, after))
}

/// Lists the caller's own requests to join: pending and denied ones.
///
/// Only the caller's (INV-2). An approved request is not here: it became a membership (see
/// `GET /membership/v1/me/groups`) and its record was deleted.
#[utoipa::path(
    get,
    path = "/membership/v1/me/requests",
    tag = "membership",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's pending and denied requests, newest first.", body = MyRequests),
        (status = "4XX", description = "`401` No valid bearer token.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The database or the identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn my_requests(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<AppJson<MyRequests>, ApiError> {
    let requests = state.store.my_requests(&caller.subject).await?;
    Ok(AppJson(MyRequests {
        requests: requests.into_iter().map(my_view).collect(),
    }))
}

/// Withdraws one of the caller's pending requests (or dismisses a denied one): its record is
/// deleted, and the owners no longer see it.
#[utoipa::path(
    delete,
    path = "/membership/v1/me/requests/{rid}",
    tag = "membership",
    params(("rid" = String, Path, format = Uuid, description = "The request's id.")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The request is gone."),
        (status = "4XX", description = "`401` No valid bearer token. `404` `request-not-found`: the caller has no request with this id. `422` The request id is not a UUID. `429` `rate-limited`: too many join requests by this caller; see `Retry-After`.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The database or the identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn withdraw(
    State(state): State<AppState>,
    caller: Caller,
    RequestPath(rid): RequestPath,
) -> Result<StatusCode, ApiError> {
    state.limit(Action::Join, &caller).await?;
    if state.store.delete_my_request(&caller.subject, rid).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::MyRequestNotFound)
    }
}

/// Lists a group's pending requests to join (owners only).
///
/// **This shows who asked** (subject, e-mail address, identity kind): asking for approval
/// means asking the owners, and the requester was told so when they asked. It lists
/// *requests*, never members: an approved request is deleted, and someone who joined through
/// claim rules or an invite never appears here.
#[utoipa::path(
    get,
    path = "/membership/v1/groups/{id}/requests",
    tag = "owners",
    params(("id" = String, Path, format = Uuid, description = "The group's id."), PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of the group's pending requests, oldest first.", body = PendingRequests),
        (status = "4XX", description = "`401` No valid bearer token. `403` `not-owner`: only the group's owners may see its requests (the same answer when no group has this id). `422` The group id is not a UUID, or `limit`/`cursor` is not acceptable.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` control-api, the database or the identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn pending(
    State(state): State<AppState>,
    caller: Caller,
    GroupPath(id): GroupPath,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<AppJson<PendingRequests>, ApiError> {
    state.owned_group(&caller, id).await?;
    let Query(q) =
        query.map_err(|_| ApiError::Invalid("the query string does not parse".into()))?;
    let (limit, after) = page(&q)?;
    let mut rows = state.store.pending_requests(id, after, limit + 1).await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = if more {
        rows.last().map(encode_cursor)
    } else {
        None
    };
    Ok(AppJson(PendingRequests {
        requests: rows.into_iter().map(pending_view).collect(),
        next_cursor,
    }))
}

/// Approves a pending request (owners only): the requester becomes a member and the request's
/// record is deleted.
///
/// The group's label is checked again, with the identity kind the requester had when they
/// asked, before anything is written; the tenant checks it once more.
#[utoipa::path(
    post,
    path = "/membership/v1/groups/{id}/requests/{rid}/approve",
    tag = "owners",
    params(
        ("id" = String, Path, format = Uuid, description = "The group's id."),
        ("rid" = String, Path, format = Uuid, description = "The request's id."),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Approved: the requester is a member, and the request is deleted.", body = Decision),
        (status = 409, description = "`group-not-active`: the group is being provisioned or archived.", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", description = "`401` No valid bearer token. `403` `not-owner`: only the group's owners may decide (the same answer when no group has this id); or `label-refused`: the group's label does not admit the requester's kind of identity (the request stays pending; deny it). `404` `request-not-found`: the group has no pending request with this id (decided or withdrawn already). `422` The group id or request id is not a UUID. `429` `rate-limited`: too many owner changes by this caller; see `Retry-After`.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The tenant, control-api, the database or the identity provider is not answering; retry later (the request stays pending).", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn approve(
    State(state): State<AppState>,
    x_request_id: service_kit::RequestId,
    caller: Caller,
    GroupPath(id): GroupPath,
    RequestPath(rid): RequestPath,
) -> Result<AppJson<Decision>, ApiError> {
    let state = state.for_request(&x_request_id);
    state.limit(Action::OwnerWrite, &caller).await?;
    let group = state.owned_group(&caller, id).await?;
    let req = state
        .store
        .pending_request(id, rid)
        .await?
        .ok_or(ApiError::RequestNotFound)?;
    require_active(&group)?;
    check_label(req.kind, &group)?;
    let requester = req.email.clone();
    let member = MemberRef {
        subject: Some(req.subject),
        email: Some(req.email),
        kind: Some(req.kind),
    };
    // Tenant first, then the record: if the tenant fails, the request is still pending and can
    // be approved again; if deleting fails, approving again is a harmless repeat.
    state.add_member(&group, member).await?;
    state.store.delete_approved(id, rid).await?;
    notices::request_decided(&state, id, DecisionOutcome::Approved, requester);
    Ok(AppJson(Decision {
        id: rid,
        group_id: id,
        status: "approved".into(),
    }))
}

/// Denies a pending request (owners only). The requester sees `denied` in their own view; the
/// record keeps neither their address nor their kind.
#[utoipa::path(
    post,
    path = "/membership/v1/groups/{id}/requests/{rid}/deny",
    tag = "owners",
    params(
        ("id" = String, Path, format = Uuid, description = "The group's id."),
        ("rid" = String, Path, format = Uuid, description = "The request's id."),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Denied.", body = Decision),
        (status = "4XX", description = "`401` No valid bearer token. `403` `not-owner`: only the group's owners may decide (the same answer when no group has this id). `404` `request-not-found`: the group has no pending request with this id. `422` The group id or request id is not a UUID. `429` `rate-limited`: too many owner changes by this caller; see `Retry-After`.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` control-api, the database or the identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn deny(
    State(state): State<AppState>,
    x_request_id: service_kit::RequestId,
    caller: Caller,
    GroupPath(id): GroupPath,
    RequestPath(rid): RequestPath,
) -> Result<AppJson<Decision>, ApiError> {
    let state = state.for_request(&x_request_id);
    state.limit(Action::OwnerWrite, &caller).await?;
    state.owned_group(&caller, id).await?;
    // The requester's address, for their notification: the denied record forgets it.
    let requester = state
        .store
        .pending_request(id, rid)
        .await?
        .ok_or(ApiError::RequestNotFound)?
        .email;
    if !state
        .store
        .deny_request(id, rid, state.clock.now_ms())
        .await?
    {
        return Err(ApiError::RequestNotFound);
    }
    notices::request_decided(&state, id, DecisionOutcome::Denied, requester);
    Ok(AppJson(Decision {
        id: rid,
        group_id: id,
        status: "denied".into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_junk_is_refused() {
        let id = Uuid::new_v4();
        assert_eq!(
            decode_cursor(&format!("17.{}", id.simple())),
            Some((17, id))
        );
        assert_eq!(decode_cursor("17"), None);
        assert_eq!(decode_cursor("x.y"), None);
        let q = PageQuery {
            limit: Some("0".into()),
            cursor: None,
        };
        assert!(page(&q).is_err());
        let q = PageQuery {
            limit: Some("501".into()),
            cursor: None,
        };
        assert!(page(&q).is_err());
        assert_eq!(page(&PageQuery::default()).unwrap(), (DEFAULT_PAGE, None));
    }
}
