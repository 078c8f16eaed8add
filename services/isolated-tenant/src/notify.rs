//! Privacy-safe notifications (issue 19, item 2): mail the tenant writes to the one person or
//! role a event concerns, and an optional signed webhook per deployment.
//!
//! The set of notifications is closed, and the tenant writes every word of them, so no caller
//! can smuggle a name into one:
//!
//! | template | to | says |
//! |---|---|---|
//! | `requests-waiting` | the group's owners (found here) | "N requests are waiting in G" |
//! | `request-decided` | the one requester (their own address, from their own request) | "your request to join G was approved / denied" |
//! | `breakglass-waiting` | the officers' mailboxes (`HUSH_NOTIFY_OFFICERS`) | "a break-glass request waits for your approval" |
//! | `breakglass-decided` | the auditor who filed the request (their address, sealed in it) | "your break-glass request was approved / declined" |
//!
//! None names a person (no name, address or subject of anyone but the recipient, who is in
//! `To:`), and none goes to anyone the event does not concern: a requester's decision goes to
//! that requester alone, and nobody is told that someone else joined. The first two come from
//! membership-api over `POST /tenant/v1/notifications` ([`router`]; membership-api only); the
//! last two are queued by the tenant itself when an auditor files a break-glass request
//! ([`Notifier::breakglass_waiting`]) and when officers decide it
//! ([`Notifier::breakglass_decided`]), without the group or the person asked about.
//!
//! Mail goes out through the group mail's queue and relay (sealed at rest like any copy, from
//! `HUSH_NOTIFY_FROM`), stored under the nil group id so that a dump does not tie a decision
//! to its group. Limits, all in this module, all in memory (per replica):
//!
//! - owners get at most one `requests-waiting` per group per `HUSH_NOTIFY_OWNER_INTERVAL_SECS`
//!   (default 900): the first request of a quiet group is told at once, later ones within the
//!   interval are folded into one mail at its end, with the latest count;
//! - every recipient gets at most `HUSH_NOTIFY_MAX_PER_RECIPIENT_PER_HOUR` (default 30)
//!   notifications an hour; more are dropped and counted in the log (without the address);
//! - the webhook's queue holds at most [`WEBHOOK_QUEUE`] events (more are dropped), each POST
//!   times out after [`WEBHOOK_TIMEOUT`] and is tried at most [`WEBHOOK_ATTEMPTS`] times.
//!
//! The webhook (`HUSH_NOTIFY_WEBHOOK_URL`, off unless set) receives the events whose audience is
//! a role, not one person: `requests-waiting` and `breakglass-waiting`, with the same nameless
//! content. A requester's decision is never sent there: it concerns one person, and its time
//! beside a group's name would tell the hook's reader when someone joined. Each POST carries
//! `Hush-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` under the secret in
//! `HUSH_NOTIFY_WEBHOOK_SECRET_FILE`, which is never logged.

use crate::access::{op, Permit};
use crate::error::ApiError;
use crate::mail::listener::written_for_queue;
use crate::mail::store::MailStore;
use crate::store::StoreError;
use crate::AppState;
use axum::extract::State;
use base64::Engine as _;
use domain::{Email, GroupId};
use hmac::{Hmac, Mac};
use http::StatusCode;
use serde::Serialize;
use service_kit::{AppJson, Problem};
use sha2::Sha256;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tenant_api::{DecisionOutcome, Notification};
use utoipa_axum::{router::OpenApiRouter, routes};
use zeroize::Zeroizing;

