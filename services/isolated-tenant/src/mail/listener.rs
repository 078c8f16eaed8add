//! The tenant's SMTP listener: ESMTP (RFC 5321) with 8BITMIME, SMTPUTF8, SIZE, PIPELINING and
//! ENHANCEDSTATUSCODES, for the corporate mail system to hand over the groups' mail.
//!
//! It accepts `RCPT` only for an active group's address (550 otherwise) and for the tenant's own
//! bounce addresses; whether the sender is a member or an owner never changes an answer (see
//! [`super::policy`]: members-only and owners-only mail is decided after DATA, on an
//! authenticated sender only). A message is answered `250` only once it and its whole delivery
//! queue are committed, so an accepted message survives a crash. Limits, each configurable
//! ([`super::MailArgs`]): connections at once and from one address (more get 421), messages per
//! connection, recipients per message (452), message size (552), time an idle connection may
//! wait before MAIL, and time to wait for a command within a message and for a message body. `VRFY` and `EXPN` never reveal anything (INV-1).
//!
//! DSN parameters (`NOTIFY`, `ORCPT`, `RET`, `ENVID`, RFC 3461) are read and dropped: the copies
//! go out with the tenant's own envelope sender, and no notification can reach the sender.

use super::anonymous;
use super::bounce;
use super::dmarc::{self, FromRewrite};
use super::headers;
use super::policy;
use super::store::{GroupTarget, Inbound};
use super::{worth_retrying, MailContext, STORE_RETRY};
use domain::Email;
use std::sync::Arc;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Longest command line accepted (RFC 5321 says 512 octets; SMTPUTF8 addresses need more).
const MAX_COMMAND_LINE: usize = 2048;
/// Longest line inside a message body that is kept whole (RFC 5322 says 998); longer lines
/// still count towards the size limit and are kept.
const MAX_DATA_LINE: usize = 64 * 1024;
/// Bad commands before the connection is closed.
const MAX_ERRORS: usize = 20;

/// First byte of a stored message: which ESMTP extensions its delivery needs.
pub const FLAG_8BITMIME: u8 = 1;
/// See [`FLAG_8BITMIME`].
pub const FLAG_SMTPUTF8: u8 = 2;

/// A message the tenant wrote itself (a refused sender's notice, a notification), as the queue
/// stores it: the flags byte (8BITMIME when the text holds anything but ASCII, as a group's
/// name may), then the message. Its headers are ASCII, so it never needs SMTPUTF8.
pub fn written_for_queue(message: &[u8]) -> Vec<u8> {
    let flags = if message.is_ascii() { 0 } else { FLAG_8BITMIME };
    let mut out = Vec::with_capacity(message.len() + 1);
    out.push(flags);
    out.extend_from_slice(message);
    out
}

/// Accepts connections until the task is aborted, each in its own task, at most
/// `max_connections` at once and `max_connections_per_peer` from one address.
pub async fn serve(ctx: MailContext, listener: TcpListener) {
    let slots = Arc::new(Semaphore::new(ctx.args.max_connections.max(1)));
    let peers = Peers::new(ctx.args.max_connections_per_peer);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "mail listener accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(from_peer) = peers.enter(peer.ip()) else {
            refuse(
                stream,
                "421 4.7.0 Too many connections from your address, try again later",
            );
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            refuse(stream, "421 4.3.2 Too many connections, try again later");
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(&ctx, stream).await {
                tracing::debug!(error = %e, "mail session ended with an error");
            }
            drop(permit);
            drop(from_peer);
        });
    }
}

/// Answers `line` and closes, in a task of its own so the accept loop does not wait.
fn refuse(mut stream: TcpStream, line: &'static str) {
    tokio::spawn(async move {
        let _ = stream.write_all(format!("{line}\r\n").as_bytes()).await;
    });
}

/// Connections open per peer address, each at most `limit`.
#[derive(Clone)]
struct Peers {
    open: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
    limit: usize,
}

