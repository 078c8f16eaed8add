//! bulk-api: long-lived bulk membership jobs, for operators.
//!
//! This is the service's skeleton: configuration, its own database of jobs (Postgres or SQLite),
//! `GET /bulk/v1/jobs` for operators, health and the OpenAPI document. Submitting and running
//! jobs come next; when they do, job input is sealed at rest and purged when the job ends
//! (INV-5), every item is checked against its group's label before it is applied, and reports
//! give counts by reason, never who was already a member (INV-3).
//!
//! Run it with `cargo run -p bulk-api -- --help` (every flag has a `HUSH_*` variable), or as
//! part of the whole stack with `hush up`. Tests call [`router`] with a state they build, or
//! [`run`] on a listener bound to port 0.

mod config;
mod error;
pub mod jobs;
pub mod store;

pub use config::Config;
pub use error::ApiError;
pub use jobs::{Job, JobList, JobState, JobView};
pub use store::Store;

use anyhow::Context as _;
use auth::Verifier;
use axum::extract::FromRef;
use axum::{routing::get, Json, Router};
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

/// Most database connections one replica holds. Job workers (later) will want more than the
/// listing does today; this is the bound for both.
const MAX_DB_CONNECTIONS: u32 = 8;

/// Everything a request handler may need. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Checks users' tokens; the [`auth::Caller`] extractor reaches it through `FromRef`.
    pub verifier: Verifier,
    /// This service's own database of jobs.
    pub store: Arc<dyn Store>,
    /// The isolated tenant, which jobs will be applied to; readiness asks it today.
    pub tenant: TenantClient,
    /// Body size and time limits the router enforces.
    pub http: HttpArgs,
}

impl FromRef<AppState> for Verifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

/// Builds the state from configuration: connects to and migrates the database, loads this
/// service's signing key, and sets up the token verifier and the tenant's client.
pub async fn build_state(config: &Config) -> anyhow::Result<AppState> {
    let verifier = Verifier::new(&config.jwt).context("setting up token verification")?;
    let signer = config
        .service_key
        .signer(ServiceName::BulkApi)
        .context("loading the service key")?;
    let tenant = TenantClient::new(config.tenant_url.clone(), signer)
        .context("setting up the tenant's client")?;
    let store = store::connect(&config.database_url, MAX_DB_CONNECTIONS)
        .await
        .context("opening the database")?;
    Ok(AppState {
        verifier,
        store,
        tenant,
        http: config.http.clone(),
    })
}

/// The OpenAPI description of the public API, served at `/bulk/v1/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Hush bulk-api",
        description = "Bulk membership jobs, for operators. Reports are counts by reason, never per person. \
                       Every error is application/problem+json (RFC 9457) with a stable `type`."
    ),
    modifiers(&BearerAuth),
    tags((name = "jobs", description = "Bulk membership jobs."))
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

/// The whole service: the API under `/bulk/v1`, its OpenAPI document, `/healthz` and `/readyz`
/// (the database and the tenant), in the common layers.
pub fn router(state: AppState) -> Router {
    let (api, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(jobs::router())
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
            "/bulk/v1/openapi.json",
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
    tracing::info!(addr = %listener.local_addr()?, "bulk-api listening");
    service_kit::serve(listener, router(state), shutdown).await?;
    Ok(())
}
