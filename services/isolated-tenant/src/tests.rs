//! The real router over a real SQLite store, driven with `oneshot`: who gets in (INV-9), what
//! each service may do, and that writes answer alike whether or not someone was a member
//! (INV-3).

use super::*;
use auth::ServiceSigner;
use axum::body::{Body, Bytes};
use domain::{GroupId, ServiceName};
use http::{header, HeaderMap, Method, Request, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::{EncodePrivateKey, LineEnding};
use serde_json::{json, Value};
use std::collections::HashMap;
use tower::ServiceExt as _;
use uuid::Uuid;

/// A router with its own SQLite file and one key pair per public service.
struct TestApp {
    router: Router,
    /// Each service's private key (PKCS#8 PEM), to forge tokens the signer would never make.
    private: HashMap<ServiceName, String>,
    signers: HashMap<ServiceName, ServiceSigner>,
    /// The router's batch slots, so a test can take them all.
    batch_gate: crate::batch::BatchGate,
    /// The store's audit chain, to read what a request recorded.
    audit: audit::Db,
    _dir: tempfile::TempDir,
}

fn p256_pem() -> String {
    p256::SecretKey::random(&mut rand::rngs::OsRng)
        .to_pkcs8_pem(LineEnding::LF)
        .unwrap()
        .to_string()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An ES256 token with exactly these claims, signed with `pem`.
fn forge(pem: &str, claims: &Value) -> String {
    let key = EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&Header::new(Algorithm::ES256), claims, &key).unwrap()
}

fn service_claims(iss: &str, aud: &str, iat: u64, exp: u64) -> Value {
    json!({ "iss": iss, "sub": iss, "aud": aud, "iat": iat, "exp": exp, "jti": Uuid::new_v4().to_string() })
}

impl TestApp {
    async fn new() -> Self {
        service_kit::telemetry::init_for_test();
        let dir = tempfile::tempdir().unwrap();
        let keys = Arc::new(SealKeys::parse(&SealKeys::generate_text()).unwrap());
        let url = format!("sqlite://{}", dir.path().join("tenant.db").display());
        let corporate: CorporateDomains = "corp.example".parse().unwrap();
        let store = store::connect(&url, 4, keys.clone(), corporate)
            .await
            .unwrap();
        let break_glass = crate::breakglass::BreakGlass::new(
            &crate::breakglass::BreakGlassArgs::disabled(),
            keys.clone(),
        )
        .unwrap();
        let mail = crate::mail::store::connect(&url, keys.clone())
            .await
            .unwrap();
        let directory =
            crate::directory::Directory::new(crate::sql::Pool::from(store.audit_db()), keys);
        let notifier = crate::notify::Notifier::new(
            &crate::notify::NotifyArgs::default(),
            "tenant.test.example",
            mail.clone(),
        )
        .unwrap();
        let mut verifier = ServiceVerifier::new(ServiceName::IsolatedTenant);
        let (mut private, mut signers) = (HashMap::new(), HashMap::new());
        for s in [
            ServiceName::ControlApi,
            ServiceName::MembershipApi,
            ServiceName::BulkApi,
        ] {
            let pem = p256_pem();
            let signer = ServiceSigner::from_pem(s, &pem).unwrap();
            verifier = verifier.trust(s, signer.public_key_pem()).unwrap();
            private.insert(s, pem);
            signers.insert(s, signer);
        }
        let batch_gate = Arc::new(tokio::sync::Semaphore::new(2));
        let audit = store.audit_db();
        let bulk = crate::batch::BulkLane::start(&store, 2).await.unwrap();
        let router = router(AppState {
            verifier,
            bulk,
            store,
            http: HttpArgs::default(),
            batch_gate: batch_gate.clone(),
            break_glass,
            mail,
            relay_stats: Arc::default(),
            directory,
            notifier,
            metrics: Default::default(),
            mail_readiness: Default::default(),
        });
        Self {
            router,
            batch_gate,
            audit,
            private,
            signers,
            _dir: dir,
        }
    }

    /// A fresh, valid token of `service` for the tenant.
    fn token(&self, service: ServiceName) -> String {
        self.signers[&service].mint(ServiceName::IsolatedTenant)
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let req = service_kit::testing::request(method, path, token, body.as_ref());
        let reply = service_kit::testing::send(&self.router, req).await;
        let (status, mut headers, body) = (reply.status, reply.headers, reply.body);
        // The one header that differs on every answer by design.
        headers.remove(service_kit::http::REQUEST_ID);
        Answer {
            status,
            headers,
            body,
        }
    }

    /// Calls as `service` with a fresh token.
    async fn as_service(
        &self,
        service: ServiceName,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Answer {
        let token = self.token(service);
        self.call(method, path, Some(&token), body).await
    }

    async fn provision(&self, local: &str) -> GroupId {
        let id = GroupId::new();
        let res = self
            .as_service(
                ServiceName::ControlApi,
                Method::POST,
                "/tenant/v1/groups",
                Some(json!({ "group_id": id, "address": format!("{local}@groups.test.example"), "display_name": local })),
            )
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
        id
    }
}

#[derive(Debug, PartialEq)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.text()))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn is_problem(&self, status: StatusCode, slug: &str) {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(
            self.headers[header::CONTENT_TYPE],
            "application/problem+json"
        );
        assert_eq!(
            self.json()["type"],
            format!("urn:hush:problem:{slug}"),
            "{}",
            self.text()
        );
    }
}

const M: ServiceName = ServiceName::MembershipApi;

/// The label named `name` among the defaults (General admits guests, Confidential does not).
fn label(name: &str) -> Value {
    let label = domain::Label::defaults()
        .into_iter()
        .find(|l| l.name.as_str() == name)
        .unwrap();
    serde_json::to_value(label).unwrap()
}

