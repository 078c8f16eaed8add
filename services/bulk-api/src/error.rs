//! bulk-api's one error type.
//!
//! Policy: a 4xx says what is wrong with the request in words the caller can act on; a 5xx says
//! only that something failed, and its cause rides in the response's extensions to the logging
//! layer (`service_kit::failure::log_failures`), which writes it inside the request's span (so with the request id)
//! and never sends it. No error names a person: line errors carry a line number and a fixed
//! reason, never the line (INV-6).

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use serde::Serialize;
use service_kit::Problem;

/// One refused line of a job's input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct LineErrorView {
    /// The line's number, from 1.
    pub line: u64,
    /// Why it was refused (never the line's content).
    pub reason: String,
}

/// Everything a bulk-api handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The caller is authenticated but is not an operator.
    #[error("bulk jobs are for operators; the caller lacks the operator role")]
    NotOperator,
    /// The caller may not submit a job touching these groups.
    #[error("{0}")]
    Forbidden(String),
    /// A query parameter is not acceptable.
    #[error("{0}")]
    InvalidQuery(String),
    /// The request is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The input has malformed lines and the caller asked to reject such a job whole.
    #[error("{invalid} line(s) of the input are malformed; nothing was queued")]
    BadLines {
        /// How many lines are malformed.
        invalid: u64,
        /// The first of them.
        errors: Vec<LineErrorView>,
    },
    /// The input's format is neither named (`?format=`) nor given by a content type we read.
    #[error("send the input as application/x-ndjson or text/csv, or say which with ?format=ndjson or ?format=csv")]
    UnsupportedMediaType,
    /// The input holds more operations than a job may.
    #[error("a job holds at most {0} operations")]
    TooManyOps(u64),
    /// The upload is larger than the upload limit.
    #[error("the upload is larger than this service accepts")]
    TooLarge,
    /// No such job (or not one the caller may see).
    #[error("no such job")]
    NotFound,
    /// The job is not in a state that allows this.
    #[error("{0}")]
    Conflict(String),
    /// A service this request needs did not answer.
    #[error("{0}")]
    Unavailable(String),
    /// The upload failed while it was read.
    #[error("the upload could not be read: {0}")]
    Upload(String),
    /// The database failed.
    #[error("database: {0}")]
    Store(#[from] sqlx::Error),
}

#[derive(Serialize)]
struct BadLinesBody<'a> {
    #[serde(flatten)]
    problem: Problem,
    invalid_lines: u64,
    errors: &'a [LineErrorView],
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = match &self {
            Self::NotOperator | Self::Forbidden(_) => Problem::forbidden(self.to_string()),
            Self::InvalidQuery(why) | Self::Invalid(why) => Problem::invalid(why.clone()),
            Self::BadLines { invalid, errors } => {
                let body = BadLinesBody {
                    problem: Problem::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid-lines",
                        "Malformed lines",
                    )
                    .with_detail(self.to_string()),
                    invalid_lines: *invalid,
                    errors,
                };
                let mut res = (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    serde_json::to_vec(&body).unwrap_or_default(),
                )
                    .into_response();
                res.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/problem+json"),
                );
                return res;
            }
            Self::TooManyOps(_) => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
            )
            .with_detail(self.to_string()),
            Self::TooLarge => Problem::from_status(StatusCode::PAYLOAD_TOO_LARGE),
            Self::UnsupportedMediaType => Problem::from_status(StatusCode::UNSUPPORTED_MEDIA_TYPE)
                .with_detail(self.to_string()),
            Self::NotFound => Problem::not_found(self.to_string()),
            Self::Conflict(why) => Problem::conflict(why.clone()),
            Self::Unavailable(why) => Problem::unavailable(why.clone()),
            Self::Upload(_) => Problem::bad_request(self.to_string()),
            Self::Store(_) => Problem::internal(),
        };
        service_kit::failure::with_cause(problem.into_response(), &self)
    }
}
