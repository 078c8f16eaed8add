//! `hush-dev bench decisions`: access decisions for apps under load (issue 18). The stack as
//! separate processes; 2,000 Confidential groups and 100,000 identities (each a member of one
//! group); one app with ten resources, each guarded by twenty groups. Clients post RFC 8693
//! token exchanges for people in guarding groups and for people in none, at 1, 8 and 32
//! concurrent clients; every answer is checked against what the person may use, and anything
//! but a correct 200 fails the run.

use super::{ms, Percentiles};
use crate::cluster::{Cluster, ClusterOptions};
use anyhow::Context as _;
use domain::{GroupId, IdentityKind, Label, Subject};
use hush::groups::GroupsClient;
use hush::stack::Databases;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tenant_api::{AddMember, MemberRef};
use tokio::task::JoinSet;

/// Options of `hush-dev bench decisions`.
#[derive(Debug, Clone, clap::Args)]
pub struct DecisionsArgs {
    /// Groups to create (all Confidential).
    #[arg(long, default_value_t = 2000)]
    pub groups: usize,
    /// Identities in the tenant, each a member of one group.
    #[arg(long, default_value_t = 100_000)]
    pub identities: usize,
    /// Client counts to measure (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    pub clients: Vec<usize>,
    /// Decisions per run (a quarter with one client).
    #[arg(long, default_value_t = 4000)]
    pub decisions: usize,
    /// `RUST_LOG` for the services.
    #[arg(long, default_value = "error")]
    pub service_log: String,
    /// Leave out the SQLite run (measure Postgres only).
    #[arg(long, requires = "postgres_url")]
    pub skip_sqlite: bool,
    /// Also run on this Postgres server (an admin URL; databases are created and dropped).
    #[arg(long, env = "HUSH_BENCH_POSTGRES_URL")]
    pub postgres_url: Option<String>,
}

/// Resources of the app, and groups guarding each.
const RESOURCES: usize = 10;
const GUARDS_PER_RESOURCE: usize = 20;
/// People whose tokens the clients present (half in guarding groups).
const PEOPLE: usize = 2000;

struct Row {
    backend: &'static str,
    clients: usize,
    decisions: usize,
    per_sec: f64,
    latency: Percentiles,
}

/// Runs the benchmark and prints its table.
pub async fn decisions(args: DecisionsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.groups >= RESOURCES * GUARDS_PER_RESOURCE * 2 && args.identities >= PEOPLE * 2,
        "--groups must be at least {} and --identities at least {}",
        RESOURCES * GUARDS_PER_RESOURCE * 2,
        PEOPLE * 2
    );
    let exe = std::env::current_exe()?;
    let reports = super::on_each_backend(
        !args.skip_sqlite,
        args.postgres_url.as_deref(),
        async |backend, dbs, dir| run(backend, &exe, dbs, dir, &args).await,
    )
    .await?;
    println!(
        "\ndecisions: RFC 8693 token exchanges at membership-api (→ control-api's app lookup, kept; → the tenant about the one person); {} groups, {} identities, {RESOURCES} resources each guarded by {GUARDS_PER_RESOURCE} groups; every service its own process\n",
        args.groups, args.identities
    );
    println!("| backend | clients | decisions | decisions/s | p50 | p99 | max |");
    println!("|---|---|---|---|---|---|---|");
    for r in reports.iter().flatten() {
        println!(
            "| {} | {} | {} | {:.0} | {} | {} | {} |",
            r.backend,
            r.clients,
            r.decisions,
            r.per_sec,
            ms(r.latency.p50),
            ms(r.latency.p99),
            ms(r.latency.max)
        );
    }
    Ok(())
}

