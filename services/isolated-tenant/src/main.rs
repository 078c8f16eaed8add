//! Runs the isolated tenant: `cargo run -p isolated-tenant -- --help` lists every flag and its
//! `HUSH_*` variable. All behaviour lives in the library, so tests drive the same code.

use clap::Parser as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = isolated_tenant::Config::parse();
    service_kit::telemetry::init()?;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    isolated_tenant::run(config, listener, service_kit::shutdown_signal()).await
}
