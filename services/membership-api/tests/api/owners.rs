//! INV-3: an owner's add and remove answer byte-identically whether or not the person was (or
//! was not) a member, and make the same tenant call either way. Only owners may make them; a
//! non-owner gets the same 403 for every group, existent or not. A label refusal speaks of the
//! identity's kind, never of membership.

use crate::fakes::Write;
use crate::helpers::{assert_problem, spawn_app, Raw, TestApp, ALICE, MALLORY, OWNER};
use domain::{GroupId, GroupState, IdentityKind, JoinPolicy};
use http::{Method, StatusCode};
use serde_json::{json, Value};

async fn owner_add(app: &TestApp, g: GroupId, body: &Value) -> Raw {
    app.raw(
        Method::POST,
        &format!("/membership/v1/groups/{g}/members"),
        Some(&app.token(OWNER)),
        Some(body),
    )
    .await
}

async fn owner_remove(app: &TestApp, g: GroupId, body: &Value) -> Raw {
    app.raw(
        Method::POST,
        &format!("/membership/v1/groups/{g}/members/remove"),
        Some(&app.token(OWNER)),
        Some(body),
    )
    .await
}

async fn owner_delete(app: &TestApp, g: GroupId, subject: &str) -> Raw {
    app.raw(
        Method::DELETE,
        &format!("/membership/v1/groups/{g}/members/{subject}"),
        Some(&app.token(OWNER)),
        None,
    )
    .await
}

fn accepted() -> (StatusCode, String, String) {
    (
        StatusCode::ACCEPTED,
        "application/json".into(),
        r#"{"status":"accepted"}"#.into(),
    )
}

#[tokio::test]
async fn inv_3_owner_add_answers_byte_identically_whether_or_not_a_member() {
    let app = spawn_app().await;
    let g = app.group("Confidential", JoinPolicy::Approval, GroupState::Active);
    app.directory.put(g, "alice");

    let member = owner_add(&app, g, &json!({"subject": "alice"})).await;
    let stranger = owner_add(&app, g, &json!({"subject": "bob"})).await;

    assert_eq!(member.visible(), accepted());
    assert_eq!(member.visible(), stranger.visible());
    assert!(app.directory.contains(g, "alice") && app.directory.contains(g, "bob"));
    // The same call either way: no membership check first, no early return.
    let add = |sub: &str| Write::Add {
        group: g,
        subject: Some(sub.into()),
        email: None,
        kind: None,
        label: "Confidential".into(),
    };
    assert_eq!(app.directory.writes(), [add("alice"), add("bob")]);
}

#[tokio::test]
async fn inv_3_owner_add_by_address_answers_byte_identically() {
    let app = spawn_app().await;
    let g = app.group("General", JoinPolicy::Open, GroupState::Active);
    app.directory
        .put_email(g, "dana@corp.example", IdentityKind::Member);

    let member = owner_add(&app, g, &json!({"email": "dana@corp.example"})).await;
    let stranger = owner_add(&app, g, &json!({"email": "erin@corp.example"})).await;
    let both = owner_add(
        &app,
        g,
        &json!({"subject": "frank", "email": "frank@corp.example"}),
    )
    .await;

    assert_eq!(member.visible(), accepted());
    assert_eq!(stranger.visible(), accepted());
    assert_eq!(both.visible(), accepted());
    assert!(app.directory.contains_email(g, "erin@corp.example"));
    let writes = app.directory.writes();
    assert_eq!(writes.len(), 3);
    for w in &writes {
        let Write::Add { kind, label, .. } = w else {
            panic!("{w:?}")
        };
        assert_eq!(
            (kind, label.as_str()),
            (&None, "General"),
            "the tenant resolves the kind"
        );
    }
}

#[tokio::test]
async fn inv_3_owner_remove_answers_byte_identically_whether_or_not_a_member() {
    let app = spawn_app().await;
    let g = app.group("Confidential", JoinPolicy::Approval, GroupState::Active);
    app.directory.put(g, "alice");
    app.directory.put(g, "carol");
    app.directory
        .put_email(g, "dana@corp.example", IdentityKind::Member);

    let answers = [
        owner_delete(&app, g, "alice").await,
        owner_delete(&app, g, "bob").await,
        owner_remove(&app, g, &json!({"subject": "carol"})).await,
        owner_remove(&app, g, &json!({"subject": "nobody"})).await,
        owner_remove(&app, g, &json!({"email": "dana@corp.example"})).await,
        owner_remove(&app, g, &json!({"email": "nobody@corp.example"})).await,
    ];

    for a in &answers {
        assert_eq!(a.visible(), accepted());
    }
    assert_eq!(app.directory.membership_count(), 0);
    let remove = |sub: Option<&str>, email: Option<&str>| Write::Remove {
        group: g,
        subject: sub.map(Into::into),
        email: email.map(Into::into),
    };
    assert_eq!(
        app.directory.writes(),
        [
            remove(Some("alice"), None),
            remove(Some("bob"), None),
            remove(Some("carol"), None),
            remove(Some("nobody"), None),
            remove(None, Some("dana@corp.example")),
            remove(None, Some("nobody@corp.example")),
        ]
    );
}

