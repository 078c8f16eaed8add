//! Apps (relying parties), their resources and the groups that guard them: operators register
//! apps and resources, owners bind their groups within the label ranks, and membership-api alone
//! looks an app up.

use crate::helpers::*;
use auth::ServiceSigner;
use domain::{IdentityKind, ServiceName};
use http::Method;
use serde_json::{json, Value};

const APPS: &str = "/control/v1/relying-parties";
const LOOKUP: &str = control_client::RELYING_PARTY_PATH;

fn operator(app: &TestApp) -> String {
    app.token("olga", IdentityKind::Member, &["operator"])
}

/// Registers an app and answers its body (with the credential).
async fn register(app: &TestApp, name: &str, audience: &str) -> Value {
    let res = app
        .post(
            APPS,
            &operator(app),
            json!({"name": name, "audience": audience}),
        )
        .await;
    res.ok(201).clone()
}

/// Adds a resource and answers its id.
async fn resource(app: &TestApp, app_id: &str, name: &str, label: &str) -> String {
    let res = app
        .post(
            &format!("{APPS}/{app_id}/resources"),
            &operator(app),
            json!({"name": name, "label": label}),
        )
        .await;
    res.ok(201)["id"].as_str().unwrap().to_string()
}

fn binding(group: &str, resource: &str) -> String {
    format!("/control/v1/groups/{group}/bindings/{resource}")
}

