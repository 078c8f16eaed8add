//! `hush edge`: the one origin the browser talks to. It serves the front-end app (`web/app/`,
//! embedded in the binary, so it works from any directory) and reverse-proxies `/control/…`,
//! `/membership/…` and `/bulk/…` to the services, so the app needs no CORS and the services no
//! public host names of their own. `/tenant/…` is never proxied: no route leads there (INV-9).
//!
//! Run it alone with `hush edge --help` (every flag has a `HUSH_*` variable); `hush up` runs it
//! on port base + 5 in dev mode and prints its URL first. Tests call [`router`] with an
//! [`Edge`] they build, or [`run`] on a listener bound to port 0.
//!
//! The app signs in with OIDC (authorization code with PKCE, refresh tokens, sign-out at the
//! IdP) against the configured issuer, whose endpoints the edge finds by discovery at start and
//! hands the app in `/config.json`. In dev mode only, `POST /dev/token` mints a
//! token with the dev issuer so the sign-in screen can pick a dev user; outside dev mode that
//! route does not exist.
//!
//! `/api` is the API reference: Swagger UI, vendored from the npm registry under
//! `web/app/vendor/swagger-ui/` (no CDN), renders the three public services' OpenAPI documents,
//! which it fetches through the same proxied prefixes. Its icons are files, so the CSP stays as
//! strict as the app's.

use anyhow::Context as _;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use domain::{Email, IdentityKind, Subject};
use rust_embed::RustEmbed;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use service_kit::{health, AppJson, HttpArgs, Problem};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How long a dev token lives: a working session.
pub const DEV_TOKEN_TTL: Duration = Duration::from_secs(60 * 60);

/// Most roles a dev token may carry.
const MAX_DEV_ROLES: usize = 16;

/// Largest `POST /dev/token` body: a few short fields.
const DEV_TOKEN_BODY_LIMIT: usize = 4096;

/// How long the edge waits to connect to a service before answering 502.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The front-end app: every file under `web/app/` (`build.rs` rebuilds when one changes, is
/// added or is removed).
#[derive(RustEmbed)]
#[folder = "../../web/app/"]
struct Assets;

/// How the browser signs in when not in dev mode: OIDC authorization code with PKCE against
/// the company IdP, with refresh tokens and sign-out at the IdP. The app is a public client (no
/// secret); the redirect URI and the post-logout redirect URI are the edge's own origin
/// followed by `/`.
///
/// Normally the issuer is enough: the endpoints come from its discovery document. An endpoint
/// given here overrides the discovered one; with the authorization and token endpoints both
/// given, no discovery happens at all.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct OidcArgs {
    /// The IdP's issuer identifier; the edge reads `<issuer>/.well-known/openid-configuration`
    /// at start for the endpoints below (its `issuer` must be exactly this).
    #[arg(long, env = "HUSH_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    /// Extra CA certificates (PEM) to trust for the IdP, on top of the system's roots.
    #[arg(long, env = "HUSH_OIDC_CA_FILE")]
    pub oidc_ca_file: Option<PathBuf>,
    /// The IdP's authorization endpoint, where the browser is sent to sign in. Unset: from
    /// discovery.
    #[arg(long, env = "HUSH_OIDC_AUTHORIZATION_ENDPOINT")]
    pub oidc_authorization_endpoint: Option<String>,
    /// The IdP's token endpoint, where the app exchanges the code and refreshes its token (it
    /// must allow CORS from the edge's origin). Unset: from discovery.
    #[arg(long, env = "HUSH_OIDC_TOKEN_ENDPOINT")]
    pub oidc_token_endpoint: Option<String>,
    /// The IdP's end-session endpoint, where signing out sends the browser (RP-initiated
    /// logout). Unset: from discovery; none there: signing out forgets the tokens only.
    #[arg(long, env = "HUSH_OIDC_END_SESSION_ENDPOINT")]
    pub oidc_end_session_endpoint: Option<String>,
    /// The app's client id at the IdP (a public client with PKCE, no secret).
    #[arg(long, env = "HUSH_OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,
    /// Scopes to ask for (add `offline_access` where the IdP needs it to issue refresh tokens).
    #[arg(long, env = "HUSH_OIDC_SCOPE", default_value = "openid email profile")]
    pub oidc_scope: String,
    /// An `audience` parameter for IdPs that need one to issue an access token for the API
    /// (it must match the services' HUSH_JWT_AUDIENCE).
    #[arg(long, env = "HUSH_OIDC_AUDIENCE")]
    pub oidc_audience: Option<String>,
    /// Which token from the token endpoint the app sends to the services: `access_token` or
    /// `id_token` (for IdPs whose access tokens are opaque).
    #[arg(long, env = "HUSH_OIDC_TOKEN", default_value = "access_token", value_parser = ["access_token", "id_token"])]
    pub oidc_token: String,
}

