//! `GET /bulk/v1/jobs`: operators only, bounded, problem+json on every refusal.

use crate::helpers::{assert_problem, spawn_app, Tenant};
use http::StatusCode;

#[tokio::test]
async fn without_a_token_the_answer_is_401_problem_json() {
    let app = spawn_app(Tenant::Up).await;
    let got = app.get("/bulk/v1/jobs", None).await;
    assert_problem(&got, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn a_forged_token_is_401_problem_json() {
    let app = spawn_app(Tenant::Up).await;
    let other = spawn_app(Tenant::Up).await;
    // Signed by another issuer's key: same claims, wrong signature.
    let forged = other.token("op", &["operator"]);
    let got = app.get("/bulk/v1/jobs", Some(&forged)).await;
    assert_problem(&got, StatusCode::UNAUTHORIZED, "unauthorized");
    let got = app.get("/bulk/v1/jobs", Some("not-a-jwt")).await;
    assert_problem(&got, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn callers_without_the_operator_role_get_403_problem_json() {
    let app = spawn_app(Tenant::Up).await;
    for roles in [&[][..], &["auditor"], &["label-admin", "privacy-officer"]] {
        let got = app
            .get("/bulk/v1/jobs", Some(&app.token("someone", roles)))
            .await;
        assert_problem(&got, StatusCode::FORBIDDEN, "forbidden");
    }
}

#[tokio::test]
async fn operators_list_jobs() {
    let app = spawn_app(Tenant::Up).await;
    let token = app.token("op", &["operator"]);
    let (status, _, body) = app.get("/bulk/v1/jobs", Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, serde_json::json!({ "jobs": [] }));
    let (status, _, _) = app.get("/bulk/v1/jobs?limit=200", Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_limit_out_of_range_or_not_a_number_is_422_problem_json() {
    let app = spawn_app(Tenant::Up).await;
    let token = app.token("op", &["operator"]);
    for q in ["limit=0", "limit=201", "limit=ten", "limit=-1"] {
        let got = app.get(&format!("/bulk/v1/jobs?{q}"), Some(&token)).await;
        assert_problem(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
    }
}

#[tokio::test]
async fn the_role_is_checked_before_the_input() {
    let app = spawn_app(Tenant::Up).await;
    let got = app
        .get("/bulk/v1/jobs?limit=0", Some(&app.token("someone", &[])))
        .await;
    assert_problem(&got, StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test]
async fn an_input_of_another_content_type_is_415_like_every_json_endpoint_and_queues_nothing() {
    let app = spawn_app(Tenant::Up).await;
    let token = app.token("op", &["operator"]);
    let line = r#"{"op":"add","group_id":"00000000-0000-4000-8000-000000000001","subject":"a"}"#;
    for content_type in ["text/plain", "application/octet-stream"] {
        let got = app
            .post_raw("/bulk/v1/jobs", &token, content_type, line)
            .await;
        assert_problem(
            &got,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
        );
        let detail = got.2["detail"].as_str().unwrap();
        assert!(
            detail.contains("application/x-ndjson") && detail.contains("?format="),
            "{detail}"
        );
    }
    let (status, _, body) = app.get("/bulk/v1/jobs", Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        serde_json::json!({ "jobs": [] }),
        "nothing was queued"
    );
}

#[tokio::test]
async fn an_input_with_no_operation_is_refused_and_queues_nothing() {
    let app = spawn_app(Tenant::Up).await;
    let token = app.token("op", &["operator"]);
    for (path, content_type, body) in [
        ("/bulk/v1/jobs", "application/x-ndjson", ""),
        ("/bulk/v1/jobs", "application/x-ndjson", "\n  \n"),
        ("/bulk/v1/jobs", "text/csv", "op,group_id,subject,email\n"),
        (
            "/bulk/v1/jobs?on_bad_lines=skip",
            "application/x-ndjson",
            "not json\n",
        ),
    ] {
        let got = app.post_raw(path, &token, content_type, body).await;
        assert_problem(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
        let detail = got.2["detail"].as_str().unwrap();
        assert!(detail.contains("no operation"), "{body:?}: {detail}");
    }
    let (_, _, body) = app.get("/bulk/v1/jobs", Some(&token)).await;
    assert_eq!(
        body,
        serde_json::json!({ "jobs": [] }),
        "nothing was queued"
    );
}

#[tokio::test]
async fn a_job_shows_the_name_of_its_file_and_a_bad_name_is_refused() {
    let app = spawn_app(Tenant::Up).await;
    let token = app.token("op", &["operator"]);
    let line = "{\"op\":\"add\",\"group_id\":\"6f1c2f3e-8d1a-4c5b-9e7f-0a1b2c3d4e5f\",\"email\":\"a@corp.example\"}\n";
    for bad in ["%07bell.csv", "%20%20", &"x".repeat(201)] {
        let got = app
            .post_raw(
                &format!("/bulk/v1/jobs?name={bad}"),
                &token,
                "application/x-ndjson",
                line,
            )
            .await;
        assert_problem(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
        assert!(
            got.2["detail"].as_str().unwrap().starts_with("name:"),
            "{}",
            got.2
        );
    }
    let (_, _, body) = app.get("/bulk/v1/jobs", Some(&token)).await;
    assert_eq!(
        body["jobs"],
        serde_json::json!([]),
        "a refused name queues nothing"
    );

    let (status, _, job) = app
        .post_raw(
            "/bulk/v1/jobs?name=leavers%20december.csv",
            &token,
            "application/x-ndjson",
            line,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    assert_eq!(job["name"], "leavers december.csv");
    let (_, _, body) = app.get("/bulk/v1/jobs", Some(&token)).await;
    assert_eq!(body["jobs"][0]["name"], "leavers december.csv");
}

#[tokio::test]
async fn a_spreadsheets_csv_with_a_bom_semicolons_and_a_quoted_line_break_is_read_row_by_row() {
    let app = spawn_app(Tenant::Up).await;
    let token = app.token("op", &["operator"]);
    // Excel's "CSV UTF-8" where the decimal mark is a comma; the subject of line 3 holds a
    // line break inside its quotes, so the row spans lines 3 and 4, and line 5 is read as
    // line 5.
    let file = "\u{feff}op;group_id;subject;email\r\n\
                add;6f1c2f3e-8d1a-4c5b-9e7f-0a1b2c3d4e5f;alice;\r\n\
                add;6f1c2f3e-8d1a-4c5b-9e7f-0a1b2c3d4e5f;\"two\r\nlines\";\r\n\
                remove;6f1c2f3e-8d1a-4c5b-9e7f-0a1b2c3d4e5f;;\"b;c@corp.example\"\r\n";
    let got = app
        .post_raw("/bulk/v1/jobs", &token, "text/csv", file)
        .await;
    assert_problem(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid-lines");
    assert_eq!(
        got.2["errors"],
        serde_json::json!([
            {"line": 3, "reason": "subject is not valid"},
            {"line": 5, "reason": "email is not a valid address"},
        ]),
        "{}",
        got.2
    );
    let (_, _, body) = app.get("/bulk/v1/jobs", Some(&token)).await;
    assert_eq!(
        body,
        serde_json::json!({ "jobs": [] }),
        "nothing was queued"
    );
}
