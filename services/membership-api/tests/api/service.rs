//! Authentication and input checks on every route, health, readiness and the OpenAPI
//! document.

use crate::helpers::{assert_problem, spawn_app, ALICE};
use http::{Method, StatusCode};

const GROUP: &str = "0b6c3c8e-6f9f-4d54-9b1e-3f1d2b0c9a11";

fn routes() -> Vec<(Method, String)> {
    vec![
        (Method::POST, format!("/membership/v1/groups/{GROUP}/join")),
        (Method::POST, format!("/membership/v1/groups/{GROUP}/leave")),
        (Method::GET, format!("/membership/v1/groups/{GROUP}/me")),
        (Method::GET, "/membership/v1/me/groups".to_string()),
    ]
}

#[tokio::test]
async fn every_route_refuses_a_missing_token_with_401_problem_json() {
    let app = spawn_app().await;
    for (method, path) in routes() {
        let got = app.send(method.clone(), &path, None).await;
        assert_problem(&got, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    assert!(app.directory.writes().is_empty());
}

#[tokio::test]
async fn every_route_refuses_a_bad_token_with_401_problem_json() {
    let app = spawn_app().await;
    let stranger = spawn_app().await;
    let forged = stranger.token(ALICE);
    for (method, path) in routes() {
        for token in [forged.as_str(), "not-a-jwt"] {
            let got = app.send(method.clone(), &path, Some(token)).await;
            assert_problem(&got, StatusCode::UNAUTHORIZED, "unauthorized");
        }
    }
}

#[tokio::test]
async fn a_malformed_group_id_is_422_problem_json() {
    let app = spawn_app().await;
    let token = app.token(ALICE);
    for (method, action) in [
        (Method::POST, "join"),
        (Method::POST, "leave"),
        (Method::GET, "me"),
    ] {
        for bad in ["not-a-uuid", "123", "0b6c3c8e-6f9f-4d54-9b1e-3f1d2b0c9a1"] {
            let path = format!("/membership/v1/groups/{bad}/{action}");
            let got = app.send(method.clone(), &path, Some(&token)).await;
            assert_problem(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
            assert_eq!(got.2["detail"], "invalid group id: must be a UUID");
        }
    }
    assert!(app.directory.writes().is_empty());
}

#[tokio::test]
async fn authentication_comes_before_input_checks() {
    let app = spawn_app().await;
    let got = app
        .send(Method::POST, "/membership/v1/groups/not-a-uuid/join", None)
        .await;
    assert_problem(&got, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn wrong_methods_and_unknown_routes_are_problem_json() {
    let app = spawn_app().await;
    let token = app.token(ALICE);
    let got = app
        .send(
            Method::GET,
            &format!("/membership/v1/groups/{GROUP}/join"),
            Some(&token),
        )
        .await;
    assert_problem(&got, StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed");
    // No route lists a group's members.
    let got = app
        .send(
            Method::GET,
            &format!("/membership/v1/groups/{GROUP}/members"),
            Some(&token),
        )
        .await;
    assert_problem(&got, StatusCode::NOT_FOUND, "not-found");
}

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    let (status, _, _) = app.send(Method::GET, "/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = app.send(Method::GET, "/readyz", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    app.directory.set_down(true);
    let got = app.send(Method::GET, "/readyz", None).await;
    assert_problem(&got, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert_eq!(got.2["detail"], "tenant is not answering");
}

#[tokio::test]
async fn the_openapi_document_describes_every_route_and_its_problems() {
    let app = spawn_app().await;
    let (status, _, doc) = app
        .send(Method::GET, "/membership/v1/openapi.json", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let paths = &doc["paths"];
    let expect: [(&str, &str, &[&str]); 4] = [
        (
            "/membership/v1/groups/{id}/join",
            "post",
            &["200", "401", "403", "404", "409", "422", "500", "503"],
        ),
        (
            "/membership/v1/groups/{id}/leave",
            "post",
            &["200", "401", "422", "500", "503"],
        ),
        (
            "/membership/v1/groups/{id}/me",
            "get",
            &["200", "401", "422", "500", "503"],
        ),
        (
            "/membership/v1/me/groups",
            "get",
            &["200", "401", "500", "503"],
        ),
    ];
    for (path, method, codes) in expect {
        let op = &paths[path][method];
        assert!(op.is_object(), "{method} {path} is not documented");
        for code in codes {
            let res = &op["responses"][*code];
            assert!(res.is_object(), "{method} {path}: {code} is not documented");
            if *code != "200" {
                assert!(
                    res["content"]["application/problem+json"].is_object(),
                    "{method} {path}: {code} is not problem+json"
                );
            }
        }
    }
    assert_eq!(
        paths.as_object().unwrap().len(),
        4,
        "only the four routes are public"
    );
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}
