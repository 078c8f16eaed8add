//! control-api: the group catalog and the label catalog — create, discover, edit and archive
//! groups; sensitivity labels and their policy; the apps that check access with Hush, their
//! resources and the groups bound to guard them.
//!
//! It never holds membership (INV-1): the isolated tenant is the membership truth, and the only
//! thing control-api asks it about a group's members is an owner's coarse count (INV-4). A new
//! group is answered 202 while the provisioning saga ([`saga`]) has the tenant create its
//! distribution group; it turns `active` only once the tenant confirmed.
//!
//! Run it with `cargo run -p control-api -- --help` (every flag has a `HUSH_*` variable), or as
//! part of the whole stack with `hush up`. Tests call [`router`] with a state they build, or
//! [`run`] on a listener bound to port 0.

mod apps;
pub mod breakglass;
pub mod catalog_audit;
mod config;
mod error;
mod extract;
mod groups;
mod identities;
mod internal;
mod labels;
mod mail;
pub mod model;
mod relabel;
pub mod saga;
pub mod scim;
pub mod seal;
pub mod store;
pub mod tenant;

pub use apps::credential_sha256;
pub use config::{check_mail_domain, Config, INTERNAL_CALLERS};
pub use error::ApiError;
pub use groups::{
    GroupChangeRequest, GroupPage, GroupView, NewGroupRequest, DEFAULT_LIMIT, MAX_LIMIT,
};
pub use labels::{LabelChange, NewLabel, LABEL_ADMIN};
pub use saga::{Saga, SagaSettings};
pub use seal::{generate_seal_key_file, OwnerKey};
pub use store::Store;
pub use tenant::Tenant;

use anyhow::Context;
use auth::{ServiceVerifier, Verifier};
use axum::extract::FromRef;
use axum::Router;
use domain::{Label, ServiceName};
use service_kit::metrics::{Metrics, MetricsBuilder};
use service_kit::openapi::BearerScheme;
use service_kit::{health, HttpArgs};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tenant_client::TenantClient;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

/// Most database connections one replica holds: the catalog is small and each request does a
/// statement or two, so a small pool is plenty and leaves room for other replicas.
const MAX_DB_CONNECTIONS: u32 = 8;

/// How long shutdown waits for the saga to finish the group in hand (a tenant call gives up
/// after 10 s).
const SAGA_STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Everything a request handler may need. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Checks users' tokens; the [`auth::Caller`] extractor reaches it through `FromRef`.
    pub verifier: Verifier,
    /// Checks service tokens on the internal endpoint (membership-api, bulk-api).
    pub services: ServiceVerifier,
    /// The catalog database.
    pub store: Arc<dyn Store>,
    /// The isolated tenant: provisions groups and answers owners' coarse counts.
    pub tenant: Arc<dyn Tenant>,
    /// Contact addresses are `<local part>@<mail_domain>`.
    pub mail_domain: Arc<str>,
    /// Wakes the provisioning saga when a handler queues work, so it does not wait for its
    /// next poll.
    pub saga_wake: Arc<Notify>,
    /// Body size and time limits the router enforces.
    pub http: HttpArgs,
    /// SCIM provisioning (`/scim/v2`), when configured.
    pub scim: Option<Arc<scim::Scim>>,
    /// `/metrics`: requests, and the saga's steps ([`saga::SagaMetrics`]).
    pub metrics: Metrics,
    /// The saga's counters, registered in `metrics`; the saga started by [`run_with_state`]
    /// counts in them.
    pub saga_metrics: saga::SagaMetrics,
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

impl FromRef<AppState> for ServiceVerifier {
    fn from_ref(state: &AppState) -> Self {
        state.services.clone()
    }
}

/// Builds the state from configuration: connects to and migrates the database, seeds the
/// default labels on first start, loads this service's signing key and the keys of the services
/// it trusts, and sets up the token verifier and the tenant's client.
pub async fn build_state(config: &Config) -> anyhow::Result<AppState> {
    let mail_domain = config.checked_mail_domain()?;
    let verifier = Verifier::new(&config.jwt).context("setting up token verification")?;
    let services = config.load_service_verifier()?;
    let signer = config
        .service_key
        .signer(ServiceName::ControlApi)
        .context("loading the service key")?;
    let tenant = TenantClient::new(config.tenant_url.clone(), signer)
        .context("setting up the tenant's client")?;
    // Offboarding bites: every caller's token is checked against the tenant's record of
    // offboardings (answers reused for at most auth::VALID_FOR).
    let verifier = verifier.with_revocations(Arc::new(tenant.clone()));
    let key = config.load_seal_key()?;
    let store = store::connect(config.database_url.expose(), MAX_DB_CONNECTIONS, key)
        .await
        .context("opening the database")?;
    if store
        .seed_labels(&Label::defaults(), service_kit::db::now_ms())
        .await
        .context("seeding the default labels")?
    {
        tracing::info!("seeded the default labels");
    }
    let saga_metrics = saga::SagaMetrics::default();
    let mut metrics = MetricsBuilder::new().with_token(config.http.metrics.load_token()?);
    saga_metrics.register(&mut metrics);
    Ok(AppState {
        metrics: metrics.build(),
        saga_metrics,
        verifier,
        services,
        store,
        tenant: Arc::new(tenant),
        mail_domain: mail_domain.into(),
        saga_wake: Arc::new(Notify::new()),
        http: config.http.clone(),
        scim: scim::Scim::load(&config.scim)?.map(Arc::new),
    })
}

