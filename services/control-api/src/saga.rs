//! The provisioning saga: the background worker that makes the tenant match the catalog.
//!
//! A new group is written to the catalog as `provisioning` and answered 202 at once; this worker
//! then asks the tenant to create its distribution group and only after the tenant confirmed
//! marks it `active`, so a group never shows `active` half-made. Archiving runs the same way:
//! `archiving` → the tenant removes the distribution group and purges its membership →
//! `archived`. A failed tenant call is recorded on the group and retried with exponential
//! backoff (1 s doubling to a 30 s cap, with jitter so replicas and groups do not retry in
//! lockstep); every tenant call is idempotent, so retrying is always safe.
//!
//! Work is leased through the store ([`Store::claim_due`]), so any number of replicas on one
//! Postgres share the queue without two of them calling the tenant for the same group at once.
//! The worker wakes when a handler queues work ([`Notify`]) and polls every second besides,
//! for work queued by other replicas and for retries coming due.

use crate::store::{Claim, Store, StoreError};
use crate::tenant::Tenant;
use domain::GroupState;
use service_kit::db::now_ms;
use service_kit::metrics::{Counter, Family, MetricsBuilder};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// Timings of the saga.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SagaSettings {
    /// How often the worker looks for due work when nobody woke it.
    pub poll: Duration,
    /// How long a claim holds a group. Longer than any tenant call may take (the client gives
    /// up after 10 s), so a live worker never loses its lease mid-call.
    pub lease: Duration,
    /// Delay before the first retry; each further failure doubles it.
    pub first_retry: Duration,
    /// Longest delay between retries.
    pub max_retry: Duration,
}

impl Default for SagaSettings {
    fn default() -> Self {
        Self {
            poll: Duration::from_secs(1),
            lease: Duration::from_secs(60),
            first_retry: Duration::from_secs(1),
            max_retry: Duration::from_secs(30),
        }
    }
}

/// How long to wait after the `failures`-th failure in a row: `first_retry` doubled per
/// earlier failure, capped at `max_retry`, then drawn uniformly from its upper half (so
/// retries spread out but never come sooner than half the nominal delay).
pub fn retry_delay(settings: &SagaSettings, failures: u32, rng: &mut impl rand::Rng) -> Duration {
    let doublings = failures.saturating_sub(1).min(20);
    let nominal = settings
        .first_retry
        .saturating_mul(1u32 << doublings)
        .min(settings.max_retry);
    let half = nominal / 2;
    half + nominal
        .saturating_sub(half)
        .mul_f64(rng.gen_range(0.0..=1.0))
}

/// The saga's counters (`hush_saga_steps_total{work, outcome}`): tenant calls made, by the
/// work (`provision`, `archive`) and whether the tenant confirmed (`confirmed`) or the call
/// failed and will be retried (`retry`). One step is one call about one group, whatever the
/// group holds, so a count moves by one per call (INV-1). Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct SagaMetrics {
    steps: Family<[(&'static str, &'static str); 2], Counter>,
}

impl SagaMetrics {
    /// Registers the counters in `metrics`.
    pub fn register(&self, metrics: &mut MetricsBuilder) {
        metrics.register(
            "saga_steps",
            "Provisioning saga calls to the tenant, by work and outcome (retry: failed, tried again later)",
            self.steps.clone(),
        );
    }

    fn count(&self, state: GroupState, outcome: &'static str) {
        let work = match state {
            GroupState::Provisioning => "provision",
            GroupState::Archiving => "archive",
            _ => "other",
        };
        self.steps
            .get_or_create(&[("work", work), ("outcome", outcome)])
            .inc();
    }
}

/// The worker. Cheap to clone.
#[derive(Clone)]
pub struct Saga {
    store: Arc<dyn Store>,
    tenant: Arc<dyn Tenant>,
    wake: Arc<Notify>,
    settings: SagaSettings,
    metrics: SagaMetrics,
}