/// Longest wait between two start-up attempts at the IdP's discovery document.
pub const DISCOVERY_MAX_BACKOFF: Duration = Duration::from_secs(60);

impl OidcArgs {
    /// Whether the endpoints must come from discovery (one the app needs is not given).
    fn needs_discovery(&self) -> bool {
        let given = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
        !(given(&self.oidc_authorization_endpoint) && given(&self.oidc_token_endpoint))
    }

    /// The issuer's discovery document, fetched with retries: an IdP that does not answer (or
    /// answers badly) is retried with backoff, 1 s doubling up to [`DISCOVERY_MAX_BACKOFF`],
    /// each failure logged with its reason, so the edge waits for an IdP that is starting
    /// too; a document that is refused (another issuer, no key set) ends start-up with that
    /// error, since retrying cannot fix it.
    pub async fn discover(&self) -> anyhow::Result<auth::Discovery> {
        let issuer = self
            .oidc_issuer
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .context(
                "HUSH_OIDC_ISSUER is required outside dev mode (or both \
                 HUSH_OIDC_AUTHORIZATION_ENDPOINT and HUSH_OIDC_TOKEN_ENDPOINT)",
            )?;
        let client = auth::idp_http_client(self.oidc_ca_file.as_deref())?;
        let mut delay = Duration::from_secs(1);
        loop {
            match auth::discover(&client, issuer).await {
                Ok(d) => {
                    tracing::info!(%issuer, "read the identity provider's discovery document");
                    return Ok(d);
                }
                Err(e @ auth::DiscoveryError::Refused { .. }) => return Err(e.into()),
                Err(e) => {
                    tracing::error!(
                        error = %e,
                        retry_in_secs = delay.as_secs(),
                        "cannot read the identity provider's discovery document; the edge serves once it can"
                    );
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(DISCOVERY_MAX_BACKOFF);
        }
    }
}

/// How to run the edge.
#[derive(Debug, Clone, clap::Args)]
pub struct EdgeConfig {
    /// Address to bind; browsers open `http://<this>/`.
    #[arg(long, env = "HUSH_EDGE_LISTEN", default_value = "127.0.0.1:8085")]
    pub listen: SocketAddr,
    /// Base URL of control-api; `/control/…` is proxied there.
    #[arg(long, env = "HUSH_CONTROL_URL")]
    pub control_url: String,
    /// Base URL of membership-api; `/membership/…` is proxied there.
    #[arg(long, env = "HUSH_MEMBERSHIP_URL")]
    pub membership_url: String,
    /// Base URL of bulk-api; `/bulk/…` is proxied there.
    #[arg(long, env = "HUSH_BULK_URL")]
    pub bulk_url: String,
    /// Sign-in with the company IdP.
    #[command(flatten)]
    pub oidc: OidcArgs,
    /// Development mode: the sign-in screen picks a dev user and `POST /dev/token` mints their
    /// token with the dev issuer under --data-dir. Never in production.
    #[arg(long, env = "HUSH_DEV_MODE")]
    pub dev_mode: bool,
    /// Dev mode on an address other than loopback (refused without this flag). Anyone who can
    /// reach the address can then sign in as anyone, with any role (label-admin, operator,
    /// privacy-officer): break-glass by one person. Only on a network that is yours alone.
    #[arg(long, env = "HUSH_EXPOSE_DEV_SIGN_IN")]
    pub expose_dev_sign_in: bool,
    /// The data dir of the `hush up` whose dev issuer signs dev tokens (dev mode only).
    #[arg(long, env = "HUSH_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// The audience (`aud`) of dev tokens: the services' HUSH_JWT_AUDIENCE.
    #[arg(long, env = "HUSH_JWT_AUDIENCE", default_value = "hush")]
    pub dev_audience: String,
    /// Largest request body the edge forwards (bulk job files are the large ones: this
    /// matches bulk-api's upload limit); larger → 413. Bodies are streamed, never held whole.
    #[arg(long, env = "HUSH_EDGE_BODY_LIMIT_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub body_limit_bytes: usize,
    /// Longest the edge waits on a silent service (for its answer to start, or between two
    /// pieces of it), in seconds; longer → 504.
    #[arg(long, env = "HUSH_EDGE_UPSTREAM_TIMEOUT_SECS", default_value_t = 30)]
    pub upstream_timeout_secs: u64,
    /// Longest a whole request may take until its answer starts, in seconds, a large upload
    /// included; longer → 408.
    #[arg(long, env = "HUSH_EDGE_REQUEST_TIMEOUT_SECS", default_value_t = 600)]
    pub request_timeout_secs: u64,
}

/// Refuses dev sign-in on an address other than loopback unless `exposed` says so: there,
/// `POST /dev/token` mints a token for any person with any role to whoever reaches `host`.
pub fn dev_sign_in_reach(host: std::net::IpAddr, exposed: bool) -> anyhow::Result<()> {
    if host.is_loopback() || exposed {
        return Ok(());
    }
    anyhow::bail!(
        "refusing to serve dev sign-in on {host}, which is not a loopback address: anyone who \
         can reach it could sign in as anyone, with any role (label-admin, operator, \
         privacy-officer). Use --host 127.0.0.1 (the default), or, on a network that is yours \
         alone, pass --expose-dev-sign-in"
    )
}

/// One service the edge forwards to.
#[derive(Debug, Clone)]
struct Upstream {
    /// The service's name, for error details.
    name: &'static str,
    /// Its base URL without a trailing slash; the request's path (prefix included) follows.
    base: String,
}

/// Where a dev token comes from (dev mode only).
#[derive(Clone)]
struct DevMint {
    issuer: auth::DevIssuer,
    audience: String,
}

/// The edge, ready to serve. Cheap to clone.
#[derive(Clone)]
pub struct Edge {
    inner: Arc<Inner>,
}

struct Inner {
    /// Forwards requests; no redirects followed, no total timeout (answers are streamed).
    client: reqwest::Client,
    /// control-api.
    control: Upstream,
    /// membership-api.
    membership: Upstream,
    /// bulk-api.
    bulk: Upstream,
    /// What `/config.json` tells the app.
    client_config: Value,
    /// The Content-Security-Policy of every answer.
    csp: HeaderValue,
    /// Present in dev mode only: then `/dev/token` exists.
    dev: Option<DevMint>,
    /// Body size and time limits.
    http: HttpArgs,
}

fn base_url(name: &'static str, raw: &str) -> anyhow::Result<Upstream> {
    let url = reqwest::Url::parse(raw).with_context(|| format!("the {name} URL {raw:?}"))?;
    anyhow::ensure!(
        matches!(url.scheme(), "http" | "https"),
        "the {name} URL must be http or https"
    );
    Ok(Upstream {
        name,
        base: raw.trim_end_matches('/').to_string(),
    })
}

/// `scheme://host[:port]` of an http(s) URL.
fn origin_of(field: &str, raw: &str) -> anyhow::Result<String> {
    let url = reqwest::Url::parse(raw).with_context(|| format!("{field}: {raw:?} is not a URL"))?;
    anyhow::ensure!(
        matches!(url.scheme(), "http" | "https"),
        "{field} must be an http or https URL"
    );
    Ok(url.origin().ascii_serialization())
}

impl Edge {
    /// Builds the edge from its configuration. In dev mode it loads (or creates) the dev
    /// issuer's key under `data_dir/dev-issuer`; otherwise it reads the IdP's discovery
    /// document (unless every endpoint is given), retrying while the IdP does not answer.
    pub async fn from_config(cfg: &EdgeConfig) -> anyhow::Result<Self> {
        if cfg.dev_mode {
            let dev = auth::DevIssuer::load_or_create(&cfg.data_dir.join("dev-issuer"))
                .context("loading the dev issuer")?;
            return Self::new(cfg, Some(dev));
        }
        let discovered = if cfg.oidc.needs_discovery() {
            Some(cfg.oidc.discover().await?)
        } else {
            None
        };
        Self::build(cfg, None, discovered.as_ref())
    }

    /// Builds the edge, using `dev` as the dev issuer when in dev mode (`hush up` passes its
    /// own); outside dev mode, from the endpoints given in `cfg` alone (no discovery).
    pub fn new(cfg: &EdgeConfig, dev: Option<auth::DevIssuer>) -> anyhow::Result<Self> {
        Self::build(cfg, dev, None)
    }

    /// Builds the edge outside dev mode with the endpoints `discovered` names, each
    /// overridden by one given in `cfg`.
    pub fn with_discovery(cfg: &EdgeConfig, discovered: &auth::Discovery) -> anyhow::Result<Self> {
        Self::build(cfg, None, Some(discovered))
    }

    fn build(
        cfg: &EdgeConfig,
        dev: Option<auth::DevIssuer>,
        discovered: Option<&auth::Discovery>,
    ) -> anyhow::Result<Self> {
        let control = base_url("control-api", &cfg.control_url)?;
        let membership = base_url("membership-api", &cfg.membership_url)?;
        let bulk = base_url("bulk-api", &cfg.bulk_url)?;
        let mut connect_src = vec!["'self'".to_string()];
        let (client_config, dev) = if cfg.dev_mode {
            dev_sign_in_reach(cfg.listen.ip(), cfg.expose_dev_sign_in)?;
            let issuer = dev.context("dev mode needs the dev issuer")?;
            (
                json!({ "auth": { "mode": "dev" } }),
                Some(DevMint {
                    issuer,
                    audience: cfg.dev_audience.clone(),
                }),
            )
        } else {
            let o = &cfg.oidc;
            let given = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
            let pick = |v: &Option<String>, found: Option<&Option<String>>, var: &str| {
                given(v)
                    .or_else(|| found.cloned().flatten())
                    .with_context(|| {
                        format!(
                            "{var} is required outside dev mode (the app signs in with it): set \
                             HUSH_OIDC_ISSUER for discovery, or {var} itself"
                        )
                    })
            };
            let authorization = pick(
                &o.oidc_authorization_endpoint,
                discovered.map(|d| &d.authorization_endpoint),
                "HUSH_OIDC_AUTHORIZATION_ENDPOINT",
            )?;
            let token = pick(
                &o.oidc_token_endpoint,
                discovered.map(|d| &d.token_endpoint),
                "HUSH_OIDC_TOKEN_ENDPOINT",
            )?;
            let end_session = given(&o.oidc_end_session_endpoint)
                .or_else(|| discovered.and_then(|d| d.end_session_endpoint.clone()));
            let client_id = given(&o.oidc_client_id).context(
                "HUSH_OIDC_CLIENT_ID is required outside dev mode (the app signs in with it)",
            )?;
            origin_of("HUSH_OIDC_AUTHORIZATION_ENDPOINT", &authorization)?;
            if let Some(end) = &end_session {
                origin_of("HUSH_OIDC_END_SESSION_ENDPOINT", end)?;
            }
            // The token endpoint is the one place besides the edge the app fetches from (code
            // exchange, refresh); the authorization and end-session endpoints are navigations.
            let token_origin = origin_of("HUSH_OIDC_TOKEN_ENDPOINT", &token)?;
            connect_src.push(token_origin);
            let issuer = given(&o.oidc_issuer).or_else(|| discovered.map(|d| d.issuer.clone()));
            (
                json!({ "auth": {
                    "mode": "oidc",
                    "issuer": issuer,
                    "authorization_endpoint": authorization,
                    "token_endpoint": token,
                    "end_session_endpoint": end_session,
                    "client_id": client_id,
                    "scope": o.oidc_scope,
                    "audience": o.oidc_audience,
                    "token": o.oidc_token,
                } }),
                None,
            )
        };
        // No inline script or style anywhere: the app is files from this origin only, and the
        // only other place it talks to is the IdP's token endpoint.
        let csp = format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             font-src 'self'; connect-src {}; manifest-src 'self'; form-action 'self'; \
             base-uri 'none'; frame-ancestors 'none'",
            connect_src.join(" ")
        );
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(Duration::from_secs(cfg.upstream_timeout_secs))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                control,
                membership,
                bulk,
                client_config,
                csp: HeaderValue::from_str(&csp).context("the Content-Security-Policy")?,
                dev,
                http: HttpArgs {
                    body_limit_bytes: cfg.body_limit_bytes,
                    request_timeout_secs: cfg.request_timeout_secs,
                    ..HttpArgs::default()
                },
            }),
        })
    }
}