#[tokio::test]
async fn inv_3_owner_remove_answers_the_same_for_a_group_the_tenant_no_longer_has() {
    let app = spawn_app().await;
    let g = app.group("General", JoinPolicy::Open, GroupState::Archived);
    assert_eq!(owner_delete(&app, g, "alice").await.visible(), accepted());
}

#[tokio::test]
async fn only_owners_add_or_remove_and_a_missing_group_answers_the_same() {
    let app = spawn_app().await;
    let g = app.group("General", JoinPolicy::Open, GroupState::Active);
    app.directory.put(g, "alice");
    let missing = GroupId::new();
    let token = app.token(MALLORY);

    let mut answers = Vec::new();
    for group in [g, missing] {
        let person = json!({"subject": "alice"});
        answers.push(
            app.raw(
                Method::POST,
                &format!("/membership/v1/groups/{group}/members"),
                Some(&token),
                Some(&person),
            )
            .await,
        );
        answers.push(
            app.raw(
                Method::POST,
                &format!("/membership/v1/groups/{group}/members/remove"),
                Some(&token),
                Some(&person),
            )
            .await,
        );
        answers.push(
            app.raw(
                Method::DELETE,
                &format!("/membership/v1/groups/{group}/members/alice"),
                Some(&token),
                None,
            )
            .await,
        );
    }
    // A member who is not an owner is no owner either.
    let member_token = app.token(ALICE);
    answers.push(
        app.raw(
            Method::POST,
            &format!("/membership/v1/groups/{g}/members"),
            Some(&member_token),
            Some(&json!({"subject": "mallory"})),
        )
        .await,
    );

    assert_problem(&answers[0].answer(), StatusCode::FORBIDDEN, "not-owner");
    for a in &answers {
        assert_eq!(a.visible(), answers[0].visible());
    }
    assert!(app.directory.writes().is_empty());
    assert!(app.directory.contains(g, "alice"));
}

/// An owner of a restrictive group cannot test whether someone is known to the tenant, or as
/// what: a person the label bars gets the same 202, byte for byte, as a member and as someone
/// unknown, and nothing is written for them.
#[tokio::test]
async fn an_owner_add_answers_the_same_for_a_member_an_unknown_person_and_one_the_label_bars() {
    let app = spawn_app().await;
    let g = app.group("Confidential", JoinPolicy::Approval, GroupState::Active);
    app.directory.put(g, "alice");
    let member = owner_add(&app, g, &json!({"subject": "alice"})).await;
    let unknown = owner_add(&app, g, &json!({"email": "newhire@corp.example"})).await;
    // An external address: the tenant infers a guest, and Confidential admits no guests.
    let barred = owner_add(&app, g, &json!({"email": "pat@partner.example"})).await;
    // A guest who somehow is a member already (the label was changed later) gets the same.
    app.directory
        .put_email(g, "quinn@partner.example", IdentityKind::Guest);
    let barred_member = owner_add(&app, g, &json!({"email": "quinn@partner.example"})).await;

    assert_eq!(member.status, StatusCode::ACCEPTED);
    for other in [&unknown, &barred, &barred_member] {
        assert_eq!(other.visible(), member.visible());
    }
    assert!(!app.directory.contains_email(g, "pat@partner.example"));
}

#[tokio::test]
async fn an_add_must_name_someone_validly() {
    let app = spawn_app().await;
    let g = app.group("General", JoinPolicy::Open, GroupState::Active);
    for body in [
        json!({}),
        json!({"subject": null, "email": null}),
        json!({"email": "not-an-address"}),
        json!({"subject": ""}),
        json!({"subject": "a", "kind": "member"}),
    ] {
        let got = owner_add(&app, g, &body).await.answer();
        assert_problem(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
        let got = owner_remove(&app, g, &body).await.answer();
        assert_problem(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
    }
    assert!(app.directory.writes().is_empty());
}

#[tokio::test]
async fn an_owner_cannot_add_to_a_group_that_is_not_active() {
    let app = spawn_app().await;
    let g = app.group("General", JoinPolicy::Open, GroupState::Provisioning);
    let got = owner_add(&app, g, &json!({"subject": "alice"}))
        .await
        .answer();
    assert_problem(&got, StatusCode::CONFLICT, "group-not-active");
    assert!(app.directory.writes().is_empty());
}

#[tokio::test]
async fn an_owner_add_binds_later_to_the_person_who_signs_in() {
    // Added by address, the person finds the group under "my groups" once the tenant has seen
    // them with their subject (the tenant binds the two).
    let app = spawn_app().await;
    let g = app.group("General", JoinPolicy::Open, GroupState::Active);
    assert_eq!(
        owner_add(
            &app,
            g,
            &json!({"subject": "alice", "email": "alice@corp.example"})
        )
        .await
        .visible(),
        accepted()
    );
    let (_, _, mine) = app.my_groups(ALICE).await;
    assert_eq!(mine["groups"][0]["id"], g.to_string());
}
