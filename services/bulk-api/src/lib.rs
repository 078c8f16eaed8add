//! bulk-api: long-lived bulk membership jobs, for operators (and owners, for their groups).
//!
//! A job is an NDJSON or CSV upload of adds and removes, read as it streams in ([`intake`],
//! [`submit`]), cut into chunks sealed at rest ([`seal`]; INV-5) and run by workers
//! ([`worker`]) that lease chunks, apply each through the tenant's batch endpoint in one
//! transaction, and checkpoint it. Each add is checked against its group's label by the tenant
//! with `domain::may_enter`, as on every other path. Reports give counts by reason, never who
//! was already a member (INV-3); a job's input is purged when it ends.
//!
//! Run it with `cargo run -p bulk-api -- --help` (every flag has a `HUSH_*` variable), or as
//! part of the whole stack with `hush up`. Tests call [`router`] with a state they build, or
//! [`run`] on a listener bound to port 0.

pub mod chunk;
mod config;
mod error;
pub mod intake;
pub mod jobs;
pub mod seal;
pub mod store;
pub mod submit;
pub mod worker;

pub use config::{Config, JobSettings, Redacted};
pub use error::{ApiError, LineErrorView};
pub use jobs::{Job, JobList, JobState, JobView};
pub use seal::{generate_seal_key_file, JobKey};
pub use store::Store;

use anyhow::Context as _;
use auth::Verifier;
use axum::extract::FromRef;
use axum::Router;
use control_client::ControlClient;
use domain::ServiceName;
use service_kit::background::Background;
use service_kit::health;
use service_kit::metrics::{Metrics, MetricsBuilder};
use service_kit::openapi::USER_TOKEN;
use service_kit::HttpArgs;
use std::future::Future;
use std::sync::Arc;
use tenant_client::TenantClient;
use tokio::net::TcpListener;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

/// Database connections the API holds (the workers have their own pool besides).
const MAX_DB_CONNECTIONS: u32 = 4;
/// The largest chunk: what the tenant takes in one batch.
pub const MAX_CHUNK: usize = 10_000;

/// Everything a request handler may need. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Checks users' tokens; the [`auth::Caller`] extractor reaches it through `FromRef`.
    pub verifier: Verifier,
    /// This service's own database of jobs.
    pub store: Arc<dyn Store>,
    /// The isolated tenant, which jobs are applied to; readiness asks it.
    pub tenant: TenantClient,
    /// control-api: groups' labels and owners.
    pub control: ControlClient,
    /// Seals job input at rest.
    pub key: JobKey,
    /// Chunk size, limits, rate.
    pub settings: JobSettings,
    /// Body size and time limits the router enforces.
    pub http: HttpArgs,
    /// Rung when a job becomes runnable (queued or resumed), so this replica's idle workers
    /// start on it at once instead of at their next poll.
    pub work: Arc<tokio::sync::Notify>,
    /// `/metrics`: requests, and jobs in flight by state ([`job_metrics`]).
    pub metrics: Metrics,
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
    let tenant = TenantClient::new(config.tenant_url.clone(), signer.clone())
        .context("setting up the tenant's client")?;
    // Offboarding bites: every caller's token is checked against the tenant's record of
    // offboardings (answers reused for at most auth::VALID_FOR).
    let verifier = verifier.with_revocations(Arc::new(tenant.clone()));
    let control = ControlClient::new(config.control_url.clone(), signer)
        .context("setting up control-api's client")?;
    let store = store::connect(config.database_url.expose(), MAX_DB_CONNECTIONS)
        .await
        .context("opening the database")?;
    let metrics = job_metrics(
        MetricsBuilder::new().with_token(config.http.metrics.load_token()?),
        store.clone(),
    )
    .build();
    Ok(AppState {
        verifier,
        store,
        tenant,
        control,
        key: load_key(config)?,
        settings: JobSettings::from_config(config),
        http: config.http.clone(),
        work: Arc::default(),
        metrics,
    })
}

