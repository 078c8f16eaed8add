//! Command-line parsing and dispatch. Each command is a few lines that call into a module.

use crate::deploy;
use crate::stack::{Stack, StackConfig};
use anyhow::Context as _;
use clap::{Parser, Subcommand};
use domain::IdentityKind;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Hush: a control plane for hidden-membership groups.
#[derive(Debug, Parser)]
#[command(name = "hush", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole stack in one process on embedded SQLite, with a dev issuer. For trying
    /// Hush out and for development; never for production.
    Up(UpArgs),
    /// Print a token from the dev issuer of `hush up` (same --data-dir).
    Token(TokenArgs),
    /// Run one service, configured from flags and HUSH_* environment variables (the container
    /// image's entry point).
    #[command(subcommand)]
    Serve(ServeCommand),
    /// Serve the front-end app and proxy /control, /membership and /bulk to the services: the
    /// one origin the browser talks to.
    Edge(crate::edge::EdgeConfig),
    /// Write the keys and secrets docker-compose needs under OUT/secrets (keeps existing ones).
    DeployInit(DeployInitArgs),
    /// Create each service's Postgres database and login role, migrate as the admin, and leave
    /// each role only reading and writing rows (the audit table: appending). Run before the
    /// services start, after every upgrade; safe to re-run.
    DbSetup(crate::dbsetup::DbSetupArgs),
    /// Operate the isolated tenant's data (run beside or instead of the tenant, same config).
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Check the isolated tenant's audit chain (`hush audit verify`).
    #[command(subcommand)]
    Audit(crate::audit::AuditCommand),
    /// Operate bulk jobs: submit (and follow), status, pause, resume, cancel.
    #[command(subcommand)]
    Bulk(crate::bulk::BulkCommand),
    /// Import a legacy export: groups through control-api, membership through bulk jobs.
    /// Resumable; ends with a summary.
    Migrate(crate::migrate::MigrateArgs),
    /// Print the completion script for SHELL (bash, zsh, fish, elvish, powershell), e.g.
    /// `hush completions bash > /etc/bash_completion.d/hush`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write man pages for hush and every subcommand (hush.1, hush-bulk-submit.1, …) into DIR,
    /// e.g. `hush man /usr/local/share/man/man1`.
    Man {
        /// The folder to write into (made if missing).
        dir: PathBuf,
    },
    /// Exit 0 when URL answers 2xx within 3 s (for container healthchecks; no curl needed).
    Healthcheck {
        /// The URL to GET, e.g. http://127.0.0.1:8080/readyz.
        url: String,
    },
}

#[derive(Debug, clap::Args)]
struct UpArgs {
    /// Where the SQLite databases, keys and the dev issuer's key live.
    #[arg(long, env = "HUSH_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// First port: control-api on N, membership-api N+1, bulk-api N+2, isolated-tenant N+3
    /// (loopback only), the tenant's SMTP listener N+4 (loopback only), the edge (the app)
    /// N+5, dev issuer N+6.
    #[arg(long, env = "HUSH_PORT_BASE", default_value_t = 8080)]
    port_base: u16,
    /// Address the public services and the app bind to. The tenant and the dev issuer always
    /// bind to 127.0.0.1. An address other than loopback is refused unless
    /// --expose-dev-sign-in is given too.
    #[arg(long, env = "HUSH_PUBLIC_HOST", default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// Allow a --host other than loopback. The app's dev sign-in then answers there: anyone who
    /// can reach it can sign in as anyone, with any role (label-admin, operator,
    /// privacy-officer), which is break-glass by one person. Only on a network that is yours
    /// alone; use `hush serve` with your IdP otherwise.
    #[arg(long, env = "HUSH_EXPOSE_DEV_SIGN_IN")]
    expose_dev_sign_in: bool,
    /// Mail domain of the groups' contact addresses.
    #[arg(
        long,
        env = "HUSH_MAIL_DOMAIN",
        default_value = "groups.hush.localhost"
    )]
    mail_domain: String,
    /// Do not start the tenant's SMTP listener (and its delivery to the Maildir sink).
    #[arg(long, env = "HUSH_NO_SMTP")]
    no_smtp: bool,
}

