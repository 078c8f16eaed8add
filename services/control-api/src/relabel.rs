//! Re-labelling a group: moving it to another sensitivity label.
//!
//! A group's owners, or a label-admin, may move a group to a label **as strict as its own or
//! stricter** at once: the tenant applies the new label's entry rule to the group in the same
//! request, ending every membership it bars (guests or AI agents the new label does not admit),
//! and the answer tells how many only as a bucket (INV-4). A move to a **looser** label (one that
//! admits guests or agents the old one barred, allows another join policy, or widens who may
//! send: [`domain::LabelPolicy::loosens`]) is filed for a label-admin's approval, someone other
//! than its proposer, as label changes are. Every step is in the catalog's audit.

use crate::catalog_audit::{self, AuditContext};
use crate::error::ApiError;
use crate::extract::{id_in_path, GroupPath, LabelAdmin, RequestId};
use crate::labels::LABEL_ADMIN;
use crate::model::GroupRecord;
use crate::store::{PendingRelabel, Relabel, RelabelApproval};
use crate::AppState;
use auth::Caller;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use domain::{CountBucket, EntryRule, GroupId, GroupName, LabelName, LabelPolicy, Subject};
use http::{header, StatusCode};
use serde::{Deserialize, Serialize};
use service_kit::db::now_ms;
use service_kit::{AppJson, Problem};
use tenant_api::ApplyRule;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

/// The re-labelling routes, documented.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(relabel_group))
        .routes(routes!(list_relabels))
        .routes(routes!(approve_relabel))
        .routes(routes!(reject_relabel))
}

/// The label to move a group to.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RelabelRequest {
    /// The name of an existing label.
    #[schema(value_type = String, example = "Highly Confidential")]
    pub label: LabelName,
}

/// A group as it is after a re-labelling that applied.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GroupRelabeled {
    /// The group.
    pub id: GroupId,
    /// Its label now.
    #[schema(value_type = String)]
    pub label: LabelName,
    /// How many memberships the move ended (people the new label bars), as a bucket only:
    /// never who (INV-4). `<10` when none ended.
    pub memberships_ended: CountBucket,
}

/// A move of a group to a looser label, waiting for a label-admin's approval.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RelabelView {
    /// Its id: approve or reject it at `/control/v1/relabels/{id}/…`.
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    /// The group.
    pub group: GroupId,
    /// The group's name.
    #[schema(value_type = String)]
    pub group_name: GroupName,
    /// The group's label when the move was proposed.
    #[schema(value_type = String)]
    pub from: LabelName,
    /// The label proposed.
    #[schema(value_type = String)]
    pub to: LabelName,
    /// The proposed label's policy when proposed (approval is refused if it changed since).
    pub to_policy: LabelPolicy,
    /// Who proposed it (an owner or a label-admin), who may not approve it.
    #[schema(value_type = String)]
    pub proposed_by: Subject,
    /// When it was proposed (RFC 3339).
    pub proposed_at: String,
}

impl RelabelView {
    fn of(c: &PendingRelabel) -> Self {
        Self {
            id: c.id,
            group: c.group,
            group_name: c.group_name.clone(),
            from: c.from.clone(),
            to: c.to.name.clone(),
            to_policy: c.to.policy.clone(),
            proposed_by: c.proposed_by.clone(),
            proposed_at: catalog_audit::rfc3339(c.proposed_at),
        }
    }
}

/// Applies the group's label in the tenant: its entry rule (ending the memberships it bars,
/// counted as a bucket) and its sender policy. Both calls are idempotent, so a caller whose
/// move met an unreachable tenant sends the same move again.
async fn apply_in_tenant(state: &AppState, group: &GroupRecord) -> Result<CountBucket, ApiError> {
    let rule = EntryRule::of(&group.label.name, &group.label.policy);
    let unapplied = |e: tenant_client::TenantError| {
        tracing::warn!(error = %e, "the tenant did not apply a group's new label");
        ApiError::RuleNotApplied
    };
    let applied = state
        .tenant
        .apply_rule(&ApplyRule {
            rule: rule.clone(),
            groups: vec![group.id],
        })
        .await
        .map_err(unapplied)?;
    crate::groups::push_mail_policy(state, group)
        .await
        .map_err(unapplied)?;
    Ok(applied.ended)
}

