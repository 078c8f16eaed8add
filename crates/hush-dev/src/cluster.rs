//! The services as separate processes on loopback (`hush-dev serve <service>`, the same code as
//! `hush serve`), for tests and benchmarks that need what one process cannot show: kill -9 of
//! one service, several bulk-api replicas on one database, and each service's own peak memory.
//! Ports are chosen once, so a service restarted after a kill comes back at the same URL.

use anyhow::Context as _;
use auth::{DevClaims, DevIssuer, ServiceSigner};
use domain::{IdentityKind, ServiceName};
use hush::stack::Databases;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tenant_client::TenantClient;
use tokio::process::{Child, Command};

/// The audience tokens are minted for.
pub const AUDIENCE: &str = "hush";

/// What to run.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Keys and the dev issuer's key live here.
    pub dir: PathBuf,
    /// A database per service (bulk-api replicas share theirs).
    pub databases: Databases,
    /// bulk-api replicas: `bulk-api`, `bulk-api-2`, ….
    pub bulk_replicas: usize,
    /// Start membership-api too.
    pub membership: bool,
    /// Extra environment for bulk-api (`HUSH_BULK_*` tuning).
    pub bulk_env: Vec<(String, String)>,
    /// Extra environment for the tenant.
    pub tenant_env: Vec<(String, String)>,
    /// Extra environment for membership-api.
    pub membership_env: Vec<(String, String)>,
    /// `RUST_LOG` for the services.
    pub log: String,
}

impl ClusterOptions {
    /// Every service, membership-api included, one bulk-api replica, no extra environment:
    /// the stack the routine-path benchmarks drive.
    pub fn routine(dir: &Path, databases: Databases, log: &str) -> Self {
        Self {
            dir: dir.to_path_buf(),
            databases,
            bulk_replicas: 1,
            membership: true,
            bulk_env: Vec::new(),
            tenant_env: Vec::new(),
            membership_env: Vec::new(),
            log: log.to_string(),
        }
    }
}

/// The running processes.
pub struct Cluster {
    exe: PathBuf,
    opts: ClusterOptions,
    keys: PathBuf,
    issuer: DevIssuer,
    jwks: String,
    stop_issuer: Option<tokio::sync::oneshot::Sender<()>>,
    ports: BTreeMap<String, u16>,
    procs: BTreeMap<String, Child>,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Cluster {
    /// Generates keys, starts the dev issuer in this process and every service as a process
    /// of `exe` (`hush-dev`, or any binary with `hush serve`'s subcommand), and waits until
    /// each is ready.
    pub async fn start(exe: &Path, opts: ClusterOptions) -> anyhow::Result<Self> {
        let keys = opts.dir.join("keys");
        hush::deploy::generate_keys(&keys)?;
        let issuer = DevIssuer::load_or_create(&opts.dir.join("dev-issuer"))?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let jwks = format!("http://{}/.well-known/jwks.json", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(service_kit::serve(listener, issuer.router(), async {
            let _ = stopped.await;
        }));
        let mut names = vec!["isolated-tenant".to_string(), "control-api".to_string()];
        if opts.membership {
            names.push("membership-api".into());
        }
        names.extend(Self::bulk_names(opts.bulk_replicas));
        let mut ports = BTreeMap::new();
        for n in &names {
            ports.insert(n.clone(), free_port()?);
        }
        let mut c = Self {
            exe: exe.to_path_buf(),
            opts,
            keys,
            issuer,
            jwks,
            stop_issuer: Some(stop),
            ports,
            procs: BTreeMap::new(),
        };
        for n in &names {
            c.spawn(n)?;
        }
        for n in &names {
            c.wait_ready(n, Duration::from_secs(60)).await?;
        }
        Ok(c)
    }

    fn bulk_names(n: usize) -> Vec<String> {
        (1..=n.max(1))
            .map(|i| {
                if i == 1 {
                    "bulk-api".to_string()
                } else {
                    format!("bulk-api-{i}")
                }
            })
            .collect()
    }

    /// The base URL of `name`.
    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}", self.ports[name])
    }

