//! Apps that check access with Hush (relying parties), the resources they protect, and the
//! groups bound to guard each one.
//!
//! An operator (role `operator`: the people who run Hush for the company, who already offboard
//! identities) registers an app with its name and audience and gets its credential back once;
//! only the credential's SHA-256 is kept. The operator adds the app's resources, each under a
//! sensitivity label. A group's owners then bind the group to a resource, and the group guards
//! it — but only when the group's label ranks at least as high as the resource's
//! ([`domain::may_bind`]); otherwise the binding is refused (409 `binding-refused`) with the
//! reason, and nothing is written. Every change is in the catalog's audit. No answer here names
//! a member: apps learn about a person only from membership-api, when that person presents
//! their own token.

use crate::catalog_audit::{self, AuditContext};
use crate::error::ApiError;
use crate::extract::{id_in_path, Operator, RequestId};
use crate::groups::visible_group;
use crate::store::apps::{
    AppInsert, AppKey, Bind, BindingRecord, NewApp, RelyingParty, ResourceInsert, ResourceListing,
    ResourceRecord, Unbind, MAX_GROUPS_PER_RESOURCE, MAX_RELYING_PARTIES, MAX_RESOURCES_PER_APP,
};
use crate::AppState;
use auth::Caller;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use domain::{GroupId, Label, LabelName};
use http::{header, StatusCode};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use service_kit::db::now_ms;
use service_kit::{AppJson, Problem};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

/// Longest app name, in characters.
pub const MAX_APP_NAME: usize = 120;
/// Longest audience, in characters.
pub const MAX_AUDIENCE: usize = 255;
/// Longest resource name, in characters.
pub const MAX_RESOURCE_NAME: usize = 64;

/// The routes, documented.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_apps, register_app))
        .routes(routes!(get_app, update_app))
        .routes(routes!(rotate_credential))
        .routes(routes!(add_resource))
        .routes(routes!(remove_resource))
        .routes(routes!(list_resources))
        .routes(routes!(list_bindings))
        .routes(routes!(bind, unbind))
}

/// A new credential: 32 random bytes, base64url without padding (43 characters), and the
/// SHA-256 of that text (its UTF-8 bytes), lower-case hex — what is stored and what a
/// presented credential is compared with.
pub fn new_credential() -> (String, String) {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let credential = URL_SAFE_NO_PAD.encode(raw);
    let hash = credential_sha256(&credential);
    (credential, hash)
}

/// SHA-256 of a credential's text, lower-case hex.
pub fn credential_sha256(credential: &str) -> String {
    hex::encode(Sha256::digest(credential.as_bytes()))
}

/// An app's display name: 1 to 120 characters, not blank, no control characters.
fn app_name(raw: &str) -> Result<String, ApiError> {
    let n = raw.chars().count();
    if raw.trim().is_empty() || n > MAX_APP_NAME || raw.chars().any(char::is_control) {
        return Err(ApiError::Invalid(format!(
            "name: 1 to {MAX_APP_NAME} characters, not blank, without control characters"
        )));
    }
    Ok(raw.to_string())
}

/// An audience: 1 to 255 visible ASCII characters (a URL or a name), no spaces.
fn audience(raw: &str) -> Result<String, ApiError> {
    if raw.is_empty() || raw.len() > MAX_AUDIENCE || !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::Invalid(format!(
            "audience: 1 to {MAX_AUDIENCE} visible ASCII characters, without spaces"
        )));
    }
    Ok(raw.to_string())
}

/// A resource's name: 1 to 64 of `a-z`, `0-9`, `.`, `_`, `-`, starting with a letter or digit
/// (what the app checks, so it is written one way only).
fn resource_name(raw: &str) -> Result<String, ApiError> {
    let ok = !raw.is_empty()
        && raw.len() <= MAX_RESOURCE_NAME
        && raw
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && raw.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
    if !ok {
        return Err(ApiError::Invalid(format!(
            "name: 1 to {MAX_RESOURCE_NAME} of a-z, 0-9, '.', '_' and '-', starting with a \
             letter or digit"
        )));
    }
    Ok(raw.to_string())
}

/// An app to register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAppRequest {
    /// Display name, 1 to 120 characters.
    #[schema(example = "Payroll")]
    pub name: String,
    /// The `aud` of every decision and assertion Hush signs for the app: 1 to 255 visible
    /// ASCII characters, unique among apps.
    #[schema(example = "https://payroll.example")]
    pub audience: String,
}

/// A change to an app.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppChange {
    /// Whether the app gets decisions; a disabled app gets none.
    pub enabled: bool,
}

