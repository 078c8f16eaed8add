//! Observability that keeps INV-1 and INV-6 (issue 20, item 5): after a flow through every
//! service (a group created, joined and left, an invite made and redeemed, an owner's add, a
//! bulk job, a message posted through the tenant's SMTP listener and delivered), every
//! service's `/metrics` has its families with non-zero counts, and holds no group id, no
//! person, no address, no invite code and no label that names anything per group. The same
//! flow shows the `x-request-id` a caller sent reaching the tenant's audit chain, a hostile one
//! replaced.

use crate::helpers::*;
use isolated_tenant::audit::db::Db;
use reqwest::StatusCode;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The label names any family may carry: none of them can hold a group, a person or a path.
/// (`le` is a histogram bucket's upper bound).
const ALLOWED_LABELS: [&str; 8] = [
    "method", "route", "status", "state", "outcome", "cause", "work", "le",
];

/// Posts one message over SMTP, as the corporate mail system would, and checks each answer.
async fn post_mail(addr: &str, from: &str, to: &str) {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("SMTP listener");
    let mut conn = BufReader::new(stream);
    async fn answer(conn: &mut BufReader<tokio::net::TcpStream>, code: &str) {
        loop {
            let mut line = String::new();
            conn.read_line(&mut line).await.unwrap();
            assert!(line.starts_with(code), "wanted {code}, got {line:?}");
            if line.as_bytes().get(3) != Some(&b'-') {
                return;
            }
        }
    }
    answer(&mut conn, "220").await;
    for (command, code) in [
        ("EHLO mta.corp.example".to_string(), "250"),
        (format!("MAIL FROM:<{from}>"), "250"),
        (format!("RCPT TO:<{to}>"), "250"),
        ("DATA".to_string(), "354"),
    ] {
        conn.get_mut()
            .write_all(format!("{command}\r\n").as_bytes())
            .await
            .unwrap();
        answer(&mut conn, code).await;
    }
    let message = format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: metrics flow\r\nMessage-ID: <m1@corp.example>\r\n\
         Date: Sun, 6 Dec 2026 10:00:00 +0000\r\n\r\nHello group.\r\n.\r\n"
    );
    conn.get_mut().write_all(message.as_bytes()).await.unwrap();
    answer(&mut conn, "250").await;
    conn.get_mut().write_all(b"QUIT\r\n").await.unwrap();
}

/// `/metrics` of the service at `base`, with the scrape token.
async fn scrape(app: &App, base: &str, token: &str) -> String {
    let res = app
        .http
        .get(format!("{base}/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{base}/metrics");
    let ctype = res.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    res.text().await.unwrap()
}

/// The value of the sample `name{labels…}` whose labels contain every one of `with`.
fn sample(text: &str, name: &str, with: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| with.iter().all(|w| l.contains(w)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .reduce(|a, b| a + b)
}

/// Every label name used in `text`.
fn label_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((_, rest)) = line.split_once('{') else {
            continue;
        };
        let Some((labels, _)) = rest.rsplit_once('}') else {
            continue;
        };
        for pair in labels.split("\",") {
            if let Some((name, _)) = pair.split_once("=\"") {
                names.insert(name.trim_start_matches(',').to_string());
            }
        }
    }
    names
}

/// Whether `text` holds anything shaped like a UUID (every group id, job id and directory id is
/// one; a route template never is).
fn holds_a_uuid(text: &str) -> Option<String> {
    let b = text.as_bytes();
    (0..b.len().saturating_sub(35)).find_map(|i| {
        let s = &text[i..i + 36];
        uuid::Uuid::parse_str(s).ok().map(|_| s.to_string())
    })
}

