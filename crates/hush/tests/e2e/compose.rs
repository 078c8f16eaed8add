//! docker-compose.yml, checked without a Docker engine: first its structure (the tenant's API
//! on the internal network alone, only its SMTP port published, a healthcheck and a `hush
//! serve` command per service, every HUSH_* variable known to the service it configures); then
//! the same services as separate `hush serve` processes, with the environment the compose file
//! gives them, on Postgres behind the roles `hush db-setup` makes. The network wiring itself is
//! checked in `tests/deployment.rs`, with network namespaces.

use crate::helpers::*;
use clap::CommandFactory;
use hush::stack::Databases;
use reqwest::StatusCode;
use serde_json::json;
use serde_yaml::Value as Yaml;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

const SERVICES: [&str; 4] = [
    "isolated-tenant",
    "control-api",
    "membership-api",
    "bulk-api",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn compose() -> Yaml {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    let mut c: Yaml = serde_yaml::from_str(&text).expect("docker-compose.yml is YAML");
    // Compose reads `<<: *hush-service` as a merge; serde_yaml only when asked.
    c.apply_merge().expect("merge keys resolve");
    c
}

/// The env var names a service's Config reads, from its clap definition.
fn known_env(service: &str) -> BTreeSet<String> {
    let cmd = match service {
        "control-api" => control_api::Config::command(),
        "membership-api" => membership_api::Config::command(),
        "bulk-api" => bulk_api::Config::command(),
        "isolated-tenant" => isolated_tenant::Config::command(),
        other => panic!("unknown service {other}"),
    };
    cmd.get_arguments()
        .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        .collect()
}

/// Env vars a service's Config requires (no default, not optional).
fn required_env(service: &str) -> BTreeSet<String> {
    let cmd = match service {
        "control-api" => control_api::Config::command(),
        "membership-api" => membership_api::Config::command(),
        "bulk-api" => bulk_api::Config::command(),
        _ => isolated_tenant::Config::command(),
    };
    cmd.get_arguments()
        .filter(|a| a.is_required_set())
        .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        .collect()
}

fn env_file(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|_| panic!("{} exists", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

fn strs(v: &Yaml) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_compose_file_describes_the_documented_topology() {
    let c = compose();
    let services = &c["services"];
    assert_eq!(
        c["networks"]["internal"]["internal"],
        Yaml::Bool(true),
        "the internal network has no route out"
    );

    let tenant = &services["isolated-tenant"];
    let tenant_env = env_file(&repo().join("deploy/isolated-tenant.env"));
    let smtp_port = tenant_env["HUSH_MAIL_LISTEN"].rsplit(':').next().unwrap();
    assert_eq!(
        strs(&tenant["ports"]),
        vec![format!("{smtp_port}:{smtp_port}")],
        "the tenant publishes its SMTP port alone, never its API (INV-9)"
    );
    let nets: Vec<&str> = tenant["networks"]
        .as_mapping()
        .expect("the tenant's networks, with its fixed address")
        .keys()
        .filter_map(Yaml::as_str)
        .collect();
    assert_eq!(nets, vec!["internal", "mail"]);
    let address = tenant["networks"]["internal"]["ipv4_address"]
        .as_str()
        .expect("the tenant has a fixed address on the internal network");
    assert_eq!(
        tenant_env["HUSH_LISTEN"],
        format!("{address}:8083"),
        "the tenant's API listens on its internal address only, not on the mail network"
    );
    assert_ne!(
        c["networks"]["mail"]["internal"],
        Yaml::Bool(true),
        "the mail network reaches the relay"
    );
    assert!(
        c["secrets"]["idp_jwks"]["file"].as_str().is_some(),
        "break-glass's JWKS secret is declared"
    );
    let edge = &services["edge"];
    assert_eq!(strs(&edge["command"]), vec!["edge"]);
    assert_eq!(strs(&edge["networks"]), vec!["public"]);
    let edge_env: BTreeSet<String> = hush::cli::Cli::command()
        .find_subcommand("edge")
        .unwrap()
        .get_arguments()
        .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        .collect();
    for key in env_file(&repo().join("deploy/edge.env")).into_keys() {
        assert!(
            key == "HUSH_LOG_FORMAT" || edge_env.contains(&key),
            "deploy/edge.env sets {key}, which the edge does not read"
        );
    }
    assert_eq!(strs(&services["db-setup"]["command"]), vec!["db-setup"]);
    for s in SERVICES {
        assert_eq!(
            services[s]["depends_on"]["db-setup"]["condition"].as_str(),
            Some("service_completed_successfully"),
            "{s} starts after db-setup"
        );
    }
    assert_eq!(strs(&services["postgres"]["networks"]), vec!["internal"]);

    for s in SERVICES {
        let svc = &services[s];
        assert_eq!(
            strs(&svc["command"]),
            vec!["serve".to_string(), s.to_string()],
            "{s} runs `hush serve {s}`"
        );
        assert!(
            svc["healthcheck"]["test"]
                .as_sequence()
                .is_some_and(|t| !t.is_empty()),
            "{s} has a healthcheck"
        );
        let files = strs(&svc["env_file"]);
        assert!(
            files.iter().any(|f| f.starts_with("deploy/secrets/")),
            "{s} takes its secrets from a generated env file"
        );
        let mut provided = BTreeSet::from(["HUSH_DATABASE_URL".to_string()]);
        for f in files.iter().filter(|f| !f.starts_with("deploy/secrets/")) {
            for key in env_file(&repo().join(f)).into_keys() {
                assert!(
                    key == "HUSH_LOG_FORMAT" || known_env(s).contains(&key),
                    "{f} sets {key}, which {s} does not read"
                );
                provided.insert(key);
            }
        }
        for need in required_env(s) {
            assert!(
                provided.contains(&need),
                "{s} requires {need}, which compose does not set"
            );
        }
        for secret in strs(&svc["secrets"]) {
            assert!(c["secrets"][secret.as_str()]["file"]
                .as_str()
                .is_some_and(|f| f.starts_with("deploy/secrets/")));
        }
    }
    assert!(repo().join("Dockerfile").exists());
}

/// Runs `hush deploy-init`, returning the folder it wrote.
pub(crate) async fn deploy_init(dir: &Path) -> PathBuf {
    let out = Command::new(env!("CARGO_BIN_EXE_hush"))
        .args(["deploy-init", "--out"])
        .arg(dir)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "deploy-init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("secrets")
}

pub(crate) struct Proc(Child);

impl Proc {
    pub(crate) async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.0.id().expect("running").to_string();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        tokio::time::timeout(Duration::from_secs(15), self.0.wait())
            .await
            .expect("stops within 15 s of SIGTERM")
            .unwrap()
    }
}

/// Starts compose's services as `hush serve` processes on loopback: each with the environment
/// compose gives it (its env files, the secrets `hush deploy-init` wrote where compose mounts
/// them), its own port, a database URL and the test's dev issuer instead of the company IdP.
pub(crate) struct Launcher {
    c: Yaml,
    /// (where compose mounts it, the file deploy-init wrote), longest mount first.
    mounts: Vec<(String, PathBuf)>,
    jwks: String,
}

impl Launcher {
    /// For the secrets deploy-init wrote to `secrets`, tokens checked against `jwks`.
    pub(crate) fn new(secrets: &Path, jwks: String) -> Self {
        let c = compose();
        // Compose mounts secrets at /run/secrets/<name> and configs at /<name>; here they are
        // the files deploy-init wrote.
        let mut mounts: Vec<(String, PathBuf)> = Vec::new();
        for (kind, prefix) in [("secrets", "/run/secrets/"), ("configs", "/")] {
            for (name, def) in c[kind].as_mapping().unwrap() {
                let file = def["file"].as_str().unwrap();
                let local = secrets.join(Path::new(file).file_name().unwrap());
                assert!(local.exists(), "deploy-init wrote {file}");
                mounts.push((format!("{prefix}{}", name.as_str().unwrap()), local));
            }
        }
        mounts.sort_by_key(|(m, _)| std::cmp::Reverse(m.len()));
        Self { c, mounts, jwks }
    }

    /// The environment of service `s` listening on `port`, reaching the tenant and control-api
    /// on theirs, with database `db`.
    pub(crate) fn env(
        &self,
        s: &str,
        port: u16,
        tenant: u16,
        control: u16,
        db: String,
    ) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        for f in strs(&self.c["services"][s]["env_file"])
            .iter()
            .filter(|f| !f.starts_with("deploy/secrets/"))
        {
            env.extend(env_file(&repo().join(f)));
        }
        for v in env.values_mut() {
            for (host, port) in [
                ("isolated-tenant:8083", tenant),
                ("control-api:8080", control),
            ] {
                *v = v.replace(host, &format!("127.0.0.1:{port}"));
            }
            for (mount, local) in &self.mounts {
                *v = v.replace(mount.as_str(), &local.display().to_string());
            }
        }
        env.insert("HUSH_LISTEN".into(), format!("127.0.0.1:{port}"));
        if env.contains_key("HUSH_MAIL_LISTEN") {
            let smtp = service_kit::testing::free_port();
            env.insert("HUSH_MAIL_LISTEN".into(), format!("127.0.0.1:{smtp}"));
        }
        env.insert("HUSH_DATABASE_URL".into(), db);
        env.insert("HUSH_LOG_FORMAT".into(), "json".into());
        if env.contains_key("HUSH_OIDC_ISSUER") && !env.contains_key("HUSH_BREAK_GLASS_JWKS_FILE") {
            // The one deliberate change: our dev issuer instead of the company IdP (it has no
            // discovery document: its key set's URL is given).
            env.insert("HUSH_JWKS_URL".into(), self.jwks.clone());
            env.insert("HUSH_OIDC_ISSUER".into(), auth::DEV_ISSUER.into());
            env.insert("HUSH_DEV_MODE".into(), "true".into());
        }
        env
    }

    /// Starts `hush serve s` with exactly `env` (and PATH).
    pub(crate) fn spawn(&self, s: &str, env: &BTreeMap<String, String>) -> Proc {
        let child = Command::new(env!("CARGO_BIN_EXE_hush"))
            .args(["serve", s])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .envs(env)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Proc(child)
    }
}

/// Waits until service `s` on `port` answers its readiness probe (60 s at most).
pub(crate) async fn wait_ready(http: &reqwest::Client, s: &str, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let url = format!("http://127.0.0.1:{port}/readyz");
    loop {
        if matches!(http.get(&url).send().await, Ok(r) if r.status().is_success()) {
            return;
        }
        assert!(Instant::now() < deadline, "{s} never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn the_compose_topology_runs_as_separate_processes_with_its_environment(kind: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let secrets = deploy_init(&tmp.path().join("deploy")).await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(secrets.join("control-api.key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "private keys are readable by their owner only"
        );
        use std::os::unix::fs::MetadataExt as _;
        let as_root = std::fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .unwrap_or(false);
        if as_root {
            // Compose mounts them unchanged: the image's user must own them.
            for key in ["control-api.key.pem", "tenant-seal.keys", "idp-jwks.json"] {
                let owner = std::fs::metadata(secrets.join(key)).unwrap().uid();
                assert_eq!(
                    owner,
                    hush::deploy::IMAGE_UID,
                    "{key} belongs to the image's user"
                );
            }
            let env_owner = std::fs::metadata(secrets.join("control-api.env"))
                .unwrap()
                .uid();
            assert_eq!(
                env_owner, 0,
                "the .env files, which Compose reads, stay the caller's"
            );
        }
    }
    let Grounds {
        dbs,
        roles: pg,
        issuer,
        jwks,
        stop_issuer,
    } = Grounds::lay(tmp.path(), kind, &secrets).await;

    let launcher = Launcher::new(&secrets, jwks);
    let ports: BTreeMap<&str, u16> = SERVICES
        .iter()
        .map(|s| (*s, service_kit::testing::free_port()))
        .collect();
    let db_of = |s: &str| match s {
        "control-api" => dbs.control.clone(),
        "membership-api" => dbs.membership.clone(),
        "bulk-api" => dbs.bulk.clone(),
        _ => dbs.tenant.clone(),
    };

    let mut procs = Vec::new();
    for s in SERVICES {
        assert!(env_file(&secrets.join(format!("{s}.env"))).contains_key("HUSH_DATABASE_URL"));
        let env = launcher.env(
            s,
            ports[s],
            ports["isolated-tenant"],
            ports["control-api"],
            db_of(s),
        );
        procs.push((s, launcher.spawn(s, &env)));
    }

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for s in SERVICES {
        wait_ready(&http, s, ports[s]).await;
    }

    // The slice across the processes.
    let token = |sub: &str| {
        issuer.mint(
            &auth::DevClaims::corporate(sub, IdentityKind::Member, &[]),
            "hush",
            Duration::from_secs(300),
        )
    };
    let control = format!("http://127.0.0.1:{}", ports["control-api"]);
    let membership = format!("http://127.0.0.1:{}/membership/v1", ports["membership-api"]);
    let group = hush::groups::GroupsClient::new(&control, &token("alice"))
        .unwrap()
        .create_active("Compose Check", "General", "open")
        .await
        .expect("the group is provisioned");
    let id = group["id"].as_str().unwrap();
    let joined = http
        .post(format!("{membership}/groups/{id}/join"))
        .bearer_auth(token("bob"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(joined.status(), StatusCode::OK);
    let me: serde_json::Value = http
        .get(format!("{membership}/groups/{id}/me"))
        .bearer_auth(token("bob"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["member"], true);
    let anon = http
        .post(format!(
            "http://127.0.0.1:{}/tenant/v1/membership/check",
            ports["isolated-tenant"]
        ))
        .json(&json!({"group_id": id, "subject": "bob"}))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), StatusCode::UNAUTHORIZED);

    // SIGTERM: every process finishes in-flight work and exits cleanly.
    for (s, p) in procs.into_iter().rev() {
        let status = p.terminate().await;
        assert!(status.success(), "{s} exited with {status} on SIGTERM");
    }
    let _ = stop_issuer.send(());
    if let Some(roles) = pg {
        roles.check_the_tenant_role_only_appends().await;
        roles.drop_all().await;
    }
}

/// What a test of the services as separate processes starts from: their databases (on
/// Postgres, behind the roles `hush db-setup` makes) and a dev issuer serving its key set on
/// loopback. The test stops the issuer (`stop_issuer`) and drops the roles when it is done.
pub(crate) struct Grounds {
    /// Each service's database.
    pub dbs: Databases,
    /// On Postgres, the roles and databases `hush db-setup` made.
    pub roles: Option<SetupRoles>,
    /// The dev issuer, which mints the test's tokens.
    pub issuer: auth::DevIssuer,
    /// Its key set URL.
    pub jwks: String,
    /// Stops the issuer.
    pub stop_issuer: tokio::sync::oneshot::Sender<()>,
}

impl Grounds {
    /// Fresh databases under `dir` (SQLite) or through `hush db-setup` with `secrets`
    /// (Postgres), and the issuer, its key under `dir`.
    pub(crate) async fn lay(dir: &Path, kind: Backend, secrets: &Path) -> Self {
        let (dbs, roles) = match kind {
            Backend::Sqlite => (
                Databases::for_test(dir, kind, || unreachable!())
                    .await
                    .expect("fresh test databases")
                    .0,
                None,
            ),
            Backend::Postgres => {
                let roles = db_setup(secrets).await;
                (roles.databases(), Some(roles))
            }
        };
        let issuer = auth::DevIssuer::load_or_create(&dir.join("issuer")).unwrap();
        let issuer_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let jwks = format!(
            "http://{}/.well-known/jwks.json",
            issuer_listener.local_addr().unwrap()
        );
        let (stop_issuer, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(service_kit::serve(
            issuer_listener,
            issuer.router(),
            async {
                let _ = stopped.await;
            },
        ));
        Self {
            dbs,
            roles,
            issuer,
            jwks,
            stop_issuer,
        }
    }
}

/// The databases and roles `hush db-setup` made for one test: compose's names with a unique
/// `hush_t_<tag>_` in front (so CI's cleanup finds them), on the test server.
pub(crate) struct SetupRoles {
    admin: String,
    /// (role and database name, the service's URL), in `DATABASES` order.
    made: Vec<(String, String)>,
}

/// Runs `hush db-setup` as compose does, from the db-setup.env deploy-init wrote: the same
/// passwords, the test server for `postgres:5432` and unique names.
pub(crate) async fn db_setup(secrets: &Path) -> SetupRoles {
    let admin = service_kit::testing::postgres_url();
    let written = env_file(&secrets.join("db-setup.env"));
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let server = admin
        .split_once("://")
        .and_then(|(_, rest)| rest.rsplit_once('@').map(|(_, h)| h).or(Some(rest)))
        .and_then(|h| h.split('/').next())
        .unwrap()
        .to_string();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hush"));
    cmd.arg("db-setup")
        .env_clear()
        .env("HUSH_DB_ADMIN_URL", &admin);
    let mut made = Vec::new();
    for (service, db, var) in hush::deploy::DATABASES {
        let url = &written[var];
        assert!(
            url.starts_with(&format!("postgres://{db}:"))
                && url.ends_with(&format!("@postgres:5432/{db}")),
            "{service} connects as its own role {db}, not the admin: {var}"
        );
        let password = url
            .trim_start_matches(&format!("postgres://{db}:"))
            .trim_end_matches(&format!("@postgres:5432/{db}"));
        let name = format!("hush_t_{tag}_{}", db.trim_start_matches("hush_"));
        let url = format!("postgres://{name}:{password}@{server}/{name}");
        cmd.env(var, &url);
        made.push((name, url));
    }
    let out = cmd.output().await.unwrap();
    assert!(
        out.status.success(),
        "db-setup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Again, as on every `docker compose up`: nothing to do, nothing fails.
    let again = cmd.output().await.unwrap();
    assert!(again.status.success(), "db-setup runs twice");
    SetupRoles { admin, made }
}

impl SetupRoles {
    pub(crate) fn databases(&self) -> Databases {
        Databases {
            control: self.made[0].1.clone(),
            membership: self.made[1].1.clone(),
            bulk: self.made[2].1.clone(),
            tenant: self.made[3].1.clone(),
        }
    }

    /// As the tenant's own role, after the flow: the audit chain has events, and the role can
    /// neither change nor remove them, nor change the schema.
    async fn check_the_tenant_role_only_appends(&self) {
        use sqlx::Connection as _;
        let mut tenant = sqlx::PgConnection::connect(&self.made[3].1).await.unwrap();
        let superuser: bool =
            sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
                .fetch_one(&mut tenant)
                .await
                .unwrap();
        assert!(!superuser);
        let events: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events")
            .fetch_one(&mut tenant)
            .await
            .unwrap();
        assert!(events > 0, "the flow wrote audit events as this role");
        for refused in [
            "UPDATE audit_events SET at_ms = at_ms",
            "DELETE FROM audit_events",
            "TRUNCATE audit_events",
            "ALTER TABLE audit_events DISABLE TRIGGER ALL",
            "CREATE TABLE sneaky (x int)",
        ] {
            let err = sqlx::query(refused)
                .execute(&mut tenant)
                .await
                .expect_err(refused);
            let code = err
                .as_database_error()
                .and_then(|e| e.code())
                .map(|c| c.to_string());
            assert!(
                matches!(code.as_deref(), Some("42501")),
                "{refused}: refused for want of the right (42501), got {err}"
            );
        }
    }

    pub(crate) async fn drop_all(self) {
        use sqlx::Connection as _;
        let mut admin = sqlx::PgConnection::connect(&self.admin).await.unwrap();
        for (name, _) in &self.made {
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .await
                .unwrap();
            sqlx::query(&format!("DROP ROLE IF EXISTS {name}"))
                .execute(&mut admin)
                .await
                .unwrap();
        }
    }
}

#[tokio::test]
async fn production_mode_refuses_the_dev_issuer() {
    let tmp = tempfile::tempdir().unwrap();
    let secrets = deploy_init(tmp.path()).await;
    let out = Command::new(env!("CARGO_BIN_EXE_hush"))
        .args(["serve", "control-api"])
        .env_clear()
        .env("HUSH_LISTEN", "127.0.0.1:0")
        .env(
            "HUSH_DATABASE_URL",
            format!("sqlite://{}", tmp.path().join("c.db").display()),
        )
        .env("HUSH_TENANT_URL", "http://127.0.0.1:9")
        .env("HUSH_MAIL_DOMAIN", "groups.corp.example")
        .env("HUSH_JWT_AUDIENCE", "hush")
        .env("HUSH_JWT_ISSUER", auth::DEV_ISSUER)
        .env("HUSH_JWKS_URL", "http://127.0.0.1:9/.well-known/jwks.json")
        .env("HUSH_SERVICE_KEY_FILE", secrets.join("control-api.key.pem"))
        .env("HUSH_TRUSTED_SERVICE_KEYS", "")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), out)
        .await
        .expect("exits by itself")
        .unwrap();
    assert!(
        !out.status.success(),
        "the dev issuer must be refused outside dev mode"
    );
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        err.contains("dev issuer") || err.contains("dev-issuer") || err.contains("dev mode"),
        "says why: {err}"
    );
}

service_kit::backend_tests!(the_compose_topology_runs_as_separate_processes_with_its_environment);
