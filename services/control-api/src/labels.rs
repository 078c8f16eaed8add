//! The label catalog: sensitivity labels and the policy each carries. Anyone signed in may read
//! them (people choose one when they create a group); only callers with the role `label-admin`
//! create, change or delete them.

use crate::catalog_audit::{self, AuditContext};
use crate::error::ApiError;
use crate::extract::{LabelAdmin, LabelPath, RequestId};
use crate::model::Description;
use crate::store::{LabelApproval, LabelDelete, LabelInsert, LabelUpdate, PendingLabelChange};
use crate::AppState;
use auth::Caller;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use domain::{CountBucket, EntryRule, JoinPolicy, Label, LabelName, LabelPolicy, Subject};
use http::{header, StatusCode};
use serde::{Deserialize, Serialize};
use service_kit::db::now_ms;
use service_kit::{AppJson, Problem};
use tenant_api::ApplyRule;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

/// The role that may create, change and delete labels.
pub const LABEL_ADMIN: &str = "label-admin";

/// The label routes, documented.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_labels, create_label))
        .routes(routes!(get_label, update_label, delete_label))
        .routes(routes!(list_label_changes))
        .routes(routes!(approve_label_change))
        .routes(routes!(reject_label_change))
}

/// A label as it is after a change, with what applying its rule in the tenant ended.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LabelChanged {
    /// The label as it is now.
    #[serde(flatten)]
    pub label: Label,
    /// How many memberships the change ended (people the label now bars), as a bucket only:
    /// never who (INV-4). `<10` when none ended.
    pub memberships_ended: CountBucket,
}

/// A change to a label waiting for a second label-admin's approval.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LabelChangeView {
    /// The change's id: approve or reject it at `/control/v1/label-changes/{id}/…`.
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    /// The label it changes.
    #[schema(value_type = String)]
    pub label: LabelName,
    /// The description it proposes.
    pub description: String,
    /// The policy it proposes.
    pub policy: LabelPolicy,
    /// The policy when it was proposed (approval is refused if the label changed since).
    pub before: LabelPolicy,
    /// The label-admin who proposed it, who may not approve it.
    #[schema(value_type = String)]
    pub proposed_by: Subject,
    /// When it was proposed (RFC 3339).
    pub proposed_at: String,
}

impl LabelChangeView {
    fn of(c: &PendingLabelChange) -> Self {
        Self {
            id: c.id,
            label: c.proposed.name.clone(),
            description: c.proposed.description.clone(),
            policy: c.proposed.policy.clone(),
            before: c.before.policy.clone(),
            proposed_by: c.proposed_by.clone(),
            proposed_at: catalog_audit::rfc3339(c.proposed_at),
        }
    }
}

/// Applies `label`'s entry rule in the tenant to every group under it that is not archived;
/// answers the bucket of memberships it ended. Idempotent, so an admin whose change met an
/// unreachable tenant sends it again.
async fn apply_in_tenant(state: &AppState, label: &Label) -> Result<CountBucket, ApiError> {
    let groups = state.store.groups_under_label(&label.name).await?;
    let rule = EntryRule::of(&label.name, &label.policy);
    let mut ended = 0u64;
    let mut chunks: Vec<&[domain::GroupId]> = groups.chunks(RULE_GROUPS_A_CALL).collect();
    if chunks.is_empty() {
        chunks.push(&[]);
    }
    for chunk in chunks {
        let request = ApplyRule {
            rule: rule.clone(),
            groups: chunk.to_vec(),
        };
        let applied = state.tenant.apply_rule(&request).await.map_err(|e| {
            tracing::warn!(error = %e, label = %label.name, "the tenant did not apply a label's rule");
            ApiError::RuleNotApplied
        })?;
        ended += bucket_floor(applied.ended);
    }
    // Who may mail each group follows the label too (a group's own choice only narrows it).
    for group in state.store.lookup_groups(&groups).await? {
        if group.state != domain::GroupState::Active {
            continue;
        }
        crate::groups::push_mail_policy(state, &group)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, label = %label.name, "the tenant did not take a label's sender policy");
                ApiError::RuleNotApplied
            })?;
    }
    Ok(CountBucket::of(ended))
}

