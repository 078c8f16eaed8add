//! The isolated tenant: identities, distribution groups and sealed membership; reachable only
//! with service tokens.
//!
//! It is the membership truth of Hush and the one place that could ever say who is in a group,
//! so it is built to say as little as possible:
//!
//! - No user ever talks to it (INV-9): there is no login and no UI. Every route under
//!   `/tenant/v1` needs a service token from a trusted service, and each service is allowed
//!   only its own operations ([`may_call`]). Break-glass ([`breakglass`]) also reads the acting
//!   user's own token, forwarded by control-api, to check their role itself.
//! - No route lists a group's members (INV-1); questions are about one person at a time, and
//!   the public services ask them only about their own caller (INV-2).
//! - Adding and removing answer alike and do the same work whether or not the person was a
//!   member (INV-3); counts leave only as buckets (INV-4).
//! - At rest, nothing names a person in clear and nothing links two membership rows of the same
//!   person without the tenant's keys (INV-5; see [`seal`] and [`store`]). Keys rotate without
//!   downtime: put a new one first, run [`reseal`], drop the old one.
//! - Every add re-checks the group's label against the person's kind before writing anything
//!   ([`identity`] resolves who the person is and what kind). Offboarding takes someone out of
//!   every group at once; mail expands from membership rows, so their mail stops with it.
//!
//! Run it with `cargo run -p isolated-tenant -- --help` (every flag has a `HUSH_*` variable),
//! or as part of the whole stack with `hush up`. Tests call [`router`] with a state they build,
//! or [`run`] on a listener bound to port 0.

mod access;
pub mod audit;
mod backend;
mod batch;
pub mod breakglass;
mod config;
pub mod directory;
mod error;
mod extract;
mod groups;
pub mod identity;
pub mod mail;
mod member_list;
mod members;
mod meta;
pub mod notify;
pub mod seal;
mod sql;
pub mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use access::{may_call, op, Op, Operation, Permit};
pub use config::{generate_seal_keys_file, parse_trusted_keys, Config, Redacted};
pub use error::ApiError;
pub use identity::CorporateDomains;
pub use seal::SealKeys;
pub use store::{ResealReport, Store, StoreError};

use auth::ServiceVerifier;
use axum::extract::FromRef;
use axum::{Extension, Router};
use service_kit::openapi::BearerScheme;
use service_kit::{health, HttpArgs};
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

/// Most database connections one replica holds: every request is one short statement or
/// transaction, and other replicas share the same database.
const MAX_DB_CONNECTIONS: u32 = 8;
/// Rows per transaction when re-sealing: small enough that each transaction holds its locks
/// briefly beside live traffic, large enough that a million rows take a few thousand.
pub const RESEAL_BATCH: usize = 500;

/// Everything a request handler may need. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Checks service tokens addressed to the tenant; the [`Permit`] extractor reaches it
    /// through `FromRef`. It trusts only the public services' keys.
    pub verifier: ServiceVerifier,
    /// The sealed store: groups, identities, membership. It holds the seal keys.
    pub store: Arc<dyn Store>,
    /// Body size and time limits the router enforces.
    pub http: HttpArgs,
    /// The slots bulk batches run in, so routine calls keep their connections and latency.
    pub batch_gate: batch::BatchGate,
    /// Where admitted batches run: low-priority threads and connections of their own.
    pub bulk: batch::BulkLane,
    /// Break-glass: the IdP the acting users' tokens are checked against, and time limits.
    pub break_glass: breakglass::BreakGlass,
    /// The mail tables, where provisioning records a group's sender policy and owners.
    pub mail: Arc<dyn mail::store::MailStore>,
    /// The relay's health and this replica's delivery counters, kept by the delivery workers
    /// and shown with the mail counts.
    pub relay_stats: Arc<mail::relay::RelayStats>,
    /// The users the IdP provisions over SCIM (through control-api).
    pub directory: directory::Directory,
    /// Notifications: owners' digests, a requester's decision, break-glass officers
    /// ([`notify`]).
    pub notifier: notify::Notifier,
    /// `/metrics`: requests, the mail queue and the relay ([`mail::watch`]).
    pub metrics: service_kit::metrics::Metrics,
    /// What `/readyz` asks of the mail side besides the database ([`mail::watch`]).
    pub mail_readiness: MailReadiness,
}

