//! control-api's catalog audit through the real stack: every catalog change is recorded with
//! who made it, label-admins read it page by page, nobody else can, membership never appears,
//! and the table refuses edits.

use crate::helpers::{App, Backend, IdentityKind};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn label_admins_read_every_catalog_change_and_no_membership(kind: Backend) {
    let app = App::spawn_on(kind).await;
    let admin = app.token("lena-audit", IdentityKind::Member, &["label-admin"]);
    let owner = app.member("omar-audit");
    let r = app
        .post(
            &app.control("/labels"),
            &admin,
            json!({"name": "Audited", "description": "For the audit test", "policy": {"guests_allowed": false, "agents_allowed": false, "join_policies": ["open"], "sender_policy": "anyone"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let g = app
        .active_group(&owner, "Audit Circle", "Audited", "open")
        .await;
    // A member joins: membership, which the catalog audit must never show.
    let joiner = app.member("jules-audit-9931");
    let r = app
        .post(
            &app.membership(&format!("/groups/{g}/join")),
            &joiner,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = app
        .call(
            Method::PATCH,
            &app.control(&format!("/groups/{g}")),
            Some(&owner),
            Some(json!({"description": "new words", "owners": ["omar-audit", "nina-audit"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = app
        .post(
            &app.control(&format!("/groups/{g}/archive")),
            &owner,
            json!({}),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.text);

    // Others may not read it.
    app.get(&app.control("/audit"), &owner)
        .await
        .assert_problem(403);
    app.get(&app.control("/audit?limit=0"), &admin)
        .await
        .assert_problem(422);

    // Page through it two at a time.
    let mut entries: Vec<Value> = Vec::new();
    let mut url = app.control("/audit?limit=2");
    loop {
        let r = app.get(&url, &admin).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let page = r.body["entries"].as_array().unwrap().clone();
        assert!(page.len() <= 2);
        entries.extend(page);
        match r.body["next_after"].as_i64() {
            Some(after) => url = app.control(&format!("/audit?limit=2&after={after}")),
            None => break,
        }
    }
    let got: Vec<(String, String)> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["actor"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("label.created", "lena-audit"),
        ("group.created", "omar-audit"),
        ("group.edited", "omar-audit"),
        ("group.owner-invited", "omar-audit"),
        ("group.archived", "omar-audit"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(got, want);
    assert_eq!(entries[3]["detail"]["subject"], "nina-audit");
    assert_eq!(entries[1]["group_id"], json!(g));
    let all = serde_json::to_string(&entries).unwrap();
    assert!(
        !all.contains("jules"),
        "membership leaked into the catalog audit: {all}"
    );

    // The table refuses edits, whoever asks.
    let url = &app.stack.databases().control;
    let refused = match service_kit::db::Backend::from_url(url).unwrap() {
        service_kit::db::Backend::Postgres => {
            let p = service_kit::db::connect_postgres(url, 1).await.unwrap();
            let e = sqlx::query("DELETE FROM catalog_audit")
                .execute(&p)
                .await
                .err();
            p.close().await;
            e
        }
        service_kit::db::Backend::Sqlite => {
            let p = service_kit::db::connect_sqlite(url, 1).await.unwrap();
            let e = sqlx::query("UPDATE catalog_audit SET actor = 'x'")
                .execute(&p)
                .await
                .err();
            p.close().await;
            e
        }
    };
    assert!(refused
        .expect("refused")
        .to_string()
        .contains("append-only"));
    app.stop().await;
}

service_kit::backend_tests!(label_admins_read_every_catalog_change_and_no_membership,);
