//! Job workers: each leases one chunk at a time (`FOR UPDATE SKIP LOCKED` on Postgres, so
//! replicas on one database share a job's chunks; leases expire, so a dead replica's chunks go
//! to the others), opens it, asks control-api for its groups' labels, applies it through the
//! tenant's batch endpoint (one transaction), and checkpoints it. Operations are idempotent,
//! so a chunk replayed after a crash changes nothing.
//!
//! Throttling: a token bucket (`--ops-per-sec`) shared by every replica through the database,
//! paid after each chunk, so a worker never holds a lease while it waits. Backoff: when the tenant answers 429/503 with `Retry-After`, the chunk
//! is released for a try after that delay; when the tenant (or control-api) cannot be reached,
//! every worker of the replica waits an exponential delay. Either way the chunk's operations
//! count as "failed and retrying" until it is applied.
//!
//! Workers have their own database pool, separate from the API's, and log job ids and counts,
//! never a person (INV-6).

use crate::chunk;
use crate::config::JobSettings;
use crate::jobs::now_ms;
use crate::seal::JobKey;
use crate::store::{Lease, Store};
use control_client::ControlClient;
use domain::{GroupId, GroupState, Label};
use service_kit::limits::{us, LimitTable};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tenant_api::{ApplyBatch, BatchOp, GroupLabel};
use tenant_client::{BatchError, TenantClient};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// How often an idle worker looks for work.
const IDLE_POLL: Duration = Duration::from_millis(200);
/// Longest wait between tries of a failing chunk (without a `Retry-After`).
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Intakes older than this whose upload never finished are removed.
const STALE_INTAKE: Duration = Duration::from_secs(3600);

/// The name of the shared bucket in the `rate_limits` table: it belongs to no one.
const THROTTLE_KEY: &[u8] = b"bulk/ops-per-sec";

/// The bulk rate, shared by every replica on one database: a GCRA row in the `rate_limits`
/// table ([`service_kit::limits`]), charged once per chunk (never per operation) in one
/// atomic statement, paid in arrears. Taking more than is there leaves a debt the taker sleeps
/// off, so the long-run rate of all replicas together never exceeds `rate`; the excess over any
/// window is at most one second's worth (the burst) plus two chunks per worker (of every
/// replica): one applied and not yet paid, one paid while others' payments moved the bucket on.
///
/// When the table cannot be reached the replica falls back to its own bucket (the rate per
/// replica, as before the bucket was shared): the workers cannot lease chunks without the
/// database anyway, so this only covers the chunks in hand.
pub struct Throttle {
    rate: u32,
    table: Option<Arc<dyn LimitTable>>,
    local: LocalBucket,
    failing: AtomicBool,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle")
            .field("rate", &self.rate)
            .field("shared", &self.table.is_some())
            .finish_non_exhaustive()
    }
}

impl Throttle {
    /// `ops_per_sec` operations per second for all replicas on `table`'s database together,
    /// bursting to one second's worth; 0 for no limit.
    pub fn shared(ops_per_sec: u32, table: Arc<dyn LimitTable>) -> Self {
        Self {
            table: Some(table),
            ..Self::local(ops_per_sec)
        }
    }

    /// `ops_per_sec` for this replica alone (tests of the worker on its own).
    pub fn local(ops_per_sec: u32) -> Self {
        Self {
            rate: ops_per_sec,
            table: None,
            local: LocalBucket::new(ops_per_sec),
            failing: AtomicBool::new(false),
        }
    }

    /// How long whoever took `n` operations must wait before taking more.
    pub async fn take(&self, n: u64) -> Duration {
        if self.rate == 0 {
            return Duration::ZERO;
        }
        let Some(table) = &self.table else {
            return self.local.take(n);
        };
        let second = 1_000_000i64;
        let cost = i64::try_from(n)
            .unwrap_or(i64::MAX / second)
            .saturating_mul(second)
            / i64::from(self.rate);
        match table.charge(THROTTLE_KEY, cost, second, us(now_ms())).await {
            Ok(wait) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("the shared bulk throttle answers again");
                }
                Duration::from_micros(u64::try_from(wait).unwrap_or(0))
            }
            Err(e) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "the shared bulk throttle is failing; this replica throttles on its own until it answers");
                }
                self.local.take(n)
            }
        }
    }
}

/// A token bucket in this replica's memory, paid in arrears.
#[derive(Debug)]
struct LocalBucket {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl LocalBucket {
    fn new(ops_per_sec: u32) -> Self {
        let rate = f64::from(ops_per_sec);
        Self {
            rate,
            state: Mutex::new((rate, Instant::now())),
        }
    }

