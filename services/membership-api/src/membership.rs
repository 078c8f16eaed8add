//! Routine membership, always about the caller alone (INV-2): join (or ask to), leave, "my
//! groups" and "am I a member of G". No route here takes another person as input or returns
//! anyone but the caller, and none logs the caller (INV-6): the request span carries the route
//! template only.

use crate::claims;
use crate::error::ApiError;
use crate::extract::{check_label, rfc3339, GroupPath};
use crate::limits::Action;
use crate::store::NewRequest;
use crate::AppState;
use auth::Caller;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use domain::{Email, GroupId, GroupName, GroupState, GroupType, JoinPolicy, LabelName};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use service_kit::{AppJson, Problem};
use tenant_api::{IdentityRef, MemberRef};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

/// What the 202 of a request to join says, in so many words: asking shows you to the owners.
pub const APPROVAL_NOTICE: &str = "Your request to join is pending. This group's owners will see \
    who asked (your user id, e-mail address and identity kind) so they can decide; no one else \
    will. You will find the outcome under /membership/v1/me/requests, and you can withdraw the \
    request there at any time.";

/// The membership routes, documented.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(join))
        .routes(routes!(leave))
        .routes(routes!(my_groups))
        .routes(routes!(am_i_member))
}

/// The caller's membership of one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Membership {
    /// The group.
    pub group_id: GroupId,
    /// Whether the caller is a member.
    pub member: bool,
}

/// A group the caller is a member of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MyGroup {
    /// The group's id.
    pub id: GroupId,
    /// Its display name.
    pub name: GroupName,
    /// Its sensitivity label.
    pub label: LabelName,
    /// What the group is for: `mail` or `security`.
    #[serde(rename = "type")]
    pub group_type: GroupType,
    /// The address that mails its members; absent for a security group, which has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Email)]
    pub contact_address: Option<Email>,
}

/// The caller's groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MyGroups {
    /// Every group the caller is a member of (and only the caller's).
    pub groups: Vec<MyGroup>,
}

/// The answer to a request to join: a membership (200), or a pending request (202).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JoinOutcome {
    /// The group.
    pub group_id: GroupId,
    /// Whether the caller is now a member: `false` while a request waits for an owner.
    pub member: bool,
    /// The pending request, when one was filed (202 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<PendingRef>,
    /// What filing the request means for the caller's privacy (202 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
}

/// A request the caller filed, as the 202 of a join names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PendingRef {
    /// The request's id (to withdraw it: `DELETE /membership/v1/me/requests/{rid}`).
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    /// Always `pending`.
    pub status: String,
    /// When it was first filed (RFC 3339).
    pub created_at: String,
}

/// The caller as the tenant should record them: they are present with a token, so their kind
/// is the IdP's word (`kind: Some`).
pub(crate) fn caller_ref(caller: &Caller, email: Email) -> MemberRef {
    MemberRef {
        subject: Some(caller.subject.clone()),
        email: Some(email),
        kind: Some(caller.kind),
    }
}

