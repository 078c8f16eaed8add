//! Offboarding: operators only; relayed to the tenant; the same answer whatever the person's
//! memberships.

use crate::helpers::*;
use domain::IdentityKind;
use serde_json::json;

async fn only_operators_offboard_and_the_answer_says_nothing_about_the_person(kind: Backend) {
    let app = TestApp::spawn_on(kind).await;
    let url = "/control/v1/identities/offboard";
    app.post(url, &app.member("bob"), json!({"subject": "carol"}))
        .await
        .problem(403);
    let operator = app.token("otto", IdentityKind::Member, &["operator"]);
    app.post(url, &operator, json!({})).await.problem(422);
    app.post(url, &operator, json!({"email": "not-an-address"}))
        .await
        .problem(422);
    assert_eq!(
        *app.tenant.offboarded.lock().unwrap(),
        0,
        "refusals reach nobody"
    );

    let known = app.post(url, &operator, json!({"subject": "carol"})).await;
    let unknown = app
        .post(url, &operator, json!({"email": "nobody@corp.example"}))
        .await;
    assert_eq!(known.ok(202), unknown.ok(202));
    assert_eq!(*app.tenant.offboarded.lock().unwrap(), 2);

    app.tenant.set_up(false);
    app.post(url, &operator, json!({"subject": "carol"}))
        .await
        .problem(503);
    app.stop().await;
}

service_kit::backend_tests!(only_operators_offboard_and_the_answer_says_nothing_about_the_person,);
