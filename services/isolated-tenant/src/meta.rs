//! Routes about the API itself: `ping` (does the tenant accept this service's token?) and the
//! OpenAPI document. Both need a service token like every other route under `/tenant/v1`.

use crate::access::{op, Permit};
use crate::AppState;
use axum::Extension;
use service_kit::{AppJson, Problem};
use std::sync::Arc;
use tenant_api::Pong;
use utoipa_axum::{router::OpenApiRouter, routes};

/// The OpenAPI document, built once per router and handed to its route as an extension.
pub type Doc = Arc<utoipa::openapi::OpenApi>;

/// The meta routes, documented.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(ping))
        .routes(routes!(openapi_json))
}

/// Which service the tenant recognises in the token.
///
/// The public services' readiness checks call it: it proves the tenant is up and that it trusts
/// their key. Allowed to every trusted service.
#[utoipa::path(
    get,
    path = "/tenant/v1/ping",
    tag = "meta",
    responses(
        (status = 200, description = "The token is accepted; the answer names its service.", body = Pong),
        (status = "4XX", description = "`401` No service token, or one that does not verify. `403` The caller is not a service allowed to ping.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn ping(permit: Permit<op::Ping>) -> AppJson<Pong> {
    AppJson(Pong {
        service: permit.caller.service,
    })
}

/// This OpenAPI document.
///
/// Trusted services only, like every other route here.
#[utoipa::path(
    get,
    path = "/tenant/v1/openapi.json",
    tag = "meta",
    responses(
        (status = 200, description = "The OpenAPI document of this API.", content_type = "application/json"),
        (status = "4XX", description = "`401` No service token, or one that does not verify. `403` The caller is not a service allowed to read it.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn openapi_json(
    _: Permit<op::ReadApiDoc>,
    Extension(doc): Extension<Doc>,
) -> AppJson<utoipa::openapi::OpenApi> {
    AppJson(doc.as_ref().clone())
}
