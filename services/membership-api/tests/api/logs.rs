//! INV-6: whatever a membership request does — succeed, be refused, or fail on a dependency —
//! nothing it logs names the caller, so no log line ties a person to a group.

use crate::helpers::{spawn_app, ALICE, BOB, GINA_GUEST, OWNER};
use domain::{GroupState, JoinPolicy};
use http::Method;
use serde_json::json;
use std::io::Write;
use std::sync::{Arc, Mutex};
use tracing_subscriber::fmt::MakeWriter;

/// Collects everything written to it.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn inv_6_membership_paths_never_log_the_caller() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let app = spawn_app().await;
    let open = app.group("General", JoinPolicy::Open, GroupState::Active);
    let closed = app.group("Confidential", JoinPolicy::Open, GroupState::Active);
    app.join(ALICE, open).await;
    app.join(GINA_GUEST, closed).await;
    app.am_i(ALICE, open).await;
    app.my_groups(ALICE).await;
    app.leave(ALICE, open).await;

    // Approval: ask, be seen, be approved or denied.
    let approval = app.group("General", JoinPolicy::Approval, GroupState::Active);
    let rid = app.join(ALICE, approval).await.2["request"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let bobs = app.join(BOB, approval).await.2["request"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.my_requests(ALICE).await;
    app.pending(OWNER, approval).await;
    app.decide(OWNER, approval, &rid, "approve").await;
    app.decide(OWNER, approval, &bobs, "deny").await;
    app.put_rules(
        OWNER,
        approval,
        json!({"rules": [{"all": [{"claim": "dept", "equals": "HR"}]}]}),
    )
    .await;
    app.join_with(GINA_GUEST, approval, &json!({"dept": "HR"}))
        .await;

    // Invites: made, redeemed, guessed.
    let invite = app.group("General", JoinPolicy::Invite, GroupState::Active);
    let code = app
        .create_invite(OWNER, invite, json!({"max_uses": 3}))
        .await
        .2["code"]
        .as_str()
        .unwrap()
        .to_string();
    app.redeem(ALICE, &code).await;
    app.redeem(BOB, "HUSH-WRONG").await;

    // Owners' writes, by subject and by address, admitted and refused.
    let members = format!("/membership/v1/groups/{closed}/members");
    app.call(
        OWNER,
        Method::POST,
        &members,
        Some(json!({"subject": "alice"})),
    )
    .await;
    app.call(
        OWNER,
        Method::POST,
        &members,
        Some(json!({"email": "pat@partner.example"})),
    )
    .await;
    app.call(OWNER, Method::DELETE, &format!("{members}/alice"), None)
        .await;

    app.directory.set_down(true);
    app.decide(OWNER, approval, &rid, "approve").await;
    app.redeem(BOB, &code).await;
    let (status, _, _) = app.join(ALICE, open).await;
    assert_eq!(status, http::StatusCode::SERVICE_UNAVAILABLE);

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    // The capture works: the failure above was logged, inside the request's span.
    assert!(text.contains("request failed"), "nothing captured:\n{text}");
    assert!(text.contains("/membership/v1/groups/{id}/join"), "{text}");
    for who in [
        "alice",
        "gina",
        "bob",
        "corp.example",
        "partner.example",
        "pat@",
        code.as_str(),
    ] {
        assert!(
            !text.contains(who),
            "the log names the caller ({who}):\n{text}"
        );
    }
    for g in [open, closed, approval, invite] {
        assert!(
            !text.contains(&g.to_string()),
            "the log names a group id:\n{text}"
        );
    }
}
