//! control-api's configuration: flags, each with a `HUSH_*` environment variable, and the loading
//! of what they point at.

use anyhow::Context;
use auth::{JwtArgs, ServiceKeyArgs, ServiceVerifier};
use domain::{Email, LocalPart, ServiceName};
use service_kit::{HttpArgs, Redacted};
use std::net::SocketAddr;

/// The services that may call control-api's internal endpoint. Nobody else's key is accepted
/// there, even if configured.
pub const INTERNAL_CALLERS: [ServiceName; 2] = [ServiceName::MembershipApi, ServiceName::BulkApi];

/// How to run control-api.
#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "control-api",
    version,
    about = "The group and label catalog: create, discover, edit and archive groups; label policy."
)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "HUSH_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// This service's own catalog database: `postgres://…` or `sqlite://…` (a missing SQLite
    /// file is created). Never shared with another service.
    #[arg(long, env = "HUSH_DATABASE_URL", hide_env_values = true)]
    pub database_url: Redacted,
    /// Base URL of the isolated tenant, which provisions and removes each group's distribution
    /// group and answers owners' coarse member counts (reached with service tokens).
    #[arg(long, env = "HUSH_TENANT_URL")]
    pub tenant_url: String,
    /// The mail domain of groups' contact addresses: a group gets `<local part>@<this>`.
    #[arg(long, env = "HUSH_MAIL_DOMAIN")]
    pub mail_domain: String,
    /// The services allowed to call the internal lookup endpoint, each with the file of its
    /// public key: `membership-api=/keys/membership-api.pub.pem,bulk-api=/keys/bulk-api.pub.pem`.
    /// Only membership-api and bulk-api may be listed; empty trusts no one.
    #[arg(long, env = "HUSH_TRUSTED_SERVICE_KEYS", default_value = "")]
    pub trusted_service_keys: String,
    /// How users' tokens are checked.
    #[command(flatten)]
    pub jwt: JwtArgs,
    /// The key this service signs its service tokens (to the tenant) with.
    #[command(flatten)]
    pub service_key: ServiceKeyArgs,
    /// Request limits.
    #[command(flatten)]
    pub http: HttpArgs,
    /// SCIM provisioning from the company's IdP.
    #[command(flatten)]
    pub scim: crate::scim::ScimArgs,
    /// The key owners are sealed with at rest (INV-5, issue 16): 32 bytes, base64. Required
    /// (this or `--seal-key-file`): owners sealed under a lost key cannot be read.
    #[arg(
        long,
        env = "HUSH_CONTROL_SEAL_KEY",
        hide_env_values = true,
        conflicts_with = "seal_key_file"
    )]
    pub seal_key: Option<Redacted>,
    /// A file holding the seal key (`hush up` and `hush deploy-init` write one).
    #[arg(long, env = "HUSH_CONTROL_SEAL_KEY_FILE")]
    pub seal_key_file: Option<std::path::PathBuf>,
}

impl Config {
    /// The seal key the configuration names; an error when it names none (a random key would
    /// make every owner unreadable after a restart).
    pub fn load_seal_key(&self) -> anyhow::Result<crate::seal::OwnerKey> {
        if let Some(k) = &self.seal_key {
            return crate::seal::OwnerKey::parse(k.expose());
        }
        let path = self.seal_key_file.as_ref().context(
            "control-api needs a seal key for owners at rest: set HUSH_CONTROL_SEAL_KEY_FILE \
             (`hush deploy-init` writes one) or HUSH_CONTROL_SEAL_KEY",
        )?;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the control seal key {}", path.display()))?;
        crate::seal::OwnerKey::parse(&text)
    }

    /// The mail domain, checked: it must make valid addresses with a local part.
    pub fn checked_mail_domain(&self) -> anyhow::Result<String> {
        check_mail_domain(&self.mail_domain)
    }

    /// The verifier of service tokens addressed to control-api, trusting the configured keys,
    /// which may belong only to [`INTERNAL_CALLERS`].
    pub fn load_service_verifier(&self) -> anyhow::Result<ServiceVerifier> {
        for (service, _) in auth::parse_trusted_keys(&self.trusted_service_keys)? {
            anyhow::ensure!(
                INTERNAL_CALLERS.contains(&service),
                "{service} may not call control-api's internal endpoint; \
                 HUSH_TRUSTED_SERVICE_KEYS may list membership-api and bulk-api only"
            );
        }
        ServiceVerifier::from_trusted_keys(ServiceName::ControlApi, &self.trusted_service_keys)
            .context("loading HUSH_TRUSTED_SERVICE_KEYS")
    }
}

/// Lowercases and checks a mail domain by building an address with it.
pub fn check_mail_domain(domain: &str) -> anyhow::Result<String> {
    let domain = domain.trim().to_ascii_lowercase();
    let probe = LocalPart::parse("probe").expect("a valid local part");
    Email::parse(format!("{}@{domain}", probe.as_str())).with_context(|| {
        format!("HUSH_MAIL_DOMAIN '{domain}' is not a mail domain (e.g. groups.corp.example)")
    })?;
    Ok(domain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn parse(extra: &[&str]) -> Result<Config, clap::Error> {
        let base = [
            "control-api",
            "--database-url",
            "postgres://hush:s3cret@db/hush_control",
            "--tenant-url",
            "http://tenant:8083",
            "--mail-domain",
            "Groups.Corp.Example",
            "--jwt-issuer",
            "https://idp.example",
            "--jwt-audience",
            "hush",
            "--jwks-url",
            "https://idp.example/jwks",
            "--service-key-file",
            "/k/control-api.key.pem",
        ];
        Config::try_parse_from(base.iter().chain(extra))
    }

    #[test]
    fn debug_output_hides_the_database_url() {
        let cfg = parse(&[]).unwrap();
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert_eq!(cfg.listen.port(), 8080);
    }

    #[test]
    fn the_mail_domain_is_lowercased_and_checked() {
        assert_eq!(
            parse(&[]).unwrap().checked_mail_domain().unwrap(),
            "groups.corp.example"
        );
        assert!(check_mail_domain("localhost").is_err());
        assert!(check_mail_domain("bad domain.example").is_err());
    }

    #[test]
    fn only_membership_api_and_bulk_api_may_be_trusted() {
        let cfg = parse(&["--trusted-service-keys", "isolated-tenant=/k/t.pub.pem"]).unwrap();
        let err = cfg.load_service_verifier().unwrap_err().to_string();
        assert!(err.contains("isolated-tenant"), "{err}");
        let cfg = parse(&["--trusted-service-keys", "control-api=/k/c.pub.pem"]).unwrap();
        assert!(cfg.load_service_verifier().is_err());
        let none = parse(&[]).unwrap().load_service_verifier().unwrap();
        assert!(none.trusted().is_empty());
    }
}
