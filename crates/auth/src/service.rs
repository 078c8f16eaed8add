//! Service tokens: how the public services prove who they are to the isolated tenant (INV-9).
//!
//! Each service has its own P-256 key. A token is an ES256 JWT with `iss` = `sub` = the calling
//! service, `aud` = the service called, a 60-second lifetime and a unique `jti`. The receiver
//! holds one public key per service it trusts, so a leaked key impersonates one service only,
//! and a user's token (another issuer, no trusted key) can never pass as a service's.

use crate::error::describe_jwt_error;
use crate::keys::{self, now_secs};
use crate::user::bearer;
use crate::AuthError;
use axum::extract::{FromRef, FromRequestParts};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use domain::ServiceName;
use http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Lifetime of the service tokens this crate mints, in seconds.
pub const SERVICE_TOKEN_TTL_SECS: u64 = 60;
/// Longest lifetime (`exp` − `iat`) a service token may claim, in seconds.
pub const MAX_SERVICE_TOKEN_LIFETIME_SECS: u64 = 300;
/// Clock skew tolerated between services, in seconds.
const LEEWAY_SECS: u64 = 30;
/// How long a signer hands out the same token for one audience, in seconds: half its lifetime,
/// so a token is never sent with less than half of it left. Signing (and, for the receiver,
/// verifying) once per half-minute instead of once per call was a tenth of the routine path's
/// CPU (issue 17).
pub const SERVICE_TOKEN_REUSE_SECS: u64 = SERVICE_TOKEN_TTL_SECS / 2;
/// Most verified tokens a verifier remembers (each until it expires).
const VERIFIED_KEPT: usize = 256;

/// The claims read after validation; `iss`, `sub`, `aud` and `exp` are checked by jsonwebtoken.
/// All optional here so that a missing one gets jsonwebtoken's precise refusal (or ours), not a
/// generic "malformed".
#[derive(Debug, Deserialize)]
struct ServiceClaims {
    exp: Option<u64>,
    iat: Option<u64>,
    jti: Option<String>,
}

/// The private-key file of `service` in `dir`.
pub fn service_key_path(dir: &Path, service: ServiceName) -> PathBuf {
    dir.join(format!("{service}.key.pem"))
}

/// The public-key file of `service` in `dir`.
pub fn service_pub_path(dir: &Path, service: ServiceName) -> PathBuf {
    dir.join(format!("{service}.pub.pem"))
}

/// The key files of one service, as [`generate_service_key`] left them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceKeyFiles {
    /// `<service>.key.pem`: PKCS#8 PEM, mode 0600. Stays with the service.
    pub private_key: PathBuf,
    /// `<service>.pub.pem`: SPKI PEM. Given to every service that must trust this one.
    pub public_key: PathBuf,
    /// Whether this call created the private key (false: it was there and was kept).
    pub created: bool,
}

/// Makes sure `dir` holds a key pair for `service`: `<service>.key.pem` (mode 0600) and
/// `<service>.pub.pem`. Existing files are kept; a missing public key is derived from an
/// existing private key. A public key without its private key is refused, since a new private
/// key would not match what others already trust.
pub fn generate_service_key(
    dir: &Path,
    service: ServiceName,
) -> Result<ServiceKeyFiles, AuthError> {
    let private_key = service_key_path(dir, service);
    let public_key = service_pub_path(dir, service);
    let (secret, created) = if private_key.exists() {
        (keys::read_private(&private_key)?, false)
    } else {
        if public_key.exists() {
            return Err(AuthError::key_file(
                &public_key,
                "exists without its private key; move it away to generate a new pair",
            ));
        }
        let fresh = keys::random_p256();
        let created = keys::write_new(&private_key, &keys::private_pem(&fresh)?, true)?;
        // Lost a race with another process: use the key it wrote.
        let secret = if created {
            fresh
        } else {
            keys::read_private(&private_key)?
        };
        (secret, created)
    };
    keys::write_new(&public_key, &keys::public_pem(&secret.public_key())?, false)?;
    Ok(ServiceKeyFiles {
        private_key,
        public_key,
        created,
    })
}

