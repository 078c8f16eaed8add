//! The tenant's configuration: flags, each with a `HUSH_*` environment variable, and the
//! loading of the keys they point at.
//!
//! There is no login here on purpose (INV-9). The tenant trusts exactly the public keys of the
//! services named in `HUSH_TRUSTED_SERVICE_KEYS`. The one user-related setting is the IdP of
//! break-glass ([`crate::breakglass::BreakGlassArgs`]): control-api forwards the acting
//! user's own token on those routes, beside its service token, and the tenant verifies it.

use crate::identity::CorporateDomains;
use crate::seal::SealKeys;
use anyhow::Context;
use auth::ServiceVerifier;
use domain::ServiceName;
use service_kit::HttpArgs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

pub use service_kit::Redacted;

/// How to run the isolated tenant.
#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "isolated-tenant",
    version,
    about = "The isolated tenant: identities, distribution groups and sealed membership; reachable only with service tokens."
)]
pub struct Config {
    /// Address to listen on. Keep it on an internal network: only the public services call it.
    #[arg(long, env = "HUSH_LISTEN", default_value = "127.0.0.1:8083")]
    pub listen: SocketAddr,
    /// The tenant's own database: `postgres://…` or `sqlite://…` (a missing SQLite file is
    /// created). Never shared with another service.
    #[arg(long, env = "HUSH_DATABASE_URL", hide_env_values = true)]
    pub database_url: Redacted,
    /// The services allowed to call, each with the file of its public key:
    /// `control-api=/path/control-api.pub.pem,membership-api=…,bulk-api=…`.
    #[arg(long, env = "HUSH_TRUSTED_SERVICE_KEYS")]
    pub trusted_service_keys: String,
    /// The master keys that seal membership at rest: `kid:base64-32-bytes[,kid2:…]`, the first
    /// one active, older ones kept for reading until a re-seal (`hush tenant reseal`) has
    /// rewritten every row under the active one. Prefer `--seal-keys-file` so the keys stay out
    /// of the process environment.
    #[arg(
        long,
        env = "HUSH_TENANT_SEAL_KEYS",
        hide_env_values = true,
        conflicts_with = "seal_keys_file"
    )]
    pub seal_keys: Option<Redacted>,
    /// A file holding the seal keys in the same form as `--seal-keys`, one per line or comma
    /// separated (`hush up` and `hush deploy-init` write one).
    #[arg(long, env = "HUSH_TENANT_SEAL_KEYS_FILE")]
    pub seal_keys_file: Option<PathBuf>,
    /// The mail domains of the company's own people, comma separated
    /// (`corp.example,subsidiary.example`). Someone an owner adds by an address outside them,
    /// and whom no token has vouched for, is a guest, and labels that refuse guests refuse
    /// them. Empty (the default): no domain is corporate, so everyone added by address alone
    /// counts as a guest until their own token says otherwise (fail closed). Someone named by
    /// subject alone whom the tenant has never seen is added to no group: nobody knows their
    /// kind.
    #[arg(long, env = "HUSH_CORPORATE_DOMAINS", default_value = "")]
    pub corporate_domains: CorporateDomains,
    /// The company's IdP provisions people over SCIM (control-api's `/scim/v2`): the
    /// directory says everyone's kind, so nobody's is inferred from an address, and an owner's
    /// add of someone the directory did not provision (and who never signed in) does nothing.
    #[arg(long, env = "HUSH_DIRECTORY_SYNC", default_value_t = false)]
    pub directory_sync: bool,
    /// Most bulk batches applied at once (default: 3 on Postgres, 2 on SQLite). More wait
    /// (answered 503 with `Retry-After`), so bulk jobs never take the connections routine join
    /// and leave calls need.
    #[arg(long, env = "HUSH_TENANT_BATCH_CONCURRENCY")]
    pub batch_concurrency: Option<usize>,
    /// Request limits.
    #[command(flatten)]
    pub http: HttpArgs,
    /// The audit chain's signed checkpoints.
    #[command(flatten)]
    pub audit: crate::audit::AuditArgs,
    /// Break-glass: the IdP of the acting users' tokens, and time limits.
    #[command(flatten)]
    pub break_glass: crate::breakglass::BreakGlassArgs,
    /// Mail expansion: the SMTP listener, the relay, their limits (`HUSH_MAIL_*`).
    #[command(flatten)]
    pub mail: crate::mail::MailArgs,
    /// Notifications: their sender, the officers' mailboxes, the limits, the webhook
    /// (`HUSH_NOTIFY_*`).
    #[command(flatten)]
    pub notify: crate::notify::NotifyArgs,
}

