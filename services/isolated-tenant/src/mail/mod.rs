//! Mail expansion (INV-7): SMTP in, expand the group, SMTP out.
//!
//! The corporate mail system routes the groups' domain to the tenant's SMTP listener
//! ([`listener`]). A message for an active group's address is accepted only from a sender the
//! group's policy admits ([`policy`]); its headers are cleaned once ([`headers`]) and it is
//! stored sealed, together with its delivery queue, in one transaction, before the tenant
//! answers `250` ([`store`]). Delivery workers ([`delivery`]) lease queue rows and hand each
//! batch of members to the corporate relay over SMTP ([`client`]) — or, in `hush up`, to a
//! Maildir sink — with the tenant's opaque bounce address as envelope sender, so bounces and
//! auto-replies come back to the tenant ([`bounce`]) and stop there.
//!
//! Members are envelope recipients only: no header of any copy names one.
//!
//! Where a group's label allows it, a member may post anonymously through the group's alias
//! (`<local>+anon@<domain>`): the alias takes mail from members only ([`policy`]), and every
//! copy's headers are rebuilt so that none names or traces the sender ([`anonymous`]).

pub mod anonymous;
pub mod api;
pub mod bounce;
pub mod client;
pub mod delivery;
pub mod dkim;
pub mod dmarc;
pub mod headers;
pub mod listener;
pub mod policy;
pub mod relay;
pub mod store;
#[cfg(test)]
mod testdns;
#[cfg(test)]
mod tests;
pub mod watch;

use crate::identity::CorporateDomains;
use crate::seal::SealKeys;
use crate::store::StoreError;
use service_kit::retry::{self, Retry};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How the listener and the workers try a mail write again: five tries, pausing 20 ms more
/// each time. Each mail write is one transaction that commits whole or not at all, so a retry
/// never doubles anything.
const STORE_RETRY: Retry = Retry::new(5, Duration::from_millis(20));

/// Which store failures mail tries again: the transient ones ([`retry::is_transient`]), and
/// also a pool that had no free connection in time: the listener's and the workers' callers
/// (a relay, the queue) would otherwise only try again minutes later.
fn worth_retrying(e: &StoreError) -> bool {
    matches!(e, StoreError::Db(e) if retry::is_transient(e) || retry::is_pool_timeout(e))
}

/// Where delivered copies go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relay {
    /// An SMTP smarthost: the corporate mail system's relay, by name (resolved at each
    /// connection) or address, secured as `HUSH_MAIL_RELAY_TLS` says.
    Smtp(relay::RelayHost),
    /// A directory of Maildir folders, one per recipient (`<dir>/<address>/new/…`): a stand-in
    /// for the corporate mail system in `hush up` and the benchmarks. It lives outside the
    /// tenant's database and names recipients, as any mail system's mailboxes do; never use it
    /// in production.
    Maildir(PathBuf),
}

impl std::str::FromStr for Relay {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(dir) = s.strip_prefix("maildir:") {
            if dir.is_empty() {
                return Err("maildir: needs a directory".into());
            }
            return Ok(Relay::Maildir(PathBuf::from(dir)));
        }
        let host = s.strip_prefix("smtp://").unwrap_or(s).trim_end_matches('/');
        host.parse().map(Relay::Smtp).map_err(|e| {
            format!("{e}; HUSH_MAIL_RELAY is host:port (smtp:// optional) or maildir:/directory")
        })
    }
}