/// The whole edge: the app, `/config.json`, the proxied prefixes, `/dev/token` in dev mode,
/// `/healthz` and `/readyz` (every service answers its own `/readyz`), in the common layers
/// and with the security headers on every answer.
pub fn router(edge: Edge) -> Router {
    let inner = edge.inner.clone();
    let checks = [&inner.control, &inner.membership, &inner.bulk]
        .into_iter()
        .map(|up| {
            let client = inner.client.clone();
            let url = format!("{}/readyz", up.base);
            let check = health::check(move || {
                let (client, url) = (client.clone(), url.clone());
                async move {
                    match client.get(&url).send().await {
                        Ok(r) if r.status().is_success() => Ok(()),
                        Ok(r) => Err(format!("status {}", r.status().as_u16())),
                        Err(e) => Err(e.without_url().to_string()),
                    }
                }
            });
            (up.name, check)
        })
        .collect::<Vec<_>>();
    let mut app = Router::new()
        .route("/", get(index))
        .route("/config.json", get(client_config))
        .route("/api", get(api_reference))
        .route("/api/", get(api_reference))
        .route("/control/{*rest}", any(proxy_control))
        .route("/membership/{*rest}", any(proxy_membership))
        .route("/bulk/{*rest}", any(proxy_bulk))
        // Files answer GET and HEAD; any other method on a path that is not a route above is
        // "no such resource", so `/dev/token` outside dev mode is a plain 404.
        .route("/{*path}", any(asset));
    if inner.dev.is_some() {
        app = app.route(
            "/dev/token",
            post(dev_token).layer(DefaultBodyLimit::max(DEV_TOKEN_BODY_LIMIT)),
        );
    }
    let app = app
        .with_state(edge.clone())
        .merge(health::router(checks))
        .layer(axum::middleware::map_response_with_state(
            edge,
            security_headers,
        ));
    service_kit::with_common_layers(app, &inner.http)
}

