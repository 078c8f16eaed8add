//! Builds control-api around a stand-in tenant, a fresh database on the backend the test names
//! (SQLite, or Postgres on `HUSH_TEST_POSTGRES_URL`: a new database `hush_t_<random hex>`) and the dev
//! issuer, whose JWKS is served on 127.0.0.1:0 exactly as an IdP's would be; then sends it
//! requests with `tower::ServiceExt::oneshot`, or serves it on port 0.

use async_trait::async_trait;
use auth::{DevClaims, DevIssuer, ServiceSigner, ServiceVerifier, Verifier};
use axum::body::Body;
use control_api::{AppState, Saga, SagaSettings, Tenant};
use domain::{CountBucket, GroupId, IdentityKind, ServiceName};
use http::{header, HeaderMap, Method, Request, StatusCode};
use serde_json::{json, Value};
pub use service_kit::db::Backend;
use service_kit::testing::TestDatabase;
use service_kit::HttpArgs;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tenant_api::ProvisionGroup;
use tenant_client::TenantError;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// The audience test tokens are minted for.
pub const AUDIENCE: &str = "hush";
/// The mail domain of test groups.
pub const MAIL_DOMAIN: &str = "groups.test.example";

/// A stand-in for the isolated tenant: up or down at the test's word, remembering which
/// distribution groups exist.
#[derive(Debug)]
pub struct FakeTenant {
    up: AtomicBool,
    groups: Mutex<HashSet<GroupId>>,
    provision_calls: Mutex<Vec<ProvisionGroup>>,
    /// How many offboarding calls reached the tenant.
    pub offboarded: Mutex<u32>,
    /// The label rules applied, in order.
    pub rules: Mutex<Vec<tenant_api::ApplyRule>>,
}

impl Default for FakeTenant {
    fn default() -> Self {
        Self {
            up: AtomicBool::new(true),
            groups: Mutex::new(HashSet::new()),
            provision_calls: Mutex::new(Vec::new()),
            offboarded: Mutex::new(0),
            rules: Mutex::new(Vec::new()),
        }
    }
}

impl FakeTenant {
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }

    pub fn has(&self, id: GroupId) -> bool {
        self.groups.lock().unwrap().contains(&id)
    }

    pub fn provision_calls(&self) -> Vec<ProvisionGroup> {
        self.provision_calls.lock().unwrap().clone()
    }

    fn check(&self) -> Result<(), TenantError> {
        if self.up.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(TenantError::Unavailable("could not connect".into()))
        }
    }
}

#[async_trait]
impl Tenant for FakeTenant {
    async fn provision_group(&self, request: &ProvisionGroup) -> Result<(), TenantError> {
        self.check()?;
        self.provision_calls.lock().unwrap().push(request.clone());
        self.groups.lock().unwrap().insert(request.group_id);
        Ok(())
    }

    async fn deprovision_group(&self, group: GroupId) -> Result<(), TenantError> {
        self.check()?;
        self.groups.lock().unwrap().remove(&group);
        Ok(())
    }

    async fn member_count(&self, group: GroupId) -> Result<CountBucket, TenantError> {
        self.check()?;
        if self.has(group) {
            Ok(CountBucket::of(3))
        } else {
            Err(TenantError::NotFound("no such group".into()))
        }
    }

    async fn offboard(&self, _who: &tenant_api::IdentityRef) -> Result<(), TenantError> {
        self.check()?;
        *self.offboarded.lock().unwrap() += 1;
        Ok(())
    }

    async fn ping(&self) -> Result<(), TenantError> {
        self.check()
    }

    async fn apply_rule(
        &self,
        request: &tenant_api::ApplyRule,
    ) -> Result<tenant_api::RuleApplied, TenantError> {
        self.check()?;
        self.rules.lock().unwrap().push(request.clone());
        Ok(tenant_api::RuleApplied {
            groups: request.groups.len() as u64,
            ended: CountBucket::of(0),
        })
    }
}

/// A status, headers, the body as JSON (`Null` when it is not) and as text.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Answer {
    /// Asserts a problem+json answer with `status`, and returns its detail.
    #[track_caller]
    pub fn problem(&self, status: u16) -> String {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        assert_eq!(
            self.headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json"),
            "body: {}",
            self.text
        );
        assert_eq!(self.body["status"], status, "body: {}", self.text);
        assert!(
            self.body["type"]
                .as_str()
                .unwrap_or("")
                .starts_with("urn:hush:problem:"),
            "body: {}",
            self.text
        );
        self.body["detail"].as_str().unwrap_or("").to_string()
    }

    /// Asserts a success with `status`.
    #[track_caller]
    pub fn ok(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        &self.body
    }
}

/// control-api under test.
pub struct TestApp {
    pub state: AppState,
    pub tenant: Arc<FakeTenant>,
    pub issuer: DevIssuer,
    /// membership-api's and bulk-api's signers, both trusted by the app.
    pub membership: ServiceSigner,
    pub bulk: ServiceSigner,
    jwks: tokio::task::JoinHandle<()>,
    database: TestDatabase,
    dir: tempfile::TempDir,
}

