//! The tenant's outbound mail, for operators (role `operator`): the queue's counts with the
//! relay's health, and the deliveries given up on (dead letters). Counts, codes and buckets
//! only — never a group, an address or a person (INV-1, INV-4): the tenant answers nothing
//! more, and control-api passes its answer on as it is.

use crate::error::ApiError;
use crate::extract::Operator;
use crate::AppState;
use axum::extract::State;
use domain::CountBucket;
use serde::Serialize;
use service_kit::{AppJson, Problem};
use tenant_api::MailCounts;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

/// One delivery (relay transaction) the tenant gave up on.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterView {
    /// The delivery's id (random; says nothing about its group).
    #[schema(value_type = String, format = Uuid)]
    pub id: uuid::Uuid,
    /// When it was given up on, Unix milliseconds.
    pub ended_ms: i64,
    /// Attempts made.
    pub attempts: u32,
    /// The relay's last reply code (`550 5.7.1`, `451`), or what failed before any reply
    /// (`connect`, `tls`, `starttls-missing`, `auth`, `protocol`); absent when unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_reply: Option<String>,
    /// How many recipients it had, as a bucket (INV-4).
    pub recipient_bucket: CountBucket,
}

/// The newest dead letters.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterList {
    /// Newest first, at most 200; the status has the total.
    pub dead_letters: Vec<DeadLetterView>,
}

/// The routes, documented.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(status))
        .routes(routes!(dead_letters))
}

/// The mail queue and the relay's health (role `operator`): deliveries and recipients queued,
/// delivered and dead, bounces consumed, and the relay's state with the answering tenant
/// replica's delivery counters. Counts only, over every group.
#[utoipa::path(
    get,
    path = "/control/v1/mail/status",
    tag = "mail",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The counts.", body = MailCounts),
        (status = "4XX", description = "`401` No valid bearer token. `403` The caller lacks the role `operator`.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The tenant (or the identity provider) is not answering; retry.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn status(
    State(state): State<AppState>,
    x_request_id: service_kit::RequestId,
    _operator: Operator,
) -> Result<AppJson<MailCounts>, ApiError> {
    let state = state.for_request(&x_request_id);
    state.tenant.mail_counts().await.map(AppJson).map_err(|e| {
        tracing::warn!(error = %e, "the mail status did not come from the tenant");
        ApiError::TenantUnavailable
    })
}

/// The newest dead letters, at most 200 (role `operator`): each delivery's id, when it was
/// given up on, its attempts, the relay's last reply code, and its recipients as a bucket. No
/// group and no address. Kept for `HUSH_MAIL_DEAD_RETENTION_DAYS`.
#[utoipa::path(
    get,
    path = "/control/v1/mail/dead-letters",
    tag = "mail",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The dead letters, newest first.", body = DeadLetterList),
        (status = "4XX", description = "`401` No valid bearer token. `403` The caller lacks the role `operator`.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The tenant (or the identity provider) is not answering; retry.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn dead_letters(
    State(state): State<AppState>,
    x_request_id: service_kit::RequestId,
    _operator: Operator,
) -> Result<AppJson<DeadLetterList>, ApiError> {
    let state = state.for_request(&x_request_id);
    let listed = state.tenant.mail_dead_letters().await.map_err(|e| {
        tracing::warn!(error = %e, "the dead letters did not come from the tenant");
        ApiError::TenantUnavailable
    })?;
    Ok(AppJson(DeadLetterList {
        dead_letters: listed
            .dead_letters
            .into_iter()
            .map(|d| DeadLetterView {
                id: d.id,
                ended_ms: d.ended_ms,
                attempts: d.attempts,
                last_reply: d.last_reply,
                recipient_bucket: d.recipients,
            })
            .collect(),
    }))
}