/// What `/readyz` asks of the mail side ([`mail::watch`] says why each is required or only
/// reported).
#[derive(Clone, Debug, Default)]
pub struct MailReadiness {
    /// The SMTP listener's address, once it is bound (`None`: mail is off, nothing to check).
    pub listener: Option<std::net::SocketAddr>,
    /// Whether a relay is configured (its failures are then reported).
    pub relay: bool,
    /// The queue age past which it is reported (`HUSH_MAIL_QUEUE_AGE_ALERT_SECS`; zero: never).
    pub queue_age_alert: std::time::Duration,
}

impl FromRef<AppState> for ServiceVerifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

/// Builds the state from configuration: loads the seal keys and the trusted services' public
/// keys, then connects to and migrates the database.
pub async fn build_state(config: &Config) -> anyhow::Result<AppState> {
    let keys = Arc::new(config.load_seal_keys()?);
    let verifier = config.load_verifier()?;
    let break_glass = breakglass::BreakGlass::new(&config.break_glass, keys.clone())?;
    let store = store::connect(
        config.database_url.expose(),
        MAX_DB_CONNECTIONS,
        keys.clone(),
        config
            .corporate_domains
            .clone()
            .with_directory_sync(identity::DirectorySync(config.directory_sync)),
    )
    .await?;
    let bulk = batch::BulkLane::start(&store, config.batch_slots())
        .await
        .map_err(|e| anyhow::anyhow!("starting the bulk batches' threads: {e}"))?;
    // After the main store: it runs the migrations, the mail tables' included.
    let mail = mail::store::connect(config.database_url.expose(), keys.clone()).await?;
    let directory = directory::Directory::new(sql::Pool::from(store.audit_db()), keys);
    let notifier = notify::Notifier::new(&config.notify, &config.mail.hostname, mail.clone())?;
    let relay_stats = Arc::new(mail::relay::RelayStats::default());
    let mut metrics =
        service_kit::metrics::MetricsBuilder::new().with_token(config.http.metrics.load_token()?);
    mail::watch::register(&mut metrics, mail.clone(), &relay_stats);
    Ok(AppState {
        verifier,
        store,
        http: config.http.clone(),
        batch_gate: Arc::new(tokio::sync::Semaphore::new(config.batch_slots())),
        bulk,
        break_glass,
        mail,
        relay_stats,
        directory,
        notifier,
        metrics: metrics.build(),
        mail_readiness: MailReadiness {
            // Set by `run` once the listener is bound.
            listener: None,
            relay: config.mail.relay.is_some(),
            queue_age_alert: std::time::Duration::from_secs(config.mail.queue_age_alert_secs),
        },
    })
}

/// The OpenAPI description of the tenant's internal API, served at `/tenant/v1/openapi.json`
/// to trusted services only.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Hush isolated-tenant",
        description = "The membership truth of Hush, for its own services only: distribution groups, \
                       identities (sign-in disabled) and sealed membership. Every route needs a service \
                       token (an ES256 JWT with aud = isolated-tenant, signed by a trusted service's own key), \
                       and each service may call only its own operations. No route lists a group's members. \
                       Every error is application/problem+json (RFC 9457) with a stable `type`."
    ),
    modifiers(&SERVICE_TOKEN),
    security(("service_token" = [])),
    tags(
        (name = "groups", description = "Distribution groups and their coarse member counts."),
        (name = "members", description = "One person's membership at a time."),
        (name = "meta", description = "Token checks and this document."),
        (name = "break-glass", description = "Lawful access to one group's membership (INV-8): control-api only, with the acting user's own token."),
        (name = "mail", description = "The mail queue's counts, the relay's health and the dead letters, for operators."),
        (name = "notifications", description = "Notifications from a closed set of templates that name nobody: membership-api only."),
    )
)]
pub struct ApiDoc;

/// Service tokens, the only tokens the tenant takes.
const SERVICE_TOKEN: BearerScheme = BearerScheme {
    name: "service_token",
    format: "JWT (ES256 service token)",
    description: Some(
        "A service token minted by control-api, membership-api or bulk-api for the audience \
         isolated-tenant. User tokens are refused.",
    ),
};

