//! Authentication for Hush: who is calling, proven, before any handler runs.
//!
//! Two kinds of caller reach Hush, and this crate is the one place that tells them apart:
//!
//! - **Users**, with a JWT from the company IdP (OIDC). [`Verifier`] checks it against the IdP's
//!   JWKS (found through the issuer's discovery document unless its URL is given, fetched over
//!   HTTPS trusting the system roots plus an optional CA file, cached, refetched on an unknown
//!   `kid` at a bounded rate, so a key the IdP withdrew stops verifying), with
//!   `alg` pinned by the key's type (EC P-256 → ES256, RSA → RS256) so `none`, HS256-with-the-
//!   public-key and other algorithm confusions cannot pass, and `iss`, `aud`, `exp` (all three
//!   required) and `nbf` checked with 30 s of leeway. The claims become a [`Caller`], an axum
//!   extractor: a handler that takes one cannot run for an unauthenticated request.
//! - **Services**, with a short-lived ES256 service token signed by their own key
//!   ([`ServiceSigner`]). The isolated tenant accepts nothing else (INV-9); [`ServiceVerifier`]
//!   trusts one public key per service and yields a [`ServiceCaller`].
//!
//! [`DevIssuer`] stands in for the IdP in development (`hush up`, `hush token`); a verifier
//! outside dev mode refuses its issuer at start-up, so a production deployment cannot be
//! configured to trust a key that sits on a laptop.
//!
//! Every failure is an [`AuthError`], answered as problem+json: 401 with `WWW-Authenticate:
//! Bearer` for a missing or refused token (the detail says what is wrong in general terms and
//! never echoes the token), 503 when the IdP's keys cannot be fetched.

#![warn(missing_docs)]

mod client;
mod dev;
mod error;
mod jwks;
mod keys;
mod oidc;
mod revocation;
mod service;
mod user;

pub use client::ServiceClient;
pub use dev::{DevClaims, DevIssuer, DEV_ISSUER, DEV_KEY_FILE, JWKS_PATH};
pub use error::AuthError;
pub use oidc::{
    discover, discovery_url, idp_http_client, parse_discovery, Discovery, DiscoveryError,
    MAX_EXTRA_CA_CERTS,
};
pub use revocation::{Check, Revocations, VALID_FOR};
pub use service::{
    generate_service_key, parse_trusted_keys, service_key_path, service_pub_path, ServiceCaller,
    ServiceKeyArgs, ServiceKeyFiles, ServiceSigner, ServiceVerifier,
    MAX_SERVICE_TOKEN_LIFETIME_SECS, SERVICE_TOKEN_REUSE_SECS, SERVICE_TOKEN_TTL_SECS,
};
pub use user::{
    claim, Caller, JwtArgs, Verifier, DEFAULT_EMAIL_CLAIM, DEFAULT_KIND_CLAIM, DEFAULT_ROLES_CLAIM,
    LEEWAY_SECS, MIN_REFETCH_INTERVAL, WARM_UP_MAX_BACKOFF,
};