/// Most requests a `requests-waiting` may count: more than any real queue, small enough to
/// read.
pub use tenant_api::MAX_NOTIFIED_COUNT as MAX_COUNT;
/// Events waiting for the webhook; more are dropped (and logged), so a hook that is down
/// cannot make the tenant hold memory without bound.
pub const WEBHOOK_QUEUE: usize = 1024;
/// How long one POST to the webhook may take.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);
/// Tries per event (then it is dropped and logged), one second apart, doubling.
pub const WEBHOOK_ATTEMPTS: u32 = 3;
/// Shortest webhook secret accepted, in bytes.
pub const MIN_SECRET: usize = 16;
/// Groups and recipients remembered for the limits before old entries are forgotten.
const MAX_TRACKED: usize = 100_000;
/// The window of the per-recipient limit.
const RECIPIENT_WINDOW: Duration = Duration::from_secs(3600);

/// Notification settings (all `HUSH_NOTIFY_*`).
#[derive(Clone, Debug, clap::Args)]
pub struct NotifyArgs {
    /// The address notifications come from (`From:`).
    #[arg(
        long = "notify-from",
        env = "HUSH_NOTIFY_FROM",
        default_value = "notifications@hush.localhost"
    )]
    pub from: String,
    /// The privacy officers' mailboxes, comma separated: where "a break-glass request waits for
    /// your approval" goes (roles come from the IdP, so their addresses are configuration).
    /// Empty: nobody is told.
    #[arg(
        long = "notify-officers",
        env = "HUSH_NOTIFY_OFFICERS",
        default_value = ""
    )]
    pub officers: String,
    /// At most one "requests are waiting" mail per group per this many seconds.
    #[arg(
        long = "notify-owner-interval-secs",
        env = "HUSH_NOTIFY_OWNER_INTERVAL_SECS",
        default_value_t = 900
    )]
    pub owner_interval_secs: u64,
    /// At most this many notifications per recipient per hour; more are dropped.
    #[arg(
        long = "notify-max-per-recipient-per-hour",
        env = "HUSH_NOTIFY_MAX_PER_RECIPIENT_PER_HOUR",
        default_value_t = 30
    )]
    pub max_per_recipient_per_hour: u32,
    /// A URL to POST each role-wide event to as signed JSON. Unset: no webhook.
    #[arg(long = "notify-webhook-url", env = "HUSH_NOTIFY_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    /// The file holding the webhook's HMAC secret (at least 16 bytes; surrounding whitespace
    /// is trimmed). Required with the URL.
    #[arg(
        long = "notify-webhook-secret-file",
        env = "HUSH_NOTIFY_WEBHOOK_SECRET_FILE"
    )]
    pub webhook_secret_file: Option<PathBuf>,
}

impl Default for NotifyArgs {
    /// The flags' defaults: notifications by mail only, nobody for break-glass, no webhook.
    fn default() -> Self {
        Self {
            from: "notifications@hush.localhost".into(),
            officers: String::new(),
            owner_interval_secs: 900,
            max_per_recipient_per_hour: 30,
            webhook_url: None,
            webhook_secret_file: None,
        }
    }
}

/// Sends notifications. Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    /// The queue the group mail goes through.
    mail: Arc<dyn MailStore>,
    /// `From:`.
    from: Email,
    /// The host name in `Message-ID`.
    hostname: String,
    /// The officers' mailboxes.
    officers: Vec<Email>,
    /// At most one owners' digest per group per this.
    owner_interval: Duration,
    /// At most this many per recipient per hour.
    per_recipient: u32,
    /// The limits' memory.
    limits: Mutex<Limits>,
    /// Where webhook events go, when there is a webhook.
    webhook: Option<tokio::sync::mpsc::Sender<Event>>,
}

#[derive(Default)]
struct Limits {
    /// Per group: when its owners were last mailed, and the count owed at the interval's end.
    digests: HashMap<GroupId, Digest>,
    /// Per recipient (lower-cased address, in memory only): the window's start and its count.
    recipients: HashMap<String, (Instant, u32)>,
}

#[derive(Clone, Copy)]
struct Digest {
    last_sent: Instant,
    owed: Option<u32>,
}

