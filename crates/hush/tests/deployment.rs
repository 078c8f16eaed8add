//! The deployment files, checked without Docker or Kubernetes (issue 20, items 3 and 4):
//!
//! - docker-compose.yml's network wiring, rebuilt with Linux network namespaces: each service
//!   process (`hush serve …`, `hush edge`) in a namespace of its own, joined by veth pairs to one
//!   bridge per compose network it is on, with the environment compose gives it. The public side
//!   reaches the edge, not the tenant's API; the MTA's mail flows through the tenant's SMTP
//!   listener to the relay. Needs root and iproute2 (`ip netns`): ignored otherwise, and CI
//!   (root) runs it with `--include-ignored`.
//! - docker-compose.yml against the Compose Specification's JSON schema (vendored under
//!   deploy/schemas/), with Python's jsonschema.
//! - The Helm chart rendered by Helm's own engine and validated against the Kubernetes schemas
//!   (deploy/helm/validate.py: helm-python-sdk and kubernetes-validate from PyPI).
//!
//! `cargo test -p hush --test deployment -- --include-ignored` (as root for the first).

use domain::IdentityKind;
use reqwest::StatusCode;
use serde_json::json;
use serde_yaml::Value as Yaml;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

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
    match v {
        Yaml::Sequence(s) => s
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        // `networks:` as a mapping (with per-network settings): its keys.
        Yaml::Mapping(m) => m
            .keys()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// The Compose Specification schema.

/// Validates `compose` (YAML text) against the vendored Compose Specification schema; Python's
/// jsonschema's verdict: Ok, or the first error.
fn compose_schema_verdict(compose: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("compose.yml");
    std::fs::write(&file, compose).unwrap();
    let script = r#"
import json, sys, yaml, jsonschema
schema = json.load(open(sys.argv[1]))
doc = yaml.safe_load(open(sys.argv[2]))
errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=str)
print(errors[0].message if errors else "valid")
sys.exit(1 if errors else 0)
"#;
    let out = StdCommand::new("python3")
        .arg("-c")
        .arg(script)
        .arg(repo().join("deploy/schemas/compose-spec.json"))
        .arg(&file)
        .output()
        .expect("python3 runs");
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match out.status.code() {
        Some(0) => Ok(()),
        Some(1) => Err(said),
        _ => panic!(
            "python3 with jsonschema and pyyaml: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

#[test]
#[ignore = "needs python3 with jsonschema and pyyaml (CI installs them)"]
fn the_compose_file_follows_the_compose_specification() {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    assert_eq!(compose_schema_verdict(&text), Ok(()));
    // The check bites: a misspelt key and a bad port are refused.
    let misspelt = text.replacen("    healthcheck:\n", "    healthchek:\n", 1);
    assert!(compose_schema_verdict(&misspelt).is_err(), "a misspelt key");
    let bad = text.replacen("\"2525:2525\"", "{published: [2525]}", 1);
    assert!(
        compose_schema_verdict(&bad).is_err(),
        "a port that is no port"
    );
}

// ---------------------------------------------------------------------------------------------
// The Helm chart.

#[test]
#[ignore = "needs python3 with helm-python-sdk and kubernetes-validate (CI installs them)"]
fn the_helm_chart_renders_to_valid_kubernetes_manifests() {
    let out = StdCommand::new("python3")
        .arg(repo().join("deploy/helm/validate.py"))
        .output()
        .expect("python3 runs");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "deploy/helm/validate.py:\n{said}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Both values files and the IdP-on-a-company-CA case rendered and validated, and helm lint
    // passed: nothing skipped.
    assert!(said.contains("4 passed, 0 failed"), "{said}");
    assert!(said.contains("ok   an IdP on a company CA"), "{said}");
    assert!(
        said.contains("ok   values-external-postgres.yaml"),
        "{said}"
    );
}

// ---------------------------------------------------------------------------------------------
// The compose topology in network namespaces.

/// The processes compose runs from the image, in the order they start.
const PROCESSES: [&str; 5] = [
    "isolated-tenant",
    "control-api",
    "membership-api",
    "bulk-api",
    "edge",
];

/// Runs `ip ARGS`, panicking with its error when it fails.
fn ip(args: &[&str]) {
    let out = StdCommand::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The namespaces, bridges and veth pairs one test made; removes them when dropped, after
/// stopping the processes in them.
struct Topology {
    tag: String,
    /// The test's 10.N.0.0/16: 10.N.1 internal, 10.N.2 public, 10.N.3 mail.
    n: u8,
    bridges: Vec<String>,
    namespaces: Vec<String>,
    veths: Vec<String>,
    children: Vec<(String, Child)>,
}

impl Topology {
    fn subnet(net: &str) -> u8 {
        match net {
            "internal" => 1,
            "public" => 2,
            "mail" => 3,
            other => panic!("compose has a network this test does not know: {other}"),
        }
    }

    /// A process's last address octet; the tenant's is compose's fixed one.
    fn host_octet(process: &str) -> u8 {
        match process {
            "isolated-tenant" => 10,
            "control-api" => 20,
            "membership-api" => 21,
            "bulk-api" => 22,
            "edge" => 30,
            other => panic!("unknown process {other}"),
        }
    }

    fn addr(&self, process: &str, net: &str) -> Ipv4Addr {
        Ipv4Addr::new(10, self.n, Self::subnet(net), Self::host_octet(process))
    }

    /// The host's address on `net`: it stands for the outside world there (the browser and the
    /// IdP on `public`, the MTA and the relay on `mail`).
    fn outside(&self, net: &str) -> Ipv4Addr {
        Ipv4Addr::new(10, self.n, Self::subnet(net), 1)
    }

    fn ns(&self, process: &str) -> String {
        format!("hush-{}-{process}", self.tag)
    }

    /// Bridges for compose's networks (the host gets an address on every one but `internal`,
    /// which has no way in or out), and a namespace per process joined to its networks.
    fn build(networks: &BTreeMap<String, Vec<String>>) -> Self {
        let tag = uuid::Uuid::new_v4().simple().to_string()[..4].to_string();
        let n = 100 + (u16::from_str_radix(&tag, 16).unwrap() % 150) as u8;
        let mut t = Self {
            tag,
            n,
            bridges: vec![],
            namespaces: vec![],
            veths: vec![],
            children: vec![],
        };
        for net in ["internal", "public", "mail"] {
            let br = format!("hb{}{}", t.tag, Self::subnet(net));
            ip(&["link", "add", &br, "type", "bridge"]);
            t.bridges.push(br.clone());
            ip(&["link", "set", &br, "up"]);
            if net != "internal" {
                ip(&["addr", "add", &format!("{}/24", t.outside(net)), "dev", &br]);
            }
        }
        for (i, process) in PROCESSES.iter().enumerate() {
            let ns = t.ns(process);
            ip(&["netns", "add", &ns]);
            t.namespaces.push(ns.clone());
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            for net in &networks[*process] {
                let s = Self::subnet(net);
                let (outer, inner) = (format!("hv{}{i}{s}", t.tag), format!("hp{}{i}{s}", t.tag));
                ip(&[
                    "link", "add", &outer, "type", "veth", "peer", "name", &inner,
                ]);
                t.veths.push(outer.clone());
                ip(&[
                    "link",
                    "set",
                    &outer,
                    "master",
                    &format!("hb{}{s}", t.tag),
                    "up",
                ]);
                ip(&["link", "set", &inner, "netns", &ns]);
                let addr = format!("{}/24", t.addr(process, net));
                ip(&["-n", &ns, "addr", "add", &addr, "dev", &inner]);
                ip(&["-n", &ns, "link", "set", &inner, "up"]);
            }
        }
        t
    }

    /// Starts `hush ARGS` inside `process`'s namespace with exactly `env`.
    fn spawn(&mut self, process: &str, args: &[String], env: &BTreeMap<String, String>) {
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns(process),
                env!("CARGO_BIN_EXE_hush"),
            ])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .envs(env)
            .kill_on_drop(true)
            .spawn()
            .expect("ip netns exec runs");
        self.children.push((process.to_string(), child));
    }

    /// Whether `hush healthcheck URL`, run inside `process`'s namespace, got a 2xx answer.
    async fn healthy_from(&self, process: &str, url: &str) -> bool {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns(process),
                env!("CARGO_BIN_EXE_hush"),
            ])
            .args(["healthcheck", url])
            .status()
            .await
            .expect("ip netns exec runs")
            .success()
    }

    /// Stops every process with SIGTERM; each must exit cleanly.
    async fn stop(&mut self) {
        for (process, mut child) in self.children.drain(..).rev() {
            let pid = child.id().expect("running").to_string();
            let _ = StdCommand::new("kill").args(["-TERM", &pid]).status();
            let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
                .await
                .expect("stops within 15 s of SIGTERM")
                .unwrap();
            assert!(
                status.success(),
                "{process} exited with {status} on SIGTERM"
            );
        }
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.start_kill();
        }
        let del = |args: &[&str]| {
            let _ = StdCommand::new("ip").args(args).output();
        };
        for v in &self.veths {
            del(&["link", "del", v]);
        }
        for ns in &self.namespaces {
            del(&["netns", "del", ns]);
        }
        for br in &self.bridges {
            del(&["link", "del", br]);
        }
    }
}

