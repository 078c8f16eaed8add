//! A cluster of real processes for one test, and what the tests ask of it.

use domain::{GroupId, IdentityKind, ServiceName, Subject};
use hush::bulk::{BulkClient, Submit};
use hush::groups::GroupsClient;
use hush::stack::{Databases, PostgresDatabases};
use hush_dev::cluster::{Cluster, ClusterOptions};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::Connection as _;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

pub use service_kit::db::Backend;

/// One test's processes and databases.
pub struct Fixture {
    pub cluster: Cluster,
    pub op: BulkClient,
    pub dbs: Databases,
    pg: Option<PostgresDatabases>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    /// Starts the tenant, control-api and `replicas` bulk-api processes with `bulk_env`, on
    /// `backend`.
    pub async fn start_on(backend: Backend, replicas: usize, bulk_env: &[(&str, &str)]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (dbs, pg) =
            Databases::for_test(dir.path(), backend, service_kit::testing::postgres_url)
                .await
                .expect("fresh test databases");
        let opts = ClusterOptions {
            dir: dir.path().to_path_buf(),
            databases: dbs.clone(),
            bulk_replicas: replicas,
            membership: false,
            bulk_env: bulk_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            tenant_env: Vec::new(),
            membership_env: Vec::new(),
            log: "error".into(),
        };
        let cluster = Cluster::start(std::path::Path::new(env!("CARGO_BIN_EXE_hush-dev")), opts)
            .await
            .expect("the cluster starts");
        let op = BulkClient::new(
            &cluster.url("bulk-api"),
            &cluster.token("op", IdentityKind::Member, &["operator"]),
        )
        .unwrap();
        Fixture {
            cluster,
            op,
            dbs,
            pg,
            _dir: dir,
        }
    }

