//! `hush audit …`: checking the isolated tenant's audit chain.
//!
//! `hush audit verify` reads the chain straight from the tenant's database (it never migrates
//! or writes it), recomputes every hash, checks sequence continuity and links, checks every
//! signed checkpoint, and prints the findings in sequence order, the first being where the
//! chain was first broken. Exit status: 0 when the chain holds, 2 when it does not, 1 when it
//! could not be checked (no database, unreadable files).

use clap::Subcommand;
use isolated_tenant::audit::{checkpoint, verify, Db};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit status when the chain is broken.
pub const BROKEN: u8 = 2;

/// `hush audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the tenant's audit chain against the signed checkpoints and report the first
    /// missing, altered or reordered event (exit 2 on any break).
    Verify(VerifyArgs),
}

/// What `hush audit verify` checks.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The tenant's database (`postgres://…` or `sqlite://…`); read only.
    #[arg(long, env = "HUSH_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// The checkpoint file the tenant writes (HUSH_AUDIT_CHECKPOINTS_FILE); best a copy kept
    /// away from the database's administrators.
    #[arg(long)]
    pub checkpoints: PathBuf,
    /// The checkpoint signing key's public half (`audit-signing.key.pub`).
    #[arg(long)]
    pub public_key: PathBuf,
    /// Accept an empty checkpoint file (a chain never checkpointed); otherwise an empty or
    /// missing file is a failure, since a rewrite of the whole table could not be caught.
    #[arg(long)]
    pub allow_no_checkpoints: bool,
}

/// Runs `hush audit …`.
pub async fn run(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Verify(args) => verify_cmd(&args).await,
    }
}

async fn verify_cmd(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let key = checkpoint::load_public_key(&args.public_key)?;
    let checkpoints = checkpoint::read_file(&args.checkpoints)?;
    if checkpoints.is_empty() && !args.allow_no_checkpoints {
        anyhow::bail!(
            "{}: no checkpoints; without one a rewrite of the whole table cannot be caught \
             (pass --allow-no-checkpoints to check the links alone)",
            args.checkpoints.display()
        );
    }
    let db = Db::open(&args.database_url).await?;
    let report = verify::verify(&db, &checkpoints, &key).await?;
    let head = report
        .head
        .as_ref()
        .map_or("empty".to_string(), |(seq, hash)| format!("{seq} ({hash})"));
    println!(
        "{} events, {} checkpoints, last event {head}",
        report.events, report.checkpoints
    );
    if report.ok() {
        println!("chain OK");
        return Ok(ExitCode::SUCCESS);
    }
    for f in &report.findings {
        println!("BROKEN: {f}");
    }
    if let Some(first) = report.first() {
        eprintln!("hush: the audit chain is broken; first at: {first}");
    }
    Ok(ExitCode::from(BROKEN))
}
