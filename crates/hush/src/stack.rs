//! The whole Hush stack in one process: the dev issuer and the four services, each on its own
//! listener with its own database, talking over real HTTP on loopback exactly as they do when
//! deployed apart. `hush up` uses it with fixed ports and SQLite under the data dir; the
//! end-to-end tests use it with port 0 and either backend, and stop and restart single services
//! (the tenant going down and coming back) through it.

use anyhow::Context;
use auth::{DevIssuer, JwtArgs, ServiceKeyArgs};
use domain::ServiceName;
use service_kit::HttpArgs;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Where `hush up` sends "a break-glass request waits for your approval".
pub const DEV_OFFICERS: &str = "privacy-officers@corp.example";

/// One of the processes-in-a-process the stack runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    /// control-api.
    Control,
    /// membership-api.
    Membership,
    /// bulk-api.
    Bulk,
    /// isolated-tenant.
    Tenant,
    /// The dev issuer's JWKS endpoint.
    Issuer,
    /// The edge: the front-end app and the proxy in front of the public services.
    Edge,
}

impl Part {
    const ALL: [Part; 6] = [
        Part::Issuer,
        Part::Tenant,
        Part::Control,
        Part::Membership,
        Part::Bulk,
        Part::Edge,
    ];
}

/// The database URL of each stateful service.
#[derive(Debug, Clone)]
pub struct Databases {
    /// control-api's catalog.
    pub control: String,
    /// membership-api's intents.
    pub membership: String,
    /// bulk-api's jobs.
    pub bulk: String,
    /// The tenant's sealed membership.
    pub tenant: String,
}

impl Databases {
    /// One SQLite file per service under `dir`.
    pub fn sqlite_in(dir: &Path) -> Self {
        let url = |name: &str| format!("sqlite://{}", dir.join(format!("{name}.db")).display());
        Self {
            control: url("control"),
            membership: url("membership"),
            bulk: url("bulk"),
            tenant: url("tenant"),
        }
    }

    /// A new, empty database per service on the Postgres server `admin_url` names (one
    /// connection, four `CREATE DATABASE <prefix>_<random>_<service>`), and what drops them.
    pub async fn create_on_postgres(
        admin_url: &str,
        prefix: &str,
    ) -> anyhow::Result<(Self, PostgresDatabases)> {
        let tag = &uuid::Uuid::new_v4().simple().to_string()[..12];
        let mut conn = admin_connection(admin_url)
            .await
            .context("connecting to Postgres")?;
        let mut names = Vec::new();
        for service in ["control", "membership", "bulk", "tenant"] {
            let name = format!("{prefix}_{tag}_{service}");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .with_context(|| format!("creating the database {name}"))?;
            names.push(name);
        }
        let url = |n: &str| service_kit::db::with_database(admin_url, n);
        let dbs = Self {
            control: url(&names[0]),
            membership: url(&names[1]),
            bulk: url(&names[2]),
            tenant: url(&names[3]),
        };
        Ok((
            dbs,
            PostgresDatabases {
                admin_url: admin_url.to_string(),
                names,
            },
        ))
    }

    /// Fresh databases `hush_t_…` for one test on `backend`: SQLite files in `dir`, or new
    /// Postgres databases on the server `postgres_admin_url` names (asked only for Postgres).
    pub async fn for_test(
        dir: &Path,
        backend: service_kit::db::Backend,
        postgres_admin_url: impl FnOnce() -> String,
    ) -> anyhow::Result<(Self, Option<PostgresDatabases>)> {
        let postgres = match backend {
            service_kit::db::Backend::Sqlite => None,
            service_kit::db::Backend::Postgres => Some(postgres_admin_url()),
        };
        Self::fresh(dir, postgres.as_deref(), "hush_t").await
    }

    /// Fresh databases for one run: on Postgres when `postgres_admin_url` is given, else SQLite
    /// files in `dir`. Tests and benchmarks use it so that every run starts empty.
    pub async fn fresh(
        dir: &Path,
        postgres_admin_url: Option<&str>,
        prefix: &str,
    ) -> anyhow::Result<(Self, Option<PostgresDatabases>)> {
        match postgres_admin_url {
            Some(admin) => {
                let (dbs, made) = Self::create_on_postgres(admin, prefix).await?;
                Ok((dbs, Some(made)))
            }
            None => Ok((Self::sqlite_in(dir), None)),
        }
    }
}

