//! Users' tokens: the company IdP's JWTs, checked against its JWKS and turned into a [`Caller`].

use crate::error::describe_jwt_error;
use crate::jwks::{parse_jwks, JwksAt, KeySet};
use crate::{AuthError, DEV_ISSUER};
use axum::extract::{FromRef, FromRequestParts, OptionalFromRequestParts};
use domain::{Email, IdentityKind, Subject};
use http::header;
use http::request::Parts;
use jsonwebtoken::Validation;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Duration;

/// Least time between two fetches of the IdP's JWKS. A token naming an unknown key triggers a
/// fetch (the IdP may have rotated); this bounds how often made-up key ids can make us call it.
pub const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(10);

/// Longest wait between two start-up attempts to load the IdP's keys.
pub const WARM_UP_MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 30;

/// Default claim holding the caller's e-mail address.
pub const DEFAULT_EMAIL_CLAIM: &str = "email";
/// Default claim holding the identity kind (`member`, `guest`, `agent`).
pub const DEFAULT_KIND_CLAIM: &str = "hush_kind";
/// Default claim holding the caller's roles.
pub const DEFAULT_ROLES_CLAIM: &str = "roles";

/// How a service checks users' tokens. Flatten it into a service's `Config`.
///
/// Normally one setting names the IdP: `HUSH_OIDC_ISSUER`. Its discovery document
/// (`<issuer>/.well-known/openid-configuration`) says where the signing keys are, and tokens'
/// `iss` must equal it. `HUSH_JWKS_URL` skips discovery (an IdP without it, or a key set
/// reached by another way); `HUSH_JWT_ISSUER`, the older name of the issuer setting, still
/// works and must agree with `HUSH_OIDC_ISSUER` when both are set.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct JwtArgs {
    /// The company IdP's issuer identifier, exactly as its tokens' `iss` and its discovery
    /// document's `issuer` say it (e.g. https://login.microsoftonline.com/<tenant>/v2.0).
    #[arg(long, env = "HUSH_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    /// The issuer (`iss`) users' tokens must carry: the older name of HUSH_OIDC_ISSUER, kept
    /// working. When both are set they must be equal.
    #[arg(long, env = "HUSH_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// The audience (`aud`) users' tokens must carry: this deployment's client id at the IdP.
    #[arg(long, env = "HUSH_JWT_AUDIENCE")]
    pub jwt_audience: String,
    /// Where the IdP publishes its signing keys (JWKS); http or https. Unset: found by
    /// discovery from the issuer.
    #[arg(long, env = "HUSH_JWKS_URL")]
    pub jwks_url: Option<String>,
    /// A PEM file of extra CA certificates to trust for the IdP (a company CA), on top of the
    /// system's roots.
    #[arg(long, env = "HUSH_OIDC_CA_FILE")]
    pub oidc_ca_file: Option<std::path::PathBuf>,
    /// Least seconds between two fetches of the IdP's key set (a token naming an unknown key
    /// triggers one, in case the IdP rotated); at least 1, so made-up key ids cannot make
    /// this service hammer the IdP.
    #[arg(long, env = "HUSH_JWKS_MIN_REFETCH_SECS", default_value_t = MIN_REFETCH_INTERVAL.as_secs())]
    pub jwks_min_refetch_secs: u64,
    /// Claim holding the caller's e-mail address. A dotted path (`a.b`) reaches into objects.
    #[arg(long, env = "HUSH_CLAIM_EMAIL", default_value = DEFAULT_EMAIL_CLAIM)]
    pub claim_email: String,
    /// Claim holding the identity kind (member, guest or agent); absent: see
    /// HUSH_CLAIM_KIND_ABSENT.
    #[arg(long, env = "HUSH_CLAIM_KIND", default_value = DEFAULT_KIND_CLAIM)]
    pub claim_kind: String,
    /// What a token without the kind claim means: `member` (the default: an IdP that marks
    /// only guests and agents), `guest` (the least a person without the claim may do), or
    /// `refuse` (every token must say). A kind the claim names but Hush does not know is
    /// always refused.
    #[arg(long, env = "HUSH_CLAIM_KIND_ABSENT", default_value = "member", value_parser = ["member", "guest", "refuse"])]
    pub claim_kind_absent: String,
    /// Claim holding the caller's roles (an array, or one space-separated string); absent means
    /// none. A dotted path (`realm_access.roles`) reaches into objects.
    #[arg(long, env = "HUSH_CLAIM_ROLES", default_value = DEFAULT_ROLES_CLAIM)]
    pub claim_roles: String,
    /// Development mode: accept tokens from the built-in dev issuer. Never set in production;
    /// without it, configuring the dev issuer is refused at start-up.
    #[arg(long, env = "HUSH_DEV_MODE")]
    pub dev_mode: bool,
}