/// The API routes under the common body limit, the batch route (its own, larger limit), and
/// their OpenAPI document, before state and layers.
fn api() -> (Router<AppState>, Router<AppState>, utoipa::openapi::OpenApi) {
    let (routes, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(groups::router())
        .merge(members::router())
        .merge(meta::router())
        .merge(breakglass::router())
        .merge(mail::api::router())
        .merge(directory::router())
        .merge(notify::router())
        .split_for_parts();
    let (batch, batch_doc) = batch::router().split_for_parts();
    doc.merge(batch_doc);
    let batch = service_kit::explicit_body_limit(batch, batch::BATCH_BODY_LIMIT);
    (routes, batch, doc)
}

/// The OpenAPI document of the tenant's API (what `/tenant/v1/openapi.json` serves).
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().2
}

/// The whole service: the API under `/tenant/v1` (service tokens only, its OpenAPI document
/// too), `/healthz`, `/readyz` (the database answers and, with mail on, the SMTP listener
/// accepts; the relay's failures and an old queue are reported, see [`mail::watch`]) and
/// `/metrics`, in the common layers.
pub fn router(state: AppState) -> Router {
    let (api, batch, doc) = api();
    let mut required = vec![health::ping(
        "database",
        state.store.clone(),
        |store| async move { store.ping().await },
    )];
    let ready = &state.mail_readiness;
    let mut reported = Vec::new();
    if let Some(addr) = ready.listener {
        required.push(mail::watch::listener_check(addr));
        reported.push(mail::watch::queue_age_check(
            state.mail.clone(),
            ready.queue_age_alert,
        ));
    }
    if ready.relay {
        reported.push(mail::watch::relay_check(state.relay_stats.clone()));
    }
    let checks = health::Checks::required(required).with_reported(reported);
    let http = state.http.clone();
    let metrics = state.metrics.clone();
    // The document is one of the API's routes (`meta`), behind a service token like the rest.
    let api = api
        .layer(Extension::<meta::Doc>(Arc::new(doc)))
        .with_state(state.clone());
    let batch = batch.with_state(state);
    service_kit::assemble_with_own_limits(api, batch, checks, &http, &metrics)
}

/// Re-seals the tenant's database for a key rotation: opens (and migrates) the database
/// `config` names and rewrites every sealed value and every keyed tag not under the active seal
/// key (the first configured) with it, [`RESEAL_BATCH`] rows per transaction.
///
/// Rotate by putting a new key first and keeping the old ones, restarting the tenant, running
/// this, then dropping the old keys. It is safe beside a running tenant, and safe to run again
/// after it stopped half-way (a crash, a killed job): rows already under the active key are
/// left alone, and every batch either commits whole or not at all. The report holds counts
/// only.
pub async fn reseal(config: &Config) -> anyhow::Result<ResealReport> {
    let keys = Arc::new(config.load_seal_keys()?);
    let store = store::connect(
        config.database_url.expose(),
        2,
        keys,
        config.corporate_domains.clone(),
    )
    .await?;
    let report = store
        .reseal(&audit::Context::tenant(), RESEAL_BATCH)
        .await?;
    tracing::info!(
        identities = report.identities,
        memberships = report.memberships,
        "re-sealed under the active key"
    );
    Ok(report)
}

/// Serves the tenant on `listener` until `shutdown` completes, then lets in-flight requests
/// finish.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mut state = build_state(&config).await?;
    let checkpoints = config.audit.start(state.store.audit_db())?;
    tracing::info!(addr = %listener.local_addr()?, "isolated-tenant listening");
    // The SMTP listener and delivery workers, when configured; they stop with the API.
    let mail = match config.mail.listen {
        Some(listen) => {
            let smtp = TcpListener::bind(listen).await?;
            let ctx = mail::MailContext::new(
                &config.mail,
                state.mail.clone(),
                config.corporate_domains.clone(),
            )
            .with_dkim(config.mail.load_dkim()?)
            .with_tls(config.mail.load_tls()?)
            .with_relay_security(config.mail.outbound.load()?)
            .with_relay_stats(state.relay_stats.clone());
            let service = mail::start_on(ctx, smtp);
            state.mail_readiness.listener = Some(service.addr);
            Some(service)
        }
        None => None,
    };
    let served = service_kit::serve(listener, router(state), shutdown).await;
    drop(mail);
    if let Some(task) = checkpoints {
        task.abort();
    }
    served?;
    Ok(())
}

#[cfg(test)]
mod tests;
