//! The approval flow: asking files a request the owners see (and the requester is told so);
//! owners approve (the requester becomes a member and the request's row is deleted) or deny
//! (the requester sees it); the requester withdraws. The label is checked at filing and again
//! at approval, with the kind stored in the request, before anything is written.

use crate::fakes::Write;
use crate::helpers::{
    assert_problem, label, spawn_app, Who, ALICE, BOB, GINA_GUEST, MALLORY, OWNER,
};
use domain::{Email, GroupId, GroupState, IdentityKind, JoinPolicy, Label};
use http::{Method, StatusCode};
use membership_api::APPROVAL_NOTICE;
use serde_json::json;
use tenant_api::{DecisionOutcome, Notification};

/// A General (guests allowed) group joined by approval.
async fn approval_group(app: &crate::helpers::TestApp) -> GroupId {
    app.group("General", JoinPolicy::Approval, GroupState::Active)
}

async fn ask(app: &crate::helpers::TestApp, who: Who, g: GroupId) -> String {
    let (status, _, body) = app.join(who, g).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["request"]["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn asking_files_a_request_and_says_plainly_that_owners_will_see_who_asked() {
    let app = spawn_app().await;
    let g = approval_group(&app).await;

    let (status, ctype, body) = app.join(ALICE, g).await;

    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(ctype, "application/json");
    let rid = body["request"]["id"].as_str().unwrap();
    assert_eq!(
        body,
        json!({
            "group_id": g.to_string(),
            "member": false,
            "request": { "id": rid, "status": "pending", "created_at": "2025-01-01T00:00:00Z" },
            "notice": APPROVAL_NOTICE,
        })
    );
    assert!(APPROVAL_NOTICE.contains("owners will see who asked"));
    // Nothing reached the tenant: asking is not joining.
    assert!(app.directory.writes().is_empty());
    assert!(!app.directory.contains(g, "alice"));

    // The requester sees it in their own view...
    let (status, _, mine) = app.my_requests(ALICE).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        mine,
        json!({ "requests": [{
            "id": rid, "group_id": g.to_string(), "status": "pending",
            "created_at": "2025-01-01T00:00:00Z"
        }]})
    );
    // ...the owners see who asked...
    let (status, _, queue) = app.pending(OWNER, g).await;
    assert_eq!(status, StatusCode::OK, "{queue}");
    assert_eq!(
        queue,
        json!({ "requests": [{
            "id": rid, "subject": "alice", "email": "alice@corp.example", "kind": "member",
            "created_at": "2025-01-01T00:00:00Z"
        }]})
    );
    // ...and nobody else does.
    assert_eq!(app.my_requests(BOB).await.2, json!({ "requests": [] }));
}

#[tokio::test]
async fn asking_twice_is_the_same_request() {
    let app = spawn_app().await;
    let g = approval_group(&app).await;
    let first = app.join(ALICE, g).await;
    app.clock.advance_secs(60);
    let second = app.join(ALICE, g).await;
    assert_eq!(first, second);
    assert_eq!(app.db_count("join_requests").await, 1);
}

