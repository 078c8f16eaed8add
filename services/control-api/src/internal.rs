//! The internal endpoints: membership-api and bulk-api look groups up by id to learn their
//! label, join policy, state and owners before they add anyone; membership-api alone looks
//! relying parties up, to check an app's credential and which groups guard its resources.
//! Service tokens only (audience `control-api`), and only from those services.

use crate::config::INTERNAL_CALLERS;
use crate::error::ApiError;
use crate::model::GroupRecord;
use crate::store::apps::{AppKey, RelyingParty};
use crate::AppState;
use auth::ServiceCaller;
use axum::extract::State;
use control_client::{
    CatalogVersion, GroupPolicyView, LookupRequest, LookupResponse, RelyingPartyLookup,
    RelyingPartyView, ResourceView, MAX_LOOKUP_IDS,
};
use domain::ServiceName;
use service_kit::{AppJson, Problem};
use utoipa_axum::{router::OpenApiRouter, routes};

/// The internal routes, documented.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(lookup_groups))
        .routes(routes!(catalog_version))
        .routes(routes!(lookup_relying_party))
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

/// The only service that looks relying parties up: it checks apps' credentials and decides.
const RELYING_PARTY_CALLER: ServiceName = ServiceName::MembershipApi;

impl From<RelyingParty> for RelyingPartyView {
    fn from(a: RelyingParty) -> Self {
        Self {
            id: a.id,
            name: a.name,
            audience: a.audience,
            credential_sha256: a.credential_sha256,
            enabled: a.enabled,
            resources: a
                .resources
                .into_iter()
                .map(|r| ResourceView {
                    id: r.id,
                    name: r.name,
                    label: r.label,
                    groups: r.guards,
                })
                .collect(),
        }
    }
}

/// Looks a relying party up by id or by audience (membership-api only): its credential's
/// SHA-256, whether it is enabled, and each of its resources with its label now and the groups
/// that guard it (each group's state and label now). Never a member.
#[utoipa::path(
    post,
    path = "/control/v1/internal/relying-parties/lookup",
    tag = "internal",
    request_body = RelyingPartyLookup,
    security(("service" = [])),
    responses(
        (status = 200, description = "The relying party.", body = RelyingPartyView),
        (status = "4XX", description = "`400` The body is not JSON. `401` No valid service token addressed to control-api. `403` The calling service is not membership-api. `404` No relying party has this id or audience. `413` The body is too large. `415` The body is not sent as application/json. `422` Not exactly one of `id` and `audience`, or a field is unknown or invalid.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn lookup_relying_party(
    State(state): State<AppState>,
    service: ServiceCaller,
    AppJson(request): AppJson<RelyingPartyLookup>,
) -> Result<AppJson<RelyingPartyView>, ApiError> {
    if service.service != RELYING_PARTY_CALLER {
        return Err(ApiError::ServiceNotAllowed(service.service.to_string()));
    }
    let key = match (request.id, request.audience) {
        (Some(id), None) => AppKey::Id(id),
        (None, Some(audience)) => AppKey::Audience(audience),
        _ => {
            return Err(ApiError::Invalid(
                "name the relying party by exactly one of id and audience".into(),
            ))
        }
    };
    let app = state
        .store
        .get_app(&key)
        .await?
        .ok_or(ApiError::AppNotFound)?;
    Ok(AppJson(app.into()))
}
