//! The corporate relay as the delivery workers see it: where it is (a host name, resolved at
//! each connection, so a relay that moves behind its name is followed), how the connection is
//! secured, the optional SMTP AUTH credentials, and the relay's health and counters.
//!
//! Secure by default: STARTTLS is required unless `HUSH_MAIL_RELAY_TLS` says otherwise, and a
//! relay that does not offer it gets nothing (the delivery waits and is tried again), because
//! every copy names its recipients in the envelope. The certificate is checked against the
//! Mozilla roots, or against the configured CA file instead, and against the relay's name.
//!
//! A relay that fails is logged once when it starts failing (with the cause), once when the
//! cause changes and once when it works again — never once per message, so a relay down for a
//! night leaves three lines, not thousands. The counters ([`RelayStats`]) show the rest.

use anyhow::Context as _;
use service_kit::metrics::{Counter, Family, Gauge};
use service_kit::Redacted;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use tokio_rustls::rustls;

/// A relay's host and port: `relay.corp.example:25`, `10.0.0.5:587`, `[2001:db8::5]:25`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayHost {
    /// A DNS name or an IP address (without brackets), resolved at each connection. Also the
    /// name the relay's certificate must carry.
    pub host: String,
    /// The TCP port.
    pub port: u16,
}

impl FromStr for RelayHost {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("'{s}' is not host:port (e.g. relay.corp.example:25)");
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (v6, port) = rest.split_once("]:").ok_or_else(bad)?;
            v6.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
            (v6, port)
        } else {
            s.rsplit_once(':').ok_or_else(bad)?
        };
        let port: u16 = port.parse().map_err(|_| bad())?;
        let name_ok = !host.is_empty()
            && host.len() <= 253
            && (host.parse::<std::net::IpAddr>().is_ok()
                || host.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                }));
        if port == 0 || !name_ok {
            return Err(bad());
        }
        Ok(Self {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

impl fmt::Display for RelayHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// How the connection to the relay is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TlsMode {
    /// Plain TCP, then STARTTLS (RFC 3207), required: a relay that does not offer it is a
    /// failed attempt, never a plaintext delivery. Port 25 or 587.
    Starttls,
    /// TLS from the first byte (RFC 8314), usually port 465.
    Implicit,
    /// No TLS at all. Only for a relay on the same host or in tests; never the default.
    None,
}

/// The relay's connection settings (`HUSH_MAIL_RELAY_*`), beside `HUSH_MAIL_RELAY` itself.
#[derive(Debug, Clone, clap::Args)]
pub struct RelayArgs {
    /// How the connection to the relay is secured: `starttls` (required, the default),
    /// `implicit` (TLS from the first byte, port 465) or `none` (plaintext; only a relay on
    /// loopback or in tests).
    #[arg(
        long = "mail-relay-tls",
        id = "mail_relay_tls",
        env = "HUSH_MAIL_RELAY_TLS",
        value_enum,
        default_value = "starttls"
    )]
    pub tls: TlsMode,
    /// A PEM file of the CA certificates the relay's certificate is checked against, instead of
    /// the built-in Mozilla roots (a relay with a certificate from the company's own CA).
    #[arg(
        long = "mail-relay-ca-file",
        id = "mail_relay_ca_file",
        env = "HUSH_MAIL_RELAY_CA_FILE"
    )]
    pub ca_file: Option<PathBuf>,
    /// A file with the relay's SMTP AUTH credentials: the user name on the first line, the
    /// password on the second. Sent with AUTH PLAIN (or LOGIN) over TLS only. Unset: no AUTH.
    #[arg(
        long = "mail-relay-auth-file",
        id = "mail_relay_auth_file",
        env = "HUSH_MAIL_RELAY_AUTH_FILE"
    )]
    pub auth_file: Option<PathBuf>,
}

impl Default for RelayArgs {
    /// STARTTLS required, the system roots, no AUTH.
    fn default() -> Self {
        Self {
            tls: TlsMode::Starttls,
            ca_file: None,
            auth_file: None,
        }
    }
}

impl RelayArgs {
    /// Plaintext to the relay, for tests with a relay on loopback.
    pub fn plaintext() -> Self {
        Self {
            tls: TlsMode::None,
            ..Self::default()
        }
    }