async fn audit_actions(app: &TestApp) -> Vec<String> {
    let res = app
        .get("/control/v1/audit?limit=1000", &app.label_admin())
        .await;
    res.ok(200)["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect()
}

async fn version(app: &TestApp) -> String {
    let token = app.membership.mint(ServiceName::ControlApi);
    app.get(control_client::VERSION_PATH, &token).await.ok(200)["version"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn an_operator_registers_an_app_whose_credential_is_shown_once(kind: Backend) {
    let app = TestApp::spawn_on(kind).await;
    let before = version(&app).await;
    let body = register(&app, "Payroll", "https://payroll.example").await;
    let id = body["id"].as_str().unwrap().to_string();
    let credential = body["credential"].as_str().unwrap().to_string();
    assert_eq!(credential.len(), 43, "32 bytes, base64url");
    assert_eq!(body["enabled"], true);
    assert_eq!(body["audience"], "https://payroll.example");
    assert_ne!(version(&app).await, before, "the catalog version moves");

    let op = operator(&app);
    let listed = app.get(APPS, &op).await;
    let got = app.get(&format!("{APPS}/{id}"), &op).await;
    for text in [&listed.text, &got.text] {
        assert!(
            !text.contains(&credential),
            "the credential is never shown again"
        );
        assert!(
            !text.contains(&control_api::credential_sha256(&credential)),
            "nor its hash"
        );
    }
    assert_eq!(listed.ok(200)[0]["id"], id.as_str());
    assert_eq!(got.ok(200)["name"], "Payroll");

    // Rotating answers a new credential once; membership-api sees only its hash.
    let rotated = app
        .post(&format!("{APPS}/{id}/credential"), &op, json!({}))
        .await;
    let fresh = rotated.ok(200)["credential"].as_str().unwrap().to_string();
    assert_ne!(fresh, credential);
    let token = app.membership.mint(ServiceName::ControlApi);
    let looked = app.post(LOOKUP, &token, json!({"id": id})).await;
    assert_eq!(
        looked.ok(200)["credential_sha256"],
        control_api::credential_sha256(&fresh).as_str()
    );

    // Disabled, then enabled again.
    let off = app
        .patch(&format!("{APPS}/{id}"), &op, json!({"enabled": false}))
        .await;
    assert_eq!(off.ok(200)["enabled"], false);
    let looked = app.post(LOOKUP, &token, json!({"id": id})).await;
    assert_eq!(looked.ok(200)["enabled"], false);

    // A second app may not take the audience.
    app.post(
        APPS,
        &op,
        json!({"name": "Other", "audience": "https://payroll.example"}),
    )
    .await
    .problem(409);

    let actions = audit_actions(&app).await;
    for a in [
        "relying-party.registered",
        "relying-party.credential-rotated",
        "relying-party.disabled",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
    }
    app.stop().await;
}

async fn only_operators_manage_apps_and_bad_input_changes_nothing(kind: Backend) {
    let app = TestApp::spawn_on(kind).await;
    let op = operator(&app);
    let body = json!({"name": "Payroll", "audience": "payroll"});
    for token in [app.member("alice"), app.label_admin()] {
        app.post(APPS, &token, body.clone()).await.problem(403);
        app.get(APPS, &token).await.problem(403);
    }
    for bad in [
        json!({"name": "", "audience": "payroll"}),
        json!({"name": "Payroll", "audience": "has space"}),
        json!({"name": "Payroll"}),
        json!({"name": "Payroll", "audience": "payroll", "credential": "mine"}),
        json!({"name": "x".repeat(121), "audience": "payroll"}),
    ] {
        app.post(APPS, &op, bad).await.problem(422);
    }
    app.get(&format!("{APPS}/not-a-uuid"), &op)
        .await
        .problem(422);
    app.get(&format!("{APPS}/{}", uuid::Uuid::new_v4()), &op)
        .await
        .problem(404);
    assert_eq!(
        app.get(APPS, &op).await.ok(200),
        &json!([]),
        "nothing written"
    );

    let id = register(&app, "Payroll", "payroll").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let resources = format!("{APPS}/{id}/resources");
    for (bad, status) in [
        (json!({"name": "Bad Name", "label": "General"}), 422),
        (json!({"name": "report", "label": "No Such Label"}), 422),
        (json!({"name": "report"}), 422),
    ] {
        app.post(&resources, &op, bad).await.problem(status);
    }
    app.post(
        &format!("{APPS}/{}/resources", uuid::Uuid::new_v4()),
        &op,
        json!({"name": "report", "label": "General"}),
    )
    .await
    .problem(404);
    app.patch(&format!("{APPS}/{id}"), &op, json!({"enabled": "no"}))
        .await
        .problem(422);
    let got = app.get(&format!("{APPS}/{id}"), &op).await;
    assert_eq!(got.ok(200)["resources"], json!([]));
    assert_eq!(got.body["enabled"], true);

    // Resource names are unique within an app, and an app has at most 100.
    resource(&app, &id, "report", "General").await;
    app.post(
        &resources,
        &op,
        json!({"name": "report", "label": "General"}),
    )
    .await
    .problem(409);
    for i in 1..100 {
        resource(&app, &id, &format!("r{i}"), "General").await;
    }
    assert!(app
        .post(
            &resources,
            &op,
            json!({"name": "one-too-many", "label": "General"})
        )
        .await
        .problem(409)
        .contains("100"));
    app.stop().await;
}

async fn owners_bind_groups_only_to_resources_their_label_ranks_for(kind: Backend) {
    let app = TestApp::spawn_on(kind).await;
    let alice = app.member("alice");
    let general = app.active(&alice, "Everyone", "General", "open").await;
    let conf = app
        .active(&alice, "Staff", "Confidential", "approval")
        .await;
    let hc = app
        .active(&alice, "Board", "Highly Confidential", "invite")
        .await;
    let id = register(&app, "Reports", "reports").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let secret = resource(&app, &id, "payroll-report", "Highly Confidential").await;
    let internal = resource(&app, &id, "handbook", "Confidential").await;

    // Owners see what they may choose from, with labels and ranks.
    let choices = app.get("/control/v1/resources", &alice).await;
    let choices = choices.ok(200).as_array().unwrap().clone();
    assert_eq!(choices.len(), 2);
    assert_eq!(choices[0]["app_name"], "Reports");
    assert_eq!(choices[0]["name"], "handbook");
    assert_eq!(choices[1]["label"]["name"], "Highly Confidential");
    assert_eq!(choices[1]["label"]["policy"]["rank"], 20);

    // Highly Confidential to a General group: refused with the reason, nothing written.
    let before = audit_actions(&app).await.len();
    let refused = app
        .send(Method::PUT, &binding(&general, &secret), Some(&alice), None)
        .await;
    let detail = refused.problem(409);
    assert_eq!(refused.body["type"], "urn:hush:problem:binding-refused");
    assert!(detail.contains("'General' (rank 0)"), "{detail}");
    assert!(
        detail.contains("'Highly Confidential' (rank 20)"),
        "{detail}"
    );
    let refused = app
        .send(Method::PUT, &binding(&conf, &secret), Some(&alice), None)
        .await;
    refused.problem(409);
    assert_eq!(audit_actions(&app).await.len(), before, "nothing audited");
    let token = app.membership.mint(ServiceName::ControlApi);
    let looked = app.post(LOOKUP, &token, json!({"id": id})).await;
    for r in looked.ok(200)["resources"].as_array().unwrap() {
        assert_eq!(r["groups"], json!([]), "nothing written");
    }

    // Equal rank, and higher rank: allowed; again: unchanged.
    let v0 = version(&app).await;
    let bound = app
        .send(Method::PUT, &binding(&hc, &secret), Some(&alice), None)
        .await;
    assert_eq!(bound.ok(201)["name"], "payroll-report");
    assert_ne!(version(&app).await, v0, "the catalog version moves");
    app.send(Method::PUT, &binding(&hc, &secret), Some(&alice), None)
        .await
        .ok(200);
    app.send(Method::PUT, &binding(&hc, &internal), Some(&alice), None)
        .await
        .ok(201);
    app.send(Method::PUT, &binding(&conf, &internal), Some(&alice), None)
        .await
        .ok(201);
    let listed = app
        .get(&format!("/control/v1/groups/{hc}/bindings"), &alice)
        .await;
    let names: Vec<&str> = listed
        .ok(200)
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["handbook", "payroll-report"]);

    // Unknown resource, bad ids.
    app.send(
        Method::PUT,
        &binding(&hc, &uuid::Uuid::new_v4().to_string()),
        Some(&alice),
        None,
    )
    .await
    .problem(404);
    app.send(Method::PUT, &binding("nope", &secret), Some(&alice), None)
        .await
        .problem(422);
    app.send(Method::PUT, &binding(&hc, "nope"), Some(&alice), None)
        .await
        .problem(422);

    // Unbinding.
    let gone = app
        .send(Method::DELETE, &binding(&hc, &internal), Some(&alice), None)
        .await;
    assert_eq!(gone.status.as_u16(), 204, "{}", gone.text);
    app.send(Method::DELETE, &binding(&hc, &internal), Some(&alice), None)
        .await
        .problem(404);
    let listed = app
        .get(&format!("/control/v1/groups/{hc}/bindings"), &alice)
        .await;
    assert_eq!(listed.ok(200).as_array().unwrap().len(), 1);

    let actions = audit_actions(&app).await;
    assert_eq!(actions.iter().filter(|a| *a == "group.bound").count(), 3);
    assert_eq!(actions.iter().filter(|a| *a == "group.unbound").count(), 1);

    // The label a resource uses cannot be deleted.
    let admin = app.label_admin();
    let del = app
        .send(
            Method::DELETE,
            "/control/v1/labels/Highly%20Confidential",
            Some(&admin),
            None,
        )
        .await;
    assert!(del.problem(409).contains("resources"));
    app.stop().await;
}

async fn only_owners_bind_and_non_owners_are_answered_as_for_groups(kind: Backend) {
    let app = TestApp::spawn_on(kind).await;
    let alice = app.member("alice");
    let bob = app.member("bob");
    let guest = app.guest("gus");
    let staff = app
        .active(&alice, "Staff", "Confidential", "approval")
        .await;
    let id = register(&app, "Wiki", "wiki").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let page = resource(&app, &id, "page", "General").await;

    // Bob may see the group but does not own it: 403 not-owner, as for edits.
    let res = app
        .send(Method::PUT, &binding(&staff, &page), Some(&bob), None)
        .await;
    res.problem(403);
    assert_eq!(res.body["type"], "urn:hush:problem:not-owner");
    app.get(&format!("/control/v1/groups/{staff}/bindings"), &bob)
        .await
        .problem(403);
    app.send(Method::DELETE, &binding(&staff, &page), Some(&bob), None)
        .await
        .problem(403);
    // A guest may not see a Confidential group at all: 404, as for a group that does not exist.
    app.send(Method::PUT, &binding(&staff, &page), Some(&guest), None)
        .await
        .problem(404);
    app.get(&format!("/control/v1/groups/{staff}/bindings"), &guest)
        .await
        .problem(404);
    app.send(Method::PUT, &binding(&staff, &page), None, None)
        .await
        .problem(401);

    let token = app.membership.mint(ServiceName::ControlApi);
    let looked = app.post(LOOKUP, &token, json!({"id": id})).await;
    assert_eq!(looked.ok(200)["resources"][0]["groups"], json!([]));
    app.stop().await;
}

async fn a_group_is_not_moved_below_a_resource_it_guards(kind: Backend) {
    let app = TestApp::spawn_on(kind).await;
    let alice = app.member("alice");
    let board = app
        .active(&alice, "Board", "Highly Confidential", "invite")
        .await;
    let id = register(&app, "Reports", "reports").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let secret = resource(&app, &id, "payroll-report", "Highly Confidential").await;
    app.send(Method::PUT, &binding(&board, &secret), Some(&alice), None)
        .await
        .ok(201);

    let relabel = format!("/control/v1/groups/{board}/label");
    for label in ["Confidential", "General"] {
        let res = app
            .send(
                Method::PUT,
                &relabel,
                Some(&alice),
                Some(json!({ "label": label })),
            )
            .await;
        let detail = res.problem(409);
        assert_eq!(res.body["type"], "urn:hush:problem:binding-refused");
        assert!(detail.contains("unbind"), "{detail}");
    }
    let group = app
        .get(&format!("/control/v1/groups/{board}"), &alice)
        .await;
    assert_eq!(group.ok(200)["label"], "Highly Confidential");

    // Once unbound, the move is not refused (it loosens the group: filed for approval).
    let gone = app
        .send(
            Method::DELETE,
            &binding(&board, &secret),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(gone.status.as_u16(), 204, "{}", gone.text);
    let filed = app
        .send(
            Method::PUT,
            &relabel,
            Some(&alice),
            Some(json!({"label": "Confidential"})),
        )
        .await;
    let move_id = filed.ok(202)["id"].as_str().unwrap().to_string();
    // Bound again while the move waits: its approval is refused as well.
    app.send(Method::PUT, &binding(&board, &secret), Some(&alice), None)
        .await
        .ok(201);
    let approved = app
        .post(
            &format!("/control/v1/relabels/{move_id}/approve"),
            &app.label_admin(),
            json!({}),
        )
        .await;
    approved.problem(409);
    assert_eq!(approved.body["type"], "urn:hush:problem:binding-refused");
    let group = app
        .get(&format!("/control/v1/groups/{board}"), &alice)
        .await;
    assert_eq!(group.ok(200)["label"], "Highly Confidential");
    app.stop().await;
}

async fn membership_api_looks_an_app_up_by_id_or_audience_with_its_guards(kind: Backend) {
    let app = TestApp::spawn_on(kind).await;
    let alice = app.member("alice");
    let board = app
        .active(&alice, "Board", "Highly Confidential", "invite")
        .await;
    let staff = app
        .active(&alice, "Staff", "Confidential", "approval")
        .await;
    let body = register(&app, "Reports", "https://reports.example").await;
    let id = body["id"].as_str().unwrap().to_string();
    let credential = body["credential"].as_str().unwrap().to_string();
    let secret = resource(&app, &id, "payroll-report", "Highly Confidential").await;
    let handbook = resource(&app, &id, "handbook", "Confidential").await;
    for (g, r) in [(&board, &secret), (&board, &handbook), (&staff, &handbook)] {
        app.send(Method::PUT, &binding(g, r), Some(&alice), None)
            .await
            .ok(201);
    }

    let token = app.membership.mint(ServiceName::ControlApi);
    let by_id = app.post(LOOKUP, &token, json!({"id": id})).await;
    let by_aud = app
        .post(
            LOOKUP,
            &token,
            json!({"audience": "https://reports.example"}),
        )
        .await;
    assert_eq!(by_id.ok(200), by_aud.ok(200));
    let view: control_client::RelyingPartyView =
        serde_json::from_value(by_id.body.clone()).unwrap();
    assert_eq!(view.id.to_string(), id);
    assert_eq!(
        view.credential_sha256,
        control_api::credential_sha256(&credential)
    );
    assert!(!by_id.text.contains(&credential));
    assert!(view.enabled);
    let names: Vec<&str> = view.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["handbook", "payroll-report"]);
    let handbook_guards: Vec<String> = view.resources[0]
        .groups
        .iter()
        .map(|g| g.group.to_string())
        .collect();
    let mut expected = vec![board.clone(), staff.clone()];
    expected.sort();
    assert_eq!(handbook_guards, expected);
    assert_eq!(view.resources[1].label.policy.rank, 20);
    let guard = &view.resources[1].groups[0];
    assert_eq!(guard.group.to_string(), board);
    assert_eq!(guard.state, domain::GroupState::Active);
    assert_eq!(guard.label.name.as_str(), "Highly Confidential");
    assert_eq!(guard.label.policy.rank, 20);
    assert!(!by_id.text.contains("alice"), "no owner, no member");

    // Unknown: 404.
    app.post(LOOKUP, &token, json!({"id": uuid::Uuid::new_v4()}))
        .await
        .problem(404);
    app.post(LOOKUP, &token, json!({"audience": "nobody"}))
        .await
        .problem(404);
    app.stop().await;
}

async fn the_relying_party_lookup_refuses_other_callers_and_bad_bodies(kind: Backend) {
    let app = TestApp::spawn_on(kind).await;
    let id = register(&app, "Wiki", "wiki").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let body = json!({ "id": id });
    let stranger = ServiceSigner::generate(ServiceName::MembershipApi).unwrap();
    for (what, token) in [
        ("a user's token", Some(app.member("alice"))),
        ("an operator's token", Some(operator(&app))),
        (
            "a token for the tenant",
            Some(app.membership.mint(ServiceName::IsolatedTenant)),
        ),
        (
            "an untrusted key",
            Some(stranger.mint(ServiceName::ControlApi)),
        ),
        ("no token", None),
    ] {
        let res = app
            .send(Method::POST, LOOKUP, token.as_deref(), Some(body.clone()))
            .await;
        assert_eq!(res.status.as_u16(), 401, "{what}: {}", res.text);
        res.problem(401);
    }
    // bulk-api may look groups up, but not apps.
    let bulk = app.bulk.mint(ServiceName::ControlApi);
    app.post(LOOKUP, &bulk, body.clone()).await.problem(403);

    let token = app.membership.mint(ServiceName::ControlApi);
    for bad in [
        json!({}),
        json!({"id": id, "audience": "wiki"}),
        json!({"id": "not-a-uuid"}),
        json!({"id": id, "subject": "alice"}),
    ] {
        app.post(LOOKUP, &token, bad).await.problem(422);
    }
    app.send_raw(
        Method::POST,
        LOOKUP,
        Some(&token),
        Some(("application/json", "{".into())),
    )
    .await
    .problem(400);
    app.stop().await;
}

async fn labels_carry_a_rank_and_raising_one_in_use_waits_for_a_second_label_admin(kind: Backend) {
    let app = TestApp::spawn_on(kind).await;
    let admin = app.label_admin();
    let second = app.token("lars", IdentityKind::Member, &["label-admin"]);
    let ranks: Vec<(String, u64)> = app
        .get("/control/v1/labels", &admin)
        .await
        .ok(200)
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap().to_string(),
                l["policy"]["rank"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ranks,
        [
            ("Confidential".to_string(), 10),
            ("General".to_string(), 0),
            ("Highly Confidential".to_string(), 20)
        ]
    );
    let label = |rank: Value| {
        json!({"name": "Team", "description": "", "policy": {
            "guests_allowed": false, "agents_allowed": false, "join_policies": ["open"],
            "sender_policy": "anyone", "rank": rank}})
    };
    for bad in [json!(1001), json!(-1), json!("high")] {
        app.post("/control/v1/labels", &admin, label(bad))
            .await
            .problem(422);
    }
    let created = app
        .post("/control/v1/labels", &admin, label(json!(5)))
        .await;
    assert_eq!(created.ok(201)["policy"]["rank"], 5);
    app.active(&app.member("alice"), "Team A", "Team", "open")
        .await;

    let change = |rank: u64| {
        let mut body = label(json!(rank));
        body.as_object_mut().unwrap().remove("name");
        body
    };
    let put = |rank| {
        app.send(
            Method::PUT,
            "/control/v1/labels/Team",
            Some(&admin),
            Some(change(rank)),
        )
    };
    // Raising it lets its groups guard more: a second label-admin must approve.
    let proposed = put(15).await;
    let id = proposed.ok(202)["id"].as_str().unwrap().to_string();
    assert_eq!(proposed.body["policy"]["rank"], 15);
    let now = app.get("/control/v1/labels/Team", &admin).await;
    assert_eq!(now.ok(200)["policy"]["rank"], 5, "not before approval");
    app.post(
        &format!("/control/v1/label-changes/{id}/approve"),
        &admin,
        json!({}),
    )
    .await
    .problem(403);
    app.post(
        &format!("/control/v1/label-changes/{id}/approve"),
        &second,
        json!({}),
    )
    .await
    .ok(200);
    let now = app.get("/control/v1/labels/Team", &admin).await;
    assert_eq!(now.ok(200)["policy"]["rank"], 15);
    // Lowering it is a tightening: at once.
    assert_eq!(put(3).await.ok(200)["policy"]["rank"], 3);
    app.stop().await;
}

service_kit::backend_tests!(
    labels_carry_a_rank_and_raising_one_in_use_waits_for_a_second_label_admin,
    an_operator_registers_an_app_whose_credential_is_shown_once,
    only_operators_manage_apps_and_bad_input_changes_nothing,
    owners_bind_groups_only_to_resources_their_label_ranks_for,
    only_owners_bind_and_non_owners_are_answered_as_for_groups,
    a_group_is_not_moved_below_a_resource_it_guards,
    membership_api_looks_an_app_up_by_id_or_audience_with_its_guards,
    the_relying_party_lookup_refuses_other_callers_and_bad_bodies,
);