impl TestApp {
    /// The app over a fresh database on `backend`.
    pub async fn spawn_on(backend: Backend) -> Self {
        service_kit::telemetry::init_for_test();
        let dir = tempfile::tempdir().unwrap();
        let issuer = DevIssuer::load_or_create(&dir.path().join("issuer")).unwrap();
        // The issuer's JWKS over real HTTP, as the verifier fetches an IdP's.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let jwks_url = format!(
            "http://{}{}",
            listener.local_addr().unwrap(),
            auth::JWKS_PATH
        );
        let jwks_router: axum::Router = issuer.router();
        let jwks = tokio::spawn(async move {
            let _ = axum::serve(listener, jwks_router).await;
        });
        let verifier = Verifier::new(issuer.jwt_args(AUDIENCE, &jwks_url)).unwrap();

        let membership = ServiceSigner::generate(ServiceName::MembershipApi).unwrap();
        let bulk = ServiceSigner::generate(ServiceName::BulkApi).unwrap();
        let services = ServiceVerifier::new(ServiceName::ControlApi)
            .trust(ServiceName::MembershipApi, membership.public_key_pem())
            .unwrap()
            .trust(ServiceName::BulkApi, bulk.public_key_pem())
            .unwrap();

        let database = TestDatabase::new(backend).await;
        let store = control_api::store::connect(database.url(), 4, control_api::OwnerKey::random())
            .await
            .unwrap();
        store
            .seed_labels(&domain::Label::defaults(), service_kit::db::now_ms())
            .await
            .unwrap();
        let tenant = Arc::new(FakeTenant::default());
        let state = AppState {
            verifier,
            services,
            store,
            tenant: tenant.clone(),
            mail_domain: MAIL_DOMAIN.into(),
            saga_wake: Arc::new(Notify::new()),
            http: HttpArgs::default(),
            scim: None,
            metrics: Default::default(),
            saga_metrics: Default::default(),
        };
        Self {
            state,
            tenant,
            issuer,
            membership,
            bulk,
            jwks,
            database,
            dir,
        }
    }

    /// Stops the JWKS server and removes the database.
    pub async fn stop(self) {
        self.jwks.abort();
        let Self {
            state,
            database,
            dir,
            ..
        } = self;
        drop(state);
        database.remove().await;
        drop(dir);
    }

    /// A user's token.
    pub fn token(&self, sub: &str, kind: IdentityKind, roles: &[&str]) -> String {
        self.issuer.mint(
            &DevClaims::corporate(sub, kind, roles),
            AUDIENCE,
            Duration::from_secs(600),
        )
    }

    /// An employee's token.
    pub fn member(&self, sub: &str) -> String {
        self.token(sub, IdentityKind::Member, &[])
    }

    /// A guest's token.
    pub fn guest(&self, sub: &str) -> String {
        self.token(sub, IdentityKind::Guest, &[])
    }

    /// A label admin's token.
    pub fn label_admin(&self) -> String {
        self.token("lena", IdentityKind::Member, &["label-admin"])
    }

    /// Sends a request with a raw body and content type.
    pub async fn send_raw(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<(&str, String)>,
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let body = match body {
            Some((ctype, text)) => {
                req = req.header(header::CONTENT_TYPE, ctype);
                Body::from(text)
            }
            None => Body::empty(),
        };
        self.answer(req.body(body).unwrap()).await
    }

    /// Sends a JSON request carrying the request id `request_id` (`x-request-id`).
    pub async fn send_with_request_id(
        &self,
        method: Method,
        uri: &str,
        token: &str,
        body: Option<Value>,
        request_id: &str,
    ) -> Answer {
        let mut req = service_kit::testing::request(method, uri, Some(token), body.as_ref());
        req.headers_mut()
            .insert("x-request-id", request_id.parse().expect("a header value"));
        self.answer(req).await
    }

    /// Sends `req` to the app and reads the whole answer.
    async fn answer(&self, req: Request<Body>) -> Answer {
        let router = control_api::router(self.state.clone());
        let reply = service_kit::testing::send(&router, req).await;
        let (status, headers, bytes) = (reply.status, reply.headers, reply.body);
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
            text,
        }
    }

    /// Sends a request, with `body` as JSON when given.
    pub async fn send(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let body = body.map(|b| ("application/json", b.to_string()));
        self.send_raw(method, uri, token, body).await
    }

    pub async fn get(&self, uri: &str, token: &str) -> Answer {
        self.send(Method::GET, uri, Some(token), None).await
    }

    pub async fn post(&self, uri: &str, token: &str, body: Value) -> Answer {
        self.send(Method::POST, uri, Some(token), Some(body)).await
    }

    pub async fn patch(&self, uri: &str, token: &str, body: Value) -> Answer {
        self.send(Method::PATCH, uri, Some(token), Some(body)).await
    }

    /// Creates a group as `owner` (a token) and returns its id; it stays provisioning.
    pub async fn create(&self, owner: &str, name: &str, label: &str, policy: &str) -> String {
        let res = self
            .post(
                "/control/v1/groups",
                owner,
                json!({"name": name, "description": format!("About {name}"), "label": label, "join_policy": policy}),
            )
            .await;
        res.ok(202);
        res.body["id"].as_str().unwrap().to_string()
    }

    /// Runs the saga until nothing is due (what the background worker does).
    pub async fn settle(&self) {
        let saga = Saga::new(
            self.state.store.clone(),
            self.state.tenant.clone(),
            self.state.saga_wake.clone(),
            SagaSettings::default(),
        );
        while saga.step().await.unwrap() {}
    }

    /// Creates a group and lets the saga activate it.
    pub async fn active(&self, owner: &str, name: &str, label: &str, policy: &str) -> String {
        let id = self.create(owner, name, label, policy).await;
        self.settle().await;
        id
    }
}
