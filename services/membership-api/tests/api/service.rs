//! Authentication and input checks on every route, health, readiness and the OpenAPI
//! document.

use crate::helpers::{assert_problem, spawn_app, ALICE};
use http::{Method, StatusCode};

const GROUP: &str = "0b6c3c8e-6f9f-4d54-9b1e-3f1d2b0c9a11";
const ITEM: &str = "5a0e2d3c-0c4f-4b8e-9a51-2f7d0b1c9e42";

fn routes() -> Vec<(Method, String)> {
    let g = format!("/membership/v1/groups/{GROUP}");
    vec![
        (Method::POST, format!("{g}/join")),
        (Method::POST, format!("{g}/leave")),
        (Method::GET, format!("{g}/me")),
        (Method::GET, "/membership/v1/me/groups".to_string()),
        (Method::GET, "/membership/v1/me/requests".to_string()),
        (Method::DELETE, format!("/membership/v1/me/requests/{ITEM}")),
        (Method::GET, format!("{g}/requests")),
        (Method::POST, format!("{g}/requests/{ITEM}/approve")),
        (Method::POST, format!("{g}/requests/{ITEM}/deny")),
        (Method::GET, format!("{g}/claim-rules")),
        (Method::PUT, format!("{g}/claim-rules")),
        (Method::POST, format!("{g}/invites")),
        (Method::GET, format!("{g}/invites")),
        (Method::DELETE, format!("{g}/invites/{ITEM}")),
        (Method::POST, "/membership/v1/invites/redeem".to_string()),
        (Method::POST, format!("{g}/members")),
        (Method::DELETE, format!("{g}/members/alice")),
        (Method::POST, format!("{g}/members/remove")),
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
        (Method::GET, "requests"),
        (Method::GET, "claim-rules"),
        (Method::GET, "invites"),
        (Method::DELETE, "members/alice"),
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
    let got = app
        .send(Method::GET, "/membership/v1/nothing-here", Some(&token))
        .await;
    assert_problem(&got, StatusCode::NOT_FOUND, "not-found");
}

#[tokio::test]
async fn inv_1_no_route_lists_a_groups_members() {
    let app = spawn_app().await;
    let token = app.token(ALICE);
    // Owners may add and remove; nobody may read.
    for path in [
        format!("/membership/v1/groups/{GROUP}/members"),
        format!("/membership/v1/groups/{GROUP}/members/alice"),
        format!("/membership/v1/groups/{GROUP}/members/remove"),
    ] {
        let got = app.send(Method::GET, &path, Some(&token)).await;
        assert_problem(&got, StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed");
    }
    // And the OpenAPI document has no GET under .../members.
    let (_, _, doc) = app
        .send(Method::GET, "/membership/v1/openapi.json", None)
        .await;
    for (path, item) in doc["paths"].as_object().unwrap() {
        if path.split('/').any(|segment| segment == "members") {
            assert!(item.get("get").is_none(), "GET {path} is documented");
        }
    }
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
    const G: &str = "/membership/v1/groups/{id}";
    let expect: Vec<(String, &str, &[&str])> = vec![
        (
            format!("{G}/join"),
            "post",
            &["200", "202", "409", "4XX", "5XX"],
        ),
        (format!("{G}/leave"), "post", &["200", "4XX", "5XX"]),
        (format!("{G}/me"), "get", &["200", "4XX", "5XX"]),
        (
            "/membership/v1/me/groups".into(),
            "get",
            &["200", "4XX", "5XX"],
        ),
        (
            "/membership/v1/me/requests".into(),
            "get",
            &["200", "4XX", "5XX"],
        ),
        (
            "/membership/v1/me/requests/{rid}".into(),
            "delete",
            &["204", "4XX", "5XX"],
        ),
        (format!("{G}/requests"), "get", &["200", "4XX", "5XX"]),
        (
            format!("{G}/requests/{{rid}}/approve"),
            "post",
            &["200", "409", "4XX", "5XX"],
        ),
        (
            format!("{G}/requests/{{rid}}/deny"),
            "post",
            &["200", "4XX", "5XX"],
        ),
        (format!("{G}/claim-rules"), "get", &["200", "4XX", "5XX"]),
        (format!("{G}/claim-rules"), "put", &["200", "4XX", "5XX"]),
        (
            format!("{G}/invites"),
            "post",
            &["201", "409", "4XX", "5XX"],
        ),
        (format!("{G}/invites"), "get", &["200", "4XX", "5XX"]),
        (
            format!("{G}/invites/{{iid}}"),
            "delete",
            &["204", "4XX", "5XX"],
        ),
        (
            "/membership/v1/invites/redeem".into(),
            "post",
            &["200", "409", "4XX", "5XX"],
        ),
        (
            format!("{G}/members"),
            "post",
            &["202", "409", "4XX", "5XX"],
        ),
        (
            format!("{G}/members/{{subject}}"),
            "delete",
            &["202", "4XX", "5XX"],
        ),
        (
            format!("{G}/members/remove"),
            "post",
            &["202", "4XX", "5XX"],
        ),
        (
            "/membership/v1/me/forget".into(),
            "post",
            &["200", "4XX", "5XX"],
        ),
        (
            "/membership/v1/decisions/token".into(),
            "post",
            &["200", "400", "401", "413", "422", "429", "5XX"],
        ),
        (
            "/membership/v1/me/assertions".into(),
            "post",
            &["200", "404", "4XX", "5XX"],
        ),
        ("/membership/v1/decisions/jwks.json".into(), "get", &["200"]),
    ];
    let mut operations = 0;
    for (path, method, codes) in &expect {
        let op = &paths[path.as_str()][*method];
        assert!(op.is_object(), "{method} {path} is not documented");
        let documented = op["responses"].as_object().unwrap();
        let mut got: Vec<&str> = documented.keys().map(String::as_str).collect();
        got.sort_unstable();
        assert_eq!(&got, codes, "{method} {path}: documented statuses");
        for code in *codes {
            let res = &op["responses"][*code];
            if code.starts_with('4') || code.starts_with('5') {
                assert!(
                    res["content"]["application/problem+json"].is_object(),
                    "{method} {path}: {code} is not problem+json"
                );
            }
        }
        operations += 1;
    }
    let documented: usize = paths
        .as_object()
        .unwrap()
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    assert_eq!(
        documented, operations,
        "an undocumented-in-this-test route is public"
    );
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    // The approval route says plainly that asking shows the requester to the owners.
    let join = paths[format!("{G}/join").as_str()]["post"].to_string();
    assert!(join.contains("owners will see who asked"), "{join}");
}
