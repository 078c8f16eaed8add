//! `hush-dev bench`: measurements that print a table. Speed targets live here, never in timed
//! tests. Each benchmark starts the real stack (every service on loopback, real HTTP between
//! them) on a fresh SQLite directory, and on Postgres too when a URL is given.

use auth::{DevClaims, ServiceSigner};
use domain::{GroupId, IdentityKind, Label, ServiceName, Subject};
use hush::groups::GroupsClient;
use hush::stack::{Databases, Stack, StackConfig};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tenant_api::{AddMember, MemberRef};
use tenant_client::TenantClient;
use tokio::task::JoinSet;

mod bulk;
mod decisions;
mod mail;
mod routine;
mod storage;
pub use bulk::{bulk, BulkArgs};
pub use decisions::{decisions, DecisionsArgs};
pub use mail::{mail, MailBenchArgs};
pub use routine::{routine, RoutineArgs};
pub use storage::{storage, StorageArgs};

/// Options of `hush-dev bench my-groups`.
#[derive(Debug, Clone, clap::Args)]
pub struct MyGroupsArgs {
    /// How many groups the measured person belongs to.
    #[arg(long, default_value_t = 2000)]
    pub groups: usize,
    /// How many timed "my groups" calls.
    #[arg(long, default_value_t = 200)]
    pub samples: usize,
    /// Also run on this Postgres server (an admin URL; databases are created and dropped).
    #[arg(long, env = "HUSH_BENCH_POSTGRES_URL")]
    pub postgres_url: Option<String>,
}

/// One row of the results table.
struct Row {
    backend: &'static str,
    groups: usize,
    seed: Duration,
    api: Percentiles,
    tenant: Percentiles,
}

