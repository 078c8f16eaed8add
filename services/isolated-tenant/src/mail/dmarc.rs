//! DMARC-aware `From` rewriting. A copy of Alice's message reaches members signed by the
//! group's domain, not Alice's; when Alice's domain publishes a DMARC policy of `quarantine` or
//! `reject`, receivers would bin the copy. Rewriting `From` to `"Alice via <group>" <group
//! address>` (with `Reply-To: Alice`) keeps it deliverable. Whether to rewrite is a setting:
//! never, always, or when the sender's domain publishes such a policy.
//!
//! DNS goes through [`TxtResolver`], so tests answer it themselves. [`SystemResolver`] asks the
//! first `nameserver` of `/etc/resolv.conf` over UDP. Only the sender's exact domain is
//! looked up (`_dmarc.<domain>`), not its organizational domain.

use async_trait::async_trait;
use rand::Rng as _;
use std::net::SocketAddr;
use std::time::Duration;

/// When `From` is rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum FromRewrite {
    /// Never: copies keep the sender's `From`.
    #[default]
    Never,
    /// Always.
    Always,
    /// When the sender's domain publishes DMARC `p=quarantine` or `p=reject`.
    Dmarc,
}

/// Answers DNS TXT questions.
#[async_trait]
pub trait TxtResolver: Send + Sync + 'static {
    /// The TXT records of `name` (none when there are none or DNS fails).
    async fn txt(&self, name: &str) -> Vec<String>;
}

/// Whether `domain`'s DMARC record asks receivers to quarantine or reject failing mail.
pub async fn strict_policy(resolver: &dyn TxtResolver, domain: &str) -> bool {
    resolver
        .txt(&format!("_dmarc.{domain}"))
        .await
        .iter()
        .filter(|r| r.trim_start().to_ascii_lowercase().starts_with("v=dmarc1"))
        .any(|r| {
            r.split(';').any(|tag| {
                let tag = tag.trim().to_ascii_lowercase().replace(' ', "");
                tag == "p=quarantine" || tag == "p=reject"
            })
        })
}

/// TXT lookups over UDP to the system's first name server.
#[derive(Debug, Clone)]
pub struct SystemResolver {
    server: SocketAddr,
}

impl SystemResolver {
    /// The first `nameserver` of `/etc/resolv.conf` (127.0.0.1 when there is none).
    pub fn from_system() -> Self {
        let server = std::fs::read_to_string("/etc/resolv.conf")
            .ok()
            .and_then(|t| {
                t.lines()
                    .filter_map(|l| l.trim().strip_prefix("nameserver"))
                    .find_map(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
            })
            .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
        Self {
            server: SocketAddr::new(server, 53),
        }
    }
}

#[async_trait]
impl TxtResolver for SystemResolver {
    async fn txt(&self, name: &str) -> Vec<String> {
        match tokio::time::timeout(Duration::from_secs(3), query_txt(self.server, name)).await {
            Ok(Ok(records)) => records,
            _ => Vec::new(),
        }
    }
}

async fn query_txt(server: SocketAddr, name: &str) -> std::io::Result<Vec<String>> {
    let bind: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = tokio::net::UdpSocket::bind(bind).await?;
    let id: u16 = rand::thread_rng().gen();
    let packet = encode_query(id, name)?;
    socket.send_to(&packet, server).await?;
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, from) = socket.recv_from(&mut buf).await?;
        if from == server && n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
            return Ok(decode_txt(&buf[..n]).unwrap_or_default());
        }
    }
}

fn encode_query(id: u16, name: &str) -> std::io::Result<Vec<u8>> {
    let mut p = Vec::with_capacity(64);
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD; one question
    for label in name.trim_end_matches('.').split('.') {
        let len = u8::try_from(label.len())
            .ok()
            .filter(|l| (1..64).contains(l))
            .ok_or_else(|| std::io::Error::other("bad DNS label"))?;
        p.push(len);
        p.extend_from_slice(label.as_bytes());
    }
    p.push(0);
    p.extend_from_slice(&[0, 16, 0, 1]); // TXT, IN
    Ok(p)
}

/// Skips a (possibly compressed) name at `pos`; the position after it.
fn skip_name(msg: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *msg.get(pos)?;
        if len & 0xc0 == 0xc0 {
            return Some(pos + 2);
        }
        if len == 0 {
            return Some(pos + 1);
        }
        pos += 1 + usize::from(len);
    }
}

fn decode_txt(msg: &[u8]) -> Option<Vec<String>> {
    let count = |i: usize| {
        Some(usize::from(u16::from_be_bytes([
            *msg.get(i)?,
            *msg.get(i + 1)?,
        ])))
    };
    let (questions, answers) = (count(4)?, count(6)?);
    let mut pos = 12;
    for _ in 0..questions {
        pos = skip_name(msg, pos)? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..answers {
        pos = skip_name(msg, pos)?;
        let rtype = count(pos)?;
        let rdlen = count(pos + 8)?;
        let rdata = msg.get(pos + 10..pos + 10 + rdlen)?;
        pos += 10 + rdlen;
        if rtype != 16 {
            continue;
        }
        let mut text = Vec::new();
        let mut i = 0;
        while i < rdata.len() {
            let l = usize::from(rdata[i]);
            text.extend_from_slice(rdata.get(i + 1..i + 1 + l)?);
            i += 1 + l;
        }
        out.push(String::from_utf8_lossy(&text).into_owned());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Stub;

    #[async_trait]
    impl TxtResolver for Stub {
        async fn txt(&self, name: &str) -> Vec<String> {
            match name {
                "_dmarc.strict.example" => {
                    vec!["v=DMARC1; p=reject; rua=mailto:d@strict.example".into()]
                }
                "_dmarc.soft.example" => vec!["v=DMARC1; p=none".into()],
                "_dmarc.quarantine.example" => {
                    vec!["v=spf1 -all".into(), "v=DMARC1;p = quarantine".into()]
                }
                _ => vec![],
            }
        }
    }

    #[tokio::test]
    async fn only_quarantine_and_reject_policies_are_strict() {
        assert!(strict_policy(&Stub, "strict.example").await);
        assert!(strict_policy(&Stub, "quarantine.example").await);
        assert!(!strict_policy(&Stub, "soft.example").await);
        assert!(!strict_policy(&Stub, "none.example").await);
    }

    #[test]
    fn a_txt_answer_decodes() {
        let mut q = encode_query(7, "_dmarc.x.example").unwrap();
        q[2] = 0x81; // a response
        q[7] = 1; // one answer
        q.extend_from_slice(&[0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 60, 0, 15]);
        q.extend_from_slice(b"\x05v=DMA\x08RC1;p=no");
        assert_eq!(decode_txt(&q).unwrap(), vec!["v=DMARC1;p=no".to_string()]);
    }
}