/// The answer to a move that applied.
async fn applied(state: &AppState, group: GroupRecord) -> Result<GroupRelabeled, ApiError> {
    let memberships_ended = apply_in_tenant(state, &group).await?;
    Ok(GroupRelabeled {
        id: group.id,
        label: group.label.name,
        memberships_ended,
    })
}

/// Moves a group to another label (the group's owners, or a label-admin).
///
/// To a label as strict as the group's or stricter: applied at once (200), and the tenant ends
/// every membership the new label bars; the answer gives how many as a bucket only. To a looser
/// label: filed for a label-admin's approval (202, `Location` names it), someone other than the
/// proposer. Moving to the group's own label again re-applies it in the tenant, which is what
/// to do after a 503. Only active groups move.
#[utoipa::path(
    put,
    path = "/control/v1/groups/{id}/label",
    tag = "groups",
    params(("id" = String, Path, format = Uuid, description = "The group's id.")),
    request_body = RelabelRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Applied: the group's label now, and how many memberships the move ended (a bucket).", body = GroupRelabeled),
        (status = 202, description = "The label is looser: filed for a label-admin's approval.", body = RelabelView),
        (status = 409, description = "The group is not active, or a move of it to a looser label is already waiting for approval, or `urn:hush:problem:binding-refused`: the group guards a resource the label ranks below (unbind it first).", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", description = "`400` The body is not JSON. `401` No valid bearer token. `403` `not-owner`: the caller neither owns the group nor has the role `label-admin`. `404` No group with this id that the caller may see. `413` The body is too large. `415` The body is not sent as application/json. `422` A field is missing, unknown or invalid; no label has this name; or `urn:hush:problem:join-policy`: the label does not allow the group's join policy.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The identity provider is not answering, or the label is saved but the tenant has not applied it yet (send the same move again).", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn relabel_group(
    State(state): State<AppState>,
    x_request_id: service_kit::RequestId,
    caller: Caller,
    RequestId(request_id): RequestId,
    GroupPath(id): GroupPath,
    AppJson(input): AppJson<RelabelRequest>,
) -> Result<Response, ApiError> {
    let state = state.for_request(&x_request_id);
    let admin = caller.has_role(LABEL_ADMIN);
    let group = state
        .store
        .get_group(id)
        .await?
        .filter(|g| admin || g.visible_to(&caller))
        .ok_or(ApiError::GroupNotFound)?;
    if !admin && !group.is_owner(&caller) {
        return Err(ApiError::NotOwner);
    }
    let ctx = AuditContext::request(&caller.subject, request_id);
    match state
        .store
        .relabel_group(id, &input.label, &caller.subject, &ctx, now_ms())
        .await?
    {
        Relabel::Done(record) => {
            tracing::info!(group = %id, label = %record.label.name, "group re-labelled");
            Ok(AppJson(applied(&state, record).await?).into_response())
        }
        Relabel::Proposed(change) => {
            tracing::info!(group = %id, "group re-labelling filed for approval");
            let location = format!("/control/v1/relabels/{}", change.id);
            Ok((
                StatusCode::ACCEPTED,
                [(header::LOCATION, location)],
                AppJson(RelabelView::of(&change)),
            )
                .into_response())
        }
        Relabel::Pending(pending) => Err(ApiError::Conflict(format!(
            "a move of this group to a looser label is waiting for approval (id {pending}); a \
             label-admin approves or rejects it first"
        ))),
        Relabel::NotFound => Err(ApiError::GroupNotFound),
        Relabel::NoSuchLabel => Err(ApiError::UnknownLabel(input.label.to_string())),
        Relabel::NotEditable(s) => Err(ApiError::NotEditable(s)),
        Relabel::JoinPolicyRefused(label) => Err(ApiError::JoinPolicyRefused {
            policy: group.join_policy,
            label: Box::new(label),
        }),
        Relabel::GuardsResource(refusal) => Err(ApiError::GuardsResource(refusal)),
    }
}

