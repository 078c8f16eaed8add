//! `hush-dev bench bulk`: bulk jobs end to end against the raw insert rate of the same number of
//! membership-shaped rows into the same database; a legacy migration's wall time; membership-api
//! join/leave latency idle and beside a large job; each service's peak memory. Every service is
//! its own process (so its peak RSS is its own), on SQLite and, with a URL, on Postgres.

use super::{ms, Percentiles};
use crate::cluster::{cpu_seconds, cpu_seconds_of_all, Cluster, ClusterOptions};
use crate::legacy::{gen_legacy, ExportShape, GenLegacyArgs};
use anyhow::Context as _;
use domain::{Email, GroupId, IdentityKind, Label, ServiceName, Subject};
use hush::bulk::{BulkClient, Submit};
use hush::groups::GroupsClient;
use hush::migrate::{migrate, MigrateArgs};
use hush::stack::Databases;
use rand::RngCore as _;
use sqlx::Connection as _;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};
use tenant_api::{AddMember, IdentityRef, MemberRef};
use tenant_client::TenantClient;

/// Options of `hush-dev bench bulk`.
#[derive(Debug, Clone, clap::Args)]
pub struct BulkArgs {
    /// Operations in the measured job (and rows in the raw insert beside it).
    #[arg(long, default_value_t = 50_000)]
    pub ops: usize,
    /// Operations in the job that runs while join/leave latency is measured.
    #[arg(long, default_value_t = 500_000)]
    pub load_ops: usize,
    /// Join+leave pairs timed, idle and under load (each pair also times the tenant's own
    /// add+remove). Default: 2,500 on Postgres, where a p99 of a few hundred samples rests on a
    /// handful of them and moved the ratio by ±0.5 between identical runs; 500 on SQLite, where
    /// a call beside a batch waits for it, so rounds take long enough that the load job would
    /// end before more samples were taken.
    #[arg(long)]
    pub samples: Option<usize>,
    /// The migrated export.
    #[command(flatten)]
    pub export: ExportShape,
    /// Operations per chunk (one tenant transaction each).
    #[arg(long, default_value_t = 1000)]
    pub chunk_size: usize,
    /// bulk-api's rate limit while latency is measured beside the large job (its default);
    /// the other measurements run unthrottled.
    #[arg(long, default_value_t = 5000)]
    pub load_ops_per_sec: u32,
    /// Job workers in bulk-api (default: its own, 3).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Bulk batches the tenant applies at once (default: the tenant's, 3 on Postgres and 2 on
    /// SQLite).
    #[arg(long)]
    pub batch_concurrency: Option<usize>,
    /// `RUST_LOG` for the services (their logs go to standard error), for looking into a
    /// result: `tower_http=debug` logs each request's latency.
    #[arg(long, default_value = "error")]
    pub service_log: String,
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
    raw: RawRates,
    migration: Option<(Duration, u64)>,
    idle: Percentiles,
    loaded: Percentiles,
    /// The tenant's own add+remove, called directly as membership-api calls it.
    tenant_idle: Percentiles,
    tenant_loaded: Percentiles,
    load_progress: u64,
    /// Rounds of idle and loaded samples completed while the load job ran.
    rounds: usize,
    rss: Vec<(String, u64)>,
    /// CPU microseconds per operation of the measured job, by process.
    cpu_per_op: Vec<(String, f64)>,
}

/// Rounds of idle and loaded latency samples.
const LATENCY_ROUNDS: usize = 5;

const SERVICES: [&str; 4] = [
    "isolated-tenant",
    "control-api",
    "membership-api",
    "bulk-api",
];

