//! Group types through all four services: a security group has no address and takes no mail,
//! and every path that adds someone checks its label exactly as for a mail group.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Runs a bulk job of `lines` (NDJSON) as an operator and waits until it has ended.
async fn bulk_job(app: &App, lines: &[Value]) -> Value {
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let job = reqwest::Client::new()
        .post(format!("{}/bulk/v1/jobs", app.urls.bulk))
        .bearer_auth(app.operator())
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(job.status(), reqwest::StatusCode::CREATED);
    let job: Value = job.json().await.unwrap();
    let uri = format!(
        "{}/bulk/v1/jobs/{}",
        app.urls.bulk,
        job["id"].as_str().unwrap()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = app.get(&uri, &app.operator()).await;
        if got.body["state"] == "succeeded" {
            return got.body;
        }
        assert!(
            Instant::now() < deadline && got.body["state"] != "failed",
            "the job never ended: {}",
            got.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_confidential_security_group_admits_employees_and_refuses_guests_and_agents_on_every_path(
    kind: Backend,
) {
    let app = App::spawn_on(kind).await;
    let owner = app.member("olga");
    let g = app
        .active_group_of_type(
            &owner,
            "Report readers",
            "Confidential",
            "approval",
            "security",
        )
        .await;
    let page = app.get(&app.control(&format!("/groups/{g}")), &owner).await;
    assert_eq!(page.body["type"], "security", "{}", page.text);
    assert!(page.body.get("contact_address").is_none(), "{}", page.text);
    let gina = app.token("gina", IdentityKind::Guest, &[]);
    let robot = app.token("robot", IdentityKind::Agent, &[]);
    let join = app.membership(&format!("/groups/{g}/join"));

    // Self-service request, then an owner's approval: the employee gets in; the guest and the
    // agent are refused by the label before any request is filed.
    let carol = app.member("carol");
    let filed = app.post(&join, &carol, json!({})).await;
    assert_eq!(filed.status, StatusCode::ACCEPTED, "{}", filed.text);
    let rid = filed.body["request"]["id"].as_str().unwrap().to_string();
    for t in [&gina, &robot] {
        let refused = app.post(&join, t, json!({})).await;
        refused.assert_problem(403);
        assert_eq!(refused.body["type"], "urn:hush:problem:label-refused");
    }
    let queue = app
        .get(&app.membership(&format!("/groups/{g}/requests")), &owner)
        .await;
    assert_eq!(
        queue.body["requests"].as_array().unwrap().len(),
        1,
        "{}",
        queue.text
    );
    let approved = app
        .post(
            &app.membership(&format!("/groups/{g}/requests/{rid}/approve")),
            &owner,
            json!({}),
        )
        .await;
    assert!(approved.status.is_success(), "{}", approved.text);
    assert!(app.is_member(&carol, &g).await);

    // A claim rule: an employee whose token matches gets in at once.
    let rules = json!({"rules": [{"all": [{"claim": "department", "in": ["Finance"]}]}]});
    let set = app
        .call(
            reqwest::Method::PUT,
            &app.membership(&format!("/groups/{g}/claim-rules")),
            Some(&owner),
            Some(rules),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text);
    let fiona = app.token_with_claims("fiona", &json!({"department": "Finance"}));
    let joined = app.post(&join, &fiona, json!({})).await;
    assert_eq!(joined.status, StatusCode::OK, "{}", joined.text);
    assert!(app.is_member(&fiona, &g).await);
    for t in [&gina, &robot] {
        app.post(&join, t, json!({})).await.assert_problem(403);
    }

    // An invite (the owner switches the group to invite-only first, as the label allows): the
    // guest and the agent holding the code are refused; the employee gets in.
    let switched = app
        .call(
            reqwest::Method::PATCH,
            &app.control(&format!("/groups/{g}")),
            Some(&owner),
            Some(json!({"join_policy": "invite"})),
        )
        .await;
    assert_eq!(switched.status, StatusCode::OK, "{}", switched.text);
    let made = app
        .post(
            &app.membership(&format!("/groups/{g}/invites")),
            &owner,
            json!({"max_uses": 3, "expires_in_hours": 24}),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
    let code = made.body["code"].as_str().unwrap().to_string();
    let redeem = app.membership("/invites/redeem");
    for t in [&gina, &robot] {
        let refused = app.post(&redeem, t, json!({"code": code})).await;
        refused.assert_problem(403);
        assert_eq!(refused.body["type"], "urn:hush:problem:label-refused");
    }
    let dan = app.member("dan");
    let redeemed = app.post(&redeem, &dan, json!({"code": code})).await;
    assert!(redeemed.status.is_success(), "{}", redeemed.text);
    assert!(app.is_member(&dan, &g).await);

    // An owner's add: the same answer for an employee, a guest's address and an agent, and
    // only the employee is written.
    let members = app.membership(&format!("/groups/{g}/members"));
    let erin_added = app
        .post(&members, &owner, json!({"email": "erin@corp.example"}))
        .await;
    assert_eq!(
        erin_added.status,
        StatusCode::ACCEPTED,
        "{}",
        erin_added.text
    );
    for body in [
        json!({"email": "pat@partner.example"}),
        json!({"subject": "robot"}),
    ] {
        let res = app.post(&members, &owner, body).await;
        assert_eq!(res.text, erin_added.text);
    }
    assert!(app.is_member(&app.member("erin"), &g).await);
    assert!(
        !app.is_member(&app.token("pat", IdentityKind::Guest, &[]), &g)
            .await
    );
    assert!(!app.is_member(&robot, &g).await);
    assert!(!app.is_member(&gina, &g).await);

    // A bulk job: the employee is applied, the guest's address and the agent are rejected.
    let report = bulk_job(
        &app,
        &[
            json!({"op": "add", "group_id": g, "email": "frank@corp.example"}),
            json!({"op": "add", "group_id": g, "email": "quinn@partner.example"}),
            json!({"op": "add", "group_id": g, "subject": "robot"}),
        ],
    )
    .await;
    assert_eq!(
        (report["applied"].as_u64(), report["rejected"].as_u64()),
        (Some(1), Some(2)),
        "{report}"
    );
    assert!(app.is_member(&app.member("frank"), &g).await);
    assert!(
        !app.is_member(&app.token("quinn", IdentityKind::Guest, &[]), &g)
            .await
    );
    assert!(!app.is_member(&robot, &g).await);

    // The members' own list shows the group as a security group, with no address.
    let mine = app.get(&app.membership("/me/groups"), &carol).await;
    let listed = mine.body["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == g.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{}", mine.text));
    assert_eq!(listed["type"], "security");
    assert!(listed.get("contact_address").is_none(), "{listed}");
    app.stop().await;
}

service_kit::backend_tests!(
    a_confidential_security_group_admits_employees_and_refuses_guests_and_agents_on_every_path,
);
