//! `Caller` and `ServiceCaller` inside a router: refusals are 401 problem+json with a Bearer
//! challenge, and never echo the token.

use crate::helpers::*;
use auth::{Caller, ServiceCaller, ServiceSigner, ServiceVerifier, Verifier};
use axum::body::Body;
use axum::extract::FromRef;
use axum::routing::get;
use axum::Router;
use domain::ServiceName;
use http::{header, Request, StatusCode};
use tower::ServiceExt as _;

#[derive(Clone)]
struct AppState {
    verifier: Verifier,
    services: ServiceVerifier,
}

impl FromRef<AppState> for Verifier {
    fn from_ref(s: &AppState) -> Self {
        s.verifier.clone()
    }
}

impl FromRef<AppState> for ServiceVerifier {
    fn from_ref(s: &AppState) -> Self {
        s.services.clone()
    }
}

fn app(state: AppState) -> Router {
    Router::new()
        .route("/me", get(|c: Caller| async move { c.subject.to_string() }))
        .route(
            "/maybe",
            get(|c: Option<Caller>| async move {
                c.map_or("anonymous".to_string(), |c| c.subject.to_string())
            }),
        )
        .route(
            "/internal",
            get(|c: ServiceCaller| async move { c.service.to_string() }),
        )
        .with_state(state)
}

struct Answer {
    status: StatusCode,
    content_type: String,
    challenge: Option<String>,
    body: String,
}

async fn call(router: &Router, path: &str, auth: Option<&str>) -> Answer {
    let mut req = Request::get(path);
    if let Some(a) = auth {
        req = req.header(header::AUTHORIZATION, a);
    }
    let res = router
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let content_type = res
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let challenge = res
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    Answer {
        status,
        content_type,
        challenge,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

fn assert_unauthorized(a: &Answer, secret: &str) {
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    assert_eq!(a.content_type, "application/problem+json");
    assert!(
        a.challenge
            .as_deref()
            .is_some_and(|c| c.starts_with("Bearer")),
        "{:?}",
        a.challenge
    );
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["type"], "urn:hush:problem:unauthorized");
    assert_eq!(v["status"], 401);
    assert!(v["detail"].as_str().is_some_and(|d| !d.is_empty()));
    if !secret.is_empty() {
        assert!(!a.body.contains(secret), "the body echoes the token");
    }
}

#[tokio::test]
async fn the_caller_extractor_answers_401_problem_json_with_a_bearer_challenge() {
    let key = EcKey::new("ec-1");
    let server = JwksServer::start(jwks(&[key.jwk()])).await;
    let signer = ServiceSigner::generate(ServiceName::MembershipApi).unwrap();
    let services = ServiceVerifier::new(ServiceName::IsolatedTenant)
        .trust(ServiceName::MembershipApi, signer.public_key_pem())
        .unwrap();
    let router = app(AppState {
        verifier: server.verifier(),
        services,
    });
    let good = key.sign(&claims());
    let expired = key.sign(&claims_with(&serde_json::json!({"exp": now() - 600})));

    let ok = call(&router, "/me", Some(&format!("Bearer {good}"))).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.body, "alice");
    let lower = call(&router, "/me", Some(&format!("bearer {good}"))).await;
    assert_eq!(
        lower.status,
        StatusCode::OK,
        "the scheme is case-insensitive"
    );

    let missing = call(&router, "/me", None).await;
    assert_unauthorized(&missing, "");
    assert_eq!(missing.challenge.as_deref(), Some("Bearer"));

    for (auth, secret) in [
        (format!("Bearer {expired}"), expired.clone()),
        (
            "Bearer garbage.garbage.garbage".to_string(),
            "garbage.garbage.garbage".to_string(),
        ),
        ("Bearer ".to_string(), String::new()),
        (format!("Basic {good}"), good.clone()),
        (
            format!("Bearer {}", signer.mint(ServiceName::IsolatedTenant)),
            String::new(),
        ),
    ] {
        let a = call(&router, "/me", Some(&auth)).await;
        assert_unauthorized(&a, &secret);
        assert_eq!(
            a.challenge.as_deref(),
            Some(r#"Bearer error="invalid_token""#)
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn an_optional_caller_admits_anonymous_requests_but_not_bad_tokens() {
    let key = EcKey::new("ec-1");
    let server = JwksServer::start(jwks(&[key.jwk()])).await;
    let router = app(AppState {
        verifier: server.verifier(),
        services: ServiceVerifier::new(ServiceName::IsolatedTenant),
    });

    let anon = call(&router, "/maybe", None).await;
    assert_eq!(
        (anon.status, anon.body.as_str()),
        (StatusCode::OK, "anonymous")
    );
    let known = call(
        &router,
        "/maybe",
        Some(&format!("Bearer {}", key.sign(&claims()))),
    )
    .await;
    assert_eq!(
        (known.status, known.body.as_str()),
        (StatusCode::OK, "alice")
    );
    let bad = call(&router, "/maybe", Some("Bearer nope")).await;
    assert_unauthorized(&bad, "");
    server.stop().await;
}

#[tokio::test]
async fn the_service_caller_extractor_accepts_service_tokens_only() {
    let key = EcKey::new("ec-1");
    let server = JwksServer::start(jwks(&[key.jwk()])).await;
    let signer = ServiceSigner::generate(ServiceName::BulkApi).unwrap();
    let services = ServiceVerifier::new(ServiceName::IsolatedTenant)
        .trust(ServiceName::BulkApi, signer.public_key_pem())
        .unwrap();
    let router = app(AppState {
        verifier: server.verifier(),
        services,
    });

    let ok = call(
        &router,
        "/internal",
        Some(&format!(
            "Bearer {}",
            signer.mint(ServiceName::IsolatedTenant)
        )),
    )
    .await;
    assert_eq!((ok.status, ok.body.as_str()), (StatusCode::OK, "bulk-api"));

    assert_unauthorized(&call(&router, "/internal", None).await, "");
    let user = key.sign(&claims());
    assert_unauthorized(
        &call(&router, "/internal", Some(&format!("Bearer {user}"))).await,
        &user,
    );
    let misaddressed = signer.mint(ServiceName::ControlApi);
    assert_unauthorized(
        &call(
            &router,
            "/internal",
            Some(&format!("Bearer {misaddressed}")),
        )
        .await,
        &misaddressed,
    );
    server.stop().await;
}