impl JwtArgs {
    /// Arguments with the default claim names and dev mode off.
    pub fn new(
        issuer: impl Into<String>,
        audience: impl Into<String>,
        jwks_url: impl Into<String>,
    ) -> Self {
        Self {
            oidc_issuer: None,
            jwt_issuer: Some(issuer.into()),
            jwt_audience: audience.into(),
            jwks_url: Some(jwks_url.into()),
            oidc_ca_file: None,
            jwks_min_refetch_secs: MIN_REFETCH_INTERVAL.as_secs(),
            claim_email: DEFAULT_EMAIL_CLAIM.into(),
            claim_kind: DEFAULT_KIND_CLAIM.into(),
            claim_kind_absent: "member".into(),
            claim_roles: DEFAULT_ROLES_CLAIM.into(),
            dev_mode: false,
        }
    }

    /// Arguments naming the IdP by its issuer alone: the key set is found by discovery.
    pub fn discovered(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        let mut args = Self::new("", audience, "");
        args.jwt_issuer = None;
        args.jwks_url = None;
        args.oidc_issuer = Some(issuer.into());
        args
    }

    /// The issuer tokens must carry: HUSH_OIDC_ISSUER, or HUSH_JWT_ISSUER (equal when both
    /// are set).
    pub fn issuer(&self) -> Result<&str, AuthError> {
        fn set(v: &Option<String>) -> Option<&str> {
            v.as_deref().filter(|s| !s.trim().is_empty())
        }
        match (set(&self.oidc_issuer), set(&self.jwt_issuer)) {
            (Some(a), Some(b)) if a != b => Err(AuthError::Config(format!(
                "HUSH_OIDC_ISSUER ({a}) and HUSH_JWT_ISSUER ({b}) disagree; set one of them"
            ))),
            (Some(i), _) | (None, Some(i)) => Ok(i),
            (None, None) => Err(AuthError::Config(
                "the IdP's issuer is required (HUSH_OIDC_ISSUER)".into(),
            )),
        }
    }

    /// Checks what can be checked without the network.
    fn validate(&self) -> Result<(), AuthError> {
        let issuer = self.issuer()?;
        if self.jwks_min_refetch_secs == 0 {
            return Err(AuthError::Config(
                "HUSH_JWKS_MIN_REFETCH_SECS must be at least 1".into(),
            ));
        }
        if self.jwt_audience.trim().is_empty() {
            return Err(AuthError::Config(
                "the JWT audience must not be empty".into(),
            ));
        }
        if issuer == DEV_ISSUER && !self.dev_mode {
            return Err(AuthError::Config(format!(
                "the issuer is the built-in dev issuer ({DEV_ISSUER}), whose key sits on local disk \
                 and which mints tokens for anyone; it is accepted only in dev mode \
                 (--dev-mode / HUSH_DEV_MODE=true). Configure the company IdP instead"
            )));
        }
        if !matches!(
            self.claim_kind_absent.as_str(),
            "member" | "guest" | "refuse"
        ) {
            return Err(AuthError::Config(
                "HUSH_CLAIM_KIND_ABSENT must be member, guest or refuse".into(),
            ));
        }
        for (what, name) in [
            ("email", &self.claim_email),
            ("kind", &self.claim_kind),
            ("roles", &self.claim_roles),
        ] {
            if name.trim().is_empty() {
                return Err(AuthError::Config(format!(
                    "the {what} claim name must not be empty"
                )));
            }
        }
        Ok(())
    }
}

