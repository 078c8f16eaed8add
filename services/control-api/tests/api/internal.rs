//! The internal lookup: service tokens only, from membership-api and bulk-api only.

use crate::helpers::*;
use auth::ServiceSigner;
use domain::ServiceName;
use http::Method;
use serde_json::json;

const LOOKUP: &str = control_client::LOOKUP_PATH;

async fn membership_api_and_bulk_api_look_groups_up_by_id(kind: Backend) {
    let app = TestApp::spawn_on(kind).await;
    let alice = app.member("alice");
    let a = app
        .active(&alice, "Alpha", "Confidential", "approval")
        .await;
    let b = app.create(&alice, "Beta", "General", "open").await;
    let unknown = uuid::Uuid::new_v4().to_string();

    for signer in [&app.membership, &app.bulk] {
        let token = signer.mint(ServiceName::ControlApi);
        let res = app
            .post(LOOKUP, &token, json!({"ids": [a, b, unknown]}))
            .await;
        let mut groups = res.ok(200)["groups"].as_array().unwrap().clone();
        groups.sort_by_key(|g| g["name"].as_str().unwrap().to_string());
        assert_eq!(groups.len(), 2, "unknown ids are left out");
        assert_eq!(groups[0]["id"], a.as_str());
        assert_eq!(groups[0]["state"], "active");
        assert_eq!(groups[0]["label"]["name"], "Confidential");
        assert_eq!(groups[0]["label"]["policy"]["guests_allowed"], false);
        assert_eq!(groups[0]["join_policy"], "approval");
        assert_eq!(groups[0]["owners"], json!(["alice"]));
        assert_eq!(groups[1]["state"], "provisioning");
    }
    app.stop().await;
}

async fn the_lookup_refuses_users_strangers_and_bad_requests(kind: Backend) {
    let app = TestApp::spawn_on(kind).await;
    let id = app
        .create(&app.member("alice"), "Alpha", "General", "open")
        .await;
    let body = json!({"ids": [id]});
    let stranger = ServiceSigner::generate(ServiceName::MembershipApi).unwrap();
    for (what, token) in [
        ("a user's token", Some(app.member("alice"))),
        ("a label admin's token", Some(app.label_admin())),
        (
            "a token for the tenant",
            Some(app.membership.mint(ServiceName::IsolatedTenant)),
        ),
        (
            "an untrusted key",
            Some(stranger.mint(ServiceName::ControlApi)),
        ),
        ("garbage", Some("not-a-jwt".to_string())),
        ("no token", None),
    ] {
        let res = app
            .send(Method::POST, LOOKUP, token.as_deref(), Some(body.clone()))
            .await;
        assert_eq!(res.status.as_u16(), 401, "{what}: {}", res.text);
        res.problem(401);
    }
    let token = app.membership.mint(ServiceName::ControlApi);
    app.post(LOOKUP, &token, json!({"ids": [id], "subject": "bob"}))
        .await
        .problem(422);
    app.post(LOOKUP, &token, json!({"ids": ["nope"]}))
        .await
        .problem(422);
    let many: Vec<String> = (0..501).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    assert!(app
        .post(LOOKUP, &token, json!({"ids": many}))
        .await
        .problem(422)
        .contains("500"));
    app.stop().await;
}

service_kit::backend_tests!(
    membership_api_and_bulk_api_look_groups_up_by_id,
    the_lookup_refuses_users_strangers_and_bad_requests,
);