#[tokio::test]
async fn approving_makes_a_member_and_deletes_the_request_row() {
    let app = spawn_app().await;
    let g = approval_group(&app).await;
    let rid = ask(&app, ALICE, g).await;
    ask(&app, BOB, g).await;

    let (status, _, body) = app.decide(OWNER, g, &rid, "approve").await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({ "id": rid, "group_id": g.to_string(), "status": "approved" })
    );
    // Added with the address and kind stored in the request, and the label.
    assert_eq!(
        app.directory.writes(),
        [Write::add_self(g, "alice", IdentityKind::Member, "General")]
    );
    assert!(app.directory.contains(g, "alice"));
    // The row is gone: a table of approved requests would be a member list at rest.
    assert_eq!(
        app.db_texts("SELECT status FROM join_requests").await,
        [Some("pending".to_string())],
        "only bob's request is left"
    );
    // And bob's names him only through the service's key (INV-5).
    assert_eq!(
        app.db_texts(
            "SELECT CAST(instr(sealed_requester, CAST('bob@corp.example' AS BLOB)) \
             + instr(requester_tag, CAST('bob' AS BLOB)) AS TEXT) FROM join_requests"
        )
        .await,
        [Some("0".to_string())]
    );
    assert_eq!(app.my_requests(ALICE).await.2, json!({ "requests": [] }));
    let queue = app.pending(OWNER, g).await.2;
    assert_eq!(queue["requests"].as_array().unwrap().len(), 1);
    assert!(!queue.to_string().contains("alice"), "{queue}");
    // The requester finds the membership where memberships are.
    assert_eq!(
        app.am_i(ALICE, g).await.2,
        json!({ "group_id": g.to_string(), "member": true })
    );
    // Approving again: the request is no longer pending.
    let again = app.decide(OWNER, g, &rid, "approve").await;
    assert_problem(&again, StatusCode::NOT_FOUND, "request-not-found");
}

#[tokio::test]
async fn denying_is_shown_to_the_requester_and_forgets_their_address() {
    let app = spawn_app().await;
    let g = approval_group(&app).await;
    let rid = ask(&app, ALICE, g).await;
    app.clock.advance_secs(3600);

    let (status, _, body) = app.decide(OWNER, g, &rid, "deny").await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({ "id": rid, "group_id": g.to_string(), "status": "denied" })
    );
    assert!(app.directory.writes().is_empty());
    assert_eq!(
        app.my_requests(ALICE).await.2,
        json!({ "requests": [{
            "id": rid, "group_id": g.to_string(), "status": "denied",
            "created_at": "2025-01-01T00:00:00Z", "decided_at": "2025-01-01T01:00:00Z"
        }]})
    );
    assert_eq!(app.pending(OWNER, g).await.2, json!({ "requests": [] }));
    assert_eq!(
        app.db_texts("SELECT CAST(sealed_requester IS NULL AS TEXT) FROM join_requests")
            .await,
        [Some("1".to_string())],
        "a denied request keeps only the keyed hash of its requester"
    );
    // A decided request cannot be decided again.
    for verb in ["approve", "deny"] {
        let got = app.decide(OWNER, g, &rid, verb).await;
        assert_problem(&got, StatusCode::NOT_FOUND, "request-not-found");
    }
    // The requester may dismiss it.
    let path = format!("/membership/v1/me/requests/{rid}");
    let (status, _, _) = app.call(ALICE, Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(app.db_count("join_requests").await, 0);
}

