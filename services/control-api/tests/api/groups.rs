//! Creating, reading, editing and archiving groups: who may, what is checked, and what each
//! caller gets to see.

use crate::helpers::*;
use domain::IdentityKind;
use http::Method;
use serde_json::{json, Value};

fn group(name: &str, label: &str, policy: &str) -> serde_json::Value {
    json!({"name": name, "description": "", "label": label, "join_policy": policy})
}

async fn an_employee_creates_a_group_that_is_provisioning_until_the_tenant_confirms(kind: Backend) {
    let app = TestApp::spawn_on(kind).await;
    let alice = app.member("alice");
    let res = app
        .post(
            "/control/v1/groups",
            &alice,
            json!({"name": "Parents at Work", "description": "Support for working parents", "label": "General", "join_policy": "open"}),
        )
        .await;
    let body = res.ok(202).clone();
    let id = body["id"].as_str().unwrap().to_string();
    assert_eq!(
        res.headers["location"],
        format!("/control/v1/groups/{id}").as_str()
    );
    assert_eq!(body["state"], "provisioning");
    assert_eq!(body["owners"], json!(["alice"]));
    assert_eq!(body["label"], "General");
    assert_eq!(body["sender_policy"], "anyone");
    assert!(body.get("member_count").is_none());
    let address = body["contact_address"].as_str().unwrap();
    assert!(
        address.starts_with("parents-at-work-") && address.ends_with("@groups.test.example"),
        "{address}"
    );
    assert!(
        app.tenant.provision_calls().is_empty(),
        "nothing asked of the tenant in the request"
    );

    // The saga provisions it; only then is it active, and the tenant got its address and name.
    app.settle().await;
    let got = app.get(&format!("/control/v1/groups/{id}"), &alice).await;
    assert_eq!(got.ok(200)["state"], "active");
    let calls = app.tenant.provision_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].address.as_str(), address);
    assert_eq!(calls[0].display_name.as_str(), "Parents at Work");
    app.stop().await;
}

async fn guests_and_agents_may_not_create_groups(kind: Backend) {
    let app = TestApp::spawn_on(kind).await;
    for (token, kind) in [
        (app.guest("gina"), "guest"),
        (app.token("robot", IdentityKind::Agent, &[]), "AI agent"),
    ] {
        let detail = app
            .post(
                "/control/v1/groups",
                &token,
                group("Mine", "General", "open"),
            )
            .await
            .problem(403);
        assert!(
            detail.contains("only employees") && detail.contains(kind),
            "{detail}"
        );
        // Refused before the body is read.
        app.post("/control/v1/groups", &token, json!({"nonsense": 1}))
            .await
            .problem(403);
    }
    app.send(
        Method::POST,
        "/control/v1/groups",
        None,
        Some(group("Mine", "General", "open")),
    )
    .await
    .problem(401);
    app.stop().await;
}