/// One open connection of a peer; counted until dropped.
struct PeerSlot {
    peers: Peers,
    ip: std::net::IpAddr,
}

impl Peers {
    fn new(limit: usize) -> Self {
        Self {
            open: Arc::default(),
            limit: limit.max(1),
        }
    }

    /// Counts one more connection of `ip`, or `None` when it has `limit` open.
    fn enter(&self, ip: std::net::IpAddr) -> Option<PeerSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_default();
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            peers: self.clone(),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = self.peers.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Who is on the other end of a connection.
#[derive(Debug, Clone, Copy)]
struct Peer {
    /// Its address (recorded in the ARC-Authentication-Results as `smtp.remote-ip`).
    ip: std::net::IpAddr,
    /// Whether it is a relay trusted to have authenticated the senders it hands over.
    trusted: bool,
}

/// One connection: in clear, and after `STARTTLS` (when a certificate is configured) over TLS,
/// with the SMTP state reset as RFC 3207 asks.
async fn connection(ctx: &MailContext, stream: TcpStream) -> std::io::Result<()> {
    let greeting = format!("220 {} ESMTP Hush", ctx.args.hostname);
    let tls = ctx.tls.clone();
    let ip = stream
        .peer_addr()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |a| a.ip());
    let peer = Peer {
        ip,
        trusted: ctx.args.is_trusted_relay(ip),
    };
    let Some(plain) = session(ctx, stream, tls.is_some(), Some(&greeting), peer).await? else {
        return Ok(());
    };
    let Some(acceptor) = tls else {
        return Ok(());
    };
    let secured = tokio::time::timeout(ctx.args.idle_timeout(), acceptor.accept(plain))
        .await
        .map_err(|_| std::io::Error::other("TLS handshake timed out"))??;
    session(ctx, secured, false, None, peer).await.map(drop)
}

/// How reading a line went.
enum Line {
    Ok,
    TooLong,
    Eof,
}

/// Reads one line (with its line end) into `buf`, keeping at most `max` bytes; a longer line
/// is read to its end and reported.
async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Line> {
    buf.clear();
    let mut too_long = false;
    loop {
        let avail = r.fill_buf().await?;
        if avail.is_empty() {
            return Ok(Line::Eof);
        }
        let (take, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (avail.len(), false),
        };
        if !too_long && buf.len() + take <= max {
            buf.extend_from_slice(&avail[..take]);
        } else {
            too_long = true;
        }
        r.consume(take);
        if done {
            return Ok(if too_long { Line::TooLong } else { Line::Ok });
        }
    }
}

/// The envelope of the transaction in progress.
#[derive(Default)]
struct Envelope {
    /// `Some(None)`: the null sender `<>`.
    from: Option<Option<Email>>,
    eightbit: bool,
    smtputf8: bool,
    groups: Vec<GroupTarget>,
    bounces: Vec<String>,
    rcpts: usize,
}

async fn reply<W: AsyncWrite + Unpin>(w: &mut W, text: &str) -> std::io::Result<()> {
    w.write_all(text.as_bytes()).await?;
    w.write_all(b"\r\n").await?;
    w.flush().await
}

