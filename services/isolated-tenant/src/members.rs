//! Membership of one person at a time: add, remove, "is this person a member", "which groups
//! is this person in", and offboarding (out of every group at once). There is no route that
//! lists a group's members (INV-1).
//!
//! Subjects and addresses come in request bodies, never in paths, so no access log or span
//! holds them (INV-6). Add, remove and offboard answer 204 with no body whether or not the
//! person was a member (or known at all), and the store does the same work either way (INV-3).

use crate::access::{op, Permit};
use crate::error::ApiError;
use crate::extract::GroupPath;
use crate::AppState;
use axum::extract::State;
use http::StatusCode;
use service_kit::{AppJson, Problem};
use tenant_api::{
    AddMember, GroupsOf, IdentityRef, MembershipCheck, MembershipQuery, SubjectRef, TokenCheck,
    TokenStanding,
};
use utoipa_axum::{router::OpenApiRouter, routes};

/// The membership routes, documented.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(add_member))
        .routes(routes!(remove_member))
        .routes(routes!(check_member))
        .routes(routes!(groups_of))
        .routes(routes!(offboard))
        .routes(routes!(check_token))
}

/// Makes a person a member of the group.
///
/// The person is named by `subject`, `email`, or both (422 when neither), and found by subject
/// first, then by address. The tenant creates their identity (sign-in disabled) the first time
/// it sees them. When `kind` is given the person is present with a token: their kind is the
/// IdP's, and a subject and address that arrive together are bound to one identity (so someone
/// an owner added by address finds the membership under "my groups" once they sign in). When
/// `kind` is absent (an owner or operator adding by address), the tenant uses the kind it has
/// stored, or infers one: guest for an address outside `HUSH_CORPORATE_DOMAINS`, member
/// otherwise; and it changes nothing about an existing identity.
///
/// Before writing anything the tenant checks that `label` admits the resolved kind (403
/// `urn:hush:problem:label-refused`, naming the kind and the label only). The answer is the same
/// whether or not the person already was a member, or was known at all (INV-3). Allowed to
/// membership-api and bulk-api.
#[utoipa::path(
    post,
    path = "/tenant/v1/groups/{group_id}/members",
    tag = "members",
    params(("group_id" = String, Path, format = Uuid, description = "The catalog's id of the group.")),
    request_body = AddMember,
    responses(
        (status = 204, description = "The person is a member (whether or not they were before)."),
        (status = "4XX", description = "`400` The body is not JSON. `401` No service token, or one that does not verify. `403` `forbidden`: the calling service may not add members; or `label-refused`: the group's label does not admit the person's kind of identity (nothing was written). `404` No distribution group with this id is provisioned. `413` The body is larger than the tenant accepts. `415` The body is not sent as application/json. `422` The group id is not a UUID, a field is invalid, or the body names neither a subject nor an email.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn add_member(
    permit: Permit<op::AddMember>,
    State(state): State<AppState>,
    GroupPath(id): GroupPath,
    AppJson(request): AppJson<AddMember>,
) -> Result<StatusCode, ApiError> {
    named(request.member.subject.is_some() || request.member.email.is_some())?;
    state
        .store
        .add_member(permit.context(), id, &request)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// 422 unless the request names someone; checked before the group is even looked up.
fn named(someone: bool) -> Result<(), ApiError> {
    if someone {
        Ok(())
    } else {
        Err(crate::store::StoreError::from(crate::identity::Unidentified).into())
    }
}

/// Makes sure a person is not a member of the group.
///
/// The person is named by `subject`, `email`, or both (422 when neither). With a subject, the
/// membership goes from the identity with that subject and, when `email` is given too, from an
/// identity with that address and no subject yet (the same person, added by address before
/// they signed in), never from one bound to another subject; by address alone, from whoever
/// holds the address. The answer is the same whether or not they were a member, and
/// whether or not the tenant has ever seen them (INV-3). Allowed to membership-api and
/// bulk-api.
#[utoipa::path(
    post,
    path = "/tenant/v1/groups/{group_id}/members/remove",
    tag = "members",
    params(("group_id" = String, Path, format = Uuid, description = "The catalog's id of the group.")),
    request_body = IdentityRef,
    responses(
        (status = 204, description = "The person is not a member (whether or not they were before)."),
        (status = "4XX", description = "`400` The body is not JSON. `401` No service token, or one that does not verify. `403` The calling service may not remove members. `404` No distribution group with this id is provisioned. `413` The body is larger than the tenant accepts. `415` The body is not sent as application/json. `422` The group id is not a UUID, a field is invalid, or the body names neither a subject nor an email.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn remove_member(
    permit: Permit<op::RemoveMember>,
    State(state): State<AppState>,
    GroupPath(id): GroupPath,
    AppJson(who): AppJson<IdentityRef>,
) -> Result<StatusCode, ApiError> {
    named(who.subject.is_some() || who.email.is_some())?;
    state
        .store
        .remove_member(permit.context(), id, &who)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Whether a person is a member of the group.
///
/// The person is the one signed in as `subject`, with `email` from the same token when it
/// carries one: an identity with that address and no subject yet (the person, added by
/// address before they signed in) counts as theirs; one bound to another subject never does.
/// membership-api asks this only about its own caller (INV-2). With `kind` (the caller's token's),
/// a kind that differs from the one stored is corrected first, and the memberships the new
/// kind's labels bar end (see "my groups"). Allowed to membership-api.
#[utoipa::path(
    post,
    path = "/tenant/v1/membership/check",
    tag = "members",
    request_body = MembershipQuery,
    responses(
        (status = 200, description = "Whether the person is a member.", body = MembershipCheck),
        (status = "4XX", description = "`400` The body is not JSON. `401` No service token, or one that does not verify. `403` The calling service may not ask about membership. `404` No distribution group with this id is provisioned. `413` The body is larger than the tenant accepts. `415` The body is not sent as application/json. `422` The group id is not a UUID, or the subject or the email is invalid.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn check_member(
    permit: Permit<op::CheckMember>,
    State(state): State<AppState>,
    AppJson(query): AppJson<MembershipQuery>,
) -> Result<AppJson<MembershipCheck>, ApiError> {
    if let Some(kind) = query.kind {
        state
            .store
            .settle_kind(permit.context(), &query.subject, query.email.as_ref(), kind)
            .await?;
    }
    let member = state
        .store
        .is_member(query.group_id, &query.subject, query.email.as_ref())
        .await?;
    Ok(AppJson(MembershipCheck { member }))
}

/// The groups a person is in.
///
/// The person is found as for the membership check (`subject`, and an identity with `email`
/// and no subject yet). Found by probing, for each of the person's own identities, the keyed
/// membership tag of every group (there is no per-person list of groups, so no membership
/// write touches a row about the person); never by reading any group's members. membership-api asks this only about its own caller
/// (INV-2). With `kind` (the caller's token's), the tenant first stores it when it differs from
/// the kind it has for them, and ends every membership the new kind's labels bar, in one
/// transaction with audit events: the moment a person is seen as a guest or an agent, the groups
/// whose labels bar that kind lose them. Allowed to membership-api.
#[utoipa::path(
    post,
    path = "/tenant/v1/identities/groups",
    tag = "members",
    request_body = SubjectRef,
    responses(
        (status = 200, description = "The person's groups (among those named in `among`, when given), sorted; empty for someone the tenant has not seen.", body = GroupsOf),
        (status = "4XX", description = "`400` The body is not JSON. `401` No service token, or one that does not verify. `403` The calling service may not ask about membership. `413` The body is larger than the tenant accepts. `415` The body is not sent as application/json. `422` The subject or the email is invalid.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn groups_of(
    permit: Permit<op::GroupsOf>,
    State(state): State<AppState>,
    AppJson(who): AppJson<SubjectRef>,
) -> Result<AppJson<GroupsOf>, ApiError> {
    if let Some(kind) = who.kind {
        state
            .store
            .settle_kind(permit.context(), &who.subject, who.email.as_ref(), kind)
            .await?;
    }
    let groups = match &who.among {
        None => {
            state
                .store
                .groups_of(&who.subject, who.email.as_ref())
                .await?
        }
        Some(among) if among.is_empty() || among.len() > tenant_api::MAX_AMONG => {
            return Err(ApiError::Invalid(format!(
                "among: 1 to {} group ids",
                tenant_api::MAX_AMONG
            )));
        }
        Some(among) => {
            state
                .store
                .groups_among(&who.subject, who.email.as_ref(), among)
                .await?
        }
    };
    Ok(AppJson(GroupsOf { groups }))
}

/// Removes a person from every group at once and deletes their identity.
///
/// For someone who left: their membership rows go, in every group, in one transaction, and so
/// does their identity (and an identity that holds their address without another subject: the
/// same person, added by address before they signed in). Mail expansion reads membership rows,
/// so they stop receiving every group's mail at once. A later add creates a fresh identity.
/// Idempotent: the answer is 204 whether or not the tenant knew them. Allowed to control-api.
#[utoipa::path(
    post,
    path = "/tenant/v1/identities/offboard",
    tag = "members",
    request_body = IdentityRef,
    responses(
        (status = 204, description = "The person is in no group and the tenant holds no identity for them (whether or not it did before)."),
        (status = "4XX", description = "`400` The body is not JSON. `401` No service token, or one that does not verify. `403` The calling service may not offboard. `413` The body is larger than the tenant accepts. `415` The body is not sent as application/json. `422` A field is invalid, or the body names neither a subject nor an email.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn offboard(
    permit: Permit<op::Offboard>,
    State(state): State<AppState>,
    AppJson(who): AppJson<IdentityRef>,
) -> Result<StatusCode, ApiError> {
    named(who.subject.is_some() || who.email.is_some())?;
    state.store.offboard(permit.context(), &who).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Whether a person's token was voided by an offboarding.
///
/// Offboarding records the moment; a token of that subject issued before it (or without an
/// issue time) is void in every service and every replica. Says nothing of groups. Allowed to
/// the public services, about their own caller.
#[utoipa::path(
    post,
    path = "/tenant/v1/tokens/check",
    tag = "members",
    request_body = TokenCheck,
    responses(
        (status = 200, description = "Whether the token is void.", body = TokenStanding),
        (status = "4XX", description = "`400` The body is not JSON. `401` No service token, or one that does not verify. `403` The calling service may not ask. `413` The body is larger than the tenant accepts. `415` The body is not sent as application/json. `422` The subject is invalid.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn check_token(
    _: Permit<op::CheckToken>,
    State(state): State<AppState>,
    AppJson(check): AppJson<TokenCheck>,
) -> Result<AppJson<TokenStanding>, ApiError> {
    let revoked = state
        .store
        .token_revoked(&check.subject, check.issued_at)
        .await?;
    Ok(AppJson(TokenStanding { revoked }))
}
