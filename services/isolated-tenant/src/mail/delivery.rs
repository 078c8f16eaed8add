//! Delivery workers: lease due queue rows, hand each batch of members to the relay in one SMTP
//! transaction with the delivery's own bounce address as envelope sender, and record the
//! outcome — delivered, retried with exponential backoff, or a dead letter after the last
//! attempt.
//!
//! A row is leased before it is sent and marked in the same row when done, so replicas and a
//! restarted tenant never send it twice at once, and a message accepted with `250` is sent
//! after a crash (its lease expires). The one window left is a crash between the relay's `250`
//! for the copy and the mark: that copy is sent again (at least once, as every MTA does).
//!
//! Per destination domain (each delivery goes to one), a replica keeps at most
//! `rate_per_sec` transactions a second and `recipients_per_day` recipients a UTC day.

use super::bounce;
use super::client::{Connection, Sent, Transaction};
use super::listener::{FLAG_8BITMIME, FLAG_SMTPUTF8};
use super::relay::{Cause, Ended};
use super::store::{backoff, Claimed, FinishLimits, Outcome};
use super::{worth_retrying, MailContext, Relay, STORE_RETRY};
use crate::store::StoreError;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How long a worker with nothing to do waits before it looks again (it is woken at once when
/// the listener accepts a message).
const IDLE_POLL: Duration = Duration::from_millis(500);
/// Time limit of each step of a relay conversation.
const RELAY_TIMEOUT: Duration = Duration::from_secs(60);
/// Deliveries a worker leases at once.
const CLAIM: usize = 2;

/// How often the finished deliveries past their retention are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(600);

/// Runs `delivery_workers` workers, and the purge of finished deliveries, until aborted.
pub async fn run(ctx: MailContext, relay: Relay) {
    let limiter = Arc::new(Limiter::default());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..ctx.args.delivery_workers.max(1) {
        tasks.spawn(worker(ctx.clone(), relay.clone(), limiter.clone()));
    }
    tasks.spawn(purger(ctx));
    while tasks.join_next().await.is_some() {}
}

/// The cut-offs of a purge at `now`: delivered and dead rows that ended before them go.
pub fn purge_cutoffs(args: &crate::mail::MailArgs, now: i64) -> (i64, i64) {
    let days = |d: u32| i64::from(d) * 24 * 3600 * 1000;
    (
        now - days(args.delivered_retention_days),
        now - days(args.dead_retention_days),
    )
}

/// Deletes finished deliveries past their retention, at start and every [`PURGE_EVERY`].
async fn purger(ctx: MailContext) {
    loop {
        let (delivered, dead) = purge_cutoffs(&ctx.args, service_kit::db::now_ms());
        match ctx.store.purge(delivered, dead).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                deliveries = n,
                "finished deliveries past their retention deleted"
            ),
            Err(e) => tracing::warn!(error = %e, "purging finished deliveries failed"),
        }
        tokio::time::sleep(PURGE_EVERY).await;
    }
}

async fn worker(ctx: MailContext, relay: Relay, limiter: Arc<Limiter>) {
    let wake = ctx.wake.clone();
    let mut worker = Worker::new(ctx, relay, limiter);
    loop {
        // Registered before looking, so a message accepted while we look still wakes us.
        let woken = wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        match worker.run_once().await {
            Ok(Round::Worked(_)) => {}
            Ok(Round::Idle) => {
                tokio::select! {
                    () = woken => {}
                    () = tokio::time::sleep(IDLE_POLL) => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "leasing deliveries failed");
                tokio::time::sleep(IDLE_POLL).await;
            }
        }
    }
}

/// What one round of a worker found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// Nothing was due: the queue is empty for now (retries scheduled later aside).
    Idle,
    /// This many deliveries were attempted, each recorded as sent, retried later or given up.
    Worked(usize),
}

