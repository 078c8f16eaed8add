//! `hush-dev bench mail`: one message to a large group, from SMTP in to the last copy handed to a
//! loopback relay. The tenant runs as its own `hush-dev serve` process (so its peak RSS is its own)
//! with its SMTP listener on; the relay is a minimal SMTP sink in this process that counts
//! envelope recipients. Members are seeded straight into the tenant's database, rows exactly
//! as adds by address write them.

use crate::cluster::{Cluster, ClusterOptions};
use anyhow::Context as _;
use domain::{Email, GroupId, GroupName};
use hush::stack::Databases;
use isolated_tenant::mail::client::{Connection, Sent, Transaction};
use isolated_tenant::SealKeys;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tenant_api::ProvisionGroup;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Options of `hush-dev bench mail`.
#[derive(Debug, Clone, clap::Args)]
pub struct MailBenchArgs {
    /// Members of the group the message goes to.
    #[arg(long, default_value_t = 50_000)]
    pub members: usize,
    /// Members per relay transaction (HUSH_MAIL_BATCH_RECIPIENTS).
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Delivery workers in the tenant (HUSH_MAIL_DELIVERY_WORKERS).
    #[arg(long, default_value_t = 8)]
    pub workers: usize,
    /// Also run on this Postgres server (an admin URL; databases are created and dropped).
    #[arg(long, env = "HUSH_BENCH_POSTGRES_URL")]
    pub postgres_url: Option<String>,
}

struct Row {
    backend: &'static str,
    seed: Duration,
    accepted: Duration,
    first: Duration,
    all: Duration,
    rss_kib: Option<u64>,
}

/// Runs the mail benchmark and prints its table.
pub async fn mail(args: MailBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.members > 0, "--members must be positive");
    let exe = std::env::current_exe()?;
    let rows = super::on_each_backend(
        true,
        args.postgres_url.as_deref(),
        async |backend, dbs, dir| run(backend, &exe, dbs, dir, &args).await,
    )
    .await?;
    println!(
        "\nmail: one message to a {}-member group, SMTP in → expanded → handed to a loopback SMTP relay ({} members per relay transaction, {} workers)\n",
        args.members, args.batch, args.workers
    );
    println!("| backend | seed members | 250 after DATA | first delivery | all delivered | recipients/s | tenant peak RSS (MiB) |");
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.1} s | {:.0} ms | {:.0} ms | {:.2} s | {:.0} | {} |",
            r.backend,
            r.seed.as_secs_f64(),
            r.accepted.as_secs_f64() * 1000.0,
            r.first.as_secs_f64() * 1000.0,
            r.all.as_secs_f64(),
            args.members as f64 / r.all.as_secs_f64(),
            r.rss_kib
                .map_or("n/a".into(), |k| format!("{:.0}", k as f64 / 1024.0)),
        );
    }
    Ok(())
}