async fn run(
    backend: &'static str,
    exe: &Path,
    dbs: Databases,
    dir: &Path,
    args: &DecisionsArgs,
) -> anyhow::Result<Vec<Row>> {
    let mut opts = ClusterOptions::routine(dir, dbs, &args.service_log);
    // The per-app budget (1000/s by default) is what a deployment sets; the benchmark measures
    // the service, so it lifts it.
    opts.membership_env = vec![("HUSH_DECISIONS_PER_SECOND_PER_APP".into(), "1000000".into())];
    let cluster = Cluster::start(exe, opts).await?;
    let started = Instant::now();
    let owner = cluster.token("bench-owner", IdentityKind::Member, &[]);
    let operator = cluster.token("bench-operator", IdentityKind::Member, &["operator"]);
    let control = cluster.url("control-api");
    let groups = create_groups(&GroupsClient::new(&control, &owner)?, args.groups).await?;
    eprintln!(
        "[{backend}] {} groups in {:.0} s",
        groups.len(),
        started.elapsed().as_secs_f64()
    );
    seed_identities(&cluster, &groups, args.identities).await?;
    eprintln!(
        "[{backend}] {} identities in {:.0} s",
        args.identities,
        started.elapsed().as_secs_f64()
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(64)
        .build()?;
    let (app_id, secret) = register_app(&http, &control, &operator, &owner, &groups).await?;
    // People: person-i is in group i % groups; half of those measured are in a guarding group.
    let guarded = RESOURCES * GUARDS_PER_RESOURCE;
    let people: Vec<(String, Vec<String>)> = (0..PEOPLE)
        .map(|n| {
            let g = if n % 2 == 0 {
                n / 2 % guarded
            } else {
                guarded + n / 2 % (groups.len() - guarded)
            };
            // The smallest i with i % groups == g, plus a multiple of groups, within range.
            let i = g + groups.len() * (n % (args.identities / groups.len()).max(1));
            let expect = if g < guarded {
                vec![format!("res-{}", g / GUARDS_PER_RESOURCE)]
            } else {
                Vec::new()
            };
            (
                cluster.token(&format!("person-{i}"), IdentityKind::Member, &[]),
                expect,
            )
        })
        .collect();
    let people = Arc::new(people);
    let url = format!(
        "{}/membership/v1/decisions/token",
        cluster.url("membership-api")
    );
    let mut rows = Vec::new();
    for &clients in &args.clients {
        let n = if clients == 1 {
            (args.decisions / 4).max(200)
        } else {
            args.decisions
        };
        // Warm up: the app lookup kept, connections open.
        measure(&http, &url, app_id, &secret, &people, clients, clients * 4).await?;
        let started = Instant::now();
        let took = measure(&http, &url, app_id, &secret, &people, clients, n).await?;
        let elapsed = started.elapsed();
        rows.push(Row {
            backend,
            clients,
            decisions: n,
            per_sec: n as f64 / elapsed.as_secs_f64(),
            latency: Percentiles::of(took),
        });
        eprintln!("[{backend}] {clients} client(s): {n} decisions done");
    }
    cluster.stop().await;
    Ok(rows)
}

/// `n` token exchanges, `clients` at a time, cycling through `people`; each answer checked.
async fn measure(
    http: &reqwest::Client,
    url: &str,
    app_id: uuid::Uuid,
    secret: &str,
    people: &Arc<Vec<(String, Vec<String>)>>,
    clients: usize,
    n: usize,
) -> anyhow::Result<Vec<Duration>> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut set = JoinSet::new();
    for _ in 0..clients {
        let (http, url, people, next, secret) = (
            http.clone(),
            url.to_string(),
            people.clone(),
            next.clone(),
            secret.to_string(),
        );
        set.spawn(async move {
            let mut took = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(took);
                }
                let (token, expect) = &people[i % people.len()];
                let t = Instant::now();
                let res = http
                    .post(&url)
                    .basic_auth(app_id, Some(&secret))
                    .form(&[
                        ("grant_type", membership_api::TOKEN_EXCHANGE_GRANT),
                        (
                            "subject_token_type",
                            "urn:ietf:params:oauth:token-type:access_token",
                        ),
                        ("subject_token", token),
                    ])
                    .send()
                    .await?;
                let status = res.status();
                let body: Value = res.json().await.unwrap_or_default();
                took.push(t.elapsed());
                anyhow::ensure!(status.is_success(), "{status}: {body}");
                anyhow::ensure!(
                    body["resources"] == json!(expect),
                    "decision {body} where {expect:?} was expected"
                );
            }
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        all.extend(r??);
    }
    Ok(all)
}