/// CPU seconds used so far by each service and (on Postgres) by every `postgres` process.
fn cpu_now(cluster: &Cluster, postgres: bool) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = SERVICES
        .iter()
        .filter_map(|s| Some((s.to_string(), cpu_seconds(cluster.pid(s)?)?)))
        .collect();
    if postgres {
        out.push(("postgres".into(), cpu_seconds_of_all("postgres")));
    }
    out
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
        args.ops, args.export.groups, args.export.users, args.load_ops
    );
    println!(
        "chunks of {} ops; tenant batch slots (batches applied at once): {}; the large job runs at {} ops/s (0: unthrottled), the rest unthrottled; {} join+leave pairs timed idle and as many under load\n",
        args.chunk_size,
        args.batch_concurrency.map_or_else(
            || "3 on Postgres, 2 on SQLite (its defaults)".to_string(),
            |n| n.to_string()
        ),
        args.load_ops_per_sec,
        args.samples.map_or_else(
            || "2500 on Postgres, 500 on SQLite (default)".to_string(),
            |n| n.to_string()
        )
    );
    println!("| backend | job ops/s | raw insert rows/s | job/raw | raw ops/s (membership + identity row each) | job/raw ops | raw ops/s (every row an op writes: membership, identity, audit event) | job/raw all | migration | join/leave p50 idle → load | p99 idle → load | p99 ratio | peak RSS (MiB) |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
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
            "| {} | {:.0} | {:.0} | {:.3} | {:.0} | {:.3} | {:.0} | {:.3} | {} | {} → {} | {} → {} | {:.2} ({} rounds; load job {} ops in) | {} |",
            r.backend,
            r.job_rate,
            r.raw.rows,
            r.job_rate / r.raw.rows,
            r.raw.ops,
            r.job_rate / r.raw.ops,
            r.raw.all,
            r.job_rate / r.raw.all,
            migration,
            ms(r.idle.p50),
            ms(r.loaded.p50),
            ms(r.idle.p99),
            ms(r.loaded.p99),
            r.loaded.p99.as_secs_f64() / r.idle.p99.as_secs_f64(),
            r.rounds,
            r.load_progress,
            rss
        );
    }
    println!();
    for r in &rows {
        let cpu = r
            .cpu_per_op
            .iter()
            .map(|(s, us)| format!("{s} {us:.1}"))
            .collect::<Vec<_>>()
            .join(", ");
        println!("{}: CPU µs per op of the measured job: {cpu}", r.backend);
        println!(
            "{}: the tenant's own add/remove (called directly): p50 {} → {}, p99 {} → {} (×{:.2})",
            r.backend,
            ms(r.tenant_idle.p50),
            ms(r.tenant_loaded.p50),
            ms(r.tenant_idle.p99),
            ms(r.tenant_loaded.p99),
            r.tenant_loaded.p99.as_secs_f64() / r.tenant_idle.p99.as_secs_f64()
        );
    }
    Ok(())
}