/// One delivery worker: its lease owner id, its open relay connection and the message it read
/// last. [`run`] loops [`Worker::run_once`]; [`drain_until_idle`] runs it until the queue is
/// empty, so tests wait for the work instead of sleeping.
pub struct Worker {
    ctx: MailContext,
    relay: Relay,
    limiter: Arc<Limiter>,
    owner: Uuid,
    conn: Option<Connection>,
    cached: Option<(Uuid, Arc<Vec<u8>>)>,
    limits: FinishLimits,
}

impl Worker {
    fn new(ctx: MailContext, relay: Relay, limiter: Arc<Limiter>) -> Self {
        let limits = FinishLimits {
            max_attempts: ctx.args.max_attempts.max(1),
            hard_bounce_limit: ctx.args.hard_bounce_limit.max(1),
            retry_base: Duration::from_secs(ctx.args.retry_base_secs),
        };
        Self {
            ctx,
            relay,
            limiter,
            owner: Uuid::new_v4(),
            conn: None,
            cached: None,
            limits,
        }
    }

    /// Leases the due deliveries (a few at a time), attempts each and records how it ended.
    /// Closes the relay connection when nothing is due. Fails only when the queue cannot be
    /// read; a failed attempt or record is the lease's to retry.
    pub async fn run_once(&mut self) -> Result<Round, StoreError> {
        let ctx = &self.ctx;
        let lease = Duration::from_secs(ctx.args.lease_secs.max(1));
        let claimed = ctx.store.claim(self.owner, CLAIM, lease).await?;
        if claimed.is_empty() {
            if let Some(c) = self.conn.take() {
                c.quit().await;
            }
            return Ok(Round::Idle);
        }
        let worked = claimed.len();
        for d in claimed {
            let message = match &self.cached {
                Some((id, m)) if *id == d.message_id => Some(m.clone()),
                _ => match ctx.store.message(d.message_id).await {
                    Ok(Some(m)) => {
                        let m = Arc::new(m);
                        self.cached = Some((d.message_id, m.clone()));
                        Some(m)
                    }
                    Ok(None) => None,
                    Err(e) => {
                        tracing::error!(error = %e, "reading a stored message failed");
                        None
                    }
                },
            };
            let (limits, owner) = (self.limits, self.owner);
            ctx.relay_stats.attempt();
            let (outcome, cause) = match message {
                None => (Outcome::Failed { reply: None }, None),
                Some(m) => {
                    attempt(
                        ctx,
                        &self.relay,
                        &self.limiter,
                        &mut self.conn,
                        &d,
                        &m,
                        limits,
                    )
                    .await
                }
            };
            let ended = match &outcome {
                Outcome::Sent { .. } => Ended::Delivered,
                Outcome::Failed { .. } => Ended::Dead,
                Outcome::TryLater { .. } if d.attempts >= limits.max_attempts => Ended::Dead,
                Outcome::TryLater { .. } => Ended::Deferred,
            };
            ctx.relay_stats.ended(ended, cause);
            let finished = STORE_RETRY
                .run(worth_retrying, || {
                    ctx.store.finish(owner, &d, outcome.clone(), limits)
                })
                .await;
            if let Err(e) = finished {
                // The lease runs out and the delivery is tried again.
                tracing::error!(error = %e, "recording a delivery failed");
            }
        }
        Ok(Round::Worked(worked))
    }
}

/// Runs one worker until a round finds nothing due and answers how many deliveries it
/// attempted: the queue drained now rather than eventually (tests; deliveries another worker
/// holds are left to it).
pub async fn drain_until_idle(ctx: MailContext, relay: Relay) -> Result<usize, StoreError> {
    let mut worker = Worker::new(ctx, relay, Arc::new(Limiter::default()));
    let mut attempted = 0;
    while let Round::Worked(n) = worker.run_once().await? {
        attempted += n;
    }
    Ok(attempted)
}

