//! `hush-dev bench storage`: the tenant's bytes on disk (issue 17, item 6). People join open
//! groups through membership-api, as in `bench routine` (each with their own token; membership-api
//! asks control-api for the group and the tenant writes), then more people each join one group
//! and leave it again ("churn"), the case where the tenant's SQLite file reached 156 MB after
//! about 93,000 people. After each phase: the database's files (SQLite: the main file, `-wal`
//! and `-shm`, and the log's peak size during the phase; Postgres: the database's size and the
//! WAL the phase wrote, server-wide), and every table and index with its rows (SQLite's `dbstat`,
//! Postgres's relation sizes, TOAST apart). SQLite's files are measured 8 s after a phase.

use crate::cluster::{Cluster, ClusterOptions};
use anyhow::Context as _;
use domain::IdentityKind;
use hush::groups::GroupsClient;
use hush::stack::Databases;
use sqlx::Row as _;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// Options of `hush-dev bench storage`.
#[derive(Debug, Clone, clap::Args)]
pub struct StorageArgs {
    /// People who join and stay.
    #[arg(long, default_value_t = 20_000)]
    pub people: usize,
    /// Groups each of them joins (at most `--groups`).
    #[arg(long, default_value_t = 2)]
    pub memberships: usize,
    /// Open groups, provisioned through control-api.
    #[arg(long, default_value_t = 20)]
    pub groups: usize,
    /// People who then each join one group and leave it again.
    #[arg(long, default_value_t = 30_000)]
    pub churn: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
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

/// One table, index or TOAST relation of the tenant's database.
#[derive(Debug, Clone)]
struct Object {
    /// `table`, `index` or `toast`.
    kind: &'static str,
    /// The table it belongs to (itself for a table).
    table: String,
    bytes: u64,
    /// Bytes in its pages that hold nothing (SQLite only: `dbstat.unused`).
    unused: Option<u64>,
}

/// What the tenant's database holds and takes on disk at one moment.
struct Snapshot {
    when: &'static str,
    /// Rows per table.
    rows: BTreeMap<String, u64>,
    /// Every table and index, by name.
    objects: BTreeMap<String, Object>,
    /// The database's files: name and bytes (SQLite: main, -wal, -shm; Postgres: the whole
    /// database as `pg_database_size` counts it).
    files: Vec<(&'static str, u64)>,
    /// Pages on SQLite's free list, and its page size.
    free_pages: Option<(u64, u64)>,
    /// SQLite: the `-wal` file's largest size during the phase. Postgres: WAL bytes the server
    /// wrote during the phase (every database on it).
    log: u64,
    /// Dead tuples per table (Postgres's statistics, which lag by a moment).
    dead: BTreeMap<String, u64>,
    took: Duration,
}

impl Snapshot {
    fn on_disk(&self) -> u64 {
        self.files.iter().map(|(_, b)| b).sum()
    }

    fn rows_of(&self, table: &str) -> u64 {
        self.rows.get(table).copied().unwrap_or_default()
    }