/// Databases [`Databases::create_on_postgres`] made, to drop when the run is over.
#[derive(Debug)]
pub struct PostgresDatabases {
    admin_url: String,
    names: Vec<String>,
}

impl PostgresDatabases {
    /// Drops them even while connections remain (`WITH (FORCE)`); best effort, since it runs
    /// when a run is over and a failure only leaves a database behind.
    pub async fn drop_all(self) {
        if let Ok(mut conn) = admin_connection(&self.admin_url).await {
            for name in self.names {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await;
            }
        }
    }
}

/// A connection to the Postgres server `admin_url` names, with no statement log (INV-6).
async fn admin_connection(admin_url: &str) -> Result<sqlx::PgConnection, sqlx::Error> {
    use sqlx::ConnectOptions as _;
    admin_url
        .parse::<sqlx::postgres::PgConnectOptions>()?
        .disable_statement_logging()
        .connect()
        .await
}

/// How to run the stack.
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// Keys (service signing keys, the tenant's seal keys, the dev issuer's key) live here.
    pub data_dir: PathBuf,
    /// Address the public services bind to.
    pub public_host: IpAddr,
    /// Port of each part; 0 picks a free one.
    pub ports: HashMap<Part, u16>,
    /// Where each service keeps its data.
    pub databases: Databases,
    /// Mail domain of group contact addresses.
    pub mail_domain: String,
    /// Limits applied to every service.
    pub http: HttpArgs,
    /// Mail domains whose people count as employees when an owner adds them by address
    /// (empty: none; `hush up` names the dev issuer's `corp.example`).
    pub corporate_domains: String,
    /// The tenant's mail side (SMTP listener, relay); off unless set.
    pub mail: isolated_tenant::mail::MailArgs,
    /// SCIM provisioning at control-api's `/scim/v2` (a token file set turns it on, and the
    /// tenant then infers no kind from addresses: the directory says).
    pub scim: control_api::scim::ScimArgs,
    /// Serve the app's dev sign-in (which mints a token for anyone, with any role) although the
    /// public host is not loopback. Off: the stack refuses such a host.
    pub expose_dev_sign_in: bool,
}

impl StackConfig {
    /// `hush up`: SQLite under `data_dir`, ports from `port_base`.
    pub fn for_up(
        data_dir: &Path,
        public_host: IpAddr,
        port_base: u16,
        mail_domain: &str,
    ) -> anyhow::Result<Self> {
        let port = |offset: u16| {
            port_base
                .checked_add(offset)
                .context("--port-base is too high: it needs N..N+6 free")
        };
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating the data dir {}", data_dir.display()))?;
        Ok(Self {
            data_dir: data_dir.to_path_buf(),
            public_host,
            ports: HashMap::from([
                (Part::Control, port(0)?),
                (Part::Membership, port(1)?),
                (Part::Bulk, port(2)?),
                (Part::Tenant, port(3)?),
                (Part::Edge, port(5)?),
                (Part::Issuer, port(6)?),
            ]),
            databases: Databases::sqlite_in(data_dir),
            mail_domain: mail_domain.to_string(),
            http: HttpArgs::default(),
            // The dev issuer's people have addresses here (`hush token`), so an owner can add
            // a colleague by address; anyone else is a guest.
            corporate_domains: "corp.example".into(),
            // SMTP on loopback N+4; copies go to Maildir folders under the data dir, a stand-in
            // for the corporate mail system (see the README's Mail section).
            mail: isolated_tenant::mail::MailArgs {
                listen: Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port(4)?)),
                relay: Some(isolated_tenant::mail::Relay::Maildir(data_dir.join("mail"))),
                bounce_domain: format!("bounces.{mail_domain}"),
                // Mail tools on this machine stand in for the corporate relay, which would
                // have authenticated its senders: members-only groups take their mail.
                trusted_relays: vec![
                    ipnet::IpNet::from(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                    ipnet::IpNet::from(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)),
                ],
                ..isolated_tenant::mail::MailArgs::default()
            },
            scim: control_api::scim::ScimArgs::default(),
            expose_dev_sign_in: false,
        })
    }

    /// Tests: every part on a free loopback port.
    pub fn for_tests(data_dir: &Path, databases: Databases) -> Self {
        Self {
            data_dir: data_dir.to_path_buf(),
            public_host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ports: Part::ALL.iter().map(|p| (*p, 0)).collect(),
            databases,
            mail_domain: "groups.test.example".into(),
            http: HttpArgs::default(),
            corporate_domains: "corp.example".into(),
            mail: isolated_tenant::mail::MailArgs::default(),
            scim: control_api::scim::ScimArgs::default(),
            expose_dev_sign_in: false,
        }
    }
}

