//! Invites: codes with 160 random bits, stored hashed and shown once; single- and multi-use,
//! expiry and revocation; redeeming records no redeemer; every bad code gets the same 404, and
//! failed attempts are limited per caller.

use crate::helpers::{
    assert_problem, spawn_app, spawn_app_with, TestApp, ALICE, BOB, CAROL, GINA_GUEST, MALLORY,
    OWNER,
};
use domain::{GroupId, GroupState, JoinPolicy};
use http::{header, Method, StatusCode};
use membership_api::{AbuseLimits, BAD_INVITE_DETAIL, CODE_PREFIX};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn invite_group(app: &TestApp) -> GroupId {
    app.group(
        "Highly Confidential",
        JoinPolicy::Invite,
        GroupState::Active,
    )
}

/// Creates an invite; returns its code and its whole answer.
async fn make(app: &TestApp, g: GroupId, body: Value) -> (String, Value) {
    let (status, _, created) = app.create_invite(OWNER, g, body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    (created["code"].as_str().unwrap().to_string(), created)
}

#[tokio::test]
async fn an_invite_is_shown_once_stored_hashed_and_admits_one_person_by_default() {
    let app = spawn_app().await;
    let g = invite_group(&app);

    let raw = app
        .raw(
            Method::POST,
            &format!("/membership/v1/groups/{g}/invites"),
            Some(&app.token(OWNER)),
            Some(&json!({})),
        )
        .await;

    assert_eq!(raw.status, StatusCode::CREATED);
    assert_eq!(raw.headers[header::CACHE_CONTROL], "no-store");
    let created = raw.answer().2;
    let code = created["code"].as_str().unwrap();
    assert!(code.starts_with(CODE_PREFIX), "{code}");
    assert_eq!(code.len(), CODE_PREFIX.len() + 32, "160 bits in base32");
    assert_eq!(created["max_uses"], 1);
    assert_eq!(
        created["expires_at"], "2025-01-08T00:00:00Z",
        "a week by default"
    );
    assert_eq!(created["group_id"], g.to_string());

    // Only the SHA-256 is stored.
    let stored = app
        .db_texts("SELECT lower(hex(code_hash)) FROM invites")
        .await;
    let digest: String = Sha256::digest(code.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(stored, [Some(digest)]);

    // The owners' list never shows a code again.
    let (_, _, list) = app.invites(OWNER, g).await;
    assert_eq!(
        list,
        json!({ "invites": [{
            "id": created["id"], "uses": 0, "max_uses": 1, "expires_at": "2025-01-08T00:00:00Z",
            "revoked": false, "state": "active", "created_at": "2025-01-01T00:00:00Z"
        }]})
    );

    let (status, _, body) = app.redeem(ALICE, code).await;
    app.assert_alice_admitted(status, &body, g, "Highly Confidential");

    let used = app.redeem(BOB, code).await;
    assert_problem(&used, StatusCode::NOT_FOUND, "invalid-invite");
    assert!(!app.directory.contains(g, "bob"));
    let list = app.invites(OWNER, g).await.2;
    assert_eq!(
        (
            list["invites"][0]["uses"].clone(),
            list["invites"][0]["state"].clone()
        ),
        (json!(1), json!("used-up"))
    );
}

#[tokio::test]
async fn redeeming_records_no_redeemer_anywhere() {
    let app = spawn_app().await;
    let g = invite_group(&app);
    let (code, _) = make(&app, g, json!({"max_uses": 5})).await;

    let (status, _, _) = app.redeem(ALICE, &code).await;
    assert_eq!(status, StatusCode::OK);

    // The owners' view: a count, no one.
    let list = app.invites(OWNER, g).await.2;
    assert_eq!(list["invites"][0]["uses"], 1);
    assert!(!list.to_string().contains("alice"), "{list}");
    // The database: not one byte of the redeemer, in any table or the write-ahead log.
    let mut bytes = Vec::new();
    for file in ["membership.db", "membership.db-wal"] {
        if let Ok(b) = std::fs::read(app.dir.join(file)) {
            bytes.extend(b);
        }
    }
    assert!(!bytes.is_empty());
    assert!(
        !bytes.windows(5).any(|w| w == b"alice"),
        "the database records who redeemed"
    );
}

#[tokio::test]
async fn a_multi_use_invite_admits_that_many() {
    let app = spawn_app().await;
    let g = invite_group(&app);
    let (code, created) = make(&app, g, json!({"max_uses": 2, "expires_in_hours": 1})).await;
    assert_eq!(created["max_uses"], 2);
    assert_eq!(created["expires_at"], "2025-01-01T01:00:00Z");

    assert_eq!(app.redeem(ALICE, &code).await.0, StatusCode::OK);
    assert_eq!(app.redeem(BOB, &code).await.0, StatusCode::OK);
    let third = app.redeem(CAROL, &code).await;
    assert_problem(&third, StatusCode::NOT_FOUND, "invalid-invite");
    assert!(app.directory.contains(g, "alice") && app.directory.contains(g, "bob"));
    assert!(!app.directory.contains(g, "carol"));
}

#[tokio::test]
async fn codes_match_whatever_their_case_and_surrounding_spaces() {
    let app = spawn_app().await;
    let g = invite_group(&app);
    let (code, _) = make(&app, g, json!({})).await;
    let typed = format!("  {}\n", code.to_lowercase());
    assert_eq!(app.redeem(ALICE, &typed).await.0, StatusCode::OK);
}

#[tokio::test]
async fn every_bad_code_gets_the_same_404() {
    let app = spawn_app_with(AbuseLimits {
        rate_limit_per_minute: 1000,
        redeem_failures_per_hour: 1000,
        ..AbuseLimits::default()
    })
    .await;
    let g = invite_group(&app);
    let (used_up, _) = make(&app, g, json!({})).await;
    assert_eq!(app.redeem(ALICE, &used_up).await.0, StatusCode::OK);
    let (revoked, created) = make(&app, g, json!({})).await;
    let path = format!(
        "/membership/v1/groups/{g}/invites/{}",
        created["id"].as_str().unwrap()
    );
    let (status, _, _) = app.call(OWNER, Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (expired, _) = make(&app, g, json!({"expires_in_hours": 1})).await;
    app.clock.advance_secs(3600);
    let unknown = format!("{CODE_PREFIX}{}", "A".repeat(32));

    let mut answers = Vec::new();
    for code in [
        used_up.as_str(),
        revoked.as_str(),
        expired.as_str(),
        unknown.as_str(),
        "",
        "not a code",
        &"x".repeat(10_000),
    ] {
        answers.push(app.redeem_raw(BOB, code).await.visible());
    }

    let (status, ctype, body) = &answers[0];
    assert_eq!(*status, StatusCode::NOT_FOUND);
    assert_eq!(ctype, "application/problem+json");
    let body: Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["type"], "urn:hush:problem:invalid-invite");
    assert_eq!(body["detail"], BAD_INVITE_DETAIL);
    for a in &answers {
        assert_eq!(a, &answers[0], "a bad code was told apart");
    }
    assert!(!app.directory.contains(g, "bob"));
    // Expiry and revocation show in the owners' list.
    let states: Vec<String> = app.invites(OWNER, g).await.2["invites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["state"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(states.len(), 3);
    for s in ["used-up", "revoked", "expired"] {
        assert!(states.contains(&s.to_string()), "{states:?}");
    }
}

#[tokio::test]
async fn failed_redemptions_are_limited_per_caller_then_refill() {
    let app = spawn_app_with(AbuseLimits {
        rate_limit_per_minute: 1000,
        redeem_failures_per_hour: 3,
        ..AbuseLimits::default()
    })
    .await;
    let g = invite_group(&app);
    let (good, _) = make(&app, g, json!({"max_uses": 10})).await;

    for i in 0..3 {
        let got = app.redeem(MALLORY, &format!("HUSH-GUESS{i}")).await;
        assert_problem(&got, StatusCode::NOT_FOUND, "invalid-invite");
    }
    // Out of failures: even a good code is refused now, and nothing is written.
    let refused = app.redeem_raw(MALLORY, &good).await;
    assert_problem(
        &refused.answer(),
        StatusCode::TOO_MANY_REQUESTS,
        "rate-limited",
    );
    assert_eq!(refused.headers[header::RETRY_AFTER], "1200");
    assert!(!app.directory.contains(g, "mallory"));
    // Others are not affected.
    assert_eq!(app.redeem(ALICE, &good).await.0, StatusCode::OK);
    // One failure refills every 20 minutes.
    app.clock.advance_secs(1200);
    assert_eq!(app.redeem(MALLORY, &good).await.0, StatusCode::OK);
}

#[tokio::test]
async fn the_label_refuses_a_redemption_before_anything_is_written_and_the_code_survives() {
    let app = spawn_app().await;
    let g = app.group("Confidential", JoinPolicy::Invite, GroupState::Active);
    let (code, _) = make(&app, g, json!({})).await;

    let got = app.redeem(GINA_GUEST, &code).await;

    assert_problem(&got, StatusCode::FORBIDDEN, "label-refused");
    assert!(app.directory.writes().is_empty());
    assert_eq!(app.invites(OWNER, g).await.2["invites"][0]["uses"], 0);
    assert_eq!(app.redeem(ALICE, &code).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_redemption_the_tenant_fails_gives_its_use_back() {
    let app = spawn_app().await;
    let g = invite_group(&app);
    let (code, _) = make(&app, g, json!({})).await;
    app.directory.set_down(true);

    let got = app.redeem(ALICE, &code).await;

    assert_problem(&got, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert_eq!(app.invites(OWNER, g).await.2["invites"][0]["uses"], 0);
    app.directory.set_down(false);
    assert_eq!(app.redeem(ALICE, &code).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_group_that_stopped_taking_invites_or_members_says_so() {
    let app = spawn_app().await;
    let g = invite_group(&app);
    let (code, _) = make(&app, g, json!({"max_uses": 5})).await;
    app.catalog.set_join_policy(g, JoinPolicy::Approval);
    let got = app.redeem(ALICE, &code).await;
    assert_problem(&got, StatusCode::CONFLICT, "join-policy");
    app.catalog.set_join_policy(g, JoinPolicy::Invite);
    app.catalog.set_state(g, GroupState::Archiving);
    let got = app.redeem(ALICE, &code).await;
    assert_problem(&got, StatusCode::CONFLICT, "group-not-active");
    assert!(app.directory.writes().is_empty());
    assert_eq!(app.invites(OWNER, g).await.2["invites"][0]["uses"], 0);
}

#[tokio::test]
async fn only_owners_of_invite_groups_make_list_and_revoke_invites() {
    let app = spawn_app().await;
    let g = invite_group(&app);
    let (_, created) = make(&app, g, json!({})).await;
    let iid = created["id"].as_str().unwrap();
    let missing = GroupId::new();

    let reference = app
        .raw(
            Method::GET,
            &format!("/membership/v1/groups/{g}/invites"),
            Some(&app.token(MALLORY)),
            None,
        )
        .await;
    assert_problem(&reference.answer(), StatusCode::FORBIDDEN, "not-owner");
    for group in [g, missing] {
        for (method, path, body) in [
            (
                Method::GET,
                format!("/membership/v1/groups/{group}/invites"),
                None,
            ),
            (
                Method::POST,
                format!("/membership/v1/groups/{group}/invites"),
                Some(json!({})),
            ),
            (
                Method::DELETE,
                format!("/membership/v1/groups/{group}/invites/{iid}"),
                None,
            ),
        ] {
            let got = app
                .raw(method, &path, Some(&app.token(MALLORY)), body.as_ref())
                .await;
            assert_eq!(got.visible(), reference.visible(), "{path}");
        }
    }
    assert_eq!(
        app.invites(OWNER, g).await.2["invites"][0]["revoked"],
        false
    );

    let approval = app.group("General", JoinPolicy::Approval, GroupState::Active);
    let got = app.create_invite(OWNER, approval, json!({})).await;
    assert_problem(&got, StatusCode::CONFLICT, "join-policy");

    let unknown = format!("/membership/v1/groups/{g}/invites/{}", uuid::Uuid::new_v4());
    let got = app.call(OWNER, Method::DELETE, &unknown, None).await;
    assert_problem(&got, StatusCode::NOT_FOUND, "invite-not-found");
    // Another group's invite cannot be revoked through this one.
    let other = invite_group(&app);
    let cross = format!("/membership/v1/groups/{other}/invites/{iid}");
    let got = app.call(OWNER, Method::DELETE, &cross, None).await;
    assert_problem(&got, StatusCode::NOT_FOUND, "invite-not-found");
}

#[tokio::test]
async fn invite_limits_are_checked() {
    let app = spawn_app().await;
    let g = invite_group(&app);
    for body in [
        json!({"max_uses": 0}),
        json!({"max_uses": 10_001}),
        json!({"expires_in_hours": 0}),
        json!({"expires_in_hours": 2161}),
        json!({"max_uses": -1}),
        json!({"uses": 1}),
    ] {
        let got = app.create_invite(OWNER, g, body.clone()).await;
        assert_problem(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
    }
    assert_eq!(app.db_count("invites").await, 0);
    let got = app
        .call(
            ALICE,
            Method::POST,
            "/membership/v1/invites/redeem",
            Some(json!({})),
        )
        .await;
    assert_problem(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
}