/// Lists the moves of groups to looser labels waiting for approval (role `label-admin`).
#[utoipa::path(
    get,
    path = "/control/v1/relabels",
    tag = "groups",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The pending moves, oldest first.", body = Vec<RelabelView>),
        (status = "4XX", description = "`401` No valid bearer token. `403` The caller lacks the role `label-admin`.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_relabels(
    State(state): State<AppState>,
    LabelAdmin(_admin): LabelAdmin,
) -> Result<AppJson<Vec<RelabelView>>, ApiError> {
    let pending = state.store.pending_relabels().await?;
    Ok(AppJson(pending.iter().map(RelabelView::of).collect()))
}

/// Approves a pending move of a group to a looser label (role `label-admin`, not its proposer).
///
/// The group takes the label and the tenant applies it. Refused (409, and the move is dropped)
/// when the group's label or state, or the proposed label's policy, changed since the proposal.
#[utoipa::path(
    post,
    path = "/control/v1/relabels/{id}/approve",
    tag = "groups",
    params(("id" = String, Path, format = Uuid, description = "The move's id.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Applied: the group's label now.", body = GroupRelabeled),
        (status = 409, description = "The group or the proposed label changed after the proposal (the move is dropped), or the label no longer allows the group's join policy, or `urn:hush:problem:binding-refused`: the group now guards a resource the label ranks below.", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", description = "`401` No valid bearer token. `403` The caller lacks the role `label-admin`, or proposed this move. `404` No move with this id is waiting. `422` The id is not a UUID.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The identity provider is not answering, or the label is saved but the tenant has not applied it yet (move the group to its label again to apply it).", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn approve_relabel(
    State(state): State<AppState>,
    x_request_id: service_kit::RequestId,
    LabelAdmin(admin): LabelAdmin,
    RequestId(request_id): RequestId,
    Path(id): Path<String>,
) -> Result<AppJson<GroupRelabeled>, ApiError> {
    let state = state.for_request(&x_request_id);
    let id = id_in_path(&id)?;
    let ctx = AuditContext::request(&admin.subject, request_id);
    match state
        .store
        .approve_relabel(id, &admin.subject, &ctx, now_ms())
        .await?
    {
        RelabelApproval::Approved(record) => {
            tracing::info!(group = %record.id, label = %record.label.name, "group re-labelling approved");
            Ok(AppJson(applied(&state, record).await?))
        }
        RelabelApproval::NotFound => Err(ApiError::RelabelNotFound),
        RelabelApproval::SameAdmin => Err(ApiError::SameAdmin),
        RelabelApproval::Overtaken => Err(ApiError::Conflict(
            "the group or the proposed label changed after this move was proposed; the move is \
             dropped: propose it again"
                .into(),
        )),
        RelabelApproval::GuardsResource(refusal) => Err(ApiError::GuardsResource(refusal)),
        RelabelApproval::JoinPolicyRefused(label) => Err(ApiError::Conflict(format!(
            "the label '{}' no longer allows the group's join policy; change the group's join \
             policy first, or reject this move",
            label.name
        ))),
    }
}

/// Rejects a pending move of a group to a looser label (role `label-admin`).
#[utoipa::path(
    post,
    path = "/control/v1/relabels/{id}/reject",
    tag = "groups",
    params(("id" = String, Path, format = Uuid, description = "The move's id.")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The move is dropped; the group keeps its label."),
        (status = "4XX", description = "`401` No valid bearer token. `403` The caller lacks the role `label-admin`. `404` No move with this id is waiting. `422` The id is not a UUID.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn reject_relabel(
    State(state): State<AppState>,
    LabelAdmin(admin): LabelAdmin,
    RequestId(request_id): RequestId,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = id_in_path(&id)?;
    let ctx = AuditContext::request(&admin.subject, request_id);
    if state
        .store
        .reject_relabel(id, &admin.subject, &ctx, now_ms())
        .await?
    {
        tracing::info!(admin = %admin.subject, "group re-labelling rejected");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::RelabelNotFound)
    }
}
