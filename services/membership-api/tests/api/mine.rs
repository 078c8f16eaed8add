//! Leaving, "am I a member" and "my groups": always about the caller alone (INV-2), and
//! leaving answers the same whatever the caller's membership or the group's state (INV-3).

use crate::fakes::Write;
use crate::helpers::{spawn_app, ALICE, BOB};
use domain::{GroupId, GroupState, IdentityKind, JoinPolicy};
use http::StatusCode;
use serde_json::json;

#[tokio::test]
async fn inv_3_leaving_answers_the_same_for_members_and_non_members() {
    let app = spawn_app().await;
    let g = app.group("General", JoinPolicy::Open, GroupState::Active);
    app.directory.put(g, "alice");

    let member_leaves = app.leave(ALICE, g).await;
    let stranger_leaves = app.leave(BOB, g).await;

    assert_eq!(member_leaves.0, StatusCode::OK);
    assert_eq!(
        member_leaves.2,
        json!({ "group_id": g.to_string(), "member": false })
    );
    assert_eq!(member_leaves, stranger_leaves);
    assert!(!app.directory.contains(g, "alice"));
    // Both went to the tenant: no early return that timing could tell apart.
    assert_eq!(
        app.directory.writes(),
        [Write::leave(g, "alice"), Write::leave(g, "bob")]
    );
}

#[tokio::test]
async fn leaving_an_archived_or_unknown_group_answers_the_same() {
    let app = spawn_app().await;
    let archived = app.group("General", JoinPolicy::Open, GroupState::Archived);
    let unknown = GroupId::new();
    for g in [archived, unknown] {
        let (status, _, body) = app.leave(ALICE, g).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({ "group_id": g.to_string(), "member": false }));
    }
}

#[tokio::test]
async fn inv_2_am_i_a_member_is_about_the_caller_only() {
    let app = spawn_app().await;
    let g = app.group("General", JoinPolicy::Open, GroupState::Active);
    app.directory.put(g, "alice");

    assert_eq!(
        app.am_i(ALICE, g).await.2,
        json!({ "group_id": g.to_string(), "member": true })
    );
    assert_eq!(
        app.am_i(BOB, g).await.2,
        json!({ "group_id": g.to_string(), "member": false })
    );
    let unknown = GroupId::new();
    assert_eq!(
        app.am_i(ALICE, unknown).await.2,
        json!({ "group_id": unknown.to_string(), "member": false })
    );
}

#[tokio::test]
async fn inv_2_my_groups_lists_the_callers_groups_and_no_one_elses() {
    let app = spawn_app().await;
    let mine = app.group("General", JoinPolicy::Open, GroupState::Active);
    let also_mine = app.group("Confidential", JoinPolicy::Approval, GroupState::Active);
    let bobs = app.group("General", JoinPolicy::Open, GroupState::Active);
    app.directory.put(mine, "alice");
    app.directory.put(also_mine, "alice");
    app.directory.put(bobs, "bob");

    let (status, _, body) = app.my_groups(ALICE).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    let groups = body["groups"].as_array().unwrap();
    let mut ids: Vec<&str> = groups.iter().map(|g| g["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    let mut want = [mine.to_string(), also_mine.to_string()];
    want.sort_unstable();
    assert_eq!(ids, want);
    let conf = groups
        .iter()
        .find(|g| g["id"] == also_mine.to_string())
        .unwrap();
    assert_eq!(conf["label"], "Confidential");
    assert!(conf["name"].is_string() && conf["contact_address"].is_string());
    // Nothing in the answer speaks of anyone else.
    assert!(!body.to_string().contains("bob"), "{body}");
    assert!(!body.to_string().contains("owner-1"), "{body}");
}

#[tokio::test]
async fn someone_an_owner_added_by_address_finds_and_leaves_the_membership_with_their_token() {
    let app = spawn_app().await;
    let g = app.group("General", JoinPolicy::Open, GroupState::Active);
    // Added by address only: the tenant holds an identity with no subject.
    app.directory
        .put_email(g, "alice@corp.example", IdentityKind::Member);
    // An identity bound to another subject is never the caller's, whatever its address.
    app.directory
        .put_identity(Some("dave"), Some("bob@corp.example"), IdentityKind::Member);
    app.directory.put(g, "dave");

    assert_eq!(
        app.am_i(ALICE, g).await.2,
        json!({ "group_id": g.to_string(), "member": true })
    );
    let (_, _, body) = app.my_groups(ALICE).await;
    assert_eq!(body["groups"][0]["id"], g.to_string(), "{body}");
    assert_eq!(
        app.am_i(BOB, g).await.2,
        json!({ "group_id": g.to_string(), "member": false })
    );

    let left = app.leave(ALICE, g).await;
    assert_eq!(left.0, StatusCode::OK);
    assert!(!app.directory.contains_email(g, "alice@corp.example"));
    assert_eq!(
        app.am_i(ALICE, g).await.2,
        json!({ "group_id": g.to_string(), "member": false })
    );
    let _ = app.leave(BOB, g).await;
    assert!(
        app.directory.contains(g, "dave"),
        "bob's leave is not dave's"
    );
    assert_eq!(
        app.directory.writes(),
        [Write::leave(g, "alice"), Write::leave(g, "bob")]
    );
}

#[tokio::test]
async fn my_groups_is_empty_for_someone_in_no_group() {
    let app = spawn_app().await;
    let (status, _, body) = app.my_groups(BOB).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({ "groups": [] }));
}

#[tokio::test]
async fn archived_groups_are_not_listed_as_mine() {
    let app = spawn_app().await;
    let archived = app.group("General", JoinPolicy::Open, GroupState::Archived);
    app.directory.put(archived, "alice");
    let (_, _, body) = app.my_groups(ALICE).await;
    assert_eq!(body, json!({ "groups": [] }));
}