/// A stand-in corporate relay: plain SMTP, each message's envelope recipients sent on `tx`.
async fn relay(listener: TcpListener, tx: mpsc::UnboundedSender<Vec<String>>) {
    while let Ok((stream, _)) = listener.accept().await {
        let tx = tx.clone();
        tokio::spawn(async move {
            let (r, mut w) = stream.into_split();
            let mut r = BufReader::new(r);
            let _ = w.write_all(b"220 relay.test ESMTP\r\n").await;
            let mut rcpts = Vec::new();
            let mut line = String::new();
            loop {
                line.clear();
                if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                let upper = line.to_ascii_uppercase();
                let reply: &[u8] = if upper.starts_with("EHLO") {
                    b"250-relay.test\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 PIPELINING\r\n"
                } else if upper.starts_with("RCPT TO:") {
                    let to = line[8..].trim();
                    let to = to.trim_start_matches('<');
                    rcpts.push(to[..to.find('>').unwrap_or(to.len())].to_string());
                    b"250 2.1.5 ok\r\n"
                } else if upper.starts_with("DATA") {
                    let _ = w.write_all(b"354 go on\r\n").await;
                    loop {
                        line.clear();
                        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == ".\r\n" || line == ".\n" {
                            break;
                        }
                    }
                    let _ = tx.send(std::mem::take(&mut rcpts));
                    b"250 2.0.0 stored\r\n"
                } else if upper.starts_with("RSET") {
                    rcpts.clear();
                    b"250 ok\r\n"
                } else if upper.starts_with("QUIT") {
                    let _ = w.write_all(b"221 bye\r\n").await;
                    return;
                } else {
                    b"250 ok\r\n"
                };
                if w.write_all(reply).await.is_err() {
                    return;
                }
            }
        });
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root and iproute2 (ip netns); CI runs it as root with --include-ignored"]
async fn in_the_compose_topology_the_public_side_never_reaches_the_tenant_api_while_mail_flows() {
    assert!(
        is_root() && StdCommand::new("ip").arg("-V").output().is_ok(),
        "this test makes network namespaces: run it as root, with iproute2 installed"
    );
    let c = compose();
    let services = &c["services"];
    let networks: BTreeMap<String, Vec<String>> = PROCESSES
        .iter()
        .map(|p| (p.to_string(), strs(&services[*p]["networks"])))
        .collect();
    assert_eq!(networks["isolated-tenant"], ["internal", "mail"]);
    assert_eq!(networks["edge"], ["public"]);

    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hush"))
        .args(["deploy-init", "--out"])
        .arg(tmp.path().join("deploy"))
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "deploy-init");
    let secrets = tmp.path().join("deploy/secrets");
    let dbs = hush::stack::Databases::sqlite_in(tmp.path());

    let mut t = Topology::build(&networks);

    // The outside world: the IdP's JWKS on the public side, the relay on the mail side.
    let issuer = auth::DevIssuer::load_or_create(&tmp.path().join("issuer")).unwrap();
    let idp = TcpListener::bind((t.outside("public"), 0)).await.unwrap();
    let jwks = format!("http://{}/.well-known/jwks.json", idp.local_addr().unwrap());
    let (stop_idp, idp_stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(service_kit::serve(idp, issuer.router(), async {
        let _ = idp_stopped.await;
    }));
    let relay_listener = TcpListener::bind((t.outside("mail"), 0)).await.unwrap();
    let relay_addr = relay_listener.local_addr().unwrap();
    let (relayed_tx, mut relayed) = mpsc::unbounded_channel();
    tokio::spawn(relay(relay_listener, relayed_tx));

    // Compose mounts secrets at /run/secrets/<name> and configs at /<name>.
    let mut mounts: Vec<(String, PathBuf)> =
        vec![("/var/lib/hush-audit".to_string(), tmp.path().to_path_buf())];
    for (kind, prefix) in [("secrets", "/run/secrets/"), ("configs", "/")] {
        for (name, def) in c[kind].as_mapping().unwrap() {
            let file = Path::new(def["file"].as_str().unwrap());
            let local = secrets.join(file.file_name().unwrap());
            assert!(local.exists(), "deploy-init wrote {}", file.display());
            mounts.push((format!("{prefix}{}", name.as_str().unwrap()), local));
        }
    }
    mounts.sort_by_key(|(m, _)| std::cmp::Reverse(m.len()));
    let tenant_fixed = services["isolated-tenant"]["networks"]["internal"]["ipv4_address"]
        .as_str()
        .unwrap()
        .to_string();

    for process in PROCESSES {
        let mut env = BTreeMap::new();
        for f in strs(&services[process]["env_file"])
            .iter()
            .filter(|f| !f.starts_with("deploy/secrets/"))
        {
            env.extend(env_file(&repo().join(f)));
        }
        for v in env.values_mut() {
            // Compose's DNS: a service's name is its address on a network both share.
            for (name, port) in [
                ("isolated-tenant", 8083),
                ("control-api", 8080),
                ("membership-api", 8081),
                ("bulk-api", 8082),
            ] {
                let shared = networks[name]
                    .iter()
                    .find(|n| networks[process].contains(n));
                if let Some(net) = shared {
                    *v = v.replace(
                        &format!("http://{name}:{port}"),
                        &format!("http://{}:{port}", t.addr(name, net)),
                    );
                }
            }
            *v = v.replace(
                &tenant_fixed,
                &t.addr("isolated-tenant", "internal").to_string(),
            );
            for (mount, local) in &mounts {
                *v = v.replace(mount.as_str(), &local.display().to_string());
            }
        }
        let db = match process {
            "control-api" => Some(&dbs.control),
            "membership-api" => Some(&dbs.membership),
            "bulk-api" => Some(&dbs.bulk),
            "isolated-tenant" => Some(&dbs.tenant),
            _ => None,
        };
        if let Some(db) = db {
            env.insert("HUSH_DATABASE_URL".into(), db.clone());
        }
        if process == "edge" {
            // Sign-in is not exercised here: endpoints given, so the edge needs no discovery
            // from an IdP this test does not run.
            env.insert(
                "HUSH_OIDC_AUTHORIZATION_ENDPOINT".into(),
                "https://idp.corp.example/authorize".into(),
            );
            env.insert(
                "HUSH_OIDC_TOKEN_ENDPOINT".into(),
                "https://idp.corp.example/token".into(),
            );
        } else if env.contains_key("HUSH_OIDC_ISSUER")
            && !env.contains_key("HUSH_BREAK_GLASS_JWKS_FILE")
        {
            // The one deliberate change: our dev issuer instead of the company IdP (it has no
            // discovery document: its key set's URL is given).
            env.insert("HUSH_JWKS_URL".into(), jwks.clone());
            env.insert("HUSH_OIDC_ISSUER".into(), auth::DEV_ISSUER.into());
            env.insert("HUSH_DEV_MODE".into(), "true".into());
        }
        if env.contains_key("HUSH_MAIL_RELAY") {
            // The MTA and the relay are the host's address on the mail network.
            env.insert("HUSH_MAIL_RELAY".into(), format!("smtp://{relay_addr}"));
            env.insert(
                "HUSH_MAIL_TRUSTED_RELAYS".into(),
                t.outside("mail").to_string(),
            );
            // The stand-in relay speaks no TLS; with the relay's TLS settings (issue 20
            // item 1) the tenant would otherwise insist on STARTTLS.
            env.insert("HUSH_MAIL_RELAY_TLS".into(), "none".into());
        }
        t.spawn(process, &strs(&services[process]["command"]), &env);
    }

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let edge = format!("http://{}:8085", t.addr("edge", "public"));
    let tenant_api = format!(
        "http://{}:8083/readyz",
        t.addr("isolated-tenant", "internal")
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    // The tenant is ready as control-api sees it; the edge once it is.
    while !t.healthy_from("control-api", &tenant_api).await {
        assert!(Instant::now() < deadline, "the tenant never became ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    loop {
        if matches!(http.get(format!("{edge}/readyz")).send().await, Ok(r) if r.status().is_success())
        {
            break;
        }
        assert!(Instant::now() < deadline, "the edge never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The public side: the edge's network has no way to the tenant's API; the services on the
    // internal network do (so the refusal is the topology's, not a tenant that is down).
    assert!(
        !t.healthy_from("edge", &tenant_api).await,
        "the edge's network reaches the tenant's API"
    );
    assert!(t.healthy_from("membership-api", &tenant_api).await);
    // The mail side (the host as the MTA): SMTP answers, the API does not listen there.
    let tenant_mail = t.addr("isolated-tenant", "mail");
    let api_on_mail = tokio::net::TcpStream::connect((tenant_mail, 8083)).await;
    assert_eq!(
        api_on_mail.map(|_| ()).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionRefused),
        "the tenant's API listens on the mail network"
    );
    // (Not tried from the host itself for the internal address: its default route leads off
    // the machine, where whatever answers says nothing about this topology. The edge's
    // namespace, with the public network alone, is the public side.)
    let through_edge = http
        .get(format!("{edge}/tenant/v1/groups"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        through_edge.status(),
        StatusCode::NOT_FOUND,
        "the edge proxies no /tenant"
    );

    // The product through the edge: a group, a member.
    let token = |sub: &str| {
        issuer.mint(
            &auth::DevClaims::corporate(sub, IdentityKind::Member, &[]),
            "hush",
            Duration::from_secs(300),
        )
    };
    let group = hush::groups::GroupsClient::new(&edge, &token("olive"))
        .unwrap()
        .create_active("Topology Check", "General", "open")
        .await
        .expect("the group is provisioned through the edge");
    let id = group["id"].as_str().unwrap();
    let address = group["contact_address"].as_str().unwrap();
    let joined = http
        .post(format!("{edge}/membership/v1/groups/{id}/join"))
        .bearer_auth(token("bob"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(joined.status(), StatusCode::OK);

    // Mail: the MTA hands a message to the tenant's SMTP listener; the copy reaches the relay.
    let message =
        format!("From: alice@corp.example\r\nTo: {address}\r\nSubject: hello\r\n\r\nHello.\r\n");
    let sent = isolated_tenant::testing::send(
        SocketAddr::from((tenant_mail, 2525)),
        "alice@corp.example",
        &[address],
        &message,
        &[],
    )
    .await;
    assert_eq!(sent["ok"], true, "{sent}");
    let copy = tokio::time::timeout(Duration::from_secs(60), relayed.recv())
        .await
        .expect("a copy reaches the relay within 60 s")
        .unwrap();
    assert_eq!(copy, vec!["bob@corp.example".to_string()]);

    t.stop().await;
    let _ = stop_idp.send(());
}