/// The tenant's mail settings (all `HUSH_MAIL_*`).
#[derive(Debug, Clone, clap::Args)]
pub struct MailArgs {
    /// Where the SMTP listener binds (the corporate mail system routes the groups' domain
    /// here). Unset: no listener, and no delivery workers either.
    #[arg(long = "mail-listen", id = "mail_listen", env = "HUSH_MAIL_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// The name the listener greets with and the relay client says hello as.
    #[arg(
        long = "mail-hostname",
        id = "mail_hostname",
        env = "HUSH_MAIL_HOSTNAME",
        default_value = "hush-tenant.localhost"
    )]
    pub hostname: String,
    /// The domain of the tenant's bounce addresses (`bounce+<token>@<domain>`): the envelope
    /// sender of every copy. The corporate mail system must route it to the tenant too.
    #[arg(
        long = "mail-bounce-domain",
        id = "mail_bounce_domain",
        env = "HUSH_MAIL_BOUNCE_DOMAIN",
        default_value = "bounces.hush.localhost"
    )]
    pub bounce_domain: String,
    /// Where copies go: `host:port` of the corporate relay (`relay.corp.example:25`; a name
    /// is resolved at each connection; `smtp://` in front is accepted) or `maildir:/dir` (a
    /// local sink for development). Unset: messages are accepted and queued, and wait for a
    /// relay.
    #[arg(long = "mail-relay", id = "mail_relay", env = "HUSH_MAIL_RELAY")]
    pub relay: Option<Relay>,
    /// How the connection to the relay is secured, and its credentials
    /// (`HUSH_MAIL_RELAY_TLS`, `HUSH_MAIL_RELAY_CA_FILE`, `HUSH_MAIL_RELAY_AUTH_FILE`).
    #[command(flatten)]
    pub outbound: relay::RelayArgs,
    /// Largest message accepted, in bytes (advertised as SIZE; larger → 552).
    #[arg(
        long = "mail-max-message-bytes",
        id = "mail_max_message_bytes",
        env = "HUSH_MAIL_MAX_MESSAGE_BYTES",
        default_value_t = 25 * 1024 * 1024
    )]
    pub max_message_bytes: usize,
    /// Most SMTP connections served at once; more are answered 421 and closed.
    #[arg(
        long = "mail-max-connections",
        id = "mail_max_connections",
        env = "HUSH_MAIL_MAX_CONNECTIONS",
        default_value_t = 64
    )]
    pub max_connections: usize,
    /// Mail relays (IP addresses or CIDR networks, comma-separated) trusted to have
    /// authenticated the envelope sender of what they hand over (authenticated submission,
    /// SPF and DMARC checked at the company's edge). A group that only its members or owners
    /// may write to takes mail only from these; from anywhere else the sender is a claim and
    /// the message is dropped unread, whoever it names. Empty: no relay is trusted.
    #[arg(
        long = "mail-trusted-relays",
        id = "mail_trusted_relays",
        env = "HUSH_MAIL_TRUSTED_RELAYS",
        value_delimiter = ',',
        value_parser = parse_relay
    )]
    pub trusted_relays: Vec<ipnet::IpNet>,
    /// Most SMTP connections served at once from one address; more from it are answered 421
    /// and closed, so one peer cannot take every connection. Raise it for a front relay that
    /// hands over all inbound mail from one address.
    #[arg(
        long = "mail-max-connections-per-peer",
        id = "mail_max_connections_per_peer",
        env = "HUSH_MAIL_MAX_CONNECTIONS_PER_PEER",
        default_value_t = 8
    )]
    pub max_connections_per_peer: usize,
    /// Most messages one connection may send before it is closed with 421.
    #[arg(
        long = "mail-max-messages-per-connection",
        id = "mail_max_messages_per_connection",
        env = "HUSH_MAIL_MAX_MESSAGES_PER_CONNECTION",
        default_value_t = 100
    )]
    pub max_messages_per_connection: usize,
    /// Most recipients (group or bounce addresses) of one message; more are answered 452.
    #[arg(
        long = "mail-max-recipients",
        id = "mail_max_recipients",
        env = "HUSH_MAIL_MAX_RECIPIENTS",
        default_value_t = 50
    )]
    pub max_recipients: usize,
    /// Seconds the listener waits for a command (RFC 5321 suggests 5 minutes).
    #[arg(
        long = "mail-command-timeout-secs",
        id = "mail_command_timeout_secs",
        env = "HUSH_MAIL_COMMAND_TIMEOUT_SECS",
        default_value_t = 300
    )]
    pub command_timeout_secs: u64,
    /// Seconds the listener waits for a command while no message is under way: after the
    /// greeting, and between messages (before MAIL). Short, so idle connections do not hold
    /// the listener's slots; once MAIL is given the command timeout applies.
    #[arg(
        long = "mail-idle-timeout-secs",
        id = "mail_idle_timeout_secs",
        env = "HUSH_MAIL_IDLE_TIMEOUT_SECS",
        default_value_t = 30
    )]
    pub idle_timeout_secs: u64,
    /// Seconds the listener waits for the whole message body after DATA.
    #[arg(
        long = "mail-data-timeout-secs",
        id = "mail_data_timeout_secs",
        env = "HUSH_MAIL_DATA_TIMEOUT_SECS",
        default_value_t = 600
    )]
    pub data_timeout_secs: u64,
    /// Members per relay transaction (envelope recipients of one copy handed to the trusted
    /// relay; INV-7 allows batching to a trusted relay).
    #[arg(
        long = "mail-batch-recipients",
        id = "mail_batch_recipients",
        env = "HUSH_MAIL_BATCH_RECIPIENTS",
        default_value_t = 100
    )]
    pub batch_recipients: usize,
    /// Relay transactions in flight at once, per replica.
    #[arg(
        long = "mail-delivery-workers",
        id = "mail_delivery_workers",
        env = "HUSH_MAIL_DELIVERY_WORKERS",
        default_value_t = 8
    )]
    pub delivery_workers: usize,
    /// Attempts before a delivery becomes a dead letter.
    #[arg(
        long = "mail-max-attempts",
        id = "mail_max_attempts",
        env = "HUSH_MAIL_MAX_ATTEMPTS",
        default_value_t = 8
    )]
    pub max_attempts: u32,
    /// Days a delivered copy's queue row is kept (its bounce token binds a late bounce to it);
    /// then it is deleted. Message bodies are wiped as soon as their last delivery ends.
    #[arg(
        long = "mail-delivered-retention-days",
        id = "mail_delivered_retention_days",
        env = "HUSH_MAIL_DELIVERED_RETENTION_DAYS",
        default_value_t = 7
    )]
    pub delivered_retention_days: u32,
    /// Days a dead letter's queue row is kept, counted by the operators' mail counts; then it
    /// is deleted.
    #[arg(
        long = "mail-dead-retention-days",
        id = "mail_dead_retention_days",
        env = "HUSH_MAIL_DEAD_RETENTION_DAYS",
        default_value_t = 30
    )]
    pub dead_retention_days: u32,
    /// Age in seconds past which the oldest queued delivery is reported by `/readyz` (in its
    /// `degraded` object; the tenant stays ready: the queue is shared by every replica and
    /// taking one out of service would not drain it). `hush_mail_queue_oldest_age_seconds`
    /// shows the age itself. 0: never reported.
    #[arg(
        long = "mail-queue-age-alert-secs",
        id = "mail_queue_age_alert_secs",
        env = "HUSH_MAIL_QUEUE_AGE_ALERT_SECS",
        default_value_t = 900
    )]
    pub queue_age_alert_secs: u64,
    /// Seconds before the first retry; each further retry waits twice as long (at most an hour).
    #[arg(
        long = "mail-retry-base-secs",
        id = "mail_retry_base_secs",
        env = "HUSH_MAIL_RETRY_BASE_SECS",
        default_value_t = 60
    )]
    pub retry_base_secs: u64,
    /// Relay transactions per second per destination domain, per replica; 0: unlimited.
    #[arg(
        long = "mail-rate-per-sec",
        id = "mail_rate_per_sec",
        env = "HUSH_MAIL_RATE_PER_SEC",
        default_value_t = 0
    )]
    pub rate_per_sec: u32,
    /// Recipients per day per destination domain, per replica (like a cloud tenant's recipient
    /// limit); over it, deliveries wait for the next day. 0: unlimited.
    #[arg(
        long = "mail-recipients-per-day",
        id = "mail_recipients_per_day",
        env = "HUSH_MAIL_RECIPIENTS_PER_DAY",
        default_value_t = 0
    )]
    pub recipients_per_day: u64,
    /// Seconds a worker holds a delivery it leased; after a crash, another worker (or the
    /// restarted tenant) sends it once this has passed. Keep it well above the time one relay
    /// transaction can take.
    #[arg(
        long = "mail-lease-secs",
        id = "mail_lease_secs",
        env = "HUSH_MAIL_LEASE_SECS",
        default_value_t = 300
    )]
    pub lease_secs: u64,
    /// When copies get `From: "<sender> via <group>" <group address>` (and `Reply-To: <sender>`):
    /// `never`, `always`, or `dmarc` (when the sender's domain publishes DMARC
    /// `p=quarantine` or `p=reject`, looked up in DNS).
    #[arg(
        long = "mail-from-rewrite",
        id = "mail_from_rewrite",
        env = "HUSH_MAIL_FROM_REWRITE",
        value_enum,
        default_value = "never"
    )]
    pub from_rewrite: dmarc::FromRewrite,
    /// The certificate chain (PEM) the listener offers STARTTLS with; with
    /// `--mail-tls-key-file`. Unset: no STARTTLS (keep the listener on an internal network).
    #[arg(
        long = "mail-tls-cert-file",
        id = "mail_tls_cert_file",
        env = "HUSH_MAIL_TLS_CERT_FILE"
    )]
    pub tls_cert_file: Option<PathBuf>,
    /// The private key (PEM) of `--mail-tls-cert-file`.
    #[arg(
        long = "mail-tls-key-file",
        id = "mail_tls_key_file",
        env = "HUSH_MAIL_TLS_KEY_FILE"
    )]
    pub tls_key_file: Option<PathBuf>,
    /// The domain whose groups' mail is DKIM-signed (`d=`), usually the groups' mail domain.
    /// Unset: no signing.
    #[arg(
        long = "mail-dkim-domain",
        id = "mail_dkim_domain",
        env = "HUSH_MAIL_DKIM_DOMAIN"
    )]
    pub dkim_domain: Option<String>,
    /// The DKIM selector (`s=`): the key is published at `<selector>._domainkey.<domain>`.
    #[arg(
        long = "mail-dkim-selector",
        id = "mail_dkim_selector",
        env = "HUSH_MAIL_DKIM_SELECTOR",
        default_value = "hush"
    )]
    pub dkim_selector: String,
    /// The RSA private key (PEM, PKCS#8 or PKCS#1) that signs, when `--mail-dkim-domain` is set.
    #[arg(
        long = "mail-dkim-key-file",
        id = "mail_dkim_key_file",
        env = "HUSH_MAIL_DKIM_KEY_FILE"
    )]
    pub dkim_key_file: Option<PathBuf>,
    /// Also ARC-seal the copies (RFC 8617) with the DKIM key, so the authentication results
    /// the corporate MTA recorded on the way in survive the tenant's changes to the headers.
    #[arg(
        long = "mail-arc",
        id = "mail_arc",
        env = "HUSH_MAIL_ARC",
        default_value_t = false
    )]
    pub arc: bool,
    /// Domains whose senders are internal and aligned (comma-separated; their subdomains
    /// too): their `From` is never rewritten, whatever `--mail-from-rewrite` says.
    #[arg(
        long = "mail-aligned-domains",
        id = "mail_aligned_domains",
        env = "HUSH_MAIL_ALIGNED_DOMAINS",
        value_delimiter = ','
    )]
    pub aligned_domains: Vec<String>,
    /// The one DNS server (`host:port`, an IP address) for DMARC and ARC lookups, in place of
    /// the name servers of `/etc/resolv.conf`. For tests and split-horizon setups.
    #[arg(
        long = "mail-dns-server",
        id = "mail_dns_server",
        env = "HUSH_MAIL_DNS_SERVER"
    )]
    pub dns_server: Option<SocketAddr>,
    /// Seconds one DNS lookup (UDP, then TCP) may take before it counts as failed; a DMARC
    /// lookup that fails rewrites `From`.
    #[arg(
        long = "mail-dns-timeout-secs",
        id = "mail_dns_timeout_secs",
        env = "HUSH_MAIL_DNS_TIMEOUT_SECS",
        default_value_t = 5
    )]
    pub dns_timeout_secs: u64,
    /// Hard bounces after which a delivery address is marked bad and skipped.
    #[arg(
        long = "mail-hard-bounce-limit",
        id = "mail_hard_bounce_limit",
        env = "HUSH_MAIL_HARD_BOUNCE_LIMIT",
        default_value_t = 3
    )]
    pub hard_bounce_limit: u32,
}

