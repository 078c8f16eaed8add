//! Break-glass through the real stack (INV-8): an auditor files a request at control-api, two
//! distinct privacy officers approve, the auditor redeems once; every refusal of the two-person
//! rule is a clear problem+json; every step lands in the tenant's audit chain, which
//! `hush audit verify` (the real binary) then checks against a signed checkpoint; and no audit
//! event carries a clear subject, address or justification (INV-6).

use crate::helpers::{App, Backend, IdentityKind, Res};
use isolated_tenant::audit::{checkpoint, Db};
use serde_json::{json, Value};

const JUSTIFICATION: &str = "Court order 2026-CV-0417: witness tampering investigation";

fn problem_type(r: &Res) -> &str {
    r.body["type"].as_str().unwrap_or("")
}

#[track_caller]
fn refused(r: &Res, status: u16, slug: &str) {
    r.assert_problem(status);
    assert_eq!(
        problem_type(r),
        format!("urn:hush:problem:{slug}"),
        "{}",
        r.text
    );
}

/// Moves a deadline of request `id` into the past, as time passing would.
async fn age_request(app: &App, id: &str, column: &str) {
    let sql = format!("UPDATE break_glass_requests SET {column} = 1 WHERE id = $1");
    match Db::open(&app.stack.databases().tenant).await.unwrap() {
        Db::Postgres(p) => {
            sqlx::query(&sql).bind(id).execute(&p).await.unwrap();
            p.close().await;
        }
        Db::Sqlite(p) => {
            sqlx::query(&sql).bind(id).execute(&p).await.unwrap();
            p.close().await;
        }
    }
}

