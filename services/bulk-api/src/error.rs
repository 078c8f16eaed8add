//! bulk-api's one error type.
//!
//! Policy: a 4xx says what is wrong with the request in words the caller can act on; a 5xx says
//! only that something failed, and its cause rides in the response's extensions to the logging
//! layer ([`log_failures`]), which writes it inside the request's span (so with the request id)
//! and never sends it.

use axum::response::{IntoResponse, Response};
use service_kit::Problem;
use std::sync::Arc;

/// Everything a bulk-api handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The caller is authenticated but is not an operator.
    #[error("bulk jobs are for operators; the caller lacks the operator role")]
    NotOperator,
    /// A query parameter is not acceptable.
    #[error("{0}")]
    InvalidQuery(String),
    /// The database failed.
    #[error("database: {0}")]
    Store(#[from] sqlx::Error),
}

/// The cause of a 5xx, for [`log_failures`] only.
#[derive(Debug, Clone)]
struct FailureCause(Arc<str>);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = match &self {
            Self::NotOperator => Problem::forbidden(self.to_string()),
            Self::InvalidQuery(why) => Problem::invalid(why.clone()),
            Self::Store(_) => Problem::internal(),
        };
        let mut res = problem.into_response();
        if res.status().is_server_error() {
            res.extensions_mut()
                .insert(FailureCause(self.to_string().into()));
        }
        res
    }
}

/// Logs the cause of every 5xx a handler answered, inside the request's span.
pub async fn log_failures(res: Response) -> Response {
    if let Some(FailureCause(cause)) = res.extensions().get::<FailureCause>() {
        tracing::error!(status = res.status().as_u16(), %cause, "request failed");
    }
    res
}
