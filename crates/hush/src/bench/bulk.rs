//! `hush bench bulk`: bulk jobs end to end against the raw insert rate of the same number of
//! membership-shaped rows into the same database; a legacy migration's wall time; membership-api
//! join/leave latency idle and beside a large job; each service's peak memory. Every service is
//! its own process (so its peak RSS is its own), on SQLite and, with a URL, on Postgres.

use super::{ms, Percentiles};
use crate::bulk::{BulkClient, Submit};
use crate::cluster::{Cluster, ClusterOptions};
use crate::migrate::{gen_legacy, migrate, GenLegacyArgs, MigrateArgs};
use crate::stack::Databases;
use anyhow::Context as _;
use domain::IdentityKind;
use rand::RngCore as _;
use serde_json::{json, Value};
use sqlx::Connection as _;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// Options of `hush bench bulk`.
#[derive(Debug, Clone, clap::Args)]
pub struct BulkArgs {
    /// Operations in the measured job (and rows in the raw insert beside it).
    #[arg(long, default_value_t = 50_000)]
    pub ops: usize,
    /// Operations in the job that runs while join/leave latency is measured.
    #[arg(long, default_value_t = 500_000)]
    pub load_ops: usize,
    /// Join+leave pairs timed, idle and under load.
    #[arg(long, default_value_t = 200)]
    pub samples: usize,
    /// Groups in the migrated export.
    #[arg(long, default_value_t = 2200)]
    pub groups: usize,
    /// People in the migrated export.
    #[arg(long, default_value_t = 200_000)]
    pub users: usize,
    /// Size of the export's largest group.
    #[arg(long, default_value_t = 40_000)]
    pub largest: usize,
    /// Operations per chunk (one tenant transaction each).
    #[arg(long, default_value_t = 1000)]
    pub chunk_size: usize,
    /// bulk-api's rate limit while latency is measured beside the large job (its default);
    /// the other measurements run unthrottled.
    #[arg(long, default_value_t = 5000)]
    pub load_ops_per_sec: u32,
    /// Bulk batches the tenant applies at once.
    #[arg(long, default_value_t = 2)]
    pub batch_concurrency: usize,
    /// Leave out the migration.
    #[arg(long)]
    pub skip_migration: bool,
    /// Leave out the SQLite run (measure Postgres only).
    #[arg(long, requires = "postgres_url")]
    pub skip_sqlite: bool,
    /// Also run on this Postgres server (an admin URL; databases are created and dropped).
    #[arg(long, env = "HUSH_BENCH_POSTGRES_URL")]
    pub postgres_url: Option<String>,
}

struct Row {
    backend: &'static str,
    job_rate: f64,
    raw_rate: f64,
    raw_op_rate: f64,
    migration: Option<(Duration, u64)>,
    idle: Percentiles,
    loaded: Percentiles,
    load_progress: u64,
    rss: Vec<(String, u64)>,
}

/// Runs the benchmark and prints its table.
pub async fn bulk(args: BulkArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let rows = super::on_each_backend(
        !args.skip_sqlite,
        args.postgres_url.as_deref(),
        async |backend, dbs, dir| run(backend, &exe, dbs, dir, &args).await,
    )
    .await?;
    println!(
        "\nbulk: a {}-op job end to end vs a raw insert of as many rows into the same database; a {}-group / {}-person migration; join+leave latency idle vs beside a {}-op job; peak RSS\n",
        args.ops, args.groups, args.users, args.load_ops
    );
    println!(
        "chunks of {} ops; the tenant applies {} batches at once; the large job runs at {} ops/s (0: unthrottled), the rest unthrottled\n",
        args.chunk_size, args.batch_concurrency, args.load_ops_per_sec
    );
    println!("| backend | job ops/s | raw insert rows/s | job/raw | raw ops/s (membership + identity row each) | job/raw ops | migration | join/leave p50 idle → load | p99 idle → load | p99 ratio | peak RSS (MiB) |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let migration = r.migration.map_or("skipped".into(), |(d, n)| {
            format!("{:.1} s ({n} memberships)", d.as_secs_f64())
        });
        let rss = r
            .rss
            .iter()
            .map(|(s, kib)| format!("{s} {:.0}", *kib as f64 / 1024.0))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "| {} | {:.0} | {:.0} | {:.3} | {:.0} | {:.3} | {} | {} → {} | {} → {} | {:.2} (load job {} ops in) | {} |",
            r.backend,
            r.job_rate,
            r.raw_rate,
            r.job_rate / r.raw_rate,
            r.raw_op_rate,
            r.job_rate / r.raw_op_rate,
            migration,
            ms(r.idle.p50),
            ms(r.loaded.p50),
            ms(r.idle.p99),
            ms(r.loaded.p99),
            r.loaded.p99.as_secs_f64() / r.idle.p99.as_secs_f64(),
            r.load_progress,
            rss
        );
    }
    Ok(())
}

