//! DMARC-aware `From` rewriting (RFC 7489), and the DNS the mail side uses.
//!
//! A copy of Alice's message reaches members signed by the group's domain, not Alice's; when
//! Alice's domain publishes a DMARC policy of `quarantine` or `reject`, receivers would bin the
//! copy. Rewriting `From` to `"Alice via <group>" <group address>` (with `Reply-To: Alice`)
//! keeps it deliverable. Whether to rewrite is a setting: never, always, or when the sender's
//! domain asks for it.
//!
//! - The policy is looked up at `_dmarc.<domain>`, and when there is no record there, at
//!   `_dmarc.<organizational domain>` (the registrable domain by the Public Suffix List,
//!   RFC 7489, 6.6.3), whose `sp=` (or else `p=`) applies to its subdomains.
//! - When DNS does not answer (timeout, `SERVFAIL`, refused), the copy **is rewritten**: an
//!   unknown policy is treated as a strict one, because a wrong rewrite costs a display name
//!   while a wrong "no rewrite" loses the copy at every receiver that enforces the policy.
//!   A name that does not exist (`NXDOMAIN`) or has no DMARC record is a policy of "none".
//! - Senders in the aligned domains (`HUSH_MAIL_ALIGNED_DOMAINS`, and their subdomains) and
//!   senders whose organizational domain is the signing domain's are never rewritten: their
//!   copies pass DMARC through the DKIM signature (relaxed alignment) or internal routing.
//!
//! [`Dns`] is hickory's resolver (through `mail-auth`): every name server of
//! `/etc/resolv.conf`, or the one `HUSH_MAIL_DNS_SERVER` names, over UDP with a retry over TCP
//! when an answer is truncated or UDP fails; each lookup bounded by `HUSH_MAIL_DNS_TIMEOUT_SECS`.

use mail_auth::hickory_resolver::config::{
    NameServerConfig, NameServerConfigGroup, ProtocolConfig, ResolverConfig, ResolverOpts,
};
use mail_auth::hickory_resolver::proto::op::ResponseCode;
use mail_auth::hickory_resolver::proto::ProtoErrorKind;
use mail_auth::hickory_resolver::Name;
use mail_auth::MessageAuthenticator;
use std::net::SocketAddr;
use std::time::Duration;

/// When `From` is rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum FromRewrite {
    /// Never: copies keep the sender's `From`.
    #[default]
    Never,
    /// Always (except senders in aligned domains).
    Always,
    /// When the sender's domain (or its organizational domain) publishes DMARC
    /// `p=quarantine` or `p=reject`, or DNS does not say (except senders in aligned domains).
    Dmarc,
}

/// The DNS of the mail side: DMARC policies here, DKIM keys for ARC verification.
#[derive(Clone)]
pub struct Dns {
    authenticator: MessageAuthenticator,
    timeout: Duration,
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dns")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What a TXT lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The records, each with its strings joined.
    Records(Vec<String>),
    /// The name does not exist, or has no TXT records.
    NotFound,
    /// DNS did not answer: timeout, `SERVFAIL`, refused, no server reachable.
    Failed,
}