    /// Bytes of `table` with its indexes and TOAST.
    fn table_total(&self, table: &str) -> u64 {
        self.objects
            .values()
            .filter(|o| o.table == table)
            .map(|o| o.bytes)
            .sum()
    }
}

struct Report {
    backend: &'static str,
    snapshots: Vec<Snapshot>,
    churn: usize,
}

/// Runs the benchmark and prints its tables.
pub async fn storage(args: StorageArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.people > 0
            && args.groups > 0
            && args.clients > 0
            && (1..=args.groups).contains(&args.memberships),
        "--people, --groups and --clients must be positive, and --memberships between 1 and --groups"
    );
    let exe = std::env::current_exe()?;
    let reports = super::on_each_backend(
        !args.skip_sqlite,
        args.postgres_url.as_deref(),
        async |backend, dbs, dir| run(backend, &exe, dbs, dir, &args).await,
    )
    .await?;
    print(&reports, &args);
    Ok(())
}

/// How long after a phase SQLite's files are measured.
const SETTLE: Duration = Duration::from_secs(8);

/// Tables and indexes smaller than this, before and after, share one line of the breakdown.
const SMALL: u64 = 100_000;

fn mb(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}

fn per(bytes: u64, n: u64) -> String {
    if n == 0 {
        "—".into()
    } else {
        format!("{:.0}", bytes as f64 / n as f64)
    }
}

fn print(reports: &[Report], args: &StorageArgs) {
    println!(
        "\nstorage: the tenant's database. {} people join {} of {} open groups each through \
         membership-api (\"load\"), then {} more people each join one group and leave it \
         (\"churn\"); {} clients\n",
        args.people, args.memberships, args.groups, args.churn, args.clients
    );
    println!("| backend | after | took | people known | memberships | audit events | on disk | files | log | free pages | bytes/person | bytes/membership |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in reports {
        for s in &r.snapshots {
            let files = s
                .files
                .iter()
                .map(|(n, b)| format!("{n} {}", mb(*b)))
                .collect::<Vec<_>>()
                .join(", ");
            let log = if r.backend == "sqlite" {
                format!("-wal peak {}", mb(s.log))
            } else {
                format!("{} written", mb(s.log))
            };
            let free = s
                .free_pages
                .map_or("—".into(), |(n, size)| format!("{n} ({})", mb(n * size)));
            let people = s.rows_of("identities");
            let members = s.rows_of("memberships");
            println!(
                "| {} | {} | {:.0} s | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.backend,
                s.when,
                s.took.as_secs_f64(),
                people,
                members,
                s.rows_of("audit_events"),
                mb(s.on_disk()),
                files,
                log,
                free,
                per(s.on_disk(), people),
                per(s.table_total("memberships"), members),
            );
        }
    }
    for r in reports {
        let [load, churn] = &r.snapshots[..] else {
            continue;
        };
        println!(
            "\n{}: every table and index (bytes; TOAST and free-space maps with their table on \
             Postgres), after load and after churn\n",
            r.backend
        );
        println!("| object | kind | table | after load | rows | per row | after churn | rows | per row | growth per churned person |");
        println!("|---|---|---|---|---|---|---|---|---|---|");
        let mut names: Vec<&String> = load.objects.keys().chain(churn.objects.keys()).collect();
        names.sort_by_key(|n| {
            let o = churn.objects.get(*n).or_else(|| load.objects.get(*n));
            (std::cmp::Reverse(o.map_or(0, |o| o.bytes)), (*n).clone())
        });
        names.dedup();
        // Objects under SMALL bytes before and after, summed on one line.
        let mut rest = (0u64, 0u64, 0usize);
        for name in names {
            let (Some(a), b) = (
                load.objects.get(name).or_else(|| churn.objects.get(name)),
                churn.objects.get(name),
            ) else {
                continue;
            };
            let before = load.objects.get(name).map_or(0, |o| o.bytes);
            let after = b.map_or(0, |o| o.bytes);
            if before.max(after) < SMALL {
                rest.0 += before;
                rest.1 += after;
                rest.2 += 1;
                continue;
            }
            let (ra, rb) = (load.rows_of(&a.table), churn.rows_of(&a.table));
            let unused = |o: Option<&Object>| {
                o.and_then(|o| o.unused)
                    .filter(|u| *u > 0)
                    .map_or(String::new(), |u| format!(" ({} unused)", mb(u)))
            };
            let growth = if r.churn == 0 {
                "—".into()
            } else {
                format!("{:.0}", (after as f64 - before as f64) / r.churn as f64)
            };
            println!(
                "| {name} | {} | {} | {}{} | {ra} | {} | {}{} | {rb} | {} | {growth} |",
                a.kind,
                a.table,
                mb(before),
                unused(load.objects.get(name)),
                per(before, ra),
                mb(after),
                unused(b),
                per(after, rb),
            );
        }
        if rest.2 > 0 {
            println!(
                "| {} others, each under {} | | | {} | | | {} | | | |",
                rest.2,
                mb(SMALL),
                mb(rest.0),
                mb(rest.1)
            );
        }
        if !churn.dead.is_empty() {
            let dead = churn
                .dead
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(t, n)| format!("{t} {n}"))
                .collect::<Vec<_>>()
                .join(", ");
            println!("\n{}: dead tuples after churn: {dead}", r.backend);
        }
        if r.churn > 0 {
            println!(
                "\n{}: on disk grew {} over {} churned people: {} bytes each",
                r.backend,
                mb(churn.on_disk().saturating_sub(load.on_disk())),
                r.churn,
                per(
                    churn.on_disk().saturating_sub(load.on_disk()),
                    r.churn as u64
                )
            );
        }
    }
}

