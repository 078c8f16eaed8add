//! Extractors that check who is calling and what the path names before a body is read, so a
//! caller without the right gets 403 whatever the body holds, and a malformed id is a
//! problem+json 422 instead of axum's plain-text 400.

use crate::error::ApiError;
use crate::labels::LABEL_ADMIN;
use crate::AppState;
use auth::Caller;
use axum::extract::{FromRequestParts, Path};
use axum::response::{IntoResponse, Response};
use domain::{GroupId, IdentityKind, LabelName};
use http::request::Parts;

/// A group id from the path, parsed.
#[derive(Debug, Clone, Copy)]
pub struct GroupPath(pub GroupId);

impl<S: Send + Sync> FromRequestParts<S> for GroupPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let invalid = || ApiError::Invalid("invalid group id: must be a UUID".into());
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| invalid())?;
        GroupId::parse(&raw).map(Self).map_err(|_| invalid())
    }
}

/// The `{id}` of a label change, a move to another label or a break-glass request, from its
/// path segment: a UUID, or a 422 that says so.
pub(crate) fn id_in_path(raw: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(raw).map_err(|_| ApiError::Invalid("id: must be a UUID".into()))
}

/// A label name from the path, parsed.
#[derive(Debug, Clone)]
pub struct LabelPath(pub LabelName);

impl<S: Send + Sync> FromRequestParts<S> for LabelPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::Invalid("invalid label name".into()))?;
        Ok(Self(LabelName::parse(raw)?))
    }
}

/// The request's id (`x-request-id`, which the common layers set if the client did not), kept
/// to its printable ASCII and at most 128 characters; `None` if it is missing or not text.
/// Never rejects: it is read to record beside catalog changes, not to check anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestId(pub Option<String>);

impl RequestId {
    /// The id of a request with these headers.
    pub fn of(headers: &http::HeaderMap) -> Self {
        Self(
            headers
                .get(service_kit::http::REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.chars().filter(char::is_ascii_graphic).take(128).collect()),
        )
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::of(&parts.headers))
    }
}

async fn caller(parts: &mut Parts, state: &AppState) -> Result<Caller, Response> {
    <Caller as FromRequestParts<AppState>>::from_request_parts(parts, state)
        .await
        .map_err(IntoResponse::into_response)
}

/// A signed-in caller with the role `label-admin`.
#[derive(Debug, Clone)]
pub struct LabelAdmin(pub Caller);

impl FromRequestParts<AppState> for LabelAdmin {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = caller(parts, state).await?;
        if !caller.has_role(LABEL_ADMIN) {
            return Err(ApiError::MissingRole(LABEL_ADMIN).into_response());
        }
        Ok(Self(caller))
    }
}

/// A signed-in caller with the role `operator`: who runs Hush for the company (offboards
/// identities, registers the apps that check access).
#[derive(Debug, Clone)]
pub struct Operator(pub Caller);

impl FromRequestParts<AppState> for Operator {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = caller(parts, state).await?;
        if !caller.has_role(crate::identities::OPERATOR) {
            return Err(ApiError::MissingRole(crate::identities::OPERATOR).into_response());
        }
        Ok(Self(caller))
    }
}

/// A signed-in employee (identity kind `member`): the only kind that may create groups.
#[derive(Debug, Clone)]
pub struct Employee(pub Caller);

impl FromRequestParts<AppState> for Employee {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = caller(parts, state).await?;
        match caller.kind {
            IdentityKind::Member => Ok(Self(caller)),
            IdentityKind::Guest => Err(ApiError::CreatorKind("guest").into_response()),
            IdentityKind::Agent => Err(ApiError::CreatorKind("AI agent").into_response()),
        }
    }
}