impl Dns {
    /// The system's name servers (`/etc/resolv.conf`), or only `server` when given; each
    /// lookup gives up after `timeout`.
    pub fn new(server: Option<SocketAddr>, timeout: Duration) -> anyhow::Result<Self> {
        let (config, mut opts) = match server {
            Some(addr) => {
                let mut group = NameServerConfigGroup::with_capacity(2);
                group.push(NameServerConfig::new(addr, ProtocolConfig::Udp));
                group.push(NameServerConfig::new(addr, ProtocolConfig::Tcp));
                (
                    ResolverConfig::from_parts(None, vec![], group),
                    ResolverOpts::default(),
                )
            }
            None => mail_auth::hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| anyhow::anyhow!("reading /etc/resolv.conf: {e}"))?,
        };
        // A lookup gets the whole budget split over two tries; TCP when UDP fails or truncates.
        opts.timeout = (timeout / 2).max(Duration::from_millis(100));
        opts.attempts = 2;
        opts.try_tcp_on_error = true;
        opts.ndots = 0;
        let authenticator = MessageAuthenticator::new(config, opts)
            .map_err(|e| anyhow::anyhow!("setting up DNS: {e}"))?;
        Ok(Self {
            authenticator,
            timeout,
        })
    }

    /// The resolver, for `mail-auth`'s DKIM and ARC verification.
    pub fn authenticator(&self) -> &MessageAuthenticator {
        &self.authenticator
    }

    /// The most one lookup (or one verification) may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The TXT records of `name`.
    pub async fn txt(&self, name: &str) -> Lookup {
        let Ok(fqdn) = Name::from_str_relaxed(format!("{}.", name.trim_end_matches('.'))) else {
            return Lookup::NotFound;
        };
        let resolver = self.authenticator.resolver();
        match tokio::time::timeout(self.timeout, resolver.txt_lookup(fqdn)).await {
            Err(_) => Lookup::Failed,
            Ok(Ok(found)) => Lookup::Records(
                found
                    .as_lookup()
                    .record_iter()
                    .filter_map(|r| r.data().as_txt())
                    .map(|txt| {
                        txt.txt_data()
                            .iter()
                            .map(|s| String::from_utf8_lossy(s).into_owned())
                            .collect::<String>()
                    })
                    .collect(),
            ),
            Ok(Err(e)) => match e.kind() {
                ProtoErrorKind::NoRecordsFound(none)
                    if matches!(
                        none.response_code,
                        ResponseCode::NXDomain | ResponseCode::NoError
                    ) =>
                {
                    Lookup::NotFound
                }
                _ => Lookup::Failed,
            },
        }
    }
}

/// A DMARC policy (`p=` or `sp=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// `none`: monitor only.
    None,
    /// `quarantine`.
    Quarantine,
    /// `reject`.
    Reject,
}

/// What DNS says about a sender domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Neither the domain nor its organizational domain publishes a DMARC record.
    NoRecord,
    /// The policy that applies.
    Policy(Policy),
    /// DNS did not answer.
    DnsFailed,
}

/// The policy of the one DMARC record among `records` (RFC 7489, 6.6.3: none when there are
/// several or none): `sp=` when `subdomain` and it is there, else `p=`. A record with a
/// missing or unknown `p=` is no record.
pub fn policy(records: &[String], subdomain: bool) -> Option<Policy> {
    let mut dmarc = records.iter().filter(|r| {
        r.trim_start()
            .get(..8)
            .is_some_and(|v| v.eq_ignore_ascii_case("v=DMARC1"))
    });
    let record = dmarc.next()?;
    if dmarc.next().is_some() {
        return None;
    }
    let tag = |name: &str| {
        record.split(';').find_map(|t| {
            let (k, v) = t.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_ascii_lowercase())
        })
    };
    let parse = |v: String| match v.as_str() {
        "none" => Some(Policy::None),
        "quarantine" => Some(Policy::Quarantine),
        "reject" => Some(Policy::Reject),
        _ => None,
    };
    let p = parse(tag("p")?)?;
    if subdomain {
        if let Some(sp) = tag("sp").and_then(parse) {
            return Some(sp);
        }
    }
    Some(p)
}

/// The organizational domain (RFC 7489, 3.2): the registrable domain by the Public Suffix
/// List, or the domain itself when the list knows no suffix for it.
pub fn organizational_domain(domain: &str) -> String {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    psl::domain_str(&domain).unwrap_or(&domain).to_string()
}

/// Looks the DMARC policy for mail from `domain` up: its own record, else its organizational
/// domain's.
pub async fn lookup(dns: &Dns, domain: &str) -> Verdict {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    match dns.txt(&format!("_dmarc.{domain}")).await {
        Lookup::Failed => return Verdict::DnsFailed,
        Lookup::Records(r) => {
            if let Some(p) = policy(&r, false) {
                return Verdict::Policy(p);
            }
        }
        Lookup::NotFound => {}
    }
    let org = organizational_domain(&domain);
    if org == domain {
        return Verdict::NoRecord;
    }
    match dns.txt(&format!("_dmarc.{org}")).await {
        Lookup::Failed => Verdict::DnsFailed,
        Lookup::Records(r) => policy(&r, true).map_or(Verdict::NoRecord, Verdict::Policy),
        Lookup::NotFound => Verdict::NoRecord,
    }
}