/// Where the tenant's database is, and how to measure it.
enum Store {
    Sqlite { file: PathBuf, url: String },
    Postgres { pool: sqlx::PgPool },
}

async fn run(
    backend: &'static str,
    exe: &Path,
    dbs: Databases,
    dir: &Path,
    args: &StorageArgs,
) -> anyhow::Result<Report> {
    let store = if backend == "sqlite" {
        let file = PathBuf::from(
            dbs.tenant
                .strip_prefix("sqlite://")
                .context("a SQLite URL")?,
        );
        Store::Sqlite {
            file,
            url: dbs.tenant.clone(),
        }
    } else {
        Store::Postgres {
            pool: sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(&dbs.tenant)
                .await
                .context("connecting to the tenant's database")?,
        }
    };
    let cluster = Cluster::start(exe, ClusterOptions::routine(dir, dbs, &args.service_log)).await?;
    let owner = cluster.token("bench-owner", IdentityKind::Member, &[]);
    let control = GroupsClient::new(&cluster.url("control-api"), &owner)?;
    let mut groups = Vec::with_capacity(args.groups);
    for i in 0..args.groups {
        let g = control
            .create_active(&format!("Storage bench {i}"), "General", "open")
            .await?;
        groups.push(g["id"].as_str().context("group id")?.to_string());
    }
    let groups = Arc::new(groups);
    let membership = cluster.url("membership-api");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(64)
        .build()?;

    // Load: person i joins groups i, i+1, … (mod the group count); everyone's first join, then
    // everyone's second, so no person's two joins race each other (which makes Postgres roll one
    // back and retry it, leaving dead tuples a real load would not).
    eprintln!(
        "[{backend}] minting {} people's tokens; {} joins",
        args.people,
        args.people * args.memberships
    );
    let tokens = mint(&cluster, "storage", args.people);
    let ops: Vec<Op> = (0..args.memberships)
        .flat_map(|k| {
            (0..args.people).map(move |p| Op {
                person: p,
                group: (p + k) % args.groups,
                leave_after: false,
            })
        })
        .collect();
    let mut snapshots = Vec::new();
    let wal = WalWatch::start(&store);
    let lsn = wal_lsn(&store).await?;
    let started = Instant::now();
    drive(&http, &membership, &groups, &tokens, ops, args.clients).await?;
    let took = started.elapsed();
    snapshots.push(measure(&store, "load", took, wal.peak(), lsn).await?);

    // Churn: each person joins one group, then leaves it.
    eprintln!(
        "[{backend}] minting {} more people's tokens; each joins a group and leaves it",
        args.churn
    );
    let tokens = mint(&cluster, "churn", args.churn);
    let ops: Vec<Op> = (0..args.churn)
        .map(|p| Op {
            person: p,
            group: p % args.groups,
            leave_after: true,
        })
        .collect();
    wal.reset();
    let lsn = wal_lsn(&store).await?;
    let started = Instant::now();
    drive(&http, &membership, &groups, &tokens, ops, args.clients).await?;
    let took = started.elapsed();
    snapshots.push(measure(&store, "churn", took, wal.peak(), lsn).await?);
    wal.stop();
    cluster.stop().await;
    if let Store::Postgres { pool } = store {
        pool.close().await;
    }
    Ok(Report {
        backend,
        snapshots,
        churn: args.churn,
    })
}

/// Tokens for `n` people named `{prefix}-{i}`, minted on every core.
fn mint(cluster: &Cluster, prefix: &str, n: usize) -> Arc<Vec<String>> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per_thread = n.div_ceil(threads).max(1);
    let mut out = Vec::with_capacity(n);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .step_by(per_thread)
            .map(|from| {
                s.spawn(move || {
                    (from..(from + per_thread).min(n))
                        .map(|i| cluster.token(&format!("{prefix}-{i}"), IdentityKind::Member, &[]))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            out.extend(h.join().expect("minting does not panic"));
        }
    });
    Arc::new(out)
}

