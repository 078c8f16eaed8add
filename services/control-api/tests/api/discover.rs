//! Discovery: active groups whose label admits the caller, found by substring, a page at a time.

use crate::helpers::*;
use domain::IdentityKind;
use serde_json::Value;

fn names(res: &Answer) -> Vec<String> {
    res.body["groups"]
        .as_array()
        .unwrap_or_else(|| panic!("no groups in {}", res.text))
        .iter()
        .map(|g| g["name"].as_str().unwrap().to_string())
        .collect()
}

async fn discovery_lists_active_groups_the_callers_kind_may_enter(kind: Backend) {
    let app = TestApp::spawn_on(kind).await;
    let alice = app.member("alice");
    app.active(&alice, "Open Forum", "General", "open").await;
    app.active(&alice, "Hidden Forum", "Confidential", "approval")
        .await;
    app.create(&alice, "Pending Forum", "General", "open").await;

    let bob = app
        .get("/control/v1/groups?q=FORUM", &app.member("bob"))
        .await;
    assert_eq!(
        names(&bob),
        ["Hidden Forum", "Open Forum"],
        "provisioning groups are not listed"
    );
    let gina = app
        .get("/control/v1/groups?q=forum", &app.guest("gina"))
        .await;
    assert_eq!(names(&gina), ["Open Forum"]);
    let robot = app
        .get(
            "/control/v1/groups?q=forum",
            &app.token("robot", IdentityKind::Agent, &[]),
        )
        .await;
    assert!(names(&robot).is_empty());
    // Others are not owners and see no counts here either.
    let first = &bob.body["groups"][0];
    assert!(
        first["is_owner"] == false && first.get("member_count").is_none(),
        "{first}"
    );
    // Matching is on the description too, and LIKE's wildcards are plain text.
    assert_eq!(
        names(&app.get("/control/v1/groups?q=about%20open", &alice).await),
        ["Open Forum"]
    );
    assert!(names(&app.get("/control/v1/groups?q=%25", &alice).await).is_empty());
    assert!(names(&app.get("/control/v1/groups?q=_", &alice).await).is_empty());
    app.stop().await;
}

async fn limits_and_cursors_are_checked_and_pages_walk_every_group_once(kind: Backend) {
    let app = TestApp::spawn_on(kind).await;
    let alice = app.member("alice");
    for i in 0..7 {
        app.create(&alice, &format!("Team {i}"), "General", "open")
            .await;
    }
    app.settle().await;

    for bad in ["0", "201", "-3", "many", "1.5"] {
        let detail = app
            .get(&format!("/control/v1/groups?limit={bad}"), &alice)
            .await
            .problem(422);
        assert!(detail.contains("limit"), "{bad}: {detail}");
    }
    app.get("/control/v1/groups?limit=200", &alice)
        .await
        .ok(200);
    let long = "q".repeat(201);
    app.get(&format!("/control/v1/groups?q={long}"), &alice)
        .await
        .problem(422);
    assert!(app
        .get("/control/v1/groups?cursor=bogus", &alice)
        .await
        .problem(422)
        .contains("cursor"));

    let all = app.get("/control/v1/groups", &alice).await;
    assert_eq!(names(&all).len(), 7);
    assert!(
        all.body.get("next_cursor").is_none(),
        "one page: {}",
        all.text
    );

    let mut walked = Vec::new();
    let mut uri = "/control/v1/groups?limit=3".to_string();
    loop {
        let page = app.get(&uri, &alice).await;
        page.ok(200);
        assert!(names(&page).len() <= 3);
        walked.extend(names(&page));
        match &page.body["next_cursor"] {
            Value::String(c) => uri = format!("/control/v1/groups?limit=3&cursor={c}"),
            _ => break,
        }
    }
    let want: Vec<String> = (0..7).map(|i| format!("Team {i}")).collect();
    assert_eq!(walked, want);
    app.stop().await;
}

service_kit::backend_tests!(
    discovery_lists_active_groups_the_callers_kind_may_enter,
    limits_and_cursors_are_checked_and_pages_walk_every_group_once,
);