/// Serves the edge on `listener` until `shutdown` completes.
pub async fn run(
    cfg: EdgeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let edge = Edge::from_config(&cfg).await?;
    service_kit::serve(listener, router(edge), shutdown).await?;
    Ok(())
}

/// Adds the security headers to every answer, proxied ones included.
async fn security_headers(State(edge): State<Edge>, mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, edge.inner.csp.clone());
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), interest-cohort=()"),
    );
    res
}

// ---------------------------------------------------------------------------------------------
// The app's files

/// The media type of an embedded file, by its extension.
fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("json") => "application/json",
        Some("webmanifest") => "application/manifest+json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// One embedded file, with an `ETag` from its hash so browsers revalidate cheaply: the app is
/// small, and `no-cache` means an upgraded binary is picked up on the next load.
fn serve_asset(path: &str, headers: &HeaderMap) -> Response {
    let Some(file) = Assets::get(path) else {
        return Problem::from_status(StatusCode::NOT_FOUND).into_response();
    };
    let hash = file.metadata.sha256_hash();
    let etag = format!("\"{}\"", hex::encode(&hash[..16]));
    let cache = [
        (header::CONTENT_TYPE, content_type(path).to_string()),
        (header::CACHE_CONTROL, "no-cache".to_string()),
        (header::ETAG, etag.clone()),
    ];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    if fresh {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    (cache, file.data.into_owned()).into_response()
}

async fn index(headers: HeaderMap) -> Response {
    serve_asset("index.html", &headers)
}

/// The API reference page: the vendored Swagger UI rendering the public services' OpenAPI
/// documents (`web/app/api/`), under the same CSP as the app.
async fn api_reference(headers: HeaderMap) -> Response {
    serve_asset("api/index.html", &headers)
}

async fn asset(
    method: Method,
    axum::extract::Path(path): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return Problem::from_status(StatusCode::NOT_FOUND).into_response();
    }
    serve_asset(&path, &headers)
}