async fn bad_bodies_are_problem_json_that_says_what_is_wrong(kind: Backend) {
    let app = TestApp::spawn_on(kind).await;
    let alice = app.member("alice");
    let uri = "/control/v1/groups";

    let res = app
        .send_raw(
            Method::POST,
            uri,
            Some(&alice),
            Some(("application/json", "{not json".into())),
        )
        .await;
    assert_eq!(res.body["type"], "urn:hush:problem:bad-request");
    res.problem(400);
    app.send_raw(
        Method::POST,
        uri,
        Some(&alice),
        Some(("text/plain", group("A", "General", "open").to_string())),
    )
    .await
    .problem(415);
    app.send_raw(
        Method::POST,
        uri,
        Some(&alice),
        Some(("application/json", "x".repeat(70 * 1024))),
    )
    .await
    .problem(413);

    for (body, needle) in [
        (
            json!({"description": "", "label": "General", "join_policy": "open"}),
            "name",
        ),
        (
            json!({"name": "", "label": "General", "join_policy": "open"}),
            "name",
        ),
        (
            json!({"name": "x".repeat(121), "label": "General", "join_policy": "open"}),
            "120",
        ),
        (
            json!({"name": "A", "description": "d".repeat(2001), "label": "General", "join_policy": "open"}),
            "2000",
        ),
        (
            json!({"name": "A", "label": "General", "join_policy": "sometimes"}),
            "join_policy",
        ),
        (
            json!({"name": "A", "label": "General", "join_policy": "open", "members": ["bob"]}),
            "members",
        ),
        (
            json!({"name": "A", "label": "General", "join_policy": "open", "address": "Not Valid"}),
            "address",
        ),
        (
            json!({"name": "A", "label": "No Such Label", "join_policy": "open"}),
            "No Such Label",
        ),
    ] {
        let detail = app.post(uri, &alice, body.clone()).await.problem(422);
        assert!(detail.contains(needle), "{body}: {detail}");
    }

    let res = app
        .post(uri, &alice, group("Secret", "Highly Confidential", "open"))
        .await;
    let detail = res.problem(422);
    assert_eq!(res.body["type"], "urn:hush:problem:join-policy");
    assert!(
        detail.contains("allows: invite"),
        "names the allowed policies: {detail}"
    );
    let detail = app
        .post(uri, &alice, group("Quiet", "Confidential", "open"))
        .await
        .problem(422);
    assert!(detail.contains("approval, invite"), "{detail}");

    // Nothing was written by any of it.
    assert!(
        app.get("/control/v1/groups?q=", &alice).await.body["groups"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    app.settle().await;
    assert!(app.tenant.provision_calls().is_empty());
    app.stop().await;
}

async fn addresses_are_chosen_or_derived_and_never_shared(kind: Backend) {
    let app = TestApp::spawn_on(kind).await;
    let alice = app.member("alice");
    let mut body = group("Witness Support", "General", "invite");
    body["address"] = json!("witness-support");
    let res = app.post("/control/v1/groups", &alice, body.clone()).await;
    assert_eq!(
        res.ok(202)["contact_address"],
        "witness-support@groups.test.example"
    );
    let detail = app
        .post("/control/v1/groups", &app.member("bob"), body)
        .await
        .problem(409);
    assert!(
        detail.contains("witness-support@groups.test.example"),
        "{detail}"
    );

    // The same name twice: two groups, two derived addresses.
    let a = app
        .post(
            "/control/v1/groups",
            &alice,
            group("Same Name", "General", "open"),
        )
        .await;
    let b = app
        .post(
            "/control/v1/groups",
            &alice,
            group("Same Name", "General", "open"),
        )
        .await;
    assert_ne!(a.ok(202)["contact_address"], b.ok(202)["contact_address"]);
    app.stop().await;
}

async fn a_change_of_another_json_type_than_an_object_is_refused_and_changes_nothing(
    kind: Backend,
) {
    let app = TestApp::spawn_on(kind).await;
    let alice = app.member("alice");
    let id = app.active(&alice, "Typed", "General", "open").await;
    let uri = format!("/control/v1/groups/{id}");
    let before = app.get(&uri, &alice).await.ok(200).clone();

    // serde would read an array as the struct's fields in order: `[]` changed nothing but
    // answered 200, and `["x"]` set the description.
    for body in [
        json!([]),
        json!(["a new description"]),
        json!("a new description"),
        json!(7),
        json!(true),
        Value::Null,
    ] {
        let detail = app.patch(&uri, &alice, body.clone()).await.problem(422);
        assert!(
            detail.starts_with("the request body must be a JSON object"),
            "{body}: {detail}"
        );
    }

    assert_eq!(app.get(&uri, &alice).await.ok(200), &before);
    app.stop().await;
}

async fn owners_edit_within_the_label_and_the_label_never_changes(kind: Backend) {
    let app = TestApp::spawn_on(kind).await;
    let alice = app.member("alice");
    let id = app
        .active(&alice, "Editors", "Confidential", "approval")
        .await;
    let uri = format!("/control/v1/groups/{id}");

    let detail = app
        .patch(&uri, &alice, json!({"label": "General"}))
        .await
        .problem(422);
    assert_eq!(
        detail,
        "label: a group's label is not changed here; move the group with PUT \
         /control/v1/groups/{id}/label"
    );
    app.patch(&uri, &alice, json!({"label": null}))
        .await
        .problem(422);
    app.patch(
        &uri,
        &alice,
        json!({"description": "x", "label": "Confidential"}),
    )
    .await
    .problem(422);
    assert!(app
        .patch(&uri, &alice, json!({"name": "Renamed"}))
        .await
        .problem(422)
        .contains("name"));
    let res = app
        .patch(&uri, &alice, json!({"join_policy": "open"}))
        .await;
    assert!(res.problem(422).contains("allows: approval, invite"));
    assert_eq!(res.body["type"], "urn:hush:problem:join-policy");
    assert!(app
        .patch(&uri, &alice, json!({"owners": []}))
        .await
        .problem(422)
        .contains("at least one owner"));
    let many: Vec<String> = (0..51).map(|i| format!("u{i}")).collect();
    assert!(app
        .patch(&uri, &alice, json!({"owners": many}))
        .await
        .problem(422)
        .contains("50"));
    app.patch(&uri, &alice, json!({"description": "d".repeat(2001)}))
        .await
        .problem(422);

    let res = app.patch(&uri, &alice, json!({"join_policy": "invite", "description": "New words", "owners": ["alice", "carol"]})).await;
    let body = res.ok(200);
    assert_eq!(body["join_policy"], "invite");
    assert_eq!(body["description"], "New words");
    assert_eq!(body["label"], "Confidential");
    // Confidential bars guests and agents: carol is invited, and owns the group only once she
    // accepts with her own token. A guest invited the same way is refused when accepting.
    assert_eq!(body["owners"], json!(["alice"]));
    assert_eq!(body["invited_owners"], json!(["carol"]));
    let carol = app.member("carol");
    let seen = app.get(&uri, &carol).await;
    assert_eq!(seen.ok(200)["invited_to_own"], true);
    assert!(seen.body.get("invited_owners").is_none(), "{}", seen.text);
    app.patch(&uri, &carol, json!({"description": "x"}))
        .await
        .problem(403);
    let accepted = app
        .post(&format!("{uri}/ownership/accept"), &carol, json!({}))
        .await;
    assert_eq!(accepted.ok(200)["owners"], json!(["alice", "carol"]));
    // Owners are shown by the address their own token gave when they acted as owners.
    assert_eq!(
        accepted.body["owner_contacts"],
        json!([{"id": "alice", "email": "alice@corp.example"}, {"id": "carol", "email": "carol@corp.example"}])
    );
    // "Groups you own", for carol now; nothing for someone who owns nothing.
    let owned = app.get("/control/v1/owned-groups", &carol).await;
    assert_eq!(
        owned.ok(200)["groups"].as_array().unwrap().len(),
        1,
        "{}",
        owned.text
    );
    let none = app
        .get("/control/v1/owned-groups", &app.member("mallory"))
        .await;
    assert!(none.ok(200)["groups"].as_array().unwrap().is_empty());
    app.post(&format!("{uri}/ownership/accept"), &carol, json!({}))
        .await
        .problem(404);
    let res = app
        .patch(&uri, &alice, json!({"owners": ["alice", "carol", "gina"]}))
        .await;
    assert_eq!(res.ok(200)["invited_owners"], json!(["gina"]));
    let refused = app
        .post(
            &format!("{uri}/ownership/accept"),
            &app.guest("gina"),
            json!({}),
        )
        .await;
    assert!(refused.problem(403).contains("guests"), "{}", refused.text);
    assert_eq!(refused.body["type"], "urn:hush:problem:label-refused");
    assert_eq!(
        app.get(&uri, &alice).await.body["owners"],
        json!(["alice", "carol"])
    );
    // A named owner whose token says guest acts as no owner.
    app.patch(&uri, &app.guest("carol"), json!({"description": "x"}))
        .await
        .problem(404);

    // A co-owner edits; someone who can see the group but does not own it may not (403); a
    // guest, whom the label bars, is told there is no such group (404).
    app.patch(
        &uri,
        &app.member("carol"),
        json!({"description": "Carol's words"}),
    )
    .await
    .ok(200);
    // The same problem type as membership-api's owner routes: one type per meaning.
    let refused = app
        .patch(&uri, &app.member("mallory"), json!({"description": "x"}))
        .await;
    assert!(refused.problem(403).contains("owners"));
    assert_eq!(refused.body["type"], "urn:hush:problem:not-owner");
    app.patch(&uri, &app.guest("gina"), json!({"description": "x"}))
        .await
        .problem(404);
    app.patch("/control/v1/groups/not-a-uuid", &alice, json!({}))
        .await
        .problem(422);
    app.patch(
        &format!("/control/v1/groups/{}", uuid::Uuid::new_v4()),
        &alice,
        json!({}),
    )
    .await
    .problem(404);
    app.stop().await;
}

async fn inv4_only_owners_see_a_member_count_and_only_as_a_bucket(kind: Backend) {
    let app = TestApp::spawn_on(kind).await;
    let alice = app.member("alice");
    let id = app.active(&alice, "Counted", "General", "open").await;
    let uri = format!("/control/v1/groups/{id}");

    let owner = app.get(&uri, &alice).await;
    assert_eq!(owner.ok(200)["member_count"], "<10");
    assert_eq!(owner.body["owners"], json!(["alice"]));
    for other in [app.member("bob"), app.guest("gina"), app.label_admin()] {
        let res = app.get(&uri, &other).await;
        assert!(res.ok(200).get("member_count").is_none(), "{}", res.text);
        assert_eq!(res.body["is_owner"], false, "{}", res.text);
    }
    // The tenant down: the owner still gets the group, without the count.
    app.tenant.set_up(false);
    let res = app.get(&uri, &alice).await;
    assert!(res.ok(200).get("member_count").is_none());
    app.stop().await;
}

async fn a_group_the_caller_may_not_see_is_answered_like_a_missing_one(kind: Backend) {
    let app = TestApp::spawn_on(kind).await;
    let alice = app.member("alice");
    let confidential = app
        .active(&alice, "Leadership", "Confidential", "approval")
        .await;
    let general = app.active(&alice, "Open House", "General", "open").await;
    let gina = app.guest("gina");

    let hidden = app
        .get(&format!("/control/v1/groups/{confidential}"), &gina)
        .await;
    let missing = app
        .get(
            &format!("/control/v1/groups/{}", uuid::Uuid::new_v4()),
            &gina,
        )
        .await;
    hidden.problem(404);
    assert_eq!(
        hidden.body, missing.body,
        "same answer for hidden and missing"
    );
    app.get(&format!("/control/v1/groups/{general}"), &gina)
        .await
        .ok(200);
    app.get(
        &format!("/control/v1/groups/{confidential}"),
        &app.member("bob"),
    )
    .await
    .ok(200);
    app.get("/control/v1/groups/not-a-uuid", &gina)
        .await
        .problem(422);
    app.stop().await;
}

async fn owners_archive_and_the_saga_deprovisions(kind: Backend) {
    let app = TestApp::spawn_on(kind).await;
    let alice = app.member("alice");
    let bob = app.member("bob");
    let id = app.active(&alice, "Old Project", "General", "open").await;
    let group_id = domain::GroupId::parse(&id).unwrap();
    assert!(app.tenant.has(group_id));
    let uri = format!("/control/v1/groups/{id}/archive");

    app.post(&uri, &bob, json!({})).await.problem(403);
    app.post(&uri, &app.guest("gina"), json!({}))
        .await
        .problem(403);
    let res = app.post(&uri, &alice, json!({})).await;
    assert_eq!(res.ok(202)["state"], "archiving");
    let group_uri = format!("/control/v1/groups/{id}");
    app.patch(&group_uri, &alice, json!({"description": "x"}))
        .await
        .problem(409);

    app.settle().await;
    assert!(
        !app.tenant.has(group_id),
        "the tenant removed the group and its membership"
    );
    assert_eq!(
        app.get(&group_uri, &alice).await.ok(200)["state"],
        "archived"
    );
    // Archived groups are the owners' record only.
    app.get(&group_uri, &bob).await.problem(404);
    app.post(&uri, &bob, json!({})).await.problem(404);
    assert!(
        app.get("/control/v1/groups?q=old", &bob).await.body["groups"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // Archiving again changes nothing.
    assert_eq!(
        app.post(&uri, &alice, json!({})).await.ok(202)["state"],
        "archived"
    );
    app.stop().await;
}

async fn a_groups_type_is_chosen_at_creation_and_a_security_group_has_no_address(kind: Backend) {
    let app = TestApp::spawn_on(kind).await;
    let alice = app.member("alice");
    let bob = app.member("bob");
    let uri = "/control/v1/groups";

    // Arrange / Act: one group of each type; no type means mail.
    let mail = app
        .post(uri, &alice, json!({"name": "Report readers mail", "label": "Confidential", "join_policy": "approval"}))
        .await
        .ok(202)
        .clone();
    assert_eq!(mail["type"], "mail");
    assert!(mail["contact_address"]
        .as_str()
        .unwrap()
        .ends_with("@groups.test.example"));
    let security = app
        .post(
            uri,
            &alice,
            json!({"name": "Report readers", "label": "Confidential", "join_policy": "approval", "type": "security"}),
        )
        .await
        .ok(202)
        .clone();
    assert_eq!(security["type"], "security");
    assert_eq!(security["label"], "Confidential");
    assert_eq!(security["join_policy"], "approval");
    let security_id = security["id"].as_str().unwrap().to_string();

    // The tenant is told the type; the security group goes under its reserved, never-routable
    // address and with no mail policy.
    app.settle().await;
    let calls = app.tenant.provision_calls();
    let call = calls
        .iter()
        .find(|c| c.group_id.to_string() == security_id)
        .unwrap();
    assert_eq!(call.group_type, domain::GroupType::Security);
    assert!(
        call.address.as_str().ends_with("@security.invalid"),
        "{}",
        call.address
    );
    assert!(call.sender_policy.is_none() && !call.anonymous_posting && call.owners.is_empty());
    let mail_call = calls
        .iter()
        .find(|c| c.group_type == domain::GroupType::Mail)
        .unwrap();
    assert_eq!(
        mail_call.address.as_str(),
        mail["contact_address"].as_str().unwrap()
    );

    // No address anywhere in the API: the group page (owner and not), discovery, owned groups.
    let page = app.get(&format!("{uri}/{security_id}"), &alice).await;
    assert_eq!(page.ok(200)["state"], "active");
    for answer in [
        page,
        app.get(&format!("{uri}/{security_id}"), &bob).await,
        app.get(&format!("{uri}?q=report"), &bob).await,
        app.get("/control/v1/owned-groups", &alice).await,
    ] {
        assert!(!answer.text.contains("security.invalid"), "{}", answer.text);
        let groups = match answer.body.get("groups") {
            Some(list) => list.as_array().unwrap().clone(),
            None => vec![answer.body.clone()],
        };
        let shown = groups
            .iter()
            .find(|g| g["id"] == security_id.as_str())
            .unwrap();
        assert_eq!(shown["type"], "security", "{shown}");
        assert!(shown.get("contact_address").is_none(), "{shown}");
        assert!(shown.get("anonymous_address").is_none(), "{shown}");
        assert!(groups.iter().any(|g| g["type"] == "mail") || groups.len() == 1);
    }

    // The type never changes: naming it in an update is refused, whatever it says, and changes
    // nothing.
    for (id, to) in [
        (security_id.as_str(), "mail"),
        (mail["id"].as_str().unwrap(), "security"),
        (security_id.as_str(), "security"),
    ] {
        let detail = app
            .patch(
                &format!("{uri}/{id}"),
                &alice,
                json!({"type": to, "description": "changed"}),
            )
            .await
            .problem(422);
        assert!(
            detail.contains("type") && detail.contains("never changes"),
            "{detail}"
        );
    }
    let after = app.get(&format!("{uri}/{security_id}"), &alice).await;
    assert_eq!(after.body["type"], "security");
    assert_eq!(after.body["description"], "");

    // Bad types, and mail settings on a security group, are refused and create nothing.
    for (body, needle) in [
        (
            json!({"name": "X", "label": "General", "join_policy": "open", "type": "distribution"}),
            "type",
        ),
        (
            json!({"name": "X", "label": "General", "join_policy": "open", "type": "security", "address": "x-team"}),
            "address",
        ),
        (
            json!({"name": "X", "label": "General", "join_policy": "open", "type": "security", "sender_policy": "members"}),
            "sender_policy",
        ),
    ] {
        let detail = app.post(uri, &alice, body.clone()).await.problem(422);
        assert!(detail.contains(needle), "{body}: {detail}");
    }
    let owned = app.get("/control/v1/owned-groups", &alice).await;
    assert_eq!(
        owned.ok(200)["groups"].as_array().unwrap().len(),
        2,
        "nothing else was created"
    );
    app.stop().await;
}

service_kit::backend_tests!(
    an_employee_creates_a_group_that_is_provisioning_until_the_tenant_confirms,
    guests_and_agents_may_not_create_groups,
    bad_bodies_are_problem_json_that_says_what_is_wrong,
    addresses_are_chosen_or_derived_and_never_shared,
    a_change_of_another_json_type_than_an_object_is_refused_and_changes_nothing,
    owners_edit_within_the_label_and_the_label_never_changes,
    inv4_only_owners_see_a_member_count_and_only_as_a_bucket,
    a_group_the_caller_may_not_see_is_answered_like_a_missing_one,
    owners_archive_and_the_saga_deprovisions,
    a_groups_type_is_chosen_at_creation_and_a_security_group_has_no_address,
);