async fn create_groups(groups: &GroupsClient, n: usize) -> anyhow::Result<Vec<GroupId>> {
    let mut ids = Vec::with_capacity(n);
    let mut set = JoinSet::new();
    for i in 0..n {
        let groups = groups.clone();
        set.spawn(async move {
            let body = json!({"name": format!("Decision bench {i}"), "description": "", "label": "Confidential", "join_policy": "approval"});
            let (status, res) = groups.create(&body).await?;
            anyhow::ensure!(status.is_success(), "creating a group: {status} {res}");
            anyhow::Ok((i, GroupId::parse(res["id"].as_str().unwrap_or_default())?))
        });
        if set.len() >= 16 {
            ids.push(set.join_next().await.expect("non-empty")??);
        }
    }
    while let Some(r) = set.join_next().await {
        ids.push(r??);
    }
    ids.sort_by_key(|(i, _)| *i);
    for (_, id) in &ids {
        let g = groups
            .wait_provisioned(&id.to_string(), Duration::from_secs(900))
            .await?;
        anyhow::ensure!(g["state"] == "active", "group {id} ended {g}");
    }
    Ok(ids.into_iter().map(|(_, id)| id).collect())
}

/// person-i, a member, joins group i % groups, straight through the tenant as membership-api
/// would write it.
async fn seed_identities(
    cluster: &Cluster,
    groups: &[GroupId],
    identities: usize,
) -> anyhow::Result<()> {
    let tenant = cluster.tenant_as(domain::ServiceName::MembershipApi)?;
    let label = Label::defaults().remove(1);
    let mut set = JoinSet::new();
    for i in 0..identities {
        let (tenant, group) = (tenant.clone(), groups[i % groups.len()]);
        let req = AddMember {
            member: MemberRef {
                subject: Some(Subject::parse(format!("person-{i}"))?),
                email: Some(domain::Email::parse(format!("person-{i}@corp.example"))?),
                kind: Some(IdentityKind::Member),
            },
            label: label.clone(),
        };
        set.spawn(async move { tenant.add_member(group, &req).await });
        if set.len() >= 16 {
            set.join_next().await.expect("non-empty")??;
        }
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(())
}

/// Registers the app and its resources (operator), binds the guarding groups (owner).
async fn register_app(
    http: &reqwest::Client,
    control: &str,
    operator: &str,
    owner: &str,
    groups: &[GroupId],
) -> anyhow::Result<(uuid::Uuid, String)> {
    let app: Value = http
        .post(format!("{control}/control/v1/relying-parties"))
        .bearer_auth(operator)
        .json(&json!({"name": "Bench app", "audience": "https://bench.example"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let app_id: uuid::Uuid = app["id"].as_str().context("app id")?.parse()?;
    let secret = app["credential"]
        .as_str()
        .context("credential")?
        .to_string();
    for r in 0..RESOURCES {
        let res: Value = http
            .post(format!(
                "{control}/control/v1/relying-parties/{app_id}/resources"
            ))
            .bearer_auth(operator)
            .json(&json!({"name": format!("res-{r}"), "label": "Confidential"}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let rid = res["id"].as_str().context("resource id")?.to_string();
        for g in &groups[r * GUARDS_PER_RESOURCE..(r + 1) * GUARDS_PER_RESOURCE] {
            http.put(format!("{control}/control/v1/groups/{g}/bindings/{rid}"))
                .bearer_auth(owner)
                .send()
                .await?
                .error_for_status()?;
        }
    }
    Ok((app_id, secret))
}