/// One person's join (and leave, for churn) of one group.
#[derive(Clone, Copy)]
struct Op {
    person: usize,
    group: usize,
    leave_after: bool,
}

/// Runs every op, `clients` at a time; fails on any answer but success.
async fn drive(
    http: &reqwest::Client,
    membership: &str,
    groups: &Arc<Vec<String>>,
    tokens: &Arc<Vec<String>>,
    ops: Vec<Op>,
    clients: usize,
) -> anyhow::Result<()> {
    let ops = Arc::new(ops);
    let next = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    for _ in 0..clients {
        let (http, groups, tokens, ops, next) = (
            http.clone(),
            groups.clone(),
            tokens.clone(),
            ops.clone(),
            next.clone(),
        );
        let base = membership.to_string();
        set.spawn(async move {
            loop {
                let Some(op) = ops.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    return anyhow::Ok(());
                };
                let token = &tokens[op.person];
                let group = &groups[op.group];
                let actions: &[&str] = if op.leave_after {
                    &["join", "leave"]
                } else {
                    &["join"]
                };
                for action in actions {
                    let url = format!("{base}/membership/v1/groups/{group}/{action}");
                    let res = http.post(&url).bearer_auth(token).send().await?;
                    let status = res.status();
                    anyhow::ensure!(
                        status.is_success(),
                        "{status} on a {action}: {}",
                        res.text().await.unwrap_or_default()
                    );
                    res.bytes().await?;
                }
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(())
}

/// On SQLite, the `-wal` file's largest size, sampled every 20 ms in a task of its own.
struct WalWatch {
    peak: Arc<AtomicU64>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl WalWatch {
    fn start(store: &Store) -> Self {
        let peak = Arc::new(AtomicU64::new(0));
        let task = match store {
            Store::Sqlite { file, .. } => {
                let (wal, peak) = (suffixed(file, "-wal"), peak.clone());
                Some(tokio::spawn(async move {
                    loop {
                        if let Ok(m) = tokio::fs::metadata(&wal).await {
                            peak.fetch_max(m.len(), Ordering::Relaxed);
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }))
            }
            Store::Postgres { .. } => None,
        };
        Self { peak, task }
    }

    fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    fn reset(&self) {
        self.peak.store(0, Ordering::Relaxed);
    }

    fn stop(self) {
        if let Some(t) = self.task {
            t.abort();
        }
    }
}

fn suffixed(file: &Path, suffix: &str) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Postgres: the server's current WAL position, in bytes.
async fn wal_lsn(store: &Store) -> anyhow::Result<i64> {
    match store {
        Store::Sqlite { .. } => Ok(0),
        Store::Postgres { pool } => Ok(sqlx::query_scalar(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint",
        )
        .fetch_one(pool)
        .await?),
    }
}

async fn measure(
    store: &Store,
    when: &'static str,
    took: Duration,
    wal_peak: u64,
    lsn_before: i64,
) -> anyhow::Result<Snapshot> {
    match store {
        Store::Sqlite { file, url } => {
            // As a file-level copy would find it a little after a burst: the pools copy the log
            // every 500 ms, and the tenant truncates a log idle for 5 s.
            tokio::time::sleep(SETTLE).await;
            let size =
                |suffix: &str| std::fs::metadata(suffixed(file, suffix)).map_or(0, |m| m.len());
            let files = vec![
                ("main", size("")),
                ("-wal", size("-wal")),
                ("-shm", size("-shm")),
            ];
            let (rows, objects, free_pages) = sqlite_objects(url).await?;
            Ok(Snapshot {
                when,
                rows,
                objects,
                files,
                free_pages: Some(free_pages),
                log: wal_peak,
                dead: BTreeMap::new(),
                took,
            })
        }
        Store::Postgres { pool } => {
            let log = u64::try_from(wal_lsn(store).await? - lsn_before).unwrap_or_default();
            // Statistics (dead tuples) reach the views with a delay.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let (rows, objects, dead, total) = postgres_objects(pool).await?;
            Ok(Snapshot {
                when,
                rows,
                objects,
                files: vec![("database", total)],
                free_pages: None,
                log,
                dead,
                took,
            })
        }
    }
}

type Rows = BTreeMap<String, u64>;
type Objects = BTreeMap<String, Object>;

/// SQLite: rows per table, every b-tree's bytes (`dbstat`), and the free list. Read on a
/// read-only connection of its own while the tenant runs.
async fn sqlite_objects(url: &str) -> anyhow::Result<(Rows, Objects, (u64, u64))> {
    use sqlx::Connection as _;
    let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url)?.read_only(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&opts).await?;
    let schema = sqlx::query(
        "SELECT name, type, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')",
    )
    .fetch_all(&mut conn)
    .await?;
    let mut rows = BTreeMap::new();
    let mut kinds = BTreeMap::new();
    for r in &schema {
        let (name, kind, table): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        if kind == "table" {
            let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM \"{name}\""))
                .fetch_one(&mut conn)
                .await?;
            rows.insert(name.clone(), n as u64);
        }
        kinds.insert(
            name,
            (if kind == "table" { "table" } else { "index" }, table),
        );
    }
    // dbstat is compiled into the SQLite that sqlx bundles (SQLITE_ENABLE_DBSTAT_VTAB).
    let stat = sqlx::query("SELECT name, SUM(pgsize), SUM(unused) FROM dbstat GROUP BY name")
        .fetch_all(&mut conn)
        .await
        .context("reading dbstat (is the dbstat virtual table compiled in?)")?;
    let mut objects = BTreeMap::new();
    for r in &stat {
        let name: String = r.get(0);
        let (kind, table) = kinds.get(&name).cloned().unwrap_or(("table", name.clone()));
        objects.insert(
            name,
            Object {
                kind,
                table,
                bytes: r.get::<i64, _>(1) as u64,
                unused: Some(r.get::<i64, _>(2) as u64),
            },
        );
    }
    let free: i64 = sqlx::query_scalar("PRAGMA freelist_count")
        .fetch_one(&mut conn)
        .await?;
    let page: i64 = sqlx::query_scalar("PRAGMA page_size")
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    Ok((rows, objects, (free as u64, page as u64)))
}

/// Postgres: rows per table, each table's heap, TOAST (with its index) and maps, each index,
/// dead tuples, and the database's size.
async fn postgres_objects(pool: &sqlx::PgPool) -> anyhow::Result<(Rows, Objects, Rows, u64)> {
    let tables = sqlx::query(
        "SELECT c.relname, \
                COALESCE(pg_total_relation_size(NULLIF(c.reltoastrelid, 0)), 0), \
                pg_table_size(c.oid), COALESCE(s.n_dead_tup, 0) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid \
         WHERE n.nspname = 'public' AND c.relkind = 'r'",
    )
    .fetch_all(pool)
    .await?;
    let mut rows = BTreeMap::new();
    let mut objects = BTreeMap::new();
    let mut dead = BTreeMap::new();
    for r in &tables {
        let name: String = r.get(0);
        let (toast, table_size): (i64, i64) = (r.get(1), r.get(2));
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM \"{name}\""))
            .fetch_one(pool)
            .await?;
        rows.insert(name.clone(), n as u64);
        dead.insert(name.clone(), r.get::<i64, _>(3) as u64);
        objects.insert(
            name.clone(),
            Object {
                kind: "table",
                table: name.clone(),
                // The heap with its free-space and visibility maps.
                bytes: (table_size - toast) as u64,
                unused: None,
            },
        );
        if toast > 0 {
            objects.insert(
                format!("{name} (TOAST)"),
                Object {
                    kind: "toast",
                    table: name.clone(),
                    bytes: toast as u64,
                    unused: None,
                },
            );
        }
    }
    let indexes = sqlx::query(
        "SELECT c.relname, t.relname, pg_relation_size(c.oid) \
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace \
         WHERE n.nspname = 'public'",
    )
    .fetch_all(pool)
    .await?;
    for r in &indexes {
        objects.insert(
            r.get(0),
            Object {
                kind: "index",
                table: r.get(1),
                bytes: r.get::<i64, _>(2) as u64,
                unused: None,
            },
        );
    }
    let total: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
        .fetch_one(pool)
        .await?;
    Ok((rows, objects, dead, total as u64))
}
