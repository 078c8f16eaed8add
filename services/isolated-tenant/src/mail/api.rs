//! The mail routes of the tenant's API, for operators (through control-api): the queue's counts
//! with the relay's health, and the newest dead letters. Counts and opaque delivery ids only,
//! over every group: no group, no address, no exact recipient count (INV-1, INV-4).

use crate::access::{op, Permit};
use crate::error::ApiError;
use crate::AppState;
use axum::extract::State;
use service_kit::{AppJson, Problem};
use tenant_api::{DeadLetters, MailCounts};
use utoipa_axum::{router::OpenApiRouter, routes};

/// Most dead letters one listing shows, newest first (the counts have the total).
pub const DEAD_LETTERS_SHOWN: usize = 200;

/// The mail routes, documented.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(counts))
        .routes(routes!(dead_letters))
}

/// The mail queue's counts: messages queued, delivered and dead (never recipients or relay
/// transactions, which would count a group around a post of one's own), bad delivery
/// addresses, the bounces and auto-replies consumed, and the relay's health.
///
/// Allowed to control-api.
#[utoipa::path(
    get,
    path = "/tenant/v1/mail/counts",
    tag = "mail",
    responses(
        (status = 200, description = "The counts.", body = MailCounts),
        (status = "4XX", description = "`401` No service token, or one that does not verify. `403` The calling service may not read the mail counts.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn counts(
    _: Permit<op::MailCounts>,
    State(state): State<AppState>,
) -> Result<AppJson<MailCounts>, ApiError> {
    let counts = state.mail.counts().await?;
    Ok(AppJson(counts.for_operators(state.relay_stats.status())))
}

/// The newest dead letters (at most 200), one per message: its id, when it was given up on,
/// its attempts and a relay reply code. No group, no address, no count. Kept for
/// `HUSH_MAIL_DEAD_RETENTION_DAYS`.
///
/// Allowed to control-api.
#[utoipa::path(
    get,
    path = "/tenant/v1/mail/dead-letters",
    tag = "mail",
    responses(
        (status = 200, description = "The dead letters, newest first.", body = DeadLetters),
        (status = "4XX", description = "`401` No service token, or one that does not verify. `403` The calling service may not read the dead letters.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn dead_letters(
    _: Permit<op::MailDeadLetters>,
    State(state): State<AppState>,
) -> Result<AppJson<DeadLetters>, ApiError> {
    Ok(AppJson(DeadLetters {
        dead_letters: state.mail.dead_letters(DEAD_LETTERS_SHOWN).await?,
    }))
}
