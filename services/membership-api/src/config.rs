//! membership-api's configuration: flags, each with a `HUSH_*` environment variable.

use auth::{JwtArgs, ServiceKeyArgs};
use service_kit::{HttpArgs, Redacted};
use std::net::SocketAddr;

/// How to run membership-api.
#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "membership-api",
    version,
    about = "Routine membership: join, ask, redeem an invite, leave, my groups; owners' requests, invites and adds."
)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "HUSH_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// This service's own database of membership intents: `postgres://…` or `sqlite://…` (a
    /// missing SQLite file is created). Never shared with another service.
    #[arg(long, env = "HUSH_DATABASE_URL")]
    pub database_url: Redacted,
    /// Base URL of the isolated tenant, the membership truth (reached with service tokens).
    #[arg(long, env = "HUSH_TENANT_URL")]
    pub tenant_url: String,
    /// Base URL of control-api, asked for a group's label, join policy and state.
    #[arg(long, env = "HUSH_CONTROL_URL")]
    pub control_url: String,
    /// How often (milliseconds) control-api's catalog version is checked; control-api's
    /// lookups are kept while it does not change, so a change there (a label tightened, a
    /// group archived, an owner removed) governs here within this interval plus a round trip.
    /// 0 turns the cache off: every action asks control-api.
    #[arg(long, env = "HUSH_CATALOG_POLL_MS", default_value_t = 250)]
    pub catalog_poll_ms: u64,
    /// How users' tokens are checked.
    #[command(flatten)]
    pub jwt: JwtArgs,
    /// The key this service signs its service tokens with.
    #[command(flatten)]
    pub service_key: ServiceKeyArgs,
    /// Request limits.
    #[command(flatten)]
    pub http: HttpArgs,
    /// Per-caller limits on membership writes and invite redemption (abuse protection).
    #[command(flatten)]
    pub limits: AbuseLimits,
    /// Access decisions for apps.
    #[command(flatten)]
    pub decisions: DecisionArgs,
    /// The key pending join requests are sealed with at rest (INV-5): 32 bytes, base64.
    /// Without it (and without `--seal-key-file`) a random key lives in memory only, so
    /// pending requests cannot be read after a restart: fine for tests, never for production.
    #[arg(
        long,
        env = "HUSH_MEMBERSHIP_SEAL_KEY",
        hide_env_values = true,
        conflicts_with = "seal_key_file"
    )]
    pub seal_key: Option<Redacted>,
    /// A file holding the seal key (`hush up` and `hush deploy-init` write one).
    #[arg(long, env = "HUSH_MEMBERSHIP_SEAL_KEY_FILE")]
    pub seal_key_file: Option<std::path::PathBuf>,
}

/// Per-caller limits against abuse: scripted joining and leaving, flooding owners with
/// requests, guessing invite codes. Kept in membership-api's database, so every replica spends
/// from one budget, keyed by a keyed hash of the day, the action and the caller's subject (never
/// logged: INV-6); apps' decisions are budgeted per replica, in memory. A caller over a limit
/// gets 429 with `Retry-After` ([`crate::limits`]).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct AbuseLimits {
    /// Most requests one caller may make per minute to each of: join (and withdrawing a
    /// request), leave, invite redemption, and owner writes (add, remove, approve, deny, claim
    /// rules, invites). All replicas together.
    #[arg(
        long,
        env = "HUSH_RATE_LIMIT_PER_MINUTE",
        default_value_t = 60,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub rate_limit_per_minute: u32,
    /// Most failed invite redemptions (an unknown, expired, revoked or used-up code) one caller
    /// may make per hour; past it, every redemption is refused until the budget refills. With
    /// 160-bit codes this makes guessing hopeless rather than merely slow. All replicas
    /// together; while the database does not answer, redemptions are refused (503).
    #[arg(
        long,
        env = "HUSH_REDEEM_FAILURES_PER_HOUR",
        default_value_t = 10,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub redeem_failures_per_hour: u32,
    /// Most access decisions (token exchanges) one app may ask for per second, in bursts of up
    /// to a second's worth; past it the app gets 429 with `Retry-After`. Per replica.
    #[arg(
        long,
        env = "HUSH_DECISIONS_PER_SECOND_PER_APP",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u32).range(1..=1_000_000)
    )]
    pub decisions_per_second_per_app: u32,
}

impl Default for AbuseLimits {
    fn default() -> Self {
        Self {
            rate_limit_per_minute: 60,
            redeem_failures_per_hour: 10,
            decisions_per_second_per_app: 1000,
        }
    }
}

/// Access decisions for apps (docs/access-decisions.md): how they are signed and how long
/// they live.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct DecisionArgs {
    /// The Ed25519 key (PKCS#8 PEM; several blocks to rotate: the first signs, all are
    /// published) decisions and assertions are signed with. Without it a random key lives in
    /// memory only: apps must then refetch the JWKS after every restart — fine for tests,
    /// never for production (`hush up` and `hush deploy-init` write one).
    #[arg(long, env = "HUSH_DECISION_KEY_FILE")]
    pub decision_key_file: Option<std::path::PathBuf>,
    /// The issuer (`iss`) of every decision and assertion; apps check it.
    #[arg(
        long,
        env = "HUSH_DECISION_ISSUER",
        default_value = "urn:hush:decisions"
    )]
    pub decision_issuer: String,
    /// How long a decision or assertion is valid, in seconds (1 to 3600).
    #[arg(
        long,
        env = "HUSH_DECISION_TTL_SECS",
        default_value_t = 300,
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    pub decision_ttl_secs: u64,
}

impl Default for DecisionArgs {
    fn default() -> Self {
        Self {
            decision_key_file: None,
            decision_issuer: "urn:hush:decisions".into(),
            decision_ttl_secs: 300,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory as _, Parser as _};

    #[derive(clap::Parser)]
    struct Only {
        #[command(flatten)]
        limits: AbuseLimits,
    }

    #[test]
    fn abuse_limits_default_the_same_from_flags_and_in_code() {
        assert_eq!(
            Only::try_parse_from(["x"]).unwrap().limits,
            AbuseLimits::default()
        );
        let set = Only::try_parse_from([
            "x",
            "--rate-limit-per-minute",
            "5",
            "--redeem-failures-per-hour",
            "2",
        ])
        .unwrap();
        assert_eq!(
            set.limits,
            AbuseLimits {
                rate_limit_per_minute: 5,
                redeem_failures_per_hour: 2,
                decisions_per_second_per_app: 1000,
            }
        );
        assert!(Only::try_parse_from(["x", "--rate-limit-per-minute", "0"]).is_err());
    }

    #[test]
    fn every_limit_has_its_environment_variable() {
        let envs: Vec<String> = Config::command()
            .get_arguments()
            .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
            .collect();
        for want in [
            "HUSH_RATE_LIMIT_PER_MINUTE",
            "HUSH_REDEEM_FAILURES_PER_HOUR",
            "HUSH_DECISIONS_PER_SECOND_PER_APP",
            "HUSH_DECISION_KEY_FILE",
            "HUSH_DECISION_ISSUER",
            "HUSH_DECISION_TTL_SECS",
        ] {
            assert!(
                envs.iter().any(|e| e == want),
                "{want} missing from {envs:?}"
            );
        }
    }
}