/// One attempt of one delivery: how it ended, and why when it did not go through.
async fn attempt(
    ctx: &MailContext,
    relay: &Relay,
    limiter: &Limiter,
    conn: &mut Option<Connection>,
    d: &Claimed,
    stored: &[u8],
    limits: FinishLimits,
) -> (Outcome, Option<Cause>) {
    let after = backoff(limits.retry_base, d.attempts);
    let later = |cause: Cause, reply: String| {
        (
            Outcome::TryLater {
                after,
                reply: Some(reply),
            },
            Some(cause),
        )
    };
    let Some((&flags, data)) = stored.split_first() else {
        return (Outcome::Failed { reply: None }, None);
    };
    if d.recipients.is_empty() {
        return (
            Outcome::Sent {
                retry: vec![],
                rejected: vec![],
            },
            None,
        );
    }
    let domain = d.recipients[0]
        .rsplit_once('@')
        .map(|(_, dom)| dom.to_string())
        .unwrap_or_default();
    match limiter.admit(&ctx.args, &domain, d.recipients.len()) {
        Admit::Go => {}
        Admit::Wait(t) => tokio::time::sleep(t).await,
        Admit::NextDay(t) => {
            return (
                Outcome::TryLater {
                    after: t,
                    reply: None,
                },
                None,
            )
        }
    }
    let from = bounce::address(&d.bounce_token, &ctx.args.bounce_domain);
    match relay {
        Relay::Maildir(dir) => {
            let dir = dir.clone();
            let rcpts = d.recipients.clone();
            let mut copy = format!("Return-Path: <{from}>\r\n").into_bytes();
            copy.extend_from_slice(data);
            match tokio::task::spawn_blocking(move || write_maildir(&dir, &rcpts, &copy)).await {
                Ok(Ok(())) => (
                    Outcome::Sent {
                        retry: vec![],
                        rejected: vec![],
                    },
                    None,
                ),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "writing to the Maildir sink failed");
                    later(Cause::Protocol, "maildir".into())
                }
                Err(_) => later(Cause::Protocol, "maildir".into()),
            }
        }
        Relay::Smtp(host) => {
            let tx = Transaction {
                from: &from,
                rcpts: &d.recipients,
                data,
                eightbit: flags & FLAG_8BITMIME != 0,
                smtputf8: flags & FLAG_SMTPUTF8 != 0,
            };
            let stats = &ctx.relay_stats;
            // A reused connection may have been closed by the relay meanwhile: one fresh try.
            for fresh in [conn.is_none(), true] {
                if fresh {
                    *conn = match Connection::open(
                        host,
                        &ctx.relay_security,
                        &ctx.args.hostname,
                        RELAY_TIMEOUT,
                    )
                    .await
                    {
                        Ok(c) => Some(c),
                        Err(e) => {
                            stats.relay_failing(host, e.cause, &e.detail);
                            return later(e.cause, e.cause.as_str().into());
                        }
                    };
                }
                let Some(c) = conn.as_mut() else {
                    return later(Cause::Protocol, "protocol".into());
                };
                match c.send(&tx).await {
                    Ok(Sent::Done { retry, rejected }) => {
                        stats.relay_ok(host);
                        return (Outcome::Sent { retry, rejected }, None);
                    }
                    Ok(Sent::TempFail(why)) => {
                        let code = reply_code(&why);
                        if code.starts_with("530") {
                            // The relay wants TLS or AUTH first: every message will hear it.
                            stats.relay_failing(host, Cause::AuthRequired, &code);
                            return later(Cause::AuthRequired, code);
                        }
                        tracing::debug!(reply = code, "the relay deferred a delivery");
                        return later(Cause::Deferred, code);
                    }
                    Ok(Sent::PermFail(why)) => {
                        let code = reply_code(&why);
                        tracing::debug!(reply = code, "the relay refused a delivery");
                        return (Outcome::Failed { reply: Some(code) }, Some(Cause::Refused));
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "relay connection lost");
                        *conn = None;
                        if fresh {
                            stats.relay_failing(host, e.cause, &e.detail);
                            return later(e.cause, e.cause.as_str().into());
                        }
                    }
                }
            }
            later(Cause::Protocol, "protocol".into())
        }
    }
}