/// One webhook event: the same nameless content as the mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// `requests-waiting` or `breakglass-waiting`.
    pub event: &'static str,
    /// The group's public name (`requests-waiting`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Pending requests (`requests-waiting`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
}

/// What the decision to send a digest now, later or not at all is.
#[derive(Debug, PartialEq, Eq)]
enum Digesting {
    /// Send now.
    Now,
    /// Owed already; the task that sends it at the interval's end is running.
    Folded,
    /// Owed now; start the task that sends it at `Instant`.
    Later(Instant),
}

impl Notifier {
    /// From configuration: parses the addresses and reads the webhook secret, and starts the
    /// webhook's sender when there is one.
    pub fn new(
        args: &NotifyArgs,
        hostname: &str,
        mail: Arc<dyn MailStore>,
    ) -> anyhow::Result<Self> {
        let from =
            Email::parse(&args.from).map_err(|e| anyhow::anyhow!("HUSH_NOTIFY_FROM: {e}"))?;
        let officers = args
            .officers
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| Email::parse(s).map_err(|e| anyhow::anyhow!("HUSH_NOTIFY_OFFICERS: {e}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let webhook = match (&args.webhook_url, &args.webhook_secret_file) {
            (None, None) => None,
            (Some(url), Some(file)) => {
                let secret = read_secret(file)?;
                let url = reqwest::Url::parse(url)
                    .map_err(|e| anyhow::anyhow!("HUSH_NOTIFY_WEBHOOK_URL: {e}"))?;
                Some(Webhook::start(url, secret)?)
            }
            (Some(_), None) => anyhow::bail!(
                "HUSH_NOTIFY_WEBHOOK_URL needs HUSH_NOTIFY_WEBHOOK_SECRET_FILE (its signing secret)"
            ),
            (None, Some(_)) => {
                anyhow::bail!(
                    "HUSH_NOTIFY_WEBHOOK_SECRET_FILE is set but HUSH_NOTIFY_WEBHOOK_URL is not"
                )
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                mail,
                from,
                hostname: hostname.to_string(),
                officers,
                owner_interval: Duration::from_secs(args.owner_interval_secs),
                per_recipient: args.max_per_recipient_per_hour,
                limits: Mutex::new(Limits::default()),
                webhook,
            }),
        })
    }

    /// Handles one notification a service asked for.
    pub async fn notify(&self, n: &Notification) -> Result<(), StoreError> {
        match n {
            Notification::RequestsWaiting { group_id, count } => {
                self.requests_waiting(*group_id, *count).await
            }
            Notification::RequestDecided {
                group_id,
                outcome,
                to,
            } => self.request_decided(*group_id, *outcome, to).await,
        }
    }

    /// "N requests are waiting in G" to the owners, at most once per group per interval.
    async fn requests_waiting(&self, group: GroupId, count: u32) -> Result<(), StoreError> {
        let decision = {
            let mut limits = self.inner.limits.lock().expect("limits lock");
            digest_step(
                &mut limits,
                group,
                count,
                Instant::now(),
                self.inner.owner_interval,
            )
        };
        match decision {
            Digesting::Now => self.send_requests_waiting(group, count).await,
            Digesting::Folded => Ok(()),
            Digesting::Later(due) => {
                let this = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep_until(due.into()).await;
                    let owed = {
                        let mut limits = this.inner.limits.lock().expect("limits lock");
                        limits.digests.get_mut(&group).and_then(|d| {
                            d.last_sent = Instant::now();
                            d.owed.take()
                        })
                    };
                    if let Some(count) = owed {
                        if let Err(e) = this.send_requests_waiting(group, count).await {
                            tracing::warn!(error = %e, "an owners' digest could not be queued");
                        }
                    }
                });
                Ok(())
            }
        }
    }

    async fn send_requests_waiting(&self, group: GroupId, count: u32) -> Result<(), StoreError> {
        let Some(g) = self.inner.mail.notice_group(group).await? else {
            return Ok(());
        };
        let text = requests_waiting_text(&g.display_name, count);
        for owner in &g.owners {
            self.queue(owner, &text).await?;
        }
        self.hook(Event {
            event: "requests-waiting",
            group: Some(g.display_name),
            count: Some(count),
        });
        Ok(())
    }

    /// "Your request to join G was …" to the requester alone.
    async fn request_decided(
        &self,
        group: GroupId,
        outcome: DecisionOutcome,
        to: &Email,
    ) -> Result<(), StoreError> {
        let Some(g) = self.inner.mail.notice_group(group).await? else {
            return Ok(());
        };
        self.queue(to, &request_decided_text(&g.display_name, outcome))
            .await
    }

    /// "A break-glass request waits for your approval" to each officers' mailbox, and the
    /// webhook. Called by the tenant after an auditor filed a request; a failure is logged and
    /// does not undo the filing.
    pub async fn breakglass_waiting(&self) {
        let text = breakglass_waiting_text();
        for officer in &self.inner.officers {
            if let Err(e) = self.queue(officer, &text).await {
                tracing::warn!(error = %e, "a break-glass notification could not be queued");
            }
        }
        self.hook(Event {
            event: "breakglass-waiting",
            group: None,
            count: None,
        });
    }

    /// "Your break-glass request was approved / declined" to the auditor who filed it, alone:
    /// no group, no person. Called by the tenant after the second approval or a decline; a
    /// failure is logged and does not undo the decision.
    pub async fn breakglass_decided(&self, to: &Email, approved: bool) {
        if let Err(e) = self.queue(to, &breakglass_decided_text(approved)).await {
            tracing::warn!(error = %e, "a break-glass decision could not be queued");
        }
    }

    /// Queues `text` to `to`, unless `to` had its hour's share.
    async fn queue(&self, to: &Email, text: &Text) -> Result<(), StoreError> {
        let allowed = {
            let mut limits = self.inner.limits.lock().expect("limits lock");
            recipient_step(&mut limits, to, Instant::now(), self.inner.per_recipient)
        };
        if !allowed {
            tracing::info!("a notification was dropped: its recipient reached the hourly limit");
            return Ok(());
        }
        let message = written_for_queue(&render(&self.inner.from, to, &self.inner.hostname, text));
        self.inner
            .mail
            .accept_notice(GroupId::from(uuid::Uuid::nil()), to, &message)
            .await?;
        Ok(())
    }

    fn hook(&self, event: Event) {
        if let Some(tx) = &self.inner.webhook {
            if tx.try_send(event).is_err() {
                tracing::warn!("a webhook event was dropped: the webhook's queue is full");
            }
        }
    }
}