/// A trusted relay: an IP address (`10.0.0.25`, `::1`) or a CIDR network (`10.1.0.0/24`).
pub fn parse_relay(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("'{s}' is neither an IP address nor a CIDR network"))
}

impl Default for MailArgs {
    /// Mail off: no listener, no relay, the documented limits.
    fn default() -> Self {
        Self {
            listen: None,
            hostname: "hush-tenant.localhost".into(),
            bounce_domain: "bounces.hush.localhost".into(),
            relay: None,
            outbound: relay::RelayArgs::default(),
            max_message_bytes: 25 * 1024 * 1024,
            max_connections: 64,
            max_connections_per_peer: 8,
            trusted_relays: Vec::new(),
            max_messages_per_connection: 100,
            max_recipients: 50,
            command_timeout_secs: 300,
            idle_timeout_secs: 30,
            data_timeout_secs: 600,
            batch_recipients: 100,
            delivery_workers: 8,
            max_attempts: 8,
            delivered_retention_days: 7,
            dead_retention_days: 30,
            queue_age_alert_secs: 900,
            retry_base_secs: 60,
            rate_per_sec: 0,
            recipients_per_day: 0,
            lease_secs: 300,
            from_rewrite: dmarc::FromRewrite::Never,
            tls_cert_file: None,
            tls_key_file: None,
            dkim_domain: None,
            dkim_selector: "hush".into(),
            dkim_key_file: None,
            arc: false,
            aligned_domains: Vec::new(),
            dns_server: None,
            dns_timeout_secs: 5,
            hard_bounce_limit: 3,
        }
    }
}