    /// Reads the CA and credential files the settings name and builds the TLS client.
    pub fn load(&self) -> anyhow::Result<RelaySecurity> {
        let auth = match &self.auth_file {
            None => None,
            Some(path) => Some(Credentials::read(path)?),
        };
        if self.tls == TlsMode::None {
            anyhow::ensure!(
                auth.is_none(),
                "HUSH_MAIL_RELAY_AUTH_FILE needs TLS to the relay: the password would cross the network in clear (HUSH_MAIL_RELAY_TLS=none)"
            );
            anyhow::ensure!(
                self.ca_file.is_none(),
                "HUSH_MAIL_RELAY_CA_FILE is set but HUSH_MAIL_RELAY_TLS=none: nothing would check it"
            );
            return Ok(RelaySecurity {
                mode: TlsMode::None,
                tls: None,
                auth: None,
            });
        }
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca_file {
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            Some(path) => {
                use rustls::pki_types::pem::PemObject as _;
                use rustls::pki_types::CertificateDer;
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                    .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
                anyhow::ensure!(!certs.is_empty(), "{} holds no certificate", path.display());
                for cert in certs {
                    roots
                        .add(cert)
                        .with_context(|| format!("a CA certificate in {}", path.display()))?;
                }
            }
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(RelaySecurity {
            mode: self.tls,
            tls: Some(tokio_rustls::TlsConnector::from(Arc::new(config))),
            auth,
        })
    }
}

/// SMTP AUTH credentials; `Debug` shows neither part.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// The user name.
    pub user: Redacted,
    /// The password.
    pub password: Redacted,
}

impl Credentials {
    /// Line 1 the user, line 2 the password (a final line end is not part of it). The error
    /// never quotes the file.
    pub fn read(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the relay credentials {}", path.display()))?,
        );
        let mut lines = text.lines();
        let user = lines.next().unwrap_or_default();
        let password = lines.next().unwrap_or_default();
        anyhow::ensure!(
            !user.is_empty() && !password.is_empty(),
            "{} must hold the relay's user name on line 1 and its password on line 2",
            path.display()
        );
        Ok(Self {
            user: Redacted::new(user),
            password: Redacted::new(password),
        })
    }
}

/// The loaded connection settings the client uses.
#[derive(Clone)]
pub struct RelaySecurity {
    /// STARTTLS, implicit TLS or none.
    pub mode: TlsMode,
    /// The TLS client (roots or CA file); `None` only in mode `none`.
    pub tls: Option<tokio_rustls::TlsConnector>,
    /// SMTP AUTH credentials, when configured (TLS modes only).
    pub auth: Option<Credentials>,
}

impl fmt::Debug for RelaySecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelaySecurity")
            .field("mode", &self.mode)
            .field("auth", &self.auth.is_some())
            .finish_non_exhaustive()
    }
}

/// Why an attempt did not hand the copy over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cause {
    /// The name did not resolve, nothing answered, or the connection timed out.
    Connect,
    /// The TLS handshake failed: a certificate not signed by a trusted CA, for another name,
    /// expired, or no common protocol.
    Tls,
    /// STARTTLS is required and the relay did not offer it (or refused it).
    StarttlsMissing,
    /// The relay refused the credentials, or offered no mechanism we speak.
    Auth,
    /// The relay answered `530`: it wants TLS or AUTH before mail.
    AuthRequired,
    /// The conversation broke: a malformed reply, a closed connection, a refused greeting.
    Protocol,
    /// The relay refused the message for now (4xx).
    Deferred,
    /// The relay refused the message for good (5xx).
    Refused,
}

impl Cause {
    /// Every cause, in a stable order.
    pub const ALL: [Cause; 8] = [
        Self::Connect,
        Self::Tls,
        Self::StarttlsMissing,
        Self::Auth,
        Self::AuthRequired,
        Self::Protocol,
        Self::Deferred,
        Self::Refused,
    ];

    /// The cause's name in logs, counters and the dead-letter list.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Tls => "tls",
            Self::StarttlsMissing => "starttls-missing",
            Self::Auth => "auth",
            Self::AuthRequired => "auth-required",
            Self::Protocol => "protocol",
            Self::Deferred => "deferred",
            Self::Refused => "refused",
        }
    }

    /// Whether the cause says the relay (or our settings for it) is broken for every message,
    /// rather than something about one message.
    pub fn relay_wide(self) -> bool {
        !matches!(self, Self::Deferred | Self::Refused)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The relay's health as the workers last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    /// Nothing failed since the last success (or since start).
    Ok,
    /// The last attempt failed relay-wide, for this cause.
    Failing(Cause),
}

