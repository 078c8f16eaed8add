//! The built-in dev issuer: a tiny stand-in for the company IdP so `hush up` works on a laptop
//! with no set-up. It signs whatever claims it is asked to, which is exactly why a verifier
//! refuses its issuer outside dev mode.

use crate::keys::{self, now_secs};
use crate::user::{
    JwtArgs, Verifier, DEFAULT_EMAIL_CLAIM, DEFAULT_KIND_CLAIM, DEFAULT_ROLES_CLAIM,
};
use crate::AuthError;
use axum::routing::get;
use axum::{Json, Router};
use domain::IdentityKind;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The `iss` of every dev-issuer token. Verifiers refuse it unless in dev mode.
pub const DEV_ISSUER: &str = "urn:hush:dev-issuer";

/// The file, inside the directory given to [`DevIssuer::load_or_create`], holding its key.
pub const DEV_KEY_FILE: &str = "dev-issuer.key.pem";

/// The path at which [`DevIssuer::router`] serves the JWKS.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// Who a dev token speaks for. Values are signed as given: validate them first (a verifier
/// refuses a token whose subject or e-mail does not parse).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevClaims {
    /// `sub`.
    pub sub: String,
    /// `email`, omitted when `None`.
    pub email: Option<String>,
    /// `hush_kind`.
    pub kind: IdentityKind,
    /// `roles`.
    pub roles: Vec<String>,
}

impl DevClaims {
    /// Someone at the dev company: `sub`, the e-mail `sub@corp.example`, `kind` and `roles`.
    pub fn corporate(sub: &str, kind: IdentityKind, roles: &[&str]) -> Self {
        Self {
            sub: sub.into(),
            email: Some(format!("{sub}@corp.example")),
            kind,
            roles: roles.iter().map(|r| r.to_string()).collect(),
        }
    }
}

/// The dev issuer: an ES256 key kept on local disk, its JWKS, and a minting function.
/// Cheap to clone.
#[derive(Clone)]
pub struct DevIssuer {
    inner: Arc<Inner>,
}

struct Inner {
    kid: String,
    key: p256::ecdsa::SigningKey,
    jwks: Value,
    path: PathBuf,
}

impl std::fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIssuer")
            .field("kid", &self.inner.kid)
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl DevIssuer {
    /// Loads the key from `dir/dev-issuer.key.pem`; `None` when there is none there (no stack
    /// has started with this folder), so a token minted from it would be refused everywhere.
    pub fn load(dir: &Path) -> Result<Option<Self>, AuthError> {
        if !dir.join(DEV_KEY_FILE).exists() {
            return Ok(None);
        }
        Self::load_or_create(dir).map(Some)
    }

    /// Loads the key from `dir/dev-issuer.key.pem`, creating it (mode 0600, and `dir` if
    /// needed) on first use, so tokens minted earlier stay valid across restarts.
    pub fn load_or_create(dir: &Path) -> Result<Self, AuthError> {
        let path = dir.join(DEV_KEY_FILE);
        if !path.exists() {
            let fresh = keys::random_p256();
            keys::write_new(&path, &keys::private_pem(&fresh)?, true)?;
        }
        // Read back whatever is there now (ours, or a concurrent creator's).
        let secret = keys::read_private(&path)?;
        let public = secret.public_key();
        let kid = keys::thumbprint(&public);
        let (x, y) = keys::xy(&public);
        let jwks = json!({
            "keys": [{
                "kty": "EC",
                "crv": "P-256",
                "x": x,
                "y": y,
                "kid": kid,
                "alg": "ES256",
                "use": "sig",
            }]
        });
        let key = p256::ecdsa::SigningKey::from(&secret);
        Ok(Self {
            inner: Arc::new(Inner {
                kid,
                key,
                jwks,
                path,
            }),
        })
    }

    /// The key id: the RFC 7638 thumbprint of the public key.
    pub fn kid(&self) -> &str {
        &self.inner.kid
    }

    /// The file the key lives in.
    pub fn key_path(&self) -> &Path {
        &self.inner.path
    }

    /// The JWKS document (`{"keys": [ … ]}`) with the one public key.
    pub fn jwks(&self) -> Value {
        self.inner.jwks.clone()
    }

    /// Serves the JWKS at `GET /.well-known/jwks.json`.
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let jwks = self.jwks();
        Router::new().route(JWKS_PATH, get(move || async move { Json(jwks) }))
    }

    /// A token for `claims`, addressed to `audience`, valid from now for `ttl`. Signing cannot
    /// fail.
    pub fn mint(&self, claims: &DevClaims, audience: &str, ttl: Duration) -> String {
        let now = now_secs();
        let mut body = json!({
            "iss": DEV_ISSUER,
            "sub": claims.sub,
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + ttl.as_secs(),
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        body[DEFAULT_KIND_CLAIM] = json!(claims.kind.as_str());
        body[DEFAULT_ROLES_CLAIM] = json!(claims.roles);
        if let Some(email) = &claims.email {
            body[DEFAULT_EMAIL_CLAIM] = json!(email);
        }
        let header = json!({ "alg": "ES256", "typ": "JWT", "kid": self.inner.kid });
        keys::sign_es256(&self.inner.key, &header, &body)
    }

    /// The arguments a service uses to accept this issuer's tokens for `audience`, with its
    /// JWKS served at `jwks_url`. Dev mode is on: this issuer is accepted nowhere else.
    pub fn jwt_args(&self, audience: &str, jwks_url: &str) -> JwtArgs {
        let mut args = JwtArgs::new(DEV_ISSUER, audience, jwks_url);
        args.dev_mode = true;
        args
    }

    /// A dev-mode verifier for `audience` holding this issuer's key directly (no HTTP): for the
    /// single-process stack and tests.
    pub fn verifier(&self, audience: &str) -> Result<Verifier, AuthError> {
        Verifier::with_jwks(
            self.jwt_args(audience, "http://127.0.0.1/unused"),
            &self.inner.jwks,
        )
    }
}
