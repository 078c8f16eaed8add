//! `AppJson`: axum's `Json`, but a body that does not parse becomes our problem+json (with the
//! reason serde gave, which names the field) instead of axum's plain-text rejection.
//!
//! Every request body Hush takes as JSON is an object, and `AppJson` refuses anything else
//! (array, string, number, boolean, `null`) with a 422 before the handler runs. serde alone would
//! not: a derived struct also deserialises from an array of its fields in order, so `[]` made a
//! `PATCH` whose fields are all optional a successful no-op, and `["x"]` set the first field.
//! A future endpoint that takes another JSON type at the top level needs its own extractor.

use crate::Problem;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// JSON in and out with problem+json rejections; a request body must be a JSON object.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppJson<T>(pub T);

impl<S, T> FromRequest<S> for AppJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !json_content_type(req.headers()) {
            return Err(Problem::from_status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::from_status(StatusCode::PAYLOAD_TOO_LARGE)
            } else {
                Problem::bad_request(e.body_text())
            }
        })?;
        not_an_object(&bytes)?;
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(rejection_to_problem(&rejection)),
        }
    }
}

/// `application/json` or any `application/…+json`, parameters ignored (as axum's `Json` does).
fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"))
}

/// Refuses a body whose top-level value is not an object: 422 when it is JSON of another type,
/// 400 when it is not JSON at all. A body that starts like an object is left to serde, whose
/// errors name the field.
fn not_an_object(bytes: &[u8]) -> Result<(), Problem> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        return Ok(());
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        Problem::bad_request(format!("Failed to parse the request body as JSON: {e}"))
    })?;
    let kind = match value {
        serde_json::Value::Object(_) => return Ok(()),
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Null => "null",
    };
    Err(Problem::invalid(format!(
        "the request body must be a JSON object, not {kind}"
    )))
}

fn rejection_to_problem(r: &JsonRejection) -> Problem {
    match r {
        JsonRejection::JsonDataError(e) => Problem::invalid(e.body_text()),
        JsonRejection::JsonSyntaxError(e) => Problem::bad_request(e.body_text()),
        JsonRejection::MissingJsonContentType(_) => {
            Problem::from_status(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        }
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Problem::from_status(StatusCode::PAYLOAD_TOO_LARGE)
        }
        other => Problem::bad_request(other.body_text()),
    }
}

impl<T: Serialize> IntoResponse for AppJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::patch;
    use axum::Router;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tower::ServiceExt as _;

    /// A change request whose fields are all optional, like `PATCH /control/v1/groups/{id}`'s.
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "only deserialised")]
    struct Change {
        description: Option<String>,
        owners: Option<Vec<String>>,
    }

    /// A router whose handler counts the calls that reach it.
    fn app(calls: Arc<AtomicUsize>) -> Router {
        Router::new().route(
            "/",
            patch(move |AppJson(_): AppJson<Change>| async move {
                calls.fetch_add(1, Ordering::SeqCst);
                StatusCode::OK
            }),
        )
    }

    async fn send(body: &'static str, content_type: &str) -> (StatusCode, String, Problem) {
        let calls = Arc::new(AtomicUsize::new(0));
        let res = app(calls.clone())
            .oneshot(
                Request::patch("/")
                    .header(header::CONTENT_TYPE, content_type)
                    .body(axum::body::Body::from(body))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = res.status();
        let media = res
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .unwrap();
        if status.is_success() {
            assert_eq!(calls.load(Ordering::SeqCst), 1);
            return (status, media, Problem::from_status(status));
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            0,
            "a refused body reached the handler"
        );
        (status, media, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn a_body_of_another_json_type_is_refused_before_the_handler_runs() {
        for (body, kind) in [
            ("[]", "an array"),
            (r#"["a description"]"#, "an array"),
            (r#""text""#, "a string"),
            ("42", "a number"),
            (" true", "a boolean"),
            ("null", "null"),
        ] {
            let (status, media, problem) = send(body, "application/json").await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            assert_eq!(media, crate::problem::PROBLEM_JSON, "{body}");
            assert_eq!(problem.type_, "urn:hush:problem:invalid-input", "{body}");
            assert_eq!(
                problem.detail.as_deref(),
                Some(format!("the request body must be a JSON object, not {kind}").as_str()),
            );
        }
    }

    #[tokio::test]
    async fn an_object_passes_and_broken_or_unlabelled_json_keeps_its_answer() {
        let (status, ..) = send(r#" {"description": "x"}"#, "application/json").await;
        assert_eq!(status, StatusCode::OK);
        let (status, ..) = send("{}", "application/merge-patch+json; charset=utf-8").await;
        assert_eq!(status, StatusCode::OK);
        for broken in ["[1", r#"{"description": "x""#, "", "nope"] {
            let (status, _, problem) = send(broken, "application/json").await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{broken}");
            assert_eq!(problem.type_, "urn:hush:problem:bad-request");
        }
        let (status, _, problem) = send(r#"{"colour": 1}"#, "application/json").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(problem.detail.unwrap().contains("colour"));
        let (status, ..) = send("{}", "text/plain").await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
}