/// Adds `hush_bulk_jobs{state}`: the jobs queued, running and paused, over every job, read
/// from the database at each scrape (so every replica shows the same). A job's size, its
/// groups and who submitted it are never exported.
pub fn job_metrics(mut metrics: MetricsBuilder, store: Arc<dyn Store>) -> MetricsBuilder {
    use service_kit::metrics::{Family, Gauge};
    let jobs = Family::<[(&'static str, &'static str); 1], Gauge>::default();
    metrics.register(
        "bulk_jobs",
        "Bulk jobs in flight (queued, running, paused), by state",
        jobs.clone(),
    );
    metrics.on_scrape(move || {
        let (jobs, store) = (jobs.clone(), store.clone());
        async move {
            match store.jobs_in_flight().await {
                Ok(rows) => {
                    for state in [JobState::Queued, JobState::Running, JobState::Paused] {
                        let n = rows
                            .iter()
                            .find(|(s, _)| s == state.as_str())
                            .map_or(0, |(_, n)| *n);
                        jobs.get_or_create(&[("state", state.as_str())]).set(n);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "counting jobs for /metrics failed"),
            }
        }
    });
    metrics
}

/// The seal key the configuration names, or a random one held in memory only.
fn load_key(config: &Config) -> anyhow::Result<JobKey> {
    if let Some(k) = &config.seal_key {
        return JobKey::parse(k.expose());
    }
    if let Some(path) = &config.seal_key_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the bulk seal key {}", path.display()))?;
        return JobKey::parse(&text);
    }
    tracing::warn!(
        "no bulk seal key configured: using a random one; queued jobs will not survive a restart"
    );
    Ok(JobKey::random())
}

/// The OpenAPI description of the public API, served at `/bulk/v1/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Hush bulk-api",
        description = "Bulk membership jobs, for operators. Reports are counts by reason, never per person. \
                       Every error is application/problem+json (RFC 9457) with a stable `type`."
    ),
    modifiers(&USER_TOKEN),
    tags((name = "jobs", description = "Bulk membership jobs."))
)]
pub struct ApiDoc;

/// The OpenAPI document of the API, as served.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().2
}

/// The API's routes but the upload, the upload's route, and the document of both.
fn api() -> (Router<AppState>, Router<AppState>, utoipa::openapi::OpenApi) {
    let (api, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(jobs::router())
        .split_for_parts();
    let (upload, upload_doc) = submit::router().split_for_parts();
    openapi.merge(upload_doc);
    (api, upload, openapi)
}

/// The whole service: the API under `/bulk/v1`, its OpenAPI document, `/healthz` and `/readyz`
/// (the database and the tenant), in the common layers.
pub fn router(state: AppState) -> Router {
    let (api, upload, openapi) = api();
    // The upload route streams up to its own, larger, explicit limit.
    let upload = service_kit::explicit_body_limit(upload, state.settings.upload_limit_bytes)
        .with_state(state.clone());
    let checks = vec![
        health::ping("database", state.store.clone(), |store| async move {
            store.ping().await
        }),
        health::ping(
            "tenant",
            Arc::new(state.tenant.clone()),
            |tenant| async move { tenant.ping().await },
        ),
    ];
    let http = state.http.clone();
    let metrics = state.metrics.clone();
    let api = api
        .merge(service_kit::openapi::route(
            "/bulk/v1/openapi.json",
            openapi,
        ))
        .with_state(state);
    service_kit::assemble_with_own_limits(api, upload, checks, &http, &metrics)
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
    // Bulk work runs on threads of its own, with its own database pool and HTTP clients made
    // there, so jobs never take the API's threads or connections (and the API never waits for
    // a worker's thread to drive its sockets).
    let lane = Background::start("bulk-workers", state.settings.workers.min(2))
        .context("starting the workers' threads")?;
    let workers = {
        let (config, state) = (config.clone(), state.clone());
        lane.run(async move {
            let signer = config.service_key.signer(ServiceName::BulkApi)?;
            let store = store::connect(
                config.database_url.expose(),
                state.settings.workers as u32 + 1,
            )
            .await
            .context("opening the workers' database pool")?;
            anyhow::Ok(worker::Workers {
                throttle: Arc::new(worker::Throttle::shared(
                    state.settings.ops_per_sec,
                    store.limit_table(),
                )),
                store,
                tenant: TenantClient::new(config.tenant_url.clone(), signer.clone())?,
                control: ControlClient::new(config.control_url.clone(), signer)?,
                key: state.key.clone(),
                settings: state.settings.clone(),
                backoff: Arc::default(),
                work: state.work.clone(),
            })
        })
        .await?
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let handles = {
        let _on_the_lane = lane.handle().enter();
        worker::spawn(&workers, &stop_rx)
    };
    tracing::info!(addr = %listener.local_addr()?, workers = handles.len(), "bulk-api listening");
    let shutdown = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    service_kit::serve(listener, router(state), shutdown).await?;
    for h in handles {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(15), h).await;
    }
    Ok(())
}