/// Whether mail from `domain` is internal: in one of the `aligned` domains (or below one), or
/// in the organizational domain of the signing domain (its copies pass DMARC by DKIM).
pub fn is_aligned(domain: &str, aligned: &[String], signing_domain: Option<&str>) -> bool {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let listed = aligned.iter().any(|a| {
        let a = a.trim().trim_end_matches('.').to_ascii_lowercase();
        !a.is_empty()
            && (domain == a
                || domain
                    .strip_suffix(&a)
                    .is_some_and(|rest| rest.ends_with('.')))
    });
    listed
        || signing_domain
            .is_some_and(|d| organizational_domain(d) == organizational_domain(&domain))
}

/// Whether a copy's `From` is rewritten, given the setting and (for `dmarc`) what DNS said.
pub fn must_rewrite(mode: FromRewrite, aligned: bool, verdict: Option<Verdict>) -> bool {
    if aligned {
        return false;
    }
    match mode {
        FromRewrite::Never => false,
        FromRewrite::Always => true,
        FromRewrite::Dmarc => match verdict {
            Some(Verdict::Policy(Policy::Quarantine | Policy::Reject) | Verdict::DnsFailed) => true,
            // No `From` domain to look up: nothing to align with, so nothing to protect.
            Some(Verdict::Policy(Policy::None) | Verdict::NoRecord) | None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_dmarc_record_gives_its_policy_and_subdomains_take_sp() {
        let r = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            policy(&r(&["v=DMARC1; p=reject; rua=mailto:d@x.example"]), false),
            Some(Policy::Reject)
        );
        assert_eq!(
            policy(&r(&["v=spf1 -all", "v=DMARC1;p = quarantine"]), false),
            Some(Policy::Quarantine)
        );
        assert_eq!(
            policy(&r(&["v=DMARC1; p=reject; sp=none"]), true),
            Some(Policy::None)
        );
        assert_eq!(
            policy(&r(&["v=DMARC1; p=reject; sp=none"]), false),
            Some(Policy::Reject)
        );
        assert_eq!(policy(&r(&["v=DMARC1; p=none"]), true), Some(Policy::None));
        // Two records, or none, or no p=: no policy (RFC 7489, 6.6.3).
        assert_eq!(
            policy(&r(&["v=DMARC1; p=reject", "v=DMARC1; p=none"]), false),
            None
        );
        assert_eq!(policy(&r(&["v=spf1 -all"]), false), None);
        assert_eq!(policy(&r(&["v=DMARC1; rua=mailto:x@y"]), false), None);
    }

    #[test]
    fn the_organizational_domain_follows_the_public_suffix_list() {
        assert_eq!(
            organizational_domain("mail.corp.example.co.uk"),
            "example.co.uk"
        );
        assert_eq!(
            organizational_domain("a.b.strict.example"),
            "strict.example"
        );
        assert_eq!(organizational_domain("Strict.Example."), "strict.example");
    }

    #[test]
    fn aligned_domains_and_their_subdomains_are_internal() {
        let aligned = vec!["corp.example".to_string()];
        assert!(is_aligned("corp.example", &aligned, None));
        assert!(is_aligned("eu.corp.example", &aligned, None));
        assert!(!is_aligned("evilcorp.example", &aligned, None));
        assert!(is_aligned("x.groups.example", &[], Some("groups.example")));
        assert!(!is_aligned("other.example", &[], Some("groups.example")));
    }

    #[test]
    fn dns_failure_rewrites_and_aligned_senders_never_are() {
        use FromRewrite::*;
        assert!(must_rewrite(Dmarc, false, Some(Verdict::DnsFailed)));
        assert!(must_rewrite(
            Dmarc,
            false,
            Some(Verdict::Policy(Policy::Reject))
        ));
        assert!(!must_rewrite(
            Dmarc,
            false,
            Some(Verdict::Policy(Policy::None))
        ));
        assert!(!must_rewrite(Dmarc, false, Some(Verdict::NoRecord)));
        assert!(!must_rewrite(Dmarc, true, Some(Verdict::DnsFailed)));
        assert!(!must_rewrite(Always, true, None));
        assert!(must_rewrite(Always, false, None));
        assert!(!must_rewrite(Never, false, Some(Verdict::DnsFailed)));
    }
}