/// The digest rule: the first call after a quiet interval sends now; a call within the
/// interval owes one mail at its end (the latest count), started once.
fn digest_step(
    limits: &mut Limits,
    group: GroupId,
    count: u32,
    now: Instant,
    interval: Duration,
) -> Digesting {
    if limits.digests.len() >= MAX_TRACKED {
        limits
            .digests
            .retain(|_, d| d.owed.is_some() || now.duration_since(d.last_sent) < interval);
    }
    let (digest, step) = match limits.digests.get(&group).copied() {
        Some(d) if now.duration_since(d.last_sent) < interval => {
            let step = if d.owed.is_none() {
                Digesting::Later(d.last_sent + interval)
            } else {
                Digesting::Folded
            };
            (
                Digest {
                    owed: Some(count),
                    ..d
                },
                step,
            )
        }
        // The interval ended and its task is about to send: it sends this count.
        Some(d) if d.owed.is_some() => (
            Digest {
                owed: Some(count),
                ..d
            },
            Digesting::Folded,
        ),
        _ => (
            Digest {
                last_sent: now,
                owed: None,
            },
            Digesting::Now,
        ),
    };
    limits.digests.insert(group, digest);
    step
}

/// The per-recipient rule: at most `max` in a window of an hour.
fn recipient_step(limits: &mut Limits, to: &Email, now: Instant, max: u32) -> bool {
    if limits.recipients.len() >= MAX_TRACKED {
        limits
            .recipients
            .retain(|_, (start, _)| now.duration_since(*start) < RECIPIENT_WINDOW);
    }
    let entry = limits
        .recipients
        .entry(to.as_str().to_ascii_lowercase())
        .or_insert((now, 0));
    if now.duration_since(entry.0) >= RECIPIENT_WINDOW {
        *entry = (now, 0);
    }
    if entry.1 >= max {
        return false;
    }
    entry.1 += 1;
    true
}