#[derive(Debug, clap::Args)]
struct TokenArgs {
    /// The subject (`sub`) of the token.
    #[arg(long)]
    sub: String,
    /// The e-mail address claim.
    #[arg(long)]
    email: Option<String>,
    /// The identity kind: member, guest or agent.
    #[arg(long, default_value = "member", value_parser = parse_kind)]
    kind: IdentityKind,
    /// A role (repeatable): label-admin, operator, auditor, privacy-officer.
    #[arg(long = "role")]
    roles: Vec<String>,
    /// The data dir of the `hush up` whose dev issuer signs the token.
    #[arg(long, env = "HUSH_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// Lifetime in minutes.
    #[arg(long, default_value_t = 60)]
    ttl_minutes: u64,
    /// The audience (`aud`).
    #[arg(long, default_value = "hush")]
    audience: String,
}

fn parse_kind(s: &str) -> Result<IdentityKind, String> {
    IdentityKind::parse(s).map_err(|e| e.to_string())
}

/// `hush serve <service>`; public so the development binary's process cluster starts services
/// with the same code.
#[derive(Debug, Subcommand)]
pub enum ServeCommand {
    /// The group and label catalog.
    ControlApi(control_api::Config),
    /// Routine membership: join, leave, my groups.
    MembershipApi(membership_api::Config),
    /// Bulk membership jobs.
    BulkApi(bulk_api::Config),
    /// The isolated tenant (internal only). Boxed: its configuration (mail, audit,
    /// break-glass) is much larger than the others'.
    IsolatedTenant(Box<isolated_tenant::Config>),
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    /// Re-seal every membership and identity row under the active seal key (the first in
    /// HUSH_TENANT_SEAL_KEYS), so an old key can then be removed. Safe to re-run and to run
    /// while the tenant serves; prints counts only.
    Reseal(Box<isolated_tenant::Config>),
}

#[derive(Debug, clap::Args)]
struct DeployInitArgs {
    /// The deploy folder (secrets go to OUT/secrets).
    #[arg(long, default_value = "deploy")]
    out: PathBuf,
}

