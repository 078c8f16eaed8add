//! Command-line parsing and dispatch of `hush-dev`.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Hush development tools: benchmarks and synthetic data. Not shipped in the image.
#[derive(Debug, Parser)]
#[command(name = "hush-dev", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Benchmarks that print a table (see the README for the figures).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Write a realistic synthetic legacy export (heavy-tailed group sizes).
    GenLegacy(crate::legacy::GenLegacyArgs),
    /// One service, exactly as `hush serve` runs it. The process cluster (benchmarks, tests)
    /// starts its services as processes of this binary, so it needs no other binary built.
    /// Boxed: the services' configurations are much larger than the other commands' options.
    #[command(subcommand, hide = true)]
    Serve(Box<hush::cli::ServeCommand>),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// "My groups" for one person in thousands of groups, through the API and in the tenant.
    MyGroups(crate::bench::MyGroupsArgs),
    /// Bulk jobs vs raw inserts, a legacy migration, join/leave latency beside a large job,
    /// and each service's peak memory.
    Bulk(crate::bench::BulkArgs),
    /// One message to a large group: time to the first copy, recipients/s, the tenant's peak
    /// memory.
    Mail(crate::bench::MailBenchArgs),
    /// Access decisions for apps (RFC 8693 token exchange) with 2,000 groups and 100,000
    /// identities at 1, 8 and 32 clients: rate and p50/p99 latency.
    Decisions(crate::bench::DecisionsArgs),
    /// Joins and leaves by distinct people on one open group at 1, 8 and 32 clients: rate,
    /// p50/p99 latency, each service's memory afterwards.
    Routine(crate::bench::RoutineArgs),
    /// The tenant's bytes on disk per person and per membership, every table and index, before
    /// and after people join and leave.
    Storage(crate::bench::StorageArgs),
}

/// Parses the process arguments and runs the command.
pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hush-dev: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::GenLegacy(args) => {
            let s = crate::legacy::gen_legacy(&args)?;
            println!(
                "wrote {}: {} groups, {} memberships, largest group {}",
                args.out.display(),
                s.groups,
                s.memberships,
                s.largest
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(cmd) => hush::cli::serve(*cmd).await,
        Command::Bench(BenchCommand::Bulk(args)) => {
            crate::bench::bulk(args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Mail(args)) => {
            crate::bench::mail(args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Routine(args)) => {
            crate::bench::routine(args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Storage(args)) => {
            crate::bench::storage(args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Decisions(args)) => {
            crate::bench::decisions(args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::MyGroups(args)) => {
            crate::bench::my_groups(args).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