/// Where a service finds the private key it signs its service tokens with. Flatten it into a
/// service's `Config`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ServiceKeyArgs {
    /// This service's private signing key: PKCS#8 PEM, P-256 (`hush deploy-init` writes one).
    #[arg(long, env = "HUSH_SERVICE_KEY_FILE")]
    pub service_key_file: PathBuf,
}

impl ServiceKeyArgs {
    /// Loads the key as `service`'s signer.
    pub fn signer(&self, service: ServiceName) -> Result<ServiceSigner, AuthError> {
        ServiceSigner::from_pem_file(service, &self.service_key_file)
    }
}

/// Mints this service's tokens. Cheap to clone (clones share the tokens they hand out).
#[derive(Clone)]
pub struct ServiceSigner {
    service: ServiceName,
    key: Arc<keys::Es256Key>,
    public_pem: Arc<str>,
    /// The token handed out for each audience, and when it was minted.
    current: Arc<std::sync::Mutex<HashMap<ServiceName, (String, u64)>>>,
}

impl std::fmt::Debug for ServiceSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceSigner")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl ServiceSigner {
    /// A signer for `service` from its PKCS#8 PEM P-256 private key.
    pub fn from_pem(service: ServiceName, private_key_pem: &str) -> Result<Self, AuthError> {
        use p256::pkcs8::DecodePrivateKey as _;
        let secret = p256::SecretKey::from_pkcs8_pem(private_key_pem)
            .map_err(|_| AuthError::Key("not a PKCS#8 PEM P-256 private key".into()))?;
        Self::from_secret(service, &secret)
    }

    /// A signer for `service` from the PKCS#8 PEM P-256 private key in `path`.
    pub fn from_pem_file(service: ServiceName, path: &Path) -> Result<Self, AuthError> {
        Self::from_secret(service, &keys::read_private(path)?)
    }

    /// Loads `<dir>/<service>.key.pem`, as [`generate_service_key`] wrote it.
    pub fn load(dir: &Path, service: ServiceName) -> Result<Self, AuthError> {
        Self::from_pem_file(service, &service_key_path(dir, service))
    }

    /// A signer with a fresh key held only in memory: for tests and the single-process stack.
    /// Give [`Self::public_key_pem`] to the verifiers that must trust it.
    pub fn generate(service: ServiceName) -> Result<Self, AuthError> {
        Self::from_secret(service, &keys::random_p256())
    }

    fn from_secret(service: ServiceName, secret: &p256::SecretKey) -> Result<Self, AuthError> {
        Ok(Self {
            service,
            key: Arc::new(keys::Es256Key::new(secret)?),
            public_pem: keys::public_pem(&secret.public_key())?.into(),
            current: Arc::default(),
        })
    }

    /// The service this signer speaks for.
    pub fn service(&self) -> ServiceName {
        self.service
    }

    /// The public key (SPKI PEM) that verifiers need to trust this signer.
    pub fn public_key_pem(&self) -> &str {
        &self.public_pem
    }

    /// A token for calling `audience`: the one handed out last, while it is younger than
    /// [`SERVICE_TOKEN_REUSE_SECS`], else a fresh one ([`Self::mint`]).
    pub fn token(&self, audience: ServiceName) -> String {
        let now = now_secs();
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((token, minted)) = current.get(&audience) {
            if now.saturating_sub(*minted) < SERVICE_TOKEN_REUSE_SECS {
                return token.clone();
            }
        }
        let token = self.mint(audience);
        current.insert(audience, (token.clone(), now));
        token
    }

    /// A fresh token for calling `audience`, valid for [`SERVICE_TOKEN_TTL_SECS`], with a unique
    /// `jti`. Signing cannot fail.
    pub fn mint(&self, audience: ServiceName) -> String {
        let now = now_secs();
        let claims = serde_json::json!({
            "iss": self.service.as_str(),
            "sub": self.service.as_str(),
            "aud": audience.as_str(),
            "exp": now + SERVICE_TOKEN_TTL_SECS,
            "iat": now,
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        let header =
            serde_json::json!({ "alg": "ES256", "typ": "JWT", "kid": self.service.as_str() });
        self.key.sign(&header, &claims)
    }
}

/// The service behind a request, authenticated by its service token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCaller {
    /// Which service called.
    pub service: ServiceName,
    /// The token's unique id (`jti`), for audit records.
    pub token_id: String,
}

