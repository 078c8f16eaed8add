//! The privacy invariants this slice reaches: INV-1 (no member lists), INV-2 (only yourself),
//! INV-9 (the tenant refuses everything without a valid service token).

use crate::helpers::*;
use domain::ServiceName;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// Every property name found anywhere in an OpenAPI document.
fn property_names(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Object(props)) = map.get("properties") {
                out.extend(props.keys().cloned());
            }
            map.values().for_each(|x| property_names(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| property_names(x, out)),
        _ => {}
    }
}

async fn inv1_no_endpoint_or_document_lists_members(kind: Backend) {
    let app = App::spawn_on(kind).await;
    let alice = app.member("alice");
    let id = app
        .active_group(&alice, "Witness Support", "General", "open")
        .await;
    for who in ["bob", "carol"] {
        let r = app
            .post(
                &app.membership(&format!("/groups/{id}/join")),
                &app.member(who),
                json!({}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
    }

    // No OpenAPI document of a public service has a member-list shape.
    for (base, prefix) in [
        (&app.urls.control, "control"),
        (&app.urls.membership, "membership"),
        (&app.urls.bulk, "bulk"),
    ] {
        let doc = app
            .get(&format!("{base}/{prefix}/v1/openapi.json"), &alice)
            .await;
        assert_eq!(
            doc.status,
            StatusCode::OK,
            "{prefix} serves its OpenAPI document"
        );
        // The one lawful export INV-1 names, the answer of a redeemed break-glass grant
        // (INV-8), is set aside; nothing else may have a member-list shape.
        let mut rest = doc.body.clone();
        if let Some(paths) = rest["paths"].as_object_mut() {
            paths.remove("/control/v1/break-glass/requests/{id}/redeem");
        }
        if let Some(schemas) = rest["components"]["schemas"].as_object_mut() {
            schemas.remove("Answer");
            schemas.remove("ListedMember");
        }
        let mut names = Vec::new();
        property_names(&rest, &mut names);
        for bad in [
            "members",
            "member_list",
            "subjects",
            "emails",
            "recipients",
            "member_subjects",
        ] {
            assert!(
                !names.iter().any(|n| n == bad),
                "{prefix} documents a '{bad}' property"
            );
        }
        for (path, ops) in doc.body["paths"].as_object().unwrap() {
            assert!(
                !(path.ends_with("/members") && ops.get("get").is_some()),
                "{prefix} documents GET {path}"
            );
        }
    }

    // Nothing an owner, another user or a label-admin can read names a member.
    let readers = readers(&app, &alice);
    for (role, token) in &readers {
        for url in [
            app.control(&format!("/groups/{id}")),
            app.control("/groups?q=witness"),
            app.control("/groups"),
            app.control("/labels"),
            app.membership("/me/groups"),
            app.membership(&format!("/groups/{id}/me")),
            format!("{}/bulk/v1/jobs", app.urls.bulk),
            app.control(&format!("/groups/{id}/members")),
            app.membership(&format!("/groups/{id}/members")),
        ] {
            let res = app.get(&url, token).await;
            for secret in ["bob", "carol"] {
                assert!(
                    !res.text.contains(secret),
                    "{role} learned '{secret}' from GET {url}: {}",
                    res.text
                );
            }
        }
    }
    // The owner sees a coarse bucket, never a number (INV-4).
    let g = app
        .get(&app.control(&format!("/groups/{id}")), &alice)
        .await;
    assert_eq!(g.body["member_count"], "<10", "{}", g.text);
    let g = app
        .get(&app.control(&format!("/groups/{id}")), &app.member("dave"))
        .await;
    assert!(
        g.body.get("member_count").is_none(),
        "only owners see the bucket: {}",
        g.text
    );

    app.stop().await;
}

async fn inv2_a_caller_learns_only_their_own_memberships(kind: Backend) {
    let app = App::spawn_on(kind).await;
    let alice = app.member("alice");
    let a = app.active_group(&alice, "Group A", "General", "open").await;
    let b = app.active_group(&alice, "Group B", "General", "open").await;
    let bob = app.member("bob");
    let carol = app.member("carol");
    app.post(
        &app.membership(&format!("/groups/{a}/join")),
        &bob,
        json!({}),
    )
    .await;
    app.post(
        &app.membership(&format!("/groups/{b}/join")),
        &carol,
        json!({}),
    )
    .await;

    let mine = app.get(&app.membership("/me/groups"), &bob).await;
    let ids: Vec<&str> = mine.body["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["id"].as_str())
        .collect();
    assert_eq!(ids, vec![a.as_str()], "bob sees exactly his own group");

    // Asking about someone else is not possible: extra parameters are ignored or refused, and
    // the answer is always about the caller.
    for url in [
        app.membership(&format!("/groups/{b}/me?subject=carol")),
        app.membership(&format!(
            "/groups/{b}/me?sub=carol&email=carol@corp.example"
        )),
    ] {
        let res = app.get(&url, &bob).await;
        assert!(res.status == StatusCode::OK || res.status.is_client_error());
        assert_ne!(
            res.body["member"], true,
            "bob learned carol's membership via {url}"
        );
    }
    let res = app
        .get(&app.membership("/me/groups?subject=carol"), &bob)
        .await;
    assert!(
        !res.text.contains(&b),
        "bob saw carol's group: {}",
        res.text
    );
    // Without a token there is nothing at all.
    let anon = app
        .call(Method::GET, &app.membership("/me/groups"), None, None)
        .await;
    anon.assert_problem(401);

    app.stop().await;
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Signs arbitrary service-token claims with a service's key from the stack.
fn sign(app: &App, service: ServiceName, claims: &Value) -> String {
    let pem = std::fs::read(app.stack.keys_dir().join(format!("{service}.key.pem"))).unwrap();
    let key = jsonwebtoken::EncodingKey::from_ec_pem(&pem).unwrap();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        claims,
        &key,
    )
    .unwrap()
}

async fn inv9_the_tenant_refuses_every_call_without_a_valid_service_token(kind: Backend) {
    let app = App::spawn_on(kind).await;
    let id = app
        .active_group(&app.member("alice"), "Tenant Probe", "General", "open")
        .await;
    let tenant = |p: &str| format!("{}/tenant/v1{p}", app.urls.tenant);
    let check_body = json!({"group_id": id, "subject": "bob"});
    let t = now();
    let wrong_key_dir = tempfile::tempdir().unwrap();
    auth::generate_service_key(wrong_key_dir.path(), ServiceName::MembershipApi).unwrap();
    let forged = auth::ServiceSigner::from_pem_file(
        ServiceName::MembershipApi,
        &wrong_key_dir.path().join("membership-api.key.pem"),
    )
    .unwrap()
    .mint(ServiceName::IsolatedTenant);
    let membership_key = app.stack.keys_dir().join("membership-api.key.pem");
    let signer =
        auth::ServiceSigner::from_pem_file(ServiceName::MembershipApi, &membership_key).unwrap();

    let bad_tokens: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("garbage", Some("not-a-jwt".into())),
        ("a user's token", Some(app.member("bob"))),
        (
            "expired",
            Some(sign(
                &app,
                ServiceName::MembershipApi,
                &json!({"iss": "membership-api", "sub": "membership-api", "aud": "isolated-tenant", "iat": t - 600, "exp": t - 300}),
            )),
        ),
        ("wrongly signed", Some(forged)),
        ("wrong audience", Some(signer.mint(ServiceName::ControlApi))),
        (
            "no expiry",
            Some(sign(
                &app,
                ServiceName::MembershipApi,
                &json!({"iss": "membership-api", "sub": "membership-api", "aud": "isolated-tenant", "iat": t}),
            )),
        ),
    ];
    for (what, token) in &bad_tokens {
        for (method, path, body) in [
            (
                Method::POST,
                "/membership/check".to_string(),
                Some(check_body.clone()),
            ),
            (
                Method::POST,
                "/identities/groups".to_string(),
                Some(json!({"subject": "bob"})),
            ),
            (
                Method::POST,
                format!("/groups/{id}/members"),
                Some(json!({"subject": "mallory", "kind": "member"})),
            ),
            (Method::GET, format!("/groups/{id}/count"), None),
            (Method::GET, "/openapi.json".to_string(), None),
            (Method::GET, "/mail/counts".to_string(), None),
            (
                Method::POST,
                "/notifications".to_string(),
                Some(json!({"template": "requests-waiting", "group_id": id, "count": 1})),
            ),
        ] {
            let res = app
                .call(method.clone(), &tenant(&path), token.as_deref(), body)
                .await;
            assert_eq!(
                res.status,
                StatusCode::UNAUTHORIZED,
                "{what} on {method} {path}: {}",
                res.text
            );
            assert_eq!(res.content_type(), "application/problem+json");
        }
    }
    // A valid token of a service that may not perform the operation is refused too.
    let control = auth::ServiceSigner::from_pem_file(
        ServiceName::ControlApi,
        &app.stack.keys_dir().join("control-api.key.pem"),
    )
    .unwrap()
    .mint(ServiceName::IsolatedTenant);
    let res = app
        .call(
            Method::POST,
            &tenant("/membership/check"),
            Some(&control),
            Some(check_body.clone()),
        )
        .await;
    res.assert_problem(403);
    // The probes above changed nothing: mallory was never added.
    let res = app
        .call(
            Method::POST,
            &tenant("/membership/check"),
            Some(&signer.mint(ServiceName::IsolatedTenant)),
            Some(json!({"group_id": id, "subject": "mallory"})),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(res.body["member"], false);
    // There is no way to list a group's members, even for a trusted service.
    for svc in [
        ServiceName::ControlApi,
        ServiceName::MembershipApi,
        ServiceName::BulkApi,
    ] {
        let tok = auth::ServiceSigner::from_pem_file(
            svc,
            &app.stack.keys_dir().join(format!("{svc}.key.pem")),
        )
        .unwrap()
        .mint(ServiceName::IsolatedTenant);
        let res = app
            .get(&tenant(&format!("/groups/{id}/members")), &tok)
            .await;
        assert!(
            matches!(res.status.as_u16(), 404 | 405),
            "{svc}: {}",
            res.text
        );
    }

    app.stop().await;
}

/// Everything each role other than the person can read, as (url, status, body) triples.
async fn everything_others_see(app: &App, group: &str, readers: &[(&str, String)]) -> Vec<String> {
    let mut seen = Vec::new();
    for (role, token) in readers {
        for url in [
            app.control(&format!("/groups/{group}")),
            app.control("/groups?q=invisible"),
            app.control("/groups"),
            app.control("/labels"),
            app.membership(&format!("/groups/{group}/requests")),
            app.membership(&format!("/groups/{group}/invites")),
            app.membership(&format!("/groups/{group}/claim-rules")),
            app.membership(&format!("/groups/{group}/me")),
            app.membership("/me/groups"),
            app.membership("/me/requests"),
            format!("{}/bulk/v1/jobs", app.urls.bulk),
        ] {
            let res = app.get(&url, token).await;
            seen.push(format!("{role} GET {url} -> {} {}", res.status, res.text));
        }
    }
    seen
}

async fn a_membership_changes_nothing_that_anyone_else_can_read(kind: Backend) {
    let app = App::spawn_on(kind).await;
    let alice = app.member("alice");
    let g = app
        .active_group(&alice, "Invisible Ink", "General", "open")
        .await;
    app.post(
        &app.membership(&format!("/groups/{g}/invites")),
        &alice,
        json!({"max_uses": 5}),
    )
    .await;
    let readers = readers(&app, &alice);
    let before = everything_others_see(&app, &g, &readers).await;

    let bob = app.member("bob");
    let joined = app
        .post(
            &app.membership(&format!("/groups/{g}/join")),
            &bob,
            json!({}),
        )
        .await;
    assert_eq!(joined.status, StatusCode::OK, "{}", joined.text);
    let owner_added = app
        .post(
            &app.membership(&format!("/groups/{g}/members")),
            &alice,
            json!({"email": "carol@corp.example"}),
        )
        .await;
    assert_eq!(owner_added.status, StatusCode::ACCEPTED);
    let during = everything_others_see(&app, &g, &readers).await;

    app.post(
        &app.membership(&format!("/groups/{g}/leave")),
        &bob,
        json!({}),
    )
    .await;
    let after = everything_others_see(&app, &g, &readers).await;

    for (i, line) in before.iter().enumerate() {
        assert_eq!(line, &during[i], "a join changed what someone else reads");
        assert_eq!(line, &after[i], "a leave changed what someone else reads");
    }
    app.stop().await;
}

/// The bucket the owner (`owner`'s token) reads on the group's page.
async fn bucket(app: &App, owner: &str, group: &str) -> Value {
    let res = app
        .get(&app.control(&format!("/groups/{group}")), owner)
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    res.body["member_count"].clone()
}

/// An owner who moves the live count across a bucket edge and back, with any number of joins,
/// leaves and adds, reads the same bucket all the while: the bucket comes from a snapshot kept
/// at least a day (the store's test shows it refresh), so it cannot be calibrated by writes.
async fn inv4_an_owner_writing_around_a_bucket_edge_reads_the_same_bucket(kind: Backend) {
    let app = App::spawn_on(kind).await;
    let alice = app.member("alice");
    let g = app
        .active_group(&alice, "Edge Probe", "General", "open")
        .await;
    assert_eq!(
        bucket(&app, &alice, &g).await,
        "<10",
        "the first look takes the snapshot"
    );
    // Twelve people join: the live count is over the `<10` edge.
    let people: Vec<String> = (0..12).map(|i| app.member(&format!("edge-{i}"))).collect();
    for p in &people {
        let res = app
            .post(&app.membership(&format!("/groups/{g}/join")), p, json!({}))
            .await;
        assert!(res.status.is_success(), "{}", res.text);
        assert!(app.is_member(p, &g).await);
    }
    assert_eq!(
        bucket(&app, &alice, &g).await,
        "<10",
        "twelve joins do not show"
    );
    // The probe: step back below the edge, add a target, look; remove them, look.
    for p in &people[..3] {
        app.post(&app.membership(&format!("/groups/{g}/leave")), p, json!({}))
            .await;
    }
    assert_eq!(bucket(&app, &alice, &g).await, "<10");
    let target = json!({"email": "target@corp.example"});
    let added = app
        .post(
            &app.membership(&format!("/groups/{g}/members")),
            &alice,
            target.clone(),
        )
        .await;
    assert_eq!(added.status, StatusCode::ACCEPTED, "{}", added.text);
    assert_eq!(
        bucket(&app, &alice, &g).await,
        "<10",
        "the target's add does not show"
    );
    app.post(
        &app.membership(&format!("/groups/{g}/members/remove")),
        &alice,
        target,
    )
    .await;
    assert_eq!(bucket(&app, &alice, &g).await, "<10", "nor its removal");
    app.stop().await;
}

/// INV-1 and INV-2 on the routes apps use (issue 18): an app learns, for the person presenting
/// their own token, which of its resources they may use — nothing about anyone else; what the
/// operator and owners read about apps, resources and bindings names no member; and the internal
/// lookup is for membership-api alone.
async fn inv1_inv2_an_app_learns_about_no_one_but_the_presenting_person(kind: Backend) {
    use crate::decisions::AUDIENCE;
    let app = App::spawn_on(kind).await;
    let alice = app.member("alice");
    let team = app
        .active_group(&alice, "Witness Team", "Confidential", "approval")
        .await;
    let rp = app
        .register_app(AUDIENCE, &[("case-files", "Confidential")])
        .await;
    let bound = app.bind(&alice, &team, &rp.resources[0].1).await;
    assert_eq!(bound.status, StatusCode::CREATED, "{}", bound.text);
    for email in ["bob@corp.example", "carol@corp.example"] {
        let r = app
            .post(
                &app.membership(&format!("/groups/{team}/members")),
                &alice,
                json!({"email": email}),
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
    }
    let bob = app.member("bob");
    let decided = app.exchange(&rp, &rp.secret, Some(&bob)).await;
    assert_eq!(decided.status, StatusCode::OK, "{}", decided.text);
    let claims = app
        .verify_decision(decided.body["access_token"].as_str().unwrap(), AUDIENCE)
        .await
        .unwrap();
    let everything = format!("{} {claims}", decided.text);
    assert!(!everything.contains("carol"), "{everything}");
    assert!(
        !everything.contains(&team),
        "a decision names resources, never the groups behind them: {everything}"
    );
    let asserted = app
        .post(
            &app.membership("/me/assertions"),
            &bob,
            json!({"audience": AUDIENCE}),
        )
        .await;
    assert!(!asserted.text.contains("carol"));

    // What anyone may read about apps, resources and bindings names no member.
    for (role, token) in &readers(&app, &alice) {
        for url in [
            app.control("/relying-parties"),
            app.control(&format!("/relying-parties/{}", rp.id)),
            app.control("/resources"),
            app.control(&format!("/groups/{team}/bindings")),
            app.membership("/decisions/jwks.json"),
        ] {
            let res = app.get(&url, token).await;
            for secret in ["bob", "carol"] {
                assert!(
                    !res.text.contains(secret),
                    "{role} learned '{secret}' from GET {url}: {}",
                    res.text
                );
            }
        }
    }
    // The internal lookup (which groups guard an app) is membership-api's alone.
    for (role, token) in &readers(&app, &alice) {
        let res = app
            .post(
                &app.control("/internal/relying-parties/lookup"),
                token,
                json!({"id": rp.id}),
            )
            .await;
        assert!(
            res.status == StatusCode::UNAUTHORIZED || res.status == StatusCode::FORBIDDEN,
            "{role} reached the internal lookup: {} {}",
            res.status,
            res.text
        );
    }
    app.stop().await;
}

/// Operators read the tenant's mail queue and dead letters through control-api: counts, codes
/// and buckets only; nobody else reads them at all.
async fn operators_read_the_mail_queue_as_counts_and_nobody_else_reads_it(kind: Backend) {
    let app = App::spawn_on(kind).await;
    let alice = app.member("alice");
    let group = app
        .active_group(&alice, "Quiet Mail", "General", "open")
        .await;
    let operator = app.operator();
    let status = app.get(&app.control("/mail/status"), &operator).await;
    assert_eq!(status.status, StatusCode::OK, "{}", status.text);
    assert!(status.body["queued_messages"].is_i64(), "{}", status.text);
    for volume in ["recipients", "deliveries", "attempts"] {
        assert!(!status.text.contains(volume), "{volume}: {}", status.text);
    }
    assert!(status.body["relay"].is_object(), "{}", status.text);
    let dead = app.get(&app.control("/mail/dead-letters"), &operator).await;
    assert_eq!(dead.status, StatusCode::OK, "{}", dead.text);
    assert_eq!(dead.body["dead_letters"], json!([]));
    for res in [&status, &dead] {
        assert!(!res.text.contains(&group) && !res.text.contains("alice"));
    }
    for path in ["/mail/status", "/mail/dead-letters"] {
        app.get(&app.control(path), &alice)
            .await
            .assert_problem(403);
    }
    app.stop().await;
}

service_kit::backend_tests!(
    operators_read_the_mail_queue_as_counts_and_nobody_else_reads_it,
    inv1_inv2_an_app_learns_about_no_one_but_the_presenting_person,
    inv1_no_endpoint_or_document_lists_members,
    inv4_an_owner_writing_around_a_bucket_edge_reads_the_same_bucket,
    inv2_a_caller_learns_only_their_own_memberships,
    inv9_the_tenant_refuses_every_call_without_a_valid_service_token,
    a_membership_changes_nothing_that_anyone_else_can_read,
);

/// Everyone who may read something about a group but never its members: its owner (whose
/// token is `owner`), an outsider, a label-admin and an operator.
fn readers(app: &App, owner: &str) -> [(&'static str, String); 4] {
    [
        ("owner", owner.to_string()),
        ("outsider", app.member("dave")),
        (
            "label-admin",
            app.token("lena", IdentityKind::Member, &["label-admin"]),
        ),
        (
            "operator",
            app.token("otto", IdentityKind::Member, &["operator"]),
        ),
    ]
}
