//! Break-glass (INV-8), the user-facing side: an `auditor` files a request, two distinct
//! `privacy-officer`s approve it, the auditor redeems the grant once.
//!
//! control-api holds none of the state and enforces none of the rules: it checks the caller's
//! role (an early, cheap refusal) and relays each call to the isolated tenant with the caller's
//! OWN token in `x-hush-user-token`; the tenant verifies that token against the IdP itself,
//! checks the role again, keeps the request, enforces the two-person rule, the expiries and
//! single use, and writes every step to its audit chain. A compromised control-api therefore
//! holds no officer's token to approve with and cannot read a member list. The tenant's answer
//! (or problem+json) is passed through unchanged. Group owners are never told.

use crate::error::ApiError;
use crate::AppState;
use auth::Caller;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use service_kit::{AppJson, Problem};
use tenant_api::breakglass::{
    paths, Answer, Decline, ListQuery, ListView, NewRequest, RequestList, RequestView, AUDITOR,
    PRIVACY_OFFICER,
};
use utoipa_axum::{router::OpenApiRouter, routes};

/// The break-glass routes, documented.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(file_request, list_requests))
        .routes(routes!(approve))
        .routes(routes!(decline))
        .routes(routes!(redeem))
}

fn wrong_role(role: &str) -> Response {
    Problem::new(
        StatusCode::FORBIDDEN,
        "break-glass-wrong-role",
        "Wrong role",
    )
    .with_detail(format!("this step needs the role {role}"))
    .into_response()
}