impl From<&JwtArgs> for JwtArgs {
    fn from(args: &JwtArgs) -> Self {
        args.clone()
    }
}

/// Who is calling: the authenticated user behind a request, as the IdP describes them.
///
/// Extract it in a handler to require authentication; `Option<Caller>` accepts anonymous
/// requests but still refuses a bad token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The IdP's stable identifier for the user (`sub`).
    pub subject: Subject,
    /// The user's e-mail address, when the token carries one.
    pub email: Option<Email>,
    /// Member, guest or agent; decides which labels' groups the caller may enter.
    pub kind: IdentityKind,
    /// Roles the IdP grants (e.g. operator, privacy officer), as named there.
    pub roles: Vec<String>,
    /// Every claim of the verified token, as the IdP sent it (`sub`, `email`, `department`,
    /// …): for rules an owner writes over claims the fields above do not name, such as
    /// membership-api's automatic approval by department or country. Holds the same person as
    /// the fields above: never log it (INV-6).
    pub claims: Map<String, Value>,
}

impl Caller {
    /// Whether the IdP granted the caller `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// Checks users' tokens. Cheap to clone; clones share the key cache.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
    /// Who says whether a token was voided by an offboarding; none in tests and tools that
    /// run without a tenant.
    standing: Option<crate::revocation::Standing>,
}

struct Inner {
    config: JwtArgs,
    /// The issuer tokens must carry, resolved from the configuration once.
    issuer: String,
    keys: KeySet,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier that fetches the IdP's keys from `args.jwks_url` on first use and caches them.
    /// Accepts `JwtArgs` or `&JwtArgs`.
    ///
    /// Refuses the dev issuer outside dev mode, and a JWKS URL that is not http(s).
    pub fn new(args: impl Into<JwtArgs>) -> Result<Self, AuthError> {
        let args = args.into();
        let interval = Duration::from_secs(args.jwks_min_refetch_secs);
        Self::with_refetch_interval(args, interval)
    }

