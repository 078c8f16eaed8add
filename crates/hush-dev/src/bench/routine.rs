//! `hush-dev bench routine`: the routine path under load — joins and leaves through
//! membership-api (→ control-api for the group, → the tenant for the write), by distinct people,
//! on one open group, at 1, 8 and 32 concurrent clients; each service its own process. A client
//! sends its next request when its last one is answered; when a phase's people are used up, the
//! clients finish what is in flight and stop, so every request sent is counted. Then each
//! service's resident memory.

use super::{ms, Percentiles};
use crate::cluster::{Cluster, ClusterOptions};
use anyhow::Context as _;
use domain::IdentityKind;
use hush::groups::GroupsClient;
use hush::stack::Databases;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// Options of `hush-dev bench routine`.
#[derive(Debug, Clone, clap::Args)]
pub struct RoutineArgs {
    /// Client counts to measure, each a run of its own (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    pub clients: Vec<usize>,
    /// Joins per run (as many people, each joining once and then leaving once). With one
    /// client, a quarter of this (at least 200), so that run does not take minutes.
    #[arg(long, default_value_t = 4000)]
    pub joins: usize,
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

/// One phase (joins or leaves) of one run.
struct Phase {
    per_sec: f64,
    latency: Percentiles,
}

struct Row {
    backend: &'static str,
    clients: usize,
    people: usize,
    joins: Phase,
    leaves: Phase,
}

struct Report {
    backend: &'static str,
    rows: Vec<Row>,
    /// Each service's resident memory after the runs, and its peak, in KiB.
    rss: Vec<(String, u64, u64)>,
}

const SERVICES: [&str; 3] = ["isolated-tenant", "control-api", "membership-api"];

/// Runs the benchmark and prints its table.
pub async fn routine(args: RoutineArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.joins > 0 && !args.clients.is_empty() && args.clients.iter().all(|c| *c > 0),
        "--joins and every --clients count must be positive"
    );
    let exe = std::env::current_exe()?;
    let reports = super::on_each_backend(
        !args.skip_sqlite,
        args.postgres_url.as_deref(),
        async |backend, dbs, dir| run(backend, &exe, dbs, dir, &args).await,
    )
    .await?;
    println!(
        "\nroutine: joins, then leaves, through membership-api by distinct people on one open group; every service its own process\n"
    );
    println!("| backend | clients | people | joins/s | join p50 | join p99 | join max | leaves/s | leave p50 | leave p99 | leave max |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in reports.iter().flat_map(|r| &r.rows) {
        println!(
            "| {} | {} | {} | {:.0} | {} | {} | {} | {:.0} | {} | {} | {} |",
            r.backend,
            r.clients,
            r.people,
            r.joins.per_sec,
            ms(r.joins.latency.p50),
            ms(r.joins.latency.p99),
            ms(r.joins.latency.max),
            r.leaves.per_sec,
            ms(r.leaves.latency.p50),
            ms(r.leaves.latency.p99),
            ms(r.leaves.latency.max),
        );
    }
    println!();
    for report in &reports {
        let rss = report
            .rss
            .iter()
            .map(|(s, now, peak)| {
                format!(
                    "{s} {:.0} (peak {:.0})",
                    *now as f64 / 1024.0,
                    *peak as f64 / 1024.0
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "{}: resident memory after the runs, MiB: {rss}",
            report.backend
        );
    }
    Ok(())
}

async fn run(
    backend: &'static str,
    exe: &Path,
    dbs: Databases,
    dir: &Path,
    args: &RoutineArgs,
) -> anyhow::Result<Report> {
    let cluster = Cluster::start(exe, ClusterOptions::routine(dir, dbs, &args.service_log)).await?;
    let owner = cluster.token("bench-owner", IdentityKind::Member, &[]);
    let group = GroupsClient::new(&cluster.url("control-api"), &owner)?
        .create_active("Routine bench", "General", "open")
        .await?;
    let group = group["id"].as_str().context("group id")?.to_string();
    let membership = cluster.url("membership-api");
    // Enough connections that no client waits for one; kept alive, as a load balancer would.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(64)
        .build()?;
    let mut rows = Vec::new();
    for (n, &clients) in args.clients.iter().enumerate() {
        let people = if clients == 1 {
            (args.joins / 4).max(200)
        } else {
            args.joins
        };
        eprintln!("[{backend}] {clients} client(s): minting {people} people's tokens");
        let tokens: Arc<Vec<String>> = Arc::new(
            (0..people)
                .map(|i| cluster.token(&format!("routine-{n}-{i}"), IdentityKind::Member, &[]))
                .collect(),
        );
        eprintln!("[{backend}] {clients} client(s): {people} joins, then as many leaves");
        let joins = phase(&http, &membership, &group, "join", &tokens, clients).await?;
        let leaves = phase(&http, &membership, &group, "leave", &tokens, clients).await?;
        rows.push(Row {
            backend,
            clients,
            people,
            joins,
            leaves,
        });
    }
    let rss = SERVICES
        .iter()
        .filter_map(|s| Some((s.to_string(), cluster.rss_kib(s)?, cluster.peak_rss_kib(s)?)))
        .collect();
    cluster.stop().await;
    Ok(Report { backend, rows, rss })
}

/// Every person in `tokens` calls `action` once, `clients` at a time; answers the rate and the
/// latencies. Fails on any answer but success: a benchmark that counts refusals as work lies.
async fn phase(
    http: &reqwest::Client,
    membership: &str,
    group: &str,
    action: &str,
    tokens: &Arc<Vec<String>>,
    clients: usize,
) -> anyhow::Result<Phase> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let url = format!("{membership}/membership/v1/groups/{group}/{action}");
    let started = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..clients {
        let (http, url, tokens, next) = (http.clone(), url.clone(), tokens.clone(), next.clone());
        set.spawn(async move {
            let mut took = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(token) = tokens.get(i) else {
                    return anyhow::Ok(took);
                };
                let t = Instant::now();
                let res = http.post(&url).bearer_auth(token).send().await?;
                let status = res.status();
                if !status.is_success() {
                    anyhow::bail!(
                        "{status} on a {url}: {}",
                        res.text().await.unwrap_or_default()
                    );
                }
                res.bytes().await?;
                took.push(t.elapsed());
            }
        });
    }
    let mut all = Vec::with_capacity(tokens.len());
    while let Some(r) = set.join_next().await {
        all.extend(r??);
    }
    let elapsed = started.elapsed();
    anyhow::ensure!(all.len() == tokens.len(), "not every request was answered");
    Ok(Phase {
        per_sec: all.len() as f64 / elapsed.as_secs_f64(),
        latency: Percentiles::of(all),
    })
}
