//! Labels decide who may join, before anything is written; label-admins manage them.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn a_guest_is_refused_a_group_whose_label_bars_guests_and_nothing_is_written(kind: Backend) {
    let app = App::spawn_on(kind).await;
    let alice = app.member("alice");
    let guest = app.token("gina", IdentityKind::Guest, &[]);
    let agent = app.token("robot", IdentityKind::Agent, &[]);
    // General admits guests but not agents; an owner switches its join policy to open.
    let general = app
        .active_group(&alice, "Book Club", "General", "open")
        .await;

    let refused = app
        .post(
            &app.membership(&format!("/groups/{general}/join")),
            &agent,
            json!({}),
        )
        .await;
    refused.assert_problem(403);
    assert_eq!(refused.body["type"], "urn:hush:problem:label-refused");
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap()
            .contains("AI agents"),
        "{}",
        refused.text
    );
    let me = app
        .get(&app.membership(&format!("/groups/{general}/me")), &agent)
        .await;
    assert_eq!(me.body["member"], false, "the refused join wrote nothing");
    let mine = app.get(&app.membership("/me/groups"), &agent).await;
    assert_eq!(mine.body["groups"], json!([]));

    let ok = app
        .post(
            &app.membership(&format!("/groups/{general}/join")),
            &guest,
            json!({}),
        )
        .await;
    assert_eq!(
        ok.status,
        StatusCode::OK,
        "General admits guests: {}",
        ok.text
    );

    // A label that bars guests, with an open join policy, to isolate the label check.
    let admin = app.token("lena", IdentityKind::Member, &["label-admin"]);
    let created = app
        .post(
            &app.control("/labels"),
            &admin,
            json!({"name": "Staff Only", "description": "Employees only", "policy": {"guests_allowed": false, "agents_allowed": false, "join_policies": ["open"], "sender_policy": "anyone"}}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let staff = app
        .active_group(&alice, "Staff Lounge", "Staff Only", "open")
        .await;
    let refused = app
        .post(
            &app.membership(&format!("/groups/{staff}/join")),
            &guest,
            json!({}),
        )
        .await;
    refused.assert_problem(403);
    assert!(
        refused.body["detail"].as_str().unwrap().contains("guests"),
        "{}",
        refused.text
    );
    let me = app
        .get(&app.membership(&format!("/groups/{staff}/me")), &guest)
        .await;
    assert_eq!(me.body["member"], false);

    app.stop().await;
}

async fn guests_do_not_discover_groups_whose_label_bars_them(kind: Backend) {
    let app = App::spawn_on(kind).await;
    let alice = app.member("alice");
    app.active_group(&alice, "Open Forum", "General", "open")
        .await;
    app.active_group(&alice, "Hidden Forum", "Confidential", "approval")
        .await;
    let guest = app.token("gina", IdentityKind::Guest, &[]);

    let names = |res: &Res| -> Vec<String> {
        res.body["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap().to_string())
            .collect()
    };
    let as_guest = app.get(&app.control("/groups?q=forum"), &guest).await;
    assert_eq!(names(&as_guest), vec!["Open Forum"]);
    let as_member = app
        .get(&app.control("/groups?q=forum"), &app.member("bob"))
        .await;
    let mut got = names(&as_member);
    got.sort();
    assert_eq!(got, vec!["Hidden Forum", "Open Forum"]);

    app.stop().await;
}

async fn the_three_default_labels_are_seeded_and_only_label_admins_change_labels(kind: Backend) {
    let app = App::spawn_on(kind).await;
    let bob = app.member("bob");
    let labels = app.get(&app.control("/labels"), &bob).await;
    assert_eq!(labels.status, StatusCode::OK, "{}", labels.text);
    let names: Vec<&str> = labels
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["name"].as_str())
        .collect();
    for n in ["General", "Confidential", "Highly Confidential"] {
        assert!(names.contains(&n), "{n} seeded: {names:?}");
    }
    let hc = app
        .get(&app.control("/labels/Highly%20Confidential"), &bob)
        .await;
    assert_eq!(hc.body["policy"]["join_policies"], json!(["invite"]));
    assert_eq!(hc.body["policy"]["sender_policy"], "members");

    let body = json!({"name": "Mine", "description": "", "policy": {"guests_allowed": true, "agents_allowed": true, "join_policies": ["open"], "sender_policy": "anyone"}});
    app.post(&app.control("/labels"), &bob, body.clone())
        .await
        .assert_problem(403);
    let admin = app.token("lena", IdentityKind::Member, &["label-admin"]);
    let bad = json!({"name": "Bad", "description": "", "policy": {"guests_allowed": true, "agents_allowed": true, "join_policies": [], "sender_policy": "anyone"}});
    app.post(&app.control("/labels"), &admin, bad)
        .await
        .assert_problem(422);
    assert_eq!(
        app.post(&app.control("/labels"), &admin, body.clone())
            .await
            .status,
        StatusCode::CREATED
    );
    app.post(&app.control("/labels"), &admin, body)
        .await
        .assert_problem(409);

    // A label in use cannot be deleted.
    app.active_group(&app.member("alice"), "Uses Mine", "Mine", "open")
        .await;
    let del = app
        .call(
            Method::DELETE,
            &app.control("/labels/Mine"),
            Some(&admin),
            None,
        )
        .await;
    del.assert_problem(409);

    app.stop().await;
}

async fn a_group_must_use_a_join_policy_its_label_allows(kind: Backend) {
    let app = App::spawn_on(kind).await;
    let alice = app.member("alice");
    let res = app
        .post(&app.control("/groups"), &alice, json!({"name": "Secret", "description": "", "label": "Highly Confidential", "join_policy": "open"}))
        .await;
    res.assert_problem(422);
    assert!(
        res.text.contains("invite"),
        "names the allowed policies: {}",
        res.text
    );
    let guest = app.token("gina", IdentityKind::Guest, &[]);
    let res = app
        .post(
            &app.control("/groups"),
            &guest,
            json!({"name": "Mine", "description": "", "label": "General", "join_policy": "open"}),
        )
        .await;
    res.assert_problem(403);
    app.stop().await;
}

async fn a_kind_revealed_by_the_persons_token_ends_the_memberships_its_label_bars(kind: Backend) {
    let app = App::spawn_on(kind).await;
    let owner = app.member("olga");
    let conf = app
        .active_group(&owner, "Board Prep", "Confidential", "approval")
        .await;
    let town = app
        .active_group(&owner, "Town Hall", "General", "open")
        .await;
    // An owner adds a corporate address to both: nobody knows better, so an employee.
    for g in [&conf, &town] {
        let res = app
            .post(
                &app.membership(&format!("/groups/{g}/members")),
                &owner,
                json!({"email": "newhire@corp.example"}),
            )
            .await;
        assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text);
    }
    // The person signs in, and the IdP says guest: the first call with their token ends the
    // Confidential membership (General admits guests), before anything is answered.
    let newhire = app.token("newhire", IdentityKind::Guest, &[]);
    let mine = app.get(&app.membership("/me/groups"), &newhire).await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.text);
    let ids: Vec<&str> = mine.body["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![town.as_str()]);
    assert!(!app.is_member(&newhire, &conf).await);
    assert!(app.is_member(&newhire, &town).await);
    app.stop().await;
}