/// An add of `member` to a group labelled General.
fn add(member: Value) -> Value {
    let mut body = serde_json::Map::new();
    body.insert("member".into(), member);
    body.insert("label".into(), label("General"));
    Value::Object(body)
}

/// Alice, present with her token.
fn alice() -> Value {
    add(json!({ "subject": "alice", "email": "alice@corp.example", "kind": "member" }))
}

fn members_path(g: GroupId) -> String {
    format!("/tenant/v1/groups/{g}/members")
}

// ---- INV-9: no service token, no entry ----

#[tokio::test]
async fn a_request_without_a_token_is_401_with_a_bearer_challenge_inv_9() {
    let app = TestApp::new().await;
    let res = app.call(Method::GET, "/tenant/v1/ping", None, None).await;
    res.is_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(res.headers[header::WWW_AUTHENTICATE], "Bearer");
}

#[tokio::test]
async fn an_expired_token_is_401() {
    let app = TestApp::new().await;
    let t = now() - 3_600;
    let token = forge(
        &app.private[&M],
        &service_claims("membership-api", "isolated-tenant", t - 60, t),
    );
    let res = app
        .call(Method::GET, "/tenant/v1/ping", Some(&token), None)
        .await;
    res.is_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(res.json()["detail"], "the token has expired");
}

#[tokio::test]
async fn a_token_for_another_audience_is_401() {
    let app = TestApp::new().await;
    let token = app.signers[&M].mint(ServiceName::ControlApi);
    let res = app
        .call(Method::GET, "/tenant/v1/ping", Some(&token), None)
        .await;
    res.is_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(
        res.json()["detail"],
        "the token is not meant for this service"
    );
}