async fn group(control: &str, token: &str, name: &str) -> anyhow::Result<String> {
    let g = GroupsClient::new(control, token)?
        .create_active(name, "General", "open")
        .await?;
    Ok(g["id"].as_str().context("group id")?.to_string())
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

/// Raw insert rates into scratch tables of the tenant's database, 1,000 rows a statement and
/// a transaction, each the median of [`RAW_PASSES`] passes into emptied tables, from a
/// settled database ([`settle`]):
/// - membership-shaped rows alone (tag, group, sealed identity, key id);
/// - ops/s when each op writes a membership row and an identity row (id, unique subject and
///   address tags, sealed profile);
/// - ops/s when each op writes every row a job's op writes: those two and its audit event,
///   appended as the tenant appends them (on Postgres one statement over arrays).
async fn raw_insert(url: &str, postgres: bool, n: usize) -> anyhow::Result<RawRates> {
    let mut rng = rand::thread_rng();
    let mut bytes = |len: usize| {
        let mut b = vec![0u8; len];
        rng.fill_bytes(&mut b);
        b
    };
    // (member tag, group, sealed identity) and (id, subject tag, email tag, profile), sized as
    // the tenant writes them.
    let members: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> =
        (0..n).map(|_| (bytes(32), bytes(16), bytes(56))).collect();
    type Person = (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>);
    let people: Vec<Person> = (0..n)
        .map(|_| (bytes(16), bytes(32), bytes(32), bytes(140)))
        .collect();
    let events: Vec<RawEvent> = (0..n)
        .map(|i| RawEvent {
            seq: i as i64 + 1,
            group_id: uuid::Uuid::from_slice(&bytes(16))
                .unwrap_or_default()
                .to_string(),
            subject: format!("k1:{}", hex::encode(bytes(32))),
            prev_hash: bytes(32),
            hash: bytes(32),
        })
        .collect();
    macro_rules! insert {
        ($conn:expr, $db:ty, $blob:literal, $append:ident) => {{
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
                " NOT NULL, key_id TEXT NOT NULL)"
            ))
            .execute(&mut conn)
            .await?;
            sqlx::query(concat!(
                "CREATE TABLE bench_raw_audit (seq BIGINT PRIMARY KEY, at_ms BIGINT NOT NULL, \
                 service TEXT NOT NULL, actor TEXT, action TEXT NOT NULL, group_id TEXT, \
                 subject TEXT, request_id TEXT, prev_hash ",
                $blob,
                " NOT NULL, hash ",
                $blob,
                " NOT NULL)"
            ))
            .execute(&mut conn)
            .await?;
            // Membership rows alone, with an identity row beside each, and with an audit event
            // too; a few times.
            let mut rates = [Vec::new(), Vec::new(), Vec::new()];
            for (pass, tables) in [1, 2, 3].repeat(RAW_PASSES).into_iter().enumerate() {
                // Emptied (Postgres: with their indexes) so every pass starts the same.
                for table in ["bench_raw", "bench_raw_people", "bench_raw_audit"] {
                    let empty = if postgres {
                        "TRUNCATE "
                    } else {
                        "DELETE FROM "
                    };
                    sqlx::query(&format!("{empty}{table}"))
                        .execute(&mut conn)
                        .await?;
                }
                settle(&mut conn, postgres).await;
                let started = Instant::now();
                for ((m, p), e) in members
                    .chunks(1000)
                    .zip(people.chunks(1000))
                    .zip(events.chunks(1000))
                {
                    let mut tx = conn.begin().await?;
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO bench_raw (member_tag, group_id, sealed_identity, key_id) ",
                    );
                    q.push_values(m, |mut b, (t, g, s)| {
                        b.push_bind(t).push_bind(g).push_bind(s).push_bind("k1");
                    });
                    q.build().execute(&mut *tx).await?;
                    if tables >= 2 {
                        let mut q = sqlx::QueryBuilder::<$db>::new(
                            "INSERT INTO bench_raw_people \
                             (id, subject_tag, email_tag, sealed_profile, key_id) ",
                        );
                        q.push_values(p, |mut b, (id, st, et, sp)| {
                            b.push_bind(id)
                                .push_bind(st)
                                .push_bind(et)
                                .push_bind(sp)
                                .push_bind("k1");
                        });
                        q.build().execute(&mut *tx).await?;
                    }
                    if tables >= 3 {
                        $append(&mut *tx, e).await?;
                    }
                    tx.commit().await?;
                }
                rates[pass % 3].push(n as f64 / started.elapsed().as_secs_f64());
            }
            let [rows, ops, all] = rates.map(|mut r| {
                r.sort_by(f64::total_cmp);
                r[r.len() / 2]
            });
            for table in ["bench_raw", "bench_raw_people", "bench_raw_audit"] {
                sqlx::query(&format!("DROP TABLE {table}"))
                    .execute(&mut conn)
                    .await?;
            }
            RawRates { rows, ops, all }
        }};
    }
    Ok(if postgres {
        insert!(
            sqlx::PgConnection::connect(url).await?,
            sqlx::Postgres,
            "BYTEA",
            raw_audit_pg
        )
    } else {
        insert!(
            sqlx::SqliteConnection::connect(url).await?,
            sqlx::Sqlite,
            "BLOB",
            raw_audit_sqlite
        )
    })
}

/// What [`raw_insert`] measured (rows or ops per second).
struct RawRates {
    /// Membership rows alone.
    rows: f64,
    /// Ops writing a membership row and an identity row.
    ops: f64,
    /// Ops writing every row a job's op writes: membership, identity and audit event.
    all: f64,
}

