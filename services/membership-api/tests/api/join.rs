//! Joining: the group's label decides first and nothing is written when it refuses; then the
//! join policy: `open` adds the caller at once, `approval` files a request (see `requests.rs`),
//! `invite` says to redeem an invite.

use crate::fakes::Write;
use crate::helpers::{assert_problem, spawn_app, Who, AIDA_AGENT, ALICE, GINA_GUEST};
use domain::{GroupId, GroupState, IdentityKind, JoinPolicy};
use http::StatusCode;
use serde_json::json;

#[tokio::test]
async fn a_member_joins_an_open_group_and_the_tenant_is_told() {
    let app = spawn_app().await;
    let g = app.group("General", JoinPolicy::Open, GroupState::Active);

    let (status, _, body) = app.join(ALICE, g).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({ "group_id": g.to_string(), "member": true }));
    // The caller's own address and kind (the IdP's word), with the label for the tenant to
    // check again.
    assert_eq!(
        app.directory.writes(),
        [Write::add_self(g, "alice", IdentityKind::Member, "General")]
    );
}

#[tokio::test]
async fn joining_twice_answers_the_same() {
    let app = spawn_app().await;
    let g = app.group("General", JoinPolicy::Open, GroupState::Active);
    let first = app.join(ALICE, g).await;
    let second = app.join(ALICE, g).await;
    assert_eq!(first, second);
}

#[tokio::test]
async fn label_is_checked_before_anything_is_written_guests() {
    let app = spawn_app().await;
    // Confidential bars guests; give it an open policy so only the label can refuse.
    let g = app.group("Confidential", JoinPolicy::Open, GroupState::Active);

    let got = app.join(GINA_GUEST, g).await;

    assert_problem(&got, StatusCode::FORBIDDEN, "label-refused");
    assert_eq!(
        got.2["detail"],
        "the label 'Confidential' does not allow guests"
    );
    assert!(
        app.directory.writes().is_empty(),
        "a refused join wrote to the tenant"
    );
}

#[tokio::test]
async fn label_is_checked_before_anything_is_written_agents() {
    let app = spawn_app().await;
    let g = app.group("General", JoinPolicy::Open, GroupState::Active);

    let got = app.join(AIDA_AGENT, g).await;

    assert_problem(&got, StatusCode::FORBIDDEN, "label-refused");
    assert_eq!(
        got.2["detail"],
        "the label 'General' does not allow AI agents"
    );
    assert!(app.directory.writes().is_empty());
}

#[tokio::test]
async fn a_guest_the_label_admits_joins() {
    let app = spawn_app().await;
    let g = app.group("General", JoinPolicy::Open, GroupState::Active);
    let (status, _, _) = app.join(GINA_GUEST, g).await;
    assert_eq!(status, StatusCode::OK);
    assert!(app.directory.contains(g, "gina"));
}

#[tokio::test]
async fn the_label_refuses_before_the_join_policy_is_considered() {
    let app = spawn_app().await;
    // Both would refuse; the label speaks first.
    let g = app.group(
        "Highly Confidential",
        JoinPolicy::Invite,
        GroupState::Active,
    );
    let got = app.join(GINA_GUEST, g).await;
    assert_problem(&got, StatusCode::FORBIDDEN, "label-refused");
}

#[tokio::test]
async fn invite_groups_say_what_they_need_and_write_nothing() {
    let app = spawn_app().await;
    let invite = app.group(
        "Highly Confidential",
        JoinPolicy::Invite,
        GroupState::Active,
    );

    let got = app.join(ALICE, invite).await;
    assert_problem(&got, StatusCode::CONFLICT, "join-policy");
    assert!(got.2["detail"].as_str().unwrap().contains("invite"));

    assert!(app.directory.writes().is_empty());
    assert_eq!(app.db_count("join_requests").await, 0);
}

#[tokio::test]
async fn an_unknown_group_is_404() {
    let app = spawn_app().await;
    let got = app.join(ALICE, GroupId::new()).await;
    assert_problem(&got, StatusCode::NOT_FOUND, "not-found");
    assert!(app.directory.writes().is_empty());
}

#[tokio::test]
async fn a_group_that_is_not_active_is_not_accepting_members() {
    let app = spawn_app().await;
    for state in [
        GroupState::Provisioning,
        GroupState::Archiving,
        GroupState::Archived,
    ] {
        let g = app.group("General", JoinPolicy::Open, state);
        let got = app.join(ALICE, g).await;
        assert_problem(&got, StatusCode::CONFLICT, "group-not-active");
        assert_eq!(got.2["detail"], "the group is not accepting members");
    }
    assert!(app.directory.writes().is_empty());
}

#[tokio::test]
async fn a_token_without_an_email_cannot_join() {
    let app = spawn_app().await;
    let g = app.group("General", JoinPolicy::Open, GroupState::Active);
    let no_email = Who {
        sub: "nomail",
        kind: IdentityKind::Member,
        with_email: false,
    };
    let got = app.join(no_email, g).await;
    assert_problem(&got, StatusCode::UNPROCESSABLE_ENTITY, "email-required");
    assert!(app.directory.writes().is_empty());
}

#[tokio::test]
async fn a_tenant_that_is_down_is_503_and_says_nothing_more() {
    let app = spawn_app().await;
    let g = app.group("General", JoinPolicy::Open, GroupState::Active);
    app.directory.set_down(true);
    let got = app.join(ALICE, g).await;
    assert_problem(&got, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert!(!got.2["detail"].as_str().unwrap().contains("connect"));
}
