//! Offboarding: when a person leaves the company (or an identity is disabled), an operator — or
//! identity sync, later — removes them from every group at once. control-api holds no
//! membership, so it only relays the request to the tenant, which forgets the identity and,
//! with it, every membership and every mail delivery to it.

use crate::error::ApiError;
use crate::extract::Operator;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use domain::{Email, Subject};
use serde::{Deserialize, Serialize};
use service_kit::{AppJson, Problem};
use tenant_api::IdentityRef;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

/// The role that may offboard identities.
pub const OPERATOR: &str = "operator";

/// The identity routes, documented.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(offboard))
}

/// Whom to offboard: the IdP subject, the e-mail address, or both.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OffboardRequest {
    /// The person's subject at the IdP.
    #[schema(nullable = false)]
    pub subject: Option<Subject>,
    /// The person's e-mail address.
    #[schema(nullable = false)]
    pub email: Option<Email>,
}

/// The answer to an offboarding request: the same whether or not the person was known or in
/// any group (INV-3).
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// Always `accepted`.
    pub status: &'static str,
}

/// Removes a person from every group at once and forgets their identity (role `operator`).
///
/// The answer is the same whether or not the person was in any group; it is done when it
/// returns, and from then on no mail to any group reaches them.
#[utoipa::path(
    post,
    path = "/control/v1/identities/offboard",
    tag = "identities",
    request_body = OffboardRequest,
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Offboarded (the same answer whether or not the person was known).", body = Accepted),
        (status = "4XX", description = "`400` The body is not JSON. `401` No valid bearer token. `403` The caller lacks the role `operator`. `422` Neither a subject nor an e-mail address, or one is malformed.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The tenant (or the identity provider) is not answering; nothing was done; retry.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn offboard(
    State(state): State<AppState>,
    x_request_id: service_kit::RequestId,
    _operator: Operator,
    AppJson(input): AppJson<OffboardRequest>,
) -> Result<(StatusCode, AppJson<Accepted>), ApiError> {
    let state = state.for_request(&x_request_id);
    if input.subject.is_none() && input.email.is_none() {
        return Err(ApiError::Invalid(
            "name the person to offboard by subject, email or both".into(),
        ));
    }
    let who = IdentityRef {
        subject: input.subject,
        email: input.email,
    };
    state.tenant.offboard(&who).await.map_err(|e| {
        tracing::warn!(error = %e, "offboarding did not reach the tenant");
        ApiError::TenantUnavailable
    })?;
    Ok((
        StatusCode::ACCEPTED,
        AppJson(Accepted { status: "accepted" }),
    ))
}
