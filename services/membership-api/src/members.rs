//! Owners' writes: add a person to their group, or remove one (INV-3).
//!
//! Both answer `202 {"status":"accepted"}` — the same status and the same bytes whether or not
//! the person was (or was not) a member, or is known to the tenant at all — and both do the
//! same work either way: one call to the tenant, never a membership check first, no early
//! return. An owner learns nothing about the membership from the answer or its timing.
//!
//! An owner names a person by subject or address; the person is not present with a token, so
//! the tenant decides their identity kind (the kind it has stored, or else inferred from the
//! address's domain) and checks the group's label before it writes anything. A person the
//! label bars is not added, and the owner gets the same `202` as for anyone else: a different
//! answer would let an owner of a restrictive group test whether someone is known to the
//! tenant, and as what. The answer's documentation (and the web app's acknowledgement) says
//! that the label's rule applies.

use crate::error::ApiError;
use crate::extract::{require_active, GroupPath, SubjectPath};
use crate::limits::Action;
use crate::AppState;
use auth::Caller;
use axum::extract::State;
use domain::{Email, Subject};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use service_kit::{AppJson, Problem};
use tenant_api::{IdentityRef, MemberRef};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

/// The owner write routes, documented.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(add))
        .routes(routes!(remove_by_path))
        .routes(routes!(remove))
}

/// A person an owner names: by subject, by address, or both (at least one).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Person {
    /// The IdP's subject (`sub`).
    #[serde(default)]
    #[schema(nullable = false)]
    pub subject: Option<Subject>,
    /// Their e-mail address.
    #[serde(default)]
    #[schema(nullable = false)]
    pub email: Option<Email>,
}

/// INV-6: never shows who.
impl std::fmt::Debug for Person {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Person").finish_non_exhaustive()
    }
}

impl Person {
    fn check(&self) -> Result<(), ApiError> {
        if self.subject.is_none() && self.email.is_none() {
            return Err(ApiError::Invalid(
                "name the person by subject, email or both".into(),
            ));
        }
        Ok(())
    }
}

/// The one answer every owner write gives, whatever the membership was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"status": "accepted"}))]
pub struct Accepted {
    /// Always `accepted`.
    pub status: String,
}

fn accepted() -> (StatusCode, AppJson<Accepted>) {
    (
        StatusCode::ACCEPTED,
        AppJson(Accepted {
            status: "accepted".into(),
        }),
    )
}

/// Adds a person to the group (owners only).
///
/// Answers `202 {"status":"accepted"}`, byte for byte the same whether the person was already a
/// member, was unknown, or is barred by the group's label (INV-3). The tenant decides the
/// person's identity kind and checks the label before it writes anything: someone whose kind
/// the label does not admit (a guest or an AI agent under a label without them) is not added.
#[utoipa::path(
    post,
    path = "/membership/v1/groups/{id}/members",
    tag = "owners",
    params(("id" = String, Path, format = Uuid, description = "The group's id.")),
    request_body = Person,
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Accepted: the person is a member, unless the group's label bars their kind of identity (then nothing was written). The same answer whether they were a member before, unknown, or barred by the label.", body = Accepted),
        (status = 409, description = "`group-not-active`: the group is being provisioned or archived.", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", description = "`400` The body is not JSON. `401` No valid bearer token. `403` `not-owner`: only the group's owners may add (the same answer when no group has this id). `415` The body is not sent as application/json. `422` The group id is not a UUID, or the body names no one (or an invalid subject or address). `429` `rate-limited`: too many owner changes by this caller; see `Retry-After`.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The tenant, control-api or the identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn add(
    State(state): State<AppState>,
    x_request_id: service_kit::RequestId,
    caller: Caller,
    GroupPath(id): GroupPath,
    AppJson(person): AppJson<Person>,
) -> Result<(StatusCode, AppJson<Accepted>), ApiError> {
    let state = state.for_request(&x_request_id);
    state.limit(Action::OwnerWrite, &caller).await?;
    let group = state.owned_group(&caller, id).await?;
    require_active(&group)?;
    person.check()?;
    let member = MemberRef {
        subject: person.subject,
        email: person.email,
        // Not present with a token: the tenant knows (or infers) their kind.
        kind: None,
    };
    match state.add_member(&group, member).await {
        // Barred by the label: nothing was written, and the owner is told no more than for
        // anyone else.
        Ok(()) | Err(ApiError::TenantLabelRefused(_)) => Ok(accepted()),
        Err(e) => Err(e),
    }
}

