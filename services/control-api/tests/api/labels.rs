//! Labels: anyone signed in reads them; only label-admins change them, and the policy is
//! checked before anything is written.

use crate::helpers::*;
use domain::IdentityKind;
use http::Method;
use serde_json::{json, Value};

fn staff_only() -> Value {
    json!({"name": "Staff Only", "description": "Employees only", "policy": {
        "guests_allowed": false, "agents_allowed": false, "join_policies": ["open", "approval"], "sender_policy": "anyone"}})
}

async fn the_default_labels_are_readable_by_anyone_signed_in(kind: Backend) {
    let app = TestApp::spawn_on(kind).await;
    let guest = app.guest("gina");
    let all = app.get("/control/v1/labels", &guest).await;
    let names: Vec<&str> = all
        .ok(200)
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["name"].as_str())
        .collect();
    assert_eq!(names, ["Confidential", "General", "Highly Confidential"]);
    let hc = app
        .get("/control/v1/labels/Highly%20Confidential", &guest)
        .await;
    assert_eq!(hc.ok(200)["policy"]["join_policies"], json!(["invite"]));
    assert_eq!(hc.body["policy"]["sender_policy"], "members");
    app.get("/control/v1/labels/Nonexistent", &guest)
        .await
        .problem(404);
    app.get("/control/v1/labels/bad%2Fname", &guest)
        .await
        .problem(422);
    let anon = app
        .send(Method::GET, "/control/v1/labels", None, None)
        .await;
    anon.problem(401);
    app.stop().await;
}

async fn only_label_admins_write_labels_whatever_the_body(kind: Backend) {
    let app = TestApp::spawn_on(kind).await;
    let bob = app.member("bob");
    for (method, uri, body) in [
        (Method::POST, "/control/v1/labels", Some(staff_only())),
        (
            Method::POST,
            "/control/v1/labels",
            Some(json!({"garbage": true})),
        ),
        (
            Method::PUT,
            "/control/v1/labels/General",
            Some(json!({"description": "", "policy": staff_only()["policy"]})),
        ),
        (Method::DELETE, "/control/v1/labels/General", None),
    ] {
        let detail = app
            .send(method.clone(), uri, Some(&bob), body)
            .await
            .problem(403);
        assert!(detail.contains("label-admin"), "{method} {uri}: {detail}");
    }
    // An operator is not a label admin either.
    let otto = app.token("otto", domain::IdentityKind::Member, &["operator"]);
    app.post("/control/v1/labels", &otto, staff_only())
        .await
        .problem(403);
    assert_eq!(
        app.get("/control/v1/labels", &bob)
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        3,
        "nothing written"
    );
    app.stop().await;
}

