//! `/healthz` (the process is alive) and `/readyz` (its dependencies answer). Both are outside
//! the API prefix and reveal nothing but up or down.

use crate::Problem;
use axum::{routing::get, Json, Router};
use serde_json::json;
use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A readiness check: `Ok` when the dependency answers, else a short reason for the log.
pub type ReadyCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// Builds a check from an async closure.
pub fn check<F, Fut>(f: F) -> ReadyCheck
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    Arc::new(move || Box::pin(f()))
}

/// A readiness check named `name` that asks `dependency` whether it answers, through `ping`
/// (e.g. `|store| async move { store.ping().await }`). Every service checks its database and
/// the services it calls this way; the error is kept as text for the log only.
pub fn ping<T, F, Fut, E>(
    name: &'static str,
    dependency: Arc<T>,
    ping: F,
) -> (&'static str, ReadyCheck)
where
    T: ?Sized + Send + Sync + 'static,
    F: Fn(Arc<T>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Display,
{
    let ready = check(move || {
        let answered = ping(dependency.clone());
        async move { answered.await.map_err(|e| e.to_string()) }
    });
    (name, ready)
}

/// What `/readyz` asks: `required` checks make the service unready when one fails (a replica
/// that cannot do its job, which routing elsewhere or a restart fixes); `reported` checks are
/// only listed in the answer's `degraded` object, naming the check and its short reason (a
/// shared dependency, such as a mail relay, that every replica would fail alike: taking this
/// one out of service would stop what still works and fix nothing).
#[derive(Default)]
pub struct Checks {
    /// Failing one answers 503.
    pub required: Vec<(&'static str, ReadyCheck)>,
    /// Failing one is reported in a 200 answer.
    pub reported: Vec<(&'static str, ReadyCheck)>,
}

impl Checks {
    /// Only required checks.
    pub fn required(required: Vec<(&'static str, ReadyCheck)>) -> Self {
        Self {
            required,
            reported: Vec::new(),
        }
    }

    /// The same, with `reported` checks besides.
    #[must_use]
    pub fn with_reported(mut self, reported: Vec<(&'static str, ReadyCheck)>) -> Self {
        self.reported = reported;
        self
    }
}

impl From<Vec<(&'static str, ReadyCheck)>> for Checks {
    fn from(required: Vec<(&'static str, ReadyCheck)>) -> Self {
        Self::required(required)
    }
}

/// The health routes; `checks` are named so the log says which dependency failed.
pub fn router<S: Clone + Send + Sync + 'static>(checks: impl Into<Checks>) -> Router<S> {
    let checks = Arc::new(checks.into());
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route(
            "/readyz",
            get(move || {
                let checks = checks.clone();
                async move {
                    for (name, check) in &checks.required {
                        if let Err(reason) = check().await {
                            tracing::warn!(dependency = name, %reason, "not ready");
                            return Err(Problem::unavailable(format!("{name} is not answering")));
                        }
                    }
                    let mut degraded = serde_json::Map::new();
                    for (name, check) in &checks.reported {
                        if let Err(reason) = check().await {
                            tracing::debug!(dependency = name, %reason, "degraded");
                            degraded.insert((*name).to_string(), reason.into());
                        }
                    }
                    if degraded.is_empty() {
                        Ok(Json(json!({ "status": "ready" })))
                    } else {
                        Ok(Json(json!({ "status": "ready", "degraded": degraded })))
                    }
                }
            }),
        )
}