/// The delivery counters of this process, and the relay's health. Counts only: no group, no
/// address, nothing per group (INV-1). They are `/metrics` counters too ([`Self::register`]):
/// one source for the operators' status route and for the scrape.
#[derive(Debug)]
pub struct RelayStats {
    attempts: Counter,
    /// By how an attempt ended (`delivered`, `deferred`, `dead`).
    ended: Family<[(&'static str, &'static str); 1], Counter>,
    /// Failed attempts by cause.
    causes: Family<[(&'static str, &'static str); 1], Counter>,
    /// 1 while the relay works (or nothing was tried), 0 while it fails relay-wide.
    up: Gauge,
    health: Mutex<(Health, i64)>,
}

impl Default for RelayStats {
    fn default() -> Self {
        let up: Gauge = Gauge::default();
        up.set(1);
        Self {
            attempts: Counter::default(),
            ended: Family::default(),
            causes: Family::default(),
            up,
            health: Mutex::new((Health::Ok, service_kit::db::now_ms())),
        }
    }
}

/// How one attempt ended, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Handed over (some recipients may wait for a retry).
    Delivered,
    /// To be tried again.
    Deferred,
    /// A dead letter.
    Dead,
}

impl Ended {
    fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Deferred => "deferred",
            Self::Dead => "dead",
        }
    }
}

impl RelayStats {
    /// Registers `hush_mail_relay_up` in `metrics`: the relay's state, nothing more. The
    /// transaction counters stay in the tenant ([`Self::counters`]): a transaction is a batch of
    /// one group's members, so their movement around a post of one's own would count that
    /// group (INV-4); message outcomes are exported by the queue's gauges instead.
    pub fn register(&self, metrics: &mut service_kit::metrics::MetricsBuilder) {
        metrics.register(
            "mail_relay_up",
            "1 while the relay works (or was not tried yet), 0 while it fails for every message",
            self.up.clone(),
        );
    }

    /// Counts an attempt.
    pub fn attempt(&self) {
        self.attempts.inc();
    }

    /// Counts how an attempt ended and, when it failed, why.
    pub fn ended(&self, ended: Ended, cause: Option<Cause>) {
        self.ended
            .get_or_create(&[("outcome", ended.as_str())])
            .inc();
        if let Some(c) = cause {
            self.causes.get_or_create(&[("cause", c.as_str())]).inc();
        }
    }

    fn count(&self, cause: Cause) -> u64 {
        self.causes
            .get_or_create(&[("cause", cause.as_str())])
            .get()
    }

    /// The relay worked: logs once if it was failing.
    pub fn relay_ok(&self, relay: &RelayHost) {
        let mut health = self.health.lock().expect("relay health lock");
        if let (Health::Failing(was), _) = *health {
            tracing::info!(%relay, was = %was, "the mail relay works again");
            *health = (Health::Ok, service_kit::db::now_ms());
            self.up.set(1);
        }
    }

    /// The relay failed for `cause` (relay-wide causes only): logs once per change of cause.
    /// `detail` says what happened in our words or the relay's reply code, never a reply's
    /// text (relays put addresses there).
    pub fn relay_failing(&self, relay: &RelayHost, cause: Cause, detail: &str) {
        let mut health = self.health.lock().expect("relay health lock");
        if health.0 != Health::Failing(cause) {
            tracing::warn!(%relay, cause = %cause, detail, "the mail relay is failing; deliveries wait and are retried");
            *health = (Health::Failing(cause), service_kit::db::now_ms());
            self.up.set(0);
        }
    }

    /// Why the relay is failing and since when (Unix ms), or `None` while it works.
    pub fn failing(&self) -> Option<(Cause, i64)> {
        match *self.health.lock().expect("relay health lock") {
            (Health::Ok, _) => None,
            (Health::Failing(c), since) => Some((c, since)),
        }
    }

    /// The relay's state for the operators' status route: failing or not, and since when.
    /// No volume (see [`tenant_api::RelayStatus`]).
    pub fn status(&self) -> tenant_api::RelayStatus {
        let (health, since_ms) = *self.health.lock().expect("relay health lock");
        tenant_api::RelayStatus {
            failing: match health {
                Health::Ok => None,
                Health::Failing(c) => Some(c.as_str().to_string()),
            },
            since_ms,
        }
    }

    /// This replica's counters: relay transactions attempted and how they ended. They stay in
    /// the tenant (tests read them; see [`Self::register`]).
    pub fn counters(&self) -> RelayCounters {
        let ended = |e: Ended| self.ended.get_or_create(&[("outcome", e.as_str())]).get();
        RelayCounters {
            attempts: self.attempts.get(),
            delivered: ended(Ended::Delivered),
            deferred: ended(Ended::Deferred),
            dead: ended(Ended::Dead),
        }
    }

