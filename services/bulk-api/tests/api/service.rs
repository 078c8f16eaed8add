//! Health, readiness and the OpenAPI document.

use crate::helpers::{assert_problem, spawn_app, Tenant};
use http::StatusCode;

#[tokio::test]
async fn healthz_answers_without_a_token() {
    let app = spawn_app(Tenant::Down).await;
    let (status, _, body) = app.get("/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn readyz_needs_the_database_and_the_tenant() {
    let up = spawn_app(Tenant::Up).await;
    let (status, _, body) = up.get("/readyz", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let down = spawn_app(Tenant::Down).await;
    let got = down.get("/readyz", None).await;
    assert_problem(&got, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert!(got.2["detail"].as_str().unwrap().contains("tenant"));
}

#[tokio::test]
async fn unknown_routes_are_404_problem_json_and_no_stubs_exist() {
    let app = spawn_app(Tenant::Up).await;
    let token = app.token("op", &["operator"]);
    for path in [
        "/bulk/v1/nope",
        "/bulk/v1/jobs/00000000-0000-0000-0000-000000000000",
    ] {
        let got = app.get(path, Some(&token)).await;
        assert_problem(&got, StatusCode::NOT_FOUND, "not-found");
    }
}

#[tokio::test]
async fn the_openapi_document_describes_every_answer_of_the_jobs_listing() {
    let app = spawn_app(Tenant::Up).await;
    let (status, _, doc) = app.get("/bulk/v1/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let op = &doc["paths"]["/bulk/v1/jobs"]["get"];
    // Errors are documented as ranges: every 4xx and 5xx is problem+json.
    for code in ["200", "4XX", "5XX"] {
        assert!(
            op["responses"][code].is_object(),
            "status {code} is not documented"
        );
    }
    assert!(op["responses"]["4XX"]["content"]["application/problem+json"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}
