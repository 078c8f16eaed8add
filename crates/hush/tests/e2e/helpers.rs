//! Spawns the real stack for a test: the four services on their own loopback ports with real
//! HTTP between them, each with a fresh database on the backend the test names (SQLite, or
//! Postgres on HUSH_TEST_POSTGRES_URL: one new database per service per test).

use hush::stack::{Databases, Part, PostgresDatabases, Stack, StackConfig};
use reqwest::{header::HeaderMap, Method, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

pub use domain::IdentityKind;
pub use service_kit::db::Backend;

/// A running stack plus what the test needs to talk to it.
pub struct App {
    pub stack: Stack,
    pub urls: hush::stack::Urls,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
    pg: Option<PostgresDatabases>,
}

/// A response reduced to what tests assert on.
#[derive(Debug)]
pub struct Res {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Res {
    /// The `content-type` header.
    pub fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Asserts a problem+json error with this status.
    #[track_caller]
    pub fn assert_problem(&self, status: u16) -> &Self {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        assert_eq!(
            self.content_type(),
            "application/problem+json",
            "body: {}",
            self.text
        );
        assert_eq!(self.body["status"], status);
        assert!(self.body["type"]
            .as_str()
            .unwrap_or("")
            .starts_with("urn:hush:problem:"));
        self
    }
}

impl App {
    /// Starts a fresh stack on `backend`.
    pub async fn spawn_on(backend: Backend) -> App {
        Self::spawn_with(backend, |_, _| {}).await
    }

    /// Starts a fresh stack on `backend` with SCIM provisioning on; answers the app and the
    /// provisioning client's token.
    pub async fn spawn_with_scim(backend: Backend) -> (App, String) {
        Self::spawn_with_scim_rate(backend, 50).await
    }

    /// As [`Self::spawn_with_scim`], with at most `rate` SCIM requests a second.
    pub async fn spawn_with_scim_rate(backend: Backend, rate: u32) -> (App, String) {
        let token = format!("scim-test-token-{}", uuid::Uuid::new_v4().simple());
        let t = token.clone();
        let app = Self::spawn_with(backend, move |dir, cfg| {
            let file = dir.join("scim.token");
            std::fs::write(&file, &t).expect("token file");
            cfg.scim.scim_token_file = Some(file);
            cfg.scim.scim_rate = rate;
        })
        .await;
        (app, token)
    }

    /// Starts a fresh stack on `backend`, `configure` adjusting its configuration.
    pub async fn spawn_with(
        backend: Backend,
        configure: impl FnOnce(&std::path::Path, &mut StackConfig),
    ) -> App {
        service_kit::telemetry::init_for_test();
        let dir = tempfile::tempdir().expect("temp dir");
        let (dbs, pg) =
            Databases::for_test(dir.path(), backend, service_kit::testing::postgres_url)
                .await
                .expect("fresh test databases");
        Self::start(dir, dbs, pg, configure).await
    }

    /// Starts a fresh stack on the Postgres server `admin_url` names (one new database per
    /// service, dropped by [`Self::stop`]), whatever HUSH_TEST_POSTGRES_URL says: for tests
    /// that run their own server.
    pub async fn spawn_on_postgres_at(admin_url: &str) -> App {
        service_kit::telemetry::init_for_test();
        let dir = tempfile::tempdir().expect("temp dir");
        let (dbs, pg) = Databases::fresh(dir.path(), Some(admin_url), "hush_t")
            .await
            .expect("fresh databases on the given server");
        Self::start(dir, dbs, pg, |_, _| {}).await
    }

    /// Starts the stack on `dbs`, its keys and files in `dir`.
    async fn start(
        dir: tempfile::TempDir,
        dbs: Databases,
        pg: Option<PostgresDatabases>,
        configure: impl FnOnce(&std::path::Path, &mut StackConfig),
    ) -> App {
        let mut config = StackConfig::for_tests(dir.path(), dbs);
        configure(dir.path(), &mut config);
        let stack = Stack::start(config).await.expect("stack starts");
        let urls = stack.urls();
        App {
            stack,
            urls,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            dir,
            pg,
        }
    }

    /// Stops the stack and drops its Postgres databases.
    pub async fn stop(self) {
        self.stack.stop().await.expect("stack stops cleanly");
        if let Some(pg) = self.pg {
            pg.drop_all().await;
        }
    }

    /// A token from the dev issuer.
    pub fn token(&self, sub: &str, kind: IdentityKind, roles: &[&str]) -> String {
        self.stack.issuer().mint(
            &auth::DevClaims::corporate(sub, kind, roles),
            "hush",
            Duration::from_secs(600),
        )
    }

    /// A member-kind user's token.
    /// The references the tenant's membership rows carry for `group` (one per seal key): what
    /// a test reading the tenant's tables directly finds a group's rows by, as the tenant does.
    pub fn group_refs(&self, group: &str) -> Vec<uuid::Uuid> {
        let text = std::fs::read_to_string(self.stack.keys_dir().join("tenant-seal.keys"))
            .expect("the tenant's seal keys");
        let keys = isolated_tenant::SealKeys::parse(&text).expect("seal keys parse");
        keys.group_refs(domain::GroupId::from(uuid::Uuid::parse_str(group).unwrap()))
    }

    pub fn member(&self, sub: &str) -> String {
        self.token(sub, IdentityKind::Member, &[])
    }

    /// Sends a request; `body` is sent as JSON when given.
    pub async fn call(
        &self,
        method: Method,
        url: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Res {
        let mut req = self.http.request(method, url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request reaches the service");
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Res {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn get(&self, url: &str, token: &str) -> Res {
        self.call(Method::GET, url, Some(token), None).await
    }

    pub async fn post(&self, url: &str, token: &str, body: Value) -> Res {
        self.call(Method::POST, url, Some(token), Some(body)).await
    }

    /// `token`'s holder joins (or asks to join) `group`.
    pub async fn join(&self, token: &str, group: &str) -> Res {
        self.post(
            &self.membership(&format!("/groups/{group}/join")),
            token,
            json!({}),
        )
        .await
    }

    pub fn control(&self, path: &str) -> String {
        format!("{}/control/v1{path}", self.urls.control)
    }

    pub fn membership(&self, path: &str) -> String {
        format!("{}/membership/v1{path}", self.urls.membership)
    }

    /// Creates a group as `owner` and waits until the tenant has provisioned it.
    pub async fn active_group(&self, owner: &str, name: &str, label: &str, policy: &str) -> String {
        self.active_group_of_type(owner, name, label, policy, "mail")
            .await
    }

    /// [`Self::active_group`] of a type: `mail` or `security`.
    pub async fn active_group_of_type(
        &self,
        owner: &str,
        name: &str,
        label: &str,
        policy: &str,
        group_type: &str,
    ) -> String {
        let res = self
            .post(
                &self.control("/groups"),
                owner,
                json!({"name": name, "description": format!("{name} group"), "label": label, "join_policy": policy, "type": group_type}),
            )
            .await;
        assert_eq!(res.status, StatusCode::ACCEPTED, "create: {}", res.text);
        let id = res.body["id"].as_str().expect("group id").to_string();
        self.wait_state(owner, &id, "active", Duration::from_secs(20))
            .await;
        id
    }

    /// Polls the group until it reaches `state`.
    pub async fn wait_state(&self, owner: &str, id: &str, state: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let res = self
                .get(&self.control(&format!("/groups/{id}")), owner)
                .await;
            if res.body["state"] == state {
                return res.body;
            }
            assert!(
                Instant::now() < deadline,
                "group never became {state}: {}",
                res.text
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the provisioning saga has recorded `attempts` failed attempts for group `id`
    /// (read from control-api's database: no public surface shows them).
    pub async fn wait_saga_attempts(&self, id: &str, attempts: u32, limit: Duration) {
        let key = std::fs::read_to_string(self.stack.keys_dir().join("control-seal.key")).unwrap();
        let key = control_api::OwnerKey::parse(&key).unwrap();
        let store = control_api::store::connect(&self.stack.databases().control, 1, key)
            .await
            .expect("control-api's database");
        let group = domain::GroupId::parse(id).unwrap();
        let deadline = Instant::now() + limit;
        loop {
            let status = store.saga_status(group).await.unwrap();
            if status.as_ref().is_some_and(|s| s.attempts >= attempts) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the saga never recorded {attempts} failed attempt(s): {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops or starts one part of the stack.
    pub async fn stop_part(&mut self, p: Part) {
        self.stack.stop_part(p).await.expect("part stops");
    }

    pub async fn start_part(&mut self, p: Part) {
        self.stack.start_part(p).await.expect("part starts");
    }
}

impl App {
    /// A member-kind token carrying extra claims (for claim rules), signed by the dev issuer.
    pub fn token_with_claims(&self, sub: &str, extra: &Value) -> String {
        let pem = std::fs::read(self.dir.path().join("dev-issuer/dev-issuer.key.pem"))
            .expect("dev issuer key");
        let key = jsonwebtoken::EncodingKey::from_ec_pem(&pem).unwrap();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.stack.issuer().kid().to_string());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut claims = json!({"sub": sub, "email": format!("{sub}@corp.example"), "hush_kind": "member",
            "iss": auth::DEV_ISSUER, "aud": "hush", "iat": now, "nbf": now, "exp": now + 600});
        if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    }

    /// An operator's token.
    pub fn operator(&self) -> String {
        self.token("otto", IdentityKind::Member, &["operator"])
    }

    /// Whether the holder of `token` is in `group`, as they would ask.
    pub async fn is_member(&self, token: &str, group: &str) -> bool {
        let res = self
            .get(&self.membership(&format!("/groups/{group}/me")), token)
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text);
        res.body["member"] == true
    }
}
