//! Routine membership, always about the caller alone (INV-2): join, leave, "my groups" and "am
//! I a member of G". No route here takes another person as input or returns anyone but the
//! caller, and none logs the caller (INV-6): the request span carries the route template only.

use crate::error::ApiError;
use crate::AppState;
use auth::Caller;
use axum::extract::{FromRequestParts, Path, State};
use domain::{Email, GroupId, GroupName, GroupState, JoinPolicy, LabelName};
use http::request::Parts;
use serde::{Deserialize, Serialize};
use service_kit::{AppJson, Problem};
use tenant_client::MemberRef;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

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
    /// The address that mails its members.
    pub contact_address: Email,
}

/// The caller's groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MyGroups {
    /// Every group the caller is a member of (and only the caller's).
    pub groups: Vec<MyGroup>,
}

/// A group id from the path, parsed; a malformed one is a problem+json 422, not axum's
/// plain-text 400.
#[derive(Debug, Clone, Copy)]
pub struct GroupPath(pub GroupId);

impl<S: Send + Sync> FromRequestParts<S> for GroupPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::InvalidGroupId)?;
        GroupId::parse(&raw)
            .map(Self)
            .map_err(|_| ApiError::InvalidGroupId)
    }
}

/// Joins a group whose join policy is `open`.
///
/// The group's label decides first, before anything is written: a label that does not admit
/// the caller's kind of identity (guest, AI agent) refuses with 403 `label-refused`. Then the
/// join policy: `open` adds the caller at once; `approval` and `invite` answer 409
/// `join-policy`, saying what the group needs instead.
#[utoipa::path(
    post,
    path = "/membership/v1/groups/{id}/join",
    tag = "membership",
    params(("id" = String, Path, format = Uuid, description = "The group's id.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller is a member (whether or not they were before).", body = Membership),
        (status = 401, description = "No valid bearer token.", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`urn:hush:problem:label-refused`: the group's label does not admit the caller's kind of identity.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No group has this id.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`urn:hush:problem:group-not-active`: the group is being provisioned or archived; or `urn:hush:problem:join-policy`: the group needs an owner's approval or an invite.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-input`: the group id is not a UUID; or `email-required`: the caller's token carries no e-mail address.", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Something failed on our side; the request id identifies it in our logs.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The tenant, control-api or the identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn join(
    State(state): State<AppState>,
    caller: Caller,
    GroupPath(id): GroupPath,
) -> Result<AppJson<Membership>, ApiError> {
    let group = state
        .catalog
        .group(id)
        .await?
        .ok_or(ApiError::GroupNotFound)?;
    if group.state != GroupState::Active {
        return Err(ApiError::NotAccepting);
    }
    // The label decides before anything else, and nothing is written unless it admits the
    // caller: prevention, not reactive scanning.
    domain::may_enter(caller.kind, &group.label.name, &group.label.policy)
        .map_err(ApiError::LabelRefused)?;
    match group.join_policy {
        JoinPolicy::Open => {}
        // Asking an owner and redeeming invites are flows of their own (not yet offered here);
        // say what the group needs rather than pretend to have asked.
        other @ (JoinPolicy::Approval | JoinPolicy::Invite) => {
            return Err(ApiError::JoinPolicy(other))
        }
    }
    let email = caller.email.ok_or(ApiError::NoEmail)?;
    state
        .tenant
        .add_member(
            id,
            MemberRef {
                subject: caller.subject,
                email,
                kind: caller.kind,
            },
        )
        .await?;
    Ok(AppJson(Membership {
        group_id: id,
        member: true,
    }))
}

/// Leaves a group.
///
/// Always allowed, and always the same answer: whether or not the caller was a member, and
/// whether the group is active, archived or unknown, so the answer reveals nothing.
#[utoipa::path(
    post,
    path = "/membership/v1/groups/{id}/leave",
    tag = "membership",
    params(("id" = String, Path, format = Uuid, description = "The group's id.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller is not a member (whether or not they were before).", body = Membership),
        (status = 401, description = "No valid bearer token.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The group id is not a UUID.", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Something failed on our side; the request id identifies it in our logs.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The tenant or the identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn leave(
    State(state): State<AppState>,
    caller: Caller,
    GroupPath(id): GroupPath,
) -> Result<AppJson<Membership>, ApiError> {
    state.tenant.remove_member(id, &caller.subject).await?;
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
        (status = 401, description = "No valid bearer token.", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Something failed on our side; the request id identifies it in our logs.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The tenant, control-api or the identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn my_groups(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<AppJson<MyGroups>, ApiError> {
    let ids = state.tenant.groups_of(&caller.subject).await?;
    let mut groups: Vec<MyGroup> = if ids.is_empty() {
        Vec::new()
    } else {
        state
            .catalog
            .groups(&ids)
            .await?
            .into_iter()
            // An archived group's membership is being removed; it is no longer "yours".
            .filter(|g| g.state != GroupState::Archived && ids.contains(&g.id))
            .map(|g| MyGroup {
                id: g.id,
                name: g.name,
                label: g.label.name,
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
        (status = 401, description = "No valid bearer token.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The group id is not a UUID.", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Something failed on our side; the request id identifies it in our logs.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The tenant or the identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn am_i_member(
    State(state): State<AppState>,
    caller: Caller,
    GroupPath(id): GroupPath,
) -> Result<AppJson<Membership>, ApiError> {
    let member = state.tenant.is_member(id, &caller.subject).await?;
    Ok(AppJson(Membership {
        group_id: id,
        member,
    }))
}
