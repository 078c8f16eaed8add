//! The one error type of the crate.
//!
//! Policy: a refused token is a 401 whose detail says what is wrong in general terms ("the token
//! has expired", "the token is not meant for this service") and never echoes the token or any
//! claim from it, so a response or a log line cannot become a way to replay or inspect someone's
//! credentials. A missing IdP is a 503 (the client may retry); a broken set-up (bad config, an
//! unreadable key file) is a 500 whose cause stays in the error chain for the log.

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use service_kit::Problem;
use std::path::PathBuf;

/// Everything that can go wrong while authenticating a caller or setting up the keys to do so.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The request carries no `Authorization: Bearer …` header.
    #[error("a bearer token is required")]
    MissingToken,
    /// A token was presented and refused. The reason is phrased for the caller and holds no
    /// part of the token.
    #[error("{0}")]
    InvalidToken(String),
    /// The identity provider's key set could not be fetched, so no token can be checked now.
    #[error("the identity provider's signing keys could not be fetched")]
    KeysUnavailable(#[source] anyhow::Error),
    /// The configuration is refused (dev issuer outside dev mode, a JWKS URL that is not
    /// http(s), …). Raised at start-up, never per request.
    #[error("invalid auth configuration: {0}")]
    Config(String),
    /// A key file could not be read, written or parsed.
    #[error("key file {}: {reason}", path.display())]
    KeyFile {
        /// The file concerned.
        path: PathBuf,
        /// What went wrong with it.
        reason: String,
    },
    /// Key material given in memory (PEM text) is not a usable key.
    #[error("unusable key: {0}")]
    Key(String),
}

impl AuthError {
    /// A refused token with the given general reason.
    pub fn invalid(reason: impl Into<String>) -> Self {
        Self::InvalidToken(reason.into())
    }

    /// Whether this error means "the caller is not authenticated" (answered 401).
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, Self::MissingToken | Self::InvalidToken(_))
    }

    /// The problem+json body this error is answered with.
    pub fn to_problem(&self) -> Problem {
        match self {
            Self::MissingToken | Self::InvalidToken(_) => {
                Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized")
                    .with_detail(self.to_string())
            }
            Self::KeysUnavailable(_) => Problem::unavailable(
                "the identity provider's signing keys could not be fetched; retry later",
            ),
            Self::Config(_) | Self::KeyFile { .. } | Self::Key(_) => Problem::internal(),
        }
    }

    pub(crate) fn key_file(path: impl Into<PathBuf>, reason: impl std::fmt::Display) -> Self {
        Self::KeyFile {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let mut res = self.to_problem().into_response();
        // RFC 6750 §3: a 401 names the scheme; a refused token also says why, in the standard
        // error code only (the detail is in the body).
        let challenge = match self {
            Self::MissingToken => Some("Bearer"),
            Self::InvalidToken(_) => Some(r#"Bearer error="invalid_token""#),
            _ => None,
        };
        if let Some(c) = challenge {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
        }
        res
    }
}

/// Maps a jsonwebtoken failure to a reason a caller can act on, without the token's content.
pub(crate) fn describe_jwt_error(e: &jsonwebtoken::errors::Error) -> AuthError {
    use jsonwebtoken::errors::ErrorKind as K;
    let reason: String = match e.kind() {
        K::ExpiredSignature => "the token has expired".into(),
        K::ImmatureSignature => "the token is not valid yet".into(),
        K::InvalidIssuer => "the token was issued by an issuer this service does not trust".into(),
        K::InvalidAudience => "the token is not meant for this service".into(),
        K::InvalidSubject => "the token's subject is not accepted".into(),
        K::MissingRequiredClaim(c) => match c.as_str() {
            // The names are the registered claim names, from our own list: safe to repeat.
            "exp" | "iss" | "aud" | "nbf" | "sub" => {
                format!("the token lacks the required claim '{c}'")
            }
            _ => "the token lacks a required claim".into(),
        },
        K::InvalidSignature => "the token's signature does not verify".into(),
        K::InvalidAlgorithm | K::MissingAlgorithm | K::InvalidAlgorithmName => {
            "the token's algorithm is not allowed for its key".into()
        }
        _ => "the token is malformed".into(),
    };
    AuthError::InvalidToken(reason)
}
