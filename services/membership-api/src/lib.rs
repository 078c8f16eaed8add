//! membership-api: routine membership — join, ask to join, redeem an invite, leave, "my
//! groups", "am I a member" — and owners' handling of their groups: pending requests, claim
//! rules, invites, adding and removing people.
//!
//! It owns membership *intents* (pending join requests, hashed invite codes, claim rules) and
//! never a membership list: the isolated tenant is the membership truth, asked only about one
//! person at a time (INV-1, INV-2). Every path that would add someone whose kind it knows asks
//! the group's label first ([`domain::may_enter`]) and writes nothing when it refuses; every
//! add hands the label to the tenant, which checks it again. Owners' adds and removals answer
//! the same whatever the membership was (INV-3). Writes are rate-limited per caller.
//!
//! Run it with `cargo run -p membership-api -- --help` (every flag has a `HUSH_*` variable), or
//! as part of the whole stack with `hush up`. Tests call [`router`] with a state they build, or
//! [`run`] on a listener bound to port 0.

pub mod catalog_cache;
mod claims;
mod clients;
mod config;
mod decision_key;
mod decisions;
mod error;
mod extract;
mod forget;
mod invites;
mod limits;
mod members;
mod membership;
mod notices;
mod ports;
mod requests;
pub mod seal;
pub mod store;

pub use claims::{ClaimRule, ClaimRules, Condition};
pub use clients::{ControlCatalog, TenantDirectory};
pub use config::{AbuseLimits, Config, DecisionArgs};
pub use decision_key::{generate_decision_key_file, DecisionKey};
pub use decisions::{
    granted, AssertionAnswer, AssertionRequest, DecisionClaims, DecisionSettings, ExchangeAnswer,
    JWT_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT,
};
pub use error::{ApiError, UpstreamError, BAD_INVITE_DETAIL, NOT_OWNER_DETAIL};
pub use invites::{CreatedInvite, InviteRequest, InviteView, Invites, Redeem, CODE_PREFIX};
pub use limits::{Action, Limited, RateLimiter};
pub use members::{Accepted, Person};
pub use membership::{JoinOutcome, Membership, MyGroup, MyGroups, PendingRef, APPROVAL_NOTICE};
pub use ports::{AddError, Catalog, Clock, Directory, SystemClock};
pub use requests::{Decision, MyRequestView, MyRequests, PendingRequests, PendingView};
pub use seal::{generate_seal_key_file, RequestKey};
pub use store::Store;

use anyhow::Context as _;
use auth::Verifier;
use axum::extract::FromRef;
use axum::Router;
use control_client::ControlClient;
use domain::ServiceName;
use service_kit::health;
use service_kit::openapi::USER_TOKEN;
use service_kit::HttpArgs;
use std::future::Future;
use std::sync::Arc;
use tenant_client::TenantClient;
use tokio::net::TcpListener;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

/// Most database connections one replica holds; the service does little database work per
/// request, so a small pool is plenty and leaves room for other replicas.
const MAX_DB_CONNECTIONS: u32 = 8;

/// Everything a request handler may need. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Checks users' tokens; the [`auth::Caller`] extractor reaches it through `FromRef`.
    pub verifier: Verifier,
    /// This service's own database of membership intents.
    pub store: Arc<dyn Store>,
    /// The isolated tenant, the membership truth.
    pub tenant: Arc<dyn Directory>,
    /// control-api, which knows each group's label, join policy, state and owners: asked
    /// afresh for every owner action and invite redemption.
    pub catalog: Arc<dyn Catalog>,
    /// control-api's lookups as kept for the routine path, joins and "my groups"
    /// ([`catalog_cache`]): a change in control-api governs them within the poll interval
    /// (`HUSH_CATALOG_POLL_MS`), and the tenant checks the label it keeps for the group again.
    pub routine_catalog: Arc<dyn Catalog>,
    /// Body size and time limits the router enforces.
    pub http: HttpArgs,
    /// Per-caller budgets for joins, leaves, redemptions and owner writes (shared by the
    /// replicas through the database), and apps' decisions (per replica).
    pub limits: Arc<RateLimiter>,
    /// The time: invite expiry, request dates, rate-limit refills.
    pub clock: Arc<dyn Clock>,
    /// How access decisions for apps are signed.
    pub decisions: Arc<DecisionSettings>,
    /// `/metrics`: requests by route template and status.
    pub metrics: service_kit::metrics::Metrics,
}

impl AppState {
    /// The same state for the request `id`: its tenant calls forward the id, so the tenant's
    /// audit events of this request carry it. Handlers that call the tenant start with this.
    #[must_use]
    pub fn for_request(&self, id: &service_kit::RequestId) -> Self {
        let mut state = self.clone();
        if let Some(tenant) = self.tenant.for_request(id) {
            state.tenant = tenant;
        }
        state
    }
}

impl FromRef<AppState> for Verifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

/// The seal key the configuration names, or a random one held in memory only.
fn load_key(config: &Config) -> anyhow::Result<RequestKey> {
    if let Some(k) = &config.seal_key {
        return RequestKey::parse(k.expose());
    }
    if let Some(path) = &config.seal_key_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the membership seal key {}", path.display()))?;
        return RequestKey::parse(&text);
    }
    tracing::warn!(
        "no membership seal key configured: using a random one; pending join requests cannot \
         be read after a restart, and rate limits are not shared with other replicas"
    );
    Ok(RequestKey::random())
}

