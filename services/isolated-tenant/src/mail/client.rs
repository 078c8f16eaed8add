//! A small SMTP client for handing copies to the corporate relay: the relay found by name at
//! each connection, STARTTLS (required unless configured otherwise) or TLS from the first
//! byte, SMTP AUTH PLAIN or LOGIN over TLS only, EHLO (HELO as a fallback on a plaintext
//! connection), one connection reused for many transactions, PIPELINING when the relay offers
//! it (RFC 2920), 8BITMIME and SMTPUTF8 passed on when the message needs them, and nothing
//! else — in particular no DSN parameters (RFC 3461), so no notification is ever requested.

use super::relay::{Cause, RelayHost, RelaySecurity, TlsMode};
use base64::Engine as _;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;

/// Longest reply line read from the relay.
const MAX_REPLY_LINE: usize = 4096;
/// Most lines of one reply (an EHLO lists a dozen extensions at most).
const MAX_REPLY_LINES: usize = 100;

/// One copy to hand over.
#[derive(Debug)]
pub struct Transaction<'a> {
    /// The envelope sender (the tenant's bounce address).
    pub from: &'a str,
    /// The envelope recipients.
    pub rcpts: &'a [String],
    /// The message, CRLF line ends, not dot-stuffed.
    pub data: &'a [u8],
    /// The message needs 8BITMIME.
    pub eightbit: bool,
    /// The envelope or the headers need SMTPUTF8.
    pub smtputf8: bool,
}

/// How a transaction ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// The relay took the message for the recipients not listed in `retry` (refused for now)
    /// or `rejected` (refused for good).
    Done {
        /// Recipients refused with 4xx (or 530).
        retry: Vec<String>,
        /// Recipients refused with 5xx.
        rejected: Vec<String>,
    },
    /// The relay refused the whole transaction for now: 4xx, or 530 (it wants TLS or AUTH
    /// first, which is a setting to fix, not a reason to drop the message).
    TempFail(String),
    /// The relay refused the whole transaction for good.
    PermFail(String),
}

/// Why the connection is no longer usable. The detail is in our words or a reply code, never
/// a reply's text (relays put addresses there).
#[derive(Debug, thiserror::Error)]
#[error("relay connection: {cause}: {detail}")]
pub struct ConnError {
    /// What kind of failure, for the counters and the relay's health.
    pub cause: Cause,
    /// What happened.
    pub detail: String,
}

impl ConnError {
    fn new(cause: Cause, detail: impl Into<String>) -> Self {
        Self {
            cause,
            detail: detail.into(),
        }
    }

    fn protocol(detail: impl Into<String>) -> Self {
        Self::new(Cause::Protocol, detail)
    }
}

impl From<std::io::Error> for ConnError {
    fn from(e: std::io::Error) -> Self {
        Self::protocol(e.to_string())
    }
}

/// A byte stream to the relay: TCP, or TLS over it.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An open SMTP session with the relay.
pub struct Connection {
    r: BufReader<Box<dyn Io>>,
    /// Commands not yet written: sent together when a reply is awaited (pipelining).
    out: Vec<u8>,
    pipelining: bool,
    eightbit: bool,
    smtputf8: bool,
    timeout: Duration,
}

/// A reply: its code and its text (lines joined).
struct Reply {
    code: u16,
    text: String,
}

impl Reply {
    fn class(&self) -> u16 {
        self.code / 100
    }
}

/// What an EHLO reply offered.
#[derive(Default)]
struct Offered {
    pipelining: bool,
    eightbit: bool,
    smtputf8: bool,
    starttls: bool,
    auth_plain: bool,
    auth_login: bool,
}

