//! The sample app against the real stack (every service on loopback, real HTTP): it shows its
//! page to a member of a group guarding its resource, and refuses a non-member and an AI agent.

use domain::IdentityKind;
use hush::stack::{Databases, Stack, StackConfig};
use reqwest::StatusCode;
use serde_json::{json, Value};
use service_kit::db::Backend;
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const AUDIENCE: &str = "https://reports.corp.example";

/// The sample app as a process of its own; killed when dropped.
struct SampleApp {
    child: Child,
    url: String,
}

impl Drop for SampleApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SampleApp {
    fn start(hush: &str, client_id: &str, secret_file: &std::path::Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hush-sample-rp"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--hush-url",
                hush,
                "--client-id",
                client_id,
            ])
            .arg("--client-secret-file")
            .arg(secret_file)
            .args(["--audience", AUDIENCE, "--resource", "report"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("the sample app starts");
        // It prints where it listens once bound: wait for that line (an event, not a sleep).
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("the sample app says where it listens");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .expect("its first line");
        Self {
            url: format!("http://{addr}/report"),
            child,
        }
    }
}

async fn the_sample_app_admits_a_member_and_refuses_a_non_member_and_an_agent(backend: Backend) {
    service_kit::telemetry::init_for_test();
    let dir = tempfile::tempdir().unwrap();
    let (dbs, pg) = Databases::for_test(dir.path(), backend, service_kit::testing::postgres_url)
        .await
        .expect("fresh test databases");
    let stack = Stack::start(StackConfig::for_tests(dir.path(), dbs))
        .await
        .expect("stack starts");
    let urls = stack.urls();
    let token = |sub: &str, kind, roles: &[&str]| {
        stack.issuer().mint(
            &auth::DevClaims::corporate(sub, kind, roles),
            "hush",
            Duration::from_secs(600),
        )
    };
    let http = reqwest::Client::new();
    let call = async |method: reqwest::Method, url: String, t: &str, body: Option<Value>| {
        let mut req = http.request(method, url).bearer_auth(t);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        (status, res.json::<Value>().await.unwrap_or(Value::Null))
    };
    let (alice, operator) = (
        token("alice", IdentityKind::Member, &[]),
        token("otto", IdentityKind::Member, &["operator"]),
    );
    let control = |p: &str| format!("{}/control/v1{p}", urls.control);

    // A Confidential group, active; Bob added by his owner.
    let (status, group) = call(
        reqwest::Method::POST,
        control("/groups"),
        &alice,
        Some(json!({"name": "Reporting", "description": "", "label": "Confidential", "join_policy": "approval"})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{group}");
    let gid = group["id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while call(
        reqwest::Method::GET,
        control(&format!("/groups/{gid}")),
        &alice,
        None,
    )
    .await
    .1["state"]
        != "active"
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the group never became active"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (status, _) = call(
        reqwest::Method::POST,
        format!("{}/membership/v1/groups/{gid}/members", urls.membership),
        &alice,
        Some(json!({"email": "bob@corp.example"})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);

    // The operator registers the app and its resource; the owner binds the group to it.
    let (status, app) = call(
        reqwest::Method::POST,
        control("/relying-parties"),
        &operator,
        Some(json!({"name": "Reports", "audience": AUDIENCE})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{app}");
    let (status, resource) = call(
        reqwest::Method::POST,
        control(&format!(
            "/relying-parties/{}/resources",
            app["id"].as_str().unwrap()
        )),
        &operator,
        Some(json!({"name": "report", "label": "Confidential"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{resource}");
    let (status, _) = call(
        reqwest::Method::PUT,
        control(&format!(
            "/groups/{gid}/bindings/{}",
            resource["id"].as_str().unwrap()
        )),
        &alice,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);

    let secret_file = dir.path().join("app-secret.txt");
    std::fs::write(&secret_file, app["credential"].as_str().unwrap()).unwrap();
    let sample = SampleApp::start(&urls.membership, app["id"].as_str().unwrap(), &secret_file);
    let page = async |t: Option<&str>, assertion: Option<&str>| {
        let mut req = http.get(&sample.url);
        if let Some(t) = t {
            req = req.bearer_auth(t);
        }
        if let Some(a) = assertion {
            req = req.header("x-hush-assertion", a);
        }
        let res = req.send().await.unwrap();
        (res.status(), res.text().await.unwrap())
    };
    let bob = token("bob", IdentityKind::Member, &[]);
    let (status, body) = page(Some(&bob), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains("Quarterly report") && body.contains("bob"),
        "{body}"
    );
    let carol = token("carol", IdentityKind::Member, &[]);
    assert_eq!(page(Some(&carol), None).await.0, StatusCode::FORBIDDEN);
    let robot = token("robot", IdentityKind::Agent, &[]);
    assert_eq!(page(Some(&robot), None).await.0, StatusCode::FORBIDDEN);
    assert_eq!(page(None, None).await.0, StatusCode::UNAUTHORIZED);
    // Bob's own assertion, checked offline by the app.
    let (status, asserted) = call(
        reqwest::Method::POST,
        format!("{}/membership/v1/me/assertions", urls.membership),
        &bob,
        Some(json!({"audience": AUDIENCE})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{asserted}");
    let (status, body) = page(None, asserted["assertion"].as_str()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        page(None, Some("forged.assertion.value")).await.0,
        StatusCode::UNAUTHORIZED
    );

    drop(sample);
    stack.stop().await.expect("stack stops");
    if let Some(pg) = pg {
        pg.drop_all().await;
    }
}

service_kit::backend_tests!(the_sample_app_admits_a_member_and_refuses_a_non_member_and_an_agent);