async fn remove_person(
    state: &AppState,
    id: domain::GroupId,
    who: IdentityRef,
) -> Result<(StatusCode, AppJson<Accepted>), ApiError> {
    // Whatever the group's state: removing someone from a group being archived is harmless,
    // and the tenant answers a removal the same way whether or not they were in it.
    state.tenant.remove_member(id, &who).await?;
    Ok(accepted())
}

/// Removes a person, named by subject in the path, from the group (owners only).
///
/// Answers `202 {"status":"accepted"}`, byte for byte the same whether or not the person was a
/// member (INV-3). A subject that is literally `remove` must use the body form.
#[utoipa::path(
    delete,
    path = "/membership/v1/groups/{id}/members/{subject}",
    tag = "owners",
    params(
        ("id" = String, Path, format = Uuid, description = "The group's id."),
        ("subject" = String, Path, description = "The person's subject (percent-encoded)."),
    ),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Accepted: the person is not a member. The same answer whether or not they were before.", body = Accepted),
        (status = "4XX", description = "`401` No valid bearer token. `403` `not-owner`: only the group's owners may remove (the same answer when no group has this id). `422` The group id is not a UUID, or the subject is not valid. `429` `rate-limited`: too many owner changes by this caller; see `Retry-After`.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The tenant, control-api or the identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn remove_by_path(
    State(state): State<AppState>,
    x_request_id: service_kit::RequestId,
    caller: Caller,
    GroupPath(id): GroupPath,
    SubjectPath(subject): SubjectPath,
) -> Result<(StatusCode, AppJson<Accepted>), ApiError> {
    let state = state.for_request(&x_request_id);
    state.limit(Action::OwnerWrite, &caller).await?;
    state.owned_group(&caller, id).await?;
    remove_person(&state, id, IdentityRef::from(&subject)).await
}

/// Removes a person, named by subject or address in the body, from the group (owners only).
///
/// Answers `202 {"status":"accepted"}`, byte for byte the same whether or not the person was a
/// member (INV-3). Prefer this form: the person stays out of URLs.
#[utoipa::path(
    post,
    path = "/membership/v1/groups/{id}/members/remove",
    tag = "owners",
    params(("id" = String, Path, format = Uuid, description = "The group's id.")),
    request_body = Person,
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Accepted: the person is not a member. The same answer whether or not they were before.", body = Accepted),
        (status = "4XX", description = "`400` The body is not JSON. `401` No valid bearer token. `403` `not-owner`: only the group's owners may remove (the same answer when no group has this id). `415` The body is not sent as application/json. `422` The group id is not a UUID, or the body names no one (or an invalid subject or address). `429` `rate-limited`: too many owner changes by this caller; see `Retry-After`.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The tenant, control-api or the identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn remove(
    State(state): State<AppState>,
    x_request_id: service_kit::RequestId,
    caller: Caller,
    GroupPath(id): GroupPath,
    AppJson(person): AppJson<Person>,
) -> Result<(StatusCode, AppJson<Accepted>), ApiError> {
    let state = state.for_request(&x_request_id);
    state.limit(Action::OwnerWrite, &caller).await?;
    state.owned_group(&caller, id).await?;
    person.check()?;
    let who = IdentityRef {
        subject: person.subject,
        email: person.email,
    };
    remove_person(&state, id, who).await
}