/// The answer to a label change that applied: the label, with its rule applied in the tenant.
async fn applied(state: &AppState, label: Label) -> Result<LabelChanged, ApiError> {
    let memberships_ended = apply_in_tenant(state, &label).await?;
    Ok(LabelChanged {
        label,
        memberships_ended,
    })
}

/// Groups named in one call to the tenant (its limit).
const RULE_GROUPS_A_CALL: usize = 10_000;

/// The least count a bucket stands for, to add up the buckets of several calls.
fn bucket_floor(b: CountBucket) -> u64 {
    match b {
        CountBucket::Under10 => 0,
        CountBucket::From10To49 => 10,
        CountBucket::From50To249 => 50,
        CountBucket::From250To999 => 250,
        CountBucket::From1000 => 1000,
    }
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
///
/// A change that loosens a label groups use (admitting guests or AI agents, allowing another
/// join policy, widening who may send) does not apply yet: it is filed for a second, distinct
/// label-admin's approval (202, `Location` names it; see `/control/v1/label-changes`). Anything
/// else applies at once (200). A tightening also ends, in the tenant and at once, every
/// membership the label now bars (guests or agents it no longer admits); the answer says how
/// many as a bucket only. If the tenant cannot be reached the label is saved and the answer is
/// 503: send the same change again.
#[utoipa::path(
    put,
    path = "/control/v1/labels/{name}",
    tag = "labels",
    params(("name" = String, Path, description = "The label's name.")),
    request_body = LabelChange,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Applied: the label as it is now, and how many memberships the change ended (a bucket).", body = LabelChanged),
        (status = 202, description = "The change loosens a label groups use: filed for a second label-admin's approval.", body = LabelChangeView),
        (status = 409, description = "The new policy drops a join policy that groups under this label use, or another change to the label is waiting for approval.", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", description = "`400` The body is not JSON. `401` No valid bearer token. `403` The caller lacks the role `label-admin`. `404` No label has this name. `413` The body is too large. `415` The body is not sent as application/json. `422` A field is missing, unknown or invalid.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The identity provider is not answering, or the label is saved but the tenant has not applied its rule yet (send the same change again).", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn update_label(
    State(state): State<AppState>,
    x_request_id: service_kit::RequestId,
    LabelAdmin(admin): LabelAdmin,
    RequestId(request_id): RequestId,
    LabelPath(name): LabelPath,
    AppJson(input): AppJson<LabelChange>,
) -> Result<Response, ApiError> {
    let state = state.for_request(&x_request_id);
    let label = checked(name, input.description, input.policy)?;
    let ctx = AuditContext::request(&admin.subject, request_id);
    match state
        .store
        .update_label(&label, &admin.subject, &ctx, now_ms())
        .await?
    {
        LabelUpdate::Updated(label) => {
            tracing::info!(admin = %admin.subject, label = %label.name, "label changed");
            Ok(AppJson(applied(&state, label).await?).into_response())
        }
        LabelUpdate::Proposed(change) => {
            tracing::info!(admin = %admin.subject, label = %label.name, "label change filed for approval");
            let location = format!("/control/v1/label-changes/{}", change.id);
            Ok((
                StatusCode::ACCEPTED,
                [(header::LOCATION, location)],
                AppJson(LabelChangeView::of(&change)),
            )
                .into_response())
        }
        LabelUpdate::ChangePending(id) => Err(ApiError::Conflict(format!(
            "a change to the label '{}' is waiting for approval (id {id}); approve or reject it first",
            label.name
        ))),
        LabelUpdate::NotFound => Err(ApiError::LabelNotFound(label.name.to_string())),
        LabelUpdate::JoinPoliciesInUse(used) => Err(join_policies_in_use(&label.name, &used)),
    }
}

fn join_policies_in_use(label: &LabelName, used: &[JoinPolicy]) -> ApiError {
    let used: Vec<&str> = used.iter().map(|p| p.as_str()).collect();
    ApiError::Conflict(format!(
        "groups under the label '{label}' use the join policy {}; change or archive them first",
        used.join(", ")
    ))
}

/// Lists the label changes waiting for a second label-admin's approval (role `label-admin`).
#[utoipa::path(
    get,
    path = "/control/v1/label-changes",
    tag = "labels",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The pending changes, oldest first.", body = Vec<LabelChangeView>),
        (status = "4XX", description = "`401` No valid bearer token. `403` The caller lacks the role `label-admin`.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_label_changes(
    State(state): State<AppState>,
    LabelAdmin(_admin): LabelAdmin,
) -> Result<AppJson<Vec<LabelChangeView>>, ApiError> {
    let changes = state.store.pending_label_changes().await?;
    Ok(AppJson(changes.iter().map(LabelChangeView::of).collect()))
}

/// Approves a pending label change (role `label-admin`, not the one who proposed it).
///
/// The change applies and its rule reaches the tenant. Refused (409, and the change is dropped)
/// when the label changed after the proposal: propose it again on the label as it is now.
#[utoipa::path(
    post,
    path = "/control/v1/label-changes/{id}/approve",
    tag = "labels",
    params(("id" = String, Path, format = Uuid, description = "The change's id.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Applied: the label as it is now.", body = LabelChanged),
        (status = 409, description = "The label changed after the proposal (the change is dropped), or groups use a join policy the change drops.", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", description = "`401` No valid bearer token. `403` The caller lacks the role `label-admin`, or proposed this change. `404` No change with this id is waiting. `422` The id is not a UUID.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The identity provider is not answering, or the label is saved but the tenant has not applied its rule yet (send a change of the label to itself to apply it).", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn approve_label_change(
    State(state): State<AppState>,
    x_request_id: service_kit::RequestId,
    LabelAdmin(admin): LabelAdmin,
    RequestId(request_id): RequestId,
    Path(id): Path<String>,
) -> Result<AppJson<LabelChanged>, ApiError> {
    let state = state.for_request(&x_request_id);
    let id = crate::extract::id_in_path(&id)?;
    let ctx = AuditContext::request(&admin.subject, request_id);
    match state
        .store
        .approve_label_change(id, &admin.subject, &ctx, now_ms())
        .await?
    {
        LabelApproval::Approved(label) => {
            tracing::info!(admin = %admin.subject, label = %label.name, "label change approved");
            Ok(AppJson(applied(&state, label).await?))
        }
        LabelApproval::NotFound => Err(ApiError::ChangeNotFound),
        LabelApproval::SameAdmin => Err(ApiError::SameAdmin),
        LabelApproval::Overtaken => Err(ApiError::Conflict(
            "the label changed after this change was proposed; the change is dropped: propose it \
             again on the label as it is now"
                .into(),
        )),
        LabelApproval::JoinPoliciesInUse(used) => {
            let label = state
                .store
                .pending_label_changes()
                .await?
                .into_iter()
                .find(|c| c.id == id)
                .map(|c| c.proposed.name);
            match label {
                Some(name) => Err(join_policies_in_use(&name, &used)),
                None => Err(ApiError::Conflict(
                    "groups use a join policy this change drops".into(),
                )),
            }
        }
    }
}

/// Rejects (or, for its proposer, withdraws) a pending label change (role `label-admin`).
#[utoipa::path(
    post,
    path = "/control/v1/label-changes/{id}/reject",
    tag = "labels",
    params(("id" = String, Path, format = Uuid, description = "The change's id.")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The change is dropped; the label is as it was."),
        (status = "4XX", description = "`401` No valid bearer token. `403` The caller lacks the role `label-admin`. `404` No change with this id is waiting. `422` The id is not a UUID.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn reject_label_change(
    State(state): State<AppState>,
    LabelAdmin(admin): LabelAdmin,
    RequestId(request_id): RequestId,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = crate::extract::id_in_path(&id)?;
    let ctx = AuditContext::request(&admin.subject, request_id);
    if state
        .store
        .reject_label_change(id, &admin.subject, &ctx, now_ms())
        .await?
    {
        tracing::info!(admin = %admin.subject, "label change rejected");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::ChangeNotFound)
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
            "the label '{name}' is used by groups (archived ones included) or by apps' \
             resources and cannot be deleted"
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
