//! Extractors the handlers share: the group id in the path, refused as problem+json (422) when
//! it is not a UUID, instead of axum's plain-text 400.

use crate::error::ApiError;
use axum::extract::{FromRequestParts, Path};
use domain::GroupId;
use http::request::Parts;

/// The `{group_id}` path parameter.
#[derive(Debug, Clone, Copy)]
pub struct GroupPath(pub GroupId);

impl<S: Send + Sync> FromRequestParts<S> for GroupPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::InvalidGroupId)?;
        GroupId::parse(&raw)
            .map(Self)
            .map_err(|_| ApiError::InvalidGroupId)
    }
}