/// Checks service tokens addressed to one service. Cheap to clone. Remembers the tokens it
/// has verified until they expire, so a token a signer reuses is checked once.
#[derive(Clone)]
pub struct ServiceVerifier {
    audience: ServiceName,
    trusted: Arc<HashMap<ServiceName, DecodingKey>>,
    verified: Arc<std::sync::Mutex<HashMap<String, (ServiceCaller, u64)>>>,
}

impl std::fmt::Debug for ServiceVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut trusted: Vec<_> = self.trusted.keys().map(|s| s.as_str()).collect();
        trusted.sort_unstable();
        f.debug_struct("ServiceVerifier")
            .field("audience", &self.audience)
            .field("trusted", &trusted)
            .finish()
    }
}

impl ServiceVerifier {
    /// A verifier for tokens addressed to `audience` that trusts no one yet.
    pub fn new(audience: ServiceName) -> Self {
        Self {
            audience,
            trusted: Arc::new(HashMap::new()),
            verified: Arc::default(),
        }
    }

    /// Trusts `service`, whose tokens verify with `public_key_pem` (SPKI PEM, P-256).
    pub fn trust(mut self, service: ServiceName, public_key_pem: &str) -> Result<Self, AuthError> {
        use p256::pkcs8::DecodePublicKey as _;
        // Parse with p256 first: jsonwebtoken would accept any EC curve here.
        p256::PublicKey::from_public_key_pem(public_key_pem).map_err(|_| {
            AuthError::Config(format!(
                "the public key of {service} is not a P-256 SPKI PEM"
            ))
        })?;
        let key = DecodingKey::from_ec_pem(public_key_pem.as_bytes()).map_err(|e| {
            AuthError::Config(format!("the public key of {service} is not usable: {e}"))
        })?;
        Arc::make_mut(&mut self.trusted).insert(service, key);
        Ok(self)
    }

    /// A verifier for `audience` trusting each of `trusted`, whose keys are read from
    /// `<dir>/<service>.pub.pem`.
    pub fn load(
        dir: &Path,
        audience: ServiceName,
        trusted: &[ServiceName],
    ) -> Result<Self, AuthError> {
        trusted.iter().try_fold(Self::new(audience), |v, &service| {
            let path = service_pub_path(dir, service);
            let pem = std::fs::read_to_string(&path).map_err(|e| AuthError::key_file(&path, e))?;
            v.trust(service, &pem)
        })
    }

    /// A verifier for `audience` trusting the services listed in `spec`, the form of
    /// `HUSH_TRUSTED_SERVICE_KEYS`: comma-separated `service=path-to-public-key.pem` pairs, e.g.
    /// `membership-api=/keys/membership-api.pub.pem,bulk-api=/keys/bulk-api.pub.pem`. An empty
    /// spec trusts no one (every service token is refused).
    pub fn from_trusted_keys(audience: ServiceName, spec: &str) -> Result<Self, AuthError> {
        parse_trusted_keys(spec)?
            .into_iter()
            .try_fold(Self::new(audience), |v, (service, path)| {
                let pem =
                    std::fs::read_to_string(&path).map_err(|e| AuthError::key_file(&path, e))?;
                v.trust(service, &pem)
            })
    }

    /// The services this verifier trusts.
    pub fn trusted(&self) -> Vec<ServiceName> {
        let mut v: Vec<_> = self.trusted.keys().copied().collect();
        v.sort_unstable_by_key(|s| s.as_str());
        v
    }

    /// The service these tokens must be addressed to.
    pub fn audience(&self) -> ServiceName {
        self.audience
    }

    /// Checks a service token: a trusted issuer's ES256 signature, `sub` = `iss`, our audience,
    /// not expired, and a lifetime no longer than [`MAX_SERVICE_TOKEN_LIFETIME_SECS`].
    pub fn verify(&self, token: &str) -> Result<ServiceCaller, AuthError> {
        let now = now_secs();
        // A token verified before, until its own expiry (the leeway past it goes through the
        // full check below).
        if let Some((caller, exp)) = self.remembered().get(token) {
            if now < *exp {
                return Ok(caller.clone());
            }
        }
        let (caller, exp) = self.verify_anew(token)?;
        let mut verified = self.remembered();
        if verified.len() >= VERIFIED_KEPT {
            verified.retain(|_, (_, e)| now < *e);
            if verified.len() >= VERIFIED_KEPT {
                verified.clear();
            }
        }
        verified.insert(token.to_string(), (caller.clone(), exp));
        Ok(caller)
    }