/// Parses the process arguments and runs the command.
pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hush: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Up(args) => up(args).await,
        Command::Token(args) => {
            // Never a new key: tokens signed by one no running stack knows are refused by
            // every service, which is worse than saying so here.
            let issuer =
                auth::DevIssuer::load(&args.data_dir.join("dev-issuer"))?.with_context(|| {
                    format!(
                        "no dev issuer key under {}: `hush up` makes one there when it first \
                         starts; start the stack, or point --data-dir at the folder it uses",
                        args.data_dir.display()
                    )
                })?;
            let claims = auth::DevClaims {
                sub: domain::Subject::parse(args.sub)?.into_inner(),
                email: args
                    .email
                    .map(|e| domain::Email::parse(e).map(|e| e.to_string()))
                    .transpose()?,
                kind: args.kind,
                roles: args.roles,
            };
            let ttl = Duration::from_secs(args.ttl_minutes.saturating_mul(60));
            println!("{}", issuer.mint(&claims, &args.audience, ttl));
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(cmd) => serve(cmd).await,
        Command::Edge(cfg) => {
            service_kit::telemetry::init()?;
            if cfg.dev_mode {
                crate::edge::dev_sign_in_reach(cfg.listen.ip(), cfg.expose_dev_sign_in)?;
            }
            let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
            println!("Hush edge on http://{}/", listener.local_addr()?);
            crate::edge::run(cfg, listener, service_kit::shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::DeployInit(args) => {
            for line in deploy::init(&args.out)? {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::DbSetup(args) => {
            for line in crate::dbsetup::run(&args).await? {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Healthcheck { url } => Ok(healthcheck(&url).await),
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            use std::io::Write as _;
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "hush", &mut script);
            match std::io::stdout().write_all(&script) {
                // `hush completions bash | head` closes the pipe early: not a failure.
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                _ => Ok(ExitCode::SUCCESS),
            }
        }
        Command::Man { dir } => {
            use clap::CommandFactory as _;
            std::fs::create_dir_all(&dir).with_context(|| format!("making {}", dir.display()))?;
            clap_mangen::generate_to(Cli::command(), &dir)
                .with_context(|| format!("writing man pages into {}", dir.display()))?;
            println!("man pages written to {}", dir.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(cmd) => crate::audit::run(cmd).await,
        Command::Migrate(args) => {
            let s = crate::migrate::migrate(&args).await?;
            for r in &s.refusals {
                let what = match r.what {
                    crate::migrate::Refused::Group => "not imported",
                    crate::migrate::Refused::Owners => "owners not set",
                };
                println!("line {}: group {:?} {what}: {}", r.line, r.name, r.reason);
            }
            println!(
                "migrated in {:.1} s: {} groups created ({} already there, {} refused, their {} memberships not imported), {} memberships applied in {} jobs; rejected: {} by label, {} unknown identity, {} unknown group",
                s.seconds, s.groups_created, s.groups_existing, s.groups_refused,
                s.members_of_refused_groups, s.applied, s.jobs,
                s.label_refused, s.unknown_identity, s.unknown_group
            );
            if s.anything_refused() {
                eprintln!("some of the export was not imported (above); exit status 2");
            }
            Ok(ExitCode::from(s.exit_status()))
        }
        Command::Bulk(cmd) => Ok(if crate::bulk::run(cmd).await? {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }),
        Command::Tenant(TenantCommand::Reseal(cfg)) => {
            let report = isolated_tenant::reseal(&cfg).await?;
            println!(
                "re-sealed {} identities and {} memberships under the active key",
                report.identities, report.memberships
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    service_kit::telemetry::init()?;
    let mut cfg =
        StackConfig::for_up(&args.data_dir, args.host, args.port_base, &args.mail_domain)?;
    if args.no_smtp {
        cfg.mail = isolated_tenant::mail::MailArgs::default();
    }
    cfg.expose_dev_sign_in = args.expose_dev_sign_in;
    let smtp = cfg.mail.listen.map_or_else(
        || "off (--no-smtp)".to_string(),
        |a| {
            format!(
                "smtp://{a}  (copies: Maildir under {}/mail)",
                args.data_dir.display()
            )
        },
    );
    let stack = Stack::start(cfg).await?;
    let u = stack.urls();
    println!(
        "\nHush is up (SQLite under {dir}).\n\n  Open the app    {e}/   (pick a dev user to sign in)\n\n  control-api     {c}/control/v1/\n  membership-api  {m}/membership/v1/\n  bulk-api        {b}/bulk/v1/\n  isolated-tenant {t} (loopback only, service tokens only)\n  tenant SMTP     {smtp}\n  dev issuer      {i}/.well-known/jwks.json\n\nGet a token:  export TOKEN=$({exe} token --sub alice --email alice@corp.example{dd})\n              (add --kind guest|agent, --role label-admin|operator|auditor|privacy-officer)\nThen:         curl -H \"Authorization: Bearer $TOKEN\" {c}/control/v1/labels\n\nCtrl-C stops.",
        dir = args.data_dir.display(),
        // This very binary (debug or release, wherever it is), so the line works when copied.
        exe = std::env::current_exe().map_or_else(|_| "hush".to_string(), |p| p.display().to_string()),
        e = u.edge, c = u.control, m = u.membership, b = u.bulk, t = u.tenant, i = u.issuer,
        dd = if args.data_dir == std::path::Path::new("./data") { String::new() } else { format!(" --data-dir {}", args.data_dir.display()) },
    );
    service_kit::shutdown_signal().await;
    stack.stop().await?;
    Ok(ExitCode::SUCCESS)
}

/// Runs one service until SIGTERM or Ctrl-C.
pub async fn serve(cmd: ServeCommand) -> anyhow::Result<ExitCode> {
    service_kit::telemetry::init()?;
    let shutdown = service_kit::shutdown_signal();
    match cmd {
        ServeCommand::ControlApi(cfg) => {
            let l = tokio::net::TcpListener::bind(cfg.listen).await?;
            control_api::run(cfg, l, shutdown).await?;
        }
        ServeCommand::MembershipApi(cfg) => {
            let l = tokio::net::TcpListener::bind(cfg.listen).await?;
            membership_api::run(cfg, l, shutdown).await?;
        }
        ServeCommand::BulkApi(cfg) => {
            let l = tokio::net::TcpListener::bind(cfg.listen).await?;
            bulk_api::run(cfg, l, shutdown).await?;
        }
        ServeCommand::IsolatedTenant(cfg) => {
            let l = tokio::net::TcpListener::bind(cfg.listen).await?;
            isolated_tenant::run(*cfg, l, shutdown).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn healthcheck(url: &str) -> ExitCode {
    let Ok(client) = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
    else {
        return ExitCode::FAILURE;
    };
    match client.get(url).send().await {
        Ok(r) if r.status().is_success() => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}