async fn break_glass_needs_two_officers_answers_once_and_leaves_a_verifiable_trail(kind: Backend) {
    let app = App::spawn_on(kind).await;
    let owner = app.member("olga-bg");
    let g = app
        .active_group(&owner, "Witness support", "General", "open")
        .await;
    for person in ["alice-bg-5531", "bruno-bg-7720"] {
        let r = app
            .post(
                &app.membership(&format!("/groups/{g}/join")),
                &app.member(person),
                json!({}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    // The auditor is a privacy officer too: only the tenant's rule keeps them from approving.
    let ada = app.token(
        "ada-auditor",
        IdentityKind::Member,
        &["auditor", "privacy-officer"],
    );
    let zed = app.token("zed-auditor", IdentityKind::Member, &["auditor"]);
    let pat = app.token("pat-officer", IdentityKind::Member, &["privacy-officer"]);
    let quinn = app.token("quinn-officer", IdentityKind::Member, &["privacy-officer"]);
    let requests = app.control("/break-glass/requests");
    let approve = |id: &str| app.control(&format!("/break-glass/requests/{id}/approve"));
    let redeem = |id: &str| app.control(&format!("/break-glass/requests/{id}/redeem"));

    // Wrong roles are refused.
    let full = json!({"group_id": g, "scope": "full-list", "justification": JUSTIFICATION});
    refused(
        &app.post(&requests, &owner, full.clone()).await,
        403,
        "break-glass-wrong-role",
    );
    refused(
        &app.post(&requests, &pat, full.clone()).await,
        403,
        "break-glass-wrong-role",
    );

    // A full list, encrypted to the auditor's age key.
    let identity = age::x25519::Identity::generate();
    let mut body = full.clone();
    body["recipient"] = json!(identity.to_public().to_string());
    let r = app.post(&requests, &ada, body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["state"], "pending");
    let id = r.body["id"].as_str().unwrap().to_string();

    refused(
        &app.post(&approve(&id), &ada, json!({})).await,
        403,
        "break-glass-requester-cannot-approve",
    );
    refused(
        &app.post(&redeem(&id), &ada, json!({})).await,
        409,
        "break-glass-not-approved",
    );
    refused(
        &app.post(&approve(&id), &zed, json!({})).await,
        403,
        "break-glass-wrong-role",
    );
    let r = app.post(&approve(&id), &pat, json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (r.body["approvals"].clone(), r.body["state"].clone()),
        (json!(1), json!("pending"))
    );
    assert_eq!(r.body["justification"], JUSTIFICATION, "officers see why");
    refused(
        &app.post(&approve(&id), &pat, json!({})).await,
        409,
        "break-glass-same-officer",
    );
    let r = app.post(&approve(&id), &quinn, json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["state"], "approved");
    refused(
        &app.post(&redeem(&id), &zed, json!({})).await,
        403,
        "break-glass-not-requester",
    );

    let r = app.post(&redeem(&id), &ada, json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.body.get("members").is_none(),
        "encrypted answers carry nothing in clear"
    );
    let armored = r.body["encrypted"].as_str().expect("encrypted answer");
    let plain = age::decrypt(&identity, armored.as_bytes()).expect("decrypts with the identity");
    let answer: Value = serde_json::from_slice(&plain).unwrap();
    let mut subjects: Vec<&str> = answer["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["subject"].as_str().unwrap())
        .collect();
    subjects.sort_unstable();
    assert_eq!(subjects, ["alice-bg-5531", "bruno-bg-7720"]);
    refused(
        &app.post(&redeem(&id), &ada, json!({})).await,
        410,
        "break-glass-grant-used",
    );

    // A member check by address, answered in clear.
    let check = json!({"group_id": g, "scope": "member-check", "email": "alice-bg-5531@corp.example", "justification": JUSTIFICATION});
    let r = app.post(&requests, &ada, check.clone()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id2 = r.body["id"].as_str().unwrap().to_string();
    for officer in [&pat, &quinn] {
        assert_eq!(
            app.post(&approve(&id2), officer, json!({})).await.status,
            200
        );
    }
    let r = app.post(&redeem(&id2), &ada, json!({})).await;
    assert_eq!(
        (r.status.as_u16(), r.body["member"].clone()),
        (200, json!(true)),
        "{}",
        r.text
    );

    // An expired request cannot be approved; an expired grant cannot be redeemed.
    let r = app.post(&requests, &ada, check.clone()).await;
    let id3 = r.body["id"].as_str().unwrap().to_string();
    age_request(&app, &id3, "expires_ms").await;
    refused(
        &app.post(&approve(&id3), &pat, json!({})).await,
        410,
        "break-glass-request-expired",
    );
    let r = app.post(&requests, &ada, check).await;
    let id4 = r.body["id"].as_str().unwrap().to_string();
    for officer in [&pat, &quinn] {
        assert_eq!(
            app.post(&approve(&id4), officer, json!({})).await.status,
            200
        );
    }
    age_request(&app, &id4, "grant_expires_ms").await;
    refused(
        &app.post(&redeem(&id4), &ada, json!({})).await,
        410,
        "break-glass-grant-expired",
    );
    // Bad input.
    let bad = json!({"group_id": g, "scope": "full-list", "justification": "short"});
    app.post(&requests, &ada, bad).await.assert_problem(422);

    // Every step is in the chain; nothing in it names anyone in clear (INV-6).
    let db = Db::open(&app.stack.databases().tenant).await.unwrap();
    let events = db.events_after(0, 100_000).await.unwrap();
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    for wanted in [
        "break-glass.requested:full-list",
        "break-glass.refused:break-glass-requester-cannot-approve",
        "break-glass.refused:break-glass-not-approved",
        "break-glass.refused:break-glass-same-officer",
        "break-glass.approved",
        "break-glass.granted",
        "break-glass.redeemed",
        "break-glass.answered:full-list",
        "break-glass.refused:break-glass-grant-used",
        "break-glass.answered:member-check",
        "break-glass.refused:break-glass-request-expired",
        "break-glass.refused:break-glass-grant-expired",
    ] {
        assert!(
            actions.contains(&wanted),
            "{wanted} missing from {actions:?}"
        );
    }
    for e in &events {
        let text = format!("{e:?}").to_lowercase();
        for clear in [
            "alice",
            "bruno",
            "ada-auditor",
            "pat-officer",
            "quinn",
            "olga",
            "corp.example",
            "court order",
        ] {
            assert!(
                !text.contains(clear),
                "event {} holds {clear}: {text}",
                e.seq
            );
        }
    }

    // `hush audit verify`, the real binary, against a checkpoint signed with the stack's key.
    let keys = app.stack.keys_dir().to_path_buf();
    let signer = checkpoint::Signer::load(&keys.join("audit-signing.key")).unwrap();
    let cps = app.dir.path().join("verify-checkpoints.jsonl");
    checkpoint::checkpoint_now(&db, &signer, &cps, 0)
        .await
        .unwrap()
        .expect("a checkpoint");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hush"))
        .args([
            "audit",
            "verify",
            "--database-url",
            &app.stack.databases().tenant,
        ])
        .arg("--checkpoints")
        .arg(&cps)
        .arg("--public-key")
        .arg(keys.join("audit-signing.key.pub"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("chain OK"), "{stdout}");

    // An investigator with the seal keys finds alice's membership event in this group.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hush"))
        .args([
            "audit",
            "pseudonyms",
            "--database-url",
            &app.stack.databases().tenant,
        ])
        .arg("--seal-keys-file")
        .arg(keys.join("tenant-seal.keys"))
        .args(["--group", &g, "--subject", "alice-bg-5531"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let theirs: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("subject  "))
        .collect();
    let found: Vec<&str> = events
        .iter()
        .filter(|e| e.subject.as_deref().is_some_and(|p| theirs.contains(&p)))
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(found, ["membership.added"], "{stdout}");

    // Someone with the database's superuser rights removes the record of the redemption:
    // the same command names the place and exits 2.
    let redeemed = events
        .iter()
        .find(|e| e.action == "break-glass.redeemed")
        .unwrap()
        .seq;
    let delete = format!("DELETE FROM audit_events WHERE seq = {redeemed}");
    match &db {
        Db::Postgres(p) => {
            sqlx::query("ALTER TABLE audit_events DISABLE TRIGGER ALL")
                .execute(p)
                .await
                .unwrap();
            sqlx::query(&delete).execute(p).await.unwrap();
        }
        Db::Sqlite(p) => {
            sqlx::query("DROP TRIGGER audit_events_no_delete")
                .execute(p)
                .await
                .unwrap();
            sqlx::query(&delete).execute(p).await.unwrap();
        }
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hush"))
        .args([
            "audit",
            "verify",
            "--database-url",
            &app.stack.databases().tenant,
        ])
        .arg("--checkpoints")
        .arg(&cps)
        .arg("--public-key")
        .arg(keys.join("audit-signing.key.pub"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains(&format!("BROKEN: event {redeemed}: missing")),
        "{stdout}"
    );
    drop(db);
    app.stop().await;
}

/// The requests of `view` as `token` sees them.
async fn listed(app: &App, token: &str, view: &str) -> Vec<Value> {
    let r = app
        .get(
            &app.control(&format!("/break-glass/requests?view={view}")),
            token,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["requests"].as_array().unwrap().clone()
}

fn find<'a>(list: &'a [Value], id: &str) -> Option<&'a Value> {
    list.iter().find(|r| r["id"] == id)
}

async fn officers_see_what_waits_and_one_declines_while_auditors_follow_only_their_own(
    kind: Backend,
) {
    let app = App::spawn_on(kind).await;
    let owner = app.member("olga-bgl");
    let g = app
        .active_group(&owner, "Whistle-blowers", "General", "open")
        .await;
    let ada = app.token("ada-auditor", IdentityKind::Member, &["auditor"]);
    let zed = app.token("zed-auditor", IdentityKind::Member, &["auditor"]);
    let pat = app.token("pat-officer", IdentityKind::Member, &["privacy-officer"]);
    let quinn = app.token("quinn-officer", IdentityKind::Member, &["privacy-officer"]);
    let requests = app.control("/break-glass/requests");
    let check = json!({"group_id": g, "scope": "member-check", "email": "wendy-5817@corp.example", "justification": JUSTIFICATION});
    let full = json!({"group_id": g, "scope": "full-list", "justification": "Regulator's request 88-B, signed by counsel"});
    let r = app.post(&requests, &ada, check).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let ada_id = r.body["id"].as_str().unwrap().to_string();
    let r = app.post(&requests, &zed, full).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let zed_id = r.body["id"].as_str().unwrap().to_string();

    // Each list is for its role; the view must be named.
    refused(
        &app.get(&app.control("/break-glass/requests?view=waiting"), &zed)
            .await,
        403,
        "break-glass-wrong-role",
    );
    refused(
        &app.get(&app.control("/break-glass/requests?view=mine"), &pat)
            .await,
        403,
        "break-glass-wrong-role",
    );
    refused(
        &app.get(&app.control("/break-glass/requests?view=mine"), &owner)
            .await,
        403,
        "break-glass-wrong-role",
    );
    app.get(&requests, &pat).await.assert_problem(422);
    for (step, who) in [("approve", &pat), ("decline", &pat), ("redeem", &ada)] {
        let r = app
            .post(
                &app.control(&format!("/break-glass/requests/not-a-uuid/{step}")),
                who,
                json!({}),
            )
            .await;
        r.assert_problem(422);
        assert_eq!(r.body["detail"], "id: must be a UUID", "{step}");
    }
    app.get(&app.control("/break-glass/requests?view=everything"), &pat)
        .await
        .assert_problem(422);

    // An officer sees both, with who asked and, for the member check only, about whom.
    let waiting = listed(&app, &pat, "waiting").await;
    let a = find(&waiting, &ada_id).expect("ada's request waits");
    assert_eq!(a["requester"]["subject"], "ada-auditor");
    assert_eq!(a["person"]["email"], "wendy-5817@corp.example");
    assert_eq!(a["justification"], JUSTIFICATION);
    assert_eq!(a["approved_by_you"], false);
    let z = find(&waiting, &zed_id).expect("zed's request waits");
    assert!(z.get("person").is_none(), "a full list names nobody: {z}");
    assert_eq!(z["requester"]["subject"], "zed-auditor");

    // pat approves ada's: pat sees it marked, quinn does not.
    let approve = app.control(&format!("/break-glass/requests/{ada_id}/approve"));
    assert_eq!(app.post(&approve, &pat, json!({})).await.status, 200);
    let mine_marked = listed(&app, &pat, "waiting").await;
    assert_eq!(
        find(&mine_marked, &ada_id).unwrap()["approved_by_you"],
        true
    );
    assert_eq!(find(&mine_marked, &ada_id).unwrap()["approvals"], 1);
    let theirs = listed(&app, &quinn, "waiting").await;
    assert_eq!(find(&theirs, &ada_id).unwrap()["approved_by_you"], false);

    // quinn declines zed's, with a reason; one no ends it.
    let decline = app.control(&format!("/break-glass/requests/{zed_id}/decline"));
    let long = "x".repeat(501);
    app.post(&decline, &quinn, json!({"reason": long}))
        .await
        .assert_problem(422);
    refused(
        &app.post(&decline, &zed, json!({})).await,
        403,
        "break-glass-wrong-role",
    );
    let reason = "No court order is attached; file again with it";
    let r = app.post(&decline, &quinn, json!({"reason": reason})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["state"], "declined");
    refused(
        &app.post(&decline, &pat, json!({})).await,
        409,
        "break-glass-not-pending",
    );
    refused(
        &app.post(
            &app.control(&format!("/break-glass/requests/{zed_id}/approve")),
            &pat,
            json!({}),
        )
        .await,
        409,
        "break-glass-not-pending",
    );
    refused(
        &app.post(
            &app.control(&format!("/break-glass/requests/{zed_id}/redeem")),
            &zed,
            json!({}),
        )
        .await,
        409,
        "break-glass-declined",
    );
    assert!(find(&listed(&app, &pat, "waiting").await, &zed_id).is_none());

    // Each auditor follows their own requests, and only those.
    let zeds = listed(&app, &zed, "mine").await;
    assert_eq!(zeds.len(), 1, "{zeds:?}");
    assert_eq!(zeds[0]["state"], "declined");
    assert_eq!(zeds[0]["decline_reason"], reason);
    let adas = listed(&app, &ada, "mine").await;
    assert_eq!(adas.len(), 1, "{adas:?}");
    assert_eq!(adas[0]["id"], ada_id.as_str());
    assert_eq!(adas[0]["approvals"], 1);
    assert_eq!(adas[0]["person"]["email"], "wendy-5817@corp.example");
    // Expired requests say so.
    age_request(&app, &ada_id, "expires_ms").await;
    assert_eq!(listed(&app, &ada, "mine").await[0]["state"], "expired");
    assert!(find(&listed(&app, &pat, "waiting").await, &ada_id).is_none());

    // The decline is in the chain, naming no one in clear (INV-6).
    let db = Db::open(&app.stack.databases().tenant).await.unwrap();
    let events = db.events_after(0, 100_000).await.unwrap();
    assert!(events.iter().any(|e| e.action == "break-glass.declined"));
    for e in &events {
        let text = format!("{e:?}").to_lowercase();
        for clear in [
            "wendy",
            "zed-auditor",
            "quinn",
            "corp.example",
            "court order",
        ] {
            assert!(!text.contains(clear), "event {} holds {clear}", e.seq);
        }
    }
    drop(db);
    app.stop().await;
}

service_kit::backend_tests!(
    break_glass_needs_two_officers_answers_once_and_leaves_a_verifiable_trail,
    officers_see_what_waits_and_one_declines_while_auditors_follow_only_their_own,
);