    fn remembered(&self) -> std::sync::MutexGuard<'_, HashMap<String, (ServiceCaller, u64)>> {
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The full check of [`Self::verify`]; answers the caller and the token's expiry.
    fn verify_anew(&self, token: &str) -> Result<(ServiceCaller, u64), AuthError> {
        let issuer = unverified_issuer(token)?;
        let (service, key) = ServiceName::parse(&issuer)
            .ok()
            .and_then(|s| self.trusted.get(&s).map(|k| (s, k)))
            .ok_or_else(|| {
                AuthError::invalid("the token was not issued by a service this service trusts")
            })?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[service.as_str()]);
        validation.set_audience(&[self.audience.as_str()]);
        validation.sub = Some(service.as_str().into());
        let claims = jsonwebtoken::decode::<ServiceClaims>(token, key, &validation)
            .map_err(|e| describe_jwt_error(&e))?
            .claims;
        let (Some(exp), Some(iat), Some(jti)) = (claims.exp, claims.iat, claims.jti) else {
            return Err(AuthError::invalid(
                "the token lacks one of the required claims 'exp', 'iat', 'jti'",
            ));
        };
        // Both bounds: `exp - iat` as the token states it, and `exp` against our clock, so a
        // token cannot buy a long life by claiming to be issued in the future.
        let lifetime_ok = exp.saturating_sub(iat) <= MAX_SERVICE_TOKEN_LIFETIME_SECS
            && exp <= now_secs() + MAX_SERVICE_TOKEN_LIFETIME_SECS + LEEWAY_SECS;
        if !lifetime_ok {
            return Err(AuthError::invalid(format!(
                "the token's lifetime exceeds {MAX_SERVICE_TOKEN_LIFETIME_SECS} seconds"
            )));
        }
        Ok((
            ServiceCaller {
                service,
                token_id: jti,
            },
            exp,
        ))
    }
}

/// Parses `HUSH_TRUSTED_SERVICE_KEYS` (see [`ServiceVerifier::from_trusted_keys`]) into
/// (service, public-key file) pairs, refusing unknown service names and duplicates.
pub fn parse_trusted_keys(spec: &str) -> Result<Vec<(ServiceName, PathBuf)>, AuthError> {
    let mut out: Vec<(ServiceName, PathBuf)> = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, path) = item.split_once('=').ok_or_else(|| {
            AuthError::Config(format!(
                "trusted service key '{item}' is not of the form service=path"
            ))
        })?;
        let service = ServiceName::parse(name.trim()).map_err(|_| {
            AuthError::Config(format!("'{}' is not a Hush service name", name.trim()))
        })?;
        if out.iter().any(|(s, _)| *s == service) {
            return Err(AuthError::Config(format!(
                "{service} is listed twice among trusted service keys"
            )));
        }
        let path = path.trim();
        if path.is_empty() {
            return Err(AuthError::Config(format!(
                "the key path of {service} is empty"
            )));
        }
        out.push((service, PathBuf::from(path)));
    }
    Ok(out)
}

/// The `iss` of a token, read before verification to pick the key; nothing else is trusted
/// until the signature made with that key verifies.
fn unverified_issuer(token: &str) -> Result<String, AuthError> {
    #[derive(Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    let malformed = || AuthError::invalid("the token is malformed");
    let mut segments = token.split('.');
    let (Some(_), Some(payload), Some(_), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(malformed());
    };
    let bytes = URL_SAFE_NO_PAD.decode(payload).map_err(|_| malformed())?;
    let iss: Iss = serde_json::from_slice(&bytes).map_err(|_| malformed())?;
    iss.iss
        .ok_or_else(|| AuthError::invalid("the token lacks the required claim 'iss'"))
}

impl<S> FromRequestParts<S> for ServiceCaller
where
    ServiceVerifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(c) = parts.extensions.get::<ServiceCaller>() {
            return Ok(c.clone());
        }
        let token = bearer(parts)?.ok_or(AuthError::MissingToken)?;
        let caller = ServiceVerifier::from_ref(state).verify(token)?;
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}