async fn run(
    backend: &'static str,
    exe: &Path,
    dbs: Databases,
    dir: &Path,
    args: &MailBenchArgs,
) -> anyhow::Result<Row> {
    let sink = Sink::start().await?;
    let smtp_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let smtp: std::net::SocketAddr = ([127, 0, 0, 1], smtp_port).into();
    let tenant_db = dbs.tenant.clone();
    let cluster = Cluster::start(
        exe,
        ClusterOptions {
            dir: dir.to_path_buf(),
            databases: dbs,
            bulk_replicas: 1,
            membership: false,
            membership_env: Vec::new(),
            bulk_env: vec![],
            tenant_env: vec![
                ("HUSH_MAIL_LISTEN".into(), smtp.to_string()),
                ("HUSH_MAIL_RELAY".into(), format!("smtp://{}", sink.addr)),
                ("HUSH_MAIL_BATCH_RECIPIENTS".into(), args.batch.to_string()),
                (
                    "HUSH_MAIL_DELIVERY_WORKERS".into(),
                    args.workers.to_string(),
                ),
            ],
            log: "error".into(),
        },
    )
    .await?;

    // Seed the group straight into the tenant's database.
    let keys = Arc::new(SealKeys::parse(&std::fs::read_to_string(
        dir.join("keys/tenant-seal.keys"),
    )?)?);
    let store =
        isolated_tenant::store::connect(&tenant_db, 2, keys.clone(), Default::default()).await?;
    let group = GroupId::new();
    // The bench seeds as the tenant itself, outside any request.
    let context = isolated_tenant::audit::Context::tenant();
    store
        .provision_group(
            &context,
            &ProvisionGroup {
                group_id: group,
                address: Email::parse("bench@groups.test.example")?,
                display_name: GroupName::parse("Bench group")?,
                sender_policy: None,
                anonymous_posting: false,
                owners: vec![],
                label: None,
            },
        )
        .await?;
    let seed_start = Instant::now();
    let members: Vec<Email> = (0..args.members)
        .map(|i| Email::parse(format!("member{i:07}@corp.example")))
        .collect::<Result<_, _>>()?;
    // Through the tenant's set-based batch path, as a bulk job would: label checked, audited.
    let general = domain::Label::defaults()
        .into_iter()
        .find(|l| l.name.as_str() == "General")
        .context("the General label")?;
    for chunk in members.chunks(10_000) {
        let batch = tenant_api::ApplyBatch::add_all(group, general.clone(), chunk);
        store.apply_batch(&context, &batch).await?;
    }
    let seed = seed_start.elapsed();
    drop(store);

    let message = b"From: Alice <alice@corp.example>\r\nTo: bench@groups.test.example\r\nSubject: Benchmark\r\n\r\nHello, everyone.\r\n".to_vec();
    let start = Instant::now();
    let mut conn = Connection::open(smtp, "bench.localhost", Duration::from_secs(60)).await?;
    let rcpts = vec!["bench@groups.test.example".to_string()];
    let sent = conn
        .send(&Transaction {
            from: "alice@corp.example",
            rcpts: &rcpts,
            data: &message,
            eightbit: false,
            smtputf8: false,
        })
        .await?;
    let accepted = start.elapsed();
    anyhow::ensure!(
        matches!(&sent, Sent::Done { retry, rejected } if retry.is_empty() && rejected.is_empty()),
        "the tenant refused the message: {sent:?}"
    );
    conn.quit().await;
    let deadline = start + Duration::from_secs(600);
    while sink.recipients.load(Ordering::Relaxed) < args.members as u64 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {} copies arrived",
            sink.recipients.load(Ordering::Relaxed),
            args.members
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let all = start.elapsed();
    let first = sink
        .first
        .lock()
        .expect("sink lock")
        .map_or(all, |t| t.duration_since(start));
    let rss_kib = cluster.peak_rss_kib("isolated-tenant");
    cluster.stop().await;
    Ok(Row {
        backend,
        seed,
        accepted,
        first,
        all,
        rss_kib,
    })
}

/// A loopback SMTP relay that accepts everything and counts recipients of completed messages.
struct Sink {
    addr: std::net::SocketAddr,
    recipients: Arc<AtomicU64>,
    first: Arc<Mutex<Option<Instant>>>,
}

impl Sink {
    async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let recipients = Arc::new(AtomicU64::new(0));
        let first = Arc::new(Mutex::new(None));
        let (r, f) = (recipients.clone(), first.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (r, f) = (r.clone(), f.clone());
                tokio::spawn(async move {
                    let _ = Self::session(stream, &r, &f).await;
                });
            }
        });
        Ok(Self {
            addr,
            recipients,
            first,
        })
    }

    async fn session(
        stream: tokio::net::TcpStream,
        count: &AtomicU64,
        first: &Mutex<Option<Instant>>,
    ) -> std::io::Result<()> {
        let (r, mut w) = stream.into_split();
        let mut r = BufReader::new(r);
        w.write_all(b"220 sink ESMTP\r\n").await?;
        let mut rcpts = 0u64;
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
            let reply: &[u8] = match verb.as_str() {
                "EHLO" => b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
                "MAIL" => {
                    rcpts = 0;
                    b"250 OK\r\n"
                }
                "RCPT" => {
                    rcpts += 1;
                    b"250 OK\r\n"
                }
                "DATA" => {
                    w.write_all(b"354 go\r\n").await?;
                    loop {
                        line.clear();
                        if r.read_line(&mut line).await? == 0 {
                            return Ok(());
                        }
                        if line == ".\r\n" {
                            break;
                        }
                    }
                    first
                        .lock()
                        .expect("sink lock")
                        .get_or_insert_with(Instant::now);
                    count.fetch_add(rcpts, Ordering::Relaxed);
                    b"250 OK\r\n"
                }
                "QUIT" => {
                    w.write_all(b"221 bye\r\n").await?;
                    return Ok(());
                }
                _ => b"250 OK\r\n",
            };
            w.write_all(reply).await?;
        }
    }
}
