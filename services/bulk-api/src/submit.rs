//! `POST /bulk/v1/jobs`: a job's input, streamed in and parsed line by line, cut into chunks of
//! `--chunk-size` operations, each sealed (INV-5) and stored as it fills, so the upload is never
//! held whole in memory. The route has its own body limit (`--upload-limit-bytes`), larger than
//! every other route's.
//!
//! Who may submit: operators, any job; anyone else only jobs whose every group they own (checked
//! against control-api once the input is read, before anything is queued).

use crate::chunk::{self, Op};
use crate::error::{ApiError, LineErrorView};
use crate::intake::{Format, LineParser, Parsed};
use crate::jobs::{now_ms, JobView, OPERATOR_ROLE};
use crate::store::{Created, NewJob, MAX_LINE_ERRORS};
use crate::AppState;
use auth::Caller;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use domain::{GroupId, GroupState};
use http::{header, HeaderMap, StatusCode};
use http_body_util::BodyExt as _;
use serde::Deserialize;
use service_kit::{AppJson, Problem};
use std::collections::HashSet;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

/// The header that makes a resubmit answer the same job.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// What to do with a job some of whose lines are malformed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnBadLines {
    /// Refuse the whole job (422 with the bad lines); nothing is queued.
    #[default]
    Reject,
    /// Run the good lines; the bad ones are counted and listed in the job's report.
    Skip,
}

/// Query parameters of `POST /bulk/v1/jobs`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubmitParams {
    /// `reject` (default): a job with malformed lines is refused whole; `skip`: the good lines
    /// run and the bad ones are reported.
    #[param(inline)]
    pub on_bad_lines: Option<OnBadLines>,
    /// `ndjson` or `csv`, when the `Content-Type` does not say.
    #[param(pattern = "^(ndjson|csv)$")]
    pub format: Option<String>,
    /// The name of the file, shown in the job's report and history (1 to 200 characters, no
    /// control characters). Sealed at rest like the job's input.
    #[param(min_length = 1, max_length = 200)]
    pub name: Option<String>,
}

/// The most characters a job's file name may have.
pub const MAX_NAME_CHARS: usize = 200;

/// Checks a job's file name: 1 to [`MAX_NAME_CHARS`] characters, none of them a control
/// character; surrounding whitespace is dropped.
pub fn job_name(raw: &str) -> Result<String, ApiError> {
    let name = raw.trim();
    let count = name.chars().count();
    if count == 0 || count > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(ApiError::Invalid(format!(
            "name: the file's name must be 1 to {MAX_NAME_CHARS} characters with no control characters"
        )));
    }
    Ok(name.to_string())
}

/// The submission route, documented.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(submit_job))
}

