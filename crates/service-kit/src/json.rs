//! `AppJson`: axum's `Json`, but a body that does not parse becomes our problem+json (with the
//! reason serde gave, which names the field) instead of axum's plain-text rejection.

use crate::Problem;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// JSON in and out with problem+json rejections.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppJson<T>(pub T);

impl<S, T> FromRequest<S> for AppJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(rejection_to_problem(&rejection)),
        }
    }
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
