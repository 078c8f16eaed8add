//! Jobs as operators (and owners, for the jobs they submitted) see and steer them:
//! `GET /bulk/v1/jobs`, `GET /bulk/v1/jobs/{id}`, and pause, resume and cancel. Reports are
//! counts by reason, never who was already a member (INV-3).

use crate::error::{ApiError, LineErrorView};
use crate::AppState;
use crate::JobKey;
use auth::Caller;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use domain::Subject;
use serde::{Deserialize, Serialize};
use service_kit::{AppJson, Problem};
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

/// The role that may see and run every bulk job.
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
    /// Stopped by an operator; resumes where it stopped.
    Paused,
    /// Every operation was applied or rejected; the report is final.
    Succeeded,
    /// Stopped by an error that retrying did not fix.
    Failed,
    /// Stopped by an operator for good.
    Cancelled,
}

impl JobState {
    /// Every state, in life order.
    pub const ALL: [JobState; 6] = [
        Self::Queued,
        Self::Running,
        Self::Paused,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
    ];

    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the job has ended (its input is purged).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
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

/// Rejected operations by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Rejections {
    /// Operations naming no identity the tenant could resolve.
    pub unknown_identity: u64,
    /// Adds the group's label refused for the person's kind.
    pub label_refused: u64,
    /// Operations on a group that is not active in the catalog or not provisioned.
    pub unknown_group: u64,
}

/// One job's bookkeeping, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The job's id.
    pub id: Uuid,
    /// Where it is.
    pub state: JobState,
    /// Who submitted it.
    pub submitted_by: Subject,
    /// When it was submitted, in milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// When a worker first took a chunk of it.
    pub started_at_ms: Option<i64>,
    /// When it ended.
    pub finished_at_ms: Option<i64>,
    /// Operations in the job (valid lines).
    pub total: u64,
    /// Operations applied so far.
    pub applied: u64,
    /// Operations rejected so far; by reason in `rejected_by_reason`, never listed per person
    /// (INV-3).
    pub rejected: u64,
    /// Rejections by reason.
    pub rejected_by_reason: Rejections,
    /// Malformed lines left out of the job.
    pub invalid_lines: u64,
    /// Operations in chunks that failed and wait for another try.
    pub retrying: u64,
    /// Why a failed job failed.
    pub error: Option<String>,
    /// The name of the file it came from, sealed (INV-5: a name can say who a job is about).
    pub sealed_name: Option<Vec<u8>>,
}

/// A job as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    /// The job's id.
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    /// Where it is.
    pub state: JobState,
    /// Who submitted it.
    #[schema(value_type = String)]
    pub submitted_by: Subject,
    /// The name of the file it came from, as the submitter gave it (`?name=`); absent when none
    /// was given, or when bulk-api runs with a new seal key since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// When it was submitted (RFC 3339, UTC).
    #[schema(example = "2026-11-22T14:00:00Z")]
    pub created_at: String,
    /// When it started running.
    pub started_at: Option<String>,
    /// When it ended.
    pub finished_at: Option<String>,
    /// Operations in the job.
    pub total: u64,
    /// Operations applied so far (whether or not each changed anything: INV-3).
    pub applied: u64,
    /// Operations rejected so far.
    pub rejected: u64,
    /// Rejections by reason.
    pub rejected_by_reason: Rejections,
    /// Malformed lines left out of the job.
    pub invalid_lines: u64,
    /// Operations that failed and are being retried.
    pub retrying: u64,
    /// Operations per second since the job started.
    pub rate_per_sec: f64,
    /// Seconds until the job should end at the current rate, while it runs.
    pub eta_secs: Option<u64>,
    /// Why a failed job failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The first malformed lines (only when one job is asked for).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub line_errors: Vec<LineErrorView>,
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(i64::MAX)
}

impl JobView {
    /// The view of `j` now, its name opened with `key`.
    pub fn of(j: Job, key: &JobKey) -> Self {
        Self::at(j, now_ms(), key)
    }