async fn tightening_a_label_evicts_and_loosening_it_needs_a_second_label_admin(kind: Backend) {
    let app = App::spawn_on(kind).await;
    let alice = app.member("alice");
    let lena = app.token("lena", IdentityKind::Member, &["label-admin"]);
    let max = app.token("max", IdentityKind::Member, &["label-admin"]);
    let created = app
        .post(
            &app.control("/labels"),
            &lena,
            json!({"name": "Project", "description": "", "policy": {"guests_allowed": true, "agents_allowed": false, "join_policies": ["open"], "sender_policy": "members"}}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let g = app.active_group(&alice, "Apollo", "Project", "open").await;
    let guest = app.token("gina", IdentityKind::Guest, &[]);
    let joined = app
        .post(
            &app.membership(&format!("/groups/{g}/join")),
            &guest,
            json!({}),
        )
        .await;
    assert_eq!(joined.status, StatusCode::OK, "{}", joined.text);
    app.post(
        &app.membership(&format!("/groups/{g}/join")),
        &alice,
        json!({}),
    )
    .await;

    // Tightening applies at once, ends the guest's membership and says how many as a bucket.
    let tight = json!({"description": "Employees only now", "policy": {"guests_allowed": false, "agents_allowed": false, "join_policies": ["open"], "sender_policy": "members"}});
    let res = app
        .call(
            Method::PUT,
            &app.control("/labels/Project"),
            Some(&lena),
            Some(tight),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(res.body["memberships_ended"], "<10");
    assert_eq!(res.body["policy"]["guests_allowed"], false);
    assert!(!app.is_member(&guest, &g).await, "the guest is out at once");
    assert!(app.is_member(&alice, &g).await, "employees stay");

    // Loosening a label in use waits for a second, distinct label-admin.
    let loose = json!({"description": "Guests welcome", "policy": {"guests_allowed": true, "agents_allowed": false, "join_policies": ["open"], "sender_policy": "members"}});
    let res = app
        .call(
            Method::PUT,
            &app.control("/labels/Project"),
            Some(&lena),
            Some(loose),
        )
        .await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text);
    let id = res.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        res.headers["location"].to_str().unwrap(),
        format!("/control/v1/label-changes/{id}")
    );
    let label = app.get(&app.control("/labels/Project"), &alice).await;
    assert_eq!(label.body["policy"]["guests_allowed"], false, "not yet");
    let refused = app
        .post(
            &app.membership(&format!("/groups/{g}/join")),
            &guest,
            json!({}),
        )
        .await;
    refused.assert_problem(403);
    let pending = app.get(&app.control("/label-changes"), &max).await;
    assert_eq!(pending.body[0]["id"], id.as_str(), "{}", pending.text);
    assert_eq!(pending.body[0]["proposed_by"], "lena");
    app.get(&app.control("/label-changes"), &alice)
        .await
        .assert_problem(403);
    let approve = app.control(&format!("/label-changes/{id}/approve"));
    app.post(&approve, &lena, json!({}))
        .await
        .assert_problem(403);
    app.post(&approve, &alice, json!({}))
        .await
        .assert_problem(403);
    let res = app.post(&approve, &max, json!({})).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(res.body["policy"]["guests_allowed"], true);
    // membership-api keeps control-api's lookups for self-joins and drops them when the
    // catalog moves (HUSH_CATALOG_POLL_MS, 250 ms): until then the kept, stricter label
    // refuses the guest (fail closed); within the bound, the loosened one admits them.
    let loosened = std::time::Instant::now();
    loop {
        let joined = app
            .post(
                &app.membership(&format!("/groups/{g}/join")),
                &guest,
                json!({}),
            )
            .await;
        if joined.status == StatusCode::OK {
            break;
        }
        assert_eq!(joined.status, StatusCode::FORBIDDEN, "{}", joined.text);
        assert!(
            loosened.elapsed() < std::time::Duration::from_secs(1),
            "the guest still refused {:?} after the label was loosened",
            loosened.elapsed()
        );
        // Paced, so the probes stay inside the guest's join budget (60 a minute, part of it
        // spent above) whatever the machine's speed: at most ten in the bound.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    app.post(&approve, &max, json!({}))
        .await
        .assert_problem(404);
    app.stop().await;
}

async fn a_guest_cannot_be_made_owner_of_a_group_whose_label_bars_guests(kind: Backend) {
    let app = App::spawn_on(kind).await;
    let olga = app.member("olga");
    let conf = app
        .active_group(&olga, "Board Prep", "Confidential", "approval")
        .await;
    let url = app.control(&format!("/groups/{conf}"));
    let named = app
        .call(
            Method::PATCH,
            &url,
            Some(&olga),
            Some(json!({"owners": ["olga", "gina", "carol"]})),
        )
        .await;
    assert_eq!(named.status, StatusCode::OK, "{}", named.text);
    assert_eq!(named.body["owners"], json!(["olga"]));
    assert_eq!(named.body["invited_owners"], json!(["carol", "gina"]));
    // Gina's own token says guest: she cannot accept, and acts as no owner anywhere.
    let gina = app.token("gina", IdentityKind::Guest, &[]);
    let refused = app
        .post(&format!("{url}/ownership/accept"), &gina, json!({}))
        .await;
    refused.assert_problem(403);
    assert_eq!(refused.body["type"], "urn:hush:problem:label-refused");
    let requests = app.membership(&format!("/groups/{conf}/requests"));
    app.get(&requests, &gina).await.assert_problem(403);
    // Carol, an employee, accepts and reads the requests as an owner.
    let carol = app.member("carol");
    app.get(&requests, &carol).await.assert_problem(403);
    let accepted = app
        .post(&format!("{url}/ownership/accept"), &carol, json!({}))
        .await;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.text);
    assert_eq!(accepted.body["owners"], json!(["carol", "olga"]));
    let listed = app.get(&requests, &carol).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    // Olga, an owner by name, whose token now says agent, is refused as an owner.
    let olga_agent = app.token("olga", IdentityKind::Agent, &[]);
    app.get(&requests, &olga_agent).await.assert_problem(403);
    app.stop().await;
}

async fn relabelling_a_group_stricter_evicts_and_looser_needs_a_label_admins_approval(
    kind: Backend,
) {
    let app = App::spawn_on(kind).await;
    let alice = app.member("alice");
    let lena = app.token("lena", IdentityKind::Member, &["label-admin"]);
    let g = app
        .active_group(&alice, "Launch Team", "General", "approval")
        .await;
    // A guest and an employee are members under General, which admits guests.
    let guest = app.token("gina", IdentityKind::Guest, &[]);
    let bob = app.member("bob");
    for who in [&guest, &bob] {
        let asked = app
            .post(
                &app.membership(&format!("/groups/{g}/join")),
                who,
                json!({}),
            )
            .await;
        assert_eq!(asked.status, StatusCode::ACCEPTED, "{}", asked.text);
        let rid = asked.body["request"]["id"].as_str().unwrap();
        let ok = app
            .post(
                &app.membership(&format!("/groups/{g}/requests/{rid}/approve")),
                &alice,
                json!({}),
            )
            .await;
        assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    }
    assert!(app.is_member(&guest, &g).await);
    let label_url = app.control(&format!("/groups/{g}/label"));

    // Nobody but an owner or a label-admin moves it.
    app.call(
        Method::PUT,
        &label_url,
        Some(&bob),
        Some(json!({"label": "Confidential"})),
    )
    .await
    .assert_problem(403);
    // The owner moves it to Confidential: applied at once, the guest is out, bob stays, and
    // the answer counts the ended memberships only as a bucket.
    let res = app
        .call(
            Method::PUT,
            &label_url,
            Some(&alice),
            Some(json!({"label": "Confidential"})),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(res.body["label"], "Confidential");
    assert_eq!(res.body["memberships_ended"], "<10");
    assert!(!app.is_member(&guest, &g).await, "the guest is out at once");
    assert!(app.is_member(&bob, &g).await, "employees stay");
    let group = app.get(&app.control(&format!("/groups/{g}")), &alice).await;
    assert_eq!(group.body["label"], "Confidential", "{}", group.text);
    // A label that does not allow the group's join policy is refused, and changes nothing.
    let refused = app
        .call(
            Method::PUT,
            &label_url,
            Some(&alice),
            Some(json!({"label": "Highly Confidential"})),
        )
        .await;
    refused.assert_problem(422);
    assert_eq!(refused.body["type"], "urn:hush:problem:join-policy");

    // Back to General (looser): filed, not applied; the guest is still refused.
    let res = app
        .call(
            Method::PUT,
            &label_url,
            Some(&alice),
            Some(json!({"label": "General"})),
        )
        .await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text);
    let id = res.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        res.headers["location"].to_str().unwrap(),
        format!("/control/v1/relabels/{id}")
    );
    let again = app
        .call(
            Method::PUT,
            &label_url,
            Some(&alice),
            Some(json!({"label": "General"})),
        )
        .await;
    again.assert_problem(409);
    let group = app.get(&app.control(&format!("/groups/{g}")), &alice).await;
    assert_eq!(group.body["label"], "Confidential", "not yet");
    app.post(
        &app.membership(&format!("/groups/{g}/join")),
        &guest,
        json!({}),
    )
    .await
    .assert_problem(403);
    // Only a label-admin lists and decides; lena proposes a move herself and cannot approve it.
    app.get(&app.control("/relabels"), &alice)
        .await
        .assert_problem(403);
    let pending = app.get(&app.control("/relabels"), &lena).await;
    assert_eq!(pending.body[0]["id"], id.as_str(), "{}", pending.text);
    assert_eq!(pending.body[0]["proposed_by"], "alice");
    let approve = app.control(&format!("/relabels/{id}/approve"));
    app.post(&approve, &alice, json!({}))
        .await
        .assert_problem(403);
    let res = app.post(&approve, &lena, json!({})).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(res.body["label"], "General");
    app.post(&approve, &lena, json!({}))
        .await
        .assert_problem(404);
    // The guest may ask again now.
    let asked = app
        .post(
            &app.membership(&format!("/groups/{g}/join")),
            &guest,
            json!({}),
        )
        .await;
    assert_eq!(asked.status, StatusCode::ACCEPTED, "{}", asked.text);

    // A label-admin's own looser move needs another label-admin.
    let res = app
        .call(
            Method::PUT,
            &label_url,
            Some(&lena),
            Some(json!({"label": "Confidential"})),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    let res = app
        .call(
            Method::PUT,
            &label_url,
            Some(&lena),
            Some(json!({"label": "General"})),
        )
        .await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text);
    let id = res.body["id"].as_str().unwrap();
    app.post(
        &app.control(&format!("/relabels/{id}/approve")),
        &lena,
        json!({}),
    )
    .await
    .assert_problem(403);
    let rejected = app
        .post(
            &app.control(&format!("/relabels/{id}/reject")),
            &lena,
            json!({}),
        )
        .await;
    assert_eq!(rejected.status, StatusCode::NO_CONTENT, "{}", rejected.text);
    let group = app.get(&app.control(&format!("/groups/{g}")), &alice).await;
    assert_eq!(group.body["label"], "Confidential");
    app.stop().await;
}

service_kit::backend_tests!(
    relabelling_a_group_stricter_evicts_and_looser_needs_a_label_admins_approval,
    a_guest_cannot_be_made_owner_of_a_group_whose_label_bars_guests,
    a_kind_revealed_by_the_persons_token_ends_the_memberships_its_label_bars,
    tightening_a_label_evicts_and_loosening_it_needs_a_second_label_admin,
    a_guest_is_refused_a_group_whose_label_bars_guests_and_nothing_is_written,
    guests_do_not_discover_groups_whose_label_bars_them,
    the_three_default_labels_are_seeded_and_only_label_admins_change_labels,
    a_group_must_use_a_join_policy_its_label_allows,
);
