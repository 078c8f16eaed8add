//! The label catalog: sensitivity labels and the policy each carries. Anyone signed in may read
//! them (people choose one when they create a group); only callers with the role `label-admin`
//! create, change or delete them.

use crate::catalog_audit::AuditContext;
use crate::error::ApiError;
use crate::extract::{LabelAdmin, LabelPath, RequestId};
use crate::model::Description;
use crate::store::{LabelDelete, LabelInsert, LabelUpdate};
use crate::AppState;
use auth::Caller;
use axum::extract::State;
use axum::response::IntoResponse;
use domain::{Label, LabelName, LabelPolicy};
use http::{header, StatusCode};
use serde::Deserialize;
use service_kit::db::now_ms;
use service_kit::{AppJson, Problem};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

/// The role that may create, change and delete labels.
pub const LABEL_ADMIN: &str = "label-admin";

/// The label routes, documented.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_labels, create_label))
        .routes(routes!(get_label, update_label, delete_label))
}

/// A new label.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLabel {
    /// Unique name (ignoring case): letters, digits, spaces, `-` and `_`, at most 64.
    #[schema(example = "Staff Only")]
    pub name: LabelName,
    /// Plain-language explanation shown to people choosing a label; at most 2000 characters.
    #[serde(default)]
    pub description: Description,
    /// What the label allows.
    pub policy: LabelPolicy,
}

/// A label's new description and policy. The name is the label's identity and cannot change.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelChange {
    /// Plain-language explanation; at most 2000 characters.
    #[serde(default)]
    pub description: Description,
    /// What the label allows from now on. Dropping a join policy that a group under this
    /// label uses is refused (409) until those groups change or are archived.
    pub policy: LabelPolicy,
}

fn checked(
    name: LabelName,
    description: Description,
    policy: LabelPolicy,
) -> Result<Label, ApiError> {
    policy.validate()?;
    Ok(Label {
        name,
        description: description.into_inner(),
        policy,
    })
}

/// `s` percent-encoded for use as one path segment (label names may hold spaces and any
/// letter).
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Lists every label, by name.
#[utoipa::path(
    get,
    path = "/control/v1/labels",
    tag = "labels",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every label with its policy, by name.", body = Vec<Label>),
        (status = "4XX", description = "`401` No valid bearer token.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_labels(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<AppJson<Vec<Label>>, ApiError> {
    Ok(AppJson(state.store.list_labels().await?))
}

/// Reads one label.
#[utoipa::path(
    get,
    path = "/control/v1/labels/{name}",
    tag = "labels",
    params(("name" = String, Path, description = "The label's name.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The label.", body = Label),
        (status = "4XX", description = "`401` No valid bearer token. `404` No label has this name. `422` The name is not a valid label name.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_label(
    State(state): State<AppState>,
    _caller: Caller,
    LabelPath(name): LabelPath,
) -> Result<AppJson<Label>, ApiError> {
    state
        .store
        .get_label(&name)
        .await?
        .map(AppJson)
        .ok_or_else(|| ApiError::LabelNotFound(name.to_string()))
}

/// Creates a label (role `label-admin`).
#[utoipa::path(
    post,
    path = "/control/v1/labels",
    tag = "labels",
    request_body = NewLabel,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created; `Location` names it.", body = Label),
        (status = 409, description = "A label with this name (ignoring case) exists.", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", description = "`400` The body is not JSON. `401` No valid bearer token. `403` The caller lacks the role `label-admin`. `413` The body is too large. `415` The body is not sent as application/json. `422` A field is missing, unknown or invalid (e.g. a policy without a join policy).", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn create_label(
    State(state): State<AppState>,
    LabelAdmin(admin): LabelAdmin,
    RequestId(request_id): RequestId,
    AppJson(input): AppJson<NewLabel>,
) -> Result<impl IntoResponse, ApiError> {
    let label = checked(input.name, input.description, input.policy)?;
    let ctx = AuditContext::request(&admin.subject, request_id);
    match state.store.insert_label(&label, &ctx, now_ms()).await? {
        LabelInsert::Created => {
            tracing::info!(admin = %admin.subject, label = %label.name, "label created");
        }
        LabelInsert::NameTaken => {
            return Err(ApiError::Conflict(format!(
                "a label named '{}' exists (names are compared ignoring case)",
                label.name
            )))
        }
    }
    let location = format!("/control/v1/labels/{}", path_segment(label.name.as_str()));
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        AppJson(label),
    ))
}

/// Replaces a label's description and policy (role `label-admin`).
#[utoipa::path(
    put,
    path = "/control/v1/labels/{name}",
    tag = "labels",
    params(("name" = String, Path, description = "The label's name.")),
    request_body = LabelChange,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The label as it is now.", body = Label),
        (status = 409, description = "The new policy drops a join policy that groups under this label use.", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", description = "`400` The body is not JSON. `401` No valid bearer token. `403` The caller lacks the role `label-admin`. `404` No label has this name. `413` The body is too large. `415` The body is not sent as application/json. `422` A field is missing, unknown or invalid.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn update_label(
    State(state): State<AppState>,
    LabelAdmin(admin): LabelAdmin,
    RequestId(request_id): RequestId,
    LabelPath(name): LabelPath,
    AppJson(input): AppJson<LabelChange>,
) -> Result<AppJson<Label>, ApiError> {
    let label = checked(name, input.description, input.policy)?;
    let ctx = AuditContext::request(&admin.subject, request_id);
    match state.store.update_label(&label, &ctx, now_ms()).await? {
        LabelUpdate::Updated(label) => {
            tracing::info!(admin = %admin.subject, label = %label.name, "label changed");
            Ok(AppJson(label))
        }
        LabelUpdate::NotFound => Err(ApiError::LabelNotFound(label.name.to_string())),
        LabelUpdate::JoinPoliciesInUse(used) => {
            let used: Vec<&str> = used.iter().map(|p| p.as_str()).collect();
            Err(ApiError::Conflict(format!(
                "groups under the label '{}' use the join policy {}; change or archive them first",
                label.name,
                used.join(", ")
            )))
        }
    }
}

/// Deletes a label no group uses (role `label-admin`).
#[utoipa::path(
    delete,
    path = "/control/v1/labels/{name}",
    tag = "labels",
    params(("name" = String, Path, description = "The label's name.")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted."),
        (status = 409, description = "A group (archived ones included) uses the label.", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", description = "`401` No valid bearer token. `403` The caller lacks the role `label-admin`. `404` No label has this name. `422` The name is not a valid label name.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn delete_label(
    State(state): State<AppState>,
    LabelAdmin(admin): LabelAdmin,
    RequestId(request_id): RequestId,
    LabelPath(name): LabelPath,
) -> Result<StatusCode, ApiError> {
    let ctx = AuditContext::request(&admin.subject, request_id);
    match state.store.delete_label(&name, &ctx).await? {
        LabelDelete::Deleted => {
            tracing::info!(admin = %admin.subject, label = %name, "label deleted");
            Ok(StatusCode::NO_CONTENT)
        }
        LabelDelete::NotFound => Err(ApiError::LabelNotFound(name.to_string())),
        LabelDelete::InUse => Err(ApiError::Conflict(format!(
            "the label '{name}' is used by groups (archived ones included) and cannot be deleted"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_names_become_path_segments() {
        assert_eq!(path_segment("Highly Confidential"), "Highly%20Confidential");
        assert_eq!(path_segment("Équipe_A-1"), "%C3%89quipe_A-1");
    }
}