async fn label_admins_create_change_and_delete_labels_with_valid_policies(kind: Backend) {
    let app = TestApp::spawn_on(kind).await;
    let admin = app.label_admin();

    let created = app.post("/control/v1/labels", &admin, staff_only()).await;
    assert_eq!(created.ok(201)["name"], "Staff Only");
    assert_eq!(
        created.headers["location"],
        "/control/v1/labels/Staff%20Only"
    );
    app.post("/control/v1/labels", &admin, staff_only())
        .await
        .problem(409);
    let mut folded = staff_only();
    folded["name"] = json!("staff only");
    app.post("/control/v1/labels", &admin, folded)
        .await
        .problem(409);

    // Policies are validated; unknown fields and bad names are refused.
    let mut bad = staff_only();
    bad["name"] = json!("Bad");
    bad["policy"]["join_policies"] = json!([]);
    assert!(app
        .post("/control/v1/labels", &admin, bad.clone())
        .await
        .problem(422)
        .contains("join"));
    bad["policy"]["join_policies"] = json!(["open", "open"]);
    app.post("/control/v1/labels", &admin, bad.clone())
        .await
        .problem(422);
    bad["policy"]["join_policies"] = json!(["secret"]);
    app.post("/control/v1/labels", &admin, bad.clone())
        .await
        .problem(422);
    bad["policy"] = json!({"guests_allowed": true, "agents_allowed": true, "join_policies": ["open"], "sender_policy": "anyone", "extra": 1});
    app.post("/control/v1/labels", &admin, bad.clone())
        .await
        .problem(422);
    let mut bad = staff_only();
    bad["name"] = json!("x/../y");
    app.post("/control/v1/labels", &admin, bad)
        .await
        .problem(422);
    let mut bad = staff_only();
    bad["description"] = json!("d".repeat(2001));
    app.post("/control/v1/labels", &admin, bad)
        .await
        .problem(422);
    let mut bad = staff_only();
    bad["colour"] = json!("red");
    app.post("/control/v1/labels", &admin, bad)
        .await
        .problem(422);

    // Change: description and policy; the name in the path is the label.
    let change = json!({"description": "Now with agents", "policy": {"guests_allowed": false, "agents_allowed": true, "join_policies": ["open"], "sender_policy": "owners"}});
    let changed = app
        .send(
            Method::PUT,
            "/control/v1/labels/Staff%20Only",
            Some(&admin),
            Some(change.clone()),
        )
        .await;
    assert_eq!(changed.ok(200)["policy"]["agents_allowed"], true);
    assert_eq!(
        app.get("/control/v1/labels/Staff%20Only", &admin)
            .await
            .body["description"],
        "Now with agents"
    );
    app.send(
        Method::PUT,
        "/control/v1/labels/Missing",
        Some(&admin),
        Some(change.clone()),
    )
    .await
    .problem(404);
    let mut renamed = change.clone();
    renamed["name"] = json!("Other");
    app.send(
        Method::PUT,
        "/control/v1/labels/Staff%20Only",
        Some(&admin),
        Some(renamed),
    )
    .await
    .problem(422);

    // Delete.
    let del = app
        .send(
            Method::DELETE,
            "/control/v1/labels/Staff%20Only",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(del.status.as_u16(), 204, "{}", del.text);
    app.send(
        Method::DELETE,
        "/control/v1/labels/Staff%20Only",
        Some(&admin),
        None,
    )
    .await
    .problem(404);
    app.stop().await;
}

async fn a_label_in_use_cannot_be_deleted_nor_drop_a_join_policy_its_groups_use(kind: Backend) {
    let app = TestApp::spawn_on(kind).await;
    let admin = app.label_admin();
    let alice = app.member("alice");
    app.create(&alice, "Book Club", "General", "open").await;

    let detail = app
        .send(
            Method::DELETE,
            "/control/v1/labels/General",
            Some(&admin),
            None,
        )
        .await
        .problem(409);
    assert!(detail.contains("General"), "{detail}");
    let tighten = json!({"description": "Invite only now", "policy": {"guests_allowed": true, "agents_allowed": false, "join_policies": ["invite"], "sender_policy": "anyone"}});
    let detail = app
        .send(
            Method::PUT,
            "/control/v1/labels/General",
            Some(&admin),
            Some(tighten),
        )
        .await
        .problem(409);
    assert!(detail.contains("open"), "names the policy in use: {detail}");
    app.stop().await;
}

async fn the_catalog_audit_records_who_changed_a_label_and_in_which_request(kind: Backend) {
    let app = TestApp::spawn_on(kind).await;
    let admin = app.label_admin();
    app.send_with_request_id(
        Method::POST,
        "/control/v1/labels",
        &admin,
        Some(staff_only()),
        "req-create",
    )
    .await
    .ok(201);
    // An id that is not 1 to 128 characters of letters, digits and `-_.:@+/=` is replaced by a
    // fresh one before anything records it.
    let long = format!("req delete {}", "x".repeat(200));
    let deleted = app
        .send_with_request_id(
            Method::DELETE,
            "/control/v1/labels/Staff%20Only",
            &admin,
            None,
            &long,
        )
        .await;
    assert_eq!(deleted.status, 204);
    let bob = app.member("bob");
    let group = app.create(&bob, "Rowing", "General", "open").await;

    let page = app.get("/control/v1/audit", &admin).await;
    let entries = page.ok(200)["entries"].as_array().unwrap().clone();
    let created = entries
        .iter()
        .find(|e| e["action"] == "label.created")
        .unwrap();
    assert_eq!(created["actor"], "lena");
    assert_eq!(created["request_id"], "req-create");
    let deleted_entry = entries
        .iter()
        .find(|e| e["action"] == "label.deleted")
        .unwrap();
    assert_eq!(deleted_entry["actor"], "lena");
    let replaced = deleted_entry["request_id"].as_str().unwrap();
    assert!(
        uuid::Uuid::parse_str(replaced).is_ok(),
        "a fresh id, not the caller's: {replaced}"
    );
    // Without a client id the common layers give every request one, recorded too.
    let group_created = entries
        .iter()
        .find(|e| e["action"] == "group.created" && e["group_id"] == group.as_str())
        .unwrap();
    assert_eq!(group_created["actor"], "bob");
    assert!(group_created["request_id"]
        .as_str()
        .is_some_and(|r| !r.is_empty()));
    app.stop().await;
}

/// Anonymous posting is a label rule: off unless a label says so (a body without it included),
/// allowing it on a label that groups use waits for a second label-admin, and its groups show
/// their anonymous alias exactly while their label allows it.
async fn anonymous_posting_is_off_unless_a_label_allows_it_and_allowing_it_is_a_loosening(
    kind: Backend,
) {
    let app = TestApp::spawn_on(kind).await;
    let admin = app.label_admin();
    let second = app.token("lars", IdentityKind::Member, &["label-admin"]);
    let created = app.post("/control/v1/labels", &admin, staff_only()).await;
    assert_eq!(created.ok(201)["policy"]["anonymous_posting"], false);
    let hc = app
        .get("/control/v1/labels/Highly%20Confidential", &admin)
        .await;
    assert_eq!(
        hc.ok(200)["policy"]["anonymous_posting"],
        true,
        "the default"
    );
    let alice = app.member("alice");
    let id = app
        .active(&alice, "Night Shift", "Staff Only", "open")
        .await;
    let group = app.get(&format!("/control/v1/groups/{id}"), &alice).await;
    assert!(
        group.ok(200).get("anonymous_address").is_none(),
        "{}",
        group.body
    );

    // A change's body: the label without its name (the path names it).
    let change_to = |anonymous: bool| {
        let mut body = staff_only();
        body.as_object_mut().unwrap().remove("name");
        body["policy"]["anonymous_posting"] = json!(anonymous);
        body
    };
    let allow = change_to(true);
    let proposed = app
        .send(
            Method::PUT,
            "/control/v1/labels/Staff%20Only",
            Some(&admin),
            Some(allow.clone()),
        )
        .await;
    let change = proposed.ok(202)["id"].as_str().unwrap().to_string();
    let group = app.get(&format!("/control/v1/groups/{id}"), &alice).await;
    assert!(
        group.ok(200).get("anonymous_address").is_none(),
        "not before it is approved"
    );
    app.post(
        &format!("/control/v1/label-changes/{change}/approve"),
        &second,
        json!({}),
    )
    .await
    .ok(200);
    let group = app.get(&format!("/control/v1/groups/{id}"), &alice).await;
    let address = group.ok(200)["contact_address"]
        .as_str()
        .unwrap()
        .to_string();
    let (local, domain) = address.split_once('@').unwrap();
    assert_eq!(
        group.body["anonymous_address"],
        format!("{local}+anon@{domain}")
    );

    // Ending it is a tightening: it applies at once.
    app.send(
        Method::PUT,
        "/control/v1/labels/Staff%20Only",
        Some(&admin),
        Some(change_to(false)),
    )
    .await
    .ok(200);
    let group = app.get(&format!("/control/v1/groups/{id}"), &alice).await;
    assert!(
        group.ok(200).get("anonymous_address").is_none(),
        "{}",
        group.body
    );
    app.stop().await;
}

service_kit::backend_tests!(
    the_default_labels_are_readable_by_anyone_signed_in,
    only_label_admins_write_labels_whatever_the_body,
    label_admins_create_change_and_delete_labels_with_valid_policies,
    a_label_in_use_cannot_be_deleted_nor_drop_a_join_policy_its_groups_use,
    the_catalog_audit_records_who_changed_a_label_and_in_which_request,
    anonymous_posting_is_off_unless_a_label_allows_it_and_allowing_it_is_a_loosening,
);