    /// As [`Self::new`], with `min_refetch` as the least time between two fetches of the JWKS
    /// instead of [`MIN_REFETCH_INTERVAL`] (tests of key rotation use zero).
    pub fn with_refetch_interval(
        args: impl Into<JwtArgs>,
        min_refetch: Duration,
    ) -> Result<Self, AuthError> {
        let config = args.into();
        config.validate()?;
        let issuer = config.issuer()?.to_string();
        let at = match config.jwks_url.as_deref().filter(|u| !u.trim().is_empty()) {
            Some(raw) => {
                let url = reqwest::Url::parse(raw)
                    .map_err(|e| AuthError::Config(format!("the JWKS URL does not parse: {e}")))?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(AuthError::Config(
                        "the JWKS URL must be http:// or https://".into(),
                    ));
                }
                JwksAt::Url(url.to_string())
            }
            None => {
                let url = reqwest::Url::parse(&crate::oidc::discovery_url(&issuer))
                    .map_err(|e| AuthError::Config(format!("the issuer is not a URL: {e}")))?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(AuthError::Config(
                        "the issuer must be an http:// or https:// URL for discovery".into(),
                    ));
                }
                JwksAt::discover(issuer.clone())
            }
        };
        let client = crate::oidc::idp_http_client(config.oidc_ca_file.as_deref())?;
        let keys = KeySet::remote(at, client, min_refetch);
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                issuer,
                keys,
            }),
            standing: None,
        })
    }

    /// A verifier with a fixed key set, never fetched: for the in-process dev issuer and for
    /// tests. `config.jwks_url` is not used. The same configuration checks apply.
    pub fn with_jwks(args: impl Into<JwtArgs>, jwks: &Value) -> Result<Self, AuthError> {
        let config = args.into();
        config.validate()?;
        let issuer = config.issuer()?.to_string();
        let keys = parse_jwks(jwks).map_err(|e| AuthError::Config(format!("invalid JWKS: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                issuer,
                keys: KeySet::fixed(keys),
            }),
            standing: None,
        })
    }

    /// This verifier, also refusing every token that an offboarding voided, as `revocations`
    /// says ([`crate::Revocations`]): what every public service sets, with the tenant.
    #[must_use]
    pub fn with_revocations(mut self, revocations: Arc<dyn crate::Revocations>) -> Self {
        self.standing = Some(crate::revocation::Standing::new(revocations));
        self
    }

    /// Forgets what this verifier remembered of `subject`'s tokens still being valid: after
    /// this process offboarded them itself (forget-me), their next call asks the tenant again
    /// instead of reusing an answer up to [`crate::VALID_FOR`] old.
    pub fn forget_standing(&self, subject: &Subject) {
        if let Some(standing) = &self.standing {
            standing.forget(subject);
        }
    }

    /// Refuses `caller`'s token when an offboarding voided it (nothing to check without
    /// [`Self::with_revocations`]).
    pub async fn check_standing(&self, caller: &Caller) -> Result<(), AuthError> {
        match &self.standing {
            Some(standing) => {
                let issued_at = caller.claims.get("iat").and_then(serde_json::Value::as_i64);
                standing.check(&caller.subject, issued_at).await
            }
            None => Ok(()),
        }
    }

    /// The configuration this verifier enforces.
    pub fn config(&self) -> &JwtArgs {
        &self.inner.config
    }

    /// The issuer tokens must carry.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// Fetches the IdP's keys (discovering where they are first, if need be) in the
    /// background, retrying with backoff (1 s, doubling, at most [`WARM_UP_MAX_BACKOFF`]) until
    /// it works, and saying so in the log each time: a service whose IdP is unreachable or
    /// misconfigured at start runs (health, readiness, service-token routes), answers user
    /// requests 503 until the keys come, and tells the operator why instead of crash-looping.
    /// Call once at start; the task ends when the keys are in.
    pub fn spawn_warm_up(&self) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_secs(1);
            loop {
                match this.inner.keys.refresh().await {
                    Ok(n) => {
                        tracing::info!(issuer = %this.inner.issuer, keys = n, "the identity provider's signing keys are loaded");
                        return;
                    }
                    Err(e) => {
                        let why = format!("{e:#}");
                        tracing::error!(
                            issuer = %this.inner.issuer,
                            error = %why,
                            retry_in_secs = delay.as_secs(),
                            "cannot load the identity provider's signing keys; users' requests are answered 503 until this works"
                        );
                    }
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(WARM_UP_MAX_BACKOFF);
            }
        })
    }

    /// Checks `token` (signature, `alg`, `iss`, `aud`, `exp`, `nbf`) and reads the caller from it.
    pub async fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        self.verify_for(token, None).await
    }

    /// As [`Self::verify`], also accepting `also_audience` as the token's `aud`: a token the
    /// IdP issued to an app that Hush decides access for, which the app presents on its
    /// user's behalf (membership-api's token exchange). Every other check is the same.
    pub async fn verify_for(
        &self,
        token: &str,
        also_audience: Option<&str>,
    ) -> Result<Caller, AuthError> {
        let config = &self.inner.config;
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::invalid("the token is malformed"))?;
        let kid = header
            .kid
            .as_deref()
            .ok_or_else(|| AuthError::invalid("the token does not name its signing key (kid)"))?;
        let pinned = self.inner.keys.get(kid).await?.ok_or_else(|| {
            AuthError::invalid("the token is signed with a key this service does not know")
        })?;
        if header.alg != pinned.alg {
            return Err(AuthError::invalid(
                "the token's algorithm is not allowed for its key",
            ));
        }
        let mut validation = Validation::new(pinned.alg);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.set_issuer(&[&self.inner.issuer]);
        match also_audience {
            Some(app) => validation.set_audience(&[config.jwt_audience.as_str(), app]),
            None => validation.set_audience(&[&config.jwt_audience]),
        }
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &pinned.key, &validation)
            .map_err(|e| describe_jwt_error(&e))?;
        caller_from_claims(config, &data.claims)
    }
}