impl MailArgs {
    fn command_timeout(&self) -> Duration {
        Duration::from_secs(self.command_timeout_secs.max(1))
    }

    /// Whether mail from `peer` comes through a relay trusted to have authenticated its sender.
    pub fn is_trusted_relay(&self, peer: std::net::IpAddr) -> bool {
        let peer = match peer {
            std::net::IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
            v4 => v4,
        };
        self.trusted_relays.iter().any(|net| net.contains(&peer))
    }

    fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs.max(1))
    }

    fn data_timeout(&self) -> Duration {
        Duration::from_secs(self.data_timeout_secs.max(1))
    }

    /// The STARTTLS acceptor the settings name, if any.
    pub fn load_tls(&self) -> anyhow::Result<Option<tokio_rustls::TlsAcceptor>> {
        use tokio_rustls::rustls;
        use tokio_rustls::rustls::pki_types::pem::PemObject as _;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let (cert, key) = match (&self.tls_cert_file, &self.tls_key_file) {
            (None, None) => return Ok(None),
            (Some(c), Some(k)) => (c, k),
            _ => anyhow::bail!(
                "STARTTLS needs both HUSH_MAIL_TLS_CERT_FILE and HUSH_MAIL_TLS_KEY_FILE, or neither"
            ),
        };
        let certs = CertificateDer::pem_file_iter(cert)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", cert.display()))?;
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", key.display()))?;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
        Ok(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
    }

    /// The DKIM signer the settings name, if any. A key that cannot serve (an RSA key under
    /// 2048 bits; an Ed25519 key with `--mail-arc`) stops the start with the reason.
    pub fn load_dkim(&self) -> anyhow::Result<Option<dkim::DkimSigner>> {
        match (&self.dkim_domain, &self.dkim_key_file) {
            (None, None) => Ok(None),
            (Some(domain), Some(path)) => {
                let signer = dkim::DkimSigner::load(domain, &self.dkim_selector, path)?;
                if self.arc && !signer.can_seal() {
                    anyhow::bail!(
                        "HUSH_MAIL_ARC needs an RSA DKIM key: ARC signs only with rsa-sha256"
                    );
                }
                Ok(Some(signer))
            }
            _ => anyhow::bail!(
                "DKIM needs both HUSH_MAIL_DKIM_DOMAIN and HUSH_MAIL_DKIM_KEY_FILE, or neither"
            ),
        }
    }

    /// The DNS of the DMARC and ARC lookups.
    pub fn load_dns(&self) -> anyhow::Result<dmarc::Dns> {
        dmarc::Dns::new(
            self.dns_server,
            Duration::from_secs(self.dns_timeout_secs.max(1)),
        )
    }
}

