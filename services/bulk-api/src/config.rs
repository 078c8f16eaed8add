//! bulk-api's configuration: flags, each with a `HUSH_*` environment variable.

use auth::{JwtArgs, ServiceKeyArgs};
use service_kit::HttpArgs;
use std::net::SocketAddr;
use std::path::PathBuf;

pub use service_kit::Redacted;

/// How to run bulk-api.
#[derive(Clone, Debug, clap::Parser)]
#[command(name = "bulk-api", version, about = "Long-lived bulk membership jobs.")]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "HUSH_LISTEN", default_value = "127.0.0.1:8082")]
    pub listen: SocketAddr,
    /// This service's own database of jobs: `postgres://…` or `sqlite://…` (a
    /// missing SQLite file is created). Never shared with another service.
    #[arg(long, env = "HUSH_DATABASE_URL")]
    pub database_url: Redacted,
    /// Base URL of the isolated tenant, the membership truth (reached with service tokens).
    #[arg(long, env = "HUSH_TENANT_URL")]
    pub tenant_url: String,
    /// Base URL of control-api, asked for groups' labels and owners when jobs run.
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
    /// The key job input is sealed with at rest (INV-5): 32 bytes, base64. Without it (and
    /// without `--seal-key-file`) a random key lives in memory only, so queued jobs cannot
    /// survive a restart: fine for tests, never for production.
    #[arg(
        long,
        env = "HUSH_BULK_SEAL_KEY",
        hide_env_values = true,
        conflicts_with = "seal_key_file"
    )]
    pub seal_key: Option<Redacted>,
    /// A file holding the seal key (`hush up` writes one into its data dir).
    #[arg(long, env = "HUSH_BULK_SEAL_KEY_FILE")]
    pub seal_key_file: Option<PathBuf>,
    /// Operations per chunk: each chunk is one batch, one tenant transaction and one
    /// checkpoint.
    #[arg(long, env = "HUSH_BULK_CHUNK_SIZE", default_value_t = 1000)]
    pub chunk_size: usize,
    /// Most operations all replicas together apply per second (one token bucket in the
    /// database; give every replica the same value); 0 for no limit.
    #[arg(long, env = "HUSH_BULK_OPS_PER_SEC", default_value_t = 5000)]
    pub ops_per_sec: u32,
    /// Job workers in this replica, each applying one chunk at a time.
    #[arg(long, env = "HUSH_BULK_WORKERS", default_value_t = 3)]
    pub workers: usize,
    /// How long a worker's lease on a chunk lasts, in seconds; a replica that dies releases
    /// its chunks when their leases expire.
    #[arg(long, env = "HUSH_BULK_LEASE_SECS", default_value_t = 30)]
    pub lease_secs: u64,
    /// Most operations in one job.
    #[arg(long, env = "HUSH_BULK_MAX_OPS", default_value_t = 1_000_000)]
    pub max_ops: u64,
    /// Largest job upload, in bytes (the upload route's own limit; every other route keeps
    /// `HUSH_BODY_LIMIT_BYTES`).
    #[arg(long, env = "HUSH_BULK_UPLOAD_LIMIT_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub upload_limit_bytes: usize,
}

/// Tuning for job intake and execution, taken from [`Config`].
#[derive(Debug, Clone)]
pub struct JobSettings {
    /// Operations per chunk.
    pub chunk_size: usize,
    /// Operations per second, all replicas together; 0 for no limit.
    pub ops_per_sec: u32,
    /// Workers per replica.
    pub workers: usize,
    /// Lease length.
    pub lease: std::time::Duration,
    /// Most operations per job.
    pub max_ops: u64,
    /// Largest upload.
    pub upload_limit_bytes: usize,
}

impl JobSettings {
    /// The settings `config` names.
    pub fn from_config(config: &Config) -> Self {
        Self {
            chunk_size: config.chunk_size.clamp(1, crate::MAX_CHUNK),
            ops_per_sec: config.ops_per_sec,
            workers: config.workers,
            lease: std::time::Duration::from_secs(config.lease_secs.max(1)),
            max_ops: config.max_ops,
            upload_limit_bytes: config.upload_limit_bytes,
        }
    }
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            chunk_size: 1000,
            ops_per_sec: 5000,
            workers: 3,
            lease: std::time::Duration::from_secs(30),
            max_ops: 1_000_000,
            upload_limit_bytes: 256 * 1024 * 1024,
        }
    }
}