impl Saga {
    /// A worker over `store` and `tenant`, woken early through `wake`.
    pub fn new(
        store: Arc<dyn Store>,
        tenant: Arc<dyn Tenant>,
        wake: Arc<Notify>,
        settings: SagaSettings,
    ) -> Self {
        Self {
            store,
            tenant,
            wake,
            settings,
            metrics: SagaMetrics::default(),
        }
    }

    /// The same worker, counting its steps in `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: SagaMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Works until `stop` turns true (or its sender is dropped), finishing the group in hand
    /// first: a stopped worker leaves no group half-called (and a lease it cannot finish runs
    /// out for another replica to take).
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        tracing::info!("provisioning saga started");
        loop {
            // Drain everything due, then wait.
            loop {
                if *stop.borrow() {
                    tracing::info!("provisioning saga stopped");
                    return;
                }
                match self.step().await {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "provisioning saga could not reach its database");
                        break;
                    }
                }
            }
            tokio::select! {
                changed = stop.changed() => {
                    if changed.is_err() {
                        tracing::info!("provisioning saga stopped");
                        return;
                    }
                }
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.settings.poll) => {}
            }
        }
    }

    /// Does the most overdue piece of work, if any is due. Returns whether there was some.
    pub async fn step(&self) -> Result<bool, StoreError> {
        let now = now_ms();
        let lease_until = now.saturating_add(millis(self.settings.lease));
        let Some(claim) = self.store.claim_due(now, lease_until).await? else {
            return Ok(false);
        };
        match self.call_tenant(&claim).await {
            Ok(to) => {
                self.metrics.count(claim.state, "confirmed");
                let moved = self.store.complete(&claim, to, now_ms()).await?;
                if moved {
                    tracing::info!(group_id = %claim.group, state = to.as_str(), "tenant confirmed");
                }
            }
            Err(reason) => {
                self.metrics.count(claim.state, "retry");
                let failures = claim.attempts.saturating_add(1);
                let delay = retry_delay(&self.settings, failures, &mut rand::thread_rng());
                let now = now_ms();
                tracing::warn!(
                    group_id = %claim.group,
                    state = claim.state.as_str(),
                    failures,
                    retry_in_ms = millis(delay),
                    %reason,
                    "tenant call failed; will retry"
                );
                self.store
                    .defer(&claim, &reason, now.saturating_add(millis(delay)), now)
                    .await?;
            }
        }
        Ok(true)
    }

    /// Makes the tenant call `claim` stands for; gives the state the group moves to.
    async fn call_tenant(&self, claim: &Claim) -> Result<GroupState, String> {
        match claim.state {
            GroupState::Provisioning => {
                let group = self
                    .store
                    .get_group(claim.group)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or("the group is gone from the catalog")?;
                // Its address, who may mail it (for the tenant's SMTP listener) and its
                // label's entry rule (the tenant ends the memberships it bars the moment a
                // member's kind changes).
                self.tenant
                    .provision_group(&group.provision_request())
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(GroupState::Active)
            }
            GroupState::Archiving => {
                self.tenant
                    .deprovision_group(claim.group)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(GroupState::Archived)
            }
            other => Err(format!(
                "a group in state {} has no tenant work",
                other.as_str()
            )),
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng as _;

    #[test]
    fn retries_double_from_one_second_to_a_thirty_second_cap_with_jitter() {
        let s = SagaSettings::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for (failures, nominal) in [
            (1, 1.0),
            (2, 2.0),
            (3, 4.0),
            (4, 8.0),
            (5, 16.0),
            (6, 30.0),
            (50, 30.0),
        ] {
            for _ in 0..200 {
                let d = retry_delay(&s, failures, &mut rng).as_secs_f64();
                assert!(
                    d >= nominal / 2.0 && d <= nominal,
                    "failure {failures}: {d} s"
                );
            }
        }
        let spread: std::collections::BTreeSet<u128> = (0..50)
            .map(|_| retry_delay(&s, 6, &mut rng).as_millis())
            .collect();
        assert!(spread.len() > 10, "jitter spreads retries: {spread:?}");
    }
}
