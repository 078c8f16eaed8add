//! The tenant's one error type.
//!
//! Policy: a 4xx says what is wrong with the request — a missing or refused service token
//! (401), a service asking for an operation it is not allowed (403), an unknown group (404), an
//! address clash (409), a label that does not admit the identity's kind (403 `label-refused`,
//! naming the kind and the label only), a bad id or body or a request naming nobody (422) — and
//! never says anything about who is in a group (INV-1, INV-3). A 5xx says only that something
//! failed; its cause rides in the response's extensions
//! ([`with_cause`](service_kit::failure::with_cause)) to
//! [`log_failures`](service_kit::failure::log_failures), which logs it inside the request's
//! span (with the request id) and never sends it. No cause names a person: the store's errors
//! carry no subject, address or tag (INV-6).

use crate::access::Operation;
use crate::store::StoreError;
use auth::AuthError;
use axum::response::{IntoResponse, Response};
use domain::ServiceName;
use http::StatusCode;
use service_kit::Problem;

/// Everything a tenant handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No service token, or one that does not verify.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// A trusted service asked for an operation it is not allowed.
    #[error("{service} may not call {op}")]
    Forbidden {
        /// Who asked.
        service: ServiceName,
        /// What it asked for.
        op: Operation,
    },
    /// The group id in the path is not a UUID.
    #[error("invalid group id: must be a UUID")]
    InvalidGroupId,
    /// A field is outside its limits (the detail says which and how).
    #[error("{0}")]
    Invalid(String),
    /// A directory call failed or was refused.
    #[error(transparent)]
    Directory(#[from] crate::directory::DirectoryError),
    /// The store failed or refused.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ApiError {
    /// The problem+json body this error is answered with.
    pub fn problem(&self) -> Problem {
        match self {
            Self::Auth(e) => e.to_problem(),
            Self::Forbidden { .. } => Problem::forbidden(self.to_string()),
            Self::InvalidGroupId | Self::Invalid(_) => Problem::invalid(self.to_string()),
            Self::Directory(e) => e.problem(),
            Self::Store(StoreError::GroupNotFound) => Problem::not_found(
                "no distribution group with this id is provisioned in the tenant",
            ),
            Self::Store(StoreError::AddressTaken) => {
                Problem::new(StatusCode::CONFLICT, "address-taken", "Address taken")
                    .with_detail("another distribution group already has this address")
            }
            Self::Store(StoreError::AddressMismatch) => Problem::new(
                StatusCode::CONFLICT,
                "address-mismatch",
                "Address mismatch",
            )
            .with_detail(
                "the distribution group exists with a different address; addresses do not change",
            ),
            Self::Store(StoreError::Unidentified(e)) => Problem::invalid(e.to_string()),
            // The kind and the label, nothing about the group's membership.
            Self::Store(StoreError::LabelRefused(refusal)) => Problem::new(
                StatusCode::FORBIDDEN,
                "label-refused",
                "Refused by the group's label",
            )
            .with_detail(refusal.to_string()),
            Self::Store(StoreError::Sealed(_) | StoreError::Db(_)) => Problem::internal(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Auth(e) = self {
            // Keeps the `WWW-Authenticate` challenge the auth crate adds.
            return e.into_response();
        }
        service_kit::failure::with_cause(self.problem().into_response(), &self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::SealError;
    use service_kit::failure::FailureCause;

    #[test]
    fn each_error_has_its_status_and_type() {
        let cases = [
            (ApiError::Auth(AuthError::MissingToken), 401, "unauthorized"),
            (
                ApiError::Forbidden {
                    service: ServiceName::BulkApi,
                    op: Operation::CheckMember,
                },
                403,
                "forbidden",
            ),
            (ApiError::InvalidGroupId, 422, "invalid-input"),
            (ApiError::Store(StoreError::GroupNotFound), 404, "not-found"),
            (
                ApiError::Store(StoreError::AddressTaken),
                409,
                "address-taken",
            ),
            (
                ApiError::Store(StoreError::AddressMismatch),
                409,
                "address-mismatch",
            ),
            (
                ApiError::Store(StoreError::Unidentified(crate::identity::Unidentified)),
                422,
                "invalid-input",
            ),
            (
                ApiError::Store(StoreError::LabelRefused(
                    domain::EntryRefusal::GuestsNotAllowed(
                        domain::LabelName::parse("Confidential").unwrap(),
                    ),
                )),
                403,
                "label-refused",
            ),
            (
                ApiError::Store(StoreError::Db(sqlx::Error::PoolTimedOut)),
                500,
                "internal",
            ),
        ];
        for (err, status, slug) in cases {
            let p = err.problem();
            assert_eq!(p.status, status, "{err}");
            assert_eq!(p.type_, format!("urn:hush:problem:{slug}"), "{err}");
        }
    }

    #[test]
    fn forbidden_names_the_service_and_the_operation() {
        let p = ApiError::Forbidden {
            service: ServiceName::BulkApi,
            op: Operation::CheckMember,
        }
        .problem();
        assert_eq!(
            p.detail.as_deref(),
            Some("bulk-api may not call check-member")
        );
    }

    #[test]
    fn server_errors_hide_their_cause() {
        let res =
            ApiError::Store(StoreError::Sealed(SealError::UnknownKey("k1".into()))).into_response();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(res.extensions().get::<FailureCause>().is_some());
        let p = ApiError::Store(StoreError::Sealed(SealError::UnknownKey("k1".into()))).problem();
        assert!(!p.detail.unwrap_or_default().contains("k1"));
    }
}
