//! Mail across real processes: the tenant as a `hush serve` process with its SMTP listener on,
//! control-api provisioning groups into it (with their sender policy), Python's `smtplib` as
//! the sender and `aiosmtpd` as the corporate relay. kill -9 is a real SIGKILL.
//!
//! `cargo test -p hush --test mail` (Python 3 with aiosmtpd; `.ci/run` installs it).

use domain::{Email, IdentityKind, Label, ServiceName};
use hush::cluster::{Cluster, ClusterOptions};
use hush::stack::Databases;
use serde_json::Value;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tenant_client::api::{AddMember, MemberRef};

const SCRIPTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../services/isolated-tenant/tests/mail"
);

fn python() -> bool {
    let Ok(out) = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .output()
    else {
        eprintln!("SKIPPED: python3 is not installed; the mail tests need python3 with aiosmtpd");
        return false;
    };
    assert!(
        out.status.success(),
        "python3 is installed but aiosmtpd is not: pip install aiosmtpd dkimpy"
    );
    true
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The aiosmtpd relay on a given port, killed when dropped.
struct PyRelay {
    child: Child,
    out: PathBuf,
}

impl PyRelay {
    fn start(out: &Path, port: u16) -> Self {
        let mut child = Command::new("python3")
            .arg(format!("{SCRIPTS}/relay.py"))
            .arg(out)
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the aiosmtpd relay");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("READY"), "relay said {line:?}");
        Self {
            child,
            out: out.to_path_buf(),
        }
    }

    fn recipients(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .flat_map(|m| {
                m["rcpts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap().to_string())
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

impl Drop for PyRelay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends with smtplib; the JSON verdict of send.py.
fn send(port: u16, from: &str, to: &str, dir: &Path) -> Value {
    let path = dir.join("message.eml");
    std::fs::write(
        &path,
        format!("From: {from}\r\nTo: {to}\r\nSubject: hello\r\n\r\nHello.\r\n"),
    )
    .unwrap();
    let out = Command::new("python3")
        .arg(format!("{SCRIPTS}/send.py"))
        .args(["127.0.0.1", &port.to_string(), from, to])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Creates a group through control-api and waits until the tenant has it; its address.
async fn group(cluster: &Cluster, owner: &str, label: &str, join: &str) -> (String, String) {
    let http = reqwest::Client::new();
    let token = cluster.token(owner, IdentityKind::Member, &[]);
    let control = format!("{}/control/v1", cluster.url("control-api"));
    let res: Value = http
        .post(format!("{control}/groups"))
        .bearer_auth(&token)
        .json(
            &serde_json::json!({"name": format!("{label} mail"), "description": "",
            "label": label, "join_policy": join}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = res["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{res}"))
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let g: Value = http
            .get(format!("{control}/groups/{id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if g["state"] == "active" {
            return (id, g["contact_address"].as_str().unwrap().to_string());
        }
        assert!(Instant::now() < deadline, "never active: {g}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn add_members(cluster: &Cluster, group: &str, label: &str, n: usize) -> Vec<String> {
    let tenant = cluster.tenant_as(ServiceName::MembershipApi).unwrap();
    let label = Label::defaults()
        .into_iter()
        .find(|l| l.name.as_str() == label)
        .unwrap();
    let group = domain::GroupId::from(group.parse::<uuid::Uuid>().unwrap());
    let mut out = Vec::new();
    for i in 0..n {
        let email = format!("member{i:03}@corp.example");
        tenant
            .add_member(
                group,
                &AddMember {
                    member: MemberRef {
                        subject: None,
                        email: Some(Email::parse(&email).unwrap()),
                        kind: None,
                    },
                    label: label.clone(),
                },
            )
            .await
            .unwrap();
        out.push(email);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_after_250_and_before_delivery_then_delivered_once_after_restart() {
    if !python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pg = std::env::var("HUSH_TEST_POSTGRES_URL")
        .ok()
        .filter(|s| !s.is_empty());
    let (dbs, made) = Databases::fresh(dir.path(), pg.as_deref(), "hush_t")
        .await
        .unwrap();
    let (smtp, relay_port) = (free_port(), free_port());
    let mut cluster = Cluster::start(
        Path::new(env!("CARGO_BIN_EXE_hush")),
        ClusterOptions {
            dir: dir.path().to_path_buf(),
            databases: dbs,
            bulk_replicas: 1,
            membership: false,
            bulk_env: vec![],
            tenant_env: vec![
                ("HUSH_MAIL_LISTEN".into(), format!("127.0.0.1:{smtp}")),
                // Nothing listens there yet: every copy waits in the queue.
                (
                    "HUSH_MAIL_RELAY".into(),
                    format!("smtp://127.0.0.1:{relay_port}"),
                ),
                ("HUSH_MAIL_RETRY_BASE_SECS".into(), "1".into()),
                ("HUSH_MAIL_LEASE_SECS".into(), "5".into()),
            ],
            log: "error".into(),
        },
    )
    .await
    .unwrap();
    let (general, general_addr) = group(&cluster, "owen", "General", "open").await;
    let members = add_members(&cluster, &general, "General", 20).await;
    // "Highly Confidential": only members may send, as control-api told the tenant.
    let (secret, secret_addr) = group(&cluster, "olive", "Highly Confidential", "invite").await;
    add_members(&cluster, &secret, "Highly Confidential", 1).await;
    let refused = send(smtp, "alice@corp.example", &secret_addr, dir.path());
    assert_eq!(refused["code"], 550, "{refused}");
    let member_sends = send(smtp, "member000@corp.example", &secret_addr, dir.path());
    assert_eq!(member_sends["ok"], true, "{member_sends}");

    let accepted = send(smtp, "alice@corp.example", &general_addr, dir.path());
    assert_eq!(accepted["ok"], true, "{accepted}");
    cluster.kill("isolated-tenant").await.unwrap();

    let relay = PyRelay::start(&dir.path().join("relay.jsonl"), relay_port);
    cluster.restart("isolated-tenant").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while relay.recipients().len() < members.len() + 1 {
        assert!(
            Instant::now() < deadline,
            "{} of {} copies arrived",
            relay.recipients().len(),
            members.len() + 1
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut got = relay.recipients();
    got.sort();
    let mut want = members.clone();
    want.push("member000@corp.example".into()); // the Highly Confidential group's one member
    want.sort();
    assert_eq!(got, want, "every member exactly once, after the restart");
    cluster.stop().await;
    if let Some(m) = made {
        m.drop_all().await;
    }
}