/// A notification's words: a subject line and a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    /// The `Subject:`.
    pub subject: String,
    /// The body.
    pub body: String,
}

/// A group's public name, safe in a header and a line: control characters become spaces.
fn clean(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn requests_waiting_text(group: &str, count: u32) -> Text {
    let group = clean(group);
    let (n, are) = if count == 1 {
        ("1 request".to_string(), "is")
    } else {
        (format!("{count} requests"), "are")
    };
    Text {
        subject: format!("{n} to join {group} {are} waiting"),
        body: format!(
            "{n} to join {group} {are} waiting for an owner's decision.\r\n\
             Open Hush to see who asked and decide.\r\n\
             \r\n\
             This notice names nobody. It goes to the group's owners only, at most once in a \
             while, however many people ask.\r\n"
        ),
    }
}

fn request_decided_text(group: &str, outcome: DecisionOutcome) -> Text {
    let group = clean(group);
    let outcome = outcome.as_str();
    Text {
        subject: format!("Your request to join {group} was {outcome}"),
        body: format!(
            "Your request to join {group} was {outcome} by the group's owners.\r\n\
             \r\n\
             This notice goes to you alone. Nobody else was told.\r\n"
        ),
    }
}

fn breakglass_waiting_text() -> Text {
    Text {
        subject: "A break-glass request waits for your approval".into(),
        body: "A break-glass request was filed and waits for two privacy officers' approval.\r\n\
               Open Hush to review its justification.\r\n\
               \r\n\
               This notice names no group and no person.\r\n"
            .into(),
    }
}

fn breakglass_decided_text(approved: bool) -> Text {
    if approved {
        Text {
            subject: "Your break-glass request was approved".into(),
            body: "Two privacy officers approved your break-glass request.\r\n\
                   Open Hush (Break-glass access) to see the answer, once, before the grant \
                   expires.\r\n\
                   \r\n\
                   This notice goes to you alone and names no group and no person.\r\n"
                .into(),
        }
    } else {
        Text {
            subject: "Your break-glass request was declined".into(),
            body: "A privacy officer declined your break-glass request.\r\n\
                   Open Hush (Break-glass access) to read the reason, if one was given.\r\n\
                   \r\n\
                   This notice goes to you alone and names no group and no person.\r\n"
                .into(),
        }
    }
}

/// A header value: as is when ASCII, else RFC 2047 (UTF-8, base64).
fn header_value(s: &str) -> String {
    if s.is_ascii() {
        s.to_string()
    } else {
        format!(
            "=?utf-8?b?{}?=",
            base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
        )
    }
}

/// The whole message.
fn render(from: &Email, to: &Email, hostname: &str, text: &Text) -> Vec<u8> {
    let date = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_default();
    format!(
        "From: Hush <{from}>\r\n\
         To: <{to}>\r\n\
         Subject: {subject}\r\n\
         Date: {date}\r\n\
         Message-ID: <{id}@{hostname}>\r\n\
         Auto-Submitted: auto-generated\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n\
         {body}",
        subject = header_value(&text.subject),
        id = uuid::Uuid::new_v4().simple(),
        body = text.body,
    )
    .into_bytes()
}

fn read_secret(file: &std::path::Path) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let raw =
        Zeroizing::new(std::fs::read(file).map_err(|e| {
            anyhow::anyhow!("reading the webhook secret file {}: {e}", file.display())
        })?);
    let text = std::str::from_utf8(&raw)
        .map_err(|_| anyhow::anyhow!("the webhook secret file is not text"))?
        .trim();
    if text.len() < MIN_SECRET {
        anyhow::bail!("the webhook secret must be at least {MIN_SECRET} bytes");
    }
    Ok(Zeroizing::new(text.as_bytes().to_vec()))
}

