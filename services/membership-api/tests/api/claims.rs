//! Claim rules: a requester whose token claims satisfy an owner's rule is admitted at once, no
//! request row is written and no owner sees who it was; the label still decides first.

use crate::helpers::{assert_problem, spawn_app, TestApp, ALICE, BOB, GINA_GUEST, MALLORY, OWNER};
use domain::{GroupId, GroupState, JoinPolicy};
use http::{Method, StatusCode};
use serde_json::{json, Value};

fn legal_or_hr_in_germany() -> Value {
    json!({"rules": [{"all": [
        {"claim": "department", "in": ["Legal", "HR"]},
        {"claim": "country", "equals": "DE"}
    ]}]})
}

async fn group_with_rules(app: &TestApp, label: &str) -> GroupId {
    let g = app.group(label, JoinPolicy::Approval, GroupState::Active);
    let (status, _, body) = app.put_rules(OWNER, g, legal_or_hr_in_germany()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, legal_or_hr_in_germany());
    g
}

#[tokio::test]
async fn matching_claims_admit_at_once_and_no_request_row_is_written() {
    let app = spawn_app().await;
    let g = group_with_rules(&app, "Confidential").await;

    let (status, _, body) = app
        .join_with(ALICE, g, &json!({"department": "HR", "country": "DE"}))
        .await;

    app.assert_alice_admitted(status, &body, g, "Confidential");
    // No human saw it, and nothing records it.
    assert_eq!(app.db_count("join_requests").await, 0);
    assert_eq!(app.pending(OWNER, g).await.2, json!({ "requests": [] }));
    assert_eq!(app.my_requests(ALICE).await.2, json!({ "requests": [] }));
}

#[tokio::test]
async fn claims_that_do_not_match_file_a_request_as_usual() {
    let app = spawn_app().await;
    let g = group_with_rules(&app, "Confidential").await;
    for claims in [
        json!({"department": "HR", "country": "FR"}),
        json!({"department": "Sales", "country": "DE"}),
        json!({"country": "DE"}),
    ] {
        let (status, _, body) = app.join_with(BOB, g, &claims).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{claims}: {body}");
    }
    assert!(app.directory.writes().is_empty());
    assert_eq!(app.db_count("join_requests").await, 1);
}

#[tokio::test]
async fn the_label_decides_before_the_rules() {
    let app = spawn_app().await;
    let g = group_with_rules(&app, "Confidential").await;

    let got = app
        .join_with(GINA_GUEST, g, &json!({"department": "HR", "country": "DE"}))
        .await;

    assert_problem(&got, StatusCode::FORBIDDEN, "label-refused");
    assert!(
        app.directory.writes().is_empty(),
        "claim rules admitted someone the label refuses"
    );
    assert_eq!(app.db_count("join_requests").await, 0);
}

#[tokio::test]
async fn a_pending_request_is_dropped_when_the_rules_later_admit_its_requester() {
    let app = spawn_app().await;
    let g = app.group("Confidential", JoinPolicy::Approval, GroupState::Active);
    let (status, _, _) = app.join_with(ALICE, g, &json!({"department": "HR"})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    app.put_rules(OWNER, g, legal_or_hr_in_germany()).await;

    let (status, _, _) = app
        .join_with(ALICE, g, &json!({"department": "HR", "country": "DE"}))
        .await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.db_count("join_requests").await, 0);
    assert_eq!(app.pending(OWNER, g).await.2, json!({ "requests": [] }));
}

#[tokio::test]
async fn rules_apply_only_to_approval_groups() {
    let app = spawn_app().await;
    let g = group_with_rules(&app, "Confidential").await;
    app.catalog.set_join_policy(g, JoinPolicy::Invite);
    let got = app
        .join_with(ALICE, g, &json!({"department": "HR", "country": "DE"}))
        .await;
    assert_problem(&got, StatusCode::CONFLICT, "join-policy");
    assert!(app.directory.writes().is_empty());
}

#[tokio::test]
async fn owners_read_replace_and_clear_rules_and_no_one_else_may() {
    let app = spawn_app().await;
    let g = app.group("Confidential", JoinPolicy::Approval, GroupState::Active);
    let path = format!("/membership/v1/groups/{g}/claim-rules");

    assert_eq!(
        app.call(OWNER, Method::GET, &path, None).await.2,
        json!({ "rules": [] })
    );
    app.put_rules(OWNER, g, legal_or_hr_in_germany()).await;
    assert_eq!(
        app.call(OWNER, Method::GET, &path, None).await.2,
        legal_or_hr_in_germany()
    );
    let (status, _, _) = app.put_rules(OWNER, g, json!({ "rules": [] })).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        app.call(OWNER, Method::GET, &path, None).await.2,
        json!({ "rules": [] })
    );

    let missing = format!("/membership/v1/groups/{}/claim-rules", GroupId::new());
    let reference = app
        .raw(Method::GET, &path, Some(&app.token(MALLORY)), None)
        .await;
    assert_problem(&reference.answer(), StatusCode::FORBIDDEN, "not-owner");
    for (method, p, body) in [
        (Method::PUT, &path, Some(legal_or_hr_in_germany())),
        (Method::GET, &missing, None),
        (Method::PUT, &missing, Some(legal_or_hr_in_germany())),
    ] {
        let got = app
            .raw(method, p, Some(&app.token(MALLORY)), body.as_ref())
            .await;
        assert_eq!(got.visible(), reference.visible());
    }
    assert_eq!(
        app.call(OWNER, Method::GET, &path, None).await.2,
        json!({ "rules": [] })
    );
}

#[tokio::test]
async fn unusable_rules_are_422_and_say_where() {
    let app = spawn_app().await;
    let g = app.group("Confidential", JoinPolicy::Approval, GroupState::Active);
    let got = app
        .put_rules(OWNER, g, json!({"rules": [{"all": []}]}))
        .await;
    assert_problem(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
    assert_eq!(
        got.2["detail"],
        "rules[0].all: a rule needs at least one condition"
    );
    let got = app
        .put_rules(
            OWNER,
            g,
            json!({"rules": [{"all": [{"claim": "d", "matches": ".*"}]}]}),
        )
        .await;
    assert_problem(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
}