async fn client_config(State(edge): State<Edge>) -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(edge.inner.client_config.clone()),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// Dev sign-in

/// Whom a dev token is for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DevTokenRequest {
    /// `sub`.
    sub: String,
    /// `email`, if any.
    #[serde(default)]
    email: Option<String>,
    /// `member` (default), `guest` or `agent`.
    #[serde(default)]
    kind: Option<String>,
    /// Roles, e.g. `operator`, `label-admin`.
    #[serde(default)]
    roles: Vec<String>,
}

/// A minted dev token, shaped like a token endpoint's answer.
#[derive(Debug, Serialize)]
struct DevTokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
}

fn valid_role(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 64
        && r.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Mints a dev token (dev mode only; the route does not exist otherwise).
async fn dev_token(
    State(edge): State<Edge>,
    AppJson(req): AppJson<DevTokenRequest>,
) -> Result<Response, Problem> {
    let Some(dev) = &edge.inner.dev else {
        return Err(Problem::from_status(StatusCode::NOT_FOUND));
    };
    let sub = Subject::parse(req.sub).map_err(|e| Problem::invalid(e.to_string()))?;
    let email = req
        .email
        .filter(|e| !e.trim().is_empty())
        .map(Email::parse)
        .transpose()
        .map_err(|e| Problem::invalid(e.to_string()))?;
    let kind = match req.kind.as_deref() {
        None | Some("") => IdentityKind::Member,
        Some(k) => IdentityKind::parse(k).map_err(|e| Problem::invalid(e.to_string()))?,
    };
    if req.roles.len() > MAX_DEV_ROLES || !req.roles.iter().all(|r| valid_role(r)) {
        return Err(Problem::invalid(format!(
            "roles: at most {MAX_DEV_ROLES}, each 1 to 64 letters, digits, '-', '_', '.' or ':'"
        )));
    }
    let claims = auth::DevClaims {
        sub: sub.into_inner(),
        email: email.map(|e| e.to_string()),
        kind,
        roles: req.roles,
    };
    let token = dev.issuer.mint(&claims, &dev.audience, DEV_TOKEN_TTL);
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(DevTokenResponse {
            access_token: token,
            token_type: "Bearer",
            expires_in: DEV_TOKEN_TTL.as_secs(),
        }),
    )
        .into_response())
}

