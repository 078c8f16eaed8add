//! Logging the cause of a 5xx without sending it.
//!
//! The [`problem`](crate::problem) policy says a 5xx tells the client only that something failed,
//! while its cause goes to the log with the request id. Every service's error type attaches the
//! cause to its response with [`with_cause`], and one layer, [`log_failures`], writes it inside
//! the request's trace span: so every service logs a failure the same way and exactly once,
//! with its route and request id, and no error type has to log for itself. The cause never
//! reaches the client: it lives in the response's extensions, which are not serialised.

use axum::response::Response;
use std::fmt::Display;
use std::sync::Arc;

/// The cause of a 5xx, riding in the response's extensions from the error type to
/// [`log_failures`]. Public so that a service's tests can check that a failure carries one;
/// its text is readable only by the logging layer.
#[derive(Debug, Clone)]
pub struct FailureCause(Arc<str>);

/// Attaches `cause` to `res` when `res` is a 5xx, for [`log_failures`] to log; any other
/// response is returned as it is (a 4xx explains itself to the client and is not an incident).
///
/// The cause is rendered only for a 5xx, and must name no caller or value (INV-6): it is
/// written to the log verbatim.
pub fn with_cause(mut res: Response, cause: impl Display) -> Response {
    if res.status().is_server_error() {
        res.extensions_mut()
            .insert(FailureCause(cause.to_string().into()));
    }
    res
}

/// Logs the cause of every 5xx a handler answered (see [`with_cause`]), inside the request's
/// span and so with its route and request id. [`assemble`](crate::assemble) puts it inside
/// the common layers; a router put together by hand wears it as
/// `axum::middleware::map_response(log_failures)`, inside them too.
pub async fn log_failures(res: Response) -> Response {
    if let Some(FailureCause(cause)) = res.extensions().get::<FailureCause>() {
        tracing::error!(status = res.status().as_u16(), %cause, "request failed");
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;
    use http::StatusCode;

    #[test]
    fn only_server_errors_carry_a_cause() {
        let failed = with_cause(
            StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            "disk full",
        );
        assert_eq!(
            failed.extensions().get::<FailureCause>().map(|c| &*c.0),
            Some("disk full")
        );
        let refused = with_cause(StatusCode::CONFLICT.into_response(), "taken");
        assert!(refused.extensions().get::<FailureCause>().is_none());
    }

    #[tokio::test]
    async fn logging_a_failure_leaves_the_response_as_it_was() {
        let res = with_cause(StatusCode::BAD_GATEWAY.into_response(), "upstream");
        let res = log_failures(res).await;
        assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
        assert!(res.extensions().get::<FailureCause>().is_some());
    }
}