/// An audit event as the tenant stores one for a bulk add: its own sequence number and hash
/// link, the group, and a member pseudonym.
struct RawEvent {
    seq: i64,
    group_id: String,
    subject: String,
    prev_hash: Vec<u8>,
    hash: Vec<u8>,
}

const RAW_AUDIT_COLUMNS: &str =
    "seq, at_ms, service, actor, action, group_id, subject, request_id, prev_hash, hash";

/// Appends `events` as the tenant appends a batch's events on Postgres: one statement over
/// arrays.
async fn raw_audit_pg(conn: &mut sqlx::PgConnection, events: &[RawEvent]) -> sqlx::Result<()> {
    let texts = |f: fn(&RawEvent) -> String| events.iter().map(f).collect::<Vec<_>>();
    sqlx::query(&format!(
        "INSERT INTO bench_raw_audit ({RAW_AUDIT_COLUMNS}) SELECT * FROM UNNEST($1::bigint[], \
         $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], \
         $9::bytea[], $10::bytea[])"
    ))
    .bind(events.iter().map(|e| e.seq).collect::<Vec<_>>())
    .bind(vec![0i64; events.len()])
    .bind(texts(|_| "isolated-tenant".into()))
    .bind(vec![None::<String>; events.len()])
    .bind(texts(|_| "membership.added".into()))
    .bind(texts(|e| e.group_id.clone()))
    .bind(texts(|e| e.subject.clone()))
    .bind(texts(|_| "req-bench-raw".into()))
    .bind(
        events
            .iter()
            .map(|e| e.prev_hash.clone())
            .collect::<Vec<_>>(),
    )
    .bind(events.iter().map(|e| e.hash.clone()).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

/// Appends `events` as the tenant appends a batch's events on SQLite: multi-row `VALUES`.
async fn raw_audit_sqlite(
    conn: &mut sqlx::SqliteConnection,
    events: &[RawEvent],
) -> sqlx::Result<()> {
    // SQLite binds at most 32,766 values a statement: 1,000 rows of 10 fit.
    let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(format!(
        "INSERT INTO bench_raw_audit ({RAW_AUDIT_COLUMNS}) "
    ));
    q.push_values(events, |mut b, e| {
        b.push_bind(e.seq)
            .push_bind(0i64)
            .push_bind("isolated-tenant")
            .push_bind(None::<String>)
            .push_bind("membership.added")
            .push_bind(&e.group_id)
            .push_bind(&e.subject)
            .push_bind("req-bench-raw")
            .push_bind(&e.prev_hash)
            .push_bind(&e.hash);
    });
    q.build().execute(conn).await?;
    Ok(())
}

/// Passes of each raw insert; the median is reported.
const RAW_PASSES: usize = 3;

/// Brings the database to rest before a measurement, so it does not pay for what came before
/// it (on Postgres the dirty pages of the previous step, on SQLite its write-ahead log): a
/// checkpoint. Best effort: a server that refuses (a role without the right) is measured as it
/// is.
async fn settle<C>(conn: &mut C, postgres: bool)
where
    for<'c> &'c mut C: sqlx::Executor<'c>,
{
    let statement = if postgres {
        "CHECKPOINT"
    } else {
        "PRAGMA wal_checkpoint(TRUNCATE)"
    };
    if let Err(e) = sqlx::raw_sql(statement).execute(&mut *conn).await {
        eprintln!("bench: {statement} refused ({e}); measuring without it");
    }
}

fn bulk_env(args: &BulkArgs, ops_per_sec: u32) -> Vec<(String, String)> {
    let mut env = vec![
        ("HUSH_BULK_OPS_PER_SEC".into(), ops_per_sec.to_string()),
        ("HUSH_BULK_CHUNK_SIZE".into(), args.chunk_size.to_string()),
    ];
    env.extend(
        args.workers
            .map(|n| ("HUSH_BULK_WORKERS".into(), n.to_string())),
    );
    env
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

/// One add and one remove of a person straight through the tenant, as membership-api makes
/// them for a join and a leave: what the tenant itself takes, without the public hops.
async fn tenant_add_remove(
    tenant: &TenantClient,
    group: GroupId,
    i: usize,
) -> anyhow::Result<[Duration; 2]> {
    let subject = Subject::parse(format!("bench-direct-{i}"))?;
    let email = Email::parse(format!("bench-direct-{i}@corp.example"))?;
    let add = AddMember {
        member: MemberRef {
            subject: Some(subject.clone()),
            email: Some(email.clone()),
            kind: Some(IdentityKind::Member),
        },
        label: Label::defaults().remove(0),
    };
    let t = Instant::now();
    tenant.add_member(group, &add).await?;
    let added = t.elapsed();
    let t = Instant::now();
    let who = IdentityRef {
        subject: Some(subject),
        email: Some(email),
    };
    tenant.remove_member(group, &who).await?;
    Ok([added, t.elapsed()])
}

/// `samples` join+leave pairs through membership-api, each followed by an add+remove pair
/// straight through the tenant (so both see the same moments of the job), each by a person
/// not seen before.
async fn latency(
    http: &reqwest::Client,
    membership: &str,
    people: &mut std::slice::Iter<'_, String>,
    group: &str,
    tenant: &TenantClient,
    samples: usize,
    offset: usize,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    let id = GroupId::parse(group)?;
    let mut api = Vec::new();
    let mut direct = Vec::new();
    for (i, p) in people.by_ref().take(samples).enumerate() {
        api.extend(join_leave(http, membership, p, group).await?);
        direct.extend(tenant_add_remove(tenant, id, offset + i).await?);
    }
    Ok((api, direct))
}

async fn run(
    backend: &'static str,
    exe: &Path,
    dbs: Databases,
    dir: &Path,
    args: &BulkArgs,
) -> anyhow::Result<Row> {
    let tenant_db = dbs.tenant.clone();
    // The OS writes out what the previous backend's run left dirty in its page cache now,
    // not during this run's measurements.
    if let Err(e) = std::process::Command::new("sync").status() {
        eprintln!("bench: sync: {e}");
    }
    let mut cluster = Cluster::start(
        exe,
        ClusterOptions {
            dir: dir.to_path_buf(),
            databases: dbs,
            bulk_replicas: 1,
            membership: true,
            membership_env: Vec::new(),
            bulk_env: bulk_env(args, 0),
            tenant_env: args
                .batch_concurrency
                .map(|n| ("HUSH_TENANT_BATCH_CONCURRENCY".into(), n.to_string()))
                .into_iter()
                .collect(),
            log: args.service_log.clone(),
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
        groups.push(group(&control, &owner, &format!("Bench {i}")).await?);
    }
    eprintln!("[{backend}] measuring a {}-op job", args.ops);
    let file = dir.join("job.ndjson");
    job_file(&file, &groups, "b", args.ops)?;
    if backend == "postgres" {
        settle(&mut sqlx::PgConnection::connect(&tenant_db).await?, true).await;
    } else {
        settle(
            &mut sqlx::SqliteConnection::connect(&tenant_db).await?,
            false,
        )
        .await;
    }
    let cpu_before = cpu_now(&cluster, backend == "postgres");
    let started = Instant::now();
    let (status, job) = op.submit_file(&file, &Submit::default()).await?;
    anyhow::ensure!(status.is_success(), "submit: {job}");
    let done = op
        .wait_polling(
            job["id"].as_str().context("job id")?,
            Duration::from_secs(3600),
            Duration::from_millis(10),
        )
        .await?;
    let job_rate = args.ops as f64 / started.elapsed().as_secs_f64();
    let cpu_per_op = cpu_now(&cluster, backend == "postgres")
        .into_iter()
        .zip(cpu_before)
        .map(|((s, after), (_, before))| (s, (after - before) * 1e6 / args.ops as f64))
        .collect();
    anyhow::ensure!(done["applied"].as_u64() == Some(args.ops as u64), "{done}");
    // Right after the job, on the database as the job left it.
    eprintln!("[{backend}] raw insert of {} rows", args.ops);
    let raw = raw_insert(&tenant_db, backend == "postgres", args.ops).await?;

    // The large job runs at bulk-api's configured rate, as it would in production.
    cluster.kill("bulk-api").await?;
    cluster.set_bulk_env(bulk_env(args, args.load_ops_per_sec));
    cluster.restart("bulk-api").await?;
    eprintln!(
        "[{backend}] a {}-op job for the latency measurement",
        args.load_ops
    );
    job_file(&file, &groups, "l", args.load_ops)?;
    let (status, job) = op.submit_file(&file, &Submit::default()).await?;
    anyhow::ensure!(status.is_success(), "submit: {job}");
    let load_id = job["id"].as_str().context("job id")?.to_string();
    // Idle and loaded samples alternate in rounds (the job paused, then running), so both
    // see the same database (its size, autovacuum) and the same machine at the same time:
    // what differs is only whether the job runs.
    eprintln!("[{backend}] join/leave latency, job paused and running, in rounds");
    let samples = args
        .samples
        .unwrap_or(if backend == "postgres" { 2500 } else { 500 });
    let per_round = samples.div_ceil(LATENCY_ROUNDS);
    let people: Vec<String> = (0..per_round * LATENCY_ROUNDS * 2 + 5)
        .map(|i| cluster.token(&format!("bench-person-{i}"), IdentityKind::Member, &[]))
        .collect();
    let mut people = people.iter();
    let target = group(&control, &owner, "Bench latency").await?;
    for p in people.by_ref().take(5) {
        join_leave(&http, &membership, p, &target).await?;
    }
    let tenant = cluster.tenant_as(ServiceName::MembershipApi)?;
    let (mut idle, mut tenant_idle, mut loaded, mut tenant_loaded) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut rounds = 0;
    'rounds: for round in 0..LATENCY_ROUNDS {
        for (phase, running) in [true, false].into_iter().enumerate() {
            // Running: give the workers a moment to be at it. Paused: the chunks in hand
            // finish first.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let (api, direct) = latency(
                &http,
                &membership,
                &mut people,
                &target,
                &tenant,
                per_round,
                (2 * round + phase) * per_round,
            )
            .await?;
            if running {
                let (paused, _) = op.steer(&load_id, "pause").await?;
                if !paused.is_success() {
                    // The job ended during this round: its samples may not all be under
                    // load, so they are left out.
                    eprintln!("[{backend}] the load job ended in round {}; stopping (give it more operations with --load-ops)", round + 1);
                    break 'rounds;
                }
                loaded.extend(api);
                tenant_loaded.extend(direct);
                rounds += 1;
            } else {
                idle.extend(api);
                tenant_idle.extend(direct);
                op.steer(&load_id, "resume").await?;
            }
        }
    }
    let (_, during) = op.job(&load_id).await?;
    let load_progress = during["applied"].as_u64().unwrap_or(0);
    // Measured: the rest of the job is not needed (it may have ended already).
    op.steer(&load_id, "cancel").await?;
    anyhow::ensure!(rounds > 0, "the load job ended before one round of latency samples did; give it more operations (--load-ops)");
    cluster.kill("bulk-api").await?;
    cluster.set_bulk_env(bulk_env(args, 0));
    cluster.restart("bulk-api").await?;

    let migration = if args.skip_migration {
        None
    } else {
        eprintln!(
            "[{backend}] migrating {} groups / {} people",
            args.export.groups, args.export.users
        );
        let export = dir.join("legacy.ndjson");
        let generated = gen_legacy(&GenLegacyArgs {
            shape: args.export,
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
    let rss = SERVICES
        .iter()
        .filter_map(|s| cluster.peak_rss_kib(s).map(|k| (s.to_string(), k)))
        .collect();
    cluster.stop().await;
    Ok(Row {
        backend,
        job_rate,
        raw,
        migration,
        idle: Percentiles::of(idle),
        loaded: Percentiles::of(loaded),
        tenant_idle: Percentiles::of(tenant_idle),
        tenant_loaded: Percentiles::of(tenant_loaded),
        load_progress,
        rounds,
        rss,
        cpu_per_op,
    })
}
