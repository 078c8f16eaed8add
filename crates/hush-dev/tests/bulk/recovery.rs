//! Crash safety: kill -9 of bulk-api and of the tenant mid-job, then restart: the job resumes
//! from its checkpoint and the final membership is exactly what was asked. Two bulk-api
//! replicas on Postgres share one job's chunks, and one replica's death leaves the job to the
//! other.

use crate::harness::*;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

async fn kill_9_of_bulk_api_and_of_the_tenant_mid_job_loses_no_operation(kind: Backend) {
    let mut f = Fixture::start_on(
        kind,
        1,
        &[
            ("HUSH_BULK_OPS_PER_SEC", "2500"),
            ("HUSH_BULK_CHUNK_SIZE", "250"),
            ("HUSH_BULK_LEASE_SECS", "3"),
        ],
    )
    .await;
    let g1 = f.group("alice", "Crash One", "General").await;
    let g2 = f.group("alice", "Crash Two", "General").await;
    // Before: p0..p1999 are in g2.
    let before = f
        .run(&adds(g2, "p", 0..2000), Duration::from_secs(60))
        .await;
    assert_eq!(before["applied"], 2000);

    // The job: q0..q5999 into g1, p0..p1999 out of g2.
    let mut lines = adds(g1, "q", 0..6000);
    lines.extend(removes(g2, "p", 0..2000));
    let (_, job) = f.submit(&lines, &Default::default()).await;
    let id = job["id"].as_str().unwrap().to_string();

    until(&f.op, &id, Duration::from_secs(30), |j| {
        j["applied"].as_u64() >= Some(1500)
    })
    .await;
    f.cluster.kill("bulk-api").await.unwrap();
    f.cluster.restart("bulk-api").await.unwrap();
    until(&f.op, &id, Duration::from_secs(30), |j| {
        j["applied"].as_u64() >= Some(4000)
    })
    .await;
    f.cluster.kill("isolated-tenant").await.unwrap();
    // Looked at once a chunk has failed against the dead tenant (or the job has ended).
    let meanwhile = until(&f.op, &id, Duration::from_secs(30), |j| {
        j["retrying"].as_u64() > Some(0) || j["state"] != "running"
    })
    .await;
    assert_ne!(meanwhile["state"], "failed", "{meanwhile}");
    f.cluster.restart("isolated-tenant").await.unwrap();

    let done = f.op.wait(&id, Duration::from_secs(120)).await.unwrap();
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(
        (done["applied"].as_u64(), done["rejected"].as_u64()),
        (Some(8000), Some(0)),
        "{done}"
    );
    assert_eq!(f.chunk_rows().await, (0, 0));

    let qs = names("q", 0..6000);
    for (s, groups) in qs.iter().zip(f.groups_of(&qs).await) {
        assert_eq!(groups, BTreeSet::from([g1]), "{s} ({})", f.backend());
    }
    let ps = names("p", 0..2000);
    for (s, groups) in ps.iter().zip(f.groups_of(&ps).await) {
        assert!(
            groups.is_empty(),
            "{s} still in {groups:?} ({})",
            f.backend()
        );
    }
    f.finish().await;
}

/// Replicas share a job through Postgres (`FOR UPDATE SKIP LOCKED`): there is no SQLite run.
#[tokio::test]
#[ignore = "needs HUSH_TEST_POSTGRES_URL"]
async fn two_replicas_on_postgres_share_a_job_and_one_survives_the_other() {
    let mut f = Fixture::start_on(
        Backend::Postgres,
        2,
        &[
            ("HUSH_BULK_WORKERS", "1"),
            ("HUSH_BULK_OPS_PER_SEC", "1000"),
            ("HUSH_BULK_CHUNK_SIZE", "100"),
            ("HUSH_BULK_LEASE_SECS", "2"),
        ],
    )
    .await;
    let g = f.group("alice", "Shared", "General").await;
    let (_, job) = f.submit(&adds(g, "r", 0..5000), &Default::default()).await;
    let id = job["id"].as_str().unwrap().to_string();

    // Each replica runs one worker: two lease owners at once means both replicas work.
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.len() < 2 {
        seen.extend(f.lease_owners().await);
        assert!(
            Instant::now() < deadline,
            "only {} lease owner(s) seen",
            seen.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // One replica dies; its lease expires and the other finishes the job.
    f.cluster.kill("bulk-api-2").await.unwrap();
    let done = f.op.wait(&id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["applied"], 5000, "{done}");
    let rs = names("r", 0..5000);
    for (s, groups) in rs.iter().zip(f.groups_of(&rs).await) {
        assert_eq!(groups, BTreeSet::from([g]), "{s}");
    }
    f.finish().await;
}

service_kit::backend_tests!(kill_9_of_bulk_api_and_of_the_tenant_mid_job_loses_no_operation,);
