//! Privacy-safe notifications across real processes (issue 19, item 2): the tenant, control-api
//! and membership-api as processes, the dev issuer's tokens, and `aiosmtpd` as the corporate
//! relay whose sink we read byte for byte.
//!
//! What is proved: an owner's notification that requests wait names none of the requesters
//! (their name, address or subject) and several requests within the interval make one more
//! mail, not one each; each requester alone hears their own decision; a break-glass filing
//! tells the configured officers' mailbox, naming no group, auditor or member; nobody
//! receives anything because someone else joined a group; and the deployment's webhook, a real
//! loopback HTTP receiver here, gets the role-wide events signed with its secret and nameless,
//! and never a requester's decision.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use domain::IdentityKind;
use hmac::{Hmac, Mac};
use hush::groups::GroupsClient;
use hush::stack::Databases;
use hush_dev::cluster::{Cluster, ClusterOptions};
use isolated_tenant::testing::PyRelay;
use serde_json::{json, Value};
use service_kit::db::Backend;
use sha2::Sha256;
use std::path::Path;
use std::time::{Duration, Instant};

mod sqlite {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs python3 with aiosmtpd and dkimpy"]
    async fn notifications_name_nobody_and_reach_only_whom_they_concern() {
        super::notifications_name_nobody_and_reach_only_whom_they_concern(super::Backend::Sqlite)
            .await
    }
}

mod postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs HUSH_TEST_POSTGRES_URL and python3 with aiosmtpd and dkimpy"]
    async fn notifications_name_nobody_and_reach_only_whom_they_concern() {
        super::notifications_name_nobody_and_reach_only_whom_they_concern(super::Backend::Postgres)
            .await
    }
}

/// The officers' mailbox the deployment configures.
const OFFICERS: &str = "privacy-office@corp.example";
/// At most one owners' mail per group per this many seconds: long enough that three joins in a
/// row fall within it on a loaded machine.
const INTERVAL_SECS: &str = "6";

/// The webhook's secret, as the deployment's secret file holds it.
const SECRET: &str = "a webhook secret for the notification test";

/// A loopback receiver that verifies each POST's `Hush-Signature` with [`SECRET`] (HMAC-SHA256
/// of `<t>.<body>`), answers 401 to one that does not verify, and hands over the verified
/// bodies.
async fn webhook_receiver() -> (String, tokio::sync::mpsc::UnboundedReceiver<Value>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let tx = tx.clone();
            async move {
                let Some(sig) = headers.get("hush-signature").and_then(|v| v.to_str().ok()) else {
                    return StatusCode::UNAUTHORIZED;
                };
                let Some((t, v1)) = sig
                    .strip_prefix("t=")
                    .and_then(|rest| rest.split_once(",v1="))
                else {
                    return StatusCode::UNAUTHORIZED;
                };
                let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).unwrap();
                mac.update(t.as_bytes());
                mac.update(b".");
                mac.update(&body);
                let given = hex::decode(v1).unwrap_or_default();
                if mac.verify_slice(&given).is_err() {
                    return StatusCode::UNAUTHORIZED;
                }
                tx.send(serde_json::from_slice(&body).unwrap()).unwrap();
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, rx)
}

/// The messages the relay received for `rcpt` (each delivered to exactly that one recipient),
/// once there are `n` of them.
async fn mail_to(relay: &PyRelay, rcpt: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got: Vec<Value> = relay
            .received()
            .into_iter()
            .filter(|m| m["rcpts"].as_array().unwrap().iter().any(|r| r == rcpt))
            .collect();
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} messages reached {rcpt}; the relay has {:?}",
            got.len(),
            relay.recipients()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn filed_id(body: &Value) -> String {
    body["id"].as_str().expect("the request's id").to_string()
}

fn text(m: &Value) -> String {
    m["data"].as_str().unwrap().to_string()
}

/// None of `names` appears in the message, in any case. The Message-ID is left out: it is 32
/// random hex digits, which hold a short name made of the letters a–f (`bea`) by chance about
/// once in a hundred messages.
fn names_none(m: &Value, names: &[&str]) {
    let data = text(m)
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("message-id:"))
        .collect::<Vec<_>>()
        .join("\n")
        .to_lowercase();
    for n in names {
        assert!(
            !data.contains(&n.to_lowercase()),
            "the message names {n}:\n{}",
            text(m)
        );
    }
}