/// The address between `<` and `>` after `prefix` (case-insensitive), and the parameters.
fn path<'a>(line: &'a str, prefix: &str) -> Option<(&'a str, Vec<&'a str>)> {
    let head = line.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = line[prefix.len()..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    let addr = &rest[..end];
    // A source route (`@a,@b:user@d`) is accepted and ignored, as RFC 5321 asks.
    let addr = addr.rsplit_once(':').map_or(addr, |(_, a)| a);
    let params = rest[end + 1..].split_whitespace().collect();
    Some((addr, params))
}

/// Serves SMTP on `stream` until the client quits or a limit ends it. With `offer_tls`, it
/// offers STARTTLS and, when the client takes it, hands the stream back (`Some`) for the
/// handshake; nothing buffered after the command is kept (RFC 3207 forbids pipelining past it).
async fn session<S>(
    ctx: &MailContext,
    stream: S,
    offer_tls: bool,
    greeting: Option<&str>,
    peer: Peer,
) -> std::io::Result<Option<S>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    let args = &ctx.args;
    let (read, mut w) = tokio::io::split(stream);
    let mut r = BufReader::new(read);
    if let Some(g) = greeting {
        reply(&mut w, g).await?;
    }
    let mut greeted = false;
    let mut env = Envelope::default();
    let mut messages = 0usize;
    let mut errors = 0usize;
    let mut buf = Vec::new();
    loop {
        if errors >= MAX_ERRORS {
            reply(&mut w, "421 4.7.0 Too many errors, closing").await?;
            return Ok(None);
        }
        // No message under way: the short idle timeout, so an idle connection does not hold
        // a slot for long. Within a message, the command timeout.
        let wait = if env.from.is_none() {
            args.idle_timeout()
        } else {
            args.command_timeout()
        };
        let read = tokio::time::timeout(wait, read_line(&mut r, &mut buf, MAX_COMMAND_LINE)).await;
        match read {
            Err(_) => {
                reply(&mut w, "421 4.4.2 Timeout waiting for a command, closing").await?;
                return Ok(None);
            }
            Ok(Err(e)) => return Err(e),
            Ok(Ok(Line::Eof)) => return Ok(None),
            Ok(Ok(Line::TooLong)) => {
                errors += 1;
                reply(&mut w, "500 5.5.2 Line too long").await?;
                continue;
            }
            Ok(Ok(Line::Ok)) => {}
        }
        let Ok(line) = std::str::from_utf8(&buf) else {
            errors += 1;
            reply(&mut w, "500 5.5.2 Command is not UTF-8").await?;
            continue;
        };
        let line = line.trim_end_matches(['\r', '\n']);
        let verb = line
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" => {
                greeted = true;
                env = Envelope::default();
                let text = format!(
                    "250-{}\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n{}250 SIZE {}",
                    args.hostname,
                    if offer_tls { "250-STARTTLS\r\n" } else { "" },
                    args.max_message_bytes
                );
                reply(&mut w, &text).await?;
            }
            "HELO" => {
                greeted = true;
                env = Envelope::default();
                reply(&mut w, &format!("250 {}", args.hostname)).await?;
            }
            "MAIL" => {
                if messages >= args.max_messages_per_connection {
                    reply(
                        &mut w,
                        "421 4.7.0 Too many messages on one connection, closing",
                    )
                    .await?;
                    return Ok(None);
                }
                if !greeted {
                    errors += 1;
                    reply(&mut w, "503 5.5.1 Say EHLO first").await?;
                    continue;
                }
                if env.from.is_some() {
                    errors += 1;
                    reply(&mut w, "503 5.5.1 Sender already given").await?;
                    continue;
                }
                let answer = mail_from(args, line, &mut env);
                if !answer.starts_with('2') {
                    errors += 1;
                }
                reply(&mut w, &answer).await?;
            }
            "RCPT" => {
                let answer = rcpt_to(ctx, line, &mut env).await;
                if !answer.starts_with('2') {
                    errors += 1;
                }
                reply(&mut w, &answer).await?;
            }
            "DATA" => {
                if env.from.is_none() || (env.groups.is_empty() && env.bounces.is_empty()) {
                    errors += 1;
                    reply(&mut w, "503 5.5.1 No valid recipients").await?;
                    continue;
                }
                reply(&mut w, "354 End data with <CR><LF>.<CR><LF>").await?;
                let body = tokio::time::timeout(
                    args.data_timeout(),
                    read_data(&mut r, args.max_message_bytes),
                )
                .await;
                let answer = match body {
                    Err(_) => {
                        reply(&mut w, "421 4.4.2 Timeout waiting for the message, closing").await?;
                        return Ok(None);
                    }
                    Ok(Err(e)) => return Err(e),
                    Ok(Ok(None)) => return Ok(None),
                    Ok(Ok(Some(Data::TooBig))) => {
                        "552 5.3.4 Message exceeds the size limit".to_string()
                    }
                    Ok(Ok(Some(Data::Message(m)))) => {
                        messages += 1;
                        deliver(ctx, &env, &m, peer).await
                    }
                };
                env = Envelope::default();
                reply(&mut w, &answer).await?;
            }
            "STARTTLS" if offer_tls => {
                reply(&mut w, "220 2.0.0 Ready to start TLS").await?;
                return Ok(Some(r.into_inner().unsplit(w)));
            }
            "RSET" => {
                env = Envelope::default();
                reply(&mut w, "250 2.0.0 OK").await?;
            }
            "NOOP" => reply(&mut w, "250 2.0.0 OK").await?,
            "QUIT" => {
                reply(&mut w, "221 2.0.0 Bye").await?;
                return Ok(None);
            }
            // Never says whether an address exists, let alone who is in a group (INV-1).
            "VRFY" => reply(&mut w, "252 2.5.2 Cannot verify; send some mail").await?,
            "EXPN" => reply(&mut w, "502 5.5.1 EXPN is not available").await?,
            "HELP" => reply(&mut w, "214 2.0.0 See RFC 5321").await?,
            _ => {
                errors += 1;
                reply(&mut w, "500 5.5.2 Command not recognised").await?;
            }
        }
    }
}

