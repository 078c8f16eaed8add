//! Runs membership-api: `cargo run -p membership-api -- --help` lists the flags and their
//! `HUSH_*` environment variables.

use clap::Parser as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = membership_api::Config::parse();
    service_kit::telemetry::init()?;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    membership_api::run(config, listener, service_kit::shutdown_signal()).await
}