async fn notifications_name_nobody_and_reach_only_whom_they_concern(kind: Backend) {
    service_kit::testing::require_mail_tools();
    let dir = tempfile::tempdir().unwrap();
    let (dbs, made) = Databases::for_test(dir.path(), kind, service_kit::testing::postgres_url)
        .await
        .unwrap();
    let tenant_db = dbs.tenant.clone();
    let relay = PyRelay::start(dir.path());
    let smtp = service_kit::testing::free_port();
    let (hook, mut events) = webhook_receiver().await;
    let secret_file = dir.path().join("webhook.secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let tenant_env = [
        ("HUSH_NOTIFY_WEBHOOK_URL", hook),
        (
            "HUSH_NOTIFY_WEBHOOK_SECRET_FILE",
            secret_file.display().to_string(),
        ),
        ("HUSH_MAIL_LISTEN", format!("127.0.0.1:{smtp}")),
        ("HUSH_MAIL_RELAY", format!("smtp://{}", relay.addr())),
        // aiosmtpd on loopback, without TLS.
        ("HUSH_MAIL_RELAY_TLS", "none".into()),
        ("HUSH_NOTIFY_FROM", "notifications@hush.test.example".into()),
        ("HUSH_NOTIFY_OFFICERS", OFFICERS.into()),
        ("HUSH_NOTIFY_OWNER_INTERVAL_SECS", INTERVAL_SECS.into()),
    ];
    let opts = ClusterOptions {
        tenant_env: tenant_env
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        ..ClusterOptions::routine(dir.path(), dbs, "error")
    };
    let cluster = Cluster::start(Path::new(env!("CARGO_BIN_EXE_hush-dev")), opts)
        .await
        .expect("the cluster starts");
    let http = reqwest::Client::new();
    let membership = |path: &str| format!("{}/membership/v1{path}", cluster.url("membership-api"));
    let token = |sub: &str| cluster.token(sub, IdentityKind::Member, &[]);
    let join = |sub: &'static str, group: String| {
        let (http, url, token) = (
            http.clone(),
            membership(&format!("/groups/{group}/join")),
            token(sub),
        );
        async move {
            let r = http.post(url).bearer_auth(token).send().await.unwrap();
            r.status().as_u16()
        }
    };

    // Arrange: Owen owns an open lobby and an approval group. He joined the lobby, so the
    // tenant knows the address his token carries; Bea joins it too.
    let owners = GroupsClient::new(&cluster.url("control-api"), &token("owen")).unwrap();
    let lobby = owners
        .create_active("Lobby", "General", "open")
        .await
        .unwrap();
    let lobby = lobby["id"].as_str().unwrap().to_string();
    let circle = owners
        .create_active("Parents circle", "General", "approval")
        .await
        .unwrap();
    let circle = circle["id"].as_str().unwrap().to_string();
    assert_eq!(join("owen", lobby.clone()).await, 200);
    assert_eq!(join("bea", lobby.clone()).await, 200);

    // Act: Rita asks to join; Owen hears at once that one request waits, and nothing about her.
    assert_eq!(join("rita", circle.clone()).await, 202);
    let first = mail_to(&relay, "owen@corp.example", 1).await;
    assert_eq!(first[0]["rcpts"], json!(["owen@corp.example"]));
    let data = text(&first[0]);
    assert!(
        data.contains("Subject: 1 request to join Parents circle is waiting"),
        "{data}"
    );
    assert!(
        data.contains("From: Hush <notifications@hush.test.example>"),
        "{data}"
    );
    names_none(&first[0], &["rita"]);

    // Two more ask within the interval: one more mail to Owen, with the count, no names.
    assert_eq!(join("sam", circle.clone()).await, 202);
    assert_eq!(join("tess", circle.clone()).await, 202);
    let both = mail_to(&relay, "owen@corp.example", 2).await;
    let digest = text(&both[1]);
    assert!(
        digest.contains("requests to join Parents circle are waiting"),
        "{digest}"
    );
    for m in &both {
        names_none(m, &["rita", "sam", "tess", "bea"]);
    }

    // Owen approves Rita and denies Sam: each hears their own decision, alone.
    let queue: Value = http
        .get(membership(&format!("/groups/{circle}/requests")))
        .bearer_auth(token("owen"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rid = |sub: &str| {
        queue["requests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["subject"] == sub)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    for (sub, verb) in [("rita", "approve"), ("sam", "deny")] {
        let r = http
            .post(membership(&format!(
                "/groups/{circle}/requests/{}/{verb}",
                rid(sub)
            )))
            .bearer_auth(token("owen"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{sub}");
    }
    let rita = mail_to(&relay, "rita@corp.example", 1).await;
    assert_eq!(rita[0]["rcpts"], json!(["rita@corp.example"]));
    assert!(
        text(&rita[0]).contains("Subject: Your request to join Parents circle was approved"),
        "{}",
        text(&rita[0])
    );
    names_none(&rita[0], &["owen", "sam", "tess", "bea"]);
    let sam = mail_to(&relay, "sam@corp.example", 1).await;
    assert_eq!(sam[0]["rcpts"], json!(["sam@corp.example"]));
    assert!(text(&sam[0]).contains("Subject: Your request to join Parents circle was denied"));
    names_none(&sam[0], &["owen", "rita", "tess", "bea"]);

    // An auditor files a break-glass request: the officers' mailbox hears that one waits, with
    // no group, no auditor, no member.
    let filed = http
        .post(format!(
            "{}/control/v1/break-glass/requests",
            cluster.url("control-api")
        ))
        .bearer_auth(cluster.token("audrey", IdentityKind::Member, &["auditor"]))
        .json(&json!({"group_id": circle, "scope": "full-list", "justification": "Case 2026-114, a court order"}))
        .send()
        .await
        .unwrap();
    let filed_status = filed.status();
    let filed_body: Value = filed.json().await.unwrap();
    assert_eq!(filed_status, 201, "{filed_body}");
    let officers = mail_to(&relay, OFFICERS, 1).await;
    assert_eq!(officers[0]["rcpts"], json!([OFFICERS]));
    assert!(text(&officers[0]).contains("Subject: A break-glass request waits for your approval"));
    names_none(
        &officers[0],
        &[
            "Parents", &circle, "audrey", "owen", "rita", "sam", "tess", "bea", "2026-114",
        ],
    );
    // An officer declines it: the auditor who filed it, alone, hears so, with no group in it.
    let id = filed_id(&filed_body);
    let declined = http
        .post(format!(
            "{}/control/v1/break-glass/requests/{id}/decline",
            cluster.url("control-api")
        ))
        .bearer_auth(cluster.token("pat", IdentityKind::Member, &["privacy-officer"]))
        .json(&json!({"reason": "No court order attached"}))
        .send()
        .await
        .unwrap();
    assert_eq!(declined.status(), 200, "{}", declined.text().await.unwrap());
    let auditor = mail_to(&relay, "audrey@corp.example", 1).await;
    assert_eq!(auditor[0]["rcpts"], json!(["audrey@corp.example"]));
    assert!(text(&auditor[0]).contains("Subject: Your break-glass request was declined"));
    names_none(
        &auditor[0],
        &[
            "Parents",
            &circle,
            "pat",
            "court order",
            "owen",
            "rita",
            "sam",
            "tess",
            "bea",
        ],
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    while super::queued_deliveries(&tenant_db).await > 0 {
        assert!(Instant::now() < deadline, "deliveries still queued");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nobody else received anything: not Bea (who joined the lobby beside Owen), not Tess
    // (still waiting), not Owen for Rita's joining, and every message went to one recipient.
    let mut all: Vec<Vec<String>> = relay
        .received()
        .iter()
        .map(|m| {
            m["rcpts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap().to_string())
                .collect()
        })
        .collect();
    all.sort();
    let one = |s: &str| vec![s.to_string()];
    assert_eq!(
        all,
        vec![
            one("audrey@corp.example"),
            one("owen@corp.example"),
            one("owen@corp.example"),
            one(OFFICERS),
            one("rita@corp.example"),
            one("sam@corp.example"),
        ]
    );

    // The webhook got the role-wide events, verified against the secret, in order, nameless:
    // two owners' notifications and the break-glass filing, and no decision.
    let mut got = Vec::new();
    while got.len() < 3 {
        let event = tokio::time::timeout(Duration::from_secs(30), events.recv())
            .await
            .expect("the webhook's events arrive")
            .unwrap();
        got.push(event);
    }
    assert_eq!(
        got[0],
        json!({"event": "requests-waiting", "group": "Parents circle", "count": 1})
    );
    assert_eq!(got[1]["event"], "requests-waiting");
    assert_eq!(got[1]["group"], "Parents circle");
    assert_eq!(got[2], json!({"event": "breakglass-waiting"}));
    for e in &got {
        let e = e.to_string().to_lowercase();
        for n in ["rita", "sam", "tess", "bea", "owen", "audrey", "@"] {
            assert!(!e.contains(n), "{e} names {n}");
        }
    }
    assert!(
        events.try_recv().is_err(),
        "no decision reaches the webhook"
    );
    cluster.stop().await;
    if let Some(m) = made {
        m.drop_all().await;
    }
}
