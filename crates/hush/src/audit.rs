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
    /// For an investigation, with the tenant's seal keys: print the pseudonyms under which one
    /// person (by subject and/or address) appears in the chain for one group. Reads only.
    Pseudonyms(PseudonymArgs),
}

/// What `hush audit pseudonyms` looks up.
#[derive(Debug, clap::Args)]
pub struct PseudonymArgs {
    /// The tenant's database; read only.
    #[arg(long, env = "HUSH_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// The tenant's seal keys file (HUSH_TENANT_SEAL_KEYS_FILE).
    #[arg(long, env = "HUSH_TENANT_SEAL_KEYS_FILE")]
    pub seal_keys_file: PathBuf,
    /// The group.
    #[arg(long)]
    pub group: String,
    /// The person's subject.
    #[arg(long)]
    pub subject: Option<String>,
    /// The person's address.
    #[arg(long)]
    pub email: Option<String>,
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
        AuditCommand::Pseudonyms(args) => pseudonyms_cmd(&args).await,
    }
}

async fn pseudonyms_cmd(args: &PseudonymArgs) -> anyhow::Result<ExitCode> {
    // Wiped from memory when dropped.
    let text = isolated_tenant::Redacted::new(std::fs::read_to_string(&args.seal_keys_file)?);
    let keys = isolated_tenant::SealKeys::parse(text.expose())?;
    let group = domain::GroupId::parse(&args.group)?;
    let subject = args
        .subject
        .clone()
        .map(domain::Subject::parse)
        .transpose()?;
    let email = args.email.clone().map(domain::Email::parse).transpose()?;
    anyhow::ensure!(
        subject.is_some() || email.is_some(),
        "name the person by --subject, --email or both"
    );
    let db = Db::open(&args.database_url).await?;
    let found = isolated_tenant::audit::lookup::pseudonyms(
        &db,
        &keys,
        group,
        subject.as_ref(),
        email.as_ref(),
    )
    .await?;
    for p in &found.member {
        println!("subject  {p}");
    }
    for p in &found.person {
        println!("actor    {p}");
    }
    if found.member.is_empty() && found.person.is_empty() {
        println!("no identity with this subject or address (an offboarded one is gone)");
    }
    Ok(ExitCode::SUCCESS)
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