struct Percentiles {
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Percentiles {
    fn of(mut v: Vec<Duration>) -> Self {
        v.sort();
        let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
        Self {
            p50: at(0.50),
            p99: at(0.99),
            max: *v.last().expect("at least one sample"),
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Runs the "my groups" benchmark and prints its table.
pub async fn my_groups(args: MyGroupsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.groups > 0 && args.samples > 0,
        "--groups and --samples must be positive"
    );
    let mut rows = Vec::new();
    let dir = tempfile_dir()?;
    rows.push(
        run_my_groups(
            "sqlite",
            Databases::sqlite_in(&dir.join("sqlite")),
            &dir.join("sqlite"),
            &args,
        )
        .await?,
    );
    if let Some(admin) = &args.postgres_url {
        let (dbs, made) = Databases::create_on_postgres(admin, "hush_bench").await?;
        let result = run_my_groups("postgres", dbs, &dir.join("postgres"), &args).await;
        made.drop_all().await;
        rows.push(result?);
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("\nmy groups: one person in N groups; GET /membership/v1/me/groups (membership-api → tenant → control-api) and the tenant's own lookup\n");
    println!(
        "| backend  | groups | seed time | API p50 | API p99 | API max | tenant p50 | tenant p99 |"
    );
    println!(
        "|----------|--------|-----------|---------|---------|---------|------------|------------|"
    );
    for r in rows {
        println!(
            "| {:8} | {:6} | {:>9} | {:>7} | {:>7} | {:>7} | {:>10} | {:>10} |",
            r.backend,
            r.groups,
            format!("{:.1} s", r.seed.as_secs_f64()),
            ms(r.api.p50),
            ms(r.api.p99),
            ms(r.api.max),
            ms(r.tenant.p50),
            ms(r.tenant.p99)
        );
    }
    Ok(())
}

/// Runs `run` on SQLite (files in a scratch directory; unless `sqlite` is false) and, given `postgres_url`, on fresh
/// Postgres databases (dropped afterwards), each backend with a directory of its own; answers
/// the results in that order.
async fn on_each_backend<R>(
    sqlite: bool,
    postgres_url: Option<&str>,
    run: impl AsyncFn(&'static str, Databases, &std::path::Path) -> anyhow::Result<R>,
) -> anyhow::Result<Vec<R>> {
    let dir = tempfile_dir()?;
    let mut rows = Vec::new();
    if sqlite {
        let sqlite_dir = dir.join("sqlite");
        std::fs::create_dir_all(&sqlite_dir)?;
        rows.push(run("sqlite", Databases::sqlite_in(&sqlite_dir), &sqlite_dir).await?);
    }
    if let Some(admin) = postgres_url {
        let (dbs, made) = Databases::create_on_postgres(admin, "hush_bench").await?;
        let pg_dir = dir.join("postgres");
        std::fs::create_dir_all(&pg_dir)?;
        let result = run("postgres", dbs, &pg_dir).await;
        made.drop_all().await;
        rows.push(result?);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(rows)
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("hush-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

async fn run_my_groups(
    backend: &'static str,
    dbs: Databases,
    dir: &std::path::Path,
    args: &MyGroupsArgs,
) -> anyhow::Result<Row> {
    std::fs::create_dir_all(dir)?;
    let stack = Stack::start(StackConfig::for_tests(dir, dbs)).await?;
    let urls = stack.urls();
    let mint = |sub: &str| {
        stack.issuer().mint(
            &DevClaims::corporate(sub, IdentityKind::Member, &[]),
            "hush",
            Duration::from_secs(3600),
        )
    };
    let owner = mint("bench-owner");
    let person = mint("bench-person");
    let http = reqwest::Client::new();
    let seed_started = Instant::now();

    // Groups through control-api (the saga provisions each in the tenant), 16 at a time.
    let groups = GroupsClient::new(&urls.control, &owner)?;
    let mut ids = Vec::with_capacity(args.groups);
    let mut set = JoinSet::new();
    for i in 0..args.groups {
        let groups = groups.clone();
        set.spawn(async move {
            let body = json!({"name": format!("Bench group {i}"), "description": "", "label": "General", "join_policy": "open"});
            let (status, res) = groups.create(&body).await?;
            anyhow::ensure!(status.is_success(), "creating a group: {status} {res}");
            GroupId::parse(res["id"].as_str().unwrap_or_default()).map_err(anyhow::Error::from)
        });
        if set.len() >= 16 {
            ids.push(set.join_next().await.expect("non-empty")??);
        }
    }
    while let Some(r) = set.join_next().await {
        ids.push(r??);
    }
    for id in &ids {
        let g = groups
            .wait_provisioned(&id.to_string(), Duration::from_secs(600))
            .await?;
        anyhow::ensure!(g["state"] == "active", "group {id} ended {g}");
    }

    // Membership straight through the tenant, as membership-api would write it.
    let signer = ServiceSigner::from_pem_file(
        ServiceName::MembershipApi,
        &stack.keys_dir().join("membership-api.key.pem"),
    )?;
    let tenant = TenantClient::new(&urls.tenant, signer)?;
    let subject = Subject::parse("bench-person")?;
    let email = domain::Email::parse("bench-person@corp.example")?;
    let label = Label::defaults().remove(0);
    let mut set = JoinSet::new();
    for id in &ids {
        let (tenant, id) = (tenant.clone(), *id);
        let req = AddMember {
            member: MemberRef {
                subject: Some(subject.clone()),
                email: Some(email.clone()),
                kind: Some(IdentityKind::Member),
            },
            label: label.clone(),
        };
        set.spawn(async move { tenant.add_member(id, &req).await });
        if set.len() >= 8 {
            set.join_next().await.expect("non-empty")??;
        }
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    let seed = seed_started.elapsed();

    let me_url = format!("{}/membership/v1/me/groups", urls.membership);
    let mut api = Vec::with_capacity(args.samples);
    let mut direct = Vec::with_capacity(args.samples);
    for i in 0..args.samples + 5 {
        let t = Instant::now();
        let body: Value = http
            .get(&me_url)
            .bearer_auth(&person)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let took = t.elapsed();
        let n = body["groups"].as_array().map_or(0, Vec::len);
        anyhow::ensure!(
            n == args.groups,
            "my groups listed {n} of {} groups",
            args.groups
        );
        let t = Instant::now();
        // As membership-api asks it: the person's subject and their token's address.
        let got = tenant.groups_of(&subject, Some(&email), None).await?;
        let took_direct = t.elapsed();
        anyhow::ensure!(got.len() == args.groups);
        if i >= 5 {
            api.push(took);
            direct.push(took_direct);
        }
    }
    stack.stop().await?;
    Ok(Row {
        backend,
        groups: args.groups,
        seed,
        api: Percentiles::of(api),
        tenant: Percentiles::of(direct),
    })
}