/// `MAIL FROM:<sender> [params]`.
fn mail_from(args: &super::MailArgs, line: &str, env: &mut Envelope) -> String {
    let Some((addr, params)) = path(line, "MAIL FROM:") else {
        return "501 5.5.4 Syntax: MAIL FROM:<address>".into();
    };
    let from = if addr.is_empty() {
        None
    } else {
        match Email::parse(addr) {
            Ok(e) => Some(e),
            Err(_) => return "553 5.1.7 The sender address is not valid".into(),
        }
    };
    let mut next = Envelope {
        from: Some(from),
        ..Envelope::default()
    };
    for p in params {
        let (key, value) = p.split_once('=').unwrap_or((p, ""));
        match key.to_ascii_uppercase().as_str() {
            "SIZE" => match value.parse::<usize>() {
                Ok(n) if n > args.max_message_bytes => {
                    return "552 5.3.4 Message exceeds the size limit".into()
                }
                Ok(_) => {}
                Err(_) => return "501 5.5.4 SIZE needs a number".into(),
            },
            "BODY" => match value.to_ascii_uppercase().as_str() {
                "8BITMIME" => next.eightbit = true,
                "7BIT" => {}
                _ => return "501 5.5.4 BODY is 7BIT or 8BITMIME".into(),
            },
            "SMTPUTF8" => next.smtputf8 = true,
            // DSN requests (RFC 3461) and the like are dropped: nothing goes back to the sender.
            "RET" | "ENVID" | "AUTH" => {}
            _ => return "555 5.5.4 Unsupported MAIL parameter".into(),
        }
    }
    *env = next;
    "250 2.1.0 OK".into()
}