/// The services that may hold a key the tenant trusts. The tenant never trusts itself: nothing
/// it does is reached through its own API.
const CALLERS: [ServiceName; 3] = [
    ServiceName::ControlApi,
    ServiceName::MembershipApi,
    ServiceName::BulkApi,
];

impl Config {
    /// Bulk batches applied at once: as configured, or the default of the database's backend.
    /// SQLite has one writer, so a third batch only waits in memory for it (in the benchmark it
    /// raised the tenant's peak memory from about 100 to 160–230 MiB and did not add
    /// throughput); Postgres writes batches side by side.
    pub fn batch_slots(&self) -> usize {
        self.batch_concurrency
            .unwrap_or(
                match service_kit::db::Backend::from_url(self.database_url.expose()) {
                    Ok(service_kit::db::Backend::Sqlite) => 2,
                    _ => 3,
                },
            )
            .max(1)
    }

    /// The seal keys, from `--seal-keys` or `--seal-keys-file` (exactly one must be given).
    pub fn load_seal_keys(&self) -> anyhow::Result<SealKeys> {
        let text = match (&self.seal_keys, &self.seal_keys_file) {
            (Some(keys), None) => Zeroizing::new(keys.expose().to_string()),
            (None, Some(path)) => Zeroizing::new(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading the seal keys file {}", path.display()))?,
            ),
            (Some(_), Some(_)) => anyhow::bail!(
                "give the seal keys either inline (HUSH_TENANT_SEAL_KEYS) or as a file (HUSH_TENANT_SEAL_KEYS_FILE), not both"
            ),
            (None, None) => anyhow::bail!(
                "no seal keys: set HUSH_TENANT_SEAL_KEYS_FILE (or HUSH_TENANT_SEAL_KEYS)"
            ),
        };
        Ok(SealKeys::parse(&text)?)
    }

    /// A verifier of tokens addressed to the tenant, trusting the configured services' keys.
    /// Stricter than the auth crate alone: the list must name at least one service, only the
    /// public services, each once.
    pub fn load_verifier(&self) -> anyhow::Result<ServiceVerifier> {
        parse_trusted_keys(&self.trusted_service_keys)?;
        Ok(ServiceVerifier::from_trusted_keys(
            ServiceName::IsolatedTenant,
            &self.trusted_service_keys,
        )?)
    }
}

/// Parses `service=path[,service=path…]`: only the public services, each at most once.
pub fn parse_trusted_keys(text: &str) -> anyhow::Result<Vec<(ServiceName, PathBuf)>> {
    let mut out: Vec<(ServiceName, PathBuf)> = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, path) = entry.split_once('=').with_context(|| {
            format!("trusted service key '{entry}' is not of the form service=path")
        })?;
        let service = ServiceName::parse(name.trim())
            .with_context(|| format!("'{}' is not a service name", name.trim()))?;
        anyhow::ensure!(
            CALLERS.contains(&service),
            "{service} may not call the isolated tenant"
        );
        anyhow::ensure!(
            !out.iter().any(|(s, _)| *s == service),
            "{service} is listed twice in the trusted service keys"
        );
        let path = path.trim();
        anyhow::ensure!(!path.is_empty(), "the key file of {service} is empty");
        out.push((service, PathBuf::from(path)));
    }
    anyhow::ensure!(
        !out.is_empty(),
        "no trusted service keys: the tenant would refuse every call"
    );
    Ok(out)
}

