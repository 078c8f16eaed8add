//! membership-api: routine membership — join, leave, "my groups", "am I a member".
//!
//! It owns membership *intents* (join requests awaiting an owner, hashed invite codes) and never
//! a membership list: the isolated tenant is the membership truth, asked only about the caller
//! (INV-1, INV-2). Every path that would add a member asks the group's label first
//! ([`domain::may_enter`]) and writes nothing when it refuses.
//!
//! Run it with `cargo run -p membership-api -- --help` (every flag has a `HUSH_*` variable), or
//! as part of the whole stack with `hush up`. Tests call [`router`] with a state they build, or
//! [`run`] on a listener bound to port 0.

mod clients;
mod config;
mod error;
mod membership;
mod ports;
pub mod store;

pub use clients::{ControlCatalog, TenantDirectory};
pub use config::Config;
pub use error::{ApiError, UpstreamError};
pub use membership::{Membership, MyGroup, MyGroups};
pub use ports::{Catalog, Directory};
pub use store::Store;

use anyhow::Context as _;
use auth::Verifier;
use axum::extract::FromRef;
use axum::{routing::get, Json, Router};
use control_api::client::ControlClient;
use domain::ServiceName;
use service_kit::health;
use service_kit::HttpArgs;
use std::future::Future;
use std::sync::Arc;
use tenant_client::TenantClient;
use tokio::net::TcpListener;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
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
    /// control-api, which knows each group's label, join policy and state.
    pub catalog: Arc<dyn Catalog>,
    /// Body size and time limits the router enforces.
    pub http: HttpArgs,
}

impl FromRef<AppState> for Verifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
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
    let control = ControlClient::new(config.control_url.clone(), signer)
        .context("setting up control-api's client")?;
    let store = store::connect(&config.database_url, MAX_DB_CONNECTIONS)
        .await
        .context("opening the database")?;
    Ok(AppState {
        verifier,
        store,
        tenant: Arc::new(TenantDirectory(tenant)),
        catalog: Arc::new(ControlCatalog(control)),
        http: config.http.clone(),
    })
}

/// The OpenAPI description of the public API, served at `/membership/v1/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Hush membership-api",
        description = "Routine membership of hidden-membership groups: join, leave, my groups, am I a member. \
                       Every answer is about the caller alone; no endpoint lists a group's members. \
                       Every error is application/problem+json (RFC 9457) with a stable `type`."
    ),
    modifiers(&BearerAuth),
    tags((name = "membership", description = "The caller's own memberships."))
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some("JWT".into());
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The whole service: the API under `/membership/v1`, its OpenAPI document, `/healthz` and
/// `/readyz` (the database and the tenant), in the common layers.
pub fn router(state: AppState) -> Router {
    let (api, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(membership::router())
        .split_for_parts();
    let openapi = Arc::new(openapi);
    let store = state.store.clone();
    let tenant = state.tenant.clone();
    let checks = vec![
        (
            "database",
            health::check(move || {
                let store = store.clone();
                async move { store.ping().await.map_err(|e| e.to_string()) }
            }),
        ),
        (
            "tenant",
            health::check(move || {
                let tenant = tenant.clone();
                async move { tenant.ping().await.map_err(|e| e.to_string()) }
            }),
        ),
    ];
    let http = state.http.clone();
    let app = api
        .route(
            "/membership/v1/openapi.json",
            get(move || async move { Json(openapi.as_ref().clone()) }),
        )
        .merge(health::router(checks))
        .layer(axum::middleware::map_response(error::log_failures))
        .with_state(state);
    service_kit::with_common_layers(app, &http)
}

/// Serves the service on `listener` until `shutdown` completes, then lets in-flight requests
/// finish.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = build_state(&config).await?;
    tracing::info!(addr = %listener.local_addr()?, "membership-api listening");
    service_kit::serve(listener, router(state), shutdown).await?;
    Ok(())
}
