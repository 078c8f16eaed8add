//! The service as it runs: served on port 0 with its saga beside it, health, the OpenAPI
//! document, and `ControlClient` against the real endpoint.

use crate::helpers::*;
use control_api::SagaSettings;
use control_client::ControlClient;
use domain::{GroupId, GroupState, ServiceName};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The app served on a loopback port with its saga; stop it with the returned sender.
async fn serve(
    app: &TestApp,
    saga: SagaSettings,
) -> (
    String,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(control_api::run_with_state(
        app.state.clone(),
        saga,
        listener,
        async move {
            let _ = rx.await;
        },
    ));
    (base, tx, handle)
}

async fn state_of(http: &reqwest::Client, base: &str, id: &str, token: &str) -> Value {
    http.get(format!("{base}/control/v1/groups/{id}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["state"]
        .clone()
}

async fn the_saga_retries_while_the_tenant_is_down_and_activates_the_group_when_it_is_back(
    kind: Backend,
) {
    let app = TestApp::spawn_on(kind).await;
    let quick = SagaSettings {
        poll: Duration::from_millis(50),
        lease: Duration::from_secs(10),
        first_retry: Duration::from_millis(40),
        max_retry: Duration::from_millis(200),
    };
    let (base, stop, handle) = serve(&app, quick).await;
    let http = reqwest::Client::new();
    let alice = app.member("alice");
    app.tenant.set_up(false);

    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(
        ready.status().as_u16(),
        503,
        "readyz reports the tenant down"
    );
    let created = http
        .post(format!("{base}/control/v1/groups"))
        .bearer_auth(&alice)
        .json(&json!({"name": "Night Shift", "description": "", "label": "General", "join_policy": "open"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 202);
    let id = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let group_id = GroupId::parse(&id).unwrap();

    // Down: the group stays provisioning while the attempts are recorded (waited for: the
    // saga records each failed attempt before it retries).
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let status = app
            .state
            .store
            .saga_status(group_id)
            .await
            .unwrap()
            .unwrap();
        if status.attempts >= 2 {
            break status;
        }
        assert!(Instant::now() < deadline, "never retried: {status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(state_of(&http, &base, &id, &alice).await, "provisioning");
    assert!(status.attempts >= 2, "retried: {status:?}");
    assert!(status.last_error.unwrap().contains("unavailable"));

    // Back: active soon after, and ready.
    app.tenant.set_up(true);
    let deadline = Instant::now() + Duration::from_secs(10);
    while state_of(&http, &base, &id, &alice).await != "active" {
        assert!(Instant::now() < deadline, "never became active");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(app.tenant.has(group_id));
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("stops promptly")
        .unwrap()
        .unwrap();
    app.stop().await;
}

async fn new_work_wakes_the_saga_without_waiting_for_its_poll(kind: Backend) {
    let app = TestApp::spawn_on(kind).await;
    let lazy = SagaSettings {
        poll: Duration::from_secs(3600),
        ..SagaSettings::default()
    };
    let (base, stop, handle) = serve(&app, lazy).await;
    let http = reqwest::Client::new();
    let alice = app.member("alice");
    // Let the worker drain its first round and go to sleep.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let id = http
        .post(format!("{base}/control/v1/groups"))
        .bearer_auth(&alice)
        .json(&json!({"name": "Prompt", "description": "", "label": "General", "join_policy": "open"}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    while state_of(&http, &base, &id, &alice).await != "active" {
        assert!(Instant::now() < deadline, "the saga was not woken");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Archive wakes it too.
    let archived = http
        .post(format!("{base}/control/v1/groups/{id}/archive"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(archived.status().as_u16(), 202);
    while state_of(&http, &base, &id, &alice).await != "archived" {
        assert!(
            Instant::now() < deadline,
            "the saga was not woken for archiving"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("stops promptly")
        .unwrap()
        .unwrap();
    app.stop().await;
}

async fn control_client_reads_what_the_catalog_holds(kind: Backend) {
    let app = TestApp::spawn_on(kind).await;
    let alice = app.member("alice");
    let a = GroupId::parse(
        &app.active(&alice, "Alpha", "Highly Confidential", "invite")
            .await,
    )
    .unwrap();
    let b = GroupId::parse(&app.create(&alice, "Beta", "General", "open").await).unwrap();
    let (base, stop, handle) = serve(&app, SagaSettings::default()).await;

    let client = ControlClient::new(base.clone(), app.membership.clone()).unwrap();
    let view = client.group(a).await.unwrap().expect("found");
    assert_eq!(view.id, a);
    assert_eq!(view.state, GroupState::Active);
    assert_eq!(view.label.name.as_str(), "Highly Confidential");
    assert_eq!(view.join_policy, domain::JoinPolicy::Invite);
    assert_eq!(
        view.owners.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        ["alice"]
    );
    assert_eq!(view.group_type, domain::GroupType::Mail);
    assert!(view
        .contact_address
        .as_ref()
        .is_some_and(|a| a.as_str().ends_with("@groups.test.example")));
    assert!(client.group(GroupId::new()).await.unwrap().is_none());
    let ids: Vec<GroupId> = (0..1200).map(|_| GroupId::new()).chain([a, b]).collect();
    let mut found: Vec<GroupId> = client
        .groups(&ids)
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.id)
        .collect();
    found.sort();
    let mut want = vec![a, b];
    want.sort();
    assert_eq!(found, want, "long lists are split and answered whole");

    // The catalog version stays put while nothing changes, and moves with any change: first
    // let the saga finish Beta's provisioning, a change of its own.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while client.group(b).await.unwrap().expect("found").state != GroupState::Active {
        assert!(
            std::time::Instant::now() < deadline,
            "Beta never became active"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let v1 = client.catalog_version().await.unwrap();
    assert_eq!(client.catalog_version().await.unwrap(), v1);
    app.create(&alice, "Gamma", "General", "open").await;
    let v2 = client.catalog_version().await.unwrap();
    assert_ne!(v2, v1, "a new group moves the version");

    // Relying parties, over real HTTP as membership-api reaches them.
    let operator = app.token("olga", domain::IdentityKind::Member, &["operator"]);
    let registered = app
        .post(
            "/control/v1/relying-parties",
            &operator,
            json!({"name": "Reports", "audience": "reports"}),
        )
        .await;
    let rp = registered.ok(201)["id"].as_str().unwrap().to_string();
    let v3 = client.catalog_version().await.unwrap();
    assert_ne!(v3, v2, "a new app moves the version");
    let by_audience = control_client::RelyingPartyLookup {
        id: None,
        audience: Some("reports".into()),
    };
    let view = client
        .relying_party(&by_audience)
        .await
        .unwrap()
        .expect("found");
    assert_eq!(view.id.to_string(), rp);
    assert!(view.resources.is_empty());
    let unknown = control_client::RelyingPartyLookup {
        id: Some(uuid::Uuid::new_v4()),
        audience: None,
    };
    assert!(client.relying_party(&unknown).await.unwrap().is_none());
    let bulk = ControlClient::new(base.clone(), app.bulk.clone()).unwrap();
    let err = bulk.relying_party(&by_audience).await.unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");

    // A service control-api does not trust is refused, and says so as a non-retryable error.
    let stranger = auth::ServiceSigner::generate(ServiceName::BulkApi).unwrap();
    let err = ControlClient::new(base.clone(), stranger)
        .unwrap()
        .group(a)
        .await
        .unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert!(err.to_string().contains("401"), "{err}");
    let err = ControlClient::new(
        base.clone(),
        auth::ServiceSigner::generate(ServiceName::BulkApi).unwrap(),
    )
    .unwrap()
    .catalog_version()
    .await
    .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");

    stop.send(()).unwrap();
    handle.await.unwrap().unwrap();
    app.stop().await;
}

/// Every property name anywhere in an OpenAPI document.
fn property_names(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Object(props)) = map.get("properties") {
                out.extend(props.keys().cloned());
            }
            map.values().for_each(|x| property_names(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| property_names(x, out)),
        _ => {}
    }
}

async fn the_openapi_document_covers_every_route_and_every_error_is_problem_json(kind: Backend) {
    let app = TestApp::spawn_on(kind).await;
    let res = app
        .send(http::Method::GET, "/control/v1/openapi.json", None, None)
        .await;
    let doc = res.ok(200);
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["service"]["scheme"], "bearer");

    let paths = doc["paths"].as_object().unwrap();
    let mut ops = Vec::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            ops.push(format!("{method} {path}"));
            let responses = op["responses"].as_object().unwrap();
            // Errors are documented as ranges, one for 4xx and one for 5xx.
            assert!(
                responses.contains_key("4XX"),
                "{method} {path} documents 4XX"
            );
            assert!(
                responses.contains_key("5XX"),
                "{method} {path} documents 5XX"
            );
            for (status, r) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    assert!(
                        r["content"].get("application/problem+json").is_some(),
                        "{method} {path} {status} is problem+json"
                    );
                }
            }
            assert!(
                op.get("security").is_some(),
                "{method} {path} names its security"
            );
        }
    }
    ops.sort();
    assert_eq!(
        ops,
        [
            "delete /control/v1/groups/{id}/bindings/{resource_id}",
            "delete /control/v1/labels/{name}",
            "delete /control/v1/relying-parties/{id}/resources/{resource_id}",
            "get /control/v1/audit",
            "get /control/v1/break-glass/requests",
            "get /control/v1/groups",
            "get /control/v1/groups/{id}",
            "get /control/v1/groups/{id}/bindings",
            "get /control/v1/internal/catalog-version",
            "get /control/v1/label-changes",
            "get /control/v1/labels",
            "get /control/v1/labels/{name}",
            "get /control/v1/mail/dead-letters",
            "get /control/v1/mail/status",
            "get /control/v1/owned-groups",
            "get /control/v1/relabels",
            "get /control/v1/relying-parties",
            "get /control/v1/relying-parties/{id}",
            "get /control/v1/resources",
            "patch /control/v1/groups/{id}",
            "patch /control/v1/relying-parties/{id}",
            "post /control/v1/break-glass/requests",
            "post /control/v1/break-glass/requests/{id}/approve",
            "post /control/v1/break-glass/requests/{id}/decline",
            "post /control/v1/break-glass/requests/{id}/redeem",
            "post /control/v1/groups",
            "post /control/v1/groups/{id}/archive",
            "post /control/v1/groups/{id}/ownership/accept",
            "post /control/v1/groups/{id}/ownership/decline",
            "post /control/v1/identities/offboard",
            "post /control/v1/internal/groups/lookup",
            "post /control/v1/internal/relying-parties/lookup",
            "post /control/v1/label-changes/{id}/approve",
            "post /control/v1/label-changes/{id}/reject",
            "post /control/v1/labels",
            "post /control/v1/relabels/{id}/approve",
            "post /control/v1/relabels/{id}/reject",
            "post /control/v1/relying-parties",
            "post /control/v1/relying-parties/{id}/credential",
            "post /control/v1/relying-parties/{id}/resources",
            "put /control/v1/groups/{id}/bindings/{resource_id}",
            "put /control/v1/groups/{id}/label",
            "put /control/v1/labels/{name}",
        ]
    );

    // INV-1: no member-list shape anywhere in the document, but for the one lawful export
    // INV-1 names: the answer of a redeemed break-glass grant (INV-8), which only the auditor
    // who filed an approved request receives, once.
    let mut rest = doc.clone();
    let redeem = rest["paths"]
        .as_object_mut()
        .unwrap()
        .remove("/control/v1/break-glass/requests/{id}/redeem")
        .expect("the break-glass export is documented");
    assert_eq!(
        redeem["post"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/Answer"
    );
    let schemas = rest["components"]["schemas"].as_object_mut().unwrap();
    schemas.remove("Answer");
    schemas.remove("ListedMember");
    let mut names = Vec::new();
    property_names(&rest, &mut names);
    for bad in [
        "members",
        "member_list",
        "subjects",
        "emails",
        "recipients",
        "member_subjects",
    ] {
        assert!(
            !names.iter().any(|n| n == bad),
            "documents a '{bad}' property"
        );
    }
    assert!(names.iter().any(|n| n == "member_count"));
    app.stop().await;
}

async fn health_answers_and_unknown_routes_are_problem_json(kind: Backend) {
    let app = TestApp::spawn_on(kind).await;
    app.send(http::Method::GET, "/healthz", None, None)
        .await
        .ok(200);
    app.send(http::Method::GET, "/readyz", None, None)
        .await
        .ok(200);
    app.tenant.set_up(false);
    app.send(http::Method::GET, "/readyz", None, None)
        .await
        .problem(503);
    app.send(http::Method::GET, "/control/v1/nope", None, None)
        .await
        .problem(404);
    app.send(
        http::Method::DELETE,
        "/control/v1/groups",
        Some(&app.member("a")),
        None,
    )
    .await
    .problem(405);
    app.stop().await;
}

service_kit::backend_tests!(
    the_saga_retries_while_the_tenant_is_down_and_activates_the_group_when_it_is_back,
    new_work_wakes_the_saga_without_waiting_for_its_poll,
    control_client_reads_what_the_catalog_holds,
    the_openapi_document_covers_every_route_and_every_error_is_problem_json,
    health_answers_and_unknown_routes_are_problem_json,
);
