//! Builds an app around a fresh SQLite store and a dev issuer, and sends it requests.

use auth::{DevClaims, DevIssuer, ServiceSigner};
use axum::Router;
use domain::{IdentityKind, ServiceName};
use http::{header, Method, StatusCode};
use serde_json::Value;
use service_kit::HttpArgs;
use std::path::PathBuf;
use std::time::Duration;
use tenant_api::Pong;
use tenant_client::TenantClient;

/// The audience test tokens are minted for.
pub const AUDIENCE: &str = "hush";

/// A router under test and what it needs to stay alive.
pub struct TestApp {
    pub router: Router,
    pub issuer: DevIssuer,
    dir: PathBuf,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether the tenant stand-in answers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Tenant {
    Up,
    Down,
}

/// An app on a fresh SQLite database with a tenant that is up or down.
pub async fn spawn_app(tenant: Tenant) -> TestApp {
    service_kit::telemetry::init_for_test();
    let dir =
        std::env::temp_dir().join(format!("hush-bulk-test-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let issuer = DevIssuer::load_or_create(&dir.join("issuer")).unwrap();
    let store = bulk_api::store::connect(&format!("sqlite://{}", dir.join("bulk.db").display()), 2)
        .await
        .unwrap();
    let signer = ServiceSigner::generate(ServiceName::BulkApi).unwrap();
    let tenant_url = match tenant {
        Tenant::Up => tenant_stand_in().await,
        Tenant::Down => closed_port_url().await,
    };
    let state = bulk_api::AppState {
        verifier: issuer.verifier(AUDIENCE).unwrap(),
        store,
        tenant: TenantClient::with_timeouts(
            tenant_url,
            signer.clone(),
            Duration::from_secs(1),
            Duration::from_secs(2),
        )
        .unwrap(),
        control: control_client::ControlClient::new(closed_port_url().await, signer).unwrap(),
        key: bulk_api::JobKey::random(),
        settings: bulk_api::JobSettings::default(),
        http: HttpArgs::default(),
        work: Default::default(),
        metrics: Default::default(),
    };
    TestApp {
        router: bulk_api::router(state),
        issuer,
        dir,
    }
}

/// A loopback server that answers the tenant's ping like a healthy tenant. (It checks no token:
/// the tenant's own tests prove it does.)
async fn tenant_stand_in() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let pong = Pong {
        service: ServiceName::BulkApi,
    };
    let app = Router::new().route(
        tenant_api::paths::PING,
        axum::routing::get(move || async move { axum::Json(pong) }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// The URL of a loopback port nothing listens on.
async fn closed_port_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

impl TestApp {
    /// A token for `sub` with `roles`.
    pub fn token(&self, sub: &str, roles: &[&str]) -> String {
        self.issuer.mint(
            &DevClaims {
                sub: sub.to_string(),
                email: None,
                kind: IdentityKind::Member,
                roles: roles.iter().map(|r| r.to_string()).collect(),
            },
            AUDIENCE,
            Duration::from_secs(300),
        )
    }

    /// Sends `POST path` with `body` as `content_type` and `token` as bearer; returns what
    /// [`Self::get`] does.
    pub async fn post_raw(
        &self,
        path: &str,
        token: &str,
        content_type: &str,
        body: &'static str,
    ) -> (StatusCode, String, Value) {
        let req = http::Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, content_type)
            .body(axum::body::Body::from(body))
            .unwrap();
        self.answer(req).await
    }

    /// Sends `GET path`, with `token` as bearer when given; returns the status, the content
    /// type and the body as JSON (`Null` when empty).
    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, String, Value) {
        let req = service_kit::testing::request(Method::GET, path, token, None);
        self.answer(req).await
    }

    async fn answer(&self, req: http::Request<axum::body::Body>) -> (StatusCode, String, Value) {
        let reply = service_kit::testing::send(&self.router, req).await;
        let (status, bytes) = (reply.status, reply.body);
        let ctype = reply
            .headers
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, ctype, body)
    }
}

/// Asserts a problem+json answer of `status` and `type` slug.
pub fn assert_problem(got: &(StatusCode, String, Value), status: StatusCode, slug: &str) {
    let (s, ctype, body) = got;
    assert_eq!(*s, status, "body: {body}");
    assert_eq!(ctype, "application/problem+json");
    assert_eq!(
        body["type"],
        format!("urn:hush:problem:{slug}"),
        "body: {body}"
    );
    assert_eq!(body["status"], status.as_u16());
}