/// Writes a fresh random seal key to `path` (mode 0600) unless a file is already there, for
/// `hush up` and `hush deploy-init`. An existing file is never touched, so running this twice
/// never loses the key that sealed a database.
pub fn generate_seal_keys_file(path: &Path) -> anyhow::Result<()> {
    let mut text = SealKeys::generate_text();
    text.push('\n');
    service_kit::files::create_secret(path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[test]
    fn trusted_keys_parse_and_refuse_strangers_and_repeats() {
        let ok =
            parse_trusted_keys("control-api=/k/c.pem, membership-api=/k/m.pem,bulk-api=/k/b.pem")
                .unwrap();
        assert_eq!(ok.len(), 3);
        assert_eq!(
            ok[1],
            (ServiceName::MembershipApi, PathBuf::from("/k/m.pem"))
        );
        assert!(parse_trusted_keys("").is_err());
        assert!(parse_trusted_keys("control-api").is_err());
        assert!(parse_trusted_keys("mallory=/k").is_err());
        assert!(parse_trusted_keys("isolated-tenant=/k").is_err());
        assert!(parse_trusted_keys("bulk-api=/a,bulk-api=/b").is_err());
    }

    #[test]
    fn debug_output_hides_the_seal_keys_and_the_database_url() {
        let key = SealKeys::generate_text();
        let cfg = Config::try_parse_from([
            "isolated-tenant",
            "--database-url",
            "postgres://hush:s3cret@db/hush_tenant",
            "--trusted-service-keys",
            "control-api=/k.pem",
            "--seal-keys",
            key.as_str(),
        ])
        .unwrap();
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(!shown.contains(key.split(':').nth(1).unwrap()), "{shown}");
        assert!(cfg.load_seal_keys().is_ok());
    }

    #[test]
    fn bulk_batch_slots_default_by_backend_and_follow_the_setting() {
        let slots = |url: &str, extra: &[&str]| {
            let mut args = vec![
                "isolated-tenant",
                "--database-url",
                url,
                "--trusted-service-keys",
                "control-api=/k.pem",
            ];
            args.extend_from_slice(extra);
            Config::try_parse_from(args).unwrap().batch_slots()
        };
        assert_eq!(slots("postgres://db/hush_tenant", &[]), 3);
        assert_eq!(
            slots("sqlite:tenant.db", &[]),
            2,
            "one writer: a third batch would only wait"
        );
        assert_eq!(slots("sqlite:tenant.db", &["--batch-concurrency", "5"]), 5);
        assert_eq!(
            slots("postgres://db/hush_tenant", &["--batch-concurrency", "0"]),
            1,
            "at least one"
        );
    }

    #[test]
    fn seal_keys_come_from_exactly_one_place() {
        let base = [
            "isolated-tenant",
            "--database-url",
            "sqlite::memory:",
            "--trusted-service-keys",
            "bulk-api=/k",
        ];
        let none = Config::try_parse_from(base).unwrap();
        assert!(none.load_seal_keys().is_err());
        let both = Config::try_parse_from(base.iter().copied().chain([
            "--seal-keys",
            "a:b",
            "--seal-keys-file",
            "/x",
        ]));
        assert!(both.is_err(), "clap refuses both at once");
    }

    #[test]
    fn a_generated_key_file_is_private_loads_and_is_never_overwritten() {
        let dir = std::env::temp_dir().join(format!("hush-seal-{}", uuid::Uuid::new_v4()));
        let path = dir.join("tenant-seal.keys");
        generate_seal_keys_file(&path).unwrap();
        let first = std::fs::read_to_string(&path).unwrap();
        generate_seal_keys_file(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let cfg = Config::try_parse_from([
            "isolated-tenant",
            "--database-url",
            "sqlite::memory:",
            "--trusted-service-keys",
            "bulk-api=/k",
            "--seal-keys-file",
            path.to_str().unwrap(),
        ])
        .unwrap();
        assert!(cfg.load_seal_keys().is_ok());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
