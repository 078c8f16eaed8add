//! Membership of one person at a time: add, remove, "is this person a member", "which groups
//! is this person in". There is no route that lists a group's members (INV-1).
//!
//! Subjects come in request bodies, never in paths, so no access log or span holds them
//! (INV-6). Add and remove answer 204 with no body whether or not the person was a member, and
//! the store does the same work either way (INV-3).

use crate::access::{op, Permit};
use crate::error::ApiError;
use crate::extract::GroupPath;
use crate::AppState;
use axum::extract::State;
use http::StatusCode;
use service_kit::{AppJson, Problem};
use tenant_client::{GroupsOf, MemberRef, MembershipCheck, MembershipQuery, SubjectRef};
use utoipa_axum::{router::OpenApiRouter, routes};

/// The membership routes, documented.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(add_member))
        .routes(routes!(remove_member))
        .routes(routes!(check_member))
        .routes(routes!(groups_of))
}

/// Makes a person a member of the group.
///
/// Creates their identity (a guest identity with sign-in disabled) the first time the tenant
/// sees them, and refreshes its address and kind otherwise. The answer is the same whether or
/// not they already were a member (INV-3). Allowed to membership-api and bulk-api.
#[utoipa::path(
    post,
    path = "/tenant/v1/groups/{group_id}/members",
    tag = "members",
    params(("group_id" = String, Path, format = Uuid, description = "The catalog's id of the group.")),
    request_body = MemberRef,
    responses(
        (status = 204, description = "The person is a member (whether or not they were before)."),
        (status = 400, description = "The body is not JSON.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No service token, or one that does not verify.", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The calling service may not add members.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No distribution group with this id is provisioned.", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the tenant accepts.", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as application/json.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The group id is not a UUID, or a field is invalid.", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Something failed on our side; the request id identifies it in our logs.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn add_member(
    _: Permit<op::AddMember>,
    State(state): State<AppState>,
    GroupPath(id): GroupPath,
    AppJson(member): AppJson<MemberRef>,
) -> Result<StatusCode, ApiError> {
    state.store.add_member(id, &member).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Makes sure a person is not a member of the group.
///
/// The answer is the same whether or not they were a member, and whether or not the tenant
/// has ever seen them (INV-3). Allowed to membership-api and bulk-api.
#[utoipa::path(
    post,
    path = "/tenant/v1/groups/{group_id}/members/remove",
    tag = "members",
    params(("group_id" = String, Path, format = Uuid, description = "The catalog's id of the group.")),
    request_body = SubjectRef,
    responses(
        (status = 204, description = "The person is not a member (whether or not they were before)."),
        (status = 400, description = "The body is not JSON.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No service token, or one that does not verify.", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The calling service may not remove members.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No distribution group with this id is provisioned.", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the tenant accepts.", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as application/json.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The group id is not a UUID, or the subject is invalid.", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Something failed on our side; the request id identifies it in our logs.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn remove_member(
    _: Permit<op::RemoveMember>,
    State(state): State<AppState>,
    GroupPath(id): GroupPath,
    AppJson(who): AppJson<SubjectRef>,
) -> Result<StatusCode, ApiError> {
    state.store.remove_member(id, &who.subject).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Whether a person is a member of the group.
///
/// membership-api asks this only about its own caller (INV-2). Allowed to membership-api.
#[utoipa::path(
    post,
    path = "/tenant/v1/membership/check",
    tag = "members",
    request_body = MembershipQuery,
    responses(
        (status = 200, description = "Whether the person is a member.", body = MembershipCheck),
        (status = 400, description = "The body is not JSON.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No service token, or one that does not verify.", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The calling service may not ask about membership.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No distribution group with this id is provisioned.", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the tenant accepts.", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as application/json.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The group id is not a UUID, or the subject is invalid.", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Something failed on our side; the request id identifies it in our logs.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn check_member(
    _: Permit<op::CheckMember>,
    State(state): State<AppState>,
    AppJson(query): AppJson<MembershipQuery>,
) -> Result<AppJson<MembershipCheck>, ApiError> {
    let member = state
        .store
        .is_member(query.group_id, &query.subject)
        .await?;
    Ok(AppJson(MembershipCheck { member }))
}

/// The groups a person is in.
///
/// Read from the person's own sealed list, never by scanning groups; groups deprovisioned
/// since are left out. membership-api asks this only about its own caller (INV-2). Allowed to
/// membership-api.
#[utoipa::path(
    post,
    path = "/tenant/v1/identities/groups",
    tag = "members",
    request_body = SubjectRef,
    responses(
        (status = 200, description = "The person's groups, sorted; empty for someone the tenant has not seen.", body = GroupsOf),
        (status = 400, description = "The body is not JSON.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No service token, or one that does not verify.", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The calling service may not ask about membership.", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the tenant accepts.", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as application/json.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The subject is invalid.", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Something failed on our side; the request id identifies it in our logs.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn groups_of(
    _: Permit<op::GroupsOf>,
    State(state): State<AppState>,
    AppJson(who): AppJson<SubjectRef>,
) -> Result<AppJson<GroupsOf>, ApiError> {
    let groups = state.store.groups_of(&who.subject).await?;
    Ok(AppJson(GroupsOf { groups }))
}