async fn every_metrics_endpoint_counts_the_flow_and_names_no_group_or_person(kind: Backend) {
    let smtp = service_kit::testing::free_port();
    let scrape_token = format!("scrape-{}", uuid::Uuid::new_v4().simple());
    let token = scrape_token.clone();
    let app = App::spawn_with(kind, move |dir, cfg| {
        let file = dir.join("metrics.token");
        std::fs::write(&file, &token).unwrap();
        cfg.http.metrics.token_file = Some(file);
        cfg.mail.listen = Some(format!("127.0.0.1:{smtp}").parse().unwrap());
        cfg.mail.relay = Some(isolated_tenant::mail::Relay::Maildir(dir.join("mail")));
        cfg.mail.trusted_relays = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let bases = [
        ("control-api", app.urls.control.clone()),
        ("membership-api", app.urls.membership.clone()),
        ("bulk-api", app.urls.bulk.clone()),
        ("isolated-tenant", app.urls.tenant.clone()),
    ];

    // Readiness covers the mail listener, which is up.
    let ready = app
        .http
        .get(format!("{}/readyz", app.urls.tenant))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);

    // The flow.
    let olga = app.member("olga-obs-7731");
    let ben = app.member("ben-obs-7732");
    let cara = app.member("cara-obs-7733");
    let group = app
        .active_group(&olga, "Quiet Readers", "General", "open")
        .await;
    let contact = app
        .get(&app.control(&format!("/groups/{group}")), &olga)
        .await
        .body["contact_address"]
        .as_str()
        .unwrap()
        .to_string();
    let join_id = format!("obs-join-{}", uuid::Uuid::new_v4().simple());
    let joined = app
        .http
        .post(app.membership(&format!("/groups/{group}/join")))
        .bearer_auth(&ben)
        .header("x-request-id", &join_id)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(joined.status(), StatusCode::OK);
    assert_eq!(joined.headers()["x-request-id"], join_id.as_str());
    // A hostile request id is replaced before anything logs or forwards it.
    let hostile = "evil\"}, \"admin\": true";
    let refused = app
        .http
        .post(app.membership(&format!("/groups/{group}/join")))
        .bearer_auth(&cara)
        .header("x-request-id", hostile)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::OK);
    let replaced = refused.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(uuid::Uuid::parse_str(&replaced).is_ok(), "{replaced}");
    let left = app.membership(&format!("/groups/{group}/leave"));
    assert_eq!(
        app.post(&left, &cara, json!({})).await.status,
        StatusCode::OK
    );
    let invited = app
        .active_group(&olga, "Night Shift", "Highly Confidential", "invite")
        .await;
    let invite = app
        .post(
            &app.membership(&format!("/groups/{invited}/invites")),
            &olga,
            json!({"max_uses": 1, "expires_in_hours": 1}),
        )
        .await;
    assert_eq!(invite.status, StatusCode::CREATED, "{}", invite.text);
    let code = invite.body["code"].as_str().unwrap().to_string();
    let redeemed = app
        .post(
            &app.membership("/invites/redeem"),
            &app.member("dora-obs-7734"),
            json!({"code": code}),
        )
        .await;
    assert!(redeemed.status.is_success(), "{}", redeemed.text);
    let job = app
        .http
        .post(format!("{}/bulk/v1/jobs?name=obs.ndjson", app.urls.bulk))
        .bearer_auth(app.operator())
        .header("content-type", "application/x-ndjson")
        .body(format!(
            "{{\"op\":\"add\",\"group_id\":\"{group}\",\"email\":\"eve-obs-7735@corp.example\"}}\n"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(job.status(), StatusCode::CREATED);
    let job: serde_json::Value = job.json().await.unwrap();
    let job_id = job["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let j = app
            .get(
                &format!("{}/bulk/v1/jobs/{job_id}", app.urls.bulk),
                &app.operator(),
            )
            .await;
        if j.body["state"] == "succeeded" {
            break;
        }
        assert!(Instant::now() < deadline, "the job never ended: {}", j.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    post_mail(
        &format!("127.0.0.1:{smtp}"),
        "ben-obs-7732@corp.example",
        &contact,
    )
    .await;
    // Delivered to the Maildir relay: the tenant counts the message, once.
    let deadline = Instant::now() + Duration::from_secs(30);
    let tenant_text = loop {
        let text = scrape(&app, &app.urls.tenant, &scrape_token).await;
        if sample(&text, "hush_mail_queue_messages", &["state=\"delivered\""])
            .is_some_and(|n| n >= 1.0)
        {
            break text;
        }
        assert!(Instant::now() < deadline, "mail never delivered:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        sample(&tenant_text, "hush_mail_relay_up", &[]),
        Some(1.0),
        "{tenant_text}"
    );
    assert!(sample(&tenant_text, "hush_mail_queue_oldest_age_seconds", &[]).is_some());
    // Nothing that moves by recipients or relay transactions (INV-4): a post to a group
    // makes one per batch of its members.
    for volume in [
        "recipients",
        "deliveries",
        "hush_mail_relay_attempts",
        "hush_mail_relay_outcomes",
        "hush_mail_relay_failures",
    ] {
        assert!(
            !tenant_text.contains(volume),
            "{volume} exported:\n{tenant_text}"
        );
    }

    // The join's request id reached the tenant's audit chain, on the event it caused.
    let events = Db::open(&app.stack.databases().tenant)
        .await
        .unwrap()
        .events_after(0, 100_000)
        .await
        .unwrap();
    let tagged: Vec<&str> = events
        .iter()
        .filter(|e| e.request_id.as_deref() == Some(join_id.as_str()))
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(tagged, ["membership.added"], "{events:#?}");
    assert!(
        events
            .iter()
            .all(|e| e.request_id.as_deref().is_none_or(|r| !r.contains("evil"))),
        "a hostile request id reached the audit chain"
    );

    // Every service's /metrics: the scrape token is required, the families are there.
    let mut texts = Vec::new();
    for (name, base) in &bases {
        let open = app
            .http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(open.status(), StatusCode::UNAUTHORIZED, "{name}");
        let text = scrape(&app, base, &scrape_token).await;
        assert!(
            sample(&text, "hush_http_requests_total", &[]).is_some_and(|n| n > 0.0),
            "{name}: {text}"
        );
        assert!(
            text.contains("hush_http_request_duration_seconds_bucket"),
            "{name}"
        );
        texts.push((*name, text));
    }
    let text_of = |n: &str| &texts.iter().find(|(name, _)| *name == n).unwrap().1;
    for (service, route) in [
        (
            "membership-api",
            "route=\"/membership/v1/groups/{id}/join\"",
        ),
        ("control-api", "route=\"/control/v1/groups\""),
        ("bulk-api", "route=\"/bulk/v1/jobs\""),
        (
            "isolated-tenant",
            "route=\"/tenant/v1/groups/{group_id}/members\"",
        ),
    ] {
        assert!(
            sample(text_of(service), "hush_http_requests_total", &[route]).is_some_and(|n| n > 0.0),
            "{service} counts {route}: {}",
            text_of(service)
        );
    }
    assert!(
        sample(
            text_of("control-api"),
            "hush_saga_steps_total",
            &["work=\"provision\"", "outcome=\"confirmed\""]
        )
        .is_some_and(|n| n >= 1.0),
        "{}",
        text_of("control-api")
    );
    assert!(
        text_of("bulk-api").contains("hush_bulk_jobs{state=\"queued\"}"),
        "{}",
        text_of("bulk-api")
    );

    // Nothing in any of them names a group, a person, an address or a code.
    let mut needles = vec![
        group.clone(),
        invited.clone(),
        "Night Shift".to_string(),
        contact.clone(),
        contact.split('@').next().unwrap().to_string(),
        code.clone(),
        job_id.clone(),
        join_id.clone(),
        "Quiet Readers".to_string(),
        "corp.example".to_string(),
    ];
    for person in ["olga-obs", "ben-obs", "cara-obs", "dora-obs", "eve-obs"] {
        needles.push(person.to_string());
    }
    for (name, text) in &texts {
        for needle in &needles {
            assert!(
                !text.contains(needle.as_str()),
                "{name}'s /metrics holds {needle:?}:\n{text}"
            );
        }
        assert_eq!(holds_a_uuid(text), None, "{name}'s /metrics holds an id");
        let labels = label_names(text);
        assert!(!labels.is_empty(), "{name}");
        for label in &labels {
            assert!(
                ALLOWED_LABELS.contains(&label.as_str()),
                "{name}'s /metrics has the label {label:?}"
            );
        }
    }

    // The edge proxies the APIs only: /metrics is not one of them.
    let edge = app
        .http
        .get(format!("{}/metrics", app.urls.edge))
        .bearer_auth(&scrape_token)
        .send()
        .await
        .unwrap();
    let edge_text = edge.text().await.unwrap();
    assert!(
        !edge_text.contains("hush_http_requests_total"),
        "{edge_text}"
    );

    app.stop().await;
}

service_kit::backend_tests!(every_metrics_endpoint_counts_the_flow_and_names_no_group_or_person);
