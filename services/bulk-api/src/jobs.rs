//! Jobs as operators see them: `GET /bulk/v1/jobs`, newest first. Submitting, running and
//! reporting jobs come later; this module already holds what every one of those will share.

use crate::error::ApiError;
use crate::AppState;
use auth::Caller;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use domain::Subject;
use serde::{Deserialize, Serialize};
use service_kit::{AppJson, Problem};
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

/// The role that may see and run bulk jobs.
pub const OPERATOR_ROLE: &str = "operator";

/// Jobs listed when the request names no limit.
pub const DEFAULT_LIMIT: u32 = 50;
/// Most jobs one listing returns.
pub const MAX_LIMIT: u32 = 200;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Accepted, waiting for a worker.
    Queued,
    /// Workers are applying its chunks.
    Running,
    /// Every item was applied or rejected; the report is final.
    Succeeded,
    /// Stopped by an error that retrying did not fix.
    Failed,
    /// Stopped by an operator.
    Cancelled,
}

impl JobState {
    /// Every state, in life order.
    pub const ALL: [JobState; 5] = [
        Self::Queued,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
    ];

    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses the storage name.
    pub fn parse(s: &str) -> Result<Self, domain::DomainError> {
        Self::ALL
            .into_iter()
            .find(|j| j.as_str() == s)
            .ok_or_else(|| domain::DomainError::Invalid {
                field: "state",
                reason: "unknown job state".into(),
            })
    }
}

/// One job's bookkeeping, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The job's id.
    pub id: Uuid,
    /// Where it is.
    pub state: JobState,
    /// The operator who submitted it.
    pub submitted_by: Subject,
    /// When it was submitted, in milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// Items in the job.
    pub total: u64,
    /// Items applied so far.
    pub applied: u64,
    /// Items refused so far (by label policy, bad input, …); counted by reason in the report,
    /// never listed per person (INV-3).
    pub rejected: u64,
}

/// A job as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    /// The job's id.
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    /// Where it is.
    pub state: JobState,
    /// The operator who submitted it.
    #[schema(value_type = String)]
    pub submitted_by: Subject,
    /// When it was submitted (RFC 3339, UTC).
    #[schema(example = "2026-11-22T14:00:00Z")]
    pub created_at: String,
    /// Items in the job.
    pub total: u64,
    /// Items applied so far.
    pub applied: u64,
    /// Items refused so far.
    pub rejected: u64,
}

impl From<Job> for JobView {
    fn from(j: Job) -> Self {
        let created_at = time::OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(j.created_at_ms) * 1_000_000,
        )
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default();
        Self {
            id: j.id,
            state: j.state,
            submitted_by: j.submitted_by,
            created_at,
            total: j.total,
            applied: j.applied,
            rejected: j.rejected,
        }
    }
}

/// The body of `GET /bulk/v1/jobs`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    /// Newest first.
    pub jobs: Vec<JobView>,
}

/// Query parameters of `GET /bulk/v1/jobs`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// How many jobs to return, newest first: 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// The jobs routes, documented.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_jobs))
}

/// Lists jobs, newest first (operators only).
#[utoipa::path(
    get,
    path = "/bulk/v1/jobs",
    tag = "jobs",
    params(ListParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The newest jobs, newest first.", body = JobList),
        (status = 401, description = "No valid bearer token.", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller does not hold the operator role.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The limit is not a number from 1 to 200.", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Something failed on our side; the request id identifies it in our logs.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The identity provider's keys cannot be fetched right now.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_jobs(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<AppJson<JobList>, ApiError> {
    if !caller.has_role(OPERATOR_ROLE) {
        return Err(ApiError::NotOperator);
    }
    let Query(params) = params.map_err(|r| ApiError::InvalidQuery(r.body_text()))?;
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::InvalidQuery(format!(
            "limit must be from 1 to {MAX_LIMIT}"
        )));
    }
    let jobs = state.store.list_jobs(limit).await?;
    Ok(AppJson(JobList {
        jobs: jobs.into_iter().map(JobView::from).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_states_round_trip() {
        for s in JobState::ALL {
            assert_eq!(JobState::parse(s.as_str()).unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert!(JobState::parse("paused").is_err());
    }

    #[test]
    fn views_show_times_as_rfc3339() {
        let view = JobView::from(Job {
            id: Uuid::nil(),
            state: JobState::Queued,
            submitted_by: Subject::parse("op").unwrap(),
            created_at_ms: 1_700_000_000_123,
            total: 0,
            applied: 0,
            rejected: 0,
        });
        assert_eq!(view.created_at, "2023-11-14T22:13:20.123Z");
    }
}
