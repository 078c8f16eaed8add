//! Abuse limits: joins, leaves, redemptions and owner writes are limited per caller; over the
//! limit is a 429 problem with `Retry-After`, nothing is written, and the budget refills.

use crate::helpers::{assert_problem, spawn_app_with, Answer, Raw, TestApp, ALICE, BOB, OWNER};
use domain::{GroupId, GroupState, JoinPolicy};
use http::{header, Method, StatusCode};
use membership_api::AbuseLimits;
use serde_json::json;

async fn app_with_two_per_minute() -> TestApp {
    spawn_app_with(AbuseLimits {
        rate_limit_per_minute: 2,
        redeem_failures_per_hour: 100,
        ..AbuseLimits::default()
    })
    .await
}

/// Spends a caller's whole budget (two requests) on `POST path`, each answered 200.
async fn spend_budget(app: &TestApp, path: &str, token: &str) {
    for _ in 0..2 {
        let got = app.raw(Method::POST, path, Some(token), None).await;
        assert_eq!(got.status, StatusCode::OK);
    }
}

fn assert_limited(got: &Raw) {
    let answer: Answer = got.answer();
    assert_problem(&answer, StatusCode::TOO_MANY_REQUESTS, "rate-limited");
    assert_eq!(got.headers[header::RETRY_AFTER], "30", "{}", answer.2);
    assert!(answer.2["detail"]
        .as_str()
        .unwrap()
        .contains("retry in 30 s"));
}

#[tokio::test]
async fn joins_over_the_limit_are_429_with_retry_after_and_write_nothing() {
    let app = app_with_two_per_minute().await;
    let g = app.group("General", JoinPolicy::Open, GroupState::Active);
    let path = format!("/membership/v1/groups/{g}/join");
    let token = app.token(ALICE);
    spend_budget(&app, &path, &token).await;
    app.directory.clear_writes();

    let got = app.raw(Method::POST, &path, Some(&token), None).await;

    assert_limited(&got);
    assert!(app.directory.writes().is_empty());
    // Another caller has their own budget.
    assert_eq!(app.join(BOB, g).await.0, StatusCode::OK);
    // It refills: one request every 30 s.
    app.clock.advance_secs(30);
    assert_eq!(
        app.raw(Method::POST, &path, Some(&token), None)
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn leaves_are_limited() {
    let app = app_with_two_per_minute().await;
    let g = app.group("General", JoinPolicy::Open, GroupState::Active);
    let path = format!("/membership/v1/groups/{g}/leave");
    let token = app.token(ALICE);
    spend_budget(&app, &path, &token).await;
    assert_limited(&app.raw(Method::POST, &path, Some(&token), None).await);
}

#[tokio::test]
async fn redemptions_are_limited() {
    let app = app_with_two_per_minute().await;
    for _ in 0..2 {
        assert_eq!(
            app.redeem(ALICE, "HUSH-NOPE").await.0,
            StatusCode::NOT_FOUND
        );
    }
    assert_limited(&app.redeem_raw(ALICE, "HUSH-NOPE").await);
}

#[tokio::test]
async fn owner_writes_are_limited() {
    let app = app_with_two_per_minute().await;
    let g = app.group("General", JoinPolicy::Open, GroupState::Active);
    let token = app.token(OWNER);
    let add = format!("/membership/v1/groups/{g}/members");
    let person = json!({"subject": "alice"});
    for _ in 0..2 {
        let got = app
            .raw(Method::POST, &add, Some(&token), Some(&person))
            .await;
        assert_eq!(got.status, StatusCode::ACCEPTED);
    }
    app.directory.clear_writes();
    for (method, path, body) in [
        (Method::POST, add.clone(), Some(person.clone())),
        (
            Method::DELETE,
            format!("/membership/v1/groups/{g}/members/alice"),
            None,
        ),
        (
            Method::POST,
            format!("/membership/v1/groups/{g}/members/remove"),
            Some(person.clone()),
        ),
        (
            Method::PUT,
            format!("/membership/v1/groups/{g}/claim-rules"),
            Some(json!({"rules": []})),
        ),
        (
            Method::POST,
            format!("/membership/v1/groups/{g}/invites"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!(
                "/membership/v1/groups/{g}/requests/{}/approve",
                GroupId::new()
            ),
            None,
        ),
    ] {
        let got = app.raw(method, &path, Some(&token), body.as_ref()).await;
        assert_limited(&got);
    }
    assert!(app.directory.writes().is_empty());
}
