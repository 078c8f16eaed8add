//! `AppJson`: axum's `Json`, but a body that does not parse becomes our problem+json, whose
//! detail names the field and says what is wrong with it, instead of axum's plain-text
//! rejection ("Failed to deserialize the JSON body into the target type: …").
//!
//! Every request body Hush takes as JSON is an object, and `AppJson` refuses anything else
//! (array, string, number, boolean, `null`) with a 422 before the handler runs. serde alone would
//! not: a derived struct also deserialises from an array of its fields in order, so `[]` made a
//! `PATCH` whose fields are all optional a successful no-op, and `["x"]` set the first field.
//! A future endpoint that takes another JSON type at the top level needs its own extractor.

use crate::Problem;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::error::Category;

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
        parse(&bytes).map(Self)
    }
}

/// Reads `bytes` as a `T`: 400 when they are not JSON, 422 when they are JSON that does not fit,
/// each with a detail in our words that names the field (its path, as in `owners[1]`) and the
/// place, never the name of a Rust type or of the library that read it (issue 19).
fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.classify() == Category::Data {
            if path == "." {
                Problem::invalid(format!("the request body: {inner}"))
            } else {
                Problem::invalid(format!("the request body's `{path}`: {inner}"))
            }
        } else {
            not_json(&inner)
        }
    })?;
    de.end().map_err(|e| not_json(&e))?;
    Ok(value)
}

fn not_json(e: &serde_json::Error) -> Problem {
    Problem::bad_request(format!("the request body is not valid JSON: {e}"))
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
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| not_json(&e))?;
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

    #[tokio::test]
    async fn details_say_in_our_words_which_field_is_wrong_and_where() {
        let (status, _, problem) = send(r#"{"owners": ["a", 2]}"#, "application/json").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            problem.detail.as_deref(),
            Some("the request body's `owners[1]`: invalid type: integer `2`, expected a string at line 1 column 18"),
        );
        let (_, _, problem) = send(r#"{"colour": 1}"#, "application/json").await;
        let detail = problem.detail.unwrap();
        assert!(
            detail.starts_with("the request body's `colour`: unknown field `colour`"),
            "{detail}"
        );
        let (_, _, problem) = send(r#"{"description": "x"} trailing"#, "application/json").await;
        let detail = problem.detail.unwrap();
        assert!(
            detail.starts_with("the request body is not valid JSON: trailing characters"),
            "{detail}"
        );
        for broken in [
            "[1",
            r#"{"description": "x""#,
            r#"{"owners": ["a", 2]}"#,
            "{} x",
        ] {
            let (_, _, problem) = send(broken, "application/json").await;
            let detail = problem.detail.unwrap();
            assert!(
                !detail.contains("Failed to") && !detail.contains("target type"),
                "library wording in {detail:?}"
            );
        }
    }
}
