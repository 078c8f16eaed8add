//! Limits that hold across replicas (issue 20, item 7): two `hush serve` processes of each
//! public service on one database (one SQLite file both open, or one Postgres database),
//! requests alternating between them. A caller's join budget, the failed-invite budget, the SCIM
//! rate and the bulk rate each allow what one replica is documented to allow, in total, not
//! twice it.

use crate::compose::{deploy_init, wait_ready, Grounds, Launcher, Proc};
use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The settings under test, small so the limits are reached in a second.
const JOINS_PER_MINUTE: usize = 4;
const REDEEM_FAILURES_PER_HOUR: usize = 3;
const SCIM_PER_SECOND: usize = 5;
const BULK_OPS_PER_SEC: usize = 100;
const BULK_CHUNK: usize = 25;
const BULK_WORKERS: usize = 2;

/// Two replicas' base URLs.
struct Pair([String; 2]);

impl Pair {
    /// The replica the `i`th request goes to: they alternate.
    fn at(&self, i: usize) -> &str {
        &self.0[i % 2]
    }
}

async fn limits_hold_across_two_replicas_of_each_public_service(kind: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let secrets = deploy_init(&tmp.path().join("deploy")).await;
    let Grounds {
        dbs,
        roles: pg,
        issuer,
        jwks,
        stop_issuer,
    } = Grounds::lay(tmp.path(), kind, &secrets).await;
    let scim_token = format!("scim-replicas-{}", uuid::Uuid::new_v4().simple());
    let scim_file = tmp.path().join("scim.token");
    std::fs::write(&scim_file, &scim_token).unwrap();

    let launcher = Launcher::new(&secrets, jwks);
    let free = service_kit::testing::free_port;
    let tenant = free();
    let ports: BTreeMap<&str, [u16; 2]> = ["control-api", "membership-api", "bulk-api"]
        .into_iter()
        .map(|s| (s, [free(), free()]))
        .collect();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut procs: Vec<(String, Proc)> = Vec::new();
    let env = launcher.env(
        "isolated-tenant",
        tenant,
        tenant,
        ports["control-api"][0],
        dbs.tenant.clone(),
    );
    procs.push((
        "isolated-tenant".into(),
        launcher.spawn("isolated-tenant", &env),
    ));
    wait_ready(&http, "isolated-tenant", tenant).await;
    for (s, db) in [
        ("control-api", &dbs.control),
        ("membership-api", &dbs.membership),
        ("bulk-api", &dbs.bulk),
    ] {
        // One after the other: the first migrates the database, the second finds it done.
        for (replica, port) in ports[s].into_iter().enumerate() {
            let mut env = launcher.env(s, port, tenant, ports["control-api"][0], db.clone());
            let settings: &[(&str, String)] = match s {
                "control-api" => &[
                    ("HUSH_SCIM_TOKEN_FILE", scim_file.display().to_string()),
                    ("HUSH_SCIM_RATE", SCIM_PER_SECOND.to_string()),
                ],
                "membership-api" => &[
                    ("HUSH_RATE_LIMIT_PER_MINUTE", JOINS_PER_MINUTE.to_string()),
                    (
                        "HUSH_REDEEM_FAILURES_PER_HOUR",
                        REDEEM_FAILURES_PER_HOUR.to_string(),
                    ),
                ],
                _ => &[
                    ("HUSH_BULK_OPS_PER_SEC", BULK_OPS_PER_SEC.to_string()),
                    ("HUSH_BULK_CHUNK_SIZE", BULK_CHUNK.to_string()),
                    ("HUSH_BULK_WORKERS", BULK_WORKERS.to_string()),
                ],
            };
            for (k, v) in settings {
                env.insert((*k).into(), v.clone());
            }
            procs.push((format!("{s} #{replica}"), launcher.spawn(s, &env)));
            wait_ready(&http, s, port).await;
        }
    }
    let pair = |s: &str| Pair(ports[s].map(|p| format!("http://127.0.0.1:{p}")));
    let (control, membership, bulk) = (
        pair("control-api"),
        pair("membership-api"),
        pair("bulk-api"),
    );
    let token = |sub: &str| {
        issuer.mint(
            &auth::DevClaims::corporate(sub, IdentityKind::Member, &[]),
            "hush",
            Duration::from_secs(600),
        )
    };
    let group = hush::groups::GroupsClient::new(control.at(0), &token("alice"))
        .unwrap()
        .create_active("Replicas", "General", "open")
        .await
        .expect("the group is provisioned");
    let group = group["id"].as_str().unwrap().to_string();

    // Joins: one caller's budget, spent through both replicas in turn.
    let bob = token("bob");
    let started = Instant::now();
    let mut statuses = Vec::new();
    for i in 0..2 * JOINS_PER_MINUTE {
        let res = http
            .post(format!(
                "{}/membership/v1/groups/{group}/join",
                membership.at(i)
            ))
            .bearer_auth(&bob)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            assert_rate_limited(res).await;
            statuses.push(429);
        } else {
            statuses.push(res.status().as_u16());
        }
    }
    let refills = (started.elapsed().as_secs() / (60 / JOINS_PER_MINUTE as u64)) as usize;
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    eprintln!("joins through two replicas: {statuses:?}");
    assert!(
        admitted >= JOINS_PER_MINUTE && admitted <= JOINS_PER_MINUTE + refills,
        "two replicas allow one budget of {JOINS_PER_MINUTE} joins, not two: {statuses:?}"
    );
    assert_eq!(
        &statuses[..JOINS_PER_MINUTE],
        &[200; JOINS_PER_MINUTE][..],
        "{statuses:?}"
    );

    // Failed invites: the budget that stops code guessing, through both replicas in turn.
    let carol = token("carol");
    let mut statuses = Vec::new();
    let mut retry_after = 0u64;
    for i in 0..2 * REDEEM_FAILURES_PER_HOUR {
        let res = http
            .post(format!("{}/membership/v1/invites/redeem", membership.at(i)))
            .bearer_auth(&carol)
            .json(&json!({"code": format!("HUSH-GUESS{i}")}))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        if status == 429 {
            retry_after = assert_rate_limited(res).await;
        }
        statuses.push(status);
    }
    eprintln!("bad invite codes through two replicas: {statuses:?}, Retry-After {retry_after}");
    let mut expected = vec![404; REDEEM_FAILURES_PER_HOUR];
    expected.extend(vec![429; REDEEM_FAILURES_PER_HOUR]);
    assert_eq!(
        statuses, expected,
        "{REDEEM_FAILURES_PER_HOUR} failed redemptions an hour in all, whichever replica"
    );
    assert!(
        retry_after > 1000,
        "the next failure is allowed in about 20 minutes, not {retry_after} s"
    );

    // SCIM: one rate for all clients and all replicas.
    let started = Instant::now();
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..4 * SCIM_PER_SECOND {
        let (http, url, token) = (
            http.clone(),
            format!("{}/scim/v2/Users", control.at(i)),
            scim_token.clone(),
        );
        requests.spawn(async move {
            http.get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        });
    }
    let answers = requests.join_all().await;
    let elapsed = started.elapsed().as_secs_f64();
    let admitted = answers.iter().filter(|s| s.is_success()).count();
    let refused = answers
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(admitted + refused, answers.len(), "{answers:?}");
    eprintln!("SCIM: {admitted} admitted, {refused} refused in {elapsed:.2} s");
    let most = SCIM_PER_SECOND + (SCIM_PER_SECOND as f64 * elapsed).ceil() as usize;
    assert!(
        admitted >= SCIM_PER_SECOND && admitted <= most,
        "{admitted} SCIM requests admitted in {elapsed:.2} s by two replicas: at most {most}"
    );

    // Bulk: the workers of both replicas share one rate.
    let ops = 6 * BULK_OPS_PER_SEC;
    let lines: String = (0..ops)
        .map(|i| {
            format!(
                "{}\n",
                json!({"op": "add", "group_id": group, "subject": format!("bulk{i}"), "email": format!("bulk{i}@corp.example")})
            )
        })
        .collect();
    let alice = token("alice");
    let job = http
        .post(format!("{}/bulk/v1/jobs", bulk.at(0)))
        .bearer_auth(&alice)
        .header("content-type", "application/x-ndjson")
        .body(lines)
        .send()
        .await
        .unwrap();
    assert_eq!(job.status(), StatusCode::CREATED);
    let job: Value = job.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(90);
    let done = loop {
        let got: Value = http
            .get(format!("{}/bulk/v1/jobs/{id}", bulk.at(1)))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if got["state"] == "succeeded" {
            break got;
        }
        assert!(
            Instant::now() < deadline && got["state"] != "failed",
            "the job never ended: {got}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        done["applied"].as_u64().unwrap() + done["rejected"].as_u64().unwrap(),
        ops as u64
    );
    // In any window the bucket lets through its rate, plus one second's worth (the burst),
    // plus two chunks per worker of either replica: one applied and not yet paid, one paid
    // while the others' payments were still pushing the bucket on.
    let workers = 2 * BULK_WORKERS;
    let slack = BULK_OPS_PER_SEC + 2 * workers * BULK_CHUNK;
    let shortest = (ops - slack) as f64 / BULK_OPS_PER_SEC as f64;
    let fastest = ops as f64 / shortest;
    let rate = done["rate_per_sec"].as_f64().unwrap();
    eprintln!("bulk: {ops} operations at {rate} ops/s (at most {fastest:.1})");
    assert!(
        rate > 0.0 && rate <= fastest,
        "two replicas together ran at {rate} ops/s; at {BULK_OPS_PER_SEC}/s they may reach \
         {fastest:.1} over a job this size, not twice that"
    );

    for (s, p) in procs.into_iter().rev() {
        let status = p.terminate().await;
        assert!(status.success(), "{s} exited with {status} on SIGTERM");
    }
    let _ = stop_issuer.send(());
    if let Some(roles) = pg {
        roles.drop_all().await;
    }
}

/// Asserts a 429 problem+json with `Retry-After`; answers its value.
async fn assert_rate_limited(res: reqwest::Response) -> u64 {
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["type"], "urn:hush:problem:rate-limited");
    retry_after
}

service_kit::backend_tests!(limits_hold_across_two_replicas_of_each_public_service);