/// What the listener and the workers share.
#[derive(Clone)]
pub struct MailContext {
    /// The settings.
    pub args: Arc<MailArgs>,
    /// The message store and queue.
    pub store: Arc<dyn store::MailStore>,
    /// The corporate domains (the `anyone` sender policy).
    pub corporate: Arc<CorporateDomains>,
    /// Signs the copies of groups in its domain, when configured.
    pub dkim: Option<Arc<dkim::DkimSigner>>,
    /// Offers STARTTLS with the configured certificate.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// DNS for the DMARC lookups of `From` rewriting and the keys of ARC verification.
    pub dns: dmarc::Dns,
    /// Wakes idle delivery workers when a message is accepted, so the first copy leaves at
    /// once instead of at the next poll.
    pub wake: Arc<tokio::sync::Notify>,
    /// How the workers secure the relay connection, and their credentials.
    pub relay_security: Arc<relay::RelaySecurity>,
    /// The relay's health and the delivery counters (shown on the mail counts route).
    pub relay_stats: Arc<relay::RelayStats>,
}

impl MailContext {
    /// The context of the listener and workers over `store`.
    pub fn new(
        args: &MailArgs,
        store: Arc<dyn store::MailStore>,
        corporate: CorporateDomains,
    ) -> Self {
        Self {
            args: Arc::new(args.clone()),
            store,
            corporate: Arc::new(corporate),
            dkim: None,
            tls: None,
            dns: args.load_dns().unwrap_or_else(|e| {
                // No usable resolver: every lookup fails, so DMARC rewrites (the safe side).
                tracing::warn!(error = %e, "no DNS for mail authentication");
                dmarc::Dns::new(Some(([127, 0, 0, 1], 0).into()), Duration::from_secs(1))
                    .expect("a resolver with one name server builds")
            }),
            wake: Arc::new(tokio::sync::Notify::new()),
            // No files to read here: STARTTLS against the built-in roots, or plaintext when
            // configured so. [`Self::with_relay_security`] brings a CA file and credentials.
            relay_security: Arc::new(
                relay::RelayArgs {
                    tls: args.outbound.tls,
                    ..relay::RelayArgs::default()
                }
                .load()
                .expect("without files, the relay settings always load"),
            ),
            relay_stats: Arc::default(),
        }
    }

