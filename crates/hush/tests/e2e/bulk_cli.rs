//! `hush bulk` as an operator uses it: the real binary against a real stack. Flags and inputs
//! are checked before any request; a job is named by the short id the web app shows; answers
//! are summaries unless `--json` asks for bulk-api's JSON.

use crate::helpers::*;
use std::process::Output;
use std::time::{Duration, Instant};

/// Runs `hush bulk ARGS` against `bulk_url` with `token`, waiting for it without blocking the
/// stack, which runs on the test's own runtime.
async fn hush_bulk(bulk_url: &str, token: &str, args: &[&str]) -> Output {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_hush"))
        .arg("bulk")
        .args(args)
        .args(["--bulk-url", bulk_url, "--token", token])
        .env_remove("HUSH_BULK_URL")
        .env_remove("HUSH_TOKEN")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("hush bulk ends within a minute")
        .expect("hush runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A loopback URL nothing listens on: a command that sent a request there would say it could
/// not reach bulk-api.
fn nowhere() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

#[tokio::test]
async fn bad_flags_and_empty_inputs_are_refused_before_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let ndjson = dir.path().join("ops.ndjson");
    std::fs::write(&ndjson, "\n  \n").unwrap();
    let csv = dir.path().join("ops.csv");
    std::fs::write(&csv, "op,group_id,subject,email\n").unwrap();
    let url = nowhere();

    for file in [&ndjson, &csv] {
        let out = hush_bulk(&url, "t", &["submit", file.to_str().unwrap()]).await;
        assert!(!out.status.success());
        let err = text(&out.stderr);
        assert!(err.contains("holds no operation"), "{err}");
        assert!(
            !err.contains("reaching bulk-api"),
            "a request was sent: {err}"
        );
    }

    std::fs::write(&ndjson, "{}\n").unwrap();
    let out = hush_bulk(
        &url,
        "t",
        &[
            "submit",
            ndjson.to_str().unwrap(),
            "--on-bad-lines",
            "maybe",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "clap's usage error");
    let err = text(&out.stderr);
    assert!(err.contains("'maybe'") && err.contains("reject"), "{err}");
    assert!(
        !err.contains("reaching bulk-api"),
        "a request was sent: {err}"
    );
}

async fn a_job_is_steered_by_its_short_id_with_summaries_or_json(kind: Backend) {
    let app = App::spawn_on(kind).await;
    let alice = app.member("alice");
    let group = app.active_group(&alice, "Runners", "General", "open").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ops.ndjson");
    let ops: String = ["p1", "p2", "p3"]
        .iter()
        .map(|s| format!("{{\"op\":\"add\",\"group_id\":\"{group}\",\"subject\":\"{s}\"}}\n"))
        .collect();
    std::fs::write(&file, ops).unwrap();
    let (bulk, operator) = (app.urls.bulk.clone(), app.operator());

    let out = hush_bulk(
        &bulk,
        &operator,
        &["submit", file.to_str().unwrap(), "--json"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let job: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json is JSON");
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(job["name"], "ops.ndjson", "the job carries its file's name");

    // The 8 characters the web app shows name the job; the answer is a summary line.
    let short = &id[..8];
    let deadline = Instant::now() + Duration::from_secs(30);
    let summary = loop {
        let out = hush_bulk(&bulk, &operator, &["status", short]).await;
        assert!(out.status.success(), "{}", text(&out.stderr));
        let line = text(&out.stdout);
        if line.starts_with("succeeded") || Instant::now() > deadline {
            break line;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // (Nobody here has signed in, so the tenant knows none of the three: counted, not named.)
    assert!(
        summary.starts_with("succeeded (ops.ndjson): 0/3 applied, 3 rejected (unknown identity 3"),
        "{summary}"
    );

    // With --json, bulk-api's view of the same job.
    let out = hush_bulk(&bulk, &operator, &["status", short, "--json"]).await;
    let view: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(view["id"], id.as_str());

    // A prefix no job has, and a job that has ended, are refused in words.
    let out = hush_bulk(&bulk, &operator, &["status", "ffffffff"]).await;
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("no job among the newest 200"));
    let out = hush_bulk(&bulk, &operator, &["cancel", short]).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).starts_with("refused (409"),
        "{}",
        text(&out.stderr)
    );
    app.stop().await;
}

service_kit::backend_tests!(a_job_is_steered_by_its_short_id_with_summaries_or_json,);