impl Offered {
    fn parse(text: &str) -> Self {
        let mut o = Self::default();
        // The first line is the relay's greeting; each further line one extension.
        for line in text.lines().skip(1) {
            let mut words = line.split_whitespace();
            let ext = words.next().unwrap_or_default().to_ascii_uppercase();
            match ext.as_str() {
                "PIPELINING" => o.pipelining = true,
                "8BITMIME" => o.eightbit = true,
                "SMTPUTF8" => o.smtputf8 = true,
                "STARTTLS" => o.starttls = true,
                "AUTH" => {
                    for m in words {
                        match m.to_ascii_uppercase().as_str() {
                            "PLAIN" => o.auth_plain = true,
                            "LOGIN" => o.auth_login = true,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        o
    }
}

impl Connection {
    /// Resolves `relay`'s name and connects, secures the connection as `security` says, reads
    /// the greeting, says EHLO, and authenticates when credentials are configured.
    pub async fn open(
        relay: &RelayHost,
        security: &RelaySecurity,
        hostname: &str,
        timeout: Duration,
    ) -> Result<Self, ConnError> {
        let tcp = tokio::time::timeout(
            timeout,
            TcpStream::connect((relay.host.as_str(), relay.port)),
        )
        .await
        .map_err(|_| ConnError::new(Cause::Connect, "connect timed out"))?
        .map_err(|e| ConnError::new(Cause::Connect, e.to_string()))?;
        tcp.set_nodelay(true)?;
        let stream: Box<dyn Io> = match security.mode {
            TlsMode::Implicit => {
                Box::new(handshake(relay, security, Box::new(tcp), timeout).await?)
            }
            TlsMode::Starttls | TlsMode::None => Box::new(tcp),
        };
        let mut c = Self {
            r: BufReader::new(stream),
            out: Vec::new(),
            pipelining: false,
            eightbit: false,
            smtputf8: false,
            timeout,
        };
        let greeting = c.read_reply().await?;
        if greeting.class() != 2 {
            return Err(ConnError::protocol(format!("greeting {}", greeting.code)));
        }
        let mut offered = c.hello(hostname, security.mode == TlsMode::None).await?;
        if security.mode == TlsMode::Starttls {
            if !offered.starttls {
                return Err(ConnError::new(
                    Cause::StarttlsMissing,
                    "the relay does not offer STARTTLS; nothing is sent in clear",
                ));
            }
            c.command("STARTTLS");
            let go = c.read_reply().await?;
            if go.code != 220 {
                return Err(ConnError::new(
                    Cause::StarttlsMissing,
                    format!("STARTTLS refused: {}", go.code),
                ));
            }
            if !c.r.buffer().is_empty() {
                // Bytes sent before the handshake would be taken as if they came over TLS
                // (CVE-2011-0411, "STARTTLS command injection").
                return Err(ConnError::new(Cause::Tls, "the relay sent data before TLS"));
            }
            let plain = std::mem::replace(
                &mut c.r,
                BufReader::new(Box::new(tokio::io::empty()) as Box<dyn Io>),
            )
            .into_inner();
            c.r = BufReader::new(Box::new(handshake(relay, security, plain, timeout).await?));
            // RFC 3207: everything learnt before TLS is forgotten; ask again.
            offered = c.hello(hostname, false).await?;
        }
        if let Some(creds) = &security.auth {
            c.authenticate(&offered, creds).await?;
        }
        c.pipelining = offered.pipelining;
        c.eightbit = offered.eightbit;
        c.smtputf8 = offered.smtputf8;
        Ok(c)
    }

    /// EHLO, or HELO when EHLO is refused and `helo_ok` (a plaintext relay; over TLS, STARTTLS
    /// and AUTH need EHLO).
    async fn hello(&mut self, hostname: &str, helo_ok: bool) -> Result<Offered, ConnError> {
        self.command(&format!("EHLO {hostname}"));
        let ehlo = self.read_reply().await?;
        if ehlo.class() == 2 {
            return Ok(Offered::parse(&ehlo.text));
        }
        if !helo_ok {
            return Err(ConnError::protocol(format!("EHLO refused: {}", ehlo.code)));
        }
        self.command(&format!("HELO {hostname}"));
        let helo = self.read_reply().await?;
        if helo.class() != 2 {
            return Err(ConnError::protocol(format!("HELO refused: {}", helo.code)));
        }
        Ok(Offered::default())
    }

    /// AUTH PLAIN (RFC 4616), or LOGIN when PLAIN is not offered. Never logs the credentials;
    /// a refusal is answered by its code.
    async fn authenticate(
        &mut self,
        offered: &Offered,
        creds: &super::relay::Credentials,
    ) -> Result<(), ConnError> {
        let b64 =
            |s: &[u8]| zeroize::Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(s));
        let done = if offered.auth_plain {
            let mut token = zeroize::Zeroizing::new(Vec::new());
            token.push(0);
            token.extend_from_slice(creds.user.expose().as_bytes());
            token.push(0);
            token.extend_from_slice(creds.password.expose().as_bytes());
            self.command_secret(&format!("AUTH PLAIN {}", b64(&token).as_str()));
            self.read_reply().await?
        } else if offered.auth_login {
            self.command("AUTH LOGIN");
            let r = self.read_reply().await?;
            if r.code != 334 {
                return Err(ConnError::new(
                    Cause::Auth,
                    format!("AUTH LOGIN refused: {}", r.code),
                ));
            }
            self.command_secret(&b64(creds.user.expose().as_bytes()));
            let r = self.read_reply().await?;
            if r.code != 334 {
                return Err(ConnError::new(
                    Cause::Auth,
                    format!("AUTH LOGIN user refused: {}", r.code),
                ));
            }
            self.command_secret(&b64(creds.password.expose().as_bytes()));
            self.read_reply().await?
        } else {
            return Err(ConnError::new(
                Cause::Auth,
                "credentials are configured but the relay offers neither AUTH PLAIN nor LOGIN",
            ));
        };
        if done.code != 235 {
            return Err(ConnError::new(
                Cause::Auth,
                format!("AUTH refused: {}", done.code),
            ));
        }
        Ok(())
    }

    /// Queues a line that carries a secret; the buffer is wiped once written ([`Self::flush`]).
    fn command_secret(&mut self, line: &str) {
        self.command(line);
    }

    fn command(&mut self, line: &str) {
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    async fn flush(&mut self) -> Result<(), ConnError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let out = zeroize::Zeroizing::new(out);
        let w = self.r.get_mut();
        tokio::time::timeout(self.timeout, async {
            w.write_all(&out).await?;
            w.flush().await
        })
        .await
        .map_err(|_| ConnError::protocol("write timed out"))??;
        Ok(())
    }

    async fn read_reply(&mut self) -> Result<Reply, ConnError> {
        self.flush().await?;
        let mut text = String::new();
        for _ in 0..MAX_REPLY_LINES {
            let mut line = Vec::new();
            let n = tokio::time::timeout(
                self.timeout,
                tokio::io::AsyncReadExt::take(&mut self.r, MAX_REPLY_LINE as u64 + 1)
                    .read_until(b'\n', &mut line),
            )
            .await
            .map_err(|_| ConnError::protocol("reply timed out"))??;
            if n == 0 {
                return Err(ConnError::protocol("relay closed the connection"));
            }
            let line = String::from_utf8_lossy(&line);
            let (code, more, rest) = reply_line(&line)?;
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(rest);
            if !more {
                return Ok(Reply { code, text });
            }
        }
        Err(ConnError::protocol("reply too long"))
    }

    /// Hands one copy over. `Err`: the connection broke, and the outcome is unknown to the
    /// relay's side only if it broke after the final dot (the caller retries: at least once).
    pub async fn send(&mut self, tx: &Transaction<'_>) -> Result<Sent, ConnError> {
        if tx.smtputf8 && !self.smtputf8 {
            return Ok(Sent::PermFail("the relay does not offer SMTPUTF8".into()));
        }
        let mut mail = format!("MAIL FROM:<{}>", tx.from);
        if tx.eightbit && self.eightbit {
            mail.push_str(" BODY=8BITMIME");
        }
        if tx.smtputf8 {
            mail.push_str(" SMTPUTF8");
        }
        let mut retry = Vec::new();
        let mut rejected = Vec::new();
        let mut accepted = 0usize;
        if self.pipelining {
            self.command(&mail);
            for r in tx.rcpts {
                self.command(&format!("RCPT TO:<{r}>"));
            }
            self.command("DATA");
            let m = self.read_reply().await?;
            for r in tx.rcpts {
                let reply = self.read_reply().await?;
                sort(&reply, r, &mut accepted, &mut retry, &mut rejected);
            }
            let data = self.read_reply().await?;
            if m.class() != 2 {
                return Ok(whole(&m));
            }
            if data.code != 354 {
                if accepted == 0 {
                    return Ok(Sent::Done { retry, rejected });
                }
                return Ok(whole(&data));
            }
            if accepted == 0 {
                // Nothing to send to; end the DATA with an empty message the relay refuses.
                self.out.extend_from_slice(b".\r\n");
                let _ = self.read_reply().await?;
                return Ok(Sent::Done { retry, rejected });
            }
        } else {
            self.command(&mail);
            let m = self.read_reply().await?;
            if m.class() != 2 {
                // No transaction began, so there is nothing to reset (and a relay that wants
                // STARTTLS first answers RSET with 530 too).
                return Ok(whole(&m));
            }
            for r in tx.rcpts {
                self.command(&format!("RCPT TO:<{r}>"));
                let reply = self.read_reply().await?;
                sort(&reply, r, &mut accepted, &mut retry, &mut rejected);
            }
            if accepted == 0 {
                self.reset().await?;
                return Ok(Sent::Done { retry, rejected });
            }
            self.command("DATA");
            let data = self.read_reply().await?;
            if data.code != 354 {
                self.reset().await?;
                return Ok(whole(&data));
            }
        }
        self.write_body(tx.data);
        let end = self.read_reply().await?;
        Ok(match end.class() {
            2 => Sent::Done { retry, rejected },
            _ => whole(&end),
        })
    }

    fn write_body(&mut self, data: &[u8]) {
        self.out.reserve(data.len() + data.len() / 64 + 5);
        for line in data.split_inclusive(|&b| b == b'\n') {
            if line.first() == Some(&b'.') {
                self.out.push(b'.');
            }
            self.out.extend_from_slice(line);
        }
        if !data.is_empty() && !data.ends_with(b"\n") {
            self.out.extend_from_slice(b"\r\n");
        }
        self.out.extend_from_slice(b".\r\n");
    }

    async fn reset(&mut self) -> Result<(), ConnError> {
        self.command("RSET");
        let r = self.read_reply().await?;
        if r.class() != 2 {
            return Err(ConnError::protocol(format!("RSET refused: {}", r.code)));
        }
        Ok(())
    }

    /// Says goodbye (best effort).
    pub async fn quit(mut self) {
        self.command("QUIT");
        let _ = self.read_reply().await;
    }
}

fn sort(
    reply: &Reply,
    rcpt: &str,
    accepted: &mut usize,
    retry: &mut Vec<String>,
    rejected: &mut Vec<String>,
) {
    match reply.class() {
        2 => *accepted += 1,
        _ if permanent(reply.code) => rejected.push(rcpt.to_string()),
        _ => retry.push(rcpt.to_string()),
    }
}

fn whole(reply: &Reply) -> Sent {
    let text = format!("{} {}", reply.code, reply.text);
    if permanent(reply.code) {
        Sent::PermFail(text)
    } else {
        Sent::TempFail(text)
    }
}

/// Whether a refusal is final (RFC 5321 4.2.1: 5yz), except `530`: the relay wants TLS or
/// AUTH first (RFC 3207, RFC 4954), which is the relay's settings or ours to fix — the message
/// waits for that rather than dying.
fn permanent(code: u16) -> bool {
    code / 100 == 5 && code != 530
}

/// The TLS handshake over `io`, checking the relay's certificate against the configured roots
/// and the relay's name.
async fn handshake(
    relay: &RelayHost,
    security: &RelaySecurity,
    io: Box<dyn Io>,
    timeout: Duration,
) -> Result<tokio_rustls::client::TlsStream<Box<dyn Io>>, ConnError> {
    let connector = security
        .tls
        .as_ref()
        .ok_or_else(|| ConnError::new(Cause::Tls, "no TLS client configured"))?;
    let name = ServerName::try_from(relay.host.clone())
        .map_err(|_| ConnError::new(Cause::Tls, "the relay's name is not a valid TLS name"))?;
    tokio::time::timeout(timeout, connector.connect(name, io))
        .await
        .map_err(|_| ConnError::new(Cause::Tls, "TLS handshake timed out"))?
        .map_err(|e| ConnError::new(Cause::Tls, e.to_string()))
}

/// One line of an SMTP reply (RFC 5321 4.2): its three-digit code, whether more lines follow
/// (`250-…`), and its text. Anything else, including a line whose first three bytes are not
/// ASCII digits, is a malformed reply, never a panic.
fn reply_line(line: &str) -> Result<(u16, bool, &str), ConnError> {
    if line.len() > MAX_REPLY_LINE {
        return Err(ConnError::protocol("reply line too long"));
    }
    let code = match line.as_bytes().get(..3) {
        Some(digits) if digits.iter().all(u8::is_ascii_digit) => digits
            .iter()
            .fold(0u16, |n, d| n * 10 + u16::from(d - b'0')),
        _ => return Err(ConnError::protocol("malformed reply code")),
    };
    let more = line.as_bytes().get(3) == Some(&b'-');
    Ok((code, more, line.get(4..).unwrap_or_default().trim_end()))
}

#[cfg(test)]
mod reply_tests {
    use super::reply_line;

    #[test]
    fn reply_lines_parse_and_anything_else_is_an_error_not_a_panic() {
        assert_eq!(reply_line("250-first\r\n").unwrap(), (250, true, "first"));
        assert_eq!(
            reply_line("550 5.1.1 no\r\n").unwrap(),
            (550, false, "5.1.1 no")
        );
        assert_eq!(reply_line("354\r\n").unwrap(), (354, false, ""));
        // Not ASCII where the code should be: the third byte falls inside a character.
        for bad in ["22é rejected\r\n", "é\r\n", "ab\r\n", "", "2", "+OK\r\n"] {
            assert!(reply_line(bad).is_err(), "{bad:?}");
        }
    }

    /// Every short line of bytes a relay could send, and random longer ones: an answer or an
    /// error, never a panic.
    #[test]
    fn no_reply_line_panics() {
        let alphabet: &[u8] = b"0259- \r\n\xc3\xa9\xff\x00a";
        let mut line = Vec::new();
        for a in alphabet {
            for b in alphabet {
                for c in alphabet {
                    for d in alphabet {
                        line.clear();
                        line.extend_from_slice(&[*a, *b, *c, *d]);
                        for len in 0..=line.len() {
                            let _ = reply_line(&String::from_utf8_lossy(&line[..len]));
                        }
                    }
                }
            }
        }
        let mut rng = rand::thread_rng();
        for _ in 0..10_000 {
            use rand::Rng as _;
            let len = rng.gen_range(0..5000);
            let bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let _ = reply_line(&String::from_utf8_lossy(&bytes));
        }
    }
}

#[cfg(test)]
mod wire_tests {
    use super::*;
    use crate::mail::relay::RelayArgs;
    use tokio::io::AsyncReadExt as _;

    /// A one-connection relay on loopback that answers every line it reads with the next of
    /// `replies` (the first is its greeting).
    async fn scripted(replies: Vec<Vec<u8>>) -> RelayHost {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            for (i, reply) in replies.into_iter().enumerate() {
                if i > 0 && s.read(&mut buf).await.unwrap_or(0) == 0 {
                    return;
                }
                if s.write_all(&reply).await.is_err() {
                    return;
                }
            }
        });
        format!("127.0.0.1:{port}").parse().unwrap()
    }

    #[tokio::test]
    async fn a_relay_speaking_garbage_is_a_protocol_error_not_a_panic() {
        let plain = RelayArgs::plaintext().load().unwrap();
        for greeting in [
            b"\xc3\xa9\xc3\xa9 hi\r\n".to_vec(),
            b"2\r\n".to_vec(),
            vec![b'2'; 10_000],
            b"220-a\r\n".repeat(200),
        ] {
            let relay = scripted(vec![greeting]).await;
            let err = Connection::open(&relay, &plain, "hush.test", Duration::from_secs(5))
                .await
                .err()
                .expect("refused");
            assert_eq!(err.cause, Cause::Protocol, "{err}");
        }
    }

    #[tokio::test]
    async fn without_starttls_nothing_is_sent_in_clear() {
        let secure = RelayArgs::default().load().unwrap();
        let relay = scripted(vec![
            b"220 relay ready\r\n".to_vec(),
            b"250-relay\r\n250 PIPELINING\r\n".to_vec(),
        ])
        .await;
        let err = Connection::open(&relay, &secure, "hush.test", Duration::from_secs(5))
            .await
            .err()
            .expect("refused");
        assert_eq!(err.cause, Cause::StarttlsMissing, "{err}");
    }

    #[test]
    fn reply_classes_530_waits_other_5xx_are_final() {
        assert!(!permanent(530));
        assert!(!permanent(451));
        assert!(!permanent(421));
        assert!(permanent(550));
        assert!(permanent(554));
        assert!(!permanent(250));
    }
}