/// Base URLs of the running parts.
#[derive(Debug, Clone)]
pub struct Urls {
    /// control-api.
    pub control: String,
    /// membership-api.
    pub membership: String,
    /// bulk-api.
    pub bulk: String,
    /// isolated-tenant (loopback).
    pub tenant: String,
    /// The dev issuer.
    pub issuer: String,
    /// The edge: the address to open in a browser.
    pub edge: String,
}

struct Running {
    shutdown: oneshot::Sender<()>,
    handle: JoinHandle<anyhow::Result<()>>,
}

/// A running stack.
pub struct Stack {
    cfg: StackConfig,
    issuer: Arc<DevIssuer>,
    addrs: HashMap<Part, SocketAddr>,
    running: HashMap<Part, Running>,
    keys: PathBuf,
}

impl Stack {
    /// Generates missing keys, binds every listener, starts every part and waits until each
    /// service answers `/readyz`.
    pub async fn start(cfg: StackConfig) -> anyhow::Result<Self> {
        crate::edge::dev_sign_in_reach(cfg.public_host, cfg.expose_dev_sign_in)?;
        let keys = cfg.data_dir.join("keys");
        crate::deploy::generate_keys(&keys)?;
        let issuer = Arc::new(DevIssuer::load_or_create(&cfg.data_dir.join("dev-issuer"))?);

        let mut listeners = HashMap::new();
        let mut addrs = HashMap::new();
        for part in Part::ALL {
            // The tenant and the issuer are internal: loopback whatever the public host is.
            let host = match part {
                Part::Tenant | Part::Issuer => IpAddr::V4(Ipv4Addr::LOCALHOST),
                _ => cfg.public_host,
            };
            let addr = SocketAddr::new(host, cfg.ports.get(&part).copied().unwrap_or(0));
            let l = TcpListener::bind(addr).await.map_err(|e| {
                let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
                    format!(
                        "port {} is in use (another `hush up`?); start on other ports with \
                         --port-base N, which uses N to N+6",
                        addr.port()
                    )
                } else {
                    "cannot listen there".to_string()
                };
                anyhow::Error::new(e).context(format!("binding {part:?} on {addr}: {hint}"))
            })?;
            addrs.insert(part, l.local_addr()?);
            listeners.insert(part, l);
        }
        let mut stack = Self {
            cfg,
            issuer,
            addrs,
            running: HashMap::new(),
            keys,
        };
        for part in Part::ALL {
            let l = listeners.remove(&part).expect("bound above");
            stack.spawn(part, l)?;
        }
        stack.wait_ready(Duration::from_secs(30)).await?;
        Ok(stack)
    }

    /// Base URLs of the parts.
    pub fn urls(&self) -> Urls {
        let url = |p: Part| format!("http://{}", self.addrs[&p]);
        Urls {
            control: url(Part::Control),
            membership: url(Part::Membership),
            bulk: url(Part::Bulk),
            tenant: url(Part::Tenant),
            issuer: url(Part::Issuer),
            edge: url(Part::Edge),
        }
    }

    /// The database URLs the services use (tests inspect what is at rest).
    pub fn databases(&self) -> &Databases {
        &self.cfg.databases
    }

    /// The dev issuer, for minting tokens.
    pub fn issuer(&self) -> &DevIssuer {
        &self.issuer
    }

    /// Where the service keys are (tests sign their own service tokens with them).
    pub fn keys_dir(&self) -> &Path {
        &self.keys
    }

    /// Stops one part gracefully (its port stays reserved for `restart`).
    pub async fn stop_part(&mut self, part: Part) -> anyhow::Result<()> {
        if let Some(r) = self.running.remove(&part) {
            let _ = r.shutdown.send(());
            tokio::time::timeout(Duration::from_secs(15), r.handle)
                .await
                .context("a part did not stop within 15 s")???;
        }
        Ok(())
    }

    /// Starts a stopped part again on the same address.
    pub async fn start_part(&mut self, part: Part) -> anyhow::Result<()> {
        anyhow::ensure!(!self.running.contains_key(&part), "{part:?} is running");
        let l = TcpListener::bind(self.addrs[&part]).await?;
        self.spawn(part, l)?;
        Ok(())
    }

    /// Stops every part.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        for part in [
            Part::Edge,
            Part::Bulk,
            Part::Membership,
            Part::Control,
            Part::Tenant,
            Part::Issuer,
        ] {
            self.stop_part(part).await?;
        }
        Ok(())
    }

    fn jwt(&self) -> JwtArgs {
        let mut args = JwtArgs::new(
            auth::DEV_ISSUER,
            "hush",
            format!("http://{}/.well-known/jwks.json", self.addrs[&Part::Issuer]),
        );
        args.dev_mode = true;
        args
    }

    fn key(&self, s: ServiceName) -> ServiceKeyArgs {
        ServiceKeyArgs {
            service_key_file: self.keys.join(format!("{s}.key.pem")),
        }
    }

    fn trusted(&self, services: &[ServiceName]) -> String {
        crate::deploy::trusted_keys(&self.keys, services)
    }

    fn spawn(&mut self, part: Part, listener: TcpListener) -> anyhow::Result<()> {
        let (tx, rx) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = rx.await;
        };
        let url = |p: Part| format!("http://{}", self.addrs[&p]);
        let listen = self.addrs[&part];
        let cfg = &self.cfg;
        let handle: JoinHandle<anyhow::Result<()>> = match part {
            Part::Issuer => {
                let router = self.issuer.router();
                tokio::spawn(async move {
                    service_kit::serve(listener, router, shutdown).await?;
                    Ok(())
                })
            }
            Part::Tenant => {
                let c = isolated_tenant::Config {
                    listen,
                    database_url: cfg.databases.tenant.clone().into(),
                    trusted_service_keys: self.trusted(&[
                        ServiceName::ControlApi,
                        ServiceName::MembershipApi,
                        ServiceName::BulkApi,
                    ]),
                    seal_keys: None,
                    seal_keys_file: Some(self.keys.join("tenant-seal.keys")),
                    corporate_domains: cfg
                        .corporate_domains
                        .parse()
                        .map_err(|e: String| anyhow::anyhow!(e))?,
                    directory_sync: cfg.scim.scim_token_file.is_some(),
                    // SQLite has one writer: one bulk batch at a time, in short chunks (below),
                    // keeps joins and leaves from waiting behind bulk work (see the README's
                    // bulk benchmark).
                    batch_concurrency: Some(1),
                    http: cfg.http.clone(),
                    audit: isolated_tenant::audit::AuditArgs {
                        checkpoints_file: Some(cfg.data_dir.join("audit-checkpoints.jsonl")),
                        ..isolated_tenant::audit::AuditArgs::with_signing_key(
                            self.keys.join("audit-signing.key"),
                        )
                    },
                    break_glass: isolated_tenant::breakglass::BreakGlassArgs::from_jwt(&self.jwt()),
                    mail: cfg.mail.clone(),
                    // The officers' mailbox of the dev people (`hush token --role
                    // privacy-officer`): break-glass filings land in its Maildir folder.
                    notify: isolated_tenant::notify::NotifyArgs {
                        officers: DEV_OFFICERS.into(),
                        ..isolated_tenant::notify::NotifyArgs::default()
                    },
                };
                tokio::spawn(isolated_tenant::run(c, listener, shutdown))
            }
            Part::Control => {
                let c = control_api::Config {
                    listen,
                    database_url: cfg.databases.control.clone().into(),
                    tenant_url: url(Part::Tenant),
                    mail_domain: cfg.mail_domain.clone(),
                    trusted_service_keys: self
                        .trusted(&[ServiceName::MembershipApi, ServiceName::BulkApi]),
                    jwt: self.jwt(),
                    service_key: self.key(ServiceName::ControlApi),
                    http: cfg.http.clone(),
                    scim: cfg.scim.clone(),
                    seal_key: None,
                    seal_key_file: Some(self.keys.join("control-seal.key")),
                };
                tokio::spawn(control_api::run(c, listener, shutdown))
            }
            Part::Membership => {
                let c = membership_api::Config {
                    listen,
                    database_url: cfg.databases.membership.clone().into(),
                    tenant_url: url(Part::Tenant),
                    control_url: url(Part::Control),
                    catalog_poll_ms: 250,
                    jwt: self.jwt(),
                    service_key: self.key(ServiceName::MembershipApi),
                    http: cfg.http.clone(),
                    limits: membership_api::AbuseLimits::default(),
                    decisions: membership_api::DecisionArgs {
                        decision_key_file: Some(self.keys.join("decision.key.pem")),
                        ..membership_api::DecisionArgs::default()
                    },
                    seal_key: None,
                    seal_key_file: Some(self.keys.join("membership-seal.key")),
                };
                tokio::spawn(membership_api::run(c, listener, shutdown))
            }
            Part::Bulk => {
                let c = bulk_api::Config {
                    listen,
                    database_url: cfg.databases.bulk.clone().into(),
                    tenant_url: url(Part::Tenant),
                    control_url: url(Part::Control),
                    jwt: self.jwt(),
                    service_key: self.key(ServiceName::BulkApi),
                    http: cfg.http.clone(),
                    seal_key: None,
                    seal_key_file: Some(self.keys.join("bulk-seal.key")),
                    chunk_size: 250,
                    ops_per_sec: 5000,
                    workers: 2,
                    lease_secs: 30,
                    max_ops: 1_000_000,
                    upload_limit_bytes: 256 * 1024 * 1024,
                };
                tokio::spawn(bulk_api::run(c, listener, shutdown))
            }
            Part::Edge => {
                let c = crate::edge::EdgeConfig {
                    listen,
                    control_url: url(Part::Control),
                    membership_url: url(Part::Membership),
                    bulk_url: url(Part::Bulk),
                    oidc: crate::edge::OidcArgs::default(),
                    dev_mode: true,
                    expose_dev_sign_in: cfg.expose_dev_sign_in,
                    data_dir: cfg.data_dir.clone(),
                    dev_audience: "hush".into(),
                    body_limit_bytes: 256 * 1024 * 1024,
                    upstream_timeout_secs: cfg.http.request_timeout_secs,
                    request_timeout_secs: 600,
                };
                let edge = crate::edge::Edge::new(&c, Some(DevIssuer::clone(&self.issuer)))?;
                tokio::spawn(async move {
                    service_kit::serve(listener, crate::edge::router(edge), shutdown).await?;
                    Ok(())
                })
            }
        };
        self.running.insert(
            part,
            Running {
                shutdown: tx,
                handle,
            },
        );
        Ok(())
    }

    /// Polls `/readyz` of every service until all answer 200, or fails naming the laggard.
    /// A part whose task ended (bad config, migration failure) fails at once with its error.
    pub async fn wait_ready(&mut self, limit: Duration) -> anyhow::Result<()> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let deadline = Instant::now() + limit;
        for part in [
            Part::Tenant,
            Part::Control,
            Part::Membership,
            Part::Bulk,
            Part::Edge,
        ] {
            let url = format!("http://{}/readyz", self.addrs[&part]);
            loop {
                if let Some(r) = self.running.get(&part) {
                    if r.handle.is_finished() {
                        let r = self.running.remove(&part).expect("present");
                        r.handle.await??;
                        anyhow::bail!("{part:?} stopped during start-up");
                    }
                }
                match client.get(&url).send().await {
                    Ok(res) if res.status().is_success() => break,
                    _ if Instant::now() > deadline => {
                        anyhow::bail!("{part:?} was not ready within {limit:?}")
                    }
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }
        Ok(())
    }
}
