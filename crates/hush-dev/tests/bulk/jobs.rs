//! A 20,000-line job with good and bad lines; refusal whole or good lines only; idempotent
//! resubmit; counts by reason (INV-3); input purged when the job ends (INV-5); pause, resume,
//! cancel; the throttle.

use crate::harness::*;
use domain::{GroupId, IdentityKind};
use hush::bulk::{BulkClient, Submit};
use reqwest::StatusCode;
use serde_json::json;
use std::time::{Duration, Instant};

async fn a_20000_line_job_runs_its_good_lines_reports_the_rest_by_reason_and_purges_its_input(
    kind: Backend,
) {
    let f = Fixture::start_on(kind, 1, &[("HUSH_BULK_OPS_PER_SEC", "0")]).await;
    let g1 = f.group("alice", "Bulk One", "General").await;
    let g2 = f.group("alice", "Bulk Two", "General").await;
    let conf = f.group("alice", "Bulk Confidential", "Confidential").await;
    let nowhere = GroupId::new();

    let mut lines = Vec::new();
    lines.extend(adds(g1, "u", 0..6000));
    lines.extend(adds(g2, "u", 0..6000));
    lines.extend(adds(conf, "u", 0..3000));
    // Guests (outside the corporate domain) into a label that bars them.
    lines
        .extend((0..1000).map(|i| line("add", conf, None, Some(&format!("g{i}@partner.example")))));
    lines.extend(adds(nowhere, "w", 0..1000));
    // People the tenant never saw: removed all the same (INV-3).
    lines.extend(removes(g1, "stranger", 0..2000));
    // 1,000 malformed lines, spread through the file.
    let bad = [
        "not json".to_string(),
        json!({"op": "join", "group_id": g1, "subject": "x"}).to_string(),
        json!({"op": "add", "group_id": "nope", "subject": "x"}).to_string(),
        json!({"op": "add", "group_id": g1}).to_string(),
        json!({"op": "add", "group_id": g1, "email": "no-at-sign"}).to_string(),
    ];
    for i in 0..1000 {
        lines.insert(i * 20 + 7, bad[i % bad.len()].clone());
    }
    assert_eq!(lines.len(), 20_000);

    // Rejected whole by default: 422, each bad line by number, nothing queued.
    let (status, problem) = f.submit(&lines, &Submit::default()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["type"], "urn:hush:problem:invalid-lines");
    assert_eq!(problem["invalid_lines"], 1000);
    assert_eq!(problem["errors"][0]["line"], 8);
    assert_eq!(
        problem["errors"][0]["reason"],
        "not a JSON object with op, group_id and subject or email"
    );
    assert_eq!(problem["errors"][1]["line"], 28);
    assert!(
        !problem.to_string().contains("no-at-sign"),
        "reasons never repeat the line"
    );
    let (_, jobs) = f.op.job("").await.unwrap();
    assert!(jobs.get("jobs").is_none() || jobs["jobs"].as_array().unwrap().is_empty());

    // The good lines run when asked; a resubmit with the same key is the same job.
    let how = Submit {
        on_bad_lines: Some("skip".into()),
        idempotency_key: Some("migration-7".into()),
        csv: false,
        name: None,
    };
    let (status, job) = f.submit(&lines, &how).await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(job["total"], 19_000);
    let (status, again) = f.submit(&lines, &how).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["id"], job["id"]);

    let done = f.op.wait(&id, Duration::from_secs(150)).await.unwrap();
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["applied"], 17_000, "{done}");
    assert_eq!(done["rejected"], 2_000);
    assert_eq!(
        done["rejected_by_reason"],
        json!({"unknown_identity": 0, "label_refused": 1000, "unknown_group": 1000})
    );
    assert_eq!(done["invalid_lines"], 1000);
    assert_eq!(done["line_errors"].as_array().unwrap().len(), 100);
    // INV-3: the report has counts, no person.
    assert!(!done.to_string().contains("u17"));
    // INV-5: the job's input is gone.
    assert_eq!(f.chunk_rows().await, (0, 0), "{}", f.backend());

    // The membership is what was asked (every 7th person checked).
    let sample: Vec<String> = (0..6000).step_by(7).map(|i| format!("u{i}")).collect();
    for (s, groups) in sample.iter().zip(f.groups_of(&sample).await) {
        let i: usize = s[1..].parse().unwrap();
        let mut want = vec![g1, g2];
        if i < 3000 {
            want.push(conf);
        }
        want.sort();
        assert_eq!(groups.into_iter().collect::<Vec<_>>(), want, "{s}");
    }
    f.finish().await;
}