#[tokio::test]
async fn withdrawing_deletes_the_request_and_only_the_requester_can() {
    let app = spawn_app().await;
    let g = approval_group(&app).await;
    let rid = ask(&app, ALICE, g).await;
    let path = format!("/membership/v1/me/requests/{rid}");

    let not_hers = app.call(BOB, Method::DELETE, &path, None).await;
    assert_problem(&not_hers, StatusCode::NOT_FOUND, "request-not-found");
    assert_eq!(app.db_count("join_requests").await, 1);

    let (status, _, body) = app.call(ALICE, Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(app.db_count("join_requests").await, 0);
    assert_eq!(app.pending(OWNER, g).await.2, json!({ "requests": [] }));
    let again = app.call(ALICE, Method::DELETE, &path, None).await;
    assert_problem(&again, StatusCode::NOT_FOUND, "request-not-found");
    let approve = app.decide(OWNER, g, &rid, "approve").await;
    assert_problem(&approve, StatusCode::NOT_FOUND, "request-not-found");
    assert!(app.directory.writes().is_empty());
}

#[tokio::test]
async fn only_owners_see_and_decide_requests_and_a_missing_group_answers_the_same() {
    let app = spawn_app().await;
    let g = approval_group(&app).await;
    let rid = ask(&app, ALICE, g).await;
    let missing = GroupId::new();

    for (group, who) in [
        (g, MALLORY),
        (g, ALICE),
        (missing, MALLORY),
        (missing, OWNER),
    ] {
        let list = app
            .raw(
                Method::GET,
                &format!("/membership/v1/groups/{group}/requests"),
                Some(&app.token(who)),
                None,
            )
            .await;
        let approve = app
            .raw(
                Method::POST,
                &format!("/membership/v1/groups/{group}/requests/{rid}/approve"),
                Some(&app.token(who)),
                None,
            )
            .await;
        let deny = app
            .raw(
                Method::POST,
                &format!("/membership/v1/groups/{group}/requests/{rid}/deny"),
                Some(&app.token(who)),
                None,
            )
            .await;
        for got in [&list, &approve, &deny] {
            assert_problem(&got.answer(), StatusCode::FORBIDDEN, "not-owner");
            assert_eq!(got.visible(), list.visible(), "{group} / {}", who.sub);
        }
    }
    assert!(app.directory.writes().is_empty());
    assert_eq!(
        app.pending(OWNER, g).await.2["requests"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_request_of_another_group_cannot_be_decided_through_this_one() {
    let app = spawn_app().await;
    let g = approval_group(&app).await;
    let other = approval_group(&app).await;
    let rid = ask(&app, ALICE, g).await;
    for verb in ["approve", "deny"] {
        let got = app.decide(OWNER, other, &rid, verb).await;
        assert_problem(&got, StatusCode::NOT_FOUND, "request-not-found");
    }
    assert!(app.directory.writes().is_empty());
}

#[tokio::test]
async fn the_label_refuses_at_filing_and_nothing_is_written() {
    let app = spawn_app().await;
    let g = app.group("Confidential", JoinPolicy::Approval, GroupState::Active);

    let got = app.join(GINA_GUEST, g).await;

    assert_problem(&got, StatusCode::FORBIDDEN, "label-refused");
    assert_eq!(app.db_count("join_requests").await, 0);
    assert!(app.directory.writes().is_empty());
}

#[tokio::test]
async fn the_label_is_checked_again_at_approval_with_the_kind_stored_in_the_request() {
    let app = spawn_app().await;
    let g = approval_group(&app).await;
    // A guest may ask while the label admits guests...
    let rid = ask(&app, GINA_GUEST, g).await;
    // ...then a label admin closes the label to guests.
    let mut closed: Label = label("General");
    closed.policy.guests_allowed = false;
    app.catalog.set_label(g, closed);

    let got = app.decide(OWNER, g, &rid, "approve").await;

    assert_problem(&got, StatusCode::FORBIDDEN, "label-refused");
    assert_eq!(got.2["detail"], "the label 'General' does not allow guests");
    assert!(
        app.directory.writes().is_empty(),
        "approval wrote to the tenant before the label refused"
    );
    // The request stays pending for the owners to deny.
    assert_eq!(
        app.pending(OWNER, g).await.2["requests"][0]["kind"],
        "guest"
    );
    let (status, _, _) = app.decide(OWNER, g, &rid, "deny").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_tenant_failure_at_approval_keeps_the_request_pending() {
    let app = spawn_app().await;
    let g = approval_group(&app).await;
    let rid = ask(&app, ALICE, g).await;
    app.directory.set_down(true);

    let got = app.decide(OWNER, g, &rid, "approve").await;

    assert_problem(&got, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert_eq!(app.db_count("join_requests").await, 1);
    app.directory.set_down(false);
    let (status, _, _) = app.decide(OWNER, g, &rid, "approve").await;
    assert_eq!(status, StatusCode::OK);
    assert!(app.directory.contains(g, "alice"));
    assert_eq!(app.db_count("join_requests").await, 0);
}

#[tokio::test]
async fn a_group_that_is_not_active_cannot_approve() {
    let app = spawn_app().await;
    let g = approval_group(&app).await;
    let rid = ask(&app, ALICE, g).await;
    app.catalog.set_state(g, GroupState::Archiving);
    let got = app.decide(OWNER, g, &rid, "approve").await;
    assert_problem(&got, StatusCode::CONFLICT, "group-not-active");
    assert!(app.directory.writes().is_empty());
}

#[tokio::test]
async fn asking_needs_an_address_for_the_mail() {
    let app = spawn_app().await;
    let g = approval_group(&app).await;
    let no_email = Who {
        sub: "nomail",
        kind: IdentityKind::Member,
        with_email: false,
    };
    let got = app.join(no_email, g).await;
    assert_problem(&got, StatusCode::UNPROCESSABLE_ENTITY, "email-required");
    assert_eq!(app.db_count("join_requests").await, 0);
}

#[tokio::test]
async fn the_owners_queue_pages() {
    let app = spawn_app().await;
    let g = approval_group(&app).await;
    for who in [ALICE, BOB, GINA_GUEST] {
        ask(&app, who, g).await;
        app.clock.advance_secs(1);
    }
    let path = format!("/membership/v1/groups/{g}/requests?limit=2");
    let (_, _, first) = app.call(OWNER, Method::GET, &path, None).await;
    let subjects: Vec<&str> = first["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["alice", "bob"]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let path = format!("/membership/v1/groups/{g}/requests?limit=2&cursor={cursor}");
    let (_, _, second) = app.call(OWNER, Method::GET, &path, None).await;
    assert_eq!(second["requests"][0]["subject"], "gina");
    assert!(second.get("next_cursor").is_none(), "{second}");

    for bad in ["limit=0", "limit=501", "limit=x", "cursor=nope"] {
        let path = format!("/membership/v1/groups/{g}/requests?{bad}");
        let got = app.call(OWNER, Method::GET, &path, None).await;
        assert_problem(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
    }
}

#[tokio::test]
async fn malformed_request_ids_are_422() {
    let app = spawn_app().await;
    let g = approval_group(&app).await;
    let got = app.decide(OWNER, g, "not-a-uuid", "approve").await;
    assert_problem(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
    assert_eq!(got.2["detail"], "invalid request id: must be a UUID");
    let got = app
        .call(
            ALICE,
            Method::DELETE,
            "/membership/v1/me/requests/nope",
            None,
        )
        .await;
    assert_problem(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
}

/// The notifications handed to the tenant, once there are `n` (they are handed over after the
/// answer, in a task of their own).
async fn notifications(app: &crate::helpers::TestApp, n: usize) -> Vec<Notification> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let got = app.directory.notifications();
        if got.len() >= n {
            return got;
        }
        assert!(std::time::Instant::now() < deadline, "{got:?}");
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn owners_hear_a_count_and_each_requester_alone_their_decision() {
    let app = spawn_app().await;
    let g = approval_group(&app).await;
    let alice = ask(&app, ALICE, g).await;
    notifications(&app, 1).await;
    let bob = ask(&app, BOB, g).await;
    let filed = notifications(&app, 2).await;
    // The owners' notification carries the group and a count: no field could name anyone.
    assert_eq!(
        filed,
        [
            Notification::RequestsWaiting {
                group_id: g,
                count: 1
            },
            Notification::RequestsWaiting {
                group_id: g,
                count: 2
            },
        ]
    );
    app.decide(OWNER, g, &alice, "approve").await;
    app.decide(OWNER, g, &bob, "deny").await;
    let all = notifications(&app, 4).await;
    let mut decided = all[2..].to_vec();
    decided.sort_by_key(|n| format!("{n:?}"));
    assert_eq!(
        decided,
        [
            Notification::RequestDecided {
                group_id: g,
                outcome: DecisionOutcome::Approved,
                to: Email::parse("alice@corp.example").unwrap(),
            },
            Notification::RequestDecided {
                group_id: g,
                outcome: DecisionOutcome::Denied,
                to: Email::parse("bob@corp.example").unwrap(),
            },
        ],
        "each to the requester's own address, and to nobody else"
    );
}