    /// The process id of `name`, while it runs.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.procs.get(name).and_then(Child::id)
    }

    fn key(&self, s: ServiceName) -> String {
        self.keys.join(format!("{s}.key.pem")).display().to_string()
    }

    fn trusted(&self, services: &[ServiceName]) -> String {
        hush::deploy::trusted_keys(&self.keys, services)
    }

    /// Starts (or restarts) `name`.
    pub fn spawn(&mut self, name: &str) -> anyhow::Result<()> {
        let service = if name.starts_with("bulk-api") {
            "bulk-api"
        } else {
            name
        };
        let dbs = &self.opts.databases;
        let mut env: Vec<(String, String)> = vec![
            (
                "HUSH_LISTEN".into(),
                format!("127.0.0.1:{}", self.ports[name]),
            ),
            ("RUST_LOG".into(), self.opts.log.clone()),
            (
                "HUSH_LOG_FORMAT".into(),
                std::env::var("HUSH_LOG_FORMAT").unwrap_or_default(),
            ),
        ];
        let jwt = [
            ("HUSH_JWT_ISSUER", auth::DEV_ISSUER.to_string()),
            ("HUSH_JWT_AUDIENCE", AUDIENCE.to_string()),
            ("HUSH_JWKS_URL", self.jwks.clone()),
            ("HUSH_DEV_MODE", "true".to_string()),
        ];
        let tenant = ("HUSH_TENANT_URL".to_string(), self.url("isolated-tenant"));
        match service {
            "isolated-tenant" => {
                env.push(("HUSH_DATABASE_URL".into(), dbs.tenant.clone()));
                env.push((
                    "HUSH_TRUSTED_SERVICE_KEYS".into(),
                    self.trusted(&[
                        ServiceName::ControlApi,
                        ServiceName::MembershipApi,
                        ServiceName::BulkApi,
                    ]),
                ));
                env.push((
                    "HUSH_TENANT_SEAL_KEYS_FILE".into(),
                    self.keys.join("tenant-seal.keys").display().to_string(),
                ));
                env.push(("HUSH_CORPORATE_DOMAINS".into(), "corp.example".into()));
                env.push((
                    "HUSH_AUDIT_SIGNING_KEY_FILE".into(),
                    self.keys.join("audit-signing.key").display().to_string(),
                ));
                // Break-glass: the tenant checks the acting users' own tokens itself.
                env.extend(jwt.iter().map(|(k, v)| (k.to_string(), v.clone())));
                env.extend(self.opts.tenant_env.iter().cloned());
            }
            "control-api" => {
                env.push(("HUSH_DATABASE_URL".into(), dbs.control.clone()));
                env.push(tenant);
                env.push(("HUSH_MAIL_DOMAIN".into(), "groups.test.example".into()));
                env.push((
                    "HUSH_TRUSTED_SERVICE_KEYS".into(),
                    self.trusted(&[ServiceName::MembershipApi, ServiceName::BulkApi]),
                ));
                env.push((
                    "HUSH_SERVICE_KEY_FILE".into(),
                    self.key(ServiceName::ControlApi),
                ));
                env.push((
                    "HUSH_CONTROL_SEAL_KEY_FILE".into(),
                    self.keys.join("control-seal.key").display().to_string(),
                ));
                env.extend(jwt.iter().map(|(k, v)| (k.to_string(), v.clone())));
            }
            "membership-api" => {
                env.push(("HUSH_DATABASE_URL".into(), dbs.membership.clone()));
                env.push(tenant);
                env.push(("HUSH_CONTROL_URL".into(), self.url("control-api")));
                env.push((
                    "HUSH_SERVICE_KEY_FILE".into(),
                    self.key(ServiceName::MembershipApi),
                ));
                env.push((
                    "HUSH_DECISION_KEY_FILE".into(),
                    self.keys.join("decision.key.pem").display().to_string(),
                ));
                env.extend(jwt.iter().map(|(k, v)| (k.to_string(), v.clone())));
                env.extend(self.opts.membership_env.iter().cloned());
            }
            _ => {
                env.push(("HUSH_DATABASE_URL".into(), dbs.bulk.clone()));
                env.push(tenant);
                env.push(("HUSH_CONTROL_URL".into(), self.url("control-api")));
                env.push((
                    "HUSH_SERVICE_KEY_FILE".into(),
                    self.key(ServiceName::BulkApi),
                ));
                env.push((
                    "HUSH_BULK_SEAL_KEY_FILE".into(),
                    self.keys.join("bulk-seal.key").display().to_string(),
                ));
                env.extend(jwt.iter().map(|(k, v)| (k.to_string(), v.clone())));
                env.extend(self.opts.bulk_env.iter().cloned());
            }
        }
        let child = Command::new(&self.exe)
            .args(["serve", service])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        self.procs.insert(name.to_string(), child);
        Ok(())
    }

    /// Waits until `name` answers `/readyz`.
    pub async fn wait_ready(&self, name: &str, limit: Duration) -> anyhow::Result<()> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let url = format!("{}/readyz", self.url(name));
        let deadline = Instant::now() + limit;
        loop {
            if matches!(http.get(&url).send().await, Ok(r) if r.status().is_success()) {
                return Ok(());
            }
            anyhow::ensure!(Instant::now() < deadline, "{name} never became ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// kill -9 of `name`, waiting until it is gone.
    pub async fn kill(&mut self, name: &str) -> anyhow::Result<()> {
        if let Some(mut child) = self.procs.remove(name) {
            child
                .kill()
                .await
                .with_context(|| format!("killing {name}"))?;
        }
        Ok(())
    }

    /// Replaces bulk-api's extra environment (takes effect when a replica is next started).
    pub fn set_bulk_env(&mut self, env: Vec<(String, String)>) {
        self.opts.bulk_env = env;
    }

    /// Restarts `name` after a kill and waits until it is ready.
    pub async fn restart(&mut self, name: &str) -> anyhow::Result<()> {
        self.spawn(name)?;
        self.wait_ready(name, Duration::from_secs(60)).await
    }

    /// A user token from the dev issuer.
    pub fn token(&self, sub: &str, kind: IdentityKind, roles: &[&str]) -> String {
        self.issuer.mint(
            &DevClaims::corporate(sub, kind, roles),
            AUDIENCE,
            Duration::from_secs(3600),
        )
    }

    /// A tenant client speaking as `service` with its real key (for checking membership
    /// one person at a time, as membership-api does).
    pub fn tenant_as(&self, service: ServiceName) -> anyhow::Result<TenantClient> {
        let pem = std::fs::read_to_string(self.key(service))?;
        Ok(TenantClient::new(
            self.url("isolated-tenant"),
            ServiceSigner::from_pem(service, &pem)?,
        )?)
    }

    /// The peak resident memory of `name` so far, in KiB (Linux), while it runs.
    pub fn peak_rss_kib(&self, name: &str) -> Option<u64> {
        self.status_kib(name, "VmHWM:")
    }

    /// The resident memory of `name` now, in KiB (Linux), while it runs.
    pub fn rss_kib(&self, name: &str) -> Option<u64> {
        self.status_kib(name, "VmRSS:")
    }

    fn status_kib(&self, name: &str, field: &str) -> Option<u64> {
        let pid = self.pid(name)?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
    }

    /// Stops every process (SIGKILL: nothing of their state matters after a test) and the
    /// issuer.
    pub async fn stop(mut self) {
        let names: Vec<String> = self.procs.keys().cloned().collect();
        for n in names {
            let _ = self.kill(&n).await;
        }
        if let Some(s) = self.stop_issuer.take() {
            let _ = s.send(());
        }
    }
}

/// CPU time (user + system) process `pid` has used so far, in seconds (Linux), if it runs.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at its closing parenthesis:
    // state is the first, utime the 12th and stime the 13th.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let hz = rustix::param::clock_ticks_per_second();
    Some((utime + stime) as f64 / hz as f64)
}

/// CPU seconds used so far by every running process whose command is `comm` (for instance
/// `postgres`: the server and its backends).
pub fn cpu_seconds_of_all(comm: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == comm)
        })
        .filter_map(cpu_seconds)
        .sum()
}
