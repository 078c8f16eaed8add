//! The mail route of the tenant's API: the queue's counts, for operators (through
//! control-api). Counts only, over every group: no group, no address (INV-1).

use crate::access::{op, Permit};
use crate::error::ApiError;
use crate::AppState;
use axum::extract::State;
use service_kit::{AppJson, Problem};
use tenant_api::MailCounts;
use utoipa_axum::{router::OpenApiRouter, routes};

/// The mail routes, documented.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(counts))
}

/// The mail queue's counts: deliveries and recipients queued, delivered and dead, bad
/// delivery addresses, and the bounces and auto-replies consumed.
///
/// Allowed to control-api.
#[utoipa::path(
    get,
    path = "/tenant/v1/mail/counts",
    tag = "mail",
    responses(
        (status = 200, description = "The counts.", body = MailCounts),
        (status = "4XX", description = "`401` No service token, or one that does not verify. `403` The calling service may not read the mail counts.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn counts(
    _: Permit<op::MailCounts>,
    State(state): State<AppState>,
) -> Result<AppJson<MailCounts>, ApiError> {
    Ok(AppJson(state.mail.counts().await?))
}
