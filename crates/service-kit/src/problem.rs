//! RFC 9457 problem details. Every error any Hush service answers is one of these, with a stable
//! `type` (`urn:hush:problem:<slug>`) that clients may match on.
//!
//! Policy: a 4xx says what is wrong with the request; a 5xx says only that something failed and
//! carries the request id, while the cause goes to the log (never to the client).

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem details object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// Stable identifier of the kind of problem, `urn:hush:problem:<slug>`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Short human-readable summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What is wrong with this request, in words a person can act on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Problem {
    /// A problem of kind `slug` with the given status and title.
    pub fn new(status: StatusCode, slug: &str, title: impl Into<String>) -> Self {
        Self {
            type_: format!("urn:hush:problem:{slug}"),
            title: title.into(),
            status: status.as_u16(),
            detail: None,
        }
    }

    /// Adds the detail sentence.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The status as a `StatusCode`.
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// 400: the request is malformed.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", "Bad request").with_detail(detail)
    }

    /// 422: the request is well-formed but a value is not acceptable.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-input",
            "Invalid input",
        )
        .with_detail(detail)
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found").with_detail(detail)
    }

    /// 403: authenticated, but not allowed.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden").with_detail(detail)
    }

    /// 403 `not-owner`: only the group's owners may do this. One problem type for it across
    /// services (control-api's group writes, membership-api's owner routes).
    pub fn not_owner(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "not-owner", "Owners only").with_detail(detail)
    }

    /// 409.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", "Conflict").with_detail(detail)
    }

    /// 503: a dependency is down; the client may retry.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
        )
        .with_detail(detail)
    }

    /// 500 with no detail: the cause is logged by the caller, never sent.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal server error",
        )
        .with_detail("something went wrong on our side; the request id identifies it in our logs")
    }

    /// The generic problem for a bare status (used when a layer or the router itself answered).
    pub fn from_status(status: StatusCode) -> Self {
        let (slug, detail) = match status {
            StatusCode::NOT_FOUND => ("not-found", "no such resource"),
            StatusCode::METHOD_NOT_ALLOWED => (
                "method-not-allowed",
                "this method is not allowed on this resource",
            ),
            StatusCode::PAYLOAD_TOO_LARGE => (
                "payload-too-large",
                "the request body is larger than this service accepts",
            ),
            StatusCode::REQUEST_TIMEOUT => (
                "timeout",
                "the request took longer than this service allows",
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (
                "unsupported-media-type",
                "send the body as application/json",
            ),
            StatusCode::TOO_MANY_REQUESTS => ("rate-limited", "too many requests; retry later"),
            StatusCode::UNAUTHORIZED => ("unauthorized", "a valid bearer token is required"),
            StatusCode::SERVICE_UNAVAILABLE => ("unavailable", "the service is not ready"),
            s if s.is_server_error() => return Self::internal(),
            _ => ("http-error", "the request could not be processed"),
        };
        Self::new(status, slug, status.canonical_reason().unwrap_or("Error")).with_detail(detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let body = serde_json::to_vec(&self).unwrap_or_else(|_| b"{}".to_vec());
        let mut res = (status, body).into_response();
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_serialise_with_type_and_skip_empty_detail() {
        let p = Problem::new(StatusCode::CONFLICT, "x", "X");
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["type"], "urn:hush:problem:x");
        assert_eq!(v["status"], 409);
        assert!(v.get("detail").is_none());
    }

    #[test]
    fn server_errors_never_carry_detail_from_the_caller() {
        let p = Problem::from_status(StatusCode::BAD_GATEWAY);
        assert_eq!(p.type_, "urn:hush:problem:internal");
    }
}