async fn group(
    http: &reqwest::Client,
    control: &str,
    token: &str,
    name: &str,
) -> anyhow::Result<String> {
    let res: Value = http
        .post(format!("{control}/control/v1/groups"))
        .bearer_auth(token)
        .json(&json!({"name": name, "description": "", "label": "General", "join_policy": "open"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = res["id"].as_str().context("group id")?.to_string();
    loop {
        let g: Value = http
            .get(format!("{control}/control/v1/groups/{id}"))
            .bearer_auth(token)
            .send()
            .await?
            .json()
            .await?;
        if g["state"] == "active" {
            return Ok(id);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A job of `n` adds over `groups`, written to `path`.
fn job_file(path: &Path, groups: &[String], prefix: &str, n: usize) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for i in 0..n {
        let g = &groups[i % groups.len()];
        writeln!(
            out,
            "{{\"op\":\"add\",\"group_id\":\"{g}\",\"subject\":\"{prefix}{i}\",\"email\":\"{prefix}{i}@corp.example\"}}"
        )?;
    }
    out.flush()?;
    Ok(())
}

/// Rows of the tenant's membership shape (tag, group, sealed identity, key id), inserted
/// set-based (1,000 rows a statement, one transaction per statement) into a scratch table of
/// the same database; rows per second.
/// Raw insert rates into scratch tables of the tenant's database, 1,000 rows a statement and
/// a transaction: (membership-shaped rows/s, ops/s when each op writes what a job's op writes,
/// a membership row and an identity row with the tenant's unique tags).
async fn raw_insert(url: &str, postgres: bool, n: usize) -> anyhow::Result<(f64, f64)> {
    let mut rng = rand::thread_rng();
    let mut bytes = |len: usize| {
        let mut b = vec![0u8; len];
        rng.fill_bytes(&mut b);
        b
    };
    // (member tag, group, sealed identity) and (id, subject tag, email tag, profile, groups),
    // sized as the tenant writes them.
    let members: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> =
        (0..n).map(|_| (bytes(32), bytes(16), bytes(56))).collect();
    type Person = (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>);
    let people: Vec<Person> = (0..n)
        .map(|_| (bytes(16), bytes(32), bytes(32), bytes(140), bytes(300)))
        .collect();
    macro_rules! insert {
        ($conn:expr, $db:ty, $blob:literal) => {{
            let mut conn = $conn;
            sqlx::query(concat!(
                "CREATE TABLE bench_raw (member_tag ",
                $blob,
                " PRIMARY KEY, group_id ",
                $blob,
                " NOT NULL, sealed_identity ",
                $blob,
                " NOT NULL, key_id TEXT NOT NULL)"
            ))
            .execute(&mut conn)
            .await?;
            sqlx::query(concat!(
                "CREATE TABLE bench_raw_people (id ",
                $blob,
                " PRIMARY KEY, subject_tag ",
                $blob,
                " UNIQUE, email_tag ",
                $blob,
                " UNIQUE, sealed_profile ",
                $blob,
                " NOT NULL, sealed_groups ",
                $blob,
                " NOT NULL, key_id TEXT NOT NULL)"
            ))
            .execute(&mut conn)
            .await?;
            // Twice: membership rows alone, then with an identity row beside each.
            let mut rates = [0.0; 2];
            for (pass, with_people) in [false, true].into_iter().enumerate() {
                sqlx::query("DELETE FROM bench_raw").execute(&mut conn).await?;
                let started = Instant::now();
                for (m, p) in members.chunks(1000).zip(people.chunks(1000)) {
                    let mut tx = conn.begin().await?;
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO bench_raw (member_tag, group_id, sealed_identity, key_id) ",
                    );
                    q.push_values(m, |mut b, (t, g, s)| {
                        b.push_bind(t).push_bind(g).push_bind(s).push_bind("k1");
                    });
                    q.build().execute(&mut *tx).await?;
                    if with_people {
                        let mut q = sqlx::QueryBuilder::<$db>::new(
                            "INSERT INTO bench_raw_people \
                             (id, subject_tag, email_tag, sealed_profile, sealed_groups, key_id) ",
                        );
                        q.push_values(p, |mut b, (id, st, et, sp, sg)| {
                            b.push_bind(id)
                                .push_bind(st)
                                .push_bind(et)
                                .push_bind(sp)
                                .push_bind(sg)
                                .push_bind("k1");
                        });
                        q.build().execute(&mut *tx).await?;
                    }
                    tx.commit().await?;
                }
                rates[pass] = n as f64 / started.elapsed().as_secs_f64();
            }
            let [rows, ops] = rates;
            sqlx::query("DROP TABLE bench_raw")
                .execute(&mut conn)
                .await?;
            sqlx::query("DROP TABLE bench_raw_people")
                .execute(&mut conn)
                .await?;
            (rows, ops)
        }};
    }
    Ok(if postgres {
        insert!(
            sqlx::PgConnection::connect(url).await?,
            sqlx::Postgres,
            "BYTEA"
        )
    } else {
        insert!(
            sqlx::SqliteConnection::connect(url).await?,
            sqlx::Sqlite,
            "BLOB"
        )
    })
}

fn bulk_env(args: &BulkArgs, ops_per_sec: u32) -> Vec<(String, String)> {
    vec![
        ("HUSH_BULK_OPS_PER_SEC".into(), ops_per_sec.to_string()),
        ("HUSH_BULK_CHUNK_SIZE".into(), args.chunk_size.to_string()),
    ]
}

async fn join_leave(
    http: &reqwest::Client,
    membership: &str,
    token: &str,
    group: &str,
) -> anyhow::Result<[Duration; 2]> {
    let mut out = [Duration::ZERO; 2];
    for (i, action) in ["join", "leave"].into_iter().enumerate() {
        let t = Instant::now();
        http.post(format!(
            "{membership}/membership/v1/groups/{group}/{action}"
        ))
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?;
        out[i] = t.elapsed();
    }
    Ok(out)
}

async fn run(
    backend: &'static str,
    exe: &Path,
    dbs: Databases,
    dir: &Path,
    args: &BulkArgs,
) -> anyhow::Result<Row> {
    let tenant_db = dbs.tenant.clone();
    let mut cluster = Cluster::start(
        exe,
        ClusterOptions {
            dir: dir.to_path_buf(),
            databases: dbs,
            bulk_replicas: 1,
            membership: true,
            bulk_env: bulk_env(args, 0),
            tenant_env: vec![(
                "HUSH_TENANT_BATCH_CONCURRENCY".into(),
                args.batch_concurrency.to_string(),
            )],
            log: "error".into(),
        },
    )
    .await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let control = cluster.url("control-api");
    let membership = cluster.url("membership-api");
    let owner = cluster.token("bench-owner", IdentityKind::Member, &[]);
    let op_token = cluster.token("bench-op", IdentityKind::Member, &["operator"]);
    let op = BulkClient::new(&cluster.url("bulk-api"), &op_token)?;
    let mut groups = Vec::new();
    for i in 0..10 {
        groups.push(group(&http, &control, &owner, &format!("Bench {i}")).await?);
    }
    eprintln!("[{backend}] measuring a {}-op job", args.ops);
    let file = dir.join("job.ndjson");
    job_file(&file, &groups, "b", args.ops)?;
    let started = Instant::now();
    let (status, job) = op.submit_file(&file, &Submit::default()).await?;
    anyhow::ensure!(status.is_success(), "submit: {job}");
    let done = op
        .wait(
            job["id"].as_str().context("job id")?,
            Duration::from_secs(3600),
        )
        .await?;
    let job_rate = args.ops as f64 / started.elapsed().as_secs_f64();
    anyhow::ensure!(done["applied"].as_u64() == Some(args.ops as u64), "{done}");
    eprintln!("[{backend}] raw insert of {} rows", args.ops);
    let (raw_rate, raw_op_rate) = raw_insert(&tenant_db, backend == "postgres", args.ops).await?;

    eprintln!("[{backend}] join/leave latency, idle");
    // A different person each time: membership-api rate-limits each caller.
    let people: Vec<String> = (0..args.samples * 2 + 5)
        .map(|i| cluster.token(&format!("bench-person-{i}"), IdentityKind::Member, &[]))
        .collect();
    let mut people = people.iter();
    let target = group(&http, &control, &owner, "Bench latency").await?;
    for p in people.by_ref().take(5) {
        join_leave(&http, &membership, p, &target).await?;
    }
    let mut idle = Vec::new();
    for p in people.by_ref().take(args.samples) {
        idle.extend(join_leave(&http, &membership, p, &target).await?);
    }
    // The large job runs at bulk-api's configured rate, as it would in production.
    cluster.kill("bulk-api").await?;
    cluster.set_bulk_env(bulk_env(args, args.load_ops_per_sec));
    cluster.restart("bulk-api").await?;
    eprintln!(
        "[{backend}] join/leave latency beside a {}-op job",
        args.load_ops
    );
    job_file(&file, &groups, "l", args.load_ops)?;
    let (status, job) = op.submit_file(&file, &Submit::default()).await?;
    anyhow::ensure!(status.is_success(), "submit: {job}");
    let load_id = job["id"].as_str().context("job id")?.to_string();
    // Let the job reach full speed first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut loaded = Vec::new();
    for p in people.by_ref().take(args.samples) {
        loaded.extend(join_leave(&http, &membership, p, &target).await?);
    }
    let (_, during) = op.job(&load_id).await?;
    let load_progress = during["applied"].as_u64().unwrap_or(0);
    let load_done = op.wait(&load_id, Duration::from_secs(7200)).await?;
    anyhow::ensure!(load_done["state"] == "succeeded", "{load_done}");
    cluster.kill("bulk-api").await?;
    cluster.set_bulk_env(bulk_env(args, 0));
    cluster.restart("bulk-api").await?;

    let migration = if args.skip_migration {
        None
    } else {
        eprintln!(
            "[{backend}] migrating {} groups / {} people",
            args.groups, args.users
        );
        let export = dir.join("legacy.ndjson");
        let generated = gen_legacy(&GenLegacyArgs {
            groups: args.groups,
            users: args.users,
            largest: args.largest,
            seed: 7,
            out: export.clone(),
        })?;
        let s = migrate(&MigrateArgs {
            file: export,
            control_url: control.clone(),
            bulk_url: cluster.url("bulk-api"),
            token: op_token.clone(),
            ops_per_job: 200_000,
            state: None,
        })
        .await?;
        Some((
            Duration::from_secs_f64(s.seconds),
            generated.memberships as u64,
        ))
    };
    let rss = [
        "isolated-tenant",
        "control-api",
        "membership-api",
        "bulk-api",
    ]
    .iter()
    .filter_map(|s| cluster.peak_rss_kib(s).map(|k| (s.to_string(), k)))
    .collect();
    cluster.stop().await;
    Ok(Row {
        backend,
        job_rate,
        raw_rate,
        raw_op_rate,
        migration,
        idle: Percentiles::of(idle),
        loaded: Percentiles::of(loaded),
        load_progress,
        rss,
    })
}