    fn take(&self, n: u64) -> Duration {
        if self.rate <= 0.0 {
            return Duration::ZERO;
        }
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let refill = now.duration_since(s.1).as_secs_f64() * self.rate;
        s.0 = (s.0 + refill).min(self.rate) - n as f64;
        s.1 = now;
        if s.0 < 0.0 {
            Duration::from_secs_f64(-s.0 / self.rate)
        } else {
            Duration::ZERO
        }
    }
}

/// A replica-wide pause after the tenant pushed back.
#[derive(Debug)]
pub struct Backoff(Mutex<Instant>);

impl Default for Backoff {
    fn default() -> Self {
        Self(Mutex::new(Instant::now()))
    }
}

impl Backoff {
    /// No worker starts a chunk for `d`.
    pub fn hold(&self, d: Duration) {
        let mut until = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *until = (*until).max(Instant::now() + d);
    }

    /// How long until workers may go on.
    pub fn remaining(&self) -> Duration {
        let until = *self.0.lock().unwrap_or_else(|p| p.into_inner());
        until.saturating_duration_since(Instant::now())
    }
}

/// What workers share.
#[derive(Clone)]
pub struct Workers {
    /// The workers' own database pool.
    pub store: Arc<dyn Store>,
    /// Where chunks are applied.
    pub tenant: TenantClient,
    /// Where labels come from.
    pub control: ControlClient,
    /// Opens chunks.
    pub key: JobKey,
    /// Chunk size, rate, lease.
    pub settings: JobSettings,
    /// The bulk rate, shared with the other replicas.
    pub throttle: Arc<Throttle>,
    /// The replica's pause after push-back.
    pub backoff: Arc<Backoff>,
    /// Rung by the API when a job becomes runnable: idle workers look again at once.
    pub work: Arc<tokio::sync::Notify>,
}

/// Starts `settings.workers` workers; they stop when `stop` turns true, after the chunk in
/// hand.
pub fn spawn(w: &Workers, stop: &watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    (0..w.settings.workers)
        .map(|i| {
            let w = w.clone();
            let stop = stop.clone();
            tokio::spawn(async move { w.run(i == 0, stop).await })
        })
        .collect()
}

/// Sleeps `d`, or less if `stop` turns true; answers whether to stop.
async fn pause(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        () = tokio::time::sleep(d) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

/// What applying a chunk came to.
enum Applied {
    Done,
    Retry(Duration),
    Fail(String),
}

impl Workers {
    async fn run(self, sweeper: bool, mut stop: watch::Receiver<bool>) {
        // Each worker is its own lease owner, so a lost lease is detected per chunk.
        let owner = Uuid::new_v4();
        let mut labels: (Uuid, HashMap<GroupId, Option<Label>>) = (Uuid::nil(), HashMap::new());
        let mut last_sweep = Instant::now() - STALE_INTAKE;
        loop {
            let wait = self.backoff.remaining();
            if pause(wait, &mut stop).await {
                return;
            }
            if sweeper && last_sweep.elapsed() > Duration::from_secs(60) {
                last_sweep = Instant::now();
                let before = now_ms() - STALE_INTAKE.as_millis() as i64;
                if let Err(e) = self.store.sweep_intakes(before).await {
                    tracing::warn!(error = %e, "sweeping stale intakes failed");
                }
            }
            // Listening before looking, so a job queued between the look and the wait is not
            // missed until the next poll.
            let runnable = self.work.notified();
            tokio::pin!(runnable);
            runnable.as_mut().enable();
            let now = now_ms();
            let lease_ms = self.settings.lease.as_millis() as i64;
            let lease = match self.store.lease_chunk(owner, now, now + lease_ms).await {
                Ok(Some(l)) => l,
                Ok(None) => {
                    // Another replica's jobs are found at the next poll.
                    tokio::select! {
                        stopping = pause(IDLE_POLL, &mut stop) => if stopping {
                            return;
                        },
                        () = &mut runnable => {}
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "leasing a chunk failed");
                    if pause(Duration::from_secs(1), &mut stop).await {
                        return;
                    }
                    continue;
                }
            };
            let (job, seq, n) = (lease.job_id, lease.seq, lease.ops);
            if labels.0 != job {
                labels = (job, HashMap::new());
            }
            let result = self.apply(&lease, owner, &mut labels.1).await;
            let outcome = match result {
                Applied::Done => Ok(()),
                Applied::Retry(delay) => {
                    tracing::info!(%job, seq, failures = lease.failures + 1, delay_ms = delay.as_millis() as u64, "chunk will be retried");
                    self.store
                        .retry_chunk(job, seq, owner, now_ms() + delay.as_millis() as i64)
                        .await
                }
                Applied::Fail(reason) => {
                    tracing::error!(%job, seq, %reason, "job failed");
                    self.store.fail_job(job, &reason, now_ms()).await
                }
            };
            if let Err(e) = outcome {
                tracing::warn!(%job, seq, error = %e, "recording a chunk's outcome failed; its lease will expire");
            }
            let debt = self.throttle.take(n).await;
            if pause(debt, &mut stop).await {
                return;
            }
        }
    }

    async fn apply(
        &self,
        lease: &Lease,
        owner: Uuid,
        cache: &mut HashMap<GroupId, Option<Label>>,
    ) -> Applied {
        let ops = match chunk::open(&self.key, lease.job_id, lease.seq, &lease.sealed) {
            Ok(ops) => ops,
            Err(e) => return Applied::Fail(e.to_string()),
        };
        let backoff = |failures: u64| {
            let ms = 250u64.saturating_mul(1 << failures.min(10));
            Duration::from_millis(ms).min(MAX_BACKOFF)
        };
        let mut missing: Vec<GroupId> = ops
            .iter()
            .map(|o| o.group_id)
            .filter(|g| !cache.contains_key(g))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            match self.control.groups(&missing).await {
                Ok(found) => {
                    for g in &missing {
                        cache.insert(*g, None);
                    }
                    for g in found {
                        if g.state == GroupState::Active {
                            cache.insert(g.id, Some(g.label));
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "control-api lookup failed");
                    let d = backoff(lease.failures);
                    self.backoff.hold(d);
                    return Applied::Retry(d);
                }
            }
        }
        let mut groups: Vec<GroupId> = ops.iter().map(|o| o.group_id).collect();
        groups.sort_unstable();
        groups.dedup();
        let labels = groups
            .into_iter()
            .filter_map(|g| {
                cache
                    .get(&g)
                    .cloned()
                    .flatten()
                    .map(|label| GroupLabel { group_id: g, label })
            })
            .collect();
        let batch = ApplyBatch {
            ops: ops.into_iter().map(BatchOp::from).collect(),
            labels,
        };
        match self.tenant.apply_batch(&batch).await {
            Ok(outcome) => {
                match self
                    .store
                    .complete_chunk(lease.job_id, lease.seq, owner, &outcome, now_ms())
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::info!(job = %lease.job_id, seq = lease.seq, "chunk was taken over or its job ended; its replay changed nothing")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "checkpoint failed; the chunk will be replayed")
                    }
                }
                Applied::Done
            }
            // The tenant is busy with other batches, not failing: this chunk waits what it
            // asked; the replica's other workers go on (their batches queue in the tenant).
            Err(BatchError::Busy { retry_after }) => {
                Applied::Retry(retry_after.unwrap_or_else(|| backoff(lease.failures)))
            }
            Err(e) if e.is_retryable() => {
                tracing::warn!(error = %e, "the tenant failed a chunk");
                let d = backoff(lease.failures);
                self.backoff.hold(d);
                Applied::Retry(d)
            }
            Err(e) => Applied::Fail(format!("the tenant refused a chunk: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_bucket_bursts_one_second_then_charges_the_rate() {
        let t = Throttle::local(1000);
        assert_eq!(t.take(1000).await, Duration::ZERO);
        let debt = t.take(500).await;
        assert!(
            debt > Duration::from_millis(400) && debt <= Duration::from_millis(500),
            "{debt:?}"
        );
        assert_eq!(Throttle::local(0).take(1_000_000).await, Duration::ZERO);
    }

    #[tokio::test]
    async fn two_replicas_on_one_database_share_one_bucket() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("bulk.db").display());
        let a = crate::store::connect(&url, 2).await.unwrap();
        let b = crate::store::connect(&url, 2).await.unwrap();
        let (a, b) = (
            Throttle::shared(1000, a.limit_table()),
            Throttle::shared(1000, b.limit_table()),
        );
        // One second's worth between them, then a debt for whoever takes more.
        assert_eq!(a.take(600).await, Duration::ZERO);
        assert_eq!(b.take(400).await, Duration::ZERO);
        let debt = b.take(500).await;
        assert!(
            debt > Duration::from_millis(400) && debt <= Duration::from_millis(500),
            "{debt:?}"
        );
        let more = a.take(500).await;
        assert!(
            more > Duration::from_millis(900) && more <= Duration::from_millis(1000),
            "a's take queues behind b's: {more:?}"
        );
    }
}