/// `RCPT TO:<address> [params]`.
async fn rcpt_to(ctx: &MailContext, line: &str, env: &mut Envelope) -> String {
    let Some(from) = env.from.clone() else {
        return "503 5.5.1 MAIL first".into();
    };
    let Some((addr, params)) = path(line, "RCPT TO:") else {
        return "501 5.5.4 Syntax: RCPT TO:<address>".into();
    };
    for p in params {
        let key = p.split_once('=').map_or(p, |(k, _)| k).to_ascii_uppercase();
        // NOTIFY and ORCPT (RFC 3461) are dropped, never passed on.
        if key != "NOTIFY" && key != "ORCPT" {
            return "555 5.5.4 Unsupported RCPT parameter".into();
        }
    }
    if env.rcpts >= ctx.args.max_recipients {
        return "452 4.5.3 Too many recipients".into();
    }
    let Ok(rcpt) = Email::parse(addr) else {
        return "553 5.1.3 The recipient address is not valid".into();
    };
    if let Some(token) = bounce::token_of(&rcpt, &ctx.args.bounce_domain) {
        env.rcpts += 1;
        env.bounces.push(token);
        return "250 2.1.5 OK".into();
    }
    let group = match ctx.store.find_group(&rcpt).await {
        Ok(Some(g)) => g,
        Ok(None) => return "550 5.1.1 No such group here".into(),
        Err(e) => {
            tracing::error!(error = %e, "looking up a group address failed");
            return "451 4.3.0 Temporary failure, try again later".into();
        }
    };
    // Never a question of membership here: `members` and `owners` groups take every
    // recipient and decide once the message is read (see `policy`). The null sender (a bounce
    // or an auto-reply aimed at the group) is taken and consumed.
    if let Some(refusal) = policy::refusal_at_rcpt(&ctx.corporate, &group, from.as_ref()) {
        return refusal.into();
    }
    env.rcpts += 1;
    // One message to a group's address and to its anonymous alias goes out once, through the
    // alias (or not at all, when the alias refuses it): two copies of one body, one of them
    // signed, would name the anonymous poster.
    if group.anonymous {
        env.groups
            .retain(|g| g.group_id != group.group_id || g.anonymous);
    }
    if !env.groups.iter().any(|g| g.group_id == group.group_id) {
        env.groups.push(group);
    }
    "250 2.1.5 OK".into()
}

/// A message body as read after DATA.
enum Data {
    Message(Vec<u8>),
    TooBig,
}