async fn owners_submit_for_their_own_groups_only(kind: Backend) {
    let f = Fixture::start_on(kind, 1, &[]).await;
    let mine = f.group("olive", "Olive's", "General").await;
    let theirs = f.group("alice", "Alice's", "General").await;
    let olive = BulkClient::new(
        &f.cluster.url("bulk-api"),
        &f.cluster.token("olive", IdentityKind::Member, &[]),
    )
    .unwrap();
    let (status, job) = f
        .submit_as(&olive, &adds(mine, "o", 0..10), &Submit::default())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    let done = olive
        .wait(job["id"].as_str().unwrap(), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(done["applied"], 10);
    let mut mixed = adds(mine, "p", 0..5);
    mixed.extend(adds(theirs, "p", 0..5));
    let (status, problem) = f.submit_as(&olive, &mixed, &Submit::default()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    assert_eq!(f.chunk_rows().await, (0, 0), "a refused job leaves nothing");
    f.finish().await;
}

async fn pause_resume_cancel_and_the_throttle(kind: Backend) {
    let f = Fixture::start_on(
        kind,
        1,
        &[
            ("HUSH_BULK_OPS_PER_SEC", "1000"),
            ("HUSH_BULK_CHUNK_SIZE", "100"),
            ("HUSH_BULK_WORKERS", "3"),
        ],
    )
    .await;
    let g = f.group("alice", "Steered", "General").await;

    // The throttle: 3,000 operations at 1,000/s after a one-second burst. The bucket is paid
    // in arrears (a worker applies its chunk, then sleeps off the debt, so it never sleeps
    // holding a lease): each of the 3 workers may be one chunk ahead of it, so the job takes
    // at least (3,000 − 1,000 − 3 × 100) / 1,000/s = 1.7 s, a rate of at most 1,765/s.
    // Unthrottled, it takes a fraction of a second.
    let started = Instant::now();
    let done = f.run(&adds(g, "t", 0..3000), Duration::from_secs(60)).await;
    let took = started.elapsed();
    assert_eq!(done["applied"], 3000);
    assert!(
        took >= Duration::from_millis(1700),
        "throttle not honoured: {took:?}"
    );
    assert!(
        done["rate_per_sec"].as_f64().unwrap() <= 3000.0 / 1.7,
        "{done}"
    );

    // Pause: progress stops (a chunk in flight may finish); resume: it ends.
    let (_, job) = f.submit(&adds(g, "p", 0..3000), &Submit::default()).await;
    let id = job["id"].as_str().unwrap().to_string();
    until(&f.op, &id, Duration::from_secs(20), |j| {
        j["applied"].as_u64() > Some(0)
    })
    .await;
    let (status, paused) = f.op.steer(&id, "pause").await.unwrap();
    assert_eq!(status, StatusCode::OK, "{paused}");
    assert_eq!(paused["state"], "paused");
    f.settled().await;
    let (_, a) = f.op.job(&id).await.unwrap();
    f.drain(g, "pause-probe").await;
    let (_, b) = f.op.job(&id).await.unwrap();
    assert_eq!(a["applied"], b["applied"], "no progress while paused");
    assert!(b["applied"].as_u64().unwrap() < 3000);
    let (status, _) = f.op.steer(&id, "pause").await.unwrap();
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, resumed) = f.op.steer(&id, "resume").await.unwrap();
    assert_eq!(status, StatusCode::OK, "{resumed}");
    assert_eq!(resumed["state"], "running");
    let done = f.op.wait(&id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(
        (done["state"].as_str(), done["applied"].as_u64()),
        (Some("succeeded"), Some(3000))
    );

    // Cancel: for good, and its input goes at once.
    let (_, job) = f.submit(&adds(g, "c", 0..5000), &Submit::default()).await;
    let id = job["id"].as_str().unwrap().to_string();
    until(&f.op, &id, Duration::from_secs(20), |j| {
        j["applied"].as_u64() > Some(0)
    })
    .await;
    let (status, cancelled) = f.op.steer(&id, "cancel").await.unwrap();
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["state"], "cancelled");
    assert_eq!(f.chunk_rows().await, (0, 0));
    f.drain(g, "cancel-probe").await;
    let (_, later) = f.op.job(&id).await.unwrap();
    assert_eq!(later["state"], "cancelled");
    assert!(later["applied"].as_u64().unwrap() < 5000);
    let (status, _) = f.op.steer(&id, "resume").await.unwrap();
    assert_eq!(status, StatusCode::CONFLICT);
    f.finish().await;
}

service_kit::backend_tests!(
    a_20000_line_job_runs_its_good_lines_reports_the_rest_by_reason_and_purges_its_input,
    owners_submit_for_their_own_groups_only,
    pause_resume_cancel_and_the_throttle,
);