    /// The view of `j` at `now` (ms), its name opened with `key`.
    pub fn at(j: Job, now: i64, key: &JobKey) -> Self {
        let name = j
            .sealed_name
            .as_deref()
            .and_then(|sealed| key.open_name(j.id, sealed));
        let done = j.applied + j.rejected;
        let (rate, eta) = match j.started_at_ms {
            Some(start) => {
                let end = j.finished_at_ms.unwrap_or(now);
                let secs = (end - start).max(1) as f64 / 1000.0;
                let rate = done as f64 / secs;
                let eta = (j.state == JobState::Running && rate > 0.0)
                    .then(|| (j.total.saturating_sub(done) as f64 / rate).ceil() as u64);
                ((rate * 10.0).round() / 10.0, eta)
            }
            None => (0.0, None),
        };
        Self {
            id: j.id,
            state: j.state,
            submitted_by: j.submitted_by,
            name,
            created_at: rfc3339(j.created_at_ms),
            started_at: j.started_at_ms.map(rfc3339),
            finished_at: j.finished_at_ms.map(rfc3339),
            total: j.total,
            applied: j.applied,
            rejected: j.rejected,
            rejected_by_reason: j.rejected_by_reason,
            invalid_lines: j.invalid_lines,
            retrying: j.retrying,
            rate_per_sec: rate,
            eta_secs: eta,
            error: j.error,
            line_errors: Vec::new(),
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

/// The jobs routes (but submission, which has its own body limit), documented.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_jobs))
        .routes(routes!(get_job))
        .routes(routes!(pause_job))
        .routes(routes!(resume_job))
        .routes(routes!(cancel_job))
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
        (status = "4XX", description = "`401` No valid bearer token. `403` The caller does not hold the operator role. `422` The limit is not a number from 1 to 200.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` The identity provider's keys cannot be fetched right now.", body = Problem, content_type = "application/problem+json"),
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
    let now = now_ms();
    Ok(AppJson(JobList {
        jobs: jobs
            .into_iter()
            .map(|j| JobView::at(j, now, &state.key))
            .collect(),
    }))
}

/// The job `id` if the caller may see it: operators every job, anyone else the jobs they
/// submitted. Any other job is "not found", so ids of others' jobs reveal nothing.
async fn visible_job(state: &AppState, caller: &Caller, id: &str) -> Result<Job, ApiError> {
    let id = Uuid::parse_str(id).map_err(|_| ApiError::NotFound)?;
    let job = state.store.job(id).await?.ok_or(ApiError::NotFound)?;
    if caller.has_role(OPERATOR_ROLE) || job.submitted_by == caller.subject {
        Ok(job)
    } else {
        Err(ApiError::NotFound)
    }
}

/// One job: its state, counts by reason, rate and ETA, and its first malformed lines.
#[utoipa::path(
    get,
    path = "/bulk/v1/jobs/{id}",
    tag = "jobs",
    params(("id" = String, Path, format = Uuid, description = "The job's id.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The job.", body = JobView),
        (status = "4XX", description = "`401` No valid bearer token. `404` No such job, or one the caller did not submit and is not an operator.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_job(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<AppJson<JobView>, ApiError> {
    let job = visible_job(&state, &caller, &id).await?;
    let errors = state.store.line_errors(job.id).await?;
    let mut view = JobView::of(job, &state.key);
    view.line_errors = errors
        .into_iter()
        .map(|(line, reason)| LineErrorView { line, reason })
        .collect();
    Ok(AppJson(view))
}

async fn steer(
    state: &AppState,
    caller: &Caller,
    id: &str,
    from: &[JobState],
    to: JobState,
) -> Result<AppJson<JobView>, ApiError> {
    let job = visible_job(state, caller, id).await?;
    match state.store.transition(job.id, from, to, now_ms()).await? {
        Some(job) => Ok(AppJson(JobView::of(job, &state.key))),
        None => Err(ApiError::Conflict(refusal(job.state, from, to))),
    }
}

/// Why a job cannot be steered from `now` to `to`, in words: "the job has finished; only a
/// queued or running job can be paused".
fn refusal(now: JobState, from: &[JobState], to: JobState) -> String {
    let now = match now {
        JobState::Queued => "is queued",
        JobState::Running => "is running",
        JobState::Paused => "is paused",
        JobState::Succeeded => "has finished",
        JobState::Failed => "has failed",
        JobState::Cancelled => "was cancelled",
    };
    let verb = match to {
        JobState::Paused => "paused",
        JobState::Running | JobState::Queued => "resumed",
        JobState::Cancelled => "cancelled",
        JobState::Succeeded | JobState::Failed => "ended",
    };
    let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
    format!(
        "the job {now}; only a {} job can be {verb}",
        from.join(" or ")
    )
}

/// Pauses a queued or running job: chunks in flight finish, no new chunk starts.
#[utoipa::path(
    post,
    path = "/bulk/v1/jobs/{id}/pause",
    tag = "jobs",
    params(("id" = String, Path, format = Uuid, description = "The job's id.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The job, paused.", body = JobView),
        (status = 409, description = "The job is not queued or running.", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", description = "`404` No such job (that the caller may see).", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn pause_job(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<AppJson<JobView>, ApiError> {
    steer(
        &state,
        &caller,
        &id,
        &[JobState::Queued, JobState::Running],
        JobState::Paused,
    )
    .await
}

/// Resumes a paused job from its last checkpoint.
#[utoipa::path(
    post,
    path = "/bulk/v1/jobs/{id}/resume",
    tag = "jobs",
    params(("id" = String, Path, format = Uuid, description = "The job's id.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The job, queued or running again.", body = JobView),
        (status = 409, description = "The job is not paused.", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", description = "`404` No such job (that the caller may see).", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn resume_job(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<AppJson<JobView>, ApiError> {
    let resumed = steer(&state, &caller, &id, &[JobState::Paused], JobState::Running).await?;
    state.work.notify_waiters();
    Ok(resumed)
}

/// Cancels a job for good: what was applied stays, the rest is not applied, and the job's
/// input is purged at once.
#[utoipa::path(
    post,
    path = "/bulk/v1/jobs/{id}/cancel",
    tag = "jobs",
    params(("id" = String, Path, format = Uuid, description = "The job's id.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The job, cancelled.", body = JobView),
        (status = 409, description = "The job has already ended.", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", description = "`404` No such job (that the caller may see).", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn cancel_job(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<AppJson<JobView>, ApiError> {
    steer(
        &state,
        &caller,
        &id,
        &[JobState::Queued, JobState::Running, JobState::Paused],
        JobState::Cancelled,
    )
    .await
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
        assert!(JobState::parse("intake").is_err());
    }

    fn job() -> Job {
        Job {
            id: Uuid::nil(),
            state: JobState::Running,
            submitted_by: Subject::parse("op").unwrap(),
            created_at_ms: 1_700_000_000_123,
            started_at_ms: Some(1_700_000_000_000),
            finished_at_ms: None,
            total: 1000,
            applied: 400,
            rejected: 100,
            rejected_by_reason: Rejections::default(),
            invalid_lines: 0,
            retrying: 0,
            error: None,
            sealed_name: None,
        }
    }

    #[test]
    fn a_refused_steer_says_what_the_job_is_in_words() {
        assert_eq!(
            refusal(
                JobState::Succeeded,
                &[JobState::Queued, JobState::Running],
                JobState::Paused
            ),
            "the job has finished; only a queued or running job can be paused"
        );
        assert_eq!(
            refusal(JobState::Cancelled, &[JobState::Paused], JobState::Running),
            "the job was cancelled; only a paused job can be resumed"
        );
    }

    #[test]
    fn a_jobs_name_opens_with_its_key_only() {
        let key = JobKey::random();
        let mut j = job();
        j.sealed_name = Some(key.seal_name(j.id, "leavers-december.csv"));
        assert_eq!(
            JobView::at(j.clone(), 0, &key).name.as_deref(),
            Some("leavers-december.csv")
        );
        assert_eq!(JobView::at(j, 0, &JobKey::random()).name, None);
    }

    #[test]
    fn views_show_times_as_rfc3339() {
        let view = JobView::at(job(), 1_700_000_010_000, &JobKey::random());
        assert_eq!(view.created_at, "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn rate_and_eta_follow_progress() {
        // 500 operations in 10 s: 50/s, 500 to go → 10 s.
        let view = JobView::at(job(), 1_700_000_010_000, &JobKey::random());
        assert_eq!(view.rate_per_sec, 50.0);
        assert_eq!(view.eta_secs, Some(10));
    }
}