/// Reads the body up to the lone `.`, undoing dot-stuffing, with CRLF line ends. Past `max`
/// bytes it keeps reading (to stay in step with the client) but keeps nothing. `None`: the
/// client went away.
async fn read_data<R: AsyncBufRead + Unpin>(
    r: &mut R,
    max: usize,
) -> std::io::Result<Option<Data>> {
    let mut out = Vec::new();
    let mut too_big = false;
    let mut line = Vec::new();
    loop {
        let kept = match read_line(r, &mut line, MAX_DATA_LINE).await? {
            Line::Eof => return Ok(None),
            Line::TooLong => {
                // Kept only in part: the message is not delivered as written, so refuse it.
                too_big = true;
                continue;
            }
            Line::Ok => &line,
        };
        let content = kept
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(kept);
        if content == b"." {
            break;
        }
        let content = content.strip_prefix(b".").unwrap_or(content);
        if !too_big {
            if out.len() + content.len() + 2 > max {
                too_big = true;
                out = Vec::new();
            } else {
                out.extend_from_slice(content);
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    Ok(Some(if too_big {
        Data::TooBig
    } else {
        Data::Message(out)
    }))
}

/// Counts a message the sender policy refused, dropped unread, and queues the notice to the
/// authenticated sender `notify` when there is one.
async fn refused(
    ctx: &MailContext,
    group: &GroupTarget,
    notify: Option<&Email>,
) -> Result<(), crate::store::StoreError> {
    STORE_RETRY
        .run(worth_retrying, || {
            ctx.store
                .consume(Inbound::Refused, None, &[], ctx.args.hard_bounce_limit)
        })
        .await?;
    if let Some(to) = notify {
        let stored = written_for_queue(&policy::notice(&ctx.args.hostname, group, to));
        STORE_RETRY
            .run(worth_retrying, || {
                ctx.store.accept_notice(group.group_id, to, &stored)
            })
            .await?;
        ctx.wake.notify_waiters();
    }
    Ok(())
}

/// What the tenant learns about a message once, before any group's policy is applied: its
/// sender, whether its `From` is rewritten, and (with ARC) the inbound chain and results. All
/// of it is the same for every group the message goes to, and is found whatever the policies
/// will decide, so the time to the answer does not tell a sender how a policy went.
struct Arrival<'m> {
    sender: Option<headers::Sender>,
    rewrite: bool,
    arc: Option<ArcInbound<'m>>,
}

/// The ARC view of an inbound message.
struct ArcInbound<'m> {
    /// The chain it arrived with, verified; `None` when DNS could not say in time.
    chain: Option<mail_auth::ArcOutput<'m>>,
    /// The ARC-Authentication-Results of the next instance: the sender's DKIM signatures and
    /// the chain, as this hop found them.
    results: mail_auth::AuthenticationResults<'m>,
}

impl<'m> Arrival<'m> {
    async fn of(
        ctx: &'m MailContext,
        fields: &[headers::Field<'_>],
        parsed: Option<&'m mail_auth::AuthenticatedMessage<'m>>,
        peer: Peer,
    ) -> Arrival<'m> {
        let sender = headers::sender(fields);
        let domain = sender.as_ref().and_then(headers::Sender::domain);
        let aligned = domain.as_deref().is_some_and(|d| {
            dmarc::is_aligned(
                d,
                &ctx.args.aligned_domains,
                ctx.dkim.as_deref().map(|s| s.domain()),
            )
        });
        let verdict = match (ctx.args.from_rewrite, &domain) {
            (FromRewrite::Dmarc, Some(d)) if !aligned => Some(dmarc::lookup(&ctx.dns, d).await),
            _ => None,
        };
        let rewrite = dmarc::must_rewrite(ctx.args.from_rewrite, aligned, verdict);
        let arc = match (parsed, &ctx.dkim) {
            (Some(parsed), Some(signer)) if ctx.args.arc && signer.can_seal() => {
                Some(ArcInbound::of(ctx, parsed, sender.as_ref(), peer).await)
            }
            _ => None,
        };
        Arrival {
            sender,
            rewrite,
            arc,
        }
    }
}

impl<'m> ArcInbound<'m> {
    async fn of(
        ctx: &'m MailContext,
        parsed: &'m mail_auth::AuthenticatedMessage<'m>,
        sender: Option<&headers::Sender>,
        peer: Peer,
    ) -> ArcInbound<'m> {
        let auth = ctx.dns.authenticator();
        let budget = ctx.dns.timeout();
        let chain = tokio::time::timeout(budget, auth.verify_arc(parsed))
            .await
            .ok()
            .filter(|c| !matches!(c.result(), mail_auth::DkimResult::TempError(_)));
        let dkim = tokio::time::timeout(budget, auth.verify_dkim(parsed))
            .await
            .unwrap_or_default();
        let from = sender.map_or("", |s| s.address.as_str());
        let mut results = mail_auth::AuthenticationResults::new(&ctx.args.hostname)
            .with_dkim_results(&dkim, from);
        if let Some(chain) = &chain {
            results = results.with_arc_result(chain, peer.ip);
        }
        ArcInbound { chain, results }
    }
}

/// The copy DKIM-signed and, with `arc`, ARC-sealed over the signature (once per message:
/// every copy carries these bytes).
fn seal(
    signer: &super::dkim::DkimSigner,
    cleaned: &[u8],
    arc: Option<&ArcInbound<'_>>,
) -> anyhow::Result<Vec<u8>> {
    let signed = signer.sign(cleaned)?;
    let Some(ArcInbound {
        chain: Some(chain),
        results,
    }) = arc
    else {
        return Ok(signed);
    };
    Ok(signer.arc_seal(&signed, results, chain)?.unwrap_or(signed))
}