/// `Hush-Signature`'s value for `body` sent at `t` (unix seconds): `t=<t>,v1=<hex
/// HMAC-SHA256(secret, "<t>.<body>")>`. A receiver recomputes it and refuses a stale `t`.
pub fn signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The header carrying [`signature`].
pub const SIGNATURE_HEADER: &str = "hush-signature";

struct Webhook;

impl Webhook {
    /// Starts the task that POSTs events to `url` one at a time, and answers its queue.
    fn start(
        url: reqwest::Url,
        secret: Zeroizing<Vec<u8>>,
    ) -> anyhow::Result<tokio::sync::mpsc::Sender<Event>> {
        let client = reqwest::Client::builder()
            .timeout(WEBHOOK_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Event>(WEBHOOK_QUEUE);
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                let body = serde_json::to_vec(&event).expect("events serialise");
                let mut wait = Duration::from_secs(1);
                for attempt in 1..=WEBHOOK_ATTEMPTS {
                    let t = time::OffsetDateTime::now_utc().unix_timestamp();
                    let sent = client
                        .post(url.clone())
                        .header(http::header::CONTENT_TYPE, "application/json")
                        .header(SIGNATURE_HEADER, signature(&secret, t, &body))
                        .body(body.clone())
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status().is_success() => break,
                        // The status or the kind of failure only: never the URL's secrets, never
                        // the body.
                        Ok(r) => {
                            tracing::warn!(status = %r.status(), attempt, "the webhook refused an event")
                        }
                        Err(e) => tracing::warn!(
                            timeout = e.is_timeout(),
                            attempt,
                            "the webhook could not be reached"
                        ),
                    }
                    if attempt < WEBHOOK_ATTEMPTS {
                        tokio::time::sleep(wait).await;
                        wait *= 2;
                    }
                }
            }
        });
        Ok(tx)
    }
}

/// The notification route, documented.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(notify))
}

/// Queues a notification from the closed set of templates (membership-api only).
///
/// The tenant writes the words and finds the owners itself; `request-decided` goes to the one
/// address given, the requester's own. Answered 202 alike whether the mail was queued, folded
/// into an owed digest, dropped by a limit, or had nobody to go to (an unknown group, owners
/// the tenant has no address for).
#[utoipa::path(
    post,
    path = "/tenant/v1/notifications",
    tag = "notifications",
    request_body = Notification,
    responses(
        (status = 202, description = "Taken: queued, folded into the group's owed digest, or dropped by a limit; the answer does not say which."),
        (status = "4XX", description = "`400` The body is not JSON. `401` No service token, or one that does not verify. `403` The calling service may not send notifications. `413` The body is larger than the tenant accepts. `415` The body is not sent as application/json. `422` An unknown template, a missing or invalid field, or a count outside 1–100000.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn notify(
    _permit: Permit<op::Notify>,
    State(state): State<AppState>,
    AppJson(n): AppJson<Notification>,
) -> Result<StatusCode, ApiError> {
    if let Notification::RequestsWaiting { count, .. } = &n {
        if !(1..=MAX_COUNT).contains(count) {
            return Err(ApiError::Invalid(format!("count must be 1 to {MAX_COUNT}")));
        }
    }
    state.notifier.notify(&n).await?;
    Ok(StatusCode::ACCEPTED)
}

#[cfg(test)]
mod tests;