/// Builds the state from configuration: connects to and migrates the database, loads this
/// service's signing key, and sets up the token verifier and the clients of the tenant and
/// control-api.
pub async fn build_state(config: &Config) -> anyhow::Result<AppState> {
    let verifier = Verifier::new(&config.jwt).context("setting up token verification")?;
    let signer = config
        .service_key
        .signer(ServiceName::MembershipApi)
        .context("loading the service key")?;
    let tenant = TenantClient::new(config.tenant_url.clone(), signer.clone())
        .context("setting up the tenant's client")?;
    // Offboarding bites: every caller's token is checked against the tenant's record of
    // offboardings (answers reused for at most auth::VALID_FOR).
    let verifier = verifier.with_revocations(Arc::new(tenant.clone()));
    let control = ControlClient::new(config.control_url.clone(), signer)
        .context("setting up control-api's client")?;
    let key = load_key(config)?;
    let store = store::connect(
        config.database_url.expose(),
        MAX_DB_CONNECTIONS,
        key.clone(),
    )
    .await
    .context("opening the database")?;
    let limits = RateLimiter::new(&config.limits, store.limit_table(), &key);
    Ok(AppState {
        verifier,
        store,
        tenant: Arc::new(TenantDirectory(tenant)),
        catalog: Arc::new(ControlCatalog(control.clone())),
        routine_catalog: catalog_cache::CachedCatalog::start(
            Arc::new(ControlCatalog(control.clone())),
            Arc::new(control),
            catalog_cache::CacheSettings {
                poll: std::time::Duration::from_millis(config.catalog_poll_ms),
            },
        ),
        http: config.http.clone(),
        limits: Arc::new(limits),
        clock: Arc::new(SystemClock),
        decisions: Arc::new(decision_settings(&config.decisions)?),
        metrics: service_kit::metrics::MetricsBuilder::new()
            .with_token(config.http.metrics.load_token()?)
            .build(),
    })
}

/// The decision key the configuration names, or a random one held in memory only.
pub fn decision_settings(args: &DecisionArgs) -> anyhow::Result<DecisionSettings> {
    let key = match &args.decision_key_file {
        Some(path) => DecisionKey::load(path)?,
        None => {
            tracing::warn!(
                "no decision key configured (HUSH_DECISION_KEY_FILE): using a random one; apps \
                 must refetch the JWKS after every restart"
            );
            DecisionKey::generate()
        }
    };
    Ok(DecisionSettings {
        key,
        issuer: args.decision_issuer.clone(),
        ttl_secs: args.decision_ttl_secs,
    })
}

/// The OpenAPI description of the public API, served at `/membership/v1/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Hush membership-api",
        description = "Routine membership of hidden-membership groups, and owners' handling of their groups.\n\n\
                       **No endpoint lists a group's members.** Answers about membership concern the caller alone. \
                       Owners see *intents* only: pending requests to join (asking for approval shows the requester \
                       to the owners, and the join's 202 says so), invites as use counts (never who redeemed them), \
                       and claim rules. Someone admitted by claim rules or an invite is never shown to anyone. \
                       Owners' adds and removals answer the same whether or not the person was a member.\n\n\
                       Joins, leaves, redemptions and owner writes are rate-limited per caller (429 with `Retry-After`). \
                       Every error is application/problem+json (RFC 9457) with a stable `type`."
    ),
    modifiers(&USER_TOKEN),
    tags(
        (name = "membership", description = "The caller's own memberships and requests."),
        (name = "decisions", description = "Access decisions for apps, about the person presenting their own token only: token exchange (RFC 8693) by the app, or an assertion the person fetches for the app. Signed with the keys at `/membership/v1/decisions/jwks.json`."),
        (name = "owners", description = "A group's owners: pending requests, claim rules, invites, adding and removing people. \
                                          Every route answers a non-owner 403 `not-owner`, the same whether or not the group exists."),
    )
)]
pub struct ApiDoc;

/// The OpenAPI document of the API, as served.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().split_for_parts().1
}

fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(membership::router())
        .merge(requests::router())
        .merge(forget::router())
        .merge(claims::router())
        .merge(invites::router())
        .merge(members::router())
        .merge(decisions::router())
}

/// The whole service: the API under `/membership/v1`, its OpenAPI document, `/healthz` and
/// `/readyz` (the database and the tenant), in the common layers.
pub fn router(state: AppState) -> Router {
    let (api, openapi) = api().split_for_parts();
    let checks = vec![
        health::ping("database", state.store.clone(), |store| async move {
            store.ping().await
        }),
        health::ping("tenant", state.tenant.clone(), |tenant| async move {
            tenant.ping().await
        }),
    ];
    let http = state.http.clone();
    let metrics = state.metrics.clone();
    let api = api.with_state(state);
    service_kit::assemble(
        api,
        openapi,
        "/membership/v1/openapi.json",
        checks,
        &http,
        &metrics,
    )
}

/// Serves the service on `listener` until `shutdown` completes, then lets in-flight requests
/// finish.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = build_state(&config).await?;
    // The IdP's keys, loaded now (and retried with backoff, logged) rather than by the first
    // user's request: a misconfigured or unreachable IdP shows in the log at start.
    state.verifier.spawn_warm_up();
    tracing::info!(addr = %listener.local_addr()?, "membership-api listening");
    service_kit::serve(listener, router(state), shutdown).await?;
    Ok(())
}