    /// This replica's failed attempts for `cause` (kept in the tenant, like [`Self::counters`]).
    pub fn failures(&self, cause: Cause) -> u64 {
        self.count(cause)
    }
}

/// One replica's relay counters (see [`RelayStats::counters`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayCounters {
    /// Relay transactions attempted.
    pub attempts: u64,
    /// Attempts that handed the copy over.
    pub delivered: u64,
    /// Attempts that will be tried again.
    pub deferred: u64,
    /// Attempts after which the delivery became a dead letter.
    pub dead: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_hosts_are_names_or_addresses_with_a_port() {
        let h: RelayHost = "Relay.Corp.example:587".parse().unwrap();
        assert_eq!((h.host.as_str(), h.port), ("relay.corp.example", 587));
        assert_eq!(h.to_string(), "relay.corp.example:587");
        let v6: RelayHost = "[2001:db8::5]:25".parse().unwrap();
        assert_eq!(
            (v6.host.as_str(), v6.to_string()),
            ("2001:db8::5", "[2001:db8::5]:25".into())
        );
        assert_eq!("10.0.0.5:25".parse::<RelayHost>().unwrap().host, "10.0.0.5");
        for bad in [
            "relay.corp.example",
            "relay.corp.example:0",
            "relay.corp.example:99999",
            ":25",
            "relay..corp:25",
            "re lay:25",
            "[nope]:25",
            "2001:db8::5:25x",
        ] {
            assert!(bad.parse::<RelayHost>().is_err(), "{bad}");
        }
    }

    #[test]
    fn hush_mail_relay_takes_host_port_with_or_without_smtp_and_a_maildir() {
        use crate::mail::Relay;
        let host = |h: &str, p: u16| {
            Relay::Smtp(RelayHost {
                host: h.into(),
                port: p,
            })
        };
        assert_eq!(
            "relay.corp.example:25".parse::<Relay>().unwrap(),
            host("relay.corp.example", 25)
        );
        assert_eq!(
            "smtp://10.0.0.5:2525/".parse::<Relay>().unwrap(),
            host("10.0.0.5", 2525)
        );
        assert_eq!(
            "maildir:/var/mail".parse::<Relay>().unwrap(),
            Relay::Maildir("/var/mail".into())
        );
        for bad in [
            "smtp://relay",
            "maildir:",
            "relay.corp.example",
            "http://x:25",
        ] {
            assert!(bad.parse::<Relay>().is_err(), "{bad}");
        }
    }

    #[test]
    fn auth_needs_tls_and_a_ca_file_needs_tls() {
        let dir = tempfile::tempdir().unwrap();
        let auth = dir.path().join("auth");
        std::fs::write(&auth, "hush\nhunter2\n").unwrap();
        let plain_with_auth = RelayArgs {
            auth_file: Some(auth.clone()),
            ..RelayArgs::plaintext()
        };
        assert!(plain_with_auth.load().is_err());
        let loaded = RelayArgs {
            auth_file: Some(auth),
            ..RelayArgs::default()
        }
        .load()
        .unwrap();
        let creds = loaded.auth.clone().unwrap();
        assert_eq!(
            (creds.user.expose(), creds.password.expose()),
            ("hush", "hunter2")
        );
        assert!(!format!("{loaded:?} {creds:?}").contains("hunter2"));
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "hush\n").unwrap();
        let err = Credentials::read(&empty).unwrap_err().to_string();
        assert!(!err.contains("hush\n"), "{err}");
        assert!(RelayArgs {
            ca_file: Some(dir.path().join("missing.pem")),
            ..RelayArgs::default()
        }
        .load()
        .is_err());
    }

    #[test]
    fn health_changes_are_remembered_once_and_counters_add_up() {
        let stats = RelayStats::default();
        let relay: RelayHost = "relay.example:25".parse().unwrap();
        stats.attempt();
        stats.ended(Ended::Deferred, Some(Cause::Tls));
        stats.relay_failing(&relay, Cause::Tls, "handshake");
        let first = stats.status();
        assert_eq!(first.failing.as_deref(), Some("tls"));
        stats.relay_failing(&relay, Cause::Tls, "handshake");
        assert_eq!(stats.status().since_ms, first.since_ms, "no new state");
        stats.relay_ok(&relay);
        stats.attempt();
        stats.ended(Ended::Delivered, None);
        assert_eq!(stats.status().failing, None);
        let s = stats.counters();
        assert_eq!((s.attempts, s.delivered, s.deferred, s.dead), (2, 1, 1, 0));
        assert_eq!(stats.failures(Cause::Tls), 1);
    }
}
