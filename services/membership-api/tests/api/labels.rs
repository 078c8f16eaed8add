//! Every path that adds a member checks the group's label before anything is written. The
//! paths where membership-api knows the person's kind (self-join, asking for approval,
//! approving with the kind stored in the request, claim rules, invite redemption) refuse before
//! any call to the tenant; an owner's add, whose kind only the tenant knows, is refused by the
//! tenant's own check before it writes. One test walks them all.

use crate::helpers::{assert_problem, label, spawn_app, GINA_GUEST, OWNER};
use domain::{GroupState, JoinPolicy};
use http::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn the_label_refuses_on_every_add_path_before_any_write() {
    let app = spawn_app().await;
    let claims = json!({"department": "HR"});

    // Self-join of an open group.
    let open = app.group("Confidential", JoinPolicy::Open, GroupState::Active);
    assert_problem(
        &app.join(GINA_GUEST, open).await,
        StatusCode::FORBIDDEN,
        "label-refused",
    );

    // Asking for approval, and claim rules that would otherwise admit.
    let approval = app.group("Confidential", JoinPolicy::Approval, GroupState::Active);
    app.put_rules(
        OWNER,
        approval,
        json!({"rules": [{"all": [{"claim": "department", "equals": "HR"}]}]}),
    )
    .await;
    assert_problem(
        &app.join(GINA_GUEST, approval).await,
        StatusCode::FORBIDDEN,
        "label-refused",
    );
    assert_problem(
        &app.join_with(GINA_GUEST, approval, &claims).await,
        StatusCode::FORBIDDEN,
        "label-refused",
    );

    // Approval, with the kind stored in the request, after the label changed.
    let later = app.group("General", JoinPolicy::Approval, GroupState::Active);
    let (status, _, filed) = app.join(GINA_GUEST, later).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let mut closed = label("General");
    closed.policy.guests_allowed = false;
    app.catalog.set_label(later, closed);
    let rid = filed["request"]["id"].as_str().unwrap();
    assert_problem(
        &app.decide(OWNER, later, rid, "approve").await,
        StatusCode::FORBIDDEN,
        "label-refused",
    );

    // Invite redemption.
    let invite = app.group("Confidential", JoinPolicy::Invite, GroupState::Active);
    let code = app.create_invite(OWNER, invite, json!({})).await.2["code"]
        .as_str()
        .unwrap()
        .to_string();
    assert_problem(
        &app.redeem(GINA_GUEST, &code).await,
        StatusCode::FORBIDDEN,
        "label-refused",
    );

    assert!(
        app.directory.writes().is_empty(),
        "a path called the tenant before the label refused: {:?}",
        app.directory.writes()
    );

    // An owner's add: the tenant resolves the kind and refuses before it writes; the owner
    // gets the 202 every owner add gets (no oracle of who is known, or as what).
    let path = format!("/membership/v1/groups/{open}/members");
    let got = app
        .call(
            OWNER,
            Method::POST,
            &path,
            Some(json!({"email": "gina@partner.example"})),
        )
        .await;
    assert_eq!(got.0, StatusCode::ACCEPTED, "{}", got.2);

    assert_eq!(app.directory.membership_count(), 0);
}
