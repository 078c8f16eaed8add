//! The first slice of the product through all four services: create → provisioned → discover
//! → join → my groups → am I a member → leave; and the provisioning saga with the tenant down.

use crate::helpers::*;
use hush::stack::Part;
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;

async fn a_member_creates_discovers_joins_sees_and_leaves_a_group(kind: Backend) {
    let app = App::spawn_on(kind).await;
    let alice = app.member("alice");
    let bob = app.member("bob");

    // Create: the group is provisioning until the tenant confirms, then active.
    let created = app
        .post(
            &app.control("/groups"),
            &alice,
            json!({"name": "Parents at Work", "description": "Support for working parents", "label": "General", "join_policy": "open"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.text);
    assert_eq!(created.body["state"], "provisioning");
    let id = created.body["id"].as_str().unwrap().to_string();
    let group = app
        .wait_state(&alice, &id, "active", Duration::from_secs(20))
        .await;
    assert!(group["contact_address"]
        .as_str()
        .unwrap()
        .ends_with("@groups.test.example"));
    assert_eq!(group["owners"], json!(["alice"]));

    // Discover: bob finds it by a word of its name, case-insensitively.
    let found = app.get(&app.control("/groups?q=PARENTS"), &bob).await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.text);
    let ids: Vec<&str> = found.body["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["id"].as_str())
        .collect();
    assert_eq!(ids, vec![id.as_str()]);

    // Join, then "my groups" and "am I a member".
    let joined = app
        .post(
            &app.membership(&format!("/groups/{id}/join")),
            &bob,
            json!({}),
        )
        .await;
    assert_eq!(joined.status, StatusCode::OK, "{}", joined.text);
    assert_eq!(joined.body["member"], true);
    let mine = app.get(&app.membership("/me/groups"), &bob).await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.text);
    assert_eq!(mine.body["groups"][0]["id"], id.as_str());
    assert_eq!(mine.body["groups"][0]["name"], "Parents at Work");
    let me = app
        .get(&app.membership(&format!("/groups/{id}/me")), &bob)
        .await;
    assert_eq!(me.body["member"], true);
    let alice_me = app
        .get(&app.membership(&format!("/groups/{id}/me")), &alice)
        .await;
    assert_eq!(
        alice_me.body["member"], false,
        "owning a group is not being in it"
    );

    // Leave: gone from my groups at once.
    let left = app
        .post(
            &app.membership(&format!("/groups/{id}/leave")),
            &bob,
            json!({}),
        )
        .await;
    assert_eq!(left.status, StatusCode::OK, "{}", left.text);
    assert_eq!(left.body["member"], false);
    let mine = app.get(&app.membership("/me/groups"), &bob).await;
    assert_eq!(mine.body["groups"], json!([]));
    let me = app
        .get(&app.membership(&format!("/groups/{id}/me")), &bob)
        .await;
    assert_eq!(me.body["member"], false);

    app.stop().await;
}

async fn the_saga_keeps_a_group_provisioning_while_the_tenant_is_down_and_activates_it_when_back(
    kind: Backend,
) {
    let mut app = App::spawn_on(kind).await;
    let alice = app.member("alice");
    app.stop_part(Part::Tenant).await;

    let created = app
        .post(
            &app.control("/groups"),
            &alice,
            json!({"name": "Night Shift", "description": "", "label": "General", "join_policy": "open"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.text);
    let id = created.body["id"].as_str().unwrap().to_string();

    // While the tenant is down the group stays provisioning: never active half-made, never
    // discoverable, and nobody can join it (looked at once the saga has tried and failed).
    app.wait_saga_attempts(&id, 1, Duration::from_secs(20))
        .await;
    let g = app
        .get(&app.control(&format!("/groups/{id}")), &alice)
        .await;
    assert_eq!(g.body["state"], "provisioning", "{}", g.text);
    let found = app
        .get(&app.control("/groups?q=night"), &app.member("bob"))
        .await;
    assert_eq!(found.body["groups"], json!([]));
    let ready = app
        .http
        .get(format!("{}/readyz", app.urls.control))
        .send()
        .await
        .unwrap();
    assert_eq!(
        ready.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "readyz reports the tenant down"
    );

    // The tenant comes back: the saga retries with backoff and completes.
    app.start_part(Part::Tenant).await;
    app.wait_state(&alice, &id, "active", Duration::from_secs(45))
        .await;
    let joined = app
        .post(
            &app.membership(&format!("/groups/{id}/join")),
            &app.member("bob"),
            json!({}),
        )
        .await;
    assert_eq!(joined.status, StatusCode::OK, "{}", joined.text);

    app.stop().await;
}

async fn archiving_deprovisions_the_group_and_purges_its_membership(kind: Backend) {
    let app = App::spawn_on(kind).await;
    let alice = app.member("alice");
    let bob = app.member("bob");
    let id = app
        .active_group(&alice, "Old Project", "General", "open")
        .await;
    app.post(
        &app.membership(&format!("/groups/{id}/join")),
        &bob,
        json!({}),
    )
    .await;

    let other = app
        .post(
            &app.control(&format!("/groups/{id}/archive")),
            &bob,
            json!({}),
        )
        .await;
    other.assert_problem(403);
    let archived = app
        .post(
            &app.control(&format!("/groups/{id}/archive")),
            &alice,
            json!({}),
        )
        .await;
    assert_eq!(archived.status, StatusCode::ACCEPTED, "{}", archived.text);
    app.wait_state(&alice, &id, "archived", Duration::from_secs(20))
        .await;

    let mine = app.get(&app.membership("/me/groups"), &bob).await;
    assert_eq!(mine.body["groups"], json!([]), "membership purged");
    let me = app
        .get(&app.membership(&format!("/groups/{id}/me")), &bob)
        .await;
    assert_eq!(me.body["member"], false);
    let join = app
        .post(
            &app.membership(&format!("/groups/{id}/join")),
            &bob,
            json!({}),
        )
        .await;
    assert!(
        join.status.is_client_error(),
        "an archived group takes no members: {}",
        join.text
    );

    app.stop().await;
}

async fn owners_edit_within_the_label_and_cannot_change_it(kind: Backend) {
    let app = App::spawn_on(kind).await;
    let alice = app.member("alice");
    let id = app
        .active_group(&alice, "Editors", "Confidential", "approval")
        .await;
    let url = app.control(&format!("/groups/{id}"));

    let res = app
        .call(
            reqwest::Method::PATCH,
            &url,
            Some(&alice),
            Some(json!({"label": "General"})),
        )
        .await;
    res.assert_problem(422);
    let res = app
        .call(
            reqwest::Method::PATCH,
            &url,
            Some(&alice),
            Some(json!({"join_policy": "open"})),
        )
        .await;
    res.assert_problem(422);
    let res = app
        .call(reqwest::Method::PATCH, &url, Some(&alice), Some(json!({"join_policy": "invite", "description": "New words", "owners": ["alice", "carol"]})))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(res.body["join_policy"], "invite");
    assert_eq!(res.body["label"], "Confidential");
    let res = app
        .call(
            reqwest::Method::PATCH,
            &url,
            Some(&app.member("mallory")),
            Some(json!({"description": "x"})),
        )
        .await;
    assert!(matches!(res.status.as_u16(), 403 | 404), "{}", res.text);

    app.stop().await;
}

/// membership-api keeps control-api's lookups for self-joins (issue 17); a change in
/// control-api governs them within the documented bound (HUSH_CATALOG_POLL_MS, 250 ms, plus a
/// round trip). Here: an open group, joined once (so its lookup is kept), is switched to
/// approval by its owner; the next self-join files a request instead, within a second.
async fn a_join_policy_closed_in_control_api_governs_self_joins_within_the_poll_bound(
    kind: Backend,
) {
    let app = App::spawn_on(kind).await;
    let alice = app.member("alice");
    let g = app
        .active_group(&alice, "Kept Lookups", "General", "open")
        .await;
    let (a, url) = (&app, app.membership(&format!("/groups/{g}/join")));
    let url = &url;
    let join = async |who: &str| a.post(url, &a.member(who), json!({})).await;
    assert_eq!(join("bob").await.status, StatusCode::OK);
    assert_eq!(
        join("bea").await.status,
        StatusCode::OK,
        "served from the kept lookup"
    );
    let res = app
        .call(
            reqwest::Method::PATCH,
            &app.control(&format!("/groups/{g}")),
            Some(&alice),
            Some(json!({"join_policy": "approval"})),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    let changed = std::time::Instant::now();
    let mut n = 0;
    loop {
        n += 1;
        let res = join(&format!("carl-{n}")).await;
        if res.status == StatusCode::ACCEPTED {
            assert_eq!(res.body["request"]["status"], "pending", "{}", res.text);
            break;
        }
        assert_eq!(res.status, StatusCode::OK, "{}", res.text);
        assert!(
            changed.elapsed() < Duration::from_secs(1),
            "self-joins still admitted {:?} after the join policy closed",
            changed.elapsed()
        );
    }
    app.stop().await;
}

service_kit::backend_tests!(
    a_member_creates_discovers_joins_sees_and_leaves_a_group,
    a_join_policy_closed_in_control_api_governs_self_joins_within_the_poll_bound,
    the_saga_keeps_a_group_provisioning_while_the_tenant_is_down_and_activates_it_when_back,
    archiving_deprovisions_the_group_and_purges_its_membership,
    owners_edit_within_the_label_and_cannot_change_it,
);
