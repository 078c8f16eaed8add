//! Watching the mail side: its `/metrics` families and what `/readyz` says about it.
//!
//! Readiness, and why each part counts as it does (an unready tenant is taken out of service,
//! its API with it, so only what routing elsewhere or a restart fixes makes it unready):
//!
//! - the SMTP listener (when `HUSH_MAIL_LISTEN` is set) must be bound and accepting: this
//!   replica's own listener, which another replica's does not replace for the mail routed
//!   here. Checked by connecting to it and reading its greeting. **Unready** when it fails.
//! - the relay (when `HUSH_MAIL_RELAY` names one) is reported when the delivery workers last
//!   saw it failing relay-wide (`connect`, `tls`, `auth`, …): every replica shares it, and
//!   queued mail waits safely. **Reported** in `degraded`, ready all the same.
//! - the queue's age: the oldest queued delivery older than `HUSH_MAIL_QUEUE_AGE_ALERT_SECS`
//!   (900 s by default) is **reported**, for the same reason: the queue is shared.
//!
//! Metrics, each safe under INV-1 and INV-4 because it moves by a message or a state change,
//! never by a recipient or a relay transaction (a post to a group of `n` is `n` recipients in
//! `ceil(n / batch)` transactions: read around a post of one's own, either counts the group;
//! see docs/architecture.md): `hush_mail_queue_messages{state}` (messages with a delivery
//! queued, delivered within retention, dead: the delivery outcomes, per message),
//! `hush_mail_queue_oldest_age_seconds`, and the relay's state
//! ([`super::relay::RelayStats::register`]).

use super::relay::RelayStats;
use super::store::MailStore;
use service_kit::health::{self, ReadyCheck};
use service_kit::metrics::{Family, Gauge, MetricsBuilder};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// How long the listener check waits for the greeting.
const GREETING_TIMEOUT: Duration = Duration::from_secs(2);

/// Registers the mail families in `metrics`: the relay's state, and the queue's gauges,
/// read from the database at each scrape (so every replica shows the same queue).
pub fn register(metrics: &mut MetricsBuilder, store: Arc<dyn MailStore>, relay: &RelayStats) {
    relay.register(metrics);
    let messages = Family::<[(&'static str, &'static str); 1], Gauge>::default();
    metrics.register(
        "mail_queue_messages",
        "Messages with a delivery queued, delivered (within retention) or dead: one per post, whatever its group holds",
        messages.clone(),
    );
    let oldest: Gauge = Gauge::default();
    metrics.register(
        "mail_queue_oldest_age_seconds",
        "Age of the oldest queued delivery, 0 when none waits",
        oldest.clone(),
    );
    metrics.on_scrape(move || {
        let (store, messages, oldest) = (store.clone(), messages.clone(), oldest.clone());
        async move {
            match store.counts().await {
                Ok(c) => {
                    for (state, n) in [
                        ("queued", c.queued_messages),
                        ("delivered", c.delivered_messages),
                        ("dead", c.dead_messages),
                    ] {
                        messages.get_or_create(&[("state", state)]).set(n);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "counting the mail queue for /metrics failed"),
            }
            match queue_age(store.as_ref()).await {
                Ok(age) => {
                    oldest.set(i64::try_from(age.as_secs()).unwrap_or(i64::MAX));
                }
                Err(e) => tracing::warn!(error = %e, "reading the mail queue's age failed"),
            }
        }
    });
}

/// How long the oldest queued delivery has waited (zero when none does).
async fn queue_age(store: &dyn MailStore) -> Result<Duration, crate::StoreError> {
    let oldest = store.oldest_queued_ms().await?;
    let now = service_kit::db::now_ms();
    Ok(oldest.map_or(Duration::ZERO, |at| {
        Duration::from_millis(u64::try_from(now.saturating_sub(at)).unwrap_or(0))
    }))
}

/// The readiness check of the listener at `addr`: it must answer a connection with a greeting
/// (`220`, or `421` when it is at its connection limit: busy, but accepting). A listener bound
/// to every address is reached on loopback.
pub fn listener_check(addr: SocketAddr) -> (&'static str, ReadyCheck) {
    let mut target = addr;
    if target.ip().is_unspecified() {
        target.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let check = health::check(move || async move {
        let greet = async {
            let stream = tokio::net::TcpStream::connect(target)
                .await
                .map_err(|e| format!("connecting: {e}"))?;
            let mut lines = BufReader::new(stream);
            let mut line = String::new();
            lines
                .read_line(&mut line)
                .await
                .map_err(|e| format!("reading the greeting: {e}"))?;
            let _ = lines.get_mut().write_all(b"QUIT\r\n").await;
            if line.starts_with("220") || line.starts_with("421") {
                Ok(())
            } else {
                Err("no SMTP greeting".to_string())
            }
        };
        tokio::time::timeout(GREETING_TIMEOUT, greet)
            .await
            .map_err(|_| "no greeting in time".to_string())?
    });
    ("mail_listener", check)
}

/// The reported check of the relay: failing relay-wide, with the cause and since when.
pub fn relay_check(relay: Arc<RelayStats>) -> (&'static str, ReadyCheck) {
    let check = health::check(move || {
        let failing = relay.failing();
        async move {
            match failing {
                None => Ok(()),
                Some((cause, since_ms)) => {
                    let secs = service_kit::db::now_ms().saturating_sub(since_ms) / 1000;
                    Err(format!("failing ({cause}) for {secs} s"))
                }
            }
        }
    });
    ("mail_relay", check)
}

/// The reported check of the queue's age against `alert` (never when `alert` is zero).
pub fn queue_age_check(store: Arc<dyn MailStore>, alert: Duration) -> (&'static str, ReadyCheck) {
    let check = health::check(move || {
        let store = store.clone();
        async move {
            if alert.is_zero() {
                return Ok(());
            }
            let age = queue_age(store.as_ref())
                .await
                .map_err(|e| format!("reading the queue's age: {e}"))?;
            if age > alert {
                Err(format!(
                    "the oldest queued delivery waits for {} s (alert at {} s)",
                    age.as_secs(),
                    alert.as_secs()
                ))
            } else {
                Ok(())
            }
        }
    });
    ("mail_queue", check)
}