/// A resource to add.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewResourceRequest {
    /// Its name, unique within the app: 1 to 64 of `a-z`, `0-9`, `.`, `_`, `-`.
    #[schema(example = "payroll-report")]
    pub name: String,
    /// Its sensitivity label: only groups whose label ranks at least as high may guard it.
    #[schema(value_type = String, example = "Highly Confidential")]
    pub label: LabelName,
}

/// A resource, as operators see it: never which groups guard it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ResourceView {
    /// Its id.
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// Its label.
    #[schema(value_type = String)]
    pub label: LabelName,
    /// Its label's rank now.
    pub rank: u16,
}

impl ResourceView {
    fn of(r: &ResourceRecord) -> Self {
        Self {
            id: r.id,
            name: r.name.clone(),
            label: r.label.name.clone(),
            rank: r.label.policy.rank,
        }
    }
}

/// An app, as operators see it: never its credential, nor the credential's hash.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AppView {
    /// Its id: the `client_id` it authenticates with.
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// Audience.
    pub audience: String,
    /// Whether it gets decisions.
    pub enabled: bool,
    /// When it was registered (RFC 3339).
    pub created_at: String,
    /// Its resources, by name.
    pub resources: Vec<ResourceView>,
}

impl AppView {
    fn of(a: &RelyingParty) -> Self {
        Self {
            id: a.id,
            name: a.name.clone(),
            audience: a.audience.clone(),
            enabled: a.enabled,
            created_at: catalog_audit::rfc3339(a.created_at),
            resources: a.resources.iter().map(ResourceView::of).collect(),
        }
    }
}

/// An app just registered, with its credential: shown this once, stored nowhere.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AppRegistered {
    /// The app.
    #[serde(flatten)]
    pub app: AppView,
    /// Its credential (43 characters, base64url): give it to the app now; Hush keeps only its
    /// SHA-256 and cannot show it again (rotate it to get a new one).
    pub credential: String,
}

/// A new credential for an app: shown this once, stored nowhere.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CredentialIssued {
    /// The app.
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    /// Its new credential; the old one stops working now.
    pub credential: String,
}

/// A resource, as owners choose one to bind.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ResourceChoice {
    /// The resource's id: bind a group to it at `PUT /control/v1/groups/{id}/bindings/{resource_id}`.
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// Its app's id.
    #[schema(value_type = String, format = Uuid)]
    pub app_id: Uuid,
    /// Its app's name.
    pub app_name: String,
    /// Its label now: a group may guard it only when the group's label ranks at least as high.
    pub label: Label,
}

impl ResourceChoice {
    fn of(r: ResourceListing) -> Self {
        Self {
            id: r.id,
            name: r.name,
            app_id: r.app_id,
            app_name: r.app_name,
            label: r.label,
        }
    }
}

/// A resource a group guards.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BindingView {
    /// The resource.
    #[serde(flatten)]
    pub resource: ResourceChoice,
    /// When the group was bound to it (RFC 3339).
    pub bound_at: String,
}

impl BindingView {
    fn of(b: BindingRecord) -> Self {
        Self {
            resource: ResourceChoice::of(b.resource),
            bound_at: catalog_audit::rfc3339(b.bound_at),
        }
    }
}

async fn app_by_id(state: &AppState, id: Uuid) -> Result<RelyingParty, ApiError> {
    state
        .store
        .get_app(&AppKey::Id(id))
        .await?
        .ok_or(ApiError::AppNotFound)
}