/// Writes one copy per recipient into `<dir>/<address>/new/` (through `tmp/`, as Maildir
/// asks, so a reader never sees half a file).
fn write_maildir(dir: &Path, rcpts: &[String], copy: &[u8]) -> std::io::Result<()> {
    for r in rcpts {
        let name: String = r
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "@.-_+".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let mailbox = dir.join(name);
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(mailbox.join(sub))?;
        }
        let file = format!(
            "{}.{}.hush",
            service_kit::db::now_ms(),
            Uuid::new_v4().simple()
        );
        let tmp = mailbox.join("tmp").join(&file);
        std::fs::write(&tmp, copy)?;
        std::fs::rename(&tmp, mailbox.join("new").join(&file))?;
    }
    Ok(())
}

/// What the rate limiter says.
#[derive(Debug, PartialEq, Eq)]
enum Admit {
    Go,
    Wait(Duration),
    NextDay(Duration),
}

/// Per destination domain: the next free send slot and the recipients of the current UTC day.
#[derive(Default)]
struct Limiter {
    domains: Mutex<HashMap<String, Budget>>,
}

struct Budget {
    next_slot: Instant,
    day: u64,
    recipients: u64,
}

impl Limiter {
    fn admit(&self, args: &super::MailArgs, domain: &str, recipients: usize) -> Admit {
        if args.rate_per_sec == 0 && args.recipients_per_day == 0 {
            return Admit::Go;
        }
        let now = Instant::now();
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let today = secs / 86_400;
        let mut domains = self.domains.lock().expect("limiter lock");
        let b = domains.entry(domain.to_string()).or_insert(Budget {
            next_slot: now,
            day: today,
            recipients: 0,
        });
        if b.day != today {
            b.day = today;
            b.recipients = 0;
        }
        let n = recipients as u64;
        if args.recipients_per_day > 0 && b.recipients + n > args.recipients_per_day {
            return Admit::NextDay(Duration::from_secs(86_400 - secs % 86_400 + 1));
        }
        b.recipients += n;
        if args.rate_per_sec == 0 {
            return Admit::Go;
        }
        let slot = b.next_slot.max(now);
        b.next_slot = slot + Duration::from_secs(1) / args.rate_per_sec;
        if slot > now {
            Admit::Wait(slot - now)
        } else {
            Admit::Go
        }
    }
}

/// The status code of a relay's reply (`550`, or `550 5.1.1` with its enhanced code), never its
/// text: relays put the refused recipient's address there, and a member's address must not
/// reach the logs (INV-6).
fn reply_code(reply: &str) -> String {
    reply
        .split_whitespace()
        .take(2)
        .filter(|w| {
            w.chars()
                .all(|c| c.is_ascii_digit() || c == '.' || c == '-')
        })
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(32)
        .collect()
}

#[cfg(test)]
mod reply_code_tests {
    use super::reply_code;

    #[test]
    fn relay_replies_are_logged_by_code_only_never_an_address() {
        let logged = reply_code("550 5.1.1 <bob@corp.example>: Recipient address rejected");
        assert_eq!(logged, "550 5.1.1");
        assert_eq!(reply_code("451-4.7.1 try later"), "451-4.7.1");
        assert_eq!(reply_code("bob@corp.example 550"), "550");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_spaces_sends_and_caps_the_day() {
        let args = super::super::MailArgs {
            rate_per_sec: 10,
            recipients_per_day: 250,
            ..Default::default()
        };
        let l = Limiter::default();
        assert_eq!(l.admit(&args, "a.example", 100), Admit::Go);
        assert!(
            matches!(l.admit(&args, "a.example", 100), Admit::Wait(t) if t <= Duration::from_millis(100))
        );
        // Another destination has its own budget.
        assert_eq!(l.admit(&args, "b.example", 100), Admit::Go);
        assert!(matches!(
            l.admit(&args, "a.example", 100),
            Admit::NextDay(_)
        ));
    }
}
