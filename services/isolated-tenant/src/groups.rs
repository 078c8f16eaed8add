//! Distribution groups: provisioning and deprovisioning (control-api's saga steps when a group
//! is created or archived) and the coarse member count owners see (INV-4).

use crate::access::{op, Permit};
use crate::error::ApiError;
use crate::extract::GroupPath;
use crate::AppState;
use axum::extract::State;
use http::StatusCode;
use service_kit::{AppJson, Problem};
use tenant_api::{ApplyRule, DistributionGroup, MemberCount, ProvisionGroup, RuleApplied};
use utoipa_axum::{router::OpenApiRouter, routes};

/// The group routes, documented.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(provision))
        .routes(routes!(deprovision))
        .routes(routes!(member_count))
        .routes(routes!(apply_rule))
}

/// Creates the distribution group, or confirms it.
///
/// Idempotent, so a saga may retry it: the same request again answers 200 with the same group;
/// a new display name renames it; a sender policy (with the owners' addresses) replaces the
/// group's mail policy; a label entry rule is kept as the group's, and when it bars a kind the
/// kept rule admitted, every membership it now bars ends in the same transaction. Allowed to
/// control-api.
#[utoipa::path(
    post,
    path = "/tenant/v1/groups",
    tag = "groups",
    request_body = ProvisionGroup,
    responses(
        (status = 200, description = "The group is provisioned with this address and display name (created now, or already there).", body = DistributionGroup),
        (status = 409, description = "`address-taken`: another group has this address; or `address-mismatch`: the group exists with another address.", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", description = "`400` The body is not JSON. `401` No service token, or one that does not verify. `403` The calling service may not provision groups. `413` The body is larger than the tenant accepts. `415` The body is not sent as application/json. `422` A field is invalid (the group id is not a UUID, the address is not an address, …).", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn provision(
    permit: Permit<op::ProvisionGroup>,
    State(state): State<AppState>,
    AppJson(request): AppJson<ProvisionGroup>,
) -> Result<AppJson<DistributionGroup>, ApiError> {
    let context = permit.context();
    let provisioned = state.store.provision_group(context, &request).await?;
    // Second step of an idempotent call: a failure here answers 500 and the saga's retry
    // writes both again.
    if let Some(policy) = request.sender_policy {
        state
            .mail
            .set_policy(
                context,
                request.group_id,
                policy,
                request.anonymous_posting,
                &request.owners,
            )
            .await?;
    }
    Ok(AppJson(provisioned.group))
}

/// Removes the distribution group and all of its membership.
///
/// Its membership rows go in the same transaction. Idempotent: a group
/// that is not there answers 204 too. Allowed to control-api.
#[utoipa::path(
    delete,
    path = "/tenant/v1/groups/{group_id}",
    tag = "groups",
    params(("group_id" = String, Path, format = Uuid, description = "The catalog's id of the group.")),
    responses(
        (status = 204, description = "The group is gone (or was never there)."),
        (status = "4XX", description = "`401` No service token, or one that does not verify. `403` The calling service may not deprovision groups. `422` The group id is not a UUID.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn deprovision(
    permit: Permit<op::DeprovisionGroup>,
    State(state): State<AppState>,
    GroupPath(id): GroupPath,
) -> Result<StatusCode, ApiError> {
    state.store.deprovision_group(permit.context(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The group's member count, as a bucket (INV-4), from a snapshot.
///
/// Never a number and never a list. The bucket is taken anew only at the first read after a
/// random moment one to two days after the last ([`next_count_refresh`]), so adds and removes
/// around a bucket edge change nothing this answers until then. Allowed to control-api, which
/// shows it to owners.
#[utoipa::path(
    get,
    path = "/tenant/v1/groups/{group_id}/count",
    tag = "groups",
    params(("group_id" = String, Path, format = Uuid, description = "The catalog's id of the group.")),
    responses(
        (status = 200, description = "The bucket the member count falls in.", body = MemberCount),
        (status = "4XX", description = "`401` No service token, or one that does not verify. `403` The calling service may not read counts. `404` No distribution group with this id is provisioned. `422` The group id is not a UUID.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn member_count(
    _: Permit<op::MemberCount>,
    State(state): State<AppState>,
    GroupPath(id): GroupPath,
) -> Result<AppJson<MemberCount>, ApiError> {
    let now = service_kit::db::now_ms();
    let next = next_count_refresh(now, &mut rand::thread_rng());
    let bucket = state.store.shown_count(id, now, next).await?;
    Ok(AppJson(MemberCount { bucket }))
}

/// One day, in milliseconds: the shortest time a count snapshot is kept.
pub const COUNT_SNAPSHOT_MIN_MS: i64 = 24 * 60 * 60 * 1000;

/// When a count snapshot taken at `now_ms` is next refreshed: at a moment drawn uniformly from
/// one to two days later. Random, so an owner cannot time writes just before it; at least a
/// day, so a day of writes teaches the owner nothing about one person.
pub fn next_count_refresh(now_ms: i64, rng: &mut impl rand::Rng) -> i64 {
    now_ms + COUNT_SNAPSHOT_MIN_MS + rng.gen_range(0..COUNT_SNAPSHOT_MIN_MS)
}

/// Applies a label's changed entry rule.
///
/// Every group named, and every group the tenant keeps under the label's name, takes the rule,
/// each in a transaction of its own; where it bars a kind the group's rule admitted (a label
/// tightened to refuse guests or agents), every membership it now bars ends in that
/// transaction, with an audit event each. The answer says how many groups took the rule and,
/// as a bucket only (INV-4), how many memberships ended: never who. Groups the tenant does not
/// have are skipped. Idempotent. Allowed to control-api.
#[utoipa::path(
    post,
    path = "/tenant/v1/labels/apply",
    tag = "groups",
    request_body = ApplyRule,
    responses(
        (status = 200, description = "The rule is applied.", body = RuleApplied),
        (status = "4XX", description = "`400` The body is not JSON. `401` No service token, or one that does not verify. `403` The calling service may not apply label rules. `413` The body is larger than the tenant accepts. `415` The body is not sent as application/json. `422` A field is invalid, or more than 10,000 groups are named.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn apply_rule(
    permit: Permit<op::ApplyRule>,
    State(state): State<AppState>,
    AppJson(request): AppJson<ApplyRule>,
) -> Result<AppJson<RuleApplied>, ApiError> {
    if request.groups.len() > MAX_RULE_GROUPS {
        return Err(ApiError::Invalid(format!(
            "groups: at most {MAX_RULE_GROUPS} groups a call"
        )));
    }
    let applied = state.store.apply_rule(permit.context(), &request).await?;
    Ok(AppJson(applied))
}

/// The most groups one rule application names.
pub const MAX_RULE_GROUPS: usize = 10_000;