/// Reads a claim by name, or by dotted path into nested objects when no claim has that exact
/// name (Keycloak's `realm_access.roles`). The one reading of configured claim names: the
/// caller's own claims here, and owners' claim rules in membership-api.
pub fn claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    let mut parts = name.split('.');
    let mut v = claims.get(parts.next()?)?;
    for p in parts {
        v = v.get(p)?;
    }
    Some(v)
}

fn caller_from_claims(config: &JwtArgs, claims: &Map<String, Value>) -> Result<Caller, AuthError> {
    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .and_then(|s| Subject::parse(s).ok())
        .ok_or_else(|| AuthError::invalid("the token's subject is missing or invalid"))?;
    let email = match claim(claims, &config.claim_email) {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_str()
                .and_then(|s| Email::parse(s).ok())
                .ok_or_else(|| AuthError::invalid("the token's e-mail claim is not an address"))?,
        ),
    };
    let kind = match claim(claims, &config.claim_kind) {
        None | Some(Value::Null) => match config.claim_kind_absent.as_str() {
            "guest" => IdentityKind::Guest,
            "member" => IdentityKind::Member,
            _ => {
                return Err(AuthError::invalid(
                    "the token does not say the caller's identity kind",
                ))
            }
        },
        Some(v) => v
            .as_str()
            .and_then(|s| IdentityKind::parse(s).ok())
            .ok_or_else(|| {
                AuthError::invalid("the token's identity kind is not member, guest or agent")
            })?,
    };
    let roles = match claim(claims, &config.claim_roles) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|r| r.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| AuthError::invalid("the token's roles claim is not a list of names"))?,
        Some(_) => {
            return Err(AuthError::invalid(
                "the token's roles claim is not a list of names",
            ))
        }
    };
    Ok(Caller {
        subject,
        email,
        kind,
        roles,
        claims: claims.clone(),
    })
}

/// The token in `Authorization: Bearer <token>`, if the header is there. A header in another
/// scheme or with an empty token is refused rather than ignored.
pub(crate) fn bearer(parts: &Parts) -> Result<Option<&str>, AuthError> {
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| AuthError::invalid("the Authorization header is not valid text"))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::invalid(
            "the Authorization header must use the Bearer scheme",
        ));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::invalid("the bearer token is empty"));
    }
    Ok(Some(token))
}

impl<S> FromRequestParts<S> for Caller
where
    Verifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        <Self as OptionalFromRequestParts<S>>::from_request_parts(parts, state)
            .await?
            .ok_or(AuthError::MissingToken)
    }
}

impl<S> OptionalFromRequestParts<S> for Caller
where
    Verifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        // A handler (or a middleware before it) may already have verified this request.
        if let Some(c) = parts.extensions.get::<Caller>() {
            return Ok(Some(c.clone()));
        }
        let Some(token) = bearer(parts)? else {
            return Ok(None);
        };
        let verifier = Verifier::from_ref(state);
        let caller = verifier.verify(token).await?;
        // Offboarding bites: a token issued before its holder was offboarded is refused.
        verifier.check_standing(&caller).await?;
        parts.extensions.insert(caller.clone());
        Ok(Some(caller))
    }
}
