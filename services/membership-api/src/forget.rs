//! Forget me: a person leaves every group and has their identity erased in one step, the same
//! as an operator's offboarding, at their own request and about themselves alone (INV-2). The
//! tenant's audit records the offboarding under a pseudonym, naming no one (INV-6); the
//! requests to join they filed, which name them to owners, are deleted here.

use crate::error::ApiError;
use crate::limits::Action;
use crate::AppState;
use auth::Caller;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use service_kit::{AppJson, Problem};
use tenant_api::IdentityRef;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

/// What the body must say, word for word: erasing oneself is not undone by an accidental click.
pub const CONFIRMATION: &str = "forget me";

/// The forget-me route, documented.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(forget_me))
}

/// The caller's confirmation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgetMe {
    /// Exactly `forget me`.
    #[schema(example = "forget me")]
    pub confirm: String,
}

/// Done: what became of the caller.
#[derive(Debug, Serialize, ToSchema)]
pub struct Forgotten {
    /// Always `forgotten`.
    pub status: &'static str,
    /// What this did and did not do, in words.
    pub detail: &'static str,
}

const FORGOTTEN: &str = "You are in no group now, Hush holds no identity for you and your \
    requests to join are deleted. Every token you held is void: signing in again starts afresh. \
    Groups you own are not handed over: owning is a public role, so your user id stays on them \
    until another owner removes it.";

/// Leaves every group and erases the caller's identity (forget me).
///
/// The same as an operator's offboarding, for the caller alone: every membership, in every
/// group, ends in one transaction; the tenant forgets the identity (and one made from the
/// caller's address before they signed in); the caller's requests to join are deleted; every
/// token issued to the caller until now is refused from then on. The body must be
/// `{"confirm": "forget me"}`. The answer is the same whether or not the caller was in any
/// group. Idempotent: a retry after a failure finishes the job.
#[utoipa::path(
    post,
    path = "/membership/v1/me/forget",
    tag = "membership",
    request_body = ForgetMe,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Forgotten (the same answer whether or not the caller was in any group).", body = Forgotten),
        (status = "4XX", description = "`400` The body is not JSON. `401` No valid bearer token. `413` The body is too large. `415` The body is not sent as application/json. `422` `confirm` is not exactly `forget me` (nothing was done). `429` `rate-limited`: too many leave requests by this caller; see `Retry-After`.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The tenant or the identity provider is not answering; nothing of the caller's groups changed, or the change is complete and sending it again finishes the rest.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn forget_me(
    State(state): State<AppState>,
    x_request_id: service_kit::RequestId,
    caller: Caller,
    AppJson(input): AppJson<ForgetMe>,
) -> Result<AppJson<Forgotten>, ApiError> {
    let state = state.for_request(&x_request_id);
    if input.confirm != CONFIRMATION {
        return Err(ApiError::Invalid(format!(
            "confirm: to be forgotten, send exactly \"{CONFIRMATION}\"; nothing was done"
        )));
    }
    state.limit(Action::Leave, &caller).await?;
    let me = IdentityRef {
        subject: Some(caller.subject.clone()),
        email: caller.email.clone(),
    };
    state.tenant.offboard(&me).await?;
    // This replica's next look at the caller's token asks the tenant, which now refuses it.
    state.verifier.forget_standing(&caller.subject);
    state.store.forget_requester(&caller.subject).await?;
    Ok(AppJson(Forgotten {
        status: "forgotten",
        detail: FORGOTTEN,
    }))
}