/// The caller's own bearer token, to forward (the extractor has verified it already).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// A call to relay.
enum Call<'a> {
    /// `POST path` with an optional JSON body.
    Post(&'a str, Option<serde_json::Value>),
    /// `GET path?query`.
    Get(&'a str),
}

async fn relay(
    state: &AppState,
    headers: &HeaderMap,
    call: Call<'_>,
) -> Result<Response, ApiError> {
    let token = bearer(headers).ok_or_else(|| ApiError::Invalid("no bearer token".into()))?;
    let answer = match call {
        Call::Post(path, body) => state.tenant.break_glass(path, token, body.as_ref()).await,
        Call::Get(path) => state.tenant.break_glass_list(path, token).await,
    };
    let (status, body) = answer.map_err(|e| {
        tracing::warn!(error = %e, "break-glass did not reach the tenant");
        ApiError::TenantUnavailable
    })?;
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut res = (status, axum::Json(body)).into_response();
    if !status.is_success() {
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
    }
    Ok(res)
}

/// Files a break-glass request (role `auditor`): a group, a scope (`member-check` with a
/// `subject` or `email`, or `full-list`), a justification, and optionally an age X25519
/// `recipient` to encrypt the answer to. It waits for two privacy officers' approvals and
/// expires if they do not come in time.
#[utoipa::path(
    post,
    path = "/control/v1/break-glass/requests",
    tag = "break-glass",
    request_body = NewRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Filed; waiting for two approvals.", body = RequestView),
        (status = "4XX", description = "`401` No valid bearer token. `403` `break-glass-wrong-role`: the caller is not an auditor. `404` No such group in the tenant. `422` A field is invalid (justification 10–2000 characters; member-check names a person; recipient is an age X25519 recipient).", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The tenant is not answering, or break-glass is off there.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn file_request(
    State(state): State<AppState>,
    x_request_id: service_kit::RequestId,
    caller: Caller,
    headers: HeaderMap,
    AppJson(request): AppJson<NewRequest>,
) -> Result<Response, ApiError> {
    let state = state.for_request(&x_request_id);
    if !caller.has_role(AUDITOR) {
        return Ok(wrong_role(AUDITOR));
    }
    let body = serde_json::to_value(&request).map_err(|_| ApiError::Invalid("body".into()))?;
    relay(&state, &headers, Call::Post(paths::REQUESTS, Some(body))).await
}

/// Lists break-glass requests. `view=waiting` (role `privacy-officer`): every request still
/// waiting for approvals, the soonest to expire first, each with its requester, its
/// justification and, for a member check, the person asked about; `approved_by_you` marks the
/// ones the caller approved already. `view=mine` (role `auditor`): the caller's own requests of
/// the last 90 days, newest first, with their state (`pending`, `approved`, `redeemed`,
/// `declined` with the officer's reason, `expired`). At most 200. No member list is read.
#[utoipa::path(
    get,
    path = "/control/v1/break-glass/requests",
    tag = "break-glass",
    params(ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The requests.", body = RequestList),
        (status = "4XX", description = "`401` No valid bearer token. `403` `break-glass-wrong-role`: the caller lacks the view's role. `422` `view` is missing or not `waiting` or `mine`.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The tenant is not answering, or break-glass is off there.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_requests(
    State(state): State<AppState>,
    x_request_id: service_kit::RequestId,
    caller: Caller,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let state = state.for_request(&x_request_id);
    let Query(ListQuery { view }) = query.map_err(|_| {
        ApiError::Invalid("view: `waiting` (privacy officers) or `mine` (auditors)".into())
    })?;
    let role = match view {
        ListView::Waiting => PRIVACY_OFFICER,
        ListView::Mine => AUDITOR,
    };
    if !caller.has_role(role) {
        return Ok(wrong_role(role));
    }
    relay(&state, &headers, Call::Get(&paths::list(view))).await
}

/// Declines a break-glass request that is still waiting (role `privacy-officer`, not the
/// requester). One officer's no ends the request; the optional `reason` (up to 500
/// characters) is shown to the auditor who filed it.
#[utoipa::path(
    post,
    path = "/control/v1/break-glass/requests/{id}/decline",
    tag = "break-glass",
    request_body = Decline,
    params(("id" = String, Path, format = Uuid, description = "The request.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Declined.", body = RequestView),
        (status = 409, description = "`break-glass-not-pending`.", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`break-glass-request-expired`.", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", description = "`401` No valid bearer token. `403` `break-glass-wrong-role` or `break-glass-requester-cannot-approve`. `404` `break-glass-request-not-found`. `422` The id is not a UUID, or the reason is longer than 500 characters.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The tenant is not answering.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn decline(
    State(state): State<AppState>,
    x_request_id: service_kit::RequestId,
    caller: Caller,
    headers: HeaderMap,
    Path(raw): Path<String>,
    AppJson(body): AppJson<Decline>,
) -> Result<Response, ApiError> {
    let state = state.for_request(&x_request_id);
    if !caller.has_role(PRIVACY_OFFICER) {
        return Ok(wrong_role(PRIVACY_OFFICER));
    }
    let id = crate::extract::id_in_path(&raw)?;
    let body = serde_json::to_value(&body).map_err(|_| ApiError::Invalid("body".into()))?;
    relay(
        &state,
        &headers,
        Call::Post(&paths::decline(id), Some(body)),
    )
    .await
}

/// Approves a break-glass request (role `privacy-officer`). Two distinct officers must approve;
/// the requester never can; an expired request cannot be. The second approval opens a
/// time-limited, single-use grant for the requester.
#[utoipa::path(
    post,
    path = "/control/v1/break-glass/requests/{id}/approve",
    tag = "break-glass",
    params(("id" = String, Path, format = Uuid, description = "The request.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Approved (`approved` once two officers have).", body = RequestView),
        (status = 409, description = "`break-glass-same-officer` or `break-glass-not-pending`.", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`break-glass-request-expired`.", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", description = "`401` No valid bearer token. `403` `break-glass-wrong-role` or `break-glass-requester-cannot-approve`. `404` `break-glass-request-not-found`. `422` The id is not a UUID.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The tenant is not answering.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn approve(
    State(state): State<AppState>,
    x_request_id: service_kit::RequestId,
    caller: Caller,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let state = state.for_request(&x_request_id);
    if !caller.has_role(PRIVACY_OFFICER) {
        return Ok(wrong_role(PRIVACY_OFFICER));
    }
    let id = crate::extract::id_in_path(&raw)?;
    relay(&state, &headers, Call::Post(&paths::approve(id), None)).await
}

/// Redeems the grant of an approved request, once (role `auditor`, the one who filed it).
/// Answers the member check (`member`) or the member list (`members`), or, when the request
/// named a recipient, only `encrypted` (ASCII-armored age). The answer is not kept: ask again
/// and the grant is used.
#[utoipa::path(
    post,
    path = "/control/v1/break-glass/requests/{id}/redeem",
    tag = "break-glass",
    params(("id" = String, Path, format = Uuid, description = "The request.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The answer, this once.", body = Answer),
        (status = 409, description = "`break-glass-not-approved`.", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`break-glass-grant-used` or `break-glass-grant-expired`.", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", description = "`401` No valid bearer token. `403` `break-glass-wrong-role` or `break-glass-not-requester`. `404` `break-glass-request-not-found`. `422` The id is not a UUID.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The tenant is not answering.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn redeem(
    State(state): State<AppState>,
    x_request_id: service_kit::RequestId,
    caller: Caller,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let state = state.for_request(&x_request_id);
    if !caller.has_role(AUDITOR) {
        return Ok(wrong_role(AUDITOR));
    }
    let id = crate::extract::id_in_path(&raw)?;
    relay(&state, &headers, Call::Post(&paths::redeem(id), None)).await
}
