//! bulk-api's configuration: flags, each with a `HUSH_*` environment variable.

use auth::{JwtArgs, ServiceKeyArgs};
use service_kit::HttpArgs;
use std::net::SocketAddr;

/// How to run bulk-api.
#[derive(Clone, clap::Parser)]
#[command(name = "bulk-api", version, about = "Long-lived bulk membership jobs.")]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "HUSH_LISTEN", default_value = "127.0.0.1:8082")]
    pub listen: SocketAddr,
    /// This service's own database of jobs: `postgres://…` or `sqlite://…` (a
    /// missing SQLite file is created). Never shared with another service.
    #[arg(long, env = "HUSH_DATABASE_URL")]
    pub database_url: String,
    /// Base URL of the isolated tenant, the membership truth (reached with service tokens).
    #[arg(long, env = "HUSH_TENANT_URL")]
    pub tenant_url: String,
    /// Base URL of control-api, asked for groups' labels when jobs are checked.
    #[arg(long, env = "HUSH_CONTROL_URL")]
    pub control_url: String,
    /// How users' tokens are checked.
    #[command(flatten)]
    pub jwt: JwtArgs,
    /// The key this service signs its service tokens with.
    #[command(flatten)]
    pub service_key: ServiceKeyArgs,
    /// Request limits.
    #[command(flatten)]
    pub http: HttpArgs,
}

/// The database URL may carry a password: it is left out of debug output.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("database_url", &"<redacted>")
            .field("tenant_url", &self.tenant_url)
            .field("control_url", &self.control_url)
            .field("jwt", &self.jwt)
            .field("service_key", &self.service_key)
            .field("http", &self.http)
            .finish()
    }
}