/// The OpenAPI description of the API, served at `/control/v1/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Hush control-api",
        description = "The catalog of hidden-membership groups and of the sensitivity labels that govern them: \
                       create, discover, edit and archive groups; read and manage labels. \
                       No endpoint lists or counts a group's members, except a coarse bucket shown to its owners. \
                       Every error is application/problem+json (RFC 9457) with a stable `type`."
    ),
    modifiers(&USER_TOKEN, &SERVICE_TOKEN),
    tags(
        (name = "groups", description = "The group catalog."),
        (name = "labels", description = "Sensitivity labels and their policy."),
        (name = "apps", description = "Apps that check access with Hush (relying parties) and the resources they protect, each under a label; operators register them, owners bind groups to resources."),
        (name = "internal", description = "For membership-api and bulk-api, with service tokens."),
        (name = "mail", description = "The tenant's outbound mail for operators: the queue's counts, the relay's health, the dead letters. Counts, codes and buckets only: no group, no address."),
        (name = "audit", description = "The catalog's audit, for label-admins: catalog changes, never membership."),
        (name = "break-glass", description = "Lawful access to one group's membership (INV-8): auditors request, two privacy officers approve, the grant is redeemed once.")
    )
)]
pub struct ApiDoc;

/// Service tokens, which only the internal endpoint takes.
const SERVICE_TOKEN: BearerScheme = BearerScheme {
    name: "service",
    format: "JWT",
    description: Some(
        "A service token (ES256, audience control-api) signed by membership-api or bulk-api.",
    ),
};

/// Users' tokens, which every other endpoint takes.
const USER_TOKEN: BearerScheme = BearerScheme {
    description: Some("A user's token from the company IdP (OIDC)."),
    ..service_kit::openapi::USER_TOKEN
};

/// The OpenAPI document of the API, as served.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().split_for_parts().1
}

fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(labels::router())
        .merge(groups::router())
        .merge(relabel::router())
        .merge(apps::router())
        .merge(internal::router())
        .merge(identities::router())
        .merge(mail::router())
        .merge(breakglass::router())
        .merge(catalog_audit::router())
}

/// The whole service: the API under `/control/v1`, its OpenAPI document, `/healthz` and
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
    // SCIM speaks its own protocol (RFC 7644), outside the OpenAPI document.
    let api = api.merge(scim::router()).with_state(state);
    service_kit::assemble(
        api,
        openapi,
        "/control/v1/openapi.json",
        checks,
        &http,
        &metrics,
    )
}

/// Serves the service on `listener` until `shutdown` completes, then lets in-flight requests
/// finish. The provisioning saga runs beside it and stops with it, finishing the group in hand.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = build_state(&config).await?;
    // The IdP's keys, loaded now (and retried with backoff, logged) rather than by the first
    // user's request: a misconfigured or unreachable IdP shows in the log at start.
    state.verifier.spawn_warm_up();
    run_with_state(state, SagaSettings::default(), listener, shutdown).await
}

/// As [`run`], with a state built elsewhere (tests swap the tenant or the saga's timings).
pub async fn run_with_state(
    state: AppState,
    saga: SagaSettings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop, stopped) = watch::channel(false);
    let worker = tokio::spawn(
        Saga::new(
            state.store.clone(),
            state.tenant.clone(),
            state.saga_wake.clone(),
            saga,
        )
        .with_metrics(state.saga_metrics.clone())
        .run(stopped),
    );
    tracing::info!(addr = %listener.local_addr()?, "control-api listening");
    let served = service_kit::serve(listener, router(state), shutdown).await;
    let _ = stop.send(true);
    let abort = worker.abort_handle();
    if tokio::time::timeout(SAGA_STOP_TIMEOUT, worker)
        .await
        .is_err()
    {
        abort.abort();
        tracing::warn!("the provisioning saga did not stop in time; its lease will run out");
    }
    served?;
    Ok(())
}