// ---------------------------------------------------------------------------------------------
// The reverse proxy

/// Headers that describe one connection, not the message: never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes hop-by-hop headers, and any header the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Whether a path has a `.` or `..` segment, plain or percent-encoded: refused, so a path can
/// never be turned into another prefix (such as `/tenant`) by whatever normalises it further on.
fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|seg| {
        let s = seg.to_ascii_lowercase().replace("%2e", ".");
        s == "." || s == ".."
    }) || path.to_ascii_lowercase().contains("%2f")
}

async fn proxy_control(State(edge): State<Edge>, req: Request) -> Response {
    forward(&edge, &edge.inner.control, req).await
}

async fn proxy_membership(State(edge): State<Edge>, req: Request) -> Response {
    forward(&edge, &edge.inner.membership, req).await
}

async fn proxy_bulk(State(edge): State<Edge>, req: Request) -> Response {
    forward(&edge, &edge.inner.bulk, req).await
}

/// Whether a request body exceeded the edge's limit while it was being streamed upstream.
fn is_length_limit(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// Forwards one request to `up` and streams its answer back: status, headers (less
/// hop-by-hop ones) and body as the service sent them, so problem+json bodies and
/// `Retry-After` reach the app unchanged.
async fn forward(edge: &Edge, up: &Upstream, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    if has_dot_segment(path) {
        return Problem::bad_request("the path must not contain '.' or '..' segments")
            .into_response();
    }
    let mut url = format!("{}{}", up.base, path);
    if let Some(q) = parts.uri.query() {
        url.push('?');
        url.push_str(q);
    }
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    headers.remove(header::HOST);
    let mut outbound = edge
        .inner
        .client
        .request(parts.method, url)
        .headers(headers);
    if !axum::body::HttpBody::is_end_stream(&body) {
        outbound = outbound.body(reqwest::Body::wrap_stream(body.into_data_stream()));
    }
    match outbound.send().await {
        Ok(res) => {
            let status = res.status();
            let mut headers = res.headers().clone();
            strip_hop_by_hop(&mut headers);
            let mut out = Response::new(Body::from_stream(res.bytes_stream()));
            *out.status_mut() = status;
            *out.headers_mut() = headers;
            out
        }
        Err(e) if is_length_limit(&e) => {
            Problem::from_status(StatusCode::PAYLOAD_TOO_LARGE).into_response()
        }
        Err(e) if e.is_timeout() => {
            tracing::warn!(upstream = up.name, "upstream timed out");
            Problem::new(
                StatusCode::GATEWAY_TIMEOUT,
                "gateway-timeout",
                "Gateway timeout",
            )
            .with_detail(format!("{} did not answer in time; retry later", up.name))
            .into_response()
        }
        Err(e) => {
            // Without the URL: it may hold a group id (INV-6).
            tracing::warn!(upstream = up.name, error = %e.without_url(), "upstream unreachable");
            let mut res = Problem::new(StatusCode::BAD_GATEWAY, "bad-gateway", "Bad gateway")
                .with_detail(format!("{} is not answering; retry later", up.name))
                .into_response();
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
            res
        }
    }
}

#[cfg(test)]
mod tests;
