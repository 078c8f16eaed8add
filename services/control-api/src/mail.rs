//! The tenant's outbound mail, for operators (role `operator`): the queue's message counts with
//! the relay's health, and the messages given up on (dead letters). Messages, codes and states
//! only — never a group, an address, a person, or a count of recipients or relay transactions,
//! which around a post of one's own would count that group (INV-1, INV-4): the tenant answers
//! nothing more, and control-api passes its answer on as it is.

use crate::error::ApiError;
use crate::extract::Operator;
use crate::AppState;
use axum::extract::State;
use serde::Serialize;
use service_kit::{AppJson, Problem};
use tenant_api::MailCounts;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

/// One message the tenant gave up delivering (one entry however many relay transactions it
/// took).
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterView {
    /// The message's id (random; says nothing about its group).
    #[schema(value_type = String, format = Uuid)]
    pub id: uuid::Uuid,
    /// When its last delivery was given up on, Unix milliseconds.
    pub ended_ms: i64,
    /// Attempts made (the most any of its deliveries made).
    pub attempts: u32,
    /// A relay reply code (`550 5.7.1`, `451`), or what failed before any reply (`connect`,
    /// `tls`, `starttls-missing`, `auth`, `protocol`); absent when unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_reply: Option<String>,
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

/// The mail queue and the relay's health (role `operator`): messages queued, delivered and
/// dead, bounces consumed, and the relay's state as the answering tenant replica sees it.
/// Message counts only, over every group: never recipients or relay transactions.
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

/// The newest dead letters, at most 200 (role `operator`), one per message: its id, when it
/// was given up on, its attempts and a relay reply code. No group, no address, no count. Kept
/// for `HUSH_MAIL_DEAD_RETENTION_DAYS`.
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
            })
            .collect(),
    }))
}
