//! Membership done right, through all four services: approval with the requester's view,
//! claim rules, invites, owner writes that reveal nothing (INV-3), labels on every path that
//! adds someone, offboarding, and the abuse limits.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn approval_shows_the_requester_to_owners_only_and_the_requester_sees_the_outcome(
    kind: Backend,
) {
    let app = App::spawn_on(kind).await;
    let owner = app.member("olga");
    let g = app
        .active_group(&owner, "Leadership Circle", "Confidential", "approval")
        .await;
    let carol = app.member("carol");
    let dan = app.member("dan");

    let filed = app
        .post(
            &app.membership(&format!("/groups/{g}/join")),
            &carol,
            json!({}),
        )
        .await;
    assert_eq!(filed.status, StatusCode::ACCEPTED, "{}", filed.text);
    assert_eq!(filed.body["member"], false);
    assert!(
        filed.body["notice"]
            .as_str()
            .unwrap()
            .contains("owners will see who asked"),
        "{}",
        filed.text
    );
    let rid = filed.body["request"]["id"].as_str().unwrap().to_string();
    let denied_one = app
        .post(
            &app.membership(&format!("/groups/{g}/join")),
            &dan,
            json!({}),
        )
        .await;
    let dan_rid = denied_one.body["request"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Only owners see the queue; another member gets the same refusal as for any group.
    let queue = app
        .get(&app.membership(&format!("/groups/{g}/requests")), &owner)
        .await;
    assert_eq!(queue.status, StatusCode::OK, "{}", queue.text);
    let subjects: Vec<&str> = queue.body["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["subject"].as_str())
        .collect();
    assert_eq!(subjects, vec!["carol", "dan"]);
    let nosy = app
        .get(&app.membership(&format!("/groups/{g}/requests")), &carol)
        .await;
    nosy.assert_problem(403);
    let other = app
        .get(
            &app.membership(&format!("/groups/{}/requests", uuid::Uuid::new_v4())),
            &carol,
        )
        .await;
    assert_eq!(
        nosy.text, other.text,
        "a non-owner cannot tell a real group from none"
    );

    // Approve carol, deny dan.
    let ok = app
        .post(
            &app.membership(&format!("/groups/{g}/requests/{rid}/approve")),
            &owner,
            json!({}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    let no = app
        .post(
            &app.membership(&format!("/groups/{g}/requests/{dan_rid}/deny")),
            &owner,
            json!({}),
        )
        .await;
    assert_eq!(no.status, StatusCode::OK, "{}", no.text);
    assert!(app.is_member(&carol, &g).await);
    assert!(!app.is_member(&dan, &g).await);

    // The requester's own view: carol's request is gone (it became membership); dan sees "denied".
    let mine = app.get(&app.membership("/me/requests"), &carol).await;
    assert_eq!(mine.body["requests"], json!([]), "{}", mine.text);
    let his = app.get(&app.membership("/me/requests"), &dan).await;
    assert_eq!(his.body["requests"][0]["status"], "denied", "{}", his.text);
    // And the owners' queue is empty: approved and denied requests are not a list of anyone.
    let queue = app
        .get(&app.membership(&format!("/groups/{g}/requests")), &owner)
        .await;
    assert_eq!(queue.body["requests"], json!([]));
    app.stop().await;
}

async fn claim_rules_approve_without_anyone_seeing_the_request(kind: Backend) {
    let app = App::spawn_on(kind).await;
    let owner = app.member("olga");
    let g = app
        .active_group(&owner, "Legal Team", "Confidential", "approval")
        .await;
    let rules =
        json!({"rules": [{"all": [{"claim": "department", "in": ["Legal", "Compliance"]}]}]});
    let set = app
        .call(
            Method::PUT,
            &app.membership(&format!("/groups/{g}/claim-rules")),
            Some(&owner),
            Some(rules),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text);

    let lawyer = app.token_with_claims("lea", &json!({"department": "Legal"}));
    let joined = app
        .post(
            &app.membership(&format!("/groups/{g}/join")),
            &lawyer,
            json!({}),
        )
        .await;
    assert_eq!(joined.status, StatusCode::OK, "{}", joined.text);
    assert_eq!(joined.body["member"], true);
    let sales = app.token_with_claims("sam", &json!({"department": "Sales"}));
    let filed = app
        .post(
            &app.membership(&format!("/groups/{g}/join")),
            &sales,
            json!({}),
        )
        .await;
    assert_eq!(
        filed.status,
        StatusCode::ACCEPTED,
        "no rule matches: a request: {}",
        filed.text
    );

    let queue = app
        .get(&app.membership(&format!("/groups/{g}/requests")), &owner)
        .await;
    let subjects: Vec<&str> = queue.body["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["subject"].as_str())
        .collect();
    assert_eq!(
        subjects,
        vec!["sam"],
        "the rule's approval left no trace for the owner"
    );
    app.stop().await;
}

async fn invites_admit_without_the_owner_learning_who_redeemed(kind: Backend) {
    let app = App::spawn_on(kind).await;
    let owner = app.member("olga");
    let g = app
        .active_group(&owner, "Witness Support", "Highly Confidential", "invite")
        .await;
    let made = app
        .post(
            &app.membership(&format!("/groups/{g}/invites")),
            &owner,
            json!({"max_uses": 2, "expires_in_hours": 24}),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
    let code = made.body["code"].as_str().unwrap().to_string();
    assert!(
        code.len() >= 26,
        "enough entropy to resist guessing: {code}"
    );

    // A guest holding a code is still refused by the label, and the use is not spent.
    let gina = app.token("gina", IdentityKind::Guest, &[]);
    let refused = app
        .post(
            &app.membership("/invites/redeem"),
            &gina,
            json!({"code": code}),
        )
        .await;
    refused.assert_problem(403);
    assert_eq!(refused.body["type"], "urn:hush:problem:label-refused");

    let wes = app.member("wes");
    let ok = app
        .post(
            &app.membership("/invites/redeem"),
            &wes,
            json!({"code": code}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert!(app.is_member(&wes, &g).await);

    // The owner sees a use count, never who.
    let list = app
        .get(&app.membership(&format!("/groups/{g}/invites")), &owner)
        .await;
    assert_eq!(list.body["invites"][0]["uses"], 1, "{}", list.text);
    assert!(
        !list.text.contains("wes"),
        "the invite list names no redeemer: {}",
        list.text
    );
    assert!(
        !list.text.contains(&code),
        "codes are shown once, at creation"
    );

    // Every bad code is the same 404: unknown, revoked.
    let unknown = app
        .post(
            &app.membership("/invites/redeem"),
            &app.member("xena"),
            json!({"code": "hush-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}),
        )
        .await;
    unknown.assert_problem(404);
    let iid = made.body["id"].as_str().unwrap();
    let revoke = app
        .call(
            Method::DELETE,
            &app.membership(&format!("/groups/{g}/invites/{iid}")),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(revoke.status, StatusCode::NO_CONTENT, "{}", revoke.text);
    let revoked = app
        .post(
            &app.membership("/invites/redeem"),
            &app.member("xena"),
            json!({"code": code}),
        )
        .await;
    revoked.assert_problem(404);
    assert_eq!(
        unknown.body, revoked.body,
        "a revoked code is indistinguishable from an unknown one"
    );
    app.stop().await;
}

async fn inv3_owner_add_and_remove_answer_the_same_whether_or_not_the_person_is_a_member(
    kind: Backend,
) {
    let app = App::spawn_on(kind).await;
    let owner = app.member("olga");
    let g = app
        .active_group(&owner, "Quiet Room", "General", "open")
        .await;
    let bob = app.member("bob");
    app.post(
        &app.membership(&format!("/groups/{g}/join")),
        &bob,
        json!({}),
    )
    .await;
    let members = app.membership(&format!("/groups/{g}/members"));

    let add_member = app.post(&members, &owner, json!({"subject": "bob"})).await;
    let add_stranger = app
        .post(&members, &owner, json!({"email": "eve@corp.example"}))
        .await;
    let add_by_mail = app
        .post(&members, &owner, json!({"email": "bob@corp.example"}))
        .await;
    for r in [&add_member, &add_stranger, &add_by_mail] {
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        assert_eq!(r.text, add_member.text, "every add answers the same bytes");
    }
    let del_member = app
        .call(
            Method::DELETE,
            &format!("{members}/bob"),
            Some(&owner),
            None,
        )
        .await;
    let del_stranger = app
        .call(
            Method::DELETE,
            &format!("{members}/nobody-at-all"),
            Some(&owner),
            None,
        )
        .await;
    let rm_mail = app
        .post(
            &format!("{members}/remove"),
            &owner,
            json!({"email": "eve@corp.example"}),
        )
        .await;
    let rm_again = app
        .post(
            &format!("{members}/remove"),
            &owner,
            json!({"email": "eve@corp.example"}),
        )
        .await;
    for r in [&del_member, &del_stranger, &rm_mail, &rm_again] {
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        assert_eq!(
            r.text, del_member.text,
            "every remove answers the same bytes"
        );
    }
    // The writes happened: both were removed again (eve, added by address, removed by address).
    assert!(!app.is_member(&bob, &g).await);
    assert!(!app.is_member(&app.member("eve"), &g).await);
    // An add by address that the person later confirms with their own token is one identity.
    app.post(&members, &owner, json!({"email": "fay@corp.example"}))
        .await;
    assert!(
        app.is_member(&app.member("fay"), &g).await,
        "added by address, found by token"
    );

    // Non-owners are refused alike for a real group and for none.
    let mallory = app.member("mallory");
    let real = app
        .post(&members, &mallory, json!({"subject": "bob"}))
        .await;
    let none = app
        .post(
            &app.membership(&format!("/groups/{}/members", uuid::Uuid::new_v4())),
            &mallory,
            json!({"subject": "bob"}),
        )
        .await;
    real.assert_problem(403);
    assert_eq!(real.text, none.text);
    // And there is no way to read the members back.
    let list = app.get(&members, &owner).await;
    assert!(matches!(list.status.as_u16(), 404 | 405), "{}", list.text);
    app.stop().await;
}

async fn every_path_that_adds_someone_checks_the_label_first(kind: Backend) {
    let app = App::spawn_on(kind).await;
    let owner = app.member("olga");
    let conf = app
        .active_group(&owner, "Board Prep", "Confidential", "approval")
        .await;
    let members = app.membership(&format!("/groups/{conf}/members"));

    // Owner add by an address outside the corporate domains: a guest, barred by the label. The
    // owner gets the same answer as for anyone (no oracle of who is known, and as what), and
    // nothing is written.
    let res = app
        .post(&members, &owner, json!({"email": "pat@partner.example"}))
        .await;
    let member_add = app
        .post(&members, &owner, json!({"email": "olga@corp.example"}))
        .await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text);
    assert_eq!(res.text, member_add.text);
    // Someone nobody knows, named by subject alone (an AI agent, as it turns out): not added,
    // since nobody knows their kind (fail closed), with the same answer; when they sign in with
    // an agent's token, they are not a member.
    let unknown = app.post(&members, &owner, json!({"subject": "bot1"})).await;
    assert_eq!(unknown.text, member_add.text);
    let bot1 = app.token("bot1", IdentityKind::Agent, &[]);
    let bot1_in_conf = app
        .get(&app.membership(&format!("/groups/{conf}/me")), &bot1)
        .await;
    assert_eq!(bot1_in_conf.body["member"], false, "{}", bot1_in_conf.text);
    let pat = app
        .call(
            Method::GET,
            &app.membership(&format!("/groups/{conf}/me")),
            Some(&app.token("pat", IdentityKind::Guest, &[])),
            None,
        )
        .await;
    assert_eq!(pat.body["member"], false, "nothing was written");
    // A known guest (seen through their own token) added by subject: refused too.
    let gina = app.token("gina", IdentityKind::Guest, &[]);
    let open = app
        .active_group(&owner, "Town Hall", "General", "open")
        .await;
    app.post(
        &app.membership(&format!("/groups/{open}/join")),
        &gina,
        json!({}),
    )
    .await;
    let res = app.post(&members, &owner, json!({"subject": "gina"})).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text);
    assert_eq!(res.text, member_add.text);
    let gina_in_conf = app
        .get(&app.membership(&format!("/groups/{conf}/me")), &gina)
        .await;
    assert_eq!(gina_in_conf.body["member"], false, "nothing was written");
    // Self-service request by a guest and by an agent: refused before any request is filed.
    for t in [gina.clone(), app.token("robot", IdentityKind::Agent, &[])] {
        let res = app
            .post(
                &app.membership(&format!("/groups/{conf}/join")),
                &t,
                json!({}),
            )
            .await;
        res.assert_problem(403);
    }
    let queue = app
        .get(&app.membership(&format!("/groups/{conf}/requests")), &owner)
        .await;
    assert_eq!(
        queue.body["requests"],
        json!([]),
        "no request was filed: {}",
        queue.text
    );
    app.stop().await;
}

async fn offboarding_removes_a_person_from_every_group_at_once(kind: Backend) {
    let app = App::spawn_on(kind).await;
    let owner = app.member("olga");
    let a = app
        .active_group(&owner, "Offboard A", "General", "open")
        .await;
    let b = app
        .active_group(&owner, "Offboard B", "General", "open")
        .await;
    let bob = app.member("bob");
    let carol = app.member("carol");
    for g in [&a, &b] {
        app.post(
            &app.membership(&format!("/groups/{g}/join")),
            &bob,
            json!({}),
        )
        .await;
        app.post(
            &app.membership(&format!("/groups/{g}/join")),
            &carol,
            json!({}),
        )
        .await;
    }
    // A token of bob's issued before the offboarding and not used before it (a replica
    // reuses a "still valid" answer about one token for up to auth::VALID_FOR).
    let earlier = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 30;
    let bob_earlier = app.token_with_claims("bob", &json!({"iat": earlier}));
    let url = app.control("/identities/offboard");
    app.post(&url, &owner, json!({"subject": "bob"}))
        .await
        .assert_problem(403);
    let done = app
        .post(&url, &app.operator(), json!({"subject": "bob"}))
        .await;
    assert_eq!(done.status, StatusCode::ACCEPTED, "{}", done.text);
    let again = app
        .post(&url, &app.operator(), json!({"subject": "bob"}))
        .await;
    assert_eq!(
        again.text, done.text,
        "the same answer for someone already gone"
    );

    // Offboarding bites: bob's token, issued before, is refused by every service, for
    // writes and for "my groups" alike.
    let join_a = app.membership(&format!("/groups/{a}/join"));
    let bob = bob_earlier;
    app.post(&join_a, &bob, json!({})).await.assert_problem(401);
    let mine = app.get(&app.membership("/me/groups"), &bob).await;
    mine.assert_problem(401);
    assert!(
        mine.body["detail"].as_str().unwrap().contains("offboarded"),
        "{}",
        mine.text
    );
    app.post(
        &app.control("/groups"),
        &bob,
        json!({"name": "Comeback", "description": "", "label": "General", "join_policy": "open"}),
    )
    .await
    .assert_problem(401);
    app.get(&format!("{}/bulk/v1/jobs", app.urls.bulk), &bob)
        .await
        .assert_problem(401);
    // Were bob to come back, a token issued after the offboarding works, and he is in no group.
    let later = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 2;
    let new_bob = app.token_with_claims("bob", &json!({"iat": later}));
    let mine = app.get(&app.membership("/me/groups"), &new_bob).await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.text);
    assert_eq!(mine.body["groups"], json!([]));
    assert!(!app.is_member(&new_bob, &a).await && !app.is_member(&new_bob, &b).await);
    assert!(
        app.is_member(&carol, &a).await && app.is_member(&carol, &b).await,
        "nobody else is touched"
    );
    app.post(&join_a, &carol, json!({})).await;
    assert_eq!(
        app.post(&join_a, &carol, json!({})).await.status,
        StatusCode::OK,
        "carol's token is not affected"
    );
    app.stop().await;
}

/// Forget me: one confirmed call takes the caller out of every group, deletes the requests to
/// join they filed (which named them to owners) and voids their tokens; nobody else is touched,
/// and without the exact confirmation nothing happens.
async fn forget_me_takes_the_caller_out_of_every_group_and_erases_them(kind: Backend) {
    let app = App::spawn_on(kind).await;
    let owner = app.member("olga");
    let a = app
        .active_group(&owner, "Forget A", "General", "open")
        .await;
    let b = app
        .active_group(&owner, "Forget B", "General", "open")
        .await;
    let c = app
        .active_group(&owner, "Forget C", "Confidential", "approval")
        .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Issued before the forgetting (the tenant compares issue times in whole seconds).
    let bob = app.token_with_claims("bob", &json!({"iat": now - 30}));
    let carol = app.member("carol");
    for g in [&a, &b] {
        let joined = app.join(&bob, g).await;
        assert_eq!(joined.status, StatusCode::OK, "{}", joined.text);
    }
    let asked = app.join(&bob, &c).await;
    assert_eq!(asked.status, StatusCode::ACCEPTED, "{}", asked.text);
    app.join(&carol, &a).await;

    let forget = app.membership("/me/forget");
    for wrong in [
        json!({}),
        json!({"confirm": "yes"}),
        json!({"confirm": "Forget me "}),
    ] {
        app.post(&forget, &bob, wrong).await.assert_problem(422);
    }
    assert!(
        app.is_member(&bob, &a).await,
        "a refused confirmation does nothing"
    );

    let done = app
        .post(&forget, &bob, json!({"confirm": "forget me"}))
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    assert_eq!(done.body["status"], "forgotten");
    // Every token bob held is void now.
    app.get(&app.membership("/me/groups"), &bob)
        .await
        .assert_problem(401);

    let new_bob = app.token_with_claims("bob", &json!({"iat": now + 2}));
    let mine = app.get(&app.membership("/me/groups"), &new_bob).await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.text);
    assert_eq!(mine.body["groups"], json!([]));
    let requests = app.get(&app.membership("/me/requests"), &new_bob).await;
    assert_eq!(requests.body["requests"], json!([]), "{}", requests.text);
    let pending = app
        .get(&app.membership(&format!("/groups/{c}/requests")), &owner)
        .await;
    assert_eq!(pending.status, StatusCode::OK, "{}", pending.text);
    assert!(
        !pending.text.contains("bob"),
        "the owner no longer sees bob's request: {}",
        pending.text
    );
    assert!(app.is_member(&carol, &a).await, "nobody else is touched");
    // Asking again is harmless: the same answer.
    let again = app
        .post(&forget, &new_bob, json!({"confirm": "forget me"}))
        .await;
    assert_eq!(again.text, done.text);
    app.stop().await;
}

async fn joins_and_leaves_are_rate_limited_per_caller_with_retry_after(kind: Backend) {
    let app = App::spawn_on(kind).await;
    let owner = app.member("olga");
    let g = app.active_group(&owner, "Busy", "General", "open").await;
    let bob = app.member("bob");
    let url = app.membership(&format!("/groups/{g}/leave"));
    let mut limited = None;
    for _ in 0..80 {
        let r = app.post(&url, &bob, json!({})).await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("the per-minute limit (60) answers 429 before 80 leaves");
    r.assert_problem(429);
    assert!(
        r.headers.contains_key("retry-after"),
        "429 carries Retry-After"
    );
    // Another caller is unaffected.
    let carol = app.post(&url, &app.member("carol"), json!({})).await;
    assert_eq!(carol.status, StatusCode::OK);
    app.stop().await;
}

service_kit::backend_tests!(
    approval_shows_the_requester_to_owners_only_and_the_requester_sees_the_outcome,
    claim_rules_approve_without_anyone_seeing_the_request,
    invites_admit_without_the_owner_learning_who_redeemed,
    inv3_owner_add_and_remove_answer_the_same_whether_or_not_the_person_is_a_member,
    every_path_that_adds_someone_checks_the_label_first,
    offboarding_removes_a_person_from_every_group_at_once,
    forget_me_takes_the_caller_out_of_every_group_and_erases_them,
    joins_and_leaves_are_rate_limited_per_caller_with_retry_after,
);