/// Registers an app (role `operator`); answers its credential, once.
#[utoipa::path(
    post,
    path = "/control/v1/relying-parties",
    tag = "apps",
    request_body = NewAppRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Registered, enabled, without resources; `credential` is shown this once. `Location` names the app.", body = AppRegistered),
        (status = 409, description = "Another app has this audience, or 500 apps are registered.", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", description = "`400` The body is not JSON. `401` No valid bearer token. `403` The caller lacks the role `operator`. `413` The body is too large. `415` The body is not sent as application/json. `422` A field is missing, unknown or invalid.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn register_app(
    State(state): State<AppState>,
    Operator(operator): Operator,
    RequestId(request_id): RequestId,
    AppJson(input): AppJson<NewAppRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let (credential, credential_sha256) = new_credential();
    let app = NewApp {
        id: Uuid::new_v4(),
        name: app_name(&input.name)?,
        audience: audience(&input.audience)?,
        credential_sha256,
    };
    let ctx = AuditContext::request(&operator.subject, request_id);
    match state.store.insert_app(&app, &ctx, now_ms()).await? {
        AppInsert::Created(record) => Ok((
            StatusCode::CREATED,
            [(
                header::LOCATION,
                format!("/control/v1/relying-parties/{}", record.id),
            )],
            AppJson(AppRegistered {
                app: AppView::of(&record),
                credential,
            }),
        )),
        AppInsert::AudienceTaken => Err(ApiError::Conflict(format!(
            "another app has the audience '{}'",
            app.audience
        ))),
        AppInsert::TooMany => Err(ApiError::Conflict(format!(
            "at most {MAX_RELYING_PARTIES} apps may be registered"
        ))),
    }
}

/// Lists the apps (role `operator`), by name.
#[utoipa::path(
    get,
    path = "/control/v1/relying-parties",
    tag = "apps",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every app (at most 500), without credentials.", body = Vec<AppView>),
        (status = "4XX", description = "`401` No valid bearer token. `403` The caller lacks the role `operator`.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_apps(
    State(state): State<AppState>,
    _operator: Operator,
) -> Result<AppJson<Vec<AppView>>, ApiError> {
    let apps = state.store.list_apps().await?;
    Ok(AppJson(apps.iter().map(AppView::of).collect()))
}

/// Reads an app (role `operator`).
#[utoipa::path(
    get,
    path = "/control/v1/relying-parties/{id}",
    tag = "apps",
    params(("id" = String, Path, format = Uuid, description = "The app's id.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The app, without its credential.", body = AppView),
        (status = "4XX", description = "`401` No valid bearer token. `403` The caller lacks the role `operator`. `404` No app with this id. `422` The id is not a UUID.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_app(
    State(state): State<AppState>,
    _operator: Operator,
    Path(id): Path<String>,
) -> Result<AppJson<AppView>, ApiError> {
    let id = id_in_path(&id)?;
    Ok(AppJson(AppView::of(&app_by_id(&state, id).await?)))
}

/// Enables or disables an app (role `operator`). A disabled app gets no decisions.
#[utoipa::path(
    patch,
    path = "/control/v1/relying-parties/{id}",
    tag = "apps",
    params(("id" = String, Path, format = Uuid, description = "The app's id.")),
    request_body = AppChange,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The app as it is now.", body = AppView),
        (status = "4XX", description = "`400` The body is not JSON. `401` No valid bearer token. `403` The caller lacks the role `operator`. `404` No app with this id. `415` The body is not sent as application/json. `422` The id is not a UUID, or a field is missing, unknown or invalid.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn update_app(
    State(state): State<AppState>,
    Operator(operator): Operator,
    RequestId(request_id): RequestId,
    Path(id): Path<String>,
    AppJson(input): AppJson<AppChange>,
) -> Result<AppJson<AppView>, ApiError> {
    let id = id_in_path(&id)?;
    let ctx = AuditContext::request(&operator.subject, request_id);
    let app = state
        .store
        .set_app_enabled(id, input.enabled, &ctx, now_ms())
        .await?
        .ok_or(ApiError::AppNotFound)?;
    Ok(AppJson(AppView::of(&app)))
}

/// Gives an app a new credential (role `operator`), shown once; the old one stops working.
#[utoipa::path(
    post,
    path = "/control/v1/relying-parties/{id}/credential",
    tag = "apps",
    params(("id" = String, Path, format = Uuid, description = "The app's id.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The new credential, shown this once.", body = CredentialIssued),
        (status = "4XX", description = "`401` No valid bearer token. `403` The caller lacks the role `operator`. `404` No app with this id. `422` The id is not a UUID.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn rotate_credential(
    State(state): State<AppState>,
    Operator(operator): Operator,
    RequestId(request_id): RequestId,
    Path(id): Path<String>,
) -> Result<AppJson<CredentialIssued>, ApiError> {
    let id = id_in_path(&id)?;
    let (credential, hash) = new_credential();
    let ctx = AuditContext::request(&operator.subject, request_id);
    if !state
        .store
        .rotate_credential(id, &hash, &ctx, now_ms())
        .await?
    {
        return Err(ApiError::AppNotFound);
    }
    Ok(AppJson(CredentialIssued { id, credential }))
}

/// Adds a resource to an app, under a label (role `operator`).
#[utoipa::path(
    post,
    path = "/control/v1/relying-parties/{id}/resources",
    tag = "apps",
    params(("id" = String, Path, format = Uuid, description = "The app's id.")),
    request_body = NewResourceRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Added, guarded by no group yet.", body = ResourceView),
        (status = 409, description = "The app has a resource with this name, or has 100 resources.", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", description = "`400` The body is not JSON. `401` No valid bearer token. `403` The caller lacks the role `operator`. `404` No app with this id. `413` The body is too large. `415` The body is not sent as application/json. `422` The id is not a UUID, a field is missing, unknown or invalid, or no label has this name.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn add_resource(
    State(state): State<AppState>,
    Operator(operator): Operator,
    RequestId(request_id): RequestId,
    Path(id): Path<String>,
    AppJson(input): AppJson<NewResourceRequest>,
) -> Result<(StatusCode, AppJson<ResourceView>), ApiError> {
    let app = id_in_path(&id)?;
    let name = resource_name(&input.name)?;
    let ctx = AuditContext::request(&operator.subject, request_id);
    match state
        .store
        .insert_resource(
            app,
            Uuid::new_v4(),
            &name,
            input.label.as_str(),
            &ctx,
            now_ms(),
        )
        .await?
    {
        ResourceInsert::Created(r) => Ok((StatusCode::CREATED, AppJson(ResourceView::of(&r)))),
        ResourceInsert::NoSuchApp => Err(ApiError::AppNotFound),
        ResourceInsert::NoSuchLabel => Err(ApiError::UnknownLabel(input.label.to_string())),
        ResourceInsert::NameTaken => Err(ApiError::Conflict(format!(
            "the app has a resource named '{name}'"
        ))),
        ResourceInsert::TooMany => Err(ApiError::Conflict(format!(
            "an app may have at most {MAX_RESOURCES_PER_APP} resources"
        ))),
    }
}

/// Removes a resource from an app, and every group's binding to it (role `operator`).
#[utoipa::path(
    delete,
    path = "/control/v1/relying-parties/{id}/resources/{resource_id}",
    tag = "apps",
    params(
        ("id" = String, Path, format = Uuid, description = "The app's id."),
        ("resource_id" = String, Path, format = Uuid, description = "The resource's id."),
    ),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Removed."),
        (status = "4XX", description = "`401` No valid bearer token. `403` The caller lacks the role `operator`. `404` The app has no resource with this id. `422` An id is not a UUID.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn remove_resource(
    State(state): State<AppState>,
    Operator(operator): Operator,
    RequestId(request_id): RequestId,
    Path((id, resource)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (app, resource) = (id_in_path(&id)?, id_in_path(&resource)?);
    let ctx = AuditContext::request(&operator.subject, request_id);
    if state
        .store
        .delete_resource(app, resource, &ctx, now_ms())
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::ResourceNotFound)
    }
}

/// Lists every app's resources, for owners choosing what their group should guard (anyone
/// signed in). Which groups guard them is not shown.
#[utoipa::path(
    get,
    path = "/control/v1/resources",
    tag = "apps",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every resource, by app name then resource name.", body = Vec<ResourceChoice>),
        (status = "4XX", description = "`401` No valid bearer token.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_resources(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<AppJson<Vec<ResourceChoice>>, ApiError> {
    let resources = state.store.list_resources().await?;
    Ok(AppJson(
        resources.into_iter().map(ResourceChoice::of).collect(),
    ))
}

/// The group and resource ids in a binding's path.
fn binding_path(group: &str, resource: &str) -> Result<(GroupId, Uuid), ApiError> {
    let group = GroupId::parse(group)
        .map_err(|_| ApiError::Invalid("invalid group id: must be a UUID".into()))?;
    Ok((group, id_in_path(resource)?))
}

/// The group, if the caller owns it: 404 when they may not see it, 403 when they may but do
/// not own it (as for every owner's write).
async fn owned(state: &AppState, id: GroupId, caller: &Caller) -> Result<(), ApiError> {
    let group = visible_group(state, id, caller).await?;
    if !group.is_owner(caller) {
        return Err(ApiError::NotOwner);
    }
    Ok(())
}

/// Lists the resources a group guards (owners only).
#[utoipa::path(
    get,
    path = "/control/v1/groups/{id}/bindings",
    tag = "groups",
    params(("id" = String, Path, format = Uuid, description = "The group's id.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The resources the group guards, by app name then resource name.", body = Vec<BindingView>),
        (status = "4XX", description = "`401` No valid bearer token. `403` `not-owner`: the caller is not one of the group's owners. `404` No group with this id that the caller may see. `422` The id is not a UUID.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_bindings(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<AppJson<Vec<BindingView>>, ApiError> {
    let id = GroupId::parse(&id)
        .map_err(|_| ApiError::Invalid("invalid group id: must be a UUID".into()))?;
    owned(&state, id, &caller).await?;
    let bindings = state.store.group_bindings(id).await?;
    Ok(AppJson(bindings.into_iter().map(BindingView::of).collect()))
}

/// Binds a group to a resource, so the group guards it (owners only).
///
/// Refused with 409 `urn:hush:problem:binding-refused`, and nothing written, when the group's
/// label ranks below the resource's: a resource may only be given to a group whose label is at
/// least as sensitive. Binding again changes nothing.
#[utoipa::path(
    put,
    path = "/control/v1/groups/{id}/bindings/{resource_id}",
    tag = "groups",
    params(
        ("id" = String, Path, format = Uuid, description = "The group's id."),
        ("resource_id" = String, Path, format = Uuid, description = "The resource's id."),
    ),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Bound: the group guards the resource now.", body = BindingView),
        (status = 200, description = "The group already guarded the resource.", body = BindingView),
        (status = 409, description = "`urn:hush:problem:binding-refused`: the group's label ranks below the resource's (the detail says both); or the group is being archived or is archived; or 50 groups guard the resource already.", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", description = "`401` No valid bearer token. `403` `not-owner`: the caller is not one of the group's owners. `404` No group with this id that the caller may see, or no resource with this id. `422` An id is not a UUID.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn bind(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(request_id): RequestId,
    Path((id, resource)): Path<(String, String)>,
) -> Result<(StatusCode, AppJson<BindingView>), ApiError> {
    let (id, resource) = binding_path(&id, &resource)?;
    owned(&state, id, &caller).await?;
    let ctx = AuditContext::request(&caller.subject, request_id);
    match state
        .store
        .bind(id, resource, &caller.subject, &ctx, now_ms())
        .await?
    {
        Bind::Bound { binding, new } => {
            let status = if new {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok((status, AppJson(BindingView::of(binding))))
        }
        Bind::NoSuchGroup => Err(ApiError::GroupNotFound),
        Bind::NotOwner => Err(ApiError::NotOwner),
        Bind::NotEditable(s) => Err(ApiError::NotEditable(s)),
        Bind::NoSuchResource => Err(ApiError::ResourceNotFound),
        Bind::Refused(refusal) => Err(ApiError::BindingRefused(refusal)),
        Bind::TooMany => Err(ApiError::Conflict(format!(
            "at most {MAX_GROUPS_PER_RESOURCE} groups may guard one resource"
        ))),
    }
}

/// Unbinds a group from a resource: the group no longer guards it (owners only).
#[utoipa::path(
    delete,
    path = "/control/v1/groups/{id}/bindings/{resource_id}",
    tag = "groups",
    params(
        ("id" = String, Path, format = Uuid, description = "The group's id."),
        ("resource_id" = String, Path, format = Uuid, description = "The resource's id."),
    ),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Unbound."),
        (status = "4XX", description = "`401` No valid bearer token. `403` `not-owner`: the caller is not one of the group's owners. `404` No group with this id that the caller may see, or the group does not guard this resource. `422` An id is not a UUID.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn unbind(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(request_id): RequestId,
    Path((id, resource)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (id, resource) = binding_path(&id, &resource)?;
    owned(&state, id, &caller).await?;
    let ctx = AuditContext::request(&caller.subject, request_id);
    match state
        .store
        .unbind(id, resource, &caller.subject, &ctx, now_ms())
        .await?
    {
        Unbind::Unbound => Ok(StatusCode::NO_CONTENT),
        Unbind::NotBound => Err(ApiError::BindingNotFound),
        Unbind::NoSuchGroup => Err(ApiError::GroupNotFound),
        Unbind::NotOwner => Err(ApiError::NotOwner),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_is_32_random_bytes_in_base64url_and_its_hash_is_hex_sha256() {
        let (a, ha) = new_credential();
        let (b, _) = new_credential();
        assert_eq!(a.len(), 43);
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 32);
        assert_ne!(a, b);
        assert_eq!(ha, credential_sha256(&a));
        assert_eq!(ha.len(), 64);
        assert!(ha
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
    }

    #[test]
    fn names_and_audiences_are_bounded() {
        assert!(app_name("Payroll").is_ok());
        assert!(app_name(" ").is_err());
        assert!(app_name(&"x".repeat(MAX_APP_NAME + 1)).is_err());
        assert!(app_name("a\u{7}b").is_err());
        assert!(audience("https://payroll.example").is_ok());
        assert!(audience("has space").is_err());
        assert!(audience("").is_err());
        assert!(audience(&"a".repeat(MAX_AUDIENCE + 1)).is_err());
        assert!(resource_name("payroll-report.v2").is_ok());
        for bad in ["", "-x", "Upper", "a b", &"a".repeat(MAX_RESOURCE_NAME + 1)] {
            assert!(resource_name(bad).is_err(), "{bad}");
        }
    }
}
