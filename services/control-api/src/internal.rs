//! The internal endpoint: membership-api and bulk-api look groups up by id to learn their label,
//! join policy, state and owners before they add anyone. Service tokens only (audience
//! `control-api`), and only from those two services.

use crate::config::INTERNAL_CALLERS;
use crate::error::ApiError;
use crate::model::GroupRecord;
use crate::AppState;
use auth::ServiceCaller;
use axum::extract::State;
use control_client::{
    CatalogVersion, GroupPolicyView, LookupRequest, LookupResponse, MAX_LOOKUP_IDS,
};
use service_kit::{AppJson, Problem};
use utoipa_axum::{router::OpenApiRouter, routes};

/// The internal routes, documented.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(lookup_groups))
        .routes(routes!(catalog_version))
}

impl From<GroupRecord> for GroupPolicyView {
    fn from(g: GroupRecord) -> Self {
        Self {
            id: g.id,
            name: g.name,
            state: g.state,
            label: g.label,
            join_policy: g.join_policy,
            owners: g.owners.as_slice().to_vec(),
            group_type: g.group_type,
            contact_address: g.contact_address,
        }
    }
}

/// Looks groups up by id (membership-api and bulk-api only).
///
/// Unknown ids are left out of the answer. Archived groups are included, with their state.
#[utoipa::path(
    post,
    path = "/control/v1/internal/groups/lookup",
    tag = "internal",
    request_body = LookupRequest,
    security(("service" = [])),
    responses(
        (status = 200, description = "The groups that exist among those asked for.", body = LookupResponse),
        (status = "4XX", description = "`400` The body is not JSON. `401` No valid service token addressed to control-api. `403` The calling service may not use this endpoint. `413` The body is too large. `415` The body is not sent as application/json. `422` A field is missing, unknown or invalid, or more than 500 ids were sent.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn lookup_groups(
    State(state): State<AppState>,
    service: ServiceCaller,
    AppJson(request): AppJson<LookupRequest>,
) -> Result<AppJson<LookupResponse>, ApiError> {
    if !INTERNAL_CALLERS.contains(&service.service) {
        return Err(ApiError::ServiceNotAllowed(service.service.to_string()));
    }
    if request.ids.len() > MAX_LOOKUP_IDS {
        return Err(ApiError::Invalid(format!(
            "ids: at most {MAX_LOOKUP_IDS} per lookup"
        )));
    }
    let groups = state
        .store
        .lookup_groups(&request.ids)
        .await?
        .into_iter()
        .map(GroupPolicyView::from)
        .collect();
    Ok(AppJson(LookupResponse { groups }))
}

/// The catalog's version (membership-api and bulk-api only): it changes whenever a group or
/// label a lookup could return has changed, so a caller that keeps lookups knows when to drop
/// them.
#[utoipa::path(
    get,
    path = "/control/v1/internal/catalog-version",
    tag = "internal",
    security(("service" = [])),
    responses(
        (status = 200, description = "The version; compare for equality only.", body = CatalogVersion),
        (status = "4XX", description = "`401` No valid service token addressed to control-api. `403` The calling service may not use this endpoint.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn catalog_version(
    State(state): State<AppState>,
    service: ServiceCaller,
) -> Result<AppJson<CatalogVersion>, ApiError> {
    if !INTERNAL_CALLERS.contains(&service.service) {
        return Err(ApiError::ServiceNotAllowed(service.service.to_string()));
    }
    let version = state.store.catalog_version().await?;
    Ok(AppJson(CatalogVersion { version }))
}
