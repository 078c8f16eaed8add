//! Runs control-api: `control-api --help` lists every flag and its `HUSH_*` variable.

use clap::Parser as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = control_api::Config::parse();
    service_kit::telemetry::init()?;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    control_api::run(config, listener, service_kit::shutdown_signal()).await
}