#[tokio::test]
async fn a_token_signed_with_another_key_is_401() {
    let app = TestApp::new().await;
    let now = now();
    // Claims to be membership-api, signed by a key the tenant does not trust for it.
    let stranger = forge(
        &p256_pem(),
        &service_claims("membership-api", "isolated-tenant", now, now + 60),
    );
    app.call(Method::GET, "/tenant/v1/ping", Some(&stranger), None)
        .await
        .is_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    // And bulk-api's key cannot speak for membership-api.
    let borrowed = forge(
        &app.private[&ServiceName::BulkApi],
        &service_claims("membership-api", "isolated-tenant", now, now + 60),
    );
    app.call(Method::GET, "/tenant/v1/ping", Some(&borrowed), None)
        .await
        .is_problem(StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn a_user_token_is_401_whoever_signed_it_inv_9() {
    let app = TestApp::new().await;
    let now = now();
    let user = json!({
        "iss": "https://idp.corp.example", "sub": "alice", "aud": "isolated-tenant",
        "email": "alice@corp.example", "roles": ["operator"], "iat": now, "exp": now + 600,
    });
    for pem in [p256_pem(), app.private[&M].clone()] {
        let res = app
            .call(
                Method::GET,
                "/tenant/v1/ping",
                Some(&forge(&pem, &user)),
                None,
            )
            .await;
        res.is_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    // The dev issuer of `hush up` is no service either.
    let dev = json!({ "iss": auth::DEV_ISSUER, "sub": "alice", "aud": "isolated-tenant", "iat": now, "exp": now + 600 });
    app.call(
        Method::GET,
        "/tenant/v1/ping",
        Some(&forge(&p256_pem(), &dev)),
        None,
    )
    .await
    .is_problem(StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn malformed_and_unsigned_tokens_are_401() {
    let app = TestApp::new().await;
    let now = now();
    let header = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        br#"{"alg":"none","typ":"JWT"}"#,
    );
    let claims = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        service_claims("membership-api", "isolated-tenant", now, now + 60).to_string(),
    );
    for token in [
        format!("{header}.{claims}."),
        "not-a-token".to_string(),
        String::new(),
    ] {
        let res = app
            .call(Method::GET, "/tenant/v1/ping", Some(&token), None)
            .await;
        res.is_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    }
}

#[tokio::test]
async fn authentication_comes_before_anything_about_the_request() {
    let app = TestApp::new().await;
    // A bad group id and a bad body still get 401 first: nothing is parsed for strangers.
    app.call(
        Method::POST,
        "/tenant/v1/groups/not-a-uuid/members",
        None,
        Some(json!({})),
    )
    .await
    .is_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    // And a service not allowed the operation gets 403 before its body is read.
    app.as_service(
        ServiceName::BulkApi,
        Method::POST,
        "/tenant/v1/membership/check",
        Some(json!({"nonsense": 1})),
    )
    .await
    .is_problem(StatusCode::FORBIDDEN, "forbidden");
}

// ---- per-service permissions ----

#[tokio::test]
async fn each_service_is_refused_what_it_may_not_do() {
    let app = TestApp::new().await;
    let g = app.provision("perm").await;
    let check = json!({ "group_id": g, "subject": "alice" });
    let cases: Vec<(ServiceName, Method, String, Option<Value>, &str)> = vec![
        (
            ServiceName::BulkApi,
            Method::POST,
            "/tenant/v1/membership/check".into(),
            Some(check.clone()),
            "check-member",
        ),
        (
            ServiceName::ControlApi,
            Method::POST,
            members_path(g),
            Some(alice()),
            "add-member",
        ),
        (
            ServiceName::ControlApi,
            Method::POST,
            format!("{}/remove", members_path(g)),
            Some(json!({"subject": "alice"})),
            "remove-member",
        ),
        (
            ServiceName::ControlApi,
            Method::POST,
            "/tenant/v1/membership/check".into(),
            Some(check),
            "check-member",
        ),
        (
            ServiceName::ControlApi,
            Method::POST,
            "/tenant/v1/identities/groups".into(),
            Some(json!({"subject": "alice"})),
            "groups-of",
        ),
        (
            M,
            Method::POST,
            "/tenant/v1/groups".into(),
            Some(
                json!({"group_id": GroupId::new(), "address": "x@groups.test.example", "display_name": "x"}),
            ),
            "provision-group",
        ),
        (
            M,
            Method::DELETE,
            format!("/tenant/v1/groups/{g}"),
            None,
            "deprovision-group",
        ),
        (
            M,
            Method::GET,
            format!("/tenant/v1/groups/{g}/count"),
            None,
            "member-count",
        ),
        (
            ServiceName::BulkApi,
            Method::GET,
            format!("/tenant/v1/groups/{g}/count"),
            None,
            "member-count",
        ),
        (
            ServiceName::BulkApi,
            Method::POST,
            "/tenant/v1/identities/offboard".into(),
            Some(json!({"subject": "alice"})),
            "offboard",
        ),
    ];
    for (service, method, path, body, op) in cases {
        let res = app.as_service(service, method, &path, body).await;
        res.is_problem(StatusCode::FORBIDDEN, "forbidden");
        assert_eq!(res.json()["detail"], format!("{service} may not call {op}"));
    }
}

#[tokio::test]
async fn bulk_api_may_add_and_remove_and_control_api_may_offboard() {
    let app = TestApp::new().await;
    let g = app.provision("bulk").await;
    let by_email = add(json!({ "email": "bulk.person@corp.example" }));
    let res = app
        .as_service(
            ServiceName::BulkApi,
            Method::POST,
            &members_path(g),
            Some(by_email),
        )
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    let res = app
        .as_service(
            ServiceName::BulkApi,
            Method::POST,
            &format!("{}/remove", members_path(g)),
            Some(json!({ "email": "bulk.person@corp.example" })),
        )
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    let res = app
        .as_service(
            ServiceName::ControlApi,
            Method::POST,
            "/tenant/v1/identities/offboard",
            Some(json!({ "email": "bulk.person@corp.example" })),
        )
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
}

#[tokio::test]
async fn every_trusted_service_may_ping_and_is_named_back() {
    let app = TestApp::new().await;
    for s in [ServiceName::ControlApi, M, ServiceName::BulkApi] {
        let res = app
            .as_service(s, Method::GET, "/tenant/v1/ping", None)
            .await;
        assert_eq!(res.status, StatusCode::OK);
        assert_eq!(res.json(), json!({ "service": s.as_str() }));
    }
}

// ---- Audit context ----

/// Sends `body` as `service` with the request id `request_id`; answers the status.
async fn call_with_request_id(
    app: &TestApp,
    service: ServiceName,
    path: &str,
    body: &Value,
    request_id: &str,
) -> StatusCode {
    let mut req =
        service_kit::testing::request(Method::POST, path, Some(&app.token(service)), Some(body));
    req.headers_mut().insert(
        service_kit::http::REQUEST_ID,
        request_id.parse().expect("a header value"),
    );
    service_kit::testing::send(&app.router, req).await.status
}

/// The `Permit` hands the handler the context its events record: the verified service and
/// the request's `x-request-id` (ASCII graphic characters only), down to the append, for a
/// single call and for a batch, which runs on the bulk lane's own runtime.
#[tokio::test]
async fn audit_events_record_the_calling_service_and_the_request_id() {
    let app = TestApp::new().await;
    let g = app.provision("audited").await;
    let status = call_with_request_id(&app, M, &members_path(g), &alice(), "req-42").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let batch = json!({
        "ops": [{ "op": "add", "group_id": g, "subject": "bob", "email": "bob@corp.example" }],
        "labels": [{ "group_id": g, "label": label("General") }],
    });
    let status =
        call_with_request_id(&app, ServiceName::BulkApi, BATCH, &batch, "req-batch-7").await;
    assert_eq!(status, StatusCode::OK);

    let events = app.audit.events_after(0, 100).await.unwrap();
    let recorded = |action: &str| {
        events
            .iter()
            .filter(|e| e.action == action)
            .map(|e| (e.service.as_str(), e.request_id.as_deref()))
            .collect::<Vec<_>>()
    };
    let provisioned = recorded(audit::action::GROUP_PROVISIONED);
    assert_eq!(provisioned.len(), 1);
    assert_eq!(provisioned[0].0, "control-api");
    assert!(
        provisioned[0].1.is_some(),
        "the id the tenant gave the request"
    );
    assert_eq!(
        recorded(audit::action::MEMBERSHIP_ADDED),
        [
            ("membership-api", Some("req-42")),
            ("bulk-api", Some("req-batch-7"))
        ]
    );
}

// ---- INV-3: writes answer alike ----

#[tokio::test]
async fn add_answers_byte_for_byte_alike_whether_or_not_already_a_member_inv_3() {
    let app = TestApp::new().await;
    let g = app.provision("inv3-add").await;
    let first = app
        .as_service(M, Method::POST, &members_path(g), Some(alice()))
        .await;
    let again = app
        .as_service(M, Method::POST, &members_path(g), Some(alice()))
        .await;
    assert_eq!(first.status, StatusCode::NO_CONTENT);
    assert!(first.body.is_empty());
    assert_eq!(first, again);

    // By address, as an owner adds: someone the tenant never saw, someone it knows who is not
    // a member, and a member all get the same answer.
    let h = app.provision("inv3-add-email").await;
    let stranger = app
        .as_service(
            M,
            Method::POST,
            &members_path(h),
            Some(add(json!({ "email": "new@corp.example" }))),
        )
        .await;
    let known_not_member = app
        .as_service(
            M,
            Method::POST,
            &members_path(h),
            Some(add(json!({ "email": "alice@corp.example" }))),
        )
        .await;
    let member = app
        .as_service(
            M,
            Method::POST,
            &members_path(h),
            Some(add(json!({ "email": "alice@corp.example" }))),
        )
        .await;
    assert_eq!(stranger, first);
    assert_eq!(known_not_member, first);
    assert_eq!(member, first);
}

#[tokio::test]
async fn remove_answers_byte_for_byte_alike_whether_or_not_a_member_inv_3() {
    let app = TestApp::new().await;
    let g = app.provision("inv3-remove").await;
    app.as_service(M, Method::POST, &members_path(g), Some(alice()))
        .await;
    let remove = format!("{}/remove", members_path(g));
    let was_member = app
        .as_service(M, Method::POST, &remove, Some(json!({"subject": "alice"})))
        .await;
    let was_not = app
        .as_service(M, Method::POST, &remove, Some(json!({"subject": "alice"})))
        .await;
    let never_seen = app
        .as_service(M, Method::POST, &remove, Some(json!({"subject": "nobody"})))
        .await;
    assert_eq!(was_member.status, StatusCode::NO_CONTENT);
    assert!(was_member.body.is_empty());
    assert_eq!(was_member, was_not);
    assert_eq!(was_member, never_seen);

    // By address too.
    app.as_service(M, Method::POST, &members_path(g), Some(alice()))
        .await;
    for body in [
        json!({"email": "alice@corp.example"}),
        json!({"email": "alice@corp.example"}),
        json!({"email": "nobody@corp.example"}),
        json!({"subject": "nobody", "email": "nobody@corp.example"}),
    ] {
        let res = app.as_service(M, Method::POST, &remove, Some(body)).await;
        assert_eq!(res, was_member);
    }
    let res = app
        .as_service(
            M,
            Method::POST,
            "/tenant/v1/membership/check",
            Some(json!({ "group_id": g, "subject": "alice" })),
        )
        .await;
    assert_eq!(res.json(), json!({ "member": false }), "removed by address");
}

// ---- labels, kinds and addresses ----

#[tokio::test]
async fn the_label_refuses_a_kind_it_does_not_admit_before_anything_is_written() {
    let app = TestApp::new().await;
    let g = app.provision("confidential").await;
    let confidential = |member: Value| json!({ "member": member, "label": label("Confidential") });
    let check = |s: &str| json!({ "group_id": g, "subject": s });

    // A guest by the IdP's word.
    let res = app
        .as_service(
            M,
            Method::POST,
            &members_path(g),
            Some(confidential(
                json!({ "subject": "gus", "email": "gus@corp.example", "kind": "guest" }),
            )),
        )
        .await;
    res.is_problem(StatusCode::FORBIDDEN, "label-refused");
    let detail = res.json()["detail"].as_str().unwrap().to_string();
    assert_eq!(detail, "the label 'Confidential' does not allow guests");
    assert!(
        !detail.contains("gus"),
        "the detail names the kind and the label only"
    );
    // An address outside the corporate domains, added by an owner: inferred guest.
    app.as_service(
        M,
        Method::POST,
        &members_path(g),
        Some(confidential(json!({ "email": "vendor@partner.example" }))),
    )
    .await
    .is_problem(StatusCode::FORBIDDEN, "label-refused");
    // An agent.
    app.as_service(
        M,
        Method::POST,
        &members_path(g),
        Some(confidential(json!({ "subject": "bot", "kind": "agent" }))),
    )
    .await
    .is_problem(StatusCode::FORBIDDEN, "label-refused");
    // Nothing was written: the guest is no member and has no identity that a later, admitted
    // add would find with the refused kind.
    let res = app
        .as_service(
            M,
            Method::POST,
            "/tenant/v1/membership/check",
            Some(check("gus")),
        )
        .await;
    assert_eq!(res.json(), json!({ "member": false }));
    let res = app
        .as_service(
            M,
            Method::POST,
            "/tenant/v1/identities/groups",
            Some(json!({"subject": "gus"})),
        )
        .await;
    assert_eq!(res.json(), json!({ "groups": [] }));

    // A corporate address added by an owner is a member and is admitted.
    let res = app
        .as_service(
            M,
            Method::POST,
            &members_path(g),
            Some(confidential(json!({ "email": "colleague@corp.example" }))),
        )
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());

    // The stored kind wins over inference: gus, stored as a guest under General, is still a
    // guest when an owner adds him by his corporate address to a Confidential group.
    let general = app.provision("general").await;
    app.as_service(
        M,
        Method::POST,
        &members_path(general),
        Some(add(
            json!({ "subject": "gus", "email": "gus@corp.example", "kind": "guest" }),
        )),
    )
    .await;
    app.as_service(
        M,
        Method::POST,
        &members_path(g),
        Some(confidential(json!({ "email": "gus@corp.example" }))),
    )
    .await
    .is_problem(StatusCode::FORBIDDEN, "label-refused");
}

#[tokio::test]
async fn a_person_added_by_address_finds_the_membership_once_they_sign_in() {
    let app = TestApp::new().await;
    let g = app.provision("by-address").await;
    let res = app
        .as_service(
            M,
            Method::POST,
            &members_path(g),
            Some(add(json!({ "email": "Newcomer@Corp.Example" }))),
        )
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    // Not yet theirs by subject: no token has tied the subject to the address.
    let mine = |s: &str| json!({ "subject": s });
    let res = app
        .as_service(
            M,
            Method::POST,
            "/tenant/v1/identities/groups",
            Some(mine("newcomer-sub")),
        )
        .await;
    assert_eq!(res.json(), json!({ "groups": [] }));

    // They join another group with their token: the subject binds to the same identity.
    let other = app.provision("other").await;
    let res = app
        .as_service(
            M,
            Method::POST,
            &members_path(other),
            Some(add(json!({ "subject": "newcomer-sub", "email": "newcomer@corp.example", "kind": "member" }))),
        )
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    let mut both = vec![g.to_string(), other.to_string()];
    both.sort();
    let res = app
        .as_service(
            M,
            Method::POST,
            "/tenant/v1/identities/groups",
            Some(mine("newcomer-sub")),
        )
        .await;
    assert_eq!(res.json(), json!({ "groups": both }));
    // Among named groups only (what an access decision asks): one of the two, and an unknown
    // group that is simply not there; an empty or oversized list is refused.
    let res = app
        .as_service(
            M,
            Method::POST,
            "/tenant/v1/identities/groups",
            Some(json!({"subject": "newcomer-sub", "among": [other.to_string(), GroupId::new().to_string()]})),
        )
        .await;
    assert_eq!(res.json(), json!({ "groups": [other.to_string()] }));
    let too_many: Vec<String> = (0..=tenant_api::MAX_AMONG)
        .map(|_| GroupId::new().to_string())
        .collect();
    for among in [json!([]), json!(too_many)] {
        app.as_service(
            M,
            Method::POST,
            "/tenant/v1/identities/groups",
            Some(json!({"subject": "newcomer-sub", "among": among})),
        )
        .await
        .is_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
    }
    let res = app
        .as_service(
            ServiceName::ControlApi,
            Method::GET,
            &format!("/tenant/v1/groups/{g}/count"),
            None,
        )
        .await;
    assert_eq!(res.json(), json!({ "bucket": "<10" }));
}

#[tokio::test]
async fn a_request_naming_nobody_is_422() {
    let app = TestApp::new().await;
    let g = app.provision("nobody").await;
    for (service, path, body) in [
        (M, members_path(g), add(json!({ "kind": "member" }))),
        (M, members_path(g), add(json!({}))),
        (M, format!("{}/remove", members_path(g)), json!({})),
        (
            ServiceName::ControlApi,
            "/tenant/v1/identities/offboard".to_string(),
            json!({}),
        ),
    ] {
        let res = app
            .as_service(service, Method::POST, &path, Some(body))
            .await;
        res.is_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
        assert_eq!(
            res.json()["detail"],
            "name the person by subject, by email, or both"
        );
    }
    // Checked before the group is looked up.
    app.as_service(
        M,
        Method::POST,
        &members_path(GroupId::new()),
        Some(add(json!({}))),
    )
    .await
    .is_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
}

// ---- offboarding ----

#[tokio::test]
async fn offboarding_removes_a_person_from_every_group_and_answers_alike() {
    let app = TestApp::new().await;
    let (g1, g2) = (
        app.provision("off-one").await,
        app.provision("off-two").await,
    );
    for g in [g1, g2] {
        app.as_service(M, Method::POST, &members_path(g), Some(alice()))
            .await;
    }
    let offboard = |body: Value| {
        app.as_service(
            ServiceName::ControlApi,
            Method::POST,
            "/tenant/v1/identities/offboard",
            Some(body),
        )
    };
    let first = offboard(json!({"subject": "alice"})).await;
    let again = offboard(json!({"subject": "alice"})).await;
    let stranger = offboard(json!({"email": "never@corp.example"})).await;
    assert_eq!(first.status, StatusCode::NO_CONTENT);
    assert!(first.body.is_empty());
    assert_eq!(first, again);
    assert_eq!(first, stranger);
    for g in [g1, g2] {
        let res = app
            .as_service(
                M,
                Method::POST,
                "/tenant/v1/membership/check",
                Some(json!({ "group_id": g, "subject": "alice" })),
            )
            .await;
        assert_eq!(res.json(), json!({ "member": false }));
    }
    let res = app
        .as_service(
            M,
            Method::POST,
            "/tenant/v1/identities/groups",
            Some(json!({"subject": "alice"})),
        )
        .await;
    assert_eq!(res.json(), json!({ "groups": [] }));
}

// ---- membership questions ----

#[tokio::test]
async fn check_and_groups_of_answer_about_one_person() {
    let app = TestApp::new().await;
    let (g1, g2) = (app.provision("one").await, app.provision("two").await);
    for g in [g1, g2] {
        let res = app
            .as_service(M, Method::POST, &members_path(g), Some(alice()))
            .await;
        assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    }
    let check = |g: GroupId, s: &str| json!({ "group_id": g, "subject": s });
    let res = app
        .as_service(
            M,
            Method::POST,
            "/tenant/v1/membership/check",
            Some(check(g1, "alice")),
        )
        .await;
    assert_eq!(res.json(), json!({ "member": true }));
    let res = app
        .as_service(
            M,
            Method::POST,
            "/tenant/v1/membership/check",
            Some(check(g1, "bob")),
        )
        .await;
    assert_eq!(res.json(), json!({ "member": false }));

    let mut both = vec![g1.to_string(), g2.to_string()];
    both.sort();
    let res = app
        .as_service(
            M,
            Method::POST,
            "/tenant/v1/identities/groups",
            Some(json!({"subject": "alice"})),
        )
        .await;
    assert_eq!(res.json(), json!({ "groups": both }));
    let res = app
        .as_service(
            M,
            Method::POST,
            "/tenant/v1/identities/groups",
            Some(json!({"subject": "bob"})),
        )
        .await;
    assert_eq!(res.json(), json!({ "groups": [] }));

    let res = app
        .as_service(
            ServiceName::ControlApi,
            Method::GET,
            &format!("/tenant/v1/groups/{g1}/count"),
            None,
        )
        .await;
    assert_eq!(res.json(), json!({ "bucket": "<10" }));
}

#[tokio::test]
async fn someone_added_by_address_is_found_with_their_tokens_subject_and_address() {
    let app = TestApp::new().await;
    let g = app.provision("by-address").await;
    let res = app
        .as_service(
            M,
            Method::POST,
            &members_path(g),
            Some(add(json!({ "email": "fay@corp.example" }))),
        )
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    let check = |email: Option<&str>| {
        let mut body = json!({ "group_id": g, "subject": "fay" });
        if let Some(e) = email {
            body["email"] = json!(e);
        }
        body
    };
    let groups = |email: Option<&str>| {
        let mut body = json!({ "subject": "fay" });
        if let Some(e) = email {
            body["email"] = json!(e);
        }
        body
    };
    for (email, member) in [
        (Some("fay@corp.example"), true),
        (Some("Fay@Corp.Example"), true),
        (Some("other@corp.example"), false),
        (None, false),
    ] {
        let res = app
            .as_service(
                M,
                Method::POST,
                "/tenant/v1/membership/check",
                Some(check(email)),
            )
            .await;
        assert_eq!(res.json(), json!({ "member": member }), "{email:?}");
        let res = app
            .as_service(
                M,
                Method::POST,
                "/tenant/v1/identities/groups",
                Some(groups(email)),
            )
            .await;
        let want = if member {
            vec![g.to_string()]
        } else {
            Vec::new()
        };
        assert_eq!(res.json(), json!({ "groups": want }), "{email:?}");
    }
    // Leaving with the token's subject and address takes the membership away.
    let res = app
        .as_service(
            M,
            Method::POST,
            &format!("{}/remove", members_path(g)),
            Some(json!({ "subject": "fay", "email": "fay@corp.example" })),
        )
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    let res = app
        .as_service(
            M,
            Method::POST,
            "/tenant/v1/membership/check",
            Some(check(Some("fay@corp.example"))),
        )
        .await;
    assert_eq!(res.json(), json!({ "member": false }));
}

#[tokio::test]
async fn unknown_groups_are_404_and_bad_ids_and_bodies_are_refused() {
    let app = TestApp::new().await;
    let nowhere = GroupId::new();
    app.as_service(M, Method::POST, &members_path(nowhere), Some(alice()))
        .await
        .is_problem(StatusCode::NOT_FOUND, "not-found");
    app.as_service(
        M,
        Method::POST,
        "/tenant/v1/membership/check",
        Some(json!({"group_id": nowhere, "subject": "alice"})),
    )
    .await
    .is_problem(StatusCode::NOT_FOUND, "not-found");
    app.as_service(
        ServiceName::ControlApi,
        Method::GET,
        &format!("/tenant/v1/groups/{nowhere}/count"),
        None,
    )
    .await
    .is_problem(StatusCode::NOT_FOUND, "not-found");
    app.as_service(
        M,
        Method::POST,
        "/tenant/v1/groups/not-a-uuid/members",
        Some(alice()),
    )
    .await
    .is_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");

    let g = app.provision("bodies").await;
    let bad_kind =
        add(json!({ "subject": "alice", "email": "alice@corp.example", "kind": "admin" }));
    let extra = add(
        json!({ "subject": "alice", "email": "alice@corp.example", "kind": "member", "sign_in": true }),
    );
    let extra_outside =
        json!({ "member": { "subject": "alice" }, "label": label("General"), "sign_in": true });
    let no_label = json!({ "member": { "subject": "alice", "kind": "member" } });
    let old_shape = json!({ "subject": "alice", "email": "alice@corp.example", "kind": "member" });
    let bad_email = add(json!({ "email": "not-an-address" }));
    for body in [
        bad_kind,
        extra,
        extra_outside,
        no_label,
        old_shape,
        bad_email,
        add(json!({ "subject": "", "email": "a@b.example", "kind": "guest" })),
    ] {
        app.as_service(M, Method::POST, &members_path(g), Some(body))
            .await
            .is_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
    }
    let token = app.token(M);
    let mut req = Request::post(members_path(g))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{not json"))
        .unwrap();
    let res = app.router.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    req = Request::post(members_path(g))
        .header(header::AUTHORIZATION, format!("Bearer {}", app.token(M)))
        .body(Body::from(alice().to_string()))
        .unwrap();
    let res = app.router.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

// ---- groups ----

#[tokio::test]
async fn provisioning_is_idempotent_and_address_clashes_are_409() {
    let app = TestApp::new().await;
    let id = GroupId::new();
    let body = json!({ "group_id": id, "address": "parents@groups.test.example", "display_name": "Parents" });
    let first = app
        .as_service(
            ServiceName::ControlApi,
            Method::POST,
            "/tenant/v1/groups",
            Some(body.clone()),
        )
        .await;
    let again = app
        .as_service(
            ServiceName::ControlApi,
            Method::POST,
            "/tenant/v1/groups",
            Some(body.clone()),
        )
        .await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first, again);
    assert_eq!(first.json(), body);

    let clash = json!({ "group_id": GroupId::new(), "address": "parents@groups.test.example", "display_name": "Other" });
    app.as_service(
        ServiceName::ControlApi,
        Method::POST,
        "/tenant/v1/groups",
        Some(clash),
    )
    .await
    .is_problem(StatusCode::CONFLICT, "address-taken");
    let moved = json!({ "group_id": id, "address": "elsewhere@groups.test.example", "display_name": "Parents" });
    app.as_service(
        ServiceName::ControlApi,
        Method::POST,
        "/tenant/v1/groups",
        Some(moved),
    )
    .await
    .is_problem(StatusCode::CONFLICT, "address-mismatch");
}

#[tokio::test]
async fn deprovisioning_empties_the_group_and_is_idempotent() {
    let app = TestApp::new().await;
    let g = app.provision("doomed").await;
    app.as_service(M, Method::POST, &members_path(g), Some(alice()))
        .await;
    for _ in 0..2 {
        let res = app
            .as_service(
                ServiceName::ControlApi,
                Method::DELETE,
                &format!("/tenant/v1/groups/{g}"),
                None,
            )
            .await;
        assert_eq!(res.status, StatusCode::NO_CONTENT);
    }
    let res = app
        .as_service(
            M,
            Method::POST,
            "/tenant/v1/identities/groups",
            Some(json!({"subject": "alice"})),
        )
        .await;
    assert_eq!(res.json(), json!({ "groups": [] }));
}

// ---- the open routes and the document ----

#[tokio::test]
async fn health_routes_are_open() {
    let app = TestApp::new().await;
    assert_eq!(
        app.call(Method::GET, "/healthz", None, None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.call(Method::GET, "/readyz", None, None).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_openapi_document_needs_a_token_and_documents_every_route() {
    let app = TestApp::new().await;
    app.call(Method::GET, "/tenant/v1/openapi.json", None, None)
        .await
        .is_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    let doc = app
        .as_service(
            ServiceName::BulkApi,
            Method::GET,
            "/tenant/v1/openapi.json",
            None,
        )
        .await;
    assert_eq!(doc.status, StatusCode::OK);
    let doc = doc.json();
    use tenant_api::paths;
    let expected = [
        (paths::PING, "get"),
        (paths::GROUPS, "post"),
        (paths::GROUP, "delete"),
        (paths::COUNT, "get"),
        (paths::MEMBERS, "post"),
        (paths::MEMBERS_REMOVE, "post"),
        (paths::MEMBERSHIP_CHECK, "post"),
        (paths::GROUPS_OF, "post"),
        (paths::OFFBOARD, "post"),
        (paths::OPENAPI, "get"),
        (paths::GROUPS_BATCH, "post"),
        (tenant_api::breakglass::paths::REQUESTS, "post"),
        (tenant_api::breakglass::paths::REQUESTS, "get"),
        ("/tenant/v1/break-glass/requests/{id}/approve", "post"),
        ("/tenant/v1/break-glass/requests/{id}/decline", "post"),
        ("/tenant/v1/break-glass/requests/{id}/redeem", "post"),
        (paths::MAIL_COUNTS, "get"),
        (paths::MAIL_DEAD_LETTERS, "get"),
        (paths::APPLY_RULE, "post"),
        (paths::TOKEN_CHECK, "post"),
        (tenant_api::directory::paths::USERS, "post"),
        (tenant_api::directory::paths::USER, "get"),
        (tenant_api::directory::paths::USER, "put"),
        (tenant_api::directory::paths::USER, "delete"),
        (tenant_api::directory::paths::FIND, "post"),
        (paths::NOTIFICATIONS, "post"),
    ];
    let documented: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p.as_object().unwrap().len())
        .sum();
    assert_eq!(
        documented,
        expected.len(),
        "every route is documented, and nothing else"
    );
    for (path, method) in expected {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not documented");
        // Errors are documented as ranges; a 401 or 403 is one of the 4XX.
        assert!(
            op["responses"]["4XX"]["description"]
                .as_str()
                .is_some_and(|d| d.contains("`401`") && d.contains("`403`")),
            "{method} {path} does not document 401 and 403"
        );
    }
    assert!(doc["components"]["securitySchemes"]["service_token"].is_object());
    for schema in [
        "AddMember",
        "MemberRef",
        "IdentityRef",
        "Label",
        "LabelPolicy",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "{schema} is not described"
        );
    }
    let add = &doc["paths"][paths::MEMBERS]["post"];
    assert_eq!(
        add["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/AddMember"
    );
    assert!(add["responses"]["4XX"]["description"]
        .as_str()
        .unwrap()
        .contains("label-refused"));
    let text = doc.to_string();
    assert!(
        !text.contains("/members\":{\"get"),
        "no route lists members"
    );
}

// ---- Batches (bulk-api) ----

const BATCH: &str = "/tenant/v1/groups/batch";

async fn is_member(app: &TestApp, g: GroupId, subject: &str) -> bool {
    let body = json!({ "group_id": g, "subject": subject });
    let res = app
        .as_service(M, Method::POST, "/tenant/v1/membership/check", Some(body))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    res.json()["member"].as_bool().unwrap()
}

#[tokio::test]
async fn a_batch_applies_in_one_call_and_counts_by_reason_inv_3() {
    let app = TestApp::new().await;
    let general = app.provision("batch-general").await;
    let confidential = app.provision("batch-confidential").await;
    let unknown = GroupId::new();
    // 1,000 adds: a body far larger than the common 64 KiB limit.
    let mut ops: Vec<Value> = (0..1000)
        .map(|i| json!({ "op": "add", "group_id": general, "subject": format!("person-{i}"), "email": format!("person-{i}@corp.example") }))
        .collect();
    ops.push(json!({ "op": "add", "group_id": confidential, "email": "gina@partner.example" }));
    ops.push(json!({ "op": "add", "group_id": confidential, "subject": "carol", "email": "carol@corp.example" }));
    ops.push(json!({ "op": "add", "group_id": unknown, "subject": "dave" }));
    ops.push(json!({ "op": "remove", "group_id": general, "subject": "person-7" }));
    ops.push(json!({ "op": "remove", "group_id": general, "subject": "never-seen" }));
    ops.push(json!({ "op": "add", "group_id": general }));
    let body = json!({
        "ops": ops,
        "labels": [
            { "group_id": general, "label": label("General") },
            { "group_id": confidential, "label": label("Confidential") },
        ],
    });
    assert!(body.to_string().len() > 64 * 1024);
    let first = app
        .as_service(
            ServiceName::BulkApi,
            Method::POST,
            BATCH,
            Some(body.clone()),
        )
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    assert_eq!(
        first.json(),
        json!({ "applied": 1003, "unknown_identity": 1, "label_refused": 1, "unknown_group": 1 })
    );
    assert!(is_member(&app, general, "person-0").await);
    assert!(!is_member(&app, general, "person-7").await);
    assert!(is_member(&app, confidential, "carol").await);

    // Replayed (a chunk retried after a crash): the same counts, nothing changes.
    let again = app
        .as_service(ServiceName::BulkApi, Method::POST, BATCH, Some(body))
        .await;
    assert_eq!(again.body, first.body);
    assert!(is_member(&app, general, "person-999").await);
    assert!(!is_member(&app, general, "person-7").await);
}

#[tokio::test]
async fn only_bulk_api_may_apply_batches() {
    let app = TestApp::new().await;
    let body = json!({ "ops": [], "labels": [] });
    for s in [ServiceName::ControlApi, M] {
        app.as_service(s, Method::POST, BATCH, Some(body.clone()))
            .await
            .is_problem(StatusCode::FORBIDDEN, "forbidden");
    }
    app.call(Method::POST, BATCH, None, Some(body))
        .await
        .is_problem(StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn a_saturated_tenant_answers_503_with_retry_after_and_single_calls_still_work() {
    let app = TestApp::new().await;
    let g = app.provision("batch-busy").await;
    let held = app.batch_gate.clone().acquire_many_owned(2).await.unwrap();
    let body = json!({ "ops": [{ "op": "add", "group_id": g, "subject": "erin", "email": "erin@corp.example" }], "labels": [{ "group_id": g, "label": label("General") }] });
    let res = app
        .as_service(
            ServiceName::BulkApi,
            Method::POST,
            BATCH,
            Some(body.clone()),
        )
        .await;
    res.is_problem(StatusCode::SERVICE_UNAVAILABLE, "busy");
    assert_eq!(res.headers[header::RETRY_AFTER], "1");
    // Routine membership calls do not wait for batch slots.
    let res = app
        .as_service(M, Method::POST, &members_path(g), Some(alice()))
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    drop(held);
    let res = app
        .as_service(ServiceName::BulkApi, Method::POST, BATCH, Some(body))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert!(is_member(&app, g, "erin").await);
}

#[tokio::test]
async fn mail_counts_are_counts_only_and_for_control_api_only() {
    let app = TestApp::new().await;
    let control = app.token(ServiceName::ControlApi);
    let res = app
        .call(Method::GET, "/tenant/v1/mail/counts", Some(&control), None)
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let mut body = res.json();
    // The relay's health: since when, and a cause word only while failing; no volume.
    let relay = body
        .as_object_mut()
        .unwrap()
        .remove("relay")
        .expect("relay");
    assert_eq!(
        relay.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["since_ms"],
        "{relay}"
    );
    // Messages and totals; nothing that counts recipients or relay transactions (INV-4).
    let mut fields: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "auto_replies_consumed",
            "bad_addresses",
            "bounces_consumed",
            "dead_messages",
            "delivered_messages",
            "queued_messages",
            "refused_messages"
        ],
        "{body}"
    );
    assert!(
        body.as_object().unwrap().values().all(Value::is_i64),
        "{body}"
    );
    for s in [ServiceName::MembershipApi, ServiceName::BulkApi] {
        let token = app.token(s);
        for path in ["/tenant/v1/mail/counts", "/tenant/v1/mail/dead-letters"] {
            let res = app.call(Method::GET, path, Some(&token), None).await;
            assert_eq!(res.status, StatusCode::FORBIDDEN, "{s} {path}");
        }
    }
    let res = app
        .call(
            Method::GET,
            "/tenant/v1/mail/dead-letters",
            Some(&control),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.json(), json!({"dead_letters": []}));
}

/// Only membership-api asks for notifications; everyone else is refused before the body is
/// read, with problem+json, and nothing is queued.
#[tokio::test]
async fn only_membership_api_may_ask_for_a_notification() {
    let app = TestApp::new().await;
    let g = app.provision("notified").await;
    let body = json!({"template": "requests-waiting", "group_id": g, "count": 2});
    for service in [ServiceName::ControlApi, ServiceName::BulkApi] {
        let res = app
            .as_service(
                service,
                Method::POST,
                "/tenant/v1/notifications",
                Some(body.clone()),
            )
            .await;
        res.is_problem(StatusCode::FORBIDDEN, "forbidden");
        assert_eq!(
            res.json()["detail"],
            format!("{service} may not call notify")
        );
    }
    let res = app
        .call(
            Method::POST,
            "/tenant/v1/notifications",
            None,
            Some(body.clone()),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    let res = app
        .as_service(M, Method::POST, "/tenant/v1/notifications", Some(body))
        .await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text());
    assert!(res.body.is_empty());
}

/// No free text: a template outside the closed set, a field a template does not have (a name
/// to smuggle in), a count out of bounds or a bad address is 422 problem+json.
#[tokio::test]
async fn unknown_templates_extra_fields_and_bad_values_are_422() {
    let app = TestApp::new().await;
    let g = app.provision("strict").await;
    for body in [
        json!({"template": "free-text", "group_id": g, "text": "alice joined"}),
        json!({"template": "requests-waiting", "group_id": g}),
        json!({"template": "requests-waiting", "group_id": g, "count": 0}),
        json!({"template": "requests-waiting", "group_id": g, "count": 100_001}),
        json!({"template": "requests-waiting", "group_id": g, "count": 1, "requester": "alice"}),
        json!({"template": "request-decided", "group_id": g, "outcome": "maybe", "to": "a@corp.example"}),
        json!({"template": "request-decided", "group_id": g, "outcome": "approved", "to": "not an address"}),
        json!({"group_id": g, "count": 1}),
    ] {
        app.as_service(
            M,
            Method::POST,
            "/tenant/v1/notifications",
            Some(body.clone()),
        )
        .await
        .is_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
    }
}