/// Stores the message for each group (or consumes it) and answers for the whole transaction:
/// the same answer whether the sender policy took or dropped it. `trusted`: the peer is a relay
/// trusted to have authenticated the envelope sender.
async fn deliver(ctx: &MailContext, env: &Envelope, message: &[u8], peer: Peer) -> String {
    let trusted = peer.trusted;
    let (fields, _) = headers::split(message);
    // Parsed for ARC only: verifying the chain needs mail-auth's view of the message.
    let sealing = ctx.args.arc && ctx.dkim.as_ref().is_some_and(|s| s.can_seal());
    let parsed = sealing
        .then(|| mail_auth::AuthenticatedMessage::parse(message))
        .flatten();
    let inbound = Arrival::of(ctx, &fields, parsed.as_ref(), peer).await;
    let null_sender = matches!(env.from, Some(None));
    let automatic = null_sender || headers::is_automatic(&fields);
    if !env.bounces.is_empty() {
        let (kind, failed) = bounce::classify(message);
        for token in &env.bounces {
            let consumed = STORE_RETRY
                .run(worth_retrying, || {
                    ctx.store
                        .consume(kind, Some(token), &failed, ctx.args.hard_bounce_limit)
                })
                .await;
            if let Err(e) = consumed {
                tracing::error!(error = %e, "recording a bounce failed");
                return "451 4.3.0 Temporary failure, try again later".into();
            }
        }
    }
    let mut flags = 0u8;
    if env.eightbit {
        flags |= FLAG_8BITMIME;
    }
    if env.smtputf8 {
        flags |= FLAG_SMTPUTF8;
    }
    for group in &env.groups {
        if automatic {
            // An auto-reply or bounce aimed at the group: consumed, never expanded (RFC 3834).
            let consumed = STORE_RETRY
                .run(worth_retrying, || {
                    ctx.store
                        .consume(Inbound::AutoReply, None, &[], ctx.args.hard_bounce_limit)
                })
                .await;
            if let Err(e) = consumed {
                tracing::error!(error = %e, "recording an auto-reply failed");
                return "451 4.3.0 Temporary failure, try again later".into();
            }
            continue;
        }
        let sender = env.from.clone().flatten();
        let decision =
            policy::decide(&*ctx.store, &ctx.corporate, group, sender.as_ref(), trusted).await;
        let decided = match decision {
            Ok(policy::Decision::Deliver) => Ok(true),
            Ok(policy::Decision::Drop) => refused(ctx, group, None).await.map(|()| false),
            Ok(policy::Decision::Notify(to)) => {
                refused(ctx, group, Some(&to)).await.map(|()| false)
            }
            Err(e) => Err(e),
        };
        match decided {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::error!(error = %e, "applying the sender policy failed");
                return "451 4.3.0 Temporary failure, try again later".into();
            }
        }
        let mut stored = Vec::with_capacity(message.len() + 300);
        stored.push(flags);
        let cleaned = if group.anonymous {
            // Rebuilt from nothing but the subject and the body's encoding (see `anonymous`).
            anonymous::copy(
                message,
                &group.address,
                &group.addressed(),
                &group.display_name,
                &anonymous::Stamp::now(&group.address),
            )
        } else {
            let mut cleaned = headers::clean(message, &group.address, &group.display_name);
            if let (true, Some(sender)) = (inbound.rewrite, &inbound.sender) {
                cleaned =
                    headers::rewrite_from(&cleaned, sender, &group.address, &group.display_name);
            }
            cleaned
        };
        match &ctx.dkim {
            Some(signer) if signer.domain() == group.address.domain() => {
                // ARC vouches for how the sender authenticated: an anonymous post has no
                // sender to vouch for, and its seal would carry the sender's results.
                let arc = inbound.arc.as_ref().filter(|_| !group.anonymous);
                match seal(signer, &cleaned, arc) {
                    Ok(signed) => stored.extend_from_slice(&signed),
                    Err(e) => {
                        tracing::error!(error = %e, "signing a message failed");
                        return "451 4.3.0 Temporary failure, try again later".into();
                    }
                }
            }
            _ => stored.extend_from_slice(&cleaned),
        }
        let accepted = STORE_RETRY
            .run(worth_retrying, || {
                ctx.store
                    .accept(group.group_id, &stored, ctx.args.batch_recipients)
            })
            .await;
        match accepted {
            // No group, no sender, no count in the log (INV-4, INV-6).
            Ok(a) => {
                tracing::info!(message = %a.message_id, "message accepted");
                ctx.wake.notify_waiters();
            }
            Err(e) => {
                tracing::error!(error = %e, "storing a message failed");
                return "451 4.3.0 Temporary failure, try again later".into();
            }
        }
    }
    "250 2.0.0 OK: queued".into()
}