/// Submits a job: NDJSON (`application/x-ndjson`) or CSV (`text/csv`), one `add` or `remove`
/// per line, up to `--max-ops` (1,000,000) operations.
///
/// Lines are read as they arrive; malformed ones are reported by line number and reason. With
/// an `Idempotency-Key` header, a resubmit by the same caller answers the job the first
/// submission created (200) without reading the body again.
#[utoipa::path(
    post,
    path = "/bulk/v1/jobs",
    tag = "jobs",
    params(SubmitParams, ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 200, description = "Makes a resubmit answer the same job: 1 to 200 visible characters.")),
    request_body(content = String, content_type = "application/x-ndjson", description = "One operation per line: {\"op\":\"add\"|\"remove\",\"group_id\":…,\"subject\"?,\"email\"?}; or CSV with a header op,group_id,subject,email."),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The job, queued.", body = JobView),
        (status = 200, description = "The job an earlier submission with the same Idempotency-Key created.", body = JobView),
        (status = 409, description = "A submission with this Idempotency-Key is still being received.", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", description = "`401` No valid bearer token. `403` The caller is not an operator and does not own every group the job names. `413` The upload or its number of operations is above the limit. `415` `unsupported-media-type`: the input is neither application/x-ndjson nor text/csv and `?format=` does not say which (the same status as every JSON endpoint sent another content type). `422` `invalid-lines`: malformed lines (with `errors`: line and reason) and on_bad_lines=reject; the input holds no operation (empty, a CSV header alone, or only malformed lines skipped); or `format` is neither ndjson nor csv.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`503` control-api could not say who owns the groups.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn submit_job(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<SubmitParams>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|r| ApiError::InvalidQuery(r.body_text()))?;
    let format = match params.format.as_deref() {
        Some("ndjson") => Format::Ndjson,
        Some("csv") => Format::Csv,
        Some(_) => return Err(ApiError::Invalid("format must be ndjson or csv".into())),
        None => headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(Format::from_content_type)
            .ok_or(ApiError::UnsupportedMediaType)?,
    };
    let key = match headers.get(IDEMPOTENCY_KEY) {
        None => None,
        Some(v) => {
            let k = v
                .to_str()
                .ok()
                .map(str::trim)
                .filter(|k| (1..=200).contains(&k.len()))
                .ok_or_else(|| {
                    ApiError::Invalid("Idempotency-Key must be 1 to 200 visible characters".into())
                })?;
            Some(k.to_string())
        }
    };
    let name = params.name.as_deref().map(job_name).transpose()?;
    let id = Uuid::new_v4();
    let new = NewJob {
        id,
        submitted_by: caller.subject.clone(),
        idempotency_key: key,
        sealed_name: name.map(|n| state.key.seal_name(id, &n)),
        now_ms: now_ms(),
    };
    match state.store.create_job(&new).await? {
        Created::New => {}
        Created::Existing(job) => {
            // The upload is read and dropped unparsed, so the client can finish sending it
            // and read the answer on a connection that stays usable.
            let mut body = body;
            while let Some(frame) = body.frame().await {
                if frame.is_err() {
                    break;
                }
            }
            return Ok((StatusCode::OK, AppJson(JobView::of(job, &state.key))).into_response());
        }
        Created::InProgress => {
            return Err(ApiError::Conflict(
                "a submission with this Idempotency-Key is still being received".into(),
            ))
        }
    }
    match receive(
        &state,
        &caller,
        id,
        format,
        params.on_bad_lines.unwrap_or_default(),
        body,
    )
    .await
    {
        Ok(()) => {}
        Err(e) => {
            // Nothing of a refused job stays behind, sealed or not.
            if let Err(d) = state.store.discard_job(id).await {
                tracing::warn!(error = %d, "could not discard a refused job; the sweeper will");
            }
            return Err(e);
        }
    }
    let job = state.store.job(id).await?.ok_or(ApiError::NotFound)?;
    let mut res = (StatusCode::CREATED, AppJson(JobView::of(job, &state.key))).into_response();
    if let Ok(loc) = header::HeaderValue::from_str(&format!("/bulk/v1/jobs/{id}")) {
        res.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(res)
}

/// Reads the upload into sealed chunks and queues the job, or says why not.
async fn receive(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    format: Format,
    on_bad: OnBadLines,
    mut body: Body,
) -> Result<(), ApiError> {
    let settings = &state.settings;
    let operator = caller.has_role(OPERATOR_ROLE);
    let mut parser = LineParser::new(format);
    let mut chunk: Vec<Op> = Vec::with_capacity(settings.chunk_size);
    let mut seq = 0u64;
    let mut total = 0u64;
    let mut invalid = 0u64;
    let mut errors: Vec<(u64, &'static str)> = Vec::new();
    let mut groups: HashSet<GroupId> = HashSet::new();
    let mut parsed: Vec<Parsed> = Vec::new();
    let mut ended = false;
    while !ended {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    parser.feed(&data, &mut |p| parsed.push(p));
                }
            }
            Some(Err(e)) => return Err(upload_error(&e)),
            None => {
                parser.finish(&mut |p| parsed.push(p));
                ended = true;
            }
        }
        for (line, result) in parsed.drain(..) {
            match result {
                Ok(op) => {
                    total += 1;
                    if total > settings.max_ops {
                        return Err(ApiError::TooManyOps(settings.max_ops));
                    }
                    if !operator {
                        groups.insert(op.group_id);
                    }
                    chunk.push(op);
                }
                Err(e) => {
                    invalid += 1;
                    if errors.len() < MAX_LINE_ERRORS {
                        errors.push((line, e.reason()));
                    }
                }
            }
        }
        // A malformed line dooms a job refused whole: stop storing its chunks.
        let doomed = invalid > 0 && on_bad == OnBadLines::Reject;
        while chunk.len() >= settings.chunk_size || (ended && !chunk.is_empty()) {
            let take = chunk.len().min(settings.chunk_size);
            let ops: Vec<Op> = chunk.drain(..take).collect();
            if !doomed {
                store_chunk(state, id, seq, &ops).await?;
            }
            seq += 1;
        }
    }
    if invalid > 0 && on_bad == OnBadLines::Reject {
        return Err(ApiError::BadLines {
            invalid,
            errors: errors
                .into_iter()
                .map(|(line, reason)| LineErrorView {
                    line,
                    reason: reason.to_string(),
                })
                .collect(),
        });
    }
    if total == 0 {
        // A job that would do nothing is a mistake (the wrong file, an export that came out
        // empty), not a success to report as "succeeded 0/0".
        return Err(ApiError::Invalid(if invalid > 0 {
            format!("the input holds no operation, only {invalid} malformed line(s); nothing was queued")
        } else {
            "the input holds no operation; nothing was queued".into()
        }));
    }
    if !operator {
        check_ownership(state, caller, groups).await?;
    }
    state
        .store
        .finish_intake(id, total, seq, invalid, &errors, now_ms())
        .await?;
    state.work.notify_waiters();
    Ok(())
}

async fn store_chunk(state: &AppState, id: Uuid, seq: u64, ops: &[Op]) -> Result<(), ApiError> {
    let sealed = chunk::seal(&state.key, id, seq, ops);
    state
        .store
        .add_chunk(id, seq, ops.len() as u64, &sealed)
        .await?;
    Ok(())
}

/// Owners may submit jobs only for groups they own (and that are active).
async fn check_ownership(
    state: &AppState,
    caller: &Caller,
    groups: HashSet<GroupId>,
) -> Result<(), ApiError> {
    let ids: Vec<GroupId> = groups.into_iter().collect();
    if ids.is_empty() {
        return Err(ApiError::NotOperator);
    }
    let found = state
        .control
        .groups(&ids)
        .await
        .map_err(|e| ApiError::Unavailable(format!("control-api: {e}")))?;
    let owned = found
        .iter()
        .filter(|g| g.state == GroupState::Active && g.owners.contains(&caller.subject))
        .count();
    if owned == ids.len() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "only operators, and owners for groups they own, may submit bulk jobs".into(),
        ))
    }
}

/// A body that failed while it was read: too large (413), or cut off.
fn upload_error(e: &axum::Error) -> ApiError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return ApiError::TooLarge;
        }
        source = err.source();
    }
    ApiError::Upload("the connection failed".into())
}