    /// Secures the relay connection as `security` says (loaded from the settings' files).
    #[must_use]
    pub fn with_relay_security(mut self, security: relay::RelaySecurity) -> Self {
        self.relay_security = Arc::new(security);
        self
    }

    /// Counts deliveries into `stats` (shared with the API's status route).
    #[must_use]
    pub fn with_relay_stats(mut self, stats: Arc<relay::RelayStats>) -> Self {
        self.relay_stats = stats;
        self
    }

    /// Offers STARTTLS with `acceptor`.
    #[must_use]
    pub fn with_tls(mut self, acceptor: Option<tokio_rustls::TlsAcceptor>) -> Self {
        self.tls = acceptor;
        self
    }

    /// Signs with `signer`.
    #[must_use]
    pub fn with_dkim(mut self, signer: Option<dkim::DkimSigner>) -> Self {
        self.dkim = signer.map(Arc::new);
        self
    }
}

/// The running mail side: the listener's address, and handles to stop it.
pub struct MailService {
    /// Where the SMTP listener is bound.
    pub addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl MailService {
    /// Stops the listener and the workers (a delivery in flight is dropped; its lease expires
    /// and another worker sends it).
    pub fn abort(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for MailService {
    fn drop(&mut self) {
        self.abort();
    }
}

/// Starts the mail side when `args.listen` is set: opens the store on `database_url` (already
/// migrated by the main store), binds the listener, and starts the delivery workers.
pub async fn start(
    args: &MailArgs,
    database_url: &str,
    keys: Arc<SealKeys>,
    corporate: CorporateDomains,
) -> anyhow::Result<Option<MailService>> {
    let Some(listen) = args.listen else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let store = store::connect(database_url, keys).await?;
    let ctx = MailContext::new(args, store, corporate)
        .with_dkim(args.load_dkim()?)
        .with_tls(args.load_tls()?)
        .with_relay_security(args.outbound.load()?);
    Ok(Some(start_on(ctx, listener)))
}

/// Starts the listener on `listener` and the delivery workers (when a relay is configured).
pub fn start_on(ctx: MailContext, listener: tokio::net::TcpListener) -> MailService {
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    tracing::info!(%addr, "mail listener up");
    let mut tasks = vec![tokio::spawn(listener::serve(ctx.clone(), listener))];
    if let Some(relay) = ctx.args.relay.clone() {
        tasks.push(tokio::spawn(delivery::run(ctx, relay)));
    }
    MailService { addr, tasks }
}