    pub fn backend(&self) -> &'static str {
        if self.pg.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
    }

    /// Stops the processes and drops the Postgres databases.
    pub async fn finish(self) {
        self.cluster.stop().await;
        if let Some(pg) = self.pg {
            pg.drop_all().await;
        }
    }

    /// A group owned by `owner` under `label`, once it is active.
    pub async fn group(&self, owner: &str, name: &str, label: &str) -> GroupId {
        let token = self.cluster.token(owner, IdentityKind::Member, &[]);
        let join = if label == "General" {
            "open"
        } else {
            "approval"
        };
        let g = GroupsClient::new(&self.cluster.url("control-api"), &token)
            .unwrap()
            .create_active(name, label, join)
            .await
            .unwrap();
        GroupId::parse(g["id"].as_str().unwrap()).unwrap()
    }

    /// Submits NDJSON `lines` as the operator.
    pub async fn submit(&self, lines: &[String], how: &Submit) -> (StatusCode, Value) {
        self.submit_as(&self.op, lines, how).await
    }

    pub async fn submit_as(
        &self,
        client: &BulkClient,
        lines: &[String],
        how: &Submit,
    ) -> (StatusCode, Value) {
        let body = lines.join("\n");
        client.submit(body.into(), how).await.unwrap()
    }

    /// Submits and waits for the job to end; answers its final view.
    pub async fn run(&self, lines: &[String], limit: Duration) -> Value {
        let (status, job) = self.submit(lines, &Submit::default()).await;
        assert_eq!(status, StatusCode::CREATED, "{job}");
        self.op
            .wait(job["id"].as_str().unwrap(), limit)
            .await
            .unwrap()
    }

    /// The groups each of `subjects` is in, asked of the tenant one person at a time (as
    /// membership-api asks it about its own caller).
    pub async fn groups_of(&self, subjects: &[String]) -> Vec<BTreeSet<GroupId>> {
        let tenant = self.cluster.tenant_as(ServiceName::MembershipApi).unwrap();
        let mut out = vec![BTreeSet::new(); subjects.len()];
        let mut set = JoinSet::new();
        let mut next = 0;
        let mut running = 0;
        loop {
            while running < 32 && next < subjects.len() {
                let (t, s, i) = (
                    tenant.clone(),
                    Subject::parse(&subjects[next]).unwrap(),
                    next,
                );
                set.spawn(async move { (i, t.groups_of(&s, None, None).await) });
                next += 1;
                running += 1;
            }
            let Some(done) = set.join_next().await else {
                break;
            };
            running -= 1;
            let (i, groups) = done.unwrap();
            out[i] = groups.expect("the tenant answers").into_iter().collect();
        }
        out
    }

    /// Chunk rows left in bulk-api's database, and how many still hold sealed input.
    pub async fn chunk_rows(&self) -> (i64, i64) {
        let q = "SELECT COUNT(*), COUNT(sealed) FROM job_chunks";
        if self.pg.is_some() {
            let mut c = sqlx::PgConnection::connect(&self.dbs.bulk).await.unwrap();
            sqlx::query_as(q).fetch_one(&mut c).await.unwrap()
        } else {
            let mut c = sqlx::SqliteConnection::connect(&self.dbs.bulk)
                .await
                .unwrap();
            sqlx::query_as(q).fetch_one(&mut c).await.unwrap()
        }
    }

    /// Chunks a worker holds right now (leased and not yet done), on either backend.
    pub async fn leased_chunks(&self) -> i64 {
        let q =
            "SELECT COUNT(*) FROM job_chunks WHERE state = 'pending' AND lease_owner IS NOT NULL";
        if self.pg.is_some() {
            let mut c = sqlx::PgConnection::connect(&self.dbs.bulk).await.unwrap();
            sqlx::query_scalar(q).fetch_one(&mut c).await.unwrap()
        } else {
            let mut c = sqlx::SqliteConnection::connect(&self.dbs.bulk)
                .await
                .unwrap();
            sqlx::query_scalar(q).fetch_one(&mut c).await.unwrap()
        }
    }

    /// Waits until no worker holds a chunk: what was in flight has landed.
    pub async fn settled(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.leased_chunks().await > 0 {
            assert!(Instant::now() < deadline, "chunks stay leased");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Drains the workers instead of sleeping: waits until what was in flight has landed, runs
    /// a fresh job of 100 adds to `group` (people `{prefix}0..`) to its end, and waits again.
    /// Workers take chunks oldest job first, so once the fresh job is done they have been back
    /// to the queue and passed over every older job they may not touch (paused, cancelled).
    pub async fn drain(&self, group: GroupId, prefix: &str) {
        self.settled().await;
        let probe = self
            .run(&adds(group, prefix, 0..100), Duration::from_secs(60))
            .await;
        assert_eq!(probe["state"], "succeeded", "{probe}");
        self.settled().await;
    }

    /// Lease owners of chunks leased right now (Postgres).
    pub async fn lease_owners(&self) -> Vec<uuid::Uuid> {
        let mut c = sqlx::PgConnection::connect(&self.dbs.bulk).await.unwrap();
        sqlx::query_scalar(
            "SELECT DISTINCT lease_owner FROM job_chunks WHERE lease_owner IS NOT NULL AND state = 'pending'",
        )
        .fetch_all(&mut c)
        .await
        .unwrap()
    }
}

/// An NDJSON line.
pub fn line(op: &str, group: GroupId, subject: Option<&str>, email: Option<&str>) -> String {
    let mut v = json!({"op": op, "group_id": group});
    if let Some(s) = subject {
        v["subject"] = json!(s);
    }
    if let Some(e) = email {
        v["email"] = json!(e);
    }
    v.to_string()
}

/// Adds of `prefix{i}` (with a corporate address) to `group`, for i in `range`.
pub fn adds(group: GroupId, prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range
        .map(|i| {
            let s = format!("{prefix}{i}");
            line("add", group, Some(&s), Some(&format!("{s}@corp.example")))
        })
        .collect()
}

/// Removes of `prefix{i}` from `group`.
pub fn removes(group: GroupId, prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range
        .map(|i| line("remove", group, Some(&format!("{prefix}{i}")), None))
        .collect()
}

pub fn names(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

/// Waits until `cond` holds of the job, polling.
pub async fn until(
    op: &BulkClient,
    id: &str,
    limit: Duration,
    cond: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok((StatusCode::OK, job)) = op.job(id).await {
            if cond(&job) {
                return job;
            }
            assert!(Instant::now() < deadline, "condition never held: {job}");
        } else {
            assert!(Instant::now() < deadline, "bulk-api never answered");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