/// Joins a group, or asks to.
///
/// The group's label decides first, before anything is written: a label that does not admit
/// the caller's kind of identity (guest, AI agent) refuses with 403 `label-refused`. Then the
/// join policy:
///
/// - `open`: the caller is a member at once (200).
/// - `approval`: if the caller's token claims satisfy one of the owners' claim rules, the caller
///   is a member at once (200) and **no request is recorded**: no owner learns who joined this
///   way. Otherwise a request is filed (202) and **the group's owners will see who asked**
///   (subject, e-mail address, identity kind) — that is what asking for approval means. Asking
///   again while a request is pending answers the same request. The outcome appears under
///   `GET /membership/v1/me/requests`; an approved request becomes a membership and its record
///   is deleted.
/// - `invite`: 409 `join-policy`; redeem an invite code instead.
#[utoipa::path(
    post,
    path = "/membership/v1/groups/{id}/join",
    tag = "membership",
    params(("id" = String, Path, format = Uuid, description = "The group's id.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller is a member (whether or not they were before): the group is open, or the caller's claims satisfy its claim rules.", body = JoinOutcome,
            example = json!({"group_id": "0b6c3c8e-6f9f-4d54-9b1e-3f1d2b0c9a11", "member": true})),
        (status = 202, description = "The group needs an owner's approval: a request is pending, and **the group's owners will see who asked** (subject, e-mail address, identity kind).", body = JoinOutcome,
            example = json!({"group_id": "0b6c3c8e-6f9f-4d54-9b1e-3f1d2b0c9a11", "member": false, "request": {"id": "5a0e2d3c-0c4f-4b8e-9a51-2f7d0b1c9e42", "status": "pending", "created_at": "2025-01-01T12:00:00Z"}, "notice": APPROVAL_NOTICE})),
        (status = 409, description = "`urn:hush:problem:group-not-active`: the group is being provisioned or archived; or `urn:hush:problem:join-policy`: the group is joined by invite only.", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", description = "`401` No valid bearer token. `403` `urn:hush:problem:label-refused`: the group's label does not admit the caller's kind of identity. `404` No group has this id. `422` `invalid-input`: the group id is not a UUID; or `email-required`: the caller's token carries no e-mail address. `429` `rate-limited`: too many join requests by this caller; see `Retry-After`.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The tenant, control-api or the identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn join(
    State(state): State<AppState>,
    x_request_id: service_kit::RequestId,
    caller: Caller,
    GroupPath(id): GroupPath,
) -> Result<Response, ApiError> {
    let state = state.for_request(&x_request_id);
    state.limit(Action::Join, &caller).await?;
    let mut group = state.active_group(id, false).await?;
    // An open group's join is the routine path: the kept lookup serves, and the tenant checks
    // the label it keeps again. Anything else (a request the owners will see, claim rules) is
    // decided on what control-api says now.
    if group.join_policy != JoinPolicy::Open {
        group = state.active_group(id, true).await?;
    }
    // The label decides before anything else, and nothing is written unless it admits the
    // caller: prevention, not reactive scanning.
    check_label(caller.kind, &group)?;
    if group.join_policy == JoinPolicy::Invite {
        return Err(ApiError::JoinPolicy(JoinPolicy::Invite));
    }
    let email = caller.email.clone().ok_or(ApiError::NoEmail)?;
    let admitted = JoinOutcome {
        group_id: id,
        member: true,
        request: None,
        notice: None,
    };
    if group.join_policy == JoinPolicy::Open {
        state.add_member(&group, caller_ref(&caller, email)).await?;
        return Ok(AppJson(admitted).into_response());
    }
    // Approval. Claim rules admit without a human: nothing is recorded about who matched.
    if claims::load(&state, id).await?.matches(&caller.claims) {
        state.add_member(&group, caller_ref(&caller, email)).await?;
        // A request filed before the rules matched must not outlive its reason.
        state.store.drop_pending(id, &caller.subject).await?;
        return Ok(AppJson(admitted).into_response());
    }
    let request = NewRequest {
        group: id,
        subject: caller.subject.clone(),
        email,
        kind: caller.kind,
    };
    let (rid, created_at) = state
        .store
        .file_request(&request, state.clock.now_ms())
        .await?;
    crate::notices::request_filed(&state, id);
    let pending = JoinOutcome {
        group_id: id,
        member: false,
        request: Some(PendingRef {
            id: rid,
            status: "pending".into(),
            created_at: rfc3339(created_at),
        }),
        notice: Some(APPROVAL_NOTICE.into()),
    };
    Ok((StatusCode::ACCEPTED, AppJson(pending)).into_response())
}

/// Leaves a group.
///
/// Always allowed, immediate, and tells no one (no owner is notified, nothing is recorded
/// here). Always the same answer: whether or not the caller was a member, and whether the
/// group is active, archived or unknown, so the answer reveals nothing.
#[utoipa::path(
    post,
    path = "/membership/v1/groups/{id}/leave",
    tag = "membership",
    params(("id" = String, Path, format = Uuid, description = "The group's id.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller is not a member (whether or not they were before).", body = Membership),
        (status = "4XX", description = "`401` No valid bearer token. `422` The group id is not a UUID. `429` `rate-limited`: too many leave requests by this caller; see `Retry-After`.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The tenant or the identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn leave(
    State(state): State<AppState>,
    x_request_id: service_kit::RequestId,
    caller: Caller,
    GroupPath(id): GroupPath,
) -> Result<AppJson<Membership>, ApiError> {
    let state = state.for_request(&x_request_id);
    state.limit(Action::Leave, &caller).await?;
    // The caller's subject and address: the tenant takes the membership from their own
    // identity and from one made from their address before they signed in (an owner's add by
    // address), never from one bound to another subject.
    let me = IdentityRef {
        subject: Some(caller.subject.clone()),
        email: caller.email.clone(),
    };
    state.tenant.remove_member(id, &me).await?;
    Ok(AppJson(Membership {
        group_id: id,
        member: false,
    }))
}

/// Lists the caller's own groups: only the caller's, never anyone else's (INV-2).
#[utoipa::path(
    get,
    path = "/membership/v1/me/groups",
    tag = "membership",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The groups the caller is a member of.", body = MyGroups),
        (status = "4XX", description = "`401` No valid bearer token.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The tenant, control-api or the identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn my_groups(
    State(state): State<AppState>,
    x_request_id: service_kit::RequestId,
    caller: Caller,
) -> Result<AppJson<MyGroups>, ApiError> {
    let state = state.for_request(&x_request_id);
    let ids = state
        .tenant
        .groups_of(&caller.subject, caller.email.as_ref(), caller.kind)
        .await?;
    let mut groups: Vec<MyGroup> = if ids.is_empty() {
        Vec::new()
    } else {
        let asked: std::collections::HashSet<GroupId> = ids.iter().copied().collect();
        state
            .routine_catalog
            .groups(&ids)
            .await?
            .into_iter()
            // An archived group's membership is being removed; it is no longer "yours".
            .filter(|g| g.state != GroupState::Archived && asked.contains(&g.id))
            .map(|g| MyGroup {
                id: g.id,
                name: g.name,
                label: g.label.name,
                group_type: g.group_type,
                contact_address: g.contact_address,
            })
            .collect()
    };
    groups.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    Ok(AppJson(MyGroups { groups }))
}

/// Whether the caller is a member of one group. Asks about the caller only (INV-2); an
/// unknown group answers `false` like any group the caller is not in.
#[utoipa::path(
    get,
    path = "/membership/v1/groups/{id}/me",
    tag = "membership",
    params(("id" = String, Path, format = Uuid, description = "The group's id.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Whether the caller is a member.", body = Membership),
        (status = "4XX", description = "`401` No valid bearer token. `422` The group id is not a UUID.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The tenant or the identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn am_i_member(
    State(state): State<AppState>,
    x_request_id: service_kit::RequestId,
    caller: Caller,
    GroupPath(id): GroupPath,
) -> Result<AppJson<Membership>, ApiError> {
    let state = state.for_request(&x_request_id);
    let member = state
        .tenant
        .is_member(id, &caller.subject, caller.email.as_ref(), caller.kind)
        .await?;
    Ok(AppJson(Membership {
        group_id: id,
        member,
    }))
}
